//! The contract lists cannot drift from the contract functions: build.rs writes them from the
//! `pub async fn`s of `src/key_store.rs`, `src/user_store.rs`, `src/key_feed.rs` and
//! `src/user_feed.rs`, and this test checks the
//! result against the sources with a scan of its own — every public function listed (so a
//! new contract runs on every store the moment it is written, and none is dropped), nothing
//! else listed, and each contract naming itself in its failure messages.

use nexora_auth_testkit::{audit_store, key_feed, key_store, ticket_store, user_feed, user_store};

/// The public async functions of `source` with the text of each, in order of definition.
fn public_functions(source: &str) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    for (at, _) in source.match_indices("\npub async fn ") {
        let rest = &source[at + "\npub async fn ".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let end = rest.find("\npub ").unwrap_or(rest.len());
        out.push((name, &rest[..end]));
    }
    out
}

fn check<F>(file: &str, source: &str, runner: &str, listed: Vec<(&'static str, F)>) {
    let defined = public_functions(source);
    let defined_names: Vec<&str> = defined.iter().map(|(name, _)| name.as_str()).collect();
    let listed_names: Vec<&str> = listed.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        listed_names, defined_names,
        "{file}: the listed contracts differ from the public functions"
    );
    for (name, body) in defined {
        // `crate::key_store_contract("name", store, …)`, however rustfmt breaks the line.
        let call = body
            .find(&format!("crate::{runner}("))
            .unwrap_or_else(|| panic!("{file}: `{name}` does not run through `{runner}`"));
        let first_literal = body[call..].split('"').nth(1);
        assert_eq!(
            first_literal,
            Some(name.as_str()),
            "{file}: `{name}` reports its failures under another name"
        );
    }
}

#[test]
fn every_key_store_contract_is_listed_and_names_itself() {
    // A floor, not a count: adding a contract needs no edit here; removing one is deliberate.
    assert!(key_store::contracts().len() >= 31, "contracts went missing");
    check(
        "src/key_store.rs",
        include_str!("../src/key_store.rs"),
        "key_store_contract",
        key_store::contracts(),
    );
}

#[test]
fn every_user_store_contract_is_listed_and_names_itself() {
    assert!(
        user_store::contracts().len() >= 11,
        "contracts went missing"
    );
    check(
        "src/user_store.rs",
        include_str!("../src/user_store.rs"),
        "user_store_contract",
        user_store::contracts(),
    );
}

#[test]
fn every_change_feed_contract_is_listed_and_names_itself() {
    assert!(key_feed::contracts().len() >= 5, "contracts went missing");
    assert!(user_feed::contracts().len() >= 5, "contracts went missing");
    check(
        "src/key_feed.rs",
        include_str!("../src/key_feed.rs"),
        "key_feed_contract",
        key_feed::contracts(),
    );
    check(
        "src/user_feed.rs",
        include_str!("../src/user_feed.rs"),
        "user_feed_contract",
        user_feed::contracts(),
    );
}

/// The check itself fails on a contract that is not listed, and on one that names another.
#[test]
fn the_check_catches_drift() {
    let source = "\npub async fn listed(store: Arc<dyn KeyStore>) {\n    \
                  crate::key_store_contract(\"listed\", store, |s| async {}).await;\n}\n\
                  \npub async fn forgotten(store: Arc<dyn KeyStore>) {\n    \
                  crate::key_store_contract(\"forgotten\", store, |s| async {}).await;\n}\n";
    let one = || {
        key_store::contracts()
            .into_iter()
            .take(1)
            .map(|(_, f)| ("listed", f))
            .collect()
    };
    let unlisted = std::panic::catch_unwind(|| check("t", source, "key_store_contract", one()));
    assert!(
        unlisted.is_err(),
        "a function missing from the list must fail the check"
    );
    let misnamed = source.replace("(\"forgotten\"", "(\"listed\"");
    let two = || {
        key_store::contracts()
            .into_iter()
            .take(2)
            .zip(["listed", "forgotten"])
            .map(|((_, f), name)| (name, f))
            .collect()
    };
    let misnamed = std::panic::catch_unwind(|| check("t", &misnamed, "key_store_contract", two()));
    assert!(
        misnamed.is_err(),
        "a contract naming another must fail the check"
    );
    assert!(
        std::panic::catch_unwind(|| check("t", source, "key_store_contract", two())).is_ok(),
        "and the check passes when they agree"
    );
}

#[test]
fn every_audit_store_contract_is_listed_and_names_itself() {
    assert!(
        audit_store::contracts().len() >= 7,
        "contracts went missing"
    );
    check(
        "src/audit_store.rs",
        include_str!("../src/audit_store.rs"),
        "audit_store_contract",
        audit_store::contracts(),
    );
}

#[test]
fn every_ticket_store_contract_is_listed_and_names_itself() {
    assert!(
        ticket_store::contracts().len() >= 7,
        "contracts went missing"
    );
    check(
        "src/ticket_store.rs",
        include_str!("../src/ticket_store.rs"),
        "ticket_store_contract",
        ticket_store::contracts(),
    );
}
