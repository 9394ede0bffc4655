//! Rate limits and the login throttle of [`nexora_auth`], shared between instances through
//! Redis.
//!
//! ```
//! use std::sync::Arc;
//!
//! use nexora_auth::{
//!     KeyId, LimitBackend, RateLimit, ThrottleKey, ThrottlePolicy,
//!     limits::{LimitSubject, RateCheck},
//! };
//! use nexora_auth_redis::{RedisConfig, RedisLimits, RedisThrottle};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Contacts nobody yet: an instance starts while Redis is down, and falls back until it
//! // answers (this example passes either way).
//! let redis = RedisConfig::new("redis://127.0.0.1:6379")
//!     .key_prefix(format!("doc-{}:", uuid::Uuid::new_v4().simple()))
//!     .connect()?;
//! let limits = Arc::new(RedisLimits::new(redis.clone()));
//! // The same secret on every instance (here 32 bytes; a host can pass its key pepper).
//! let key = ThrottleKey::derive(&[7; 32])?;
//! let throttle = Arc::new(RedisThrottle::new(redis, ThrottlePolicy::default(), key));
//!
//! // Given to the authenticator:
//! //   Authenticator::builder(keys, peppers)
//! //       .rate_limits(limits.clone())
//! //       .login_throttle_backend(throttle.clone())
//! # let _ = throttle;
//!
//! // What the authenticator does on each request of a key limited to 2 per minute:
//! let check = [RateCheck {
//!     subject: LimitSubject::Key(KeyId::new_random()),
//!     rate: RateLimit::new(2, 60).expect("in range"),
//! }];
//! let now = time::OffsetDateTime::now_utc();
//! assert!(limits.check(&check, 1, now).await?.allowed);
//! assert!(limits.check(&check, 1, now).await?.allowed);
//! let refused = limits.check(&check, 1, now).await?;
//! assert!(!refused.allowed);
//! assert!((29..=30).contains(&refused.retry_after_secs));
//! # Ok(())
//! # }
//! ```
//!
//! * [`RedisLimits`] is a [`LimitBackend`](nexora_auth::LimitBackend)
//!   ([`AuthenticatorBuilder::rate_limits`](nexora_auth::AuthenticatorBuilder::rate_limits)):
//!   each request's rate limits (the key's and its owner's) are judged and charged by one Lua
//!   script, all or nothing, mirroring
//!   [`gcra::decide`](nexora_auth::limits::gcra::decide) line for line in arithmetic that is
//!   exact in Lua's doubles.
//! * [`RedisThrottle`] is a [`ThrottleBackend`](nexora_auth::ThrottleBackend)
//!   ([`AuthenticatorBuilder::login_throttle_backend`](nexora_auth::AuthenticatorBuilder::login_throttle_backend)):
//!   failed logins per email and per client address, with the in-process table's semantics.
//!   The revoke-by-possession limit stays in each process.
//! * Both share one [`RedisConnection`] ([`RedisConfig::connect`]), and read Redis's clock
//!   (`TIME`) inside their scripts by default ([`TimeSource`]), so instances with skewed
//!   clocks agree. Redis 7 allows it: scripts replicate their effects, not their text.
//!
//! # Bounds across instances
//!
//! * **While Redis answers**, every check is one atomic script on the one shared state: any
//!   number of instances allow exactly what one instance would — no overshoot, for rate
//!   limits and for the login throttle alike.
//! * **While Redis is down** (no answer within [`RedisConfig::timeout`], 250 ms by default),
//!   each backend by default falls back to an in-process table ([`Outage::FallBack`]) and
//!   logs one warning per outage (and a note when Redis answers again; one request per
//!   [`RedisConfig::retry_interval`] tries it meanwhile, the others do not wait): each
//!   instance then enforces the limits alone, so `N` instances allow up to `N ×` them. With
//!   [`Outage::FailClosed`] they answer `Err(StoreError::Unavailable)` instead, which the
//!   authenticator answers as unavailable (503). [`RedisLimits::fallbacks`] and
//!   [`RedisThrottle::fallbacks`] count the requests answered without Redis.
//! * **Redis keeps nothing on disk** that this crate relies on: a restart (or a failover to a
//!   replica that had not yet received the last writes) forgets rate state, which lets each
//!   key and owner pass at most one extra burst (its `limit`), and forgets login counts and
//!   locks (at most one more policy's worth of attempts per subject). Credits are not kept
//!   here: they live in the key store.
//! * A call that times out may still have run in Redis: its request was charged there and
//!   judged by the fallback here, so a timeout errs on the strict side.
//! * A single server (or a primary behind Sentinel): a request's keys are not placed in one
//!   Redis Cluster hash slot, so a cluster is not supported.
//!
//! # Threat model
//!
//! Redis holds rate debts per key id and owner id, and login counts under keyed digests of
//! emails (16 bytes of HMAC-SHA256 under the [`ThrottleKey`](nexora_auth::ThrottleKey)) and
//! client addresses (IPv4 address or IPv6 /64). Whoever reads Redis learns which key ids and
//! owners are busy and which client addresses failed logins, not which emails; whoever writes
//! to it can lift or impose limits and locks, so it belongs on a private network with a
//! password, as the key store does.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod connection;
mod limits;
mod throttle;

pub use connection::{
    DEFAULT_KEY_PREFIX, DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, Outage, RedisConfig,
    RedisConnection, RedisSetupError, TimeSource,
};
pub use limits::RedisLimits;
pub use throttle::RedisThrottle;
