//! What every scenario uses: starting the server, logging in, the key endpoints (all from
//! `common::api`), and the checks run on what the server left behind (its logs, its file
//! descriptors).

use std::io::Write;

pub(super) use crate::common::api::*;

/// Prints a measured figure straight to stderr, past the harness's capture of `eprintln!`, so
/// the figures land in the CI log of a passing run.
pub(super) fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "FAULTS: {line}");
}

/// The first few of a list of failures, with their count: enough to debug, short enough to read.
pub(super) fn first_of<T: std::fmt::Debug>(failures: &[T]) -> String {
    format!(
        "{} failures, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    )
}

pub(super) fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}
