//! Two server instances on one Postgres database, and how long a change made through one takes
//! to be honoured by the other: the polling, the figures and the database's change-feed
//! connections.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};

use super::{
    Server,
    api::{agents_status, start},
};

/// The server's default verification-cache ceiling (`--cache-ceiling-ms`), which these tests
/// leave as it is: the bound every change must be honoured within, on every instance.
pub const DEFAULT_CEILING: Duration = Duration::from_millis(5000);

/// What the Postgres store names its change-feed connection (`application_name`).
pub const LISTENER_APPLICATION_NAME: &str = "nexora-auth-listener";

/// Instances A and B on one database, the test user created through the CLI first.
pub struct Pair {
    pub a: Server,
    pub b: Server,
    pub dir_a: tempfile::TempDir,
    pub dir_b: tempfile::TempDir,
}

impl Pair {
    /// Starts A and B on `database` with the default configuration.
    pub fn start(database: &str) -> Pair {
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("temporary directory"),
            tempfile::tempdir().expect("temporary directory"),
        );
        let a = start(dir_a.path(), database, true);
        let b = start(dir_b.path(), database, false);
        Pair { a, b, dir_a, dir_b }
    }

    /// Where the admin CLI runs (A's directory).
    pub fn cli_dir(&self) -> &Path {
        self.dir_a.path()
    }
}

/// Polls `GET /api/agents` on `base` with `token`, back to back, until it answers `want`. Any
/// other answer must be one of `meanwhile`, and no request *sent* later than
/// [`DEFAULT_CEILING`] after `since` may get anything but `want`: that is the bound. Returns the
/// time from `since` to the first `want`.
pub async fn until_status(
    http: &Client,
    base: &str,
    token: &str,
    want: StatusCode,
    meanwhile: &[StatusCode],
    since: Instant,
    what: &str,
) -> Duration {
    let ceiling = DEFAULT_CEILING;
    loop {
        let sent = Instant::now();
        let status = agents_status(http, base, token).await;
        if status == want {
            return since.elapsed();
        }
        assert!(
            meanwhile.contains(&status),
            "{what}: answered {status} {:?} after the change (want {want}, meanwhile {meanwhile:?})",
            sent - since
        );
        assert!(
            sent - since <= ceiling,
            "{what}: a request sent {:?} after the change still answered {status} (want {want}); \
             the ceiling is {ceiling:?}",
            sent - since
        );
    }
}

/// Median, 99th percentile and maximum of a sample.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Figures {
    /// The figures of `sample` (nearest-rank percentiles). Panics on an empty sample.
    pub fn of(sample: &[Duration]) -> Figures {
        assert!(!sample.is_empty(), "no measurements");
        let mut sorted = sample.to_vec();
        sorted.sort_unstable();
        let rank = |p: usize| sorted[(sorted.len() * p).div_ceil(100).max(1) - 1];
        Figures {
            count: sorted.len(),
            p50: rank(50),
            p99: rank(99),
            max: sorted[sorted.len() - 1],
        }
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
            self.count,
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Prints a measured figure straight to stderr, past the harness's capture, so the figures land
/// in the log of a passing run.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "PROPAGATION: {line}");
}

/// Whether the Postgres store of this build watches the database for changes made elsewhere
/// (`Freshness::Watched`): then every instance holds a listener connection, and its figures
/// measure the change feed; otherwise nothing is cached and every request reads the database.
pub async fn postgres_store_is_watched(url: &str) -> bool {
    use nexora_auth::{ChangeFeed, Freshness, KeyStore};
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("connect to the test database");
    let store = nexora_auth_postgres::PostgresStore::new(pool)
        .await
        .expect("the store opens the test database");
    // A detached feed reports to no cache, and is closed from the start: a watcher the store
    // starts for it stops at once.
    store.watch_changes(ChangeFeed::detached()) == Freshness::Watched
}

/// The listener connections open on the database of `url`.
pub async fn listeners(url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the test database");
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_one(&mut conn)
    .await
    .expect("count the listeners")
}

/// Terminates every listener connection on the database of `url` (both instances'); returns
/// how many there were.
pub async fn kill_listeners(url: &str) -> usize {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the test database");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_all(&mut conn)
    .await
    .expect("terminate the listeners");
    killed.into_iter().filter(|k| *k).count()
}

/// Waits up to `within` for at least `count` listener connections on the database of `url`;
/// returns whether they came.
pub async fn await_listeners(url: &str, count: i64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if listeners(url).await >= count {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `base`'s answer to `GET /api/agents` with `token` must be 200: the instance has just
/// accepted the key, so whatever it keeps about it is warm.
pub async fn warm(http: &Client, base: &str, token: &str, what: &str) {
    assert_eq!(
        agents_status(http, base, token).await,
        StatusCode::OK,
        "{what}: the key works before the change"
    );
}
