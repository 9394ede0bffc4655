//! `RedisThrottle`: the same decisions as the in-process table for the same sequence, and two
//! authenticators sharing it allow exactly the policy in total. Needs Redis
//! (`NEXORA_TEST_REDIS_URL`; skipped loudly when absent unless `NEXORA_REQUIRE_REDIS=1`).

use std::{net::IpAddr, sync::Arc, time::Duration};

use nexora_auth::{
    AuthError, Authenticator, InProcessThrottle, JwtConfig, JwtKeys, MemoryKeyStore,
    MemoryUserStore, ReservationId, Scopes, SecretBytes, SecretString, Settlement, ThrottleBackend,
    ThrottleDecision, ThrottleKey, ThrottlePolicy, ThrottleSubject, TokenAuthority, UserStore,
};
use nexora_auth_redis::{Outage, RedisConfig, RedisThrottle, TimeSource};
use nexora_auth_testkit::{authenticator_builder, redis::TestRedis};
use time::OffsetDateTime;

const SECRET: [u8; 32] = [42; 32];
const PASSWORD: &str = "correct horse battery staple";

fn policy() -> ThrottlePolicy {
    ThrottlePolicy::default()
        .per_email(3)
        .per_client(5)
        .window(Duration::from_secs(60))
        .lockout(Duration::from_secs(30))
}

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

#[tokio::test]
async fn redis_decides_as_the_in_process_table_does() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let connection = RedisConfig::new(redis.url())
        .key_prefix(redis.prefix())
        .time_source(TimeSource::Caller)
        .connect()
        .expect("a valid Redis configuration");
    let key = || ThrottleKey::derive(&SECRET).expect("a long enough secret");
    let shared = RedisThrottle::new(connection, policy(), key()).on_outage(Outage::FailClosed);
    let reference = InProcessThrottle::with_key(policy(), key());
    let emails = ["a@x", "b@x", "c@x"];
    let clients: [Option<IpAddr>; 3] = [
        Some("192.0.2.1".parse().expect("an address")),
        Some("2001:db8::1".parse().expect("an address")),
        None,
    ];
    let mut steps = Steps(0x0123_4567_89ab_cdef);
    let mut now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a valid time");
    // Open reservations: (subjects, the shared backend's id).
    let mut open: Vec<(Vec<ThrottleSubject>, ReservationId)> = Vec::new();
    let (mut reserved, mut refused, mut locks) = (0, 0, 0);
    for step in 0..800 {
        now += time::Duration::milliseconds(i64::try_from(steps.next(4_000)).unwrap_or(0));
        if open.is_empty() || steps.next(3) == 0 {
            let email = emails[usize::try_from(steps.next(3)).unwrap_or(0)];
            let client = clients[usize::try_from(steps.next(3)).unwrap_or(0)];
            assert_eq!(shared.email_subject(email), reference.email_subject(email));
            let subjects = vec![shared.email_subject(email), ThrottleSubject::client(client)];
            let got = shared
                .reserve(&subjects, now)
                .await
                .expect("Redis answered");
            let want = reference.reserve(&subjects, now).await.expect("in process");
            match (got, want) {
                (ThrottleDecision::Reserved(id), ThrottleDecision::Reserved(_)) => {
                    reserved += 1;
                    open.push((subjects, id));
                }
                (got, want) => {
                    assert_eq!(got, want, "step {step}: reserve differs");
                    refused += 1;
                }
            }
        } else {
            let which = usize::try_from(steps.next(open.len() as u64)).unwrap_or(0);
            let (subjects, id) = open.swap_remove(which);
            let outcome = match steps.next(10) {
                0..=6 => Settlement::Failed,
                7 | 8 => Settlement::Succeeded,
                _ => Settlement::Released,
            };
            let got = shared
                .settle(&subjects, id, outcome, now)
                .await
                .expect("Redis answered");
            let want = reference
                .settle(&subjects, ReservationId::new(0), outcome, now)
                .await
                .expect("in process");
            assert_eq!(got, want, "step {step}: {outcome:?} differs");
            locks += usize::from(want.name().is_some());
        }
    }
    assert!(
        reserved > 100 && refused > 50 && locks > 10,
        "the sequence exercises every branch: {reserved} reserved, {refused} refused, {locks} locks"
    );
}

async fn instance(redis: &TestRedis, users: Arc<MemoryUserStore>) -> Authenticator {
    let connection = RedisConfig::new(redis.url())
        .key_prefix(redis.prefix())
        .connect()
        .expect("a valid Redis configuration");
    let throttle = RedisThrottle::new(
        connection,
        ThrottlePolicy::default().per_email(5).per_client(1_000),
        ThrottleKey::derive(&SECRET).expect("a long enough secret"),
    )
    .on_outage(Outage::FailClosed);
    authenticator_builder(Arc::new(MemoryKeyStore::new()))
        .users(users)
        .tokens(
            TokenAuthority::new(
                JwtKeys::hs256(&SecretBytes::new(vec![8; 32])).expect("a long enough secret"),
                JwtConfig::new("nexora", "nexora-api"),
            )
            .expect("a valid JWT configuration"),
        )
        .login_throttle_backend(Arc::new(throttle))
        .build()
        .expect("a valid authenticator")
}

async fn two_instances(redis: &TestRedis) -> [Authenticator; 2] {
    let users = Arc::new(MemoryUserStore::new());
    let first = instance(redis, Arc::clone(&users)).await;
    first
        .register_user(
            "alice@example.com",
            &SecretString::from(PASSWORD),
            Scopes::empty(),
        )
        .await
        .expect("register alice");
    assert!(
        users
            .find_user_by_email("alice@example.com")
            .await
            .expect("found")
            .is_some()
    );
    [first, instance(redis, users).await]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_the_throttle_allow_the_policy_once_in_total() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let instances = two_instances(&redis).await;
    let wrong = SecretString::from("wrong password");
    let (mut verified, mut limited) = (0, 0);
    for i in 0..20 {
        match instances[i % 2].login("alice@example.com", &wrong).await {
            Err(AuthError::InvalidLogin) => verified += 1,
            Err(AuthError::RateLimited { retry_after_secs }) => {
                assert!(retry_after_secs > 1, "locked: the lockout's time left");
                limited += 1;
            }
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    assert_eq!(
        (verified, limited),
        (5, 15),
        "5 failures per email across both"
    );
    // Locked on both, even with the right password.
    for auth in &instances {
        assert!(matches!(
            auth.login("alice@example.com", &SecretString::from(PASSWORD))
                .await,
            Err(AuthError::RateLimited { .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_on_two_instances_verify_at_most_the_limit() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let instances = two_instances(&redis).await;
    let attempts: Vec<_> = (0..40)
        .map(|i| {
            let auth = instances[i % 2].clone();
            tokio::spawn(async move {
                auth.login("alice@example.com", &SecretString::from("wrong"))
                    .await
            })
        })
        .collect();
    let mut verified = 0;
    for attempt in attempts {
        match attempt.await.expect("the task ran") {
            Err(AuthError::InvalidLogin) => verified += 1,
            Err(AuthError::RateLimited { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        verified, 5,
        "reservations in flight count on both instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_on_one_instance_clears_the_failures_seen_by_the_other() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let [a, b] = two_instances(&redis).await;
    let wrong = SecretString::from("wrong");
    for _ in 0..4 {
        assert!(matches!(
            a.login("alice@example.com", &wrong).await,
            Err(AuthError::InvalidLogin)
        ));
    }
    b.login("alice@example.com", &SecretString::from(PASSWORD))
        .await
        .expect("the right password, with one attempt left");
    for _ in 0..4 {
        assert!(matches!(
            a.login("alice@example.com", &wrong).await,
            Err(AuthError::InvalidLogin)
        ));
    }
    assert!(matches!(
        b.login("alice@example.com", &wrong).await,
        Err(AuthError::InvalidLogin)
    ));
    assert!(matches!(
        a.login("alice@example.com", &wrong).await,
        Err(AuthError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn an_unreachable_redis_throttles_in_the_process_or_fails_closed() {
    let connection = || {
        RedisConfig::new("redis://127.0.0.1:1")
            .connect()
            .expect("a valid Redis configuration")
    };
    let key = || ThrottleKey::derive(&SECRET).expect("a long enough secret");
    let now = OffsetDateTime::now_utc();
    let fallback = RedisThrottle::new(connection(), policy(), key());
    let subjects = [fallback.email_subject("a@x")];
    for _ in 0..3 {
        let ThrottleDecision::Reserved(id) =
            fallback.reserve(&subjects, now).await.expect("fallback")
        else {
            panic!("the fallback table has room");
        };
        fallback
            .settle(&subjects, id, Settlement::Failed, now)
            .await
            .expect("settled in the fallback table");
    }
    assert!(matches!(
        fallback.reserve(&subjects, now).await,
        Ok(ThrottleDecision::Refused { .. })
    ));
    assert_eq!(fallback.fallbacks(), 4);
    let closed = RedisThrottle::new(connection(), policy(), key()).on_outage(Outage::FailClosed);
    assert!(closed.reserve(&subjects, now).await.is_err());
}
