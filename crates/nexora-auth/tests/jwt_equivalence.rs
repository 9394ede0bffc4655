//! `TokenAuthority::verify` reads the header and the claims itself, once each. It accepts
//! exactly the tokens that `jsonwebtoken::decode` with the same validation accepts, then
//! narrowed by this crate's own policy (`kid`, `crit`, `typ`, times on the injected clock,
//! lifetime, subject, scopes), and reads the same values from them. The reference here is that
//! pipeline written with `jsonwebtoken`, run over generated headers and claims: odd types,
//! nulls, escapes, arrays, duplicates, wrong signatures.
//!
//! Header fields the verifier never acts on (`jku`, `x5u`, `jwk`, …) are not generated with
//! ill-typed values: `jsonwebtoken` types them and refuses, this verifier skips them.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use nexora_auth::{
    JwtConfig, JwtKeys, OwnerId, Scopes, SecretBytes, TokenAuthority, VerifiedToken,
};
use nexora_auth_testkit::{
    ManualClock,
    jwt::{Signer, forge},
};
use proptest::{prelude::*, sample::select};
use serde::Deserialize;
use time::OffsetDateTime;

const SECRET: &[u8] = b"jwt-equivalence secret, at least 32 bytes";
/// Far from any leeway or lifetime boundary, so the two sides read one time.
const NOW: u64 = 1_900_000_000;
const LEEWAY: u64 = 30;
const MAX_LIFETIME: u64 = 24 * 3600;

fn authority() -> TokenAuthority {
    TokenAuthority::new(
        JwtKeys::hs256(&SecretBytes::new(SECRET.to_vec())).expect("long enough"),
        JwtConfig::new("nexora", "nexora-api").verified_cache(0),
    )
    .expect("valid config")
    .with_clock(Arc::new(ManualClock::new(
        OffsetDateTime::from_unix_timestamp(NOW as i64).expect("a valid time"),
    )))
}

/// The claims the reference reads, typed as `jsonwebtoken` users type them.
#[derive(Deserialize)]
struct ReferenceClaims {
    sub: String,
    exp: u64,
    #[allow(
        dead_code,
        reason = "read for its type; jsonwebtoken compares the value"
    )]
    iss: String,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// What `verify` should answer, from `jsonwebtoken::decode` and the policy on top of it.
fn reference(token: &str) -> Option<(OwnerId, Option<Scopes>, Option<String>, u64)> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&["nexora"]);
    validation.set_audience(&["nexora-api"]);
    validation.validate_exp = false;
    let key = DecodingKey::from_secret(SECRET).expect("a secret");
    let data = jsonwebtoken::decode::<ReferenceClaims>(token, &key, &validation).ok()?;
    let header = data.header;
    let accepted_typ = ["jwt", "at+jwt", "application/at+jwt"];
    if header.kid.is_some()
        || header.crit.is_some()
        || header
            .typ
            .is_some_and(|t| !accepted_typ.iter().any(|a| t.eq_ignore_ascii_case(a)))
    {
        return None;
    }
    let c = data.claims;
    let too_late = c.exp.saturating_add(LEEWAY) < NOW;
    let too_early = c.nbf.is_some_and(|nbf| nbf > NOW + LEEWAY);
    let too_long = c.exp > NOW + MAX_LIFETIME + LEEWAY
        || c.iat
            .is_some_and(|iat| iat > NOW + LEEWAY || c.exp.saturating_sub(iat) > MAX_LIFETIME);
    if too_late || too_early || too_long || c.sub.is_empty() {
        return None;
    }
    let scopes = match c.scope {
        None => None,
        Some(text) => Some(Scopes::parse_space_separated(&text).ok()?),
    };
    Some((OwnerId::new(c.sub), scopes, c.jti, c.exp))
}

fn read(v: &VerifiedToken) -> (OwnerId, Option<Scopes>, Option<String>, u64) {
    (
        v.subject.clone(),
        v.scopes.clone(),
        v.jti.clone(),
        v.expires_at,
    )
}

/// A JSON object from raw members, in order (duplicates kept).
fn object(members: &[(&str, String)]) -> String {
    let inner: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn sign(header: &str, claims: &str, secret: &[u8]) -> String {
    forge(header, claims, &Signer::hs256(secret))
}

/// One member of a header or of the claims: its name, its value in a good token (`None`:
/// absent) and the other values to try (raw JSON, `None`: absent). A second `alg`, `sub`,
/// `aud` or `iss` member tries duplicates.
struct Member {
    name: &'static str,
    good: Option<String>,
    others: Vec<Option<String>>,
}

fn member(name: &'static str, good: &str, others: &[&str]) -> Member {
    // `-` is "absent".
    let raw = |v: &str| (v != "-").then(|| v.to_owned());
    Member {
        name,
        good: raw(good),
        others: others.iter().map(|o| raw(o)).collect(),
    }
}

fn header_members() -> Vec<Member> {
    vec![
        member(
            "alg",
            r#""HS256""#,
            &["-", r#""HS512""#, r#""none""#, r#""hs256""#, "5"],
        ),
        member("kid", "-", &["null", r#""other""#, r#""""#]),
        member(
            "typ",
            "-",
            &[
                r#""JWT""#,
                r#""at+jwt""#,
                r#""application/at+jwt""#,
                r#""AT+JWT""#,
                r#""refresh+jwt""#,
                "5",
                "null",
            ],
        ),
        member(
            "crit",
            "-",
            &[r#"["b64"]"#, r#"["exp"]"#, "[]", "null", "5"],
        ),
        member("b64", "-", &["true", "false", "null", r#""x""#]),
        member("x5u", "-", &[r#""http://canary""#]),
        member("x", "-", &[r#"{"y":[1,{"z":null}]}"#, "null"]),
        member("alg", "-", &[r#""HS256""#]),
    ]
}

fn claim_members() -> Vec<Member> {
    let t = |offset: i64| (NOW as i64 + offset).to_string();
    let exp_text = format!("\"{}\"", t(600));
    vec![
        member(
            "sub",
            r#""user-1""#,
            &["-", r#""""#, r#""us\u0065r-1""#, "5", "null"],
        ),
        member(
            "exp",
            &t(600),
            &[
                "-",
                &t(-3600),
                &t(2 * 24 * 3600),
                &exp_text,
                "-1",
                "1.5",
                "null",
                "18446744073709551615",
            ],
        ),
        member(
            "iss",
            r#""nexora""#,
            &[
                "-",
                r#""evil""#,
                r#"["nexora"]"#,
                r#""nexor\u0061""#,
                "null",
                "5",
            ],
        ),
        member(
            "aud",
            r#""nexora-api""#,
            &[
                "-",
                r#""other""#,
                r#"["nexora-api"]"#,
                r#"["other","nexora-api"]"#,
                r#"["nexora-api","nexora-api"]"#,
                r#"["other"]"#,
                "[]",
                r#"["nexora-api",5]"#,
                r#"["nexora-api",null]"#,
                r#"[["nexora-api"]]"#,
                "5",
                "true",
                "null",
                r#"{"a":1}"#,
                r#""nexora\u002dapi""#,
            ],
        ),
        member(
            "iat",
            "-",
            &[&t(0), &t(3600), &t(-2 * 24 * 3600), "null", r#""x""#],
        ),
        member("nbf", "-", &[&t(-10), &t(3600), "null", r#""x""#]),
        member("jti", r#""j1""#, &["-", "5", "null", r#""j\"1""#]),
        member(
            "scope",
            r#""agents:read keys:manage""#,
            &["-", r#""bad\"scope""#, r#""""#, "5", "null"],
        ),
        member("x", "-", &[r#"[1,{"a":null},"]"]"#, "{}"]),
        member("sub", "-", &[r#""user-2""#]),
        member("aud", "-", &[r#""nexora-api""#]),
        member("iss", "-", &[r#""nexora""#]),
    ]
}

/// The object with each member's chosen value (absent ones left out).
fn build(members: &[Member], values: &[Option<String>]) -> String {
    let present: Vec<(&str, String)> = members
        .iter()
        .zip(values)
        .filter_map(|(m, v)| v.clone().map(|v| (m.name, v)))
        .collect();
    object(&present)
}

fn good(members: &[Member]) -> Vec<Option<String>> {
    members.iter().map(|m| m.good.clone()).collect()
}

/// Each member good nine times in ten, else one of its other values.
fn values(members: Vec<Member>) -> impl Strategy<Value = String> {
    let choices: Vec<BoxedStrategy<Option<String>>> = members
        .iter()
        .map(|m| prop_oneof![9 => Just(m.good.clone()), 1 => select(m.others.clone())].boxed())
        .collect();
    choices.prop_map(move |values| build(&members, &values))
}

fn assert_agrees(header: &str, claims: &str, secret: &[u8]) {
    let token = sign(header, claims, secret);
    let ours = authority().verify(&token);
    assert_eq!(
        ours.as_ref().ok().map(read),
        reference(&token),
        "header {header} claims {claims}: {ours:?}"
    );
}

/// Every other value of every member, alone in an otherwise good token.
#[test]
fn each_single_change_gets_the_same_answer() {
    let (header, claims) = (header_members(), claim_members());
    let good_claims = build(&claims, &good(&claims));
    let good_header = build(&header, &good(&header));
    let good_token = sign(&good_header, &good_claims, SECRET);
    assert!(
        authority().verify(&good_token).is_ok() && reference(&good_token).is_some(),
        "the good token is accepted by both: the comparisons below can go either way"
    );
    for (members, is_header) in [(&header, true), (&claims, false)] {
        for (i, m) in members.iter().enumerate() {
            for other in &m.others {
                let mut values = good(members);
                values[i] = other.clone();
                let changed = build(members, &values);
                let (h, c) = if is_header {
                    (&changed, &good_claims)
                } else {
                    (&good_header, &changed)
                };
                assert_agrees(h, c, SECRET);
            }
        }
    }
    assert_agrees(
        &good_header,
        &good_claims,
        b"another secret, also 32 bytes long",
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Several changes at once, and now and then a wrong signature.
    #[test]
    fn combined_changes_get_the_same_answer(
        header in values(header_members()),
        claims in values(claim_members()),
        right_secret in prop::bool::weighted(0.9),
    ) {
        let secret: &[u8] = if right_secret { SECRET } else { b"another secret, also 32 bytes long" };
        assert_agrees(&header, &claims, secret);
    }
}
