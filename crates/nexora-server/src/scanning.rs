//! GitHub secret scanning for the server: GitHub's public keys from a file
//! (`--github-scanning-keys-file`) and/or fetched over HTTPS (`--github-scanning-keys-url`),
//! handed to [`SecretScanning`], which checks the reports and caches fetched keys (see
//! [`nexora_auth_http::secret_scanning`]).

use std::{path::Path, sync::Arc, time::Duration};

use nexora_auth::LeakPolicy;
use nexora_auth_http::secret_scanning::{FetchError, GitHubKeys, KeySource, SecretScanning};
use url::Url;

use crate::config::{ScanningPolicy, ServeArgs, StartupError, fail};

/// Largest key document read from the URL: GitHub's is about 1 KB per key.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// How long one fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches the key document from a URL (GitHub's
/// `https://api.github.com/meta/public_keys/secret_scanning`).
struct UrlKeys {
    client: reqwest::Client,
    url: Url,
}

#[nexora_auth::async_trait]
impl KeySource for UrlKeys {
    async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header("accept", "application/json")
            .send()
            .await?
            .error_for_status()?;
        let mut document = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if document.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("the key document is over {MAX_DOCUMENT_BYTES} bytes").into());
            }
            document.extend_from_slice(&chunk);
        }
        Ok(document)
    }
}

/// The URL as logs show it: scheme, host, port and path; never credentials or a query.
pub(crate) fn shown(url: &Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.path()
    )
}

fn read_keys(path: &Path) -> Result<GitHubKeys, StartupError> {
    let document =
        std::fs::read(path).or_else(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    GitHubKeys::from_json(&document).or_else(|e| fail(format!("{}: {e}", path.display())))
}

/// The secret-scanning settings from the command line: `None` when neither a keys file nor a
/// URL is given (the endpoint is then not served). A keys file that cannot be read or parsed
/// stops the start; a URL that cannot be fetched yet does not (GitHub may be unreachable for a
/// while): it is logged, and reports are answered 503 until a fetch succeeds (unless the file
/// has their key).
pub(crate) async fn from_args(args: &ServeArgs) -> Result<Option<SecretScanning>, StartupError> {
    let file = args.github_scanning_keys_file.as_deref();
    let url = args.github_scanning_keys_url.as_ref();
    if file.is_none() && url.is_none() {
        return Ok(None);
    }
    let keys = file.map(read_keys).transpose()?.unwrap_or_default();
    let policy = match args.github_scanning_policy {
        ScanningPolicy::Revoke => LeakPolicy::Revoke,
        ScanningPolicy::Notify => LeakPolicy::NotifyOnly,
    };
    let mut scanning = SecretScanning::new(keys).policy(policy);
    if let Some(url) = url {
        if !matches!(url.scheme(), "https" | "http") {
            return fail(format!(
                "--github-scanning-keys-url: {} is not an http(s) URL",
                shown(url)
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // GitHub's API refuses requests without a User-Agent.
            .user_agent(concat!("nexora-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .or_else(|e| fail(format!("cannot build the HTTPS client: {e}")))?;
        let source = UrlKeys {
            client,
            url: url.clone(),
        };
        scanning = scanning
            .fetching_from(Arc::new(source))
            .fetch_timeout(FETCH_TIMEOUT);
        match scanning.refresh().await {
            Ok(n) => {
                tracing::info!(keys = n, url = %shown(url), "GitHub secret-scanning keys fetched")
            }
            // `refresh` has logged why.
            Err(_) => tracing::warn!(
                url = %shown(url),
                "GitHub secret-scanning keys not fetched yet; reports signed by a key not in \
                 the keys file are answered 503 until a fetch succeeds"
            ),
        }
    }
    tracing::info!(
        policy = ?policy,
        "serving GitHub secret-scanning reports at POST /api/secret-scanning/github"
    );
    Ok(Some(scanning))
}
