//! Credentials in the `Authorization` header: schemes, malformed values, bad keys and tokens, a store outage.

use serde_json::json;

use super::super::vocabulary::*;
use crate::{ALICE_EMAIL, Fixture};

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    let alice = bearer(&f.alice_key);
    let alice_me = BodyCheck::Json(json!({"id": f.alice_id, "email": ALICE_EMAIL}));
    vec![
        row(
            "no credentials → 401 + Bearer challenge",
            http("GET", ME, vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "API key → 200 {id, email}",
            http("GET", ME, alice.clone()),
            expect(200, alice_me.clone()),
        ),
        row(
            "JWT from login → 200",
            http("GET", ME, bearer(&f.alice_jwt)),
            expect(200, alice_me.clone()),
        ),
        row(
            "scheme is case-insensitive (bearer)",
            http(
                "GET",
                ME,
                vec![(
                    "authorization",
                    format!("bearer {}", f.alice_key).into_bytes(),
                )],
            ),
            expect(200, alice_me.clone()),
        ),
        row(
            "scheme is case-insensitive (BEARER)",
            http(
                "GET",
                ME,
                vec![(
                    "authorization",
                    format!("BEARER {}", f.alice_jwt).into_bytes(),
                )],
            ),
            expect(200, alice_me.clone()),
        ),
        row(
            "another scheme → 401 as if absent",
            http(
                "GET",
                ME,
                vec![("authorization", b"Basic YWxpY2U6cHc=".to_vec())],
            ),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "empty bearer token → 401 invalid_request",
            http("GET", ME, vec![("authorization", b"Bearer ".to_vec())]),
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        row(
            "non-ASCII bytes → 401 invalid_request",
            http(
                "GET",
                ME,
                vec![("authorization", b"Bearer nxr_\xc3\xa9t\xc3\xa9".to_vec())],
            ),
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        row(
            "two Authorization headers, even equal → 401 invalid_request",
            http("GET", ME, [alice.clone(), alice.clone()].concat()),
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        row(
            "garbage token → 401 invalid_token",
            http("GET", ME, bearer("not-a-token")),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "tampered key → 401 invalid_token",
            http("GET", ME, bearer(&tampered(&f.alice_key))),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "revoked key → 401 invalid_token",
            http("GET", ME, bearer(&f.revoked_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "expired key → 401 invalid_token",
            http("GET", ME, bearer(&f.expired_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "expired JWT → 401 invalid_token",
            http("GET", ME, bearer(&f.expired_jwt)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "JWT of another issuer's secret → 401 invalid_token",
            http("GET", ME, bearer(&f.foreign_jwt)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "?token= on a REST route is ignored → 401 missing",
            http("GET", format!("{ME}?token={}", f.alice_key), vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "?token= on a REST route does not conflict with the header",
            http("GET", format!("{ME}?token=other"), alice.clone()),
            expect(200, alice_me.clone()),
        ),
        row(
            "store unavailable → 503 + Retry-After, never 401",
            http("GET", ME, bearer(&f.unavailable_key)),
            Expect {
                status: 503,
                body: BodyCheck::Detail("Service temporarily unavailable"),
                www_authenticate: None,
                retry_after: Some("1"),
                allow: None,
            },
        ),
    ]
}

/// The key with its last character changed (to one it certainly is not).
fn tampered(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    format!("{head}{}", if last == "x" { 'y' } else { 'x' })
}
