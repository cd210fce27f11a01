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
//! ## Public surface
//! [`Orchestrator`] is the API: every operation of tenantd is one of its
//! methods, and the types it takes and returns are re-exported here. Beside
//! it, four public modules: [`config`] (the settings), [`fleet`] (the types
//! of fleet migrations, reached through [`Orchestrator::fleet`]), [`legacy`]
//! (the batch steps of the monolith split) and [`http`] (the server of
//! `tenantd serve`), plus [`cli`] for the binary. Nothing outside the crate
//! reaches AUTH, the server or the pools except through the orchestrator.
//!
//! ## Layout
//! Modules depend on the ones listed before them, never the other way round
//! (a test checks that no module imports one that imports it back).
//! - `error_kind`: [`ErrorKind`] and [`Classify`], how each module's error says its class.
//! - `pg_error`: PostgreSQL errors: descriptions, SQLSTATE decisions, the transient rule, backoff.
//! - `ident`: validating and quoting SQL identifiers.
//! - `secret`: the master secret and what is derived from it (role passwords, hashes).
//! - `tenant`: the tenant as a domain value (code, region, plan, status).
//! - [`config`]: settings from the environment, validated once.
//! - `names`: names of the databases and roles tenantd creates.
//! - `apikey`: API keys as values (scope, generation, SHA-256 hashing).
//! - `devcluster`: the embedded PostgreSQL cluster used when `DATABASE_URL` is unset.
//! - `server`: admin connections and pools to the PostgreSQL server.
//! - `notify`: catalog change notifications between tenantd processes.
//! - `catalog`: every read and write of the AUTH catalog, and advisory locks.
//! - `migrate`: the three migration sets and refinery runs.
//! - `template`: the sealed template database that provisioning clones.
//! - `provision`: the tenant life cycle as a persisted state machine.
//! - `reconcile`: finishing or undoing interrupted life-cycle work.
//! - `pool`: per-tenant connection pools, the global connection budget, routing.
//! - [`fleet`]: fleet migrations: status, verify and runs across every tenant database.
//! - `error`: [`Error`], what an orchestrator call fails with.
//! - `orchestrator`: [`Orchestrator`], the public entry point.
//! - [`legacy`]: the batch steps that split the legacy monolith.
//! - [`http`]: the HTTP API (`tenantd serve`): router, auth, problem+json errors, OpenAPI.
//! - [`cli`]: the `tenantd` command line (parsing and output only).
//! - `purge` (feature `testing`): dropping what a benchmark or test made under a throw-away prefix.

mod apikey;
mod catalog;
pub mod cli;
pub mod config;
mod devcluster;
mod error;
mod error_kind;
pub mod fleet;
pub mod http;
mod ident;
pub mod legacy;
mod migrate;
mod names;
mod notify;
mod orchestrator;
mod pg_error;
mod pool;
mod provision;
#[cfg(feature = "testing")]
pub mod purge;
mod reconcile;
mod secret;
mod server;
mod template;
mod tenant;

pub use apikey::{ApiKeyError, ApiKeyRecord, ApiKeyScope, IssuedApiKey, hash_key};
pub use catalog::{
    CatalogError, FleetRunRow, OperationKind, OperationRow, OperationStatus, TenantFilter,
    TenantPatch, UnknownValue,
};
pub use config::{ConfigError, Settings};
pub use devcluster::DevClusterError;
pub use error::Error;
pub use error_kind::{Classify, ErrorKind};
pub use ident::quote_ident;
pub use migrate::{MigrateError, SchemaSet};
pub use notify::APPLICATION_NAME as LISTENER_APPLICATION_NAME;
pub use orchestrator::{InitReport, Orchestrator, TenantConnection, TenantConnectionCounts};
pub use pool::{
    PoolStats, TenantClient, TenantConnections, WaitBucket, WaitHistogram, WaitReasons,
};
#[cfg(feature = "testing")]
pub use provision::CrashPoint;
pub use provision::{ProvisionError, ProvisionPath};
pub use reconcile::{BrokenTenant, DriftRepair, ReconcileReport};
/// Whether a role's stored password verifier accepts a password (tests
/// check rotations on servers that trust local connections).
#[cfg(feature = "testing")]
pub use secret::verifier_matches;
pub use server::ServerError;
pub use template::TemplateError;
pub use tenant::{NewTenant, Plan, Region, Tenant, TenantCode, TenantError, TenantStatus};
