//! The verification cache: what [`Authenticator::authenticate`](crate::Authenticator::authenticate)
//! needs from the stores — a key's [`KeyCredentials`] and, with a user store, the user's status
//! and scopes — kept in memory under a stated bound, so that a request with a hot key costs
//! one HMAC and no store round trip.
//!
//! # What is cached, and for how long
//!
//! * **Records, never secrets.** An entry holds what the store already holds (digest, state,
//!   owner, scopes). The secret is digested and compared on every request, cache or not.
//! * **Positive entries** (a key record, an existing user) are served only while they are
//!   younger than the **ceiling** ([`CacheConfig::ceiling`], 5 seconds by default) *and* the
//!   store's change feed vouches for them (below). There is no stale-while-revalidate: past
//!   either limit, the request goes to the store and waits for it; if the store is down the
//!   answer is [`AuthError::StoreUnavailable`](crate::AuthError::StoreUnavailable), never a
//!   stale "yes".
//! * **Negative entries** (no key with this id, no user with this id) of a store with a
//!   change feed are kept [`CacheConfig::negative_ttl`] (1 second by default), at most
//!   [`CacheConfig::max_negative_entries`] of them (10,000): a client retrying one unknown or
//!   deleted id costs one store query per second. (A flood of *different* random ids reaches the
//!   store once each; bounding that is the job of a per-client rate limit.)
//! * **Memory** is bounded in entries ([`CacheConfig::max_entries`], 100,000) and in bytes
//!   ([`CacheConfig::max_bytes`], 32 MiB, counting owners' and scopes' text). A full shard
//!   drops its expired entries, then arbitrary ones.
//!
//! # The change feed: how an entry learns it is stale
//!
//! At [`AuthenticatorBuilder::build`](crate::AuthenticatorBuilder::build) the authenticator
//! hands each store a [`ChangeFeed`] ([`KeyStore::watch_changes`](crate::KeyStore::watch_changes),
//! [`UserStore::watch_user_changes`](crate::UserStore::watch_user_changes)); the store answers
//! with its [`Freshness`]:
//!
//! * [`Freshness::Synchronous`] — every change goes through this store value, which reports it
//!   before the write returns (the in-memory stores; SQLite for the writes of its own process).
//!   **Bound: 0** — once a revoke returns, no request on this instance accepts the key.
//! * [`Freshness::Watched`] — changes also happen elsewhere (other instances on one Postgres)
//!   and reach the feed asynchronously. The store reports each change it sees and, from time to
//!   time, that it is *in sync* ([`ChangeFeed::in_sync`]: "every change committed before this
//!   mark has been reported"). A positive entry is served only while the last in-sync mark is
//!   younger than the ceiling. **Bound: the ceiling** — a change committed at `t` is honoured
//!   by every instance from `t + ceiling` at the latest, whatever happens to the feed (a lost
//!   connection, a restarted database); normally within milliseconds.
//! * [`Freshness::Unwatched`] — the default of a custom store that does not implement the
//!   feed: positives are **not cached** unless the host opts into a plain time-to-live with
//!   [`CacheConfig::unwatched_ttl`], which is then the bound.
//!
//! A store must never report in sync beyond what it has seen: the bound rests on it. The
//! conformance kit (`nexora-auth-testkit`) checks the feed of every store that offers one.
//!
//! # Races
//!
//! A lookup that misses reads the store, then fills the cache. If a change is reported while
//! that read is in flight, the fill is dropped (each shard counts the changes reported to it,
//! and a fill only lands when the count has not moved since the read began), so an old read
//! can never overwrite a newer invalidation.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash},
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::broadcast, time::Instant};

use crate::{KeyCredentials, KeyId, OwnerId, Scopes};

/// Settings of the verification cache. Every default is on its setter; start from
/// [`CacheConfig::default`] or [`CacheConfig::disabled`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    enabled: bool,
    ceiling: Duration,
    negative_ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    max_negative_entries: usize,
    unwatched_ttl: Option<Duration>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ceiling: Duration::from_secs(5),
            negative_ttl: Duration::from_secs(1),
            max_entries: 100_000,
            max_bytes: 32 << 20,
            max_negative_entries: 10_000,
            unwatched_ttl: None,
        }
    }
}

impl CacheConfig {
    /// No cache: every request reads the stores.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The hard ceiling on the age of a positive entry, and so the longest a change made on
    /// another instance can go unnoticed here (see the [module docs](self)). Defaults to
    /// 5 seconds. Zero disables positive caching.
    #[must_use]
    pub fn ceiling(mut self, ceiling: Duration) -> Self {
        self.ceiling = ceiling;
        self
    }

    /// How long "no such key / user" is remembered. Defaults to 1 second. Zero disables
    /// negative caching.
    #[must_use]
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Most positive entries (keys and users together). Defaults to 100,000.
    #[must_use]
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// Most bytes held by positive entries, counting their text. Defaults to 32 MiB.
    #[must_use]
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Most negative entries. Defaults to 10,000.
    #[must_use]
    pub fn max_negative_entries(mut self, entries: usize) -> Self {
        self.max_negative_entries = entries;
        self
    }

    /// Caches positives of a store without a change feed ([`Freshness::Unwatched`]) for this
    /// long — a plain time-to-live, which is then the revocation bound for that store. Defaults
    /// to `None`: such a store is read on every request.
    #[must_use]
    pub fn unwatched_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.unwatched_ttl = ttl;
        self
    }

    /// The configured ceiling.
    pub fn ceiling_duration(&self) -> Duration {
        self.ceiling
    }

    /// Whether the cache is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
}

/// How a store keeps the verification cache fresh: its answer to
/// [`KeyStore::watch_changes`](crate::KeyStore::watch_changes) and
/// [`UserStore::watch_user_changes`](crate::UserStore::watch_user_changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// The store reports no changes: its positives are not cached (unless
    /// [`CacheConfig::unwatched_ttl`] says otherwise).
    Unwatched,
    /// Every change goes through this store value, which reports it to the feed before the
    /// write returns. Bound 0.
    Synchronous,
    /// Changes reach the feed asynchronously, with [`ChangeFeed::in_sync`] marks; cached
    /// positives are trusted for at most the ceiling after the last mark.
    Watched,
}

/// A change reported through a [`ChangeFeed`], as
/// [`Authenticator::watch`](crate::Authenticator::watch) hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Something about this key changed (revoked, rotated, expiry or scopes changed, created,
    /// deleted).
    Key(KeyId),
    /// Something about this user changed (disabled, scopes, deleted, created).
    User(OwnerId),
    /// Anything may have changed (the feed lost track: a gap in its log).
    Everything,
}

/// An instant taken by [`ChangeFeed::sync_mark`] before a store reads its change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncMark(u64);

/// The handle a store reports changes to (see the [module docs](self)). Cheap to clone. When
/// the authenticator is dropped, [`ChangeFeed::is_closed`] turns true and the store should
/// stop its watcher.
#[derive(Clone)]
pub struct ChangeFeed {
    cache: Weak<Shared>,
    source: Arc<Source>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// Reports that a key changed: its cached record (positive or negative) is dropped.
    pub fn key_changed(&self, id: KeyId) {
        if let Some(cache) = self.cache.upgrade() {
            cache.invalidate_key(id);
        }
    }

    /// Reports that a user changed: their cached status is dropped.
    pub fn user_changed(&self, owner: &OwnerId) {
        if let Some(cache) = self.cache.upgrade() {
            cache.invalidate_user(owner);
        }
    }

    /// Reports that anything may have changed: the whole cache is dropped.
    pub fn everything_changed(&self) {
        if let Some(cache) = self.cache.upgrade() {
            cache.invalidate_all();
        }
    }

    /// The instant to pass to [`in_sync`](Self::in_sync): take it *before* reading the
    /// change log.
    pub fn sync_mark(&self) -> SyncMark {
        SyncMark(
            self.cache
                .upgrade()
                .map_or(0, |cache| cache.clock.elapsed_nanos()),
        )
    }

    /// Reports that every change committed before `mark` has been reported. Marks only move
    /// forward (an older one is ignored).
    pub fn in_sync(&self, mark: SyncMark) {
        self.source.synced.fetch_max(mark.0, Ordering::AcqRel);
    }

    /// Reports that the feed lost its connection: cached positives of this store stop being
    /// trusted at once (rather than when the ceiling runs out), until the next
    /// [`in_sync`](Self::in_sync).
    pub fn out_of_sync(&self) {
        self.source.synced.store(0, Ordering::Release);
    }

    /// Whether the authenticator this feed serves is gone (the watcher can stop).
    pub fn is_closed(&self) -> bool {
        self.cache.strong_count() == 0
    }

    /// A feed not connected to any cache: every report is dropped. For tests of stores.
    pub fn detached() -> Self {
        Self {
            cache: Weak::new(),
            source: Arc::new(Source::new()),
        }
    }
}

/// The feeds a store reports to: one store value may serve several authenticators, each with
/// its feed. Feeds of dropped authenticators are let go at the next [`add`](Self::add). Cheap
/// to share; a store keeps one and calls it from every write.
#[derive(Debug, Default)]
pub struct ChangeFeeds {
    feeds: std::sync::RwLock<Vec<ChangeFeed>>,
}

impl ChangeFeeds {
    /// No feeds yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a feed (from [`KeyStore::watch_changes`](crate::KeyStore::watch_changes) or
    /// [`UserStore::watch_user_changes`](crate::UserStore::watch_user_changes)).
    pub fn add(&self, feed: ChangeFeed) {
        let mut feeds = self.feeds.write().unwrap_or_else(PoisonError::into_inner);
        feeds.retain(|f| !f.is_closed());
        feeds.push(feed);
    }

    /// Whether any feed is connected to a live authenticator.
    pub fn is_empty(&self) -> bool {
        self.feeds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .all(ChangeFeed::is_closed)
    }

    /// Calls `report` on every feed.
    pub fn each(&self, mut report: impl FnMut(&ChangeFeed)) {
        for feed in self
            .feeds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            report(feed);
        }
    }

    /// [`ChangeFeed::key_changed`] on every feed.
    pub fn key_changed(&self, id: KeyId) {
        self.each(|f| f.key_changed(id));
    }

    /// [`ChangeFeed::user_changed`] on every feed.
    pub fn user_changed(&self, owner: &OwnerId) {
        self.each(|f| f.user_changed(owner));
    }
}

/// Nanoseconds since the cache's creation, on the monotonic clock (`tokio::time::Instant`, so
/// tests can pause time). Zero means "never".
#[derive(Debug)]
struct MonoClock {
    base: Instant,
}

impl MonoClock {
    fn elapsed_nanos(&self) -> u64 {
        // +1 keeps 0 free for "never"; u64 nanoseconds last 584 years.
        u64::try_from(self.base.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn instant_of(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos.saturating_sub(1))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

const UNWATCHED: u8 = 0;
const SYNCHRONOUS: u8 = 1;
const WATCHED: u8 = 2;

/// One store's feed state.
#[derive(Debug)]
struct Source {
    mode: AtomicU8,
    /// The last in-sync mark (0: never / lost).
    synced: AtomicU64,
}

impl Source {
    fn new() -> Self {
        Self {
            mode: AtomicU8::new(UNWATCHED),
            synced: AtomicU64::new(0),
        }
    }

    fn set(&self, freshness: Freshness) {
        let mode = match freshness {
            Freshness::Synchronous => SYNCHRONOUS,
            Freshness::Watched => WATCHED,
            Freshness::Unwatched => UNWATCHED,
        };
        self.mode.store(mode, Ordering::Release);
    }
}

/// A cached key record, with when this instance last queued a `last_used_at` write for it (so
/// a hot key skips the tracker's own map).
#[derive(Debug)]
pub(crate) struct CachedKey {
    credentials: KeyCredentials,
    noted_secs: AtomicI64,
}

impl CachedKey {
    pub(crate) fn new(credentials: KeyCredentials) -> Self {
        Self {
            credentials,
            noted_secs: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether a use at `now_secs` is due to be noted, at most once per `interval_secs`
    /// (marking it noted when it is).
    pub(crate) fn use_due(&self, now_secs: i64, interval_secs: i64) -> bool {
        let last = self.noted_secs.load(Ordering::Relaxed);
        if now_secs.saturating_sub(last) < interval_secs {
            return false;
        }
        self.noted_secs.store(now_secs, Ordering::Relaxed);
        true
    }
}

impl std::ops::Deref for CachedKey {
    type Target = KeyCredentials;

    fn deref(&self) -> &KeyCredentials {
        &self.credentials
    }
}

/// A cached user: what the live-user rule needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserStatus {
    pub(crate) disabled: bool,
    pub(crate) scopes: Scopes,
    /// The user's own rate limit ([`crate::limits`]).
    pub(crate) rate_limit: Option<crate::limits::RateLimit>,
}

/// What a lookup found in the cache.
pub(crate) enum Lookup<V> {
    /// A trusted entry: `Some` record, or `None` for a cached "no such record".
    Hit(Option<V>),
    /// Go to the store, then [`VerificationCache`]'s `fill_*` with this ticket.
    Miss(Ticket),
}

/// Proof of when a miss began, so a fill can tell whether a change overtook it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    shard_epoch: u64,
    global_epoch: u64,
    started: u64,
}

struct Entry<V> {
    value: Option<V>,
    at: u64,
    bytes: usize,
}

struct Shard<K, V> {
    map: ShardMap<K, V>,
    /// Changes reported to this shard: a fill whose ticket saw another count is dropped.
    epoch: u64,
    positives: usize,
    negatives: usize,
    bytes: usize,
}

impl<K, V> Default for Shard<K, V> {
    fn default() -> Self {
        Self {
            map: ShardMap::default(),
            epoch: 0,
            positives: 0,
            negatives: 0,
            bytes: 0,
        }
    }
}

const SHARDS: usize = 16;

/// A sharded map of entries with per-shard limits. Keys are hashed with foldhash, seeded at
/// random per process: several times faster than SipHash on a 16-byte id, and without the
/// seed an attacker choosing key ids cannot aim them at one bucket (each shard's map is also
/// bounded in entries, so even a perfect collision costs a bounded scan).
struct Table<K, V> {
    hasher: foldhash::fast::RandomState,
    shards: Box<[Mutex<Shard<K, V>>]>,
}

type ShardMap<K, V> = HashMap<K, Entry<V>, foldhash::fast::RandomState>;

struct Limits {
    positives: usize,
    negatives: usize,
    bytes: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Table<K, V> {
    fn new() -> Self {
        Self {
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, Shard<K, V>> {
        // The modulo keeps the index below SHARDS, which fits any usize.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "reduced modulo SHARDS first"
        )]
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn clear(&self) {
        for shard in &*self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.epoch += 1;
            *shard = Shard {
                epoch: shard.epoch,
                ..Shard::default()
            };
        }
    }

    fn remove(&self, key: &K) {
        let mut shard = self.shard(key);
        shard.epoch += 1;
        if let Some(old) = shard.map.remove(key) {
            shard.forget(&old);
        }
    }
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    fn forget(&mut self, entry: &Entry<V>) {
        if entry.value.is_some() {
            self.positives -= 1;
            self.bytes -= entry.bytes;
        } else {
            self.negatives -= 1;
        }
    }

    /// Makes room for one entry of `bytes` (positive or negative) within `limits`: drops
    /// entries older than their lifetime, then arbitrary ones of the same kind. `false` if the
    /// entry can never fit.
    fn make_room(
        &mut self,
        positive: bool,
        bytes: usize,
        limits: &Limits,
        now: u64,
        max_age: (u64, u64),
    ) -> bool {
        let fits = |s: &Self| {
            if positive {
                s.positives < limits.positives && s.bytes + bytes <= limits.bytes
            } else {
                s.negatives < limits.negatives
            }
        };
        if fits(self) {
            return true;
        }
        let (positive_age, negative_age) = max_age;
        let stale: Vec<K> = self
            .map
            .iter()
            .filter(|(_, e)| {
                let age = if e.value.is_some() {
                    positive_age
                } else {
                    negative_age
                };
                now.saturating_sub(e.at) > age
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(old) = self.map.remove(&key) {
                self.forget(&old);
            }
        }
        while !fits(self) {
            let victim = self
                .map
                .iter()
                .find(|(_, e)| e.value.is_some() == positive)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else {
                return false;
            };
            if let Some(old) = self.map.remove(&victim) {
                self.forget(&old);
            }
        }
        true
    }
}

/// The state shared by the authenticator and the feeds.
struct Shared {
    config: CacheConfig,
    clock: MonoClock,
    keys: Table<KeyId, Arc<CachedKey>>,
    users: Table<OwnerId, UserStatus>,
    global_epoch: AtomicU64,
    key_source: Arc<Source>,
    user_source: Arc<Source>,
    limits: Limits,
    changes: broadcast::Sender<Change>,
}

impl Shared {
    fn invalidate_key(&self, id: KeyId) {
        self.keys.remove(&id);
        let _ = self.changes.send(Change::Key(id));
    }

    fn invalidate_user(&self, owner: &OwnerId) {
        self.users.remove(owner);
        let _ = self.changes.send(Change::User(owner.clone()));
    }

    fn invalidate_all(&self) {
        // The global count moves first: a fill that began before it is dropped even if its
        // shard is cleared before the fill lands.
        self.global_epoch.fetch_add(1, Ordering::AcqRel);
        self.keys.clear();
        self.users.clear();
        let _ = self.changes.send(Change::Everything);
    }

    /// How long a positive entry of `source` may be served at `now`, as the age limit in
    /// nanoseconds; `None`: positives of this source are not served.
    fn positive_age_limit(&self, source: &Source, now: u64) -> Option<u64> {
        match source.mode.load(Ordering::Acquire) {
            SYNCHRONOUS => Some(nanos(self.config.ceiling)),
            WATCHED => {
                let synced = source.synced.load(Ordering::Acquire);
                (synced != 0 && now.saturating_sub(synced) <= nanos(self.config.ceiling))
                    .then(|| nanos(self.config.ceiling))
            }
            _ => self.config.unwatched_ttl.map(nanos),
        }
    }
}

/// The cache, as the authenticator holds it.
pub(crate) struct VerificationCache {
    shared: Option<Arc<Shared>>,
}

impl VerificationCache {
    pub(crate) fn new(config: CacheConfig) -> Self {
        if !config.enabled {
            return Self { shared: None };
        }
        // Per shard; at least one entry each so a tiny setting still caches something.
        let limits = Limits {
            positives: (config.max_entries / SHARDS).max(1),
            negatives: (config.max_negative_entries / SHARDS).max(1),
            bytes: (config.max_bytes / SHARDS).max(1),
        };
        let (changes, _) = broadcast::channel(1024);
        Self {
            shared: Some(Arc::new(Shared {
                config,
                clock: MonoClock {
                    base: Instant::now(),
                },
                keys: Table::new(),
                users: Table::new(),
                global_epoch: AtomicU64::new(0),
                key_source: Arc::new(Source::new()),
                user_source: Arc::new(Source::new()),
                limits,
                changes,
            })),
        }
    }

    /// The feed for the key store; `None` when the cache is off.
    pub(crate) fn key_feed(&self) -> ChangeFeed {
        self.feed(|s| &s.key_source)
    }

    /// The feed for the user store.
    pub(crate) fn user_feed(&self) -> ChangeFeed {
        self.feed(|s| &s.user_source)
    }

    fn feed(&self, source: impl Fn(&Shared) -> &Arc<Source>) -> ChangeFeed {
        match &self.shared {
            Some(shared) => ChangeFeed {
                cache: Arc::downgrade(shared),
                source: Arc::clone(source(shared)),
            },
            None => ChangeFeed::detached(),
        }
    }

    /// Records what the key store answered to the feed.
    pub(crate) fn set_key_freshness(&self, freshness: Freshness) {
        if let Some(shared) = &self.shared {
            shared.key_source.set(freshness);
        }
    }

    /// Records what the user store answered to the feed.
    pub(crate) fn set_user_freshness(&self, freshness: Freshness) {
        if let Some(shared) = &self.shared {
            shared.user_source.set(freshness);
        }
    }

    /// The key's cached record, or a ticket to fill it.
    pub(crate) fn key(&self, id: KeyId) -> Lookup<Arc<CachedKey>> {
        match &self.shared {
            Some(shared) => lookup(shared, &shared.keys, &shared.key_source, &id),
            None => Lookup::Miss(Ticket {
                shard_epoch: 0,
                global_epoch: 0,
                started: 0,
            }),
        }
    }

    /// Caches what the store answered for a key.
    pub(crate) fn fill_key(&self, ticket: Ticket, id: KeyId, found: Option<Arc<CachedKey>>) {
        if let Some(shared) = &self.shared {
            let bytes = found.as_deref().map_or(0, |c| {
                size_of::<KeyCredentials>() + c.owner.as_str().len() + scope_bytes(&c.scopes)
            });
            fill(shared, &shared.keys, ticket, id, found, bytes);
        }
    }

    /// The user's cached status, or a ticket to fill it.
    pub(crate) fn user(&self, owner: &OwnerId) -> Lookup<UserStatus> {
        match &self.shared {
            Some(shared) => lookup(shared, &shared.users, &shared.user_source, owner),
            None => Lookup::Miss(Ticket {
                shard_epoch: 0,
                global_epoch: 0,
                started: 0,
            }),
        }
    }

    /// Caches what the store answered for a user.
    pub(crate) fn fill_user(&self, ticket: Ticket, owner: &OwnerId, found: Option<UserStatus>) {
        if let Some(shared) = &self.shared {
            let bytes = found.as_ref().map_or(0, |u| {
                size_of::<UserStatus>() + owner.as_str().len() + scope_bytes(&u.scopes)
            });
            fill(shared, &shared.users, ticket, owner.clone(), found, bytes);
        }
    }

    /// Drops a key's entry (the authenticator's own writes, for stores without a feed).
    pub(crate) fn forget_key(&self, id: KeyId) {
        if let Some(shared) = &self.shared {
            shared.invalidate_key(id);
        }
    }

    /// Drops a user's entry.
    pub(crate) fn forget_user(&self, owner: &OwnerId) {
        if let Some(shared) = &self.shared {
            shared.invalidate_user(owner);
        }
    }

    /// A receiver of every change reported from now on; `None` when the cache is off.
    pub(crate) fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        self.shared.as_ref().map(|s| s.changes.subscribe())
    }

    /// Until when the cached positives served now stay trusted without a new in-sync mark:
    /// `None` when positives are not trusted now (or the cache is off).
    pub(crate) fn trusted_until(&self) -> Option<Instant> {
        let shared = self.shared.as_ref()?;
        let now = shared.clock.elapsed_nanos();
        let until = |source: &Source| -> Option<u64> {
            match source.mode.load(Ordering::Acquire) {
                SYNCHRONOUS => Some(u64::MAX),
                WATCHED => {
                    let synced = source.synced.load(Ordering::Acquire);
                    let end = synced.saturating_add(nanos(shared.config.ceiling));
                    (synced != 0 && end >= now).then_some(end)
                }
                _ => None,
            }
        };
        let end = until(&shared.key_source)?.min(until(&shared.user_source)?);
        Some(if end == u64::MAX {
            Instant::now() + Duration::from_secs(86_400)
        } else {
            shared.clock.instant_of(end)
        })
    }

    /// The configured ceiling (zero when the cache is off).
    pub(crate) fn ceiling(&self) -> Duration {
        self.shared
            .as_ref()
            .map_or(Duration::ZERO, |s| s.config.ceiling)
    }
}

fn scope_bytes(scopes: &Scopes) -> usize {
    scopes.iter().map(|s| s.len() + size_of::<String>()).sum()
}

fn lookup<K: Hash + Eq + Clone, V: Clone>(
    shared: &Shared,
    table: &Table<K, V>,
    source: &Source,
    key: &K,
) -> Lookup<V> {
    let now = shared.clock.elapsed_nanos();
    let shard = table.shard(key);
    let ticket = Ticket {
        shard_epoch: shard.epoch,
        global_epoch: shared.global_epoch.load(Ordering::Acquire),
        started: now,
    };
    if let Some(entry) = shard.map.get(key) {
        let age = now.saturating_sub(entry.at);
        let served = match &entry.value {
            Some(_) => shared
                .positive_age_limit(source, now)
                .is_some_and(|limit| age <= limit),
            // Negatives only ever refuse, so the feed's health does not matter; but a store
            // without a feed is read on every request, unless the host chose a time-to-live.
            None => {
                age <= nanos(shared.config.negative_ttl)
                    && (source.mode.load(Ordering::Acquire) != UNWATCHED
                        || shared.config.unwatched_ttl.is_some())
            }
        };
        if served {
            return Lookup::Hit(entry.value.clone());
        }
    }
    Lookup::Miss(ticket)
}

fn fill<K: Hash + Eq + Clone, V: Clone>(
    shared: &Shared,
    table: &Table<K, V>,
    ticket: Ticket,
    key: K,
    value: Option<V>,
    bytes: usize,
) {
    let positive = value.is_some();
    let lifetime = if positive {
        shared.config.ceiling
    } else {
        shared.config.negative_ttl
    };
    if lifetime.is_zero() {
        return;
    }
    let mut shard = table.shard(&key);
    if shard.epoch != ticket.shard_epoch
        || shared.global_epoch.load(Ordering::Acquire) != ticket.global_epoch
    {
        // A change was reported while the store was being read: this answer may predate it.
        return;
    }
    if let Some(old) = shard.map.remove(&key) {
        shard.forget(&old);
    }
    let now = shared.clock.elapsed_nanos();
    let max_age = (
        nanos(shared.config.ceiling),
        nanos(shared.config.negative_ttl),
    );
    if !shard.make_room(positive, bytes, &shared.limits, now, max_age) {
        return;
    }
    if positive {
        shard.positives += 1;
        shard.bytes += bytes;
    } else {
        shard.negatives += 1;
    }
    // The entry's age counts from when the read began: the store's answer is at least that old.
    shard.map.insert(
        key,
        Entry {
            value,
            at: ticket.started,
            bytes,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoredDigest, store::OwnerId};

    fn credentials(id: KeyId) -> Arc<CachedKey> {
        Arc::new(CachedKey::new(KeyCredentials {
            id,
            owner: OwnerId::new("alice"),
            scopes: Scopes::new(["agents:read"]).unwrap(),
            expires_at: None,
            revoked_at: None,
            digest: StoredDigest {
                pepper_version: 1,
                digest: crate::KeyDigest::try_from(&[7u8; 32][..]).unwrap(),
            },
            previous: None,
            rate_limit: None,
            metered: false,
        }))
    }

    fn new_cache(config: CacheConfig, freshness: Freshness) -> (VerificationCache, ChangeFeed) {
        let cache = VerificationCache::new(config);
        cache.set_key_freshness(freshness);
        cache.set_user_freshness(freshness);
        let feed = cache.key_feed();
        (cache, feed)
    }

    fn miss(cache: &VerificationCache, id: KeyId) -> Ticket {
        match cache.key(id) {
            Lookup::Miss(t) => t,
            Lookup::Hit(_) => panic!("expected a miss"),
        }
    }

    fn hit(cache: &VerificationCache, id: KeyId) -> Option<Arc<CachedKey>> {
        match cache.key(id) {
            Lookup::Hit(v) => v,
            Lookup::Miss(_) => panic!("expected a hit"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn synchronous_positives_live_until_the_ceiling() {
        let (cache, _feed) = new_cache(CacheConfig::default(), Freshness::Synchronous);
        let id = KeyId::new_random();
        let t = miss(&cache, id);
        cache.fill_key(t, id, Some(credentials(id)));
        assert!(hit(&cache, id).is_some());
        tokio::time::advance(Duration::from_millis(4_900)).await;
        assert!(hit(&cache, id).is_some());
        tokio::time::advance(Duration::from_millis(200)).await;
        miss(&cache, id);
    }

    #[tokio::test(start_paused = true)]
    async fn watched_positives_need_a_recent_sync_mark() {
        let (cache, feed) = new_cache(CacheConfig::default(), Freshness::Watched);
        let id = KeyId::new_random();
        let t = miss(&cache, id);
        cache.fill_key(t, id, Some(credentials(id)));
        // Never in sync: not trusted.
        miss(&cache, id);
        feed.in_sync(feed.sync_mark());
        assert!(hit(&cache, id).is_some());
        // The entry is 3 s old, the mark too: still served; a new entry filled now is then
        // 0 s old while the mark ages past the ceiling: no longer served.
        tokio::time::advance(Duration::from_secs(3)).await;
        let t = miss_after_forget(&cache, &feed, id);
        cache.fill_key(t, id, Some(credentials(id)));
        assert!(hit(&cache, id).is_some());
        tokio::time::advance(Duration::from_millis(2_100)).await;
        miss(&cache, id);
        // A fresh mark restores trust in the (young) entry; losing the feed ends it at once.
        feed.in_sync(feed.sync_mark());
        assert!(hit(&cache, id).is_some());
        feed.out_of_sync();
        miss(&cache, id);
        // An older mark does not move trust back.
        let old = feed.sync_mark();
        tokio::time::advance(Duration::from_secs(1)).await;
        feed.in_sync(feed.sync_mark());
        feed.in_sync(old);
        assert!(hit(&cache, id).is_some());
    }

    fn miss_after_forget(cache: &VerificationCache, feed: &ChangeFeed, id: KeyId) -> Ticket {
        feed.key_changed(id);
        miss(cache, id)
    }

    #[tokio::test(start_paused = true)]
    async fn unwatched_positives_are_not_cached_without_a_ttl() {
        let (cache, _) = new_cache(CacheConfig::default(), Freshness::Unwatched);
        let id = KeyId::new_random();
        let t = miss(&cache, id);
        cache.fill_key(t, id, Some(credentials(id)));
        miss(&cache, id);
        // Nor its negatives.
        let t = miss(&cache, id);
        cache.fill_key(t, id, None);
        miss(&cache, id);
        let (cache, _) = cache_ttl();
        let t = miss(&cache, id);
        cache.fill_key(t, id, Some(credentials(id)));
        assert!(hit(&cache, id).is_some());
        tokio::time::advance(Duration::from_millis(600)).await;
        miss(&cache, id);
    }

    fn cache_ttl() -> (VerificationCache, ChangeFeed) {
        new_cache(
            CacheConfig::default().unwatched_ttl(Some(Duration::from_millis(500))),
            Freshness::Unwatched,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_read_drops_the_fill() {
        let (cache, feed) = new_cache(CacheConfig::default(), Freshness::Synchronous);
        let id = KeyId::new_random();
        let t = miss(&cache, id);
        feed.key_changed(id);
        cache.fill_key(t, id, Some(credentials(id)));
        miss(&cache, id);
        let t = miss(&cache, id);
        feed.everything_changed();
        cache.fill_key(t, id, Some(credentials(id)));
        miss(&cache, id);
    }

    #[tokio::test(start_paused = true)]
    async fn negatives_expire_and_are_dropped_by_a_change() {
        let (cache, feed) = new_cache(CacheConfig::default(), Freshness::Watched);
        let id = KeyId::new_random();
        let t = miss(&cache, id);
        cache.fill_key(t, id, None);
        // Negatives are served whatever the feed's health: they only ever refuse.
        assert!(hit(&cache, id).is_none());
        feed.key_changed(id);
        let t = miss(&cache, id);
        cache.fill_key(t, id, None);
        tokio::time::advance(Duration::from_millis(1_100)).await;
        miss(&cache, id);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_and_bytes_are_bounded() {
        let config = CacheConfig::default()
            .max_entries(SHARDS * 4)
            .max_negative_entries(SHARDS * 2);
        let (cache, _) = new_cache(config, Freshness::Synchronous);
        for _ in 0..10_000 {
            let id = KeyId::new_random();
            let t = miss(&cache, id);
            cache.fill_key(t, id, Some(credentials(id)));
            let other = KeyId::new_random();
            let t = miss(&cache, other);
            cache.fill_key(t, other, None);
        }
        let shared = cache.shared.as_ref().unwrap();
        for shard in &*shared.keys.shards {
            let shard = shard.lock().unwrap();
            assert!(shard.positives <= 4 && shard.negatives <= 2);
            assert_eq!(shard.map.len(), shard.positives + shard.negatives);
        }
        let bytes_per_entry = size_of::<KeyCredentials>() + "alice".len() + 11 + 24;
        let config = CacheConfig::default().max_bytes(SHARDS * bytes_per_entry * 3);
        let (cache, _) = new_cache(config, Freshness::Synchronous);
        for _ in 0..1_000 {
            let id = KeyId::new_random();
            let t = miss(&cache, id);
            cache.fill_key(t, id, Some(credentials(id)));
        }
        let shared = cache.shared.as_ref().unwrap();
        for shard in &*shared.keys.shards {
            let shard = shard.lock().unwrap();
            assert!(shard.bytes <= bytes_per_entry * 3, "{}", shard.bytes);
            assert!(shard.positives <= 3);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_cache_always_misses() {
        let (cache, feed) = new_cache(CacheConfig::disabled(), Freshness::Synchronous);
        let id = KeyId::new_random();
        let t = miss(&cache, id);
        cache.fill_key(t, id, Some(credentials(id)));
        miss(&cache, id);
        assert!(feed.is_closed());
        assert!(cache.subscribe().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn trusted_until_follows_the_marks() {
        let (cache, feed) = new_cache(CacheConfig::default(), Freshness::Watched);
        assert!(cache.trusted_until().is_none());
        feed.in_sync(feed.sync_mark());
        // The user source is still unsynced.
        assert!(cache.trusted_until().is_none());
        let users = cache.user_feed();
        users.in_sync(users.sync_mark());
        let until = cache.trusted_until().unwrap();
        assert!(until > Instant::now() + Duration::from_millis(4_900));
        assert!(until <= Instant::now() + Duration::from_secs(5));
    }
}
