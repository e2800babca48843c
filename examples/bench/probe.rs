//! The raw ceilings: how many 24-byte datagrams per second one loopback
//! socket pair moves with nothing but the socket calls, in three ways:
//!
//! - `plain`: one `sendto` and one `recvfrom` per datagram;
//! - `gso`: runs of 64 datagrams per `sendmsg` (`UDP_SEGMENT`), received
//!   with `recvmmsg` (32 per call) without coalescing;
//! - `gso+gro`: the same sends, received coalesced (`UDP_GRO`), up to 64
//!   datagrams per buffer.
//!
//! Sender and receiver run on their own threads (as the two processes of
//! the real benchmark do), each with its own single-threaded runtime, using
//! the same [`BatchSocket`] as risp-udp. The sender sends for a fixed time;
//! the ceiling is what the receiver got per second between its first and
//! its last datagram. Datagrams the receiver's buffer could not hold are
//! lost, not counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use risp_netem::LossySocket;
use risp_udp::clock;
use risp_udp::net::batch::{BatchSocket, IoMode, RecvSizing};
use risp_udp::net::socket;

/// Bytes per probe datagram: a data datagram's size.
const DATAGRAM: usize = 24;
/// Datagrams per send call in the batched modes.
const RUN: usize = 64;

/// One way of moving datagrams.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    /// Its name in the table.
    pub(crate) name: &'static str,
    send: IoMode,
    recv: IoMode,
    /// Datagrams per receive buffer (1: no coalescing).
    segments: usize,
}

/// The three modes, slowest first.
pub(crate) const MODES: [Mode; 3] = [
    Mode {
        name: "plain sendto/recvfrom",
        send: IoMode::Plain,
        recv: IoMode::Plain,
        segments: 1,
    },
    Mode {
        name: "GSO + recvmmsg",
        send: IoMode::Batched,
        recv: IoMode::Batched,
        segments: 1,
    },
    Mode {
        name: "GSO + GRO",
        send: IoMode::Batched,
        recv: IoMode::Batched,
        segments: 64,
    },
];

/// What one probe measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ceiling {
    /// Datagrams received per second.
    pub(crate) per_sec: f64,
    /// Datagrams received / sent.
    pub(crate) delivered: f64,
    /// GSO segments per send call the kernel allowed (1: none).
    pub(crate) gso: usize,
    /// Datagrams per receive buffer the kernel may coalesce (1: none).
    pub(crate) gro: usize,
}

/// Runs `mode` for `secs` seconds of sending.
pub(crate) fn measure(mode: Mode, secs: f64) -> Result<Ceiling, String> {
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    };
    let receiver_rt = rt()?;
    let mut receiver = receiver_rt.block_on(open(mode.recv, mode.segments))?;
    let to = receiver.local_addr().map_err(|e| e.to_string())?;
    let gro = receiver.gro_segments();
    let done = Arc::new(AtomicBool::new(false));
    let sender_done = Arc::clone(&done);
    let sender = thread::spawn(move || -> Result<(u64, usize), String> {
        let rt = rt()?;
        rt.block_on(async move {
            let r = send_for(mode, to, Duration::from_secs_f64(secs)).await;
            sender_done.store(true, Ordering::SeqCst);
            r
        })
    });
    let (received, span) = receiver_rt.block_on(receive(&mut receiver, &done))?;
    let (sent, gso) = sender
        .join()
        .map_err(|_| "the probe's sender panicked".to_string())??;
    let secs = span.as_secs_f64();
    Ok(Ceiling {
        per_sec: if secs > 0.0 {
            received as f64 / secs
        } else {
            0.0
        },
        delivered: received as f64 / sent.max(1) as f64,
        gso,
        gro,
    })
}

async fn open(mode: IoMode, segments: usize) -> Result<BatchSocket, String> {
    let s = socket::bind("127.0.0.1:0".parse().map_err(|_| "address")?)
        .await
        .map_err(|e| e.to_string())?;
    let sizing = RecvSizing {
        max_datagram: DATAGRAM,
        segments,
        slots: 32,
    };
    BatchSocket::new(LossySocket::passthrough(s), mode, sizing).map_err(|e| e.to_string())
}

/// Sends runs of [`RUN`] datagrams to `to` for `time`; returns how many
/// datagrams went out, and the GSO segment limit.
async fn send_for(mode: Mode, to: SocketAddr, time: Duration) -> Result<(u64, usize), String> {
    let mut s = open(mode.send, 1).await?;
    let gso = s.max_segments();
    let run = vec![7u8; DATAGRAM * RUN];
    let end = clock::now() + time;
    let mut sent = 0u64;
    while clock::now() < end {
        // A few runs between clock reads.
        for _ in 0..16 {
            if let Err(e) = s.send(to, &run, DATAGRAM).await {
                return Err(format!("probe send: {}", e.error));
            }
            sent += RUN as u64;
        }
    }
    Ok((sent, gso))
}

/// Counts datagrams until the sender is done and nothing arrived for a
/// while; returns the count and the time from the first to the last.
async fn receive(s: &mut BatchSocket, done: &AtomicBool) -> Result<(u64, Duration), String> {
    let quiet = Duration::from_millis(200);
    let mut count = 0u64;
    let mut first = None;
    let mut last = clock::now();
    loop {
        match tokio::time::timeout(quiet, s.readable()).await {
            Ok(r) => r.map_err(|e| e.to_string())?,
            Err(_) if done.load(Ordering::SeqCst) => break,
            Err(_) => continue,
        }
        let n = s.try_recv(|_, _| {}).map_err(|e| e.to_string())?;
        if n > 0 {
            let now = clock::now();
            first.get_or_insert(now);
            last = now;
            count += n as u64;
        }
    }
    let span = first.map_or(Duration::ZERO, |f| last.saturating_duration_since(f));
    Ok((count, span))
}
