//! Live users: a credential counts only while its user exists, is enabled and holds the scope.

use serde_json::json;

use super::super::vocabulary::*;
use crate::Fixture;

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    let alice_id = f.alice_id.clone();
    vec![
        row(
            "live users: a valid JWT whose sub names no user → 401",
            http("GET", "/agents", bearer(&f.ghost_jwt)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "live users: a standard JWT without scope carries the user's scopes → 200",
            http("GET", "/agents", bearer(&f.standard_jwt)),
            expect(200, BodyCheck::Json(json!({"owner": alice_id.clone()}))),
        ),
        row(
            "live users: a disabled user's key → 401",
            http("GET", "/agents", bearer(&f.disabled_user_credentials[0])),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "live users: a disabled user's JWT → 401",
            http("GET", "/agents", bearer(&f.disabled_user_credentials[1])),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "live users: a narrowed user's key loses the scope → 403",
            http("GET", "/agents", bearer(&f.narrowed_user_credentials[0])),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "live users: a narrowed user's JWT loses the scope → 403",
            http("GET", "/agents", bearer(&f.narrowed_user_credentials[1])),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "live users: a narrowed user's session still lists the key holding the lost scope",
            http("GET", KEYS, bearer(&f.narrowed_user_credentials[1])),
            expect(200, {
                let id = f.narrowed_user_key_id.clone();
                satisfies(move |b| {
                    let items = b.as_array().ok_or("not a list")?;
                    if items.iter().any(|k| k["id"] == id.as_str()) {
                        Ok(())
                    } else {
                        Err(format!("the key is hidden from its user: {b}"))
                    }
                })
            }),
        ),
        row(
            "live users: … but cannot rotate it (the new secret would store the lost scope) → 404",
            http(
                "POST",
                format!("{KEYS}/{}/rotate", f.narrowed_user_key_id),
                bearer(&f.narrowed_user_credentials[1]),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "live users: … and can revoke it → 204",
            http(
                "DELETE",
                format!("{KEYS}/{}", f.narrowed_user_key_id),
                bearer(&f.narrowed_user_credentials[1]),
            ),
            expect(204, BodyCheck::Empty),
        ),
    ]
}
