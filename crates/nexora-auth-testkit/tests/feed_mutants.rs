//! The change-feed contracts catch broken feeds: memory stores whose feed is broken the way a
//! store author plausibly breaks one must each fail the contracts named, and the unbroken
//! stores pass them all.

use std::{io::Write, sync::Arc};

use async_trait::async_trait;
use nexora_auth::{
    CascadeOutcome, ChangeFeed, ChangeFeeds, Freshness, KeyCredentials, KeyId, KeyStore,
    MemoryKeyStore, MemoryUserStore, OwnerId, Scopes, StoreError, UserRecord, UserStore,
    limits::{Credits, RateLimit},
    store::{KeyRecord, KeyUpdate, LastUsed, RevokeOutcome, RotateOutcome, Rotation},
};
use time::OffsetDateTime;

/// One way of breaking a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutant {
    /// No mutation: the control.
    Correct,
    /// Promises a synchronous feed and never reports a change.
    Silent,
    /// Reports every change but never marks the feed in sync (a watcher that never reads).
    WatchedNeverInSync,
    /// `revoke_tree` reports the key named, not its descendants.
    ForgetsDescendants,
    /// Reports the writes that exist but not inserts (a cached "no such id" lingers).
    ForgetsInserts,
    /// Reports every write but the limit changes (`update_key`, `set_owner_rate_limit`): a
    /// cached key or user keeps its old limits.
    ForgetsLimits,
}

/// A memory key store with its own feed reporting, broken as told.
struct KeyMutant {
    mutant: Mutant,
    inner: MemoryKeyStore,
    feeds: ChangeFeeds,
}

impl KeyMutant {
    fn new(mutant: Mutant) -> Self {
        Self {
            mutant,
            inner: MemoryKeyStore::new(),
            feeds: ChangeFeeds::new(),
        }
    }

    fn report(&self, id: KeyId) {
        if self.mutant != Mutant::Silent {
            self.feeds.key_changed(id);
        }
    }
}

#[async_trait]
impl KeyStore for KeyMutant {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await?;
        if self.mutant != Mutant::ForgetsInserts {
            self.report(record.id);
        }
        Ok(())
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.find(id).await
    }

    async fn find_credentials(&self, id: KeyId) -> Result<Option<KeyCredentials>, StoreError> {
        self.inner.find_credentials(id).await
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list(owner).await
    }

    async fn rotate(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        let outcome = self.inner.rotate(owner, id, rotation).await?;
        self.report(id);
        Ok(outcome)
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let outcome = self.inner.revoke(owner, id, at).await?;
        self.report(id);
        Ok(outcome)
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        let outcome = self.inner.revoke_tree(owner, id, at).await?;
        self.report(id);
        if self.mutant != Mutant::ForgetsDescendants {
            for descendant in &outcome.descendants {
                self.report(*descendant);
            }
        }
        Ok(outcome)
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        self.inner.record_last_used(batch).await
    }

    async fn update_key(
        &self,
        owner: &OwnerId,
        id: KeyId,
        update: &KeyUpdate,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let updated = self.inner.update_key(owner, id, update).await?;
        if self.mutant != Mutant::ForgetsLimits {
            self.report(id);
        }
        Ok(updated)
    }

    // Not reported, correctly: a cache holds whether a key is metered, never its count.
    async fn swap_credits(
        &self,
        id: KeyId,
        current: &Credits,
        new: &Credits,
    ) -> Result<bool, StoreError> {
        self.inner.swap_credits(id, current, new).await
    }

    fn watch_changes(&self, feed: ChangeFeed) -> Freshness {
        self.feeds.add(feed);
        if self.mutant == Mutant::WatchedNeverInSync {
            Freshness::Watched
        } else {
            Freshness::Synchronous
        }
    }
}

/// A memory user store with its own feed reporting, broken as told.
struct UserMutant {
    mutant: Mutant,
    inner: MemoryUserStore,
    feeds: ChangeFeeds,
}

impl UserMutant {
    fn new(mutant: Mutant) -> Self {
        Self {
            mutant,
            inner: MemoryUserStore::new(),
            feeds: ChangeFeeds::new(),
        }
    }

    fn report(&self, id: &OwnerId) {
        if self.mutant != Mutant::Silent {
            self.feeds.user_changed(id);
        }
    }
}

#[async_trait]
impl UserStore for UserMutant {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.inner.insert_user(user).await?;
        if self.mutant != Mutant::ForgetsInserts {
            self.report(&user.id);
        }
        Ok(())
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.find_user_by_email(email).await
    }

    async fn find_user(&self, id: &OwnerId) -> Result<Option<UserRecord>, StoreError> {
        self.inner.find_user(id).await
    }

    async fn update_password_hash(&self, id: &OwnerId, phc: &str) -> Result<bool, StoreError> {
        self.inner.update_password_hash(id, phc).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.list_users().await
    }

    async fn set_user_disabled(&self, id: &OwnerId, disabled: bool) -> Result<bool, StoreError> {
        let done = self.inner.set_user_disabled(id, disabled).await?;
        self.report(id);
        Ok(done)
    }

    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError> {
        let done = self.inner.set_user_scopes(id, scopes).await?;
        self.report(id);
        Ok(done)
    }

    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError> {
        let done = self.inner.delete_user(id).await?;
        self.report(id);
        Ok(done)
    }

    async fn set_owner_rate_limit(
        &self,
        id: &OwnerId,
        limit: Option<RateLimit>,
    ) -> Result<bool, StoreError> {
        let done = self.inner.set_owner_rate_limit(id, limit).await?;
        if self.mutant != Mutant::ForgetsLimits {
            self.report(id);
        }
        Ok(done)
    }

    fn watch_user_changes(&self, feed: ChangeFeed) -> Freshness {
        self.feeds.add(feed);
        if self.mutant == Mutant::WatchedNeverInSync {
            Freshness::Watched
        } else {
            Freshness::Synchronous
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

fn fails(check: impl Future<Output = ()>) -> Option<String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        nexora_auth_testkit::run(check);
    }))
    .err()
    .map(|payload| panic_text(&*payload))
}

/// The feed contracts (keys and users) that catch `mutant`; each failure names its contract.
fn caught_by(mutant: Mutant) -> Vec<&'static str> {
    let mut caught = Vec::new();
    for (name, contract) in nexora_auth_testkit::key_feed::contracts() {
        let store: Arc<dyn KeyStore> = Arc::new(KeyMutant::new(mutant));
        if let Some(message) = fails(contract(Arc::clone(&store), store)) {
            assert!(
                message.contains(&format!("contract `{name}` failed")),
                "{mutant:?}: the failure of {name} does not name it: {message}"
            );
            caught.push(name);
        }
    }
    for (name, contract) in nexora_auth_testkit::user_feed::contracts() {
        let store: Arc<dyn UserStore> = Arc::new(UserMutant::new(mutant));
        if let Some(message) = fails(contract(Arc::clone(&store), store)) {
            assert!(
                message.contains(&format!("contract `{name}` failed")),
                "{mutant:?}: the failure of {name} does not name it: {message}"
            );
            caught.push(name);
        }
    }
    let _ = writeln!(std::io::stderr(), "{mutant:?} caught by: {caught:?}");
    caught
}

fn assert_caught(mutant: Mutant, contracts: &[&str]) {
    let caught = caught_by(mutant);
    for contract in contracts {
        assert!(
            caught.contains(contract),
            "{mutant:?} must fail `{contract}`; caught by {caught:?}"
        );
    }
}

#[test]
fn correct_feeds_pass_every_feed_contract() {
    assert_eq!(caught_by(Mutant::Correct), Vec::<&str>::new());
}

#[test]
fn a_silent_feed_fails_every_reporting_contract() {
    assert_caught(
        Mutant::Silent,
        &[
            "key_feed_reports_insert",
            "key_feed_reports_rotate",
            "key_feed_reports_revoke",
            "key_feed_reports_revoke_tree_descendants",
            "key_feed_reports_update_key",
            "user_feed_reports_insert_user",
            "user_feed_reports_set_user_disabled",
            "user_feed_reports_set_user_scopes",
            "user_feed_reports_delete_user",
            "user_feed_reports_set_owner_rate_limit",
        ],
    );
}

#[test]
fn a_watched_feed_that_never_syncs_fails_the_hot_contracts() {
    assert_caught(
        Mutant::WatchedNeverInSync,
        &[
            "key_feed_serves_a_hot_key_from_the_cache",
            "user_feed_serves_a_hot_user_from_the_cache",
        ],
    );
}

#[test]
fn a_cascade_reported_without_its_descendants_fails() {
    assert_eq!(
        caught_by(Mutant::ForgetsDescendants),
        ["key_feed_reports_revoke_tree_descendants"]
    );
}

#[test]
fn unreported_inserts_fail() {
    assert_eq!(
        caught_by(Mutant::ForgetsInserts),
        ["key_feed_reports_insert", "user_feed_reports_insert_user"]
    );
}

#[test]
fn unreported_limit_changes_fail() {
    assert_eq!(
        caught_by(Mutant::ForgetsLimits),
        [
            "key_feed_reports_update_key",
            "user_feed_reports_set_owner_rate_limit"
        ]
    );
}

/// A store that promises no feed is refused by the feed contracts outright.
#[test]
fn an_unwatched_store_fails_every_feed_contract() {
    for (name, contract) in nexora_auth_testkit::key_feed::contracts() {
        let store: Arc<dyn KeyStore> = Arc::new(nexora_auth_testkit::failure::FlakyStore::new(
            MemoryKeyStore::new(),
        ));
        let message = fails(contract(Arc::clone(&store), store))
            .unwrap_or_else(|| panic!("{name} passed a store without a feed"));
        assert!(message.contains("Unwatched"), "{name}: {message}");
    }
}
