//! The storage contract: [`KeyStore`] for API keys and [`UserStore`] for password users.
//!
//! Stores are deliberately dumb: they keep and return records, atomically. Every auth rule
//! (digest comparison, expiry, revocation, scopes) lives in [`crate::Authenticator`], so a
//! custom store cannot weaken it. The conformance kit `nexora-auth-testkit` checks every
//! contract written here.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{
    KeyId, Scopes, StoredDigest,
    cache::{ChangeFeed, Freshness},
    limits::{Credits, RateLimit},
};

/// The owner of a credential: an opaque id from the host application (a user id, a tenant id,
/// a service name). This crate never interprets it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(Arc<str>);

impl OwnerId {
    /// Wraps an id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerId({:?})", &*self.0)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for OwnerId {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for OwnerId {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl serde::Serialize for OwnerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for OwnerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// A stored API key. Holds a keyed digest of the key, never the key.
///
/// Not `#[non_exhaustive]` on purpose: store implementations build it from their rows.
/// With the `serde` feature it is `Serialize`/`Deserialize` (times in RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeyRecord {
    /// The key's id, also embedded in the key text.
    pub id: KeyId,
    /// Who owns the key.
    pub owner: OwnerId,
    /// The owner's label for the key ("CI pipeline").
    pub name: String,
    /// What the key may do.
    pub scopes: Scopes,
    /// When the key was created.
    #[cfg_attr(feature = "serde", serde(with = "time::serde::rfc3339"))]
    pub created_at: OffsetDateTime,
    /// When the key was last used (recorded at most once per interval, see
    /// [`crate::AuthenticatorBuilder::last_used_interval`]).
    #[cfg_attr(feature = "serde", serde(with = "time::serde::rfc3339::option"))]
    pub last_used_at: Option<OffsetDateTime>,
    /// After this instant the key no longer authenticates.
    #[cfg_attr(feature = "serde", serde(with = "time::serde::rfc3339::option"))]
    pub expires_at: Option<OffsetDateTime>,
    /// Set when the key was revoked; a revoked key never authenticates again.
    #[cfg_attr(feature = "serde", serde(with = "time::serde::rfc3339::option"))]
    pub revoked_at: Option<OffsetDateTime>,
    /// Non-secret fragment shown in lists (`nxr_4fGh2k…Xy3Q`).
    pub display: String,
    /// The digest of the current secret.
    pub digest: StoredDigest,
    /// The digest of the secret replaced by the last rotation, while its grace period lasts.
    pub previous: Option<PreviousDigest>,
    /// The key whose holder created this one; `None` when a user (a login session) or the
    /// application itself created it. Revoking a key with `cascade` follows these links.
    pub created_by: Option<KeyId>,
    /// The key's rate limit ([`crate::limits`]); `None`: no limit of its own.
    #[cfg_attr(feature = "serde", serde(default))]
    pub rate_limit: Option<RateLimit>,
    /// The key's usage credits ([`crate::limits`]); `None`: unmetered.
    #[cfg_attr(feature = "serde", serde(default))]
    pub credits: Option<Credits>,
}

/// The digest of a rotated-out secret that keeps working until `valid_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PreviousDigest {
    /// The old secret's digest.
    pub digest: StoredDigest,
    /// The old secret stops working at this instant.
    #[cfg_attr(feature = "serde", serde(with = "time::serde::rfc3339"))]
    pub valid_until: OffsetDateTime,
}

/// The part of a [`KeyRecord`] that authentication needs: no name, no display fragment, so a
/// store can serve it without copying strings (see [`KeyStore::find_credentials`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCredentials {
    /// The key's id.
    pub id: KeyId,
    /// Who owns the key.
    pub owner: OwnerId,
    /// What the key may do.
    pub scopes: Scopes,
    /// After this instant the key no longer authenticates.
    pub expires_at: Option<OffsetDateTime>,
    /// Set when the key was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// The digest of the current secret.
    pub digest: StoredDigest,
    /// The rotated-out digest, while its grace period lasts.
    pub previous: Option<PreviousDigest>,
    /// The key's rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Whether the key has credits ([`KeyRecord::credits`] is set): the count itself is read
    /// only when a lease runs out.
    pub metered: bool,
}

impl From<KeyRecord> for KeyCredentials {
    fn from(r: KeyRecord) -> Self {
        Self {
            id: r.id,
            owner: r.owner,
            scopes: r.scopes,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            digest: r.digest,
            previous: r.previous,
            rate_limit: r.rate_limit,
            metered: r.credits.is_some(),
        }
    }
}

/// What [`KeyStore::update_key`] changes: each `Some` field is written, each `None` left as
/// it is (`Some(None)` clears a limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUpdate {
    /// A new name (already validated by the core).
    pub name: Option<String>,
    /// A new rate limit, or `Some(None)` to remove it.
    pub rate_limit: Option<Option<RateLimit>>,
    /// New credits, or `Some(None)` to remove them.
    pub credits: Option<Option<Credits>>,
}

/// What [`KeyStore::rotate`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The new secret's digest.
    pub digest: StoredDigest,
    /// The new display fragment.
    pub display: String,
    /// `Some(t)`: keep the current digest as [`KeyRecord::previous`], valid until `t`.
    /// `None`: the current secret dies with the rotation (the default).
    pub grace_until: Option<OffsetDateTime>,
    /// The store refuses the rotation if the key expired at or before this instant.
    pub now: OffsetDateTime,
}

/// The result of [`KeyStore::rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per rotation, never on the hot path; boxing would only add an allocation"
)]
pub enum RotateOutcome {
    /// The key now has the new digest; the updated record.
    Rotated(KeyRecord),
    /// No such key for this owner (including another owner's key).
    NotFound,
    /// The key is revoked; nothing changed.
    Revoked,
    /// The key has expired; nothing changed.
    Expired,
}

/// The state of a key as read back after a conditional rotate changed nothing (see
/// [`RotateOutcome::refusal`]). A helper for SQL stores; other stores do not need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState {
    /// The key has been revoked.
    pub revoked: bool,
    /// The key had expired at the rotation's `now` (compared at the store's precision).
    pub expired: bool,
}

impl RotateOutcome {
    /// A helper for SQL stores, which other stores do not need: why a store's conditional
    /// rotate (`… WHERE owner = ? AND revoked_at IS NULL AND not expired`) updated nothing, from the owner's key state read afterwards (`None`: no such
    /// key for this owner). Revocation and expiry never undo themselves, so that later read
    /// explains the refusal; an active key that was not updated is a store failure.
    pub fn refusal(state: Option<KeyState>) -> Result<Self, StoreError> {
        match state {
            None => Ok(Self::NotFound),
            Some(KeyState { revoked: true, .. }) => Ok(Self::Revoked),
            Some(KeyState { expired: true, .. }) => Ok(Self::Expired),
            Some(_) => Err(StoreError::unavailable(
                "rotate updated nothing on an active key",
            )),
        }
    }
}

/// A helper for SQL stores: whether `prefix` is a safe table-name prefix: 0 to 32 of `a-z`, `0-9`, `_`,
/// not starting with a digit. Stores splice it into DDL, so nothing else may pass.
pub fn is_valid_table_prefix(prefix: &str) -> bool {
    prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !prefix.starts_with(|c: char| c.is_ascii_digit())
}

/// The result of [`KeyStore::revoke_tree`]: the outcome for the key itself, and the keys it
/// created (transitively) that this call revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CascadeOutcome {
    /// What happened to the key named in the call.
    pub root: RevokeOutcome,
    /// The descendants revoked by this call (not those revoked before it), in no set order.
    pub descendants: Vec<KeyId>,
}

impl CascadeOutcome {
    /// Builds an outcome (for store implementations).
    pub fn new(root: RevokeOutcome, descendants: Vec<KeyId>) -> Self {
        Self { root, descendants }
    }
}

/// The result of [`KeyStore::revoke`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeOutcome {
    /// The key was active and is now revoked.
    Revoked,
    /// The key was already revoked; nothing changed (revocation is idempotent).
    AlreadyRevoked,
    /// No such key for this owner (including another owner's key).
    NotFound,
}

/// One entry of a [`KeyStore::record_last_used`] batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastUsed {
    /// The key.
    pub id: KeyId,
    /// When it was used.
    pub at: OffsetDateTime,
}

/// A store failure. Never means "not found": that is `Ok(None)` or a `NotFound` outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// [`KeyStore::insert`] or [`UserStore::insert_user`] with an id that already exists.
    #[error("a record with this id already exists")]
    DuplicateId,
    /// [`UserStore::insert_user`] with an email that already exists (case-insensitively).
    #[error("a user with this email already exists")]
    DuplicateEmail,
    /// [`KeyStore::insert`] of a record whose [`KeyRecord::created_by`] names a key that is
    /// revoked, missing, or another owner's: the creator lost its power before the insert.
    #[error("the creating key is revoked")]
    CreatorRevoked,
    /// The backend failed: connection refused, pool timeout, I/O error, corrupt row.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What failed (no secrets).
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// A backend failure with a message only.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// A backend failure wrapping its cause.
    pub fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Storage for API key records.
///
/// Write a store with [`macro@crate::async_trait`] (re-exported from this crate), as the
/// example below does; the trait is object safe and used as `Arc<dyn KeyStore>`.
///
/// # Contract
///
/// Every requirement on a store is here; the `nexora-auth-testkit` conformance suite checks
/// each point, one test per contract.
///
/// * **Sharing.** `Send + Sync + 'static`, used from many tasks at once as `Arc<dyn KeyStore>`.
/// * **Errors.** `Ok(None)` / a `NotFound` outcome means "no such key"; `Err` means the store
///   failed ([`StoreError::Unavailable`]). Never turn a failure into "not found" (that would
///   be a 401 instead of a 503).
/// * **Owner scoping.** [`rotate`](Self::rotate), [`revoke`](Self::revoke),
///   [`revoke_tree`](Self::revoke_tree) and [`list`](Self::list) only see the given owner's
///   keys: another owner's key is *not found*. [`find`](Self::find) is unscoped: it serves
///   authentication, where the key id is all there is.
/// * **Timestamps.** Every timestamp (`created_at`, `last_used_at`, `expires_at`,
///   `revoked_at`, `previous.valid_until`, and the instants given to `rotate`, `revoke` and
///   `record_last_used`) is kept to at least the **microsecond** and compared as an instant.
///   Callers only write whole microseconds, so a store with microsecond precision (as
///   PostgreSQL has) returns exactly what it was given; a store keeping milliseconds does not.
/// * **insert** stores the record as given; an existing id is [`StoreError::DuplicateId`] and
///   leaves the existing record untouched. When [`KeyRecord::created_by`] is set, the insert
///   happens only if that key exists for the same owner and is not revoked, checked atomically
///   with the insert *and* with [`revoke_tree`](Self::revoke_tree): otherwise
///   [`StoreError::CreatorRevoked`] and nothing is stored. (So a key revoked with its whole
///   tree can never gain a child that escapes the cascade.)
/// * **find** returns the record as last written, including revoked and expired ones (the
///   caller decides what they mean).
/// * **find_credentials** returns exactly what `find` returns, minus name and display
///   fragment, for every state: `None` for an unknown id; for an active key, a key rotated with
///   a grace period (`previous` set), a revoked key (`revoked_at` set) and an expired key
///   (`expires_at` in the past), the same fields `find` returns. The default does this.
/// * **list** returns the owner's keys that are not revoked, ordered by `created_at`, then `id`
///   (expired keys are listed).
/// * **rotate** is atomic: in one step, if the key exists for the owner, is not revoked and has
///   not expired at `rotation.now` (`expires_at <= now` is expired; compare with the given
///   instant, never the database's clock), replace `digest` and `display`, set `previous` to
///   the old digest with `grace_until` (or clear it when `grace_until` is `None`), and return
///   the new record. Reading the record, checking it, then writing in separate steps is not
///   atomic: two concurrent rotations then both keep the same old digest as `previous`, and the
///   key one of them handed back never works. After `rotate` returns, no `find` may return the
///   old digest as current. Refusals change nothing: `NotFound`, `Revoked`, `Expired`.
/// * **revoke** sets `revoked_at` once and clears `previous`, in one atomic step: of concurrent
///   revokes of one key exactly one returns [`RevokeOutcome::Revoked`]; revoking again returns
///   [`RevokeOutcome::AlreadyRevoked`] and keeps the first timestamp.
/// * **revoke_tree** does what `revoke` does to the key and, in the same atomic step, revokes
///   every not-yet-revoked key of the owner reachable through `created_by` links from it
///   (children, their children, …), whether or not the key itself was already revoked. It
///   returns the ids it revoked. A concurrent `insert` whose creator is in the tree either
///   lands before (and is revoked) or fails with [`StoreError::CreatorRevoked`].
/// * **update_key** changes, in one atomic step, the fields of a [`KeyUpdate`] that are `Some`
///   on the owner's key if it is not revoked, and returns the updated record; `Ok(None)` (and
///   nothing changed) for an unknown, another owner's or a revoked key. It reports the change
///   to the change feed like any other.
/// * **swap_credits** is a compare-and-swap: it writes `new` as the key's credits only if they
///   are exactly `current` (every field, compared as stored) and the key is not revoked, in one
///   atomic step, and answers whether it wrote. Of concurrent swaps from the same `current`,
///   exactly one succeeds. This is what keeps credits from ever going negative or being spent
///   twice across instances. No other field changes.
/// * **record_last_used** applies a batch; `last_used_at` never moves backwards (also within
///   one batch, where the latest time of a key wins), unknown ids are ignored, and no other
///   field changes. The [`crate::Authenticator`] queues at most one use per key per
///   [`crate::AuthenticatorBuilder::last_used_interval`] and calls this only from
///   [`crate::Authenticator::flush_last_used`], which the flusher of
///   [`crate::Authenticator::spawn_last_used_flusher`] runs periodically. When neither is ever
///   called, `last_used_at` is never written, and the queue holds one entry per key used
///   (bounded by the number of keys); a failed flush keeps its batch for the next one.
///
/// # Testing a store
///
/// `nexora_auth_testkit::key_store_conformance!(fixture: …)` runs every contract above as its
/// own test, on a store the factory builds per test. Each contract first checks the store is
/// empty, so a store on a shared server gives each test its own namespace (a fresh schema or
/// database, a random key prefix) rather than one namespace shared or flushed between tests;
/// the fixture also hands over a store whose backend is down, for the check that failures are
/// `Err`, never "not found".
///
/// # Example: a custom store
///
/// A minimal store over a locked map: every method takes the lock once and never holds it
/// across an `.await`, so each is atomic. The in-memory [`crate::MemoryKeyStore`] is the
/// reference implementation, and `nexora-auth-testkit`'s `examples/custom_store.rs` is a store
/// of the same design run through the conformance suite with one
/// `nexora_auth_testkit::key_store_conformance!` call.
///
/// ```
/// use std::{collections::HashMap, sync::Mutex};
///
/// use nexora_auth::{
///     CascadeOutcome, KeyId, KeyStore, OwnerId, StoreError, async_trait,
///     store::{KeyRecord, LastUsed, PreviousDigest, RevokeOutcome, RotateOutcome, Rotation},
/// };
/// use time::OffsetDateTime;
///
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<KeyId, KeyRecord>>);
///
/// impl MapStore {
///     fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, KeyRecord>> {
///         self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
///     }
/// }
///
/// fn revoke_one(record: &mut KeyRecord, at: OffsetDateTime) -> RevokeOutcome {
///     if record.revoked_at.is_some() {
///         return RevokeOutcome::AlreadyRevoked;
///     }
///     record.revoked_at = Some(at);
///     record.previous = None;
///     RevokeOutcome::Revoked
/// }
///
/// #[async_trait]
/// impl KeyStore for MapStore {
///     async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
///         let mut keys = self.keys();
///         if keys.contains_key(&record.id) {
///             return Err(StoreError::DuplicateId);
///         }
///         if let Some(creator) = record.created_by {
///             let live = keys.get(&creator)
///                 .is_some_and(|c| c.owner == record.owner && c.revoked_at.is_none());
///             if !live {
///                 return Err(StoreError::CreatorRevoked);
///             }
///         }
///         keys.insert(record.id, record.clone());
///         Ok(())
///     }
///
///     async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
///         Ok(self.keys().get(&id).cloned())
///     }
///
///     async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
///         let mut mine: Vec<KeyRecord> = self.keys().values()
///             .filter(|r| &r.owner == owner && r.revoked_at.is_none())
///             .cloned()
///             .collect();
///         mine.sort_by_key(|r| (r.created_at, r.id));
///         Ok(mine)
///     }
///
///     async fn rotate(
///         &self, owner: &OwnerId, id: KeyId, rotation: &Rotation,
///     ) -> Result<RotateOutcome, StoreError> {
///         let mut keys = self.keys(); // check and write under one lock
///         let Some(r) = keys.get_mut(&id).filter(|r| &r.owner == owner) else {
///             return Ok(RotateOutcome::NotFound);
///         };
///         if r.revoked_at.is_some() {
///             return Ok(RotateOutcome::Revoked);
///         }
///         if r.expires_at.is_some_and(|at| at <= rotation.now) {
///             return Ok(RotateOutcome::Expired);
///         }
///         r.previous = rotation.grace_until
///             .map(|valid_until| PreviousDigest { digest: r.digest, valid_until });
///         r.digest = rotation.digest;
///         r.display.clone_from(&rotation.display);
///         Ok(RotateOutcome::Rotated(r.clone()))
///     }
///
///     async fn revoke(
///         &self, owner: &OwnerId, id: KeyId, at: OffsetDateTime,
///     ) -> Result<RevokeOutcome, StoreError> {
///         Ok(match self.keys().get_mut(&id).filter(|r| &r.owner == owner) {
///             None => RevokeOutcome::NotFound,
///             Some(r) => revoke_one(r, at),
///         })
///     }
///
///     async fn revoke_tree(
///         &self, owner: &OwnerId, id: KeyId, at: OffsetDateTime,
///     ) -> Result<CascadeOutcome, StoreError> {
///         let mut keys = self.keys();
///         let Some(root) = keys.get_mut(&id).filter(|r| &r.owner == owner) else {
///             return Ok(CascadeOutcome::new(RevokeOutcome::NotFound, Vec::new()));
///         };
///         let root = revoke_one(root, at);
///         let (mut tree, mut revoked, mut i) = (vec![id], Vec::new(), 0);
///         while i < tree.len() {
///             let parent = tree[i];
///             i += 1;
///             for r in keys.values_mut() {
///                 if &r.owner == owner && r.created_by == Some(parent) {
///                     tree.push(r.id);
///                     if revoke_one(r, at) == RevokeOutcome::Revoked {
///                         revoked.push(r.id);
///                     }
///                 }
///             }
///         }
///         Ok(CascadeOutcome::new(root, revoked))
///     }
///
///     async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
///         let mut keys = self.keys();
///         for used in batch {
///             if let Some(r) = keys.get_mut(&used.id) {
///                 r.last_used_at = r.last_used_at.max(Some(used.at));
///             }
///         }
///         Ok(())
///     }
/// }
///
/// let store: std::sync::Arc<dyn KeyStore> = std::sync::Arc::new(MapStore::default());
/// # drop(store);
/// ```
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key record.
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError>;

    /// Finds a key by id.
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError>;

    /// Finds what authentication needs of a key: the hot path, called once per request.
    ///
    /// The default calls [`find`](Self::find); override it when the backend can fetch less
    /// (fewer columns, no string copies). It must agree with `find` field for field.
    async fn find_credentials(&self, id: KeyId) -> Result<Option<KeyCredentials>, StoreError> {
        Ok(self.find(id).await?.map(KeyCredentials::from))
    }

    /// The owner's non-revoked keys, oldest first.
    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError>;

    /// Atomically replaces the key's secret digest (see the contract above).
    async fn rotate(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError>;

    /// Marks the owner's key revoked at `at`.
    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError>;

    /// Marks the owner's key revoked at `at`, and every key it created, transitively, in one
    /// atomic step (see the contract above).
    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError>;

    /// Applies a batch of last-used times (never moving one backwards).
    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError>;

    /// Changes the owner's live key's name and limits (see the contract above).
    ///
    /// The default answers [`StoreError::Unavailable`]: a store that does not override it
    /// cannot change keys, and requests to do so fail closed (503).
    async fn update_key(
        &self,
        owner: &OwnerId,
        id: KeyId,
        update: &KeyUpdate,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let _ = (owner, id, update);
        Err(StoreError::unavailable("this key store cannot update keys"))
    }

    /// Writes `new` as the key's credits if they are still `current` (see the contract above).
    ///
    /// The default answers [`StoreError::Unavailable`]: without it, metered keys fail closed.
    async fn swap_credits(
        &self,
        id: KeyId,
        current: &Credits,
        new: &Credits,
    ) -> Result<bool, StoreError> {
        let _ = (id, current, new);
        Err(StoreError::unavailable(
            "this key store cannot keep credits",
        ))
    }

    /// Connects the store to an authenticator's verification cache (see [`crate::cache`]):
    /// called once by [`crate::AuthenticatorBuilder::build`]. A store that reports its changes
    /// keeps `feed` and answers how ([`Freshness::Synchronous`] or [`Freshness::Watched`]);
    /// it then reports, through [`ChangeFeed::key_changed`], every change to a key that
    /// `find_credentials` would show (insert, rotate, revoke, a cascade's every key, any
    /// change made outside this trait), and never reports in sync beyond what it has seen.
    /// One store value may be connected to several authenticators.
    ///
    /// The default answers [`Freshness::Unwatched`]: the authenticator then reads this store
    /// on every request (or caches for a time-to-live the host sets explicitly).
    fn watch_changes(&self, feed: ChangeFeed) -> Freshness {
        drop(feed);
        Freshness::Unwatched
    }
}

/// A password user. With the `serde` feature it is `Serialize`/`Deserialize` (the PHC string
/// included: it is what a store keeps).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct UserRecord {
    /// The user's id, used as the [`OwnerId`] of their keys and as the JWT `sub`.
    pub id: OwnerId,
    /// The normalised (lower-case, trimmed) email.
    pub email: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// Everything the user may do; a login token carries all of them, and every credential
    /// of the user is capped at them on each request.
    pub scopes: Scopes,
    /// When the user was created.
    #[cfg_attr(feature = "serde", serde(with = "time::serde::rfc3339"))]
    pub created_at: OffsetDateTime,
    /// A disabled user cannot log in, and none of their tokens or keys authenticate until
    /// they are enabled again.
    pub disabled: bool,
    /// The user's own rate limit, shared by all of their keys and tokens ([`crate::limits`]);
    /// `None`: the host's default applies. Written by
    /// [`UserStore::set_owner_rate_limit`].
    #[cfg_attr(feature = "serde", serde(default))]
    pub rate_limit: Option<RateLimit>,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("password_hash", &format_args!("[redacted]"))
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("disabled", &self.disabled)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// Storage for password users.
///
/// # Contract
///
/// * Emails arrive already normalised by the core (trimmed, lower-cased); the store matches
///   them exactly. A second user with the same email is [`StoreError::DuplicateEmail`], a
///   second with the same id [`StoreError::DuplicateId`].
/// * `Ok(None)` means "no such user", `Err` a store failure — never confused.
/// * [`insert_user`](Self::insert_user) stores [`UserRecord::rate_limit`] as given; every read
///   returns what it or [`set_owner_rate_limit`](Self::set_owner_rate_limit) last wrote.
///   Setting it on an unknown id is `Ok(false)`.
/// * The updates ([`update_password_hash`](Self::update_password_hash),
///   [`set_user_disabled`](Self::set_user_disabled), [`set_user_scopes`](Self::set_user_scopes))
///   change only their own field and return `Ok(false)` for an unknown id;
///   [`delete_user`](Self::delete_user) removes the record (its email becomes free again) and
///   returns `Ok(false)` for an unknown id. A change is visible to the next `find_user`.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Stores a new user.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;

    /// Finds a user by normalised email.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Finds a user by id.
    async fn find_user(&self, id: &OwnerId) -> Result<Option<UserRecord>, StoreError>;

    /// Replaces a user's password hash (after a parameter upgrade). `Ok(false)`: no such user.
    async fn update_password_hash(&self, id: &OwnerId, phc: &str) -> Result<bool, StoreError>;

    /// All users, oldest first.
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;

    /// Disables (`true`) or enables (`false`) a user. `Ok(false)`: no such user.
    async fn set_user_disabled(&self, id: &OwnerId, disabled: bool) -> Result<bool, StoreError>;

    /// Replaces a user's scopes. `Ok(false)`: no such user.
    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError>;

    /// Deletes a user. `Ok(false)`: no such user.
    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError>;

    /// Sets (`Some`) or clears (`None`) the user's own rate limit, reported to the change feed
    /// like any change to the user. `Ok(false)`: no such user. The default answers
    /// [`StoreError::Unavailable`].
    async fn set_owner_rate_limit(
        &self,
        id: &OwnerId,
        limit: Option<RateLimit>,
    ) -> Result<bool, StoreError> {
        let _ = (id, limit);
        Err(StoreError::unavailable(
            "this user store cannot keep rate limits",
        ))
    }

    /// Connects the store to an authenticator's verification cache, as
    /// [`KeyStore::watch_changes`] does for keys: a store that keeps `feed` reports, through
    /// [`ChangeFeed::user_changed`], every change to a user's existence, `disabled` flag or
    /// scopes. The default answers [`Freshness::Unwatched`] (users are read on every request).
    fn watch_user_changes(&self, feed: ChangeFeed) -> Freshness {
        drop(feed);
        Freshness::Unwatched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_reason() {
        let state = |revoked, expired| Some(KeyState { revoked, expired });
        assert_eq!(
            RotateOutcome::refusal(None).unwrap(),
            RotateOutcome::NotFound
        );
        assert_eq!(
            RotateOutcome::refusal(state(true, true)).unwrap(),
            RotateOutcome::Revoked
        );
        assert_eq!(
            RotateOutcome::refusal(state(false, true)).unwrap(),
            RotateOutcome::Expired
        );
        assert!(RotateOutcome::refusal(state(false, false)).is_err());
    }

    #[test]
    fn table_prefixes() {
        for ok in ["", "nexora_", "app2_", "_x"] {
            assert!(is_valid_table_prefix(ok), "{ok:?}");
        }
        for bad in [
            "2x_",
            "Nexora_",
            "a-b",
            "x; DROP TABLE t; --",
            &"a".repeat(33),
        ] {
            assert!(!is_valid_table_prefix(bad), "{bad:?}");
        }
    }
}
