//! List, create and rotate never return a digest, nor the secret of any key other than the
//! one just issued.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use nexora_auth::{ApiKey, KeyStore};
use serde_json::Value;

use super::wire::{RawRequest, send_raw};
use crate::Fixture;

/// Every text form a digest could take in a JSON body.
pub(super) fn digest_forms(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        hex.to_ascii_uppercase(),
        hex,
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ]
}

/// What no key-management answer may contain: every key of the fixture, its secret part,
/// and the digest of each.
pub(super) async fn forbidden_material(f: &Fixture, keys: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for key in keys {
        out.push(key.clone());
        out.push(key[26..58].to_owned());
        if let Ok(parsed) = ApiKey::parse(key)
            && let Ok(Some(record)) = f.keys.find(parsed.id()).await
        {
            out.extend(digest_forms(record.digest.digest.as_bytes()));
        }
    }
    out
}

pub(super) fn leaks(text: &str, forbidden: &[String]) -> Option<String> {
    forbidden
        .iter()
        .find(|s| text.contains(s.as_str()))
        .map(|s| format!("contains forbidden material ({} chars)", s.len()))
}

pub(super) const LISTED_FIELDS: [&str; 10] = [
    "created_at",
    "created_by",
    "credits",
    "display",
    "expires_at",
    "id",
    "last_used_at",
    "name",
    "rate_limit",
    "scopes",
];

pub(super) fn fields_of(object: &Value) -> Vec<String> {
    let mut fields: Vec<String> = object
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    fields.sort_unstable();
    fields
}

/// The answer to create or rotate: the created-key fields, a valid key, and — the key field
/// aside — none of `forbidden` nor the new key's secret.
pub(super) fn check_issued(
    what: &str,
    body: &Value,
    key: &str,
    forbidden: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fields: Vec<&str> = LISTED_FIELDS.to_vec();
    fields.push("key");
    fields.sort_unstable();
    if fields_of(body) != fields {
        problems.push(format!("{what} fields {:?}", fields_of(body)));
    }
    if !key.starts_with("nxr_") || key.len() != nexora_auth::KEY_LEN {
        problems.push(format!("{what}: no valid key in the answer"));
        return problems;
    }
    let mut rest = body.clone();
    rest["key"] = Value::Null;
    let mut forbidden = forbidden.to_vec();
    forbidden.push(key[26..58].to_owned());
    if let Some(why) = leaks(&rest.to_string(), &forbidden) {
        problems.push(format!("{what} {why}"));
    }
    problems
}

/// List, create and rotate (then revoke what was created) with Alice's key: the list holds
/// exactly the listed fields and no key material; create and rotate show the new key once and
/// nothing else secret (no digest, no other key's secret). Returns the problems found.
pub async fn check_key_material(base_url: &str, f: &Fixture) -> Vec<String> {
    let mut problems = Vec::new();
    let auth = || {
        vec![(
            "authorization",
            format!("Bearer {}", f.alice_key).into_bytes(),
        )]
    };
    let send = |method: &'static str, target: String, body: Option<&str>| {
        let mut headers = auth();
        if body.is_some() {
            headers.push(("content-type", b"application/json".to_vec()));
        }
        let request = RawRequest {
            method,
            target,
            headers,
            body: body.map(|b| b.as_bytes().to_vec()),
            websocket: false,
        };
        async move { send_raw(base_url, &request).await }
    };
    let forbidden = forbidden_material(f, &f.all_keys).await;

    match send("GET", "/api/users/me/api-keys".into(), None).await {
        Ok(r) if r.status == 200 => {
            let text = String::from_utf8_lossy(&r.body).into_owned();
            if let Some(why) = leaks(&text, &forbidden) {
                problems.push(format!("list {why}"));
            }
            let list: Value = serde_json::from_str(&text).unwrap_or_default();
            let items = list.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                problems.push(format!("list is empty or not an array: {text}"));
            }
            for item in items {
                if fields_of(&item) != LISTED_FIELDS {
                    problems.push(format!("list item fields {:?}", fields_of(&item)));
                }
            }
        }
        other => problems.push(format!("list: {other:?}")),
    }

    let created = match send(
        "POST",
        "/api/users/me/api-keys".into(),
        Some(r#"{"name": "leak check"}"#),
    )
    .await
    {
        Ok(r) if r.status == 201 => serde_json::from_slice::<Value>(&r.body).unwrap_or_default(),
        other => {
            problems.push(format!("create: {other:?}"));
            return problems;
        }
    };
    let new_key = created["key"].as_str().unwrap_or_default().to_owned();
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let mut created_digests = forbidden_material(f, std::slice::from_ref(&new_key)).await;
    created_digests.drain(..2.min(created_digests.len()));
    if created_digests.is_empty() {
        problems.push("create: the new key's digest is not in the store".into());
    }
    let mut also = forbidden.clone();
    also.extend(created_digests.iter().cloned());
    problems.extend(check_issued("create", &created, &new_key, &also));

    match send("POST", format!("/api/users/me/api-keys/{id}/rotate"), None).await {
        Ok(r) if r.status == 200 => {
            let rotated = serde_json::from_slice::<Value>(&r.body).unwrap_or_default();
            let rotated_key = rotated["key"].as_str().unwrap_or_default().to_owned();
            let mut also = forbidden_material(f, std::slice::from_ref(&rotated_key)).await;
            also.drain(..2.min(also.len()));
            also.extend(forbidden.iter().cloned());
            also.extend(created_digests.iter().cloned());
            if new_key.len() == nexora_auth::KEY_LEN {
                also.push(new_key.clone());
                also.push(new_key[26..58].to_owned());
            }
            problems.extend(check_issued("rotate", &rotated, &rotated_key, &also));
        }
        other => problems.push(format!("rotate: {other:?}")),
    }
    match send("DELETE", format!("/api/users/me/api-keys/{id}"), None).await {
        Ok(r) if r.status == 204 => {}
        other => problems.push(format!("revoke: {other:?}")),
    }
    problems
}
