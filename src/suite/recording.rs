//! Recordings of simulated runs: `sim --qlog DIR` writes a qlog trace of
//! every session of every run, and `sim --plot DIR` a timeline of each
//! profile's first run (its first client), drawn from such a trace.
//!
//! The simulator sees both ends, so one file tells the whole session from
//! the data sender's side (vantage point `server`): the datagrams the
//! server sent and received, the losses it declared and the flight it
//! held, with the client's rate controller's figures (window, RTT, pacing
//! and delivery rate, phase) beside them, since in RISP the client owns the
//! window. Recording changes nothing in the run: the same seed gives the
//! same report and trace hash with or without it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use uuid::Uuid;

use super::profile::Profile;
use crate::proto::client::{Client, ClientEvent};
use crate::proto::server::Server;
use crate::proto::trace::{TraceEvent, Traced};
use crate::sim::Observer;
use crate::trace::plot::plot_sqlog;
use crate::trace::qlog::{QlogHeader, QlogWriter, Vantage, QLOG_EXTENSION};
use crate::transfer::{RunConfig, RunReport};

/// What to record of a suite's virtual runs.
#[derive(Debug, Default)]
pub struct SimRecording {
    /// Write every session's qlog into this directory.
    pub qlog: Option<PathBuf>,
    /// Draw each profile's first run's timeline into this directory.
    pub timelines: Option<PathBuf>,
    /// Write one pcapng capture per run into this directory
    /// ([`super::capture::capture_file_name`]).
    pub pcap: Option<PathBuf>,
    /// Profiles whose timeline is drawn.
    drawn: HashSet<String>,
    /// qlog files written so far.
    pub traces: usize,
    /// Timelines drawn so far.
    pub written: Vec<PathBuf>,
}

impl SimRecording {
    /// Records qlog traces into `qlog` and timelines into `timelines`.
    pub fn new(qlog: Option<PathBuf>, timelines: Option<PathBuf>) -> Self {
        Self {
            qlog,
            timelines,
            ..Self::default()
        }
    }
}

/// The qlog file of client `client` in the run of `profile` with `seed`.
pub fn qlog_name(profile: &str, seed: u64, client: usize) -> String {
    format!("{}-s{seed}-c{client}.{QLOG_EXTENSION}", file_stem(profile))
}

/// The timeline file of `profile`.
pub fn timeline_name(profile: &str) -> String {
    format!("timeline-{}.svg", file_stem(profile))
}

/// `name` with anything but letters, digits, `.`, `-` and `_` replaced by
/// `_`, so that a profile name is a safe file name.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs `cfg` (a run of `profile`) in the simulator, recording what `rec`
/// asks for; a run with nothing to record runs as [`crate::sim::run`].
pub fn record_run(
    rec: &mut SimRecording,
    profile: &Profile,
    cfg: &RunConfig,
) -> io::Result<RunReport> {
    let timeline = rec
        .timelines
        .clone()
        .filter(|_| !rec.drawn.contains(&profile.name));
    if rec.qlog.is_none() && timeline.is_none() {
        return match &rec.pcap {
            Some(dir) => super::capture::capture_to_dir(cfg, &profile.name, dir),
            None => Ok(crate::sim::run(cfg)),
        };
    }
    let mut capture =
        super::capture::RunCapture::open(rec.pcap.as_deref(), &profile.name, cfg.seed)?;
    let mut traced = cfg.clone();
    traced.client.trace = true;
    traced.server.trace = true;
    let title = format!("{} seed {}", profile.name, cfg.seed);
    let mut obs = QlogObserver::new(title, cfg.clients, cfg.len);
    let report = crate::sim::run_observed(&traced, &mut (&mut obs, &mut capture));
    capture.finish()?;
    let files = obs.finish();
    if let Some(dir) = &rec.qlog {
        for (i, bytes) in files.iter().enumerate() {
            let path = dir.join(qlog_name(&profile.name, cfg.seed, i));
            write_file(&path, bytes)?;
            rec.traces += 1;
        }
    }
    if let (Some(dir), Some(first)) = (timeline, files.first().filter(|f| !f.is_empty())) {
        let path = dir.join(timeline_name(&profile.name));
        plot_sqlog(first, &profile.name, &path).map_err(io::Error::other)?;
        rec.drawn.insert(profile.name.clone());
        rec.written.push(path);
    }
    Ok(report)
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// One session's trace while the run goes on.
struct Session {
    writer: QlogWriter<Vec<u8>>,
    /// Time of its latest event.
    last: Instant,
    closed: bool,
}

/// Writes each client's session as qlog, in memory, as the run goes.
struct QlogObserver {
    title: String,
    len: u32,
    /// Which client each session UUID is.
    uuids: HashMap<Uuid, usize>,
    sessions: Vec<Option<Session>>,
}

impl QlogObserver {
    fn new(title: String, clients: usize, len: u32) -> Self {
        Self {
            title,
            len,
            uuids: HashMap::new(),
            sessions: (0..clients).map(|_| None).collect(),
        }
    }

    /// Client `i`'s trace, opened at `at` under `uuid` if it is not yet.
    fn session(&mut self, i: usize, uuid: Uuid, at: Instant) -> Option<&mut Session> {
        let slot = self.sessions.get_mut(i)?;
        if slot.is_none() {
            let header = QlogHeader {
                title: format!("{} client {i}", self.title),
                vantage: Vantage::Server,
                writer: "risp-udp sim (server side, with the client's rate control)".into(),
                uuid,
                reference_time_ms: None,
            };
            // Writing into memory cannot fail.
            let mut writer = QlogWriter::new(Vec::new(), &header, at).ok()?;
            writer.connection_started(at, self.len).ok()?;
            *slot = Some(Session {
                writer,
                last: at,
                closed: false,
            });
        }
        let s = slot.as_mut()?;
        s.last = s.last.max(at);
        Some(s)
    }

    /// Every client's trace, closed (a session the run's time limit cut
    /// short closes at its last event); empty for a client that never
    /// started.
    fn finish(self) -> Vec<Vec<u8>> {
        self.sessions
            .into_iter()
            .map(|s| {
                let Some(mut s) = s else {
                    return Vec::new();
                };
                if !s.closed {
                    let _ = s.writer.connection_closed(s.last, false, "the run ended");
                }
                s.writer.finish().unwrap_or_default()
            })
            .collect()
    }
}

impl Observer for QlogObserver {
    fn client_event(&mut self, now: Instant, client: usize, core: &Client, event: &ClientEvent) {
        let (clean, reason) = match event {
            ClientEvent::Completed => (true, "completed".to_string()),
            ClientEvent::Failed(e) => (false, e.to_string()),
            _ => return,
        };
        if let Some(s) = self.session(client, core.uuid(), now) {
            let _ = s.writer.connection_closed(now, clean, &reason);
            s.closed = true;
        }
    }

    fn client_trace(&mut self, client: usize, t: &Traced) {
        self.uuids.insert(t.uuid, client);
        // The packets are written from the server's side; the client adds
        // its rate controller's figures.
        if let TraceEvent::Metrics(m) = t.event {
            if let Some(s) = self.session(client, t.uuid, t.at) {
                let _ = s.writer.metrics(t.at, &m);
            }
        }
    }

    fn server_trace(&mut self, _: &Server, t: &Traced) {
        let Some(&client) = self.uuids.get(&t.uuid) else {
            return;
        };
        let Some(s) = self.session(client, t.uuid, t.at) else {
            return;
        };
        let _ = match t.event {
            TraceEvent::Metrics(m) => s.writer.flight(t.at, m.in_flight.unwrap_or(0)),
            _ => s.writer.record(t),
        };
    }
}
