//! Setting a store up: its error, its builder and the table prefix.

use std::{fmt, future::Future};

use nexora_auth::store::is_valid_table_prefix;

/// The table prefix used unless [`StoreBuilder::table_prefix`] says otherwise.
pub const DEFAULT_TABLE_PREFIX: &str = "nexora_";

/// Failure to set a store up (at startup; the store's own methods return
/// [`StoreError`](nexora_auth::StoreError)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The table prefix is not 0 to 32 of `a-z`, `0-9`, `_`, starting with a letter or `_`.
    #[error("invalid table prefix {0:?}: use 0 to 32 of a-z 0-9 _, not starting with a digit")]
    InvalidTablePrefix(String),
    /// The database holds a newer schema than this crate knows (a newer version migrated it).
    #[error("the database schema is version {found}, newer than this crate's {known}")]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this crate knows.
        known: i64,
    },
    /// Connecting or migrating failed.
    #[error("database setup failed: {context}")]
    Database {
        /// What was being done.
        context: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
}

impl SetupError {
    /// Wraps the database error of the step `context` (for `map_err`).
    pub fn database(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { context, source }
    }
}

/// A SQL store that [`StoreBuilder`] builds: what a store crate implements for its store type.
pub trait SqlStore: Sized + Send {
    /// The connection pool the store runs on.
    type Pool: Send;

    /// A store over `pool` whose tables are named with `prefix`, which the builder has
    /// checked with [`is_valid_table_prefix`]. Does no I/O.
    fn with_prefix(pool: Self::Pool, prefix: &str) -> Self;

    /// Creates or upgrades the store's tables (see [`Migrations::run`](crate::Migrations::run)).
    fn migrate(&self) -> impl Future<Output = Result<(), SetupError>> + Send;
}

/// Options for a SQL store; the store crates name it `SqliteStoreBuilder` and
/// `PostgresStoreBuilder`.
#[must_use]
pub struct StoreBuilder<S: SqlStore> {
    pool: S::Pool,
    prefix: String,
    migrate: bool,
}

impl<S: SqlStore> StoreBuilder<S> {
    /// Options for a store over `pool`: tables prefixed [`DEFAULT_TABLE_PREFIX`], migrated by
    /// [`build`](Self::build).
    pub fn new(pool: S::Pool) -> Self {
        Self {
            pool,
            prefix: DEFAULT_TABLE_PREFIX.to_owned(),
            migrate: true,
        }
    }

    /// The prefix of the store's tables. Defaults to [`DEFAULT_TABLE_PREFIX`] (`nexora_`).
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Whether [`build`](Self::build) runs the migrations. Defaults to `true`; turn it off when
    /// a deployment step runs the store's `migrate` instead.
    pub fn run_migrations(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Validates the options and, unless told otherwise, migrates.
    pub async fn build(self) -> Result<S, SetupError> {
        // The prefix is spliced into every statement: nothing else reaches the SQL text.
        if !is_valid_table_prefix(&self.prefix) {
            return Err(SetupError::InvalidTablePrefix(self.prefix));
        }
        let store = S::with_prefix(self.pool, &self.prefix);
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }
}

impl<S: SqlStore> fmt::Debug for StoreBuilder<S>
where
    S::Pool: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("pool", &self.pool)
            .field("prefix", &self.prefix)
            .field("migrate", &self.migrate)
            .finish()
    }
}
