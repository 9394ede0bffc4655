//! The audit trail of the real server: the admin commands and the API record events, `audit
//! list` prints them (all, or one user's), `GET /api/users/me/audit-events` serves the
//! caller's, and the retention setting deletes events past it when the server starts.

mod common;

use common::{JWT_SECRET, PASSWORD, PEPPER, Server, cli};
use nexora_auth::{
    AuditEvent, AuditStore, OwnerId,
    audit::{Actor, AuditAction, AuditDetail, AuditOutcome, EventId},
};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const EMAIL: &str = "audit@example.com";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("NEXORA_JWT_SECRET", JWT_SECRET),
        ("NEXORA_KEY_PEPPER", PEPPER),
    ]
}

/// `audit list` with `args`: its lines, split into tab-separated fields.
fn audit_list(dir: &std::path::Path, args: &[&str]) -> Vec<Vec<String>> {
    let (status, stdout, stderr) = cli(dir, &[&["audit", "list"], args].concat(), &env(), "");
    assert_eq!(status, 0, "{stderr}");
    stdout
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_is_recorded_listed_served_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (status, user_id, stderr) = cli(
        dir.path(),
        &["user", "create", "--email", EMAIL, "--password-stdin"],
        &env(),
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(status, 0, "{stderr}");
    let user_id = user_id.trim().to_owned();
    for command in ["disable", "enable"] {
        let (status, _, stderr) = cli(dir.path(), &["user", command, "--email", EMAIL], &env(), "");
        assert_eq!(status, 0, "{stderr}");
    }
    // An event 100 days old, past the default retention of 90 days.
    let pool = nexora_auth_sqlite::connect(dir.path().join("nexora-data/nexora.db"))
        .await
        .unwrap();
    let store = nexora_auth_sqlite::SqliteStore::new(pool.clone())
        .await
        .unwrap();
    let old = AuditEvent {
        id: EventId::parse_str("01800000-0000-7000-8000-000000000001").unwrap(),
        at: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap()
            - time::Duration::days(100),
        action: AuditAction::KeyCreated,
        actor: Actor::system("cli"),
        owner: Some(OwnerId::new(user_id.clone())),
        target: None,
        client: None,
        outcome: AuditOutcome::Success,
        detail: AuditDetail::new(),
    };
    store.record(std::slice::from_ref(&old)).await.unwrap();
    pool.close().await;
    let listed = audit_list(dir.path(), &[]);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(
        listed[..2]
            .iter()
            .map(|f| (f[1].as_str(), f[2].as_str(), f[3].as_str()))
            .collect::<Vec<_>>(),
        [
            ("user_enabled", "system:cli", user_id.as_str()),
            ("user_disabled", "system:cli", user_id.as_str()),
        ]
    );

    let server = Server::start(dir.path(), &[], &env());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server
        .logs()
        .contains("deleted audit events past their retention")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no pruning logged:\n{}",
            server.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(server.logs().contains("pruned=1"), "{}", server.logs());

    let http = Client::new();
    let login = |password: &str| {
        http.post(server.url("/api/auth/login"))
            .json(&json!({"email": EMAIL, "password": password}))
            .send()
    };
    assert_eq!(
        login("not the password").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let token: Value = login(PASSWORD).await.unwrap().json().await.unwrap();
    let token = token["access_token"].as_str().unwrap();
    // `user create` granted audit:read by default.
    let page: Value = http
        .get(server.url("/api/users/me/audit-events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "login_succeeded",
            "login_failed",
            "user_enabled",
            "user_disabled"
        ],
        "{page}"
    );
    assert_eq!(page["events"][0]["client"], "127.0.0.1");

    let mine = audit_list(dir.path(), &["--user", EMAIL, "--limit", "2"]);
    assert_eq!(
        mine.iter().map(|f| f[1].as_str()).collect::<Vec<_>>(),
        ["login_succeeded", "login_failed"]
    );
    let by_id = audit_list(dir.path(), &["--user", &user_id]);
    assert_eq!(by_id.len(), 4, "{by_id:?}");
    assert!(
        by_id.iter().all(|f| f.len() == 8),
        "eight tab-separated fields: {by_id:?}"
    );
}
