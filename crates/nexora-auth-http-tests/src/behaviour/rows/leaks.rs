//! When a key leaks: revoking a key by its text (`POST /api/keys/revoke`) and GitHub's signed
//! secret-scanning reports (`POST /api/secret-scanning/github`).

use nexora_auth::ApiKey;
use nexora_auth_testkit::github::{GitHubSigner, report};
use serde_json::{Value, json};

use super::super::vocabulary::*;
use crate::Fixture;

const REVOKE: &str = "/api/keys/revoke";
const GITHUB: &str = "/api/secret-scanning/github";
const ACCEPTED: &str = r#"{"status":"accepted"}"#;
const UNSIGNED: &str = "Invalid or missing GitHub signature";

/// `{"key": <text>}`, posted to the revoke endpoint.
fn possession(key: &str) -> Probe {
    json_body(REVOKE, vec![], JSON, &json!({ "key": key }).to_string())
}

fn accepted() -> Expect {
    expect(
        202,
        BodyCheck::Json(serde_json::from_str(ACCEPTED).expect("JSON")),
    )
}

/// A report of `body` with these signature headers (lower-case names, raw values).
fn signed(body: &str, headers: &[(&'static str, &str)]) -> Probe {
    let headers = headers
        .iter()
        .map(|(name, value)| (*name, value.as_bytes().to_vec()))
        .collect();
    json_body(GITHUB, headers, JSON, body)
}

/// `body` signed by `signer`, as GitHub sends it.
fn signed_by(signer: &GitHubSigner, body: &str) -> Probe {
    let signature = signer.sign(body.as_bytes());
    signed(
        body,
        &[
            ("github-public-key-identifier", signer.identifier()),
            ("github-public-key-signature", &signature),
        ],
    )
}

fn unsigned() -> Expect {
    challenge(401, UNSIGNED, None)
}

/// The 401 of a key that no longer authenticates.
fn refused() -> Expect {
    challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN)
}

fn me_as(key: &str) -> Probe {
    http("GET", ME, bearer(key))
}

fn me_of(id: &str, email: &str) -> Expect {
    expect(200, BodyCheck::Json(json!({"id": id, "email": email})))
}

/// `text` with its last character changed: a key with a bad checksum.
fn flipped(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

fn feedback(entries: &[(&str, &str)]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|(token, label)| {
                json!({"token_raw": token, "token_type": "nexora_api_key", "label": label})
            })
            .collect(),
    )
}

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    let unknown = ApiKey::generate().expect("OS randomness");
    let unknown = unknown.expose().to_owned();
    let (leaked, _) = f.leaked_key.clone();
    let url = "https://github.com/octo/app/blob/main/.env";
    let batch = report(&[
        (&leaked, url),
        (&f.revoked_key, url),
        (&unknown, url),
        (&flipped(&f.finn_key), url),
        (&leaked, "https://github.com/octo/app/commit/1"),
        ("ghp_notoneofours", url),
    ]);
    let tampered = batch.replace(&unknown, &f.finn_key);
    let signature = f.github.sign(batch.as_bytes());
    let too_many = format!("[{}{{}}]", "{},".repeat(1_000));
    let over_limit = format!(r#"[{{"token":"{}"}}]"#, "x".repeat(1024 * 1024));
    let finn = || me_of(&f.finn_id, "finn@example.com");
    vec![
        // Revoke by possession.
        row(
            "revoke by possession: a live key → 202",
            possession(&f.found_key),
            accepted(),
        ),
        row(
            "revoke by possession: … and it is refused from then on",
            me_as(&f.found_key),
            refused(),
        ),
        row(
            "revoke by possession: the same key again → the same 202",
            possession(&f.found_key),
            accepted(),
        ),
        row(
            "revoke by possession: an unknown key → the same 202",
            possession(&unknown),
            accepted(),
        ),
        row(
            "revoke by possession: a mistyped key → the same 202, and nothing else ends",
            possession(&flipped(&f.finn_key)),
            accepted(),
        ),
        row(
            "revoke by possession: not a key at all → the same 202",
            possession("ghp_notoneofours"),
            accepted(),
        ),
        row(
            "revoke by possession: the other keys of the owner still work",
            me_as(&f.finn_key),
            finn(),
        ),
        row(
            "revoke by possession: malformed JSON → 422",
            json_body(REVOKE, vec![], JSON, "{key: x}"),
            expect(
                422,
                issue(json!(["body", 1]), "JSON decode error", "json_invalid"),
            ),
        ),
        row(
            "revoke by possession: no key → 422",
            json_body(REVOKE, vec![], JSON, "{}"),
            expect(
                422,
                issue(json!(["body", "key"]), "Field required", "missing"),
            ),
        ),
        row(
            "revoke by possession: a key that is not a string → 422",
            json_body(REVOKE, vec![], JSON, r#"{"key": 42}"#),
            expect(
                422,
                issue(
                    json!(["body", "key"]),
                    "Input should be a valid string",
                    "string_type",
                ),
            ),
        ),
        row(
            "revoke by possession: GET → 405 with Allow",
            http("GET", REVOKE, vec![]),
            not_allowed("POST"),
        ),
        // GitHub secret scanning: what is not signed by GitHub changes nothing.
        row(
            "secret scanning: no signature headers → 401, no challenge",
            signed(&batch, &[]),
            unsigned(),
        ),
        row(
            "secret scanning: no signature → 401",
            signed(
                &batch,
                &[("github-public-key-identifier", f.github.identifier())],
            ),
            unsigned(),
        ),
        row(
            "secret scanning: no key identifier → 401",
            signed(&batch, &[("github-public-key-signature", &signature)]),
            unsigned(),
        ),
        row(
            "secret scanning: signed by a key GitHub never published → 401",
            signed_by(&f.not_github, &batch),
            unsigned(),
        ),
        row(
            "secret scanning: a tampered body → 401",
            signed(
                &tampered,
                &[
                    ("github-public-key-identifier", f.github.identifier()),
                    ("github-public-key-signature", &signature),
                ],
            ),
            unsigned(),
        ),
        row(
            "secret scanning: a signature that is not base64 → 401",
            signed(
                &batch,
                &[
                    ("github-public-key-identifier", f.github.identifier()),
                    ("github-public-key-signature", "not base64!"),
                ],
            ),
            unsigned(),
        ),
        row(
            "secret scanning: a signature that is not DER → 401",
            signed(
                &batch,
                &[
                    ("github-public-key-identifier", f.github.identifier()),
                    ("github-public-key-signature", "bm90IERFUg=="),
                ],
            ),
            unsigned(),
        ),
        row(
            "secret scanning: after the refused reports, the keys in them still work",
            me_as(&leaked),
            finn(),
        ),
        row(
            "secret scanning: … the key a tampered body put in too",
            me_as(&f.finn_key),
            finn(),
        ),
        row(
            "secret scanning: GET → 405 with Allow",
            http("GET", GITHUB, vec![]),
            not_allowed("POST"),
        ),
        row(
            "secret scanning: a signed report that is not a list → 422",
            signed_by(&f.github, r#"{"token": "nxr_x"}"#),
            expect(
                422,
                issue(json!(["body"]), "Input should be a valid list", "list_type"),
            ),
        ),
        row(
            "secret scanning: a signed report of more than 1,000 matches → 422",
            signed_by(&f.github, &too_many),
            expect(
                422,
                issue(
                    json!(["body"]),
                    "List should have at most 1000 items after validation, not 1001",
                    "too_long",
                ),
            ),
        ),
        row(
            "secret scanning: a match without a token → 422",
            signed_by(&f.github, r#"[{"type": "nexora_api_key"}]"#),
            expect(
                422,
                issue(json!(["body", 0, "token"]), "Field required", "missing"),
            ),
        ),
        row(
            "secret scanning: a report over 1 MiB → 413",
            signed_by(&f.github, &over_limit),
            challenge(413, "Request body too large", None),
        ),
        // A signed report: the live key is revoked with the key it minted; the rest are
        // false positives.
        row(
            "secret scanning: a signed report → 200, GitHub's labels",
            signed_by(&f.github, &batch),
            expect(
                200,
                BodyCheck::Json(feedback(&[
                    (&leaked, "true_positive"),
                    (&f.revoked_key, "false_positive"),
                    (&unknown, "false_positive"),
                    (&flipped(&f.finn_key), "false_positive"),
                    (&leaked, "true_positive"),
                    ("ghp_notoneofours", "false_positive"),
                ])),
            ),
        ),
        row(
            "secret scanning: the reported key is refused from then on",
            me_as(&leaked),
            refused(),
        ),
        row(
            "secret scanning: … and so is the key it created",
            me_as(&f.leaked_child),
            refused(),
        ),
        row(
            "secret scanning: the owner's other keys still work",
            me_as(&f.finn_key),
            finn(),
        ),
        row(
            "secret scanning: the same report again (a replay) → 200, nothing live left",
            signed_by(&f.github, &report(&[(&leaked, url)])),
            expect(
                200,
                BodyCheck::Json(feedback(&[(&leaked, "false_positive")])),
            ),
        ),
    ]
}
