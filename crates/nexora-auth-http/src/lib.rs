//! The HTTP layer of [`nexora_auth`]: what turns requests into calls of the core and its
//! answers into responses, for any web framework.
//!
//! ```
//! use std::sync::Arc;
//! use nexora_auth::{Authenticator, MemoryKeyStore, MemoryUserStore, PepperRing, Scopes, SecretBytes, SecretString};
//! use nexora_auth_http::{Api, HeaderText, Request, RequestHeaders, handle, scopes};
//!
//! /// A framework's header map, as an adapter wraps it.
//! struct Headers(Vec<(&'static str, Vec<u8>)>);
//! impl RequestHeaders for Headers {
//!     fn values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a {
//!         self.0.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v.as_slice())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pepper = SecretBytes::new(b"pepper: 32+ random bytes, kept out of the db".to_vec());
//! # let jwt = SecretBytes::new(b"jwt secret: 32+ random bytes, keep it safe".to_vec());
//! # use nexora_auth::{JwtConfig, JwtKeys, PasswordPolicy, TokenAuthority};
//! # let auth = Authenticator::builder(Arc::new(MemoryKeyStore::new()), PepperRing::new(1, pepper)?)
//! #     .users(Arc::new(MemoryUserStore::new()))
//! #     .tokens(TokenAuthority::new(JwtKeys::hs256(&jwt)?, JwtConfig::new("nexora", "nexora-api"))?)
//! #     .password_policy(PasswordPolicy::default().argon2_params(256, 1, 1))
//! #     .build()?;
//! auth.register_user("ada@example.com", &SecretString::from("a long passphrase"),
//!     Scopes::new([scopes::KEYS_MANAGE])?).await?;
//! let api = Api::new(auth);
//!
//! // POST /api/auth/login, as an adapter hands it over: the body is read only if needed.
//! let headers = Headers(vec![("content-type", b"application/json".to_vec())]);
//! let body = br#"{"email": "ada@example.com", "password": "a long passphrase"}"#;
//! let login = handle(&api, Request::new("POST", "/auth/login", &headers), |_limit| async {
//!     Ok::<_, nexora_auth_http::BodyError>(body)
//! }).await;
//! assert_eq!(login.status, 200);
//! // The token is for this caller only: no cache may keep it.
//! assert!(login.headers().any(|h| h == ("cache-control", HeaderText::Static("no-store"))));
//!
//! // An unknown route is 404 before anything else, whatever the credentials.
//! let none = Headers(vec![]);
//! let missing = handle(&api, Request::new("GET", "/nope", &none), |_| async {
//!     Ok::<_, nexora_auth_http::BodyError>(Vec::new())
//! }).await;
//! assert_eq!((missing.status, missing.body.as_deref()), (404, Some(r#"{"detail":"Not Found"}"#)));
//! # Ok(())
//! # }
//! ```
//!
//! # What is here
//!
//! * [`credentials`]: the one parser of `Authorization: Bearer`, `?token=` and `?ticket=`.
//! * [`routes`]: the one route table ([`routes::ROUTES`]) and its router: 404, 405 with
//!   `Allow`, `HEAD`.
//! * [`handle`] and [`endpoints`]: login, `me`, API key management, tokens derived from a key,
//!   single-use WebSocket tickets, the caller's audit trail, revoking a key by its text and
//!   GitHub's secret-scanning reports, with the order of checks FastAPI clients expect.
//! * [`ApiError`]: the single mapping of every error to a status, a `{"detail": …}` body and the
//!   `WWW-Authenticate`, `Retry-After` and `Allow` headers.
//! * [`validation`]: FastAPI-shaped 422s, from typed decoding errors and the core's
//!   [`InvalidInput`](nexora_auth::InvalidInput).
//! * [`proxy`]: the client address behind trusted reverse proxies, for the login throttle and
//!   the audit trail (every authenticated [`Principal`](nexora_auth::Principal) carries it),
//!   and the limit on revoking keys by possession.
//! * [`secret_scanning`]: GitHub's secret-scanning reports — the ECDSA signature over the raw
//!   body, GitHub's key document and its cache, the report and feedback formats.
//! * [`scopes`]: the product's scope names.
//! * [`websocket`]: the Close frame a WebSocket sends when its credential ends (revoked,
//!   rotated, expired, user disabled) or cannot be checked, and the future that waits for it.
//! * `openapi` (feature `openapi`, off by default): the OpenAPI 3.1 document of the endpoints,
//!   generated from [`routes::ROUTES`] and the wire types with utoipa, every route with every
//!   status it can answer; hosts add their own routes to it.
//!
//! # What the OpenAPI document cannot express
//!
//! A JSON Schema states the shape of a request, not every rule; the document says these in its
//! descriptions, and schemathesis runs against `nexora-server` allow for them:
//!
//! * an `expires_at` must be in the future by the server's clock (else 422), and no later than
//!   the year 9999 in UTC; a key created with a key expires no later than that key;
//! * requested `scopes` must be ones the caller holds (else 403);
//! * a key out of the caller's reach (another user's, revoked, broader or longer-lived than the
//!   credential) answers 404 like an unknown id;
//! * a name is 1 to 100 characters *after trimming*, a login email at most 254 *bytes*;
//! * repeated login failures answer 429 whatever the body;
//! * `POST /keys/revoke` answers the same 202 whatever the key, and 429 past a client's limit;
//!   `POST /secret-scanning/github` exists only where it is configured, and its signature must
//!   verify over the raw body;
//! * a WebSocket route behind the auth layer (the server's `/api/ws/{chat_id}`) answers a plain
//!   `GET`, one that asks for no upgrade, with 400 (or 426 when the connection cannot be
//!   upgraded) after the credential check.
//!
//! The framework crates (`nexora-auth-axum`, `nexora-auth-actix`) convert requests and
//! responses and implement their framework's traits; no rule lives in them.
//!
//! The core (`nexora-auth`) knows none of this: it speaks of keys, tokens, principals and
//! fields, and an admin tool or another transport can use it without learning HTTP.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod credentials;
pub mod endpoints;
mod error;
pub mod limits;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod proxy;
pub mod routes;
pub mod scopes;
pub mod secret_scanning;
pub mod validation;
pub mod websocket;

use serde::Serialize;

pub use credentials::{QueryToken, extract_credential};
pub use endpoints::{
    AUTHORIZATION, Api, AuthRequirement, BodyError, CONTENT_TYPE, Guard, Request, RequestHeaders,
    authenticate_request, authenticate_request_at, client_address, handle,
};
pub use error::ApiError;
pub use limits::LimitHeaders;
pub use nexora_auth;

/// A response, to be copied into the framework's own response type.
///
/// The status is always a valid HTTP status (100 to 599). [`Response::headers`] lists every
/// header to set, `Cache-Control: no-store` on every response: answers carry keys, tokens and
/// tickets shown once, and the rest (key lists, audit trails, errors) is about one caller's
/// credentials, none of it for a browser's or a proxy's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body ([`Response::CONTENT_TYPE`]), or `None` (204).
    pub body: Option<String>,
    /// The `WWW-Authenticate` header value, for 401 and 403.
    pub www_authenticate: Option<&'static str>,
    /// The `Retry-After` header value in seconds, for 429 and 503.
    pub retry_after: Option<u64>,
    /// The `Allow` header value, for 405.
    pub allow: Option<&'static str>,
    /// The `RateLimit-Policy` and `RateLimit` headers, when the credential has limits (see
    /// [`limits`]).
    pub limits: Option<LimitHeaders>,
}

/// A header value of a [`Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderText {
    /// A fixed text.
    Static(&'static str),
    /// A number of seconds (`Retry-After`).
    Seconds(u64),
    /// A computed text (the `RateLimit` headers): visible ASCII only.
    Text(String),
}

impl Response {
    /// The content type of [`Response::body`].
    pub const CONTENT_TYPE: &'static str = "application/json";

    pub(crate) fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Result<Self, ApiError> {
        let body = serde_json::to_string(value).map_err(ApiError::Serialisation)?;
        Ok(Self {
            status,
            body: Some(body),
            www_authenticate: None,
            retry_after: None,
            allow: None,
            limits: None,
        })
    }

    pub(crate) fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
            www_authenticate: None,
            retry_after: None,
            allow: None,
            limits: None,
        }
    }

    /// Adds the `RateLimit` headers of `usage` (see [`limits`]), unless the response already
    /// has them.
    #[must_use]
    pub fn with_usage(mut self, usage: Option<&nexora_auth::Usage>) -> Self {
        if self.limits.is_none() {
            self.limits = usage.and_then(LimitHeaders::of);
        }
        self
    }

    /// The `Cache-Control` value of every response.
    pub const CACHE_CONTROL: &'static str = "no-store";

    /// Every header to set, lower-case names: `cache-control` ([`Response::CACHE_CONTROL`],
    /// always), `content-type` (with a body), `www-authenticate`, `retry-after`, `allow`,
    /// `ratelimit-policy`, `ratelimit`.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, HeaderText)> + use<> {
        let (policy, state) = match &self.limits {
            Some(l) => (l.policy.clone(), Some(l.state.clone())),
            None => (None, None),
        };
        [
            Some(("cache-control", HeaderText::Static(Self::CACHE_CONTROL))),
            self.body
                .as_ref()
                .map(|_| (CONTENT_TYPE, HeaderText::Static(Self::CONTENT_TYPE))),
            self.www_authenticate
                .map(|v| ("www-authenticate", HeaderText::Static(v))),
            self.retry_after
                .map(|s| ("retry-after", HeaderText::Seconds(s))),
            self.allow.map(|v| ("allow", HeaderText::Static(v))),
            policy.map(|v| ("ratelimit-policy", HeaderText::Text(v))),
            state.map(|v| ("ratelimit", HeaderText::Text(v))),
        ]
        .into_iter()
        .flatten()
    }
}
