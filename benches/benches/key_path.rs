//! The key path and JWT verification, each beside a bare baseline measured in the same run.
//!
//! Run: `cargo bench -p nexora-auth-benches --bench key_path`. After the measurements it prints
//! the ratios the targets are stated in:
//!
//! * authenticate (valid key, in-memory store) ÷ (bare HMAC-SHA256 over a key-sized input +
//!   one `HashMap` lookup) — target ≤ 1.5;
//! * malformed key rejection — target ≤ 100 ns, zero store calls (counted in the core's tests);
//! * authenticate + the in-process rate-limit check (`Authenticator::charge`) ÷ authenticate
//!   alone, on the same rate-limited key — target ≤ 1.10;
//! * `TokenAuthority::verify` ÷ bare `jsonwebtoken::decode` of the same token — target ≤ 1.15;
//!   also as the median of interleaved rounds, so that drift of a shared machine affects both
//!   sides alike.
//!
//! Instruction counts, which do not move with the machine's load: the same binary, given
//! `count <verify|decode> <N>` instead of criterion's arguments, verifies or decodes the bench
//! token `N` times for `valgrind --tool=callgrind`; `benches/callgrind_jwt_verify.sh` prints the
//! instructions per call of both and their ratio.

mod common;

use std::{hint::black_box, path::PathBuf, time::Instant};

use common::{
    HmacBaseline, authority, jwt_case, limited_authenticator, memory_authenticator, pepper_ring,
    runtime,
};
use criterion::Criterion;
use nexora_auth::{ApiKey, OwnerId, Scopes};

fn output_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion")
}

fn key_path(c: &mut Criterion) {
    let rt = runtime();
    let (auth, valid) = memory_authenticator(&rt);
    let valid_text = valid.expose().to_owned();
    let unknown = ApiKey::generate().unwrap().expose().to_owned();
    let mut malformed = valid_text.clone().into_bytes();
    malformed[40] = if malformed[40] == b'a' { b'b' } else { b'a' };
    let malformed = String::from_utf8(malformed).unwrap();

    let mut g = c.benchmark_group("key");
    g.bench_function("generate", |b| b.iter(|| ApiKey::generate().unwrap()));
    g.bench_function("parse", |b| {
        b.iter(|| ApiKey::parse(black_box(&valid_text)).unwrap())
    });
    let ring = pepper_ring();
    g.bench_function("digest", |b| b.iter(|| ring.digest(black_box(&valid))));

    let baseline = HmacBaseline::new();
    g.bench_function("baseline_hmac_plus_hashmap", |b| {
        b.iter(|| baseline.run(&valid_text))
    });
    g.bench_function("authenticate_valid", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.authenticate(black_box(&valid_text)).await.unwrap() })
    });
    g.bench_function("authenticate_unknown", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.authenticate(black_box(&unknown)).await.unwrap_err() })
    });
    g.bench_function("authenticate_malformed", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.authenticate(black_box(&malformed)).await.unwrap_err() })
    });
    g.finish();

    // The limit check: the same rate-limited key, authenticated alone and then charged.
    let (limited, key) = limited_authenticator(&rt);
    let key = key.expose().to_owned();
    let mut g = c.benchmark_group("limits");
    g.bench_function("authenticate_limited_key", |b| {
        b.to_async(&rt)
            .iter(|| async { limited.authenticate(black_box(&key)).await.unwrap() })
    });
    g.bench_function("authenticate_and_charge", |b| {
        b.to_async(&rt).iter(|| async {
            let principal = limited.authenticate(black_box(&key)).await.unwrap();
            limited.charge(&principal, 1).await.unwrap()
        })
    });
    g.finish();
}

fn jwt(c: &mut Criterion) {
    let authority = authority();
    let owner = OwnerId::new("bench-user");
    let scopes = Scopes::new(["agents:read", "keys:manage"]).unwrap();
    let case = jwt_case(&authority);
    let token = &case.token;

    let mut g = c.benchmark_group("jwt");
    g.bench_function("issue", |b| {
        b.iter(|| authority.issue(black_box(&owner), &scopes).unwrap())
    });
    g.bench_function("baseline_jsonwebtoken_decode", |b| {
        b.iter(|| case.decode(black_box(token)))
    });
    g.bench_function("verify", |b| {
        b.iter(|| case.uncached.verify(black_box(token)).unwrap())
    });
    // The default: a token seen before is answered from the verified-token cache.
    g.bench_function("verify_cached", |b| {
        b.iter(|| authority.verify(black_box(token)).unwrap())
    });
    g.finish();
}

fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let path = output_dir().join(group).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

#[allow(clippy::print_stdout, reason = "a benchmark report is printed output")]
fn print_ratios() {
    let ratio = |label: &str, (g1, a): (&str, &str), (g2, b): (&str, &str), target: &str| {
        if let (Some(x), Some(y)) = (mean_ns(g1, a), mean_ns(g2, b)) {
            println!(
                "{label:<46} {x:>9.1} ns / {y:>9.1} ns = {:.3}x  (target {target})",
                x / y
            );
        }
    };
    println!("\n== ratios (same run) ==");
    ratio(
        "authenticate valid / (HMAC + HashMap)",
        ("key", "authenticate_valid"),
        ("key", "baseline_hmac_plus_hashmap"),
        "<= 1.5x",
    );
    ratio(
        "authenticate unknown / (HMAC + HashMap)",
        ("key", "authenticate_unknown"),
        ("key", "baseline_hmac_plus_hashmap"),
        "-",
    );
    ratio(
        "authenticate + charge / authenticate (limited)",
        ("limits", "authenticate_and_charge"),
        ("limits", "authenticate_limited_key"),
        "<= 1.10x",
    );
    ratio(
        "jwt verify / jsonwebtoken::decode",
        ("jwt", "verify"),
        ("jwt", "baseline_jsonwebtoken_decode"),
        "<= 1.15x",
    );
    ratio(
        "jwt verify (cached) / jsonwebtoken::decode",
        ("jwt", "verify_cached"),
        ("jwt", "baseline_jsonwebtoken_decode"),
        "-",
    );
    if let Some(ns) = mean_ns("key", "authenticate_malformed") {
        println!(
            "{:<46} {ns:>9.1} ns  (target <= 100 ns)",
            "authenticate malformed"
        );
    }
}

/// Medians of time per call over rounds that alternate uncached `verify` and the bare
/// `jsonwebtoken::decode`, and their ratio.
#[allow(clippy::print_stdout, reason = "a benchmark report is printed output")]
fn interleaved_jwt_ratio() {
    const ROUNDS: usize = 21;
    const CALLS: u32 = 5_000;
    let case = jwt_case(&authority());
    let mut samples: [Vec<f64>; 2] = Default::default();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..CALLS {
            black_box(case.uncached.verify(black_box(&case.token)).expect("valid"));
        }
        samples[0].push(start.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS));
        let start = Instant::now();
        for _ in 0..CALLS {
            black_box(case.decode(black_box(&case.token)));
        }
        samples[1].push(start.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS));
    }
    let [verify, decode] = samples.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    println!(
        "{:<46} {verify:>9.1} ns / {decode:>9.1} ns = {:.3}x  (target <= 1.15x)",
        "jwt verify / decode, interleaved medians",
        verify / decode
    );
}

/// `count <verify|decode> <N>`: `N` uncached verifications of the bench token, or `N` bare
/// `jsonwebtoken::decode`s of it, for `valgrind --tool=callgrind`
/// (`benches/callgrind_jwt_verify.sh`).
fn count(args: &[String]) {
    let usage = "usage: key_path count <verify|decode> <N>";
    let [what, n] = args else {
        panic!("{usage}");
    };
    let n: u64 = n.parse().expect(usage);
    let case = jwt_case(&authority());
    match what.as_str() {
        "verify" => {
            for _ in 0..n {
                black_box(case.uncached.verify(black_box(&case.token)).expect("valid"));
            }
        }
        "decode" => {
            for _ in 0..n {
                black_box(case.decode(black_box(&case.token)));
            }
        }
        _ => panic!("{usage}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "count") {
        count(&args[1..]);
        return;
    }
    let mut c = Criterion::default()
        .output_directory(&output_dir())
        .configure_from_args();
    key_path(&mut c);
    jwt(&mut c);
    c.final_summary();
    print_ratios();
    // Not in criterion's test or list modes, which measure nothing.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        interleaved_jwt_ratio();
    }
}
