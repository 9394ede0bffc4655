//! The change-feed contracts of a [`UserStore`] that offers a feed (what
//! [`crate::change_feed_conformance!`] runs with `users:`): every write to a user is reported,
//! so the cached live-user check never lets through a disabled, narrowed or deleted user.
//!
//! As in [`crate::key_feed`]: each contract gets the store under test and a writer (the same
//! store, or another value over the same backend), attaches a cache with a 60-second ceiling,
//! makes a user hot (the live-user check of a key's request served without a store call),
//! writes through the writer, and requires the next answers to change within 2 seconds. The
//! keys live in a [`MemoryKeyStore`], so only the user store's feed is under test.
//!
//! Every `pub async fn` here is a contract (`build.rs` lists them); helpers stay private.

use std::sync::Arc;

use nexora_auth::{
    ApiKey, AuthError, Authenticator, InvalidReason, KeyStore, MemoryKeyStore, OwnerId, Principal,
    UserRecord, UserStore, limits::RateLimit,
};

use crate::{
    authenticator_builder,
    failure::{FlakyStore, StoreMethod},
    feed_support::{IN_SYNC_DEADLINE, contract_cache, require_feed, until_cached, until_changed},
    new_record, now, scopes,
};

/// The user store under test, counted, with an authenticator whose cache it feeds, and a key
/// of `u-alice` in a memory key store.
pub(crate) struct Observed {
    users: Arc<FlakyStore<dyn UserStore>>,
    auth: Authenticator,
    key: ApiKey,
}

impl Observed {
    /// Attaches a cache to `users`, checks it offers a feed, and gives `u-alice` a key.
    pub(crate) async fn attach(users: Arc<dyn UserStore>) -> Self {
        let keys = Arc::new(MemoryKeyStore::new());
        let (key, record) = new_record("u-alice", "k", now());
        keys.insert(&record)
            .await
            .unwrap_or_else(|e| panic!("the memory key store refused a key: {e:?}"));
        let users = Arc::new(FlakyStore::from_arc(users).forwarding_changes());
        let auth = authenticator_builder(keys)
            .users(users.clone())
            .verification_cache(contract_cache())
            .build()
            // The kit's settings are valid.
            .expect("valid authenticator");
        require_feed("watch_user_changes", users.user_freshness());
        Self { users, auth, key }
    }

    fn reads(&self) -> u64 {
        self.users.calls().of(StoreMethod::FindUser)
    }

    async fn authenticate(&self) -> Result<Principal, AuthError> {
        self.auth.authenticate(self.key.expose()).await
    }

    /// Authenticates until the user's check is served from the cache.
    async fn hot(&self, what: &str) {
        until_cached(
            what,
            IN_SYNC_DEADLINE,
            || self.reads(),
            || self.authenticate(),
        )
        .await;
    }

    /// Authenticates until the answer is refused for `reason`.
    async fn refused(&self, what: &str, reason: fn(&InvalidReason) -> bool) {
        until_changed(
            what,
            || self.authenticate(),
            |answer| matches!(answer, Err(AuthError::InvalidToken(r)) if reason(r)),
        )
        .await;
    }

    /// The user with a hot, accepted key.
    async fn hot_user(&self, writer: &Arc<dyn UserStore>) {
        insert(writer, &alice()).await;
        self.hot("the user before the write").await;
        self.authenticate()
            .await
            .unwrap_or_else(|e| panic!("the user's key must authenticate before the write: {e:?}"));
    }
}

fn alice() -> UserRecord {
    UserRecord {
        id: OwnerId::new("u-alice"),
        email: "alice@example.com".into(),
        // Not a real hash: stores keep the text, they never parse it.
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        scopes: scopes(&["agents:read", "keys:manage"]),
        created_at: now(),
        disabled: false,
        rate_limit: None,
    }
}

async fn insert(writer: &Arc<dyn UserStore>, user: &UserRecord) {
    writer
        .insert_user(user)
        .await
        .unwrap_or_else(|e| panic!("insert_user through the writer failed: {e:?}"));
}

fn changed(what: &str, done: Result<bool, nexora_auth::StoreError>) {
    match done {
        Ok(true) => {}
        other => panic!("{what} through the writer must return Ok(true), got {other:?}"),
    }
}

/// A user's status is served from the cache after the first request (for a
/// [`nexora_auth::Freshness::Watched`] store, from its first in-sync mark, within a second).
pub async fn user_feed_serves_a_hot_user_from_the_cache(
    store: Arc<dyn UserStore>,
    writer: Arc<dyn UserStore>,
) {
    crate::user_feed_contract(
        "user_feed_serves_a_hot_user_from_the_cache",
        store,
        writer,
        |observed, writer| async move {
            observed.hot_user(&writer).await;
            let before = observed.reads();
            for _ in 0..50 {
                observed
                    .authenticate()
                    .await
                    .unwrap_or_else(|e| panic!("a hot user's key must keep working: {e:?}"));
            }
            assert_eq!(
                observed.reads(),
                before,
                "a hot user reached the store again"
            );
        },
    )
    .await;
}

/// `insert_user` is reported: a cached "no such user" ends.
pub async fn user_feed_reports_insert_user(store: Arc<dyn UserStore>, writer: Arc<dyn UserStore>) {
    crate::user_feed_contract(
        "user_feed_reports_insert_user",
        store,
        writer,
        |observed, writer| async move {
            until_cached(
                "a key of a user who does not exist yet",
                IN_SYNC_DEADLINE,
                || observed.reads(),
                || observed.authenticate(),
            )
            .await;
            insert(&writer, &alice()).await;
            until_changed(
                "insert_user of a user the cache knew as unknown",
                || observed.authenticate(),
                Result::is_ok,
            )
            .await;
        },
    )
    .await;
}

/// `set_user_disabled` is reported: a hot user's key is refused once it returns.
pub async fn user_feed_reports_set_user_disabled(
    store: Arc<dyn UserStore>,
    writer: Arc<dyn UserStore>,
) {
    crate::user_feed_contract(
        "user_feed_reports_set_user_disabled",
        store,
        writer,
        |observed, writer| async move {
            observed.hot_user(&writer).await;
            changed(
                "set_user_disabled",
                writer
                    .set_user_disabled(&OwnerId::new("u-alice"), true)
                    .await,
            );
            observed
                .refused("set_user_disabled of a hot user", |r| {
                    matches!(r, InvalidReason::UserDisabled)
                })
                .await;
        },
    )
    .await;
}

/// `set_user_scopes` is reported: a hot user's key is capped at the new scopes once it
/// returns.
pub async fn user_feed_reports_set_user_scopes(
    store: Arc<dyn UserStore>,
    writer: Arc<dyn UserStore>,
) {
    crate::user_feed_contract(
        "user_feed_reports_set_user_scopes",
        store,
        writer,
        |observed, writer| async move {
            observed.hot_user(&writer).await;
            changed(
                "set_user_scopes",
                writer
                    .set_user_scopes(&OwnerId::new("u-alice"), &scopes(&["keys:manage"]))
                    .await,
            );
            until_changed(
                "set_user_scopes narrowing a hot user",
                || observed.authenticate(),
                |answer| {
                    answer
                        .as_ref()
                        .is_ok_and(|p| !p.scopes().contains("agents:read"))
                },
            )
            .await;
        },
    )
    .await;
}

/// `delete_user` is reported: a hot user's key is refused once it returns.
pub async fn user_feed_reports_delete_user(store: Arc<dyn UserStore>, writer: Arc<dyn UserStore>) {
    crate::user_feed_contract(
        "user_feed_reports_delete_user",
        store,
        writer,
        |observed, writer| async move {
            observed.hot_user(&writer).await;
            changed(
                "delete_user",
                writer.delete_user(&OwnerId::new("u-alice")).await,
            );
            observed
                .refused("delete_user of a hot user", |r| {
                    matches!(r, InvalidReason::UnknownUser)
                })
                .await;
        },
    )
    .await;
}

/// `set_owner_rate_limit` is reported: once it returns, a hot user's requests are held to the
/// new limit (the cache keeps the owner's limit with the user's status).
pub async fn user_feed_reports_set_owner_rate_limit(
    store: Arc<dyn UserStore>,
    writer: Arc<dyn UserStore>,
) {
    crate::user_feed_contract(
        "user_feed_reports_set_owner_rate_limit",
        store,
        writer,
        |observed, writer| async move {
            observed.hot_user(&writer).await;
            let once_a_day = RateLimit::new(1, 86_400).expect("a valid rate limit");
            changed(
                "set_owner_rate_limit",
                writer
                    .set_owner_rate_limit(&OwnerId::new("u-alice"), Some(once_a_day))
                    .await,
            );
            // One request a day: the first charged under the new limit passes, the next is
            // refused; before the change is seen, every request passes.
            until_changed(
                "set_owner_rate_limit of a hot user (one request a day)",
                || async {
                    let principal = observed.authenticate().await?;
                    observed.auth.charge(&principal, 1).await?;
                    Ok(principal)
                },
                |answer| matches!(answer, Err(AuthError::LimitExceeded(_))),
            )
            .await;
        },
    )
    .await;
}

/// Every change-feed contract of this module with its name, in the order
/// [`crate::change_feed_conformance!`] generates them.
pub fn contracts() -> Vec<(&'static str, crate::FeedContract<dyn UserStore>)> {
    __user_feed_contracts!(feed_list user_feed ())
}
