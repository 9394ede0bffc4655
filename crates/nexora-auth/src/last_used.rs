//! Recording `last_used_at` without a store write per request.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use dashmap::DashMap;
use time::OffsetDateTime;

use crate::{KeyId, store::LastUsed};

/// Remembers, per key, when a use was last queued, and queues at most one write per key per
/// interval. The queue is drained in batches by [`crate::Authenticator::flush_last_used`].
#[derive(Debug)]
pub(crate) struct LastUsedTracker {
    interval_secs: i64,
    queued_at: DashMap<KeyId, i64>,
    pending: Mutex<HashMap<KeyId, OffsetDateTime>>,
}

impl LastUsedTracker {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval_secs: i64::try_from(interval.as_secs()).unwrap_or(i64::MAX),
            queued_at: DashMap::new(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The interval, in whole seconds.
    pub(crate) fn interval_secs(&self) -> i64 {
        self.interval_secs
    }

    /// Notes a use of `id` at `now`. The common case is one shard read.
    pub(crate) fn note(&self, id: KeyId, now: OffsetDateTime) {
        let now_secs = now.unix_timestamp();
        if let Some(at) = self.queued_at.get(&id)
            && now_secs.saturating_sub(*at) < self.interval_secs
        {
            return;
        }
        self.queued_at.insert(id, now_secs);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = pending.entry(id).or_insert(now);
        if *slot < now {
            *slot = now;
        }
    }

    /// Takes everything queued.
    pub(crate) fn take(&self) -> Vec<LastUsed> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .drain()
            .map(|(id, at)| LastUsed { id, at })
            .collect()
    }

    /// Puts back a batch whose write failed (keeping the later time per key).
    pub(crate) fn requeue(&self, batch: Vec<LastUsed>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for LastUsed { id, at } in batch {
            let slot = pending.entry(id).or_insert(at);
            if *slot < at {
                *slot = at;
            }
        }
    }

    /// Forgets a key (after revocation).
    pub(crate) fn forget(&self, id: KeyId) {
        self.queued_at.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_write_per_interval() {
        let t = LastUsedTracker::new(Duration::from_secs(5));
        let id = KeyId::new_random();
        let t0 = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        for s in 0..5 {
            t.note(id, t0 + Duration::from_secs(s));
        }
        assert_eq!(t.take(), vec![LastUsed { id, at: t0 }]);
        t.note(id, t0 + Duration::from_secs(4));
        assert!(t.take().is_empty());
        t.note(id, t0 + Duration::from_secs(5));
        assert_eq!(t.take().len(), 1);
    }

    #[test]
    fn requeue_keeps_the_latest() {
        let t = LastUsedTracker::new(Duration::from_secs(5));
        let id = KeyId::new_random();
        let t0 = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        t.note(id, t0 + Duration::from_secs(10));
        t.requeue(vec![LastUsed { id, at: t0 }]);
        assert_eq!(
            t.take(),
            vec![LastUsed {
                id,
                at: t0 + Duration::from_secs(10)
            }]
        );
    }
}
