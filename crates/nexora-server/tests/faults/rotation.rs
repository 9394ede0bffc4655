//! A key rotated 100 times under 64 concurrent users: the old key never works after the rotate
//! response, the new one always does (SQLite and Postgres).

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};

use super::support::*;
use crate::common::{PgDatabase, postgres_admin_url};

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
