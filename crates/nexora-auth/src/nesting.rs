//! How deeply a JWT's header and claims nest.
//!
//! serde skips the fields this crate does not read with serde_json's iterative scanner, which
//! has no depth limit, so a token whose claims nest hundreds of levels deep would be accepted
//! as long as its signature held. Nothing a real issuer sends nests like that; a verifier that
//! accepts it lets the token through to every downstream consumer that parses its claims
//! recursively (and may overflow its stack). [`MAX_CLAIMS_DEPTH`] bounds it.

/// Deepest nesting of objects and arrays accepted in a JWT's header or claims: the object
/// itself is depth 1, so `{"aud": ["x"]}` is 2. Generous for real claims (Keycloak's
/// `resource_access.<client>.roles[]` is 4).
pub(crate) const MAX_CLAIMS_DEPTH: usize = 32;

/// Whether the decoded JSON of a header or payload nests deeper than [`MAX_CLAIMS_DEPTH`].
///
/// Text with at most that many `{` and `[` bytes in all cannot nest deeper, whatever their
/// order and whether some sit inside strings; counting them is one branch-free pass that the
/// compiler vectorises, so ordinary tokens never reach the exact scan.
pub(crate) fn too_deep(json: &[u8]) -> bool {
    let openers = json.iter().filter(|&&b| b == b'{' || b == b'[').count();
    openers > MAX_CLAIMS_DEPTH && exceeds_depth(json, MAX_CLAIMS_DEPTH)
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

    #[test]
    fn the_count_shortcut_agrees_with_the_scan() {
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(32), "]".repeat(32));
        assert!(too_deep(deep.as_bytes()));
        // Many brackets, none deep: the count exceeds the limit, the scan decides.
        let wide = format!("{{\"x\":[{}[]]}}", "[],".repeat(100));
        assert!(!too_deep(wide.as_bytes()));
        let in_strings = format!("{{\"x\":\"{}\"}}", "[".repeat(100));
        assert!(!too_deep(in_strings.as_bytes()));
        assert!(!too_deep(br#"{"sub":"u","aud":["a","b"],"x":{"y":[1]}}"#));
    }
}
