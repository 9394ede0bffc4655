//! The product's auth endpoints, and [`handle`]: one request in, one [`Response`] out.
//!
//! The axum and actix-web crates are adapters: they hand [`handle`] the method, the path below
//! the mount point, the query, the headers, the peer address, any principal an outer auth layer
//! already found, and a way to read the body; they copy the [`Response`] back. Every rule —
//! which route exists ([`crate::routes`]), which scope it needs, how a body is decoded, what a
//! bad body answers, in which order the checks run — is decided here, once.
//!
//! | endpoint (under `/api`) | success |
//! |---|---|
//! | `POST /auth/login` (no credentials) | 200 `{access_token, token_type, expires_in}` |
//! | `POST /auth/token` (an API key only: any other credential is 403) `[{scopes, ttl_secs}]` | 200 `{access_token, token_type, expires_in}`: a token derived from the key |
//! | `POST /auth/ws-tickets` `[{chat_id}]` | 200 `{ticket, expires_in}`: a single-use WebSocket ticket |
//! | `GET /users/me` | 200 `{id, email}` |
//! | `GET /users/me/api-keys` | 200 `[{id, name, display, scopes, created_at, last_used_at, expires_at, created_by, rate_limit, credits}]`: the keys within the caller's reach |
//! | `POST /users/me/api-keys` `{name, scopes?, expires_at?, rate_limit?, credits?}` | 201 the key, shown once |
//! | `POST /users/me/api-keys/{key_id}/rotate` `[{grace_secs}]` | 200 the new key, shown once; the old one stops at once, or after `grace_secs` |
//! | `PATCH /users/me/api-keys/{key_id}` `{name?, rate_limit?, credits?}` | 200 the key: name, rate limit and credits changed (`null` removes a limit) |
//! | `DELETE /users/me/api-keys/{key_id}[?cascade=true]` | 204 |
//! | `GET /users/me/audit-events[?limit=…&before=…]` | 200 `{events: [{id, at, action, actor, owner, target, client, outcome, detail}], next_before}`: the caller's audit trail, newest first |
//! | `POST /keys/revoke` `{"key": "nxr_…"}` (no credentials) | 202 `{"status": "accepted"}`, the same for any key |
//! | `POST /secret-scanning/github` (signed by GitHub; only when [configured](Api::secret_scanning)) | 200 `[{token_raw, token_type, label}]` |
//!
//! Which keys a caller may list, rotate or revoke, and what a created key may hold, is decided
//! by [`nexora_auth::policy`] inside the [`Authenticator`] methods these call.
//!
//! # When a key leaks
//!
//! `POST /keys/revoke` lets whoever holds a key end it
//! ([`Authenticator::revoke_by_possession`]): the answer is 202 with one fixed body whether
//! the key was live (and is revoked now, with every key it created), already revoked, unknown
//! or malformed, so it tells the caller nothing it did not know. Requests are limited per
//! client address (the client behind [trusted proxies](crate::proxy), as for logins): 429 with
//! `Retry-After` beyond. A body that is not `{"key": <string>}` is a 422 like any other
//! endpoint's: that is about the request's shape, never about a key.
//!
//! `POST /secret-scanning/github` takes GitHub's signed reports ([`crate::secret_scanning`]):
//! the signature headers are checked before the body is read (401 without them), the
//! signature over the raw body before it is parsed (401 when it does not verify; nothing is
//! looked up or changed), then every match is handed to
//! [`Authenticator::revoke_leaked`] under the configured policy and labelled in GitHub's
//! feedback format. Not configured, the path does not exist: 404 for every method, as for any
//! unknown path.
//!
//! Order of checks, as FastAPI's dependency resolution does it: route (404, 405) → credentials
//! (401) → scope (403, [`KEYS_MANAGE`](crate::scopes::KEYS_MANAGE) for key management,
//! [`AUDIT_READ`](crate::scopes::AUDIT_READ) for the audit trail) → body size (413) → path,
//! query and body validation (422) → the operation (404, 409, …).
//!
//! # Request bodies
//!
//! Read only by the endpoints that take one, after the credential and scope checks, up to
//! [`Api::max_body_bytes`] (64 KiB by default; a secret-scanning report up to
//! [`SecretScanning::max_body_bytes`], 1 MiB by default): more is 413. Decoding is
//! [`decode_json`]'s: a non-JSON `Content-Type` is 422 (rather
//! than 415, because FastAPI-style clients already parse 422 `detail` arrays and FastAPI itself
//! answers a non-JSON body for a JSON model that way); a malformed `{key_id}` is 422
//! `uuid_parsing` at `["path", "key_id"]`; a well-formed but unknown id, or another user's key,
//! is 404 `{"detail": "API key not found"}`.

use std::{borrow::Cow, future::Future, net::IpAddr, sync::Arc};

use nexora_auth::{
    AuditEvent, Authenticator, KeyChanges, KeyId, NewKey, Principal, RevokeOptions, RotateOptions,
    SecretString, TokenRequest, Usage, audit::EventId,
};
use serde::Serialize;

use crate::{
    ApiError, Response,
    credentials::{QueryToken, chat_of, extract_credential, extract_ticket},
    proxy::{self, TrustedProxies},
    routes::{self, Endpoint, Resolved},
    secret_scanning::{self, SecretScanning, SignatureHeaders},
    validation::{
        LocPart, RequestBody, ValidationIssue, decode_json, decode_json_list, decode_optional_json,
    },
};

/// The endpoints' state: the [`Authenticator`] and the HTTP settings. Cheap to clone.
///
/// ```
/// # use std::sync::Arc;
/// # use nexora_auth::{Authenticator, MemoryKeyStore, PepperRing, SecretBytes};
/// use nexora_auth_http::{Api, proxy::TrustedProxies};
/// # let pepper = SecretBytes::new(b"pepper: 32+ random bytes, kept out of the db".to_vec());
/// # let auth = Authenticator::builder(Arc::new(MemoryKeyStore::new()), PepperRing::new(1, pepper)?).build()?;
/// let api = Api::new(auth)
///     .max_body_bytes(16 * 1024)
///     .trusted_proxies(TrustedProxies::parse("10.0.0.0/8")?);
/// assert_eq!(api.body_limit(), 16 * 1024);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Api {
    auth: Authenticator,
    settings: Arc<Settings>,
}

#[derive(Debug, Clone)]
struct Settings {
    max_body_bytes: usize,
    trusted_proxies: TrustedProxies,
    secret_scanning: Option<SecretScanning>,
}

impl Api {
    /// The body limit unless [`Api::max_body_bytes`] says otherwise: 64 KiB (a login or a key
    /// request is a few hundred bytes).
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

    /// The endpoints over `auth`, with the defaults of every setting below.
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth,
            settings: Arc::new(Settings {
                max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
                trusted_proxies: TrustedProxies::none(),
                secret_scanning: None,
            }),
        }
    }

    /// The largest request body the endpoints read, in bytes; a longer one is 413. Defaults to
    /// [`Api::DEFAULT_MAX_BODY_BYTES`]. The one body limit: framework crates read it from here.
    #[must_use]
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        Arc::make_mut(&mut self.settings).max_body_bytes = limit;
        self
    }

    /// The reverse proxies whose forwarding header names the client of a request, for the
    /// per-client login throttle and the audit trail (see [`crate::proxy`]). Defaults to [`TrustedProxies::none`]:
    /// the client is the TCP peer and forwarding headers are ignored.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        Arc::make_mut(&mut self.settings).trusted_proxies = proxies;
        self
    }

    /// Serves GitHub's secret-scanning reports at `POST /secret-scanning/github` (see
    /// [`crate::secret_scanning`]). Defaults to off: the path is then unknown (404).
    #[must_use]
    pub fn secret_scanning(mut self, scanning: SecretScanning) -> Self {
        Arc::make_mut(&mut self.settings).secret_scanning = Some(scanning);
        self
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The body limit in force (see [`Api::max_body_bytes`]).
    pub fn body_limit(&self) -> usize {
        self.settings.max_body_bytes
    }

    /// The largest body any served endpoint reads: [`Api::body_limit`], or a secret-scanning
    /// report's limit when that is larger. A host that bounds bodies in front of the endpoints
    /// (a tower layer) sets this; each endpoint still reads only up to its own.
    pub fn largest_body_limit(&self) -> usize {
        self.settings
            .max_body_bytes
            .max(self.scanning().map_or(0, SecretScanning::body_limit))
    }

    /// The secret-scanning settings, when the endpoint is served.
    pub fn scanning(&self) -> Option<&SecretScanning> {
        self.settings.secret_scanning.as_ref()
    }

    /// Whether `endpoint` is served: every one but the secret-scanning endpoint, which is
    /// served when configured.
    pub fn serves(&self, endpoint: Endpoint) -> bool {
        endpoint != Endpoint::GitHubSecretScanning || self.scanning().is_some()
    }

    fn body_limit_of(&self, endpoint: Endpoint) -> usize {
        match (endpoint, self.scanning()) {
            (Endpoint::GitHubSecretScanning, Some(scanning)) => scanning.body_limit(),
            _ => self.body_limit(),
        }
    }

    /// The trusted proxies in force (see [`Api::trusted_proxies`]).
    pub fn proxies(&self) -> &TrustedProxies {
        &self.settings.trusted_proxies
    }
}

impl From<Authenticator> for Api {
    fn from(auth: Authenticator) -> Self {
        Self::new(auth)
    }
}

/// What a route demands of the request's credentials. Defaults to
/// [`AuthRequirement::required`]: credentials must be present, in the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthRequirement {
    /// Whether `?token=` counts. Defaults to [`QueryToken::Ignore`].
    pub query_token: QueryToken,
    /// Whether a single-use ticket in `?ticket=` counts ([`AuthRequirement::accept_ticket`]).
    /// Defaults to `false`.
    pub ticket: bool,
    /// Whether a request without any credentials is refused (401). Defaults to `true`. When
    /// `false`, such a request goes on without a principal; a *bad* credential is still 401.
    pub required: bool,
}

impl Default for AuthRequirement {
    fn default() -> Self {
        Self::required()
    }
}

impl AuthRequirement {
    /// Credentials required, header only (REST routes). The default.
    pub const fn required() -> Self {
        Self {
            query_token: QueryToken::Ignore,
            ticket: false,
            required: true,
        }
    }

    /// Credentials optional: absent → no principal; present but bad → 401.
    pub const fn optional() -> Self {
        Self {
            query_token: QueryToken::Ignore,
            ticket: false,
            required: false,
        }
    }

    /// Also accept `?token=` (WebSocket routes, whose browser API cannot set headers).
    pub const fn accept_query_token(mut self) -> Self {
        self.query_token = QueryToken::Accept;
        self
    }

    /// Also accept a single-use ticket in `?ticket=` (WebSocket routes; see
    /// [`Authenticator::redeem_ticket`]): it is redeemed for the chat named by the last segment
    /// of the request path ([`crate::credentials::chat_of`]), used up whatever the outcome,
    /// and must be the request's only credential.
    pub const fn accept_ticket(mut self) -> Self {
        self.ticket = true;
        self
    }
}

/// Authenticates a request from its raw `Authorization` header values and query string: the
/// one request-level check both framework crates run, in their auth layers and in [`handle`].
/// The principal carries `client` ([`Principal::client`]), the request's client address as
/// [`client_address`] resolves it, so that what it does is audited with it.
///
/// Returns `Ok(None)` only when credentials are absent and `requirement.required` is false.
/// A route that accepts tickets needs the request path: see [`authenticate_request_at`].
pub async fn authenticate_request<'a, I>(
    auth: &Authenticator,
    authorization: I,
    query: Option<&'a str>,
    requirement: AuthRequirement,
    client: Option<IpAddr>,
) -> Result<Option<Principal>, ApiError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    authenticate_request_at(auth, authorization, None, query, requirement, client).await
}

/// [`authenticate_request`] with the request's `path` (as received, without the query), whose
/// last segment names the chat a ticket is redeemed for ([`AuthRequirement::accept_ticket`]).
pub async fn authenticate_request_at<'a, I>(
    auth: &Authenticator,
    authorization: I,
    path: Option<&str>,
    query: Option<&'a str>,
    requirement: AuthRequirement,
    client: Option<IpAddr>,
) -> Result<Option<Principal>, ApiError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut headers = authorization.into_iter();
    let first = headers.next();
    if requirement.ticket
        && let Some(ticket) = extract_ticket(query, first.is_some())?
    {
        let chat = path.and_then(chat_of);
        let principal = auth.redeem_ticket(&ticket, chat.as_deref()).await?;
        return Ok(Some(with_client(principal, client)));
    }
    match extract_credential(
        first.into_iter().chain(headers),
        query,
        requirement.query_token,
        auth.max_credential_len(),
    ) {
        Ok(token) => Ok(Some(with_client(auth.authenticate(&token).await?, client))),
        Err(ApiError::MissingCredentials) if !requirement.required => Ok(None),
        Err(e) => Err(e),
    }
}

fn with_client(principal: Principal, client: Option<IpAddr>) -> Principal {
    match client {
        Some(client) => principal.with_client(client),
        None => principal,
    }
}

/// The client address of a request from `peer` with these headers, behind `proxies` (see
/// [`crate::proxy`]): what the login throttle counts and the audit trail records. `None`
/// when the peer is unknown.
pub fn client_address<H: RequestHeaders + ?Sized>(
    proxies: &TrustedProxies,
    peer: Option<IpAddr>,
    headers: &H,
) -> Option<IpAddr> {
    peer.map(|peer| {
        proxies.client_address(
            peer,
            headers.values(proxy::FORWARDED),
            headers.values(proxy::X_FORWARDED_FOR),
        )
    })
}

/// What a framework's auth layer holds: the authenticator and what the routes it wraps demand
/// ([`AuthRequirement`]). The axum layer and the actix-web middleware are this, wrapped.
#[derive(Clone, Debug)]
pub struct Guard {
    auth: Authenticator,
    requirement: AuthRequirement,
    proxies: TrustedProxies,
    cost: u32,
}

/// A request a [`Guard`] let through: its principal (none for an optional guard without
/// credentials) and where the principal's limits stand, for the response's `RateLimit` headers
/// ([`Response::with_usage`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Admitted {
    /// The authenticated caller.
    pub principal: Option<Principal>,
    /// The limits charged (empty when none applied).
    pub usage: Usage,
}

impl Guard {
    /// Requires a valid credential in the `Authorization` header.
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth,
            requirement: AuthRequirement::required(),
            proxies: TrustedProxies::none(),
            cost: 1,
        }
    }

    /// What each request costs against its credential's limits (see [`crate::limits`]).
    /// Defaults to 1; 0 charges nothing and still reports the limits.
    #[must_use]
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// The reverse proxies whose forwarding header names the client a principal carries (see
    /// [`client_address`]). Defaults to [`TrustedProxies::none`]: the client is the TCP peer.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// The client address of a request from `peer` with these headers (see
    /// [`client_address`]): an adapter resolves it before its first await, then passes it to
    /// [`Guard::check`].
    pub fn client<H: RequestHeaders + ?Sized>(
        &self,
        peer: Option<IpAddr>,
        headers: &H,
    ) -> Option<IpAddr> {
        client_address(&self.proxies, peer, headers)
    }

    /// Also accepts the credential in `?token=` (for WebSocket routes). A header *and* a
    /// different `?token=` are refused. Off by default.
    #[must_use]
    pub fn accept_query_token(mut self) -> Self {
        self.requirement = self.requirement.accept_query_token();
        self
    }

    /// Also accepts a single-use ticket in `?ticket=` (for WebSocket routes; see
    /// [`AuthRequirement::accept_ticket`]). Off by default.
    #[must_use]
    pub fn accept_ticket(mut self) -> Self {
        self.requirement = self.requirement.accept_ticket();
        self
    }

    /// Lets requests *without* credentials through with no principal; a bad credential is
    /// still refused. Off by default.
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.requirement.required = false;
        self
    }

    /// What the guarded routes demand.
    pub fn requirement(&self) -> AuthRequirement {
        self.requirement
    }

    /// Authenticates a request from its `Authorization` header values, its path (as
    /// received, without the query), its query and `client` (see [`authenticate_request_at`]
    /// and [`Guard::client`]).
    pub async fn check<'a, I>(
        &self,
        authorization: I,
        path: &str,
        query: Option<&'a str>,
        client: Option<IpAddr>,
    ) -> Result<Option<Principal>, ApiError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        authenticate_request_at(
            &self.auth,
            authorization,
            Some(path),
            query,
            self.requirement,
            client,
        )
        .await
    }

    /// [`Guard::check`], then the principal's limits at the guard's [`cost`](Guard::cost)
    /// ([`Authenticator::charge`]): a bad credential is refused first (401), then a limit
    /// (429 with `Retry-After` and the `RateLimit` headers).
    pub async fn admit<'a, I>(
        &self,
        authorization: I,
        path: &str,
        query: Option<&'a str>,
        client: Option<IpAddr>,
    ) -> Result<Admitted, ApiError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let principal = self.check(authorization, path, query, client).await?;
        let usage = match &principal {
            // Boxed: the future every request of the layer builds stays as small as it was
            // without limits (a key or token without any never builds this one).
            Some(principal) if self.auth.has_limits(principal) => {
                Box::pin(self.auth.charge(principal, self.cost)).await?
            }
            _ => Usage::default(),
        };
        Ok(Admitted { principal, usage })
    }
}

/// The request headers, as a framework holds them.
pub trait RequestHeaders {
    /// Every value of the header `name` (given in lower case), in the order received.
    fn values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a;
}

/// The name of the `Authorization` header, lower-case.
pub const AUTHORIZATION: &str = "authorization";
/// The name of the `Content-Type` header, lower-case.
pub const CONTENT_TYPE: &str = "content-type";

/// A request to the endpoints, as an adapter sees it (the body comes separately, see
/// [`handle`]).
#[derive(Debug)]
pub struct Request<'a, H: ?Sized> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a H,
    peer: Option<IpAddr>,
    principal: Option<&'a Principal>,
}

impl<'a, H: RequestHeaders + ?Sized> Request<'a, H> {
    /// A request: its method as sent (`GET`, `HEAD`, …), its path below the API's mount point
    /// (`/users/me`; not percent-decoded, without the query) and its headers.
    pub fn new(method: &'a str, path: &'a str, headers: &'a H) -> Self {
        Self {
            method,
            path,
            query: None,
            headers,
            peer: None,
            principal: None,
        }
    }

    /// The raw query string, without `?` (an empty one counts as none).
    #[must_use]
    pub fn query(mut self, query: Option<&'a str>) -> Self {
        self.query = query.filter(|q| !q.is_empty());
        self
    }

    /// The TCP peer's address, for the login throttle and the audit trail (none: the throttle
    /// counts per email only, and events record no client).
    #[must_use]
    pub fn peer(mut self, peer: Option<IpAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// The principal an outer auth layer already authenticated: the endpoints use it rather
    /// than authenticating again.
    #[must_use]
    pub fn principal(mut self, principal: Option<&'a Principal>) -> Self {
        self.principal = principal;
        self
    }

    fn header(&self, name: &'static str) -> Option<&'a [u8]> {
        self.headers.values(name).next()
    }
}

/// The request body was longer than the limit, or broke off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodyError;

/// Answers one request to the auth endpoints.
///
/// `read_body(limit)` is called at most once, only for an endpoint that takes a body and only
/// once the credential and scope checks passed; it must return the body, or [`BodyError`] if
/// it is longer than `limit` bytes (413).
pub async fn handle<H, F, Fut, B>(api: &Api, request: Request<'_, H>, read_body: F) -> Response
where
    H: RequestHeaders + ?Sized,
    F: FnOnce(usize) -> Fut,
    Fut: Future<Output = Result<B, BodyError>>,
    B: AsRef<[u8]>,
{
    let mut usage = None;
    match dispatch(api, request, read_body, &mut usage).await {
        Ok(response) => response.with_usage(usage.as_ref()),
        Err(error) => error.response().with_usage(usage.as_ref()),
    }
}

async fn dispatch<H, F, Fut, B>(
    api: &Api,
    request: Request<'_, H>,
    read_body: F,
    usage: &mut Option<Usage>,
) -> Result<Response, ApiError>
where
    H: RequestHeaders + ?Sized,
    F: FnOnce(usize) -> Fut,
    Fut: Future<Output = Result<B, BodyError>>,
    B: AsRef<[u8]>,
{
    let auth = &api.auth;
    let served = |endpoint| api.serves(endpoint);
    let (route, key_id) = match routes::resolve_served(request.method, request.path, served) {
        Resolved::Found { route, key_id } => (route, key_id),
        Resolved::MethodNotAllowed { allow } => {
            return Err(ApiError::MethodNotAllowed { allow: Some(allow) });
        }
        Resolved::NotFound => return Err(ApiError::RouteNotFound),
    };
    let client = client_address(api.proxies(), request.peer, request.headers);
    let principal = if route.authenticated {
        let principal = match request.principal {
            // An outer layer's principal without the client address gets this request's.
            Some(principal) if principal.client().is_some() || client.is_none() => {
                Cow::Borrowed(principal)
            }
            Some(principal) => Cow::Owned(with_client(principal.clone(), client)),
            None => Cow::Owned(
                authenticate_request(
                    auth,
                    request.headers.values(AUTHORIZATION),
                    request.query,
                    AuthRequirement::required(),
                    client,
                )
                .await?
                // `required()` never yields `Ok(None)`.
                .ok_or(ApiError::MissingCredentials)?,
            ),
        };
        if let Some(scope) = route.scope {
            principal.require_scope(scope)?;
        }
        // An outer layer that authenticated the request also charged it.
        if request.principal.is_none() && auth.has_limits(&principal) {
            *usage = Some(Box::pin(auth.charge(&principal, route.cost)).await?);
        }
        Some(principal)
    } else {
        None
    };
    // A report without its signature headers is refused before its body is read.
    let signature = match route.endpoint {
        Endpoint::GitHubSecretScanning => {
            Some(SignatureHeaders::from_headers(request.headers).map_err(ApiError::Signature)?)
        }
        _ => None,
    };
    let bytes = if route.body {
        Some(
            read_body(api.body_limit_of(route.endpoint))
                .await
                .map_err(|BodyError| ApiError::PayloadTooLarge)?,
        )
    } else {
        None
    };
    let body = || {
        RequestBody::new(
            request.header(CONTENT_TYPE),
            bytes.as_ref().map_or(&[][..], AsRef::as_ref),
        )
    };
    let key_id = || parse_key_id(key_id.as_deref().unwrap_or_default());
    match (route.endpoint, principal.as_deref()) {
        (Endpoint::Login, _) => {
            let login: LoginRequest = decode_json(body())?;
            let token = auth
                .login_from(&login.email, &login.password, client)
                .await?;
            Response::json(200, &token)
        }
        (Endpoint::DeriveToken, Some(principal)) => {
            let token_request: TokenRequest = decode_optional_json(body())?;
            Response::json(200, &auth.derive_token(principal, token_request).await?)
        }
        (Endpoint::IssueTicket, Some(principal)) => {
            let ticket: TicketRequest = decode_optional_json(body())?;
            let issued = auth
                .issue_ticket(principal, ticket.chat_id.as_deref())
                .await?;
            Response::json(200, &issued)
        }
        (Endpoint::RevokeByPossession, _) => {
            let possession: PossessionRequest = decode_json(body())?;
            // The outcome is for the logs and the audit trail: the caller hears the same
            // whatever it was.
            auth.revoke_by_possession(possession.key.expose(), client)
                .await?;
            Response::json(202, &RevocationAccepted::BODY)
        }
        (Endpoint::GitHubSecretScanning, _) => {
            // `serves` hid the route when unconfigured, and its headers were read above.
            let (Some(scanning), Some(signature)) = (api.scanning(), signature) else {
                return Err(ApiError::RouteNotFound);
            };
            let raw = bytes.as_ref().map_or(&[][..], AsRef::as_ref);
            scanning
                .verify(signature, raw)
                .await
                .map_err(ApiError::Signature)?;
            let matches = decode_json_list(body(), scanning.match_limit())?;
            let feedback = secret_scanning::feedback(auth, scanning, &matches, client).await?;
            Response::json(200, &feedback)
        }
        (Endpoint::Me, Some(principal)) => me(auth, principal).await,
        (Endpoint::ListKeys, Some(principal)) => {
            Response::json(200, &auth.list_keys(principal).await?)
        }
        (Endpoint::CreateKey, Some(principal)) => {
            let new_key: NewKey = decode_json(body())?;
            Response::json(201, &auth.create_key(principal, new_key).await?)
        }
        (Endpoint::RotateKey, Some(principal)) => {
            let id = key_id()?;
            let request: RotateRequest = decode_optional_json(body())?;
            let options = match request.grace_secs {
                None | Some(0) => RotateOptions::immediate(),
                Some(secs) if secs <= MAX_ROTATION_GRACE_SECS => {
                    RotateOptions::with_grace(std::time::Duration::from_secs(secs))
                }
                Some(_) => {
                    return Err(ApiError::Validation(vec![ValidationIssue::new(
                        vec![LocPart::from("body"), "grace_secs".into()],
                        format!("Input should be less than or equal to {MAX_ROTATION_GRACE_SECS}"),
                        "less_than_equal",
                    )]));
                }
            };
            let rotated = auth.rotate_key(principal, id, options).await?;
            Response::json(200, &rotated)
        }
        (Endpoint::UpdateKey, Some(principal)) => {
            let id = key_id()?;
            let changes: KeyChanges = decode_json(body())?;
            Response::json(200, &auth.update_key(principal, id, changes).await?)
        }
        (Endpoint::RevokeKey, Some(principal)) => {
            let id = key_id()?;
            let options = if query_flag(request.query, "cascade")? {
                RevokeOptions::cascade()
            } else {
                RevokeOptions::key_only()
            };
            auth.revoke_key(principal, id, options).await?;
            Ok(Response::no_content())
        }
        (Endpoint::AuditEvents, Some(principal)) => {
            audit_events(auth, principal, request.query).await
        }
        // Every other endpoint is authenticated (see `ROUTES`): there is a principal.
        _ => Err(ApiError::MissingCredentials),
    }
}

fn parse_key_id(raw: &str) -> Result<KeyId, ApiError> {
    KeyId::parse_str(raw).map_err(|_| invalid_uuid("path", "key_id"))
}

/// 422 `uuid_parsing` at `[place, name]`.
fn invalid_uuid(place: &'static str, name: &'static str) -> ApiError {
    ApiError::Validation(vec![ValidationIssue::new(
        vec![place.into(), name.into()],
        "Input should be a valid UUID",
        "uuid_parsing",
    )])
}

/// The page size of `GET /users/me/audit-events` without `limit`: 50.
pub const DEFAULT_AUDIT_PAGE: usize = 50;
/// The largest `limit` `GET /users/me/audit-events` accepts: 200 (more is 422).
pub const MAX_AUDIT_PAGE: usize = 200;

/// The body of `GET /users/me/audit-events`: a page of events, newest first, and the cursor
/// of the next page (`null` on the last).
#[derive(Serialize)]
pub(crate) struct AuditPage<'a> {
    pub(crate) events: &'a [AuditEvent],
    pub(crate) next_before: Option<EventId>,
}

/// `GET /users/me/audit-events?limit=…&before=…`: at most `limit` of the caller's events
/// (1 to [`MAX_AUDIT_PAGE`], [`DEFAULT_AUDIT_PAGE`] by default) older than the event `before`,
/// newest first. `next_before` is the last event's id when more events follow, else `null`:
/// pass it as `before` for the next page. A bad `limit` or `before` is 422 at
/// `["query", name]`.
async fn audit_events(
    auth: &Authenticator,
    principal: &Principal,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let limit = match query_value(query, "limit") {
        None => DEFAULT_AUDIT_PAGE,
        Some(raw) => page_size(&raw)?,
    };
    let before = query_value(query, "before")
        .map(|raw| EventId::parse_str(&raw).map_err(|_| invalid_uuid("query", "before")))
        .transpose()?;
    // One more than asked: whether another page follows, without a second query.
    let mut events = auth.audit_events(principal, before, limit + 1).await?;
    let next_before = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| e.id)
    } else {
        None
    };
    Response::json(
        200,
        &AuditPage {
            events: &events,
            next_before,
        },
    )
}

/// `limit` of an audit page: an integer from 1 to [`MAX_AUDIT_PAGE`], as pydantic reads and
/// bounds it.
fn page_size(raw: &str) -> Result<usize, ApiError> {
    let issue = |msg: String, kind| {
        ApiError::Validation(vec![ValidationIssue::new(
            vec![LocPart::from("query"), "limit".into()],
            msg,
            kind,
        )])
    };
    let n: i64 = raw.trim().parse().map_err(|_| {
        issue(
            "Input should be a valid integer, unable to parse string as an integer".into(),
            "int_parsing",
        )
    })?;
    if n < 1 {
        return Err(issue(
            "Input should be greater than or equal to 1".into(),
            "greater_than_equal",
        ));
    }
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_AUDIT_PAGE)
        .ok_or_else(|| {
            issue(
                format!("Input should be less than or equal to {MAX_AUDIT_PAGE}"),
                "less_than_equal",
            )
        })
}

/// The last value of the query parameter `name`, decoded.
fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, str>> {
    query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .last()
}

/// The body of `POST /auth/login`.
#[derive(serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct LoginRequest {
    /// The account's email (its schema and rules: `openapi::login_email`).
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::login_email))]
    email: String,
    /// The password.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password))]
    password: SecretString,
}

/// The longest grace a rotation may give the old value: 7 days.
pub const MAX_ROTATION_GRACE_SECS: u64 = 7 * 24 * 60 * 60;

/// The body of `POST /users/me/api-keys/{key_id}/rotate`, optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RotateKeyRequest))]
pub(crate) struct RotateRequest {
    /// Seconds the old value keeps working after the rotation (0 to 604,800, 7 days); none
    /// (the default, as the product documents): it stops at once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604_800))]
    grace_secs: Option<u64>,
}

/// The body of `POST /auth/ws-tickets`, optional.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct TicketRequest {
    /// The chat the ticket is for (the `{chat_id}` of `/api/ws/{chat_id}`); absent: any chat.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    chat_id: Option<String>,
}

/// The body of `POST /keys/revoke`.
#[derive(serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RevokeKeyRequest))]
pub(crate) struct PossessionRequest {
    /// The key to revoke, `nxr_…`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    key: SecretString,
}

/// The answer of `POST /keys/revoke`, whatever became of the key: `{"status": "accepted"}`.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RevocationAccepted))]
pub(crate) struct RevocationAccepted {
    /// Always `accepted`.
    status: &'static str,
}

impl RevocationAccepted {
    pub(crate) const BODY: Self = Self { status: "accepted" };
}

/// The body of `GET /users/me`.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = User))]
pub(crate) struct Me<'a> {
    /// The owner id: the user id (the JWT `sub`), or the application's own id for its keys.
    id: &'a str,
    /// The user's email; `null` when the owner has no user record.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    email: Option<String>,
}

/// `GET /users/me`: `{"id", "email"}`. Needs no scope: any authenticated principal may ask who
/// it is. `email` is `null` when the owner has no user record — an owner id of the
/// application's own user system, or an authenticator without a user store — so the endpoint
/// still identifies the caller rather than failing. A user store that fails is 503.
async fn me(auth: &Authenticator, principal: &Principal) -> Result<Response, ApiError> {
    let email = if auth.has_users() {
        auth.user(principal.owner()).await?.map(|u| u.email)
    } else {
        None
    };
    Response::json(
        200,
        &Me {
            id: principal.owner().as_str(),
            email,
        },
    )
}

/// A boolean query parameter: absent → `false`; the last occurrence wins; `true`/`false`,
/// `1`/`0`, `yes`/`no`, `on`/`off` in any case, as pydantic reads them; anything else is a 422
/// at `["query", name]`.
fn query_flag(query: Option<&str>, name: &str) -> Result<bool, ApiError> {
    let Some(value) = query_value(query, name) else {
        return Ok(false);
    };
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ApiError::Validation(vec![ValidationIssue::new(
            vec![LocPart::from("query"), name.into()],
            "Input should be a valid boolean, unable to interpret input",
            "bool_parsing",
        )])),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nexora_auth::{
        Credential, JwtConfig, JwtKeys, MemoryKeyStore, MemoryUserStore, OwnerId, PasswordPolicy,
        PepperRing, Scopes, SecretBytes, TokenAuthority,
    };
    use serde_json::{Value, json};

    use super::*;
    use crate::scopes;

    struct Headers(Vec<(&'static str, Vec<u8>)>);

    impl RequestHeaders for Headers {
        fn values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a {
            self.0
                .iter()
                .filter(move |(n, _)| *n == name)
                .map(|(_, v)| v.as_slice())
        }
    }

    fn api(with_users: bool) -> Api {
        let pepper = SecretBytes::new(b"test pepper of at least thirty-two bytes!".to_vec());
        let secret = SecretBytes::new(b"test jwt secret of at least thirty-two bytes".to_vec());
        let mut builder = Authenticator::builder(
            Arc::new(MemoryKeyStore::new()),
            PepperRing::new(1, pepper).unwrap(),
        )
        .tokens(
            TokenAuthority::new(
                JwtKeys::hs256(&secret).unwrap(),
                JwtConfig::new("nexora", "nexora-api"),
            )
            .unwrap(),
        )
        .password_policy(PasswordPolicy::default().argon2_params(256, 1, 1));
        if with_users {
            builder = builder.users(Arc::new(MemoryUserStore::new()));
        }
        Api::new(builder.build().unwrap())
    }

    fn principal(owner: &str, scopes: &[&str]) -> Principal {
        Principal::new(
            OwnerId::new(owner),
            Credential::Internal,
            Scopes::new(scopes.iter().copied()).unwrap(),
        )
    }

    fn manager(owner: &str) -> Principal {
        principal(owner, &[scopes::KEYS_MANAGE, scopes::AGENTS_READ])
    }

    /// One request through `handle`, as `caller` (an outer layer's principal) or with
    /// `authorization`; the body is JSON.
    async fn call(
        api: &Api,
        caller: Option<&Principal>,
        method: &str,
        path_and_query: &str,
        body: &str,
    ) -> Response {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let headers = Headers(vec![(CONTENT_TYPE, b"application/json".to_vec())]);
        let request = Request::new(method, path, &headers)
            .query(query)
            .principal(caller);
        let body = body.as_bytes().to_vec();
        handle(api, request, |_| async move { Ok::<_, BodyError>(body) }).await
    }

    fn body_json(response: &Response) -> Value {
        serde_json::from_str(response.body.as_deref().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn key_management_needs_the_scope_before_path_and_body_checks() {
        let api = api(true);
        let reader = principal("alice", &[scopes::AGENTS_READ]);
        let id = KeyId::new_random().to_string();
        let denied = [
            call(&api, Some(&reader), "GET", "/users/me/api-keys", "").await,
            call(
                &api,
                Some(&reader),
                "POST",
                "/users/me/api-keys",
                r#"{"name": "a"}"#,
            )
            .await,
            // Scope is checked before the body and the path: 403, not 422.
            call(
                &api,
                Some(&reader),
                "POST",
                "/users/me/api-keys",
                "nonsense",
            )
            .await,
            call(
                &api,
                Some(&reader),
                "POST",
                "/users/me/api-keys/x/rotate",
                "",
            )
            .await,
            call(
                &api,
                Some(&reader),
                "DELETE",
                &format!("/users/me/api-keys/{id}"),
                "",
            )
            .await,
        ];
        for response in denied {
            assert_eq!(response.status, 403);
            assert_eq!(
                response.body.as_deref(),
                Some(r#"{"detail":"Insufficient permissions"}"#)
            );
        }
    }

    #[tokio::test]
    async fn the_body_is_read_only_when_needed_and_within_the_limit() {
        let api = api(false).max_body_bytes(10);
        let alice = manager("alice");
        let headers = Headers(vec![]);
        let seen = std::sync::Mutex::new(None);
        let request = Request::new("POST", "/users/me/api-keys", &headers).principal(Some(&alice));
        let response = handle(&api, request, |limit| {
            *seen.lock().unwrap() = Some(limit);
            async { Err::<Vec<u8>, _>(BodyError) }
        })
        .await;
        assert_eq!((response.status, *seen.lock().unwrap()), (413, Some(10)));
        // Without credentials the body is never read.
        let request = Request::new("POST", "/users/me/api-keys", &headers);
        let read = std::sync::atomic::AtomicBool::new(false);
        let response = handle(&api, request, |_| {
            read.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<Vec<u8>, BodyError>(Vec::new()) }
        })
        .await;
        assert_eq!(response.status, 401);
        assert!(!read.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn create_list_rotate_revoke() {
        let api = api(false);
        let auth = api.authenticator();
        let alice = manager("alice");
        let created = call(
            &api,
            Some(&alice),
            "POST",
            "/users/me/api-keys",
            r#"{"name": "CI", "scopes": ["agents:read"]}"#,
        )
        .await;
        assert_eq!(created.status, 201);
        let created = body_json(&created);
        let key = created["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("nxr_"));
        assert_eq!(created["name"], "CI");
        assert_eq!(created["scopes"], json!(["agents:read"]));
        assert!(created["last_used_at"].is_null() && created["expires_at"].is_null());
        let id = created["id"].as_str().unwrap().to_owned();

        let listed = call(&api, Some(&alice), "GET", "/users/me/api-keys", "").await;
        assert_eq!(listed.status, 200);
        let text = listed.body.clone().unwrap();
        assert!(
            !text.contains(&key) && !text.contains("\"key\"") && !text.contains("digest"),
            "{text}"
        );
        assert_eq!(body_json(&listed)[0]["id"], id.as_str());

        // Another owner cannot see, rotate or revoke it: 404, as for an unknown id.
        let bob = manager("bob");
        let listed = call(&api, Some(&bob), "GET", "/users/me/api-keys", "").await;
        assert_eq!(body_json(&listed), json!([]));
        let unknown = KeyId::new_random();
        for (who, method, path) in [
            (&bob, "POST", format!("/users/me/api-keys/{id}/rotate")),
            (&bob, "DELETE", format!("/users/me/api-keys/{id}")),
            (&alice, "DELETE", format!("/users/me/api-keys/{unknown}")),
        ] {
            let response = call(&api, Some(who), method, &path, "").await;
            assert_eq!(response.status, 404);
            assert_eq!(
                response.body.as_deref(),
                Some(r#"{"detail":"API key not found"}"#)
            );
        }
        let bad_id = call(
            &api,
            Some(&alice),
            "POST",
            "/users/me/api-keys/123/rotate",
            "",
        )
        .await;
        assert_eq!(
            body_json(&bad_id)["detail"],
            json!([{"loc": ["path", "key_id"], "msg": "Input should be a valid UUID", "type": "uuid_parsing"}])
        );
        let bad_flag = call(
            &api,
            Some(&alice),
            "DELETE",
            &format!("/users/me/api-keys/{id}?cascade=maybe"),
            "",
        )
        .await;
        assert_eq!(
            body_json(&bad_flag)["detail"][0]["loc"],
            json!(["query", "cascade"])
        );

        let rotated = call(
            &api,
            Some(&alice),
            "POST",
            &format!("/users/me/api-keys/{id}/rotate"),
            "",
        )
        .await;
        assert_eq!(rotated.status, 200);
        let new_key = body_json(&rotated)["key"].as_str().unwrap().to_owned();
        assert_eq!(body_json(&rotated)["id"], id.as_str());
        assert!(auth.authenticate(&key).await.is_err());
        assert!(auth.authenticate(&new_key).await.is_ok());

        // With a grace period the old value keeps working; more than 7 days is 422.
        let graced = call(
            &api,
            Some(&alice),
            "POST",
            &format!("/users/me/api-keys/{id}/rotate"),
            r#"{"grace_secs": 3600}"#,
        )
        .await;
        assert_eq!(graced.status, 200);
        let newest = body_json(&graced)["key"].as_str().unwrap().to_owned();
        assert!(
            auth.authenticate(&new_key).await.is_ok(),
            "within its grace"
        );
        assert!(auth.authenticate(&newest).await.is_ok());
        let too_long = call(
            &api,
            Some(&alice),
            "POST",
            &format!("/users/me/api-keys/{id}/rotate"),
            r#"{"grace_secs": 604801}"#,
        )
        .await;
        assert_eq!(
            body_json(&too_long)["detail"][0]["loc"],
            json!(["body", "grace_secs"])
        );
        let new_key = newest;

        let revoked = call(
            &api,
            Some(&alice),
            "DELETE",
            &format!("/users/me/api-keys/{id}?cascade=true"),
            "",
        )
        .await;
        assert_eq!(revoked, Response::no_content());
        assert!(auth.authenticate(&new_key).await.is_err());
        let listed = call(&api, Some(&alice), "GET", "/users/me/api-keys", "").await;
        assert_eq!(body_json(&listed), json!([]));
    }

    #[tokio::test]
    async fn login_and_me() {
        let api = api(true);
        let user = api
            .authenticator()
            .register_user(
                "Alice@Example.com",
                &SecretString::from("correct horse battery"),
                Scopes::new([scopes::KEYS_MANAGE]).unwrap(),
            )
            .await
            .unwrap();
        let ok = call(
            &api,
            None,
            "POST",
            "/auth/login",
            r#"{"email": "alice@example.com", "password": "correct horse battery"}"#,
        )
        .await;
        assert_eq!(ok.status, 200);
        let token = body_json(&ok)["access_token"].as_str().unwrap().to_owned();
        assert_eq!(body_json(&ok)["token_type"], "bearer");
        let headers = Headers(vec![(
            AUTHORIZATION,
            format!("Bearer {token}").into_bytes(),
        )]);
        let me = handle(
            &api,
            Request::new("GET", "/users/me", &headers),
            |_| async { Ok::<Vec<u8>, BodyError>(Vec::new()) },
        )
        .await;
        assert_eq!(
            body_json(&me),
            json!({"id": user.id.as_str(), "email": "alice@example.com"})
        );

        let wrong = call(
            &api,
            None,
            "POST",
            "/auth/login",
            r#"{"email": "alice@example.com", "password": "nope"}"#,
        )
        .await;
        assert_eq!(
            wrong.body.as_deref(),
            Some(r#"{"detail":"Incorrect email or password"}"#)
        );
        let incomplete = call(&api, None, "POST", "/auth/login", r#"{"email": "a@b.c"}"#).await;
        assert_eq!(
            body_json(&incomplete)["detail"],
            json!([{"loc": ["body", "password"], "msg": "Field required", "type": "missing"}])
        );
        let long_email = format!(r#"{{"email": "{}@b.c", "password": "x"}}"#, "a".repeat(300));
        let too_long = call(&api, None, "POST", "/auth/login", &long_email).await;
        assert_eq!(
            body_json(&too_long)["detail"],
            json!([{"loc": ["body", "email"], "msg": "Email must be at most 254 bytes", "type": "string_too_long"}])
        );

        // An owner without a user record (or no user store at all) still learns its id.
        let app_owner = manager("app-owner-7");
        let me = call(&api, Some(&app_owner), "GET", "/users/me", "").await;
        assert_eq!(body_json(&me), json!({"id": "app-owner-7", "email": null}));
        let keys_only = self::api(false);
        let me = call(&keys_only, Some(&app_owner), "GET", "/users/me", "").await;
        assert_eq!(body_json(&me)["email"], Value::Null);
    }

    #[tokio::test]
    async fn repeated_login_failures_are_429_with_retry_after() {
        let api = api(true);
        let headers = Headers(vec![(CONTENT_TYPE, b"application/json".to_vec())]);
        let attempt = br#"{"email": "mallory@example.com", "password": "guess"}"#;
        let mut responses = Vec::new();
        for _ in 0..7 {
            let request =
                Request::new("POST", "/auth/login", &headers).peer(Some([192, 0, 2, 1].into()));
            responses.push(handle(&api, request, |_| async { Ok::<_, BodyError>(attempt) }).await);
        }
        assert!(
            responses[..5].iter().all(|r| r.status == 401),
            "{responses:?}"
        );
        let limited = &responses[6];
        assert_eq!(
            (limited.status, limited.body.as_deref()),
            (429, Some(r#"{"detail":"Too many requests"}"#))
        );
        assert!(limited.retry_after.is_some_and(|s| s > 0));
    }

    #[tokio::test]
    async fn the_audit_trail_pages_newest_first_and_validates_its_query() {
        let trail = Arc::new(nexora_auth::MemoryAuditStore::new());
        let pepper = SecretBytes::new(b"test pepper of at least thirty-two bytes!".to_vec());
        let auth = Authenticator::builder(
            Arc::new(MemoryKeyStore::new()),
            PepperRing::new(1, pepper).unwrap(),
        )
        .audit(trail)
        .build()
        .unwrap();
        let api = Api::new(auth);
        let alice = principal(
            "alice",
            &[scopes::KEYS_MANAGE, scopes::AUDIT_READ, scopes::AGENTS_READ],
        );
        let body = r#"{"name": "k", "scopes": ["agents:read"]}"#;
        let mut created = Vec::new();
        for _ in 0..3 {
            let key = call(&api, Some(&alice), "POST", "/users/me/api-keys", body).await;
            created.push(body_json(&key)["id"].as_str().unwrap().to_owned());
        }
        let bob = principal("bob", &[scopes::KEYS_MANAGE, scopes::AUDIT_READ]);
        call(
            &api,
            Some(&bob),
            "POST",
            "/users/me/api-keys",
            r#"{"name": "b"}"#,
        )
        .await;

        let first = call(
            &api,
            Some(&alice),
            "GET",
            "/users/me/audit-events?limit=2",
            "",
        )
        .await;
        assert_eq!(first.status, 200);
        let first = body_json(&first);
        let targets = |page: &Value| -> Vec<String> {
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["target"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(targets(&first), [created[2].clone(), created[1].clone()]);
        assert_eq!(first["events"][0]["action"], "key_created");
        let cursor = first["next_before"].as_str().unwrap();
        assert_eq!(first["events"][1]["id"], cursor);
        let rest = call(
            &api,
            Some(&alice),
            "GET",
            &format!("/users/me/audit-events?before={cursor}"),
            "",
        )
        .await;
        let rest = body_json(&rest);
        assert_eq!(targets(&rest), [created[0].clone()], "never bob's");
        assert_eq!(rest["next_before"], Value::Null);

        for (query, loc, kind) in [
            ("limit=0", "limit", "greater_than_equal"),
            ("limit=201", "limit", "less_than_equal"),
            ("limit=ten", "limit", "int_parsing"),
            ("before=nope", "before", "uuid_parsing"),
        ] {
            let bad = call(
                &api,
                Some(&alice),
                "GET",
                &format!("/users/me/audit-events?{query}"),
                "",
            )
            .await;
            assert_eq!(bad.status, 422, "{query}");
            assert_eq!(body_json(&bad)["detail"][0]["loc"], json!(["query", loc]));
            assert_eq!(body_json(&bad)["detail"][0]["type"], kind, "{query}");
        }
        let no_scope = call(
            &api,
            Some(&manager("alice")),
            "GET",
            "/users/me/audit-events",
            "",
        )
        .await;
        assert_eq!(no_scope.status, 403);
    }

    #[tokio::test]
    async fn routes_answer_404_and_405_before_credentials() {
        let api = api(false);
        let missing = call(&api, None, "GET", "/users/me/nothing", "").await;
        assert_eq!(missing.status, 404);
        let wrong_method = call(&api, None, "PUT", "/users/me/api-keys", "").await;
        assert_eq!(
            (wrong_method.status, wrong_method.allow),
            (405, Some("GET,HEAD,POST"))
        );
        let head = call(&api, Some(&manager("alice")), "HEAD", "/users/me", "").await;
        assert_eq!(head.status, 200);
    }

    #[tokio::test]
    async fn optional_and_query_token_requirements() {
        let api = api(false);
        let auth = api.authenticator();
        let key = auth
            .create_key(&manager("alice"), NewKey::named("ws"))
            .await
            .unwrap();
        let query = format!("token={}", key.key.expose());
        let none: [&[u8]; 0] = [];
        let missing =
            authenticate_request(auth, none, Some(&query), AuthRequirement::required(), None).await;
        assert_eq!(
            missing.unwrap_err().response().www_authenticate,
            Some("Bearer")
        );
        let ws = AuthRequirement::required().accept_query_token();
        let found = authenticate_request(auth, none, Some(&query), ws, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.owner().as_str(), "alice");
        assert!(
            authenticate_request(auth, none, None, AuthRequirement::optional(), None)
                .await
                .unwrap()
                .is_none()
        );
        let bad = authenticate_request(
            auth,
            [&b"Bearer nxr_nope"[..]],
            None,
            AuthRequirement::optional(),
            None,
        )
        .await;
        assert_eq!(
            bad.unwrap_err().response().www_authenticate,
            Some(r#"Bearer error="invalid_token""#)
        );
        assert_eq!(AuthRequirement::default(), AuthRequirement::required());
    }
}
