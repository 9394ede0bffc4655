//! The product's auth endpoints, independent of any web framework.
//!
//! The axum and actix-web crates are glue: they read the method, path parameters, headers and
//! body bytes, call one function of this module, and copy the [`ApiResponse`] (or the
//! [`AuthError::response`] of the error) into their own response type. Every rule — which
//! scope an endpoint needs, how a body is decoded, what a bad body answers, in which order the
//! checks run — is decided here, once.
//!
//! | endpoint (under `/api`) | function | success |
//! |---|---|---|
//! | `POST /auth/login` (no credentials) | [`login`] | 200 `{access_token, token_type, expires_in}` |
//! | `GET /users/me` | [`me`] | 200 `{id, email}` |
//! | `GET /users/me/api-keys` | [`list_keys`] | 200 `[{id, name, display, scopes, created_at, last_used_at, expires_at}]` |
//! | `POST /users/me/api-keys` | [`create_key`] | 201 the key, shown once |
//! | `POST /users/me/api-keys/{key_id}/rotate` | [`rotate_key`] | 200 the new key, shown once |
//! | `DELETE /users/me/api-keys/{key_id}` | [`revoke_key`] | 204 |
//!
//! Order of checks on an authenticated endpoint, as FastAPI's dependency resolution does it:
//! credentials (401) → scope (403, [`scopes::KEYS_MANAGE`] for key management) → path and body
//! validation (422) → the operation (404, 409, …).
//!
//! # Request bodies
//!
//! * A `Content-Type` other than `application/json` (parameters allowed, `application/*+json`
//!   too) → 422 with `type: "model_attributes_type"` at `loc: ["body"]`. We answer 422 rather
//!   than 415 because FastAPI-style clients already parse 422 `detail` arrays, and FastAPI
//!   itself answers a non-JSON body for a JSON model that way. A request *without*
//!   `Content-Type` is decoded as JSON, as FastAPI does.
//! * An empty body → 422 `missing` at `["body"]`; malformed JSON → 422 `json_invalid` at
//!   `["body", <byte offset>]`; a missing field → `missing` at `["body", "<field>"]`; a wrong
//!   type → `string_type`, `list_type`, `model_attributes_type`, … at the field's path.
//!   Unknown fields are ignored.
//! * A body over [`MAX_BODY_LEN`] → 413.
//! * A malformed `{key_id}` → 422 `uuid_parsing` at `["path", "key_id"]`; a well-formed but
//!   unknown id, or another user's key → 404 `{"detail": "API key not found"}`.

use std::borrow::Cow;

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    AuthError, Authenticator, KeyId, LocPart, NewKey, Principal, QueryToken, RotateOptions,
    SecretString, ValidationIssue, extract_credential,
};

/// Names of the scopes the Nexora API checks, and type-level markers for extractors.
pub mod scopes {
    /// Manage one's own API keys: list, create, rotate, revoke.
    pub const KEYS_MANAGE: &str = "keys:manage";
    /// Read agents (the product's `GET /api/agents`).
    pub const AGENTS_READ: &str = "agents:read";

    /// A scope known at compile time, for framework extractors such as
    /// `RequireScope<KeysManage>` that answer 403 when the principal lacks it.
    ///
    /// ```
    /// use nexora_auth::scopes::ScopeName;
    ///
    /// /// `agents:write`, for the routes that change agents.
    /// pub struct AgentsWrite;
    /// impl ScopeName for AgentsWrite {
    ///     const NAME: &'static str = "agents:write";
    /// }
    /// ```
    pub trait ScopeName: Send + Sync + 'static {
        /// The scope text, e.g. `"agents:read"`.
        const NAME: &'static str;
    }

    /// Marker for [`KEYS_MANAGE`].
    #[derive(Debug, Clone, Copy, Default)]
    pub struct KeysManage;

    impl ScopeName for KeysManage {
        const NAME: &'static str = KEYS_MANAGE;
    }

    /// Marker for [`AGENTS_READ`].
    #[derive(Debug, Clone, Copy, Default)]
    pub struct AgentsRead;

    impl ScopeName for AgentsRead {
        const NAME: &'static str = AGENTS_READ;
    }
}

/// Largest request body the endpoints read, in bytes: 64 KiB (a login or a key request is a
/// few hundred bytes). Framework crates stop reading past it and answer 413.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// A successful endpoint result, to be copied into the framework's response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body ([`ApiResponse::CONTENT_TYPE`]), or `None` for 204.
    pub body: Option<String>,
}

impl ApiResponse {
    /// The content type of [`ApiResponse::body`].
    pub const CONTENT_TYPE: &'static str = "application/json";

    fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Result<Self, AuthError> {
        let body = serde_json::to_string(value)
            .map_err(|e| AuthError::Unavailable(format!("response serialisation: {e}")))?;
        Ok(Self { status, body: Some(body) })
    }

    fn no_content() -> Self {
        Self { status: 204, body: None }
    }
}

/// What a route demands of the request's credentials. Defaults to
/// [`AuthRequirement::required`]: credentials must be present, in the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthRequirement {
    /// Whether `?token=` counts. Defaults to [`QueryToken::Ignore`].
    pub query_token: QueryToken,
    /// Whether a request without any credentials is refused (401). Defaults to `true`. When
    /// `false`, such a request goes on without a principal; a *bad* credential is still 401.
    pub required: bool,
}

impl Default for AuthRequirement {
    fn default() -> Self {
        Self::required()
    }
}

impl AuthRequirement {
    /// Credentials required, header only (REST routes). The default.
    pub const fn required() -> Self {
        Self { query_token: QueryToken::Ignore, required: true }
    }

    /// Credentials optional: absent → no principal; present but bad → 401.
    pub const fn optional() -> Self {
        Self { query_token: QueryToken::Ignore, required: false }
    }

    /// Also accept `?token=` (WebSocket routes, whose browser API cannot set headers).
    pub const fn accept_query_token(mut self) -> Self {
        self.query_token = QueryToken::Accept;
        self
    }
}

/// Authenticates a request from its raw `Authorization` header values and query string: the
/// one request-level check both framework crates run.
///
/// Returns `Ok(None)` only when credentials are absent and `requirement.required` is false.
pub async fn authenticate_request<'a, I>(
    auth: &Authenticator,
    authorization: I,
    query: Option<&'a str>,
    requirement: AuthRequirement,
) -> Result<Option<Principal>, AuthError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    match extract_credential(authorization, query, requirement.query_token) {
        Ok(token) => auth.authenticate(&token).await.map(Some),
        Err(AuthError::MissingCredentials) if !requirement.required => Ok(None),
        Err(e) => Err(e),
    }
}

/// A request body as the framework received it: the `Content-Type` header value (if any) and
/// the bytes (at most [`MAX_BODY_LEN`]; the framework crate stops reading past that).
#[derive(Debug, Clone, Copy)]
pub struct RequestBody<'a> {
    content_type: Option<&'a [u8]>,
    bytes: &'a [u8],
}

impl<'a> RequestBody<'a> {
    /// Wraps the raw `Content-Type` value and body bytes.
    pub fn new(content_type: Option<&'a [u8]>, bytes: &'a [u8]) -> Self {
        Self { content_type, bytes }
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json(bytes: &'a [u8]) -> Self {
        Self { content_type: Some(b"application/json"), bytes }
    }
}

fn body_issue(loc: Vec<LocPart>, msg: &str, kind: &str) -> AuthError {
    AuthError::Validation(vec![ValidationIssue::new(loc, msg, kind)])
}

fn is_json_content_type(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

/// Byte offset of a 1-based line/column position, for FastAPI's `["body", offset]` location.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    };
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

/// The message of a serde_json data error without its " at line N column M" suffix.
fn bare_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// FastAPI's (pydantic's) type and message for "expected X".
fn type_issue(expected: &str) -> (&'static str, &'static str) {
    if expected.contains("string") && !expected.contains("date") {
        ("string_type", "Input should be a valid string")
    } else if expected.contains("sequence") {
        ("list_type", "Input should be a valid list")
    } else if expected.starts_with("struct") || expected.contains("map") {
        ("model_attributes_type", "Input should be a valid dictionary or object to extract fields from")
    } else if expected.contains("boolean") {
        ("bool_type", "Input should be a valid boolean")
    } else if expected.contains("integer") || expected.starts_with("u") || expected.starts_with("i") {
        ("int_type", "Input should be a valid integer")
    } else {
        ("value_error", "Input is not valid")
    }
}

/// Decodes a JSON request body into `T`, or the FastAPI-style 422 that describes why not.
pub fn decode_json<T: DeserializeOwned>(body: RequestBody<'_>) -> Result<T, AuthError> {
    if body.bytes.len() > MAX_BODY_LEN {
        return Err(AuthError::PayloadTooLarge);
    }
    if body.content_type.is_some_and(|ct| !is_json_content_type(ct)) {
        return Err(body_issue(
            vec!["body".into()],
            "Content-Type must be application/json",
            "model_attributes_type",
        ));
    }
    if body.bytes.trim_ascii().is_empty() {
        return Err(body_issue(vec!["body".into()], "Field required", "missing"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body.bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .and_then(|v| deserializer.end().map(|()| v).map_err(|e| {
            serde_path_to_error::Error::new(serde_path_to_error::Path::empty(), e)
        }));
    value.map_err(|error| {
        let mut loc: Vec<LocPart> = vec!["body".into()];
        let inner = error.inner();
        if !matches!(inner.classify(), serde_json::error::Category::Data) {
            loc.push(byte_offset(body.bytes, inner.line(), inner.column()).into());
            return body_issue(loc, "JSON decode error", "json_invalid");
        }
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => loc.push((*index).into()),
                serde_path_to_error::Segment::Map { key } => loc.push(key.as_str().into()),
                serde_path_to_error::Segment::Enum { variant } => loc.push(variant.as_str().into()),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let message = bare_message(inner);
        if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            loc.push(field.into());
            return body_issue(loc, "Field required", "missing");
        }
        if let Some(rest) = message.strip_prefix("invalid type: ") {
            let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
            let (kind, msg) = type_issue(expected);
            return body_issue(loc, msg, kind);
        }
        body_issue(loc, &format!("Value error, {message}"), "value_error")
    })
}

fn parse_key_id(raw: &str) -> Result<KeyId, AuthError> {
    KeyId::parse_str(raw).map_err(|_| {
        body_issue(vec!["path".into(), "key_id".into()], "Input should be a valid UUID", "uuid_parsing")
    })
}

#[derive(serde::Deserialize)]
struct LoginRequest {
    email: String,
    password: SecretString,
}

/// `POST /auth/login`: `{"email", "password"}` → 200 `{"access_token", "token_type":
/// "bearer", "expires_in"}`. Wrong email or password → 401 `Incorrect email or password`.
pub async fn login(auth: &Authenticator, body: RequestBody<'_>) -> Result<ApiResponse, AuthError> {
    let request: LoginRequest = decode_json(body)?;
    let response = auth.login(&request.email, &request.password).await?;
    ApiResponse::json(200, &response)
}

#[derive(Serialize)]
struct Me<'a> {
    id: &'a str,
    email: Option<String>,
}

/// `GET /users/me`: `{"id", "email"}`. Needs no scope: any authenticated principal may ask who
/// it is.
///
/// `email` is `null` when the owner has no user record — an owner id of the application's own
/// user system (keys made with [`Authenticator::create_key_for`]), or an [`Authenticator`]
/// built without a user store — so the endpoint still identifies the caller rather than
/// failing. A user store that fails is 503.
pub async fn me(auth: &Authenticator, principal: &Principal) -> Result<ApiResponse, AuthError> {
    let email = match auth.user(principal.owner()).await {
        Ok(user) => user.map(|u| u.email),
        // `Authenticator::user` answers `Unavailable` only when no user store is configured;
        // store failures are `StoreUnavailable` and stay 503.
        Err(AuthError::Unavailable(_)) => None,
        Err(e) => return Err(e),
    };
    ApiResponse::json(200, &Me { id: principal.owner().as_str(), email })
}

/// `GET /users/me/api-keys` (scope [`scopes::KEYS_MANAGE`]): the caller's live keys, oldest
/// first, without key text, secret or digest.
pub async fn list_keys(auth: &Authenticator, principal: &Principal) -> Result<ApiResponse, AuthError> {
    principal.require_scope(scopes::KEYS_MANAGE)?;
    let keys = auth.list_keys(principal.owner()).await?;
    ApiResponse::json(200, &keys)
}

/// `POST /users/me/api-keys` (scope [`scopes::KEYS_MANAGE`]): `{"name", "scopes"?,
/// "expires_at"?}` → 201 `{id, name, key, display, scopes, created_at, last_used_at,
/// expires_at}`. The only response that ever contains the key.
pub async fn create_key(
    auth: &Authenticator,
    principal: &Principal,
    body: RequestBody<'_>,
) -> Result<ApiResponse, AuthError> {
    principal.require_scope(scopes::KEYS_MANAGE)?;
    let request: NewKey = decode_json(body)?;
    let created = auth.create_key(principal, request).await?;
    ApiResponse::json(201, &created)
}

/// `POST /users/me/api-keys/{key_id}/rotate` (scope [`scopes::KEYS_MANAGE`]): 200 with the new
/// key, same shape as create; the old key stops working at once. `raw_key_id` is the path
/// segment as received.
pub async fn rotate_key(
    auth: &Authenticator,
    principal: &Principal,
    raw_key_id: &str,
) -> Result<ApiResponse, AuthError> {
    principal.require_scope(scopes::KEYS_MANAGE)?;
    let id = parse_key_id(raw_key_id)?;
    let rotated = auth.rotate_key(principal.owner(), id, RotateOptions::immediate()).await?;
    ApiResponse::json(200, &rotated)
}

/// `DELETE /users/me/api-keys/{key_id}` (scope [`scopes::KEYS_MANAGE`]): 204, idempotent for
/// the owner's keys.
pub async fn revoke_key(
    auth: &Authenticator,
    principal: &Principal,
    raw_key_id: &str,
) -> Result<ApiResponse, AuthError> {
    principal.require_scope(scopes::KEYS_MANAGE)?;
    let id = parse_key_id(raw_key_id)?;
    auth.revoke_key(principal.owner(), id).await?;
    Ok(ApiResponse::no_content())
}

/// The `Cow` returned by [`extract_credential`] is only used inside this module; this alias
/// keeps the signature of [`authenticate_request`] readable in docs.
#[allow(dead_code, reason = "documentation alias only")]
type Token<'a> = Cow<'a, str>;
