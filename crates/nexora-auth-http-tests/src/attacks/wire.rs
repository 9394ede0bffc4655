//! The raw HTTP/1.1 client the catalogue sends with: any byte in any header, any size, one
//! fresh connection per request, and the answer read off the wire as it came.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

/// What a row sends: one HTTP/1.1 request, byte for byte.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// Path and query.
    pub target: String,
    /// Headers in order (repeats allowed), values as raw bytes.
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// The body, if any (`Content-Length` is added).
    pub body: Option<Vec<u8>>,
    /// Send a WebSocket handshake (`Upgrade: websocket`) instead of `Connection: close`.
    pub websocket: bool,
}

impl RawRequest {
    pub(super) fn get(target: impl Into<String>, headers: Vec<(&'static str, Vec<u8>)>) -> Self {
        Self {
            method: "GET",
            target: target.into(),
            headers,
            body: None,
            websocket: false,
        }
    }

    pub(super) fn to_bytes(&self, host: &str) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\n",
            self.method, self.target
        )
        .into_bytes();
        if self.websocket {
            out.extend_from_slice(
                b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            );
        } else {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        match &self.body {
            Some(body) => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
            }
            None if self.method != "GET" => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
            None => out.extend_from_slice(b"\r\n"),
        }
        out
    }
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Everything received, head and body, as sent.
    pub raw: Vec<u8>,
}

impl RawResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Status, every header but `Date`, and body: what must be byte-identical.
    pub(super) fn comparable(&self) -> String {
        let mut out = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            if name != "date" {
                out.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value)));
            }
        }
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(&self.body));
        out
    }
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` to `base_url` (`http://127.0.0.1:port`) on a fresh connection and reads
/// the answer. `Err` says how the connection ended without a complete answer.
pub async fn send_raw(base_url: &str, request: &RawRequest) -> Result<RawResponse, String> {
    let host = base_url
        .strip_prefix("http://")
        .unwrap_or(base_url)
        .to_owned();
    let stream = TcpStream::connect(&host)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut reader, mut writer) = stream.into_split();
    let bytes = request.to_bytes(&host);
    // Write while reading: a server may answer (431) and close before taking a huge request
    // in full. The write half is kept (returned) so no early FIN reaches the server.
    let writing = tokio::spawn(async move {
        let result = writer.write_all(&bytes).await;
        (writer, result)
    });
    let answer = tokio::time::timeout(Duration::from_secs(5), read_response(&mut reader))
        .await
        .unwrap_or_else(|_| Err("no complete answer within 5 s".into()));
    if request.websocket && matches!(answer, Ok(RawResponse { status: 101, .. })) {
        // The server read the whole handshake to upgrade it: the write is done.
        if let Ok((writer, Ok(()))) = writing.await {
            close_socket(writer, reader).await?;
        }
    } else {
        writing.abort();
    }
    answer
}

/// A client's Close frame (code 1000), masked as RFC 6455 requires of clients; an all-zero
/// mask leaves the payload as it is.
const CLOSE_FRAME: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];

/// Ends an upgraded socket from the client's side (a Close frame, then the end of the
/// stream) and reads until the server drops the connection: the server's socket task has then finished, and every store call it made
/// (the credential watch rechecks once as it starts) is counted for this request, not the
/// next.
async fn close_socket(mut writer: OwnedWriteHalf, mut reader: OwnedReadHalf) -> Result<(), String> {
    writer
        .write_all(&CLOSE_FRAME)
        .await
        .map_err(|e| format!("send Close: {e}"))?;
    // And the end of the stream: a server that waits for the client to hang up (actix-web,
    // for a second) closes at once.
    writer
        .shutdown()
        .await
        .map_err(|e| format!("shut down the write half: {e}"))?;
    let mut rest = Vec::new();
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while read_more(&mut reader, &mut rest).await? > 0 {}
        Ok::<(), String>(())
    })
    .await;
    match drained {
        Ok(_) => Ok(()),
        Err(_) => Err("the server kept the socket open 5 s after the client's Close".into()),
    }
}

pub(super) async fn read_more(
    reader: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
) -> Result<usize, String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = reader
        .read(&mut chunk)
        .await
        .map_err(|e| format!("connection error: {e}"))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

pub(super) async fn read_response(reader: &mut OwnedReadHalf) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if read_more(reader, &mut buf).await? == 0 {
            return Err(format!("closed after {} bytes", buf.len()));
        }
        if buf.len() > 1 << 20 {
            return Err("response head over 1 MiB".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let body = if matches!(status, 101 | 204 | 304) {
        Vec::new()
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < head_end + len {
            if read_more(reader, &mut buf).await? == 0 {
                return Err("closed before the end of the body".into());
            }
        }
        buf[head_end..head_end + len].to_vec()
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        while !buf[head_end..].ends_with(b"0\r\n\r\n") {
            if read_more(reader, &mut buf).await? == 0 {
                return Err("closed before the last chunk".into());
            }
        }
        dechunk(&buf[head_end..])?
    } else {
        while read_more(reader, &mut buf).await? > 0 {}
        buf[head_end..].to_vec()
    };
    Ok(RawResponse {
        status,
        headers,
        body,
        raw: buf,
    })
}

pub(super) fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("short chunk")?;
    }
}
