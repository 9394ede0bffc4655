//! [`Authenticator`]: the service server code calls.

mod audit;
mod clock;
mod derived;
mod keys;
mod leak;
mod limits;
mod login;
mod principal;
mod tickets;
mod users;
mod watch;

pub use clock::{Clock, SystemClock};
pub use derived::{DEFAULT_DERIVED_TOKEN_MAX_TTL, DerivedToken, TokenRequest};
pub use keys::{CreatedKey, KeyInfo, MAX_KEY_NAME_LEN, NewKey, RevokeOptions, RotateOptions};
pub use leak::{
    LeakOutcome, LeakPolicy, LeakReport, MAX_LEAK_SOURCE_LEN, MAX_LEAK_URL_LEN, NotLive,
};
pub use limits::{DEFAULT_CREDIT_LEASE_BLOCK, KeyChanges};
pub use login::LoginResponse;
pub use principal::{Credential, Principal};
pub use tickets::{DEFAULT_TICKET_TTL, IssuedTicket};
pub use users::{MAX_EMAIL_LEN, UserInfo, normalize_email};

use std::{
    fmt,
    sync::{Arc, Weak, atomic::AtomicI64},
    time::Duration,
};

use crate::{
    ApiKey, AuthError, ConfigError, InvalidReason, KeyCredentials, KeyId, LimitBackend,
    PasswordHasher, PasswordPolicy, PepperRing, RateLimit, Scopes, TokenAuthority,
    audit::AuditStore,
    cache::{CacheConfig, CachedKey, Lookup, UserStatus, VerificationCache},
    key::{KEY_LEN, has_key_prefix},
    last_used::LastUsedTracker,
    store::{KeyStore, OwnerId, UserStore},
    throttle::{LoginThrottle, PossessionLimit, Throttle, ThrottleBackend, ThrottlePolicy},
    ticket::TicketStore,
};

/// Builder for [`Authenticator`]. Every default is on its setter.
pub struct AuthenticatorBuilder {
    keys: Arc<dyn KeyStore>,
    peppers: PepperRing,
    users: Option<Arc<dyn UserStore>>,
    tokens: Option<TokenAuthority>,
    password_policy: PasswordPolicy,
    throttle_policy: ThrottlePolicy,
    throttle_backend: Option<Arc<dyn ThrottleBackend>>,
    possession_limit: PossessionLimit,
    last_used_interval: Duration,
    clock: Arc<dyn Clock>,
    cache: CacheConfig,
    audit: Option<Arc<dyn AuditStore>>,
    tickets: Option<Arc<dyn TicketStore>>,
    ticket_ttl: Duration,
    derived_max_ttl: Duration,
    rate_backend: Option<Arc<dyn LimitBackend>>,
    owner_rate_default: Option<RateLimit>,
    credit_lease_block: u64,
}

impl AuthenticatorBuilder {
    /// Where rate limits are counted (see [`crate::limits`]). Defaults to an
    /// [`InProcessLimits`](crate::InProcessLimits) table: exact on one instance, `N ×` the
    /// limit across `N`. `nexora-auth-redis` shares the count between instances.
    pub fn rate_limits(mut self, backend: Arc<dyn LimitBackend>) -> Self {
        self.rate_backend = Some(backend);
        self
    }

    /// The rate limit of every owner who has none of their own (see
    /// [`Authenticator::set_owner_rate_limit`]), shared by all of the owner's keys and tokens.
    /// Without a user store it applies to every owner. Defaults to none.
    pub fn owner_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.owner_rate_default = limit;
        self
    }

    /// How many credits an instance takes from the store beyond a request's cost, to spend
    /// locally (see [`crate::limits`]): the store is written once per block rather than once
    /// per request, and a crash loses at most a block per key. Defaults to
    /// [`DEFAULT_CREDIT_LEASE_BLOCK`], 10; 0 writes the store on every metered request.
    pub fn credit_lease_block(mut self, block: u64) -> Self {
        self.credit_lease_block = block;
        self
    }

    /// Where the audit trail is kept (see [`crate::audit`]). Defaults to none: every event is
    /// still emitted as a `tracing` event under [`AUDIT_TARGET`](crate::audit::AUDIT_TARGET),
    /// and [`Authenticator::audit_events`] answers
    /// [`Unavailable::NoAuditStore`](crate::Unavailable::NoAuditStore).
    pub fn audit(mut self, store: Arc<dyn AuditStore>) -> Self {
        self.audit = Some(store);
        self
    }

    /// The store of WebSocket tickets ([`Authenticator::issue_ticket`]), shared by every
    /// instance that redeems them. Defaults to none: issuing and redeeming tickets then
    /// answer [`Unavailable::NoTicketStore`](crate::Unavailable::NoTicketStore).
    /// [`MemoryTicketStore`](crate::MemoryTicketStore) serves a single process.
    pub fn ws_tickets(mut self, store: Arc<dyn TicketStore>) -> Self {
        self.tickets = Some(store);
        self
    }

    /// How long a WebSocket ticket is accepted after it is issued (never longer than the
    /// credential that asked for it). Defaults to [`DEFAULT_TICKET_TTL`], 30 seconds; at
    /// least 1 second.
    pub fn ws_ticket_ttl(mut self, ttl: Duration) -> Self {
        self.ticket_ttl = ttl;
        self
    }

    /// The longest lifetime of a token derived from a key ([`Authenticator::derive_token`]).
    /// Defaults to [`DEFAULT_DERIVED_TOKEN_MAX_TTL`], 15 minutes; at least 1 second, and no
    /// longer than the token authority's
    /// [`JwtConfig::max_lifetime`](crate::JwtConfig::max_lifetime) (24 hours by default).
    pub fn derived_token_max_ttl(mut self, max: Duration) -> Self {
        self.derived_max_ttl = max;
        self
    }

    /// The verification cache (see [`crate::cache`] for what it keeps and the bound it holds).
    /// Defaults to [`CacheConfig::default`]: on, with a 5-second ceiling; a store without a
    /// change feed is still read on every request.
    pub fn verification_cache(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// Failed-login throttling. Defaults to [`ThrottlePolicy::default`]: 5 failures per email
    /// or 20 per client address within 15 minutes lock it for 15 minutes. Not used when a
    /// [`login_throttle_backend`](Self::login_throttle_backend) is set (it has its own).
    pub fn login_throttle(mut self, policy: ThrottlePolicy) -> Self {
        self.throttle_policy = policy;
        self
    }

    /// Where failed logins are counted (see [`crate::throttle`]), under the backend's own
    /// policy. Defaults to none: an in-process table under
    /// [`login_throttle`](Self::login_throttle)'s policy, exact on one instance and `N ×` the
    /// policy across `N`. `nexora-auth-redis` shares the counts between instances.
    pub fn login_throttle_backend(mut self, backend: Arc<dyn ThrottleBackend>) -> Self {
        self.throttle_backend = Some(backend);
        self
    }

    /// The per-client limit of [`Authenticator::revoke_by_possession`]. Defaults to
    /// [`PossessionLimit::default`]: 10 requests per client address per minute.
    pub fn possession_limit(mut self, limit: PossessionLimit) -> Self {
        self.possession_limit = limit;
        self
    }

    /// The user store for password login. Defaults to none: [`Authenticator::login`] and
    /// [`Authenticator::register_user`] then answer [`Unavailable::NoUserStore`](crate::Unavailable::NoUserStore), and API keys and JWTs work alone
    /// (for applications with their own user system).
    pub fn users(mut self, users: Arc<dyn UserStore>) -> Self {
        self.users = Some(users);
        self
    }

    /// JWT issuing and verification. Defaults to none: only API keys authenticate.
    pub fn tokens(mut self, tokens: TokenAuthority) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Password rules. Defaults to [`PasswordPolicy::default`] (argon2id m=19456, t=2, p=1).
    pub fn password_policy(mut self, policy: PasswordPolicy) -> Self {
        self.password_policy = policy;
        self
    }

    /// At most one `last_used_at` write per key per this interval. Defaults to 5 seconds.
    pub fn last_used_interval(mut self, interval: Duration) -> Self {
        self.last_used_interval = interval;
        self
    }

    /// The time source for everything time-dependent: key expiry, JWT issuance and `exp` /
    /// `nbf` / `iat` checks (the token authority is given this clock), the login throttle and
    /// the last-used batches. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the service (computes the password hasher's dummy hash: one argon2 run).
    pub fn build(self) -> Result<Authenticator, ConfigError> {
        if self.ticket_ttl.as_secs() == 0 {
            return Err(ConfigError::Invalid(
                "the WebSocket ticket lifetime must be at least 1 second",
            ));
        }
        if self.derived_max_ttl.as_secs() == 0
            || self
                .tokens
                .as_ref()
                .is_some_and(|t| self.derived_max_ttl > t.config().max_lifetime_duration())
        {
            return Err(ConfigError::Invalid(
                "the derived-token lifetime must be 1 second to the JWT maximum lifetime",
            ));
        }
        let passwords = PasswordHasher::new(self.password_policy)?;
        let cache = VerificationCache::new(self.cache);
        cache.set_key_freshness(self.keys.watch_changes(cache.key_feed()));
        if let Some(users) = &self.users {
            cache.set_user_freshness(users.watch_user_changes(cache.user_feed()));
        }
        Ok(Authenticator {
            inner: Arc::new(Inner {
                keys: self.keys,
                users: self.users,
                peppers: self.peppers,
                tokens: self.tokens.map(|t| t.with_clock(Arc::clone(&self.clock))),
                passwords,
                throttle: match self.throttle_backend {
                    Some(backend) => LoginThrottle::Shared(backend),
                    None => LoginThrottle::InProcess(Throttle::new(self.throttle_policy)?),
                },
                possession: Throttle::for_possession(&self.possession_limit)?,
                last_used: LastUsedTracker::new(self.last_used_interval),
                clock: self.clock,
                cache,
                audit: audit::Trail::new(self.audit),
                tickets: self.tickets,
                ticket_ttl: self.ticket_ttl,
                derived_max_ttl: self.derived_max_ttl,
                last_ticket_prune: AtomicI64::new(i64::MIN),
                rates: match self.rate_backend {
                    Some(backend) => limits::Rates::Shared(backend),
                    None => limits::Rates::InProcess(crate::InProcessLimits::new()),
                },
                owner_rate_default: self.owner_rate_default,
                credit_lease_block: self.credit_lease_block,
                leases: dashmap::DashMap::new(),
            }),
        })
    }
}

struct Inner {
    keys: Arc<dyn KeyStore>,
    users: Option<Arc<dyn UserStore>>,
    peppers: PepperRing,
    tokens: Option<TokenAuthority>,
    passwords: PasswordHasher,
    throttle: LoginThrottle,
    /// Revoke-by-possession requests per client: a table of its own (see [`crate::throttle`]).
    possession: Throttle,
    last_used: LastUsedTracker,
    clock: Arc<dyn Clock>,
    cache: VerificationCache,
    audit: audit::Trail,
    tickets: Option<Arc<dyn TicketStore>>,
    ticket_ttl: Duration,
    derived_max_ttl: Duration,
    /// When expired tickets were last pruned (Unix seconds).
    last_ticket_prune: AtomicI64,
    rates: limits::Rates,
    owner_rate_default: Option<RateLimit>,
    credit_lease_block: u64,
    leases: dashmap::DashMap<KeyId, Arc<tokio::sync::Mutex<limits::Lease>>>,
}

/// The authentication service: keys, tokens, passwords, over pluggable stores.
///
/// Cheap to clone (shared). See the crate docs for an example.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("peppers", &self.inner.peppers)
            .field("tokens", &self.inner.tokens)
            .field("users", &self.inner.users.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Starts a builder over a key store and the server's peppers.
    pub fn builder(keys: Arc<dyn KeyStore>, peppers: PepperRing) -> AuthenticatorBuilder {
        AuthenticatorBuilder {
            keys,
            peppers,
            users: None,
            tokens: None,
            password_policy: PasswordPolicy::default(),
            throttle_policy: ThrottlePolicy::default(),
            throttle_backend: None,
            possession_limit: PossessionLimit::default(),
            last_used_interval: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            cache: CacheConfig::default(),
            audit: None,
            tickets: None,
            ticket_ttl: DEFAULT_TICKET_TTL,
            derived_max_ttl: DEFAULT_DERIVED_TOKEN_MAX_TTL,
            rate_backend: None,
            owner_rate_default: None,
            credit_lease_block: DEFAULT_CREDIT_LEASE_BLOCK,
        }
    }

    /// The JWT authority, if configured (for `/.well-known/jwks.json`).
    pub fn tokens(&self) -> Option<&TokenAuthority> {
        self.inner.tokens.as_ref()
    }

    /// The password hasher.
    pub fn passwords(&self) -> &PasswordHasher {
        &self.inner.passwords
    }

    /// Whether a [`UserStore`] is configured ([`AuthenticatorBuilder::users`]): without one,
    /// owners are the application's opaque ids and [`Authenticator::user`] has nothing to
    /// read.
    pub fn has_users(&self) -> bool {
        self.inner.users.is_some()
    }

    /// The longest credential [`Authenticator::authenticate`] can accept, in bytes: the JWT
    /// size cap ([`JwtConfig::max_token_len`](crate::JwtConfig::max_token_len), 8 KiB by
    /// default) with a token authority, else the length of an `nxr_` key. A transport can
    /// refuse anything longer before reading it further; this is the one setting it follows.
    pub fn max_credential_len(&self) -> usize {
        self.inner
            .tokens
            .as_ref()
            .map_or(0, |tokens| tokens.config().max_token_len_bytes())
            .max(KEY_LEN)
    }

    /// Authenticates a bearer token: an `nxr_` API key or a JWT access token.
    ///
    /// Anything starting with `nxr_` is treated as a key (and malformed keys are refused
    /// without a store call); anything else as a JWT.
    ///
    /// With a user store configured, every credential is checked against its user on every
    /// request: a token whose `sub` (or a key whose owner) names no user, or a disabled one, is
    /// [`InvalidReason::UnknownUser`] / [`InvalidReason::UserDisabled`] (as bad as any bad
    /// token). The principal's scopes are then capped at the user's current scopes: a JWT
    /// without a `scope` claim carries all of them, one with a claim the intersection, and a
    /// key its own scopes intersected with them.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        if has_key_prefix(token) {
            let key = ApiKey::parse(token)
                .map_err(|e| AuthError::InvalidToken(InvalidReason::MalformedKey(e)))?;
            return self.authenticate_key(&key).await;
        }
        match &self.inner.tokens {
            Some(tokens) => {
                let verified = tokens.verify(token).map_err(AuthError::InvalidToken)?;
                let user = self.live_user_scopes(&verified.subject).await?;
                if let Some(from) = verified.derived_from {
                    // The key through the cache: no store round trip while it holds the key.
                    let record = self.key_credentials(from.key).await?;
                    return self.derived_principal(
                        verified,
                        from,
                        record.as_deref().map(std::ops::Deref::deref),
                        user,
                    );
                }
                let owner_rate = user.as_ref().and_then(|u| u.rate_limit);
                let scopes = match (user.map(|u| u.scopes), verified.scopes) {
                    (None, claimed) => claimed.unwrap_or_else(Scopes::empty),
                    (Some(current), None) => current,
                    (Some(current), Some(claimed)) => claimed.intersection(&current),
                };
                Ok(Principal::new(
                    verified.subject,
                    Credential::AccessToken { jti: verified.jti },
                    scopes,
                )
                .with_owner_rate(owner_rate)
                .with_credential_expiry(
                    i64::try_from(verified.expires_at)
                        .ok()
                        .and_then(|exp| time::OffsetDateTime::from_unix_timestamp(exp).ok()),
                ))
            }
            None => Err(AuthError::InvalidToken(InvalidReason::UnrecognisedFormat)),
        }
    }

    /// Authenticates a parsed API key (see [`Authenticator::authenticate`]).
    pub async fn authenticate_key(&self, key: &ApiKey) -> Result<Principal, AuthError> {
        // The hot path — the key and its user in the cache — answers without an await; the
        // store path is boxed, so the future every request builds and moves stays small.
        if let Some(answer) = self.authenticate_key_cached(key) {
            return answer;
        }
        Box::pin(self.authenticate_key_from_store(key)).await
    }

    /// [`Authenticator::authenticate_key`] from the cache alone: `None` when the key's record
    /// or its user's status must be read from a store.
    fn authenticate_key_cached(&self, key: &ApiKey) -> Option<Result<Principal, AuthError>> {
        let record = match self.inner.cache.key(key.id()) {
            Lookup::Hit(Some(record)) => record,
            Lookup::Hit(None) => {
                return Some(Err(AuthError::InvalidToken(InvalidReason::UnknownKey)));
            }
            Lookup::Miss(_) => return None,
        };
        let now = self.inner.clock.now();
        let judged = self
            .match_secret(key, &record, now)
            .and_then(|matched| key_state(&record, now).map(|()| matched));
        let matched = match judged {
            Ok(matched) => matched,
            Err(e) => return Some(Err(e)),
        };
        let user = self.cached_user_scopes(&record.owner)?;
        Some(user.map(|user| {
            if record.use_due(now.unix_timestamp(), self.inner.last_used.interval_secs()) {
                self.inner.last_used.note(record.id, now);
            }
            key_principal(&record, matched, user)
        }))
    }

    async fn authenticate_key_from_store(&self, key: &ApiKey) -> Result<Principal, AuthError> {
        let record = self
            .key_credentials(key.id())
            .await?
            .ok_or(AuthError::InvalidToken(InvalidReason::UnknownKey))?;
        let now = self.inner.clock.now();
        let matched = self.match_secret(key, &record, now)?;
        key_state(&record, now)?;
        let user = self.live_user_scopes(&record.owner).await?;
        self.inner.last_used.note(record.id, now);
        Ok(key_principal(&record, matched, user))
    }

    /// Which stored digest `key` matches: the current one, or the previous one in its grace
    /// period. Compare first, judge state second: an unauthenticated caller learns nothing
    /// about whether a key id is revoked or expired.
    fn match_secret(
        &self,
        key: &ApiKey,
        record: &KeyCredentials,
        now: time::OffsetDateTime,
    ) -> Result<crate::StoredDigest, AuthError> {
        let peppers = &self.inner.peppers;
        if peppers.verify(key, &record.digest) {
            return Ok(record.digest);
        }
        match record.previous {
            Some(p) if p.valid_until > now && peppers.verify(key, &p.digest) => Ok(p.digest),
            _ => Err(AuthError::InvalidToken(InvalidReason::SecretMismatch)),
        }
    }

    /// A key's record, from the verification cache or the store.
    async fn key_credentials(&self, id: KeyId) -> Result<Option<Arc<CachedKey>>, AuthError> {
        let cache = &self.inner.cache;
        let ticket = match cache.key(id) {
            Lookup::Hit(found) => return Ok(found),
            Lookup::Miss(ticket) => ticket,
        };
        let found = self
            .inner
            .keys
            .find_credentials(id)
            .await?
            .map(|c| Arc::new(CachedKey::new(c)));
        cache.fill_key(ticket, id, found.clone());
        Ok(found)
    }

    /// The live-user rule: `Ok(None)` without a user store; the user's current scopes when the
    /// user exists and is enabled; a bad credential otherwise.
    async fn live_user_scopes(&self, owner: &OwnerId) -> Result<Option<LiveUser>, AuthError> {
        if let Some(answer) = self.cached_user_scopes(owner) {
            return answer;
        }
        Box::pin(self.user_scopes_from_store(owner)).await
    }

    /// The live-user rule from the cache alone: `None` when the user must be read.
    fn cached_user_scopes(&self, owner: &OwnerId) -> Option<Result<Option<LiveUser>, AuthError>> {
        if self.inner.users.is_none() {
            return Some(Ok(None));
        }
        match self.inner.cache.user(owner) {
            Lookup::Hit(status) => Some(live_user(status)),
            Lookup::Miss(_) => None,
        }
    }

    async fn user_scopes_from_store(&self, owner: &OwnerId) -> Result<Option<LiveUser>, AuthError> {
        if self.inner.users.is_none() {
            return Ok(None);
        }
        live_user(self.user_status(owner).await?)
    }

    /// A user's status from the verification cache, or the user store (filling the cache).
    /// `None`: no such user, or no user store.
    async fn user_status(&self, owner: &OwnerId) -> Result<Option<UserStatus>, AuthError> {
        let Some(users) = &self.inner.users else {
            return Ok(None);
        };
        let cache = &self.inner.cache;
        match cache.user(owner) {
            Lookup::Hit(status) => Ok(status),
            Lookup::Miss(ticket) => {
                let status = users.find_user(owner).await?.map(|user| UserStatus {
                    disabled: user.disabled,
                    scopes: user.scopes,
                    rate_limit: user.rate_limit,
                });
                cache.fill_user(ticket, owner, status.clone());
                Ok(status)
            }
        }
    }

    /// Writes the queued `last_used_at` times to the store in one batch. Returns how many.
    /// On failure the batch is kept for the next flush.
    pub async fn flush_last_used(&self) -> Result<usize, AuthError> {
        let batch = self.inner.last_used.take();
        if batch.is_empty() {
            return Ok(0);
        }
        match self.inner.keys.record_last_used(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                self.inner.last_used.requeue(batch);
                Err(e.into())
            }
        }
    }

    /// Starts a background task (on the current Tokio runtime) that flushes `last_used_at`
    /// every `every`. Call [`LastUsedFlusher::shutdown`] on the way out for a final flush.
    pub fn spawn_last_used_flusher(&self, every: Duration) -> LastUsedFlusher {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = &mut stop_rx => break,
                }
                let Some(inner) = weak.upgrade() else { break };
                if let Err(e) = (Authenticator { inner }).flush_last_used().await {
                    tracing::warn!(error = %e, "last_used flush failed; will retry");
                }
            }
        });
        LastUsedFlusher {
            authenticator: self.clone(),
            stop: Some(stop_tx),
            task: Some(task),
        }
    }
}

/// How a key has ended, if it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyEnd {
    Revoked,
    Expired,
}

/// Whether a key has ended at `now`: revoked, or expired (`expires_at <= now`).
fn key_end(record: &KeyCredentials, now: time::OffsetDateTime) -> Option<KeyEnd> {
    if record.revoked_at.is_some() {
        Some(KeyEnd::Revoked)
    } else if record.expires_at.is_some_and(|at| at <= now) {
        Some(KeyEnd::Expired)
    } else {
        None
    }
}

/// A key's own state at `now`: revoked or expired keys are bad credentials.
fn key_state(record: &KeyCredentials, now: time::OffsetDateTime) -> Result<(), AuthError> {
    match key_end(record, now) {
        None => Ok(()),
        Some(KeyEnd::Revoked) => Err(AuthError::InvalidToken(InvalidReason::Revoked)),
        Some(KeyEnd::Expired) => Err(AuthError::InvalidToken(InvalidReason::Expired)),
    }
}

/// The principal of a live key whose secret matched `matched` (the current digest, or the
/// previous one in its grace period), capped at its user's current scopes (`None`: no user
/// store).
fn key_principal(
    record: &KeyCredentials,
    matched: crate::StoredDigest,
    user: Option<LiveUser>,
) -> Principal {
    let owner_rate = user.as_ref().and_then(|u| u.rate_limit);
    let scopes = match user {
        Some(current) => record.scopes.intersection(&current.scopes),
        None => record.scopes.clone(),
    };
    let valid_until = match record.previous {
        Some(p) if p.digest == matched && p.digest != record.digest => Some(
            record
                .expires_at
                .map_or(p.valid_until, |at| at.min(p.valid_until)),
        ),
        _ => record.expires_at,
    };
    Principal::new(record.owner.clone(), Credential::ApiKey(record.id), scopes)
        .with_expiry(record.expires_at)
        .with_credential_expiry(valid_until)
        .with_digest(matched)
        .with_key_limits(principal::KeyLimits {
            rate: record.rate_limit,
            metered: record.metered,
        })
        .with_owner_rate(owner_rate)
}

/// A live user as a credential sees it: their current scopes and their own rate limit.
#[derive(Debug, Clone)]
pub(crate) struct LiveUser {
    pub(crate) scopes: Scopes,
    pub(crate) rate_limit: Option<RateLimit>,
}

/// The live-user rule over a user's status (`None`: no such user).
fn live_user(status: Option<UserStatus>) -> Result<Option<LiveUser>, AuthError> {
    match status {
        Some(user) if !user.disabled => Ok(Some(LiveUser {
            scopes: user.scopes,
            rate_limit: user.rate_limit,
        })),
        Some(_) => Err(AuthError::InvalidToken(InvalidReason::UserDisabled)),
        None => Err(AuthError::InvalidToken(InvalidReason::UnknownUser)),
    }
}

/// Handle of the background `last_used_at` flusher.
#[derive(Debug)]
pub struct LastUsedFlusher {
    authenticator: Authenticator,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LastUsedFlusher {
    /// Stops the task and flushes what is left.
    pub async fn shutdown(mut self) -> Result<usize, AuthError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.authenticator.flush_last_used().await
    }
}

impl Drop for LastUsedFlusher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
