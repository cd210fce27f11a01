//! Connection pools of tenant databases, each connected as the tenant's own
//! role, and the read-only pool of the SHARED database.
//!
//! A simple map of one lazily-filled deadpool pool per tenant; pools of a
//! tenant that is suspended or dropped are closed through [`TenantPools::close`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;

use crate::server::{self, ServerError};
use crate::tenant::TenantCode;

/// The per-tenant pools of one process.
#[derive(Clone, Default)]
pub struct TenantPools {
    pools: Arc<Mutex<HashMap<TenantCode, Pool>>>,
}

impl TenantPools {
    /// The tenant's pool, built with `config` on first use.
    pub fn get_or_create(
        &self,
        code: &TenantCode,
        config: impl FnOnce() -> tokio_postgres::Config,
        max_size: usize,
    ) -> Result<Pool, ServerError> {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pool) = pools.get(code) {
            return Ok(pool.clone());
        }
        let pool = server::pool(config(), max_size)?;
        pools.insert(code.clone(), pool.clone());
        Ok(pool)
    }

    /// Closes and forgets the tenant's pool.
    pub fn close(&self, code: &TenantCode) {
        let removed = self
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(code);
        if let Some(pool) = removed {
            pool.close();
        }
    }

    /// Closes every pool.
    pub fn close_all(&self) {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (_, pool) in pools.drain() {
            pool.close();
        }
    }
}
