//! Changes to a live tenant's descriptive fields (name, region, plan,
//! administrator e-mail, settings). Its code, id, database and status are
//! not changed here: the life cycle owns those. A patch is checked
//! ([`TenantPatch::validate`]) before it is written.

use super::{Catalog, CatalogError, GONE_STATUSES, TENANT_COLUMNS, tenant_from_row};
use crate::tenant::{
    Plan, Region, Tenant, TenantCode, TenantError, check_email, check_name, check_settings,
};

/// Fields to change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    /// New display name.
    pub name: Option<String>,
    /// New region.
    pub region: Option<Region>,
    /// New plan.
    pub plan: Option<Plan>,
    /// New administrator e-mail (`Some(None)` clears it).
    pub admin_email: Option<Option<String>>,
    /// New settings document (replaces the old one).
    pub settings: Option<serde_json::Value>,
}

impl TenantPatch {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.region.is_none()
            && self.plan.is_none()
            && self.admin_email.is_none()
            && self.settings.is_none()
    }

    /// Checks the new values before they are stored: name, e-mail and
    /// settings (an object, bounded, finite numbers, no NUL).
    pub fn validate(&self) -> Result<(), TenantError> {
        self.name.as_deref().map_or(Ok(()), check_name)?;
        if let Some(Some(email)) = &self.admin_email {
            check_email(email)?;
        }
        self.settings.as_ref().map_or(Ok(()), check_settings)
    }
}

impl Catalog {
    /// Applies `patch` to the live tenant with this code; `None` if there is none.
    pub async fn update_tenant(
        &self,
        code: &TenantCode,
        patch: &TenantPatch,
    ) -> Result<Option<Tenant>, CatalogError> {
        patch.validate().map_err(CatalogError::Invalid)?;
        let sql = format!(
            "UPDATE tenants SET name = COALESCE($2, name), region = COALESCE($3, region), \
               plan = COALESCE($4, plan), admin_email = CASE WHEN $5 THEN $6 ELSE admin_email END, \
               settings = COALESCE($7, settings), updated_at = now() \
             WHERE code = $1 AND status NOT IN {GONE_STATUSES} RETURNING {TENANT_COLUMNS}"
        );
        let row = self
            .client()
            .await?
            .query_opt(
                &sql,
                &[
                    &code.as_str(),
                    &patch.name,
                    &patch.region.map(Region::as_str),
                    &patch.plan.map(Plan::as_str),
                    &patch.admin_email.is_some(),
                    &patch.admin_email.clone().flatten(),
                    &patch.settings,
                ],
            )
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }
}
