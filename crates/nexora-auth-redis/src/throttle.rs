//! [`RedisThrottle`]: the login throttle counted in Redis, shared by every instance.

use std::fmt;

use nexora_auth::{
    InProcessThrottle, NewLocks, ReservationId, Settlement, StoreError, ThrottleBackend,
    ThrottleDecision, ThrottleKey, ThrottlePolicy, ThrottleSubject, async_trait,
};
use redis::Script;
use time::OffsetDateTime;

use crate::connection::{Health, Outage, RedisConnection, TimeSource};

const RESERVE: &str = include_str!("lua/throttle_reserve.lua");
const SETTLE: &str = include_str!("lua/throttle_settle.lua");

/// Ids of reservations granted by the fallback table (it ignores ids and grants 0); Redis's
/// have the top bit set.
const FALLBACK_ID: u64 = 0;
const REDIS_ID_BIT: u64 = 1 << 63;

/// A [`ThrottleBackend`] whose counts live in Redis: instances on the same server, key prefix
/// and [`ThrottleKey`] allow exactly the [`ThrottlePolicy`] in total, not once each.
///
/// Semantics are those of the in-process table ([`InProcessThrottle`], the trait's
/// reference): a subject grants a reservation while `failures + in flight < limit`, reaching
/// the limit in failures locks it for the lockout, a success clears the email's failures, a
/// released reservation counts nothing. Each reservation and settlement is one Lua script.
///
/// # State and bounds
///
/// * Per subject, a hash `<prefix>t:<subject>` (failures, window start, lock end) and a sorted
///   set `<prefix>t:<subject>:r` of the reservations in flight, each scored by its expiry.
///   Both expire when the window, the lock and the last reservation are over.
/// * A reservation never settled — its instance crashed, or lost Redis between reserving and
///   settling — stops counting **one window** after it was granted (15 minutes by default).
///   Until then it holds one of the subject's `limit` places: a crash can only make the
///   throttle stricter, never looser.
/// * Emails are subjects under a [`ThrottleKey`] every instance must share
///   ([`ThrottleKey::derive`] from a configured secret); Redis sees keyed digests, never
///   emails.
/// * [`ThrottlePolicy::max_tracked`] does not apply: entries expire by themselves, and Redis's
///   memory is its own to bound. Run it with a `noeviction` (or `volatile-*`) `maxmemory`
///   policy: an eviction that drops a lock would hand an attacker more guesses.
/// * While Redis is down, by default ([`Outage::FallBack`]) each instance throttles alone in
///   an in-process table (up to `N ×` the policy across `N` instances); counts made then are
///   not carried into Redis when it answers again.
pub struct RedisThrottle {
    redis: RedisConnection,
    policy: ThrottlePolicy,
    key: ThrottleKey,
    reserve: Script,
    settle: Script,
    outage: Outage,
    fallback: InProcessThrottle,
    health: Health,
}

impl fmt::Debug for RedisThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisThrottle")
            .field("redis", &self.redis)
            .field("policy", &self.policy)
            .field("outage", &self.outage)
            .field("degraded", &self.health.is_down())
            .field("fallbacks", &self.health.fallbacks())
            .finish_non_exhaustive()
    }
}

impl RedisThrottle {
    /// The login throttle under `policy` on `redis`, emails digested under `key` (the same on
    /// every instance). While Redis cannot be reached it falls back to an in-process table
    /// ([`Outage::FallBack`]; see [`on_outage`](Self::on_outage)).
    pub fn new(redis: RedisConnection, policy: ThrottlePolicy, key: ThrottleKey) -> Self {
        Self {
            redis,
            fallback: InProcessThrottle::with_key(policy.clone(), key.clone()),
            policy,
            key,
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            outage: Outage::FallBack,
            health: Health::new("login throttle"),
        }
    }

    /// What to do while Redis cannot be reached. Defaults to [`Outage::FallBack`]: each
    /// instance throttles alone in an in-process table (with a warning when the outage begins
    /// and a note when it ends); [`Outage::FailClosed`] answers `Err`, so logins are refused
    /// as unavailable (503).
    pub fn on_outage(mut self, outage: Outage) -> Self {
        self.outage = outage;
        self
    }

    /// How many reservations were answered without Redis (by the fallback table, or refused
    /// as unavailable when failing closed) since this value was built.
    pub fn fallbacks(&self) -> u64 {
        self.health.fallbacks()
    }

    /// Whether Redis is currently treated as unreachable.
    pub fn is_degraded(&self) -> bool {
        self.health.is_down()
    }

    fn now_arg(&self, now: OffsetDateTime) -> String {
        match self.redis.time() {
            TimeSource::Caller => (now.unix_timestamp_nanos() / 1_000_000).to_string(),
            TimeSource::Redis => String::new(),
        }
    }

    fn keys<'a>(
        &'a self,
        subjects: &'a [ThrottleSubject],
    ) -> impl Iterator<Item = (String, String, &'a ThrottleSubject)> + 'a {
        let prefix = self.redis.key_prefix();
        subjects.iter().map(move |s| {
            let counter = format!("{prefix}t:{}", s.key_text());
            let in_flight = format!("{counter}:r");
            (counter, in_flight, s)
        })
    }

    async fn reserve_in_redis(
        &self,
        subjects: &[ThrottleSubject],
        now: OffsetDateTime,
    ) -> Result<ThrottleDecision, StoreError> {
        let id = uuid::Uuid::new_v4().as_u64_pair().0 | REDIS_ID_BIT;
        let mut call = self.reserve.prepare_invoke();
        call.arg(self.now_arg(now))
            .arg(id.to_string())
            .arg(millis(self.policy.window_duration()))
            .arg(millis(self.policy.lockout_duration()));
        for (counter, in_flight, subject) in self.keys(subjects) {
            call.key(counter).key(in_flight);
            call.arg(self.policy.limit_for(subject));
        }
        let answer: (i64, i64) = self.redis.run(&call).await?;
        Ok(match answer {
            (1, _) => ThrottleDecision::Reserved(ReservationId::new(id)),
            (_, secs) => ThrottleDecision::Refused {
                retry_after_secs: u64::try_from(secs).unwrap_or(1).max(1),
            },
        })
    }

    async fn settle_in_redis(
        &self,
        subjects: &[ThrottleSubject],
        id: ReservationId,
        outcome: Settlement,
        now: OffsetDateTime,
    ) -> Result<NewLocks, StoreError> {
        let mut call = self.settle.prepare_invoke();
        call.arg(self.now_arg(now))
            .arg(id.value().to_string())
            .arg(match outcome {
                Settlement::Failed => "F",
                Settlement::Succeeded => "S",
                Settlement::Released => "R",
            })
            .arg(millis(self.policy.window_duration()))
            .arg(millis(self.policy.lockout_duration()));
        for (counter, in_flight, subject) in self.keys(subjects) {
            call.key(counter).key(in_flight);
            call.arg(self.policy.limit_for(subject))
                .arg(if subject.is_email() { "e" } else { "c" });
        }
        let (email, client): (i64, i64) = self.redis.run(&call).await?;
        Ok(NewLocks::new(email == 1, client == 1))
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl ThrottleBackend for RedisThrottle {
    fn email_subject(&self, email: &str) -> ThrottleSubject {
        ThrottleSubject::email(&self.key, email)
    }

    async fn reserve(
        &self,
        subjects: &[ThrottleSubject],
        now: OffsetDateTime,
    ) -> Result<ThrottleDecision, StoreError> {
        let interval = self.redis.retry_interval();
        let error = if self.health.should_try(interval) {
            match self.reserve_in_redis(subjects, now).await {
                Ok(decision) => {
                    self.health.succeeded();
                    return Ok(decision);
                }
                Err(error) => {
                    self.health.failed(&error, interval, self.outage);
                    error
                }
            }
        } else {
            StoreError::unavailable("Redis is unreachable (waiting to retry)")
        };
        self.health.count_fallback();
        match self.outage {
            Outage::FallBack => self.fallback.reserve(subjects, now).await,
            Outage::FailClosed => Err(error),
        }
    }

    async fn settle(
        &self,
        subjects: &[ThrottleSubject],
        id: ReservationId,
        outcome: Settlement,
        now: OffsetDateTime,
    ) -> Result<NewLocks, StoreError> {
        if id.value() == FALLBACK_ID {
            return self.fallback.settle(subjects, id, outcome, now).await;
        }
        // Always tried, even during an outage: a reservation held in Redis can only be
        // settled there (and expires by itself if it cannot be).
        match self.settle_in_redis(subjects, id, outcome, now).await {
            Ok(locks) => {
                self.health.succeeded();
                Ok(locks)
            }
            Err(error) => {
                self.health
                    .failed(&error, self.redis.retry_interval(), self.outage);
                Err(error)
            }
        }
    }
}
