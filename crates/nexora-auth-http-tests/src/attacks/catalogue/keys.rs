//! Malformed API keys (refused before any store call), and well-formed bad keys (one lookup).

use nexora_auth::{ApiKey, KeyId};

use super::{Catalogue, Cred, Want};

impl Catalogue<'_> {
    pub(super) fn key_rows(&mut self) {
        let key = self.f.alice_key.clone();
        let k = key.as_str();
        let swap = |at: usize, with: char| {
            let mut text = key.clone();
            text.replace_range(at..=at, &with.to_string());
            text
        };
        let tail = &k[4..];
        let last = k.len() - 1;
        let other = |c: char| if c == 'A' { 'B' } else { 'A' };
        let last_char = k[last..].chars().next().unwrap_or('A');
        let secret_char = k[30..].chars().next().unwrap_or('A');
        let id_char = k[10..].chars().next().unwrap_or('A');
        let malformed = [
            ("wrong prefix nxs_", format!("nxs_{tail}")),
            ("wrong prefix NXR_", format!("NXR_{tail}")),
            ("wrong prefix nxr-", format!("nxr-{tail}")),
            ("wrong prefix, no underscore", format!("nxr{tail}")),
            (
                "bad checksum (last character)",
                swap(last, other(last_char)),
            ),
            (
                "bad checksum (a secret character)",
                swap(30, other(secret_char)),
            ),
            ("bad checksum (an id character)", swap(10, other(id_char))),
            ("wrong length (one short)", k[..last].to_owned()),
            ("wrong length (one more)", format!("{k}A")),
            ("wrong length (doubled)", format!("{k}{tail}")),
            ("wrong length (prefix only)", "nxr_".to_owned()),
            ("non-base62 - in the secret", swap(30, '-')),
            ("non-base62 . in the secret", swap(30, '.')),
            ("non-base62 ~ in the id", swap(10, '~')),
            ("non-base62 + in the secret", swap(40, '+')),
            ("non-base62 / in the checksum", swap(last, '/')),
            ("non-base62 _ in the id", swap(8, '_')),
            ("non-base62 = at the end", swap(last, '=')),
        ];
        for (what, text) in malformed {
            let name = format!("key: {what} (no store call)");
            self.token(&name, &text, Want::InvalidToken, Cred::Free);
        }
        // Controls: well-formed keys cost exactly one lookup, so "no store call" above is a
        // real observation.
        let unknown = ApiKey::generate().expect("OS randomness");
        let bob_id = KeyId::parse_str(&self.f.bob_key_id).expect("a key id");
        let forged = ApiKey::generate_for(bob_id).expect("OS randomness");
        let revoked = self.f.revoked_key.clone();
        let expired = self.f.expired_key.clone();
        for (what, text) in [
            (
                "key: well-formed, unknown id (one lookup)",
                unknown.expose().to_owned(),
            ),
            (
                "key: Bob's id with a forged secret (one lookup)",
                forged.expose().to_owned(),
            ),
            ("key: revoked (one lookup)", revoked),
            ("key: expired (one lookup)", expired),
        ] {
            self.token(what, &text, Want::InvalidToken, Cred::Key);
        }
        self.token(
            "key: Alice's valid key (accepted)",
            k,
            Want::Accept,
            Cred::Key,
        );
        let jwt = self.f.alice_jwt.clone();
        self.token(
            "JWT: Alice's login token (accepted)",
            &jwt,
            Want::Accept,
            Cred::Free,
        );
    }
}
