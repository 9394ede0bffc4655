//! The in-process rate-limit table passes the limit-backend contracts (the reference every
//! shared backend is held to).

nexora_auth_testkit::limit_backend_conformance!(async {
    nexora_auth_testkit::Fixture::new(nexora_auth::InProcessLimits::new())
});
