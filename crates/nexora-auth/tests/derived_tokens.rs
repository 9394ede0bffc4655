//! Tokens derived from an API key: scopes within the key's, lifetimes within the server's
//! maximum and the key's life, and death with the key (revoked, rotated without grace, its
//! grace ended, its user disabled) on the next request, through the verification cache; keys
//! they create count as created by the key.

use std::{sync::Arc, time::Duration};

use nexora_auth::{
    AuthError, Authenticator, Clock, Credential, DerivedToken, Field, InvalidInput, InvalidReason,
    JwtConfig, JwtKeys, MemoryAuditStore, MemoryKeyStore, MemoryUserStore, NewKey, OwnerId,
    Principal, RevokeOptions, RotateOptions, Scopes, SecretBytes, TokenAuthority, TokenRequest,
    UserRecord, UserStore,
    audit::{AuditAction, AuditQuery, AuditStore},
};
use nexora_auth_testkit::{
    ManualClock, authenticator_builder,
    failure::{FlakyStore, StoreMethod},
};
use time::OffsetDateTime;

/// The actor of the user changes these tests make.
fn admin() -> nexora_auth::audit::Actor {
    nexora_auth::audit::Actor::system("test")
}

struct Fixture {
    auth: Authenticator,
    keys: Arc<FlakyStore<MemoryKeyStore>>,
    audit: Arc<MemoryAuditStore>,
    clock: Arc<ManualClock>,
    alice: OwnerId,
}

fn scopes(list: &[&str]) -> Scopes {
    Scopes::new(list.iter().copied()).unwrap()
}

fn tokens() -> TokenAuthority {
    let secret = SecretBytes::new(b"derived-token-test-secret-of-32+ bytes".to_vec());
    TokenAuthority::new(
        JwtKeys::hs256(&secret).unwrap(),
        // No leeway: a token is refused the second it expires.
        JwtConfig::new("nexora", "nexora-api").leeway(Duration::ZERO),
    )
    .unwrap()
}

async fn fixture() -> Fixture {
    fixture_with(|builder| builder).await
}

async fn fixture_with(
    configure: impl FnOnce(nexora_auth::AuthenticatorBuilder) -> nexora_auth::AuthenticatorBuilder,
) -> Fixture {
    let keys = Arc::new(FlakyStore::new(MemoryKeyStore::new()).forwarding_changes());
    let users = Arc::new(MemoryUserStore::new());
    let alice = OwnerId::new("alice");
    users
        .insert_user(&UserRecord {
            id: alice.clone(),
            email: "alice@example.com".into(),
            password_hash: "unused".into(),
            scopes: scopes(&["agents:read", "agents:write", "keys:manage"]),
            created_at: OffsetDateTime::now_utc(),
            disabled: false,
            rate_limit: None,
        })
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let audit = Arc::new(MemoryAuditStore::new());
    let builder = authenticator_builder(keys.clone())
        .users(users)
        .tokens(tokens())
        .audit(audit.clone())
        .clock(clock.clone());
    Fixture {
        auth: configure(builder).build().unwrap(),
        keys,
        audit,
        clock,
        alice,
    }
}

impl Fixture {
    fn session(&self) -> Principal {
        Principal::new(
            self.alice.clone(),
            Credential::Internal,
            scopes(&["agents:read", "agents:write", "keys:manage"]),
        )
    }

    /// A key of Alice's with `list` scopes (and an expiry, if given), authenticated.
    async fn key(
        &self,
        list: &[&str],
        expires_at: Option<OffsetDateTime>,
    ) -> (nexora_auth::CreatedKey, Principal) {
        let mut request = NewKey::named("source").with_scopes(scopes(list));
        if let Some(at) = expires_at {
            request = request.expiring_at(at);
        }
        let created = self
            .auth
            .create_key(&self.session(), request)
            .await
            .unwrap();
        let principal = self.auth.authenticate(created.key.expose()).await.unwrap();
        (created, principal)
    }

    async fn derive(&self, key: &Principal, request: TokenRequest) -> DerivedToken {
        self.auth.derive_token(key, request).await.unwrap()
    }

    async fn authenticate(&self, token: &DerivedToken) -> Result<Principal, AuthError> {
        self.auth.authenticate(token.token.token.expose()).await
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(time::Duration::seconds(seconds));
    }
}

fn invalid(result: Result<Principal, AuthError>) -> InvalidReason {
    match result {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("want a bad credential, got {other:?}"),
    }
}

#[tokio::test]
async fn a_derived_token_acts_as_its_key_within_the_scopes_asked() {
    let f = fixture().await;
    let (created, key) = f.key(&["agents:read", "keys:manage"], None).await;
    let all = f.derive(&key, TokenRequest::new()).await;
    assert_eq!(all.key_id, created.info.id);
    assert_eq!(all.scopes, scopes(&["agents:read", "keys:manage"]));
    let principal = f.authenticate(&all).await.unwrap();
    assert_eq!(principal.key_id(), Some(created.info.id));
    assert!(
        matches!(principal.credential(), Credential::DerivedToken { key, jti: Some(_) } if *key == created.info.id)
    );
    assert_eq!(principal.scopes(), &scopes(&["agents:read", "keys:manage"]));

    let narrow = f
        .derive(
            &key,
            TokenRequest::new().with_scopes(scopes(&["agents:read"])),
        )
        .await;
    let principal = f.authenticate(&narrow).await.unwrap();
    assert_eq!(principal.scopes(), &scopes(&["agents:read"]));
    assert!(principal.require_scope("keys:manage").is_err());

    // No scopes at all is a token that can do nothing (not one that carries the user's).
    let none = f
        .derive(&key, TokenRequest::new().with_scopes(Scopes::empty()))
        .await;
    assert!(f.authenticate(&none).await.unwrap().scopes().is_empty());
}

#[tokio::test]
async fn asking_for_more_than_the_key_holds_is_refused() {
    let f = fixture().await;
    let (_, key) = f.key(&["agents:read"], None).await;
    // The user holds agents:write; the key does not.
    for asked in [&["agents:write"][..], &["agents:read", "keys:manage"]] {
        let refused = f
            .auth
            .derive_token(&key, TokenRequest::new().with_scopes(scopes(asked)))
            .await;
        assert!(
            matches!(refused, Err(AuthError::ScopeNotHeld)),
            "{asked:?}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn only_a_key_derives() {
    let f = fixture().await;
    let (_, key) = f.key(&["agents:read"], None).await;
    let derived = f.derive(&key, TokenRequest::new()).await;
    let as_derived = f.authenticate(&derived).await.unwrap();
    let login = f
        .auth
        .issue_token(&f.alice, &scopes(&["agents:read"]))
        .unwrap();
    let as_jwt = f.auth.authenticate(login.token.expose()).await.unwrap();
    for principal in [as_derived, as_jwt, f.session()] {
        assert!(
            matches!(
                f.auth.derive_token(&principal, TokenRequest::new()).await,
                Err(AuthError::KeyRequired)
            ),
            "{:?}",
            principal.credential()
        );
    }
}

#[tokio::test]
async fn lifetimes_are_capped_by_the_maximum_and_the_key() {
    let f = fixture().await;
    let (_, key) = f.key(&["agents:read"], None).await;
    let ttl = |token: &DerivedToken| token.token.expires_in;
    assert_eq!(ttl(&f.derive(&key, TokenRequest::new()).await), 15 * 60);
    assert_eq!(
        ttl(&f.derive(&key, TokenRequest::new().with_ttl_secs(60)).await),
        60
    );
    assert_eq!(
        ttl(&f
            .derive(&key, TokenRequest::new().with_ttl_secs(86_400))
            .await),
        15 * 60,
        "capped at the maximum"
    );
    assert!(matches!(
        f.auth
            .derive_token(&key, TokenRequest::new().with_ttl_secs(0))
            .await,
        Err(AuthError::InvalidInput(InvalidInput {
            field: Field::TtlSecs,
            ..
        }))
    ));

    // A key with two minutes left: the token lives two minutes, and dies with it.
    let (_, short) = f
        .key(
            &["agents:read"],
            Some(f.clock.now() + time::Duration::seconds(120)),
        )
        .await;
    let token = f.derive(&short, TokenRequest::new()).await;
    assert_eq!(ttl(&token), 120);
    f.advance(119);
    assert!(f.authenticate(&token).await.is_ok());
    f.advance(1);
    assert_eq!(
        invalid(f.authenticate(&token).await),
        InvalidReason::Expired
    );

    // The maximum is configurable.
    let f = fixture_with(|b| b.derived_token_max_ttl(Duration::from_secs(300))).await;
    let (_, key) = f.key(&["agents:read"], None).await;
    assert_eq!(ttl(&f.derive(&key, TokenRequest::new()).await), 300);
    // Beyond what the token authority accepts (24 hours by default), or zero: refused.
    for max in [Duration::from_secs(2 * 86_400), Duration::ZERO] {
        let refused = authenticator_builder(Arc::new(MemoryKeyStore::new()))
            .tokens(tokens())
            .derived_token_max_ttl(max)
            .build();
        assert!(refused.is_err(), "{max:?}");
    }
}

#[tokio::test]
async fn it_dies_with_its_key_revoked() {
    let f = fixture().await;
    let (created, key) = f.key(&["agents:read"], None).await;
    let token = f.derive(&key, TokenRequest::new()).await;
    assert!(f.authenticate(&token).await.is_ok());
    f.auth
        .revoke_key(&f.session(), created.info.id, RevokeOptions::key_only())
        .await
        .unwrap();
    assert_eq!(
        invalid(f.authenticate(&token).await),
        InvalidReason::Revoked
    );
}

#[tokio::test]
async fn it_dies_with_a_rotation_without_grace() {
    let f = fixture().await;
    let (created, key) = f.key(&["agents:read"], None).await;
    let token = f.derive(&key, TokenRequest::new()).await;
    let rotated = f
        .auth
        .rotate_key(&f.session(), created.info.id, RotateOptions::immediate())
        .await
        .unwrap();
    assert_eq!(
        invalid(f.authenticate(&token).await),
        InvalidReason::SecretMismatch
    );
    // A token derived from the new secret works.
    let new_key = f.auth.authenticate(rotated.key.expose()).await.unwrap();
    let fresh = f.derive(&new_key, TokenRequest::new()).await;
    assert!(f.authenticate(&fresh).await.is_ok());
}

/// With a grace period, a token follows the secret it came from: it works until the grace
/// ends, as the old key does.
#[tokio::test]
async fn it_survives_a_rotation_with_grace_until_the_grace_ends() {
    let f = fixture().await;
    let (created, key) = f.key(&["agents:read"], None).await;
    let token = f.derive(&key, TokenRequest::new()).await;
    f.auth
        .rotate_key(
            &f.session(),
            created.info.id,
            RotateOptions::with_grace(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let during = f.authenticate(&token).await.unwrap();
    let grace_end = f.clock.now() + time::Duration::seconds(60);
    assert_eq!(during.credential_expires_at(), Some(grace_end));
    // A token derived from the old secret in its grace lives no longer than the grace.
    let old_key = f.auth.authenticate(created.key.expose()).await.unwrap();
    assert_eq!(
        f.derive(&old_key, TokenRequest::new())
            .await
            .token
            .expires_in,
        60
    );
    f.advance(59);
    assert!(f.authenticate(&token).await.is_ok());
    f.advance(1);
    assert_eq!(
        invalid(f.authenticate(&token).await),
        InvalidReason::SecretMismatch
    );
}

#[tokio::test]
async fn it_is_refused_while_its_user_is_disabled() {
    let f = fixture().await;
    let (_, key) = f.key(&["agents:read"], None).await;
    let token = f.derive(&key, TokenRequest::new()).await;
    f.auth.disable_user(&f.alice, &admin()).await.unwrap();
    assert_eq!(
        invalid(f.authenticate(&token).await),
        InvalidReason::UserDisabled
    );
    f.auth.enable_user(&f.alice, &admin()).await.unwrap();
    assert!(f.authenticate(&token).await.is_ok());
    // Narrowing the user narrows the token.
    f.auth
        .set_user_scopes(&f.alice, &scopes(&["keys:manage"]), &admin())
        .await
        .unwrap();
    assert!(f.authenticate(&token).await.unwrap().scopes().is_empty());
}

/// A long-lived connection opened with a derived token ends when its key is revoked.
#[tokio::test]
async fn a_watch_ends_when_the_key_is_revoked() {
    let f = fixture().await;
    let (created, key) = f.key(&["agents:read"], None).await;
    let token = f.derive(&key, TokenRequest::new()).await;
    let principal = f.authenticate(&token).await.unwrap();
    let watch = {
        let auth = f.auth.clone();
        tokio::spawn(async move { auth.watch(&principal).await })
    };
    tokio::task::yield_now().await;
    f.auth
        .revoke_key(&f.session(), created.info.id, RevokeOptions::key_only())
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch ends")
        .unwrap();
    assert!(matches!(
        ended,
        AuthError::InvalidToken(InvalidReason::Revoked)
    ));
}

/// A hot key answers its derived tokens from the cache: no store call per request.
#[tokio::test]
async fn a_cached_key_costs_no_store_call_per_request() {
    let f = fixture().await;
    let (_, key) = f.key(&["agents:read"], None).await;
    let token = f.derive(&key, TokenRequest::new()).await;
    f.authenticate(&token).await.unwrap();
    let before = f.keys.calls().of(StoreMethod::FindCredentials);
    for _ in 0..100 {
        f.authenticate(&token).await.unwrap();
    }
    assert_eq!(f.keys.calls().of(StoreMethod::FindCredentials), before);
}

/// A key created with a derived token counts as created by the key: it names the key, expires
/// no later than it, and goes with it in a cascading revoke.
#[tokio::test]
async fn keys_created_with_a_derived_token_count_as_created_by_its_key() {
    let f = fixture().await;
    let key_expiry = (f.clock.now() + time::Duration::days(7))
        .replace_nanosecond(0)
        .unwrap();
    let (source, key) = f
        .key(&["agents:read", "keys:manage"], Some(key_expiry))
        .await;
    let token = f.derive(&key, TokenRequest::new()).await;
    let as_token = f.authenticate(&token).await.unwrap();
    assert_eq!(as_token.expires_at(), Some(key_expiry));
    let child = f
        .auth
        .create_key(
            &as_token,
            NewKey::named("child").expiring_at(key_expiry + time::Duration::days(30)),
        )
        .await
        .unwrap();
    assert_eq!(child.info.created_by, Some(source.info.id));
    assert_eq!(
        child.info.expires_at,
        Some(key_expiry),
        "capped at the key's expiry, not the token's"
    );
    // Beyond the token's scopes is refused, as for the key.
    let narrow = f
        .derive(
            &key,
            TokenRequest::new().with_scopes(scopes(&["keys:manage"])),
        )
        .await;
    let as_narrow = f.authenticate(&narrow).await.unwrap();
    assert!(matches!(
        f.auth
            .create_key(
                &as_narrow,
                NewKey::named("wider").with_scopes(scopes(&["agents:read"]))
            )
            .await,
        Err(AuthError::ScopeNotHeld)
    ));
    let revoked = f
        .auth
        .revoke_key(&f.session(), source.info.id, RevokeOptions::cascade())
        .await
        .unwrap();
    assert!(revoked.contains(&child.info.id));
    assert!(f.auth.authenticate(child.key.expose()).await.is_err());
}

/// Every derivation leaves one `token_derived` event, by the key, naming the key — never the
/// token.
#[tokio::test]
async fn each_derivation_is_audited_without_the_token() {
    let f = fixture().await;
    let (created, key) = f.key(&["agents:read"], None).await;
    let token = f.derive(&key, TokenRequest::new().with_ttl_secs(120)).await;
    let events = f
        .audit
        .list(&AuditQuery::for_owner(f.alice.clone(), 100))
        .await
        .unwrap();
    let derived: Vec<_> = events
        .iter()
        .filter(|e| e.action == AuditAction::TokenDerived)
        .collect();
    assert_eq!(derived.len(), 1, "{events:?}");
    let event = derived[0];
    assert_eq!(
        event.target.as_deref(),
        Some(created.info.id.to_string().as_str())
    );
    assert_eq!(
        event.actor,
        nexora_auth::audit::Actor::Key {
            key_id: created.info.id
        }
    );
    let text = format!("{event:?} {}", event.detail.to_json());
    assert!(!text.contains(token.token.token.expose()), "{text}");
    assert!(
        text.contains(&token.token.jti),
        "the token id is recorded: {text}"
    );
}
