//! `RedisLimits` on Redis's own clock, across two connections (two instances), and while Redis
//! is unreachable. Needs Redis (`NEXORA_TEST_REDIS_URL`; skipped loudly when absent unless
//! `NEXORA_REQUIRE_REDIS=1`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nexora_auth::{
    KeyId, LimitBackend, OwnerId, RateLimit, StoreError,
    limits::{LimitSubject, RateCheck},
};
use nexora_auth_redis::{Outage, RedisConfig, RedisConnection, RedisLimits};
use nexora_auth_testkit::redis::TestRedis;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};

fn connect(url: &str, prefix: &str) -> RedisConnection {
    RedisConfig::new(url)
        .key_prefix(prefix)
        .connect()
        .expect("a valid Redis configuration")
}

fn key_limit(limit: u32, period_secs: u32) -> RateCheck {
    RateCheck {
        subject: LimitSubject::Key(KeyId::new_random()),
        rate: RateLimit::new(limit, period_secs).expect("a rate in range"),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_allow_exactly_the_limit_of_many_concurrent_requests() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let instances = [
        Arc::new(
            RedisLimits::new(connect(redis.url(), redis.prefix())).on_outage(Outage::FailClosed),
        ),
        Arc::new(
            RedisLimits::new(connect(redis.url(), redis.prefix())).on_outage(Outage::FailClosed),
        ),
    ];
    let key = key_limit(10, 60);
    let owner = RateCheck {
        subject: LimitSubject::Owner(OwnerId::new("owner-of-the-key")),
        rate: RateLimit::new(1_000, 60).expect("a rate in range"),
    };
    let checks = Arc::new(vec![key, owner]);
    let requests: Vec<_> = (0..200)
        .map(|i| {
            let backend = Arc::clone(&instances[i % 2]);
            let checks = Arc::clone(&checks);
            tokio::spawn(async move { backend.check(&checks, 1, now()).await })
        })
        .collect();
    let mut allowed = 0;
    for request in requests {
        let outcome = request
            .await
            .expect("the task ran")
            .expect("Redis answered");
        if outcome.allowed {
            allowed += 1;
        } else {
            assert!(outcome.retry_after_secs >= 1);
        }
    }
    assert_eq!(allowed, 10, "exactly the key's limit across both instances");
    // All or nothing: the owner was charged for the 10 that passed, not for the 190 refused.
    let owner_only = [checks[1].clone()];
    let status = instances[0]
        .check(&owner_only, 0, now())
        .await
        .expect("Redis answered");
    assert!(
        (989..=990).contains(&status.statuses[0].remaining),
        "{status:?}"
    );
    assert_eq!(instances[0].fallbacks() + instances[1].fallbacks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_stream_at_the_rate_on_redis_time_is_never_refused() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let backend =
        RedisLimits::new(connect(redis.url(), redis.prefix())).on_outage(Outage::FailClosed);
    // 5 per second: a burst of 4, then one every 200 ms for 4 seconds keeps the bucket within
    // one request of full the whole time. A window that "sticks" refuses such a stream.
    let limited = [key_limit(5, 1)];
    for _ in 0..4 {
        assert!(
            backend
                .check(&limited, 1, now())
                .await
                .expect("Redis answered")
                .allowed
        );
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    for i in 0..20 {
        ticker.tick().await;
        let outcome = backend
            .check(&limited, 1, now())
            .await
            .expect("Redis answered");
        assert!(
            outcome.allowed,
            "request {i} of the stream refused: {outcome:?}"
        );
    }
    // A burst on top of the stream is refused.
    let burst: Vec<bool> = futures_allowed(&backend, &limited, 3).await;
    assert!(burst.iter().filter(|a| !**a).count() >= 1, "{burst:?}");
}

async fn futures_allowed(backend: &RedisLimits, checks: &[RateCheck], n: usize) -> Vec<bool> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            backend
                .check(checks, 1, now())
                .await
                .expect("Redis answered")
                .allowed,
        );
    }
    out
}

#[tokio::test]
async fn the_state_expires_once_drained() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let backend = RedisLimits::new(connect(redis.url(), redis.prefix()));
    let limited = [key_limit(3, 60)];
    assert!(
        backend
            .check(&limited, 1, now())
            .await
            .expect("answered")
            .allowed
    );
    let client = redis::Client::open(redis.url()).expect("a valid URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let key = format!("{}{}", redis.prefix(), limited[0].subject.key_text());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    // One request of a 3-per-minute limit drains in 20 s.
    assert!((19_000..=20_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn an_unreachable_redis_falls_back_to_the_process_quickly() {
    // Nothing listens on port 1.
    let connection = RedisConfig::new("redis://127.0.0.1:1")
        .connect()
        .expect("a valid Redis configuration");
    let backend = RedisLimits::new(connection);
    let limited = [key_limit(2, 60)];
    let started = Instant::now();
    let outcomes: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                backend
                    .check(&limited, 1, now())
                    .await
                    .expect("the fallback answers")
                    .allowed,
            );
        }
        v
    };
    assert_eq!(
        outcomes,
        [true, true, false],
        "the in-process table enforces the limit"
    );
    assert!(backend.is_degraded());
    assert_eq!(backend.fallbacks(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn failing_closed_answers_unavailable() {
    let connection = RedisConfig::new("redis://127.0.0.1:1")
        .connect()
        .expect("a valid Redis configuration");
    let backend = RedisLimits::new(connection).on_outage(Outage::FailClosed);
    let limited = [key_limit(2, 60)];
    for _ in 0..3 {
        let answer = backend.check(&limited, 1, now()).await;
        assert!(
            matches!(answer, Err(StoreError::Unavailable { .. })),
            "{answer:?}"
        );
    }
    assert_eq!(backend.fallbacks(), 3);
}

/// A TCP forwarder to Redis that can be cut and restored, to take Redis away from one
/// instance without stopping the shared server.
struct Cuttable {
    port: u16,
    up: Arc<AtomicBool>,
}

impl Cuttable {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let up = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&up);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let flag = Arc::clone(&flag);
                let target = target.clone();
                tokio::spawn(async move {
                    if !flag.load(Ordering::SeqCst) {
                        return; // Dropped: the connection closes at once.
                    }
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let watch = |flag: Arc<AtomicBool>| async move {
                        while flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        () = watch(Arc::clone(&flag)) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_falls_back_and_redis_is_used_again_when_it_answers() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let url = url::Url::parse(redis.url()).expect("a valid URL");
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(6379)
    );
    let proxy = Cuttable::start(target).await;
    let through_proxy = RedisConfig::new(format!("redis://127.0.0.1:{}", proxy.port))
        .key_prefix(redis.prefix())
        .retry_interval(Duration::from_millis(200))
        .connect()
        .expect("a valid Redis configuration");
    let cut_off = RedisLimits::new(through_proxy);
    let direct = RedisLimits::new(connect(redis.url(), redis.prefix()));
    let limited = [key_limit(4, 60)];
    // Two through the proxy, into Redis.
    for _ in 0..2 {
        assert!(
            cut_off
                .check(&limited, 1, now())
                .await
                .expect("answered")
                .allowed
        );
    }
    assert_eq!(cut_off.fallbacks(), 0);
    proxy.set_up(false);
    // The proxy drops the connection within its 10 ms watch.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Cut off: the instance counts alone (a fresh table: 4 pass), without waiting on Redis.
    let started = Instant::now();
    let mut alone = 0;
    for _ in 0..6 {
        alone += usize::from(
            cut_off
                .check(&limited, 1, now())
                .await
                .expect("fallback")
                .allowed,
        );
    }
    assert_eq!(alone, 4);
    assert!(cut_off.is_degraded());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Redis itself saw only the first two.
    assert!(
        direct
            .check(&limited, 1, now())
            .await
            .expect("answered")
            .allowed
    );
    proxy.set_up(true);
    // Within a few retry intervals the instance is back on the shared count: 3 of 4 spent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cut_off.is_degraded() {
        assert!(Instant::now() < deadline, "no recovery within 10 s");
        let _ = cut_off.check(&[key_limit(1, 1)], 1, now()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cut_off
            .check(&limited, 1, now())
            .await
            .expect("answered")
            .allowed
    );
    assert!(
        !cut_off
            .check(&limited, 1, now())
            .await
            .expect("answered")
            .allowed
    );
    assert!(
        !direct
            .check(&limited, 1, now())
            .await
            .expect("answered")
            .allowed
    );
}
