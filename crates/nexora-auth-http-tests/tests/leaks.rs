//! When a key leaks, over real HTTP on axum and actix-web and on every store: revoke by
//! possession answers a live key byte for byte as it answers a revoked, an unknown and a
//! malformed one (and revokes it), and is limited per client behind trusted proxies; a large
//! signed GitHub report revokes exactly its live keys; an unconfigured scanning endpoint does
//! not exist.

mod common;

use std::{net::IpAddr, sync::Arc};

use nexora_auth::{
    ApiKey, Authenticator, MemoryKeyStore, NewKey, OwnerId, PepperRing, PossessionLimit,
    SecretBytes,
};
use nexora_auth_http::{
    Api,
    proxy::TrustedProxies,
    scopes::{AGENTS_READ, KEYS_MANAGE},
};
use nexora_auth_http_tests::{
    Fixture, Signing, Stores,
    attacks::{IdenticalGroup, RawRequest, run_identical},
    servers,
};
use nexora_auth_testkit::{github::report, scopes};
use serde_json::{Value, json};

/// A module of three tests running `$check(stores)`: on the memory stores, on SQLite, and on
/// Postgres (the testkit's loud skip when unreachable, a failure when required).
macro_rules! on_every_store {
    ($check:ident) => {
        mod $check {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_the_memory_stores() {
                $check(Stores::memory()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                $check(common::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let Some(stores) = common::postgres().await else {
                    return;
                };
                $check(stores).await;
            }
        }
    };
}

fn revoke_request(key: &str) -> RawRequest {
    RawRequest {
        method: "POST",
        target: "/api/keys/revoke".into(),
        headers: vec![("content-type", b"application/json".to_vec())],
        body: Some(json!({ "key": key }).to_string().into_bytes()),
        websocket: false,
    }
}

fn flipped(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

async fn finns_key(f: &Fixture, name: &str) -> String {
    f.auth
        .create_key_for(
            &OwnerId::new(f.finn_id.as_str()),
            &scopes(&[KEYS_MANAGE, AGENTS_READ]),
            NewKey::named(name),
        )
        .await
        .expect("create key")
        .key
        .expose()
        .to_owned()
}

/// A fixture over `stores` (and their name), served by both frameworks: `(framework, URL)`.
async fn fixture_on_both(stores: Stores) -> (&'static str, Fixture, [(&'static str, String); 2]) {
    let name = stores.name();
    let f = Fixture::with(stores, Signing::Hs256).await;
    let axum = servers::spawn_axum(f.api())
        .await
        .expect("axum server starts");
    let actix = servers::spawn_actix(f.api(), 1).expect("actix server starts");
    (name, f, [("axum", axum), ("actix-web", actix)])
}

/// On both frameworks over `stores`: the four answers are byte-identical, and
/// the live key among them is revoked.
async fn possession_answers_are_identical(stores: Stores) {
    let (name, f, servers) = fixture_on_both(stores).await;
    for (framework, url) in servers {
        let live = finns_key(&f, framework).await;
        let unknown = ApiKey::generate().expect("OS randomness");
        let group = IdenticalGroup {
            name: format!("{framework} on {name}: POST /api/keys/revoke"),
            status: 202,
            requests: [
                ("live", live.clone()),
                ("revoked", f.revoked_key.clone()),
                ("unknown", unknown.expose().to_owned()),
                ("malformed", flipped(&f.finn_key)),
            ]
            .into_iter()
            .map(|(label, key)| (label.to_owned(), revoke_request(&key)))
            .collect(),
        };
        let failures = run_identical(&url, &[group]).await;
        assert!(failures.is_empty(), "{failures:#?}");
        assert!(
            f.auth.authenticate(&live).await.is_err(),
            "{framework} on {name}: the live key is revoked"
        );
        assert!(f.auth.authenticate(&f.finn_key).await.is_ok());
    }
}

on_every_store!(possession_answers_are_identical);

/// An authenticator with the default possession limit (10 a minute per client), behind a
/// proxy on the loopback address.
fn limited() -> Api {
    let auth = Authenticator::builder(
        Arc::new(MemoryKeyStore::new()),
        PepperRing::new(1, SecretBytes::new(vec![3; 32])).expect("a long enough pepper"),
    )
    .possession_limit(PossessionLimit::default())
    .build()
    .expect("a valid authenticator");
    Api::new(auth).trusted_proxies(TrustedProxies::parse("127.0.0.1").expect("an address"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn possession_is_limited_per_client_behind_trusted_proxies() {
    let axum = servers::spawn_axum(limited())
        .await
        .expect("axum server starts");
    let actix = servers::spawn_actix(limited(), 1).expect("actix server starts");
    let client = reqwest::Client::new();
    for url in [axum, actix] {
        let send = |from: IpAddr| {
            client
                .post(format!("{url}/api/keys/revoke"))
                .header("x-forwarded-for", from.to_string())
                .json(&json!({"key": "nxr_not_a_key"}))
                .send()
        };
        let first: IpAddr = "203.0.113.1".parse().expect("an address");
        for i in 0..10 {
            let response = send(first).await.expect("an answer");
            assert_eq!(response.status(), 202, "{url}: request {i}");
        }
        let refused = send(first).await.expect("an answer");
        assert_eq!(refused.status(), 429, "{url}");
        let retry_after: u64 = refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=60).contains(&retry_after), "{url}: {retry_after}");
        let body: Value = refused.json().await.expect("JSON");
        assert_eq!(body, json!({"detail": "Too many requests"}));
        // Another client behind the same proxy has its own count.
        let second: IpAddr = "203.0.113.2".parse().expect("an address");
        assert_eq!(
            send(second).await.expect("an answer").status(),
            202,
            "{url}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_scanning_endpoint_does_not_exist() {
    let f = Fixture::new().await;
    let axum = servers::spawn_axum(f.auth.clone())
        .await
        .expect("axum server starts");
    let actix = servers::spawn_actix(f.auth.clone(), 1).expect("actix server starts");
    let client = reqwest::Client::new();
    let body = report(&[(&f.finn_key, "https://github.com/octo/app")]);
    for url in [axum, actix] {
        for method in [reqwest::Method::POST, reqwest::Method::GET] {
            let mut request =
                client.request(method.clone(), format!("{url}/api/secret-scanning/github"));
            for (name, value) in f.github.headers(body.as_bytes()) {
                request = request.header(name, value);
            }
            let response = request.body(body.clone()).send().await.expect("an answer");
            assert_eq!(response.status(), 404, "{url} {method}");
            assert!(response.headers().get("allow").is_none());
            let answer: Value = response.json().await.expect("JSON");
            assert_eq!(answer, json!({"detail": "Not Found"}));
        }
    }
    assert!(f.auth.authenticate(&f.finn_key).await.is_ok());
}

/// A report of 1,000 matches, 200 of them live keys (some listed twice), on both frameworks:
/// exactly the live keys are revoked and labelled `true_positive`.
async fn a_large_signed_report_revokes_exactly_its_live_keys(stores: Stores) {
    let (name, f, servers) = fixture_on_both(stores).await;
    let client = reqwest::Client::new();
    for (_, url) in servers {
        let mut live = Vec::new();
        for i in 0..200 {
            live.push(finns_key(&f, &format!("leak {i}")).await);
        }
        let unknown: Vec<String> = (0..600)
            .map(|_| {
                ApiKey::generate()
                    .expect("OS randomness")
                    .expose()
                    .to_owned()
            })
            .collect();
        let mut tokens: Vec<(&str, bool)> = Vec::new();
        tokens.extend(live.iter().map(|k| (k.as_str(), true)));
        tokens.extend(unknown.iter().map(|k| (k.as_str(), false)));
        tokens.extend(live[..100].iter().map(|k| (k.as_str(), true)));
        tokens.extend(std::iter::repeat_n((f.revoked_key.as_str(), false), 100));
        assert_eq!(tokens.len(), 1_000);
        let url_of_leak = "https://github.com/octo/app/blob/main/config.yml";
        let matches: Vec<(&str, &str)> = tokens.iter().map(|(t, _)| (*t, url_of_leak)).collect();
        let body = report(&matches);
        let mut request = client.post(format!("{url}/api/secret-scanning/github"));
        for (name, value) in f.github.headers(body.as_bytes()) {
            request = request.header(name, value);
        }
        let response = request
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200, "{url} on {name}");
        let answer: Vec<Value> = response.json().await.expect("JSON");
        assert_eq!(answer.len(), tokens.len());
        for (entry, (token, was_live)) in answer.iter().zip(&tokens) {
            let label = if *was_live {
                "true_positive"
            } else {
                "false_positive"
            };
            assert_eq!(
                entry,
                &json!({"token_raw": token, "token_type": "nexora_api_key", "label": label}),
                "{url} on {name}"
            );
        }
        for key in &live {
            assert!(f.auth.authenticate(key).await.is_err(), "{url} on {name}");
        }
        assert!(f.auth.authenticate(&f.finn_key).await.is_ok());
    }
}

on_every_store!(a_large_signed_report_revokes_exactly_its_live_keys);
