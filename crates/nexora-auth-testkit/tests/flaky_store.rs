//! `FlakyStore` passes every method on to the store it wraps (the hot-path `find_credentials`
//! included, not the trait's default over `find`), counts every call, and fails on demand.

use nexora_auth::{
    AuditStore, KeyId, KeyStore, MemoryAuditStore, MemoryKeyStore, MemoryUserStore, OwnerId,
    StoreError, UserRecord, UserStore,
    audit::AuditQuery,
    limits::Credits,
    store::{KeyUpdate, LastUsed, Rotation},
};
use nexora_auth_testkit::{
    failure::{FlakyStore, StoreMethod},
    new_record, now, run, scopes,
};

/// How many methods [`KeyStore`] has, and where the [`AuditStore`] methods start in
/// [`StoreMethod::ALL`] (after the [`UserStore`] methods).
const KEY_METHODS: usize = 10;
const AUDIT_START: usize = 19;

/// Calls every [`KeyStore`] method once; returns the methods called.
async fn every_key_method(store: &impl KeyStore) -> Vec<StoreMethod> {
    let (_, record) = new_record("alice", "k", now());
    let owner = OwnerId::new("alice");
    let _ = store.insert(&record).await;
    let _ = store.find(record.id).await;
    let _ = store.find_credentials(record.id).await;
    let _ = store.list(&owner).await;
    let rotation = Rotation {
        digest: record.digest,
        display: record.display.clone(),
        grace_until: None,
        now: now(),
    };
    let _ = store.rotate(&owner, record.id, &rotation).await;
    let _ = store.revoke(&owner, record.id, now()).await;
    let _ = store.revoke_tree(&owner, record.id, now()).await;
    let used = LastUsed {
        id: record.id,
        at: now(),
    };
    let _ = store.record_last_used(&[used]).await;
    let _ = store
        .update_key(&owner, record.id, &KeyUpdate::default())
        .await;
    let credits = Credits {
        remaining: 1,
        refill: None,
        refilled_at: now(),
    };
    let _ = store.swap_credits(record.id, &credits, &credits).await;
    StoreMethod::ALL[..KEY_METHODS].to_vec()
}

/// Calls every [`UserStore`] method once; returns the methods called.
async fn every_user_method(store: &impl UserStore) -> Vec<StoreMethod> {
    let user = UserRecord {
        id: OwnerId::new("u-alice"),
        email: "alice@example.com".into(),
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        scopes: scopes(&["a"]),
        created_at: now(),
        disabled: false,
        rate_limit: None,
    };
    let _ = store.insert_user(&user).await;
    let _ = store.find_user_by_email(&user.email).await;
    let _ = store.find_user(&user.id).await;
    let _ = store.update_password_hash(&user.id, "x").await;
    let _ = store.list_users().await;
    let _ = store.set_user_disabled(&user.id, true).await;
    let _ = store.set_user_scopes(&user.id, &scopes(&["b"])).await;
    let _ = store.delete_user(&user.id).await;
    let _ = store.set_owner_rate_limit(&user.id, None).await;
    StoreMethod::ALL[KEY_METHODS..AUDIT_START].to_vec()
}

/// Calls every [`AuditStore`] method once; returns the methods called.
async fn every_audit_method(store: &impl AuditStore) -> Vec<StoreMethod> {
    let _ = store.record(&[]).await;
    let _ = store.list(&AuditQuery::all(1)).await;
    let _ = store.prune(now()).await;
    StoreMethod::ALL[AUDIT_START..].to_vec()
}

#[test]
fn every_method_is_counted_and_forwarded_as_itself() {
    run(async {
        // The inner wrapper sees exactly what the outer one forwards.
        let keys = FlakyStore::new(FlakyStore::new(MemoryKeyStore::new()));
        let users = FlakyStore::new(FlakyStore::new(MemoryUserStore::new()));
        let trail = FlakyStore::new(FlakyStore::new(MemoryAuditStore::new()));
        let mut called = every_key_method(&keys).await;
        called.extend(every_user_method(&users).await);
        called.extend(every_audit_method(&trail).await);
        assert_eq!(called, StoreMethod::ALL, "the test calls every method once");
        for method in StoreMethod::ALL {
            let (outer, inner) = if called[..KEY_METHODS].contains(&method) {
                (keys.calls(), keys.inner().calls())
            } else if called[KEY_METHODS..AUDIT_START].contains(&method) {
                (users.calls(), users.inner().calls())
            } else {
                (trail.calls(), trail.inner().calls())
            };
            assert_eq!(outer.of(method), 1, "{method:?} counted once");
            assert_eq!(outer.forwarded(method), 1, "{method:?} passed on");
            assert_eq!(inner.of(method), 1, "{method:?} reached the wrapped store");
        }
        assert_eq!(
            keys.calls().total() + users.calls().total() + trail.calls().total(),
            StoreMethod::ALL.len() as u64
        );
    });
}

#[test]
fn failing_calls_are_counted_but_not_forwarded() {
    run(async {
        let store = FlakyStore::new(FlakyStore::new(MemoryKeyStore::new()));
        store.set_failing(true);
        let (_, record) = new_record("alice", "k", now());
        assert!(matches!(
            store.find_credentials(record.id).await,
            Err(StoreError::Unavailable { .. })
        ));
        assert_eq!(store.calls().of(StoreMethod::FindCredentials), 1);
        assert_eq!(store.calls().forwarded(StoreMethod::FindCredentials), 0);
        assert_eq!(
            store.inner().calls().total(),
            0,
            "nothing reached the store"
        );
        store.set_failing(false);
        assert!(matches!(store.find(record.id).await, Ok(None)));
    });
}

#[test]
fn a_failing_key_fails_only_the_calls_naming_it() {
    run(async {
        let store = FlakyStore::new(MemoryKeyStore::new());
        let (_, record) = new_record("alice", "k", now());
        store.insert(&record).await.expect("insert");
        store.fail_for(record.id);
        assert!(matches!(
            store.find(record.id).await,
            Err(StoreError::Unavailable { .. })
        ));
        assert!(matches!(
            store.find_credentials(record.id).await,
            Err(StoreError::Unavailable { .. })
        ));
        assert_eq!(store.find(KeyId::new_random()).await.ok(), Some(None));
        assert_eq!(
            store
                .list(&OwnerId::new("alice"))
                .await
                .map(|l| l.len())
                .ok(),
            Some(1),
            "calls naming no key pass"
        );
    });
}

#[test]
fn wrappers_can_share_one_counter() {
    run(async {
        let keys = FlakyStore::new(MemoryKeyStore::new());
        let users = FlakyStore::new(MemoryUserStore::new()).counting_into(keys.calls().clone());
        let _ = keys.list(&OwnerId::new("alice")).await;
        let _ = users.list_users().await;
        assert_eq!(keys.calls().total(), 2);
        assert!(std::sync::Arc::ptr_eq(keys.calls(), users.calls()));
    });
}
