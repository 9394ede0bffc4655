//! Rate limits and credits as the stores' columns hold them (schema version 6), both ways.
//!
//! A limit is kept in plain nullable integer columns rather than a document, so a credit
//! compare-and-swap is one `UPDATE … WHERE` over those columns. A `NULL` group is "none"; a
//! group set in part, or with values no [`RateLimit::new`] / [`Refill::new`] accepts, is a row
//! the store cannot have written: [`StoreError::Unavailable`], as every corrupt row is.

use nexora_auth::{
    StoreError,
    limits::{Credits, MAX_CREDITS, RateLimit, Refill},
};
use time::OffsetDateTime;

use crate::corrupt;

/// The schema version that adds the limit columns: per key, a rate limit and credits; per user,
/// an owner rate limit. In both stores.
pub const LIMITS_SCHEMA_VERSION: i64 = 6;

/// A rate limit as its two columns (`rate_limit`, `rate_period_secs`).
pub fn rate_limit_columns(rate: Option<RateLimit>) -> (Option<i64>, Option<i64>) {
    match rate {
        Some(r) => (Some(i64::from(r.limit)), Some(i64::from(r.period_secs))),
        None => (None, None),
    }
}

/// A rate limit read back from its two columns: both `NULL` is none; one `NULL`, or values
/// [`RateLimit::new`] refuses, is a corrupt row.
pub fn rate_limit(
    limit: Option<i64>,
    period_secs: Option<i64>,
) -> Result<Option<RateLimit>, StoreError> {
    match (limit, period_secs) {
        (None, None) => Ok(None),
        (Some(limit), Some(period)) => {
            let limit = u32::try_from(limit).map_err(|_| corrupt("rate limit"))?;
            let period = u32::try_from(period).map_err(|_| corrupt("rate limit period"))?;
            RateLimit::new(limit, period)
                .map(Some)
                .ok_or_else(|| corrupt("rate limit out of range"))
        }
        _ => Err(corrupt("rate limit set in part")),
    }
}

/// Credits as their columns, but for the refill time, whose representation is the dialect's:
/// `credits_remaining`, `credits_refill_amount`, `credits_refill_every_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreditColumns {
    /// `credits_remaining`.
    pub remaining: Option<i64>,
    /// `credits_refill_amount`.
    pub refill_amount: Option<i64>,
    /// `credits_refill_every_secs`.
    pub refill_every_secs: Option<i64>,
    /// `credits_refilled_at`, in the core's type (each store converts it).
    pub refilled_at: Option<OffsetDateTime>,
}

impl CreditColumns {
    /// The columns of `credits` (all `NULL` for none). Counts above `i64::MAX` cannot occur:
    /// the core bounds them by [`MAX_CREDITS`] (10¹²); one that did would be stored as
    /// `i64::MAX` and read back as a corrupt row, never as fewer credits.
    pub fn of(credits: Option<&Credits>) -> Self {
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        match credits {
            None => Self::default(),
            Some(c) => Self {
                remaining: Some(big(c.remaining)),
                refill_amount: c.refill.map(|r| big(r.amount)),
                refill_every_secs: c.refill.map(|r| big(r.every_secs)),
                refilled_at: Some(c.refilled_at),
            },
        }
    }

    /// The credits these columns hold: all `NULL` is none; `remaining` without `refilled_at`
    /// (or the reverse), half a refill, a refill without credits, or values out of the core's
    /// ranges is a corrupt row.
    pub fn credits(self) -> Result<Option<Credits>, StoreError> {
        let refill = match (self.refill_amount, self.refill_every_secs) {
            (None, None) => None,
            (Some(amount), Some(every)) => {
                let amount = u64::try_from(amount).map_err(|_| corrupt("credit refill amount"))?;
                let every = u64::try_from(every).map_err(|_| corrupt("credit refill interval"))?;
                Some(
                    Refill::new(amount, every)
                        .ok_or_else(|| corrupt("credit refill out of range"))?,
                )
            }
            _ => return Err(corrupt("credit refill set in part")),
        };
        match (self.remaining, self.refilled_at) {
            (None, None) if refill.is_none() => Ok(None),
            (Some(remaining), Some(refilled_at)) => {
                let remaining = u64::try_from(remaining)
                    .ok()
                    .filter(|n| *n <= MAX_CREDITS)
                    .ok_or_else(|| corrupt("credits out of range"))?;
                Ok(Some(Credits {
                    remaining,
                    refill,
                    refilled_at,
                }))
            }
            _ => Err(corrupt("credits set in part")),
        }
    }
}
