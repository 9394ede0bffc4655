//! Sends the rows and judges each answer: the row's own expectation, and what holds for every
//! row (no 2xx unless a positive control, no 5xx, no echo, the store calls, the time).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Attack, Outcome,
    wire::{RawResponse, find, send_raw},
};
use nexora_auth_testkit::failure::StoreCalls;

/// Longest time a row may take, request to full answer — also for 1 MB inputs. A row over it
/// is sent up to twice more and judged on its fastest answer, so a busy test machine does
/// not fail it; a slow code path still does.
pub const TIME_LIMIT: Duration = Duration::from_millis(500);

/// A JSON answer with neither a challenge nor a `Retry-After`.
fn plain_json(response: &RawResponse) -> Result<(), String> {
    if response.header("content-type") != Some(b"application/json".as_slice()) {
        return Err("Content-Type is not application/json".into());
    }
    if response.header("www-authenticate").is_some() || response.header("retry-after").is_some() {
        return Err("unexpected WWW-Authenticate or Retry-After".into());
    }
    Ok(())
}

pub(super) fn check_answer(
    row: &Attack,
    answer: &Result<RawResponse, String>,
) -> Result<(), String> {
    let response = match (answer, &row.expect) {
        (Err(_), Outcome::RefusedOrClosed) => return Ok(()),
        (Err(why), _) => return Err(format!("no answer: {why}")),
        (Ok(response), _) => response,
    };
    let status = response.status;
    let body_text = || String::from_utf8_lossy(&response.body).into_owned();
    // What holds for every row.
    if status >= 500 {
        return Err(format!("server error {status}: {}", body_text()));
    }
    let positive = match &row.expect {
        Outcome::Accepted(_) | Outcome::Upgraded => true,
        Outcome::Answered { status, .. } => *status < 300,
        _ => false,
    };
    if !positive && (status < 300 || status == 101) {
        return Err(format!("ACCEPTED an attack: {status} {}", body_text()));
    }
    for secret in &row.must_not_echo {
        if find(&response.raw, secret.as_bytes()).is_some() {
            return Err(format!(
                "the answer echoes the token: {status} {}",
                body_text()
            ));
        }
    }
    // The row's own expectation.
    match &row.expect {
        Outcome::Rejected {
            status: want,
            detail,
            challenge,
        } => {
            if status != *want {
                return Err(format!("status {status}, want {want}: {}", body_text()));
            }
            let body: Value = serde_json::from_slice(&response.body)
                .map_err(|e| format!("body is not JSON ({e}): {}", body_text()))?;
            if body != json!({"detail": detail}) {
                return Err(format!("body {body}, want detail {detail:?}"));
            }
            let www = response.header("www-authenticate");
            if www != Some(challenge.as_bytes()) {
                return Err(format!(
                    "WWW-Authenticate {:?}, want {challenge:?}",
                    www.map(String::from_utf8_lossy)
                ));
            }
            if response.header("content-type") != Some(b"application/json".as_slice()) {
                return Err("Content-Type is not application/json".into());
            }
            if response.header("retry-after").is_some() {
                return Err("unexpected Retry-After".into());
            }
            Ok(())
        }
        Outcome::Accepted(want) => {
            if status != 200 {
                return Err(format!("status {status}, want 200: {}", body_text()));
            }
            let body: Value = serde_json::from_slice(&response.body)
                .map_err(|e| format!("body is not JSON ({e}): {}", body_text()))?;
            if &body == want {
                Ok(())
            } else {
                Err(format!("body {body}, want {want}"))
            }
        }
        Outcome::Answered { status: want, body } => {
            if status != *want {
                return Err(format!("status {status}, want {want}: {}", body_text()));
            }
            let got: Value = serde_json::from_slice(&response.body)
                .map_err(|e| format!("body is not JSON ({e}): {}", body_text()))?;
            if &got != body {
                return Err(format!("body {got}, want {body}"));
            }
            plain_json(response)
        }
        Outcome::Upgraded if status == 101 => Ok(()),
        Outcome::Upgraded => Err(format!("status {status}, want 101: {}", body_text())),
        Outcome::Invalid { loc, kind } => {
            if status != 422 {
                return Err(format!("status {status}, want 422: {}", body_text()));
            }
            let body: Value = serde_json::from_slice(&response.body)
                .map_err(|e| format!("body is not JSON ({e}): {}", body_text()))?;
            let issue = &body["detail"][0];
            if issue["loc"] != *loc || issue["type"] != *kind {
                return Err(format!("body {body}, want loc {loc} and type {kind:?}"));
            }
            plain_json(response)
        }
        Outcome::RefusedOrClosed if (400..500).contains(&status) => Ok(()),
        Outcome::RefusedOrClosed => Err(format!("status {status}, want a 4xx or a close")),
    }
}

pub(super) async fn run_one(
    base_url: &str,
    row: &Attack,
    calls: &StoreCalls,
) -> Result<(), String> {
    let before = calls.total();
    let started = Instant::now();
    let answer = send_raw(base_url, &row.request).await;
    let mut fastest = started.elapsed();
    let used = calls.total() - before;
    check_answer(row, &answer)?;
    if let Some(want) = &row.store_calls
        && !want.contains(&used)
    {
        return Err(if want.start() == want.end() {
            format!("{used} store calls, want {}", want.start())
        } else {
            format!(
                "{used} store calls, want {} to {}",
                want.start(),
                want.end()
            )
        });
    }
    let mut tries = 1;
    while fastest > TIME_LIMIT && tries < 3 {
        let started = Instant::now();
        let _ = send_raw(base_url, &row.request).await;
        fastest = fastest.min(started.elapsed());
        tries += 1;
    }
    if fastest > TIME_LIMIT {
        return Err(format!(
            "answered in {fastest:?} at best of {tries}, limit {TIME_LIMIT:?}"
        ));
    }
    Ok(())
}

/// Sends every row to the server at `base_url`, in order, and returns one line per failing
/// row (empty: all passed). `calls` is the fixture's store-call counter.
pub async fn run_attacks(base_url: &str, rows: &[Attack], calls: &StoreCalls) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows {
        if let Err(why) = run_one(base_url, row, calls).await {
            failures.push(format!("{}: {why}", row.name));
        }
    }
    failures
}
