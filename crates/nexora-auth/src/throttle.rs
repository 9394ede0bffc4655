//! Throttling by subject: failed logins per email and per client address (whether or not the
//! account exists), and revoke-by-possession requests per client address.
//!
//! # What is counted, and how much memory it takes
//!
//! A *subject* is an email or a client address. Emails are never stored: a subject is the
//! first 16 bytes of `HMAC-SHA256(k, email)` under a key `k` drawn from the operating system
//! when the [`Authenticator`](crate::Authenticator) is built, so an entry has the same size
//! whatever the attacker sends, and nobody without `k` can aim two emails at one entry.
//! Client addresses count per IPv4 address and per IPv6 /64 (the smallest block one
//! subscriber is usually given); an IPv4-mapped IPv6 address counts as its IPv4 address.
//!
//! Every entry, locked or not, counts towards [`ThrottlePolicy::max_tracked`]: the table never
//! holds more, and an entry takes under 64 bytes of table memory (checked by a test), so the
//! default cap of 100,000 bounds it by about 8 MiB with the hash table's slack.
//!
//! # Reservations
//!
//! A login *reserves* an attempt on its email and its client in one step under one lock
//! (`Throttle::reserve`), before any store call or password verification. A subject
//! grants a reservation only while `failures + in-flight reservations < limit`, so however many
//! requests arrive at once, at most `limit` verifications run per subject and window; the rest
//! are refused with a `Retry-After`. The reservation is then settled: a failure is counted, a
//! success clears the email's failures, and anything else (the store is down, the hashing
//! queue is full, the client went away and the request future was dropped) gives the
//! reservation back uncounted.
//!
//! # When the table is full
//!
//! A reservation for a new subject first drops expired entries; if the table is still full, it
//! evicts about a sixteenth of the cap at once (so the cost is paid once per many insertions),
//! least valuable first: unlocked entries before locked ones, fewer failures before more, and
//! the sooner an entry would expire anyway, the sooner it goes. Entries with a reservation in
//! flight are never evicted (that would let a subject exceed its limit); if nothing else is
//! left, the login is refused with a 429 rather than growing the table.
//!
//! Why this order. An attacker has two things to gain from a full table:
//!
//! * **flushing a victim's lock** to get more guesses at the victim's password: a locked
//!   entry goes only after every unlocked one, so the attacker must first fill the whole table
//!   with *locked* entries of their own — `max_tracked × per_email` failed verifications, each
//!   one a full argon2 run (half a million with the defaults, hours of hashing), while the
//!   victim's lock lasts 15 minutes. Waiting the lock out is cheaper, and yields the same 5
//!   guesses;
//! * **locking everyone out**: a full table never refuses a new subject while anything is
//!   evictable, so filling it locks nobody out; only the subjects an attacker actually guesses
//!   at get locked, which is what the throttle is for.
//!
//! Refusing new subjects when full would hand attackers the second; evicting the oldest entry
//! would hand them the first.
//!
//! # Revoke by possession
//!
//! [`Authenticator::revoke_by_possession`](crate::Authenticator::revoke_by_possession) needs no
//! credential, so it is limited per client address by the same machinery in a table of its own
//! ([`PossessionLimit`], 10 requests per address per minute by default): every request counts,
//! as a login failure does, and the request that reaches the limit locks the address for the
//! rest of a window. A request without a client address counts against one shared subject, so
//! a host that cannot tell clients apart is limited as a whole rather than not at all. Its own
//! table keeps a flood of revocations from evicting login locks, and the other way round.
//!
//! # Across instances
//!
//! By default the table lives in each process and is not shared: `N` instances behind one load
//! balancer allow up to `N ×` the policy per subject and window, and a restart forgets every
//! count and lock. (`nexora-server`'s test `the_login_throttle_bound_is_per_instance` shows the
//! bound with two instances on one database.)
//!
//! The login throttle is pluggable: a [`ThrottleBackend`] given to
//! [`AuthenticatorBuilder::login_throttle_backend`](crate::AuthenticatorBuilder::login_throttle_backend)
//! keeps the counts where every instance sees them (`nexora-auth-redis` keeps them in Redis,
//! with the same semantics, so `N` instances allow exactly the policy). Such a backend digests
//! emails under a [`ThrottleKey`] shared by the instances ([`ThrottleKey::derive`]), so that
//! they agree on subjects. [`InProcessThrottle`] is the default table behind the same trait.
//! The revoke-by-possession limit always stays in the process.

use std::{
    collections::{HashMap, hash_map::Entry},
    fmt,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use rand::TryRng;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::{AuthError, ConfigError, StoreError};

/// Limits on failed logins. Every default is on its setter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ThrottlePolicy {
    per_email: u32,
    per_client: u32,
    window: Duration,
    lockout: Duration,
    max_tracked: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            per_email: 5,
            per_client: 20,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
            max_tracked: 100_000,
        }
    }
}

impl ThrottlePolicy {
    /// Password verifications allowed per email (case-insensitively, existing or not) within
    /// the window, counting those in flight; reaching it in failures locks the email.
    /// Defaults to 5.
    pub fn per_email(mut self, n: u32) -> Self {
        self.per_email = n.max(1);
        self
    }

    /// Password verifications allowed per client address (IPv4 address or IPv6 /64) within
    /// the window, counting those in flight; reaching it in failures locks the address.
    /// Defaults to 20.
    pub fn per_client(mut self, n: u32) -> Self {
        self.per_client = n.max(1);
        self
    }

    /// The window failures are counted in, from a subject's first failure. Defaults to 15
    /// minutes.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long a locked email or address is refused (even with the right password).
    /// Defaults to 15 minutes.
    pub fn lockout(mut self, lockout: Duration) -> Self {
        self.lockout = lockout;
        self
    }

    /// Most emails and addresses tracked at once, locked or not (see the module docs for what
    /// happens when the table is full). Defaults to 100,000: under 8 MiB.
    pub fn max_tracked(mut self, n: usize) -> Self {
        self.max_tracked = n.max(1);
        self
    }

    /// The limit of `subject`: [`per_email`](Self::per_email) for an email,
    /// [`per_client`](Self::per_client) for a client address.
    pub fn limit_for(&self, subject: &ThrottleSubject) -> u32 {
        match subject.0 {
            Subject::Email(_) => self.per_email,
            Subject::V4(_) | Subject::V6(_) | Subject::NoAddress => self.per_client,
        }
    }

    /// The window set by [`window`](Self::window).
    pub fn window_duration(&self) -> Duration {
        self.window
    }

    /// The lockout set by [`lockout`](Self::lockout).
    pub fn lockout_duration(&self) -> Duration {
        self.lockout
    }
}

/// The key of the keyed digest that turns an email into a [`ThrottleSubject`]: nobody without
/// it can aim two emails at one subject or tell which email a subject is. Prints as
/// `[redacted]`.
#[derive(Clone)]
pub struct ThrottleKey(Hmac<Sha256>);

impl fmt::Debug for ThrottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ThrottleKey([redacted])")
    }
}

/// The shortest secret [`ThrottleKey::derive`] accepts, in bytes.
pub const MIN_THROTTLE_SECRET_LEN: usize = 32;

impl ThrottleKey {
    /// A key drawn from the operating system: subjects differ in every process (what the
    /// default in-process throttle uses).
    pub fn random() -> Result<Self, ConfigError> {
        let mut key = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut key)
            .map_err(|_| ConfigError::Invalid("the operating system's random source failed"))?;
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
            .map_err(|_| ConfigError::Invalid("throttle key"))?;
        Ok(Self(mac))
    }

    /// A key derived from `secret` (at least [`MIN_THROTTLE_SECRET_LEN`] bytes): the same on
    /// every instance given the same secret, as a shared [`ThrottleBackend`] needs. The key is
    /// `HMAC-SHA256(secret, "nexora-auth throttle subjects")`, never the secret itself, so a
    /// secret the host already holds (its key pepper) can serve without being used as-is in a
    /// second role.
    pub fn derive(secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < MIN_THROTTLE_SECRET_LEN {
            return Err(ConfigError::Invalid(
                "the throttle secret must be at least 32 bytes",
            ));
        }
        let mut outer = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .map_err(|_| ConfigError::Invalid("throttle secret"))?;
        outer.update(b"nexora-auth throttle subjects");
        let derived = outer.finalize().into_bytes();
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&derived)
            .map_err(|_| ConfigError::Invalid("throttle key"))?;
        Ok(Self(mac))
    }

    fn digest(&self, email: &str) -> [u8; 16] {
        let mut mac = self.0.clone();
        mac.update(email.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut truncated = [0; 16];
        truncated.copy_from_slice(&digest[..16]);
        truncated
    }
}

/// A throttled subject: a keyed digest of an email ([`ThrottleSubject::email`]), or a client
/// address block ([`ThrottleSubject::client`]). Fixed-size, whatever the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThrottleSubject(Subject);

impl ThrottleSubject {
    /// The subject of `email` (normalised, as [`normalize_email`](crate::normalize_email)
    /// gives it): the first 16 bytes of `HMAC-SHA256(key, email)`.
    pub fn email(key: &ThrottleKey, email: &str) -> Self {
        Self(Subject::Email(key.digest(email)))
    }

    /// The subject of a client address: its IPv4 address or IPv6 /64 (an IPv4-mapped IPv6
    /// address counts as its IPv4 address); `None` is the one subject of every request
    /// without an address.
    pub fn client(client: Option<IpAddr>) -> Self {
        Self(client.map_or(Subject::NoAddress, Subject::client))
    }

    /// Whether this is an email's subject (else a client's).
    pub fn is_email(&self) -> bool {
        matches!(self.0, Subject::Email(_))
    }

    /// A short, stable text for backends that key their state by strings: `e:` and 32 hex
    /// digits for an email, `c4:` and 8 for an IPv4 address, `c6:` and 16 for an IPv6 /64,
    /// `c-` for no address.
    pub fn key_text(&self) -> String {
        fn hex(bytes: &[u8]) -> String {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
        match self.0 {
            Subject::Email(d) => format!("e:{}", hex(&d)),
            Subject::V4(a) => format!("c4:{}", hex(&a)),
            Subject::V6(p) => format!("c6:{}", hex(&p)),
            Subject::NoAddress => "c-".to_owned(),
        }
    }
}

/// One granted reservation, as the [`ThrottleBackend`] that granted it identifies it; handed
/// back to [`ThrottleBackend::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationId(u64);

impl ReservationId {
    /// An id chosen by a backend.
    pub fn new(id: u64) -> Self {
        Self(id)
    }

    /// The backend's value.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// What [`ThrottleBackend::reserve`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Every subject granted one reservation.
    Reserved(ReservationId),
    /// Some subject refused (locked, or saturated by failures and reservations in flight);
    /// nothing was reserved.
    Refused {
        /// Seconds until the attempt may pass (at least 1).
        retry_after_secs: u64,
    },
}

/// How a reservation ends ([`ThrottleBackend::settle`]).
///
/// Not `#[non_exhaustive]`: an attempt fails, succeeds or neither, and every backend must
/// handle each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// A wrong password (or an unknown email): counted against every subject, and locks a
    /// subject whose failures reach its limit.
    Failed,
    /// The right password: clears the email's failures (unless it is locked), never the
    /// client's.
    Succeeded,
    /// Neither (the store failed, the request was dropped): given back uncounted.
    Released,
}

/// Where login attempts are counted, for
/// [`AuthenticatorBuilder::login_throttle_backend`](crate::AuthenticatorBuilder::login_throttle_backend).
/// [`InProcessThrottle`] keeps them in the process; `nexora-auth-redis` shares them between
/// instances.
///
/// # Contract
///
/// Every point is the behaviour of [`InProcessThrottle`], which is the reference:
///
/// * [`reserve`](Self::reserve) takes one attempt on every subject (a login's email subject
///   and its client subject), **all or nothing**: a subject grants it only while it is not
///   locked and `failures + reservations in flight < limit` ([`ThrottlePolicy::limit_for`]);
///   otherwise nothing is reserved and the refusal says how long to wait (the time left of
///   a lock, rounded up to whole seconds; 1 second for a saturated subject).
/// * [`settle`](Self::settle) ends a reservation: [`Settlement::Failed`] counts a failure on
///   every subject (the first failure starts the window) and locks, for
///   [`ThrottlePolicy::lockout_duration`], each subject whose failures reach its limit;
///   [`Settlement::Succeeded`] clears the email's failures unless it is locked;
///   [`Settlement::Released`] only gives the reservation back. A lock or a window that has
///   ended forgets the subject's failures.
/// * The authenticator settles every reservation it is granted; one dropped unsettled (a
///   cancelled request) is released from a spawned task, so a backend must also bound
///   reservations it never hears of again (a crashed instance), and document the bound.
/// * A failure to reach the state is `Err` ([`StoreError::Unavailable`]), answered as
///   unavailable (503), unless the backend documents a fallback of its own.
#[async_trait]
pub trait ThrottleBackend: Send + Sync + fmt::Debug + 'static {
    /// The subject of a login's (normalised) email: [`ThrottleSubject::email`] under this
    /// backend's [`ThrottleKey`], which every instance sharing the state must also hold.
    fn email_subject(&self, email: &str) -> ThrottleSubject;

    /// Reserves one attempt on every one of `subjects` at `now` (a backend with a clock of its
    /// own may use that instead), all or nothing.
    async fn reserve(
        &self,
        subjects: &[ThrottleSubject],
        now: OffsetDateTime,
    ) -> Result<ThrottleDecision, StoreError>;

    /// Settles the reservation `id` on `subjects` (the same subjects it was granted on), and
    /// says which subjects this settlement locked.
    async fn settle(
        &self,
        subjects: &[ThrottleSubject],
        id: ReservationId,
        outcome: Settlement,
        now: OffsetDateTime,
    ) -> Result<NewLocks, StoreError>;
}

/// The in-process login throttle as a [`ThrottleBackend`]: the default table (see the module
/// docs for its memory bound and eviction order), exact on one instance; `N` instances allow
/// up to `N ×` the policy. It ignores reservation ids (every [`ReservationId`] it grants is
/// 0): a reservation is one count in flight on each of its subjects.
#[derive(Debug)]
pub struct InProcessThrottle {
    throttle: Throttle,
}

impl InProcessThrottle {
    /// A table under `policy`, its emails digested under a random key.
    pub fn new(policy: ThrottlePolicy) -> Result<Self, ConfigError> {
        Ok(Self::with_key(policy, ThrottleKey::random()?))
    }

    /// A table under `policy`, its emails digested under `key` (a shared backend that falls
    /// back to this table keeps its subjects).
    pub fn with_key(policy: ThrottlePolicy, key: ThrottleKey) -> Self {
        Self {
            throttle: Throttle::with_key(policy, key),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &ThrottlePolicy {
        &self.throttle.policy
    }
}

#[async_trait]
impl ThrottleBackend for InProcessThrottle {
    fn email_subject(&self, email: &str) -> ThrottleSubject {
        ThrottleSubject(self.throttle.email_subject(email))
    }

    async fn reserve(
        &self,
        subjects: &[ThrottleSubject],
        now: OffsetDateTime,
    ) -> Result<ThrottleDecision, StoreError> {
        match self.throttle.reserve_subjects(Subjects::of(subjects), now) {
            Ok(reservation) => {
                // Kept in flight until `settle`: the caller holds the reservation now.
                reservation.keep();
                Ok(ThrottleDecision::Reserved(ReservationId(0)))
            }
            Err(AuthError::RateLimited { retry_after_secs }) => {
                Ok(ThrottleDecision::Refused { retry_after_secs })
            }
            Err(_) => Ok(ThrottleDecision::Refused {
                retry_after_secs: 1,
            }),
        }
    }

    async fn settle(
        &self,
        subjects: &[ThrottleSubject],
        _id: ReservationId,
        outcome: Settlement,
        now: OffsetDateTime,
    ) -> Result<NewLocks, StoreError> {
        let now = millis(now);
        let outcome = match outcome {
            Settlement::Failed => Outcome::Failed(now),
            Settlement::Succeeded => Outcome::Succeeded(now),
            Settlement::Released => Outcome::Released,
        };
        Ok(self.throttle.settle(Subjects::of(subjects), outcome))
    }
}

/// Limits on revoke-by-possession requests
/// ([`Authenticator::revoke_by_possession`](crate::Authenticator::revoke_by_possession)), per
/// client address. Every default is on its setter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PossessionLimit {
    per_client: u32,
    window: Duration,
    max_tracked: usize,
}

impl Default for PossessionLimit {
    fn default() -> Self {
        Self {
            per_client: 10,
            window: Duration::from_secs(60),
            max_tracked: 10_000,
        }
    }
}

impl PossessionLimit {
    /// Requests allowed per client address (IPv4 address or IPv6 /64; all requests without an
    /// address count as one client) within the window. Defaults to 10.
    pub fn per_client(mut self, n: u32) -> Self {
        self.per_client = n.max(1);
        self
    }

    /// The window requests are counted in, from a client's first request; the request that
    /// reaches the limit locks the client for as long again. Defaults to 1 minute.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Most client addresses tracked at once, locked or not. Defaults to 10,000: under 1 MiB.
    pub fn max_tracked(mut self, n: usize) -> Self {
        self.max_tracked = n.max(1);
        self
    }

    /// The same limit as a [`ThrottlePolicy`] whose every attempt counts as a failure.
    fn as_policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            per_client: self.per_client,
            window: self.window,
            lockout: self.window,
            max_tracked: self.max_tracked,
            ..ThrottlePolicy::default()
        }
    }
}

/// A throttled subject: a keyed digest of an email, or a client address block. Fixed-size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Email([u8; 16]),
    /// An IPv4 address.
    V4([u8; 4]),
    /// The /64 prefix of an IPv6 address.
    V6([u8; 8]),
    /// Every request without a client address, where one is always counted (see
    /// [`Throttle::count_client`]).
    NoAddress,
}

impl Subject {
    fn client(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut prefix = [0; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Self::V6(prefix)
            }
        }
    }
}

/// Milliseconds since the Unix epoch, from the injected clock.
type Millis = i64;

fn millis(at: OffsetDateTime) -> Millis {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn duration_millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    /// Failures counted in the current window.
    failures: u32,
    /// Reservations granted and not yet settled.
    in_flight: u32,
    /// Start of the current window (the first failure's time).
    window_start: Millis,
    /// Refused until then, when locked.
    locked_until: Option<Millis>,
}

impl Counter {
    fn new(now: Millis) -> Self {
        Self {
            failures: 0,
            in_flight: 0,
            window_start: now,
            locked_until: None,
        }
    }

    /// Forgets a lock or a window that has ended.
    fn refresh(&mut self, now: Millis, policy: &ThrottlePolicy) {
        let lock_over = self.locked_until.is_some_and(|until| until <= now);
        let window_over = self.locked_until.is_none()
            && self
                .window_start
                .saturating_add(duration_millis(policy.window))
                <= now;
        if lock_over || window_over {
            self.failures = 0;
            self.locked_until = None;
            self.window_start = now;
        }
    }

    /// Worth nothing any more: no failure, no lock, nothing in flight.
    fn is_empty(&self) -> bool {
        self.failures == 0 && self.in_flight == 0 && self.locked_until.is_none()
    }

    /// When this entry would be forgotten without further failures.
    fn ends_at(&self, policy: &ThrottlePolicy) -> Millis {
        self.locked_until.unwrap_or_else(|| {
            self.window_start
                .saturating_add(duration_millis(policy.window))
        })
    }

    /// Eviction order: smallest first (see the module docs).
    fn eviction_rank(&self, policy: &ThrottlePolicy) -> (bool, u32, Millis) {
        (
            self.locked_until.is_some(),
            self.failures,
            self.ends_at(policy),
        )
    }
}

/// Counts attempts per subject (failed logins; revoke-by-possession requests) and refuses
/// locked or saturated subjects with [`AuthError::RateLimited`].
pub(crate) struct Throttle {
    policy: ThrottlePolicy,
    /// The HMAC key of email subjects: random per process unless a shared backend gave one.
    email_key: ThrottleKey,
    counters: Mutex<HashMap<Subject, Counter>>,
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The subjects of one attempt: a login's email and client, or a client alone.
#[derive(Debug, Clone, Copy)]
struct Subjects {
    email: Option<Subject>,
    client: Option<Subject>,
}

impl Subjects {
    fn iter(self) -> impl Iterator<Item = Subject> {
        self.email.into_iter().chain(self.client)
    }

    /// The first email subject and the first client subject of `subjects`.
    fn of(subjects: &[ThrottleSubject]) -> Self {
        Self {
            email: subjects
                .iter()
                .map(|s| s.0)
                .find(|s| matches!(s, Subject::Email(_))),
            client: subjects
                .iter()
                .map(|s| s.0)
                .find(|s| !matches!(s, Subject::Email(_))),
        }
    }

    fn public(self) -> Vec<ThrottleSubject> {
        self.iter().map(ThrottleSubject).collect()
    }
}

impl Throttle {
    pub(crate) fn new(policy: ThrottlePolicy) -> Result<Self, ConfigError> {
        Ok(Self::with_key(policy, ThrottleKey::random()?))
    }

    fn with_key(policy: ThrottlePolicy, email_key: ThrottleKey) -> Self {
        Self {
            policy,
            email_key,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// A throttle of revoke-by-possession requests.
    pub(crate) fn for_possession(limit: &PossessionLimit) -> Result<Self, ConfigError> {
        Self::new(limit.as_policy())
    }

    fn email_subject(&self, email: &str) -> Subject {
        Subject::Email(self.email_key.digest(email))
    }

    fn subjects(&self, email: &str, client: Option<IpAddr>) -> Subjects {
        Subjects {
            email: Some(self.email_subject(email)),
            client: client.map(Subject::client),
        }
    }

    fn limit(&self, subject: Subject) -> u32 {
        match subject {
            Subject::Email(_) => self.policy.per_email,
            Subject::V4(_) | Subject::V6(_) | Subject::NoAddress => self.policy.per_client,
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<Subject, Counter>> {
        // Every critical section leaves the table consistent (no code in it panics on valid
        // state), so a poisoned lock is still a valid table.
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves one password verification for `email` (normalised) and `client`, or refuses:
    /// a locked subject with the time left of its lock, a subject whose verifications in
    /// flight would reach its limit with a one-second `Retry-After` (their outcome is known
    /// by then). All or nothing: a refusal reserves nothing.
    pub(crate) fn reserve(
        &self,
        email: &str,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<Reservation<'_>, AuthError> {
        self.reserve_subjects(self.subjects(email, client), now)
    }

    /// Counts one request of `client` (`None`: the one subject of every request without an
    /// address), or refuses it as [`Throttle::reserve`] would. A counted request is settled at
    /// once, as a failure: every request counts, whatever it did.
    pub(crate) fn count_client(
        &self,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let subjects = Subjects {
            email: None,
            client: Some(client.map_or(Subject::NoAddress, Subject::client)),
        };
        self.reserve_subjects(subjects, now)?.failed(now);
        Ok(())
    }

    fn reserve_subjects(
        &self,
        subjects: Subjects,
        now: OffsetDateTime,
    ) -> Result<Reservation<'_>, AuthError> {
        let now = millis(now);
        let mut table = self.table();
        let new = subjects.iter().filter(|s| !table.contains_key(s)).count();
        if table.len() + new > self.policy.max_tracked {
            self.make_room(&mut table, now, new);
            if table.len() + new > self.policy.max_tracked {
                return Err(AuthError::RateLimited {
                    retry_after_secs: 1,
                });
            }
        }
        let mut wait: Millis = 0;
        for subject in subjects.iter() {
            let Some(counter) = table.get_mut(&subject) else {
                continue;
            };
            counter.refresh(now, &self.policy);
            if let Some(until) = counter.locked_until {
                wait = wait.max(until - now);
            } else if counter.failures.saturating_add(counter.in_flight) >= self.limit(subject) {
                wait = wait.max(1);
            }
        }
        if wait > 0 {
            return Err(AuthError::RateLimited {
                // Whole seconds, rounded up, never 0 (a client would retry at once).
                retry_after_secs: u64::try_from(wait).map_or(1, |ms| ms.div_ceil(1000)).max(1),
            });
        }
        for subject in subjects.iter() {
            let counter = table.entry(subject).or_insert_with(|| Counter::new(now));
            counter.in_flight += 1;
        }
        Ok(Reservation {
            throttle: self,
            subjects,
            settled: false,
        })
    }

    /// Drops expired entries; if the table is still too full for `new` more, evicts about a
    /// sixteenth of the cap, least valuable first, never an entry with a reservation in flight.
    fn make_room(&self, table: &mut HashMap<Subject, Counter>, now: Millis, new: usize) {
        let policy = &self.policy;
        table.retain(|_, counter| {
            counter.refresh(now, policy);
            !counter.is_empty()
        });
        let cap = policy.max_tracked;
        if table.len() + new <= cap {
            return;
        }
        let target = cap.saturating_sub((cap / 16).max(new));
        let excess = table.len().saturating_sub(target);
        let mut candidates: Vec<((bool, u32, Millis), Subject)> = table
            .iter()
            .filter(|(_, counter)| counter.in_flight == 0)
            .map(|(subject, counter)| (counter.eviction_rank(policy), *subject))
            .collect();
        let evict = excess.min(candidates.len());
        if evict == 0 {
            return;
        }
        if evict < candidates.len() {
            candidates.select_nth_unstable_by_key(evict - 1, |(rank, _)| *rank);
        }
        for (_, subject) in &candidates[..evict] {
            table.remove(subject);
        }
    }

    /// Settles a reservation: `Failed` counts a failure (and may lock), `Succeeded` clears
    /// the email's failures, `Released` gives the reservation back uncounted. Returns which
    /// subjects this settlement locked.
    fn settle(&self, subjects: Subjects, outcome: Outcome) -> NewLocks {
        let mut locked = NewLocks::default();
        let mut table = self.table();
        for subject in subjects.iter() {
            let Entry::Occupied(mut entry) = table.entry(subject) else {
                // Reserved entries are never evicted; nothing to settle otherwise.
                continue;
            };
            let counter = entry.get_mut();
            counter.in_flight = counter.in_flight.saturating_sub(1);
            if let Outcome::Failed(now) | Outcome::Succeeded(now) = outcome {
                counter.refresh(now, &self.policy);
            }
            match outcome {
                Outcome::Failed(now) => {
                    if counter.failures == 0 {
                        counter.window_start = now;
                    }
                    counter.failures = counter.failures.saturating_add(1);
                    if counter.failures >= self.limit(subject) && counter.locked_until.is_none() {
                        counter.locked_until =
                            Some(now.saturating_add(duration_millis(self.policy.lockout)));
                        match subject {
                            Subject::Email(_) => locked.email = true,
                            Subject::V4(_) | Subject::V6(_) | Subject::NoAddress => {
                                locked.client = true;
                            }
                        }
                    }
                }
                // A right password clears the email's failures (unless another attempt has
                // locked it meanwhile), never the client's: one good account must not
                // launder a spraying client.
                Outcome::Succeeded(_)
                    if matches!(subject, Subject::Email(_)) && counter.locked_until.is_none() =>
                {
                    counter.failures = 0;
                }
                Outcome::Succeeded(_) | Outcome::Released => {}
            }
            if counter.is_empty() {
                entry.remove();
            }
        }
        locked
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table().len()
    }
}

/// Which subjects a failed login locked ([`ThrottleBackend::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NewLocks {
    email: bool,
    client: bool,
}

impl NewLocks {
    /// Whether the email, the client, both or neither were locked.
    pub fn new(email: bool, client: bool) -> Self {
        Self { email, client }
    }

    /// Whether the email's subject was locked.
    pub fn email(self) -> bool {
        self.email
    }

    /// Whether the client's subject was locked.
    pub fn client(self) -> bool {
        self.client
    }

    /// `email`, `client` or `email_and_client`; `None` when nothing was locked.
    pub fn name(self) -> Option<&'static str> {
        match (self.email, self.client) {
            (true, true) => Some("email_and_client"),
            (true, false) => Some("email"),
            (false, true) => Some("client"),
            (false, false) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A wrong password (or unknown email), at this time.
    Failed(Millis),
    /// The right password, at this time.
    Succeeded(Millis),
    /// Neither: given back uncounted, time not needed.
    Released,
}

/// One reserved password verification (see [`Throttle::reserve`]). Settle it with
/// [`Reservation::failed`] or [`Reservation::succeeded`]; dropped unsettled (an error, or the
/// request future dropped), it is given back uncounted.
#[must_use = "a reservation is given back uncounted when dropped"]
pub(crate) struct Reservation<'a> {
    throttle: &'a Throttle,
    subjects: Subjects,
    settled: bool,
}

impl Reservation<'_> {
    /// Keeps the reservation in flight without this guard: whoever holds it settles it.
    fn keep(mut self) {
        self.settled = true;
    }

    /// Counts a failed attempt against the email and the client; returns which of them it
    /// locked.
    pub(crate) fn failed(mut self, now: OffsetDateTime) -> NewLocks {
        self.settled = true;
        self.throttle
            .settle(self.subjects, Outcome::Failed(millis(now)))
    }

    /// A successful login: clears the email's failures.
    pub(crate) fn succeeded(mut self, now: OffsetDateTime) {
        self.settled = true;
        self.throttle
            .settle(self.subjects, Outcome::Succeeded(millis(now)));
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.throttle.settle(self.subjects, Outcome::Released);
        }
    }
}

impl fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reservation")
    }
}

/// The authenticator's login throttle: the in-process table (no await, no task), or a shared
/// backend.
#[allow(
    clippy::large_enum_variant,
    reason = "one per authenticator, inside its Arc; the table is not moved"
)]
pub(crate) enum LoginThrottle {
    InProcess(Throttle),
    Shared(Arc<dyn ThrottleBackend>),
}

impl LoginThrottle {
    /// Reserves one password verification for `email` (normalised) and `client`, or refuses
    /// ([`Throttle::reserve`]); a shared backend that fails is [`AuthError::Unavailable`].
    pub(crate) async fn reserve(
        &self,
        email: &str,
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<LoginReservation<'_>, AuthError> {
        match self {
            Self::InProcess(throttle) => throttle
                .reserve(email, client, now)
                .map(LoginReservation::Local),
            Self::Shared(backend) => {
                let subjects = Subjects {
                    email: Some(backend.email_subject(email).0),
                    client: client.map(Subject::client),
                };
                match backend.reserve(&subjects.public(), now).await? {
                    ThrottleDecision::Reserved(id) => Ok(LoginReservation::Shared(Shared {
                        backend: Arc::clone(backend),
                        subjects,
                        id,
                        reserved_at: now,
                        settled: false,
                    })),
                    ThrottleDecision::Refused { retry_after_secs } => Err(AuthError::RateLimited {
                        retry_after_secs: retry_after_secs.max(1),
                    }),
                }
            }
        }
    }
}

/// A reserved login attempt (see [`LoginThrottle::reserve`]); dropped unsettled, it is given
/// back uncounted (by a spawned task for a shared backend).
#[must_use = "a reservation is given back uncounted when dropped"]
#[derive(Debug)]
pub(crate) enum LoginReservation<'a> {
    Local(Reservation<'a>),
    Shared(Shared),
}

/// A reservation granted by a shared [`ThrottleBackend`].
pub(crate) struct Shared {
    backend: Arc<dyn ThrottleBackend>,
    subjects: Subjects,
    id: ReservationId,
    /// The injected clock's time of the reservation: a release counts nothing, so the time
    /// it was granted serves it (a dropped future has no clock at hand).
    reserved_at: OffsetDateTime,
    settled: bool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reservation")
    }
}

impl Shared {
    async fn settle(mut self, outcome: Settlement, now: OffsetDateTime) -> NewLocks {
        self.settled = true;
        match self
            .backend
            .settle(&self.subjects.public(), self.id, outcome, now)
            .await
        {
            Ok(locks) => locks,
            Err(e) => {
                tracing::warn!(error = %e, "login throttle: settling an attempt failed");
                NewLocks::default()
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Outside a runtime nothing can run the release: the backend's own bound (a
        // reservation expires) applies.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let backend = Arc::clone(&self.backend);
            let subjects = self.subjects.public();
            let id = self.id;
            let at = self.reserved_at;
            runtime.spawn(async move {
                if let Err(e) = backend
                    .settle(&subjects, id, Settlement::Released, at)
                    .await
                {
                    tracing::warn!(error = %e, "login throttle: releasing an attempt failed");
                }
            });
        }
    }
}

impl LoginReservation<'_> {
    /// Counts a failed attempt against the email and the client; returns which of them it
    /// locked.
    pub(crate) async fn failed(self, now: OffsetDateTime) -> NewLocks {
        match self {
            Self::Local(reservation) => reservation.failed(now),
            Self::Shared(shared) => shared.settle(Settlement::Failed, now).await,
        }
    }

    /// A successful login: clears the email's failures.
    pub(crate) async fn succeeded(self, now: OffsetDateTime) {
        match self {
            Self::Local(reservation) => reservation.succeeded(now),
            Self::Shared(shared) => {
                shared.settle(Settlement::Succeeded, now).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).expect("a valid time")
    }

    fn throttle(policy: ThrottlePolicy) -> Throttle {
        Throttle::new(policy).expect("OS randomness")
    }

    fn fail(t: &Throttle, email: &str, client: Option<IpAddr>, now: OffsetDateTime) {
        t.reserve(email, client, now).expect("reserved").failed(now);
    }

    fn retry_after(result: Result<Reservation<'_>, AuthError>) -> u64 {
        match result {
            Err(AuthError::RateLimited { retry_after_secs }) => retry_after_secs,
            other => panic!("want a refusal, got {other:?}"),
        }
    }

    #[test]
    fn locks_after_the_limit_and_unlocks_after_lockout() {
        let t = throttle(
            ThrottlePolicy::default()
                .per_email(3)
                .lockout(Duration::from_secs(60)),
        );
        for i in 0..3 {
            fail(&t, "a@x", None, at(i));
        }
        assert_eq!(retry_after(t.reserve("a@x", None, at(2))), 60);
        assert_eq!(retry_after(t.reserve("a@x", None, at(61))), 1);
        assert!(
            t.reserve("b@x", None, at(3)).is_ok(),
            "other emails are free"
        );
        assert!(t.reserve("a@x", None, at(62)).is_ok(), "the lock has ended");
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t = throttle(
            ThrottlePolicy::default()
                .per_email(3)
                .window(Duration::from_secs(10)),
        );
        fail(&t, "a@x", None, at(0));
        fail(&t, "a@x", None, at(5));
        fail(&t, "a@x", None, at(11));
        fail(&t, "a@x", None, at(12));
        assert!(
            t.reserve("a@x", None, at(13)).is_ok(),
            "2 failures in the window"
        );
    }

    #[test]
    fn reservations_in_flight_count_towards_the_limit() {
        let t = throttle(ThrottlePolicy::default().per_email(3));
        let held: Vec<_> = (0..3)
            .map(|_| t.reserve("a@x", None, at(0)).expect("within the limit"))
            .collect();
        assert_eq!(retry_after(t.reserve("a@x", None, at(0))), 1);
        let mut held = held.into_iter();
        // Given back uncounted (an error, or a dropped request): room for one more.
        drop(held.next());
        let again = t.reserve("a@x", None, at(0)).expect("room again");
        // The three others fail: locked.
        again.failed(at(1));
        for r in held {
            r.failed(at(1));
        }
        assert!(retry_after(t.reserve("a@x", None, at(1))) > 1);
    }

    #[test]
    fn a_refused_subject_reserves_nothing_on_the_other() {
        let ip: IpAddr = "192.0.2.1".parse().expect("an address");
        let t = throttle(ThrottlePolicy::default().per_email(1).per_client(2));
        fail(&t, "locked@x", None, at(0));
        for _ in 0..5 {
            assert!(t.reserve("locked@x", Some(ip), at(1)).is_err());
        }
        let a = t.reserve("a@x", Some(ip), at(1)).expect("client has room");
        let b = t.reserve("b@x", Some(ip), at(1)).expect("client has room");
        assert!(t.reserve("c@x", Some(ip), at(1)).is_err(), "client limit 2");
        drop((a, b));
    }

    #[test]
    fn success_clears_the_email_but_not_the_client() {
        let ip: IpAddr = "192.0.2.1".parse().expect("an address");
        let t = throttle(ThrottlePolicy::default().per_email(3).per_client(3));
        fail(&t, "a@x", Some(ip), at(0));
        fail(&t, "a@x", Some(ip), at(0));
        t.reserve("a@x", Some(ip), at(0))
            .expect("reserved")
            .succeeded(at(0));
        fail(&t, "a@x", None, at(0));
        fail(&t, "a@x", None, at(0));
        assert!(t.reserve("a@x", None, at(0)).is_ok(), "2 failures since");
        fail(&t, "b@x", Some(ip), at(0));
        assert!(
            t.reserve("c@x", Some(ip), at(0)).is_err(),
            "client: 3 failures"
        );
    }

    #[test]
    fn client_address_is_limited_across_emails() {
        let ip: IpAddr = "192.0.2.1".parse().expect("an address");
        let t = throttle(ThrottlePolicy::default().per_client(4));
        for i in 0..4 {
            fail(&t, &format!("user{i}@x"), Some(ip), at(0));
        }
        assert!(t.reserve("fresh@x", Some(ip), at(0)).is_err());
        let other: IpAddr = "192.0.2.2".parse().expect("an address");
        assert!(t.reserve("fresh@x", Some(other), at(0)).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let t = throttle(ThrottlePolicy::default().per_client(4));
        for i in 1..=4u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]);
            fail(&t, &format!("user{i}@x"), Some(ip), at(0));
        }
        let same_64 = IpAddr::from([0x2001, 0xdb8, 0, 0, 9, 9, 9, 9]);
        assert!(t.reserve("fresh@x", Some(same_64), at(0)).is_err());
        let next_64 = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, 1]);
        assert!(t.reserve("fresh@x", Some(next_64), at(0)).is_ok());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("an address");
        for i in 0..4 {
            fail(&t, &format!("m{i}@x"), Some(mapped), at(0));
        }
        let plain: IpAddr = "192.0.2.7".parse().expect("an address");
        assert!(t.reserve("fresh@x", Some(plain), at(0)).is_err());
    }

    #[test]
    fn entries_are_fixed_size_whatever_the_email() {
        assert!(
            size_of::<(Subject, Counter)>() < 64,
            "{}",
            size_of::<(Subject, Counter)>()
        );
        let t = throttle(ThrottlePolicy::default());
        let huge = "x".repeat(60 * 1024);
        assert_eq!(t.email_subject(&huge), t.email_subject(&huge));
        assert_ne!(t.email_subject(&huge), t.email_subject("x"));
        let other = throttle(ThrottlePolicy::default());
        assert_ne!(
            t.email_subject("a@x"),
            other.email_subject("a@x"),
            "keyed per process"
        );
    }

    #[test]
    fn the_cap_counts_locked_entries_too() {
        let t = throttle(ThrottlePolicy::default().max_tracked(100).per_email(1));
        for i in 0..10_000 {
            fail(&t, &format!("spray{i}@x"), None, at(0));
            assert!(t.tracked() <= 100, "{}", t.tracked());
        }
    }

    #[test]
    fn a_full_table_evicts_unlocked_entries_before_locked_ones() {
        let t = throttle(ThrottlePolicy::default().max_tracked(100).per_email(3));
        // A locked victim, then a spray of single failures that fills the table many times.
        for _ in 0..3 {
            fail(&t, "victim@x", None, at(0));
        }
        for i in 0..10_000 {
            fail(&t, &format!("spray{i}@x"), None, at(1));
        }
        assert!(t.tracked() <= 100);
        assert!(
            t.reserve("victim@x", None, at(2)).is_err(),
            "the victim's lock survives the spray"
        );
        // Only locked entries left in competition: the one ending soonest goes first.
        let t = throttle(ThrottlePolicy::default().max_tracked(16).per_email(1));
        fail(&t, "victim@x", None, at(0));
        for i in 0..15 {
            fail(&t, &format!("locked{i}@x"), None, at(1));
        }
        fail(&t, "newcomer@x", None, at(2));
        assert!(t.reserve("victim@x", None, at(3)).is_ok(), "evicted first");
        assert!(t.reserve("newcomer@x", None, at(3)).is_err(), "kept");
    }

    #[test]
    fn possession_requests_are_counted_per_client_and_lock_for_a_window() {
        let t = Throttle::for_possession(
            &PossessionLimit::default()
                .per_client(3)
                .window(Duration::from_secs(60)),
        )
        .expect("OS randomness");
        let ip: IpAddr = "192.0.2.1".parse().expect("an address");
        for i in 0..3 {
            assert!(t.count_client(Some(ip), at(i)).is_ok(), "request {i}");
        }
        // The third request locked the address for a window from then (at(2)).
        assert_eq!(retry_after_of(t.count_client(Some(ip), at(3))), 59);
        let other: IpAddr = "192.0.2.2".parse().expect("an address");
        assert!(t.count_client(Some(other), at(3)).is_ok(), "per address");
        assert!(
            t.count_client(Some(ip), at(62)).is_ok(),
            "the lock has ended"
        );
        // Requests without an address share one subject.
        for i in 0..3 {
            assert!(t.count_client(None, at(i)).is_ok());
        }
        assert!(t.count_client(None, at(3)).is_err());
    }

    #[test]
    fn the_possession_table_is_bounded() {
        let t = Throttle::for_possession(&PossessionLimit::default().max_tracked(100))
            .expect("OS randomness");
        for i in 0..10_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(t.count_client(Some(ip), at(0)).is_ok());
            assert!(t.tracked() <= 100, "{}", t.tracked());
        }
    }

    fn retry_after_of(result: Result<(), AuthError>) -> u64 {
        match result {
            Err(AuthError::RateLimited { retry_after_secs }) => retry_after_secs,
            other => panic!("want a refusal, got {other:?}"),
        }
    }

    #[test]
    fn entries_in_flight_are_never_evicted() {
        let t = throttle(ThrottlePolicy::default().max_tracked(2).per_email(1));
        let a = t.reserve("a@x", None, at(0)).expect("room");
        let b = t.reserve("b@x", None, at(0)).expect("room");
        assert_eq!(retry_after(t.reserve("c@x", None, at(0))), 1, "full");
        drop(a);
        assert!(t.reserve("c@x", None, at(0)).is_ok());
        drop(b);
        assert_eq!(t.tracked(), 0, "released entries are forgotten");
    }
}
