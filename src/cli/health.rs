//! The health endpoint: a tiny HTTP responder on `--health-port`.
//!
//! `GET` anything: 200 with the server's counters as JSON while below the
//! session limit, 503 at the limit (the original's health check failed when
//! its goroutine count passed `--max_goroutines`; here the session limit is
//! what stands for it). Each connection is answered once and closed.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::net::server::SharedSummary;

/// Most health connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// Longest pause after a failed accept (the pause doubles from 10 ms).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Answers health checks on `listener` for ever. A failed accept (EMFILE
/// when file descriptors run out, a connection reset before it was
/// accepted) is logged and retried after a pause that doubles up to
/// a second: the endpoint outlives the flood that caused it.
pub async fn serve(
    listener: TcpListener,
    shared: SharedSummary,
    max_sessions: usize,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return Ok(()); // the semaphore is never closed
        };
        let mut conn = match listener.accept().await {
            Ok((conn, _)) => {
                backoff = Duration::from_millis(10);
                conn
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "health endpoint: accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut buf = [0u8; 1024];
            // Read the request head (best effort, bounded in size and time).
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf)).await;
            let (sessions, body) = match shared.lock() {
                Ok(s) => (
                    s.sessions,
                    serde_json::json!({
                        "status": if s.sessions < max_sessions { "ok" } else { "busy" },
                        "sessions": s.sessions,
                        "max_sessions": max_sessions,
                        "datagrams_received": s.stats.datagrams_received,
                        "datagrams_sent": s.stats.datagrams_sent,
                        "sessions_opened": s.stats.sessions_opened,
                        "sessions_closed": s.stats.sessions_closed,
                        "sessions_expired": s.stats.sessions_expired,
                        "rejected": s.stats.rejected_total(),
                        "send_errors": s.send_errors,
                        "peak_sessions": s.peak_sessions,
                        "peak_rss_kb": super::report::peak_rss_kb(),
                    })
                    .to_string(),
                ),
                Err(_) => (max_sessions, "{\"status\":\"unknown\"}".to_string()),
            };
            let status = if sessions < max_sessions {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(2), conn.write_all(resp.as_bytes())).await;
        });
    }
}
