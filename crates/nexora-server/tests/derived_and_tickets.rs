//! Derived tokens and WebSocket tickets across two real instances, A and B, on one Postgres
//! database with the default configuration (verification cache on, ceiling 5 seconds):
//!
//! * a token derived from a key through A dies on B within the cache's bound when the key is
//!   revoked or rotated without grace through A (measured from A's answer to B's first
//!   refusal, printed as `PROPAGATION:` lines), and never works again;
//! * a ticket issued by A is accepted exactly once by 50 concurrent upgrade attempts spread
//!   over A and B: one 101, 49 refusals with 401 before any upgrade.

mod common;

use std::time::Instant;

use common::{PgDatabase, api::*, postgres_admin_url, propagation::*};
use futures_util::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

const ROUNDS: usize = 20;
const UPGRADES: usize = 50;
const TICKET_ROUNDS: usize = 5;

/// One scenario at a time: they are timings, and two side by side would measure each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn fresh_database() -> Option<PgDatabase> {
    let admin = postgres_admin_url().await?;
    Some(PgDatabase::create(&admin).await)
}

/// `POST /api/auth/token` on `base` with the key `key`: the derived token.
async fn derive(http: &Client, base: &str, key: &str) -> String {
    let response = http
        .post(url(base, "/api/auth/token"))
        .bearer_auth(key)
        .json(&json!({"ttl_secs": 600}))
        .send()
        .await
        .expect("derive request");
    assert_eq!(response.status(), StatusCode::OK, "derive a token");
    let body: Value = response.json().await.expect("derive body");
    assert_eq!(body["expires_in"], 600);
    body["access_token"].as_str().expect("a token").to_owned()
}

/// `POST /api/auth/ws-tickets` on `base` with `credential`, for `chat`: the ticket.
async fn ticket(http: &Client, base: &str, credential: &str, chat: &str) -> String {
    let response = http
        .post(url(base, "/api/auth/ws-tickets"))
        .bearer_auth(credential)
        .json(&json!({"chat_id": chat}))
        .send()
        .await
        .expect("ticket request");
    assert_eq!(response.status(), StatusCode::OK, "issue a ticket");
    let body: Value = response.json().await.expect("ticket body");
    assert_eq!(body["expires_in"], 30);
    body["ticket"].as_str().expect("a ticket").to_owned()
}

/// The time from now until `base` first refuses `token` (401), accepting it (200) meanwhile,
/// within the ceiling ([`until_status`]).
async fn until_refused(http: &Client, base: &str, token: &str, what: &str) -> std::time::Duration {
    let since = Instant::now();
    until_status(
        http,
        base,
        token,
        StatusCode::UNAUTHORIZED,
        &[StatusCode::OK],
        since,
        what,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_token_dies_on_the_other_instance_within_the_bound() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = fresh_database().await else {
        return;
    };
    let pair = Pair::start(&db.url);
    let (a, b) = (pair.a.base.as_str(), pair.b.base.as_str());
    let http = client();
    let jwt = login(&http, a).await;
    let (mut revoked, mut rotated, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Revoked through A.
        let what = format!("revocation {round}");
        let key = create_key(&http, a, &jwt, &what).await;
        let token = derive(&http, a, &key.key).await;
        warm(&http, b, &token, &what).await;
        assert_eq!(
            revoke_key(&http, a, &jwt, &key.id).await,
            StatusCode::NO_CONTENT
        );
        revoked.push(until_refused(&http, b, &token, &what).await);
        dead.push(token);

        // Rotated without grace through A: the token follows the old secret.
        let what = format!("rotation {round}");
        let key = create_key(&http, a, &jwt, &what).await;
        let token = derive(&http, a, &key.key).await;
        warm(&http, b, &token, &what).await;
        let new = rotate_key(&http, a, &jwt, &key.id).await;
        rotated.push(until_refused(&http, b, &token, &what).await);
        dead.push(token);
        // The new secret derives tokens that work on both.
        let fresh = derive(&http, b, &new.key).await;
        for base in [a, b] {
            assert_eq!(agents_status(&http, base, &fresh).await, StatusCode::OK);
        }
    }
    for (name, sample) in [
        ("revocation", &revoked),
        ("rotation without grace", &rotated),
    ] {
        let figures = Figures::of(sample);
        report(&format!(
            "derived token, {name} through A → first 401 on B: {figures} (ceiling \
             {DEFAULT_CEILING:?})"
        ));
        assert!(figures.max <= DEFAULT_CEILING, "{name}: {figures}");
    }
    // None comes back, on either instance.
    for token in &dead {
        for base in [a, b] {
            assert_eq!(
                agents_status(&http, base, token).await,
                StatusCode::UNAUTHORIZED
            );
        }
    }
    assert_no_panic(&pair.a.kill());
    assert_no_panic(&pair.b.kill());
}

/// How one upgrade attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Upgrade {
    Switched,
    Refused(u16),
    Failed(String),
}

async fn upgrade(ws_url: String) -> Upgrade {
    match tokio_tungstenite::connect_async(ws_url).await {
        Ok((mut socket, _)) => {
            let _ = socket.close(None).await;
            Upgrade::Switched
        }
        Err(tungstenite::Error::Http(response)) => Upgrade::Refused(response.status().as_u16()),
        Err(e) => Upgrade::Failed(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_is_single_use_under_concurrent_upgrades_on_two_instances() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = fresh_database().await else {
        return;
    };
    let pair = Pair::start(&db.url);
    let http = client();
    let jwt = login(&http, &pair.a.base).await;
    let key = create_key(&http, &pair.a.base, &jwt, "sockets").await;
    let started = Instant::now();
    for round in 0..TICKET_ROUNDS {
        // Issued by A with the key, or by B with the login token.
        let ticket = if round % 2 == 0 {
            ticket(&http, &pair.a.base, &key.key, "chat-1").await
        } else {
            ticket(&http, &pair.b.base, &jwt, "chat-1").await
        };
        let attempts = (0..UPGRADES).map(|i| {
            let server = if i % 2 == 0 { &pair.a } else { &pair.b };
            upgrade(server.ws_url(&format!("/api/ws/chat-1?ticket={ticket}")))
        });
        let outcomes = join_all(attempts).await;
        let switched = outcomes.iter().filter(|o| **o == Upgrade::Switched).count();
        let refused = outcomes
            .iter()
            .filter(|o| **o == Upgrade::Refused(401))
            .count();
        assert_eq!(
            (switched, refused),
            (1, UPGRADES - 1),
            "round {round}: exactly one upgrade, every other 401: {outcomes:?}"
        );
    }
    report(&format!(
        "ticket single use: {TICKET_ROUNDS} rounds of {UPGRADES} concurrent upgrades over A \
         and B, one 101 each, in {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    // Another chat's ticket and an expired one never upgrade; the ticket never reaches a log.
    let other = ticket(&http, &pair.a.base, &key.key, "chat-2").await;
    assert_eq!(
        upgrade(pair.b.ws_url(&format!("/api/ws/chat-1?ticket={other}"))).await,
        Upgrade::Refused(401)
    );
    let logs = [pair.a.kill(), pair.b.kill()];
    for log in &logs {
        assert_no_panic(log);
        assert!(!log.contains(&other), "a ticket reached a server log");
        assert!(
            !log.contains("ticket="),
            "a ticket URL reached a server log"
        );
    }
}
