//! The [`KeyStore`] contracts, one function each (what [`crate::key_store_conformance!`] runs).
//!
//! Every function takes a fresh, empty store, first checks that it is empty (`list` of every
//! owner the contracts use, `find` of every fixed id they insert), and panics with a message
//! naming the broken contract (`KeyStore contract `…` failed: …`), the method, and what was
//! expected.
//!
//! Every `pub async fn` here is a contract: `build.rs` lists it for the conformance macro and
//! [`contracts`], so writing the function is all it takes to run it on every store. Helpers
//! stay private or `pub(crate)`.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use nexora_auth::{
    ApiKey, AuthError, Authenticator, InvalidReason, KeyCredentials, KeyId, KeyStore, NewKey,
    OwnerId, RevokeOptions, RotateOptions, StoreError,
    limits::{
        Credits, MAX_CREDITS, MAX_PERIOD_SECS, MAX_RATE_LIMIT, MAX_REFILL_SECS, RateLimit, Refill,
    },
    store::{
        KeyRecord, KeyUpdate, LastUsed, PreviousDigest, RevokeOutcome, RotateOutcome, Rotation,
    },
};
use time::OffsetDateTime;

use crate::{
    ManualClock, acting_as, authenticator, authenticator_with, new_record, now, record_with_id,
    scopes,
};

const SECOND: time::Duration = time::Duration::SECOND;

async fn insert(store: &Arc<dyn KeyStore>, record: &KeyRecord) {
    store
        .insert(record)
        .await
        .unwrap_or_else(|e| panic!("insert of a new record failed: {e:?}"));
}

async fn find(store: &Arc<dyn KeyStore>, id: KeyId) -> Option<KeyRecord> {
    store
        .find(id)
        .await
        .unwrap_or_else(|e| panic!("find failed: {e:?}"))
}

async fn must_find(store: &Arc<dyn KeyStore>, id: KeyId) -> KeyRecord {
    find(store, id)
        .await
        .unwrap_or_else(|| panic!("find: inserted key {id} not found"))
}

async fn list(store: &Arc<dyn KeyStore>, owner: &str) -> Vec<KeyRecord> {
    store
        .list(&OwnerId::new(owner))
        .await
        .unwrap_or_else(|e| panic!("list failed: {e:?}"))
}

fn rotation(now: OffsetDateTime, grace_until: Option<OffsetDateTime>) -> (ApiKey, Rotation) {
    let (key, record) = new_record("unused", "unused", now);
    (
        key,
        Rotation {
            digest: record.digest,
            display: record.display,
            grace_until,
            now,
        },
    )
}

/// `insert` stores the record as given and `find` returns it unchanged, every field included:
/// optional times set, a grace-period previous digest, a pepper version above `i32::MAX`.
pub async fn insert_then_find_round_trips_every_field(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "insert_then_find_round_trips_every_field",
        store,
        |store| async move {
            let t0 = now();
            let (_, plain) = new_record("alice", "plain", t0);
            insert(&store, &plain).await;
            assert_eq!(
                must_find(&store, plain.id).await,
                plain,
                "find must return the record as inserted"
            );

            let (_, mut full) = new_record("alice", "every field", t0 - SECOND);
            let (_, old) = new_record("alice", "old secret", t0);
            full.last_used_at = Some(t0 - SECOND / 2);
            full.expires_at = Some(t0 + 3600 * SECOND);
            full.revoked_at = Some(t0 - SECOND / 4);
            full.previous = Some(PreviousDigest {
                digest: old.digest,
                valid_until: t0 + 60 * SECOND,
            });
            full.scopes = scopes(&["agents:read", "agents:write", "keys:manage"]);
            insert(&store, &full).await;
            assert_eq!(
                must_find(&store, full.id).await,
                full,
                "every field must round-trip exactly"
            );
            assert_eq!(
                must_find(&store, plain.id).await,
                plain,
                "inserting another record changed the first"
            );
        },
    )
    .await;
}

/// `find` of an id never inserted is `Ok(None)`, not an error.
pub async fn find_unknown_id_is_none(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("find_unknown_id_is_none", store, |store| async move {
        let (_, record) = new_record("alice", "present", now());
        insert(&store, &record).await;
        assert_eq!(
            find(&store, KeyId::new_random()).await,
            None,
            "an unknown id must be Ok(None)"
        );
    })
    .await;
}

/// Inserting an existing id is [`StoreError::DuplicateId`] (a typed error, not `Unavailable`)
/// and leaves the existing record untouched.
pub async fn duplicate_id_is_a_typed_error_and_keeps_the_original(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "duplicate_id_is_a_typed_error_and_keeps_the_original",
        store,
        |store| async move {
            let (_, original) = new_record("alice", "original", now());
            insert(&store, &original).await;
            let (_, mut impostor) = new_record("mallory", "impostor", now() + SECOND);
            impostor.id = original.id;
            match store.insert(&impostor).await {
                Err(StoreError::DuplicateId) => {}
                other => {
                    panic!("a duplicate id must be Err(StoreError::DuplicateId), got {other:?}")
                }
            }
            assert_eq!(
                must_find(&store, original.id).await,
                original,
                "a refused insert changed the original"
            );
            assert!(
                list(&store, "mallory").await.is_empty(),
                "a refused insert is listed for its owner"
            );
        },
    )
    .await;
}

/// `find` returns revoked and expired records as they are (the caller judges them).
pub async fn find_returns_revoked_and_expired_records(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "find_returns_revoked_and_expired_records",
        store,
        |store| async move {
            let t0 = now();
            let (_, mut expired) = new_record("alice", "expired", t0 - 7200 * SECOND);
            expired.expires_at = Some(t0 - 3600 * SECOND);
            insert(&store, &expired).await;
            assert_eq!(
                must_find(&store, expired.id).await,
                expired,
                "an expired record must still be found"
            );

            let (_, revoked) = new_record("alice", "revoked", t0);
            insert(&store, &revoked).await;
            let at = t0 + SECOND;
            assert_eq!(
                store.revoke(&revoked.owner, revoked.id, at).await.ok(),
                Some(RevokeOutcome::Revoked),
                "revoke of an active key must be Ok(Revoked)"
            );
            let found = must_find(&store, revoked.id).await;
            assert_eq!(
                found.revoked_at,
                Some(at),
                "find must return the revocation time"
            );
            assert_eq!(
                found.digest, revoked.digest,
                "find of a revoked key must return its digest unchanged"
            );
        },
    )
    .await;
}

/// `list` returns only the owner's non-revoked keys, ordered by `created_at`, then `id`.
pub async fn list_is_owner_scoped_ordered_and_excludes_revoked(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "list_is_owner_scoped_ordered_and_excludes_revoked",
        store,
        |store| async move {
            let t0 = now();
            let id = |n: u128| KeyId::from_uuid(uuid::Uuid::from_u128(n));
            // Inserted out of order; two share a created_at and are ordered by id.
            let third = record_with_id(id(1), "alice", t0 + 2 * SECOND);
            let first = record_with_id(id(9), "alice", t0);
            let second_b = record_with_id(id(u128::MAX - 1), "alice", t0 + SECOND);
            let second_a = record_with_id(id(5), "alice", t0 + SECOND);
            let revoked = record_with_id(id(7), "alice", t0 + SECOND / 2);
            let bobs = record_with_id(id(3), "bob", t0 + SECOND / 3);
            for r in [&third, &first, &second_b, &revoked, &bobs, &second_a] {
                insert(&store, r).await;
            }
            assert_eq!(
                store
                    .revoke(&revoked.owner, revoked.id, t0 + 3 * SECOND)
                    .await
                    .ok(),
                Some(RevokeOutcome::Revoked),
                "revoke of an active key must be Ok(Revoked)"
            );
            let listed = list(&store, "alice").await;
            let ids: Vec<KeyId> = listed.iter().map(|r| r.id).collect();
            assert_eq!(
                ids,
                vec![first.id, second_a.id, second_b.id, third.id],
                "list must be alice's non-revoked keys by created_at then id"
            );
            assert_eq!(
                listed,
                vec![first, second_a, second_b, third],
                "listed records must be complete"
            );
            assert_eq!(
                list(&store, "bob").await,
                vec![bobs],
                "bob must see only his key"
            );
            assert!(
                list(&store, "carol").await.is_empty(),
                "an owner without keys lists nothing"
            );
        },
    )
    .await;
}

/// An owner can hold many keys; each is found, listed and authenticates.
pub async fn many_keys_per_owner(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("many_keys_per_owner", store, |store| async move {
        const KEYS: usize = 60;
        let auth = authenticator(store.clone());
        let alice = OwnerId::new("alice");
        let all = scopes(&["agents:read"]);
        let mut created = Vec::with_capacity(KEYS);
        for i in 0..KEYS {
            let key = auth
                .create_key_for(&alice, &all, NewKey::named(format!("key {i}")))
                .await
                .unwrap_or_else(|e| panic!("create_key #{i} failed: {e:?}"));
            created.push(key);
        }
        auth.create_key_for(&OwnerId::new("bob"), &all, NewKey::named("bob's"))
            .await
            .expect("bob's key");
        let listed = list(&store, "alice").await;
        assert_eq!(listed.len(), KEYS, "every key of the owner must be listed");
        for key in &created {
            assert!(
                listed.iter().any(|r| r.id == key.info.id),
                "key {} missing from list",
                key.info.id
            );
            let principal = auth
                .authenticate(key.key.expose())
                .await
                .expect("each key authenticates");
            assert_eq!(
                principal.owner(),
                &alice,
                "authenticate must return the owner the key was created for"
            );
        }
    })
    .await;
}

/// Names come back byte for byte: unicode, quotes, SQL metacharacters, 100 characters.
pub async fn names_round_trip_exactly(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("names_round_trip_exactly", store, |store| async move {
        let names = [
            "Ünïcödé ключ 鍵 🔑".to_owned(),
            r#"O'Brien's "quoted" key \ backslash"#.to_owned(),
            "'); DROP TABLE api_keys; -- ".to_owned() + "x",
            "100% _like_ [wild]cards * ? $1 :name @p1".to_owned(),
            "x".repeat(nexora_auth::MAX_KEY_NAME_LEN),
            "🔑".repeat(nexora_auth::MAX_KEY_NAME_LEN),
        ];
        let t0 = now();
        for (i, name) in names.iter().enumerate() {
            let (_, record) = new_record(
                "alice",
                name,
                t0 + time::Duration::seconds(i64::try_from(i).unwrap_or(0)),
            );
            insert(&store, &record).await;
            assert_eq!(
                &must_find(&store, record.id).await.name,
                name,
                "name changed in the store"
            );
        }
        let listed: Vec<String> = list(&store, "alice")
            .await
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(listed, names, "listed names changed");

        let auth = authenticator(store.clone());
        let bob = OwnerId::new("bob");
        for name in &names {
            let created = auth
                .create_key_for(&bob, &scopes(&["a"]), NewKey::named(name.clone()))
                .await
                .unwrap_or_else(|e| panic!("create_key with name {name:?} failed: {e:?}"));
            assert_eq!(
                &must_find(&store, created.info.id).await.name,
                name,
                "find must return the name create_key was given, byte for byte"
            );
        }
        let too_long = "x".repeat(nexora_auth::MAX_KEY_NAME_LEN + 1);
        let refused = auth
            .create_key_for(&bob, &scopes(&["a"]), NewKey::named(too_long))
            .await;
        assert!(
            matches!(refused, Err(AuthError::InvalidInput(_))),
            "a 101-character name must be refused"
        );
        assert_eq!(
            list(&store, "bob").await.len(),
            names.len(),
            "a refused key was stored"
        );
    })
    .await;
}

/// Scopes come back as a set equal to what was stored: none, one, the maximum count with
/// every character RFC 6749 allows.
pub async fn scopes_round_trip_exactly(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("scopes_round_trip_exactly", store, |store| async move {
        let odd = r##"!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~"##;
        let many: Vec<String> = (0..nexora_auth::MAX_SCOPES)
            .map(|i| format!("{odd}{i}"))
            .collect();
        let long = "s".repeat(nexora_auth::MAX_SCOPE_LEN);
        let sets = [
            nexora_auth::Scopes::empty(),
            scopes(&["agents:read"]),
            scopes(&[long.as_str(), "(paren)", "it's;--"]),
            nexora_auth::Scopes::new(many).expect("64 valid scopes"),
        ];
        for set in sets {
            let (_, mut record) = new_record("alice", "scoped", now());
            record.scopes = set.clone();
            insert(&store, &record).await;
            assert_eq!(
                must_find(&store, record.id).await.scopes,
                set,
                "scopes changed in the store"
            );
        }
    })
    .await;
}

/// `rotate` without grace replaces digest and display, clears `previous`, keeps everything
/// else, and returns the record `find` then returns.
pub async fn rotate_replaces_the_digest_and_clears_previous(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "rotate_replaces_the_digest_and_clears_previous",
        store,
        |store| async move {
            let t0 = now();
            let (_, mut record) = new_record("alice", "rotated", t0 - SECOND);
            let (_, old) = new_record("x", "x", t0);
            record.previous = Some(PreviousDigest {
                digest: old.digest,
                valid_until: t0 + 60 * SECOND,
            });
            record.expires_at = Some(t0 + 3600 * SECOND);
            record.last_used_at = Some(t0 - SECOND / 2);
            insert(&store, &record).await;

            let (_, rot) = rotation(t0, None);
            let outcome = store
                .rotate(&record.owner, record.id, &rot)
                .await
                .expect("rotate");
            let RotateOutcome::Rotated(rotated) = outcome else {
                panic!("rotating an active key must be Rotated, got {outcome:?}");
            };
            let expected = KeyRecord {
                digest: rot.digest,
                display: rot.display.clone(),
                previous: None,
                ..record
            };
            assert_eq!(
                rotated, expected,
                "rotate must change digest and display only, and clear previous"
            );
            assert_eq!(
                must_find(&store, expected.id).await,
                expected,
                "find must return the rotated record"
            );
        },
    )
    .await;
}

/// `rotate` with `grace_until` keeps the current digest as `previous`; a later rotation without
/// grace clears it. Through [`nexora_auth::Authenticator`]: both secrets work during the grace.
pub async fn rotate_with_grace_keeps_the_previous_digest(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "rotate_with_grace_keeps_the_previous_digest",
        store,
        |store| async move {
            let t0 = now();
            let (_, record) = new_record("alice", "graceful", t0);
            insert(&store, &record).await;
            let until = t0 + 300 * SECOND;
            let (_, rot) = rotation(t0, Some(until));
            let Ok(RotateOutcome::Rotated(rotated)) =
                store.rotate(&record.owner, record.id, &rot).await
            else {
                panic!("rotate with grace failed");
            };
            let previous = Some(PreviousDigest {
                digest: record.digest,
                valid_until: until,
            });
            assert_eq!(
                rotated.previous, previous,
                "the old digest must become previous, valid until grace_until"
            );
            assert_eq!(
                rotated.digest, rot.digest,
                "rotate with grace must return the new digest as current"
            );
            assert_eq!(
                must_find(&store, record.id).await.previous,
                previous,
                "previous digest not stored"
            );

            let (_, again) = rotation(t0 + SECOND, None);
            let Ok(RotateOutcome::Rotated(rotated)) =
                store.rotate(&record.owner, record.id, &again).await
            else {
                panic!("second rotate failed");
            };
            assert_eq!(
                rotated.previous, None,
                "a rotation without grace must clear previous"
            );
            assert_eq!(
                must_find(&store, record.id).await.previous,
                None,
                "previous digest not cleared"
            );

            let auth = authenticator(store.clone());
            let alice = OwnerId::new("alice");
            let created = auth
                .create_key_for(&alice, &scopes(&["a"]), NewKey::named("k"))
                .await
                .expect("create");
            let id = created.info.id;
            let graced = auth
                .rotate_key(
                    &acting_as(&alice),
                    id,
                    RotateOptions::with_grace(Duration::from_secs(600)),
                )
                .await;
            let graced = graced.expect("rotate with grace");
            auth.authenticate(created.key.expose())
                .await
                .expect("old secret works during its grace period");
            auth.authenticate(graced.key.expose())
                .await
                .expect("new secret works");
            let newest = auth
                .rotate_key(&acting_as(&alice), id, RotateOptions::immediate())
                .await
                .expect("rotate");
            assert!(
                auth.authenticate(created.key.expose()).await.is_err(),
                "immediate rotation ends the grace"
            );
            assert!(
                auth.authenticate(graced.key.expose()).await.is_err(),
                "replaced secret still works"
            );
            auth.authenticate(newest.key.expose())
                .await
                .expect("newest secret works");
        },
    )
    .await;
}

/// Another owner's key is *not found* for `rotate`, `revoke` and `list`, and stays untouched.
pub async fn rotate_is_owner_scoped(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("rotate_is_owner_scoped", store, |store| async move {
        let t0 = now();
        let (key, record) = new_record("alice", "alice's", t0);
        insert(&store, &record).await;
        let mallory = OwnerId::new("mallory");
        let (_, rot) = rotation(t0, None);
        assert_eq!(
            store
                .rotate(&mallory, record.id, &rot)
                .await
                .expect("rotate"),
            RotateOutcome::NotFound,
            "rotating another owner's key must be NotFound"
        );
        assert_eq!(
            must_find(&store, record.id).await,
            record,
            "another owner's rotate changed the key"
        );

        let auth = authenticator(store.clone());
        let refused = auth
            .rotate_key(&acting_as(&mallory), record.id, RotateOptions::immediate())
            .await;
        assert!(
            matches!(refused, Err(AuthError::KeyNotFound)),
            "got {refused:?}"
        );
        auth.authenticate(key.expose())
            .await
            .expect("alice's key still works");
    })
    .await;
}

/// `rotate` of an id that does not exist is `NotFound`.
pub async fn rotate_unknown_is_not_found(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("rotate_unknown_is_not_found", store, |store| async move {
        let (_, record) = new_record("alice", "present", now());
        insert(&store, &record).await;
        let (_, rot) = rotation(now(), None);
        let outcome = store
            .rotate(&record.owner, KeyId::new_random(), &rot)
            .await
            .expect("rotate");
        assert_eq!(
            outcome,
            RotateOutcome::NotFound,
            "rotate of an unknown id must be Ok(NotFound)"
        );
    })
    .await;
}

/// `rotate` of a revoked key is `Revoked` and changes nothing.
pub async fn rotate_revoked_is_revoked(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("rotate_revoked_is_revoked", store, |store| async move {
        let t0 = now();
        let (_, record) = new_record("alice", "revoked", t0);
        insert(&store, &record).await;
        assert_eq!(
            store.revoke(&record.owner, record.id, t0).await.ok(),
            Some(RevokeOutcome::Revoked),
            "revoke of an active key must be Ok(Revoked)"
        );
        let before = must_find(&store, record.id).await;
        let (_, rot) = rotation(t0 + SECOND, Some(t0 + 60 * SECOND));
        assert_eq!(
            store
                .rotate(&record.owner, record.id, &rot)
                .await
                .expect("rotate"),
            RotateOutcome::Revoked,
            "rotate of a revoked key must be Ok(Revoked)"
        );
        assert_eq!(
            must_find(&store, record.id).await,
            before,
            "a refused rotation changed the key"
        );
    })
    .await;
}

/// `rotate` refuses a key that expired at or before `rotation.now` (the given instant, not the
/// database's clock) with `Expired`, changing nothing; a key expiring after it rotates.
pub async fn rotate_expired_is_expired_and_uses_the_given_now(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "rotate_expired_is_expired_and_uses_the_given_now",
        store,
        |store| async move {
            // Far from the real clock on purpose: a store that compares with its own `now()` fails.
            let far_past = now() - 3650 * 86_400 * SECOND;
            let far_future = now() + 3650 * 86_400 * SECOND;

            let (_, mut expired) = new_record("alice", "expired long ago", far_past - SECOND);
            expired.expires_at = Some(far_past);
            insert(&store, &expired).await;
            let (_, rot) = rotation(far_past + SECOND, None);
            assert_eq!(
                store
                    .rotate(&expired.owner, expired.id, &rot)
                    .await
                    .expect("rotate"),
                RotateOutcome::Expired,
                "rotate of a key that expired before rotation.now must be Ok(Expired)"
            );
            assert_eq!(
                must_find(&store, expired.id).await,
                expired,
                "a refused rotation changed the key"
            );

            let (_, rot) = rotation(far_past, None);
            assert_eq!(
                store
                    .rotate(&expired.owner, expired.id, &rot)
                    .await
                    .expect("rotate"),
                RotateOutcome::Expired,
                "expires_at == now counts as expired"
            );
            let (_, rot) = rotation(far_past - SECOND, None);
            assert!(
                matches!(
                    store.rotate(&expired.owner, expired.id, &rot).await,
                    Ok(RotateOutcome::Rotated(_))
                ),
                "a key expiring after rotation.now must rotate, whatever the real time"
            );

            let (_, mut future) = new_record("alice", "expires far ahead", now());
            future.expires_at = Some(far_future);
            insert(&store, &future).await;
            let (_, rot) = rotation(far_future + SECOND, None);
            assert_eq!(
                store
                    .rotate(&future.owner, future.id, &rot)
                    .await
                    .expect("rotate"),
                RotateOutcome::Expired,
                "expiry must be judged at rotation.now, not at the store's clock"
            );
        },
    )
    .await;
}

/// `revoke` sets `revoked_at` once; again is `AlreadyRevoked` and keeps the first timestamp.
/// A revoked key no longer authenticates nor lists.
pub async fn revoke_is_idempotent_and_keeps_the_first_timestamp(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "revoke_is_idempotent_and_keeps_the_first_timestamp",
        store,
        |store| async move {
            let auth = authenticator(store.clone());
            let alice = OwnerId::new("alice");
            let created = auth
                .create_key_for(&alice, &scopes(&["a"]), NewKey::named("doomed"))
                .await
                .expect("create");
            let id = created.info.id;
            let first = now() + SECOND;
            assert_eq!(
                store.revoke(&alice, id, first).await.expect("revoke"),
                RevokeOutcome::Revoked,
                "revoke of an active key must be Ok(Revoked)"
            );
            assert_eq!(
                store
                    .revoke(&alice, id, first + 60 * SECOND)
                    .await
                    .expect("revoke again"),
                RevokeOutcome::AlreadyRevoked,
                "revoke of a revoked key must be Ok(AlreadyRevoked)"
            );
            assert_eq!(
                must_find(&store, id).await.revoked_at,
                Some(first),
                "revoking again moved revoked_at"
            );
            let refused = auth.authenticate(created.key.expose()).await;
            assert!(
                matches!(
                    refused,
                    Err(AuthError::InvalidToken(InvalidReason::Revoked))
                ),
                "a revoked key must be refused as revoked, got {refused:?}"
            );
            assert!(
                list(&store, "alice").await.is_empty(),
                "a revoked key is still listed"
            );
            assert!(
                matches!(
                    auth.revoke_key(&acting_as(&alice), id, RevokeOptions::key_only())
                        .await,
                    Err(AuthError::KeyNotFound)
                ),
                "a revoked key is gone from the owner's view: revoking it again is 404"
            );
        },
    )
    .await;
}

/// Another owner cannot revoke a key: `NotFound`, and the key keeps working.
pub async fn revoke_is_owner_scoped(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("revoke_is_owner_scoped", store, |store| async move {
        let (key, record) = new_record("alice", "alice's", now());
        insert(&store, &record).await;
        let mallory = OwnerId::new("mallory");
        assert_eq!(
            store
                .revoke(&mallory, record.id, now())
                .await
                .expect("revoke"),
            RevokeOutcome::NotFound,
            "revoke of another owner's key must be Ok(NotFound)"
        );
        assert_eq!(
            must_find(&store, record.id).await,
            record,
            "another owner's revoke changed the key"
        );
        let auth = authenticator(store.clone());
        assert!(
            matches!(
                auth.revoke_key(&acting_as(&mallory), record.id, RevokeOptions::key_only())
                    .await,
                Err(AuthError::KeyNotFound)
            ),
            "revoke_key of another owner's key must be KeyNotFound"
        );
        auth.authenticate(key.expose())
            .await
            .expect("alice's key still works");
        assert_eq!(
            list(&store, "alice").await.len(),
            1,
            "list must still hold the key another owner failed to revoke"
        );
    })
    .await;
}

/// `revoke` of an id that does not exist is `NotFound`.
pub async fn revoke_unknown_is_not_found(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("revoke_unknown_is_not_found", store, |store| async move {
        let outcome = store
            .revoke(&OwnerId::new("alice"), KeyId::new_random(), now())
            .await
            .expect("revoke");
        assert_eq!(
            outcome,
            RevokeOutcome::NotFound,
            "revoke of an unknown id must be Ok(NotFound)"
        );
    })
    .await;
}

/// `record_last_used` applies a whole batch, never moves `last_used_at` backwards (also
/// within one batch), and ignores unknown ids.
pub async fn record_last_used_never_moves_backwards_and_ignores_unknown_ids(
    store: Arc<dyn KeyStore>,
) {
    crate::key_store_contract(
        "record_last_used_never_moves_backwards_and_ignores_unknown_ids",
        store,
        |store| async move {
            let t0 = now();
            let (_, a) = new_record("alice", "a", t0);
            let (_, b) = new_record("alice", "b", t0);
            let (_, c) = new_record("bob", "c", t0);
            for r in [&a, &b, &c] {
                insert(&store, r).await;
            }
            let used = |id: KeyId, secs: i64| LastUsed {
                id,
                at: t0 + time::Duration::seconds(secs),
            };
            store
                .record_last_used(&[])
                .await
                .expect("an empty batch is fine");
            store
                .record_last_used(&[
                    used(a.id, 10),
                    used(KeyId::new_random(), 11),
                    used(b.id, 20),
                ])
                .await
                .expect("a batch with an unknown id must succeed");
            assert_eq!(
                must_find(&store, a.id).await.last_used_at,
                Some(t0 + 10 * SECOND),
                "record_last_used must set last_used_at to the batch's time"
            );
            assert_eq!(
                must_find(&store, b.id).await.last_used_at,
                Some(t0 + 20 * SECOND),
                "record_last_used must set last_used_at to the batch's time"
            );
            assert_eq!(
                must_find(&store, c.id).await.last_used_at,
                None,
                "a key not in the batch changed"
            );

            store
                .record_last_used(&[used(a.id, 5), used(b.id, 30)])
                .await
                .expect("batch");
            assert_eq!(
                must_find(&store, a.id).await.last_used_at,
                Some(t0 + 10 * SECOND),
                "moved backwards"
            );
            assert_eq!(
                must_find(&store, b.id).await.last_used_at,
                Some(t0 + 30 * SECOND),
                "record_last_used must move last_used_at forwards"
            );

            store
                .record_last_used(&[used(c.id, 50), used(c.id, 40)])
                .await
                .expect("batch");
            assert_eq!(
                must_find(&store, c.id).await.last_used_at,
                Some(t0 + 50 * SECOND),
                "the latest time of a batch must win, whatever its position"
            );
            let others = must_find(&store, c.id).await;
            assert_eq!(
                KeyRecord {
                    last_used_at: None,
                    ..others
                },
                c,
                "record_last_used changed other fields"
            );
        },
    )
    .await;
}

/// Through [`nexora_auth::Authenticator`]: create, authenticate, list, flush last-used, rotate,
/// revoke — the path a server takes, on this store.
pub async fn authenticator_key_lifecycle(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("authenticator_key_lifecycle", store, |store| async move {
        let auth = authenticator(store.clone());
        let alice = OwnerId::new("alice");
        let created = auth
            .create_key_for(
                &alice,
                &scopes(&["agents:read", "keys:manage"]),
                NewKey::named("CI"),
            )
            .await
            .expect("create");
        let principal = auth
            .authenticate(created.key.expose())
            .await
            .expect("a new key authenticates");
        assert_eq!(
            principal.owner(),
            &alice,
            "authenticate must return the owner the key was created for"
        );
        assert!(
            principal.has_scope("keys:manage"),
            "authenticate must return the scopes the key was created with"
        );
        assert_eq!(
            auth.list_keys(&acting_as(&alice)).await.expect("list"),
            vec![created.info.clone()],
            "list_keys must return the created key"
        );

        assert_eq!(
            auth.flush_last_used().await.expect("flush"),
            1,
            "one use queued"
        );
        let used = must_find(&store, created.info.id).await.last_used_at;
        assert!(
            used.is_some_and(|at| at >= created.info.created_at),
            "last_used_at not written: {used:?}"
        );

        let (unknown, _) = new_record("alice", "never stored", now());
        let refused = auth.authenticate(unknown.expose()).await;
        assert!(
            matches!(
                refused,
                Err(AuthError::InvalidToken(InvalidReason::UnknownKey))
            ),
            "an unknown key must be a 401 UnknownKey, got {refused:?}"
        );

        let rotated = auth
            .rotate_key(
                &acting_as(&alice),
                created.info.id,
                RotateOptions::immediate(),
            )
            .await
            .expect("rotate");
        assert_eq!(rotated.info.id, created.info.id, "rotation keeps the id");
        assert!(
            auth.authenticate(created.key.expose()).await.is_err(),
            "old key works after rotation"
        );
        auth.authenticate(rotated.key.expose())
            .await
            .expect("new key works");
        auth.revoke_key(
            &acting_as(&alice),
            created.info.id,
            RevokeOptions::key_only(),
        )
        .await
        .expect("revoke");
        assert!(
            auth.authenticate(rotated.key.expose()).await.is_err(),
            "revoked key works"
        );
        assert!(
            auth.list_keys(&acting_as(&alice))
                .await
                .expect("list")
                .is_empty(),
            "list_keys must not return a revoked key"
        );
    })
    .await;
}

/// Expiry is judged with the [`nexora_auth::Authenticator`]'s clock: a key works until its
/// `expires_at`, then neither authenticates nor rotates (`KeyExpired`).
pub async fn authenticator_expiry_follows_its_clock(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "authenticator_expiry_follows_its_clock",
        store,
        |store| async move {
            let clock = Arc::new(ManualClock::new(now()));
            let auth = authenticator_with(store.clone(), None, clock.clone());
            let alice = OwnerId::new("alice");
            let start = nexora_auth::Clock::now(&*clock);
            let request = NewKey::named("short-lived").expiring_at(start + 600 * SECOND);
            let created = auth
                .create_key_for(&alice, &scopes(&["a"]), request)
                .await
                .expect("create");
            assert_eq!(
                must_find(&store, created.info.id).await.expires_at,
                Some(start + 600 * SECOND),
                "find must return the expires_at create_key was given"
            );
            auth.authenticate(created.key.expose())
                .await
                .expect("works before expiry");
            clock.advance(599 * SECOND);
            let rotated = auth
                .rotate_key(
                    &acting_as(&alice),
                    created.info.id,
                    RotateOptions::immediate(),
                )
                .await;
            let rotated = rotated.expect("rotates just before expiry");
            clock.advance(SECOND);
            let refused = auth.authenticate(rotated.key.expose()).await;
            assert!(
                matches!(
                    refused,
                    Err(AuthError::InvalidToken(InvalidReason::Expired))
                ),
                "an expired key must be refused as expired, got {refused:?}"
            );
            let refused = auth
                .rotate_key(
                    &acting_as(&alice),
                    created.info.id,
                    RotateOptions::immediate(),
                )
                .await;
            assert!(
                matches!(refused, Err(AuthError::KeyExpired)),
                "rotating an expired key: {refused:?}"
            );
        },
    )
    .await;
}

/// Rotation is atomic, for readers and writers: while many tasks authenticate through a real
/// [`nexora_auth::Authenticator`], the key is rotated again and again, each time by **two
/// concurrent rotations with a grace period**. Each pair forms a chain (the second keeps the
/// first's digest as `previous`), so after a pair returns both its keys work, every key of the
/// pairs before fails, and the checkers see exactly that: a key of an earlier pair never
/// succeeds, and a key of the newest pair never fails unless a newer pair has started.
///
/// (With one rotating task and no grace period, as this contract once ran, a rotate that reads,
/// checks and then writes in separate steps has no other writer to race with and passes;
/// two concurrent rotations with grace leave it keeping the same old digest twice, and the key
/// one of them handed back never works.)
pub async fn rotation_is_atomic_under_concurrency(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "rotation_is_atomic_under_concurrency",
        store,
        |store| async move {
            const PAIRS: usize = 30;
            const CHECKERS: usize = 6;
            const GRACE: Duration = Duration::from_secs(600);

            struct Shared {
                /// Pairs of rotations begun (counted before the pair is released).
                started: AtomicU64,
                /// The keys of every generation (the created key, then each pair); index =
                /// generation. Pushed after both rotations of the pair returned.
                keys: RwLock<Vec<Vec<String>>>,
                stop: AtomicBool,
            }

            let auth = authenticator(store.clone());
            let owner = OwnerId::new("rotator");
            let created = auth
                .create_key_for(&owner, &scopes(&["a"]), NewKey::named("hot"))
                .await
                .unwrap_or_else(|e| panic!("create_key failed: {e:?}"));
            let id = created.info.id;
            let shared = Arc::new(Shared {
                started: AtomicU64::new(0),
                keys: RwLock::new(vec![vec![created.key.expose().to_owned()]]),
                stop: AtomicBool::new(false),
            });

            let mut checkers = Vec::with_capacity(CHECKERS);
            for n in 0..CHECKERS {
                let auth = auth.clone();
                let shared = shared.clone();
                checkers.push(tokio::spawn(async move {
                    let (mut current_ok, mut old_checked) = (0_u64, 0_u64);
                    while !shared.stop.load(Ordering::SeqCst) {
                        let (generation, current, old) = {
                            let keys = shared
                                .keys
                                .read()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            let g = keys.len() - 1;
                            // Alternate which old generation is tried: the last one is the
                            // sharpest test.
                            let old = (g > 0).then(|| {
                                let older = if n % 2 == 0 { g - 1 } else { (g * 7 + n) % g };
                                keys[older].clone()
                            });
                            (g, keys[g].clone(), old)
                        };
                        for old in old.iter().flatten() {
                            let result = auth.authenticate(old).await;
                            assert!(
                                result.is_err(),
                                "authenticate with a key of a generation before {generation}, \
                                 replaced by two rotations that had returned, must fail"
                            );
                            old_checked += 1;
                        }
                        for key in &current {
                            match auth.authenticate(key).await {
                                Ok(_) => current_ok += 1,
                                Err(e) => {
                                    let started = shared.started.load(Ordering::SeqCst);
                                    assert!(
                                        started > generation as u64,
                                        "authenticate with a key of the newest generation \
                                         ({generation}) must succeed while no newer rotation \
                                         has started (both keys of a pair of rotations with \
                                         grace work), got {e:?}"
                                    );
                                    assert!(
                                        matches!(e, AuthError::InvalidToken(_)),
                                        "authenticate during rotation must fail as a bad \
                                         credential (401), got {e:?}"
                                    );
                                }
                            }
                        }
                        tokio::task::yield_now().await;
                    }
                    (current_ok, old_checked)
                }));
            }

            let mut before = vec![created.key];
            for pair in 0..PAIRS {
                shared.started.fetch_add(1, Ordering::SeqCst);
                let handed_back =
                    rotate_concurrently(&auth, &owner, id, Some(GRACE), 2, pair).await;
                before =
                    check_rotation_round(&store, &auth, id, &before, handed_back, true, pair).await;
                shared
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(before.iter().map(|k| k.expose().to_owned()).collect());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            shared.stop.store(true, Ordering::SeqCst);
            let (mut current_ok, mut old_checked) = (0, 0);
            for checker in checkers {
                match checker.await {
                    Ok((ok, old)) => {
                        current_ok += ok;
                        old_checked += old;
                    }
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => panic!("checker task failed: {e}"),
                }
            }
            assert!(
                current_ok > 0 && old_checked > 0,
                "the checkers did not run ({current_ok} current, {old_checked} old checks)"
            );
        },
    )
    .await;
}

/// A new record of `parent`'s owner, created by `parent`.
fn child_of(parent: &KeyRecord, name: &str) -> KeyRecord {
    let (_, mut record) = new_record(parent.owner.as_str(), name, now());
    record.created_by = Some(parent.id);
    record
}

/// `created_by` round-trips through `insert`, `find` and `list`.
pub async fn created_by_round_trips(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("created_by_round_trips", store, |store| async move {
        let (_, root) = new_record("alice", "root", now());
        insert(&store, &root).await;
        let child = child_of(&root, "child");
        insert(&store, &child).await;
        assert_eq!(
            must_find(&store, child.id).await,
            child,
            "find must return created_by as inserted"
        );
        assert_eq!(
            must_find(&store, root.id).await.created_by,
            None,
            "a key without a creating key must keep created_by = None"
        );
        let listed = list(&store, "alice").await;
        assert!(
            listed.contains(&child) && listed.contains(&root),
            "list must return created_by as inserted: {listed:?}"
        );
    })
    .await;
}

/// `insert` of a key whose creator is revoked, missing, or another owner's is
/// `CreatorRevoked`, and stores nothing.
pub async fn insert_refuses_a_revoked_missing_or_foreign_creator(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "insert_refuses_a_revoked_missing_or_foreign_creator",
        store,
        |store| async move {
            let (_, live) = new_record("alice", "live", now());
            let (_, revoked) = new_record("alice", "revoked", now());
            insert(&store, &live).await;
            insert(&store, &revoked).await;
            store
                .revoke(&revoked.owner, revoked.id, now())
                .await
                .expect("revoke");
            let (_, mut orphan) = new_record("alice", "orphan", now());
            orphan.created_by = Some(KeyId::new_random());
            let (_, mut foreign) = new_record("mallory", "foreign", now());
            foreign.created_by = Some(live.id);
            for (what, record) in [
                ("a revoked creator", child_of(&revoked, "child of revoked")),
                ("a missing creator", orphan),
                ("another owner's creator", foreign),
            ] {
                let result = store.insert(&record).await;
                assert!(
                    matches!(result, Err(StoreError::CreatorRevoked)),
                    "insert with {what} must be CreatorRevoked, got {result:?}"
                );
                assert_eq!(
                    find(&store, record.id).await,
                    None,
                    "insert with {what} must store nothing"
                );
            }
            let child = child_of(&live, "child of live");
            insert(&store, &child).await;
        },
    )
    .await;
}

/// `revoke_tree` revokes the key and every key reachable through `created_by` from it
/// (children, grandchildren), returns exactly those it revoked, keeps earlier revocation
/// timestamps, and touches nothing else; it works on an already revoked key too.
pub async fn revoke_tree_revokes_every_descendant_and_nothing_else(store: Arc<dyn KeyStore>) {
    crate::key_store_contract("revoke_tree_revokes_every_descendant_and_nothing_else", store, |store| async move {
        let t0 = now();
        let (_, root) = new_record("alice", "root", t0);
        insert(&store, &root).await;
        let a = child_of(&root, "a");
        let b = child_of(&root, "b");
        insert(&store, &a).await;
        insert(&store, &b).await;
        let aa = child_of(&a, "aa");
        let earlier = child_of(&a, "revoked earlier");
        insert(&store, &aa).await;
        insert(&store, &earlier).await;
        store
            .revoke(&earlier.owner, earlier.id, t0 - SECOND)
            .await
            .expect("revoke");
        let (_, sibling) = new_record("alice", "sibling", t0);
        insert(&store, &sibling).await;
        let nephew = child_of(&sibling, "nephew");
        insert(&store, &nephew).await;
        let (_, bobs) = new_record("bob", "bob's", t0);
        insert(&store, &bobs).await;

        let alice = OwnerId::new("alice");
        let at = t0 + SECOND;
        let wrong_owner = store
            .revoke_tree(&OwnerId::new("mallory"), root.id, at)
            .await
            .expect("revoke_tree");
        assert_eq!(
            wrong_owner.root,
            RevokeOutcome::NotFound,
            "revoke_tree must be owner-scoped"
        );
        assert!(wrong_owner.descendants.is_empty(), "revoke_tree of another owner's key must revoke no descendants");
        let unknown = store
            .revoke_tree(&alice, KeyId::new_random(), at)
            .await
            .expect("revoke_tree");
        assert_eq!(unknown.root, RevokeOutcome::NotFound, "revoke_tree of an unknown id must be NotFound");
        assert_eq!(
            must_find(&store, root.id).await.revoked_at,
            None,
            "a refused revoke_tree changed the key"
        );

        let outcome = store
            .revoke_tree(&alice, root.id, at)
            .await
            .expect("revoke_tree");
        assert_eq!(
            outcome.root,
            RevokeOutcome::Revoked,
            "revoke_tree of a live key"
        );
        let mut got = outcome.descendants.clone();
        got.sort();
        let mut want = vec![a.id, b.id, aa.id];
        want.sort();
        assert_eq!(
            got, want,
            "revoke_tree must return exactly the descendants it revoked (not earlier-revoked ones)"
        );
        for (name, id) in [("root", root.id), ("a", a.id), ("b", b.id), ("aa", aa.id)] {
            assert_eq!(
                must_find(&store, id).await.revoked_at,
                Some(at),
                "{name} must be revoked at the given instant"
            );
        }
        assert_eq!(
            must_find(&store, earlier.id).await.revoked_at,
            Some(t0 - SECOND),
            "an earlier revocation keeps its timestamp"
        );
        for (name, id) in [
            ("sibling", sibling.id),
            ("nephew", nephew.id),
            ("bob's", bobs.id),
        ] {
            assert_eq!(
                must_find(&store, id).await.revoked_at,
                None,
                "revoke_tree must not touch {name} (outside the tree)"
            );
        }
        let again = store
            .revoke_tree(&alice, root.id, at + SECOND)
            .await
            .expect("revoke_tree");
        assert_eq!(
            (again.root, again.descendants.len()),
            (RevokeOutcome::AlreadyRevoked, 0),
            "revoke_tree twice: already revoked, nothing more"
        );

        // A plain revoke first, the cascade later: the tree still goes.
        store.revoke(&alice, sibling.id, at).await.expect("revoke");
        let late = store
            .revoke_tree(&alice, sibling.id, at + SECOND)
            .await
            .expect("revoke_tree");
        assert_eq!(
            (late.root, late.descendants),
            (RevokeOutcome::AlreadyRevoked, vec![nephew.id]),
            "revoke_tree of a revoked key must still revoke its descendants"
        );
        assert_eq!(must_find(&store, sibling.id).await.revoked_at, Some(at), "revoke_tree of a revoked key must keep its first revoked_at");
    })
    .await;
}

/// `revoke_tree` and inserts of keys created inside the tree are atomic with respect to each
/// other: after both, every key that was inserted is revoked, and every refused insert was
/// `CreatorRevoked`. A store that checks the creator and inserts in two steps fails this.
pub async fn revoke_tree_and_child_inserts_never_interleave(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "revoke_tree_and_child_inserts_never_interleave",
        store,
        |store| async move {
            const ROUNDS: usize = 20;
            const WRITERS: usize = 4;
            // A writer stops at its first refusal; this bounds a store that never refuses.
            const MAX_CHAIN: usize = 200;
            for round in 0..ROUNDS {
                let (_, root) = new_record("alice", &format!("root {round}"), now());
                insert(&store, &root).await;
                let inserted_so_far = Arc::new(AtomicU64::new(0));
                let mut writers = Vec::new();
                for w in 0..WRITERS {
                    let (store, root, counter) =
                        (store.clone(), root.clone(), inserted_so_far.clone());
                    writers.push(tokio::spawn(async move {
                        // Each writer grows a chain under the root until refused: child,
                        // grandchild, …, so it is still writing when the tree is revoked.
                        let mut parent = root;
                        let mut inserted = Vec::new();
                        for depth in 0..MAX_CHAIN {
                            let child = child_of(&parent, &format!("w{w} d{depth}"));
                            match store.insert(&child).await {
                                Ok(()) => {
                                    inserted.push(child.id);
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    parent = child;
                                }
                                Err(StoreError::CreatorRevoked) => break,
                                Err(e) => panic!(
                                    "round {round}: insert of a child of a live key must be Ok \
                                     or CreatorRevoked, got {e:?}"
                                ),
                            }
                            tokio::task::yield_now().await;
                        }
                        inserted
                    }));
                }
                // Revoke while the writers are busy.
                while inserted_so_far.load(Ordering::SeqCst) < (WRITERS + round % 4) as u64
                    && !writers.iter().all(tokio::task::JoinHandle::is_finished)
                {
                    tokio::task::yield_now().await;
                }
                store
                    .revoke_tree(&root.owner, root.id, now())
                    .await
                    .unwrap_or_else(|e| panic!("revoke_tree failed: {e:?}"));
                for writer in writers {
                    for id in writer.await.expect("writer task") {
                        assert!(
                            must_find(&store, id).await.revoked_at.is_some(),
                            "round {round}: a key inserted under a tree being revoked escaped \
                             the cascade: insert must check its creator and insert in one atomic \
                             step with respect to revoke_tree"
                        );
                    }
                }
            }
        },
    )
    .await;
}

/// Every owner the contracts write keys for, and the fixed ids they insert: a store that
/// already holds one of them was not given to the contract empty.
const KIT_OWNERS: [&str; 7] = ["alice", "bob", "carol", "mallory", "rotator", "unused", "x"];
const FIXED_IDS: [u128; 6] = [1, 3, 5, 7, 9, u128::MAX - 1];

/// Checks, as far as the trait lets it, that the store is empty: `list` is empty for every
/// owner the contracts use, and `find` of every fixed id they insert is `None` (`list` hides
/// revoked keys; the probe catches a leftover of an earlier run).
pub(crate) async fn expect_empty(store: &Arc<dyn KeyStore>) {
    for owner in KIT_OWNERS {
        match store.list(&OwnerId::new(owner)).await {
            Ok(keys) if keys.is_empty() => {}
            Ok(keys) => panic!(
                "the store given to the contract is not empty: list({owner:?}) returned {} \
                 key(s) before the contract wrote anything; {}",
                keys.len(),
                crate::NOT_EMPTY_HINT
            ),
            Err(e) => panic!("list({owner:?}) failed before the contract started: {e:?}"),
        }
    }
    for n in FIXED_IDS {
        let id = KeyId::from_uuid(uuid::Uuid::from_u128(n));
        match store.find(id).await {
            Ok(None) => {}
            Ok(Some(record)) => panic!(
                "the store given to the contract is not empty: find({id}) returned a key of \
                 owner {:?} before the contract inserted it; {}",
                record.owner,
                crate::NOT_EMPTY_HINT
            ),
            Err(e) => panic!("find({id}) failed before the contract started: {e:?}"),
        }
    }
}

/// `find_credentials` agrees with `find` field for field, for an active key, a key rotated
/// with a grace period, a revoked key, an expired key and an unknown id.
pub async fn find_credentials_agrees_with_find(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "find_credentials_agrees_with_find",
        store,
        |store| async move {
            let t0 = now();
            let (_, active) = new_record("alice", "active", t0);
            let (_, graced) = new_record("alice", "rotated with grace", t0);
            let (_, revoked) = new_record("alice", "revoked", t0);
            let (_, mut expired) = new_record("alice", "expired", t0 - 7200 * SECOND);
            expired.expires_at = Some(t0 - 3600 * SECOND);
            for r in [&active, &graced, &revoked, &expired] {
                insert(&store, r).await;
            }
            let (_, rot) = rotation(t0, Some(t0 + 300 * SECOND));
            let outcome = store.rotate(&graced.owner, graced.id, &rot).await;
            assert!(
                matches!(outcome, Ok(RotateOutcome::Rotated(_))),
                "rotate with grace of an active key must be Ok(Rotated), got {outcome:?}"
            );
            let outcome = store.revoke(&revoked.owner, revoked.id, t0 + SECOND).await;
            assert!(
                matches!(outcome, Ok(RevokeOutcome::Revoked)),
                "revoke of an active key must be Ok(Revoked), got {outcome:?}"
            );
            for (state, id) in [
                ("an active key", active.id),
                ("a key rotated with grace", graced.id),
                ("a revoked key", revoked.id),
                ("an expired key", expired.id),
                ("an unknown id", KeyId::new_random()),
            ] {
                let found = find(&store, id).await.map(KeyCredentials::from);
                let credentials = store
                    .find_credentials(id)
                    .await
                    .unwrap_or_else(|e| panic!("find_credentials of {state} failed: {e:?}"));
                assert_eq!(
                    credentials, found,
                    "find_credentials of {state} must return what find returns, minus name and \
                 display (left: find_credentials, right: find)"
                );
            }
        },
    )
    .await;
}

/// Every timestamp the kit writes has a sub-millisecond part, and comes back to the
/// microsecond through `insert`, `rotate` (`grace_until`), `revoke` and `record_last_used`.
pub async fn timestamps_round_trip_to_the_microsecond(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "timestamps_round_trip_to_the_microsecond",
        store,
        |store| async move {
            // 123_457 µs: neither whole milliseconds nor a rounding-friendly value.
            let odd = |t: OffsetDateTime| {
                t.replace_microsecond(123_457)
                    .expect("123457 is a valid microsecond")
            };
            let t0 = odd(now());
            let (_, mut record) = new_record("alice", "precise", t0);
            record.created_at = t0;
            record.last_used_at = Some(t0 + SECOND);
            record.expires_at = Some(t0 + 3600 * SECOND);
            let (_, old) = new_record("alice", "old", t0);
            record.previous = Some(PreviousDigest {
                digest: old.digest,
                valid_until: t0 + 60 * SECOND,
            });
            insert(&store, &record).await;
            assert_eq!(
                must_find(&store, record.id).await,
                record,
                "find after insert must return every timestamp to the microsecond (the store \
                 may not keep less precision than microseconds)"
            );
            let (_, rot) = rotation(t0 + 2 * SECOND, Some(t0 + 120 * SECOND));
            let outcome = store.rotate(&record.owner, record.id, &rot).await;
            assert!(
                matches!(outcome, Ok(RotateOutcome::Rotated(_))),
                "rotate of an active key must be Ok(Rotated), got {outcome:?}"
            );
            assert_eq!(
                must_find(&store, record.id)
                    .await
                    .previous
                    .map(|p| p.valid_until),
                Some(t0 + 120 * SECOND),
                "find after rotate must return grace_until to the microsecond"
            );
            store
                .record_last_used(&[LastUsed {
                    id: record.id,
                    at: t0 + 5 * SECOND,
                }])
                .await
                .unwrap_or_else(|e| panic!("record_last_used failed: {e:?}"));
            assert_eq!(
                must_find(&store, record.id).await.last_used_at,
                Some(t0 + 5 * SECOND),
                "find after record_last_used must return last_used_at to the microsecond"
            );
            let outcome = store
                .revoke(&record.owner, record.id, t0 + 7 * SECOND)
                .await;
            assert!(
                matches!(outcome, Ok(RevokeOutcome::Revoked)),
                "revoke of an active key must be Ok(Revoked), got {outcome:?}"
            );
            assert_eq!(
                must_find(&store, record.id).await.revoked_at,
                Some(t0 + 7 * SECOND),
                "find after revoke must return revoked_at to the microsecond"
            );
        },
    )
    .await;
}

/// Rounds of concurrent rotations in the contracts below.
const ROTATION_ROUNDS: usize = 25;
/// Concurrent rotations of one key per round.
const ROTATORS: usize = 4;

/// Rotates `id` from `count` tasks released together; every rotation must succeed (nothing
/// revokes or expires the key). Returns the keys handed back.
async fn rotate_concurrently(
    auth: &Authenticator,
    owner: &OwnerId,
    id: KeyId,
    grace: Option<Duration>,
    count: usize,
    round: usize,
) -> Vec<ApiKey> {
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (auth, owner, barrier) = (auth.clone(), owner.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let options =
                    grace.map_or_else(RotateOptions::immediate, RotateOptions::with_grace);
                auth.rotate_key(&acting_as(&owner), id, options).await
            })
        })
        .collect();
    let mut keys = Vec::with_capacity(count);
    for task in tasks {
        match task.await {
            Ok(Ok(created)) => {
                assert_eq!(
                    created.info.display,
                    created.key.display_fragment(),
                    "round {round}: the record rotate returned must carry the display fragment \
                     of the digest it wrote"
                );
                keys.push(created.key);
            }
            Ok(Err(e)) => panic!(
                "round {round}: rotate_key of an active key during {count} concurrent \
                 rotations must succeed (each in turn), got {e:?}"
            ),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("round {round}: rotating task failed: {e}"),
        }
    }
    keys
}

/// Checks the state after a round of concurrent rotations: `find` holds the digest and display
/// of one handed-back key (the last rotation), with grace `previous` holds the digest of another
/// handed-back key (the one the last rotation replaced), and exactly those keys authenticate;
/// every key that worked before the round fails. Returns the keys that work now.
async fn check_rotation_round(
    store: &Arc<dyn KeyStore>,
    auth: &Authenticator,
    id: KeyId,
    before: &[ApiKey],
    handed_back: Vec<ApiKey>,
    grace: bool,
    round: usize,
) -> Vec<ApiKey> {
    let peppers = crate::peppers();
    let count = handed_back.len();
    let stored = must_find(store, id).await;
    let Some(last) = handed_back
        .iter()
        .position(|k| peppers.digest(k) == stored.digest)
    else {
        panic!(
            "round {round}: after {count} concurrent rotations, find must return the digest \
             of one of the keys rotate handed back (rotate is not atomic: a write was lost)"
        );
    };
    assert_eq!(
        stored.display,
        handed_back[last].display_fragment(),
        "round {round}: after concurrent rotations, find must return the display fragment of \
         the same rotation as the digest (rotate is not atomic: digest and display come from \
         different rotations)"
    );
    let mut working = vec![last];
    if grace {
        let Some(previous) = stored.previous else {
            panic!(
                "round {round}: after concurrent rotations with grace, find must return the \
                 replaced digest as previous, got None"
            );
        };
        let Some(replaced) = handed_back
            .iter()
            .position(|k| peppers.digest(k) == previous.digest)
        else {
            panic!(
                "round {round}: after {count} concurrent rotations with grace, previous must \
                 be the digest of the key the last rotation replaced (another key rotate handed \
                 back); it is a digest from before the round: the rotations overwrote each \
                 other, so keys handed back to callers never work (rotate must read and write \
                 in one atomic step)"
            );
        };
        working.push(replaced);
    } else {
        assert_eq!(
            stored.previous, None,
            "round {round}: after concurrent rotations without grace, find must return no \
             previous digest"
        );
    }
    for (n, key) in handed_back.iter().enumerate() {
        let result = auth.authenticate(key.expose()).await;
        if working.contains(&n) {
            assert!(
                result.is_ok(),
                "round {round}: authenticate with the key of the last rotation (or the one it \
                 replaced, during its grace) must succeed, got {result:?}"
            );
        } else {
            assert!(
                result.is_err(),
                "round {round}: authenticate with a key replaced by a later rotation must fail"
            );
        }
    }
    for key in before {
        assert!(
            auth.authenticate(key.expose()).await.is_err(),
            "round {round}: authenticate with a key from before {count} rotations must fail"
        );
    }
    working
        .into_iter()
        .map(|n| handed_back[n].clone())
        .collect()
}

async fn concurrent_rotation_rounds(store: Arc<dyn KeyStore>, grace: Option<Duration>) {
    let auth = authenticator(store.clone());
    let owner = OwnerId::new("rotator");
    let created = auth
        .create_key_for(&owner, &scopes(&["a"]), NewKey::named("contended"))
        .await
        .unwrap_or_else(|e| panic!("create_key failed: {e:?}"));
    let id = created.info.id;
    let mut before = vec![created.key];
    for round in 0..ROTATION_ROUNDS {
        let handed_back = rotate_concurrently(&auth, &owner, id, grace, ROTATORS, round).await;
        before = check_rotation_round(
            &store,
            &auth,
            id,
            &before,
            handed_back,
            grace.is_some(),
            round,
        )
        .await;
    }
}

/// Rounds of concurrent rotations of one key without grace, through a real
/// [`nexora_auth::Authenticator`]: after each round the key's digest and display are those of
/// one key `rotate` handed back, that key alone authenticates, and every earlier key fails.
pub async fn concurrent_rotations_hand_back_working_keys(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "concurrent_rotations_hand_back_working_keys",
        store,
        |store| async move { concurrent_rotation_rounds(store, None).await },
    )
    .await;
}

/// Rounds of concurrent rotations of one key with a grace period: the rotations form one chain,
/// so after each round the current digest is one handed-back key's and `previous` is another
/// handed-back key's (never a digest from before the round, which is what a read-check-write
/// rotate leaves behind), exactly those two keys authenticate, and every earlier key fails.
pub async fn concurrent_rotations_with_grace_form_one_chain(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "concurrent_rotations_with_grace_form_one_chain",
        store,
        |store| async move {
            concurrent_rotation_rounds(store, Some(Duration::from_secs(600))).await;
        },
    )
    .await;
}

/// Rotations racing a revoke of the same key, with and without grace: every rotation succeeds
/// or is refused as [`AuthError::KeyNotFound`] (revoked), the revoke succeeds, the key ends
/// revoked with no previous digest, and no key — the original or any handed back — works.
/// (First, without a race: `revoke` of a key rotated with grace clears `previous`.)
pub async fn rotation_racing_revoke_ends_revoked(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "rotation_racing_revoke_ends_revoked",
        store,
        |store| async move {
            const ROUNDS: usize = 16;
            let auth = authenticator(store.clone());
            let owner = OwnerId::new("rotator");
            // Without a race first: revoke clears the previous digest.
            let (_, record) = new_record("rotator", "sequential", now());
            insert(&store, &record).await;
            let (_, rot) = rotation(now(), Some(now() + 600 * SECOND));
            let outcome = store.rotate(&record.owner, record.id, &rot).await;
            assert!(
                matches!(outcome, Ok(RotateOutcome::Rotated(_))),
                "rotate with grace of an active key must be Ok(Rotated), got {outcome:?}"
            );
            let outcome = store.revoke(&record.owner, record.id, now()).await;
            assert!(
                matches!(outcome, Ok(RevokeOutcome::Revoked)),
                "revoke of an active key must be Ok(Revoked), got {outcome:?}"
            );
            assert_eq!(
                must_find(&store, record.id).await.previous,
                None,
                "revoke of a key rotated with grace must clear previous"
            );
            for round in 0..ROUNDS {
                let created = auth
                    .create_key_for(&owner, &scopes(&["a"]), NewKey::named(format!("r{round}")))
                    .await
                    .unwrap_or_else(|e| panic!("create_key failed: {e:?}"));
                let id = created.info.id;
                let grace = (round % 2 == 0).then(|| Duration::from_secs(600));
                let barrier = Arc::new(tokio::sync::Barrier::new(ROTATORS + 1));
                let rotators: Vec<_> = (0..ROTATORS)
                    .map(|_| {
                        let (auth, owner, barrier) = (auth.clone(), owner.clone(), barrier.clone());
                        tokio::spawn(async move {
                            barrier.wait().await;
                            let options = grace
                                .map_or_else(RotateOptions::immediate, RotateOptions::with_grace);
                            auth.rotate_key(&acting_as(&owner), id, options).await
                        })
                    })
                    .collect();
                let revoker = {
                    let (auth, owner, barrier) = (auth.clone(), owner.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        for _ in 0..round % 4 {
                            tokio::task::yield_now().await;
                        }
                        auth.revoke_key(&acting_as(&owner), id, RevokeOptions::key_only())
                            .await
                    })
                };
                let mut keys = vec![created.key];
                for rotator in rotators {
                    match rotator.await.expect("rotating task") {
                        Ok(rotated) => keys.push(rotated.key),
                        Err(AuthError::KeyNotFound) => {}
                        Err(e) => panic!(
                            "round {round}: rotate_key racing revoke_key must succeed or be \
                             refused as KeyNotFound (revoked), got {e:?}"
                        ),
                    }
                }
                let revoked = revoker.await.expect("revoking task");
                assert!(
                    revoked.is_ok(),
                    "round {round}: revoke_key of a key that only rotations race must succeed, \
                     got {revoked:?}"
                );
                let stored = must_find(&store, id).await;
                assert!(
                    stored.revoked_at.is_some(),
                    "round {round}: after rotate racing revoke, find must return the key \
                     revoked (a rotation wrote back a record it read before the revoke)"
                );
                assert_eq!(
                    stored.previous, None,
                    "round {round}: after rotate racing revoke, find must return no previous \
                     digest (revoke clears it; a rotation wrote it after the revoke: rotate \
                     must check and write in one atomic step)"
                );
                for key in &keys {
                    assert!(
                        auth.authenticate(key.expose()).await.is_err(),
                        "round {round}: after rotate racing revoke, no key of the revoked key may \
                         authenticate"
                    );
                }
            }
        },
    )
    .await;
}

/// Concurrent `revoke` calls (and, in other rounds, `revoke_tree` calls) on one active key: exactly one reports
/// [`RevokeOutcome::Revoked`], every other [`RevokeOutcome::AlreadyRevoked`], and `revoked_at`
/// is the instant the winning call gave.
pub async fn concurrent_revokes_report_exactly_one_revoked(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "concurrent_revokes_report_exactly_one_revoked",
        store,
        |store| async move {
            const ROUNDS: usize = 20;
            const REVOKERS: usize = 6;
            for round in 0..ROUNDS {
                let (_, record) = new_record("alice", &format!("r{round}"), now());
                insert(&store, &record).await;
                let t0 = now();
                let barrier = Arc::new(tokio::sync::Barrier::new(REVOKERS));
                let tasks: Vec<_> = (0..REVOKERS)
                    .map(|n| {
                        let (store, owner, barrier) =
                            (store.clone(), record.owner.clone(), barrier.clone());
                        let id = record.id;
                        // A distinct instant per caller, so revoked_at names the winner.
                        let at =
                            t0 + time::Duration::microseconds(i64::try_from(n).unwrap_or(0) + 1);
                        tokio::spawn(async move {
                            barrier.wait().await;
                            // All revoke, or all revoke_tree: the first caller released
                            // must not be the one atomic kind while the others race.
                            let outcome = if round % 2 == 0 {
                                store.revoke(&owner, id, at).await
                            } else {
                                store.revoke_tree(&owner, id, at).await.map(|o| o.root)
                            };
                            (at, outcome)
                        })
                    })
                    .collect();
                let mut winners = Vec::new();
                for task in tasks {
                    let (at, outcome) = task.await.expect("revoking task");
                    match outcome {
                        Ok(RevokeOutcome::Revoked) => winners.push(at),
                        Ok(RevokeOutcome::AlreadyRevoked) => {}
                        other => panic!(
                            "round {round}: revoke/revoke_tree of an existing key must be \
                             Revoked or AlreadyRevoked, got {other:?}"
                        ),
                    }
                }
                assert_eq!(
                    winners.len(),
                    1,
                    "round {round}: of {REVOKERS} concurrent revoke/revoke_tree calls exactly one \
                     must report Revoked, the others AlreadyRevoked (revoke must check and set \
                     revoked_at in one atomic step)"
                );
                assert_eq!(
                    must_find(&store, record.id).await.revoked_at,
                    winners.first().copied(),
                    "round {round}: after concurrent revokes, find must return the revoked_at \
                     of the call that reported Revoked"
                );
            }
        },
    )
    .await;
}

// ----- rate limits and credits -------------------------------------------------------------

/// `t` with a sub-millisecond part that no rounding keeps: 123,457 µs.
fn odd_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_microsecond(123_457)
        .expect("123457 is a valid microsecond")
}

fn rate(limit: u32, period_secs: u32) -> RateLimit {
    RateLimit::new(limit, period_secs).expect("a valid test rate limit")
}

fn refill(amount: u64, every_secs: u64) -> Refill {
    Refill::new(amount, every_secs).expect("a valid test refill")
}

/// Credits with a refill, refilled at an instant with a sub-millisecond part.
fn credits(remaining: u64) -> Credits {
    Credits {
        remaining,
        refill: Some(refill(1_000, 3_600)),
        refilled_at: odd_micros(now()) - 30 * SECOND,
    }
}

/// A new record of `owner` with a rate limit and credits.
fn limited(owner: &str, name: &str) -> KeyRecord {
    let (_, mut record) = new_record(owner, name, now());
    record.rate_limit = Some(rate(100, 60));
    record.credits = Some(credits(500));
    record
}

async fn update(
    store: &Arc<dyn KeyStore>,
    owner: &OwnerId,
    id: KeyId,
    changes: &KeyUpdate,
) -> Option<KeyRecord> {
    store
        .update_key(owner, id, changes)
        .await
        .unwrap_or_else(|e| panic!("update_key failed: {e:?}"))
}

async fn swap(store: &Arc<dyn KeyStore>, id: KeyId, current: &Credits, new: &Credits) -> bool {
    store
        .swap_credits(id, current, new)
        .await
        .unwrap_or_else(|e| panic!("swap_credits failed: {e:?}"))
}

/// `find`, `find_credentials` and `list` all show `expected`, the record as last written.
async fn reads_agree(store: &Arc<dyn KeyStore>, expected: &KeyRecord, after: &str) {
    assert_eq!(
        &must_find(store, expected.id).await,
        expected,
        "find after {after} must return the record as written"
    );
    let credentials = store
        .find_credentials(expected.id)
        .await
        .unwrap_or_else(|e| panic!("find_credentials after {after} failed: {e:?}"));
    assert_eq!(
        credentials,
        Some(KeyCredentials::from(expected.clone())),
        "find_credentials after {after} must agree with the record (rate_limit and metered \
         included)"
    );
    if expected.revoked_at.is_none() {
        let listed = list(store, expected.owner.as_str()).await;
        assert!(
            listed.contains(expected),
            "list after {after} must return the record as written: {listed:?}"
        );
    }
}

/// A key's rate limit and credits (with and without a refill, at the bounds of their ranges,
/// `refilled_at` to the microsecond) round-trip through `insert`, `find`, `find_credentials`
/// (`rate_limit`, `metered`) and `list`.
pub async fn limits_round_trip_through_insert_and_every_read(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "limits_round_trip_through_insert_and_every_read",
        store,
        |store| async move {
            let mut records = vec![limited("alice", "limited")];
            let (_, mut rate_only) = new_record("alice", "rate only", now());
            rate_only.rate_limit = Some(rate(1, MAX_PERIOD_SECS));
            records.push(rate_only);
            let (_, mut metered) = new_record("alice", "metered, no refill", now());
            metered.credits = Some(Credits {
                remaining: 0,
                refill: None,
                refilled_at: odd_micros(now()),
            });
            records.push(metered);
            let (_, mut largest) = new_record("alice", "largest", now());
            largest.rate_limit = Some(rate(MAX_RATE_LIMIT, MAX_PERIOD_SECS));
            largest.credits = Some(Credits {
                remaining: MAX_CREDITS,
                refill: Some(refill(MAX_CREDITS, MAX_REFILL_SECS)),
                refilled_at: odd_micros(now()),
            });
            records.push(largest);
            let (_, plain) = new_record("alice", "no limits", now());
            records.push(plain);
            for record in &records {
                insert(&store, record).await;
            }
            for record in &records {
                reads_agree(&store, record, &format!("insert of {:?}", record.name)).await;
            }
        },
    )
    .await;
}

/// `update_key` writes exactly the fields of the update that are `Some` (`Some(None)` removes
/// a limit, an empty update changes nothing), returns the updated record, and `find`,
/// `find_credentials` and `list` show it; other keys are untouched.
pub async fn update_key_changes_only_the_given_fields(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "update_key_changes_only_the_given_fields",
        store,
        |store| async move {
            let t0 = now();
            let mut record = limited("alice", "before");
            record.last_used_at = Some(t0 - SECOND);
            record.expires_at = Some(t0 + 3600 * SECOND);
            let other = limited("alice", "other");
            insert(&store, &record).await;
            insert(&store, &other).await;
            let changed_credits = Credits {
                remaining: 7,
                refill: None,
                refilled_at: odd_micros(t0) + 2 * SECOND,
            };
            let steps: Vec<(&str, KeyUpdate)> = vec![
                ("an empty update", KeyUpdate::default()),
                (
                    "a new name",
                    KeyUpdate {
                        name: Some("renamed ✓".to_owned()),
                        ..KeyUpdate::default()
                    },
                ),
                (
                    "a new rate limit",
                    KeyUpdate {
                        rate_limit: Some(Some(rate(5, 1))),
                        ..KeyUpdate::default()
                    },
                ),
                (
                    "new credits",
                    KeyUpdate {
                        credits: Some(Some(changed_credits)),
                        ..KeyUpdate::default()
                    },
                ),
                (
                    "the rate limit removed",
                    KeyUpdate {
                        rate_limit: Some(None),
                        ..KeyUpdate::default()
                    },
                ),
                (
                    "the credits removed",
                    KeyUpdate {
                        credits: Some(None),
                        ..KeyUpdate::default()
                    },
                ),
                (
                    "every field at once",
                    KeyUpdate {
                        name: Some("all".to_owned()),
                        rate_limit: Some(Some(rate(9, 90))),
                        credits: Some(Some(credits(3))),
                    },
                ),
            ];
            let mut expected = record.clone();
            for (what, changes) in steps {
                if let Some(name) = &changes.name {
                    expected.name.clone_from(name);
                }
                if let Some(rate) = changes.rate_limit {
                    expected.rate_limit = rate;
                }
                if let Some(credits) = changes.credits {
                    expected.credits = credits;
                }
                let returned = update(&store, &record.owner, record.id, &changes).await;
                assert_eq!(
                    returned.as_ref(),
                    Some(&expected),
                    "update_key with {what} must return the record with exactly those fields \
                     changed"
                );
                reads_agree(&store, &expected, &format!("update_key with {what}")).await;
            }
            reads_agree(&store, &other, "updates of another key").await;
        },
    )
    .await;
}

/// `update_key` of an unknown id, of another owner's key and of a revoked key is `Ok(None)`
/// and changes nothing.
pub async fn update_key_refuses_unknown_foreign_and_revoked_keys(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "update_key_refuses_unknown_foreign_and_revoked_keys",
        store,
        |store| async move {
            let live = limited("alice", "live");
            let revoked = limited("alice", "revoked");
            insert(&store, &live).await;
            insert(&store, &revoked).await;
            let outcome = store.revoke(&revoked.owner, revoked.id, now()).await;
            assert!(
                matches!(outcome, Ok(RevokeOutcome::Revoked)),
                "revoke of an active key must be Ok(Revoked), got {outcome:?}"
            );
            let revoked = must_find(&store, revoked.id).await;
            let changes = KeyUpdate {
                name: Some("taken over".to_owned()),
                rate_limit: Some(None),
                credits: Some(Some(credits(1_000_000))),
            };
            for (what, owner, id) in [
                ("an unknown id", OwnerId::new("alice"), KeyId::new_random()),
                ("another owner's key", OwnerId::new("mallory"), live.id),
                ("a revoked key", revoked.owner.clone(), revoked.id),
            ] {
                assert_eq!(
                    update(&store, &owner, id, &changes).await,
                    None,
                    "update_key of {what} must be Ok(None)"
                );
            }
            reads_agree(&store, &live, "refused updates").await;
            reads_agree(&store, &revoked, "a refused update of a revoked key").await;
        },
    )
    .await;
}

/// `rotate` keeps the key's rate limit and credits, in the record it returns and in the store.
pub async fn rotate_keeps_limits_and_credits(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "rotate_keeps_limits_and_credits",
        store,
        |store| async move {
            let record = limited("alice", "rotated");
            insert(&store, &record).await;
            let (_, rot) = rotation(now(), Some(now() + 60 * SECOND));
            let rotated = match store.rotate(&record.owner, record.id, &rot).await {
                Ok(RotateOutcome::Rotated(rotated)) => rotated,
                other => panic!("rotate of an active key must be Ok(Rotated), got {other:?}"),
            };
            assert_eq!(
                (rotated.rate_limit, rotated.credits),
                (record.rate_limit, record.credits),
                "the record rotate returns must keep the rate limit and credits"
            );
            reads_agree(&store, &rotated, "rotate").await;
        },
    )
    .await;
}

/// `swap_credits` writes only when the stored credits are exactly `current`: a difference in
/// any one field (`remaining`, the refill's amount or interval, a refill or none, `refilled_at`
/// by one microsecond) refuses it and changes nothing, as do an unknown id and a key without
/// credits; a swap changes no other field.
pub async fn swap_credits_succeeds_only_from_the_exact_current(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "swap_credits_succeeds_only_from_the_exact_current",
        store,
        |store| async move {
            let mut record = limited("alice", "metered");
            record.last_used_at = Some(now() - SECOND);
            let (_, unmetered) = new_record("alice", "unmetered", now());
            insert(&store, &record).await;
            insert(&store, &unmetered).await;
            let current = record.credits.expect("limited() sets credits");
            let new = Credits {
                remaining: current.remaining - 10,
                ..current
            };
            let micro = time::Duration::MICROSECOND;
            let near_misses = [
                (
                    "remaining",
                    Credits {
                        remaining: current.remaining + 1,
                        ..current
                    },
                ),
                (
                    "the refill amount",
                    Credits {
                        refill: Some(refill(999, 3_600)),
                        ..current
                    },
                ),
                (
                    "the refill interval",
                    Credits {
                        refill: Some(refill(1_000, 3_599)),
                        ..current
                    },
                ),
                (
                    "no refill",
                    Credits {
                        refill: None,
                        ..current
                    },
                ),
                (
                    "refilled_at, 1 µs later",
                    Credits {
                        refilled_at: current.refilled_at + micro,
                        ..current
                    },
                ),
                (
                    "refilled_at, 1 µs earlier",
                    Credits {
                        refilled_at: current.refilled_at - micro,
                        ..current
                    },
                ),
            ];
            for (what, wrong) in near_misses {
                assert!(
                    !swap(&store, record.id, &wrong, &new).await,
                    "swap_credits from a `current` that differs in {what} must return false"
                );
                reads_agree(&store, &record, &format!("a refused swap ({what})")).await;
            }
            assert!(
                !swap(&store, KeyId::new_random(), &current, &new).await,
                "swap_credits of an unknown id must return false"
            );
            assert!(
                !swap(&store, unmetered.id, &current, &new).await,
                "swap_credits of a key without credits must return false"
            );
            reads_agree(
                &store,
                &unmetered,
                "a refused swap of a key without credits",
            )
            .await;
            assert!(
                swap(&store, record.id, &current, &new).await,
                "swap_credits from the exact stored credits must return true"
            );
            let expected = KeyRecord {
                credits: Some(new),
                ..record.clone()
            };
            reads_agree(&store, &expected, "a swap").await;
            assert!(
                !swap(&store, record.id, &current, &new).await,
                "a second swap from the replaced credits must return false"
            );
            // A swap may change the refill and its time too (a refill fell due).
            let refilled = Credits {
                remaining: 1_000,
                refill: Some(refill(1_000, 3_600)),
                refilled_at: new.refilled_at + 3_600 * SECOND,
            };
            assert!(
                swap(&store, record.id, &new, &refilled).await,
                "swap_credits to refilled credits must return true"
            );
            reads_agree(
                &store,
                &KeyRecord {
                    credits: Some(refilled),
                    ..record
                },
                "a swap to refilled credits",
            )
            .await;
        },
    )
    .await;
}

/// Of 16 concurrent `swap_credits` from the same current credits (each to a different new
/// value), exactly one returns true, and the store holds that one's credits.
pub async fn concurrent_credit_swaps_have_exactly_one_winner(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "concurrent_credit_swaps_have_exactly_one_winner",
        store,
        |store| async move {
            const ROUNDS: u64 = 8;
            const SWAPPERS: usize = 16;
            let record = limited("alice", "contended");
            insert(&store, &record).await;
            let mut current = record.credits.expect("limited() sets credits");
            for round in 0..ROUNDS {
                let barrier = Arc::new(tokio::sync::Barrier::new(SWAPPERS));
                let tasks: Vec<_> = (1..=SWAPPERS as u64)
                    .map(|n| {
                        let (store, barrier) = (store.clone(), barrier.clone());
                        let new = Credits {
                            remaining: current.remaining - n,
                            ..current
                        };
                        tokio::spawn(async move {
                            barrier.wait().await;
                            (new, store.swap_credits(record.id, &current, &new).await)
                        })
                    })
                    .collect();
                let mut winners = Vec::new();
                for task in tasks {
                    match task.await.expect("swapping task") {
                        (new, Ok(true)) => winners.push(new),
                        (_, Ok(false)) => {}
                        (_, Err(e)) => panic!("round {round}: swap_credits failed: {e:?}"),
                    }
                }
                assert_eq!(
                    winners.len(),
                    1,
                    "round {round}: of {SWAPPERS} concurrent swap_credits from the same current \
                     credits exactly one must return true (compare and write in one atomic \
                     step), got {}",
                    winners.len()
                );
                assert_eq!(
                    must_find(&store, record.id).await.credits,
                    winners.first().copied(),
                    "round {round}: the store must hold the credits of the swap that won"
                );
                current = winners[0];
            }
        },
    )
    .await;
}

/// `swap_credits` of a revoked key returns false and changes nothing.
pub async fn swap_credits_refuses_revoked_keys(store: Arc<dyn KeyStore>) {
    crate::key_store_contract(
        "swap_credits_refuses_revoked_keys",
        store,
        |store| async move {
            let record = limited("alice", "revoked");
            insert(&store, &record).await;
            let outcome = store.revoke(&record.owner, record.id, now()).await;
            assert!(
                matches!(outcome, Ok(RevokeOutcome::Revoked)),
                "revoke of an active key must be Ok(Revoked), got {outcome:?}"
            );
            let revoked = must_find(&store, record.id).await;
            let current = record.credits.expect("limited() sets credits");
            let new = Credits {
                remaining: current.remaining + 100,
                ..current
            };
            assert!(
                !swap(&store, record.id, &current, &new).await,
                "swap_credits of a revoked key must return false"
            );
            reads_agree(&store, &revoked, "a refused swap of a revoked key").await;
        },
    )
    .await;
}

/// Every [`KeyStore`] contract of this module with its name, in the order
/// [`crate::key_store_conformance!`] generates them: for running the kit by hand (on a store
/// built per call) or checking which contract a broken store fails.
pub fn contracts() -> Vec<(&'static str, crate::Contract<dyn KeyStore>)> {
    __key_store_contracts!(list key_store ())
}
