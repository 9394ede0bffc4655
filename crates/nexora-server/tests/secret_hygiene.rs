//! Secret hygiene of the real server.
//!
//! - At `NEXORA_LOG=debug`, through a whole session — login, failed logins, key
//!   create/use/list/rotate/revoke, WebSockets with `?token=`, malformed and ambiguous bearer
//!   headers — not one key, key secret part, JWT (nor its signature), password, pepper or JWT
//!   secret appears anywhere in what it logged (its audit events included), nor in any row of
//!   the audit trail it left.
//! - A password in the database URL (in its user-info, percent-encoded, or as a query
//!   parameter) appears nowhere in what the server or its subcommands print at any level: not
//!   on a start on Postgres, not in the error of a failed connection, not in `--help`.

mod common;

use common::{JWT_SECRET, PASSWORD, PEPPER, PgDatabase, Server, cli, postgres_admin_url};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

const EMAIL: &str = "hygiene@example.com";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("NEXORA_JWT_SECRET", JWT_SECRET),
        ("NEXORA_KEY_PEPPER", PEPPER),
    ]
}

/// Everything secret the session handled; the log must contain none of it.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, secret: &str) {
        self.0.push((what.into(), secret.to_owned()));
    }

    /// A key, and its secret part (characters 26..58).
    fn key(&mut self, what: &str, key: &str) {
        assert_eq!(key.len(), 64, "{what} is not a key");
        self.add(what, key);
        self.add(format!("{what} (secret part)"), &key[26..58]);
    }

    /// A JWT, and its signature segment.
    fn jwt(&mut self, what: &str, jwt: &str) {
        self.add(what, jwt);
        let signature = jwt.rsplit('.').next().unwrap_or_default();
        assert!(signature.len() >= 40, "{what} has no signature");
        self.add(format!("{what} (signature)"), signature);
    }

    /// A password, and each run of four or more letters and digits in it: a log that shows it
    /// percent-encoded, or cut at one of its `@`, `:` or `/`, still shows one of those.
    fn password(&mut self, what: &str, password: &str) {
        self.add(what, password);
        for (i, run) in password
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|run| run.len() >= 4)
            .enumerate()
        {
            self.add(format!("{what} (part {i})"), run);
        }
    }

    /// The secrets found in `log`, by name (never the secret itself: this is a test log too).
    fn found_in(&self, log: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, secret)| log.contains(secret.as_str()))
            .map(|(what, _)| what.as_str())
            .collect()
    }
}

async fn status(request: reqwest::RequestBuilder) -> StatusCode {
    request.send().await.expect("the server answers").status()
}

async fn json_of(request: reqwest::RequestBuilder, want: StatusCode) -> Value {
    let response = request.send().await.expect("the server answers");
    assert_eq!(response.status(), want);
    response.json().await.expect("a JSON body")
}

/// A WebSocket to the echo route with `?token=`: the echoed text, or the refusal's status.
async fn websocket(server: &Server, token: &str) -> Result<String, u16> {
    let url = server.ws_url(&format!("/api/ws/chat-1?token={token}"));
    match tokio_tungstenite::connect_async(url).await {
        Ok((mut socket, _)) => {
            socket
                .send(Message::text("ping"))
                .await
                .expect("send a frame");
            let reply = socket
                .next()
                .await
                .expect("an echo")
                .expect("a frame")
                .into_text()
                .expect("text")
                .to_string();
            let _ = socket.close(None).await;
            Ok(reply)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("websocket error: {e}"),
    }
}

#[tokio::test]
async fn a_debug_log_of_a_whole_session_holds_no_secret() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(dir.path(), &[], &env());
    let log_path = server.log_path.clone();
    let mut secrets = Secrets::default();
    secrets.add("password", PASSWORD);
    secrets.add("JWT secret", JWT_SECRET);
    secrets.add("pepper", PEPPER);

    let (code, _, stderr) = cli(
        dir.path(),
        &["user", "create", "--email", EMAIL, "--password-stdin"],
        &env(),
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 0, "user create failed: {stderr}");

    let client = Client::new();
    let url = |path: &str| server.url(path);
    let login = |email: &str, password: &str| {
        client
            .post(url("/api/auth/login"))
            .json(&json!({"email": email, "password": password}))
    };

    // Login, then key create / use / list / rotate / revoke.
    let jwt = json_of(login(EMAIL, PASSWORD), StatusCode::OK).await["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    secrets.jwt("login JWT", &jwt);
    let created = json_of(
        client
            .post(url("/api/users/me/api-keys"))
            .bearer_auth(&jwt)
            .json(&json!({"name": "hygiene"})),
        StatusCode::CREATED,
    )
    .await;
    let key = created["key"].as_str().expect("a key").to_owned();
    let key_id = created["id"].as_str().expect("an id").to_owned();
    secrets.key("created key", &key);
    let agents = || client.get(url("/api/agents"));
    assert_eq!(status(agents().bearer_auth(&key)).await, StatusCode::OK);
    assert_eq!(
        status(client.get(url("/api/users/me/api-keys")).bearer_auth(&key)).await,
        StatusCode::OK
    );
    let rotated = json_of(
        client
            .post(url(&format!("/api/users/me/api-keys/{key_id}/rotate")))
            .bearer_auth(&jwt),
        StatusCode::OK,
    )
    .await;
    let rotated_key = rotated["key"].as_str().expect("a key").to_owned();
    secrets.key("rotated key", &rotated_key);
    assert_eq!(
        status(agents().bearer_auth(&key)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(agents().bearer_auth(&rotated_key)).await,
        StatusCode::OK
    );

    // WebSockets with ?token= (JWT and key), then refused ones.
    assert_eq!(websocket(&server, &jwt).await, Ok("ping".into()));
    assert_eq!(websocket(&server, &rotated_key).await, Ok("ping".into()));
    assert_eq!(websocket(&server, &key).await, Err(401));

    assert_eq!(
        status(
            client
                .delete(url(&format!("/api/users/me/api-keys/{key_id}")))
                .bearer_auth(&jwt)
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        status(agents().bearer_auth(&rotated_key)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(websocket(&server, &rotated_key).await, Err(401));

    // A second key, used over a WebSocket only.
    let second = json_of(
        client
            .post(url("/api/users/me/api-keys"))
            .bearer_auth(&jwt)
            .json(&json!({"name": "websocket"})),
        StatusCode::CREATED,
    )
    .await["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    secrets.key("second key", &second);
    assert_eq!(websocket(&server, &second).await, Ok("ping".into()));

    // Failed logins: wrong passwords for a real account and a password for an unknown one.
    for (i, wrong) in [
        "wrong-password-for-hygiene-1",
        "Correct Horse Battery Staple",
        "wrong password with spaces 3",
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(status(login(EMAIL, wrong)).await, StatusCode::UNAUTHORIZED);
        secrets.add(format!("wrong password {i}"), wrong);
    }
    let unknown_password = "password-of-nobody-at-all";
    assert_eq!(
        status(login("nobody@example.com", unknown_password)).await,
        StatusCode::UNAUTHORIZED
    );
    secrets.add("password for an unknown email", unknown_password);

    // Malformed and forged bearer tokens, and ambiguous requests.
    let tampered_key = format!(
        "{}{}",
        &second[..63],
        if second.ends_with('A') { 'B' } else { 'A' }
    );
    secrets.key("tampered key", &tampered_key);
    let (head, _) = jwt.rsplit_once('.').expect("three segments");
    let forged_jwt = format!("{head}.{}", "A".repeat(43));
    secrets.jwt("JWT with a forged signature", &forged_jwt);
    for value in [
        format!("Bearer {second}!"),
        format!("Bearer {tampered_key}"),
        format!("Bearer {forged_jwt}"),
        format!("Bearer\t{second}"),
        format!("Bearer {second} {jwt}"),
    ] {
        let answer = status(agents().header("authorization", value)).await;
        assert_eq!(answer, StatusCode::UNAUTHORIZED);
    }
    let two_headers = agents()
        .header("authorization", format!("Bearer {second}"))
        .header("authorization", format!("Bearer {jwt}"));
    assert_eq!(status(two_headers).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(client.get(url(&format!("/api/agents?token={second}")))).await,
        StatusCode::UNAUTHORIZED
    );
    let ambiguous = tokio_tungstenite::connect_async({
        use tungstenite::client::IntoClientRequest;
        let mut request = server
            .ws_url(&format!("/api/ws/chat-1?token={jwt}"))
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {second}").parse().expect("a header value"),
        );
        request
    })
    .await;
    assert!(
        matches!(ambiguous, Err(tungstenite::Error::Http(ref r)) if r.status() == 401),
        "a header and a different ?token= must be refused"
    );

    // Everything the server logged, after a graceful stop (all lines flushed).
    assert!(server.stop().success(), "graceful shutdown exits 0");
    let log = std::fs::read_to_string(&log_path).expect("the server's log");
    // The log is the real thing: debug level, every request line, the WebSocket events.
    assert!(log.contains("DEBUG"), "not a debug-level log:\n{log}");
    for needle in [
        "/api/auth/login",
        "/api/users/me/api-keys",
        "/api/ws/chat-1",
        "websocket opened",
        "nexora_auth::audit: audit event",
    ] {
        assert!(log.contains(needle), "the log lacks {needle:?}:\n{log}");
    }
    assert_eq!(secrets.0.len(), 19, "the session lost secrets");
    let leaked = secrets.found_in(&log);
    assert!(
        leaked.is_empty(),
        "secrets in the server's debug log: {leaked:?} (log at {})",
        log_path.display()
    );
    // Nor in any row of the audit trail the session left.
    let (code, trail, stderr) = cli(
        dir.path(),
        &["audit", "list", "--limit", "10000"],
        &env(),
        "",
    );
    assert_eq!(code, 0, "audit list failed: {stderr}");
    assert!(
        trail.contains("key_rotated") && trail.contains("login_failed"),
        "{trail}"
    );
    let leaked = secrets.found_in(&trail);
    assert!(leaked.is_empty(), "secrets in the audit trail: {leaked:?}");
    // The grep itself can fail: the log's own text is found.
    let mut planted = Secrets::default();
    planted.add("a line of the log", log.lines().next().unwrap_or("(empty)"));
    assert_eq!(planted.found_in(&log), ["a line of the log"]);
}

/// A password for the URL's user-info, with the characters that must be percent-encoded there.
const USERINFO_PASSWORD: &str = "Ui9xq7@Kw3z:Pf5m/Hd2r";
/// A password for `?password=`, with the characters that must be encoded in a query.
const QUERY_PASSWORD: &str = "Qp8vn4 Lr6t&Jy2w=Bn7c#Xe5k";
/// Values of parameters that libpq knows and sqlx does not.
const SSL_PASSWORD: &str = "Sk4hg8Tz1eVb";
const MISSPELLED_PASSWORD: &str = "Pw3dy6Fq0oNc";

/// `base` (a working Postgres URL) with a password in its user-info and in its query, plus
/// `sslpassword` and a misspelt `passwd`, which sqlx does not know; and those passwords.
/// Postgres' trust authentication ignores them all. When `base` already holds a password (a
/// Postgres that checks it), that password is kept and counts as a secret too.
fn url_with_passwords(base: &str) -> (String, Secrets) {
    let mut url = reqwest::Url::parse(base).expect("a Postgres URL");
    let mut secrets = Secrets::default();
    let real_password = url.password().map(percent_decode);
    let query_password = match &real_password {
        Some(password) => {
            secrets.password("the URL's own password", password);
            password.clone()
        }
        None => {
            url.set_password(Some(USERINFO_PASSWORD))
                .expect("a URL with a host takes a password");
            secrets.password("user-info password", USERINFO_PASSWORD);
            QUERY_PASSWORD.to_owned()
        }
    };
    secrets.password("query password", &query_password);
    secrets.password("sslpassword", SSL_PASSWORD);
    secrets.password("misspelt password", MISSPELLED_PASSWORD);
    url.query_pairs_mut()
        .append_pair("application_name", "nexora-hygiene")
        .append_pair("password", &query_password)
        .append_pair("sslpassword", SSL_PASSWORD)
        .append_pair("passwd", MISSPELLED_PASSWORD);
    // The URL as written, percent-encoded, is a secret of its own.
    secrets.add("the whole URL", url.as_str());
    (url.into(), secrets)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("a UTF-8 password")
}

#[tokio::test]
async fn a_password_in_the_postgres_url_is_in_no_log_of_a_server_or_subcommand() {
    let Some(admin) = postgres_admin_url().await else {
        return;
    };
    let database = PgDatabase::create(&admin).await;
    let (url, secrets) = url_with_passwords(&database.url);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut env: Vec<(&str, &str)> = env();
    env.push(("NEXORA_DATABASE_URL", &url));
    env.push(("NEXORA_LOG", "trace"));

    // Subcommands, with the URL in the environment and on the command line.
    let mut printed = String::new();
    let mut run = |args: &[&str], stdin: &str| {
        let (code, stdout, stderr) = cli(dir.path(), args, &env, stdin);
        assert_eq!(code, 0, "{args:?} failed: {stderr}");
        printed.push_str(&stdout);
        printed.push_str(&stderr);
    };
    run(
        &["user", "create", "--email", EMAIL, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    run(&["user", "list", "--database", &url], "");
    run(&["key", "create", "--email", EMAIL, "--name", "ci"], "");
    run(&["key", "list", "--email", EMAIL, "--database", &url], "");
    let mut secrets = secrets;
    secrets.add("password", PASSWORD);

    // The server: started, used, stopped, at trace level.
    let server = Server::start(dir.path(), &["--database", &url], &env);
    let client = Client::new();
    assert_eq!(
        status(client.get(server.url("/readyz"))).await,
        StatusCode::OK,
        "the server works on the URL it was given"
    );
    assert_eq!(
        status(
            client
                .post(server.url("/api/auth/login"))
                .json(&json!({"email": EMAIL, "password": PASSWORD}))
        )
        .await,
        StatusCode::OK
    );
    let (log_path, stdout_path) = (server.log_path.clone(), server.stdout_path.clone());
    assert!(server.stop().success(), "graceful shutdown exits 0");
    let log = std::fs::read_to_string(&log_path).expect("the server's log");
    let stdout = std::fs::read_to_string(&stdout_path).expect("the server's stdout");

    // The log is the real thing: trace level, the database named, the start logged.
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "not a debug-level log:\n{log}"
    );
    assert!(log.contains("listening on"), "no start line:\n{log}");
    assert!(
        log.contains(database.url.rsplit('/').next().expect("a database name")),
        "the start line names the database:\n{log}"
    );
    for (output, what) in [
        (&log, "log"),
        (&stdout, "stdout"),
        (&printed, "subcommands' output"),
    ] {
        let leaked = secrets.found_in(output);
        assert!(
            leaked.is_empty(),
            "database URL secrets in the server's {what}: {leaked:?}\n{output}"
        );
    }
}

#[test]
fn a_failed_connection_reports_the_url_without_its_password() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut secrets = Secrets::default();
    secrets.password("user-info password", USERINFO_PASSWORD);
    secrets.password("query password", QUERY_PASSWORD);
    let userinfo = "Ui9xq7%40Kw3z%3APf5m%2FHd2r";
    let query = "Qp8vn4+Lr6t%26Jy2w%3DBn7c%23Xe5k";
    let urls = [
        // Nothing listens on port 1: a connection error after the connect timeout.
        format!("postgres://postgres:{userinfo}@127.0.0.1:1/nexora?password={query}"),
        format!("postgresql://127.0.0.1:1/nexora?user=postgres&password={query}"),
        // Configuration errors: the URL is read but refused.
        format!("postgres://127.0.0.1:1/nexora?sslmode=bogus&password={query}"),
        format!("postgres://postgres:{userinfo}@127.0.0.1:notaport/nexora"),
        // The password written without percent-encoding: not a URL sqlx can read.
        format!("postgres://postgres:{USERINFO_PASSWORD}@127.0.0.1:1/nexora"),
        "postgres://postgres:Pf5m/Hd2r@127.0.0.1:1/nexora".to_owned(),
        // Not a database this server knows.
        format!("mysql://root:{userinfo}@127.0.0.1/nexora"),
        format!("host=127.0.0.1 user=postgres password={USERINFO_PASSWORD}"),
    ];
    for url in &urls {
        for args in [
            vec!["user", "list", "--database", url],
            vec!["serve", "--bind", "127.0.0.1:0", "--database", url],
        ] {
            let (code, stdout, stderr) = cli(
                dir.path(),
                &args,
                &[
                    ("NEXORA_LOG", "trace"),
                    ("NEXORA_JWT_SECRET", JWT_SECRET),
                    ("NEXORA_KEY_PEPPER", PEPPER),
                ],
                "",
            );
            assert_ne!(code, 0, "{args:?} succeeded:\n{stdout}\n{stderr}");
            assert!(
                stderr.contains("error:"),
                "{args:?} gave no error message:\n{stderr}"
            );
            let output = format!("{stdout}{stderr}");
            let leaked = secrets.found_in(&output);
            assert!(
                leaked.is_empty(),
                "{leaked:?} printed by {args:?}:\n{output}"
            );
        }
    }
}

#[test]
fn help_does_not_show_the_database_url_from_the_environment() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut secrets = Secrets::default();
    secrets.password("user-info password", USERINFO_PASSWORD);
    let url = "postgres://postgres:Ui9xq7%40Kw3z%3APf5m%2FHd2r@127.0.0.1:1/nexora";
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["user", "create", "--help"],
        &["key", "list", "--help"],
        &["help", "user", "list"],
    ] {
        let (code, stdout, stderr) = cli(dir.path(), args, &[("NEXORA_DATABASE_URL", url)], "");
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            stdout.contains("NEXORA_DATABASE_URL"),
            "{args:?} names the variable:\n{stdout}"
        );
        let output = format!("{stdout}{stderr}");
        let leaked = secrets.found_in(&output);
        assert!(leaked.is_empty(), "{leaked:?} in {args:?}:\n{output}");
    }
}
