//! The client address of a request behind reverse proxies: [`TrustedProxies`].
//!
//! Behind a reverse proxy every connection comes from the proxy, so a throttle keyed by the
//! peer address would put every user in one bucket (20 failed logins anywhere would lock
//! everyone out). The proxy says who its client was in a header, but a header is only as
//! trustworthy as whoever wrote it. The rule, applied once here for every framework:
//!
//! * A peer **outside** the trusted set is the client, whatever headers it sends.
//! * A peer **inside** it forwards: the header it manages lists the hops, each proxy
//!   appending the address it received the request from. Walking the list from the right,
//!   the first address not in the trusted set is the client: everything to its left was
//!   written by the client itself (or by proxies nobody vouches for) and is never read.
//! * An entry that is not an address (`unknown`, an obfuscated `_name`, garbage) stops the
//!   walk: the client is then the last hop known, a trusted proxy. Failing towards the proxy
//!   throttles more, never towards an address the client chose.
//!
//! Only the one header the proxy manages is read ([`ForwardedHeader`]): a proxy that appends
//! to `X-Forwarded-For` usually passes a `Forwarded` header through untouched (and the other
//! way round), and a header passed through is the client's to write. Reading both would let
//! any client pick its own address.
//!
//! The `Forwarded` parser ([RFC 7239]) is written here rather than taken from a crate: the
//! ones on crates.io (`rfc7239` 0.1, `forwarded-header-value` 0.1) split values on `,` and `;`
//! without regard to quoted strings. This one follows the RFC's grammar (quoted strings,
//! escapes, empty list elements), is total (any bytes parse to some list of nodes, never a
//! panic), and has property tests for round trips and for what the client can influence.
//!
//! [RFC 7239]: https://www.rfc-editor.org/rfc/rfc7239

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

use ipnet::IpNet;

/// A trusted-proxy setting that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyConfigError {
    /// An entry of a trusted-proxy list is neither an IP address nor a CIDR block.
    #[error(
        "invalid trusted proxy {0:?}: expected an IP address or a CIDR block such as 10.0.0.0/8"
    )]
    TrustedProxy(String),
    /// The forwarding header is neither `x-forwarded-for` nor `forwarded`.
    #[error("forwarded header {0:?} must be `x-forwarded-for` or `forwarded`")]
    ForwardedHeader(String),
}

/// Name of the `Forwarded` header (RFC 7239), lower-case.
pub const FORWARDED: &str = "forwarded";
/// Name of the `X-Forwarded-For` header, lower-case.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Which header the trusted proxies write the client address into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`: what nginx, HAProxy, Caddy, Traefik and
    /// the cloud load balancers write. The default.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = ProxyConfigError;

    /// `x-forwarded-for` or `forwarded`, in any case.
    fn from_str(text: &str) -> Result<Self, ProxyConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            X_FORWARDED_FOR => Ok(Self::XForwardedFor),
            FORWARDED => Ok(Self::Forwarded),
            _ => Err(ProxyConfigError::ForwardedHeader(text.to_owned())),
        }
    }
}

/// The reverse proxies whose forwarding header is believed, and which header that is.
///
/// Defaults to none ([`TrustedProxies::none`]): the client is always the TCP peer and
/// forwarding headers are ignored. Configure it with
/// [`Api::trusted_proxies`](crate::Api::trusted_proxies), so that every framework resolves
/// the client the same way.
///
/// ```
/// use std::net::IpAddr;
/// use nexora_auth_http::proxy::TrustedProxies;
///
/// let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1")?;
/// let peer: IpAddr = "10.1.2.3".parse()?;
/// // The client claims to be 203.0.113.9; the proxy appended the address it really saw.
/// let header = b"203.0.113.9, 198.51.100.7".as_slice();
/// let client = proxies.client_address(peer, [], [header]);
/// assert_eq!(client, "198.51.100.7".parse::<IpAddr>()?);
/// // Anyone else's header is ignored.
/// let stranger: IpAddr = "192.0.2.1".parse()?;
/// assert_eq!(proxies.client_address(stranger, [], [header]), stranger);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedProxies")
            .field(
                "nets",
                &self
                    .nets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .field("header", &self.header)
            .finish()
    }
}

impl TrustedProxies {
    /// No trusted proxy: the peer is the client. The default.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts these networks, reading `X-Forwarded-For` (see [`TrustedProxies::reading`]).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            nets: nets.into_iter().map(|net| net.trunc()).collect(),
            header: ForwardedHeader::default(),
        }
    }

    /// Parses a comma-separated list of CIDR blocks (`10.0.0.0/8`, `fd00::/8`) or single
    /// addresses (`127.0.0.1`, `::1`); blanks around entries are ignored and an empty list is
    /// [`TrustedProxies::none`]. An entry that is neither is an error naming it.
    pub fn parse(list: &str) -> Result<Self, ProxyConfigError> {
        let mut nets = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => entry
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| ProxyConfigError::TrustedProxy(entry.to_owned()))?,
            };
            nets.push(net);
        }
        Ok(Self::new(nets))
    }

    /// Reads the client address from `header`. Defaults to
    /// [`ForwardedHeader::XForwardedFor`]; the other header is then ignored entirely.
    pub fn reading(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// The header read.
    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether nothing is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` (IPv4-mapped IPv6 counting as IPv4) is in the trusted set.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` carrying these raw header values (every
    /// line of each header, in order): see the [module docs](self) for the rule.
    pub fn client_address<'a, F, X>(&self, peer: IpAddr, forwarded: F, x_forwarded_for: X) -> IpAddr
    where
        F: IntoIterator<Item = &'a [u8]>,
        X: IntoIterator<Item = &'a [u8]>,
    {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => x_forwarded_for_nodes(x_forwarded_for),
            ForwardedHeader::Forwarded => forwarded_for_nodes(forwarded),
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Node::Ip(ip) => {
                    client = ip.to_canonical();
                    if !self.is_trusted(client) {
                        break;
                    }
                }
                Node::Unknown => break,
            }
        }
        client
    }
}

/// One hop of a forwarding header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// An address (a port, if any, dropped).
    Ip(IpAddr),
    /// `unknown`, an obfuscated identifier, a missing `for`, or anything unparseable.
    Unknown,
}

const fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 `tchar`.
const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A node identifier (RFC 7239 §6): `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`; an unbracketed IPv6 address is accepted too (as `X-Forwarded-For`
/// writers do). Anything else is [`Node::Unknown`].
fn parse_node(text: &[u8]) -> Node {
    let Ok(text) = std::str::from_utf8(text) else {
        return Node::Unknown;
    };
    let text = text.trim_matches([' ', '\t']);
    let valid_port = |port: &str| {
        (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
            || port.len() > 1
                && port.starts_with('_')
                && port
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Node::Unknown;
        };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return match inside.parse::<Ipv6Addr>() {
            Ok(v6) if port_ok => Node::Ip(IpAddr::V6(v6)),
            _ => Node::Unknown,
        };
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Node::Ip(ip);
    }
    match text.rsplit_once(':') {
        Some((host, port)) if valid_port(port) => host
            .parse::<std::net::Ipv4Addr>()
            .map_or(Node::Unknown, |v4| Node::Ip(IpAddr::V4(v4))),
        _ => Node::Unknown,
    }
}

/// The hops of `X-Forwarded-For` lines, left to right. Empty list elements are skipped
/// (RFC 9110 §5.6.1).
fn x_forwarded_for_nodes<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for value in values {
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if !item.is_empty() {
                nodes.push(parse_node(item));
            }
        }
    }
    nodes
}

/// The `for` hops of `Forwarded` lines, left to right.
fn forwarded_for_nodes<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for value in values {
        parse_forwarded(value, &mut nodes);
    }
    nodes
}

/// A cursor over one `Forwarded` value.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.at += 1;
        }
    }

    /// Skips to the next `;` or `,` outside a quoted string (or the end).
    fn skip_to_separator(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            match b {
                b'\\' if quoted => self.at += 1,
                b'"' => quoted = !quoted,
                b';' | b',' if !quoted => return,
                _ => {}
            }
            self.at += 1;
        }
    }

    /// A quoted string's content (unescaped), the cursor on its opening quote; `None` if it
    /// never closes.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.at += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    out.push(self.peek()?);
                    self.at += 1;
                }
                _ => out.push(b),
            }
        }
        None
    }
}

/// Parses `forwarded-element *( OWS "," OWS forwarded-element )` (RFC 7239 §4), pushing one
/// node per non-empty element: its `for` address, or [`Node::Unknown`] when the element has
/// none, has two, or does not parse.
fn parse_forwarded(value: &[u8], nodes: &mut Vec<Node>) {
    let mut cursor = Cursor {
        bytes: value,
        at: 0,
    };
    loop {
        let mut pairs = 0;
        let mut valid = true;
        let mut for_value: Option<Vec<u8>> = None;
        loop {
            cursor.skip_ows();
            match cursor.peek() {
                None | Some(b',') => break,
                Some(b';') => {
                    cursor.at += 1;
                    continue;
                }
                Some(_) => {}
            }
            pairs += 1;
            let name_start = cursor.at;
            while cursor.peek().is_some_and(is_tchar) {
                cursor.at += 1;
            }
            let name = &value[name_start..cursor.at];
            if name.is_empty() || cursor.peek() != Some(b'=') {
                valid = false;
                cursor.skip_to_separator();
                continue;
            }
            cursor.at += 1;
            let parsed = if cursor.peek() == Some(b'"') {
                cursor.quoted()
            } else {
                let start = cursor.at;
                // Lenient: any run up to a separator (e.g. an unquoted `1.2.3.4:80`).
                while cursor
                    .peek()
                    .is_some_and(|b| !matches!(b, b';' | b',') && !is_ows(b) && b != b'"')
                {
                    cursor.at += 1;
                }
                Some(value[start..cursor.at].to_vec())
            };
            let Some(parsed) = parsed else {
                valid = false;
                break;
            };
            if name.eq_ignore_ascii_case(b"for") {
                if for_value.is_some() {
                    valid = false;
                }
                for_value = Some(parsed);
            }
            cursor.skip_ows();
            match cursor.peek() {
                None | Some(b',' | b';') => {}
                Some(_) => {
                    valid = false;
                    cursor.skip_to_separator();
                }
            }
        }
        if pairs > 0 {
            nodes.push(match (valid, for_value) {
                (true, Some(node)) => parse_node(&node),
                _ => Node::Unknown,
            });
        }
        if cursor.peek().is_none() {
            return;
        }
        cursor.at += 1;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn forwarded(text: &str) -> Vec<Node> {
        forwarded_for_nodes([text.as_bytes()])
    }

    #[test]
    fn forwarded_examples_of_rfc_7239() {
        assert_eq!(forwarded(r#"for="_gazonk""#), [Node::Unknown]);
        assert_eq!(
            forwarded(r#"For="[2001:db8:cafe::17]:4711""#),
            [Node::Ip(ip("2001:db8:cafe::17"))]
        );
        assert_eq!(
            forwarded("for=192.0.2.60;proto=http;by=203.0.113.43"),
            [Node::Ip(ip("192.0.2.60"))]
        );
        assert_eq!(
            forwarded("for=192.0.2.43, for=198.51.100.17"),
            [Node::Ip(ip("192.0.2.43")), Node::Ip(ip("198.51.100.17"))]
        );
        assert_eq!(forwarded("for=unknown"), [Node::Unknown]);
    }

    #[test]
    fn forwarded_quirks() {
        // Quoted separators do not split; escapes are undone.
        assert_eq!(
            forwarded(r#"host="a,b;c";for="192.0.2.1", for="\1\9\2.0.2.2""#),
            [Node::Ip(ip("192.0.2.1")), Node::Ip(ip("192.0.2.2"))]
        );
        // Empty elements and pairs are ignored; blanks around separators are allowed.
        assert_eq!(
            forwarded(" , ;for=192.0.2.1 ; proto=https ,, "),
            [Node::Ip(ip("192.0.2.1"))]
        );
        // No `for`, two `for`s, a bad pair, an unterminated quote: unknown hops.
        for bad in [
            "proto=https",
            "for=192.0.2.1;for=192.0.2.2",
            "for=192.0.2.1;garbage",
            r#"for="192.0.2.1"#,
            "for=192.0.2.1 x",
            "=192.0.2.1",
        ] {
            assert_eq!(forwarded(bad), [Node::Unknown], "{bad}");
        }
        // Several header lines are one list.
        assert_eq!(
            forwarded_for_nodes([b"for=192.0.2.1".as_slice(), b"for=192.0.2.2"]),
            [Node::Ip(ip("192.0.2.1")), Node::Ip(ip("192.0.2.2"))]
        );
    }

    #[test]
    fn node_identifiers() {
        for (text, want) in [
            ("192.0.2.1", Some("192.0.2.1")),
            ("192.0.2.1:8080", Some("192.0.2.1")),
            ("192.0.2.1:_port", Some("192.0.2.1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("::ffff:192.0.2.1", Some("::ffff:192.0.2.1")),
            ("192.0.2.1:", None),
            ("192.0.2.1:123456", None),
            ("[2001:db8::1", None),
            ("[192.0.2.1]", None),
            ("[2001:db8::1]x", None),
            ("unknown", None),
            ("_hidden", None),
            ("example.com", None),
            ("", None),
        ] {
            let want = want.map_or(Node::Unknown, |w| Node::Ip(ip(w)));
            assert_eq!(parse_node(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").expect("a valid list");
        let peer = ip("10.0.0.1");
        let xff = |value: &str| proxies.client_address(peer, [], [value.as_bytes()]);
        assert_eq!(xff("1.1.1.1, 2.2.2.2, 10.0.0.2"), ip("2.2.2.2"));
        assert_eq!(xff("1.1.1.1,2.2.2.2"), ip("2.2.2.2"));
        assert_eq!(xff("10.0.0.3, 10.0.0.2"), ip("10.0.0.3"), "all trusted");
        assert_eq!(xff(""), peer, "no header");
        assert_eq!(xff("1.1.1.1, unknown, 10.0.0.2"), ip("10.0.0.2"), "stops");
        assert_eq!(xff("::ffff:2.2.2.2"), ip("2.2.2.2"), "canonical");
        // A peer outside the set is the client, whatever it sends.
        assert_eq!(
            proxies.client_address(ip("192.0.2.1"), [], [b"2.2.2.2".as_slice()]),
            ip("192.0.2.1")
        );
        // The IPv4-mapped peer is trusted as its IPv4 address.
        assert_eq!(
            proxies.client_address(ip("::ffff:127.0.0.1"), [], [b"2.2.2.2".as_slice()]),
            ip("2.2.2.2")
        );
        // Only the configured header is read.
        assert_eq!(
            proxies.client_address(peer, [b"for=3.3.3.3".as_slice()], []),
            peer
        );
        let rfc = proxies.clone().reading(ForwardedHeader::Forwarded);
        assert_eq!(
            rfc.client_address(peer, [b"for=3.3.3.3".as_slice()], [b"2.2.2.2".as_slice()]),
            ip("3.3.3.3")
        );
        assert_eq!(
            TrustedProxies::none().client_address(peer, [], [b"2.2.2.2".as_slice()]),
            peer
        );
    }

    #[test]
    fn lists_parse_or_name_the_bad_entry() {
        let proxies = TrustedProxies::parse(" 10.0.0.0/8 ,::1, fd00::/8,192.168.1.7/24 ")
            .expect("a valid list");
        assert!(proxies.is_trusted(ip("10.255.0.1")));
        assert!(proxies.is_trusted(ip("::1")));
        assert!(proxies.is_trusted(ip("fd12::1")));
        assert!(proxies.is_trusted(ip("192.168.1.200")), "host bits dropped");
        assert!(!proxies.is_trusted(ip("11.0.0.1")));
        assert!(TrustedProxies::parse("").expect("empty").is_empty());
        assert!(TrustedProxies::parse(" , ").expect("blank").is_empty());
        for bad in ["10.0.0.0/33", "localhost", "10.0.0.0/8; 1.2.3.4", "::1/129"] {
            let err = TrustedProxies::parse(bad).expect_err(bad);
            assert!(
                matches!(err, ProxyConfigError::TrustedProxy(_)),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            "X-Forwarded-For".parse::<ForwardedHeader>().expect("valid"),
            ForwardedHeader::XForwardedFor
        );
        assert_eq!(
            "forwarded".parse::<ForwardedHeader>().expect("valid"),
            ForwardedHeader::Forwarded
        );
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]
    }

    /// How a writer may spell one hop of `Forwarded`, with other parameters around it.
    fn forwarded_element(ip: IpAddr, port: Option<u16>, extra: bool) -> String {
        let node = match (ip, port) {
            (IpAddr::V4(v4), None) => v4.to_string(),
            (IpAddr::V4(v4), Some(p)) => format!("\"{v4}:{p}\""),
            (IpAddr::V6(v6), None) => format!("\"[{v6}]\""),
            (IpAddr::V6(v6), Some(p)) => format!("\"[{v6}]:{p}\""),
        };
        if extra {
            format!(r#"proto=https;FOR={node} ; host="a,b;c\"d";by=_proxy"#)
        } else {
            format!("for={node}")
        }
    }

    proptest! {
        #[test]
        fn forwarded_round_trips(
            hops in proptest::collection::vec((any_ip(), any::<Option<u16>>(), any::<bool>()), 0..8),
            lines in 1usize..3,
        ) {
            let elements: Vec<String> = hops
                .iter()
                .map(|(ip, port, extra)| forwarded_element(*ip, *port, *extra))
                .collect();
            let per_line = elements.len().div_ceil(lines).max(1);
            let texts: Vec<String> = elements.chunks(per_line).map(|c| c.join(" , ")).collect();
            let parsed = forwarded_for_nodes(texts.iter().map(|t| t.as_bytes()));
            let want: Vec<Node> = hops.iter().map(|(ip, _, _)| Node::Ip(*ip)).collect();
            prop_assert_eq!(parsed, want);
        }

        #[test]
        fn x_forwarded_for_round_trips(
            hops in proptest::collection::vec((any_ip(), any::<Option<u16>>()), 0..8),
        ) {
            let text = hops
                .iter()
                .map(|(ip, port)| match (ip, port) {
                    (IpAddr::V4(v4), Some(p)) => format!("{v4}:{p}"),
                    (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
                    (ip, None) => ip.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let want: Vec<Node> = hops.iter().map(|(ip, _)| Node::Ip(*ip)).collect();
            prop_assert_eq!(x_forwarded_for_nodes([text.as_bytes()]), want);
        }

        /// Any bytes parse (no panic) into at most one node per comma-separated piece.
        #[test]
        fn parsers_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let pieces = bytes.iter().filter(|&&b| b == b',').count() + 1;
            prop_assert!(forwarded_for_nodes([bytes.as_slice()]).len() <= pieces);
            prop_assert!(x_forwarded_for_nodes([bytes.as_slice()]).len() <= pieces);
        }

        /// What the client sends (everything left of what the trusted proxies appended) never
        /// makes the answer an address of its choosing: it is the address the proxy appended
        /// (always, for `X-Forwarded-For`), or — when the client's part breaks the `Forwarded`
        /// grammar across the proxy's entry (an unterminated quote) — a trusted hop, which only
        /// that client's own requests are counted under. An untrusted peer is always its own
        /// client.
        #[test]
        fn the_client_cannot_choose_its_address(
            client_part in proptest::collection::vec(any::<u8>(), 0..60),
            real_client in any::<[u8; 4]>(),
            inner_hops in 0usize..3,
            rfc in any::<bool>(),
        ) {
            let proxies = TrustedProxies::parse("10.0.0.0/8").expect("valid").reading(
                if rfc { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor },
            );
            // The real client is outside the trusted set.
            let real = IpAddr::from([real_client[0] | 0x80, real_client[1], real_client[2], real_client[3]]);
            let mut appended = vec![real];
            appended.extend((0..inner_hops).map(|i| IpAddr::from([10, 0, 0, u8::try_from(i).unwrap_or(0) + 2])));
            let suffix = appended
                .iter()
                .map(|ip| if rfc { format!("for={ip}") } else { ip.to_string() })
                .collect::<Vec<_>>()
                .join(",");
            let mut header = client_part.clone();
            header.extend_from_slice(b",");
            header.extend_from_slice(suffix.as_bytes());
            let peer = ip("10.0.0.1");
            let got = proxies.client_address(peer, [header.as_slice()], [header.as_slice()]);
            if rfc {
                prop_assert!(got == real || proxies.is_trusted(got), "{got}");
            } else {
                prop_assert_eq!(got, real);
            }
            // On a header line of its own (as most proxies add it), the client's part is
            // powerless in both forms.
            let lines = [client_part.as_slice(), suffix.as_bytes()];
            prop_assert_eq!(proxies.client_address(peer, lines, lines), real);
            let stranger = ip("192.0.2.1");
            prop_assert_eq!(
                proxies.client_address(stranger, [header.as_slice()], [header.as_slice()]),
                stranger
            );
        }
    }
}
