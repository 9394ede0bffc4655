//! SQLite storage for `nexora-auth`: [`SqliteStore`] implements [`KeyStore`], [`UserStore`],
//! [`AuditStore`] and [`TicketStore`] (single-use WebSocket tickets, table `{prefix}ws_tickets`,
//! schema version 5) over the host application's own [`SqlitePool`], with per-key rate limits
//! and credits and per-user rate limits (schema version 6).
//!
//! ```
//! use std::sync::Arc;
//! use nexora_auth::{Authenticator, NewKey, PepperRing, Scopes, SecretBytes, SecretString};
//! use nexora_auth_sqlite::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("app.db");
//! // The host's pool (WAL mode and a busy timeout: see `connect`), then our tables.
//! let pool = nexora_auth_sqlite::connect(&path).await?;
//! let store = Arc::new(SqliteStore::new(pool).await?);
//!
//! let pepper = SecretBytes::new(b"pepper: 32+ random bytes, kept out of the db".to_vec());
//! let auth = Authenticator::builder(store.clone(), PepperRing::new(1, pepper)?)
//!     .users(store)
//!     .build()?;
//! // With a user store, a key works while its owner is a live user.
//! let scopes = Scopes::new(["agents:read"])?;
//! let alice = auth.register_user("alice@example.com", &SecretString::from("a long passphrase"), scopes.clone()).await?;
//! let created = auth.create_key_for(&alice.id, &scopes, NewKey::named("CI")).await?;
//! assert_eq!(auth.authenticate(created.key.expose()).await?.owner(), &alice.id);
//! # Ok(())
//! # }
//! ```
//!
//! # Configuring the host's pool
//!
//! Several connections write to one file, so every connection needs WAL mode (readers never
//! block the writer) and a busy timeout (a writer waits for the lock instead of failing at
//! once with `SQLITE_BUSY`, which would be a 503). [`connect`] builds such a pool;
//! a host with its own pool should use [`connect_options`] or set the same options:
//!
//! ```no_run
//! # async fn demo() -> Result<(), sqlx::Error> {
//! use std::time::Duration;
//! use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
//!
//! let options = SqliteConnectOptions::new()
//!     .filename("app.db")
//!     .create_if_missing(true)
//!     .journal_mode(SqliteJournalMode::Wal)
//!     .synchronous(SqliteSynchronous::Normal)
//!     .busy_timeout(Duration::from_secs(5));
//! let pool = SqlitePoolOptions::new().connect_with(options).await?;
//! # Ok(()) }
//! ```
//!
//! # Schema
//!
//! [`SqliteStore::new`] creates (idempotently) four tables named with a prefix, by default
//! `nexora_`: `nexora_api_keys`, `nexora_users`, `nexora_audit_events` (the audit trail, see
//! [`AuditStore`]) and `nexora_auth_migrations`, which records the schema versions applied. They never touch sqlx's `_sqlx_migrations`, so the host's own
//! `sqlx::migrate!` runs in the same database undisturbed. Change the prefix with
//! [`SqliteStore::builder`]. The builder, [`SetupError`], the migration runner and the rules
//! this store shares with `nexora-auth-postgres` live in `nexora-auth-sql`; this crate keeps
//! SQLite's SQL and row decoding.
//!
//! * Key ids are 16-byte `BLOB` primary keys (`WITHOUT ROWID`): the authenticate lookup is one
//!   primary-key search.
//! * Digests are 32-byte `BLOB`s with an `INTEGER` pepper version; scopes are a JSON array in
//!   `TEXT`.
//! * Timestamps are `INTEGER` Unix **microseconds** (UTC): exact ordering and comparison in
//!   SQL. Sub-microsecond parts are dropped (rounded down).
//!
//! Rotation is one `UPDATE … RETURNING` whose `WHERE` checks owner, revocation and expiry, so
//! no two rotations or a rotation and a revocation can interleave; a batch of last-used times
//! is one `UPDATE … FROM json_each(?)`.
//!
//! Key lineage (schema version 2): `created_by` names the creating key. A key created by a key
//! is inserted by one `INSERT … SELECT … WHERE` its creator is live, and a cascading revoke is
//! one `BEGIN IMMEDIATE` transaction (a `WITH RECURSIVE` walk over `created_by`): SQLite's
//! single writer makes the two atomic with respect to each other. Users have a `disabled` flag.
//! A version-1 database is upgraded in place (`ALTER TABLE … ADD COLUMN`).
//!
//! The audit trail (schema version 4; version numbers follow `nexora-auth-postgres`, whose
//! version 3 SQLite does not need) is one table keyed by the event id (a `BLOB` UUID version
//! 7, so key order is time order), indexed by owner and id for a user's pages and by time for
//! pruning. A batch of events is one `INSERT … SELECT … FROM json_each(?)`: all or nothing.
//!
//! Rate limits and credits (schema version 6, see `nexora_auth::limits`) are nullable
//! `INTEGER` columns of the key table: `rate_limit` and `rate_period_secs` (the key's rate
//! limit), `credits_remaining`, `credits_refill_amount`, `credits_refill_every_secs` and
//! `credits_refilled_at` (Unix microseconds, as every time here) — all `NULL` for a key without
//! a limit or unmetered. The user table gains `rate_limit` and `rate_period_secs`, the owner's
//! own limit. A row whose limit columns are set in part or out of the core's ranges is a
//! corrupt row ([`StoreError::Unavailable`]), never a key without limits. `update_key` is one
//! `UPDATE … WHERE` owner and not revoked `… RETURNING`; `swap_credits` is a compare-and-swap in
//! one `UPDATE … WHERE` every credit column `IS` the expected value, atomic under SQLite's
//! single writer. A version-5 database gains the columns in place (`ALTER TABLE … ADD
//! COLUMN`), its keys unlimited and unmetered.
//!
//! # Change feed
//!
//! An [`Authenticator`](nexora_auth::Authenticator) keeps key records and user status in its
//! verification cache (see [`nexora_auth::cache`]) and connects to this store's change feed
//! ([`KeyStore::watch_changes`], [`UserStore::watch_user_changes`]); the store answers
//! [`Freshness::Watched`]. How long a cached record can miss a change:
//!
//! * **Writes through this store value and its clones** — `insert`, `rotate`, `revoke`,
//!   `revoke_tree` (the key and every descendant it revoked), `update_key`, `insert_user`,
//!   `set_user_disabled`, `set_user_scopes`, `set_owner_rate_limit`, `delete_user` — are
//!   reported once the statement
//!   has returned, before the method does. **Bound: 0.** Once `revoke` returns, no request in
//!   this process accepts the key. A write reports whatever it returns (an error may follow a
//!   commit; a needless report costs one store read). A write whose caller drops it before it
//!   returns is left to the poller.
//! * **Writes by anyone else on the file** — another process (`nexora-server user disable …`
//!   run while the server runs, a second server), or another pool or `SqliteStore` value in
//!   this process — are noticed by a poller. At the first watch, the store starts a task on the
//!   current Tokio runtime. It keeps one connection outside the pool (opened with the pool's
//!   connect options, except that it never creates the file) and reads `PRAGMA data_version`
//!   on it every [`DEFAULT_CHANGE_POLL_INTERVAL`], 250 milliseconds (set it with
//!   [`SqliteStore::change_poll_interval`]). SQLite changes that value when any *other*
//!   connection commits, whether in this process or another, and never for the connection's
//!   own commits. The value says that something changed, not what, so when it moves the poller
//!   drops the whole cache. **Bound: one poll interval plus one poll's time** (a `PRAGMA` on a
//!   local file takes microseconds). In the crate's tests, a second pool's revoke, scope
//!   change and user disable reach the cache in 6 to 260 ms (printed by `cargo test -p
//!   nexora-auth-sqlite --test change_feed -- --nocapture`). A new authenticator's feed brings
//!   the next poll forward, so its cache is trusted from the start.
//! * **The price of a whole-cache drop.** The pool's connections are "other connections" to
//!   the poller too. So every write of this process also moves `data_version`, including the
//!   authenticator's `last_used_at` batches and its credit swaps (`swap_credits`, which is not
//!   reported itself: a cache holds whether a key is metered, never its count, and a swap
//!   changes only the count). The poll after any write drops the cache, and each
//!   hot key then costs one store read. That happens at most once per poll interval, however
//!   many writes there were.
//! * **When the poller cannot vouch.** A failed poll (the file unreachable, the connection
//!   lost) reports the feed out of sync at once. Cached records are not served again until a
//!   poll succeeds, on a new connection, and that poll first drops the cache. A poller that
//!   stalls instead (a poll waiting out the busy timeout, a starved runtime) stops renewing the
//!   cache's trust. The cache then serves nothing older than its ceiling
//!   ([`CacheConfig::ceiling`](nexora_auth::CacheConfig::ceiling), 5 seconds by default).
//!   Either way requests go to the store: an outage is a 503, never a stale yes.
//! * The poller stops when every authenticator it serves has been dropped, or when the pool is
//!   closed, and a later watch starts it again. Without a Tokio runtime at
//!   [`build`](nexora_auth::AuthenticatorBuilder::build) no poller can run. The store then
//!   answers [`Freshness::Unwatched`] and logs a warning, and the cache reads this store on
//!   every request.
//!
//! **Two processes on one file** (two servers, or a server and its CLI) each hold one extra
//! connection. Each honours its own writes at once and the other's within its own poll
//! interval. With the defaults, a `user disable` from the CLI reaches a running server's cache
//! within about a quarter of a second. Neither can see a *different* file: a database replaced
//! on disk (a backup renamed over it) goes unnoticed by processes that still have the old file
//! open, their pools included.
//!
//! # Errors
//!
//! Every failure of the database (a closed pool, a timeout, I/O, a corrupt row) is
//! [`StoreError::Unavailable`] — never "not found". A duplicate key id is
//! [`StoreError::DuplicateId`]; a duplicate user email [`StoreError::DuplicateEmail`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod feed;

use std::{path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
pub use feed::DEFAULT_CHANGE_POLL_INTERVAL;
use feed::Watch;
use nexora_auth::{
    AuditEvent, AuditStore, ChangeFeed, Freshness, KeyId, KeyStore, OwnerId, Scopes, StoreError,
    TicketDigest, TicketRecord, TicketStore, UserRecord, UserStore,
    audit::{AuditQuery, EventId},
    limits::{Credits, RateLimit},
    store::{
        CascadeOutcome, KeyRecord, KeyUpdate, LastUsed, RevokeOutcome, RotateOutcome, Rotation,
    },
};
use nexora_auth_sql::{
    AUDIT_COLUMNS, AuditRow, CreditColumns, KEY_COLUMNS, Migrations, SqlStore, StoreBuilder,
    TICKET_COLUMNS, USER_COLUMNS, audit_cursor, audit_limit, audit_recorded, corrupt, digest,
    from_unix_micros, key_inserted, key_state, previous_digest, rate_limit, rate_limit_columns,
    revoke_outcome, ticket_digest, ticket_inserted, trusted_sql, unix_micros, user_inserted,
};
pub use nexora_auth_sql::{DEFAULT_TABLE_PREFIX, SetupError};
use sqlx::{
    Row, SqlStr, SqliteConnection, SqlitePool,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};
use time::OffsetDateTime;

/// The busy timeout [`connect_options`] sets: 5 seconds.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The schema version this crate writes and reads. Versions are numbered alike in both SQL
/// stores; SQLite has no version 3 (Postgres's change log). Version 4 adds the audit trail,
/// version 5 the WebSocket ticket table, version 6 rate limits and credits.
pub const SCHEMA_VERSION: i64 = nexora_auth_sql::LIMITS_SCHEMA_VERSION;

/// Options for [`SqliteStore`]; start with [`SqliteStore::builder`].
pub type SqliteStoreBuilder = StoreBuilder<SqliteStore>;

/// Connection options for `path` as this store needs them: created if missing, WAL journal,
/// `synchronous = NORMAL` (durable across application crashes; WAL's recommended setting) and
/// a [`BUSY_TIMEOUT`] of 5 seconds.
pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
}

/// Opens a pool on the database file at `path` with [`connect_options`] and sqlx's default
/// pool settings (10 connections at most).
pub async fn connect(path: impl AsRef<Path>) -> Result<SqlitePool, SetupError> {
    SqlitePoolOptions::new()
        .connect_with(connect_options(path))
        .await
        .map_err(SetupError::database("connect"))
}

/// A [`KeyStore`], [`UserStore`] and [`AuditStore`] on SQLite. Cheap to clone: clones share the pool and the
/// change feed (see the [crate docs](crate#change-feed)).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    sql: Arc<Queries>,
    watch: Arc<Watch>,
}

impl SqlStore for SqliteStore {
    type Pool = SqlitePool;

    fn with_prefix(pool: SqlitePool, prefix: &str) -> Self {
        Self {
            pool,
            sql: Arc::new(Queries::new(prefix)),
            watch: Arc::new(Watch::new()),
        }
    }

    async fn migrate(&self) -> Result<(), SetupError> {
        SqliteStore::migrate(self).await
    }
}

impl SqliteStore {
    /// A store over `pool` with the default options: tables prefixed `nexora_`, migrated now.
    pub async fn new(pool: SqlitePool) -> Result<Self, SetupError> {
        Self::builder(pool).build().await
    }

    /// Options for a store over `pool`.
    pub fn builder(pool: SqlitePool) -> SqliteStoreBuilder {
        StoreBuilder::new(pool)
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// How often the change feed reads `PRAGMA data_version` to notice other processes'
    /// writes, and so how late this process may honour them (see the
    /// [crate docs](crate#change-feed)). Defaults to [`DEFAULT_CHANGE_POLL_INTERVAL`],
    /// 250 milliseconds; values below 1 millisecond are raised to it. It applies to this store
    /// and its clones, from the next poll on.
    #[must_use]
    pub fn change_poll_interval(self, interval: Duration) -> Self {
        self.watch.set_interval(interval);
        self
    }

    /// Creates or upgrades the store's tables; running it again does nothing. Concurrent runs
    /// serialise on SQLite's write lock (`BEGIN IMMEDIATE`).
    pub async fn migrate(&self) -> Result<(), SetupError> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(SetupError::database("begin migration"))?;
        let now = unix_micros(OffsetDateTime::now_utc());
        self.sql.migrations.run(tx, now).await
    }
}

/// Every statement, with the table prefix spliced in once at construction.
#[derive(Debug)]
struct Queries {
    migrations: Migrations,
    insert_key: SqlStr,
    find_key: SqlStr,
    list_keys: SqlStr,
    rotate: SqlStr,
    key_state: SqlStr,
    revoke: SqlStr,
    revoke_descendants: SqlStr,
    key_exists: SqlStr,
    last_used: SqlStr,
    update_key: SqlStr,
    swap_credits: SqlStr,
    insert_user: SqlStr,
    user_by_email: SqlStr,
    user_by_id: SqlStr,
    update_password: SqlStr,
    list_users: SqlStr,
    set_disabled: SqlStr,
    set_scopes: SqlStr,
    delete_user: SqlStr,
    set_owner_rate_limit: SqlStr,
    insert_ticket: SqlStr,
    take_ticket: SqlStr,
    prune_tickets: SqlStr,
    record_audit: SqlStr,
    list_audit: SqlStr,
    list_owner_audit: SqlStr,
    prune_audit: SqlStr,
}

impl Queries {
    fn new(p: &str) -> Self {
        let keys = format!("{p}api_keys");
        let users = format!("{p}users");
        let v1 = format!(
            "CREATE TABLE IF NOT EXISTS {keys} (
                id BLOB NOT NULL PRIMARY KEY,
                owner TEXT NOT NULL,
                name TEXT NOT NULL,
                scopes TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                last_used_at INTEGER,
                expires_at INTEGER,
                revoked_at INTEGER,
                display TEXT NOT NULL,
                pepper_version INTEGER NOT NULL,
                digest BLOB NOT NULL,
                previous_pepper_version INTEGER,
                previous_digest BLOB,
                previous_valid_until INTEGER
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS {keys}_owner_created ON {keys} (owner, created_at, id);
            CREATE TABLE IF NOT EXISTS {users} (
                id TEXT NOT NULL PRIMARY KEY,
                email TEXT NOT NULL UNIQUE,
                password_hash TEXT NOT NULL,
                scopes TEXT NOT NULL,
                created_at INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {users}_created ON {users} (created_at, id);"
        );
        let v2 = format!(
            "ALTER TABLE {keys} ADD COLUMN created_by BLOB;
            CREATE INDEX IF NOT EXISTS {keys}_created_by ON {keys} (created_by)
                WHERE created_by IS NOT NULL;
            ALTER TABLE {users} ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;"
        );
        let tickets = format!("{p}ws_tickets");
        let v5 = format!(
            "CREATE TABLE IF NOT EXISTS {tickets} (
                digest BLOB NOT NULL PRIMARY KEY,
                owner TEXT NOT NULL,
                chat_id TEXT,
                principal TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS {tickets}_expires ON {tickets} (expires_at);"
        );
        // Nullable columns: NULL is "no limit" and "unmetered". Times are Unix microseconds, as
        // everywhere in this store. ADD COLUMN, as version 2: a version-1 database upgrades in
        // place.
        let v6 = format!(
            "ALTER TABLE {keys} ADD COLUMN rate_limit INTEGER;
            ALTER TABLE {keys} ADD COLUMN rate_period_secs INTEGER;
            ALTER TABLE {keys} ADD COLUMN credits_remaining INTEGER;
            ALTER TABLE {keys} ADD COLUMN credits_refill_amount INTEGER;
            ALTER TABLE {keys} ADD COLUMN credits_refill_every_secs INTEGER;
            ALTER TABLE {keys} ADD COLUMN credits_refilled_at INTEGER;
            ALTER TABLE {users} ADD COLUMN rate_limit INTEGER;
            ALTER TABLE {users} ADD COLUMN rate_period_secs INTEGER;"
        );
        let audit = format!("{p}audit_events");
        let v4 = format!(
            "CREATE TABLE IF NOT EXISTS {audit} (
                id BLOB NOT NULL PRIMARY KEY,
                at INTEGER NOT NULL,
                action TEXT NOT NULL,
                actor_kind TEXT NOT NULL,
                actor_id TEXT,
                owner TEXT,
                target TEXT,
                client TEXT,
                outcome TEXT NOT NULL,
                detail TEXT NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS {audit}_owner ON {audit} (owner, id);
            CREATE INDEX IF NOT EXISTS {audit}_at ON {audit} (at);"
        );
        // Our own text around the prefix the builder validated.
        let q = trusted_sql;
        Self {
            migrations: Migrations::new(
                format!(
                    "CREATE TABLE IF NOT EXISTS {p}auth_migrations (
                        version INTEGER NOT NULL PRIMARY KEY,
                        description TEXT NOT NULL,
                        applied_at INTEGER NOT NULL
                    )"
                ),
                format!("SELECT max(version) FROM {p}auth_migrations"),
                format!(
                    "INSERT INTO {p}auth_migrations (version, description, applied_at) VALUES (?, ?, ?)"
                ),
            )
            .step(1, "api keys and users", v1)
            .step(2, "key lineage and disabled users", v2)
            // Version 3 is Postgres's change log; SQLite's feed needs no table.
            .step(4, "audit trail", v4)
            .step(
                nexora_auth_sql::TICKETS_SCHEMA_VERSION,
                "single-use websocket tickets",
                v5,
            )
            .step(
                nexora_auth_sql::LIMITS_SCHEMA_VERSION,
                "rate limits and credits",
                v6,
            ),
            // One statement: the creator check and the insert are atomic (SQLite has one
            // writer at a time), so a cascade never misses a child.
            insert_key: q(format!(
                "INSERT INTO {keys} ({KEY_COLUMNS})
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                    ?16, ?17, ?18, ?19, ?20, ?21
                 WHERE ?15 IS NULL
                    OR EXISTS (SELECT 1 FROM {keys} WHERE id = ?15 AND owner = ?2 AND revoked_at IS NULL)"
            )),
            find_key: q(format!("SELECT {KEY_COLUMNS} FROM {keys} WHERE id = ?")),
            list_keys: q(format!(
                "SELECT {KEY_COLUMNS} FROM {keys} WHERE owner = ? AND revoked_at IS NULL ORDER BY created_at, id"
            )),
            // SET expressions read the row as it was before the update: `digest` on the right
            // is the old digest, which becomes the previous one when there is a grace period.
            rotate: q(format!(
                "UPDATE {keys} SET
                    previous_digest = CASE WHEN ?1 IS NULL THEN NULL ELSE digest END,
                    previous_pepper_version = CASE WHEN ?1 IS NULL THEN NULL ELSE pepper_version END,
                    previous_valid_until = ?1,
                    digest = ?2, pepper_version = ?3, display = ?4
                 WHERE id = ?5 AND owner = ?6 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?7)
                 RETURNING {KEY_COLUMNS}"
            )),
            key_state: q(format!("SELECT revoked_at, expires_at FROM {keys} WHERE id = ? AND owner = ?")),
            revoke: q(format!(
                "UPDATE {keys} SET revoked_at = ?, previous_digest = NULL, previous_pepper_version = NULL,
                    previous_valid_until = NULL
                 WHERE id = ? AND owner = ? AND revoked_at IS NULL"
            )),
            revoke_descendants: q(format!(
                "WITH RECURSIVE tree(id) AS (
                    SELECT id FROM {keys} WHERE created_by = ?2 AND owner = ?3
                    UNION
                    SELECT k.id FROM {keys} k JOIN tree ON k.created_by = tree.id WHERE k.owner = ?3
                 )
                 UPDATE {keys} SET revoked_at = ?1, previous_digest = NULL,
                    previous_pepper_version = NULL, previous_valid_until = NULL
                 WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL
                 RETURNING id"
            )),
            key_exists: q(format!("SELECT 1 FROM {keys} WHERE id = ? AND owner = ?")),
            // One statement for the whole batch: the batch is a JSON array of [hex id, micros];
            // the latest time per id wins and never replaces a later stored one.
            last_used: q(format!(
                "UPDATE {keys} SET last_used_at = batch.at
                 FROM (SELECT unhex(json_extract(value, '$[0]')) AS id, max(json_extract(value, '$[1]')) AS at
                       FROM json_each(?) GROUP BY 1) AS batch
                 WHERE {keys}.id = batch.id AND ({keys}.last_used_at IS NULL OR {keys}.last_used_at < batch.at)"
            )),
            // One statement: the owner and revocation check and the write are atomic. A flag
            // per limit says whether to write it, since NULL is a value here ("remove").
            update_key: q(format!(
                "UPDATE {keys} SET
                    name = coalesce(?1, name),
                    rate_limit = CASE WHEN ?2 THEN ?3 ELSE rate_limit END,
                    rate_period_secs = CASE WHEN ?2 THEN ?4 ELSE rate_period_secs END,
                    credits_remaining = CASE WHEN ?5 THEN ?6 ELSE credits_remaining END,
                    credits_refill_amount = CASE WHEN ?5 THEN ?7 ELSE credits_refill_amount END,
                    credits_refill_every_secs = CASE WHEN ?5 THEN ?8 ELSE credits_refill_every_secs END,
                    credits_refilled_at = CASE WHEN ?5 THEN ?9 ELSE credits_refilled_at END
                 WHERE id = ?10 AND owner = ?11 AND revoked_at IS NULL
                 RETURNING {KEY_COLUMNS}"
            )),
            // A compare-and-swap in one statement under SQLite's single writer: `IS` compares
            // NULL (no refill) as equal to NULL, every column as stored.
            swap_credits: q(format!(
                "UPDATE {keys} SET credits_remaining = ?1, credits_refill_amount = ?2,
                    credits_refill_every_secs = ?3, credits_refilled_at = ?4
                 WHERE id = ?5 AND revoked_at IS NULL
                    AND credits_remaining IS ?6 AND credits_refill_amount IS ?7
                    AND credits_refill_every_secs IS ?8 AND credits_refilled_at IS ?9"
            )),
            insert_user: q(format!("INSERT INTO {users} ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")),
            user_by_email: q(format!("SELECT {USER_COLUMNS} FROM {users} WHERE email = ?")),
            user_by_id: q(format!("SELECT {USER_COLUMNS} FROM {users} WHERE id = ?")),
            update_password: q(format!("UPDATE {users} SET password_hash = ? WHERE id = ?")),
            list_users: q(format!("SELECT {USER_COLUMNS} FROM {users} ORDER BY created_at, id")),
            set_disabled: q(format!("UPDATE {users} SET disabled = ? WHERE id = ?")),
            set_scopes: q(format!("UPDATE {users} SET scopes = ? WHERE id = ?")),
            delete_user: q(format!("DELETE FROM {users} WHERE id = ?")),
            set_owner_rate_limit: q(format!(
                "UPDATE {users} SET rate_limit = ?, rate_period_secs = ? WHERE id = ?"
            )),
            insert_ticket: q(format!(
                "INSERT INTO {tickets} ({TICKET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
            )),
            // One statement: of concurrent takes, the one that deletes the row returns it.
            take_ticket: q(format!(
                "DELETE FROM {tickets} WHERE digest = ? AND expires_at > ? RETURNING {TICKET_COLUMNS}"
            )),
            prune_tickets: q(format!("DELETE FROM {tickets} WHERE expires_at <= ?")),
            // One statement for the whole batch (a JSON array of objects, see
            // `audit_batch_json`): atomic, so a duplicate id stores nothing.
            record_audit: q(format!(
                "INSERT INTO {audit} ({AUDIT_COLUMNS})
                 SELECT unhex(json_extract(value, '$.id')), json_extract(value, '$.at'),
                    json_extract(value, '$.action'), json_extract(value, '$.actor_kind'),
                    json_extract(value, '$.actor_id'), json_extract(value, '$.owner'),
                    json_extract(value, '$.target'), json_extract(value, '$.client'),
                    json_extract(value, '$.outcome'), json_extract(value, '$.detail')
                 FROM json_each(?)"
            )),
            list_audit: q(format!(
                "SELECT {AUDIT_COLUMNS} FROM {audit} WHERE id < ? ORDER BY id DESC LIMIT ?"
            )),
            list_owner_audit: q(format!(
                "SELECT {AUDIT_COLUMNS} FROM {audit} WHERE owner = ? AND id < ? ORDER BY id DESC LIMIT ?"
            )),
            prune_audit: q(format!("DELETE FROM {audit} WHERE at < ?")),
        }
    }
}

// ----- conversions ---------------------------------------------------------------------------

fn failed(op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy {
    nexora_auth_sql::failed("sqlite", op)
}

fn opt_micros(m: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    m.map(from_unix_micros).transpose()
}

fn key_id(bytes: &[u8]) -> Result<KeyId, StoreError> {
    uuid::Uuid::from_slice(bytes)
        .map(KeyId::from_uuid)
        .map_err(|_| corrupt("key id"))
}

fn scopes_json(scopes: &Scopes) -> String {
    // A list of strings always serialises.
    serde_json::to_string(&scopes.iter().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_scopes(text: &str) -> Result<Scopes, StoreError> {
    let list: Vec<String> =
        serde_json::from_str(text).map_err(|e| StoreError::backend("corrupt row: scopes", e))?;
    nexora_auth_sql::scopes(list)
}

fn decode_key(row: &SqliteRow) -> Result<KeyRecord, StoreError> {
    let e = failed("decode a key row");
    let scopes: String = row.try_get("scopes").map_err(e)?;
    Ok(KeyRecord {
        id: key_id(&row.try_get::<Vec<u8>, _>("id").map_err(e)?)?,
        owner: OwnerId::new(row.try_get::<String, _>("owner").map_err(e)?),
        name: row.try_get("name").map_err(e)?,
        scopes: parse_scopes(&scopes)?,
        created_at: from_unix_micros(row.try_get("created_at").map_err(e)?)?,
        last_used_at: opt_micros(row.try_get("last_used_at").map_err(e)?)?,
        expires_at: opt_micros(row.try_get("expires_at").map_err(e)?)?,
        revoked_at: opt_micros(row.try_get("revoked_at").map_err(e)?)?,
        display: row.try_get("display").map_err(e)?,
        digest: digest(
            row.try_get("pepper_version").map_err(e)?,
            &row.try_get::<Vec<u8>, _>("digest").map_err(e)?,
        )?,
        previous: previous_digest(
            row.try_get("previous_pepper_version").map_err(e)?,
            row.try_get("previous_digest").map_err(e)?,
            opt_micros(row.try_get("previous_valid_until").map_err(e)?)?,
        )?,
        created_by: row
            .try_get::<Option<Vec<u8>>, _>("created_by")
            .map_err(e)?
            .map(|bytes| key_id(&bytes))
            .transpose()?,
        rate_limit: rate_limit(
            row.try_get("rate_limit").map_err(e)?,
            row.try_get("rate_period_secs").map_err(e)?,
        )?,
        credits: CreditColumns {
            remaining: row.try_get("credits_remaining").map_err(e)?,
            refill_amount: row.try_get("credits_refill_amount").map_err(e)?,
            refill_every_secs: row.try_get("credits_refill_every_secs").map_err(e)?,
            refilled_at: opt_micros(row.try_get("credits_refilled_at").map_err(e)?)?,
        }
        .credits()?,
    })
}

fn decode_user(row: &SqliteRow) -> Result<UserRecord, StoreError> {
    let e = failed("decode a user row");
    let scopes: String = row.try_get("scopes").map_err(e)?;
    Ok(UserRecord {
        id: OwnerId::new(row.try_get::<String, _>("id").map_err(e)?),
        email: row.try_get("email").map_err(e)?,
        password_hash: row.try_get("password_hash").map_err(e)?,
        scopes: parse_scopes(&scopes)?,
        created_at: from_unix_micros(row.try_get("created_at").map_err(e)?)?,
        disabled: row.try_get("disabled").map_err(e)?,
        rate_limit: rate_limit(
            row.try_get("rate_limit").map_err(e)?,
            row.try_get("rate_period_secs").map_err(e)?,
        )?,
    })
}

/// A batch of events as the JSON array `record_audit` reads: ids in hex, times in Unix
/// microseconds, the rest as the row's text.
fn audit_batch_json(events: &[AuditEvent]) -> String {
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(|event| {
            let row = AuditRow::of(event);
            serde_json::json!({
                "id": row.id.as_uuid().simple().to_string(),
                "at": unix_micros(row.at),
                "action": row.action,
                "actor_kind": row.actor_kind,
                "actor_id": row.actor_id,
                "owner": row.owner,
                "target": row.target,
                "client": row.client,
                "outcome": row.outcome,
                "detail": row.detail,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

fn decode_audit(row: &SqliteRow) -> Result<AuditEvent, StoreError> {
    let e = failed("decode an audit row");
    let id: Vec<u8> = row.try_get("id").map_err(e)?;
    let id = <[u8; 16]>::try_from(id.as_slice()).map_err(|_| corrupt("audit event id"))?;
    AuditRow::new(
        EventId::from_bytes(id),
        from_unix_micros(row.try_get("at").map_err(e)?)?,
        row.try_get("action").map_err(e)?,
        row.try_get("actor_kind").map_err(e)?,
        row.try_get("actor_id").map_err(e)?,
        row.try_get("owner").map_err(e)?,
        row.try_get("target").map_err(e)?,
        row.try_get("client").map_err(e)?,
        row.try_get("outcome").map_err(e)?,
        row.try_get("detail").map_err(e)?,
    )
    .into_event()
}

impl SqliteStore {
    /// Rotates the owner's key; the trait method reports the change.
    async fn rotate_now(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        let row = sqlx::query(self.sql.rotate.clone())
            .bind(rotation.grace_until.map(unix_micros))
            .bind(rotation.digest.digest.as_bytes().as_slice())
            .bind(i64::from(rotation.digest.pepper_version))
            .bind(rotation.display.as_str())
            .bind(id.as_uuid().as_bytes().as_slice())
            .bind(owner.as_str())
            .bind(unix_micros(rotation.now))
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("rotate a key"))?;
        if let Some(row) = row {
            return Ok(RotateOutcome::Rotated(decode_key(&row)?));
        }
        // Nothing rotated: say why. Revocation and expiry never undo themselves, so the state
        // read now explains the refused update.
        let state: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(self.sql.key_state.clone())
            .bind(id.as_uuid().as_bytes().as_slice())
            .bind(owner.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("read a key's state"))?;
        let state = match state {
            Some((revoked_at, expires_at)) => Some(key_state(
                revoked_at.is_some(),
                opt_micros(expires_at)?,
                rotation.now,
            )),
            None => None,
        };
        RotateOutcome::refusal(state)
    }

    /// Revokes the owner's key and its descendants; the trait method reports the changes.
    async fn revoke_tree_now(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        // The write lock from the first statement on: no insert can slip between the root's
        // revocation and the walk of its tree.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(failed("begin a cascading revoke"))?;
        let root = self.revoke_one(&mut tx, owner, id, at).await?;
        if root == RevokeOutcome::NotFound {
            return Ok(CascadeOutcome::new(root, Vec::new()));
        }
        let rows = sqlx::query(self.sql.revoke_descendants.clone())
            .bind(unix_micros(at))
            .bind(id.as_uuid().as_bytes().as_slice())
            .bind(owner.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("revoke a key's descendants"))?;
        let descendants = rows
            .iter()
            .map(|row| key_id(&row.try_get::<Vec<u8>, _>("id").map_err(failed("decode"))?))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()
            .await
            .map_err(failed("commit a cascading revoke"))?;
        Ok(CascadeOutcome::new(root, descendants))
    }

    /// Revokes the owner's key `id` on `conn`: the pool's, or a cascade's transaction.
    async fn revoke_one(
        &self,
        conn: &mut SqliteConnection,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let id = id.as_uuid().as_bytes().as_slice();
        let done = sqlx::query(self.sql.revoke.clone())
            .bind(unix_micros(at))
            .bind(id)
            .bind(owner.as_str())
            .execute(&mut *conn)
            .await
            .map_err(failed("revoke a key"))?;
        revoke_outcome(done.rows_affected(), async {
            let row = sqlx::query(self.sql.key_exists.clone())
                .bind(id)
                .bind(owner.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(failed("read a key's state"))?;
            Ok(row.is_some())
        })
        .await
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
        let inserted = sqlx::query(self.sql.insert_key.clone())
            .bind(r.id.as_uuid().as_bytes().as_slice())
            .bind(r.owner.as_str())
            .bind(r.name.as_str())
            .bind(scopes_json(&r.scopes))
            .bind(unix_micros(r.created_at))
            .bind(r.last_used_at.map(unix_micros))
            .bind(r.expires_at.map(unix_micros))
            .bind(r.revoked_at.map(unix_micros))
            .bind(r.display.as_str())
            .bind(i64::from(r.digest.pepper_version))
            .bind(r.digest.digest.as_bytes().as_slice())
            .bind(r.previous.map(|p| i64::from(p.digest.pepper_version)))
            .bind(r.previous.map(|p| p.digest.digest.as_bytes().to_vec()))
            .bind(r.previous.map(|p| unix_micros(p.valid_until)))
            .bind(r.created_by.map(|c| c.as_uuid().as_bytes().to_vec()));
        let (limit, period) = rate_limit_columns(r.rate_limit);
        let credits = CreditColumns::of(r.credits.as_ref());
        let inserted = inserted
            .bind(limit)
            .bind(period)
            .bind(credits.remaining)
            .bind(credits.refill_amount)
            .bind(credits.refill_every_secs)
            .bind(credits.refilled_at.map(unix_micros))
            .execute(&self.pool)
            .await;
        // A cached "no such key" for this id is now wrong.
        self.watch.key_changed(r.id);
        key_inserted(
            inserted.map(|done| done.rows_affected()),
            failed("insert a key"),
        )
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(self.sql.find_key.clone())
            .bind(id.as_uuid().as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("find a key"))?;
        row.as_ref().map(decode_key).transpose()
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(self.sql.list_keys.clone())
            .bind(owner.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(failed("list keys"))?;
        rows.iter().map(decode_key).collect()
    }

    async fn rotate(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        let outcome = self.rotate_now(owner, id, rotation).await;
        // Whatever the outcome, as every write here: an error may follow a committed update,
        // and reporting an unchanged key costs one store read.
        self.watch.key_changed(id);
        outcome
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let outcome = async {
            let mut conn = self.pool.acquire().await.map_err(failed("revoke a key"))?;
            self.revoke_one(&mut conn, owner, id, at).await
        }
        .await;
        self.watch.key_changed(id);
        outcome
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        let outcome = self.revoke_tree_now(owner, id, at).await;
        match &outcome {
            Ok(cascade) => {
                self.watch.key_changed(id);
                for descendant in &cascade.descendants {
                    self.watch.key_changed(*descendant);
                }
            }
            // The commit may have happened, and which keys it revoked is unknown.
            Err(_) => self.watch.everything_changed(),
        }
        outcome
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let entries: Vec<String> = batch
            .iter()
            .map(|u| format!("[\"{}\",{}]", u.id.as_uuid().simple(), unix_micros(u.at)))
            .collect();
        let json = format!("[{}]", entries.join(","));
        sqlx::query(self.sql.last_used.clone())
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(failed("record last-used times"))?;
        Ok(())
    }

    async fn update_key(
        &self,
        owner: &OwnerId,
        id: KeyId,
        update: &KeyUpdate,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let (limit, period) = rate_limit_columns(update.rate_limit.flatten());
        let credits = CreditColumns::of(update.credits.flatten().as_ref());
        let row = sqlx::query(self.sql.update_key.clone())
            .bind(update.name.as_deref())
            .bind(update.rate_limit.is_some())
            .bind(limit)
            .bind(period)
            .bind(update.credits.is_some())
            .bind(credits.remaining)
            .bind(credits.refill_amount)
            .bind(credits.refill_every_secs)
            .bind(credits.refilled_at.map(unix_micros))
            .bind(id.as_uuid().as_bytes().as_slice())
            .bind(owner.as_str())
            .fetch_optional(&self.pool)
            .await;
        // Reported whatever the outcome, as rotate is: the key's limits are cached.
        self.watch.key_changed(id);
        row.map_err(failed("update a key"))?
            .as_ref()
            .map(decode_key)
            .transpose()
    }

    // Not reported to the change feed: what a cache holds of a key (`KeyCredentials`) carries
    // only whether it is metered, which a swap never changes; the count itself is read from
    // the store whenever a lease runs out. (Other connections' swaps still move
    // `data_version`, like `last_used_at` batches do: see the crate docs.)
    async fn swap_credits(
        &self,
        id: KeyId,
        current: &Credits,
        new: &Credits,
    ) -> Result<bool, StoreError> {
        let (current, new) = (
            CreditColumns::of(Some(current)),
            CreditColumns::of(Some(new)),
        );
        let done = sqlx::query(self.sql.swap_credits.clone())
            .bind(new.remaining)
            .bind(new.refill_amount)
            .bind(new.refill_every_secs)
            .bind(new.refilled_at.map(unix_micros))
            .bind(id.as_uuid().as_bytes().as_slice())
            .bind(current.remaining)
            .bind(current.refill_amount)
            .bind(current.refill_every_secs)
            .bind(current.refilled_at.map(unix_micros))
            .execute(&self.pool)
            .await
            .map_err(failed("swap a key's credits"))?;
        Ok(done.rows_affected() > 0)
    }

    fn watch_changes(&self, feed: ChangeFeed) -> Freshness {
        self.watch.watch(feed, &self.pool)
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let result = sqlx::query(self.sql.insert_user.clone())
            .bind(user.id.as_str())
            .bind(user.email.as_str())
            .bind(user.password_hash.as_str())
            .bind(scopes_json(&user.scopes))
            .bind(unix_micros(user.created_at))
            .bind(user.disabled)
            .bind(rate_limit_columns(user.rate_limit).0)
            .bind(rate_limit_columns(user.rate_limit).1)
            .execute(&self.pool)
            .await;
        // A cached "no such user" for this id is now wrong.
        self.watch.user_changed(&user.id);
        user_inserted(
            result.map(drop),
            // SQLite names the column, not the constraint: "UNIQUE constraint failed: t.email".
            |d| d.message().ends_with("users.email"),
            failed("insert a user"),
        )
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(self.sql.user_by_email.clone())
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("find a user"))?;
        row.as_ref().map(decode_user).transpose()
    }

    async fn find_user(&self, id: &OwnerId) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(self.sql.user_by_id.clone())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("find a user"))?;
        row.as_ref().map(decode_user).transpose()
    }

    // Not reported: the verification cache keeps no password hashes.
    async fn update_password_hash(&self, id: &OwnerId, phc: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.update_password.clone())
            .bind(phc)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("update a password hash"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(self.sql.list_users.clone())
            .fetch_all(&self.pool)
            .await
            .map_err(failed("list users"))?;
        rows.iter().map(decode_user).collect()
    }

    async fn set_user_disabled(&self, id: &OwnerId, disabled: bool) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.set_disabled.clone())
            .bind(disabled)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("disable or enable a user"));
        self.watch.user_changed(id);
        Ok(done?.rows_affected() > 0)
    }

    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.set_scopes.clone())
            .bind(scopes_json(scopes))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("set a user's scopes"));
        self.watch.user_changed(id);
        Ok(done?.rows_affected() > 0)
    }

    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.delete_user.clone())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("delete a user"));
        self.watch.user_changed(id);
        Ok(done?.rows_affected() > 0)
    }

    async fn set_owner_rate_limit(
        &self,
        id: &OwnerId,
        limit: Option<RateLimit>,
    ) -> Result<bool, StoreError> {
        let (limit, period) = rate_limit_columns(limit);
        let done = sqlx::query(self.sql.set_owner_rate_limit.clone())
            .bind(limit)
            .bind(period)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("set an owner's rate limit"));
        // The cache keeps the owner's limit with the user's status.
        self.watch.user_changed(id);
        Ok(done?.rows_affected() > 0)
    }

    fn watch_user_changes(&self, feed: ChangeFeed) -> Freshness {
        self.watch.watch(feed, &self.pool)
    }
}

/// Single use across processes: a take is one `DELETE … RETURNING`, under SQLite's one writer.
#[async_trait]
impl TicketStore for SqliteStore {
    async fn insert_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        let result = sqlx::query(self.sql.insert_ticket.clone())
            .bind(ticket.digest.as_bytes().as_slice())
            .bind(ticket.owner.as_str())
            .bind(ticket.chat_id.as_deref())
            .bind(&ticket.principal)
            .bind(unix_micros(ticket.created_at))
            .bind(unix_micros(ticket.expires_at))
            .execute(&self.pool)
            .await;
        ticket_inserted(result.map(drop), failed("insert a ticket"))
    }

    async fn take_ticket(
        &self,
        digest: &TicketDigest,
        now: OffsetDateTime,
    ) -> Result<Option<TicketRecord>, StoreError> {
        let row = sqlx::query(self.sql.take_ticket.clone())
            .bind(digest.as_bytes().as_slice())
            .bind(unix_micros(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("take a ticket"))?;
        row.as_ref().map(decode_ticket).transpose()
    }

    async fn prune_tickets(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(self.sql.prune_tickets.clone())
            .bind(unix_micros(now))
            .execute(&self.pool)
            .await
            .map_err(failed("prune tickets"))?;
        Ok(done.rows_affected())
    }
}

fn decode_ticket(row: &SqliteRow) -> Result<TicketRecord, StoreError> {
    let e = failed("decode a ticket row");
    Ok(TicketRecord {
        digest: ticket_digest(&row.try_get::<Vec<u8>, _>("digest").map_err(e)?)?,
        owner: OwnerId::new(row.try_get::<String, _>("owner").map_err(e)?),
        chat_id: row.try_get("chat_id").map_err(e)?,
        principal: row.try_get("principal").map_err(e)?,
        created_at: from_unix_micros(row.try_get("created_at").map_err(e)?)?,
        expires_at: from_unix_micros(row.try_get("expires_at").map_err(e)?)?,
    })
}
#[async_trait]
impl AuditStore for SqliteStore {
    async fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let inserted = sqlx::query(self.sql.record_audit.clone())
            .bind(audit_batch_json(events))
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected());
        audit_recorded(inserted, failed("record audit events"))
    }

    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let before = audit_cursor(query.before);
        let before = before.as_uuid().as_bytes().as_slice();
        let statement = match &query.owner {
            Some(owner) => sqlx::query(self.sql.list_owner_audit.clone()).bind(owner.as_str()),
            None => sqlx::query(self.sql.list_audit.clone()),
        };
        let rows = statement
            .bind(before)
            .bind(audit_limit(query.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(failed("list audit events"))?;
        rows.iter().map(decode_audit).collect()
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(self.sql.prune_audit.clone())
            .bind(unix_micros(before))
            .execute(&self.pool)
            .await
            .map_err(failed("prune audit events"))?;
        Ok(done.rows_affected())
    }
}
