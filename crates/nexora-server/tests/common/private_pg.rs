//! A private PostgreSQL instance for tests that stop and start the database under a running
//! server. The machine's shared PostgreSQL (used by every other test at the same time) is
//! never touched: this one lives in a temporary directory on a port of its own.
//!
//! The binaries come from `/usr/lib/postgresql/<version>/bin` (the newest version found).
//! PostgreSQL refuses to run as root, so when the tests run as root every command runs as the
//! `postgres` OS user (`runuser`) over a directory handed to it (`chown`).

use std::{io::Write, os::unix::fs::MetadataExt, path::PathBuf, process::Command};

/// Where Debian and Ubuntu install the server binaries, one directory per major version.
const INSTALL_ROOT: &str = "/usr/lib/postgresql";

/// A running private PostgreSQL instance with trust authentication on `127.0.0.1:port`;
/// stopped (immediately) and deleted on drop.
pub struct PrivatePostgres {
    bin: PathBuf,
    root: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// Creates a cluster with `initdb` and starts it. When no server binaries are installed:
    /// `None` after a loud skip message, or a panic when `NEXORA_REQUIRE_POSTGRES=1`.
    pub fn start() -> Option<PrivatePostgres> {
        use nexora_auth_testkit::postgres::{REQUIRE_ENV, required};
        let Some(bin) = find_bin_dir() else {
            let why = format!(
                "no PostgreSQL server binaries (initdb, pg_ctl) under {INSTALL_ROOT}/*/bin"
            );
            assert!(
                !required(),
                "a private PostgreSQL is required ({REQUIRE_ENV}=1): {why}"
            );
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: {why}; set {REQUIRE_ENV}=1 to fail instead\n"
            );
            return None;
        };
        let root = tempfile::Builder::new()
            .prefix("nexora-private-pg-")
            .tempdir()
            .expect("temporary directory for the private PostgreSQL");
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(root.path())
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown of the private PostgreSQL directory failed"
            );
        }
        let pg = PrivatePostgres {
            bin,
            port: free_port(),
            root,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data_dir(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_again();
        Some(pg)
    }

    /// The URL of the instance's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m immediate`: every backend is killed at once, without a checkpoint, as in
    /// a crash of the database server. Returns when the server is gone.
    pub fn stop_immediate(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// `pg_ctl stop -m fast`, as a restart by the service manager does it: clients are
    /// disconnected, the server checkpoints and exits. Returns when the server is gone.
    pub fn stop_fast(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Starts the (stopped) instance on the same port; returns when it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.root.path().display()
        );
        let log = self.root.path().join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    fn data_dir(&self) -> String {
        self.root.path().join("data").display().to_string()
    }

    /// Runs one of the binaries (as `postgres` when we are root); panics with its output if it
    /// fails.
    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut cmd = if running_as_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        // A working directory the postgres user can enter (the test's own may not be).
        let output = cmd
            .args(args)
            .current_dir(self.root.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed ({}):\n{}\n{}\nserver log:\n{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.root.path().join("postgres.log")).unwrap_or_default()
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Best effort: the instance may already be stopped (or the test may be panicking).
        let program = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let mut cmd = if running_as_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        let _ = cmd
            .args(args)
            .current_dir(self.root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The `bin` directory of the newest installed major version holding `initdb` and `pg_ctl`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(INSTALL_ROOT)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort_by_key(|(version, _)| *version);
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A port that was free a moment ago (the kernel's pick for port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
