//! Single-use WebSocket tickets: what a browser puts in a WebSocket URL instead of its
//! credential, and the [`TicketStore`] contract that makes each ticket work once.
//!
//! A browser's WebSocket API cannot set headers, so the credential of a socket travels in its
//! URL, where proxies, browser histories and access logs keep it. A ticket is what should
//! travel there instead: [`Authenticator::issue_ticket`](crate::Authenticator::issue_ticket)
//! hands an authenticated caller a random `nxt_` string that
//! [`Authenticator::redeem_ticket`](crate::Authenticator::redeem_ticket) accepts **once**,
//! within its lifetime (30 seconds by default), for the chat it names if it names one — and
//! then as the principal that asked for it, whose credential must still authenticate at that
//! moment.
//!
//! * **Format.** `nxt_` and 32 characters drawn uniformly from base62 by the operating
//!   system's CSPRNG (190 bits, as the secret of a key), 36 characters in all.
//! * **Storage.** A store keeps the SHA-256 of the ticket ([`TicketDigest`]), never the
//!   ticket: a leaked table names no usable ticket. The ticket is never logged.
//! * **Single use across instances.** [`TicketStore::take_ticket`] removes and returns a
//!   ticket in one atomic step of the shared store, so of any number of concurrent
//!   redemptions on any number of instances exactly one gets it.
//! * **Pruning.** A ticket that was never used stays in the store until
//!   [`TicketStore::prune_tickets`] removes it: the authenticator prunes on issue, at most once
//!   a minute.

use std::fmt;

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::{RandomnessError, store::OwnerId, store::StoreError};

/// The prefix every ticket starts with.
pub const TICKET_PREFIX: &str = "nxt_";
/// Random characters after the prefix.
const TICKET_SECRET_LEN: usize = 32;
/// Length of every ticket, in bytes (all ASCII).
pub const TICKET_LEN: usize = TICKET_PREFIX.len() + TICKET_SECRET_LEN;
/// Longest chat id a ticket may name, in bytes.
pub const MAX_CHAT_ID_LEN: usize = 128;

/// Domain separation of [`TicketDigest::of`].
const TICKET_DOMAIN: &[u8] = b"nexora-auth ws ticket\x01";

/// Generates the text of a new ticket. Secret: it is shown once, to the caller that asked.
pub(crate) fn generate() -> Result<String, RandomnessError> {
    let mut text = [0u8; TICKET_LEN];
    text[..TICKET_PREFIX.len()].copy_from_slice(TICKET_PREFIX.as_bytes());
    crate::key::fill_random_base62(&mut text[TICKET_PREFIX.len()..])?;
    // Prefix and base62 characters: ASCII.
    let ticket = String::from_utf8_lossy(&text).into_owned();
    zeroize::Zeroize::zeroize(&mut text);
    Ok(ticket)
}

/// Whether `text` is of the ticket format: the prefix, then exactly 32 base62 characters.
pub fn is_ticket_format(text: &str) -> bool {
    text.len() == TICKET_LEN
        && text.starts_with(TICKET_PREFIX)
        && text.as_bytes()[TICKET_PREFIX.len()..]
            .iter()
            .all(u8::is_ascii_alphanumeric)
}

/// The SHA-256 of a ticket (with a domain tag): what a [`TicketStore`] keeps and looks
/// tickets up by. A plain hash suffices where keys take a keyed one: a ticket is 190 random
/// bits that live seconds, so there is nothing to guess offline.
///
/// Equality is constant-time; `Debug` does not print the bytes.
#[derive(Clone, Copy)]
pub struct TicketDigest([u8; 32]);

impl TicketDigest {
    /// The digest of the ticket `text`.
    pub fn of(text: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(TICKET_DOMAIN);
        hash.update(text.as_bytes());
        Self(hash.finalize().into())
    }

    /// Wraps digest bytes read back from a store.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest bytes, for a store to write.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for TicketDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for TicketDigest {}

impl std::hash::Hash for TicketDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for TicketDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketDigest([redacted])")
    }
}

/// A stored ticket. Holds the digest of the ticket, never the ticket.
///
/// Not `#[non_exhaustive]` on purpose: store implementations build it from their rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRecord {
    /// The digest the ticket is found by (the store's primary key).
    pub digest: TicketDigest,
    /// The owner of the principal that asked for the ticket.
    pub owner: OwnerId,
    /// The chat the ticket is for; `None`: any chat.
    pub chat_id: Option<String>,
    /// The principal the ticket stands for, as the authenticator encoded it (JSON text: the
    /// credential's kind and id, scopes, lifetimes, the key digest it matched — no secret).
    /// Stores keep it verbatim and never read it.
    pub principal: String,
    /// When the ticket was issued.
    pub created_at: OffsetDateTime,
    /// From this instant on the ticket is not accepted.
    pub expires_at: OffsetDateTime,
}

/// Storage for WebSocket tickets, shared by every instance that redeems them.
///
/// # Contract
///
/// The `nexora-auth-testkit` conformance suite (`ticket_store_conformance!`) checks each
/// point.
///
/// * **Sharing.** `Send + Sync + 'static`, used as `Arc<dyn TicketStore>`; every instance of a
///   deployment uses the same backend, or a ticket could be used once per instance.
/// * **Errors.** `Ok(None)` means "no such ticket"; `Err` means the store failed
///   ([`StoreError::Unavailable`]), never to be turned into "no such ticket" or the reverse.
/// * **Timestamps.** Kept to at least the microsecond, compared as instants with the instant
///   given (never the database's clock).
/// * **insert_ticket** stores the record as given; an existing digest is
///   [`StoreError::DuplicateId`] and changes nothing.
/// * **take_ticket** removes the ticket of `digest` and returns it, in one atomic step, if it
///   exists and has not expired at `now` (`expires_at <= now` is expired; an expired ticket
///   is not returned, and may be removed). Of concurrent takes of one ticket — through one
///   store value or several over the same backend — exactly one returns it; every later take
///   returns `None`.
/// * **prune_tickets** removes every ticket expired at `now` and returns how many; unexpired
///   tickets stay.
#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// Stores a new ticket.
    async fn insert_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError>;

    /// Removes and returns the unexpired ticket of `digest` (see the contract above).
    async fn take_ticket(
        &self,
        digest: &TicketDigest,
        now: OffsetDateTime,
    ) -> Result<Option<TicketRecord>, StoreError>;

    /// Removes the tickets expired at `now`; returns how many.
    async fn prune_tickets(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_random_and_of_their_format() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert!(is_ticket_format(t), "{t}");
            assert_eq!(t.len(), TICKET_LEN);
        }
        assert_ne!(TicketDigest::of(&a), TicketDigest::of(&b));
        assert_eq!(TicketDigest::of(&a), TicketDigest::of(&a.clone()));
        assert_eq!(
            format!("{:?}", TicketDigest::of(&a)),
            "TicketDigest([redacted])"
        );
        for bad in [
            "",
            "nxt_",
            &a[..TICKET_LEN - 1],
            &format!("{a}x"),
            &a.replacen("nxt_", "nxr_", 1),
            &format!("nxt_{}-", &a[4..TICKET_LEN - 1]),
        ] {
            assert!(!is_ticket_format(bad), "{bad:?}");
        }
    }
}
