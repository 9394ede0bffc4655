//! Short-lived tokens derived from an API key: [`Authenticator::derive_token`].

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::{Authenticator, Credential, Principal, key_principal, key_state};
use crate::{
    AccessToken, AuthError, Field, InvalidInput, InvalidReason, KeyCredentials, KeyId, Problem,
    Scopes, Unavailable,
    audit::{AuditAction, NewAuditEvent},
    jwt::{DerivedFrom, VerifiedToken},
};

/// The longest lifetime of a derived token unless
/// [`AuthenticatorBuilder::derived_token_max_ttl`](crate::AuthenticatorBuilder::derived_token_max_ttl)
/// says otherwise: 15 minutes.
pub const DEFAULT_DERIVED_TOKEN_MAX_TTL: Duration = Duration::from_secs(15 * 60);

/// A request for a derived token ([`Authenticator::derive_token`]); the body of
/// `POST /api/auth/token`, every field optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[non_exhaustive]
pub struct TokenRequest {
    /// The token's scopes; `None` means all of the key's (as capped by its user's). Must be a
    /// subset of them.
    #[serde(default)]
    pub scopes: Option<Scopes>,
    /// The token's lifetime in seconds, at least 1; `None` means the server's maximum. Capped
    /// at the maximum and at what is left of the key's own life.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

impl TokenRequest {
    /// A request for all of the key's scopes for the server's maximum lifetime.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the requested scopes.
    #[must_use]
    pub fn with_scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// Sets the requested lifetime, in seconds.
    #[must_use]
    pub fn with_ttl_secs(mut self, ttl_secs: u64) -> Self {
        self.ttl_secs = Some(ttl_secs);
        self
    }
}

/// A token just derived from a key. Serialises as `{"access_token", "token_type": "bearer",
/// "expires_in"}`, the shape of a login's answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DerivedToken {
    /// The token. Secret: give it to the key's holder only.
    pub token: AccessToken,
    /// The key it was derived from (its `nxr_key` claim).
    pub key_id: KeyId,
    /// The scopes it carries.
    pub scopes: Scopes,
}

impl Serialize for DerivedToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        super::login::serialize_bearer(&self.token, serializer)
    }
}

impl Authenticator {
    /// Derives a short-lived JWT from the API key that authenticated `principal`: for a script
    /// or a browser that should not hold the key itself.
    ///
    /// * Only a key derives: a principal of any other credential (a login token, a derived
    ///   token, the application) is [`AuthError::KeyRequired`].
    /// * Scopes: those requested, or all of the principal's (the key's, capped at its user's);
    ///   more is [`AuthError::ScopeNotHeld`].
    /// * Lifetime: `ttl_secs` (at least 1, else [`AuthError::InvalidInput`]), or the maximum
    ///   when absent; capped at the maximum
    ///   ([`AuthenticatorBuilder::derived_token_max_ttl`](crate::AuthenticatorBuilder::derived_token_max_ttl),
    ///   15 minutes by default) and at what is left of the key's life (its expiry, or the end
    ///   of the grace period of a rotated-out secret).
    ///
    /// The token names its key and the generation of the key's secret (claims `nxr_key`,
    /// `nxr_gen`), and on every request it authenticates only while that key is live and that
    /// secret still matches it — checked through the verification cache, so within the cache's
    /// bound and without a store round trip when the key is cached. It dies when the key is
    /// revoked or expires, when the key is rotated without grace (with a grace period, when
    /// the grace ends, as the old secret does), and while its user is disabled. Keys it
    /// creates count as created by its key ([`crate::policy::grant`]: lineage, and the key's
    /// expiry as their cap). Each derivation is audited (`token_derived`, with the token's id,
    /// scopes and lifetime, never the token).
    pub async fn derive_token(
        &self,
        principal: &Principal,
        request: TokenRequest,
    ) -> Result<DerivedToken, AuthError> {
        let (Credential::ApiKey(key_id), Some(matched)) =
            (principal.credential(), principal.matched_digest())
        else {
            return Err(AuthError::KeyRequired);
        };
        let tokens = self
            .inner
            .tokens
            .as_ref()
            .ok_or(Unavailable::NoTokenAuthority)?;
        if request.ttl_secs == Some(0) {
            return Err(InvalidInput::new(Field::TtlSecs, Problem::BelowMinimum { min: 1 }).into());
        }
        let scopes = match request.scopes {
            Some(scopes) if !scopes.is_subset_of(principal.scopes()) => {
                return Err(AuthError::ScopeNotHeld);
            }
            Some(scopes) => scopes,
            None => principal.scopes().clone(),
        };
        let now = self.inner.clock.now();
        let max = self.inner.derived_max_ttl.as_secs();
        let ttl = request.ttl_secs.unwrap_or(max).min(max).min(
            principal
                .credential_expires_at()
                .map_or(u64::MAX, |until| whole_seconds_until(now, until)),
        );
        if ttl == 0 {
            return Err(AuthError::InvalidToken(InvalidReason::Expired));
        }
        let from = DerivedFrom::new(*key_id, matched.generation());
        let token = tokens
            .issue_derived(principal.owner(), &scopes, ttl, from)
            .map_err(Unavailable::Signing)?;
        // The token's id, scopes and lifetime; never the token.
        self.record_event(
            NewAuditEvent::by(AuditAction::TokenDerived, principal)
                .target_key(*key_id)
                .detail("jti", token.jti.as_str())
                .detail("scopes", scopes.to_space_separated())
                .detail("ttl_secs", ttl),
        )
        .await;
        Ok(DerivedToken {
            token,
            key_id: *key_id,
            scopes,
        })
    }

    /// The principal of a verified derived token: its key must be live and still hold the
    /// secret generation the token names (the current digest, or the previous one in its
    /// grace period); `user` are its user's current scopes (`None`: no user store). The scopes
    /// are the token's, capped at the key's and the user's; the lifetime cap for keys it
    /// creates is the key's expiry.
    pub(super) fn derived_principal(
        &self,
        verified: VerifiedToken,
        from: DerivedFrom,
        record: Option<&KeyCredentials>,
        user: Option<super::LiveUser>,
    ) -> Result<Principal, AuthError> {
        let record = record
            .filter(|record| record.owner == verified.subject)
            .ok_or(AuthError::InvalidToken(InvalidReason::UnknownKey))?;
        let now = self.inner.clock.now();
        let matched = if record.digest.generation() == from.generation {
            record.digest
        } else {
            match record.previous {
                Some(p) if p.valid_until > now && p.digest.generation() == from.generation => {
                    p.digest
                }
                _ => return Err(AuthError::InvalidToken(InvalidReason::SecretMismatch)),
            }
        };
        key_state(record, now)?;
        let key = key_principal(record, matched, user);
        let claimed = verified.scopes.unwrap_or_else(Scopes::empty);
        let token_expiry = i64::try_from(verified.expires_at)
            .ok()
            .and_then(|exp| OffsetDateTime::from_unix_timestamp(exp).ok());
        Ok(as_derived(
            record.id,
            &key,
            verified.jti,
            claimed.intersection(key.scopes()),
            earliest(token_expiry, key.credential_expires_at()),
        ))
    }
}

/// A derived token of the key `key_id`, acting as its key principal `key`, with `scopes`,
/// ending at `until`.
pub(super) fn as_derived(
    key_id: KeyId,
    key: &Principal,
    jti: Option<String>,
    scopes: Scopes,
    until: Option<OffsetDateTime>,
) -> Principal {
    let mut principal = Principal::new(
        key.owner().clone(),
        Credential::DerivedToken { key: key_id, jti },
        scopes,
    )
    .with_expiry(key.expires_at())
    .with_credential_expiry(until)
    .with_key_limits(key.key_limits())
    .with_owner_rate(key.owner_rate_limit());
    if let Some(digest) = key.matched_digest() {
        principal = principal.with_digest(digest);
    }
    principal
}

/// The earlier of two optional instants (`None`: never).
pub(super) fn earliest(
    a: Option<OffsetDateTime>,
    b: Option<OffsetDateTime>,
) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whole seconds from `now` until `until` (0 once it has passed).
fn whole_seconds_until(now: OffsetDateTime, until: OffsetDateTime) -> u64 {
    u64::try_from((until - now).whole_seconds()).unwrap_or(0)
}
