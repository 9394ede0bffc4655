//! The conformance suite for [`KeyStore`], [`UserStore`], [`AuditStore`] and
//! [`TicketStore`](nexora_auth::TicketStore) implementations.
//!
//! Every store — the in-memory reference, SQLite, Postgres, or your own — runs this one suite
//! from its own tests with one macro call. Each contract written in the
//! [`nexora_auth::store`] docs becomes its own `#[test]`, so a failure names the contract:
//!
//! ```
//! // tests/conformance.rs of a store crate
//! nexora_auth_testkit::key_store_conformance!(async { nexora_auth::MemoryKeyStore::new() });
//! nexora_auth_testkit::user_store_conformance!(async { nexora_auth::MemoryUserStore::new() });
//! nexora_auth_testkit::audit_store_conformance!(async { nexora_auth::MemoryAuditStore::new() });
//! nexora_auth_testkit::ticket_store_conformance!(async { nexora_auth::MemoryTicketStore::new() });
//! # fn main() {}
//! ```
//!
//! The expression is evaluated once per test and must yield an **empty** store: every contract
//! first checks that (`list` of the owners it uses, `find` of the fixed ids it inserts) and fails
//! with `the store given to the contract is not empty` otherwise. Tests run in parallel, so a
//! store on a shared server needs one namespace per test — a fresh database file, a fresh
//! schema, a random key prefix — never one namespace shared or flushed between tests.
//!
//! When a store needs a guard that outlives it (a temporary directory, a schema to drop), has a
//! real backend to break, or may have to skip, use the `fixture:` form, whose expression yields
//! a [`Fixture`]. [`Fixture::with_failing`] hands the kit a second store of the same type whose
//! backend is down (a closed pool, a server that is not listening), and the generated
//! `key_store_backend_down_is_unavailable` / `user_store_backend_down_is_unavailable` test checks
//! it answers `Err(StoreError::Unavailable)` (a 503), never "not found" (a 401). A `fixture:`
//! form without one fails that test, so the check cannot be forgotten:
//!
//! ```no_run
//! use nexora_auth_testkit::{Fixture, failure::FlakyStore};
//! use nexora_auth::MemoryKeyStore;
//!
//! // A store on a shared server: one namespace per test, dropped with the guard.
//! struct Namespace(String);
//! impl Drop for Namespace {
//!     fn drop(&mut self) { /* delete every key under self.0 */ }
//! }
//!
//! nexora_auth_testkit::key_store_conformance!(fixture: async {
//!     let namespace = Namespace(format!("test-{}:", uuid::Uuid::new_v4().simple()));
//!     // In real tests: your store over the namespace, and one over a closed connection.
//!     let store = FlakyStore::new(MemoryKeyStore::new());
//!     let failing = FlakyStore::new(MemoryKeyStore::new());
//!     failing.set_failing(true);
//!     Fixture::new(store).with_guard(namespace).with_failing(failing)
//! });
//! # fn main() {}
//! ```
//!
//! With the short form, the backend-down test runs on the store wrapped in a
//! [`failure::FlakyStore`] that fails every call, which checks the [`Authenticator`]'s side only.
//!
//! The generated tests are plain `#[test]` functions that run the contract on a two-worker
//! multi-threaded Tokio runtime built by the kit, so the calling crate needs no particular
//! Tokio features. Each contract is also a public `async fn` in [`key_store`],
//! [`user_store`] and [`audit_store`] ([`key_store::contracts`] lists them by name), for callers who prefer to
//! write the tests by hand. With the `postgres` feature, `postgres::TestSchema` gives each test
//! a fresh schema on a real server, or a loud skip.
//!
//! Every `pub async fn` of [`key_store`] and [`user_store`] is a contract: the build script
//! lists them for the macros and for `contracts()`, so adding a contract is writing its
//! function, and it runs on every store from then on (`tests/contract_list.rs` checks the
//! lists against the sources, and that each contract names itself in its messages).
//!
//! # Change feeds
//!
//! A store that keeps the verification cache fresh (its `watch_changes` /
//! `watch_user_changes` answer `Freshness::Synchronous` or `Freshness::Watched`) also runs
//! [`change_feed_conformance!`]: the contracts of [`key_feed`] and [`user_feed`] attach a real
//! cache, make a key or user hot, write through the store — or, given
//! [`Fixture::with_peer`], through a second instance on the same backend — and require the
//! cached answer to change within 2 seconds; a `Watched` store must mark itself in sync within
//! a second of being attached. `tests/feed_mutants.rs` checks that broken feeds fail them.
//!
//! A complete custom store written from the trait docs alone, and passing this kit, is in
//! `examples/custom_store.rs` (run it with `cargo run -p nexora-auth-testkit --example custom_store`;
//! `cargo test` runs its conformance tests).
//!
//! # The kit checks itself
//!
//! `tests/mutants.rs` runs the whole kit on stores broken the way a newcomer plausibly breaks
//! them — a rotate or revoke that reads, checks, then writes in separate steps; a creator check
//! apart from its insert; millisecond timestamps; a `find` that turns a backend failure into
//! `Ok(None)`; a `list` that includes revoked keys; a rotate that ignores the owner; a credit
//! swap that ignores `refilled_at`, is not atomic or writes to revoked keys; an `update_key`
//! that changes revoked keys or clears limits it was not given; a store that is not empty — and
//! requires each to fail a named contract, on every run;
//! `tests/audit_mutants.rs` does the same for the audit contracts (an owner filter ignored, an
//! inclusive cursor, a partial batch, millisecond times…).
//!
//! # Test support
//!
//! Besides the suite, the kit holds, once, what the workspace's own tests share: a clock that
//! moves only when told ([`ManualClock`]), a store wrapper that counts every call and fails on
//! demand while forwarding every method ([`failure::FlakyStore`], [`failure::StoreCalls`]), an
//! authenticator builder with cheap argon2 ([`authenticator_builder`], [`fast_passwords`]) and,
//! with the `jwt` feature, a byte-level JWT forger (`jwt`) and embedded throwaway signing keys
//! (`keys`); with the `github` feature, GitHub's side of secret scanning (`github`: signing
//! keys from a seeded generator, their key document, signed reports). They live in this published crate rather than in an unpublished support crate
//! because published crates run them from their tests (the SQLite and Postgres stores, the
//! conformance suite itself); the forger and the keys sit behind a feature because a store
//! author needs neither. `nexora-auth`'s own integration tests use the kit from the workspace
//! and stay out of its package: a crate cannot dev-depend on one that depends on it before both
//! are published.
//!
//! # Timestamps
//!
//! The precision rule is part of the [`KeyStore`] contract: a store keeps at least microsecond
//! precision. Every timestamp the kit writes is a whole number of microseconds (the kit's
//! clocks truncate to microseconds), so such a store round-trips them exactly.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};

use nexora_auth::{
    ApiKey, AuditStore, Authenticator, AuthenticatorBuilder, Clock, Credential, JwtConfig, JwtKeys,
    KeyId, KeyRecord, KeyStore, OwnerId, PasswordPolicy, PepperRing, Principal, Scopes,
    SecretBytes, TokenAuthority, UserStore,
};
use time::OffsetDateTime;

// The contract lists (`__key_store_contracts!`, `__user_store_contracts!`), which build.rs
// writes from the `pub async fn`s of key_store.rs and user_store.rs. Included before the
// modules, whose `contracts()` expand them by textual scope.
include!(concat!(env!("OUT_DIR"), "/contracts.rs"));

pub mod audit_store;
pub mod failure;
mod feed_support;
#[cfg(feature = "github")]
pub mod github;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod key_feed;
pub mod key_store;
#[cfg(feature = "jwt")]
pub mod keys;
pub mod limit_backend;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "postgres", feature = "redis"))]
mod service;
pub mod ticket_store;
pub mod user_feed;
pub mod user_store;

/// What a store factory hands the kit: the store under test, an optional guard dropped after
/// the test (a temporary directory, a schema to drop), a store of the same type whose backend
/// is down (for the backend-down check), or a decision to skip.
pub struct Fixture<S> {
    inner: Option<Parts<S>>,
}

/// What [`Fixture::with_guard`] keeps alive until the end of a test.
pub type Guard = Box<dyn Send>;

struct Parts<S> {
    store: S,
    guard: Option<Guard>,
    failing: Option<S>,
    peer: Option<S>,
}

impl<S> Fixture<S> {
    /// A store to test. It must be **empty**: every contract checks that first and fails with
    /// a message saying so.
    pub fn new(store: S) -> Self {
        Self {
            inner: Some(Parts {
                store,
                guard: None,
                failing: None,
                peer: None,
            }),
        }
    }

    /// Keeps `guard` alive until the test has finished (passed or failed), then drops it.
    pub fn with_guard(mut self, guard: impl Send + 'static) -> Self {
        if let Some(parts) = &mut self.inner {
            parts.guard = Some(Box::new(guard));
        }
        self
    }

    /// A store of the same type whose backend is down (a closed pool, a server that is not
    /// listening): the generated `*_backend_down_is_unavailable` test runs
    /// [`failure::key_store_backend_down`] / [`failure::user_store_backend_down`] on it, and
    /// fails when the `fixture:` form of the macros was given none. No default.
    pub fn with_failing(mut self, failing: S) -> Self {
        if let Some(parts) = &mut self.inner {
            parts.failing = Some(failing);
        }
        self
    }

    /// Another store value over the same backend as the store under test — a second server
    /// instance (its own pool, the same database). The change-feed contracts
    /// ([`change_feed_conformance!`]) then write through it and observe through the store, so
    /// every change must travel through the backend's feed; without one they write through
    /// the store itself. The other suites ignore it.
    pub fn with_peer(mut self, peer: S) -> Self {
        if let Some(parts) = &mut self.inner {
            parts.peer = Some(peer);
        }
        self
    }

    /// The store, its peer (if one was given) and the guard, or `None` when skipped.
    pub fn into_feed_parts(self) -> Option<(S, Option<S>, Option<Guard>)> {
        self.inner
            .map(|parts| (parts.store, parts.peer, parts.guard))
    }

    /// Nothing to test: the test returns at once. Whoever decides to skip must say so loudly
    /// (as `postgres::TestSchema::create` does, on stderr).
    pub fn skipped() -> Self {
        Self { inner: None }
    }

    /// The store and its guard, or `None` when skipped.
    pub fn into_parts(self) -> Option<(S, Option<Guard>)> {
        self.inner.map(|parts| (parts.store, parts.guard))
    }

    /// The failing store (if one was given) and the guard, or `None` when skipped.
    pub fn into_failing(self) -> Option<(Option<S>, Option<Guard>)> {
        self.inner.map(|parts| (parts.failing, parts.guard))
    }
}

impl<S> std::fmt::Debug for Fixture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("skipped", &self.inner.is_none())
            .field(
                "failing",
                &self.inner.as_ref().is_some_and(|p| p.failing.is_some()),
            )
            .field(
                "peer",
                &self.inner.as_ref().is_some_and(|p| p.peer.is_some()),
            )
            .finish_non_exhaustive()
    }
}

/// Runs `test` to completion on a fresh two-worker multi-threaded runtime (what the generated
/// tests call). Two workers are enough for the concurrency contracts to interleave for real.
pub fn run<F: Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        // Building a runtime only fails when the OS refuses threads: nothing to test then.
        .expect("the kit needs a Tokio runtime")
        .block_on(test);
}

/// Generates one `#[test]` per [`KeyStore`] contract, plus `key_store_backend_down_is_unavailable`
/// (see the [crate docs](crate)).
///
/// `key_store_conformance!(async { store })` or `key_store_conformance!(fixture: async { Fixture })`.
/// Call it once per module (the tests are named after the contracts).
///
/// With the `fixture:` form, the backend-down test runs on the store given to
/// [`Fixture::with_failing`] and fails when there is none. With the short form, it runs on the
/// store wrapped in a [`failure::FlakyStore`] that fails every call: that checks the
/// [`Authenticator`]'s side only, so a store with a real backend should use the `fixture:` form.
#[macro_export]
macro_rules! key_store_conformance {
    (fixture: $factory:expr) => {
        $crate::key_store_conformance!(@contracts $factory);
        #[test]
        fn key_store_backend_down_is_unavailable() {
            $crate::run(async {
                let fixture: $crate::Fixture<_> = ($factory).await;
                let Some((failing, guard)) = fixture.into_failing() else { return };
                let failing = failing.unwrap_or_else(|| panic!("{}", $crate::NO_FAILING_BACKEND));
                $crate::failure::key_store_backend_down(::std::sync::Arc::new(failing)).await;
                drop(guard);
            });
        }
    };
    (@contracts $factory:expr) => {
        $crate::__key_store_contracts!(tests key_store ($factory));
    };
    ($factory:expr) => {
        $crate::key_store_conformance!(@contracts async { $crate::Fixture::new(($factory).await) });
        #[test]
        fn key_store_backend_down_is_unavailable() {
            $crate::run(async {
                let store = $crate::failure::FlakyStore::new(($factory).await);
                store.set_failing(true);
                $crate::failure::key_store_backend_down(::std::sync::Arc::new(store)).await;
            });
        }
    };
}

/// Generates one `#[test]` per [`UserStore`] contract, plus `user_store_backend_down_is_unavailable`
/// (see the [crate docs](crate) and [`key_store_conformance!`] for the backend-down test).
///
/// `user_store_conformance!(async { store })` or `user_store_conformance!(fixture: async { Fixture })`.
#[macro_export]
macro_rules! user_store_conformance {
    (fixture: $factory:expr) => {
        $crate::user_store_conformance!(@contracts $factory);
        #[test]
        fn user_store_backend_down_is_unavailable() {
            $crate::run(async {
                let fixture: $crate::Fixture<_> = ($factory).await;
                let Some((failing, guard)) = fixture.into_failing() else { return };
                let failing = failing.unwrap_or_else(|| panic!("{}", $crate::NO_FAILING_BACKEND));
                $crate::failure::user_store_backend_down(::std::sync::Arc::new(failing)).await;
                drop(guard);
            });
        }
    };
    (@contracts $factory:expr) => {
        $crate::__user_store_contracts!(tests user_store ($factory));
    };
    ($factory:expr) => {
        $crate::user_store_conformance!(@contracts async { $crate::Fixture::new(($factory).await) });
        #[test]
        fn user_store_backend_down_is_unavailable() {
            $crate::run(async {
                let store = $crate::failure::FlakyStore::new(($factory).await);
                store.set_failing(true);
                $crate::failure::user_store_backend_down(::std::sync::Arc::new(store)).await;
            });
        }
    };
}

/// Generates one `#[test]` per [`TicketStore`](nexora_auth::TicketStore) contract
/// ([`ticket_store`]); the `fixture:` form also generates
/// `ticket_store_backend_down_is_unavailable`, run on the store given to
/// [`Fixture::with_failing`] ([`failure::ticket_store_backend_down`]), as
/// [`key_store_conformance!`] does for keys. The short form is for stores without a backend
/// to break (the in-memory one).
///
/// ```
/// nexora_auth_testkit::ticket_store_conformance!(async { nexora_auth::MemoryTicketStore::new() });
/// # fn main() {}
/// ```
///
/// Single use across instances rests on `take_ticket` being one atomic step of the shared
/// backend; `concurrent_takes_get_a_ticket_once` checks it through one store value.
#[macro_export]
macro_rules! ticket_store_conformance {
    (fixture: $factory:expr) => {
        $crate::__ticket_store_contracts!(tests ticket_store ($factory));
        #[test]
        fn ticket_store_backend_down_is_unavailable() {
            $crate::run(async {
                let fixture: $crate::Fixture<_> = ($factory).await;
                let Some((failing, guard)) = fixture.into_failing() else { return };
                let failing = failing.unwrap_or_else(|| panic!("{}", $crate::NO_FAILING_BACKEND));
                $crate::failure::ticket_store_backend_down(::std::sync::Arc::new(failing)).await;
                drop(guard);
            });
        }
    };
    ($factory:expr) => {
        $crate::__ticket_store_contracts!(tests ticket_store (async { $crate::Fixture::new(($factory).await) }));
    };
}

/// Generates one `#[test]` per [`AuditStore`] contract ([`audit_store`]), plus
/// `audit_store_backend_down_is_unavailable` (see [`key_store_conformance!`] for the two
/// forms and the backend-down test).
///
/// ```
/// nexora_auth_testkit::audit_store_conformance!(async { nexora_auth::MemoryAuditStore::new() });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! audit_store_conformance {
    (fixture: $factory:expr) => {
        $crate::audit_store_conformance!(@contracts $factory);
        #[test]
        fn audit_store_backend_down_is_unavailable() {
            $crate::run(async {
                let fixture: $crate::Fixture<_> = ($factory).await;
                let Some((failing, guard)) = fixture.into_failing() else { return };
                let failing = failing.unwrap_or_else(|| panic!("{}", $crate::NO_FAILING_BACKEND));
                $crate::failure::audit_store_backend_down(::std::sync::Arc::new(failing)).await;
                drop(guard);
            });
        }
    };
    (@contracts $factory:expr) => {
        $crate::__audit_store_contracts!(tests audit_store ($factory));
    };
    ($factory:expr) => {
        $crate::audit_store_conformance!(@contracts async { $crate::Fixture::new(($factory).await) });
        #[test]
        fn audit_store_backend_down_is_unavailable() {
            $crate::run(async {
                let store = $crate::failure::FlakyStore::new(($factory).await);
                store.set_failing(true);
                $crate::failure::audit_store_backend_down(::std::sync::Arc::new(store)).await;
            });
        }
    };
}

/// Generates one `#[test]` per change-feed contract, for a store that offers a feed
/// ([`KeyStore::watch_changes`] / [`UserStore::watch_user_changes`] answering
/// `Freshness::Synchronous` or `Freshness::Watched`): [`key_feed`] with `keys:`, [`user_feed`]
/// with `users:`.
///
/// ```
/// nexora_auth_testkit::change_feed_conformance!(keys: async { nexora_auth::MemoryKeyStore::new() });
/// nexora_auth_testkit::change_feed_conformance!(users: async { nexora_auth::MemoryUserStore::new() });
/// # fn main() {}
/// ```
///
/// With `keys: fixture: …` / `users: fixture: …` the expression yields a [`Fixture`]; give it
/// [`Fixture::with_peer`] (a second store value on the same backend) when changes can be made
/// elsewhere than through one store value — the contracts then write through the peer, which
/// is what a feed of a shared database is for. A store whose answer is `Unwatched` fails every
/// contract: call this macro only for stores that promise a feed.
#[macro_export]
macro_rules! change_feed_conformance {
    (keys: fixture: $factory:expr) => {
        $crate::__key_feed_contracts!(feed_tests key_feed ($factory));
    };
    (keys: $factory:expr) => {
        $crate::change_feed_conformance!(keys: fixture: async { $crate::Fixture::new(($factory).await) });
    };
    (users: fixture: $factory:expr) => {
        $crate::__user_feed_contracts!(feed_tests user_feed ($factory));
    };
    (users: $factory:expr) => {
        $crate::change_feed_conformance!(users: fixture: async { $crate::Fixture::new(($factory).await) });
    };
}

/// Why a `fixture:` conformance run fails its backend-down test when the fixture has no
/// failing store.
#[doc(hidden)]
pub const NO_FAILING_BACKEND: &str = "backend-down check: the fixture supplies no failing \
    backend. Give the `fixture:` form a store of the same type whose backend is down with \
    `Fixture::with_failing(store)` (a closed pool, a server that is not listening): the kit \
    checks that it answers Err(StoreError::Unavailable), never \"not found\"";

#[doc(hidden)]
#[macro_export]
macro_rules! __contracts {
    (tests $module:ident ($factory:expr); $($contract:ident),* $(,)?) => {
        $(
            #[test]
            fn $contract() {
                $crate::run(async {
                    let fixture: $crate::Fixture<_> = ($factory).await;
                    let Some((store, guard)) = fixture.into_parts() else { return };
                    $crate::$module::$contract(::std::sync::Arc::new(store)).await;
                    drop(guard);
                });
            }
        )*
    };
    (feed_tests $module:ident ($factory:expr); $($contract:ident),* $(,)?) => {
        $(
            #[test]
            fn $contract() {
                $crate::run(async {
                    let fixture: $crate::Fixture<_> = ($factory).await;
                    let Some((store, peer, guard)) = fixture.into_feed_parts() else { return };
                    let store = ::std::sync::Arc::new(store);
                    let writer = match peer {
                        Some(peer) => ::std::sync::Arc::new(peer),
                        None => ::std::sync::Arc::clone(&store),
                    };
                    $crate::$module::$contract(store, writer).await;
                    drop(guard);
                });
            }
        )*
    };
    (feed_list $module:ident (); $($contract:ident),* $(,)?) => {
        vec![$(
            (
                stringify!($contract),
                (|store, writer| -> ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()>>> {
                    Box::pin($crate::$module::$contract(store, writer))
                }) as _,
            )
        ),*]
    };
    (list $module:ident (); $($contract:ident),* $(,)?) => {
        vec![$(
            (
                stringify!($contract),
                (|store| -> ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()>>> {
                    Box::pin($crate::$module::$contract(store))
                }) as _,
            )
        ),*]
    };
}

/// A contract as a function pointer: called with a fresh, empty store, it panics with a message
/// naming the contract when the store breaks it (see [`key_store::contracts`]).
pub type Contract<S> = fn(Arc<S>) -> std::pin::Pin<Box<dyn Future<Output = ()>>>;

/// A change-feed contract as a function pointer: called with the store under test and the
/// store to write through (the same one, or a peer on the same backend); panics naming the
/// contract when the feed breaks it (see [`key_feed::contracts`], [`user_feed::contracts`]).
pub type FeedContract<S> = fn(Arc<S>, Arc<S>) -> std::pin::Pin<Box<dyn Future<Output = ()>>>;

/// How the kit tells a store author that a contract was not given an empty store.
pub(crate) const NOT_EMPTY_HINT: &str = "every contract needs its own empty store: give each test its \
    own namespace (a fresh database file, a fresh schema as `postgres::TestSchema` makes, a \
    random key prefix on a shared server), built in the macro's factory and dropped with \
    `Fixture::with_guard`; never a namespace shared between tests, nor one flushed between them \
    (tests run in parallel)";

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// Runs one contract's `body`, re-raising any panic with the trait and contract named.
async fn named_contract(trait_name: &str, contract: &str, body: impl Future<Output = ()>) {
    let mut body = Box::pin(body);
    let outcome = std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(())) => std::task::Poll::Ready(Ok(())),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    })
    .await;
    if let Err(payload) = outcome {
        panic!(
            "{trait_name} contract `{contract}` failed: {}",
            panic_text(&*payload)
        );
    }
}

/// Runs the [`KeyStore`] contract `name`: checks the store is empty, then runs `body`.
async fn key_store_contract<F, Fut>(name: &str, store: Arc<dyn KeyStore>, body: F)
where
    F: FnOnce(Arc<dyn KeyStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    named_contract("KeyStore", name, async move {
        key_store::expect_empty(&store).await;
        body(store).await;
    })
    .await;
}

/// Runs the [`UserStore`] contract `name`: checks the store is empty, then runs `body`.
async fn user_store_contract<F, Fut>(name: &str, store: Arc<dyn UserStore>, body: F)
where
    F: FnOnce(Arc<dyn UserStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    named_contract("UserStore", name, async move {
        match store.list_users().await {
            Ok(users) if users.is_empty() => {}
            Ok(users) => panic!(
                "the store given to the contract is not empty: list_users returned {} user(s) \
                 before the contract wrote anything; {NOT_EMPTY_HINT}",
                users.len()
            ),
            Err(e) => panic!("list_users failed before the contract started: {e:?}"),
        }
        body(store).await;
    })
    .await;
}

/// Runs the [`TicketStore`](nexora_auth::TicketStore) contract `name`: checks the store is
/// empty, then runs `body`.
async fn ticket_store_contract<F, Fut>(
    name: &str,
    store: Arc<dyn nexora_auth::TicketStore>,
    body: F,
) where
    F: FnOnce(Arc<dyn nexora_auth::TicketStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    named_contract("TicketStore", name, async move {
        ticket_store::expect_empty(&store).await;
        body(store).await;
    })
    .await;
}

/// Runs the [`AuditStore`] contract `name`: checks the store is empty, then runs `body`.
async fn audit_store_contract<F, Fut>(name: &str, store: Arc<dyn AuditStore>, body: F)
where
    F: FnOnce(Arc<dyn AuditStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    named_contract("AuditStore", name, async move {
        audit_store::expect_empty(&store).await;
        body(store).await;
    })
    .await;
}

/// Runs the change-feed contract `name` of a [`KeyStore`]: checks the store is empty, attaches
/// a cache to it, then runs `body` with it and the writer.
async fn key_feed_contract<F, Fut>(
    name: &str,
    store: Arc<dyn KeyStore>,
    writer: Arc<dyn KeyStore>,
    body: F,
) where
    F: FnOnce(key_feed::Observed, Arc<dyn KeyStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    named_contract("KeyStore change feed", name, async move {
        key_store::expect_empty(&store).await;
        body(key_feed::Observed::attach(store), writer).await;
    })
    .await;
}

/// Runs the change-feed contract `name` of a [`UserStore`], as [`key_feed_contract`] does.
async fn user_feed_contract<F, Fut>(
    name: &str,
    store: Arc<dyn UserStore>,
    writer: Arc<dyn UserStore>,
    body: F,
) where
    F: FnOnce(user_feed::Observed, Arc<dyn UserStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    user_store_contract(name, store, |store| async move {
        body(user_feed::Observed::attach(store).await, writer).await;
    })
    .await;
}

// ----- helpers shared by the contracts ---------------------------------------------------------

/// The pepper version the kit's [`peppers`] use. Large on purpose: it must survive a store
/// that keeps it in a signed 32-bit column.
pub const PEPPER_VERSION: u32 = 3_000_000_007;

/// The kit's pepper ring (a fixed test pepper, version [`PEPPER_VERSION`]).
pub fn peppers() -> PepperRing {
    PepperRing::new(
        PEPPER_VERSION,
        SecretBytes::new(b"nexora-auth-testkit pepper, test only!".to_vec()),
    )
    // The pepper above is longer than MIN_PEPPER_LEN.
    .expect("valid test pepper")
}

/// `t` without its sub-microsecond part.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    // nanosecond() < 1e9, and so is the rounded-down value.
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("valid nanosecond")
}

/// The current UTC time, truncated to microseconds.
pub fn now() -> OffsetDateTime {
    truncate_to_micros(OffsetDateTime::now_utc())
}

/// The system clock truncated to microseconds (see the [crate docs](crate#timestamps)).
#[derive(Debug, Clone, Copy, Default)]
pub struct MicrosClock;

impl Clock for MicrosClock {
    fn now(&self) -> OffsetDateTime {
        now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock stopped at `at` (truncated to microseconds).
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(truncate_to_micros(at)))
    }

    /// A clock stopped at the current time, truncated to the whole second: JWT times are whole
    /// seconds, so a token issued now expires exactly `ttl` after this clock's reading.
    pub fn starting_now() -> Self {
        let now = OffsetDateTime::now_utc();
        // 0 is a valid nanosecond.
        Self::new(now.replace_nanosecond(0).expect("valid nanosecond"))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: time::Duration) {
        let mut at = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *at += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Scopes valid for tests.
pub fn scopes(list: &[&str]) -> Scopes {
    // Callers pass RFC 6749 scope tokens.
    Scopes::new(list.iter().copied()).expect("valid test scopes")
}

/// The kit's password policy: argon2id at m=256 KiB, t=1, p=1 — cheap enough that tests hash
/// and verify passwords by the hundred (within argon2's limits, so hashes are real ones).
pub fn fast_passwords() -> PasswordPolicy {
    PasswordPolicy::default().argon2_params(256, 1, 1)
}

/// [`Authenticator::builder`] over `keys` with the kit's [`peppers`], [`fast_passwords`] and a
/// [`MicrosClock`]: what a test changes from there (a user store, tokens, its own clock) it
/// sets on the builder.
pub fn authenticator_builder(keys: Arc<dyn KeyStore>) -> AuthenticatorBuilder {
    Authenticator::builder(keys, peppers())
        .password_policy(fast_passwords())
        .clock(Arc::new(MicrosClock))
}

/// An [`Authenticator`] over `keys` with the kit's peppers, a [`MicrosClock`] and cheap argon2
/// parameters ([`authenticator_builder`]).
pub fn authenticator(keys: Arc<dyn KeyStore>) -> Authenticator {
    authenticator_with(keys, None, Arc::new(MicrosClock))
}

/// Like [`authenticator`], with an optional user store (and then an HS256 token authority) and
/// a clock of your choice.
pub fn authenticator_with(
    keys: Arc<dyn KeyStore>,
    users: Option<Arc<dyn UserStore>>,
    clock: Arc<dyn Clock>,
) -> Authenticator {
    let mut builder = authenticator_builder(keys).clock(clock);
    if let Some(users) = users {
        let secret = SecretBytes::new(b"nexora-auth-testkit jwt secret, test only".to_vec());
        // A 40-byte HS256 secret and the default config are valid.
        let keys = JwtKeys::hs256(&secret).expect("valid test JWT secret");
        builder = builder.users(users).tokens(
            TokenAuthority::new(keys, JwtConfig::new("nexora", "nexora-api"))
                .expect("valid test JWT config"),
        );
    }
    // Cheap argon2 parameters within argon2's limits.
    builder.build().expect("valid test authenticator")
}

/// Every scope the kit's keys are created with.
pub const KIT_SCOPES: [&str; 4] = ["a", "b", "agents:read", "keys:manage"];

/// The application acting for `owner` (an internal principal holding [`KIT_SCOPES`]): every
/// key the kit creates is within its reach.
pub fn acting_as(owner: &OwnerId) -> Principal {
    Principal::new(owner.clone(), Credential::Internal, scopes(&KIT_SCOPES))
}

/// A fresh key and a record for it, as [`Authenticator::create_key`] would have written it
/// (digest under the kit's [`peppers`]), created at `created_at`.
pub fn new_record(owner: &str, name: &str, created_at: OffsetDateTime) -> (ApiKey, KeyRecord) {
    // The OS RNG does not fail in tests.
    let key = ApiKey::generate().expect("randomness");
    let record = KeyRecord {
        id: key.id(),
        owner: OwnerId::new(owner),
        name: name.to_owned(),
        scopes: scopes(&["agents:read"]),
        created_at: truncate_to_micros(created_at),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        display: key.display_fragment(),
        digest: peppers().digest(&key),
        previous: None,
        created_by: None,
        rate_limit: None,
        credits: None,
    };
    (key, record)
}

/// A record with a chosen id (for ordering and duplicate tests; its digest matches no key).
pub fn record_with_id(id: KeyId, owner: &str, created_at: OffsetDateTime) -> KeyRecord {
    let (_, mut record) = new_record(owner, "fixed id", created_at);
    record.id = id;
    record
}

/// A schema upgrade keeps what the old schema held: writes a key and a user through `store`,
/// runs `downgrade` (the store's SQL back to the older schema, with its migration record
/// removed), then `reopen` (the store built again, migrating forward), and checks that the
/// key and the user read back exactly as written — columns added since default to what a key
/// without a creator, a rate limit or credits, and an enabled user hold.
///
/// `downgrade` and `reopen` are futures built by the caller (they usually share the store's
/// pool); neither runs before this function awaits it.
pub async fn upgrade_keeps_records<S, R>(
    store: &S,
    downgrade: impl Future<Output = ()>,
    reopen: impl Future<Output = R>,
) where
    S: KeyStore + UserStore,
    R: KeyStore + UserStore,
{
    let (_, key) = new_record("alice", "old key", now());
    store
        .insert(&key)
        .await
        .expect("insert a key before the downgrade");
    let user = nexora_auth::UserRecord {
        id: OwnerId::new("alice"),
        email: "alice@example.com".into(),
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        scopes: scopes(&["agents:read"]),
        created_at: now(),
        disabled: false,
        rate_limit: None,
    };
    store
        .insert_user(&user)
        .await
        .expect("insert a user before the downgrade");
    downgrade.await;
    let upgraded = reopen.await;
    assert_eq!(
        upgraded.find(key.id).await.expect("find after the upgrade"),
        Some(key),
        "a key written under the old schema must read back unchanged after the upgrade"
    );
    assert_eq!(
        upgraded
            .find_user(&user.id)
            .await
            .expect("find_user after the upgrade"),
        Some(user),
        "a user written under the old schema must read back unchanged (and enabled)"
    );
}
