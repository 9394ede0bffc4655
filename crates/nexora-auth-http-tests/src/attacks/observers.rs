//! What must not happen anywhere while the catalogue runs: a connection to the `jku`/`x5u`
//! canary, or a panic in the process.

use std::sync::{
    Arc, Once,
    atomic::{AtomicU64, Ordering},
};

use tokio::net::TcpListener;

/// A TCP listener that counts connections: `jku`/`x5u` headers point at it, and a verifier
/// that fetched keys from there would show up.
#[derive(Debug)]
pub struct Canary {
    url: String,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Canary {
    /// Listens on `127.0.0.1:0` on the current Tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let connections = Arc::new(AtomicU64::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Ok(Self {
            url,
            connections,
            task,
        })
    }

    /// Its base URL, `http://127.0.0.1:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);
static PANIC_HOOK: Once = Once::new();

/// Panics so far anywhere in this process, counted from the first call (which installs a
/// counting hook in front of the current one). The servers run in-process, so a handler that
/// panics on a hostile request shows up here even when its connection just closes.
pub fn panics() -> u64 {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}
