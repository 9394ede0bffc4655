//! The authentication core of the Nexora API: `nxr_` API keys, JWT access tokens and password
//! login over pluggable stores.
//!
//! ```
//! use std::sync::Arc;
//! use nexora_auth::{
//!     Authenticator, Credential, JwtConfig, JwtKeys, MemoryKeyStore, NewKey, OwnerId,
//!     PepperRing, Principal, Scopes, SecretBytes, TokenAuthority,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Server-side secrets: in production, load them from configuration, never from the database.
//! let pepper = SecretBytes::new(b"pepper: 32+ random bytes, kept out of the db".to_vec());
//! let jwt_secret = SecretBytes::new(b"jwt secret: 32+ random bytes, keep it safe".to_vec());
//!
//! let auth = Authenticator::builder(Arc::new(MemoryKeyStore::new()), PepperRing::new(1, pepper)?)
//!     .tokens(TokenAuthority::new(JwtKeys::hs256(&jwt_secret)?, JwtConfig::new("nexora", "nexora-api"))?)
//!     .build()?;
//!
//! // A user (from your own user system, or ours) creates a key; it is shown exactly once.
//! let alice = Principal::new(OwnerId::new("alice"), Credential::Internal, Scopes::new(["agents:read"])?);
//! let created = auth.create_key(&alice, NewKey::named("CI pipeline")).await?;
//! let key_text = created.key.expose().to_owned();
//! assert!(key_text.starts_with("nxr_"));
//!
//! // Every request: authenticate the bearer token (an nxr_ key or a JWT).
//! let principal = auth.authenticate(&key_text).await?;
//! assert_eq!(principal.owner().as_str(), "alice");
//! principal.require_scope("agents:read")?;
//!
//! // Rotation keeps the id; the old key stops working at once.
//! let rotated = auth.rotate_key(&principal, created.info.id, Default::default()).await?;
//! assert!(auth.authenticate(&key_text).await.is_err());
//! assert!(auth.authenticate(rotated.key.expose()).await.is_ok());
//! # Ok(())
//! # }
//! ```
//!
//! # How a key is found and checked
//!
//! A key is `nxr_` + its id (a UUID, base62) + 190 bits of secret + a CRC32 (see [`key`]).
//! The store is searched by the **id embedded in the key** (a primary-key lookup), and the
//! secret is then checked by recomputing `HMAC-SHA256(pepper, id ‖ secret)` and comparing it
//! with the stored digest in constant time ([`subtle`]).
//!
//! Why an embedded id rather than an index on the digest: a digest index makes pepper
//! rotation expensive (every unknown key would have to be digested and looked up once per
//! pepper version, as the store cannot know which pepper applies); with the id, the record says
//! which pepper version made its digest, so a request costs exactly one lookup and one HMAC
//! whatever the number of peppers. Rotation keeps the id, so the grace-period option is a
//! second digest on the same row rather than a second lookup. The id is not secret: it is in
//! every list response anyway.
//!
//! # Who may do what with a key
//!
//! Every operation on keys goes through one policy, [`policy`]: a principal reaches only its
//! owner's live keys within its scopes and lifetime (anything else reads as unknown), a key it
//! creates holds at most its scopes and expires no later than it, and each key records its
//! creator so that [`Authenticator::revoke_key`] can revoke a leaked key with everything it
//! minted ([`RevokeOptions::cascade`]). With a [`UserStore`], every request also checks that the
//! user behind the credential exists and is enabled, and caps its scopes at the user's current
//! ones.
//!
//! # Shorter-lived credentials: derived tokens and WebSocket tickets
//!
//! A key holder can hand a script or a browser something that is not the key:
//! [`Authenticator::derive_token`] makes a JWT of at most the key's scopes that lives at most
//! 15 minutes (configurable) and no longer than the key, names the key and the generation of
//! its secret, and dies with them — revoked, rotated without grace, expired, user disabled —
//! checked on every request through the verification cache. [`Authenticator::issue_ticket`]
//! makes a random single-use ticket (30 seconds) for a WebSocket URL, where a credential would
//! be logged; [`Authenticator::redeem_ticket`] accepts it once, across every instance sharing
//! the [`TicketStore`], as the principal that asked for it (see [`ticket`]).
//!
//! # When a key leaks
//!
//! [`Authenticator::revoke_leaked`] handles a secret scanner's report of a key found in public
//! ([`LeakPolicy`]: revoke, the default, or notify only), and
//! [`Authenticator::revoke_by_possession`] lets whoever holds a key end it.
//!
//! * **Authority.** The key's text is the authority, not a principal: whoever holds a key may
//!   end it, and an id alone reaches nothing. So these operations stand beside [`policy`]
//!   (which judges what a principal may do to its owner's keys) rather than under it; they
//!   reach exactly the key the text authenticates as, and the keys it created.
//! * **What counts as live.** The text is a well-formed key (prefix, alphabet, length,
//!   checksum: [`ApiKey::parse`]), the store has its id, its secret matches the stored digest
//!   (or the previous one, during a rotation's grace period) and the key is neither revoked
//!   nor expired. The user behind it is not consulted: a disabled user's keys work again once
//!   the user is enabled, so a leaked one is ended all the same.
//! * **What revoking does.** The key and every key it created, transitively, are revoked in
//!   one atomic step ([`KeyStore::revoke_tree`]): whoever read the leaked text could have
//!   minted keys with it (holding `keys:manage`, it could as well have revoked the whole tree
//!   itself), and nothing tells their keys from the owner's. The record is read from the
//!   store, not the verification cache, and the secret is checked against it before the tree
//!   is revoked: a rotation that lands between the two is revoked with the key, the safe
//!   direction (its new secret was issued while the old one was public).
//! * **What a caller learns.** Nothing the key itself would not tell it. Every well-formed key
//!   costs one store read, and its secret is compared (in constant time) whatever the key's
//!   state; only a live key, whose secret the caller therefore holds, costs a write as well,
//!   and its holder could learn that it is live by authenticating with it. A malformed text
//!   costs no read: its format is public and checked offline, so its timing tells the caller
//!   only what it could compute itself. Requests are limited per client ([`PossessionLimit`]).
//! * **What is recorded.** A live key ended this way is logged at `warn` (its id and owner,
//!   never its text) and recorded in its owner's [audit trail](audit); a text that is not a
//!   live key changes nothing and records nothing.
//!
//! # Memory speed on any store: the verification cache
//!
//! What `authenticate` needs from the stores — a key's record, its user's status and scopes —
//! is cached in the [`Authenticator`] ([`cache`]), so a hot key costs one HMAC and no store
//! round trip, whatever the store. The cache never holds a secret and never trusts an entry
//! beyond a stated bound: each store tells it how it learns of changes ([`Freshness`]): the
//! in-memory stores report every change before the write returns (bound 0); the SQL stores
//! follow their database (Postgres: an event log with `NOTIFY`; SQLite: `data_version`), and a
//! positive is trusted for at most [`CacheConfig::ceiling`] (5 seconds by default) after the
//! feed last proved itself in sync; a custom store without a feed is read on every request.
//! [`Authenticator::watch`] ends a long-lived connection within the same bound.
//!
//! # Rate limits and credits
//!
//! A key can carry a rate limit and usage credits, and an owner a rate limit shared by all of
//! their credentials ([`limits`]). [`Authenticator::charge`] applies them after authentication
//! and before the handler (the HTTP layer calls it with a cost per route): GCRA in exact
//! integer arithmetic for rates, all or nothing across the key's and the owner's limits, then
//! credits taken from the key store by compare-and-swap and leased per instance in blocks. Who
//! may set or loosen limits is the key-management [`policy`]. Rate limits count in the process
//! by default ([`InProcessLimits`]); `nexora-auth-redis` shares them, and the login throttle,
//! between instances. The [`limits`] module states every bound.
//!
//! # Threat model
//!
//! * **A leaked database** gives key ids, names, scopes, display fragments (the last 4 secret
//!   characters) and HMAC digests. Without the pepper the digests cannot be checked against
//!   guesses at all, and with ~166 unknown bits per secret they could not be brute-forced even
//!   with it. Nothing in the database authenticates: there are no keys, only digests. Password
//!   hashes are argon2id (m=19456 KiB, t=2, p=1): offline guessing costs ~20 MiB and tens of
//!   milliseconds per guess per account.
//! * **A leaked pepper** alone gives nothing: it is a MAC key, and no key can be derived from
//!   it. With the database as well, an attacker can verify guesses offline — still hopeless
//!   against 190-bit random secrets. Recovery: add a new pepper version as current, keep the
//!   old one as retired ([`PepperRing::with_retired`]), rotate keys, then drop it.
//! * **A timing observer** can tell a malformed key (no store call) from a well-formed one, and
//!   an existing id from a missing one (the store lookup), but ids are not secret. The digest
//!   comparison is constant-time and runs before revocation and expiry are judged, so response
//!   timing reveals nothing about the secret or about a key's state. Unknown and known emails
//!   at login both cost one argon2 verification ([`PasswordHasher::verify`]).
//! * **A log reader** sees no secrets: keys, passwords, peppers and JWT secrets print
//!   `[redacted]` in `Debug`, have no `Display`, and are zeroized on drop.
//!
//! # JWT crypto backend
//!
//! `jsonwebtoken` 12 needs exactly one crypto backend. This crate enables `rust-crypto` (pure
//! Rust, no C toolchain, faster cold builds) by default: HS256, the default algorithm, is as
//! fast there as on aws-lc-rs. Deployments that verify many ES256 tokens can enable the
//! `aws-lc-rs` feature (ES256 verify ~39 µs instead of ~155 µs on our test machine). A build
//! with neither fails to compile; [`TokenAuthority::new`] also runs a sign + verify self-check,
//! so a misconfiguration stops startup rather than the first request.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(not(any(feature = "rust-crypto", feature = "aws-lc-rs")))]
compile_error!(
    "nexora-auth needs a JWT crypto backend: enable the `rust-crypto` or `aws-lc-rs` feature"
);

pub mod audit;
pub mod cache;
mod digest;
mod error;
pub mod jwt;
pub mod key;
mod last_used;
pub mod limits;
mod memory;
mod nesting;
mod password;
pub mod policy;
mod scope;
mod secret;
mod service;
pub mod store;
pub mod throttle;
pub mod ticket;

/// The attribute [`KeyStore`] and [`UserStore`] implementations are written with
/// (`#[nexora_auth::async_trait]`), re-exported so a store crate needs no `async-trait`
/// dependency of its own.
pub use async_trait::async_trait;
pub use audit::{AuditEvent, AuditStore, MemoryAuditStore, NewAuditEvent};
pub use cache::{CacheConfig, ChangeFeed, ChangeFeeds, Freshness};
pub use digest::{KeyDigest, KeyGeneration, MIN_PEPPER_LEN, PepperRing, StoredDigest};
pub use error::{
    AuthError, ConfigError, Field, InvalidInput, InvalidReason, JwtRejection, Problem, Unavailable,
};
pub use jwt::{
    AccessToken, DerivedFrom, JwtAlgorithm, JwtConfig, JwtKeys, SigningError, TokenAuthority,
    UnknownAlgorithm, VerifiedToken,
};
pub use key::{ApiKey, KEY_LEN, KEY_PREFIX, KeyId, KeyParseError, RandomnessError};
pub use limits::{
    Credits, Exceeded, InProcessLimits, LimitBackend, LimitRefusal, NewCredits, RateLimit, Refill,
    Usage,
};
pub use memory::{MemoryKeyStore, MemoryTicketStore, MemoryUserStore};
pub use password::{HashTicket, PasswordCheck, PasswordHasher, PasswordPolicy};
pub use scope::{MAX_SCOPE_LEN, MAX_SCOPES, ScopeError, Scopes};
pub use secret::{SecretBytes, SecretString};
pub use service::{
    Authenticator, AuthenticatorBuilder, Clock, CreatedKey, Credential, DEFAULT_CREDIT_LEASE_BLOCK,
    DEFAULT_DERIVED_TOKEN_MAX_TTL, DEFAULT_TICKET_TTL, DerivedToken, IssuedTicket, KeyChanges,
    KeyInfo, LastUsedFlusher, LeakOutcome, LeakPolicy, LeakReport, LoginResponse, MAX_EMAIL_LEN,
    MAX_KEY_NAME_LEN, MAX_LEAK_SOURCE_LEN, MAX_LEAK_URL_LEN, NewKey, NotLive, Principal,
    RevokeOptions, RotateOptions, SystemClock, TokenRequest, UserInfo, normalize_email,
};
pub use store::{
    CascadeOutcome, KeyCredentials, KeyRecord, KeyStore, OwnerId, StoreError, UserRecord, UserStore,
};
pub use throttle::{
    InProcessThrottle, NewLocks, PossessionLimit, ReservationId, Settlement, ThrottleBackend,
    ThrottleDecision, ThrottleKey, ThrottlePolicy, ThrottleSubject,
};
pub use ticket::{TicketDigest, TicketRecord, TicketStore};
