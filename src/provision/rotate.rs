//! Rotating a tenant role's password: the catalog's password generation is
//! bumped (the derivation includes it), the role gets the new password and
//! every session opened with the old one is ended.
//!
//! The generation is bumped *before* the role is changed: a process that
//! dies in between leaves a role whose verifier does not match the derived
//! password, which `reconcile` repairs (see `super::shape`). The caller
//! drops the tenant's pool, so it reconnects with the new password.

use serde_json::json;

use super::{ProvisionError, Provisioner};
use crate::catalog::OperationKind;
use crate::ident::{quote_ident, quote_literal};
use crate::tenant::{Tenant, TenantCode, TenantStatus};

impl Provisioner {
    /// Gives a live (active or suspended) tenant's role a new derived
    /// password and ends the sessions of the old one.
    #[tracing::instrument(skip_all, fields(tenant = %code))]
    pub async fn rotate_password(
        &self,
        code: &TenantCode,
        actor: &str,
    ) -> Result<Tenant, ProvisionError> {
        let lock = self.begin(code).await?;
        let result = self.rotate_locked(code, actor).await;
        lock.release().await?;
        result
    }

    async fn rotate_locked(
        &self,
        code: &TenantCode,
        actor: &str,
    ) -> Result<Tenant, ProvisionError> {
        let tenant = self.live_tenant(code).await?;
        if !matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended
        ) {
            return Err(ProvisionError::WrongStatus {
                code: code.clone(),
                status: tenant.status,
                action: OperationKind::RotatePassword.as_str(),
            });
        }
        let detail = json!({ "from_generation": tenant.password_generation });
        let op = self
            .catalog
            .start_operation(Some(&tenant), OperationKind::RotatePassword, actor, detail)
            .await?;
        let outcome = self.set_new_password(&tenant).await;
        let error = outcome.as_ref().err().map(ToString::to_string);
        self.catalog.finish_operation(op, error.as_deref()).await?;
        let rotated = outcome?;
        tracing::info!(
            generation = rotated.password_generation,
            "tenant role password rotated"
        );
        Ok(rotated)
    }

    async fn set_new_password(&self, tenant: &Tenant) -> Result<Tenant, ProvisionError> {
        let rotated = self
            .catalog
            .bump_password_generation(tenant.id)
            .await?
            .ok_or_else(|| ProvisionError::NotFound(tenant.code.clone()))?;
        let admin = self.admin().await?;
        admin
            .batch_execute(&format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(tenant.role_name()),
                quote_literal(&self.role_password(&rotated))
            ))
            .await?;
        // Every open session authenticated with the old password (tenantd's
        // pool included) ends; PostgreSQL checks passwords at login only.
        admin
            .execute(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity \
                 WHERE usename = $1",
                &[&tenant.role_name()],
            )
            .await?;
        Ok(rotated)
    }
}
