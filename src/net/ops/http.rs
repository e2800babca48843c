//! Routing: which answer each request gets, and the hyper connection that
//! carries it.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::{metrics, process, Limits, OpsState, LIVENESS_MAX_AGE, MAX_IO_TIMEOUT};
use crate::clock;
use crate::net::server::ServerSummary;

/// An answer.
pub(super) type Answer = Response<Full<Bytes>>;

/// `Content-Type` of the plain-text answers.
const TEXT: &str = "text/plain; charset=utf-8";
/// `Content-Type` of the JSON at `/`.
const JSON: &str = "application/json";

/// HTTP/1 only, one request per connection, the request head bounded in
/// size and time.
pub(super) fn connection_builder(limits: &Limits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .keep_alive(false)
        .header_read_timeout(limits.io_timeout.min(MAX_IO_TIMEOUT))
        .max_header_size(limits.max_request_head);
    b
}

/// Serves the one request of `conn`; the whole exchange ends by `deadline`
/// (a client that reads its answer slowly, or never, is cut off).
pub(super) async fn serve_connection(
    http: &http1::Builder,
    conn: TcpStream,
    state: OpsState,
    deadline: Duration,
) {
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let answer = answer(&req, &state, clock::now());
        std::future::ready(Ok::<_, Infallible>(answer))
    });
    let exchange = http.serve_connection(TokioIo::new(conn), service);
    // Errors (a client gone, a request hyper refused and answered itself,
    // a timeout) concern that client only; the connection is closed.
    let _ = tokio::time::timeout(deadline, exchange).await;
}

/// The answer to `req` from the summary `state` holds at `now`.
pub(super) fn answer<B>(req: &Request<B>, state: &OpsState, now: Instant) -> Answer {
    let path = req.uri().path();
    if !matches!(path, "/" | "/healthz" | "/readyz" | "/metrics") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics or /\n",
        );
    }
    if req.method() != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let max = state.max_sessions;
    state
        .read(|summary| route(path, summary, max, now))
        .unwrap_or_else(|| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server state unavailable\n",
            )
        })
}

/// The answer at a known `path` to a `GET`.
fn route(path: &str, summary: &ServerSummary, max_sessions: usize, now: Instant) -> Answer {
    let loop_age = summary.heartbeat.age(now);
    let live = loop_age <= LIVENESS_MAX_AGE;
    let stuck = || {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stuck: the I/O loop last turned {loop_age:.1?} ago\n"),
        )
    };
    let unavailable = |body: String| text(StatusCode::SERVICE_UNAVAILABLE, body);
    match path {
        "/healthz" if live => text(StatusCode::OK, "ok\n"),
        "/healthz" => stuck(),
        "/readyz" if !live => stuck(),
        "/readyz" if summary.store_up == Some(false) => {
            unavailable("session store unreachable: new sessions are refused\n".to_string())
        }
        "/readyz" if summary.sessions >= max_sessions => unavailable(format!(
            "busy: {} of {max_sessions} sessions\n",
            summary.sessions
        )),
        "/readyz" => text(StatusCode::OK, "ready\n"),
        "/metrics" => match metrics::render(summary, max_sessions, now) {
            Ok(page) => body(StatusCode::OK, metrics::CONTENT_TYPE, page),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n"),
        },
        _ => json(summary, max_sessions),
    }
}

/// The counters as JSON, as the endpoint has always answered at `/`.
fn json(s: &ServerSummary, max_sessions: usize) -> Answer {
    let below = s.sessions < max_sessions;
    let value = serde_json::json!({
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
        "peak_rss_kb": process::peak_rss_kb(),
    });
    let status = if below {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    body(status, JSON, value.to_string())
}

fn text(status: StatusCode, content: impl Into<String>) -> Answer {
    body(status, TEXT, content.into())
}

fn body(status: StatusCode, content_type: &'static str, content: String) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(content)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;

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

    fn state(s: ServerSummary, max_sessions: usize) -> OpsState {
        OpsState::new(Arc::new(Mutex::new(s)), max_sessions)
    }

    fn request(method: Method, path: &str) -> Request<()> {
        let mut r = Request::new(());
        *r.method_mut() = method;
        *r.uri_mut() = path.parse().expect("a test path");
        r
    }

    /// (status, content type, body) of the answer to `GET path`.
    fn get(path: &str, s: &ServerSummary, max: usize, now: Instant) -> (u16, String, String) {
        split(answer(
            &request(Method::GET, path),
            &state(s.clone(), max),
            now,
        ))
    }

    fn split(a: Answer) -> (u16, String, String) {
        let ct = a.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
        let status = a.status().as_u16();
        let bytes = body_bytes(a.into_body());
        (status, ct, String::from_utf8(bytes).unwrap())
    }

    fn body_bytes(b: Full<Bytes>) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(b.collect()).unwrap().to_bytes().to_vec()
    }

    #[test]
    fn liveness_follows_the_heartbeat() {
        let t0 = clock::now();
        let s = summary(t0, 0);
        assert_eq!(get("/healthz", &s, 4, t0).0, 200);
        let late = t0 + LIVENESS_MAX_AGE + Duration::from_millis(1);
        let (status, _, body) = get("/healthz", &s, 4, late);
        assert_eq!(status, 503);
        assert!(body.starts_with("stuck"), "{body}");
    }

    #[test]
    fn readiness_follows_the_session_store() {
        let t0 = clock::now();
        let mut s = summary(t0, 0);
        s.store_up = Some(true);
        assert_eq!(get("/readyz", &s, 4, t0).0, 200);
        s.store_up = Some(false);
        let (status, _, body) = get("/readyz", &s, 4, t0);
        assert_eq!(status, 503);
        assert!(body.starts_with("session store unreachable"), "{body}");
        // Alive all the same: held sessions carry on.
        assert_eq!(get("/healthz", &s, 4, t0).0, 200);
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
        b.heartbeat = Heartbeat::new(t0);
        let late = t0 + LIVENESS_MAX_AGE + Duration::from_millis(1);
        a.heartbeat.beat(late);
        let all = ServerSummary::merged(&[a, b], late);
        assert_eq!(all.sessions, 5);
        assert_eq!(all.stats.sessions_restored, 3);
        assert_eq!(all.store_up, Some(false));
        assert_eq!(get("/healthz", &all, 10, late).0, 503);
    }

    #[test]
    fn readiness_fails_at_the_session_limit_or_when_stuck() {
        let t0 = clock::now();
        assert_eq!(get("/readyz", &summary(t0, 3), 4, t0).0, 200);
        let (status, _, body) = get("/readyz", &summary(t0, 4), 4, t0);
        assert_eq!((status, body.as_str()), (503, "busy: 4 of 4 sessions\n"));
        let late = t0 + Duration::from_secs(3);
        assert_eq!(get("/readyz", &summary(t0, 0), 4, late).0, 503);
        // At the limit, the server is still alive.
        assert_eq!(get("/healthz", &summary(t0, 4), 4, t0).0, 200);
    }

    #[test]
    fn the_root_keeps_its_json_and_its_status() {
        let t0 = clock::now();
        let (status, ct, body) = get("/", &summary(t0, 1), 4, t0);
        assert_eq!((status, ct.as_str()), (200, JSON));
        let j: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(j["status"], "ok");
        assert_eq!(j["sessions"], 1);
        assert_eq!(j["max_sessions"], 4);
        assert_eq!(j["peak_sessions"], 0, "{j}");
        assert!(j.get("peak_rss_kb").is_some(), "{j}");
        let (status, _, body) = get("/?x=1", &summary(t0, 4), 4, t0);
        assert_eq!(status, 503);
        assert!(body.contains("\"status\":\"busy\""), "{body}");
    }

    #[test]
    fn metrics_are_served_in_the_text_format() {
        let t0 = clock::now();
        let (status, ct, body) = get("/metrics", &summary(t0, 0), 4, t0);
        assert_eq!(status, 200);
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        assert!(body.contains("\nrisp_sessions_limit 4\n"), "{body}");
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let t0 = clock::now();
        let s = state(summary(t0, 0), 4);
        let status = |m: Method, p: &str| answer(&request(m, p), &s, t0).status().as_u16();
        assert_eq!(status(Method::GET, "/health"), 404);
        assert_eq!(status(Method::GET, "/metrics/x"), 404);
        assert_eq!(status(Method::POST, "/health"), 404);
        let post = answer(&request(Method::POST, "/metrics"), &s, t0);
        assert_eq!(post.status(), 405);
        assert_eq!(post.headers()[ALLOW], "GET");
        assert_eq!(status(Method::HEAD, "/"), 405);
        assert_eq!(status(Method::DELETE, "/readyz"), 405);
    }

    #[test]
    fn a_poisoned_summary_is_a_500_not_a_panic() {
        let shared = Arc::new(Mutex::new(ServerSummary::default()));
        let poison = shared.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poison.lock().unwrap();
            panic!("a publisher panics while holding the summary");
        })
        .join();
        let s = OpsState::new(shared, 4);
        let a = answer(&request(Method::GET, "/healthz"), &s, clock::now());
        assert_eq!(a.status(), 500);
    }

    #[test]
    fn a_watched_summary_answers_with_the_latest_sent() {
        let t0 = clock::now();
        let (tx, rx) = tokio::sync::watch::channel(summary(t0, 0));
        let s = OpsState::from_watch(rx, 1);
        let ready = |s: &OpsState| answer(&request(Method::GET, "/readyz"), s, t0).status();
        assert_eq!(ready(&s), 200);
        tx.send(summary(t0, 1)).unwrap();
        assert_eq!(ready(&s), 503);
    }
}
