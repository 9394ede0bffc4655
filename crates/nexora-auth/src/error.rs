//! The one error type of the auth core and its single mapping to HTTP.
//!
//! Framework crates call [`AuthError::response`] and copy the status, headers and body into
//! their own response types; they never decide a status themselves.

use std::fmt;

use serde::Serialize;

use crate::{KeyParseError, ScopeError, store::StoreError};

/// Everything that can go wrong when authenticating or managing credentials.
///
/// The `Display` text is for logs: it names the internal reason (never a secret). What the
/// client sees comes from [`AuthError::response`], where every kind of bad credential reads the
/// same.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials were presented. 401 with `WWW-Authenticate: Bearer`.
    #[error("no credentials presented")]
    MissingCredentials,
    /// The request carried credentials in a malformed or ambiguous way (two `Authorization`
    /// headers, a header and a different `?token=`, non-ASCII bytes, an empty token). 401 with
    /// `error="invalid_request"`.
    #[error("malformed credentials: {0}")]
    InvalidRequest(&'static str),
    /// The token is not a valid credential: unknown, tampered, revoked or expired key; bad,
    /// expired or foreign JWT. 401 with `error="invalid_token"`. The reason is for logs only.
    #[error("invalid token: {0}")]
    InvalidToken(InvalidReason),
    /// Login failed: unknown email or wrong password (deliberately indistinguishable). 401.
    #[error("incorrect email or password")]
    InvalidLogin,
    /// The principal lacks a required scope. 403 with `error="insufficient_scope"`.
    #[error("insufficient scope: {required} required")]
    InsufficientScope {
        /// The scope that was required.
        required: String,
    },
    /// A key was requested with scopes its creator does not hold. 403.
    #[error("requested scopes exceed the creator's")]
    ScopeNotHeld,
    /// No such API key for this owner (including another owner's key). 404.
    #[error("API key not found")]
    KeyNotFound,
    /// No such route. 404.
    #[error("route not found")]
    RouteNotFound,
    /// The route exists but not for this method. 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The key is expired and cannot be rotated. 409.
    #[error("cannot rotate an expired key")]
    KeyExpired,
    /// The email is already registered. 409.
    #[error("email already registered")]
    EmailTaken,
    /// The request body exceeds the size limit. 413.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request failed validation. 422 with a FastAPI-style `detail` array.
    #[error("validation failed: {0:?}")]
    Validation(Vec<ValidationIssue>),
    /// Too many attempts. 429 with `Retry-After`.
    #[error("rate limited for {retry_after_secs}s")]
    RateLimited {
        /// Seconds until the client may try again.
        retry_after_secs: u64,
    },
    /// The credential store failed (connection refused, timeout). 503 — never a 401, because
    /// the credential might be valid.
    #[error("credential store unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// Something other than the store failed, or is not configured. 503.
    #[error("temporarily unavailable: {0}")]
    Unavailable(#[source] Unavailable),
}

/// What made a request [`AuthError::Unavailable`] (503): one variant per cause, so tests and
/// logs can tell them apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The operating system's random source failed (key generation).
    #[error("randomness unavailable")]
    Randomness(#[source] crate::RandomnessError),
    /// Two freshly generated key ids collided with stored ones, twice in a row.
    #[error("key id collision")]
    KeyIdCollision,
    /// The operation needs a user store and none is configured.
    #[error("no user store configured")]
    NoUserStore,
    /// The operation needs a JWT authority and none is configured.
    #[error("no JWT authority configured")]
    NoTokenAuthority,
    /// Signing an access token failed.
    #[error("token signing failed")]
    Signing(#[source] crate::jwt::SigningError),
    /// The password hashing threads are gone, or a hashing job died.
    #[error("password hashing pool unavailable")]
    HashingPool,
    /// argon2 refused to hash (parameters or input out of its range).
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// A response body could not be serialised.
    #[error("response serialisation failed")]
    Serialisation(#[source] serde_json::Error),
}

impl From<Unavailable> for AuthError {
    fn from(cause: Unavailable) -> Self {
        Self::Unavailable(cause)
    }
}

/// Why a token was rejected. Logged and counted, never shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The `nxr_` key does not parse.
    #[error("malformed key: {0}")]
    MalformedKey(KeyParseError),
    /// The token is neither a well-formed key nor a JWT.
    #[error("unrecognised token format")]
    UnrecognisedFormat,
    /// The token exceeds the size cap.
    #[error("token too large")]
    TooLarge,
    /// No key with this id.
    #[error("unknown key")]
    UnknownKey,
    /// The id exists but the secret does not match.
    #[error("key secret mismatch")]
    SecretMismatch,
    /// The key's digest was made with a pepper this server does not hold.
    #[error("unknown pepper version")]
    UnknownPepper,
    /// The key has been revoked.
    #[error("key revoked")]
    Revoked,
    /// The key or token has expired.
    #[error("expired")]
    Expired,
    /// The user behind the token or key (its `sub` or owner) does not exist in the user store.
    #[error("unknown user")]
    UnknownUser,
    /// The user behind the token or key is disabled.
    #[error("user disabled")]
    UserDisabled,
    /// The JWT failed verification.
    #[error("jwt rejected: {0}")]
    Jwt(JwtRejection),
}

/// Why a JWT failed verification (the key-level reasons, such as [`InvalidReason::Expired`],
/// are [`InvalidReason`]s of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtRejection {
    /// Not three base64url segments of JSON, or a claim of the wrong type.
    #[error("malformed token")]
    Malformed,
    /// The header names a `kid` no verifying key has, or a `kid` other than the verifying
    /// key's.
    #[error("unknown kid")]
    UnknownKid,
    /// The header's `alg` is not the verifying key's pinned algorithm.
    #[error("algorithm not allowed")]
    Algorithm,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `iss` is not the configured issuer (or not a string).
    #[error("wrong issuer")]
    Issuer,
    /// `aud` is not the configured audience.
    #[error("wrong audience")]
    Audience,
    /// A required claim (`exp`, `iss`, `aud`, `sub`) is missing.
    #[error("missing required claim")]
    MissingClaim,
    /// `nbf` is in the future (beyond the leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("issued in the future")]
    IssuedInFuture,
    /// `exp` lies beyond the maximum lifetime.
    #[error("lifetime exceeds maximum")]
    LifetimeTooLong,
    /// A `crit` header: no extension is understood.
    #[error("crit header not supported")]
    Crit,
    /// `typ` is present and not `JWT` or `at+jwt`.
    #[error("not an access token (typ)")]
    Typ,
    /// The claims nest deeper than the limit.
    #[error("claims nested too deeply")]
    TooDeep,
    /// `sub` is empty.
    #[error("empty sub")]
    EmptySubject,
    /// `scope` is not a space-separated list of valid scopes.
    #[error("invalid scope claim")]
    Scope,
}

/// One entry of a 422 `detail` array, in the shape FastAPI clients already parse:
/// `{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationIssue {
    /// Where the problem is: `["body", "name"]`, `["path", "key_id"]`, `["body"]`.
    pub loc: Vec<LocPart>,
    /// Human-readable message.
    pub msg: String,
    /// Machine-readable kind: `missing`, `string_type`, `json_invalid`, `uuid_parsing`, …
    #[serde(rename = "type")]
    pub kind: String,
}

impl ValidationIssue {
    /// Builds an issue.
    pub fn new(loc: Vec<LocPart>, msg: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            loc,
            msg: msg.into(),
            kind: kind.into(),
        }
    }
}

/// A segment of a validation location: a field name or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LocPart {
    /// A field name (or `body`, `path`, `query`).
    Field(String),
    /// An index into an array.
    Index(usize),
}

impl From<&str> for LocPart {
    fn from(value: &str) -> Self {
        Self::Field(value.to_owned())
    }
}

impl From<usize> for LocPart {
    fn from(value: usize) -> Self {
        Self::Index(value)
    }
}

/// The HTTP shape of an error: status, body and headers. Built by [`AuthError::response`] and
/// copied verbatim by the framework crates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorResponse {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body, `{"detail": …}`.
    pub body: String,
    /// The `WWW-Authenticate` header value, for 401 and 403.
    pub www_authenticate: Option<&'static str>,
    /// The `Retry-After` header value in seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ErrorResponse {
    /// The content type of [`ErrorResponse::body`].
    pub const CONTENT_TYPE: &'static str = "application/json";
}

#[derive(Serialize)]
struct DetailBody<'a, T: Serialize + ?Sized> {
    detail: &'a T,
}

fn json_detail<T: Serialize + ?Sized>(detail: &T) -> String {
    // Serialising a string or a list of plain structs cannot fail.
    serde_json::to_string(&DetailBody { detail }).unwrap_or_else(|_| r#"{"detail":"error"}"#.into())
}

const CHALLENGE_BEARER: &str = "Bearer";
const CHALLENGE_INVALID_REQUEST: &str = r#"Bearer error="invalid_request""#;
const CHALLENGE_INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;
const CHALLENGE_INSUFFICIENT_SCOPE: &str = r#"Bearer error="insufficient_scope""#;

impl AuthError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingCredentials
            | Self::InvalidRequest(_)
            | Self::InvalidToken(_)
            | Self::InvalidLogin => 401,
            Self::InsufficientScope { .. } | Self::ScopeNotHeld => 403,
            Self::KeyNotFound | Self::RouteNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::KeyExpired | Self::EmailTaken => 409,
            Self::PayloadTooLarge => 413,
            Self::Validation(_) => 422,
            Self::RateLimited { .. } => 429,
            Self::StoreUnavailable(_) | Self::Unavailable(_) => 503,
        }
    }

    /// The client-facing `detail` text (for every variant but [`AuthError::Validation`]).
    pub fn detail(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "Not authenticated",
            Self::InvalidRequest(_) => "Invalid authorization request",
            Self::InvalidToken(_) => "Invalid authentication credentials",
            Self::InvalidLogin => "Incorrect email or password",
            Self::InsufficientScope { .. } => "Insufficient permissions",
            Self::ScopeNotHeld => "Cannot grant scopes you do not have",
            Self::KeyNotFound => "API key not found",
            Self::RouteNotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::KeyExpired => "API key has expired and cannot be rotated",
            Self::EmailTaken => "Email already registered",
            Self::PayloadTooLarge => "Request body too large",
            Self::Validation(_) => "Validation error",
            Self::RateLimited { .. } => "Too many requests",
            Self::StoreUnavailable(_) | Self::Unavailable(_) => "Service temporarily unavailable",
        }
    }

    /// The complete HTTP response for this error. The single place where errors become HTTP.
    pub fn response(&self) -> ErrorResponse {
        let body = match self {
            Self::Validation(issues) => json_detail(issues.as_slice()),
            other => json_detail(other.detail()),
        };
        let www_authenticate = match self {
            Self::MissingCredentials => Some(CHALLENGE_BEARER),
            Self::InvalidRequest(_) => Some(CHALLENGE_INVALID_REQUEST),
            Self::InvalidToken(_) => Some(CHALLENGE_INVALID_TOKEN),
            Self::InsufficientScope { .. } => Some(CHALLENGE_INSUFFICIENT_SCOPE),
            _ => None,
        };
        let retry_after = match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::StoreUnavailable(_) | Self::Unavailable(_) => Some(1),
            _ => None,
        };
        ErrorResponse {
            status: self.status(),
            body,
            www_authenticate,
            retry_after,
        }
    }

    /// A 422 for a single problem.
    pub fn validation(loc: Vec<LocPart>, msg: impl Into<String>, kind: impl Into<String>) -> Self {
        Self::Validation(vec![ValidationIssue::new(loc, msg, kind)])
    }
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        Self::StoreUnavailable(error)
    }
}

impl From<ScopeError> for AuthError {
    fn from(error: ScopeError) -> Self {
        Self::validation(
            vec!["body".into(), "scopes".into()],
            error.to_string(),
            "value_error",
        )
    }
}

/// A configuration mistake found at startup (never at the first request).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The pepper is too short.
    #[error("key pepper must be at least {min} bytes")]
    PepperTooShort {
        /// Minimum length in bytes.
        min: usize,
    },
    /// Two peppers share a version.
    #[error("pepper version {0} appears twice")]
    DuplicatePepperVersion(u32),
    /// The HS256 secret is too short.
    #[error("JWT secret must be at least {min} bytes")]
    JwtSecretTooShort {
        /// Minimum length in bytes.
        min: usize,
    },
    /// A JWT key could not be loaded.
    #[error("invalid JWT key: {0}")]
    JwtKey(String),
    /// No JWT crypto backend is available (a build without `rust-crypto` or `aws-lc-rs`).
    #[error("no JWT crypto backend is available; enable the `rust-crypto` or `aws-lc-rs` feature")]
    NoCryptoBackend,
    /// An option is out of range.
    #[error("invalid option: {0}")]
    Invalid(&'static str),
    /// An entry of a trusted-proxy list is neither an IP address nor a CIDR block.
    #[error(
        "invalid trusted proxy {0:?}: expected an IP address or a CIDR block such as 10.0.0.0/8"
    )]
    TrustedProxy(String),
}

impl fmt::Display for LocPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => f.write_str(name),
            Self::Index(i) => write!(f, "{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_credential_reads_the_same() {
        let reasons = [
            InvalidReason::UnknownKey,
            InvalidReason::Revoked,
            InvalidReason::Expired,
            InvalidReason::SecretMismatch,
            InvalidReason::UnknownUser,
            InvalidReason::UserDisabled,
            InvalidReason::MalformedKey(KeyParseError::BadChecksum),
            InvalidReason::Jwt(JwtRejection::Signature),
        ];
        let responses: Vec<_> = reasons
            .into_iter()
            .map(|r| AuthError::InvalidToken(r).response())
            .collect();
        assert!(responses.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(responses[0].status, 401);
        assert_eq!(
            responses[0].body,
            r#"{"detail":"Invalid authentication credentials"}"#
        );
        assert_eq!(
            responses[0].www_authenticate,
            Some(r#"Bearer error="invalid_token""#)
        );
    }

    #[test]
    fn statuses_and_challenges() {
        let missing = AuthError::MissingCredentials.response();
        assert_eq!(
            (missing.status, missing.www_authenticate),
            (401, Some("Bearer"))
        );
        let scope = AuthError::InsufficientScope {
            required: "agents:read".into(),
        }
        .response();
        assert_eq!(scope.status, 403);
        assert_eq!(scope.body, r#"{"detail":"Insufficient permissions"}"#);
        assert_eq!(
            scope.www_authenticate,
            Some(r#"Bearer error="insufficient_scope""#)
        );
        let limited = AuthError::RateLimited {
            retry_after_secs: 7,
        }
        .response();
        assert_eq!((limited.status, limited.retry_after), (429, Some(7)));
        let down = AuthError::StoreUnavailable(StoreError::unavailable("refused")).response();
        assert_eq!(down.status, 503);
        assert_eq!(AuthError::KeyNotFound.status(), 404);
    }

    #[test]
    fn validation_detail_is_a_fastapi_array() {
        let e = AuthError::validation(
            vec!["body".into(), "name".into()],
            "Field required",
            "missing",
        );
        assert_eq!(e.response().status, 422);
        assert_eq!(
            e.response().body,
            r#"{"detail":[{"loc":["body","name"],"msg":"Field required","type":"missing"}]}"#
        );
    }
}
