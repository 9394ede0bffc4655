//! The attack catalogue through axum and actix-web, on every store (in-memory,
//! SQLite on a temporary file, Postgres in a fresh schema) and every JWT ring (HS256, and
//! ES256, EdDSA, RS256 signing with HS256 verification beside, as the server runs them).
//!
//! `attacks_can_fail.rs` (a process of its own, since it fails rows on purpose and the panic
//! count here is process-wide) shows that every row, group and count can fail.
//!
//! Postgres comes from `NEXORA_TEST_POSTGRES_URL`; when it is unreachable the Postgres test
//! says `SKIPPED` loudly and passes — unless `NEXORA_REQUIRE_POSTGRES=1`, where it fails.

mod common;

use std::future::Future;

use common::{postgres, sqlite};
use nexora_auth_http_tests::{
    Fixture, Signing, Stores,
    attacks::{
        Canary, attacks, check_key_material, identical_groups, panics, run_attacks, run_identical,
    },
    servers,
};

/// Fewer rows than this per ring and framework means the catalogue lost some.
const MIN_ROWS: usize = 450;

/// Builds one fixture per ring (concurrently),
/// then runs the whole catalogue against axum and actix-web for each. Returns the number of
/// rows run and every failure.
async fn run_catalogue<F, Fut>(make_stores: F) -> (usize, Vec<String>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Stores>,
{
    let panics_before = panics();
    let canary = Canary::start().await.expect("canary listener");
    let mut building = Vec::new();
    for signing in Signing::ALL {
        let stores = make_stores().await;
        building.push(tokio::spawn(Fixture::with(stores, signing)));
    }
    let mut rows_run = 0;
    let mut failures = Vec::new();
    for fixture in building {
        let fixture = fixture.await.expect("the fixture builds");
        let rows = attacks(&fixture, canary.url());
        assert!(
            rows.len() >= MIN_ROWS,
            "the catalogue lost rows: {} for {:?}",
            rows.len(),
            fixture.signing
        );
        let groups = identical_groups(&fixture);
        let axum = servers::spawn_axum(fixture.api())
            .await
            .expect("axum server starts");
        let actix = servers::spawn_actix(fixture.api(), 1).expect("actix server starts");
        for (framework, url) in [("axum", axum), ("actix-web", actix)] {
            let tag = |line: String| format!("{framework}: {line}");
            failures.extend(
                run_attacks(&url, &rows, &fixture.store_calls)
                    .await
                    .into_iter()
                    .map(tag),
            );
            failures.extend(run_identical(&url, &groups).await.into_iter().map(tag));
            failures.extend(
                check_key_material(&url, &fixture)
                    .await
                    .into_iter()
                    .map(|line| format!("{framework}: [{}] {line}", fixture.stores)),
            );
            rows_run += rows.len();
        }
    }
    // A verifier that followed `jku`/`x5u` would have connected by now; give a slow one a
    // moment more.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    if canary.connections() != 0 {
        failures.push(format!(
            "{} connection(s) reached the jku/x5u canary",
            canary.connections()
        ));
    }
    if panics() != panics_before {
        failures.push(format!(
            "{} panic(s) while the catalogue ran",
            panics() - panics_before
        ));
    }
    (rows_run, failures)
}

fn assert_clean(stores: &str, (rows, failures): (usize, Vec<String>)) {
    assert!(
        failures.is_empty(),
        "{stores}: {} of {rows} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_holds_on_the_memory_stores() {
    assert_clean("memory", run_catalogue(|| async { Stores::memory() }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_holds_on_sqlite() {
    assert_clean("sqlite", run_catalogue(sqlite).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_holds_on_postgres() {
    // One probe first: unreachable → the testkit's loud skip (or its failure when required).
    let Some(probe) = postgres().await else {
        return;
    };
    drop(probe);
    let result = run_catalogue(|| async {
        postgres()
            .await
            .expect("Postgres answered a moment ago and is gone now")
    })
    .await;
    assert_clean("postgres", result);
}
