//! Who is calling: [`Principal`] and the [`Credential`] behind it.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::{AuthError, KeyId, Scopes, StoredDigest, limits::RateLimit, store::OwnerId};

/// Which credential authenticated a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// An `nxr_` API key.
    ApiKey(KeyId),
    /// A JWT access token, with its `jti` if it had one.
    AccessToken {
        /// The token id.
        jti: Option<String>,
    },
    /// A short-lived token derived from an API key
    /// ([`Authenticator::derive_token`](crate::Authenticator::derive_token)): it acts as that
    /// key (the key-management policy sees [`Principal::key_id`]), within the scopes and
    /// lifetime it was given, and only while the key's secret it came from still
    /// authenticates.
    DerivedToken {
        /// The key it was derived from.
        key: KeyId,
        /// The token id.
        jti: Option<String>,
    },
    /// Built by the application itself (an admin command, a test), not from a request.
    Internal,
}

/// Who is calling: the owner, the credential used, what it may do and how long it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    owner: OwnerId,
    credential: Credential,
    scopes: Scopes,
    expires_at: Option<OffsetDateTime>,
    valid_until: Option<OffsetDateTime>,
    digest: Option<StoredDigest>,
    client: Option<IpAddr>,
    key_limits: KeyLimits,
    owner_rate: Option<RateLimit>,
}

/// The limits of the key behind a principal, as read when it authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct KeyLimits {
    pub(crate) rate: Option<RateLimit>,
    pub(crate) metered: bool,
}

impl Principal {
    /// Builds a principal (for admin code and tests; requests get theirs from
    /// [`Authenticator::authenticate`](crate::Authenticator::authenticate)).
    /// The principal has no lifetime of its own ([`Principal::expires_at`] is `None`).
    pub fn new(owner: OwnerId, credential: Credential, scopes: Scopes) -> Self {
        Self {
            owner,
            credential,
            scopes,
            expires_at: None,
            valid_until: None,
            digest: None,
            client: None,
            key_limits: KeyLimits::default(),
            owner_rate: None,
        }
    }

    /// Carries the owner's own rate limit, as read when the principal authenticated.
    #[must_use]
    pub(crate) fn with_owner_rate(mut self, rate: Option<RateLimit>) -> Self {
        self.owner_rate = rate;
        self
    }

    /// The owner's own rate limit as read when the principal authenticated (`None`: none of
    /// their own; the host's default then applies).
    pub fn owner_rate_limit(&self) -> Option<RateLimit> {
        self.owner_rate
    }

    /// Carries the limits of the key behind the principal.
    #[must_use]
    pub(crate) fn with_key_limits(mut self, limits: KeyLimits) -> Self {
        self.key_limits = limits;
        self
    }

    /// The limits of the key behind the principal (none for sessions and the application).
    pub(crate) fn key_limits(&self) -> KeyLimits {
        self.key_limits
    }

    /// The rate limit of the key behind this principal, as it was when it authenticated.
    pub fn key_rate_limit(&self) -> Option<RateLimit> {
        self.key_limits.rate
    }

    /// Sets the address of the client that presented the credential (the HTTP layer sets it
    /// on every authenticated principal, trusted proxies resolved), so that what the
    /// principal does is audited with it.
    #[must_use]
    pub fn with_client(mut self, client: IpAddr) -> Self {
        self.client = Some(client);
        self
    }

    /// The address of the client that presented the credential, when known (see
    /// [`Principal::with_client`]). `None` for principals built without a request.
    pub fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// Sets when the credential itself stops working (see [`Principal::credential_expires_at`]).
    #[must_use]
    pub fn with_credential_expiry(mut self, until: Option<OffsetDateTime>) -> Self {
        self.valid_until = until;
        self
    }

    /// Records which stored digest the presented key matched, so that
    /// [`Authenticator::revalidate`](crate::Authenticator::revalidate) can tell a rotation
    /// apart without holding the key.
    #[must_use]
    pub(crate) fn with_digest(mut self, digest: StoredDigest) -> Self {
        self.digest = Some(digest);
        self
    }

    /// When the credential presented stops working by itself: an API key's expiry (or the end
    /// of the grace period, for a rotated-out secret), a JWT's `exp`. `None` when it does not
    /// expire. A long-lived connection (a WebSocket) opened with it ends then, if not before
    /// (see [`Authenticator::watch`](crate::Authenticator::watch)).
    pub fn credential_expires_at(&self) -> Option<OffsetDateTime> {
        self.valid_until
    }

    /// The stored digest the presented key matched.
    pub(crate) fn matched_digest(&self) -> Option<StoredDigest> {
        self.digest
    }

    /// Sets the lifetime that bounds what this principal may reach and create (see
    /// [`Principal::expires_at`]).
    #[must_use]
    pub fn with_expiry(mut self, expires_at: Option<OffsetDateTime>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// When the credential behind this principal stops working, as far as it bounds what the
    /// principal may reach and create: an API key's expiry. `None` for keys without expiry and
    /// for user sessions (a session's keys are meant to outlive it). A derived token bounds
    /// what it creates by its key's expiry, as the key itself would.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.expires_at
    }

    /// The API key behind this principal: the key that authenticated it, or the key a derived
    /// token came from (which it acts as). `None` for sessions and the application.
    pub fn key_id(&self) -> Option<KeyId> {
        match self.credential {
            Credential::ApiKey(id) | Credential::DerivedToken { key: id, .. } => Some(id),
            _ => None,
        }
    }

    /// The owner (user id, or the application's opaque id).
    pub fn owner(&self) -> &OwnerId {
        &self.owner
    }

    /// The credential presented.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// `Ok` if the principal holds `scope`, else [`AuthError::InsufficientScope`].
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: scope.to_owned(),
            })
        }
    }
}
