//! bench_pool: the tenant pool layer against plain pools and plain connections,
//! in one run, with one connection budget of 80 for every tenantd scenario.
//!
//! - overhead: resolve + checkout + `SELECT 1` on a warm tenant pool, against
//!   the same through a plain deadpool pool (median latencies, interleaved blocks);
//! - hot set: 1,000 tenants, 32 clients on a drifting working set of 60
//!   tenants (10% swapped each second), against one database through a plain
//!   pool of 32 (throughput);
//! - churn: 32 clients spread over all 1,000 tenants, against the server's
//!   connection set-up rate (open, `SELECT 1`, close) at the same concurrency;
//! - shared: the hot-set load while another client holds 30% of the server's
//!   `max_connections` in idle sessions (so the server has fewer free slots
//!   than the budget), against the hot set's throughput without them.
//!
//! Needs `DATABASE_URL` (default: the local server). Creates everything under
//! a unique prefix and drops it at the end, also on error.
//! Run: `cargo bench --bench bench_pool`.

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use support::{connect, us};
use tenantd::{NewTenant, Orchestrator, Settings, TenantCode};

const HOT_SET: usize = 60;
const CLIENTS: usize = 32;
const BUDGET: usize = 80;
const OVERHEAD_BLOCK: usize = 500;
/// Share of `max_connections` the other client holds in the shared scenario (%).
const FOREIGN_PERCENT: usize = 30;

/// The run's size: the full one, or a smoke test with `BENCH_POOL_QUICK=1`.
struct Plan {
    tenants: usize,
    warmup: Duration,
    measure: Duration,
    rounds: usize,
    overhead_blocks: usize,
}

fn plan() -> &'static Plan {
    static PLAN: std::sync::OnceLock<Plan> = std::sync::OnceLock::new();
    PLAN.get_or_init(|| {
        if std::env::var("BENCH_POOL_QUICK").is_ok_and(|v| v == "1") {
            Plan {
                tenants: 120,
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(2),
                rounds: 1,
                overhead_blocks: 2,
            }
        } else {
            Plan {
                tenants: 1000,
                warmup: Duration::from_secs(2),
                measure: Duration::from_secs(8),
                rounds: 2,
                overhead_blocks: 8,
            }
        }
    })
}

/// One benchmark run's names and settings.
#[derive(Clone)]
struct Bench {
    url: String,
    prefix: String,
}

/// A tenant and how to reach its database directly.
struct Target {
    code: TenantCode,
    role_config: tokio_postgres::Config,
    admin_config: tokio_postgres::Config,
}

#[tokio::main]
async fn main() -> Result<()> {
    support::init_tracing();
    let bench = Bench {
        url: support::server_url("DATABASE_URL"),
        prefix: support::prefix("bp"),
    };
    println!("bench_pool: prefix {} on {}", bench.prefix, bench.url);
    let outcome = tokio::spawn(run(bench.clone())).await;
    support::purge(&bench.url, &bench.prefix).await;
    match outcome {
        Ok(result) => result,
        Err(panic) => Err(anyhow::anyhow!("the benchmark panicked: {panic}")),
    }
}

impl Bench {
    fn settings(&self) -> Result<Settings> {
        support::settings(
            &self.url,
            &self.prefix,
            &[
                ("TENANTD_MAX_CONNECTIONS", BUDGET.to_string()),
                ("TENANTD_ACQUIRE_TIMEOUT_MS", "30000".to_owned()),
            ],
        )
    }

    async fn orchestrator(&self) -> Result<Orchestrator> {
        Orchestrator::connect(self.settings()?)
            .await
            .context("connecting tenantd")
    }

    async fn admin(&self) -> Result<tokio_postgres::Client> {
        connect(&self.url.parse().context("DATABASE_URL")?).await
    }
}

async fn run(bench: Bench) -> Result<()> {
    let admin = bench.admin().await?;
    let max: String = admin.query_one("SHOW max_connections", &[]).await?.get(0);
    println!("server max_connections = {max}; tenantd budget = {BUDGET}");
    let max: usize = max.parse().context("max_connections")?;
    let targets = Arc::new(provision(&bench).await?);
    let sampler = Sampler::start(bench.admin().await?, &bench.prefix);
    let mut report = Report::default();
    overhead(&bench, &targets, &sampler, &mut report).await?;
    hot_set(&bench, &targets, &sampler, &mut report).await?;
    churn(&bench, &targets, &sampler, &mut report).await?;
    shared(&bench, &targets, &sampler, &mut report, max).await?;
    report.print();
    Ok(())
}

/// Creates the tenants (three at a time) and notes how to reach each.
async fn provision(bench: &Bench) -> Result<Vec<Target>> {
    let started = Instant::now();
    let orchestrator = bench.orchestrator().await?;
    orchestrator.init().await.context("tenantd init")?;
    let codes: Vec<TenantCode> = (0..plan().tenants)
        .map(|i| TenantCode::parse(&format!("t{i:04}")))
        .collect::<Result<_, _>>()?;
    let mut created = futures::stream::iter(codes.clone())
        .map(|code| {
            let orchestrator = orchestrator.clone();
            async move {
                orchestrator
                    .create_tenant(NewTenant::new(code, "Bench"))
                    .await
            }
        })
        .buffer_unordered(3);
    let mut done = 0;
    while let Some(result) = created.next().await {
        result.context("creating a tenant")?;
        done += 1;
        if done % 200 == 0 {
            println!("  {done} tenants provisioned ({:.0?})", started.elapsed());
        }
    }
    let mut targets = Vec::with_capacity(plan().tenants);
    for code in codes {
        let connection = orchestrator.tenant_connection(&code).await?;
        let role_config: tokio_postgres::Config = connection.url.parse()?;
        let mut admin_config: tokio_postgres::Config = bench.url.parse()?;
        admin_config.dbname(&connection.database);
        targets.push(Target {
            code,
            role_config,
            admin_config,
        });
    }
    println!(
        "provisioned {} tenants in {:.1?}",
        plan().tenants,
        started.elapsed()
    );
    Ok(targets)
}

/// Samples the number of open tenant connections (roles `<prefix>_…`) while active.
struct Sampler {
    active: Arc<AtomicBool>,
    max: Arc<AtomicI64>,
    open: Arc<AtomicI64>,
}

impl Sampler {
    fn start(admin: tokio_postgres::Client, prefix: &str) -> Self {
        let (active, max, open) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicI64::new(0)),
            Arc::new(AtomicI64::new(0)),
        );
        let pattern = format!("{prefix}_");
        let (a, m, o) = (active.clone(), max.clone(), open.clone());
        tokio::spawn(async move {
            const SQL: &str =
                "SELECT count(*) FROM pg_stat_activity WHERE starts_with(usename::text, $1)";
            while let Ok(row) = admin.query_one(SQL, &[&pattern]).await {
                let now: i64 = row.get(0);
                o.store(now, Ordering::Relaxed);
                if a.load(Ordering::Relaxed) {
                    m.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Self { active, max, open }
    }

    /// Waits until no tenant connection is left (between scenarios).
    async fn wait_quiet(&self) {
        for _ in 0..500 {
            if self.open.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn record(&self, on: bool) {
        self.active.store(on, Ordering::Relaxed);
    }

    fn max(&self) -> i64 {
        self.max.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Report {
    overhead: (f64, f64),
    hot: (f64, f64),
    churn: (f64, f64),
    shared: f64,
    shared_errors: u64,
    foreign: usize,
    errors: u64,
    baseline_errors: u64,
}

impl Report {
    fn print(&self) {
        let ratio = |(tenantd, base): (f64, f64)| tenantd / base;
        println!();
        println!(
            "overhead: tenantd median {:.1} µs, plain pool {:.1} µs",
            self.overhead.0, self.overhead.1
        );
        println!(
            "hot set:  tenantd {:.0} req/s, plain pool of {CLIENTS} on one database {:.0} req/s",
            self.hot.0, self.hot.1
        );
        println!(
            "churn:    tenantd {:.0} req/s, open+SELECT 1+close {:.0} conn/s",
            self.churn.0, self.churn.1
        );
        println!(
            "shared:   tenantd {:.0} req/s with {} foreign sessions, {:.0} req/s without",
            self.shared, self.foreign, self.hot.0
        );
        println!("baseline errors: {}", self.baseline_errors);
        println!(
            "RESULT overhead_ratio={:.2} hot_ratio={:.2} churn_ratio={:.2} max_open={} budget={BUDGET} errors={} \
             shared_ratio={:.2} shared_errors={} foreign={}",
            ratio(self.overhead),
            ratio(self.hot),
            ratio(self.churn),
            MAX_OPEN.load(Ordering::Relaxed),
            self.errors,
            ratio((self.shared, self.hot.0)),
            self.shared_errors,
            self.foreign
        );
    }
}

/// Most tenant connections seen open in any tenantd scenario.
static MAX_OPEN: AtomicI64 = AtomicI64::new(0);

/// Runs `op` on `CLIENTS` tasks for the warm-up then the measured time;
/// returns (successes per second measured, errors).
async fn drive<F, Fut>(op: F) -> (f64, u64)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now() + plan().warmup;
    let end = start + plan().measure;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (op, ok, errors) = (op.clone(), ok.clone(), errors.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let result = op().await;
                    let now = Instant::now();
                    match result {
                        Ok(()) if now >= start && now < end => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => {}
                        Err(error) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("  request failed: {error:#}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let rate = ok.load(Ordering::Relaxed) as f64 / plan().measure.as_secs_f64();
    (rate, errors.load(Ordering::Relaxed))
}

/// One request through tenantd: resolve, checkout, `SELECT 1`.
async fn tenantd_select(orchestrator: &Orchestrator, code: &TenantCode) -> Result<()> {
    let client = orchestrator.tenant_client(code).await?;
    let statement = client.prepare_cached("SELECT 1").await?;
    client.query_one(&statement, &[]).await?;
    Ok(())
}

/// One request through a plain deadpool pool.
async fn plain_select(pool: &deadpool_postgres::Pool) -> Result<()> {
    let client = pool.get().await?;
    let statement = client.prepare_cached("SELECT 1").await?;
    client.query_one(&statement, &[]).await?;
    Ok(())
}

/// Runs a tenantd scenario on a fresh orchestrator, sampling open
/// connections; returns (successes per second, errors).
async fn tenantd_phase<F, Fut>(bench: &Bench, sampler: &Sampler, op: F) -> Result<(f64, u64)>
where
    F: Fn(Orchestrator) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    sampler.wait_quiet().await;
    let orchestrator = bench.orchestrator().await?;
    sampler.record(true);
    let o = orchestrator.clone();
    let (rate, errors) = drive(move || op(o.clone())).await;
    sampler.record(false);
    let stats = orchestrator.pool_stats();
    println!(
        "    tenantd: {rate:.0} req/s, {errors} errors, peak open {} (pg_stat_activity max {}), \
         opened {} (growth {}), budget evictions {} (last connections {}), busy {}, \
         server refusals {} (ceiling {} at the end), mean acquire wait {:.0} µs; \
         fast checkouts {}, waits: own connection {}, budget {}, cold start {}, growth deferred {}; \
         stale evictions {}",
        stats.peak_open_connections,
        sampler.max(),
        stats.connections_opened,
        stats.growth_connections,
        stats.budget_evictions,
        stats.last_connection_evictions,
        stats.budget_timeouts,
        stats.server_full_retries,
        stats.budget_ceiling,
        stats.acquire_wait.sum_seconds * 1e6 / stats.acquire_wait.count.max(1) as f64,
        stats.fast_checkouts,
        stats.waits.own_connection,
        stats.waits.budget,
        stats.waits.cold_start,
        stats.waits.growth_deferred,
        stats.stale_evictions
    );
    MAX_OPEN.fetch_max(sampler.max(), Ordering::Relaxed);
    orchestrator.close();
    Ok((rate, errors))
}

async fn overhead(
    bench: &Bench,
    targets: &Arc<Vec<Target>>,
    sampler: &Sampler,
    report: &mut Report,
) -> Result<()> {
    println!(
        "overhead: {} interleaved blocks of {OVERHEAD_BLOCK} sequential requests each way",
        plan().overhead_blocks
    );
    let target = &targets[0];
    let orchestrator = bench.orchestrator().await?;
    let plain = support::plain_pool(target.admin_config.clone(), 1)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    sampler.record(true);
    for block in 0..=plan().overhead_blocks {
        for _ in 0..OVERHEAD_BLOCK {
            let t = Instant::now();
            let result = tenantd_select(&orchestrator, &target.code).await;
            if result.is_err() {
                report.errors += 1;
            }
            // Block 0 warms both pools up and is not counted.
            if block > 0 {
                ours.push(t.elapsed());
            }
            let t = Instant::now();
            plain_select(&plain).await?;
            if block > 0 {
                theirs.push(t.elapsed());
            }
        }
    }
    sampler.record(false);
    MAX_OPEN.fetch_max(sampler.max(), Ordering::Relaxed);
    let (a, b) = (percentiles(&ours), percentiles(&theirs));
    println!(
        "    tenantd    p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs",
        a[0], a[1], a[2]
    );
    println!(
        "    plain pool p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs",
        b[0], b[1], b[2]
    );
    report.overhead = (a[0], b[0]);
    orchestrator.close();
    plain.close();
    Ok(())
}

/// p50, p90 and p99 of `samples`, in microseconds.
fn percentiles(samples: &[Duration]) -> [f64; 3] {
    let at = |q| support::percentile(samples, q).map_or(0.0, us);
    [at(0.5), at(0.9), at(0.99)]
}

async fn hot_set(
    bench: &Bench,
    targets: &Arc<Vec<Target>>,
    sampler: &Sampler,
    report: &mut Report,
) -> Result<()> {
    println!(
        "hot set: {CLIENTS} clients, working set of {HOT_SET} of {} tenants drifting 10%/s; {} rounds of {:?}",
        plan().tenants,
        plan().rounds,
        plan().measure
    );
    let (mut ours, mut theirs) = (0.0, 0.0);
    for _ in 0..plan().rounds {
        sampler.wait_quiet().await;
        let pool = support::plain_pool(targets[0].admin_config.clone(), CLIENTS)?;
        let p = pool.clone();
        let (rate, errors) = drive(move || {
            let p = p.clone();
            async move { plain_select(&p).await }
        })
        .await;
        println!("    plain pool: {rate:.0} req/s, {errors} errors");
        pool.close();
        theirs += rate;
        report.baseline_errors += errors;

        let (rate, errors) = hot_phase(bench, targets, sampler).await?;
        ours += rate;
        report.errors += errors;
    }
    report.hot = (ours / plan().rounds as f64, theirs / plan().rounds as f64);
    Ok(())
}

/// The hot-set load through tenantd: `CLIENTS` clients on a drifting
/// working set of `HOT_SET` tenants; returns (req/s, errors).
async fn hot_phase(
    bench: &Bench,
    targets: &Arc<Vec<Target>>,
    sampler: &Sampler,
) -> Result<(f64, u64)> {
    let set = Arc::new(RwLock::new(
        rand::seq::index::sample(&mut rand::rng(), plan().tenants, HOT_SET).into_vec(),
    ));
    let drift = tokio::spawn(drift(set.clone()));
    let targets = targets.clone();
    let outcome = tenantd_phase(bench, sampler, move |o| {
        let pick = {
            let set = set.read().unwrap_or_else(|p| p.into_inner());
            set[rand::random_range(0..set.len())]
        };
        let code = targets[pick].code.clone();
        async move { tenantd_select(&o, &code).await }
    })
    .await;
    drift.abort();
    outcome
}

/// Every second, swaps 10% of the working set for tenants outside it.
async fn drift(set: Arc<RwLock<Vec<usize>>>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut set = set.write().unwrap_or_else(|p| p.into_inner());
        for _ in 0..HOT_SET / 10 {
            let slot = rand::random_range(0..set.len());
            let fresh = loop {
                let candidate = rand::random_range(0..plan().tenants);
                if !set.contains(&candidate) {
                    break candidate;
                }
            };
            set[slot] = fresh;
        }
    }
}

async fn churn(
    bench: &Bench,
    targets: &Arc<Vec<Target>>,
    sampler: &Sampler,
    report: &mut Report,
) -> Result<()> {
    println!(
        "churn: {CLIENTS} clients uniformly over {} tenants; {} rounds of {:?}",
        plan().tenants,
        plan().rounds,
        plan().measure
    );
    let (mut ours, mut theirs) = (0.0, 0.0);
    for _ in 0..plan().rounds {
        sampler.wait_quiet().await;
        let t = targets.clone();
        let (rate, errors) = drive(move || {
            let config = t[rand::random_range(0..t.len())].role_config.clone();
            async move {
                let client = connect(&config).await?;
                client.query_one("SELECT 1", &[]).await?;
                Ok(())
            }
        })
        .await;
        println!("    open + SELECT 1 + close: {rate:.0} conn/s, {errors} errors");
        theirs += rate;
        report.baseline_errors += errors;

        let t = targets.clone();
        let (rate, errors) = tenantd_phase(bench, sampler, move |o| {
            let code = t[rand::random_range(0..t.len())].code.clone();
            async move { tenantd_select(&o, &code).await }
        })
        .await?;
        ours += rate;
        report.errors += errors;
    }
    report.churn = (ours / plan().rounds as f64, theirs / plan().rounds as f64);
    Ok(())
}

/// The hot-set load while idle sessions of another client hold
/// `FOREIGN_PERCENT`% of the server's `max_connections`.
async fn shared(
    bench: &Bench,
    targets: &Arc<Vec<Target>>,
    sampler: &Sampler,
    report: &mut Report,
    max_connections: usize,
) -> Result<()> {
    let wanted = max_connections * FOREIGN_PERCENT / 100;
    sampler.wait_quiet().await;
    let foreign = hold_sessions(&bench.url, wanted).await?;
    report.foreign = foreign.len();
    println!(
        "shared: hot-set load while {} idle sessions of another client are open \
         ({FOREIGN_PERCENT}% of max_connections {max_connections}); {} rounds of {:?}",
        foreign.len(),
        plan().rounds,
        plan().measure
    );
    let mut ours = 0.0;
    for _ in 0..plan().rounds {
        let (rate, errors) = hot_phase(bench, targets, sampler).await?;
        ours += rate;
        report.shared_errors += errors;
    }
    drop(foreign);
    report.shared = ours / plan().rounds as f64;
    Ok(())
}

/// Opens up to `count` idle sessions to the server at `url` (stops when the
/// server refuses one); they close when dropped.
async fn hold_sessions(url: &str, count: usize) -> Result<Vec<tokio_postgres::Client>> {
    let config: tokio_postgres::Config = url.parse().context("DATABASE_URL")?;
    let mut sessions = Vec::with_capacity(count);
    for _ in 0..count {
        match connect(&config).await {
            Ok(client) => sessions.push(client),
            Err(error) => {
                println!(
                    "    the server refused foreign session {}: {error:#}",
                    sessions.len() + 1
                );
                break;
            }
        }
    }
    Ok(sessions)
}
