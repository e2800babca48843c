//! The `risp-udp` binary: parse the command line and hand over.

fn main() -> std::process::ExitCode {
    risp_udp::cli::main()
}
