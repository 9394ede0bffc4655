//! Answers that must be byte-identical: a bad key reads the same whatever made it bad, and an
//! unknown key id the same as another user's.

use nexora_auth::{ApiKey, KeyId};

use super::wire::{RawRequest, find, send_raw};
use crate::Fixture;

/// Requests whose answers must be byte-identical (but for `Date`).
#[derive(Debug, Clone)]
pub struct IdenticalGroup {
    /// What the group shows.
    pub name: String,
    /// The expected status of every member.
    pub status: u16,
    /// The members: a label and the request.
    pub requests: Vec<(String, RawRequest)>,
}

/// The byte-identical groups: unknown vs revoked vs expired vs forged keys (on each route),
/// unknown vs another user's key id on the management endpoints, and every kind of key that
/// is not live on the revoke-by-possession endpoint.
pub fn identical_groups(f: &Fixture) -> Vec<IdenticalGroup> {
    let unknown = ApiKey::generate().expect("OS randomness");
    let bob_id = KeyId::parse_str(&f.bob_key_id).expect("a key id");
    let forged_bob = ApiKey::generate_for(bob_id).expect("OS randomness");
    let alice_id = ApiKey::parse(&f.alice_key).expect("a valid key").id();
    let forged_alice = ApiKey::generate_for(alice_id).expect("OS randomness");
    let keys = [
        ("unknown id", unknown.expose().to_owned()),
        ("revoked", f.revoked_key.clone()),
        ("expired", f.expired_key.clone()),
        (
            "another owner's id, wrong secret",
            forged_bob.expose().to_owned(),
        ),
        ("own id, wrong secret", forged_alice.expose().to_owned()),
    ];
    let mut groups = Vec::new();
    for path in ["/agents", "/api/users/me", "/api/users/me/api-keys"] {
        groups.push(IdenticalGroup {
            name: format!("bad keys on {path}"),
            status: 401,
            requests: keys
                .iter()
                .map(|(label, key)| {
                    let header = ("authorization", format!("Bearer {key}").into_bytes());
                    ((*label).to_owned(), RawRequest::get(path, vec![header]))
                })
                .collect(),
        });
    }
    groups.push(IdenticalGroup {
        name: "bad keys as ?token= on the WebSocket route".into(),
        status: 401,
        requests: keys
            .iter()
            .map(|(label, key)| {
                let mut request = RawRequest::get(format!("/ws/chat-1?token={key}"), vec![]);
                request.websocket = true;
                ((*label).to_owned(), request)
            })
            .collect(),
    });
    let header = || {
        vec![(
            "authorization",
            format!("Bearer {}", f.alice_key).into_bytes(),
        )]
    };
    let random_id = KeyId::new_random().to_string();
    for (method, suffix, members) in [
        (
            "POST",
            "/rotate",
            vec![
                ("unknown id", random_id.clone()),
                ("another owner's key", f.bob_key_id.clone()),
                ("own revoked key", f.revoked_key_id.clone()),
            ],
        ),
        (
            "DELETE",
            "",
            vec![
                ("unknown id", random_id.clone()),
                ("another owner's key", f.bob_key_id.clone()),
            ],
        ),
    ] {
        groups.push(IdenticalGroup {
            name: format!("{method} api-keys/{{id}}{suffix}"),
            status: 404,
            requests: members
                .into_iter()
                .map(|(label, id)| {
                    let request = RawRequest {
                        method,
                        target: format!("/api/users/me/api-keys/{id}{suffix}"),
                        headers: header(),
                        body: None,
                        websocket: false,
                    };
                    (label.to_owned(), request)
                })
                .collect(),
        });
    }
    // Revoke by possession: one answer whatever the key. (That a live key gets it too, and
    // is revoked, is in tests/leaks.rs: a group here runs twice on one fixture.)
    let mut flipped = f.finn_key.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let finn_id = ApiKey::parse(&f.finn_key).expect("a valid key").id();
    let forged_finn = ApiKey::generate_for(finn_id).expect("OS randomness");
    groups.push(IdenticalGroup {
        name: "POST /api/keys/revoke".into(),
        status: 202,
        requests: [
            ("unknown id", unknown.expose().to_owned()),
            ("revoked", f.revoked_key.clone()),
            ("expired", f.expired_key.clone()),
            ("own id, wrong secret", forged_finn.expose().to_owned()),
            ("malformed", String::from_utf8(flipped).expect("ASCII")),
            ("not a key", "ghp_notoneofours".to_owned()),
        ]
        .into_iter()
        .map(|(label, key)| {
            let request = RawRequest {
                method: "POST",
                target: "/api/keys/revoke".into(),
                headers: vec![("content-type", b"application/json".to_vec())],
                body: Some(format!(r#"{{"key": "{key}"}}"#).into_bytes()),
                websocket: false,
            };
            (label.to_owned(), request)
        })
        .collect(),
    });
    groups
}

/// Sends each group and returns one line per group whose answers differ (or are not its
/// expected status, or echo a key).
pub async fn run_identical(base_url: &str, groups: &[IdenticalGroup]) -> Vec<String> {
    let mut failures = Vec::new();
    for group in groups {
        let mut first: Option<(String, String)> = None;
        for (label, request) in &group.requests {
            let response = match send_raw(base_url, request).await {
                Ok(response) => response,
                Err(why) => {
                    failures.push(format!("{}: {label}: no answer: {why}", group.name));
                    continue;
                }
            };
            if response.status != group.status {
                failures.push(format!(
                    "{}: {label}: status {}, want {}",
                    group.name, response.status, group.status
                ));
            }
            let token = request
                .headers
                .iter()
                .find(|(n, _)| *n == "authorization")
                .map(|(_, v)| String::from_utf8_lossy(v).replace("Bearer ", ""));
            if let Some(token) = token
                && find(&response.raw, token.as_bytes()).is_some()
            {
                failures.push(format!(
                    "{}: {label}: the answer echoes the key",
                    group.name
                ));
            }
            let comparable = response.comparable();
            match &first {
                None => first = Some((label.clone(), comparable)),
                Some((first_label, want)) if *want != comparable => failures.push(format!(
                    "{}: {label} differs from {first_label}:\n{comparable}\n--- vs ---\n{want}",
                    group.name
                )),
                Some(_) => {}
            }
        }
    }
    failures
}
