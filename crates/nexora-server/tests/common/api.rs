//! Talking to a started server over its HTTP API: the test user, logging in, the key
//! endpoints, and the environment a server on a given database needs.

use std::{collections::HashMap, path::Path, time::Duration};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use super::{JWT_SECRET, PASSWORD, PEPPER, Server, cli};

pub const EMAIL: &str = "faults@example.com";

pub fn secrets(database: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NEXORA_JWT_SECRET", JWT_SECRET.to_owned()),
        ("NEXORA_KEY_PEPPER", PEPPER.to_owned()),
        ("NEXORA_DATABASE_URL", database.to_owned()),
    ]
}

pub fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("nexora.db").display())
}

/// Creates the test user through the CLI and starts a server on `database`.
pub fn start(dir: &Path, database: &str, create_user: bool) -> Server {
    start_with(dir, database, create_user, &[], &[])
}

/// [`start`] with `extra` arguments to `serve` and `extra_env` beside the secrets.
pub fn start_with(
    dir: &Path,
    database: &str,
    create_user: bool,
    extra: &[&str],
    extra_env: &[(&'static str, &str)],
) -> Server {
    let mut env = secrets(database);
    env.extend(extra_env.iter().map(|(k, v)| (*k, (*v).to_owned())));
    if create_user {
        let (code, _, stderr) = cli(
            dir,
            &["user", "create", "--email", EMAIL, "--password-stdin"],
            &borrowed(&env),
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 0, "user create failed: {stderr}");
    }
    Server::start(dir, extra, &borrowed(&env))
}

pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

pub async fn login(client: &Client, base: &str) -> String {
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
pub struct Created {
    pub id: String,
    pub key: String,
    pub display: String,
}

impl Created {
    pub fn from_body(body: &Value) -> Created {
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

pub async fn create_key(client: &Client, base: &str, jwt: &str, name: &str) -> Created {
    Created::from_body(&create_key_with(client, base, jwt, json!({"name": name})).await)
}

/// Creates a key with this request body (limits, scopes, …); the 201's body.
pub async fn create_key_with(client: &Client, base: &str, jwt: &str, body: Value) -> Value {
    let response = client
        .post(url(base, "/api/users/me/api-keys"))
        .bearer_auth(jwt)
        .json(&body)
        .send()
        .await
        .expect("create request");
    assert_eq!(response.status(), StatusCode::CREATED, "create {body}");
    response.json().await.expect("create body")
}

pub async fn revoke_key(client: &Client, base: &str, jwt: &str, id: &str) -> StatusCode {
    client
        .delete(url(base, &format!("/api/users/me/api-keys/{id}")))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("revoke request")
        .status()
}

/// Rotates a key without grace (the API's only kind): the old value fails from the answer on.
pub async fn rotate_key(client: &Client, base: &str, jwt: &str, id: &str) -> Created {
    let response = client
        .post(url(base, &format!("/api/users/me/api-keys/{id}/rotate")))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("rotate request");
    assert_eq!(response.status(), StatusCode::OK, "rotate {id}");
    Created::from_body(&response.json().await.expect("rotate body"))
}

/// Runs `user <action> --email EMAIL [args…]` on `database` in `dir`, as an operator would.
pub fn user_cli(dir: &Path, database: &str, action: &str, args: &[&str]) {
    let env = secrets(database);
    let mut full = vec!["user", action, "--email", EMAIL];
    full.extend_from_slice(args);
    let (code, _, stderr) = cli(dir, &full, &borrowed(&env), "");
    assert_eq!(code, 0, "{full:?} failed: {stderr}");
}

pub async fn agents_status(client: &Client, base: &str, token: &str) -> StatusCode {
    agents(client, base, token).await.status()
}

/// `GET /api/agents` with `token`: the whole response (status and headers).
pub async fn agents(client: &Client, base: &str, token: &str) -> reqwest::Response {
    client
        .get(url(base, "/api/agents"))
        .bearer_auth(token)
        .send()
        .await
        .expect("agents request")
}

/// The caller's live keys: id → name.
pub async fn list_keys(client: &Client, base: &str, jwt: &str) -> HashMap<String, Value> {
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

pub fn url(base: &str, path: &str) -> String {
    format!("{base}{path}")
}

/// Fails the test with the lines of `logs` (a server's) that report a panic.
pub fn assert_no_panic(logs: &str) {
    assert!(
        !logs.contains("panicked"),
        "the server panicked:\n{}",
        logs.lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
