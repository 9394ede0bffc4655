//! actix-web glue for [`nexora_auth`].
//!
//! # Add auth to an existing app
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use nexora_auth::{Authenticator, scopes::AgentsRead};
//! use nexora_auth_actix::{AuthMiddleware, RequireScope, configure};
//!
//! async fn agents(caller: RequireScope<AgentsRead>) -> String {
//!     format!("agents of {}", caller.owner())
//! }
//!
//! async fn serve(auth: Authenticator) -> std::io::Result<()> {
//!     HttpServer::new(move || {
//!         App::new()
//!             .service(web::resource("/api/agents").wrap(AuthMiddleware::new(auth.clone())).get(agents))
//!             .service(web::scope("/api").configure(configure(auth.clone()))) // login + key management
//!     })
//!     .bind("127.0.0.1:8000")?.run().await
//! }
//! ```
//!
//! # What is here, and what is not
//!
//! * [`AuthMiddleware`]: a [`Transform`] that authenticates every request and stores the
//!   [`Principal`] in the request extensions, or answers the error itself (401, 503, …).
//!   [`AuthMiddleware::accept_query_token`] is for WebSocket routes (`?token=`);
//!   [`AuthMiddleware::optional`] lets requests without credentials through.
//! * Extractors: [`Authenticated`] (401 without a principal), `Option<Authenticated>`, and
//!   [`RequireScope`] (403 without the scope).
//! * [`configure`]: the product's endpoints, for a `web::scope("/api")`.
//!
//! No rule lives here. Credential parsing, the order of checks, statuses, bodies and
//! `WWW-Authenticate` challenges all come from [`nexora_auth::api`] and
//! [`AuthError::response`]; this crate copies them into actix-web types, so the axum crate
//! answers every request the same (a shared HTTP table tests both).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    fmt,
    future::{Ready, ready},
    marker::PhantomData,
    ops::Deref,
    rc::Rc,
};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError,
    body::EitherBody,
    dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{StatusCode, header},
    web,
};
use futures_util::{StreamExt, future::LocalBoxFuture};
use nexora_auth::{
    AuthError, AuthRequirement, Authenticator, Principal,
    api::{self, ApiResponse, RequestBody},
    proxy::{self, RequestOrigin},
    scopes::ScopeName,
};

pub use nexora_auth;

fn status(code: u16) -> StatusCode {
    // The core only produces valid status codes (100..=599); 500 is a safe floor regardless.
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The actix-web response for `error`: status, `{"detail": …}` body, `WWW-Authenticate` and
/// `Retry-After` exactly as [`AuthError::response`] says.
pub fn error_response(error: &AuthError) -> HttpResponse {
    let shape = error.response();
    let mut response = HttpResponse::build(status(shape.status));
    response.insert_header((
        header::CONTENT_TYPE,
        nexora_auth::ErrorResponse::CONTENT_TYPE,
    ));
    if let Some(challenge) = shape.www_authenticate {
        response.insert_header((header::WWW_AUTHENTICATE, challenge));
    }
    if let Some(seconds) = shape.retry_after {
        response.insert_header((header::RETRY_AFTER, seconds));
    }
    response.body(shape.body)
}

/// An [`AuthError`] as an actix-web error (see [`error_response`]). Return it from handlers.
#[derive(Debug)]
pub struct AuthRejection(pub AuthError);

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<AuthError> for AuthRejection {
    fn from(error: AuthError) -> Self {
        Self(error)
    }
}

impl ResponseError for AuthRejection {
    fn status_code(&self) -> StatusCode {
        status(self.0.status())
    }

    fn error_response(&self) -> HttpResponse {
        error_response(&self.0)
    }
}

fn api_response(result: Result<ApiResponse, AuthError>) -> HttpResponse {
    match result {
        Ok(ApiResponse {
            status: code,
            body: Some(body),
            ..
        }) => HttpResponse::build(status(code))
            .insert_header((header::CONTENT_TYPE, ApiResponse::CONTENT_TYPE))
            .body(body),
        Ok(ok) => HttpResponse::new(status(ok.status)),
        Err(error) => error_response(&error),
    }
}

async fn authenticate(
    auth: &Authenticator,
    request: &HttpRequest,
    requirement: AuthRequirement,
) -> Result<Option<Principal>, AuthError> {
    let values = request
        .headers()
        .get_all(header::AUTHORIZATION)
        .map(header::HeaderValue::as_bytes);
    let query = request.uri().query();
    api::authenticate_request(auth, values, query, requirement).await
}

/// Middleware that authenticates each request with an [`Authenticator`].
///
/// On success the [`Principal`] is inserted into the request extensions (read it with
/// [`Authenticated`] or [`RequireScope`]); otherwise the middleware answers the core's error
/// response and the wrapped service is not called. Defaults: credentials required, from the
/// `Authorization: Bearer` header only.
///
/// Wrap resources (`web::resource(…).wrap(…)`) rather than a whole scope, so that unknown
/// routes stay 404 rather than 401.
#[derive(Clone, Debug)]
pub struct AuthMiddleware {
    auth: Authenticator,
    requirement: AuthRequirement,
}

impl AuthMiddleware {
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

impl<S, B> Transform<S, ServiceRequest> for AuthMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = AuthMiddlewareService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AuthMiddlewareService {
            service: Rc::new(service),
            auth: self.auth.clone(),
            requirement: self.requirement,
        }))
    }
}

/// The service made by [`AuthMiddleware`].
pub struct AuthMiddlewareService<S> {
    service: Rc<S>,
    auth: Authenticator,
    requirement: AuthRequirement,
}

impl<S> fmt::Debug for AuthMiddlewareService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthMiddlewareService")
            .field("requirement", &self.requirement)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for AuthMiddlewareService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let auth = self.auth.clone();
        let requirement = self.requirement;
        Box::pin(async move {
            match authenticate(&auth, request.request(), requirement).await {
                Ok(principal) => {
                    if let Some(principal) = principal {
                        request.extensions_mut().insert(principal);
                    }
                    service
                        .call(request)
                        .await
                        .map(ServiceResponse::map_into_left_body)
                }
                Err(error) => Ok(request
                    .into_response(error_response(&error))
                    .map_into_right_body()),
            }
        })
    }
}

/// The authenticated caller, put there by [`AuthMiddleware`]. 401 `Not authenticated` when
/// the request has no principal (an optional middleware saw no credentials, or none ran).
/// `Option<Authenticated>` never rejects.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

fn principal_of(request: &HttpRequest) -> Result<Principal, AuthRejection> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(AuthRejection(AuthError::MissingCredentials))
}

impl FromRequest for Authenticated {
    type Error = AuthRejection;
    type Future = Ready<Result<Self, AuthRejection>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(principal_of(request).map(Self))
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

impl<S: ScopeName> FromRequest for RequireScope<S> {
    type Error = AuthRejection;
    type Future = Ready<Result<Self, AuthRejection>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(principal_of(request).and_then(|principal| {
            principal.require_scope(S::NAME)?;
            Ok(Self {
                principal,
                scope: PhantomData,
            })
        }))
    }
}

/// The principal of a request to [`configure`]'s routes: the one an outer
/// [`AuthMiddleware`] already put in the extensions, else authenticated here (header only).
async fn caller(auth: &Authenticator, request: &HttpRequest) -> Result<Principal, AuthError> {
    if let Some(principal) = request.extensions().get::<Principal>() {
        return Ok(principal.clone());
    }
    // `required()` never yields `Ok(None)`.
    authenticate(auth, request, AuthRequirement::required())
        .await?
        .ok_or(AuthError::MissingCredentials)
}

/// Reads the body up to [`api::MAX_BODY_LEN`] bytes (more, or a body that breaks off: 413).
async fn read_body(mut payload: web::Payload) -> Result<web::BytesMut, AuthError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| AuthError::PayloadTooLarge)?;
        if body.len() + chunk.len() > api::MAX_BODY_LEN {
            return Err(AuthError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn content_type(request: &HttpRequest) -> Option<&[u8]> {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(header::HeaderValue::as_bytes)
}

fn key_id(request: &HttpRequest) -> &str {
    // The route pattern guarantees the segment; the core turns anything non-UUID into a 422.
    request.match_info().get("key_id").unwrap_or_default()
}

async fn login(
    auth: web::Data<Authenticator>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    api_response(
        async {
            let body = read_body(payload).await?;
            let header = |name| {
                request
                    .headers()
                    .get_all(name)
                    .map(header::HeaderValue::as_bytes)
            };
            let origin = RequestOrigin::new(request.peer_addr().map(|peer| peer.ip()))
                .forwarded(header(proxy::FORWARDED))
                .x_forwarded_for(header(proxy::X_FORWARDED_FOR));
            api::login(
                &auth,
                RequestBody::new(content_type(&request), &body),
                &origin,
            )
            .await
        }
        .await,
    )
}

async fn me(auth: web::Data<Authenticator>, request: HttpRequest) -> HttpResponse {
    api_response(async { api::me(&auth, &caller(&auth, &request).await?).await }.await)
}

async fn list_keys(auth: web::Data<Authenticator>, request: HttpRequest) -> HttpResponse {
    api_response(async { api::list_keys(&auth, &caller(&auth, &request).await?).await }.await)
}

async fn create_key(
    auth: web::Data<Authenticator>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    api_response(
        async {
            let principal = caller(&auth, &request).await?;
            let body = read_body(payload).await?;
            api::create_key(
                &auth,
                &principal,
                RequestBody::new(content_type(&request), &body),
            )
            .await
        }
        .await,
    )
}

async fn rotate_key(auth: web::Data<Authenticator>, request: HttpRequest) -> HttpResponse {
    api_response(
        async { api::rotate_key(&auth, &caller(&auth, &request).await?, key_id(&request)).await }
            .await,
    )
}

async fn revoke_key(auth: web::Data<Authenticator>, request: HttpRequest) -> HttpResponse {
    api_response(
        async {
            let caller = caller(&auth, &request).await?;
            let query = Some(request.query_string()).filter(|q| !q.is_empty());
            api::revoke_key(&auth, &caller, key_id(&request), query).await
        }
        .await,
    )
}

async fn not_found() -> HttpResponse {
    error_response(&AuthError::RouteNotFound)
}

/// 405 with the resource's `Allow` header (RFC 9110 §15.5.6), as axum answers.
fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move {
        let mut response = error_response(&AuthError::MethodNotAllowed);
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        response
    })
}

/// The product's auth endpoints, for a scope mounted at `/api`
/// (`web::scope("/api").configure(configure(auth))`):
///
/// * `POST /auth/login` (no credentials; failed logins are throttled per email and per client
///   address: the peer, or what the forwarding header says when the peer is one of the
///   authenticator's [trusted proxies](nexora_auth::AuthenticatorBuilder::trusted_proxies))
/// * `GET /users/me`
/// * `GET`, `POST /users/me/api-keys`
/// * `POST /users/me/api-keys/{key_id}/rotate`
/// * `DELETE /users/me/api-keys/{key_id}`
///
/// Behaviour is [`nexora_auth::api`]'s. Every route but login authenticates the
/// `Authorization` header itself (or reuses the principal of an outer [`AuthMiddleware`]);
/// key management needs scope `keys:manage`. Unknown paths in the scope answer 404
/// `{"detail":"Not Found"}` (this sets the scope's default service) and known paths with
/// another method 405 `{"detail":"Method Not Allowed"}`, both before any authentication.
pub fn configure(auth: Authenticator) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        // Like axum, a GET route also answers HEAD, and 405s list the allowed methods.
        let resource = |path: &str, allow: &'static str| {
            web::resource(path.to_owned()).default_service(method_not_allowed(allow))
        };
        cfg.app_data(web::Data::new(auth))
            .service(resource("/auth/login", "POST").route(web::post().to(login)))
            .service(
                resource("/users/me", "GET,HEAD")
                    .route(web::get().to(me))
                    .route(web::head().to(me)),
            )
            .service(
                resource("/users/me/api-keys", "GET,HEAD,POST")
                    .route(web::get().to(list_keys))
                    .route(web::head().to(list_keys))
                    .route(web::post().to(create_key)),
            )
            .service(
                resource("/users/me/api-keys/{key_id}/rotate", "POST")
                    .route(web::post().to(rotate_key)),
            )
            .service(
                resource("/users/me/api-keys/{key_id}", "DELETE")
                    .route(web::delete().to(revoke_key)),
            )
            .default_service(web::to(not_found));
    }
}
