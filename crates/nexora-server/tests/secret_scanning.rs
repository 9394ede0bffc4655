//! When a key leaks, through the real server: a signed GitHub report of 1,000 live keys on
//! SQLite and on Postgres (timed: GitHub waits at most 30 s), GitHub's keys fetched from a URL
//! and cached, the notify-only policy, and revoke by possession; no key text in the logs.
//!
//! `cargo test -p nexora-server --test secret_scanning -- --nocapture` prints the time each
//! report took.

mod common;

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    PgDatabase,
    api::{self, client, login, sqlite_url},
    postgres_admin_url,
};
use futures_util::{StreamExt, stream};
use nexora_auth_testkit::github::{GitHubSigner, key_document, report};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Matches in the timed report.
const BATCH: usize = 1_000;

async fn post_report(
    client: &Client,
    base: &str,
    signer: &GitHubSigner,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = client.post(format!("{base}/api/secret-scanning/github"));
    for (name, value) in signer.headers(body.as_bytes()) {
        request = request.header(name, value);
    }
    let response = request
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("report request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn me_status(client: &Client, base: &str, key: &str) -> StatusCode {
    client
        .get(format!("{base}/api/users/me"))
        .bearer_auth(key)
        .send()
        .await
        .expect("me request")
        .status()
}

/// Creates `n` keys through the API, eight requests at a time.
async fn create_keys(client: &Client, base: &str, jwt: &str, n: usize) -> Vec<String> {
    stream::iter(0..n)
        .map(|i| async move {
            api::create_key(client, base, jwt, &format!("leak {i}"))
                .await
                .key
        })
        .buffer_unordered(8)
        .collect()
        .await
}

fn print(line: &str) {
    // Straight to stderr, so `--nocapture` shows the figure next to the test's name.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Starts a server on `database` with GitHub's key in a keys file, reports 1,000 of its live
/// keys in one signed report, and checks and times the answer.
async fn a_report_of_1000_live_keys(database: &str, dir: &std::path::Path, store: &str) {
    let github = GitHubSigner::from_seed(42);
    let keys_file = dir.join("github-keys.json");
    std::fs::write(&keys_file, key_document(&[&github])).expect("write the keys file");
    let keys_file = keys_file.display().to_string();
    let server = api::start_with(
        dir,
        database,
        true,
        &["--github-scanning-keys-file", &keys_file],
        &[],
    );
    let client = client();
    let jwt = login(&client, &server.base).await;
    let live = create_keys(&client, &server.base, &jwt, BATCH).await;
    let kept = api::create_key(&client, &server.base, &jwt, "kept")
        .await
        .key;
    let matches: Vec<(&str, &str)> = live
        .iter()
        .map(|key| (key.as_str(), "https://github.com/octo/app/blob/main/.env"))
        .collect();
    let body = report(&matches);

    let started = Instant::now();
    let (status, answer) = post_report(&client, &server.base, &github, &body).await;
    let took = started.elapsed();
    print(&format!(
        "secret scanning on {store}: a signed report of {BATCH} live keys ({} bytes) answered \
         in {:.2} s",
        body.len(),
        took.as_secs_f64()
    ));
    assert_eq!(status, StatusCode::OK, "{answer}");
    let labels = answer.as_array().expect("a list");
    assert_eq!(labels.len(), BATCH);
    assert!(
        labels.iter().all(|entry| entry["label"] == "true_positive"),
        "{answer}"
    );
    // GitHub waits 30 s; a shared 2-core machine has taken up to 12 s on Postgres.
    assert!(
        took < Duration::from_secs(20),
        "{took:?}: GitHub waits 30 s at most"
    );
    for key in [&live[0], &live[BATCH / 2], &live[BATCH - 1]] {
        assert_eq!(
            me_status(&client, &server.base, key).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        me_status(&client, &server.base, &kept).await,
        StatusCode::OK
    );

    // Revoke by possession: the same answer for the live key and for the revoked ones.
    for key in [&kept, &live[0], &"nxr_nonsense".to_owned()] {
        let response = client
            .post(format!("{}/api/keys/revoke", server.base))
            .json(&json!({ "key": key }))
            .send()
            .await
            .expect("revoke request");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(
            response.text().await.expect("a body"),
            r#"{"status":"accepted"}"#
        );
    }
    assert_eq!(
        me_status(&client, &server.base, &kept).await,
        StatusCode::UNAUTHORIZED
    );

    let logs = server.kill();
    assert!(
        logs.contains("leaked key revoked (secret scanning)"),
        "{logs}"
    );
    assert!(logs.contains("key revoked by possession"), "{logs}");
    for key in live.iter().chain([&kept]) {
        assert!(!logs.contains(key.as_str()), "a key in the logs");
        assert!(!logs.contains(&key[26..58]), "a secret in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_1000_live_keys_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    a_report_of_1000_live_keys(&sqlite_url(dir.path()), dir.path(), "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_1000_live_keys_on_postgres() {
    let Some(admin) = postgres_admin_url().await else {
        return;
    };
    let database = PgDatabase::create(&admin).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    a_report_of_1000_live_keys(&database.url, dir.path(), "Postgres").await;
}

/// A plain-HTTP server on loopback answering every request with `document`, counting them.
async fn key_server(document: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/meta/public_keys/secret_scanning",
        listener.local_addr().expect("an address")
    );
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let document = document.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{document}",
                    document.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_fetched_from_a_url_are_cached_and_notify_only_leaves_keys_working() {
    let github = GitHubSigner::from_seed(7);
    let stranger = GitHubSigner::from_seed(8);
    let (url, fetches) = key_server(key_document(&[&github])).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = api::start_with(
        dir.path(),
        &sqlite_url(dir.path()),
        true,
        &[
            "--github-scanning-keys-url",
            &url,
            "--github-scanning-policy",
            "notify",
        ],
        &[],
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "fetched at start");
    let client = client();
    let jwt = login(&client, &server.base).await;
    let key = api::create_key(&client, &server.base, &jwt, "leaked")
        .await
        .key;
    let body = report(&[(&key, "https://github.com/octo/app/blob/main/.env")]);
    for _ in 0..3 {
        let (status, answer) = post_report(&client, &server.base, &github, &body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer[0]["label"], "true_positive");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "cached");
    assert_eq!(
        me_status(&client, &server.base, &key).await,
        StatusCode::OK,
        "notify only: the key keeps working"
    );
    // Unknown identifiers: no fetch within a minute of the last one (at start), whatever
    // arrives.
    for _ in 0..5 {
        let (status, answer) = post_report(&client, &server.base, &stranger, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer,
            json!({"detail": "Invalid or missing GitHub signature"})
        );
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "at most one fetch a minute"
    );
    let logs = server.kill();
    assert!(
        logs.contains("leaked key reported (secret scanning); policy: notify only"),
        "{logs}"
    );
    assert!(!logs.contains(&key), "the key in the logs");
}
