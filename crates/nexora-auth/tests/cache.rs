//! The verification cache over the in-memory stores, whose change feed is synchronous: hot
//! keys and users cost no store call, and every change is honoured by the next request.

use std::{sync::Arc, time::Duration};

use nexora_auth::{
    AuthError, Authenticator, CacheConfig, Credential, InvalidReason, JwtConfig, JwtKeys, KeyStore,
    MemoryKeyStore, MemoryUserStore, NewKey, OwnerId, Principal, RevokeOptions, RotateOptions,
    Scopes, SecretBytes, TokenAuthority, UserRecord, UserStore,
};
use nexora_auth_testkit::{
    authenticator_builder,
    failure::{FlakyStore, StoreMethod},
};
use time::OffsetDateTime;

struct Fixture {
    auth: Authenticator,
    keys: Arc<FlakyStore<MemoryKeyStore>>,
    users: Arc<FlakyStore<MemoryUserStore>>,
    alice: OwnerId,
}

fn tokens() -> TokenAuthority {
    let secret = SecretBytes::new(b"cache-test-jwt-secret-cache-test-jwt".to_vec());
    TokenAuthority::new(
        JwtKeys::hs256(&secret).unwrap(),
        JwtConfig::new("nexora", "nexora-api"),
    )
    .unwrap()
}

async fn fixture(forward: bool, config: CacheConfig) -> Fixture {
    let wrap_keys = FlakyStore::new(MemoryKeyStore::new());
    let wrap_users = FlakyStore::new(MemoryUserStore::new());
    let (keys, users) = if forward {
        (
            wrap_keys.forwarding_changes(),
            wrap_users.forwarding_changes(),
        )
    } else {
        (wrap_keys, wrap_users)
    };
    let (keys, users) = (Arc::new(keys), Arc::new(users));
    let alice = OwnerId::new("alice");
    users
        .insert_user(&UserRecord {
            id: alice.clone(),
            email: "alice@example.com".into(),
            password_hash: "unused".into(),
            scopes: Scopes::new(["agents:read", "keys:manage"]).unwrap(),
            created_at: OffsetDateTime::now_utc(),
            disabled: false,
            rate_limit: None,
        })
        .await
        .unwrap();
    let auth = authenticator_builder(keys.clone())
        .users(users.clone())
        .tokens(tokens())
        .verification_cache(config)
        .build()
        .unwrap();
    Fixture {
        auth,
        keys,
        users,
        alice,
    }
}

impl Fixture {
    /// A new key of Alice's, created by a login session.
    async fn new_key(&self, name: &str) -> nexora_auth::CreatedKey {
        self.auth
            .create_key(&session(&self.alice), NewKey::named(name))
            .await
            .unwrap()
    }

    /// Authenticates `created` and watches the principal in a task of its own.
    async fn watch(&self, created: &nexora_auth::CreatedKey) -> tokio::task::JoinHandle<AuthError> {
        let p = self.auth.authenticate(created.key.expose()).await.unwrap();
        let auth = self.auth.clone();
        tokio::spawn(async move { auth.watch(&p).await })
    }
}

fn session(owner: &OwnerId) -> Principal {
    Principal::new(
        owner.clone(),
        Credential::Internal,
        Scopes::new(["agents:read", "keys:manage"]).unwrap(),
    )
}

fn lookups(f: &Fixture) -> (u64, u64) {
    (
        f.keys.calls().of(StoreMethod::FindCredentials),
        f.users.calls().of(StoreMethod::FindUser),
    )
}

fn invalid(result: Result<Principal, AuthError>) -> InvalidReason {
    match result {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_hot_key_and_its_user_cost_no_store_call() {
    let f = fixture(true, CacheConfig::default()).await;
    let key = f.new_key("ci").await.key;
    f.auth.authenticate(key.expose()).await.unwrap();
    let after_first = lookups(&f);
    assert_eq!(after_first, (1, 1));
    for _ in 0..100 {
        f.auth.authenticate(key.expose()).await.unwrap();
    }
    assert_eq!(lookups(&f), after_first);
    // A wrong secret for the cached id is still refused: the cache holds digests, not answers.
    let mut forged = key.expose().to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert!(f.auth.authenticate(&forged).await.is_err());
}

#[tokio::test]
async fn without_a_feed_every_request_reads_the_store() {
    let f = fixture(false, CacheConfig::default()).await;
    let key = f.new_key("ci").await.key;
    for _ in 0..5 {
        f.auth.authenticate(key.expose()).await.unwrap();
    }
    assert_eq!(lookups(&f), (5, 5));
    // Unless the host opts into a time-to-live.
    let f = fixture(
        false,
        CacheConfig::default().unwatched_ttl(Some(Duration::from_secs(60))),
    )
    .await;
    let key = f.new_key("ci").await.key;
    for _ in 0..5 {
        f.auth.authenticate(key.expose()).await.unwrap();
    }
    assert_eq!(lookups(&f), (1, 1));
}

#[tokio::test]
async fn changes_made_in_the_store_are_honoured_by_the_next_request() {
    let f = fixture(true, CacheConfig::default()).await;
    let me = session(&f.alice);
    let a = f.new_key("a").await;
    let b = f.new_key("b").await;
    let c = f.new_key("c").await;
    for k in [&a, &b, &c] {
        f.auth.authenticate(k.key.expose()).await.unwrap();
    }
    // Revoked directly in the store (as an admin tool would), not through the authenticator.
    let at = OffsetDateTime::now_utc();
    f.keys
        .inner()
        .revoke_tree(&f.alice, a.info.id, at)
        .await
        .unwrap();
    assert_eq!(
        invalid(f.auth.authenticate(a.key.expose()).await),
        InvalidReason::Revoked
    );
    // Rotation without grace: the old secret is refused at once, the new one accepted.
    let rotated = f
        .auth
        .rotate_key(&me, b.info.id, RotateOptions::immediate())
        .await
        .unwrap();
    assert_eq!(
        invalid(f.auth.authenticate(b.key.expose()).await),
        InvalidReason::SecretMismatch
    );
    f.auth.authenticate(rotated.key.expose()).await.unwrap();
    // Scope narrowing of the user caps the key on the next request.
    f.users
        .inner()
        .set_user_scopes(&f.alice, &Scopes::new(["keys:manage"]).unwrap())
        .await
        .unwrap();
    let p = f.auth.authenticate(c.key.expose()).await.unwrap();
    assert!(!p.has_scope("agents:read"));
    // Disabling the user ends every credential on the next request.
    f.users
        .inner()
        .set_user_disabled(&f.alice, true)
        .await
        .unwrap();
    assert_eq!(
        invalid(f.auth.authenticate(c.key.expose()).await),
        InvalidReason::UserDisabled
    );
}

#[tokio::test]
async fn unknown_ids_are_remembered_briefly() {
    let f = fixture(true, CacheConfig::default()).await;
    let key = nexora_auth::ApiKey::generate().unwrap();
    for _ in 0..10 {
        assert_eq!(
            invalid(f.auth.authenticate(key.expose()).await),
            InvalidReason::UnknownKey
        );
    }
    assert_eq!(lookups(&f).0, 1);
}

#[tokio::test]
async fn a_store_outage_is_never_a_cached_yes_for_an_unwatched_store() {
    let f = fixture(false, CacheConfig::default()).await;
    let key = f.new_key("ci").await.key;
    f.auth.authenticate(key.expose()).await.unwrap();
    f.keys.set_failing(true);
    assert!(matches!(
        f.auth.authenticate(key.expose()).await,
        Err(AuthError::StoreUnavailable(_))
    ));
}

#[tokio::test]
async fn a_watch_ends_when_its_key_is_revoked_rotated_or_its_user_disabled() {
    let f = fixture(true, CacheConfig::default()).await;
    let me = session(&f.alice);
    let within = Duration::from_millis(500);

    let a = f.new_key("a").await;
    let watch = f.watch(&a).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!watch.is_finished(), "a live key's watch must not end");
    f.auth
        .revoke_key(&me, a.info.id, RevokeOptions::key_only())
        .await
        .unwrap();
    let ended = tokio::time::timeout(within, watch).await.unwrap().unwrap();
    assert!(matches!(
        ended,
        AuthError::InvalidToken(InvalidReason::Revoked)
    ));

    let b = f.new_key("b").await;
    let watch = f.watch(&b).await;
    // A rotation with grace keeps the old secret's socket open until the grace ends.
    let grace = f
        .auth
        .rotate_key(
            &me,
            b.info.id,
            RotateOptions::with_grace(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!watch.is_finished(), "a secret in its grace period holds");
    f.auth
        .rotate_key(&me, b.info.id, RotateOptions::immediate())
        .await
        .unwrap();
    let ended = tokio::time::timeout(within, watch).await.unwrap().unwrap();
    assert!(matches!(
        ended,
        AuthError::InvalidToken(InvalidReason::SecretMismatch)
    ));
    drop(grace);

    let c = f.new_key("c").await;
    let watch = f.watch(&c).await;
    f.users
        .inner()
        .set_user_disabled(&f.alice, true)
        .await
        .unwrap();
    let ended = tokio::time::timeout(within, watch).await.unwrap().unwrap();
    assert!(matches!(
        ended,
        AuthError::InvalidToken(InvalidReason::UserDisabled)
    ));
}

#[tokio::test]
async fn a_watch_ends_when_its_credential_expires() {
    let f = fixture(true, CacheConfig::default()).await;
    let me = session(&f.alice);
    let expires = OffsetDateTime::now_utc() + time::Duration::milliseconds(300);
    let k = f
        .auth
        .create_key(&me, NewKey::named("short").expiring_at(expires))
        .await
        .unwrap();
    let p = f.auth.authenticate(k.key.expose()).await.unwrap();
    assert_eq!(p.credential_expires_at(), Some(k.info.expires_at.unwrap()));
    let ended = tokio::time::timeout(Duration::from_secs(2), f.auth.watch(&p))
        .await
        .unwrap();
    assert!(matches!(
        ended,
        AuthError::InvalidToken(InvalidReason::Expired)
    ));

    // A JWT's watch ends at its `exp` (a 1-second token, from an authenticator on the same
    // stores).
    let secret = SecretBytes::new(b"cache-test-jwt-secret-cache-test-jwt".to_vec());
    let short = TokenAuthority::new(
        JwtKeys::hs256(&secret).unwrap(),
        JwtConfig::new("nexora", "nexora-api").access_token_ttl(Duration::from_secs(1)),
    )
    .unwrap();
    let auth = authenticator_builder(f.keys.clone())
        .users(f.users.clone())
        .tokens(short)
        .build()
        .unwrap();
    let token = auth
        .tokens()
        .unwrap()
        .issue(&f.alice, &Scopes::new(["agents:read"]).unwrap())
        .unwrap();
    let p = auth.authenticate(token.token.expose()).await.unwrap();
    assert!(p.credential_expires_at().is_some());
    let ended = tokio::time::timeout(Duration::from_secs(4), auth.watch(&p))
        .await
        .unwrap();
    assert!(matches!(
        ended,
        AuthError::InvalidToken(InvalidReason::Expired)
    ));
}

#[tokio::test]
async fn a_watch_with_a_zero_ceiling_does_not_spin_on_the_store() {
    let f = fixture(true, CacheConfig::default().ceiling(Duration::ZERO)).await;
    let k = f.new_key("ws").await;
    let p = f.auth.authenticate(k.key.expose()).await.unwrap();
    let before = lookups(&f).0;
    let watched = tokio::time::timeout(Duration::from_millis(300), f.auth.watch(&p)).await;
    assert!(watched.is_err(), "a live key's watch must not end");
    let reads = lookups(&f).0 - before;
    assert!(reads <= 3, "{reads} store reads in 300 ms");
}
