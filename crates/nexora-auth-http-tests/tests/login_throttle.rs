//! The login throttle over real HTTP, on axum and actix-web: concurrent guesses, and the
//! client address behind trusted and untrusted proxies.

use std::sync::Arc;

use nexora_auth::{
    Authenticator, JwtConfig, JwtKeys, MemoryKeyStore, MemoryUserStore, PasswordPolicy, PepperRing,
    Scopes, SecretBytes, SecretString, TokenAuthority,
};
use nexora_auth_http::{
    Api,
    proxy::{ForwardedHeader, TrustedProxies},
};
use nexora_auth_http_tests::servers;
use serde_json::json;

const EMAIL: &str = "alice@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// An authenticator whose argon2 runs take several milliseconds, so that concurrent logins
/// really overlap; its hashing queue holds every request of these tests.
async fn authenticator() -> Api {
    behind(TrustedProxies::none()).await
}

/// [`authenticator`] with these trusted proxies.
async fn behind(proxies: TrustedProxies) -> Api {
    let auth = Authenticator::builder(
        Arc::new(MemoryKeyStore::new()),
        PepperRing::new(1, SecretBytes::new(vec![3; 32])).expect("a long enough pepper"),
    )
    .users(Arc::new(MemoryUserStore::new()))
    .tokens(
        TokenAuthority::new(
            JwtKeys::hs256(&SecretBytes::new(vec![4; 32])).expect("a long enough secret"),
            JwtConfig::new("nexora", "nexora-api"),
        )
        .expect("a valid JWT configuration"),
    )
    .password_policy(
        PasswordPolicy::default()
            .argon2_params(8 * 1024, 1, 1)
            .max_concurrent_hashes(2)
            .max_queued_hashes(1_000),
    )
    .build()
    .expect("a valid authenticator");
    auth.register_user(EMAIL, &SecretString::from(PASSWORD), Scopes::empty())
        .await
        .expect("register alice");
    Api::new(auth).trusted_proxies(proxies)
}

/// Both servers, each over an authenticator of its own: `(framework, base URL)`.
async fn both_servers(for_axum: Api, for_actix: Api) -> [(&'static str, String); 2] {
    [
        (
            "axum",
            servers::spawn_axum(for_axum)
                .await
                .expect("axum server starts"),
        ),
        (
            "actix-web",
            servers::spawn_actix(for_actix, 2).expect("actix server starts"),
        ),
    ]
}

/// Sends `n` logins at once; returns how many answered 401, and how many 429 with a positive
/// `Retry-After`. Any other answer fails the test.
async fn concurrent_logins(
    url: &str,
    n: usize,
    request: impl Fn(usize) -> (String, Vec<(&'static str, String)>),
) -> (usize, usize) {
    let client = reqwest::Client::new();
    let sent: Vec<_> = (0..n)
        .map(|i| {
            let (email, headers) = request(i);
            let mut builder = client
                .post(format!("{url}/api/auth/login"))
                .json(&json!({"email": email, "password": "a wrong guess"}));
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            tokio::spawn(builder.send())
        })
        .collect();
    let (mut invalid, mut limited) = (0, 0);
    for answer in sent {
        let response = answer.await.expect("the task runs").expect("an answer");
        match response.status().as_u16() {
            401 => invalid += 1,
            429 => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                assert!(retry_after.is_some_and(|s| s > 0), "{retry_after:?}");
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    (invalid, limited)
}

/// 200 concurrent wrong logins for one email: exactly the policy's 5 are verified (401), the
/// other 195 are 429 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_for_one_email_get_exactly_five_verifications() {
    for (framework, url) in both_servers(authenticator().await, authenticator().await).await {
        let (invalid, limited) = concurrent_logins(&url, 200, |_| (EMAIL.to_owned(), vec![])).await;
        assert_eq!((invalid, limited), (5, 195), "{framework}");
    }
}

/// 200 concurrent wrong logins from one client, each for another email: exactly the policy's
/// 20 per client are verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_from_one_client_get_exactly_twenty_verifications() {
    for (framework, url) in both_servers(authenticator().await, authenticator().await).await {
        let (invalid, limited) =
            concurrent_logins(&url, 200, |i| (format!("user{i}@example.com"), vec![])).await;
        assert_eq!((invalid, limited), (20, 180), "{framework}");
    }
}

/// One login, one at a time; its status.
async fn login_status(url: &str, email: &str, password: &str, headers: &[(&str, String)]) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/api/auth/login"))
        .json(&json!({"email": email, "password": password}));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("an answer").status().as_u16()
}

/// 20 wrong logins (each for another email) with these headers, then one more: its status.
async fn status_after_twenty_failures(
    url: &str,
    headers: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> u16 {
    for i in 0..20 {
        let status = login_status(
            url,
            &format!("guess{i}@example.com"),
            "a wrong guess",
            &headers(i),
        )
        .await;
        assert_eq!(status, 401, "failure {i}");
    }
    login_status(url, "one-more@example.com", "a wrong guess", &headers(20)).await
}

/// A peer that is not a trusted proxy is counted by its own address, whatever
/// `X-Forwarded-For` or `Forwarded` it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_cannot_choose_its_address() {
    // Trusting some other network changes nothing for a peer outside it.
    let elsewhere = || TrustedProxies::parse("10.0.0.0/8").expect("a valid list");
    for (framework, url) in both_servers(behind(elsewhere()).await, authenticator().await).await {
        let status = status_after_twenty_failures(&url, |i| {
            vec![
                ("x-forwarded-for", format!("198.51.100.{i}")),
                ("forwarded", format!("for=198.51.100.{i}")),
            ]
        })
        .await;
        assert_eq!(status, 429, "{framework}");
    }
}

/// Behind a trusted proxy, 20 failed logins from one forwarded client lock that client, not
/// the proxy: another client behind the same proxy still signs in. What the client itself
/// puts in the header (left of what the proxy appended) changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_one_client_does_not_lock_out_another() {
    let proxy = || TrustedProxies::parse("127.0.0.1/32").expect("a valid list");
    for (framework, url) in both_servers(behind(proxy()).await, behind(proxy()).await).await {
        let status = status_after_twenty_failures(&url, |i| {
            // The client varies a spoofed address; the proxy appends the one it saw.
            vec![("x-forwarded-for", format!("203.0.113.{i}, 198.51.100.1"))]
        })
        .await;
        assert_eq!(status, 429, "{framework}: the forwarded client is locked");
        let other = [("x-forwarded-for", "198.51.100.2".to_owned())];
        assert_eq!(
            login_status(&url, EMAIL, PASSWORD, &other).await,
            200,
            "{framework}: another client behind the proxy signs in"
        );
        // Forwarded is not the configured header: ignored, so this counts as the proxy.
        let rfc = [("forwarded", "for=198.51.100.3".to_owned())];
        assert_eq!(
            login_status(&url, EMAIL, PASSWORD, &rfc).await,
            200,
            "{framework}"
        );
    }
}

/// The same with a proxy that writes RFC 7239 `Forwarded`, and IPv6 clients counted per /64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_header_and_ipv6_clients_per_64() {
    let proxy = || {
        TrustedProxies::parse("127.0.0.1")
            .expect("a valid list")
            .reading(ForwardedHeader::Forwarded)
    };
    for (framework, url) in both_servers(behind(proxy()).await, behind(proxy()).await).await {
        // Twenty addresses of one /64 are one client.
        let status = status_after_twenty_failures(&url, |i| {
            vec![(
                "forwarded",
                format!(r#"for="[2001:db8:0:1::{i:x}]:4711";proto=https"#),
            )]
        })
        .await;
        assert_eq!(status, 429, "{framework}: one /64");
        let next_64 = [("forwarded", r#"for="[2001:db8:0:2::1]""#.to_owned())];
        assert_eq!(
            login_status(&url, EMAIL, PASSWORD, &next_64).await,
            200,
            "{framework}"
        );
        // X-Forwarded-For is not the configured header here.
        let xff = [("x-forwarded-for", "198.51.100.9".to_owned())];
        assert_eq!(
            login_status(&url, EMAIL, PASSWORD, &xff).await,
            200,
            "{framework}"
        );
    }
}
