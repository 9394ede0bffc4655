//! The audit trail: who did what to which key or user, from where, and how it ended.
//!
//! Every security-relevant change the [`Authenticator`](crate::Authenticator) makes — a key
//! created, rotated or revoked, a login, a user disabled — is recorded as an [`AuditEvent`]
//! through one internal path, which also serves [`Authenticator::record_event`] for events
//! the host (or another feature) records itself:
//!
//! ```
//! use std::sync::Arc;
//! use nexora_auth::{
//!     Authenticator, KeyId, MemoryAuditStore, MemoryKeyStore, OwnerId, PepperRing, SecretBytes,
//!     audit::{Actor, AuditAction, AuditQuery, AuditStore, NewAuditEvent},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pepper = SecretBytes::new(b"pepper: 32+ random bytes, kept out of the db".to_vec());
//! let trail = Arc::new(MemoryAuditStore::new());
//! let auth = Authenticator::builder(Arc::new(MemoryKeyStore::new()), PepperRing::new(1, pepper)?)
//!     .audit(trail.clone())
//!     .build()?;
//!
//! let alice = OwnerId::new("alice");
//! let leaked = KeyId::new_random();
//! auth.record_event(
//!     NewAuditEvent::new(AuditAction::KeyRevokedByPossession, Actor::system("revoke-by-possession"))
//!         .owner(alice.clone())
//!         .target_key(leaked)
//!         .client(Some("203.0.113.9".parse()?)),
//! )
//! .await;
//!
//! let page = trail.list(&AuditQuery::for_owner(alice, 50)).await?;
//! assert_eq!(page[0].action, AuditAction::KeyRevokedByPossession);
//! assert_eq!(page[0].target.as_deref(), Some(leaked.to_string().as_str()));
//! # Ok(())
//! # }
//! ```
//!
//! # What an event holds
//!
//! Time (from the authenticator's clock), [`AuditAction`], [`Actor`] (a user session, a key,
//! the system, or an anonymous caller), the owner whose trail it belongs to, the target (a key
//! id or a user id), the client address, the [`AuditOutcome`] and a small [`AuditDetail`] map
//! of non-secret facts. The event id is a UUID version 7 (time-ordered), which is also the
//! cursor of [`AuditQuery::before`].
//!
//! **Never a secret.** No field can hold a key, token, ticket or password: targets are ids,
//! actors are ids or static names, detail names are `&'static str` chosen by code, and a
//! failed login for an unknown email records no owner and no email. Every text field is
//! bounded in bytes ([`MAX_FIELD_LEN`], [`MAX_DETAIL_LEN`], [`MAX_DETAIL_ENTRIES`]) when the
//! event is recorded, so no input can grow a row or a log line.
//!
//! # Durability rule
//!
//! Events are written **after** the change they describe has committed and **before** the
//! caller gets its answer: when `revoke_key` returns, its events are in the store (or logged,
//! see below). A failed write **never undoes or hides the change** — the key stays revoked and
//! the caller gets its normal answer — and **an event is never dropped silently**: the full
//! event is logged at `ERROR` under the [`AUDIT_TARGET`] target, so the log pipeline still
//! has it, and counted ([`Authenticator::audit_write_failures`]).
//!
//! Every event is also emitted as a `tracing` event at `INFO` under [`AUDIT_TARGET`]
//! (`nexora_auth::audit`), with the same fields, whether or not a store is configured: route
//! that target to a log pipeline to ship the trail elsewhere.
//!
//! Why after the commit and not in the same transaction: the [`KeyStore`](crate::KeyStore) and
//! [`UserStore`](crate::UserStore) traits write one change per call, and a store is free to be
//! a different backend from the [`AuditStore`]. Writing both atomically would need the trail
//! to be part of each store write; the rule above is what holds for every combination of
//! stores. A process that dies between the commit and the write loses that one event.
//!
//! # Cascades and throttling
//!
//! A cascading revoke records `key_revoked` for the key named (with `cascaded`, the number of
//! keys the cascade revoked with it) and one `key_revoked_by_cascade` per key revoked with it
//! (with `cascade_root`, the key named), so every key's own history is complete.
//! `login_throttled` is recorded when a failed login **locks** an email or a client address
//! (detail `locked`: `email`, `client` or `email_and_client`), once per lock; the attempts
//! refused while the lock lasts cost no store write, so a flood of refused logins cannot turn
//! into a flood of writes.
//!
//! [`Authenticator::record_event`]: crate::Authenticator::record_event
//! [`Authenticator::audit_write_failures`]: crate::Authenticator::audit_write_failures

use std::{
    borrow::Cow,
    collections::{BTreeMap, VecDeque},
    fmt,
    net::IpAddr,
    sync::Mutex,
};

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Credential, KeyId, OwnerId, Principal, StoreError};

/// The `tracing` target of every audit event: `nexora_auth::audit`.
pub const AUDIT_TARGET: &str = "nexora_auth::audit";

/// Longest owner, target or system actor name kept, in bytes; longer text is cut at a
/// character boundary. Owner and target are ids (a UUID is 36 bytes). In every text field,
/// control characters are replaced by U+FFFD.
pub const MAX_FIELD_LEN: usize = 128;
/// Most entries an [`AuditDetail`] keeps; later ones are dropped.
pub const MAX_DETAIL_ENTRIES: usize = 8;
/// Longest detail text value kept, in bytes (a leak URL, say); longer text is cut at a
/// character boundary.
pub const MAX_DETAIL_LEN: usize = 512;
/// Longest detail name kept, in bytes.
pub const MAX_DETAIL_NAME_LEN: usize = 32;

/// `text` with every control character replaced by U+FFFD (so no value can break a log line
/// or hold a NUL, which Postgres text refuses), cut to at most `max` bytes at a character
/// boundary.
fn bounded(mut text: String, max: usize) -> String {
    if text.contains(char::is_control) {
        text = text
            .chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect();
    }
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Whether `text` is within [`MAX_FIELD_LEN`] and free of control characters.
fn within_bounds(text: &str) -> bool {
    text.len() <= MAX_FIELD_LEN && !text.contains(char::is_control)
}

/// `owner` within the bounds of a text field (the same value when it already is).
fn bounded_owner(owner: OwnerId) -> OwnerId {
    if within_bounds(owner.as_str()) {
        owner
    } else {
        OwnerId::new(bounded(owner.as_str().to_owned(), MAX_FIELD_LEN))
    }
}

/// The id of an [`AuditEvent`]: a UUID version 7, so ids sort by time (to the millisecond,
/// then in the order one authenticator recorded them). Also the pagination cursor.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// Wraps a UUID (for stores reading their rows, and cursors read from a request).
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// From the UUID's 16 bytes (big-endian, as stored in a BLOB/BYTEA column).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// Parses the canonical hyphenated UUID form (a `before` cursor in a URL).
    pub fn parse_str(s: &str) -> Result<Self, uuid::Error> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What happened. On the wire and in stores, the snake_case name (`key_revoked`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The snake_case name, as on the wire and in stores.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// The action named `name` (as [`as_str`](Self::as_str) writes it), if any.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// A key was created.
    KeyCreated = "key_created",
    /// A key was given a new secret.
    KeyRotated = "key_rotated",
    /// A key was revoked by a principal of its owner.
    KeyRevoked = "key_revoked",
    /// A key was revoked because the key that created it was revoked with `cascade`.
    KeyRevokedByCascade = "key_revoked_by_cascade",
    /// A key was revoked by someone who presented it (revoke by possession).
    KeyRevokedByPossession = "key_revoked_by_possession",
    /// A key was revoked because a secret scanner reported it leaked.
    KeyRevokedBySecretScanning = "key_revoked_by_secret_scanning",
    /// A secret scanner reported a key leaked, and the policy is to notify only.
    KeyLeakReported = "key_leak_reported",
    /// A key's name or limits (rate limit, credits) were changed.
    KeyLimitsChanged = "key_limits_changed",
    /// A password login succeeded.
    LoginSucceeded = "login_succeeded",
    /// A password login failed (wrong password, unknown email, disabled user).
    LoginFailed = "login_failed",
    /// Failed logins locked an email or a client address.
    LoginThrottled = "login_throttled",
    /// A user was disabled.
    UserDisabled = "user_disabled",
    /// A user was enabled again.
    UserEnabled = "user_enabled",
    /// A user was deleted.
    UserDeleted = "user_deleted",
    /// A user's scopes were replaced.
    UserScopesChanged = "user_scopes_changed",
    /// A short-lived token was derived from a key.
    TokenDerived = "token_derived",
    /// A single-use WebSocket ticket was issued.
    TicketIssued = "ticket_issued",
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acted. On the wire: `{"kind": "user", "user_id": …}`, `{"kind": "key", "key_id": …}`,
/// `{"kind": "system", "name": …}` or `{"kind": "anonymous"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Actor {
    /// A user session (a JWT access token): the user's id.
    User {
        /// The user (owner) id.
        user_id: OwnerId,
    },
    /// An API key: its id.
    Key {
        /// The key id.
        key_id: KeyId,
    },
    /// The application itself, by a short static name (`"cli"`, `"github-secret-scanning"`,
    /// `"revoke-by-possession"`).
    System {
        /// The name (at most [`MAX_FIELD_LEN`] bytes).
        name: Cow<'static, str>,
    },
    /// An unauthenticated caller (a login attempt).
    Anonymous,
}

impl Actor {
    /// The system acting under `name` (a short static name).
    pub const fn system(name: &'static str) -> Self {
        Self::System {
            name: Cow::Borrowed(name),
        }
    }

    /// The actor behind a principal: its key (for a token derived from a key, that key, which
    /// it acts as), its user session, or for a principal the application built itself
    /// ([`Credential::Internal`]) the system named `"application"`.
    pub fn of(principal: &Principal) -> Self {
        match principal.credential() {
            Credential::ApiKey(key_id) | Credential::DerivedToken { key: key_id, .. } => {
                Self::Key { key_id: *key_id }
            }
            Credential::AccessToken { .. } => Self::User {
                user_id: principal.owner().clone(),
            },
            _ => Self::system("application"),
        }
    }

    /// The kind as stores keep it: `user`, `key`, `system` or `anonymous`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::User { .. } => "user",
            Self::Key { .. } => "key",
            Self::System { .. } => "system",
            Self::Anonymous => "anonymous",
        }
    }

    /// The id or name as stores keep it next to [`kind`](Self::kind) (`None` for anonymous).
    pub fn id(&self) -> Option<String> {
        match self {
            Self::User { user_id } => Some(user_id.as_str().to_owned()),
            Self::Key { key_id } => Some(key_id.to_string()),
            Self::System { name } => Some(name.clone().into_owned()),
            Self::Anonymous => None,
        }
    }

    /// The actor a store wrote as `kind` and `id` ([`kind`](Self::kind), [`id`](Self::id));
    /// `None` for a pair no actor writes (a corrupt row).
    pub fn from_parts(kind: &str, id: Option<String>) -> Option<Self> {
        match (kind, id) {
            ("user", Some(id)) => Some(Self::User {
                user_id: OwnerId::new(id),
            }),
            ("key", Some(id)) => KeyId::parse_str(&id)
                .ok()
                .map(|key_id| Self::Key { key_id }),
            ("system", Some(name)) => Some(Self::System {
                name: Cow::Owned(name),
            }),
            ("anonymous", None) => Some(Self::Anonymous),
            _ => None,
        }
    }

    fn bounded(self) -> Self {
        match self {
            Self::System { name } if !within_bounds(&name) => Self::System {
                name: Cow::Owned(bounded(name.into_owned(), MAX_FIELD_LEN)),
            },
            Self::User { user_id } => Self::User {
                user_id: bounded_owner(user_id),
            },
            other => other,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "{}:{id}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// How the action ended. On the wire and in stores: `success`, `failure` or `denied`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditOutcome {
    /// The action happened (the default).
    #[default]
    Success,
    /// The action was attempted and failed (a wrong password).
    Failure,
    /// A rule refused the action before it was attempted (a lock, a missing permission).
    Denied,
}

impl AuditOutcome {
    /// The snake_case name, as on the wire and in stores.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }

    /// The outcome named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Success, Self::Failure, Self::Denied]
            .into_iter()
            .find(|o| o.as_str() == name)
    }
}

/// One value of an [`AuditDetail`]: a count or a short text. On the wire, a JSON number or
/// string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum DetailValue {
    /// A count (keys revoked by a cascade).
    Count(u64),
    /// A short non-secret text (a leak's URL, a scanner's name), at most [`MAX_DETAIL_LEN`]
    /// bytes.
    Text(String),
}

impl From<u64> for DetailValue {
    fn from(n: u64) -> Self {
        Self::Count(n)
    }
}

impl From<usize> for DetailValue {
    fn from(n: usize) -> Self {
        Self::Count(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

impl From<String> for DetailValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&str> for DetailValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<KeyId> for DetailValue {
    fn from(id: KeyId) -> Self {
        Self::Text(id.to_string())
    }
}

/// Extra non-secret facts of an event, by name: at most [`MAX_DETAIL_ENTRIES`] entries, names
/// of at most [`MAX_DETAIL_NAME_LEN`] bytes, texts of at most [`MAX_DETAIL_LEN`] bytes. On the
/// wire, a JSON object (`{"cascaded": 3}`); stores keep it as that JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct AuditDetail(BTreeMap<String, DetailValue>);

impl AuditDetail {
    /// No detail.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, within the bounds (an entry past [`MAX_DETAIL_ENTRIES`] is
    /// dropped; long names and texts are cut).
    pub fn insert(&mut self, name: &str, value: impl Into<DetailValue>) {
        let name = bounded(name.to_owned(), MAX_DETAIL_NAME_LEN);
        if self.0.len() >= MAX_DETAIL_ENTRIES && !self.0.contains_key(&name) {
            return;
        }
        let value = match value.into() {
            DetailValue::Text(text) => DetailValue::Text(bounded(text, MAX_DETAIL_LEN)),
            count => count,
        };
        self.0.insert(name, value);
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&DetailValue> {
        self.0.get(name)
    }

    /// The entries, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &DetailValue)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The JSON object text stores keep (`{}` when empty).
    pub fn to_json(&self) -> String {
        // A map of strings to numbers and strings always serialises.
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The detail a store kept as [`to_json`](Self::to_json) text; an error for text no
    /// detail writes (a corrupt row).
    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::backend("corrupt row: audit detail", e))
    }

    fn bounded(self) -> Self {
        let mut out = Self::new();
        for (name, value) in self.0 {
            out.insert(&name, value);
        }
        out
    }
}

/// A recorded event, as stores keep it and `GET /api/users/me/audit-events` returns it:
/// `{id, at, action, actor, owner, target, client, outcome, detail}` (`at` in RFC 3339).
///
/// Not `#[non_exhaustive]` on purpose: store implementations build it from their rows.
/// Events are made with [`NewAuditEvent`] and stamped (id, time, bounds) when recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct AuditEvent {
    /// The event id (time-ordered; the pagination cursor).
    pub id: EventId,
    /// When it happened, to the microsecond.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub action: AuditAction,
    /// Who did it.
    pub actor: Actor,
    /// Whose trail the event belongs to (`None`: nobody's, such as a failed login for an
    /// unknown email).
    pub owner: Option<OwnerId>,
    /// What it was done to: a key id or a user id.
    pub target: Option<String>,
    /// The client address of the request, when there was one.
    pub client: Option<IpAddr>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Extra non-secret facts.
    pub detail: AuditDetail,
}

impl AuditEvent {
    /// The event as one line of JSON (what the `ERROR` log of a failed write carries).
    pub fn to_json(&self) -> String {
        // Every field serialises (times within the year 9999: the clock's).
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"id\":\"{}\"}}", self.id))
    }
}

/// An event to record: built here, stamped with its id and time by the
/// [`Authenticator`](crate::Authenticator) that records it
/// ([`Authenticator::record_event`](crate::Authenticator::record_event)).
///
/// The outcome defaults to [`AuditOutcome::Success`]; everything else optional defaults to
/// none.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an event is recorded by Authenticator::record_event"]
pub struct NewAuditEvent {
    action: AuditAction,
    actor: Actor,
    owner: Option<OwnerId>,
    target: Option<String>,
    client: Option<IpAddr>,
    outcome: AuditOutcome,
    detail: AuditDetail,
}

impl NewAuditEvent {
    /// `actor` did `action`, successfully; no owner, target or client yet.
    pub fn new(action: AuditAction, actor: Actor) -> Self {
        Self {
            action,
            actor,
            owner: None,
            target: None,
            client: None,
            outcome: AuditOutcome::Success,
            detail: AuditDetail::new(),
        }
    }

    /// `principal` did `action`: the actor is its credential ([`Actor::of`]), the event goes
    /// to its owner's trail, and the client is its address ([`Principal::client`]).
    pub fn by(action: AuditAction, principal: &Principal) -> Self {
        Self::new(action, Actor::of(principal))
            .owner(principal.owner().clone())
            .client(principal.client())
    }

    /// The owner whose trail the event belongs to.
    pub fn owner(mut self, owner: OwnerId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// The target: a key.
    pub fn target_key(mut self, id: KeyId) -> Self {
        self.target = Some(id.to_string());
        self
    }

    /// The target: a user.
    pub fn target_user(mut self, id: &OwnerId) -> Self {
        self.target = Some(id.as_str().to_owned());
        self
    }

    /// The client address (`None`: no request, or its address is unknown).
    pub fn client(mut self, client: Option<IpAddr>) -> Self {
        self.client = client;
        self
    }

    /// How it ended (defaults to [`AuditOutcome::Success`]).
    pub fn outcome(mut self, outcome: AuditOutcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Adds a non-secret fact (see [`AuditDetail::insert`] for the bounds).
    pub fn detail(mut self, name: &'static str, value: impl Into<DetailValue>) -> Self {
        self.detail.insert(name, value);
        self
    }

    /// The event with its id and time, every field within its bound.
    pub(crate) fn stamp(self, id: EventId, at: OffsetDateTime) -> AuditEvent {
        AuditEvent {
            id,
            at,
            action: self.action,
            actor: self.actor.bounded(),
            owner: self.owner.map(bounded_owner),
            target: self.target.map(|t| bounded(t, MAX_FIELD_LEN)),
            client: self.client,
            outcome: self.outcome,
            detail: self.detail.bounded(),
        }
    }
}

/// Which events [`AuditStore::list`] returns: newest first (by id), at most `limit`, only
/// `owner`'s when set, only those older than `before` when set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only this owner's events (`None`: everyone's, and those of no owner).
    pub owner: Option<OwnerId>,
    /// Only events whose id is lower than this one (the cursor of the previous page).
    pub before: Option<EventId>,
    /// At most this many events.
    pub limit: usize,
}

impl AuditQuery {
    /// The newest `limit` events of everyone (for admin tools).
    pub fn all(limit: usize) -> Self {
        Self {
            owner: None,
            before: None,
            limit,
        }
    }

    /// The newest `limit` events of `owner`.
    pub fn for_owner(owner: OwnerId, limit: usize) -> Self {
        Self {
            owner: Some(owner),
            before: None,
            limit,
        }
    }

    /// Only events older than `cursor` (the last id of the previous page).
    pub fn before(mut self, cursor: Option<EventId>) -> Self {
        self.before = cursor;
        self
    }

    /// Whether `event` matches the owner and cursor conditions (not the limit).
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.owner
            .as_ref()
            .is_none_or(|owner| event.owner.as_ref() == Some(owner))
            && self.before.is_none_or(|before| event.id < before)
    }
}

/// Storage for the audit trail.
///
/// # Contract
///
/// The `nexora-auth-testkit` conformance suite (`audit_store_conformance!`) checks each point.
///
/// * **Sharing and errors** as for [`KeyStore`](crate::KeyStore): `Send + Sync + 'static`,
///   used as `Arc<dyn AuditStore>`; `Err` means the store failed, never "nothing there".
/// * **record** stores a batch of events as given, all or none; every field reads back
///   exactly (times to the microsecond: callers write whole microseconds). An id already
///   stored is [`StoreError::DuplicateId`], and nothing of the batch is stored.
/// * **list** returns the events matching the [`AuditQuery`], newest first by id (ids are
///   UUIDs version 7, compared as their 16 big-endian bytes), at most `limit` of them: with
///   `owner`, only that owner's; with `before`, only ids lower than it. Paging with the last
///   id of each page as the next `before` visits every matching event once.
/// * **prune** deletes every event whose `at` is before the given instant and no other, and
///   returns how many it deleted.
/// * A store may bound what it keeps (the in-memory store drops its oldest events past its
///   capacity); it says so in its docs.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Stores a batch of events, atomically.
    async fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// The events matching `query`, newest first.
    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError>;

    /// Deletes the events older than `before`; returns how many.
    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}

/// An in-memory [`AuditStore`], bounded: it keeps the newest
/// [`capacity`](MemoryAuditStore::with_capacity) events (10 000 by default) and drops the
/// oldest past it. Each event is bounded in bytes (see the [module docs](self)), so the store
/// is too.
#[derive(Debug)]
pub struct MemoryAuditStore {
    /// Sorted by id, oldest first.
    events: Mutex<VecDeque<AuditEvent>>,
    capacity: usize,
}

impl Default for MemoryAuditStore {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

impl MemoryAuditStore {
    /// How many events [`MemoryAuditStore::new`] keeps: 10 000.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// An empty store keeping [`Self::DEFAULT_CAPACITY`] events.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping the newest `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.events().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.events().is_empty()
    }

    fn events(&self) -> std::sync::MutexGuard<'_, VecDeque<AuditEvent>> {
        // Every critical section leaves the deque sorted: a poisoned lock is still valid.
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl AuditStore for MemoryAuditStore {
    async fn record(&self, batch: &[AuditEvent]) -> Result<(), StoreError> {
        let mut events = self.events();
        let position =
            |events: &VecDeque<AuditEvent>, id: EventId| events.binary_search_by_key(&id, |e| e.id);
        let mut ids: Vec<EventId> = batch.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1])
            || ids.iter().any(|id| position(&events, *id).is_ok())
        {
            return Err(StoreError::DuplicateId);
        }
        for event in batch {
            // Ids are time-ordered: almost always the newest, so this is a push at the back.
            if let Err(at) = position(&events, event.id) {
                events.insert(at, event.clone());
            }
        }
        while events.len() > self.capacity {
            events.pop_front();
        }
        Ok(())
    }

    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .events()
            .iter()
            .rev()
            .filter(|e| query.matches(e))
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut events = self.events();
        let was = events.len();
        events.retain(|e| e.at >= before);
        Ok(u64::try_from(was - events.len()).unwrap_or(u64::MAX))
    }
}

/// The `tracing` fields of an event, emitted by the authenticator's record path.
pub(crate) fn trace(event: &AuditEvent) {
    tracing::info!(
        target: AUDIT_TARGET,
        id = %event.id,
        action = event.action.as_str(),
        actor = %event.actor,
        owner = event.owner.as_ref().map(OwnerId::as_str),
        target = event.target.as_deref(),
        client = event.client.map(|c| c.to_string()),
        outcome = event.outcome.as_str(),
        detail = %event.detail.to_json(),
        "audit event"
    );
}

/// Logs an event a store failed to keep, in full, at `ERROR`.
pub(crate) fn trace_lost(event: &AuditEvent, error: &StoreError) {
    tracing::error!(
        target: AUDIT_TARGET,
        event = %event.to_json(),
        error = %error,
        "audit event not stored"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip_and_match_serde() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(*action));
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::Value::from(action.as_str())
            );
        }
        assert_eq!(AuditAction::parse("key_exploded"), None);
    }

    #[test]
    fn actors_round_trip_through_their_parts() {
        for actor in [
            Actor::User {
                user_id: OwnerId::new("u-1"),
            },
            Actor::Key {
                key_id: KeyId::new_random(),
            },
            Actor::system("cli"),
            Actor::Anonymous,
        ] {
            assert_eq!(Actor::from_parts(actor.kind(), actor.id()), Some(actor));
        }
        assert_eq!(Actor::from_parts("key", Some("not a uuid".into())), None);
        assert_eq!(Actor::from_parts("anonymous", Some("x".into())), None);
    }

    #[test]
    fn every_text_is_bounded_in_bytes() {
        let long = "é".repeat(1000);
        let mut detail = AuditDetail::new();
        for i in 0..20 {
            detail.insert(&format!("{i:x<40}"), long.as_str());
        }
        let event = NewAuditEvent::new(
            AuditAction::KeyLeakReported,
            Actor::System {
                name: Cow::Owned(long.clone()),
            },
        )
        .owner(OwnerId::new(long.clone()))
        .client(None);
        let event = NewAuditEvent {
            target: Some(long.clone()),
            detail,
            ..event
        }
        .stamp(EventId::from_uuid(Uuid::nil()), OffsetDateTime::UNIX_EPOCH);
        assert!(event.owner.unwrap().as_str().len() <= MAX_FIELD_LEN);
        assert!(event.target.unwrap().len() <= MAX_FIELD_LEN);
        assert!(event.actor.id().unwrap().len() <= MAX_FIELD_LEN);
        assert_eq!(event.detail.iter().count(), MAX_DETAIL_ENTRIES);
        for (name, value) in event.detail.iter() {
            assert!(name.len() <= MAX_DETAIL_NAME_LEN);
            let DetailValue::Text(text) = value else {
                panic!("text")
            };
            assert!(text.len() <= MAX_DETAIL_LEN);
        }
    }

    #[test]
    fn control_characters_never_reach_a_row_or_a_log_line() {
        let event = NewAuditEvent::new(AuditAction::KeyLeakReported, Actor::system("cli"))
            .detail("url", "https://x/\n\0fake=1")
            .stamp(EventId::from_uuid(Uuid::nil()), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            event.detail.get("url"),
            Some(&DetailValue::Text(
                "https://x/\u{FFFD}\u{FFFD}fake=1".into()
            ))
        );
    }

    #[test]
    fn detail_json_round_trips() {
        let mut detail = AuditDetail::new();
        detail.insert("cascaded", 3_u64);
        detail.insert("url", "https://example.com/leak");
        let text = detail.to_json();
        assert_eq!(text, r#"{"cascaded":3,"url":"https://example.com/leak"}"#);
        assert_eq!(AuditDetail::from_json(&text).unwrap(), detail);
        assert!(AuditDetail::from_json("[1]").is_err());
    }
}
