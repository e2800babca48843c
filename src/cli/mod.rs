//! The `risp-udp` command line: clap definitions and dispatch.
//!
//! Flags follow the original RISP's, in kebab-case, each also read from a
//! `RISP_*` environment variable, with the original snake_case spellings
//! accepted as aliases.

pub mod args;
pub mod client;
pub mod demo;
pub mod exit;
pub mod health;
pub mod hist;
pub mod load;
pub mod netem_args;
pub mod report;
pub mod server;
pub mod sim;
pub mod tcp;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use exit::Exit;

/// RISP (Realtime Integer Streaming Protocol) over plain UDP.
///
/// A server streams a sequence of integers to each client; the client
/// verifies it against the server's checksum. Reliability is ours:
/// selective acks, RTT-derived timers, an adaptive window, and sessions
/// keyed by UUID that survive disconnects and address changes.
#[derive(Debug, Parser)]
#[command(
    name = "risp-udp",
    version,
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

/// Flags every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// UDP port the server listens on, and the client's default server port.
    #[arg(long, global = true, default_value_t = 8081, env = "RISP_PORT")]
    pub port: u16,
    /// TCP port of the server's health endpoint (0: off).
    #[arg(
        long,
        global = true,
        alias = "health_port",
        default_value_t = 8080,
        env = "RISP_HEALTH_PORT"
    )]
    pub health_port: u16,
    /// Most sessions a server holds at once; past it, new clients are told
    /// "busy" and the health check answers 503 (was --max_goroutines).
    #[arg(long, global = true, alias = "max_goroutines", default_value_t = 1024, env = "RISP_MAX_SESSIONS",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_sessions: u64,
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
    NetemArgs(netem_args::NetemArgsArgs),
    /// Read, compare, merge and plot saved latency histograms.
    Hist(hist::HistArgs),
    /// Plain-TCP comparison server (same sequence, same checksum).
    TcpServer(tcp::TcpServerArgs),
    /// Plain-TCP comparison client.
    TcpClient(tcp::TcpClientArgs),
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
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
        .with_writer(std::io::stderr);
    let _ = if g.env == Env::Prod {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
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
    let cli = Cli::parse();
    init_logging(&cli.global);
    let g = cli.global;
    // Commands that need no runtime of ours (`sim` starts its own for
    // `--real`).
    match &cli.command {
        Command::Sim(a) => return run_sim(a).code(),
        Command::Hist(a) => return run_hist(a).code(),
        Command::NetemArgs(a) => return run_netem_args(a).code(),
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "risp-udp", &mut std::io::stdout());
            return Exit::Ok.code();
        }
        _ => {}
    }
    let threads = match cli.command {
        Command::Demo(_) => 2,
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
            Command::Server(a) => {
                server::run(a, g.port, g.health_port, g.max_sessions as usize).await
            }
            Command::Client(a) => client::run(a, g.port).await,
            Command::Load(a) => load::run(a, g.port).await,
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
                    Exit::Failure
                }
            },
            Command::Sim(_)
            | Command::Hist(_)
            | Command::NetemArgs(_)
            | Command::Completion { .. } => {
                unreachable!("run without a runtime above")
            }
        }
    });
    exit.code()
}

fn run_sim(a: &sim::SimArgs) -> Exit {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let r = sim::run_sim(a, &mut out);
    let _ = out.flush();
    match r {
        Ok(true) => Exit::Ok,
        Ok(false) => Exit::ExpectationFailed,
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Failure
        }
    }
}

fn run_netem_args(a: &netem_args::NetemArgsArgs) -> Exit {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match netem_args::run_netem_args(a, &mut out) {
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

fn run_hist(a: &hist::HistArgs) -> Exit {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match hist::run_hist(a, &mut out) {
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
