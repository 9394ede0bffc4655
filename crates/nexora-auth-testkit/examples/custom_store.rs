//! A custom `KeyStore`, written from the trait docs alone, that passes the conformance kit.
//!
//! This is the path for a team with its own backend: implement the nine methods, keeping each
//! contract point of `nexora_auth::store::KeyStore`, then call
//! `nexora_auth_testkit::key_store_conformance!` from a test. Here the backend is a
//! `Mutex<BTreeMap>`; every method takes the lock once, so each is atomic, and none holds it
//! across an `.await`.
//!
//! `cargo test -p nexora-auth-testkit --example custom_store` runs the kit on it;
//! `cargo run -p nexora-auth-testkit --example custom_store` authenticates a key through it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use nexora_auth::{
    CascadeOutcome, KeyId, KeyStore, OwnerId, StoreError, async_trait,
    limits::Credits,
    store::{
        KeyRecord, KeyUpdate, LastUsed, PreviousDigest, RevokeOutcome, RotateOutcome, Rotation,
    },
};
use time::OffsetDateTime;

/// API keys in a locked ordered map.
#[derive(Debug, Default)]
pub struct MapKeyStore {
    keys: Mutex<BTreeMap<KeyId, KeyRecord>>,
}

impl MapKeyStore {
    fn keys(&self) -> MutexGuard<'_, BTreeMap<KeyId, KeyRecord>> {
        // A panic elsewhere cannot leave a record half-written: every write is one assignment.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl KeyStore for MapKeyStore {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let mut keys = self.keys();
        if keys.contains_key(&record.id) {
            return Err(StoreError::DuplicateId); // and the existing record stays as it is
        }
        // The creator check and the insert happen under one lock, as revoke_tree's walk does.
        if let Some(creator) = record.created_by {
            let live = keys
                .get(&creator)
                .is_some_and(|c| c.owner == record.owner && c.revoked_at.is_none());
            if !live {
                return Err(StoreError::CreatorRevoked);
            }
        }
        keys.insert(record.id, record.clone());
        Ok(())
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.keys().get(&id).cloned()) // revoked and expired records too
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        let mut mine: Vec<KeyRecord> = self
            .keys()
            .values()
            .filter(|r| &r.owner == owner && r.revoked_at.is_none())
            .cloned()
            .collect();
        mine.sort_by_key(|r| (r.created_at, r.id));
        Ok(mine)
    }

    async fn rotate(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        let mut keys = self.keys();
        let Some(record) = keys.get_mut(&id).filter(|r| &r.owner == owner) else {
            return Ok(RotateOutcome::NotFound); // another owner's key is not found either
        };
        if record.revoked_at.is_some() {
            return Ok(RotateOutcome::Revoked);
        }
        if record.expires_at.is_some_and(|at| at <= rotation.now) {
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

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut keys = self.keys();
        match keys.get_mut(&id).filter(|r| &r.owner == owner) {
            None => Ok(RevokeOutcome::NotFound),
            Some(record) if record.revoked_at.is_some() => Ok(RevokeOutcome::AlreadyRevoked),
            Some(record) => {
                record.revoked_at = Some(at);
                record.previous = None; // a revoked key keeps no grace-period secret
                Ok(RevokeOutcome::Revoked)
            }
        }
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        let mut keys = self.keys();
        let root = match keys.get_mut(&id).filter(|r| &r.owner == owner) {
            None => return Ok(CascadeOutcome::new(RevokeOutcome::NotFound, Vec::new())),
            Some(record) if record.revoked_at.is_some() => RevokeOutcome::AlreadyRevoked,
            Some(record) => {
                record.revoked_at = Some(at);
                record.previous = None;
                RevokeOutcome::Revoked
            }
        };
        // Walk down the created_by links, one generation at a time.
        let mut generation = vec![id];
        let mut revoked = Vec::new();
        while !generation.is_empty() {
            let children: Vec<KeyId> = keys
                .values()
                .filter(|r| &r.owner == owner)
                .filter(|r| r.created_by.is_some_and(|c| generation.contains(&c)))
                .map(|r| r.id)
                .collect();
            for child in &children {
                if let Some(record) = keys.get_mut(child).filter(|r| r.revoked_at.is_none()) {
                    record.revoked_at = Some(at);
                    record.previous = None;
                    revoked.push(*child);
                }
            }
            generation = children;
        }
        Ok(CascadeOutcome::new(root, revoked))
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        let mut keys = self.keys();
        for used in batch {
            if let Some(record) = keys.get_mut(&used.id) {
                record.last_used_at = record.last_used_at.max(Some(used.at)); // never backwards
            }
        }
        Ok(())
    }

    async fn update_key(
        &self,
        owner: &OwnerId,
        id: KeyId,
        update: &KeyUpdate,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let mut keys = self.keys(); // the owner and revocation check and the write, under one lock
        let Some(record) = keys
            .get_mut(&id)
            .filter(|r| &r.owner == owner && r.revoked_at.is_none())
        else {
            return Ok(None);
        };
        if let Some(name) = &update.name {
            record.name.clone_from(name);
        }
        if let Some(rate_limit) = update.rate_limit {
            record.rate_limit = rate_limit; // Some(None) removes it
        }
        if let Some(credits) = update.credits {
            record.credits = credits;
        }
        Ok(Some(record.clone()))
    }

    async fn swap_credits(
        &self,
        id: KeyId,
        current: &Credits,
        new: &Credits,
    ) -> Result<bool, StoreError> {
        let mut keys = self.keys(); // compare and write under one lock: a compare-and-swap
        match keys.get_mut(&id) {
            Some(record) if record.revoked_at.is_none() && record.credits == Some(*current) => {
                record.credits = Some(*new);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
nexora_auth_testkit::key_store_conformance!(async { MapKeyStore::default() });

fn main() {
    nexora_auth_testkit::run(async {
        let auth = nexora_auth_testkit::authenticator(Arc::new(MapKeyStore::default()));
        let owner = OwnerId::new("alice");
        let scopes = nexora_auth_testkit::scopes(&["agents:read"]);
        let created = auth
            .create_key_for(&owner, &scopes, nexora_auth::NewKey::named("example"))
            .await
            .expect("create a key");
        let principal = auth
            .authenticate(created.key.expose())
            .await
            .expect("authenticate");
        assert_eq!(principal.owner(), &owner);
        let mut out = std::io::stdout().lock();
        let _ = std::io::Write::write_all(
            &mut out,
            b"a key created and authenticated through MapKeyStore\n",
        );
    });
}
