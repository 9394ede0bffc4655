//! The fixture every suite runs on: an authenticator over any stores and JWT ring, with users,
//! keys and tokens in every state.

use std::{sync::Arc, time::Duration};

use nexora_auth::{
    AuditStore, Authenticator, Clock, Credential, JwtAlgorithm, JwtConfig, JwtKeys,
    MemoryAuditStore, MemoryKeyStore, MemoryTicketStore, MemoryUserStore, NewKey, OwnerId,
    PossessionLimit, Principal, RevokeOptions, Scopes, SecretBytes, SecretString, TicketStore,
    TokenAuthority, TokenRequest, UserStore, audit::Actor, store::KeyStore,
};
use nexora_auth_http::{
    Api,
    scopes::{AGENTS_READ, AUDIT_READ, KEYS_MANAGE},
    secret_scanning::{GitHubKeys, SecretScanning},
};
use nexora_auth_testkit::{
    ManualClock, authenticator_builder,
    failure::{FlakyStore, StoreCalls},
    github::{GitHubSigner, key_document},
    keys,
};
use serde_json::json;
use time::OffsetDateTime;

/// The stores a [`Fixture`] runs on: any [`KeyStore`], [`UserStore`], [`AuditStore`] and [`TicketStore`]
/// (in-memory, SQLite, Postgres…), plus whatever must live as long as they do (a temporary
/// directory, a test schema).
pub struct Stores {
    name: &'static str,
    keys: Arc<dyn KeyStore>,
    users: Arc<dyn UserStore>,
    tickets: Arc<dyn TicketStore>,
    audit: Arc<dyn AuditStore>,
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
    /// Stores named `name` (for messages), with WebSocket tickets in memory until
    /// [`Stores::with_tickets`] says otherwise.
    pub fn new(
        name: &'static str,
        keys: Arc<dyn KeyStore>,
        users: Arc<dyn UserStore>,
        audit: Arc<dyn AuditStore>,
    ) -> Self {
        Self {
            name,
            keys,
            users,
            tickets: Arc::new(MemoryTicketStore::new()),
            audit,
            guard: None,
        }
    }

    /// Keeps WebSocket tickets in `tickets`.
    pub fn with_tickets(mut self, tickets: Arc<dyn TicketStore>) -> Self {
        self.tickets = tickets;
        self
    }

    /// One store value that is all four (SQLite, Postgres).
    pub fn all_in_one<S: KeyStore + UserStore + AuditStore + TicketStore>(
        name: &'static str,
        store: S,
    ) -> Self {
        let store = Arc::new(store);
        Self::new(name, store.clone(), store.clone(), store.clone()).with_tickets(store)
    }

    /// The in-memory stores of the core.
    pub fn memory() -> Self {
        Self::new(
            "memory",
            Arc::new(MemoryKeyStore::new()),
            Arc::new(MemoryUserStore::new()),
            Arc::new(MemoryAuditStore::new()),
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
            Self::Asymmetric(JwtAlgorithm::Es256) => Some(keys::ES256_A),
            Self::Asymmetric(JwtAlgorithm::EdDsa) => Some(keys::ED25519),
            Self::Asymmetric(JwtAlgorithm::Rs256) => Some(keys::RS256),
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
    pub keys: Arc<FlakyStore<dyn KeyStore>>,
    /// Calls to the key and user stores so far.
    pub store_calls: Arc<StoreCalls>,
    /// The audit store the authenticator records to (its calls are counted apart from
    /// [`Fixture::store_calls`]; fail it to see that a change stands without its event).
    pub audit: Arc<FlakyStore<dyn AuditStore>>,
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
    /// A key of Ivy, a user who holds only `audit:read`, created by the application.
    pub auditor_key: String,
    /// Its id.
    pub auditor_key_id: String,
    /// Finn's user id: the owner of the keys the leak rows end.
    pub finn_id: String,
    /// Finn's keys that leak on GitHub: a key that created [`Fixture::leaked_child`], and its
    /// id.
    pub leaked_key: (String, String),
    /// A key created by [`Fixture::leaked_key`] (so revoked with it).
    pub leaked_child: String,
    /// Finn's key that a finder revokes by possession.
    pub found_key: String,
    /// Finn's key that stays live: reports and requests that must not end it name it.
    pub finn_key: String,
    /// The GitHub key the served [`Fixture::api`] accepts secret-scanning reports from.
    pub github: GitHubSigner,
    /// A P-256 key GitHub never published (the attacker's).
    pub not_github: GitHubSigner,
    /// Every key text the fixture created, for leak checks.
    pub all_keys: Vec<String>,
    /// A token derived from [`Fixture::alice_key`] (all its scopes).
    pub derived_token: String,
    /// A token derived from [`Fixture::short_lived_key`] (it acts as that key).
    pub derived_from_short_lived: String,
    /// A token derived from a key of Alice's revoked since.
    pub derived_of_revoked: String,
    /// WebSocket tickets issued for [`Fixture::alice_key`]: for `chat-1`, for any chat, for
    /// `chat-2`, and a fourth for `chat-1` whose lifetime ran out; each used at most once by
    /// the table.
    pub ws_tickets: [String; 4],
    /// A WebSocket ticket for any chat, issued for a key revoked since.
    pub ws_ticket_of_revoked: String,
    /// The authenticator's clock: stopped, and moved two minutes forward while the fixture is
    /// built (so that the expiring key, the short-lived token and the expired ticket have
    /// expired).
    pub clock: Arc<ManualClock>,
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
            tickets,
            audit,
            guard,
        } = stores;
        let store = Arc::new(FlakyStore::from_arc(keys));
        let store_calls = store.calls().clone();
        let users = FlakyStore::from_arc(users).counting_into(store_calls.clone());
        let audit = Arc::new(FlakyStore::from_arc(audit));
        let clock = Arc::new(ManualClock::starting_now());
        let auth = authenticator_builder(store.clone())
            .users(Arc::new(users))
            .audit(audit.clone())
            .tokens(jwt_authority(
                signing.keys(),
                JwtConfig::new("nexora", "nexora-api").leeway(Duration::ZERO),
            ))
            .clock(clock.clone())
            .ws_tickets(tickets)
            // The suites send many revoke-by-possession requests from one address; the limit
            // itself has tests of its own (tests/leaks.rs).
            .possession_limit(PossessionLimit::default().per_client(100_000))
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
                NewKey::named("expiring").expiring_at(clock.now() + Duration::from_secs(60)),
            )
            .await
            .expect("create expiring key");
        let as_alice_key = auth
            .authenticate(alice_key.key.expose())
            .await
            .expect("alice's key authenticates");
        let expired_ticket = auth
            .issue_ticket(&as_alice_key, Some("chat-1"))
            .await
            .expect("issue a ticket")
            .ticket
            .expose()
            .to_owned();
        clock.advance(time::Duration::minutes(2));
        let mut ws_tickets = Vec::new();
        for chat in [Some("chat-1"), None, Some("chat-2")] {
            let issued = auth
                .issue_ticket(&as_alice_key, chat)
                .await
                .expect("issue a ticket");
            ws_tickets.push(issued.ticket.expose().to_owned());
        }
        ws_tickets.push(expired_ticket);
        let derive = |principal: Principal| {
            let auth = auth.clone();
            async move {
                auth.derive_token(&principal, TokenRequest::new())
                    .await
                    .expect("derive a token")
                    .token
                    .token
                    .expose()
                    .to_owned()
            }
        };
        let derived_token = derive(as_alice_key.clone()).await;
        let doomed = key(alice.id.clone(), &alice_all, "doomed").await;
        let as_doomed = auth
            .authenticate(doomed.key.expose())
            .await
            .expect("the key authenticates");
        let derived_of_revoked = derive(as_doomed.clone()).await;
        let ws_ticket_of_revoked = auth
            .issue_ticket(&as_doomed, None)
            .await
            .expect("issue a ticket")
            .ticket
            .expose()
            .to_owned();
        auth.revoke_key(&alice_session, doomed.info.id, RevokeOptions::key_only())
            .await
            .expect("revoke");

        let short = jwt_authority(
            hs256(JWT_SECRET),
            JwtConfig::new("nexora", "nexora-api").access_token_ttl(Duration::from_secs(1)),
        );
        let expired_jwt = short
            .issue(&alice.id, &all)
            .expect("issue")
            .token
            .expose()
            .to_owned();
        let foreign = jwt_authority(
            hs256(b"another service's secret, also 32+ bytes long"),
            JwtConfig::new("nexora", "nexora-api"),
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
        let derived_from_short_lived = derive(
            auth.authenticate(short_lived.key.expose())
                .await
                .expect("the short-lived key authenticates"),
        )
        .await;
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
        let admin = Actor::system("fixture");
        auth.disable_user(&carol, &admin)
            .await
            .expect("disable carol");
        auth.set_user_scopes(
            &dave,
            &Scopes::new([KEYS_MANAGE]).expect("valid scopes"),
            &admin,
        )
        .await
        .expect("narrow dave");

        let audit_only = Scopes::new([AUDIT_READ]).expect("valid scopes");
        let ivy = auth
            .register_user(
                "ivy@example.com",
                &SecretString::from("ivy reads the audit trail"),
                audit_only.clone(),
            )
            .await
            .expect("register ivy");
        let auditor = key(ivy.id, &[AUDIT_READ], "auditor").await;

        // Leaks: Finn's keys, found on GitHub or by someone else.
        let finn = auth
            .register_user(
                "finn@example.com",
                &SecretString::from("finn's own password"),
                all.clone(),
            )
            .await
            .expect("register finn");
        let leaked = key(finn.id.clone(), &alice_all, "leaked").await;
        let as_leaked = auth
            .authenticate(leaked.key.expose())
            .await
            .expect("the leaked key authenticates");
        let leaked_child = auth
            .create_key(&as_leaked, NewKey::named("minted by the leaked key"))
            .await
            .expect("a key creates a key");
        let found = key(finn.id.clone(), &alice_all, "found").await;
        let finn_key = key(finn.id.clone(), &alice_all, "kept").await;

        let text = text_of;
        let all_keys = [
            &auditor,
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
            &doomed,
            &leaked,
            &leaked_child,
            &found,
            &finn_key,
        ]
        .into_iter()
        .map(text)
        .collect();
        Self {
            stores: name,
            signing,
            keys: store,
            store_calls,
            audit,
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
            auditor_key: text(&auditor),
            auditor_key_id: auditor.info.id.to_string(),
            finn_id: finn.id.as_str().to_owned(),
            leaked_key: (text(&leaked), leaked.info.id.to_string()),
            leaked_child: text(&leaked_child),
            found_key: text(&found),
            finn_key: text(&finn_key),
            github: GitHubSigner::from_seed(1),
            not_github: GitHubSigner::from_seed(2),
            all_keys,
            derived_token,
            derived_from_short_lived,
            derived_of_revoked,
            ws_tickets: ws_tickets
                .try_into()
                .expect("four tickets were issued above"),
            ws_ticket_of_revoked,
            clock,
            auth,
            _guard: guard.map(Guard),
        }
    }
}

impl Fixture {
    /// The endpoints over the fixture's authenticator as the suites serve them: the defaults,
    /// and GitHub's secret-scanning reports signed by [`Fixture::github`].
    pub fn api(&self) -> Api {
        let keys = GitHubKeys::from_json(key_document(&[&self.github]).as_bytes())
            .expect("the test key document loads");
        Api::new(self.auth.clone()).secret_scanning(SecretScanning::new(keys))
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
