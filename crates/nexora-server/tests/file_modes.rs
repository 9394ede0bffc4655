//! File modes of what the real server keeps on disk: its data directory is private to its
//! owner (0700) and every file in it — the SQLite database with its argon2 hashes and emails,
//! the database's WAL and shared-memory files, the generated JWT secret and key pepper — is
//! 0600, whatever the umask. Looser modes found at start are tightened, with a warning.

#![cfg(unix)]

mod common;

use std::{os::unix::fs::PermissionsExt, path::Path};

use common::{JWT_SECRET, PASSWORD, PEPPER, Server, cli};
use reqwest::{Client, StatusCode};
use serde_json::json;

const EMAIL: &str = "modes@example.com";

/// The permission bits of `path` (sticky bit included).
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Every path and its mode, as one comparable list.
fn modes(paths: &[&Path]) -> Vec<(String, String)> {
    paths
        .iter()
        .map(|p| (p.display().to_string(), format!("{:o}", mode(p))))
        .collect()
}

fn expected(paths: &[(&Path, u32)]) -> Vec<(String, String)> {
    paths
        .iter()
        .map(|(p, m)| (p.display().to_string(), format!("{m:o}")))
        .collect()
}

/// Waits for an answer from `/healthz`: from then on the server handles SIGTERM gracefully.
async fn answering(server: &Server) {
    let answer = Client::new()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(answer.status(), StatusCode::OK);
}

/// A user created and a login (the database is written, so its WAL is in use).
async fn use_server(dir: &Path, server: &Server, args: &[&str]) {
    let env = [
        ("NEXORA_JWT_SECRET", JWT_SECRET),
        ("NEXORA_KEY_PEPPER", PEPPER),
    ];
    let mut create = vec!["user", "create", "--email", EMAIL, "--password-stdin"];
    create.extend_from_slice(args);
    let (code, _, stderr) = cli(dir, &create, &env, &format!("{PASSWORD}\n"));
    assert_eq!(code, 0, "user create: {stderr}");
    let answer = Client::new()
        .post(server.url("/api/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_fresh_data_directory_and_its_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // The most permissive mask: every mode below is the server's own choice.
    let server = Server::start_with_umask("000", dir.path(), &[], &[]);
    use_server(dir.path(), &server, &[]).await;

    let data = dir.path().join("nexora-data");
    let files = [
        "nexora.db",
        "nexora.db-wal",
        "nexora.db-shm",
        "jwt-secret",
        "key-pepper",
    ]
    .map(|name| data.join(name));
    let mut want = vec![(data.as_path(), 0o700)];
    want.extend(files.iter().map(|f| (f.as_path(), 0o600)));
    let mut paths = vec![data.as_path()];
    paths.extend(files.iter().map(|f| f.as_path()));
    assert_eq!(modes(&paths), expected(&want), "{}", server.logs());
    // Nothing else was created in the data directory.
    let mut names: Vec<String> = std::fs::read_dir(&data)
        .expect("the data directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "jwt-secret",
            "key-pepper",
            "nexora.db",
            "nexora.db-shm",
            "nexora.db-wal"
        ]
    );
    assert!(server.stop().success());
}

#[tokio::test]
async fn loose_modes_found_at_start_are_tightened_with_a_warning() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("nexora-data");
    let first = Server::start(dir.path(), &[], &[]);
    use_server(dir.path(), &first, &[]).await;
    assert!(first.stop().success());

    // As an older server, a copy or a permissive umask left them.
    let db = data.join("nexora.db");
    let (wal, shm) = (data.join("nexora.db-wal"), data.join("nexora.db-shm"));
    for leftover in [&wal, &shm] {
        if !leftover.exists() {
            // An empty WAL and shared-memory file are valid: SQLite starts them afresh.
            std::fs::File::create(leftover).expect("create a leftover file");
        }
    }
    let (jwt_secret, pepper) = (data.join("jwt-secret"), data.join("key-pepper"));
    set_mode(&data, 0o755);
    for (file, loose) in [
        (&db, 0o644),
        (&wal, 0o644),
        (&shm, 0o666),
        (&jwt_secret, 0o644),
    ] {
        set_mode(file, loose);
    }
    set_mode(&pepper, 0o640);

    let server = Server::start(dir.path(), &[], &[]);
    let logs = server.logs();
    let paths = [data.as_path(), &db, &wal, &shm, &jwt_secret, &pepper];
    assert_eq!(
        modes(&paths),
        expected(&[
            (&data, 0o700),
            (&db, 0o600),
            (&wal, 0o600),
            (&shm, 0o600),
            (&jwt_secret, 0o600),
            (&pepper, 0o600),
        ]),
        "{logs}"
    );
    // One warning per tightened path (as the server names it, relative to its directory),
    // with both modes.
    for (path, was, now) in [
        ("nexora-data", "755", "700"),
        ("nexora-data/nexora.db", "644", "600"),
        ("nexora-data/nexora.db-wal", "644", "600"),
        ("nexora-data/nexora.db-shm", "666", "600"),
        ("nexora-data/jwt-secret", "644", "600"),
        ("nexora-data/key-pepper", "640", "600"),
    ] {
        let fields = format!("path={path} was=0{was} now=0{now}");
        let warnings = logs
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(&fields))
            .count();
        assert_eq!(warnings, 1, "warnings with {fields}:\n{logs}");
    }
    // The database is intact: the user created before still logs in.
    let answer = Client::new()
        .post(server.url("/api/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(server.stop().success());

    // A second start finds nothing to tighten and says nothing about modes.
    let again = Server::start(dir.path(), &[], &[]);
    answering(&again).await;
    let logs = again.logs();
    assert!(!logs.contains("restricted"), "{logs}");
    assert!(again.stop().success());
}

#[tokio::test]
async fn a_database_outside_the_data_directory_is_private_and_its_directory_left_as_it_is() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // An existing directory that is not the server's own keeps its mode.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("create a shared directory");
    set_mode(&shared, 0o755);
    let server = Server::start_with_umask(
        "000",
        dir.path(),
        &["--database", "sqlite://shared/nexora.db"],
        &[],
    );
    use_server(
        dir.path(),
        &server,
        &["--database", "sqlite://shared/nexora.db"],
    )
    .await;
    let db = shared.join("nexora.db");
    assert_eq!(
        modes(&[&shared, &db, &shared.join("nexora.db-wal")]),
        expected(&[
            (&shared, 0o755),
            (&db, 0o600),
            (&shared.join("nexora.db-wal"), 0o600)
        ])
    );
    assert!(server.stop().success());

    // Directories it creates for the database are the server's: 0700, each of them.
    let server = Server::start_with_umask(
        "000",
        dir.path(),
        &["--database", "sqlite://new/sub/nexora.db"],
        &[],
    );
    answering(&server).await;
    let (new, sub) = (dir.path().join("new"), dir.path().join("new/sub"));
    let db = sub.join("nexora.db");
    assert_eq!(
        modes(&[&new, &sub, &db]),
        expected(&[(&new, 0o700), (&sub, 0o700), (&db, 0o600)])
    );
    assert!(server.stop().success());
}

#[tokio::test]
async fn a_shared_sticky_directory_given_as_data_directory_is_not_changed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // Like /tmp: world-writable and sticky. Tightening it would break every other user of it.
    let shared = dir.path().join("tmp");
    std::fs::create_dir(&shared).expect("create a sticky directory");
    set_mode(&shared, 0o1777);
    let server = Server::start(dir.path(), &["--data-dir", "tmp"], &[]);
    answering(&server).await;
    let logs = server.logs();
    assert_eq!(mode(&shared), 0o1777);
    for file in ["nexora.db", "jwt-secret", "key-pepper"] {
        assert_eq!(mode(&shared.join(file)), 0o600, "{file}");
    }
    let line = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("path=tmp "))
        .unwrap_or_else(|| panic!("no warning about the shared directory:\n{logs}"));
    assert!(
        line.contains("shared") && line.contains("mode=01777"),
        "{line}"
    );
    assert!(server.stop().success());
}
