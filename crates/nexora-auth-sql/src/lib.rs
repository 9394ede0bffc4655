//! What the SQL stores of `nexora-auth` share, written once: the [`SetupError`], the
//! [`StoreBuilder`] (table prefix, migrate or not), the [`Migrations`] runner with its
//! schema-version gate, the rules that turn statement results into store outcomes
//! ([`key_inserted`], [`revoke_outcome`], [`key_state`]…), the audit rows ([`AuditRow`]), the
//! limit columns of schema version 6 both ways ([`rate_limit`], [`CreditColumns`]), the
//! microsecond time rule, and the
//! dialect-free half of the change feed that keeps other instances' caches fresh ([`feed`]).
//! Applications use `nexora-auth-sqlite` or `nexora-auth-postgres`; this crate is for them and
//! for anyone writing another SQL store.
//!
//! ```
//! use nexora_auth_sql::{SetupError, SqlStore, StoreBuilder, truncate_to_micros};
//!
//! /// What a store crate writes: its store over its own pool type (here none).
//! struct TinyStore {
//!     keys_table: String,
//! }
//!
//! impl SqlStore for TinyStore {
//!     type Pool = ();
//!
//!     fn with_prefix((): (), prefix: &str) -> Self {
//!         TinyStore { keys_table: format!("{prefix}api_keys") }
//!     }
//!
//!     async fn migrate(&self) -> Result<(), SetupError> {
//!         // A real store opens its locked transaction here and calls `Migrations::run`.
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), SetupError> {
//! let store: TinyStore = StoreBuilder::new(()).table_prefix("auth_").build().await?;
//! assert_eq!(store.keys_table, "auth_api_keys");
//!
//! // The prefix is spliced into SQL, so it is checked before any statement is built.
//! let refused = StoreBuilder::<TinyStore>::new(()).table_prefix("x; DROP TABLE y").build().await;
//! assert!(matches!(refused, Err(SetupError::InvalidTablePrefix(_))));
//!
//! // Both stores keep microseconds, rounded down.
//! let t = time::macros::datetime!(2030-01-01 12:00:00.123_456_789 UTC);
//! assert_eq!(truncate_to_micros(t), time::macros::datetime!(2030-01-01 12:00:00.123_456 UTC));
//! # Ok(())
//! # }
//! ```
//!
//! # Why a crate under two store crates
//!
//! The stores share rules, not statements: their SQL differs in placeholders, types (`BLOB`
//! ids and integer microseconds against `uuid` and `timestamptz`), locking (SQLite's single
//! writer against per-owner advisory locks) and batch encoding (`json_each` against `unnest`).
//! So each store crate keeps its dialect's SQL, its binds and its row decoding, and this crate
//! holds what would otherwise be written twice. Two crates over a shared one, rather than one
//! crate with `sqlite` and `postgres` features, because:
//!
//! * a Postgres deployment never compiles the bundled SQLite C library, nor SQLite users the
//!   Postgres driver, without anyone having to choose features;
//! * `nexora_auth_sqlite::SqliteStore` and `nexora_auth_postgres::PostgresStore` keep their
//!   paths, and each store keeps its own conformance run and docs;
//! * the trait impls stay concrete: sqlx's `Database` trait offers neither typed binds nor
//!   `rows_affected` generically, so a store generic over the dialect would need a hook per
//!   bind and result plus higher-ranked executor bounds on every method, more code than the
//!   duplication it removes. Only the migration runner, which binds integers and text, is
//!   generic over [`sqlx::Database`]; this crate enables no sqlx driver.
//!
//! # sqlx's `Migrator`
//!
//! sqlx 0.9's `Migrator` can keep its own table (`dangerous_set_table_name`), but the stores do
//! not use it: on SQLite its lock is a no-op, so two processes starting on one file race
//! (version 2's `ALTER TABLE … ADD COLUMN` is not idempotent), where [`Migrations::run`] runs in
//! the store's `BEGIN IMMEDIATE` transaction; its table layout (checksum, success, execution
//! time) differs from the `{prefix}auth_migrations` table deployed databases already have; it
//! would refuse a newer database as "missing" rather than [`SetupError::SchemaTooNew`]; and its
//! checksums would refuse every deployed database after a whitespace edit of a migration.
//!
//! # What this guards
//!
//! The table prefix is the only text spliced into statements, and [`StoreBuilder::build`]
//! refuses any prefix but 0 to 32 of `[a-z0-9_]` before a statement is built
//! ([`trusted_sql`]); every value is bound. A row the store cannot have written (a digest of
//! the wrong length, a timestamp out of range) is [`StoreError::Unavailable`], never "not
//! found", so a damaged database answers 503 and never reads as a missing key. What a leaked
//! database reveals (digests, never keys) is the core's threat model: see `nexora-auth`.
//!
//! [`StoreError::Unavailable`]: nexora_auth::StoreError::Unavailable

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod audit;
pub mod feed;
mod limits;
mod migrations;
mod row;
mod rules;
mod setup;

pub use audit::{AUDIT_COLUMNS, AuditRow, audit_cursor, audit_limit, audit_recorded};
pub use feed::{FeedConfig, FeedHub};
pub use limits::{CreditColumns, LIMITS_SCHEMA_VERSION, rate_limit, rate_limit_columns};
pub use migrations::Migrations;
pub use row::{digest, from_unix_micros, previous_digest, scopes, truncate_to_micros, unix_micros};
pub use rules::{
    corrupt, failed, key_inserted, key_state, revoke_outcome, ticket_digest, ticket_inserted,
    trusted_sql, unique_violation, user_inserted,
};
pub use setup::{DEFAULT_TABLE_PREFIX, SetupError, SqlStore, StoreBuilder};

/// The columns of a key row, in the order the stores' statements list them.
pub const KEY_COLUMNS: &str = "id, owner, name, scopes, created_at, last_used_at, expires_at, revoked_at, display, \
     pepper_version, digest, previous_pepper_version, previous_digest, previous_valid_until, created_by, \
     rate_limit, rate_period_secs, credits_remaining, credits_refill_amount, credits_refill_every_secs, \
     credits_refilled_at";

/// The columns of a WebSocket ticket row, in the order the stores' statements list them.
pub const TICKET_COLUMNS: &str = "digest, owner, chat_id, principal, created_at, expires_at";

/// The schema version that adds the WebSocket ticket table (`{prefix}ws_tickets`), in both
/// stores.
pub const TICKETS_SCHEMA_VERSION: i64 = 5;

/// The columns of a user row, in the order the stores' statements list them.
pub const USER_COLUMNS: &str =
    "id, email, password_hash, scopes, created_at, disabled, rate_limit, rate_period_secs";

#[cfg(test)]
mod tests;
