//! `tenantd serve`: builds the [`super::Application`], prints where it
//! listens (and the bootstrap admin key, once), and serves until SIGTERM or
//! SIGINT.

use serde_json::json;

use super::{Application, ServeError};
use crate::config::Settings;

/// Runs the server until a termination signal.
pub async fn serve(settings: Settings, json: bool) -> Result<(), ServeError> {
    let app = Application::build(settings).await?;
    let address = app.local_addr()?;
    if json {
        println!(
            "{}",
            json!({ "listen": address.to_string(), "bootstrap_admin_key": app.bootstrap_key() })
        );
    } else {
        println!("tenantd listening on http://{address}");
        if let Some(key) = app.bootstrap_key() {
            println!(
                "bootstrap admin key (shown once, store it now): {key}\n\
                 try: curl -H 'Authorization: Bearer {key}' http://{address}/v1/tenants"
            );
        }
    }
    app.run_until(shutdown_signal()).await?;
    tracing::info!("tenantd stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
