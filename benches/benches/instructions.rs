//! Instructions per call of the key path and of JWT verification, each beside the bare baseline
//! that `key_path` times, counted by callgrind through gungraun. Instruction counts do not move
//! with the load of a shared machine, so these are the figures to compare across commits.
//!
//! Needs valgrind and the gungraun runner of exactly the `gungraun` version in the root
//! `Cargo.toml`:
//!
//! ```text
//! apt-get install -y valgrind
//! cargo install --locked gungraun-runner --version 0.20.0
//! cargo bench -p nexora-auth-benches --bench instructions
//! ```
//!
//! Each benchmark is one call; its setup (10,000 keys in the store, the token, one warm-up
//! call) runs before callgrind starts counting, so the `Instructions` line of each is the cost
//! of one call. `benches/instructions.sh` runs the bench and prints those counts and the ratios
//! the targets are stated in (see `key_path`):
//!
//! * `authenticate::valid_key` ÷ `baseline::hmac_plus_hashmap` (HMAC-SHA256 keyed from
//!   scratch over a key-sized input + one lookup in a 10,000-entry `HashMap`);
//! * `verify::uncached` ÷ `baseline::jsonwebtoken_decode` (the same token and validation).
//!
//! `cargo test` never needs valgrind or the runner: it does not build bench targets, and
//! `cargo test --benches` (or `--all-targets`) runs this one as a no-op.
//!
//! To compare a change with the code before it, save a baseline on the old commit and name it
//! on the new one; gungraun then prints the difference of every count:
//!
//! ```text
//! cargo bench -p nexora-auth-benches --bench instructions -- --save-baseline=before
//! cargo bench -p nexora-auth-benches --bench instructions -- --baseline=before
//! ```
//!
//! Callgrind emulates the CPU: it offers no SHA extensions, so SHA-256 runs the portable code
//! here on both sides of a ratio, and the absolute counts are not those of a native run.

#![allow(
    unused_qualifications,
    reason = "gungraun's macros name each benchmark function by its full path"
)]
#![allow(
    missing_docs,
    reason = "gungraun's macros generate undocumented public modules"
)]

mod common;

use std::{
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
};

use common::{HmacBaseline, JwtCase, authority, jwt_case, memory_authenticator, runtime};
use gungraun::{library_benchmark, library_benchmark_group, main};
use nexora_auth::{ApiKey, Authenticator};

/// Polls `future` once and returns its output. Over the in-memory store `authenticate` never
/// waits, so no executor is needed, and none is counted in the call.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory path waited; count it inside `Runtime::block_on`"),
    }
}

/// An authenticator over the in-memory store and the key texts to present to it. Leaked: the
/// process ends after the one call, and freeing 10,000 keys would add nothing to the figure.
struct KeyCase {
    auth: Authenticator,
    valid: String,
    unknown: String,
}

fn key_case() -> &'static KeyCase {
    let (auth, valid) = memory_authenticator(&runtime());
    let case = KeyCase {
        auth,
        valid: valid.expose().to_owned(),
        unknown: ApiKey::generate()
            .expect("the OS random source works")
            .expose()
            .to_owned(),
    };
    // Whatever the first call sets up lazily is not part of the cost of a call.
    ready(case.auth.authenticate(&case.valid)).expect("the key was just created");
    ready(case.auth.authenticate(&case.unknown)).expect_err("the key is not in the store");
    Box::leak(Box::new(case))
}

#[library_benchmark]
#[bench::memory_store(key_case())]
fn valid_key(case: &'static KeyCase) {
    black_box(ready(case.auth.authenticate(black_box(&case.valid))).expect("valid"));
}

#[library_benchmark]
#[bench::memory_store(key_case())]
fn unknown_key(case: &'static KeyCase) {
    black_box(ready(case.auth.authenticate(black_box(&case.unknown))).expect_err("unknown"));
}

/// The key path with the in-process rate-limit check, beside the same key authenticated alone.
struct LimitedCase {
    auth: Authenticator,
    key: String,
}

fn limited_case() -> &'static LimitedCase {
    let (auth, key) = common::limited_authenticator(&runtime());
    let case = LimitedCase {
        auth,
        key: key.expose().to_owned(),
    };
    let principal = ready(case.auth.authenticate(&case.key)).expect("valid");
    ready(case.auth.charge(&principal, 1)).expect("within the limit");
    Box::leak(Box::new(case))
}

#[library_benchmark]
#[bench::memory_store(limited_case())]
fn limited_key(case: &'static LimitedCase) {
    black_box(ready(case.auth.authenticate(black_box(&case.key))).expect("valid"));
}

#[library_benchmark]
#[bench::memory_store(limited_case())]
fn limited_key_charged(case: &'static LimitedCase) {
    let principal = ready(case.auth.authenticate(black_box(&case.key))).expect("valid");
    black_box(ready(case.auth.charge(&principal, 1)).expect("within the limit"));
}

library_benchmark_group!(
    name = authenticate,
    benchmarks = [valid_key, unknown_key, limited_key, limited_key_charged]
);

/// The JWT case, with the default (caching) authority beside the uncached one.
struct TokenCase {
    jwt: JwtCase,
    cached: nexora_auth::TokenAuthority,
}

fn token_case() -> &'static TokenCase {
    let cached = authority();
    let case = TokenCase {
        jwt: jwt_case(&cached),
        cached,
    };
    case.jwt.uncached.verify(&case.jwt.token).expect("valid");
    case.cached.verify(&case.jwt.token).expect("valid");
    case.jwt.decode(&case.jwt.token);
    Box::leak(Box::new(case))
}

#[library_benchmark]
#[bench::hs256(token_case())]
fn uncached(case: &'static TokenCase) {
    black_box(
        case.jwt
            .uncached
            .verify(black_box(&case.jwt.token))
            .expect("valid"),
    );
}

// The default authority: a token seen before is answered from the verified-token cache. (A
// plain comment: gungraun's attribute takes no doc comment on the function.)
#[library_benchmark]
#[bench::hs256(token_case())]
fn cached(case: &'static TokenCase) {
    black_box(
        case.cached
            .verify(black_box(&case.jwt.token))
            .expect("valid"),
    );
}

library_benchmark_group!(name = verify, benchmarks = [uncached, cached]);

struct BaselineCase {
    hmac: HmacBaseline,
    key: String,
    jwt: JwtCase,
}

fn baseline_case() -> &'static BaselineCase {
    let case = BaselineCase {
        hmac: HmacBaseline::new(),
        key: ApiKey::generate()
            .expect("the OS random source works")
            .expose()
            .to_owned(),
        jwt: jwt_case(&authority()),
    };
    black_box(case.hmac.run(&case.key));
    case.jwt.decode(&case.jwt.token);
    Box::leak(Box::new(case))
}

#[library_benchmark]
#[bench::key_sized_input(baseline_case())]
fn hmac_plus_hashmap(case: &'static BaselineCase) {
    black_box(case.hmac.run(black_box(&case.key)));
}

#[library_benchmark]
#[bench::hs256(baseline_case())]
fn jsonwebtoken_decode(case: &'static BaselineCase) {
    black_box(case.jwt.decode(black_box(&case.jwt.token)));
}

library_benchmark_group!(
    name = baseline,
    benchmarks = [hmac_plus_hashmap, jsonwebtoken_decode]
);

/// Runs gungraun's harness under `cargo bench` (which passes `--bench`) and when its runner
/// calls back (`--gungraun-run`). `cargo test --benches` and `--all-targets` run bench targets
/// with neither, and there is nothing to test without valgrind: say so and pass.
fn main() {
    let counting = std::env::args()
        .skip(1)
        .any(|arg| arg == "--bench" || arg == "--gungraun-run");
    if !counting {
        #[allow(clippy::print_stderr, reason = "tells why nothing ran")]
        {
            eprintln!(
                "instructions: counted only under `cargo bench` (valgrind + gungraun-runner)"
            );
        }
        return;
    }
    // The macro defines its own `main` (with the harness's argument handling) as an item of
    // this block, which the call below runs.
    main!(library_benchmark_groups = authenticate, verify, baseline);
    main();
}
