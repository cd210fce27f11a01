//! The `api_keys` table of the catalog: keys are stored as SHA-256 hashes
//! with a display prefix; the secret itself never reaches the database.

use tokio_postgres::Row;
use uuid::Uuid;

use super::read::RowReader;
use super::{Catalog, CatalogError};
use crate::apikey::{ApiKeyRecord, ApiKeyScope};
use crate::tenant::TenantCode;

const KEY_COLUMNS: &str = "k.id, k.name, k.key_prefix, k.scope, k.tenant_id, t.code AS tenant_code, \
     t.plan AS tenant_plan, k.created_at, k.revoked_at";

impl Catalog {
    /// Records a key (its hash only).
    pub async fn insert_api_key(
        &self,
        name: &str,
        display_prefix: &str,
        hash: &[u8; 32],
        scope: ApiKeyScope,
        tenant_id: Option<Uuid>,
    ) -> Result<ApiKeyRecord, CatalogError> {
        const SQL: &str = "INSERT INTO api_keys (id, name, key_prefix, key_hash, scope, tenant_id) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        let id = Uuid::now_v7();
        let client = self.client().await?;
        client
            .execute(
                SQL,
                &[
                    &id,
                    &name,
                    &display_prefix,
                    &hash.as_slice(),
                    &scope.as_str(),
                    &tenant_id,
                ],
            )
            .await?;
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1"
        );
        key_from_row(&client.query_one(&sql, &[&id]).await?)
    }

    /// The unrevoked key with this hash.
    pub async fn api_key_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<ApiKeyRecord>, CatalogError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        );
        let row = self
            .client()
            .await?
            .query_opt(&sql, &[&hash.as_slice()])
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Keys, newest first; only those of `tenant_id` when given; revoked ones when asked.
    pub async fn api_keys(
        &self,
        tenant_id: Option<Uuid>,
        include_revoked: bool,
    ) -> Result<Vec<ApiKeyRecord>, CatalogError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN tenants t ON t.id = k.tenant_id \
             WHERE ($1::uuid IS NULL OR k.tenant_id = $1) AND ($2 OR k.revoked_at IS NULL) \
             ORDER BY k.created_at DESC, k.id"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&tenant_id, &include_revoked])
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes a key; returns the key hash when it was live (so caches can forget it).
    pub async fn revoke_api_key(&self, id: Uuid) -> Result<Option<Vec<u8>>, CatalogError> {
        const SQL: &str = "UPDATE api_keys SET revoked_at = now() \
             WHERE id = $1 AND revoked_at IS NULL RETURNING key_hash";
        let row = self.client().await?.query_opt(SQL, &[&id]).await?;
        row.map(|row| RowReader::new(&row, format!("api key {id}")).get("key_hash"))
            .transpose()
    }

    /// How many unrevoked admin keys exist.
    pub async fn admin_key_count(&self) -> Result<i64, CatalogError> {
        const SQL: &str =
            "SELECT count(*) FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL";
        let row = self.client().await?.query_one(SQL, &[]).await?;
        RowReader::new(&row, "the admin key count").get("count")
    }
}

fn key_from_row(row: &Row) -> Result<ApiKeyRecord, CatalogError> {
    let mut r = RowReader::new(row, "an api key row");
    let id: Uuid = r.get("id")?;
    r.describe(format!("api key {id}"));
    let scope: &str = r.get("scope")?;
    let scope = scope.parse().map_err(|e: crate::apikey::InvalidScope| {
        CatalogError::Corrupt(crate::tenant::TenantError::InvalidStatus(e.0))
    })?;
    Ok(ApiKeyRecord {
        id,
        name: r.get("name")?,
        key_prefix: r.get("key_prefix")?,
        scope,
        tenant_id: r.get("tenant_id")?,
        tenant_code: r
            .get::<Option<&str>>("tenant_code")?
            .map(TenantCode::parse)
            .transpose()?,
        tenant_plan: r
            .get::<Option<&str>>("tenant_plan")?
            .map(str::parse)
            .transpose()?,
        created_at: r.get("created_at")?,
        revoked_at: r.get("revoked_at")?,
    })
}
