//! Two real server instances on one Postgres database and one Redis: rate limits, credits and
//! the login throttle hold across both exactly as on one instance, and a Redis restart in the
//! middle of traffic is survived (each instance counts alone while Redis is away, then shares
//! again).
//!
//! Needs PostgreSQL and Redis (see the README); each is skipped loudly when unreachable, and
//! fails instead under `NEXORA_REQUIRE_POSTGRES=1` / `NEXORA_REQUIRE_REDIS=1` (as in CI).

mod common;

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{PgDatabase, Server, api::*, postgres_admin_url};
use nexora_auth_testkit::redis::TestRedis;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// Instances A and B on one fresh database, both sharing limits through `redis_url` under
/// `prefix`.
struct Pair {
    a: Server,
    b: Server,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    _db: PgDatabase,
}

async fn pair(redis_url: &str, prefix: &str) -> Option<Pair> {
    let admin = postgres_admin_url().await?;
    let db = PgDatabase::create(&admin).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = [
        "--limits-redis-url",
        redis_url,
        "--limits-redis-prefix",
        prefix,
    ];
    let a = start_with(dir_a.path(), &db.url, true, &args, &[]);
    let b = start_with(dir_b.path(), &db.url, false, &args, &[]);
    Some(Pair {
        a,
        b,
        _dirs: (dir_a, dir_b),
        _db: db,
    })
}

impl Pair {
    fn base(&self, i: usize) -> String {
        if i.is_multiple_of(2) {
            self.a.url("")
        } else {
            self.b.url("")
        }
    }
}

/// Creates a key with `body`; its value.
async fn create(http: &Client, base: &str, jwt: &str, body: Value) -> String {
    let created = create_key_with(http, base, jwt, body).await;
    created["key"].as_str().expect("key").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_a_minute_over_two_instances_is_ten() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let Some(pair) = pair(redis.url(), redis.prefix()).await else {
        return;
    };
    let http = client();
    let jwt = login(&http, &pair.base(0)).await;
    let key = create(
        &http,
        &pair.base(0),
        &jwt,
        json!({"name": "ten", "rate_limit": {"limit": 10, "period_secs": 60}}),
    )
    .await;
    let (mut ok, mut limited) = (0, 0);
    for i in 0..30 {
        let r = agents(&http, &pair.base(i), &key).await;
        match r.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let wait: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&wait), "Retry-After {wait}");
            }
            other => panic!("request {i}: {other}"),
        }
    }
    assert_eq!(
        (ok, limited),
        (10, 20),
        "two instances allow exactly what one would"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_stream_at_the_rate_is_never_refused_across_instances() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let Some(pair) = pair(redis.url(), redis.prefix()).await else {
        return;
    };
    let http = client();
    let jwt = login(&http, &pair.base(0)).await;
    // 10 a second: one request every 100 ms, alternating instances, for 3 seconds.
    let key = create(
        &http,
        &pair.base(0),
        &jwt,
        json!({"name": "steady", "rate_limit": {"limit": 10, "period_secs": 1}}),
    )
    .await;
    let start = tokio::time::Instant::now();
    for i in 0..30u32 {
        tokio::time::sleep_until(start + Duration::from_millis(100) * i).await;
        let r = agents(&http, &pair.base(i as usize), &key).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "request {i} of a stream at the rate"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_credits_are_fifty_successes_of_200_concurrent_requests() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let Some(pair) = pair(redis.url(), redis.prefix()).await else {
        return;
    };
    let http = client();
    let jwt = login(&http, &pair.base(0)).await;
    let key = create(
        &http,
        &pair.base(0),
        &jwt,
        json!({"name": "fifty", "credits": {"remaining": 50}}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, base, key) = (http.clone(), pair.base(i), key.clone());
        tasks.push(tokio::spawn(async move {
            agents(&http, &base, &key).await.status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(ok, 50, "never more spent than granted, none left unspent");
    let listed = list_keys(&http, &pair.base(1), &jwt).await;
    let remaining: Vec<&Value> = listed
        .values()
        .map(|k| &k["credits"]["remaining"])
        .collect();
    assert_eq!(remaining, [&json!(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_throttle_holds_across_instances() {
    let Some(redis) = TestRedis::create().await else {
        return;
    };
    let Some(pair) = pair(redis.url(), redis.prefix()).await else {
        return;
    };
    let http = client();
    let attempt = |i: usize| {
        let http = http.clone();
        let base = pair.base(i);
        async move {
            http.post(url(&base, "/api/auth/login"))
                .json(&json!({"email": EMAIL, "password": "wrong password, attempt"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // The policy: 5 failures per email. Spread over two instances, still 5.
    for i in 0..5 {
        assert_eq!(attempt(i).await, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for i in 5..8 {
        assert_eq!(
            attempt(i).await,
            StatusCode::TOO_MANY_REQUESTS,
            "attempt {i}"
        );
    }
}

/// A Redis server of this test's own on a free port, so that stopping it touches no other test.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Option<PrivateRedis> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.child = Some(redis.spawn()?);
        Some(redis)
    }

    fn spawn(&self) -> Option<Child> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(child)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.child = self.spawn();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_run_keeps_answering() {
    // Only with the shared Redis reachable (CI's requirement) is the binary known to exist.
    let Some(_shared) = TestRedis::create().await else {
        return;
    };
    let Some(mut redis) = PrivateRedis::start() else {
        panic!("redis-server could not be started (is it installed?)");
    };
    let Some(pair) = pair(&redis.url(), "nexora-test:").await else {
        return;
    };
    let http = client();
    let jwt = login(&http, &pair.base(0)).await;
    let key = create(
        &http,
        &pair.base(0),
        &jwt,
        json!({"name": "busy", "rate_limit": {"limit": 1000, "period_secs": 60}}),
    )
    .await;
    let mut statuses = Vec::new();
    for round in 0..3 {
        match round {
            1 => redis.kill(),
            2 => redis.restart(),
            _ => {}
        }
        for i in 0..20 {
            statuses.push(agents(&http, &pair.base(i), &key).await.status());
        }
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "every request answered while Redis went away and came back: {statuses:?}"
    );
    // Shared again after the restart: a fresh key's limit holds across both instances.
    let tight = create(
        &http,
        &pair.base(1),
        &jwt,
        json!({"name": "tight", "rate_limit": {"limit": 3, "period_secs": 60}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut ok = 0;
        for i in 0..6 {
            if agents(&http, &pair.base(i), &tight).await.status() == StatusCode::OK {
                ok += 1;
            }
        }
        // While an instance still counts alone, up to 3 per instance pass; shared, 3 in all.
        if ok <= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the instances never shared Redis again"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let logs = pair.a.logs() + &pair.b.logs();
    assert!(
        logs.contains("Redis is unreachable; counting in this process"),
        "the outage was noticed and fallen back from: {logs}"
    );
    assert!(
        logs.contains("Redis answers again"),
        "and recovered from: {logs}"
    );
    assert_no_panic(&logs);
}
