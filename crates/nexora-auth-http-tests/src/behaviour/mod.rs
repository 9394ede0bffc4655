//! The behaviour table: every rule of the auth API as a row (request → expected status, body
//! and headers), and the runner that sends the rows over real HTTP.
//!
//! * `vocabulary` — [`Probe`], [`Expect`], [`BodyCheck`], [`Row`] and the constructors the
//!   rows are written with;
//! * one module of rows per subject (login, credentials, key management, routing, the policy,
//!   live users, derived tokens and tickets, the layer and extractors, WebSockets, the audit
//!   trail, leaked keys), joined in order by [`table`];
//! * [`run_table`] sends them and reports the failures.

mod rows;
mod runner;
mod vocabulary;

pub use runner::run_table;
pub use vocabulary::{ANY_SECONDS, BodyCheck, BodyPredicate, Expect, Probe, Row};

use crate::Fixture;

/// Every rule of the auth API as a row. Rows run in order against one fresh [`Fixture`] (the
/// rotate and revoke rows change it).
pub fn table(f: &Fixture) -> Vec<Row> {
    [
        rows::login::rows(),
        rows::credentials::rows(f),
        rows::key_management::rows(f),
        rows::routing::rows(f),
        rows::policy::rows(f),
        rows::live_users::rows(f),
        rows::derived_tokens::rows(f),
        rows::layer::rows(f),
        rows::websocket::rows(f),
        rows::audit::rows(f),
        rows::leaks::rows(f),
    ]
    .concat()
}
