//! Behaviour of `Authenticator` over the in-memory stores.

use std::{sync::Arc, time::Duration};

use nexora_auth::{
    AuthError, Authenticator, Clock, Credential, Field, InvalidInput, InvalidReason, JwtConfig,
    JwtKeys, MemoryKeyStore, MemoryUserStore, NewKey, OwnerId, Principal, Problem, RevokeOptions,
    RotateOptions, Scopes, SecretBytes, SecretString, TokenAuthority, UserRecord, UserStore,
};
use nexora_auth_testkit::{
    ManualClock, authenticator_builder,
    failure::{FlakyStore, StoreMethod},
};
use time::OffsetDateTime;

const JWT_SECRET: &[u8] = b"test-jwt-secret-test-jwt-secret-0123456789";

fn tokens() -> TokenAuthority {
    TokenAuthority::new(
        JwtKeys::hs256(&SecretBytes::new(JWT_SECRET.to_vec())).unwrap(),
        JwtConfig::new("nexora", "nexora-api"),
    )
    .unwrap()
}

struct Fixture {
    auth: Authenticator,
    store: Arc<FlakyStore<MemoryKeyStore>>,
    clock: Arc<ManualClock>,
}

/// The owners the tests act for, as users holding every scope the tests use: with a user store
/// configured, only a live user's credentials authenticate.
const OWNERS: [&str; 4] = ["a", "alice", "bob", "svc"];

async fn fixture() -> Fixture {
    let store = Arc::new(FlakyStore::new(MemoryKeyStore::new()));
    let clock = Arc::new(ManualClock::starting_now());
    let users = Arc::new(MemoryUserStore::new());
    for owner in OWNERS {
        users
            .insert_user(&UserRecord {
                id: OwnerId::new(owner),
                email: format!("{owner}@owners.example"),
                password_hash: String::new(),
                scopes: Scopes::new(["agents:read", "agents:write", "keys:manage"]).unwrap(),
                created_at: OffsetDateTime::now_utc(),
                disabled: false,
                rate_limit: None,
            })
            .await
            .unwrap();
    }
    let auth = authenticator_builder(store.clone())
        .users(users)
        .tokens(tokens())
        .clock(clock.clone())
        .last_used_interval(Duration::from_secs(5))
        .build()
        .unwrap();
    Fixture { auth, store, clock }
}

fn user(name: &str, scopes: &[&str]) -> Principal {
    Principal::new(
        OwnerId::new(name),
        Credential::Internal,
        Scopes::new(scopes.iter().copied()).unwrap(),
    )
}

fn reason(result: Result<Principal, AuthError>) -> InvalidReason {
    match result {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

#[tokio::test]
async fn create_authenticate_and_principal() {
    let f = fixture().await;
    let alice = user("alice", &["agents:read", "keys:manage"]);
    let created = f
        .auth
        .create_key(&alice, NewKey::named("  CI pipeline "))
        .await
        .unwrap();
    assert_eq!(created.info.name, "CI pipeline");
    assert_eq!(
        created.info.scopes,
        *alice.scopes(),
        "scopes default to the creator's"
    );
    let p = f.auth.authenticate(created.key.expose()).await.unwrap();
    assert_eq!(p.owner().as_str(), "alice");
    assert_eq!(p.credential(), &Credential::ApiKey(created.info.id));
    assert!(p.has_scope("agents:read"));
}

#[tokio::test]
async fn malformed_keys_never_reach_the_store() {
    let f = fixture().await;
    let created = f
        .auth
        .create_key(&user("a", &[]), NewKey::named("k"))
        .await
        .unwrap();
    let good = created.key.expose().to_owned();
    let before = f.store.calls().total();
    let mut bad_checksum = good.clone().into_bytes();
    bad_checksum[40] = if bad_checksum[40] == b'a' { b'b' } else { b'a' };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    for token in [
        "nxr_",
        "nxr_short",
        &good[..good.len() - 1],
        &format!("{good}x"),
        &bad_checksum,
        &format!("{}-{}", &good[..10], &good[11..]),
        "nxr_\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}",
    ] {
        assert!(
            matches!(
                reason(f.auth.authenticate(token).await),
                InvalidReason::MalformedKey(_)
            ),
            "{token}"
        );
    }
    assert_eq!(
        f.store.calls().total(),
        before,
        "no store call for malformed keys"
    );
}

#[tokio::test]
async fn unknown_revoked_expired_and_foreign_keys_answer_the_same() {
    let f = fixture().await;
    let alice = user("alice", &["keys:manage"]);
    let revoked = f.auth.create_key(&alice, NewKey::named("r")).await.unwrap();
    f.auth
        .revoke_key(&alice, revoked.info.id, RevokeOptions::default())
        .await
        .unwrap();
    let soon = f.clock.now() + Duration::from_secs(60);
    let expiring = f
        .auth
        .create_key(&alice, NewKey::named("e").expiring_at(soon))
        .await
        .unwrap();
    assert!(f.auth.authenticate(expiring.key.expose()).await.is_ok());
    f.clock.advance(time::Duration::seconds(61));
    let unknown = nexora_auth::ApiKey::generate().unwrap();

    // One bad-credential error with the reason for logs; that every reason reads the same to a
    // client is `nexora-auth-http`'s test (`every_bad_credential_reads_the_same`).
    for (token, want) in [
        (revoked.key.expose(), InvalidReason::Revoked),
        (expiring.key.expose(), InvalidReason::Expired),
        (unknown.expose(), InvalidReason::UnknownKey),
    ] {
        let err = f.auth.authenticate(token).await.unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidToken(r) if *r == want),
            "{err:?}"
        );
    }
    // Another owner cannot rotate or revoke it: not found, never forbidden.
    let bob = Principal::new(
        OwnerId::new("bob"),
        Credential::Internal,
        Scopes::new(["keys:manage"]).unwrap(),
    );
    let live = f
        .auth
        .create_key(&alice, NewKey::named("live"))
        .await
        .unwrap();
    assert!(matches!(
        f.auth
            .revoke_key(&bob, live.info.id, RevokeOptions::default())
            .await,
        Err(AuthError::KeyNotFound)
    ));
    assert!(matches!(
        f.auth
            .rotate_key(&bob, live.info.id, RotateOptions::default())
            .await,
        Err(AuthError::KeyNotFound)
    ));
    assert!(f.auth.list_keys(&bob).await.unwrap().is_empty());
    assert!(
        f.auth.authenticate(live.key.expose()).await.is_ok(),
        "bob's attempts changed nothing"
    );
}

#[tokio::test]
async fn store_failure_is_503_never_401() {
    let f = fixture().await;
    let created = f
        .auth
        .create_key(&user("a", &[]), NewKey::named("k"))
        .await
        .unwrap();
    f.store.set_failing(true);
    let err = f.auth.authenticate(created.key.expose()).await.unwrap_err();
    assert!(matches!(err, AuthError::StoreUnavailable(_)));
    let err = f
        .auth
        .create_key(&user("a", &[]), NewKey::named("k2"))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::StoreUnavailable(_)), "{err:?}");
    f.store.set_failing(false);
    assert!(f.auth.authenticate(created.key.expose()).await.is_ok());
}

#[tokio::test]
async fn rotation_is_immediate_by_default_and_keeps_id_and_name() {
    let f = fixture().await;
    let alice = user("alice", &[]);
    let created = f
        .auth
        .create_key(&alice, NewKey::named("deploy"))
        .await
        .unwrap();
    let rotated = f
        .auth
        .rotate_key(&alice, created.info.id, RotateOptions::default())
        .await
        .unwrap();
    assert_eq!(rotated.info.id, created.info.id);
    assert_eq!(rotated.info.name, "deploy");
    assert_ne!(rotated.info.display, created.info.display);
    assert_eq!(
        reason(f.auth.authenticate(created.key.expose()).await),
        InvalidReason::SecretMismatch
    );
    assert!(f.auth.authenticate(rotated.key.expose()).await.is_ok());
}

#[tokio::test]
async fn rotation_grace_period_keeps_the_old_key_for_a_while() {
    let f = fixture().await;
    let alice = user("alice", &[]);
    let created = f
        .auth
        .create_key(&alice, NewKey::named("deploy"))
        .await
        .unwrap();
    let rotated = f
        .auth
        .rotate_key(
            &alice,
            created.info.id,
            RotateOptions::with_grace(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert!(f.auth.authenticate(created.key.expose()).await.is_ok());
    assert!(f.auth.authenticate(rotated.key.expose()).await.is_ok());
    f.clock.advance(time::Duration::seconds(31));
    assert!(f.auth.authenticate(created.key.expose()).await.is_err());
    assert!(f.auth.authenticate(rotated.key.expose()).await.is_ok());
}

#[tokio::test]
async fn rotating_expired_or_revoked_keys_is_refused() {
    let f = fixture().await;
    let alice = user("alice", &[]);
    let soon = f.clock.now() + Duration::from_secs(10);
    let expiring = f
        .auth
        .create_key(&alice, NewKey::named("e").expiring_at(soon))
        .await
        .unwrap();
    f.clock.advance(time::Duration::seconds(11));
    let err = f
        .auth
        .rotate_key(&alice, expiring.info.id, RotateOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeyExpired));
    let revoked = f.auth.create_key(&alice, NewKey::named("r")).await.unwrap();
    f.auth
        .revoke_key(&alice, revoked.info.id, RevokeOptions::default())
        .await
        .unwrap();
    let err = f
        .auth
        .rotate_key(&alice, revoked.info.id, RotateOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeyNotFound));
    // A revoked key is gone from the owner's view: revoking it again is 404 like rotating it.
    let err = f
        .auth
        .revoke_key(&alice, revoked.info.id, RevokeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeyNotFound));
    let past = f.clock.now() - Duration::from_secs(1);
    let err = f
        .auth
        .create_key(&alice, NewKey::named("p").expiring_at(past))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::InvalidInput(InvalidInput {
                field: Field::ExpiresAt,
                problem: Problem::NotInFuture
            })
        ),
        "{err:?}"
    );
}

/// A store keeps an expiry as its UTC instant, and `time` (like every store) reads back years
/// up to 9999: an offset that carries a valid-looking local time past that is refused, and
/// any other offset is kept as its UTC instant, so the key reads the same when created and
/// when listed.
#[tokio::test]
async fn an_expiry_is_a_utc_instant_within_the_years_stores_keep() {
    use time::{UtcOffset, macros::datetime};
    let f = fixture().await;
    let alice = user("alice", &["agents:read"]);
    let beyond = datetime!(9999-12-31 23:59:59 -23:59);
    let err = f
        .auth
        .create_key(&alice, NewKey::named("far").expiring_at(beyond))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::InvalidInput(InvalidInput {
                field: Field::ExpiresAt,
                problem: Problem::OutOfRange
            })
        ),
        "{err:?}"
    );
    let last = datetime!(9999-12-31 23:59:59.999999999 UTC);
    let kept = f
        .auth
        .create_key(&alice, NewKey::named("last").expiring_at(last))
        .await
        .unwrap();
    assert_eq!(kept.info.expires_at, Some(last));
    let local = datetime!(2400-01-01 02:00 +02:00);
    let created = f
        .auth
        .create_key(&alice, NewKey::named("local").expiring_at(local))
        .await
        .unwrap();
    let expires_at = created.info.expires_at.unwrap();
    assert_eq!((expires_at, expires_at.offset()), (local, UtcOffset::UTC));
    let listed = f.auth.list_keys(&alice).await.unwrap();
    assert!(listed.iter().any(|k| k.expires_at == Some(expires_at)));
}

#[tokio::test]
async fn scopes_can_only_narrow() {
    let f = fixture().await;
    let alice = user("alice", &["agents:read"]);
    let err = f
        .auth
        .create_key(
            &alice,
            NewKey::named("k").with_scopes(Scopes::new(["keys:manage"]).unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::ScopeNotHeld));
    let narrow = f
        .auth
        .create_key(&alice, NewKey::named("k").with_scopes(Scopes::empty()))
        .await
        .unwrap();
    let p = f.auth.authenticate(narrow.key.expose()).await.unwrap();
    assert!(p.scopes().is_empty());
    assert!(matches!(
        p.require_scope("agents:read"),
        Err(AuthError::InsufficientScope { required }) if required == "agents:read"
    ));
}

#[tokio::test]
async fn key_names_are_validated() {
    let f = fixture().await;
    let a = user("a", &[]);
    for bad in ["", "   ", &"x".repeat(101), "tab\tname"] {
        let err = f.auth.create_key(&a, NewKey::named(bad)).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::InvalidInput(InvalidInput {
                    field: Field::Name,
                    ..
                })
            ),
            "{bad:?}: {err:?}"
        );
    }
    let odd = "naïve 'quoted' \"name\"; DROP TABLE keys; -- 🔑";
    let created = f.auth.create_key(&a, NewKey::named(odd)).await.unwrap();
    assert_eq!(f.auth.list_keys(&a).await.unwrap()[0].name, odd);
    assert_eq!(created.info.name, odd);
}

#[tokio::test]
async fn last_used_is_batched_at_most_once_per_interval() {
    let f = fixture().await;
    let a = user("a", &[]);
    let k1 = f.auth.create_key(&a, NewKey::named("1")).await.unwrap();
    let k2 = f.auth.create_key(&a, NewKey::named("2")).await.unwrap();
    let calls_before = f.store.calls().total();
    for _ in 0..50 {
        f.auth.authenticate(k1.key.expose()).await.unwrap();
        f.auth.authenticate(k2.key.expose()).await.unwrap();
    }
    // 100 authentications: 100 finds and not a single write.
    assert_eq!(f.store.calls().total() - calls_before, 100);
    assert_eq!(f.auth.flush_last_used().await.unwrap(), 2);
    assert_eq!(
        f.store.calls().forwarded(StoreMethod::RecordLastUsed),
        1,
        "one batch for both keys"
    );
    let listed = f.auth.list_keys(&a).await.unwrap();
    assert!(listed.iter().all(|k| k.last_used_at == Some(f.clock.now())));
    // Within the interval: nothing new to write.
    f.clock.advance(time::Duration::seconds(4));
    f.auth.authenticate(k1.key.expose()).await.unwrap();
    assert_eq!(f.auth.flush_last_used().await.unwrap(), 0);
    f.clock.advance(time::Duration::seconds(1));
    f.auth.authenticate(k1.key.expose()).await.unwrap();
    assert_eq!(f.auth.flush_last_used().await.unwrap(), 1);
}

#[tokio::test]
async fn failed_flush_is_retried_and_shutdown_flushes() {
    let f = fixture().await;
    let a = user("a", &[]);
    let k = f.auth.create_key(&a, NewKey::named("1")).await.unwrap();
    f.auth.authenticate(k.key.expose()).await.unwrap();
    f.store.set_failing(true);
    assert!(f.auth.flush_last_used().await.is_err());
    f.store.set_failing(false);
    let flusher = f.auth.spawn_last_used_flusher(Duration::from_secs(3600));
    // The failed batch was kept: it is written exactly once, either by the flusher's first
    // (immediate) tick or by the final flush on shutdown, and never twice.
    let flushed_at_shutdown = flusher.shutdown().await.unwrap();
    let batches = f.store.calls().forwarded(StoreMethod::RecordLastUsed);
    assert_eq!(batches, 1, "one successful batch write");
    assert!(flushed_at_shutdown <= 1);
    assert!(
        f.auth.list_keys(&a).await.unwrap()[0]
            .last_used_at
            .is_some()
    );
}

#[tokio::test]
async fn login_is_case_insensitive_and_does_not_reveal_accounts() {
    let f = fixture().await;
    let scopes = Scopes::new(["agents:read", "keys:manage"]).unwrap();
    let password = SecretString::from("correct horse battery staple");
    let info = f
        .auth
        .register_user("Alice@Example.com", &password, scopes.clone())
        .await
        .unwrap();
    assert_eq!(info.email, "alice@example.com");
    assert!(matches!(
        f.auth
            .register_user("ALICE@example.com ", &password, Scopes::empty())
            .await,
        Err(AuthError::EmailTaken)
    ));
    let login = f.auth.login(" alice@EXAMPLE.com", &password).await.unwrap();
    let p = f
        .auth
        .authenticate(login.token.token.expose())
        .await
        .unwrap();
    assert_eq!(p.owner(), &info.id);
    assert_eq!(
        p.scopes(),
        &scopes,
        "a login token carries all of the user's scopes"
    );

    let wrong = f
        .auth
        .login("alice@example.com", &SecretString::from("wrong password!"))
        .await
        .unwrap_err();
    let unknown = f
        .auth
        .login("nobody@example.com", &password)
        .await
        .unwrap_err();
    assert!(matches!(
        (&wrong, &unknown),
        (AuthError::InvalidLogin, AuthError::InvalidLogin)
    ));
    let huge = SecretString::new("x".repeat(1 << 20));
    assert!(matches!(
        f.auth.login("alice@example.com", &huge).await,
        Err(AuthError::InvalidLogin)
    ));
    assert!(matches!(
        f.auth
            .register_user("not-an-email", &password, Scopes::empty())
            .await,
        Err(AuthError::InvalidInput(InvalidInput {
            field: Field::Email,
            problem: Problem::NotAnEmail
        }))
    ));
}

#[tokio::test]
async fn jwt_and_key_both_authenticate() {
    let f = fixture().await;
    let token = f
        .auth
        .issue_token(&OwnerId::new("svc"), &Scopes::new(["agents:read"]).unwrap())
        .unwrap();
    let p = f.auth.authenticate(token.token.expose()).await.unwrap();
    assert_eq!(p.owner().as_str(), "svc");
    assert!(matches!(
        p.credential(),
        Credential::AccessToken { jti: Some(_) }
    ));
    assert!(
        f.auth
            .authenticate("eyJhbGciOiJub25lIn0.e30.")
            .await
            .is_err()
    );
    assert!(f.auth.authenticate("").await.is_err());
}

/// JWTs live on the authenticator's clock: issued at its time, expired by it (after the
/// 900-second lifetime and the 30-second leeway), with no test sleeping; a verified token
/// cached earlier is refused the moment the clock passes its expiry.
#[tokio::test]
async fn jwt_lifetimes_follow_the_injected_clock() {
    let f = fixture().await;
    let token = f
        .auth
        .issue_token(&OwnerId::new("svc"), &Scopes::new(["agents:read"]).unwrap())
        .unwrap();
    let text = token.token.expose().to_owned();
    f.auth.authenticate(&text).await.expect("fresh token");
    f.clock.advance(time::Duration::seconds(900 + 30));
    f.auth
        .authenticate(&text)
        .await
        .expect("valid until exp + leeway");
    f.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        reason(f.auth.authenticate(&text).await),
        InvalidReason::Expired
    );
    // A token issued now, at the clock's (advanced) time, is valid at it.
    let later = f
        .auth
        .issue_token(&OwnerId::new("svc"), &Scopes::new(["agents:read"]).unwrap())
        .unwrap();
    f.auth
        .authenticate(later.token.expose())
        .await
        .expect("a token issued at the clock's time is valid at it");
}

#[tokio::test]
async fn concurrent_rotation_never_has_both_or_neither() {
    let f = fixture().await;
    let alice = user("alice", &[]);
    let created = f
        .auth
        .create_key(&alice, NewKey::named("hot"))
        .await
        .unwrap();
    let mut current = created.key;
    for _ in 0..50 {
        let old = current.clone();
        let checker = {
            let auth = f.auth.clone();
            let old = old.clone();
            tokio::spawn(async move {
                // Before the rotation returns the old key may or may not work; we only assert
                // after it returns (below).
                for _ in 0..20 {
                    let _ = auth.authenticate(old.expose()).await;
                }
            })
        };
        let rotated = f
            .auth
            .rotate_key(&alice, old.id(), RotateOptions::default())
            .await
            .unwrap();
        assert!(
            f.auth.authenticate(old.expose()).await.is_err(),
            "old key after rotate returned"
        );
        assert!(
            f.auth.authenticate(rotated.key.expose()).await.is_ok(),
            "new key after rotate returned"
        );
        checker.await.unwrap();
        current = rotated.key;
    }
}

#[tokio::test]
async fn failed_logins_are_throttled_per_email_and_client() {
    let store = Arc::new(MemoryKeyStore::new());
    let clock = Arc::new(ManualClock::starting_now());
    let auth = authenticator_builder(store)
        .clock(clock.clone())
        .users(Arc::new(MemoryUserStore::new()))
        .tokens(tokens())
        .login_throttle(
            nexora_auth::ThrottlePolicy::default()
                .per_email(3)
                .per_client(5)
                .lockout(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let password = SecretString::from("correct horse battery staple");
    auth.register_user("bob@example.com", &password, Scopes::empty())
        .await
        .unwrap();
    let issued = auth.login("bob@example.com", &password).await.unwrap();
    let wrong = SecretString::from("wrong password!!");
    let ip: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    for variant in ["bob@example.com", "BOB@example.com", "Bob@Example.COM"] {
        assert!(matches!(
            auth.login_from(variant, &wrong, Some(ip)).await,
            Err(AuthError::InvalidLogin)
        ));
    }
    // Locked: even the right password is refused, with a Retry-After.
    let err = auth
        .login_from("bob@example.com", &password, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::RateLimited { retry_after_secs } if retry_after_secs > 0),
        "{err:?}"
    );
    // Tokens issued before keep working.
    assert!(auth.authenticate(issued.token.token.expose()).await.is_ok());
    // Unknown emails are throttled exactly alike: the throttle reveals nothing.
    for _ in 0..3 {
        assert!(matches!(
            auth.login("ghost@example.com", &wrong).await,
            Err(AuthError::InvalidLogin)
        ));
    }
    assert!(matches!(
        auth.login("ghost@example.com", &wrong).await,
        Err(AuthError::RateLimited { .. })
    ));
    // The client address has 3 failures; two more from it (other emails) lock the address.
    for i in 0..2 {
        let _ = auth
            .login_from(&format!("x{i}@example.com"), &wrong, Some(ip))
            .await;
    }
    assert!(matches!(
        auth.login_from("new@example.com", &wrong, Some(ip)).await,
        Err(AuthError::RateLimited { .. })
    ));
    // And it expires, on the injected clock.
    clock.advance(time::Duration::seconds(61));
    assert!(
        auth.login_from("bob@example.com", &password, Some(ip))
            .await
            .is_ok()
    );
}
