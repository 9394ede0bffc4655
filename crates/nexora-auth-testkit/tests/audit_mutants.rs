//! The audit contracts check themselves: audit stores broken the way a newcomer plausibly
//! breaks them each fail a named contract; the same store unbroken passes them all.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use nexora_auth::{AuditEvent, AuditStore, StoreError, audit::AuditQuery};
use time::OffsetDateTime;

/// One way of breaking the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutant {
    /// No mutation: the control, which must pass everything.
    Correct,
    /// `list` ignores the owner.
    ListIgnoresOwner,
    /// `list` returns the cursor's own event again (`id <= before`).
    BeforeIsInclusive,
    /// `list` returns the oldest events first.
    OldestFirst,
    /// `record` stores the batch up to its first duplicate.
    PartialBatch,
    /// `prune` also deletes events at the instant given.
    PruneInclusive,
    /// Times are kept to the millisecond.
    MillisecondTimes,
}

/// A `Mutex<Vec>` audit store, correct unless told otherwise.
struct MutantStore {
    mutant: Mutant,
    events: Mutex<Vec<AuditEvent>>,
}

impl MutantStore {
    fn new(mutant: Mutant) -> Self {
        Self {
            mutant,
            events: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl AuditStore for MutantStore {
    async fn record(&self, batch: &[AuditEvent]) -> Result<(), StoreError> {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let mut added = Vec::new();
        for event in batch {
            if events
                .iter()
                .chain(&added)
                .any(|e: &AuditEvent| e.id == event.id)
            {
                if self.mutant == Mutant::PartialBatch {
                    events.extend(added);
                }
                return Err(StoreError::DuplicateId);
            }
            let mut event = event.clone();
            if self.mutant == Mutant::MillisecondTimes {
                event.at = event
                    .at
                    .replace_millisecond(event.at.millisecond())
                    .expect("a valid millisecond");
            }
            added.push(event);
        }
        events.extend(added);
        Ok(())
    }

    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let mut found: Vec<AuditEvent> = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| {
                self.mutant == Mutant::ListIgnoresOwner
                    || query.owner.is_none()
                    || e.owner == query.owner
            })
            .filter(|e| match query.before {
                None => true,
                Some(before) if self.mutant == Mutant::BeforeIsInclusive => e.id <= before,
                Some(before) => e.id < before,
            })
            .cloned()
            .collect();
        found.sort_by_key(|e| e.id);
        if self.mutant != Mutant::OldestFirst {
            found.reverse();
        }
        found.truncate(query.limit);
        Ok(found)
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let was = events.len();
        events.retain(|e| {
            if self.mutant == Mutant::PruneInclusive {
                e.at > before
            } else {
                e.at >= before
            }
        });
        Ok((was - events.len()) as u64)
    }
}

/// The audit contracts that fail on `mutant`; every failure names its contract.
fn caught_by(mutant: Mutant) -> Vec<&'static str> {
    let mut caught = Vec::new();
    for (name, contract) in nexora_auth_testkit::audit_store::contracts() {
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            nexora_auth_testkit::run(contract(Arc::new(MutantStore::new(mutant))));
        }));
        if let Err(payload) = failed {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert!(
                message.contains(&format!("AuditStore contract `{name}` failed")),
                "{mutant:?}: the failure of {name} does not name it: {message}"
            );
            caught.push(name);
        }
    }
    caught
}

#[test]
fn the_correct_store_passes_and_every_mutant_fails_its_contract() {
    assert_eq!(caught_by(Mutant::Correct), Vec::<&str>::new());
    for (mutant, contract) in [
        (
            Mutant::ListIgnoresOwner,
            "audit_list_for_owner_sees_only_that_owner",
        ),
        (
            Mutant::BeforeIsInclusive,
            "audit_pages_with_before_visit_every_event_once",
        ),
        (
            Mutant::OldestFirst,
            "audit_list_is_newest_first_and_limited",
        ),
        (Mutant::PartialBatch, "audit_record_is_all_or_nothing"),
        (
            Mutant::PruneInclusive,
            "audit_prune_deletes_only_older_events",
        ),
        (
            Mutant::MillisecondTimes,
            "audit_record_then_list_round_trips",
        ),
    ] {
        let caught = caught_by(mutant);
        assert!(
            caught.contains(&contract),
            "{mutant:?} must fail `{contract}`; caught by {caught:?}"
        );
    }
}
