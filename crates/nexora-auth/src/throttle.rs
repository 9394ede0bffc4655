//! Login throttling: per email and per client address, whether or not the account exists.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use dashmap::DashMap;

use crate::AuthError;

/// Limits on failed logins. Every default is on its setter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ThrottlePolicy {
    per_email: u32,
    per_client: u32,
    window: Duration,
    lockout: Duration,
    max_tracked: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            per_email: 5,
            per_client: 20,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
            max_tracked: 100_000,
        }
    }
}

impl ThrottlePolicy {
    /// Failed attempts allowed per email (case-insensitively, existing or not) within the
    /// window before it is locked. Defaults to 5.
    pub fn per_email(mut self, n: u32) -> Self {
        self.per_email = n.max(1);
        self
    }

    /// Failed attempts allowed per client address within the window. Defaults to 20.
    pub fn per_client(mut self, n: u32) -> Self {
        self.per_client = n.max(1);
        self
    }

    /// The window failures are counted in. Defaults to 15 minutes.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long a locked email or address is refused (even with the right password).
    /// Defaults to 15 minutes.
    pub fn lockout(mut self, lockout: Duration) -> Self {
        self.lockout = lockout;
        self
    }

    /// Most emails/addresses tracked at once; beyond it, expired entries are swept. Defaults
    /// to 100,000 (bounded memory under a spraying attack).
    pub fn max_tracked(mut self, n: usize) -> Self {
        self.max_tracked = n.max(1);
        self
    }
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Email(String),
    Client(IpAddr),
}

/// Counts failed logins and refuses locked subjects with [`AuthError::RateLimited`].
#[derive(Debug)]
pub(crate) struct LoginThrottle {
    policy: ThrottlePolicy,
    counters: DashMap<Subject, Counter>,
    sweeps: AtomicU64,
}

impl LoginThrottle {
    pub(crate) fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            counters: DashMap::new(),
            sweeps: AtomicU64::new(0),
        }
    }

    fn subjects(email: &str, client: Option<IpAddr>) -> impl Iterator<Item = Subject> {
        std::iter::once(Subject::Email(email.to_owned())).chain(client.map(Subject::Client))
    }

    /// Refuses if the email or the client is locked.
    pub(crate) fn check(&self, email: &str, client: Option<IpAddr>) -> Result<(), AuthError> {
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        for subject in Self::subjects(email, client) {
            if let Some(c) = self.counters.get(&subject)
                && let Some(until) = c.locked_until.filter(|&u| u > now)
            {
                wait = wait.max(until - now);
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(AuthError::RateLimited {
                // Rounded up, and never 0 (clients would retry at once).
                retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
            })
        }
    }

    /// Records a failed attempt against the email and the client.
    pub(crate) fn failed(&self, email: &str, client: Option<IpAddr>) {
        let now = Instant::now();
        if self.counters.len() >= self.policy.max_tracked {
            self.sweep(now);
        }
        for subject in Self::subjects(email, client) {
            let limit = match subject {
                Subject::Email(_) => self.policy.per_email,
                Subject::Client(_) => self.policy.per_client,
            };
            let mut c = self.counters.entry(subject).or_insert(Counter {
                failures: 0,
                window_start: now,
                locked_until: None,
            });
            if now.duration_since(c.window_start) > self.policy.window
                || c.locked_until.is_some_and(|u| u <= now)
            {
                *c = Counter {
                    failures: 0,
                    window_start: now,
                    locked_until: None,
                };
            }
            c.failures = c.failures.saturating_add(1);
            if c.failures >= limit {
                c.locked_until = Some(now + self.policy.lockout);
            }
        }
    }

    /// A successful login clears the email's failures (not the client's: one good account
    /// must not launder a spraying client).
    pub(crate) fn succeeded(&self, email: &str) {
        self.counters.remove(&Subject::Email(email.to_owned()));
    }

    fn sweep(&self, now: Instant) {
        self.sweeps.fetch_add(1, Ordering::Relaxed);
        let policy = &self.policy;
        self.counters.retain(|_, c| match c.locked_until {
            Some(until) => until > now,
            None => now.duration_since(c.window_start) <= policy.window,
        });
        // Still full of live entries (a spray wider than max_tracked): drop unlocked ones.
        if self.counters.len() >= policy.max_tracked {
            self.counters.retain(|_, c| c.locked_until.is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_and_unlocks_after_lockout() {
        let t = LoginThrottle::new(
            ThrottlePolicy::default()
                .per_email(3)
                .lockout(Duration::from_millis(200)),
        );
        for _ in 0..2 {
            t.failed("a@x", None);
            assert!(t.check("a@x", None).is_ok());
        }
        t.failed("a@x", None);
        let err = t.check("a@x", None).unwrap_err();
        assert!(matches!(
            err,
            AuthError::RateLimited {
                retry_after_secs: 1
            }
        ));
        assert!(t.check("b@x", None).is_ok(), "other emails are unaffected");
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.check("a@x", None).is_ok());
    }

    #[test]
    fn client_address_is_limited_across_emails() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = LoginThrottle::new(ThrottlePolicy::default().per_client(4));
        for i in 0..4 {
            t.failed(&format!("user{i}@x"), Some(ip));
        }
        assert!(t.check("fresh@x", Some(ip)).is_err());
        assert!(
            t.check("fresh@x", Some("192.0.2.2".parse().unwrap()))
                .is_ok()
        );
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::new(ThrottlePolicy::default().max_tracked(100).per_email(1000));
        for i in 0..10_000 {
            t.failed(&format!("spray{i}@x"), None);
        }
        assert!(t.counters.len() <= 101, "{}", t.counters.len());
    }
}
