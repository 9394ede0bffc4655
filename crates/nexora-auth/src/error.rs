//! The errors of the auth core, in domain terms only.
//!
//! Nothing here knows HTTP: statuses, response bodies and request locations are the business
//! of the HTTP layer (`nexora-auth-http`), which maps every variant in one place.

use std::fmt;

use crate::{KeyParseError, ScopeError, store::StoreError};

/// Everything that can go wrong when authenticating or managing credentials.
///
/// The `Display` text is for logs: it names the internal reason (never a secret). What a client
/// is told is the HTTP layer's decision; it reads every kind of bad credential the same.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not a valid credential: unknown, tampered, revoked or expired key; bad,
    /// expired or foreign JWT. The reason is for logs only.
    #[error("invalid token: {0}")]
    InvalidToken(InvalidReason),
    /// Login failed: unknown email or wrong password (deliberately indistinguishable).
    #[error("incorrect email or password")]
    InvalidLogin,
    /// The principal lacks a required scope.
    #[error("insufficient scope: {required} required")]
    InsufficientScope {
        /// The scope that was required.
        required: String,
    },
    /// A key or a derived token was requested with scopes its creator does not hold.
    #[error("requested scopes exceed the creator's")]
    ScopeNotHeld,
    /// A key was requested, or changed, with limits looser than the acting key's own (see
    /// [`crate::policy::grant_limits`] and [`crate::policy::may_change_limits`]).
    #[error("requested limits exceed the creator's")]
    LimitNotHeld,
    /// A rate limit or the key's credits refused the request (see [`crate::limits`]).
    #[error("limit exceeded: {0:?}")]
    LimitExceeded(Box<crate::limits::LimitRefusal>),
    /// The operation takes an API key as credential and was given another (a JWT, a derived
    /// token): [`Authenticator::derive_token`](crate::Authenticator::derive_token).
    #[error("an API key is required")]
    KeyRequired,
    /// No such API key within the caller's reach (an unknown id, another owner's key, a
    /// revoked key: all read the same).
    #[error("API key not found")]
    KeyNotFound,
    /// The key is expired and cannot be rotated.
    #[error("cannot rotate an expired key")]
    KeyExpired,
    /// The email is already registered.
    #[error("email already registered")]
    EmailTaken,
    /// A value the caller supplied breaks a rule (a name too long, an expiry in the past, …).
    #[error("invalid input: {0}")]
    InvalidInput(InvalidInput),
    /// Too many attempts.
    #[error("rate limited for {retry_after_secs}s")]
    RateLimited {
        /// Seconds until the client may try again.
        retry_after_secs: u64,
    },
    /// The credential store failed (connection refused, timeout). Never to be read as "bad
    /// credential": the credential might be valid.
    #[error("credential store unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// Something other than the store failed, or is not configured.
    #[error("temporarily unavailable: {0}")]
    Unavailable(#[source] Unavailable),
}

/// A value that breaks one of the core's rules: which field, and what is wrong with it.
///
/// The field is named in domain terms ([`Field`]); a transport says where it was in its own
/// terms (the HTTP layer answers 422 at `["body", "name"]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InvalidInput {
    /// The offending value.
    pub field: Field,
    /// What is wrong with it.
    pub problem: Problem,
}

impl InvalidInput {
    /// Builds the error.
    pub fn new(field: Field, problem: Problem) -> Self {
        Self { field, problem }
    }
}

impl From<InvalidInput> for AuthError {
    fn from(error: InvalidInput) -> Self {
        Self::InvalidInput(error)
    }
}

/// An input of the core's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// A key's name ([`NewKey::name`](crate::NewKey::name)).
    Name,
    /// A user's email.
    Email,
    /// A user's password.
    Password,
    /// A key's or user's scopes.
    Scopes,
    /// A key's expiry ([`NewKey::expires_at`](crate::NewKey::expires_at)).
    ExpiresAt,
    /// A derived token's lifetime ([`TokenRequest::ttl_secs`](crate::TokenRequest::ttl_secs)).
    TtlSecs,
    /// The chat a WebSocket ticket is for ([`Authenticator::issue_ticket`](crate::Authenticator::issue_ticket)).
    ChatId,
}

impl Field {
    /// The field's name as a request spells it: `name`, `email`, `password`, `scopes`,
    /// `expires_at`, `ttl_secs`, `chat_id`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Email => "email",
            Self::Password => "password",
            Self::Scopes => "scopes",
            Self::ExpiresAt => "expires_at",
            Self::TtlSecs => "ttl_secs",
            Self::ChatId => "chat_id",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with an [`InvalidInput`]'s value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Longer than `max` bytes.
    #[error("must be at most {max} bytes")]
    TooLong {
        /// The limit, in bytes.
        max: usize,
    },
    /// Shorter than `min` characters.
    #[error("must be at least {min} characters")]
    TooShort {
        /// The limit, in characters.
        min: usize,
    },
    /// Not `min` to `max` characters long.
    #[error("must be {min} to {max} characters")]
    Length {
        /// The shortest allowed, in characters.
        min: usize,
        /// The longest allowed, in characters.
        max: usize,
    },
    /// A number below `min`.
    #[error("must be at least {min}")]
    BelowMinimum {
        /// The smallest allowed.
        min: u64,
    },
    /// Holds a control character (NUL among them).
    #[error("must not contain control characters")]
    ControlCharacter,
    /// Not of the form `local@domain`.
    #[error("is not an email address")]
    NotAnEmail,
    /// A time that must lie ahead of the clock does not.
    #[error("must be in the future")]
    NotInFuture,
    /// A time past the last instant stores keep: the end of the year 9999 in UTC (a local
    /// time with a negative offset can reach it).
    #[error("must be no later than the year 9999 in UTC")]
    OutOfRange,
    /// A scope list that does not parse.
    #[error("{0}")]
    Scope(ScopeError),
}

/// What made an operation [`AuthError::Unavailable`]: one variant per cause, so tests and
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
    /// The operation reads the audit trail and no audit store is configured.
    #[error("no audit store configured")]
    NoAuditStore,
    /// The operation needs a ticket store and none is configured
    /// ([`AuthenticatorBuilder::ws_tickets`](crate::AuthenticatorBuilder::ws_tickets)).
    #[error("no ticket store configured")]
    NoTicketStore,
    /// Signing an access token failed.
    #[error("token signing failed")]
    Signing(#[source] crate::jwt::SigningError),
    /// The password hashing threads are gone, or a hashing job died.
    #[error("password hashing pool unavailable")]
    HashingPool,
    /// argon2 refused to hash (parameters or input out of its range).
    #[error("password hashing failed: {0}")]
    Hashing(String),
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
    /// A WebSocket ticket that is not of the ticket format.
    #[error("malformed ticket")]
    MalformedTicket,
    /// A well-formed WebSocket ticket that was never issued, was used already, or expired
    /// (indistinguishable: the store keeps none of them).
    #[error("unknown, used or expired ticket")]
    UnknownTicket,
    /// A WebSocket ticket issued for another chat (it is used up all the same).
    #[error("ticket for another chat")]
    TicketForAnotherChat,
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
    /// The header or the claims nest deeper than the limit.
    #[error("token nested too deeply")]
    TooDeep,
    /// `sub` is empty.
    #[error("empty sub")]
    EmptySubject,
    /// `scope` is not a space-separated list of valid scopes.
    #[error("invalid scope claim")]
    Scope,
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        Self::StoreUnavailable(error)
    }
}

impl From<ScopeError> for AuthError {
    fn from(error: ScopeError) -> Self {
        Self::InvalidInput(InvalidInput::new(Field::Scopes, Problem::Scope(error)))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_names_field_and_problem() {
        let e = InvalidInput::new(Field::Name, Problem::Length { min: 1, max: 100 });
        assert_eq!(e.to_string(), "name must be 1 to 100 characters");
        let e = AuthError::from(ScopeError::TooMany);
        assert!(matches!(
            e,
            AuthError::InvalidInput(InvalidInput {
                field: Field::Scopes,
                problem: Problem::Scope(ScopeError::TooMany)
            })
        ));
    }
}
