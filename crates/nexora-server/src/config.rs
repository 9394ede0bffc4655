//! Configuration: command-line flags, each also read from an environment variable, and the
//! server secrets (from the environment, or generated once into the data directory).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use base64::Engine;
use nexora_auth::{
    CacheConfig, JwtAlgorithm, JwtConfig, JwtKeys, PepperRing, RateLimit, SecretBytes,
    TokenAuthority,
};

use nexora_auth_http::proxy::{ForwardedHeader, TrustedProxies};

use crate::{
    database_url::DatabaseUrl,
    private_files::{self, Existing},
};

/// A startup problem, reported as one line.
#[derive(Debug)]
pub(crate) struct StartupError(pub(crate) String);

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

/// A rate limit written `LIMIT/PERIOD_SECS` (`1000/60`); `none` is no limit (for
/// `user set-limit`).
pub(crate) fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    let (limit, period) = text
        .split_once('/')
        .ok_or_else(|| format!("expected LIMIT/PERIOD_SECS, e.g. 1000/60, not {text:?}"))?;
    let number = |s: &str| s.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    RateLimit::new(number(limit)?, number(period)?).ok_or_else(|| {
        format!(
            "the limit must be 1 to {} and the period 1 to {} seconds",
            nexora_auth::limits::MAX_RATE_LIMIT,
            nexora_auth::limits::MAX_PERIOD_SECS
        )
    })
}

pub(crate) fn fail<T>(message: impl Into<String>) -> Result<T, StartupError> {
    Err(StartupError(message.into()))
}

/// Options shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CommonArgs {
    /// Database URL: `sqlite://PATH` or `postgres://…`. Defaults to
    /// `sqlite://<data-dir>/nexora.db`. A password in it (`postgres://user:PASSWORD@host/db`
    /// or `?password=`) is never printed: logs and messages show it as `[redacted]`.
    #[arg(
        long,
        env = "NEXORA_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub(crate) database: Option<DatabaseUrl>,

    /// Directory for the embedded SQLite database and generated secrets. Created with mode 0700
    /// if missing; the database and secrets in it are 0600, and looser modes found at start
    /// are tightened, with a warning.
    #[arg(
        long,
        env = "NEXORA_DATA_DIR",
        default_value = "nexora-data",
        global = true
    )]
    pub(crate) data_dir: PathBuf,
}

/// Options of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the chosen address is logged).
    #[arg(long, env = "NEXORA_BIND", default_value = "127.0.0.1:8080")]
    pub(crate) bind: SocketAddr,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "NEXORA_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub(crate) max_body_bytes: usize,

    /// Per-request timeout, in seconds.
    #[arg(long, env = "NEXORA_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub(crate) request_timeout_secs: u64,

    /// The verification cache's ceiling, in milliseconds: the longest a key record or a
    /// user's status is reused without reading the database, and so the longest a change made
    /// by another instance on the same database (a revoke, a rotation, a disabled user) can go
    /// unnoticed here; normally the database's change feed makes it milliseconds. Changes
    /// made through this instance hold from the next request on, and open WebSockets are
    /// closed within the same bound. Defaults to 5000. 0 turns the cache off: every request
    /// reads the database, and an open WebSocket rechecks its credential every second.
    #[arg(long, env = "NEXORA_CACHE_CEILING_MS", default_value_t = 5000)]
    pub(crate) cache_ceiling_ms: u64,

    /// How often queued `last_used_at` times are written, in seconds.
    #[arg(long, env = "NEXORA_LAST_USED_FLUSH_SECS", default_value_t = 5)]
    pub(crate) last_used_flush_secs: u64,

    /// Reverse proxies trusted to name the client (comma-separated IP addresses or CIDR
    /// blocks, e.g. `10.0.0.0/8,::1`). From such a peer, the client of a login (for the
    /// per-client throttle) is the right-most address of the forwarding header that is not
    /// itself a trusted proxy; from any other peer, headers are ignored. Empty by default:
    /// the TCP peer is the client.
    #[arg(long, env = "NEXORA_TRUSTED_PROXIES", default_value = "")]
    pub(crate) trusted_proxies: String,

    /// The rate limit of every user who has none of their own (`user set-limit`), shared by all
    /// of the user's keys and tokens: `LIMIT/PERIOD_SECS`, e.g. `1000/60`. None by default.
    #[arg(long, env = "NEXORA_OWNER_RATE_LIMIT", value_parser = parse_rate_limit)]
    pub(crate) owner_rate_limit: Option<RateLimit>,

    /// How many credits each instance takes from the database beyond a request's cost, for a
    /// key with credits: the database is written once per block, and a crash loses at most a
    /// block per key. Defaults to 10; 0 writes the database on every metered request.
    #[arg(
        long,
        env = "NEXORA_CREDIT_LEASE_BLOCK",
        default_value_t = nexora_auth::DEFAULT_CREDIT_LEASE_BLOCK
    )]
    pub(crate) credit_lease_block: u64,

    /// A Redis server (`redis://host:port/db`) that shares rate limits and the login throttle
    /// between every instance pointed at it, with an atomic script per request: together they
    /// allow exactly what one instance would. Without it (the default) both are counted in
    /// each process. Credits are kept in the database either way.
    #[arg(long, env = "NEXORA_LIMITS_REDIS_URL")]
    pub(crate) limits_redis_url: Option<String>,

    /// The prefix of every Redis key the server writes. Defaults to `nexora:`.
    #[arg(
        long,
        env = "NEXORA_LIMITS_REDIS_PREFIX",
        default_value = nexora_auth_redis::DEFAULT_KEY_PREFIX
    )]
    pub(crate) limits_redis_prefix: String,

    /// While Redis cannot be reached, refuse rate-limited requests and logins (503) instead of
    /// counting them in this process alone (the default, with a warning). Recovery is
    /// automatic either way.
    #[arg(long, env = "NEXORA_LIMITS_REDIS_FAIL_CLOSED", default_value_t = false)]
    pub(crate) limits_redis_fail_closed: bool,

    /// How many days audit events are kept: events older than this are deleted at start and
    /// every hour after. Defaults to 90. 0 keeps them forever.
    #[arg(long, env = "NEXORA_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    pub(crate) audit_retention_days: u64,

    /// The header the trusted proxies write: `x-forwarded-for` or `forwarded` (RFC 7239).
    /// Only that one is read: a proxy usually passes the other through from the client.
    #[arg(
        long,
        env = "NEXORA_FORWARDED_HEADER",
        default_value = "x-forwarded-for"
    )]
    pub(crate) forwarded_header: String,

    /// GitHub's secret-scanning public keys: a file holding the answer of
    /// `GET https://api.github.com/meta/public_keys/secret_scanning`
    /// (`{"public_keys": [{"key_identifier", "key", "is_current"}]}`). With it (or
    /// `--github-scanning-keys-url`), `POST /api/secret-scanning/github` takes GitHub's signed
    /// reports of leaked keys; with neither (the default), that path does not exist (404). A
    /// file that cannot be read or holds no P-256 key stops the start.
    #[arg(long, env = "NEXORA_GITHUB_SCANNING_KEYS_FILE")]
    pub(crate) github_scanning_keys_file: Option<PathBuf>,

    /// Where to fetch GitHub's secret-scanning public keys (normally
    /// `https://api.github.com/meta/public_keys/secret_scanning`), besides or instead of the
    /// file: fetched at start, again when older than an hour, and when a report names a key
    /// identifier not known yet, at most once a minute. A failed fetch keeps the keys fetched
    /// before. Unset by default.
    #[arg(long, env = "NEXORA_GITHUB_SCANNING_KEYS_URL")]
    pub(crate) github_scanning_keys_url: Option<url::Url>,

    /// What to do with a live key a GitHub report names: `revoke` it (and every key it
    /// created) at once, or `notify` only (a warning in the log; the key keeps working).
    /// Defaults to `revoke`.
    #[arg(
        long,
        env = "NEXORA_GITHUB_SCANNING_POLICY",
        value_enum,
        default_value_t = ScanningPolicy::Revoke
    )]
    pub(crate) github_scanning_policy: ScanningPolicy,
}

/// `--github-scanning-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ScanningPolicy {
    /// Revoke the key, and every key it created.
    Revoke,
    /// Log a warning only.
    Notify,
}

impl ServeArgs {
    /// Whether GitHub's secret-scanning reports are served (a keys file or URL is given).
    pub(crate) fn serves_secret_scanning(&self) -> bool {
        self.github_scanning_keys_file.is_some() || self.github_scanning_keys_url.is_some()
    }

    /// The verification cache from `--cache-ceiling-ms`.
    pub(crate) fn verification_cache(&self) -> CacheConfig {
        match self.cache_ceiling_ms {
            // Off rather than a zero ceiling: with nothing to trust, a watch on an open socket
            // rechecks once a second instead of at every tick of the ceiling.
            0 => CacheConfig::disabled(),
            ms => CacheConfig::default().ceiling(Duration::from_millis(ms)),
        }
    }

    /// How long audit events are kept (`--audit-retention-days`); `None`: forever.
    pub(crate) fn audit_retention(&self) -> Option<Duration> {
        match self.audit_retention_days {
            0 => None,
            days => Some(Duration::from_secs(days.saturating_mul(24 * 60 * 60))),
        }
    }

    /// The trusted proxies from `--trusted-proxies` and `--forwarded-header`.
    pub(crate) fn trusted_proxies(&self) -> Result<TrustedProxies, StartupError> {
        let header: ForwardedHeader = self
            .forwarded_header
            .parse()
            .or_else(|e| fail(format!("--forwarded-header: {e}")))?;
        let proxies = TrustedProxies::parse(&self.trusted_proxies)
            .or_else(|e| fail(format!("--trusted-proxies: {e}")))?;
        Ok(proxies.reading(header))
    }
}

/// Token and secret settings (environment only: secrets never belong on a command line).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AuthArgs {
    /// JWT `iss`, issued and required.
    #[arg(
        long,
        env = "NEXORA_JWT_ISSUER",
        default_value = "nexora",
        global = true
    )]
    pub(crate) jwt_issuer: String,

    /// JWT `aud`, issued and required.
    #[arg(
        long,
        env = "NEXORA_JWT_AUDIENCE",
        default_value = "nexora-api",
        global = true
    )]
    pub(crate) jwt_audience: String,

    /// Access-token lifetime, in seconds.
    #[arg(
        long,
        env = "NEXORA_ACCESS_TOKEN_TTL_SECS",
        default_value_t = 900,
        global = true
    )]
    pub(crate) access_token_ttl_secs: u64,

    /// Clock skew allowed when checking a token's expiry and not-before times, in seconds: a
    /// token is still accepted this long after it expired. Defaults to 30.
    #[arg(
        long,
        env = "NEXORA_JWT_LEEWAY_SECS",
        default_value_t = 30,
        global = true
    )]
    pub(crate) jwt_leeway_secs: u64,

    /// Longest lifetime of a token derived from an API key (`POST /api/auth/token`), in
    /// seconds; a request may ask for less, never more, and never beyond the key's own life.
    #[arg(
        long,
        env = "NEXORA_DERIVED_TOKEN_MAX_TTL_SECS",
        default_value_t = 900,
        global = true
    )]
    pub(crate) derived_token_max_ttl_secs: u64,

    /// How long a WebSocket ticket (`POST /api/auth/ws-tickets`) is accepted, in seconds.
    #[arg(
        long,
        env = "NEXORA_WS_TICKET_TTL_SECS",
        default_value_t = 30,
        global = true
    )]
    pub(crate) ws_ticket_ttl_secs: u64,

    /// PEM file of an asymmetric signing key (PKCS#8; PKCS#1 for RSA). When set, tokens are
    /// signed with it and `/.well-known/jwks.json` publishes its public key; HS256 tokens made
    /// with the shared secret are still accepted.
    #[arg(long, env = "NEXORA_JWT_PRIVATE_KEY_FILE", global = true)]
    pub(crate) jwt_private_key_file: Option<PathBuf>,

    /// Algorithm of the signing key file: `ES256`, `EdDSA` or `RS256`.
    #[arg(
        long,
        env = "NEXORA_JWT_ALGORITHM",
        default_value = "ES256",
        global = true
    )]
    pub(crate) jwt_algorithm: String,

    /// `kid` of the signing key file.
    #[arg(long, env = "NEXORA_JWT_KEY_ID", default_value = "k1", global = true)]
    pub(crate) jwt_key_id: String,
}

pub(crate) const MIN_SECRET_LEN: usize = 32;

/// Resolves the database URL (default: SQLite in the data directory).
pub(crate) fn database_url(common: &CommonArgs) -> DatabaseUrl {
    match &common.database {
        Some(url) => url.clone(),
        None => DatabaseUrl::from(format!(
            "sqlite://{}",
            common.data_dir.join("nexora.db").display()
        )),
    }
}

/// Creates the data directory (mode 0700) if it is missing, and tightens an existing one; see
/// [`private_files`].
pub(crate) fn ensure_data_dir(dir: &Path) -> Result<(), StartupError> {
    private_files::ensure_dir(dir, Existing::Tighten).or_else(|e| {
        fail(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })
}

/// Reads a secret from `var`, or from `<data_dir>/<file>`, generating that file (mode 0600)
/// with 48 random bytes the first time, with a warning: a restart keeps the same secret, so
/// nobody is logged out and every key keeps working. An existing file readable by others is
/// tightened to 0600, with a warning.
pub(crate) fn load_secret(
    var: &str,
    data_dir: &Path,
    file: &str,
) -> Result<SecretBytes, StartupError> {
    if let Ok(value) = std::env::var(var) {
        if value.len() < MIN_SECRET_LEN {
            return fail(format!(
                "{var} is too short: at least {MIN_SECRET_LEN} bytes are required"
            ));
        }
        return Ok(SecretBytes::new(value.into_bytes()));
    }
    ensure_data_dir(data_dir)?;
    let path = data_dir.join(file);
    private_files::tighten_if_present(&path);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim();
        if text.len() < MIN_SECRET_LEN {
            return fail(format!(
                "{} is too short: at least {MIN_SECRET_LEN} bytes are required",
                path.display()
            ));
        }
        return Ok(SecretBytes::new(text.as_bytes().to_vec()));
    }
    let random =
        SecretBytes::generate(48).or_else(|e| fail(format!("cannot generate {file}: {e}")))?;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random.expose());
    write_private(&path, &text)
        .or_else(|e| fail(format!("cannot write {}: {e}", path.display())))?;
    tracing::warn!(
        file = %path.display(),
        "{var} is not set: generated a random secret and stored it in the data directory; \
         set {var} explicitly when several instances share one database"
    );
    Ok(SecretBytes::new(text.into_bytes()))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

/// The server's peppers: `NEXORA_KEY_PEPPER` (or the generated one) as version 1.
pub(crate) fn peppers(common: &CommonArgs) -> Result<PepperRing, StartupError> {
    PepperRing::new(1, pepper(common)?).or_else(|e| fail(format!("NEXORA_KEY_PEPPER: {e}")))
}

/// The key pepper itself (`NEXORA_KEY_PEPPER`, or the generated one).
pub(crate) fn pepper(common: &CommonArgs) -> Result<SecretBytes, StartupError> {
    load_secret("NEXORA_KEY_PEPPER", &common.data_dir, "key-pepper")
}

/// The rate limits and login throttle shared through Redis.
pub(crate) type SharedLimits = (
    std::sync::Arc<nexora_auth_redis::RedisLimits>,
    std::sync::Arc<nexora_auth_redis::RedisThrottle>,
);

/// The Redis-backed rate limits and login throttle of `--limits-redis-url`, if given. The
/// throttle's email subjects are keyed by a key derived from the pepper, which every instance
/// shares.
pub(crate) fn shared_limits(
    common: &CommonArgs,
    args: &ServeArgs,
    policy: nexora_auth::ThrottlePolicy,
) -> Result<Option<SharedLimits>, StartupError> {
    use nexora_auth_redis::{Outage, RedisConfig, RedisLimits, RedisThrottle};
    let Some(url) = &args.limits_redis_url else {
        return Ok(None);
    };
    let connection = RedisConfig::new(url.clone())
        .key_prefix(args.limits_redis_prefix.clone())
        .connect()
        // The error names the URL's problem, never its password.
        .or_else(|e| fail(format!("--limits-redis-url: {e}")))?;
    let outage = if args.limits_redis_fail_closed {
        Outage::FailClosed
    } else {
        Outage::FallBack
    };
    tracing::info!(
        redis = %connection.server(),
        "rate limits and the login throttle are shared through Redis"
    );
    let key = nexora_auth::throttle::ThrottleKey::derive(pepper(common)?.expose())
        .or_else(|e| fail(format!("throttle key: {e}")))?;
    Ok(Some((
        std::sync::Arc::new(RedisLimits::new(connection.clone()).on_outage(outage)),
        std::sync::Arc::new(RedisThrottle::new(connection, policy, key).on_outage(outage)),
    )))
}

/// The token authority from the settings.
pub(crate) fn token_authority(
    common: &CommonArgs,
    args: &AuthArgs,
) -> Result<TokenAuthority, StartupError> {
    let secret = load_secret("NEXORA_JWT_SECRET", &common.data_dir, "jwt-secret")?;
    let keys = match &args.jwt_private_key_file {
        None => JwtKeys::hs256(&secret).or_else(|e| fail(format!("NEXORA_JWT_SECRET: {e}")))?,
        Some(path) => {
            // HS256 is the shared-secret ring above, not a private key file.
            let alg = match args.jwt_algorithm.parse::<JwtAlgorithm>() {
                Ok(JwtAlgorithm::Hs256) | Err(_) => {
                    return fail(format!(
                        "NEXORA_JWT_ALGORITHM: unsupported algorithm {:?} (ES256, EdDSA, RS256)",
                        args.jwt_algorithm
                    ));
                }
                Ok(alg) => alg,
            };
            let pem = std::fs::read(path)
                .or_else(|e| fail(format!("cannot read {}: {e}", path.display())))?;
            JwtKeys::from_private_pem(alg, &args.jwt_key_id, &pem)
                .and_then(|keys| keys.with_hs256_verification(&secret))
                .or_else(|e| fail(format!("{}: {e}", path.display())))?
        }
    };
    let config = JwtConfig::new(args.jwt_issuer.clone(), args.jwt_audience.clone())
        .access_token_ttl(Duration::from_secs(args.access_token_ttl_secs))
        .leeway(Duration::from_secs(args.jwt_leeway_secs));
    TokenAuthority::new(keys, config).or_else(|e| fail(format!("JWT configuration: {e}")))
}
