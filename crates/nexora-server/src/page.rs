//! The Settings → API Keys page: sign in, list, create, rotate and revoke keys, and read the
//! audit trail, in a browser, over the same JSON API as every other client.
//!
//! Plain HTML, CSS and JavaScript, embedded in the binary (no build step, no third-party
//! assets). What keeps it safe is mostly in the headers, set on every response of the server by
//! [`security_headers`]:
//!
//! * a Content-Security-Policy that allows scripts, styles, images and `fetch` from the
//!   server's own origin only, no inline script or style, no form submission anywhere (the
//!   forms are handled by the script, so a form can never send a password in a URL even if the
//!   script fails to load), no framing (`frame-ancestors 'none'`), and Trusted Types for any
//!   HTML sink;
//! * `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`;
//! * `Cache-Control: no-store` on the page and its assets (the API's own answers carry it from
//!   `nexora-auth-http`, for both frameworks).
//!
//! The access token lives in a variable of the script only: never in a URL, a cookie or web
//! storage; a reload or a closed tab forgets it.

use axum::{
    Router,
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

/// Where the page is served.
pub(crate) const PAGE_PATH: &str = "/settings/api-keys";

const INDEX_HTML: &str = include_str!("../assets/index.html");
const PAGE_JS: &str = include_str!("../assets/page.js");
const PAGE_CSS: &str = include_str!("../assets/page.css");
const ICON_SVG: &str = include_str!("../assets/icon.svg");

/// The Content-Security-Policy of every response.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'";

/// The page's routes: `/` leads to the page, which loads its assets from `/assets/`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to(PAGE_PATH) }))
        .route(
            PAGE_PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/assets/page.js",
            get(|| async { asset("text/javascript; charset=utf-8", PAGE_JS) }),
        )
        .route(
            "/assets/page.css",
            get(|| async { asset("text/css; charset=utf-8", PAGE_CSS) }),
        )
        .route(
            "/assets/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Sets the security headers on every response (see the module docs). A plain function, for
/// `tower::util::MapResponseLayer`: no future is boxed per request (an
/// `axum::middleware::from_fn` boxes one, and every such layer measurably widens the key
/// path's tail under load; see `tests/login_flood.rs`).
pub(crate) fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
