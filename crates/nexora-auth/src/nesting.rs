//! How deeply a JWT's claims nest.
//!
//! `jsonwebtoken` and serde skip claims this crate does not read with an iterative scanner
//! that has no depth limit, so a token whose claims nest hundreds of levels deep was accepted
//! as long as its signature held. Nothing a real issuer sends nests like that; a verifier that
//! accepts it lets the token through to every downstream consumer that parses its claims
//! recursively (and may overflow its stack). [`MAX_CLAIMS_DEPTH`] bounds it.

use base64::Engine;

/// Deepest nesting of objects and arrays accepted in a JWT's claims: the claims object itself
/// is depth 1, so `{"aud": ["x"]}` is 2. Generous for real claims (Keycloak's
/// `resource_access.<client>.roles[]` is 4).
pub(crate) const MAX_CLAIMS_DEPTH: usize = 32;

/// Whether the claims (second segment) of a compact JWT nest deeper than
/// [`MAX_CLAIMS_DEPTH`]. Called only for tokens that already verified, so the payload is
/// base64url and JSON; an undecodable payload counts as too deep (refused).
pub(crate) fn claims_too_deep(token: &str) -> bool {
    let Some(payload) = token.split('.').nth(1) else {
        return true;
    };
    // Decoded on the stack: tokens are capped at a few KiB before they get here, and this
    // runs on every uncached verification.
    let mut buf = [0u8; 6 * 1024];
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(payload, &mut buf) {
        Ok(len) => exceeds_depth(&buf[..len], MAX_CLAIMS_DEPTH),
        // Larger than the buffer (only with a raised size cap) or not base64: decode on the heap.
        Err(_) => match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) {
            Ok(json) => exceeds_depth(&json, MAX_CLAIMS_DEPTH),
            Err(_) => true,
        },
    }
}

/// One pass, no recursion: counts `{`/`[` against `}`/`]` outside strings.
fn exceeds_depth(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings_only() {
        assert!(!exceeds_depth(br#"{"aud":["x"],"s":"[[[[{{{{\"]]"}"#, 2));
        assert!(exceeds_depth(br#"{"a":[[1]]}"#, 2));
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(exceeds_depth(deep.as_bytes(), MAX_CLAIMS_DEPTH));
        let fine = format!("{{\"x\":{}{}}}", "[".repeat(31), "]".repeat(31));
        assert!(!exceeds_depth(fine.as_bytes(), MAX_CLAIMS_DEPTH));
    }
}
