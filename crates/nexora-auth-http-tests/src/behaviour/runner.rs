//! Sends the rows over real HTTP (and WebSocket handshakes) and checks each answer.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use super::{ANY_SECONDS, BodyCheck, Expect, Probe, Row};

fn check_body(check: &BodyCheck, body: &[u8]) -> Result<(), String> {
    match check {
        BodyCheck::Empty if body.is_empty() => Ok(()),
        BodyCheck::Empty => Err(format!(
            "expected an empty body, got {:?}",
            String::from_utf8_lossy(body)
        )),
        _ => {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                format!(
                    "body is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(body)
                )
            })?;
            match check {
                BodyCheck::Json(want) if &value == want => Ok(()),
                BodyCheck::Json(want) => Err(format!("body {value}, want {want}")),
                BodyCheck::Detail(detail) if value == json!({"detail": detail}) => Ok(()),
                BodyCheck::Detail(detail) => Err(format!("body {value}, want detail {detail:?}")),
                BodyCheck::Satisfies(f) => f(&value),
                BodyCheck::Empty => unreachable!("handled above"),
            }
        }
    }
}

fn check_headers(
    expect: &Expect,
    www: Option<&[u8]>,
    retry: Option<&[u8]>,
    content_type: Option<&[u8]>,
    has_body: bool,
) -> Result<(), String> {
    let show = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned());
    if www != expect.www_authenticate.map(str::as_bytes) {
        return Err(format!(
            "WWW-Authenticate {:?}, want {:?}",
            show(www),
            expect.www_authenticate
        ));
    }
    let any_ok = expect.retry_after == Some(ANY_SECONDS)
        && retry
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s > 0);
    if !any_ok && retry != expect.retry_after.map(str::as_bytes) {
        return Err(format!(
            "Retry-After {:?}, want {:?}",
            show(retry),
            expect.retry_after
        ));
    }
    if has_body && content_type != Some(b"application/json".as_slice()) {
        return Err(format!(
            "Content-Type {:?}, want application/json",
            show(content_type)
        ));
    }
    Ok(())
}

async fn run_http(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&'static str, Vec<u8>)],
    body: Option<&Vec<u8>>,
    expect: &Expect,
) -> Result<(), String> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client.request(method, format!("{base}{path}"));
    for (name, value) in headers {
        let value = reqwest::header::HeaderValue::from_bytes(value).map_err(|e| e.to_string())?;
        request = request.header(*name, value);
    }
    if let Some(body) = body {
        request = request.body(body.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let get = |name: &str| response.headers().get(name).map(|v| v.as_bytes().to_vec());
    let (www, retry, content_type, allow) = (
        get("www-authenticate"),
        get("retry-after"),
        get("content-type"),
        get("allow"),
    );
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    if status != expect.status {
        return Err(format!(
            "status {status}, want {} (body {:?})",
            expect.status,
            String::from_utf8_lossy(&body)
        ));
    }
    check_headers(
        expect,
        www.as_deref(),
        retry.as_deref(),
        content_type.as_deref(),
        !body.is_empty(),
    )?;
    if status == 405 && allow.is_none() {
        return Err("405 without an Allow header".into());
    }
    if let Some(want) = expect.allow {
        // Compare as a set of methods: the order is not significant.
        let methods = |v: &[u8]| {
            let mut m: Vec<String> = String::from_utf8_lossy(v)
                .split(',')
                .map(|x| x.trim().to_ascii_uppercase())
                .collect();
            m.sort();
            m
        };
        if allow.as_deref().map(methods) != Some(methods(want.as_bytes())) {
            return Err(format!(
                "Allow {:?}, want {want:?}",
                allow.map(|v| String::from_utf8_lossy(&v).into_owned())
            ));
        }
    }
    check_body(&expect.body, &body)
}

async fn run_websocket(
    base: &str,
    path: &str,
    headers: &[(&'static str, String)],
    expect: &Expect,
) -> Result<(), String> {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{}{path}", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    for (name, value) in headers {
        let value = value.parse().map_err(|e| format!("header value: {e}"))?;
        request.headers_mut().append(*name, value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, response)) => {
            let status = response.status().as_u16();
            if status != expect.status {
                return Err(format!(
                    "WebSocket upgraded ({status}), want {}",
                    expect.status
                ));
            }
            let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
                .await
                .map_err(|_| "no greeting within 5 s".to_owned())?
                .ok_or("socket closed before the greeting")?
                .map_err(|e| format!("socket error: {e}"))?;
            let text = message
                .into_text()
                .map_err(|e| format!("greeting is not text: {e}"))?;
            match &expect.body {
                BodyCheck::Json(Value::String(want)) if text.as_str() == want => Ok(()),
                other => Err(format!("greeting {:?}, want {other:?}", text.as_str())),
            }
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            if status != expect.status {
                return Err(format!(
                    "handshake answered {status}, want {}",
                    expect.status
                ));
            }
            let get = |name: &str| response.headers().get(name).map(|v| v.as_bytes().to_vec());
            let body = response.body().clone().unwrap_or_default();
            check_headers(
                expect,
                get("www-authenticate").as_deref(),
                get("retry-after").as_deref(),
                get("content-type").as_deref(),
                !body.is_empty(),
            )?;
            check_body(&expect.body, &body)
        }
        Err(e) => Err(format!("handshake failed: {e}")),
    }
}

/// Sends every row to the server at `base_url` (e.g. `http://127.0.0.1:4242`), in order, and
/// returns one line per failing row (empty: all passed).
pub async fn run_table(base_url: &str, rows: &[Row]) -> Vec<String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain HTTP client builds");
    let mut failures = Vec::new();
    for row in rows {
        let result = match &row.send {
            Probe::Http {
                method,
                path,
                headers,
                body,
            } => {
                run_http(
                    &client,
                    base_url,
                    method,
                    path,
                    headers,
                    body.as_ref(),
                    &row.expect,
                )
                .await
            }
            Probe::WebSocket { path, headers } => {
                run_websocket(base_url, path, headers, &row.expect).await
            }
        };
        if let Err(why) = result {
            failures.push(format!("{}: {why}", row.name));
        }
    }
    failures
}
