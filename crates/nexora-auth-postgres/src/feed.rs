//! The Postgres half of the change feed: the log's schema (triggers), and the
//! [`ChangeLog`] the watcher of `nexora_auth_sql::feed` runs on — one dedicated connection that
//! `LISTEN`s, reads the log and prunes it (see the crate docs, "Change feed").

use std::{sync::Arc, time::Duration};

use nexora_auth::{KeyId, OwnerId, StoreError};
use nexora_auth_sql::{
    corrupt,
    feed::{ChangeLog, LogBatch, LogConnection, LogRow, LoggedChange, Wake},
};
use sqlx::{
    PgPool, Row,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{Queries, failed};

/// The `application_name` of the watcher's connection, so an operator (or a test) can find it
/// in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "nexora-auth-listener";

/// How long the watcher waits for its connection before counting a failed attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version 3: the change log, its head, and the triggers that fill them.
///
/// Every change to a key or user row — by this crate, the server's CLI, or SQL typed by hand —
/// appends a row `(seq, kind, key_id, owner)` in the same transaction as the change, and
/// notifies `{prefix}auth_changes` with the `seq`. Updates of a key that only move
/// `last_used_at` are not logged (the authenticator writes them in batches all day; they
/// change nothing a cache holds). `TRUNCATE` of either table logs kind `all`.
pub(crate) fn change_log_schema(p: &str, keys: &str, users: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {p}auth_changes (
            seq bigint NOT NULL,
            kind text NOT NULL,
            key_id uuid,
            owner text,
            at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT {p}auth_changes_pkey PRIMARY KEY (seq),
            CONSTRAINT {p}auth_changes_kind CHECK (kind IN ('key', 'user', 'all'))
        );
        CREATE INDEX IF NOT EXISTS {p}auth_changes_at ON {p}auth_changes (at);
        CREATE TABLE IF NOT EXISTS {p}auth_changes_head (
            one boolean NOT NULL DEFAULT true,
            seq bigint NOT NULL,
            CONSTRAINT {p}auth_changes_head_pkey PRIMARY KEY (one),
            CONSTRAINT {p}auth_changes_head_one CHECK (one)
        );
        INSERT INTO {p}auth_changes_head (one, seq) VALUES (true, 0) ON CONFLICT DO NOTHING;

        -- Appends one row to the log.
        --
        -- Why seq is gap-free and in commit order: the UPDATE takes the head row's lock and
        -- holds it until this transaction commits or rolls back. A second writer's UPDATE
        -- waits for that, then reads the committed head (READ COMMITTED re-reads an updated
        -- row) and takes the next number; a rolled-back writer's number is taken again. So
        -- writers commit in seq order, and a transaction's commit is visible before its lock
        -- is released: a reader that sees seq N committed sees every seq below N. A reader
        -- can therefore replay `seq > last` without missing a row still in flight, and a
        -- missing number can only mean a deleted row.
        --
        -- `SET search_path FROM CURRENT` pins the tables to the schema the migration ran in,
        -- whatever the search_path of the session that fires the trigger.
        CREATE OR REPLACE FUNCTION {p}auth_log_change(change_kind text, change_key uuid, change_owner text)
        RETURNS void LANGUAGE plpgsql SET search_path FROM CURRENT AS $log$
        DECLARE
            n bigint;
        BEGIN
            UPDATE {p}auth_changes_head SET seq = seq + 1 RETURNING seq INTO n;
            INSERT INTO {p}auth_changes (seq, kind, key_id, owner)
                VALUES (n, change_kind, change_key, change_owner);
            PERFORM pg_notify('{p}auth_changes', n::text);
        END
        $log$;

        CREATE OR REPLACE FUNCTION {p}auth_key_changed() RETURNS trigger
        LANGUAGE plpgsql SET search_path FROM CURRENT AS $key$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                PERFORM {p}auth_log_change('key', OLD.id, OLD.owner);
            END IF;
            IF TG_OP = 'INSERT' OR NEW.id IS DISTINCT FROM OLD.id THEN
                PERFORM {p}auth_log_change('key', NEW.id, NEW.owner);
            END IF;
            RETURN NULL;
        END
        $key$;

        CREATE OR REPLACE FUNCTION {p}auth_user_changed() RETURNS trigger
        LANGUAGE plpgsql SET search_path FROM CURRENT AS $user$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                PERFORM {p}auth_log_change('user', NULL, OLD.id);
            END IF;
            IF TG_OP = 'INSERT' OR NEW.id IS DISTINCT FROM OLD.id THEN
                PERFORM {p}auth_log_change('user', NULL, NEW.id);
            END IF;
            RETURN NULL;
        END
        $user$;

        CREATE OR REPLACE FUNCTION {p}auth_tables_truncated() RETURNS trigger
        LANGUAGE plpgsql SET search_path FROM CURRENT AS $all$
        BEGIN
            PERFORM {p}auth_log_change('all', NULL, NULL);
            RETURN NULL;
        END
        $all$;

        -- Constraint triggers, deferred to commit: the head row's lock is taken last, when the
        -- transaction already holds every row lock it will take. Taken at the row change
        -- instead, a cascading revoke (holding the head, then updating a child) and a revoke
        -- of that child (holding the child, then wanting the head) would deadlock. Deferred,
        -- the head is also held for the commit only, not for the whole transaction.
        DROP TRIGGER IF EXISTS {p}api_keys_changes ON {keys};
        CREATE CONSTRAINT TRIGGER {p}api_keys_changes AFTER INSERT OR DELETE ON {keys}
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {p}auth_key_changed();
        DROP TRIGGER IF EXISTS {p}api_keys_updates ON {keys};
        CREATE CONSTRAINT TRIGGER {p}api_keys_updates AFTER UPDATE ON {keys}
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
            EXECUTE FUNCTION {p}auth_key_changed();
        DROP TRIGGER IF EXISTS {p}api_keys_truncated ON {keys};
        CREATE TRIGGER {p}api_keys_truncated AFTER TRUNCATE ON {keys}
            FOR EACH STATEMENT EXECUTE FUNCTION {p}auth_tables_truncated();
        DROP TRIGGER IF EXISTS {p}users_changes ON {users};
        CREATE CONSTRAINT TRIGGER {p}users_changes AFTER INSERT OR DELETE ON {users}
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {p}auth_user_changed();
        DROP TRIGGER IF EXISTS {p}users_updates ON {users};
        CREATE CONSTRAINT TRIGGER {p}users_updates AFTER UPDATE ON {users}
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            WHEN (OLD.* IS DISTINCT FROM NEW.*)
            EXECUTE FUNCTION {p}auth_user_changed();
        DROP TRIGGER IF EXISTS {p}users_truncated ON {users};
        CREATE TRIGGER {p}users_truncated AFTER TRUNCATE ON {users}
            FOR EACH STATEMENT EXECUTE FUNCTION {p}auth_tables_truncated();"
    )
}

/// Schema version 6: the limit columns (all nullable, `bigint` because the core's counts are
/// `u32` and `u64`, which `integer` does not hold in full; the refill time a `timestamptz` like
/// every other), and the key
/// update trigger of version 3 made blind to credit swaps.
///
/// A credit compare-and-swap moves only `credits_remaining` and `credits_refilled_at`, as
/// often as instances lease credits. What a cache holds of a key carries only whether it is
/// metered, so those updates are not logged, as `last_used_at` updates are not; a change of
/// whether the key is metered (`credits_remaining` becoming or ceasing to be `NULL`) and every
/// other column still are. `ADD COLUMN IF NOT EXISTS` and `DROP TRIGGER IF EXISTS`: running it
/// again (a database upgraded from version 1 runs version 3 again first) is harmless.
pub(crate) fn limits_schema(p: &str, keys: &str, users: &str) -> String {
    format!(
        "ALTER TABLE {keys}
            ADD COLUMN IF NOT EXISTS rate_limit bigint,
            ADD COLUMN IF NOT EXISTS rate_period_secs bigint,
            ADD COLUMN IF NOT EXISTS credits_remaining bigint,
            ADD COLUMN IF NOT EXISTS credits_refill_amount bigint,
            ADD COLUMN IF NOT EXISTS credits_refill_every_secs bigint,
            ADD COLUMN IF NOT EXISTS credits_refilled_at timestamptz;
        ALTER TABLE {users}
            ADD COLUMN IF NOT EXISTS rate_limit bigint,
            ADD COLUMN IF NOT EXISTS rate_period_secs bigint;
        DROP TRIGGER IF EXISTS {p}api_keys_updates ON {keys};
        CREATE CONSTRAINT TRIGGER {p}api_keys_updates AFTER UPDATE ON {keys}
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            WHEN ((to_jsonb(OLD) - ARRAY['last_used_at', 'credits_remaining', 'credits_refilled_at'])
                    IS DISTINCT FROM
                  (to_jsonb(NEW) - ARRAY['last_used_at', 'credits_remaining', 'credits_refilled_at'])
                OR (OLD.credits_remaining IS NULL) <> (NEW.credits_remaining IS NULL))
            EXECUTE FUNCTION {p}auth_key_changed();"
    )
}

/// The change log of one store, as the watcher opens it.
#[derive(Debug)]
pub(crate) struct PgChangeLog {
    /// The store's pool: it names the schema the log is in.
    pub(crate) pool: PgPool,
    /// The store pool's options, named [`LISTENER_APPLICATION_NAME`].
    pub(crate) options: PgConnectOptions,
    pub(crate) sql: Arc<Queries>,
}

/// One dedicated connection: it `LISTEN`s, and it runs the log reads and the pruning, so the
/// feed never waits for the host's pool (nor adds to its load).
pub(crate) struct PgLogConnection {
    listener: PgListener,
    sql: Arc<Queries>,
}

impl ChangeLog for PgChangeLog {
    type Connection = PgLogConnection;

    async fn connect(&self) -> Result<PgLogConnection, StoreError> {
        // A pool of one, only because PgListener is built from a pool; no reconnects happen
        // through it (a lost connection drops this listener, and the watcher opens another).
        // The schema the store's own statements resolve to, which the pool may set in ways
        // its options do not show (an `after_connect` hook): the listener reads that one.
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&self.pool)
            .await
            .map_err(failed("find the store's schema"))?;
        let schema = schema.ok_or_else(|| {
            StoreError::unavailable("postgres: the store's search_path names no existing schema")
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(CONNECT_TIMEOUT)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(self.options.clone());
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(failed("open the change listener"))?;
        // The pool is private to this listener and never closed.
        listener.ignore_pool_close_event(true);
        // A lost connection must come back from try_recv as Ok(None) at once, not after a
        // reconnect that waits for the server (up to the connect timeout) while the caches
        // still trust what they hold.
        listener.eager_reconnect(false);
        sqlx::query("SELECT set_config('search_path', quote_ident($1), false)")
            .bind(schema)
            .execute(&mut listener)
            .await
            .map_err(failed("set the listener's schema"))?;
        listener
            .listen(&self.sql.channel)
            .await
            .map_err(failed("listen for changes"))?;
        Ok(PgLogConnection {
            listener,
            sql: Arc::clone(&self.sql),
        })
    }
}

impl LogConnection for PgLogConnection {
    async fn wait(&mut self, deadline: Instant) -> Result<Wake, StoreError> {
        // try_recv, never recv: recv reconnects behind our back and drops what was notified
        // meanwhile, where Ok(None) tells us the connection was lost. A timeout around it is
        // safe: sqlx keeps a message read halfway for the next call.
        match tokio::time::timeout_at(deadline, self.listener.try_recv()).await {
            Err(_) => Ok(Wake::TimedOut),
            Ok(Ok(Some(notification))) => Ok(Wake::Notified(notification.payload().parse().ok())),
            Ok(Ok(None)) => Err(StoreError::unavailable(
                "postgres: the change listener's connection was lost",
            )),
            Ok(Err(e)) => Err(failed("receive a change notification")(e)),
        }
    }

    async fn read(&mut self, after: i64, limit: u32) -> Result<LogBatch, StoreError> {
        let rows = sqlx::query(self.sql.read_changes.clone())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut self.listener)
            .await
            .map_err(failed("read the change log"))?;
        let e = failed("decode a change row");
        let mut batch = LogBatch::default();
        for row in &rows {
            batch.head = row.try_get("head").map_err(e)?;
            let Some(seq) = row.try_get::<Option<i64>, _>("seq").map_err(e)? else {
                // The outer row of an empty LEFT JOIN: the head alone.
                continue;
            };
            let kind: String = row.try_get("kind").map_err(e)?;
            let key: Option<Uuid> = row.try_get("key_id").map_err(e)?;
            let owner: Option<String> = row.try_get("owner").map_err(e)?;
            let change = match (kind.as_str(), key, owner) {
                ("key", Some(id), _) => LoggedChange::Key(KeyId::from_uuid(id)),
                ("user", _, Some(owner)) => LoggedChange::User(OwnerId::new(owner)),
                ("all", _, _) => LoggedChange::Everything,
                _ => return Err(corrupt("a change log row")),
            };
            batch.rows.push(LogRow { seq, change });
        }
        if rows.is_empty() {
            return Err(corrupt("the change log's head row is missing"));
        }
        Ok(batch)
    }

    async fn prune(&mut self, retention: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query(self.sql.prune_changes.clone())
            .bind(retention.as_secs_f64())
            .execute(&mut self.listener)
            .await
            .map_err(failed("prune the change log"))?;
        Ok(done.rows_affected())
    }
}
