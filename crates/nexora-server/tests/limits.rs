//! Rate limits and credits through the real server on SQLite: keys created with limits, 429s
//! with `Retry-After` and the `RateLimit` headers on the sample route and on the WebSocket
//! upgrade, key management at no cost, `PATCH`, `user set-limit` and the server's owner
//! default, and credits that survive a restart (leases given back on shutdown).

mod common;

use common::api::*;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_key_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let server = start(dir.path(), &db, true);
    let base = server.url("");
    let http = client();
    let jwt = login(&http, &base).await;
    let created = create_key_with(
        &http,
        &base,
        &jwt,
        json!({"name": "ten a minute", "rate_limit": {"limit": 10, "period_secs": 60}}),
    )
    .await;
    assert_eq!(
        created["rate_limit"],
        json!({"limit": 10, "period_secs": 60})
    );
    assert_eq!(created["credits"], Value::Null);
    let key = created["key"].as_str().unwrap().to_owned();
    for i in 0..10 {
        let r = agents(&http, &base, &key).await;
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
        assert_eq!(header(&r, "ratelimit-policy"), Some(r#""key";q=10;w=60"#));
        let state = header(&r, "ratelimit").unwrap().to_owned();
        assert!(
            state.starts_with(&format!("\"key\";r={};t=", 9 - i)),
            "{state}"
        );
    }
    let refused = agents(&http, &base, &key).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after"), Some("6"));
    assert!(
        header(&refused, "ratelimit")
            .unwrap()
            .starts_with(r#""key";r=0;"#)
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Rate limit exceeded"}));
    // Managing keys costs nothing: the key at its limit still lists keys, with the headers.
    let listed = http
        .get(url(&base, "/api/users/me/api-keys"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(
        header(&listed, "ratelimit")
            .unwrap()
            .starts_with(r#""key";r=0;"#)
    );
    // An invalid credential is 401 first, whatever the limits.
    let bad = agents(&http, &base, &format!("{}x", &key[..key.len() - 1])).await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    // A session can lift the limit; the next request passes.
    let id = created["id"].as_str().unwrap();
    let patched = http
        .patch(url(&base, &format!("/api/users/me/api-keys/{id}")))
        .bearer_auth(&jwt)
        .json(&json!({"rate_limit": null, "name": "unlimited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(
        (patched["name"].as_str(), &patched["rate_limit"]),
        (Some("unlimited"), &Value::Null)
    );
    let r = agents(&http, &base, &key).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "ratelimit"), None, "no limit: no headers");
    // The key itself may not loosen what it holds.
    let own = http
        .patch(url(&base, &format!("/api/users/me/api-keys/{id}")))
        .bearer_auth(&jwt)
        .json(&json!({"rate_limit": {"limit": 2, "period_secs": 60}}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    let loosen = http
        .patch(url(&base, &format!("/api/users/me/api-keys/{id}")))
        .bearer_auth(&key)
        .json(&json!({"rate_limit": {"limit": 3, "period_secs": 60}}))
        .send()
        .await
        .unwrap();
    assert_eq!(loosen.status(), StatusCode::FORBIDDEN);
    let body: Value = loosen.json().await.unwrap();
    assert_eq!(
        body,
        json!({"detail": "Cannot grant limits looser than your own"})
    );
    // Out-of-range limits are 422.
    let bad = http
        .post(url(&base, "/api/users/me/api-keys"))
        .bearer_auth(&jwt)
        .json(&json!({"name": "x", "rate_limit": {"limit": 0, "period_secs": 60}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let logs = server.logs();
    server.stop();
    assert_no_panic(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_over_http_survive_a_restart_and_refuse_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let server = start(dir.path(), &db, true);
    let base = server.url("");
    let http = client();
    let jwt = login(&http, &base).await;
    let created = create_key_with(
        &http,
        &base,
        &jwt,
        json!({"name": "metered", "credits": {"remaining": 30}}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    for _ in 0..12 {
        let r = agents(&http, &base, &key).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = agents(&http, &base, &key).await;
    assert_eq!(header(&r, "ratelimit"), Some(r#""credits";r=17"#));
    // A graceful stop gives the unspent lease back: the restarted server sees 17.
    server.stop();
    let server = start(dir.path(), &db, false);
    let base = server.url("");
    let listed = list_keys(&http, &base, &jwt).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(listed[id]["credits"]["remaining"], 17);
    for _ in 0..17 {
        assert_eq!(agents(&http, &base, &key).await.status(), StatusCode::OK);
    }
    let out = agents(&http, &base, &key).await;
    assert_eq!(out.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&out, "retry-after"),
        None,
        "no refill: no Retry-After"
    );
    let body: Value = out.json().await.unwrap();
    assert_eq!(body, json!({"detail": "API key usage limit exceeded"}));
    // The key is refused, never deleted: still listed at 0.
    let listed = list_keys(&http, &base, &jwt).await;
    assert_eq!(listed[id]["credits"]["remaining"], 0);
    let logs = server.logs();
    server.stop();
    assert_no_panic(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_limits_from_the_server_default_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let server = start_with(dir.path(), &db, true, &["--owner-rate-limit", "4/60"], &[]);
    let base = server.url("");
    let http = client();
    let jwt = login(&http, &base).await;
    let one = create_key(&http, &base, &jwt, "one").await;
    let two = create_key(&http, &base, &jwt, "two").await;
    let mut ok = 0;
    for i in 0..8 {
        let key = if i % 2 == 0 { &one.key } else { &two.key };
        let r = agents(&http, &base, key).await;
        if r.status() == StatusCode::OK {
            ok += 1;
            assert!(
                header(&r, "ratelimit-policy")
                    .unwrap()
                    .contains(r#""owner";q=4;w=60"#)
            );
        }
    }
    assert_eq!(ok, 4, "one limit for all of the owner's keys");
    server.stop();
    // The user's own limit replaces the default.
    user_cli(dir.path(), &db, "set-limit", &["--rate", "100/60"]);
    let server = start_with(dir.path(), &db, false, &["--owner-rate-limit", "4/60"], &[]);
    let base = server.url("");
    for _ in 0..8 {
        let r = agents(&http, &base, &one.key).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            header(&r, "ratelimit-policy")
                .unwrap()
                .contains(r#""owner";q=100;w=60"#)
        );
    }
    let logs = server.logs();
    server.stop();
    assert_no_panic(&logs);
}
