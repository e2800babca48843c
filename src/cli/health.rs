//! The health endpoint: a tiny HTTP responder on `--health-port`.
//!
//! `GET` anything: 200 with the server's counters as JSON while below the
//! session limit, 503 at the limit (the original's health check failed when
//! its goroutine count passed `--max_goroutines`; here the session limit is
//! what stands for it). Each connection is answered once and closed.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::net::server::SharedSummary;

/// Answers health checks on `listener` for ever.
pub async fn serve(
    listener: TcpListener,
    shared: SharedSummary,
    max_sessions: usize,
) -> io::Result<()> {
    loop {
        let (mut conn, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
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
            let _ = conn.write_all(resp.as_bytes()).await;
        });
    }
}
