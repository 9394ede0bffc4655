//! Login must not reveal whether an email exists, by its answer or by its time.
//!
//! 1,000 interleaved pairs (known email + wrong password, unknown email), alternating which
//! goes first; the 99.9% confidence interval of the mean paired difference must include 0.
//! argon2 runs with small parameters here (the dummy hash uses the same parameters as real
//! hashes whatever they are, so the property does not depend on them).

use std::{sync::Arc, time::Instant};

use nexora_auth::{
    AuthError, Authenticator, JwtConfig, JwtKeys, MemoryKeyStore, MemoryUserStore, PasswordPolicy,
    PepperRing, Scopes, SecretBytes, SecretString, ThrottlePolicy, TokenAuthority,
};

#[tokio::test(flavor = "current_thread")]
async fn unknown_and_known_emails_cost_the_same() {
    let auth = Authenticator::builder(
        Arc::new(MemoryKeyStore::new()),
        PepperRing::new(1, SecretBytes::new(vec![5; 32])).unwrap(),
    )
    .users(Arc::new(MemoryUserStore::new()))
    .tokens(
        TokenAuthority::new(
            JwtKeys::hs256(&SecretBytes::new(vec![6; 32])).unwrap(),
            JwtConfig::new("nexora", "nexora-api"),
        )
        .unwrap(),
    )
    .password_policy(
        PasswordPolicy::default()
            .argon2_params(1024, 1, 1)
            .max_concurrent_hashes(1),
    )
    .login_throttle(
        ThrottlePolicy::default()
            .per_email(u32::MAX)
            .per_client(u32::MAX),
    )
    .build()
    .unwrap();
    let password = SecretString::from("the right password");
    auth.register_user("known@example.com", &password, Scopes::empty())
        .await
        .unwrap();
    let wrong = SecretString::from("a wrong password");

    let mut bodies = Vec::new();
    let mut timed = |result: Result<_, AuthError>, started: Instant| {
        let err = result.expect_err("login must fail");
        bodies.push(format!("{err:?}"));
        started.elapsed().as_secs_f64()
    };
    let n = 1_000;
    let mut diffs = Vec::with_capacity(n);
    for i in 0..n {
        let (known, unknown);
        if i % 2 == 0 {
            let t = Instant::now();
            known = timed(auth.login("known@example.com", &wrong).await, t);
            let t = Instant::now();
            unknown = timed(auth.login("unknown@example.com", &wrong).await, t);
        } else {
            let t = Instant::now();
            unknown = timed(auth.login("unknown@example.com", &wrong).await, t);
            let t = Instant::now();
            known = timed(auth.login("known@example.com", &wrong).await, t);
        }
        diffs.push(known - unknown);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every failed login answers byte-identically"
    );
    let mean = diffs.iter().sum::<f64>() / n as f64;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half_width = 3.29 * (var / n as f64).sqrt();
    let (low, high) = (mean - half_width, mean + half_width);
    assert!(
        low <= 0.0 && 0.0 <= high,
        "known - unknown = {:.1} µs, 99.9% CI [{:.1}, {:.1}] µs excludes 0",
        mean * 1e6,
        low * 1e6,
        high * 1e6
    );
}
