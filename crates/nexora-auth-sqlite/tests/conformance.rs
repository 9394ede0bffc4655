//! The conformance kit on a real SQLite database file (one per test, in a temporary directory).

use nexora_auth::KeyStore;
use nexora_auth_sqlite::{SetupError, SqliteStore};
use nexora_auth_testkit::Fixture;

/// A fresh database file per test, and for the backend-down check a second store on it whose
/// pool is closed.
async fn fresh() -> Fixture<SqliteStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("auth.db");
    let pool = nexora_auth_sqlite::connect(&path)
        .await
        .expect("open the database");
    let store = SqliteStore::new(pool).await.expect("migrations");
    let closed = nexora_auth_sqlite::connect(&path)
        .await
        .expect("open the database again");
    let failing = SqliteStore::new(closed)
        .await
        .expect("migrations (a no-op)");
    failing.pool().close().await;
    Fixture::new(store).with_guard(dir).with_failing(failing)
}

nexora_auth_testkit::key_store_conformance!(fixture: fresh());
nexora_auth_testkit::user_store_conformance!(fixture: fresh());
nexora_auth_testkit::ticket_store_conformance!(fixture: fresh());
nexora_auth_testkit::audit_store_conformance!(fixture: fresh());

/// A fresh database file with two stores on separate pools (another process, in effect): the
/// feed contracts write through the peer and observe through the store.
async fn two_processes() -> Fixture<SqliteStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("auth.db");
    let pool = nexora_auth_sqlite::connect(&path)
        .await
        .expect("open the database");
    let store = SqliteStore::new(pool).await.expect("migrations");
    let peer_pool = nexora_auth_sqlite::connect(&path)
        .await
        .expect("open the database again");
    let peer = SqliteStore::new(peer_pool)
        .await
        .expect("migrations (a no-op)");
    Fixture::new(store).with_peer(peer).with_guard(dir)
}

mod change_feed {
    use super::two_processes;

    nexora_auth_testkit::change_feed_conformance!(keys: fixture: two_processes());
    nexora_auth_testkit::change_feed_conformance!(users: fixture: two_processes());
}

#[test]
fn migrations_are_idempotent_prefixed_and_leave_sqlx_migrations_alone() {
    nexora_auth_testkit::run(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pool = nexora_auth_sqlite::connect(dir.path().join("auth.db"))
            .await
            .expect("open");
        // The host's own sqlx migration table, with a row of its own.
        sqlx::raw_sql(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (20240101000000, 'host schema');",
        )
        .execute(&pool)
        .await
        .expect("host migration table");

        let store = SqliteStore::new(pool.clone())
            .await
            .expect("first migration");
        SqliteStore::new(pool.clone())
            .await
            .expect("second migration is a no-op");
        let custom = SqliteStore::builder(pool.clone())
            .table_prefix("auth2_")
            .build()
            .await
            .expect("prefix");

        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&pool)
                .await
                .expect("tables");
        assert_eq!(
            tables,
            [
                "_sqlx_migrations",
                "auth2_api_keys",
                "auth2_audit_events",
                "auth2_auth_migrations",
                "auth2_users",
                "auth2_ws_tickets",
                "nexora_api_keys",
                "nexora_audit_events",
                "nexora_auth_migrations",
                "nexora_users",
                "nexora_ws_tickets",
            ]
        );
        let host: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(&pool)
            .await
            .expect("rows");
        assert_eq!(
            host,
            [20240101000000],
            "the host's migration table was touched"
        );
        let ours: Vec<i64> = sqlx::query_scalar("SELECT version FROM nexora_auth_migrations")
            .fetch_all(&pool)
            .await
            .expect("rows");
        // Version numbers are shared with the Postgres store, whose version 3 (its change
        // log) SQLite does not need.
        assert_eq!(
            ours,
            (1..=nexora_auth_sqlite::SCHEMA_VERSION)
                .filter(|v| *v != 3)
                .collect::<Vec<_>>(),
            "one row per applied version"
        );

        // The two prefixes are two independent stores.
        let (_, record) = nexora_auth_testkit::new_record("alice", "k", nexora_auth_testkit::now());
        store.insert(&record).await.expect("insert");
        assert!(custom.find(record.id).await.expect("find").is_none());

        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
        let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&pool)
            .await
            .expect("pragma");
        assert_eq!(timeout, 5000);
    });
}

#[test]
fn invalid_prefix_and_newer_schema_are_refused() {
    nexora_auth_testkit::run(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pool = nexora_auth_sqlite::connect(dir.path().join("auth.db"))
            .await
            .expect("open");
        for bad in ["Upper_", "x; DROP TABLE y; --", "1abc", "a-b"] {
            let result = SqliteStore::builder(pool.clone())
                .table_prefix(bad)
                .build()
                .await;
            assert!(
                matches!(result, Err(SetupError::InvalidTablePrefix(_))),
                "{bad:?} accepted"
            );
        }
        SqliteStore::new(pool.clone()).await.expect("migrate");
        sqlx::query("INSERT INTO nexora_auth_migrations VALUES (99, 'from the future', 0)")
            .execute(&pool)
            .await
            .expect("insert");
        let result = SqliteStore::new(pool).await;
        assert!(
            matches!(result, Err(SetupError::SchemaTooNew { found: 99, .. })),
            "{result:?}"
        );
    });
}

/// A database at schema version 1 (no key lineage, no disabled users, no limits: what earlier
/// releases wrote) upgrades in place: its keys keep working with no creator and no limits, its
/// users are enabled.
#[test]
fn a_version_1_database_upgrades_and_keeps_its_records() {
    nexora_auth_testkit::run(async {
        let (store, _dir) = fresh().await.into_parts().expect("not skipped");
        let pool = store.pool().clone();
        // Back to version 1: the columns versions 2 and 6 added are gone, and so are their
        // records (the tables of versions 4 and 5 stay: their steps create them if missing).
        let downgrade = async {
            sqlx::raw_sql(
                "DROP INDEX nexora_api_keys_created_by;
             ALTER TABLE nexora_api_keys DROP COLUMN created_by;
             ALTER TABLE nexora_users DROP COLUMN disabled;
             ALTER TABLE nexora_api_keys DROP COLUMN rate_limit;
             ALTER TABLE nexora_api_keys DROP COLUMN rate_period_secs;
             ALTER TABLE nexora_api_keys DROP COLUMN credits_remaining;
             ALTER TABLE nexora_api_keys DROP COLUMN credits_refill_amount;
             ALTER TABLE nexora_api_keys DROP COLUMN credits_refill_every_secs;
             ALTER TABLE nexora_api_keys DROP COLUMN credits_refilled_at;
             ALTER TABLE nexora_users DROP COLUMN rate_limit;
             ALTER TABLE nexora_users DROP COLUMN rate_period_secs;
             DELETE FROM nexora_auth_migrations WHERE version > 1;",
            )
            .execute(&pool)
            .await
            .expect("downgrade to version 1");
        };
        let reopen = async {
            SqliteStore::new(pool.clone())
                .await
                .expect("upgrade to the current version")
        };
        nexora_auth_testkit::upgrade_keeps_records(&store, downgrade, reopen).await;
    });
}

/// A limit the store cannot have written (set in part, or out of the core's ranges) makes the
/// row corrupt: `find`, `list` and `find_user` answer `Err(Unavailable)` (a 503), never
/// a key without limits.
#[test]
fn a_corrupt_limit_is_unavailable_not_unlimited() {
    nexora_auth_testkit::run(async {
        use nexora_auth::{OwnerId, StoreError, UserStore};

        let (store, _dir) = fresh().await.into_parts().expect("not skipped");
        let pool = store.pool().clone();
        let (_, record) = nexora_auth_testkit::new_record("alice", "k", nexora_auth_testkit::now());
        store.insert(&record).await.expect("insert");
        let user = nexora_auth::UserRecord {
            id: OwnerId::new("alice"),
            email: "alice@example.com".into(),
            password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            scopes: nexora_auth_testkit::scopes(&["a"]),
            created_at: nexora_auth_testkit::now(),
            disabled: false,
            rate_limit: None,
        };
        store.insert_user(&user).await.expect("insert a user");
        fn unavailable<T>(r: &Result<T, StoreError>) -> bool {
            matches!(r, Err(StoreError::Unavailable { .. }))
        }
        for corruption in [
            "UPDATE nexora_api_keys SET rate_limit = 10",
            "UPDATE nexora_api_keys SET rate_limit = 0, rate_period_secs = 60",
            "UPDATE nexora_api_keys SET credits_remaining = 5",
            "UPDATE nexora_api_keys SET credits_remaining = -5, credits_refilled_at = 0",
            "UPDATE nexora_api_keys SET credits_remaining = 5, credits_refilled_at = 0,
                credits_refill_amount = 10",
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "UPDATE nexora_api_keys SET rate_limit = NULL, rate_period_secs = NULL,
                    credits_remaining = NULL, credits_refill_amount = NULL,
                    credits_refill_every_secs = NULL, credits_refilled_at = NULL;
                 {corruption};"
            )))
            .execute(&pool)
            .await
            .expect("corrupt the row");
            assert!(
                unavailable(&store.find(record.id).await),
                "find after {corruption:?}"
            );
            assert!(
                unavailable(&store.find_credentials(record.id).await),
                "find_credentials after {corruption:?}"
            );
            assert!(
                unavailable(&store.list(&record.owner).await),
                "list after {corruption:?}"
            );
        }
        sqlx::raw_sql("UPDATE nexora_users SET rate_limit = 5, rate_period_secs = NULL")
            .execute(&pool)
            .await
            .expect("corrupt the user");
        assert!(unavailable(&store.find_user(&user.id).await));
    });
}
