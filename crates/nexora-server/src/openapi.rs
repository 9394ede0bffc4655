//! The OpenAPI document of everything the server answers: the auth endpoints' part, generated
//! by `nexora-auth-http` from its route table, and the server's own routes, added here.
//!
//! Served at `/api/openapi.json` and printed by `nexora-server openapi`. CI checks the running
//! server against it with schemathesis (`tests/schemathesis.rs`).

use nexora_auth_http::{
    AuthRequirement,
    openapi::{self, error_response, guarded},
    routes::Endpoint,
    scopes::AGENTS_READ,
};
use serde::Serialize;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        ContentBuilder, HttpMethod, InfoBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Required,
        Response, ResponseBuilder, Schema,
        path::{OperationBuilder, ParameterBuilder, ParameterIn},
        schema::{ArrayBuilder, Type},
    },
};

/// Where the auth endpoints are mounted.
pub(crate) const API: &str = "/api";
const JSON: &str = "application/json";

/// One agent of the sample resource `GET /api/agents`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Agent {
    /// The agent's id.
    pub(crate) id: &'static str,
    /// Its display name.
    pub(crate) name: &'static str,
}

/// The body of `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` (the process is up) or `ready` (the database answers).
    #[schema(schema_with = health_status)]
    pub(crate) status: &'static str,
}

fn health_status() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["ok", "ready"]))
        .description(Some(
            "`ok` (the process is up) or `ready` (the database answers).",
        ))
}

/// The whole document: the auth endpoints under [`API`] (GitHub's secret-scanning endpoint
/// only when `secret_scanning` is served), the server's routes, and the statuses its layers
/// add to every route.
pub(crate) fn document(secret_scanning: bool) -> OpenApi {
    let mut doc = openapi::document_served(API, |endpoint| {
        secret_scanning || endpoint != Endpoint::GitHubSecretScanning
    });
    doc.info = InfoBuilder::new()
        .title("Nexora API — authentication")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "API keys (nxr_…), JWT access tokens and password login, as served by \
             nexora-server. Every error body is {\"detail\": …}: a string, or for 422 a list of \
             {loc, msg, type}. A method a path does not answer is 405 with an Allow header. \
             What the schema cannot express (an expiry must be in the future, requested scopes \
             must be held by the caller, the 400/426 of a plain GET on the WebSocket route, …) \
             is in the operations' descriptions.",
        ))
        .build();
    let paths = &mut doc.paths;
    paths.add_path_operation(
        format!("{API}/agents"),
        vec![HttpMethod::Get],
        guarded(
            OperationBuilder::new()
                .operation_id(Some("list_agents"))
                .summary(Some("A sample protected resource (scope agents:read)"))
                .response(
                    "200",
                    json_response(
                        "The agents.",
                        ArrayBuilder::new().items(Ref::from_schema_name(Agent::name())),
                    ),
                ),
            AuthRequirement::required(),
            Some(AGENTS_READ),
        )
        .build(),
    );
    paths.add_path_operation(
        format!("{API}/ws/{{chat_id}}"),
        vec![HttpMethod::Get],
        guarded(
            OperationBuilder::new()
                .operation_id(Some("chat_socket"))
                .summary(Some("A WebSocket echoing text frames"))
                .description(Some(
                    "Authenticates before the upgrade, with the Authorization header, \
                     ?token= (JWT or nxr_ key) or — recommended for browsers, whose URLs end \
                     up in logs — a single-use ?ticket= from POST /api/auth/ws-tickets, \
                     accepted once, within its lifetime, for the chat it names: a bad \
                     credential, a used, expired or other chat's ticket is 401 and no \
                     upgrade (the ticket is used up by the attempt). A \
                     request that is not a WebSocket upgrade (a plain GET) answers 400, or 426 \
                     when the connection cannot be upgraded, after the credential check; \
                     OpenAPI cannot describe the upgrade itself.",
                ))
                .parameter(
                    ParameterBuilder::new()
                        .name("chat_id")
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .description(Some(
                            "Any chat id; the echo does not use it. A ticket issued for a \
                             chat is accepted here only when this is that chat.",
                        ))
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                )
                .response(
                    "101",
                    ResponseBuilder::new()
                        .description("Switching Protocols: the WebSocket is open.")
                        .build(),
                )
                .response(
                    "400",
                    error_response(
                        "Not a WebSocket upgrade request (a plain GET, a missing or wrong \
                         Connection, Upgrade, Sec-WebSocket-Key or Sec-WebSocket-Version).",
                    ),
                )
                .response(
                    "426",
                    error_response("The connection cannot be upgraded (Upgrade Required)."),
                ),
            AuthRequirement::required()
                .accept_query_token()
                .accept_ticket(),
            None,
        )
        .build(),
    );
    paths.add_path_operation(
        "/healthz",
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .operation_id(Some("healthz"))
            .summary(Some("The process is up"))
            .response(
                "200",
                json_response("Up.", Ref::from_schema_name(Health::name())),
            )
            .build(),
    );
    paths.add_path_operation(
        "/readyz",
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .operation_id(Some("readyz"))
            .summary(Some("The database is reachable"))
            .response(
                "200",
                json_response("Ready.", Ref::from_schema_name(Health::name())),
            )
            .response("503", error_response("The database does not answer."))
            .build(),
    );
    paths.add_path_operation(
        format!("{API}/openapi.json"),
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .operation_id(Some("openapi"))
            .summary(Some("This document"))
            .response(
                "200",
                json_response(
                    "The OpenAPI 3.1 document.",
                    ObjectBuilder::new().schema_type(Type::Object),
                ),
            )
            .build(),
    );
    paths.add_path_operation(
        "/.well-known/jwks.json",
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .operation_id(Some("jwks"))
            .summary(Some("Public JWT verification keys (empty for HS256)"))
            .response("200", json_response("A JWK set (RFC 7517).", jwk_set()))
            .build(),
    );
    // The layers of `app::router` answer on every route: the request timeout and the body
    // limit (checked on `Content-Length` before any handler, whatever the method).
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut operation.responses.responses;
            responses.entry("408".into()).or_insert_with(|| {
                error_response("The request took longer than the server's timeout.").into()
            });
            responses.entry("413".into()).or_insert_with(|| {
                error_response(
                    "The body is longer than the server's limit (64 KiB by default; 1 MiB while \
                     GitHub secret-scanning reports are served).",
                )
                .into()
            });
        }
    }
    let schemas = &mut doc.components.get_or_insert_with(Default::default).schemas;
    schemas.insert(Agent::name().into_owned(), Agent::schema());
    schemas.insert(Health::name().into_owned(), Health::schema());
    doc
}

fn json_response(description: &str, schema: impl Into<RefOr<Schema>>) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(JSON, ContentBuilder::new().schema(Some(schema)).build())
        .build()
}

/// `{"keys": [jwk, …]}`: each key has at least its type (`kty`).
fn jwk_set() -> ObjectBuilder {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("keys")
        .property(
            "keys",
            ArrayBuilder::new().items(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .required("kty")
                    .property("kty", string())
                    .property("kid", string())
                    .property("alg", string())
                    .property("use", string()),
            ),
        )
}

#[cfg(test)]
mod tests {
    use nexora_auth_http::routes::ROUTES;
    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::to_value(document(true)).expect("the document serialises")
    }

    #[test]
    fn the_scanning_endpoint_is_documented_only_when_served() {
        let path = "/api/secret-scanning/github";
        assert!(doc()["paths"][path]["post"].is_object());
        let without = serde_json::to_value(document(false)).expect("the document serialises");
        assert!(without["paths"][path].is_null());
        assert!(without["paths"]["/api/keys/revoke"]["post"].is_object());
    }

    #[test]
    fn the_auth_part_is_the_librarys_document() {
        let ours = doc();
        let library = serde_json::to_value(openapi::document(API)).unwrap();
        for (path, item) in library["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let mut served = ours["paths"][path][method].clone();
                let responses = served["responses"].as_object_mut().unwrap();
                // The server's layers add these; the rest is the library's, unchanged.
                responses.remove("408");
                if !operation["responses"]
                    .as_object()
                    .unwrap()
                    .contains_key("413")
                {
                    responses.remove("413");
                }
                assert_eq!(&served, operation, "{method} {path}");
            }
        }
        for route in &ROUTES {
            let method = route.method.as_str().to_ascii_lowercase();
            assert!(
                ours["paths"][format!("{API}{}", route.path)][method].is_object(),
                "{}",
                route.path
            );
        }
        for (name, schema) in library["components"]["schemas"].as_object().unwrap() {
            assert_eq!(&ours["components"]["schemas"][name], schema, "{name}");
        }
    }

    #[test]
    fn every_route_of_the_server_is_documented() {
        let doc = doc();
        for (method, path) in [
            ("get", "/api/agents"),
            ("get", "/api/ws/{chat_id}"),
            ("get", "/healthz"),
            ("get", "/readyz"),
            ("get", "/api/openapi.json"),
            ("get", "/.well-known/jwks.json"),
        ] {
            let operation = &doc["paths"][path][method];
            assert!(operation.is_object(), "{method} {path}");
            for status in ["200", "408", "413"] {
                assert!(
                    operation["responses"][status].is_object()
                        || (path.starts_with("/api/ws/") && status == "200"),
                    "{method} {path} {status}"
                );
            }
        }
        let ws = &doc["paths"]["/api/ws/{chat_id}"]["get"]["responses"];
        for status in ["101", "400", "401", "426", "503"] {
            assert!(ws[status].is_object(), "{status}");
        }
        let agents = &doc["paths"]["/api/agents"]["get"];
        assert_eq!(agents["security"][0]["bearer"][0], AGENTS_READ);
        assert!(agents["responses"]["403"].is_object());
    }
}
