//! The attack catalogue can fail: every row with a wrong expectation is reported on both
//! frameworks, and so are an unnoticed store call, a group whose answers differ, and a
//! connection to the canary. A process of its own: `attacks.rs` counts panics process-wide.

use nexora_auth_http_tests::{
    Fixture, Signing, Stores,
    attacks::{
        Canary, Outcome, RawRequest, attacks, identical_groups, run_attacks, run_identical,
        send_raw,
    },
    servers,
};

/// Every row can fail: with its expectation turned into a wrong one, each row is reported
/// (on both frameworks), and so is a group whose members differ and a request that reaches
/// the store where none may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_can_fail() {
    let fixture = Fixture::with(
        Stores::memory(),
        Signing::Asymmetric(nexora_auth::JwtAlgorithm::Es256),
    )
    .await;
    let canary = Canary::start().await.expect("canary listener");
    let rows = attacks(&fixture, canary.url());
    let wrong: Vec<_> = rows
        .iter()
        .cloned()
        .map(|mut row| {
            row.expect = match row.expect {
                Outcome::Rejected {
                    status,
                    detail,
                    challenge,
                } => Outcome::Rejected {
                    status,
                    detail,
                    // The right status and body, a challenge no row has.
                    challenge: if challenge == "Bearer" {
                        "Basic"
                    } else {
                        "Bearer"
                    },
                },
                Outcome::Accepted(_) | Outcome::Upgraded => Outcome::RefusedOrClosed,
                // The right status, a body no row has.
                Outcome::Answered { status, .. } => Outcome::Answered {
                    status,
                    body: serde_json::json!({"detail": "no such answer"}),
                },
                Outcome::RefusedOrClosed => Outcome::Upgraded,
                // The right status and field, a type no row has.
                Outcome::Invalid { loc, .. } => Outcome::Invalid {
                    loc,
                    kind: "no_such_type",
                },
            };
            row
        })
        .collect();
    let axum = servers::spawn_axum(fixture.api())
        .await
        .expect("axum server starts");
    let actix = servers::spawn_actix(fixture.api(), 1).expect("actix server starts");
    for url in [&axum, &actix] {
        let failures = run_attacks(url, &wrong, &fixture.store_calls).await;
        let silent: Vec<&str> = wrong
            .iter()
            .map(|row| row.name.as_str())
            .filter(|name| {
                let prefix = format!("{name}: ");
                !failures.iter().any(|line| line.starts_with(&prefix))
            })
            .collect();
        assert!(
            silent.is_empty(),
            "{url}: rows that could not fail: {silent:#?}"
        );

        // A store-call expectation is checked: a well-formed key costs one lookup, not zero.
        let mut lookup = rows
            .iter()
            .find(|row| row.store_calls == Some(1..=1) && row.name.contains("unknown id"))
            .expect("the unknown-key control row")
            .clone();
        lookup.store_calls = Some(0..=0);
        assert_eq!(
            run_attacks(url, std::slice::from_ref(&lookup), &fixture.store_calls)
                .await
                .len(),
            1,
            "a store call went unnoticed"
        );

        // A group whose members differ is reported.
        let mut groups = identical_groups(&fixture);
        let mut group = groups.remove(0);
        let mut valid = group.requests[0].1.clone();
        valid.headers = vec![(
            "authorization",
            format!("Bearer {}", fixture.alice_key).into_bytes(),
        )];
        group.requests.push(("a valid key".into(), valid));
        assert!(!run_identical(url, &[group]).await.is_empty());
    }

    // The canary counts a connection, so "zero connections" is an observation.
    let before = canary.connections();
    let probe = RawRequest {
        method: "GET",
        target: "/jwks.json".into(),
        headers: vec![],
        body: None,
        websocket: false,
    };
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        send_raw(canary.url(), &probe),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(canary.connections(), before + 1);
}
