//! Long-lived connections: [`Authenticator::revalidate`] and [`Authenticator::watch`].

use std::time::Duration;

use tokio::{
    sync::broadcast::error::RecvError,
    time::{Instant, sleep_until},
};

use super::{Authenticator, Credential, Principal};
use crate::{AuthError, InvalidReason, KeyId, cache::Change};

/// How often a watch rechecks when the cache cannot vouch for anything (off, or its feed
/// out of sync): at most this long after a change, the watch sees it in the store.
const UNTRUSTED_RECHECK: Duration = Duration::from_secs(1);

impl Authenticator {
    /// Whether the credential behind `principal` (from [`Authenticator::authenticate`]) still
    /// authenticates, judged now and through the verification cache, so within its bound (see
    /// [`crate::cache`]): the key is not revoked or expired, its secret was not rotated away
    /// (a rotated-out secret in its grace period still counts until the grace ends), its user
    /// still exists and is enabled; a JWT has not expired and its user is live; a derived token
    /// has not expired and its key still holds the secret it came from (as a key principal
    /// must). Returns the principal as it would be authenticated now (scopes may have
    /// narrowed).
    ///
    /// A principal built by hand ([`Credential::Internal`]) is returned unchanged.
    pub async fn revalidate(&self, principal: &Principal) -> Result<Principal, AuthError> {
        let now = self.inner.clock.now();
        if principal
            .credential_expires_at()
            .is_some_and(|at| at <= now)
        {
            return Err(AuthError::InvalidToken(InvalidReason::Expired));
        }
        match principal.credential() {
            Credential::ApiKey(id) => self.key_now(*id, principal, now).await,
            Credential::DerivedToken { key, jti } => {
                let fresh = self.key_now(*key, principal, now).await?;
                Ok(super::derived::as_derived(
                    *key,
                    &fresh,
                    jti.clone(),
                    principal.scopes().intersection(fresh.scopes()),
                    super::derived::earliest(
                        principal.credential_expires_at(),
                        fresh.credential_expires_at(),
                    ),
                ))
            }
            Credential::AccessToken { .. } => {
                let scopes = match self.live_user_scopes(principal.owner()).await? {
                    Some(current) => principal.scopes().intersection(&current.scopes),
                    None => principal.scopes().clone(),
                };
                Ok(Principal::new(
                    principal.owner().clone(),
                    principal.credential().clone(),
                    scopes,
                )
                .with_credential_expiry(principal.credential_expires_at()))
            }
            Credential::Internal => Ok(principal.clone()),
        }
    }

    /// The key principal of key `id` as it authenticates now, for the secret `principal`
    /// matched (a key principal, or a derived token's): the key is live, that secret is its
    /// current one or the previous one within its grace period, and its user is live.
    async fn key_now(
        &self,
        id: KeyId,
        principal: &Principal,
        now: time::OffsetDateTime,
    ) -> Result<Principal, AuthError> {
        let record = self
            .key_credentials(id)
            .await?
            .ok_or(AuthError::InvalidToken(InvalidReason::UnknownKey))?;
        let matched = principal.matched_digest().unwrap_or(record.digest);
        let holds = record.digest == matched
            || record
                .previous
                .is_some_and(|p| p.digest == matched && p.valid_until > now);
        if !holds {
            return Err(AuthError::InvalidToken(InvalidReason::SecretMismatch));
        }
        super::key_state(&record, now)?;
        let user = self.live_user_scopes(&record.owner).await?;
        Ok(super::key_principal(&record, matched, user))
    }

    /// Resolves when the credential behind `principal` stops authenticating, with the reason
    /// ([`AuthError::InvalidToken`], or [`AuthError::StoreUnavailable`] when the store cannot
    /// confirm it: fail closed). For connections that outlive a request: a WebSocket selects
    /// on this and closes when it resolves.
    ///
    /// It rechecks ([`Authenticator::revalidate`]) at once when a change to the key or its
    /// user is reported, when the credential expires, and whenever the cache's trust in its
    /// feed runs out — so a socket ends within the same bound as requests: at once on this
    /// instance, within the cache's ceiling (5 seconds by default) for a change made on
    /// another, and within 1 second when the cache is off or its feed is down.
    pub async fn watch(&self, principal: &Principal) -> AuthError {
        // Subscribe before the first check, so no change slips between the two.
        let mut changes = self.inner.cache.subscribe();
        loop {
            if let Err(e) = self.revalidate(principal).await {
                return e;
            }
            let mut wake = match self.inner.cache.trusted_until() {
                // At least the untrusted pace: a zero ceiling must not spin.
                Some(until) => {
                    until.min(Instant::now() + self.inner.cache.ceiling().max(UNTRUSTED_RECHECK))
                }
                None => Instant::now() + UNTRUSTED_RECHECK,
            };
            if let Some(expiry) = principal.credential_expires_at() {
                let left = expiry - self.inner.clock.now();
                let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
                wake = wake.min(Instant::now() + left);
            }
            // Wake a hair after the deadline, so the recheck sees it passed.
            let wake = wake + Duration::from_millis(1);
            loop {
                let change = match changes.as_mut() {
                    Some(changes) => tokio::select! {
                        () = sleep_until(wake) => break,
                        change = changes.recv() => change,
                    },
                    None => {
                        sleep_until(wake).await;
                        break;
                    }
                };
                let relevant = match change {
                    Ok(Change::Key(id)) => principal.key_id() == Some(id),
                    Ok(Change::User(owner)) => &owner == principal.owner(),
                    Ok(Change::Everything) | Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => {
                        changes = None;
                        false
                    }
                };
                if relevant {
                    break;
                }
            }
        }
    }
}
