//! GitHub's secret-scanning partner program: the signature on its reports and their wire
//! format, for the endpoint `POST /secret-scanning/github` ([`crate::endpoints`]).
//!
//! GitHub finds text matching our key pattern in public places and posts a JSON array of
//! matches, `[{"token", "type", "url", "source"}]`, signed with ECDSA P-256 / SHA-256 over the
//! **raw body**: `Github-Public-Key-Signature` holds the base64 DER signature,
//! `Github-Public-Key-Identifier` names the key, one of those GitHub publishes at
//! `GET https://api.github.com/meta/public_keys/secret_scanning`
//! (`{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}`, [`GitHubKeys`]). The
//! answer is GitHub's feedback format, `[{"token_raw", "token_type", "label"}]`, where `label`
//! is `true_positive` for a text that was a live key and `false_positive` for anything else
//! (see [`nexora_auth::Authenticator::revoke_leaked`] for what happens to a live key).
//!
//! # Keys: a file, a URL, or both
//!
//! [`SecretScanning::new`] takes a fixed key set (the server reads it from a file in the
//! format above); [`SecretScanning::fetching_from`] adds a [`KeySource`] (the server fetches a
//! URL) whose keys are cached:
//!
//! * they are fetched again once older than [`SecretScanning::refresh_after`] (1 hour by
//!   default), on the next report;
//! * a report signed by a key identifier neither set knows triggers a fetch too (GitHub
//!   rotating its key), but at most one per [`SecretScanning::refetch_interval`] (1 minute by
//!   default) whatever identifiers arrive: an attacker sending random identifiers costs GitHub
//!   one request a minute, not one per report;
//! * a fetch that fails or times out ([`SecretScanning::fetch_timeout`], 10 seconds by default)
//!   keeps the keys fetched before (GitHub's keys change rarely, and refusing every report
//!   would lose them) and is logged at `warn`; while no fetched key exists at all, a report
//!   whose key is unknown is refused as unavailable (503, which GitHub retries) rather than
//!   as unsigned (401).
//!
//! Every key listed is accepted, current or not (`is_current` marks the one GitHub signs new
//! reports with; reports signed before a rotation may still arrive). Keys that are not P-256
//! are refused when the set is read.
//!
//! # What is bounded
//!
//! The body ([`SecretScanning::max_body_bytes`], 1 MiB by default: 413 beyond) and the number
//! of matches ([`SecretScanning::max_matches`], 1,000 by default: 422 beyond), both before any
//! key is looked up; the identifier (256 bytes) and signature (512 bytes) headers, longer ones
//! being refused without a fetch. GitHub waits 30 seconds for an answer: matches are handled
//! eight at a time, but the live keys of one owner are revoked one after another (a SQL store
//! serialises an owner's cascades, each its own commit), and the worst case, a report of
//! 1,000 live keys of one owner, took 1.8 s on SQLite and 6.1 s on Postgres (up to 4.1 s and
//! 11.7 s under load) on a 2-core test machine shared with other builds
//! (`cargo test -p nexora-server --test secret_scanning -- --nocapture`): the default bound
//! keeps that within the 30 seconds with room to spare. A signature carries no time, so a recorded report can be
//! replayed: that revokes nothing new (a revoked key stays revoked) and answers
//! `false_positive` for the keys it revoked the first time.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{Arc, PoisonError, RwLock, RwLockWriteGuard},
    time::Duration,
};

use base64::Engine;
use futures_util::{StreamExt, TryStreamExt, stream};
use nexora_auth::{
    AuthError, Authenticator, Clock, LeakPolicy, LeakReport, SecretString, SystemClock,
};
use p256::{
    ecdsa::{Signature, VerifyingKey, signature::Verifier},
    pkcs8::DecodePublicKey,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::RequestHeaders;

/// The header naming GitHub's signing key, lower-case.
pub const KEY_IDENTIFIER: &str = "github-public-key-identifier";
/// The header holding the base64 DER signature of the body, lower-case.
pub const KEY_SIGNATURE: &str = "github-public-key-signature";
/// Longest key identifier looked up, in bytes (GitHub's are 64 hex digits).
pub const MAX_IDENTIFIER_LEN: usize = 256;
/// Longest signature header read, in bytes (a DER P-256 signature is at most 72 bytes, 96 in
/// base64).
pub const MAX_SIGNATURE_LEN: usize = 512;

/// Why a key set does not load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// Not GitHub's `{"public_keys": [...]}` document.
    #[error("not a GitHub public-key document: {0}")]
    Format(#[source] serde_json::Error),
    /// The document lists no key.
    #[error("the document lists no public key")]
    Empty,
    /// A key is not a P-256 public key in PEM (SubjectPublicKeyInfo).
    #[error("key {identifier:?} is not a P-256 public key in PEM")]
    Key {
        /// Its identifier.
        identifier: String,
    },
}

/// A set of GitHub's secret-scanning public keys, by identifier.
#[derive(Clone, Default)]
pub struct GitHubKeys {
    keys: HashMap<String, VerifyingKey>,
}

impl fmt::Debug for GitHubKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

#[derive(Deserialize)]
struct KeysDocument {
    public_keys: Vec<PublicKeyEntry>,
}

#[derive(Deserialize)]
struct PublicKeyEntry {
    key_identifier: String,
    key: String,
}

impl GitHubKeys {
    /// Reads GitHub's `GET /meta/public_keys/secret_scanning` response (other fields, such as
    /// `is_current`, are ignored: every listed key is accepted).
    pub fn from_json(document: &[u8]) -> Result<Self, KeysError> {
        let document: KeysDocument = serde_json::from_slice(document).map_err(KeysError::Format)?;
        if document.public_keys.is_empty() {
            return Err(KeysError::Empty);
        }
        let keys = document
            .public_keys
            .into_iter()
            .map(|entry| {
                VerifyingKey::from_public_key_pem(entry.key.trim())
                    .map(|key| (entry.key_identifier.clone(), key))
                    .map_err(|_| KeysError::Key {
                        identifier: entry.key_identifier,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn get(&self, identifier: &str) -> Option<&VerifyingKey> {
        self.keys.get(identifier)
    }
}

/// Why fetching keys failed (the source's own error, for the log).
pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// Where fresh keys come from: the host fetches GitHub's key document (this crate makes no
/// outbound requests of its own). Returns the document's bytes, read by
/// [`GitHubKeys::from_json`].
#[nexora_auth::async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// Fetches the key document.
    async fn fetch(&self) -> Result<Vec<u8>, FetchError>;
}

/// Why a report's signature was not accepted. 401, except [`SignatureError::KeysUnavailable`]
/// (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `Github-Public-Key-Identifier` header, or a second one.
    #[error("missing or repeated key identifier header")]
    MissingIdentifier,
    /// No `Github-Public-Key-Signature` header, or a second one.
    #[error("missing or repeated signature header")]
    MissingSignature,
    /// No known key has this identifier (after the bounded refetch), or it is over
    /// [`MAX_IDENTIFIER_LEN`] bytes or not text.
    #[error("unknown key identifier")]
    UnknownKey,
    /// The identifier is unknown and no key could be fetched yet: try again later (503).
    #[error("no public key could be fetched")]
    KeysUnavailable,
    /// The signature is not base64 (or is over [`MAX_SIGNATURE_LEN`] bytes).
    #[error("signature is not base64")]
    Encoding,
    /// The signature is not an ASN.1 DER ECDSA signature.
    #[error("signature is not DER")]
    Der,
    /// The signature does not verify: the body was changed, or another key signed it.
    #[error("signature does not match the body")]
    Mismatch,
}

/// The signature headers of a report, as received (checked by [`SecretScanning::verify`]).
#[derive(Debug, Clone, Copy)]
pub struct SignatureHeaders<'a> {
    identifier: &'a [u8],
    signature: &'a [u8],
}

impl<'a> SignatureHeaders<'a> {
    /// Both headers, each present exactly once; else the request is refused before its body is
    /// read.
    pub fn from_headers<H: RequestHeaders + ?Sized>(
        headers: &'a H,
    ) -> Result<Self, SignatureError> {
        let once = |name, missing| {
            let mut values = headers.values(name);
            match (values.next(), values.next()) {
                (Some(value), None) => Ok(value),
                _ => Err(missing),
            }
        };
        Ok(Self {
            identifier: once(KEY_IDENTIFIER, SignatureError::MissingIdentifier)?,
            signature: once(KEY_SIGNATURE, SignatureError::MissingSignature)?,
        })
    }
}

/// The fetched keys, shared by every clone of a [`SecretScanning`].
#[derive(Default)]
struct KeyCache {
    state: RwLock<Fetched>,
    /// One fetch at a time; the others wait for it and use its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Fetched {
    keys: Arc<GitHubKeys>,
    /// When the keys were fetched; `None` before the first success.
    fetched_at: Option<OffsetDateTime>,
    /// When a fetch was last started, successful or not.
    attempted_at: Option<OffsetDateTime>,
}

/// What [`SecretScanning::key`] decides on: the fetched keys and their ages.
struct Snapshot {
    keys: Arc<GitHubKeys>,
    /// Older than [`SecretScanning::refresh_after`], or never fetched.
    stale: bool,
    /// No fetch started within [`SecretScanning::refetch_interval`].
    may_fetch: bool,
    /// A fetch has succeeded.
    ever_fetched: bool,
}

/// The secret-scanning endpoint's settings: GitHub's keys, what to do with a live key, and
/// the bounds. Every default is on its setter. Cheap to clone; clones share the fetched keys.
#[derive(Clone)]
pub struct SecretScanning {
    fixed: Arc<GitHubKeys>,
    source: Option<Arc<dyn KeySource>>,
    cache: Arc<KeyCache>,
    policy: LeakPolicy,
    max_matches: usize,
    max_body_bytes: usize,
    refresh_after: Duration,
    refetch_interval: Duration,
    fetch_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SecretScanning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretScanning")
            .field("fixed", &self.fixed)
            .field("fetching", &self.source.is_some())
            .field("policy", &self.policy)
            .field("max_matches", &self.max_matches)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl SecretScanning {
    /// The default of [`SecretScanning::max_matches`].
    pub const DEFAULT_MAX_MATCHES: usize = 1_000;
    /// The default of [`SecretScanning::max_body_bytes`]: 1 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

    /// Verifies reports against `keys` (read from a file in GitHub's format, say), with the
    /// defaults of every setting below.
    pub fn new(keys: GitHubKeys) -> Self {
        Self {
            fixed: Arc::new(keys),
            source: None,
            cache: Arc::default(),
            policy: LeakPolicy::default(),
            max_matches: Self::DEFAULT_MAX_MATCHES,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            refresh_after: Duration::from_secs(3600),
            refetch_interval: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
        }
    }

    /// Also accept the keys `source` fetches, cached as the [module docs](self) say. Defaults
    /// to none: only the keys given to [`SecretScanning::new`] (which may then be empty).
    #[must_use]
    pub fn fetching_from(mut self, source: Arc<dyn KeySource>) -> Self {
        self.source = Some(source);
        self
    }

    /// What to do with a live key: revoke it (the default, [`LeakPolicy::Revoke`]) or only
    /// report it ([`LeakPolicy::NotifyOnly`]).
    #[must_use]
    pub fn policy(mut self, policy: LeakPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Most matches in one report; more is a 422 before any key is looked up. Defaults to
    /// [`SecretScanning::DEFAULT_MAX_MATCHES`] (1,000).
    #[must_use]
    pub fn max_matches(mut self, n: usize) -> Self {
        self.max_matches = n.max(1);
        self
    }

    /// Largest report body read, in bytes; more is a 413. Defaults to
    /// [`SecretScanning::DEFAULT_MAX_BODY_BYTES`] (1 MiB: 1,000 matches of 1 KiB).
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Fetched keys older than this are fetched again on the next report. Defaults to 1 hour.
    #[must_use]
    pub fn refresh_after(mut self, age: Duration) -> Self {
        self.refresh_after = age;
        self
    }

    /// The least time between two fetches (an unknown identifier triggers one only after it).
    /// Defaults to 1 minute.
    #[must_use]
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// How long a fetch may take before it counts as failed. Defaults to 10 seconds.
    #[must_use]
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The time source of the fetched keys' ages. Defaults to [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The policy for live keys (see [`SecretScanning::policy`]).
    pub fn leak_policy(&self) -> LeakPolicy {
        self.policy
    }

    /// The most matches in one report (see [`SecretScanning::max_matches`]).
    pub fn match_limit(&self) -> usize {
        self.max_matches
    }

    /// The largest report body, in bytes (see [`SecretScanning::max_body_bytes`]).
    pub fn body_limit(&self) -> usize {
        self.max_body_bytes
    }

    /// Fetches the keys now (a host calls this at startup, to fail early and loudly) and
    /// returns how many were fetched. A failure keeps the keys fetched before. `Ok(0)` without
    /// a source.
    pub async fn refresh(&self) -> Result<usize, RefreshError> {
        let Some(source) = &self.source else {
            return Ok(0);
        };
        let _one_at_a_time = self.cache.fetching.lock().await;
        self.fetch(source.as_ref()).await
    }

    /// One fetch; the caller holds `cache.fetching`.
    async fn fetch(&self, source: &dyn KeySource) -> Result<usize, RefreshError> {
        self.write_state().attempted_at = Some(self.clock.now());
        let fetched = match tokio::time::timeout(self.fetch_timeout, source.fetch()).await {
            Err(_) => Err(RefreshError::Timeout),
            Ok(Err(e)) => Err(RefreshError::Fetch(e)),
            Ok(Ok(bytes)) => GitHubKeys::from_json(&bytes).map_err(RefreshError::Keys),
        };
        match fetched {
            Ok(keys) => {
                let count = keys.len();
                let mut state = self.write_state();
                state.keys = Arc::new(keys);
                state.fetched_at = Some(self.clock.now());
                Ok(count)
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "GitHub secret-scanning keys not refreshed; the keys fetched before stay"
                );
                Err(e)
            }
        }
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, Fetched> {
        // Every write leaves `Fetched` consistent, so a poisoned lock still holds valid state.
        self.cache
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot(&self) -> Snapshot {
        let now = self.clock.now();
        let state = self
            .cache
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let older_than =
            |at: Option<OffsetDateTime>, age: Duration| at.is_none_or(|at| now - at >= age);
        Snapshot {
            keys: Arc::clone(&state.keys),
            stale: older_than(state.fetched_at, self.refresh_after),
            may_fetch: older_than(state.attempted_at, self.refetch_interval),
            ever_fetched: state.fetched_at.is_some(),
        }
    }

    /// The key named `identifier`, fetching as the [module docs](self) say.
    async fn key(&self, identifier: &str) -> Result<VerifyingKey, SignatureError> {
        if let Some(key) = self.fixed.get(identifier) {
            return Ok(*key);
        }
        let Some(source) = &self.source else {
            return Err(SignatureError::UnknownKey);
        };
        let before = self.snapshot();
        if let (Some(key), false) = (before.keys.get(identifier), before.stale) {
            return Ok(*key);
        }
        if before.may_fetch {
            let _one_at_a_time = self.cache.fetching.lock().await;
            // Another report may have fetched while this one waited. A failure is logged and
            // keeps the old keys, judged below.
            if self.snapshot().may_fetch {
                let _ = self.fetch(source.as_ref()).await;
            }
        }
        let after = self.snapshot();
        match after.keys.get(identifier) {
            Some(key) => Ok(*key),
            None if !after.ever_fetched && self.fixed.is_empty() => {
                Err(SignatureError::KeysUnavailable)
            }
            None => Err(SignatureError::UnknownKey),
        }
    }

    /// Verifies a report: the signature must be an ECDSA P-256 / SHA-256 signature of exactly
    /// these `body` bytes, by the key the identifier names.
    pub async fn verify(
        &self,
        headers: SignatureHeaders<'_>,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        if headers.signature.len() > MAX_SIGNATURE_LEN {
            return Err(SignatureError::Encoding);
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(headers.signature.trim_ascii())
            .map_err(|_| SignatureError::Encoding)?;
        let signature = Signature::from_der(&der).map_err(|_| SignatureError::Der)?;
        let identifier = std::str::from_utf8(headers.identifier)
            .ok()
            .map(str::trim)
            .filter(|id| id.len() <= MAX_IDENTIFIER_LEN)
            .ok_or(SignatureError::UnknownKey)?;
        self.key(identifier)
            .await?
            .verify(body, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// Why [`SecretScanning::refresh`] kept the old keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The source failed.
    #[error("fetching the keys failed: {0}")]
    Fetch(#[source] FetchError),
    /// The source took longer than [`SecretScanning::fetch_timeout`].
    #[error("fetching the keys timed out")]
    Timeout,
    /// The document fetched is not a usable key set.
    #[error(transparent)]
    Keys(KeysError),
}

/// One match of a report: `{"token", "type", "url", "source"}`. `url` and `source` may be
/// absent.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SecretScanningMatch))]
pub(crate) struct ScanMatch {
    /// The text GitHub found.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub(crate) token: SecretString,
    /// The secret type GitHub matched it as (echoed back as `token_type`).
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// Where it was found.
    #[serde(default)]
    pub(crate) url: String,
    /// The kind of place (`content`, `commit`, …).
    #[serde(default)]
    pub(crate) source: String,
}

/// GitHub's label for a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SecretScanningLabel))]
#[serde(rename_all = "snake_case")]
pub(crate) enum Label {
    /// A live key (revoked now, or reported under the notify-only policy).
    TruePositive,
    /// Not a live key: unknown, malformed, revoked or expired already.
    FalsePositive,
}

/// One entry of the answer: `{"token_raw", "token_type", "label"}`.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SecretScanningFeedback))]
pub(crate) struct Feedback<'a> {
    /// The match's `token`.
    pub(crate) token_raw: &'a str,
    /// The match's `type`.
    pub(crate) token_type: &'a str,
    /// Whether it was a live key.
    pub(crate) label: Label,
}

/// Matches handled at once: enough to overlap a SQL store's round trips, few enough to leave
/// most of a connection pool (16 in `nexora-server`) to other requests.
const MATCHES_IN_FLIGHT: usize = 8;

/// The scanner's name in logs and in the audit trail (its system actor).
pub const SCANNER: &str = "github-secret-scanning";

/// Hands every match of a verified report (sent from `client`) to
/// [`Authenticator::revoke_leaked`] under the configured policy, [`MATCHES_IN_FLIGHT`] at a
/// time, and labels it. A text repeated in the
/// report is handled once and labelled alike every time. A store failure fails the whole
/// report (503, which GitHub retries); what was revoked before it stays revoked.
pub(crate) async fn feedback<'a>(
    auth: &Authenticator,
    scanning: &SecretScanning,
    matches: &'a [ScanMatch],
    client: Option<IpAddr>,
) -> Result<Vec<Feedback<'a>>, AuthError> {
    let mut first_of: HashMap<&str, &ScanMatch> = HashMap::with_capacity(matches.len());
    for found in matches {
        first_of.entry(found.token.expose()).or_insert(found);
    }
    // The futures are made before the stream (not by a closure it holds), so the handler's
    // future stays `Send` for every lifetime the frameworks ask about.
    let pending: Vec<_> = first_of
        .into_values()
        .map(|found| label_of(auth, scanning.policy, found, client))
        .collect();
    let labels: HashMap<&str, Label> = stream::iter(pending)
        .buffer_unordered(MATCHES_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(matches
        .iter()
        .map(|found| {
            let token = found.token.expose();
            Feedback {
                token_raw: token,
                token_type: &found.kind,
                // Every text was handled above.
                label: labels.get(token).copied().unwrap_or(Label::FalsePositive),
            }
        })
        .collect())
}

/// Handles one match: its text and its label.
async fn label_of<'a>(
    auth: &Authenticator,
    policy: LeakPolicy,
    found: &'a ScanMatch,
    client: Option<IpAddr>,
) -> Result<(&'a str, Label), AuthError> {
    let report = LeakReport::new(SCANNER, &found.url, &found.source).from_client(client);
    let token = found.token.expose();
    let outcome = auth.revoke_leaked(token, &report, policy).await?;
    let label = if outcome.was_live() {
        Label::TruePositive
    } else {
        Label::FalsePositive
    };
    Ok((token, label))
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use nexora_auth_testkit::github::{GitHubSigner, key_document};

    use super::*;

    /// A clock moved by hand.
    struct TestClock(Mutex<OffsetDateTime>);

    impl TestClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
    }

    /// A key source serving whatever document it holds (or failing), counting fetches.
    #[derive(Default)]
    struct Served {
        document: Mutex<Option<String>>,
        fetches: AtomicUsize,
        delay: Option<Duration>,
    }

    impl Served {
        fn serve(&self, document: Option<String>) {
            *self.document.lock().unwrap() = document;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    #[nexora_auth::async_trait]
    impl KeySource for Served {
        async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if let Some(delay) = self.delay {
                tokio::time::sleep(delay).await;
            }
            let document = self.document.lock().unwrap().clone();
            document
                .map(String::into_bytes)
                .ok_or_else(|| "GitHub is down".into())
        }
    }

    fn headers<'a>(identifier: &'a str, signature: &'a str) -> SignatureHeaders<'a> {
        SignatureHeaders {
            identifier: identifier.as_bytes(),
            signature: signature.as_bytes(),
        }
    }

    async fn check(
        scanning: &SecretScanning,
        signer: &GitHubSigner,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let signature = signer.sign(body);
        scanning
            .verify(headers(signer.identifier(), &signature), body)
            .await
    }

    fn fixed(signers: &[&GitHubSigner]) -> SecretScanning {
        let keys = GitHubKeys::from_json(key_document(signers).as_bytes()).unwrap();
        SecretScanning::new(keys)
    }

    #[test]
    fn key_documents_load_or_say_why_not() {
        let (a, b) = (GitHubSigner::from_seed(1), GitHubSigner::from_seed(2));
        let keys = GitHubKeys::from_json(key_document(&[&a, &b]).as_bytes()).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(matches!(
            GitHubKeys::from_json(b"[]"),
            Err(KeysError::Format(_))
        ));
        assert!(matches!(
            GitHubKeys::from_json(br#"{"public_keys": []}"#),
            Err(KeysError::Empty)
        ));
        let not_p256 = r#"{"public_keys": [{"key_identifier": "x", "key": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n", "is_current": true}]}"#;
        assert!(
            matches!(GitHubKeys::from_json(not_p256.as_bytes()), Err(KeysError::Key { identifier }) if identifier == "x")
        );
    }

    #[tokio::test]
    async fn only_the_named_key_over_the_exact_body_verifies() {
        let (github, attacker) = (GitHubSigner::from_seed(1), GitHubSigner::from_seed(2));
        let scanning = fixed(&[&github]);
        let body = br#"[{"token":"nxr_x","type":"t","url":"u","source":"content"}]"#;
        assert_eq!(check(&scanning, &github, body).await, Ok(()));
        // A signature with a high `s` is as valid (GitHub's signer need not normalise it).
        let high_s = github.sign_high_s(body);
        assert_eq!(
            scanning
                .verify(headers(github.identifier(), &high_s), body)
                .await,
            Ok(())
        );
        let signature = github.sign(body);
        let (by_attacker, too_long, long_id) = (
            attacker.sign(body),
            "A".repeat(MAX_SIGNATURE_LEN + 4),
            "f".repeat(MAX_IDENTIFIER_LEN + 1),
        );
        let mut tampered = body.to_vec();
        tampered[12] ^= 1;
        let refused = [
            (
                headers(github.identifier(), &signature),
                &tampered[..],
                SignatureError::Mismatch,
            ),
            // A re-serialisation is another body.
            (
                headers(github.identifier(), &signature),
                br#"[{"token": "nxr_x", "type": "t", "url": "u", "source": "content"}]"#,
                SignatureError::Mismatch,
            ),
            (
                headers(attacker.identifier(), &by_attacker),
                body,
                SignatureError::UnknownKey,
            ),
            (
                headers(github.identifier(), &by_attacker),
                body,
                SignatureError::Mismatch,
            ),
            (
                headers(github.identifier(), "not base64!"),
                body,
                SignatureError::Encoding,
            ),
            (
                headers(github.identifier(), &too_long),
                body,
                SignatureError::Encoding,
            ),
            (
                headers(github.identifier(), "bm90IERFUg=="),
                body,
                SignatureError::Der,
            ),
            (
                headers(&long_id, &signature),
                body,
                SignatureError::UnknownKey,
            ),
        ];
        for (headers, body, want) in refused {
            assert_eq!(scanning.verify(headers, body).await, Err(want), "{want:?}");
        }
    }

    fn fetching(source: &Arc<Served>, clock: &Arc<TestClock>) -> SecretScanning {
        SecretScanning::new(GitHubKeys::default())
            .fetching_from(Arc::clone(source) as Arc<dyn KeySource>)
            .clock(Arc::clone(clock) as Arc<dyn Clock>)
    }

    fn clock() -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(OffsetDateTime::UNIX_EPOCH)))
    }

    #[tokio::test]
    async fn fetched_keys_are_cached_and_an_unknown_identifier_refetches_at_most_once_a_minute() {
        let (old, new, stranger) = (
            GitHubSigner::from_seed(1),
            GitHubSigner::from_seed(2),
            GitHubSigner::from_seed(3),
        );
        let source = Arc::new(Served::default());
        source.serve(Some(key_document(&[&old])));
        let clock = clock();
        let scanning = fetching(&source, &clock);
        assert_eq!(check(&scanning, &old, b"[]").await, Ok(()));
        assert_eq!(check(&scanning, &old, b"[]").await, Ok(()));
        assert_eq!(source.fetches(), 1, "cached");

        // Random identifiers: one fetch, then none within the interval.
        for _ in 0..5 {
            assert_eq!(
                check(&scanning, &stranger, b"[]").await,
                Err(SignatureError::UnknownKey)
            );
        }
        assert_eq!(source.fetches(), 1, "the last fetch was under a minute ago");
        clock.advance(Duration::from_secs(61));
        for _ in 0..5 {
            assert_eq!(
                check(&scanning, &stranger, b"[]").await,
                Err(SignatureError::UnknownKey)
            );
        }
        assert_eq!(source.fetches(), 2, "one fetch per interval");

        // GitHub rotates: the new identifier is fetched once the interval has passed.
        source.serve(Some(key_document(&[&new, &old])));
        clock.advance(Duration::from_secs(61));
        assert_eq!(check(&scanning, &new, b"[]").await, Ok(()));
        assert_eq!(source.fetches(), 3);

        // Past the refresh age, the next report fetches again, even for a known key.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(check(&scanning, &old, b"[]").await, Ok(()));
        assert_eq!(source.fetches(), 4);
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_keys_and_none_at_all_is_unavailable() {
        let github = GitHubSigner::from_seed(1);
        let source = Arc::new(Served::default());
        let clock = clock();
        let scanning = fetching(&source, &clock);
        assert!(scanning.refresh().await.is_err());
        assert_eq!(
            check(&scanning, &github, b"[]").await,
            Err(SignatureError::KeysUnavailable),
            "no key was ever fetched: GitHub should retry"
        );
        source.serve(Some(key_document(&[&github])));
        assert_eq!(scanning.refresh().await.unwrap(), 1);
        source.serve(None);
        clock.advance(Duration::from_secs(7200));
        assert_eq!(
            check(&scanning, &github, b"[]").await,
            Ok(()),
            "stale keys beat none"
        );
        source.serve(Some("not a key document".to_owned()));
        clock.advance(Duration::from_secs(7200));
        assert_eq!(check(&scanning, &github, b"[]").await, Ok(()));
        assert_eq!(source.fetches(), 4);
    }

    #[tokio::test]
    async fn a_slow_source_times_out() {
        let github = GitHubSigner::from_seed(1);
        let source = Arc::new(Served {
            delay: Some(Duration::from_secs(5)),
            ..Served::default()
        });
        source.serve(Some(key_document(&[&github])));
        let scanning = fetching(&source, &clock()).fetch_timeout(Duration::from_millis(20));
        assert!(matches!(
            scanning.refresh().await,
            Err(RefreshError::Timeout)
        ));
        assert_eq!(
            check(&scanning, &github, b"[]").await,
            Err(SignatureError::KeysUnavailable)
        );
    }
}
