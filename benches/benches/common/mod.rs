//! The cases and baselines that the `key_path` bench times and the `instructions` bench counts,
//! written once so that the two always measure the same work.

use std::{collections::HashMap, hint::black_box, sync::Arc};

use hmac::{Hmac, KeyInit, Mac};
use nexora_auth::{
    ApiKey, Authenticator, Credential, JwtConfig, JwtKeys, MemoryKeyStore, NewKey, OwnerId,
    PepperRing, Principal, Scopes, SecretBytes, TokenAuthority,
};
use sha2::Sha256;

pub(crate) const PEPPER: &[u8] = b"benchmark-pepper-benchmark-pepper-0123";
pub(crate) const JWT_SECRET: &[u8] = b"benchmark-jwt-secret-benchmark-jwt-secret";
/// Keys in the store (and entries in the baseline's map), so that no lookup is into a
/// one-entry map.
const STORE_KEYS: usize = 10_000;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

pub(crate) fn pepper_ring() -> PepperRing {
    PepperRing::new(1, SecretBytes::new(PEPPER.to_vec())).expect("valid pepper")
}

/// An `Authenticator` over a `MemoryKeyStore` holding [`STORE_KEYS`] keys, and the last key
/// created (valid, not revoked, no expiry).
pub(crate) fn memory_authenticator(rt: &tokio::runtime::Runtime) -> (Authenticator, ApiKey) {
    let auth = Authenticator::builder(Arc::new(MemoryKeyStore::new()), pepper_ring())
        .build()
        .expect("valid authenticator");
    let owner = Principal::new(
        OwnerId::new("bench"),
        Credential::Internal,
        Scopes::new(["agents:read"]).expect("valid scope"),
    );
    let mut valid = None;
    rt.block_on(async {
        for i in 0..STORE_KEYS {
            let created = auth
                .create_key(&owner, NewKey::named(format!("k{i}")))
                .await
                .expect("the in-memory store accepts the key");
            valid = Some(created.key);
        }
    });
    (auth, valid.expect("STORE_KEYS > 0"))
}

/// A clock that moves 20 µs forward at every reading, so that a key limited to 100,000
/// requests a second (one per 10 µs) is never refused however fast the bench calls: the
/// limit check runs its allowing path every time.
#[derive(Debug)]
pub(crate) struct StepClock(std::sync::atomic::AtomicI64);

impl nexora_auth::Clock for StepClock {
    fn now(&self) -> time::OffsetDateTime {
        let nanos = self
            .0
            .fetch_add(20_000, std::sync::atomic::Ordering::Relaxed);
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .expect("within time's range")
    }
}

/// [`memory_authenticator`] on a [`StepClock`], whose last key has a rate limit (100,000 per
/// second) that it never reaches: the key path with and without the in-process limit check.
pub(crate) fn limited_authenticator(rt: &tokio::runtime::Runtime) -> (Authenticator, ApiKey) {
    let clock = StepClock(std::sync::atomic::AtomicI64::new(1_800_000_000_000_000_000));
    let auth = Authenticator::builder(Arc::new(MemoryKeyStore::new()), pepper_ring())
        .clock(Arc::new(clock))
        .build()
        .expect("valid authenticator");
    let owner = Principal::new(
        OwnerId::new("bench"),
        Credential::Internal,
        Scopes::new(["agents:read"]).expect("valid scope"),
    );
    let limit = nexora_auth::RateLimit::new(100_000, 1).expect("in range");
    let mut valid = None;
    rt.block_on(async {
        for i in 0..STORE_KEYS {
            let request = NewKey::named(format!("k{i}")).with_rate_limit(limit);
            let created = auth
                .create_key(&owner, request)
                .await
                .expect("the in-memory store accepts the key");
            valid = Some(created.key);
        }
    });
    (auth, valid.expect("STORE_KEYS > 0"))
}

/// The key path's baseline: one bare HMAC-SHA256, keyed from scratch, over a key-sized input,
/// plus one lookup in a `HashMap` as large as the store.
pub(crate) struct HmacBaseline {
    map: HashMap<[u8; 16], [u8; 32]>,
    lookup: [u8; 16],
}

impl HmacBaseline {
    pub(crate) fn new() -> Self {
        let map = (0..STORE_KEYS as u128)
            .map(|i| (i.to_le_bytes(), [0; 32]))
            .collect();
        Self {
            map,
            lookup: 4_242u128.to_le_bytes(),
        }
    }

    #[inline]
    pub(crate) fn run(&self, key: &str) -> impl Sized {
        // The pepper is a valid HMAC key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(black_box(PEPPER)).unwrap();
        mac.update(black_box(key.as_bytes()));
        let tag = mac.finalize().into_bytes();
        let hit = self.map.get(black_box(&self.lookup));
        (tag, hit.copied())
    }
}

pub(crate) fn authority() -> TokenAuthority {
    TokenAuthority::new(
        JwtKeys::hs256(&SecretBytes::new(JWT_SECRET.to_vec())).expect("valid secret"),
        JwtConfig::new("nexora", "nexora-api"),
    )
    .expect("valid config")
}

/// Same claims type as the crate reads, for a like-for-like baseline.
#[derive(serde::Deserialize)]
#[allow(
    dead_code,
    reason = "fields are deserialised to measure the cost, not read"
)]
pub(crate) struct Claims {
    sub: String,
    exp: u64,
    iat: Option<u64>,
    jti: Option<String>,
    scope: Option<String>,
}

/// The token, the uncached authority and the baseline's key and validation.
pub(crate) struct JwtCase {
    pub(crate) token: String,
    pub(crate) uncached: TokenAuthority,
    pub(crate) key: jsonwebtoken::DecodingKey,
    pub(crate) validation: jsonwebtoken::Validation,
}

impl JwtCase {
    /// The JWT baseline: a bare `jsonwebtoken::decode` of the token into [`Claims`].
    #[inline]
    pub(crate) fn decode(&self, token: &str) -> jsonwebtoken::TokenData<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).expect("valid")
    }
}

pub(crate) fn jwt_case(authority: &TokenAuthority) -> JwtCase {
    let owner = OwnerId::new("bench-user");
    let scopes = Scopes::new(["agents:read", "keys:manage"]).unwrap();
    let token = authority
        .issue(&owner, &scopes)
        .unwrap()
        .token
        .expose()
        .to_owned();
    // The same validation `TokenAuthority` asks for: the one pinned algorithm, the four
    // required claims, one issuer and one audience (and `exp` checked against the time).
    let key = jsonwebtoken::DecodingKey::from_secret(JWT_SECRET).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&["nexora"]);
    validation.set_audience(&["nexora-api"]);
    // The cache off: every call checks the signature and parses the claims.
    let uncached = TokenAuthority::new(
        JwtKeys::hs256(&SecretBytes::new(JWT_SECRET.to_vec())).expect("valid secret"),
        JwtConfig::new("nexora", "nexora-api").verified_cache(0),
    )
    .expect("valid config");
    JwtCase {
        token,
        uncached,
        key,
        validation,
    }
}
