//! The leak endpoints: secret-scanning reports GitHub did not sign (401, no store call, no key
//! ended), and revoke-by-possession requests that must end nothing (the one 202, one lookup
//! at most, and no write).

use nexora_auth::{ApiKey, KeyId};
use nexora_auth_testkit::github::report;
use serde_json::{Value, json};

use super::Catalogue;
use crate::attacks::{Attack, Outcome, wire::RawRequest};

const GITHUB: &str = "/api/secret-scanning/github";
const REVOKE: &str = "/api/keys/revoke";

fn post(target: &str, headers: Headers, body: &[u8]) -> RawRequest {
    let mut headers = headers;
    headers.push(("content-type", b"application/json".to_vec()));
    RawRequest {
        method: "POST",
        target: target.into(),
        headers,
        body: Some(body.to_vec()),
        websocket: false,
    }
}

/// Headers as the wire sends them: names and raw values.
type Headers = Vec<(&'static str, Vec<u8>)>;

fn signature_headers(identifier: &[u8], signature: &[u8]) -> Headers {
    vec![
        ("github-public-key-identifier", identifier.to_vec()),
        ("github-public-key-signature", signature.to_vec()),
    ]
}

fn answered(status: u16, body: Value) -> Outcome {
    Outcome::Answered { status, body }
}

impl Catalogue<'_> {
    fn leak_row(
        &mut self,
        what: &str,
        request: RawRequest,
        expect: Outcome,
        calls: u64,
        secrets: &[&str],
    ) {
        self.rows.push(Attack {
            name: format!(
                "[{}/{}] {what} @ {}",
                self.f.stores, self.ring, request.target
            ),
            request,
            expect,
            store_calls: Some(calls..=calls),
            must_not_echo: secrets.iter().map(|s| (*s).to_owned()).collect(),
        });
    }

    pub(super) fn leak_rows(&mut self) {
        self.unsigned_report_rows();
        self.possession_rows();
        // Positive control: the key every row above named still works.
        let finn = self.f.finn_key.clone();
        self.rows.push(Attack {
            name: format!(
                "[{}/{}] leaks: the key the refused reports and requests named still works",
                self.f.stores, self.ring
            ),
            request: RawRequest::get(
                "/api/users/me",
                vec![("authorization", format!("Bearer {finn}").into_bytes())],
            ),
            expect: Outcome::Accepted(json!({"id": self.f.finn_id, "email": "finn@example.com"})),
            store_calls: None,
            must_not_echo: vec![],
        });
    }

    /// Reports that GitHub did not sign, each naming Finn's live key: 401 before any lookup.
    fn unsigned_report_rows(&mut self) {
        let f = self.f;
        let live = f.finn_key.clone();
        let body = report(&[(&live, "https://github.com/octo/app/blob/main/.env")]);
        let bytes = body.as_bytes();
        let id = f.github.identifier().as_bytes();
        let good = f.github.sign(bytes);
        let unsigned = || {
            answered(
                401,
                json!({"detail": "Invalid or missing GitHub signature"}),
            )
        };
        let other_report = report(&[("nxr_nothing", "https://github.com/octo/app")]);
        let mut der_with_garbage = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(&good)
                .expect("the signer's base64")
        };
        der_with_garbage.push(0);
        let der_with_garbage = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(der_with_garbage)
        };
        let mut with_newline = body.clone().into_bytes();
        with_newline.push(b'\n');
        let cases: Vec<(&str, Headers, Vec<u8>)> = vec![
            ("no signature headers", vec![], bytes.to_vec()),
            (
                "the identifier alone",
                vec![("github-public-key-identifier", id.to_vec())],
                bytes.to_vec(),
            ),
            (
                "the signature alone",
                vec![("github-public-key-signature", good.clone().into_bytes())],
                bytes.to_vec(),
            ),
            (
                "the headers twice",
                [
                    signature_headers(id, good.as_bytes()),
                    signature_headers(id, good.as_bytes()),
                ]
                .concat(),
                bytes.to_vec(),
            ),
            (
                "signed by a key GitHub never published",
                signature_headers(
                    f.not_github.identifier().as_bytes(),
                    f.not_github.sign(bytes).as_bytes(),
                ),
                bytes.to_vec(),
            ),
            (
                "GitHub's identifier, another key's signature",
                signature_headers(id, f.not_github.sign(bytes).as_bytes()),
                bytes.to_vec(),
            ),
            (
                "GitHub's signature of another report",
                signature_headers(id, f.github.sign(other_report.as_bytes()).as_bytes()),
                bytes.to_vec(),
            ),
            (
                "a byte appended to the signed body",
                signature_headers(id, good.as_bytes()),
                with_newline,
            ),
            (
                "the signed body, truncated",
                signature_headers(id, good.as_bytes()),
                bytes[..bytes.len() - 2].to_vec(),
            ),
            (
                "the signed body, re-serialised",
                signature_headers(id, good.as_bytes()),
                serde_json::to_vec_pretty(
                    &serde_json::from_str::<Value>(&body).expect("a JSON report"),
                )
                .expect("serialises"),
            ),
            (
                "a signature that is not base64",
                signature_headers(id, b"%%% not base64 %%%"),
                bytes.to_vec(),
            ),
            (
                "an empty signature",
                signature_headers(id, b""),
                bytes.to_vec(),
            ),
            (
                "a 4 KB signature",
                signature_headers(id, "QUFB".repeat(1024).as_bytes()),
                bytes.to_vec(),
            ),
            (
                "a signature that is not DER",
                signature_headers(id, b"bm90IERFUg=="),
                bytes.to_vec(),
            ),
            (
                "DER with a trailing byte",
                signature_headers(id, der_with_garbage.as_bytes()),
                bytes.to_vec(),
            ),
            (
                "r = s = 0",
                signature_headers(id, b"MAYCAQACAQA="),
                bytes.to_vec(),
            ),
            (
                "a 4 KB identifier",
                signature_headers("f".repeat(4096).as_bytes(), good.as_bytes()),
                bytes.to_vec(),
            ),
            (
                "an identifier with bytes outside UTF-8",
                signature_headers(b"\xff\xfe", good.as_bytes()),
                bytes.to_vec(),
            ),
        ];
        for (what, headers, body) in cases {
            self.leak_row(
                &format!("secret scanning: {what}"),
                post(GITHUB, headers, &body),
                unsigned(),
                0,
                &[&live],
            );
        }
        // Signed by GitHub but not a report: 422, still before any lookup.
        for (what, body, loc, kind) in [
            ("an empty body", "", json!(["body"]), "missing"),
            (
                "an object",
                r#"{"token": "x"}"#,
                json!(["body"]),
                "list_type",
            ),
            (
                "a list of strings",
                r#"["nxr_x"]"#,
                json!(["body", 0]),
                "model_attributes_type",
            ),
            (
                "a token that is not a string",
                r#"[{"token": 7, "type": "t"}]"#,
                json!(["body", 0, "token"]),
                "string_type",
            ),
        ] {
            let headers = signature_headers(id, f.github.sign(body.as_bytes()).as_bytes());
            self.leak_row(
                &format!("secret scanning: signed, {what}"),
                post(GITHUB, headers, body.as_bytes()),
                Outcome::Invalid { loc, kind },
                0,
                &[],
            );
        }
    }

    /// Revoke-by-possession requests that name no live key, or another key than Finn's own:
    /// the one 202, one lookup for a well-formed key (none for anything else), no write.
    fn possession_rows(&mut self) {
        let f = self.f;
        let accepted = || answered(202, json!({"status": "accepted"}));
        let with_key = |key: &str| json!({ "key": key }).to_string().into_bytes();
        let finn_id = ApiKey::parse(&f.finn_key).expect("a valid key").id();
        let alice_id = ApiKey::parse(&f.alice_key).expect("a valid key").id();
        let bob_id = KeyId::parse_str(&f.bob_key_id).expect("a key id");
        let forged = |id| {
            ApiKey::generate_for(id)
                .expect("OS randomness")
                .expose()
                .to_owned()
        };
        let unknown = ApiKey::generate().expect("OS randomness");
        let mut flipped = f.finn_key.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ASCII");
        let well_formed = [
            ("Finn's id with a forged secret", forged(finn_id)),
            ("Alice's id with a forged secret", forged(alice_id)),
            ("Bob's id with a forged secret", forged(bob_id)),
            ("an unknown key", unknown.expose().to_owned()),
            ("a revoked key", f.revoked_key.clone()),
            ("an expired key", f.expired_key.clone()),
        ];
        for (what, key) in well_formed {
            self.leak_row(
                &format!("revoke by possession: {what} (one lookup, no write)"),
                post(REVOKE, vec![], &with_key(&key)),
                accepted(),
                1,
                &[&key],
            );
        }
        let malformed = [
            ("Finn's key, mistyped", flipped),
            ("Finn's key with a NUL byte", format!("{}\u{0}", f.finn_key)),
            ("Finn's key in capitals", f.finn_key.to_uppercase()),
            ("a GitHub token", "ghp_notoneofours".to_owned()),
            ("an empty key", String::new()),
            ("60 KB of key", format!("nxr_{}", "a".repeat(60 * 1024))),
        ];
        for (what, key) in malformed {
            self.leak_row(
                &format!("revoke by possession: {what} (no lookup)"),
                post(REVOKE, vec![], &with_key(&key)),
                accepted(),
                0,
                &[&key],
            );
        }
        let finn = f.finn_key.clone();
        self.leak_row(
            "revoke by possession: the key in the Authorization header, no body",
            post(
                REVOKE,
                vec![("authorization", format!("Bearer {finn}").into_bytes())],
                b"",
            ),
            Outcome::Invalid {
                loc: json!(["body"]),
                kind: "missing",
            },
            0,
            &[&finn],
        );
        self.leak_row(
            "revoke by possession: a body over 64 KiB",
            post(REVOKE, vec![], &with_key(&"a".repeat(70 * 1024))),
            answered(413, json!({"detail": "Request body too large"})),
            0,
            &[],
        );
    }
}
