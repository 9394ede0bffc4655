//! The layer (middleware) and extractors on the application's own routes.

use serde_json::json;

use super::super::vocabulary::*;
use crate::Fixture;

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    let alice = bearer(&f.alice_key);
    let alice_id = f.alice_id.clone();
    vec![
        row(
            "layer + RequireScope<AgentsRead>: allowed → 200",
            http("GET", "/agents", alice.clone()),
            expect(200, BodyCheck::Json(json!({"owner": alice_id.clone()}))),
        ),
        row(
            "layer: no credentials → 401",
            http("GET", "/agents", vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "layer: bad token → 401",
            http("GET", "/agents", bearer(&f.revoked_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "layer: ?token= not accepted without opt-in",
            http("GET", format!("/agents?token={}", f.alice_key), vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "RequireScope<AgentsRead> without the scope → 403",
            http("GET", "/agents", bearer(&f.manager_only_key)),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "layer: store unavailable → 503",
            http("GET", "/agents", bearer(&f.unavailable_key)),
            Expect {
                status: 503,
                body: BodyCheck::Detail("Service temporarily unavailable"),
                www_authenticate: None,
                retry_after: Some("1"),
                allow: None,
            },
        ),
        row(
            "optional layer: no credentials → no principal",
            http("GET", "/optional", vec![]),
            expect(200, BodyCheck::Json(json!({"owner": null}))),
        ),
        row(
            "optional layer: a credential → the principal",
            http("GET", "/optional", bearer(&f.alice_jwt)),
            expect(200, BodyCheck::Json(json!({"owner": alice_id.clone()}))),
        ),
        row(
            "optional layer: a bad credential → 401",
            http("GET", "/optional", bearer("nxr_bad")),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "an app handler's rate-limit rejection → 429 + Retry-After",
            http("GET", "/limited", vec![]),
            Expect {
                status: 429,
                body: BodyCheck::Detail("Too many requests"),
                www_authenticate: None,
                retry_after: Some("7"),
                allow: None,
            },
        ),
    ]
}
