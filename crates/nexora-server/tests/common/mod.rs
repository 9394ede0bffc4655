//! Starting the real `nexora-server` binary and talking to it.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "test helpers shared by several test files, each using a part"
)]

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

pub mod api;
pub mod private_pg;
pub mod propagation;

pub const BIN: &str = env!("CARGO_BIN_EXE_nexora-server");
pub const PASSWORD: &str = "correct horse battery staple";
pub const JWT_SECRET: &str = "e2e-jwt-secret-e2e-jwt-secret-e2e-jwt-secret";
pub const PEPPER: &str = "e2e-pepper-e2e-pepper-e2e-pepper-e2e-pepper!";

/// A running server process; killed on drop. Everything it logs (at debug level) is kept in
/// `log_path`, and anything it prints on standard output in `stdout_path`, for the
/// secret-hygiene checks.
pub struct Server {
    child: Child,
    pub base: String,
    pub log_path: PathBuf,
    pub stdout_path: PathBuf,
    log_thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `nexora-server serve --bind 127.0.0.1:0` in `dir` with `extra` arguments and
    /// environment. Panics with the server's output if it does not come up.
    pub fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_with(Command::new(BIN), dir, extra, env)
    }

    /// [`Server::start`] with the file-mode creation mask `umask` (octal, as `umask` takes it)
    /// instead of the test's own: `sh` sets it and `exec`s the server, which keeps its pid.
    pub fn start_with_umask(
        umask: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", r#"umask "$0" && exec "$@""#, umask, BIN]);
        Self::start_with(cmd, dir, extra, env)
    }

    fn start_with(mut cmd: Command, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let run = unique();
        let log_path = dir.join(format!("server-{run}.log"));
        let stdout_path = dir.join(format!("server-{run}.stdout"));
        let stdout = std::fs::File::create(&stdout_path).expect("stdout file");
        cmd.current_dir(dir)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .env("NEXORA_LOG", "debug")
            .env_remove("NEXORA_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn nexora-server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let path = log_path.clone();
        let log_thread = std::thread::spawn(move || {
            let mut file = std::fs::File::create(&path).expect("log file");
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not start:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        Server {
            child,
            base: format!("http://{addr}"),
            log_path,
            stdout_path,
            log_thread: Some(log_thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.base.trim_start_matches("http://"))
    }

    /// Sends SIGTERM and waits for a graceful exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait");
        if let Some(t) = self.log_thread.take() {
            let _ = t.join();
        }
        status
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The server's process id (for `/proc/<pid>/fd`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (`Child::kill` on Unix): no shutdown, no flush, no destructor runs. Waits for
    /// the process to be gone and returns what it logged.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = self.log_thread.take() {
            let _ = t.join();
        }
        self.logs()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs the CLI in `dir` with `stdin`; returns (status, stdout, stderr).
pub fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(args)
        .env_remove("NEXORA_DATABASE_URL")
        .env("NEXORA_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("cli output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Postgres test URL (the testkit's `NEXORA_TEST_POSTGRES_URL` rule), or `None` after a
/// loud skip message when Postgres is not reachable and not required. With
/// `NEXORA_REQUIRE_POSTGRES=1` (set by `.ci/run`) an unreachable Postgres fails the test.
pub async fn postgres_admin_url() -> Option<String> {
    use nexora_auth_testkit::postgres::{REQUIRE_ENV, required, url};
    let url = url();
    let reachable = tokio::time::timeout(Duration::from_secs(5), async {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.map(drop)
    })
    .await;
    match reachable {
        Ok(Ok(())) => Some(url),
        other => {
            let why = format!("{other:?}");
            assert!(
                !required(),
                "Postgres is required ({REQUIRE_ENV}=1) but not reachable at {url}: {why}"
            );
            // Straight to stderr: the harness captures eprintln! of passing tests, and a skip
            // must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: Postgres not reachable at {url} ({why}); set {REQUIRE_ENV}=1 to fail instead\n"
            );
            None
        }
    }
}

/// A fresh Postgres database for one test, dropped when the guard goes.
pub struct PgDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(admin: &str) -> PgDatabase {
        use sqlx::{Connection, Executor};
        let name = format!("nexora_e2e_{}", unique().replace('-', "_"));
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .expect("connect admin");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create database");
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        PgDatabase {
            admin: admin.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort, synchronously (Drop cannot await): psql is on every test machine.
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
