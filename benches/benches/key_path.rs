//! The key path and JWT verification, each beside a bare baseline measured in the same run.
//!
//! Run: `cargo bench -p nexora-auth-benches --bench key_path`. After the measurements it prints
//! the ratios the targets are stated in:
//!
//! * authenticate (valid key, in-memory store) ÷ (bare HMAC-SHA256 over a key-sized input +
//!   one `HashMap` lookup) — target ≤ 1.5;
//! * malformed key rejection — target ≤ 100 ns, zero store calls (counted in the core's tests);
//! * `TokenAuthority::verify` ÷ bare `jsonwebtoken::decode` of the same token — target ≤ 1.15;
//!   also as the median of interleaved rounds, so that drift of a shared machine affects both
//!   sides alike.
//!
//! Instruction counts, which do not move with the machine's load: the same binary, given
//! `count <verify|decode> <N>` instead of criterion's arguments, verifies or decodes the bench
//! token `N` times for `valgrind --tool=callgrind`; `benches/callgrind_jwt_verify.sh` prints the
//! instructions per call of both and their ratio.

use std::{collections::HashMap, hint::black_box, path::PathBuf, sync::Arc, time::Instant};

use criterion::Criterion;
use hmac::{Hmac, KeyInit, Mac};
use nexora_auth::{
    ApiKey, Authenticator, Credential, JwtConfig, JwtKeys, MemoryKeyStore, NewKey, OwnerId,
    PepperRing, Principal, Scopes, SecretBytes, TokenAuthority,
};
use sha2::Sha256;

const PEPPER: &[u8] = b"benchmark-pepper-benchmark-pepper-0123";
const JWT_SECRET: &[u8] = b"benchmark-jwt-secret-benchmark-jwt-secret";

fn output_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

fn authority() -> TokenAuthority {
    TokenAuthority::new(
        JwtKeys::hs256(&SecretBytes::new(JWT_SECRET.to_vec())).expect("valid secret"),
        JwtConfig::new("nexora", "nexora-api"),
    )
    .expect("valid config")
}

fn key_path(c: &mut Criterion) {
    let rt = runtime();
    let auth = Authenticator::builder(
        Arc::new(MemoryKeyStore::new()),
        PepperRing::new(1, SecretBytes::new(PEPPER.to_vec())).expect("valid pepper"),
    )
    .build()
    .expect("valid authenticator");
    let owner = Principal::new(
        OwnerId::new("bench"),
        Credential::Internal,
        Scopes::new(["agents:read"]).unwrap(),
    );
    // 10,000 keys in the store so the lookup is not into a one-entry map.
    let mut valid = None;
    rt.block_on(async {
        for i in 0..10_000 {
            let created = auth
                .create_key(&owner, NewKey::named(format!("k{i}")))
                .await
                .unwrap();
            valid = Some(created.key);
        }
    });
    let valid = valid.expect("created keys");
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
    let ring = PepperRing::new(1, SecretBytes::new(PEPPER.to_vec())).unwrap();
    g.bench_function("digest", |b| b.iter(|| ring.digest(black_box(&valid))));

    // Baseline: one bare HMAC-SHA256 (keyed from scratch) over a key-sized input, plus one
    // lookup in a HashMap of the same size as the store.
    let mut map: HashMap<[u8; 16], [u8; 32]> = HashMap::new();
    for i in 0..10_000u128 {
        map.insert(i.to_le_bytes(), [0; 32]);
    }
    let lookup: [u8; 16] = 4_242u128.to_le_bytes();
    g.bench_function("baseline_hmac_plus_hashmap", |b| {
        b.iter(|| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(black_box(PEPPER)).unwrap();
            mac.update(black_box(valid_text.as_bytes()));
            let tag = mac.finalize().into_bytes();
            let hit = map.get(black_box(&lookup));
            (tag, hit.copied())
        })
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
}

/// Same claims type as the crate reads, for a like-for-like baseline.
#[derive(serde::Deserialize)]
#[allow(
    dead_code,
    reason = "fields are deserialised to measure the cost, not read"
)]
struct Claims {
    sub: String,
    exp: u64,
    iat: Option<u64>,
    jti: Option<String>,
    scope: Option<String>,
}

/// The token, the uncached authority and the baseline's key and validation, shared by the
/// criterion bench and the `count` mode.
struct JwtCase {
    token: String,
    uncached: TokenAuthority,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

fn jwt_case(authority: &TokenAuthority) -> JwtCase {
    let owner = OwnerId::new("bench-user");
    let scopes = Scopes::new(["agents:read", "keys:manage"]).unwrap();
    let token = authority
        .issue(&owner, &scopes)
        .unwrap()
        .token
        .expose()
        .to_owned();
    // The same validation `TokenAuthority` asks for: the one pinned algorithm, the four
    // required claims, one issuer and one audience (and `exp` checked against the time).
    let key = jsonwebtoken::DecodingKey::from_secret(JWT_SECRET).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&["nexora"]);
    validation.set_audience(&["nexora-api"]);
    // The cache off: every call checks the signature and parses the claims.
    let uncached = TokenAuthority::new(
        JwtKeys::hs256(&SecretBytes::new(JWT_SECRET.to_vec())).expect("valid secret"),
        JwtConfig::new("nexora", "nexora-api").verified_cache(0),
    )
    .expect("valid config");
    JwtCase {
        token,
        uncached,
        key,
        validation,
    }
}

fn jwt(c: &mut Criterion) {
    let authority = authority();
    let owner = OwnerId::new("bench-user");
    let scopes = Scopes::new(["agents:read", "keys:manage"]).unwrap();
    let JwtCase {
        token,
        uncached,
        key,
        validation,
    } = jwt_case(&authority);

    let mut g = c.benchmark_group("jwt");
    g.bench_function("issue", |b| {
        b.iter(|| authority.issue(black_box(&owner), &scopes).unwrap())
    });
    g.bench_function("baseline_jsonwebtoken_decode", |b| {
        b.iter(|| jsonwebtoken::decode::<Claims>(black_box(&token), &key, &validation).unwrap())
    });
    g.bench_function("verify", |b| {
        b.iter(|| uncached.verify(black_box(&token)).unwrap())
    });
    // The default: a token seen before is answered from the verified-token cache.
    g.bench_function("verify_cached", |b| {
        b.iter(|| authority.verify(black_box(&token)).unwrap())
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
            black_box(
                jsonwebtoken::decode::<Claims>(black_box(&case.token), &case.key, &case.validation)
                    .expect("valid"),
            );
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
                black_box(
                    jsonwebtoken::decode::<Claims>(
                        black_box(&case.token),
                        &case.key,
                        &case.validation,
                    )
                    .expect("valid"),
                );
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
