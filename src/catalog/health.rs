//! Probes run over the catalog's AUTH connections: whether AUTH answers,
//! and the server's count of connections opened as tenant roles.

use super::{Catalog, CatalogError};

impl Catalog {
    /// Runs `SELECT 1` on a pooled AUTH connection.
    pub async fn ping(&self) -> Result<(), CatalogError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Connections of roles named `<role_prefix>…` to their own database
    /// (tenant roles in their tenant database): (active, not active).
    pub async fn role_connections(&self, role_prefix: &str) -> Result<(i64, i64), CatalogError> {
        const SQL: &str = "SELECT count(*) FILTER (WHERE state = 'active'), \
             count(*) FILTER (WHERE state <> 'active') \
             FROM pg_stat_activity WHERE starts_with(usename, $1) AND datname = usename";
        let row = self.client().await?.query_one(SQL, &[&role_prefix]).await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}
