//! The README's quickstart runs as written: the shell block is extracted from README.md and
//! executed with bash against the real server (only `nexora` is pointed at the built binary
//! instead of `cargo run`).

mod common;

use std::process::Command;

use common::{BIN, JWT_SECRET, PEPPER, Server};

fn quickstart_script() -> String {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Quickstart")
        .nth(1)
        .expect("README has a Quickstart section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or(""))
        .collect();
    assert!(
        blocks.len() >= 2,
        "the quickstart has a server block and a client block"
    );
    assert!(
        blocks[0].contains("cargo run -p nexora-server"),
        "first block starts the server"
    );
    blocks[1..].join("\n")
}

#[test]
fn readme_quickstart_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("NEXORA_JWT_SECRET", JWT_SECRET),
        ("NEXORA_KEY_PEPPER", PEPPER),
    ];
    let server = Server::start(dir.path(), &[], &env);
    let script = quickstart_script();
    assert!(script.contains("nexora() { cargo run -q -p nexora-server -- \"$@\"; }"));
    let script = script.replace(
        "nexora() { cargo run -q -p nexora-server -- \"$@\"; }",
        "nexora() { \"$NEXORA_BIN\" \"$@\"; }",
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("BASE", &server.base)
        .env("NEXORA_BIN", BIN)
        .env("NEXORA_LOG", "warn")
        .envs(env)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("agent-research")),
        "agents listed:\n{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"CI pipeline\"")),
        "keys listed:\n{stdout}"
    );
    let codes: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.len() == 3 && l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(
        codes,
        ["401", "101", "401", "202", "401"],
        "status lines:\n{stdout}"
    );
}
