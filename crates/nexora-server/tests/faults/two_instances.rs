//! Two instances on one Postgres: a revocation through one is seen by the other at once, and so
//! are a user's disabling, re-enabling, narrowing and deletion and a cascading revoke.

use reqwest::{Client, StatusCode};
use serde_json::json;

use super::support::*;
use crate::common::{PgDatabase, Server, cli, postgres_admin_url};

/// Two servers on one fresh Postgres database, the test user created through the first.
struct TwoInstances {
    db: PgDatabase,
    a: Server,
    b: Server,
    dir_a: tempfile::TempDir,
    _dir_b: tempfile::TempDir,
}

/// [`TwoInstances`], or `None` after the loud skip when Postgres is unreachable.
async fn two_instances() -> Option<TwoInstances> {
    let admin = postgres_admin_url().await?;
    let db = PgDatabase::create(&admin).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(dir_a.path(), &db.url, true);
    let b = start(dir_b.path(), &db.url, false);
    Some(TwoInstances {
        db,
        a,
        b,
        dir_a,
        _dir_b: dir_b,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_through_one_instance_is_seen_by_the_other_100_of_100() {
    let Some(TwoInstances {
        db: _db,
        a,
        b,
        dir_a: _dir_a,
        _dir_b,
    }) = two_instances().await
    else {
        return;
    };
    let http = client();
    let jwt = login(&http, &a.base).await;
    let mut rejected = 0;
    for round in 0..100 {
        // Alternate which instance revokes, so both directions are proved.
        let (via, other) = if round % 2 == 0 {
            (&a.base, &b.base)
        } else {
            (&b.base, &a.base)
        };
        let created = create_key(&http, via, &jwt, &format!("round {round}")).await;
        // The other instance has just accepted the key: anything it keeps about it is warm.
        assert_eq!(
            agents_status(&http, other, &created.key).await,
            StatusCode::OK
        );
        assert_eq!(
            agents_status(&http, via, &created.key).await,
            StatusCode::OK
        );
        assert_eq!(
            revoke_key(&http, via, &jwt, &created.id).await,
            StatusCode::NO_CONTENT
        );
        if agents_status(&http, other, &created.key).await == StatusCode::UNAUTHORIZED {
            rejected += 1;
        }
    }
    report(&format!(
        "two instances: a revocation through one was rejected by the other on the next request \
         {rejected} times out of 100"
    ));
    assert_eq!(rejected, 100);
    assert_no_panic(&a.kill());
    assert_no_panic(&b.kill());
}

/// Status of `GET /api/agents` with `token` on each of `bases`.
async fn agents_on(http: &Client, bases: [&str; 2], token: &str) -> [StatusCode; 2] {
    [
        agents_status(http, bases[0], token).await,
        agents_status(http, bases[1], token).await,
    ]
}

/// Two instances on one Postgres, and the admin CLI on the same database: disabling, enabling
/// and narrowing a user, and a cascading revoke through one instance, hold on both instances
/// from the next request on. The bound is zero: nothing about users or keys is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_changes_and_cascades_hold_on_both_instances_at_once() {
    let Some(TwoInstances {
        db,
        a,
        b,
        dir_a,
        _dir_b,
    }) = two_instances().await
    else {
        return;
    };
    let http = client();
    let bases = [a.base.as_str(), b.base.as_str()];
    let jwt = login(&http, &a.base).await;
    let parent = create_key(&http, &a.base, &jwt, "parent").await;
    // A key created by the parent key, through the other instance.
    let child = create_key(&http, &b.base, &parent.key, "child").await;
    let credentials = [&jwt, &parent.key, &child.key];
    let env = secrets(&db.url);
    let admin_cli = |args: &[&str]| {
        let mut full = vec!["user"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--email", EMAIL]);
        let (code, _, stderr) = cli(dir_a.path(), &full, &borrowed(&env), "");
        assert_eq!(code, 0, "{full:?} failed: {stderr}");
    };
    let ok = [StatusCode::OK; 2];
    let unauthorized = [StatusCode::UNAUTHORIZED; 2];
    let forbidden = [StatusCode::FORBIDDEN; 2];
    for token in credentials {
        assert_eq!(agents_on(&http, bases, token).await, ok);
    }

    admin_cli(&["disable"]);
    for token in credentials {
        assert_eq!(
            agents_on(&http, bases, token).await,
            unauthorized,
            "a disabled user's credential still works on an instance"
        );
    }
    admin_cli(&["enable"]);
    for token in credentials {
        assert_eq!(agents_on(&http, bases, token).await, ok, "enabled again");
    }

    admin_cli(&["set-scopes", "--scopes", "keys:manage"]);
    for token in credentials {
        assert_eq!(
            agents_on(&http, bases, token).await,
            forbidden,
            "a narrowed user's credential keeps the scope on an instance"
        );
    }
    admin_cli(&["set-scopes", "--scopes", "agents:read,keys:manage"]);

    let response = http
        .delete(url(
            &a.base,
            &format!("/api/users/me/api-keys/{}?cascade=true", parent.id),
        ))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("cascading revoke");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for token in [&parent.key, &child.key] {
        assert_eq!(
            agents_on(&http, bases, token).await,
            unauthorized,
            "a cascaded key still works on an instance"
        );
    }
    assert_eq!(agents_on(&http, bases, &jwt).await, ok);

    admin_cli(&["delete"]);
    assert_eq!(
        agents_on(&http, bases, &jwt).await,
        unauthorized,
        "deleted user"
    );
    report("two instances: disable, enable, set-scopes, delete and a cascade held on both at once");
    assert_no_panic(&a.kill());
    assert_no_panic(&b.kill());
}

/// The login throttle lives in each process: two instances on one database allow twice the
/// policy's verifications per email and window, each instance exactly its own five. This is
/// the stated bound (N instances: N × the policy), not a wish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_throttle_bound_is_per_instance() {
    let Some(TwoInstances {
        db: _db,
        a,
        b,
        dir_a: _dir_a,
        _dir_b,
    }) = two_instances().await
    else {
        return;
    };
    let http = client();
    let mut unauthorized = [0; 2];
    for round in 0..7 {
        for (i, base) in [&a.base, &b.base].into_iter().enumerate() {
            let status = http
                .post(url(base, "/api/auth/login"))
                .json(&json!({"email": EMAIL, "password": format!("wrong guess {round}")}))
                .send()
                .await
                .expect("login request")
                .status();
            match status {
                StatusCode::UNAUTHORIZED => unauthorized[i] += 1,
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("a wrong password answered {other}"),
            }
        }
    }
    report(&format!(
        "two instances: wrong-password verifications for one email per instance {unauthorized:?} \
         (policy 5 each)"
    ));
    assert_eq!(unauthorized, [5, 5]);
    assert_no_panic(&a.kill());
    assert_no_panic(&b.kill());
}
