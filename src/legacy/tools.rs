//! The PostgreSQL client programs the legacy steps call: `pg_dump` and
//! `pg_restore`, found like the dev cluster finds `initdb` (`pg_config
//! --bindir`, then the newest `/usr/lib/postgresql/*/bin`, then `PATH`).

use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::LegacyError;

/// The path of `program`, if any (see `crate::devcluster`'s search).
pub async fn find(program: &str) -> Result<PathBuf, LegacyError> {
    crate::devcluster::find_program(program)
        .await
        .ok_or_else(|| LegacyError::Tool {
            program: program.to_owned(),
            output:
                "not found (looked in `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH); \
                     install the PostgreSQL client programs"
                    .to_owned(),
        })
}

/// Runs `program` with `args` (and the password of `config` in
/// `PGPASSWORD`, never on the command line); returns its standard output.
pub async fn run(
    program: &str,
    args: &[&str],
    config: &tokio_postgres::Config,
) -> Result<Vec<u8>, LegacyError> {
    let path = find(program).await?;
    let mut command = Command::new(&path);
    command.args(args);
    if let Some(password) = config.get_password() {
        command.env("PGPASSWORD", String::from_utf8_lossy(password).as_ref());
    }
    let output = command.output().await.map_err(|e| LegacyError::Tool {
        program: program.to_owned(),
        output: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(LegacyError::Tool {
        program: program.to_owned(),
        output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// A connection string for the client programs (`dbname=… host=…`), from
/// settings; the password goes through [`run`]'s environment instead.
pub fn conninfo(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let mut parts = Vec::new();
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={}", quote(db)));
    }
    match config.get_hosts().first() {
        Some(Host::Tcp(h)) => parts.push(format!("host={}", quote(h))),
        Some(Host::Unix(p)) => parts.push(format!("host={}", quote(&p.display().to_string()))),
        None => {}
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={}", quote(user)));
    }
    parts.join(" ")
}

/// `path` as a string argument.
pub fn arg(path: &Path) -> String {
    path.display().to_string()
}
