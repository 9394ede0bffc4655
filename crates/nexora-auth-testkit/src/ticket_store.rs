//! The [`TicketStore`] contracts, one function each (what [`crate::ticket_store_conformance!`]
//! runs).
//!
//! Every function takes a fresh, empty store, first checks that it is empty (a prune of
//! everything removes nothing), and panics with a message naming the broken contract
//! (`TicketStore contract `…` failed: …`).
//!
//! Every `pub async fn` here is a contract: `build.rs` lists it for the conformance macro and
//! [`contracts`], so writing the function is all it takes to run it on every store.

use std::sync::Arc;

use nexora_auth::{
    AuthError, InvalidReason, MemoryKeyStore, NewKey, OwnerId, StoreError, TicketDigest,
    TicketRecord, TicketStore,
};
use time::OffsetDateTime;

use crate::{authenticator_builder, now, scopes};

const SECOND: time::Duration = time::Duration::SECOND;

/// A ticket record for `owner`, for the chat `chat` (if any), expiring at `expires_at`; its
/// digest is of a fresh random string, and its principal text is opaque to the store.
pub(crate) fn ticket(owner: &str, chat: Option<&str>, expires_at: OffsetDateTime) -> TicketRecord {
    TicketRecord {
        digest: TicketDigest::of(&uuid::Uuid::new_v4().to_string()),
        owner: OwnerId::new(owner),
        chat_id: chat.map(str::to_owned),
        principal: format!(
            r#"{{"kind":"key","note":"opaque to the store","owner":"{owner}","q":"\"✓\""}}"#
        ),
        created_at: now() - SECOND,
        expires_at,
    }
}

async fn insert(store: &Arc<dyn TicketStore>, record: &TicketRecord) {
    store
        .insert_ticket(record)
        .await
        .unwrap_or_else(|e| panic!("insert_ticket of a new ticket failed: {e:?}"));
}

async fn take(
    store: &Arc<dyn TicketStore>,
    digest: &TicketDigest,
    at: OffsetDateTime,
) -> Option<TicketRecord> {
    store
        .take_ticket(digest, at)
        .await
        .unwrap_or_else(|e| panic!("take_ticket failed: {e:?}"))
}

/// A store must be empty before a contract writes: pruning everything removes nothing.
pub(crate) async fn expect_empty(store: &Arc<dyn TicketStore>) {
    let far = now() + 3650 * time::Duration::DAY;
    match store.prune_tickets(far).await {
        Ok(0) => {}
        Ok(n) => panic!(
            "the store given to the contract is not empty: it held {n} ticket(s) before the \
             contract wrote anything; {}",
            crate::NOT_EMPTY_HINT
        ),
        Err(e) => panic!("prune_tickets failed before the contract started: {e:?}"),
    }
}

/// `take_ticket` returns the ticket exactly as inserted (every field, a chat id or none,
/// microsecond times, the principal text verbatim) — once: a second take is `None`.
pub async fn insert_then_take_round_trips_once(store: Arc<dyn TicketStore>) {
    crate::ticket_store_contract(
        "insert_then_take_round_trips_once",
        store,
        |store| async move {
            let t0 = now();
            let for_chat = ticket("alice", Some("chat-ü 1"), t0 + 30 * SECOND);
            let any_chat = ticket(
                "bob",
                None,
                t0 + 30 * SECOND + time::Duration::microseconds(333_333),
            );
            insert(&store, &for_chat).await;
            insert(&store, &any_chat).await;
            for record in [&for_chat, &any_chat] {
                assert_eq!(
                    take(&store, &record.digest, t0).await.as_ref(),
                    Some(record),
                    "take_ticket must return the ticket as inserted"
                );
                assert_eq!(
                    take(&store, &record.digest, t0).await,
                    None,
                    "a ticket must be taken once only"
                );
            }
        },
    )
    .await;
}

/// `take_ticket` of a digest never inserted is `Ok(None)`, not an error.
pub async fn take_unknown_is_none(store: Arc<dyn TicketStore>) {
    crate::ticket_store_contract("take_unknown_is_none", store, |store| async move {
        insert(&store, &ticket("alice", None, now() + 30 * SECOND)).await;
        let unknown = TicketDigest::of("never issued");
        assert_eq!(take(&store, &unknown, now()).await, None);
    })
    .await;
}

/// A ticket is not taken at or after its expiry (`expires_at <= now` is expired, compared with
/// the instant given, not the database's clock), and taken a microsecond before.
pub async fn expired_tickets_are_not_taken(store: Arc<dyn TicketStore>) {
    crate::ticket_store_contract("expired_tickets_are_not_taken", store, |store| async move {
        let t0 = now();
        let at_expiry = ticket("alice", None, t0);
        let past = ticket("alice", None, t0 - SECOND);
        let just_before = ticket("alice", None, t0 + time::Duration::MICROSECOND);
        for record in [&at_expiry, &past, &just_before] {
            insert(&store, record).await;
        }
        assert_eq!(
            take(&store, &at_expiry.digest, t0).await,
            None,
            "a ticket expiring at `now` is expired"
        );
        assert_eq!(take(&store, &past.digest, t0).await, None);
        assert!(
            take(&store, &just_before.digest, t0).await.is_some(),
            "a ticket expiring a microsecond after `now` is still good"
        );
    })
    .await;
}

/// A second `insert_ticket` of one digest is [`StoreError::DuplicateId`] and changes nothing.
pub async fn duplicate_digest_is_refused(store: Arc<dyn TicketStore>) {
    crate::ticket_store_contract("duplicate_digest_is_refused", store, |store| async move {
        let first = ticket("alice", Some("a"), now() + 30 * SECOND);
        insert(&store, &first).await;
        let mut second = ticket("mallory", Some("b"), now() + 60 * SECOND);
        second.digest = first.digest;
        match store.insert_ticket(&second).await {
            Err(StoreError::DuplicateId) => {}
            other => panic!("insert_ticket of an existing digest: want DuplicateId, got {other:?}"),
        }
        assert_eq!(
            take(&store, &first.digest, now()).await,
            Some(first),
            "the refused insert must leave the first ticket as it was"
        );
    })
    .await;
}

/// Of 50 concurrent takes of one ticket exactly one gets it: taking is one atomic step.
pub async fn concurrent_takes_get_a_ticket_once(store: Arc<dyn TicketStore>) {
    crate::ticket_store_contract(
        "concurrent_takes_get_a_ticket_once",
        store,
        |store| async move {
            for round in 0..5 {
                let record = ticket("alice", None, now() + 30 * SECOND);
                insert(&store, &record).await;
                let at = now();
                let takes: Vec<_> = (0..50)
                    .map(|_| {
                        let store = Arc::clone(&store);
                        let digest = record.digest;
                        tokio::spawn(async move { store.take_ticket(&digest, at).await })
                    })
                    .collect();
                let mut won = 0;
                for take in takes {
                    match take.await.expect("a take task panicked") {
                        Ok(Some(_)) => won += 1,
                        Ok(None) => {}
                        Err(e) => panic!("take_ticket failed: {e:?}"),
                    }
                }
                assert_eq!(
                    won, 1,
                    "round {round}: {won} of 50 concurrent takes got the ticket"
                );
            }
        },
    )
    .await;
}

/// `prune_tickets` removes exactly the tickets expired at the instant given and says how
/// many; the others can still be taken.
pub async fn prune_removes_only_expired_tickets(store: Arc<dyn TicketStore>) {
    crate::ticket_store_contract(
        "prune_removes_only_expired_tickets",
        store,
        |store| async move {
            let t0 = now();
            let expired: Vec<_> = (0..3)
                .map(|i| ticket("alice", None, t0 - i * SECOND))
                .collect();
            let live: Vec<_> = (1..3)
                .map(|i| ticket("alice", Some("c"), t0 + i * SECOND))
                .collect();
            for record in expired.iter().chain(&live) {
                insert(&store, record).await;
            }
            let pruned = store
                .prune_tickets(t0)
                .await
                .unwrap_or_else(|e| panic!("prune_tickets failed: {e:?}"));
            assert_eq!(pruned, 3, "prune_tickets must remove the 3 expired tickets");
            for record in &live {
                assert_eq!(
                    take(&store, &record.digest, t0 - SECOND).await.as_ref(),
                    Some(record),
                    "prune_tickets removed an unexpired ticket"
                );
            }
            for record in &expired {
                assert_eq!(
                    take(&store, &record.digest, t0 - 10 * SECOND).await,
                    None,
                    "an expired ticket survived prune_tickets"
                );
            }
        },
    )
    .await;
}

/// Through the authenticator: a ticket issued for a key's principal is redeemed once, for its
/// chat, as that key; a second redemption, another chat and an unknown ticket are refused as
/// bad credentials.
pub async fn authenticator_redeems_a_ticket_once(store: Arc<dyn TicketStore>) {
    crate::ticket_store_contract(
        "authenticator_redeems_a_ticket_once",
        store,
        |store| async move {
            let auth = authenticator_builder(Arc::new(MemoryKeyStore::new()))
                .ws_tickets(store)
                .build()
                .expect("a valid authenticator");
            let owner = OwnerId::new("alice");
            let created = auth
                .create_key_for(&owner, &scopes(&["agents:read"]), NewKey::named("ws"))
                .await
                .expect("create a key");
            let principal = auth
                .authenticate(created.key.expose())
                .await
                .expect("the key authenticates");
            let issued = auth
                .issue_ticket(&principal, Some("chat-1"))
                .await
                .expect("issue a ticket");
            let ticket = issued.ticket.expose();
            let redeemed = auth
                .redeem_ticket(ticket, Some("chat-1"))
                .await
                .expect("the ticket is redeemed once");
            assert_eq!(redeemed.key_id(), Some(created.info.id));
            let refused = |result: Result<_, AuthError>, reason: InvalidReason| match result {
                Err(AuthError::InvalidToken(r)) if r == reason => {}
                other => panic!("want InvalidToken({reason:?}), got {other:?}"),
            };
            refused(
                auth.redeem_ticket(ticket, Some("chat-1")).await,
                InvalidReason::UnknownTicket,
            );
            let other = auth
                .issue_ticket(&principal, Some("chat-1"))
                .await
                .expect("issue a ticket");
            refused(
                auth.redeem_ticket(other.ticket.expose(), Some("chat-2"))
                    .await,
                InvalidReason::TicketForAnotherChat,
            );
            refused(
                auth.redeem_ticket(other.ticket.expose(), Some("chat-1"))
                    .await,
                InvalidReason::UnknownTicket,
            );
        },
    )
    .await;
}

/// The contracts by name, each callable with a fresh store (for runners written by hand).
pub fn contracts() -> Vec<(&'static str, crate::Contract<dyn TicketStore>)> {
    __ticket_store_contracts!(list ticket_store ())
}
