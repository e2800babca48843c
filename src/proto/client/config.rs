//! What a client is asked to do: its settings, what they make of the
//! rate controller and the reorder buffer, and the state another client
//! needs to resume its session.

use std::time::Duration;

use uuid::Uuid;

use crate::proto::congestion::{RateControl, INIT_CWND};
use crate::proto::recovery::{MAX_WINDOW, REORDER_SPAN};
use crate::proto::rtt::RttConfig;

/// The largest window with cumulative acks only ([`ClientConfig::sack`]
/// off): what every client was capped at before wire v3.
pub const CUMULATIVE_MAX_WINDOW: u32 = 256;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Session key; resume by reusing it.
    pub uuid: Uuid,
    /// Length of the sequence to request.
    pub len: u32,
    /// Congestion window to start with.
    pub initial_window: u32,
    /// Cap on the congestion window (at most [`MAX_WINDOW`](crate::proto::recovery::MAX_WINDOW)).
    pub max_window: u32,
    /// Send selective-ack bitmaps (off: cumulative acks only).
    pub sack: bool,
    /// Ack after at least this many new datagrams (a floor on
    /// [`Client::ack_every`](super::Client::ack_every)).
    pub ack_frequency: u32,
    /// Ack no later than this after unacked data arrived.
    pub max_ack_delay: Duration,
    /// Retransmission timer settings; `max_rto` bounds the silence between
    /// client messages (the original's client ticker).
    pub rtt: RttConfig,
    /// Give up after hearing nothing for this long.
    pub idle_timeout: Duration,
    /// CLOSED retries before finishing without the server's reply.
    pub close_retries: u32,
    /// Shrink the window on congestion (on by default; off only for
    /// experiments and negative controls, see
    /// [`RateControl::without_loss_response`](crate::proto::congestion::RateControl::without_loss_response)).
    pub loss_response: bool,
    /// How many servers the driver can move the session between, tried
    /// round robin (see [`Client::failover`](super::Client::failover)).
    /// With one (the default) the client never asks to move: a silent
    /// server ends the transfer at the idle timeout and a forgotten
    /// session at once, as without failover.
    pub servers: u32,
    /// Keep trace records for [`Client::poll_trace`](super::Client::poll_trace)
    /// (datagrams, the rate controller's figures): off by default, and
    /// then free (see [`crate::proto::trace`]).
    pub trace: bool,
    /// Whether (and how) the session is sealed; plain by default.
    pub encryption: ClientEncryption,
    /// Seed of the handshake's randomness (the simulator's, so that runs
    /// repeat); `None`: the operating system's.
    pub crypto_seed: Option<u64>,
}

/// How a client seals its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientEncryption {
    /// Plain datagrams, as before encryption.
    #[default]
    Off,
    /// Sealed, and the server must prove this key (pinned, or
    /// remembered from an earlier contact).
    Pinned(crate::proto::crypto::PublicKey),
    /// Sealed, with whatever key the server proves (trust on first use:
    /// read it from [`Client::server_key`](super::Client::server_key)).
    Learn,
}

impl ClientConfig {
    /// Defaults for a transfer of `len` values under session `uuid`.
    pub fn new(uuid: Uuid, len: u32) -> Self {
        Self {
            uuid,
            len,
            initial_window: INIT_CWND,
            max_window: MAX_WINDOW,
            sack: true,
            ack_frequency: 2,
            max_ack_delay: Duration::from_millis(5),
            rtt: RttConfig::default(),
            idle_timeout: Duration::from_secs(30),
            close_retries: 3,
            loss_response: true,
            servers: 1,
            trace: false,
            encryption: ClientEncryption::Off,
            crypto_seed: None,
        }
    }
}

/// Where a transfer stands, so another client (another process) can resume
/// it under the same UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeState {
    /// The session token the server issued.
    pub token: Vec<u8>,
    /// Next index needed; everything below was delivered.
    pub next: u32,
    /// Sum of the values below `next`.
    pub sum: u64,
    /// The newest timestamp the session's client sent. A resumed client
    /// carries this clock on, so that the server can tell its messages from
    /// replays of older ones (which it ignores).
    pub timestamp: u64,
}

/// The most the reorder buffer grows to: twice the window cap, so that the
/// window can slide on past holes under repair, within [`REORDER_SPAN`]
/// and [`MAX_WINDOW`].
pub(super) fn reorder_span(config: &ClientConfig) -> u32 {
    config
        .max_window
        .saturating_mul(2)
        .clamp(REORDER_SPAN, MAX_WINDOW)
}

/// A fresh rate controller for `config` (at the start, and on each new
/// path).
pub(super) fn rate_control(config: &ClientConfig) -> RateControl {
    // Without selective acks every probe resends the whole window: keep
    // it as small as it always was there.
    let max = if config.sack {
        config.max_window
    } else {
        config.max_window.min(CUMULATIVE_MAX_WINDOW)
    };
    let rc = RateControl::new(config.initial_window, max);
    // Without a bitmap the window cannot slide past holes: every loss
    // episode halves it (see `RateControl`).
    let rc = if config.sack {
        rc
    } else {
        rc.without_loss_differentiation()
    };
    if config.loss_response {
        rc
    } else {
        rc.without_loss_response()
    }
}
