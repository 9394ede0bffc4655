//! The API keys page as served, without a browser: where it is, the headers that keep it safe,
//! markup the Content-Security-Policy allows, and `Cache-Control: no-store` on every API answer
//! that carries a secret. (`tests/browser.rs` drives the page itself.)

mod common;

use common::api::{self, EMAIL};
use common::{PASSWORD, Server};
use reqwest::{Client, StatusCode, redirect::Policy};
use serde_json::json;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} on {}", response.url()))
}

/// The headers every response of the server carries.
fn assert_hardened(response: &reqwest::Response) {
    let csp = header(response, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(response, "x-content-type-options"), "nosniff");
    assert_eq!(header(response, "referrer-policy"), "no-referrer");
    assert_eq!(header(response, "x-frame-options"), "DENY");
}

async fn get(client: &Client, server: &Server, path: &str) -> reqwest::Response {
    client.get(server.url(path)).send().await.expect(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_hardened_and_api_secrets_are_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let server = api::start(dir.path(), &api::sqlite_url(dir.path()), true);
    let client = Client::builder().redirect(Policy::none()).build().unwrap();

    let root = get(&client, &server, "/").await;
    assert_eq!(root.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&root, "location"), "/settings/api-keys");
    assert_hardened(&root);

    let page = get(&client, &server, "/settings/api-keys").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_hardened(&page);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-store");
    let html = page.text().await.unwrap();
    // What the policy would block: inline script, inline style, event-handler attributes, and
    // anything from another origin.
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1, "one script");
    assert!(
        scripts[0].starts_with(" src=\"/assets/page.js\""),
        "{}",
        scripts[0]
    );
    for forbidden in [
        "<style",
        " style=",
        " onclick=",
        " onload=",
        " onsubmit=",
        "http://",
        "https://",
        "//",
    ] {
        assert!(!html.contains(forbidden), "the page holds {forbidden:?}");
    }
    for id in [
        "login-email",
        "login-password",
        "login-submit",
        "key-name",
        "key-scopes",
        "key-expires",
        "key-create",
        "new-key-value",
        "new-key-copy",
        "new-key-dismiss",
        "confirm",
        "cascade",
        "logout",
        "error",
    ] {
        assert!(
            html.contains(&format!("data-testid=\"{id}\"")),
            "no data-testid {id}"
        );
    }

    for (path, content_type) in [
        ("/assets/page.js", "text/javascript; charset=utf-8"),
        ("/assets/page.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let asset = get(&client, &server, path).await;
        assert_eq!(asset.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&asset, "content-type"), content_type, "{path}");
        assert_hardened(&asset);
        assert!(html.contains(path), "the page does not use {path}");
    }
    let script = get(&client, &server, "/assets/page.js")
        .await
        .text()
        .await
        .unwrap();
    for forbidden in [
        "localStorage.",
        "sessionStorage.",
        "document.cookie",
        "innerHTML",
        "eval(",
    ] {
        assert!(!script.contains(forbidden), "the script uses {forbidden}");
    }

    // Every answer of the API carrying a secret — a token, a new key, a rotated key — and the
    // rest of it too, is `no-store`, and hardened like the page.
    let login = client
        .post(server.url("/api/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(header(&login, "cache-control"), "no-store");
    assert_hardened(&login);
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = client
        .post(server.url("/api/users/me/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "cached?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(header(&created, "cache-control"), "no-store");
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = client
        .post(server.url(&format!("/api/users/me/api-keys/{id}/rotate")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    assert_eq!(header(&rotated, "cache-control"), "no-store");
    for path in [
        "/api/users/me/api-keys",
        "/api/users/me/audit-events",
        "/api/users/me",
    ] {
        let response = client
            .get(server.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "cache-control"), "no-store", "{path}");
    }
    let refused = client
        .post(server.url("/api/auth/login"))
        .json(&json!({"email": EMAIL, "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&refused, "cache-control"), "no-store");
}
