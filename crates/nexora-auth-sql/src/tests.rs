use nexora_auth::{StoreError, store::RevokeOutcome};
use proptest::prelude::*;
use time::{OffsetDateTime, macros::datetime};

use super::*;

/// Any time `OffsetDateTime` can hold, to the nanosecond.
fn any_time() -> impl Strategy<Value = OffsetDateTime> {
    let min = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT).unix_timestamp_nanos();
    let max = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX).unix_timestamp_nanos();
    (min..=max).prop_map(|n| OffsetDateTime::from_unix_timestamp_nanos(n).expect("in range"))
}

proptest! {
    /// The two representations of the one precision agree: integer microseconds (SQLite) read
    /// back as the truncated time (what Postgres keeps), and truncation loses under 1 µs.
    #[test]
    fn micros_round_trip_to_the_truncated_time(t in any_time()) {
        let truncated = truncate_to_micros(t);
        prop_assert_eq!(from_unix_micros(unix_micros(t)).expect("in range"), truncated);
        prop_assert_eq!(unix_micros(truncated), unix_micros(t));
        prop_assert!(truncated <= t);
        prop_assert!(t - truncated < time::Duration::MICROSECOND);
    }

    /// Truncation keeps order, so comparing truncated times never inverts a comparison.
    #[test]
    fn truncation_keeps_order(a in any_time(), b in any_time()) {
        prop_assert!(a > b || truncate_to_micros(a) <= truncate_to_micros(b));
    }
}

#[test]
fn micros_round_down_before_the_epoch() {
    let t = datetime!(1969-12-31 23:59:59.999_999_5 UTC);
    assert_eq!(unix_micros(t), -1);
    assert_eq!(
        truncate_to_micros(t),
        datetime!(1969-12-31 23:59:59.999_999 UTC)
    );
}

#[test]
fn a_timestamp_out_of_range_is_a_corrupt_row_not_a_missing_one() {
    assert!(matches!(
        from_unix_micros(i64::MAX),
        Err(StoreError::Unavailable { .. })
    ));
}

#[test]
fn expiry_is_compared_at_microsecond_precision() {
    let expires = datetime!(2030-01-01 00:00:00 UTC);
    let within_the_microsecond = datetime!(2030-01-01 00:00:00.000_000_9 UTC);
    let before = datetime!(2029-12-31 23:59:59.999_999_9 UTC);
    assert!(key_state(false, Some(expires), within_the_microsecond).expired);
    assert!(!key_state(false, Some(expires), before).expired);
    assert!(!key_state(true, None, within_the_microsecond).expired);
    assert!(key_state(true, None, before).revoked);
}

#[test]
fn revoke_outcome_asks_whether_the_key_exists_only_when_nothing_changed() {
    let run = |updated, exists: Result<bool, StoreError>| {
        let asked = std::cell::Cell::new(false);
        let outcome = block_on(revoke_outcome(updated, async {
            asked.set(true);
            exists
        }));
        (outcome, asked.get())
    };
    let (outcome, asked) = run(1, Ok(false));
    assert_eq!(outcome.expect("revoked"), RevokeOutcome::Revoked);
    assert!(!asked, "a revoke that changed a row asks nothing more");
    let (outcome, _) = run(0, Ok(true));
    assert_eq!(outcome.expect("outcome"), RevokeOutcome::AlreadyRevoked);
    let (outcome, _) = run(0, Ok(false));
    assert_eq!(outcome.expect("outcome"), RevokeOutcome::NotFound);
    let (outcome, _) = run(0, Err(StoreError::unavailable("down")));
    assert!(matches!(outcome, Err(StoreError::Unavailable { .. })));
}

#[test]
fn insert_results_map_to_store_outcomes() {
    let failed = failed("test", "insert");
    assert!(key_inserted(Ok(1), failed).is_ok());
    assert!(matches!(
        key_inserted(Ok(0), failed),
        Err(StoreError::CreatorRevoked)
    ));
    let down = key_inserted(Err(sqlx::Error::PoolClosed), failed);
    let Err(StoreError::Unavailable { message, .. }) = down else {
        panic!("{down:?}");
    };
    assert_eq!(message, "test: insert failed");
    assert!(user_inserted(Ok(()), |_| true, failed).is_ok());
    assert!(matches!(
        user_inserted(Err(sqlx::Error::PoolTimedOut), |_| true, failed),
        Err(StoreError::Unavailable { .. })
    ));
}

#[test]
fn rows_decode_or_are_corrupt() {
    let good = digest(7, &[1; 32]).expect("digest");
    assert_eq!(good.pepper_version, 7);
    assert!(digest(-1, &[1; 32]).is_err(), "a negative pepper version");
    assert!(digest(1, &[1; 31]).is_err(), "a short digest");
    let until = datetime!(2030-01-01 00:00:00 UTC);
    assert!(
        previous_digest(Some(1), Some(vec![2; 32]), Some(until))
            .expect("decode")
            .is_some()
    );
    assert!(
        previous_digest(Some(1), None, Some(until))
            .expect("decode")
            .is_none(),
        "a partial previous digest is none"
    );
    assert!(scopes(vec!["keys:manage".to_owned()]).is_ok());
    assert!(scopes(vec!["not a scope!".to_owned()]).is_err());
}

#[test]
fn migrations_know_their_newest_version() {
    let table = || "t".to_owned();
    let migrations = Migrations::new(table(), table(), table());
    assert_eq!(migrations.schema_version(), 0);
    let migrations = migrations
        .step(1, "first", table())
        .step(2, "second", table());
    assert_eq!(migrations.schema_version(), 2);
}

#[test]
#[should_panic(expected = "migration 2 is not newer than 2")]
fn migrations_refuse_an_out_of_order_step() {
    let table = || "t".to_owned();
    let _ = Migrations::new(table(), table(), table())
        .step(1, "first", table())
        .step(2, "second", table())
        .step(2, "again", table());
}

/// Runs a future that never waits (the test futures here are ready at once).
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn is_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Unavailable { ref message, .. }) if message.starts_with("corrupt row"))
}

#[test]
fn rate_limits_round_trip_through_their_columns() {
    use nexora_auth::limits::RateLimit;
    for rate in [
        None,
        RateLimit::new(1, 1),
        RateLimit::new(nexora_auth::limits::MAX_RATE_LIMIT, 1),
        RateLimit::new(1, nexora_auth::limits::MAX_PERIOD_SECS),
    ] {
        let (limit, period) = rate_limit_columns(rate);
        assert_eq!(rate_limit(limit, period).expect("valid columns"), rate);
    }
}

#[test]
fn a_rate_limit_no_store_writes_is_a_corrupt_row() {
    for (limit, period) in [
        (Some(10), None),
        (None, Some(60)),
        (Some(0), Some(60)),
        (Some(10), Some(0)),
        (Some(-1), Some(60)),
        (Some(10), Some(86_401)),
        (Some(i64::from(u32::MAX) + 1), Some(1)),
        (Some(100_001), Some(1)),
        (Some(200_000), Some(86_400)),
    ] {
        assert!(
            is_corrupt(rate_limit(limit, period)),
            "({limit:?}, {period:?}) accepted"
        );
    }
}

#[test]
fn credits_round_trip_through_their_columns() {
    use nexora_auth::limits::{Credits, MAX_CREDITS, MAX_REFILL_SECS, Refill};
    let at = datetime!(2030-01-01 12:00:00.123_457 UTC);
    for credits in [
        None,
        Some(Credits {
            remaining: 0,
            refill: None,
            refilled_at: at,
        }),
        Some(Credits {
            remaining: MAX_CREDITS,
            refill: Refill::new(MAX_CREDITS, MAX_REFILL_SECS),
            refilled_at: at,
        }),
    ] {
        let columns = CreditColumns::of(credits.as_ref());
        assert_eq!(columns.credits().expect("valid columns"), credits);
    }
}

#[test]
fn credits_no_store_writes_are_a_corrupt_row() {
    let at = Some(datetime!(2030-01-01 12:00:00 UTC));
    let valid = CreditColumns {
        remaining: Some(5),
        refill_amount: Some(10),
        refill_every_secs: Some(60),
        refilled_at: at,
    };
    assert!(valid.credits().expect("valid").is_some());
    for (what, columns) in [
        (
            "no refill time",
            CreditColumns {
                refilled_at: None,
                ..valid
            },
        ),
        (
            "a refill time alone",
            CreditColumns {
                refilled_at: at,
                ..CreditColumns::default()
            },
        ),
        (
            "a refill without credits",
            CreditColumns {
                remaining: None,
                refilled_at: None,
                ..valid
            },
        ),
        (
            "half a refill",
            CreditColumns {
                refill_every_secs: None,
                ..valid
            },
        ),
        (
            "negative credits",
            CreditColumns {
                remaining: Some(-1),
                ..valid
            },
        ),
        (
            "too many credits",
            CreditColumns {
                remaining: Some(1_000_000_000_001),
                ..valid
            },
        ),
        (
            "a zero refill",
            CreditColumns {
                refill_amount: Some(0),
                ..valid
            },
        ),
        (
            "a zero interval",
            CreditColumns {
                refill_every_secs: Some(0),
                ..valid
            },
        ),
        (
            "a negative interval",
            CreditColumns {
                refill_every_secs: Some(-60),
                ..valid
            },
        ),
    ] {
        assert!(is_corrupt(columns.credits()), "{what} accepted");
    }
}
