//! The behaviour table against real axum and actix-web servers over real HTTP, on every store:
//! in-memory, SQLite on a temporary file, and Postgres in a fresh schema.

mod common;

use nexora_auth_http_tests::{Fixture, Signing, Stores, run_table, servers, table};

fn assert_passes(framework: &str, rows: usize, failures: &[String]) {
    assert!(rows > 60, "the table lost rows: {rows}");
    assert!(
        failures.is_empty(),
        "{framework}: {} of {rows} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_passes_the_table() {
    let fixture = Fixture::new().await;
    let url = servers::spawn_axum(fixture.api())
        .await
        .expect("axum server starts");
    let rows = table(&fixture);
    assert_passes("axum", rows.len(), &run_table(&url, &rows).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_passes_the_table() {
    let fixture = Fixture::new().await;
    let url = servers::spawn_actix(fixture.api(), 1).expect("actix server starts");
    let rows = table(&fixture);
    assert_passes("actix-web", rows.len(), &run_table(&url, &rows).await);
}

/// Both frameworks on one fixture over `stores`.
async fn both_frameworks_pass_the_table(stores: Stores) {
    let name = stores.name();
    let fixture = Fixture::with(stores, Signing::Hs256).await;
    let rows = table(&fixture);
    let axum = servers::spawn_axum(fixture.api())
        .await
        .expect("axum server starts");
    let axum_failures = run_table(&axum, &rows).await;
    assert_passes(&format!("axum on {name}"), rows.len(), &axum_failures);
    // The rows change the fixture (rotate, revoke, cascade): actix gets a fresh one.
    drop(fixture);
    let stores = match name {
        "sqlite" => common::sqlite().await,
        _ => common::postgres()
            .await
            .expect("Postgres answered a moment ago and is gone now"),
    };
    let fixture = Fixture::with(stores, Signing::Hs256).await;
    let rows = table(&fixture);
    let actix = servers::spawn_actix(fixture.api(), 1).expect("actix server starts");
    let actix_failures = run_table(&actix, &rows).await;
    assert_passes(&format!("actix-web on {name}"), rows.len(), &actix_failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_frameworks_pass_the_table_on_sqlite() {
    both_frameworks_pass_the_table(common::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_frameworks_pass_the_table_on_postgres() {
    let Some(stores) = common::postgres().await else {
        return;
    };
    both_frameworks_pass_the_table(stores).await;
}

/// The runner must be able to fail: a row with a wrong expectation is reported, on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_reports_wrong_expectations() {
    let fixture = Fixture::new().await;
    let axum = servers::spawn_axum(fixture.api())
        .await
        .expect("axum server starts");
    let actix = servers::spawn_actix(fixture.api(), 1).expect("actix server starts");
    let mut rows = table(&fixture);
    // Flip every expected status: every row must then fail.
    for row in &mut rows {
        row.expect.status = if row.expect.status == 200 { 418 } else { 200 };
    }
    for url in [axum, actix] {
        let failures = run_table(&url, &rows).await;
        assert_eq!(
            failures.len(),
            rows.len(),
            "{url}: rows that could not fail: {failures:#?}"
        );
    }
}
