//! axum and tower glue for [`nexora_auth`].
//!
//! # Add auth to an existing app
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use nexora_auth::Authenticator;
//! use nexora_auth_axum::{AuthLayer, RequireScope, api_router, scopes::AgentsRead};
//!
//! async fn agents(caller: RequireScope<AgentsRead>) -> String {
//!     format!("agents of {}", caller.owner())
//! }
//!
//! async fn serve(auth: Authenticator, app: Router) -> std::io::Result<()> {
//!     let app = app
//!         .route("/api/agents", get(agents).route_layer(AuthLayer::new(auth.clone())))
//!         .nest("/api", api_router(auth)); // login + API key management
//!     axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8000").await?, app).await
//! }
//! ```
//!
//! # What is here, and what is not
//!
//! * [`AuthLayer`]: a tower [`Layer`] that authenticates every request and stores the
//!   [`Principal`] in the request extensions, or answers the error itself (401, 503, …).
//!   [`AuthLayer::accept_query_token`] and [`AuthLayer::accept_ticket`] are for WebSocket
//!   routes (`?token=`, a single-use `?ticket=`);
//!   [`AuthLayer::optional`] lets requests without credentials through.
//! * Extractors: [`Authenticated`] (401 without a principal), `Option<Authenticated>`, and
//!   [`RequireScope`] (403 without the scope).
//! * [`api_router`]: the product's endpoints, to be nested under `/api`.
//!
//! No rule lives here. Credential parsing, routing (404, 405, `HEAD`), limits, the order of
//! checks, statuses, bodies and headers all come from [`nexora_auth_http`]; this crate
//! converts requests and responses, so the actix-web crate answers every request
//! byte-for-byte the same (a shared HTTP table tests both).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    convert::Infallible,
    fmt,
    net::SocketAddr,
    task::{Context, Poll},
};

use axum::{
    Router,
    extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;
use nexora_auth::Principal;
#[cfg(doc)]
use nexora_auth::{AuthError, Authenticator};
use nexora_auth_http::{
    ApiError, BodyError, Guard, HeaderText, LimitHeaders, RequestHeaders,
    scopes::{ScopeName, Scoped},
};
use tower::{Layer, Service};

pub use nexora_auth;
pub use nexora_auth_http::{self, Api, scopes};

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// Copies a response of the HTTP layer into an `http` response, with any body type that can
/// hold a `String`.
fn to_http<B: From<String>>(response: nexora_auth_http::Response) -> http::Response<B> {
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        let value = match value {
            HeaderText::Static(text) => HeaderValue::from_static(text),
            HeaderText::Seconds(seconds) => HeaderValue::from(seconds),
            // The HTTP layer writes visible ASCII only; a value that is not is left out.
            HeaderText::Text(text) => match HeaderValue::try_from(text) {
                Ok(value) => value,
                Err(_) => continue,
            },
        };
        headers.insert(name, value);
    }
    let mut out = http::Response::new(B::from(response.body.unwrap_or_default()));
    // The HTTP layer only produces valid statuses.
    *out.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *out.headers_mut() = headers;
    out
}

/// The axum response for `error` (see [`AuthRejection`]).
pub fn error_response(error: &ApiError) -> Response {
    to_http(error.response())
}

/// The request headers, for the HTTP layer.
struct Headers<'a>(&'a HeaderMap);

impl RequestHeaders for Headers<'_> {
    fn values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }
}

/// A tower [`Layer`] that authenticates each request with an [`Authenticator`].
///
/// On success the [`Principal`] is inserted into the request extensions (read it with
/// [`Authenticated`] or [`RequireScope`]); otherwise the layer answers the core's error
/// response and the inner service is not called. Defaults: credentials required, from the
/// `Authorization: Bearer` header only.
///
/// Use it with `Router::route_layer` so that unknown routes stay 404 rather than 401.
#[derive(Clone, Debug)]
pub struct AuthLayer(Guard);

nexora_auth_http::guard_builder!(AuthLayer);

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            guard: self.0.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    guard: Guard,
}

impl<S> fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("requirement", &self.guard.requirement())
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The clone is not ready; swap so that we call the instance `poll_ready` prepared.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        // Header values and the URI are reference-counted: cheap to take into the future,
        // which must not borrow the (non-`Sync`) request across an await. Two values are
        // enough (the parser refuses a second `Authorization` header), and need no allocation.
        let mut headers = request
            .headers()
            .get_all(http::header::AUTHORIZATION)
            .iter();
        let authorization = [headers.next().cloned(), headers.next().cloned()];
        let uri = request.uri().clone();
        let client = guard.client(peer(request.extensions()), &Headers(request.headers()));
        Box::pin(async move {
            let values = authorization.iter().flatten().map(HeaderValue::as_bytes);
            match guard.admit(values, uri.path(), uri.query(), client).await {
                Ok(admitted) => {
                    if let Some(principal) = admitted.principal {
                        request.extensions_mut().insert(principal);
                    }
                    let mut response = inner.call(request).await?;
                    if let Some(limits) = LimitHeaders::of(&admitted.usage) {
                        let headers = response.headers_mut();
                        for (name, value) in limits.pairs() {
                            if let Ok(value) = HeaderValue::from_str(value) {
                                headers.insert(name, value);
                            }
                        }
                    }
                    Ok(response)
                }
                Err(error) => Ok(to_http(error.response())),
            }
        })
    }
}

nexora_auth_http::adapter_types! {
    /// The authenticated caller, put there by [`AuthLayer`]. 401 `Not authenticated` when the
    /// request has no principal (an optional layer saw no credentials, or no layer ran).
    /// `Option<Authenticated>` never rejects.
    ;
    /// The authenticated caller, who must hold scope `S` (e.g.
    /// [`AgentsRead`](nexora_auth_http::scopes::AgentsRead)): 401 without a principal, 403
    /// `Insufficient permissions` with `WWW-Authenticate: Bearer error="insufficient_scope"`
    /// without the scope.
    ;
    /// An [`ApiError`] (or a core [`AuthError`]) as an axum response: status, `{"detail": …}`
    /// body and headers exactly as [`ApiError::response`] says. Return it from handlers.
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Self)
            .ok_or(AuthRejection(ApiError::MissingCredentials))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Authenticated {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned().map(Self))
    }
}

impl<S: ScopeName, St: Send + Sync> FromRequestParts<St> for RequireScope<S> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let Authenticated(principal) =
            <Authenticated as FromRequestParts<St>>::from_request_parts(parts, state).await?;
        Ok(Self(Scoped::check(principal)?))
    }
}

/// The TCP peer's address, known when the app is served with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
fn peer(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

async fn handle(State(api): State<Api>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let peer = peer(&parts.extensions);
    let headers = Headers(&parts.headers);
    let request = nexora_auth_http::Request::new(parts.method.as_str(), parts.uri.path(), &headers)
        .query(parts.uri.query())
        .peer(peer)
        .principal(parts.extensions.get::<Principal>());
    let response = nexora_auth_http::handle(&api, request, |limit| async move {
        axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| BodyError)
    })
    .await;
    to_http(response)
}

/// The product's auth endpoints ([`nexora_auth_http::routes::ROUTES`]), to be nested under
/// `/api` (`Router::new().nest("/api", api_router(auth))`); takes an [`Authenticator`] or an
/// [`Api`] with settings (body limit, trusted proxies):
///
/// * `POST /auth/token` (an API key only): a short-lived token derived from the key
/// * `POST /auth/ws-tickets`: a single-use WebSocket ticket
/// * `POST /auth/login` (no credentials; failed logins are throttled per email, and per client
///   address when the app is served with `into_make_service_with_connect_info::<SocketAddr>()`:
///   the peer, or what the forwarding header says when the peer is one of the
///   [trusted proxies](Api::trusted_proxies))
/// * `GET /users/me`
/// * `GET`, `POST /users/me/api-keys`
/// * `POST /users/me/api-keys/{key_id}/rotate`
/// * `DELETE /users/me/api-keys/{key_id}`
///
/// Behaviour is [`nexora_auth_http::handle`]'s, routing included: the router is one fallback
/// that hands every request below its mount point to the HTTP layer's route table. Every
/// route but login authenticates the `Authorization` header itself (or reuses the principal of
/// an outer [`AuthLayer`]); key management needs scope `keys:manage`. Unknown paths answer 404
/// `{"detail":"Not Found"}` and known paths with another method 405 `{"detail":"Method Not
/// Allowed"}` with `Allow`, both before any authentication. Routes merged into this router
/// are matched first.
pub fn api_router<S>(api: impl Into<Api>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().fallback(handle).with_state(api.into())
}
