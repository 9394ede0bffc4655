//! In-memory stores: the reference implementations of [`KeyStore`], [`UserStore`] and
//! [`TicketStore`].
//!
//! Both are sharded concurrent maps ([`dashmap`]): reads of different keys do not contend on
//! one lock, and no lock is ever held across an `.await` (no method awaits while holding one).
//!
//! Both report every change to the verification cache before the write returns
//! ([`Freshness::Synchronous`]): a revoked key is refused by the next request.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use dashmap::{DashMap, mapref::entry::Entry};
use time::OffsetDateTime;

use crate::{
    KeyId, Scopes,
    cache::{ChangeFeed, ChangeFeeds, Freshness},
    limits::{Credits, RateLimit},
    store::{
        CascadeOutcome, KeyCredentials, KeyRecord, KeyStore, KeyUpdate, LastUsed, OwnerId,
        PreviousDigest, RevokeOutcome, RotateOutcome, Rotation, StoreError, UserRecord, UserStore,
    },
    ticket::{TicketDigest, TicketRecord, TicketStore},
};

/// An in-memory [`KeyStore`]. Data lives as long as the value; cheap to share in an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    keys: DashMap<KeyId, KeyRecord>,
    by_owner: DashMap<OwnerId, Vec<KeyId>>,
    /// Held by inserts of keys created by a key and by `revoke_tree`, so that a cascade and a
    /// child's insert never interleave. Never held across an `.await`.
    lineage: Mutex<()>,
    feeds: ChangeFeeds,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records (revoked ones included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn expired(record: &KeyRecord, now: OffsetDateTime) -> bool {
    record.expires_at.is_some_and(|at| at <= now)
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let _lineage = record
            .created_by
            .map(|_| self.lineage.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(creator) = record.created_by {
            let live = self
                .keys
                .get(&creator)
                .is_some_and(|c| c.owner == record.owner && c.revoked_at.is_none());
            if !live {
                return Err(StoreError::CreatorRevoked);
            }
        }
        match self.keys.entry(record.id) {
            Entry::Occupied(_) => return Err(StoreError::DuplicateId),
            Entry::Vacant(slot) => {
                slot.insert(record.clone());
            }
        }
        self.by_owner
            .entry(record.owner.clone())
            .or_default()
            .push(record.id);
        // A cached "no such key" for this id is now wrong.
        self.feeds.key_changed(record.id);
        Ok(())
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.keys.get(&id).map(|r| r.clone()))
    }

    async fn find_credentials(&self, id: KeyId) -> Result<Option<KeyCredentials>, StoreError> {
        // Two reference-count increments; no string is copied on the hot path.
        Ok(self.keys.get(&id).map(|r| KeyCredentials {
            id: r.id,
            owner: r.owner.clone(),
            scopes: r.scopes.clone(),
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            digest: r.digest,
            previous: r.previous,
            rate_limit: r.rate_limit,
            metered: r.credits.is_some(),
        }))
    }

    async fn update_key(
        &self,
        owner: &OwnerId,
        id: KeyId,
        update: &KeyUpdate,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let updated = match self.keys.get_mut(&id) {
            Some(mut r) if &r.owner == owner && r.revoked_at.is_none() => {
                if let Some(name) = &update.name {
                    r.name.clone_from(name);
                }
                if let Some(rate_limit) = update.rate_limit {
                    r.rate_limit = rate_limit;
                }
                if let Some(credits) = update.credits {
                    r.credits = credits;
                }
                Some(r.clone())
            }
            _ => None,
        };
        if updated.is_some() {
            self.feeds.key_changed(id);
        }
        Ok(updated)
    }

    async fn swap_credits(
        &self,
        id: KeyId,
        current: &Credits,
        new: &Credits,
    ) -> Result<bool, StoreError> {
        Ok(match self.keys.get_mut(&id) {
            Some(mut r) if r.revoked_at.is_none() && r.credits.as_ref() == Some(current) => {
                r.credits = Some(*new);
                true
            }
            _ => false,
        })
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        let ids = self
            .by_owner
            .get(owner)
            .map(|ids| ids.clone())
            .unwrap_or_default();
        let mut records: Vec<KeyRecord> = ids
            .iter()
            .filter_map(|id| self.keys.get(id).map(|r| r.clone()))
            .filter(|r| r.revoked_at.is_none() && &r.owner == owner)
            .collect();
        records.sort_by_key(|r| (r.created_at, r.id));
        Ok(records)
    }

    async fn rotate(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        let outcome = self.rotate_now(owner, id, rotation);
        if let Ok(RotateOutcome::Rotated(_)) = &outcome {
            self.feeds.key_changed(id);
        }
        outcome
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let outcome = self.revoke_now(owner, id, at);
        if outcome == RevokeOutcome::Revoked {
            self.feeds.key_changed(id);
        }
        Ok(outcome)
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        let outcome = self.revoke_tree_now(owner, id, at);
        if outcome.root == RevokeOutcome::Revoked {
            self.feeds.key_changed(id);
        }
        for descendant in &outcome.descendants {
            self.feeds.key_changed(*descendant);
        }
        Ok(outcome)
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        for entry in batch {
            if let Some(mut record) = self.keys.get_mut(&entry.id)
                && record.last_used_at.is_none_or(|prev| prev < entry.at)
            {
                record.last_used_at = Some(entry.at);
            }
        }
        Ok(())
    }

    fn watch_changes(&self, feed: ChangeFeed) -> Freshness {
        self.feeds.add(feed);
        Freshness::Synchronous
    }
}

/// The writes, under the map's locks; the trait methods report them after the locks are
/// released.
impl MemoryKeyStore {
    fn rotate_now(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        // The shard write lock makes the check and the update one atomic step.
        let Some(mut record) = self.keys.get_mut(&id) else {
            return Ok(RotateOutcome::NotFound);
        };
        if &record.owner != owner {
            return Ok(RotateOutcome::NotFound);
        }
        if record.revoked_at.is_some() {
            return Ok(RotateOutcome::Revoked);
        }
        if expired(&record, rotation.now) {
            return Ok(RotateOutcome::Expired);
        }
        record.previous = rotation.grace_until.map(|valid_until| PreviousDigest {
            digest: record.digest,
            valid_until,
        });
        record.digest = rotation.digest;
        record.display.clone_from(&rotation.display);
        Ok(RotateOutcome::Rotated(record.clone()))
    }

    fn revoke_now(&self, owner: &OwnerId, id: KeyId, at: OffsetDateTime) -> RevokeOutcome {
        let Some(mut record) = self.keys.get_mut(&id) else {
            return RevokeOutcome::NotFound;
        };
        if &record.owner != owner {
            return RevokeOutcome::NotFound;
        }
        if record.revoked_at.is_some() {
            return RevokeOutcome::AlreadyRevoked;
        }
        record.revoked_at = Some(at);
        record.previous = None;
        RevokeOutcome::Revoked
    }

    fn revoke_tree_now(&self, owner: &OwnerId, id: KeyId, at: OffsetDateTime) -> CascadeOutcome {
        let _lineage = self.lineage.lock().unwrap_or_else(PoisonError::into_inner);
        let root = match self.keys.get_mut(&id) {
            Some(record) if &record.owner == owner => {
                let mut record = record;
                if record.revoked_at.is_some() {
                    RevokeOutcome::AlreadyRevoked
                } else {
                    record.revoked_at = Some(at);
                    record.previous = None;
                    RevokeOutcome::Revoked
                }
            }
            _ => return CascadeOutcome::new(RevokeOutcome::NotFound, Vec::new()),
        };
        let ids = self
            .by_owner
            .get(owner)
            .map(|ids| ids.clone())
            .unwrap_or_default();
        let mut tree = vec![id];
        let mut revoked = Vec::new();
        // Breadth-first over the owner's keys: each round adds the children of the last.
        let mut frontier = vec![id];
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for child in &ids {
                if tree.contains(child) {
                    continue;
                }
                if let Some(mut record) = self.keys.get_mut(child)
                    && record.created_by.is_some_and(|p| frontier.contains(&p))
                {
                    tree.push(*child);
                    next.push(*child);
                    if record.revoked_at.is_none() {
                        record.revoked_at = Some(at);
                        record.previous = None;
                        revoked.push(*child);
                    }
                }
            }
            frontier = next;
        }
        CascadeOutcome::new(root, revoked)
    }
}

/// An in-memory [`UserStore`].
#[derive(Debug, Default)]
pub struct MemoryUserStore {
    by_email: DashMap<String, UserRecord>,
    email_of: DashMap<OwnerId, String>,
    feeds: ChangeFeeds,
}

impl MemoryUserStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl UserStore for MemoryUserStore {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        match self.email_of.entry(user.id.clone()) {
            Entry::Occupied(_) => return Err(StoreError::DuplicateId),
            Entry::Vacant(slot) => match self.by_email.entry(user.email.clone()) {
                Entry::Occupied(_) => return Err(StoreError::DuplicateEmail),
                Entry::Vacant(email_slot) => {
                    email_slot.insert(user.clone());
                    slot.insert(user.email.clone());
                }
            },
        }
        self.feeds.user_changed(&user.id);
        Ok(())
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.by_email.get(email).map(|u| u.clone()))
    }

    async fn find_user(&self, id: &OwnerId) -> Result<Option<UserRecord>, StoreError> {
        let Some(email) = self.email_of.get(id).map(|e| e.clone()) else {
            return Ok(None);
        };
        Ok(self.by_email.get(&email).map(|u| u.clone()))
    }

    async fn update_password_hash(&self, id: &OwnerId, phc: &str) -> Result<bool, StoreError> {
        Ok(self.update_user(id, |user| user.password_hash = phc.to_owned()))
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut users: Vec<UserRecord> = self.by_email.iter().map(|u| u.clone()).collect();
        users.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(users)
    }

    async fn set_user_disabled(&self, id: &OwnerId, disabled: bool) -> Result<bool, StoreError> {
        let changed = self.update_user(id, |user| user.disabled = disabled);
        self.feeds.user_changed(id);
        Ok(changed)
    }

    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError> {
        let changed = self.update_user(id, |user| user.scopes = scopes.clone());
        self.feeds.user_changed(id);
        Ok(changed)
    }

    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError> {
        let Some((_, email)) = self.email_of.remove(id) else {
            return Ok(false);
        };
        self.by_email.remove(&email);
        self.feeds.user_changed(id);
        Ok(true)
    }

    async fn set_owner_rate_limit(
        &self,
        id: &OwnerId,
        limit: Option<RateLimit>,
    ) -> Result<bool, StoreError> {
        let changed = self.update_user(id, |user| user.rate_limit = limit);
        self.feeds.user_changed(id);
        Ok(changed)
    }

    fn watch_user_changes(&self, feed: ChangeFeed) -> Freshness {
        self.feeds.add(feed);
        Freshness::Synchronous
    }
}

impl MemoryUserStore {
    fn update_user(&self, id: &OwnerId, change: impl FnOnce(&mut UserRecord)) -> bool {
        let Some(email) = self.email_of.get(id).map(|e| e.clone()) else {
            return false;
        };
        match self.by_email.get_mut(&email) {
            Some(mut user) => {
                change(&mut user);
                true
            }
            None => false,
        }
    }
}

/// An in-memory [`TicketStore`]: single use holds within one process (one authenticator, or
/// several sharing the store value), not across instances, which need a shared store.
#[derive(Debug, Default)]
pub struct MemoryTicketStore {
    tickets: DashMap<TicketDigest, TicketRecord>,
}

impl MemoryTicketStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of tickets held (expired ones included, until pruned).
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    /// Whether the store holds no tickets.
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }
}

#[async_trait]
impl TicketStore for MemoryTicketStore {
    async fn insert_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        match self.tickets.entry(ticket.digest) {
            Entry::Occupied(_) => Err(StoreError::DuplicateId),
            Entry::Vacant(slot) => {
                slot.insert(ticket.clone());
                Ok(())
            }
        }
    }

    async fn take_ticket(
        &self,
        digest: &TicketDigest,
        now: OffsetDateTime,
    ) -> Result<Option<TicketRecord>, StoreError> {
        // One removal under the shard's lock: of concurrent takes, one gets the entry. An
        // expired ticket is removed all the same and not returned.
        Ok(self
            .tickets
            .remove(digest)
            .map(|(_, ticket)| ticket)
            .filter(|ticket| ticket.expires_at > now))
    }

    async fn prune_tickets(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut removed = 0;
        self.tickets.retain(|_, ticket| {
            let keep = ticket.expires_at > now;
            removed += u64::from(!keep);
            keep
        });
        Ok(removed)
    }
}
