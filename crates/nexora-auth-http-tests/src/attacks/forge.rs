//! The JSON texts tokens are forged from (the testkit's `jwt` module signs them), and the
//! edits an attacker makes to a valid token.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use nexora_auth_testkit::jwt::{Signer, b64};
use serde_json::Value;

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
