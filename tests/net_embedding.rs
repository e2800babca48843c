//! The library surface an embedder uses, over real loopback sockets:
//! [`Server::builder`] to [`ServerHandle::shutdown`], and
//! [`Client::connect`] to a [`Transfer`]'s values, its abort and its
//! report.
//!
//! What is asserted cannot vary with load: values and counts, never
//! timings; waits are on the summary's watch, bounded.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use risp_udp::net::session_store::SessionStore;
use risp_udp::proto::server::ServerConfig;
use risp_udp::{Client, Server, ServerError, ServerSummary, TransferError, TransferSet};
use support::expected::SessionSeeds;
use support::loopback::TestServer;
use tokio::sync::watch;

/// How long a test waits for something the server publishes.
const PATIENCE: Duration = Duration::from_secs(20);

/// Waits (bounded) until the summary `rx` watches satisfies `ok`.
async fn wait_for_summary(
    rx: &mut watch::Receiver<ServerSummary>,
    ok: impl FnMut(&ServerSummary) -> bool,
) {
    tokio::time::timeout(PATIENCE, rx.wait_for(ok))
        .await
        .expect("the server published it in time")
        .expect("the server is still running");
}

/// True when the channel `rx` watches is closed (its sender dropped), at
/// once: no wait.
fn closed(rx: &watch::Receiver<ServerSummary>) -> bool {
    rx.has_changed().is_err()
}

/// True when `addr` can be bound again: nothing holds the port.
fn port_is_free(addr: SocketAddr) -> bool {
    UdpSocket::bind(addr).is_ok()
}

/// The values of a transfer are exactly the session's sequence, index by
/// index from 0, as the reference computes them from the seed the server
/// drew; the stream then ends with `None` and the report is verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_yields_every_value_of_the_session_in_order() {
    const LEN: u32 = 30_000;
    let server = TestServer::start(ServerConfig::default()).await;
    let mut transfer = server.client().request(LEN).await.unwrap();
    assert_eq!(transfer.len(), LEN);
    let mut got = Vec::with_capacity(LEN as usize);
    while let Some(v) = transfer.next().await {
        let v = v.expect("no error before the end");
        got.push(v.value);
        assert_eq!(v.index as usize, got.len() - 1, "in index order");
    }
    assert_eq!(transfer.read(), LEN);
    assert!(transfer.next().await.is_none(), "ended stays ended");
    let report = transfer.finish().await.unwrap();
    assert!(report.verified(), "{:?}", report.error);
    assert_eq!(report.delivered, LEN);
    let expected = server.expected(report.uuid, LEN);
    expected.check(&got).unwrap();
    assert_eq!(report.checksum, Some(expected.checksum()));
    let s = server.stop().await.stats;
    assert_eq!(s.sessions_opened, 1);
}

/// `abort` tells the server to free the session: the values already
/// delivered come first, then the stream ends with `Aborted`; the report
/// is the partial one, and the server counts the session aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_ends_the_values_with_a_typed_error_and_frees_the_session() {
    const LEN: u32 = 50_000_000;
    let server = TestServer::start(ServerConfig::default()).await;
    let mut transfer = server.client().request(LEN).await.unwrap();
    let mut next = 0;
    while next < 1_000 {
        let v = transfer.next().await.unwrap().unwrap();
        assert_eq!(v.index, next);
        next += 1;
    }
    transfer.abort();
    let end = loop {
        match transfer.next().await {
            Some(Ok(v)) => {
                assert_eq!(v.index, next, "in order until the end");
                next += 1;
            }
            Some(Err(e)) => break e,
            None => panic!("a stream cut short ends with an error"),
        }
    };
    assert!(matches!(end, TransferError::Aborted), "{end:?}");
    assert!(transfer.next().await.is_none(), "one error, then the end");
    let report = transfer.finish().await.unwrap();
    assert!(!report.verified());
    assert_eq!(report.error, None, "an abort is not a protocol failure");
    assert_eq!(report.delivered, next);
    assert!(report.delivered < LEN);
    let mut summary = server.summary_watch();
    wait_for_summary(&mut summary, |s| s.stats.sessions_aborted == 1).await;
    server.stop().await;
}

/// Where nothing listens, the transfer fails with `Refused` naming the
/// server (the OS said so), not an I/O error to sniff; with no server at
/// all, `request` fails at once.
#[tokio::test]
async fn a_refusing_server_and_an_empty_list_are_typed_errors() {
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut transfer = Client::connect([closed]).request(100).await.unwrap();
    match transfer.next().await {
        Some(Err(TransferError::Refused { servers })) => assert_eq!(servers, vec![closed]),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(transfer.next().await.is_none());
    let e = transfer.finish().await.unwrap_err();
    assert!(matches!(e, TransferError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains(&closed.to_string()), "{e}");

    let e = Client::connect([]).request(100).await.unwrap_err();
    assert!(matches!(e, TransferError::NoServer), "{e:?}");
}

/// `shutdown` joins everything the server spawned: when it returns the
/// port can be bound again and the summary channel is closed; the final
/// summary counts what the server saw, and the hook saw the same. (On one
/// thread, a worker left running could not have ended by then.)
#[tokio::test]
async fn shutdown_frees_the_port_and_closes_the_summary() {
    let last: Arc<Mutex<Option<ServerSummary>>> = Arc::default();
    let seen = last.clone();
    let server = Server::builder()
        .on_summary(move |s| *seen.lock().unwrap() = Some(s.clone()))
        .start()
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    assert!(!port_is_free(addr), "the server holds its port");
    let summary = server.summary();
    let report = Client::connect([addr])
        .request(2_000)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert!(report.verified(), "{:?}", report.error);
    let fin = server.shutdown().await.unwrap();
    assert!(port_is_free(addr), "shutdown released the port");
    assert!(closed(&summary), "the summary channel closed");
    assert_eq!(fin.stats.sessions_opened, 1);
    assert_eq!(
        summary.borrow().stats.sessions_opened,
        1,
        "the last published"
    );
    let hooked = last
        .lock()
        .unwrap()
        .clone()
        .expect("the hook saw summaries");
    assert_eq!(hooked.stats.sessions_opened, 1);
    assert_eq!(
        hooked.stats.datagrams_received,
        fin.stats.datagrams_received
    );
}

/// Several workers on one port share an in-process store and publish one
/// merged summary; shutdown frees every socket of the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_merge_their_figures_and_all_stop() {
    const CLIENTS: usize = 6;
    let server = Server::builder()
        .workers(3)
        .record_session_seeds(true)
        .start()
        .await
        .unwrap();
    assert!(
        server.store().is_some(),
        "workers share an in-process store"
    );
    let addr = server.local_addr();
    let mut set = TransferSet::new();
    for _ in 0..CLIENTS {
        set.spawn(Client::connect([addr]), 3_000, Duration::ZERO);
    }
    assert_eq!(set.len(), CLIENTS);
    let reports: Vec<_> = set
        .join(None)
        .await
        .into_iter()
        .map(|r| r.expect("no deadline").expect("a report"))
        .collect();
    assert!(reports.iter().all(|r| r.verified()), "{reports:?}");
    let summary = server.summary();
    let fin = server.shutdown().await.unwrap();
    assert!(port_is_free(addr), "every worker's socket is closed");
    assert!(closed(&summary));
    // Each client's 4-tuple hashes to one worker: one session each.
    assert_eq!(fin.stats.sessions_opened, CLIENTS as u64, "{:?}", fin.stats);
    let merged = summary.borrow().clone();
    assert_eq!(merged.stats.sessions_opened, CLIENTS as u64);
    let seeds = merged.session_seeds.expect("seeds were asked for");
    for r in &reports {
        assert!(seeds.contains_key(&r.uuid), "{} has its seed", r.uuid);
    }
}

/// One abort handle stops every transfer of a set; each still reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_is_aborted_together_and_joined_in_order() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut set = TransferSet::new();
    for _ in 0..3 {
        set.spawn(server.client(), 50_000_000, Duration::ZERO);
    }
    let abort = set.abort_handle();
    let mut summary = server.summary_watch();
    // Once every session is open, stop them.
    wait_for_summary(&mut summary, |s| s.stats.sessions_opened == 3).await;
    abort.abort();
    let reports = set.join(None).await;
    assert_eq!(reports.len(), 3);
    for r in reports {
        let r = r.expect("no deadline").expect("a report");
        assert!(!r.verified());
        assert!(r.delivered < 50_000_000);
    }
    wait_for_summary(&mut summary, |s| s.stats.sessions_aborted == 3).await;
    server.stop().await;
}

/// With intervals asked for, each one that ends is sent as it ends, and
/// the report holds the same ones (and the last, partial, one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intervals_come_as_they_end_and_stay_in_the_report() {
    let server = TestServer::start(ServerConfig::default()).await;
    let client = server.client().interval(Duration::from_millis(5));
    let mut transfer = client.request(200_000).await.unwrap();
    let mut rx = transfer.intervals().expect("intervals were asked for");
    assert!(transfer.intervals().is_none(), "taken once");
    while let Some(v) = transfer.next().await {
        v.unwrap();
    }
    let report = transfer.finish().await.unwrap();
    assert!(report.verified());
    let mut live = Vec::new();
    while let Ok(i) = rx.try_recv() {
        live.push(i);
    }
    assert!(!report.intervals.is_empty());
    assert!(live.len() <= report.intervals.len());
    for (a, b) in live.iter().zip(&report.intervals) {
        assert_eq!(
            (a.start_s, a.end_s, a.values),
            (b.start_s, b.end_s, b.values)
        );
    }
    let total: u64 = report.intervals.iter().map(|i| i.values).sum();
    assert_eq!(total, 200_000, "the intervals cover every value");
    server.stop().await;
}

/// What keeps a server from starting is a typed error: a port in use, a
/// secret file too short to be a key.
#[tokio::test]
async fn start_failures_are_typed() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    match Server::builder().bind(addr).start().await {
        Err(ServerError::Bind { addr: a, .. }) => assert_eq!(a, addr),
        other => panic!("expected Bind, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("secret");
    std::fs::write(&short, b"too short").unwrap();
    match Server::builder().secret_file(&short).start().await {
        Err(ServerError::SecretTooShort { len, .. }) => assert_eq!(len, 9),
        other => panic!("expected SecretTooShort, got {other:?}"),
    }
    match Server::builder().redis("not a url", "p:").start().await {
        Err(ServerError::StoreUrl(_)) => {}
        other => panic!("expected StoreUrl, got {other:?}"),
    }
}

/// Two servers sharing one store and one key: a session opened on the
/// first is resumed by the second after the first shut down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_its_server_in_a_shared_store() {
    let store = SessionStore::memory();
    let start = || {
        Server::builder()
            .store(store.clone())
            .secret([7; 32])
            .start()
    };
    let first = start().await.unwrap();
    let a = Client::connect([first.local_addr()])
        .stop_after(1_000)
        .request(5_000)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let state = a.resume.clone().expect("a resume state");
    // The record is written when the session is confirmed; wait for it.
    let mut s = first.summary();
    wait_for_summary(&mut s, |s| s.stats.store_writes >= 1).await;
    first.shutdown().await.unwrap();
    let second = start().await.unwrap();
    let b = Client::connect([second.local_addr()])
        .uuid(a.uuid)
        .resume(state)
        .request(5_000)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    // A resumed transfer counts only its own values; its checksum is the
    // whole sequence's.
    assert_eq!(b.result(), Ok(()));
    assert!(b.checksum.is_some(), "B verified the whole sequence");
    assert_eq!(a.delivered + b.delivered, 5_000);
    let s = second.shutdown().await.unwrap().stats;
    assert_eq!(s.sessions_restored, 1, "{s:?}");
}
