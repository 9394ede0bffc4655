//! Two real instances, A and B, on one PostgreSQL that restarts under them: keys B has just
//! accepted are revoked through A the moment the database is back (while B's change-feed
//! listener is still reconnecting), and B must refuse each within the cache's ceiling, measured
//! from A's answer. Once after a clean restart (`pg_ctl stop -m fast`, what a service manager's
//! restart does) and once after a crash (`-m immediate`).
//!
//! The database is a private PostgreSQL (`common::private_pg`) on a port of its own: restarting
//! the machine's shared server would break every other suite using it at the time, in this
//! checkout and in others. A binary of its own all the same, so nothing else of this crate's
//! tests runs beside it.

mod common;

use std::time::{Duration, Instant};

use common::{PgDatabase, api::*, private_pg::PrivatePostgres, propagation::*};
use reqwest::StatusCode;

/// Keys revoked right after each restart.
const KEYS_PER_RESTART: usize = 20;

/// How long A may take to answer again once the database is back (its pool reconnects).
const RECONNECT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
enum Restart {
    Fast,
    Immediate,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_right_after_a_postgres_restart_is_refused_by_b_within_the_bound() {
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let db = PgDatabase::create(&pg.url()).await;
    let watched = postgres_store_is_watched(&db.url).await;
    let pair = Pair::start(&db.url);
    let (a, b) = (pair.a.base.as_str(), pair.b.base.as_str());
    let http = client();
    let jwt = login(&http, a).await;
    let mut pg = Some(pg);
    for restart in [Restart::Fast, Restart::Immediate] {
        let mut keys = Vec::with_capacity(KEYS_PER_RESTART);
        for n in 0..KEYS_PER_RESTART {
            let key = create_key(&http, a, &jwt, &format!("{restart:?} {n}")).await;
            warm(&http, b, &key.key, &format!("{restart:?} {n}")).await;
            keys.push(key);
        }
        if watched {
            assert!(
                await_listeners(&db.url, 2, DEFAULT_CEILING).await,
                "{restart:?}: both instances listen before the restart"
            );
        }

        let server = pg.take().expect("the private PostgreSQL");
        let restarted = Instant::now();
        let server = tokio::task::spawn_blocking(move || {
            match restart {
                Restart::Fast => server.stop_fast(),
                Restart::Immediate => server.stop_immediate(),
            }
            server.start_again();
            server
        })
        .await
        .expect("the restart runs");
        pg = Some(server);
        let back = restarted.elapsed();

        let mut times = Vec::with_capacity(KEYS_PER_RESTART);
        let mut retried = 0;
        for key in &keys {
            let what = format!("{restart:?} restart, key {}", key.id);
            let deadline = Instant::now() + RECONNECT;
            loop {
                match revoke_key(&http, a, &jwt, &key.id).await {
                    StatusCode::NO_CONTENT => break,
                    StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                        retried += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    other => panic!("{what}: the revoke through A answered {other}"),
                }
            }
            let since = Instant::now();
            // B may still be reconnecting: 503 is a refusal too, but it must answer 401 within
            // the ceiling.
            times.push(
                until_status(
                    &http,
                    b,
                    &key.key,
                    StatusCode::UNAUTHORIZED,
                    &[StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE],
                    since,
                    &what,
                )
                .await,
            );
        }
        let figures = Figures::of(&times);
        report(&format!(
            "{restart:?} restart of Postgres ({:.1} s down and up), then revocation through A \
             → first 401 on B: {figures} (A answered 503 {retried} times first; ceiling \
             {DEFAULT_CEILING:?}, change feed {})",
            back.as_secs_f64(),
            if watched { "on" } else { "absent" }
        ));
        assert!(figures.max <= DEFAULT_CEILING, "{restart:?}: {figures}");
        // Every revoked key stays refused, on both.
        for key in &keys {
            for base in [a, b] {
                assert_eq!(
                    agents_status(&http, base, &key.key).await,
                    StatusCode::UNAUTHORIZED,
                    "{restart:?}: a key revoked after the restart works again"
                );
            }
        }
    }
    assert_no_panic(&pair.a.kill());
    assert_no_panic(&pair.b.kill());
    // The database goes before the server it lives on.
    drop(db);
    drop(pg);
}
