//! [`RedisLimits`]: rate limits counted in Redis by one atomic script per request.

use std::fmt;

use nexora_auth::{
    InProcessLimits, LimitBackend, StoreError, async_trait,
    limits::{GcraDecision, GcraState, RateCheck, RateOutcome, unix_micros},
};
use redis::Script;
use time::OffsetDateTime;

use crate::connection::{Health, Outage, RedisConnection, TimeSource};

/// The script: `gcra::decide` per limit, all or nothing, in one atomic step.
const GCRA: &str = include_str!("lua/gcra.lua");

/// A [`LimitBackend`] whose state lives in Redis: every instance on the same server and key
/// prefix shares each limit exactly (see the [crate docs](crate) for the bounds).
///
/// Each [`check`](LimitBackend::check) runs one Lua script (`EVALSHA`, loaded on first use)
/// that applies [`gcra::decide`](nexora_auth::limits::gcra::decide) to every limit of the
/// request and charges them all or none, on Redis's clock by default. A limit's state is a
/// hash `{debt, at_us}` under `<prefix><subject>` (`nexora:k:<key id>`, `nexora:o:<owner>`),
/// expiring when its debt has drained (at most one period after the last request).
pub struct RedisLimits {
    redis: RedisConnection,
    script: Script,
    outage: Outage,
    fallback: InProcessLimits,
    health: Health,
}

impl fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimits")
            .field("redis", &self.redis)
            .field("outage", &self.outage)
            .field("degraded", &self.health.is_down())
            .field("fallbacks", &self.health.fallbacks())
            .finish_non_exhaustive()
    }
}

impl RedisLimits {
    /// Rate limits on `redis`. While Redis cannot be reached they fall back to an
    /// [`InProcessLimits`] table ([`Outage::FallBack`]; see [`on_outage`](Self::on_outage)).
    pub fn new(redis: RedisConnection) -> Self {
        Self {
            redis,
            script: Script::new(GCRA),
            outage: Outage::FallBack,
            fallback: InProcessLimits::new(),
            health: Health::new("rate limits"),
        }
    }

    /// What to do while Redis cannot be reached. Defaults to [`Outage::FallBack`]: each
    /// instance counts alone in an in-process table (with a warning when the outage begins
    /// and a note when it ends); [`Outage::FailClosed`] answers `Err` (503) instead.
    pub fn on_outage(mut self, outage: Outage) -> Self {
        self.outage = outage;
        self
    }

    /// How many checks were answered without Redis (by the fallback table, or refused as
    /// unavailable when failing closed) since this value was built.
    pub fn fallbacks(&self) -> u64 {
        self.health.fallbacks()
    }

    /// Whether Redis is currently treated as unreachable (between a failed call and the next
    /// answer).
    pub fn is_degraded(&self) -> bool {
        self.health.is_down()
    }

    async fn check_in_redis(
        &self,
        checks: &[RateCheck],
        cost: u32,
        now: OffsetDateTime,
    ) -> Result<RateOutcome, StoreError> {
        let mut call = self.script.prepare_invoke();
        match self.redis.time() {
            TimeSource::Caller => call.arg(unix_micros(now).to_string()),
            TimeSource::Redis => call.arg(""),
        };
        call.arg(cost);
        let prefix = self.redis.key_prefix();
        for check in checks {
            call.key(format!("{prefix}{}", check.subject.key_text()));
            call.arg(check.rate.limit).arg(check.rate.period_secs);
        }
        let values: Vec<i64> = self.redis.run(&call).await?;
        if values.len() != checks.len() * 6 {
            return Err(StoreError::unavailable(
                "the Redis rate-limit script answered an unexpected shape",
            ));
        }
        let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
        let decisions: Vec<GcraDecision> = values
            .chunks_exact(6)
            .map(|d| GcraDecision {
                allowed: d[0] == 1,
                state: GcraState {
                    debt: unsigned(d[1]),
                    at_us: d[2],
                },
                remaining: unsigned(d[3]),
                reset_secs: unsigned(d[4]),
                retry_after_secs: unsigned(d[5]),
            })
            .collect();
        Ok(RateOutcome::from_decisions(checks, &decisions))
    }

    fn without_redis(
        &self,
        checks: &[RateCheck],
        cost: u32,
        now: OffsetDateTime,
        error: StoreError,
    ) -> Result<RateOutcome, StoreError> {
        self.health.count_fallback();
        match self.outage {
            Outage::FallBack => Ok(self.fallback.check_now(checks, cost, now)),
            Outage::FailClosed => Err(error),
        }
    }
}

#[async_trait]
impl LimitBackend for RedisLimits {
    async fn check(
        &self,
        checks: &[RateCheck],
        cost: u32,
        now: OffsetDateTime,
    ) -> Result<RateOutcome, StoreError> {
        if checks.is_empty() {
            return Ok(RateOutcome::from_decisions(checks, &[]));
        }
        let interval = self.redis.retry_interval();
        if !self.health.should_try(interval) {
            let error = StoreError::unavailable("Redis is unreachable (waiting to retry)");
            return self.without_redis(checks, cost, now, error);
        }
        match self.check_in_redis(checks, cost, now).await {
            Ok(outcome) => {
                self.health.succeeded();
                Ok(outcome)
            }
            Err(error) => {
                self.health.failed(&error, interval, self.outage);
                self.without_redis(checks, cost, now, error)
            }
        }
    }
}
