//! The generic cell rate algorithm (GCRA) in exact integer arithmetic.
//!
//! A limit of `limit` requests per `period` is a bucket of capacity `limit`, drained
//! continuously at `limit / period`. The state is the bucket's *debt* at an instant; a request
//! of cost `c` is allowed when the debt drained to now, plus `c` requests' worth, fits in the
//! capacity, and then adds `c` requests' worth; a refused request changes nothing.
//!
//! # Units
//!
//! Time is in microseconds. The debt is kept in *scaled* microseconds (microseconds × `limit`),
//! so one request is worth exactly `period_us` and the drain is `limit` per microsecond: no
//! division, no rounding, no drift. [`RateLimit`] bounds `limit × period_us` by
//! [`MAX_SCALED`] (under 2⁵³), so the same arithmetic is exact in the doubles of Redis's Lua
//! (the `nexora-auth-redis` script mirrors this function line for line).
//!
//! # What it guarantees
//!
//! * **Burst**: from a drained bucket, exactly `limit` requests pass at once; the next is
//!   refused.
//! * **Steady stream**: requests spaced exactly `period / limit` apart are never refused,
//!   however long the stream (the window never "sticks").
//! * **Any window**: in any interval of length `d`, at most `limit + ⌊d × limit / period⌋`
//!   requests pass.
//! * A refusal's `retry_after` is the exact wait until the same request would pass (rounded up
//!   to whole seconds, never 0).
//!
//! # When a limit changes
//!
//! The state does not record the limit it was charged under: a subject keeps its counter when
//! its limit is changed (no fresh burst). The debt counts requests (one request is `period_us`
//! whatever the limit), so a new `limit` over the same period carries the requests counted so
//! far, capped at the new limit (a subject over a lowered limit is full, not in debt beyond
//! it); a new period carries the debt as time.

use super::RateLimit;

/// The largest `limit × period_us` a [`RateLimit`] may have: 2⁵³, the largest integer a double
/// holds exactly (the Redis script computes in doubles).
pub const MAX_SCALED: u64 = 1 << 53;

/// A limit's state: the debt (scaled microseconds) at an instant (microseconds since the Unix
/// epoch). A key never seen, or drained, has debt 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcraState {
    /// The debt at `at_us`, in scaled microseconds (µs × limit).
    pub debt: u64,
    /// When the debt was measured, in microseconds since the Unix epoch.
    pub at_us: i64,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcraDecision {
    /// Whether the request passes.
    pub allowed: bool,
    /// The state to keep: charged when allowed, drained to now when refused.
    pub state: GcraState,
    /// Requests of cost 1 that would still pass now (after this one, if allowed).
    pub remaining: u64,
    /// Seconds until the bucket is fully drained (rounded up): the `t` of the `RateLimit`
    /// header.
    pub reset_secs: u64,
    /// When refused, seconds until this request would pass (rounded up, at least 1); 0 when
    /// allowed.
    pub retry_after_secs: u64,
}

const MICROS: u64 = 1_000_000;

/// Judges a request of `cost` against `rate` at `now_us`, from the previous `state`.
///
/// A cost of 0 always passes and changes nothing but the drain; a cost above the limit never
/// passes (its `retry_after` is the whole period).
pub fn decide(state: GcraState, now_us: i64, rate: RateLimit, cost: u32) -> GcraDecision {
    let limit = u64::from(rate.limit);
    let period_us = u64::from(rate.period_secs) * MICROS;
    let capacity = limit * period_us;
    // Time never runs backwards for the bucket; past one period, the debt is gone anyway.
    let elapsed = u64::try_from(now_us.saturating_sub(state.at_us))
        .unwrap_or(0)
        .min(period_us);
    // A debt beyond the capacity (the limit was lowered since it was charged) counts as full.
    let drained = state.debt.saturating_sub(elapsed * limit).min(capacity);
    let need = u64::from(cost) * period_us;
    let allowed = need <= capacity && drained + need <= capacity;
    let debt = if allowed { drained + need } else { drained };
    let retry_after_secs = if allowed {
        0
    } else if need > capacity {
        u64::from(rate.period_secs)
    } else {
        // The debt must drain by `drained + need - capacity` scaled µs, at `limit` per µs.
        (drained + need - capacity)
            .div_ceil(limit)
            .div_ceil(MICROS)
            .max(1)
    };
    GcraDecision {
        allowed,
        state: GcraState {
            debt,
            at_us: now_us.max(state.at_us),
        },
        remaining: (capacity - debt) / period_us,
        reset_secs: debt.div_ceil(limit).div_ceil(MICROS),
        retry_after_secs,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rate(limit: u32, period_secs: u32) -> RateLimit {
        RateLimit::new(limit, period_secs).unwrap()
    }

    #[test]
    fn a_burst_of_exactly_the_limit_passes() {
        let r = rate(10, 60);
        let mut state = GcraState::default();
        let now = 1_700_000_000_000_000;
        for i in 0..10 {
            let d = decide(state, now, r, 1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 9 - i);
            state = d.state;
        }
        let refused = decide(state, now, r, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, 6, "one request drains in 60/10 s");
        assert_eq!(refused.reset_secs, 60);
        assert_eq!(refused.state, state, "a refusal charges nothing");
    }

    #[test]
    fn a_limit_lowered_under_a_debt_refuses_without_overflow() {
        let mut state = GcraState::default();
        for _ in 0..100 {
            state = decide(state, 0, rate(100, 60), 1).state;
        }
        let lowered = decide(state, 0, rate(10, 60), 1);
        assert!(!lowered.allowed);
        assert_eq!(lowered.remaining, 0);
        assert_eq!(lowered.retry_after_secs, 6, "full, not 90 requests in debt");
        // Raising it again carries the count: 100 used of 200.
        let raised = decide(state, 0, rate(200, 60), 1);
        assert!(raised.allowed);
        assert_eq!(raised.remaining, 99);
    }

    #[test]
    fn costs_above_the_limit_never_pass_and_zero_costs_always_do() {
        let r = rate(3, 1);
        let d = decide(GcraState::default(), 0, r, 4);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 1);
        let mut state = GcraState::default();
        for _ in 0..3 {
            state = decide(state, 0, r, 1).state;
        }
        let free = decide(state, 0, r, 0);
        assert!(free.allowed);
        assert_eq!(free.remaining, 0);
    }

    /// A reference model: the sliding log of GCRA's virtual scheduling, in exact rationals
    /// (theoretical arrival time × limit), written independently of `decide`.
    struct Model {
        tat_scaled: i128,
        limit: i128,
        period_us: i128,
    }

    impl Model {
        fn admit(&mut self, now_us: i64, cost: u32) -> bool {
            let now = i128::from(now_us) * self.limit;
            let tat = self.tat_scaled.max(now);
            let new_tat = tat + i128::from(cost) * self.period_us;
            if new_tat - now <= self.limit * self.period_us {
                self.tat_scaled = new_tat;
                true
            } else {
                false
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_virtual_scheduling_model(
            limit in 1u32..50,
            period_secs in 1u32..120,
            steps in proptest::collection::vec((0i64..5_000_000, 0u32..4), 1..200),
        ) {
            let r = rate(limit, period_secs);
            let mut model = Model {
                tat_scaled: 0,
                limit: i128::from(limit),
                period_us: i128::from(period_secs) * 1_000_000,
            };
            let mut state = GcraState::default();
            let mut now = 1_000_000_000_000i64;
            for (gap, cost) in steps {
                now += gap;
                let d = decide(state, now, r, cost);
                prop_assert_eq!(d.allowed, model.admit(now, cost));
                state = d.state;
            }
        }

        #[test]
        fn a_steady_stream_at_the_rate_is_never_refused(
            limit in 1u32..1000,
            period_secs in 1u32..3600,
            n in 1usize..3000,
            start_debt_requests in 0u32..1000,
        ) {
            let r = rate(limit, period_secs);
            let period_us = u64::from(period_secs) * 1_000_000;
            // Spaced `period / limit` apart, rounded up to whole µs: never faster than the rate.
            let gap = i64::try_from(period_us.div_ceil(u64::from(limit))).unwrap();
            let mut state = GcraState {
                debt: u64::from(start_debt_requests.min(limit - 1)) * period_us,
                at_us: 0,
            };
            let mut now = 0i64;
            for i in 0..n {
                now += gap;
                let d = decide(state, now, r, 1);
                prop_assert!(d.allowed, "request {} of a steady stream refused", i);
                state = d.state;
            }
        }

        #[test]
        fn any_window_passes_at_most_limit_plus_its_share(
            limit in 1u32..20,
            period_secs in 1u32..10,
            gaps in proptest::collection::vec(0i64..2_000_000, 1..300),
        ) {
            let r = rate(limit, period_secs);
            let period_us = i64::from(period_secs) * 1_000_000;
            let mut state = GcraState::default();
            let mut now = 0i64;
            let mut passed = Vec::new();
            for gap in gaps {
                now += gap;
                let d = decide(state, now, r, 1);
                if d.allowed {
                    passed.push(now);
                }
                state = d.state;
            }
            for (i, &start) in passed.iter().enumerate() {
                for (j, &end) in passed.iter().enumerate().skip(i) {
                    let span = end - start;
                    let bound = i64::from(limit) + span * i64::from(limit) / period_us;
                    prop_assert!(i64::try_from(j - i + 1).unwrap() <= bound);
                }
            }
        }

        #[test]
        fn retry_after_is_enough_and_not_more_than_a_second_too_long(
            limit in 1u32..50,
            period_secs in 1u32..120,
            burst in 1u32..100,
        ) {
            let r = rate(limit, period_secs);
            let mut state = GcraState::default();
            let now = 5_000_000_000i64;
            let mut refused = None;
            for _ in 0..burst {
                let d = decide(state, now, r, 1);
                if !d.allowed {
                    refused = Some(d);
                    break;
                }
                state = d.state;
            }
            if let Some(d) = refused {
                let wait = i64::try_from(d.retry_after_secs).unwrap() * 1_000_000;
                prop_assert!(decide(state, now + wait, r, 1).allowed);
                prop_assert!(!decide(state, now + wait - 1_000_001, r, 1).allowed || wait == 1_000_000);
            }
        }
    }
}
