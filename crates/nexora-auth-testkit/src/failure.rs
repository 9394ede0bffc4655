//! Store failures: a store whose backend is down must answer `Err`, never "not found", so the
//! service answers 503, never 401.
//!
//! Run [`key_store_backend_down`] and [`user_store_backend_down`] on a store whose backend you
//! have broken (a closed pool, a server that is not listening). [`FlakyStore`] breaks any
//! store on demand, for stores without a backend to break.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use nexora_auth::{
    AuthError, CascadeOutcome, KeyId, KeyStore, MemoryKeyStore, OwnerId, Scopes, SecretString,
    StoreError, UserRecord, UserStore,
    store::{KeyRecord, LastUsed, RevokeOutcome, RotateOutcome, Rotation},
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

/// Wraps a store and fails every call while [`FlakyStore::set_failing`] is on (it starts off).
#[derive(Debug, Default)]
pub struct FlakyStore<S> {
    inner: S,
    failing: AtomicBool,
}

impl<S> FlakyStore<S> {
    /// Wraps `inner`, passing calls through.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
        }
    }

    /// Turns failures on or off.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("FlakyStore: failing on purpose"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl<S: KeyStore> KeyStore for FlakyStore<S> {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert(record).await
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.find(id).await
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.list(owner).await
    }

    async fn rotate(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        self.check()?;
        self.inner.rotate(owner, id, rotation).await
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        self.check()?;
        self.inner.revoke(owner, id, at).await
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        self.check()?;
        self.inner.revoke_tree(owner, id, at).await
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.record_last_used(batch).await
    }
}

#[async_trait]
impl<S: UserStore> UserStore for FlakyStore<S> {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_user(user).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        self.check()?;
        self.inner.find_user_by_email(email).await
    }

    async fn find_user(&self, id: &OwnerId) -> Result<Option<UserRecord>, StoreError> {
        self.check()?;
        self.inner.find_user(id).await
    }

    async fn update_password_hash(&self, id: &OwnerId, phc: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.update_password_hash(id, phc).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.check()?;
        self.inner.list_users().await
    }

    async fn set_user_disabled(&self, id: &OwnerId, disabled: bool) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.set_user_disabled(id, disabled).await
    }

    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.set_user_scopes(id, scopes).await
    }

    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete_user(id).await
    }
}
