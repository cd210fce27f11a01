//! What every benchmark repeats: the server to run against, a private name
//! prefix and the settings of a tenantd confined to it, admin connections,
//! dropping the prefix at the end, percentiles and time units.
//!
//! Each benchmark is its own crate (`harness = false`) and includes this
//! module with `mod support;`; not every benchmark uses every helper.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tenantd::Settings;
use tokio_postgres::{Client, NoTls};

/// The local server, when the benchmark's URL variable is unset.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The master secret of every benchmark's tenantd.
const SECRET: &str = "bench-secret-0123456789abcdef0123456789";
/// Databases dropped at once at the end of a run.
const PURGE_CONCURRENCY: usize = 8;

/// The server URL from `variable` (each benchmark documents which), or the local server.
pub fn server_url(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A fresh name prefix `<stem>_<8 hex digits>` for the run's databases and roles.
pub fn prefix(stem: &str) -> String {
    format!("{stem}_{:08x}", rand::random::<u32>())
}

/// Log lines (`TENANTD_LOG`, default `warn`) on stderr; stdout is the report.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENANTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Settings of a tenantd on `url` whose AUTH, SHARED and tenants all carry
/// `prefix`, plus `extra` variables (which override).
pub fn settings(url: &str, prefix: &str, extra: &[(&str, String)]) -> Result<Settings> {
    let mut vars: HashMap<&str, String> = [
        ("DATABASE_URL", url.to_owned()),
        ("TENANTD_SECRET", SECRET.to_owned()),
        ("DB_AUTH_NAME", format!("{prefix}_auth")),
        ("DB_SHARED_NAME", format!("{prefix}_shared")),
        ("DB_TENANT_PREFIX", prefix.to_owned()),
    ]
    .into_iter()
    .collect();
    vars.extend(extra.iter().cloned());
    Settings::from_lookup(|k| vars.get(k).cloned()).context("benchmark settings")
}

/// One connection, driven by a background task.
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// One connection to the server or database at `url`.
pub async fn connect_url(url: &str) -> Result<Client> {
    connect(&url.parse().context("a PostgreSQL URL")?).await
}

/// `url` with its database replaced by `db`.
pub fn db_url(url: &str, db: &str) -> Result<String> {
    let mut url = url::Url::parse(url).context("a PostgreSQL URL")?;
    url.set_path(db);
    Ok(url.to_string())
}

/// Drops every database and role of the run's prefix (also after an error)
/// and says what it dropped, or what to drop by hand.
pub async fn purge(url: &str, prefix: &str) {
    let started = Instant::now();
    let config: tokio_postgres::Config = match url.parse() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cleanup: {e}; drop databases and roles named {prefix}_* by hand");
            return;
        }
    };
    match tenantd::purge::purge_prefix_concurrently(&config, prefix, PURGE_CONCURRENCY).await {
        Ok(purged) => {
            for failure in &purged.failures {
                eprintln!("cleanup: cannot drop {failure}");
            }
            println!(
                "cleanup: dropped {} databases and {} roles of {prefix} in {:.1} s",
                purged.databases,
                purged.roles,
                secs(started.elapsed())
            );
        }
        Err(e) => eprintln!("cleanup: {e}; drop databases and roles named {prefix}_* by hand"),
    }
}

/// The value at quantile `q` (0.0–1.0) of `values`, nearest rank; `None` if empty.
pub fn percentile<T: Copy + PartialOrd>(values: &[T], q: f64) -> Option<T> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).copied()
}

/// The median of `values` (zero when empty).
pub fn median(values: &[Duration]) -> Duration {
    percentile(values, 0.5).unwrap_or_default()
}

/// Seconds.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A plain deadpool-postgres pool of `max_size` connections (the baseline
/// tenantd's pools are measured against).
pub fn plain_pool(
    config: tokio_postgres::Config,
    max_size: usize,
) -> anyhow::Result<deadpool_postgres::Pool> {
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Ok(deadpool_postgres::Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}
