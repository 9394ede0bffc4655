//! Derived tokens (`POST /api/auth/token`) and WebSocket tickets (`POST /api/auth/ws-tickets`):
//! who may ask, what they get, and what the derived token can do.

use nexora_auth_http::scopes::KEYS_MANAGE;
use serde_json::json;

use super::super::vocabulary::*;
use crate::Fixture;

const TOKEN: &str = "/api/auth/token";
const TICKETS: &str = "/api/auth/ws-tickets";

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    let alice = bearer(&f.alice_key);
    vec![
        row(
            "derive: no credentials → 401",
            json_body(TOKEN, vec![], JSON, "{}"),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "derive: a key, no body → 200 bearer token of the server's maximum life",
            http("POST", TOKEN, alice.clone()),
            expect(200, bearer_token(900)),
        ),
        row(
            "derive: a key asking fewer scopes and 60 s → 200, 60 s",
            json_body(
                TOKEN,
                alice.clone(),
                JSON,
                r#"{"scopes": ["agents:read"], "ttl_secs": 60}"#,
            ),
            expect(200, bearer_token(60)),
        ),
        row(
            "derive: a lifetime past the maximum is capped → 200, 900 s",
            json_body(TOKEN, alice.clone(), JSON, r#"{"ttl_secs": 999999}"#),
            expect(200, bearer_token(900)),
        ),
        row(
            "derive: ttl_secs 0 → 422 at body.ttl_secs",
            json_body(TOKEN, alice.clone(), JSON, r#"{"ttl_secs": 0}"#),
            expect(
                422,
                issue(
                    json!(["body", "ttl_secs"]),
                    "Input should be greater than or equal to 1",
                    "greater_than_equal",
                ),
            ),
        ),
        row(
            "derive: scopes the key does not hold → 403, no challenge",
            json_body(
                TOKEN,
                bearer(&f.reader_key),
                JSON,
                &format!(r#"{{"scopes": ["{KEYS_MANAGE}"]}}"#),
            ),
            challenge(403, "Cannot grant scopes you do not have", None),
        ),
        row(
            "derive: a login JWT → 403 (an API key only)",
            http("POST", TOKEN, bearer(&f.alice_jwt)),
            challenge(403, KEY_REQUIRED, None),
        ),
        row(
            "derive: a derived token cannot derive → 403",
            http("POST", TOKEN, bearer(&f.derived_token)),
            challenge(403, KEY_REQUIRED, None),
        ),
        row(
            "derive: a revoked key → 401",
            http("POST", TOKEN, bearer(&f.revoked_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "derive: GET → 405 Allow: POST",
            http("GET", TOKEN, alice.clone()),
            not_allowed("POST"),
        ),
        row(
            "derived token: acts as its key → 200",
            http("GET", "/agents", bearer(&f.derived_token)),
            expect(200, BodyCheck::Json(json!({"owner": f.alice_id}))),
        ),
        row(
            "derived token: its key revoked → 401",
            http("GET", "/agents", bearer(&f.derived_of_revoked)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "derived token: a key it creates counts as created by its key, capped at its expiry",
            json_body(
                KEYS,
                bearer(&f.derived_from_short_lived),
                JSON,
                r#"{"name": "from a derived token"}"#,
            ),
            expect(
                201,
                minted_by(&f.short_lived_key_id, &f.short_lived_expires_at),
            ),
        ),
        row(
            "tickets: no credentials → 401",
            http("POST", TICKETS, vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "tickets: a key, for a chat → 200 {ticket, expires_in: 30}",
            json_body(TICKETS, alice.clone(), JSON, r#"{"chat_id": "chat-1"}"#),
            expect(200, ticket_body()),
        ),
        row(
            "tickets: a JWT, no body → 200",
            http("POST", TICKETS, bearer(&f.alice_jwt)),
            expect(200, ticket_body()),
        ),
        row(
            "tickets: a chat id over 128 bytes → 422 at body.chat_id",
            json_body(
                TICKETS,
                alice,
                JSON,
                &format!(r#"{{"chat_id": "{}"}}"#, "c".repeat(129)),
            ),
            expect(
                422,
                issue(
                    json!(["body", "chat_id"]),
                    "Chat id must be at most 128 bytes",
                    "string_too_long",
                ),
            ),
        ),
    ]
}

const KEY_REQUIRED: &str = "An API key is required to derive a token";

/// `{"access_token", "token_type": "bearer", "expires_in": seconds}`, nothing else.
fn bearer_token(seconds: u64) -> BodyCheck {
    satisfies(move |b| {
        let fields = b.as_object().ok_or("not an object")?;
        if fields.len() != 3
            || b["token_type"] != "bearer"
            || b["expires_in"] != seconds
            || b["access_token"]
                .as_str()
                .is_none_or(|t| t.split('.').count() != 3)
        {
            return Err(format!("want a bearer token of {seconds} s, got {b}"));
        }
        Ok(())
    })
}

/// `{"ticket": "nxt_…", "expires_in": 30}`, nothing else.
fn ticket_body() -> BodyCheck {
    satisfies(|b| {
        let ticket = b["ticket"].as_str().unwrap_or_default();
        let well_formed = ticket.len() == 36
            && ticket.starts_with("nxt_")
            && ticket[4..].bytes().all(|c| c.is_ascii_alphanumeric());
        if b.as_object().map(serde_json::Map::len) != Some(2)
            || !well_formed
            || b["expires_in"] != 30
        {
            return Err(format!("want {{ticket, expires_in: 30}}, got {b}"));
        }
        Ok(())
    })
}
