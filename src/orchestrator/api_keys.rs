//! API keys through the façade: issuing one (its secret is returned once and
//! only its SHA-256 is stored), listing, revoking, looking one up by hash,
//! and the bootstrap admin key of a catalog that has none.

use uuid::Uuid;

use super::Orchestrator;
use crate::apikey::{ApiKeyError, ApiKeyRecord, ApiKeyScope, IssuedApiKey, NewKeySecret, key_name};
use crate::error::Error;
use crate::tenant::TenantCode;

/// Advisory-lock object (global class) serialising the bootstrap key.
const BOOTSTRAP_LOCK: i32 = 0x4B45;

impl Orchestrator {
    /// Creates an API key named `name`: admin-scoped, or bound to the live
    /// tenant `tenant` (required for, and only for, a tenant key). The
    /// returned secret is shown this once; the catalog keeps its hash.
    pub async fn issue_api_key(
        &self,
        name: &str,
        scope: ApiKeyScope,
        tenant: Option<&TenantCode>,
    ) -> Result<IssuedApiKey, Error> {
        let name = key_name(name)?;
        let tenant_id = match (scope, tenant) {
            (ApiKeyScope::Tenant, Some(code)) => Some(self.live_tenant(code).await?.id),
            (ApiKeyScope::Admin, None) => None,
            _ => return Err(ApiKeyError::TenantMismatch.into()),
        };
        let secret = NewKeySecret::generate();
        let record = self
            .inner
            .catalog
            .insert_api_key(name, &secret.display_prefix, &secret.hash, scope, tenant_id)
            .await?;
        Ok(IssuedApiKey {
            record,
            secret: secret.secret,
        })
    }

    /// API keys, newest first: only those of `tenant` when given, and the
    /// revoked ones too when `include_revoked`.
    pub async fn api_keys(
        &self,
        tenant: Option<&TenantCode>,
        include_revoked: bool,
    ) -> Result<Vec<ApiKeyRecord>, Error> {
        let tenant_id = match tenant {
            Some(code) => Some(self.tenant(code).await?.id),
            None => None,
        };
        Ok(self
            .inner
            .catalog
            .api_keys(tenant_id, include_revoked)
            .await?)
    }

    /// Revokes a key: it authenticates nothing from now on. Returns its
    /// hash (so caches keyed by hash can forget it), `None` when no live key
    /// has this id.
    pub async fn revoke_api_key(&self, id: Uuid) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.inner.catalog.revoke_api_key(id).await?)
    }

    /// The unrevoked key whose SHA-256 is `hash` (see [`crate::apikey::hash_key`]).
    pub async fn api_key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, Error> {
        Ok(self.inner.catalog.api_key_by_hash(hash).await?)
    }

    /// Issues an admin key named `bootstrap` when the catalog has no live
    /// admin key (serialised across processes: at most one is made).
    pub async fn issue_bootstrap_key(&self) -> Result<Option<IssuedApiKey>, Error> {
        let catalog = &self.inner.catalog;
        let lock = catalog.lock_global(BOOTSTRAP_LOCK).await?;
        let result = async {
            if catalog.admin_key_count().await? > 0 {
                return Ok(None);
            }
            let issued = self
                .issue_api_key("bootstrap", ApiKeyScope::Admin, None)
                .await?;
            Ok::<_, Error>(Some(issued))
        }
        .await;
        lock.release().await?;
        result
    }
}
