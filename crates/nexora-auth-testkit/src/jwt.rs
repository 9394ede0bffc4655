//! JWTs forged byte by byte (feature `jwt`), for tests of token verification: the exact header
//! and claims texts you write (duplicate fields, odd spacing, a BOM, any `alg`), signed with
//! any HMAC key or any of the kit's [test keys](crate::keys).
//!
//! ```
//! use nexora_auth_testkit::jwt::{Signer, forge};
//!
//! let token = forge(
//!     r#"{"alg":"HS256","typ":"JWT"}"#,
//!     r#"{"sub":"alice","sub":"bob"}"#,
//!     &Signer::hs256(b"the secret, 32 bytes or longer!!".to_vec()),
//! );
//! assert_eq!(token.split('.').count(), 3);
//! ```
//!
//! Asymmetric signatures come from `jsonwebtoken`'s raw signer, on whichever crypto backend
//! `nexora-auth` enables (this feature turns none on, so it never adds a second one).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, EncodingKey};
use nexora_auth::JwtAlgorithm;

/// How a forged token is signed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Signer {
    /// HMAC with this `alg` (`HS256`, `HS384` or `HS512`; anything else signs as `HS256`)
    /// and key, of any length.
    Hmac(&'static str, Vec<u8>),
    /// An asymmetric private key (PEM, as in [`crate::keys`]) with its algorithm.
    Pem(JwtAlgorithm, &'static [u8]),
}

impl Signer {
    /// HMAC-SHA256 with `key`.
    pub fn hs256(key: impl Into<Vec<u8>>) -> Self {
        Self::Hmac("HS256", key.into())
    }

    /// The `alg` this signer's signatures are valid for: `HS256`, `HS384`, `HS512`, `ES256`,
    /// `EdDSA` or `RS256`.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Hmac(alg, _) => alg,
            Self::Pem(JwtAlgorithm::Es256, _) => "ES256",
            Self::Pem(JwtAlgorithm::EdDsa, _) => "EdDSA",
            Self::Pem(_, _) => "RS256",
        }
    }

    /// The raw signature of `message` (the `header.claims` text of a compact token).
    ///
    /// # Panics
    ///
    /// When a [`Signer::Pem`] key does not parse or sign (the kit's test keys do), or names
    /// HS256.
    pub fn signature(&self, message: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        macro_rules! mac {
            ($hash:ty, $key:expr) => {{
                let mut mac = <Hmac<$hash> as KeyInit>::new_from_slice($key)
                    .expect("HMAC takes any key length");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            Self::Hmac("HS384", key) => mac!(sha2::Sha384, key),
            Self::Hmac("HS512", key) => mac!(sha2::Sha512, key),
            Self::Hmac(_, key) => mac!(sha2::Sha256, key),
            Self::Pem(alg, pem) => {
                let (key, alg) = match alg {
                    JwtAlgorithm::Es256 => (EncodingKey::from_ec_pem(pem), Algorithm::ES256),
                    JwtAlgorithm::EdDsa => (EncodingKey::from_ed_pem(pem), Algorithm::EdDSA),
                    JwtAlgorithm::Rs256 => (EncodingKey::from_rsa_pem(pem), Algorithm::RS256),
                    other => panic!("Signer::Pem takes an asymmetric algorithm, not {other:?}"),
                };
                let key = key.expect("the test keys parse");
                let signature =
                    jsonwebtoken::crypto::sign(message, &key, alg).expect("the test keys sign");
                URL_SAFE_NO_PAD
                    .decode(signature)
                    .expect("jsonwebtoken returns base64url")
            }
        }
    }
}

/// Base64url without padding, as in a compact token.
pub fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// `b64(header).b64(claims).b64(signature)` over the exact texts given.
pub fn forge(header: &str, claims: &str, signer: &Signer) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = signer.signature(message.as_bytes());
    format!("{message}.{}", b64(signature))
}
