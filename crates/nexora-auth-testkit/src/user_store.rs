//! The [`UserStore`] contracts, one function each (what [`crate::user_store_conformance!`] runs).

use std::sync::Arc;

use nexora_auth::{
    AuthError, MemoryKeyStore, OwnerId, SecretString, StoreError, UserRecord, UserStore,
};
use time::OffsetDateTime;

use crate::{MicrosClock, authenticator_with, now, scopes};

fn user(id: &str, email: &str, created_at: OffsetDateTime) -> UserRecord {
    UserRecord {
        id: OwnerId::new(id),
        email: email.to_owned(),
        // Not a real hash: stores keep the text, they never parse it.
        password_hash: format!("$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ${id}"),
        scopes: scopes(&["agents:read", "keys:manage"]),
        created_at,
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
}

/// Unknown emails and ids are `Ok(None)`.
pub async fn user_find_unknown_is_none(store: Arc<dyn UserStore>) {
    insert(&store, &user("u-alice", "alice@example.com", now())).await;
    assert_eq!(by_email(&store, "bob@example.com").await, None);
    assert_eq!(
        by_email(&store, "alice@example.co").await,
        None,
        "emails must match exactly"
    );
    assert_eq!(by_id(&store, "u-bob").await, None);
}

/// A second user with an existing email is [`StoreError::DuplicateEmail`]; nothing changes.
pub async fn user_duplicate_email_is_a_typed_error(store: Arc<dyn UserStore>) {
    let alice = user("u-alice", "alice@example.com", now());
    insert(&store, &alice).await;
    match store
        .insert_user(&user("u-other", "alice@example.com", now()))
        .await
    {
        Err(StoreError::DuplicateEmail) => {}
        other => panic!("a duplicate email must be Err(StoreError::DuplicateEmail), got {other:?}"),
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
}

/// A second user with an existing id is [`StoreError::DuplicateId`]; nothing changes.
pub async fn user_duplicate_id_is_a_typed_error(store: Arc<dyn UserStore>) {
    let alice = user("u-alice", "alice@example.com", now());
    insert(&store, &alice).await;
    match store
        .insert_user(&user("u-alice", "other@example.com", now()))
        .await
    {
        Err(StoreError::DuplicateId) => {}
        other => panic!("a duplicate id must be Err(StoreError::DuplicateId), got {other:?}"),
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
}

/// `update_password_hash` replaces the hash of an existing user (`true`) and is `false` for an
/// unknown one.
pub async fn user_update_password_hash(store: Arc<dyn UserStore>) {
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
    assert_eq!(by_id(&store, "u-alice").await, Some(updated.clone()));
    assert_eq!(by_email(&store, "alice@example.com").await, Some(updated));
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
}

/// `list_users` returns every user, ordered by `created_at`, then `id`.
pub async fn user_list_is_ordered_by_creation_then_id(store: Arc<dyn UserStore>) {
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
}

/// Through [`nexora_auth::Authenticator`]: register, log in, refuse a wrong password and a
/// second registration of the same (differently cased) email.
pub async fn user_register_and_login_through_the_authenticator(store: Arc<dyn UserStore>) {
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
    assert_eq!(info.email, "alice@example.com");
    let stored = by_email(&store, "alice@example.com")
        .await
        .expect("registered user stored");
    assert_eq!(stored.id, info.id);
    let token = auth
        .login("ALICE@example.com", &password)
        .await
        .expect("login");
    let principal = auth
        .authenticate(token.token.token.expose())
        .await
        .expect("token authenticates");
    assert_eq!(principal.owner(), &info.id);
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
    assert_eq!(store.list_users().await.expect("list").len(), 1);
}
