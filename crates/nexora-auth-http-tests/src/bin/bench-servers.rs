//! Starts the test application on axum and on actix-web (one worker thread each) over an
//! in-memory store, prints their URLs and a valid API key and JWT, and exits after the given
//! number of seconds (default 120). For HTTP load generators on loopback, e.g.:
//!
//! ```sh
//! cargo run --release -p nexora-auth-http-tests --bin bench-servers -- 120
//! wrk -t1 -c32 -d10s http://127.0.0.1:PORT/plain
//! wrk -t1 -c32 -d10s -H "Authorization: Bearer nxr_…" http://127.0.0.1:PORT/authed
//! ```
//!
//! `/plain` is a trivial handler; `/authed` is the same handler behind the auth layer.

#![forbid(unsafe_code)]

use std::{sync::Arc, time::Duration};

use nexora_auth::{
    Authenticator, JwtConfig, JwtKeys, MemoryKeyStore, NewKey, OwnerId, PepperRing, Scopes,
    SecretBytes, TokenAuthority,
};
use nexora_auth_http_tests::servers;

#[allow(
    clippy::print_stdout,
    reason = "the URLs and tokens are this binary's output"
)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(120);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let pepper = PepperRing::new(
            1,
            SecretBytes::new(b"bench pepper: 32+ bytes, not a real one".to_vec()),
        )?;
        let jwt = JwtKeys::hs256(&SecretBytes::new(
            b"bench jwt secret: 32+ bytes, not a real one".to_vec(),
        ))?;
        let auth = Authenticator::builder(Arc::new(MemoryKeyStore::new()), pepper)
            .tokens(TokenAuthority::new(
                jwt,
                JwtConfig::new("nexora", "nexora-api").access_token_ttl(Duration::from_secs(3600)),
            )?)
            .build()?;
        let owner = OwnerId::new("bench-user");
        let scopes = Scopes::new(["agents:read"])?;
        let key = auth
            .create_key_for(&owner, &scopes, NewKey::named("bench"))
            .await?;
        let token = auth.issue_token(&owner, &scopes)?;
        let flusher = auth.spawn_last_used_flusher(Duration::from_secs(5));
        println!("axum {}", servers::spawn_axum(auth.clone()).await?);
        println!("actix {}", servers::spawn_actix(auth.clone(), 1)?);
        println!("key {}", key.key.expose());
        println!("jwt {}", token.token.expose());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        flusher.shutdown().await?;
        Ok(())
    })
}
