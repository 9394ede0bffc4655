//! The contracts of a [`LimitBackend`], one `pub async fn` each, run on every backend by
//! [`limit_backend_conformance!`](crate::limit_backend_conformance).
//!
//! Each contract drives the backend with the instants it passes to
//! [`LimitBackend::check`]: a backend that can take its time elsewhere (Redis's clock) runs the
//! suite configured to use the caller's. Each contract uses subjects of its own (fresh key and
//! owner ids), so contracts may share one backend; a backend on a shared server should still
//! give each test a namespace of its own (a random key prefix).
//!
//! The reference is [`gcra::decide`] over one state per subject, combined all or nothing: the
//! same sequence of checks must give the same [`RateOutcome`], field for field.

use std::{collections::HashMap, sync::Arc};

use nexora_auth::{
    KeyId, LimitBackend, OwnerId, RateLimit,
    limits::{GcraState, LimitSubject, RateCheck, RateOutcome, gcra},
};
use time::OffsetDateTime;

/// The names of the contracts, in the order the macro runs them.
pub fn contracts() -> &'static [&'static str] {
    &[
        "follows_gcra_decide",
        "a_burst_of_exactly_the_limit_passes",
        "all_or_nothing_across_subjects",
        "a_steady_stream_at_the_rate_is_never_refused",
        "a_changed_limit_keeps_its_counter",
    ]
}

/// A fixed instant to start from (whole microseconds).
fn start() -> OffsetDateTime {
    // 1.8 × 10⁹ seconds is a valid timestamp: the conversion cannot fail.
    OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a valid timestamp")
}

fn rate(limit: u32, period_secs: u32) -> RateLimit {
    // The contracts use small limits and periods, all in range.
    RateLimit::new(limit, period_secs).expect("a rate in range")
}

fn key_subject() -> LimitSubject {
    LimitSubject::Key(KeyId::new_random())
}

fn owner_subject() -> LimitSubject {
    LimitSubject::Owner(OwnerId::new(format!(
        "owner-{}",
        uuid::Uuid::new_v4().simple()
    )))
}

async fn check(
    backend: &dyn LimitBackend,
    checks: &[RateCheck],
    cost: u32,
    now: OffsetDateTime,
    contract: &str,
) -> RateOutcome {
    match backend.check(checks, cost, now).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("{contract}: the backend failed: {e}"),
    }
}

/// The reference: [`gcra::decide`] per subject, all or nothing, as
/// [`InProcessLimits`](nexora_auth::InProcessLimits) documents it.
#[derive(Default)]
struct Reference {
    states: HashMap<LimitSubject, GcraState>,
}

impl Reference {
    fn check(&mut self, checks: &[RateCheck], cost: u32, now: OffsetDateTime) -> RateOutcome {
        let now_us = nexora_auth::limits::unix_micros(now);
        let decisions: Vec<_> = checks
            .iter()
            .map(|c| {
                let state = self.states.get(&c.subject).copied().unwrap_or_default();
                gcra::decide(state, now_us, c.rate, cost)
            })
            .collect();
        if cost > 0 && decisions.iter().all(|d| d.allowed) {
            for (c, d) in checks.iter().zip(&decisions) {
                self.states.insert(c.subject.clone(), d.state);
            }
        }
        RateOutcome::from_decisions(checks, &decisions)
    }
}

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

/// 600 checks of costs 0 to 3 on two keys and their shared owner, at gaps from 0 to about 3
/// seconds (many bursts, many partial drains), give exactly the reference's outcomes: every
/// `allowed`, `retry_after_secs`, `remaining` and `reset_secs`.
pub async fn follows_gcra_decide(backend: Arc<dyn LimitBackend>) {
    let contract = "follows_gcra_decide";
    let a = RateCheck {
        subject: key_subject(),
        rate: rate(10, 60),
    };
    let b = RateCheck {
        subject: key_subject(),
        rate: rate(3, 10),
    };
    let owner = RateCheck {
        subject: owner_subject(),
        rate: rate(12, 30),
    };
    let sets = [
        vec![a.clone()],
        vec![b.clone()],
        vec![a, owner.clone()],
        vec![b, owner],
    ];
    let mut reference = Reference::default();
    let mut steps = Steps(0x9e37_79b9_7f4a_7c15);
    let mut now = start();
    let mut allowed = 0;
    for step in 0..600 {
        // Mostly bursts (no gap), sometimes a pause of up to ~3 s, in whole microseconds.
        let gap_us = match steps.next(4) {
            0 | 1 => 0,
            2 => steps.next(500_000),
            _ => steps.next(3_000_000),
        };
        now += time::Duration::microseconds(i64::try_from(gap_us).unwrap_or(0));
        let set = &sets[usize::try_from(steps.next(4)).unwrap_or(0)];
        let cost = u32::try_from(steps.next(4)).unwrap_or(1);
        let want = reference.check(set, cost, now);
        let got = check(&*backend, set, cost, now, contract).await;
        assert_eq!(
            got,
            want,
            "{contract}: step {step} (cost {cost} on {} limits) differs from gcra::decide",
            set.len()
        );
        allowed += usize::from(want.allowed && cost > 0);
    }
    assert!(
        allowed > 50,
        "{contract}: the sequence must exercise both outcomes"
    );
}

/// A subject keeps its counter when its limit changes: lowered under what was counted, it is
/// full (refused with one request's wait at the new rate, not in debt beyond the new limit);
/// raised again, the requests counted so far still count.
pub async fn a_changed_limit_keeps_its_counter(backend: Arc<dyn LimitBackend>) {
    let contract = "a_changed_limit_keeps_its_counter";
    let subject = key_subject();
    let at = |limit| {
        [RateCheck {
            subject: subject.clone(),
            rate: rate(limit, 60),
        }]
    };
    let now = start();
    for _ in 0..20 {
        assert!(
            check(&*backend, &at(20), 1, now, contract).await.allowed,
            "{contract}"
        );
    }
    let lowered = check(&*backend, &at(10), 1, now, contract).await;
    assert!(
        !lowered.allowed,
        "{contract}: 20 counted, the limit is now 10"
    );
    assert_eq!(
        lowered.retry_after_secs, 6,
        "{contract}: full, not 10 requests in debt"
    );
    assert_eq!(lowered.statuses[0].remaining, 0, "{contract}");
    let raised = check(&*backend, &at(30), 1, now, contract).await;
    assert!(raised.allowed, "{contract}");
    assert_eq!(
        raised.statuses[0].remaining, 9,
        "{contract}: 21 of 30 counted"
    );
}

/// From a drained state exactly `limit` requests pass at one instant; the next is refused
/// with the exact wait, and a refusal charges nothing.
pub async fn a_burst_of_exactly_the_limit_passes(backend: Arc<dyn LimitBackend>) {
    let contract = "a_burst_of_exactly_the_limit_passes";
    let limited = [RateCheck {
        subject: key_subject(),
        rate: rate(10, 60),
    }];
    let now = start();
    for i in 0..10u64 {
        let outcome = check(&*backend, &limited, 1, now, contract).await;
        assert!(outcome.allowed, "{contract}: request {i} of the burst");
        assert_eq!(outcome.statuses[0].remaining, 9 - i, "{contract}");
    }
    for _ in 0..3 {
        let refused = check(&*backend, &limited, 1, now, contract).await;
        assert!(!refused.allowed, "{contract}: request 11 passed");
        assert_eq!(refused.retry_after_secs, 6, "{contract}: 60 s / 10");
    }
    let later = now + time::Duration::seconds(6);
    assert!(
        check(&*backend, &limited, 1, later, contract).await.allowed,
        "{contract}: one request has drained after 6 s (refusals charged nothing)"
    );
}

/// A request refused by one of its limits charges none of them: the other limit's budget is
/// intact afterwards.
pub async fn all_or_nothing_across_subjects(backend: Arc<dyn LimitBackend>) {
    let contract = "all_or_nothing_across_subjects";
    let key = RateCheck {
        subject: key_subject(),
        rate: rate(2, 60),
    };
    let owner = RateCheck {
        subject: owner_subject(),
        rate: rate(5, 60),
    };
    let both = [key.clone(), owner.clone()];
    let now = start();
    for _ in 0..2 {
        assert!(check(&*backend, &both, 1, now, contract).await.allowed);
    }
    for _ in 0..10 {
        let refused = check(&*backend, &both, 1, now, contract).await;
        assert!(!refused.allowed, "{contract}: the key's limit is spent");
    }
    let owner_only = [owner];
    for i in 0..3 {
        assert!(
            check(&*backend, &owner_only, 1, now, contract)
                .await
                .allowed,
            "{contract}: the owner's request {i} (the refusals charged nothing)"
        );
    }
    assert!(
        !check(&*backend, &owner_only, 1, now, contract)
            .await
            .allowed,
        "{contract}: the owner's sixth request"
    );
}

/// Requests spaced exactly `period / limit` apart, for ten periods, are never refused, even
/// after a full burst.
pub async fn a_steady_stream_at_the_rate_is_never_refused(backend: Arc<dyn LimitBackend>) {
    let contract = "a_steady_stream_at_the_rate_is_never_refused";
    let limited = [RateCheck {
        subject: key_subject(),
        rate: rate(7, 10),
    }];
    let mut now = start();
    for _ in 0..7 {
        assert!(check(&*backend, &limited, 1, now, contract).await.allowed);
    }
    // 10 s / 7, rounded up to whole microseconds: never faster than the rate.
    let gap = time::Duration::microseconds(1_428_572);
    for i in 0..70 {
        now += gap;
        assert!(
            check(&*backend, &limited, 1, now, contract).await.allowed,
            "{contract}: request {i} of the stream refused"
        );
    }
}

/// Generates one `#[test]` per [`LimitBackend`] contract ([`contracts`]), each on the
/// backend of a fresh [`Fixture`](crate::Fixture).
///
/// ```
/// nexora_auth_testkit::limit_backend_conformance!(async {
///     nexora_auth_testkit::Fixture::new(nexora_auth::InProcessLimits::new())
/// });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! limit_backend_conformance {
    ($factory:expr) => {
        $crate::limit_backend_conformance!(@each $factory;
            follows_gcra_decide,
            a_burst_of_exactly_the_limit_passes,
            all_or_nothing_across_subjects,
            a_steady_stream_at_the_rate_is_never_refused,
            a_changed_limit_keeps_its_counter);
    };
    (@each $factory:expr; $($contract:ident),+) => {
        $(
            #[test]
            fn $contract() {
                $crate::run(async {
                    let fixture: $crate::Fixture<_> = ($factory).await;
                    let Some((backend, guard)) = fixture.into_parts() else { return };
                    $crate::limit_backend::$contract(::std::sync::Arc::new(backend)).await;
                    drop(guard);
                });
            }
        )+
    };
}
