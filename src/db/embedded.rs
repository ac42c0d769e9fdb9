//! archdb's own private PostgreSQL cluster, run from the machine's installed server binaries
//! when no `DATABASE_URL` is given. The cluster lives in `$ARCHDB_DATA_DIR/pg`, listens on a
//! unix socket only, is reused on the next start and stopped on shutdown. `initdb` refuses to
//! run as root, so as root the cluster is owned by and run as the `postgres` user.
//!
//! The process that starts the server records its pid in `$ARCHDB_DATA_DIR/owner.pid`. A server
//! found running whose owner is gone (the process was killed before it could stop it) is
//! adopted: reused, and stopped when the adopting process shuts down.

use std::ffi::CString;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sqlx::postgres::PgConnectOptions;

/// The socket "port": only names the socket file, the socket directory is private.
const PORT: u16 = 5432;
/// Unix socket paths are limited to 107 bytes; longer socket dirs move under /tmp.
const MAX_SOCKET_DIR: usize = 90;
/// Beside the cluster: the pid of the archdb process that started (and will stop) the server.
const OWNER_FILE: &str = "owner.pid";

/// A running private cluster. Dropping it stops the server if this process started it.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    /// `OWNER_FILE` under the data dir's root.
    owner_file: PathBuf,
    run_as: Option<(u32, u32)>,
    /// Whether this process started (or adopted) the server, and so stops it.
    owned: bool,
}

impl EmbeddedPostgres {
    /// Initialises (first time) and starts the cluster under `root/pg`, or attaches to it when a
    /// server already runs there.
    pub fn start(root: &Path, bin_override: Option<&Path>) -> Result<Self> {
        let bin_dir = find_bin_dir(bin_override)?;
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating data dir {}", root.display()))?;
        let root = std::path::absolute(root)?;
        let data_dir = root.join("pg");
        let run_as = postgres_user_if_root()?;
        let socket_dir = socket_dir_for(&root);
        if let Some((uid, gid)) = run_as {
            prepare_for_postgres(&root, uid, gid)?;
        }
        for dir in [&data_dir, &socket_dir] {
            std::fs::create_dir_all(dir)?;
            if let Some((uid, gid)) = run_as {
                chown(dir, Some(uid), Some(gid))
                    .with_context(|| format!("chown {}", dir.display()))?;
            }
        }
        let mut pg = EmbeddedPostgres {
            bin_dir,
            data_dir,
            socket_dir,
            owner_file: root.join(OWNER_FILE),
            run_as,
            owned: false,
        };
        if !pg.data_dir.join("PG_VERSION").exists() {
            pg.run(
                "initdb",
                &[
                    "-D",
                    &pg.data_str(),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
            )
            .context("initdb failed")?;
        }
        if pg.is_running() {
            match pg.recorded_owner() {
                Some(owner) if process_alive(owner) => {
                    tracing::info!(data_dir = %pg.data_dir.display(), owner, "attaching to the embedded PostgreSQL of another archdb process");
                }
                Some(owner) => {
                    tracing::warn!(
                        data_dir = %pg.data_dir.display(),
                        server_pid = ?pg.postmaster_pid(),
                        owner,
                        "the embedded PostgreSQL was left running by an archdb process that ended without stopping it; reusing it (stopped on shutdown)"
                    );
                    pg.take_ownership()?;
                }
                None => {
                    tracing::info!(data_dir = %pg.data_dir.display(), "attaching to the running embedded PostgreSQL");
                }
            }
            return Ok(pg);
        }
        let options = format!(
            "-k {} -c listen_addresses='' -p {PORT}",
            pg.socket_dir.display()
        );
        let log = pg.data_dir.join("server.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &pg.data_str(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
        .with_context(|| format!("starting PostgreSQL failed; see {}", log.display()))?;
        pg.take_ownership()?;
        tracing::info!(data_dir = %pg.data_dir.display(), socket = %pg.socket_dir.display(), "embedded PostgreSQL started");
        Ok(pg)
    }

    /// Connection options for a database of this cluster.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.socket_dir.to_string_lossy())
            .port(PORT)
            .username("postgres")
            .database(database)
    }

    /// Stops the server if this process started it.
    pub fn stop(&mut self) {
        if !self.owned {
            return;
        }
        self.owned = false;
        match self.run(
            "pg_ctl",
            &["-D", &self.data_str(), "-m", "fast", "-w", "stop"],
        ) {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.owner_file);
                tracing::info!("embedded PostgreSQL stopped")
            }
            Err(e) => tracing::warn!("stopping embedded PostgreSQL: {e:#}"),
        }
    }

    /// Leaves the server running when this handle is dropped (shared clusters, e.g. in tests);
    /// later processes attach to it without adopting it.
    pub fn detach(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.owner_file);
        }
        self.owned = false;
    }

    /// The pid in the postmaster's lock file (`postmaster.pid`, first line).
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The archdb process recorded as having started the running server.
    fn recorded_owner(&self) -> Option<u32> {
        std::fs::read_to_string(&self.owner_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Makes this process the one that stops the server, and records it.
    fn take_ownership(&mut self) -> Result<()> {
        std::fs::write(&self.owner_file, std::process::id().to_string())
            .with_context(|| format!("writing {}", self.owner_file.display()))?;
        self.owned = true;
        Ok(())
    }

    fn data_str(&self) -> String {
        self.data_dir.to_string_lossy().into_owned()
    }

    fn is_running(&self) -> bool {
        self.socket_dir.join(format!(".s.PGSQL.{PORT}")).exists()
            && self
                .command("pg_ctl")
                .args(["-D", &self.data_str(), "status"])
                .output()
                .is_ok_and(|o| o.status.success())
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.current_dir(&self.data_dir);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
            cmd.env("HOME", &self.data_dir);
        }
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a process with this pid exists (signal 0 checks without sending anything).
fn process_alive(pid: u32) -> bool {
    let Ok(pid @ 1..) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the pid exists.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The directory with `initdb`, `pg_ctl` and `postgres`: the override, else `PATH`, else the
/// newest `/usr/lib/postgresql/*/bin` (Debian does not put server binaries on `PATH`).
fn find_bin_dir(bin_override: Option<&Path>) -> Result<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = bin_override {
        if has_tools(dir) {
            return Ok(dir.to_path_buf());
        }
        bail!("ARCHDB_PG_BIN={} has no initdb/pg_ctl", dir.display());
    }
    if let Some(dir) =
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has_tools(d)))
    {
        return Ok(dir);
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin).ok_or_else(|| {
        anyhow::anyhow!(
            "no PostgreSQL server binaries found (initdb, pg_ctl): install the PostgreSQL server \
             (Debian/Ubuntu: `apt-get install postgresql`), set ARCHDB_PG_BIN to their directory, \
             or point DATABASE_URL at an existing server"
        )
    })
}

/// `(uid, gid)` of the `postgres` user when running as root (initdb refuses root).
fn postgres_user_if_root() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: `name` is a valid C string; the returned record is read before any other
    // getpw* call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!(
            "running as root, and PostgreSQL refuses to run as root: create a `postgres` user (the PostgreSQL server package does) or run archdb as another user"
        );
    }
    // SAFETY: non-null pointer from getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

/// As root, the cluster runs as `postgres`, which must be able to reach `root`. archdb's own
/// directory is opened to it (search permission for others); a parent it cannot pass stops the
/// start with one line that names the directory and the fix.
fn prepare_for_postgres(root: &Path, uid: u32, gid: u32) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let searchable = |meta: &std::fs::Metadata| {
        let mode = meta.mode();
        if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    };
    let meta = std::fs::metadata(root)?;
    if !searchable(&meta) {
        let mut permissions = meta.permissions();
        permissions.set_mode(meta.mode() | 0o001);
        std::fs::set_permissions(root, permissions)
            .with_context(|| format!("opening {} to the postgres user", root.display()))?;
    }
    for parent in root.ancestors().skip(1) {
        let meta = std::fs::metadata(parent)?;
        if !searchable(&meta) {
            bail!(
                "the embedded PostgreSQL runs as the `postgres` user, which cannot reach {} \
                 because {} (mode {:o}) is closed to it: set ARCHDB_DATA_DIR to a directory it \
                 can reach (e.g. /var/lib/archdb), or run `chmod o+x {}`",
                root.display(),
                parent.display(),
                meta.mode() & 0o7777,
                parent.display()
            );
        }
    }
    Ok(())
}

/// The socket directory: `root/run` (beside the cluster: initdb wants an empty directory) unless the path is too long for a unix
/// socket or would need quoting in `pg_ctl -o`, then a stable per-cluster folder in /tmp.
fn socket_dir_for(root: &Path) -> PathBuf {
    let inside = root.join("run");
    let text = inside.to_string_lossy();
    if text.len() <= MAX_SOCKET_DIR
        && !text.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
    {
        return inside;
    }
    let tag = xxhash_rust::xxh3::xxh3_64(root.as_os_str().as_encoded_bytes());
    PathBuf::from(format!("/tmp/archdb-pg-{tag:016x}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn a_closed_parent_is_named_and_the_data_dir_is_opened() {
        let base = tempfile::tempdir().unwrap();
        let parent = base.path().join("home");
        let root = parent.join(".archdb");
        std::fs::create_dir_all(&root).unwrap();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(&root, 0o700);
        mode(&parent, 0o700);
        // Someone else: neither the owner nor in the group of these directories.
        let meta = std::fs::metadata(&root).unwrap();
        let (uid, gid) = (meta.uid() + 1, meta.gid() + 1);
        let err = prepare_for_postgres(&root, uid, gid)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{} (mode 700)", parent.display())),
            "{err}"
        );
        assert!(err.contains("ARCHDB_DATA_DIR"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        // archdb's own directory was opened; with the parent open too, the start goes on.
        assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o777, 0o701);
        mode(&parent, 0o711);
        prepare_for_postgres(&root, uid, gid).unwrap();
    }
}
