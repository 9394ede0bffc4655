//! The conformance kit on the real PostgreSQL server, in a fresh schema per test
//! (`NEXORA_TEST_POSTGRES_URL`; skipped loudly when unreachable, failed when
//! `NEXORA_REQUIRE_POSTGRES=1`).

use std::time::Duration;

use nexora_auth::KeyStore;
use nexora_auth_postgres::{PostgresStore, SetupError};
use nexora_auth_testkit::{Fixture, postgres::TestSchema};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A fresh schema per test, and for the backend-down check a store on a server that is not
/// listening.
async fn fresh() -> Fixture<PostgresStore> {
    let Some(schema) = TestSchema::create().await else {
        return Fixture::skipped();
    };
    let store = PostgresStore::new(schema.pool().clone())
        .await
        .expect("migrations");
    Fixture::new(store)
        .with_guard(schema)
        .with_failing(unreachable_server().await)
}

/// A store whose every query fails: nothing listens on port 1 ("connection refused").
async fn unreachable_server() -> PostgresStore {
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(1)
        .username("postgres");
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy_with(options);
    PostgresStore::builder(pool)
        .run_migrations(false)
        .build()
        .await
        .expect("no I/O yet")
}

nexora_auth_testkit::key_store_conformance!(fixture: fresh());
nexora_auth_testkit::user_store_conformance!(fixture: fresh());
nexora_auth_testkit::ticket_store_conformance!(fixture: fresh());
nexora_auth_testkit::audit_store_conformance!(fixture: fresh());

/// A fresh schema with two stores on separate pools (two server instances): the feed
/// contracts write through the peer and observe through the store.
async fn two_instances() -> Fixture<PostgresStore> {
    let Some(schema) = TestSchema::create().await else {
        return Fixture::skipped();
    };
    let store = PostgresStore::new(schema.pool().clone())
        .await
        .expect("migrations");
    let peer_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with((*schema.pool().connect_options()).clone())
        .await
        .expect("a second pool");
    let peer = PostgresStore::new(peer_pool)
        .await
        .expect("second instance");
    Fixture::new(store).with_peer(peer).with_guard(schema)
}

mod change_feed {
    use super::two_instances;

    nexora_auth_testkit::change_feed_conformance!(keys: fixture: two_instances());
    nexora_auth_testkit::change_feed_conformance!(users: fixture: two_instances());
}

#[test]
fn migrations_are_idempotent_concurrent_prefixed_and_leave_sqlx_migrations_alone() {
    nexora_auth_testkit::run(async {
        let Some(schema) = TestSchema::create().await else {
            return;
        };
        let pool = schema.pool().clone();
        sqlx::raw_sql(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (20240101000000, 'host schema');",
        )
        .execute(&pool)
        .await
        .expect("host migration table");

        // Several instances starting at once.
        let starts: Vec<_> = (0..4)
            .map(|_| tokio::spawn(PostgresStore::new(pool.clone())))
            .collect();
        let mut stores = Vec::new();
        for start in starts {
            stores.push(start.await.expect("task").expect("concurrent migration"));
        }
        let custom = PostgresStore::builder(pool.clone())
            .table_prefix("auth2_")
            .build()
            .await
            .expect("prefix");

        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
        )
        .bind(schema.name())
        .fetch_all(&pool)
        .await
        .expect("tables");
        assert_eq!(
            tables,
            [
                "_sqlx_migrations",
                "auth2_api_keys",
                "auth2_audit_events",
                "auth2_auth_changes",
                "auth2_auth_changes_head",
                "auth2_auth_migrations",
                "auth2_users",
                "auth2_ws_tickets",
                "nexora_api_keys",
                "nexora_audit_events",
                "nexora_auth_changes",
                "nexora_auth_changes_head",
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
        assert_eq!(
            ours,
            (1..=nexora_auth_postgres::SCHEMA_VERSION).collect::<Vec<_>>(),
            "one row per applied version"
        );

        let (_, record) = nexora_auth_testkit::new_record("alice", "k", nexora_auth_testkit::now());
        stores[0].insert(&record).await.expect("insert");
        assert!(
            stores[1].find(record.id).await.expect("find").is_some(),
            "instances share the table"
        );
        assert!(
            custom.find(record.id).await.expect("find").is_none(),
            "prefixes are separate stores"
        );

        // The authenticate lookup is served by the primary key index.
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN SELECT * FROM nexora_api_keys WHERE id = '00000000-0000-0000-0000-000000000001'",
        )
        .fetch_all(&pool)
        .await
        .expect("explain");
        assert!(
            plan.iter().any(|l| l.contains("nexora_api_keys_pkey")),
            "plan: {plan:?}"
        );

        for bad in ["Upper_", "x; DROP TABLE y; --", "1abc"] {
            let result = PostgresStore::builder(pool.clone())
                .table_prefix(bad)
                .build()
                .await;
            assert!(
                matches!(result, Err(SetupError::InvalidTablePrefix(_))),
                "{bad:?} accepted"
            );
        }
        sqlx::query(
            "INSERT INTO nexora_auth_migrations (version, description) VALUES (99, 'future')",
        )
        .execute(&pool)
        .await
        .expect("insert");
        let result = PostgresStore::new(pool).await;
        assert!(
            matches!(result, Err(SetupError::SchemaTooNew { found: 99, .. })),
            "{result:?}"
        );
        drop(schema);
    });
}

/// A database at schema version 1 (no key lineage, no disabled users: what earlier releases
/// wrote) upgrades in place: its keys keep working with no creator, its users are enabled.
#[test]
fn a_version_1_database_upgrades_and_keeps_its_records() {
    nexora_auth_testkit::run(async {
        let Some((store, schema)) = fresh().await.into_parts() else {
            return;
        };
        let pool = store.pool().clone();
        // Back to version 1: the columns version 2 added are gone, and so is its record.
        let downgrade = async {
            sqlx::raw_sql(
                "ALTER TABLE nexora_api_keys DROP COLUMN created_by;
             ALTER TABLE nexora_users DROP COLUMN disabled;
             DELETE FROM nexora_auth_migrations WHERE version > 1;",
            )
            .execute(&pool)
            .await
            .expect("downgrade to version 1");
        };
        let reopen = async {
            PostgresStore::new(pool.clone())
                .await
                .expect("upgrade to the current version")
        };
        nexora_auth_testkit::upgrade_keeps_records(&store, downgrade, reopen).await;
        drop(schema);
    });
}
