//! What the server keeps on disk is readable by its own user only: the data directory is 0700;
//! the SQLite database (argon2 hashes, emails, key digests), its WAL and shared-memory files,
//! and the generated JWT secret and key pepper are 0600. The modes are set explicitly, so they
//! hold under any umask.
//!
//! A mode found looser at start (a directory or database made by an older version, copied, or
//! created under a permissive umask) is tightened — group and other bits removed, owner bits
//! kept — with a warning naming the path and both modes. Refusing to start, as ssh does for a
//! private key, would turn every existing installation into an outage for something the server
//! can repair itself. A failure to tighten (a file owned by another user) is a warning too: the
//! server does not make the situation worse by stopping.
//!
//! Directories the server does not own are left alone: an existing parent directory of a
//! `--database sqlite://PATH` outside the data directory keeps its mode (it may be shared,
//! such as `/var/lib`), and so does a sticky directory given as the data directory (such as
//! `/tmp`, where removing the other users' access would break the system), with a warning
//! that it is shared. The files in them are still 0600.
//!
//! On platforms other than Unix, directories and files are created with the platform's
//! defaults and nothing is tightened.

use std::{
    fs::{File, OpenOptions},
    io,
    path::Path,
};

/// Group and other permission bits: none of them is set on what the server keeps.
#[cfg(unix)]
const GROUP_AND_OTHER: u32 = 0o077;

/// Whether an existing directory is the server's own, to be tightened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// The data directory: an existing one is tightened to 0700.
    Tighten,
    /// Someone else's directory (the parent of a database path outside the data directory):
    /// created 0700 if missing, left as it is otherwise.
    LeaveAlone,
}

/// Creates `dir` and its missing parents with mode 0700; an existing `dir` is tightened when
/// `existing` says so.
pub(crate) fn ensure_dir(dir: &Path, existing: Existing) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    if existing == Existing::Tighten {
        tighten_dir(dir);
    }
    Ok(())
}

/// Creates the file at `path` with mode 0600 if it is missing (never truncating it), and
/// tightens an existing one.
pub(crate) fn ensure_file(path: &Path) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    tighten_file(path, &file);
    Ok(())
}

/// Tightens the file at `path` if it exists; a missing file is not created.
pub(crate) fn tighten_if_present(path: &Path) {
    match File::open(path) {
        Ok(file) => tighten_file(path, &file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot check who may read this file"
        ),
    }
}

/// Removes group and other bits from the open `file` (through its descriptor, so a path
/// swapped in between is never changed), with a warning when there were any.
#[cfg(unix)]
fn tighten_file(path: &Path, file: &File) {
    use std::os::unix::fs::PermissionsExt;
    let was = match file.metadata() {
        Ok(metadata) => metadata.permissions().mode() & 0o7777,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot check who may read this file");
            return;
        }
    };
    if was & GROUP_AND_OTHER == 0 {
        return;
    }
    let now = was & !GROUP_AND_OTHER;
    report(
        path,
        was,
        now,
        file.set_permissions(std::fs::Permissions::from_mode(now)),
    );
}

#[cfg(not(unix))]
fn tighten_file(_path: &Path, _file: &File) {}

/// Removes group and other bits from the directory `dir`, unless it is sticky (shared).
#[cfg(unix)]
fn tighten_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let was = match std::fs::metadata(dir) {
        Ok(metadata) => metadata.permissions().mode() & 0o7777,
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "cannot check who may read this directory");
            return;
        }
    };
    if was & GROUP_AND_OTHER == 0 {
        return;
    }
    const STICKY: u32 = 0o1000;
    if was & STICKY != 0 {
        tracing::warn!(
            path = %dir.display(),
            mode = %format_args!("0{was:o}"),
            "the data directory is a shared (sticky) directory: left as it is; its files are \
             private, but other local users can see their names; use a directory of its own"
        );
        return;
    }
    let now = was & !GROUP_AND_OTHER;
    report(
        dir,
        was,
        now,
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(now)),
    );
}

#[cfg(not(unix))]
fn tighten_dir(_dir: &Path) {}

#[cfg(unix)]
fn report(path: &Path, was: u32, now: u32, result: io::Result<()>) {
    match result {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            was = %format_args!("0{was:o}"),
            now = %format_args!("0{now:o}"),
            "other local users had access to this path: restricted it to its owner"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = %format_args!("0{was:o}"),
            error = %e,
            "other local users have access to this path, and it cannot be restricted to its \
             owner"
        ),
    }
}
