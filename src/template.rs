//! The template database: a sealed copy of the newest tenant schema that
//! provisioning clones (`CREATE DATABASE … TEMPLATE … STRATEGY WAL_LOG`).
//!
//! A template is named after the fingerprint of the tenant migration set, so
//! a new set builds a new template. It is built under a private name, then
//! renamed and sealed (`IS_TEMPLATE true`, `ALLOW_CONNECTIONS false`): no
//! stray connection can make a clone fail, and a half-built template is never
//! cloned. Its objects belong to a NOLOGIN role, `<prefix>__template_owner`
//! (the migrations run as it): a clone hands them to its tenant's role with
//! one `REASSIGN OWNED`, while the database itself stays tenantd's (see
//! `provision::shape`). The template database is owned by the admin role, so
//! that `REASSIGN OWNED` in a clone never touches a shared object.

use crate::error_kind::{Classify, ErrorKind};
use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Client;

use crate::catalog::{Catalog, CatalogError, GlobalLock};
use crate::ident::quote_ident;
use crate::migrate::{MigrateError, MigrationSet};
use crate::names::Names;
use crate::server::{Server, ServerError};

/// The template could not be built or found.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The catalog lock could not be taken.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A connection failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The tenant migrations failed on the template.
    #[error("building the template database failed: {0}")]
    Migrate(#[from] MigrateError),
    /// A DDL statement failed.
    #[error("template upkeep failed: {}", crate::pg_error::describe(.0))]
    Db(#[from] tokio_postgres::Error),
}

impl Classify for TemplateError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Catalog(e) => e.kind(),
            Self::Server(e) => e.kind(),
            Self::Migrate(e) => e.kind(),
            Self::Db(e) => e.kind(),
        }
    }
}

/// Keeps the template of the current tenant migration set.
#[derive(Clone)]
pub struct TemplateKeeper {
    server: Server,
    admin: Pool,
    catalog: Catalog,
    names: Names,
    set: Arc<MigrationSet>,
}

impl TemplateKeeper {
    /// A keeper building templates of `set`.
    pub fn new(
        server: Server,
        admin: Pool,
        catalog: Catalog,
        names: Names,
        set: Arc<MigrationSet>,
    ) -> Self {
        Self {
            server,
            admin,
            catalog,
            names,
            set,
        }
    }

    /// The template's name for the current set.
    pub fn name(&self) -> String {
        self.names.template(self.set.fingerprint())
    }

    /// Returns the sealed template of the current set, building it first if
    /// needed. Returns whether it was built by this call.
    pub async fn ensure(&self) -> Result<(String, bool), TemplateError> {
        let name = self.name();
        let admin = self
            .server
            .checkout(&self.admin, self.server.maintenance_db())
            .await?;
        if is_sealed(&admin, &name).await? {
            return Ok((name, false));
        }
        let lock = self.catalog.lock_global(GlobalLock::Template).await?;
        let built = if is_sealed(&admin, &name).await? {
            false
        } else {
            self.build(&admin, &name).await?;
            true
        };
        self.drop_stale(&admin, &name).await?;
        lock.release().await?;
        Ok((name, built))
    }

    /// Builds the template of the current set: from the newest sealed
    /// template of an older set when its history is a prefix of the current
    /// set (only the new migrations run: a release with one migration builds
    /// its template in a fraction of the time), else from `template0`.
    async fn build(&self, admin: &Object, name: &str) -> Result<(), TemplateError> {
        let build = self.names.template_build(self.set.fingerprint());
        tracing::info!(template = name, "building the tenant template database");
        create_nologin_role(admin, &self.names.template_owner()).await?;
        if let Some(previous) = self.previous_template(admin, name).await? {
            match self.clone_and_migrate(admin, &build, &previous).await {
                Ok(()) => return self.seal(admin, &build, name).await,
                Err(TemplateError::Migrate(error)) => tracing::warn!(
                    %previous, %error,
                    "the older template does not lead to the current set; building from scratch"
                ),
                Err(error) => return Err(error),
            }
        }
        self.clone_and_migrate(admin, &build, "template0").await?;
        self.seal(admin, &build, name).await
    }

    /// The newest sealed template of another set, if any.
    async fn previous_template(
        &self,
        admin: &Object,
        current: &str,
    ) -> Result<Option<String>, TemplateError> {
        const SQL: &str = "SELECT datname FROM pg_database WHERE starts_with(datname, $1) \
             AND datname <> $2 AND datistemplate AND NOT datallowconn ORDER BY oid DESC LIMIT 1";
        let row = admin
            .query_opt(SQL, &[&self.names.template_scheme_prefix(), &current])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// (Re)creates `build` as a copy of `source` and applies the pending migrations.
    async fn clone_and_migrate(
        &self,
        admin: &Object,
        build: &str,
        source: &str,
    ) -> Result<(), TemplateError> {
        let build_q = quote_ident(build);
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {build_q} WITH (FORCE)"))
            .await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {build_q} TEMPLATE {} STRATEGY WAL_LOG",
                quote_ident(source)
            ))
            .await?;
        admin
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {build_q} FROM PUBLIC"
            ))
            .await?;
        let owner = self.names.template_owner();
        let mut client = self.server.connect(build).await?;
        client
            .batch_execute(&format!(
                "ALTER SCHEMA public OWNER TO {}",
                quote_ident(&owner)
            ))
            .await?;
        self.set.apply(&mut client, build, Some(&owner)).await?;
        Ok(())
    }

    /// Renames `build` to `name` and seals it.
    async fn seal(&self, admin: &Object, build: &str, name: &str) -> Result<(), TemplateError> {
        let build_q = quote_ident(build);
        let name_q = quote_ident(name);
        admin
            .batch_execute(&format!("ALTER DATABASE {build_q} RENAME TO {name_q}"))
            .await?;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name_q} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            ))
            .await?;
        Ok(())
    }

    /// Drops templates of older sets and builds left by an interrupted process.
    async fn drop_stale(&self, admin: &Object, current: &str) -> Result<(), TemplateError> {
        let rows = admin
            .query(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) OR starts_with(datname, $2)",
                &[&self.names.template_prefix(), &self.names.template_build_prefix()],
            )
            .await?;
        for row in rows {
            let name: String = row.get(0);
            if name == current {
                continue;
            }
            match drop_database(admin, &name).await {
                Ok(()) => tracing::info!(database = %name, "dropped a stale template database"),
                Err(e) if crate::pg_error::is_object_in_use(&e) => {
                    tracing::warn!(database = %name, "stale template still in use; left for the next run");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Drops the database `name` if it exists, template or not: unseals it
/// first (PostgreSQL refuses to drop a template) and ends its sessions. The
/// one way tenantd drops a database that may be a template.
pub(crate) async fn drop_database(admin: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    let quoted = quote_ident(name);
    // Two round trips: DROP DATABASE cannot run in a multi-statement batch.
    match admin
        .batch_execute(&format!("ALTER DATABASE {quoted} WITH IS_TEMPLATE false"))
        .await
    {
        Err(e) if !crate::pg_error::is_undefined_database(&e) => return Err(e),
        _ => {}
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .await
}

/// Creates the NOLOGIN role `name` unless it exists (a concurrent creator's
/// "already exists" counts as success).
async fn create_nologin_role(admin: &Object, name: &str) -> Result<(), tokio_postgres::Error> {
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    match admin
        .batch_execute(&format!("CREATE ROLE {} NOLOGIN", quote_ident(name)))
        .await
    {
        Err(e) if !crate::pg_error::is_duplicate_object(&e) => Err(e),
        _ => Ok(()),
    }
}

async fn is_sealed(admin: &Object, name: &str) -> Result<bool, tokio_postgres::Error> {
    let row = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate AND NOT datallowconn",
            &[&name],
        )
        .await?;
    Ok(row.is_some())
}
