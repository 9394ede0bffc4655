//! WebSockets: `?token=` and single-use `?ticket=` accepted only here, checked before the
//! upgrade.

use serde_json::Value;

use super::super::vocabulary::*;
use crate::Fixture;

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    vec![
        ws_row(
            "WebSocket: key in ?token= → 101",
            format!("/ws/chat-1?token={}", f.alice_key),
            vec![],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: JWT in ?token= → 101",
            format!("/ws/chat-1?token={}", f.alice_jwt),
            vec![],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: header only → 101",
            "/ws/chat-1".into(),
            vec![("authorization", format!("Bearer {}", f.alice_key))],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: header and the same ?token= → 101",
            format!("/ws/chat-1?token={}", f.alice_key),
            vec![("authorization", format!("Bearer {}", f.alice_key))],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: no token → 401, no upgrade",
            "/ws/chat-1".into(),
            vec![],
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        ws_row(
            "WebSocket: bad token → 401, no upgrade",
            "/ws/chat-1?token=nxr_not_a_key".into(),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: revoked key → 401, no upgrade",
            format!("/ws/chat-1?token={}", f.revoked_key),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: expired JWT → 401, no upgrade",
            format!("/ws/chat-1?token={}", f.expired_jwt),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: header and a different ?token= → 401, no upgrade",
            format!("/ws/chat-1?token={}", f.alice_jwt),
            vec![("authorization", format!("Bearer {}", f.alice_key))],
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        ws_row(
            "WebSocket: empty ?token= → 401, no upgrade",
            "/ws/chat-1?token=".into(),
            vec![],
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        ws_row(
            "WebSocket: a ticket and a header → 401 invalid_request, the ticket kept",
            format!("/ws/chat-1?ticket={}", f.ws_tickets[0]),
            vec![("authorization", format!("Bearer {}", f.alice_key))],
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        ws_row(
            "WebSocket: ticket for its chat → 101 as its principal",
            format!("/ws/chat-1?ticket={}", f.ws_tickets[0]),
            vec![],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: the same ticket again → 401, no upgrade",
            format!("/ws/chat-1?ticket={}", f.ws_tickets[0]),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: a ticket for any chat → 101",
            format!("/ws/chat-1?ticket={}", f.ws_tickets[1]),
            vec![],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: a ticket for another chat → 401, no upgrade",
            format!("/ws/chat-1?ticket={}", f.ws_tickets[2]),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: an expired ticket → 401, no upgrade",
            format!("/ws/chat-1?ticket={}", f.ws_tickets[3]),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: a ticket whose key was revoked → 401, no upgrade",
            format!("/ws/chat-1?ticket={}", f.ws_ticket_of_revoked),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: a malformed ticket → 401, no upgrade",
            "/ws/chat-1?ticket=nxt_nope".into(),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: an empty ?ticket= → 401 invalid_request",
            "/ws/chat-1?ticket=".into(),
            vec![],
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
    ]
}

fn ws_row(
    name: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    expect: Expect,
) -> Row {
    Row {
        name,
        send: Probe::WebSocket { path, headers },
        expect,
    }
}

/// An accepted WebSocket: 101, then the server's greeting naming the principal.
fn ws_ok(owner: &str) -> Expect {
    expect(
        101,
        BodyCheck::Json(Value::String(format!("hello {owner} in chat-1"))),
    )
}
