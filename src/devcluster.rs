//! The embedded dev cluster: a private PostgreSQL cluster under `./.tenantd/`
//! started from the local PostgreSQL installation (initdb + pg_ctl) when
//! `DATABASE_URL` is unset, so a new user can run tenantd with no setup.
//!
//! As root, the PostgreSQL programs run as the `postgres` OS user (the server
//! refuses to run as root). The cluster listens on 127.0.0.1 on a port chosen
//! at initdb time, with trust authentication: it is for development only.

use crate::error_kind::{Classify, ErrorKind};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::secret::{MIN_SECRET_LEN, MasterSecret};

/// The dev cluster could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    /// No PostgreSQL installation was found.
    #[error(
        "DATABASE_URL is unset and no local PostgreSQL installation was found (looked for initdb in \
         `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH); install PostgreSQL (e.g. \
         `apt-get install postgresql`) or set DATABASE_URL to an existing server"
    )]
    NoPostgres,
    /// A PostgreSQL program failed.
    #[error("{program} failed for the dev cluster in {}: {output}", dir.display())]
    Command {
        /// The program.
        program: String,
        /// The cluster directory.
        dir: PathBuf,
        /// What it printed.
        output: String,
    },
    /// A file of the cluster could not be read or written.
    #[error("dev cluster file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for DevClusterError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoPostgres | Self::Command { .. } | Self::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// A private cluster under a directory.
#[derive(Debug, Clone)]
pub struct DevCluster {
    dir: PathBuf,
}

impl DevCluster {
    /// The cluster under `dir` (made absolute against the working directory).
    pub fn new(dir: &Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self { dir }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn port_file(&self) -> PathBuf {
        self.dir.join("port")
    }

    /// Starts the cluster (initialising it on first use) and returns its admin URL.
    pub async fn start(&self) -> Result<String, DevClusterError> {
        let bin = find_bindir().await.ok_or(DevClusterError::NoPostgres)?;
        if !self.data_dir().join("PG_VERSION").exists() {
            self.initdb(&bin).await?;
        }
        if !self.is_running(&bin).await {
            let log = self.dir.join("postgres.log");
            let data = self.data_dir();
            let args = [
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
            ];
            self.run(&bin, "pg_ctl", &args).await?;
        }
        self.url()
    }

    /// Stops the cluster if it runs; returns whether it was running.
    pub async fn stop(&self) -> Result<bool, DevClusterError> {
        let bin = find_bindir().await.ok_or(DevClusterError::NoPostgres)?;
        if !self.is_running(&bin).await {
            return Ok(false);
        }
        let data = self.data_dir();
        self.run(
            &bin,
            "pg_ctl",
            &["stop", "-w", "-m", "fast", "-D", path_str(&data)],
        )
        .await?;
        Ok(true)
    }

    /// The admin URL of the cluster (valid once it has been initialised).
    pub fn url(&self) -> Result<String, DevClusterError> {
        let path = self.port_file();
        let port = std::fs::read_to_string(&path)
            .map_err(|source| DevClusterError::Io { path, source })?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            port.trim()
        ))
    }

    /// The master secret of the dev cluster, generated on first use and kept
    /// in `<dir>/secret` (mode 0600).
    pub fn secret(&self) -> Result<MasterSecret, DevClusterError> {
        let path = self.dir.join("secret");
        let io = |source| DevClusterError::Io {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            std::fs::create_dir_all(&self.dir).map_err(io)?;
            let bytes: [u8; MIN_SECRET_LEN] = rand::random();
            std::fs::write(&path, hex::encode(bytes)).map_err(io)?;
            set_mode(&path, 0o600).map_err(io)?;
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        MasterSecret::new(text.trim().as_bytes())
            .map_err(|e| io(std::io::Error::other(e.to_string())))
    }

    async fn is_running(&self, bin: &Path) -> bool {
        let data = self.data_dir();
        self.run(bin, "pg_ctl", &["status", "-D", path_str(&data)])
            .await
            .is_ok()
    }

    async fn initdb(&self, bin: &Path) -> Result<(), DevClusterError> {
        let data = self.data_dir();
        let io = |source| DevClusterError::Io {
            path: data.clone(),
            source,
        };
        std::fs::create_dir_all(&data).map_err(io)?;
        if is_root() {
            self.run_plain("chown", &["-R", "postgres:postgres", path_str(&self.dir)])
                .await?;
        }
        set_mode(&data, 0o700).map_err(io)?;
        let args = [
            "-D",
            path_str(&data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ];
        self.run(bin, "initdb", &args).await?;
        let port = free_port().map_err(io)?;
        let conf = format!(
            "\n# tenantd dev cluster\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = 200\nfsync = off\n",
            data.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).map_err(io)?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).map_err(io)?;
        std::fs::write(self.port_file(), port.to_string()).map_err(io)?;
        Ok(())
    }

    /// Runs a PostgreSQL program, as the `postgres` OS user when we are root.
    async fn run(&self, bin: &Path, program: &str, args: &[&str]) -> Result<(), DevClusterError> {
        let path = bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command.args(args).current_dir("/");
        self.finish(program, command).await
    }

    async fn run_plain(&self, program: &str, args: &[&str]) -> Result<(), DevClusterError> {
        let mut command = Command::new(program);
        command.args(args);
        self.finish(program, command).await
    }

    async fn finish(&self, program: &str, mut command: Command) -> Result<(), DevClusterError> {
        let failed = |output: String| DevClusterError::Command {
            program: program.to_owned(),
            dir: self.dir.clone(),
            output,
        };
        let output = command.output().await.map_err(|e| failed(e.to_string()))?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        if text.contains("Permission denied") {
            text.push_str("; the postgres OS user must be able to reach this directory (set TENANTD_DEV_DIR elsewhere, e.g. /tmp/tenantd-dev)");
        }
        Err(failed(text))
    }
}

/// The directory holding initdb and pg_ctl.
async fn find_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output().await {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").exists())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    // The effective uid is the second field of the `Uid:` line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}
