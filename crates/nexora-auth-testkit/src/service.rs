//! What the real-service helpers ([`crate::postgres`], [`crate::redis`]) share: where the
//! server is, whether it is required, and the loud skip when it cannot be reached.

use std::io::Write;

/// A test service: its name, the variables naming its URL and requiring it, its default URL
/// and how to start it.
pub(crate) struct Service {
    pub(crate) name: &'static str,
    pub(crate) url_env: &'static str,
    pub(crate) default_url: &'static str,
    pub(crate) require_env: &'static str,
    pub(crate) start_hint: &'static str,
}

impl Service {
    /// The test server's URL: the URL variable, or the default.
    pub(crate) fn url(&self) -> String {
        std::env::var(self.url_env).unwrap_or_else(|_| self.default_url.to_owned())
    }

    /// Whether an unreachable server must fail the tests (the require variable is `1`).
    pub(crate) fn required(&self) -> bool {
        std::env::var(self.require_env).is_ok_and(|v| v == "1")
    }

    /// The server at `server` cannot be reached: a panic when it is required, else `None`
    /// after a `SKIPPED` line on the process's stderr.
    pub(crate) fn unreachable<T>(&self, server: &str, error: &str) -> Option<T> {
        let Self {
            name,
            url_env,
            require_env,
            start_hint,
            ..
        } = self;
        if self.required() {
            panic!("{name} not reachable at {server} and {require_env}=1: {error}");
        }
        // Straight to the process's stderr: the test harness captures `eprintln!` of passing
        // tests, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: {name} not reachable at {server} ({error}).\n\
             *** Start it ({start_hint}) or set {url_env}; set {require_env}=1 to fail instead \
             of skipping.\n"
        );
        None
    }
}
