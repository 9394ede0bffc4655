//! GitHub's side of secret scanning, for tests (feature `github`): a P-256 signing key made
//! from a seeded generator ([`GitHubSigner`]), the key document GitHub publishes at
//! `GET /meta/public_keys/secret_scanning` ([`key_document`]), and reports signed as GitHub
//! signs them (ECDSA P-256 / SHA-256 over the raw body, base64 DER).

use base64::Engine;
use p256::{
    ecdsa::{Signature, SigningKey, signature::Signer},
    elliptic_curve::Generate,
    pkcs8::{EncodePublicKey, LineEnding},
};
use rand::SeedableRng;

/// The header naming the signing key.
pub const KEY_IDENTIFIER: &str = "Github-Public-Key-Identifier";
/// The header holding the signature.
pub const KEY_SIGNATURE: &str = "Github-Public-Key-Signature";

/// A signing key of "GitHub", with the identifier it is published under.
#[derive(Clone)]
pub struct GitHubSigner {
    identifier: String,
    key: SigningKey,
}

impl std::fmt::Debug for GitHubSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubSigner")
            .field("identifier", &self.identifier)
            .finish_non_exhaustive()
    }
}

impl GitHubSigner {
    /// A key drawn from a generator seeded with `seed` (the same seed, the same key), published
    /// under a 64-hex-digit identifier derived from the seed, as GitHub's are.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Self {
            identifier: format!("{seed:064x}"),
            key: SigningKey::generate_from_rng(&mut rng),
        }
    }

    /// The key identifier.
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// The public key, SubjectPublicKeyInfo PEM.
    pub fn public_pem(&self) -> String {
        // Encoding a valid P-256 point as SPKI PEM cannot fail.
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key encodes")
    }

    /// The signature of `body`, as GitHub sends it: base64 of the DER encoding.
    pub fn sign(&self, body: &[u8]) -> String {
        let signature: Signature = self.key.sign(body);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }

    /// The signature of `body` with its `s` replaced by `n - s`: just as valid (ECDSA
    /// signatures are malleable), and what a signer that does not normalise `s` may send.
    pub fn sign_high_s(&self, body: &[u8]) -> String {
        let signature: Signature = self.key.sign(body);
        let (r, s) = signature.split_scalars();
        let flipped = Signature::from_scalars(r, -*s).expect("n - s is a valid scalar");
        base64::engine::general_purpose::STANDARD.encode(flipped.to_der().as_bytes())
    }

    /// The two headers of a report of `body` signed by this key.
    pub fn headers(&self, body: &[u8]) -> [(&'static str, String); 2] {
        [
            (KEY_IDENTIFIER, self.identifier.clone()),
            (KEY_SIGNATURE, self.sign(body)),
        ]
    }
}

/// GitHub's key document listing `signers` (the first marked current), in the format of
/// `GET https://api.github.com/meta/public_keys/secret_scanning`.
pub fn key_document(signers: &[&GitHubSigner]) -> String {
    let keys: Vec<String> = signers
        .iter()
        .enumerate()
        .map(|(i, signer)| {
            format!(
                r#"{{"key_identifier":"{}","key":{},"is_current":{}}}"#,
                signer.identifier,
                json_string(&signer.public_pem()),
                i == 0
            )
        })
        .collect();
    format!(r#"{{"public_keys":[{}]}}"#, keys.join(","))
}

/// A report of `matches` (`(token, url)`) in GitHub's format: `[{"token", "type", "url",
/// "source"}]`, type `nexora_api_key`, source `content`.
pub fn report(matches: &[(&str, &str)]) -> String {
    let items: Vec<String> = matches
        .iter()
        .map(|(token, url)| {
            format!(
                r#"{{"token":{},"type":"nexora_api_key","url":{},"source":"content"}}"#,
                json_string(token),
                json_string(url)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// `text` as a JSON string literal (quotes, backslashes and control characters escaped).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
