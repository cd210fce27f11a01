//! Provisioning paths, concurrency and bad input: the template clone and the
//! create-then-migrate path give identical schemas; concurrent creates of one
//! code make one database; refused requests leave nothing behind.

use crate::common::TestEnv;
use tenantd::ProvisionError;
use tenantd::{Error, ErrorKind, NewTenant, Orchestrator, ProvisionPath, Settings, TenantStatus};

/// A normalised description of a database's schema: relations, columns,
/// constraints, indexes, ownership and ACLs (the tenant's role name replaced).
const SCHEMA_SQL: &str = r#"
SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' owner=' || pg_get_userbyid(c.relowner)
       || ' acl=' || coalesce(c.relacl::text, '-')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public'
UNION ALL
SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' notnull=' || a.attnotnull || ' identity=' || a.attidentity::text
       || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'con ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'nsp ' || nspname || ' owner=' || pg_get_userbyid(nspowner) || ' acl=' || coalesce(nspacl::text, '-')
  FROM pg_namespace WHERE nspname = 'public'
UNION ALL
SELECT 'hist ' || version || ' ' || name || ' ' || checksum FROM refinery_schema_history
ORDER BY 1
"#;

async fn schema_of(env: &TestEnv, database: &str) -> Vec<String> {
    let client = env.admin_to(database).await;
    let rows = client.query(SCHEMA_SQL, &[]).await.unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0).replace(database, "<tenant>"))
        .collect()
}

#[tokio::test]
async fn template_and_migrate_paths_give_the_same_schema() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let cloned = orchestrator
        .create_tenant_via(
            NewTenant::new(env.code("cloned"), "Cloned"),
            ProvisionPath::Template,
            "test",
        )
        .await
        .unwrap();
    let migrated = orchestrator
        .create_tenant_via(
            NewTenant::new(env.code("migrated"), "Migrated"),
            ProvisionPath::Migrate,
            "test",
        )
        .await
        .unwrap();
    assert_eq!(cloned.schema_version, migrated.schema_version);
    let (a, b) = (
        schema_of(&env, &cloned.database_name).await,
        schema_of(&env, &migrated.database_name).await,
    );
    assert!(
        a.len() > 100,
        "the schema description is substantial: {} lines",
        a.len()
    );
    assert!(
        a.iter()
            .filter(|l| l.starts_with("rel ") && l.contains(" r owner="))
            .count()
            >= 10
    );
    let only_a: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "template only: {only_a:#?}\nmigrate only: {only_b:#?}"
    );
    // Every object (the public schema included) belongs to the tenant's
    // role, which is not the database's owner (tenantd's admin role is).
    let foreign_owned: Vec<_> = a
        .iter()
        .filter(|l| {
            (l.starts_with("rel ") || l.starts_with("nsp ")) && !l.contains("owner=<tenant>")
        })
        .collect();
    assert!(
        foreign_owned.is_empty(),
        "every object belongs to the tenant's role: {foreign_owned:#?}"
    );
    let admin = env.admin().await;
    for tenant in [&cloned, &migrated] {
        let owner: String = admin
            .query_one(
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
                &[&tenant.database_name],
            )
            .await
            .unwrap()
            .get(0);
        assert_ne!(
            owner, tenant.database_name,
            "the database is not the tenant's"
        );
    }
}

#[tokio::test]
async fn the_template_is_sealed_and_named_after_the_migration_set() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let report = orchestrator.init().await.unwrap();
    assert!(
        report
            .template
            .starts_with(&format!("{}__tpl_", env.prefix))
    );
    let row = env
        .admin()
        .await
        .query_one(
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1",
            &[&report.template],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "IS_TEMPLATE");
    assert!(!row.get::<_, bool>(1), "ALLOW_CONNECTIONS false");
    // No build database is left behind.
    let leftovers: Vec<String> = env
        .databases()
        .await
        .into_iter()
        .filter(|d| d.contains("__build_"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn concurrent_creates_of_one_code_make_one_database() {
    let env = TestEnv::new();
    env.orchestrator().await;
    // Separate orchestrators stand for separate processes sharing the catalog.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let settings = env.settings();
        let code = env.code("dup");
        tasks.push(tokio::spawn(async move {
            let orchestrator = Orchestrator::connect(settings).await.unwrap();
            orchestrator
                .create_tenant(NewTenant::new(code, "Dup"))
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(tenant) => {
                assert_eq!(tenant.status, TenantStatus::Active);
                created += 1;
            }
            Err(error) => {
                assert!(
                    matches!(error, Error::Provision(ProvisionError::AlreadyExists(_))),
                    "{error}"
                );
                assert_eq!(error.kind(), ErrorKind::Conflict);
                assert!(error.to_string().contains("already exists"));
            }
        }
    }
    assert_eq!(created, 1);
    let dbs: Vec<String> = env
        .databases()
        .await
        .into_iter()
        .filter(|d| d.ends_with("_dup"))
        .collect();
    assert_eq!(dbs.len(), 1);
}

#[tokio::test]
async fn a_foreign_database_with_the_tenant_name_is_refused_and_kept() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let foreign = format!("{}_taken", env.prefix);
    env.admin()
        .await
        .batch_execute(&format!("CREATE DATABASE \"{foreign}\""))
        .await
        .unwrap();
    let (dbs_before, roles_before) = (env.databases().await, env.roles().await);
    let error = orchestrator
        .create_tenant(NewTenant::new(env.code("taken"), "Taken"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Provision(ProvisionError::NameTaken { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("belongs to no tenant"));
    assert_eq!(
        env.databases().await,
        dbs_before,
        "the foreign database is kept, nothing added"
    );
    assert_eq!(env.roles().await, roles_before);
    assert_eq!(
        orchestrator
            .tenant(&env.code("taken"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn unknown_tenants_are_refused_with_not_found() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let ghost = env.code("ghost");
    assert_eq!(
        orchestrator.tenant(&ghost).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        orchestrator
            .suspend_tenant(&ghost, None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        orchestrator.resume_tenant(&ghost).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        orchestrator.drop_tenant(&ghost).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        orchestrator.tenant_client(&ghost).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        orchestrator
            .tenant_connection(&ghost)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn wrong_status_transitions_are_conflicts() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("state");
    orchestrator
        .create_tenant(NewTenant::new(code.clone(), "State"))
        .await
        .unwrap();
    let error = orchestrator.resume_tenant(&code).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    orchestrator.suspend_tenant(&code, None).await.unwrap();
    assert_eq!(
        orchestrator
            .suspend_tenant(&code, None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    orchestrator.drop_tenant(&code).await.unwrap();
    assert_eq!(
        orchestrator.drop_tenant(&code).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // The code is free again after a drop; the old row stays.
    let again = orchestrator
        .create_tenant(NewTenant::new(code.clone(), "State again"))
        .await
        .unwrap();
    assert_eq!(again.status, TenantStatus::Active);
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_unavailable_error() {
    let mut env = TestEnv::new();
    env.set("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres");
    let orchestrator = Orchestrator::connect(env.settings()).await.unwrap();
    let error = orchestrator.init().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
    let error = orchestrator.tenants(&Default::default()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
}

#[tokio::test]
async fn a_missing_migrations_directory_is_refused_before_anything_is_created() {
    let mut env = TestEnv::new();
    env.set("TENANTD_MIGRATIONS_DIR", "/nonexistent/tenantd-migrations");
    let settings = Settings::from_lookup(|k| env.vars().get(k).cloned()).unwrap();
    let error = Orchestrator::connect(settings)
        .await
        .err()
        .expect("refused");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(
        error
            .to_string()
            .contains("/nonexistent/tenantd-migrations/auth"),
        "{error}"
    );
    assert!(env.databases().await.is_empty());
}

#[tokio::test]
async fn tenant_and_shared_clients() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("clienttest");
    let tenant = orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Client"))
        .await
        .unwrap();
    let client = orchestrator.tenant_client(&code).await.unwrap();
    let row = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), tenant.database_name);
    assert_eq!(row.get::<_, String>(1), tenant.database_name);
    let shared = orchestrator.shared_client().await.unwrap();
    let n: i64 = shared
        .query_one("SELECT count(*) FROM materials", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    let write = shared.execute("DELETE FROM units", &[]).await.unwrap_err();
    assert_eq!(
        write.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
    );
}

/// Copies the built-in migration sets into a temporary directory.
fn copy_builtin_migrations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for set in ["auth", "shared", "tenant"] {
        let target = dir.path().join(set);
        std::fs::create_dir_all(&target).unwrap();
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(set);
        for entry in std::fs::read_dir(source).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
    dir
}

#[tokio::test]
async fn a_new_tenant_migration_set_builds_a_new_template() {
    let mut env = TestEnv::new();
    let first = env.orchestrator().await.init().await.unwrap().template;
    let migrations = copy_builtin_migrations();
    std::fs::write(
        migrations.path().join("tenant/V2__loyalty.sql"),
        "CREATE TABLE loyalty_cards (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         client_id bigint NOT NULL REFERENCES clients (id));",
    )
    .unwrap();
    env.set(
        "TENANTD_MIGRATIONS_DIR",
        migrations.path().to_str().unwrap(),
    );
    let orchestrator = Orchestrator::connect(env.settings()).await.unwrap();
    let report = orchestrator.init().await.unwrap();
    assert!(report.template_built);
    assert_ne!(
        report.template, first,
        "the template is named after the set"
    );
    let databases = env.databases().await;
    assert!(databases.contains(&report.template));
    assert!(!databases.contains(&first), "the old template is dropped");

    let tenant = orchestrator
        .create_tenant(NewTenant::new(env.code("newer"), "Newer"))
        .await
        .unwrap();
    assert_eq!(tenant.schema_version, Some(2));
    let client = env.admin_to(&tenant.database_name).await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM loyalty_cards", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn twenty_concurrent_creates_in_one_process_all_succeed() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let orchestrator = orchestrator.clone();
            let code = env.code(&format!("par{i:02}"));
            tokio::spawn(async move {
                orchestrator
                    .create_tenant(NewTenant::new(code, "Parallel"))
                    .await
            })
        })
        .collect();
    // More operations than any pool has connections: they must queue, not deadlock.
    let all = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        futures::future::join_all(tasks),
    )
    .await
    .expect("20 concurrent creates finish (no pool deadlock)");
    for result in all {
        assert_eq!(result.unwrap().unwrap().status, TenantStatus::Active);
    }
    assert_eq!(
        env.databases()
            .await
            .iter()
            .filter(|d| d.contains("_par"))
            .count(),
        20
    );
}
