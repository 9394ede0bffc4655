//! Two instances on one database: two `PostgresStore` values on separate pools over one
//! schema. Instance B authenticates through the verification cache; a change made through
//! instance A (or by hand in SQL) must be refused by B within the cache's ceiling, also when
//! B's listener connection is killed. Each test prints the delay it measured.
//!
//! The bound these tests hold B to is [`PROMPT`] (2 seconds), not the ceiling: a cache entry
//! never outlives the ceiling counted from its read, so "refused within the ceiling" holds
//! even with no feed at all and could not fail. With the feed, B refuses within milliseconds
//! (a notification) or a poll interval (250 ms) at worst; without it, after about 5 seconds.
//!
//! Real PostgreSQL (`NEXORA_TEST_POSTGRES_URL`); skipped loudly when unreachable, failed when
//! `NEXORA_REQUIRE_POSTGRES=1`.

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use nexora_auth::{
    ApiKey, AuthError, Authenticator, CacheConfig, InvalidReason, KeyStore, OwnerId, Principal,
    UserRecord, UserStore,
    limits::{Credits, RateLimit, Refill},
    store::{KeyUpdate, Rotation},
};
use nexora_auth_postgres::{FeedConfig, LISTENER_APPLICATION_NAME, PostgresStore};
use nexora_auth_testkit::{
    authenticator_builder,
    failure::{FlakyStore, StoreMethod},
    new_record, now, peppers,
    postgres::TestSchema,
    scopes,
};
use sqlx::{PgPool, postgres::PgPoolOptions};

/// The cache's ceiling in these tests: the default.
const CEILING: Duration = Duration::from_secs(5);
/// How soon B must refuse after a change: well under the ceiling, so only the feed can meet
/// it (see the module docs).
const PROMPT: Duration = Duration::from_secs(2);

/// Instance A writes; instance B authenticates through its cache.
struct Instances {
    /// The table prefix: unique per test, so that B's listener can be told from the other
    /// tests' in `pg_stat_activity` (its statements name the prefix).
    prefix: String,
    a: PostgresStore,
    b: Arc<FlakyStore<PostgresStore>>,
    auth_b: Authenticator,
    _schema: TestSchema,
}

/// A second pool on the schema: another server instance's connections.
async fn second_pool(schema: &TestSchema) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with((*schema.pool().connect_options()).clone())
        .await
        .expect("a second pool on the test schema")
}

/// A table prefix of its own: `w` and 12 hex digits.
fn unique_prefix() -> String {
    format!("w{}_", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn instances() -> Option<Instances> {
    let schema = TestSchema::create().await?;
    let prefix = unique_prefix();
    let a = PostgresStore::builder(schema.pool().clone())
        .table_prefix(prefix.clone())
        .build()
        .await
        .expect("migrations");
    let b = PostgresStore::builder(second_pool(&schema).await)
        .table_prefix(prefix.clone())
        .build()
        .await
        .expect("second instance");
    // Counts B's store calls; passes its change feed on to the cache.
    let b = Arc::new(FlakyStore::new(b).forwarding_changes());
    let auth_b = authenticator_builder(b.clone())
        .users(b.clone())
        .verification_cache(CacheConfig::default().ceiling(CEILING))
        .build()
        .expect("authenticator on B");
    Some(Instances {
        prefix,
        a,
        b,
        auth_b,
        _schema: schema,
    })
}

fn alice() -> UserRecord {
    UserRecord {
        id: OwnerId::new("alice"),
        email: "alice@example.com".into(),
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        scopes: scopes(&["agents:read", "keys:manage"]),
        created_at: now(),
        disabled: false,
        rate_limit: None,
    }
}

impl Instances {
    /// Runs SQL typed by hand, `{p}` standing for the table prefix.
    async fn by_hand(&self, sql: &str, key: Option<&ApiKey>) {
        let sql = sql.replace("{p}", &self.prefix);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(key) = key {
            query = query.bind(*key.id().as_uuid());
        }
        query.execute(self.a.pool()).await.expect("SQL by hand");
    }

    /// B's listener connections, as `pg_stat_activity` shows them.
    async fn listener_pids(&self) -> Vec<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE $2",
        )
        .bind(LISTENER_APPLICATION_NAME)
        .bind(format!("%{}auth_changes%", self.prefix))
        .fetch_all(self.a.pool())
        .await
        .expect("pg_stat_activity")
    }

    /// Alice and one key of hers, written through A.
    async fn alice_with_key(&self) -> ApiKey {
        self.a.insert_user(&alice()).await.expect("insert alice");
        let (key, record) = new_record("alice", "k", now());
        self.a.insert(&record).await.expect("insert a key");
        key
    }

    fn store_reads(&self) -> u64 {
        let calls = self.b.calls();
        calls.of(StoreMethod::FindCredentials) + calls.of(StoreMethod::FindUser)
    }

    /// Authenticates until B serves `key` from its cache (two requests in a row reach no
    /// store): the feed has marked it in sync. Panics after 2 seconds.
    async fn hot(&self, key: &ApiKey) -> Principal {
        let start = Instant::now();
        loop {
            let principal = self
                .auth_b
                .authenticate(key.expose())
                .await
                .expect("the key authenticates on B");
            let before = self.store_reads();
            self.auth_b
                .authenticate(key.expose())
                .await
                .expect("the key authenticates on B");
            if self.store_reads() == before {
                return principal;
            }
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "B never served the key from its cache: its feed made no in-sync mark"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How long after `since` B first answers `refused` (checked every 5 ms); panics past
    /// [`PROMPT`].
    async fn refused_within(
        &self,
        key: &ApiKey,
        since: Instant,
        refused: impl Fn(&Result<Principal, AuthError>) -> bool,
    ) -> Duration {
        loop {
            let answer = self.auth_b.authenticate(key.expose()).await;
            if refused(&answer) {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < PROMPT,
                "B still accepts the key {:?} after the change: {answer:?}",
                since.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn is_invalid(
    reason: fn(&InvalidReason) -> bool,
) -> impl Fn(&Result<Principal, AuthError>) -> bool {
    move |answer| matches!(answer, Err(AuthError::InvalidToken(r)) if reason(r))
}

fn report(what: &str, took: Duration) {
    // Straight to stderr, uncaptured: the figures are what these tests measure.
    let _ = writeln!(
        std::io::stderr(),
        "change feed: {what}: refused on B after {} ms",
        took.as_millis()
    );
}

#[test]
fn a_hot_key_reaches_the_store_once() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let key = it.alice_with_key().await;
        it.hot(&key).await;
        let before = it.b.calls().of(StoreMethod::FindCredentials);
        for _ in 0..200 {
            it.auth_b.authenticate(key.expose()).await.expect("hot key");
        }
        assert_eq!(
            it.b.calls().of(StoreMethod::FindCredentials),
            before,
            "a hot key must be served from the cache"
        );
        assert!(before >= 1, "the first request reads the store");
    });
}

#[test]
fn a_revoke_on_a_is_refused_on_b() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let key = it.alice_with_key().await;
        it.hot(&key).await;
        let outcome =
            it.a.revoke(&OwnerId::new("alice"), key.id(), now())
                .await
                .expect("revoke on A");
        let done = Instant::now();
        assert_eq!(outcome, nexora_auth::store::RevokeOutcome::Revoked);
        let took = it
            .refused_within(
                &key,
                done,
                is_invalid(|r| matches!(r, InvalidReason::Revoked)),
            )
            .await;
        report("revoke through store A", took);
    });
}

#[test]
fn a_rotation_without_grace_on_a_refuses_the_old_secret_on_b() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let key = it.alice_with_key().await;
        it.hot(&key).await;
        let fresh = ApiKey::generate_for(key.id()).expect("randomness");
        let rotation = Rotation {
            digest: peppers().digest(&fresh),
            display: fresh.display_fragment(),
            grace_until: None,
            now: now(),
        };
        it.a.rotate(&OwnerId::new("alice"), key.id(), &rotation)
            .await
            .expect("rotate on A");
        let done = Instant::now();
        let took = it
            .refused_within(
                &key,
                done,
                is_invalid(|r| matches!(r, InvalidReason::SecretMismatch)),
            )
            .await;
        report("rotation without grace through store A", took);
        it.auth_b
            .authenticate(fresh.expose())
            .await
            .expect("the new secret works on B");
    });
}

#[test]
fn disabling_the_user_on_a_is_refused_on_b() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let key = it.alice_with_key().await;
        it.hot(&key).await;
        assert!(
            it.a.set_user_disabled(&OwnerId::new("alice"), true)
                .await
                .expect("disable on A")
        );
        let done = Instant::now();
        let took = it
            .refused_within(
                &key,
                done,
                is_invalid(|r| matches!(r, InvalidReason::UserDisabled)),
            )
            .await;
        report("user disabled through store A", took);
    });
}

#[test]
fn narrowing_the_user_by_hand_narrows_the_key_on_b() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let key = it.alice_with_key().await;
        let principal = it.hot(&key).await;
        assert!(principal.scopes().contains("agents:read"));
        // SQL typed by hand: no store is told, only the trigger sees it.
        it.by_hand(
            "UPDATE {p}users SET scopes = '{keys:manage}' WHERE id = 'alice'",
            None,
        )
        .await;
        let done = Instant::now();
        let took = it
            .refused_within(&key, done, |answer| {
                answer
                    .as_ref()
                    .is_ok_and(|p| !p.scopes().contains("agents:read"))
            })
            .await;
        report("user scopes narrowed by hand in SQL", took);
    });
}

#[test]
fn a_revoke_by_hand_is_refused_on_b() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let key = it.alice_with_key().await;
        it.hot(&key).await;
        it.by_hand(
            "UPDATE {p}api_keys SET revoked_at = now() WHERE id = $1",
            Some(&key),
        )
        .await;
        let done = Instant::now();
        let took = it
            .refused_within(
                &key,
                done,
                is_invalid(|r| matches!(r, InvalidReason::Revoked)),
            )
            .await;
        report("revoke by hand in SQL", took);
    });
}

/// The listener's connection is killed, and the key revoked while it is down: B catches up
/// by replaying the log when it reconnects, and meanwhile stops trusting its cache.
#[test]
fn a_revoke_while_the_listener_is_down_is_refused_on_b() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let key = it.alice_with_key().await;
        it.hot(&key).await;
        let before = it.listener_pids().await;
        assert!(!before.is_empty(), "B's listener is not connected");
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND query LIKE $2",
        )
        .bind(LISTENER_APPLICATION_NAME)
        .bind(format!("%{}auth_changes%", it.prefix))
        .fetch_all(it.a.pool())
        .await
        .expect("terminate B's listener");
        assert!(killed.iter().any(|k| *k));
        it.a.revoke(&OwnerId::new("alice"), key.id(), now())
            .await
            .expect("revoke on A");
        let done = Instant::now();
        let took = it
            .refused_within(
                &key,
                done,
                is_invalid(|r| matches!(r, InvalidReason::Revoked)),
            )
            .await;
        report("revoke while B's listener was killed", took);

        // The watcher is back, on a new connection, and B serves from its cache again.
        let (key2, record) = new_record("alice", "k2", now());
        it.a.insert(&record).await.expect("insert a second key");
        it.hot(&key2).await;
        // A connection being set up shows the prefix only from its LISTEN on: poll briefly.
        let since = Instant::now();
        loop {
            let after = it.listener_pids().await;
            if after.iter().any(|pid| !before.contains(pid)) {
                break;
            }
            assert!(
                since.elapsed() < PROMPT,
                "no new listener connection: {before:?} -> {after:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// What the triggers log: every change but a `last_used_at` update, in the changing
/// transaction; and pruning keeps the newest row.
#[test]
fn the_log_records_changes_but_not_last_used_and_prunes_old_rows() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let pool = it.a.pool().clone();
        let p = it.prefix.clone();
        let sql = |text: &str| sqlx::AssertSqlSafe(text.replace("{p}", &p));
        let count = || async {
            sqlx::query_scalar::<_, i64>(sql("SELECT count(*) FROM {p}auth_changes"))
                .fetch_one(&pool)
                .await
                .expect("count")
        };
        let key = it.alice_with_key().await;
        assert_eq!(count().await, 2, "the user and the key inserts are logged");
        it.a.record_last_used(&[nexora_auth::store::LastUsed {
            id: key.id(),
            at: now(),
        }])
        .await
        .expect("last used");
        assert_eq!(count().await, 2, "a last-used update is not logged");
        it.a.update_password_hash(&OwnerId::new("alice"), "$argon2id$other")
            .await
            .expect("rehash");
        // A rolled-back change leaves no row and no gap.
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query(sql("UPDATE {p}users SET disabled = true"))
            .execute(&mut *tx)
            .await
            .expect("update");
        tx.rollback().await.expect("rollback");
        sqlx::query(sql("TRUNCATE {p}api_keys"))
            .execute(&pool)
            .await
            .expect("truncate");
        let rows: Vec<(i64, String)> =
            sqlx::query_as(sql("SELECT seq, kind FROM {p}auth_changes ORDER BY seq"))
                .fetch_all(&pool)
                .await
                .expect("rows");
        assert_eq!(
            rows,
            [
                (1, "user".to_owned()),
                (2, "key".to_owned()),
                (3, "user".to_owned()),
                (4, "all".to_owned())
            ]
        );
        let head: i64 = sqlx::query_scalar(sql("SELECT seq FROM {p}auth_changes_head"))
            .fetch_one(&pool)
            .await
            .expect("head");
        assert_eq!(head, 4);

        sqlx::query(sql(
            "UPDATE {p}auth_changes SET at = now() - interval '1 hour'",
        ))
        .execute(&pool)
        .await
        .expect("age the rows");
        let pruned =
            it.a.clone()
                .with_change_feed(FeedConfig::default().retention(Duration::from_secs(60)))
                .prune_changes()
                .await
                .expect("prune");
        assert_eq!(pruned, 3);
        assert_eq!(count().await, 1, "the newest row is kept");
    });
}

/// What the key trigger logs of the limits (schema version 6): a change of a rate limit,
/// credits set or removed, a refill changed — but not a credit swap, nor any update that only
/// moves the count and its refill time (a cache holds whether a key is metered, never the
/// count), so leasing credits does not flood the log. An owner's limit is logged as a user
/// change.
#[test]
fn the_log_records_limit_changes_but_not_credit_swaps() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let pool = it.a.pool().clone();
        let p = it.prefix.clone();
        let kinds = || async {
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(
                "SELECT kind FROM {p}auth_changes ORDER BY seq".replace("{p}", &p),
            ))
            .fetch_all(&pool)
            .await
            .expect("rows")
        };
        let id = it.alice_with_key().await.id();
        let alice = OwnerId::new("alice");
        let update = |changes: KeyUpdate| {
            let (a, alice) = (it.a.clone(), alice.clone());
            async move {
                a.update_key(&alice, id, &changes)
                    .await
                    .expect("update_key")
                    .expect("a live key")
            }
        };
        let refill = Refill::new(100, 3_600);
        let c0 = Credits {
            remaining: 100,
            refill,
            refilled_at: now(),
        };
        update(KeyUpdate {
            credits: Some(Some(c0)),
            ..KeyUpdate::default()
        })
        .await;
        assert_eq!(
            kinds().await,
            ["user", "key", "key"],
            "metering a key is logged"
        );
        let c1 = Credits {
            remaining: 90,
            ..c0
        };
        assert!(it.a.swap_credits(id, &c0, &c1).await.expect("swap"));
        let c2 = Credits {
            remaining: 100,
            refilled_at: c1.refilled_at + time::Duration::HOUR,
            ..c1
        };
        assert!(it.a.swap_credits(id, &c1, &c2).await.expect("swap"));
        update(KeyUpdate {
            credits: Some(Some(Credits { remaining: 5, ..c2 })),
            ..KeyUpdate::default()
        })
        .await;
        assert_eq!(
            kinds().await,
            ["user", "key", "key"],
            "credit swaps and count-only updates are not logged"
        );
        update(KeyUpdate {
            credits: Some(Some(Credits {
                refill: Refill::new(50, 60),
                ..c2
            })),
            ..KeyUpdate::default()
        })
        .await;
        update(KeyUpdate {
            rate_limit: Some(RateLimit::new(10, 60)),
            ..KeyUpdate::default()
        })
        .await;
        update(KeyUpdate {
            credits: Some(None),
            ..KeyUpdate::default()
        })
        .await;
        assert!(
            it.a.set_owner_rate_limit(&alice, RateLimit::new(5, 1))
                .await
                .expect("set_owner_rate_limit")
        );
        assert_eq!(
            kinds().await,
            ["user", "key", "key", "key", "key", "key", "user"],
            "a refill change, a rate limit, unmetering and an owner's limit are logged"
        );
    });
}

/// A watcher whose position was pruned away (it was disconnected for longer than the
/// retention) drops its whole cache rather than miss a change.
#[test]
fn a_gap_in_the_log_drops_the_cache() {
    nexora_auth_testkit::run(async {
        let Some(it) = instances().await else { return };
        let key = it.alice_with_key().await;
        it.hot(&key).await;
        // A change whose row is deleted before B can read it: only the gap tells B.
        let mut tx = it.a.pool().begin().await.expect("begin");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {}api_keys SET revoked_at = now() WHERE id = $1",
            it.prefix
        )))
        .bind(key.id().as_uuid())
        .execute(&mut *tx)
        .await
        .expect("revoke by hand");
        sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
            .execute(&mut *tx)
            .await
            .expect("fire the log trigger now");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {}auth_changes WHERE key_id = $1",
            it.prefix
        )))
        .bind(key.id().as_uuid())
        .execute(&mut *tx)
        .await
        .expect("delete its log row");
        tx.commit().await.expect("commit");
        let done = Instant::now();
        let took = it
            .refused_within(
                &key,
                done,
                is_invalid(|r| matches!(r, InvalidReason::Revoked)),
            )
            .await;
        report("revoke whose log row was deleted (gap)", took);
    });
}

/// Several authenticators on one store value share one watcher; when every one is dropped
/// the watcher stops and closes its connection.
#[test]
fn one_watcher_per_store_and_it_stops_with_its_authenticators() {
    nexora_auth_testkit::run(async {
        let Some(schema) = TestSchema::create().await else {
            return;
        };
        // A prefix of its own: the watcher's statements name it, which tells its connection
        // from the other tests' listeners in pg_stat_activity.
        let prefix = unique_prefix();
        let store = PostgresStore::builder(second_pool(&schema).await)
            .table_prefix(prefix.clone())
            .build()
            .await
            .expect("store");
        let listeners = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE $2",
            )
            .bind(LISTENER_APPLICATION_NAME)
            .bind(format!("%{prefix}auth_changes%"))
            .fetch_one(schema.pool())
            .await
            .expect("count listeners")
        };
        let build = || {
            authenticator_builder(Arc::new(store.clone()))
                .users(Arc::new(store.clone()))
                .build()
                .expect("authenticator")
        };
        let one = build();
        let two = build();
        let start = Instant::now();
        while listeners().await == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "no watcher started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(listeners().await, 1, "one watcher for both authenticators");
        drop(one);
        drop(two);
        let start = Instant::now();
        while listeners().await > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "the watcher outlived its authenticators"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A new authenticator on the same store starts a new watcher.
        let _three = build();
        let start = Instant::now();
        while listeners().await == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "no watcher restarted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// Without a Tokio runtime there is nothing to run the watcher on: the store says so
/// (`Unwatched`), and the cache then reads it on every request rather than trust a feed that
/// does not run.
#[test]
fn without_a_runtime_the_store_answers_unwatched() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some((store, schema)) = runtime.block_on(async {
        let schema = TestSchema::create().await?;
        let store = PostgresStore::new(schema.pool().clone())
            .await
            .expect("migrations");
        Some((store, schema))
    }) else {
        return;
    };
    let store = Arc::new(FlakyStore::new(store).forwarding_changes());
    let auth = authenticator_builder(store.clone())
        .users(store.clone())
        .build()
        .expect("authenticator");
    assert_eq!(
        store.key_freshness(),
        Some(nexora_auth::Freshness::Unwatched)
    );
    assert_eq!(
        store.user_freshness(),
        Some(nexora_auth::Freshness::Unwatched)
    );
    drop(auth);
    drop(store);
    runtime.block_on(async move { drop(schema) });
}
