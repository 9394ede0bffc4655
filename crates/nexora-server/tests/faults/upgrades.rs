//! 5,000 WebSocket upgrades with bad tokens, with the server's file descriptors counted.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite;

use super::support::*;

/// How one bad upgrade attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Upgrade {
    /// Refused with this status.
    Refused(u16),
    /// 101: the upgrade was accepted.
    Switched,
    /// The client gave up on purpose (half a request, or no wait for the answer).
    Abandoned,
    /// A transport error.
    Error(String),
}

async fn bad_upgrade(host: &str, token: Option<&str>, style: usize) -> Upgrade {
    let path = match token {
        Some(t) => format!("/api/ws/chat-1?token={t}"),
        None => "/api/ws/chat-1".to_owned(),
    };
    if style == 0 {
        return match tokio_tungstenite::connect_async(format!("ws://{host}{path}")).await {
            Ok(_) => Upgrade::Switched,
            Err(tungstenite::Error::Http(response)) => Upgrade::Refused(response.status().as_u16()),
            Err(e) => Upgrade::Error(e.to_string()),
        };
    }
    // By hand: a whole request whose answer is read (style 1) or dropped unread (style 2), or
    // half a request and a hang-up (style 3).
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let mut stream = match tokio::net::TcpStream::connect(host).await {
        Ok(s) => s,
        Err(e) => return Upgrade::Error(e.to_string()),
    };
    let bytes = if style == 3 {
        &request.as_bytes()[..request.len() / 2]
    } else {
        request.as_bytes()
    };
    if let Err(e) = stream.write_all(bytes).await {
        return Upgrade::Error(e.to_string());
    }
    if style != 1 {
        return Upgrade::Abandoned;
    }
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        use tokio::io::AsyncReadExt;
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Upgrade::Error(e.to_string()),
        }
    }
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(101) => Upgrade::Switched,
        Some(s) => Upgrade::Refused(s),
        None => Upgrade::Error(format!("no status line in {head:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_websocket_upgrades_never_switch_and_fds_stay_bounded() {
    const ATTEMPTS: usize = 5000;
    const FD_SLACK: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &sqlite_url(dir.path()), true);
    let pid = server.pid();
    let base: Arc<str> = server.base.clone().into();
    let host = base.trim_start_matches("http://").to_owned();

    // Bad tokens of every kind: unparseable, malformed keys (no store query), a revoked key and
    // a rotated-out key (store queries), a JWT with a flipped signature byte, none at all.
    let (good_key, bad_tokens) = {
        let http = client();
        let jwt = login(&http, &base).await;
        let revoked = create_key(&http, &base, &jwt, "revoked").await;
        assert_eq!(
            revoke_key(&http, &base, &jwt, &revoked.id).await,
            StatusCode::NO_CONTENT
        );
        let rotated = create_key(&http, &base, &jwt, "rotated").await;
        let response = http
            .post(url(
                &base,
                &format!("/api/users/me/api-keys/{}/rotate", rotated.id),
            ))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let good_key = Created::from_body(&response.json().await.unwrap()).key;
        let mut forged = jwt.clone().into_bytes();
        let at = forged.len() - 10;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let tokens: Vec<Option<String>> = vec![
            None,
            Some(String::new()),
            Some("not-a-token".to_owned()),
            Some("nxr_".to_owned()),
            Some(format!("nxr_{}", "x".repeat(40))),
            Some(revoked.key),
            Some(rotated.key),
            Some(forged),
            Some("%00%FF".to_owned()),
        ];
        // Warm up: enough concurrent store lookups to open the pool's connections, so they do
        // not count as growth below.
        let warm: Vec<StatusCode> = stream::iter(0..256)
            .map(|_| agents_status(&http, &base, tokens[5].as_deref().unwrap_or_default()))
            .buffer_unordered(64)
            .collect()
            .await;
        assert!(warm.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
        (good_key, tokens)
    };
    // Let the warm-up's connections close before counting.
    let before = settle_fds(pid, usize::MAX, Duration::from_secs(2)).await;

    let peak = Arc::new(AtomicUsize::new(before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (peak, sampling) = (peak.clone(), sampling.clone());
        async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(open_fds(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    let started = Instant::now();
    let outcomes: Vec<Upgrade> = stream::iter(0..ATTEMPTS)
        .map(|i| {
            let token = bad_tokens[i % bad_tokens.len()].as_deref();
            let host = host.as_str();
            // Three in four through a WebSocket client, the rest by hand.
            let style = if i % 4 == 3 { 1 + (i / 4) % 3 } else { 0 };
            async move { bad_upgrade(host, token, style).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let after = settle_fds(pid, before + FD_SLACK, Duration::from_secs(5)).await;

    let mut tally: HashMap<Upgrade, usize> = HashMap::new();
    for o in outcomes {
        *tally.entry(o).or_default() += 1;
    }
    report(&format!(
        "websocket: {ATTEMPTS} bad upgrades in {elapsed:?}: {tally:?}; server fds before {before}, \
         peak {}, after {after}",
        peak.load(Ordering::Relaxed)
    ));
    assert!(
        !tally.contains_key(&Upgrade::Switched),
        "a bad token was upgraded: {tally:?}"
    );
    let refused_401 = tally.get(&Upgrade::Refused(401)).copied().unwrap_or(0);
    let abandoned = tally.get(&Upgrade::Abandoned).copied().unwrap_or(0);
    assert_eq!(
        refused_401 + abandoned,
        ATTEMPTS,
        "every answered bad upgrade is a 401: {tally:?}"
    );
    assert!(
        after <= before + FD_SLACK,
        "file descriptors grew from {before} to {after}"
    );

    // The server still upgrades a good token: the refusals above were not an outage.
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{host}/api/ws/chat-1?token={good_key}"))
            .await
            .expect("a good key upgrades");
    assert_eq!(response.status().as_u16(), 101);
    {
        use futures_util::SinkExt;
        socket
            .send(tungstenite::Message::text("still here"))
            .await
            .unwrap();
        let echo = socket.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), "still here");
        let _ = socket.close(None).await;
    }
    assert_no_panic(&server.kill());
}

/// Waits (up to `patience`) until the server holds at most `limit` descriptors and the count
/// has stopped moving; returns the last count.
async fn settle_fds(pid: u32, limit: usize, patience: Duration) -> usize {
    let deadline = Instant::now() + patience;
    let mut last = open_fds(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = open_fds(pid);
        if (now <= limit && now == last) || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}
