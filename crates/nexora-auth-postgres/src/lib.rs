//! PostgreSQL storage for `nexora-auth`: [`PostgresStore`] implements [`KeyStore`],
//! [`UserStore`], [`AuditStore`] and [`TicketStore`] (single-use WebSocket tickets, table
//! `{prefix}ws_tickets`, schema version 5) over the host application's own [`PgPool`], with
//! per-key rate limits and credits and per-user rate limits (schema version 6). Many stateless
//! server instances can share one database: every operation is a single atomic statement.
//!
//! ```no_run
//! use std::sync::Arc;
//! use nexora_auth::{Authenticator, NewKey, OwnerId, PepperRing, Scopes, SecretBytes};
//! use nexora_auth_postgres::PostgresStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The host's pool, then our tables (created if missing).
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/app").await?;
//! let store = Arc::new(PostgresStore::new(pool).await?);
//!
//! let pepper = SecretBytes::new(b"pepper: 32+ random bytes, kept out of the db".to_vec());
//! let auth = Authenticator::builder(store.clone(), PepperRing::new(1, pepper)?)
//!     .users(store)
//!     .build()?;
//! let alice = OwnerId::new("alice");
//! let created = auth.create_key_for(&alice, &Scopes::new(["agents:read"])?, NewKey::named("CI")).await?;
//! assert_eq!(auth.authenticate(created.key.expose()).await?.owner(), &alice);
//! # Ok(())
//! # }
//! ```
//!
//! # Schema
//!
//! [`PostgresStore::new`] creates (idempotently) its tables in the first schema of the
//! connection's `search_path`, named with a prefix, by default `nexora_`: `nexora_api_keys`,
//! `nexora_users`, the change log `nexora_auth_changes` with its head `nexora_auth_changes_head`
//! (see [Change feed](#change-feed)), the audit trail `nexora_audit_events` (schema version 4,
//! see [`AuditStore`]: keyed by the event's `uuid`, a version 7 so key order is time order,
//! indexed by owner and id and by time; a batch is one `INSERT … SELECT … FROM unnest(…)`),
//! and `nexora_auth_migrations`, which records the schema versions applied.
//! They never touch sqlx's `_sqlx_migrations`, so the host's own `sqlx::migrate!` runs in the
//! same database undisturbed. Concurrent migrations (several instances starting at once)
//! serialise on a transaction-scoped advisory lock. Change the prefix with
//! [`PostgresStore::builder`]; put the tables in another schema by setting the pool's
//! `search_path`. The builder, [`SetupError`], the migration runner and the rules this store
//! shares with `nexora-auth-sqlite` live in `nexora-auth-sql`; this crate keeps Postgres's SQL
//! and row decoding.
//!
//! * Key ids are `uuid` primary keys: the authenticate lookup is one primary-key index search.
//! * Digests are `bytea` with a `bigint` pepper version (a `u32` does not fit `integer`);
//!   scopes are `text[]`; timestamps `timestamptz`, which keeps **microseconds** (finer
//!   parts are dropped).
//!
//! Rotation is one `UPDATE … RETURNING` whose `WHERE` checks owner, revocation and expiry; a
//! batch of last-used times is one `UPDATE … FROM unnest($1, $2)`.
//!
//! Key lineage (schema version 2): `created_by` names the creating key. Inserting a key created
//! by a key and a cascading revoke (`WITH RECURSIVE` over `created_by`) both run in a
//! transaction holding a per-owner advisory lock (`pg_advisory_xact_lock(0x6E78724C,
//! hashtext(owner))`), so a cascade never misses a child created at the same moment: the insert
//! either commits first and is revoked, or waits and finds its creator revoked. Users have a
//! `disabled` flag. A version-1 database is upgraded in place (`ALTER TABLE … ADD COLUMN`).
//!
//! Rate limits and credits (schema version 6, see `nexora_auth::limits`) are nullable columns
//! of the key table: `rate_limit` and `rate_period_secs` (the key's rate limit),
//! `credits_remaining`, `credits_refill_amount`, `credits_refill_every_secs` (all `bigint`: the
//! core's `u32` and `u64` do not fit `integer` in full) and `credits_refilled_at` (`timestamptz`) — all `NULL`
//! for a key without a limit or unmetered. The user table gains `rate_limit` and
//! `rate_period_secs`, the owner's own limit. A row whose limit columns are set in part or out
//! of the core's ranges is a corrupt row ([`StoreError::Unavailable`]), never a key without
//! limits. `update_key` is one `UPDATE … WHERE` owner and not revoked `… RETURNING`;
//! `swap_credits` is a compare-and-swap in one `UPDATE … WHERE` every credit column `IS NOT
//! DISTINCT FROM` the expected value: of concurrent swaps on any instances, the first takes the
//! row lock and the others, re-checking the committed row, change nothing. Credits are the
//! truth of every instance's leases, so they live here, not in a cache.
//!
//! # Change feed
//!
//! Several server instances on one database keep each other's verification caches fresh
//! (`nexora_auth::cache`): a key revoked, rotated or created, a user disabled, narrowed,
//! deleted or created through any instance — or by SQL typed by hand — is refused or accepted
//! by every instance **within the cache's ceiling (5 seconds by default) at worst, whatever
//! happens to the connections, and normally within milliseconds**; the instance that made the
//! write honours it before the write returns (bound 0). The store answers
//! [`Freshness::Watched`] to `watch_changes` and `watch_user_changes`.
//!
//! * **The log.** Schema version 3 adds triggers on the key and user tables that append a row
//!   `(seq, kind, key_id, owner, at)` to `{prefix}auth_changes` for every inserted, updated or
//!   deleted row (key updates that only move `last_used_at`, or only the credit count and its
//!   refill time — the credit swaps of every request that takes a lease, since schema version
//!   6 — excepted: a cache holds neither; `TRUNCATE` logs kind `all`), in the same transaction
//!   as the change, and `NOTIFY {prefix}auth_changes` with the
//!   `seq`. The `seq` comes from the one row of `{prefix}auth_changes_head`, updated under its
//!   row lock until commit: writers commit in `seq` order and a reader that sees `seq = n` sees
//!   every lower one, so replaying `seq > last` misses nothing, and a missing number can only
//!   be a deleted row. The triggers are deferred to commit, so the head is locked only while a
//!   transaction commits (a cascade and a concurrent revoke cannot deadlock on it); it still
//!   serialises the commits of key and user writes across all instances, which are rare next
//!   to authentications (those write nothing but batched `last_used_at`, which is not logged).
//! * **The watcher.** The first authenticator attached to a store value (or a clone of it)
//!   starts one task on the current Tokio runtime, shared by every authenticator attached
//!   later; it stops when they are all dropped. Without a runtime the store answers
//!   [`Freshness::Unwatched`] with a warning (positives are then not cached). The task holds a
//!   dedicated connection ([`LISTENER_APPLICATION_NAME`] in `pg_stat_activity`) that `LISTEN`s,
//!   then reads the log. On a notification, and at least every
//!   [`poll interval`](FeedConfig::poll_interval) (**250 ms** by default), it takes a sync mark
//!   of every cache, reads the log after the last `seq` it reported, reports each row, and marks
//!   the caches in sync with the mark taken *before* the read. On start it reads the head and
//!   drops what the caches held.
//! * **Failures.** Any error — the connection lost, a failed read, a read slower than
//!   [`read_timeout`](FeedConfig::read_timeout) (**2 s**) — makes every cache stop
//!   trusting its positives at once; the task reconnects (at once, then with a backoff from
//!   100 ms doubling to 5 s), `LISTEN`s again, and replays the log from the last `seq` before
//!   it trusts anything. If the rows it needs were pruned (the log skips from its position),
//!   every cache is dropped instead.
//! * **Pruning.** Every minute the task deletes rows older than the
//!   [`retention`](FeedConfig::retention) (**10 minutes** by default), never the newest row;
//!   [`PostgresStore::prune_changes`] does the same on demand. Change the settings with
//!   [`PostgresStore::with_change_feed`].
//!
//! `sqlx`'s `PgListener` has pitfalls this design steps around:
//!
//! * `recv()` reconnects silently and loses what was notified meanwhile: the task calls
//!   `try_recv()`, whose `Ok(None)` says the connection was lost, and treats it as a failure.
//! * A `ConnectionReset` surfaces from `try_recv()` as an error, without a reconnect: every
//!   error drops the listener, and the task opens a new one.
//! * The listener's notification buffer is unbounded: notifications only wake the task, and one
//!   whose `seq` it has already read is dropped without a read, so a burst of writes costs one
//!   read, and the log (not the notifications) is the truth.
//! * A listener that stops reading holds back Postgres' notification queue, which every
//!   notifying commit must append to; once it fills, those commits fail. The task keeps
//!   draining: it waits for notifications between reads, never for long work.
//!
//! Notification channels are per database, not per schema: stores with the same prefix in
//! different schemas of one database wake each other's watchers, which then read their own
//! log and find nothing new — harmless, but a distinct prefix per schema avoids it.
//!
//! # Errors
//!
//! Every failure of the database (connection refused, pool timeout, a corrupt row) is
//! [`StoreError::Unavailable`] — never "not found". A duplicate key id is
//! [`StoreError::DuplicateId`]; a duplicate user email [`StoreError::DuplicateEmail`], told
//! apart by the violated constraint's name.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod feed;

use std::sync::Arc;

use async_trait::async_trait;
pub use feed::LISTENER_APPLICATION_NAME;
use feed::{PgChangeLog, change_log_schema, limits_schema};
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
    AUDIT_COLUMNS, AuditRow, CreditColumns, FeedHub, KEY_COLUMNS, Migrations, SqlStore,
    StoreBuilder, TICKET_COLUMNS, USER_COLUMNS, audit_cursor, audit_limit, audit_recorded, digest,
    key_inserted, key_state, previous_digest, rate_limit, rate_limit_columns, revoke_outcome,
    ticket_digest, ticket_inserted, trusted_sql, user_inserted,
};
pub use nexora_auth_sql::{DEFAULT_TABLE_PREFIX, FeedConfig, SetupError};
use sqlx::{PgConnection, PgPool, Row, SqlStr, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

/// The schema version this crate writes and reads. Version 4 adds the audit trail, version 5
/// the WebSocket ticket table, version 6 rate limits and credits.
pub const SCHEMA_VERSION: i64 = nexora_auth_sql::LIMITS_SCHEMA_VERSION;
/// The advisory lock key migrations hold (`pg_advisory_xact_lock`): "nxr_auth" in ASCII.
const MIGRATION_LOCK: i64 = 0x6e78_725f_6175_7468;

/// Options for [`PostgresStore`]; start with [`PostgresStore::builder`].
pub type PostgresStoreBuilder = StoreBuilder<PostgresStore>;

/// A [`KeyStore`], [`UserStore`] and [`AuditStore`] on PostgreSQL. Cheap to clone: clones share the pool and
/// the change feed (one watcher per store value and its clones; see the crate docs).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    sql: Arc<Queries>,
    feed: Arc<FeedHub>,
}

impl SqlStore for PostgresStore {
    type Pool = PgPool;

    fn with_prefix(pool: PgPool, prefix: &str) -> Self {
        Self {
            pool,
            sql: Arc::new(Queries::new(prefix)),
            feed: Arc::new(FeedHub::new(FeedConfig::default())),
        }
    }

    async fn migrate(&self) -> Result<(), SetupError> {
        PostgresStore::migrate(self).await
    }
}

impl PostgresStore {
    /// A store over `pool` with the default options: tables prefixed `nexora_`, migrated now.
    pub async fn new(pool: PgPool) -> Result<Self, SetupError> {
        Self::builder(pool).build().await
    }

    /// Options for a store over `pool`.
    pub fn builder(pool: PgPool) -> PostgresStoreBuilder {
        StoreBuilder::new(pool)
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The change feed's settings (see the crate docs, "Change feed"). Defaults to
    /// [`FeedConfig::default`]: a poll every 250 milliseconds, rows kept 10 minutes, pruned
    /// every minute. Set it before handing the store to an authenticator: a store value given
    /// new settings starts a new feed, and the authenticators attached before keep the old.
    #[must_use]
    pub fn with_change_feed(mut self, config: FeedConfig) -> Self {
        self.feed = Arc::new(FeedHub::new(config));
        self
    }

    /// Deletes change-log rows older than the feed's retention (never the newest row), as the
    /// watcher does every minute. Returns how many. For a deployment that runs no
    /// authenticator for a long time (the log grows by one row per change).
    pub async fn prune_changes(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(self.sql.prune_changes.clone())
            .bind(self.feed.config().retention_duration().as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(failed("prune the change log"))?;
        Ok(done.rows_affected())
    }

    /// Attaches `feed` to this store's watcher (started on first use).
    fn attach(&self, feed: ChangeFeed) -> Freshness {
        self.feed.attach(feed, || PgChangeLog {
            pool: self.pool.clone(),
            options: (*self.pool.connect_options())
                .clone()
                .application_name(LISTENER_APPLICATION_NAME),
            sql: Arc::clone(&self.sql),
        })
    }

    /// Creates or upgrades the store's tables; running it again does nothing. Runs in one
    /// transaction holding an advisory lock, so concurrent runs wait for each other.
    pub async fn migrate(&self) -> Result<(), SetupError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(SetupError::database("begin migration"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(SetupError::database("take the migration lock"))?;
        self.sql.migrations.run(tx, OffsetDateTime::now_utc()).await
    }
}

/// Every statement, with the table prefix spliced in once at construction.
#[derive(Debug)]
struct Queries {
    /// The name of the users' email constraint, which tells a duplicate email from an id.
    users_email_key: String,
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
    read_changes: SqlStr,
    prune_changes: SqlStr,
    insert_ticket: SqlStr,
    take_ticket: SqlStr,
    prune_tickets: SqlStr,
    /// The `NOTIFY` channel of the change log: `{prefix}auth_changes`.
    channel: String,
    record_audit: SqlStr,
    list_audit: SqlStr,
    list_owner_audit: SqlStr,
    prune_audit: SqlStr,
}

/// The first key of the two-key advisory lock taken per owner (the second is
/// `hashtext(owner)`) by inserts of keys created by a key and by cascading revokes, so the two
/// never interleave. ASCII `nxrL`.
const LINEAGE_LOCK_CLASS: i32 = 0x6E78_724C;

impl Queries {
    fn new(p: &str) -> Self {
        let keys = format!("{p}api_keys");
        let users = format!("{p}users");
        let v1 = format!(
            "CREATE TABLE IF NOT EXISTS {keys} (
                id uuid NOT NULL,
                owner text NOT NULL,
                name text NOT NULL,
                scopes text[] NOT NULL,
                created_at timestamptz NOT NULL,
                last_used_at timestamptz,
                expires_at timestamptz,
                revoked_at timestamptz,
                display text NOT NULL,
                pepper_version bigint NOT NULL,
                digest bytea NOT NULL,
                previous_pepper_version bigint,
                previous_digest bytea,
                previous_valid_until timestamptz,
                CONSTRAINT {keys}_pkey PRIMARY KEY (id)
            );
            CREATE INDEX IF NOT EXISTS {keys}_owner_created ON {keys} (owner, created_at, id);
            CREATE TABLE IF NOT EXISTS {users} (
                id text NOT NULL,
                email text NOT NULL,
                password_hash text NOT NULL,
                scopes text[] NOT NULL,
                created_at timestamptz NOT NULL,
                CONSTRAINT {users}_pkey PRIMARY KEY (id),
                CONSTRAINT {users}_email_key UNIQUE (email)
            );
            CREATE INDEX IF NOT EXISTS {users}_created ON {users} (created_at, id);"
        );
        let v2 = format!(
            "ALTER TABLE {keys} ADD COLUMN IF NOT EXISTS created_by uuid;
            CREATE INDEX IF NOT EXISTS {keys}_created_by ON {keys} (created_by)
                WHERE created_by IS NOT NULL;
            ALTER TABLE {users} ADD COLUMN IF NOT EXISTS disabled boolean NOT NULL DEFAULT false;"
        );
        let v3 = change_log_schema(p, &keys, &users);
        let tickets = format!("{p}ws_tickets");
        let v5 = format!(
            "CREATE TABLE IF NOT EXISTS {tickets} (
                digest bytea NOT NULL,
                owner text NOT NULL,
                chat_id text,
                principal text NOT NULL,
                created_at timestamptz NOT NULL,
                expires_at timestamptz NOT NULL,
                CONSTRAINT {tickets}_pkey PRIMARY KEY (digest)
            );
            CREATE INDEX IF NOT EXISTS {tickets}_expires ON {tickets} (expires_at);"
        );
        let v6 = limits_schema(p, &keys, &users);
        let audit = format!("{p}audit_events");
        let v4 = format!(
            "CREATE TABLE IF NOT EXISTS {audit} (
                id uuid NOT NULL,
                at timestamptz NOT NULL,
                action text NOT NULL,
                actor_kind text NOT NULL,
                actor_id text,
                owner text,
                target text,
                client text,
                outcome text NOT NULL,
                detail text NOT NULL,
                CONSTRAINT {audit}_pkey PRIMARY KEY (id)
            );
            CREATE INDEX IF NOT EXISTS {audit}_owner ON {audit} (owner, id);
            CREATE INDEX IF NOT EXISTS {audit}_at ON {audit} (at);"
        );
        // Our own text around the prefix the builder validated.
        let q = trusted_sql;
        Self {
            users_email_key: format!("{users}_email_key"),
            migrations: Migrations::new(
                format!(
                    "CREATE TABLE IF NOT EXISTS {p}auth_migrations (
                        version bigint NOT NULL PRIMARY KEY,
                        description text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )"
                ),
                format!("SELECT max(version) FROM {p}auth_migrations"),
                format!(
                    "INSERT INTO {p}auth_migrations (version, description, applied_at) VALUES ($1, $2, $3)"
                ),
            )
            .step(1, "api keys and users", v1)
            .step(2, "key lineage and disabled users", v2)
            .step(3, "change log for other instances' caches", v3)
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
            insert_key: q(format!(
                "INSERT INTO {keys} ({KEY_COLUMNS})
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                    $16, $17, $18, $19, $20, $21
                 WHERE $15::uuid IS NULL
                    OR EXISTS (SELECT 1 FROM {keys} WHERE id = $15 AND owner = $2 AND revoked_at IS NULL)"
            )),
            find_key: q(format!("SELECT {KEY_COLUMNS} FROM {keys} WHERE id = $1")),
            list_keys: q(format!(
                "SELECT {KEY_COLUMNS} FROM {keys} WHERE owner = $1 AND revoked_at IS NULL ORDER BY created_at, id"
            )),
            // SET expressions read the row as it was before the update: `digest` on the right
            // is the old digest, which becomes the previous one when there is a grace period.
            rotate: q(format!(
                "UPDATE {keys} SET
                    previous_digest = CASE WHEN $1::timestamptz IS NULL THEN NULL ELSE digest END,
                    previous_pepper_version = CASE WHEN $1::timestamptz IS NULL THEN NULL ELSE pepper_version END,
                    previous_valid_until = $1,
                    digest = $2, pepper_version = $3, display = $4
                 WHERE id = $5 AND owner = $6 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $7)
                 RETURNING {KEY_COLUMNS}"
            )),
            key_state: q(format!("SELECT revoked_at, expires_at FROM {keys} WHERE id = $1 AND owner = $2")),
            revoke: q(format!(
                "UPDATE {keys} SET revoked_at = $1, previous_digest = NULL, previous_pepper_version = NULL,
                    previous_valid_until = NULL
                 WHERE id = $2 AND owner = $3 AND revoked_at IS NULL"
            )),
            revoke_descendants: q(format!(
                "WITH RECURSIVE tree(id) AS (
                    SELECT id FROM {keys} WHERE created_by = $2 AND owner = $3
                    UNION
                    SELECT k.id FROM {keys} k JOIN tree ON k.created_by = tree.id WHERE k.owner = $3
                 )
                 UPDATE {keys} SET revoked_at = $1, previous_digest = NULL,
                    previous_pepper_version = NULL, previous_valid_until = NULL
                 WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL
                 RETURNING id"
            )),
            key_exists: q(format!("SELECT 1 FROM {keys} WHERE id = $1 AND owner = $2")),
            // One statement for the whole batch; the latest time per id wins and never replaces
            // a later stored one. GROUP BY: UPDATE … FROM with duplicate ids would pick any.
            last_used: q(format!(
                "UPDATE {keys} AS k SET last_used_at = batch.at
                 FROM (SELECT id, max(at) AS at FROM unnest($1::uuid[], $2::timestamptz[]) AS t(id, at)
                       GROUP BY id) AS batch
                 WHERE k.id = batch.id AND (k.last_used_at IS NULL OR k.last_used_at < batch.at)"
            )),
            // One statement: the owner and revocation check and the write are atomic (a
            // concurrent revoke holds the row lock; this one then re-checks the new row). A
            // flag per limit says whether to write it, since NULL is a value here ("remove").
            update_key: q(format!(
                "UPDATE {keys} SET
                    name = coalesce($1, name),
                    rate_limit = CASE WHEN $2 THEN $3::bigint ELSE rate_limit END,
                    rate_period_secs = CASE WHEN $2 THEN $4::bigint ELSE rate_period_secs END,
                    credits_remaining = CASE WHEN $5 THEN $6::bigint ELSE credits_remaining END,
                    credits_refill_amount = CASE WHEN $5 THEN $7::bigint ELSE credits_refill_amount END,
                    credits_refill_every_secs = CASE WHEN $5 THEN $8::bigint ELSE credits_refill_every_secs END,
                    credits_refilled_at = CASE WHEN $5 THEN $9::timestamptz ELSE credits_refilled_at END
                 WHERE id = $10 AND owner = $11 AND revoked_at IS NULL
                 RETURNING {KEY_COLUMNS}"
            )),
            // A compare-and-swap in one statement: of concurrent swaps, the first takes the row
            // lock; the others wait, re-check the WHERE on the row it committed (READ
            // COMMITTED's re-check of an updated row), and change nothing.
            swap_credits: q(format!(
                "UPDATE {keys} SET credits_remaining = $1, credits_refill_amount = $2,
                    credits_refill_every_secs = $3, credits_refilled_at = $4
                 WHERE id = $5 AND revoked_at IS NULL
                    AND credits_remaining IS NOT DISTINCT FROM $6::bigint
                    AND credits_refill_amount IS NOT DISTINCT FROM $7::bigint
                    AND credits_refill_every_secs IS NOT DISTINCT FROM $8::bigint
                    AND credits_refilled_at IS NOT DISTINCT FROM $9::timestamptz"
            )),
            insert_user: q(format!("INSERT INTO {users} ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")),
            user_by_email: q(format!("SELECT {USER_COLUMNS} FROM {users} WHERE email = $1")),
            user_by_id: q(format!("SELECT {USER_COLUMNS} FROM {users} WHERE id = $1")),
            update_password: q(format!("UPDATE {users} SET password_hash = $1 WHERE id = $2")),
            list_users: q(format!("SELECT {USER_COLUMNS} FROM {users} ORDER BY created_at, id")),
            set_disabled: q(format!("UPDATE {users} SET disabled = $1 WHERE id = $2")),
            set_scopes: q(format!("UPDATE {users} SET scopes = $1 WHERE id = $2")),
            delete_user: q(format!("DELETE FROM {users} WHERE id = $1")),
            set_owner_rate_limit: q(format!(
                "UPDATE {users} SET rate_limit = $1, rate_period_secs = $2 WHERE id = $3"
            )),
            // The head and the rows after $1 in one snapshot: the head tells a reader whether
            // rows it never saw were pruned (see nexora_auth_sql::feed::Replay).
            read_changes: q(format!(
                "SELECT h.seq AS head, c.seq, c.kind, c.key_id, c.owner
                 FROM {p}auth_changes_head h
                 LEFT JOIN LATERAL (
                    SELECT seq, kind, key_id, owner FROM {p}auth_changes
                    WHERE seq > $1 ORDER BY seq LIMIT $2
                 ) c ON true
                 ORDER BY c.seq"
            )),
            // Never the newest row: a reader that finds the log empty could not tell "nothing
            // happened" from "pruned"; the head says so too, and this keeps the log readable
            // by hand.
            prune_changes: q(format!(
                "DELETE FROM {p}auth_changes
                 WHERE at < now() - make_interval(secs => $1)
                   AND seq < (SELECT max(seq) FROM {p}auth_changes)"
            )),
            insert_ticket: q(format!(
                "INSERT INTO {tickets} ({TICKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            )),
            // One statement: of concurrent takes (on any instance), the one whose DELETE
            // removes the row returns it; the others wait on the row lock, then find it gone.
            take_ticket: q(format!(
                "DELETE FROM {tickets} WHERE digest = $1 AND expires_at > $2 RETURNING {TICKET_COLUMNS}"
            )),
            prune_tickets: q(format!("DELETE FROM {tickets} WHERE expires_at <= $1")),
            channel: format!("{p}auth_changes"),
            // One statement for the whole batch, one array per column: atomic, so a duplicate
            // id stores nothing.
            record_audit: q(format!(
                "INSERT INTO {audit} ({AUDIT_COLUMNS})
                 SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[],
                    $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])"
            )),
            list_audit: q(format!(
                "SELECT {AUDIT_COLUMNS} FROM {audit} WHERE id < $1 ORDER BY id DESC LIMIT $2"
            )),
            list_owner_audit: q(format!(
                "SELECT {AUDIT_COLUMNS} FROM {audit} WHERE owner = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            )),
            prune_audit: q(format!("DELETE FROM {audit} WHERE at < $1")),
        }
    }
}

// ----- conversions ---------------------------------------------------------------------------

fn failed(op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy {
    nexora_auth_sql::failed("postgres", op)
}

fn scope_list(scopes: &Scopes) -> Vec<String> {
    scopes.iter().map(str::to_owned).collect()
}

fn decode_key(row: &PgRow) -> Result<KeyRecord, StoreError> {
    let e = failed("decode a key row");
    Ok(KeyRecord {
        id: KeyId::from_uuid(row.try_get::<Uuid, _>("id").map_err(e)?),
        owner: OwnerId::new(row.try_get::<String, _>("owner").map_err(e)?),
        name: row.try_get("name").map_err(e)?,
        scopes: nexora_auth_sql::scopes(row.try_get("scopes").map_err(e)?)?,
        created_at: row.try_get("created_at").map_err(e)?,
        last_used_at: row.try_get("last_used_at").map_err(e)?,
        expires_at: row.try_get("expires_at").map_err(e)?,
        revoked_at: row.try_get("revoked_at").map_err(e)?,
        display: row.try_get("display").map_err(e)?,
        digest: digest(
            row.try_get("pepper_version").map_err(e)?,
            &row.try_get::<Vec<u8>, _>("digest").map_err(e)?,
        )?,
        previous: previous_digest(
            row.try_get("previous_pepper_version").map_err(e)?,
            row.try_get("previous_digest").map_err(e)?,
            row.try_get("previous_valid_until").map_err(e)?,
        )?,
        created_by: row
            .try_get::<Option<Uuid>, _>("created_by")
            .map_err(e)?
            .map(KeyId::from_uuid),
        rate_limit: rate_limit(
            row.try_get("rate_limit").map_err(e)?,
            row.try_get("rate_period_secs").map_err(e)?,
        )?,
        credits: CreditColumns {
            remaining: row.try_get("credits_remaining").map_err(e)?,
            refill_amount: row.try_get("credits_refill_amount").map_err(e)?,
            refill_every_secs: row.try_get("credits_refill_every_secs").map_err(e)?,
            refilled_at: row.try_get("credits_refilled_at").map_err(e)?,
        }
        .credits()?,
    })
}

fn decode_user(row: &PgRow) -> Result<UserRecord, StoreError> {
    let e = failed("decode a user row");
    Ok(UserRecord {
        id: OwnerId::new(row.try_get::<String, _>("id").map_err(e)?),
        email: row.try_get("email").map_err(e)?,
        password_hash: row.try_get("password_hash").map_err(e)?,
        scopes: nexora_auth_sql::scopes(row.try_get("scopes").map_err(e)?)?,
        created_at: row.try_get("created_at").map_err(e)?,
        disabled: row.try_get("disabled").map_err(e)?,
        rate_limit: rate_limit(
            row.try_get("rate_limit").map_err(e)?,
            row.try_get("rate_period_secs").map_err(e)?,
        )?,
    })
}

fn decode_audit(row: &PgRow) -> Result<AuditEvent, StoreError> {
    let e = failed("decode an audit row");
    AuditRow::new(
        EventId::from_uuid(row.try_get("id").map_err(e)?),
        row.try_get("at").map_err(e)?,
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

impl PostgresStore {
    /// Takes the per-owner lineage lock for the rest of `tx` (see [`LINEAGE_LOCK_CLASS`]).
    async fn lock_lineage(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        owner: &OwnerId,
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LINEAGE_LOCK_CLASS)
            .bind(owner.as_str())
            .execute(&mut **tx)
            .await
            .map_err(failed("take the lineage lock"))?;
        Ok(())
    }

    async fn insert_key<'e, E>(&self, r: &KeyRecord, executor: E) -> Result<(), StoreError>
    where
        E: sqlx::PgExecutor<'e>,
    {
        let inserted = sqlx::query(self.sql.insert_key.clone())
            .bind(r.id.as_uuid())
            .bind(r.owner.as_str())
            .bind(r.name.as_str())
            .bind(scope_list(&r.scopes))
            .bind(r.created_at)
            .bind(r.last_used_at)
            .bind(r.expires_at)
            .bind(r.revoked_at)
            .bind(r.display.as_str())
            .bind(i64::from(r.digest.pepper_version))
            .bind(r.digest.digest.as_bytes().as_slice())
            .bind(r.previous.map(|p| i64::from(p.digest.pepper_version)))
            .bind(r.previous.map(|p| p.digest.digest.as_bytes().to_vec()))
            .bind(r.previous.map(|p| p.valid_until))
            .bind(r.created_by.map(|c| *c.as_uuid()));
        let (limit, period) = rate_limit_columns(r.rate_limit);
        let credits = CreditColumns::of(r.credits.as_ref());
        let inserted = inserted
            .bind(limit)
            .bind(period)
            .bind(credits.remaining)
            .bind(credits.refill_amount)
            .bind(credits.refill_every_secs)
            .bind(credits.refilled_at)
            .execute(executor)
            .await;
        key_inserted(
            inserted.map(|done| done.rows_affected()),
            failed("insert a key"),
        )
    }

    /// Revokes the owner's key `id` on `conn`: the pool's, or a cascade's transaction.
    async fn revoke_one(
        &self,
        conn: &mut PgConnection,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let done = sqlx::query(self.sql.revoke.clone())
            .bind(at)
            .bind(id.as_uuid())
            .bind(owner.as_str())
            .execute(&mut *conn)
            .await
            .map_err(failed("revoke a key"))?;
        revoke_outcome(done.rows_affected(), async {
            let row = sqlx::query(self.sql.key_exists.clone())
                .bind(id.as_uuid())
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
impl KeyStore for PostgresStore {
    async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
        if r.created_by.is_none() {
            self.insert_key(r, &self.pool).await?;
        } else {
            let mut tx = self.pool.begin().await.map_err(failed("begin an insert"))?;
            self.lock_lineage(&mut tx, &r.owner).await?;
            self.insert_key(r, &mut *tx).await?;
            tx.commit().await.map_err(failed("commit an insert"))?;
        }
        // A cached "no such key" for this id is now wrong.
        self.feed.feeds().key_changed(r.id);
        Ok(())
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(self.sql.find_key.clone())
            .bind(id.as_uuid())
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
        let row = sqlx::query(self.sql.rotate.clone())
            .bind(rotation.grace_until)
            .bind(rotation.digest.digest.as_bytes().as_slice())
            .bind(i64::from(rotation.digest.pepper_version))
            .bind(rotation.display.as_str())
            .bind(id.as_uuid())
            .bind(owner.as_str())
            .bind(rotation.now)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("rotate a key"))?;
        if let Some(row) = row {
            self.feed.feeds().key_changed(id);
            return Ok(RotateOutcome::Rotated(decode_key(&row)?));
        }
        // Nothing rotated: say why. Revocation and expiry never undo themselves, so the state
        // read now explains the refused update.
        let state: Option<(Option<OffsetDateTime>, Option<OffsetDateTime>)> =
            sqlx::query_as(self.sql.key_state.clone())
                .bind(id.as_uuid())
                .bind(owner.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(failed("read a key's state"))?;
        RotateOutcome::refusal(state.map(|(revoked_at, expires_at)| {
            key_state(revoked_at.is_some(), expires_at, rotation.now)
        }))
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(failed("revoke a key"))?;
        let outcome = self.revoke_one(&mut conn, owner, id, at).await?;
        if outcome == RevokeOutcome::Revoked {
            self.feed.feeds().key_changed(id);
        }
        Ok(outcome)
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(failed("begin a cascading revoke"))?;
        // Every statement after the lock sees every child committed before it, and an insert
        // under this tree waits for the commit, then finds its creator revoked.
        self.lock_lineage(&mut tx, owner).await?;
        let root = self.revoke_one(&mut tx, owner, id, at).await?;
        if root == RevokeOutcome::NotFound {
            return Ok(CascadeOutcome::new(root, Vec::new()));
        }
        let descendants: Vec<Uuid> = sqlx::query_scalar(self.sql.revoke_descendants.clone())
            .bind(at)
            .bind(id.as_uuid())
            .bind(owner.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("revoke a key's descendants"))?;
        tx.commit()
            .await
            .map_err(failed("commit a cascading revoke"))?;
        let descendants: Vec<KeyId> = descendants.into_iter().map(KeyId::from_uuid).collect();
        let feeds = self.feed.feeds();
        if root == RevokeOutcome::Revoked {
            feeds.key_changed(id);
        }
        for descendant in &descendants {
            feeds.key_changed(*descendant);
        }
        Ok(CascadeOutcome::new(root, descendants))
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = batch.iter().map(|u| *u.id.as_uuid()).collect();
        let times: Vec<OffsetDateTime> = batch.iter().map(|u| u.at).collect();
        sqlx::query(self.sql.last_used.clone())
            .bind(ids)
            .bind(times)
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
            .bind(credits.refilled_at)
            .bind(id.as_uuid())
            .bind(owner.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("update a key"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        // Reported here as rotate is; other instances learn it from the change log.
        self.feed.feeds().key_changed(id);
        decode_key(&row).map(Some)
    }

    // Not reported to the change feed, and not logged (the log's trigger skips updates that
    // only move the credit count and its refill time, see `limits_schema`): what a cache holds
    // of a key (`KeyCredentials`) carries only whether it is metered, which a swap never
    // changes; the count itself is read from the store whenever a lease runs out.
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
            .bind(new.refilled_at)
            .bind(id.as_uuid())
            .bind(current.remaining)
            .bind(current.refill_amount)
            .bind(current.refill_every_secs)
            .bind(current.refilled_at)
            .execute(&self.pool)
            .await
            .map_err(failed("swap a key's credits"))?;
        Ok(done.rows_affected() > 0)
    }

    /// [`Freshness::Watched`]: see the crate docs, "Change feed".
    fn watch_changes(&self, feed: ChangeFeed) -> Freshness {
        self.attach(feed)
    }
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let result = sqlx::query(self.sql.insert_user.clone())
            .bind(user.id.as_str())
            .bind(user.email.as_str())
            .bind(user.password_hash.as_str())
            .bind(scope_list(&user.scopes))
            .bind(user.created_at)
            .bind(user.disabled)
            .bind(rate_limit_columns(user.rate_limit).0)
            .bind(rate_limit_columns(user.rate_limit).1)
            .execute(&self.pool)
            .await;
        user_inserted(
            result.map(drop),
            |d| d.constraint() == Some(self.sql.users_email_key.as_str()),
            failed("insert a user"),
        )?;
        // A cached "no such user" for this id is now wrong.
        self.feed.feeds().user_changed(&user.id);
        Ok(())
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
            .map_err(failed("disable or enable a user"))?;
        self.user_written(id, done.rows_affected())
    }

    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.set_scopes.clone())
            .bind(scope_list(scopes))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("set a user's scopes"))?;
        self.user_written(id, done.rows_affected())
    }

    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.delete_user.clone())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("delete a user"))?;
        self.user_written(id, done.rows_affected())
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
            .map_err(failed("set an owner's rate limit"))?;
        // The cache keeps the owner's limit with the user's status.
        self.user_written(id, done.rows_affected())
    }

    /// [`Freshness::Watched`]: see the crate docs, "Change feed".
    fn watch_user_changes(&self, feed: ChangeFeed) -> Freshness {
        self.attach(feed)
    }
}

impl PostgresStore {
    /// Reports a user update that committed (`rows` it changed) to this store's feeds.
    fn user_written(&self, id: &OwnerId, rows: u64) -> Result<bool, StoreError> {
        if rows > 0 {
            self.feed.feeds().user_changed(id);
        }
        Ok(rows > 0)
    }
}

/// Single use across instances: a take is one `DELETE … RETURNING` on the shared database.
#[async_trait]
impl TicketStore for PostgresStore {
    async fn insert_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        let result = sqlx::query(self.sql.insert_ticket.clone())
            .bind(ticket.digest.as_bytes().as_slice())
            .bind(ticket.owner.as_str())
            .bind(ticket.chat_id.as_deref())
            .bind(&ticket.principal)
            .bind(ticket.created_at)
            .bind(ticket.expires_at)
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
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("take a ticket"))?;
        row.as_ref().map(decode_ticket).transpose()
    }

    async fn prune_tickets(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(self.sql.prune_tickets.clone())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(failed("prune tickets"))?;
        Ok(done.rows_affected())
    }
}

fn decode_ticket(row: &PgRow) -> Result<TicketRecord, StoreError> {
    let e = failed("decode a ticket row");
    Ok(TicketRecord {
        digest: ticket_digest(&row.try_get::<Vec<u8>, _>("digest").map_err(e)?)?,
        owner: OwnerId::new(row.try_get::<String, _>("owner").map_err(e)?),
        chat_id: row.try_get("chat_id").map_err(e)?,
        principal: row.try_get("principal").map_err(e)?,
        created_at: row.try_get("created_at").map_err(e)?,
        expires_at: row.try_get("expires_at").map_err(e)?,
    })
}
#[async_trait]
impl AuditStore for PostgresStore {
    async fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<AuditRow> = events.iter().map(AuditRow::of).collect();
        let column = |f: fn(&AuditRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        let inserted = sqlx::query(self.sql.record_audit.clone())
            .bind(rows.iter().map(|r| *r.id.as_uuid()).collect::<Vec<Uuid>>())
            .bind(rows.iter().map(|r| r.at).collect::<Vec<OffsetDateTime>>())
            .bind(column(|r| Some(r.action.clone())))
            .bind(column(|r| Some(r.actor_kind.clone())))
            .bind(column(|r| r.actor_id.clone()))
            .bind(column(|r| r.owner.clone()))
            .bind(column(|r| r.target.clone()))
            .bind(column(|r| r.client.clone()))
            .bind(column(|r| Some(r.outcome.clone())))
            .bind(column(|r| Some(r.detail.clone())))
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected());
        audit_recorded(inserted, failed("record audit events"))
    }

    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let before = *audit_cursor(query.before).as_uuid();
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
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(failed("prune audit events"))?;
        Ok(done.rows_affected())
    }
}
