//! Finding the credential in an HTTP request: the one parser both framework crates call.
//!
//! Rules (RFC 6750, tightened):
//!
//! * `Authorization: Bearer <token>`: the scheme is case-insensitive, separated from the token
//!   by one or more spaces (not tabs); the token must be an RFC 6750 `b64token`.
//! * No `Authorization` header, or another scheme (`Basic …`) → [`ApiError::MissingCredentials`].
//! * Two or more `Authorization` headers, non-ASCII bytes, an empty token, or characters
//!   outside `b64token` → [`ApiError::InvalidRequest`].
//! * `?token=` counts only where the route opts in ([`QueryToken::Accept`], for WebSockets,
//!   whose browser API cannot set headers); elsewhere it is ignored. A header and a *different*
//!   `?token=`, or two `token` parameters, → [`ApiError::InvalidRequest`].
//! * `?ticket=` (a single-use WebSocket ticket) counts only where the route opts in
//!   ([`AuthRequirement::accept_ticket`](crate::AuthRequirement::accept_ticket)), and is then
//!   the whole credential: with an `Authorization` header or a `?token=` beside it, or two
//!   `ticket` parameters, or an empty one → [`ApiError::InvalidRequest`] ([`extract_ticket`]).
//! * A token longer than the authenticator accepts
//!   ([`Authenticator::max_credential_len`](nexora_auth::Authenticator::max_credential_len):
//!   the JWT size cap, 8 KiB by default) → a bad credential ([`InvalidReason::TooLarge`]),
//!   before it is parsed.

use std::borrow::Cow;

use subtle::ConstantTimeEq;

use nexora_auth::InvalidReason;

use crate::ApiError;

/// Whether a route accepts the credential in the `token` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryToken {
    /// Ignore `?token=` (REST routes). The default.
    #[default]
    Ignore,
    /// Accept `?token=` (WebSocket routes, as the product documents).
    Accept,
}

/// Whether `b` is an RFC 6750 `b64token` character (`ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/"`). Branch-free (`|`, not `||`), so that the check over a whole token compiles to
/// vector compares: this runs on every request, over hundreds of bytes for a JWT.
fn is_b64_byte(b: u8) -> bool {
    let folded = b | 0x20; // ASCII upper case to lower case; nothing else lands in a..=z
    (folded.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &[u8]) -> bool {
    let body_end = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    // `fold` without early exit: the compiler vectorises it.
    body_end > 0
        && token[..body_end]
            .iter()
            .fold(true, |all, &b| all & is_b64_byte(b))
}

fn parse_authorization(value: &[u8], max_len: usize) -> Result<Option<&str>, ApiError> {
    // The scheme and its blanks are not the token; anything longer cannot hold one that fits.
    if value.len() > max_len.saturating_add(16) {
        return Err(ApiError::invalid_token(InvalidReason::TooLarge));
    }
    if !value.is_ascii() {
        return Err(ApiError::InvalidRequest("non-ASCII Authorization header"));
    }
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        // A bare "Bearer" is a bearer request with no token; any other bare word is another
        // scheme (which we do not speak).
        return if value.eq_ignore_ascii_case(b"bearer") {
            Err(ApiError::InvalidRequest("empty bearer token"))
        } else {
            Ok(None)
        };
    };
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() {
        return Err(ApiError::InvalidRequest("empty bearer token"));
    }
    if !is_b64token(token) {
        return Err(ApiError::InvalidRequest(
            "bearer token outside RFC 6750 b64token",
        ));
    }
    if token.len() > max_len {
        return Err(ApiError::invalid_token(InvalidReason::TooLarge));
    }
    // Checked ASCII above, so this is valid UTF-8.
    Ok(std::str::from_utf8(token).ok())
}

fn query_token(query: &str, max_len: usize) -> Result<Option<Cow<'_, str>>, ApiError> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "token" {
            if found.is_some() {
                return Err(ApiError::InvalidRequest("more than one token parameter"));
            }
            found = Some(value);
        }
    }
    match found {
        Some(v) if v.is_empty() => Err(ApiError::InvalidRequest("empty token parameter")),
        Some(v) if v.len() > max_len => Err(ApiError::invalid_token(InvalidReason::TooLarge)),
        other => Ok(other),
    }
}

/// The single-use ticket of a request's query (`?ticket=`), if it has one; see the module
/// docs for when it is refused. `has_header` says whether the request carries an
/// `Authorization` header.
pub fn extract_ticket(query: Option<&str>, has_header: bool) -> Result<Option<String>, ApiError> {
    let mut ticket = None;
    let mut token = false;
    for (name, value) in query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
    {
        match name.as_ref() {
            "ticket" if ticket.is_some() => {
                return Err(ApiError::InvalidRequest("more than one ticket parameter"));
            }
            "ticket" => ticket = Some(value),
            "token" => token = true,
            _ => {}
        }
    }
    match ticket {
        None => Ok(None),
        Some(t) if t.is_empty() => Err(ApiError::InvalidRequest("empty ticket parameter")),
        Some(_) if has_header || token => {
            Err(ApiError::InvalidRequest("a ticket and another credential"))
        }
        Some(t) => Ok(Some(t.into_owned())),
    }
}

/// The chat a WebSocket request is for, as a ticket is checked against it: the last segment
/// of the request path, percent-decoded (`/api/ws/chat%2D1` → `chat-1`); `None` when it is
/// empty.
pub fn chat_of(path: &str) -> Option<Cow<'_, str>> {
    let last = path.rsplit('/').next().unwrap_or_default();
    (!last.is_empty()).then(|| crate::routes::percent_decode(last))
}

/// Extracts the credential of a request.
///
/// `authorization` yields the raw value of every `Authorization` header (in order), `query`
/// is the raw query string (without `?`), `max_len` the longest token accepted (pass
/// [`Authenticator::max_credential_len`](nexora_auth::Authenticator::max_credential_len)).
/// Returns the token text, or the error that answers the request.
pub fn extract_credential<'a, I>(
    authorization: I,
    query: Option<&'a str>,
    query_token_policy: QueryToken,
    max_len: usize,
) -> Result<Cow<'a, str>, ApiError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut headers = authorization.into_iter();
    let first = headers.next();
    if headers.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    let from_header = match first {
        Some(value) => parse_authorization(value, max_len)?,
        None => None,
    };
    let from_query = match (query_token_policy, query) {
        (QueryToken::Accept, Some(query)) => query_token(query, max_len)?,
        _ => None,
    };
    match (from_header, from_query) {
        (Some(h), Some(q)) => {
            if h.len() == q.len() && bool::from(h.as_bytes().ct_eq(q.as_bytes())) {
                Ok(Cow::Borrowed(h))
            } else {
                Err(ApiError::InvalidRequest(
                    "header and query credentials differ",
                ))
            }
        }
        (Some(h), None) => Ok(Cow::Borrowed(h)),
        (None, Some(q)) => Ok(q),
        (None, None) => Err(ApiError::MissingCredentials),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The default cap (the JWT size cap of `JwtConfig::new("nexora", "nexora-api")`).
    const MAX: usize = 8 * 1024;

    fn header(values: &[&[u8]]) -> Result<String, u16> {
        extract_credential(values.iter().copied(), None, QueryToken::Ignore, MAX)
            .map(Cow::into_owned)
            .map_err(|e| e.status())
    }

    fn kind(values: &[&[u8]], query: Option<&str>, policy: QueryToken) -> Result<String, String> {
        extract_credential(values.iter().copied(), query, policy, MAX)
            .map(Cow::into_owned)
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn the_b64token_alphabet_is_rfc_6750s() {
        for b in 0..=255u8 {
            let want =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_b64_byte(b), want, "{b:#04x}");
        }
        assert!(is_b64token(b"abc.DEF-_~+/=="));
        assert!(!is_b64token(b"=="));
        assert!(!is_b64token(b"a=b"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert_eq!(
                header(&[format!("{scheme} abc.def-ghi").as_bytes()]),
                Ok("abc.def-ghi".into())
            );
        }
        assert_eq!(header(&[b"Bearer   padded=="]), Ok("padded==".into()));
    }

    #[test]
    fn malformed_headers_are_401() {
        let cases: &[&[u8]] = &[
            b"Bearer",
            b"Bearer ",
            b"Bearerabc",
            b"Bearer\tabc",
            b"Bearer a b",
            b"Bearer a,b",
            b"Bearer =abc",
            b"Bearer ====",
            b"Bearer \xc3\xa9t\xc3\xa9",
            b"Bearer abc\x80",
        ];
        for value in cases {
            assert_eq!(
                header(&[value]),
                Err(401),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        let big = format!("Bearer {}", "a".repeat(MAX * 2));
        assert_eq!(header(&[big.as_bytes()]), Err(401));
        // The cap is the one passed in, to the byte, in the header and in the query.
        let at_cap = "a".repeat(MAX);
        let over = "a".repeat(MAX + 1);
        assert!(header(&[format!("Bearer {at_cap}").as_bytes()]).is_ok());
        assert_eq!(header(&[format!("Bearer {over}").as_bytes()]), Err(401));
        let query = format!("token={over}");
        assert_eq!(
            extract_credential([], Some(&query), QueryToken::Accept, MAX).map_err(|e| e.status()),
            Err(401)
        );
    }

    #[test]
    fn missing_and_foreign_schemes_are_missing_credentials() {
        assert_eq!(
            kind(&[], None, QueryToken::Ignore),
            Err("MissingCredentials".into())
        );
        assert_eq!(
            kind(&[b"Basic dXNlcjpwYXNz"], None, QueryToken::Ignore),
            Err("MissingCredentials".into())
        );
        assert_eq!(
            kind(&[b"Token abc"], None, QueryToken::Ignore),
            Err("MissingCredentials".into())
        );
    }

    #[test]
    fn two_headers_are_rejected_in_either_order() {
        assert!(header(&[b"Bearer a", b"Bearer b"]).is_err());
        assert!(header(&[b"Basic x", b"Bearer b"]).is_err());
        assert!(header(&[b"Bearer b", b"Basic x"]).is_err());
    }

    #[test]
    fn query_token_only_where_accepted() {
        assert_eq!(
            kind(&[], Some("token=abc"), QueryToken::Ignore),
            Err("MissingCredentials".into())
        );
        assert_eq!(
            kind(&[], Some("x=1&token=abc"), QueryToken::Accept),
            Ok("abc".into())
        );
        assert_eq!(
            kind(&[b"Bearer abc"], Some("token=abc"), QueryToken::Accept),
            Ok("abc".into())
        );
        assert!(kind(&[b"Bearer abc"], Some("token=xyz"), QueryToken::Accept).is_err());
        assert!(kind(&[], Some("token=a&token=a"), QueryToken::Accept).is_err());
        assert!(kind(&[], Some("token="), QueryToken::Accept).is_err());
        // On a REST route a stray ?token= neither helps nor conflicts.
        assert_eq!(
            kind(&[b"Bearer abc"], Some("token=xyz"), QueryToken::Ignore),
            Ok("abc".into())
        );
    }

    #[test]
    fn a_ticket_is_the_whole_credential() {
        let ticket =
            |q: &str, header: bool| extract_ticket(Some(q), header).map_err(|e| format!("{e:?}"));
        assert_eq!(ticket("ticket=nxt_a&x=1", false), Ok(Some("nxt_a".into())));
        assert_eq!(ticket("x=1", true), Ok(None));
        assert_eq!(extract_ticket(None, false).ok(), Some(None));
        for (query, header) in [
            ("ticket=a&ticket=a", false),
            ("ticket=", false),
            ("ticket=a", true),
            ("ticket=a&token=b", false),
        ] {
            assert!(
                matches!(ticket(query, header), Err(e) if e.starts_with("InvalidRequest")),
                "{query} {header}"
            );
        }
        assert_eq!(chat_of("/api/ws/chat%2D1").as_deref(), Some("chat-1"));
        assert_eq!(chat_of("/ws/c"), Some("c".into()));
        assert_eq!(chat_of("/ws/"), None);
    }

    proptest! {
        #[test]
        fn total_on_arbitrary_bytes(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..3),
            query in ".{0,64}",
        ) {
            let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            for policy in [QueryToken::Ignore, QueryToken::Accept] {
                if let Ok(token) = extract_credential(refs.iter().copied(), Some(&query), policy, MAX) {
                    prop_assert!(!token.is_empty());
                }
            }
        }
    }
}
