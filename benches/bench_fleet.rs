//! Benchmark of fleet migrations: 200 tenant databases of the shipped schema
//! get one migration (columns, an index, a table), by `tenantd migrate run`
//! (in-process, concurrent) and by the baseline — a sequential `psql -f` loop,
//! one psql process per database — over fresh copies of the same databases.
//! Then the fleet grows to 1,000 tenants and `migrate status` (catalog only)
//! and `migrate status --verify` (every database opened) are timed.
//!
//! Run: `cargo bench --bench bench_fleet` (PostgreSQL from
//! `BENCH_DATABASE_URL`, default the local server). Everything it creates
//! carries a private prefix and is dropped at the end, also on error.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, stream};
use support::{connect_url as connect, db_url, ms, secs};
use tenantd::fleet::{Outcome, RunObserver, RunOptions, TenantResult};
use tenantd::{NewTenant, Orchestrator, Settings, TenantCode};

/// Tenants migrated by both methods (`BENCH_TENANTS` overrides, for a smoke run).
const MIGRATED: usize = 200;
/// Tenants in the fleet whose status is timed (`BENCH_FLEET` overrides).
const FLEET: usize = 1_000;
/// Tenants created at once (the provisioner holds two admin connections each).
const CREATE_CONCURRENCY: usize = 2;
/// The migration both methods apply.
const MIGRATION: &str = "\
ALTER TABLE articles ADD COLUMN surface_treatment text, ADD COLUMN fire_rating text;
CREATE INDEX articles_profile ON articles (profile);
CREATE TABLE article_certificates (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    article_id      bigint NOT NULL REFERENCES articles (id),
    certificate_ref text NOT NULL,
    issued_on       date,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX article_certificates_article ON article_certificates (article_id);
";

struct Bench {
    migrated: usize,
    fleet: usize,
    url: String,
    prefix: String,
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_tracing();
    let url = support::server_url("BENCH_DATABASE_URL");
    let prefix = support::prefix("bfl");
    let dir = std::env::temp_dir().join(format!("{prefix}_migrations"));
    let size = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let bench = Bench {
        migrated: size("BENCH_TENANTS", MIGRATED),
        fleet: size("BENCH_FLEET", FLEET),
        url,
        prefix,
        dir,
    };
    println!("bench_fleet: prefix {}, {} cores", bench.prefix, cores());
    let result = bench.run().await;
    bench.cleanup().await;
    result
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Bench {
    async fn run(&self) -> anyhow::Result<()> {
        copy_migrations(&self.dir)?;
        let v1 = Orchestrator::connect(self.settings()?).await?;
        v1.init().await?;
        let start = Instant::now();
        self.create_tenants(&v1, 0..self.migrated).await?;
        println!(
            "provisioned {} tenants in {:.1} s",
            self.migrated,
            secs(start.elapsed())
        );
        let copies = self.copy_databases().await?;

        std::fs::write(self.dir.join("tenant/V2__bench.sql"), MIGRATION)?;
        let file = self.dir.join("tenant/V2__bench.sql");
        // Neither method pays for the set-up's dirty pages: a DROP DATABASE
        // (the run drops the old template) forces a checkpoint.
        self.checkpoint().await?;
        let (psql_total, psql_each) = self.psql_loop(&copies, &file).await?;
        self.checkpoint().await?;
        let (tenantd_total, tenantd_each) = self.fleet_run().await?;
        let psql_tps = self.migrated as f64 / secs(psql_total);
        let tenantd_tps = self.migrated as f64 / secs(tenantd_total);
        report("psql -f loop", self.migrated, psql_total, &psql_each);
        report(
            "tenantd migrate run",
            self.migrated,
            tenantd_total,
            &tenantd_each,
        );

        let v2 = Orchestrator::connect(self.settings()?).await?;
        let start = Instant::now();
        self.create_tenants(&v2, self.migrated..self.fleet).await?;
        println!(
            "grew the fleet to {} tenants in {:.1} s",
            self.fleet,
            secs(start.elapsed())
        );
        let status = self.time_status(&v2, false, 5).await?;
        let verify = self.time_status(&v2, true, 3).await?;
        println!(
            "\ntenantd {tenantd_tps:.1} tenants/s vs psql loop {psql_tps:.1} tenants/s: {:.2}x",
            tenantd_tps / psql_tps
        );
        println!(
            "RESULT tenants={} tenantd_tps={tenantd_tps:.1} psql_loop_tps={psql_tps:.1} speedup={:.2} status_{fleet}_ms={} verify_{fleet}_ms={}",
            self.migrated,
            tenantd_tps / psql_tps,
            status.as_millis(),
            verify.as_millis(),
            fleet = self.fleet
        );
        Ok(())
    }

    fn settings(&self) -> anyhow::Result<Settings> {
        support::settings(
            &self.url,
            &self.prefix,
            &[("TENANTD_MIGRATIONS_DIR", self.dir.display().to_string())],
        )
    }

    async fn create_tenants(
        &self,
        orchestrator: &Orchestrator,
        range: std::ops::Range<usize>,
    ) -> anyhow::Result<()> {
        let results: Vec<_> = stream::iter(range)
            .map(|i| async move {
                let code = TenantCode::parse(&format!("s{i:04}"))?;
                orchestrator
                    .create_tenant(NewTenant::new(code, format!("Société {i}")))
                    .await
                    .map_err(anyhow::Error::from)
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .collect()
            .await;
        for result in results {
            result?;
        }
        Ok(())
    }

    async fn checkpoint(&self) -> anyhow::Result<()> {
        connect(&self.url)
            .await?
            .batch_execute("CHECKPOINT")
            .await?;
        Ok(())
    }

    /// Copies of the first tenants' databases for the psql baseline.
    async fn copy_databases(&self) -> anyhow::Result<Vec<String>> {
        let admin = connect(&self.url).await?;
        let mut copies = Vec::with_capacity(self.migrated);
        for i in 0..self.migrated {
            let source = format!("{}_s{i:04}", self.prefix);
            let copy = format!("{}__psql_{i:04}", self.prefix);
            admin
                .batch_execute(&format!(
                    "CREATE DATABASE {} TEMPLATE {} STRATEGY WAL_LOG",
                    support::quote_ident(&copy),
                    support::quote_ident(&source)
                ))
                .await
                .with_context(|| format!("copying {source}"))?;
            copies.push(copy);
        }
        Ok(copies)
    }

    /// The baseline: one `psql -1 -f` process per database, one after the other.
    async fn psql_loop(
        &self,
        copies: &[String],
        file: &Path,
    ) -> anyhow::Result<(Duration, Vec<Duration>)> {
        let start = Instant::now();
        let mut each = Vec::with_capacity(copies.len());
        for db in copies {
            let t = Instant::now();
            let status = tokio::process::Command::new("psql")
                .args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f"])
                .arg(file)
                .arg(db_url(&self.url, db)?)
                .status()
                .await
                .context("running psql")?;
            if !status.success() {
                bail!("psql failed on {db}: {status}");
            }
            each.push(t.elapsed());
        }
        Ok((start.elapsed(), each))
    }

    /// `tenantd migrate run` in-process, default concurrency.
    async fn fleet_run(&self) -> anyhow::Result<(Duration, Vec<Duration>)> {
        let start = Instant::now();
        let orchestrator = Orchestrator::connect(self.settings()?).await?;
        let collector = Collector::default();
        let summary = orchestrator
            .fleet()
            .run(&RunOptions::default(), &collector)
            .await?;
        let total = start.elapsed();
        if summary.tenants.migrated != self.migrated {
            bail!(
                "tenantd migrated {} tenants, expected {}: {summary:?}",
                summary.tenants.migrated,
                self.migrated
            );
        }
        println!(
            "tenantd: concurrency {}, template built: {}",
            orchestrator.fleet().concurrency(None),
            summary.template.as_ref().is_some_and(|t| t.built)
        );
        Ok((total, collector.take()))
    }

    async fn time_status(
        &self,
        orchestrator: &Orchestrator,
        verify: bool,
        rounds: usize,
    ) -> anyhow::Result<Duration> {
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            let status = orchestrator.fleet().status(verify).await?;
            times.push(start.elapsed());
            if status.tenants.len() != self.fleet {
                bail!(
                    "status saw {} tenants, expected {}",
                    status.tenants.len(),
                    self.fleet
                );
            }
            if verify
                && status
                    .tenants
                    .iter()
                    .any(|t| !t.drift.is_empty() || t.error.is_some())
            {
                bail!("verify found drift in a fresh fleet: {:?}", status.counts);
            }
        }
        times.sort();
        let label = if verify {
            "migrate status --verify"
        } else {
            "migrate status"
        };
        println!(
            "{label} over {} tenants: median {:.0} ms (min {:.0}, max {:.0}, {rounds} rounds)",
            self.fleet,
            ms(times[rounds / 2]),
            ms(times[0]),
            ms(times[rounds - 1])
        );
        Ok(times[rounds / 2])
    }

    /// Drops every database and role carrying the prefix, and the migrations copy.
    async fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        support::purge(&self.url, &self.prefix).await;
    }
}

/// Collects the time of every migrated tenant.
#[derive(Default)]
struct Collector {
    times: std::sync::Mutex<Vec<Duration>>,
}

impl Collector {
    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.times.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl RunObserver for Collector {
    fn finished(&self, result: &TenantResult) {
        if result.outcome == Outcome::Migrated {
            self.times
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Duration::from_millis(result.elapsed_ms));
        }
    }
}

fn copy_migrations(dir: &Path) -> anyhow::Result<()> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for set in ["auth", "shared", "tenant"] {
        std::fs::create_dir_all(dir.join(set))?;
        for entry in std::fs::read_dir(source.join(set))? {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, dir.join(set).join(name))?;
            }
        }
    }
    Ok(())
}

fn report(label: &str, count: usize, total: Duration, each: &[Duration]) {
    let mut sorted = each.to_vec();
    sorted.sort();
    let pct = |p: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| ms(*d))
    };
    println!(
        "{label}: {count} tenants in {:.2} s = {:.1} tenants/s; per tenant p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        secs(total),
        count as f64 / secs(total),
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
}
