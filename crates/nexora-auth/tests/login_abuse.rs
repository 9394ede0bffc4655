//! Password login under abuse: concurrent guesses, hostile emails and passwords, and time
//! taken from the injected clock (no test here sleeps).

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use nexora_auth::{
    AuthError, Authenticator, Field, InvalidInput, JwtConfig, JwtKeys, MemoryKeyStore,
    MemoryUserStore, PasswordPolicy, Scopes, SecretBytes, SecretString, ThrottlePolicy,
    TokenAuthority,
};
use nexora_auth_testkit::{
    ManualClock, authenticator_builder,
    failure::{FlakyStore, StoreMethod},
    fast_passwords,
};

struct Fixture {
    auth: Authenticator,
    users: Arc<FlakyStore<MemoryUserStore>>,
    clock: Arc<ManualClock>,
}

const PASSWORD: &str = "correct horse battery staple";

async fn fixture(passwords: PasswordPolicy, throttle: ThrottlePolicy) -> Fixture {
    let users = Arc::new(FlakyStore::new(MemoryUserStore::new()));
    let clock = Arc::new(ManualClock::starting_now());
    let auth = authenticator_builder(Arc::new(MemoryKeyStore::new()))
        .users(users.clone())
        .tokens(
            TokenAuthority::new(
                JwtKeys::hs256(&SecretBytes::new(vec![8; 32])).expect("a long enough secret"),
                JwtConfig::new("nexora", "nexora-api"),
            )
            .expect("a valid JWT configuration"),
        )
        .password_policy(passwords)
        .login_throttle(throttle)
        .clock(clock.clone())
        .build()
        .expect("a valid authenticator");
    auth.register_user(
        "alice@example.com",
        &SecretString::from(PASSWORD),
        Scopes::empty(),
    )
    .await
    .expect("register alice");
    Fixture { auth, users, clock }
}

fn fast() -> PasswordPolicy {
    fast_passwords().max_queued_hashes(1_000)
}

/// Slow enough (several milliseconds a verification) that many logins are in flight at once.
fn slow() -> PasswordPolicy {
    PasswordPolicy::default()
        .argon2_params(8 * 1024, 1, 1)
        .max_concurrent_hashes(2)
        .max_queued_hashes(1_000)
}

fn ip(i: u32) -> Option<IpAddr> {
    Some(IpAddr::from(std::net::Ipv4Addr::from(0xC633_6400 + i)))
}

/// However many guesses arrive at once, at most the policy's number are verified per email;
/// the rest are refused with a Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_for_one_email_verify_at_most_the_limit() {
    let f = fixture(slow(), ThrottlePolicy::default()).await;
    let wrong = SecretString::from("wrong password!!");
    let guesses: Vec<_> = (0..200)
        .map(|i| {
            let auth = f.auth.clone();
            let wrong = wrong.clone();
            tokio::spawn(async move {
                auth.login_from("alice@example.com", &wrong, ip(i))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    let mut invalid = 0;
    let mut limited = 0;
    for guess in guesses {
        match guess.await.expect("the task runs") {
            Err(AuthError::InvalidLogin) => invalid += 1,
            Err(AuthError::RateLimited { retry_after_secs }) if retry_after_secs > 0 => {
                limited += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((invalid, limited), (5, 195));
}

/// The same for one client address spraying many emails: at most `per_client` verifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_from_one_client_verify_at_most_the_limit() {
    let f = fixture(slow(), ThrottlePolicy::default()).await;
    let wrong = SecretString::from("wrong password!!");
    let guesses: Vec<_> = (0..200)
        .map(|i| {
            let auth = f.auth.clone();
            let wrong = wrong.clone();
            tokio::spawn(async move {
                auth.login_from(&format!("user{i}@example.com"), &wrong, ip(1))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    let mut invalid = 0;
    for guess in guesses {
        match guess.await.expect("the task runs") {
            Err(AuthError::InvalidLogin) => invalid += 1,
            Err(AuthError::RateLimited { .. }) => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(invalid, 20);
}

/// Lockout and its end follow the injected clock.
#[tokio::test]
async fn the_lockout_ends_on_the_injected_clock() {
    let f = fixture(
        fast(),
        ThrottlePolicy::default().lockout(Duration::from_secs(60)),
    )
    .await;
    let wrong = SecretString::from("wrong password!!");
    for _ in 0..5 {
        assert!(matches!(
            f.auth.login("alice@example.com", &wrong).await,
            Err(AuthError::InvalidLogin)
        ));
    }
    let password = SecretString::from(PASSWORD);
    match f.auth.login("alice@example.com", &password).await {
        Err(AuthError::RateLimited { retry_after_secs }) => {
            assert!((1..=60).contains(&retry_after_secs), "{retry_after_secs}");
        }
        other => panic!("want 429, got {other:?}"),
    }
    f.clock.advance(time::Duration::seconds(61));
    assert!(f.auth.login("alice@example.com", &password).await.is_ok());
}

/// An email no store can hold (over-long, control characters) is a 422 at once: it reaches
/// neither the throttle nor the store.
#[tokio::test]
async fn unstorable_emails_are_422_before_the_throttle_and_the_store() {
    let f = fixture(fast(), ThrottlePolicy::default().per_client(2)).await;
    let wrong = SecretString::from("wrong password!!");
    let long = format!("{}@example.com", "a".repeat(60 * 1024));
    let at_limit = format!(
        "{}@example.com",
        "a".repeat(nexora_auth::MAX_EMAIL_LEN - 12)
    );
    for email in [
        long.as_str(),
        &format!("{at_limit}x"),
        "nul\0@example.com",
        "line\nfeed@example.com",
        "del\u{7f}@example.com",
        "c1\u{85}@example.com",
    ] {
        let refused = f
            .auth
            .login_from(email, &wrong, ip(9))
            .await
            .expect_err("refused");
        let shown: String = email.chars().take(40).collect();
        assert!(
            matches!(
                refused,
                AuthError::InvalidInput(InvalidInput {
                    field: Field::Email,
                    ..
                })
            ),
            "{shown:?}…: {refused:?}"
        );
    }
    assert_eq!(
        f.users.calls().of(StoreMethod::FindUserByEmail),
        0,
        "no store lookup"
    );
    // None of them counted against the client (whose limit is 2).
    assert!(matches!(
        f.auth.login_from(&at_limit, &wrong, ip(9)).await,
        Err(AuthError::InvalidLogin)
    ));
    assert!(
        f.auth
            .login_from("alice@example.com", &SecretString::from(PASSWORD), ip(9))
            .await
            .is_ok()
    );
}

/// A password over the length limit costs what a wrong password costs — a counted failure
/// after a full argon2 verification — and gets the same answer.
#[tokio::test]
async fn an_over_long_password_costs_a_verification_and_a_failure() {
    // Parameters heavy enough that one verification takes many milliseconds.
    let f = fixture(
        PasswordPolicy::default().argon2_params(32 * 1024, 3, 1),
        ThrottlePolicy::default().per_email(1_000),
    )
    .await;
    let wrong = SecretString::from("wrong password!!");
    let huge = SecretString::new("p".repeat(2_000));
    let fastest = |password: &SecretString| {
        let auth = f.auth.clone();
        let password = password.clone();
        async move {
            let mut best = Duration::MAX;
            let mut answers = Vec::new();
            for _ in 0..3 {
                let started = Instant::now();
                let answer = auth.login("alice@example.com", &password).await;
                best = best.min(started.elapsed());
                answers.push(format!("{:?}", answer.expect_err("refused")));
            }
            (best, answers)
        }
    };
    let (wrong_time, wrong_answers) = fastest(&wrong).await;
    let (huge_time, huge_answers) = fastest(&huge).await;
    assert_eq!(wrong_answers, huge_answers, "the same answer");
    assert!(
        huge_time * 2 >= wrong_time,
        "an over-long password took {huge_time:?}, a wrong one {wrong_time:?}"
    );

    // And it counts: five of them lock the email.
    let f = fixture(fast(), ThrottlePolicy::default()).await;
    for _ in 0..5 {
        assert!(matches!(
            f.auth.login("alice@example.com", &huge).await,
            Err(AuthError::InvalidLogin)
        ));
    }
    assert!(matches!(
        f.auth
            .login("alice@example.com", &SecretString::from(PASSWORD))
            .await,
        Err(AuthError::RateLimited { .. })
    ));
}
