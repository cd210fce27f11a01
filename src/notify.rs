//! Catalog change notifications between every tenantd process sharing one
//! AUTH database, over PostgreSQL `LISTEN`/`NOTIFY` on the [`CHANNEL`]
//! channel.
//!
//! Whoever changes a tenant's status [`publish`]es its code; each process's
//! listener (one dedicated AUTH connection, named [`APPLICATION_NAME`] in
//! `pg_stat_activity`) turns notifications into [`CatalogEvent`]s. When that
//! connection drops, the listener connects again with a growing delay,
//! subscribes again and reports [`CatalogEvent::All`], since notifications
//! sent meanwhile are lost. It never gives up: a failure that
//! [`crate::pg_error::is_transient`] does not call transient (a refused
//! password, a dropped database) is logged as an error and tried again after
//! the longest delay. This module carries events; it does not decide
//! what a process does with them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Config, NoTls};

use crate::pg_error::{self, Backoff};
use crate::tenant::TenantCode;

/// The notification channel (channels are per database: this one is AUTH's).
pub const CHANNEL: &str = "tenantd_catalog";
/// `application_name` of the listener's connection.
pub const APPLICATION_NAME: &str = "tenantd-notify";
/// Payload meaning "anything may have changed".
const ALL: &str = "*";
const LISTEN_SQL: &str = "LISTEN tenantd_catalog";
const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2)";
/// First delay before connecting again; doubled up to [`MAX_RETRY`].
const MIN_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// TCP keepalive idle time, so a vanished server is noticed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// The listener's connection failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Connecting, subscribing or reading failed.
    #[error("catalog notification connection failed: {}; retrying", pg_error::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// The connection ended.
    #[error("catalog notification connection closed; retrying")]
    Closed,
}

impl NotifyError {
    /// Whether connecting again soon may help ([`pg_error::is_transient`];
    /// a closed connection always may).
    fn is_transient(&self) -> bool {
        match self {
            Self::Db(error) => pg_error::is_transient(error),
            Self::Closed => true,
        }
    }
}

/// What a process learns from the catalog channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    /// This tenant changed (status, or anything routing depends on).
    Tenant(TenantCode),
    /// Anything may have changed: the listener (re)subscribed, or a wildcard was sent.
    All,
}

impl CatalogEvent {
    fn parse(payload: &str) -> Self {
        if payload == ALL {
            return Self::All;
        }
        TenantCode::parse(payload).map_or_else(
            |_| {
                tracing::warn!(
                    payload,
                    "unexpected catalog notification; treating it as 'all'"
                );
                Self::All
            },
            Self::Tenant,
        )
    }
}

/// Tells every listening process that `code` changed (`None`: everything).
pub async fn publish(
    client: &tokio_postgres::Client,
    code: Option<&TenantCode>,
) -> Result<(), NotifyError> {
    let payload = code.map_or(ALL, TenantCode::as_str);
    client.execute(NOTIFY_SQL, &[&CHANNEL, &payload]).await?;
    Ok(())
}

/// The listener's state, for metrics and tests.
#[derive(Debug, Default)]
pub struct ListenerStatus {
    connected: AtomicBool,
    reconnects: AtomicU64,
    received: AtomicU64,
}

impl ListenerStatus {
    /// Whether the listener is subscribed now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Times it subscribed again after losing its connection.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Notifications received.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Starts listening with `config` (an AUTH connection) until `shutdown`
/// changes or is dropped, or the returned receiver is dropped.
pub fn spawn_listener(
    mut config: Config,
    shutdown: watch::Receiver<bool>,
) -> (mpsc::UnboundedReceiver<CatalogEvent>, Arc<ListenerStatus>) {
    config
        .application_name(APPLICATION_NAME)
        .keepalives_idle(KEEPALIVE_IDLE);
    let (events, receiver) = mpsc::unbounded_channel();
    let status = Arc::new(ListenerStatus::default());
    tokio::spawn(run(config, events, status.clone(), shutdown));
    (receiver, status)
}

async fn run(
    config: Config,
    events: mpsc::UnboundedSender<CatalogEvent>,
    status: Arc<ListenerStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(MIN_RETRY, MAX_RETRY);
    let mut subscribed_before = false;
    loop {
        let mut subscribed = false;
        let ended = tokio::select! {
            ended = session(&config, &events, &status, subscribed_before, &mut subscribed) => ended,
            _ = shutdown.changed() => return,
        };
        status.connected.store(false, Ordering::Relaxed);
        if events.is_closed() {
            return;
        }
        if subscribed {
            subscribed_before = true;
            backoff.reset();
        }
        let delay = if ended.is_transient() {
            let delay = backoff.next_delay();
            tracing::warn!(error = %ended, retry_in_ms = delay.as_millis() as u64, "catalog listener lost");
            delay
        } else {
            tracing::error!(error = %ended, retry_in_ms = MAX_RETRY.as_millis() as u64, "catalog listener refused");
            MAX_RETRY
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One connection's life: connect, subscribe, forward notifications until it
/// ends. Returns why it ended; sets `subscribed` once `LISTEN` succeeded.
async fn session(
    config: &Config,
    events: &mpsc::UnboundedSender<CatalogEvent>,
    status: &ListenerStatus,
    resubscribing: bool,
    subscribed: &mut bool,
) -> NotifyError {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(error) => return error.into(),
    };
    let (payloads, mut received) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message? {
                AsyncMessage::Notification(n) => {
                    if payloads.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                _ => continue,
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    if let Err(error) = client.batch_execute(LISTEN_SQL).await {
        return error.into();
    }
    *subscribed = true;
    status.connected.store(true, Ordering::Relaxed);
    if resubscribing {
        status.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(channel = CHANNEL, "catalog listener subscribed");
    if events.send(CatalogEvent::All).is_err() {
        return NotifyError::Closed;
    }
    while let Some(payload) = received.recv().await {
        status.received.fetch_add(1, Ordering::Relaxed);
        if events.send(CatalogEvent::parse(&payload)).is_err() {
            return NotifyError::Closed;
        }
    }
    match driver.await {
        Ok(Err(error)) => error.into(),
        _ => NotifyError::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(CatalogEvent::parse("*"), CatalogEvent::All);
        assert_eq!(
            CatalogEvent::parse("acme"),
            CatalogEvent::Tenant(TenantCode::parse("acme").unwrap())
        );
        assert_eq!(CatalogEvent::parse("Not a code"), CatalogEvent::All);
    }
}
