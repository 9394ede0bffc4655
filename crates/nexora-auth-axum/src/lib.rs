//! axum and tower glue for [`nexora_auth`].
//!
//! # Add auth to an existing app
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use nexora_auth::{Authenticator, scopes::AgentsRead};
//! use nexora_auth_axum::{AuthLayer, RequireScope, api_router};
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
//!   [`AuthLayer::accept_query_token`] is for WebSocket routes (`?token=`);
//!   [`AuthLayer::optional`] lets requests without credentials through.
//! * Extractors: [`Authenticated`] (401 without a principal), `Option<Authenticated>`, and
//!   [`RequireScope`] (403 without the scope).
//! * [`api_router`]: the product's endpoints, to be nested under `/api`.
//!
//! No rule lives here. Credential parsing, the order of checks, statuses, bodies and
//! `WWW-Authenticate` challenges all come from [`nexora_auth::api`] and
//! [`AuthError::response`]; this crate copies them into axum types, so the actix-web crate
//! answers every request byte-for-byte the same (a shared HTTP table tests both).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    convert::Infallible,
    fmt,
    marker::PhantomData,
    net::SocketAddr,
    ops::Deref,
    task::{Context, Poll},
};

use axum::{
    Router,
    body::Body,
    extract::{
        ConnectInfo, FromRequestParts, OptionalFromRequestParts, Path, Request, State,
        rejection::PathRejection,
    },
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use futures_util::future::BoxFuture;
use nexora_auth::{
    AuthError, AuthRequirement, Authenticator, Principal,
    api::{self, ApiResponse, RequestBody},
    proxy::{self, RequestOrigin},
    scopes::ScopeName,
};
use tower::{Layer, Service};

pub use nexora_auth;

/// An [`AuthError`] as an axum response: status, `{"detail": …}` body, `WWW-Authenticate` and
/// `Retry-After` exactly as [`AuthError::response`] says. Return it from handlers.
#[derive(Debug)]
pub struct AuthRejection(pub AuthError);

impl From<AuthError> for AuthRejection {
    fn from(error: AuthError) -> Self {
        Self(error)
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// Builds the HTTP response of an error, with any body type that can hold a `String`.
fn error_http<B: From<String>>(error: &AuthError) -> http::Response<B> {
    let shape = error.response();
    let mut response = http::Response::new(B::from(shape.body));
    *response.status_mut() = status(shape.status);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(nexora_auth::ErrorResponse::CONTENT_TYPE),
    );
    if let Some(challenge) = shape.www_authenticate {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    if let Some(seconds) = shape.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The axum response for `error` (see [`AuthRejection`]).
pub fn error_response(error: &AuthError) -> Response {
    error_http::<Body>(error)
}

fn status(code: u16) -> StatusCode {
    // The core only produces valid status codes (100..=599); 500 is a safe floor regardless.
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn api_response(result: Result<ApiResponse, AuthError>) -> Response {
    match result {
        Ok(ApiResponse {
            status: code,
            body: Some(body),
            ..
        }) => (
            status(code),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(ApiResponse::CONTENT_TYPE),
            )],
            body,
        )
            .into_response(),
        Ok(ok) => status(ok.status).into_response(),
        Err(error) => error_response(&error),
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
pub struct AuthLayer {
    auth: Authenticator,
    requirement: AuthRequirement,
}

impl AuthLayer {
    /// Requires a valid credential in the `Authorization` header.
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth,
            requirement: AuthRequirement::required(),
        }
    }

    /// Also accepts the credential in `?token=` (for WebSocket routes). A header *and* a
    /// different `?token=` are refused. Off by default.
    pub fn accept_query_token(mut self) -> Self {
        self.requirement = self.requirement.accept_query_token();
        self
    }

    /// Lets requests *without* credentials through with no principal (use
    /// `Option<Authenticated>`); a bad credential is still refused. Off by default.
    pub fn optional(mut self) -> Self {
        self.requirement.required = false;
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
            requirement: self.requirement,
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
    requirement: AuthRequirement,
}

impl<S> fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("requirement", &self.requirement)
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
        let auth = self.auth.clone();
        let requirement = self.requirement;
        // Header values and the URI are reference-counted: cheap to take into the future,
        // which must not borrow the (non-`Sync`) request across an await.
        let authorization: Vec<HeaderValue> = request
            .headers()
            .get_all(header::AUTHORIZATION)
            .iter()
            .cloned()
            .collect();
        let uri = request.uri().clone();
        Box::pin(async move {
            let values = authorization.iter().map(HeaderValue::as_bytes);
            match api::authenticate_request(&auth, values, uri.query(), requirement).await {
                Ok(principal) => {
                    if let Some(principal) = principal {
                        request.extensions_mut().insert(principal);
                    }
                    inner.call(request).await
                }
                Err(error) => Ok(error_http(&error)),
            }
        })
    }
}

/// The authenticated caller, put there by [`AuthLayer`]. 401 `Not authenticated` when the
/// request has no principal (an optional layer saw no credentials, or no layer ran).
/// `Option<Authenticated>` never rejects.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Self)
            .ok_or(AuthRejection(AuthError::MissingCredentials))
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

/// The authenticated caller, who must hold scope `S` (e.g.
/// [`AgentsRead`](nexora_auth::scopes::AgentsRead)): 401 without a principal, 403
/// `Insufficient permissions` with `WWW-Authenticate: Bearer error="insufficient_scope"`
/// without the scope.
pub struct RequireScope<S: ScopeName> {
    principal: Principal,
    scope: PhantomData<fn() -> S>,
}

impl<S: ScopeName> RequireScope<S> {
    /// The principal.
    pub fn into_inner(self) -> Principal {
        self.principal
    }
}

impl<S: ScopeName> fmt::Debug for RequireScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScope")
            .field("scope", &S::NAME)
            .field("principal", &self.principal)
            .finish()
    }
}

impl<S: ScopeName> Deref for RequireScope<S> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<S: ScopeName, St: Send + Sync> FromRequestParts<St> for RequireScope<S> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let Authenticated(principal) =
            <Authenticated as FromRequestParts<St>>::from_request_parts(parts, state).await?;
        principal.require_scope(S::NAME)?;
        Ok(Self {
            principal,
            scope: PhantomData,
        })
    }
}

/// The principal of a request to [`api_router`]: the one an outer [`AuthLayer`] already put
/// in the extensions, else authenticated here (header only).
async fn caller(auth: &Authenticator, parts: &Parts) -> Result<Principal, AuthError> {
    if let Some(principal) = parts.extensions.get::<Principal>() {
        return Ok(principal.clone());
    }
    let values = parts.headers.get_all(header::AUTHORIZATION);
    let principal = api::authenticate_request(
        auth,
        values.iter().map(HeaderValue::as_bytes),
        parts.uri.query(),
        AuthRequirement::required(),
    )
    .await?;
    // `required()` never yields `Ok(None)`.
    principal.ok_or(AuthError::MissingCredentials)
}

/// Reads the body up to [`api::MAX_BODY_LEN`] bytes; past the limit (or a body that breaks
/// off) there is nothing to decode: 413.
async fn read_body(body: Body) -> Result<axum::body::Bytes, AuthError> {
    axum::body::to_bytes(body, api::MAX_BODY_LEN)
        .await
        .map_err(|_| AuthError::PayloadTooLarge)
}

fn content_type(parts: &Parts) -> Option<&[u8]> {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
}

fn path_key_id(key_id: Result<Path<String>, PathRejection>) -> String {
    // A segment axum cannot decode is as invalid as any other non-UUID: the core answers 422.
    key_id.map(|Path(id)| id).unwrap_or_default()
}

async fn login(State(auth): State<Authenticator>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    api_response(
        async {
            let bytes = read_body(body).await?;
            // The peer address is known when the app is served with
            // `into_make_service_with_connect_info::<SocketAddr>()`.
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip());
            let header = |name| {
                parts
                    .headers
                    .get_all(name)
                    .into_iter()
                    .map(HeaderValue::as_bytes)
            };
            let origin = RequestOrigin::new(peer)
                .forwarded(header(proxy::FORWARDED))
                .x_forwarded_for(header(proxy::X_FORWARDED_FOR));
            api::login(
                &auth,
                RequestBody::new(content_type(&parts), &bytes),
                &origin,
            )
            .await
        }
        .await,
    )
}

async fn me(State(auth): State<Authenticator>, parts: Parts) -> Response {
    api_response(async { api::me(&auth, &caller(&auth, &parts).await?).await }.await)
}

async fn list_keys(State(auth): State<Authenticator>, parts: Parts) -> Response {
    api_response(async { api::list_keys(&auth, &caller(&auth, &parts).await?).await }.await)
}

async fn create_key(State(auth): State<Authenticator>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    api_response(
        async {
            let principal = caller(&auth, &parts).await?;
            let bytes = read_body(body).await?;
            api::create_key(
                &auth,
                &principal,
                RequestBody::new(content_type(&parts), &bytes),
            )
            .await
        }
        .await,
    )
}

async fn rotate_key(
    State(auth): State<Authenticator>,
    key_id: Result<Path<String>, PathRejection>,
    parts: Parts,
) -> Response {
    let key_id = path_key_id(key_id);
    api_response(
        async { api::rotate_key(&auth, &caller(&auth, &parts).await?, &key_id).await }.await,
    )
}

async fn revoke_key(
    State(auth): State<Authenticator>,
    key_id: Result<Path<String>, PathRejection>,
    parts: Parts,
) -> Response {
    let key_id = path_key_id(key_id);
    api_response(
        async {
            let caller = caller(&auth, &parts).await?;
            api::revoke_key(&auth, &caller, &key_id, parts.uri.query()).await
        }
        .await,
    )
}

async fn not_found() -> Response {
    error_response(&AuthError::RouteNotFound)
}

async fn method_not_allowed() -> Response {
    error_response(&AuthError::MethodNotAllowed)
}

/// The product's auth endpoints, to be nested under `/api`
/// (`Router::new().nest("/api", api_router(auth))`):
///
/// * `POST /auth/login` (no credentials; failed logins are throttled per email, and per client
///   address when the app is served with `into_make_service_with_connect_info::<SocketAddr>()`:
///   the peer, or what the forwarding header says when the peer is one of the
///   authenticator's [trusted proxies](nexora_auth::AuthenticatorBuilder::trusted_proxies))
/// * `GET /users/me`
/// * `GET`, `POST /users/me/api-keys`
/// * `POST /users/me/api-keys/{key_id}/rotate`
/// * `DELETE /users/me/api-keys/{key_id}`
///
/// Behaviour is [`nexora_auth::api`]'s. Every route but login authenticates the
/// `Authorization` header itself (or reuses the principal of an outer [`AuthLayer`]); key
/// management needs scope `keys:manage`. Unknown paths under the router answer 404
/// `{"detail":"Not Found"}` and known paths with another method 405
/// `{"detail":"Method Not Allowed"}`, both before any authentication.
pub fn api_router<S>(auth: Authenticator) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/auth/login", post(login))
        .route("/users/me", get(me))
        .route("/users/me/api-keys", get(list_keys).post(create_key))
        .route("/users/me/api-keys/{key_id}/rotate", post(rotate_key))
        .route("/users/me/api-keys/{key_id}", delete(revoke_key))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(auth)
}
