//! A correctly signed JWT whose claims nest deeper than 32 levels is refused (the claims this
//! crate does not read are skipped, and skipping is depth-limited); ordinary nesting verifies.

use nexora_auth::{InvalidReason, JwtConfig, JwtKeys, SecretBytes, TokenAuthority};
use nexora_auth_testkit::jwt::{Signer, forge};

const SECRET: &[u8] = b"jwt-nesting regression secret, 32+ bytes";

fn signed(claims: &str) -> String {
    forge(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        claims,
        &Signer::hs256(SECRET),
    )
}

fn claims_with(extra: &str) -> String {
    let now = jsonwebtoken_now();
    format!(
        r#"{{"sub":"user-1","iss":"nexora","aud":"nexora-api","iat":{now},"exp":{},"x":{extra}}}"#,
        now + 600
    )
}

fn jsonwebtoken_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deeply_nested_claims_are_refused_ordinary_ones_verify() {
    let authority = TokenAuthority::new(
        JwtKeys::hs256(&SecretBytes::new(SECRET.to_vec())).expect("long enough"),
        JwtConfig::new("nexora", "nexora-api"),
    )
    .expect("valid config");
    // 200 deep: refused.
    let deep = signed(&claims_with(&nested(200)));
    assert_eq!(
        authority.verify(&deep),
        Err(InvalidReason::Jwt(nexora_auth::JwtRejection::TooDeep)),
        "claims nested 200 deep must be refused"
    );
    // 33 levels in all (claims object + 32 arrays): refused; 32 in all: fine.
    assert_eq!(
        authority.verify(&signed(&claims_with(&nested(32)))),
        Err(InvalidReason::Jwt(nexora_auth::JwtRejection::TooDeep))
    );
    assert!(authority.verify(&signed(&claims_with(&nested(31)))).is_ok());
    // Brackets inside strings do not count.
    let in_string = format!("\"{}\"", "[".repeat(200));
    assert!(authority.verify(&signed(&claims_with(&in_string))).is_ok());
}
