//! Replays the committed fuzz corpora through the same property functions the cargo-fuzz
//! targets run, so a stable `cargo test` catches regressions without nightly. It lives in this
//! unpublished crate because the corpora (22 MB) and `fuzz/props.rs` are not part of any
//! published package: each library crate's own tests build from its package alone.

#[path = "../../../fuzz/props.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with the fuzz targets, which use each function once"
)]
mod props;

use std::path::PathBuf;

fn replay(target: &str, property: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
    {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        property(&data);
        count += 1;
    }
    assert!(count > 0, "corpus {target} is empty");
}

#[test]
fn key_parse_corpus() {
    replay("key_parse", props::key_parse);
}

#[test]
fn authenticate_corpus() {
    replay("authenticate", props::authenticate);
}

#[test]
fn jwt_verify_corpus() {
    replay("jwt_verify", props::jwt_verify);
}

#[test]
fn credentials_corpus() {
    replay("credentials", props::credentials);
}

#[test]
fn store_ops_corpus() {
    replay("store_ops", props::store_ops);
}
