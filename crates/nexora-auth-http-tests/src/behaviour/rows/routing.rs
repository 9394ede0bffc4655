//! Routing under `/api`: 404 and 405 in JSON, `Allow`, and `HEAD`.

use super::super::vocabulary::*;
use crate::Fixture;

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    let alice = bearer(&f.alice_key);
    vec![
        row(
            "unknown route → 404 JSON",
            http("GET", "/api/nope", vec![]),
            challenge(404, "Not Found", None),
        ),
        row(
            "unknown nested route → 404 JSON",
            http("GET", "/api/users/me/api-keys/x/y/z", alice.clone()),
            challenge(404, "Not Found", None),
        ),
        row(
            "wrong method → 405 JSON with Allow",
            http("PUT", ME, vec![]),
            not_allowed("GET,HEAD"),
        ),
        row(
            "HEAD on a GET route → 200, no body (both frameworks)",
            http("HEAD", ME, alice.clone()),
            expect(200, BodyCheck::Empty),
        ),
        row(
            "wrong method on login → 405 JSON with Allow",
            http("GET", "/api/auth/login", vec![]),
            not_allowed("POST"),
        ),
    ]
}
