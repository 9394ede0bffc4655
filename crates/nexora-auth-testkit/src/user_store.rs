//! The [`UserStore`] contracts, one function each (what [`crate::user_store_conformance!`] runs).
//!
//! Every `pub async fn` here is a contract: `build.rs` lists it for the conformance macro and
//! [`contracts`], so writing the function is all it takes to run it on every store. Helpers
//! stay private or `pub(crate)`.

use std::sync::Arc;

use nexora_auth::{
    AuthError, InvalidReason, MemoryKeyStore, NewKey, OwnerId, SecretString, StoreError,
    UserRecord, UserStore,
    audit::Actor,
    limits::{MAX_PERIOD_SECS, MAX_RATE_LIMIT, RateLimit},
};
use time::OffsetDateTime;

use crate::{MicrosClock, authenticator_with, now, scopes};

/// Who makes the contracts' admin changes through the authenticator.
const ADMIN: Actor = Actor::system("testkit");

fn user(id: &str, email: &str, created_at: OffsetDateTime) -> UserRecord {
    UserRecord {
        id: OwnerId::new(id),
        email: email.to_owned(),
        // Not a real hash: stores keep the text, they never parse it.
        password_hash: format!("$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ${id}"),
        scopes: scopes(&["agents:read", "keys:manage"]),
        created_at,
        disabled: false,
        rate_limit: None,
    }
}

async fn insert(store: &Arc<dyn UserStore>, user: &UserRecord) {
    store
        .insert_user(user)
        .await
        .unwrap_or_else(|e| panic!("insert_user of a new user failed: {e:?}"));
}

async fn by_email(store: &Arc<dyn UserStore>, email: &str) -> Option<UserRecord> {
    store
        .find_user_by_email(email)
        .await
        .unwrap_or_else(|e| panic!("find_user_by_email failed: {e:?}"))
}

async fn by_id(store: &Arc<dyn UserStore>, id: &str) -> Option<UserRecord> {
    store
        .find_user(&OwnerId::new(id))
        .await
        .unwrap_or_else(|e| panic!("find_user failed: {e:?}"))
}

/// `insert_user` stores the user as given; `find_user_by_email` and `find_user` return it.
pub async fn user_insert_then_find_by_email_and_id(store: Arc<dyn UserStore>) {
    crate::user_store_contract(
        "user_insert_then_find_by_email_and_id",
        store,
        |store| async move {
            let alice = user("u-alice", "alice@example.com", now());
            let odd = user("u-o'brien \"q\"", "o'brien+tag@exämple.com", now());
            insert(&store, &alice).await;
            insert(&store, &odd).await;
            for u in [&alice, &odd] {
                assert_eq!(
                    by_email(&store, &u.email).await.as_ref(),
                    Some(u),
                    "find_user_by_email"
                );
                assert_eq!(
                    by_id(&store, u.id.as_str()).await.as_ref(),
                    Some(u),
                    "find_user"
                );
            }
        },
    )
    .await;
}

/// Unknown emails and ids are `Ok(None)`.
pub async fn user_find_unknown_is_none(store: Arc<dyn UserStore>) {
    crate::user_store_contract("user_find_unknown_is_none", store, |store| async move {
        insert(&store, &user("u-alice", "alice@example.com", now())).await;
        assert_eq!(
            by_email(&store, "bob@example.com").await,
            None,
            "find_user_by_email of an unknown email must be Ok(None)"
        );
        assert_eq!(
            by_email(&store, "alice@example.co").await,
            None,
            "emails must match exactly"
        );
        assert_eq!(
            by_id(&store, "u-bob").await,
            None,
            "find_user of an unknown id must be Ok(None)"
        );
    })
    .await;
}

/// A second user with an existing email is [`StoreError::DuplicateEmail`]; nothing changes.
pub async fn user_duplicate_email_is_a_typed_error(store: Arc<dyn UserStore>) {
    crate::user_store_contract(
        "user_duplicate_email_is_a_typed_error",
        store,
        |store| async move {
            let alice = user("u-alice", "alice@example.com", now());
            insert(&store, &alice).await;
            match store
                .insert_user(&user("u-other", "alice@example.com", now()))
                .await
            {
                Err(StoreError::DuplicateEmail) => {}
                other => panic!(
                    "a duplicate email must be Err(StoreError::DuplicateEmail), got {other:?}"
                ),
            }
            assert_eq!(
                by_id(&store, "u-other").await,
                None,
                "the refused user was stored"
            );
            assert_eq!(
                by_email(&store, "alice@example.com").await,
                Some(alice),
                "the original changed"
            );
        },
    )
    .await;
}

/// A second user with an existing id is [`StoreError::DuplicateId`]; nothing changes.
pub async fn user_duplicate_id_is_a_typed_error(store: Arc<dyn UserStore>) {
    crate::user_store_contract(
        "user_duplicate_id_is_a_typed_error",
        store,
        |store| async move {
            let alice = user("u-alice", "alice@example.com", now());
            insert(&store, &alice).await;
            match store
                .insert_user(&user("u-alice", "other@example.com", now()))
                .await
            {
                Err(StoreError::DuplicateId) => {}
                other => {
                    panic!("a duplicate id must be Err(StoreError::DuplicateId), got {other:?}")
                }
            }
            assert_eq!(
                by_email(&store, "other@example.com").await,
                None,
                "the refused user was stored"
            );
            assert_eq!(
                by_id(&store, "u-alice").await,
                Some(alice),
                "the original changed"
            );
        },
    )
    .await;
}

/// `update_password_hash` replaces the hash of an existing user (`true`) and is `false` for an
/// unknown one.
pub async fn user_update_password_hash(store: Arc<dyn UserStore>) {
    crate::user_store_contract("user_update_password_hash", store, |store| async move {
        let alice = user("u-alice", "alice@example.com", now());
        let bob = user("u-bob", "bob@example.com", now());
        insert(&store, &alice).await;
        insert(&store, &bob).await;
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA";
        assert!(
            store
                .update_password_hash(&alice.id, phc)
                .await
                .expect("update"),
            "existing user"
        );
        let updated = UserRecord {
            password_hash: phc.to_owned(),
            ..alice
        };
        assert_eq!(
            by_id(&store, "u-alice").await,
            Some(updated.clone()),
            "find_user must return the updated password hash"
        );
        assert_eq!(
            by_email(&store, "alice@example.com").await,
            Some(updated),
            "find_user_by_email must return the updated password hash"
        );
        assert_eq!(
            by_id(&store, "u-bob").await,
            Some(bob),
            "another user changed"
        );
        let unknown = store
            .update_password_hash(&OwnerId::new("u-nobody"), phc)
            .await
            .expect("update");
        assert!(!unknown, "updating an unknown user must be Ok(false)");
    })
    .await;
}

/// `list_users` returns every user, ordered by `created_at`, then `id`.
pub async fn user_list_is_ordered_by_creation_then_id(store: Arc<dyn UserStore>) {
    crate::user_store_contract(
        "user_list_is_ordered_by_creation_then_id",
        store,
        |store| async move {
            let t0 = now();
            let s = time::Duration::SECOND;
            let third = user("u-a", "third@example.com", t0 + 2 * s);
            let first = user("u-z", "first@example.com", t0);
            let second_b = user("u-y", "second-b@example.com", t0 + s);
            let second_a = user("u-b", "second-a@example.com", t0 + s);
            for u in [&third, &second_b, &first, &second_a] {
                insert(&store, u).await;
            }
            let listed = store.list_users().await.expect("list_users");
            assert_eq!(
                listed,
                vec![first, second_a, second_b, third],
                "users by created_at then id"
            );
        },
    )
    .await;
}

/// Through [`nexora_auth::Authenticator`]: register, log in, refuse a wrong password and a
/// second registration of the same (differently cased) email.
pub async fn user_register_and_login_through_the_authenticator(store: Arc<dyn UserStore>) {
    crate::user_store_contract(
        "user_register_and_login_through_the_authenticator",
        store,
        |store| async move {
            let auth = authenticator_with(
                Arc::new(MemoryKeyStore::new()),
                Some(store.clone()),
                Arc::new(MicrosClock),
            );
            let password = SecretString::from("correct horse battery staple");
            let info = auth
                .register_user(" Alice@Example.com ", &password, scopes(&["agents:read"]))
                .await
                .expect("register");
            assert_eq!(
                info.email, "alice@example.com",
                "register must return the normalised email"
            );
            let stored = by_email(&store, "alice@example.com")
                .await
                .expect("registered user stored");
            assert_eq!(
                stored.id, info.id,
                "find_user must return the id register returned"
            );
            let token = auth
                .login("ALICE@example.com", &password)
                .await
                .expect("login");
            let principal = auth
                .authenticate(token.token.token.expose())
                .await
                .expect("token authenticates");
            assert_eq!(
                principal.owner(),
                &info.id,
                "login then authenticate must return the user's id"
            );
            let wrong = auth
                .login("alice@example.com", &SecretString::from("wrong password!!"))
                .await;
            assert!(
                matches!(wrong, Err(AuthError::InvalidLogin)),
                "wrong password: {wrong:?}"
            );
            let again = auth
                .register_user("alice@EXAMPLE.com", &password, scopes(&["a"]))
                .await;
            assert!(
                matches!(again, Err(AuthError::EmailTaken)),
                "second registration: {again:?}"
            );
            assert_eq!(
                store.list_users().await.expect("list").len(),
                1,
                "list_users must hold the one registered user"
            );
        },
    )
    .await;
}

/// `set_user_disabled` flips only `disabled` (a disabled user also round-trips through
/// `insert_user`); an unknown id is `Ok(false)`.
pub async fn user_disable_and_enable(store: Arc<dyn UserStore>) {
    crate::user_store_contract("user_disable_and_enable", store, |store| async move {
        let alice = user("u-alice", "alice@example.com", now());
        let mut bob = user("u-bob", "bob@example.com", now());
        bob.disabled = true;
        insert(&store, &alice).await;
        insert(&store, &bob).await;
        assert_eq!(
            by_id(&store, "u-bob").await.as_ref(),
            Some(&bob),
            "a user inserted disabled must be found disabled"
        );
        let flip = |disabled| {
            let store = store.clone();
            async move {
                store
                    .set_user_disabled(&OwnerId::new("u-alice"), disabled)
                    .await
                    .unwrap_or_else(|e| panic!("set_user_disabled failed: {e:?}"))
            }
        };
        assert!(
            flip(true).await,
            "set_user_disabled of a known user must return true"
        );
        let disabled = UserRecord {
            disabled: true,
            ..alice.clone()
        };
        assert_eq!(
            by_id(&store, "u-alice").await.as_ref(),
            Some(&disabled),
            "set_user_disabled(true) must change only `disabled`"
        );
        assert_eq!(
            by_email(&store, "alice@example.com").await.as_ref(),
            Some(&disabled),
            "find_user_by_email must see the change too"
        );
        assert!(
            flip(false).await,
            "set_user_disabled(false) of a known user must be Ok(true)"
        );
        assert_eq!(
            by_id(&store, "u-alice").await.as_ref(),
            Some(&alice),
            "set_user_disabled(false) must restore the user"
        );
        assert!(
            !store
                .set_user_disabled(&OwnerId::new("u-nobody"), true)
                .await
                .expect("set_user_disabled"),
            "set_user_disabled of an unknown id must return false"
        );
        assert_eq!(
            by_id(&store, "u-bob").await.as_ref(),
            Some(&bob),
            "bob untouched"
        );
    })
    .await;
}

/// `set_user_scopes` replaces only the scopes; an unknown id is `Ok(false)`.
pub async fn user_set_scopes(store: Arc<dyn UserStore>) {
    crate::user_store_contract("user_set_scopes", store, |store| async move {
        let alice = user("u-alice", "alice@example.com", now());
        let bob = user("u-bob", "bob@example.com", now());
        insert(&store, &alice).await;
        insert(&store, &bob).await;
        for new in [
            scopes(&["agents:read"]),
            scopes(&[]),
            scopes(&["x:y", "a", "keys:manage"]),
        ] {
            assert!(
                store
                    .set_user_scopes(&alice.id, &new)
                    .await
                    .expect("set_user_scopes"),
                "set_user_scopes of a known user must return true"
            );
            let expected = UserRecord {
                scopes: new.clone(),
                ..alice.clone()
            };
            assert_eq!(
                by_id(&store, "u-alice").await.as_ref(),
                Some(&expected),
                "set_user_scopes must replace exactly the scopes ({new:?})"
            );
        }
        assert!(
            !store
                .set_user_scopes(&OwnerId::new("u-nobody"), &scopes(&["a"]))
                .await
                .expect("set_user_scopes"),
            "set_user_scopes of an unknown id must return false"
        );
        assert_eq!(
            by_id(&store, "u-bob").await.as_ref(),
            Some(&bob),
            "bob untouched"
        );
    })
    .await;
}

/// `delete_user` removes the user (by id and by email; the email is free again); an unknown id
/// is `Ok(false)`.
pub async fn user_delete(store: Arc<dyn UserStore>) {
    crate::user_store_contract("user_delete", store, |store| async move {
        let alice = user("u-alice", "alice@example.com", now());
        let bob = user("u-bob", "bob@example.com", now());
        insert(&store, &alice).await;
        insert(&store, &bob).await;
        assert!(
            store.delete_user(&alice.id).await.expect("delete_user"),
            "delete_user of a known user must return true"
        );
        assert_eq!(
            by_id(&store, "u-alice").await,
            None,
            "deleted user found by id"
        );
        assert_eq!(
            by_email(&store, "alice@example.com").await,
            None,
            "deleted user found by email"
        );
        assert!(
            !store.delete_user(&alice.id).await.expect("delete_user"),
            "a second delete_user must return false"
        );
        let again = user("u-alice-2", "alice@example.com", now());
        insert(&store, &again).await;
        assert_eq!(
            by_email(&store, "alice@example.com").await.as_ref(),
            Some(&again),
            "find_user_by_email must find a user inserted again after delete"
        );
        assert_eq!(
            store.list_users().await.expect("list_users").len(),
            2,
            "list_users after a delete"
        );
    })
    .await;
}

/// Through [`nexora_auth::Authenticator`]: a user's tokens and keys work only while the user
/// exists and is enabled, and carry at most the user's current scopes.
pub async fn user_live_rule_through_the_authenticator(store: Arc<dyn UserStore>) {
    crate::user_store_contract(
        "user_live_rule_through_the_authenticator",
        store,
        |store| async move {
            let auth = authenticator_with(
                Arc::new(MemoryKeyStore::new()),
                Some(store.clone()),
                Arc::new(MicrosClock),
            );
            let password = SecretString::from("correct horse battery staple");
            let both = scopes(&["agents:read", "keys:manage"]);
            let alice = auth
                .register_user("alice@example.com", &password, both.clone())
                .await
                .expect("register");
            let jwt = auth
                .login("alice@example.com", &password)
                .await
                .expect("login")
                .token
                .token
                .expose()
                .to_owned();
            let key = auth
                .create_key_for(&alice.id, &both, NewKey::named("k"))
                .await
                .expect("create key")
                .key
                .expose()
                .to_owned();
            for credential in [&jwt, &key] {
                let principal = auth.authenticate(credential).await.expect("authenticates");
                assert_eq!(
                    principal.scopes(),
                    &both,
                    "authenticate must return the user's scopes"
                );
            }

            assert!(
                auth.set_user_scopes(&alice.id, &scopes(&["agents:read"]), &ADMIN)
                    .await
                    .expect("set scopes"),
                "set_user_scopes of a known user must be Ok(true)"
            );
            for credential in [&jwt, &key] {
                let principal = auth.authenticate(credential).await.expect("authenticates");
                assert_eq!(
                    principal.scopes(),
                    &scopes(&["agents:read"]),
                    "credentials must be capped at the user's current scopes"
                );
            }
            assert!(
                auth.set_user_scopes(&alice.id, &both, &ADMIN)
                    .await
                    .expect("set scopes"),
                "set_user_scopes of a known user must be Ok(true)"
            );

            assert!(
                auth.disable_user(&alice.id, &ADMIN).await.expect("disable"),
                "disable_user of a known user must be Ok(true)"
            );
            for credential in [&jwt, &key] {
                let refused = auth.authenticate(credential).await;
                assert!(
                    matches!(
                        refused,
                        Err(AuthError::InvalidToken(InvalidReason::UserDisabled))
                    ),
                    "a disabled user's credential must be refused: {refused:?}"
                );
            }
            assert!(
                matches!(
                    auth.login("alice@example.com", &password).await,
                    Err(AuthError::InvalidLogin)
                ),
                "a disabled user cannot log in"
            );
            assert!(
                auth.enable_user(&alice.id, &ADMIN).await.expect("enable"),
                "enable_user of a known user must be Ok(true)"
            );
            for credential in [&jwt, &key] {
                auth.authenticate(credential)
                    .await
                    .expect("credentials work again once the user is enabled");
            }

            assert!(
                auth.delete_user(&alice.id, &ADMIN).await.expect("delete"),
                "delete_user of a known user must be Ok(true)"
            );
            for credential in [&jwt, &key] {
                let refused = auth.authenticate(credential).await;
                assert!(
                    matches!(
                        refused,
                        Err(AuthError::InvalidToken(InvalidReason::UnknownUser))
                    ),
                    "a deleted user's credential must be refused: {refused:?}"
                );
            }
        },
    )
    .await;
}

fn rate(limit: u32, period_secs: u32) -> RateLimit {
    RateLimit::new(limit, period_secs).expect("a valid test rate limit")
}

/// The user's own rate limit as `find_user` reads it (`None` for an unknown id too).
async fn owner_limit(store: &Arc<dyn UserStore>, id: &str) -> Option<RateLimit> {
    store
        .find_user(&OwnerId::new(id))
        .await
        .unwrap_or_else(|e| panic!("find_user failed: {e:?}"))
        .and_then(|user| user.rate_limit)
}

/// `find_user` returns in `rate_limit` what `set_owner_rate_limit` last wrote (`None` before any, and
/// after it is cleared), per user; `set_owner_rate_limit` changes nothing else of the user, and
/// on an unknown id is `Ok(false)` (whose limit reads `None`).
pub async fn user_owner_rate_limit_round_trips(store: Arc<dyn UserStore>) {
    crate::user_store_contract(
        "user_owner_rate_limit_round_trips",
        store,
        |store| async move {
            let alice = user("u-alice", "alice@example.com", now());
            let bob = user("u-bob", "bob@example.com", now());
            insert(&store, &alice).await;
            insert(&store, &bob).await;
            assert_eq!(
                owner_limit(&store, "u-alice").await,
                None,
                "a user never given a rate limit has none"
            );
            for limit in [
                Some(rate(10, 60)),
                Some(rate(MAX_RATE_LIMIT, MAX_PERIOD_SECS)),
                Some(rate(1, 86_400)),
                None,
                Some(rate(3, 1)),
            ] {
                assert!(
                    store
                        .set_owner_rate_limit(&alice.id, limit)
                        .await
                        .expect("set_owner_rate_limit"),
                    "set_owner_rate_limit of a known user must return true"
                );
                assert_eq!(
                    owner_limit(&store, "u-alice").await,
                    limit,
                    "find_user must return what set_owner_rate_limit wrote"
                );
                assert_eq!(
                    by_id(&store, "u-alice").await,
                    Some(UserRecord {
                        rate_limit: limit,
                        ..alice.clone()
                    }),
                    "the user record carries the limit, and nothing else changed"
                );
            }
            assert_eq!(
                owner_limit(&store, "u-bob").await,
                None,
                "another user's rate limit must stay unset"
            );
            let carol = UserRecord {
                rate_limit: Some(rate(7, 60)),
                ..user("u-carol", "carol@example.com", now())
            };
            insert(&store, &carol).await;
            assert_eq!(
                (
                    owner_limit(&store, "u-carol").await,
                    by_id(&store, "u-carol").await
                ),
                (Some(rate(7, 60)), Some(carol)),
                "insert_user must store the record's rate limit as given"
            );
            assert!(
                !store
                    .set_owner_rate_limit(&OwnerId::new("u-nobody"), Some(rate(1, 1)))
                    .await
                    .expect("set_owner_rate_limit"),
                "set_owner_rate_limit of an unknown id must return false"
            );
            assert_eq!(
                owner_limit(&store, "u-nobody").await,
                None,
                "an unknown id has no rate limit"
            );
        },
    )
    .await;
}

/// `delete_user` forgets the user's rate limit: a user created again with the same id has none.
pub async fn user_delete_forgets_the_owner_rate_limit(store: Arc<dyn UserStore>) {
    crate::user_store_contract(
        "user_delete_forgets_the_owner_rate_limit",
        store,
        |store| async move {
            let alice = user("u-alice", "alice@example.com", now());
            insert(&store, &alice).await;
            assert!(
                store
                    .set_owner_rate_limit(&alice.id, Some(rate(5, 60)))
                    .await
                    .expect("set_owner_rate_limit"),
                "set_owner_rate_limit of a known user must return true"
            );
            assert!(
                store.delete_user(&alice.id).await.expect("delete_user"),
                "delete_user of a known user must return true"
            );
            assert_eq!(
                owner_limit(&store, "u-alice").await,
                None,
                "a deleted user has no rate limit"
            );
            insert(&store, &alice).await;
            assert_eq!(
                owner_limit(&store, "u-alice").await,
                None,
                "a user created again after delete_user must not inherit the old rate limit"
            );
        },
    )
    .await;
}

/// Every [`UserStore`] contract of this module with its name, in the order
/// [`crate::user_store_conformance!`] generates them.
pub fn contracts() -> Vec<(&'static str, crate::Contract<dyn UserStore>)> {
    __user_store_contracts!(list user_store ())
}
