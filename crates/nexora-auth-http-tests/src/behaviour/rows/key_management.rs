//! Key management: list, create, rotate and revoke, with their 403, 404 and 422 answers.

use nexora_auth::KeyId;
use nexora_auth_http::scopes::{AGENTS_READ, KEYS_MANAGE};
use serde_json::json;

use super::super::vocabulary::*;
use crate::Fixture;

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    let alice = bearer(&f.alice_key);
    let (rotate_key, rotate_id) = f.rotate_me.clone();
    let (revoke_key, revoke_id) = f.revoke_me.clone();
    let alice_key = f.alice_key.clone();
    vec![
        row(
            "list without credentials → 401",
            http("GET", KEYS, vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "list without keys:manage → 403 insufficient_scope",
            http("GET", KEYS, bearer(&f.reader_key)),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "create without keys:manage → 403 before the body is read",
            json_body(KEYS, bearer(&f.reader_key), JSON, "not json"),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "list → 200, never a key, secret or digest",
            http("GET", KEYS, alice.clone()),
            expect(
                200,
                satisfies(move |b| {
                    let list = b.as_array().ok_or("not an array")?;
                    if list.len() < 5 {
                        return Err(format!("expected alice's keys, got {}", list.len()));
                    }
                    let text = b.to_string();
                    if text.contains(&alice_key)
                        || text.contains("digest")
                        || list.iter().any(|k| k.get("key").is_some())
                    {
                        return Err(format!("list leaks key material: {text}"));
                    }
                    Ok(())
                }),
            ),
        ),
        row(
            "create → 201 {id, name, key, created_at, last_used_at, scopes, expires_at, display}",
            json_body(KEYS, alice.clone(), JSON, r#"{"name": "CI pipeline"}"#),
            expect(
                201,
                satisfies(|b| {
                    created_key_shape(b)?;
                    if b["name"] != "CI pipeline"
                        || b["scopes"] != json!([AGENTS_READ, KEYS_MANAGE])
                    {
                        return Err(format!("unexpected {b}"));
                    }
                    Ok(())
                }),
            ),
        ),
        row(
            "create with a JWT works too",
            json_body(
                KEYS,
                bearer(&f.alice_jwt),
                Some("application/json; charset=utf-8"),
                r#"{"name": "from jwt", "scopes": ["agents:read"]}"#,
            ),
            expect(
                201,
                satisfies(|b| {
                    if b["scopes"] == json!([AGENTS_READ]) {
                        created_key_shape(b)
                    } else {
                        Err(format!("{b}"))
                    }
                }),
            ),
        ),
        row(
            "create: missing name → 422",
            json_body(KEYS, alice.clone(), JSON, r#"{"scopes": []}"#),
            expect(
                422,
                issue(json!(["body", "name"]), "Field required", "missing"),
            ),
        ),
        row(
            "create: wrong type → 422",
            json_body(
                KEYS,
                alice.clone(),
                JSON,
                r#"{"name": "x", "scopes": "agents:read"}"#,
            ),
            expect(
                422,
                issue(
                    json!(["body", "scopes"]),
                    "Input should be a valid list",
                    "list_type",
                ),
            ),
        ),
        row(
            "create: malformed JSON → 422",
            json_body(KEYS, alice.clone(), JSON, "{name: x}"),
            expect(
                422,
                issue(json!(["body", 1]), "JSON decode error", "json_invalid"),
            ),
        ),
        row(
            "create: form content type → 422",
            json_body(
                KEYS,
                alice.clone(),
                Some("application/x-www-form-urlencoded"),
                "name=x",
            ),
            expect(
                422,
                issue(
                    json!(["body"]),
                    "Content-Type must be application/json",
                    "model_attributes_type",
                ),
            ),
        ),
        row(
            "create: expiry in the past → 422",
            json_body(
                KEYS,
                alice.clone(),
                JSON,
                r#"{"name": "x", "expires_at": "2001-01-01T00:00:00Z"}"#,
            ),
            expect(
                422,
                issue(
                    json!(["body", "expires_at"]),
                    "Expiry must be in the future",
                    "value_error",
                ),
            ),
        ),
        row(
            "create: scopes the creator lacks → 403",
            json_body(
                KEYS,
                bearer(&f.manager_only_key),
                JSON,
                r#"{"name": "x", "scopes": ["agents:read"]}"#,
            ),
            challenge(403, "Cannot grant scopes you do not have", None),
        ),
        row(
            "rotate → 200 with a new key, same id",
            http("POST", format!("{KEYS}/{rotate_id}/rotate"), alice.clone()),
            expect(
                200,
                satisfies(move |b| {
                    created_key_shape(b)?;
                    if b["id"] != rotate_id.as_str() {
                        Err(format!("id changed: {b}"))
                    } else {
                        Ok(())
                    }
                }),
            ),
        ),
        row(
            "the rotated-out key → 401 at once",
            http("GET", ME, bearer(&rotate_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "rotate another user's key → 404",
            http(
                "POST",
                format!("{KEYS}/{}/rotate", f.bob_key_id),
                alice.clone(),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "rotate an unknown id → 404",
            http(
                "POST",
                format!("{KEYS}/{}/rotate", KeyId::new_random()),
                alice.clone(),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "rotate a malformed id → 422 uuid_parsing",
            http("POST", format!("{KEYS}/not-a-uuid/rotate"), alice.clone()),
            expect(
                422,
                issue(
                    json!(["path", "key_id"]),
                    "Input should be a valid UUID",
                    "uuid_parsing",
                ),
            ),
        ),
        row(
            "rotate without keys:manage → 403",
            http(
                "POST",
                format!("{KEYS}/{}/rotate", f.bob_key_id),
                bearer(&f.reader_key),
            ),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "revoke → 204, empty",
            http("DELETE", format!("{KEYS}/{revoke_id}"), alice.clone()),
            expect(204, BodyCheck::Empty),
        ),
        row(
            "the revoked key → 401",
            http("GET", ME, bearer(&revoke_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "revoke again → 404: a revoked key is gone, as from the list and rotate",
            http("DELETE", format!("{KEYS}/{revoke_id}"), alice.clone()),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "revoke another user's key → 404",
            http("DELETE", format!("{KEYS}/{}", f.bob_key_id), alice.clone()),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "revoke a malformed id → 422",
            http("DELETE", format!("{KEYS}/123"), alice.clone()),
            expect(
                422,
                issue(
                    json!(["path", "key_id"]),
                    "Input should be a valid UUID",
                    "uuid_parsing",
                ),
            ),
        ),
    ]
}
