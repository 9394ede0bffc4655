//! The attack catalogue — an auth library is judged by what it refuses — as one table, sent
//! over real HTTP to both frameworks on every store.
//!
//! * [`attacks`] lists the rows for one [`Fixture`](crate::Fixture): forged and malformed JWTs
//!   (alg confusion, attacker keys, `jku`/`x5u`/`jwk`/`kid`/`crit`/`cty` headers, every odd
//!   claim), bearer-header parsing, malformed keys, and login emails no store can hold. A row
//!   is the exact request, its exact expected answer ([`Outcome`]), how many store calls it may
//!   cost, and the secrets its answer must not contain. Positive controls (tokens that must
//!   keep working) are rows too, so a server that refused everything would fail.
//! * [`run_attacks`] sends each row over a raw TCP connection — headers can then hold any
//!   byte and any size — and checks, beside the row's own expectation, what must hold for
//!   every row: never a 2xx or 101 unless the row is a positive control, never a 5xx, the
//!   token never echoed, and an answer within [`TIME_LIMIT`].
//! * [`identical_groups`] and [`run_identical`]: an unknown, a revoked, an expired and a forged
//!   key get byte-identical answers (status, every header but `Date`, body), and so do an
//!   unknown key id and another user's on the management endpoints.
//! * [`check_key_material`]: list, create and rotate never return a digest, nor the secret of
//!   any key other than the one just issued.
//! * [`Canary`]: the TCP listener `jku`/`x5u` headers point at; it must see no connection.
//! * [`panics`]: panics anywhere in the process (the servers run in-process).
//!
//! The rows are written one source module per subject under `catalogue/` (JWTs per signer of
//! the ring, JWTs once per ring, the bearer header, keys, logins), in the words of
//! `vocabulary.rs`; `forge.rs` signs tokens byte by byte and `wire.rs` is the raw client.

mod catalogue;
mod forge;
mod identical;
mod key_material;
mod observers;
mod runner;
mod vocabulary;
mod wire;

pub use catalogue::attacks;
pub use identical::{IdenticalGroup, identical_groups, run_identical};
pub use key_material::check_key_material;
pub use observers::{Canary, panics};
pub use runner::{TIME_LIMIT, run_attacks};
pub use vocabulary::{Attack, Outcome};
pub use wire::{RawRequest, RawResponse, send_raw};
