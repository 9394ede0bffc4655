//! The change feed under an authenticator's verification cache, on real database files: the
//! store's own writes are honoured by the next request, another process's writes within the
//! poll interval, and a hot key costs no store call meanwhile.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use nexora_auth::{
    ApiKey, AuthError, Authenticator, CacheConfig, ChangeFeed, Credential, Freshness,
    InvalidReason, KeyId, KeyStore, NewKey, OwnerId, Principal, Scopes, UserRecord, UserStore,
    store::{RotateOutcome, Rotation},
};
use nexora_auth_sqlite::{DEFAULT_CHANGE_POLL_INTERVAL, SqliteStore};
use nexora_auth_testkit::{
    authenticator_builder,
    failure::{FlakyStore, StoreMethod},
    now, peppers,
};
use sqlx::{Connection, SqliteConnection};

const ALL_SCOPES: [&str; 2] = ["agents:read", "keys:manage"];

struct Fixture {
    path: PathBuf,
    store: Arc<SqliteStore>,
    keys: Arc<FlakyStore<SqliteStore>>,
    users: Arc<FlakyStore<SqliteStore>>,
    auth: Authenticator,
    interval: Duration,
    // Dropped last: the database files live in it.
    _dir: tempfile::TempDir,
}

fn scopes(list: &[&str]) -> Scopes {
    Scopes::new(list.iter().copied()).expect("valid scopes")
}

/// Store A over a fresh file, an authenticator with the cache on over it (key and user store
/// wrapped to count their lookups), polling every `interval`.
async fn fixture(cache: CacheConfig, interval: Duration) -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("auth.db");
    let pool = nexora_auth_sqlite::connect(&path).await.expect("open");
    let store = Arc::new(
        SqliteStore::new(pool)
            .await
            .expect("migrate")
            .change_poll_interval(interval),
    );
    let keys = Arc::new(FlakyStore::from_arc(Arc::clone(&store)).forwarding_changes());
    let users = Arc::new(FlakyStore::from_arc(Arc::clone(&store)).forwarding_changes());
    let auth = authenticator_builder(keys.clone())
        .users(users.clone())
        .verification_cache(cache)
        .build()
        .expect("authenticator");
    Fixture {
        path,
        store,
        keys,
        users,
        auth,
        interval,
        _dir: dir,
    }
}

impl Fixture {
    async fn add_user(&self, id: &str) -> OwnerId {
        let owner = OwnerId::new(id);
        self.store
            .insert_user(&UserRecord {
                id: owner.clone(),
                email: format!("{id}@example.com"),
                password_hash: "unused".into(),
                scopes: scopes(&ALL_SCOPES),
                created_at: now(),
                disabled: false,
                rate_limit: None,
            })
            .await
            .expect("insert user");
        owner
    }

    async fn add_key(&self, creator: &Principal, name: &str) -> (KeyId, ApiKey) {
        let created = self
            .auth
            .create_key(creator, NewKey::named(name))
            .await
            .expect("create key");
        (created.info.id, created.key)
    }

    /// (find_credentials, find_user) calls so far.
    fn lookups(&self) -> (u64, u64) {
        (
            self.keys.calls().of(StoreMethod::FindCredentials),
            self.users.calls().of(StoreMethod::FindUser),
        )
    }

    /// Waits long enough for the poller to have seen every write made so far (its first poll,
    /// and the version those writes moved), so that what follows starts from a quiet feed.
    async fn settle(&self) {
        tokio::time::sleep(self.interval * 3).await;
    }

    /// Authenticates `key` twice and checks that the second time the cache answered: what a
    /// test changes next is then a change to a cached record, not to one the store is read for.
    async fn warm(&self, key: &ApiKey) {
        self.auth
            .authenticate(key.expose())
            .await
            .expect("accepted");
        let before = self.lookups();
        self.auth
            .authenticate(key.expose())
            .await
            .expect("accepted");
        assert_eq!(
            self.lookups(),
            before,
            "a warmed key must be served from the cache, or the test proves nothing"
        );
    }

    /// A second store over the same file on a pool of its own: what another process (the CLI,
    /// a second server) writes through.
    async fn other_process(&self) -> SqliteStore {
        let pool = nexora_auth_sqlite::connect(&self.path).await.expect("open");
        SqliteStore::new(pool).await.expect("migrate (a no-op)")
    }
}

fn session(owner: &OwnerId) -> Principal {
    Principal::new(owner.clone(), Credential::Internal, scopes(&ALL_SCOPES))
}

fn refusal(result: Result<Principal, AuthError>) -> InvalidReason {
    match result {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_costs_no_store_call_after_the_first() {
    let f = fixture(CacheConfig::default(), DEFAULT_CHANGE_POLL_INTERVAL).await;
    let alice = f.add_user("alice").await;
    let (_, key) = f.add_key(&session(&alice), "ci").await;
    f.settle().await;
    f.auth.authenticate(key.expose()).await.expect("accepted");
    let after_first = f.lookups();
    // For eight poll intervals: polls that find nothing changed keep the cache trusted, well
    // past the moment a single poll's mark would have aged out of a shorter ceiling.
    let until = Instant::now() + f.interval * 8;
    let mut requests = 0;
    while Instant::now() < until {
        f.auth.authenticate(key.expose()).await.expect("accepted");
        requests += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(requests > 50, "only {requests} requests");
    assert_eq!(
        f.lookups(),
        after_first,
        "{requests} requests of a hot key reached the store"
    );
}

/// The store's own writes, made directly on it (as an admin tool in the same process would,
/// not through the authenticator, which forgets what it writes itself). The poller runs once
/// a minute here and the ceiling is two minutes, so only the store's report can explain a
/// refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_process_writes_are_honoured_by_the_next_request() {
    let cache = CacheConfig::default().ceiling(Duration::from_secs(120));
    let f = fixture(cache, Duration::from_secs(60)).await;
    let alice = f.add_user("alice").await;
    let bob = f.add_user("bob").await;
    let me = session(&alice);
    let (revoked, revoked_key) = f.add_key(&me, "revoked").await;
    let (rotated, rotated_key) = f.add_key(&me, "rotated").await;
    let (root, root_key) = f.add_key(&me, "root").await;
    let root_principal = f.auth.authenticate(root_key.expose()).await.expect("root");
    let (_, child_key) = f.add_key(&root_principal, "child").await;
    let (_, alice_key) = f.add_key(&me, "alice").await;
    let (_, bob_key) = f.add_key(&session(&bob), "bob").await;
    // The poller's first poll, which vouches for the cache from then on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for key in [
        &revoked_key,
        &rotated_key,
        &root_key,
        &child_key,
        &alice_key,
        &bob_key,
    ] {
        f.warm(key).await;
    }

    f.store
        .revoke(&alice, revoked, now())
        .await
        .expect("revoke");
    assert_eq!(
        refusal(f.auth.authenticate(revoked_key.expose()).await),
        InvalidReason::Revoked
    );

    let new_key = ApiKey::generate_for(rotated).expect("randomness");
    let rotation = Rotation {
        digest: peppers().digest(&new_key),
        display: new_key.display_fragment(),
        grace_until: None,
        now: now(),
    };
    let outcome = f
        .store
        .rotate(&alice, rotated, &rotation)
        .await
        .expect("rotate");
    assert!(matches!(outcome, RotateOutcome::Rotated(_)), "{outcome:?}");
    assert_eq!(
        refusal(f.auth.authenticate(rotated_key.expose()).await),
        InvalidReason::SecretMismatch
    );
    f.auth
        .authenticate(new_key.expose())
        .await
        .expect("the new secret");

    let cascade = f
        .store
        .revoke_tree(&alice, root, now())
        .await
        .expect("revoke tree");
    assert_eq!(cascade.descendants.len(), 1);
    for key in [&root_key, &child_key] {
        assert_eq!(
            refusal(f.auth.authenticate(key.expose()).await),
            InvalidReason::Revoked
        );
    }

    f.store
        .set_user_scopes(&alice, &scopes(&["keys:manage"]))
        .await
        .expect("narrow");
    let narrowed = f.auth.authenticate(alice_key.expose()).await.expect("key");
    assert!(!narrowed.has_scope("agents:read"), "{narrowed:?}");
    f.store
        .set_user_disabled(&alice, true)
        .await
        .expect("disable");
    assert_eq!(
        refusal(f.auth.authenticate(alice_key.expose()).await),
        InvalidReason::UserDisabled
    );

    f.store.delete_user(&bob).await.expect("delete");
    assert_eq!(
        refusal(f.auth.authenticate(bob_key.expose()).await),
        InvalidReason::UnknownUser
    );
    // A user created now is found at once, though "no such user" was just cached for bob.
    let bob = f.add_user("bob").await;
    assert!(
        f.auth.authenticate(bob_key.expose()).await.is_ok(),
        "bob's key, bob back"
    );
    drop(bob);
}

/// A second authenticator over a store whose poller is already running (and asleep: it polls
/// once a minute here) is trusted from the next poll, which its arrival brings forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_authenticator_is_trusted_without_waiting_for_the_next_poll() {
    let f = fixture(CacheConfig::default(), Duration::from_secs(60)).await;
    let alice = f.add_user("alice").await;
    let (_, key) = f.add_key(&session(&alice), "ci").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = authenticator_builder(f.keys.clone())
        .users(f.users.clone())
        .verification_cache(CacheConfig::default())
        .build()
        .expect("authenticator");
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.authenticate(key.expose()).await.expect("accepted");
    let before = f.lookups();
    second.authenticate(key.expose()).await.expect("accepted");
    assert_eq!(
        f.lookups(),
        before,
        "the second authenticator's cache is trusted"
    );
}

/// Waits until `refused` holds for the authenticator's answer to `key`; returns how long that
/// took. Fails the test past the ceiling.
async fn time_until(
    f: &Fixture,
    key: &ApiKey,
    refused: impl Fn(&Result<Principal, AuthError>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let answer = f.auth.authenticate(key.expose()).await;
        if refused(&answer) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still {answer:?} after the 5 s ceiling"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the measured delays are what the test reports"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_writes_are_honoured_within_the_poll_interval() {
    let f = fixture(CacheConfig::default(), DEFAULT_CHANGE_POLL_INTERVAL).await;
    let alice = f.add_user("alice").await;
    let me = session(&alice);
    let (revoked, revoked_key) = f.add_key(&me, "revoked").await;
    let (_, alice_key) = f.add_key(&me, "alice").await;
    let other = f.other_process().await;
    f.settle().await;

    f.warm(&revoked_key).await;
    other
        .revoke(&alice, revoked, now())
        .await
        .expect("revoke elsewhere");
    let revoke = time_until(&f, &revoked_key, |a| {
        matches!(a, Err(AuthError::InvalidToken(InvalidReason::Revoked)))
    })
    .await;

    f.settle().await;
    f.warm(&alice_key).await;
    other
        .set_user_scopes(&alice, &scopes(&["keys:manage"]))
        .await
        .expect("narrow elsewhere");
    let narrow = time_until(&f, &alice_key, |a| {
        a.as_ref().is_ok_and(|p| !p.has_scope("agents:read"))
    })
    .await;

    f.settle().await;
    f.warm(&alice_key).await;
    other
        .set_user_disabled(&alice, true)
        .await
        .expect("disable elsewhere");
    let disable = time_until(&f, &alice_key, |a| {
        matches!(a, Err(AuthError::InvalidToken(InvalidReason::UserDisabled)))
    })
    .await;

    eprintln!(
        "another process's write honoured after: revoke {revoke:?}, narrow scopes {narrow:?}, \
         disable user {disable:?} (poll interval {:?})",
        f.interval
    );
    for (what, took) in [("revoke", revoke), ("narrow", narrow), ("disable", disable)] {
        assert!(
            took < Duration::from_secs(1),
            "{what} took {took:?}, more than a second"
        );
    }
}

/// The SQLite behaviour the poller rests on, checked on this build of SQLite: a connection's
/// `PRAGMA data_version` moves when another connection of the same process commits (as it
/// does for other processes), and stays put for no commit at all.
#[tokio::test]
async fn data_version_moves_for_commits_of_other_connections() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("auth.db");
    let writer = nexora_auth_sqlite::connect(&path).await.expect("open");
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&writer)
        .await
        .expect("create");
    let options = (*writer.connect_options()).clone();
    let mut watcher = SqliteConnection::connect_with(&options)
        .await
        .expect("open");
    async fn version(conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(conn)
            .await
            .expect("data_version")
    }
    let v0 = version(&mut watcher).await;
    assert_eq!(version(&mut watcher).await, v0, "nothing was committed");
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&writer)
        .await
        .expect("insert");
    let v1 = version(&mut watcher).await;
    assert_ne!(v1, v0, "a commit by another connection");
    // A second pool, as another process would have.
    let other = nexora_auth_sqlite::connect(&path).await.expect("open");
    sqlx::query("UPDATE t SET x = 2")
        .execute(&other)
        .await
        .expect("update");
    assert_ne!(version(&mut watcher).await, v1, "a commit by another pool");
}

#[test]
fn without_a_runtime_the_store_is_unwatched() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = runtime.block_on(async {
        let pool = nexora_auth_sqlite::connect(dir.path().join("auth.db"))
            .await
            .expect("open");
        SqliteStore::new(pool).await.expect("migrate")
    });
    // Outside the runtime: no poller can be started, so the store must not claim a feed.
    assert_eq!(
        store.watch_changes(ChangeFeed::detached()),
        Freshness::Unwatched
    );
    let _inside = runtime.enter();
    assert_eq!(
        store.watch_changes(ChangeFeed::detached()),
        Freshness::Watched
    );
}
