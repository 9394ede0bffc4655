//! Single-use WebSocket tickets: [`Authenticator::issue_ticket`] and
//! [`Authenticator::redeem_ticket`] (see [`crate::ticket`] for the format and the store).

use std::{sync::atomic::Ordering, time::Duration};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Authenticator, Credential, Principal};
use crate::{
    AuthError, Field, InvalidInput, InvalidReason, KeyDigest, KeyId, Problem, Scopes, SecretString,
    StoreError, StoredDigest, Unavailable,
    audit::{AuditAction, NewAuditEvent},
    ticket::{self, MAX_CHAT_ID_LEN, TicketDigest, TicketRecord, TicketStore},
};

/// How long a ticket is accepted unless
/// [`AuthenticatorBuilder::ws_ticket_ttl`](crate::AuthenticatorBuilder::ws_ticket_ttl) says
/// otherwise: 30 seconds.
pub const DEFAULT_TICKET_TTL: Duration = Duration::from_secs(30);

/// At most one prune of expired tickets per this many seconds, run by the issue that finds
/// it due.
const PRUNE_INTERVAL_SECS: i64 = 60;

/// A ticket just issued. Serialises as `{"ticket", "expires_in"}`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedTicket {
    /// The ticket. Secret until used: give it to its caller only; never log it.
    pub ticket: SecretString,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The chat it is for; `None`: any.
    pub chat_id: Option<String>,
}

impl Serialize for IssuedTicket {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            ticket: &'a str,
            expires_in: u64,
        }
        Body {
            ticket: self.ticket.expose(),
            expires_in: self.expires_in,
        }
        .serialize(serializer)
    }
}

impl Authenticator {
    fn ticket_store(&self) -> Result<&dyn TicketStore, AuthError> {
        self.inner
            .tickets
            .as_deref()
            .ok_or(AuthError::Unavailable(Unavailable::NoTicketStore))
    }

    /// Issues a single-use WebSocket ticket standing for `principal`, for the chat `chat_id`
    /// (any chat when `None`; at most [`MAX_CHAT_ID_LEN`] bytes without control characters,
    /// else [`AuthError::InvalidInput`]). It is accepted once by
    /// [`Authenticator::redeem_ticket`], for the ticket lifetime
    /// ([`AuthenticatorBuilder::ws_ticket_ttl`](crate::AuthenticatorBuilder::ws_ticket_ttl),
    /// 30 seconds by default) or until the credential behind `principal` expires, whichever is
    /// sooner. The store keeps its digest; the ticket itself is returned once and never
    /// logged. Each issue is audited (`ticket_issued`, with its chat and lifetime, never the
    /// ticket). Issuing also prunes expired tickets, at most once a minute.
    pub async fn issue_ticket(
        &self,
        principal: &Principal,
        chat_id: Option<&str>,
    ) -> Result<IssuedTicket, AuthError> {
        let store = self.ticket_store()?;
        if let Some(chat) = chat_id {
            check_chat_id(chat)?;
        }
        let now = self.inner.clock.now();
        let expires_at = super::derived::earliest(
            Some(now + self.inner.ticket_ttl),
            principal.credential_expires_at(),
        )
        .unwrap_or(now);
        if expires_at <= now {
            return Err(AuthError::InvalidToken(InvalidReason::Expired));
        }
        let sealed = seal(principal);
        self.prune_tickets_when_due(store, now).await;
        let text = ticket::generate().map_err(Unavailable::Randomness)?;
        let record = TicketRecord {
            digest: TicketDigest::of(&text),
            owner: principal.owner().clone(),
            chat_id: chat_id.map(str::to_owned),
            principal: sealed,
            created_at: now,
            expires_at,
        };
        // A duplicate of 190 fresh random bits does not happen; if the store says so, it is
        // broken, and the request fails (503) rather than retrying.
        store.insert_ticket(&record).await?;
        let expires_in = u64::try_from((expires_at - now).whole_seconds()).unwrap_or(0);
        // Never the ticket (nor its digest): what it is for and how long it lives.
        let mut event = NewAuditEvent::by(AuditAction::TicketIssued, principal)
            .detail("expires_in", expires_in);
        if let Some(chat) = &record.chat_id {
            event = event.detail("chat_id", chat.as_str());
        }
        if let Some(key) = principal.key_id() {
            event = event.target_key(key);
        }
        self.record_event(event).await;
        Ok(IssuedTicket {
            ticket: SecretString::new(text),
            expires_in,
            chat_id: record.chat_id,
        })
    }

    /// Redeems a WebSocket ticket at the chat `chat_id` (`None`: a route without chats): the
    /// ticket is used up by this call, whatever its outcome, and the principal it stands for
    /// is returned as it authenticates now ([`Authenticator::revalidate`]: its key or token
    /// and its user must still be live).
    ///
    /// Refused as a bad credential ([`AuthError::InvalidToken`]): a string not of the ticket
    /// format ([`InvalidReason::MalformedTicket`]); a ticket never issued, already used or
    /// expired ([`InvalidReason::UnknownTicket`]); a ticket for another chat
    /// ([`InvalidReason::TicketForAnotherChat`]); a principal whose credential ended. A store
    /// outage is [`AuthError::StoreUnavailable`].
    pub async fn redeem_ticket(
        &self,
        ticket: &str,
        chat_id: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let store = self.ticket_store()?;
        if !ticket::is_ticket_format(ticket) {
            return Err(AuthError::InvalidToken(InvalidReason::MalformedTicket));
        }
        let now = self.inner.clock.now();
        let record = store
            .take_ticket(&TicketDigest::of(ticket), now)
            .await?
            .ok_or(AuthError::InvalidToken(InvalidReason::UnknownTicket))?;
        if record
            .chat_id
            .as_deref()
            .is_some_and(|bound| Some(bound) != chat_id)
        {
            return Err(AuthError::InvalidToken(InvalidReason::TicketForAnotherChat));
        }
        let principal = unseal(&record).ok_or_else(|| {
            AuthError::StoreUnavailable(StoreError::unavailable(
                "a stored ticket's principal does not decode",
            ))
        })?;
        self.revalidate(&principal).await
    }

    /// Removes the expired tickets from the ticket store now; returns how many. Issuing does
    /// this at most once a minute by itself.
    pub async fn prune_tickets(&self) -> Result<u64, AuthError> {
        let now = self.inner.clock.now();
        Ok(self.ticket_store()?.prune_tickets(now).await?)
    }

    async fn prune_tickets_when_due(&self, store: &dyn TicketStore, now: OffsetDateTime) {
        let at = now.unix_timestamp();
        let last = &self.inner.last_ticket_prune;
        let previous = last.load(Ordering::Relaxed);
        let due = at.saturating_sub(previous) >= PRUNE_INTERVAL_SECS
            && last
                .compare_exchange(previous, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due && let Err(e) = store.prune_tickets(now).await {
            tracing::warn!(error = %e, "pruning expired WebSocket tickets failed; will retry");
        }
    }
}

/// A chat id a ticket may name: 1 to [`MAX_CHAT_ID_LEN`] bytes, no control character.
fn check_chat_id(chat: &str) -> Result<(), InvalidInput> {
    let problem = if chat.is_empty() {
        Problem::TooShort { min: 1 }
    } else if chat.len() > MAX_CHAT_ID_LEN {
        Problem::TooLong {
            max: MAX_CHAT_ID_LEN,
        }
    } else if chat.chars().any(char::is_control) {
        Problem::ControlCharacter
    } else {
        return Ok(());
    };
    Err(InvalidInput::new(Field::ChatId, problem))
}

/// What a ticket keeps of its principal (the owner is the record's own column).
#[derive(Serialize, Deserialize)]
struct Sealed {
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    scopes: Scopes,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    valid_until: Option<OffsetDateTime>,
    /// The key digest the credential matched: pepper version and URL-safe base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<(u32, String)>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Key,
    Token,
    Derived,
    Internal,
}

/// The principal as a ticket stores it (JSON).
fn seal(principal: &Principal) -> String {
    use base64::Engine as _;
    let (kind, key, jti) = match principal.credential() {
        Credential::ApiKey(id) => (Kind::Key, Some(*id), None),
        Credential::AccessToken { jti } => (Kind::Token, None, jti.clone()),
        Credential::DerivedToken { key, jti } => (Kind::Derived, Some(*key), jti.clone()),
        Credential::Internal => (Kind::Internal, None, None),
    };
    let sealed = Sealed {
        kind,
        key,
        jti,
        scopes: principal.scopes().clone(),
        expires_at: principal.expires_at(),
        valid_until: principal.credential_expires_at(),
        digest: principal.matched_digest().map(|d| {
            (
                d.pepper_version,
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.digest.as_bytes()),
            )
        }),
    };
    // Strings, numbers and a list of strings serialise; were it ever to fail, the empty text
    // does not decode, and the ticket is refused at redemption (fail closed).
    serde_json::to_string(&sealed).unwrap_or_default()
}

/// The principal a ticket record stands for; `None` when its text does not decode.
fn unseal(record: &TicketRecord) -> Option<Principal> {
    use base64::Engine as _;
    let sealed: Sealed = serde_json::from_str(&record.principal).ok()?;
    let credential = match (sealed.kind, sealed.key) {
        (Kind::Key, Some(id)) => Credential::ApiKey(id),
        (Kind::Token, None) => Credential::AccessToken { jti: sealed.jti },
        (Kind::Derived, Some(key)) => Credential::DerivedToken {
            key,
            jti: sealed.jti,
        },
        (Kind::Internal, None) => Credential::Internal,
        _ => return None,
    };
    let mut principal = Principal::new(record.owner.clone(), credential, sealed.scopes)
        .with_expiry(sealed.expires_at)
        .with_credential_expiry(sealed.valid_until);
    if let Some((pepper_version, digest)) = sealed.digest {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(digest)
            .ok()?;
        principal = principal.with_digest(StoredDigest {
            pepper_version,
            digest: KeyDigest::try_from(bytes.as_slice()).ok()?,
        });
    }
    Some(principal)
}
