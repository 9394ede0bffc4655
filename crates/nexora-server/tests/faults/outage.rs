//! A PostgreSQL outage under load fails closed (503 `{"detail"}`, never a 200 for a key, never
//! a 401, never a crash) and heals within 5 seconds of the database's return.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Client;
use serde_json::{Value, json};

use super::support::*;
use crate::common::private_pg::PrivatePostgres;

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
