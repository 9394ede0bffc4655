//! The OpenAPI 3.1 document of the auth endpoints, generated from the route table and the wire
//! types (feature `openapi`).
//!
//! ```
//! use nexora_auth_http::openapi;
//!
//! // The auth endpoints as the product mounts them, under `/api`.
//! let doc = openapi::document("/api");
//! let rotate = doc
//!     .paths
//!     .get_path_operation("/api/users/me/api-keys/{key_id}/rotate", openapi::utoipa::openapi::HttpMethod::Post)
//!     .expect("every route is documented");
//! assert!(rotate.responses.responses.contains_key("409"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How the document is made
//!
//! [`document`] walks [`ROUTES`]: every row becomes an operation with its method, its path under
//! the host's mount point, its summary, its security requirement (the `bearer` scheme, naming
//! the row's scope), its parameters and request body, and **every status it can answer**. The
//! statuses follow from the row — credentials → 401 with `WWW-Authenticate`, a scope → 403, a
//! body → 413 and 422, a `{key_id}` segment → 404 and 422 — and from what its endpoint does
//! (login's 429, rotation's 409); every operation can answer 503 with `Retry-After`. A new row is
//! documented without another edit, and a new [`Endpoint`] does not compile until this module
//! says what it answers.
//!
//! Bodies are described by `ToSchema` types. This crate's own types (the login body, the body of
//! `GET /users/me`, [`ValidationIssue`]) derive it directly. The core's (`NewKey`, `KeyInfo`,
//! `CreatedKey`, `LoginResponse`) are mirrored here field by field, so that the core stays free of
//! OpenAPI; the tests serialise real values of both and require the same JSON.
//!
//! A host documents its own routes with the same pieces: [`guarded`] adds what the auth layer
//! ([`Guard`](crate::Guard)) and a scope extractor answer to an operation, [`error_response`] is
//! the `{"detail": "…"}` answer, and [`document`]'s components hold the schemas and the
//! `bearer` and `queryToken` security schemes. `nexora-server` adds its routes (the sample
//! resource, the WebSocket, health and the document itself) this way.
//!
//! # What the schema cannot express
//!
//! JSON Schema describes the shape of a request, not every rule the endpoints apply. These are
//! written into the operations' descriptions instead:
//!
//! * **An expiry must be in the future**, by the server's clock when the request arrives: an
//!   `expires_at` in the past is 422 `value_error` at `["body", "expires_at"]`, and so is one
//!   past the year 9999 in UTC (an offset can carry a local 9999-12-31 there). A key created
//!   with a key expires no later than that key, whatever it asks for.
//! * **Requested scopes must be ones the caller holds**: any other is 403 `Cannot grant scopes
//!   you do not have` (the schema can only say what a scope looks like).
//! * **Which keys a caller reaches**: another user's key, a revoked key, and a key with broader
//!   scopes or a longer lifetime than the caller's credential answer 404 like an unknown id.
//! * **Lengths after normalisation**: a key's name is 1 to 100 characters *after trimming*
//!   whitespace (the schema says 1 to 100 characters, and at least one that is not whitespace);
//!   a login email is at most 254 *bytes* of UTF-8 after trimming (the schema counts
//!   characters).
//! * **The login throttle**: repeated failures for one email or from one client address answer
//!   429 with `Retry-After`, whatever the body.
//! * **The order of checks**: route, credentials (401), scope (403), body size (413), then
//!   validation (422). A request wrong in several ways gets the first of these.
//! * **A WebSocket route's plain `GET`**: a host's WebSocket route (the server's
//!   `/api/ws/{chat_id}`) answers a request that is not a WebSocket upgrade with 400, or 426
//!   where the connection cannot be upgraded, after the credential check. OpenAPI has no way to
//!   describe the upgrade itself; the host documents 101, 400 and 426.
//! * **Leaked keys**: `POST /keys/revoke` answers the same 202 for a live, revoked, unknown or
//!   malformed key, and 429 with `Retry-After` past a client's limit; GitHub's
//!   `POST /secret-scanning/github` exists only where it is configured
//!   ([`document_served`]), and its signature headers must verify over the body exactly as
//!   sent (a re-serialised body does not), else 401.
//!
//! Unknown body fields are ignored and, of two equal keys, the last counts; a 405 carries an
//! `Allow` header listing the path's methods (OpenAPI documents operations, not their absence).

use std::collections::BTreeMap;

use nexora_auth::MAX_EMAIL_LEN;
use serde::Serialize;
use utoipa::{
    ToSchema,
    openapi::{
        ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, ObjectBuilder, OpenApi,
        OpenApiBuilder, Paths, Ref, RefOr, Required, Response, ResponseBuilder, Schema,
        extensions::Extensions,
        header::{Header, HeaderBuilder},
        path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn},
        request_body::RequestBodyBuilder,
        schema::{ArrayBuilder, KnownFormat, SchemaFormat, Type},
        security::{
            ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        },
    },
};

use crate::{
    AuthRequirement,
    credentials::QueryToken,
    endpoints::{
        DEFAULT_AUDIT_PAGE, LoginRequest, MAX_AUDIT_PAGE, Me, PossessionRequest,
        RevocationAccepted, RotateRequest, TicketRequest,
    },
    routes::{Endpoint, Method, ROUTES, Route},
    secret_scanning::{Feedback, ScanMatch},
    validation::ValidationIssue,
};

/// utoipa, as this module uses it: hosts extend the [`document`] with its types.
pub use utoipa;

/// The name of the security scheme for `Authorization: Bearer` (an `nxr_` key or a JWT).
pub const BEARER: &str = "bearer";
/// The name of the security scheme for `?token=` (routes that accept it: WebSockets).
pub const QUERY_TOKEN: &str = "queryToken";
/// The name of the security scheme for `?ticket=` (routes that accept single-use tickets:
/// WebSockets).
pub const QUERY_TICKET: &str = "queryTicket";
/// The media type of every body.
const JSON: &str = "application/json";

/// A JSON Schema `pattern` for "no control character" (Unicode `Cc`, which Rust's
/// `char::is_control` tests): the endpoints refuse them in names and emails.
const NO_CONTROL_CHARACTERS: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// A name: no control character, and at least one character that is not whitespace (a name
/// is trimmed before its length is checked).
const KEY_NAME_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
/// A scope as the core accepts it: 1 to 128 printable ASCII characters other than space, `"`
/// and `\`.
const SCOPE_PATTERN: &str = r#"^[!#-\[\]-~]+$"#;

/// The challenges a 401 carries in `WWW-Authenticate`: none presented, a malformed request, a
/// bad credential.
const CHALLENGES_401: [&str; 3] = [
    "Bearer",
    r#"Bearer error="invalid_request""#,
    r#"Bearer error="invalid_token""#,
];
/// The challenge of a 403 for a missing scope.
const CHALLENGE_403: &str = r#"Bearer error="insufficient_scope""#;

/// The schema of the login email: what the endpoint refuses with 422 before any lookup (at most
/// [`MAX_EMAIL_LEN`] bytes, which the schema can only count in characters; no control
/// character).
pub(crate) fn login_email() -> impl Into<RefOr<Schema>> {
    string()
        .max_length(Some(MAX_EMAIL_LEN))
        .pattern(Some(NO_CONTROL_CHARACTERS))
        .description(Some(
            "The account's email, compared case-insensitively after trimming. At most 254 bytes \
             of UTF-8 and no control character (else 422: no account can have it); no other \
             format rule applies at login.",
        ))
}

/// The document of the auth endpoints mounted at `mount` (`/api` in the product; `""` for the
/// root): every row of [`ROUTES`], the schemas of their bodies, and the security schemes.
///
/// The host merges its own routes into it (see the [module docs](self)) and may replace
/// [`OpenApi::info`].
pub fn document(mount: &str) -> OpenApi {
    document_served(mount, |_| true)
}

/// [`document`] of the endpoints `served` accepts, as a host serves them (an
/// [`Api`](crate::Api) without secret scanning does not serve that endpoint: pass
/// `|endpoint| api.serves(endpoint)`). Every schema is kept.
pub fn document_served(mount: &str, served: impl Fn(Endpoint) -> bool) -> OpenApi {
    let mut paths = Paths::new();
    for route in ROUTES.iter().filter(|route| served(route.endpoint)) {
        paths.add_path_operation(
            format!("{mount}{}", route.path),
            vec![http_method(route.method)],
            operation(route),
        );
    }
    let mut schemas = Vec::new();
    collect::<wire::ErrorBody>(&mut schemas);
    collect::<wire::ValidationErrorBody>(&mut schemas);
    collect::<LoginRequest>(&mut schemas);
    collect::<wire::LoginResponse>(&mut schemas);
    collect::<Me<'static>>(&mut schemas);
    collect::<wire::CreateKeyRequest>(&mut schemas);
    collect::<wire::UpdateKeyRequest>(&mut schemas);
    collect::<wire::ApiKey>(&mut schemas);
    collect::<wire::CreatedApiKey>(&mut schemas);
    collect::<wire::TokenRequest>(&mut schemas);
    collect::<TicketRequest>(&mut schemas);
    collect::<RotateRequest>(&mut schemas);
    collect::<wire::IssuedTicket>(&mut schemas);
    collect::<wire::AuditEventPage>(&mut schemas);
    collect::<PossessionRequest>(&mut schemas);
    collect::<RevocationAccepted>(&mut schemas);
    collect::<ScanMatch>(&mut schemas);
    collect::<Feedback<'static>>(&mut schemas);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Nexora API — authentication")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "API keys (nxr_…), JWT access tokens and password login. Every error body is \
                     {\"detail\": …}: a string, or for 422 a list of {loc, msg, type}.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .schemas_from_iter(schemas)
                .security_scheme(
                    BEARER,
                    SecurityScheme::Http(
                        Http::builder()
                            .scheme(HttpAuthScheme::Bearer)
                            .description(Some(
                                "An nxr_ API key, or a JWT access token from POST /auth/login.",
                            ))
                            .build(),
                    ),
                )
                .security_scheme(
                    QUERY_TOKEN,
                    SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                        "token",
                        "Routes that accept it only (WebSockets, whose browser API cannot set \
                         headers): an nxr_ API key or a JWT access token. A different token in \
                         the header as well is 401.",
                    ))),
                )
                .security_scheme(
                    QUERY_TICKET,
                    SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                        "ticket",
                        "Routes that accept it only (WebSockets): a single-use ticket from \
                         POST /auth/ws-tickets, accepted once, within its lifetime, for the chat \
                         it names. It must be the only credential of the request.",
                    ))),
                )
                .build(),
        ))
        .build()
}

/// Adds what a route behind the auth layer answers besides its own responses: the security
/// requirement, 401 with `WWW-Authenticate`, 403 when `scope` is required (a `RequireScope`
/// extractor), and 503 with `Retry-After` when the credential store is down. With
/// [`QueryToken::Accept`] the credential may come as `?token=` instead (the `queryToken`
/// scheme, which names the parameter).
///
/// ```
/// use nexora_auth_http::{AuthRequirement, openapi::{guarded, utoipa::openapi::path::OperationBuilder}};
///
/// let op = guarded(OperationBuilder::new(), AuthRequirement::required(), Some("agents:read")).build();
/// assert!(op.responses.responses.contains_key("401") && op.responses.responses.contains_key("403"));
/// ```
pub fn guarded(
    operation: OperationBuilder,
    requirement: AuthRequirement,
    scope: Option<&str>,
) -> OperationBuilder {
    let mut operation = operation
        .security(SecurityRequirement::new(BEARER, scope))
        .response("401", unauthorized())
        .response("503", unavailable());
    if requirement.query_token == QueryToken::Accept {
        // The `queryToken` scheme describes `?token=`: a parameter as well would have clients
        // (and test generators) send arbitrary text beside the header, which is 401.
        operation = operation.security(SecurityRequirement::new(QUERY_TOKEN, scope));
    }
    if requirement.ticket {
        operation = operation.security(SecurityRequirement::new(QUERY_TICKET, scope));
    }
    if let Some(scope) = scope {
        operation = operation.response("403", forbidden(scope, false));
    }
    operation
}

/// A response with a `{"detail": "…"}` body (the `Error` schema).
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(JSON, json(Ref::from_schema_name(wire::ErrorBody::name())))
        .build()
}

/// The operation of one route: everything [`document`] says about it.
fn operation(route: &Route) -> Operation {
    let endpoint = route.endpoint;
    let mut operation = OperationBuilder::new()
        .operation_id(Some(operation_id(endpoint)))
        .summary(Some(route.summary))
        .description(Some(description(endpoint)));
    if route.authenticated {
        operation = operation.security(SecurityRequirement::new(BEARER, route.scope));
    }
    if route.path.contains("{key_id}") {
        operation = operation.parameter(
            ParameterBuilder::new()
                .name("key_id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The key's id (the `id` of its listing)."))
                .schema(Some(uuid())),
        );
    }
    if endpoint == Endpoint::RevokeKey {
        operation = operation.parameter(
            ParameterBuilder::new()
                .name("cascade")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "Also revoke every key this key created, transitively, in the same atomic \
                     step. `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any case.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Boolean)
                        .default(Some(false.into())),
                )),
        );
    }
    if endpoint == Endpoint::AuditEvents {
        operation = operation
            .parameter(
                ParameterBuilder::new()
                    .name("limit")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some("How many events at most (1 to 200)."))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .maximum(Some(MAX_AUDIT_PAGE))
                            .default(Some(DEFAULT_AUDIT_PAGE.into())),
                    )),
            )
            .parameter(
                ParameterBuilder::new()
                    .name("before")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(
                        "Only events older than this one: the `next_before` of the previous \
                         page.",
                    ))
                    .schema(Some(uuid())),
            );
    }
    if route.body {
        let reference = |name| RefOr::from(Ref::from_schema_name(name));
        let (schema, required) = match endpoint {
            Endpoint::Login => (reference(LoginRequest::name()), Required::True),
            // Both may be left out: an empty body asks for the defaults.
            Endpoint::DeriveToken => (reference(wire::TokenRequest::name()), Required::False),
            Endpoint::IssueTicket => (reference(TicketRequest::name()), Required::False),
            Endpoint::RotateKey => (reference(RotateRequest::name()), Required::False),
            Endpoint::RevokeByPossession => (reference(PossessionRequest::name()), Required::True),
            Endpoint::GitHubSecretScanning => (
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(ScanMatch::name()))
                    .description(Some(
                        "The matches GitHub found, at most 1,000 by default (else 422), in a \
                         body of at most 1 MiB by default (else 413).",
                    ))
                    .into(),
                Required::True,
            ),
            Endpoint::UpdateKey => (reference(wire::UpdateKeyRequest::name()), Required::True),
            _ => (reference(wire::CreateKeyRequest::name()), Required::True),
        };
        operation = operation.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(required))
                .content(JSON, json(schema))
                .build(),
        ));
    }
    for (status, response) in responses(route) {
        operation = operation.response(status.to_string(), response);
    }
    operation.build()
}

/// Every status `route` can answer, with its response.
fn responses(route: &Route) -> BTreeMap<u16, Response> {
    let endpoint = route.endpoint;
    let mut out = BTreeMap::new();
    let (status, success) = success(endpoint);
    out.insert(status, success);
    if route.authenticated {
        out.insert(401, unauthorized());
    }
    if route.cost > 0 {
        out.insert(
            429,
            over_limit(
                "The credential's rate limit, or its owner's, is exhausted (`Rate limit \
                 exceeded`, with the exact wait in Retry-After), or the key's credits are \
                 (`API key usage limit exceeded`, with Retry-After only when a refill is due). \
                 Every response to a credential with limits carries the RateLimit-Policy and \
                 RateLimit headers (draft-ietf-httpapi-ratelimit-headers-10).",
            ),
        );
    }
    if let Some(scope) = route.scope {
        // Creating a key refuses scopes the caller does not hold with a 403 of its own,
        // without a challenge: the credential is fine, the request asks too much.
        out.insert(
            403,
            forbidden(
                scope,
                matches!(endpoint, Endpoint::CreateKey | Endpoint::UpdateKey),
            ),
        );
    }
    let mut invalid = Vec::new();
    if route.body {
        out.insert(
            413,
            error_response(if endpoint == Endpoint::GitHubSecretScanning {
                "The report is longer than its limit (1 MiB by default)."
            } else {
                "The body is longer than the server's limit (64 KiB by default)."
            }),
        );
        invalid.push("the body does not match its schema (or is not JSON)");
    }
    if route.path.contains("{key_id}") {
        out.insert(
            404,
            error_response(
                "No such key within the caller's reach: an unknown id, another user's key, a \
                 revoked key and a key broader or longer-lived than the caller's credential \
                 read the same.",
            ),
        );
        invalid.push("`key_id` is not a UUID");
    }
    match endpoint {
        Endpoint::Login => {
            out.insert(
                401,
                error_response(
                    "Incorrect email or password (an unknown email, a wrong password and a \
                     disabled user read the same).",
                ),
            );
            out.insert(
                429,
                too_many_requests(
                    "Too many failed logins for this email or from this client, or too many \
                     password checks waiting.",
                ),
            );
            invalid.push("the email is longer than 254 bytes or holds a control character");
        }
        Endpoint::RevokeByPossession => {
            out.insert(
                429,
                too_many_requests(
                    "Too many revocation requests from this client (10 a minute by default).",
                ),
            );
        }
        Endpoint::GitHubSecretScanning => {
            out.insert(
                401,
                error_response(
                    "The Github-Public-Key-Identifier or Github-Public-Key-Signature header is \
                     missing, the identifier names no GitHub key, or the signature does not \
                     verify over the body as sent. Nothing was looked up or changed.",
                ),
            );
            invalid.push("more matches than the limit (1,000 by default)");
        }
        Endpoint::CreateKey => {
            out.insert(
                429,
                over_limit(
                    "The creating key has credits of its own and fewer than the new key's \
                     (`API key usage limit exceeded`; Retry-After only when a refill is due).",
                ),
            );
            invalid.push(
                "the name is empty after trimming, longer than 100 characters or holds a \
                 control character; `expires_at` is not in the future, or past the year 9999 \
                 in UTC; a limit is out of range",
            );
        }
        Endpoint::RotateKey => {
            out.insert(
                409,
                error_response("The key has expired and cannot be rotated."),
            );
            invalid.push("`grace_secs` is above 604,800 (7 days)");
        }
        Endpoint::RevokeKey => invalid.push("`cascade` is not a boolean"),
        Endpoint::UpdateKey => {
            invalid.push(
                "the name is empty after trimming, longer than 100 characters or holds a \
                 control character; a limit is out of range",
            );
        }
        Endpoint::DeriveToken => {
            out.insert(
                403,
                error_response(
                    "The credential is not an API key (a login token or a derived token cannot \
                     derive: `An API key is required to derive a token`), or the request asks \
                     for scopes the key does not hold (`Cannot grant scopes you do not have`).",
                ),
            );
            invalid.push("`ttl_secs` is below 1");
        }
        Endpoint::IssueTicket => {
            invalid.push("`chat_id` is empty, longer than 128 bytes or holds a control character")
        }
        Endpoint::AuditEvents => {
            invalid.push("`limit` is not an integer from 1 to 200, or `before` is not a UUID");
        }
        Endpoint::Me | Endpoint::ListKeys => {}
    }
    if !invalid.is_empty() {
        out.insert(422, unprocessable(&invalid));
    }
    out.insert(503, unavailable());
    out
}

/// The success status and response of an endpoint.
fn success(endpoint: Endpoint) -> (u16, Response) {
    let body = |description: &str, schema: RefOr<Schema>| {
        ResponseBuilder::new()
            .description(description)
            .content(JSON, json(schema))
            .build()
    };
    match endpoint {
        Endpoint::Login => (
            200,
            body(
                "An access token.",
                Ref::from_schema_name(wire::LoginResponse::name()).into(),
            ),
        ),
        Endpoint::Me => (
            200,
            body(
                "Who the credential belongs to.",
                Ref::from_schema_name(Me::name()).into(),
            ),
        ),
        Endpoint::ListKeys => (
            200,
            body(
                "The keys within the caller's reach, oldest first (never their values).",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(wire::ApiKey::name()))
                    .into(),
            ),
        ),
        Endpoint::CreateKey => (
            201,
            body(
                "The new key, with its value: shown this once.",
                Ref::from_schema_name(wire::CreatedApiKey::name()).into(),
            ),
        ),
        Endpoint::RotateKey => (
            200,
            body(
                "The key with its new value: shown this once.",
                Ref::from_schema_name(wire::CreatedApiKey::name()).into(),
            ),
        ),
        Endpoint::RevokeKey => (204, ResponseBuilder::new().description("Revoked.").build()),
        Endpoint::UpdateKey => (
            200,
            body(
                "The key as changed (never its value).",
                Ref::from_schema_name(wire::ApiKey::name()).into(),
            ),
        ),
        Endpoint::DeriveToken => (
            200,
            body(
                "A short-lived access token derived from the key.",
                Ref::from_schema_name(wire::LoginResponse::name()).into(),
            ),
        ),
        Endpoint::IssueTicket => (
            200,
            body(
                "A single-use WebSocket ticket.",
                Ref::from_schema_name(wire::IssuedTicket::name()).into(),
            ),
        ),
        Endpoint::AuditEvents => (
            200,
            body(
                "A page of the caller's audit trail, newest first.",
                Ref::from_schema_name(wire::AuditEventPage::name()).into(),
            ),
        ),
        Endpoint::RevokeByPossession => (
            202,
            body(
                "Accepted: the same answer whether the key was live (and is revoked now), \
                 already revoked, unknown or malformed.",
                Ref::from_schema_name(RevocationAccepted::name()).into(),
            ),
        ),
        Endpoint::GitHubSecretScanning => (
            200,
            body(
                "GitHub's feedback format: one entry per match, in order.",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(Feedback::name()))
                    .into(),
            ),
        ),
    }
}

fn operation_id(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Login => "login",
        Endpoint::Me => "read_me",
        Endpoint::ListKeys => "list_keys",
        Endpoint::CreateKey => "create_key",
        Endpoint::RotateKey => "rotate_key",
        Endpoint::RevokeKey => "revoke_key",
        Endpoint::UpdateKey => "update_key",
        Endpoint::DeriveToken => "derive_token",
        Endpoint::IssueTicket => "issue_ws_ticket",
        Endpoint::AuditEvents => "list_audit_events",
        Endpoint::RevokeByPossession => "revoke_key_by_possession",
        Endpoint::GitHubSecretScanning => "github_secret_scanning",
    }
}

/// What an operation's description adds to its summary: above all, the rules the schema
/// cannot express.
fn description(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Login => {
            "Needs no credentials. The access token is a JWT for `Authorization: Bearer`. \
             Repeated failures for one email, or from one client address, answer 429 with \
             `Retry-After` until the window passes, whatever the body."
        }
        Endpoint::Me => {
            "Any valid credential; no scope needed. `email` is null when the owner has no user \
             record (an application's own owner id)."
        }
        Endpoint::ListKeys => {
            "Keys out of the caller's reach are not listed: revoked keys, and keys with broader \
             scopes or a longer lifetime than the credential used."
        }
        Endpoint::CreateKey => {
            "`scopes` default to all of the caller's and must be ones the caller holds (any \
             other is 403). `expires_at` must be in the future by the server's clock, and no \
             later than the year 9999 in UTC (422 otherwise); it is kept as its UTC instant. A \
             key created with a key expires no later than that key and names it \
             in `created_by`. `name` is trimmed before its length is checked. The key's value \
             is in this response only."
        }
        Endpoint::RotateKey => {
            "A new value for the same id; the old value stops working at once, or after \
             `grace_secs` (at most 7 days) when the optional body asks for a grace period. \
             Limits and credits stay with the key. Keys out of the caller's reach answer 404 \
             like unknown ids."
        }
        Endpoint::RevokeKey => {
            "Keys out of the caller's reach (broader scopes, a longer lifetime, another user's) \
             and already revoked keys answer 404 like unknown ids. With cascade=true, every key \
             the key created, transitively, is revoked in the same atomic step."
        }
        Endpoint::UpdateKey => {
            "Changes the fields present: `name`, `rate_limit` and `credits` (`null` removes a \
             limit; credits set here start now). Keys out of the caller's reach answer 404 like \
             unknown ids. A credential with limits of its own may only tighten limits: never \
             raise a rate, add or raise credits or a refill, or remove a limit (403). \
             Rotation keeps a key's limits and credits."
        }
        Endpoint::DeriveToken => {
            "Authenticated by an nxr_ API key only: any other credential answers 403. The \
             token carries the requested `scopes` (all of the key's when absent; any the key \
             does not hold is 403) and lives `ttl_secs` (the server's maximum, 15 minutes by \
             default, when absent), capped at that maximum and at the key's own remaining \
             life. It names its key and stops working when the key is revoked or expires, is \
             rotated without grace (with grace: when the grace ends), or its user is \
             disabled, within the verification cache's bound. Keys created with it count as \
             created by its key (lineage, and the key's expiry as their cap)."
        }
        Endpoint::IssueTicket => {
            "Any valid credential; no scope needed. The ticket goes in a WebSocket URL \
             (`?ticket=`) instead of a credential: it is accepted once, within `expires_in` \
             seconds (30 by default, less when the credential expires sooner), for the chat \
             named by `chat_id` (any chat when absent), across every instance, and \
             authenticates as the caller, whose credential must still be valid then. A second \
             use, an expired ticket or another chat is 401 before the upgrade."
        }
        Endpoint::AuditEvents => {
            "The events of the caller's own trail only (never another user's), newest first: \
             keys created, rotated and revoked, logins, changes to the user. `next_before` is \
             null on the last page; otherwise pass it as `before` for the next. Events never \
             hold a key, token or password."
        }
        Endpoint::RevokeByPossession => {
            "Needs no credentials: whoever holds a key may end it. A live key is revoked at \
             once, with every key it created; the answer is the same 202 for a live, revoked, \
             unknown or malformed key. Limited per client address (429 with Retry-After)."
        }
        Endpoint::GitHubSecretScanning => {
            "For GitHub's secret-scanning partner program; served only when the server has \
             GitHub's keys (404 otherwise). The body must be signed (ECDSA P-256, SHA-256, \
             base64 DER in Github-Public-Key-Signature) by the GitHub key named in \
             Github-Public-Key-Identifier. Each match that is a live key is revoked with \
             every key it created (or only reported, by configuration) and labelled \
             true_positive; every other match false_positive."
        }
    }
}

fn http_method(method: Method) -> HttpMethod {
    match method {
        Method::Get => HttpMethod::Get,
        Method::Post => HttpMethod::Post,
        Method::Delete => HttpMethod::Delete,
        Method::Patch => HttpMethod::Patch,
    }
}

/// A type's schema and every schema it refers to, as named components.
fn collect<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((T::name().into_owned(), T::schema()));
    T::schemas(out);
}

fn json(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn uuid() -> ObjectBuilder {
    string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
}

/// A header that every response of its status carries. utoipa's `Header` has no `required`
/// field (OpenAPI 3.1's Header Object does): it goes into the flattened extension map, which
/// serialises its keys as they are.
fn required_header(header: Header) -> Header {
    let mut header = header;
    header.extensions = Some(Extensions::from_iter([("required", true)]));
    header
}

fn challenge_header(values: &[&str], description: &str) -> Header {
    required_header(
        HeaderBuilder::new()
            .schema(Some(string().enum_values(Some(values.iter().copied()))))
            .description(Some(description))
            .build(),
    )
}

fn retry_after_header(description: &str) -> Header {
    required_header(
        HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            ))
            .description(Some(description))
            .build(),
    )
}

fn unauthorized() -> Response {
    ResponseBuilder::new()
        .description(
            "No credentials, malformed credentials (two Authorization headers, a header and a \
             different ?token=, bytes outside RFC 6750's b64token), or a bad credential: an \
             unknown, revoked, expired or mistyped key and a forged, expired or foreign token \
             all read the same.",
        )
        .header(
            "WWW-Authenticate",
            challenge_header(
                &CHALLENGES_401,
                "`Bearer` when none was presented, `error=\"invalid_request\"` when malformed, \
                 `error=\"invalid_token\"` when bad.",
            ),
        )
        .content(JSON, json(Ref::from_schema_name(wire::ErrorBody::name())))
        .build()
}

/// The 403 of a route needing `scope`; `grants` when the endpoint also refuses scopes the
/// caller would grant without holding them (that 403 carries no challenge).
fn forbidden(scope: &str, grants: bool) -> Response {
    let description = if grants {
        format!(
            "The credential lacks the scope `{scope}` (with a challenge), or the request asks \
             for scopes the caller does not hold (`Cannot grant scopes you do not have`, \
             without one), or for limits looser than the acting key's own (`Cannot grant \
             limits looser than your own`, without one)."
        )
    } else {
        format!("The credential lacks the scope `{scope}`.")
    };
    let header = HeaderBuilder::new()
        .schema(Some(string().enum_values(Some([CHALLENGE_403]))))
        .description(Some("For a missing scope."))
        .build();
    let header = if grants {
        header
    } else {
        required_header(header)
    };
    ResponseBuilder::new()
        .description(description)
        .header("WWW-Authenticate", header)
        .content(JSON, json(Ref::from_schema_name(wire::ErrorBody::name())))
        .build()
}

fn unprocessable(causes: &[&str]) -> Response {
    ResponseBuilder::new()
        .description(format!(
            "Validation failed: {}. `detail` lists {{loc, msg, type}} in FastAPI's shape.",
            causes.join("; ")
        ))
        .content(
            JSON,
            json(Ref::from_schema_name(wire::ValidationErrorBody::name())),
        )
        .build()
}

fn too_many_requests(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .header(
            "Retry-After",
            retry_after_header("Seconds until a request may succeed again."),
        )
        .content(JSON, json(Ref::from_schema_name(wire::ErrorBody::name())))
        .build()
}

/// A 429 of a limit: `Retry-After` is absent for credits that never refill.
fn over_limit(description: &str) -> Response {
    let mut retry_after = retry_after_header(
        "Seconds until a request may succeed again; absent when the key's credits are \
         exhausted and never refill.",
    );
    retry_after.extensions = None;
    let text = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(string()))
            .description(Some(description))
            .build()
    };
    ResponseBuilder::new()
        .description(description)
        .header("Retry-After", retry_after)
        .header(
            "RateLimit-Policy",
            text("The rate limits that applied, e.g. `\"key\";q=100;w=60`."),
        )
        .header(
            "RateLimit",
            text("Where each stands, e.g. `\"key\";r=0;t=42, \"credits\";r=0`."),
        )
        .content(JSON, json(Ref::from_schema_name(wire::ErrorBody::name())))
        .build()
}

fn unavailable() -> Response {
    ResponseBuilder::new()
        .description(
            "A store or service the request needs is unavailable (the database, the user \
             store, signing). Never a 401: the credential was not judged.",
        )
        .header("Retry-After", retry_after_header("Seconds to wait: 1."))
        .content(JSON, json(Ref::from_schema_name(wire::ErrorBody::name())))
        .build()
}

/// The wire shapes of the core's request and response types, and of the error bodies, for
/// their schemas. Only the tests build values of them: to check that they serialise exactly
/// as the real types do.
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "built only by the tests; the document reads their schemas"
    )
)]
mod wire {
    use nexora_auth::{KeyId, MAX_KEY_NAME_LEN, MAX_SCOPE_LEN, MAX_SCOPES};
    use time::OffsetDateTime;

    use super::*;

    /// `{"detail": "…"}`: the body of every error but 422.
    #[derive(Serialize, ToSchema)]
    #[schema(as = Error)]
    pub(super) struct ErrorBody {
        /// What went wrong, in words that reveal nothing about any account or key.
        pub(super) detail: String,
    }

    /// The body of a 422: `{"detail": [{loc, msg, type}, …]}`, as FastAPI writes it.
    #[derive(Serialize, ToSchema)]
    #[schema(as = ValidationError)]
    pub(super) struct ValidationErrorBody {
        /// The problems found.
        pub(super) detail: Vec<ValidationIssue>,
    }

    /// A successful login.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct LoginResponse {
        /// The access token (a JWT), for `Authorization: Bearer`.
        pub(super) access_token: String,
        /// Always `bearer` (described by `token_type`).
        #[schema(schema_with = token_type)]
        pub(super) token_type: &'static str,
        /// Seconds until the token expires.
        #[schema(minimum = 1)]
        pub(super) expires_in: u64,
    }

    fn token_type() -> impl Into<RefOr<Schema>> {
        string()
            .enum_values(Some(["bearer"]))
            .description(Some("Always `bearer`."))
    }

    /// A request to create a key (the core's `NewKey`).
    #[derive(Serialize, ToSchema)]
    pub(super) struct CreateKeyRequest {
        /// The label (described by `key_name`).
        #[schema(schema_with = key_name)]
        pub(super) name: String,
        /// The scopes (described by `requested_scopes`).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(schema_with = requested_scopes)]
        pub(super) scopes: Option<Vec<String>>,
        /// When the key stops working (RFC 3339); never when absent or null. Must be in the
        /// future and no later than the year 9999 in UTC (else 422); kept as its UTC instant. A
        /// key created with a key expires no later than that key.
        #[serde(
            skip_serializing_if = "Option::is_none",
            with = "time::serde::rfc3339::option"
        )]
        pub(super) expires_at: Option<OffsetDateTime>,
        /// A rate limit; none when absent or null. A key created with a rate-limited key gets
        /// at most that key's rate (its rate when absent).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) rate_limit: Option<RateLimit>,
        /// Credits; none when absent or null. A key created with a metered key must have
        /// credits without refill, taken from that key's own.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) credits: Option<NewCredits>,
    }

    /// A rate limit: at most `limit` requests per `period_secs` (GCRA: a burst of `limit`
    /// passes, a steady stream at the rate is never refused).
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct RateLimit {
        /// Requests per period, also the largest burst.
        #[schema(minimum = 1, maximum = 100_000)]
        pub(super) limit: u32,
        /// The period in seconds, at most a day.
        #[schema(minimum = 1, maximum = 86_400)]
        pub(super) period_secs: u32,
    }

    /// How credits come back: `remaining` is set back to `amount` every `every_secs` (a reset,
    /// not a bucket).
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Refill {
        /// What `remaining` is set back to.
        #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
        pub(super) amount: u64,
        /// Seconds between refills, at most 366 days.
        #[schema(minimum = 1, maximum = 31_622_400)]
        pub(super) every_secs: u64,
    }

    /// Credits as a request sets them, counted from the request.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[schema(as = NewCredits)]
    pub(super) struct NewCredits {
        /// Requests the key may make in total (each authenticated request costs 1; managing
        /// keys costs 0). At 0 the key is refused with 429, never deleted.
        #[schema(minimum = 0, maximum = 1_000_000_000_000_u64)]
        pub(super) remaining: u64,
        /// The refill; none when absent or null.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) refill: Option<Refill>,
    }

    /// A key's credits as stored.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Credits {
        /// Credits left in the store (up to a lease of 10 per server instance may be out,
        /// spent or given back later).
        pub(super) remaining: u64,
        /// The refill; null without one.
        #[schema(required = true)]
        pub(super) refill: Option<Refill>,
        /// When the next refill sets `remaining` back; null without a refill.
        #[serde(with = "time::serde::rfc3339::option")]
        #[schema(required = true)]
        pub(super) next_refill_at: Option<OffsetDateTime>,
    }

    /// A change to a key (the core's `KeyChanges`): each field present is written; `null`
    /// removes a limit.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct UpdateKeyRequest {
        /// The new label (described by `optional_key_name`).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(schema_with = optional_key_name)]
        pub(super) name: Option<String>,
        /// The new rate limit, or null to remove it. A credential with limits of its own may
        /// only tighten limits (else 403).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) rate_limit: Option<Option<RateLimit>>,
        /// New credits counted from now, or null to remove them. A credential with limits of
        /// its own may only tighten limits (else 403).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) credits: Option<Option<NewCredits>>,
    }

    /// A request for a derived token (the core's `TokenRequest`); the body may be left out.
    #[derive(Serialize, ToSchema)]
    pub(super) struct TokenRequest {
        /// The scopes (described by `requested_scopes`).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(schema_with = requested_scopes)]
        pub(super) scopes: Option<Vec<String>>,
        /// The token's lifetime in seconds; the server's maximum (15 minutes by default) when
        /// absent or null. Capped at that maximum and at what is left of the key's life.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1)]
        pub(super) ttl_secs: Option<u64>,
    }

    /// A single-use WebSocket ticket (the core's `IssuedTicket`).
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct IssuedTicket {
        /// The ticket, for `?ticket=` on the WebSocket URL. Accepted once.
        #[schema(pattern = "^nxt_[0-9A-Za-z]{32}$")]
        pub(super) ticket: String,
        /// Seconds until it expires (30 by default).
        #[schema(minimum = 1)]
        pub(super) expires_in: u64,
    }

    /// A key's public view (the core's `KeyInfo`): never its value.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[schema(as = ApiKey)]
    pub(super) struct ApiKey {
        /// The key's id, embedded in the key itself; kept by rotation.
        #[schema(value_type = String, format = Uuid)]
        pub(super) id: KeyId,
        /// The label.
        pub(super) name: String,
        /// A non-secret fragment of the key, e.g. `nxr_4fGh2k…Xy3Q`.
        pub(super) display: String,
        /// The scopes (described by `granted_scopes`).
        #[schema(schema_with = granted_scopes)]
        pub(super) scopes: Vec<String>,
        /// Creation time.
        #[serde(with = "time::serde::rfc3339")]
        pub(super) created_at: OffsetDateTime,
        /// Last use, recorded at most once per interval; null before the first.
        #[serde(with = "time::serde::rfc3339::option")]
        #[schema(required = true)]
        pub(super) last_used_at: Option<OffsetDateTime>,
        /// Expiry; null for a key that does not expire.
        #[serde(with = "time::serde::rfc3339::option")]
        #[schema(required = true)]
        pub(super) expires_at: Option<OffsetDateTime>,
        /// What created the key.
        pub(super) created_by: CreatedBy,
        /// The key's rate limit; null without one.
        #[schema(required = true)]
        pub(super) rate_limit: Option<RateLimit>,
        /// The key's credits; null for a key without.
        #[schema(required = true)]
        pub(super) credits: Option<Credits>,
    }

    /// A key just created or rotated (the core's `CreatedKey`): the public view and the key's
    /// value, shown this once.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[schema(as = CreatedApiKey)]
    pub(super) struct CreatedApiKey {
        /// The key's id, embedded in the key itself; kept by rotation.
        #[schema(value_type = String, format = Uuid)]
        pub(super) id: KeyId,
        /// The label.
        pub(super) name: String,
        /// The full key. Shown only here, once.
        #[schema(pattern = "^nxr_[0-9A-Za-z]{60}$")]
        pub(super) key: String,
        /// A non-secret fragment of the key, e.g. `nxr_4fGh2k…Xy3Q`.
        pub(super) display: String,
        /// The scopes (described by `granted_scopes`).
        #[schema(schema_with = granted_scopes)]
        pub(super) scopes: Vec<String>,
        /// Creation time.
        #[serde(with = "time::serde::rfc3339")]
        pub(super) created_at: OffsetDateTime,
        /// Last use; null for a new or just rotated key.
        #[serde(with = "time::serde::rfc3339::option")]
        #[schema(required = true)]
        pub(super) last_used_at: Option<OffsetDateTime>,
        /// Expiry; null for a key that does not expire.
        #[serde(with = "time::serde::rfc3339::option")]
        #[schema(required = true)]
        pub(super) expires_at: Option<OffsetDateTime>,
        /// What created the key.
        pub(super) created_by: CreatedBy,
        /// The key's rate limit; null without one.
        #[schema(required = true)]
        pub(super) rate_limit: Option<RateLimit>,
        /// The key's credits; null for a key without.
        #[schema(required = true)]
        pub(super) credits: Option<Credits>,
    }

    /// What created a key: a user (a login session, or the application acting for its user),
    /// or another key, which a cascading revoke follows.
    #[derive(Serialize, ToSchema)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub(super) enum CreatedBy {
        /// A user.
        User,
        /// Another key.
        Key {
            /// The creating key's id.
            #[schema(value_type = String, format = Uuid)]
            key_id: KeyId,
        },
    }

    /// A page of the audit trail: `GET /users/me/audit-events`.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct AuditEventPage {
        /// The events, newest first.
        pub(super) events: Vec<AuditEvent>,
        /// The `before` of the next page; null on the last.
        #[schema(value_type = Option<String>, format = Uuid, required = true)]
        pub(super) next_before: Option<nexora_auth::audit::EventId>,
    }

    /// One event of the audit trail (the core's `AuditEvent`). Never a key, token or
    /// password.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct AuditEvent {
        /// The event id: a UUID version 7, so ids sort by time; the pagination cursor.
        #[schema(value_type = String, format = Uuid)]
        pub(super) id: nexora_auth::audit::EventId,
        /// When it happened (RFC 3339, microseconds).
        #[serde(with = "time::serde::rfc3339")]
        pub(super) at: OffsetDateTime,
        /// What happened (described by `audit_action`).
        #[schema(schema_with = audit_action)]
        pub(super) action: String,
        /// Who did it.
        pub(super) actor: Actor,
        /// Whose trail the event belongs to: the caller's id.
        #[schema(required = true)]
        pub(super) owner: Option<String>,
        /// What it was done to: a key id or a user id; null when nothing in particular.
        #[schema(required = true)]
        pub(super) target: Option<String>,
        /// The client address of the request, when there was one.
        #[schema(required = true)]
        pub(super) client: Option<String>,
        /// How it ended (described by `audit_outcome`).
        #[schema(schema_with = audit_outcome)]
        pub(super) outcome: String,
        /// Extra non-secret facts by name (`cascaded`, `cascade_root`, `reason`, `locked`,
        /// `scopes`, `grace_secs`, …): counts and short texts.
        pub(super) detail: BTreeMap<String, DetailValue>,
    }

    /// Who acted: a user session, an API key, the system (by name) or an anonymous caller.
    #[derive(Serialize, ToSchema)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub(super) enum Actor {
        /// A user session (a JWT from a login).
        User {
            /// The user's id.
            user_id: String,
        },
        /// An API key.
        Key {
            /// The key's id.
            #[schema(value_type = String, format = Uuid)]
            key_id: KeyId,
        },
        /// The system, by a short name (`cli`, `github-secret-scanning`).
        System {
            /// The name.
            name: String,
        },
        /// An unauthenticated caller (a login attempt).
        Anonymous,
    }

    /// A detail value: a count or a short text.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub(super) enum DetailValue {
        /// A count.
        Count(u64),
        /// A short text.
        Text(String),
    }

    fn audit_action() -> impl Into<RefOr<Schema>> {
        string()
            .enum_values(Some(
                nexora_auth::audit::AuditAction::ALL
                    .iter()
                    .map(|action| action.as_str()),
            ))
            .description(Some("What happened."))
    }

    fn audit_outcome() -> impl Into<RefOr<Schema>> {
        string()
            .enum_values(Some(["success", "failure", "denied"]))
            .description(Some(
                "`success`; `failure` (attempted and failed: a wrong password); `denied` (a \
                 rule refused it: a lock).",
            ))
    }

    /// Scopes a request asks for: at most 64, each as the core accepts it; or null.
    fn requested_scopes() -> impl Into<RefOr<Schema>> {
        ArrayBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::Array,
                Type::Null,
            ]))
            .items(scope())
            .max_items(Some(MAX_SCOPES))
            .description(Some(
                "The scopes to grant; all of the caller's when absent or null. Each must be one \
                 the caller holds (else 403).",
            ))
    }

    fn key_name() -> impl Into<RefOr<Schema>> {
        string()
            .min_length(Some(1))
            .max_length(Some(MAX_KEY_NAME_LEN))
            .pattern(Some(KEY_NAME_PATTERN))
            .description(Some(
                "The key's label: 1 to 100 characters after trimming whitespace, no control \
                 character.",
            ))
    }

    /// A new key name, or null (or absent) to keep the current one.
    fn optional_key_name() -> impl Into<RefOr<Schema>> {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ]))
            .min_length(Some(1))
            .max_length(Some(MAX_KEY_NAME_LEN))
            .pattern(Some(KEY_NAME_PATTERN))
            .description(Some(
                "The key's new label: 1 to 100 characters after trimming whitespace, no \
                 control character; unchanged when absent or null.",
            ))
    }

    fn granted_scopes() -> impl Into<RefOr<Schema>> {
        ArrayBuilder::new()
            .items(scope())
            .description(Some("The granted scopes, sorted."))
    }

    fn scope() -> ObjectBuilder {
        string()
            .min_length(Some(1))
            .max_length(Some(MAX_SCOPE_LEN))
            .pattern(Some(SCOPE_PATTERN))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use nexora_auth::{
        ApiKey as Key, AuditEvent, CreatedKey, JwtConfig, JwtKeys, KeyInfo, LoginResponse, NewKey,
        OwnerId, PepperRing, Scopes, SecretBytes, TokenAuthority, store::KeyRecord,
    };
    use serde_json::{Value, json};
    use time::{Duration, OffsetDateTime};

    use super::{wire, *};
    use crate::{
        ApiError,
        validation::{RequestBody, decode_json},
    };

    fn doc() -> Value {
        serde_json::to_value(document("/api")).expect("the document serialises")
    }

    /// What each endpoint can answer, written out by hand: the document must say exactly
    /// this, so a status added to an endpoint or lost from the document fails here.
    fn expected_statuses(endpoint: Endpoint) -> &'static [u16] {
        match endpoint {
            Endpoint::Login => &[200, 401, 413, 422, 429, 503],
            Endpoint::Me => &[200, 401, 429, 503],
            Endpoint::ListKeys => &[200, 401, 403, 503],
            Endpoint::CreateKey => &[201, 401, 403, 413, 422, 429, 503],
            Endpoint::RotateKey => &[200, 401, 403, 404, 409, 413, 422, 503],
            Endpoint::RevokeKey => &[204, 401, 403, 404, 422, 503],
            Endpoint::UpdateKey => &[200, 401, 403, 404, 413, 422, 503],
            Endpoint::DeriveToken => &[200, 401, 403, 413, 422, 429, 503],
            Endpoint::IssueTicket => &[200, 401, 413, 422, 503],
            Endpoint::AuditEvents => &[200, 401, 403, 422, 503],
            Endpoint::RevokeByPossession => &[202, 413, 422, 429, 503],
            Endpoint::GitHubSecretScanning => &[200, 401, 413, 422, 503],
        }
    }

    #[test]
    fn every_route_is_documented_with_every_status_it_can_answer() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        for route in &ROUTES {
            let path = format!("/api{}", route.path);
            let method = route.method.as_str().to_ascii_lowercase();
            let operation = &doc["paths"][&path][&method];
            assert!(operation.is_object(), "{method} {path} is not documented");
            assert_eq!(operation["summary"], route.summary);
            let statuses: BTreeSet<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|s| s.parse().unwrap())
                .collect();
            let expected: BTreeSet<u16> =
                expected_statuses(route.endpoint).iter().copied().collect();
            assert_eq!(statuses, expected, "{method} {path}");
            let security = &operation["security"];
            if route.authenticated {
                let scopes = json!(route.scope.into_iter().collect::<Vec<_>>());
                assert_eq!(security, &json!([{ BEARER: scopes }]), "{path}");
            } else {
                assert!(security.is_null(), "{path}");
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                let header = |name: &str| &response["headers"][name];
                match status.as_str() {
                    "204" => assert!(response["content"].is_null()),
                    "422" => assert_eq!(
                        response["content"][JSON]["schema"]["$ref"],
                        "#/components/schemas/ValidationError"
                    ),
                    s if s.starts_with('4') || s.starts_with('5') => assert_eq!(
                        response["content"][JSON]["schema"]["$ref"], "#/components/schemas/Error",
                        "{path} {s}"
                    ),
                    _ => assert!(response["content"][JSON]["schema"].is_object()),
                }
                match status.as_str() {
                    "401" if route.authenticated => {
                        assert_eq!(header("WWW-Authenticate")["required"], true, "{path}");
                    }
                    "403" => {
                        // Refusals of what the request asks (scopes not held, a credential
                        // that may not derive) carry no challenge.
                        let required = !matches!(
                            route.endpoint,
                            Endpoint::CreateKey | Endpoint::UpdateKey | Endpoint::DeriveToken
                        );
                        assert_eq!(
                            header("WWW-Authenticate")["required"].as_bool(),
                            required.then_some(true),
                            "{path}"
                        );
                    }
                    // A limit's 429: no Retry-After for credits that never refill.
                    "429" if route.authenticated => {
                        assert!(header("Retry-After")["required"].is_null(), "{path}");
                        assert!(header("RateLimit").is_object(), "{path}");
                    }
                    "429" | "503" => assert_eq!(header("Retry-After")["required"], true),
                    _ => assert!(response["headers"].is_null(), "{path} {status}"),
                }
            }
        }
        // Nothing else: the auth part documents exactly the table.
        let operations: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(operations, ROUTES.len());
    }

    /// Every `$ref` in the document names a component it holds.
    #[test]
    fn every_reference_resolves() {
        fn walk<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        refs.push(r);
                    }
                    map.values().for_each(|v| walk(v, refs));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let doc = doc();
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(refs.len() > 10);
        for r in refs {
            let pointer = r.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
    }

    #[test]
    fn a_guarded_route_documents_the_layer() {
        let ws = guarded(
            OperationBuilder::new(),
            AuthRequirement::required().accept_query_token(),
            None,
        )
        .build();
        let ws = serde_json::to_value(ws).unwrap();
        assert_eq!(ws["security"], json!([{ BEARER: [] }, { QUERY_TOKEN: [] }]));
        let tickets = guarded(
            OperationBuilder::new(),
            AuthRequirement::required().accept_ticket(),
            None,
        )
        .build();
        assert_eq!(
            serde_json::to_value(tickets).unwrap()["security"],
            json!([{ BEARER: [] }, { QUERY_TICKET: [] }])
        );
        assert!(ws["parameters"].is_null());
        let keys: Vec<&String> = ws["responses"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["401", "503"]);
        let scoped = guarded(
            OperationBuilder::new(),
            AuthRequirement::required(),
            Some("agents:read"),
        )
        .build();
        let scoped = serde_json::to_value(scoped).unwrap();
        assert!(scoped["parameters"].is_null());
        assert_eq!(
            scoped["responses"]["403"]["headers"]["WWW-Authenticate"]["required"],
            true
        );
    }

    // --- The mirrors serialise exactly as the core's types. ----------------------------

    fn api_key(info: &KeyInfo) -> wire::ApiKey {
        wire::ApiKey {
            id: info.id,
            name: info.name.clone(),
            display: info.display.clone(),
            scopes: info.scopes.iter().map(str::to_owned).collect(),
            created_at: info.created_at,
            last_used_at: info.last_used_at,
            expires_at: info.expires_at,
            created_by: created_by(info.created_by),
            rate_limit: rate_limit(info.rate_limit),
            credits: credits(info.credits),
        }
    }

    fn created_api_key(created: &CreatedKey) -> wire::CreatedApiKey {
        let info = &created.info;
        wire::CreatedApiKey {
            id: info.id,
            name: info.name.clone(),
            key: created.key.expose().to_owned(),
            display: info.display.clone(),
            scopes: info.scopes.iter().map(str::to_owned).collect(),
            created_at: info.created_at,
            last_used_at: info.last_used_at,
            expires_at: info.expires_at,
            created_by: created_by(info.created_by),
            rate_limit: rate_limit(info.rate_limit),
            credits: credits(info.credits),
        }
    }

    fn rate_limit(rate: Option<nexora_auth::RateLimit>) -> Option<wire::RateLimit> {
        rate.map(|r| wire::RateLimit {
            limit: r.limit,
            period_secs: r.period_secs,
        })
    }

    fn refill(refill: Option<nexora_auth::Refill>) -> Option<wire::Refill> {
        refill.map(|r| wire::Refill {
            amount: r.amount,
            every_secs: r.every_secs,
        })
    }

    fn credits(credits: Option<nexora_auth::Credits>) -> Option<wire::Credits> {
        credits.map(|c| wire::Credits {
            remaining: c.remaining,
            refill: refill(c.refill),
            next_refill_at: c.next_refill(),
        })
    }

    fn created_by(by: Option<nexora_auth::KeyId>) -> wire::CreatedBy {
        match by {
            None => wire::CreatedBy::User,
            Some(key_id) => wire::CreatedBy::Key { key_id },
        }
    }

    /// Records in every state the wire shows differently: with and without expiry, last use
    /// and creating key; times with and without fractions of a second.
    fn records() -> Vec<(KeyRecord, Key)> {
        let peppers = PepperRing::new(
            1,
            SecretBytes::new(b"test pepper of at least thirty-two bytes!".to_vec()),
        )
        .unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let parent = Key::generate().unwrap().id();
        let limited = (
            nexora_auth::RateLimit::new(100, 60),
            Some(nexora_auth::Credits {
                remaining: 7,
                refill: nexora_auth::Refill::new(1000, 86_400),
                refilled_at: at + Duration::nanoseconds(5_000),
            }),
        );
        [
            (None, None, None, at, (None, None)),
            (
                Some(at + Duration::days(30)),
                Some(at + Duration::milliseconds(1_500)),
                Some(parent),
                at + Duration::nanoseconds(123_456_789),
                limited,
            ),
        ]
        .into_iter()
        .map(
            |(expires_at, last_used_at, created_by, created_at, (rate_limit, credits))| {
                let key = Key::generate().unwrap();
                let record = KeyRecord {
                    id: key.id(),
                    owner: OwnerId::new("alice"),
                    name: "CI \"pipeline\" ✓".into(),
                    scopes: Scopes::new(["keys:manage", "agents:read"]).unwrap(),
                    created_at,
                    last_used_at,
                    expires_at,
                    revoked_at: None,
                    display: key.display_fragment(),
                    digest: peppers.digest(&key),
                    previous: None,
                    created_by,
                    rate_limit,
                    credits,
                };
                (record, key)
            },
        )
        .collect()
    }

    #[test]
    fn the_key_mirrors_serialise_as_the_core_types() {
        for (record, key) in records() {
            let info = KeyInfo::from(&record);
            assert_eq!(
                serde_json::to_value(api_key(&info)).unwrap(),
                serde_json::to_value(&info).unwrap()
            );
            let created = CreatedKey { info, key };
            assert_eq!(
                serde_json::to_value(created_api_key(&created)).unwrap(),
                serde_json::to_value(&created).unwrap()
            );
        }
    }

    #[test]
    fn the_login_mirror_serialises_as_the_core_type() {
        let secret = SecretBytes::new(b"test jwt secret of at least thirty-two bytes".to_vec());
        let tokens = TokenAuthority::new(
            JwtKeys::hs256(&secret).unwrap(),
            JwtConfig::new("nexora", "nexora-api"),
        )
        .unwrap();
        let token = tokens
            .issue(
                &OwnerId::new("alice"),
                &Scopes::new(["agents:read"]).unwrap(),
            )
            .unwrap();
        let mirror = wire::LoginResponse {
            access_token: token.token.expose().to_owned(),
            token_type: "bearer",
            expires_in: token.expires_in,
        };
        assert_eq!(
            serde_json::to_value(mirror).unwrap(),
            serde_json::to_value(LoginResponse { token }).unwrap()
        );
    }

    /// A body written from the request mirror decodes into the core's `NewKey` with the same
    /// values, with every optional field present or absent.
    #[test]
    fn the_request_mirror_decodes_as_the_core_type() {
        let at = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
            + Duration::nanoseconds(5_000_000);
        for (scopes, expires_at) in [
            (None, None),
            (Some(vec!["agents:read".to_owned()]), Some(at)),
        ] {
            let mirror = wire::CreateKeyRequest {
                name: "deploy bot".into(),
                scopes: scopes.clone(),
                expires_at,
                rate_limit: expires_at.map(|_| wire::RateLimit {
                    limit: 10,
                    period_secs: 60,
                }),
                credits: expires_at.map(|_| wire::NewCredits {
                    remaining: 50,
                    refill: Some(wire::Refill {
                        amount: 50,
                        every_secs: 3600,
                    }),
                }),
            };
            let body = serde_json::to_vec(&mirror).unwrap();
            let real: NewKey = decode_json(RequestBody::json(&body)).unwrap();
            assert_eq!(real.name, "deploy bot");
            assert_eq!(
                real.scopes
                    .map(|s| s.iter().map(str::to_owned).collect::<Vec<_>>()),
                scopes
            );
            assert_eq!(real.expires_at, expires_at);
            assert_eq!(
                real.rate_limit,
                expires_at.and_then(|_| nexora_auth::RateLimit::new(10, 60))
            );
            assert_eq!(
                real.credits,
                expires_at.and_then(|_| nexora_auth::NewCredits::new(
                    50,
                    nexora_auth::Refill::new(50, 3600)
                ))
            );
        }
    }

    /// The derived-token and ticket mirrors serialise (and decode) as the core's types.
    #[tokio::test]
    async fn the_token_and_ticket_mirrors_match_the_core_types() {
        use std::sync::Arc;

        use nexora_auth::{Authenticator, MemoryKeyStore, MemoryTicketStore, TokenRequest};
        let secret = SecretBytes::new(b"test jwt secret of at least thirty-two bytes".to_vec());
        let peppers = PepperRing::new(
            1,
            SecretBytes::new(b"test pepper of at least thirty-two bytes!".to_vec()),
        )
        .unwrap();
        let auth = Authenticator::builder(Arc::new(MemoryKeyStore::new()), peppers)
            .tokens(
                TokenAuthority::new(
                    JwtKeys::hs256(&secret).unwrap(),
                    JwtConfig::new("nexora", "nexora-api"),
                )
                .unwrap(),
            )
            .ws_tickets(Arc::new(MemoryTicketStore::new()))
            .build()
            .unwrap();
        let all = Scopes::new(["agents:read"]).unwrap();
        let created = auth
            .create_key_for(&OwnerId::new("alice"), &all, NewKey::named("k"))
            .await
            .unwrap();
        let key = auth.authenticate(created.key.expose()).await.unwrap();
        let derived = auth.derive_token(&key, TokenRequest::new()).await.unwrap();
        let mirror = wire::LoginResponse {
            access_token: derived.token.token.expose().to_owned(),
            token_type: "bearer",
            expires_in: derived.token.expires_in,
        };
        assert_eq!(
            serde_json::to_value(mirror).unwrap(),
            serde_json::to_value(&derived).unwrap()
        );
        let issued = auth.issue_ticket(&key, Some("chat-1")).await.unwrap();
        let mirror = wire::IssuedTicket {
            ticket: issued.ticket.expose().to_owned(),
            expires_in: issued.expires_in,
        };
        assert_eq!(
            serde_json::to_value(mirror).unwrap(),
            serde_json::to_value(&issued).unwrap()
        );
        for (scopes, ttl_secs) in [
            (None, None),
            (Some(vec!["agents:read".to_owned()]), Some(60)),
        ] {
            let mirror = wire::TokenRequest {
                scopes: scopes.clone(),
                ttl_secs,
            };
            let body = serde_json::to_vec(&mirror).unwrap();
            let real: TokenRequest = decode_json(RequestBody::json(&body)).unwrap();
            assert_eq!(
                real.scopes
                    .map(|s| s.iter().map(str::to_owned).collect::<Vec<_>>()),
                scopes
            );
            assert_eq!(real.ttl_secs, ttl_secs);
        }
    }

    /// A page written from real events (every actor kind, with and without owner, target,
    /// client and detail) serialises exactly as its mirror.
    #[test]
    fn the_audit_mirror_serialises_as_the_core_type() {
        use nexora_auth::audit::{
            Actor, AuditAction, AuditDetail, AuditOutcome, DetailValue, EventId,
        };
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
            + Duration::microseconds(123_456);
        let key_id = Key::generate().unwrap().id();
        let mut detail = AuditDetail::new();
        detail.insert("cascaded", 2_u64);
        detail.insert("reason", "wrong_password");
        let events: Vec<AuditEvent> = [
            Actor::User {
                user_id: OwnerId::new("u-1"),
            },
            Actor::Key { key_id },
            Actor::system("cli"),
            Actor::Anonymous,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, actor)| AuditEvent {
            id: EventId::parse_str(&format!("0198c0de-0000-7000-8000-00000000000{i}")).unwrap(),
            at,
            action: AuditAction::ALL[i],
            actor,
            owner: (i != 3).then(|| OwnerId::new("u-1")),
            target: (i != 2).then(|| key_id.to_string()),
            client: (i % 2 == 0).then(|| "2001:db8::7".parse().unwrap()),
            outcome: [AuditOutcome::Success, AuditOutcome::Failure][i % 2],
            detail: if i == 0 {
                detail.clone()
            } else {
                AuditDetail::new()
            },
        })
        .collect();
        let mirror = wire::AuditEventPage {
            events: events
                .iter()
                .map(|e| wire::AuditEvent {
                    id: e.id,
                    at: e.at,
                    action: e.action.as_str().into(),
                    actor: match &e.actor {
                        Actor::User { user_id } => wire::Actor::User {
                            user_id: user_id.as_str().into(),
                        },
                        Actor::Key { key_id } => wire::Actor::Key { key_id: *key_id },
                        Actor::System { name } => wire::Actor::System {
                            name: name.to_string(),
                        },
                        _ => wire::Actor::Anonymous,
                    },
                    owner: e.owner.as_ref().map(|o| o.as_str().into()),
                    target: e.target.clone(),
                    client: e.client.map(|c| c.to_string()),
                    outcome: e.outcome.as_str().into(),
                    detail: e
                        .detail
                        .iter()
                        .map(|(name, value)| {
                            let value = match value {
                                DetailValue::Count(n) => wire::DetailValue::Count(*n),
                                DetailValue::Text(t) => wire::DetailValue::Text(t.clone()),
                                _ => unreachable!("the test writes counts and texts"),
                            };
                            (name.to_owned(), value)
                        })
                        .collect(),
                })
                .collect(),
            next_before: Some(events[3].id),
        };
        let real = crate::endpoints::AuditPage {
            events: &events,
            next_before: Some(events[3].id),
        };
        assert_eq!(
            serde_json::to_value(mirror).unwrap(),
            serde_json::to_value(real).unwrap()
        );
    }

    #[test]
    fn the_error_mirrors_serialise_as_the_responses() {
        let not_found = ApiError::RouteNotFound.response();
        let mirror = wire::ErrorBody {
            detail: "Not Found".into(),
        };
        assert_eq!(
            not_found.body.as_deref(),
            Some(serde_json::to_string(&mirror).unwrap().as_str())
        );
        let issues = vec![ValidationIssue::new(
            vec!["body".into(), "scopes".into(), 2.into()],
            "Input should be a valid string",
            "string_type",
        )];
        let invalid = ApiError::Validation(issues.clone()).response();
        let mirror = wire::ValidationErrorBody { detail: issues };
        assert_eq!(
            invalid.body.as_deref(),
            Some(serde_json::to_string(&mirror).unwrap().as_str())
        );
    }

    /// The schemas carry the core's limits and the fields every body always holds.
    #[test]
    fn the_schemas_carry_the_cores_limits() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let name = &schemas["CreateKeyRequest"]["properties"]["name"];
        assert_eq!(
            (&name["minLength"], &name["maxLength"]),
            (&json!(1), &json!(100))
        );
        assert_eq!(name["pattern"], KEY_NAME_PATTERN);
        let scopes = &schemas["CreateKeyRequest"]["properties"]["scopes"];
        assert_eq!(scopes["type"], json!(["array", "null"]));
        assert_eq!(scopes["maxItems"], 64);
        assert_eq!(scopes["items"]["maxLength"], 128);
        let email = &schemas["LoginRequest"]["properties"]["email"];
        assert_eq!(email["maxLength"], 254);
        assert_eq!(email["pattern"], NO_CONTROL_CHARACTERS);
        assert_eq!(
            schemas["LoginRequest"]["required"],
            json!(["email", "password"])
        );
        assert_eq!(schemas["CreateKeyRequest"]["required"], json!(["name"]));
        assert_eq!(
            schemas["ApiKey"]["required"],
            json!([
                "id",
                "name",
                "display",
                "scopes",
                "created_at",
                "last_used_at",
                "expires_at",
                "created_by",
                "rate_limit",
                "credits"
            ])
        );
        assert_eq!(schemas["User"]["required"], json!(["id", "email"]));
        let rate = &schemas["RateLimit"]["properties"];
        assert_eq!(
            (
                rate["limit"]["maximum"].clone(),
                rate["period_secs"]["maximum"].clone()
            ),
            (
                json!(nexora_auth::limits::MAX_RATE_LIMIT),
                json!(nexora_auth::limits::MAX_PERIOD_SECS)
            )
        );
        let refill = &schemas["Refill"]["properties"];
        assert_eq!(
            (
                refill["amount"]["maximum"].clone(),
                refill["every_secs"]["maximum"].clone()
            ),
            (
                json!(nexora_auth::limits::MAX_CREDITS),
                json!(nexora_auth::limits::MAX_REFILL_SECS)
            )
        );
        assert_eq!(
            schemas["NewCredits"]["properties"]["remaining"]["maximum"],
            json!(nexora_auth::limits::MAX_CREDITS)
        );
    }
}
