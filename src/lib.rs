//! # tenantd
//!
//! A database-per-tenant orchestrator for PostgreSQL. Every société (tenant)
//! gets its own database and role; beside them live AUTH (identity and the
//! tenant catalog) and SHARED (reference data every tenant reads). tenantd
//! provisions them, runs each schema set's migrations and hands out
//! connections routed by société.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tenantd::Error> {
//! use tenantd::{NewTenant, Orchestrator, Settings, TenantCode};
//! let orchestrator = Orchestrator::connect(Settings::from_env()?).await?;
//! orchestrator.init().await?;
//! let code = TenantCode::parse("acme")?;
//! orchestrator.create_tenant(NewTenant::new(code.clone(), "Acme Steel")).await?;
//! let client = orchestrator.tenant_client(&code).await?;
//! client.execute("INSERT INTO clients (code, name) VALUES ('C1', 'First client')", &[]).await?;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - [`config`]: settings from the environment, validated once.
//! - [`devcluster`]: the embedded PostgreSQL cluster used when `DATABASE_URL` is unset.
//! - [`server`]: admin and tenant connections to the PostgreSQL server.
//! - [`pg_error`]: PostgreSQL errors: descriptions, SQLSTATE decisions, the transient rule, backoff.
//! - [`names`]: names of the databases and roles tenantd creates.
//! - [`tenant`]: the tenant as a domain value (code, region, plan, status).
//! - [`catalog`]: every read and write of the AUTH catalog, and advisory locks.
//! - [`migrate`]: the three migration sets and refinery runs.
//! - [`fleet`]: fleet migrations: status, verify and runs across every tenant database.
//! - [`template`]: the sealed template database that provisioning clones.
//! - [`provision`]: the tenant life cycle as a persisted state machine.
//! - [`reconcile`]: finishing or undoing interrupted life-cycle work.
//! - [`pool`]: per-tenant connection pools, the global connection budget, routing.
//! - [`notify`]: catalog change notifications between tenantd processes.
//! - [`orchestrator`]: [`Orchestrator`], the public entry point.
//! - [`legacy`]: the batch steps that split the legacy monolith.
//! - `purge` (feature `testing`): dropping what a benchmark or test made under a throw-away prefix.
//! - [`cli`]: the `tenantd` command line (parsing and output only).
//! - [`apikey`]: API keys as values (scope, generation, SHA-256 hashing).
//! - [`http`]: the HTTP API (`tenantd serve`): router, auth, problem+json errors, OpenAPI.

pub mod apikey;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod devcluster;
pub mod error;
pub mod error_kind;
pub mod fleet;
pub mod http;
pub mod ident;
pub mod legacy;
pub mod migrate;
pub mod names;
pub mod notify;
pub mod orchestrator;
pub(crate) mod pg_error;
pub mod pool;
pub mod provision;
#[cfg(feature = "testing")]
pub mod purge;
pub mod reconcile;
pub mod secret;
pub mod server;
pub mod template;
pub mod tenant;

pub use apikey::{ApiKeyRecord, ApiKeyScope, IssuedApiKey};
pub use catalog::{FleetRunRow, OperationRow, TenantFilter};
pub use config::Settings;
pub use error::{Error, ErrorKind};
pub use orchestrator::{InitReport, Orchestrator, TenantConnection, TenantConnectionCounts};
pub use pool::{PoolStats, TenantClient};
#[cfg(feature = "testing")]
pub use provision::CrashPoint;
pub use provision::ProvisionPath;
pub use reconcile::ReconcileReport;
pub use tenant::{NewTenant, Plan, Region, Tenant, TenantCode, TenantStatus};
