//! Lists the contracts. Every `pub async fn` at the top level of `src/key_store.rs`,
//! `src/user_store.rs`, `src/key_feed.rs`, `src/user_feed.rs` and `src/audit_store.rs` is a
//! contract, so writing the
//! function is the one edit that runs it on every store: this script writes the lists that
//! `key_store_conformance!`, `user_store_conformance!`, `change_feed_conformance!`,
//! `audit_store_conformance!` and the
//! modules' `contracts()` expand (`tests/contract_list.rs` checks them against the sources
//! with a scan of its own).

use std::{env, fs, path::PathBuf};

/// The names of the `pub async fn`s at the top level of `source`.
fn contracts(source: &str) -> Vec<&str> {
    source
        .lines()
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .map(|rest| rest.split(['(', '<']).next().unwrap_or(rest).trim())
        .collect()
}

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let mut code = String::from("// Written by build.rs from the contract functions.\n");
    for (file, list) in [
        ("src/key_store.rs", "__key_store_contracts"),
        ("src/user_store.rs", "__user_store_contracts"),
        ("src/key_feed.rs", "__key_feed_contracts"),
        ("src/user_feed.rs", "__user_feed_contracts"),
        ("src/audit_store.rs", "__audit_store_contracts"),
        ("src/ticket_store.rs", "__ticket_store_contracts"),
    ] {
        println!("cargo::rerun-if-changed={file}");
        let source =
            fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        let names = contracts(&source);
        assert!(!names.is_empty(), "{file} defines no contract");
        code.push_str(&format!(
            "#[doc(hidden)]\n#[macro_export]\nmacro_rules! {list} {{\n    \
             ($mode:ident $module:ident $args:tt) => {{\n        \
             $crate::__contracts! {{$mode $module $args; {}}}\n    }};\n}}\n",
            names.join(", ")
        ));
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("contracts.rs"), code).expect("writing the contract lists");
}
