//! Asymmetric key rings: EdDSA, ES256, RS256, `kid` selection, rotation, JWKS, and the
//! algorithm-confusion attacks they must refuse.

use base64::Engine;
use nexora_auth::{JwtAlgorithm, JwtConfig, JwtKeys, OwnerId, Scopes, SecretBytes, TokenAuthority};
use nexora_auth_testkit::{
    jwt::{Signer, forge},
    keys::{ED25519, ED25519_PUBLIC, ES256_A, ES256_A_PUBLIC, ES256_B, RS256, RS256_PUBLIC},
};
use serde_json::json;

fn authority(keys: JwtKeys) -> TokenAuthority {
    TokenAuthority::new(keys, JwtConfig::new("nexora", "nexora-api")).unwrap()
}

fn scopes() -> Scopes {
    Scopes::new(["agents:read"]).unwrap()
}

fn hs_sign(header: serde_json::Value, secret: &[u8]) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": "mallory", "iat": now, "exp": now + 600, "iss": "nexora", "aud": "nexora-api"});
    forge(
        &header.to_string(),
        &claims.to_string(),
        &Signer::hs256(secret),
    )
}

#[test]
fn each_algorithm_signs_and_verifies_and_publishes_its_public_key() {
    for (alg, pem, kid) in [
        (JwtAlgorithm::Es256, ES256_A, "es-a"),
        (JwtAlgorithm::EdDsa, ED25519, "ed"),
        (JwtAlgorithm::Rs256, RS256, "rs"),
    ] {
        let a = authority(JwtKeys::from_private_pem(alg, kid, pem).unwrap());
        let token = a.issue(&OwnerId::new("u1"), &scopes()).unwrap();
        let v = a.verify(token.token.expose()).unwrap();
        assert_eq!(v.subject.as_str(), "u1");
        assert_eq!(v.kid.as_deref(), Some(kid));
        let jwks = serde_json::to_value(a.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], kid, "{jwks}");
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "private part must never be published"
        );
    }
}

#[test]
fn hs256_ring_publishes_nothing() {
    let a = authority(JwtKeys::hs256(&SecretBytes::new(vec![3; 32])).unwrap());
    assert!(a.jwks().keys.is_empty());
}

#[test]
fn signing_key_rotation_without_downtime() {
    let old = authority(JwtKeys::from_private_pem(JwtAlgorithm::Es256, "a", ES256_A).unwrap());
    let old_token = old.issue(&OwnerId::new("u1"), &scopes()).unwrap();
    let new = authority(
        JwtKeys::from_private_pem(JwtAlgorithm::Es256, "b", ES256_B)
            .unwrap()
            .with_verification_pem(JwtAlgorithm::Es256, "a", ES256_A_PUBLIC)
            .unwrap(),
    );
    let new_token = new.issue(&OwnerId::new("u2"), &scopes()).unwrap();
    assert_eq!(
        new.verify(old_token.token.expose()).unwrap().kid.as_deref(),
        Some("a")
    );
    assert_eq!(
        new.verify(new_token.token.expose()).unwrap().kid.as_deref(),
        Some("b")
    );
    assert!(
        old.verify(new_token.token.expose()).is_err(),
        "old ring does not know b"
    );
    assert_eq!(new.jwks().keys.len(), 2);
    assert!(
        JwtKeys::from_private_pem(JwtAlgorithm::Es256, "b", ES256_B)
            .unwrap()
            .with_verification_pem(JwtAlgorithm::Es256, "b", ES256_A_PUBLIC)
            .is_err(),
        "duplicate kid"
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // The classic RS/HS confusion: an attacker HMACs a token with the server's *public* key.
    for (alg, pem, public, kid) in [
        (JwtAlgorithm::Es256, ES256_A, ES256_A_PUBLIC, "es"),
        (JwtAlgorithm::EdDsa, ED25519, ED25519_PUBLIC, "ed"),
        (JwtAlgorithm::Rs256, RS256, RS256_PUBLIC, "rs"),
    ] {
        let a = authority(JwtKeys::from_private_pem(alg, kid, pem).unwrap());
        for header in [json!({"alg": "HS256", "kid": kid}), json!({"alg": "HS256"})] {
            let forged = hs_sign(header, public);
            assert!(
                a.verify(&forged).is_err(),
                "{kid}: HS256 with the public key must fail"
            );
        }
    }
}

#[test]
fn unknown_kid_and_wrong_alg_for_kid_are_refused() {
    let a = authority(
        JwtKeys::from_private_pem(JwtAlgorithm::Es256, "b", ES256_B)
            .unwrap()
            .with_verification_pem(JwtAlgorithm::Rs256, "r", RS256_PUBLIC)
            .unwrap(),
    );
    let es = a.issue(&OwnerId::new("u"), &scopes()).unwrap();
    let text = es.token.expose();
    // Re-label the ES256 token as kid "r" (an RS256 key): alg is pinned per key, so it fails.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (_, rest) = text.split_once('.').unwrap();
    for header in [
        json!({"alg": "ES256", "kid": "r"}),
        json!({"alg": "ES256", "kid": "../../etc/passwd"}),
        json!({"alg": "ES256", "kid": "' OR 1=1 --"}),
        json!({"alg": "ES256", "kid": "x".repeat(10_000)}),
        json!({"alg": "ES256"}),
    ] {
        let relabelled = format!("{}.{rest}", b64.encode(header.to_string()));
        assert!(a.verify(&relabelled).is_err(), "{header}");
    }
}

#[test]
fn migration_from_hs256_secret_to_asymmetric() {
    let secret = SecretBytes::new(vec![9; 32]);
    let legacy = authority(JwtKeys::hs256(&secret).unwrap());
    let legacy_token = legacy.issue(&OwnerId::new("u"), &scopes()).unwrap();
    let a = authority(
        JwtKeys::from_private_pem(JwtAlgorithm::EdDsa, "ed", ED25519)
            .unwrap()
            .with_hs256_verification(&secret)
            .unwrap(),
    );
    assert!(a.verify(legacy_token.token.expose()).is_ok());
    assert_eq!(
        a.jwks().keys.len(),
        1,
        "the shared secret is never published"
    );
    let _ = JwtConfig::new("nexora", "nexora-api");
}
