//! The change-feed contracts of a [`KeyStore`] that offers a feed (what
//! [`crate::change_feed_conformance!`] runs with `keys:`): every write is reported for the
//! right key, so an authenticator's verification cache never serves what the write undid.
//!
//! Each contract gets the store under test and a *writer*: the same store, or another value
//! over the same backend (another server instance: [`crate::Fixture::with_peer`]), through
//! which it writes. It attaches a real cache (an [`Authenticator`] with a 60-second ceiling,
//! so only a report can end a cached answer within the 2-second deadline), makes the key hot
//! (served without a store call), writes through the writer, and requires the next answers
//! to change within the deadline. A [`Freshness::Watched`] store must make its first in-sync
//! mark within a second of being attached.
//!
//! Every `pub async fn` here is a contract (`build.rs` lists them); helpers stay private.

use std::sync::Arc;

use nexora_auth::{
    ApiKey, AuthError, Authenticator, Freshness, InvalidReason, KeyId, KeyStore, OwnerId,
    Principal,
    limits::RateLimit,
    store::{KeyRecord, KeyUpdate, Rotation},
};

use crate::{
    authenticator_builder,
    failure::{FlakyStore, StoreMethod},
    feed_support::{IN_SYNC_DEADLINE, contract_cache, require_feed, until_cached, until_changed},
    new_record, now, peppers,
};

/// The store under test, counted, with an authenticator whose cache it feeds.
pub(crate) struct Observed {
    store: Arc<FlakyStore<dyn KeyStore>>,
    auth: Authenticator,
    freshness: Freshness,
}

impl Observed {
    /// Attaches a cache to `store` and checks it offers a feed.
    pub(crate) fn attach(store: Arc<dyn KeyStore>) -> Self {
        let store = Arc::new(FlakyStore::from_arc(store).forwarding_changes());
        let auth = authenticator_builder(store.clone())
            .verification_cache(contract_cache())
            .build()
            // The kit's settings are valid.
            .expect("valid authenticator");
        let freshness = require_feed("watch_changes", store.key_freshness());
        Self {
            store,
            auth,
            freshness,
        }
    }

    fn reads(&self) -> u64 {
        self.store.calls().of(StoreMethod::FindCredentials)
    }

    async fn authenticate(&self, key: &ApiKey) -> Result<Principal, AuthError> {
        self.auth.authenticate(key.expose()).await
    }

    /// Authenticates `key` until the cache serves it; panics after `deadline`.
    async fn hot(&self, what: &str, key: &ApiKey) {
        until_cached(
            what,
            IN_SYNC_DEADLINE,
            || self.reads(),
            || self.authenticate(key),
        )
        .await;
        self.authenticate(key).await.unwrap_or_else(|e| {
            panic!("{what}: the key must authenticate before the write: {e:?}")
        });
    }

    /// Authenticates `key` until it is refused for `reason`.
    async fn refused(&self, what: &str, key: &ApiKey, reason: fn(&InvalidReason) -> bool) {
        until_changed(
            what,
            || self.authenticate(key),
            |answer| matches!(answer, Err(AuthError::InvalidToken(r)) if reason(r)),
        )
        .await;
    }
}

async fn insert(writer: &Arc<dyn KeyStore>, record: &KeyRecord) {
    writer
        .insert(record)
        .await
        .unwrap_or_else(|e| panic!("insert of a new key through the writer failed: {e:?}"));
}

fn alice() -> OwnerId {
    OwnerId::new("alice")
}

fn is_revoked(reason: &InvalidReason) -> bool {
    matches!(reason, InvalidReason::Revoked)
}

/// A key is served from the cache after the first request — for a [`Freshness::Watched`]
/// store, from its first in-sync mark, made within a second of attaching — and a hot key
/// reaches the store no more.
pub async fn key_feed_serves_a_hot_key_from_the_cache(
    store: Arc<dyn KeyStore>,
    writer: Arc<dyn KeyStore>,
) {
    crate::key_feed_contract(
        "key_feed_serves_a_hot_key_from_the_cache",
        store,
        writer,
        |observed, writer| async move {
            let (key, record) = new_record("alice", "hot", now());
            insert(&writer, &record).await;
            observed
                .hot("a key (waiting for the first in-sync mark)", &key)
                .await;
            let before = observed.reads();
            for _ in 0..50 {
                observed
                    .authenticate(&key)
                    .await
                    .unwrap_or_else(|e| panic!("a hot key must keep authenticating: {e:?}"));
            }
            assert_eq!(
                observed.reads(),
                before,
                "a hot key reached the store again ({:?} store)",
                observed.freshness
            );
        },
    )
    .await;
}

/// `insert` is reported: a cached "no such key" for the id ends.
pub async fn key_feed_reports_insert(store: Arc<dyn KeyStore>, writer: Arc<dyn KeyStore>) {
    crate::key_feed_contract(
        "key_feed_reports_insert",
        store,
        writer,
        |observed, writer| async move {
            let (key, record) = new_record("alice", "later", now());
            until_cached(
                "an unknown key",
                IN_SYNC_DEADLINE,
                || observed.reads(),
                || observed.authenticate(&key),
            )
            .await;
            insert(&writer, &record).await;
            until_changed(
                "insert of a key the cache knew as unknown",
                || observed.authenticate(&key),
                Result::is_ok,
            )
            .await;
        },
    )
    .await;
}

/// `rotate` is reported: once it returns, the old secret of a hot key is refused.
pub async fn key_feed_reports_rotate(store: Arc<dyn KeyStore>, writer: Arc<dyn KeyStore>) {
    crate::key_feed_contract(
        "key_feed_reports_rotate",
        store,
        writer,
        |observed, writer| async move {
            let (key, record) = new_record("alice", "rotated", now());
            insert(&writer, &record).await;
            observed.hot("the key before its rotation", &key).await;
            let fresh = ApiKey::generate_for(key.id()).expect("randomness");
            let rotation = Rotation {
                digest: peppers().digest(&fresh),
                display: fresh.display_fragment(),
                grace_until: None,
                now: now(),
            };
            writer
                .rotate(&alice(), key.id(), &rotation)
                .await
                .unwrap_or_else(|e| panic!("rotate through the writer failed: {e:?}"));
            observed
                .refused("rotate (no grace) of a hot key", &key, |r| {
                    matches!(r, InvalidReason::SecretMismatch)
                })
                .await;
            observed
                .authenticate(&fresh)
                .await
                .unwrap_or_else(|e| panic!("the rotated secret must authenticate: {e:?}"));
        },
    )
    .await;
}

/// `revoke` is reported: once it returns, a hot key is refused.
pub async fn key_feed_reports_revoke(store: Arc<dyn KeyStore>, writer: Arc<dyn KeyStore>) {
    crate::key_feed_contract(
        "key_feed_reports_revoke",
        store,
        writer,
        |observed, writer| async move {
            let (key, record) = new_record("alice", "revoked", now());
            insert(&writer, &record).await;
            observed.hot("the key before its revocation", &key).await;
            writer
                .revoke(&alice(), key.id(), now())
                .await
                .unwrap_or_else(|e| panic!("revoke through the writer failed: {e:?}"));
            observed
                .refused("revoke of a hot key", &key, is_revoked)
                .await;
        },
    )
    .await;
}

/// `revoke_tree` is reported for every key it revokes: the key, its children and their
/// children, all hot before.
pub async fn key_feed_reports_revoke_tree_descendants(
    store: Arc<dyn KeyStore>,
    writer: Arc<dyn KeyStore>,
) {
    crate::key_feed_contract(
        "key_feed_reports_revoke_tree_descendants",
        store,
        writer,
        |observed, writer| async move {
            let (root, root_record) = new_record("alice", "root", now());
            insert(&writer, &root_record).await;
            let mut parent: KeyId = root.id();
            let mut tree = vec![root];
            for name in ["child", "grandchild"] {
                let (key, mut record) = new_record("alice", name, now());
                record.created_by = Some(parent);
                insert(&writer, &record).await;
                parent = key.id();
                tree.push(key);
            }
            for key in &tree {
                observed
                    .hot("a key of the tree before the cascade", key)
                    .await;
            }
            writer
                .revoke_tree(&alice(), tree[0].id(), now())
                .await
                .unwrap_or_else(|e| panic!("revoke_tree through the writer failed: {e:?}"));
            for (key, what) in tree.iter().zip([
                "revoke_tree: the key itself",
                "revoke_tree: its child",
                "revoke_tree: its grandchild",
            ]) {
                observed.refused(what, key, is_revoked).await;
            }
        },
    )
    .await;
}

/// `update_key` is reported: once it returns, a hot key authenticates with its new rate limit
/// (which the cache keeps with the key).
pub async fn key_feed_reports_update_key(store: Arc<dyn KeyStore>, writer: Arc<dyn KeyStore>) {
    crate::key_feed_contract(
        "key_feed_reports_update_key",
        store,
        writer,
        |observed, writer| async move {
            let (key, record) = new_record("alice", "limited later", now());
            insert(&writer, &record).await;
            observed.hot("the key before its update", &key).await;
            let limit = RateLimit::new(7, 60).expect("a valid rate limit");
            let update = KeyUpdate {
                rate_limit: Some(Some(limit)),
                ..KeyUpdate::default()
            };
            let updated = writer
                .update_key(&alice(), key.id(), &update)
                .await
                .unwrap_or_else(|e| panic!("update_key through the writer failed: {e:?}"));
            assert!(
                updated.is_some(),
                "update_key of a live key through the writer must return the record"
            );
            until_changed(
                "update_key setting a hot key's rate limit",
                || observed.authenticate(&key),
                |answer| {
                    answer
                        .as_ref()
                        .is_ok_and(|p| p.key_rate_limit() == Some(limit))
                },
            )
            .await;
        },
    )
    .await;
}

/// Every change-feed contract of this module with its name, in the order
/// [`crate::change_feed_conformance!`] generates them.
pub fn contracts() -> Vec<(&'static str, crate::FeedContract<dyn KeyStore>)> {
    __key_feed_contracts!(feed_list key_feed ())
}
