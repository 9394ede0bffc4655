//! What the SQL stores share of the audit trail (schema version 4): the columns, one row's
//! values in the types both dialects bind, and the rules for a batch insert's result.

use std::net::IpAddr;

use nexora_auth::{
    AuditEvent, OwnerId, StoreError,
    audit::{Actor, AuditAction, AuditDetail, AuditOutcome, EventId},
};
use time::OffsetDateTime;

use crate::{corrupt, unique_violation};

/// The columns of an audit row, in the order the stores' statements list them.
pub const AUDIT_COLUMNS: &str =
    "id, at, action, actor_kind, actor_id, owner, target, client, outcome, detail";

/// An audit event as a row holds it: the id and the time in the dialect's own types, the
/// rest as text (the action, actor kind and outcome by their snake_case names, the client
/// address in its canonical text form, the detail as its JSON object text).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditRow {
    /// The event id.
    pub id: EventId,
    /// When it happened (microseconds).
    pub at: OffsetDateTime,
    /// [`AuditAction::as_str`].
    pub action: String,
    /// [`Actor::kind`].
    pub actor_kind: String,
    /// [`Actor::id`].
    pub actor_id: Option<String>,
    /// The owner id.
    pub owner: Option<String>,
    /// The target id.
    pub target: Option<String>,
    /// The client address, as text.
    pub client: Option<String>,
    /// [`AuditOutcome::as_str`].
    pub outcome: String,
    /// [`AuditDetail::to_json`].
    pub detail: String,
}

impl AuditRow {
    /// A row's values from what it read, in [`AUDIT_COLUMNS`] order (for the stores'
    /// decoders, which then call [`into_event`](Self::into_event)).
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per column, in the columns' order"
    )]
    pub fn new(
        id: EventId,
        at: OffsetDateTime,
        action: String,
        actor_kind: String,
        actor_id: Option<String>,
        owner: Option<String>,
        target: Option<String>,
        client: Option<String>,
        outcome: String,
        detail: String,
    ) -> Self {
        Self {
            id,
            at,
            action,
            actor_kind,
            actor_id,
            owner,
            target,
            client,
            outcome,
            detail,
        }
    }

    /// The row that keeps `event`.
    pub fn of(event: &AuditEvent) -> Self {
        Self {
            id: event.id,
            at: event.at,
            action: event.action.as_str().to_owned(),
            actor_kind: event.actor.kind().to_owned(),
            actor_id: event.actor.id(),
            owner: event.owner.as_ref().map(|o| o.as_str().to_owned()),
            target: event.target.clone(),
            client: event.client.map(|c| c.to_string()),
            outcome: event.outcome.as_str().to_owned(),
            detail: event.detail.to_json(),
        }
    }

    /// The event the row keeps; a value no event writes is a corrupt row
    /// ([`StoreError::Unavailable`]).
    pub fn into_event(self) -> Result<AuditEvent, StoreError> {
        Ok(AuditEvent {
            id: self.id,
            at: self.at,
            action: AuditAction::parse(&self.action).ok_or_else(|| corrupt("audit action"))?,
            actor: Actor::from_parts(&self.actor_kind, self.actor_id)
                .ok_or_else(|| corrupt("audit actor"))?,
            owner: self.owner.map(OwnerId::new),
            target: self.target,
            client: self
                .client
                .map(|c| c.parse::<IpAddr>())
                .transpose()
                .map_err(|_| corrupt("audit client address"))?,
            outcome: AuditOutcome::parse(&self.outcome).ok_or_else(|| corrupt("audit outcome"))?,
            detail: AuditDetail::from_json(&self.detail)?,
        })
    }
}

/// The `before` bound a list statement binds: the cursor, or above every id when there is
/// none (so one statement serves both; no version 7 id is the all-ones UUID).
pub fn audit_cursor(before: Option<EventId>) -> EventId {
    before.unwrap_or(EventId::from_uuid(uuid::Uuid::max()))
}

/// A list's `LIMIT`, as the `bigint` both dialects bind.
pub fn audit_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The result of a batch insert, one statement: a unique violation (the primary key, the
/// table's only unique constraint) is [`StoreError::DuplicateId`], and the statement stored
/// nothing.
pub fn audit_recorded(
    inserted: Result<u64, sqlx::Error>,
    failed: impl FnOnce(sqlx::Error) -> StoreError,
) -> Result<(), StoreError> {
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if unique_violation(&e).is_some() => Err(StoreError::DuplicateId),
        Err(e) => Err(failed(e)),
    }
}
