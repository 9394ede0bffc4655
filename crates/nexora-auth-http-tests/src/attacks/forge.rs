//! Tokens forged byte by byte: exact header and claims texts, signed with any HMAC key or test
//! key, and the edits an attacker makes to a valid token.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::Value;

pub(super) fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// JSON text of a string.
pub(super) fn q(text: &str) -> String {
    Value::from(text).to_string()
}

/// A JSON object as text, fields in order — duplicates allowed, values as raw JSON text.
pub(super) fn object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}:{value}", q(name)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// How a token is signed.
#[derive(Debug, Clone)]
pub(super) enum Signer {
    /// HMAC with this alg (`HS256`, `HS384`, `HS512`) and key.
    Hmac(&'static str, Vec<u8>),
    /// An asymmetric private key (PEM) with its algorithm.
    Pem(Algorithm, &'static [u8]),
}

impl Signer {
    pub(super) fn alg(&self) -> &'static str {
        match self {
            Self::Hmac(alg, _) => alg,
            Self::Pem(Algorithm::ES256, _) => "ES256",
            Self::Pem(Algorithm::EdDSA, _) => "EdDSA",
            Self::Pem(_, _) => "RS256",
        }
    }

    pub(super) fn signature(&self, message: &[u8]) -> Vec<u8> {
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
                let key = match alg {
                    Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
                    Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
                    _ => EncodingKey::from_rsa_pem(pem),
                }
                .expect("the test keys parse");
                let signature =
                    jsonwebtoken::crypto::sign(message, &key, *alg).expect("the test keys sign");
                URL_SAFE_NO_PAD
                    .decode(signature)
                    .expect("jsonwebtoken returns base64url")
            }
        }
    }
}

/// `b64(header).b64(claims).b64(signature)` over the exact texts given.
pub(super) fn token(header: &str, claims: &str, signer: &Signer) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = signer.signature(message.as_bytes());
    format!("{message}.{}", b64(signature))
}

/// The three segments of a compact token.
pub(super) fn segments(token: &str) -> [String; 3] {
    let mut parts = token.splitn(3, '.').map(str::to_owned);
    let mut next = || parts.next().unwrap_or_default();
    [next(), next(), next()]
}

pub(super) fn flip_signature_byte(token: &str, index_from_end: usize) -> String {
    let [h, p, s] = segments(token);
    let mut signature = URL_SAFE_NO_PAD.decode(&s).unwrap_or_default();
    if let Some(i) = signature.len().checked_sub(1 + index_from_end) {
        signature[i] ^= 0x01;
    }
    format!("{h}.{p}.{}", b64(signature))
}

/// The public key's DER bytes (the base64 between the PEM armour lines).
pub(super) fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(body).expect("the test PEMs are base64")
}

/// A legitimate signer of the fixture's ring, and the header fields that name it.
pub(super) struct Legit {
    pub(super) label: &'static str,
    pub(super) signer: Signer,
    pub(super) kid: Option<&'static str>,
}

impl Legit {
    /// The header `{"alg", ["kid",] extra…}` as text.
    pub(super) fn header(&self, extra: &[(&str, String)]) -> String {
        let mut fields = vec![("alg", q(self.signer.alg()))];
        if let Some(kid) = self.kid {
            fields.push(("kid", q(kid)));
        }
        fields.extend(extra.iter().cloned());
        object(&fields)
    }
}
