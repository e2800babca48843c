//! The `risp-udp` command line: clap definitions and dispatch.
//!
//! Flags follow the original RISP's, in kebab-case, each also read from a
//! `RISP_*` environment variable, with the original snake_case spellings
//! accepted as aliases.

pub mod args;
pub mod capture;
pub mod client;
pub mod completion;
pub mod demo;
pub mod env_error;
pub mod exit;
pub mod hist;
pub mod intervals;
pub mod keys;
pub mod load;
pub mod netem_args;
pub mod output;
pub mod plot;
pub mod report;
pub mod server;
pub mod signal;
pub mod sim;
pub mod tcp;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use exit::Exit;

/// `--version`: the crate version, the git commit it was built from
/// ("unknown" outside a checkout) and the wire protocol version.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RISP_GIT_COMMIT"),
    ", wire protocol v3)"
);

/// RISP (Realtime Integer Streaming Protocol) over plain UDP.
///
/// A server streams a sequence of integers to each client; the client
/// verifies it against the server's checksum. Reliability is ours:
/// selective acks, RTT-derived timers, an adaptive window, and sessions
/// keyed by UUID that survive disconnects and address changes.
#[derive(Debug, Parser)]
#[command(
    name = "risp-udp",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Start with `risp-udp demo`, or run `risp-udp server` in one terminal and `risp-udp client 50 --loss 0.1` in another."
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes: where its logs go and how they look.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Log level (logs go to stderr).
    #[arg(long, global = true, alias = "log_level", value_enum, default_value_t = LogLevel::Warn, env = "RISP_LOG_LEVEL")]
    pub log_level: LogLevel,
    /// Environment; `prod` logs JSON.
    #[arg(long, global = true, value_enum, default_value_t = Env::Local, env = "RISP_ENV")]
    pub env: Env,
}

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-session state changes.
    Debug,
    /// Session life-cycle.
    Info,
    /// Only what needs attention.
    Warn,
    /// Only errors.
    Error,
}

/// Deployment environments, as the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Env {
    /// A developer's machine.
    Local,
    /// Automated tests.
    Test,
    /// A shared development deployment.
    Dev,
    /// Production: logs are JSON lines.
    Prod,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve sequences to clients over UDP.
    Server(server::ServerArgs),
    /// Request a sequence, verify it, and report.
    Client(client::ClientArgs),
    /// Run N clients at once from this process (as iperf3 -P) and report
    /// the aggregate.
    Load(load::LoadArgs),
    /// Run an in-process server and several lossy clients, and report.
    Demo(demo::DemoArgs),
    /// Run a loss-simulation suite (virtual time by default) and report.
    Sim(sim::SimArgs),
    /// Print the netns-impair.sh flags that apply a suite profile's link.
    NetemArgs(netem_args::ScriptFlagsArgs),
    /// Read, compare, merge and plot saved latency histograms.
    Hist(hist::HistArgs),
    /// Draw a transfer's timeline (window, RTT, rate, losses) from a qlog
    /// trace.
    Plot(plot::PlotArgs),
    /// Plain-TCP comparison server (same sequence, same checksum).
    TcpServer(tcp::TcpServerArgs),
    /// Plain-TCP comparison client.
    TcpClient(tcp::TcpClientArgs),
    /// Write a new server key (X25519) to a file and print its public key.
    Keygen(keys::KeygenArgs),
    /// Print the public key of a server key file.
    Pubkey(keys::PubkeyArgs),
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from these definitions.
    Man,
}

fn init_logging(g: &GlobalArgs) {
    let level = match g.log_level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("risp_udp={level},risp_netem={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr);
    let _ = if g.env == Env::Prod {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Colour in logs only on a terminal, and never with `NO_COLOR` set to
/// anything non-empty (<https://no-color.org>): files and pipes get plain
/// text.
pub fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
            if let Some(msg) = env_error::explain(&e, &cmd, &argv) {
                eprintln!("error: {msg}");
                return Exit::Usage.code();
            }
            e.exit()
        }
    };
    init_logging(&cli.global);
    // Commands that need no runtime of ours (`sim` starts its own for
    // `--real`).
    match &cli.command {
        Command::Sim(a) => return run_sim(a).code(),
        Command::Hist(a) => return run_to_stdout(|out| hist::run_hist(a, out)).code(),
        Command::Plot(a) => return run_to_stdout(|out| plot::run_plot(a, out)).code(),
        Command::NetemArgs(a) => return run_netem_args(a).code(),
        Command::Keygen(a) => return run_to_stdout(|out| keys::run_keygen(a, out)).code(),
        Command::Pubkey(a) => return run_to_stdout(|out| keys::run_pubkey(a, out)).code(),
        Command::Completion { shell } => {
            let mut out = output::Stdout::lock();
            if let Err(e) = out.write_all(&completion::script(*shell)) {
                eprintln!("error: {e}");
                return Exit::Failure.code();
            }
            return Exit::Ok.code();
        }
        Command::Man => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            let mut out = output::Stdout::lock();
            if let Err(e) = page.render(&mut out) {
                eprintln!("error: {e}");
                return Exit::Failure.code();
            }
            return Exit::Ok.code();
        }
        _ => {}
    }
    let threads = match &cli.command {
        Command::Demo(_) => 2,
        Command::Server(a) => usize::from(a.workers.max(1)),
        _ => 1,
    };
    let rt = match runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Exit::Failure.code();
        }
    };
    let exit = rt.block_on(async move {
        match cli.command {
            Command::Server(a) => server::run(a).await,
            Command::Client(a) => client::run(a).await,
            Command::Load(a) => load::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::TcpServer(a) => match tcp::run_tcp_server(a).await {
                Ok(()) => Exit::Ok,
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit::Failure
                }
            },
            Command::TcpClient(a) => match tcp::run_tcp_client(a).await {
                Ok(_) => Exit::Ok,
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit::for_tcp_error(&e)
                }
            },
            Command::Sim(_)
            | Command::Hist(_)
            | Command::Plot(_)
            | Command::NetemArgs(_)
            | Command::Keygen(_)
            | Command::Pubkey(_)
            | Command::Completion { .. }
            | Command::Man => {
                unreachable!("run without a runtime above")
            }
        }
    });
    exit.code()
}

fn run_sim(a: &sim::SimArgs) -> Exit {
    let mut out = output::Stdout::lock();
    let r = sim::run_sim(a, &mut out);
    let _ = out.flush();
    match r {
        Ok(true) => Exit::Ok,
        Ok(false) => Exit::ExpectationFailed,
        Err(e) => {
            eprintln!("error: {e}");
            Exit::for_suite_error(&e)
        }
    }
}

fn run_netem_args(a: &netem_args::ScriptFlagsArgs) -> Exit {
    let mut out = output::Stdout::lock();
    match netem_args::run_netem_args(a, &mut out) {
        Ok(()) => {
            let _ = out.flush();
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::for_suite_error(&e)
        }
    }
}

/// Runs a subcommand that writes to stdout: flushed on success, the error
/// on stderr and exit 1 on failure.
fn run_to_stdout<E: std::fmt::Display>(
    run: impl FnOnce(&mut output::Stdout) -> Result<(), E>,
) -> Exit {
    let mut out = output::Stdout::lock();
    match run(&mut out) {
        Ok(()) => {
            let _ = out.flush();
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Failure
        }
    }
}
