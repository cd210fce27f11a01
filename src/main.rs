//! The `tenantd` binary: sets up logging, parses arguments and hands over to
//! [`tenantd::cli`].

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("TENANTD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,tenantd=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("TENANTD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    tenantd::cli::run(tenantd::cli::Cli::parse()).await
}
