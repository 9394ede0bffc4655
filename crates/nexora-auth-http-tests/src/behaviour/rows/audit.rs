//! The audit trail endpoint: scope `audit:read`, the page's shape, and its query's 422s.

use serde_json::json;

use super::super::vocabulary::*;
use crate::Fixture;

const TRAIL: &str = "/api/users/me/audit-events";

/// The rows of this subject, in the order they run.
pub(crate) fn rows(f: &Fixture) -> Vec<Row> {
    let auditor = bearer(&f.auditor_key);
    let key_id = f.auditor_key_id.clone();
    vec![
        row(
            "audit trail without credentials → 401",
            http("GET", TRAIL, vec![]),
            challenge(401, NOT_AUTHENTICATED, BEARER),
        ),
        row(
            "audit trail without audit:read → 403",
            http("GET", TRAIL, bearer(&f.alice_key)),
            challenge(403, INSUFFICIENT, INSUFFICIENT_SCOPE),
        ),
        row(
            "audit trail → 200, the caller's events newest first, the last page",
            http("GET", TRAIL, auditor.clone()),
            expect(
                200,
                satisfies(move |body| {
                    let events = body["events"].as_array().ok_or("no events array")?;
                    let created = events
                        .iter()
                        .find(|e| e["target"] == key_id.as_str())
                        .ok_or("the auditor's key_created event is missing")?;
                    let fields: Vec<&str> = created
                        .as_object()
                        .ok_or("an event is not an object")?
                        .keys()
                        .map(String::as_str)
                        .collect();
                    let want = [
                        "action", "actor", "at", "client", "detail", "id", "outcome", "owner",
                        "target",
                    ];
                    if fields != want {
                        return Err(format!("fields {fields:?}, want {want:?}"));
                    }
                    if created["action"] != "key_created"
                        || created["actor"] != json!({"kind": "system", "name": "application"})
                        || created["outcome"] != "success"
                    {
                        return Err(format!("unexpected event {created}"));
                    }
                    if !body["next_before"].is_null() {
                        return Err("next_before on the last page".into());
                    }
                    Ok(())
                }),
            ),
        ),
        row(
            "audit trail limit=0 → 422 at query.limit",
            http("GET", format!("{TRAIL}?limit=0"), auditor.clone()),
            expect(
                422,
                issue(
                    json!(["query", "limit"]),
                    "Input should be greater than or equal to 1",
                    "greater_than_equal",
                ),
            ),
        ),
        row(
            "audit trail limit=201 → 422 at query.limit",
            http("GET", format!("{TRAIL}?limit=201"), auditor.clone()),
            expect(
                422,
                issue(
                    json!(["query", "limit"]),
                    "Input should be less than or equal to 200",
                    "less_than_equal",
                ),
            ),
        ),
        row(
            "audit trail before=nope → 422 at query.before",
            http("GET", format!("{TRAIL}?before=nope"), auditor.clone()),
            expect(
                422,
                issue(
                    json!(["query", "before"]),
                    "Input should be a valid UUID",
                    "uuid_parsing",
                ),
            ),
        ),
        row(
            "audit trail POST → 405 with Allow",
            http("POST", TRAIL, auditor),
            not_allowed("GET,HEAD"),
        ),
    ]
}
