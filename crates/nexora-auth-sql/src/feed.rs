//! The change feed of a SQL store, without its dialect: the settings ([`FeedConfig`]), the
//! feeds of one store value and its one watcher task ([`FeedHub`]), the replay of a change
//! log ([`Replay`]) and the watcher loop (which [`FeedHub::attach`] starts) over a [`ChangeLog`] that a store crate
//! implements with its database's SQL and wake-up mechanism (Postgres: `LISTEN`).
//!
//! # The log this expects
//!
//! The store writes one row per change, `(seq, kind, key id, owner)`, in the same transaction
//! as the change, and keeps a head: the highest `seq` written. `seq` is gap-free and in commit
//! order (each writer takes the next number under a lock held until it commits), so a reader
//! that sees `seq = n` committed sees every row below `n`, and a missing number means rows were
//! deleted (pruned past the reader, or by hand): the reader then reports that *everything*
//! changed rather than guessing.
//!
//! # The loop
//!
//! The watcher opens a connection ([`ChangeLog::connect`]) — for Postgres one that `LISTEN`s
//! before it reads, so a change committed after the read is notified and one committed before
//! is in the read — then, on every wake-up and at least every
//! [`poll interval`](FeedConfig::poll_interval):
//!
//! 1. takes a [`SyncMark`] of every feed,
//! 2. reads the log after the last `seq` it reported (batch after batch until caught up),
//! 3. reports every row, then marks every feed [`in_sync`](ChangeFeed::in_sync) with the mark
//!    taken *before* the read — so a mark never vouches for a change the read could not see.
//!
//! Any error (the connection lost, a failed read) makes every feed
//! [`out_of_sync`](ChangeFeed::out_of_sync) at once; the loop reconnects with a backoff and
//! replays from the last `seq`. At its start it reads the head, reports
//! [`everything_changed`](ChangeFeed::everything_changed) (whatever a cache filled before that
//! read may predate a change it will never be told about) and replays from there. It prunes
//! the log every [`prune interval`](FeedConfig::prune_interval), and stops when every feed
//! [`is_closed`](ChangeFeed::is_closed).
//!
//! A notification only wakes the loop; the log is the truth. One whose `seq` the loop has
//! already read is dropped without a read, so a burst of notifications costs one read.

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use nexora_auth::{
    ChangeFeed, ChangeFeeds, Freshness, KeyId, OwnerId, StoreError, cache::SyncMark,
};
use tokio::time::Instant;

/// Settings of a SQL store's change feed. Every default is on its setter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FeedConfig {
    poll_interval: Duration,
    retention: Duration,
    prune_interval: Duration,
    batch_size: u32,
    read_timeout: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            retention: Duration::from_secs(600),
            prune_interval: Duration::from_secs(60),
            batch_size: 1_000,
            read_timeout: Duration::from_secs(2),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl FeedConfig {
    /// How often the watcher reads the log when no notification wakes it: the longest a
    /// change can take to reach the caches when notifications are lost, and how often the
    /// feeds are marked in sync. Defaults to 250 milliseconds; keep it well under the cache's
    /// ceiling (5 seconds by default), or cached positives lapse between marks.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long rows stay in the change log before the watcher prunes them: a watcher that
    /// was disconnected for longer finds a gap and drops its whole cache. Defaults to
    /// 10 minutes.
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How often the watcher prunes the log. Defaults to 1 minute.
    #[must_use]
    pub fn prune_interval(mut self, interval: Duration) -> Self {
        self.prune_interval = interval;
        self
    }

    /// Most rows read at once; a longer backlog is read in several batches. Defaults to 1,000.
    #[must_use]
    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// How long one read of the log may take before the watcher counts the connection as lost
    /// (a server that stopped answering without closing it): the caches stop trusting their
    /// positives then, rather than when the ceiling runs out. Defaults to 2 seconds.
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The wait before the first retry after a failed reconnect, doubled per failure up to
    /// `max`. Defaults to 100 milliseconds and 5 seconds. A connection lost after working
    /// is retried at once.
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// The configured poll interval.
    pub fn poll_interval_duration(&self) -> Duration {
        self.poll_interval
    }

    /// The configured retention.
    pub fn retention_duration(&self) -> Duration {
        self.retention
    }

    /// The wait before reconnect attempt `failures` (1 for the first failure).
    fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .min_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        doubled.min(self.max_backoff)
    }
}

/// One change as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggedChange {
    /// A key row was inserted, updated or deleted.
    Key(KeyId),
    /// A user row was inserted, updated or deleted.
    User(OwnerId),
    /// A table was emptied at once (`TRUNCATE`).
    Everything,
}

/// A row of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Its position: gap-free, in commit order.
    pub seq: i64,
    /// What changed.
    pub change: LoggedChange,
}

/// What one read of the log returned, in one snapshot: the head (the highest `seq` written,
/// 0 for none) and the rows after the reader's last `seq`, in order, at most the batch size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogBatch {
    /// The highest `seq` committed when the read ran.
    pub head: i64,
    /// The rows after the `seq` asked for, ascending.
    pub rows: Vec<LogRow>,
}

/// Where a watcher reports what it read: [`ChangeFeeds`] in a store, a recorder in tests.
pub trait ChangeSink {
    /// A key changed.
    fn key_changed(&self, id: KeyId);
    /// A user changed.
    fn user_changed(&self, owner: &OwnerId);
    /// Anything may have changed.
    fn everything_changed(&self);
}

impl ChangeSink for ChangeFeeds {
    fn key_changed(&self, id: KeyId) {
        ChangeFeeds::key_changed(self, id);
    }

    fn user_changed(&self, owner: &OwnerId) {
        ChangeFeeds::user_changed(self, owner);
    }

    fn everything_changed(&self) {
        self.each(ChangeFeed::everything_changed);
    }
}

/// A reader's position in the log, and the rules that turn what it reads into reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    last: i64,
}

impl Replay {
    /// A reader that has reported everything up to `seq` (at the start: the head).
    pub fn from(seq: i64) -> Self {
        Self { last: seq }
    }

    /// The last `seq` reported: the next read asks for the rows after it.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Whether a notification of `seq` needs no read: the reader is already past it.
    pub fn covers(&self, seq: i64) -> bool {
        seq <= self.last
    }

    /// Reports `batch` (read after [`last`](Self::last)) to `sink` and moves past it. Returns
    /// whether more rows may follow (the batch was full: read again before marking in sync).
    ///
    /// A missing `seq` (rows pruned or deleted before this reader saw them), or a head below
    /// the reader's position (the log was reset: a restored database, recreated tables), is
    /// reported as [`ChangeSink::everything_changed`].
    pub fn apply(&mut self, batch: &LogBatch, batch_size: u32, sink: &impl ChangeSink) -> bool {
        if batch.head < self.last {
            sink.everything_changed();
            self.last = batch.head;
            return false;
        }
        let mut gap = false;
        for row in &batch.rows {
            if row.seq <= self.last {
                // The read asked for rows after `last`; an older one is a broken read.
                continue;
            }
            gap |= row.seq != self.last + 1;
            match &row.change {
                LoggedChange::Key(id) => sink.key_changed(*id),
                LoggedChange::User(owner) => sink.user_changed(owner),
                LoggedChange::Everything => sink.everything_changed(),
            }
            self.last = row.seq;
        }
        let full = batch.rows.len() >= usize::try_from(batch_size).unwrap_or(usize::MAX);
        if !full && batch.head > self.last {
            // Rows up to the head were committed but are gone.
            gap = true;
            self.last = batch.head;
        }
        if gap {
            sink.everything_changed();
        }
        full
    }
}

/// How a watcher's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A notification arrived, with the `seq` it named (if it named one).
    Notified(Option<i64>),
    /// The deadline passed: time for a poll.
    TimedOut,
}

/// A store's change log, as the watcher uses it.
pub trait ChangeLog: Send + Sync + 'static {
    /// One connection to the log.
    type Connection: LogConnection;

    /// Opens a connection that receives wake-ups from the moment this returns (Postgres:
    /// after its `LISTEN`), so a read that follows misses nothing.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, StoreError>> + Send;
}

/// A connection to the change log (see [`ChangeLog`]).
pub trait LogConnection: Send {
    /// Waits for a notification until `deadline`. `Err` when the connection is lost or
    /// failed: the watcher then stops trusting it and reconnects.
    fn wait(&mut self, deadline: Instant) -> impl Future<Output = Result<Wake, StoreError>> + Send;

    /// Reads the head and at most `limit` rows after `after`, in one snapshot.
    fn read(
        &mut self,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<LogBatch, StoreError>> + Send;

    /// Deletes rows older than `retention`, never the newest row. Returns how many.
    fn prune(
        &mut self,
        retention: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The feeds of one store value and its one watcher task. A store keeps one in an `Arc`,
/// calls [`attach`](Self::attach) from `watch_changes` / `watch_user_changes`, and reports
/// its own writes through [`feeds`](Self::feeds) after they commit.
#[derive(Debug, Default)]
pub struct FeedHub {
    feeds: ChangeFeeds,
    config: FeedConfig,
    /// Whether a watcher task is running. Held while a feed is added and while the task
    /// decides to stop, so a feed is never added to a watcher on its way out.
    running: Mutex<bool>,
}

impl FeedHub {
    /// A hub with these settings and no feeds.
    pub fn new(config: FeedConfig) -> Self {
        Self {
            feeds: ChangeFeeds::new(),
            config,
            running: Mutex::new(false),
        }
    }

    /// The feeds, for the store's reports of its own writes.
    pub fn feeds(&self) -> &ChangeFeeds {
        &self.feeds
    }

    /// The settings.
    pub fn config(&self) -> &FeedConfig {
        &self.config
    }

    /// Adds `feed` and makes sure the watcher runs, spawning it with `log()` on the current
    /// Tokio runtime if none is running. [`Freshness::Watched`]; without a runtime (nothing
    /// to run the watcher on) [`Freshness::Unwatched`] with a warning: the store's own
    /// writes still reach `feed`, but its cached positives are not trusted.
    pub fn attach<L: ChangeLog>(
        self: &Arc<Self>,
        feed: ChangeFeed,
        log: impl FnOnce() -> L,
    ) -> Freshness {
        let runtime = tokio::runtime::Handle::try_current();
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        self.feeds.add(feed);
        let Ok(runtime) = runtime else {
            tracing::warn!(
                "no Tokio runtime when the store was attached to an authenticator: its change \
                 feed cannot run, so the verification cache reads this store on every request"
            );
            return Freshness::Unwatched;
        };
        if !*running {
            *running = true;
            let guard = RunningGuard {
                hub: Arc::clone(self),
                armed: true,
            };
            runtime.spawn(watch(guard, log()));
        }
        Freshness::Watched
    }

    /// Marks of every feed, taken now (before a read).
    fn marks(&self) -> Vec<(ChangeFeed, SyncMark)> {
        let mut marks = Vec::new();
        self.feeds.each(|f| marks.push((f.clone(), f.sync_mark())));
        marks
    }

    fn out_of_sync(&self) {
        self.feeds.each(ChangeFeed::out_of_sync);
    }
}

/// Owned by the watcher task: stops it (under the hub's lock) once no feed is open, and marks
/// the hub idle if the task is dropped unfinished (its runtime shut down), so the next attach
/// starts a new one.
#[derive(Debug)]
struct RunningGuard {
    hub: Arc<FeedHub>,
    armed: bool,
}

impl RunningGuard {
    /// Whether every feed is closed; if so the hub is marked idle and the task must return.
    fn stop_if_idle(&mut self) -> bool {
        let mut running = self
            .hub
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.hub.feeds.is_empty() {
            *running = false;
            self.armed = false;
            return true;
        }
        false
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if self.armed {
            *self
                .hub
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = false;
        }
    }
}

/// Why the loop left a connection.
enum Lost {
    /// Every feed is closed: stop.
    Idle,
    /// The connection failed; reconnect.
    Failed(StoreError),
}

/// The watcher loop (see the module docs): runs until every feed of the hub is closed.
async fn watch<L: ChangeLog>(mut guard: RunningGuard, log: L) {
    let hub = Arc::clone(&guard.hub);
    let config = hub.config.clone();
    let mut replay: Option<Replay> = None;
    let mut failures = 0u32;
    let mut next_prune = Instant::now() + config.prune_interval;
    loop {
        if guard.stop_if_idle() {
            return;
        }
        if failures > 0 {
            tokio::time::sleep(config.backoff(failures)).await;
            if guard.stop_if_idle() {
                return;
            }
        }
        let connected = match log.connect().await {
            Ok(mut conn) => match catch_up(&hub, &mut conn, &mut replay).await {
                Ok(()) => Ok(conn),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                hub.out_of_sync();
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, failures, "change feed: cannot reach the change log; cached positives are not trusted until it is back");
                continue;
            }
        };
        failures = 0;
        match serve(&mut guard, &mut conn, &mut replay, &mut next_prune).await {
            Lost::Idle => return,
            Lost::Failed(e) => {
                hub.out_of_sync();
                tracing::warn!(error = %e, "change feed: connection lost; reconnecting and replaying the log");
            }
        }
    }
}

/// Serves one connection: waits, reads, marks, prunes, until it fails or every feed closes.
async fn serve<C: LogConnection>(
    guard: &mut RunningGuard,
    conn: &mut C,
    replay: &mut Option<Replay>,
    next_prune: &mut Instant,
) -> Lost {
    let hub = Arc::clone(&guard.hub);
    let config = &hub.config;
    let mut deadline = Instant::now() + config.poll_interval;
    loop {
        if guard.stop_if_idle() {
            return Lost::Idle;
        }
        match conn.wait(deadline).await {
            // Already read, and the poll is not due: no read. (A stream of such notifications
            // cannot hold the poll off: past the deadline every wake-up reads.)
            Ok(Wake::Notified(Some(seq)))
                if replay.is_some_and(|r| r.covers(seq)) && Instant::now() < deadline =>
            {
                continue;
            }
            Ok(_) => {}
            Err(e) => return Lost::Failed(e),
        }
        if let Err(e) = catch_up(&hub, conn, replay).await {
            return Lost::Failed(e);
        }
        deadline = Instant::now() + config.poll_interval;
        if Instant::now() >= *next_prune {
            *next_prune = Instant::now() + config.prune_interval;
            match conn.prune(config.retention).await {
                Ok(pruned) => tracing::debug!(pruned, "change feed: pruned the change log"),
                // Pruning is housekeeping: the feed itself is still sound.
                Err(e) => tracing::warn!(error = %e, "change feed: pruning the change log failed"),
            }
        }
    }
}

/// One read of the log, failing past the read timeout.
async fn read<C: LogConnection>(
    conn: &mut C,
    after: i64,
    config: &FeedConfig,
) -> Result<LogBatch, StoreError> {
    tokio::time::timeout(config.read_timeout, conn.read(after, config.batch_size))
        .await
        .unwrap_or_else(|_| Err(StoreError::unavailable("reading the change log timed out")))
}

/// Reads the log until caught up, reports every row, then marks every feed in sync with the
/// marks taken before the last read. The first call (no position yet) reads the head and
/// drops every cache's entries instead.
async fn catch_up<C: LogConnection>(
    hub: &FeedHub,
    conn: &mut C,
    replay: &mut Option<Replay>,
) -> Result<(), StoreError> {
    let config = &hub.config;
    loop {
        let marks = hub.marks();
        let more = match replay {
            Some(replay) => {
                let batch = read(conn, replay.last(), config).await?;
                replay.apply(&batch, config.batch_size, &hub.feeds)
            }
            None => {
                // After the last possible seq: no rows, only the head.
                let batch = read(conn, i64::MAX, config).await?;
                *replay = Some(Replay::from(batch.head));
                // A cache filled before this read may predate a change at or below the head,
                // which will never be reported: start every cache afresh.
                hub.feeds.everything_changed();
                false
            }
        };
        if !more {
            for (feed, mark) in marks {
                feed.in_sync(mark);
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// What a replay reported, in order.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<LoggedChange>>);

    impl ChangeSink for Recorder {
        fn key_changed(&self, id: KeyId) {
            self.0.borrow_mut().push(LoggedChange::Key(id));
        }
        fn user_changed(&self, owner: &OwnerId) {
            self.0.borrow_mut().push(LoggedChange::User(owner.clone()));
        }
        fn everything_changed(&self) {
            self.0.borrow_mut().push(LoggedChange::Everything);
        }
    }

    fn key(n: i64) -> KeyId {
        let mut bytes = [0u8; 16];
        bytes[8..].copy_from_slice(&n.to_be_bytes());
        KeyId::from_bytes(bytes)
    }

    fn rows(seqs: &[i64]) -> Vec<LogRow> {
        seqs.iter()
            .map(|&seq| LogRow {
                seq,
                change: LoggedChange::Key(key(seq)),
            })
            .collect()
    }

    fn keys(seqs: &[i64]) -> Vec<LoggedChange> {
        seqs.iter().map(|&s| LoggedChange::Key(key(s))).collect()
    }

    #[test]
    fn rows_in_order_are_reported_and_move_the_position() {
        let sink = Recorder::default();
        let mut replay = Replay::from(4);
        let more = replay.apply(
            &LogBatch {
                head: 7,
                rows: rows(&[5, 6, 7]),
            },
            10,
            &sink,
        );
        assert!(!more);
        assert_eq!(replay.last(), 7);
        assert_eq!(*sink.0.borrow(), keys(&[5, 6, 7]));
        assert!(replay.covers(7) && !replay.covers(8));
    }

    #[test]
    fn a_full_batch_asks_for_another_read() {
        let sink = Recorder::default();
        let mut replay = Replay::from(0);
        assert!(replay.apply(
            &LogBatch {
                head: 9,
                rows: rows(&[1, 2])
            },
            2,
            &sink
        ));
        assert_eq!(replay.last(), 2);
        assert!(!replay.apply(
            &LogBatch {
                head: 9,
                rows: rows(&[3, 4, 5, 6, 7, 8, 9])
            },
            10,
            &sink
        ));
        assert_eq!(*sink.0.borrow(), keys(&[1, 2, 3, 4, 5, 6, 7, 8, 9]));
    }

    #[test]
    fn a_gap_reports_everything() {
        // Pruned past the reader: the first row is not the next seq.
        let sink = Recorder::default();
        let mut replay = Replay::from(3);
        replay.apply(
            &LogBatch {
                head: 9,
                rows: rows(&[8, 9]),
            },
            10,
            &sink,
        );
        assert_eq!(replay.last(), 9);
        assert_eq!(sink.0.borrow().last(), Some(&LoggedChange::Everything));

        // A row missing in the middle.
        let sink = Recorder::default();
        let mut replay = Replay::from(0);
        replay.apply(
            &LogBatch {
                head: 3,
                rows: rows(&[1, 3]),
            },
            10,
            &sink,
        );
        assert!(sink.0.borrow().contains(&LoggedChange::Everything));

        // Every row after the reader is gone, but the head moved.
        let sink = Recorder::default();
        let mut replay = Replay::from(3);
        replay.apply(
            &LogBatch {
                head: 5,
                rows: vec![],
            },
            10,
            &sink,
        );
        assert_eq!(replay.last(), 5);
        assert_eq!(*sink.0.borrow(), vec![LoggedChange::Everything]);
    }

    #[test]
    fn a_reset_log_reports_everything_and_follows_the_new_head() {
        let sink = Recorder::default();
        let mut replay = Replay::from(50);
        assert!(!replay.apply(
            &LogBatch {
                head: 2,
                rows: vec![]
            },
            10,
            &sink
        ));
        assert_eq!(replay.last(), 2);
        assert_eq!(*sink.0.borrow(), vec![LoggedChange::Everything]);
    }

    #[test]
    fn nothing_new_reports_nothing() {
        let sink = Recorder::default();
        let mut replay = Replay::from(5);
        assert!(!replay.apply(
            &LogBatch {
                head: 5,
                rows: vec![]
            },
            10,
            &sink
        ));
        assert!(sink.0.borrow().is_empty());
        // A stale row (a read that returned what it should not) is not reported twice.
        replay.apply(
            &LogBatch {
                head: 6,
                rows: rows(&[5, 6]),
            },
            10,
            &sink,
        );
        assert_eq!(*sink.0.borrow(), keys(&[6]));
    }

    #[test]
    fn users_and_truncations_are_reported_as_such() {
        let sink = Recorder::default();
        let mut replay = Replay::from(0);
        let batch = LogBatch {
            head: 2,
            rows: vec![
                LogRow {
                    seq: 1,
                    change: LoggedChange::User(OwnerId::new("alice")),
                },
                LogRow {
                    seq: 2,
                    change: LoggedChange::Everything,
                },
            ],
        };
        replay.apply(&batch, 10, &sink);
        assert_eq!(
            *sink.0.borrow(),
            vec![
                LoggedChange::User(OwnerId::new("alice")),
                LoggedChange::Everything
            ]
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = FeedConfig::default();
        assert_eq!(config.backoff(1), Duration::from_millis(100));
        assert_eq!(config.backoff(2), Duration::from_millis(200));
        assert_eq!(config.backoff(4), Duration::from_millis(800));
        assert_eq!(config.backoff(10), Duration::from_secs(5));
        assert_eq!(config.backoff(u32::MAX), Duration::from_secs(5));
    }
}
