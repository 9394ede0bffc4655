//! The Settings → API Keys page in a real browser: Debian's chromium, headless, driven through
//! chromedriver (WebDriver) against the real server binary on SQLite.
//!
//! One browser session walks through every scenario: a wrong password, signing in, creating a
//! key and calling the API with it, the key gone after a reload, rotating (old key 401, new
//! 200), revoking with cascade (both 401), the audit rows, signing out, a throttled sign-in
//! shown as a wait, and, on a second server whose tokens live 3 seconds, an expired session
//! that returns to sign-in without losing what the page showed. Each step is screenshotted at
//! 1280 and 320 pixels wide under `$CARGO_TARGET_TMPDIR/browser-screenshots/`.
//!
//! Without chromedriver (`NEXORA_CHROMEDRIVER`, else `/usr/bin/chromedriver` or `chromedriver`
//! on the `PATH`) the test prints SKIPPED and passes, unless `NEXORA_REQUIRE_BROWSER=1` (as
//! `.ci/run` sets after installing `chromium` and `chromium-driver`), which makes it fail.
//! The browser is `NEXORA_CHROMIUM`, else `/usr/bin/chromium`.

mod common;

use std::{
    io::Write,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    PASSWORD, Server,
    api::{self, EMAIL},
};
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use reqwest::StatusCode;
use serde_json::{Value, json};

const REQUIRE_ENV: &str = "NEXORA_REQUIRE_BROWSER";
/// The widths every step is screenshotted at: a desktop and the narrowest phone.
const WIDTHS: [(u32, u32); 2] = [(1280, 900), (320, 900)];
/// How long a step may take to show its result.
const STEP: Duration = Duration::from_secs(15);

fn find_program(env: &str, fixed: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    if Path::new(fixed).exists() {
        return Some(PathBuf::from(fixed));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.exists())
    })
}

/// The chromedriver and chromium to use, or `None` after a loud skip message.
fn browser_programs() -> Option<(PathBuf, PathBuf)> {
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
    let driver = find_program(
        "NEXORA_CHROMEDRIVER",
        "/usr/bin/chromedriver",
        "chromedriver",
    );
    let browser = find_program("NEXORA_CHROMIUM", "/usr/bin/chromium", "chromium");
    match (driver, browser) {
        (Some(driver), Some(browser)) => Some((driver, browser)),
        (driver, browser) => {
            let why = format!("chromedriver: {driver:?}, chromium: {browser:?}");
            assert!(
                !required,
                "a browser is required ({REQUIRE_ENV}=1) but not installed ({why}): \
                 apt-get install chromium chromium-driver"
            );
            // Straight to stderr: the harness captures eprintln! of passing tests, and a skip
            // must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: no browser ({why}); apt-get install chromium chromium-driver, \
                 or set {REQUIRE_ENV}=1 to fail instead\n"
            );
            None
        }
    }
}

/// A chromedriver process on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(program: &Path, log: &Path) -> Driver {
        // A port the system just handed out, released for chromedriver to bind.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log_file = std::fs::File::create(log).expect("driver log");
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("driver log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn chromedriver");
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn wait_ready(&self) {
        let http = api::client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{}/status", self.url))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser session and where its screenshots go.
struct Page {
    client: Client,
    shots: PathBuf,
    step: u32,
}

fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

impl Page {
    async fn find(&self, id: &str) -> Element {
        self.client
            .find(Locator::Css(&testid(id)))
            .await
            .unwrap_or_else(|e| panic!("no {id}: {e}"))
    }

    /// Runs `script` (a function body returning a value) in the page.
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Waits until `script` returns `true`.
    async fn until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + STEP;
        while self.js(script).await != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the page says: {}",
                self.js("return document.body.innerText").await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the element with test id `id` is shown (it and its ancestors not hidden).
    async fn until_shown(&self, id: &str) {
        let script = format!(
            "const e = document.querySelector('{}'); return !!e && e.getClientRects().length > 0;",
            testid(id)
        );
        self.until(&format!("{id} to show"), &script).await;
    }

    async fn text(&self, id: &str) -> String {
        self.js(&format!(
            "return document.querySelector('{}').textContent;",
            testid(id)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    async fn type_into(&self, id: &str, text: &str) {
        let input = self.find(id).await;
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    async fn click(&self, id: &str) {
        self.find(id).await.click().await.expect("click");
    }

    /// Clicks the control `id` of the key row of `key_id`.
    async fn click_in_row(&self, key_id: &str, id: &str) {
        self.client
            .find(Locator::Css(&format!(
                "{}[data-key-id=\"{key_id}\"] {}",
                testid("key-row"),
                testid(id)
            )))
            .await
            .unwrap_or_else(|e| panic!("no {id} in the row of {key_id}: {e}"))
            .click()
            .await
            .expect("click");
    }

    async fn row_ids(&self) -> Vec<String> {
        let ids = self
            .js(&format!(
                "return [...document.querySelectorAll('{}')].map(r => r.dataset.keyId);",
                testid("key-row")
            ))
            .await;
        serde_json::from_value(ids).expect("row ids")
    }

    /// Screenshots the page at each of [`WIDTHS`], numbered in order, then returns to the
    /// desktop width. `scroll_to` names an element id to bring into view first.
    async fn shoot(&mut self, name: &str, scroll_to: Option<&str>) {
        self.step += 1;
        for (width, height) in WIDTHS {
            self.client
                .set_window_size(width, height)
                .await
                .expect("window size");
            match scroll_to {
                Some(id) => {
                    self.js(&format!(
                        "document.getElementById('{id}').scrollIntoView({{block: 'start'}}); return true;"
                    ))
                    .await;
                }
                None => {
                    self.js("window.scrollTo(0, 0); return true;").await;
                }
            }
            let png = self.client.screenshot().await.expect("screenshot");
            let path = self
                .shots
                .join(format!("{:02}-{name}-{width}.png", self.step));
            std::fs::write(&path, png).expect("write screenshot");
        }
        self.client
            .set_window_size(WIDTHS[0].0, WIDTHS[0].1)
            .await
            .expect("window size");
    }

    async fn sign_in(&self, email: &str, password: &str) {
        self.until_shown("login-email").await;
        self.type_into("login-email", email).await;
        // The keyboard alone: Enter in the password field submits.
        self.type_into("login-password", &format!("{password}\u{E007}"))
            .await;
    }

    /// Nothing of a secret is anywhere the browser keeps or shows: the URL, web storage,
    /// cookies, the page.
    async fn assert_nowhere(&self, secret: &str, what: &str) {
        let url = self.client.current_url().await.expect("url").to_string();
        assert!(!url.contains(secret), "{what} in the URL {url}");
        let kept = self
            .js("return JSON.stringify([localStorage, sessionStorage, document.cookie]);")
            .await;
        assert_eq!(
            kept,
            json!("[{},{},\"\"]"),
            "web storage or cookies hold something"
        );
        let html = self.client.source().await.expect("source");
        assert!(!html.contains(secret), "{what} still on the page");
    }
}

async fn agents(base: &str, key: &str) -> StatusCode {
    api::agents_status(&api::client(), base, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keys_page_in_a_real_browser() {
    let Some((driver_program, chromium)) = browser_programs() else {
        return;
    };
    let started = Instant::now();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("screenshot directory");

    let dir = tempfile::tempdir().unwrap();
    let server = api::start(dir.path(), &api::sqlite_url(dir.path()), true);
    // A second server whose access tokens live 3 seconds (2 to 3 s from issue: `exp` is whole
    // seconds), with no leeway: its sessions expire within the test.
    let short_dir = tempfile::tempdir().unwrap();
    let short = api::start_with(
        short_dir.path(),
        &api::sqlite_url(short_dir.path()),
        true,
        &[],
        &[
            ("NEXORA_ACCESS_TOKEN_TTL_SECS", "3"),
            ("NEXORA_JWT_LEEWAY_SECS", "0"),
        ],
    );

    let driver = Driver::start(&driver_program, &dir.path().join("chromedriver.log"));
    driver.wait_ready().await;
    let profile = tempfile::tempdir().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                // Root in a container: chromium's sandbox needs user namespaces it may not have.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                format!("--user-data-dir={}", profile.path().display()),
                "--window-size=1280,900",
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a chromium session");
    let mut page = Page {
        client,
        shots: out.clone(),
        step: 0,
    };
    let outcome = walk_through(&mut page, &server, &short).await;
    let _ = page.client.close().await;
    drop(driver);
    let _ = writeln!(
        std::io::stderr(),
        "browser walk-through: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    api::assert_no_panic(&server.logs());
    api::assert_no_panic(&short.logs());
    // Nothing secret reached the server's logs either.
    for secret in &outcome.secrets {
        assert!(
            !server.logs().contains(secret.as_str()),
            "a secret was logged"
        );
    }
}

/// What the walk-through handled that must not appear anywhere afterwards.
struct Outcome {
    secrets: Vec<String>,
}

async fn walk_through(page: &mut Page, server: &Server, short: &Server) -> Outcome {
    let base = server.base.as_str();
    let http = api::client();

    // `/` leads to the page; it asks to sign in.
    page.client.goto(&server.url("/")).await.expect("open /");
    page.until_shown("login-email").await;
    let url = page.client.current_url().await.unwrap().to_string();
    assert!(url.ends_with("/settings/api-keys"), "{url}");
    page.shoot("sign-in", None).await;

    // A wrong password: the API's words, and still the sign-in form.
    page.sign_in(EMAIL, "not the password").await;
    page.until_shown("error").await;
    assert_eq!(page.text("error").await, "Incorrect email or password");
    page.shoot("wrong-password", None).await;

    // Signed in: no keys yet, the empty state explains.
    page.sign_in(EMAIL, PASSWORD).await;
    page.until_shown("logout").await;
    page.until(
        "the empty state",
        "return !document.getElementById('keys-empty').hidden;",
    )
    .await;
    page.assert_nowhere(PASSWORD, "the password").await;
    page.shoot("empty", None).await;

    // Create a key with one of the user's scopes; it is shown once, and works.
    page.type_into("key-name", "CI pipeline").await;
    let scopes = page
        .js("return [...document.querySelectorAll('[data-testid=key-scopes] input')].map(i => i.value);")
        .await;
    assert_eq!(
        scopes,
        json!(["agents:read", "audit:read", "keys:manage"]),
        "the scopes offered are the user's"
    );
    // With a rate limit of 100 a minute, from the form's optional limits.
    page.js(
        "document.getElementById('limit-requests').closest('details').open = true; return null;",
    )
    .await;
    page.type_into("key-rate-limit", "100").await;
    page.click("key-create").await;
    page.until_shown("new-key-value").await;
    let key = page.text("new-key-value").await;
    assert!(key.starts_with("nxr_"), "{key}");
    assert_eq!(
        agents(base, &key).await,
        StatusCode::OK,
        "the new key works"
    );
    page.until(
        "one key row",
        "return document.querySelectorAll('[data-testid=key-row]').length === 1;",
    )
    .await;
    let key_id = page.row_ids().await.remove(0);
    // The row shows the limit, and every answer to the key carries it.
    let row = page
        .js("return document.querySelector('[data-testid=key-row]').textContent;")
        .await;
    let row = row.as_str().unwrap_or_default();
    assert!(row.contains("100") && row.contains("minute"), "{row}");
    let limited = api::client()
        .get(format!("{base}/api/agents"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("agents request");
    assert_eq!(
        limited
            .headers()
            .get("ratelimit-policy")
            .map(|v| v.to_str().unwrap()),
        Some(r#""key";q=100;w=60"#)
    );
    page.shoot("new-key", None).await;
    page.click("new-key-copy").await;
    page.until(
        "the copy to be confirmed",
        "return document.getElementById('copy-status').textContent.length > 0;",
    )
    .await;

    // A reload forgets the key and the session; signing in again lists the key, never its value.
    page.client.refresh().await.expect("reload");
    page.until_shown("login-email").await;
    page.assert_nowhere(&key, "the new key").await;
    page.sign_in(EMAIL, PASSWORD).await;
    page.until(
        "the key row",
        "return document.querySelectorAll('[data-testid=key-row]').length === 1;",
    )
    .await;
    assert_eq!(page.row_ids().await, std::slice::from_ref(&key_id));
    assert_eq!(page.text("new-key-value").await, "");
    page.assert_nowhere(&key, "the new key").await;

    // Rotate, behind a confirmation naming the key: the old value 401, the new one 200.
    page.click_in_row(&key_id, "key-rotate").await;
    page.until_shown("confirm").await;
    let question = page
        .js("return document.getElementById('confirm-title').textContent;")
        .await;
    assert_eq!(question, json!("Rotate “CI pipeline”?"));
    page.shoot("confirm-rotate", None).await;
    page.click("confirm").await;
    page.until(
        "the rotated key",
        &format!(
            "const v = document.querySelector('[data-testid=new-key-value]').textContent; \
             return v.startsWith('nxr_') && v !== '{key}';"
        ),
    )
    .await;
    let rotated = page.text("new-key-value").await;
    assert_eq!(
        agents(base, &key).await,
        StatusCode::UNAUTHORIZED,
        "old key"
    );
    assert_eq!(agents(base, &rotated).await, StatusCode::OK, "rotated key");
    page.shoot("rotated", None).await;
    page.click("new-key-dismiss").await;
    page.until(
        "the rotated key to be gone",
        "return document.getElementById('new-key').hidden && \
         document.querySelector('[data-testid=new-key-value]').textContent === '';",
    )
    .await;
    page.assert_nowhere(&rotated, "the rotated key").await;

    // A key the rotated key creates; revoking the rotated key with cascade ends both.
    let response = http
        .post(api::url(base, "/api/users/me/api-keys"))
        .bearer_auth(&rotated)
        .json(&json!({"name": "Minted by CI"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "a response carrying a key is not cacheable"
    );
    let child = api::Created::from_body(&response.json().await.unwrap());
    page.js("document.getElementById('refresh').click(); return true;")
        .await;
    page.until(
        "two key rows",
        "return document.querySelectorAll('[data-testid=key-row]').length === 2;",
    )
    .await;
    let child_row = page
        .js(&format!(
            "return document.querySelector('[data-key-id=\"{}\"]').textContent;",
            child.id
        ))
        .await;
    assert!(
        child_row
            .as_str()
            .unwrap_or_default()
            .contains("Key “CI pipeline”"),
        "the lineage is shown: {child_row}"
    );
    page.shoot("lineage", Some("keys-title")).await;
    page.click_in_row(&key_id, "key-revoke").await;
    page.until_shown("cascade").await;
    page.click("cascade").await;
    page.shoot("confirm-revoke", None).await;
    page.click("confirm").await;
    page.until(
        "the empty state after the cascade",
        "return !document.getElementById('keys-empty').hidden;",
    )
    .await;
    assert_eq!(
        agents(base, &rotated).await,
        StatusCode::UNAUTHORIZED,
        "revoked key"
    );
    assert_eq!(
        agents(base, &child.key).await,
        StatusCode::UNAUTHORIZED,
        "its child"
    );

    // The audit trail of all this.
    let actions = page
        .js("return [...document.querySelectorAll('[data-testid=audit-row]')].map(r => r.dataset.action);")
        .await;
    for action in [
        "login_failed",
        "login_succeeded",
        "key_created",
        "key_rotated",
        "key_revoked",
        "key_revoked_by_cascade",
    ] {
        assert!(
            actions.as_array().unwrap().contains(&json!(action)),
            "no {action} row in {actions}"
        );
    }
    page.shoot("audit", Some("audit-title")).await;

    // Signing out forgets everything the page showed.
    page.click("logout").await;
    page.until_shown("login-email").await;
    assert!(page.row_ids().await.is_empty());
    page.shoot("signed-out", None).await;

    // A throttled email: the page says to wait, not that the password is wrong.
    let locked = "locked@example.com";
    let mut throttled = false;
    for _ in 0..10 {
        let status = http
            .post(api::url(base, "/api/auth/login"))
            .json(&json!({"email": locked, "password": "guess"}))
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "the email was never throttled");
    page.sign_in(locked, "another guess").await;
    page.until(
        "the wait",
        "const e = document.querySelector('[data-testid=error]'); \
         return !e.hidden && e.textContent.includes('wait');",
    )
    .await;
    let wait = page.text("error").await;
    assert!(wait.starts_with("Too many sign-in attempts"), "{wait}");
    assert!(!wait.contains("Incorrect"), "{wait}");
    assert_eq!(
        page.js("return document.querySelector('[data-testid=login-submit]').disabled;")
            .await,
        json!(true)
    );
    page.shoot("throttled", None).await;

    // An expired session (3-second tokens): back to sign-in, the page as it was; signing in
    // again carries on.
    let short_jwt = api::login(&http, &short.base).await;
    let listed = api::create_key(&http, &short.base, &short_jwt, "Nightly backup").await;
    page.client
        .goto(&short.url("/settings/api-keys"))
        .await
        .unwrap();
    page.sign_in(EMAIL, PASSWORD).await;
    page.until(
        "the key row",
        "return document.querySelectorAll('[data-testid=key-row]').length === 1;",
    )
    .await;
    page.type_into("key-name", "Half-typed name").await;
    tokio::time::sleep(Duration::from_millis(4200)).await;
    page.js("document.getElementById('refresh').click(); return true;")
        .await;
    page.until(
        "sign-in after expiry",
        "return !document.getElementById('signin').hidden;",
    )
    .await;
    let reason = page
        .js("return document.getElementById('signin-reason').textContent;")
        .await;
    assert!(
        reason
            .as_str()
            .unwrap_or_default()
            .contains("session has expired"),
        "{reason}"
    );
    assert_eq!(
        page.row_ids().await,
        std::slice::from_ref(&listed.id),
        "the list is still shown"
    );
    assert_eq!(
        page.js("return document.querySelector('[data-testid=login-email]').value;")
            .await,
        json!(EMAIL)
    );
    page.shoot("session-expired", None).await;
    page.type_into("login-password", &format!("{PASSWORD}\u{E007}"))
        .await;
    page.until(
        "the workspace again",
        "return document.getElementById('signin').hidden && !document.getElementById('workspace').inert;",
    )
    .await;
    assert_eq!(
        page.js("return document.querySelector('[data-testid=key-name]').value;")
            .await,
        json!("Half-typed name"),
        "what was typed survives"
    );
    assert_eq!(page.row_ids().await, std::slice::from_ref(&listed.id));

    Outcome {
        secrets: vec![key, rotated, child.key, PASSWORD.to_owned()],
    }
}
