//! The `tenantd` binary end to end: commands, `--json` output, exit codes
//! (0 ok, 2 invalid input or configuration, 3 unknown tenant, 4 conflict,
//! 5 server unreachable) and error messages that say what to fix.

use crate::common;

use std::process::Output;

use crate::common::TestEnv;
use serde_json::Value;

/// Runs `tenantd <args>` with this test's environment.
async fn tenantd(env: &TestEnv, args: &[&str]) -> Output {
    let mut command = env.command();
    command.args(args);
    run(command).await
}

/// Runs a prepared command to completion.
async fn run(mut command: std::process::Command) -> Output {
    command.stdin(std::process::Stdio::null());
    tokio::process::Command::from(command)
        .output()
        .await
        .expect("run tenantd")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Describes a finished run for assertion messages.
fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(output),
        stderr(output)
    )
}

/// Asserts the exit code and returns the output.
#[track_caller]
fn expect_code(output: Output, code: i32) -> Output {
    assert_eq!(output.status.code(), Some(code), "{}", describe(&output));
    output
}

/// Runs `tenantd <args> --json`, asserts exit 0 and parses stdout.
async fn json(env: &TestEnv, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let output = expect_code(tenantd(env, &args).await, 0);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "tenantd {args:?} printed no JSON ({e}): {}",
            describe(&output)
        )
    })
}

async fn current_user(url: &str) -> Result<String, tokio_postgres::Error> {
    let client = common::connect_config(&url.parse().expect("URL")).await?;
    let row = client.query_one("SELECT current_user::text", &[]).await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn init_twice_changes_nothing_the_second_time() {
    let env = TestEnv::new();
    let first = json(&env, &["init"]).await;
    assert_eq!(
        first["created_databases"],
        serde_json::json!([
            format!("{}_auth", env.prefix),
            format!("{}_shared", env.prefix)
        ]),
        "{first}"
    );
    let second = expect_code(tenantd(&env, &["init"]).await, 0);
    assert!(
        stdout(&second).contains("nothing to do"),
        "{}",
        describe(&second)
    );
    let third = json(&env, &["init"]).await;
    assert_eq!(third["created_databases"], serde_json::json!([]), "{third}");
    assert_eq!(third["template_built"], false, "{third}");
    assert_eq!(third["template"], first["template"], "{third}");
}

#[tokio::test]
async fn tenant_life_cycle_through_the_binary() {
    let env = TestEnv::new();
    let database = format!("{}_acme", env.prefix);
    let created = json(
        &env,
        &[
            "tenant",
            "create",
            "acme",
            "--name",
            "Acme Steel",
            "--region",
            "CH",
            "--plan",
            "pro",
        ],
    )
    .await;
    assert_eq!(created["status"], "active", "{created}");
    assert_eq!(created["code"], "acme");
    assert_eq!(created["region"], "CH");
    assert_eq!(created["plan"], "pro");
    assert_eq!(created["database_name"], database.as_str());
    assert!(env.databases().await.contains(&database));

    let listed = json(&env, &["tenant", "list"]).await;
    let codes: Vec<&str> = listed
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|t| t["code"].as_str())
        .collect();
    assert_eq!(codes, ["acme"], "{listed}");
    let shown = json(&env, &["tenant", "show", "acme"]).await;
    assert_eq!(shown["name"], "Acme Steel");
    assert_eq!(shown["id"], created["id"]);

    let url = stdout(&expect_code(
        tenantd(&env, &["tenant", "url", "acme"]).await,
        0,
    ));
    let url = url.trim();
    assert!(url.starts_with("postgres://"), "{url}");
    let session = common::connect_config(&url.parse().expect("URL"))
        .await
        .expect("the URL connects");
    let user: String = session
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(user, database, "connected as the tenant's own role");

    let suspended = json(&env, &["tenant", "suspend", "acme", "--reason", "unpaid"]).await;
    assert_eq!(suspended["status"], "suspended");
    assert_eq!(suspended["status_reason"], "unpaid");
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "suspend ends open sessions"
    );
    assert!(
        current_user(url).await.is_err(),
        "a suspended role cannot log in"
    );
    let resumed = json(&env, &["tenant", "resume", "acme"]).await;
    assert_eq!(resumed["status"], "active");
    assert_eq!(current_user(url).await.expect("resumed"), database);

    let refused = expect_code(
        tenantd(&env, &["tenant", "drop", "acme", "--confirm", "acm"]).await,
        2,
    );
    assert!(
        stderr(&refused).contains("--confirm"),
        "{}",
        describe(&refused)
    );
    assert!(env.databases().await.contains(&database), "nothing dropped");
    assert_eq!(
        json(&env, &["tenant", "show", "acme"]).await["status"],
        "active"
    );

    let dropped = json(&env, &["tenant", "drop", "acme", "--confirm", "acme"]).await;
    assert_eq!(dropped["status"], "deleted");
    assert!(!env.databases().await.contains(&database));
    assert!(!env.roles().await.contains(&database));
    assert_eq!(json(&env, &["tenant", "list"]).await, serde_json::json!([]));
    let all = json(&env, &["tenant", "list", "--all"]).await;
    assert_eq!(all[0]["status"], "deleted", "the row stays: {all}");
}

#[tokio::test]
async fn invalid_codes_exit_2_and_create_nothing() {
    let env = TestEnv::new();
    expect_code(tenantd(&env, &["init"]).await, 0);
    let (databases, roles) = (env.databases().await, env.roles().await);
    let long = "a".repeat(41);
    let malformed = ["Acme", "a", "a;drop database x", "a b", long.as_str()];
    for code in malformed {
        let output = expect_code(
            tenantd(&env, &["tenant", "create", code, "--name", "X"]).await,
            2,
        );
        let message = stderr(&output);
        assert!(
            message.contains("expected 2 to 40 characters, a lower-case letter"),
            "{code:?}: {}",
            describe(&output)
        );
    }
    for code in ["auth", "shared", "template"] {
        let output = expect_code(
            tenantd(&env, &["tenant", "create", code, "--name", "X"]).await,
            2,
        );
        assert!(
            stderr(&output).contains("is reserved"),
            "{code:?}: {}",
            describe(&output)
        );
    }
    let show = expect_code(tenantd(&env, &["tenant", "show", "Acme"]).await, 2);
    assert!(
        stderr(&show).contains("invalid tenant code"),
        "{}",
        describe(&show)
    );
    assert_eq!(env.databases().await, databases);
    assert_eq!(env.roles().await, roles);
    assert_eq!(
        json(&env, &["tenant", "list", "--all"]).await,
        serde_json::json!([])
    );
}

#[tokio::test]
async fn unknown_tenant_exits_3_and_duplicate_create_exits_4() {
    let env = TestEnv::new();
    expect_code(
        tenantd(&env, &["tenant", "create", "dup", "--name", "Dup"]).await,
        0,
    );
    for args in [
        &["tenant", "show", "ghost"][..],
        &["tenant", "suspend", "ghost"],
        &["tenant", "resume", "ghost"],
        &["tenant", "url", "ghost"],
        &["tenant", "drop", "ghost", "--confirm", "ghost"],
    ] {
        let output = expect_code(tenantd(&env, args).await, 3);
        assert!(
            stderr(&output).contains("unknown tenant ghost"),
            "{args:?}: {}",
            describe(&output)
        );
    }
    let databases = env.databases().await;
    let duplicate = expect_code(
        tenantd(&env, &["tenant", "create", "dup", "--name", "Again"]).await,
        4,
    );
    assert!(
        stderr(&duplicate).contains("already exists"),
        "{}",
        describe(&duplicate)
    );
    assert_eq!(env.databases().await, databases);
    assert_eq!(json(&env, &["tenant", "show", "dup"]).await["name"], "Dup");
    let wrong = expect_code(tenantd(&env, &["tenant", "resume", "dup"]).await, 4);
    assert!(stderr(&wrong).contains("is active"), "{}", describe(&wrong));
}

#[tokio::test]
async fn bad_configuration_exits_2_naming_the_variable() {
    let env = TestEnv::new();
    let cases: [(&str, Option<&str>); 4] = [
        ("DB_TENANT_PREFIX", Some("Bad")),
        ("DATABASE_URL", Some("mysql://x")),
        ("TENANTD_SECRET", None),
        ("TENANTD_SECRET", Some("short")),
    ];
    for (variable, value) in cases {
        let mut command = env.command();
        command.args(["tenant", "list"]);
        match value {
            Some(value) => command.env(variable, value),
            None => command.env_remove(variable),
        };
        let output = expect_code(run(command).await, 2);
        assert!(
            stderr(&output).contains(&format!("error: {variable}:")),
            "{variable}={value:?}: {}",
            describe(&output)
        );
    }
    let mut command = env.command();
    command
        .args(["init"])
        .env("TENANTD_MIGRATIONS_DIR", "/nonexistent");
    let output = expect_code(run(command).await, 2);
    assert!(
        stderr(&output).contains("/nonexistent"),
        "{}",
        describe(&output)
    );
    assert!(env.databases().await.is_empty(), "nothing created");
    assert!(env.roles().await.is_empty(), "nothing created");
}

/// The commands that go through the catalog first.
#[tokio::test]
async fn unreachable_server_exits_5_and_says_to_check_database_url() {
    let mut env = TestEnv::new();
    env.set("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres");
    for args in [
        &["tenant", "list"][..],
        &["tenant", "show", "acme"],
        &["reconcile"],
    ] {
        let output = expect_code(tenantd(&env, args).await, 5);
        assert!(
            stderr(&output).contains("check DATABASE_URL"),
            "{args:?}: {}",
            describe(&output)
        );
    }
}

/// The commands that start with an admin connection (`init`, `create`).
#[tokio::test]
async fn unreachable_server_on_init_and_create_says_to_check_database_url() {
    let mut env = TestEnv::new();
    env.set("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres");
    for args in [&["init"][..], &["tenant", "create", "acme", "--name", "A"]] {
        let output = expect_code(tenantd(&env, args).await, 5);
        let message = stderr(&output);
        assert!(
            message.contains("DATABASE_URL") && message.contains("127.0.0.1:1"),
            "{args:?}: {}",
            describe(&output)
        );
    }
}

#[tokio::test]
async fn create_refuses_a_foreign_database_with_the_tenant_name() {
    let env = TestEnv::new();
    expect_code(tenantd(&env, &["init"]).await, 0);
    let foreign = format!("{}_taken", env.prefix);
    env.admin()
        .await
        .batch_execute(&format!("CREATE DATABASE \"{foreign}\""))
        .await
        .expect("create the foreign database");
    let output = expect_code(
        tenantd(&env, &["tenant", "create", "taken", "--name", "Taken"]).await,
        4,
    );
    assert!(
        stderr(&output).contains("belongs to no tenant"),
        "{}",
        describe(&output)
    );
    assert!(env.databases().await.contains(&foreign), "left alone");
    assert!(!env.roles().await.contains(&foreign), "no role made");
    expect_code(tenantd(&env, &["tenant", "show", "taken"]).await, 3);
    let clean = json(&env, &["reconcile"]).await;
    assert_eq!(clean["rolled_back"], serde_json::json!([]), "{clean}");
    assert!(env.databases().await.contains(&foreign), "still left alone");
}

#[tokio::test]
async fn help_explains_the_commands_and_options() {
    let env = TestEnv::new();
    let top = stdout(&expect_code(tenantd(&env, &["--help"]).await, 0));
    for word in [
        "DATABASE_URL",
        "TENANTD_SECRET",
        "init",
        "tenant",
        "reconcile",
        "dev",
        "--json",
    ] {
        assert!(top.contains(word), "tenantd --help lacks {word:?}:\n{top}");
    }
    assert!(
        !top.contains("crash-at") && !top.contains("CRASH"),
        "the crash flag stays hidden:\n{top}"
    );
    let create = stdout(&expect_code(
        tenantd(&env, &["tenant", "create", "--help"]).await,
        0,
    ));
    for word in [
        "--name",
        "--region",
        "DZ, CH, FR, BE or CA",
        "--plan",
        "free, pro or enterprise",
        "--admin-email",
        "2-40 chars",
        "template",
    ] {
        assert!(
            create.contains(word),
            "tenant create --help lacks {word:?}:\n{create}"
        );
    }
}
