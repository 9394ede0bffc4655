//! The connection to Redis shared by the backends, its settings, and the outage tracking
//! each backend keeps.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use nexora_auth::StoreError;
use redis::{
    Client, FromRedisValue,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

/// Whose clock the scripts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TimeSource {
    /// Redis's own (`TIME`, read inside each script): instances whose clocks are skewed still
    /// agree. The default.
    #[default]
    Redis,
    /// The instant the authenticator passes (its injected clock). For tests that drive time,
    /// and for hosts that keep their clocks in step; keys still expire on Redis's clock.
    Caller,
}

/// What a backend does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Outage {
    /// Counts in a table of its own in this process (each instance limits alone, so `N`
    /// instances allow up to `N ×` the limits), with a warning. The default.
    #[default]
    FallBack,
    /// Answers `Err(StoreError::Unavailable)`: the request is refused as unavailable (503).
    FailClosed,
}

/// Why [`RedisConfig::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// The URL is not a Redis URL (`redis://[user:password@]host[:port][/db]`, or
    /// `redis+unix://`).
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
    /// The key prefix is longer than 64 bytes or holds a space or a control character.
    #[error("the Redis key prefix must be at most 64 bytes, without spaces or control characters")]
    InvalidPrefix,
    /// The connection manager could not be set up (no Tokio runtime is running).
    #[error("could not set up the Redis connection")]
    Setup(#[source] redis::RedisError),
}

/// Where the shared state lives and how long to wait for it. Every default is on its setter.
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    key_prefix: String,
    timeout: Duration,
    retry_interval: Duration,
    time: TimeSource,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("RedisConfig")
            .field("url", &"[redacted]")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("retry_interval", &self.retry_interval)
            .field("time", &self.time)
            .finish()
    }
}

/// The default key prefix: `nexora:`.
pub const DEFAULT_KEY_PREFIX: &str = "nexora:";
/// The default connect and response timeout: 250 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// The default pause between attempts to reach Redis during an outage: 1 second.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);

impl RedisConfig {
    /// The server at `url` (`redis://[user:password@]host[:port][/db]`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            time: TimeSource::Redis,
        }
    }

    /// Prepended to every key this crate writes (rate limits: `<prefix>k:<key id>` and
    /// `<prefix>o:<owner>`; login throttle: `<prefix>t:…`), so several deployments can share
    /// one server. Instances that must agree use the same prefix. Defaults to
    /// [`DEFAULT_KEY_PREFIX`], `nexora:`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long a request waits for Redis — to connect, and for a script's answer — before
    /// the backend treats Redis as down. Defaults to [`DEFAULT_TIMEOUT`], 250 ms.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// During an outage, one request per interval tries Redis again (the others go straight
    /// to the fallback, or fail closed, without waiting). Defaults to
    /// [`DEFAULT_RETRY_INTERVAL`], 1 second.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// Whose clock decides (see [`TimeSource`]). Defaults to [`TimeSource::Redis`].
    pub fn time_source(mut self, time: TimeSource) -> Self {
        self.time = time;
        self
    }

    /// Sets up a connection that reconnects by itself. Contacts nobody: the first request
    /// connects (so an instance starts while Redis is down, and falls back until it answers);
    /// [`RedisConnection::ping`] checks the server at once. Must be called within a Tokio
    /// runtime.
    pub fn connect(self) -> Result<RedisConnection, RedisSetupError> {
        let valid_prefix = self.key_prefix.len() <= 64
            && !self
                .key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        if !valid_prefix {
            return Err(RedisSetupError::InvalidPrefix);
        }
        let client = Client::open(self.url.as_str()).map_err(RedisSetupError::InvalidUrl)?;
        let server = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            // A reconnection is tried once per failed request; the retry interval paces them.
            .set_number_of_retries(1)
            .set_max_delay(self.timeout);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(RedisSetupError::Setup)?;
        Ok(RedisConnection {
            inner: Arc::new(Shared {
                manager,
                server,
                prefix: self.key_prefix,
                timeout: self.timeout,
                retry_interval: self.retry_interval,
                time: self.time,
            }),
        })
    }
}

/// A connection to Redis (a multiplexed connection that reconnects by itself), shared by the
/// backends built on it. Cheap to clone. Two values from two [`RedisConfig::connect`] calls
/// are two connections, as two instances would have.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Shared>,
}

struct Shared {
    manager: ConnectionManager,
    /// `host:port`, for logs (never the password).
    server: String,
    prefix: String,
    timeout: Duration,
    retry_interval: Duration,
    time: TimeSource,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("server", &self.inner.server)
            .field("key_prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("time", &self.inner.time)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Asks the server for `PONG` within the timeout: a host can check Redis at startup.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.inner.manager.clone();
        let ping = redis::cmd("PING");
        self.bounded(async move { ping.query_async::<String>(&mut conn).await })
            .await
            .map(drop)
    }

    /// The key prefix ([`RedisConfig::key_prefix`]).
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The server as `host:port` (no credentials).
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    pub(crate) fn time(&self) -> TimeSource {
        self.inner.time
    }

    pub(crate) fn retry_interval(&self) -> Duration {
        self.inner.retry_interval
    }

    /// Runs `script` within the timeout.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.inner.manager.clone();
        self.bounded(invocation.invoke_async(&mut conn)).await
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::backend(
                format!("Redis at {} failed", self.inner.server),
                e,
            )),
            Err(_) => Err(StoreError::unavailable(format!(
                "Redis at {} did not answer within {} ms",
                self.inner.server,
                self.inner.timeout.as_millis()
            ))),
        }
    }
}

/// One backend's view of Redis's health: whether it is in an outage, when to try Redis
/// again, and how many requests were answered without it. Logs once when an outage begins and
/// once when it ends.
pub(crate) struct Health {
    what: &'static str,
    started: Instant,
    down: AtomicBool,
    /// Milliseconds after `started` when the next request may try Redis during an outage.
    retry_at: AtomicU64,
    fallbacks: AtomicU64,
}

impl Health {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            started: Instant::now(),
            down: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this request should try Redis: always while it is up; during an outage, one
    /// request per retry interval (the one that claims the slot).
    pub(crate) fn should_try(&self, interval: Duration) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return true;
        }
        let now = self.elapsed_ms();
        let due = self.retry_at.load(Ordering::Acquire);
        now >= due
            && self
                .retry_at
                .compare_exchange(
                    due,
                    now.saturating_add(duration_ms(interval)),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    pub(crate) fn failed(&self, error: &StoreError, interval: Duration, outage: Outage) {
        self.retry_at.store(
            self.elapsed_ms().saturating_add(duration_ms(interval)),
            Ordering::Release,
        );
        if !self.down.swap(true, Ordering::AcqRel) {
            match outage {
                Outage::FallBack => tracing::warn!(
                    error = %error,
                    "{}: Redis is unreachable; counting in this process until it answers \
                     (each instance limits alone meanwhile)",
                    self.what
                ),
                Outage::FailClosed => tracing::warn!(
                    error = %error,
                    "{}: Redis is unreachable; refusing requests as unavailable until it \
                     answers",
                    self.what
                ),
            }
        }
    }

    pub(crate) fn succeeded(&self) {
        if self.down.load(Ordering::Acquire) && self.down.swap(false, Ordering::AcqRel) {
            tracing::info!(
                "{}: Redis answers again; the shared count is back",
                self.what
            );
        }
    }

    pub(crate) fn count_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
