//! The stores the HTTP suites run on besides the in-memory ones: SQLite on a temporary file and
//! Postgres in a fresh schema (from `NEXORA_TEST_POSTGRES_URL`; unreachable → the testkit's loud
//! skip, or its failure under `NEXORA_REQUIRE_POSTGRES=1`).

use nexora_auth_http_tests::Stores;
use nexora_auth_postgres::PostgresStore;
use nexora_auth_sqlite::SqliteStore;
use nexora_auth_testkit::postgres::TestSchema;

/// SQLite on a file in a temporary directory that lives as long as the stores.
pub(crate) async fn sqlite() -> Stores {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pool = nexora_auth_sqlite::connect(dir.path().join("auth.db"))
        .await
        .expect("open the database");
    let store = SqliteStore::new(pool).await.expect("migrations");
    Stores::all_in_one("sqlite", store).with_guard(dir)
}

/// Postgres in a fresh schema dropped with the stores; `None` after the testkit's loud skip
/// (it panics instead under `NEXORA_REQUIRE_POSTGRES=1`).
pub(crate) async fn postgres() -> Option<Stores> {
    let schema = TestSchema::create().await?;
    let store = PostgresStore::new(schema.pool().clone())
        .await
        .expect("migrations");
    Some(Stores::all_in_one("postgres", store).with_guard(schema))
}
