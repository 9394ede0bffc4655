//! The test application's WebSocket route on both frameworks lives no longer than its
//! credential: a revoked key closes the open socket with 4401, a store that cannot vouch for
//! the credential closes it with 1011 (fail closed).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nexora_auth::{KeyId, RevokeOptions};
use nexora_auth_http_tests::{Fixture, servers};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::frame::coding::CloseCode},
};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The fixture's authenticator served by `framework` (`axum` or `actix`).
async fn serve(framework: &str, fixture: &Fixture) -> String {
    match framework {
        "axum" => servers::spawn_axum(fixture.auth.clone())
            .await
            .expect("axum server starts"),
        _ => servers::spawn_actix(fixture.auth.clone(), 1).expect("actix server starts"),
    }
}

/// Opens `/ws/chat-1?token=…` and reads the greeting.
async fn open(base: &str, token: &str) -> Socket {
    let url = format!(
        "{}/ws/chat-1?token={token}",
        base.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the upgrade succeeds");
    let greeting = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a greeting within 5 s")
        .expect("a greeting")
        .expect("a greeting frame");
    assert!(
        greeting.to_text().is_ok_and(|t| t.starts_with("hello ")),
        "{greeting:?}"
    );
    socket
}

/// Waits up to `within` for the server's Close frame; returns its code and reason.
async fn close_frame(socket: &mut Socket, within: Duration) -> (u16, String) {
    let message = tokio::time::timeout(within, socket.next())
        .await
        .unwrap_or_else(|_| panic!("the socket is still open after {within:?}"))
        .expect("a frame before the end of the stream")
        .expect("a frame, not an error");
    match message {
        Message::Close(Some(frame)) => (u16::from(frame.code), frame.reason.as_str().to_owned()),
        other => panic!("expected a Close frame, got {other:?}"),
    }
}

/// A live socket stays open while its key is good, and is closed with 4401 `credential
/// revoked` as soon as the key is revoked (the fixture's stores report nothing to the cache, so
/// the authenticator's own write is what tells the watch).
async fn revocation_closes_the_socket(framework: &str) {
    let fixture = Fixture::new().await;
    let base = serve(framework, &fixture).await;
    let (key, id) = fixture.revoke_me.clone();
    let mut socket = open(&base, &key).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), socket.next())
            .await
            .is_err(),
        "{framework}: a socket with a good key stays open"
    );
    let alice = fixture
        .auth
        .authenticate(&fixture.alice_key)
        .await
        .expect("alice's key authenticates");
    let id = KeyId::parse_str(&id).expect("a key id");
    let revoked_at = Instant::now();
    fixture
        .auth
        .revoke_key(&alice, id, RevokeOptions::default())
        .await
        .expect("revoke");
    let (code, reason) = close_frame(&mut socket, Duration::from_secs(2)).await;
    assert_eq!(
        (code, reason.as_str()),
        (4401, "credential revoked"),
        "{framework}"
    );
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "{framework}: closed {:?} after the revoke",
        revoked_at.elapsed()
    );
}

/// With the store down, the watch cannot confirm the credential: 1011, within the 1-second
/// recheck of a cache that cannot vouch for its entries.
async fn an_outage_closes_the_socket(framework: &str) {
    let fixture = Fixture::new().await;
    let base = serve(framework, &fixture).await;
    let mut socket = open(&base, &fixture.alice_key).await;
    fixture.keys.set_failing(true);
    let (code, reason) = close_frame(&mut socket, Duration::from_secs(3)).await;
    fixture.keys.set_failing(false);
    assert_eq!(
        (code, reason.as_str()),
        (u16::from(CloseCode::Error), "credential store unavailable"),
        "{framework}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_closes_a_socket_when_its_key_is_revoked() {
    revocation_closes_the_socket("axum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_closes_a_socket_when_its_key_is_revoked() {
    revocation_closes_the_socket("actix").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_closes_a_socket_with_1011_when_the_store_is_down() {
    an_outage_closes_the_socket("axum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_closes_a_socket_with_1011_when_the_store_is_down() {
    an_outage_closes_the_socket("actix").await;
}
