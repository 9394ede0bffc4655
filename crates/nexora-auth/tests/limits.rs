//! Rate limits and credits through the `Authenticator`: per key, per owner, across two
//! authenticators sharing one store (two instances), under the key-management policy.

use std::sync::Arc;

use nexora_auth::{
    AuthError, Authenticator, Exceeded, KeyChanges, MemoryKeyStore, MemoryUserStore, NewCredits,
    NewKey, OwnerId, Principal, RateLimit, Refill, RotateOptions, Scopes, UserRecord, UserStore,
    limits::LimitRefusal,
};
use nexora_auth_testkit::{ManualClock, acting_as, authenticator_builder};
use time::OffsetDateTime;

struct Fixture {
    keys: Arc<MemoryKeyStore>,
    users: Arc<MemoryUserStore>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    async fn new() -> Self {
        let users = Arc::new(MemoryUserStore::new());
        for owner in ["alice", "bob"] {
            users
                .insert_user(&UserRecord {
                    id: OwnerId::new(owner),
                    email: format!("{owner}@example.com"),
                    password_hash: String::new(),
                    scopes: Scopes::new(["agents:read", "keys:manage"]).unwrap(),
                    created_at: OffsetDateTime::now_utc(),
                    disabled: false,
                    rate_limit: None,
                })
                .await
                .unwrap();
        }
        Self {
            keys: Arc::new(MemoryKeyStore::new()),
            users,
            clock: Arc::new(ManualClock::starting_now()),
        }
    }

    /// One instance over the shared stores.
    fn instance(&self) -> Authenticator {
        self.instance_with(None, 10)
    }

    fn instance_with(&self, owner_default: Option<RateLimit>, block: u64) -> Authenticator {
        authenticator_builder(self.keys.clone())
            .users(self.users.clone())
            .clock(self.clock.clone())
            .owner_rate_limit(owner_default)
            .credit_lease_block(block)
            .build()
            .unwrap()
    }
}

fn session(owner: &str) -> Principal {
    acting_as(&OwnerId::new(owner))
}

fn refusal(result: Result<nexora_auth::Usage, AuthError>) -> LimitRefusal {
    match result {
        Err(AuthError::LimitExceeded(refusal)) => *refusal,
        other => panic!("expected a limit refusal, got {other:?}"),
    }
}

async fn key_principal(auth: &Authenticator, request: NewKey) -> Principal {
    let request = request.with_scopes(Scopes::new(["agents:read", "keys:manage"]).unwrap());
    let created = auth.create_key(&session("alice"), request).await.unwrap();
    auth.authenticate(created.key.expose()).await.unwrap()
}

fn rate(limit: u32, period: u32) -> RateLimit {
    RateLimit::new(limit, period).unwrap()
}

fn credits(remaining: u64, refill: Option<(u64, u64)>) -> NewCredits {
    NewCredits::new(remaining, refill.map(|(a, e)| Refill::new(a, e).unwrap())).unwrap()
}

#[tokio::test]
async fn a_key_limited_to_10_per_minute_gets_exactly_10_then_the_exact_wait() {
    let f = Fixture::new().await;
    let auth = f.instance();
    let key = key_principal(&auth, NewKey::named("ci").with_rate_limit(rate(10, 60))).await;
    for i in 0..10 {
        let usage = auth.charge(&key, 1).await.unwrap();
        assert_eq!(usage.key.as_ref().unwrap().remaining, 9 - i);
        assert_eq!(usage.key.as_ref().unwrap().policy, "key");
    }
    let refused = refusal(auth.charge(&key, 1).await);
    assert_eq!(refused.exceeded, Exceeded::Rate);
    assert_eq!(refused.retry_after_secs, Some(6));
    // Cost 0 (managing keys) passes at the limit, and reports it.
    assert_eq!(
        auth.charge(&key, 0).await.unwrap().key.unwrap().remaining,
        0
    );
    f.clock.advance(time::Duration::seconds(6));
    auth.charge(&key, 1).await.unwrap();
    assert!(auth.charge(&key, 1).await.is_err());
}

#[tokio::test]
async fn an_owner_limit_is_shared_by_every_key_and_token_of_the_owner() {
    let f = Fixture::new().await;
    let auth = f.instance_with(Some(rate(5, 60)), 10);
    let one = key_principal(&auth, NewKey::named("one")).await;
    let two = key_principal(&auth, NewKey::named("two")).await;
    let mut passed = 0;
    for i in 0..10 {
        let p = if i % 2 == 0 { &one } else { &two };
        if auth.charge(p, 1).await.is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, 5);
    assert!(
        auth.charge(&session("alice"), 1).await.is_err(),
        "the session too"
    );
    assert!(
        auth.charge(&session("bob"), 1).await.is_ok(),
        "bob has his own"
    );
    // A user's own limit replaces the default.
    auth.set_owner_rate_limit(&OwnerId::new("bob"), Some(rate(1, 60)))
        .await
        .unwrap();
    assert!(auth.charge(&session("bob"), 1).await.is_err());
    assert_eq!(
        auth.owner_rate_limit(&OwnerId::new("bob")).await.unwrap(),
        Some(rate(1, 60))
    );
}

#[tokio::test]
async fn key_and_owner_limits_are_all_or_nothing() {
    let f = Fixture::new().await;
    let auth = f.instance_with(Some(rate(3, 60)), 10);
    let tight = key_principal(&auth, NewKey::named("tight").with_rate_limit(rate(1, 60))).await;
    let loose = key_principal(&auth, NewKey::named("loose")).await;
    auth.charge(&tight, 1).await.unwrap();
    // Refused by the key's limit: the owner's is not charged.
    for _ in 0..5 {
        assert!(auth.charge(&tight, 1).await.is_err());
    }
    let usage = auth.charge(&loose, 1).await.unwrap();
    assert_eq!(usage.key, None);
    assert_eq!(usage.owner.as_ref().unwrap().policy, "owner");
    assert_eq!(usage.owner.as_ref().unwrap().remaining, 1);
}

#[tokio::test]
async fn credits_run_out_exactly_across_two_instances_under_concurrency() {
    let f = Fixture::new().await;
    let a = f.instance();
    let b = f.instance();
    let created = a
        .create_key(
            &session("alice"),
            NewKey::named("metered").with_credits(credits(50, None)),
        )
        .await
        .unwrap();
    let key = created.key.expose().to_owned();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let auth = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let p = auth.authenticate(&key).await.unwrap();
            auth.charge(&p, 1).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(AuthError::LimitExceeded(r)) => {
                assert_eq!(r.exceeded, Exceeded::Credits);
                assert_eq!(r.retry_after_secs, None, "no refill: no Retry-After");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 50);
    let stored = stored(&f.keys, created.info.id).await;
    assert_eq!(stored, 0);
}

/// What the store holds of a key's credits.
async fn stored(keys: &MemoryKeyStore, id: nexora_auth::KeyId) -> u64 {
    let record = nexora_auth::KeyStore::find(keys, id)
        .await
        .unwrap()
        .unwrap();
    record.credits.unwrap().remaining
}

#[tokio::test]
async fn leases_write_the_store_once_per_block_and_go_back_on_return() {
    let f = Fixture::new().await;
    let auth = f.instance_with(None, 10);
    let created = auth
        .create_key(
            &session("alice"),
            NewKey::named("m").with_credits(credits(1000, None)),
        )
        .await
        .unwrap();
    let p = auth.authenticate(created.key.expose()).await.unwrap();
    let usage = auth.charge(&p, 1).await.unwrap();
    assert_eq!(usage.credits_remaining, Some(999));
    assert_eq!(
        stored(&f.keys, created.info.id).await,
        989,
        "cost plus a block of 10"
    );
    for _ in 0..10 {
        auth.charge(&p, 1).await.unwrap();
    }
    assert_eq!(
        stored(&f.keys, created.info.id).await,
        989,
        "the block served 10 more"
    );
    auth.charge(&p, 1).await.unwrap();
    assert_eq!(
        stored(&f.keys, created.info.id).await,
        978,
        "a second block"
    );
    assert_eq!(auth.return_credit_leases().await.unwrap(), 10);
    assert_eq!(
        stored(&f.keys, created.info.id).await,
        988,
        "12 spent, the rest back"
    );
}

#[tokio::test]
async fn a_request_refused_by_the_rate_spends_no_credit_and_refills_reset() {
    let f = Fixture::new().await;
    let auth = f.instance_with(None, 0);
    let created = auth
        .create_key(
            &session("alice"),
            NewKey::named("m")
                .with_rate_limit(rate(2, 60))
                .with_credits(credits(3, Some((3, 3600)))),
        )
        .await
        .unwrap();
    let p = auth.authenticate(created.key.expose()).await.unwrap();
    auth.charge(&p, 1).await.unwrap();
    auth.charge(&p, 1).await.unwrap();
    assert_eq!(refusal(auth.charge(&p, 1).await).exceeded, Exceeded::Rate);
    let listed = auth.list_keys(&session("alice")).await.unwrap();
    assert_eq!(
        listed[0].credits.unwrap().remaining,
        1,
        "the refusal spent nothing"
    );
    f.clock.advance(time::Duration::seconds(60));
    auth.charge(&p, 1).await.unwrap();
    let out = refusal(auth.charge(&p, 1).await);
    assert_eq!(out.exceeded, Exceeded::Credits);
    let wait = out.retry_after_secs.expect("a refill is due");
    assert!((3500..=3540).contains(&wait), "{wait}");
    f.clock.advance(time::Duration::seconds(3600));
    auth.charge(&p, 1).await.unwrap();
    let listed = auth.list_keys(&session("alice")).await.unwrap();
    assert_eq!(
        listed[0].credits.unwrap().remaining,
        2,
        "refilled to 3, one spent"
    );
}

#[tokio::test]
async fn rotation_keeps_limits_and_credits() {
    let f = Fixture::new().await;
    let auth = f.instance_with(None, 0);
    let created = auth
        .create_key(
            &session("alice"),
            NewKey::named("r")
                .with_rate_limit(rate(5, 60))
                .with_credits(credits(7, None)),
        )
        .await
        .unwrap();
    let old = auth.authenticate(created.key.expose()).await.unwrap();
    auth.charge(&old, 1).await.unwrap();
    let rotated = auth
        .rotate_key(
            &session("alice"),
            created.info.id,
            RotateOptions::immediate(),
        )
        .await
        .unwrap();
    assert_eq!(rotated.info.rate_limit, Some(rate(5, 60)));
    assert_eq!(rotated.info.credits.unwrap().remaining, 6);
    let new = auth.authenticate(rotated.key.expose()).await.unwrap();
    let usage = auth.charge(&new, 1).await.unwrap();
    assert_eq!(
        usage.key.as_ref().unwrap().remaining,
        3,
        "the same counter as before"
    );
    assert_eq!(usage.credits_remaining, Some(5));
}

#[tokio::test]
async fn a_limited_key_only_tightens_and_its_children_inherit() {
    let f = Fixture::new().await;
    let auth = f.instance_with(None, 0);
    let created = auth
        .create_key(
            &session("alice"),
            NewKey::named("partner")
                .with_scopes(Scopes::new(["agents:read", "keys:manage"]).unwrap())
                .with_rate_limit(rate(10, 60))
                .with_credits(credits(100, None)),
        )
        .await
        .unwrap();
    let parent = auth.authenticate(created.key.expose()).await.unwrap();
    let own = parent.key_id().unwrap();
    // Loosening its own limits: refused.
    for changes in [
        KeyChanges::new().rate_limit(None),
        KeyChanges::new().rate_limit(Some(rate(20, 60))),
        KeyChanges::new().credits(None),
        KeyChanges::new().credits(Some(credits(101, None))),
        KeyChanges::new().credits(Some(credits(50, Some((50, 60))))),
    ] {
        let result = auth.update_key(&parent, own, changes.clone()).await;
        assert!(
            matches!(result, Err(AuthError::LimitNotHeld)),
            "{changes:?}: {result:?}"
        );
    }
    // Tightening: allowed.
    let info = auth
        .update_key(
            &parent,
            own,
            KeyChanges::new().rate_limit(Some(rate(5, 60))),
        )
        .await
        .unwrap();
    assert_eq!(info.rate_limit, Some(rate(5, 60)));
    // The next request sees it.
    let parent = auth.authenticate(created.key.expose()).await.unwrap();
    // A child inherits the rate, may not be unmetered, and its credits are paid by the parent.
    assert!(matches!(
        auth.create_key(&parent, NewKey::named("free")).await,
        Err(AuthError::LimitNotHeld)
    ));
    assert!(matches!(
        auth.create_key(
            &parent,
            NewKey::named("fast")
                .with_rate_limit(rate(6, 60))
                .with_credits(credits(1, None))
        )
        .await,
        Err(AuthError::LimitNotHeld)
    ));
    let child = auth
        .create_key(
            &parent,
            NewKey::named("child").with_credits(credits(40, None)),
        )
        .await
        .unwrap();
    assert_eq!(child.info.rate_limit, Some(rate(5, 60)));
    let listed = auth.list_keys(&session("alice")).await.unwrap();
    let parent_info = listed.iter().find(|k| k.id == own).unwrap();
    assert_eq!(
        parent_info.credits.unwrap().remaining,
        60,
        "the parent paid 40"
    );
    assert!(matches!(
        auth.create_key(
            &parent,
            NewKey::named("too much").with_credits(credits(61, None))
        )
        .await,
        Err(AuthError::LimitExceeded(_))
    ));
    // The user's session may loosen anything.
    let info = auth
        .update_key(
            &session("alice"),
            own,
            KeyChanges::new()
                .name("renamed")
                .rate_limit(None)
                .credits(Some(credits(1000, Some((1000, 86_400))))),
        )
        .await
        .unwrap();
    assert_eq!((info.name.as_str(), info.rate_limit), ("renamed", None));
    assert_eq!(info.credits.unwrap().remaining, 1000);
    // Another owner's key is not found.
    assert!(matches!(
        auth.update_key(&session("bob"), own, KeyChanges::new().name("x"))
            .await,
        Err(AuthError::KeyNotFound)
    ));
}

#[tokio::test]
async fn a_change_of_limits_applies_to_the_next_request() {
    let f = Fixture::new().await;
    let auth = f.instance();
    let created = auth
        .create_key(&session("alice"), NewKey::named("k"))
        .await
        .unwrap();
    let p = auth.authenticate(created.key.expose()).await.unwrap();
    assert!(auth.charge(&p, 1).await.unwrap().is_empty());
    auth.update_key(
        &session("alice"),
        created.info.id,
        KeyChanges::new().credits(Some(credits(0, None))),
    )
    .await
    .unwrap();
    let p = auth.authenticate(created.key.expose()).await.unwrap();
    assert_eq!(
        refusal(auth.charge(&p, 1).await).exceeded,
        Exceeded::Credits
    );
    // Managing keys costs nothing: a key out of credits can still list keys.
    assert!(auth.charge(&p, 0).await.is_ok());
}
