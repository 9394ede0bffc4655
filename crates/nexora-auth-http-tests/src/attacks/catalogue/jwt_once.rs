//! Forged JWTs that do not depend on the ring's signer: `alg none`, algorithm confusion, the
//! attacker's own keys, `jku`/`x5u`/`jwk`/`kid` headers, old tokens, wrong shapes and sizes.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use nexora_auth::JwtAlgorithm;
use nexora_auth_testkit::{
    jwt::{Signer, b64, forge},
    keys,
};
use serde_json::{Value, json};

use super::{Catalogue, Cred, Want};
use crate::{
    JWT_SECRET, SIGNING_KID,
    attacks::forge::{flip_signature_byte, object, pem_to_der, q, segments},
};

impl Catalogue<'_> {
    pub(super) fn jwt_rows_once(&mut self, canary: &str) {
        let base = object(&self.base_claims());
        let shared = Signer::Hmac("HS256", JWT_SECRET.to_vec());
        let attacker_secret = b"attacker-secret-attacker-secret-32bytes".to_vec();
        let attacker_hs = Signer::Hmac("HS256", attacker_secret.clone());
        let attacker_es = Signer::Pem(JwtAlgorithm::Es256, keys::ES256_B);
        let mut bad: Vec<(String, String)> = Vec::new();

        // alg none, in every spelling, with no, a valid-HMAC and a junk signature.
        for alg in ["none", "NONE", "None", "nOnE"] {
            let header = object(&[("alg", q(alg)), ("typ", q("JWT"))]);
            let message = format!("{}.{}", b64(&header), b64(&base));
            bad.push((format!("alg {alg}, empty signature"), format!("{message}.")));
            bad.push((format!("alg {alg}, no signature segment"), message.clone()));
            let hmac = shared.signature(message.as_bytes());
            bad.push((
                format!("alg {alg}, HS256 signature of the shared secret"),
                format!("{message}.{}", b64(hmac)),
            ));
            bad.push((
                format!("alg {alg}, junk signature"),
                format!("{message}.AAAA"),
            ));
        }
        // HS384/HS512 with the right secret, where only HS256 is allowed.
        for alg in ["HS384", "HS512"] {
            let header = object(&[("alg", q(alg)), ("typ", q("JWT"))]);
            let signer = Signer::Hmac(alg, JWT_SECRET.to_vec());
            bad.push((
                format!("{alg} with the shared secret"),
                forge(&header, &base, &signer),
            ));
        }
        // HS256 keyed with a public key (PEM bytes, PEM without newline, DER), kid or not.
        for (key_name, pem) in [
            ("ES256", keys::ES256_A_PUBLIC),
            ("Ed25519", keys::ED25519_PUBLIC),
            ("RSA", keys::RS256_PUBLIC),
        ] {
            let trimmed = String::from_utf8_lossy(pem).trim_end().as_bytes().to_vec();
            for (form, secret) in [
                ("PEM", pem.to_vec()),
                ("PEM without final newline", trimmed),
                ("DER", pem_to_der(pem)),
            ] {
                for kid in [None, Some(SIGNING_KID)] {
                    let mut fields = vec![("alg", q("HS256")), ("typ", q("JWT"))];
                    if let Some(kid) = kid {
                        fields.push(("kid", q(kid)));
                    }
                    let signer = Signer::Hmac("HS256", secret.clone());
                    bad.push((
                        format!(
                            "HS256 keyed with the {key_name} public key ({form}){}",
                            if kid.is_some() { ", kid k1" } else { "" }
                        ),
                        forge(&object(&fields), &base, &signer),
                    ));
                }
            }
        }
        // All-zero signatures (the "psychic signature" of ES256, and its kin).
        for (alg, len) in [("ES256", 64), ("EdDSA", 64), ("RS256", 256)] {
            for kid in [None, Some(SIGNING_KID)] {
                let mut fields = vec![("alg", q(alg)), ("typ", q("JWT"))];
                if let Some(kid) = kid {
                    fields.push(("kid", q(kid)));
                }
                let message = format!("{}.{}", b64(object(&fields)), b64(&base));
                bad.push((
                    format!(
                        "{alg} with an all-zero signature{}",
                        if kid.is_some() { ", kid k1" } else { "" }
                    ),
                    format!("{message}.{}", b64(vec![0u8; len])),
                ));
            }
        }
        // The other test keys under their own algorithm, naming the ring's kid: only the
        // ring's own key may sign for k1.
        for (alg, signer) in [
            ("ES256", Signer::Pem(JwtAlgorithm::Es256, keys::ES256_A)),
            ("EdDSA", Signer::Pem(JwtAlgorithm::EdDsa, keys::ED25519)),
            ("RS256", Signer::Pem(JwtAlgorithm::Rs256, keys::RS256)),
        ] {
            if alg == self.f.signing.alg_name() {
                continue;
            }
            let header = object(&[("alg", q(alg)), ("kid", q(SIGNING_KID)), ("typ", q("JWT"))]);
            bad.push((
                format!("{alg} test key not in this ring, kid k1"),
                forge(&header, &base, &signer),
            ));
        }
        // The attacker's own EC key: plain, with kid k1, and embedded as `jwk`.
        let attacker_jwk = {
            let key = EncodingKey::from_ec_pem(keys::ES256_B).expect("test key");
            serde_json::to_string(
                &jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256)
                    .expect("an EC JWK"),
            )
            .expect("a JWK serialises")
        };
        for (what, header) in [
            ("attacker's ES256 key", object(&[("alg", q("ES256"))])),
            (
                "attacker's ES256 key, kid k1",
                object(&[("alg", q("ES256")), ("kid", q(SIGNING_KID))]),
            ),
            (
                "embedded jwk header (attacker's key)",
                object(&[("alg", q("ES256")), ("jwk", attacker_jwk.clone())]),
            ),
            (
                "embedded jwk header (attacker's key), kid k1",
                object(&[
                    ("alg", q("ES256")),
                    ("kid", q(SIGNING_KID)),
                    ("jwk", attacker_jwk.clone()),
                ]),
            ),
            (
                "jku pointing at a canary (attacker's key)",
                object(&[
                    ("alg", q("ES256")),
                    ("kid", q(SIGNING_KID)),
                    ("jku", q(&format!("{canary}/jwks.json"))),
                ]),
            ),
            (
                "x5u pointing at a canary (attacker's key)",
                object(&[
                    ("alg", q("ES256")),
                    ("kid", q(SIGNING_KID)),
                    ("x5u", q(&format!("{canary}/cert.pem"))),
                ]),
            ),
        ] {
            bad.push((what.into(), forge(&header, &base, &attacker_es)));
        }
        let oct_jwk = format!(r#"{{"kty":"oct","k":{}}}"#, q(&b64(&attacker_secret)));
        for (what, header) in [
            (
                "embedded oct jwk header (attacker's HMAC secret)",
                object(&[("alg", q("HS256")), ("jwk", oct_jwk)]),
            ),
            (
                "jku pointing at a canary (attacker's HMAC secret)",
                object(&[
                    ("alg", q("HS256")),
                    ("jku", q(&format!("{canary}/jwks.json"))),
                ]),
            ),
            (
                "x5u pointing at a canary (attacker's HMAC secret)",
                object(&[
                    ("alg", q("HS256")),
                    ("x5u", q(&format!("{canary}/cert.pem"))),
                ]),
            ),
        ] {
            bad.push((what.into(), forge(&header, &base, &attacker_hs)));
        }
        // `kid` as a file path or SQL: signed with what such a lookup would return.
        for (what, kid, secret) in [
            (
                "kid path traversal to /dev/null, empty key",
                "../../../../../../../dev/null",
                &b""[..],
            ),
            ("kid /dev/null, empty key", "/dev/null", b""),
            (
                "kid path traversal to a source file",
                "../../../../src/lib.rs",
                b"//",
            ),
            ("kid SQL injection, empty key", "' OR '1'='1' --", b""),
            (
                "kid SQL UNION returning a known key",
                "x' UNION SELECT 'attacker-secret' --",
                b"attacker-secret",
            ),
        ] {
            let header = object(&[("alg", q("HS256")), ("kid", q(kid)), ("typ", q("JWT"))]);
            bad.push((
                what.into(),
                forge(&header, &base, &Signer::Hmac("HS256", secret.to_vec())),
            ));
        }
        // Old tokens: expired, foreign, and an old (expired) signature over a fresh payload.
        bad.push(("expired JWT".into(), self.f.expired_jwt.clone()));
        bad.push((
            "JWT of another service's secret".into(),
            self.f.foreign_jwt.clone(),
        ));
        let [oh, _, os] = segments(&self.f.expired_jwt);
        bad.push((
            "fresh payload under an old (expired) token's signature".into(),
            format!("{oh}.{}.{os}", b64(&base)),
        ));
        // The login token with a flipped signature bit, and with its payload swapped.
        bad.push((
            "login token, flipped last signature byte".into(),
            flip_signature_byte(&self.f.alice_jwt, 0),
        ));
        let [lh, lp, ls] = segments(&self.f.alice_jwt);
        let login_claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&lp).unwrap_or_default())
                .unwrap_or_default();
        let mut swapped = login_claims.clone();
        swapped["sub"] = json!(self.f.bob_id);
        bad.push((
            "login token, payload swapped (Bob) under its signature".into(),
            format!("{lh}.{}.{ls}", b64(swapped.to_string())),
        ));
        // Wrong segment counts and shapes.
        for (what, t) in [
            ("one segment", "eyJhbGciOiJIUzI1NiJ9".to_owned()),
            ("two dots only", "..".to_owned()),
            ("three dots only", "...".to_owned()),
            ("a.b", "a.b".to_owned()),
            ("a.b.c", "a.b.c".to_owned()),
            ("a.b.c.d", "a.b.c.d".to_owned()),
            ("a.b.c.d.e", "a.b.c.d.e".to_owned()),
        ] {
            bad.push((what.into(), t));
        }
        // Just over the 8 KiB cap, correctly signed.
        let mut fields = self.base_claims();
        fields.push(("pad", q(&"p".repeat(9 * 1024))));
        bad.push((
            "9 KiB JWT (over the size cap), correctly signed".into(),
            forge(&object(&[("alg", q("HS256"))]), &object(&fields), &shared),
        ));
        // kid of 10 KiB junk (the token is then over the cap too).
        let junk_kid = object(&[("alg", q("HS256")), ("kid", q(&"J".repeat(10 * 1024)))]);
        bad.push((
            "kid of 10 KiB junk".into(),
            forge(&junk_kid, &base, &shared),
        ));

        for (what, t) in bad {
            self.token(&what, &t, Want::InvalidToken, Cred::Free);
        }

        // 1 MB token: the header is refused by the HTTP server or by the size cap, fast.
        let huge = format!("eyJ{}", "A".repeat(1 << 20));
        self.header(
            "1 MB JWT-looking token",
            format!("Bearer {huge}").as_bytes(),
            Want::RefusedOrClosed,
            Cred::Free,
            &[],
        );
        self.query(
            "1 MB JWT-looking token",
            &huge,
            Want::RefusedOrClosed,
            Cred::Free,
        );
    }
}
