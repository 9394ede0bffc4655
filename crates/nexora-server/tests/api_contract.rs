//! Every status and error shape the server documents, checked against the real binary, and
//! every real response validated against the OpenAPI document it serves.

mod common;

use std::net::TcpListener;

use common::{JWT_SECRET, PASSWORD, PEPPER, Server, cli};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("NEXORA_JWT_SECRET", JWT_SECRET),
        ("NEXORA_KEY_PEPPER", PEPPER),
    ]
}

/// A small validator for the JSON Schema subset the document uses: `$ref`, `type` (one or
/// several), `required`, `properties`, `additionalProperties: false`, `items`, `const`.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference.trim_start_matches('#');
        let target = doc
            .pointer(pointer)
            .ok_or_else(|| format!("{at}: dangling $ref {reference}"))?;
        return validate(doc, target, value, at);
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = allowed
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"));
        if !ok {
            return Err(format!("{at}: {actual} is not {allowed:?}"));
        }
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        return Err(format!("{at}: {value} is not {expected}"));
    }
    if let (Some(required), Value::Object(map)) =
        (schema.get("required").and_then(Value::as_array), value)
    {
        for field in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(field) {
                return Err(format!("{at}: missing {field}"));
            }
        }
    }
    if let Value::Object(map) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for (field, v) in map {
            match properties.and_then(|p| p.get(field)) {
                Some(sub) => validate(doc, sub, v, &format!("{at}.{field}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: undocumented field {field}"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Value::Array(list)) = (schema.get("items"), value) {
        for (i, v) in list.iter().enumerate() {
            validate(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Checks `response` against the document's entry for `path_template` / `method`.
async fn check(
    doc: &Value,
    path_template: &str,
    method: &str,
    response: reqwest::Response,
) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let op = &doc["paths"][path_template][method];
    assert!(op.is_object(), "{method} {path_template} is not documented");
    let mut entry = &op["responses"][status.as_str()];
    if let Some(r) = entry.get("$ref").and_then(Value::as_str) {
        entry = doc.pointer(r.trim_start_matches('#')).unwrap();
    }
    assert!(
        entry.is_object(),
        "{method} {path_template} answered undocumented {status}: {text}"
    );
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    if let Some(schema) = entry.pointer("/content/application~1json/schema") {
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{method} {path_template} {status}"
        );
        validate(doc, schema, &body, "body")
            .unwrap_or_else(|e| panic!("{method} {path_template} {status}: {e}\n{text}"));
    }
    (status, body)
}

#[tokio::test]
async fn every_documented_route_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &secrets());
    let (code, _, err) = cli(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "doc@example.com",
            "--password-stdin",
        ],
        &secrets(),
        PASSWORD,
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "reader@example.com",
            "--password-stdin",
            "--scopes",
            "agents:read",
        ],
        &secrets(),
        PASSWORD,
    );
    assert_eq!(code, 0, "{err}");
    let client = Client::new();
    let doc: Value = client
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    let login = |email: &'static str, password: &'static str| {
        client
            .post(server.url("/api/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    let (s, body) = check(
        &doc,
        "/api/auth/login",
        "post",
        login("doc@example.com", PASSWORD).await.unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let jwt = body["access_token"].as_str().unwrap().to_owned();
    let (s, wrong) = check(
        &doc,
        "/api/auth/login",
        "post",
        login("doc@example.com", "not the password").await.unwrap(),
    )
    .await;
    let (s2, unknown) = check(
        &doc,
        "/api/auth/login",
        "post",
        login("nobody@example.com", PASSWORD).await.unwrap(),
    )
    .await;
    assert_eq!(
        (s, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        wrong, unknown,
        "unknown email and wrong password read the same"
    );
    let (s, body) = check(
        &doc,
        "/api/auth/login",
        "post",
        client
            .post(server.url("/api/auth/login"))
            .json(&json!({"email": "x@y"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "password"]));

    let (s, _) = check(
        &doc,
        "/api/users/me",
        "get",
        client
            .get(server.url("/api/users/me"))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let no_auth = client
        .get(server.url("/api/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.headers()["www-authenticate"], "Bearer");
    check(&doc, "/api/users/me", "get", no_auth).await;
    let bad = client
        .get(server.url("/api/users/me"))
        .bearer_auth("nxr_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    check(&doc, "/api/users/me", "get", bad).await;

    let keys = "/api/users/me/api-keys";
    let (s, created) = check(
        &doc,
        keys,
        "post",
        client
            .post(server.url(keys))
            .bearer_auth(&jwt)
            .json(&json!({"name": "doc", "scopes": ["agents:read"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201);
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let (s, _) = check(
        &doc,
        keys,
        "post",
        client
            .post(server.url(keys))
            .bearer_auth(&jwt)
            .json(&json!({"name": 5}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = check(
        &doc,
        keys,
        "post",
        client
            .post(server.url(keys))
            .bearer_auth(&jwt)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    let (s, listed) = check(
        &doc,
        keys,
        "get",
        client
            .get(server.url(keys))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, listed.as_array().unwrap().len()), (StatusCode::OK, 1));
    // The key has only agents:read: key management is 403 with it.
    let forbidden = client
        .get(server.url(keys))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        forbidden.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope""#
    );
    let (s, body) = check(&doc, keys, "get", forbidden).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::FORBIDDEN,
            json!({"detail": "Insufficient permissions"})
        )
    );

    let rotate = "/api/users/me/api-keys/{key_id}/rotate";
    let (s, _) = check(
        &doc,
        rotate,
        "post",
        client
            .post(server.url(&format!("{keys}/{id}/rotate")))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = check(
        &doc,
        rotate,
        "post",
        client
            .post(server.url(&format!("{keys}/not-a-uuid/rotate")))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = check(
        &doc,
        rotate,
        "post",
        client
            .post(server.url(&format!(
                "{keys}/00000000-0000-4000-8000-000000000000/rotate"
            )))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);

    let reader_jwt: Value = login("reader@example.com", PASSWORD)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reader_jwt = reader_jwt["access_token"].as_str().unwrap().to_owned();
    let (s, _) = check(
        &doc,
        "/api/agents",
        "get",
        client
            .get(server.url("/api/agents"))
            .bearer_auth(&reader_jwt)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    // The reader has no keys:manage, and cannot touch the first user's key either way.
    let (s, _) = check(
        &doc,
        keys,
        "get",
        client
            .get(server.url(keys))
            .bearer_auth(&reader_jwt)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);

    let revoke = "/api/users/me/api-keys/{key_id}";
    let (s, _) = check(
        &doc,
        revoke,
        "delete",
        client
            .delete(server.url(&format!("{keys}/{id}")))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 204);

    let (s, _) = check(
        &doc,
        "/healthz",
        "get",
        client.get(server.url("/healthz")).send().await.unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = check(
        &doc,
        "/readyz",
        "get",
        client.get(server.url("/readyz")).send().await.unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, jwks) = check(
        &doc,
        "/.well-known/jwks.json",
        "get",
        client
            .get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, jwks), (StatusCode::OK, json!({"keys": []})));
}

/// An expiry whose offset carries it past the last instant a store can read back (year 9999
/// in UTC) is a 422 at `expires_at`, not a key that breaks every later listing with a 503.
#[tokio::test]
async fn an_expiry_beyond_the_years_a_store_keeps_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &secrets());
    let (code, _, err) = cli(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "far@example.com",
            "--password-stdin",
        ],
        &secrets(),
        PASSWORD,
    );
    assert_eq!(code, 0, "{err}");
    let (code, key, err) = cli(
        dir.path(),
        &[
            "key",
            "create",
            "--email",
            "far@example.com",
            "--name",
            "admin",
        ],
        &secrets(),
        "",
    );
    assert_eq!(code, 0, "{err}");
    let key = key.trim();
    let client = Client::new();
    let keys = server.url("/api/users/me/api-keys");
    let created = client
        .post(&keys)
        .bearer_auth(key)
        .json(&json!({"name": "far", "expires_at": "9999-12-31T23:59:59-23:59"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "expires_at"]));
    assert_eq!(body["detail"][0]["type"], "value_error");
    let listed = client.get(&keys).bearer_auth(key).send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
}

/// The document served at `/api/openapi.json` is the one `nexora-server openapi` prints, the
/// generated one: JSON, with every row of the auth route table under `/api` that the server
/// serves (GitHub's secret-scanning endpoint only when configured).
#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &secrets());
    let response = Client::new()
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value =
        serde_json::from_str(&response.text().await.unwrap()).expect("the served document is JSON");
    let (code, printed, err) = cli(dir.path(), &["openapi"], &[], "");
    assert_eq!(code, 0, "{err}");
    let printed: Value = serde_json::from_str(&printed).expect("the printed document is JSON");
    assert_eq!(served, printed);
    assert_eq!(served["openapi"], "3.1.0");
    for route in &nexora_auth_http::routes::ROUTES {
        let method = route.method.as_str().to_ascii_lowercase();
        let operation = &served["paths"][format!("/api{}", route.path)][&method];
        if route.endpoint == nexora_auth_http::routes::Endpoint::GitHubSecretScanning {
            assert!(operation.is_null(), "not configured, not documented");
            continue;
        }
        assert!(
            operation.is_object(),
            "{method} {} is not served",
            route.path
        );
        assert_eq!(operation["summary"], route.summary);
    }
}

#[tokio::test]
async fn unknown_routes_methods_and_oversized_bodies_answer_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-body-bytes", "1024"], &secrets());
    let client = Client::new();
    for (method, path, status) in [
        (Method::GET, "/nope", 404),
        (Method::GET, "/api/nope", 404),
        (Method::PUT, "/api/auth/login", 405),
        (Method::GET, "/api/auth/login", 405),
        (Method::DELETE, "/healthz", 405),
    ] {
        let response = client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].is_string(), "{method} {path}: {body}");
    }
    let big = json!({"email": "a@b.c", "password": "x".repeat(4096)}).to_string();
    let response = client
        .post(server.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].is_string());
    // A plain GET on the WebSocket route with a bad ?token= is a 401 before anything else.
    let plain = client
        .get(server.url("/api/ws/1?token=nxr_x"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn asymmetric_signing_key_publishes_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("signing.pem");
    std::fs::write(&pem, nexora_auth_testkit::keys::ES256_A).unwrap();
    let mut env = secrets();
    let pem_path = pem.display().to_string();
    env.push(("NEXORA_JWT_PRIVATE_KEY_FILE", &pem_path));
    env.push(("NEXORA_JWT_KEY_ID", "2026-11"));
    let server = Server::start(dir.path(), &[], &env);
    let (code, _, err) = cli(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "es@example.com",
            "--password-stdin",
        ],
        &env,
        PASSWORD,
    );
    assert_eq!(code, 0, "{err}");
    let client = Client::new();
    let jwks: Value = client
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "2026-11");
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    let login: Value = client
        .post(server.url("/api/auth/login"))
        .json(&json!({"email": "es@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();
    let header = token.split('.').next().unwrap();
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("ES256"), Some("2026-11"))
    );
    assert_eq!(
        client
            .get(server.url("/api/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

fn assert_one_line_error(code: i32, stderr: &str, needle: &str) {
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {stderr}");
    assert!(errors[0].contains(needle), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn startup_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| cli(dir.path(), args, env, "");
    let (code, _, err) = run(&["serve", "--database", "mysql://x"], &secrets());
    assert_one_line_error(code, &err, "bad database URL");
    let (code, _, err) = run(
        &[
            "serve",
            "--database",
            "postgres://postgres@127.0.0.1:1/nope",
        ],
        &secrets(),
    );
    assert_one_line_error(code, &err, "cannot connect to Postgres");
    let (code, _, err) = run(
        &["serve"],
        &[
            ("NEXORA_JWT_SECRET", "short"),
            ("NEXORA_KEY_PEPPER", PEPPER),
        ],
    );
    assert_one_line_error(code, &err, "NEXORA_JWT_SECRET is too short");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(&["serve", "--bind", &addr], &secrets());
    assert_one_line_error(code, &err, "cannot listen on");
    for bad in ["10.0.0.0/33", "not-an-address", "127.0.0.1/8,nonsense"] {
        let (code, _, err) = run(&["serve", "--trusted-proxies", bad], &secrets());
        assert_one_line_error(code, &err, "trusted");
    }
}

#[test]
fn generated_secrets_survive_a_restart_and_key_check_works_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = cli(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "gen@example.com",
            "--password-stdin",
        ],
        &[],
        PASSWORD,
    );
    assert_eq!(code, 0, "{err}");
    let pepper = std::fs::read(dir.path().join("nexora-data/key-pepper")).unwrap();
    let secret = std::fs::read(dir.path().join("nexora-data/jwt-secret")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("nexora-data/jwt-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (code, key, err) = cli(
        dir.path(),
        &[
            "key",
            "create",
            "--email",
            "gen@example.com",
            "--name",
            "automation",
        ],
        &[],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("nexora-data/key-pepper")).unwrap(),
        pepper,
        "same pepper reused"
    );
    assert_eq!(
        std::fs::read(dir.path().join("nexora-data/jwt-secret")).unwrap(),
        secret
    );
    let key = key.trim();
    let (code, out, _) = cli(dir.path(), &["key", "check"], &[], key);
    assert_eq!(code, 0);
    assert!(out.contains("valid"));
    let (code, _, err) = cli(dir.path(), &["key", "check"], &[], &key[..key.len() - 1]);
    assert_one_line_error(code, &err, "not a valid key");
    let (code, out, _) = cli(
        dir.path(),
        &["key", "list", "--email", "gen@example.com"],
        &[],
        "",
    );
    assert_eq!(code, 0);
    assert!(out.contains("automation") && !out.contains(key));
    let (code, out, _) = cli(dir.path(), &["user", "list"], &[], "");
    assert_eq!(code, 0);
    assert!(out.contains("gen@example.com"));
}
