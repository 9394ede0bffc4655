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
//! | `GET /users/me/api-keys` | [`list_keys`] | 200 `[{id, name, display, scopes, created_at, last_used_at, expires_at, created_by}]`: the keys within the caller's reach |
//! | `POST /users/me/api-keys` | [`create_key`] | 201 the key, shown once |
//! | `POST /users/me/api-keys/{key_id}/rotate` | [`rotate_key`] | 200 the new key, shown once |
//! | `DELETE /users/me/api-keys/{key_id}[?cascade=true]` | [`revoke_key`] | 204 |
//!
//! Which keys a caller may list, rotate or revoke, and what a created key may hold, is decided
//! by [`crate::policy`] inside the [`Authenticator`] methods these call.
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

use serde::{Serialize, de::DeserializeOwned};

use crate::Unavailable;
use crate::{
    AuthError, Authenticator, KeyId, LocPart, NewKey, Principal, QueryToken, RevokeOptions,
    RotateOptions, SecretString, ValidationIssue, extract_credential, proxy::RequestOrigin,
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
            .map_err(|e| AuthError::Unavailable(Unavailable::Serialisation(e)))?;
        Ok(Self {
            status,
            body: Some(body),
        })
    }

    fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
        }
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
        Self {
            query_token: QueryToken::Ignore,
            required: true,
        }
    }

    /// Credentials optional: absent → no principal; present but bad → 401.
    pub const fn optional() -> Self {
        Self {
            query_token: QueryToken::Ignore,
            required: false,
        }
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
        Self {
            content_type,
            bytes,
        }
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json(bytes: &'a [u8]) -> Self {
        Self {
            content_type: Some(b"application/json"),
            bytes,
        }
    }
}

fn body_issue(loc: Vec<LocPart>, msg: &str, kind: &str) -> AuthError {
    AuthError::Validation(vec![ValidationIssue::new(loc, msg, kind)])
}

fn is_json_content_type(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
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
        (
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )
    } else if expected.contains("boolean") {
        ("bool_type", "Input should be a valid boolean")
    } else if expected.contains("integer") || expected.starts_with("u") || expected.starts_with("i")
    {
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
    if body
        .content_type
        .is_some_and(|ct| !is_json_content_type(ct))
    {
        return Err(body_issue(
            vec!["body".into()],
            "Content-Type must be application/json",
            "model_attributes_type",
        ));
    }
    if body.bytes.trim_ascii().is_empty() {
        return Err(body_issue(vec!["body".into()], "Field required", "missing"));
    }
    if body.bytes.trim_ascii_start().first() != Some(&b'{') {
        // serde's derive would accept an array for a struct; FastAPI's models take objects only.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body.bytes) {
                Ok(_) => body_issue(
                    vec!["body".into()],
                    "Input should be a valid dictionary or object to extract fields from",
                    "model_attributes_type",
                ),
                Err(error) => json_invalid(body.bytes, &error),
            },
        );
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body.bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| decode_issue(body.bytes, error.path(), error.inner()))?;
    // Trailing characters after the value are malformed JSON too.
    deserializer
        .end()
        .map_err(|error| json_invalid(body.bytes, &error))?;
    Ok(value)
}

fn json_invalid(bytes: &[u8], error: &serde_json::Error) -> AuthError {
    let offset = if error.is_eof() {
        bytes.len()
    } else {
        byte_offset(bytes, error.line(), error.column())
    };
    body_issue(
        vec!["body".into(), offset.into()],
        "JSON decode error",
        "json_invalid",
    )
}

fn decode_issue(
    bytes: &[u8],
    path: &serde_path_to_error::Path,
    error: &serde_json::Error,
) -> AuthError {
    if !matches!(error.classify(), serde_json::error::Category::Data) {
        return json_invalid(bytes, error);
    }
    let mut loc: Vec<LocPart> = vec!["body".into()];
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => loc.push((*index).into()),
            serde_path_to_error::Segment::Map { key } => loc.push(key.as_str().into()),
            serde_path_to_error::Segment::Enum { variant } => loc.push(variant.as_str().into()),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let message = bare_message(error);
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        loc.push(field.into());
        return body_issue(loc, "Field required", "missing");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
        let (kind, msg) = type_issue(expected);
        return body_issue(loc, msg, kind);
    }
    body_issue(loc, &format!("Value error, {message}"), "value_error")
}

fn parse_key_id(raw: &str) -> Result<KeyId, AuthError> {
    KeyId::parse_str(raw).map_err(|_| {
        body_issue(
            vec!["path".into(), "key_id".into()],
            "Input should be a valid UUID",
            "uuid_parsing",
        )
    })
}

#[derive(serde::Deserialize)]
struct LoginRequest {
    email: String,
    password: SecretString,
}

/// `POST /auth/login`: `{"email", "password"}` → 200 `{"access_token", "token_type":
/// "bearer", "expires_in"}`. Wrong email or password (or a password over the length limit) →
/// 401 `Incorrect email or password`; an email no store can hold → 422 at `["body",
/// "email"]`; too many attempts for the email or from the client → 429 with `Retry-After`
/// (see [`Authenticator::login_from`]). The client is `origin`'s peer address, or the address
/// its forwarding header names when the peer is one of the authenticator's
/// [trusted proxies](crate::AuthenticatorBuilder::trusted_proxies).
pub async fn login(
    auth: &Authenticator,
    body: RequestBody<'_>,
    origin: &RequestOrigin<'_>,
) -> Result<ApiResponse, AuthError> {
    let request: LoginRequest = decode_json(body)?;
    let client = origin.client(auth.trusted_proxies());
    let response = auth
        .login_from(&request.email, &request.password, client)
        .await?;
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
        // No user store configured: the caller is identified by id alone. Store failures are
        // `StoreUnavailable` and stay 503.
        Err(AuthError::Unavailable(Unavailable::NoUserStore)) => None,
        Err(e) => return Err(e),
    };
    ApiResponse::json(
        200,
        &Me {
            id: principal.owner().as_str(),
            email,
        },
    )
}

/// `GET /users/me/api-keys` (scope [`scopes::KEYS_MANAGE`]): the caller's live keys, oldest
/// first, without key text, secret or digest.
pub async fn list_keys(
    auth: &Authenticator,
    principal: &Principal,
) -> Result<ApiResponse, AuthError> {
    principal.require_scope(scopes::KEYS_MANAGE)?;
    let keys = auth.list_keys(principal).await?;
    ApiResponse::json(200, &keys)
}

/// `POST /users/me/api-keys` (scope [`scopes::KEYS_MANAGE`]): `{"name", "scopes"?,
/// "expires_at"?}` → 201 `{id, name, key, display, scopes, created_at, last_used_at,
/// expires_at, created_by}`. The only response that ever contains the key.
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
    let rotated = auth
        .rotate_key(principal, id, RotateOptions::immediate())
        .await?;
    ApiResponse::json(200, &rotated)
}

/// `DELETE /users/me/api-keys/{key_id}[?cascade=true]` (scope [`scopes::KEYS_MANAGE`]): 204.
/// With `cascade=true`, every key the key created (transitively) is revoked with it, in one
/// atomic step. A key already revoked, out of the caller's reach, unknown or another user's is
/// 404. `query` is the raw query string, if any; `cascade` takes `true`/`false` (also `1`/`0`,
/// `yes`/`no`, `on`/`off`, as pydantic does), anything else is a 422 at `["query", "cascade"]`.
pub async fn revoke_key(
    auth: &Authenticator,
    principal: &Principal,
    raw_key_id: &str,
    query: Option<&str>,
) -> Result<ApiResponse, AuthError> {
    principal.require_scope(scopes::KEYS_MANAGE)?;
    let id = parse_key_id(raw_key_id)?;
    let options = if query_flag(query, "cascade")? {
        RevokeOptions::cascade()
    } else {
        RevokeOptions::key_only()
    };
    auth.revoke_key(principal, id, options).await?;
    Ok(ApiResponse::no_content())
}

/// A boolean query parameter: absent → `false`; the last occurrence wins.
fn query_flag(query: Option<&str>, name: &str) -> Result<bool, AuthError> {
    let Some(value) = query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .last()
    else {
        return Ok(false);
    };
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(AuthError::Validation(vec![ValidationIssue::new(
            vec!["query".into(), name.into()],
            "Input should be a valid boolean, unable to interpret input",
            "bool_parsing",
        )])),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::{
        Credential, JwtConfig, JwtKeys, MemoryKeyStore, MemoryUserStore, OwnerId, PasswordPolicy,
        PepperRing, Scopes, SecretBytes, TokenAuthority,
    };

    fn authenticator(with_users: bool) -> Authenticator {
        let pepper = SecretBytes::new(b"test pepper of at least thirty-two bytes!".to_vec());
        let secret = SecretBytes::new(b"test jwt secret of at least thirty-two bytes".to_vec());
        let mut builder = Authenticator::builder(
            Arc::new(MemoryKeyStore::new()),
            PepperRing::new(1, pepper).unwrap(),
        )
        .tokens(
            TokenAuthority::new(JwtKeys::hs256(&secret).unwrap(), JwtConfig::default()).unwrap(),
        )
        .password_policy(PasswordPolicy::default().argon2_params(256, 1, 1));
        if with_users {
            builder = builder.users(Arc::new(MemoryUserStore::new()));
        }
        builder.build().unwrap()
    }

    fn principal(owner: &str, scopes: &[&str]) -> Principal {
        Principal::new(
            OwnerId::new(owner),
            Credential::Internal,
            Scopes::new(scopes.iter().copied()).unwrap(),
        )
    }

    fn manager(owner: &str) -> Principal {
        principal(owner, &[scopes::KEYS_MANAGE, scopes::AGENTS_READ])
    }

    fn detail(error: AuthError) -> Value {
        let response = error.response();
        assert_eq!(response.status, 422, "{}", response.body);
        serde_json::from_str::<Value>(&response.body).unwrap()["detail"].clone()
    }

    fn body_json(response: &ApiResponse) -> Value {
        serde_json::from_str(response.body.as_deref().unwrap()).unwrap()
    }

    fn decode_error(content_type: Option<&str>, body: &str) -> Value {
        let body = RequestBody::new(content_type.map(str::as_bytes), body.as_bytes());
        detail(decode_json::<NewKey>(body).unwrap_err())
    }

    #[test]
    fn missing_and_wrongly_typed_fields_are_fastapi_422s() {
        let json = Some("application/json");
        assert_eq!(
            decode_error(json, "{}"),
            json!([{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}])
        );
        assert_eq!(
            decode_error(json, r#"{"name": 12}"#)[0]["type"],
            "string_type"
        );
        assert_eq!(
            decode_error(json, r#"{"name": null}"#)[0]["loc"],
            json!(["body", "name"])
        );
        assert_eq!(
            decode_error(json, r#"{"name": "x", "scopes": "agents:read"}"#)[0],
            json!({"loc": ["body", "scopes"], "msg": "Input should be a valid list", "type": "list_type"})
        );
        assert_eq!(
            decode_error(json, r#"{"name": "x", "scopes": ["a", 7]}"#)[0]["loc"],
            json!(["body", "scopes", 1])
        );
        let bad_scope = decode_error(json, r#"{"name": "x", "scopes": ["a b"]}"#);
        assert_eq!(
            (bad_scope[0]["type"].as_str(), &bad_scope[0]["loc"]),
            (Some("value_error"), &json!(["body", "scopes"]))
        );
        for not_an_object in ["[1, 2]", "\"name\"", "null", "7"] {
            assert_eq!(
                decode_error(json, not_an_object),
                json!([{"loc": ["body"], "msg": "Input should be a valid dictionary or object to extract fields from", "type": "model_attributes_type"}])
            );
        }
        assert_eq!(decode_error(json, "[1, 2")[0]["type"], "json_invalid");
    }

    #[test]
    fn malformed_empty_and_non_json_bodies_are_422s() {
        let json = Some("application/json");
        assert_eq!(
            decode_error(json, "{\"name\": "),
            json!([{"loc": ["body", 9], "msg": "JSON decode error", "type": "json_invalid"}])
        );
        assert_eq!(
            decode_error(json, "{\n\"name\": x}")[0]["loc"],
            json!(["body", 10])
        );
        assert_eq!(
            decode_error(json, r#"{"name": "a"} trailing"#)[0]["type"],
            "json_invalid"
        );
        assert_eq!(
            decode_error(json, "  "),
            json!([{"loc": ["body"], "msg": "Field required", "type": "missing"}])
        );
        assert_eq!(
            decode_error(Some("text/plain"), r#"{"name": "a"}"#)[0]["loc"],
            json!(["body"])
        );
        assert_eq!(
            decode_error(Some("application/x-www-form-urlencoded"), "name=a")[0]["type"],
            "model_attributes_type"
        );
        // JSON content types with parameters or a +json suffix, and no content type at all, decode.
        for ct in [
            Some("application/json; charset=utf-8"),
            Some("Application/JSON"),
            Some("application/vnd.api+json"),
            None,
        ] {
            let key: NewKey =
                decode_json(RequestBody::new(ct.map(str::as_bytes), br#"{"name": "a"}"#)).unwrap();
            assert_eq!(key.name, "a");
        }
        let big = vec![b' '; MAX_BODY_LEN + 1];
        assert_eq!(
            decode_json::<NewKey>(RequestBody::json(&big))
                .unwrap_err()
                .status(),
            413
        );
    }

    #[tokio::test]
    async fn key_management_needs_the_scope() {
        let auth = authenticator(true);
        let reader = principal("alice", &[scopes::AGENTS_READ]);
        let id = KeyId::new_random().to_string();
        let denied = [
            list_keys(&auth, &reader).await.unwrap_err(),
            create_key(&auth, &reader, RequestBody::json(br#"{"name": "a"}"#))
                .await
                .unwrap_err(),
            // Scope is checked before the body and the path: 403, not 422.
            create_key(&auth, &reader, RequestBody::json(b"nonsense"))
                .await
                .unwrap_err(),
            rotate_key(&auth, &reader, "not-a-uuid").await.unwrap_err(),
            revoke_key(&auth, &reader, &id, None).await.unwrap_err(),
        ];
        for error in denied {
            let response = error.response();
            assert_eq!(response.status, 403);
            assert_eq!(response.body, r#"{"detail":"Insufficient permissions"}"#);
        }
    }

    #[tokio::test]
    async fn create_list_rotate_revoke() {
        let auth = authenticator(false);
        let alice = manager("alice");
        let created = create_key(
            &auth,
            &alice,
            RequestBody::json(br#"{"name": "CI", "scopes": ["agents:read"]}"#),
        )
        .await
        .unwrap();
        assert_eq!(created.status, 201);
        let created = body_json(&created);
        let key = created["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("nxr_"));
        assert_eq!(created["name"], "CI");
        assert_eq!(created["scopes"], json!(["agents:read"]));
        assert!(created["last_used_at"].is_null() && created["expires_at"].is_null());
        let id = created["id"].as_str().unwrap().to_owned();

        let listed = list_keys(&auth, &alice).await.unwrap();
        assert_eq!(listed.status, 200);
        let text = listed.body.clone().unwrap();
        assert!(
            !text.contains(&key) && !text.contains("\"key\"") && !text.contains("digest"),
            "{text}"
        );
        assert_eq!(body_json(&listed)[0]["id"], id.as_str());

        // Another owner cannot see, rotate or revoke it: 404, as for an unknown id.
        let bob = manager("bob");
        assert_eq!(body_json(&list_keys(&auth, &bob).await.unwrap()), json!([]));
        for error in [
            rotate_key(&auth, &bob, &id).await.unwrap_err(),
            revoke_key(&auth, &bob, &id, None).await.unwrap_err(),
            revoke_key(&auth, &alice, &KeyId::new_random().to_string(), None)
                .await
                .unwrap_err(),
        ] {
            assert_eq!(error.response().status, 404);
            assert_eq!(error.response().body, r#"{"detail":"API key not found"}"#);
        }
        assert_eq!(
            detail(rotate_key(&auth, &alice, "123").await.unwrap_err()),
            json!([{"loc": ["path", "key_id"], "msg": "Input should be a valid UUID", "type": "uuid_parsing"}])
        );

        let rotated = rotate_key(&auth, &alice, &id).await.unwrap();
        assert_eq!(rotated.status, 200);
        let new_key = body_json(&rotated)["key"].as_str().unwrap().to_owned();
        assert_eq!(body_json(&rotated)["id"], id.as_str());
        assert!(auth.authenticate(&key).await.is_err());
        assert!(auth.authenticate(&new_key).await.is_ok());

        assert_eq!(
            revoke_key(&auth, &alice, &id, None).await.unwrap(),
            ApiResponse {
                status: 204,
                body: None
            }
        );
        assert!(auth.authenticate(&new_key).await.is_err());
        assert_eq!(
            body_json(&list_keys(&auth, &alice).await.unwrap()),
            json!([])
        );
    }

    #[tokio::test]
    async fn login_and_me() {
        let auth = authenticator(true);
        let user = auth
            .register_user(
                "Alice@Example.com",
                &SecretString::from("correct horse battery"),
                Scopes::new([scopes::KEYS_MANAGE]).unwrap(),
            )
            .await
            .unwrap();
        let ok = login(
            &auth,
            RequestBody::json(
                br#"{"email": "alice@example.com", "password": "correct horse battery"}"#,
            ),
            &RequestOrigin::default(),
        )
        .await
        .unwrap();
        assert_eq!(ok.status, 200);
        let token = body_json(&ok)["access_token"].as_str().unwrap().to_owned();
        assert_eq!(body_json(&ok)["token_type"], "bearer");
        let header = format!("Bearer {token}");
        let principal = authenticate_request(
            &auth,
            [header.as_bytes()],
            None,
            AuthRequirement::required(),
        )
        .await
        .unwrap()
        .unwrap();
        let me_body = body_json(&me(&auth, &principal).await.unwrap());
        assert_eq!(
            me_body,
            json!({"id": user.id.as_str(), "email": "alice@example.com"})
        );

        let wrong = login(
            &auth,
            RequestBody::json(br#"{"email": "alice@example.com", "password": "nope"}"#),
            &RequestOrigin::default(),
        )
        .await;
        assert_eq!(
            wrong.unwrap_err().response().body,
            r#"{"detail":"Incorrect email or password"}"#
        );
        assert_eq!(
            detail(
                login(
                    &auth,
                    RequestBody::json(br#"{"email": "a@b.c"}"#),
                    &RequestOrigin::default()
                )
                .await
                .unwrap_err()
            ),
            json!([{"loc": ["body", "password"], "msg": "Field required", "type": "missing"}])
        );

        // An owner without a user record (or no user store at all) still learns its id.
        let app_owner = manager("app-owner-7");
        assert_eq!(
            body_json(&me(&auth, &app_owner).await.unwrap()),
            json!({"id": "app-owner-7", "email": null})
        );
        let keys_only = authenticator(false);
        assert_eq!(
            body_json(&me(&keys_only, &app_owner).await.unwrap())["email"],
            Value::Null
        );
    }

    #[tokio::test]
    async fn repeated_login_failures_are_429_with_retry_after() {
        let auth = authenticator(true);
        let origin = RequestOrigin::new(Some([192, 0, 2, 1].into()));
        let attempt = br#"{"email": "mallory@example.com", "password": "guess"}"#;
        let mut statuses = Vec::new();
        for _ in 0..7 {
            statuses.push(
                login(&auth, RequestBody::json(attempt), &origin)
                    .await
                    .unwrap_err()
                    .response(),
            );
        }
        assert!(
            statuses[..5].iter().all(|r| r.status == 401),
            "{statuses:?}"
        );
        let limited = &statuses[6];
        assert_eq!(
            (limited.status, limited.body.as_str()),
            (429, r#"{"detail":"Too many requests"}"#)
        );
        assert!(limited.retry_after.is_some_and(|s| s > 0));
    }

    #[tokio::test]
    async fn optional_and_query_token_requirements() {
        let auth = authenticator(false);
        let key = auth
            .create_key(&manager("alice"), NewKey::named("ws"))
            .await
            .unwrap();
        let query = format!("token={}", key.key.expose());
        let none: [&[u8]; 0] = [];
        let missing =
            authenticate_request(&auth, none, Some(&query), AuthRequirement::required()).await;
        assert_eq!(
            missing.unwrap_err().response().www_authenticate,
            Some("Bearer")
        );
        let ws = AuthRequirement::required().accept_query_token();
        let found = authenticate_request(&auth, none, Some(&query), ws)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.owner().as_str(), "alice");
        assert!(
            authenticate_request(&auth, none, None, AuthRequirement::optional())
                .await
                .unwrap()
                .is_none()
        );
        let bad = authenticate_request(
            &auth,
            [&b"Bearer nxr_nope"[..]],
            None,
            AuthRequirement::optional(),
        )
        .await;
        assert_eq!(
            bad.unwrap_err().response().www_authenticate,
            Some(r#"Bearer error="invalid_token""#)
        );
        assert_eq!(AuthRequirement::default(), AuthRequirement::required());
    }
}
