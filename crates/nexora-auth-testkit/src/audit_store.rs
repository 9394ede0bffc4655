//! The [`AuditStore`] contracts, one function each (what [`crate::audit_store_conformance!`]
//! runs).
//!
//! Every `pub async fn` here is a contract: `build.rs` lists it for the conformance macro and
//! [`contracts`], so writing the function is all it takes to run it on every store. Helpers
//! stay private or `pub(crate)`.

use std::{net::IpAddr, sync::Arc};

use nexora_auth::{
    AuditEvent, AuditStore, KeyId, OwnerId, StoreError,
    audit::{Actor, AuditAction, AuditDetail, AuditOutcome, AuditQuery, EventId},
};
use time::OffsetDateTime;
use uuid::{ContextV7, Timestamp, Uuid};

use crate::now;

/// Makes events with increasing version 7 ids, as one authenticator does.
pub(crate) struct Events(ContextV7);

impl Events {
    pub(crate) fn new() -> Self {
        Self(ContextV7::new())
    }

    /// An event of `owner` (`None`: nobody's) at `at`, with every field set.
    pub(crate) fn at(&self, owner: Option<&str>, at: OffsetDateTime) -> AuditEvent {
        let nanos = at.unix_timestamp_nanos();
        let id = Uuid::new_v7(Timestamp::from_unix(
            &self.0,
            u64::try_from(nanos / 1_000_000_000).expect("after 1970"),
            u32::try_from(nanos % 1_000_000_000).expect("below a second"),
        ));
        let mut detail = AuditDetail::new();
        detail.insert("cascaded", 2_u64);
        detail.insert("url", "https://example.com/o'brien/\"leak\"?x=1&y=é");
        AuditEvent {
            id: EventId::from_uuid(id),
            at: crate::truncate_to_micros(at),
            action: AuditAction::KeyRevoked,
            actor: Actor::Key {
                key_id: KeyId::new_random(),
            },
            owner: owner.map(OwnerId::new),
            target: Some(KeyId::new_random().to_string()),
            client: Some(IpAddr::from([203, 0, 113, 7])),
            outcome: AuditOutcome::Success,
            detail,
        }
    }

    /// An event of `owner` now.
    pub(crate) fn of(&self, owner: Option<&str>) -> AuditEvent {
        self.at(owner, now())
    }
}

async fn record(store: &Arc<dyn AuditStore>, events: &[AuditEvent]) {
    store
        .record(events)
        .await
        .unwrap_or_else(|e| panic!("record of new events failed: {e:?}"));
}

async fn list(store: &Arc<dyn AuditStore>, query: &AuditQuery) -> Vec<AuditEvent> {
    store
        .list(query)
        .await
        .unwrap_or_else(|e| panic!("list({query:?}) failed: {e:?}"))
}

fn ids(events: &[AuditEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// Newest first, as `list` returns them.
fn newest_first(events: &[AuditEvent]) -> Vec<AuditEvent> {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.id));
    sorted
}

/// `record` keeps every field exactly (each actor kind, v4 and v6 clients, no owner, odd
/// text, detail), and `list` returns the events newest first.
pub async fn audit_record_then_list_round_trips(store: Arc<dyn AuditStore>) {
    crate::audit_store_contract(
        "audit_record_then_list_round_trips",
        store,
        |store| async move {
            let events = Events::new();
            let mut batch = Vec::new();
            for (i, actor) in [
                Actor::User {
                    user_id: OwnerId::new("u-o'brien \"q\" é"),
                },
                Actor::Key {
                    key_id: KeyId::new_random(),
                },
                Actor::system("github-secret-scanning"),
                Actor::Anonymous,
            ]
            .into_iter()
            .enumerate()
            {
                let mut event = events.of(if i == 3 { None } else { Some("alice") });
                event.actor = actor;
                event.action = AuditAction::ALL[i * 3 % AuditAction::ALL.len()];
                event.outcome = [
                    AuditOutcome::Success,
                    AuditOutcome::Failure,
                    AuditOutcome::Denied,
                ][i % 3];
                if i == 1 {
                    event.client = Some("2001:db8::1".parse().expect("an address"));
                    event.detail = AuditDetail::new();
                }
                if i == 2 {
                    event.client = None;
                    event.target = None;
                }
                batch.push(event);
            }
            record(&store, &batch).await;
            assert_eq!(
                list(&store, &AuditQuery::all(100)).await,
                newest_first(&batch),
                "list must return every recorded event exactly as written, newest first"
            );
        },
    )
    .await;
}

/// `list` returns at most `limit` events, the newest; separate `record` calls interleave by id.
pub async fn audit_list_is_newest_first_and_limited(store: Arc<dyn AuditStore>) {
    crate::audit_store_contract(
        "audit_list_is_newest_first_and_limited",
        store,
        |store| async move {
            let events = Events::new();
            let written: Vec<AuditEvent> = (0..5).map(|_| events.of(Some("alice"))).collect();
            // Two batches, the second holding the oldest and the newest.
            record(&store, &written[1..4]).await;
            record(&store, &[written[4].clone(), written[0].clone()]).await;
            let newest = newest_first(&written);
            assert_eq!(
                ids(&list(&store, &AuditQuery::all(3)).await),
                ids(&newest[..3]),
                "list with limit 3 must return the 3 newest events, newest first"
            );
            assert_eq!(
                list(&store, &AuditQuery::all(0)).await,
                Vec::new(),
                "list with limit 0 must return nothing"
            );
        },
    )
    .await;
}

/// With an owner, `list` returns that owner's events only: never another owner's, never
/// those of no owner.
pub async fn audit_list_for_owner_sees_only_that_owner(store: Arc<dyn AuditStore>) {
    crate::audit_store_contract(
        "audit_list_for_owner_sees_only_that_owner",
        store,
        |store| async move {
            let events = Events::new();
            let batch = vec![
                events.of(Some("alice")),
                events.of(Some("bob")),
                events.of(None),
                events.of(Some("alice")),
                events.of(Some("alicia")),
            ];
            record(&store, &batch).await;
            let alice = list(&store, &AuditQuery::for_owner(OwnerId::new("alice"), 100)).await;
            assert_eq!(
                ids(&alice),
                vec![batch[3].id, batch[0].id],
                "list for alice must return alice's events only, newest first"
            );
            let nobody = list(&store, &AuditQuery::for_owner(OwnerId::new("carol"), 100)).await;
            assert!(
                nobody.is_empty(),
                "list for an owner without events returned {nobody:?}"
            );
        },
    )
    .await;
}

/// Paging with `before` (the last id of each page) visits each of the owner's events once,
/// in order, and ends with an empty page.
pub async fn audit_pages_with_before_visit_every_event_once(store: Arc<dyn AuditStore>) {
    crate::audit_store_contract(
        "audit_pages_with_before_visit_every_event_once",
        store,
        |store| async move {
            let events = Events::new();
            let batch: Vec<AuditEvent> = (0..11)
                .map(|i| events.of(Some(if i % 3 == 0 { "bob" } else { "alice" })))
                .collect();
            record(&store, &batch).await;
            let expected: Vec<EventId> = ids(&newest_first(&batch))
                .into_iter()
                .filter(|id| {
                    batch
                        .iter()
                        .any(|e| e.id == *id && e.owner == Some("alice".into()))
                })
                .collect();
            let mut seen = Vec::new();
            let mut cursor = None;
            for _ in 0..10 {
                let page = list(
                    &store,
                    &AuditQuery::for_owner(OwnerId::new("alice"), 3).before(cursor),
                )
                .await;
                if page.is_empty() {
                    break;
                }
                assert!(page.len() <= 3, "a page holds at most `limit` events");
                cursor = page.last().map(|e| e.id);
                seen.extend(ids(&page));
            }
            assert_eq!(
                seen, expected,
                "paging with `before` must visit every event of the owner once, newest first"
            );
            let unknown = EventId::from_uuid(Uuid::nil());
            assert!(
                list(&store, &AuditQuery::all(10).before(Some(unknown)))
                    .await
                    .is_empty(),
                "no id is lower than the nil UUID"
            );
        },
    )
    .await;
}

/// A batch holding an id already stored is [`StoreError::DuplicateId`], and nothing of it is
/// stored.
pub async fn audit_record_is_all_or_nothing(store: Arc<dyn AuditStore>) {
    crate::audit_store_contract(
        "audit_record_is_all_or_nothing",
        store,
        |store| async move {
            let events = Events::new();
            let first = events.of(Some("alice"));
            record(&store, std::slice::from_ref(&first)).await;
            let fresh = events.of(Some("alice"));
            let mut again = first.clone();
            again.target = Some("changed".into());
            match store.record(&[fresh.clone(), again]).await {
                Err(StoreError::DuplicateId) => {}
                other => panic!("a batch with a stored id must be Err(DuplicateId), got {other:?}"),
            }
            assert_eq!(
                list(&store, &AuditQuery::all(10)).await,
                vec![first],
                "a refused batch must store nothing and change nothing"
            );
        },
    )
    .await;
}

/// `prune` deletes the events older than the instant given, keeps the others, and returns
/// how many it deleted.
pub async fn audit_prune_deletes_only_older_events(store: Arc<dyn AuditStore>) {
    crate::audit_store_contract(
        "audit_prune_deletes_only_older_events",
        store,
        |store| async move {
            let events = Events::new();
            let t = now();
            let day = time::Duration::DAY;
            let batch = vec![
                events.at(Some("alice"), t - day * 100),
                events.at(None, t - day * 91),
                events.at(Some("alice"), t - day * 90),
                events.at(Some("alice"), t),
            ];
            record(&store, &batch).await;
            let pruned = store
                .prune(t - day * 90)
                .await
                .unwrap_or_else(|e| panic!("prune failed: {e:?}"));
            assert_eq!(pruned, 2, "prune must delete exactly the 2 older events");
            assert_eq!(
                ids(&list(&store, &AuditQuery::all(10)).await),
                vec![batch[3].id, batch[2].id],
                "prune must keep events at or after the instant"
            );
            let again = store
                .prune(t - day * 90)
                .await
                .unwrap_or_else(|e| panic!("prune failed: {e:?}"));
            assert_eq!(again, 0, "a second prune has nothing to delete");
        },
    )
    .await;
}

/// A large batch (a cascade over many keys) is recorded in one call and listed whole.
pub async fn audit_large_batch(store: Arc<dyn AuditStore>) {
    crate::audit_store_contract("audit_large_batch", store, |store| async move {
        let events = Events::new();
        let batch: Vec<AuditEvent> = (0..1_000).map(|_| events.of(Some("alice"))).collect();
        record(&store, &batch).await;
        let listed = list(&store, &AuditQuery::for_owner(OwnerId::new("alice"), 2_000)).await;
        assert_eq!(
            ids(&listed),
            ids(&newest_first(&batch)),
            "every event of a 1000-event batch must be stored and listed in order"
        );
    })
    .await;
}

pub(crate) async fn expect_empty(store: &Arc<dyn AuditStore>) {
    match store.list(&AuditQuery::all(1)).await {
        Ok(events) if events.is_empty() => {}
        Ok(_) => panic!(
            "the store given to the contract is not empty: list returned an event before the \
             contract wrote anything; {}",
            crate::NOT_EMPTY_HINT
        ),
        Err(e) => panic!("list failed before the contract started: {e:?}"),
    }
}

/// Every contract of this module by name, as function pointers (for hand-written tests).
pub fn contracts() -> Vec<(&'static str, crate::Contract<dyn AuditStore>)> {
    __audit_store_contracts!(list audit_store ())
}
