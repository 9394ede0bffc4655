//! The table's vocabulary: what a row sends ([`Probe`]), what it expects ([`Expect`],
//! [`BodyCheck`]), and the short constructors and shared checks the rows are written with.

use std::sync::Arc;

use serde_json::{Value, json};

/// The product's `/api/users/me`.
pub(super) const ME: &str = "/api/users/me";
/// The product's key-management collection.
pub(super) const KEYS: &str = "/api/users/me/api-keys";
/// The content type of a JSON body.
pub(super) const JSON: Option<&str> = Some("application/json");

/// A check of a JSON body: `Err` says what is wrong.
pub type BodyPredicate = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

/// What a row checks in the response body.
#[derive(Clone)]
pub enum BodyCheck {
    /// Exactly this JSON.
    Json(Value),
    /// `{"detail": "<text>"}`.
    Detail(&'static str),
    /// Empty.
    Empty,
    /// A JSON body for which the function returns `Ok`.
    Satisfies(BodyPredicate),
}

impl std::fmt::Debug for BodyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(v) => write!(f, "Json({v})"),
            Self::Detail(d) => write!(f, "Detail({d:?})"),
            Self::Empty => f.write_str("Empty"),
            Self::Satisfies(_) => f.write_str("Satisfies(..)"),
        }
    }
}

pub(super) fn satisfies(
    check: impl Fn(&Value) -> Result<(), String> + Send + Sync + 'static,
) -> BodyCheck {
    BodyCheck::Satisfies(Arc::new(check))
}

/// What a row sends.
#[derive(Debug, Clone)]
pub enum Probe {
    /// An HTTP request.
    Http {
        /// Method, e.g. `GET`.
        method: &'static str,
        /// Path and query, e.g. `/api/users/me?token=x`.
        path: String,
        /// Headers, in order (repeats allowed), as raw bytes.
        headers: Vec<(&'static str, Vec<u8>)>,
        /// Body bytes, if any.
        body: Option<Vec<u8>>,
    },
    /// A WebSocket handshake to a path (with query), with extra headers.
    WebSocket {
        /// Path and query, e.g. `/ws/chat-1?token=x`.
        path: String,
        /// Extra headers.
        headers: Vec<(&'static str, String)>,
    },
}

/// What a row expects.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The status code (101 for an accepted WebSocket).
    pub status: u16,
    /// The body (for WebSockets: the first text message, checked as JSON-free text via
    /// [`BodyCheck::Detail`]-less [`BodyCheck::Json`] of a string).
    pub body: BodyCheck,
    /// The `WWW-Authenticate` header: `None` = absent.
    pub www_authenticate: Option<&'static str>,
    /// The `Retry-After` header: `None` = absent, [`ANY_SECONDS`] = any positive number.
    pub retry_after: Option<&'static str>,
    /// The `Allow` header: `None` = not checked; required on every 405 (RFC 9110 §15.5.6).
    pub allow: Option<&'static str>,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What the row checks, in words.
    pub name: &'static str,
    /// The request.
    pub send: Probe,
    /// The expected response.
    pub expect: Expect,
}

/// In [`Expect::retry_after`]: any positive number of seconds (for time-dependent values).
pub const ANY_SECONDS: &str = "<any positive number>";

pub(super) const BEARER: Option<&str> = Some("Bearer");
pub(super) const INVALID_TOKEN: Option<&str> = Some(r#"Bearer error="invalid_token""#);
pub(super) const INVALID_REQUEST: Option<&str> = Some(r#"Bearer error="invalid_request""#);
pub(super) const INSUFFICIENT_SCOPE: Option<&str> = Some(r#"Bearer error="insufficient_scope""#);

pub(super) fn bearer(token: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![("authorization", format!("Bearer {token}").into_bytes())]
}

pub(super) fn http(
    method: &'static str,
    path: impl Into<String>,
    headers: Vec<(&'static str, Vec<u8>)>,
) -> Probe {
    Probe::Http {
        method,
        path: path.into(),
        headers,
        body: None,
    }
}

pub(super) fn json_body(
    path: &str,
    headers: Vec<(&'static str, Vec<u8>)>,
    content_type: Option<&str>,
    body: &str,
) -> Probe {
    let mut headers = headers;
    if let Some(ct) = content_type {
        headers.push(("content-type", ct.as_bytes().to_vec()));
    }
    Probe::Http {
        method: "POST",
        path: path.into(),
        headers,
        body: Some(body.as_bytes().to_vec()),
    }
}

pub(super) fn expect(status: u16, body: BodyCheck) -> Expect {
    Expect {
        status,
        body,
        www_authenticate: None,
        retry_after: None,
        allow: None,
    }
}

pub(super) fn challenge(status: u16, detail: &'static str, www: Option<&'static str>) -> Expect {
    Expect {
        status,
        body: BodyCheck::Detail(detail),
        www_authenticate: www,
        retry_after: None,
        allow: None,
    }
}

pub(super) fn not_allowed(allow: &'static str) -> Expect {
    Expect {
        allow: Some(allow),
        ..challenge(405, "Method Not Allowed", None)
    }
}

pub(super) fn issue(loc: Value, msg: &str, kind: &str) -> BodyCheck {
    BodyCheck::Json(json!({"detail": [{"loc": loc, "msg": msg, "type": kind}]}))
}

pub(super) fn row(name: &'static str, send: Probe, expect: Expect) -> Row {
    Row { name, send, expect }
}

pub(super) const NOT_AUTHENTICATED: &str = "Not authenticated";
pub(super) const INVALID_CREDENTIALS: &str = "Invalid authentication credentials";
pub(super) const INVALID_AUTH_REQUEST: &str = "Invalid authorization request";
pub(super) const INSUFFICIENT: &str = "Insufficient permissions";
pub(super) const KEY_NOT_FOUND: &str = "API key not found";

/// The created-key shape: exactly these fields, the key shown once.
pub(super) fn created_key_shape(body: &Value) -> Result<(), String> {
    let object = body.as_object().ok_or("not an object")?;
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    let want = [
        "created_at",
        "created_by",
        "credits",
        "display",
        "expires_at",
        "id",
        "key",
        "last_used_at",
        "name",
        "rate_limit",
        "scopes",
    ];
    if fields != want {
        return Err(format!("fields {fields:?}, want {want:?}"));
    }
    let key = body["key"].as_str().ok_or("key is not a string")?;
    if !key.starts_with("nxr_") {
        return Err("key does not start with nxr_".into());
    }
    if !body["last_used_at"].is_null() {
        return Err("last_used_at is not null".into());
    }
    Ok(())
}

/// A 201 for a key created by the key `creator_id`, expiring at `expires_at`.
pub(super) fn minted_by(creator_id: &str, expires_at: &str) -> BodyCheck {
    let (creator_id, expires_at) = (creator_id.to_owned(), expires_at.to_owned());
    satisfies(move |b| {
        created_key_shape(b)?;
        if b["expires_at"] != expires_at.as_str() {
            return Err(format!("expires_at {}, want {expires_at}", b["expires_at"]));
        }
        if b["created_by"] != json!({"kind": "key", "key_id": creator_id}) {
            return Err(format!("created_by {}", b["created_by"]));
        }
        Ok(())
    })
}
