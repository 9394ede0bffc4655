//! The kit's own mutation test: stores broken the way a newcomer plausibly breaks them must
//! each fail the kit, with a message naming the broken contract; the same store unbroken
//! passes every contract.
//!
//! Each mutant runs every contract (and the backend-down check) on a fresh store, and the test
//! prints which contracts caught it. The non-atomic mutants interleave their reads and writes
//! with `tokio::task::yield_now()`, as a store that talks to a server over the network does.

use std::{
    collections::BTreeMap,
    io::Write,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;
use nexora_auth::{
    CascadeOutcome, KeyCredentials, KeyId, KeyStore, OwnerId, StoreError,
    limits::Credits,
    store::{
        KeyRecord, KeyUpdate, LastUsed, PreviousDigest, RevokeOutcome, RotateOutcome, Rotation,
    },
};
use time::OffsetDateTime;

/// One way of breaking the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutant {
    /// No mutation: the control, which must pass everything.
    Correct,
    /// `rotate` reads the record, checks it, then writes digest, display and previous in
    /// three separate steps.
    NonAtomicRotate,
    /// `revoke` reads the record, checks it is not revoked, then writes.
    NonAtomicRevoke,
    /// `insert` checks the creator is live, then inserts in a separate step.
    NonAtomicCreatorCheck,
    /// Every timestamp is stored with millisecond precision.
    MillisecondTimestamps,
    /// `find` answers `Ok(None)` when the backend fails.
    FindSwallowsErrors,
    /// `list` includes revoked keys.
    ListIncludesRevoked,
    /// `rotate` rotates any owner's key.
    RotateIgnoresOwner,
    /// `find_credentials` is overridden and forgets the grace-period digest.
    CredentialsWithoutPrevious,
    /// `swap_credits` compares every field but `refilled_at` (a refill in between goes
    /// unnoticed, and a lease of the old period is spent in the new one).
    SwapIgnoresRefilledAt,
    /// `swap_credits` reads the credits, compares them, then writes in a separate step.
    NonAtomicSwap,
    /// `swap_credits` writes to revoked keys too.
    SwapOnRevokedKeys,
    /// `update_key` changes revoked keys too.
    UpdateRevokedKeys,
    /// `update_key` clears a limit the update leaves as it is (`None` read as "remove").
    UpdateClearsUntouchedLimits,
}

/// A `Mutex<BTreeMap>` key store, correct unless told otherwise.
struct MutantStore {
    mutant: Mutant,
    keys: Mutex<BTreeMap<KeyId, KeyRecord>>,
    failing: AtomicBool,
}

impl MutantStore {
    fn new(mutant: Mutant) -> Self {
        Self {
            mutant,
            keys: Mutex::new(BTreeMap::new()),
            failing: AtomicBool::new(false),
        }
    }

    /// The same store with its backend down.
    fn failing(mutant: Mutant) -> Self {
        let store = Self::new(mutant);
        store.failing.store(true, Ordering::SeqCst);
        store
    }

    fn keys(&self) -> MutexGuard<'_, BTreeMap<KeyId, KeyRecord>> {
        // Every write is one assignment: a poisoned map is still consistent.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn backend(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("backend down on purpose"))
        } else {
            Ok(())
        }
    }

    fn is(&self, mutant: Mutant) -> bool {
        self.mutant == mutant
    }

    fn time(&self, t: OffsetDateTime) -> OffsetDateTime {
        if self.is(Mutant::MillisecondTimestamps) {
            // nanosecond() < 1e9, and so is the rounded-down value.
            t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
                .expect("valid nanosecond")
        } else {
            t
        }
    }

    fn stored(&self, record: &KeyRecord) -> KeyRecord {
        let mut record = record.clone();
        record.created_at = self.time(record.created_at);
        record.last_used_at = record.last_used_at.map(|t| self.time(t));
        record.expires_at = record.expires_at.map(|t| self.time(t));
        record.revoked_at = record.revoked_at.map(|t| self.time(t));
        if let Some(previous) = &mut record.previous {
            previous.valid_until = self.time(previous.valid_until);
        }
        record.credits = record.credits.map(|c| self.credits(c));
        record
    }

    fn credits(&self, credits: Credits) -> Credits {
        Credits {
            refilled_at: self.time(credits.refilled_at),
            ..credits
        }
    }

    /// Whether stored credits count as `current` for a swap.
    fn matches(&self, stored: Option<&Credits>, current: &Credits) -> bool {
        match stored {
            Some(stored) if self.is(Mutant::SwapIgnoresRefilledAt) => Credits {
                refilled_at: current.refilled_at,
                ..*stored
            }
            .eq(current),
            Some(stored) => stored == current,
            None => false,
        }
    }

    fn update(&self, id: KeyId, change: impl FnOnce(&mut KeyRecord)) {
        if let Some(record) = self.keys().get_mut(&id) {
            change(record);
        }
    }
}

#[async_trait]
impl KeyStore for MutantStore {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.backend()?;
        if self.is(Mutant::NonAtomicCreatorCheck) {
            if let Some(creator) = record.created_by {
                let live = self
                    .keys()
                    .get(&creator)
                    .is_some_and(|c| c.owner == record.owner && c.revoked_at.is_none());
                if !live {
                    return Err(StoreError::CreatorRevoked);
                }
            }
            tokio::task::yield_now().await;
            let mut keys = self.keys();
            if keys.contains_key(&record.id) {
                return Err(StoreError::DuplicateId);
            }
            keys.insert(record.id, self.stored(record));
            return Ok(());
        }
        let mut keys = self.keys();
        if keys.contains_key(&record.id) {
            return Err(StoreError::DuplicateId);
        }
        if let Some(creator) = record.created_by {
            let live = keys
                .get(&creator)
                .is_some_and(|c| c.owner == record.owner && c.revoked_at.is_none());
            if !live {
                return Err(StoreError::CreatorRevoked);
            }
        }
        keys.insert(record.id, self.stored(record));
        Ok(())
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        if self.failing.load(Ordering::SeqCst) && self.is(Mutant::FindSwallowsErrors) {
            return Ok(None);
        }
        self.backend()?;
        Ok(self.keys().get(&id).cloned())
    }

    async fn find_credentials(&self, id: KeyId) -> Result<Option<KeyCredentials>, StoreError> {
        self.backend()?;
        let found = self.keys().get(&id).cloned().map(KeyCredentials::from);
        if self.is(Mutant::CredentialsWithoutPrevious) {
            return Ok(found.map(|c| KeyCredentials {
                previous: None,
                ..c
            }));
        }
        Ok(found)
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        self.backend()?;
        let with_revoked = self.is(Mutant::ListIncludesRevoked);
        let mut mine: Vec<KeyRecord> = self
            .keys()
            .values()
            .filter(|r| &r.owner == owner && (with_revoked || r.revoked_at.is_none()))
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
        self.backend()?;
        let ignore_owner = self.is(Mutant::RotateIgnoresOwner);
        if !self.is(Mutant::NonAtomicRotate) {
            // Check and write under one lock.
            let mut keys = self.keys();
            let Some(record) = keys
                .get_mut(&id)
                .filter(|r| ignore_owner || &r.owner == owner)
            else {
                return Ok(RotateOutcome::NotFound);
            };
            if record.revoked_at.is_some() {
                return Ok(RotateOutcome::Revoked);
            }
            if record.expires_at.is_some_and(|at| at <= rotation.now) {
                return Ok(RotateOutcome::Expired);
            }
            record.previous = rotation.grace_until.map(|valid_until| PreviousDigest {
                digest: record.digest,
                valid_until: self.time(valid_until),
            });
            record.digest = rotation.digest;
            record.display.clone_from(&rotation.display);
            return Ok(RotateOutcome::Rotated(record.clone()));
        }
        let read = self.keys().get(&id).filter(|r| &r.owner == owner).cloned();
        let Some(record) = read else {
            return Ok(RotateOutcome::NotFound);
        };
        if record.revoked_at.is_some() {
            return Ok(RotateOutcome::Revoked);
        }
        if record.expires_at.is_some_and(|at| at <= rotation.now) {
            return Ok(RotateOutcome::Expired);
        }
        let previous = rotation.grace_until.map(|valid_until| PreviousDigest {
            digest: record.digest,
            valid_until,
        });
        tokio::task::yield_now().await;
        self.update(id, |r| r.digest = rotation.digest);
        tokio::task::yield_now().await;
        self.update(id, |r| r.display.clone_from(&rotation.display));
        tokio::task::yield_now().await;
        self.update(id, |r| r.previous = previous);
        Ok(RotateOutcome::Rotated(KeyRecord {
            digest: rotation.digest,
            display: rotation.display.clone(),
            previous,
            ..record
        }))
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        self.backend()?;
        let at = self.time(at);
        if self.is(Mutant::NonAtomicRevoke) {
            let read = self.keys().get(&id).filter(|r| &r.owner == owner).cloned();
            return match read {
                None => Ok(RevokeOutcome::NotFound),
                Some(r) if r.revoked_at.is_some() => Ok(RevokeOutcome::AlreadyRevoked),
                Some(_) => {
                    tokio::task::yield_now().await;
                    self.update(id, |r| {
                        r.revoked_at = Some(at);
                        r.previous = None;
                    });
                    Ok(RevokeOutcome::Revoked)
                }
            };
        }
        let mut keys = self.keys();
        match keys.get_mut(&id).filter(|r| &r.owner == owner) {
            None => Ok(RevokeOutcome::NotFound),
            Some(r) if r.revoked_at.is_some() => Ok(RevokeOutcome::AlreadyRevoked),
            Some(r) => {
                r.revoked_at = Some(at);
                r.previous = None;
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
        self.backend()?;
        let at = self.time(at);
        let mut keys = self.keys();
        let root = match keys.get_mut(&id).filter(|r| &r.owner == owner) {
            None => return Ok(CascadeOutcome::new(RevokeOutcome::NotFound, Vec::new())),
            Some(r) if r.revoked_at.is_some() => RevokeOutcome::AlreadyRevoked,
            Some(r) => {
                r.revoked_at = Some(at);
                r.previous = None;
                RevokeOutcome::Revoked
            }
        };
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
                if let Some(r) = keys.get_mut(child).filter(|r| r.revoked_at.is_none()) {
                    r.revoked_at = Some(at);
                    r.previous = None;
                    revoked.push(*child);
                }
            }
            generation = children;
        }
        Ok(CascadeOutcome::new(root, revoked))
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        self.backend()?;
        let mut keys = self.keys();
        for used in batch {
            if let Some(r) = keys.get_mut(&used.id) {
                r.last_used_at = r.last_used_at.max(Some(self.time(used.at)));
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
        self.backend()?;
        let with_revoked = self.is(Mutant::UpdateRevokedKeys);
        let mut keys = self.keys();
        let Some(r) = keys
            .get_mut(&id)
            .filter(|r| &r.owner == owner && (with_revoked || r.revoked_at.is_none()))
        else {
            return Ok(None);
        };
        if let Some(name) = &update.name {
            r.name.clone_from(name);
        }
        if self.is(Mutant::UpdateClearsUntouchedLimits) {
            r.rate_limit = update.rate_limit.flatten();
            r.credits = update.credits.flatten().map(|c| self.credits(c));
        } else {
            if let Some(rate_limit) = update.rate_limit {
                r.rate_limit = rate_limit;
            }
            if let Some(credits) = update.credits {
                r.credits = credits.map(|c| self.credits(c));
            }
        }
        Ok(Some(r.clone()))
    }

    async fn swap_credits(
        &self,
        id: KeyId,
        current: &Credits,
        new: &Credits,
    ) -> Result<bool, StoreError> {
        self.backend()?;
        let live = |r: &KeyRecord| self.is(Mutant::SwapOnRevokedKeys) || r.revoked_at.is_none();
        if self.is(Mutant::NonAtomicSwap) {
            let read = self.keys().get(&id).filter(|r| live(r)).cloned();
            if !read.is_some_and(|r| self.matches(r.credits.as_ref(), current)) {
                return Ok(false);
            }
            tokio::task::yield_now().await;
            self.update(id, |r| r.credits = Some(self.credits(*new)));
            return Ok(true);
        }
        let mut keys = self.keys();
        match keys.get_mut(&id) {
            Some(r) if live(r) && self.matches(r.credits.as_ref(), current) => {
                r.credits = Some(self.credits(*new));
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The text of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// Runs `check` on its own runtime; `Some(message)` when it panicked.
fn failure_of(check: impl Future<Output = ()>) -> Option<String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        nexora_auth_testkit::run(check);
    }))
    .err()
    .map(|payload| panic_text(&*payload))
}

/// Runs the whole kit on `mutant` and returns the contracts that caught it. Every failure
/// message must name its contract.
fn caught_by(mutant: Mutant) -> Vec<&'static str> {
    let mut caught = Vec::new();
    for (name, contract) in nexora_auth_testkit::key_store::contracts() {
        if let Some(message) = failure_of(contract(Arc::new(MutantStore::new(mutant)))) {
            assert!(
                message.contains(&format!("KeyStore contract `{name}` failed")),
                "{mutant:?}: the failure of {name} does not name it: {message}"
            );
            caught.push(name);
        }
    }
    let down = failure_of(nexora_auth_testkit::failure::key_store_backend_down(
        Arc::new(MutantStore::failing(mutant)),
    ));
    if let Some(message) = down {
        assert!(
            message.contains("backend-down check `key_store_backend_down`"),
            "{mutant:?}: the backend-down failure does not name its check: {message}"
        );
        caught.push("key_store_backend_down");
    }
    // The list of catching contracts, for the report of a `--nocapture` run.
    let _ = writeln!(std::io::stderr(), "{mutant:?} caught by: {caught:?}");
    caught
}

/// `mutant` fails the kit, and `contract` is among the contracts that catch it.
fn assert_caught(mutant: Mutant, contract: &str) {
    let caught = caught_by(mutant);
    assert!(
        caught.contains(&contract),
        "{mutant:?} must fail `{contract}`; caught by {caught:?}"
    );
}

#[test]
fn the_correct_store_passes_every_contract() {
    assert_eq!(caught_by(Mutant::Correct), Vec::<&str>::new());
}

#[test]
fn a_non_atomic_rotate_fails_the_concurrent_rotation_contracts() {
    let caught = caught_by(Mutant::NonAtomicRotate);
    for contract in [
        "rotation_is_atomic_under_concurrency",
        "concurrent_rotations_hand_back_working_keys",
        "concurrent_rotations_with_grace_form_one_chain",
        "rotation_racing_revoke_ends_revoked",
    ] {
        assert!(
            caught.contains(&contract),
            "a non-atomic rotate must fail `{contract}`; caught by {caught:?}"
        );
    }
}

#[test]
fn a_non_atomic_revoke_fails_concurrent_revokes() {
    assert_caught(
        Mutant::NonAtomicRevoke,
        "concurrent_revokes_report_exactly_one_revoked",
    );
}

#[test]
fn a_non_atomic_creator_check_fails_the_lineage_race() {
    assert_caught(
        Mutant::NonAtomicCreatorCheck,
        "revoke_tree_and_child_inserts_never_interleave",
    );
}

#[test]
fn millisecond_timestamps_fail_the_precision_contract() {
    assert_caught(
        Mutant::MillisecondTimestamps,
        "timestamps_round_trip_to_the_microsecond",
    );
}

#[test]
fn a_find_that_swallows_errors_fails_the_backend_down_check() {
    assert_caught(Mutant::FindSwallowsErrors, "key_store_backend_down");
}

#[test]
fn a_list_with_revoked_keys_fails_the_list_contract() {
    assert_caught(
        Mutant::ListIncludesRevoked,
        "list_is_owner_scoped_ordered_and_excludes_revoked",
    );
}

#[test]
fn find_credentials_without_the_grace_digest_fails_the_agreement_contract() {
    assert_caught(
        Mutant::CredentialsWithoutPrevious,
        "find_credentials_agrees_with_find",
    );
}

#[test]
fn a_swap_ignoring_refilled_at_fails_the_exact_swap_contract() {
    assert_caught(
        Mutant::SwapIgnoresRefilledAt,
        "swap_credits_succeeds_only_from_the_exact_current",
    );
}

#[test]
fn a_non_atomic_swap_fails_the_concurrent_swap_contract() {
    assert_caught(
        Mutant::NonAtomicSwap,
        "concurrent_credit_swaps_have_exactly_one_winner",
    );
}

#[test]
fn a_swap_on_revoked_keys_fails_the_revoked_swap_contract() {
    assert_caught(
        Mutant::SwapOnRevokedKeys,
        "swap_credits_refuses_revoked_keys",
    );
}

#[test]
fn an_update_of_revoked_keys_fails_the_refusal_contract() {
    assert_caught(
        Mutant::UpdateRevokedKeys,
        "update_key_refuses_unknown_foreign_and_revoked_keys",
    );
}

#[test]
fn an_update_clearing_untouched_limits_fails_the_update_contract() {
    assert_caught(
        Mutant::UpdateClearsUntouchedLimits,
        "update_key_changes_only_the_given_fields",
    );
}

#[test]
fn millisecond_refill_times_fail_the_limits_round_trip() {
    assert_caught(
        Mutant::MillisecondTimestamps,
        "limits_round_trip_through_insert_and_every_read",
    );
}

#[test]
fn a_rotate_ignoring_the_owner_fails_owner_scoping() {
    assert_caught(Mutant::RotateIgnoresOwner, "rotate_is_owner_scoped");
}

/// A store shared between tests (one namespace, or one flushed between tests) fails the first
/// contract it is given with a message saying so.
#[test]
fn a_store_that_is_not_empty_fails_with_a_clear_message() {
    let shared = Arc::new(MutantStore::new(Mutant::Correct));
    let (_, leftover) =
        nexora_auth_testkit::new_record("alice", "from another test", nexora_auth_testkit::now());
    nexora_auth_testkit::run({
        let shared = shared.clone();
        async move { shared.insert(&leftover).await.expect("insert") }
    });
    let (name, first) = nexora_auth_testkit::key_store::contracts()[0];
    let message =
        failure_of(first(shared)).expect("a non-empty store must fail the first contract");
    assert!(
        message.contains(&format!("KeyStore contract `{name}` failed"))
            && message.contains("not empty")
            && message.contains("own namespace"),
        "the message must name the contract, say the store is not empty and how to fix it: {message}"
    );
}
