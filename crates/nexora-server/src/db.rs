//! Opening the configured database: SQLite (embedded, the default) or Postgres.

use std::{path::Path, sync::Arc, time::Duration};

use nexora_auth::{AuditStore, KeyStore, TicketStore, UserStore};
use nexora_auth_postgres::PostgresStore;
use nexora_auth_sqlite::SqliteStore;
use sqlx::{postgres::PgPoolOptions, sqlite::SqlitePoolOptions};

use crate::{
    config::{CommonArgs, StartupError, database_url, ensure_data_dir, fail},
    private_files::{self, Existing},
};

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

    /// Where WebSocket tickets are kept: the database every instance shares, so a ticket is
    /// accepted once across all of them.
    pub(crate) fn ticket_store(&self) -> Arc<dyn TicketStore> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// Where the audit trail is kept: the database every instance shares.
    pub(crate) fn audit_store(&self) -> Arc<dyn AuditStore> {
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

/// The query parameters sqlx 0.9 reads from a Postgres URL (`PgConnectOptions::from_str`).
/// sqlx logs any other parameter at WARN with its value, and libpq users put secrets in some
/// (`sslpassword`), so the others are removed before sqlx sees the URL and reported here by
/// name only. sqlx ignores them either way.
fn is_postgres_parameter(name: &str) -> bool {
    name == "password"
        || name.starts_with("options[")
        || crate::database_url::is_harmless_parameter(name)
}

/// `url` without the query parameters sqlx does not read, each reported by name (its value
/// may be a secret). A URL that does not parse is returned as it is, for sqlx to refuse.
fn known_postgres_parameters(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let (known, unknown): (Vec<_>, Vec<_>) = pairs
        .into_iter()
        .partition(|(name, _)| is_postgres_parameter(name));
    if unknown.is_empty() {
        return url.to_owned();
    }
    for (name, _) in &unknown {
        tracing::warn!(
            parameter = %name,
            "ignoring an unknown Postgres connection parameter (its value is not shown)"
        );
    }
    if known.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(known);
    }
    parsed.into()
}

/// Makes the SQLite database at `path` private before SQLite opens it: its directory is
/// created (0700) if missing — and tightened when it is the data directory — and the database
/// file is created 0600, so SQLite, which gives its WAL and shared-memory files the database's
/// mode, creates those 0600 too. Existing files readable by others are tightened.
fn secure_sqlite_files(common: &CommonArgs, path: &Path) -> Result<(), StartupError> {
    // SQLite's name for a database in memory: there is no file.
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if parent == common.data_dir {
            ensure_data_dir(parent)?;
        } else {
            private_files::ensure_dir(parent, Existing::LeaveAlone).or_else(|e| {
                fail(format!(
                    "cannot create the database's directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
    }
    private_files::ensure_file(path).or_else(|e| {
        fail(format!(
            "cannot create SQLite database {}: {e}",
            path.display()
        ))
    })?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        private_files::tighten_if_present(Path::new(&companion));
    }
    Ok(())
}

/// Opens the configured database. Messages name it only in its redacted form.
pub(crate) async fn open(common: &CommonArgs) -> Result<Database, StartupError> {
    let configured = database_url(common);
    let url = configured.expose();
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return fail(
                "bad database URL: sqlite:// needs a file path, e.g. sqlite://nexora-data/nexora.db",
            );
        }
        let path = Path::new(path);
        secure_sqlite_files(common, path)?;
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
            .connect(&known_postgres_parameters(url))
            .await
            .or_else(|e| fail(format!("cannot connect to Postgres at {configured}: {e}")))?;
        let store = PostgresStore::new(pool)
            .await
            .or_else(|e| fail(format!("Postgres setup: {e}")))?;
        return Ok(Database::Postgres(store));
    }
    fail(format!(
        "bad database URL \"{configured}\": use sqlite://PATH or postgres://…"
    ))
}

#[cfg(test)]
mod tests {
    use super::known_postgres_parameters;

    #[test]
    fn parameters_sqlx_does_not_read_are_removed_and_the_rest_kept() {
        for (url, want) in [
            (
                "postgres://app:pw@db/nexora?sslmode=require&sslpassword=s3cret&password=a%26b&passwd=x&options[search_path]=app",
                "postgres://app:pw@db/nexora?sslmode=require&password=a%26b&options%5Bsearch_path%5D=app",
            ),
            (
                "postgres://db/nexora?sslpassword=s3cret",
                "postgres://db/nexora",
            ),
            // Nothing to remove: the URL as written.
            (
                "postgres://db/nexora?application_name=a+b&password=p%40ss",
                "postgres://db/nexora?application_name=a+b&password=p%40ss",
            ),
            // Not a URL: left for sqlx to refuse.
            (
                "postgres://db:notaport/nexora?passwd=x",
                "postgres://db:notaport/nexora?passwd=x",
            ),
        ] {
            assert_eq!(known_postgres_parameters(url), want, "{url}");
        }
    }
}
