//! actix-web glue for [`nexora_auth`].
//!
//! # Add auth to an existing app
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use nexora_auth::Authenticator;
//! use nexora_auth_actix::{AuthMiddleware, RequireScope, configure, scopes::AgentsRead};
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
//!   [`AuthMiddleware::accept_query_token`] and [`AuthMiddleware::accept_ticket`] are for
//!   WebSocket routes (`?token=`, a single-use `?ticket=`);
//!   [`AuthMiddleware::optional`] lets requests without credentials through.
//! * Extractors: [`Authenticated`] (401 without a principal), `Option<Authenticated>`, and
//!   [`RequireScope`] (403 without the scope).
//! * [`configure`]: the product's endpoints, for a `web::scope("/api")`.
//!
//! No rule lives here. Credential parsing, routing (404, 405, `HEAD`), limits, the order of
//! checks, statuses, bodies and headers all come from [`nexora_auth_http`]; this crate
//! converts requests and responses, so the axum crate answers every request the same (a
//! shared HTTP table tests both).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    fmt,
    future::{Ready, ready},
    rc::Rc,
};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError,
    body::EitherBody,
    dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{
        StatusCode,
        header::{self, HeaderMap, HeaderName, HeaderValue},
    },
    web,
};
use futures_util::{StreamExt, future::LocalBoxFuture};
use nexora_auth::Principal;
#[cfg(doc)]
use nexora_auth::{AuthError, Authenticator};
use nexora_auth_http::{
    ApiError, BodyError, Guard, HeaderText, LimitHeaders, RequestHeaders,
    scopes::{ScopeName, Scoped},
};

pub use nexora_auth;
pub use nexora_auth_http::{self, Api, scopes};

/// Copies a response of the HTTP layer into an actix-web response.
fn to_actix(response: nexora_auth_http::Response) -> HttpResponse {
    // The HTTP layer only produces valid statuses.
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    for (name, value) in response.headers() {
        match value {
            HeaderText::Static(text) => out.insert_header((name, text)),
            HeaderText::Seconds(seconds) => out.insert_header((name, seconds)),
            HeaderText::Text(text) => out.insert_header((name, text)),
        };
    }
    match response.body {
        Some(body) => out.body(body),
        None => out.finish(),
    }
}

/// The actix-web response for `error`: status, `{"detail": …}` body and headers exactly as
/// [`ApiError::response`] says.
pub fn error_response(error: &ApiError) -> HttpResponse {
    to_actix(error.response())
}

impl ResponseError for AuthRejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        error_response(&self.0)
    }
}

/// The request headers, for the HTTP layer.
struct Headers<'a>(&'a HeaderMap);

impl RequestHeaders for Headers<'_> {
    fn values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.get_all(name).map(HeaderValue::as_bytes)
    }
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
pub struct AuthMiddleware(Guard);

nexora_auth_http::guard_builder!(AuthMiddleware);

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
            guard: self.0.clone(),
        }))
    }
}

/// The service made by [`AuthMiddleware`].
pub struct AuthMiddlewareService<S> {
    service: Rc<S>,
    guard: Guard,
}

impl<S> fmt::Debug for AuthMiddlewareService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthMiddlewareService")
            .field("requirement", &self.guard.requirement())
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
        let guard = self.guard.clone();
        Box::pin(async move {
            let client = guard.client(
                request.peer_addr().map(|peer| peer.ip()),
                &Headers(request.headers()),
            );
            let headers = request.headers().get_all(header::AUTHORIZATION);
            let values = headers.map(HeaderValue::as_bytes);
            match guard
                .admit(values, request.uri().path(), request.uri().query(), client)
                .await
            {
                Ok(admitted) => {
                    if let Some(principal) = admitted.principal {
                        request.extensions_mut().insert(principal);
                    }
                    let mut response = service.call(request).await?;
                    if let Some(limits) = LimitHeaders::of(&admitted.usage) {
                        let headers = response.headers_mut();
                        for (name, value) in limits.pairs() {
                            if let Ok(value) = HeaderValue::from_str(value) {
                                headers.insert(HeaderName::from_static(name), value);
                            }
                        }
                    }
                    Ok(response.map_into_left_body())
                }
                Err(error) => Ok(request
                    .into_response(error_response(&error))
                    .map_into_right_body()),
            }
        })
    }
}

nexora_auth_http::adapter_types! {
    /// The authenticated caller, put there by [`AuthMiddleware`]. 401 `Not authenticated` when
    /// the request has no principal (an optional middleware saw no credentials, or none ran).
    /// `Option<Authenticated>` never rejects.
    ;
    /// The authenticated caller, who must hold scope `S` (e.g.
    /// [`AgentsRead`](nexora_auth_http::scopes::AgentsRead)): 401 without a principal, 403
    /// `Insufficient permissions` with `WWW-Authenticate: Bearer error="insufficient_scope"`
    /// without the scope.
    ;
    /// An [`ApiError`] (or a core [`AuthError`]) as an actix-web error (see [`error_response`]).
    /// Return it from handlers.
}

fn principal_of(request: &HttpRequest) -> Result<Principal, AuthRejection> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(AuthRejection(ApiError::MissingCredentials))
}

impl FromRequest for Authenticated {
    type Error = AuthRejection;
    type Future = Ready<Result<Self, AuthRejection>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(principal_of(request).map(Self))
    }
}

impl<S: ScopeName> FromRequest for RequireScope<S> {
    type Error = AuthRejection;
    type Future = Ready<Result<Self, AuthRejection>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(principal_of(request).and_then(|principal| Ok(Self(Scoped::check(principal)?))))
    }
}

/// Reads the body up to `limit` bytes (more, or a body that breaks off: [`BodyError`]).
async fn read_body(mut payload: Payload, limit: usize) -> Result<web::BytesMut, BodyError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn handle(api: web::Data<Api>, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let headers = Headers(request.headers());
    // Cloned out: the extensions must not stay borrowed across the awaits below.
    let principal = request.extensions().get::<Principal>().cloned();
    // Below the scope this is mounted in: `/users/me` in `web::scope("/api")`.
    let path = request.match_info().unprocessed();
    let api_request = nexora_auth_http::Request::new(request.method().as_str(), path, &headers)
        .query(Some(request.query_string()))
        .peer(request.peer_addr().map(|peer| peer.ip()))
        .principal(principal.as_ref());
    let response = nexora_auth_http::handle(&api, api_request, |limit| {
        read_body(payload.into_inner(), limit)
    })
    .await;
    to_actix(response)
}

/// The product's auth endpoints ([`nexora_auth_http::routes::ROUTES`]), for a scope mounted
/// at `/api` (`web::scope("/api").configure(configure(auth))`); takes an [`Authenticator`] or
/// an [`Api`] with settings (body limit, trusted proxies):
///
/// * `POST /auth/token` (an API key only): a short-lived token derived from the key
/// * `POST /auth/ws-tickets`: a single-use WebSocket ticket
/// * `POST /auth/login` (no credentials; failed logins are throttled per email and per client
///   address: the peer, or what the forwarding header says when the peer is one of the
///   [trusted proxies](Api::trusted_proxies))
/// * `GET /users/me`
/// * `GET`, `POST /users/me/api-keys`
/// * `POST /users/me/api-keys/{key_id}/rotate`
/// * `DELETE /users/me/api-keys/{key_id}`
///
/// Behaviour is [`nexora_auth_http::handle`]'s, routing included: this sets the scope's
/// default service, which hands every request below the mount point to the HTTP layer's route
/// table. Every route but login authenticates the `Authorization` header itself (or reuses
/// the principal of an outer [`AuthMiddleware`]); key management needs scope `keys:manage`.
/// Unknown paths answer 404 `{"detail":"Not Found"}` and known paths with another method 405
/// `{"detail":"Method Not Allowed"}` with `Allow`, both before any authentication.
pub fn configure(api: impl Into<Api>) -> impl FnOnce(&mut web::ServiceConfig) {
    let api = api.into();
    move |cfg| {
        cfg.app_data(web::Data::new(api))
            .default_service(web::to(handle));
    }
}
