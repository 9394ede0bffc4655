//! What the fixture wraps around its clock and stores: a clock moved by the test, and store
//! wrappers that count every call and fail on demand.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use nexora_auth::{
    Clock, KeyCredentials, KeyId, OwnerId, Scopes, UserRecord, UserStore,
    store::{
        CascadeOutcome, KeyRecord, KeyStore, LastUsed, RevokeOutcome, RotateOutcome, Rotation,
        StoreError,
    },
};
use time::OffsetDateTime;

/// A clock that can be moved forward, so that a key can expire during a test.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_secs: AtomicI64,
}

impl ShiftedClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + Duration::from_secs(self.offset_secs.load(Ordering::SeqCst).unsigned_abs())
    }
}

/// Counts every call a fixture's stores receive (key store and user store together), so a
/// test can assert that a request reached no store at all.
#[derive(Debug, Default)]
pub struct StoreCalls(AtomicU64);

impl StoreCalls {
    /// Calls so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A [`KeyStore`] wrapper around any store: it counts every call in [`StoreCalls`], and
/// answers "unavailable" for the keys in its fail list, as a database that refuses
/// connections would.
pub struct InstrumentedKeyStore {
    inner: Arc<dyn KeyStore>,
    calls: Arc<StoreCalls>,
    failing: Mutex<HashSet<KeyId>>,
}

impl std::fmt::Debug for InstrumentedKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedKeyStore")
            .field("calls", &self.calls.get())
            .finish_non_exhaustive()
    }
}

impl InstrumentedKeyStore {
    /// Wraps `inner`, counting into `calls`.
    pub fn new(inner: Arc<dyn KeyStore>, calls: Arc<StoreCalls>) -> Self {
        Self {
            inner,
            calls,
            failing: Mutex::new(HashSet::new()),
        }
    }

    /// Makes every lookup of `id` fail from now on.
    pub fn fail_for(&self, id: KeyId) {
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id);
    }

    fn check(&self, id: KeyId) -> Result<(), StoreError> {
        self.calls.count();
        if self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&id)
        {
            Err(StoreError::unavailable("connection refused (test store)"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl KeyStore for InstrumentedKeyStore {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.calls.count();
        self.inner.insert(record).await
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.check(id)?;
        self.inner.find(id).await
    }

    async fn find_credentials(&self, id: KeyId) -> Result<Option<KeyCredentials>, StoreError> {
        self.check(id)?;
        self.inner.find_credentials(id).await
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        self.calls.count();
        self.inner.list(owner).await
    }

    async fn rotate(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        self.check(id)?;
        self.inner.rotate(owner, id, rotation).await
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        self.check(id)?;
        self.inner.revoke(owner, id, at).await
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        self.check(id)?;
        self.inner.revoke_tree(owner, id, at).await
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        self.calls.count();
        self.inner.record_last_used(batch).await
    }
}

/// A [`UserStore`] wrapper that counts every call in [`StoreCalls`].
pub(crate) struct CountingUserStore {
    pub(crate) inner: Arc<dyn UserStore>,
    pub(crate) calls: Arc<StoreCalls>,
}

#[async_trait]
impl UserStore for CountingUserStore {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.calls.count();
        self.inner.insert_user(user).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        self.calls.count();
        self.inner.find_user_by_email(email).await
    }

    async fn find_user(&self, id: &OwnerId) -> Result<Option<UserRecord>, StoreError> {
        self.calls.count();
        self.inner.find_user(id).await
    }

    async fn update_password_hash(&self, id: &OwnerId, phc: &str) -> Result<bool, StoreError> {
        self.calls.count();
        self.inner.update_password_hash(id, phc).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.calls.count();
        self.inner.list_users().await
    }

    async fn set_user_disabled(&self, id: &OwnerId, disabled: bool) -> Result<bool, StoreError> {
        self.calls.count();
        self.inner.set_user_disabled(id, disabled).await
    }

    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError> {
        self.calls.count();
        self.inner.set_user_scopes(id, scopes).await
    }

    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError> {
        self.calls.count();
        self.inner.delete_user(id).await
    }
}
