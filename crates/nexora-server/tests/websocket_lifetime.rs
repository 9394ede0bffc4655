//! `/api/ws/{chat_id}` lives no longer than its credential, against the real binary on SQLite
//! and on Postgres: a socket opened with a key is closed with 4401 when the key is revoked or
//! rotated through the API (at once: the change goes through this instance), and when its user
//! is disabled by the admin CLI (another process: within the cache's bound); a socket opened
//! with an access token is closed with 4401 when the token expires. A socket whose credential
//! is untouched stays open and keeps echoing throughout.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use common::{PgDatabase, Server, api::*, postgres_admin_url};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The cache ceiling the servers here run with, in milliseconds.
const CEILING_MS: u64 = 2000;

/// How late a close may come beyond its bound on a loaded test machine (debug build, two
/// cores, other suites running).
const SLACK: Duration = Duration::from_millis(1000);

/// A change made through the serving instance is seen by its sockets at once; "at once" here
/// is this much, for the same reason.
const AT_ONCE: Duration = Duration::from_millis(1000);

/// The bound of a change made by another process: the ceiling, or the 1-second recheck when
/// the cache cannot vouch for its entries (a store without a change feed), whichever is
/// longer.
fn other_process_bound() -> Duration {
    Duration::from_millis(CEILING_MS).max(Duration::from_secs(1)) + SLACK
}

fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "WEBSOCKET: {line}");
}

/// Opens `/api/ws/chat-1?token=…`; panics unless the upgrade succeeds.
async fn open(server: &Server, token: &str) -> Socket {
    let url = server.ws_url(&format!("/api/ws/chat-1?token={token}"));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("the upgrade succeeds")
        .0
}

/// Sends `text` and expects it back: the socket is open and served.
async fn assert_echoes(socket: &mut Socket, text: &str) {
    socket
        .send(Message::Text(text.into()))
        .await
        .expect("send a text frame");
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an echo within 5 s")
        .expect("an echo, not the end of the stream")
        .expect("an echo, not an error");
    assert_eq!(echoed.to_text().ok(), Some(text), "{echoed:?}");
}

/// Waits up to `within` for the server's Close frame; returns its code and reason and when it
/// came.
async fn close_frame(socket: &mut Socket, within: Duration, what: &str) -> (u16, String, Instant) {
    let message = tokio::time::timeout(within, socket.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: the socket is still open after {within:?}"))
        .unwrap_or_else(|| panic!("{what}: the stream ended without a Close frame"))
        .unwrap_or_else(|e| panic!("{what}: socket error {e}"));
    let at = Instant::now();
    match message {
        Message::Close(Some(frame)) => {
            (u16::from(frame.code), frame.reason.as_str().to_owned(), at)
        }
        other => panic!("{what}: expected a Close frame, got {other:?}"),
    }
}

/// Expects the Close frame `(4401, reason)` within `bound` of `since`; returns how long it took.
async fn assert_closed(
    socket: &mut Socket,
    since: Instant,
    bound: Duration,
    reason: &str,
    what: &str,
) -> Duration {
    let (code, got, at) = close_frame(socket, bound + Duration::from_secs(1), what).await;
    assert_eq!((code, got.as_str()), (4401, reason), "{what}");
    let took = at - since;
    assert!(
        took <= bound,
        "{what}: closed after {took:?}, bound {bound:?}"
    );
    took
}

/// A database for one test: SQLite in `dir`, or a fresh Postgres database (`None` after the
/// loud skip when Postgres is unreachable and not required).
async fn database(kind: &str, dir: &Path) -> Option<(String, Option<PgDatabase>)> {
    match kind {
        "sqlite" => Some((sqlite_url(dir), None)),
        _ => {
            let admin = postgres_admin_url().await?;
            let db = PgDatabase::create(&admin).await;
            Some((db.url.clone(), Some(db)))
        }
    }
}

async fn sockets_end_with_their_key_or_user(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some((database, _db)) = database(kind, dir.path()).await else {
        return;
    };
    let ceiling = CEILING_MS.to_string();
    let server = start_with(
        dir.path(),
        &database,
        true,
        &["--cache-ceiling-ms", &ceiling],
        &[],
    );
    let http = client();
    let jwt = login(&http, &server.base).await;

    // Revoked through the API of the serving instance: at once.
    let revoked = create_key(&http, &server.base, &jwt, "revoked").await;
    let bystander = create_key(&http, &server.base, &jwt, "bystander").await;
    let mut socket = open(&server, &revoked.key).await;
    let mut bystanding = open(&server, &bystander.key).await;
    assert_echoes(&mut socket, "before the revoke").await;
    let since = Instant::now();
    assert_eq!(
        revoke_key(&http, &server.base, &jwt, &revoked.id).await,
        reqwest::StatusCode::NO_CONTENT
    );
    let took_revoke = assert_closed(
        &mut socket,
        since,
        AT_ONCE,
        "credential revoked",
        &format!("{kind}: revoked key"),
    )
    .await;
    assert_echoes(&mut bystanding, "another key's socket is untouched").await;

    // Rotated without grace: the old value's socket closes, the new value opens one.
    let rotated = create_key(&http, &server.base, &jwt, "rotated").await;
    let mut socket = open(&server, &rotated.key).await;
    let since = Instant::now();
    let new = rotate_key(&http, &server.base, &jwt, &rotated.id).await;
    let took_rotate = assert_closed(
        &mut socket,
        since,
        AT_ONCE,
        "credential rotated",
        &format!("{kind}: rotated key"),
    )
    .await;
    let mut renewed = open(&server, &new.key).await;
    assert_echoes(&mut renewed, "the new value works").await;
    assert_echoes(&mut bystanding, "still untouched").await;

    // The user disabled by the admin CLI, another process on the same database: every socket
    // of the user closes within the bound, the key's and the access token's.
    let mut by_token = open(&server, &jwt).await;
    assert_echoes(&mut by_token, "a token's socket").await;
    user_cli(dir.path(), &database, "disable", &[]);
    let since = Instant::now();
    let bound = other_process_bound();
    let mut took_disable = Duration::ZERO;
    for (socket, what) in [
        (&mut bystanding, "a key"),
        (&mut renewed, "a rotated key"),
        (&mut by_token, "an access token"),
    ] {
        let took = assert_closed(
            socket,
            since,
            bound,
            "user disabled",
            &format!("{kind}: disabled user, socket of {what}"),
        )
        .await;
        took_disable = took_disable.max(took);
    }
    report(&format!(
        "{kind}: socket closed after revoke {took_revoke:?}, rotate {took_rotate:?} (bound \
         {AT_ONCE:?}); after a CLI disable, the last of three after {took_disable:?} (bound \
         {bound:?})"
    ));
    assert_no_panic(&server.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_end_with_their_key_or_user_on_sqlite() {
    sockets_end_with_their_key_or_user("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_end_with_their_key_or_user_on_postgres() {
    sockets_end_with_their_key_or_user("postgres").await;
}

/// The `exp` claim of a JWT (read, not verified: the server issued it).
fn expiry_of(jwt: &str) -> f64 {
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("the payload is base64url");
    let claims: serde_json::Value = serde_json::from_slice(&json).expect("the payload is JSON");
    claims["exp"].as_f64().expect("exp is a number")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Access tokens live 2 seconds here: a socket opened with one is closed at its `exp`, not
/// before, and not much after.
async fn a_token_socket_closes_at_expiry(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some((database, _db)) = database(kind, dir.path()).await else {
        return;
    };
    let ceiling = CEILING_MS.to_string();
    let server = start_with(
        dir.path(),
        &database,
        true,
        &["--cache-ceiling-ms", &ceiling],
        &[("NEXORA_ACCESS_TOKEN_TTL_SECS", "2")],
    );
    let http = client();
    let jwt = login(&http, &server.base).await;
    let exp = expiry_of(&jwt);
    let mut socket = open(&server, &jwt).await;
    assert_echoes(&mut socket, "a fresh token").await;
    let (code, reason, _) = close_frame(
        &mut socket,
        Duration::from_secs(5),
        &format!("{kind}: expiring token"),
    )
    .await;
    let closed = unix_now();
    assert_eq!((code, reason.as_str()), (4401, "credential expired"));
    // `exp` is whole seconds on the server's clock, which is this machine's.
    let after_exp = closed - exp;
    report(&format!(
        "{kind}: a 2-second token's socket closed {:.0} ms after its exp",
        after_exp * 1000.0
    ));
    assert!(
        after_exp >= -0.05,
        "closed {:.3} s before the token's exp",
        -after_exp
    );
    assert!(
        after_exp <= AT_ONCE.as_secs_f64(),
        "closed {after_exp:.3} s after the token's exp"
    );
    assert_no_panic(&server.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_socket_closes_at_expiry_on_sqlite() {
    a_token_socket_closes_at_expiry("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_socket_closes_at_expiry_on_postgres() {
    a_token_socket_closes_at_expiry("postgres").await;
}
