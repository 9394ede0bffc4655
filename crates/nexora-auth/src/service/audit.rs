//! The one path every audit event takes: stamped, traced, stored (see [`crate::audit`] for the
//! durability rule).

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;
use uuid::{ContextV7, Timestamp, Uuid};

use super::{Authenticator, Principal};
use crate::{
    AuthError, Unavailable,
    audit::{self, AuditEvent, AuditQuery, AuditStore, EventId, NewAuditEvent},
};

/// The audit side of an [`Authenticator`]: its store, its event-id sequence and its count of
/// events the store failed to keep.
pub(super) struct Trail {
    store: Option<Arc<dyn AuditStore>>,
    /// Keeps the ids one authenticator makes strictly increasing within a millisecond.
    ids: Mutex<ContextV7>,
    lost: AtomicU64,
}

impl Trail {
    pub(super) fn new(store: Option<Arc<dyn AuditStore>>) -> Self {
        Self {
            store,
            ids: Mutex::new(ContextV7::new()),
            lost: AtomicU64::new(0),
        }
    }

    /// A version 7 id for an event at `at` (microseconds, so the clock's instant, is kept).
    fn next_id(&self, at: OffsetDateTime) -> EventId {
        let nanos = at.unix_timestamp_nanos();
        // Before 1970 only under a clock set by hand: ids then start at the epoch.
        let secs = u64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0);
        let subsec = u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0);
        let context = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        EventId::from_uuid(Uuid::new_v7(Timestamp::from_unix(&*context, secs, subsec)))
    }
}

/// `at` without its sub-microsecond part: what every store keeps.
fn micros(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        // A nanosecond rounded down stays below one second.
        .unwrap_or(at)
}

impl Authenticator {
    /// Records an event in the audit trail: stamps it with a time-ordered id and the
    /// authenticator's clock, bounds every field (see [`crate::audit`]), emits it as a
    /// `tracing` event under [`AUDIT_TARGET`](crate::audit::AUDIT_TARGET), and writes it to
    /// the audit store ([`AuthenticatorBuilder::audit`](crate::AuthenticatorBuilder::audit)).
    ///
    /// Call it after the change it describes has committed and before answering. It never
    /// fails: when the store cannot keep the event, the full event is logged at `ERROR` under
    /// the audit target and counted ([`Authenticator::audit_write_failures`]), so the change
    /// stands and the event is not lost to the log pipeline.
    pub async fn record_event(&self, event: NewAuditEvent) {
        self.record([event]).await;
    }

    /// Records a batch of events in one store write (see [`Authenticator::record_event`]).
    pub(crate) async fn record(&self, events: impl IntoIterator<Item = NewAuditEvent>) {
        let trail = &self.inner.audit;
        let at = micros(self.inner.clock.now());
        let events: Vec<AuditEvent> = events
            .into_iter()
            .map(|event| event.stamp(trail.next_id(at), at))
            .collect();
        if events.is_empty() {
            return;
        }
        for event in &events {
            audit::trace(event);
        }
        let Some(store) = &trail.store else { return };
        if let Err(error) = store.record(&events).await {
            for event in &events {
                audit::trace_lost(event, &error);
            }
            trail.lost.fetch_add(
                u64::try_from(events.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    /// How many audit events the audit store failed to keep since this authenticator was
    /// built (each was logged in full at `ERROR`; see [`crate::audit`]).
    pub fn audit_write_failures(&self) -> u64 {
        self.inner.audit.lost.load(Ordering::Relaxed)
    }

    /// The principal's owner's audit trail, newest first: at most `limit` events older than
    /// `before` (the last id of the previous page), never another owner's. Authorisation (the
    /// `audit:read` scope) is the caller's; without an audit store,
    /// [`Unavailable::NoAuditStore`].
    pub async fn audit_events(
        &self,
        principal: &Principal,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, AuthError> {
        let query = AuditQuery::for_owner(principal.owner().clone(), limit).before(before);
        Ok(self.audit_store()?.list(&query).await?)
    }

    /// Deletes the audit events older than `retention` by the authenticator's clock (a
    /// retention setting, run periodically); returns how many. Without an audit store,
    /// [`Unavailable::NoAuditStore`].
    pub async fn prune_audit_events(&self, retention: Duration) -> Result<u64, AuthError> {
        let cutoff = self.inner.clock.now() - retention;
        Ok(self.audit_store()?.prune(cutoff).await?)
    }

    /// The audit store, for admin tools that list or prune the whole trail; without one,
    /// [`Unavailable::NoAuditStore`].
    pub fn audit_store(&self) -> Result<&Arc<dyn AuditStore>, AuthError> {
        self.inner
            .audit
            .store
            .as_ref()
            .ok_or(AuthError::Unavailable(Unavailable::NoAuditStore))
    }
}
