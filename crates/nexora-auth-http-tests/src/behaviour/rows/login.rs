//! Logins: the answer to a correct, a wrong and a malformed login, and the throttle's lockout.

use serde_json::json;

use super::super::vocabulary::*;
use crate::{ALICE_EMAIL, ALICE_PASSWORD};

/// The rows of this subject, in the order they run.
pub(crate) fn rows() -> Vec<Row> {
    let login_body = format!(r#"{{"email": "{ALICE_EMAIL}", "password": "{ALICE_PASSWORD}"}}"#);
    vec![
        row(
            "login: correct password → 200 bearer token",
            json_body("/api/auth/login", vec![], JSON, &login_body),
            expect(
                200,
                satisfies(|b| {
                    let ok = b["token_type"] == "bearer"
                        && b["access_token"]
                            .as_str()
                            .is_some_and(|t| t.split('.').count() == 3)
                        && b["expires_in"].as_u64().is_some();
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("bad login body {b}"))
                    }
                }),
            ),
        ),
        row(
            "login: wrong password → 401, no challenge",
            json_body(
                "/api/auth/login",
                vec![],
                JSON,
                &format!(r#"{{"email": "{ALICE_EMAIL}", "password": "nope"}}"#),
            ),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: unknown email reads the same as a wrong password",
            json_body(
                "/api/auth/login",
                vec![],
                JSON,
                r#"{"email": "nobody@example.com", "password": "nope"}"#,
            ),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 1 of 5 for an email → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 2 → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 3 → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 4 → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 5 → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: the email is now locked → 429 + Retry-After, never 401",
            mallory(),
            Expect {
                status: 429,
                body: BodyCheck::Detail("Too many requests"),
                www_authenticate: None,
                retry_after: Some(ANY_SECONDS),
                allow: None,
            },
        ),
        row(
            "login: missing field → 422 missing",
            json_body("/api/auth/login", vec![], JSON, r#"{"email": "a@b.c"}"#),
            expect(
                422,
                issue(json!(["body", "password"]), "Field required", "missing"),
            ),
        ),
        row(
            "login: wrong type → 422 string_type",
            json_body(
                "/api/auth/login",
                vec![],
                JSON,
                r#"{"email": 5, "password": "x"}"#,
            ),
            expect(
                422,
                issue(
                    json!(["body", "email"]),
                    "Input should be a valid string",
                    "string_type",
                ),
            ),
        ),
        row(
            "login: malformed JSON → 422 json_invalid at the byte offset",
            json_body("/api/auth/login", vec![], JSON, r#"{"email": "#),
            expect(
                422,
                issue(json!(["body", 10]), "JSON decode error", "json_invalid"),
            ),
        ),
        row(
            "login: empty body → 422 missing body",
            json_body("/api/auth/login", vec![], JSON, ""),
            expect(422, issue(json!(["body"]), "Field required", "missing")),
        ),
        row(
            "login: non-JSON content type → 422",
            json_body("/api/auth/login", vec![], Some("text/plain"), &login_body),
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
            "login: body over 64 KiB → 413",
            json_body("/api/auth/login", vec![], JSON, &" ".repeat(65 * 1024)),
            challenge(413, "Request body too large", None),
        ),
    ]
}

/// A failed login for an email of its own (throttled after five failures).
fn mallory() -> Probe {
    json_body(
        "/api/auth/login",
        vec![],
        JSON,
        r#"{"email": "mallory@example.com", "password": "guess"}"#,
    )
}
