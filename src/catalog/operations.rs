//! Catalog reads and writes of the `operations` table (the audit log) by id:
//! inserting an entry under an id chosen by the caller (so an HTTP response
//! can name an operation before it is written) and reading one entry back.
//!
//! An entry's kind and status are [`OperationKind`] and [`OperationStatus`],
//! stored as their text; a stored value tenantd does not know is an
//! [`UnknownValue`] error on read, never a panic.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::read::RowReader;
use super::{Catalog, CatalogError};
use crate::tenant::Tenant;

/// A text column of the catalog holds a value this tenantd does not know
/// (written by a newer version, or by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {column} {value:?} in the catalog; was it written by a newer tenantd?")]
pub struct UnknownValue {
    /// The column (`operations.kind`, …).
    pub column: &'static str,
    /// The value found.
    pub value: String,
}

/// Declares a closed set of values stored as text in a catalog column: the
/// enum, its stored text (`as_str`, `Display`, serde) and its parsing
/// (`FromStr`, failing with [`UnknownValue`]).
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident, $column:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// The value as stored in the catalog (and shown in JSON).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::catalog::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::catalog::UnknownValue {
                        column: $column,
                        value: other.to_owned(),
                    }),
                }
            }
        }

        impl PartialEq<&str> for $name {
            /// Compares with a stored text.
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}
pub(crate) use stored_enum;

stored_enum!(
    /// What an audit-log entry records.
    OperationKind, "operations.kind", {
        /// A tenant's creation.
        Create => "create",
        /// A tenant's drop.
        Drop => "drop",
        /// A tenant's suspension.
        Suspend => "suspend",
        /// A suspended tenant's resumption.
        Resume => "resume",
        /// A repair by the reconciler.
        Reconcile => "reconcile",
        /// A fleet migration run.
        MigrateRun => "migrate_run",
        /// A tenant role's password rotation.
        RotatePassword => "rotate_password",
    }
);

stored_enum!(
    /// Where an audit-log entry stands.
    OperationStatus, "operations.status", {
        /// Started, not ended.
        Running => "running",
        /// Ended without error.
        Succeeded => "succeeded",
        /// Ended with an error.
        Failed => "failed",
    }
);

/// One audit-log entry.
#[derive(Debug, Clone)]
pub struct OperationRow {
    /// Its id.
    pub id: Uuid,
    /// What it did.
    pub kind: OperationKind,
    /// Where it stands.
    pub status: OperationStatus,
    /// The tenant it is about, if any.
    pub tenant_code: Option<String>,
    /// Who started it.
    pub actor: String,
    /// Free-form detail (a run's options, plan and summary).
    pub detail: serde_json::Value,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// An audit-log entry still `running`, as [`Catalog::running_operations`]
/// lists it for the reconciler.
#[derive(Debug, Clone)]
pub struct RunningOperation {
    /// Its id.
    pub id: Uuid,
    /// What it does; `None` when written by a tenantd that knows more kinds.
    pub kind: Option<OperationKind>,
    /// The tenant it is about, if any.
    pub tenant_code: Option<String>,
}

impl Catalog {
    /// Every entry still `running`, oldest first.
    pub async fn running_operations(&self) -> Result<Vec<RunningOperation>, CatalogError> {
        const SQL: &str = "SELECT id, kind, tenant_code FROM operations \
             WHERE status = 'running' ORDER BY started_at, id";
        let rows = self.client().await?.query(SQL, &[]).await?;
        rows.iter()
            .map(|row| {
                let mut r = RowReader::new(row, "a running operation");
                let id: Uuid = r.get("id")?;
                r.describe(format!("operation {id}"));
                Ok(RunningOperation {
                    id,
                    kind: r.get::<&str>("kind")?.parse().ok(),
                    tenant_code: r.get("tenant_code")?,
                })
            })
            .collect()
    }

    /// Closes the entry as `failed` with `error` if it is still `running`
    /// (its task or its process died before closing it); false when it was
    /// not (already closed, or never written).
    pub async fn fail_if_running(&self, id: Uuid, error: &str) -> Result<bool, CatalogError> {
        const SQL: &str = "UPDATE operations SET status = 'failed', error = $2, \
             finished_at = now() WHERE id = $1 AND status = 'running'";
        let error = super::without_nul(error);
        let updated = self.client().await?.execute(SQL, &[&id, &error]).await?;
        Ok(updated > 0)
    }

    /// Starts an audit-log entry with the id `id` (status `running`).
    pub async fn insert_operation(
        &self,
        id: Uuid,
        tenant: Option<&Tenant>,
        kind: OperationKind,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<(), CatalogError> {
        crate::tenant::check_document("detail", &detail).map_err(CatalogError::Invalid)?;
        const SQL: &str = "INSERT INTO operations (id, tenant_id, tenant_code, kind, status, actor, detail) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6)";
        let (tenant_id, code) = (tenant.map(|t| t.id), tenant.map(|t| t.code.as_str()));
        self.client()
            .await?
            .execute(
                SQL,
                &[&id, &tenant_id, &code, &kind.as_str(), &actor, &detail],
            )
            .await?;
        Ok(())
    }

    /// The audit-log entry with this id.
    pub async fn operation(&self, id: Uuid) -> Result<Option<OperationRow>, CatalogError> {
        const SQL: &str = "SELECT id, kind, status, tenant_code, actor, detail, error, started_at, \
             finished_at FROM operations WHERE id = $1";
        let Some(row) = self.client().await?.query_opt(SQL, &[&id]).await? else {
            return Ok(None);
        };
        let r = RowReader::new(&row, format!("operation {id}"));
        Ok(Some(OperationRow {
            id: r.get("id")?,
            kind: r.get::<&str>("kind")?.parse()?,
            status: r.get::<&str>("status")?.parse()?,
            tenant_code: r.get("tenant_code")?,
            actor: r.get("actor")?,
            detail: r.get("detail")?,
            error: r.get("error")?,
            started_at: r.get("started_at")?,
            finished_at: r.get("finished_at")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_round_trip() {
        for kind in [
            OperationKind::Create,
            OperationKind::Drop,
            OperationKind::Suspend,
            OperationKind::Resume,
            OperationKind::Reconcile,
            OperationKind::MigrateRun,
            OperationKind::RotatePassword,
        ] {
            assert_eq!(kind.as_str().parse::<OperationKind>(), Ok(kind));
            assert_eq!(serde_json::json!(kind), kind.as_str());
        }
        for status in [
            OperationStatus::Running,
            OperationStatus::Succeeded,
            OperationStatus::Failed,
        ] {
            assert_eq!(status.as_str().parse::<OperationStatus>(), Ok(status));
        }
        assert_eq!(OperationKind::MigrateRun.as_str(), "migrate_run");
    }

    #[test]
    fn an_unknown_stored_value_is_an_error() {
        let err = "rebalance".parse::<OperationKind>().unwrap_err();
        assert_eq!(
            err,
            UnknownValue {
                column: "operations.kind",
                value: "rebalance".to_owned()
            }
        );
        assert!(err.to_string().contains("\"rebalance\""));
        assert!("paused".parse::<OperationStatus>().is_err());
    }
}
