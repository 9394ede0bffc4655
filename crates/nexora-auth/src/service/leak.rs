//! Leaked keys: ending a key whose text turned up where it should not, reported by a secret
//! scanner ([`Authenticator::revoke_leaked`]) or handed in by whoever found it
//! ([`Authenticator::revoke_by_possession`]).
//!
//! # Authority
//!
//! The key's text is the authority, not a principal: whoever holds a key may end it, and an id
//! alone reaches nothing. So these operations stand beside [`crate::policy`] (which judges what
//! a principal may do to its owner's keys) rather than under it; they reach exactly the key the
//! text authenticates as, and the keys it created.
//!
//! # What counts as live
//!
//! The text is a well-formed key (prefix, alphabet, length, checksum: [`ApiKey::parse`]), the
//! store has its id, its secret matches the stored digest (or the previous one, during a
//! rotation's grace period) and the key is neither revoked nor expired. The user behind it is
//! not consulted: a disabled user's keys work again once the user is enabled, so a leaked one
//! is ended all the same.
//!
//! # What revoking does
//!
//! The key and every key it created, transitively, are revoked in one atomic step
//! ([`KeyStore::revoke_tree`](crate::KeyStore::revoke_tree)): whoever read the leaked text
//! could have minted keys with it (if it held `keys:manage`, it could equally have revoked
//! the whole tree itself), and nothing tells their keys from the owner's. The record is read
//! from the store, not the verification cache, and the secret is checked against it before the
//! tree is revoked: a rotation that lands between the two is revoked with the key, the safe
//! direction (the new secret was issued while the old one was public).
//!
//! # What a caller learns
//!
//! Nothing but what the key itself would tell it. Every well-formed key costs one store read,
//! and the secret is compared (in constant time) whatever the key's state; only a key that
//! is live, and whose secret the caller therefore holds, costs a write as well. A holder of
//! that secret can learn the same by authenticating with it. A malformed text costs no read:
//! its format is public and checked offline, so the time it takes tells the caller only what
//! it could compute itself.

use std::net::IpAddr;

use super::{Authenticator, KeyEnd, key_end};
use crate::{ApiKey, AuthError, KeyId, KeyParseError, store::OwnerId, store::RevokeOutcome};

/// Longest leak URL kept from a report, in bytes; the rest is cut (at a character boundary).
pub const MAX_LEAK_URL_LEN: usize = 512;
/// Longest leak source kept from a report (`content`, `commit`, `issue_comment`, …), in
/// bytes.
pub const MAX_LEAK_SOURCE_LEN: usize = 64;

/// What to do with a live key a secret scanner reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LeakPolicy {
    /// Revoke it, and every key it created, at once. The default.
    #[default]
    Revoke,
    /// Leave it working and only report it (a `warn` event with the key's id, owner and the
    /// report): for deployments that let owners rotate on their own schedule.
    NotifyOnly,
}

/// Where a scanner found a key: the URL and the kind of place, as the scanner reports them.
/// Kept bounded ([`MAX_LEAK_URL_LEN`], [`MAX_LEAK_SOURCE_LEN`]) and free of control
/// characters, since it reaches logs; it is never a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakReport {
    url: String,
    source: String,
}

impl LeakReport {
    /// A report of a leak at `url`, in a place of kind `source` (GitHub says `content`,
    /// `commit`, `pull_request_description`, …). Both are cut to their bounds, and control
    /// characters are dropped.
    pub fn new(url: &str, source: &str) -> Self {
        Self {
            url: bounded(url, MAX_LEAK_URL_LEN),
            source: bounded(source, MAX_LEAK_SOURCE_LEN),
        }
    }

    /// Where the key was found.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kind of place it was found in.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// `text` without control characters, cut to at most `max` bytes at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// What became of a reported key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeakOutcome {
    /// The key was live and is revoked now, with the keys it created that were still live.
    Revoked {
        /// The reported key.
        key: KeyId,
        /// Its owner.
        owner: OwnerId,
        /// The keys it created, transitively, that this revoked.
        descendants: Vec<KeyId>,
    },
    /// The key is live and was left working ([`LeakPolicy::NotifyOnly`]).
    Reported {
        /// The reported key.
        key: KeyId,
        /// Its owner.
        owner: OwnerId,
    },
    /// The text is not a live key; nothing changed.
    NotLive(NotLive),
}

impl LeakOutcome {
    /// Whether the text was a live key when reported (a secret scanner's "true positive").
    pub fn was_live(&self) -> bool {
        !matches!(self, Self::NotLive(_))
    }
}

/// Why a reported text is not a live key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotLive {
    /// Not a well-formed key (the checksum included).
    Malformed(KeyParseError),
    /// No key has this id, or its secret is not this one (a rotated-out secret past its grace
    /// period, a forged key).
    Unknown,
    /// The key is revoked already.
    Revoked,
    /// The key has expired.
    Expired,
}

impl Authenticator {
    /// Handles a key a secret scanner found in public (see the [module docs](self)): a live key
    /// is revoked with every key it created ([`LeakPolicy::Revoke`]) or only reported
    /// ([`LeakPolicy::NotifyOnly`]); anything else changes nothing. Either way a live key is
    /// logged at `warn` with its id, its owner and where it was found, never its text.
    ///
    /// `Err` only when the store fails ([`AuthError::StoreUnavailable`]): the report can be
    /// sent again, and a key revoked by the first attempt then reads as
    /// [`NotLive::Revoked`].
    pub async fn revoke_leaked(
        &self,
        key: &str,
        report: &LeakReport,
        policy: LeakPolicy,
    ) -> Result<LeakOutcome, AuthError> {
        let outcome = self.end_leaked_key(key, policy).await?;
        match &outcome {
            LeakOutcome::Revoked {
                key,
                owner,
                descendants,
            } => tracing::warn!(
                key = %key,
                owner = %owner,
                descendants = descendants.len(),
                url = report.url(),
                source = report.source(),
                "leaked key revoked (secret scanning)"
            ),
            LeakOutcome::Reported { key, owner } => tracing::warn!(
                key = %key,
                owner = %owner,
                url = report.url(),
                source = report.source(),
                "leaked key reported (secret scanning); policy: notify only"
            ),
            LeakOutcome::NotLive(_) => {}
        }
        // AUDIT(leak): record `key_revoked_by_secret_scanning` (detail: report.url(),
        // report.source()) or `key_leak_reported`, actor "system", once the audit trail lands.
        Ok(outcome)
    }

    /// Revokes a key by its text, for whoever holds it (no other credential): a live key is
    /// revoked at once with every key it created; anything else changes nothing. Counted
    /// against `client`'s limit first ([`AuthenticatorBuilder::possession_limit`](super::AuthenticatorBuilder::possession_limit);
    /// `None`: every request without an address shares one limit), so a refused request
    /// ([`AuthError::RateLimited`]) reads nothing.
    ///
    /// The outcome is for the host's own records; whoever asked should be told the same
    /// whatever it is (see the [module docs](self) for what timing can tell them).
    pub async fn revoke_by_possession(
        &self,
        key: &str,
        client: Option<IpAddr>,
    ) -> Result<LeakOutcome, AuthError> {
        self.inner
            .possession
            .count_client(client, self.inner.clock.now())?;
        let outcome = self.end_leaked_key(key, LeakPolicy::Revoke).await?;
        if let LeakOutcome::Revoked {
            key,
            owner,
            descendants,
        } = &outcome
        {
            tracing::warn!(
                key = %key,
                owner = %owner,
                descendants = descendants.len(),
                client = ?client,
                "key revoked by possession"
            );
        }
        // AUDIT(leak): record `key_revoked_by_possession`, actor "system", with `client`, once
        // the audit trail lands.
        Ok(outcome)
    }

    /// The one rule behind both entry points: judge the text, then revoke or report.
    async fn end_leaked_key(
        &self,
        text: &str,
        policy: LeakPolicy,
    ) -> Result<LeakOutcome, AuthError> {
        let key = match ApiKey::parse(text) {
            Ok(key) => key,
            Err(e) => return Ok(LeakOutcome::NotLive(NotLive::Malformed(e))),
        };
        let id = key.id();
        let Some(record) = self.inner.keys.find_credentials(id).await? else {
            return Ok(LeakOutcome::NotLive(NotLive::Unknown));
        };
        let now = self.inner.clock.now();
        // Compare first, judge state second, as authentication does.
        if self.match_secret(&key, &record, now).is_err() {
            return Ok(LeakOutcome::NotLive(NotLive::Unknown));
        }
        match key_end(&record, now) {
            Some(KeyEnd::Revoked) => return Ok(LeakOutcome::NotLive(NotLive::Revoked)),
            Some(KeyEnd::Expired) => return Ok(LeakOutcome::NotLive(NotLive::Expired)),
            None => {}
        }
        let owner = record.owner.clone();
        if policy == LeakPolicy::NotifyOnly {
            return Ok(LeakOutcome::Reported { key: id, owner });
        }
        let cascade = self.inner.keys.revoke_tree(&owner, id, now).await?;
        let revoked: Vec<KeyId> = std::iter::once(id)
            .chain(cascade.descendants.iter().copied())
            .collect();
        self.forget_revoked(&revoked);
        Ok(match cascade.root {
            RevokeOutcome::Revoked => LeakOutcome::Revoked {
                key: id,
                owner,
                descendants: cascade.descendants,
            },
            // Revoked by someone else since it was read: what this call revoked, if anything.
            _ if !cascade.descendants.is_empty() => LeakOutcome::Revoked {
                key: id,
                owner,
                descendants: cascade.descendants,
            },
            RevokeOutcome::AlreadyRevoked => LeakOutcome::NotLive(NotLive::Revoked),
            _ => LeakOutcome::NotLive(NotLive::Unknown),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_bounded_and_free_of_control_characters() {
        let report = LeakReport::new(
            &format!("https://github.com/o/r/blob/x\n{}", "é".repeat(400)),
            "content\r\nforged: log line",
        );
        assert!(report.url().len() <= MAX_LEAK_URL_LEN);
        assert!(report.url().starts_with("https://github.com/o/r/blob/xé"));
        assert!(!report.url().contains('\n'));
        assert_eq!(report.source(), "contentforged: log line");
        let long_source = LeakReport::new("", &"s".repeat(100));
        assert_eq!(long_source.source().len(), MAX_LEAK_SOURCE_LEN);
    }
}
