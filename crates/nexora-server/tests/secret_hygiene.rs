//! Secret hygiene (issue 6, part 6): the real server at `NEXORA_LOG=debug` through a whole
//! session — login, failed logins, key create/use/list/rotate/revoke, WebSockets with
//! `?token=`, malformed and ambiguous bearer headers — and then not one key, key secret part,
//! JWT (nor its signature), password, pepper or JWT secret anywhere in what it logged.

mod common;

use common::{JWT_SECRET, PASSWORD, PEPPER, Server, cli};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

const EMAIL: &str = "hygiene@example.com";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("NEXORA_JWT_SECRET", JWT_SECRET),
        ("NEXORA_KEY_PEPPER", PEPPER),
    ]
}

/// Everything secret the session handled; the log must contain none of it.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, secret: &str) {
        self.0.push((what.into(), secret.to_owned()));
    }

    /// A key, and its secret part (characters 26..58).
    fn key(&mut self, what: &str, key: &str) {
        assert_eq!(key.len(), 64, "{what} is not a key");
        self.add(what, key);
        self.add(format!("{what} (secret part)"), &key[26..58]);
    }

    /// A JWT, and its signature segment.
    fn jwt(&mut self, what: &str, jwt: &str) {
        self.add(what, jwt);
        let signature = jwt.rsplit('.').next().unwrap_or_default();
        assert!(signature.len() >= 40, "{what} has no signature");
        self.add(format!("{what} (signature)"), signature);
    }

    /// The secrets found in `log`, by name (never the secret itself: this is a test log too).
    fn found_in(&self, log: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, secret)| log.contains(secret.as_str()))
            .map(|(what, _)| what.as_str())
            .collect()
    }
}

async fn status(request: reqwest::RequestBuilder) -> StatusCode {
    request.send().await.expect("the server answers").status()
}

async fn json_of(request: reqwest::RequestBuilder, want: StatusCode) -> Value {
    let response = request.send().await.expect("the server answers");
    assert_eq!(response.status(), want);
    response.json().await.expect("a JSON body")
}

/// A WebSocket to the echo route with `?token=`: the echoed text, or the refusal's status.
async fn websocket(server: &Server, token: &str) -> Result<String, u16> {
    let url = server.ws_url(&format!("/api/ws/chat-1?token={token}"));
    match tokio_tungstenite::connect_async(url).await {
        Ok((mut socket, _)) => {
            socket
                .send(Message::text("ping"))
                .await
                .expect("send a frame");
            let reply = socket
                .next()
                .await
                .expect("an echo")
                .expect("a frame")
                .into_text()
                .expect("text")
                .to_string();
            let _ = socket.close(None).await;
            Ok(reply)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("websocket error: {e}"),
    }
}

#[tokio::test]
async fn a_debug_log_of_a_whole_session_holds_no_secret() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(dir.path(), &[], &env());
    let log_path = server.log_path.clone();
    let mut secrets = Secrets::default();
    secrets.add("password", PASSWORD);
    secrets.add("JWT secret", JWT_SECRET);
    secrets.add("pepper", PEPPER);

    let (code, _, stderr) = cli(
        dir.path(),
        &["user", "create", "--email", EMAIL, "--password-stdin"],
        &env(),
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 0, "user create failed: {stderr}");

    let client = Client::new();
    let url = |path: &str| server.url(path);
    let login = |email: &str, password: &str| {
        client
            .post(url("/api/auth/login"))
            .json(&json!({"email": email, "password": password}))
    };

    // Login, then key create / use / list / rotate / revoke.
    let jwt = json_of(login(EMAIL, PASSWORD), StatusCode::OK).await["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    secrets.jwt("login JWT", &jwt);
    let created = json_of(
        client
            .post(url("/api/users/me/api-keys"))
            .bearer_auth(&jwt)
            .json(&json!({"name": "hygiene"})),
        StatusCode::CREATED,
    )
    .await;
    let key = created["key"].as_str().expect("a key").to_owned();
    let key_id = created["id"].as_str().expect("an id").to_owned();
    secrets.key("created key", &key);
    let agents = || client.get(url("/api/agents"));
    assert_eq!(status(agents().bearer_auth(&key)).await, StatusCode::OK);
    assert_eq!(
        status(client.get(url("/api/users/me/api-keys")).bearer_auth(&key)).await,
        StatusCode::OK
    );
    let rotated = json_of(
        client
            .post(url(&format!("/api/users/me/api-keys/{key_id}/rotate")))
            .bearer_auth(&jwt),
        StatusCode::OK,
    )
    .await;
    let rotated_key = rotated["key"].as_str().expect("a key").to_owned();
    secrets.key("rotated key", &rotated_key);
    assert_eq!(
        status(agents().bearer_auth(&key)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(agents().bearer_auth(&rotated_key)).await,
        StatusCode::OK
    );

    // WebSockets with ?token= (JWT and key), then refused ones.
    assert_eq!(websocket(&server, &jwt).await, Ok("ping".into()));
    assert_eq!(websocket(&server, &rotated_key).await, Ok("ping".into()));
    assert_eq!(websocket(&server, &key).await, Err(401));

    assert_eq!(
        status(
            client
                .delete(url(&format!("/api/users/me/api-keys/{key_id}")))
                .bearer_auth(&jwt)
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        status(agents().bearer_auth(&rotated_key)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(websocket(&server, &rotated_key).await, Err(401));

    // A second key, used over a WebSocket only.
    let second = json_of(
        client
            .post(url("/api/users/me/api-keys"))
            .bearer_auth(&jwt)
            .json(&json!({"name": "websocket"})),
        StatusCode::CREATED,
    )
    .await["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    secrets.key("second key", &second);
    assert_eq!(websocket(&server, &second).await, Ok("ping".into()));

    // Failed logins: wrong passwords for a real account and a password for an unknown one.
    for (i, wrong) in [
        "wrong-password-for-hygiene-1",
        "Correct Horse Battery Staple",
        "wrong password with spaces 3",
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(status(login(EMAIL, wrong)).await, StatusCode::UNAUTHORIZED);
        secrets.add(format!("wrong password {i}"), wrong);
    }
    let unknown_password = "password-of-nobody-at-all";
    assert_eq!(
        status(login("nobody@example.com", unknown_password)).await,
        StatusCode::UNAUTHORIZED
    );
    secrets.add("password for an unknown email", unknown_password);

    // Malformed and forged bearer tokens, and ambiguous requests.
    let tampered_key = format!(
        "{}{}",
        &second[..63],
        if second.ends_with('A') { 'B' } else { 'A' }
    );
    secrets.key("tampered key", &tampered_key);
    let (head, _) = jwt.rsplit_once('.').expect("three segments");
    let forged_jwt = format!("{head}.{}", "A".repeat(43));
    secrets.jwt("JWT with a forged signature", &forged_jwt);
    for value in [
        format!("Bearer {second}!"),
        format!("Bearer {tampered_key}"),
        format!("Bearer {forged_jwt}"),
        format!("Bearer\t{second}"),
        format!("Bearer {second} {jwt}"),
    ] {
        let answer = status(agents().header("authorization", value)).await;
        assert_eq!(answer, StatusCode::UNAUTHORIZED);
    }
    let two_headers = agents()
        .header("authorization", format!("Bearer {second}"))
        .header("authorization", format!("Bearer {jwt}"));
    assert_eq!(status(two_headers).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(client.get(url(&format!("/api/agents?token={second}")))).await,
        StatusCode::UNAUTHORIZED
    );
    let ambiguous = tokio_tungstenite::connect_async({
        use tungstenite::client::IntoClientRequest;
        let mut request = server
            .ws_url(&format!("/api/ws/chat-1?token={jwt}"))
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {second}").parse().expect("a header value"),
        );
        request
    })
    .await;
    assert!(
        matches!(ambiguous, Err(tungstenite::Error::Http(ref r)) if r.status() == 401),
        "a header and a different ?token= must be refused"
    );

    // Everything the server logged, after a graceful stop (all lines flushed).
    assert!(server.stop().success(), "graceful shutdown exits 0");
    let log = std::fs::read_to_string(&log_path).expect("the server's log");
    // The log is the real thing: debug level, every request line, the WebSocket events.
    assert!(log.contains("DEBUG"), "not a debug-level log:\n{log}");
    for needle in [
        "/api/auth/login",
        "/api/users/me/api-keys",
        "/api/ws/chat-1",
        "websocket opened",
    ] {
        assert!(log.contains(needle), "the log lacks {needle:?}:\n{log}");
    }
    assert_eq!(secrets.0.len(), 19, "the session lost secrets");
    let leaked = secrets.found_in(&log);
    assert!(
        leaked.is_empty(),
        "secrets in the server's debug log: {leaked:?} (log at {})",
        log_path.display()
    );
    // The grep itself can fail: the log's own text is found.
    let mut planted = Secrets::default();
    planted.add("a line of the log", log.lines().next().unwrap_or("(empty)"));
    assert_eq!(planted.found_in(&log), ["a line of the log"]);
}
