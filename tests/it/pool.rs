//! The tenant pool layer against a real PostgreSQL: the global connection
//! budget, single-flight pool creation, idle eviction, the retryable busy
//! error, the cold-start cap, and invalidation across processes through
//! LISTEN/NOTIFY (including a listener whose connection is killed).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::TestEnv;
use futures::StreamExt;
use tenantd::{Error, ErrorKind, NewTenant, Orchestrator, TenantCode, TenantStatus};

/// Tenant connections open on the server now (roles named after the test prefix).
async fn tenant_connections(env: &TestEnv, admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE starts_with(usename::text, $1)",
            &[&format!("{}_", env.prefix)],
        )
        .await
        .unwrap()
        .get(0)
}

/// Connections of one tenant's role.
async fn role_connections(admin: &tokio_postgres::Client, role: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

/// Polls `check` every 10 ms until it holds; returns how long it took, or
/// `None` after `limit`.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Creates `count` tenants `t0000…` with a few creations at a time.
async fn create_tenants(
    orchestrator: &Orchestrator,
    env: &TestEnv,
    count: usize,
) -> Vec<TenantCode> {
    let codes: Vec<TenantCode> = (0..count).map(|i| env.code(&format!("t{i:04}"))).collect();
    let created: Vec<_> = futures::stream::iter(codes.clone())
        .map(|code| {
            let orchestrator = orchestrator.clone();
            async move {
                orchestrator
                    .create_tenant(NewTenant::new(code, "Pool test"))
                    .await
            }
        })
        // The provisioner runs at most four life-cycle operations at once;
        // three leave room for the other tests' setup.
        .buffer_unordered(3)
        .collect()
        .await;
    for result in created {
        result.unwrap();
    }
    codes
}

/// Drops this test's tenant databases eight at a time: each `DROP DATABASE`
/// waits for a checkpoint, and concurrent ones share it (the harness's
/// one-by-one cleanup then has little left to do).
async fn drop_tenant_databases(env: &TestEnv) {
    let tenant_dbs: Vec<String> = env
        .databases()
        .await
        .into_iter()
        .filter(|db| db.starts_with(&format!("{}_t", env.prefix)))
        .collect();
    futures::stream::iter(tenant_dbs)
        .for_each_concurrent(8, |db| async move {
            let admin = env.admin().await;
            let sql = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)");
            admin.batch_execute(&sql).await.unwrap();
        })
        .await;
}

async fn select_one(orchestrator: &Orchestrator, code: &TenantCode) -> Result<(), Error> {
    let client = orchestrator.tenant_client(code).await?;
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);
    Ok(())
}

/// Makes sure the orchestrator's catalog listener is subscribed (it starts
/// with the first tenant request).
async fn wait_listening(orchestrator: &Orchestrator, code: &TenantCode) {
    select_one(orchestrator, code).await.unwrap();
    let listening = within(Duration::from_secs(5), || async {
        orchestrator.pool_stats().notify_connected
    })
    .await;
    assert!(listening.is_some(), "the catalog listener never subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_tenants_share_a_budget_of_twenty() {
    let mut env = TestEnv::new();
    env.set("TENANTD_MAX_CONNECTIONS", "20")
        .set("TENANTD_TENANT_MAX_CONNECTIONS", "4")
        .set("TENANTD_COLD_START_CONCURRENCY", "4")
        .set("TENANTD_ACQUIRE_TIMEOUT_MS", "30000");
    let orchestrator = env.orchestrator().await;
    let started = Instant::now();
    let codes = Arc::new(create_tenants(&orchestrator, &env, 200).await);
    eprintln!("200 tenants provisioned in {:?}", started.elapsed());
    let started = Instant::now();

    let admin = env.admin().await;
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        let pattern = format!("{}_", env.prefix);
        tokio::spawn(async move {
            let (mut max, mut samples) = (0i64, 0u32);
            while !done.load(Ordering::Relaxed) {
                let open: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE starts_with(usename::text, $1)",
                        &[&pattern],
                    )
                    .await
                    .unwrap()
                    .get(0);
                max = max.max(open);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (max, samples)
        })
    };
    let failures = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (orchestrator, codes, failures) =
                (orchestrator.clone(), codes.clone(), failures.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    let code = &codes[rand::random_range(0..codes.len())];
                    if let Err(error) = select_one(&orchestrator, code).await {
                        eprintln!("request to {code} failed: {error}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    eprintln!("800 requests in {:?}", started.elapsed());
    let (max_open, samples) = sampler.await.unwrap();
    let stats = orchestrator.pool_stats();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "every request succeeds"
    );
    assert!(
        samples > 10,
        "pg_stat_activity was sampled ({samples} times)"
    );
    assert!(max_open > 0, "tenant connections were seen");
    assert!(
        max_open <= 20,
        "at most 20 tenant connections, saw {max_open}"
    );
    assert_eq!(stats.budget, 20);
    assert!(stats.peak_open_connections <= 20, "{stats:?}");
    assert!(
        stats.budget_evictions > 0,
        "idle connections were closed for room"
    );
    assert!(
        stats.peak_connects_in_flight <= 4,
        "cold starts are capped: {}",
        stats.peak_connects_in_flight
    );
    assert_eq!(stats.acquire_wait.count, 800);
    orchestrator.close();
    let started = Instant::now();
    drop_tenant_databases(&env).await;
    eprintln!("200 tenant databases dropped in {:?}", started.elapsed());
}

#[tokio::test]
async fn one_pool_per_tenant_however_many_first_requests() {
    let mut env = TestEnv::new();
    env.set("TENANTD_TENANT_MAX_CONNECTIONS", "5");
    let orchestrator = env.orchestrator().await;
    let codes = create_tenants(&orchestrator, &env, 2).await;
    wait_listening(&orchestrator, &codes[0]).await;
    let before = orchestrator.pool_stats();

    let requests: Vec<_> = (0..100)
        .map(|_| {
            let (orchestrator, code) = (orchestrator.clone(), codes[1].clone());
            tokio::spawn(async move { select_one(&orchestrator, &code).await })
        })
        .collect();
    for request in requests {
        request.await.unwrap().unwrap();
    }
    let after = orchestrator.pool_stats();
    assert_eq!(after.pools_created - before.pools_created, 1, "{after:?}");
    assert_eq!(
        after.route_loads - before.route_loads,
        1,
        "one catalog read"
    );
    assert!(after.tenant_open(&codes[1]) <= 5, "the tenant cap holds");

    // Unknown tenants are looked up once too, and refused with their own error.
    let ghost = env.code("ghost");
    let refusals: Vec<_> = (0..50)
        .map(|_| {
            let (orchestrator, ghost) = (orchestrator.clone(), ghost.clone());
            tokio::spawn(async move { orchestrator.tenant_client(&ghost).await.map(drop) })
        })
        .collect();
    for refusal in refusals {
        let error = refusal.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    }
    let last = orchestrator.pool_stats();
    assert_eq!(last.route_loads - after.route_loads, 1);
    assert_eq!(last.pools_created, after.pools_created);
}

#[tokio::test]
async fn idle_pools_are_evicted_and_their_connections_closed() {
    let mut env = TestEnv::new();
    env.set("TENANTD_POOL_IDLE_SECS", "1");
    let orchestrator = env.orchestrator().await;
    let codes = create_tenants(&orchestrator, &env, 1).await;
    let role = format!("{}_{}", env.prefix, codes[0]);
    select_one(&orchestrator, &codes[0]).await.unwrap();
    let admin = env.admin().await;
    assert_eq!(role_connections(&admin, &role).await, 1);
    assert_eq!(orchestrator.pool_stats().open_pools, 1);

    let closed = within(Duration::from_secs(5), || async {
        role_connections(&admin, &role).await == 0
    })
    .await
    .expect("the idle connection is closed");
    assert!(
        closed >= Duration::from_millis(500),
        "not before the idle time: {closed:?}"
    );
    let stats = orchestrator.pool_stats();
    assert_eq!(stats.open_pools, 0, "{stats:?}");
    assert_eq!(stats.open_connections, 0);
    assert!(stats.idle_pool_evictions + stats.idle_connection_closes >= 1);
    // The tenant is still served: a new pool is made.
    select_one(&orchestrator, &codes[0]).await.unwrap();
}

#[tokio::test]
async fn a_full_budget_fails_with_a_retryable_busy_error_and_evicts_idle_connections() {
    let mut env = TestEnv::new();
    env.set("TENANTD_MAX_CONNECTIONS", "3")
        .set("TENANTD_TENANT_MAX_CONNECTIONS", "2")
        .set("TENANTD_ACQUIRE_TIMEOUT_MS", "300");
    let orchestrator = env.orchestrator().await;
    let codes = create_tenants(&orchestrator, &env, 3).await;
    let (a, b, c) = (&codes[0], &codes[1], &codes[2]);

    // The tenant's own cap: a third connection of `a` waits, then is refused.
    let a1 = orchestrator.tenant_client(a).await.unwrap();
    let a2 = orchestrator.tenant_client(a).await.unwrap();
    let started = Instant::now();
    let busy = orchestrator.tenant_client(a).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(matches!(busy, Error::Busy { .. }), "{busy}");
    assert_eq!(busy.kind(), ErrorKind::Unavailable);

    // The global budget: a, a, b hold all 3 connections.
    let b1 = orchestrator.tenant_client(b).await.unwrap();
    let started = Instant::now();
    let busy = orchestrator.tenant_client(c).await.unwrap_err();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(busy.kind(), ErrorKind::Unavailable, "{busy}");
    assert!(busy.retry_after().is_some(), "{busy}");
    assert!(
        busy.to_string().contains("TENANTD_MAX_CONNECTIONS"),
        "{busy}"
    );
    assert_eq!(orchestrator.pool_stats().budget_timeouts, 2);

    // Once b's connection is idle, c gets in by closing it.
    drop(b1);
    select_one(&orchestrator, c).await.unwrap();
    let stats = orchestrator.pool_stats();
    assert!(stats.budget_evictions >= 1, "{stats:?}");
    assert_eq!(stats.tenant_open(b), 0);
    let admin = env.admin().await;
    assert!(tenant_connections(&env, &admin).await <= 3);
    drop((a1, a2));
}

#[tokio::test]
async fn a_status_change_in_one_process_reaches_another_within_a_second() {
    let env = TestEnv::new();
    let one = env.orchestrator().await;
    let other = Orchestrator::connect(env.settings()).await.unwrap();
    let codes = create_tenants(&one, &env, 1).await;
    let code = &codes[0];
    wait_listening(&other, code).await;
    assert_eq!(other.pool_stats().tenant_open(code), 1);

    one.suspend_tenant(code, Some("unpaid")).await.unwrap();
    let refused = within(Duration::from_secs(1), || async {
        matches!(
            other.tenant_client(code).await,
            Err(Error::TenantUnavailable { .. })
        )
    })
    .await;
    assert!(refused.is_some(), "the other process refuses within 1 s");
    assert!(
        !other.pool_stats().tenants.iter().any(|t| &t.code == code),
        "and has closed the tenant's pool"
    );

    one.resume_tenant(code).await.unwrap();
    let served = within(Duration::from_secs(1), || async {
        select_one(&other, code).await.is_ok()
    })
    .await;
    assert!(
        served.is_some(),
        "a resumed tenant is served again within 1 s"
    );

    one.drop_tenant(code).await.unwrap();
    let gone = within(Duration::from_secs(1), || async {
        matches!(
            other.tenant_client(code).await,
            Err(Error::TenantUnavailable {
                status: TenantStatus::Deleted,
                ..
            })
        )
    })
    .await;
    assert!(gone.is_some(), "a dropped tenant is unknown within 1 s");
    one.close();
    other.close();
}

#[tokio::test]
async fn a_killed_listener_reconnects_and_resubscribes() {
    let env = TestEnv::new();
    let one = env.orchestrator().await;
    let other = Orchestrator::connect(env.settings()).await.unwrap();
    let codes = create_tenants(&one, &env, 1).await;
    let code = &codes[0];
    wait_listening(&other, code).await;

    let admin = env.admin().await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = $2",
            &[
                &tenantd::LISTENER_APPLICATION_NAME,
                &format!("{}_auth", env.prefix),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        killed.len(),
        1,
        "one listener connection, named for pg_stat_activity"
    );
    let back = within(Duration::from_secs(5), || async {
        let stats = other.pool_stats();
        stats.notify_reconnects >= 1 && stats.notify_connected
    })
    .await;
    assert!(back.is_some(), "the listener reconnected");

    one.suspend_tenant(code, None).await.unwrap();
    let refused = within(Duration::from_secs(1), || async {
        matches!(
            other.tenant_client(code).await,
            Err(Error::TenantUnavailable { .. })
        )
    })
    .await;
    assert!(
        refused.is_some(),
        "notifications arrive again after the reconnect"
    );
    one.close();
    other.close();
}

/// Idle sessions of "another application" holding the server's free slots;
/// closed when dropped, also when the test fails (idle backends notice a
/// closed socket at once, unlike one running `pg_sleep`).
struct ForeignSessions {
    _sessions: Vec<tokio_postgres::Client>,
}

impl ForeignSessions {
    /// Opens idle sessions until about `leave` of the slots ordinary roles may
    /// use are free (counted now: other tests run at the same time). Stops at
    /// the first refusal.
    async fn leaving(env: &TestEnv, leave: i64) -> Self {
        let free: i64 = {
            let admin = env.admin().await;
            admin
                .query_one(
                    "SELECT current_setting('max_connections')::int8 \
                     - current_setting('superuser_reserved_connections')::int8 \
                     - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
                    &[],
                )
                .await
                .unwrap()
                .get(0)
        };
        let config: tokio_postgres::Config = crate::common::server_url().parse().unwrap();
        let mut sessions = Vec::new();
        for _ in 0..(free + 1 - leave).max(0) {
            let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await else {
                break;
            };
            tokio::spawn(connection);
            sessions.push(client);
        }
        eprintln!(
            "{free} free slots; {} held by foreign sessions",
            sessions.len()
        );
        Self {
            _sessions: sessions,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_server_with_fewer_free_slots_than_the_budget_still_serves_every_tenant() {
    const TENANTS: usize = 16;
    const WORKERS: usize = 4;
    // It leaves the server almost no free slot: it runs alone.
    let mut env = TestEnv::exclusive();
    env.set("TENANTD_MAX_CONNECTIONS", "40")
        .set("TENANTD_TENANT_MAX_CONNECTIONS", "2")
        .set("TENANTD_ACQUIRE_TIMEOUT_MS", "3000");
    let orchestrator = env.orchestrator().await;
    let codes = Arc::new(create_tenants(&orchestrator, &env, TENANTS).await);
    select_one(&orchestrator, &codes[0]).await.unwrap();

    // About 10 free slots for this tenantd's admin pools, its tenants and
    // the other tests: fewer than the 16 tenants and far below the budget.
    let foreign = ForeignSessions::leaving(&env, 10).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (orchestrator, codes, failures) =
                (orchestrator.clone(), codes.clone(), failures.clone());
            tokio::spawn(async move {
                for _round in 0..3 {
                    for code in codes.iter().skip(worker).step_by(WORKERS) {
                        if let Err(error) = select_one(&orchestrator, code).await {
                            eprintln!("request to {code} failed: {error}");
                            failures.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    drop(foreign);
    let stats = orchestrator.pool_stats();
    eprintln!(
        "refusals {}, ceiling {} of {}, budget evictions {}, busy {}",
        stats.server_full_retries,
        stats.budget_ceiling,
        stats.budget,
        stats.budget_evictions,
        stats.budget_timeouts
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "every tenant is served although the server refuses connections: {stats:?}"
    );
    assert_eq!(stats.budget_timeouts, 0, "{stats:?}");
    orchestrator.close();
    drop_tenant_databases(&env).await;
}

/// Settings of the small-budget tests below: a budget of 3 (also the tenant
/// cap), a short acquire timeout.
async fn small_budget(env: &mut TestEnv) -> (Orchestrator, Vec<TenantCode>) {
    env.set("TENANTD_MAX_CONNECTIONS", "3")
        .set("TENANTD_TENANT_MAX_CONNECTIONS", "3");
    if !env.vars().contains_key("TENANTD_ACQUIRE_TIMEOUT_MS") {
        env.set("TENANTD_ACQUIRE_TIMEOUT_MS", "300");
    }
    let orchestrator = env.orchestrator().await;
    let codes = create_tenants(&orchestrator, env, 3).await;
    (orchestrator, codes)
}

/// How long a tenant must go unused to count as stale (it left the working set).
const STALE: Duration = Duration::from_millis(1_200);

#[tokio::test]
async fn a_tenant_at_its_fair_share_grows_into_the_idle_connection_of_a_tenant_that_left() {
    let mut env = TestEnv::new();
    let (orchestrator, codes) = small_budget(&mut env).await;
    let (hot, left) = (&codes[0], &codes[1]);
    select_one(&orchestrator, left).await.unwrap();
    let h1 = orchestrator.tenant_client(hot).await.unwrap();
    let h2 = orchestrator.tenant_client(hot).await.unwrap();
    // Full budget (2 + 1), two holders: `hot` holds more than its share, and
    // `left` was used a moment ago: it is not taken.
    let busy = orchestrator.tenant_client(hot).await.unwrap_err();
    assert!(matches!(busy, Error::Busy { .. }), "{busy}");
    assert_eq!(orchestrator.pool_stats().tenant_open(left), 1);

    // Once `left` has been unused for a while, its idle connection is taken
    // instead of making `hot` wait for one of its own.
    tokio::time::sleep(STALE).await;
    let h3 = orchestrator.tenant_client(hot).await.unwrap();
    let stats = orchestrator.pool_stats();
    assert_eq!(stats.tenant_open(left), 0, "{stats:?}");
    assert_eq!(stats.tenant_open(hot), 3, "{stats:?}");
    assert_eq!(stats.stale_evictions, 1, "{stats:?}");
    assert!(stats.peak_open_connections <= 3, "{stats:?}");
    drop((h1, h2, h3));
    orchestrator.close();
}

#[tokio::test]
async fn the_idle_connection_of_a_tenant_that_left_goes_before_a_hot_tenants_spare_one() {
    let mut env = TestEnv::new();
    let (orchestrator, codes) = small_budget(&mut env).await;
    let (hot, left, new) = (&codes[0], &codes[1], &codes[2]);
    select_one(&orchestrator, left).await.unwrap();
    tokio::time::sleep(STALE).await;
    // `hot` has two connections, both idle now, and was used just now.
    let (h1, h2) = (
        orchestrator.tenant_client(hot).await.unwrap(),
        orchestrator.tenant_client(hot).await.unwrap(),
    );
    drop((h1, h2));
    assert_eq!(orchestrator.pool_stats().tenant_open(hot), 2);

    select_one(&orchestrator, new).await.unwrap();
    let stats = orchestrator.pool_stats();
    assert_eq!(
        stats.tenant_open(left),
        0,
        "the stale tenant made room: {stats:?}"
    );
    assert_eq!(
        stats.tenant_open(hot),
        2,
        "the hot tenant kept both: {stats:?}"
    );
    assert_eq!(stats.stale_evictions, 1, "{stats:?}");
    orchestrator.close();
}

#[tokio::test]
async fn a_returned_connection_wakes_a_waiter_of_its_tenant_at_once() {
    let mut env = TestEnv::new();
    env.set("TENANTD_ACQUIRE_TIMEOUT_MS", "5000");
    let (orchestrator, codes) = small_budget(&mut env).await;
    let (hot, other) = (&codes[0], &codes[1]);
    let o1 = orchestrator.tenant_client(other).await.unwrap();
    let held = vec![
        orchestrator.tenant_client(hot).await.unwrap(),
        orchestrator.tenant_client(hot).await.unwrap(),
    ];
    // Full budget, `hot` beyond its share and nobody stale: its requests
    // wait for its own connections.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (orchestrator, hot) = (orchestrator.clone(), hot.clone());
            tokio::spawn(async move {
                let client = orchestrator.tenant_client(&hot).await.unwrap();
                let woke = Instant::now();
                drop(client);
                woke
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let returned = Instant::now();
    drop(held);
    for waiter in waiters {
        let woke = waiter.await.unwrap();
        let delay = woke.duration_since(returned);
        assert!(
            delay < Duration::from_millis(15),
            "a waiter got the returned connection {delay:?} later"
        );
    }
    let stats = orchestrator.pool_stats();
    assert!(stats.waits.own_connection >= 2, "{stats:?}");
    assert_eq!(
        stats.tenant_open(hot),
        2,
        "no connection was opened: {stats:?}"
    );
    drop(o1);
    orchestrator.close();
}
