//! Provisioning benchmark: creates tenants by the template path (clone of the
//! sealed template) and by the create-then-migrate path, interleaved so both
//! see the same machine noise, and prints p50/p95 per path and the speedup.
//!
//! ```text
//! cargo run --release --bin bench_provision -- [--tenants 50]
//! ```
//! Uses `DATABASE_URL` (default: the local server) and a private name prefix
//! whose databases and roles are dropped at the end, also after an error.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tenantd::{NewTenant, Orchestrator, ProvisionPath, Settings, TenantCode};
use tokio_postgres::NoTls;

#[tokio::main]
async fn main() -> Result<()> {
    let tenants: usize = std::env::args()
        .skip_while(|a| a != "--tenants")
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("--tenants takes a number")?
        .unwrap_or(50);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let prefix = format!("bprov_{:06x}", rand::random::<u32>() & 0xff_ffff);
    let outcome = run(&url, &prefix, tenants).await;
    drop_prefixed(&url, &prefix).await.context("cleanup")?;
    outcome
}

async fn run(url: &str, prefix: &str, tenants: usize) -> Result<()> {
    let vars = [
        ("DATABASE_URL", url.to_owned()),
        (
            "TENANTD_SECRET",
            "bench-secret-0123456789abcdef0123456789".to_owned(),
        ),
        ("DB_AUTH_NAME", format!("{prefix}_auth")),
        ("DB_SHARED_NAME", format!("{prefix}_shared")),
        ("DB_TENANT_PREFIX", prefix.to_owned()),
    ];
    let settings =
        Settings::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?;
    let orchestrator = Orchestrator::connect(settings).await?;
    orchestrator.init().await?;
    // Warm-up of both paths (first connection, caches), not measured.
    create(&orchestrator, "warm_t", ProvisionPath::Template).await?;
    create(&orchestrator, "warm_m", ProvisionPath::Migrate).await?;
    let (mut template, mut migrate) = (Vec::new(), Vec::new());
    for i in 0..tenants {
        template.push(create(&orchestrator, &format!("t{i:04}"), ProvisionPath::Template).await?);
        migrate.push(create(&orchestrator, &format!("m{i:04}"), ProvisionPath::Migrate).await?);
    }
    let (t50, t95) = (percentile(&mut template, 50), percentile(&mut template, 95));
    let (m50, m95) = (percentile(&mut migrate, 50), percentile(&mut migrate, 95));
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

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    let index = ((samples.len() - 1) * p).div_ceil(100);
    samples[index.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Drops every database and role named `<prefix>_…` (templates unsealed first).
async fn drop_prefixed(url: &str, prefix: &str) -> Result<()> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    let purged = tenantd::purge::purge_prefix(&client, prefix).await?;
    for failure in purged.failures {
        eprintln!("cleanup: cannot drop {failure}");
    }
    Ok(())
}
