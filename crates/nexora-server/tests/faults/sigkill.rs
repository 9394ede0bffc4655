//! SIGKILL in the middle of concurrent key creation loses no answered key and leaves no
//! half-created one.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::*;

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
