//! The test application on both frameworks, listening on `127.0.0.1:0`.
//!
//! Routes (the same on both):
//!
//! * `/api/...` — the ready router ([`nexora_auth_axum::api_router`],
//!   [`nexora_auth_actix::configure`]);
//! * `GET /agents` — behind the auth layer, extractor `RequireScope<AgentsRead>`, answers
//!   `{"owner": …}`;
//! * `GET /optional` — behind the optional layer, extractor `Option<Authenticated>`;
//! * `GET /limited` — returns the core's 429 through the crate's rejection type;
//! * `GET /ws/{chat_id}` — WebSocket behind the layer with `?token=` and single-use `?ticket=`
//!   accepted (a ticket is checked against `{chat_id}`); on upgrade the
//!   server sends `hello <owner> in <chat_id>`, then keeps the socket open until the client
//!   leaves or the credential ends, when it sends the Close frame of
//!   [`nexora_auth_http::websocket::until_credential_ends`] (4401 `credential revoked`, …);
//! * `GET /plain` and `GET /authed` — a trivial handler without and with the layer (benchmarks).

use nexora_auth::{AuthError, Authenticator};
use nexora_auth_http::{Api, scopes::AgentsRead, websocket::until_credential_ends};
use serde_json::json;

/// Starts the axum application on the current Tokio runtime; returns its base URL.
/// Takes an [`nexora_auth::Authenticator`] or an [`Api`] with settings.
pub async fn spawn_axum(api: impl Into<Api>) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum_app::app(api.into());
    // With the peer address, like actix: login throttling then counts per client too.
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    Ok(url)
}

/// Starts the actix-web application with `workers` worker threads on a thread of its own (actix
/// runs its own runtime); returns its base URL.
/// Takes an [`nexora_auth::Authenticator`] or an [`Api`] with settings.
pub fn spawn_actix(api: impl Into<Api>, workers: usize) -> std::io::Result<String> {
    let api = api.into();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let (started, result) = std::sync::mpsc::channel();
    // actix's server and apps are not `Send`: build and run them on the thread that owns them.
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().configure(actix_app::app(api.clone()))
            })
            .workers(workers)
            .disable_signals()
            .listen(listener);
            match server {
                Ok(server) => {
                    let _ = started.send(Ok(()));
                    server.run().await
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                    Ok(())
                }
            }
        })
    });
    result
        .recv()
        .map_err(|_| std::io::Error::other("the actix thread died"))??;
    Ok(url)
}

mod axum_app {
    use axum::{
        Json, Router,
        extract::{
            Path, WebSocketUpgrade,
            ws::{CloseFrame, Message},
        },
        response::Response,
        routing::get,
    };
    use nexora_auth_axum::{AuthLayer, AuthRejection, Authenticated, RequireScope, api_router};

    use super::*;

    async fn agents(caller: RequireScope<AgentsRead>) -> Json<serde_json::Value> {
        Json(json!({"owner": caller.owner().as_str()}))
    }

    async fn optional(caller: Option<Authenticated>) -> Json<serde_json::Value> {
        Json(json!({"owner": caller.map(|c| c.owner().as_str().to_owned())}))
    }

    async fn limited() -> Result<(), AuthRejection> {
        Err(AuthError::RateLimited {
            retry_after_secs: 7,
        }
        .into())
    }

    async fn chat(
        auth: Authenticator,
        Path(chat_id): Path<String>,
        Authenticated(principal): Authenticated,
        upgrade: WebSocketUpgrade,
    ) -> Response {
        let greeting = format!("hello {} in {chat_id}", principal.owner());
        upgrade.on_upgrade(move |mut socket| async move {
            // The client may already be gone; nothing to do then.
            if socket.send(Message::Text(greeting.into())).await.is_err() {
                return;
            }
            let client_leaves = async {
                while let Some(Ok(message)) = socket.recv().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            };
            if let Err(close) = until_credential_ends(&auth, &principal, client_leaves).await {
                let frame = CloseFrame {
                    code: close.code,
                    reason: close.reason.into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
            }
        })
    }

    async fn ok() -> &'static str {
        "ok"
    }

    pub(super) fn app(api: Api) -> Router {
        let auth = api.authenticator().clone();
        Router::new()
            .route(
                "/agents",
                get(agents).route_layer(AuthLayer::new(auth.clone())),
            )
            .route(
                "/optional",
                get(optional).route_layer(AuthLayer::new(auth.clone()).optional()),
            )
            .route("/limited", get(limited))
            .route(
                "/ws/{chat_id}",
                get({
                    let auth = auth.clone();
                    move |path, caller, upgrade| chat(auth, path, caller, upgrade)
                })
                .route_layer(
                    AuthLayer::new(auth.clone())
                        .accept_query_token()
                        .accept_ticket(),
                ),
            )
            .route("/plain", get(ok))
            .route("/authed", get(ok).route_layer(AuthLayer::new(auth.clone())))
            .nest("/api", api_router(api))
    }
}

mod actix_app {
    use actix_web::{HttpRequest, HttpResponse, web};
    use futures_util::StreamExt;
    use nexora_auth_actix::{
        AuthMiddleware, AuthRejection, Authenticated, RequireScope, configure,
    };

    use super::*;

    async fn agents(caller: RequireScope<AgentsRead>) -> HttpResponse {
        HttpResponse::Ok().json(json!({"owner": caller.owner().as_str()}))
    }

    async fn optional(caller: Option<Authenticated>) -> HttpResponse {
        HttpResponse::Ok().json(json!({"owner": caller.map(|c| c.owner().as_str().to_owned())}))
    }

    async fn limited() -> Result<HttpResponse, AuthRejection> {
        Err(AuthError::RateLimited {
            retry_after_secs: 7,
        }
        .into())
    }

    async fn chat(
        auth: web::Data<Authenticator>,
        request: HttpRequest,
        body: web::Payload,
        chat_id: web::Path<String>,
        Authenticated(principal): Authenticated,
    ) -> actix_web::Result<HttpResponse> {
        let (response, mut session, mut stream) = actix_ws::handle(&request, body)?;
        let greeting = format!("hello {} in {chat_id}", principal.owner());
        actix_web::rt::spawn(async move {
            // The client may already be gone; nothing to do then.
            if session.text(greeting).await.is_err() {
                return;
            }
            let client_leaves = async {
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, actix_ws::Message::Close(_)) {
                        break;
                    }
                }
            };
            if let Err(close) = until_credential_ends(&auth, &principal, client_leaves).await {
                let _ = session
                    .close(Some(actix_ws::CloseReason {
                        code: actix_ws::CloseCode::from(close.code),
                        description: Some(close.reason.to_owned()),
                    }))
                    .await;
            }
        });
        Ok(response)
    }

    async fn ok() -> &'static str {
        "ok"
    }

    pub(super) fn app(api: Api) -> impl FnOnce(&mut web::ServiceConfig) {
        let auth = api.authenticator().clone();
        move |cfg| {
            cfg.service(
                web::resource("/agents")
                    .wrap(AuthMiddleware::new(auth.clone()))
                    .route(web::get().to(agents)),
            )
            .service(
                web::resource("/optional")
                    .wrap(AuthMiddleware::new(auth.clone()).optional())
                    .route(web::get().to(optional)),
            )
            .service(web::resource("/limited").route(web::get().to(limited)))
            .service(
                web::resource("/ws/{chat_id}")
                    .app_data(web::Data::new(auth.clone()))
                    .wrap(
                        AuthMiddleware::new(auth.clone())
                            .accept_query_token()
                            .accept_ticket(),
                    )
                    .route(web::get().to(chat)),
            )
            .service(web::resource("/plain").route(web::get().to(ok)))
            .service(
                web::resource("/authed")
                    .wrap(AuthMiddleware::new(auth.clone()))
                    .route(web::get().to(ok)),
            )
            .service(web::scope("/api").configure(configure(api)));
        }
    }
}
