//! Store failures: a store whose backend is down must answer `Err`, never "not found", so the
//! service answers 503, never 401.
//!
//! Run [`key_store_backend_down`] and [`user_store_backend_down`] on a store whose backend you
//! have broken (a closed pool, a server that is not listening). [`FlakyStore`] breaks any
//! store on demand, for stores without a backend to break — every call, or only the calls
//! naming some keys — and counts every call it receives ([`StoreCalls`]), so a test can also
//! assert that a request reached no store at all.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use nexora_auth::{
    AuditEvent, AuditStore, AuthError, CascadeOutcome, ChangeFeed, Freshness, KeyCredentials,
    KeyId, KeyStore, MemoryKeyStore, OwnerId, Scopes, SecretString, StoreError, UserRecord,
    UserStore,
    audit::AuditQuery,
    limits::{Credits, RateLimit},
    store::{KeyRecord, KeyUpdate, LastUsed, RevokeOutcome, RotateOutcome, Rotation},
};
use time::OffsetDateTime;

use crate::{MicrosClock, authenticator, authenticator_with, new_record, now};

fn expect_unavailable<T: std::fmt::Debug>(check: &str, what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!(
            "backend-down check `{check}` failed: {what} on a failed backend must be \
             Err(StoreError::Unavailable) (a 503), never Ok(None) or a NotFound outcome \
             (a 401), got {other:?}"
        ),
    }
}

/// Checks an [`AuditStore`] whose backend is down: `record`, `list` and `prune` are all
/// `Err(Unavailable)`.
pub async fn audit_store_backend_down(store: Arc<dyn AuditStore>) {
    let check = "audit_store_backend_down";
    let event = crate::audit_store::Events::new().of(Some("alice"));
    expect_unavailable(check, "record", store.record(&[event]).await);
    expect_unavailable(
        check,
        "list",
        store
            .list(&AuditQuery::for_owner(OwnerId::new("alice"), 10))
            .await,
    );
    expect_unavailable(check, "prune", store.prune(now()).await);
}

/// Checks a [`TicketStore`](nexora_auth::TicketStore) whose backend is down: every method is
/// `Err(Unavailable)` (never "no such ticket"), and redeeming through the authenticator
/// answers 503.
pub async fn ticket_store_backend_down(store: Arc<dyn nexora_auth::TicketStore>) {
    let check = "ticket_store_backend_down";
    let record = crate::ticket_store::ticket("alice", None, now() + time::Duration::SECOND * 30);
    expect_unavailable(check, "insert_ticket", store.insert_ticket(&record).await);
    expect_unavailable(
        check,
        "take_ticket",
        store.take_ticket(&record.digest, now()).await,
    );
    expect_unavailable(check, "prune_tickets", store.prune_tickets(now()).await);
    let auth = crate::authenticator_builder(Arc::new(MemoryKeyStore::new()))
        .ws_tickets(store)
        .build()
        .expect("a valid authenticator");
    let ticket = format!("nxt_{}", "A".repeat(32));
    match auth.redeem_ticket(&ticket, None).await {
        Err(AuthError::StoreUnavailable(_)) => {}
        other => panic!(
            "backend-down check `{check}` failed: redeeming a ticket on a failed store must be \
             StoreUnavailable (a 503), got {other:?}"
        ),
    }
}

/// Checks a [`KeyStore`] whose backend is down: every method is `Err(Unavailable)` (never
/// `Ok(None)` or `NotFound`), and [`nexora_auth::Authenticator::authenticate`] answers 503.
pub async fn key_store_backend_down(store: Arc<dyn KeyStore>) {
    let (key, record) = new_record("alice", "k", now());
    let owner = OwnerId::new("alice");
    expect_unavailable(
        "key_store_backend_down",
        "find",
        store.find(record.id).await,
    );
    expect_unavailable(
        "key_store_backend_down",
        "insert",
        store.insert(&record).await,
    );
    expect_unavailable("key_store_backend_down", "list", store.list(&owner).await);
    let rotation = Rotation {
        digest: record.digest,
        display: record.display.clone(),
        grace_until: None,
        now: now(),
    };
    expect_unavailable(
        "key_store_backend_down",
        "rotate",
        store.rotate(&owner, record.id, &rotation).await,
    );
    expect_unavailable(
        "key_store_backend_down",
        "revoke",
        store.revoke(&owner, record.id, now()).await,
    );
    expect_unavailable(
        "key_store_backend_down",
        "revoke_tree",
        store.revoke_tree(&owner, record.id, now()).await,
    );
    expect_unavailable(
        "key_store_backend_down",
        "record_last_used",
        store
            .record_last_used(&[LastUsed {
                id: record.id,
                at: now(),
            }])
            .await,
    );
    let update = KeyUpdate {
        name: Some("renamed".to_owned()),
        ..KeyUpdate::default()
    };
    expect_unavailable(
        "key_store_backend_down",
        "update_key",
        store.update_key(&owner, record.id, &update).await,
    );
    let credits = Credits {
        remaining: 5,
        refill: None,
        refilled_at: now(),
    };
    expect_unavailable(
        "key_store_backend_down",
        "swap_credits",
        store.swap_credits(record.id, &credits, &credits).await,
    );

    let auth = authenticator(store);
    let error = auth
        .authenticate(key.expose())
        .await
        .expect_err(
            "backend-down check `key_store_backend_down` failed: authenticate on a failed backend must be an error",
        );
    assert!(
        matches!(error, AuthError::StoreUnavailable(_)),
        "backend-down check `key_store_backend_down` failed: authenticate on a failed backend must be `StoreUnavailable` (503), never a bad credential (401): {error:?}"
    );
}

/// Checks a [`UserStore`] whose backend is down: every method is `Err(Unavailable)`, and
/// [`nexora_auth::Authenticator::login`] answers 503 (not "incorrect email or password").
pub async fn user_store_backend_down(store: Arc<dyn UserStore>) {
    let user = UserRecord {
        id: OwnerId::new("u-alice"),
        email: "alice@example.com".into(),
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        scopes: crate::scopes(&["a"]),
        created_at: now(),
        disabled: false,
        rate_limit: None,
    };
    expect_unavailable(
        "user_store_backend_down",
        "insert_user",
        store.insert_user(&user).await,
    );
    expect_unavailable(
        "user_store_backend_down",
        "find_user_by_email",
        store.find_user_by_email(&user.email).await,
    );
    expect_unavailable(
        "user_store_backend_down",
        "find_user",
        store.find_user(&user.id).await,
    );
    expect_unavailable(
        "user_store_backend_down",
        "update_password_hash",
        store.update_password_hash(&user.id, "x").await,
    );
    expect_unavailable(
        "user_store_backend_down",
        "list_users",
        store.list_users().await,
    );
    expect_unavailable(
        "user_store_backend_down",
        "set_user_disabled",
        store.set_user_disabled(&user.id, true).await,
    );
    expect_unavailable(
        "user_store_backend_down",
        "set_user_scopes",
        store
            .set_user_scopes(&user.id, &crate::scopes(&["b"]))
            .await,
    );
    expect_unavailable(
        "user_store_backend_down",
        "delete_user",
        store.delete_user(&user.id).await,
    );
    expect_unavailable(
        "user_store_backend_down",
        "set_owner_rate_limit",
        store
            .set_owner_rate_limit(&user.id, RateLimit::new(1, 1))
            .await,
    );

    let auth = authenticator_with(
        Arc::new(MemoryKeyStore::new()),
        Some(store),
        Arc::new(MicrosClock),
    );
    let error = auth
        .login(
            "alice@example.com",
            &SecretString::from("a password long enough"),
        )
        .await
        .expect_err(
            "backend-down check `user_store_backend_down` failed: login on a failed backend must be an error",
        );
    assert!(
        matches!(error, AuthError::StoreUnavailable(_)),
        "backend-down check `user_store_backend_down` failed: login on a failed backend must be `StoreUnavailable` (503), never a wrong login (401): {error:?}"
    );
}

/// A method of [`KeyStore`] or [`UserStore`], as [`StoreCalls`] counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreMethod {
    /// [`KeyStore::insert`].
    Insert,
    /// [`KeyStore::find`].
    Find,
    /// [`KeyStore::find_credentials`] (the authentication hot path).
    FindCredentials,
    /// [`KeyStore::list`].
    List,
    /// [`KeyStore::rotate`].
    Rotate,
    /// [`KeyStore::revoke`].
    Revoke,
    /// [`KeyStore::revoke_tree`].
    RevokeTree,
    /// [`KeyStore::record_last_used`].
    RecordLastUsed,
    /// [`KeyStore::update_key`].
    UpdateKey,
    /// [`KeyStore::swap_credits`].
    SwapCredits,
    /// [`UserStore::insert_user`].
    InsertUser,
    /// [`UserStore::find_user_by_email`].
    FindUserByEmail,
    /// [`UserStore::find_user`].
    FindUser,
    /// [`UserStore::update_password_hash`].
    UpdatePasswordHash,
    /// [`UserStore::list_users`].
    ListUsers,
    /// [`UserStore::set_user_disabled`].
    SetUserDisabled,
    /// [`UserStore::set_user_scopes`].
    SetUserScopes,
    /// [`UserStore::delete_user`].
    DeleteUser,
    /// [`UserStore::set_owner_rate_limit`].
    SetOwnerRateLimit,
    /// [`AuditStore::record`].
    RecordAudit,
    /// [`AuditStore::list`].
    ListAudit,
    /// [`AuditStore::prune`].
    PruneAudit,
}

impl StoreMethod {
    /// Every method of the three traits, key store first, audit store last.
    pub const ALL: [Self; 22] = [
        Self::Insert,
        Self::Find,
        Self::FindCredentials,
        Self::List,
        Self::Rotate,
        Self::Revoke,
        Self::RevokeTree,
        Self::RecordLastUsed,
        Self::UpdateKey,
        Self::SwapCredits,
        Self::InsertUser,
        Self::FindUserByEmail,
        Self::FindUser,
        Self::UpdatePasswordHash,
        Self::ListUsers,
        Self::SetUserDisabled,
        Self::SetUserScopes,
        Self::DeleteUser,
        Self::SetOwnerRateLimit,
        Self::RecordAudit,
        Self::ListAudit,
        Self::PruneAudit,
    ];
}

/// Calls counted by one or more [`FlakyStore`]s (give a key store and a user store the same
/// counter with [`FlakyStore::counting_into`] to count both together).
#[derive(Debug, Default)]
pub struct StoreCalls {
    /// Per method: calls received, failed or not.
    received: [AtomicU64; StoreMethod::ALL.len()],
    /// Per method: calls passed on to the wrapped store (received and not failed).
    forwarded: [AtomicU64; StoreMethod::ALL.len()],
}

impl StoreCalls {
    /// Every call received so far, of any method, failed or not.
    pub fn total(&self) -> u64 {
        self.received.iter().map(|n| n.load(Ordering::SeqCst)).sum()
    }

    /// Calls of `method` received so far, failed or not.
    pub fn of(&self, method: StoreMethod) -> u64 {
        self.received[method as usize].load(Ordering::SeqCst)
    }

    /// Calls of `method` passed on to the wrapped store (the ones that did not fail on purpose).
    pub fn forwarded(&self, method: StoreMethod) -> u64 {
        self.forwarded[method as usize].load(Ordering::SeqCst)
    }
}

/// Wraps a store: counts every call into [`StoreCalls`], fails every call while
/// [`FlakyStore::set_failing`] is on (it starts off) and the calls naming a key given to
/// [`FlakyStore::fail_for`], with `Err(StoreError::Unavailable)` as a database that refuses
/// connections would, and passes every other call on to the wrapped store — every method of
/// [`KeyStore`], [`UserStore`] and [`AuditStore`], `find_credentials` included, so the wrapped store's own
/// hot path is the one under test.
///
/// `S` may be unsized: [`FlakyStore::from_arc`] wraps an `Arc<dyn KeyStore>`.
pub struct FlakyStore<S: ?Sized> {
    calls: Arc<StoreCalls>,
    failing: AtomicBool,
    failing_keys: Mutex<HashSet<KeyId>>,
    inner: Arc<S>,
    forward_changes: bool,
    /// What the wrapped store answered to `watch_changes` / `watch_user_changes`, last.
    answered: Mutex<[Option<Freshness>; 2]>,
}

impl<S> FlakyStore<S> {
    /// Wraps `inner`, passing calls through, with a counter of its own.
    pub fn new(inner: S) -> Self {
        Self::from_arc(Arc::new(inner))
    }
}

impl<S: Default> Default for FlakyStore<S> {
    fn default() -> Self {
        Self::new(S::default())
    }
}

impl<S: ?Sized> FlakyStore<S> {
    /// Wraps a shared store (an `Arc<dyn KeyStore>`, say), with a counter of its own.
    pub fn from_arc(inner: Arc<S>) -> Self {
        Self {
            calls: Arc::default(),
            failing: AtomicBool::new(false),
            failing_keys: Mutex::new(HashSet::new()),
            inner,
            forward_changes: false,
            answered: Mutex::new([None, None]),
        }
    }

    /// Counts into `calls` instead (shared with other wrappers).
    pub fn counting_into(mut self, calls: Arc<StoreCalls>) -> Self {
        self.calls = calls;
        self
    }

    /// Connects the wrapped store's change feed to the authenticator (`watch_changes` and
    /// `watch_user_changes` are passed on), so the verification cache serves what the wrapped
    /// store vouches for. Off by default: the wrapper reports no changes, so every
    /// authentication reaches it (and its failures).
    pub fn forwarding_changes(mut self) -> Self {
        self.forward_changes = true;
        self
    }

    /// What the wrapped store answered to [`KeyStore::watch_changes`] when an authenticator
    /// was last built on this wrapper: `None` when none was, or changes are not forwarded.
    pub fn key_freshness(&self) -> Option<Freshness> {
        self.answered.lock().unwrap_or_else(PoisonError::into_inner)[0]
    }

    /// What the wrapped store answered to [`UserStore::watch_user_changes`], as
    /// [`key_freshness`](Self::key_freshness) does for keys.
    pub fn user_freshness(&self) -> Option<Freshness> {
        self.answered.lock().unwrap_or_else(PoisonError::into_inner)[1]
    }

    fn answered(&self, index: usize, freshness: Freshness) -> Freshness {
        self.answered.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(freshness);
        freshness
    }

    /// The calls counted so far.
    pub fn calls(&self) -> &Arc<StoreCalls> {
        &self.calls
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// Turns failures of every call on or off.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Makes every call naming `id` fail from now on (`insert` of a record with that id,
    /// `find`, `find_credentials`, `rotate`, `revoke`, `revoke_tree`, `update_key`,
    /// `swap_credits`).
    pub fn fail_for(&self, id: KeyId) {
        self.failing_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
    }

    /// Counts a call of `method` (naming `key`, if any), then fails it or lets it through.
    fn enter(&self, method: StoreMethod, key: Option<KeyId>) -> Result<(), StoreError> {
        self.calls.received[method as usize].fetch_add(1, Ordering::SeqCst);
        let failing_key = key.is_some_and(|id| {
            self.failing_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&id)
        });
        if self.failing.load(Ordering::SeqCst) || failing_key {
            return Err(StoreError::unavailable("FlakyStore: failing on purpose"));
        }
        self.calls.forwarded[method as usize].fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl<S: ?Sized> std::fmt::Debug for FlakyStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlakyStore")
            .field("calls", &self.calls.total())
            .field("failing", &self.failing.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: KeyStore + ?Sized> KeyStore for FlakyStore<S> {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.enter(StoreMethod::Insert, Some(record.id))?;
        self.inner.insert(record).await
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.enter(StoreMethod::Find, Some(id))?;
        self.inner.find(id).await
    }

    async fn find_credentials(&self, id: KeyId) -> Result<Option<KeyCredentials>, StoreError> {
        self.enter(StoreMethod::FindCredentials, Some(id))?;
        self.inner.find_credentials(id).await
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        self.enter(StoreMethod::List, None)?;
        self.inner.list(owner).await
    }

    async fn rotate(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        self.enter(StoreMethod::Rotate, Some(id))?;
        self.inner.rotate(owner, id, rotation).await
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        self.enter(StoreMethod::Revoke, Some(id))?;
        self.inner.revoke(owner, id, at).await
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        self.enter(StoreMethod::RevokeTree, Some(id))?;
        self.inner.revoke_tree(owner, id, at).await
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        self.enter(StoreMethod::RecordLastUsed, None)?;
        self.inner.record_last_used(batch).await
    }

    async fn update_key(
        &self,
        owner: &OwnerId,
        id: KeyId,
        update: &KeyUpdate,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.enter(StoreMethod::UpdateKey, Some(id))?;
        self.inner.update_key(owner, id, update).await
    }

    async fn swap_credits(
        &self,
        id: KeyId,
        current: &Credits,
        new: &Credits,
    ) -> Result<bool, StoreError> {
        self.enter(StoreMethod::SwapCredits, Some(id))?;
        self.inner.swap_credits(id, current, new).await
    }

    fn watch_changes(&self, feed: ChangeFeed) -> Freshness {
        if self.forward_changes {
            self.answered(0, self.inner.watch_changes(feed))
        } else {
            Freshness::Unwatched
        }
    }
}

#[async_trait]
impl<S: UserStore + ?Sized> UserStore for FlakyStore<S> {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.enter(StoreMethod::InsertUser, None)?;
        self.inner.insert_user(user).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        self.enter(StoreMethod::FindUserByEmail, None)?;
        self.inner.find_user_by_email(email).await
    }

    async fn find_user(&self, id: &OwnerId) -> Result<Option<UserRecord>, StoreError> {
        self.enter(StoreMethod::FindUser, None)?;
        self.inner.find_user(id).await
    }

    async fn update_password_hash(&self, id: &OwnerId, phc: &str) -> Result<bool, StoreError> {
        self.enter(StoreMethod::UpdatePasswordHash, None)?;
        self.inner.update_password_hash(id, phc).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.enter(StoreMethod::ListUsers, None)?;
        self.inner.list_users().await
    }

    async fn set_user_disabled(&self, id: &OwnerId, disabled: bool) -> Result<bool, StoreError> {
        self.enter(StoreMethod::SetUserDisabled, None)?;
        self.inner.set_user_disabled(id, disabled).await
    }

    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError> {
        self.enter(StoreMethod::SetUserScopes, None)?;
        self.inner.set_user_scopes(id, scopes).await
    }

    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError> {
        self.enter(StoreMethod::DeleteUser, None)?;
        self.inner.delete_user(id).await
    }

    async fn set_owner_rate_limit(
        &self,
        id: &OwnerId,
        limit: Option<RateLimit>,
    ) -> Result<bool, StoreError> {
        self.enter(StoreMethod::SetOwnerRateLimit, None)?;
        self.inner.set_owner_rate_limit(id, limit).await
    }

    fn watch_user_changes(&self, feed: ChangeFeed) -> Freshness {
        if self.forward_changes {
            self.answered(1, self.inner.watch_user_changes(feed))
        } else {
            Freshness::Unwatched
        }
    }
}

#[async_trait]
impl<S: AuditStore + ?Sized> AuditStore for FlakyStore<S> {
    async fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.enter(StoreMethod::RecordAudit, None)?;
        self.inner.record(events).await
    }

    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        self.enter(StoreMethod::ListAudit, None)?;
        self.inner.list(query).await
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.enter(StoreMethod::PruneAudit, None)?;
        self.inner.prune(before).await
    }
}
