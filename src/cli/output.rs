//! Standard output that may be closed by its reader.
//!
//! `risp-udp demo | head -1` closes the pipe after one line; the next write
//! fails with `BrokenPipe`. That is not an error worth a message, let alone
//! a panic (which `println!` does): the reader has what it wanted. Every
//! command therefore writes its stdout through [`Stdout`], which ends the
//! process quietly with [`Exit::Ok`] on a broken pipe, or, where there is
//! work to stop first (a transfer), checks [`is_closed_pipe`] itself.

use std::fmt;
use std::io::{self, Write};

use super::exit::Exit;

/// True when `e` says the reader of the stream went away.
pub fn is_closed_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Ends the process quietly because stdout was closed by its reader.
pub fn exit_on_closed_pipe() -> ! {
    let _ = io::stderr().flush();
    std::process::exit(i32::from(Exit::Ok as u8))
}

/// The process's stdout, locked; a write to a closed pipe ends the process
/// quietly (see the module docs). Other errors are returned.
#[derive(Debug)]
pub struct Stdout {
    /// The locked standard output.
    inner: io::StdoutLock<'static>,
}

impl Stdout {
    /// Locks the process's stdout.
    pub fn lock() -> Self {
        Self {
            inner: io::stdout().lock(),
        }
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Self::lock()
    }
}

/// Passes `r` through, unless it is a closed pipe.
fn quiet<T>(r: io::Result<T>) -> io::Result<T> {
    match r {
        Err(e) if is_closed_pipe(&e) => exit_on_closed_pipe(),
        r => r,
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        quiet(self.inner.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        quiet(self.inner.flush())
    }
}

/// Writes `args` to stdout and flushes (for the `outln!` style of printing
/// a report line by line). A closed pipe ends the process quietly; any
/// other write error is reported once on stderr and ends it with
/// [`Exit::Failure`].
pub fn print(args: fmt::Arguments<'_>) {
    let mut out = Stdout::lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(i32::from(Exit::Failure as u8));
    }
}

/// `println!` that ends the process quietly when stdout was closed by its
/// reader, instead of panicking.
#[macro_export]
#[doc(hidden)]
macro_rules! outln {
    () => {
        $crate::cli::output::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
