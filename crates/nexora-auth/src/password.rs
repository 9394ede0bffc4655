//! Password hashing with argon2id, off the async executor and bounded in concurrency.
//!
//! # Why a login flood does not slow down key and token requests
//!
//! An argon2id run at the default cost is tens of milliseconds of one core and 19 MiB of
//! memory; a key or JWT request is tens of microseconds. Four things keep the first from
//! crowding out the second (measured with the server's `login_flood` test on a 2-core machine
//! running its own load generator; the figures are in the commit history):
//!
//! * **Off the executor.** Hashing never runs on an async worker thread, so it never delays
//!   the tasks queued behind it there.
//! * **Dedicated threads, fewer than the cores.** [`PasswordPolicy::max_concurrent_hashes`]
//!   threads (half the CPUs by default) do all the hashing, fed by a queue. Not tokio's
//!   blocking pool: that pool grows to hundreds of threads, and each thread that ran an
//!   argon2 job keeps its own malloc arena with a 19 MiB block in it (hundreds of MiB of RSS
//!   under a flood), and a thread's priority cannot be lowered there without leaking into
//!   unrelated blocking work.
//! * **The lowest OS priority** for those threads ([`PasswordPolicy::low_priority_hashing`]):
//!   at nice 19 a hashing thread weighs 15 against a normal thread's 1024 in Linux's
//!   scheduler, so hashing runs on what the other work leaves idle, and a flood costs logins
//!   latency, not the API. A worker thread that wakes up on the hashing thread's core mostly
//!   preempts the hash at once; now and then the scheduler (EEVDF) first lets the hash finish
//!   the time slice it was given, so that request waits up to a scheduler tick (a few ms).
//!   That is the whole of the p99's margin over idle during a flood: 1.9-3.5x after a warm-up
//!   flood on a 2-core machine in 2026-11, asserted within 4x by `nexora-server`'s
//!   `tests/login_flood.rs`.
//!   `SCHED_IDLE` did not do better (measured; the server test `login_flood` says how).
//! * **A bounded queue** ([`PasswordPolicy::max_queued_hashes`]): beyond it a login is
//!   answered 429 at once, so memory and login latency stay bounded.

use std::{
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Mutex, PoisonError, mpsc},
};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, Version};

use crate::Unavailable;
use crate::{AuthError, ConfigError, Field, InvalidInput, Problem, SecretString};

/// Password rules and argon2id cost. Every default is on its setter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PasswordPolicy {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    min_len: usize,
    max_len: usize,
    max_concurrent_hashes: usize,
    max_queued_hashes: usize,
    low_priority_hashing: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            min_len: 8,
            max_len: 1024,
            max_concurrent_hashes: std::thread::available_parallelism()
                .map_or(1, |n| (n.get() / 2).max(1)),
            max_queued_hashes: 64,
            low_priority_hashing: true,
        }
    }
}

impl PasswordPolicy {
    /// argon2id cost: memory in KiB, iterations, lanes. Defaults to OWASP's
    /// m=19456 (19 MiB), t=2, p=1.
    pub fn argon2_params(mut self, memory_kib: u32, iterations: u32, parallelism: u32) -> Self {
        self.memory_kib = memory_kib;
        self.iterations = iterations;
        self.parallelism = parallelism;
        self
    }

    /// Shortest password accepted at registration, in characters. Defaults to 8.
    pub fn min_len(mut self, min: usize) -> Self {
        self.min_len = min;
        self
    }

    /// Longest password accepted, in bytes. Longer ones are refused at registration, and at
    /// login never match but still cost one verification of a short placeholder (argon2 is
    /// never fed the long password itself). Defaults to 1024.
    pub fn max_len(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }

    /// How many hashes may run at once: the number of hashing threads; the rest wait.
    /// Defaults to half the CPUs (at least one), so a login flood leaves cores for requests
    /// authenticated by key or token.
    pub fn max_concurrent_hashes(mut self, n: usize) -> Self {
        self.max_concurrent_hashes = n.max(1);
        self
    }

    /// How many hash requests may wait for a slot; beyond that a login is answered 429 at
    /// once, so memory and latency stay bounded under a flood. Defaults to 64.
    pub fn max_queued_hashes(mut self, n: usize) -> Self {
        self.max_queued_hashes = n;
        self
    }

    /// Whether the hashing threads run at the lowest OS priority (nice 19 on Unix, the lowest
    /// thread priority on Windows), so that they yield the CPU to everything else at once
    /// (see the module docs). Defaults to `true`. Where the OS refuses, hashing runs at
    /// normal priority and a warning is logged once per thread.
    pub fn low_priority_hashing(mut self, low: bool) -> Self {
        self.low_priority_hashing = low;
        self
    }

    /// The longest accepted password in bytes.
    pub fn max_password_len(&self) -> usize {
        self.max_len
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    /// Whether the password matched.
    pub matches: bool,
    /// Whether the stored hash uses other parameters than the policy and should be replaced.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords on [`PasswordPolicy::max_concurrent_hashes`] dedicated
/// threads of low priority (see the module docs). The threads end when the last clone of the
/// hasher is dropped and the queue is empty.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    policy: PasswordPolicy,
    params: Params,
    /// The hashing threads' queue.
    jobs: mpsc::Sender<Job>,
    queued: std::sync::atomic::AtomicUsize,
    /// A real hash of a random password, verified against when the email is unknown so that
    /// both cases cost one argon2 run.
    dummy_hash: String,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Builds a hasher. Computes the dummy hash once (one argon2 run, synchronously).
    pub fn new(policy: PasswordPolicy) -> Result<Self, ConfigError> {
        let params = Params::new(
            policy.memory_kib,
            policy.iterations,
            policy.parallelism,
            None,
        )
        .map_err(|_| ConfigError::Invalid("argon2 parameters out of range"))?;
        if policy.min_len > policy.max_len {
            return Err(ConfigError::Invalid("password min_len exceeds max_len"));
        }
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let dummy_hash = argon
            .hash_password(uuid::Uuid::new_v4().as_bytes())
            .map_err(|_| ConfigError::Invalid("argon2 self-test failed"))?
            .to_string();
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..policy.max_concurrent_hashes {
            let queue = Arc::clone(&queue);
            let low = policy.low_priority_hashing;
            std::thread::Builder::new()
                .name(format!("nexora-argon2-{n}"))
                .spawn(move || hashing_thread(&queue, low))
                .map_err(|_| ConfigError::Invalid("cannot start the password hashing threads"))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                policy,
                params,
                jobs,
                queued: Default::default(),
                dummy_hash,
            }),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &PasswordPolicy {
        &self.inner.policy
    }

    /// Checks registration rules (length) without hashing.
    pub fn check_new_password(&self, password: &SecretString) -> Result<(), AuthError> {
        let policy = &self.inner.policy;
        if password.len() > policy.max_len {
            return Err(InvalidInput::new(
                Field::Password,
                Problem::TooLong {
                    max: policy.max_len,
                },
            )
            .into());
        }
        if password.expose().chars().count() < policy.min_len {
            return Err(InvalidInput::new(
                Field::Password,
                Problem::TooShort {
                    min: policy.min_len,
                },
            )
            .into());
        }
        Ok(())
    }

    /// Hashes a new password into an argon2id PHC string.
    pub async fn hash(&self, password: &SecretString) -> Result<String, AuthError> {
        self.check_new_password(password)?;
        let ticket = self.admit()?;
        let password = password.clone();
        self.run_blocking(ticket, move |inner| {
            Argon2::new(Algorithm::Argon2id, Version::V0x13, inner.params.clone())
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| AuthError::Unavailable(Unavailable::Hashing(e.to_string())))
        })
        .await
    }

    /// Verifies `password` against `phc`, or against the dummy hash when `phc` is `None`
    /// (unknown user), so both paths take one argon2 run. A password over the length limit
    /// matches nothing and takes one argon2 run too (against the dummy hash), so it costs an
    /// attacker what any wrong password costs.
    pub async fn verify(
        &self,
        password: &SecretString,
        phc: Option<&str>,
    ) -> Result<PasswordCheck, AuthError> {
        let ticket = self.admit()?;
        self.verify_admitted(ticket, password, phc).await
    }

    /// Takes a place in the hashing queue, or answers [`AuthError::RateLimited`] at once when
    /// [`PasswordPolicy::max_queued_hashes`] are already waiting. Take it *before* other work
    /// (a user lookup) so a login flood is refused without touching the store.
    pub fn admit(&self) -> Result<HashTicket, AuthError> {
        use std::sync::atomic::Ordering;
        let ahead = self.inner.queued.fetch_add(1, Ordering::AcqRel);
        let ticket = HashTicket {
            inner: Arc::clone(&self.inner),
        };
        if ahead >= self.inner.policy.max_queued_hashes {
            return Err(AuthError::RateLimited {
                retry_after_secs: 1,
            });
        }
        Ok(ticket)
    }

    /// [`PasswordHasher::verify`] with a place already taken by [`PasswordHasher::admit`].
    pub async fn verify_admitted(
        &self,
        ticket: HashTicket,
        password: &SecretString,
        phc: Option<&str>,
    ) -> Result<PasswordCheck, AuthError> {
        // A password over the limit matches nothing, but costs a full verification all the
        // same (of an empty password against the dummy hash): otherwise it would be a free
        // way to create throttle entries and fill the table at no hashing cost.
        let over_long = password.len() > self.inner.policy.max_len;
        let (phc, password) = if over_long {
            (None, SecretString::from(""))
        } else {
            (phc, password.clone())
        };
        let known = phc.is_some();
        let phc = phc.map(str::to_owned);
        self.run_blocking(ticket, move |inner| {
            let target = phc.as_deref().unwrap_or(&inner.dummy_hash);
            let Ok(parsed) = PasswordHash::new(target) else {
                // A corrupt stored hash: no password matches it.
                return Ok(PasswordCheck {
                    matches: false,
                    needs_rehash: false,
                });
            };
            let matches =
                verify_in_thread_memory(password.expose().as_bytes(), &parsed, &inner.params)
                    && known;
            let needs_rehash = matches && !uses_params(&parsed, &inner.params);
            Ok(PasswordCheck {
                matches,
                needs_rehash,
            })
        })
        .await
    }

    async fn run_blocking<T, F>(&self, ticket: HashTicket, work: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, AuthError> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let job: Job = Box::new(move || {
            // Running now, no longer waiting.
            drop(ticket);
            // The request went away while queued: nobody wants the answer.
            if done.is_closed() {
                return;
            }
            let _ = done.send(work(&inner));
        });
        self.inner
            .jobs
            .send(job)
            .map_err(|_| AuthError::Unavailable(Unavailable::HashingPool))?;
        result
            .await
            .map_err(|_| AuthError::Unavailable(Unavailable::HashingPool))?
    }
}

thread_local! {
    /// A hashing thread's argon2 memory, grown once to the cost it verifies and reused by every
    /// verification after (see [`verify_in_thread_memory`]).
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Verifies `password` against `hash` in the calling thread's own argon2 memory. Allocating
/// the memory per verification (19 MiB at the default cost) lets the allocator keep the freed
/// buffers in per-thread arenas: a flood of hashed logins grew the server by ~100 MB. Reused,
/// a hashing thread holds one argon2 memory for its whole life, so hashing memory is bounded by
/// `max_concurrent_hashes × m_cost`. The memory is zeroized after each use (it holds
/// password-derived state). A stored hash with a cost over 4 × the policy's (a hash from a
/// costlier past policy) is verified in memory of its own instead, so nothing it says can grow
/// a thread's memory for good.
fn verify_in_thread_memory(password: &[u8], hash: &PasswordHash, policy: &Params) -> bool {
    use zeroize::Zeroize;
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let needed = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let hashed = if needed > policy.block_count().saturating_mul(4) {
        argon.hash_password_into(password, salt, out).is_ok()
    } else {
        ARGON2_MEMORY.with_borrow_mut(|memory| {
            if memory.len() < needed {
                memory.resize(needed, argon2::Block::default());
            }
            let hashed = argon
                .hash_password_into_with_memory(password, salt, out, &mut memory[..needed])
                .is_ok();
            memory[..needed].iter_mut().for_each(Zeroize::zeroize);
            hashed
        })
    };
    let matches = hashed && bool::from(subtle::ConstantTimeEq::ct_eq(&*out, expected.as_bytes()));
    out.zeroize();
    matches
}

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// A hashing thread: lowers its own priority, then runs jobs until every sender is gone.
fn hashing_thread(queue: &Mutex<mpsc::Receiver<Job>>, low_priority: bool) {
    if low_priority
        && let Err(e) =
            thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::warn!(error = %e, "cannot lower the priority of a password hashing thread");
    }
    loop {
        // The lock is held only to take one job; a poisoned lock still holds a valid queue.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A panicking job (none is expected) drops its answer channel, so its caller gets an
        // error; the thread lives on for the next job.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// A place in the password-hashing queue (see [`PasswordHasher::admit`]); given back on drop.
#[must_use = "a ticket is given back when dropped"]
pub struct HashTicket {
    inner: Arc<Inner>,
}

impl Drop for HashTicket {
    fn drop(&mut self) {
        self.inner
            .queued
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl fmt::Debug for HashTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashTicket")
    }
}

fn uses_params(hash: &PasswordHash, params: &Params) -> bool {
    hash.algorithm.as_str() == "argon2id"
        && Params::try_from(hash).is_ok_and(|p| {
            p.m_cost() == params.m_cost()
                && p.t_cost() == params.t_cost()
                && p.p_cost() == params.p_cost()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phc(password: &[u8], memory_kib: u32, algorithm: Algorithm) -> String {
        let params = Params::new(memory_kib, 1, 1, None).unwrap();
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password)
            .unwrap()
            .to_string()
    }

    /// The thread-memory verifier agrees with argon2's own verifier: right and wrong passwords,
    /// other algorithms, costs below and far above the policy's (its own memory), and the same
    /// thread verifying at several costs in turn.
    #[test]
    fn verifying_in_thread_memory_agrees_with_argon2() {
        let policy = Params::new(256, 1, 1, None).unwrap();
        for (memory, algorithm) in [
            (256, Algorithm::Argon2id),
            (64, Algorithm::Argon2id),
            (512, Algorithm::Argon2i),
            (4096, Algorithm::Argon2id),
            (256, Algorithm::Argon2d),
        ] {
            let stored = phc(b"the password", memory, algorithm);
            let parsed = PasswordHash::new(&stored).unwrap();
            assert!(
                verify_in_thread_memory(b"the password", &parsed, &policy),
                "{stored}"
            );
            assert!(
                !verify_in_thread_memory(b"the passworD", &parsed, &policy),
                "{stored}"
            );
            assert!(!verify_in_thread_memory(b"", &parsed, &policy), "{stored}");
        }
        // Memory grew to the largest cost within 4x the policy (1024 blocks), never to 4096.
        let held = ARGON2_MEMORY.with_borrow(Vec::len);
        assert_eq!(held, 512, "the thread's argon2 memory");
        let no_salt = PasswordHash::new("$argon2id$v=19$m=256,t=1,p=1").unwrap();
        assert!(!verify_in_thread_memory(b"x", &no_salt, &policy));
    }

    fn fast() -> PasswordHasher {
        PasswordHasher::new(PasswordPolicy::default().argon2_params(256, 1, 1)).unwrap()
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = fast();
        let pw = SecretString::from("correct horse battery");
        let phc = h.hash(&pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
        let ok = h.verify(&pw, Some(&phc)).await.unwrap();
        assert_eq!(
            ok,
            PasswordCheck {
                matches: true,
                needs_rehash: false
            }
        );
        let bad = h
            .verify(&SecretString::from("wrong horse battery"), Some(&phc))
            .await
            .unwrap();
        assert!(!bad.matches);
        let unknown = h.verify(&pw, None).await.unwrap();
        assert!(!unknown.matches);
    }

    #[tokio::test]
    async fn default_policy_is_owasp_argon2id() {
        let h = PasswordHasher::new(PasswordPolicy::default()).unwrap();
        let phc = h
            .hash(&SecretString::from("a long enough password"))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    }

    #[tokio::test]
    async fn rehash_when_params_change_and_long_passwords_are_not_truncated() {
        let old = fast();
        let pw = SecretString::new("x".repeat(127) + "y");
        let phc = old.hash(&pw).await.unwrap();
        let new = PasswordHasher::new(PasswordPolicy::default().argon2_params(512, 1, 1)).unwrap();
        assert_eq!(
            new.verify(&pw, Some(&phc)).await.unwrap(),
            PasswordCheck {
                matches: true,
                needs_rehash: true
            }
        );
        let truncated = SecretString::new("x".repeat(127) + "z");
        assert!(!new.verify(&truncated, Some(&phc)).await.unwrap().matches);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_admission() {
        let h = PasswordHasher::new(
            PasswordPolicy::default()
                .argon2_params(256, 1, 1)
                .max_queued_hashes(2),
        )
        .unwrap();
        let a = h.admit().unwrap();
        let b = h.admit().unwrap();
        assert!(matches!(h.admit(), Err(AuthError::RateLimited { .. })));
        drop(a);
        let c = h.admit().unwrap();
        let pw = SecretString::from("password!");
        assert!(!h.verify_admitted(c, &pw, None).await.unwrap().matches);
        drop(b);
        assert!(h.admit().is_ok(), "tickets are given back");
    }

    #[tokio::test]
    async fn length_limits() {
        let h = fast();
        assert!(matches!(
            h.hash(&SecretString::from("short")).await,
            Err(AuthError::InvalidInput(_))
        ));
        let huge = SecretString::new("p".repeat(1 << 20));
        assert!(matches!(
            h.hash(&huge).await,
            Err(AuthError::InvalidInput(_))
        ));
        assert!(!h.verify(&huge, None).await.unwrap().matches);
    }
}
