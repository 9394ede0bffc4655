//! [`ApiError`]: every way a request can fail, and its single mapping to HTTP.
//!
//! Framework crates call [`ApiError::response`] and copy the [`Response`] into their own
//! response type; they never decide a status themselves.

use nexora_auth::{AuthError, Exceeded, InvalidReason};
use serde::Serialize;

use crate::{
    LimitHeaders, Response,
    secret_scanning::SignatureError,
    validation::{ValidationIssue, input_issue},
};

/// Everything a request to the auth layer or the endpoints can fail with: the core's
/// [`AuthError`]s, and what only a request can get wrong (no or malformed credentials, an
/// unknown route, a body too large or malformed).
///
/// The `Display` text is for logs (never a secret); what the client sees is
/// [`ApiError::response`], where every kind of bad credential reads the same.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The core refused. Statuses: bad credential 401, wrong login 401, missing scope or scope
    /// not held 403, a credential other than an API key where one is required (deriving a
    /// token) 403, limits looser than the acting key's 403, unknown key 404, expired key or
    /// taken email 409, a broken rule 422 at `["body", <field>]`, throttled or over a limit
    /// 429 (see [`crate::limits`]), store or service down 503.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No credentials were presented. 401 with `WWW-Authenticate: Bearer`.
    #[error("no credentials presented")]
    MissingCredentials,
    /// The request carried credentials in a malformed or ambiguous way (two `Authorization`
    /// headers, a header and a different `?token=`, non-ASCII bytes, an empty token). 401 with
    /// `error="invalid_request"`.
    #[error("malformed credentials: {0}")]
    InvalidRequest(&'static str),
    /// No such route. 404.
    #[error("route not found")]
    RouteNotFound,
    /// The route exists but not for this method. 405, with the route's `Allow` header when
    /// known.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods the route answers, as an `Allow` header value (`GET,HEAD,POST`).
        allow: Option<&'static str>,
    },
    /// The request body exceeds the size limit. 413.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request failed validation. 422 with a FastAPI-style `detail` array.
    #[error("validation failed: {0:?}")]
    Validation(Vec<ValidationIssue>),
    /// A secret-scanning report's signature is missing or does not verify: 401, without a
    /// `WWW-Authenticate` challenge (the report is not a bearer request). 503 when no key
    /// could be fetched to check it ([`SignatureError::KeysUnavailable`]).
    #[error("secret-scanning signature refused: {0}")]
    Signature(SignatureError),
    /// A response body could not be serialised. 503.
    #[error("response serialisation failed")]
    Serialisation(#[source] serde_json::Error),
}

impl From<Vec<ValidationIssue>> for ApiError {
    fn from(issues: Vec<ValidationIssue>) -> Self {
        Self::Validation(issues)
    }
}

const CHALLENGE_BEARER: &str = "Bearer";
const CHALLENGE_INVALID_REQUEST: &str = r#"Bearer error="invalid_request""#;
const CHALLENGE_INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;
const CHALLENGE_INSUFFICIENT_SCOPE: &str = r#"Bearer error="insufficient_scope""#;

#[derive(Serialize)]
struct DetailBody<'a, T: Serialize + ?Sized> {
    detail: &'a T,
}

fn json_detail<T: Serialize + ?Sized>(detail: &T) -> String {
    // Serialising a string or a list of plain structs cannot fail.
    serde_json::to_string(&DetailBody { detail }).unwrap_or_else(|_| r#"{"detail":"error"}"#.into())
}

impl ApiError {
    /// A bad credential of the given reason (401 `invalid_token`).
    pub fn invalid_token(reason: InvalidReason) -> Self {
        Self::Auth(AuthError::InvalidToken(reason))
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Self::Auth(error) => match error {
                AuthError::InvalidToken(_) | AuthError::InvalidLogin => 401,
                // Authenticated, with a credential that may not do this: 403, not 401 (the
                // credential is good, and retrying it will not help).
                AuthError::InsufficientScope { .. }
                | AuthError::ScopeNotHeld
                | AuthError::LimitNotHeld
                | AuthError::KeyRequired => 403,
                AuthError::KeyNotFound => 404,
                AuthError::KeyExpired | AuthError::EmailTaken => 409,
                AuthError::InvalidInput(_) => 422,
                AuthError::RateLimited { .. } | AuthError::LimitExceeded(_) => 429,
                // Unavailable, and anything the core adds later: fail closed, never 2xx/401.
                _ => 503,
            },
            Self::MissingCredentials | Self::InvalidRequest(_) => 401,
            Self::RouteNotFound => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::PayloadTooLarge => 413,
            Self::Validation(_) => 422,
            Self::Signature(SignatureError::KeysUnavailable) | Self::Serialisation(_) => 503,
            Self::Signature(_) => 401,
        }
    }

    /// The client-facing `detail` text (a 422's `detail` is the array of issues instead).
    pub fn detail(&self) -> &'static str {
        match self {
            Self::Auth(error) => match error {
                AuthError::InvalidToken(_) => "Invalid authentication credentials",
                AuthError::InvalidLogin => "Incorrect email or password",
                AuthError::InsufficientScope { .. } => "Insufficient permissions",
                AuthError::ScopeNotHeld => "Cannot grant scopes you do not have",
                AuthError::LimitNotHeld => "Cannot grant limits looser than your own",
                AuthError::LimitExceeded(refusal) => match refusal.exceeded {
                    Exceeded::Credits => "API key usage limit exceeded",
                    _ => "Rate limit exceeded",
                },
                AuthError::KeyRequired => "An API key is required to derive a token",
                AuthError::KeyNotFound => "API key not found",
                AuthError::KeyExpired => "API key has expired and cannot be rotated",
                AuthError::EmailTaken => "Email already registered",
                AuthError::InvalidInput(_) => "Validation error",
                AuthError::RateLimited { .. } => "Too many requests",
                _ => "Service temporarily unavailable",
            },
            Self::MissingCredentials => "Not authenticated",
            Self::InvalidRequest(_) => "Invalid authorization request",
            Self::RouteNotFound => "Not Found",
            Self::MethodNotAllowed { .. } => "Method Not Allowed",
            Self::PayloadTooLarge => "Request body too large",
            Self::Validation(_) => "Validation error",
            Self::Signature(SignatureError::KeysUnavailable) | Self::Serialisation(_) => {
                "Service temporarily unavailable"
            }
            Self::Signature(_) => "Invalid or missing GitHub signature",
        }
    }

    /// The complete HTTP response for this error. The single place where errors become HTTP.
    pub fn response(&self) -> Response {
        let body = match self {
            Self::Validation(issues) => json_detail(issues.as_slice()),
            Self::Auth(AuthError::InvalidInput(input)) => json_detail(&[input_issue(input)]),
            other => json_detail(other.detail()),
        };
        let www_authenticate = match self {
            Self::MissingCredentials => Some(CHALLENGE_BEARER),
            Self::InvalidRequest(_) => Some(CHALLENGE_INVALID_REQUEST),
            Self::Auth(AuthError::InvalidToken(_)) => Some(CHALLENGE_INVALID_TOKEN),
            Self::Auth(AuthError::InsufficientScope { .. }) => Some(CHALLENGE_INSUFFICIENT_SCOPE),
            _ => None,
        };
        let status = self.status();
        let retry_after = match self {
            Self::Auth(AuthError::RateLimited { retry_after_secs }) => Some(*retry_after_secs),
            Self::Auth(AuthError::LimitExceeded(refusal)) => refusal.retry_after_secs,
            _ if status == 503 => Some(1),
            _ => None,
        };
        let allow = match self {
            Self::MethodNotAllowed { allow } => *allow,
            _ => None,
        };
        let limits = match self {
            Self::Auth(AuthError::LimitExceeded(refusal)) => LimitHeaders::of(&refusal.usage),
            _ => None,
        };
        Response {
            status,
            body: Some(body),
            www_authenticate,
            retry_after,
            allow,
            limits,
        }
    }
}

#[cfg(test)]
mod tests {
    use nexora_auth::{
        Field, InvalidInput, JwtRejection, KeyParseError, Problem, StoreError, Unavailable,
    };

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
            InvalidReason::TooLarge,
            InvalidReason::MalformedKey(KeyParseError::BadChecksum),
            InvalidReason::Jwt(JwtRejection::Signature),
        ];
        let responses: Vec<_> = reasons
            .into_iter()
            .map(|r| ApiError::invalid_token(r).response())
            .collect();
        assert!(responses.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(responses[0].status, 401);
        assert_eq!(
            responses[0].body.as_deref(),
            Some(r#"{"detail":"Invalid authentication credentials"}"#)
        );
        assert_eq!(
            responses[0].www_authenticate,
            Some(r#"Bearer error="invalid_token""#)
        );
    }

    #[test]
    fn statuses_and_challenges() {
        let missing = ApiError::MissingCredentials.response();
        assert_eq!(
            (missing.status, missing.www_authenticate),
            (401, Some("Bearer"))
        );
        let scope = ApiError::from(AuthError::InsufficientScope {
            required: "agents:read".into(),
        })
        .response();
        assert_eq!(scope.status, 403);
        assert_eq!(
            scope.body.as_deref(),
            Some(r#"{"detail":"Insufficient permissions"}"#)
        );
        assert_eq!(
            scope.www_authenticate,
            Some(r#"Bearer error="insufficient_scope""#)
        );
        let limited = ApiError::from(AuthError::RateLimited {
            retry_after_secs: 7,
        })
        .response();
        assert_eq!((limited.status, limited.retry_after), (429, Some(7)));
        for down in [
            AuthError::StoreUnavailable(StoreError::unavailable("refused")),
            AuthError::Unavailable(Unavailable::NoUserStore),
        ] {
            let down = ApiError::from(down).response();
            assert_eq!((down.status, down.retry_after), (503, Some(1)));
        }
        assert_eq!(ApiError::from(AuthError::KeyNotFound).status(), 404);
        let not_allowed = ApiError::MethodNotAllowed {
            allow: Some("GET,HEAD"),
        }
        .response();
        assert_eq!(
            (not_allowed.status, not_allowed.allow),
            (405, Some("GET,HEAD"))
        );
    }

    #[test]
    fn a_broken_rule_is_a_fastapi_422_at_its_body_field() {
        let e = ApiError::from(AuthError::InvalidInput(InvalidInput::new(
            Field::Password,
            Problem::TooShort { min: 8 },
        )));
        let response = e.response();
        assert_eq!(response.status, 422);
        assert_eq!(
            response.body.as_deref(),
            Some(
                r#"{"detail":[{"loc":["body","password"],"msg":"Password must be at least 8 characters","type":"string_too_short"}]}"#
            )
        );
    }
}
