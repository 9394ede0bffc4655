//! Opening the configured database: SQLite (embedded, the default) or Postgres.

use std::{sync::Arc, time::Duration};

use nexora_auth::{KeyStore, UserStore};
use nexora_auth_postgres::PostgresStore;
use nexora_auth_sqlite::SqliteStore;
use sqlx::{postgres::PgPoolOptions, sqlite::SqlitePoolOptions};

use crate::config::{CommonArgs, StartupError, database_url, ensure_data_dir, fail};

/// How long a request (or startup) waits for a database connection before giving up: during
/// an outage requests answer 503 after this long instead of piling up. 2 seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The open database and its store.
#[derive(Clone)]
pub(crate) enum Database {
    /// Embedded SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PostgresStore),
}

impl Database {
    pub(crate) fn key_store(&self) -> Arc<dyn KeyStore> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Postgres(s) => Arc::new(s.clone()),
        }
    }

    pub(crate) fn user_store(&self) -> Arc<dyn UserStore> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// Whether the database answers a trivial query.
    pub(crate) async fn ping(&self) -> bool {
        let result = match self {
            Self::Sqlite(s) => sqlx::query("SELECT 1").execute(s.pool()).await.map(drop),
            Self::Postgres(s) => sqlx::query("SELECT 1").execute(s.pool()).await.map(drop),
        };
        result.is_ok()
    }
}

/// The database URL with any password removed, for logs.
pub(crate) fn describe(common: &CommonArgs) -> String {
    let url = database_url(common);
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_credentials, host)) => format!("{scheme}://…@{host}"),
            None => url,
        },
        None => url,
    }
}

pub(crate) async fn open(common: &CommonArgs) -> Result<Database, StartupError> {
    let url = database_url(common);
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return fail(
                "bad database URL: sqlite:// needs a file path, e.g. sqlite://nexora-data/nexora.db",
            );
        }
        let path = std::path::Path::new(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            ensure_data_dir(parent)?;
        }
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(nexora_auth_sqlite::connect_options(path))
            .await
            .or_else(|e| {
                fail(format!(
                    "cannot open SQLite database {}: {e}",
                    path.display()
                ))
            })?;
        let store = SqliteStore::new(pool)
            .await
            .or_else(|e| fail(format!("SQLite setup: {e}")))?;
        return Ok(Database::Sqlite(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = PgPoolOptions::new()
            .acquire_timeout(CONNECT_TIMEOUT)
            .max_connections(16)
            .connect(&url)
            .await
            .or_else(|e| {
                fail(format!(
                    "cannot connect to Postgres at {}: {e}",
                    describe(common)
                ))
            })?;
        let store = PostgresStore::new(pool)
            .await
            .or_else(|e| fail(format!("Postgres setup: {e}")))?;
        return Ok(Database::Postgres(store));
    }
    fail(format!(
        "bad database URL {:?}: use sqlite://PATH or postgres://…",
        describe(common)
    ))
}
