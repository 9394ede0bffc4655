//! Forged and malformed JWTs, once per legitimate signer of the ring: `typ`, `crit`, nesting,
//! duplicate fields, every odd claim, encodings, signature and segment edits.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};

use super::{Catalogue, Cred, Want};
use nexora_auth_testkit::jwt::{b64, forge};

use crate::attacks::forge::{flip_signature_byte, object, q, segments};

impl Catalogue<'_> {
    pub(super) fn jwt_rows_per_signer(&mut self) {
        let now = self.now;
        for legit in self.legit_signers() {
            let l = legit.label;
            let sign = |header: &str, claims: &str| forge(header, claims, &legit.signer);
            let base = object(&self.base_claims());
            let typ = |t: &str| legit.header(&[("typ", q(t))]);

            // Positive controls: what standard libraries send must keep working.
            for t in ["JWT", "at+jwt"] {
                let name = format!("{l}: typ {t} (accepted)");
                self.token(&name, &sign(&typ(t), &base), Want::Accept, Cred::Free);
            }
            let name = format!("{l}: no typ (accepted)");
            self.token(
                &name,
                &sign(&legit.header(&[]), &base),
                Want::Accept,
                Cred::Free,
            );

            let mut bad: Vec<(String, String)> = Vec::new();
            for t in ["refresh+jwt", "reset", "JWE"] {
                bad.push((format!("typ {t}"), sign(&typ(t), &base)));
            }
            bad.push((
                "crit [exp]".into(),
                sign(&legit.header(&[("crit", r#"["exp"]"#.into())]), &base),
            ));
            bad.push((
                "crit [b64] with b64 false".into(),
                sign(
                    &legit.header(&[("crit", r#"["b64"]"#.into()), ("b64", "false".into())]),
                    &base,
                ),
            ));
            let inner = sign(&typ("JWT"), &base);
            bad.push((
                "nested JWT (cty JWT, payload a signed JWT)".into(),
                sign(&legit.header(&[("cty", q("JWT"))]), &inner),
            ));
            let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
            let mut fields = self.base_claims();
            fields.push(("x", deep.clone()));
            bad.push((
                "claims nested 200 deep".into(),
                sign(&typ("JWT"), &object(&fields)),
            ));
            bad.push((
                "header nested 200 deep".into(),
                sign(&legit.header(&[("x", deep)]), &base),
            ));
            for (claim, first) in [
                ("sub", q(&self.f.bob_id)),
                ("exp", (now - 3600).to_string()),
                ("aud", q("someone-else")),
                ("iss", q("evil")),
                ("scope", q("agents:read")),
            ] {
                // The field twice: the first value wrong, the second the base one.
                let mut fields = self.base_claims();
                let position = fields.iter().position(|(n, _)| *n == claim).unwrap_or(0);
                fields.insert(position, (claim, first));
                bad.push((
                    format!("duplicate claim {claim}"),
                    sign(&typ("JWT"), &object(&fields)),
                ));
            }
            let duplicate_alg = format!(r#"{{"alg":"none",{}"#, &legit.header(&[])[1..]);
            bad.push(("duplicate header alg".into(), sign(&duplicate_alg, &base)));
            for (label, claim, value) in [
                ("exp missing", "exp", None),
                ("exp a string", "exp", Some(q(&(now + 600).to_string()))),
                ("exp null", "exp", Some("null".into())),
                ("exp negative", "exp", Some("-1".into())),
                ("exp 1e300", "exp", Some("1e300".into())),
                ("exp 2^64-1", "exp", Some(u64::MAX.to_string())),
                (
                    "exp beyond the maximum lifetime (2 days)",
                    "exp",
                    Some((now + 2 * 24 * 3600).to_string()),
                ),
                ("exp in the past", "exp", Some((now - 60).to_string())),
                ("nbf in the future", "nbf", Some((now + 3600).to_string())),
                ("iat in the future", "iat", Some((now + 3600).to_string())),
                ("aud missing", "aud", None),
                ("aud wrong", "aud", Some(q("someone-else"))),
                ("aud a number", "aud", Some("5".into())),
                ("aud an empty array", "aud", Some("[]".into())),
                (
                    "aud an array of a wrong one",
                    "aud",
                    Some(r#"["someone-else"]"#.into()),
                ),
                ("iss missing", "iss", None),
                ("iss wrong", "iss", Some(q("evil"))),
                ("sub missing", "sub", None),
                ("sub empty", "sub", Some(q(""))),
            ] {
                bad.push((
                    label.into(),
                    sign(&typ("JWT"), &self.claims_with(claim, value)),
                ));
            }
            // A BOM before the JSON of the header or the claims.
            bad.push((
                "BOM before the header JSON".into(),
                sign(&format!("\u{feff}{}", typ("JWT")), &base),
            ));
            bad.push((
                "BOM before the claims JSON".into(),
                sign(&typ("JWT"), &format!("\u{feff}{base}")),
            ));
            // Standard base64 (`+`, `/`) instead of base64url, correctly signed over the text.
            let header = legit.header(&[("typ", q("JWT")), ("x", q("??????>>>>>>"))]);
            let standard_message = format!(
                "{}.{}",
                STANDARD_NO_PAD.encode(&header),
                STANDARD_NO_PAD.encode(&base)
            );
            assert!(
                standard_message.contains('+') && standard_message.contains('/'),
                "the header must encode to + and /: {standard_message}"
            );
            let signature = legit.signer.signature(standard_message.as_bytes());
            bad.push((
                "standard base64 (+ and /), signed over that text".into(),
                format!("{standard_message}.{}", STANDARD_NO_PAD.encode(signature)),
            ));
            // … while the same header in base64url is fine (the control for that row).
            let name = format!("{l}: the same odd header in base64url (accepted)");
            self.token(&name, &sign(&header, &base), Want::Accept, Cred::Free);
            // Padding on the last segment only: still a b64token, refused by the decoder.
            let [h, p, s] = segments(&sign(&typ("JWT"), &base));
            let signature = URL_SAFE_NO_PAD.decode(&s).expect("own signature");
            bad.push((
                "padded signature segment (=)".into(),
                format!("{h}.{p}.{}", URL_SAFE.encode(&signature)),
            ));
            // Valid token, then a flipped bit in the first or the last signature byte.
            let good = sign(&typ("JWT"), &base);
            bad.push((
                "flipped last signature byte".into(),
                flip_signature_byte(&good, 0),
            ));
            let first = URL_SAFE_NO_PAD.decode(&s).map_or(0, |s| s.len() - 1);
            bad.push((
                "flipped first signature byte".into(),
                flip_signature_byte(&good, first),
            ));
            // Payload swapped under a valid signature: Bob's claims, or more scopes.
            let mut bob = self.base_claims();
            bob[0].1 = q(&self.f.bob_id);
            let [gh, _, gs] = segments(&good);
            bad.push((
                "payload swapped (another sub) under a valid signature".into(),
                format!("{gh}.{}.{gs}", b64(object(&bob))),
            ));
            let longer = self.claims_with("exp", Some((now + 900).to_string()));
            bad.push((
                "payload swapped (later exp) under a valid signature".into(),
                format!("{gh}.{}.{gs}", b64(longer)),
            ));
            // Segment counts around a valid token.
            bad.push((
                "two segments (signature dropped)".into(),
                format!("{gh}.{}", segments(&good)[1]),
            ));
            bad.push((
                "empty signature segment".into(),
                format!("{gh}.{}.", segments(&good)[1]),
            ));
            bad.push(("four segments (valid + .x)".into(), format!("{good}.x")));
            bad.push((
                "five segments (JWE-shaped)".into(),
                format!("{good}.{gs}.{gs}"),
            ));
            bad.push(("a leading dot".into(), format!(".{good}")));
            for (what, t) in bad {
                self.token(&format!("{l}: {what}"), &t, Want::InvalidToken, Cred::Free);
            }
            // Padding inside the token: not a b64token in the header (invalid_request); as
            // `?token=` text it reaches the verifier and fails there.
            // Spaces inside the JSON until its encoding needs padding; signed over that text.
            let mut header = typ("JWT");
            while !URL_SAFE.encode(&header).ends_with('=') {
                header.insert(header.len() - 1, ' ');
            }
            let message = format!("{}.{p}", URL_SAFE.encode(&header));
            let signature = legit.signer.signature(message.as_bytes());
            let padded_header = format!("{message}.{}", b64(signature));
            let name = format!("{l}: padded header segment (=)");
            self.token_split(
                &name,
                &padded_header,
                Want::InvalidRequest,
                Want::InvalidToken,
                Cred::Free,
            );
            // A BOM before the whole token: non-ASCII in the header; in ?token= it is text.
            let bom = format!("\u{feff}{good}");
            let name = format!("{l}: BOM before the token");
            self.token_split(
                &name,
                &bom,
                Want::InvalidRequest,
                Want::InvalidToken,
                Cred::Free,
            );
        }
    }
}
