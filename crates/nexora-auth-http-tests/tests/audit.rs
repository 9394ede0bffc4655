//! The audit trail over real HTTP, on axum and actix-web, on every store: each action that
//! exists (revoking a leaked key by possession or by a GitHub report included) leaves exactly
//! one event with the right actor, target, client and outcome; the
//! caller's trail pages newest first and never shows another user's events; a key without
//! `audit:read` is refused; a failed audit write neither undoes nor hides the change; and no
//! audit row or log line of the whole run holds a key, token or password.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use nexora_auth::{
    AuditEvent, NewKey, OwnerId, Scopes, SecretString,
    audit::{AUDIT_TARGET, Actor, AuditQuery},
};
use nexora_auth_http::{
    Api,
    proxy::TrustedProxies,
    scopes::{AGENTS_READ, AUDIT_READ, KEYS_MANAGE},
};
use nexora_auth_http_tests::{ALICE_PASSWORD, Fixture, Signing, Stores, servers};
use nexora_auth_testkit::github;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

const ERIN: &str = "erin@example.com";
const ERIN_PASSWORD: &str = "erin's audited passphrase";
const WRONG_PASSWORD: &str = "a wrong guess at it";
/// The client the requests come from, behind the trusted proxy at 127.0.0.1.
const CLIENT: &str = "203.0.113.5";
/// Where "GitHub" found the leaked key.
const LEAK_URL: &str = "https://github.com/octo/app/blob/main/.env";

/// Everything every test of this binary logs, at `DEBUG` and above, on any thread.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&writer)))
            .init();
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> String {
    String::from_utf8_lossy(&logs().lock().expect("the log buffer")).into_owned()
}

#[derive(Clone, Copy, Debug)]
enum Framework {
    Axum,
    Actix,
}

async fn spawn(framework: Framework, api: Api) -> String {
    match framework {
        Framework::Axum => servers::spawn_axum(api).await.expect("axum starts"),
        Framework::Actix => servers::spawn_actix(api, 2).expect("actix starts"),
    }
}

/// A request from [`CLIENT`], through the trusted proxy.
fn from_client(request: RequestBuilder) -> RequestBuilder {
    request.header("x-forwarded-for", CLIENT)
}

async fn send(request: RequestBuilder, want: StatusCode) -> Value {
    let response = from_client(request)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let text = response.text().await.expect("a body");
    assert_eq!(status, want, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// One event as the checks compare it: action, actor, owner, target, client, outcome, detail.
fn summary(event: &AuditEvent) -> Value {
    json!({
        "action": event.action.as_str(),
        "actor": event.actor.to_string(),
        "owner": event.owner.as_ref().map(OwnerId::as_str),
        "target": event.target,
        "client": event.client.map(|c| c.to_string()),
        "outcome": event.outcome.as_str(),
        "detail": event.detail,
    })
}

/// The same summary of an event as the endpoint serialised it.
fn wire_summary(event: &Value) -> Value {
    let actor = &event["actor"];
    let actor = match actor["kind"].as_str() {
        Some("user") => format!("user:{}", actor["user_id"].as_str().unwrap_or_default()),
        Some("key") => format!("key:{}", actor["key_id"].as_str().unwrap_or_default()),
        Some("system") => format!("system:{}", actor["name"].as_str().unwrap_or_default()),
        other => other.unwrap_or_default().to_owned(),
    };
    json!({
        "action": event["action"],
        "actor": actor,
        "owner": event["owner"],
        "target": event["target"],
        "client": event["client"],
        "outcome": event["outcome"],
        "detail": event["detail"],
    })
}

/// Every event recorded after `since` (oldest first).
async fn events_since(fixture: &Fixture, since: Option<AuditEvent>) -> Vec<AuditEvent> {
    let mut all = fixture
        .audit
        .inner()
        .list(&AuditQuery::all(100_000))
        .await
        .expect("the trail reads");
    all.reverse();
    all.retain(|e| since.as_ref().is_none_or(|s| e.id > s.id));
    all
}

async fn newest(fixture: &Fixture) -> Option<AuditEvent> {
    fixture
        .audit
        .inner()
        .list(&AuditQuery::all(1))
        .await
        .expect("the trail reads")
        .pop()
}

async fn scenario(framework: Framework, stores: Stores) {
    logs();
    let name = stores.name();
    let fixture = Fixture::with(stores, Signing::Hs256).await;
    let auth = fixture.auth.clone();
    let api = fixture
        .api()
        .trusted_proxies(TrustedProxies::parse("127.0.0.1").unwrap());
    let url = spawn(framework, api).await;
    let http = Client::new();
    let context = format!("{framework:?} on {name}");

    let every = Scopes::new([KEYS_MANAGE, AUDIT_READ, AGENTS_READ]).unwrap();
    let erin = auth
        .register_user(ERIN, &SecretString::from(ERIN_PASSWORD), every.clone())
        .await
        .unwrap()
        .id;
    let gina = auth
        .register_user(
            "gina@example.com",
            &SecretString::from("gina's passphrase"),
            every.clone(),
        )
        .await
        .unwrap()
        .id;
    let henry = auth
        .register_user(
            "henry@example.com",
            &SecretString::from("henry's passphrase"),
            every,
        )
        .await
        .unwrap()
        .id;
    let start = newest(&fixture).await;

    // Logins: a wrong password, an unknown email, a success.
    let login = |email: &str, password: &str| {
        http.post(format!("{url}/api/auth/login"))
            .json(&json!({"email": email, "password": password}))
    };
    send(login(ERIN, WRONG_PASSWORD), StatusCode::UNAUTHORIZED).await;
    send(
        login("nobody@example.com", WRONG_PASSWORD),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let jwt = send(login(ERIN, ERIN_PASSWORD), StatusCode::OK).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = format!("{url}/api/users/me/api-keys");
    let create = |token: &str, name: &str| {
        http.post(&keys)
            .bearer_auth(token)
            .json(&json!({"name": name}))
    };
    // Keys: created by the session, created by a key, rotated, revoked with a cascade.
    let parent = send(create(&jwt, "parent"), StatusCode::CREATED).await;
    let parent_key = parent["key"].as_str().unwrap().to_owned();
    let parent_id = parent["id"].as_str().unwrap().to_owned();
    let child = send(create(&parent_key, "child"), StatusCode::CREATED).await;
    let child_key = child["key"].as_str().unwrap().to_owned();
    let child_id = child["id"].as_str().unwrap().to_owned();
    let rotated = send(
        http.post(format!("{keys}/{child_id}/rotate"))
            .bearer_auth(&jwt),
        StatusCode::OK,
    )
    .await;
    let rotated_key = rotated["key"].as_str().unwrap().to_owned();
    send(
        http.delete(format!("{keys}/{parent_id}?cascade=true"))
            .bearer_auth(&jwt),
        StatusCode::NO_CONTENT,
    )
    .await;
    // Users, as the admin command line changes them.
    let cli = Actor::system("cli");
    let narrow = Scopes::new([AGENTS_READ]).unwrap();
    assert!(auth.set_user_scopes(&gina, &narrow, &cli).await.unwrap());
    assert!(auth.disable_user(&gina, &cli).await.unwrap());
    assert!(auth.enable_user(&gina, &cli).await.unwrap());
    assert!(auth.delete_user(&gina, &cli).await.unwrap());
    // Five wrong passwords lock henry's email; the sixth attempt is refused unrecorded.
    for _ in 0..5 {
        send(
            login("henry@example.com", WRONG_PASSWORD),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    send(
        login("henry@example.com", WRONG_PASSWORD),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    // Leaked keys: one handed in by whoever found it, one reported by GitHub.
    let found = send(create(&jwt, "found"), StatusCode::CREATED).await;
    let found_key = found["key"].as_str().unwrap().to_owned();
    let found_id = found["id"].as_str().unwrap().to_owned();
    send(
        http.post(format!("{url}/api/keys/revoke"))
            .json(&json!({ "key": found_key })),
        StatusCode::ACCEPTED,
    )
    .await;
    let leaked = send(create(&jwt, "leaked"), StatusCode::CREATED).await;
    let leaked_key = leaked["key"].as_str().unwrap().to_owned();
    let leaked_id = leaked["id"].as_str().unwrap().to_owned();
    let report = github::report(&[(&leaked_key, LEAK_URL)]);
    let mut reported = http
        .post(format!("{url}/api/secret-scanning/github"))
        .header("content-type", "application/json")
        .body(report.clone());
    for (name, value) in fixture.github.headers(report.as_bytes()) {
        reported = reported.header(name, value);
    }
    send(reported, StatusCode::OK).await;

    let user = |id: &OwnerId| format!("user:{id}");
    let event = |action: &str, actor: &str, owner: Option<&OwnerId>, target: Option<&str>| {
        json!({
            "action": action,
            "actor": actor,
            "owner": owner.map(OwnerId::as_str),
            "target": target,
            "client": CLIENT,
            "outcome": "success",
            "detail": {},
        })
    };
    let with = |mut event: Value, fields: Value| {
        for (k, v) in fields.as_object().unwrap() {
            event[k] = v.clone();
        }
        event
    };
    let failed = |owner: Option<&OwnerId>, reason: &str| {
        with(
            event(
                "login_failed",
                "anonymous",
                owner,
                owner.map(OwnerId::as_str),
            ),
            json!({"outcome": "failure", "detail": {"reason": reason}}),
        )
    };
    let admin = |action: &str, detail: Value| {
        with(
            event(action, "system:cli", Some(&gina), Some(gina.as_str())),
            json!({"client": null, "detail": detail}),
        )
    };
    let mut expected = vec![
        failed(Some(&erin), "wrong_password"),
        failed(None, "unknown_email"),
        event(
            "login_succeeded",
            &user(&erin),
            Some(&erin),
            Some(erin.as_str()),
        ),
        event("key_created", &user(&erin), Some(&erin), Some(&parent_id)),
        event(
            "key_created",
            &format!("key:{parent_id}"),
            Some(&erin),
            Some(&child_id),
        ),
        event("key_rotated", &user(&erin), Some(&erin), Some(&child_id)),
        with(
            event("key_revoked", &user(&erin), Some(&erin), Some(&parent_id)),
            json!({"detail": {"cascaded": 1}}),
        ),
        with(
            event(
                "key_revoked_by_cascade",
                &user(&erin),
                Some(&erin),
                Some(&child_id),
            ),
            json!({"detail": {"cascade_root": parent_id}}),
        ),
        admin("user_scopes_changed", json!({"scopes": "agents:read"})),
        admin("user_disabled", json!({})),
        admin("user_enabled", json!({})),
        admin("user_deleted", json!({})),
    ];
    for _ in 0..5 {
        expected.push(failed(Some(&henry), "wrong_password"));
    }
    expected.push(with(
        event(
            "login_throttled",
            "anonymous",
            Some(&henry),
            Some(henry.as_str()),
        ),
        json!({"outcome": "denied", "detail": {"locked": "email"}}),
    ));
    expected.extend([
        event("key_created", &user(&erin), Some(&erin), Some(&found_id)),
        with(
            event(
                "key_revoked_by_possession",
                "system:revoke-by-possession",
                Some(&erin),
                Some(&found_id),
            ),
            json!({"detail": {"cascaded": 0}}),
        ),
        event("key_created", &user(&erin), Some(&erin), Some(&leaked_id)),
        with(
            event(
                "key_revoked_by_secret_scanning",
                "system:github-secret-scanning",
                Some(&erin),
                Some(&leaked_id),
            ),
            json!({"detail": {"cascaded": 0, "url": LEAK_URL, "source": "content"}}),
        ),
    ]);
    let recorded = events_since(&fixture, start).await;
    let recorded: Vec<Value> = recorded.iter().map(summary).collect();
    assert_eq!(
        recorded, expected,
        "{context}: each action leaves exactly one event"
    );

    // Erin's own trail over HTTP: newest first, paged, hers only.
    let trail = format!("{url}/api/users/me/audit-events");
    let whole = send(http.get(&trail).bearer_auth(&jwt), StatusCode::OK).await;
    assert_eq!(whole["next_before"], Value::Null, "{context}");
    let mine: Vec<Value> = expected
        .iter()
        .filter(|e| e["owner"] == erin.as_str())
        .rev()
        .cloned()
        .collect();
    let listed: Vec<Value> = whole["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(wire_summary)
        .collect();
    // The fixture recorded nothing of erin's before: her whole trail is the scenario's.
    assert_eq!(listed, mine, "{context}: erin's trail");
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(before) => format!("?limit=3&before={before}"),
            None => "?limit=3".to_owned(),
        };
        let page = send(
            http.get(format!("{trail}{query}")).bearer_auth(&jwt),
            StatusCode::OK,
        )
        .await;
        paged.extend(page["events"].as_array().unwrap().iter().map(wire_summary));
        match page["next_before"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, mine, "{context}: pages of 3");

    // Alice (who has no `audit:read`) is refused; a key of erin's without it too.
    let reader = auth
        .create_key_for(
            &erin,
            &Scopes::new([KEYS_MANAGE]).unwrap(),
            NewKey::named("no audit"),
        )
        .await
        .unwrap();
    for token in [reader.key.expose(), fixture.alice_jwt.as_str()] {
        let refused = send(http.get(&trail).bearer_auth(token), StatusCode::FORBIDDEN).await;
        assert_eq!(refused["detail"], "Insufficient permissions", "{context}");
    }

    // A failed audit write: the revocation stands, the event is logged in full and counted.
    let failures = auth.audit_write_failures();
    fixture.audit.set_failing(true);
    send(
        http.delete(format!("{keys}/{}", reader.info.id))
            .bearer_auth(&jwt),
        StatusCode::NO_CONTENT,
    )
    .await;
    fixture.audit.set_failing(false);
    assert!(
        auth.authenticate(reader.key.expose()).await.is_err(),
        "{context}: the key stays revoked"
    );
    assert_eq!(auth.audit_write_failures(), failures + 1, "{context}");
    let lost = captured()
        .lines()
        .find(|line| {
            line.contains("audit event not stored") && line.contains(&reader.info.id.to_string())
        })
        .map(str::to_owned);
    let lost = lost.unwrap_or_else(|| panic!("{context}: the lost event was not logged"));
    assert!(
        lost.contains("ERROR") && lost.contains(AUDIT_TARGET) && lost.contains("key_revoked"),
        "{context}: {lost}"
    );

    // Nothing secret anywhere: not in any row of the trail, not in any line logged.
    let rows: String = events_since(&fixture, None)
        .await
        .iter()
        .map(AuditEvent::to_json)
        .collect::<Vec<_>>()
        .join("\n");
    let log = captured();
    assert!(
        log.contains(&format!("{AUDIT_TARGET}: audit event")),
        "{context}: the log holds no audit events"
    );
    let mut secrets: Vec<(String, String)> = vec![
        ("erin's JWT".into(), jwt.clone()),
        ("alice's JWT".into(), fixture.alice_jwt.clone()),
        ("erin's password".into(), ERIN_PASSWORD.into()),
        ("a wrong password".into(), WRONG_PASSWORD.into()),
        ("alice's password".into(), ALICE_PASSWORD.into()),
    ];
    for (i, key) in fixture
        .all_keys
        .iter()
        .chain([
            &parent_key,
            &child_key,
            &rotated_key,
            &found_key,
            &leaked_key,
            &reader.key.expose().to_owned(),
        ])
        .enumerate()
    {
        secrets.push((format!("key {i}"), key.clone()));
        secrets.push((format!("key {i} (secret part)"), key[26..58].to_owned()));
    }
    for (what, secret) in &secrets {
        assert!(
            !rows.contains(secret.as_str()),
            "{context}: {what} in an audit row"
        );
        assert!(
            !log.contains(secret.as_str()),
            "{context}: {what} in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_on_memory() {
    scenario(Framework::Axum, Stores::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_on_memory() {
    scenario(Framework::Actix, Stores::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_on_sqlite() {
    scenario(Framework::Axum, common::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_on_sqlite() {
    scenario(Framework::Actix, common::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_on_postgres() {
    if let Some(stores) = common::postgres().await {
        scenario(Framework::Axum, stores).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_on_postgres() {
    if let Some(stores) = common::postgres().await {
        scenario(Framework::Actix, stores).await;
    }
}
