//! Load benchmark of `POST /v1/sql`: 32 concurrent clients spread over 50
//! tenants, against the same query issued directly with tokio-postgres over
//! one open connection per tenant, measured side by side in the same run.
//!
//! Run: `cargo bench --bench bench_http` (server from
//! `BENCH_DATABASE_URL`, default the local PostgreSQL). Everything it creates
//! carries a private prefix and is dropped at the end, also on error.
//! Ends with `RESULT http_rps=… p99_ms=… direct_ratio=…`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use tenantd::http::Application;
use tenantd::{NewTenant, Orchestrator, Plan, TenantCode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TENANTS: usize = 50;
const CLIENTS: usize = 32;
const WARMUP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(10);
const QUERY: &str = "SELECT id, code, name FROM clients WHERE code = $1";
const RUN_LIMIT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> Result<()> {
    support::init_tracing();
    let url = support::server_url("BENCH_DATABASE_URL");
    let prefix = support::prefix("bh");
    // Interrupted or stuck, the run still cleans up after itself.
    let result = tokio::select! {
        result = tokio::time::timeout(RUN_LIMIT, run(&url, &prefix)) => {
            result.unwrap_or_else(|_| Err(anyhow::anyhow!("the benchmark took longer than {RUN_LIMIT:?}")))
        }
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    support::purge(&url, &prefix).await;
    result
}

async fn run(url: &str, prefix: &str) -> Result<()> {
    let settings = support::settings(
        url,
        prefix,
        &[
            ("TENANTD_LISTEN", "127.0.0.1:0".to_owned()),
            ("TENANTD_TENANT_MAX_CONNECTIONS", "1".to_owned()),
            ("TENANTD_MAX_CONNECTIONS", "60".to_owned()),
            ("TENANTD_RATE_ENTERPRISE", "1000000".to_owned()),
        ],
    )?;
    let app = Application::build(settings).await?;
    let address = app.local_addr()?;
    let orchestrator = app.orchestrator().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    println!("provisioning {TENANTS} tenants (prefix {prefix})…");
    let tenants = provision(&orchestrator).await?;

    let direct = direct_phase(&orchestrator, &tenants).await?;
    report("direct tokio-postgres", &direct);
    let http = http_phase(address, &tenants).await?;
    report("HTTP POST /v1/sql", &http);

    let ratio = http.rps() / direct.rps();
    println!(
        "\n{CLIENTS} clients over {TENANTS} tenants, {}s each: HTTP at {:.1}% of the direct rate",
        MEASURE.as_secs(),
        ratio * 100.0
    );
    println!(
        "RESULT http_rps={:.0} p99_ms={:.2} direct_ratio={:.3}",
        http.rps(),
        http.percentile(0.99),
        ratio
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// A bench tenant: its code and API key.
struct BenchTenant {
    code: TenantCode,
    key: String,
}

async fn provision(orchestrator: &Orchestrator) -> Result<Vec<BenchTenant>> {
    let created = futures::stream::iter(0..TENANTS)
        .map(|i| async move {
            let code = TenantCode::parse(&format!("t{i:03}"))?;
            let mut new = NewTenant::new(code.clone(), format!("Bench {i}"));
            new.plan = Plan::Enterprise;
            orchestrator.create_tenant(new).await?;
            // Seeded over a connection of its own, closed at once: the
            // tenant's pool stays empty until the HTTP phase.
            let url = orchestrator.tenant_connection(&code).await?.url;
            support::connect_url(&url)
                .await?
                .batch_execute(
                    "INSERT INTO clients (code, name, currency) \
                     SELECT 'C' || g, 'Client ' || g, 'EUR' FROM generate_series(1, 100) g",
                )
                .await?;
            let issued = orchestrator
                .issue_api_key("bench", tenantd::ApiKeyScope::Tenant, Some(&code))
                .await?;
            Ok::<_, anyhow::Error>(BenchTenant {
                code,
                key: issued.secret,
            })
        })
        .buffered(2)
        .collect::<Vec<_>>()
        .await;
    created.into_iter().collect()
}

/// Latencies of one phase.
struct Sample {
    latencies_ms: Vec<f64>,
    elapsed: Duration,
}

impl Sample {
    fn rps(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        support::percentile(&self.latencies_ms, p).unwrap_or(f64::NAN)
    }
}

fn report(name: &str, sample: &Sample) {
    println!(
        "{name:<24} {:>9.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  ({} requests)",
        sample.rps(),
        sample.percentile(0.5),
        sample.percentile(0.9),
        sample.percentile(0.99),
        sample.latencies_ms.len()
    );
}

/// Runs `CLIENTS` workers calling `call(worker, n)` for WARMUP + MEASURE.
async fn load<F, Fut>(call: F) -> Result<Sample>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let workers = (0..CLIENTS).map(|worker| {
        let call = call.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                call(worker, n).await?;
                if began >= measure_from {
                    latencies.push(began.elapsed().as_secs_f64() * 1000.0);
                }
                n += 1;
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    });
    let mut latencies_ms = Vec::new();
    for worker in futures::future::join_all(workers).await {
        latencies_ms.extend(worker??);
    }
    Ok(Sample {
        latencies_ms,
        elapsed: MEASURE,
    })
}

/// Which tenant worker `w` calls on its `n`-th request: spread over all.
fn tenant_index(worker: usize, n: usize) -> usize {
    (worker + n * CLIENTS + n / TENANTS) % TENANTS
}

async fn direct_phase(orchestrator: &Orchestrator, tenants: &[BenchTenant]) -> Result<Sample> {
    let mut connections = Vec::new();
    for tenant in tenants {
        let url = orchestrator.tenant_connection(&tenant.code).await?.url;
        let client = support::connect_url(&url).await?;
        let statement = client.prepare(QUERY).await?;
        connections.push((client, statement));
    }
    let connections = Arc::new(connections);
    load(move |worker, n| {
        let connections = connections.clone();
        async move {
            let (client, statement) = &connections[tenant_index(worker, n)];
            let rows = client.query(statement, &[&"C42"]).await?;
            if rows.len() != 1 {
                bail!("direct query returned {} rows", rows.len());
            }
            Ok(())
        }
    })
    .await
}

async fn http_phase(address: std::net::SocketAddr, tenants: &[BenchTenant]) -> Result<Sample> {
    let keys: Arc<Vec<String>> = Arc::new(tenants.iter().map(|t| t.key.clone()).collect());
    let mut connections = Vec::new();
    for _ in 0..CLIENTS {
        connections.push(tokio::sync::Mutex::new(
            HttpConnection::open(address).await?,
        ));
    }
    let connections = Arc::new(connections);
    let body = Arc::new(format!("{{\"sql\":\"{QUERY}\",\"params\":[\"C42\"]}}"));
    load(move |worker, n| {
        let (keys, connections, body) = (keys.clone(), connections.clone(), body.clone());
        async move {
            let mut connection = connections[worker].lock().await;
            let key = &keys[tenant_index(worker, n)];
            let (status, response) = connection.post("/v1/sql", key, body.as_bytes()).await?;
            if status != 200 || !response.contains("\"row_count\":1") {
                bail!("HTTP {status}: {response}");
            }
            Ok(())
        }
    })
    .await
}

/// A keep-alive HTTP/1.1 connection (the bench's own minimal client).
struct HttpConnection {
    stream: BufReader<TcpStream>,
}

impl HttpConnection {
    async fn open(address: std::net::SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
        })
    }

    async fn post(&mut self, path: &str, token: &str, body: &[u8]) -> Result<(u16, String)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.stream.get_mut().write_all(&request).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .context("no status line")?
            .parse()?;
        let mut length = 0;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut response = vec![0; length];
        self.stream.read_exact(&mut response).await?;
        Ok((status, String::from_utf8_lossy(&response).into_owned()))
    }
}
