//! The TCP comparison pair over real loopback sockets.

use std::net::SocketAddr;
use std::time::Duration;

use risp_udp::proto::sequence::Sequence;
use risp_udp::tcp::{fetch, fetch_with, serve, serve_with, SeedSource, TcpError, TcpServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A server on 127.0.0.1:0, its address, and the trigger that stops it.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(config: TcpServerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(listener, config, async {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("server stops after shutdown")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_100k_values_that_match_the_sequence() {
    let seed = 0x5eed_1234;
    let server = Running::start(TcpServerConfig {
        seeds: SeedSource::Fixed(seed),
        ..TcpServerConfig::new(1_000_000)
    })
    .await;

    let mut received = Vec::new();
    let report = fetch_with(server.addr, 100_000, TIMEOUT, |v| received.push(v))
        .await
        .unwrap();

    let expected = Sequence::new(seed, 100_000);
    assert!(report.verified, "{report:?}");
    assert_eq!(report.len, 100_000);
    assert_eq!(received.len(), 100_000);
    assert!(received.iter().copied().eq(expected.iter()));
    assert_eq!(report.checksum, expected.checksum());
    assert_eq!(
        report.checksum,
        received.iter().map(|&v| u64::from(v)).sum::<u64>()
    );
    assert!(report.elapsed_ms > 0.0 && report.elapsed_ms >= report.connect_ms);
    assert!(report.longest_stall_ms <= report.elapsed_ms);
    assert!(report.values_per_sec > 0.0);
    server.stop().await;
}

#[tokio::test]
async fn random_seeds_differ_per_connection_and_still_verify() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, 1000, async {
        let _ = stopped.await;
    }));

    let mut first = Vec::new();
    let a = fetch_with(addr, 1000, TIMEOUT, |v| first.push(v))
        .await
        .unwrap();
    let mut second = Vec::new();
    let b = fetch_with(addr, 1000, TIMEOUT, |v| second.push(v))
        .await
        .unwrap();
    assert!(a.verified && b.verified);
    assert_ne!(first, second, "two connections got the same seed");
    assert_eq!(a.checksum, first.iter().map(|&v| u64::from(v)).sum::<u64>());

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_request_over_max_len_is_refused_and_the_server_goes_on() {
    let server = Running::start(TcpServerConfig::new(500)).await;

    match fetch(server.addr, 501, TIMEOUT).await {
        Err(TcpError::Truncated {
            received: 0,
            expected: 501,
        }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let at_limit = fetch(server.addr, 500, TIMEOUT).await.unwrap();
    assert!(at_limit.verified);
    let empty = fetch(server.addr, 0, TIMEOUT).await.unwrap();
    assert!(empty.verified && empty.checksum == 0);
    server.stop().await;
}

/// A hand-written server that answers every request with `reply(len)`.
async fn fake_server(reply: fn(u32) -> Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut req = [0; 4];
            if stream.read_exact(&mut req).await.is_ok() {
                let _ = stream.write_all(&reply(u32::from_be_bytes(req))).await;
            }
        }
    });
    addr
}

fn values_and_trailer(len: u32, trailer_delta: u64) -> Vec<u8> {
    let seq = Sequence::new(77, len);
    let mut bytes: Vec<u8> = seq.iter().flat_map(u32::to_be_bytes).collect();
    bytes.extend_from_slice(&(seq.checksum() + trailer_delta).to_be_bytes());
    bytes
}

#[tokio::test]
async fn a_wrong_checksum_is_reported_unverified() {
    let addr = fake_server(|len| values_and_trailer(len, 1)).await;
    let report = fetch(addr, 1000, TIMEOUT).await.unwrap();
    assert!(!report.verified);
    assert_eq!(report.checksum, Sequence::new(77, 1000).checksum());

    let honest = fake_server(|len| values_and_trailer(len, 0)).await;
    assert!(fetch(honest, 1000, TIMEOUT).await.unwrap().verified);
}

#[tokio::test]
async fn a_short_stream_is_truncated_and_extra_bytes_are_rejected() {
    let short = fake_server(|len| {
        let mut bytes = values_and_trailer(len, 0);
        bytes.truncate(4 * 10 + 2);
        bytes
    })
    .await;
    match fetch(short, 1000, TIMEOUT).await {
        Err(TcpError::Truncated {
            received: 10,
            expected: 1000,
        }) => {}
        other => panic!("expected truncation, got {other:?}"),
    }

    let long = fake_server(|len| {
        let mut bytes = values_and_trailer(len, 0);
        bytes.push(0);
        bytes
    })
    .await;
    assert!(matches!(
        fetch(long, 1000, TIMEOUT).await,
        Err(TcpError::TrailingBytes(_))
    ));
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (held_tx, held_rx) = oneshot::channel();
    tokio::spawn(async move {
        // Accept and hold the connection without answering.
        if let Ok((stream, _)) = listener.accept().await {
            let _ = held_tx.send(stream);
        }
    });
    let result = fetch(addr, 10, Duration::from_millis(200)).await;
    assert!(
        matches!(
            result,
            Err(TcpError::Timeout {
                received: 0,
                expected: 10,
                ..
            })
        ),
        "{result:?}"
    );
    drop(held_rx);
}

#[tokio::test]
async fn a_client_that_never_sends_its_request_is_dropped() {
    let server = Running::start(TcpServerConfig {
        request_timeout: Duration::from_millis(100),
        ..TcpServerConfig::new(10)
    })
    .await;
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0; 1];
    // The server closes its side: this read ends with EOF instead of hanging.
    let n = tokio::time::timeout(TIMEOUT, idle.read(&mut buf))
        .await
        .expect("server dropped the idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_transfers_in_flight() {
    let server = Running::start(TcpServerConfig::new(u32::MAX)).await;
    // A client that asks for far more than it reads keeps a task writing.
    let mut greedy = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    greedy.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut first = [0; 4];
    greedy.read_exact(&mut first).await.unwrap();
    server.stop().await;
}
