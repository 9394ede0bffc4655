//! The store's side of the verification cache's change feed (the crate docs' "Change feed"
//! section says what it guarantees): its own writes are reported as they return, and a poller
//! on one connection outside the pool watches `PRAGMA data_version` for everyone else's.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use nexora_auth::{ChangeFeed, ChangeFeeds, Freshness, KeyId, OwnerId, cache::SyncMark};
use sqlx::{Connection, SqliteConnection, SqlitePool, sqlite::SqliteConnectOptions};

/// How often a watched store reads `PRAGMA data_version` by default: 250 milliseconds (see
/// [`SqliteStore::change_poll_interval`](crate::SqliteStore::change_poll_interval)).
pub const DEFAULT_CHANGE_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The shortest poll interval accepted: 1 millisecond.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// What one store value (and its clones) shares for the change feed.
pub(crate) struct Watch {
    feeds: ChangeFeeds,
    interval_micros: AtomicU64,
    /// Whether a poller task is running for this store value. Checked and set together with
    /// the feed list (see [`Watch::watch`] and [`Poller::stop_if_unwatched`]), so a feed added
    /// while the poller decides to stop is never left without one.
    running: Mutex<bool>,
    /// The poller's connection, outside the pool: `None` before the first poll and after a
    /// failure. `PRAGMA data_version` answers per connection, so it has to be the same
    /// connection from one poll to the next.
    connection: tokio::sync::Mutex<Option<SqliteConnection>>,
    /// Cuts the poller's wait short: a new feed is trusted from the next poll, which should
    /// not be a whole interval away.
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("interval", &self.interval())
            .field("polling", &*lock(&self.running))
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Watch {
    pub(crate) fn new() -> Self {
        Self {
            feeds: ChangeFeeds::new(),
            interval_micros: AtomicU64::new(micros(DEFAULT_CHANGE_POLL_INTERVAL)),
            running: Mutex::new(false),
            connection: tokio::sync::Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_micros.load(Ordering::Relaxed))
    }

    pub(crate) fn set_interval(&self, interval: Duration) {
        self.interval_micros
            .store(micros(interval.max(MIN_POLL_INTERVAL)), Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub(crate) fn key_changed(&self, id: KeyId) {
        self.feeds.key_changed(id);
    }

    pub(crate) fn user_changed(&self, owner: &OwnerId) {
        self.feeds.user_changed(owner);
    }

    pub(crate) fn everything_changed(&self) {
        self.feeds.each(ChangeFeed::everything_changed);
    }

    fn out_of_sync(&self) {
        self.feeds.each(ChangeFeed::out_of_sync);
    }

    /// Connects `feed`, starting the poller if this store value has none running.
    pub(crate) fn watch(self: &Arc<Self>, feed: ChangeFeed, pool: &SqlitePool) -> Freshness {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "nexora-auth-sqlite: the authenticator was built outside a Tokio runtime, so \
                 the store cannot watch for changes made by other processes; the verification \
                 cache will read this store on every request"
            );
            return Freshness::Unwatched;
        };
        self.feeds.add(feed);
        let mut running = lock(&self.running);
        if *running {
            self.wake.notify_one();
        } else {
            *running = true;
            // The poller never creates a database: if the file is gone, it fails (and trust
            // ends) rather than watching a new empty file the pool does not use.
            let options = (*pool.connect_options()).clone().create_if_missing(false);
            let poller = Poller {
                watch: Arc::clone(self),
                stopped: false,
            };
            runtime.spawn(poller.run(options, pool.clone()));
        }
        Freshness::Watched
    }

    /// Reads `PRAGMA data_version` on the poller's connection, opening it first if needed.
    /// `Ok((version, fresh))`: `fresh` when the connection was opened now, so the version has
    /// nothing to be compared with. On an error the connection is dropped, so the next poll
    /// starts from a new connection and a new baseline.
    async fn data_version(
        &self,
        options: &SqliteConnectOptions,
    ) -> Result<(i64, bool), sqlx::Error> {
        let mut slot = self.connection.lock().await;
        let fresh = slot.is_none();
        let conn = match &mut *slot {
            Some(conn) => conn,
            None => slot.insert(SqliteConnection::connect_with(options).await?),
        };
        // A statement of its own, outside any transaction: it begins a read transaction, which
        // is when SQLite notices commits by other connections.
        let version = sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(conn)
            .await;
        match version {
            Ok(version) => Ok((version, fresh)),
            Err(e) => {
                *slot = None;
                Err(e)
            }
        }
    }
}

/// The background task of one store value.
struct Poller {
    watch: Arc<Watch>,
    /// Set when the task stops on its own: a poller dropped otherwise (its runtime shutting
    /// down) still has feeds to tell.
    stopped: bool,
}

impl Drop for Poller {
    fn drop(&mut self) {
        if !self.stopped {
            // Nobody will vouch for the cached records any more: say so now rather than let
            // the ceiling run out, and let the next `watch` start a poller again.
            self.watch.out_of_sync();
            *lock(&self.watch.running) = false;
        }
    }
}

impl Poller {
    async fn run(mut self, options: SqliteConnectOptions, pool: SqlitePool) {
        let mut last: Option<i64> = None;
        let mut healthy = true;
        loop {
            if self.stop_if_unwatched(&pool).await {
                return;
            }
            // The marks come before the read: a commit before a mark is seen by the read.
            let mut marks: Vec<(ChangeFeed, SyncMark)> = Vec::new();
            self.watch.feeds.each(|feed| {
                if !feed.is_closed() {
                    marks.push((feed.clone(), feed.sync_mark()));
                }
            });
            match self.watch.data_version(&options).await {
                Ok((version, fresh)) => {
                    // A new connection has no earlier version to compare with, so anything
                    // may have changed since the last poll that did (or, for the first poll,
                    // since records were cached for feeds not yet in sync).
                    if fresh || last != Some(version) {
                        // Every feed, including one added since the marks were taken: its
                        // records may have been read before a commit this poll just noticed.
                        self.watch.everything_changed();
                    }
                    last = Some(version);
                    for (feed, mark) in &marks {
                        feed.in_sync(*mark);
                    }
                    if !healthy {
                        tracing::info!(
                            "nexora-auth-sqlite: change feed reading the database again"
                        );
                        healthy = true;
                    }
                }
                Err(error) => {
                    self.watch.out_of_sync();
                    last = None;
                    if healthy {
                        tracing::warn!(
                            %error,
                            "nexora-auth-sqlite: change feed cannot read PRAGMA data_version; \
                             cached records of this store are not trusted until it can (retrying)"
                        );
                        healthy = false;
                    }
                }
            }
            // Timing out is the normal way to the next poll.
            let _ = tokio::time::timeout(self.watch.interval(), self.watch.wake.notified()).await;
        }
    }

    /// Stops when every feed's authenticator is gone, or the pool was closed (the store is
    /// shut down: nothing it answered before can be vouched for).
    async fn stop_if_unwatched(&mut self, pool: &SqlitePool) -> bool {
        let closed = pool.is_closed();
        let conn = {
            let mut running = lock(&self.watch.running);
            if !(closed || self.watch.feeds.is_empty()) {
                return false;
            }
            *running = false;
            self.stopped = true;
            // Taken while `running` is still held, so it is this poller's connection and not
            // one a poller started by the next `watch` has opened. Only a poll holds the lock,
            // and this task is not polling.
            self.watch
                .connection
                .try_lock()
                .ok()
                .and_then(|mut slot| slot.take())
        };
        if closed {
            self.watch.out_of_sync();
        }
        if let Some(conn) = conn {
            // Closing politely; a failure here leaves nothing behind to clean up.
            let _ = conn.close().await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use nexora_auth::{
        AuthError, Authenticator, CacheConfig, InvalidReason, KeyStore, NewKey, OwnerId, Principal,
    };
    use nexora_auth_testkit::{
        authenticator_builder,
        failure::{FlakyStore, StoreMethod},
        now, scopes,
    };

    use super::*;
    use crate::SqliteStore;

    fn cached_authenticator(
        keys: Arc<FlakyStore<SqliteStore>>,
        ceiling: Duration,
    ) -> Authenticator {
        authenticator_builder(keys)
            .verification_cache(CacheConfig::default().ceiling(ceiling))
            .build()
            .expect("authenticator")
    }

    fn refusal(result: Result<Principal, AuthError>) -> InvalidReason {
        match result {
            Err(AuthError::InvalidToken(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// SQLite offers no way to break one healthy connection from outside, so the test drops the
    /// poller's connection as a failed one is dropped, and moves the database's directory away
    /// so that reopening it fails for real. The ceiling is a minute: only the poller's
    /// out-of-sync report can end trust within the test.
    #[allow(
        clippy::print_stderr,
        reason = "the measured delays are what the test reports"
    )]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_poller_connection_ends_trust_at_once_and_recovery_drops_the_cache() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let home = dir.path().join("db");
        let away = dir.path().join("db.away");
        std::fs::create_dir(&home).expect("directory");
        let pool = crate::connect(home.join("auth.db")).await.expect("open");
        let store = Arc::new(SqliteStore::new(pool).await.expect("migrate"));
        let keys = Arc::new(FlakyStore::from_arc(Arc::clone(&store)).forwarding_changes());
        let auth = cached_authenticator(keys.clone(), Duration::from_secs(60));
        let lookups = || keys.calls().of(StoreMethod::FindCredentials);
        let key = auth
            .create_key_for(&OwnerId::new("alice"), &scopes(&["a"]), NewKey::named("ci"))
            .await
            .expect("create")
            .key;
        tokio::time::sleep(DEFAULT_CHANGE_POLL_INTERVAL * 3).await;
        auth.authenticate(key.expose()).await.expect("accepted");
        let cached = lookups();
        auth.authenticate(key.expose()).await.expect("accepted");
        assert_eq!(lookups(), cached, "the key is served from the cache");

        std::fs::rename(&home, &away).expect("move the database away");
        let conn = store
            .watch
            .connection
            .lock()
            .await
            .take()
            .expect("the poller holds a connection");
        conn.close().await.expect("close");
        let start = Instant::now();
        while lookups() == cached {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the cache still vouches for the key without a poller"
            );
            // Accepted or not: what counts is that the store was asked.
            let _ = auth.authenticate(key.expose()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let untrusted_after = start.elapsed();
        assert!(
            untrusted_after < Duration::from_secs(1),
            "trust ended only after {untrusted_after:?}"
        );

        // While the poller is blind, the key is cached as valid (the store was just read, and
        // entries are filled even when not trusted), and another process revokes it.
        auth.authenticate(key.expose()).await.expect("accepted");
        let other = SqliteStore::new(crate::connect(away.join("auth.db")).await.expect("open"))
            .await
            .expect("migrate (a no-op)");
        other
            .revoke(&OwnerId::new("alice"), key.id(), now())
            .await
            .expect("revoke elsewhere");
        drop(other);

        // Back again: the poller reopens the file. A new connection cannot tell what changed
        // while it was away, so the cache is dropped before it is trusted again. No request in
        // between: one would refill the entry from the store and hide a missing drop.
        std::fs::rename(&away, &home).expect("move the database back");
        tokio::time::sleep(DEFAULT_CHANGE_POLL_INTERVAL * 3).await;
        assert_eq!(
            refusal(auth.authenticate(key.expose()).await),
            InvalidReason::Revoked
        );
        let before = lookups();
        assert_eq!(
            refusal(auth.authenticate(key.expose()).await),
            InvalidReason::Revoked
        );
        assert_eq!(lookups(), before, "trusted again: served from the cache");
        eprintln!("poller connection lost: cache untrusted after {untrusted_after:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_poller_stops_with_its_last_authenticator_or_the_pool_and_starts_again() {
        let interval = Duration::from_millis(20);
        let dir = tempfile::tempdir().expect("temporary directory");
        let pool = crate::connect(dir.path().join("auth.db"))
            .await
            .expect("open");
        let store = Arc::new(
            SqliteStore::new(pool)
                .await
                .expect("migrate")
                .change_poll_interval(interval),
        );
        let keys = Arc::new(FlakyStore::from_arc(Arc::clone(&store)).forwarding_changes());
        let polling = || *lock(&store.watch.running);
        let connected = || async { store.watch.connection.lock().await.is_some() };

        let first = cached_authenticator(keys.clone(), Duration::from_secs(5));
        let second = cached_authenticator(keys.clone(), Duration::from_secs(5));
        tokio::time::sleep(interval * 5).await;
        assert!(polling() && connected().await);
        drop(first);
        tokio::time::sleep(interval * 5).await;
        assert!(polling(), "one authenticator is still watching");
        drop(second);
        tokio::time::sleep(interval * 5).await;
        assert!(!polling(), "no authenticator is left");
        assert!(!connected().await, "the poller's connection is closed");

        let _third = cached_authenticator(keys, Duration::from_secs(5));
        tokio::time::sleep(interval * 5).await;
        assert!(polling() && connected().await);

        // A closed pool is a store shut down: the poller stops though an authenticator lives.
        store.pool().close().await;
        tokio::time::sleep(interval * 5).await;
        assert!(!polling(), "the pool is closed");
        assert!(!connected().await, "the poller's connection is closed");
    }
}
