//! The client driver: one socket (replaced on each killswitch), one
//! [`Client`] core, timers from the core.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use risp_netem::{ImpairmentConfig, ImpairmentStats, LossySocket, Side};

use super::socket::{is_transient, sleep_until_opt};
use crate::clock;
use crate::proto::client::{
    Client, ClientConfig, ClientError, ClientEvent, ClientStats, ResumeState,
};
use crate::proto::wire::MAX_DATAGRAM_LEN;
use crate::stats::HistogramSet;

/// How to run one transfer.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server's address.
    pub server: SocketAddr,
    /// Protocol settings (UUID, length, window...).
    pub config: ClientConfig,
    /// Resume a session another client started.
    pub resume: Option<ResumeState>,
    /// Impairments applied by the lossy-socket shim (None: plain socket).
    pub impairment: Option<(ImpairmentConfig, u64)>,
    /// Drop the socket every this often and resume from a fresh port.
    pub killswitch: Option<Duration>,
    /// Move to a fresh port at these offsets without telling the core (NAT
    /// rebinding: the server must follow the token, not the address).
    pub rebind_at: Vec<Duration>,
    /// Keep every RTT sample and delivery latency in the outcome.
    pub keep_samples: bool,
    /// Stop after this many values (to hand the session to another client);
    /// None: run to the end.
    pub stop_after: Option<u32>,
}

impl ClientOptions {
    /// A plain transfer of `config` from `server`.
    pub fn new(server: SocketAddr, config: ClientConfig) -> Self {
        Self {
            server,
            config,
            resume: None,
            impairment: None,
            killswitch: None,
            rebind_at: Vec::new(),
            keep_samples: false,
            stop_after: None,
        }
    }
}

/// What a finished transfer reports.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    /// The session's UUID at the end (a refused handshake starts over under
    /// a new one).
    pub uuid: uuid::Uuid,
    /// Verified, or why not.
    pub result: Result<(), ClientError>,
    /// The server's checksum, when verified.
    pub checksum: Option<u64>,
    /// Values delivered.
    pub delivered: u32,
    /// Wall time from start to the end.
    pub elapsed: Duration,
    /// The core's counters.
    pub stats: ClientStats,
    /// Impairment counters of every socket used (summed).
    pub shim: ImpairmentStats,
    /// Window extremes and final value.
    pub window: (u32, u32, u32),
    /// rtt, delivery and stall histograms.
    pub hist: HistogramSet,
    /// Killswitch reconnections.
    pub reconnects: u32,
    /// Where the session stands (for handing it to another client).
    pub resume: Option<ResumeState>,
    /// Every RTT sample (with `keep_samples`).
    pub rtt_samples: Vec<Duration>,
    /// Every delivery latency (with `keep_samples`).
    pub delivery_latencies: Vec<Duration>,
}

/// Runs one transfer to its end; `on_value` sees each value in order.
///
/// Fails only on local socket errors; protocol failures are in
/// [`ClientOutcome::result`].
pub async fn run(
    opts: ClientOptions,
    mut on_value: impl FnMut(u32, u32),
) -> io::Result<ClientOutcome> {
    let started = clock::now();
    let mut client = match opts.resume.clone() {
        Some(r) => Client::resume(opts.config.clone(), r, started),
        None => Client::new(opts.config.clone(), started),
    };
    let mut socket = open(&opts, 0).await?;
    let mut shim_total = ImpairmentStats::default();
    let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
    let mut out = vec![0u8; MAX_DATAGRAM_LEN];
    let mut hist = HistogramSet::default();
    let mut last_delivery: Option<Instant> = None;
    let mut checksum = None;
    let mut result: Option<Result<(), ClientError>> = None;
    let mut delivered = 0u32;
    let mut reconnects = 0u32;
    let mut next_kill = opts.killswitch.map(|k| started + k);
    let mut rebinds: Vec<Instant> = opts.rebind_at.iter().map(|d| started + *d).collect();
    rebinds.sort();
    rebinds.reverse();
    let mut rtt_samples = Vec::new();
    let mut delivery_latencies = Vec::new();
    loop {
        let now = clock::now();
        while let Some(n) = client.poll_transmit(now, &mut out) {
            if let Err(e) = socket.send_to(&out[..n], opts.server).await {
                if !is_transient(&e) {
                    return Err(e);
                }
            }
        }
        while let Some(ev) = client.poll_event() {
            let at = now.saturating_duration_since(started);
            match ev {
                ClientEvent::Connected => {}
                ClientEvent::Restarted { uuid } => {
                    tracing::info!(%uuid, "handshake refused; starting over under a new UUID");
                }
                ClientEvent::Value {
                    index,
                    value,
                    latency,
                } => {
                    hist.delivery.record_at(at, latency);
                    if opts.keep_samples {
                        delivery_latencies.push(latency);
                    }
                    if let Some(prev) = last_delivery {
                        hist.stall
                            .record_at(at, now.saturating_duration_since(prev));
                    }
                    last_delivery = Some(now);
                    delivered += 1;
                    on_value(index, value);
                }
                ClientEvent::RttSample(rtt) => {
                    hist.rtt.record_at(at, rtt);
                    if opts.keep_samples {
                        rtt_samples.push(rtt);
                    }
                }
                ClientEvent::Verified { checksum: c } => checksum = Some(c),
                ClientEvent::Completed => result = Some(Ok(())),
                ClientEvent::Failed(e) => result = Some(Err(e)),
            }
        }
        if result.is_some() {
            break;
        }
        if opts.stop_after.is_some_and(|n| client.next_index() >= n) {
            break;
        }
        let wake = [client.poll_timeout(), next_kill, rebinds.last().copied()]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                match r {
                    Ok((n, from)) if from == opts.server => client.handle(clock::now(), &buf[..n]),
                    Ok(_) => {} // not our server: ignore
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            () = sleep_until_opt(wake) => {
                let now = clock::now();
                if next_kill.is_some_and(|t| t <= now) {
                    add_stats(&mut shim_total, socket.stats());
                    reconnects += 1;
                    socket = open(&opts, u64::from(reconnects)).await?;
                    next_kill = opts.killswitch.map(|k| now + k);
                    tracing::debug!(port = ?socket.local_addr().ok(), "killswitch: new socket");
                    client.reconnect(now);
                }
                if rebinds.last().is_some_and(|t| *t <= now) {
                    rebinds.pop();
                    add_stats(&mut shim_total, socket.stats());
                    socket = open(&opts, 1000 + rebinds.len() as u64).await?;
                    tracing::debug!(port = ?socket.local_addr().ok(), "rebind: new socket");
                }
                client.handle_timeout(now);
            }
        }
    }
    add_stats(&mut shim_total, socket.stats());
    let w = client.window();
    Ok(ClientOutcome {
        uuid: client.uuid(),
        result: result.unwrap_or(Ok(())),
        checksum,
        delivered,
        elapsed: clock::now().saturating_duration_since(started),
        stats: client.stats(),
        shim: shim_total,
        window: (w.min_seen(), w.max_seen(), w.get()),
        hist,
        reconnects,
        resume: client.resume_state(),
        rtt_samples,
        delivery_latencies,
    })
}

async fn open(opts: &ClientOptions, generation: u64) -> io::Result<LossySocket> {
    let bind: SocketAddr = if opts.server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = super::socket::bind(bind).await?;
    match &opts.impairment {
        Some((cfg, seed)) if !cfg.is_clean() => LossySocket::new(
            socket,
            Side::Client,
            cfg.clone(),
            seed.wrapping_add(generation),
        ),
        _ => Ok(LossySocket::passthrough(socket)),
    }
}

fn add_stats(total: &mut ImpairmentStats, s: ImpairmentStats) {
    for (t, x) in [
        (&mut total.to_server, s.to_server),
        (&mut total.to_client, s.to_client),
    ] {
        t.seen += x.seen;
        t.dropped += x.dropped;
        t.blackholed += x.blackholed;
        t.duplicated += x.duplicated;
        t.corrupted += x.corrupted;
        t.reordered += x.reordered;
        t.overflowed += x.overflowed;
    }
}
