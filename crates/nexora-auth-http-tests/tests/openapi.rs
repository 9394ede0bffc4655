//! Every answer the behaviour table expects from the auth endpoints is in the OpenAPI document
//! `nexora_auth_http::openapi` generates: its status, and its `WWW-Authenticate` and
//! `Retry-After` headers, with every header the document calls required. The table states what
//! the endpoints really answer on both frameworks, so a status the document forgets fails here.

use std::collections::BTreeSet;

use nexora_auth_http::{
    openapi,
    routes::{self, Resolved},
};
use nexora_auth_http_tests::{Fixture, Probe, table};
use serde_json::Value;

#[tokio::test]
async fn every_answer_of_the_table_is_documented() {
    let fixture = Fixture::new().await;
    let doc = serde_json::to_value(openapi::document("/api")).expect("the document serialises");
    let mut seen = BTreeSet::new();
    for row in table(&fixture) {
        let Probe::Http { method, path, .. } = &row.send else {
            continue;
        };
        let path = path.split('?').next().unwrap_or_default();
        // Only the route table's endpoints: the test application's own routes (and 404s, 405s)
        // are not in the auth document.
        let Some(Resolved::Found { route, .. }) = path
            .strip_prefix("/api")
            .map(|p| routes::resolve(method, p))
        else {
            continue;
        };
        let documented = format!(
            "/api{} {}",
            route.path,
            route.method.as_str().to_ascii_lowercase()
        );
        let operation = &doc["paths"][format!("/api{}", route.path)]
            [route.method.as_str().to_ascii_lowercase()];
        let status = row.expect.status.to_string();
        let response = &operation["responses"][&status];
        let name = row.name;
        assert!(
            response.is_object(),
            "{name}: {method} {path} answers {status}, which {documented} does not document"
        );
        let headers = response["headers"].as_object().cloned().unwrap_or_default();
        for (header, expected) in [
            ("WWW-Authenticate", row.expect.www_authenticate),
            ("Retry-After", row.expect.retry_after),
        ] {
            let doc_header = headers.get(header);
            match expected {
                Some(value) => {
                    let doc_header = doc_header.unwrap_or_else(|| {
                        panic!("{name}: {documented} {status} does not document {header}")
                    });
                    if let Some(values) = doc_header["schema"]["enum"].as_array() {
                        assert!(
                            values.contains(&Value::from(value)),
                            "{name}: {header} {value:?} is not among {values:?}"
                        );
                    }
                }
                None => assert!(
                    doc_header.is_none_or(|h| h["required"] != true),
                    "{name}: {documented} {status} requires {header}, the answer has none"
                ),
            }
        }
        seen.insert((documented, status));
    }
    // Every endpoint, and most of its statuses, are exercised by the table.
    assert!(seen.len() >= 20, "{seen:?}");
    for route in &routes::ROUTES {
        assert!(
            seen.iter()
                .any(|(op, _)| op.starts_with(&format!("/api{} ", route.path))),
            "the table has no row for {}",
            route.path
        );
    }
}
