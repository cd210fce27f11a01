//! `migrate status`: the schema version of AUTH, SHARED, the template and
//! every tenant, read from the catalog (tenant databases are not opened),
//! and with `verify` every tenant database's own history compared with the
//! files and the catalog.

use std::time::Instant;

use futures::{StreamExt, stream};
use serde::Serialize;

use super::report::elapsed_ms;
use super::{Fleet, FleetError};
use crate::catalog::TenantFilter;
use crate::migrate::{Drift, SchemaSet, history_version, read_history};
use crate::tenant::{Tenant, TenantCode, TenantStatus};

/// Templates on the server (sealed or not) with this deployment's prefix.
const TEMPLATES_SQL: &str = "SELECT datname, datistemplate AND NOT datallowconn \
     FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname";

/// Where a database stands against the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// At the newest version.
    Current,
    /// Migrations are pending.
    Pending,
    /// Its last migration failed: refused until a run succeeds.
    Quarantined,
    /// The history disagrees with the files or the catalog.
    Divergent,
    /// Newer than the files (the files are older than the database).
    Ahead,
    /// Verify could not open it.
    Unreachable,
}

/// AUTH or SHARED.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    /// Which set.
    pub schema: SchemaSet,
    /// The database.
    pub database: String,
    /// Newest applied version.
    pub version: Option<i32>,
    /// Versions not applied.
    pub pending: Vec<i32>,
    /// Drift from the files.
    pub drift: Vec<Drift>,
    /// Summary state.
    pub state: TenantState,
}

/// The template of the tenant set.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateStatus {
    /// Its name (from the set's fingerprint).
    pub name: String,
    /// Whether it exists, sealed: it is then at the set's newest version.
    pub present: bool,
    /// Its version (the set's newest when present).
    pub version: Option<i32>,
    /// Templates of other sets still on the server.
    pub stale: Vec<String>,
}

/// One tenant.
#[derive(Debug, Clone, Serialize)]
pub struct TenantMigrationStatus {
    /// The tenant.
    pub tenant: TenantCode,
    /// Its life-cycle status.
    pub status: TenantStatus,
    /// Its database.
    pub database: String,
    /// Version recorded in the catalog.
    pub version: Option<i32>,
    /// Versions not applied.
    pub pending: Vec<i32>,
    /// Summary state.
    pub state: TenantState,
    /// Quarantined after a failed migration.
    pub quarantined: bool,
    /// The last migration error.
    pub migration_error: Option<String>,
    /// Drift found by verify.
    pub drift: Vec<Drift>,
    /// Why verify could not read it.
    pub error: Option<String>,
}

/// The fleet's schema status.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    /// Whether tenant databases were opened and checked.
    pub verified: bool,
    /// Newest version of the tenant set.
    pub latest: i32,
    /// AUTH and SHARED.
    pub databases: Vec<DatabaseStatus>,
    /// The template.
    pub template: TemplateStatus,
    /// Every live tenant, by code.
    pub tenants: Vec<TenantMigrationStatus>,
    /// Tenants per state.
    pub counts: std::collections::BTreeMap<String, usize>,
    /// Time taken.
    pub elapsed_ms: u64,
}

impl FleetStatus {
    /// Tenants in `state`.
    pub fn count(&self, state: TenantState) -> usize {
        self.tenants.iter().filter(|t| t.state == state).count()
    }
}

impl Fleet {
    /// The fleet's status from the catalog; with `verify`, every tenant
    /// database's history is read too (at most `TENANTD_MIGRATE_CONNECTIONS` at once).
    #[tracing::instrument(skip(self))]
    pub async fn status(&self, verify: bool) -> Result<FleetStatus, FleetError> {
        let start = Instant::now();
        let databases = vec![
            self.database_status(SchemaSet::Auth).await?,
            self.database_status(SchemaSet::Shared).await?,
        ];
        let template = self.template_status().await?;
        let live = self.catalog.list(&TenantFilter::default()).await?;
        let mut tenants: Vec<TenantMigrationStatus> =
            live.iter().map(|t| self.catalog_status(t)).collect();
        if verify {
            let n = self.connections;
            // Owned items (not borrowed pairs) keep the future `Send` for
            // callers that spawn it (HTTP handlers).
            let live = &live;
            tenants = stream::iter(tenants.into_iter().enumerate())
                .map(|(i, mut status)| async move {
                    self.verify_tenant(&live[i], &mut status).await;
                    status
                })
                .buffered(n)
                .collect()
                .await;
        }
        let mut counts = std::collections::BTreeMap::new();
        for t in &tenants {
            let key = serde_json::to_value(t.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *counts.entry(key).or_insert(0) += 1;
        }
        Ok(FleetStatus {
            verified: verify,
            latest: self.tenant.latest_version(),
            databases,
            template,
            tenants,
            counts,
            elapsed_ms: elapsed_ms(start),
        })
    }

    async fn database_status(&self, schema: SchemaSet) -> Result<DatabaseStatus, FleetError> {
        let set = self.set(schema);
        let database = self.database_of(schema).to_owned();
        let history = match schema {
            SchemaSet::Auth => {
                set.history(&*self.catalog.client().await?, &database)
                    .await?
            }
            _ => {
                let client = self.server.connect(&database).await?;
                set.history(&client, &database).await?
            }
        };
        let version = history_version(&history);
        let pending = set.pending_in(&history);
        let drift = set.drift(&history);
        let state = state_of(&drift, false, version, set.latest_version(), &pending);
        Ok(DatabaseStatus {
            schema,
            database,
            version,
            pending,
            drift,
            state,
        })
    }

    /// The template of the current tenant set, and stale ones.
    pub(super) async fn template_status(&self) -> Result<TemplateStatus, FleetError> {
        let name = self.templates.name();
        let client = self.catalog.client().await?;
        let rows = client
            .query(TEMPLATES_SQL, &[&self.names.template_prefix()])
            .await
            .map_err(crate::catalog::CatalogError::from)?;
        let present = rows
            .iter()
            .any(|r| r.get::<_, String>(0) == name && r.get::<_, bool>(1));
        let stale = rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|n| *n != name)
            .collect();
        Ok(TemplateStatus {
            version: present.then(|| self.tenant.latest_version()),
            name,
            present,
            stale,
        })
    }

    fn catalog_status(&self, tenant: &Tenant) -> TenantMigrationStatus {
        let pending = self.tenant.pending_after(tenant.schema_version);
        let state = state_of(
            &[],
            tenant.quarantined,
            tenant.schema_version,
            self.tenant.latest_version(),
            &pending,
        );
        TenantMigrationStatus {
            tenant: tenant.code.clone(),
            status: tenant.status,
            database: tenant.database_name.clone(),
            version: tenant.schema_version,
            pending,
            state,
            quarantined: tenant.quarantined,
            migration_error: tenant.migration_error.clone(),
            drift: Vec::new(),
            error: None,
        }
    }

    /// Reads the tenant's own history and records drift in `status`.
    async fn verify_tenant(&self, tenant: &Tenant, status: &mut TenantMigrationStatus) {
        let history = match self.server.connect(&tenant.database_name).await {
            Ok(client) => read_history(&client)
                .await
                .map_err(|e| crate::pg_error::describe(&e)),
            Err(e) => Err(e.to_string()),
        };
        let history = match history {
            Ok(history) => history,
            Err(error) => {
                status.state = TenantState::Unreachable;
                status.error = Some(error);
                return;
            }
        };
        let mut drift = self.tenant.drift(&history);
        let database = history_version(&history);
        if database != tenant.schema_version {
            drift.push(Drift::CatalogVersion {
                catalog: tenant.schema_version,
                database,
            });
        }
        status.pending = self.tenant.pending_in(&history);
        status.state = state_of(
            &drift,
            tenant.quarantined,
            database,
            self.tenant.latest_version(),
            &status.pending,
        );
        status.drift = drift;
    }
}

fn state_of(
    drift: &[Drift],
    quarantined: bool,
    version: Option<i32>,
    latest: i32,
    pending: &[i32],
) -> TenantState {
    if !drift.is_empty() {
        TenantState::Divergent
    } else if quarantined {
        TenantState::Quarantined
    } else if version.is_some_and(|v| v > latest) {
        TenantState::Ahead
    } else if !pending.is_empty() {
        TenantState::Pending
    } else {
        TenantState::Current
    }
}
