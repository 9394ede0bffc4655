//! The key-management policy: what a narrower key may see and do, lineage, and cascading revokes.

use nexora_auth_http::scopes::KEYS_MANAGE;
use serde_json::{Value, json};

use super::super::vocabulary::*;
use crate::Fixture;

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    let alice = bearer(&f.alice_key);
    let manager_only = bearer(&f.manager_only_key);
    let short_lived = bearer(&f.short_lived_key);
    let (parent_id, child_id) = (f.parent_key.1.clone(), f.child_key.1.clone());
    vec![
        row(
            "policy: a keys:manage-only key cannot rotate a broader sibling → 404",
            http(
                "POST",
                format!("{KEYS}/{}/rotate", f.rotate_me.1),
                manager_only.clone(),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "policy: a keys:manage-only key cannot revoke a broader sibling → 404",
            http(
                "DELETE",
                format!("{KEYS}/{}", f.rotate_me.1),
                manager_only.clone(),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "policy: a keys:manage-only key lists only keys within its scopes",
            http("GET", KEYS, manager_only.clone()),
            expect(
                200,
                satisfies(move |b| {
                    let items = b.as_array().ok_or("not a list")?;
                    let within = |k: &&Value| k["scopes"] == json!([KEYS_MANAGE]);
                    if !items.is_empty() && items.iter().all(|k| within(&k)) {
                        Ok(())
                    } else {
                        Err(format!("listed keys beyond keys:manage: {b}"))
                    }
                }),
            ),
        ),
        row(
            "policy: a key with an expiry creates a key that expires with it",
            json_body(KEYS, short_lived.clone(), JSON, r#"{"name": "minted"}"#),
            expect(
                201,
                minted_by(&f.short_lived_key_id, &f.short_lived_expires_at),
            ),
        ),
        row(
            "policy: a later requested expiry is capped at the creator's",
            json_body(
                KEYS,
                short_lived.clone(),
                JSON,
                r#"{"name": "minted later", "expires_at": "2999-01-01T00:00:00Z"}"#,
            ),
            expect(
                201,
                minted_by(&f.short_lived_key_id, &f.short_lived_expires_at),
            ),
        ),
        row(
            "policy: a key with an expiry lists no key that outlives it",
            http("GET", KEYS, short_lived.clone()),
            expect(
                200,
                satisfies(|b| {
                    let items = b.as_array().ok_or("not a list")?;
                    if !items.is_empty() && items.iter().all(|k| !k["expires_at"].is_null()) {
                        Ok(())
                    } else {
                        Err(format!("listed a key without expiry: {b}"))
                    }
                }),
            ),
        ),
        row(
            "lineage: the list says what created each key",
            http("GET", KEYS, alice.clone()),
            expect(200, {
                let (parent_id, child_id) = (parent_id.clone(), child_id.clone());
                satisfies(move |b| {
                    let items = b.as_array().ok_or("not a list")?;
                    let by_id = |id: &str| items.iter().find(|k| k["id"] == id).cloned();
                    let child = by_id(&child_id).ok_or("child not listed")?;
                    let parent = by_id(&parent_id).ok_or("parent not listed")?;
                    if child["created_by"] == json!({"kind": "key", "key_id": parent_id})
                        && parent["created_by"] == json!({"kind": "user"})
                    {
                        Ok(())
                    } else {
                        Err(format!("created_by: child {child}, parent {parent}"))
                    }
                })
            }),
        ),
        row(
            "cascade: a value other than a boolean → 422",
            http(
                "DELETE",
                format!("{KEYS}/{parent_id}?cascade=maybe"),
                alice.clone(),
            ),
            expect(
                422,
                issue(
                    json!(["query", "cascade"]),
                    "Input should be a valid boolean, unable to interpret input",
                    "bool_parsing",
                ),
            ),
        ),
        row(
            "cascade: revoke a key and every key it created → 204",
            http(
                "DELETE",
                format!("{KEYS}/{parent_id}?cascade=true"),
                alice.clone(),
            ),
            expect(204, BodyCheck::Empty),
        ),
        row(
            "cascade: the created key is revoked with its creator → 401",
            http("GET", "/agents", bearer(&f.child_key.0)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "cascade: the creator itself → 401",
            http("GET", "/agents", bearer(&f.parent_key.0)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
    ]
}
