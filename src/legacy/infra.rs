//! The deployment objects a run may create besides its tenants — AUTH,
//! SHARED, the tenant template and tenantd's private roles — and which of
//! them existed before the first attempt of the run. Rollback drops only the
//! ones that did not: never anything else.
//!
//! The "before" snapshot is a file in the reports directory, written once
//! before anything is created (AUTH itself may not exist yet).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::{LegacyConfig, LegacyError};
use crate::names::Names;

/// Names of deployment objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Infra {
    /// Databases.
    pub databases: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
}

const DATABASES: &str = "SELECT datname FROM pg_database
    WHERE datname = ANY ($1) OR starts_with(datname, $2) OR starts_with(datname, $3) ORDER BY 1";
const ROLES: &str = "SELECT rolname FROM pg_roles WHERE rolname = ANY ($1) ORDER BY 1";

/// Where the snapshot of a source's run is kept.
pub fn snapshot_path(config: &LegacyConfig) -> Result<PathBuf, LegacyError> {
    Ok(config
        .output
        .reports
        .join(format!("run-{}.preexisting.json", config.source_db()?)))
}

/// The deployment objects that exist now.
pub async fn existing(admin: &Client, names: &Names) -> Result<Infra, LegacyError> {
    let dbs = vec![names.auth_db().to_owned(), names.shared_db().to_owned()];
    let roles = vec![names.shared_reader(), names.template_owner()];
    let context = "list the deployment's databases and roles";
    let databases = admin
        .query(
            DATABASES,
            &[
                &dbs,
                &names.template_prefix(),
                &names.template_build_prefix(),
            ],
        )
        .await
        .map_err(LegacyError::db(context))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let roles = admin
        .query(ROLES, &[&roles])
        .await
        .map_err(LegacyError::db(context))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Infra { databases, roles })
}

/// Writes the "before" snapshot unless an earlier attempt did.
pub async fn remember_before(
    config: &LegacyConfig,
    admin: &Client,
    names: &Names,
) -> Result<(), LegacyError> {
    let path = snapshot_path(config)?;
    if !path.exists() {
        super::write_json(&path, &existing(admin, names).await?)?;
    }
    Ok(())
}

/// The "before" snapshot, if a run wrote one.
pub fn before(config: &LegacyConfig) -> Result<Option<Infra>, LegacyError> {
    let path = snapshot_path(config)?;
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(LegacyError::io(&path))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| LegacyError::Io {
            path,
            source: std::io::Error::other(e),
        })
}

/// The objects that exist now and did not before.
pub async fn created(admin: &Client, names: &Names, before: &Infra) -> Result<Infra, LegacyError> {
    let now = existing(admin, names).await?;
    Ok(Infra {
        databases: now
            .databases
            .into_iter()
            .filter(|d| !before.databases.contains(d))
            .collect(),
        roles: now
            .roles
            .into_iter()
            .filter(|r| !before.roles.contains(r))
            .collect(),
    })
}
