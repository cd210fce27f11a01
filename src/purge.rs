//! Dropping everything made under a throw-away name prefix: the databases
//! (templates unsealed first) and the roles named `<prefix>_…`. For
//! benchmarks and tests that work under a private prefix; tenantd's own
//! commands never call it — they drop exactly what the catalog names.
//!
//! Test and benchmark code only: compiled with the `testing` feature.

use futures::StreamExt;
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
            Err(e) => purged.failures.push(format!(
                "database {name}: {}",
                crate::pg_error::describe(&e)
            )),
        }
    }
    for row in admin.query(ROLES, &[&pattern]).await? {
        let name: String = row.get(0);
        match admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&name)))
            .await
        {
            Ok(()) => purged.roles += 1,
            Err(e) => purged
                .failures
                .push(format!("role {name}: {}", crate::pg_error::describe(&e))),
        }
    }
    Ok(purged)
}

/// Like [`purge_prefix`], but drops the databases `concurrency` at a time,
/// each over its own admin connection to `server` (concurrent drops share
/// their checkpoints, so a prefix of a thousand databases goes much faster).
pub async fn purge_prefix_concurrently(
    server: &tokio_postgres::Config,
    prefix: &str,
    concurrency: usize,
) -> Result<Purged, tokio_postgres::Error> {
    const DATABASES: &str = "SELECT datname FROM pg_database WHERE starts_with(datname, $1)";
    let admin = connect(server).await?;
    let pattern = format!("{prefix}_");
    let names: Vec<String> = admin
        .query(DATABASES, &[&pattern])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // A database this pass cannot drop is tried again (and reported) below.
    let dropped = futures::stream::iter(names)
        .map(|name| async move {
            let quoted = quote_ident(&name);
            let Ok(client) = connect(server).await else {
                return false;
            };
            let _ = client
                .batch_execute(&format!("ALTER DATABASE {quoted} WITH IS_TEMPLATE false"))
                .await;
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
                .await
                .is_ok()
        })
        .buffer_unordered(concurrency.max(1))
        .filter(|dropped| std::future::ready(*dropped))
        .count()
        .await;
    let mut purged = purge_prefix(&admin, prefix).await?;
    purged.databases += dropped;
    Ok(purged)
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
