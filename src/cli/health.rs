//! The health endpoint: a tiny HTTP responder on `--health-port`.
//!
//! | path | answer |
//! |---|---|
//! | `/` | the server's counters as JSON; 200 below the session limit, 503 at it (as before) |
//! | `/healthz` | liveness: 200 if the I/O loop turned within [`LIVENESS_MAX_AGE`], else 503 |
//! | `/readyz` | readiness: 503 at the session limit, when the loop is stuck, or while the session store is unreachable; else 200 |
//! | `/metrics` | Prometheus text format 0.0.4 ([`super::metrics`]) |
//!
//! Any other path is 404, any method but `GET` 405, an unreadable request
//! line 400. Each connection is answered once and closed. The answer is
//! built from the summary the driver publishes every 200 ms and its
//! heartbeat, which the loop beats on every turn.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::exposition::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::clock;
use crate::net::server::{ServerSummary, SharedSummary};

/// Most health connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// Longest pause after a failed accept (the pause doubles from 10 ms).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Longest time to read a request head or write an answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read; the request line must fit in it.
const MAX_REQUEST_HEAD: usize = 1024;
/// The I/O loop turns at least every 200 ms while it runs; ten missed turns
/// mean it is stuck.
pub const LIVENESS_MAX_AGE: Duration = Duration::from_secs(2);

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
        let conn = match listener.accept().await {
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
            serve_one(conn, &shared, max_sessions).await;
        });
    }
}

/// Reads one request head (bounded in size and time), answers, closes.
async fn serve_one(mut conn: TcpStream, shared: &SharedSummary, max_sessions: usize) {
    let mut head = Vec::with_capacity(256);
    let read = tokio::time::timeout(IO_TIMEOUT, async {
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_REQUEST_HEAD {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    });
    let _ = read.await;
    let response = match shared.lock() {
        Ok(summary) => answer(&head, &summary, max_sessions, clock::now()),
        Err(_) => Response::text(500, "server state unavailable\n"),
    };
    let _ = tokio::time::timeout(IO_TIMEOUT, conn.write_all(&response.to_bytes())).await;
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra header lines (`Name: value`).
    pub headers: Vec<String>,
    /// Body.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }

    /// The bytes on the wire: status line, headers, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        for h in &self.headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

/// The answer to the request whose head is `head`, from `summary` at `now`.
pub fn answer(head: &[u8], summary: &ServerSummary, max_sessions: usize, now: Instant) -> Response {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "bad request line\n");
    };
    if !version.starts_with("HTTP/") || parts.next().is_some() {
        return Response::text(400, "bad request line\n");
    }
    let path = target.split('?').next().unwrap_or_default();
    let known = matches!(path, "/" | "/healthz" | "/readyz" | "/metrics");
    if !known {
        return Response::text(404, "not found: try /healthz, /readyz, /metrics or /\n");
    }
    if method != "GET" {
        let mut r = Response::text(405, "only GET\n");
        r.headers.push("Allow: GET".to_string());
        return r;
    }
    let at_limit = summary.sessions >= max_sessions;
    let loop_age = summary.heartbeat.age(now);
    let live = loop_age <= LIVENESS_MAX_AGE;
    let stuck = || format!("stuck: the I/O loop last turned {loop_age:.1?} ago\n");
    match path {
        "/healthz" if live => Response::text(200, "ok\n"),
        "/healthz" => Response::text(503, stuck()),
        "/readyz" if !live => Response::text(503, stuck()),
        "/readyz" if summary.store_up == Some(false) => {
            Response::text(503, "session store unreachable: new sessions are refused\n")
        }
        "/readyz" if at_limit => Response::text(
            503,
            format!("busy: {} of {max_sessions} sessions\n", summary.sessions),
        ),
        "/readyz" => Response::text(200, "ready\n"),
        "/metrics" => Response {
            content_type: METRICS_CONTENT_TYPE,
            ..Response::text(200, super::metrics::render(summary, max_sessions, now))
        },
        _ => json(summary, max_sessions),
    }
}

/// The counters as JSON, as the endpoint has always answered at `/`.
fn json(s: &ServerSummary, max_sessions: usize) -> Response {
    let below = s.sessions < max_sessions;
    let body = serde_json::json!({
        "status": if below { "ok" } else { "busy" },
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
    });
    Response {
        status: if below { 200 } else { 503 },
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::heartbeat::Heartbeat;

    /// A summary whose loop last turned at `t0`.
    fn summary(t0: Instant, sessions: usize) -> ServerSummary {
        let s = ServerSummary {
            heartbeat: Heartbeat::new(t0),
            sessions,
            ..ServerSummary::default()
        };
        s.heartbeat.beat(t0);
        s
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
    }

    #[test]
    fn liveness_follows_the_heartbeat() {
        let t0 = clock::now();
        let s = summary(t0, 0);
        assert_eq!(answer(&get("/healthz"), &s, 4, t0).status, 200);
        let late = t0 + LIVENESS_MAX_AGE + Duration::from_millis(1);
        let r = answer(&get("/healthz"), &s, 4, late);
        assert_eq!(r.status, 503);
        assert!(r.body.starts_with("stuck"), "{r:?}");
    }

    #[test]
    fn readiness_follows_the_session_store() {
        let t0 = clock::now();
        let mut s = summary(t0, 0);
        s.store_up = Some(true);
        assert_eq!(answer(&get("/readyz"), &s, 4, t0).status, 200);
        s.store_up = Some(false);
        let down = answer(&get("/readyz"), &s, 4, t0);
        assert_eq!(down.status, 503);
        assert!(
            down.body.starts_with("session store unreachable"),
            "{down:?}"
        );
        // Alive all the same: held sessions carry on.
        assert_eq!(answer(&get("/healthz"), &s, 4, t0).status, 200);
    }

    #[test]
    fn workers_add_up_and_the_stalest_heartbeat_speaks_for_them() {
        let t0 = clock::now();
        let mut a = summary(t0, 2);
        a.stats.sessions_restored = 1;
        a.store_up = Some(true);
        let mut b = summary(t0, 3);
        b.stats.sessions_restored = 2;
        b.store_up = Some(false);
        let stuck = Heartbeat::new(t0);
        b.heartbeat = stuck;
        let late = t0 + LIVENESS_MAX_AGE + Duration::from_millis(1);
        a.heartbeat.beat(late);
        let all = ServerSummary::merged(&[a, b], late);
        assert_eq!(all.sessions, 5);
        assert_eq!(all.stats.sessions_restored, 3);
        assert_eq!(all.store_up, Some(false));
        assert_eq!(answer(&get("/healthz"), &all, 10, late).status, 503);
    }

    #[test]
    fn readiness_fails_at_the_session_limit_or_when_stuck() {
        let t0 = clock::now();
        assert_eq!(answer(&get("/readyz"), &summary(t0, 3), 4, t0).status, 200);
        let full = answer(&get("/readyz"), &summary(t0, 4), 4, t0);
        assert_eq!(full.status, 503);
        assert_eq!(full.body, "busy: 4 of 4 sessions\n");
        let late = t0 + Duration::from_secs(3);
        assert_eq!(
            answer(&get("/readyz"), &summary(t0, 0), 4, late).status,
            503
        );
        // At the limit, the server is still alive.
        assert_eq!(answer(&get("/healthz"), &summary(t0, 4), 4, t0).status, 200);
    }

    #[test]
    fn the_root_keeps_its_json_and_its_status() {
        let t0 = clock::now();
        let r = answer(&get("/"), &summary(t0, 1), 4, t0);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/json");
        let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(j["status"], "ok");
        assert_eq!(j["sessions"], 1);
        assert_eq!(j["peak_sessions"], 0, "{j}");
        assert!(j.get("peak_rss_kb").is_some(), "{j}");
        let busy = answer(&get("/?x=1"), &summary(t0, 4), 4, t0);
        assert_eq!(busy.status, 503);
    }

    #[test]
    fn metrics_are_served_in_the_text_format() {
        let t0 = clock::now();
        let r = answer(&get("/metrics"), &summary(t0, 0), 4, t0);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(r.body.contains("\nrisp_sessions_limit 4\n"), "{}", r.body);
    }

    #[test]
    fn other_paths_methods_and_garbage_are_refused() {
        let t0 = clock::now();
        let s = summary(t0, 0);
        assert_eq!(answer(&get("/health"), &s, 4, t0).status, 404);
        assert_eq!(answer(&get("/metrics/x"), &s, 4, t0).status, 404);
        let post = answer(b"POST /metrics HTTP/1.1\r\n\r\n", &s, 4, t0);
        assert_eq!(post.status, 405);
        assert_eq!(post.headers, ["Allow: GET"]);
        assert_eq!(answer(b"HEAD / HTTP/1.0\r\n\r\n", &s, 4, t0).status, 405);
        for garbage in [
            &b""[..],
            b"\r\n",
            b"GET\r\n",
            b"GET / FTP/1\r\n",
            b"GET / HTTP/1.1 x\r\n",
        ] {
            assert_eq!(answer(garbage, &s, 4, t0).status, 400, "{garbage:?}");
        }
    }

    #[test]
    fn the_wire_form_has_a_status_line_length_and_body() {
        let r = Response::text(404, "nope\n");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nnope\n"), "{text}");
    }
}
