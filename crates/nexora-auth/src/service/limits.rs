//! Rate limits and credits at request time ([`Authenticator::charge`]), key limits changes
//! ([`Authenticator::update_key`]) and owner limits.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Authenticator, Credential, KeyInfo, MAX_KEY_NAME_LEN, Principal};
use crate::{
    AuthError, Field, InvalidInput, KeyId, NewAuditEvent, Problem,
    audit::AuditAction,
    limits::{
        Exceeded, GcraDecision, InProcessLimits, LimitBackend, LimitRefusal, LimitSubject,
        NewCredits, RateCheck, RateLimit, RateStatus, Usage,
    },
    policy,
    store::{KeyUpdate, OwnerId},
};

/// The default number of credits an instance leases beyond a request's cost.
pub const DEFAULT_CREDIT_LEASE_BLOCK: u64 = 10;
/// A lease idle this long is given back by the next request of its key.
const LEASE_IDLE: time::Duration = time::Duration::SECOND;
/// Compare-and-swap attempts before a credit operation gives up (503).
const SWAP_ATTEMPTS: usize = 64;

/// Where rate limits are counted.
pub(super) enum Rates {
    InProcess(InProcessLimits),
    Shared(Arc<dyn LimitBackend>),
}

/// One instance's unspent credits of a key, taken from the store in the period `epoch`.
#[derive(Debug, Default)]
pub(super) struct Lease {
    left: u64,
    /// What the store held after the lease was taken.
    seen: u64,
    epoch: Option<OffsetDateTime>,
    used: Option<OffsetDateTime>,
}

/// A change to a key's name and limits ([`Authenticator::update_key`]): each `Some` field is
/// written; `Some(None)` removes a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyChanges {
    /// A new name (1 to [`MAX_KEY_NAME_LEN`] characters after trimming).
    #[serde(default)]
    pub name: Option<String>,
    /// A new rate limit, or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    pub rate_limit: Option<Option<RateLimit>>,
    /// New credits (counted from now), or `null` to remove them.
    #[serde(default, deserialize_with = "present")]
    pub credits: Option<Option<NewCredits>>,
}

impl KeyChanges {
    /// No change.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the key.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets (`Some`) or removes (`None`) the rate limit.
    #[must_use]
    pub fn rate_limit(mut self, rate: Option<RateLimit>) -> Self {
        self.rate_limit = Some(rate);
        self
    }

    /// Sets (`Some`) or removes (`None`) the credits.
    #[must_use]
    pub fn credits(mut self, credits: Option<NewCredits>) -> Self {
        self.credits = Some(credits);
        self
    }
}

/// A field present in JSON, `null` included: `Some(None)` for `null`, `Some(Some(v))` for a value
/// (an absent field stays `None` through `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// A validated key name: trimmed, 1 to [`MAX_KEY_NAME_LEN`] characters, no control characters.
pub(super) fn key_name(name: &str) -> Result<String, InvalidInput> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_KEY_NAME_LEN {
        return Err(InvalidInput::new(
            Field::Name,
            Problem::Length {
                min: 1,
                max: MAX_KEY_NAME_LEN,
            },
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidInput::new(Field::Name, Problem::ControlCharacter));
    }
    Ok(name.to_owned())
}

impl Authenticator {
    /// Applies the principal's limits to one request of `cost` (see [`crate::limits`]): the
    /// key's and the owner's rate limits together, then the key's credits. Call it after
    /// authentication and before the handler; the HTTP layer does, with a cost per route (1 by
    /// default). A cost of 0 charges nothing and reports where the limits stand.
    ///
    /// Refusals are [`AuthError::LimitExceeded`]: a rate limit refuses with the exact wait; a
    /// request refused by a rate limit spends no credit. A backend or store failure is an
    /// error (503), never a pass.
    pub async fn charge(&self, principal: &Principal, cost: u32) -> Result<Usage, AuthError> {
        if !self.has_limits(principal) {
            return Ok(Usage::default());
        }
        self.charge_limited(principal, cost).await
    }

    /// Whether [`Authenticator::charge`] has anything to apply to `principal`: a rate limit or
    /// credits of its key, or a rate limit of its owner (their own, or the host's default). A
    /// transport can skip the call when it has not (the answer is an empty [`Usage`]).
    pub fn has_limits(&self, principal: &Principal) -> bool {
        let key = principal.key_limits();
        key.rate.is_some()
            || key.metered
            || principal.owner_rate_limit().is_some()
            || self.inner.owner_rate_default.is_some()
            // A principal the application built has its owner's limit read at charge time.
            || (matches!(principal.credential(), Credential::Internal) && self.inner.users.is_some())
    }

    async fn charge_limited(&self, principal: &Principal, cost: u32) -> Result<Usage, AuthError> {
        let key_limits = principal.key_limits();
        // An authenticated principal carries its owner's limit as read with its user; one the
        // application built (`Credential::Internal`) has it read now.
        let owner_rate = match principal.credential() {
            Credential::Internal => self.owner_rate(principal.owner()).await?,
            _ => principal
                .owner_rate_limit()
                .or(self.inner.owner_rate_default),
        };
        let mut usage = Usage::default();
        let key_check = key_limits
            .rate
            .zip(principal.key_id())
            .map(|(rate, id)| RateCheck {
                subject: LimitSubject::Key(id),
                rate,
            });
        let owner_check = owner_rate.map(|rate| RateCheck {
            subject: LimitSubject::Owner(principal.owner().clone()),
            rate,
        });
        if key_check.is_some() || owner_check.is_some() {
            let now = self.inner.clock.now();
            let (allowed, retry_after_secs) = match &self.inner.rates {
                Rates::InProcess(limits) => {
                    // On the stack: the hot path allocates nothing.
                    let mut decisions = [GcraDecision::default(); 2];
                    let (allowed, n) = match (&key_check, &owner_check) {
                        (Some(k), Some(o)) => {
                            (limits.decide_into(&[k, o], cost, now, &mut decisions), 2)
                        }
                        (Some(one), None) | (None, Some(one)) => (
                            limits.decide_into(&[one], cost, now, &mut decisions[..1]),
                            1,
                        ),
                        (None, None) => (true, 0),
                    };
                    let mut d = decisions[..n].iter();
                    if let Some(check) = &key_check {
                        usage.key = d.next().map(|d| RateStatus::of(check, d));
                    }
                    if let Some(check) = &owner_check {
                        usage.owner = d.next().map(|d| RateStatus::of(check, d));
                    }
                    let retry = decisions[..n].iter().map(|d| d.retry_after_secs).max();
                    (allowed, retry.unwrap_or(0))
                }
                Rates::Shared(backend) => {
                    let checks: Vec<RateCheck> = key_check
                        .iter()
                        .chain(owner_check.iter())
                        .cloned()
                        .collect();
                    let outcome = backend.check(&checks, cost, now).await?;
                    let mut statuses = outcome.statuses.into_iter();
                    if key_check.is_some() {
                        usage.key = statuses.next();
                    }
                    if owner_check.is_some() {
                        usage.owner = statuses.next();
                    }
                    (outcome.allowed, outcome.retry_after_secs)
                }
            };
            if !allowed {
                return Err(AuthError::LimitExceeded(Box::new(LimitRefusal {
                    exceeded: Exceeded::Rate,
                    retry_after_secs: Some(retry_after_secs),
                    usage,
                })));
            }
        }
        if let (true, Some(id)) = (key_limits.metered, principal.key_id()) {
            match Box::pin(self.spend_credits(id, u64::from(cost))).await? {
                Spent::Yes { remaining } => usage.credits_remaining = Some(remaining),
                Spent::No { retry_after_secs } => {
                    usage.credits_remaining = Some(0);
                    return Err(AuthError::LimitExceeded(Box::new(LimitRefusal {
                        exceeded: Exceeded::Credits,
                        retry_after_secs,
                        usage,
                    })));
                }
            }
        }
        Ok(usage)
    }

    /// The owner's rate limit: their own, else the default.
    async fn owner_rate(&self, owner: &OwnerId) -> Result<Option<RateLimit>, AuthError> {
        let own = self.user_status(owner).await?.and_then(|s| s.rate_limit);
        Ok(own.or(self.inner.owner_rate_default))
    }

    /// Spends `cost` of the key's credits: from this instance's lease, or by taking a new one
    /// from the store (giving the unspent rest of the old one back in the same swap).
    async fn spend_credits(&self, id: KeyId, cost: u64) -> Result<Spent, AuthError> {
        let slot = Arc::clone(self.inner.leases.entry(id).or_default().value());
        let mut lease = slot.lock().await;
        let now = self.inner.clock.now();
        let idle = lease.used.is_some_and(|used| now - used >= LEASE_IDLE);
        if cost == 0 || (lease.left >= cost && !idle) {
            lease.left -= cost;
            lease.used = Some(now);
            return Ok(Spent::Yes {
                remaining: lease.seen + lease.left,
            });
        }
        for _ in 0..SWAP_ATTEMPTS {
            let Some(current) = self.inner.keys.find(id).await?.and_then(|r| r.credits) else {
                // No longer metered (or gone): nothing to spend.
                *lease = Lease::default();
                return Ok(Spent::Yes { remaining: 0 });
            };
            let base = match lease.epoch {
                Some(epoch) if lease.left > 0 => current.give_back(lease.left, epoch),
                _ => current,
            };
            let (new, granted) = base.take(cost, self.inner.credit_lease_block, now);
            if new != current && !self.inner.keys.swap_credits(id, &current, &new).await? {
                continue;
            }
            return Ok(match granted {
                Some(granted) => {
                    *lease = Lease {
                        left: granted - cost,
                        seen: new.remaining,
                        epoch: Some(new.refilled_at),
                        used: Some(now),
                    };
                    Spent::Yes {
                        remaining: new.remaining + lease.left,
                    }
                }
                None => {
                    *lease = Lease::default();
                    Spent::No {
                        retry_after_secs: new.next_refill().map(|at| {
                            u64::try_from((at - now).whole_seconds())
                                .unwrap_or(0)
                                .max(1)
                        }),
                    }
                }
            });
        }
        Err(AuthError::StoreUnavailable(crate::StoreError::unavailable(
            "credits contended: compare-and-swap kept failing",
        )))
    }

    /// Gives every unspent credit lease of this instance back to the store (a server calls it
    /// on shutdown, so that only a crash loses leased credits). Returns how many credits went
    /// back.
    pub async fn return_credit_leases(&self) -> Result<u64, AuthError> {
        let ids: Vec<KeyId> = self.inner.leases.iter().map(|e| *e.key()).collect();
        let mut returned = 0;
        for id in ids {
            let Some(slot) = self.inner.leases.get(&id).map(|e| Arc::clone(e.value())) else {
                continue;
            };
            let mut lease = slot.lock().await;
            let (left, Some(epoch)) = (lease.left, lease.epoch) else {
                continue;
            };
            if left == 0 {
                continue;
            }
            for _ in 0..SWAP_ATTEMPTS {
                let Some(current) = self.inner.keys.find(id).await?.and_then(|r| r.credits) else {
                    break;
                };
                let new = current.give_back(left, epoch);
                if new == current || self.inner.keys.swap_credits(id, &current, &new).await? {
                    returned += new.remaining - current.remaining;
                    break;
                }
            }
            *lease = Lease::default();
        }
        Ok(returned)
    }

    /// Changes a key's name, rate limit and credits, within the key-management policy: the key
    /// must be within the principal's reach ([`policy::within_reach`], else
    /// [`AuthError::KeyNotFound`]), and a principal bound by limits of its own may only tighten
    /// them ([`policy::may_change_limits`], else [`AuthError::LimitNotHeld`]). Credits set here
    /// start now (the next refill is a full period away). Audited as `key_updated`.
    pub async fn update_key(
        &self,
        principal: &Principal,
        id: KeyId,
        changes: KeyChanges,
    ) -> Result<KeyInfo, AuthError> {
        let name = changes.name.as_deref().map(key_name).transpose()?;
        let record = self.reachable_key(principal, id, false).await?;
        let now = self.inner.clock.now();
        let current_remaining = record.credits.map(|c| c.at(now).remaining);
        if !policy::may_change_limits(
            principal,
            &record,
            changes.rate_limit,
            changes.credits,
            current_remaining,
        ) {
            return Err(AuthError::LimitNotHeld);
        }
        let update = KeyUpdate {
            name,
            rate_limit: changes.rate_limit,
            credits: changes.credits.map(|c| c.map(|c| c.at(now))),
        };
        let updated = self
            .inner
            .keys
            .update_key(principal.owner(), id, &update)
            .await?
            .ok_or(AuthError::KeyNotFound)?;
        self.inner.cache.forget_key(id);
        let mut event = NewAuditEvent::by(AuditAction::KeyLimitsChanged, principal).target_key(id);
        if let Some(name) = &update.name {
            event = event.detail("name", name.as_str());
        }
        if let Some(rate) = update.rate_limit {
            event = event.detail(
                "rate_limit",
                rate.map_or_else(
                    || "none".to_owned(),
                    |r| format!("{}/{}s", r.limit, r.period_secs),
                ),
            );
        }
        if let Some(credits) = update.credits {
            event = event.detail(
                "credits",
                credits.map_or_else(|| "none".to_owned(), |c| c.remaining.to_string()),
            );
        }
        self.record_event(event).await;
        Ok(KeyInfo::from(&updated))
    }

    /// Sets (`Some`) or clears (`None`) a user's own rate limit, shared by all of their keys
    /// and tokens (for admin tools). `Ok(false)`: no such user.
    pub async fn set_owner_rate_limit(
        &self,
        owner: &OwnerId,
        limit: Option<RateLimit>,
    ) -> Result<bool, AuthError> {
        let users = self.users()?;
        let changed = users.set_owner_rate_limit(owner, limit).await?;
        self.inner.cache.forget_user(owner);
        Ok(changed)
    }

    /// A user's own rate limit (`None`: none set, or no such user; the server default then
    /// applies).
    pub async fn owner_rate_limit(&self, owner: &OwnerId) -> Result<Option<RateLimit>, AuthError> {
        Ok(self
            .users()?
            .find_user(owner)
            .await?
            .and_then(|user| user.rate_limit))
    }

    /// Takes `credits.remaining` from the creating key's credits (a metered key pays for the
    /// credits of the keys it creates); refused as exhausted credits when it has too few.
    pub(super) async fn pay_for_credits(
        &self,
        creator: KeyId,
        credits: &NewCredits,
    ) -> Result<(), AuthError> {
        match self.spend_credits(creator, credits.remaining).await? {
            Spent::Yes { .. } => Ok(()),
            Spent::No { retry_after_secs } => {
                Err(AuthError::LimitExceeded(Box::new(LimitRefusal {
                    exceeded: Exceeded::Credits,
                    retry_after_secs,
                    usage: Usage::default(),
                })))
            }
        }
    }
}

/// The outcome of spending credits.
enum Spent {
    /// Spent; `remaining` as this instance sees it (its lease included).
    Yes { remaining: u64 },
    /// Too few left; seconds until the next refill, if one is due.
    No { retry_after_secs: Option<u64> },
}
