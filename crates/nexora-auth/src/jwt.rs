//! JWT access tokens: issue and verify, with a `kid`-keyed key ring.
//!
//! * HS256 by default (a shared secret of at least [`MIN_HS256_SECRET_LEN`] bytes).
//! * EdDSA, ES256 and RS256 through [`JwtKeys::from_private_pem`]: one active signing key and
//!   any number of verification-only keys ([`JwtKeys::with_verification_pem`]), so signing keys
//!   rotate without downtime; the public keys are exported by [`TokenAuthority::jwks`].
//! * The algorithm is pinned per key: a token is checked only with the algorithm of the key it
//!   names, so `alg: none` and HS/RS or HS/EdDSA confusion cannot work.
//! * Required claims `exp`, `iss`, `aud`, `sub`; `nbf` is honoured; a maximum lifetime and a
//!   size cap are enforced; `typ` must be absent, `JWT` or `at+jwt`; any `crit` is refused.
//! * A token with exactly `{sub, exp, iat, iss, aud}` made by any standard JWT library with the
//!   configured HS256 secret is accepted (without a `scope` claim: with a user store, the
//!   authenticator grants the user's current scopes).
//! * Time comes from one clock ([`TokenAuthority::with_clock`]; the authenticator's own):
//!   issuance, `exp`, `nbf`, `iat` and the verified-token cache.
//!
//! # Verification reads each part once
//!
//! An uncached [`TokenAuthority::verify`] splits the token into exactly three segments and then:
//!
//! 1. **Header**: base64url-decoded once (into a stack buffer), refused if it nests deeper than
//!    32 levels, and parsed once into a borrowed struct of the fields the verifier acts on —
//!    `alg`, `kid`, `typ`, `crit`, `b64`. Every other header field (`jku`, `x5u`, `jwk`, …) is
//!    skipped and never used: no key and no URL is ever taken from a token. From that one
//!    parse come the key (the one whose `kid` the token names, or the key without a `kid`:
//!    [`JwtRejection::UnknownKid`]), that key's pinned algorithm ([`JwtRejection::Algorithm`]),
//!    [`JwtRejection::Crit`] and [`JwtRejection::Typ`], all before any cryptography.
//! 2. **Signature**: [`jsonwebtoken::crypto::verify`] with the key's algorithm, through the
//!    installed crypto provider (RustCrypto or aws-lc-rs), over `header.payload` as sent.
//! 3. **Claims**: base64url-decoded once (into a stack buffer), depth-checked on those same
//!    bytes, and deserialised once into a borrowed struct: strings point into the decoded
//!    buffer unless they hold escapes, `aud` is read as a string or an array of strings by
//!    its own visitor, and nothing goes through `serde_json::Value`.
//! 4. **Checks** on that struct: `aud` present ([`JwtRejection::MissingClaim`]), `iss` and
//!    `aud` against the configuration, `exp`/`nbf`/`iat` on the injected clock, the maximum
//!    lifetime, a non-empty `sub`, the scopes. Only `sub`, `jti` and the scopes are copied out.
//!
//! Why not `jsonwebtoken::decode` with checks around it: `decode` parses the header into its
//! full `Header` (every JOSE field, unknown ones gathered into a map of `serde_json::Value`),
//! and decodes the claims to deserialise them twice — into the caller's type and into its own
//! validation view, whose `iss` and `aud` are untagged enums that buffer their values. The
//! checks this crate adds then cost a second header parse (to pick the key by `kid`), a second
//! base64 decode (for the depth scan) and owned strings for `iss`. Reading each part once makes
//! an uncached verify cheaper than a bare `decode` with the same validation
//! (`cargo bench -p nexora-auth-benches --bench key_path`, `benches/callgrind_jwt_verify.sh`),
//! and `tests/jwt_equivalence.rs` holds it to accepting exactly what `decode` with the same
//! validation and this crate's policy accepts.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

use dashmap::DashMap;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header,
    jwk::{Jwk, JwkSet, PublicKeyUse},
};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};

use crate::{
    Clock, ConfigError, InvalidReason, JwtRejection, KeyGeneration, KeyId, OwnerId, Scopes,
    SecretBytes, SecretString, SystemClock,
};

/// Minimum HS256 secret length in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// The signing algorithms this crate supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

/// An algorithm name [`JwtAlgorithm::from_str`](std::str::FromStr) does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported JWT algorithm {0:?} (HS256, ES256, EdDSA, RS256)")]
pub struct UnknownAlgorithm(pub String);

impl std::str::FromStr for JwtAlgorithm {
    type Err = UnknownAlgorithm;

    /// The JOSE name (`HS256`, `ES256`, `EdDSA`, `RS256`), case-insensitively.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_uppercase().as_str() {
            "HS256" => Ok(Self::Hs256),
            "ES256" => Ok(Self::Es256),
            "EDDSA" => Ok(Self::EdDsa),
            "RS256" => Ok(Self::Rs256),
            _ => Err(UnknownAlgorithm(name.to_owned())),
        }
    }
}

impl JwtAlgorithm {
    /// The JOSE name: `HS256`, `ES256`, `EdDSA` or `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }

    fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

/// Token policy. Every default is the one written on its setter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwtConfig {
    issuer: String,
    audience: String,
    access_token_ttl: Duration,
    max_lifetime: Duration,
    leeway: Duration,
    max_token_len: usize,
    verified_cache: usize,
}

impl JwtConfig {
    /// A policy issuing and requiring these `iss` and `aud` claims, with every other setting
    /// at the default written on its setter. There is no default issuer or audience: they
    /// name your service, and a token minted for one service must not pass at another.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            max_lifetime: Duration::from_secs(24 * 60 * 60),
            leeway: Duration::from_secs(30),
            max_token_len: 8 * 1024,
            verified_cache: 10_000,
        }
    }

    /// The `iss` claim issued and required (set by [`JwtConfig::new`]).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The `aud` claim issued and required (set by [`JwtConfig::new`]).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Lifetime of issued access tokens. Defaults to 15 minutes.
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = ttl;
        self
    }

    /// Longest lifetime accepted on verification (`exp - iat`, and `exp - now`). Defaults to
    /// 24 hours; tokens from elsewhere with a longer life are refused.
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Clock-skew allowance for `exp`, `nbf` and `iat`. Defaults to 30 seconds.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Tokens longer than this many bytes are refused before any decoding. Defaults to 8 KiB.
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// The token size cap in force (see [`JwtConfig::max_token_len`]).
    pub fn max_token_len_bytes(&self) -> usize {
        self.max_token_len
    }

    /// How many verified tokens to remember, so a token presented again skips the signature
    /// check and JSON parsing (until its `exp`). Verification is a pure function of the token,
    /// the key ring and the clock, so a cached answer is the answer: only successfully verified
    /// tokens are kept, each only until it expires, and the cache is emptied when full (memory
    /// stays bounded). `0` disables it. Defaults to 10,000.
    pub fn verified_cache(mut self, capacity: usize) -> Self {
        self.verified_cache = capacity;
        self
    }

    /// The configured issuer.
    pub fn issuer_name(&self) -> &str {
        &self.issuer
    }

    /// The configured access-token lifetime.
    pub fn ttl(&self) -> Duration {
        self.access_token_ttl
    }

    /// The configured maximum lifetime (see [`JwtConfig::max_lifetime`]).
    pub fn max_lifetime_duration(&self) -> Duration {
        self.max_lifetime
    }
}

struct VerifyingKey {
    kid: Option<String>,
    alg: JwtAlgorithm,
    key: DecodingKey,
    public_jwk: Option<Jwk>,
}

/// The key ring: one active signing key, plus verification keys by `kid`.
pub struct JwtKeys {
    signing_kid: Option<String>,
    signing_alg: JwtAlgorithm,
    signing: EncodingKey,
    verifying: Vec<VerifyingKey>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<_> = self.verifying.iter().map(|k| (&k.kid, k.alg)).collect();
        f.debug_struct("JwtKeys")
            .field("signing_kid", &self.signing_kid)
            .field("signing_alg", &self.signing_alg)
            .field("verifying", &kids)
            .field("secrets", &format_args!("[redacted]"))
            .finish()
    }
}

fn ensure_crypto_backend() -> Result<(), ConfigError> {
    use jsonwebtoken::crypto::CryptoProvider;
    if CryptoProvider::try_get_default().is_some() {
        return Ok(());
    }
    #[cfg(feature = "aws-lc-rs")]
    {
        // Both backends enabled: prefer the faster one explicitly. A concurrent install of
        // the same provider is fine; whichever wins is a valid provider.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        if CryptoProvider::try_get_default().is_some() {
            return Ok(());
        }
    }
    Err(ConfigError::NoCryptoBackend)
}

fn key_error(e: jsonwebtoken::errors::Error) -> ConfigError {
    ConfigError::JwtKey(e.to_string())
}

impl JwtKeys {
    /// An HS256 ring with one shared secret (no `kid`). Fails if the secret is shorter than
    /// [`MIN_HS256_SECRET_LEN`] bytes or no crypto backend is compiled in.
    pub fn hs256(secret: &SecretBytes) -> Result<Self, ConfigError> {
        ensure_crypto_backend()?;
        if secret.len() < MIN_HS256_SECRET_LEN {
            return Err(ConfigError::JwtSecretTooShort {
                min: MIN_HS256_SECRET_LEN,
            });
        }
        let signing = EncodingKey::from_secret(secret.expose()).map_err(key_error)?;
        let key = DecodingKey::from_secret(secret.expose()).map_err(key_error)?;
        Ok(Self {
            signing_kid: None,
            signing_alg: JwtAlgorithm::Hs256,
            signing,
            verifying: vec![VerifyingKey {
                kid: None,
                alg: JwtAlgorithm::Hs256,
                key,
                public_jwk: None,
            }],
        })
    }

    /// A ring whose active signing key is the given private key (PKCS#8 PEM, or PKCS#1 for
    /// RSA), named `kid`. Its public key verifies and is published in the JWKS.
    pub fn from_private_pem(alg: JwtAlgorithm, kid: &str, pem: &[u8]) -> Result<Self, ConfigError> {
        ensure_crypto_backend()?;
        let signing = match alg {
            JwtAlgorithm::Es256 => EncodingKey::from_ec_pem(pem),
            JwtAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem),
            JwtAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem),
            JwtAlgorithm::Hs256 => {
                return Err(ConfigError::Invalid(
                    "HS256 keys are secrets, not PEM files",
                ));
            }
        }
        .map_err(key_error)?;
        let mut jwk = Jwk::from_encoding_key(&signing, alg.to_jsonwebtoken()).map_err(key_error)?;
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let key = DecodingKey::from_jwk(&jwk).map_err(key_error)?;
        Ok(Self {
            signing_kid: Some(kid.to_owned()),
            signing_alg: alg,
            signing,
            verifying: vec![VerifyingKey {
                kid: Some(kid.to_owned()),
                alg,
                key,
                public_jwk: Some(jwk),
            }],
        })
    }

    /// Adds a verification-only public key (SPKI PEM), e.g. the previous signing key during a
    /// rotation. Fails on a duplicate `kid`.
    pub fn with_verification_pem(
        mut self,
        alg: JwtAlgorithm,
        kid: &str,
        pem: &[u8],
    ) -> Result<Self, ConfigError> {
        if self.verifying.iter().any(|k| k.kid.as_deref() == Some(kid)) {
            return Err(ConfigError::Invalid("duplicate JWT key id"));
        }
        let key = match alg {
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(pem),
            JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem),
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem),
            JwtAlgorithm::Hs256 => {
                return Err(ConfigError::Invalid(
                    "HS256 keys are secrets, not PEM files",
                ));
            }
        }
        .map_err(key_error)?;
        let mut jwk =
            Jwk::from_decoding_key(&key, Some(alg.to_jsonwebtoken())).map_err(key_error)?;
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        self.verifying.push(VerifyingKey {
            kid: Some(kid.to_owned()),
            alg,
            key,
            public_jwk: Some(jwk),
        });
        Ok(self)
    }

    /// Also accepts HS256 tokens (without `kid`) made with `secret` — for a migration from a
    /// shared secret to asymmetric keys. The secret is never published.
    pub fn with_hs256_verification(mut self, secret: &SecretBytes) -> Result<Self, ConfigError> {
        if secret.len() < MIN_HS256_SECRET_LEN {
            return Err(ConfigError::JwtSecretTooShort {
                min: MIN_HS256_SECRET_LEN,
            });
        }
        if self.verifying.iter().any(|k| k.kid.is_none()) {
            return Err(ConfigError::Invalid(
                "only one key may verify tokens without kid",
            ));
        }
        let key = DecodingKey::from_secret(secret.expose()).map_err(key_error)?;
        self.verifying.push(VerifyingKey {
            kid: None,
            alg: JwtAlgorithm::Hs256,
            key,
            public_jwk: None,
        });
        Ok(self)
    }
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AccessToken {
    /// The compact JWT. Secret: give it to its owner only.
    pub token: SecretString,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Its unique id (`jti`).
    pub jti: String,
}

/// Signing an access token failed (a key the backend refuses).
#[derive(Debug, thiserror::Error)]
#[error("signing failed")]
pub struct SigningError(#[source] jsonwebtoken::errors::Error);

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// The subject (`sub`).
    pub subject: OwnerId,
    /// The scopes of the `scope` claim (space-separated), or `None` when the token has no
    /// `scope` claim (a standard token: the authenticator then grants the user's scopes).
    pub scopes: Option<Scopes>,
    /// The token id (`jti`), if present.
    pub jti: Option<String>,
    /// The `kid` of the key that verified it.
    pub kid: Option<String>,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// For a token derived from an API key: the key and the generation of its secret (claims
    /// `nxr_key` and `nxr_gen`). The signature vouches for them; whether that key and secret
    /// still authenticate is the authenticator's question, asked on every request.
    pub derived_from: Option<DerivedFrom>,
}

/// The key a derived token came from: the claims `nxr_key` (the key id) and `nxr_gen` (the
/// generation of the key's secret, see [`KeyGeneration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DerivedFrom {
    /// The key.
    pub key: KeyId,
    /// The generation of its secret when the token was derived.
    pub generation: KeyGeneration,
}

impl DerivedFrom {
    /// The key `key` at the generation `generation`.
    pub fn new(key: KeyId, generation: KeyGeneration) -> Self {
        Self { key, generation }
    }
}

#[derive(Serialize)]
struct IssueClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nxr_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nxr_gen: Option<String>,
}

/// A JSON string borrowed from the decoded segment, or owned when it holds escapes.
/// (`#[serde(borrow)]` borrows a `Cow<str>` field only when the field's type is exactly
/// `Cow<str>`; inside an `Option` it would always allocate, hence this newtype.)
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The JOSE header fields the verifier acts on. Every other header field (`jku`, `x5u`,
/// `jwk`, `cty`, …) is skipped and never acted on: no key or URL is taken from a token.
#[derive(Deserialize)]
struct JoseHeader<'a> {
    /// A name `jsonwebtoken` does not know (`none`, `None`, …) fails to parse: malformed.
    alg: Algorithm,
    #[serde(borrow, default)]
    kid: Option<Text<'a>>,
    #[serde(borrow, default)]
    typ: Option<Text<'a>>,
    /// No extension is understood, so any `crit` is refused; its value is not read.
    #[serde(default)]
    crit: Option<IgnoredAny>,
    /// RFC 7797: `false` would mean an unencoded payload, which this verifier never reads;
    /// a non-boolean is malformed (as `jsonwebtoken`'s own header check has it).
    #[serde(default = "b64_default")]
    b64: bool,
}

fn b64_default() -> bool {
    true
}

/// The claims a verification reads, borrowed from the decoded payload. `exp`, `iat` and `nbf`
/// are typed `u64`: a string, negative or fractional value is malformed. `sub`, `exp` and
/// `iss` are required by their type (missing: malformed); `aud` is required by the check that
/// follows (missing or unreadable: [`JwtRejection::MissingClaim`]). A claim given twice is
/// malformed. Claims not listed here are skipped.
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    sub: Cow<'a, str>,
    exp: u64,
    /// A string: an array containing the right issuer is malformed (RFC 7519 §4.1.1).
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow, default)]
    aud: Option<Audience<'a>>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(borrow, default)]
    jti: Option<Text<'a>>,
    #[serde(borrow, default)]
    scope: Option<Text<'a>>,
    /// The key a derived token came from (a UUID), with `nxr_gen`: both or neither.
    #[serde(borrow, default)]
    nxr_key: Option<Text<'a>>,
    #[serde(borrow, default)]
    nxr_gen: Option<Text<'a>>,
}

/// The `aud` claim: one string or an array of strings (RFC 7519 §4.1.3). Any other JSON value
/// is read through and kept as `Unreadable`, so that it counts as a missing `aud` rather than
/// failing the whole payload.
enum Audience<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
    Unreadable,
}

impl Audience<'_> {
    /// Whether `expected` is the audience or one of them.
    fn names(&self, expected: &str) -> bool {
        match self {
            Self::One(aud) => aud == expected,
            Self::Many(auds) => auds.iter().any(|aud| aud == expected),
            Self::Unreadable => false,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Audience<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AudienceVisitor { element: false })
    }
}

/// Reads `aud`, or with `element` one element of an `aud` array (where a nested array is
/// unreadable).
struct AudienceVisitor {
    element: bool,
}

/// One element of an `aud` array.
struct AudienceElement<'a>(Audience<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for AudienceElement<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(AudienceVisitor { element: true })
            .map(AudienceElement)
    }
}

impl<'de> Visitor<'de> for AudienceVisitor {
    type Value = Audience<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Audience::One(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Audience::One(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Audience::One(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.element {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Audience::Unreadable);
        }
        let mut names = Vec::new();
        let mut readable = true;
        while let Some(AudienceElement(element)) = seq.next_element()? {
            match element {
                Audience::One(name) => names.push(name),
                _ => readable = false,
            }
        }
        Ok(if readable {
            Audience::Many(names)
        } else {
            Audience::Unreadable
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Audience::Unreadable)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Audience::Unreadable)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Audience::Unreadable)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Audience::Unreadable)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Audience::Unreadable)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Audience::Unreadable)
    }
}

/// Base64url-decodes one segment into `stack`, or into `heap` when it does not fit.
fn decode_segment<'b>(
    segment: &str,
    stack: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], InvalidReason> {
    use base64::{DecodeSliceError, Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let malformed = InvalidReason::Jwt(JwtRejection::Malformed);
    match URL_SAFE_NO_PAD.decode_slice(segment, stack) {
        Ok(len) => Ok(&stack[..len]),
        Err(DecodeSliceError::OutputSliceTooSmall) => {
            URL_SAFE_NO_PAD
                .decode_vec(segment, heap)
                .map_err(|_| malformed)?;
            Ok(heap.as_slice())
        }
        Err(DecodeSliceError::DecodeError(_)) => Err(malformed),
    }
}

/// Parses a decoded header or payload: refused as too deep before serde sees it (serde skips
/// unread values without a depth limit), malformed if it is not the expected JSON.
fn parse_segment<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, InvalidReason> {
    if crate::nesting::too_deep(json) {
        return Err(InvalidReason::Jwt(JwtRejection::TooDeep));
    }
    serde_json::from_slice(json).map_err(|_| InvalidReason::Jwt(JwtRejection::Malformed))
}

struct PreparedKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Issues and verifies access tokens for one [`JwtKeys`] ring and [`JwtConfig`].
pub struct TokenAuthority {
    config: JwtConfig,
    signing_kid: Option<String>,
    signing_alg: Algorithm,
    signing: EncodingKey,
    verifying: Vec<PreparedKey>,
    jwks: JwkSet,
    verified: DashMap<Box<str>, VerifiedToken>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("config", &self.config)
            .field("signing_kid", &self.signing_kid)
            .field("signing_alg", &self.signing_alg)
            .finish_non_exhaustive()
    }
}

impl TokenAuthority {
    /// Prepares the ring for `config`. The sign + verify self-check runs here, so a broken
    /// build or key fails at startup, not at the first request.
    pub fn new(keys: JwtKeys, config: JwtConfig) -> Result<Self, ConfigError> {
        ensure_crypto_backend()?;
        if config.access_token_ttl > config.max_lifetime {
            return Err(ConfigError::Invalid(
                "access token lifetime exceeds the maximum lifetime",
            ));
        }
        let verifying = keys
            .verifying
            .iter()
            .map(|k| PreparedKey {
                kid: k.kid.clone(),
                alg: k.alg.to_jsonwebtoken(),
                key: k.key.clone(),
            })
            .collect();
        let jwks = JwkSet {
            keys: keys
                .verifying
                .iter()
                .filter_map(|k| k.public_jwk.clone())
                .collect(),
        };
        let authority = Self {
            config,
            signing_kid: keys.signing_kid.clone(),
            signing_alg: keys.signing_alg.to_jsonwebtoken(),
            signing: keys.signing.clone(),
            verifying,
            jwks,
            verified: DashMap::new(),
            clock: Arc::new(SystemClock),
        };
        let probe = authority
            .issue(&OwnerId::new("startup-self-check"), &Scopes::empty())
            .map_err(|e| ConfigError::JwtKey(format!("cannot sign: {e}")))?;
        authority
            .verify(probe.token.expose())
            .map_err(|e| ConfigError::JwtKey(format!("cannot verify own token: {e}")))?;
        authority.verified.clear();
        Ok(authority)
    }

    /// Reads the time from `clock` (issuance, `exp`, `nbf` and `iat` checks, the verified-token
    /// cache) instead of the system clock. [`crate::AuthenticatorBuilder::build`] gives its
    /// tokens the authenticator's own clock. Defaults to [`SystemClock`].
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.verified.clear();
        self
    }

    /// The current time as Unix seconds, from the clock.
    fn now_secs(&self) -> u64 {
        u64::try_from(self.clock.now().unix_timestamp()).unwrap_or(0)
    }

    /// The policy in force.
    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// The public keys as a JWKS document (`/.well-known/jwks.json`). Empty for HS256 rings:
    /// shared secrets are never published.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Issues an access token for `subject` carrying `scopes`, living
    /// [`JwtConfig::access_token_ttl`].
    pub fn issue(&self, subject: &OwnerId, scopes: &Scopes) -> Result<AccessToken, SigningError> {
        self.sign(
            subject,
            scopes,
            self.config.access_token_ttl.as_secs(),
            None,
        )
    }

    /// Issues a token derived from a key (see [`DerivedFrom`]) for `subject`, carrying
    /// `scopes` (the `scope` claim is written even when empty: without one, a token carries
    /// all of its user's scopes), living `ttl_secs` seconds. The caller
    /// decides the lifetime; verification still refuses one beyond
    /// [`JwtConfig::max_lifetime`].
    pub fn issue_derived(
        &self,
        subject: &OwnerId,
        scopes: &Scopes,
        ttl_secs: u64,
        from: DerivedFrom,
    ) -> Result<AccessToken, SigningError> {
        self.sign(subject, scopes, ttl_secs, Some(from))
    }

    fn sign(
        &self,
        subject: &OwnerId,
        scopes: &Scopes,
        ttl: u64,
        from: Option<DerivedFrom>,
    ) -> Result<AccessToken, SigningError> {
        let iat = self.now_secs();
        let jti = uuid::Uuid::new_v4().to_string();
        let scope = scopes.to_space_separated();
        let claims = IssueClaims {
            sub: subject.as_str(),
            iss: &self.config.issuer,
            aud: &self.config.audience,
            iat,
            exp: iat + ttl,
            jti: &jti,
            // A standard token without scopes omits the claim; a derived token always says
            // which it holds (no claim would read as "all of its user's").
            scope: (from.is_some() || !scope.is_empty()).then_some(scope.as_str()),
            nxr_key: from.map(|f| f.key.to_string()),
            nxr_gen: from.map(|f| f.generation.to_text()),
        };
        let mut header = Header::new(self.signing_alg);
        header.kid.clone_from(&self.signing_kid);
        header.typ = Some("at+jwt".into());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing).map_err(SigningError)?;
        Ok(AccessToken {
            token: SecretString::new(token),
            expires_in: ttl,
            jti,
        })
    }

    /// Verifies a compact JWT and returns what it says.
    ///
    /// A token verified before (and still unexpired) is answered from the verified-token cache
    /// ([`JwtConfig::verified_cache`]).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, InvalidReason> {
        if token.len() > self.config.max_token_len {
            return Err(InvalidReason::TooLarge);
        }
        if self.config.verified_cache == 0 {
            return self.verify_uncached(token).map(|(verified, _)| verified);
        }
        let now = self.now_secs();
        if let Some(hit) = self.verified.get(token) {
            // The same expiry rule as `jsonwebtoken`: valid while `exp + leeway >= now`.
            if hit.expires_at.saturating_add(self.config.leeway.as_secs()) >= now {
                return Ok(hit.clone());
            }
            drop(hit);
            self.verified.remove(token);
            return Err(InvalidReason::Expired);
        }
        let (verified, cacheable) = self.verify_uncached(token)?;
        if cacheable {
            if self.verified.len() >= self.config.verified_cache {
                self.verified.clear();
            }
            self.verified.insert(token.into(), verified.clone());
        }
        Ok(verified)
    }

    /// Full verification; also says whether the answer may be cached (not when a future `nbf`
    /// would make it change from "no" to "yes"). The order is described in the module docs.
    fn verify_uncached(&self, token: &str) -> Result<(VerifiedToken, bool), InvalidReason> {
        let jwt = InvalidReason::Jwt;
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(jwt(JwtRejection::Malformed));
        };
        // On the stack: headers are a few dozen bytes; larger ones (an embedded `jwk`) go to
        // the heap.
        let (mut stack, mut heap) = ([0u8; 256], Vec::new());
        let header: JoseHeader<'_> = parse_segment(decode_segment(header, &mut stack, &mut heap)?)?;
        if !header.b64 {
            return Err(jwt(JwtRejection::Malformed));
        }
        // The token names its key (or none): with one key too, a kid is never ignored.
        let kid = header.kid.as_ref().map(|kid| kid.0.as_ref());
        let key = self
            .verifying
            .iter()
            .find(|k| k.kid.as_deref() == kid)
            .ok_or(jwt(JwtRejection::UnknownKid))?;
        // The algorithm is the key's, never the token's choice.
        if header.alg != key.alg {
            return Err(jwt(JwtRejection::Algorithm));
        }
        if header.crit.is_some() {
            return Err(jwt(JwtRejection::Crit));
        }
        if let Some(typ) = &header.typ {
            let accepted = ["jwt", "at+jwt", "application/at+jwt"];
            if !accepted.iter().any(|a| typ.0.eq_ignore_ascii_case(a)) {
                return Err(jwt(JwtRejection::Typ));
            }
        }
        // `header.payload`, the signed text: everything before the last dot.
        let message = &token[..token.len() - signature.len() - 1];
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, key.alg) {
            Ok(true) => {}
            Ok(false) => return Err(jwt(JwtRejection::Signature)),
            // The signature is not base64url.
            Err(_) => return Err(jwt(JwtRejection::Malformed)),
        }
        let (mut stack, mut heap) = ([0u8; 1024], Vec::new());
        let claims: Claims<'_> = parse_segment(decode_segment(payload, &mut stack, &mut heap)?)?;
        let Some(aud) = claims
            .aud
            .as_ref()
            .filter(|aud| !matches!(aud, Audience::Unreadable))
        else {
            return Err(jwt(JwtRejection::MissingClaim));
        };
        if claims.iss != self.config.issuer {
            return Err(jwt(JwtRejection::Issuer));
        }
        if !aud.names(&self.config.audience) {
            return Err(jwt(JwtRejection::Audience));
        }
        let now = self.now_secs();
        let max = self.config.max_lifetime.as_secs();
        let leeway = self.config.leeway.as_secs();
        // The rules `jsonwebtoken` applies, on the injected clock: expired once
        // `exp + leeway < now`, not yet valid while `nbf > now + leeway`.
        if claims.exp.saturating_add(leeway) < now {
            return Err(InvalidReason::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(InvalidReason::Jwt(JwtRejection::NotYetValid));
        }
        if claims.exp > now.saturating_add(max).saturating_add(leeway) {
            return Err(InvalidReason::Jwt(JwtRejection::LifetimeTooLong));
        }
        if let Some(iat) = claims.iat {
            if iat > now.saturating_add(leeway) {
                return Err(InvalidReason::Jwt(JwtRejection::IssuedInFuture));
            }
            if claims.exp.saturating_sub(iat) > max {
                return Err(InvalidReason::Jwt(JwtRejection::LifetimeTooLong));
            }
        }
        if claims.sub.is_empty() {
            return Err(InvalidReason::Jwt(JwtRejection::EmptySubject));
        }
        let scopes = match &claims.scope {
            None => None,
            Some(Text(text)) => Some(
                Scopes::parse_space_separated(text)
                    .map_err(|_| InvalidReason::Jwt(JwtRejection::Scope))?,
            ),
        };
        let derived_from = match (&claims.nxr_key, &claims.nxr_gen) {
            (None, None) => None,
            (Some(Text(key)), Some(Text(generation))) => Some(DerivedFrom {
                key: KeyId::parse_str(key).map_err(|_| jwt(JwtRejection::Malformed))?,
                generation: KeyGeneration::from_text(generation)
                    .ok_or(jwt(JwtRejection::Malformed))?,
            }),
            _ => return Err(jwt(JwtRejection::Malformed)),
        };
        let cacheable = claims.nbf.is_none_or(|nbf| nbf <= now);
        let verified = VerifiedToken {
            subject: OwnerId::new(claims.sub.into_owned()),
            scopes,
            jti: claims.jti.map(|jti| jti.0.into_owned()),
            kid: key.kid.clone(),
            expires_at: claims.exp,
            derived_from,
        };
        Ok((verified, cacheable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for alg in [
            JwtAlgorithm::Hs256,
            JwtAlgorithm::Es256,
            JwtAlgorithm::EdDsa,
            JwtAlgorithm::Rs256,
        ] {
            assert_eq!(alg.name().parse::<JwtAlgorithm>(), Ok(alg));
            assert_eq!(alg.name().to_lowercase().parse::<JwtAlgorithm>(), Ok(alg));
        }
        assert_eq!(
            "none".parse::<JwtAlgorithm>(),
            Err(UnknownAlgorithm("none".into()))
        );
    }

    fn now_secs() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }
    use base64::Engine;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

    fn authority() -> TokenAuthority {
        TokenAuthority::new(
            JwtKeys::hs256(&SecretBytes::new(SECRET.to_vec())).unwrap(),
            JwtConfig::new("nexora", "nexora-api"),
        )
        .unwrap()
    }

    /// HS256 over the exact texts. A signer of its own rather than the testkit's forger: these
    /// unit tests ship in the package, which cannot depend on the kit (the kit depends on it).
    fn sign(header: serde_json::Value, claims: serde_json::Value, secret: &[u8]) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let msg = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).unwrap();
        mac.update(msg.as_bytes());
        format!("{msg}.{}", b64.encode(mac.finalize().into_bytes()))
    }

    fn base_claims() -> serde_json::Value {
        let now = now_secs();
        json!({"sub": "user-1", "iat": now, "exp": now + 600, "iss": "nexora", "aud": "nexora-api"})
    }

    #[test]
    fn issue_then_verify() {
        let a = authority();
        let scopes = Scopes::new(["agents:read", "keys:manage"]).unwrap();
        let t = a.issue(&OwnerId::new("user-1"), &scopes).unwrap();
        assert_eq!(t.expires_in, 900);
        let v = a.verify(t.token.expose()).unwrap();
        assert_eq!(v.subject.as_str(), "user-1");
        assert_eq!(v.scopes, Some(scopes));
        assert_eq!(v.jti.as_deref(), Some(t.jti.as_str()));
    }

    #[test]
    fn accepts_a_minimal_token_from_a_standard_library() {
        let token = sign(json!({"alg": "HS256", "typ": "JWT"}), base_claims(), SECRET);
        let v = authority().verify(&token).unwrap();
        assert_eq!(v.scopes, None, "no scope claim: the user's scopes apply");
        let no_typ = sign(json!({"alg": "HS256"}), base_claims(), SECRET);
        assert!(authority().verify(&no_typ).is_ok());
    }

    /// Every forged or out-of-policy token is refused for its exact reason.
    #[test]
    fn rejects_what_it_must() {
        use JwtRejection::*;
        let a = authority();
        let now = now_secs();
        let jwt = InvalidReason::Jwt;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut cases: Vec<(&str, String, InvalidReason)> = vec![
            (
                "wrong secret",
                sign(
                    json!({"alg": "HS256"}),
                    base_claims(),
                    b"another-secret-another-secret-32b",
                ),
                jwt(Signature),
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64.encode(r#"{"alg":"none"}"#),
                    b64.encode(base_claims().to_string())
                ),
                jwt(Malformed),
            ),
            (
                "HS512",
                sign(json!({"alg": "HS512"}), base_claims(), SECRET),
                jwt(Algorithm),
            ),
            (
                "refresh typ",
                sign(
                    json!({"alg": "HS256", "typ": "refresh+jwt"}),
                    base_claims(),
                    SECRET,
                ),
                jwt(Typ),
            ),
            (
                "crit",
                sign(
                    json!({"alg": "HS256", "crit": ["b64"], "b64": true}),
                    base_claims(),
                    SECRET,
                ),
                jwt(Crit),
            ),
            (
                "foreign kid",
                sign(
                    json!({"alg": "HS256", "kid": "other"}),
                    base_claims(),
                    SECRET,
                ),
                jwt(UnknownKid),
            ),
            ("too large", "a".repeat(9000), InvalidReason::TooLarge),
            ("garbage", "not.a.jwt".into(), jwt(Malformed)),
        ];
        for (claim, value, reason) in [
            ("exp", json!("9999999999"), jwt(Malformed)),
            ("exp", json!(null), jwt(Malformed)),
            ("exp", json!(-1), jwt(Malformed)),
            ("exp", json!(1e300), jwt(Malformed)),
            ("exp", json!(u64::MAX), jwt(LifetimeTooLong)),
            ("exp", json!(now + 2 * 24 * 3600), jwt(LifetimeTooLong)),
            ("exp", json!(now - 3600), InvalidReason::Expired),
            ("nbf", json!(now + 3600), jwt(NotYetValid)),
            ("iat", json!(now + 3600), jwt(IssuedInFuture)),
            ("aud", json!("someone-else"), jwt(Audience)),
            ("aud", json!(5), jwt(MissingClaim)),
            ("aud", json!([]), jwt(Audience)),
            ("iss", json!(["nexora"]), jwt(Malformed)),
            ("iss", json!(["nexora", "evil"]), jwt(Malformed)),
            ("iss", json!("evil"), jwt(Issuer)),
            ("sub", json!(""), jwt(EmptySubject)),
            ("scope", json!("bad\"scope"), jwt(Scope)),
        ] {
            let mut claims = base_claims();
            claims[claim] = value;
            cases.push((claim, sign(json!({"alg": "HS256"}), claims, SECRET), reason));
        }
        // A missing claim this crate reads itself fails to decode; `aud` is checked by
        // `jsonwebtoken` as a required claim.
        for (missing, reason) in [
            ("exp", jwt(Malformed)),
            ("iss", jwt(Malformed)),
            ("aud", jwt(MissingClaim)),
            ("sub", jwt(Malformed)),
        ] {
            let mut claims = base_claims();
            claims.as_object_mut().unwrap().remove(missing);
            cases.push((
                missing,
                sign(json!({"alg": "HS256"}), claims, SECRET),
                reason,
            ));
        }
        assert_eq!(cases.len(), 29);
        for (name, token, reason) in cases {
            assert_eq!(a.verify(&token), Err(reason), "{name}");
        }
    }

    /// The header is read once, for every field the verifier acts on, and as strictly as the
    /// claims.
    #[test]
    fn header_fields_are_each_checked() {
        use JwtRejection::*;
        let a = authority();
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        for (header, reason) in [
            (
                json!({"alg": "HS256", "x": serde_json::from_str::<serde_json::Value>(&deep).unwrap()}),
                TooDeep,
            ),
            (json!({"alg": "HS256", "crit": ["exp"]}), Crit),
            (json!({"alg": "HS256", "crit": []}), Crit),
            (json!({"alg": "HS256", "b64": false}), Malformed),
            (json!({"alg": "HS256", "b64": "yes"}), Malformed),
            (json!({"alg": "HS256", "typ": 5}), Malformed),
            (json!({"alg": "HS256", "kid": ""}), UnknownKid),
            (json!({"alg": "hs256"}), Malformed),
            (json!({"typ": "JWT"}), Malformed),
        ] {
            let token = sign(header.clone(), base_claims(), SECRET);
            assert_eq!(
                a.verify(&token),
                Err(InvalidReason::Jwt(reason)),
                "{header}"
            );
        }
        for header in [
            json!({"alg": "HS256", "b64": true}),
            json!({"alg": "HS256", "kid": null, "crit": null}),
            json!({"alg": "HS256", "x5u": "http://127.0.0.1:9/never-fetched"}),
        ] {
            let token = sign(header.clone(), base_claims(), SECRET);
            assert!(a.verify(&token).is_ok(), "{header}");
        }
    }

    /// A header or claims too long for the stack buffers are decoded on the heap, and read
    /// the same way.
    #[test]
    fn large_headers_and_claims_verify() {
        let a = authority();
        let header = json!({"alg": "HS256", "typ": "JWT", "x": "h".repeat(1000)});
        let mut claims = base_claims();
        claims["x"] = json!("c".repeat(4000));
        claims["jti"] = json!("large");
        let token = sign(header, claims, SECRET);
        let v = a.verify(&token).unwrap();
        assert_eq!(
            (v.subject.as_str(), v.jti.as_deref()),
            ("user-1", Some("large"))
        );
        let mut deep = base_claims();
        deep["x"] = json!("c".repeat(4000));
        let nested = format!("{}{}", "[".repeat(40), "]".repeat(40));
        deep["y"] = serde_json::from_str(&nested).unwrap();
        assert_eq!(
            a.verify(&sign(json!({"alg": "HS256"}), deep, SECRET)),
            Err(InvalidReason::Jwt(JwtRejection::TooDeep))
        );
    }

    #[test]
    fn verified_cache_answers_repeats_and_never_caches_failures() {
        let a = authority();
        let token = sign(json!({"alg": "HS256"}), base_claims(), SECRET);
        let first = a.verify(&token).unwrap();
        assert_eq!(a.verify(&token).unwrap(), first);
        assert_eq!(a.verified.len(), 1);
        let forged = sign(
            json!({"alg": "HS256"}),
            base_claims(),
            b"another-secret-another-secret-32b",
        );
        for _ in 0..2 {
            assert!(a.verify(&forged).is_err());
        }
        assert_eq!(a.verified.len(), 1, "failures are never cached");
        // An entry past its exp (+ leeway) is refused and dropped, never served.
        let mut stale = first.clone();
        stale.expires_at = now_secs() - 31;
        a.verified.insert(token.as_str().into(), stale);
        assert_eq!(a.verify(&token), Err(InvalidReason::Expired));
        assert!(a.verified.is_empty());
        // A future nbf is not cached (it would turn valid later).
        let mut claims = base_claims();
        claims["nbf"] = json!(now_secs() + 10);
        let pending = sign(json!({"alg": "HS256"}), claims, SECRET);
        let _ = a.verify(&pending);
        assert!(a.verified.is_empty());
    }

    #[test]
    fn verified_cache_is_bounded_and_can_be_disabled() {
        let a = TokenAuthority::new(
            JwtKeys::hs256(&SecretBytes::new(SECRET.to_vec())).unwrap(),
            JwtConfig::new("nexora", "nexora-api").verified_cache(3),
        )
        .unwrap();
        for i in 0..10 {
            let mut claims = base_claims();
            claims["jti"] = json!(i.to_string());
            a.verify(&sign(json!({"alg": "HS256"}), claims, SECRET))
                .unwrap();
            assert!(a.verified.len() <= 3);
        }
        let off = TokenAuthority::new(
            JwtKeys::hs256(&SecretBytes::new(SECRET.to_vec())).unwrap(),
            JwtConfig::new("nexora", "nexora-api").verified_cache(0),
        )
        .unwrap();
        off.verify(&sign(json!({"alg": "HS256"}), base_claims(), SECRET))
            .unwrap();
        assert!(off.verified.is_empty());
    }

    #[test]
    fn short_secret_is_a_startup_error() {
        assert!(matches!(
            JwtKeys::hs256(&SecretBytes::new(vec![1; 31])),
            Err(ConfigError::JwtSecretTooShort { min: 32 })
        ));
    }
}
