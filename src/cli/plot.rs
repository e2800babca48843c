//! `risp-udp plot FILE.sqlog --output OUT.svg|.png`: a timeline of one
//! transfer from its qlog trace (see [`crate::trace::plot`]).

use std::io::Write;
use std::path::PathBuf;

use crate::trace::plot::plot_file;
use crate::trace::TraceError;

/// Arguments of `risp-udp plot`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// A qlog trace (JSON-SEQ), as `client --qlog`, `server --qlog` or
    /// `sim --qlog` write.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
    /// Where to draw: an SVG or a PNG, by the extension.
    #[arg(long, short, value_name = "OUT")]
    pub output: PathBuf,
}

/// Draws the timeline and says where it went.
pub fn run_plot(args: &PlotArgs, out: &mut impl Write) -> Result<(), TraceError> {
    plot_file(&args.input, &args.output)?;
    // The picture is written; a closed stdout loses only this line.
    let _ = writeln!(out, "plot: {}", args.output.display());
    Ok(())
}
