//! Leaked keys: ending a key whose text turned up where it should not, reported by a secret
//! scanner ([`Authenticator::revoke_leaked`]) or handed in by whoever found it
//! ([`Authenticator::revoke_by_possession`]). The rules are in the crate docs, "When a key
//! leaks".

use std::net::IpAddr;

use super::{Authenticator, KeyEnd, key_end, keys::revocation_events};
use crate::{
    ApiKey, AuthError, KeyId, KeyParseError,
    audit::{Actor, AuditAction, NewAuditEvent},
    store::{OwnerId, RevokeOutcome},
};

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
    /// report, and a `key_leak_reported` audit event): for deployments that let owners rotate
    /// on their own schedule.
    NotifyOnly,
}

/// A scanner's report of a leaked key: which scanner, where it found the key (the URL and the
/// kind of place, as the scanner says), and the address the report came from. Kept bounded
/// ([`MAX_LEAK_URL_LEN`], [`MAX_LEAK_SOURCE_LEN`]) and free of control characters, since it
/// reaches logs and the audit trail; it is never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakReport {
    scanner: &'static str,
    url: String,
    source: String,
    client: Option<IpAddr>,
}

impl LeakReport {
    /// A report by `scanner` (a short static name, the audit trail's system actor:
    /// `github-secret-scanning`) of a leak at `url`, in a place of kind `source` (GitHub says
    /// `content`, `commit`, `pull_request_description`, …). Both texts are cut to their
    /// bounds, and control characters are dropped. No client address until
    /// [`LeakReport::from_client`].
    pub fn new(scanner: &'static str, url: &str, source: &str) -> Self {
        Self {
            scanner,
            url: bounded(url, MAX_LEAK_URL_LEN),
            source: bounded(source, MAX_LEAK_SOURCE_LEN),
            client: None,
        }
    }

    /// The address the report came from (the scanner's), for the audit trail.
    #[must_use]
    pub fn from_client(mut self, client: Option<IpAddr>) -> Self {
        self.client = client;
        self
    }

    /// The scanner's name.
    pub fn scanner(&self) -> &'static str {
        self.scanner
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
    /// Handles a key a secret scanner found in public (see [When a key leaks](crate#when-a-key-leaks)): a live key
    /// is revoked with every key it created ([`LeakPolicy::Revoke`]) or only reported
    /// ([`LeakPolicy::NotifyOnly`]); anything else changes nothing. Either way a live key is
    /// logged at `warn` with its id, its owner and where it was found, never its text, and
    /// recorded in its owner's audit trail: `key_revoked_by_secret_scanning` (one
    /// `key_revoked_by_cascade` per key revoked with it) or `key_leak_reported`, by the
    /// system actor named after the scanner, with the leak's URL and source and the report's
    /// client address. What is not a live key is not recorded: nothing changed, and a flood of
    /// junk must not become a flood of writes.
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
        let ended = self.end_leaked_key(key, policy).await?;
        let outcome = ended.outcome;
        let actor = Actor::system(report.scanner());
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
        let by_scanner = |action, owner: &OwnerId| {
            NewAuditEvent::new(action, actor.clone())
                .owner(owner.clone())
                .client(report.client)
        };
        let with_report = |event: NewAuditEvent| {
            event
                .detail("url", report.url())
                .detail("source", report.source())
        };
        match &outcome {
            LeakOutcome::Revoked {
                key,
                owner,
                descendants,
            } => {
                let root = ended.root_revoked.then(|| {
                    with_report(by_scanner(AuditAction::KeyRevokedBySecretScanning, owner))
                });
                let events = revocation_events(root, (*key, descendants), true, |action| {
                    by_scanner(action, owner)
                });
                self.record(events).await;
            }
            LeakOutcome::Reported { key, owner } => {
                let event = by_scanner(AuditAction::KeyLeakReported, owner).target_key(*key);
                self.record_event(with_report(event)).await;
            }
            LeakOutcome::NotLive(_) => {}
        }
        Ok(outcome)
    }

    /// Revokes a key by its text, for whoever holds it (no other credential): a live key is
    /// revoked at once with every key it created, and recorded in its owner's audit trail as
    /// `key_revoked_by_possession` (one `key_revoked_by_cascade` per key revoked with it) by the
    /// system actor `revoke-by-possession`, with `client`; anything else changes and records
    /// nothing. Counted against `client`'s limit first ([`AuthenticatorBuilder::possession_limit`](super::AuthenticatorBuilder::possession_limit);
    /// `None`: every request without an address shares one limit), so a refused request
    /// ([`AuthError::RateLimited`]) reads nothing.
    ///
    /// The outcome is for the host's own records; whoever asked should be told the same
    /// whatever it is (see [When a key leaks](crate#when-a-key-leaks) for what timing can tell them).
    pub async fn revoke_by_possession(
        &self,
        key: &str,
        client: Option<IpAddr>,
    ) -> Result<LeakOutcome, AuthError> {
        self.inner
            .possession
            .count_client(client, self.inner.clock.now())?;
        let ended = self.end_leaked_key(key, LeakPolicy::Revoke).await?;
        if let LeakOutcome::Revoked {
            key,
            owner,
            descendants,
        } = &ended.outcome
        {
            tracing::warn!(
                key = %key,
                owner = %owner,
                descendants = descendants.len(),
                client = ?client,
                "key revoked by possession"
            );
            let by_finder = |action| {
                NewAuditEvent::new(action, Actor::system("revoke-by-possession"))
                    .owner(owner.clone())
                    .client(client)
            };
            let root = ended
                .root_revoked
                .then(|| by_finder(AuditAction::KeyRevokedByPossession));
            let events = revocation_events(root, (*key, descendants), true, by_finder);
            self.record(events).await;
        }
        Ok(ended.outcome)
    }

    /// The one rule behind both entry points: judge the text, then revoke or report.
    async fn end_leaked_key(&self, text: &str, policy: LeakPolicy) -> Result<Ended, AuthError> {
        let not_live = |why| Ok(Ended::not_live(why));
        let key = match ApiKey::parse(text) {
            Ok(key) => key,
            Err(e) => return not_live(NotLive::Malformed(e)),
        };
        let id = key.id();
        let Some(record) = self.inner.keys.find_credentials(id).await? else {
            return not_live(NotLive::Unknown);
        };
        let now = self.inner.clock.now();
        // Compare first, judge state second, as authentication does.
        if self.match_secret(&key, &record, now).is_err() {
            return not_live(NotLive::Unknown);
        }
        match key_end(&record, now) {
            Some(KeyEnd::Revoked) => return not_live(NotLive::Revoked),
            Some(KeyEnd::Expired) => return not_live(NotLive::Expired),
            None => {}
        }
        let owner = record.owner.clone();
        if policy == LeakPolicy::NotifyOnly {
            return Ok(Ended {
                outcome: LeakOutcome::Reported { key: id, owner },
                root_revoked: false,
            });
        }
        let cascade = self.inner.keys.revoke_tree(&owner, id, now).await?;
        let revoked: Vec<KeyId> = std::iter::once(id)
            .chain(cascade.descendants.iter().copied())
            .collect();
        self.forget_revoked(&revoked);
        let root_revoked = cascade.root == RevokeOutcome::Revoked;
        // Revoked by someone else since it was read: what this call revoked, if anything.
        if !root_revoked && cascade.descendants.is_empty() {
            return not_live(match cascade.root {
                RevokeOutcome::AlreadyRevoked => NotLive::Revoked,
                _ => NotLive::Unknown,
            });
        }
        Ok(Ended {
            outcome: LeakOutcome::Revoked {
                key: id,
                owner,
                descendants: cascade.descendants,
            },
            root_revoked,
        })
    }
}

/// What [`Authenticator::end_leaked_key`] did: the outcome, and whether this call revoked the
/// key itself (not only keys it created, when a concurrent revoke of the key won).
struct Ended {
    outcome: LeakOutcome,
    root_revoked: bool,
}

impl Ended {
    fn not_live(why: NotLive) -> Self {
        Self {
            outcome: LeakOutcome::NotLive(why),
            root_revoked: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_bounded_and_free_of_control_characters() {
        let report = LeakReport::new(
            "a-scanner",
            &format!("https://github.com/o/r/blob/x\n{}", "é".repeat(400)),
            "content\r\nforged: log line",
        );
        assert!(report.url().len() <= MAX_LEAK_URL_LEN);
        assert!(report.url().starts_with("https://github.com/o/r/blob/xé"));
        assert!(!report.url().contains('\n'));
        assert_eq!(report.source(), "contentforged: log line");
        let long_source = LeakReport::new("a-scanner", "", &"s".repeat(100));
        assert_eq!(long_source.source().len(), MAX_LEAK_SOURCE_LEN);
    }
}
