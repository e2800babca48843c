//! clap commands of the `risp-udp` program.

pub mod sim;
