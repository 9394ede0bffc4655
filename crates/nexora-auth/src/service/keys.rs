//! API key management: create, list, rotate, revoke, under [`crate::policy`].

use std::time::Duration;

use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

use super::{Authenticator, Credential, Principal};
use crate::Unavailable;
use crate::{
    ApiKey, AuthError, Field, InvalidInput, InvalidReason, KeyId, NewAuditEvent, Problem, Scopes,
    audit::AuditAction,
    limits::{Credits, NewCredits, RateLimit, Refill},
    policy,
    store::{KeyRecord, OwnerId, RevokeOutcome, RotateOutcome, Rotation, StoreError},
};

/// A requested expiry as the UTC instant stores keep. An offset can carry a local time that
/// reads as valid past the last instant `time` (and so every store) represents, the end of
/// the year 9999 in UTC: refused as [`Problem::OutOfRange`], where it would otherwise be
/// written and then fail every read of the owner's keys.
fn utc_expiry(at: OffsetDateTime) -> Result<OffsetDateTime, InvalidInput> {
    at.checked_to_offset(UtcOffset::UTC)
        .ok_or(InvalidInput::new(Field::ExpiresAt, Problem::OutOfRange))
}

/// Longest key name accepted, in characters.
pub const MAX_KEY_NAME_LEN: usize = 100;
/// A request to create a key.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[non_exhaustive]
pub struct NewKey {
    /// The key's label. 1 to [`MAX_KEY_NAME_LEN`] characters after trimming.
    pub name: String,
    /// Requested scopes; `None` means "all of the creator's". Must be a subset of the
    /// creator's scopes.
    #[serde(default)]
    pub scopes: Option<Scopes>,
    /// Optional expiry; must be in the future, and no later than the year 9999 in UTC. Kept
    /// as its UTC instant. A key created by a key gets at most its creator's expiry (see
    /// [`crate::policy::grant`]).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Optional rate limit ([`crate::limits`]). A key created by a rate-limited key gets at
    /// most that key's rate, and that key's rate when none is asked for (see
    /// [`crate::policy::grant_limits`]).
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Optional usage credits, counted from creation. A key created by a metered key must have
    /// credits without refill, which that key pays from its own.
    #[serde(default)]
    pub credits: Option<NewCredits>,
}

impl NewKey {
    /// A request with just a name (scopes inherited, no expiry, no limits).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scopes: None,
            expires_at: None,
            rate_limit: None,
            credits: None,
        }
    }

    /// Sets a rate limit.
    pub fn with_rate_limit(mut self, rate: RateLimit) -> Self {
        self.rate_limit = Some(rate);
        self
    }

    /// Sets usage credits.
    pub fn with_credits(mut self, credits: NewCredits) -> Self {
        self.credits = Some(credits);
        self
    }

    /// Sets the requested scopes.
    pub fn with_scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// Sets an expiry.
    pub fn expiring_at(mut self, at: OffsetDateTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// The public view of a key: what list endpoints return. Never the key, its secret or digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key id.
    pub id: KeyId,
    /// The label.
    pub name: String,
    /// Non-secret fragment, e.g. `nxr_4fGh2k…Xy3Q`.
    pub display: String,
    /// Granted scopes.
    pub scopes: Scopes,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last use, recorded at most once per interval (RFC 3339 or `null`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Expiry (RFC 3339 or `null`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// What created the key: `{"kind": "user"}` (a login session or the application) or
    /// `{"kind": "key", "key_id": "…"}` (another key, which a cascading revoke follows).
    #[serde(serialize_with = "serialize_created_by")]
    pub created_by: Option<KeyId>,
    /// The key's rate limit: `{"limit", "period_secs"}` or `null`.
    pub rate_limit: Option<RateLimit>,
    /// The key's credits as the store holds them (refills applied; up to a lease block per
    /// instance may be out on instances): `{"remaining", "refill": {"amount", "every_secs"} or
    /// null, "next_refill_at": RFC 3339 or null}`, or `null` for an unmetered key.
    #[serde(serialize_with = "serialize_credits")]
    pub credits: Option<Credits>,
}

fn serialize_credits<S: serde::Serializer>(
    credits: &Option<Credits>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown {
        remaining: u64,
        refill: Option<Refill>,
        #[serde(with = "time::serde::rfc3339::option")]
        next_refill_at: Option<OffsetDateTime>,
    }
    credits
        .map(|c| Shown {
            remaining: c.remaining,
            refill: c.refill,
            next_refill_at: c.next_refill(),
        })
        .serialize(serializer)
}

impl KeyInfo {
    /// The view of `record` at `now` (its credits refilled if a refill fell due).
    pub(super) fn at(record: &KeyRecord, now: OffsetDateTime) -> Self {
        let mut info = Self::from(record);
        info.credits = info.credits.map(|c| c.at(now));
        info
    }
}

fn serialize_created_by<S: serde::Serializer>(
    created_by: &Option<KeyId>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum CreatedBy {
        User,
        Key { key_id: KeyId },
    }
    match *created_by {
        None => CreatedBy::User,
        Some(key_id) => CreatedBy::Key { key_id },
    }
    .serialize(serializer)
}

impl From<&KeyRecord> for KeyInfo {
    fn from(r: &KeyRecord) -> Self {
        Self {
            id: r.id,
            name: r.name.clone(),
            display: r.display.clone(),
            scopes: r.scopes.clone(),
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            created_by: r.created_by,
            rate_limit: r.rate_limit,
            credits: r.credits,
        }
    }
}

/// A key just created or rotated: the only time its full text is available.
///
/// Serialises as `{id, name, key, display, scopes, created_at, last_used_at, expires_at,
/// created_by, rate_limit, credits}`.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// The public view.
    pub info: KeyInfo,
    /// The full key. Shown once.
    pub key: ApiKey,
}

impl Serialize for CreatedKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            id: KeyId,
            name: &'a str,
            key: &'a str,
            display: &'a str,
            scopes: &'a Scopes,
            #[serde(with = "time::serde::rfc3339")]
            created_at: OffsetDateTime,
            #[serde(with = "time::serde::rfc3339::option")]
            last_used_at: Option<OffsetDateTime>,
            #[serde(with = "time::serde::rfc3339::option")]
            expires_at: Option<OffsetDateTime>,
            #[serde(serialize_with = "serialize_created_by")]
            created_by: Option<KeyId>,
            rate_limit: Option<RateLimit>,
            #[serde(serialize_with = "serialize_credits")]
            credits: Option<Credits>,
        }
        Shown {
            id: self.info.id,
            name: &self.info.name,
            key: self.key.expose(),
            display: &self.info.display,
            scopes: &self.info.scopes,
            created_at: self.info.created_at,
            last_used_at: self.info.last_used_at,
            expires_at: self.info.expires_at,
            created_by: self.info.created_by,
            rate_limit: self.info.rate_limit,
            credits: self.info.credits,
        }
        .serialize(serializer)
    }
}

/// Options for [`Authenticator::rotate_key`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RotateOptions {
    /// Keep the old secret working for this long. Defaults to `None`: the old key stops
    /// working the moment the rotation returns, as the product's API documents.
    pub grace: Option<Duration>,
}

impl RotateOptions {
    /// Immediate rotation (the default).
    pub fn immediate() -> Self {
        Self::default()
    }

    /// Rotation with a grace period for the old secret.
    pub fn with_grace(grace: Duration) -> Self {
        Self { grace: Some(grace) }
    }
}

/// Options for [`Authenticator::revoke_key`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RevokeOptions {
    /// Also revoke, in the same atomic step, every key this key created, transitively: the
    /// answer to "a key leaked and minted others". Defaults to `false`.
    pub cascade: bool,
}

impl RevokeOptions {
    /// Revoke the key only (the default).
    pub fn key_only() -> Self {
        Self::default()
    }

    /// Revoke the key and every key it created, transitively.
    pub fn cascade() -> Self {
        Self { cascade: true }
    }
}

impl Authenticator {
    /// Creates a key for the principal's owner, as the key-management policy allows (see
    /// [`crate::policy::grant`]): scopes default to (and may not exceed) the principal's; a key
    /// created by a key expires no later than it and records it as its creator. Audited as
    /// `key_created`.
    pub async fn create_key(
        &self,
        creator: &Principal,
        request: NewKey,
    ) -> Result<CreatedKey, AuthError> {
        let name = super::limits::key_name(&request.name)?;
        let expires_at = request.expires_at.map(utc_expiry).transpose()?;
        let now = self.inner.clock.now();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(InvalidInput::new(Field::ExpiresAt, Problem::NotInFuture).into());
        }
        let grant = policy::grant(creator, request.scopes, expires_at)?;
        let (rate_limit, credits) =
            policy::grant_limits(creator, request.rate_limit, request.credits)?;
        if let (Some(payer), true, Some(credits)) = (
            creator.key_id(),
            creator.key_limits().metered,
            credits.as_ref(),
        ) {
            self.pay_for_credits(payer, credits).await?;
        }
        // A fresh random id colliding is astronomically unlikely, but the store's duplicate
        // check is the truth: retry once with a new id rather than fail the request.
        for _ in 0..2 {
            let key = ApiKey::generate().map_err(Unavailable::Randomness)?;
            let record = KeyRecord {
                id: key.id(),
                owner: creator.owner().clone(),
                name: name.clone(),
                scopes: grant.scopes.clone(),
                created_at: now,
                last_used_at: None,
                expires_at: grant.expires_at,
                revoked_at: None,
                display: key.display_fragment(),
                digest: self.inner.peppers.digest(&key),
                previous: None,
                created_by: grant.created_by,
                rate_limit,
                credits: credits.map(|c| c.at(now)),
            };
            match self.inner.keys.insert(&record).await {
                Ok(()) => {
                    self.inner.cache.forget_key(record.id);
                    self.record_event(
                        NewAuditEvent::by(AuditAction::KeyCreated, creator).target_key(record.id),
                    )
                    .await;
                    return Ok(CreatedKey {
                        info: KeyInfo::from(&record),
                        key,
                    });
                }
                Err(StoreError::DuplicateId) => continue,
                // The creating key was revoked while this request was in flight.
                Err(StoreError::CreatorRevoked) => {
                    return Err(AuthError::InvalidToken(InvalidReason::Revoked));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Unavailable::KeyIdCollision.into())
    }

    /// Creates a key for `owner`, who holds `allowed` scopes (for admin tools that act without
    /// a request): [`Authenticator::create_key`] for an internal principal.
    pub async fn create_key_for(
        &self,
        owner: &OwnerId,
        allowed: &Scopes,
        request: NewKey,
    ) -> Result<CreatedKey, AuthError> {
        let creator = Principal::new(owner.clone(), Credential::Internal, allowed.clone());
        self.create_key(&creator, request).await
    }

    /// The keys of the principal's owner that it may reach ([`crate::policy::within_reach`]):
    /// never revoked ones, never broader or longer-lived ones; oldest first.
    pub async fn list_keys(&self, principal: &Principal) -> Result<Vec<KeyInfo>, AuthError> {
        let owner_scopes = self.owner_scopes(principal).await?;
        let now = self.inner.clock.now();
        Ok(self
            .inner
            .keys
            .list(principal.owner())
            .await?
            .iter()
            .filter(|r| policy::within_reach(principal, r, owner_scopes.as_ref()))
            .map(|r| KeyInfo::at(r, now))
            .collect())
    }

    /// The owner's current scopes, for [`policy::within_reach`]: read only for principals
    /// without a key, and only with a user store (`None` otherwise, or for an unknown owner).
    async fn owner_scopes(&self, principal: &Principal) -> Result<Option<Scopes>, AuthError> {
        match &self.inner.users {
            Some(users) if principal.key_id().is_none() => Ok(users
                .find_user(principal.owner())
                .await?
                .map(|user| user.scopes)),
            _ => Ok(None),
        }
    }

    /// The key `id` if the principal may act on it; [`AuthError::KeyNotFound`] otherwise,
    /// exactly as for an unknown id.
    /// `to_rotate`: judged by [`policy::may_rotate`] (the caller receives the new secret),
    /// otherwise by [`policy::within_reach`].
    pub(super) async fn reachable_key(
        &self,
        principal: &Principal,
        id: KeyId,
        to_rotate: bool,
    ) -> Result<KeyRecord, AuthError> {
        let owner_scopes = if to_rotate {
            None
        } else {
            self.owner_scopes(principal).await?
        };
        match self.inner.keys.find(id).await? {
            Some(record) if to_rotate && policy::may_rotate(principal, &record) => Ok(record),
            Some(record)
                if !to_rotate
                    && policy::within_reach(principal, &record, owner_scopes.as_ref()) =>
            {
                Ok(record)
            }
            _ => Err(AuthError::KeyNotFound),
        }
    }

    /// Issues a new secret for a key within the principal's reach, keeping its id, name,
    /// scopes and expiry. With the default options the old key fails from the moment this
    /// returns. Unknown, revoked, out-of-reach or another owner's key →
    /// [`AuthError::KeyNotFound`]; expired → [`AuthError::KeyExpired`]. Audited as
    /// `key_rotated` (with `grace_secs` when the old secret keeps working).
    pub async fn rotate_key(
        &self,
        principal: &Principal,
        id: KeyId,
        options: RotateOptions,
    ) -> Result<CreatedKey, AuthError> {
        self.reachable_key(principal, id, true).await?;
        let key = ApiKey::generate_for(id).map_err(Unavailable::Randomness)?;
        let now = self.inner.clock.now();
        let rotation = Rotation {
            digest: self.inner.peppers.digest(&key),
            display: key.display_fragment(),
            grace_until: options.grace.map(|g| now + g),
            now,
        };
        match self
            .inner
            .keys
            .rotate(principal.owner(), id, &rotation)
            .await?
        {
            RotateOutcome::Rotated(record) => {
                self.inner.cache.forget_key(id);
                let mut event =
                    NewAuditEvent::by(AuditAction::KeyRotated, principal).target_key(id);
                if let Some(grace) = options.grace {
                    event = event.detail("grace_secs", grace.as_secs());
                }
                self.record_event(event).await;
                Ok(CreatedKey {
                    info: KeyInfo::from(&record),
                    key,
                })
            }
            RotateOutcome::Expired => Err(AuthError::KeyExpired),
            _ => Err(AuthError::KeyNotFound),
        }
    }

    /// Revokes a key within the principal's reach and, with [`RevokeOptions::cascade`], every
    /// key it created, transitively, in one atomic step. A revoked key is gone from the owner's
    /// view: revoking it again is [`AuthError::KeyNotFound`], like an unknown, out-of-reach or
    /// another owner's key. Returns the ids revoked (the key first).
    ///
    /// Audited ([`crate::audit`]): `key_revoked` for the key (with `cascaded`, the number of
    /// keys revoked with it, when cascading) and one `key_revoked_by_cascade` per key revoked
    /// with it (with `cascade_root`), in one batch.
    pub async fn revoke_key(
        &self,
        principal: &Principal,
        id: KeyId,
        options: RevokeOptions,
    ) -> Result<Vec<KeyId>, AuthError> {
        self.reachable_key(principal, id, false).await?;
        let owner = principal.owner();
        let at = self.inner.clock.now();
        let (root, descendants) = if options.cascade {
            let outcome = self.inner.keys.revoke_tree(owner, id, at).await?;
            (outcome.root, outcome.descendants)
        } else {
            (self.inner.keys.revoke(owner, id, at).await?, Vec::new())
        };
        // A concurrent revoke of the same key won: it is gone all the same.
        if root != RevokeOutcome::Revoked && descendants.is_empty() {
            return Err(AuthError::KeyNotFound);
        }
        let by_principal = |action| NewAuditEvent::by(action, principal);
        let events = revocation_events(
            (root == RevokeOutcome::Revoked).then(|| by_principal(AuditAction::KeyRevoked)),
            (id, &descendants),
            options.cascade,
            by_principal,
        );
        let revoked: Vec<KeyId> = std::iter::once(id).chain(descendants).collect();
        self.forget_revoked(&revoked);
        self.record(events).await;
        Ok(revoked)
    }

    /// Drops revoked keys from the verification cache and the last-used queue: this instance
    /// refuses them from the next request on.
    pub(super) fn forget_revoked(&self, ids: &[KeyId]) {
        for id in ids {
            self.inner.cache.forget_key(*id);
            self.inner.last_used.forget(*id);
        }
    }
}

/// The audit events of revoking `key` with `descendants`, as the trail records revocations
/// (see [`crate::audit`], "Cascades and throttling"): the key's own event (`root`, when this
/// call revoked the key itself) targeting it, with `cascaded` (how many keys went with it)
/// when the revoke `cascade`d, then one `key_revoked_by_cascade` per descendant with
/// `cascade_root`. `event` makes each event's actor, owner and client.
pub(super) fn revocation_events(
    root: Option<NewAuditEvent>,
    (key, descendants): (KeyId, &[KeyId]),
    cascade: bool,
    event: impl Fn(AuditAction) -> NewAuditEvent,
) -> Vec<NewAuditEvent> {
    let root = root.map(|root| {
        let root = root.target_key(key);
        if cascade {
            root.detail("cascaded", descendants.len())
        } else {
            root
        }
    });
    root.into_iter()
        .chain(descendants.iter().map(|descendant| {
            event(AuditAction::KeyRevokedByCascade)
                .target_key(*descendant)
                .detail("cascade_root", key)
        }))
        .collect()
}
