//! qlog traces of real sessions (`client --qlog DIR`, `server --qlog DIR`):
//! the drivers turn the core's tracing on and write what it records
//! ([`crate::proto::trace`]) through the one qlog writer
//! ([`crate::trace::qlog`]), one JSON-SEQ file per session UUID, named
//! `UUID-client.sqlog` or `UUID-server.sqlog` so that both ends can share
//! a directory. Times count from the session's start on the driver's
//! clock; the header's `reference_time` is that start in wall-clock
//! milliseconds.
//!
//! Off unless asked for: a driver without a recorder pays one branch where
//! it would hand records over, and the core records nothing.
//!
//! The client driver sends only some of the acks its core writes for a
//! received batch (see `net/pending_acks.rs`): the recorder
//! holds a batch's records, each of the core's ack records tagged with its
//! place in the batch, and writes only those of the acks that went out.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use uuid::Uuid;

use crate::clock;
use crate::proto::client::Client;
use crate::proto::trace::{TraceEvent, Traced};
use crate::trace::qlog::{QlogHeader, QlogWriter, Vantage, QLOG_EXTENSION};
use crate::transfer::TransferReport;

mod server;

pub(crate) use server::ServerQlog;
pub use server::MAX_OPEN_QLOG_FILES;

/// The qlog file of session `uuid` seen from `vantage`, in `dir`.
pub fn qlog_path(dir: &Path, uuid: Uuid, vantage: Vantage) -> PathBuf {
    dir.join(format!("{uuid}-{}.{QLOG_EXTENSION}", vantage.name()))
}

/// Creates `dir` (and its parents) for qlog files, with the error a user
/// can act on.
pub fn create_qlog_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{}: cannot create the qlog directory: {e}", dir.display()),
        )
    })
}

/// One session's open trace file.
type FileWriter = QlogWriter<BufWriter<File>>;

/// Opens `uuid`'s file in `dir` and writes its header and
/// `connection_started` (`len` values), times counting from `start`.
fn open_session(
    dir: &Path,
    uuid: Uuid,
    vantage: Vantage,
    start: Instant,
    len: u32,
) -> io::Result<FileWriter> {
    let path = qlog_path(dir, uuid, vantage);
    let named = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("{}: cannot write qlog: {e}", path.display()),
        )
    };
    let file = File::create(&path).map_err(named)?;
    let header = QlogHeader {
        title: format!("risp-udp {} session {uuid}", vantage.name()),
        vantage,
        writer: format!("risp-udp {}", vantage.name()),
        uuid,
        reference_time_ms: Some(wall_ms(start)),
    };
    let mut w = QlogWriter::new(BufWriter::new(file), &header, start).map_err(named)?;
    w.connection_started(start, len).map_err(named)?;
    Ok(w)
}

/// `at` in wall-clock milliseconds since the Unix epoch.
fn wall_ms(at: Instant) -> f64 {
    let ago = clock::now().saturating_duration_since(at);
    let wall = clock::wall_time()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    wall.as_secs_f64() * 1000.0
}

/// A client transfer's qlog: one file per session UUID (a client that the
/// server makes start over under a new UUID closes the first file and
/// opens a second; failover and reconnects resume the same UUID and stay
/// in its file).
#[derive(Debug)]
pub(crate) struct ClientQlog {
    dir: PathBuf,
    len: u32,
    /// The session whose file is open.
    uuid: Uuid,
    writer: Option<FileWriter>,
    /// A received batch's records, each ack tagged with its place among
    /// the batch's acks, until the driver knows which went out.
    held: Vec<(Traced, Option<usize>)>,
    /// The first write error; nothing is written after it.
    failed: Option<io::Error>,
}

impl ClientQlog {
    /// Opens session `uuid`'s file in `dir` (which must exist) at once, so
    /// that a directory that cannot be written fails the transfer before
    /// it starts.
    pub(crate) fn create(dir: &Path, uuid: Uuid, len: u32, start: Instant) -> io::Result<Self> {
        let writer = open_session(dir, uuid, Vantage::Client, start, len)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            len,
            uuid,
            writer: Some(writer),
            held: Vec::new(),
            failed: None,
        })
    }

    /// Writes every record the core holds.
    pub(crate) fn drain(&mut self, client: &mut Client) {
        while let Some(t) = client.poll_trace() {
            self.write(&t);
        }
    }

    /// Holds every record the core holds; the client datagrams among them
    /// are the batch's ack number `ack` (`None`: they are not acks of the
    /// batch).
    pub(crate) fn hold(&mut self, client: &mut Client, ack: Option<usize>) {
        while let Some(t) = client.poll_trace() {
            let tag = match t.event {
                TraceEvent::Sent(d) if d.kind.is_client() => ack,
                _ => None,
            };
            self.held.push((t, tag));
        }
    }

    /// Writes the held records, leaving out the acks for which `sent` is
    /// false.
    pub(crate) fn release(&mut self, sent: impl Fn(usize) -> bool) {
        let mut held = std::mem::take(&mut self.held);
        for (t, ack) in &held {
            if ack.is_none_or(&sent) {
                self.write(t);
            }
        }
        held.clear();
        self.held = held;
    }

    /// Closes the file with the transfer's outcome at `now`; the first
    /// write error, if any.
    pub(crate) fn finish(mut self, now: Instant, report: &TransferReport) -> io::Result<()> {
        let reason = match &report.error {
            Some(e) => e.to_string(),
            None if report.verified() => "completed".to_string(),
            None => "stopped before the end".to_string(),
        };
        self.close(now, report.verified(), &reason);
        self.failed.map_or(Ok(()), Err)
    }

    fn write(&mut self, t: &Traced) {
        if t.uuid != self.uuid {
            self.restart(t);
        }
        if let Some(w) = &mut self.writer {
            if let Err(e) = w.record(t) {
                self.fail(e);
            }
        }
    }

    /// The core started over under `t`'s UUID: a new file from `t` on.
    fn restart(&mut self, t: &Traced) {
        self.close(t.at, false, &format!("restarted as session {}", t.uuid));
        self.uuid = t.uuid;
        if self.failed.is_none() {
            match open_session(&self.dir, t.uuid, Vantage::Client, t.at, self.len) {
                Ok(w) => self.writer = Some(w),
                Err(e) => self.fail(e),
            }
        }
    }

    fn close(&mut self, at: Instant, clean: bool, reason: &str) {
        if let Some(mut w) = self.writer.take() {
            let closed = w.connection_closed(at, clean, reason);
            if let Err(e) = closed.and_then(|()| w.finish().map(drop)) {
                self.fail(e);
            }
        }
    }

    fn fail(&mut self, e: io::Error) {
        self.writer = None;
        if self.failed.is_none() {
            let path = qlog_path(&self.dir, self.uuid, Vantage::Client);
            tracing::warn!(path = %path.display(), error = %e, "qlog: writing stopped");
            self.failed = Some(e);
        }
    }
}
