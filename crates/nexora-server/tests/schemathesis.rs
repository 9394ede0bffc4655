//! The running server against the OpenAPI document it serves, with schemathesis
//! (<https://schemathesis.readthedocs.io>): for every documented operation, generated valid and
//! invalid requests, with and without credentials and with methods the path does not answer,
//! must get no server error and only documented statuses, headers and bodies (every check
//! schemathesis has, in its coverage, fuzzing and stateful phases).
//!
//! Settings and the reasons for each exception are in `tests/schemathesis/schemathesis.toml`;
//! `tests/schemathesis/hooks.py` maps the one request rule a schema cannot state (an expiry in
//! the future). The login endpoint is fuzzed as well: after 20 failures from 127.0.0.1 it
//! answers the documented 429 with `Retry-After`, so its later cases check the throttle's answer
//! (the password check itself is the behaviour table's subject).
//!
//! Needs schemathesis: `.ci/run` installs it into `.ci/venv` and sets `NEXORA_SCHEMATHESIS` to
//! the executable. Without that variable this test fails rather than skips, saying how to
//! install it: CI never skips a test for want of a tool.

mod common;

use std::{io::Write, path::Path, process::Command};

use common::{JWT_SECRET, PASSWORD, PEPPER, Server, cli};
use serde_json::{Value, json};

/// The variable naming the schemathesis executable.
const TOOL: &str = "NEXORA_SCHEMATHESIS";
/// Generated cases per operation and phase: about 20 s on two cores, every check included.
const MAX_EXAMPLES: &str = "100";

fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("NEXORA_JWT_SECRET", JWT_SECRET),
        ("NEXORA_KEY_PEPPER", PEPPER),
    ]
}

#[tokio::test]
async fn the_server_conforms_to_its_openapi_document() {
    let tool = std::env::var_os(TOOL).unwrap_or_else(|| {
        panic!(
            "{TOOL} is not set: this test runs schemathesis against the server. Install it with \
             `python3 -m venv .ci/venv && .ci/venv/bin/pip install 'schemathesis==4.32.5'` and \
             set {TOOL}=$PWD/.ci/venv/bin/schemathesis (.ci/run does both)"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[], &secrets());
    // A user holding every scope (the CLI's default: agents:read and keys:manage).
    let (code, _, err) = cli(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "schemathesis@example.com",
            "--password-stdin",
        ],
        &secrets(),
        PASSWORD,
    );
    assert_eq!(code, 0, "{err}");
    // The credential is an access token rather than an `nxr_` key: the stateful phase follows
    // the `created_by.key_id` of a key it created into `DELETE /api/users/me/api-keys/{key_id}`,
    // and with a key credential that revokes the credential itself (as it should), leaving the
    // rest of the run to 401s.
    let login: Value = reqwest::Client::new()
        .post(server.url("/api/auth/login"))
        .json(&json!({"email": "schemathesis@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"]
        .as_str()
        .expect("the login answers a token")
        .to_owned();

    // The document as served, from a file: schemathesis leaves out the operation it loaded a
    // schema from by URL, and `GET /api/openapi.json` is one to test as well.
    let served = reqwest::get(server.url("/api/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let document = dir.path().join("openapi.json");
    std::fs::write(&document, &served).unwrap();
    let served: Value = serde_json::from_str(&served).expect("the served document is JSON");

    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let base = server.base.clone();
    let mut command = Command::new(tool);
    command
        // Anything schemathesis writes (none with these options) lands in the temporary
        // directory.
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", settings.join("hooks.py"))
        .env("NEXORA_SCHEMATHESIS_TOKEN", &token)
        .arg("--no-color")
        .arg("--config-file")
        .arg(settings.join("schemathesis.toml"))
        .arg("run")
        .arg(&document)
        .args(["--url", &base])
        .args([
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "42",
            "--workers",
            "1",
        ])
        .args(["--generation-database", "none"]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run schemathesis ({TOOL}): {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Straight to stderr: shown with --nocapture, and kept in CI logs on failure below.
    let _ = writeln!(std::io::stderr(), "{report}");
    assert!(
        output.status.success(),
        "schemathesis found the server and its document disagree ({}):\n{report}",
        output.status
    );
    let operations: usize = served["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert!(
        report.contains(&format!("Selected: {operations}/{operations}"))
            && report.contains(&format!("Tested: {operations}")),
        "schemathesis did not test all {operations} operations:\n{report}"
    );
    assert!(server.is_running(), "the server died:\n{}", server.logs());
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}
