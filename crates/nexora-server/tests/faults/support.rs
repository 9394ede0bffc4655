//! What every scenario uses: starting the server, logging in, the key endpoints, and the
//! checks run on what the server left behind (its logs, its file descriptors).

use std::{collections::HashMap, io::Write, path::Path, time::Duration};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::common::{JWT_SECRET, PASSWORD, PEPPER, Server, cli};

pub(super) const EMAIL: &str = "faults@example.com";

/// Prints a measured figure straight to stderr, past the harness's capture of `eprintln!`, so
/// the figures land in the CI log of a passing run.
pub(super) fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "FAULTS: {line}");
}

pub(super) fn secrets(database: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NEXORA_JWT_SECRET", JWT_SECRET.to_owned()),
        ("NEXORA_KEY_PEPPER", PEPPER.to_owned()),
        ("NEXORA_DATABASE_URL", database.to_owned()),
    ]
}

pub(super) fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub(super) fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("nexora.db").display())
}

/// Creates the test user through the CLI and starts a server on `database`.
pub(super) fn start(dir: &Path, database: &str, create_user: bool) -> Server {
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

pub(super) fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

pub(super) async fn login(client: &Client, base: &str) -> String {
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
pub(super) struct Created {
    pub(super) id: String,
    pub(super) key: String,
    pub(super) display: String,
}

impl Created {
    pub(super) fn from_body(body: &Value) -> Created {
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

pub(super) async fn create_key(client: &Client, base: &str, jwt: &str, name: &str) -> Created {
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

pub(super) async fn revoke_key(client: &Client, base: &str, jwt: &str, id: &str) -> StatusCode {
    client
        .delete(url(base, &format!("/api/users/me/api-keys/{id}")))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("revoke request")
        .status()
}

pub(super) async fn agents_status(client: &Client, base: &str, token: &str) -> StatusCode {
    client
        .get(url(base, "/api/agents"))
        .bearer_auth(token)
        .send()
        .await
        .expect("agents request")
        .status()
}

/// The caller's live keys: id → name.
pub(super) async fn list_keys(client: &Client, base: &str, jwt: &str) -> HashMap<String, Value> {
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

pub(super) fn url(base: &str, path: &str) -> String {
    format!("{base}{path}")
}

pub(super) fn assert_no_panic(logs: &str) {
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
pub(super) fn first_of<T: std::fmt::Debug>(failures: &[T]) -> String {
    format!(
        "{} failures, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    )
}

pub(super) fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}
