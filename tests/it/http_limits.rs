//! The listener's limits against the real server: 2,000 slow or idle
//! clients (raw sockets that send nothing or half a head) neither stop a
//! normal client from being served nor stay open past their timeout; the
//! idle keep-alive timeout is separate from the header timeout; a trickled
//! body gets a 408; and a graceful shutdown closes idle and half-open
//! connections at once while a request in flight finishes.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http_support::TestServer;

/// The server's `host:port`.
fn address(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Opens `n` raw connections, `batch` at a time (the listen backlog is finite).
async fn open_sockets(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for start in (0..n).step_by(100) {
        let batch = (start..n.min(start + 100)).map(|_| TcpStream::connect(addr.to_owned()));
        for socket in futures::future::join_all(batch).await {
            sockets.push(socket.expect("connect"));
        }
    }
    sockets
}

/// Waits until the server closes `socket` (EOF or reset), at most `limit`;
/// returns what was read before.
async fn closed_within(socket: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(read),
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
        }
    }
}

/// A normal request is served promptly.
async fn served_promptly(server: &TestServer) {
    let started = Instant::now();
    let (status, body) = server.admin(Method::GET, "/v1/tenants", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a normal request took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn two_thousand_slow_clients_neither_block_service_nor_stay_open() {
    let server = TestServer::start_with(&[
        ("TENANTD_HTTP_MAX_CONNECTIONS", "1000"),
        ("TENANTD_HTTP_HEADER_TIMEOUT_MS", "2000"),
        ("TENANTD_HTTP_IDLE_TIMEOUT_MS", "2000"),
    ])
    .await;
    let addr = address(&server);
    let started = Instant::now();
    let mut silent = open_sockets(&addr, 1000).await;
    let mut half = open_sockets(&addr, 1000).await;
    for socket in &mut half {
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("half a head");
    }
    // Twice the cap: the normal client is served all the same.
    served_promptly(&server).await;
    // Each is closed at most 2 s after it was accepted (or sooner, evicted).
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut still_open = 0;
    for socket in silent.iter_mut().chain(half.iter_mut()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match closed_within(socket, left).await {
            Some(read) => assert!(read.is_empty(), "nothing is answered to a half request"),
            None => still_open += 1,
        }
    }
    assert_eq!(
        still_open,
        0,
        "slow clients still open after {:?}",
        started.elapsed()
    );
    served_promptly(&server).await;
}

#[tokio::test]
async fn idle_and_header_timeouts_are_separate() {
    let server = TestServer::start_with(&[
        ("TENANTD_HTTP_HEADER_TIMEOUT_MS", "3000"),
        ("TENANTD_HTTP_IDLE_TIMEOUT_MS", "800"),
    ])
    .await;
    let addr = address(&server);

    // A kept-alive connection without a request goes after the idle timeout.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    assert!(
        closed_within(&mut kept, Duration::from_secs(3))
            .await
            .is_some()
    );
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(700) && idle < Duration::from_millis(2500),
        "idle connection closed after {idle:?}"
    );

    // A new connection gets the header timeout to send its first request.
    let opened = Instant::now();
    let mut fresh = TcpStream::connect(&addr).await.unwrap();
    assert!(
        closed_within(&mut fresh, Duration::from_secs(6))
            .await
            .is_some()
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(2800),
        "a new connection closed after {:?}",
        opened.elapsed()
    );

    // After a request, a head begun is given the header timeout from its
    // first byte, however long the connection had been idle.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let _ = slow.read(&mut buf).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let begun = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(6))
            .await
            .is_some()
    );
    assert!(
        begun.elapsed() >= Duration::from_millis(2800),
        "a begun head was cut after {:?}",
        begun.elapsed()
    );
}

#[tokio::test]
async fn a_trickled_body_is_answered_408() {
    let server = TestServer::start_with(&[("TENANTD_HTTP_BODY_TIMEOUT_MS", "1000")]).await;
    let mut socket = TcpStream::connect(address(&server)).await.unwrap();
    let head = format!(
        "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"code\"",
        server.admin_key
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if socket.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), trickle).await;
    let read = closed_within(&mut socket, Duration::from_secs(3))
        .await
        .expect("closed after the body timeout");
    let text = String::from_utf8_lossy(&read);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("TENANTD_HTTP_BODY_TIMEOUT_MS"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let (status, body) = server.admin(Method::GET, "/v1/tenants", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"], json!([]), "nothing was created: {body}");
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once_and_finishes_requests() {
    // Default timeouts: 10 s for a head, 60 s idle.
    let mut server = TestServer::start().await;
    server.create_tenant("acme", "pro").await;
    let key = server.tenant_key("acme").await;
    let addr = address(&server);
    let fresh = open_sockets(&addr, 300).await;
    let mut kept = open_sockets(&addr, 300).await;
    for socket in &mut kept {
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let mut half = open_sockets(&addr, 100).await;
    for socket in &mut half {
        socket.write_all(b"GET /healthz HTT").await.unwrap();
    }
    let slow = {
        let http = server.http.clone();
        let url = format!("{}/v1/sql", server.base);
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({ "sql": "SELECT pg_sleep(1.5)::text AS slept" }))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut others: Vec<TcpStream> = fresh.into_iter().chain(kept).chain(half).collect();
    let started = Instant::now();
    server.stop_serving().await;
    let stopped = started.elapsed();
    let response = slow
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        stopped < Duration::from_secs(4),
        "shutdown took {stopped:?} with idle connections open"
    );
    for socket in &mut others {
        assert!(
            closed_within(socket, Duration::from_millis(500))
                .await
                .is_some(),
            "an idle connection outlived the server"
        );
    }
}
