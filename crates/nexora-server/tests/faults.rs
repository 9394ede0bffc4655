//! Faults and concurrency against the real binary: real processes, real PostgreSQL and SQLite,
//! real HTTP and WebSocket clients.
//!
//! * a PostgreSQL outage under load fails closed (503 `{"detail"}`, never a 200 for a key,
//!   never a 401, never a crash) and heals within 5 seconds of the database's return;
//! * SIGKILL in the middle of concurrent key creation loses no answered key and leaves no
//!   half-created one;
//! * a key rotated 100 times under 64 concurrent users: the old key never works after the
//!   rotate response, the new one always does (SQLite and Postgres);
//! * two instances on one Postgres: a revocation through one is seen by the other within 2 s
//!   (the change feed), and so are a user's disabling, re-enabling, narrowing and deletion and
//!   a cascading revoke;
//! * 1,000 parallel creates with revocations (SQLite and Postgres), and 5,000 WebSocket
//!   upgrades with bad tokens with the server's file descriptors counted.
//!
//! Each test prints its measured figures (`FAULTS:` lines, visible with `--nocapture`).
//!
//! One module per scenario under `tests/faults/`, mounted below the way rustls mounts its
//! `tests/api/*.rs`: cargo builds `tests/*.rs` and `tests/*/main.rs` as test targets, so the
//! files in `tests/faults/` belong to this target only, and `mod common` still resolves to
//! `tests/common/mod.rs` without a `#[path]`.

mod common;

mod faults {
    mod outage;
    mod rotation;
    mod sigkill;
    mod storm;
    mod support;
    mod two_instances;
    mod upgrades;
}
