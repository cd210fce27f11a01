//! Provisioning benchmark: creates tenants by the template path (clone of the
//! sealed template) and by the create-then-migrate path, interleaved so both
//! see the same machine noise, and prints p50/p95 per path and the speedup.
//!
//! ```text
//! cargo bench --bench bench_provision -- [--tenants 50]
//! ```
//! Uses `DATABASE_URL` (default: the local server) and a private name prefix
//! whose databases and roles are dropped at the end, also after an error.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use support::ms;
use tenantd::{NewTenant, Orchestrator, ProvisionPath, TenantCode};

#[tokio::main]
async fn main() -> Result<()> {
    support::init_tracing();
    let tenants: usize = std::env::args()
        .skip_while(|a| a != "--tenants")
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("--tenants takes a number")?
        .unwrap_or(50);
    let url = support::server_url("DATABASE_URL");
    let prefix = support::prefix("bprov");
    let outcome = run(&url, &prefix, tenants).await;
    support::purge(&url, &prefix).await;
    outcome
}

async fn run(url: &str, prefix: &str, tenants: usize) -> Result<()> {
    let orchestrator = Orchestrator::connect(support::settings(url, prefix, &[])?).await?;
    orchestrator.init().await?;
    // Warm-up of both paths (first connection, caches), not measured.
    create(&orchestrator, "warm_t", ProvisionPath::Template).await?;
    create(&orchestrator, "warm_m", ProvisionPath::Migrate).await?;
    let (mut template, mut migrate) = (Vec::new(), Vec::new());
    for i in 0..tenants {
        template.push(create(&orchestrator, &format!("t{i:04}"), ProvisionPath::Template).await?);
        migrate.push(create(&orchestrator, &format!("m{i:04}"), ProvisionPath::Migrate).await?);
    }
    let at = |samples: &[Duration], q| support::percentile(samples, q).unwrap_or_default();
    let (t50, t95) = (at(&template, 0.5), at(&template, 0.95));
    let (m50, m95) = (at(&migrate, 0.5), at(&migrate, 0.95));
    println!("tenants per path: {tenants} (interleaved, one at a time)");
    println!("{:<22} {:>9} {:>9}", "path", "p50 ms", "p95 ms");
    println!("{:<22} {:>9.1} {:>9.1}", "template clone", ms(t50), ms(t95));
    println!(
        "{:<22} {:>9.1} {:>9.1}",
        "create + migrate",
        ms(m50),
        ms(m95)
    );
    println!(
        "RESULT provision_p50_ms={:.1} migrate_path_p50_ms={:.1} speedup={:.2}",
        ms(t50),
        ms(m50),
        m50.as_secs_f64() / t50.as_secs_f64()
    );
    orchestrator.close();
    Ok(())
}

async fn create(orchestrator: &Orchestrator, code: &str, path: ProvisionPath) -> Result<Duration> {
    let new = NewTenant::new(TenantCode::parse(code)?, code);
    let started = Instant::now();
    orchestrator.create_tenant_via(new, path, "bench").await?;
    Ok(started.elapsed())
}
