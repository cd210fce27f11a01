//! The integration tests, as one test binary (one link instead of fifteen):
//! one module per area, plus the shared harness — [`common`] gives every test
//! its own name prefix on the real PostgreSQL server, [`http_support`] runs the
//! real HTTP server over it. Run one area with e.g. `cargo test --test it pool::`.

mod common;
mod http_support;

mod clean_connections;
mod cli;
mod crash;
mod devcluster;
mod fleet;
mod hostile_tenant;
mod http_auth;
mod http_credentials;
mod http_lifecycle;
mod http_limits;
mod http_migrations;
mod http_requests;
mod http_sql;
mod isolation;
mod layout;
mod legacy;
mod lifecycle;
mod logging;
mod pool;
mod provisioning;
mod restart;
mod robustness;
