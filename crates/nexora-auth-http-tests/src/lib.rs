//! One HTTP behaviour table for the axum and actix-web crates, run over real HTTP.
//!
//! * [`Fixture::new`] builds an [`Authenticator`](nexora_auth::Authenticator) over in-memory stores with users, keys and
//!   tokens in every state; [`Fixture::with`] takes any [`Stores`] (SQLite, Postgres…) and any
//!   [`Signing`] ring (HS256, or ES256/EdDSA/RS256 signing beside HS256 verification). Both
//!   stores are wrapped in the testkit's `FlakyStore`: it counts every store call (one
//!   `StoreCalls` for both) and fails for one key (the 503 row).
//! * [`servers`] starts the same test application on either framework on `127.0.0.1:0`: the
//!   product's endpoints under `/api`, a WebSocket route `/ws/{chat_id}` that accepts
//!   `?token=`, and small routes that exercise the layer and the extractors.
//! * [`table`] lists the rows (request → expected status, body and headers), written one
//!   module per subject (`src/behaviour/rows/`) in the vocabulary of [`Probe`], [`Expect`] and
//!   [`BodyCheck`]; [`run_table`] sends every row to a base URL and returns the failures. The
//!   integration tests run it against both servers, so a new row runs on both.
//! * [`attacks`] is the attack catalogue: forged JWTs, hostile bearer headers and
//!   malformed keys, each with its exact expected answer, run the same way.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod behaviour;
mod fixture;

pub mod attacks;
pub mod servers;

pub use behaviour::{ANY_SECONDS, BodyCheck, BodyPredicate, Expect, Probe, Row, run_table, table};
pub use fixture::{ALICE_EMAIL, ALICE_PASSWORD, Fixture, JWT_SECRET, SIGNING_KID, Signing, Stores};
