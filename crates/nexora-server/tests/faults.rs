//! Faults and concurrency against the real binary: real processes, real PostgreSQL and SQLite,
//! real HTTP and WebSocket clients.
//!
//! * a PostgreSQL outage under load fails closed (503 `{"detail"}`, never a 200 for a key,
//!   never a 401, never a crash) and heals within 5 seconds of the database's return;
//! * SIGKILL in the middle of concurrent key creation loses no answered key and leaves no
//!   half-created one;
//! * a key rotated 100 times under 64 concurrent users: the old key never works after the
//!   rotate response, the new one always does (SQLite and Postgres);
//! * two instances on one Postgres: a revocation through one is seen by the other at once, and
//!   so are a user's disabling, re-enabling, narrowing and deletion and a cascading revoke;
//! * 1,000 parallel creates with revocations (SQLite and Postgres), and 5,000 WebSocket
//!   upgrades with bad tokens with the server's file descriptors counted.
//!
//! Each test prints its measured figures (`FAULTS:` lines, visible with `--nocapture`).

mod common;

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    path::Path,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    JWT_SECRET, PASSWORD, PEPPER, PgDatabase, Server, cli, postgres_admin_url,
    private_pg::PrivatePostgres,
};
use futures_util::{StreamExt, stream};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite;

const EMAIL: &str = "faults@example.com";

// ----- helpers -------------------------------------------------------------------------------

/// Prints a measured figure straight to stderr, past the harness's capture of `eprintln!`, so
/// the figures land in the CI log of a passing run.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "FAULTS: {line}");
}

fn secrets(database: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NEXORA_JWT_SECRET", JWT_SECRET.to_owned()),
        ("NEXORA_KEY_PEPPER", PEPPER.to_owned()),
        ("NEXORA_DATABASE_URL", database.to_owned()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("nexora.db").display())
}

/// Creates the test user through the CLI and starts a server on `database`.
fn start(dir: &Path, database: &str, create_user: bool) -> Server {
    let env = secrets(database);
    if create_user {
        let (code, _, stderr) = cli(
            dir,
            &["user", "create", "--email", EMAIL, "--password-stdin"],
            &borrowed(&env),
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 0, "user create failed: {stderr}");
    }
    Server::start(dir, &[], &borrowed(&env))
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

async fn login(client: &Client, base: &str) -> String {
    let response = client
        .post(url(base, "/api/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .expect("login request");
    assert_eq!(response.status(), StatusCode::OK, "login");
    let body: Value = response.json().await.expect("login body");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A key as the creation (or rotation) response gave it.
#[derive(Debug, Clone)]
struct Created {
    id: String,
    key: String,
    display: String,
}

impl Created {
    fn from_body(body: &Value) -> Created {
        let field = |name: &str| {
            body[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {body}"))
                .to_owned()
        };
        Created {
            id: field("id"),
            key: field("key"),
            display: field("display"),
        }
    }
}

async fn create_key(client: &Client, base: &str, jwt: &str, name: &str) -> Created {
    let response = client
        .post(url(base, "/api/users/me/api-keys"))
        .bearer_auth(jwt)
        .json(&json!({"name": name}))
        .send()
        .await
        .expect("create request");
    assert_eq!(response.status(), StatusCode::CREATED, "create {name}");
    Created::from_body(&response.json().await.expect("create body"))
}

async fn revoke_key(client: &Client, base: &str, jwt: &str, id: &str) -> StatusCode {
    client
        .delete(url(base, &format!("/api/users/me/api-keys/{id}")))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("revoke request")
        .status()
}

async fn agents_status(client: &Client, base: &str, token: &str) -> StatusCode {
    client
        .get(url(base, "/api/agents"))
        .bearer_auth(token)
        .send()
        .await
        .expect("agents request")
        .status()
}

/// The caller's live keys: id → name.
async fn list_keys(client: &Client, base: &str, jwt: &str) -> HashMap<String, Value> {
    let response = client
        .get(url(base, "/api/users/me/api-keys"))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("list request");
    assert_eq!(response.status(), StatusCode::OK, "list keys");
    let body: Value = response.json().await.expect("list body");
    body.as_array()
        .expect("list is an array")
        .iter()
        .map(|k| (k["id"].as_str().expect("id").to_owned(), k.clone()))
        .collect()
}

fn url(base: &str, path: &str) -> String {
    format!("{base}{path}")
}

fn assert_no_panic(logs: &str) {
    assert!(
        !logs.contains("panicked"),
        "the server panicked:\n{}",
        logs.lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The first few of a list of failures, with their count: enough to debug, short enough to read.
fn first_of<T: std::fmt::Debug>(failures: &[T]) -> String {
    format!(
        "{} failures, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    )
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

// ----- 1. PostgreSQL outage under load ---------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    /// `GET /api/agents` with the API key: authenticated by the store.
    AgentsByKey,
    /// `GET /api/users/me/api-keys` with the API key (key auth, then a store read).
    ListByKey,
    /// `POST /api/users/me/api-keys` with the JWT: key management, a store write.
    CreateByJwt,
    /// `GET /readyz`.
    Readyz,
    /// `GET /api/agents` with the JWT: the live-user lookup reads the user store.
    AgentsByJwt,
}

const OPS: [Op; 5] = [
    Op::AgentsByKey,
    Op::ListByKey,
    Op::CreateByJwt,
    Op::Readyz,
    Op::AgentsByJwt,
];

#[derive(Debug)]
struct Sample {
    op: Op,
    sent: Instant,
    answered: Instant,
    /// Status, and whether the body is a JSON object with a string `detail` (errors only).
    outcome: Result<(u16, bool), String>,
}

async fn one_request(client: &Client, base: &str, op: Op, key: &str, jwt: &str) -> Sample {
    let request = match op {
        Op::AgentsByKey => client.get(url(base, "/api/agents")).bearer_auth(key),
        Op::ListByKey => client
            .get(url(base, "/api/users/me/api-keys"))
            .bearer_auth(key),
        Op::CreateByJwt => client
            .post(url(base, "/api/users/me/api-keys"))
            .bearer_auth(jwt)
            .json(&json!({"name": "load"})),
        Op::Readyz => client.get(url(base, "/readyz")),
        Op::AgentsByJwt => client.get(url(base, "/api/agents")).bearer_auth(jwt),
    };
    let sent = Instant::now();
    let outcome = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            let has_detail = serde_json::from_slice::<Value>(&body)
                .is_ok_and(|v| v.get("detail").is_some_and(Value::is_string));
            Ok((status, has_detail))
        }
        Err(e) => Err(e.to_string()),
    };
    Sample {
        op,
        sent,
        answered: Instant::now(),
        outcome,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_closed_and_recovers_within_5_seconds() {
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &pg.url(), true);
    let http = client();
    let base: Arc<str> = server.base.clone().into();
    let jwt = login(&http, &base).await;
    let key = create_key(&http, &base, &jwt, "under load").await.key;

    // Open-loop load: a request every 20 ms whatever the answers, round-robin over the
    // operations, so requests keep arriving while earlier ones wait on the database.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        let (key, jwt): (Arc<str>, Arc<str>) = (key.into(), jwt.into());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut requests = tokio::task::JoinSet::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (http, base, key, jwt) = (http.clone(), base.clone(), key.clone(), jwt.clone());
                let op = OPS[n % OPS.len()];
                n += 1;
                requests.spawn(async move { one_request(&http, &base, op, &key, &jwt).await });
            }
            let mut samples = Vec::new();
            while let Some(sample) = requests.join_next().await {
                samples.push(sample.expect("request task"));
            }
            samples
        }
    });

    // Up for 1.5 s, down for 7 s (longer than the server's 5 s wait for a pool connection, so
    // requests are answered entirely inside the outage), then up again for 7 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopping = Instant::now();
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop_immediate();
        pg
    })
    .await
    .unwrap();
    let down = Instant::now();
    let readyz_down = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move { one_request(&http, &base, Op::Readyz, "", "").await }
    });
    tokio::time::sleep(Duration::from_secs(7)).await;
    let starting = Instant::now();
    let pg = tokio::task::spawn_blocking(move || {
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    let up = Instant::now();
    tokio::time::sleep(Duration::from_secs(7)).await;
    stop.store(true, Ordering::Relaxed);
    let samples = load.await.unwrap();
    let readyz_down = readyz_down.await.unwrap();
    let readyz_up = one_request(&http, &base, Op::Readyz, "", "").await;

    let mut inside_outage: HashMap<Op, usize> = HashMap::new();
    let mut late: HashMap<Op, usize> = HashMap::new();
    let mut recovery = Duration::ZERO;
    let mut first_key_success = None::<Duration>;
    let mut failures = Vec::new();
    for s in &samples {
        let (status, has_detail) = match &s.outcome {
            Ok(answer) => *answer,
            Err(e) => {
                failures.push(format!("{:?}: transport error {e}", s.op));
                continue;
            }
        };
        // JWTs too: the live-user check reads the user store, so an outage is a 503 for them
        // as for keys (fail closed), never a 200 for a user who may be gone.
        let ok = matches!(status, 200 | 201);
        if !(ok || status == 503) {
            failures.push(format!("{:?} answered {status}", s.op));
        }
        if status == 503 && !has_detail {
            failures.push(format!("{:?}: 503 without {{\"detail\"}}", s.op));
        }
        if s.answered <= stopping && !ok {
            failures.push(format!("{:?} answered {status} before the outage", s.op));
        }
        if s.sent >= down && s.answered <= starting {
            *inside_outage.entry(s.op).or_default() += 1;
            if status != 503 {
                failures.push(format!(
                    "{:?} answered {status} while Postgres was down",
                    s.op
                ));
            }
        }
        if s.answered > up && !ok {
            recovery = recovery.max(s.answered - up);
        }
        if s.op == Op::AgentsByKey && ok && s.answered > up {
            let after = s.answered - up;
            first_key_success = Some(first_key_success.map_or(after, |f| f.min(after)));
        }
        if s.sent >= up + Duration::from_secs(5) {
            *late.entry(s.op).or_default() += 1;
            if !ok {
                failures.push(format!(
                    "{:?} answered {status} 5 s after Postgres returned",
                    s.op
                ));
            }
        }
    }
    report(&format!(
        "postgres outage: {} requests; answered entirely inside the outage: {inside_outage:?}; \
         stop took {:?}, start took {:?}; first key-authenticated 200 {first_key_success:?} \
         and last failure {recovery:?} after Postgres was back",
        samples.len(),
        down - stopping,
        up - starting,
    ));
    assert!(failures.is_empty(), "{}", first_of(&failures));
    for op in [
        Op::AgentsByKey,
        Op::ListByKey,
        Op::CreateByJwt,
        Op::AgentsByJwt,
    ] {
        assert!(
            inside_outage.get(&op).copied().unwrap_or(0) > 0,
            "no {op:?} request fell inside the outage: the test proved nothing"
        );
        assert!(
            late.get(&op).copied().unwrap_or(0) > 0,
            "no {op:?} after recovery"
        );
    }
    assert!(
        recovery < Duration::from_secs(5),
        "recovered after {recovery:?}"
    );
    assert_eq!(
        readyz_down.outcome,
        Ok((503, true)),
        "/readyz while Postgres is down"
    );
    assert_eq!(
        readyz_up.outcome,
        Ok((200, false)),
        "/readyz after recovery"
    );

    assert!(server.is_running(), "the server died during the outage");
    drop(pg);
    assert_no_panic(&server.kill());
}

// ----- 2. SIGKILL during key creation (SQLite) -----------------------------------------------------

/// What the creating clients saw: keys answered 201, names sent but never answered, and any
/// answer other than 201 before the kill.
#[derive(Default)]
struct Ledger {
    answered: Vec<(String, Created)>,
    unanswered: HashSet<String>,
    unexpected: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_during_key_creation_keeps_every_answered_key() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let server = start(dir.path(), &database, true);
    let base: Arc<str> = server.base.clone().into();
    let http = client();
    let jwt = login(&http, &base).await;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let killed = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..24 {
        let (http, base, jwt, ledger, killed) = (
            http.clone(),
            base.clone(),
            jwt.clone(),
            ledger.clone(),
            killed.clone(),
        );
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                let name = format!("w{worker}-{n}");
                ledger.lock().unwrap().unanswered.insert(name.clone());
                let response = http
                    .post(url(&base, "/api/users/me/api-keys"))
                    .bearer_auth(&jwt)
                    .json(&json!({"name": name}))
                    .send()
                    .await;
                // A response is answered only once its whole body arrived.
                let answer = match response {
                    Ok(r) => {
                        let status = r.status();
                        r.bytes().await.map(|body| (status, body))
                    }
                    Err(e) => Err(e),
                };
                let mut ledger = ledger.lock().unwrap();
                match answer {
                    Ok((StatusCode::CREATED, body)) => {
                        let body: Value = serde_json::from_slice(&body).expect("create body");
                        ledger.unanswered.remove(&name);
                        ledger.answered.push((name, Created::from_body(&body)));
                    }
                    Ok((status, _)) => {
                        ledger.unanswered.remove(&name);
                        ledger.unexpected.push(format!("{name}: {status}"));
                    }
                    Err(e) => {
                        if !killed.load(Ordering::SeqCst) {
                            ledger.unexpected.push(format!("{name}: {e}"));
                        }
                        return;
                    }
                }
            }
        }));
    }

    // Kill once a good number of keys exist, with 24 creations in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger.lock().unwrap().answered.len() < 300 {
        assert!(Instant::now() < deadline, "key creation too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, Ordering::SeqCst);
    let logs = server.kill();
    for w in workers {
        w.await.unwrap();
    }
    assert_no_panic(&logs);
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(
        ledger.unexpected.is_empty(),
        "answers other than 201 before the kill: {}",
        first_of(&ledger.unexpected)
    );

    // Restart on the same file.
    let server = start(dir.path(), &database, false);
    let base: Arc<str> = server.base.clone().into();
    let http = client();
    let failing: Vec<String> = stream::iter(&ledger.answered)
        .map(|(name, created)| {
            let (http, base) = (&http, &base);
            async move {
                let status = agents_status(http, base, &created.key).await;
                (status != StatusCode::OK).then(|| format!("{name}: {status}"))
            }
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(
        failing.is_empty(),
        "keys answered 201 before the kill no longer authenticate: {}",
        first_of(&failing)
    );

    let listed = list_keys(&http, &base, &jwt).await;
    let answered_ids: HashSet<&str> = ledger.answered.iter().map(|(_, c)| c.id.as_str()).collect();
    for (name, created) in &ledger.answered {
        let entry = listed
            .get(&created.id)
            .unwrap_or_else(|| panic!("answered key {name} is not listed after restart"));
        assert_eq!(entry["name"], name.as_str(), "name of {name}");
        assert_eq!(
            entry["display"],
            created.display.as_str(),
            "display of {name}"
        );
    }
    // Every listed key either was answered (and authenticates, above) or was in flight at the
    // kill and committed without an answer: whole, never half.
    let mut committed_unanswered = 0;
    for (id, entry) in &listed {
        if answered_ids.contains(id.as_str()) {
            continue;
        }
        let name = entry["name"].as_str().unwrap_or_default();
        assert!(
            ledger.unanswered.contains(name),
            "listed key {id} ({name}) was neither answered nor in flight"
        );
        assert!(
            entry["display"].as_str().is_some_and(|d| !d.is_empty()),
            "a key committed at the kill is incomplete: {entry}"
        );
        committed_unanswered += 1;
    }
    assert_eq!(
        listed.len(),
        ledger.answered.len() + committed_unanswered,
        "list count"
    );
    // The file itself: intact, and no row the listing does not show.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&database)
            .await
            .expect("open the SQLite file");
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(integrity, "ok");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM nexora_api_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            usize::try_from(rows).unwrap(),
            listed.len(),
            "rows in the table"
        );
    }
    report(&format!(
        "sigkill: {} keys answered 201 before SIGKILL, {} creations unanswered, of which {} \
         committed; all answered keys authenticate after restart",
        ledger.answered.len(),
        ledger.unanswered.len(),
        committed_unanswered
    ));
    assert_no_panic(&server.kill());
}

// ----- 3. rotation under 64 concurrent users -------------------------------------------------

/// 64 clients use a key (the current generation, and every third request the previous one)
/// while it is rotated 100 times.
async fn rotate_under_load(base: Arc<str>, jwt: &str, store: &str) {
    const CLIENTS: usize = 64;
    const ROTATIONS: usize = 100;
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let first = create_key(&http, &base, jwt, "rotated").await;
    let id = first.id.clone();
    // keys[g]: the key text of generation g.
    let keys = Arc::new(RwLock::new(vec![first.key]));
    // (generation used, sent, answered, status or transport error)
    let samples = Arc::new(Mutex::new(Vec::<(
        usize,
        Instant,
        Instant,
        Result<u16, String>,
    )>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, base, keys, samples, stop) = (
            http.clone(),
            base.clone(),
            keys.clone(),
            samples.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = c;
            while !stop.load(Ordering::Relaxed) {
                let (generation, key) = {
                    let keys = keys.read().unwrap();
                    let current = keys.len() - 1;
                    let g = if n % 3 == 2 && current > 0 {
                        current - 1
                    } else {
                        current
                    };
                    (g, keys[g].clone())
                };
                n += 1;
                let sent = Instant::now();
                let result = http
                    .get(url(&base, "/api/agents"))
                    .bearer_auth(&key)
                    .send()
                    .await;
                let outcome = match result {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        r.bytes().await.map(|_| status).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                samples
                    .lock()
                    .unwrap()
                    .push((generation, sent, Instant::now(), outcome));
                // Busy but not saturated: 64 clients back to back would queue every request
                // behind the others for longer than the time between rotations.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    // rotations[g]: (sent, answered) of the rotation from generation g to g + 1.
    let mut rotations = Vec::new();
    for _ in 0..ROTATIONS {
        // Longer than a request takes under this load, so many requests with the current key
        // are answered before the next rotation starts.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = Instant::now();
        let response = http
            .post(url(&base, &format!("/api/users/me/api-keys/{id}/rotate")))
            .bearer_auth(jwt)
            .send()
            .await
            .expect("rotate request");
        assert_eq!(response.status(), StatusCode::OK, "rotate");
        let rotated = Created::from_body(&response.json().await.unwrap());
        let answered = Instant::now();
        assert_eq!(rotated.id, id, "rotation keeps the id");
        rotations.push((sent, answered));
        keys.write().unwrap().push(rotated.key);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let (mut old_checked, mut new_checked, mut overlapping) = (0, 0, 0);
    let mut failures = Vec::new();
    for (generation, sent, answered, outcome) in &samples {
        let status = match outcome {
            Ok(s) => *s,
            Err(e) => {
                failures.push(format!("generation {generation}: transport error {e}"));
                continue;
            }
        };
        if !matches!(status, 200 | 401) {
            failures.push(format!("generation {generation}: {status}"));
            continue;
        }
        let next = rotations.get(*generation);
        if let Some((_, rotated_at)) = next
            && sent >= rotated_at
        {
            old_checked += 1;
            if status != 401 {
                failures.push(format!(
                    "generation {generation} answered {status} after its rotation returned"
                ));
            }
        } else if next.is_none_or(|(rotating_at, _)| answered <= rotating_at) {
            new_checked += 1;
            if status != 200 {
                failures.push(format!(
                    "generation {generation} answered {status} while it was the current key"
                ));
            }
        } else {
            overlapping += 1;
        }
    }
    let mut latencies: Vec<Duration> = samples.iter().map(|(_, s, a, _)| *a - *s).collect();
    latencies.sort();
    let rotate_max = rotations
        .iter()
        .map(|(s, a)| *a - *s)
        .max()
        .unwrap_or_default();
    report(&format!(
        "rotation on {store}: {} requests by {CLIENTS} clients over {ROTATIONS} rotations; \
         {old_checked} with a rotated-out key (all 401), {new_checked} with the current key \
         (all 200), {overlapping} overlapping a rotation; request p50 {:?} p99 {:?}, slowest \
         rotation {rotate_max:?}",
        samples.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
    ));
    assert!(failures.is_empty(), "on {store}: {}", first_of(&failures));
    assert!(old_checked >= 100, "too few old-key checks: {old_checked}");
    assert!(
        new_checked >= 2 * ROTATIONS,
        "too few current-key checks: {new_checked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_64_clients_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &sqlite_url(dir.path()), true);
    let http = client();
    let jwt = login(&http, &server.base).await;
    rotate_under_load(server.base.clone().into(), &jwt, "SQLite").await;
    assert_no_panic(&server.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_64_clients_on_postgres() {
    let Some(admin) = postgres_admin_url().await else {
        return;
    };
    let db = PgDatabase::create(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &db.url, true);
    let http = client();
    let jwt = login(&http, &server.base).await;
    rotate_under_load(server.base.clone().into(), &jwt, "Postgres").await;
    assert_no_panic(&server.kill());
}

// ----- 4. two instances on one Postgres --------------------------------------------------------

/// Two servers on one fresh Postgres database, the test user created through the first.
struct TwoInstances {
    db: PgDatabase,
    a: Server,
    b: Server,
    dir_a: tempfile::TempDir,
    _dir_b: tempfile::TempDir,
}

/// [`TwoInstances`], or `None` after the loud skip when Postgres is unreachable.
async fn two_instances() -> Option<TwoInstances> {
    let admin = postgres_admin_url().await?;
    let db = PgDatabase::create(&admin).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(dir_a.path(), &db.url, true);
    let b = start(dir_b.path(), &db.url, false);
    Some(TwoInstances {
        db,
        a,
        b,
        dir_a,
        _dir_b: dir_b,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_through_one_instance_is_seen_by_the_other_100_of_100() {
    let Some(TwoInstances {
        db: _db,
        a,
        b,
        dir_a: _dir_a,
        _dir_b,
    }) = two_instances().await
    else {
        return;
    };
    let http = client();
    let jwt = login(&http, &a.base).await;
    let mut rejected = 0;
    for round in 0..100 {
        // Alternate which instance revokes, so both directions are proved.
        let (via, other) = if round % 2 == 0 {
            (&a.base, &b.base)
        } else {
            (&b.base, &a.base)
        };
        let created = create_key(&http, via, &jwt, &format!("round {round}")).await;
        // The other instance has just accepted the key: anything it keeps about it is warm.
        assert_eq!(
            agents_status(&http, other, &created.key).await,
            StatusCode::OK
        );
        assert_eq!(
            agents_status(&http, via, &created.key).await,
            StatusCode::OK
        );
        assert_eq!(
            revoke_key(&http, via, &jwt, &created.id).await,
            StatusCode::NO_CONTENT
        );
        if agents_status(&http, other, &created.key).await == StatusCode::UNAUTHORIZED {
            rejected += 1;
        }
    }
    report(&format!(
        "two instances: a revocation through one was rejected by the other on the next request \
         {rejected} times out of 100"
    ));
    assert_eq!(rejected, 100);
    assert_no_panic(&a.kill());
    assert_no_panic(&b.kill());
}

/// Status of `GET /api/agents` with `token` on each of `bases`.
async fn agents_on(http: &Client, bases: [&str; 2], token: &str) -> [StatusCode; 2] {
    [
        agents_status(http, bases[0], token).await,
        agents_status(http, bases[1], token).await,
    ]
}

/// Two instances on one Postgres, and the admin CLI on the same database: disabling, enabling
/// and narrowing a user, and a cascading revoke through one instance, hold on both instances
/// from the next request on. The bound is zero: nothing about users or keys is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_changes_and_cascades_hold_on_both_instances_at_once() {
    let Some(TwoInstances {
        db,
        a,
        b,
        dir_a,
        _dir_b,
    }) = two_instances().await
    else {
        return;
    };
    let http = client();
    let bases = [a.base.as_str(), b.base.as_str()];
    let jwt = login(&http, &a.base).await;
    let parent = create_key(&http, &a.base, &jwt, "parent").await;
    // A key created by the parent key, through the other instance.
    let child = create_key(&http, &b.base, &parent.key, "child").await;
    let credentials = [&jwt, &parent.key, &child.key];
    let env = secrets(&db.url);
    let admin_cli = |args: &[&str]| {
        let mut full = vec!["user"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--email", EMAIL]);
        let (code, _, stderr) = cli(dir_a.path(), &full, &borrowed(&env), "");
        assert_eq!(code, 0, "{full:?} failed: {stderr}");
    };
    let ok = [StatusCode::OK; 2];
    let unauthorized = [StatusCode::UNAUTHORIZED; 2];
    let forbidden = [StatusCode::FORBIDDEN; 2];
    for token in credentials {
        assert_eq!(agents_on(&http, bases, token).await, ok);
    }

    admin_cli(&["disable"]);
    for token in credentials {
        assert_eq!(
            agents_on(&http, bases, token).await,
            unauthorized,
            "a disabled user's credential still works on an instance"
        );
    }
    admin_cli(&["enable"]);
    for token in credentials {
        assert_eq!(agents_on(&http, bases, token).await, ok, "enabled again");
    }

    admin_cli(&["set-scopes", "--scopes", "keys:manage"]);
    for token in credentials {
        assert_eq!(
            agents_on(&http, bases, token).await,
            forbidden,
            "a narrowed user's credential keeps the scope on an instance"
        );
    }
    admin_cli(&["set-scopes", "--scopes", "agents:read,keys:manage"]);

    let response = http
        .delete(url(
            &a.base,
            &format!("/api/users/me/api-keys/{}?cascade=true", parent.id),
        ))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("cascading revoke");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for token in [&parent.key, &child.key] {
        assert_eq!(
            agents_on(&http, bases, token).await,
            unauthorized,
            "a cascaded key still works on an instance"
        );
    }
    assert_eq!(agents_on(&http, bases, &jwt).await, ok);

    admin_cli(&["delete"]);
    assert_eq!(
        agents_on(&http, bases, &jwt).await,
        unauthorized,
        "deleted user"
    );
    report("two instances: disable, enable, set-scopes, delete and a cascade held on both at once");
    assert_no_panic(&a.kill());
    assert_no_panic(&b.kill());
}

/// The login throttle lives in each process: two instances on one database allow twice the
/// policy's verifications per email and window, each instance exactly its own five. This is
/// the stated bound (N instances: N × the policy), not a wish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_throttle_bound_is_per_instance() {
    let Some(TwoInstances {
        db: _db,
        a,
        b,
        dir_a: _dir_a,
        _dir_b,
    }) = two_instances().await
    else {
        return;
    };
    let http = client();
    let mut unauthorized = [0; 2];
    for round in 0..7 {
        for (i, base) in [&a.base, &b.base].into_iter().enumerate() {
            let status = http
                .post(url(base, "/api/auth/login"))
                .json(&json!({"email": EMAIL, "password": format!("wrong guess {round}")}))
                .send()
                .await
                .expect("login request")
                .status();
            match status {
                StatusCode::UNAUTHORIZED => unauthorized[i] += 1,
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("a wrong password answered {other}"),
            }
        }
    }
    report(&format!(
        "two instances: wrong-password verifications for one email per instance {unauthorized:?} \
         (policy 5 each)"
    ));
    assert_eq!(unauthorized, [5, 5]);
    assert_no_panic(&a.kill());
    assert_no_panic(&b.kill());
}

// ----- 5. create/revoke storm; bad WebSocket upgrades --------------------------------------------

/// 1,000 keys created in parallel, each used once and every other one then revoked (1,500
/// create/revoke operations, 32 at a time): ids unique, every revocation holds, every other
/// key works.
async fn create_revoke_storm(base: &str, jwt: &str, store: &str) {
    let http = client();
    let started = Instant::now();
    let results: Vec<(usize, Created)> = stream::iter(0..1000)
        .map(|i| {
            let http = &http;
            async move {
                let created = create_key(http, base, jwt, &format!("storm {i}")).await;
                // Used once before anything else, so whatever the server may keep about a key
                // it has seen is in place when the revocation comes.
                assert_eq!(
                    agents_status(http, base, &created.key).await,
                    StatusCode::OK,
                    "fresh key storm {i}"
                );
                if i % 2 == 0 {
                    assert_eq!(
                        revoke_key(http, base, jwt, &created.id).await,
                        StatusCode::NO_CONTENT,
                        "revoke storm {i}"
                    );
                }
                (i, created)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let storm = started.elapsed();
    let ids: HashSet<&str> = results.iter().map(|(_, c)| c.id.as_str()).collect();
    let keys: HashSet<&str> = results.iter().map(|(_, c)| c.key.as_str()).collect();
    assert_eq!(ids.len(), 1000, "duplicate key ids on {store}");
    assert_eq!(keys.len(), 1000, "duplicate keys on {store}");

    let wrong: Vec<String> = stream::iter(&results)
        .map(|(i, created)| {
            let http = &http;
            async move {
                let expected = if i % 2 == 0 {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                };
                let status = agents_status(http, base, &created.key).await;
                (status != expected).then(|| format!("storm {i}: {status}, expected {expected}"))
            }
        })
        .buffer_unordered(32)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(wrong.is_empty(), "on {store}: {}", first_of(&wrong));
    let listed = list_keys(&http, base, jwt).await;
    let live: HashSet<&str> = results
        .iter()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, c)| c.id.as_str())
        .collect();
    let listed_ids: HashSet<&str> = listed.keys().map(String::as_str).collect();
    assert_eq!(
        listed_ids, live,
        "listed keys on {store}: exactly the unrevoked ones"
    );
    report(&format!(
        "storm on {store}: 1,000 creates + 500 revokes in {storm:?}; 1,000 unique ids; \
         500 revoked keys 401, 500 live keys 200"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_create_and_revoke_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &sqlite_url(dir.path()), true);
    let jwt = login(&client(), &server.base).await;
    create_revoke_storm(&server.base, &jwt, "SQLite").await;
    assert_no_panic(&server.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_create_and_revoke_on_postgres() {
    let Some(admin) = postgres_admin_url().await else {
        return;
    };
    let db = PgDatabase::create(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &db.url, true);
    let jwt = login(&client(), &server.base).await;
    create_revoke_storm(&server.base, &jwt, "Postgres").await;
    assert_no_panic(&server.kill());
}

/// How one bad upgrade attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Upgrade {
    /// Refused with this status.
    Refused(u16),
    /// 101: the upgrade was accepted.
    Switched,
    /// The client gave up on purpose (half a request, or no wait for the answer).
    Abandoned,
    /// A transport error.
    Error(String),
}

async fn bad_upgrade(host: &str, token: Option<&str>, style: usize) -> Upgrade {
    let path = match token {
        Some(t) => format!("/api/ws/chat-1?token={t}"),
        None => "/api/ws/chat-1".to_owned(),
    };
    if style == 0 {
        return match tokio_tungstenite::connect_async(format!("ws://{host}{path}")).await {
            Ok(_) => Upgrade::Switched,
            Err(tungstenite::Error::Http(response)) => Upgrade::Refused(response.status().as_u16()),
            Err(e) => Upgrade::Error(e.to_string()),
        };
    }
    // By hand: a whole request whose answer is read (style 1) or dropped unread (style 2), or
    // half a request and a hang-up (style 3).
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let mut stream = match tokio::net::TcpStream::connect(host).await {
        Ok(s) => s,
        Err(e) => return Upgrade::Error(e.to_string()),
    };
    let bytes = if style == 3 {
        &request.as_bytes()[..request.len() / 2]
    } else {
        request.as_bytes()
    };
    if let Err(e) = stream.write_all(bytes).await {
        return Upgrade::Error(e.to_string());
    }
    if style != 1 {
        return Upgrade::Abandoned;
    }
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        use tokio::io::AsyncReadExt;
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Upgrade::Error(e.to_string()),
        }
    }
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(101) => Upgrade::Switched,
        Some(s) => Upgrade::Refused(s),
        None => Upgrade::Error(format!("no status line in {head:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_websocket_upgrades_never_switch_and_fds_stay_bounded() {
    const ATTEMPTS: usize = 5000;
    const FD_SLACK: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &sqlite_url(dir.path()), true);
    let pid = server.pid();
    let base: Arc<str> = server.base.clone().into();
    let host = base.trim_start_matches("http://").to_owned();

    // Bad tokens of every kind: unparseable, malformed keys (no store query), a revoked key and
    // a rotated-out key (store queries), a JWT with a flipped signature byte, none at all.
    let (good_key, bad_tokens) = {
        let http = client();
        let jwt = login(&http, &base).await;
        let revoked = create_key(&http, &base, &jwt, "revoked").await;
        assert_eq!(
            revoke_key(&http, &base, &jwt, &revoked.id).await,
            StatusCode::NO_CONTENT
        );
        let rotated = create_key(&http, &base, &jwt, "rotated").await;
        let response = http
            .post(url(
                &base,
                &format!("/api/users/me/api-keys/{}/rotate", rotated.id),
            ))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let good_key = Created::from_body(&response.json().await.unwrap()).key;
        let mut forged = jwt.clone().into_bytes();
        let at = forged.len() - 10;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let tokens: Vec<Option<String>> = vec![
            None,
            Some(String::new()),
            Some("not-a-token".to_owned()),
            Some("nxr_".to_owned()),
            Some(format!("nxr_{}", "x".repeat(40))),
            Some(revoked.key),
            Some(rotated.key),
            Some(forged),
            Some("%00%FF".to_owned()),
        ];
        // Warm up: enough concurrent store lookups to open the pool's connections, so they do
        // not count as growth below.
        let warm: Vec<StatusCode> = stream::iter(0..256)
            .map(|_| agents_status(&http, &base, tokens[5].as_deref().unwrap_or_default()))
            .buffer_unordered(64)
            .collect()
            .await;
        assert!(warm.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
        (good_key, tokens)
    };
    // Let the warm-up's connections close before counting.
    let before = settle_fds(pid, usize::MAX, Duration::from_secs(2)).await;

    let peak = Arc::new(AtomicUsize::new(before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (peak, sampling) = (peak.clone(), sampling.clone());
        async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(open_fds(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    let started = Instant::now();
    let outcomes: Vec<Upgrade> = stream::iter(0..ATTEMPTS)
        .map(|i| {
            let token = bad_tokens[i % bad_tokens.len()].as_deref();
            let host = host.as_str();
            // Three in four through a WebSocket client, the rest by hand.
            let style = if i % 4 == 3 { 1 + (i / 4) % 3 } else { 0 };
            async move { bad_upgrade(host, token, style).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let after = settle_fds(pid, before + FD_SLACK, Duration::from_secs(5)).await;

    let mut tally: HashMap<Upgrade, usize> = HashMap::new();
    for o in outcomes {
        *tally.entry(o).or_default() += 1;
    }
    report(&format!(
        "websocket: {ATTEMPTS} bad upgrades in {elapsed:?}: {tally:?}; server fds before {before}, \
         peak {}, after {after}",
        peak.load(Ordering::Relaxed)
    ));
    assert!(
        !tally.contains_key(&Upgrade::Switched),
        "a bad token was upgraded: {tally:?}"
    );
    let refused_401 = tally.get(&Upgrade::Refused(401)).copied().unwrap_or(0);
    let abandoned = tally.get(&Upgrade::Abandoned).copied().unwrap_or(0);
    assert_eq!(
        refused_401 + abandoned,
        ATTEMPTS,
        "every answered bad upgrade is a 401: {tally:?}"
    );
    assert!(
        after <= before + FD_SLACK,
        "file descriptors grew from {before} to {after}"
    );

    // The server still upgrades a good token: the refusals above were not an outage.
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{host}/api/ws/chat-1?token={good_key}"))
            .await
            .expect("a good key upgrades");
    assert_eq!(response.status().as_u16(), 101);
    {
        use futures_util::SinkExt;
        socket
            .send(tungstenite::Message::text("still here"))
            .await
            .unwrap();
        let echo = socket.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), "still here");
        let _ = socket.close(None).await;
    }
    assert_no_panic(&server.kill());
}

/// Waits (up to `patience`) until the server holds at most `limit` descriptors and the count
/// has stopped moving; returns the last count.
async fn settle_fds(pid: u32, limit: usize, patience: Duration) -> usize {
    let deadline = Instant::now() + patience;
    let mut last = open_fds(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = open_fds(pid);
        if (now <= limit && now == last) || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}
