//! One HTTP behaviour table for the axum and actix-web crates, run over real HTTP.
//!
//! * [`Fixture::new`] builds an [`Authenticator`] over in-memory stores with users, keys and
//!   tokens in every state; [`Fixture::with`] takes any [`Stores`] (SQLite, Postgres…) and any
//!   [`Signing`] ring (HS256, or ES256/EdDSA/RS256 signing beside HS256 verification). The key
//!   store is wrapped in an [`InstrumentedKeyStore`]: it counts every store call
//!   ([`StoreCalls`]) and fails for one key (the 503 row).
//! * [`servers`] starts the same test application on either framework on `127.0.0.1:0`: the
//!   product's endpoints under `/api`, a WebSocket route `/ws/{chat_id}` that accepts
//!   `?token=`, and small routes that exercise the layer and the extractors.
//! * [`table`] lists the rows (request → expected status, body and headers); [`run_table`]
//!   sends every row to a base URL and returns the failures. The integration tests run it
//!   against both servers, so a new row runs on both.
//! * [`attacks`] is the attack catalogue: forged JWTs, hostile bearer headers and
//!   malformed keys, each with its exact expected answer, run the same way.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use futures_util::StreamExt;
use nexora_auth::{
    Authenticator, Clock, Credential, JwtAlgorithm, JwtConfig, JwtKeys, KeyCredentials, KeyId,
    MemoryKeyStore, MemoryUserStore, NewKey, OwnerId, PasswordPolicy, PepperRing, Principal,
    RevokeOptions, Scopes, SecretBytes, SecretString, TokenAuthority, UserRecord, UserStore,
    store::{
        CascadeOutcome, KeyRecord, KeyStore, LastUsed, RevokeOutcome, RotateOutcome, Rotation,
        StoreError,
    },
};
use nexora_auth_http::scopes::{AGENTS_READ, KEYS_MANAGE};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_tungstenite::tungstenite;

pub mod attacks;
pub mod servers;

/// A clock that can be moved forward, so that a key can expire during a test.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_secs: AtomicI64,
}

impl ShiftedClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + Duration::from_secs(self.offset_secs.load(Ordering::SeqCst).unsigned_abs())
    }
}

/// Counts every call a fixture's stores receive (key store and user store together), so a
/// test can assert that a request reached no store at all.
#[derive(Debug, Default)]
pub struct StoreCalls(AtomicU64);

impl StoreCalls {
    /// Calls so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A [`KeyStore`] wrapper around any store: it counts every call in [`StoreCalls`], and
/// answers "unavailable" for the keys in its fail list, as a database that refuses
/// connections would.
pub struct InstrumentedKeyStore {
    inner: Arc<dyn KeyStore>,
    calls: Arc<StoreCalls>,
    failing: Mutex<HashSet<KeyId>>,
}

impl std::fmt::Debug for InstrumentedKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedKeyStore")
            .field("calls", &self.calls.get())
            .finish_non_exhaustive()
    }
}

impl InstrumentedKeyStore {
    /// Wraps `inner`, counting into `calls`.
    pub fn new(inner: Arc<dyn KeyStore>, calls: Arc<StoreCalls>) -> Self {
        Self {
            inner,
            calls,
            failing: Mutex::new(HashSet::new()),
        }
    }

    /// Makes every lookup of `id` fail from now on.
    pub fn fail_for(&self, id: KeyId) {
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id);
    }

    fn check(&self, id: KeyId) -> Result<(), StoreError> {
        self.calls.count();
        if self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&id)
        {
            Err(StoreError::unavailable("connection refused (test store)"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl KeyStore for InstrumentedKeyStore {
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.calls.count();
        self.inner.insert(record).await
    }

    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.check(id)?;
        self.inner.find(id).await
    }

    async fn find_credentials(&self, id: KeyId) -> Result<Option<KeyCredentials>, StoreError> {
        self.check(id)?;
        self.inner.find_credentials(id).await
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        self.calls.count();
        self.inner.list(owner).await
    }

    async fn rotate(
        &self,
        owner: &OwnerId,
        id: KeyId,
        rotation: &Rotation,
    ) -> Result<RotateOutcome, StoreError> {
        self.check(id)?;
        self.inner.rotate(owner, id, rotation).await
    }

    async fn revoke(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        self.check(id)?;
        self.inner.revoke(owner, id, at).await
    }

    async fn revoke_tree(
        &self,
        owner: &OwnerId,
        id: KeyId,
        at: OffsetDateTime,
    ) -> Result<CascadeOutcome, StoreError> {
        self.check(id)?;
        self.inner.revoke_tree(owner, id, at).await
    }

    async fn record_last_used(&self, batch: &[LastUsed]) -> Result<(), StoreError> {
        self.calls.count();
        self.inner.record_last_used(batch).await
    }
}

/// A [`UserStore`] wrapper that counts every call in [`StoreCalls`].
struct CountingUserStore {
    inner: Arc<dyn UserStore>,
    calls: Arc<StoreCalls>,
}

#[async_trait]
impl UserStore for CountingUserStore {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.calls.count();
        self.inner.insert_user(user).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        self.calls.count();
        self.inner.find_user_by_email(email).await
    }

    async fn find_user(&self, id: &OwnerId) -> Result<Option<UserRecord>, StoreError> {
        self.calls.count();
        self.inner.find_user(id).await
    }

    async fn update_password_hash(&self, id: &OwnerId, phc: &str) -> Result<bool, StoreError> {
        self.calls.count();
        self.inner.update_password_hash(id, phc).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.calls.count();
        self.inner.list_users().await
    }

    async fn set_user_disabled(&self, id: &OwnerId, disabled: bool) -> Result<bool, StoreError> {
        self.calls.count();
        self.inner.set_user_disabled(id, disabled).await
    }

    async fn set_user_scopes(&self, id: &OwnerId, scopes: &Scopes) -> Result<bool, StoreError> {
        self.calls.count();
        self.inner.set_user_scopes(id, scopes).await
    }

    async fn delete_user(&self, id: &OwnerId) -> Result<bool, StoreError> {
        self.calls.count();
        self.inner.delete_user(id).await
    }
}

/// The stores a [`Fixture`] runs on: any [`KeyStore`] and [`UserStore`] (in-memory, SQLite,
/// Postgres…), plus whatever must live as long as they do (a temporary directory, a test
/// schema).
pub struct Stores {
    name: &'static str,
    keys: Arc<dyn KeyStore>,
    users: Arc<dyn UserStore>,
    guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Stores {
    /// Stores named `name` (for messages).
    pub fn new(name: &'static str, keys: Arc<dyn KeyStore>, users: Arc<dyn UserStore>) -> Self {
        Self {
            name,
            keys,
            users,
            guard: None,
        }
    }

    /// The in-memory stores of the core.
    pub fn memory() -> Self {
        Self::new(
            "memory",
            Arc::new(MemoryKeyStore::new()),
            Arc::new(MemoryUserStore::new()),
        )
    }

    /// Keeps `guard` alive as long as the fixture (e.g. the SQLite file's directory).
    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// The name given to [`Stores::new`].
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// The throwaway test keys of `crates/nexora-auth/tests/keys` (never used anywhere else).
pub mod test_keys {
    /// ES256 (P-256) private key, PKCS#8 PEM: a signing key of the asymmetric rings.
    pub const ES256_PRIVATE: &[u8] = include_bytes!("../../nexora-auth/tests/keys/es256-a.pem");
    /// Its public key, SPKI PEM.
    pub const ES256_PUBLIC: &[u8] = include_bytes!("../../nexora-auth/tests/keys/es256-a.pub.pem");
    /// Another P-256 key that no ring holds: the attacker's own key.
    pub const ES256_ATTACKER: &[u8] = include_bytes!("../../nexora-auth/tests/keys/es256-b.pem");
    /// Ed25519 private key, PKCS#8 PEM.
    pub const ED25519_PRIVATE: &[u8] = include_bytes!("../../nexora-auth/tests/keys/ed25519.pem");
    /// Its public key, SPKI PEM.
    pub const ED25519_PUBLIC: &[u8] =
        include_bytes!("../../nexora-auth/tests/keys/ed25519.pub.pem");
    /// RSA private key, PEM.
    pub const RS256_PRIVATE: &[u8] = include_bytes!("../../nexora-auth/tests/keys/rs256.pem");
    /// Its public key, SPKI PEM.
    pub const RS256_PUBLIC: &[u8] = include_bytes!("../../nexora-auth/tests/keys/rs256.pub.pem");
}

/// The `kid` of the signing key of the asymmetric rings (the server's default, `k1`).
pub const SIGNING_KID: &str = "k1";

/// The JWT key ring a [`Fixture`]'s authenticator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// HS256 with [`JWT_SECRET`], no `kid`.
    Hs256,
    /// The test key of this algorithm signs (kid [`SIGNING_KID`]), and HS256 tokens of
    /// [`JWT_SECRET`] still verify — as `nexora-server` configures an asymmetric key.
    Asymmetric(JwtAlgorithm),
}

impl Signing {
    /// Every ring: HS256, then ES256, EdDSA and RS256 as signing key.
    pub const ALL: [Self; 4] = [
        Self::Hs256,
        Self::Asymmetric(JwtAlgorithm::Es256),
        Self::Asymmetric(JwtAlgorithm::EdDsa),
        Self::Asymmetric(JwtAlgorithm::Rs256),
    ];

    /// `HS256`, `ES256`, `EdDSA` or `RS256`: the `alg` of the tokens the ring issues.
    pub fn alg_name(self) -> &'static str {
        match self {
            Self::Asymmetric(JwtAlgorithm::Es256) => "ES256",
            Self::Asymmetric(JwtAlgorithm::EdDsa) => "EdDSA",
            Self::Asymmetric(JwtAlgorithm::Rs256) => "RS256",
            _ => "HS256",
        }
    }

    /// The private key (PEM) of an asymmetric ring.
    pub fn private_pem(self) -> Option<&'static [u8]> {
        match self {
            Self::Asymmetric(JwtAlgorithm::Es256) => Some(test_keys::ES256_PRIVATE),
            Self::Asymmetric(JwtAlgorithm::EdDsa) => Some(test_keys::ED25519_PRIVATE),
            Self::Asymmetric(JwtAlgorithm::Rs256) => Some(test_keys::RS256_PRIVATE),
            _ => None,
        }
    }

    fn keys(self) -> JwtKeys {
        let secret = SecretBytes::new(JWT_SECRET.to_vec());
        match (self, self.private_pem()) {
            (Self::Asymmetric(alg), Some(pem)) => JwtKeys::from_private_pem(alg, SIGNING_KID, pem)
                .and_then(|keys| keys.with_hs256_verification(&secret))
                .expect("the test keys load"),
            _ => JwtKeys::hs256(&secret).expect("the test secret is long enough"),
        }
    }
}

/// Email of the test user who holds `keys:manage` and `agents:read`.
pub const ALICE_EMAIL: &str = "alice@example.com";
/// Alice's password.
pub const ALICE_PASSWORD: &str = "correct horse battery staple";

const PEPPER: &[u8] = b"http-tests pepper: 32+ random bytes, not a real one";
/// The HS256 secret of every fixture's ring (signing for [`Signing::Hs256`], verification
/// only for the asymmetric rings).
pub const JWT_SECRET: &[u8] = b"http-tests jwt secret: 32+ bytes, not a real one";

/// Keeps a fixture's store guard alive (and out of `Debug`).
struct Guard(
    #[allow(dead_code, reason = "held for its Drop only")] Box<dyn std::any::Any + Send + Sync>,
);

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard")
    }
}

/// Everything the table needs: the authenticator a server is built over, and credentials in
/// every state.
#[derive(Debug)]
pub struct Fixture {
    /// The authenticator to build the server with.
    pub auth: Authenticator,
    /// The name of the stores (`memory`, `sqlite`, `postgres`).
    pub stores: &'static str,
    /// The JWT key ring.
    pub signing: Signing,
    /// The key store as the authenticator sees it (counting, failing for one key).
    pub keys: Arc<InstrumentedKeyStore>,
    /// Calls to the key and user stores so far.
    pub store_calls: Arc<StoreCalls>,
    /// Alice's user id.
    pub alice_id: String,
    /// Alice's API key (all her scopes).
    pub alice_key: String,
    /// A JWT access token for Alice, from a real login (signed by the ring's signing key).
    pub alice_jwt: String,
    /// Alice's key with only `agents:read` (no `keys:manage`).
    pub reader_key: String,
    /// Alice's key with only `keys:manage` (no `agents:read`).
    pub manager_only_key: String,
    /// A revoked key, and its id.
    pub revoked_key: String,
    /// The id of [`Fixture::revoked_key`].
    pub revoked_key_id: String,
    /// A key past its expiry.
    pub expired_key: String,
    /// A JWT past its expiry (same signing secret).
    pub expired_jwt: String,
    /// A JWT signed with another secret.
    pub foreign_jwt: String,
    /// A key whose store lookup fails (503).
    pub unavailable_key: String,
    /// A key the table rotates, and its id.
    pub rotate_me: (String, String),
    /// A key the table revokes, and its id.
    pub revoke_me: (String, String),
    /// Bob's user id.
    pub bob_id: String,
    /// Bob's key (another user's).
    pub bob_key: String,
    /// The id of Bob's key.
    pub bob_key_id: String,
    /// Alice's key (all her scopes) that expires in an hour.
    pub short_lived_key: String,
    /// Its id.
    pub short_lived_key_id: String,
    /// Its `expires_at` as the API writes it (RFC 3339).
    pub short_lived_expires_at: String,
    /// A key of Alice's that created [`Fixture::child_key`], and its id.
    pub parent_key: (String, String),
    /// A key created by [`Fixture::parent_key`] (authenticated as that key), and its id.
    pub child_key: (String, String),
    /// A JWT signed by the ring whose `sub` names no user.
    pub ghost_jwt: String,
    /// A standard library's HS256 token for Alice: `{sub, exp, iat, iss, aud}`, no `scope`.
    pub standard_jwt: String,
    /// A key and a login JWT of Carol, a user disabled after they were issued.
    pub disabled_user_credentials: [String; 2],
    /// A key and a login JWT of Dave, a user whose scopes were narrowed to `keys:manage`
    /// after they were issued (both had `agents:read` too).
    pub narrowed_user_credentials: [String; 2],
    /// The id of Dave's key (the first of [`Fixture::narrowed_user_credentials`]).
    pub narrowed_user_key_id: String,
    /// Every key text the fixture created, for leak checks.
    pub all_keys: Vec<String>,
    /// The authenticator's clock (two minutes ahead of the system clock once built, so that
    /// tokens issued on the system clock with a short lifetime are already expired).
    pub clock: Arc<ShiftedClock>,
    _guard: Option<Guard>,
}

fn jwt_authority(keys: JwtKeys, config: JwtConfig) -> TokenAuthority {
    TokenAuthority::new(keys, config).expect("a valid test JWT configuration")
}

fn hs256(secret: &[u8]) -> JwtKeys {
    JwtKeys::hs256(&SecretBytes::new(secret.to_vec())).expect("the test secret is long enough")
}

impl Fixture {
    /// Builds a fresh authenticator and credentials over in-memory stores with an HS256 ring.
    /// Builds in well under a second: no test waits for time to pass (the clock is moved).
    pub async fn new() -> Self {
        Self::with(Stores::memory(), Signing::Hs256).await
    }

    /// Builds a fresh authenticator and credentials over `stores` with the `signing` ring.
    /// Builds in well under a second: no test waits for time to pass (the clock is moved).
    pub async fn with(stores: Stores, signing: Signing) -> Self {
        let Stores {
            name,
            keys,
            users,
            guard,
        } = stores;
        let store_calls = Arc::new(StoreCalls::default());
        let store = Arc::new(InstrumentedKeyStore::new(keys, store_calls.clone()));
        let users = Arc::new(CountingUserStore {
            inner: users,
            calls: store_calls.clone(),
        });
        let clock = Arc::new(ShiftedClock::default());
        let pepper =
            PepperRing::new(1, SecretBytes::new(PEPPER.to_vec())).expect("a long enough pepper");
        let auth = Authenticator::builder(store.clone(), pepper)
            .users(users)
            .tokens(jwt_authority(
                signing.keys(),
                JwtConfig::default().leeway(Duration::ZERO),
            ))
            .password_policy(PasswordPolicy::default().argon2_params(256, 1, 1))
            .clock(clock.clone())
            .build()
            .expect("a valid authenticator");

        let all = Scopes::new([KEYS_MANAGE, AGENTS_READ]).expect("valid scopes");
        let alice = auth
            .register_user(
                ALICE_EMAIL,
                &SecretString::from(ALICE_PASSWORD),
                all.clone(),
            )
            .await
            .expect("register alice");
        let bob = auth
            .register_user(
                "bob@example.com",
                &SecretString::from("bob's own password"),
                all.clone(),
            )
            .await
            .expect("register bob");
        let alice_jwt = auth
            .login(ALICE_EMAIL, &SecretString::from(ALICE_PASSWORD))
            .await
            .expect("alice logs in")
            .token
            .token
            .expose()
            .to_owned();

        let key = |owner: OwnerId, scopes: &[&str], name: &str| {
            let auth = auth.clone();
            let scopes = Scopes::new(scopes.iter().copied()).expect("valid scopes");
            let name = name.to_owned();
            async move {
                auth.create_key_for(&owner, &scopes, NewKey::named(name))
                    .await
                    .expect("create key")
            }
        };
        let alice_all = [KEYS_MANAGE, AGENTS_READ];
        let alice_key = key(alice.id.clone(), &alice_all, "main").await;
        let reader = key(alice.id.clone(), &[AGENTS_READ], "reader").await;
        let manager_only = key(alice.id.clone(), &[KEYS_MANAGE], "manager").await;
        let revoked = key(alice.id.clone(), &alice_all, "revoked").await;
        let alice_session = Principal::new(alice.id.clone(), Credential::Internal, all.clone());
        auth.revoke_key(&alice_session, revoked.info.id, RevokeOptions::key_only())
            .await
            .expect("revoke");
        let unavailable = key(alice.id.clone(), &alice_all, "unavailable").await;
        store.fail_for(unavailable.info.id);
        let rotate_me = key(alice.id.clone(), &alice_all, "rotate me").await;
        let revoke_me = key(alice.id.clone(), &alice_all, "revoke me").await;
        let bob_key = key(bob.id.clone(), &alice_all, "bob's").await;
        let expired = auth
            .create_key_for(
                &alice.id,
                &all,
                NewKey::named("expiring")
                    .expiring_at(OffsetDateTime::now_utc() + Duration::from_secs(60)),
            )
            .await
            .expect("create expiring key");
        clock.advance(Duration::from_secs(120));

        let short = jwt_authority(
            hs256(JWT_SECRET),
            JwtConfig::default().access_token_ttl(Duration::from_secs(1)),
        );
        let expired_jwt = short
            .issue(&alice.id, &all)
            .expect("issue")
            .token
            .expose()
            .to_owned();
        let foreign = jwt_authority(
            hs256(b"another service's secret, also 32+ bytes long"),
            JwtConfig::default(),
        );
        let foreign_jwt = foreign
            .issue(&alice.id, &all)
            .expect("issue")
            .token
            .expose()
            .to_owned();
        // Lifetime and lineage: a key with an expiry, and a key created by another key.
        // Whole seconds, so that every store keeps the expiry exactly.
        let in_an_hour = (clock.now() + Duration::from_secs(3600))
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond");
        let short_lived = auth
            .create_key_for(
                &alice.id,
                &all,
                NewKey::named("short-lived").expiring_at(in_an_hour),
            )
            .await
            .expect("create short-lived key");
        let short_lived_expires_at = serde_json::to_value(&short_lived.info)
            .expect("key info serialises")["expires_at"]
            .as_str()
            .expect("an expiry")
            .to_owned();
        let parent = key(alice.id.clone(), &alice_all, "parent").await;
        let as_parent = auth
            .authenticate(parent.key.expose())
            .await
            .expect("the parent key authenticates");
        let child = auth
            .create_key(&as_parent, NewKey::named("child"))
            .await
            .expect("a key creates a key");

        // Live users: a token for nobody, a standard token without `scope`, a disabled user
        // and a user whose scopes were narrowed after their credentials were issued.
        let ghost_jwt = auth
            .issue_token(&OwnerId::new("ghost-user"), &all)
            .expect("issue")
            .token
            .expose()
            .to_owned();
        let standard_jwt = standard_token(&alice.id, clock.now());
        let mut live_rule_credentials = Vec::new();
        for email in ["carol@example.com", "dave@example.com"] {
            let password = SecretString::from("a password for the live-user rows");
            let user = auth
                .register_user(email, &password, all.clone())
                .await
                .expect("register");
            let jwt = auth
                .login(email, &password)
                .await
                .expect("login")
                .token
                .token
                .expose()
                .to_owned();
            let user_key = key(user.id.clone(), &alice_all, "live rule").await;
            live_rule_credentials.push((user.id, user_key.info.id, [text_of(&user_key), jwt]));
        }
        let (carol, _, disabled_user_credentials) = live_rule_credentials.remove(0);
        let (dave, narrowed_user_key_id, narrowed_user_credentials) =
            live_rule_credentials.remove(0);
        auth.disable_user(&carol).await.expect("disable carol");
        auth.set_user_scopes(&dave, &Scopes::new([KEYS_MANAGE]).expect("valid scopes"))
            .await
            .expect("narrow dave");

        let text = text_of;
        let all_keys = [
            &short_lived,
            &parent,
            &child,
            &alice_key,
            &reader,
            &manager_only,
            &revoked,
            &unavailable,
            &rotate_me,
            &revoke_me,
            &bob_key,
            &expired,
        ]
        .into_iter()
        .map(text)
        .collect();
        Self {
            stores: name,
            signing,
            keys: store,
            store_calls,
            alice_id: alice.id.as_str().to_owned(),
            alice_key: text(&alice_key),
            alice_jwt,
            reader_key: text(&reader),
            manager_only_key: text(&manager_only),
            revoked_key: text(&revoked),
            revoked_key_id: revoked.info.id.to_string(),
            expired_key: text(&expired),
            expired_jwt,
            foreign_jwt,
            unavailable_key: text(&unavailable),
            rotate_me: (text(&rotate_me), rotate_me.info.id.to_string()),
            revoke_me: (text(&revoke_me), revoke_me.info.id.to_string()),
            bob_id: bob.id.as_str().to_owned(),
            bob_key: text(&bob_key),
            bob_key_id: bob_key.info.id.to_string(),
            short_lived_key: text(&short_lived),
            short_lived_key_id: short_lived.info.id.to_string(),
            short_lived_expires_at,
            parent_key: (text(&parent), parent.info.id.to_string()),
            child_key: (text(&child), child.info.id.to_string()),
            ghost_jwt,
            standard_jwt,
            disabled_user_credentials,
            narrowed_user_credentials,
            narrowed_user_key_id: narrowed_user_key_id.to_string(),
            all_keys,
            clock,
            auth,
            _guard: guard.map(Guard),
        }
    }
}

fn text_of(key: &nexora_auth::CreatedKey) -> String {
    key.key.expose().to_owned()
}

/// What a standard JWT library issues for `sub` with the fixture's HS256 secret and the
/// default issuer and audience: no `scope`, no `kid`, no `jti`.
fn standard_token(subject: &OwnerId, at: OffsetDateTime) -> String {
    let now = at.unix_timestamp();
    let claims = json!({
        "sub": subject.as_str(),
        "iat": now,
        "exp": now + 600,
        "iss": "nexora",
        "aud": "nexora-api",
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET).expect("an HMAC key of any length"),
    )
    .expect("HS256 signs")
}

/// A check of a JSON body: `Err` says what is wrong.
pub type BodyPredicate = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

/// What a row checks in the response body.
#[derive(Clone)]
pub enum BodyCheck {
    /// Exactly this JSON.
    Json(Value),
    /// `{"detail": "<text>"}`.
    Detail(&'static str),
    /// Empty.
    Empty,
    /// A JSON body for which the function returns `Ok`.
    Satisfies(BodyPredicate),
}

impl std::fmt::Debug for BodyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(v) => write!(f, "Json({v})"),
            Self::Detail(d) => write!(f, "Detail({d:?})"),
            Self::Empty => f.write_str("Empty"),
            Self::Satisfies(_) => f.write_str("Satisfies(..)"),
        }
    }
}

fn satisfies(check: impl Fn(&Value) -> Result<(), String> + Send + Sync + 'static) -> BodyCheck {
    BodyCheck::Satisfies(Arc::new(check))
}

/// What a row sends.
#[derive(Debug, Clone)]
pub enum Probe {
    /// An HTTP request.
    Http {
        /// Method, e.g. `GET`.
        method: &'static str,
        /// Path and query, e.g. `/api/users/me?token=x`.
        path: String,
        /// Headers, in order (repeats allowed), as raw bytes.
        headers: Vec<(&'static str, Vec<u8>)>,
        /// Body bytes, if any.
        body: Option<Vec<u8>>,
    },
    /// A WebSocket handshake to a path (with query), with extra headers.
    WebSocket {
        /// Path and query, e.g. `/ws/chat-1?token=x`.
        path: String,
        /// Extra headers.
        headers: Vec<(&'static str, String)>,
    },
}

/// What a row expects.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The status code (101 for an accepted WebSocket).
    pub status: u16,
    /// The body (for WebSockets: the first text message, checked as JSON-free text via
    /// [`BodyCheck::Detail`]-less [`BodyCheck::Json`] of a string).
    pub body: BodyCheck,
    /// The `WWW-Authenticate` header: `None` = absent.
    pub www_authenticate: Option<&'static str>,
    /// The `Retry-After` header: `None` = absent, [`ANY_SECONDS`] = any positive number.
    pub retry_after: Option<&'static str>,
    /// The `Allow` header: `None` = not checked; required on every 405 (RFC 9110 §15.5.6).
    pub allow: Option<&'static str>,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What the row checks, in words.
    pub name: &'static str,
    /// The request.
    pub send: Probe,
    /// The expected response.
    pub expect: Expect,
}

/// In [`Expect::retry_after`]: any positive number of seconds (for time-dependent values).
pub const ANY_SECONDS: &str = "<any positive number>";

const BEARER: Option<&str> = Some("Bearer");
const INVALID_TOKEN: Option<&str> = Some(r#"Bearer error="invalid_token""#);
const INVALID_REQUEST: Option<&str> = Some(r#"Bearer error="invalid_request""#);
const INSUFFICIENT_SCOPE: Option<&str> = Some(r#"Bearer error="insufficient_scope""#);

fn bearer(token: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![("authorization", format!("Bearer {token}").into_bytes())]
}

fn http(
    method: &'static str,
    path: impl Into<String>,
    headers: Vec<(&'static str, Vec<u8>)>,
) -> Probe {
    Probe::Http {
        method,
        path: path.into(),
        headers,
        body: None,
    }
}

fn json_body(
    path: &str,
    headers: Vec<(&'static str, Vec<u8>)>,
    content_type: Option<&str>,
    body: &str,
) -> Probe {
    let mut headers = headers;
    if let Some(ct) = content_type {
        headers.push(("content-type", ct.as_bytes().to_vec()));
    }
    Probe::Http {
        method: "POST",
        path: path.into(),
        headers,
        body: Some(body.as_bytes().to_vec()),
    }
}

fn expect(status: u16, body: BodyCheck) -> Expect {
    Expect {
        status,
        body,
        www_authenticate: None,
        retry_after: None,
        allow: None,
    }
}

fn challenge(status: u16, detail: &'static str, www: Option<&'static str>) -> Expect {
    Expect {
        status,
        body: BodyCheck::Detail(detail),
        www_authenticate: www,
        retry_after: None,
        allow: None,
    }
}

fn not_allowed(allow: &'static str) -> Expect {
    Expect {
        allow: Some(allow),
        ..challenge(405, "Method Not Allowed", None)
    }
}

fn issue(loc: Value, msg: &str, kind: &str) -> BodyCheck {
    BodyCheck::Json(json!({"detail": [{"loc": loc, "msg": msg, "type": kind}]}))
}

fn row(name: &'static str, send: Probe, expect: Expect) -> Row {
    Row { name, send, expect }
}

const NOT_AUTHENTICATED: &str = "Not authenticated";
const INVALID_CREDENTIALS: &str = "Invalid authentication credentials";
const INVALID_AUTH_REQUEST: &str = "Invalid authorization request";
const INSUFFICIENT: &str = "Insufficient permissions";
const KEY_NOT_FOUND: &str = "API key not found";

/// The created-key shape: exactly these fields, the key shown once.
fn created_key_shape(body: &Value) -> Result<(), String> {
    let object = body.as_object().ok_or("not an object")?;
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    let want = [
        "created_at",
        "created_by",
        "display",
        "expires_at",
        "id",
        "key",
        "last_used_at",
        "name",
        "scopes",
    ];
    if fields != want {
        return Err(format!("fields {fields:?}, want {want:?}"));
    }
    let key = body["key"].as_str().ok_or("key is not a string")?;
    if !key.starts_with("nxr_") {
        return Err("key does not start with nxr_".into());
    }
    if !body["last_used_at"].is_null() {
        return Err("last_used_at is not null".into());
    }
    Ok(())
}

/// A 201 for a key created by the key `creator_id`, expiring at `expires_at`.
fn minted_by(creator_id: &str, expires_at: &str) -> BodyCheck {
    let (creator_id, expires_at) = (creator_id.to_owned(), expires_at.to_owned());
    satisfies(move |b| {
        created_key_shape(b)?;
        if b["expires_at"] != expires_at.as_str() {
            return Err(format!("expires_at {}, want {expires_at}", b["expires_at"]));
        }
        if b["created_by"] != json!({"kind": "key", "key_id": creator_id}) {
            return Err(format!("created_by {}", b["created_by"]));
        }
        Ok(())
    })
}

/// Every rule of the auth API as a row. Rows run in order against one fresh [`Fixture`] (the
/// rotate and revoke rows change it).
pub fn table(f: &Fixture) -> Vec<Row> {
    let me = "/api/users/me";
    let keys = "/api/users/me/api-keys";
    let alice = bearer(&f.alice_key);
    let alice_id = f.alice_id.clone();
    let alice_me = BodyCheck::Json(json!({"id": f.alice_id, "email": ALICE_EMAIL}));
    let (rotate_key, rotate_id) = f.rotate_me.clone();
    let (revoke_key, revoke_id) = f.revoke_me.clone();
    let alice_key = f.alice_key.clone();
    let manager_only = bearer(&f.manager_only_key);
    let short_lived = bearer(&f.short_lived_key);
    let (parent_id, child_id) = (f.parent_key.1.clone(), f.child_key.1.clone());
    let login_body = format!(r#"{{"email": "{ALICE_EMAIL}", "password": "{ALICE_PASSWORD}"}}"#);
    let json_ct = Some("application/json");
    vec![
        // --- Login ---
        row(
            "login: correct password → 200 bearer token",
            json_body("/api/auth/login", vec![], json_ct, &login_body),
            expect(
                200,
                satisfies(|b| {
                    let ok = b["token_type"] == "bearer"
                        && b["access_token"]
                            .as_str()
                            .is_some_and(|t| t.split('.').count() == 3)
                        && b["expires_in"].as_u64().is_some();
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("bad login body {b}"))
                    }
                }),
            ),
        ),
        row(
            "login: wrong password → 401, no challenge",
            json_body(
                "/api/auth/login",
                vec![],
                json_ct,
                &format!(r#"{{"email": "{ALICE_EMAIL}", "password": "nope"}}"#),
            ),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: unknown email reads the same as a wrong password",
            json_body(
                "/api/auth/login",
                vec![],
                json_ct,
                r#"{"email": "nobody@example.com", "password": "nope"}"#,
            ),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 1 of 5 for an email → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 2 → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 3 → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 4 → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: failure 5 → 401",
            mallory(),
            challenge(401, "Incorrect email or password", None),
        ),
        row(
            "login: the email is now locked → 429 + Retry-After, never 401",
            mallory(),
            Expect {
                status: 429,
                body: BodyCheck::Detail("Too many requests"),
                www_authenticate: None,
                retry_after: Some(ANY_SECONDS),
                allow: None,
            },
        ),
        row(
            "login: missing field → 422 missing",
            json_body("/api/auth/login", vec![], json_ct, r#"{"email": "a@b.c"}"#),
            expect(
                422,
                issue(json!(["body", "password"]), "Field required", "missing"),
            ),
        ),
        row(
            "login: wrong type → 422 string_type",
            json_body(
                "/api/auth/login",
                vec![],
                json_ct,
                r#"{"email": 5, "password": "x"}"#,
            ),
            expect(
                422,
                issue(
                    json!(["body", "email"]),
                    "Input should be a valid string",
                    "string_type",
                ),
            ),
        ),
        row(
            "login: malformed JSON → 422 json_invalid at the byte offset",
            json_body("/api/auth/login", vec![], json_ct, r#"{"email": "#),
            expect(
                422,
                issue(json!(["body", 10]), "JSON decode error", "json_invalid"),
            ),
        ),
        row(
            "login: empty body → 422 missing body",
            json_body("/api/auth/login", vec![], json_ct, ""),
            expect(422, issue(json!(["body"]), "Field required", "missing")),
        ),
        row(
            "login: non-JSON content type → 422",
            json_body("/api/auth/login", vec![], Some("text/plain"), &login_body),
            expect(
                422,
                issue(
                    json!(["body"]),
                    "Content-Type must be application/json",
                    "model_attributes_type",
                ),
            ),
        ),
        row(
            "login: body over 64 KiB → 413",
            json_body("/api/auth/login", vec![], json_ct, &" ".repeat(65 * 1024)),
            challenge(413, "Request body too large", None),
        ),
        // --- Credentials in the Authorization header ---
        row(
            "no credentials → 401 + Bearer challenge",
            http("GET", me, vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "API key → 200 {id, email}",
            http("GET", me, alice.clone()),
            expect(200, alice_me.clone()),
        ),
        row(
            "JWT from login → 200",
            http("GET", me, bearer(&f.alice_jwt)),
            expect(200, alice_me.clone()),
        ),
        row(
            "scheme is case-insensitive (bearer)",
            http(
                "GET",
                me,
                vec![(
                    "authorization",
                    format!("bearer {}", f.alice_key).into_bytes(),
                )],
            ),
            expect(200, alice_me.clone()),
        ),
        row(
            "scheme is case-insensitive (BEARER)",
            http(
                "GET",
                me,
                vec![(
                    "authorization",
                    format!("BEARER {}", f.alice_jwt).into_bytes(),
                )],
            ),
            expect(200, alice_me.clone()),
        ),
        row(
            "another scheme → 401 as if absent",
            http(
                "GET",
                me,
                vec![("authorization", b"Basic YWxpY2U6cHc=".to_vec())],
            ),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "empty bearer token → 401 invalid_request",
            http("GET", me, vec![("authorization", b"Bearer ".to_vec())]),
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        row(
            "non-ASCII bytes → 401 invalid_request",
            http(
                "GET",
                me,
                vec![("authorization", b"Bearer nxr_\xc3\xa9t\xc3\xa9".to_vec())],
            ),
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        row(
            "two Authorization headers, even equal → 401 invalid_request",
            http("GET", me, [alice.clone(), alice.clone()].concat()),
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        row(
            "garbage token → 401 invalid_token",
            http("GET", me, bearer("not-a-token")),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "tampered key → 401 invalid_token",
            http("GET", me, bearer(&tampered(&f.alice_key))),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "revoked key → 401 invalid_token",
            http("GET", me, bearer(&f.revoked_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "expired key → 401 invalid_token",
            http("GET", me, bearer(&f.expired_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "expired JWT → 401 invalid_token",
            http("GET", me, bearer(&f.expired_jwt)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "JWT of another issuer's secret → 401 invalid_token",
            http("GET", me, bearer(&f.foreign_jwt)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "?token= on a REST route is ignored → 401 missing",
            http("GET", format!("{me}?token={}", f.alice_key), vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "?token= on a REST route does not conflict with the header",
            http("GET", format!("{me}?token=other"), alice.clone()),
            expect(200, alice_me.clone()),
        ),
        row(
            "store unavailable → 503 + Retry-After, never 401",
            http("GET", me, bearer(&f.unavailable_key)),
            Expect {
                status: 503,
                body: BodyCheck::Detail("Service temporarily unavailable"),
                www_authenticate: None,
                retry_after: Some("1"),
                allow: None,
            },
        ),
        // --- Key management ---
        row(
            "list without credentials → 401",
            http("GET", keys, vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "list without keys:manage → 403 insufficient_scope",
            http("GET", keys, bearer(&f.reader_key)),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "create without keys:manage → 403 before the body is read",
            json_body(keys, bearer(&f.reader_key), json_ct, "not json"),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "list → 200, never a key, secret or digest",
            http("GET", keys, alice.clone()),
            expect(
                200,
                satisfies(move |b| {
                    let list = b.as_array().ok_or("not an array")?;
                    if list.len() < 5 {
                        return Err(format!("expected alice's keys, got {}", list.len()));
                    }
                    let text = b.to_string();
                    if text.contains(&alice_key)
                        || text.contains("digest")
                        || list.iter().any(|k| k.get("key").is_some())
                    {
                        return Err(format!("list leaks key material: {text}"));
                    }
                    Ok(())
                }),
            ),
        ),
        row(
            "create → 201 {id, name, key, created_at, last_used_at, scopes, expires_at, display}",
            json_body(keys, alice.clone(), json_ct, r#"{"name": "CI pipeline"}"#),
            expect(
                201,
                satisfies(|b| {
                    created_key_shape(b)?;
                    if b["name"] != "CI pipeline"
                        || b["scopes"] != json!([AGENTS_READ, KEYS_MANAGE])
                    {
                        return Err(format!("unexpected {b}"));
                    }
                    Ok(())
                }),
            ),
        ),
        row(
            "create with a JWT works too",
            json_body(
                keys,
                bearer(&f.alice_jwt),
                Some("application/json; charset=utf-8"),
                r#"{"name": "from jwt", "scopes": ["agents:read"]}"#,
            ),
            expect(
                201,
                satisfies(|b| {
                    if b["scopes"] == json!([AGENTS_READ]) {
                        created_key_shape(b)
                    } else {
                        Err(format!("{b}"))
                    }
                }),
            ),
        ),
        row(
            "create: missing name → 422",
            json_body(keys, alice.clone(), json_ct, r#"{"scopes": []}"#),
            expect(
                422,
                issue(json!(["body", "name"]), "Field required", "missing"),
            ),
        ),
        row(
            "create: wrong type → 422",
            json_body(
                keys,
                alice.clone(),
                json_ct,
                r#"{"name": "x", "scopes": "agents:read"}"#,
            ),
            expect(
                422,
                issue(
                    json!(["body", "scopes"]),
                    "Input should be a valid list",
                    "list_type",
                ),
            ),
        ),
        row(
            "create: malformed JSON → 422",
            json_body(keys, alice.clone(), json_ct, "{name: x}"),
            expect(
                422,
                issue(json!(["body", 1]), "JSON decode error", "json_invalid"),
            ),
        ),
        row(
            "create: form content type → 422",
            json_body(
                keys,
                alice.clone(),
                Some("application/x-www-form-urlencoded"),
                "name=x",
            ),
            expect(
                422,
                issue(
                    json!(["body"]),
                    "Content-Type must be application/json",
                    "model_attributes_type",
                ),
            ),
        ),
        row(
            "create: expiry in the past → 422",
            json_body(
                keys,
                alice.clone(),
                json_ct,
                r#"{"name": "x", "expires_at": "2001-01-01T00:00:00Z"}"#,
            ),
            expect(
                422,
                issue(
                    json!(["body", "expires_at"]),
                    "Expiry must be in the future",
                    "value_error",
                ),
            ),
        ),
        row(
            "create: scopes the creator lacks → 403",
            json_body(
                keys,
                bearer(&f.manager_only_key),
                json_ct,
                r#"{"name": "x", "scopes": ["agents:read"]}"#,
            ),
            challenge(403, "Cannot grant scopes you do not have", None),
        ),
        row(
            "rotate → 200 with a new key, same id",
            http("POST", format!("{keys}/{rotate_id}/rotate"), alice.clone()),
            expect(
                200,
                satisfies(move |b| {
                    created_key_shape(b)?;
                    if b["id"] != rotate_id.as_str() {
                        Err(format!("id changed: {b}"))
                    } else {
                        Ok(())
                    }
                }),
            ),
        ),
        row(
            "the rotated-out key → 401 at once",
            http("GET", me, bearer(&rotate_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "rotate another user's key → 404",
            http(
                "POST",
                format!("{keys}/{}/rotate", f.bob_key_id),
                alice.clone(),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "rotate an unknown id → 404",
            http(
                "POST",
                format!("{keys}/{}/rotate", KeyId::new_random()),
                alice.clone(),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "rotate a malformed id → 422 uuid_parsing",
            http("POST", format!("{keys}/not-a-uuid/rotate"), alice.clone()),
            expect(
                422,
                issue(
                    json!(["path", "key_id"]),
                    "Input should be a valid UUID",
                    "uuid_parsing",
                ),
            ),
        ),
        row(
            "rotate without keys:manage → 403",
            http(
                "POST",
                format!("{keys}/{}/rotate", f.bob_key_id),
                bearer(&f.reader_key),
            ),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "revoke → 204, empty",
            http("DELETE", format!("{keys}/{revoke_id}"), alice.clone()),
            expect(204, BodyCheck::Empty),
        ),
        row(
            "the revoked key → 401",
            http("GET", me, bearer(&revoke_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "revoke again → 404: a revoked key is gone, as from the list and rotate",
            http("DELETE", format!("{keys}/{revoke_id}"), alice.clone()),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "revoke another user's key → 404",
            http("DELETE", format!("{keys}/{}", f.bob_key_id), alice.clone()),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "revoke a malformed id → 422",
            http("DELETE", format!("{keys}/123"), alice.clone()),
            expect(
                422,
                issue(
                    json!(["path", "key_id"]),
                    "Input should be a valid UUID",
                    "uuid_parsing",
                ),
            ),
        ),
        // --- Routing under /api ---
        row(
            "unknown route → 404 JSON",
            http("GET", "/api/nope", vec![]),
            challenge(404, "Not Found", None),
        ),
        row(
            "unknown nested route → 404 JSON",
            http("GET", "/api/users/me/api-keys/x/y/z", alice.clone()),
            challenge(404, "Not Found", None),
        ),
        row(
            "wrong method → 405 JSON with Allow",
            http("PUT", me, vec![]),
            not_allowed("GET,HEAD"),
        ),
        row(
            "HEAD on a GET route → 200, no body (both frameworks)",
            http("HEAD", me, alice.clone()),
            expect(200, BodyCheck::Empty),
        ),
        row(
            "wrong method on login → 405 JSON with Allow",
            http("GET", "/api/auth/login", vec![]),
            not_allowed("POST"),
        ),
        // --- The key-management policy ---
        row(
            "policy: a keys:manage-only key cannot rotate a broader sibling → 404",
            http(
                "POST",
                format!("{keys}/{}/rotate", f.rotate_me.1),
                manager_only.clone(),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "policy: a keys:manage-only key cannot revoke a broader sibling → 404",
            http(
                "DELETE",
                format!("{keys}/{}", f.rotate_me.1),
                manager_only.clone(),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "policy: a keys:manage-only key lists only keys within its scopes",
            http("GET", keys, manager_only.clone()),
            expect(
                200,
                satisfies(move |b| {
                    let items = b.as_array().ok_or("not a list")?;
                    let within = |k: &&Value| k["scopes"] == json!([KEYS_MANAGE]);
                    if !items.is_empty() && items.iter().all(|k| within(&k)) {
                        Ok(())
                    } else {
                        Err(format!("listed keys beyond keys:manage: {b}"))
                    }
                }),
            ),
        ),
        row(
            "policy: a key with an expiry creates a key that expires with it",
            json_body(keys, short_lived.clone(), json_ct, r#"{"name": "minted"}"#),
            expect(
                201,
                minted_by(&f.short_lived_key_id, &f.short_lived_expires_at),
            ),
        ),
        row(
            "policy: a later requested expiry is capped at the creator's",
            json_body(
                keys,
                short_lived.clone(),
                json_ct,
                r#"{"name": "minted later", "expires_at": "2999-01-01T00:00:00Z"}"#,
            ),
            expect(
                201,
                minted_by(&f.short_lived_key_id, &f.short_lived_expires_at),
            ),
        ),
        row(
            "policy: a key with an expiry lists no key that outlives it",
            http("GET", keys, short_lived.clone()),
            expect(
                200,
                satisfies(|b| {
                    let items = b.as_array().ok_or("not a list")?;
                    if !items.is_empty() && items.iter().all(|k| !k["expires_at"].is_null()) {
                        Ok(())
                    } else {
                        Err(format!("listed a key without expiry: {b}"))
                    }
                }),
            ),
        ),
        row(
            "lineage: the list says what created each key",
            http("GET", keys, alice.clone()),
            expect(200, {
                let (parent_id, child_id) = (parent_id.clone(), child_id.clone());
                satisfies(move |b| {
                    let items = b.as_array().ok_or("not a list")?;
                    let by_id = |id: &str| items.iter().find(|k| k["id"] == id).cloned();
                    let child = by_id(&child_id).ok_or("child not listed")?;
                    let parent = by_id(&parent_id).ok_or("parent not listed")?;
                    if child["created_by"] == json!({"kind": "key", "key_id": parent_id})
                        && parent["created_by"] == json!({"kind": "user"})
                    {
                        Ok(())
                    } else {
                        Err(format!("created_by: child {child}, parent {parent}"))
                    }
                })
            }),
        ),
        row(
            "cascade: a value other than a boolean → 422",
            http(
                "DELETE",
                format!("{keys}/{parent_id}?cascade=maybe"),
                alice.clone(),
            ),
            expect(
                422,
                issue(
                    json!(["query", "cascade"]),
                    "Input should be a valid boolean, unable to interpret input",
                    "bool_parsing",
                ),
            ),
        ),
        row(
            "cascade: revoke a key and every key it created → 204",
            http(
                "DELETE",
                format!("{keys}/{parent_id}?cascade=true"),
                alice.clone(),
            ),
            expect(204, BodyCheck::Empty),
        ),
        row(
            "cascade: the created key is revoked with its creator → 401",
            http("GET", "/agents", bearer(&f.child_key.0)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "cascade: the creator itself → 401",
            http("GET", "/agents", bearer(&f.parent_key.0)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        // --- Live users ---
        row(
            "live users: a valid JWT whose sub names no user → 401",
            http("GET", "/agents", bearer(&f.ghost_jwt)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "live users: a standard JWT without scope carries the user's scopes → 200",
            http("GET", "/agents", bearer(&f.standard_jwt)),
            expect(200, BodyCheck::Json(json!({"owner": alice_id.clone()}))),
        ),
        row(
            "live users: a disabled user's key → 401",
            http("GET", "/agents", bearer(&f.disabled_user_credentials[0])),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "live users: a disabled user's JWT → 401",
            http("GET", "/agents", bearer(&f.disabled_user_credentials[1])),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "live users: a narrowed user's key loses the scope → 403",
            http("GET", "/agents", bearer(&f.narrowed_user_credentials[0])),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "live users: a narrowed user's JWT loses the scope → 403",
            http("GET", "/agents", bearer(&f.narrowed_user_credentials[1])),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "live users: a narrowed user's session still lists the key holding the lost scope",
            http("GET", keys, bearer(&f.narrowed_user_credentials[1])),
            expect(200, {
                let id = f.narrowed_user_key_id.clone();
                satisfies(move |b| {
                    let items = b.as_array().ok_or("not a list")?;
                    if items.iter().any(|k| k["id"] == id.as_str()) {
                        Ok(())
                    } else {
                        Err(format!("the key is hidden from its user: {b}"))
                    }
                })
            }),
        ),
        row(
            "live users: … but cannot rotate it (the new secret would store the lost scope) → 404",
            http(
                "POST",
                format!("{keys}/{}/rotate", f.narrowed_user_key_id),
                bearer(&f.narrowed_user_credentials[1]),
            ),
            challenge(404, KEY_NOT_FOUND, None),
        ),
        row(
            "live users: … and can revoke it → 204",
            http(
                "DELETE",
                format!("{keys}/{}", f.narrowed_user_key_id),
                bearer(&f.narrowed_user_credentials[1]),
            ),
            expect(204, BodyCheck::Empty),
        ),
        // --- Layer / middleware and extractors on the application's own routes ---
        row(
            "layer + RequireScope<AgentsRead>: allowed → 200",
            http("GET", "/agents", alice.clone()),
            expect(200, BodyCheck::Json(json!({"owner": alice_id.clone()}))),
        ),
        row(
            "layer: no credentials → 401",
            http("GET", "/agents", vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "layer: bad token → 401",
            http("GET", "/agents", bearer(&f.revoked_key)),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "layer: ?token= not accepted without opt-in",
            http("GET", format!("/agents?token={}", f.alice_key), vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "RequireScope<AgentsRead> without the scope → 403",
            http("GET", "/agents", bearer(&f.manager_only_key)),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "layer: store unavailable → 503",
            http("GET", "/agents", bearer(&f.unavailable_key)),
            Expect {
                status: 503,
                body: BodyCheck::Detail("Service temporarily unavailable"),
                www_authenticate: None,
                retry_after: Some("1"),
                allow: None,
            },
        ),
        row(
            "optional layer: no credentials → no principal",
            http("GET", "/optional", vec![]),
            expect(200, BodyCheck::Json(json!({"owner": null}))),
        ),
        row(
            "optional layer: a credential → the principal",
            http("GET", "/optional", bearer(&f.alice_jwt)),
            expect(200, BodyCheck::Json(json!({"owner": alice_id.clone()}))),
        ),
        row(
            "optional layer: a bad credential → 401",
            http("GET", "/optional", bearer("nxr_bad")),
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        row(
            "an app handler's rate-limit rejection → 429 + Retry-After",
            http("GET", "/limited", vec![]),
            Expect {
                status: 429,
                body: BodyCheck::Detail("Too many requests"),
                www_authenticate: None,
                retry_after: Some("7"),
                allow: None,
            },
        ),
        // --- WebSockets: ?token= accepted only here, checked before the upgrade ---
        ws_row(
            "WebSocket: key in ?token= → 101",
            format!("/ws/chat-1?token={}", f.alice_key),
            vec![],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: JWT in ?token= → 101",
            format!("/ws/chat-1?token={}", f.alice_jwt),
            vec![],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: header only → 101",
            "/ws/chat-1".into(),
            vec![("authorization", format!("Bearer {}", f.alice_key))],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: header and the same ?token= → 101",
            format!("/ws/chat-1?token={}", f.alice_key),
            vec![("authorization", format!("Bearer {}", f.alice_key))],
            ws_ok(&f.alice_id),
        ),
        ws_row(
            "WebSocket: no token → 401, no upgrade",
            "/ws/chat-1".into(),
            vec![],
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        ws_row(
            "WebSocket: bad token → 401, no upgrade",
            "/ws/chat-1?token=nxr_not_a_key".into(),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: revoked key → 401, no upgrade",
            format!("/ws/chat-1?token={}", f.revoked_key),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: expired JWT → 401, no upgrade",
            format!("/ws/chat-1?token={}", f.expired_jwt),
            vec![],
            challenge(401, INVALID_CREDENTIALS, INVALID_TOKEN),
        ),
        ws_row(
            "WebSocket: header and a different ?token= → 401, no upgrade",
            format!("/ws/chat-1?token={}", f.alice_jwt),
            vec![("authorization", format!("Bearer {}", f.alice_key))],
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
        ws_row(
            "WebSocket: empty ?token= → 401, no upgrade",
            "/ws/chat-1?token=".into(),
            vec![],
            challenge(401, INVALID_AUTH_REQUEST, INVALID_REQUEST),
        ),
    ]
}

/// The key with its last character changed (to one it certainly is not).
fn tampered(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    format!("{head}{}", if last == "x" { 'y' } else { 'x' })
}

/// A failed login for an email of its own (throttled after five failures).
fn mallory() -> Probe {
    json_body(
        "/api/auth/login",
        vec![],
        Some("application/json"),
        r#"{"email": "mallory@example.com", "password": "guess"}"#,
    )
}

fn ws_row(
    name: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    expect: Expect,
) -> Row {
    Row {
        name,
        send: Probe::WebSocket { path, headers },
        expect,
    }
}

/// An accepted WebSocket: 101, then the server's greeting naming the principal.
fn ws_ok(owner: &str) -> Expect {
    expect(
        101,
        BodyCheck::Json(Value::String(format!("hello {owner} in chat-1"))),
    )
}

fn check_body(check: &BodyCheck, body: &[u8]) -> Result<(), String> {
    match check {
        BodyCheck::Empty if body.is_empty() => Ok(()),
        BodyCheck::Empty => Err(format!(
            "expected an empty body, got {:?}",
            String::from_utf8_lossy(body)
        )),
        _ => {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                format!(
                    "body is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(body)
                )
            })?;
            match check {
                BodyCheck::Json(want) if &value == want => Ok(()),
                BodyCheck::Json(want) => Err(format!("body {value}, want {want}")),
                BodyCheck::Detail(detail) if value == json!({"detail": detail}) => Ok(()),
                BodyCheck::Detail(detail) => Err(format!("body {value}, want detail {detail:?}")),
                BodyCheck::Satisfies(f) => f(&value),
                BodyCheck::Empty => unreachable!("handled above"),
            }
        }
    }
}

fn check_headers(
    expect: &Expect,
    www: Option<&[u8]>,
    retry: Option<&[u8]>,
    content_type: Option<&[u8]>,
    has_body: bool,
) -> Result<(), String> {
    let show = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned());
    if www != expect.www_authenticate.map(str::as_bytes) {
        return Err(format!(
            "WWW-Authenticate {:?}, want {:?}",
            show(www),
            expect.www_authenticate
        ));
    }
    let any_ok = expect.retry_after == Some(ANY_SECONDS)
        && retry
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s > 0);
    if !any_ok && retry != expect.retry_after.map(str::as_bytes) {
        return Err(format!(
            "Retry-After {:?}, want {:?}",
            show(retry),
            expect.retry_after
        ));
    }
    if has_body && content_type != Some(b"application/json".as_slice()) {
        return Err(format!(
            "Content-Type {:?}, want application/json",
            show(content_type)
        ));
    }
    Ok(())
}

async fn run_http(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&'static str, Vec<u8>)],
    body: Option<&Vec<u8>>,
    expect: &Expect,
) -> Result<(), String> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client.request(method, format!("{base}{path}"));
    for (name, value) in headers {
        let value = reqwest::header::HeaderValue::from_bytes(value).map_err(|e| e.to_string())?;
        request = request.header(*name, value);
    }
    if let Some(body) = body {
        request = request.body(body.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let get = |name: &str| response.headers().get(name).map(|v| v.as_bytes().to_vec());
    let (www, retry, content_type, allow) = (
        get("www-authenticate"),
        get("retry-after"),
        get("content-type"),
        get("allow"),
    );
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    if status != expect.status {
        return Err(format!(
            "status {status}, want {} (body {:?})",
            expect.status,
            String::from_utf8_lossy(&body)
        ));
    }
    check_headers(
        expect,
        www.as_deref(),
        retry.as_deref(),
        content_type.as_deref(),
        !body.is_empty(),
    )?;
    if status == 405 && allow.is_none() {
        return Err("405 without an Allow header".into());
    }
    if let Some(want) = expect.allow {
        // Compare as a set of methods: the order is not significant.
        let methods = |v: &[u8]| {
            let mut m: Vec<String> = String::from_utf8_lossy(v)
                .split(',')
                .map(|x| x.trim().to_ascii_uppercase())
                .collect();
            m.sort();
            m
        };
        if allow.as_deref().map(methods) != Some(methods(want.as_bytes())) {
            return Err(format!(
                "Allow {:?}, want {want:?}",
                allow.map(|v| String::from_utf8_lossy(&v).into_owned())
            ));
        }
    }
    check_body(&expect.body, &body)
}

async fn run_websocket(
    base: &str,
    path: &str,
    headers: &[(&'static str, String)],
    expect: &Expect,
) -> Result<(), String> {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{}{path}", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    for (name, value) in headers {
        let value = value.parse().map_err(|e| format!("header value: {e}"))?;
        request.headers_mut().append(*name, value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, response)) => {
            let status = response.status().as_u16();
            if status != expect.status {
                return Err(format!(
                    "WebSocket upgraded ({status}), want {}",
                    expect.status
                ));
            }
            let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
                .await
                .map_err(|_| "no greeting within 5 s".to_owned())?
                .ok_or("socket closed before the greeting")?
                .map_err(|e| format!("socket error: {e}"))?;
            let text = message
                .into_text()
                .map_err(|e| format!("greeting is not text: {e}"))?;
            match &expect.body {
                BodyCheck::Json(Value::String(want)) if text.as_str() == want => Ok(()),
                other => Err(format!("greeting {:?}, want {other:?}", text.as_str())),
            }
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            if status != expect.status {
                return Err(format!(
                    "handshake answered {status}, want {}",
                    expect.status
                ));
            }
            let get = |name: &str| response.headers().get(name).map(|v| v.as_bytes().to_vec());
            let body = response.body().clone().unwrap_or_default();
            check_headers(
                expect,
                get("www-authenticate").as_deref(),
                get("retry-after").as_deref(),
                get("content-type").as_deref(),
                !body.is_empty(),
            )?;
            check_body(&expect.body, &body)
        }
        Err(e) => Err(format!("handshake failed: {e}")),
    }
}

/// Sends every row to the server at `base_url` (e.g. `http://127.0.0.1:4242`), in order, and
/// returns one line per failing row (empty: all passed).
pub async fn run_table(base_url: &str, rows: &[Row]) -> Vec<String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain HTTP client builds");
    let mut failures = Vec::new();
    for row in rows {
        let result = match &row.send {
            Probe::Http {
                method,
                path,
                headers,
                body,
            } => {
                run_http(
                    &client,
                    base_url,
                    method,
                    path,
                    headers,
                    body.as_ref(),
                    &row.expect,
                )
                .await
            }
            Probe::WebSocket { path, headers } => {
                run_websocket(base_url, path, headers, &row.expect).await
            }
        };
        if let Err(why) = result {
            failures.push(format!("{}: {why}", row.name));
        }
    }
    failures
}
