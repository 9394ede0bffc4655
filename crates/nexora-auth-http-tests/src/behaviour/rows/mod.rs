//! The rows of the behaviour table, one module per subject. [`super::table`] runs them in this
//! order: later subjects rely on what earlier rows did to the fixture (a rotated key, a locked
//! login, a cascade).

pub(super) mod audit;
pub(super) mod credentials;
pub(super) mod derived_tokens;
pub(super) mod key_management;
pub(super) mod layer;
pub(super) mod leaks;
pub(super) mod live_users;
pub(super) mod login;
pub(super) mod policy;
pub(super) mod routing;
pub(super) mod websocket;
