//! A server worker's qlog files: one per session the core admitted
//! (opened, or resumed from the store), opened at the session's first
//! record and closed when it closes or expires, or when the worker stops.
//!
//! Records of sessions the core never admitted (a refused handshake, a
//! stray ack for a session it does not hold, a spoofed flood's
//! challenges) are not written: a file per UUID a peer makes up would let
//! anyone fill the disk. At most [`MAX_OPEN_QLOG_FILES`] files are open
//! at once per worker; a session admitted past that is not written. What
//! was not written is counted ([`ServerQlog::not_written`]).
//!
//! Writes go through a buffer per file ([`std::io::BufWriter`]), so the
//! worker's loop makes a system call about every 8 KiB of trace, not per
//! record; a write error stops that file (logged once per worker).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use uuid::Uuid;

use super::{open_session, FileWriter};
use crate::proto::server::{Server, ServerEvent};
use crate::proto::trace::Traced;
use crate::trace::qlog::Vantage;

/// Most qlog files one worker holds open.
pub const MAX_OPEN_QLOG_FILES: usize = 128;

/// One worker's qlog recorder (see the module docs).
#[derive(Debug)]
pub(crate) struct ServerQlog {
    dir: PathBuf,
    /// Sessions admitted whose file is not open yet, with their length.
    admitted: HashMap<Uuid, u32>,
    open: HashMap<Uuid, FileWriter>,
    /// Sessions that closed (true) or expired (false) this turn: their
    /// files close once this turn's records are written.
    ending: Vec<(Uuid, bool)>,
    /// Files opened so far.
    files: u64,
    /// Records not written (sessions never admitted, over the open-file
    /// cap, a failed file, the core's queue overflowing).
    not_written: u64,
    /// The core's [`Server::trace_dropped`] at the last drain.
    core_dropped: u64,
    /// A write error was logged.
    warned: bool,
}

impl ServerQlog {
    /// Writes into `dir`, which must exist.
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            admitted: HashMap::new(),
            open: HashMap::new(),
            ending: Vec::new(),
            files: 0,
            not_written: 0,
            core_dropped: 0,
            warned: false,
        }
    }

    /// Files opened so far.
    pub(crate) fn files(&self) -> u64 {
        self.files
    }

    /// Records not written so far.
    pub(crate) fn not_written(&self) -> u64 {
        self.not_written
    }

    /// Notes the sessions `ev` admits or ends (`server` still holds a
    /// session that `ev` opens or resumes).
    pub(crate) fn on_event(&mut self, ev: &ServerEvent, server: &Server) {
        match *ev {
            ServerEvent::Opened { uuid, len, .. } => {
                self.admitted.insert(uuid, len);
            }
            ServerEvent::Resumed { uuid, .. } if !self.open.contains_key(&uuid) => {
                let len = server.sequence(&uuid).map_or(0, |s| s.len());
                self.admitted.insert(uuid, len);
            }
            ServerEvent::Closed { uuid, .. } => self.ending.push((uuid, true)),
            ServerEvent::Expired { uuid, .. } => self.ending.push((uuid, false)),
            _ => {}
        }
    }

    /// Writes every record the core holds, then closes the files of the
    /// sessions that ended (at `now`).
    pub(crate) fn drain(&mut self, server: &mut Server, now: Instant) {
        while let Some(t) = server.poll_trace() {
            self.write(&t);
        }
        // The core's count is cumulative: add what it lost since.
        let dropped = server.trace_dropped();
        self.not_written += dropped.saturating_sub(self.core_dropped);
        self.core_dropped = dropped;
        for (uuid, clean) in std::mem::take(&mut self.ending) {
            self.admitted.remove(&uuid);
            let reason = if clean { "closed" } else { "expired" };
            self.close(uuid, now, clean, reason);
        }
    }

    /// Closes every open file (the worker stops).
    pub(crate) fn finish(&mut self, now: Instant) {
        let open: Vec<Uuid> = self.open.keys().copied().collect();
        for uuid in open {
            self.close(uuid, now, false, "the server stopped");
        }
        self.admitted.clear();
    }

    fn write(&mut self, t: &Traced) {
        if !self.open.contains_key(&t.uuid) && !self.start(t) {
            self.not_written += 1;
            return;
        }
        let Some(w) = self.open.get_mut(&t.uuid) else {
            return;
        };
        if let Err(e) = w.record(t) {
            self.open.remove(&t.uuid);
            self.failed(t.uuid, &e);
        }
    }

    /// Opens the file of `t`'s session if it was admitted and the cap
    /// allows; whether it is open.
    fn start(&mut self, t: &Traced) -> bool {
        let Some(len) = self.admitted.remove(&t.uuid) else {
            return false;
        };
        if self.open.len() >= MAX_OPEN_QLOG_FILES {
            return false;
        }
        match open_session(&self.dir, t.uuid, Vantage::Server, t.at, len) {
            Ok(w) => {
                self.open.insert(t.uuid, w);
                self.files += 1;
                true
            }
            Err(e) => {
                self.failed(t.uuid, &e);
                false
            }
        }
    }

    fn close(&mut self, uuid: Uuid, at: Instant, clean: bool, reason: &str) {
        if let Some(mut w) = self.open.remove(&uuid) {
            let closed = w.connection_closed(at, clean, reason);
            if let Err(e) = closed.and_then(|()| w.finish().map(drop)) {
                self.failed(uuid, &e);
            }
        }
    }

    fn failed(&mut self, uuid: Uuid, e: &std::io::Error) {
        self.not_written += 1;
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(%uuid, error = %e, "qlog: cannot write a session's trace (further errors are counted, not logged)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::server::ServerConfig;
    use crate::proto::trace::{LossTrigger, TraceEvent};

    fn lost(uuid: Uuid, at: Instant) -> Traced {
        Traced {
            at,
            uuid,
            event: TraceEvent::Lost {
                index: 1,
                trigger: LossTrigger::Time,
            },
        }
    }

    fn opened(uuid: Uuid) -> ServerEvent {
        ServerEvent::Opened {
            uuid,
            addr: ([127, 0, 0, 1], 9).into(),
            len: 10,
        }
    }

    #[test]
    fn only_admitted_sessions_are_written_and_the_open_files_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::new(ServerConfig::default());
        let mut q = ServerQlog::new(dir.path());
        let t0 = crate::clock::now();
        let n = MAX_OPEN_QLOG_FILES as u128 + 3;
        for i in 0..n {
            q.on_event(&opened(Uuid::from_u128(i + 1)), &server);
        }
        for i in 0..n {
            q.write(&lost(Uuid::from_u128(i + 1), t0));
        }
        // Never admitted: not written.
        q.write(&lost(Uuid::from_u128(u128::MAX), t0));
        assert_eq!(q.files(), MAX_OPEN_QLOG_FILES as u64);
        assert_eq!(q.not_written(), 3 + 1);
        // A closed session frees its place; its file is complete.
        let first = Uuid::from_u128(1);
        q.on_event(
            &ServerEvent::Closed {
                uuid: first,
                data_sent: 0,
            },
            &server,
        );
        let mut core = Server::new(ServerConfig::default());
        q.drain(&mut core, t0);
        assert_eq!(q.open.len(), MAX_OPEN_QLOG_FILES - 1);
        let path = super::super::qlog_path(dir.path(), first, Vantage::Server);
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text.matches('\u{1e}').count(), 4, "{text}");
        assert!(text.contains("recovery:packet_lost"), "{text}");
        assert!(text.contains(r#""trigger":"clean""#), "{text}");
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, MAX_OPEN_QLOG_FILES);
        q.finish(t0);
        assert!(q.open.is_empty());
    }
}
