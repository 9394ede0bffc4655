//! Two real instances, A and B, on one Postgres database with the default configuration
//! (verification cache on, ceiling 5 seconds): how long a change made through A takes to be
//! honoured by B, measured from A's answer to B's first refusal, with B polled back to back.
//!
//! * 1,000 revocations: p50, p99 and max printed; max within the ceiling, p99 within 150 ms
//!   (the change feed's job), and no revoked key is ever accepted by B again;
//! * B's listener connection killed (`pg_terminate_backend`) and a key revoked in the gap:
//!   refused within the ceiling all the same;
//! * a rotation without grace (the old value refused, the new one accepted), a user disabled
//!   and enabled again and a user's scopes narrowed and restored through the admin CLI.
//!
//! A restart of PostgreSQL under both instances is `two_instances_restart.rs`, a binary of its
//! own. The scenarios here run one at a time: they are timings.
//!
//! Each figure is printed as a `PROPAGATION:` line (visible in the test output with
//! `--nocapture`, and on stderr either way).

mod common;

use std::time::{Duration, Instant};

use common::{PgDatabase, api::*, postgres_admin_url, propagation::*};
use reqwest::StatusCode;

/// The change feed's bound, asserted on the 99th percentile. Measured: a few ms on a quiet
/// machine, 59-117 ms at load average 5-6 on 2 cores (parallel builds); without a feed a
/// change waits up to the 5 s ceiling. The margin keeps the assertion about the feed, not
/// about the machine's load.
const FEED_P99: Duration = Duration::from_millis(150);

const REVOCATIONS: usize = 1000;
const ROTATIONS: usize = 100;
const LISTENER_KILLS: usize = 20;
const CLI_ROUNDS: usize = 5;

/// One scenario at a time: two of them side by side on two cores would measure each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh database, and whether the Postgres store of this build watches it for changes;
/// `None` after the loud skip when Postgres is unreachable (a failure with
/// `NEXORA_REQUIRE_POSTGRES=1`).
async fn fresh_database() -> Option<(PgDatabase, bool)> {
    let admin = postgres_admin_url().await?;
    let db = PgDatabase::create(&admin).await;
    let watched = postgres_store_is_watched(&db.url).await;
    if !watched {
        report(
            "the Postgres store of this build has no change feed: nothing of it is cached, so \
             every request reads the database and propagation is immediate",
        );
    }
    Some((db, watched))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_through_a_are_refused_by_b_within_the_bound() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((db, watched)) = fresh_database().await else {
        return;
    };
    let pair = Pair::start(&db.url);
    let (a, b) = (pair.a.base.as_str(), pair.b.base.as_str());
    let http = client();
    let jwt = login(&http, a).await;
    let mut times = Vec::with_capacity(REVOCATIONS);
    let mut revoked = Vec::with_capacity(REVOCATIONS);
    let started = Instant::now();
    for round in 0..REVOCATIONS {
        let what = format!("revocation {round}");
        let key = create_key(&http, a, &jwt, &what).await;
        warm(&http, b, &key.key, &what).await;
        assert_eq!(
            revoke_key(&http, a, &jwt, &key.id).await,
            StatusCode::NO_CONTENT,
            "{what}"
        );
        let since = Instant::now();
        times.push(
            until_status(
                &http,
                b,
                &key.key,
                StatusCode::UNAUTHORIZED,
                &[StatusCode::OK],
                since,
                &what,
            )
            .await,
        );
        revoked.push(key.key);
    }
    let figures = Figures::of(&times);
    report(&format!(
        "revocation through A → first 401 on B: {figures} (ceiling {DEFAULT_CEILING:?}, change \
         feed {}; {REVOCATIONS} rounds in {:.1} s)",
        if watched { "on" } else { "absent" },
        started.elapsed().as_secs_f64()
    ));
    assert!(figures.max <= DEFAULT_CEILING, "{figures}");
    assert!(figures.p99 <= FEED_P99, "{figures}");

    // Past the ceiling, no revoked key works on B again (a late fill of the cache must not
    // bring one back), nor on A.
    let resurrected: Vec<usize> = {
        let mut found = Vec::new();
        for (round, key) in revoked.iter().enumerate() {
            for base in [a, b] {
                if agents_status(&http, base, key).await != StatusCode::UNAUTHORIZED {
                    found.push(round);
                }
            }
        }
        found
    };
    assert!(
        resurrected.is_empty(),
        "revoked keys accepted again: rounds {resurrected:?}"
    );
    assert_no_panic(&pair.a.kill());
    assert_no_panic(&pair.b.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_in_the_gap_of_a_killed_listener_is_refused_within_the_bound() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((db, watched)) = fresh_database().await else {
        return;
    };
    let pair = Pair::start(&db.url);
    let (a, b) = (pair.a.base.as_str(), pair.b.base.as_str());
    let http = client();
    let jwt = login(&http, a).await;
    let mut times = Vec::with_capacity(LISTENER_KILLS);
    let mut killed_total = 0;
    for round in 0..LISTENER_KILLS {
        let what = format!("listener kill {round}");
        let key = create_key(&http, a, &jwt, &what).await;
        warm(&http, b, &key.key, &what).await;
        if watched {
            // Both instances listen; wait for both (they reconnect after the previous kill).
            assert!(
                await_listeners(&db.url, 2, DEFAULT_CEILING).await,
                "{what}: the instances' listener connections did not come (back) within the \
                 ceiling; {} open",
                listeners(&db.url).await
            );
        }
        // Every listener on the database: B's (and A's, which a revocation through A does not
        // need: A forgets its own writes).
        let killed = kill_listeners(&db.url).await;
        if watched {
            assert!(killed >= 2, "{what}: {killed} listener connections killed");
        } else {
            assert_eq!(killed, 0, "{what}: a listener without a change feed?");
        }
        killed_total += killed;
        assert_eq!(
            revoke_key(&http, a, &jwt, &key.id).await,
            StatusCode::NO_CONTENT,
            "{what}"
        );
        let since = Instant::now();
        times.push(
            until_status(
                &http,
                b,
                &key.key,
                StatusCode::UNAUTHORIZED,
                &[StatusCode::OK],
                since,
                &what,
            )
            .await,
        );
    }
    let figures = Figures::of(&times);
    report(&format!(
        "revocation through A while B's listener is down → first 401 on B: {figures} \
         ({killed_total} listener connections killed; ceiling {DEFAULT_CEILING:?})"
    ));
    assert!(figures.max <= DEFAULT_CEILING, "{figures}");
    assert_no_panic(&pair.a.kill());
    assert_no_panic(&pair.b.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_disabling_and_narrowing_reach_b_within_the_bound() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((db, _watched)) = fresh_database().await else {
        return;
    };
    let pair = Pair::start(&db.url);
    let (a, b) = (pair.a.base.as_str(), pair.b.base.as_str());
    let http = client();
    let jwt = login(&http, a).await;
    let (ok, unauthorized, forbidden) = (
        StatusCode::OK,
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
    );

    // Rotation without grace through A: B refuses the old value and accepts the new one.
    let (mut old_refused, mut new_accepted) = (Vec::new(), Vec::new());
    for round in 0..ROTATIONS {
        let what = format!("rotation {round}");
        let key = create_key(&http, a, &jwt, &what).await;
        warm(&http, b, &key.key, &what).await;
        let rotated = rotate_key(&http, a, &jwt, &key.id).await;
        let since = Instant::now();
        old_refused.push(until_status(&http, b, &key.key, unauthorized, &[ok], since, &what).await);
        // The new value may be refused while B still holds the old record: within the bound.
        new_accepted
            .push(until_status(&http, b, &rotated.key, ok, &[unauthorized], since, &what).await);
    }
    let old_refused = Figures::of(&old_refused);
    let new_accepted = Figures::of(&new_accepted);
    report(&format!(
        "rotation through A → old value's first 401 on B: {old_refused}; new value's first 200 \
         on B: {new_accepted}"
    ));
    for figures in [old_refused, new_accepted] {
        assert!(figures.max <= DEFAULT_CEILING, "{figures}");
        assert!(figures.p99 <= FEED_P99, "{figures}");
    }

    // The user disabled, enabled, narrowed and restored by the admin CLI (a third process on
    // the database): B follows with a key and with an access token.
    let key = create_key(&http, a, &jwt, "user changes").await;
    let mut cli_times: Vec<(&str, Duration)> = Vec::new();
    for round in 0..CLI_ROUNDS {
        for (action, args, want, before) in [
            ("disable", &[][..], unauthorized, ok),
            ("enable", &[][..], ok, unauthorized),
            (
                "set-scopes",
                &["--scopes", "keys:manage"][..],
                forbidden,
                ok,
            ),
            (
                "set-scopes",
                &["--scopes", "agents:read,keys:manage"][..],
                ok,
                forbidden,
            ),
        ] {
            for token in [&key.key, &jwt] {
                assert_eq!(
                    agents_status(&http, b, token).await,
                    before,
                    "{action} {args:?}, round {round}: B before the change"
                );
            }
            user_cli(pair.cli_dir(), &db.url, action, args);
            let since = Instant::now();
            for token in [&key.key, &jwt] {
                let what = format!("{action} {args:?}, round {round}");
                let took = until_status(&http, b, token, want, &[before], since, &what).await;
                cli_times.push((action, took));
            }
        }
    }
    let all: Vec<Duration> = cli_times.iter().map(|(_, d)| *d).collect();
    let figures = Figures::of(&all);
    report(&format!(
        "CLI disable/enable/set-scopes → B follows (key and token): {figures}, measured from the \
         CLI's exit"
    ));
    assert!(figures.max <= DEFAULT_CEILING, "{figures}");
    // Few samples: the median is held to the feed's bound, the rest to the ceiling.
    assert!(figures.p50 <= FEED_P99, "{figures}");
    assert_no_panic(&pair.a.kill());
    assert_no_panic(&pair.b.kill());
}
