//! A fresh PostgreSQL schema per test on a real server, or a loud skip (feature `postgres`).
//!
//! The server comes from `NEXORA_TEST_POSTGRES_URL` (defaults to
//! `postgres://postgres@127.0.0.1:5432/test`). When it cannot be reached, the test prints
//! `SKIPPED: Postgres not reachable at …` on stderr and passes — unless
//! `NEXORA_REQUIRE_POSTGRES=1` (as CI sets it), in which case it fails.
//!
//! ```no_run
//! use nexora_auth_testkit::{Fixture, postgres::TestSchema};
//!
//! nexora_auth_testkit::key_store_conformance!(fixture: async {
//!     let Some(schema) = TestSchema::create().await else { return Fixture::skipped() };
//!     // Build your store over schema.pool() here; the schema is dropped after the test.
//!     Fixture::new(nexora_auth::MemoryKeyStore::new()).with_guard(schema)
//! });
//! # fn main() {}
//! ```

use std::{io::Write, str::FromStr, time::Duration};

use sqlx::{
    Connection, Executor,
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions},
};

/// The environment variable naming the test server.
pub const URL_ENV: &str = "NEXORA_TEST_POSTGRES_URL";
/// The server used when [`URL_ENV`] is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Set to `1` to make an unreachable server fail the tests instead of skipping them.
pub const REQUIRE_ENV: &str = "NEXORA_REQUIRE_POSTGRES";

/// How long to wait for the server before skipping (or failing). 5 seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const SERVICE: crate::service::Service = crate::service::Service {
    name: "Postgres",
    url_env: URL_ENV,
    default_url: DEFAULT_URL,
    require_env: REQUIRE_ENV,
    start_hint: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
};

/// The test server's URL: [`URL_ENV`], or [`DEFAULT_URL`].
pub fn url() -> String {
    SERVICE.url()
}

/// Whether an unreachable server must fail the tests ([`REQUIRE_ENV`] is `1`).
pub fn required() -> bool {
    SERVICE.required()
}

/// A schema named `nexora_test_<random>`, created for one test and dropped (with everything in
/// it) when this value is dropped, even if the test panicked.
#[derive(Debug)]
pub struct TestSchema {
    pool: PgPool,
    name: String,
    options: PgConnectOptions,
}

impl TestSchema {
    /// Creates the schema and a pool whose connections use it as their `search_path`.
    ///
    /// `None` (after printing `SKIPPED: …` on stderr) when the server cannot be reached;
    /// panics instead when [`required`]. The pool has at most 8 connections.
    pub async fn create() -> Option<Self> {
        let url = url();
        let options = match PgConnectOptions::from_str(&url) {
            Ok(options) => options,
            Err(e) => panic!("{URL_ENV}={url:?} is not a valid Postgres URL: {e}"),
        };
        let server = format!("{}:{}", options.get_host(), options.get_port());
        let mut admin =
            match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return unreachable(&server, &e.to_string()),
                Err(_) => return unreachable(&server, "connection timed out"),
            };
        let name = format!("nexora_test_{}", uuid::Uuid::new_v4().simple());
        // The name is ours: `nexora_test_` and 32 hex digits, nothing to escape.
        if let Err(e) = admin
            .execute(sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA {name}"
            ))))
            .await
        {
            panic!("Postgres at {server} is up but CREATE SCHEMA failed: {e}");
        }
        let _ = admin.close().await;
        let scoped = options.clone().options([("search_path", name.as_str())]);
        let pool = match PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(scoped)
            .await
        {
            Ok(pool) => pool,
            Err(e) => panic!("Postgres at {server}: pool for schema {name} failed: {e}"),
        };
        Some(Self {
            pool,
            name,
            options,
        })
    }

    /// A pool on the test schema (a clone shares the same connections).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn unreachable(server: &str, error: &str) -> Option<TestSchema> {
    SERVICE.unreachable(server, error)
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Dropping happens inside the test's runtime, which cannot be blocked on; a short-lived
        // thread with its own runtime and connection does the async work.
        let options = self.options.clone();
        let sql = format!(
            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE",
            self.name
        );
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let mut conn = PgConnection::connect_with(&options)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: could not drop test schema {name}: {e}"
                );
            }
            Err(_) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: dropping test schema {name} panicked"
                );
            }
        }
    }
}
