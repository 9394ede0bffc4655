//! End to end: the real binary over real HTTP and WebSocket, on SQLite and on Postgres.

mod common;

use common::{
    JWT_SECRET, PASSWORD, PEPPER, PgDatabase, Server, cli, postgres_admin_url,
    propagation::until_status,
};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("NEXORA_JWT_SECRET", JWT_SECRET),
        ("NEXORA_KEY_PEPPER", PEPPER),
    ]
}

async fn login(client: &Client, server: &Server, email: &str) -> String {
    let response = client
        .post(server.url("/api/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get_status(client: &Client, url: &str, token: &str) -> StatusCode {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn ws_echo(server: &Server, token: &str) -> Result<String, u16> {
    match tokio_tungstenite::connect_async(server.ws_url(&format!("/api/ws/chat-1?token={token}")))
        .await
    {
        Ok((mut socket, response)) => {
            assert_eq!(response.status().as_u16(), 101);
            socket.send(Message::text("hello nexora")).await.unwrap();
            let reply = socket.next().await.unwrap().unwrap();
            let _ = socket.close(None).await;
            Ok(reply.into_text().unwrap().to_string())
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("websocket error: {e}"),
    }
}

/// The README quickstart, step by step, against one server (`dir` holds its data).
async fn quickstart(server: &Server, dir: &std::path::Path, database: Option<&str>) {
    let mut env = secrets();
    let database_owned;
    if let Some(db) = database {
        database_owned = db.to_owned();
        env.push(("NEXORA_DATABASE_URL", &database_owned));
    }
    let email = "alice@example.com";
    let (code, stdout, stderr) = cli(
        dir,
        &["user", "create", "--email", email, "--password-stdin"],
        &env,
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 0, "user create failed: {stderr}");
    let user_id = stdout.trim().to_owned();
    assert!(!user_id.is_empty());

    let client = Client::new();
    let jwt = login(&client, server, "Alice@Example.com").await;
    let me: Value = client
        .get(server.url("/api/users/me"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me, json!({"id": user_id, "email": email}));

    // Create a key: shown once.
    let response = client
        .post(server.url("/api/users/me/api-keys"))
        .bearer_auth(&jwt)
        .json(&json!({"name": "CI pipeline"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("nxr_"));
    assert_eq!(created["name"], "CI pipeline");
    assert!(created["last_used_at"].is_null());

    // Use it, as the product documents.
    let agents = client
        .get(server.url("/api/agents"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(agents.status(), StatusCode::OK);
    assert!(
        agents
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );

    // List with the key itself (it has keys:manage): never the key or its secret.
    let listed = client
        .get(server.url("/api/users/me/api-keys"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let text = listed.text().await.unwrap();
    assert!(
        !text.contains(&key) && !text.contains(&key[26..58]),
        "list leaked the key"
    );
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], key_id.as_str());

    // Rotate: a new value, and the old one stops working at once.
    let rotated: Value = client
        .post(server.url(&format!("/api/users/me/api-keys/{key_id}/rotate")))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["id"], key_id.as_str());
    assert_ne!(new_key, key);
    assert_eq!(
        get_status(&client, &server.url("/api/agents"), &key).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_status(&client, &server.url("/api/agents"), &new_key).await,
        StatusCode::OK
    );

    // WebSocket with ?token= (JWT and key); bad tokens get 401 before any upgrade.
    assert_eq!(ws_echo(server, &jwt).await, Ok("hello nexora".into()));
    assert_eq!(ws_echo(server, &new_key).await, Ok("hello nexora".into()));
    assert_eq!(ws_echo(server, &key).await, Err(401));
    assert_eq!(ws_echo(server, "garbage").await, Err(401));

    // Revoke: gone at once; revoking again is fine; another id is 404.
    let revoke = client
        .delete(server.url(&format!("/api/users/me/api-keys/{key_id}")))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get_status(&client, &server.url("/api/agents"), &new_key).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(ws_echo(server, &new_key).await, Err(401));
    let unknown = client
        .delete(server.url("/api/users/me/api-keys/00000000-0000-4000-8000-000000000000"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.json::<Value>().await.unwrap()["detail"].is_string());

    // No secret ever reaches the log, at debug level.
    let logs = server.logs();
    for secret in [
        PASSWORD,
        &jwt,
        &key,
        &new_key,
        &key[26..58],
        &new_key[26..58],
        JWT_SECRET,
        PEPPER,
    ] {
        assert!(
            !logs.contains(secret),
            "a secret appeared in the server log"
        );
    }
}

#[tokio::test]
async fn quickstart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &secrets());
    quickstart(&server, dir.path(), None).await;
    assert!(server.stop().success(), "graceful shutdown exits 0");
}

#[tokio::test]
async fn quickstart_on_postgres() {
    let Some(admin) = postgres_admin_url().await else {
        return;
    };
    let db = PgDatabase::create(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = secrets();
    env.push(("NEXORA_DATABASE_URL", &db.url));
    let server = Server::start(dir.path(), &[], &env);
    quickstart(&server, dir.path(), Some(&db.url)).await;
    assert!(server.stop().success());
}

/// A key revoked through A is refused by A on the next request and by B within a second — the
/// change feed's work, as B had just cached the key (`tests/two_instances.rs` measures how
/// soon).
#[tokio::test]
async fn two_instances_on_one_postgres_see_a_revocation_within_the_bound() {
    let Some(admin) = postgres_admin_url().await else {
        return;
    };
    let db = PgDatabase::create(&admin).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut env = secrets();
    env.push(("NEXORA_DATABASE_URL", &db.url));
    let a = Server::start(dir_a.path(), &[], &env);
    let b = Server::start(dir_b.path(), &[], &env);
    let (code, _, stderr) = cli(
        dir_a.path(),
        &[
            "user",
            "create",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ],
        &env,
        PASSWORD,
    );
    assert_eq!(code, 0, "{stderr}");
    let client = Client::new();
    let jwt = login(&client, &a, "ops@example.com").await;
    for round in 0..20 {
        let created: Value = client
            .post(a.url("/api/users/me/api-keys"))
            .bearer_auth(&jwt)
            .json(&json!({"name": format!("k{round}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = created["key"].as_str().unwrap();
        assert_eq!(
            get_status(&client, &b.url("/api/agents"), key).await,
            StatusCode::OK,
            "B accepts A's key"
        );
        let id = created["id"].as_str().unwrap();
        let revoked = client
            .delete(a.url(&format!("/api/users/me/api-keys/{id}")))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
        let since = std::time::Instant::now();
        assert_eq!(
            get_status(&client, &a.url("/api/agents"), key).await,
            StatusCode::UNAUTHORIZED,
            "round {round}: the revoking instance"
        );
        let took = until_status(
            &client,
            &b.base,
            key,
            StatusCode::UNAUTHORIZED,
            &[StatusCode::OK],
            since,
            &format!("round {round}: the other instance"),
        )
        .await;
        // B cached the key just before: without the change feed it would accept it until the
        // entry ages out (the 5 s ceiling), so the ceiling alone would not show the feed works.
        assert!(
            took < std::time::Duration::from_secs(1),
            "round {round}: B honoured the revocation after {took:?}; the change feed should \
             take milliseconds"
        );
    }
}
