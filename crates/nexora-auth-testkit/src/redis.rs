//! A real Redis server and a key prefix of its own per test, or a loud skip (feature `redis`).
//!
//! The server comes from `NEXORA_TEST_REDIS_URL` (defaults to `redis://127.0.0.1:6379`). When
//! it cannot be reached, the test prints `SKIPPED: Redis not reachable at …` on stderr and
//! passes — unless `NEXORA_REQUIRE_REDIS=1` (as CI sets it), in which case it fails.
//!
//! ```no_run
//! use nexora_auth_testkit::redis::TestRedis;
//!
//! # async fn test() {
//! let Some(redis) = TestRedis::create().await else { return };
//! // Connect to redis.url() and keep every key under redis.prefix(); they are deleted when
//! // `redis` is dropped.
//! # }
//! ```

use std::{io::Write, time::Duration};

/// The environment variable naming the test server.
pub const URL_ENV: &str = "NEXORA_TEST_REDIS_URL";
/// The server used when [`URL_ENV`] is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// Set to `1` to make an unreachable server fail the tests instead of skipping them.
pub const REQUIRE_ENV: &str = "NEXORA_REQUIRE_REDIS";

/// How long to wait for the server before skipping (or failing). 5 seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const SERVICE: crate::service::Service = crate::service::Service {
    name: "Redis",
    url_env: URL_ENV,
    default_url: DEFAULT_URL,
    require_env: REQUIRE_ENV,
    start_hint: "redis-server --daemonize yes",
};

/// The test server's URL: [`URL_ENV`], or [`DEFAULT_URL`].
pub fn url() -> String {
    SERVICE.url()
}

/// Whether an unreachable server must fail the tests ([`REQUIRE_ENV`] is `1`).
pub fn required() -> bool {
    SERVICE.required()
}

/// A reachable server and a key prefix `nexora-test-<random>:` for one test; every key under
/// the prefix is deleted when this value is dropped, even if the test panicked.
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    prefix: String,
}

impl TestRedis {
    /// Checks the server answers `PING`.
    ///
    /// `None` (after printing `SKIPPED: …` on stderr) when it does not; panics instead when
    /// [`required`].
    pub async fn create() -> Option<Self> {
        let url = url();
        let client = match redis::Client::open(url.as_str()) {
            Ok(client) => client,
            Err(e) => panic!("{URL_ENV}={url:?} is not a valid Redis URL: {e}"),
        };
        let ping = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return unreachable(&url, &e.to_string()),
            Err(_) => return unreachable(&url, "connection timed out"),
        }
        Some(Self {
            url,
            prefix: format!("nexora-test-{}:", uuid::Uuid::new_v4().simple()),
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The test's key prefix: `nexora-test-` and 32 hex digits, then `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

fn unreachable(url: &str, error: &str) -> Option<TestRedis> {
    SERVICE.unreachable(url, error)
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let deleted = (|| -> redis::RedisResult<()> {
            let client = redis::Client::open(self.url.as_str())?;
            let mut conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
            let pattern = format!("{}*", self.prefix);
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut conn)?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(&keys).query::<()>(&mut conn)?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        })();
        if let Err(e) = deleted {
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not delete the test keys under {}: {e}",
                self.prefix
            );
        }
    }
}
