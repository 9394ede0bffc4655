//! SQLite storage for `nexora-auth`: [`SqliteStore`] implements both [`KeyStore`] and
//! [`UserStore`] over the host application's own [`SqlitePool`].
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
//! [`SqliteStore::new`] creates (idempotently) three tables named with a prefix, by default
//! `nexora_`: `nexora_api_keys`, `nexora_users` and `nexora_auth_migrations`, which records the
//! schema versions applied. They never touch sqlx's `_sqlx_migrations`, so the host's own
//! `sqlx::migrate!` runs in the same database undisturbed. Change the prefix with
//! [`SqliteStore::builder`].
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
//! # Errors
//!
//! Every failure of the database (a closed pool, a timeout, I/O, a corrupt row) is
//! [`StoreError::Unavailable`] — never "not found". A duplicate key id is
//! [`StoreError::DuplicateId`]; a duplicate user email [`StoreError::DuplicateEmail`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use nexora_auth::{
    KeyDigest, KeyId, KeyStore, OwnerId, Scopes, StoreError, StoredDigest, UserRecord, UserStore,
    store::{
        CascadeOutcome, KeyRecord, KeyState, LastUsed, PreviousDigest, RevokeOutcome,
        RotateOutcome, Rotation, is_valid_table_prefix,
    },
};
use sqlx::{
    AssertSqlSafe, Row, SqlitePool,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};
use time::OffsetDateTime;

/// The table prefix used unless [`SqliteStoreBuilder::table_prefix`] says otherwise.
pub const DEFAULT_TABLE_PREFIX: &str = "nexora_";
/// The busy timeout [`connect_options`] sets: 5 seconds.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: i64 = 2;

/// Failure to set the store up (at startup; the store's own methods return [`StoreError`]).
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
    #[error("SQLite setup failed: {context}")]
    Database {
        /// What was being done.
        context: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
}

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
        .map_err(|source| SetupError::Database {
            context: "connect",
            source,
        })
}

/// A [`KeyStore`] and [`UserStore`] on SQLite. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    sql: Arc<Queries>,
}

/// Options for [`SqliteStore`]; start with [`SqliteStore::builder`].
#[derive(Debug)]
#[must_use]
pub struct SqliteStoreBuilder {
    pool: SqlitePool,
    prefix: String,
    migrate: bool,
}

impl SqliteStoreBuilder {
    /// The prefix of the store's tables. Defaults to [`DEFAULT_TABLE_PREFIX`] (`nexora_`).
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Whether [`build`](Self::build) runs the migrations. Defaults to `true`; turn it off when
    /// a deployment step runs [`SqliteStore::migrate`] instead.
    pub fn run_migrations(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Validates the options and, unless told otherwise, migrates.
    pub async fn build(self) -> Result<SqliteStore, SetupError> {
        let prefix = self.prefix;
        if !is_valid_table_prefix(&prefix) {
            return Err(SetupError::InvalidTablePrefix(prefix));
        }
        let store = SqliteStore {
            pool: self.pool,
            sql: Arc::new(Queries::new(&prefix)),
        };
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }
}

impl SqliteStore {
    /// A store over `pool` with the default options: tables prefixed `nexora_`, migrated now.
    pub async fn new(pool: SqlitePool) -> Result<Self, SetupError> {
        Self::builder(pool).build().await
    }

    /// Options for a store over `pool`.
    pub fn builder(pool: SqlitePool) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            pool,
            prefix: DEFAULT_TABLE_PREFIX.to_owned(),
            migrate: true,
        }
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates or upgrades the store's tables; running it again does nothing. Concurrent runs
    /// serialise on SQLite's write lock (`BEGIN IMMEDIATE`).
    pub async fn migrate(&self) -> Result<(), SetupError> {
        let db = |context| move |source| SetupError::Database { context, source };
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("begin migration"))?;
        sqlx::raw_sql(AssertSqlSafe(self.sql.migrations_table.clone()))
            .execute(&mut *tx)
            .await
            .map_err(db("create the migrations table"))?;
        let applied: Option<i64> =
            sqlx::query_scalar(AssertSqlSafe(self.sql.schema_version.clone()))
                .fetch_one(&mut *tx)
                .await
                .map_err(db("read the schema version"))?;
        let applied = applied.unwrap_or(0);
        if applied > SCHEMA_VERSION {
            return Err(SetupError::SchemaTooNew {
                found: applied,
                known: SCHEMA_VERSION,
            });
        }
        for (version, description, ddl) in self.sql.migrations.iter().filter(|m| m.0 > applied) {
            sqlx::raw_sql(AssertSqlSafe(ddl.clone()))
                .execute(&mut *tx)
                .await
                .map_err(db("apply a migration"))?;
            sqlx::query(AssertSqlSafe(self.sql.record_migration.clone()))
                .bind(version)
                .bind(description)
                .bind(micros(OffsetDateTime::now_utc()))
                .execute(&mut *tx)
                .await
                .map_err(db("record a migration"))?;
        }
        tx.commit().await.map_err(db("commit the migration"))
    }
}

/// Every statement, with the table prefix spliced in once at construction.
#[derive(Debug)]
struct Queries {
    migrations_table: String,
    schema_version: String,
    record_migration: String,
    migrations: Vec<(i64, &'static str, String)>,
    insert_key: String,
    find_key: String,
    list_keys: String,
    rotate: String,
    key_state: String,
    revoke: String,
    revoke_descendants: String,
    key_exists: String,
    last_used: String,
    insert_user: String,
    user_by_email: String,
    user_by_id: String,
    update_password: String,
    list_users: String,
    set_disabled: String,
    set_scopes: String,
    delete_user: String,
}

const KEY_COLUMNS: &str = "id, owner, name, scopes, created_at, last_used_at, expires_at, revoked_at, display, \
     pepper_version, digest, previous_pepper_version, previous_digest, previous_valid_until, created_by";
const USER_COLUMNS: &str = "id, email, password_hash, scopes, created_at, disabled";

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
        Self {
            migrations_table: format!(
                "CREATE TABLE IF NOT EXISTS {p}auth_migrations (
                    version INTEGER NOT NULL PRIMARY KEY,
                    description TEXT NOT NULL,
                    applied_at INTEGER NOT NULL
                )"
            ),
            schema_version: format!("SELECT max(version) FROM {p}auth_migrations"),
            record_migration: format!(
                "INSERT INTO {p}auth_migrations (version, description, applied_at) VALUES (?, ?, ?)"
            ),
            migrations: vec![
                (1, "api keys and users", v1),
                (2, "key lineage and disabled users", v2),
            ],
            // One statement: the creator check and the insert are atomic (SQLite has one
            // writer at a time), so a cascade never misses a child.
            insert_key: format!(
                "INSERT INTO {keys} ({KEY_COLUMNS})
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15
                 WHERE ?15 IS NULL
                    OR EXISTS (SELECT 1 FROM {keys} WHERE id = ?15 AND owner = ?2 AND revoked_at IS NULL)"
            ),
            find_key: format!("SELECT {KEY_COLUMNS} FROM {keys} WHERE id = ?"),
            list_keys: format!(
                "SELECT {KEY_COLUMNS} FROM {keys} WHERE owner = ? AND revoked_at IS NULL ORDER BY created_at, id"
            ),
            // SET expressions read the row as it was before the update: `digest` on the right
            // is the old digest, which becomes the previous one when there is a grace period.
            rotate: format!(
                "UPDATE {keys} SET
                    previous_digest = CASE WHEN ?1 IS NULL THEN NULL ELSE digest END,
                    previous_pepper_version = CASE WHEN ?1 IS NULL THEN NULL ELSE pepper_version END,
                    previous_valid_until = ?1,
                    digest = ?2, pepper_version = ?3, display = ?4
                 WHERE id = ?5 AND owner = ?6 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?7)
                 RETURNING {KEY_COLUMNS}"
            ),
            key_state: format!("SELECT revoked_at, expires_at FROM {keys} WHERE id = ? AND owner = ?"),
            revoke: format!(
                "UPDATE {keys} SET revoked_at = ?, previous_digest = NULL, previous_pepper_version = NULL,
                    previous_valid_until = NULL
                 WHERE id = ? AND owner = ? AND revoked_at IS NULL"
            ),
            revoke_descendants: format!(
                "WITH RECURSIVE tree(id) AS (
                    SELECT id FROM {keys} WHERE created_by = ?2 AND owner = ?3
                    UNION
                    SELECT k.id FROM {keys} k JOIN tree ON k.created_by = tree.id WHERE k.owner = ?3
                 )
                 UPDATE {keys} SET revoked_at = ?1, previous_digest = NULL,
                    previous_pepper_version = NULL, previous_valid_until = NULL
                 WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL
                 RETURNING id"
            ),
            key_exists: format!("SELECT 1 FROM {keys} WHERE id = ? AND owner = ?"),
            // One statement for the whole batch: the batch is a JSON array of [hex id, micros];
            // the latest time per id wins and never replaces a later stored one.
            last_used: format!(
                "UPDATE {keys} SET last_used_at = batch.at
                 FROM (SELECT unhex(json_extract(value, '$[0]')) AS id, max(json_extract(value, '$[1]')) AS at
                       FROM json_each(?) GROUP BY 1) AS batch
                 WHERE {keys}.id = batch.id AND ({keys}.last_used_at IS NULL OR {keys}.last_used_at < batch.at)"
            ),
            insert_user: format!("INSERT INTO {users} ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"),
            user_by_email: format!("SELECT {USER_COLUMNS} FROM {users} WHERE email = ?"),
            user_by_id: format!("SELECT {USER_COLUMNS} FROM {users} WHERE id = ?"),
            update_password: format!("UPDATE {users} SET password_hash = ? WHERE id = ?"),
            list_users: format!("SELECT {USER_COLUMNS} FROM {users} ORDER BY created_at, id"),
            set_disabled: format!("UPDATE {users} SET disabled = ? WHERE id = ?"),
            set_scopes: format!("UPDATE {users} SET scopes = ? WHERE id = ?"),
            delete_user: format!("DELETE FROM {users} WHERE id = ?"),
        }
    }
}

fn sql(text: &str) -> AssertSqlSafe<String> {
    // Only our own statements reach here: the table prefix was validated as [a-z0-9_]*.
    AssertSqlSafe(text.to_owned())
}

// ----- conversions ---------------------------------------------------------------------------

fn micros(t: OffsetDateTime) -> i64 {
    let m = t.unix_timestamp_nanos().div_euclid(1_000);
    // OffsetDateTime spans ±9999 years: ±3.2e17 µs, well inside i64.
    i64::try_from(m).unwrap_or(if m < 0 { i64::MIN } else { i64::MAX })
}

fn from_micros(m: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000)
        .map_err(|e| StoreError::backend("corrupt row: timestamp out of range", e))
}

fn opt_micros(m: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    m.map(from_micros).transpose()
}

fn failed(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::backend(format!("sqlite: {op} failed"), e)
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::unavailable(format!("corrupt row: {what}"))
}

fn scopes_json(scopes: &Scopes) -> String {
    // A list of strings always serialises.
    serde_json::to_string(&scopes.iter().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_scopes(text: &str) -> Result<Scopes, StoreError> {
    let list: Vec<String> =
        serde_json::from_str(text).map_err(|e| StoreError::backend("corrupt row: scopes", e))?;
    Scopes::new(list).map_err(|e| StoreError::backend("corrupt row: scopes", e))
}

fn digest(version: i64, bytes: &[u8]) -> Result<StoredDigest, StoreError> {
    Ok(StoredDigest {
        pepper_version: u32::try_from(version).map_err(|_| corrupt("pepper version"))?,
        digest: KeyDigest::try_from(bytes).map_err(|_| corrupt("digest length"))?,
    })
}

fn decode_key(row: &SqliteRow) -> Result<KeyRecord, StoreError> {
    let id: Vec<u8> = row.try_get("id").map_err(failed("decode a key row"))?;
    let id = uuid::Uuid::from_slice(&id).map_err(|_| corrupt("key id"))?;
    let previous = match (
        row.try_get::<Option<i64>, _>("previous_pepper_version")
            .map_err(failed("decode"))?,
        row.try_get::<Option<Vec<u8>>, _>("previous_digest")
            .map_err(failed("decode"))?,
        row.try_get::<Option<i64>, _>("previous_valid_until")
            .map_err(failed("decode"))?,
    ) {
        (Some(version), Some(bytes), Some(until)) => Some(PreviousDigest {
            digest: digest(version, &bytes)?,
            valid_until: from_micros(until)?,
        }),
        _ => None,
    };
    let scopes: String = row.try_get("scopes").map_err(failed("decode"))?;
    let record = KeyRecord {
        id: KeyId::from_uuid(id),
        owner: OwnerId::new(
            row.try_get::<String, _>("owner")
                .map_err(failed("decode"))?,
        ),
        name: row.try_get("name").map_err(failed("decode"))?,
        scopes: parse_scopes(&scopes)?,
        created_at: from_micros(row.try_get("created_at").map_err(failed("decode"))?)?,
        last_used_at: opt_micros(row.try_get("last_used_at").map_err(failed("decode"))?)?,
        expires_at: opt_micros(row.try_get("expires_at").map_err(failed("decode"))?)?,
        revoked_at: opt_micros(row.try_get("revoked_at").map_err(failed("decode"))?)?,
        display: row.try_get("display").map_err(failed("decode"))?,
        digest: digest(
            row.try_get("pepper_version").map_err(failed("decode"))?,
            &row.try_get::<Vec<u8>, _>("digest")
                .map_err(failed("decode"))?,
        )?,
        previous,
        created_by: row
            .try_get::<Option<Vec<u8>>, _>("created_by")
            .map_err(failed("decode"))?
            .map(|bytes| uuid::Uuid::from_slice(&bytes).map(KeyId::from_uuid))
            .transpose()
            .map_err(|_| corrupt("created_by"))?,
    };
    Ok(record)
}

fn decode_user(row: &SqliteRow) -> Result<UserRecord, StoreError> {
    let scopes: String = row.try_get("scopes").map_err(failed("decode a user row"))?;
    Ok(UserRecord {
        id: OwnerId::new(
            row.try_get::<String, _>("id")
                .map_err(failed("decode a user row"))?,
        ),
        email: row.try_get("email").map_err(failed("decode a user row"))?,
        password_hash: row
            .try_get("password_hash")
            .map_err(failed("decode a user row"))?,
        scopes: parse_scopes(&scopes)?,
        created_at: from_micros(
            row.try_get("created_at")
                .map_err(failed("decode a user row"))?,
        )?,
        disabled: row
            .try_get("disabled")
            .map_err(failed("decode a user row"))?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> Option<&dyn sqlx::error::DatabaseError> {
    e.as_database_error().filter(|d| d.is_unique_violation())
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
        let result = sqlx::query(sql(&self.sql.insert_key))
            .bind(r.id.as_uuid().as_bytes().as_slice())
            .bind(r.owner.as_str())
            .bind(r.name.as_str())
            .bind(scopes_json(&r.scopes))
            .bind(micros(r.created_at))
            .bind(r.last_used_at.map(micros))
            .bind(r.expires_at.map(micros))
            .bind(r.revoked_at.map(micros))
            .bind(r.display.as_str())
            .bind(i64::from(r.digest.pepper_version))
            .bind(r.digest.digest.as_bytes().as_slice())
            .bind(r.previous.map(|p| i64::from(p.digest.pepper_version)))
            .bind(r.previous.map(|p| p.digest.digest.as_bytes().to_vec()))
            .bind(r.previous.map(|p| micros(p.valid_until)))
            .bind(r.created_by.map(|c| c.as_uuid().as_bytes().to_vec()))
            .execute(&self.pool)
            .await;
        match result {
            Ok(done) if done.rows_affected() == 0 => Err(StoreError::CreatorRevoked),
            Ok(_) => Ok(()),
            // The key table's only unique constraint is its primary key.
            Err(e) if is_unique_violation(&e).is_some() => Err(StoreError::DuplicateId),
            Err(e) => Err(failed("insert a key")(e)),
        }
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(sql(&self.sql.find_key))
            .bind(id.as_uuid().as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("find a key"))?;
        row.as_ref().map(decode_key).transpose()
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(sql(&self.sql.list_keys))
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
        let row = sqlx::query(sql(&self.sql.rotate))
            .bind(rotation.grace_until.map(micros))
            .bind(rotation.digest.digest.as_bytes().as_slice())
            .bind(i64::from(rotation.digest.pepper_version))
            .bind(rotation.display.as_str())
            .bind(id.as_uuid().as_bytes().as_slice())
            .bind(owner.as_str())
            .bind(micros(rotation.now))
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("rotate a key"))?;
        if let Some(row) = row {
            return Ok(RotateOutcome::Rotated(decode_key(&row)?));
        }
        // Nothing rotated: say why. Revocation and expiry never undo themselves, so the state
        // read now explains the refused update.
        let state: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(sql(&self.sql.key_state))
            .bind(id.as_uuid().as_bytes().as_slice())
            .bind(owner.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("read a key's state"))?;
        RotateOutcome::refusal(state.map(|(revoked_at, expires_at)| KeyState {
            revoked: revoked_at.is_some(),
            // Compared at the database's (microsecond) precision, as the UPDATE did.
            expired: expires_at.is_some_and(|expires| expires <= micros(rotation.now)),
        }))
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let id_bytes = id.as_uuid().as_bytes().as_slice();
        let done = sqlx::query(sql(&self.sql.revoke))
            .bind(micros(at))
            .bind(id_bytes)
            .bind(owner.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("revoke a key"))?;
        if done.rows_affected() > 0 {
            return Ok(RevokeOutcome::Revoked);
        }
        let exists = sqlx::query(sql(&self.sql.key_exists))
            .bind(id_bytes)
            .bind(owner.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("read a key's state"))?;
        Ok(if exists.is_some() {
            RevokeOutcome::AlreadyRevoked
        } else {
            RevokeOutcome::NotFound
        })
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        let id_bytes = id.as_uuid().as_bytes().as_slice();
        // The write lock from the first statement on: no insert can slip between the root's
        // revocation and the walk of its tree.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(failed("begin a cascading revoke"))?;
        let root = sqlx::query(sql(&self.sql.revoke))
            .bind(micros(at))
            .bind(id_bytes)
            .bind(owner.as_str())
            .execute(&mut *tx)
            .await
            .map_err(failed("revoke a key"))?;
        let root = if root.rows_affected() > 0 {
            RevokeOutcome::Revoked
        } else {
            let exists = sqlx::query(sql(&self.sql.key_exists))
                .bind(id_bytes)
                .bind(owner.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(failed("read a key's state"))?;
            if exists.is_none() {
                return Ok(CascadeOutcome::new(RevokeOutcome::NotFound, Vec::new()));
            }
            RevokeOutcome::AlreadyRevoked
        };
        let rows = sqlx::query(sql(&self.sql.revoke_descendants))
            .bind(micros(at))
            .bind(id_bytes)
            .bind(owner.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("revoke a key's descendants"))?;
        let descendants = rows
            .iter()
            .map(|row| {
                let bytes: Vec<u8> = row.try_get("id").map_err(failed("decode"))?;
                uuid::Uuid::from_slice(&bytes)
                    .map(KeyId::from_uuid)
                    .map_err(|_| corrupt("key id"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()
            .await
            .map_err(failed("commit a cascading revoke"))?;
        Ok(CascadeOutcome::new(root, descendants))
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let entries: Vec<String> = batch
            .iter()
            .map(|u| format!("[\"{}\",{}]", u.id.as_uuid().simple(), micros(u.at)))
            .collect();
        let json = format!("[{}]", entries.join(","));
        sqlx::query(sql(&self.sql.last_used))
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(failed("record last-used times"))?;
        Ok(())
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let result = sqlx::query(sql(&self.sql.insert_user))
            .bind(user.id.as_str())
            .bind(user.email.as_str())
            .bind(user.password_hash.as_str())
            .bind(scopes_json(&user.scopes))
            .bind(micros(user.created_at))
            .bind(user.disabled)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match is_unique_violation(&e) {
                // SQLite names the column, not the constraint: "UNIQUE constraint failed: t.email".
                Some(d) if d.message().ends_with("users.email") => Err(StoreError::DuplicateEmail),
                Some(_) => Err(StoreError::DuplicateId),
                None => Err(failed("insert a user")(e)),
            },
        }
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(sql(&self.sql.user_by_email))
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("find a user"))?;
        row.as_ref().map(decode_user).transpose()
    }

    async fn find_user(&self, id: &OwnerId) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(sql(&self.sql.user_by_id))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("find a user"))?;
        row.as_ref().map(decode_user).transpose()
    }

    async fn update_password_hash(&self, id: &OwnerId, phc: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(sql(&self.sql.update_password))
            .bind(phc)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("update a password hash"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(sql(&self.sql.list_users))
            .fetch_all(&self.pool)
            .await
            .map_err(failed("list users"))?;
        rows.iter().map(decode_user).collect()
    }

    async fn set_user_disabled(&self, id: &OwnerId, disabled: bool) -> Result<bool, StoreError> {
        let done = sqlx::query(sql(&self.sql.set_disabled))
            .bind(disabled)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("disable or enable a user"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError> {
        let done = sqlx::query(sql(&self.sql.set_scopes))
            .bind(scopes_json(scopes))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("set a user's scopes"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError> {
        let done = sqlx::query(sql(&self.sql.delete_user))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("delete a user"))?;
        Ok(done.rows_affected() > 0)
    }
}
