//! dudect (Reparaz, Balasch, Verbauwhede 2016) constant-time checks of the key check.
//!
//! Run: `cargo bench -p nexora-auth-benches --bench timing` (set `NEXORA_DUDECT_CONTINUOUS=1`
//! and pass a bench name to keep sampling one). Each bench compares two classes of inputs that differ only in *where* a
//! wrong secret differs from the right one; a leak would show as |t| growing past 5.
//!
//! * `digest_compare`: `KeyDigest::ct_eq` on digests differing in the first vs the last byte.
//! * `authenticate_secret_position`: the whole `Authenticator::authenticate` path (parse,
//!   store lookup, HMAC, compare) for a real key's id with the secret's first vs last
//!   character changed (checksum re-computed, so both reach the digest comparison).

use std::sync::Arc;

use dudect_bencher::{
    BenchRng, Class, CtRunner,
    ctbench::{BenchMetadata, BenchName, BenchOpts, run_benches_console},
};
use nexora_auth::{Credential, KeyDigest, MemoryKeyStore, NewKey, OwnerId, Principal, Scopes};
use rand::RngExt;

const SAMPLES: usize = 100_000;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn digest_compare(runner: &mut CtRunner, rng: &mut BenchRng) {
    let mut base = [0u8; 32];
    rng.fill(&mut base);
    let reference = KeyDigest::from_bytes(base);
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let mut other = base;
        let class = if rng.random::<bool>() {
            other[0] ^= 1;
            Class::Left
        } else {
            other[31] ^= 1;
            Class::Right
        };
        inputs.push((class, KeyDigest::from_bytes(other)));
    }
    for (class, candidate) in inputs {
        runner.run_one(class, || reference.ct_eq(&candidate));
    }
}

/// `key` with the secret character at `pos` (26..58) replaced by another one, and a valid
/// checksum again.
fn with_secret_char_changed(key: &str, pos: usize, replacement: u8) -> String {
    let mut text = key.as_bytes().to_vec();
    // `replacement` is an alphabet index; step past the current character so it changes.
    let index = usize::from(replacement) % 62;
    text[pos] = if ALPHABET[index] == text[pos] {
        ALPHABET[(index + 1) % 62]
    } else {
        ALPHABET[index]
    };
    let mut crc = u64::from(crc32fast::hash(&text[..58]));
    for slot in text[58..].iter_mut().rev() {
        *slot = ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    String::from_utf8(text).expect("ASCII")
}

fn authenticate_secret_position(runner: &mut CtRunner, rng: &mut BenchRng) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let auth = nexora_auth_testkit::authenticator_builder(Arc::new(MemoryKeyStore::new()))
        .build()
        .expect("authenticator");
    let owner = Principal::new(OwnerId::new("o"), Credential::Internal, Scopes::empty());
    let key = rt
        .block_on(auth.create_key(&owner, NewKey::named("k")))
        .expect("create")
        .key;
    // A fresh allocation per sample, so buffer alignment (a classic dudect false positive)
    // is spread over both classes alike rather than fixed per class.
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let replacement = rng.random::<u8>();
        inputs.push(if rng.random::<bool>() {
            (
                Class::Left,
                with_secret_char_changed(key.expose(), 26, replacement),
            )
        } else {
            (
                Class::Right,
                with_secret_char_changed(key.expose(), 57, replacement),
            )
        });
    }
    for (class, token) in inputs {
        runner.run_one(class, || {
            rt.block_on(auth.authenticate(&token))
                .expect_err("a changed secret never authenticates")
        });
    }
}

/// Like `dudect_bencher::ctbench_main!`, but tolerant of the `--bench` flag `cargo bench`
/// passes. Optional argument: a filter on the bench name. `NEXORA_DUDECT_CONTINUOUS=1` keeps
/// sampling the first matching bench.
fn main() -> std::io::Result<()> {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let opts = BenchOpts {
        continuous: std::env::var("NEXORA_DUDECT_CONTINUOUS").is_ok_and(|v| v == "1"),
        filter,
        file_out: None,
    };
    let benches = vec![
        BenchMetadata {
            name: BenchName("digest_compare"),
            seed: None,
            benchfn: digest_compare,
        },
        BenchMetadata {
            name: BenchName("authenticate_secret_position"),
            seed: None,
            benchfn: authenticate_secret_position,
        },
    ];
    run_benches_console(opts, benches)
}
