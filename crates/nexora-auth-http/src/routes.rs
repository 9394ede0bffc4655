//! The one route table of the auth endpoints, and the router both framework crates use.
//!
//! [`ROUTES`] lists every endpoint once: method, path (relative to where the host mounts the
//! API, `/api` in the product), whether it needs credentials, the scope it needs, and whether
//! it reads a body. [`resolve`] matches a request against it, so 404, 405 with its `Allow`
//! header, and `HEAD` are decided here for every framework:
//!
//! * a path no route has → [`Resolved::NotFound`];
//! * a path some route has, with another method → [`Resolved::MethodNotAllowed`] with the
//!   methods it does answer (`GET` implies `HEAD`, as in axum and RFC 9110 §9.3.2);
//! * `HEAD` on a `GET` route runs the `GET` endpoint; the server sends no body.
//!
//! Fixed segments are compared as received; the `{key_id}` segment is percent-decoded, as axum
//! and actix-web decode path parameters (one that does not decode stays as received, and fails
//! the UUID check: 422).

use std::borrow::Cow;

/// An endpoint of the auth API (see [`crate::endpoints`] for what each does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /auth/login`.
    Login,
    /// `POST /auth/token`: a short-lived token derived from the API key presented.
    DeriveToken,
    /// `POST /auth/ws-tickets`: a single-use WebSocket ticket.
    IssueTicket,
    /// `GET /users/me`.
    Me,
    /// `GET /users/me/api-keys`.
    ListKeys,
    /// `POST /users/me/api-keys`.
    CreateKey,
    /// `POST /users/me/api-keys/{key_id}/rotate` `[{grace_secs}]`.
    RotateKey,
    /// `DELETE /users/me/api-keys/{key_id}`.
    RevokeKey,
    /// `PATCH /users/me/api-keys/{key_id}`: a key's name, rate limit and credits.
    UpdateKey,
    /// `GET /users/me/audit-events`.
    AuditEvents,
    /// `POST /keys/revoke`: revoke a key by its text, no credential needed.
    RevokeByPossession,
    /// `POST /secret-scanning/github`: GitHub's signed secret-scanning reports. Served only
    /// when configured ([`crate::Api::secret_scanning`]); otherwise its path is unknown (404).
    GitHubSecretScanning,
}

/// An HTTP method the table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `GET` (and `HEAD`).
    Get,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
    /// `PATCH`.
    Patch,
}

impl Method {
    /// The method's name: `GET`, `POST`, `DELETE`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
        }
    }
}

/// One row of the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path, relative to the API's mount point, with `{key_id}` for the key id segment.
    pub path: &'static str,
    /// The endpoint that answers.
    pub endpoint: Endpoint,
    /// Whether the endpoint needs credentials (`Authorization: Bearer`).
    pub authenticated: bool,
    /// The scope the endpoint needs, if any.
    pub scope: Option<&'static str>,
    /// Whether the endpoint reads a JSON body.
    pub body: bool,
    /// The methods the path answers, as an `Allow` header value.
    pub allow: &'static str,
    /// One line on what the endpoint does (the OpenAPI summary).
    pub summary: &'static str,
    /// What a request costs against its credential's limits (see [`crate::limits`]): 1 for
    /// the API's own work, 0 for managing keys and reading the audit trail (so that a key
    /// at its limit can still be managed), 0 without credentials.
    pub cost: u32,
}

use crate::scopes::{AUDIT_READ, KEYS_MANAGE};

const KEYS: &str = "/users/me/api-keys";
const KEY: &str = "/users/me/api-keys/{key_id}";
const ROTATE: &str = "/users/me/api-keys/{key_id}/rotate";

/// Every endpoint of the auth API, once.
pub const ROUTES: [Route; 12] = [
    Route {
        method: Method::Post,
        path: "/auth/login",
        endpoint: Endpoint::Login,
        authenticated: false,
        scope: None,
        body: true,
        allow: "POST",
        summary: "Exchange email and password for an access token",
        cost: 0,
    },
    Route {
        method: Method::Post,
        path: "/auth/token",
        endpoint: Endpoint::DeriveToken,
        authenticated: true,
        scope: None,
        body: true,
        allow: "POST",
        summary: "Derive a short-lived access token from the API key presented",
        cost: 1,
    },
    Route {
        method: Method::Post,
        path: "/auth/ws-tickets",
        endpoint: Endpoint::IssueTicket,
        authenticated: true,
        scope: None,
        body: true,
        allow: "POST",
        summary: "Issue a single-use ticket for a WebSocket URL",
        cost: 0,
    },
    Route {
        method: Method::Get,
        path: "/users/me",
        endpoint: Endpoint::Me,
        authenticated: true,
        scope: None,
        body: false,
        allow: "GET,HEAD",
        summary: "Who the credential belongs to",
        cost: 1,
    },
    Route {
        method: Method::Get,
        path: KEYS,
        endpoint: Endpoint::ListKeys,
        authenticated: true,
        scope: Some(KEYS_MANAGE),
        body: false,
        allow: "GET,HEAD,POST",
        summary: "List the API keys within the caller's reach",
        cost: 0,
    },
    Route {
        method: Method::Post,
        path: KEYS,
        endpoint: Endpoint::CreateKey,
        authenticated: true,
        scope: Some(KEYS_MANAGE),
        body: true,
        allow: "GET,HEAD,POST",
        summary: "Create an API key (the key is shown once)",
        cost: 0,
    },
    Route {
        method: Method::Post,
        path: ROTATE,
        endpoint: Endpoint::RotateKey,
        authenticated: true,
        scope: Some(KEYS_MANAGE),
        body: true,
        allow: "POST",
        summary: "Rotate an API key: the old key stops working at once",
        cost: 0,
    },
    Route {
        method: Method::Delete,
        path: KEY,
        endpoint: Endpoint::RevokeKey,
        authenticated: true,
        scope: Some(KEYS_MANAGE),
        body: false,
        allow: "DELETE,PATCH",
        summary: "Revoke an API key, optionally with every key it created",
        cost: 0,
    },
    Route {
        method: Method::Patch,
        path: KEY,
        endpoint: Endpoint::UpdateKey,
        authenticated: true,
        scope: Some(KEYS_MANAGE),
        body: true,
        allow: "DELETE,PATCH",
        summary: "Change an API key's name, rate limit or credits",
        cost: 0,
    },
    Route {
        method: Method::Get,
        path: "/users/me/audit-events",
        endpoint: Endpoint::AuditEvents,
        authenticated: true,
        scope: Some(AUDIT_READ),
        body: false,
        allow: "GET,HEAD",
        summary: "The caller's audit trail, newest first",
        cost: 0,
    },
    Route {
        method: Method::Post,
        path: "/keys/revoke",
        endpoint: Endpoint::RevokeByPossession,
        authenticated: false,
        scope: None,
        body: true,
        allow: "POST",
        summary: "Revoke a key by its text, for whoever finds one (no credential needed)",
        cost: 0,
    },
    Route {
        method: Method::Post,
        path: "/secret-scanning/github",
        endpoint: Endpoint::GitHubSecretScanning,
        authenticated: false,
        scope: None,
        body: true,
        allow: "POST",
        summary: "GitHub secret scanning: revoke the live keys of a signed report",
        cost: 0,
    },
];

/// What [`resolve`] found for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// A route answers; `key_id` is the decoded `{key_id}` segment where the path has one.
    Found {
        /// The matching row.
        route: &'static Route,
        /// The `{key_id}` segment, as received after percent-decoding.
        key_id: Option<Cow<'a, str>>,
    },
    /// The path exists, not with this method.
    MethodNotAllowed {
        /// The methods it answers (`Allow`).
        allow: &'static str,
    },
    /// No route has this path.
    NotFound,
}

fn method_matches(route: Method, method: &str) -> bool {
    match route {
        Method::Get => method == "GET" || method == "HEAD",
        other => method == other.as_str(),
    }
}

/// Matches `path` (relative to the mount point, without the query) against a pattern; on a
/// match returns the `{key_id}` segment if the pattern has one.
fn match_path<'a>(pattern: &str, path: &'a str) -> Option<Option<Cow<'a, str>>> {
    let mut key_id = None;
    let mut segments = path.strip_prefix('/')?.split('/');
    for expected in pattern.strip_prefix('/')?.split('/') {
        let segment = segments.next()?;
        if expected == "{key_id}" {
            key_id = Some(percent_decode(segment));
        } else if segment != expected {
            return None;
        }
    }
    if segments.next().is_some() {
        return None;
    }
    Some(key_id)
}

/// Percent-decodes a path segment (`%2D` → `-`; `+` stays `+`, as in a path). A broken escape
/// is kept as received, and a segment that does not decode to UTF-8 stays as received.
pub(crate) fn percent_decode(segment: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .unwrap_or(Cow::Borrowed(segment))
}

/// Finds the route for `method` (as sent: `GET`, `HEAD`, …) and `path` (relative to the
/// mount point, without the query string).
pub fn resolve<'a>(method: &str, path: &'a str) -> Resolved<'a> {
    resolve_served(method, path, |_| true)
}

/// [`resolve`] over the routes whose endpoint `served` accepts: the others do not exist, for
/// any method (404, never 405).
pub fn resolve_served<'a>(
    method: &str,
    path: &'a str,
    served: impl Fn(Endpoint) -> bool,
) -> Resolved<'a> {
    let mut allow = None;
    for route in ROUTES.iter().filter(|route| served(route.endpoint)) {
        if let Some(key_id) = match_path(route.path, path) {
            if method_matches(route.method, method) {
                return Resolved::Found { route, key_id };
            }
            allow = Some(route.allow);
        }
    }
    match allow {
        Some(allow) => Resolved::MethodNotAllowed { allow },
        None => Resolved::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(method: &str, path: &str) -> Option<Endpoint> {
        match resolve(method, path) {
            Resolved::Found { route, .. } => Some(route.endpoint),
            _ => None,
        }
    }

    #[test]
    fn every_route_resolves_to_itself() {
        for route in &ROUTES {
            let path = route
                .path
                .replace("{key_id}", "0198c0de-0000-7000-8000-000000000000");
            assert_eq!(
                endpoint(route.method.as_str(), &path),
                Some(route.endpoint),
                "{path}"
            );
        }
    }

    #[test]
    fn allow_lists_exactly_the_methods_of_the_path() {
        for route in &ROUTES {
            let mut methods: Vec<&str> = ROUTES
                .iter()
                .filter(|other| other.path == route.path)
                .flat_map(|other| match other.method {
                    Method::Get => vec!["GET", "HEAD"],
                    m => vec![m.as_str()],
                })
                .collect();
            methods.sort_unstable();
            let mut allow: Vec<&str> = route.allow.split(',').collect();
            allow.sort_unstable();
            assert_eq!(allow, methods, "{}", route.path);
        }
    }

    #[test]
    fn head_404_and_405() {
        assert_eq!(endpoint("HEAD", "/users/me"), Some(Endpoint::Me));
        assert_eq!(
            resolve("PUT", "/users/me/api-keys"),
            Resolved::MethodNotAllowed {
                allow: "GET,HEAD,POST"
            }
        );
        assert_eq!(
            resolve("GET", "/users/me/api-keys/x/rotate"),
            Resolved::MethodNotAllowed { allow: "POST" }
        );
        for missing in [
            "/users/me/",
            "/users",
            "",
            "/",
            "/users/me/api-keys/a/b",
            "users/me",
            "/users//me",
        ] {
            assert_eq!(resolve("GET", missing), Resolved::NotFound, "{missing:?}");
        }
    }

    #[test]
    fn key_id_segments_are_percent_decoded() {
        let Resolved::Found { key_id, .. } = resolve("DELETE", "/users/me/api-keys/a%2Db%zz")
        else {
            panic!("no match");
        };
        // A broken escape is kept as received.
        assert_eq!(key_id.as_deref(), Some("a-b%zz"));
        let Resolved::Found { key_id, .. } = resolve("DELETE", "/users/me/api-keys/a%2Db") else {
            panic!("no match");
        };
        assert_eq!(key_id.as_deref(), Some("a-b"));
        assert_eq!(endpoint("GET", "/users/%6De"), None);
    }

    #[test]
    fn a_route_not_served_is_unknown_for_every_method() {
        let off = |endpoint| endpoint != Endpoint::GitHubSecretScanning;
        for method in ["POST", "GET", "PUT"] {
            assert_eq!(
                resolve_served(method, "/secret-scanning/github", off),
                Resolved::NotFound,
                "{method}"
            );
        }
        assert_eq!(
            resolve("GET", "/secret-scanning/github"),
            Resolved::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(
            endpoint("POST", "/keys/revoke"),
            Some(Endpoint::RevokeByPossession)
        );
    }
}
