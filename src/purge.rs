//! Dropping everything made under a throw-away name prefix: the databases
//! (templates unsealed first) and the roles named `<prefix>_…`. For
//! benchmarks and tests that work under a private prefix; tenantd's own
//! commands never call it — they drop exactly what the catalog names.

use tokio_postgres::Client;

use crate::ident::quote_ident;

/// What [`purge_prefix`] dropped, and what it could not.
#[derive(Debug, Default)]
pub struct Purged {
    /// Databases dropped.
    pub databases: usize,
    /// Roles dropped.
    pub roles: usize,
    /// `object: error` for each object that could not be dropped.
    pub failures: Vec<String>,
}

/// Drops every database, then every role, whose name starts with `<prefix>_`,
/// through an admin connection to any database of the server.
pub async fn purge_prefix(admin: &Client, prefix: &str) -> Result<Purged, tokio_postgres::Error> {
    const DATABASES: &str = "SELECT datname FROM pg_database WHERE starts_with(datname, $1)";
    const ROLES: &str = "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)";
    let pattern = format!("{prefix}_");
    let mut purged = Purged::default();
    for row in admin.query(DATABASES, &[&pattern]).await? {
        let name: String = row.get(0);
        match crate::template::drop_database(admin, &name).await {
            Ok(()) => purged.databases += 1,
            Err(e) => purged.failures.push(format!("database {name}: {e}")),
        }
    }
    for row in admin.query(ROLES, &[&pattern]).await? {
        let name: String = row.get(0);
        match admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&name)))
            .await
        {
            Ok(()) => purged.roles += 1,
            Err(e) => purged.failures.push(format!("role {name}: {e}")),
        }
    }
    Ok(purged)
}
