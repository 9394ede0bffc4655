//! What the change-feed contracts ([`crate::key_feed`], [`crate::user_feed`]) share: the cache
//! they attach, their deadlines, and the loops that wait for a cache hit or a refusal.

use std::{future::Future, time::Duration};

use nexora_auth::{AuthError, CacheConfig, Freshness, Principal};
use tokio::time::Instant;

/// How soon a write must show on the observing authenticator. A feed reports within
/// milliseconds, a polling one within its poll interval; the cache attached by the contracts
/// would otherwise serve the old answer for [`LONG`].
pub(crate) const REPORT_DEADLINE: Duration = Duration::from_secs(2);

/// How soon after attaching a [`Freshness::Watched`] store must make its first in-sync mark
/// (observed as the first request served from the cache).
pub(crate) const IN_SYNC_DEADLINE: Duration = Duration::from_secs(1);

/// The ceiling and negative lifetime of the contracts' cache: far beyond every deadline, so
/// only a reported change can end a cached answer in time.
const LONG: Duration = Duration::from_secs(60);

/// The cache the contracts attach.
pub(crate) fn contract_cache() -> CacheConfig {
    CacheConfig::default().ceiling(LONG).negative_ttl(LONG)
}

/// Panics unless the store offers a feed.
pub(crate) fn require_feed(method: &str, answered: Option<Freshness>) -> Freshness {
    match answered {
        Some(f @ (Freshness::Synchronous | Freshness::Watched)) => f,
        other => panic!(
            "{method} answered {other:?}: the change-feed contracts are for stores that offer a \
             feed (Freshness::Synchronous or Freshness::Watched)"
        ),
    }
}

/// Runs `request` until it reaches no store (`reads` unchanged across one call): the cache
/// serves it. Panics after `deadline`, naming `what`.
pub(crate) async fn until_cached<F, Fut>(
    what: &str,
    deadline: Duration,
    reads: impl Fn() -> u64,
    request: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Principal, AuthError>>,
{
    let start = Instant::now();
    loop {
        let before = reads();
        let answer = request().await;
        if reads() == before {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "{what} was still read from the store {:?} after it was first answered (last \
             answer {answer:?}): the store's feed never vouched for the cache (no in-sync mark)",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `request` until `changed` accepts its answer. Panics after [`REPORT_DEADLINE`] with
/// `what` and the last answer: the write was not reported to the cache.
pub(crate) async fn until_changed<F, Fut>(
    what: &str,
    request: F,
    changed: impl Fn(&Result<Principal, AuthError>) -> bool,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Principal, AuthError>>,
{
    let start = Instant::now();
    loop {
        let answer = request().await;
        if changed(&answer) {
            return;
        }
        assert!(
            start.elapsed() < REPORT_DEADLINE,
            "{what}: the cache still answers {answer:?} {:?} after the write returned; the store \
             did not report the change to its feed",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
