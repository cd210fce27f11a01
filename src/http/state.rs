//! [`AppState`]: the handles every handler shares — the orchestrator, the
//! HTTP settings, the API key and JWT verifiers' caches, the per-tenant rate
//! limiters, the failed-authentication limiter, the idempotency store and the fleet runs started over HTTP. Callers never see a lock.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use uuid::Uuid;

use super::auth_failures::AuthFailures;
use super::error::ApiError;
use super::idempotency::IdempotencyStore;
use super::ratelimit::RateLimits;
use super::runs::RunRegistry;
use crate::Orchestrator;
use crate::apikey::ApiKeyRecord;
use crate::config::HttpSettings;
use crate::tenant::{Plan, TenantCode};

/// Verified keys kept in memory at most.
const KEY_CACHE_CAPACITY: u64 = 10_000;
/// Tenant ids (from JWTs) resolved to codes kept in memory at most.
const TENANT_ID_CACHE_CAPACITY: u64 = 100_000;

/// Shared state of the HTTP API.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    orchestrator: Orchestrator,
    settings: HttpSettings,
    keys: Cache<[u8; 32], Arc<ApiKeyRecord>>,
    tenant_ids: Cache<Uuid, (TenantCode, Plan)>,
    limits: RateLimits,
    auth_failures: AuthFailures,
    idempotency: IdempotencyStore,
    runs: RunRegistry,
}

impl AppState {
    /// State over `orchestrator` with these settings.
    pub fn new(orchestrator: Orchestrator, settings: HttpSettings) -> Self {
        let ttl = Duration::from_secs(settings.auth_cache_secs);
        Self {
            inner: Arc::new(Inner {
                orchestrator,
                keys: Cache::builder()
                    .max_capacity(KEY_CACHE_CAPACITY)
                    .time_to_live(ttl)
                    .build(),
                tenant_ids: Cache::builder()
                    .max_capacity(TENANT_ID_CACHE_CAPACITY)
                    .time_to_live(ttl)
                    .build(),
                limits: RateLimits::new(settings.rate_per_plan),
                auth_failures: AuthFailures::new(settings.auth_failures_per_min),
                idempotency: IdempotencyStore::default(),
                runs: RunRegistry::default(),
                settings,
            }),
        }
    }

    /// The orchestrator.
    pub fn orchestrator(&self) -> &Orchestrator {
        &self.inner.orchestrator
    }

    /// The HTTP settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.inner.settings
    }

    /// The per-tenant rate limiters.
    pub fn limits(&self) -> &RateLimits {
        &self.inner.limits
    }

    /// Failed authentications per client address.
    pub fn auth_failures(&self) -> &AuthFailures {
        &self.inner.auth_failures
    }

    /// The idempotency store of `POST /v1/tenants`.
    pub fn idempotency(&self) -> &IdempotencyStore {
        &self.inner.idempotency
    }

    /// The fleet runs started over HTTP by this process.
    pub fn runs(&self) -> &RunRegistry {
        &self.inner.runs
    }

    /// The unrevoked key with this hash, from the cache or the catalog.
    pub async fn api_key(&self, hash: [u8; 32]) -> Result<Option<Arc<ApiKeyRecord>>, ApiError> {
        if let Some(key) = self.inner.keys.get(&hash).await {
            return Ok(Some(key));
        }
        let found = self.orchestrator().api_key_by_hash(&hash).await?;
        let Some(key) = found else {
            return Ok(None);
        };
        let key = Arc::new(key);
        self.inner.keys.insert(hash, key.clone()).await;
        Ok(Some(key))
    }

    /// Forgets a cached key (after a revocation).
    pub async fn forget_key(&self, hash: &[u8]) {
        if let Ok(hash) = <[u8; 32]>::try_from(hash) {
            self.inner.keys.invalidate(&hash).await;
        }
    }

    /// The code and plan of the live tenant with this id.
    pub async fn tenant_by_id(&self, id: Uuid) -> Result<Option<(TenantCode, Plan)>, ApiError> {
        if let Some(found) = self.inner.tenant_ids.get(&id).await {
            return Ok(Some(found));
        }
        let tenant = self.orchestrator().tenant_by_id(id).await?;
        let Some(tenant) = tenant else {
            return Ok(None);
        };
        let found = (tenant.code, tenant.plan);
        self.inner.tenant_ids.insert(id, found.clone()).await;
        Ok(Some(found))
    }
}
