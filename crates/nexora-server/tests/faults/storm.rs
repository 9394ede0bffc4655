//! 1,000 parallel creates with revocations (SQLite and Postgres).

use std::{collections::HashSet, time::Instant};

use futures_util::{StreamExt, stream};
use reqwest::StatusCode;

use super::support::*;
use crate::common::{PgDatabase, postgres_admin_url};

/// 1,000 keys created in parallel, each used once and every other one then revoked (1,500
/// create/revoke operations, 32 at a time): ids unique, every revocation holds, every other
/// key works.
async fn create_revoke_storm(base: &str, jwt: &str, store: &str) {
    let http = client();
    let started = Instant::now();
    let results: Vec<(usize, Created)> = stream::iter(0..1000)
        .map(|i| {
            let http = &http;
            async move {
                let created = create_key(http, base, jwt, &format!("storm {i}")).await;
                // Used once before anything else, so whatever the server may keep about a key
                // it has seen is in place when the revocation comes.
                assert_eq!(
                    agents_status(http, base, &created.key).await,
                    StatusCode::OK,
                    "fresh key storm {i}"
                );
                if i % 2 == 0 {
                    assert_eq!(
                        revoke_key(http, base, jwt, &created.id).await,
                        StatusCode::NO_CONTENT,
                        "revoke storm {i}"
                    );
                }
                (i, created)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let storm = started.elapsed();
    let ids: HashSet<&str> = results.iter().map(|(_, c)| c.id.as_str()).collect();
    let keys: HashSet<&str> = results.iter().map(|(_, c)| c.key.as_str()).collect();
    assert_eq!(ids.len(), 1000, "duplicate key ids on {store}");
    assert_eq!(keys.len(), 1000, "duplicate keys on {store}");

    let wrong: Vec<String> = stream::iter(&results)
        .map(|(i, created)| {
            let http = &http;
            async move {
                let expected = if i % 2 == 0 {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                };
                let status = agents_status(http, base, &created.key).await;
                (status != expected).then(|| format!("storm {i}: {status}, expected {expected}"))
            }
        })
        .buffer_unordered(32)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(wrong.is_empty(), "on {store}: {}", first_of(&wrong));
    let listed = list_keys(&http, base, jwt).await;
    let live: HashSet<&str> = results
        .iter()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, c)| c.id.as_str())
        .collect();
    let listed_ids: HashSet<&str> = listed.keys().map(String::as_str).collect();
    assert_eq!(
        listed_ids, live,
        "listed keys on {store}: exactly the unrevoked ones"
    );
    report(&format!(
        "storm on {store}: 1,000 creates + 500 revokes in {storm:?}; 1,000 unique ids; \
         500 revoked keys 401, 500 live keys 200"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_create_and_revoke_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &sqlite_url(dir.path()), true);
    let jwt = login(&client(), &server.base).await;
    create_revoke_storm(&server.base, &jwt, "SQLite").await;
    assert_no_panic(&server.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_create_and_revoke_on_postgres() {
    let Some(admin) = postgres_admin_url().await else {
        return;
    };
    let db = PgDatabase::create(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &db.url, true);
    let jwt = login(&client(), &server.base).await;
    create_revoke_storm(&server.base, &jwt, "Postgres").await;
    assert_no_panic(&server.kill());
}
