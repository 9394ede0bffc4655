//! The HTTP application: the library's ready router plus the server's own routes.

use std::time::{Duration, Instant};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{
        Request, State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use nexora_auth_axum::{
    Api, AuthLayer, Authenticated, RequireScope, api_router, error_response,
    nexora_auth_http::{
        ApiError,
        websocket::{SocketClose, until_credential_ends},
    },
    scopes::AgentsRead,
};
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

use crate::{
    config::ServeArgs,
    db::Database,
    openapi::{self, Agent, Health},
    page,
};

/// Shared state of the server's own routes.
#[derive(Clone)]
pub(crate) struct AppState {
    api: Api,
    db: Database,
}

impl AppState {
    pub(crate) fn new(api: Api, db: Database) -> Self {
        Self { api, db }
    }
}

/// `GET /api/agents`: a sample protected resource (scope `agents:read`).
async fn agents(_caller: RequireScope<AgentsRead>) -> Json<[Agent; 2]> {
    Json([
        Agent {
            id: "agent-research",
            name: "Research assistant",
        },
        Agent {
            id: "agent-support",
            name: "Support triage",
        },
    ])
}

/// `GET /api/ws/{chat_id}?token=…` or `?ticket=…`: echoes text frames. Authentication (header,
/// `?token=`, or a single-use ticket for this chat) runs in the route layer, so a bad token or
/// a used ticket is a 401 before any upgrade. The socket lives no
/// longer than its credential: when the key is revoked, rotated or expires, the token expires
/// or the user is disabled, it is closed with 4401 (1011 when the database cannot tell),
/// within the verification cache's bound (`--cache-ceiling-ms`).
async fn chat_socket(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    upgrade: WebSocketUpgrade,
) -> Response {
    let authenticator = state.api.authenticator().clone();
    upgrade.on_upgrade(move |mut socket| async move {
        let owner = principal.owner().clone();
        tracing::debug!(owner = %owner, "websocket opened");
        match until_credential_ends(&authenticator, &principal, echo(&mut socket)).await {
            Ok(()) => tracing::debug!(owner = %owner, "websocket closed"),
            Err(close) => {
                tracing::info!(
                    owner = %owner,
                    code = close.code,
                    reason = close.reason,
                    "websocket closed: its credential ended"
                );
                send_close(socket, close).await;
            }
        }
    })
}

/// Echoes text frames until the client leaves.
async fn echo(socket: &mut WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let keep_open = match message {
            Message::Text(text) => socket.send(Message::Text(text)).await.is_ok(),
            Message::Close(_) => false,
            _ => true,
        };
        if !keep_open {
            break;
        }
    }
}

/// How long a socket the server closes waits for the client's Close frame before dropping the
/// connection.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Sends `close` and reads until the client answers with its own Close (the closing
/// handshake), or for [`CLOSE_HANDSHAKE`] at most.
async fn send_close(mut socket: WebSocket, close: SocketClose) {
    let frame = CloseFrame {
        code: close.code,
        reason: close.reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
            while let Some(Ok(_)) = socket.recv().await {}
        })
        .await;
    }
}

async fn jwks(State(state): State<AppState>) -> Response {
    let body = match state.api.authenticator().tokens() {
        Some(tokens) => {
            serde_json::to_value(tokens.jwks()).unwrap_or_else(|_| serde_json::json!({"keys": []}))
        }
        None => serde_json::json!({"keys": []}),
    };
    Json(body).into_response()
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.db.ping().await {
        Json(Health { status: "ready" }).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"detail": "Database unavailable"})),
        )
            .into_response()
    }
}

async fn not_found() -> Response {
    error_response(&ApiError::RouteNotFound)
}

async fn method_not_allowed() -> Response {
    error_response(&ApiError::MethodNotAllowed { allow: None })
}

/// Every error leaves as `{"detail": …}`: responses from layers and extractors that answer
/// in plain text (body limit, timeout, a non-upgrade request to the WebSocket route) are
/// rewritten with the status's standard reason.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return error_response(&ApiError::PayloadTooLarge);
    }
    let reason = status.canonical_reason().unwrap_or("Error");
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        Body::from(serde_json::json!({"detail": reason}).to_string()),
    )
}

/// One log line per request: method, path (never the query string, which may hold a
/// `?token=`), status and latency. Headers are never logged.
async fn access_log(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path = %path,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// The whole application.
pub(crate) fn router(state: AppState, args: &ServeArgs) -> Router {
    let auth = state.api.authenticator().clone();
    let body_limit = state.api.largest_body_limit();
    // Serialising utoipa's document types cannot fail: they hold strings, numbers and maps
    // with string keys only.
    let openapi_json = Bytes::from(
        openapi::document(state.api.scanning().is_some())
            .to_json()
            .expect("the OpenAPI document serialises"),
    );
    let openapi = move || {
        let body = openapi_json.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
    };
    // The principal carries the client address behind the same trusted proxies as the API's.
    let layer = || AuthLayer::new(auth.clone()).trusted_proxies(state.api.proxies().clone());
    let own_api = Router::new()
        .route("/agents", get(agents).route_layer(layer()))
        .route(
            "/ws/{chat_id}",
            get(chat_socket).route_layer(layer().accept_query_token().accept_ticket()),
        )
        .route("/openapi.json", get(openapi))
        .with_state(state.clone());
    Router::new()
        .nest("/api", api_router(state.api.clone()).merge(own_api))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .merge(page::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // A layer, not `DefaultBodyLimit`: the library's handlers read the raw body, and this
        // bounds it for every route (413 on Content-Length at once, or mid-stream). It is the
        // largest limit of any endpoint (`--max-body-bytes`, or a secret-scanning report's
        // 1 MiB when that is served); each auth endpoint also reads no more than its own.
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(args.request_timeout_secs.max(1)),
        ))
        .layer(middleware::from_fn(json_errors))
        .layer(tower::util::MapResponseLayer::new(
            page::security_headers as fn(Response) -> Response,
        ))
        .layer(middleware::from_fn(access_log))
}
