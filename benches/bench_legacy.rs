//! Benchmark of `legacy run`: a generated monolith of ≥ 1,000,000 tenant
//! rows across 50 sociétés is split into 50 (+1 default) tenant databases,
//! against `pg_dump -Fc` + `pg_restore` of the same tables into one database,
//! measured side by side in the same process, alternating, for several
//! rounds (`rollback --force` between tenantd rounds).
//!
//! `cargo bench --bench bench_legacy`; env: `DATABASE_URL` (default the
//! local server), `BENCH_SOCIETES` (50), `BENCH_CLIENTS` (2250 clients per
//! société, ×9 rows + 64), `BENCH_ROUNDS` (3), `BENCH_PARALLEL` (4).
//! Everything is created under a unique prefix and dropped at the end, also
//! on error (unless `BENCH_KEEP=1`, for looking at the data).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use support::{db_url, secs};
use tenantd::Orchestrator;
use tenantd::legacy::fixture::Fixture;
use tenantd::legacy::{LegacyConfig, rollback, run, tools, verify};
use tokio_postgres::Client;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Bench {
    prefix: String,
    url: String,
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    support::init_tracing();
    let prefix = support::prefix("bench_legacy");
    let bench = Bench {
        url: support::server_url("DATABASE_URL"),
        dir: std::env::temp_dir().join(&prefix),
        prefix,
    };
    let result = measure(&bench).await;
    if std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1") {
        println!(
            "BENCH_KEEP=1: kept databases {}_*; drop them by hand",
            bench.prefix
        );
    } else {
        cleanup(&bench).await;
    }
    result
}

async fn measure(bench: &Bench) -> Result<()> {
    let fixture = Fixture {
        societes: env_or("BENCH_SOCIETES", 50),
        clients_per_societe: env_or("BENCH_CLIENTS", 2250),
    };
    let rounds: usize = env_or("BENCH_ROUNDS", 3_usize).max(1);
    let parallel: usize = env_or("BENCH_PARALLEL", 4);
    let monolith = format!("{}_monolith", bench.prefix);
    let admin = support::connect_url(&bench.url).await?;
    let started = Instant::now();
    fixture
        .create(&admin, &bench.url.parse()?, &monolith)
        .await
        .context("generate the monolith")?;
    println!(
        "generated monolith {monolith}: {} sociétés × {} tenant rows in {:.1} s",
        fixture.societes,
        fixture.tenant_rows_per_societe(),
        secs(started.elapsed())
    );
    std::fs::create_dir_all(&bench.dir)?;
    let config_path = bench.dir.join("legacy.toml");
    std::fs::write(
        &config_path,
        format!(
            "[source]\nurl = \"{}\"\n[classification]\nprocesses = \"shared\"\n[output]\nbackups = \"backups\"\nreports = \"reports\"\n[run]\nparallel = {parallel}\n",
            db_url(&bench.url, &monolith)?
        ),
    )?;
    let config = LegacyConfig::load(&config_path)?;
    let settings = support::settings(&bench.url, &bench.prefix, &[])?;
    let tables = tenant_tables(&admin, &bench.url, &monolith).await?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut rows = 0;
    for round in 1..=rounds {
        let orchestrator = Orchestrator::connect(settings.clone()).await?;
        let t = Instant::now();
        let report = run::run(&orchestrator, &config, &run::RunOptions::default()).await?;
        let took = t.elapsed();
        let verified = verify::verify(&orchestrator, &config).await?;
        if !verified.ok() {
            bail!("verify failed: {}", verified.text());
        }
        rows = report.tenant_rows;
        rollback::rollback(&orchestrator, &config, true).await?;
        let dump = dump_restore(bench, &admin, &monolith, &tables, round).await?;
        println!(
            "round {round}: tenantd run {:.2} s ({} tenants, {} rows); pg_dump+pg_restore {:.2} s",
            took.as_secs_f64(),
            report.tenants.len(),
            report.tenant_rows,
            dump.as_secs_f64()
        );
        ours.push(took);
        theirs.push(dump);
    }
    report(rows, &ours, &theirs);
    Ok(())
}

/// The tenant tables of the fixture and the tables they need (for the baseline dump).
async fn tenant_tables(admin: &Client, url: &str, monolith: &str) -> Result<Vec<String>> {
    let _ = admin;
    let client = support::connect_url(&db_url(url, monolith)?).await?;
    let rows = client
        .query("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' AND relname NOT IN ('users', 'user_societes', 'app_log') ORDER BY 1", &[])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// pg_dump -Fc of `tables` + pg_restore into a fresh database; wall time of both.
async fn dump_restore(
    bench: &Bench,
    admin: &Client,
    monolith: &str,
    tables: &[String],
    round: usize,
) -> Result<Duration> {
    let target = format!("{}_restore{round}", bench.prefix);
    admin
        .batch_execute(&format!("CREATE DATABASE {target}"))
        .await?;
    let file = bench.dir.join(format!("baseline{round}.dump"));
    let source_conf = tools::conninfo(&db_url(&bench.url, monolith)?.parse()?);
    let target_conf = tools::conninfo(&db_url(&bench.url, &target)?.parse()?);
    let config: tokio_postgres::Config = bench.url.parse()?;
    let path = file.display().to_string();
    let mut dump_args = vec!["-Fc".to_owned(), "-f".to_owned(), path.clone()];
    for table in tables {
        dump_args.push("-t".to_owned());
        dump_args.push(table.clone());
    }
    dump_args.push(source_conf);
    let t = Instant::now();
    let args: Vec<&str> = dump_args.iter().map(String::as_str).collect();
    tools::run("pg_dump", &args, &config).await?;
    tools::run(
        "pg_restore",
        &["--no-owner", "--exit-on-error", "-d", &target_conf, &path],
        &config,
    )
    .await?;
    let took = t.elapsed();
    remove(&file);
    admin
        .batch_execute(&format!("DROP DATABASE {target} WITH (FORCE)"))
        .await?;
    Ok(took)
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

fn report(rows: u64, ours: &[Duration], theirs: &[Duration]) {
    let (a, b) = (secs(support::median(ours)), secs(support::median(theirs)));
    let fmt = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "tenantd legacy run:     median {a:.2} s over [{}] s",
        fmt(ours)
    );
    println!(
        "pg_dump + pg_restore:   median {b:.2} s over [{}] s",
        fmt(theirs)
    );
    let ours_rate = rows as f64 / a;
    let theirs_rate = rows as f64 / b;
    println!(
        "RESULT rows={rows} tenantd_rows_per_s={ours_rate:.0} dump_restore_rows_per_s={theirs_rate:.0} ratio={:.2}",
        ours_rate / theirs_rate
    );
}

/// Drops every database and role of the prefix, and the work directory.
async fn cleanup(bench: &Bench) {
    let _ = std::fs::remove_dir_all(&bench.dir);
    support::purge(&bench.url, &bench.prefix).await;
}
