//! The catalogue's vocabulary: what a row expects ([`Outcome`]), the row itself ([`Attack`]),
//! and the words the rows are written in (the expected answer, what a credential costs, the
//! route).

use std::ops::RangeInclusive;

use serde_json::Value;

use super::wire::RawRequest;

/// What a row expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exactly this status, `{"detail": <detail>}` as `application/json`, this
    /// `WWW-Authenticate`, and no `Retry-After`.
    Rejected {
        /// 401.
        status: u16,
        /// The `detail` text.
        detail: &'static str,
        /// The `WWW-Authenticate` value.
        challenge: &'static str,
    },
    /// A positive control: 200 with exactly this JSON body.
    Accepted(Value),
    /// A positive control on the WebSocket route: 101 Switching Protocols.
    Upgraded,
    /// Any 4xx, or the connection closed without an answer (a server may refuse a huge or
    /// malformed header before any application code runs). Never 2xx, 3xx or 5xx.
    RefusedOrClosed,
    /// Exactly this status and JSON body, as `application/json`, with no `WWW-Authenticate`
    /// and no `Retry-After`: the designed answer of an endpoint that needs no credential (a
    /// 2xx here is not an accepted attack), or a refusal without a challenge.
    Answered {
        /// The status.
        status: u16,
        /// The body.
        body: Value,
    },
    /// A 422 whose first `detail` issue has this `loc` and `type`, as `application/json`,
    /// with no `WWW-Authenticate` and no `Retry-After`.
    Invalid {
        /// The issue's `loc`, e.g. `["body", "email"]`.
        loc: Value,
        /// The issue's `type`, e.g. `value_error`.
        kind: &'static str,
    },
}

/// One row of the catalogue.
#[derive(Debug, Clone)]
pub struct Attack {
    /// What the row tries, and where (`[ring] attack @ route`).
    pub name: String,
    /// The exact request.
    pub request: RawRequest,
    /// The exact expected answer.
    pub expect: Outcome,
    /// How many key- and user-store calls the request may cost, at least and at most (`None`:
    /// not checked).
    pub store_calls: Option<RangeInclusive<u64>>,
    /// Strings the answer (head and body) must not contain: the token, its secret parts.
    pub must_not_echo: Vec<String>,
}

pub(super) const NOT_AUTHENTICATED: &str = "Not authenticated";
pub(super) const INVALID_CREDENTIALS: &str = "Invalid authentication credentials";
pub(super) const INVALID_AUTH_REQUEST: &str = "Invalid authorization request";
pub(super) const CHALLENGE: &str = "Bearer";
pub(super) const CHALLENGE_INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;
pub(super) const CHALLENGE_INVALID_REQUEST: &str = r#"Bearer error="invalid_request""#;

/// The expected answer in words, turned into an [`Outcome`] per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// A positive control.
    Accept,
    /// 401 "Not authenticated", as if no credential were sent.
    Missing,
    /// 401 `invalid_request`.
    InvalidRequest,
    /// 401 `invalid_token`.
    InvalidToken,
    /// Any 4xx or a closed connection.
    RefusedOrClosed,
}

/// What a credential costs in store calls when it reaches the authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cred {
    /// A well-formed `nxr_` key: one key lookup.
    Key,
    /// A JWT, or anything refused before a lookup: no call.
    Free,
}

/// Where a row is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// The application's route behind the auth layer and `RequireScope<AgentsRead>`.
    Agents,
    /// The product's `GET /api/users/me`.
    Me,
    /// The WebSocket route (header, or `?token=`).
    Ws,
}

impl Route {
    pub(super) const REST: [Self; 2] = [Self::Agents, Self::Me];

    pub(super) fn path(self) -> &'static str {
        match self {
            Self::Agents => "/agents",
            Self::Me => "/api/users/me",
            Self::Ws => "/ws/chat-1",
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for `?token=`.
pub(super) fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
