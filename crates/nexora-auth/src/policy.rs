//! The key-management policy: the one place that decides which keys a principal may act on and
//! what a key it brings into being may hold.
//!
//! Every operation on keys in [`crate::Authenticator`] (list, create, rotate, revoke, and any
//! added later) asks these two functions, whichever framework or store is in use:
//!
//! * [`within_reach`]: a principal acts only on its owner's live keys whose scopes are within
//!   its own and whose lifetime does not exceed its own. A key out of reach is treated exactly
//!   like an unknown key (not listed; [`AuthError::KeyNotFound`] on rotate and revoke), so nothing reveals it exists.
//!   A key principal can therefore never take over a broader or longer-lived sibling by rotating
//!   it, nor lock its holder out by revoking it.
//! * [`grant`]: a key that comes into being never has scopes beyond its creator's, and a key
//!   created by a key never outlives it: its expiry is capped at the creator's (a request for no
//!   expiry, or a later one, gets the creator's). A user session's keys are not capped by the
//!   session's own short lifetime: creating long-lived keys is what sessions are for.
//!
//! Lifetime is judged by `expires_at` only: a key with no expiry outlives every key that has one.
//!
//! Scopes: with a user store, the authenticator caps every principal at its user's current
//! scopes, so narrowing a user narrows what each of their principals can reach. A *key*
//! principal judges other keys by the scopes they store — what they could ever do — so that a
//! key can never hold a sibling's secret that would regain a scope it never had if the user's
//! scopes were widened again. A principal *without* a key (a login session, the application)
//! acts as the user, and judges keys by what they can do now (their scopes capped at the
//! user's current ones, `owner_scopes`): after a user is narrowed, their session still sees and
//! can revoke every key of theirs, including those holding a scope the user lost. Rotation hands
//! out a secret, so it always takes the strict comparison ([`may_rotate`]): no principal obtains
//! a key storing a scope it does not hold.

use time::OffsetDateTime;

use crate::{
    AuthError, KeyId, Principal, Scopes,
    limits::{NewCredits, RateLimit, Refill},
    store::KeyRecord,
};

/// Whether `principal` may see and act on `key`: the same owner, not revoked, scopes within
/// the principal's, and a lifetime within the principal's. `owner_scopes` are the owner's
/// current scopes when a user store knows them (`None` otherwise): a principal without a key
/// judges `key` by its scopes capped at them (see the module docs).
pub fn within_reach(principal: &Principal, key: &KeyRecord, owner_scopes: Option<&Scopes>) -> bool {
    let scopes_within = match owner_scopes {
        Some(current) if principal.key_id().is_none() => key
            .scopes
            .iter()
            .all(|s| !current.contains(s) || principal.scopes().contains(s)),
        _ => key.scopes.is_subset_of(principal.scopes()),
    };
    key.owner == *principal.owner()
        && key.revoked_at.is_none()
        && scopes_within
        && lifetime_within(key.expires_at, principal.expires_at())
}

/// Whether `principal` may rotate `key`, receiving its new secret: [`within_reach`] with the
/// stored scopes compared, for every principal.
pub fn may_rotate(principal: &Principal, key: &KeyRecord) -> bool {
    within_reach(principal, key, None)
}

/// Whether a credential expiring at `expiry` ends no later than `cap` (`None`: never).
fn lifetime_within(expiry: Option<OffsetDateTime>, cap: Option<OffsetDateTime>) -> bool {
    match (expiry, cap) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(expiry), Some(cap)) => expiry <= cap,
    }
}

/// What a new key may hold, as decided by [`grant`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The key's scopes: those requested, or all of the creator's.
    pub scopes: Scopes,
    /// The key's expiry: the requested one, capped at the creator's.
    pub expires_at: Option<OffsetDateTime>,
    /// The creating key, when a key creates a key.
    pub created_by: Option<KeyId>,
}

/// Decides what a key created by `creator` with the requested scopes and expiry holds.
/// Requested scopes beyond the creator's are [`AuthError::ScopeNotHeld`]; `None` means
/// all of the creator's. The expiry is capped at the creator's own, if it has one.
pub fn grant(
    creator: &Principal,
    scopes: Option<Scopes>,
    expires_at: Option<OffsetDateTime>,
) -> Result<Grant, AuthError> {
    let scopes = match scopes {
        Some(scopes) if !scopes.is_subset_of(creator.scopes()) => {
            return Err(AuthError::ScopeNotHeld);
        }
        Some(scopes) => scopes,
        None => creator.scopes().clone(),
    };
    let expires_at = match (expires_at, creator.expires_at()) {
        (requested, None) => requested,
        (None, Some(cap)) => Some(cap),
        (Some(requested), Some(cap)) => Some(requested.min(cap)),
    };
    Ok(Grant {
        scopes,
        expires_at,
        created_by: creator.key_id(),
    })
}

/// Whether the rate limit `rate` is no looser than `cap` (`None`: unlimited): no larger burst
/// and no faster rate.
pub fn rate_within(rate: Option<RateLimit>, cap: Option<RateLimit>) -> bool {
    match (rate, cap) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(r), Some(c)) => {
            r.limit <= c.limit
                && u64::from(r.limit) * u64::from(c.period_secs)
                    <= u64::from(c.limit) * u64::from(r.period_secs)
        }
    }
}

/// Whether the refill `refill` is no more generous than `cap` (`None`: no refill): no larger
/// amount and no faster rate.
fn refill_within(refill: Option<Refill>, cap: Option<Refill>) -> bool {
    match (refill, cap) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(r), Some(c)) => {
            r.amount <= c.amount
                && u128::from(r.amount) * u128::from(c.every_secs)
                    <= u128::from(c.amount) * u128::from(r.every_secs)
        }
    }
}

/// Whether the principal is bound by limits of its own: a key (or a token derived from one)
/// with a rate limit or credits.
fn is_limited(principal: &Principal) -> bool {
    let limits = principal.key_limits();
    limits.rate.is_some() || limits.metered
}

/// Decides the limits of a key created by `creator` (see the module docs of
/// [`crate::limits`]): a rate-limited creator grants at most its own rate (its own when none is
/// requested); a metered creator grants only credits without refill, which it pays for from
/// its own (the authenticator takes them). Anything looser is [`AuthError::LimitNotHeld`].
pub fn grant_limits(
    creator: &Principal,
    rate: Option<RateLimit>,
    credits: Option<NewCredits>,
) -> Result<(Option<RateLimit>, Option<NewCredits>), AuthError> {
    let cap = creator.key_rate_limit();
    let rate = match rate {
        None => cap,
        Some(r) if rate_within(Some(r), cap) => Some(r),
        Some(_) => return Err(AuthError::LimitNotHeld),
    };
    if creator.key_limits().metered && credits.is_none_or(|c| c.refill.is_some()) {
        return Err(AuthError::LimitNotHeld);
    }
    Ok((rate, credits))
}

/// Whether `principal` may set `key`'s rate limit to `rate` and its credits to `credits`
/// (`None` in either: unchanged; `Some(None)`: removed), once [`within_reach`] allowed it to
/// act on the key at all. A principal bound by limits of its own may only tighten — never
/// loosen its own limits, nor those of a key it can reach (which could then serve it instead);
/// others may set anything. `current_remaining` is the key's credit count now.
pub fn may_change_limits(
    principal: &Principal,
    key: &KeyRecord,
    rate: Option<Option<RateLimit>>,
    credits: Option<Option<NewCredits>>,
    current_remaining: Option<u64>,
) -> bool {
    if !is_limited(principal) {
        return true;
    }
    let rate_ok = rate.is_none_or(|new| rate_within(new, key.rate_limit));
    let credits_ok = match (credits, key.credits) {
        (None, _) | (Some(Some(_)), None) => true,
        (Some(None), Some(_)) => false,
        (Some(None), None) => true,
        (Some(Some(new)), Some(old)) => {
            new.remaining <= current_remaining.unwrap_or(old.remaining)
                && refill_within(new.refill, old.refill)
        }
    };
    rate_ok && credits_ok
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::{Credential, OwnerId};

    fn scopes(s: &[&str]) -> Scopes {
        Scopes::new(s.iter().copied()).unwrap()
    }

    #[test]
    fn lifetimes() {
        let t = OffsetDateTime::UNIX_EPOCH + Duration::days(10_000);
        assert!(lifetime_within(None, None));
        assert!(lifetime_within(Some(t), None));
        assert!(!lifetime_within(None, Some(t)));
        assert!(lifetime_within(Some(t), Some(t)));
        assert!(!lifetime_within(Some(t + Duration::SECOND), Some(t)));
    }

    #[test]
    fn a_key_grants_at_most_its_scopes_and_lifetime() {
        let t = OffsetDateTime::UNIX_EPOCH + Duration::days(10_000);
        let id = KeyId::new_random();
        let key = Principal::new(OwnerId::new("o"), Credential::ApiKey(id), scopes(&["a"]))
            .with_expiry(Some(t));
        let g = grant(&key, None, None).unwrap();
        assert_eq!(
            (g.scopes, g.expires_at, g.created_by),
            (scopes(&["a"]), Some(t), Some(id))
        );
        let later = grant(&key, Some(scopes(&["a"])), Some(t + Duration::DAY)).unwrap();
        assert_eq!(later.expires_at, Some(t));
        let sooner = grant(&key, None, Some(t - Duration::DAY)).unwrap();
        assert_eq!(sooner.expires_at, Some(t - Duration::DAY));
        assert!(matches!(
            grant(&key, Some(scopes(&["a", "b"])), None),
            Err(AuthError::ScopeNotHeld)
        ));
        let session = Principal::new(OwnerId::new("o"), Credential::Internal, scopes(&["a"]));
        let g = grant(&session, None, None).unwrap();
        assert_eq!((g.expires_at, g.created_by), (None, None));
    }
}
