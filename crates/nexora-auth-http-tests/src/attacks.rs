//! The attack catalogue — an auth library is judged by what it refuses — as one
//! table, sent over real HTTP to both frameworks on every store.
//!
//! * [`attacks`] lists the rows for one [`Fixture`]: forged and malformed JWTs (alg
//!   confusion, attacker keys, `jku`/`x5u`/`jwk`/`kid`/`crit`/`cty` headers, every odd claim),
//!   bearer-header parsing, malformed keys, and login emails no store can hold. A row is the exact request, its exact expected
//!   answer ([`Outcome`]), how many store calls it may cost, and the secrets its answer must
//!   not contain. Positive controls (tokens that must keep working) are rows too, so a server
//!   that refused everything would fail.
//! * [`run_attacks`] sends each row over a raw TCP connection — headers can then hold any
//!   byte and any size — and checks, beside the row's own expectation, what must hold for
//!   every row: never a 2xx or 101 unless the row is a positive control, never a 5xx, the
//!   token never echoed, and an answer within [`TIME_LIMIT`].
//! * [`identical_groups`] and [`run_identical`]: an unknown, a revoked, an expired and a forged
//!   key get byte-identical answers (status, every header but `Date`, body), and so do an
//!   unknown key id and another user's on the management endpoints.
//! * [`check_key_material`]: list, create and rotate never return a digest, nor the secret of
//!   any key other than the one just issued.
//! * [`Canary`]: the TCP listener `jku`/`x5u` headers point at; it must see no connection.
//! * [`panics`]: panics anywhere in the process (the servers run in-process).

use std::{
    sync::{
        Arc, Once,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, EncodingKey};
use nexora_auth::{ApiKey, KeyId, KeyStore};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf},
};

use crate::{ALICE_EMAIL, Fixture, JWT_SECRET, SIGNING_KID, Signing, StoreCalls, test_keys};

/// Longest time a row may take, request to full answer — also for 1 MB inputs. A row over it
/// is sent up to twice more and judged on its fastest answer, so a busy test machine does
/// not fail it; a slow code path still does.
pub const TIME_LIMIT: Duration = Duration::from_millis(500);

/// What a row sends: one HTTP/1.1 request, byte for byte.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// Path and query.
    pub target: String,
    /// Headers in order (repeats allowed), values as raw bytes.
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// The body, if any (`Content-Length` is added).
    pub body: Option<Vec<u8>>,
    /// Send a WebSocket handshake (`Upgrade: websocket`) instead of `Connection: close`.
    pub websocket: bool,
}

impl RawRequest {
    fn get(target: impl Into<String>, headers: Vec<(&'static str, Vec<u8>)>) -> Self {
        Self {
            method: "GET",
            target: target.into(),
            headers,
            body: None,
            websocket: false,
        }
    }

    fn to_bytes(&self, host: &str) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\n",
            self.method, self.target
        )
        .into_bytes();
        if self.websocket {
            out.extend_from_slice(
                b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            );
        } else {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        match &self.body {
            Some(body) => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
            }
            None if self.method != "GET" => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
            None => out.extend_from_slice(b"\r\n"),
        }
        out
    }
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Everything received, head and body, as sent.
    pub raw: Vec<u8>,
}

impl RawResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Status, every header but `Date`, and body: what must be byte-identical.
    fn comparable(&self) -> String {
        let mut out = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            if name != "date" {
                out.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value)));
            }
        }
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(&self.body));
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` to `base_url` (`http://127.0.0.1:port`) on a fresh connection and reads
/// the answer. `Err` says how the connection ended without a complete answer.
pub async fn send_raw(base_url: &str, request: &RawRequest) -> Result<RawResponse, String> {
    let host = base_url
        .strip_prefix("http://")
        .unwrap_or(base_url)
        .to_owned();
    let stream = TcpStream::connect(&host)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut reader, mut writer) = stream.into_split();
    let bytes = request.to_bytes(&host);
    // Write while reading: a server may answer (431) and close before taking a huge request
    // in full. The write half is kept (returned) so no early FIN reaches the server.
    let writing = tokio::spawn(async move {
        let result = writer.write_all(&bytes).await;
        (writer, result)
    });
    let answer = tokio::time::timeout(Duration::from_secs(5), read_response(&mut reader)).await;
    writing.abort();
    answer.unwrap_or_else(|_| Err("no complete answer within 5 s".into()))
}

async fn read_more(reader: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = reader
        .read(&mut chunk)
        .await
        .map_err(|e| format!("connection error: {e}"))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn read_response(reader: &mut OwnedReadHalf) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if read_more(reader, &mut buf).await? == 0 {
            return Err(format!("closed after {} bytes", buf.len()));
        }
        if buf.len() > 1 << 20 {
            return Err("response head over 1 MiB".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let body = if matches!(status, 101 | 204 | 304) {
        Vec::new()
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < head_end + len {
            if read_more(reader, &mut buf).await? == 0 {
                return Err("closed before the end of the body".into());
            }
        }
        buf[head_end..head_end + len].to_vec()
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        while !buf[head_end..].ends_with(b"0\r\n\r\n") {
            if read_more(reader, &mut buf).await? == 0 {
                return Err("closed before the last chunk".into());
            }
        }
        dechunk(&buf[head_end..])?
    } else {
        while read_more(reader, &mut buf).await? > 0 {}
        buf[head_end..].to_vec()
    };
    Ok(RawResponse {
        status,
        headers,
        body,
        raw: buf,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("short chunk")?;
    }
}

/// What a row expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exactly this status, `{"detail": <detail>}` as `application/json`, this
    /// `WWW-Authenticate`, and no `Retry-After`.
    Rejected {
        /// 401.
        status: u16,
        /// The `detail` text.
        detail: &'static str,
        /// The `WWW-Authenticate` value.
        challenge: &'static str,
    },
    /// A positive control: 200 with exactly this JSON body.
    Accepted(Value),
    /// A positive control on the WebSocket route: 101 Switching Protocols.
    Upgraded,
    /// Any 4xx, or the connection closed without an answer (a server may refuse a huge or
    /// malformed header before any application code runs). Never 2xx, 3xx or 5xx.
    RefusedOrClosed,
    /// A 422 whose first `detail` issue has this `loc` and `type`, as `application/json`,
    /// with no `WWW-Authenticate` and no `Retry-After`.
    Invalid {
        /// The issue's `loc`, e.g. `["body", "email"]`.
        loc: Value,
        /// The issue's `type`, e.g. `value_error`.
        kind: &'static str,
    },
}

/// One row of the catalogue.
#[derive(Debug, Clone)]
pub struct Attack {
    /// What the row tries, and where (`[ring] attack @ route`).
    pub name: String,
    /// The exact request.
    pub request: RawRequest,
    /// The exact expected answer.
    pub expect: Outcome,
    /// How many key- and user-store calls the request may cost (`None`: not checked).
    pub store_calls: Option<u64>,
    /// Strings the answer (head and body) must not contain: the token, its secret parts.
    pub must_not_echo: Vec<String>,
}

const NOT_AUTHENTICATED: &str = "Not authenticated";
const INVALID_CREDENTIALS: &str = "Invalid authentication credentials";
const INVALID_AUTH_REQUEST: &str = "Invalid authorization request";
const CHALLENGE: &str = "Bearer";
const CHALLENGE_INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;
const CHALLENGE_INVALID_REQUEST: &str = r#"Bearer error="invalid_request""#;

/// The expected answer in words, turned into an [`Outcome`] per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A positive control.
    Accept,
    /// 401 "Not authenticated", as if no credential were sent.
    Missing,
    /// 401 `invalid_request`.
    InvalidRequest,
    /// 401 `invalid_token`.
    InvalidToken,
    /// Any 4xx or a closed connection.
    RefusedOrClosed,
}

/// What a credential costs in store calls when it reaches the authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    /// A well-formed `nxr_` key: one key lookup.
    Key,
    /// A JWT, or anything refused before a lookup: no call.
    Free,
}

/// Where a row is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The application's route behind the auth layer and `RequireScope<AgentsRead>`.
    Agents,
    /// The product's `GET /api/users/me`.
    Me,
    /// The WebSocket route (header, or `?token=`).
    Ws,
}

impl Route {
    const REST: [Self; 2] = [Self::Agents, Self::Me];

    fn path(self) -> &'static str {
        match self {
            Self::Agents => "/agents",
            Self::Me => "/api/users/me",
            Self::Ws => "/ws/chat-1",
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for `?token=`.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// JSON text of a string.
fn q(text: &str) -> String {
    Value::from(text).to_string()
}

/// A JSON object as text, fields in order — duplicates allowed, values as raw JSON text.
fn object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}:{value}", q(name)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// How a token is signed.
#[derive(Debug, Clone)]
enum Signer {
    /// HMAC with this alg (`HS256`, `HS384`, `HS512`) and key.
    Hmac(&'static str, Vec<u8>),
    /// An asymmetric private key (PEM) with its algorithm.
    Pem(Algorithm, &'static [u8]),
}

impl Signer {
    fn alg(&self) -> &'static str {
        match self {
            Self::Hmac(alg, _) => alg,
            Self::Pem(Algorithm::ES256, _) => "ES256",
            Self::Pem(Algorithm::EdDSA, _) => "EdDSA",
            Self::Pem(_, _) => "RS256",
        }
    }

    fn signature(&self, message: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        macro_rules! mac {
            ($hash:ty, $key:expr) => {{
                let mut mac = <Hmac<$hash> as KeyInit>::new_from_slice($key)
                    .expect("HMAC takes any key length");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            Self::Hmac("HS384", key) => mac!(sha2::Sha384, key),
            Self::Hmac("HS512", key) => mac!(sha2::Sha512, key),
            Self::Hmac(_, key) => mac!(sha2::Sha256, key),
            Self::Pem(alg, pem) => {
                let key = match alg {
                    Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
                    Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
                    _ => EncodingKey::from_rsa_pem(pem),
                }
                .expect("the test keys parse");
                let signature =
                    jsonwebtoken::crypto::sign(message, &key, *alg).expect("the test keys sign");
                URL_SAFE_NO_PAD
                    .decode(signature)
                    .expect("jsonwebtoken returns base64url")
            }
        }
    }
}

/// `b64(header).b64(claims).b64(signature)` over the exact texts given.
fn token(header: &str, claims: &str, signer: &Signer) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = signer.signature(message.as_bytes());
    format!("{message}.{}", b64(signature))
}

/// The three segments of a compact token.
fn segments(token: &str) -> [String; 3] {
    let mut parts = token.splitn(3, '.').map(str::to_owned);
    let mut next = || parts.next().unwrap_or_default();
    [next(), next(), next()]
}

fn flip_signature_byte(token: &str, index_from_end: usize) -> String {
    let [h, p, s] = segments(token);
    let mut signature = URL_SAFE_NO_PAD.decode(&s).unwrap_or_default();
    if let Some(i) = signature.len().checked_sub(1 + index_from_end) {
        signature[i] ^= 0x01;
    }
    format!("{h}.{p}.{}", b64(signature))
}

/// The public key's DER bytes (the base64 between the PEM armour lines).
fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(body).expect("the test PEMs are base64")
}

/// A legitimate signer of the fixture's ring, and the header fields that name it.
struct Legit {
    label: &'static str,
    signer: Signer,
    kid: Option<&'static str>,
}

impl Legit {
    /// The header `{"alg", ["kid",] extra…}` as text.
    fn header(&self, extra: &[(&str, String)]) -> String {
        let mut fields = vec![("alg", q(self.signer.alg()))];
        if let Some(kid) = self.kid {
            fields.push(("kid", q(kid)));
        }
        fields.extend(extra.iter().cloned());
        object(&fields)
    }
}

/// Builds the rows for one fixture.
struct Catalogue<'a> {
    f: &'a Fixture,
    ring: &'static str,
    rows: Vec<Attack>,
    now: u64,
}

impl Catalogue<'_> {
    fn outcome(&self, want: Want, route: Route) -> Outcome {
        let rejected = |detail, challenge| Outcome::Rejected {
            status: 401,
            detail,
            challenge,
        };
        match (want, route) {
            (Want::Accept, Route::Agents) => Outcome::Accepted(json!({"owner": self.f.alice_id})),
            (Want::Accept, Route::Me) => {
                Outcome::Accepted(json!({"id": self.f.alice_id, "email": ALICE_EMAIL}))
            }
            (Want::Accept, Route::Ws) => Outcome::Upgraded,
            (Want::Missing, _) => rejected(NOT_AUTHENTICATED, CHALLENGE),
            (Want::InvalidRequest, _) => rejected(INVALID_AUTH_REQUEST, CHALLENGE_INVALID_REQUEST),
            (Want::InvalidToken, _) => rejected(INVALID_CREDENTIALS, CHALLENGE_INVALID_TOKEN),
            (Want::RefusedOrClosed, _) => Outcome::RefusedOrClosed,
        }
    }

    /// Key lookups for a key; once the credential checks out, the live-user lookup of its
    /// owner, and one more user lookup for `/api/users/me`.
    fn calls(want: Want, cred: Cred, route: Route) -> Option<u64> {
        let lookup = u64::from(cred == Cred::Key);
        match want {
            Want::Accept => Some(lookup + 1 + u64::from(route == Route::Me)),
            Want::InvalidToken => Some(lookup),
            Want::Missing | Want::InvalidRequest => Some(0),
            Want::RefusedOrClosed => None,
        }
    }

    fn push(
        &mut self,
        name: &str,
        (route, request): (Route, RawRequest),
        (want, cred): (Want, Cred),
        echo: &[&str],
    ) {
        self.rows.push(Attack {
            name: format!(
                "[{}/{}] {name} @ {}",
                self.f.stores,
                self.ring,
                route.path()
            ),
            request,
            expect: self.outcome(want, route),
            store_calls: Self::calls(want, cred, route),
            must_not_echo: secrets_of(echo),
        });
    }

    /// The `Authorization` header value on both REST routes and the WebSocket route.
    fn header(&mut self, name: &str, value: &[u8], want: Want, cred: Cred, echo: &[&str]) {
        self.headers(
            name,
            vec![("authorization", value.to_vec())],
            want,
            cred,
            echo,
        );
    }

    /// These headers on both REST routes and the WebSocket route.
    fn headers(
        &mut self,
        name: &str,
        headers: Vec<(&'static str, Vec<u8>)>,
        want: Want,
        cred: Cred,
        echo: &[&str],
    ) {
        for route in Route::REST {
            let request = RawRequest::get(route.path(), headers.clone());
            self.push(name, (route, request), (want, cred), echo);
        }
        let mut ws = RawRequest::get(Route::Ws.path(), headers);
        ws.websocket = true;
        self.push(
            &format!("{name} (header)"),
            (Route::Ws, ws),
            (want, cred),
            echo,
        );
    }

    /// `token` as `?token=` on the WebSocket route.
    fn query(&mut self, name: &str, token: &str, want: Want, cred: Cred) {
        let mut ws = RawRequest::get(
            format!("{}?token={}", Route::Ws.path(), query_escape(token)),
            vec![],
        );
        ws.websocket = true;
        self.push(
            &format!("{name} (?token=)"),
            (Route::Ws, ws),
            (want, cred),
            &[token],
        );
    }

    /// `Bearer <token>` on every route, and `?token=<token>` on the WebSocket route.
    fn token(&mut self, name: &str, token: &str, want: Want, cred: Cred) {
        self.token_split(name, token, want, want, cred);
    }

    /// As [`Self::token`], with a different expectation for `?token=` (which is not held to
    /// the header's `b64token` grammar: it is URL-decoded text).
    fn token_split(&mut self, name: &str, token: &str, header: Want, query: Want, cred: Cred) {
        let value = format!("Bearer {token}").into_bytes();
        self.header(name, &value, header, cred, &[token]);
        self.query(name, token, query, cred);
    }

    fn legit_signers(&self) -> Vec<Legit> {
        let mut signers = vec![Legit {
            label: "HS256 shared secret",
            signer: Signer::Hmac("HS256", JWT_SECRET.to_vec()),
            kid: None,
        }];
        if let Signing::Asymmetric(_) = self.f.signing {
            let alg = match self.f.signing.alg_name() {
                "ES256" => Algorithm::ES256,
                "EdDSA" => Algorithm::EdDSA,
                _ => Algorithm::RS256,
            };
            signers.push(Legit {
                label: "ring signing key",
                signer: Signer::Pem(
                    alg,
                    self.f
                        .signing
                        .private_pem()
                        .expect("asymmetric rings have one"),
                ),
                kid: Some(SIGNING_KID),
            });
        }
        signers
    }

    fn base_claims(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sub", q(&self.f.alice_id)),
            ("iss", q("nexora")),
            ("aud", q("nexora-api")),
            ("iat", self.now.to_string()),
            ("exp", (self.now + 600).to_string()),
            ("scope", q("agents:read keys:manage")),
        ]
    }

    /// The base claims with `name` set to `value` (raw JSON), or removed (`None`).
    fn claims_with(&self, name: &'static str, value: Option<String>) -> String {
        let mut fields = self.base_claims();
        fields.retain(|(n, _)| *n != name);
        if let Some(value) = value {
            fields.push((name, value));
        }
        object(&fields)
    }

    fn jwt_rows_per_signer(&mut self) {
        let now = self.now;
        for legit in self.legit_signers() {
            let l = legit.label;
            let sign = |header: &str, claims: &str| token(header, claims, &legit.signer);
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

    fn jwt_rows_once(&mut self, canary: &str) {
        let base = object(&self.base_claims());
        let shared = Signer::Hmac("HS256", JWT_SECRET.to_vec());
        let attacker_secret = b"attacker-secret-attacker-secret-32bytes".to_vec();
        let attacker_hs = Signer::Hmac("HS256", attacker_secret.clone());
        let attacker_es = Signer::Pem(Algorithm::ES256, test_keys::ES256_ATTACKER);
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
                token(&header, &base, &signer),
            ));
        }
        // HS256 keyed with a public key (PEM bytes, PEM without newline, DER), kid or not.
        for (key_name, pem) in [
            ("ES256", test_keys::ES256_PUBLIC),
            ("Ed25519", test_keys::ED25519_PUBLIC),
            ("RSA", test_keys::RS256_PUBLIC),
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
                        token(&object(&fields), &base, &signer),
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
            (
                "ES256",
                Signer::Pem(Algorithm::ES256, test_keys::ES256_PRIVATE),
            ),
            (
                "EdDSA",
                Signer::Pem(Algorithm::EdDSA, test_keys::ED25519_PRIVATE),
            ),
            (
                "RS256",
                Signer::Pem(Algorithm::RS256, test_keys::RS256_PRIVATE),
            ),
        ] {
            if alg == self.f.signing.alg_name() {
                continue;
            }
            let header = object(&[("alg", q(alg)), ("kid", q(SIGNING_KID)), ("typ", q("JWT"))]);
            bad.push((
                format!("{alg} test key not in this ring, kid k1"),
                token(&header, &base, &signer),
            ));
        }
        // The attacker's own EC key: plain, with kid k1, and embedded as `jwk`.
        let attacker_jwk = {
            let key = EncodingKey::from_ec_pem(test_keys::ES256_ATTACKER).expect("test key");
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
            bad.push((what.into(), token(&header, &base, &attacker_es)));
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
            bad.push((what.into(), token(&header, &base, &attacker_hs)));
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
                token(&header, &base, &Signer::Hmac("HS256", secret.to_vec())),
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
            token(&object(&[("alg", q("HS256"))]), &object(&fields), &shared),
        ));
        // kid of 10 KiB junk (the token is then over the cap too).
        let junk_kid = object(&[("alg", q("HS256")), ("kid", q(&"J".repeat(10 * 1024)))]);
        bad.push((
            "kid of 10 KiB junk".into(),
            token(&junk_kid, &base, &shared),
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

    fn bearer_rows(&mut self) {
        let key = self.f.alice_key.clone();
        let jwt = self.f.alice_jwt.clone();
        let k = key.as_str();
        let auth = |v: &[u8]| -> (&'static str, Vec<u8>) { ("authorization", v.to_vec()) };

        self.headers(
            "no Authorization header",
            vec![],
            Want::Missing,
            Cred::Free,
            &[],
        );
        self.header(
            "Basic scheme",
            b"Basic YWxpY2U6cHc=",
            Want::Missing,
            Cred::Free,
            &[],
        );
        for (what, value, cred) in [
            ("scheme bearer", format!("bearer {k}"), Cred::Key),
            ("scheme BEARER", format!("BEARER {k}"), Cred::Key),
            ("scheme bEaReR, a JWT", format!("bEaReR {jwt}"), Cred::Free),
            ("two spaces after Bearer", format!("Bearer  {k}"), Cred::Key),
        ] {
            let name = format!("{what} (accepted)");
            self.header(&name, value.as_bytes(), Want::Accept, cred, &[]);
        }
        for (what, value) in [
            ("Bearer alone", "Bearer"),
            ("Bearer and a space", "Bearer "),
            ("Bearer and spaces", "Bearer    "),
        ] {
            self.header(
                what,
                value.as_bytes(),
                Want::InvalidRequest,
                Cred::Free,
                &[],
            );
        }
        for (what, value) in [
            ("Bearer<token> without a space", format!("Bearer{k}")),
            ("tab separator", format!("Bearer\t{k}")),
            ("Token scheme", format!("Token {k}")),
        ] {
            self.header(what, value.as_bytes(), Want::Missing, Cred::Free, &[k]);
        }
        for (what, value) in [
            ("outside b64token: !", format!("Bearer {k}!")),
            ("outside b64token: comma", format!("Bearer {k},x")),
            ("outside b64token: inner space", format!("Bearer {k} x")),
            ("outside b64token: quotes", format!("Bearer \"{k}\"")),
            ("outside b64token: semicolon", format!("Bearer {k};")),
            ("outside b64token: percent", format!("Bearer {k}%00")),
            ("outside b64token: leading =", format!("Bearer ={k}")),
            (
                "outside b64token: = inside",
                format!("Bearer {}={}", &k[..30], &k[30..]),
            ),
        ] {
            self.header(
                what,
                value.as_bytes(),
                Want::InvalidRequest,
                Cred::Free,
                &[k],
            );
        }
        let mut high = b"Bearer ".to_vec();
        high.extend(0x80..=0xFF_u8);
        self.header(
            "bytes 0x80-0xFF",
            &high,
            Want::InvalidRequest,
            Cred::Free,
            &[],
        );
        let mut trailing = format!("Bearer {k}").into_bytes();
        trailing.push(0xFF);
        self.header(
            "a valid key and 0xFF",
            &trailing,
            Want::InvalidRequest,
            Cred::Free,
            &[k],
        );
        let mut bom = b"Bearer \xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(k.as_bytes());
        self.header(
            "BOM before a valid key",
            &bom,
            Want::InvalidRequest,
            Cred::Free,
            &[k],
        );
        for (what, byte) in [("DEL", 0x7F_u8), ("NUL", 0x00), ("CR", b'\r')] {
            let mut value = format!("Bearer {k}").into_bytes();
            value.push(byte);
            value.extend_from_slice(b"x");
            let name = format!("control byte {what} in the header");
            self.header(&name, &value, Want::RefusedOrClosed, Cred::Free, &[k]);
        }
        let basic = b"Basic YWxpY2U6cHc=".as_slice();
        let bearer = |t: &str| format!("Bearer {t}").into_bytes();
        for (what, first, second) in [
            ("two headers: key then Basic", bearer(k), basic.to_vec()),
            ("two headers: Basic then key", basic.to_vec(), bearer(k)),
            ("two headers: key then JWT", bearer(k), bearer(&jwt)),
            ("two headers: JWT then key", bearer(&jwt), bearer(k)),
            (
                "two headers: garbage then key",
                bearer("garbage"),
                bearer(k),
            ),
            (
                "two headers: key then garbage",
                bearer(k),
                bearer("garbage"),
            ),
            ("two headers: the same key twice", bearer(k), bearer(k)),
        ] {
            let headers = vec![auth(&first), auth(&second)];
            self.headers(what, headers, Want::InvalidRequest, Cred::Free, &[k]);
        }
        for (what, size) in [
            ("16 KB", 16 * 1024),
            ("64 KB", 64 * 1024),
            ("1 MB", 1 << 20),
        ] {
            let value = format!("Bearer nxr_{}", "a".repeat(size));
            let name = format!("{what} Authorization header");
            self.header(
                &name,
                value.as_bytes(),
                Want::RefusedOrClosed,
                Cred::Free,
                &[],
            );
        }

        // The WebSocket route: a header and a different ?token= is ambiguous.
        let bob = self.f.bob_key.clone();
        for (what, header, query) in [
            ("WS: key header, JWT ?token=", k, jwt.as_str()),
            ("WS: JWT header, key ?token=", jwt.as_str(), k),
            ("WS: key header, Bob's key ?token=", k, bob.as_str()),
            ("WS: key header, garbage ?token=", k, "garbage"),
            ("WS: garbage header, key ?token=", "garbage", k),
        ] {
            let mut request = RawRequest::get(
                format!("{}?token={}", Route::Ws.path(), query_escape(query)),
                vec![auth(&bearer(header))],
            );
            request.websocket = true;
            self.push(
                what,
                (Route::Ws, request),
                (Want::InvalidRequest, Cred::Free),
                &[header, query],
            );
        }
        let mut twice =
            RawRequest::get(format!("{}?token={k}&token={k}", Route::Ws.path()), vec![]);
        twice.websocket = true;
        self.push(
            "WS: two token parameters",
            (Route::Ws, twice),
            (Want::InvalidRequest, Cred::Free),
            &[k],
        );
        // ?token= on REST routes is not a credential.
        for route in Route::REST {
            for (what, param, t) in [
                ("?token= key on a REST route", "token", k),
                ("?token= JWT on a REST route", "token", jwt.as_str()),
                ("?access_token= key on a REST route", "access_token", k),
            ] {
                let request = RawRequest::get(format!("{}?{param}={t}", route.path()), vec![]);
                self.push(what, (route, request), (Want::Missing, Cred::Free), &[t]);
            }
            let request = RawRequest::get(
                format!("{}?token=garbage", route.path()),
                vec![auth(&bearer(k))],
            );
            self.push(
                "?token= garbage beside a valid header on a REST route (accepted)",
                (route, request),
                (Want::Accept, Cred::Key),
                &[],
            );
        }
    }

    fn key_rows(&mut self) {
        let key = self.f.alice_key.clone();
        let k = key.as_str();
        let swap = |at: usize, with: char| {
            let mut text = key.clone();
            text.replace_range(at..=at, &with.to_string());
            text
        };
        let tail = &k[4..];
        let last = k.len() - 1;
        let other = |c: char| if c == 'A' { 'B' } else { 'A' };
        let last_char = k[last..].chars().next().unwrap_or('A');
        let secret_char = k[30..].chars().next().unwrap_or('A');
        let id_char = k[10..].chars().next().unwrap_or('A');
        let malformed = [
            ("wrong prefix nxs_", format!("nxs_{tail}")),
            ("wrong prefix NXR_", format!("NXR_{tail}")),
            ("wrong prefix nxr-", format!("nxr-{tail}")),
            ("wrong prefix, no underscore", format!("nxr{tail}")),
            (
                "bad checksum (last character)",
                swap(last, other(last_char)),
            ),
            (
                "bad checksum (a secret character)",
                swap(30, other(secret_char)),
            ),
            ("bad checksum (an id character)", swap(10, other(id_char))),
            ("wrong length (one short)", k[..last].to_owned()),
            ("wrong length (one more)", format!("{k}A")),
            ("wrong length (doubled)", format!("{k}{tail}")),
            ("wrong length (prefix only)", "nxr_".to_owned()),
            ("non-base62 - in the secret", swap(30, '-')),
            ("non-base62 . in the secret", swap(30, '.')),
            ("non-base62 ~ in the id", swap(10, '~')),
            ("non-base62 + in the secret", swap(40, '+')),
            ("non-base62 / in the checksum", swap(last, '/')),
            ("non-base62 _ in the id", swap(8, '_')),
            ("non-base62 = at the end", swap(last, '=')),
        ];
        for (what, text) in malformed {
            let name = format!("key: {what} (no store call)");
            self.token(&name, &text, Want::InvalidToken, Cred::Free);
        }
        // Controls: well-formed keys cost exactly one lookup, so "no store call" above is a
        // real observation.
        let unknown = ApiKey::generate().expect("OS randomness");
        let bob_id = KeyId::parse_str(&self.f.bob_key_id).expect("a key id");
        let forged = ApiKey::generate_for(bob_id).expect("OS randomness");
        let revoked = self.f.revoked_key.clone();
        let expired = self.f.expired_key.clone();
        for (what, text) in [
            (
                "key: well-formed, unknown id (one lookup)",
                unknown.expose().to_owned(),
            ),
            (
                "key: Bob's id with a forged secret (one lookup)",
                forged.expose().to_owned(),
            ),
            ("key: revoked (one lookup)", revoked),
            ("key: expired (one lookup)", expired),
        ] {
            self.token(what, &text, Want::InvalidToken, Cred::Key);
        }
        self.token(
            "key: Alice's valid key (accepted)",
            k,
            Want::Accept,
            Cred::Key,
        );
        let jwt = self.f.alice_jwt.clone();
        self.token(
            "JWT: Alice's login token (accepted)",
            &jwt,
            Want::Accept,
            Cred::Free,
        );
    }
}

impl Catalogue<'_> {
    /// Logins with emails no store can hold: a 422 naming the field, before the throttle and
    /// before any store call (on Postgres a NUL byte would otherwise be a database error).
    fn login_rows(&mut self) {
        let login = |body: Vec<u8>| RawRequest {
            method: "POST",
            target: "/api/auth/login".into(),
            headers: vec![("content-type", b"application/json".to_vec())],
            body: Some(body),
            websocket: false,
        };
        let with_email = |email_json: &str| {
            login(format!(r#"{{"email": {email_json}, "password": "a guess!"}}"#).into_bytes())
        };
        let email_loc = json!(["body", "email"]);
        let long = format!(
            "{}@example.com",
            "a".repeat(nexora_auth::MAX_EMAIL_LEN - 11)
        );
        let huge = format!("{}@example.com", "a".repeat(60 * 1024));
        let unstorable = [
            (
                "a NUL byte (\\u0000)",
                q("nul\u{0}@example.com"),
                "value_error",
            ),
            ("a NUL byte, alone", q("\u{0}"), "value_error"),
            ("a line feed", q("line\nfeed@example.com"), "value_error"),
            (
                "an escape character",
                q("esc\u{1b}@example.com"),
                "value_error",
            ),
            ("DEL", q("del\u{7f}@example.com"), "value_error"),
            (
                "a C1 control (NEL)",
                q("nel\u{85}@example.com"),
                "value_error",
            ),
            ("one byte over the limit", q(&long), "string_too_long"),
            ("60 KB", q(&huge), "string_too_long"),
        ];
        for (what, email, kind) in unstorable {
            self.rows.push(Attack {
                name: format!(
                    "[{}/{}] login: email with {what} @ /api/auth/login",
                    self.f.stores, self.ring
                ),
                request: with_email(&email),
                expect: Outcome::Invalid {
                    loc: email_loc.clone(),
                    kind,
                },
                store_calls: Some(0),
                must_not_echo: vec![],
            });
        }
        // Text JSON cannot carry as a string: a lone surrogate escape, raw invalid UTF-8.
        let undecodable: [(&str, Vec<u8>); 2] = [
            (
                "a lone surrogate escape",
                br#"{"email": "a\ud800@example.com", "password": "a guess!"}"#.to_vec(),
            ),
            (
                "invalid UTF-8",
                b"{\"email\": \"a\xff\xfe@example.com\", \"password\": \"a guess!\"}".to_vec(),
            ),
        ];
        for (what, body) in undecodable {
            self.rows.push(Attack {
                name: format!(
                    "[{}/{}] login: email with {what} @ /api/auth/login",
                    self.f.stores, self.ring
                ),
                request: login(body),
                expect: Outcome::RefusedOrClosed,
                store_calls: Some(0),
                must_not_echo: vec![],
            });
        }
    }
}

/// The token and, for keys and JWTs, the parts of it that are secret on their own.
fn secrets_of(tokens: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        if t.len() >= 8 {
            out.push((*t).to_owned());
        }
        if t.starts_with("nxr_") && t.len() >= 58 {
            out.push(t[26..58].to_owned());
        }
        let parts: Vec<&str> = t.split('.').collect();
        if parts.len() == 3 {
            out.extend(
                parts
                    .iter()
                    .filter(|p| p.len() >= 16)
                    .map(|p| (*p).to_owned()),
            );
        }
    }
    out
}

/// Every row of the catalogue for this fixture; `canary` is the base URL of a [`Canary`]
/// that `jku`/`x5u` headers point at.
pub fn attacks(f: &Fixture, canary: &str) -> Vec<Attack> {
    let mut catalogue = Catalogue {
        f,
        ring: f.signing.alg_name(),
        rows: Vec::new(),
        now: u64::try_from(nexora_auth::Clock::now(&*f.clock).unix_timestamp()).unwrap_or(0),
    };
    catalogue.jwt_rows_per_signer();
    catalogue.jwt_rows_once(canary);
    catalogue.bearer_rows();
    catalogue.key_rows();
    catalogue.login_rows();
    catalogue.rows
}

fn check_answer(row: &Attack, answer: &Result<RawResponse, String>) -> Result<(), String> {
    let response = match (answer, &row.expect) {
        (Err(_), Outcome::RefusedOrClosed) => return Ok(()),
        (Err(why), _) => return Err(format!("no answer: {why}")),
        (Ok(response), _) => response,
    };
    let status = response.status;
    let body_text = || String::from_utf8_lossy(&response.body).into_owned();
    // What holds for every row.
    if status >= 500 {
        return Err(format!("server error {status}: {}", body_text()));
    }
    let positive = matches!(row.expect, Outcome::Accepted(_) | Outcome::Upgraded);
    if !positive && (status < 300 || status == 101) {
        return Err(format!("ACCEPTED an attack: {status} {}", body_text()));
    }
    for secret in &row.must_not_echo {
        if find(&response.raw, secret.as_bytes()).is_some() {
            return Err(format!(
                "the answer echoes the token: {status} {}",
                body_text()
            ));
        }
    }
    // The row's own expectation.
    match &row.expect {
        Outcome::Rejected {
            status: want,
            detail,
            challenge,
        } => {
            if status != *want {
                return Err(format!("status {status}, want {want}: {}", body_text()));
            }
            let body: Value = serde_json::from_slice(&response.body)
                .map_err(|e| format!("body is not JSON ({e}): {}", body_text()))?;
            if body != json!({"detail": detail}) {
                return Err(format!("body {body}, want detail {detail:?}"));
            }
            let www = response.header("www-authenticate");
            if www != Some(challenge.as_bytes()) {
                return Err(format!(
                    "WWW-Authenticate {:?}, want {challenge:?}",
                    www.map(String::from_utf8_lossy)
                ));
            }
            if response.header("content-type") != Some(b"application/json".as_slice()) {
                return Err("Content-Type is not application/json".into());
            }
            if response.header("retry-after").is_some() {
                return Err("unexpected Retry-After".into());
            }
            Ok(())
        }
        Outcome::Accepted(want) => {
            if status != 200 {
                return Err(format!("status {status}, want 200: {}", body_text()));
            }
            let body: Value = serde_json::from_slice(&response.body)
                .map_err(|e| format!("body is not JSON ({e}): {}", body_text()))?;
            if &body == want {
                Ok(())
            } else {
                Err(format!("body {body}, want {want}"))
            }
        }
        Outcome::Upgraded if status == 101 => Ok(()),
        Outcome::Upgraded => Err(format!("status {status}, want 101: {}", body_text())),
        Outcome::Invalid { loc, kind } => {
            if status != 422 {
                return Err(format!("status {status}, want 422: {}", body_text()));
            }
            let body: Value = serde_json::from_slice(&response.body)
                .map_err(|e| format!("body is not JSON ({e}): {}", body_text()))?;
            let issue = &body["detail"][0];
            if issue["loc"] != *loc || issue["type"] != *kind {
                return Err(format!("body {body}, want loc {loc} and type {kind:?}"));
            }
            if response.header("content-type") != Some(b"application/json".as_slice()) {
                return Err("Content-Type is not application/json".into());
            }
            if response.header("www-authenticate").is_some()
                || response.header("retry-after").is_some()
            {
                return Err("unexpected WWW-Authenticate or Retry-After".into());
            }
            Ok(())
        }
        Outcome::RefusedOrClosed if (400..500).contains(&status) => Ok(()),
        Outcome::RefusedOrClosed => Err(format!("status {status}, want a 4xx or a close")),
    }
}

async fn run_one(base_url: &str, row: &Attack, calls: &StoreCalls) -> Result<(), String> {
    let before = calls.get();
    let started = Instant::now();
    let answer = send_raw(base_url, &row.request).await;
    let mut fastest = started.elapsed();
    let used = calls.get() - before;
    check_answer(row, &answer)?;
    if let Some(want) = row.store_calls
        && used != want
    {
        return Err(format!("{used} store calls, want {want}"));
    }
    let mut tries = 1;
    while fastest > TIME_LIMIT && tries < 3 {
        let started = Instant::now();
        let _ = send_raw(base_url, &row.request).await;
        fastest = fastest.min(started.elapsed());
        tries += 1;
    }
    if fastest > TIME_LIMIT {
        return Err(format!(
            "answered in {fastest:?} at best of {tries}, limit {TIME_LIMIT:?}"
        ));
    }
    Ok(())
}

/// Sends every row to the server at `base_url`, in order, and returns one line per failing
/// row (empty: all passed). `calls` is the fixture's store-call counter.
pub async fn run_attacks(base_url: &str, rows: &[Attack], calls: &StoreCalls) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows {
        if let Err(why) = run_one(base_url, row, calls).await {
            failures.push(format!("{}: {why}", row.name));
        }
    }
    failures
}

/// Requests whose answers must be byte-identical (but for `Date`).
#[derive(Debug, Clone)]
pub struct IdenticalGroup {
    /// What the group shows.
    pub name: String,
    /// The expected status of every member.
    pub status: u16,
    /// The members: a label and the request.
    pub requests: Vec<(String, RawRequest)>,
}

/// The byte-identical groups: unknown vs revoked vs expired vs forged keys (on each route),
/// and unknown vs another user's key id on the management endpoints.
pub fn identical_groups(f: &Fixture) -> Vec<IdenticalGroup> {
    let unknown = ApiKey::generate().expect("OS randomness");
    let bob_id = KeyId::parse_str(&f.bob_key_id).expect("a key id");
    let forged_bob = ApiKey::generate_for(bob_id).expect("OS randomness");
    let alice_id = ApiKey::parse(&f.alice_key).expect("a valid key").id();
    let forged_alice = ApiKey::generate_for(alice_id).expect("OS randomness");
    let keys = [
        ("unknown id", unknown.expose().to_owned()),
        ("revoked", f.revoked_key.clone()),
        ("expired", f.expired_key.clone()),
        (
            "another owner's id, wrong secret",
            forged_bob.expose().to_owned(),
        ),
        ("own id, wrong secret", forged_alice.expose().to_owned()),
    ];
    let mut groups = Vec::new();
    for path in ["/agents", "/api/users/me", "/api/users/me/api-keys"] {
        groups.push(IdenticalGroup {
            name: format!("bad keys on {path}"),
            status: 401,
            requests: keys
                .iter()
                .map(|(label, key)| {
                    let header = ("authorization", format!("Bearer {key}").into_bytes());
                    ((*label).to_owned(), RawRequest::get(path, vec![header]))
                })
                .collect(),
        });
    }
    groups.push(IdenticalGroup {
        name: "bad keys as ?token= on the WebSocket route".into(),
        status: 401,
        requests: keys
            .iter()
            .map(|(label, key)| {
                let mut request = RawRequest::get(format!("/ws/chat-1?token={key}"), vec![]);
                request.websocket = true;
                ((*label).to_owned(), request)
            })
            .collect(),
    });
    let header = || {
        vec![(
            "authorization",
            format!("Bearer {}", f.alice_key).into_bytes(),
        )]
    };
    let random_id = KeyId::new_random().to_string();
    for (method, suffix, members) in [
        (
            "POST",
            "/rotate",
            vec![
                ("unknown id", random_id.clone()),
                ("another owner's key", f.bob_key_id.clone()),
                ("own revoked key", f.revoked_key_id.clone()),
            ],
        ),
        (
            "DELETE",
            "",
            vec![
                ("unknown id", random_id.clone()),
                ("another owner's key", f.bob_key_id.clone()),
            ],
        ),
    ] {
        groups.push(IdenticalGroup {
            name: format!("{method} api-keys/{{id}}{suffix}"),
            status: 404,
            requests: members
                .into_iter()
                .map(|(label, id)| {
                    let request = RawRequest {
                        method,
                        target: format!("/api/users/me/api-keys/{id}{suffix}"),
                        headers: header(),
                        body: None,
                        websocket: false,
                    };
                    (label.to_owned(), request)
                })
                .collect(),
        });
    }
    groups
}

/// Sends each group and returns one line per group whose answers differ (or are not its
/// expected status, or echo a key).
pub async fn run_identical(base_url: &str, groups: &[IdenticalGroup]) -> Vec<String> {
    let mut failures = Vec::new();
    for group in groups {
        let mut first: Option<(String, String)> = None;
        for (label, request) in &group.requests {
            let response = match send_raw(base_url, request).await {
                Ok(response) => response,
                Err(why) => {
                    failures.push(format!("{}: {label}: no answer: {why}", group.name));
                    continue;
                }
            };
            if response.status != group.status {
                failures.push(format!(
                    "{}: {label}: status {}, want {}",
                    group.name, response.status, group.status
                ));
            }
            let token = request
                .headers
                .iter()
                .find(|(n, _)| *n == "authorization")
                .map(|(_, v)| String::from_utf8_lossy(v).replace("Bearer ", ""));
            if let Some(token) = token
                && find(&response.raw, token.as_bytes()).is_some()
            {
                failures.push(format!(
                    "{}: {label}: the answer echoes the key",
                    group.name
                ));
            }
            let comparable = response.comparable();
            match &first {
                None => first = Some((label.clone(), comparable)),
                Some((first_label, want)) if *want != comparable => failures.push(format!(
                    "{}: {label} differs from {first_label}:\n{comparable}\n--- vs ---\n{want}",
                    group.name
                )),
                Some(_) => {}
            }
        }
    }
    failures
}

/// Every text form a digest could take in a JSON body.
fn digest_forms(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        hex.to_ascii_uppercase(),
        hex,
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ]
}

/// What no key-management answer may contain: every key of the fixture, its secret part,
/// and the digest of each.
async fn forbidden_material(f: &Fixture, keys: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for key in keys {
        out.push(key.clone());
        out.push(key[26..58].to_owned());
        if let Ok(parsed) = ApiKey::parse(key)
            && let Ok(Some(record)) = f.keys.find(parsed.id()).await
        {
            out.extend(digest_forms(record.digest.digest.as_bytes()));
        }
    }
    out
}

fn leaks(text: &str, forbidden: &[String]) -> Option<String> {
    forbidden
        .iter()
        .find(|s| text.contains(s.as_str()))
        .map(|s| format!("contains forbidden material ({} chars)", s.len()))
}

const LISTED_FIELDS: [&str; 8] = [
    "created_at",
    "created_by",
    "display",
    "expires_at",
    "id",
    "last_used_at",
    "name",
    "scopes",
];

fn fields_of(object: &Value) -> Vec<String> {
    let mut fields: Vec<String> = object
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    fields.sort_unstable();
    fields
}

/// The answer to create or rotate: the created-key fields, a valid key, and — the key field
/// aside — none of `forbidden` nor the new key's secret.
fn check_issued(what: &str, body: &Value, key: &str, forbidden: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fields: Vec<&str> = LISTED_FIELDS.to_vec();
    fields.push("key");
    fields.sort_unstable();
    if fields_of(body) != fields {
        problems.push(format!("{what} fields {:?}", fields_of(body)));
    }
    if !key.starts_with("nxr_") || key.len() != nexora_auth::KEY_LEN {
        problems.push(format!("{what}: no valid key in the answer"));
        return problems;
    }
    let mut rest = body.clone();
    rest["key"] = Value::Null;
    let mut forbidden = forbidden.to_vec();
    forbidden.push(key[26..58].to_owned());
    if let Some(why) = leaks(&rest.to_string(), &forbidden) {
        problems.push(format!("{what} {why}"));
    }
    problems
}

/// List, create and rotate (then revoke what was created) with Alice's key: the list holds
/// exactly the listed fields and no key material; create and rotate show the new key once and
/// nothing else secret (no digest, no other key's secret). Returns the problems found.
pub async fn check_key_material(base_url: &str, f: &Fixture) -> Vec<String> {
    let mut problems = Vec::new();
    let auth = || {
        vec![(
            "authorization",
            format!("Bearer {}", f.alice_key).into_bytes(),
        )]
    };
    let send = |method: &'static str, target: String, body: Option<&str>| {
        let mut headers = auth();
        if body.is_some() {
            headers.push(("content-type", b"application/json".to_vec()));
        }
        let request = RawRequest {
            method,
            target,
            headers,
            body: body.map(|b| b.as_bytes().to_vec()),
            websocket: false,
        };
        async move { send_raw(base_url, &request).await }
    };
    let forbidden = forbidden_material(f, &f.all_keys).await;

    match send("GET", "/api/users/me/api-keys".into(), None).await {
        Ok(r) if r.status == 200 => {
            let text = String::from_utf8_lossy(&r.body).into_owned();
            if let Some(why) = leaks(&text, &forbidden) {
                problems.push(format!("list {why}"));
            }
            let list: Value = serde_json::from_str(&text).unwrap_or_default();
            let items = list.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                problems.push(format!("list is empty or not an array: {text}"));
            }
            for item in items {
                if fields_of(&item) != LISTED_FIELDS {
                    problems.push(format!("list item fields {:?}", fields_of(&item)));
                }
            }
        }
        other => problems.push(format!("list: {other:?}")),
    }

    let created = match send(
        "POST",
        "/api/users/me/api-keys".into(),
        Some(r#"{"name": "leak check"}"#),
    )
    .await
    {
        Ok(r) if r.status == 201 => serde_json::from_slice::<Value>(&r.body).unwrap_or_default(),
        other => {
            problems.push(format!("create: {other:?}"));
            return problems;
        }
    };
    let new_key = created["key"].as_str().unwrap_or_default().to_owned();
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let mut created_digests = forbidden_material(f, std::slice::from_ref(&new_key)).await;
    created_digests.drain(..2.min(created_digests.len()));
    if created_digests.is_empty() {
        problems.push("create: the new key's digest is not in the store".into());
    }
    let mut also = forbidden.clone();
    also.extend(created_digests.iter().cloned());
    problems.extend(check_issued("create", &created, &new_key, &also));

    match send("POST", format!("/api/users/me/api-keys/{id}/rotate"), None).await {
        Ok(r) if r.status == 200 => {
            let rotated = serde_json::from_slice::<Value>(&r.body).unwrap_or_default();
            let rotated_key = rotated["key"].as_str().unwrap_or_default().to_owned();
            let mut also = forbidden_material(f, std::slice::from_ref(&rotated_key)).await;
            also.drain(..2.min(also.len()));
            also.extend(forbidden.iter().cloned());
            also.extend(created_digests.iter().cloned());
            if new_key.len() == nexora_auth::KEY_LEN {
                also.push(new_key.clone());
                also.push(new_key[26..58].to_owned());
            }
            problems.extend(check_issued("rotate", &rotated, &rotated_key, &also));
        }
        other => problems.push(format!("rotate: {other:?}")),
    }
    match send("DELETE", format!("/api/users/me/api-keys/{id}"), None).await {
        Ok(r) if r.status == 204 => {}
        other => problems.push(format!("revoke: {other:?}")),
    }
    problems
}

/// A TCP listener that counts connections: `jku`/`x5u` headers point at it, and a verifier
/// that fetched keys from there would show up.
#[derive(Debug)]
pub struct Canary {
    url: String,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Canary {
    /// Listens on `127.0.0.1:0` on the current Tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let connections = Arc::new(AtomicU64::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Ok(Self {
            url,
            connections,
            task,
        })
    }

    /// Its base URL, `http://127.0.0.1:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);
static PANIC_HOOK: Once = Once::new();

/// Panics so far anywhere in this process, counted from the first call (which installs a
/// counting hook in front of the current one). The servers run in-process, so a handler that
/// panics on a hostile request shows up here even when its connection just closes.
pub fn panics() -> u64 {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}
