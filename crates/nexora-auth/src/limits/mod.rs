//! Rate limits and usage credits, per key and per owner.
//!
//! # What a limit is
//!
//! * A **rate limit** ([`RateLimit`]): at most `limit` requests per `period_secs`, enforced
//!   with the generic cell rate algorithm ([`gcra`], exact integer arithmetic): a burst of
//!   exactly `limit` passes, a steady stream at the rate is never refused, and the window
//!   never "sticks". A key can have one; an owner (a user) can have one, shared by all of
//!   their keys and tokens, set per user or as a server default
//!   ([`AuthenticatorBuilder::owner_rate_limit`](crate::AuthenticatorBuilder::owner_rate_limit)).
//!   Both are checked together, all or nothing: a request refused by one charges neither.
//! * **Credits** ([`Credits`]): a key's budget of requests in total, optionally refilled
//!   (`remaining` is set back to `refill.amount` every `refill.every_secs`, counted from the
//!   last refill — a reset, not a bucket, as documented for the API). Credits never go
//!   negative and a key at zero is refused, never deleted.
//!
//! [`Authenticator::charge`](crate::Authenticator::charge) applies them after authentication
//! and before the handler: first the rate limits (a refusal spends no credit), then the
//! credits. A request refused for credits still counts against the rate limits.
//!
//! # Where the state lives, and its bounds
//!
//! * **Rate limits** run in a [`LimitBackend`]. The default, [`InProcessLimits`], keeps the
//!   state in the process: one instance enforces exactly; `N` instances behind one balancer
//!   allow up to `N ×` the limit. `nexora-auth-redis` shares the state through Redis with an
//!   atomic script per request: any number of instances allow exactly what one would.
//! * **Credits** live in the [`KeyStore`](crate::KeyStore), the truth that survives restarts.
//!   So that the hot path does not write the database on every request, each instance
//!   *leases* credits: it takes the request's cost plus up to
//!   [`AuthenticatorBuilder::credit_lease_block`](crate::AuthenticatorBuilder::credit_lease_block)
//!   more (never more than half of what would be left) in one atomic compare-and-swap, spends
//!   them locally, and gives the unspent part back in the same swap as its next take (a lease
//!   idle for a second is renewed that way at the key's next request), and on
//!   [`Authenticator::return_credit_leases`](crate::Authenticator::return_credit_leases)
//!   (a server calls it on shutdown). Credits set anew (`PATCH`) start a new period: leases of
//!   the old value are dropped, not given back. Invariants:
//!   - never more spent than granted, across any number of instances (every credit spent was
//!     first subtracted in the store by a compare-and-swap);
//!   - an instance that crashes loses at most its unspent leases: at most `block` credits
//!     per key it was serving (10 by default);
//!   - a refill discards unspent leases of the previous period (they are not given back).
//!
//! What is written here by hand, and why: the GCRA is ours (about 30 lines) rather than
//! `governor`'s because `governor` keeps one quota per limiter and its state in the process,
//! while here every key has its own quota, the same arithmetic must run in Redis's Lua, and the
//! IETF `RateLimit` headers need the remaining count and the reset time that `governor` does
//! not report.

pub mod gcra;

use std::{
    collections::HashMap,
    fmt,
    hash::BuildHasher,
    sync::{Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{KeyId, StoreError, store::OwnerId};
pub use gcra::{GcraDecision, GcraState, MAX_SCALED};

/// Longest period of a rate limit: one day.
pub const MAX_PERIOD_SECS: u32 = 86_400;
/// Largest `limit` of a rate limit: 100,000 requests per period.
pub const MAX_RATE_LIMIT: u32 = 100_000;
/// Largest credit count or refill amount: 10¹².
pub const MAX_CREDITS: u64 = 1_000_000_000_000;
/// Longest refill interval: one year.
pub const MAX_REFILL_SECS: u64 = 366 * 86_400;

/// At most `limit` requests per `period_secs` (GCRA; see [`gcra`]). Valid when
/// `1 ≤ limit ≤` [`MAX_RATE_LIMIT`] and `1 ≤ period_secs ≤` [`MAX_PERIOD_SECS`] (so that
/// `limit × period_secs × 10⁶` stays within [`MAX_SCALED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RateLimit {
    /// Requests allowed per period (also the largest burst).
    pub limit: u32,
    /// The period, in seconds.
    pub period_secs: u32,
}

impl RateLimit {
    /// A limit, or `None` when out of range (see the type's docs).
    pub fn new(limit: u32, period_secs: u32) -> Option<Self> {
        ((1..=MAX_RATE_LIMIT).contains(&limit) && (1..=MAX_PERIOD_SECS).contains(&period_secs))
            .then_some(Self { limit, period_secs })
    }
}

impl<'de> serde::Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            limit: u32,
            period_secs: u32,
        }
        let raw = Raw::deserialize(deserializer)?;
        Self::new(raw.limit, raw.period_secs).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "limit must be 1 to {MAX_RATE_LIMIT} and period_secs 1 to {MAX_PERIOD_SECS}"
            ))
        })
    }
}

/// How credits come back: `remaining` is set to `amount` every `every_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Refill {
    /// What `remaining` is set back to (1 to [`MAX_CREDITS`]).
    pub amount: u64,
    /// Seconds between refills (1 to [`MAX_REFILL_SECS`]).
    pub every_secs: u64,
}

impl Refill {
    /// A refill, or `None` when out of range.
    pub fn new(amount: u64, every_secs: u64) -> Option<Self> {
        ((1..=MAX_CREDITS).contains(&amount) && (1..=MAX_REFILL_SECS).contains(&every_secs))
            .then_some(Self { amount, every_secs })
    }
}

impl<'de> serde::Deserialize<'de> for Refill {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            amount: u64,
            every_secs: u64,
        }
        let raw = Raw::deserialize(deserializer)?;
        Self::new(raw.amount, raw.every_secs).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "amount must be 1 to {MAX_CREDITS} and every_secs 1 to {MAX_REFILL_SECS}"
            ))
        })
    }
}

/// A key's credits as stored: what is left, how it refills, and when it last did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Credits {
    /// Credits left (0 to [`MAX_CREDITS`]).
    pub remaining: u64,
    /// The refill, if any.
    pub refill: Option<Refill>,
    /// The last refill (or when the credits were set): the next is `refill.every_secs` later.
    #[cfg_attr(feature = "serde", serde(with = "time::serde::rfc3339"))]
    pub refilled_at: OffsetDateTime,
}

impl Credits {
    /// The credits at `now`: refilled if one or more refills fell due since `refilled_at`
    /// (the period count advances by whole periods, so refills stay on their schedule).
    pub fn at(self, now: OffsetDateTime) -> Self {
        let Some(refill) = self.refill else {
            return self;
        };
        let every = i128::from(refill.every_secs) * 1_000_000_000;
        let since = (now - self.refilled_at).whole_nanoseconds();
        if since < every {
            return self;
        }
        let periods = since / every;
        let advance = time::Duration::nanoseconds_i128(periods * every);
        Self {
            remaining: refill.amount,
            refill: self.refill,
            refilled_at: self.refilled_at + advance,
        }
    }

    /// When the next refill falls due, if the credits refill.
    pub fn next_refill(&self) -> Option<OffsetDateTime> {
        self.refill.map(|r| {
            self.refilled_at + time::Duration::seconds(i64::try_from(r.every_secs).unwrap_or(0))
        })
    }

    /// Takes `cost` plus a lease of up to `block` more (never more than half of what would be
    /// left) at `now`: the new stored value and how many were granted, or `None` when fewer
    /// than `cost` are left.
    pub fn take(self, cost: u64, block: u64, now: OffsetDateTime) -> (Self, Option<u64>) {
        let current = self.at(now);
        if current.remaining < cost {
            return (current, None);
        }
        let rest = current.remaining - cost;
        let granted = cost + block.min(rest / 2);
        (
            Self {
                remaining: current.remaining - granted,
                ..current
            },
            Some(granted),
        )
    }

    /// Gives back `unspent` leased credits taken in the period that began at `epoch`; credits
    /// of an earlier period are dropped (a refill has replaced them).
    pub fn give_back(self, unspent: u64, epoch: OffsetDateTime) -> Self {
        if epoch == self.refilled_at {
            Self {
                remaining: self.remaining.saturating_add(unspent).min(MAX_CREDITS),
                ..self
            }
        } else {
            self
        }
    }
}

/// What a limit is on: a key, or an owner (all of a user's credentials).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitSubject {
    /// One API key (and the tokens derived from it).
    Key(KeyId),
    /// All of one owner's keys and tokens.
    Owner(OwnerId),
}

impl LimitSubject {
    /// The subject as a short, stable text (`k:<key id>`, `o:<owner id>`), for backends that
    /// key their state by strings.
    pub fn key_text(&self) -> String {
        match self {
            Self::Key(id) => format!("k:{id}"),
            Self::Owner(owner) => format!("o:{owner}"),
        }
    }

    /// The policy name in the `RateLimit` headers: `key` or `owner`.
    pub fn policy_name(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::Owner(_) => "owner",
        }
    }
}

/// One rate limit to apply to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCheck {
    /// What the limit is on.
    pub subject: LimitSubject,
    /// The limit.
    pub rate: RateLimit,
}

/// Where one rate limit stands after a request: what the `RateLimit` headers report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateStatus {
    /// `key` or `owner` ([`LimitSubject::policy_name`]).
    pub policy: &'static str,
    /// The limit.
    pub rate: RateLimit,
    /// Requests that would still pass now.
    pub remaining: u64,
    /// Seconds until the limit is fully replenished.
    pub reset_secs: u64,
}

/// The outcome of a [`LimitBackend::check`]: every limit's status, and whether the request
/// passes (all of them allowed it; then all were charged, otherwise none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateOutcome {
    /// Whether the request passes.
    pub allowed: bool,
    /// When refused: seconds until it would pass (the longest wait of the refusing limits).
    pub retry_after_secs: u64,
    /// One status per check, in the order of the checks.
    pub statuses: Vec<RateStatus>,
}

impl RateStatus {
    /// The status of `check` after `decision`.
    pub fn of(check: &RateCheck, decision: &GcraDecision) -> Self {
        Self {
            policy: check.subject.policy_name(),
            rate: check.rate,
            remaining: decision.remaining,
            reset_secs: decision.reset_secs,
        }
    }
}

impl RateOutcome {
    /// Combines the decisions of `checks` taken together: allowed only if each allowed.
    pub fn from_decisions(checks: &[RateCheck], decisions: &[GcraDecision]) -> Self {
        let allowed = decisions.iter().all(|d| d.allowed);
        Self {
            allowed,
            retry_after_secs: decisions
                .iter()
                .map(|d| d.retry_after_secs)
                .max()
                .unwrap_or(0),
            statuses: checks
                .iter()
                .zip(decisions)
                .map(|(check, d)| RateStatus::of(check, d))
                .collect(),
        }
    }
}

/// Where rate-limit state lives. [`InProcessLimits`] keeps it in the process;
/// `nexora-auth-redis` shares it between instances.
///
/// # Contract
///
/// * [`check`](Self::check) applies `cost` to every check **atomically, all or nothing**: if
///   every limit allows it, all are charged; if any refuses, none is, and the outcome says how
///   long to wait. Each limit follows [`gcra::decide`] exactly.
/// * A failure to reach the state is `Err` ([`StoreError::Unavailable`]), which the
///   authenticator answers as unavailable (503): never as allowed, unless the backend itself
///   documents a fallback.
#[async_trait]
pub trait LimitBackend: Send + Sync + fmt::Debug + 'static {
    /// Applies `cost` to `checks` at `now` (a backend with a clock of its own, such as Redis's,
    /// may use that instead, so that instances with skewed clocks agree).
    async fn check(
        &self,
        checks: &[RateCheck],
        cost: u32,
        now: OffsetDateTime,
    ) -> Result<RateOutcome, StoreError>;
}

/// Microseconds since the Unix epoch.
pub fn unix_micros(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(at.microsecond()))
}

const SHARDS: usize = 16;

type Table = HashMap<LimitSubject, GcraState, foldhash::fast::RandomState>;

fn guards_position(order: &[usize], index: usize) -> usize {
    order.binary_search(&index).unwrap_or(0)
}

/// Rate-limit state in this process: exact for one instance; `N` instances allow up to `N ×`
/// each limit.
///
/// Memory: one entry (under 100 bytes) per subject with debt; entries whose debt has drained
/// are dropped when a shard grows past its share of [`InProcessLimits::with_max_tracked`].
/// Subjects are authenticated keys and owners (never unauthenticated input), so the table is
/// bounded by the store's keys; past the cap, the entries closest to drained are dropped first
/// (each such drop can let that subject's next burst through early).
pub struct InProcessLimits {
    shards: Box<[Mutex<Table>]>,
    hasher: foldhash::fast::RandomState,
    max_per_shard: usize,
}

impl fmt::Debug for InProcessLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessLimits")
            .field("max_tracked", &(self.max_per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

impl Default for InProcessLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessLimits {
    /// An empty table tracking up to 1,000,000 subjects.
    pub fn new() -> Self {
        Self::with_max_tracked(1_000_000)
    }

    /// An empty table tracking up to `max` subjects (at least 16).
    pub fn with_max_tracked(max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            max_per_shard: max.div_ceil(SHARDS).max(1),
        }
    }

    fn index(&self, subject: &LimitSubject) -> usize {
        usize::try_from(self.hasher.hash_one(subject) % SHARDS as u64).unwrap_or(0)
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Table> {
        // Every critical section leaves the map consistent: a poisoned lock is still valid.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// [`LimitBackend::check`] without an await. Atomic across the checks: their shards are
    /// locked together (in index order) while they are judged and charged.
    pub fn check_now(&self, checks: &[RateCheck], cost: u32, now: OffsetDateTime) -> RateOutcome {
        let refs: Vec<&RateCheck> = checks.iter().collect();
        let mut decisions = vec![GcraDecision::default(); checks.len()];
        self.decide_into(&refs, cost, now, &mut decisions);
        RateOutcome::from_decisions(checks, &decisions)
    }

    /// Judges `checks` together at `now` and charges `cost` to all of them if all allow it,
    /// writing one decision per check into `decisions` (as long as `checks`); returns whether
    /// the request passes. Allocates nothing for one check (the hot path of
    /// [`Authenticator::charge`](crate::Authenticator::charge)).
    pub fn decide_into(
        &self,
        checks: &[&RateCheck],
        cost: u32,
        now: OffsetDateTime,
        decisions: &mut [GcraDecision],
    ) -> bool {
        let now_us = unix_micros(now);
        if let ([one], [out]) = (checks, &mut *decisions) {
            let mut shard = self.lock(self.index(&one.subject));
            let d = match shard.get_mut(&one.subject) {
                Some(slot) => {
                    let d = gcra::decide(*slot, now_us, one.rate, cost);
                    if d.allowed {
                        *slot = d.state;
                    }
                    d
                }
                None => {
                    let d = gcra::decide(GcraState::default(), now_us, one.rate, cost);
                    if d.allowed && cost > 0 {
                        self.keep(&mut shard, &one.subject, d.state, now_us);
                    }
                    d
                }
            };
            *out = d;
            return d.allowed;
        }
        let indices: Vec<usize> = checks.iter().map(|c| self.index(&c.subject)).collect();
        let mut order = indices.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Table>)> =
            order.iter().map(|&i| (i, self.lock(i))).collect();
        let slot = |index: usize| guards_position(&order, index);
        for ((c, &i), out) in checks.iter().zip(&indices).zip(decisions.iter_mut()) {
            let state = guards[slot(i)].1.get(&c.subject).copied();
            *out = gcra::decide(state.unwrap_or_default(), now_us, c.rate, cost);
        }
        let allowed = decisions.iter().all(|d| d.allowed);
        if cost > 0 && allowed {
            for ((c, &i), d) in checks.iter().zip(&indices).zip(decisions.iter()) {
                self.keep(&mut guards[slot(i)].1, &c.subject, d.state, now_us);
            }
        }
        allowed
    }

    fn keep(&self, shard: &mut Table, subject: &LimitSubject, state: GcraState, now_us: i64) {
        if let Some(slot) = shard.get_mut(subject) {
            *slot = state;
            return;
        }
        if shard.len() >= self.max_per_shard {
            // Drop drained entries (debt gone by now at any rate of at most MAX_SCALED).
            shard.retain(|_, s| {
                let idle = u64::try_from(now_us.saturating_sub(s.at_us)).unwrap_or(0);
                idle < u64::from(MAX_PERIOD_SECS) * 1_000_000 && s.debt > 0
            });
            if shard.len() >= self.max_per_shard {
                let mut debts: Vec<(u64, LimitSubject)> =
                    shard.iter().map(|(k, s)| (s.debt, k.clone())).collect();
                let evict = (self.max_per_shard / 16).max(1).min(debts.len());
                debts.select_nth_unstable_by_key(evict - 1, |(debt, _)| *debt);
                for (_, k) in &debts[..evict] {
                    shard.remove(k);
                }
            }
        }
        shard.insert(subject.clone(), state);
    }
}

#[async_trait]
impl LimitBackend for InProcessLimits {
    async fn check(
        &self,
        checks: &[RateCheck],
        cost: u32,
        now: OffsetDateTime,
    ) -> Result<RateOutcome, StoreError> {
        Ok(self.check_now(checks, cost, now))
    }
}

/// Credits as a request sets them: a count and an optional refill. Stored as [`Credits`] with
/// `refilled_at` set to the moment they were set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NewCredits {
    /// Credits to start with (0 to [`MAX_CREDITS`]).
    pub remaining: u64,
    /// The refill, if any.
    pub refill: Option<Refill>,
}

impl NewCredits {
    /// Credits, or `None` when `remaining` is above [`MAX_CREDITS`].
    pub fn new(remaining: u64, refill: Option<Refill>) -> Option<Self> {
        (remaining <= MAX_CREDITS).then_some(Self { remaining, refill })
    }

    /// The stored form, set at `now`.
    pub fn at(self, now: OffsetDateTime) -> Credits {
        Credits {
            remaining: self.remaining,
            refill: self.refill,
            refilled_at: now,
        }
    }
}

impl<'de> serde::Deserialize<'de> for NewCredits {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            remaining: u64,
            #[serde(default)]
            refill: Option<Refill>,
        }
        let raw = Raw::deserialize(deserializer)?;
        Self::new(raw.remaining, raw.refill).ok_or_else(|| {
            serde::de::Error::custom(format!("remaining must be 0 to {MAX_CREDITS}"))
        })
    }
}

/// Where a request stands against its limits after
/// [`Authenticator::charge`](crate::Authenticator::charge): what the `RateLimit` response
/// headers report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// The key's rate limit, when it has one.
    pub key: Option<RateStatus>,
    /// The owner's rate limit, when one applies.
    pub owner: Option<RateStatus>,
    /// The key's credits left, as this instance sees them (its unspent lease included), when
    /// the key has credits.
    pub credits_remaining: Option<u64>,
}

impl Usage {
    /// Whether no limit applied (no headers to send).
    pub fn is_empty(&self) -> bool {
        self.key.is_none() && self.owner.is_none() && self.credits_remaining.is_none()
    }

    /// The rate limits that applied: the key's, then the owner's.
    pub fn rates(&self) -> impl Iterator<Item = &RateStatus> {
        self.key.iter().chain(self.owner.iter())
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exceeded {
    /// A rate limit (the key's or the owner's).
    Rate,
    /// The key's credits are exhausted.
    Credits,
}

/// Why [`Authenticator::charge`](crate::Authenticator::charge) refused a request, and where
/// its limits stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRefusal {
    /// Which limit refused.
    pub exceeded: Exceeded,
    /// Seconds until the request would pass: always for a rate limit; for credits only when a
    /// refill is due (`None`: they never come back by themselves).
    pub retry_after_secs: Option<u64>,
    /// The limits' state.
    pub usage: Usage,
}
