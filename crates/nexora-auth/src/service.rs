//! [`Authenticator`]: the service server code calls.

use std::{
    fmt,
    net::IpAddr,
    sync::{Arc, Weak},
    time::Duration,
};

use serde::Serialize;
use time::OffsetDateTime;

use crate::Unavailable;
use crate::{
    AccessToken, ApiKey, AuthError, ConfigError, Field, InvalidInput, InvalidReason, KeyId,
    PasswordHasher, PasswordPolicy, PepperRing, Problem, Scopes, SecretString, TokenAuthority,
    key::{KEY_LEN, has_key_prefix},
    last_used::LastUsedTracker,
    policy,
    store::{
        KeyRecord, KeyStore, OwnerId, RevokeOutcome, RotateOutcome, Rotation, StoreError,
        UserRecord, UserStore,
    },
    throttle::{LoginThrottle, ThrottlePolicy},
};

/// Longest key name accepted, in characters.
pub const MAX_KEY_NAME_LEN: usize = 100;
/// Longest email accepted, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// A source of the current time, replaceable in tests.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Which credential authenticated a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// An `nxr_` API key.
    ApiKey(KeyId),
    /// A JWT access token, with its `jti` if it had one.
    AccessToken {
        /// The token id.
        jti: Option<String>,
    },
    /// Built by the application itself (an admin command, a test), not from a request.
    Internal,
}

/// Who is calling: the owner, the credential used, what it may do and how long it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    owner: OwnerId,
    credential: Credential,
    scopes: Scopes,
    expires_at: Option<OffsetDateTime>,
}

impl Principal {
    /// Builds a principal (for admin code and tests; requests get theirs from
    /// [`Authenticator::authenticate`]).
    /// The principal has no lifetime of its own ([`Principal::expires_at`] is `None`).
    pub fn new(owner: OwnerId, credential: Credential, scopes: Scopes) -> Self {
        Self {
            owner,
            credential,
            scopes,
            expires_at: None,
        }
    }

    /// Sets the lifetime that bounds what this principal may reach and create (see
    /// [`Principal::expires_at`]).
    #[must_use]
    pub fn with_expiry(mut self, expires_at: Option<OffsetDateTime>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// When the credential behind this principal stops working, as far as it bounds what the
    /// principal may reach and create: an API key's expiry. `None` for keys without expiry and
    /// for user sessions (a session's keys are meant to outlive it).
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.expires_at
    }

    /// The API key behind this principal, if a key authenticated it.
    pub fn key_id(&self) -> Option<KeyId> {
        match self.credential {
            Credential::ApiKey(id) => Some(id),
            _ => None,
        }
    }

    /// The owner (user id, or the application's opaque id).
    pub fn owner(&self) -> &OwnerId {
        &self.owner
    }

    /// The credential presented.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// `Ok` if the principal holds `scope`, else [`AuthError::InsufficientScope`] (403).
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: scope.to_owned(),
            })
        }
    }
}

/// A request to create a key.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[non_exhaustive]
pub struct NewKey {
    /// The key's label. 1 to [`MAX_KEY_NAME_LEN`] characters after trimming.
    pub name: String,
    /// Requested scopes; `None` means "all of the creator's". Must be a subset of the
    /// creator's scopes.
    #[serde(default)]
    pub scopes: Option<Scopes>,
    /// Optional expiry; must be in the future. A key created by a key gets at most its
    /// creator's expiry (see [`crate::policy::grant`]).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl NewKey {
    /// A request with just a name (scopes inherited, no expiry).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scopes: None,
            expires_at: None,
        }
    }

    /// Sets the requested scopes.
    pub fn with_scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// Sets an expiry.
    pub fn expiring_at(mut self, at: OffsetDateTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// The public view of a key: what list endpoints return. Never the key, its secret or digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key id.
    pub id: KeyId,
    /// The label.
    pub name: String,
    /// Non-secret fragment, e.g. `nxr_4fGh2k…Xy3Q`.
    pub display: String,
    /// Granted scopes.
    pub scopes: Scopes,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last use, recorded at most once per interval (RFC 3339 or `null`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Expiry (RFC 3339 or `null`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// What created the key: `{"kind": "user"}` (a login session or the application) or
    /// `{"kind": "key", "key_id": "…"}` (another key, which a cascading revoke follows).
    #[serde(serialize_with = "serialize_created_by")]
    pub created_by: Option<KeyId>,
}

fn serialize_created_by<S: serde::Serializer>(
    created_by: &Option<KeyId>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum CreatedBy {
        User,
        Key { key_id: KeyId },
    }
    match *created_by {
        None => CreatedBy::User,
        Some(key_id) => CreatedBy::Key { key_id },
    }
    .serialize(serializer)
}

impl From<&KeyRecord> for KeyInfo {
    fn from(r: &KeyRecord) -> Self {
        Self {
            id: r.id,
            name: r.name.clone(),
            display: r.display.clone(),
            scopes: r.scopes.clone(),
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            created_by: r.created_by,
        }
    }
}

/// A key just created or rotated: the only time its full text is available.
///
/// Serialises as `{id, name, key, display, scopes, created_at, last_used_at, expires_at,
/// created_by}`.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// The public view.
    pub info: KeyInfo,
    /// The full key. Shown once.
    pub key: ApiKey,
}

impl Serialize for CreatedKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            id: KeyId,
            name: &'a str,
            key: &'a str,
            display: &'a str,
            scopes: &'a Scopes,
            #[serde(with = "time::serde::rfc3339")]
            created_at: OffsetDateTime,
            #[serde(with = "time::serde::rfc3339::option")]
            last_used_at: Option<OffsetDateTime>,
            #[serde(with = "time::serde::rfc3339::option")]
            expires_at: Option<OffsetDateTime>,
            #[serde(serialize_with = "serialize_created_by")]
            created_by: Option<KeyId>,
        }
        Shown {
            id: self.info.id,
            name: &self.info.name,
            key: self.key.expose(),
            display: &self.info.display,
            scopes: &self.info.scopes,
            created_at: self.info.created_at,
            last_used_at: self.info.last_used_at,
            expires_at: self.info.expires_at,
            created_by: self.info.created_by,
        }
        .serialize(serializer)
    }
}

/// Options for [`Authenticator::rotate_key`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RotateOptions {
    /// Keep the old secret working for this long. Defaults to `None`: the old key stops
    /// working the moment the rotation returns, as the product's API documents.
    pub grace: Option<Duration>,
}

impl RotateOptions {
    /// Immediate rotation (the default).
    pub fn immediate() -> Self {
        Self::default()
    }

    /// Rotation with a grace period for the old secret.
    pub fn with_grace(grace: Duration) -> Self {
        Self { grace: Some(grace) }
    }
}

/// Options for [`Authenticator::revoke_key`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RevokeOptions {
    /// Also revoke, in the same atomic step, every key this key created, transitively: the
    /// answer to "a key leaked and minted others". Defaults to `false`.
    pub cascade: bool,
}

impl RevokeOptions {
    /// Revoke the key only (the default).
    pub fn key_only() -> Self {
        Self::default()
    }

    /// Revoke the key and every key it created, transitively.
    pub fn cascade() -> Self {
        Self { cascade: true }
    }
}

/// The public view of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct UserInfo {
    /// The user id (the JWT `sub`).
    pub id: OwnerId,
    /// The normalised email.
    pub email: String,
    /// The user's scopes.
    pub scopes: Scopes,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Whether the user is disabled (no login; no token or key of theirs authenticates).
    pub disabled: bool,
}

impl From<&UserRecord> for UserInfo {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            scopes: u.scopes.clone(),
            created_at: u.created_at,
            disabled: u.disabled,
        }
    }
}

/// The body of a successful login: `{"access_token", "token_type": "bearer", "expires_in"}`.
#[derive(Debug, Clone)]
pub struct LoginResponse {
    /// The issued token.
    pub token: AccessToken,
}

impl Serialize for LoginResponse {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            access_token: &'a str,
            token_type: &'static str,
            expires_in: u64,
        }
        Body {
            access_token: self.token.token.expose(),
            token_type: "bearer",
            expires_in: self.token.expires_in,
        }
        .serialize(serializer)
    }
}

/// Normalises an email for storage and lookup: trimmed and lower-cased, so that
/// `Alice@Example.com` and `alice@example.com ` are one account.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Refuses, at login, an email that no account can have because registration and every store
/// refuse it: longer than [`MAX_EMAIL_LEN`] bytes, or holding a control character (NUL among
/// them, which Postgres cannot store at all). 422 naming the field rather than the ordinary
/// 401: the request is malformed rather than a wrong credential, the rule is public (RFC 5321
/// and [`MAX_EMAIL_LEN`]), and it reveals nothing about any account — no account can match.
/// Answered before the throttle and the store are touched, so these requests cost neither
/// memory nor a lookup; they cost no argon2 run either, which is safe for the same reason.
/// Login applies no other format rule: an account created under older rules or by another
/// system can still sign in.
fn check_login_email(email: &str) -> Result<(), InvalidInput> {
    let invalid = |problem| InvalidInput::new(Field::Email, problem);
    if email.len() > MAX_EMAIL_LEN {
        return Err(invalid(Problem::TooLong { max: MAX_EMAIL_LEN }));
    }
    if email.chars().any(char::is_control) {
        return Err(invalid(Problem::ControlCharacter));
    }
    Ok(())
}

fn validate_email(email: &str) -> Result<(), InvalidInput> {
    check_login_email(email)?;
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(InvalidInput::new(Field::Email, Problem::NotAnEmail)),
    }
}

/// Builder for [`Authenticator`]. Every default is on its setter.
pub struct AuthenticatorBuilder {
    keys: Arc<dyn KeyStore>,
    peppers: PepperRing,
    users: Option<Arc<dyn UserStore>>,
    tokens: Option<TokenAuthority>,
    password_policy: PasswordPolicy,
    throttle_policy: ThrottlePolicy,
    last_used_interval: Duration,
    clock: Arc<dyn Clock>,
}

impl AuthenticatorBuilder {
    /// Failed-login throttling. Defaults to [`ThrottlePolicy::default`]: 5 failures per email
    /// or 20 per client address within 15 minutes lock it for 15 minutes.
    pub fn login_throttle(mut self, policy: ThrottlePolicy) -> Self {
        self.throttle_policy = policy;
        self
    }

    /// The user store for password login. Defaults to none: [`Authenticator::login`] and
    /// [`Authenticator::register_user`] then answer 503, and API keys and JWTs work alone
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
        let passwords = PasswordHasher::new(self.password_policy)?;
        Ok(Authenticator {
            inner: Arc::new(Inner {
                keys: self.keys,
                users: self.users,
                peppers: self.peppers,
                tokens: self.tokens.map(|t| t.with_clock(Arc::clone(&self.clock))),
                passwords,
                throttle: LoginThrottle::new(self.throttle_policy)?,
                last_used: LastUsedTracker::new(self.last_used_interval),
                clock: self.clock,
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
    last_used: LastUsedTracker,
    clock: Arc<dyn Clock>,
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
            last_used_interval: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
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
    /// [`InvalidReason::UnknownUser`] / [`InvalidReason::UserDisabled`] (the same 401 as any bad
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
                let scopes = match (
                    self.live_user_scopes(&verified.subject).await?,
                    verified.scopes,
                ) {
                    (None, claimed) => claimed.unwrap_or_else(Scopes::empty),
                    (Some(current), None) => current,
                    (Some(current), Some(claimed)) => claimed.intersection(&current),
                };
                Ok(Principal::new(
                    verified.subject,
                    Credential::AccessToken { jti: verified.jti },
                    scopes,
                ))
            }
            None => Err(AuthError::InvalidToken(InvalidReason::UnrecognisedFormat)),
        }
    }

    /// Authenticates a parsed API key (see [`Authenticator::authenticate`]).
    pub async fn authenticate_key(&self, key: &ApiKey) -> Result<Principal, AuthError> {
        let record = self
            .inner
            .keys
            .find_credentials(key.id())
            .await?
            .ok_or(AuthError::InvalidToken(InvalidReason::UnknownKey))?;
        let now = self.inner.clock.now();
        let peppers = &self.inner.peppers;
        // Compare first, judge state second: an unauthenticated caller learns nothing about
        // whether a key id is revoked or expired.
        let current = peppers.verify(key, &record.digest);
        let previous = !current
            && record
                .previous
                .is_some_and(|p| p.valid_until > now && peppers.verify(key, &p.digest));
        if !current && !previous {
            return Err(AuthError::InvalidToken(InvalidReason::SecretMismatch));
        }
        if record.revoked_at.is_some() {
            return Err(AuthError::InvalidToken(InvalidReason::Revoked));
        }
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::InvalidToken(InvalidReason::Expired));
        }
        let scopes = match self.live_user_scopes(&record.owner).await? {
            Some(current) => record.scopes.intersection(&current),
            None => record.scopes,
        };
        self.inner.last_used.note(record.id, now);
        Ok(
            Principal::new(record.owner, Credential::ApiKey(record.id), scopes)
                .with_expiry(record.expires_at),
        )
    }

    /// The live-user rule: `Ok(None)` without a user store; the user's current scopes when the
    /// user exists and is enabled; a 401 otherwise.
    async fn live_user_scopes(&self, owner: &OwnerId) -> Result<Option<Scopes>, AuthError> {
        let Some(users) = &self.inner.users else {
            return Ok(None);
        };
        match users.find_user(owner).await? {
            Some(user) if !user.disabled => Ok(Some(user.scopes)),
            Some(_) => Err(AuthError::InvalidToken(InvalidReason::UserDisabled)),
            None => Err(AuthError::InvalidToken(InvalidReason::UnknownUser)),
        }
    }

    /// Creates a key for the principal's owner, as the key-management policy allows (see
    /// [`crate::policy::grant`]): scopes default to (and may not exceed) the principal's; a key
    /// created by a key expires no later than it and records it as its creator.
    pub async fn create_key(
        &self,
        creator: &Principal,
        request: NewKey,
    ) -> Result<CreatedKey, AuthError> {
        let name = request.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_KEY_NAME_LEN {
            return Err(InvalidInput::new(
                Field::Name,
                Problem::Length {
                    min: 1,
                    max: MAX_KEY_NAME_LEN,
                },
            )
            .into());
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidInput::new(Field::Name, Problem::ControlCharacter).into());
        }
        let now = self.inner.clock.now();
        if request.expires_at.is_some_and(|at| at <= now) {
            return Err(InvalidInput::new(Field::ExpiresAt, Problem::NotInFuture).into());
        }
        let grant = policy::grant(creator, request.scopes, request.expires_at)?;
        // A fresh random id colliding is astronomically unlikely, but the store's duplicate
        // check is the truth: retry once with a new id rather than fail the request.
        for _ in 0..2 {
            let key = ApiKey::generate().map_err(Unavailable::Randomness)?;
            let record = KeyRecord {
                id: key.id(),
                owner: creator.owner().clone(),
                name: name.clone(),
                scopes: grant.scopes.clone(),
                created_at: now,
                last_used_at: None,
                expires_at: grant.expires_at,
                revoked_at: None,
                display: key.display_fragment(),
                digest: self.inner.peppers.digest(&key),
                previous: None,
                created_by: grant.created_by,
            };
            match self.inner.keys.insert(&record).await {
                Ok(()) => {
                    return Ok(CreatedKey {
                        info: KeyInfo::from(&record),
                        key,
                    });
                }
                Err(StoreError::DuplicateId) => continue,
                // The creating key was revoked while this request was in flight.
                Err(StoreError::CreatorRevoked) => {
                    return Err(AuthError::InvalidToken(InvalidReason::Revoked));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Unavailable::KeyIdCollision.into())
    }

    /// Creates a key for `owner`, who holds `allowed` scopes (for admin tools that act without
    /// a request): [`Authenticator::create_key`] for an internal principal.
    pub async fn create_key_for(
        &self,
        owner: &OwnerId,
        allowed: &Scopes,
        request: NewKey,
    ) -> Result<CreatedKey, AuthError> {
        let creator = Principal::new(owner.clone(), Credential::Internal, allowed.clone());
        self.create_key(&creator, request).await
    }

    /// The keys of the principal's owner that it may reach ([`crate::policy::within_reach`]):
    /// never revoked ones, never broader or longer-lived ones; oldest first.
    pub async fn list_keys(&self, principal: &Principal) -> Result<Vec<KeyInfo>, AuthError> {
        let owner_scopes = self.owner_scopes(principal).await?;
        Ok(self
            .inner
            .keys
            .list(principal.owner())
            .await?
            .iter()
            .filter(|r| policy::within_reach(principal, r, owner_scopes.as_ref()))
            .map(KeyInfo::from)
            .collect())
    }

    /// The owner's current scopes, for [`policy::within_reach`]: read only for principals
    /// without a key, and only with a user store (`None` otherwise, or for an unknown owner).
    async fn owner_scopes(&self, principal: &Principal) -> Result<Option<Scopes>, AuthError> {
        match &self.inner.users {
            Some(users) if principal.key_id().is_none() => Ok(users
                .find_user(principal.owner())
                .await?
                .map(|user| user.scopes)),
            _ => Ok(None),
        }
    }

    /// The key `id` if the principal may act on it; [`AuthError::KeyNotFound`] otherwise,
    /// exactly as for an unknown id.
    /// `to_rotate`: judged by [`policy::may_rotate`] (the caller receives the new secret),
    /// otherwise by [`policy::within_reach`].
    async fn reachable_key(
        &self,
        principal: &Principal,
        id: KeyId,
        to_rotate: bool,
    ) -> Result<KeyRecord, AuthError> {
        let owner_scopes = if to_rotate {
            None
        } else {
            self.owner_scopes(principal).await?
        };
        match self.inner.keys.find(id).await? {
            Some(record) if to_rotate && policy::may_rotate(principal, &record) => Ok(record),
            Some(record)
                if !to_rotate
                    && policy::within_reach(principal, &record, owner_scopes.as_ref()) =>
            {
                Ok(record)
            }
            _ => Err(AuthError::KeyNotFound),
        }
    }

    /// Issues a new secret for a key within the principal's reach, keeping its id, name,
    /// scopes and expiry. With the default options the old key fails from the moment this
    /// returns. Unknown, revoked, out-of-reach or another owner's key →
    /// [`AuthError::KeyNotFound`]; expired → [`AuthError::KeyExpired`].
    pub async fn rotate_key(
        &self,
        principal: &Principal,
        id: KeyId,
        options: RotateOptions,
    ) -> Result<CreatedKey, AuthError> {
        self.reachable_key(principal, id, true).await?;
        let key = ApiKey::generate_for(id).map_err(Unavailable::Randomness)?;
        let now = self.inner.clock.now();
        let rotation = Rotation {
            digest: self.inner.peppers.digest(&key),
            display: key.display_fragment(),
            grace_until: options.grace.map(|g| now + g),
            now,
        };
        match self
            .inner
            .keys
            .rotate(principal.owner(), id, &rotation)
            .await?
        {
            RotateOutcome::Rotated(record) => Ok(CreatedKey {
                info: KeyInfo::from(&record),
                key,
            }),
            RotateOutcome::Expired => Err(AuthError::KeyExpired),
            _ => Err(AuthError::KeyNotFound),
        }
    }

    /// Revokes a key within the principal's reach and, with [`RevokeOptions::cascade`], every
    /// key it created, transitively, in one atomic step. A revoked key is gone from the owner's
    /// view: revoking it again is [`AuthError::KeyNotFound`], like an unknown, out-of-reach or
    /// another owner's key. Returns the ids revoked (the key first).
    pub async fn revoke_key(
        &self,
        principal: &Principal,
        id: KeyId,
        options: RevokeOptions,
    ) -> Result<Vec<KeyId>, AuthError> {
        self.reachable_key(principal, id, false).await?;
        let owner = principal.owner();
        let at = self.inner.clock.now();
        let (root, descendants) = if options.cascade {
            let outcome = self.inner.keys.revoke_tree(owner, id, at).await?;
            (outcome.root, outcome.descendants)
        } else {
            (self.inner.keys.revoke(owner, id, at).await?, Vec::new())
        };
        // A concurrent revoke of the same key won: it is gone all the same.
        if root != RevokeOutcome::Revoked && descendants.is_empty() {
            return Err(AuthError::KeyNotFound);
        }
        let revoked: Vec<KeyId> = std::iter::once(id).chain(descendants).collect();
        for id in &revoked {
            self.inner.last_used.forget(*id);
        }
        Ok(revoked)
    }

    fn users(&self) -> Result<&Arc<dyn UserStore>, AuthError> {
        self.inner
            .users
            .as_ref()
            .ok_or(AuthError::Unavailable(Unavailable::NoUserStore))
    }

    /// Registers a password user with `scopes`.
    pub async fn register_user(
        &self,
        email: &str,
        password: &SecretString,
        scopes: Scopes,
    ) -> Result<UserInfo, AuthError> {
        let users = self.users()?;
        let email = normalize_email(email);
        validate_email(&email)?;
        let password_hash = self.inner.passwords.hash(password).await?;
        let user = UserRecord {
            id: OwnerId::new(uuid::Uuid::new_v4().to_string()),
            email,
            password_hash,
            scopes,
            created_at: self.inner.clock.now(),
            disabled: false,
        };
        match users.insert_user(&user).await {
            Ok(()) => Ok(UserInfo::from(&user)),
            Err(StoreError::DuplicateEmail) => Err(AuthError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// A user by id.
    pub async fn user(&self, id: &OwnerId) -> Result<Option<UserInfo>, AuthError> {
        Ok(self
            .users()?
            .find_user(id)
            .await?
            .as_ref()
            .map(UserInfo::from))
    }

    /// All users, oldest first.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>, AuthError> {
        Ok(self
            .users()?
            .list_users()
            .await?
            .iter()
            .map(UserInfo::from)
            .collect())
    }

    /// Disables a user: no login, and none of their tokens or keys authenticate (401) until
    /// [`Authenticator::enable_user`]. Keys are kept, not revoked. `Ok(false)`: no such user.
    pub async fn disable_user(&self, id: &OwnerId) -> Result<bool, AuthError> {
        Ok(self.users()?.set_user_disabled(id, true).await?)
    }

    /// Enables a disabled user: their unexpired tokens and unrevoked keys work again.
    /// `Ok(false)`: no such user.
    pub async fn enable_user(&self, id: &OwnerId) -> Result<bool, AuthError> {
        Ok(self.users()?.set_user_disabled(id, false).await?)
    }

    /// Replaces a user's scopes. Every token and key of the user is capped at them from the
    /// next request on. `Ok(false)`: no such user.
    pub async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, AuthError> {
        Ok(self.users()?.set_user_scopes(id, scopes).await?)
    }

    /// Deletes a user: their tokens and keys answer 401 from the next request on (keys stay in
    /// the key store, unusable). `Ok(false)`: no such user.
    pub async fn delete_user(&self, id: &OwnerId) -> Result<bool, AuthError> {
        Ok(self.users()?.delete_user(id).await?)
    }

    /// Password login without a client address (only the per-email throttle applies). See
    /// [`Authenticator::login_from`].
    pub async fn login(
        &self,
        email: &str,
        password: &SecretString,
    ) -> Result<LoginResponse, AuthError> {
        self.login_from(email, password, None).await
    }

    /// Password login. Unknown email and wrong password give the same error after the same
    /// work (one argon2 verification); so does a password over the length limit.
    ///
    /// Attempts are throttled per email (existing or not) and per `client` address (see
    /// [`ThrottlePolicy`]): each login reserves a verification on both before the store is
    /// asked, so however many arrive at once, at most the policy's number are verified per
    /// email and per client in a window; the others, and every attempt on a locked subject
    /// (even with the right password), get [`AuthError::RateLimited`]. An email no store can
    /// hold (over [`MAX_EMAIL_LEN`] bytes, or with a control character) is refused with a 422
    /// before the throttle and the store. A hash with outdated parameters is replaced.
    pub async fn login_from(
        &self,
        email: &str,
        password: &SecretString,
        client: Option<IpAddr>,
    ) -> Result<LoginResponse, AuthError> {
        let users = self.users()?;
        let tokens = self
            .inner
            .tokens
            .as_ref()
            .ok_or(AuthError::Unavailable(Unavailable::NoTokenAuthority))?;
        let email = normalize_email(email);
        check_login_email(&email)?;
        let clock = &self.inner.clock;
        // Dropped on any early return (store down, hashing queue full, request cancelled):
        // given back uncounted.
        let reservation = self.inner.throttle.reserve(&email, client, clock.now())?;
        // A place in the hashing queue before the store: a flood is refused without a lookup.
        let ticket = self.inner.passwords.admit()?;
        let user = users.find_user_by_email(&email).await?;
        let check = self
            .inner
            .passwords
            .verify_admitted(
                ticket,
                password,
                user.as_ref().map(|u| u.password_hash.as_str()),
            )
            .await?;
        // A disabled user reads exactly like a wrong password: no account-state oracle.
        let Some(user) = user.filter(|u| check.matches && !u.disabled) else {
            reservation.failed(clock.now());
            return Err(AuthError::InvalidLogin);
        };
        reservation.succeeded(clock.now());
        if check.needs_rehash {
            match self.inner.passwords.hash(password).await {
                Ok(phc) => {
                    if let Err(e) = users.update_password_hash(&user.id, &phc).await {
                        tracing::warn!(user = %user.id, error = %e, "password rehash not saved");
                    }
                }
                Err(e) => tracing::warn!(user = %user.id, error = %e, "password rehash failed"),
            }
        }
        let token = tokens
            .issue(&user.id, &user.scopes)
            .map_err(|e| AuthError::Unavailable(Unavailable::Signing(e)))?;
        Ok(LoginResponse { token })
    }

    /// Issues an access token directly (for applications with their own login).
    pub fn issue_token(
        &self,
        subject: &OwnerId,
        scopes: &Scopes,
    ) -> Result<AccessToken, AuthError> {
        self.inner
            .tokens
            .as_ref()
            .ok_or(AuthError::Unavailable(Unavailable::NoTokenAuthority))?
            .issue(subject, scopes)
            .map_err(|e| AuthError::Unavailable(Unavailable::Signing(e)))
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
