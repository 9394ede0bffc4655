//! The IETF `RateLimit` headers of a request's limits ([`Usage`]).
//!
//! Every response to a request whose credential has limits carries, in the syntax of
//! draft-ietf-httpapi-ratelimit-headers-10:
//!
//! * `RateLimit-Policy`: one item per rate limit that applied, `"key";q=100;w=60` (the key's)
//!   and `"owner";q=1000;w=60` (its owner's, shared by all of the owner's credentials);
//! * `RateLimit`: where each stands, `"key";r=42;t=18` — `r` requests left now, `t` seconds
//!   until fully replenished — and, for a key with credits, `"credits";r=950` (credits left as
//!   this instance sees them; they have no window, so no policy item).
//!
//! A refusal is 429: `{"detail": "Rate limit exceeded"}` with `Retry-After` (the exact wait),
//! or `{"detail": "API key usage limit exceeded"}` with `Retry-After` only when a refill is
//! due. A request a limit refuses never reaches the handler.

use std::fmt::Write;

use nexora_auth::Usage;

/// The `RateLimit-Policy` and `RateLimit` header values of a request's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHeaders {
    /// The `RateLimit-Policy` value, when a rate limit applied.
    pub policy: Option<String>,
    /// The `RateLimit` value.
    pub state: String,
}

impl LimitHeaders {
    /// The headers as (lower-case name, value) pairs: `ratelimit-policy` (when a rate limit
    /// applied) and `ratelimit`.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.policy
            .as_deref()
            .map(|p| ("ratelimit-policy", p))
            .into_iter()
            .chain([("ratelimit", self.state.as_str())])
    }

    /// The headers of `usage`; `None` when no limit applied.
    pub fn of(usage: &Usage) -> Option<Self> {
        if usage.is_empty() {
            return None;
        }
        let mut policy = String::new();
        let mut state = String::new();
        for rate in usage.rates() {
            let sep = if policy.is_empty() { "" } else { ", " };
            // Writing to a String cannot fail.
            let _ = write!(
                policy,
                "{sep}\"{}\";q={};w={}",
                rate.policy, rate.rate.limit, rate.rate.period_secs
            );
            let sep = if state.is_empty() { "" } else { ", " };
            let _ = write!(
                state,
                "{sep}\"{}\";r={};t={}",
                rate.policy, rate.remaining, rate.reset_secs
            );
        }
        if let Some(left) = usage.credits_remaining {
            let sep = if state.is_empty() { "" } else { ", " };
            let _ = write!(state, "{sep}\"credits\";r={left}");
        }
        Some(Self {
            policy: (!policy.is_empty()).then_some(policy),
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use nexora_auth::{RateLimit, limits::RateStatus};

    use super::*;

    #[test]
    fn draft_10_syntax() {
        let usage = Usage {
            key: Some(RateStatus {
                policy: "key",
                rate: RateLimit::new(10, 60).unwrap(),
                remaining: 3,
                reset_secs: 42,
            }),
            owner: Some(RateStatus {
                policy: "owner",
                rate: RateLimit::new(100, 3600).unwrap(),
                remaining: 90,
                reset_secs: 360,
            }),
            credits_remaining: Some(7),
        };
        let h = LimitHeaders::of(&usage).unwrap();
        assert_eq!(
            h.policy.as_deref(),
            Some(r#""key";q=10;w=60, "owner";q=100;w=3600"#)
        );
        assert_eq!(
            h.state,
            r#""key";r=3;t=42, "owner";r=90;t=360, "credits";r=7"#
        );
        assert_eq!(LimitHeaders::of(&Usage::default()), None);
        let credits_only = LimitHeaders::of(&Usage {
            credits_remaining: Some(0),
            ..Usage::default()
        })
        .unwrap();
        assert_eq!(
            (credits_only.policy, credits_only.state.as_str()),
            (None, r#""credits";r=0"#)
        );
    }
}
