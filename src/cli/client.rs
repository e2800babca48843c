//! `risp-udp client [LEN]`: stream a sequence from a server and verify it.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::pin;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use rand::{Rng, SeedableRng};
use risp_netem::{ImpairmentSpec, Side};
use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

use super::exit::Exit;
use super::output::{is_closed_pipe, Stdout};
use super::report::{failure_message, human, list_servers, peak_rss_kb, ClientJson, StartInfo};
use crate::net::batch::IoMode;
use crate::net::stream::{Client, Transfer, TransferError};
use crate::proto::client::{ClientConfig, ClientEncryption, MAX_WINDOW};
use crate::proto::congestion::INIT_CWND;
use crate::transfer::{interval_line, si, IntervalStats, TransferReport};

/// Flags of `risp-udp client`.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// How many values to request (default: a random length from 1 to 1000,
    /// as the original).
    #[arg(value_name = "LEN")]
    pub len: Option<u32>,
    /// The server's UDP port on 127.0.0.1 (ignored with --server).
    #[arg(long, default_value_t = super::server::DEFAULT_PORT, env = "RISP_PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// The server, as HOST:PORT (default: 127.0.0.1 and --port); or a
    /// comma-separated list of servers that share their sessions
    /// (A:8081,B:8081): the client starts with the first and resumes the
    /// session on the next, round robin, when its server goes silent,
    /// forgets the session, or does not listen.
    #[arg(long, value_name = "HOST:PORT[,...]", env = "RISP_SERVER")]
    pub server: Option<String>,
    /// Initial congestion window (values outstanding).
    #[arg(long, default_value_t = INIT_CWND, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WINDOW)))]
    pub window: u32,
    /// An explicit cap on the window the client advertises. By default
    /// none: the window follows the path (rate control, and a reorder
    /// buffer that grows as it needs, up to 2^20 indices).
    #[arg(long, default_value_t = MAX_WINDOW, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WINDOW)))]
    pub max_window: u32,
    /// Cumulative acks only (no selective-ack bitmap), for comparison.
    #[arg(long)]
    pub no_sack: bool,
    /// Upper bound on the silence between client messages while waiting,
    /// in ms (the retransmission timer never backs off past it).
    #[arg(long, alias = "client_ticker_ms", default_value_t = 2000, env = "RISP_CLIENT_TICKER_MS",
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub client_ticker_ms: u64,
    /// Smallest probe timeout, in ms (fractions allowed). The timeout is
    /// SRTT + max(4·RTTVAR, 1 ms) above it; raise it where scheduling
    /// delays are long.
    #[arg(long, value_name = "MS", default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::args::millis)]
    pub min_rto_ms: f64,
    /// Drop the socket every N ms and resume from a fresh port by UUID.
    #[arg(long, alias = "client_killswitch_ms", value_name = "MS", env = "RISP_CLIENT_KILLSWITCH_MS",
          value_parser = super::args::positive_ms)]
    pub client_killswitch_ms: Option<u64>,
    /// Give up after hearing nothing from the server for this long, in ms.
    #[arg(long, default_value_t = 30_000, value_parser = super::args::positive_ms)]
    pub idle_timeout_ms: u64,
    /// Seed for the UUID and the random length (reproducible runs).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the values, one per line, to stdout (the report goes to stderr).
    #[arg(long, conflicts_with = "json")]
    pub print: bool,
    /// Write the values, one per line, to FILE (`-`: stdout, as --print).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    pub json: bool,
    /// Write the rtt, delivery and stall histograms (.hgrm and .hlog) to DIR.
    #[arg(long, value_name = "DIR")]
    pub hist_out: Option<PathBuf>,
    /// No progress bar (there is none anyway unless stdout and stderr are
    /// terminals, and never with --json or --print).
    #[arg(long)]
    pub no_progress: bool,
    /// Print a line per interval of SECS seconds to stderr (values,
    /// values/s, retransmit requests, duplicates, RTT p50/p99, window), as
    /// iperf3's -i; --json then has an "intervals" array. Under `load`,
    /// the clients' sums (values, sessions, retransmit requests, timeouts,
    /// shim drops) and a sum line at the end.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = super::args::interval_secs)]
    pub interval: Option<f64>,
    /// Write what this end's socket sent and received (pcapng, drops by
    /// the shim marked) to FILE; open it with netem/wireshark/risp.lua.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Write the session's qlog trace (JSON-SEQ, vantage point client) into
    /// DIR, created if missing: UUID-client.sqlog, one file per session
    /// UUID (docs/TRACING.md).
    #[arg(long, value_name = "DIR")]
    pub qlog: Option<PathBuf>,
    /// Impairments on this end's socket.
    #[command(flatten)]
    pub netem: ImpairmentSpec,
    /// Seal the session and require the server to prove this public key
    /// (base64, as `risp-udp pubkey` prints it); a server holding another
    /// key is refused at once (exit code 10).
    #[arg(
        long,
        value_name = "KEY",
        env = "RISP_SERVER_KEY",
        conflicts_with = "no_encryption"
    )]
    pub server_key: Option<crate::proto::crypto::PublicKey>,
    /// Seal the session with whatever key the server proves (trust on
    /// first use, without remembering it).
    #[arg(long, conflicts_with = "no_encryption")]
    pub encrypt: bool,
    /// Plain datagrams (the default until sealed sessions are the default).
    #[arg(long)]
    pub no_encryption: bool,
}

/// How long a client waits for its first value before saying, on a
/// terminal, what it is waiting for.
pub const WAITING_NOTICE_AFTER: Duration = Duration::from_secs(1);

/// Resolves HOST:PORT, preferring IPv4 (a server bound to 0.0.0.0 does not
/// hear ::1).
pub fn resolve(server: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = server
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve server `{server}`: {e} (expected HOST:PORT)"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("server `{server}` resolves to no address"))
}

/// Resolves `--server` (one HOST:PORT or a comma-separated list of them;
/// absent: 127.0.0.1 and `port`), each as [`resolve`] does.
pub fn resolve_servers(server: Option<&str>, port: u16) -> Result<Vec<SocketAddr>, String> {
    let Some(list) = server else {
        return resolve(&format!("127.0.0.1:{port}")).map(|a| vec![a]);
    };
    let addrs = list
        .split(',')
        .map(str::trim)
        .map(|s| {
            if s.is_empty() {
                Err(format!(
                    "empty entry in the server list `{list}` (expected HOST:PORT[,HOST:PORT...])"
                ))
            } else {
                resolve(s)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(addrs)
}

/// Runs the client command; returns the exit status.
pub async fn run(args: ClientArgs) -> Exit {
    let servers = match resolve_servers(args.server.as_deref(), args.port) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let server = list_servers(&servers);
    let mut rng = match args.seed {
        Some(s) => rand::rngs::StdRng::seed_from_u64(s),
        None => rand::rngs::StdRng::from_entropy(),
    };
    let len = args.len.unwrap_or_else(|| rng.gen_range(1..=1000));
    let uuid = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
    let start = StartInfo::now(&servers, shaping_flags(&args, len));
    let mut client = transfer_client(&args, &servers, uuid, args.netem.seed());
    if let Some(secs) = args.interval {
        client = client.interval(Duration::from_secs_f64(secs));
    }
    let capture = match super::capture::open(args.pcap.as_deref(), "risp-udp client") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --pcap {e}");
            return Exit::Usage;
        }
    };
    if let Some(c) = &capture {
        client = client.capture(c.clone());
    }
    if let Some(dir) = &args.qlog {
        if let Err(e) = crate::net::qlog::create_qlog_dir(dir) {
            eprintln!("error: {e}");
            return Exit::Failure;
        }
        client = client.qlog(dir);
    }
    let mut sinks = match ValueSinks::new(&args, len) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let print = sinks.print;
    // Registered now, so a signal from here on is seen (and the log line
    // below can tell a script that it is).
    let signals = super::signal::termination();
    tracing::info!(%uuid, len, %server, "requesting sequence");
    let read = match client.request(len).await {
        Ok(transfer) => read_values(transfer, &mut sinks, signals, &server).await,
        Err(e) => Read::failed(e),
    };
    let captured = super::capture::close(capture.as_deref());
    if let Ok(o) = &read.outcome {
        // The last, partial interval ends with the transfer.
        for i in o.intervals.iter().skip(read.intervals_printed) {
            sinks.print_interval(i);
        }
    }
    let ValueSinks {
        mut out, file, bar, ..
    } = sinks;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let flushed = out.flush();
    drop(out);
    if read.stdout_closed || flushed.as_ref().is_err_and(is_closed_pipe) {
        // The reader of the values went away (`--print | head`): the
        // transfer stopped; nothing more to say.
        return Exit::Ok;
    }
    let outcome = match read.outcome {
        Ok(o) => o,
        Err(e) => {
            match &e {
                TransferError::Refused { .. } | TransferError::Qlog(_) => eprintln!("error: {e}"),
                e => eprintln!("error: socket: {e}"),
            }
            return Exit::for_transfer_error(&e);
        }
    };
    let mut write_err = read.write_err;
    if let Some(mut f) = file {
        if let Err(e) = f.flush() {
            write_err.get_or_insert(e);
        }
    }
    let interrupted = read.interrupted;
    let exit = Exit::for_run(std::slice::from_ref(&outcome), interrupted, None);
    report(&args, &outcome, exit, start, interrupted, print);
    if let Some(dir) = &args.hist_out {
        match outcome.hist.write_dir(dir, &format!("client-{uuid}-")) {
            Ok(files) => {
                tracing::info!(count = files.len(), dir = %dir.display(), "histograms written")
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Failure;
            }
        }
    }
    if let Some(e) = write_err {
        eprintln!("error: writing values: {e}");
        return Exit::Failure;
    }
    if interrupted {
        eprintln!(
            "interrupted after {} of {} values; the session was abandoned (the server was told to free it)",
            outcome.delivered, outcome.len
        );
    } else if let Some(e) = &outcome.error {
        eprintln!("error: {}", failure_message(&outcome, e));
    }
    if !captured && exit == Exit::Ok {
        return Exit::Failure;
    }
    exit
}

/// Prints the report: one JSON object, or the human summary (to stderr
/// when the values go to stdout).
fn report(
    args: &ClientArgs,
    outcome: &TransferReport,
    exit: Exit,
    start: StartInfo,
    interrupted: bool,
    values_on_stdout: bool,
) {
    if args.json {
        let mut json = ClientJson::new(outcome, exit as u8);
        json.start = Some(start);
        json.interrupted = interrupted;
        // Last, after the transfer: the high-water mark only grows.
        json.peak_rss_kb = peak_rss_kb();
        match serde_json::to_string(&json) {
            Ok(j) => crate::outln!("{j}"),
            Err(e) => eprintln!("error: {e}"),
        }
    } else if values_on_stdout {
        eprint!("{}", human(outcome, interrupted));
    } else {
        let mut out = Stdout::lock();
        let _ = write!(out, "{}", human(outcome, interrupted)).and_then(|()| out.flush());
    }
}

/// Where the values go: stdout (`--print`, `--output -`), a file, a
/// progress bar.
struct ValueSinks {
    print: bool,
    out: io::StdoutLock<'static>,
    file: Option<BufWriter<File>>,
    bar: Option<ProgressBar>,
}

/// Why writing the values stopped.
enum WriteStop {
    /// Stdout's reader went away.
    ClosedPipe,
    /// A write failed.
    Failed(io::Error),
}

impl ValueSinks {
    /// The sinks the flags ask for; `Err` with the exit code on a bad
    /// combination or a file that cannot be created.
    fn new(args: &ClientArgs, len: u32) -> Result<Self, Exit> {
        // `--output -` is stdout: the same as --print.
        let to_stdout = args.output.as_deref() == Some(std::path::Path::new("-"));
        if to_stdout && args.json {
            eprintln!("error: --output - writes the values to stdout, where --json writes its report; give --output a file");
            return Err(Exit::Usage);
        }
        let print = args.print || to_stdout;
        let file = match &args.output {
            Some(_) if to_stdout => None,
            Some(p) => match File::create(p) {
                Ok(f) => Some(BufWriter::new(f)),
                Err(e) => {
                    eprintln!("error: cannot write {}: {e}", p.display());
                    return Err(Exit::Failure);
                }
            },
            None => None,
        };
        let show_bar = !args.json
            && !print
            && !args.no_progress
            && io::stdout().is_terminal()
            && io::stderr().is_terminal()
            && len >= 10_000;
        Ok(Self {
            print,
            out: io::stdout().lock(),
            file,
            bar: show_bar.then(|| progress_bar(len)),
        })
    }

    /// Writes one value wherever it goes.
    fn write(&mut self, value: u32) -> Result<(), WriteStop> {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        if self.print {
            if let Err(e) = writeln!(self.out, "{value}") {
                return Err(if is_closed_pipe(&e) {
                    WriteStop::ClosedPipe
                } else {
                    WriteStop::Failed(e)
                });
            }
        }
        if let Some(f) = self.file.as_mut() {
            writeln!(f, "{value}").map_err(WriteStop::Failed)?;
        }
        Ok(())
    }

    /// One `--interval` line, above the bar when there is one.
    fn print_interval(&self, i: &IntervalStats) {
        match &self.bar {
            Some(b) => b.println(interval_line(i)),
            None => eprintln!("{}", interval_line(i)),
        }
    }
}

/// At most 20 + 1 + 23 + 1 + 15 + 9 = 69 columns with 100M values: one
/// line on an 80-column terminal.
fn progress_bar(len: u32) -> ProgressBar {
    let b = ProgressBar::new(u64::from(len));
    let style =
        ProgressStyle::with_template("{bar:20} {human_pos}/{human_len} {rate} values/s eta {eta}")
            .map(|s| {
                s.with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&si(state.per_sec()));
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b
}

/// How reading a transfer's values ended.
struct Read {
    /// The report, or why there is none.
    outcome: Result<TransferReport, TransferError>,
    /// Stopped by a signal.
    interrupted: bool,
    /// Stdout's reader went away.
    stdout_closed: bool,
    /// Writing the values failed (the transfer was then aborted).
    write_err: Option<io::Error>,
    /// Intervals printed as they ended.
    intervals_printed: usize,
}

impl Read {
    fn failed(e: TransferError) -> Self {
        Self {
            outcome: Err(e),
            interrupted: false,
            stdout_closed: false,
            write_err: None,
            intervals_printed: 0,
        }
    }
}

/// Reads `transfer` into `sinks` to its end, printing intervals as they
/// end; on `signals` aborts it (the server is told) and reads on until the
/// abort is done. On a terminal, says what it is waiting for once the
/// wait is long enough to wonder (nothing is printed when a script runs
/// us).
async fn read_values(
    mut transfer: Transfer,
    sinks: &mut ValueSinks,
    signals: impl std::future::Future<Output = ()>,
    server: &str,
) -> Read {
    let mut read = Read::failed(TransferError::Aborted);
    let mut intervals = transfer.intervals();
    let mut signals = pin!(signals);
    let mut notice = pin!(tokio::time::sleep(WAITING_NOTICE_AFTER));
    let mut noticed = !io::stderr().is_terminal();
    let stop = loop {
        let value = tokio::select! {
            item = transfer.next() => match item {
                Some(Ok(v)) => v,
                // Why the values stopped is in the report.
                Some(Err(_)) => continue,
                None => break None,
            },
            Some(i) = next_interval(&mut intervals) => {
                read.intervals_printed += 1;
                sinks.print_interval(&i);
                continue;
            }
            () = &mut notice, if !noticed => {
                noticed = true;
                if transfer.read() == 0 {
                    eprintln!("waiting for {server}…");
                }
                continue;
            }
            () = &mut signals, if !read.interrupted => {
                read.interrupted = true;
                transfer.abort();
                continue;
            }
        };
        // Everything delivered so far, without a wait per value.
        let stop = std::iter::once(value)
            .chain(std::iter::from_fn(|| transfer.next_ready()))
            .find_map(|v| sinks.write(v.value).err());
        if stop.is_some() {
            break stop;
        }
    };
    match stop {
        // Nothing more to say: the transfer is dropped.
        Some(WriteStop::ClosedPipe) => {
            read.stdout_closed = true;
            return read;
        }
        Some(WriteStop::Failed(e)) => {
            read.write_err = Some(e);
            transfer.abort();
        }
        None => {}
    }
    read.outcome = transfer.finish().await;
    read
}

/// The next interval, when intervals were asked for.
async fn next_interval(rx: &mut Option<UnboundedReceiver<IntervalStats>>) -> Option<IntervalStats> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The flags that shape a run, for the JSON `start` object.
fn shaping_flags(args: &ClientArgs, len: u32) -> serde_json::Value {
    let mut flags = serde_json::json!({
        "len": len,
        "window": args.window,
        "max_window": args.max_window,
        "sack": !args.no_sack,
        "client_ticker_ms": args.client_ticker_ms,
        "min_rto_ms": args.min_rto_ms,
        "client_killswitch_ms": args.client_killswitch_ms,
        "idle_timeout_ms": args.idle_timeout_ms,
        "seed": args.seed,
        "interval_s": args.interval,
    });
    // The impairment flags under their own names (`loss`, `delay_ms`, ...).
    if let (Some(map), Ok(serde_json::Value::Object(netem))) =
        (flags.as_object_mut(), serde_json::to_value(&args.netem))
    {
        map.extend(netem);
    }
    flags
}

/// The transfer the client flags describe: under `uuid` from `servers`
/// (the first, then the others on failover), impaired (when the flags ask)
/// with `netem_seed` (shared with `risp-udp load`, which runs many of
/// them).
pub fn transfer_client(
    args: &ClientArgs,
    servers: &[SocketAddr],
    uuid: Uuid,
    netem_seed: u64,
) -> Client {
    let mut config = ClientConfig::new(uuid, 0);
    config.initial_window = args.window.min(args.max_window);
    config.max_window = args.max_window;
    config.sack = !args.no_sack;
    config.rtt.max_rto = Duration::from_millis(args.client_ticker_ms);
    config.rtt.min_rto =
        risp_netem::spec::duration_from_ms(args.min_rto_ms).min(config.rtt.max_rto);
    config.idle_timeout = Duration::from_millis(args.idle_timeout_ms);
    config.encryption = match (args.server_key, args.encrypt, args.no_encryption) {
        (_, _, true) => ClientEncryption::Off,
        (Some(key), _, _) => ClientEncryption::Pinned(key),
        (None, true, _) => ClientEncryption::Learn,
        (None, false, _) => ClientEncryption::Off,
    };
    let mut client = Client::connect(servers.iter().copied())
        .config(config)
        .io(IoMode::from_env());
    if let Some(cfg) = args.netem.config(Side::Client) {
        client = client.impairment(cfg, netem_seed);
    }
    if let Some(ms) = args.client_killswitch_ms {
        client = client.killswitch(Duration::from_millis(ms));
    }
    client
}
