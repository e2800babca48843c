//! The nodes of a simulated [`Network`](super::Network): clients on links of
//! their own, and reference flows; plus the [`Observer`] that sees what
//! the endpoints say.
//!
//! A node is configured before it joins the network, builder style, and
//! the network owns it from then on. Servers are plain
//! [`Server`](crate::proto::server::Server)s reached at one or more
//! addresses ([`Network::add_server`](super::Network::add_server)).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use risp_netem::Direction;
use uuid::Uuid;

use super::link::Link;
use super::reference::{RenoReceiver, RenoSender};
use crate::proto::client::{Client, ClientEvent};
use crate::proto::server::{Server, ServerEvent};
use crate::proto::trace::Traced;

/// Rewrites a server datagram on its way to a client, given the session's
/// UUID (a test double of a faulty server or middlebox).
pub type Tamper = Box<dyn FnMut(Uuid, &mut Vec<u8>)>;

/// Sees what the endpoints of a [`Network`](super::Network) say, as they
/// say it. Every method does nothing unless implemented; `()` observes
/// nothing.
pub trait Observer {
    /// Client `client` (its index in the network) emitted `event` at `now`;
    /// `core` is the client after it did.
    fn client_event(&mut self, now: Instant, client: usize, core: &Client, event: &ClientEvent) {
        let _ = (now, client, core, event);
    }

    /// Server `server` emitted `event` at `now`.
    fn server_event(&mut self, now: Instant, server: &Server, event: &ServerEvent) {
        let _ = (now, server, event);
    }

    /// Server `server` took in a datagram or fired its timers at `now`
    /// (its window slots or sessions may have changed).
    fn server_touched(&mut self, now: Instant, server: &Server) {
        let _ = (now, server);
    }

    /// Client `client` sent `datagram`.
    fn client_sent(&mut self, client: usize, datagram: &[u8]) {
        let _ = (client, datagram);
    }

    /// A server sent `datagram` to `to`, where no client lives (now).
    fn unrouted(&mut self, to: SocketAddr, datagram: &[u8]) {
        let _ = (to, datagram);
    }

    /// Client `client` made a trace record (only with
    /// [`ClientConfig::trace`](crate::proto::client::ClientConfig::trace)).
    fn client_trace(&mut self, client: usize, record: &Traced) {
        let _ = (client, record);
    }

    /// Server `server` made a trace record (only with
    /// [`ServerConfig::trace`](crate::proto::server::ServerConfig::trace)).
    fn server_trace(&mut self, server: &Server, record: &Traced) {
        let _ = (server, record);
    }

    /// A link (or the bottleneck in front of it) decided the fate of one
    /// datagram, at the time it was sent: once per copy that arrives, once
    /// for one that is lost or dropped (what packet captures record).
    fn link_datagram(&mut self, datagram: &LinkDatagram<'_>) {
        let _ = datagram;
    }
}

impl Observer for () {}

/// An observer lent out: told what it would be told.
impl<T: Observer + ?Sized> Observer for &mut T {
    fn client_event(&mut self, now: Instant, client: usize, core: &Client, event: &ClientEvent) {
        (**self).client_event(now, client, core, event);
    }

    fn server_event(&mut self, now: Instant, server: &Server, event: &ServerEvent) {
        (**self).server_event(now, server, event);
    }

    fn server_touched(&mut self, now: Instant, server: &Server) {
        (**self).server_touched(now, server);
    }

    fn client_sent(&mut self, client: usize, datagram: &[u8]) {
        (**self).client_sent(client, datagram);
    }

    fn unrouted(&mut self, to: SocketAddr, datagram: &[u8]) {
        (**self).unrouted(to, datagram);
    }

    fn client_trace(&mut self, client: usize, record: &Traced) {
        (**self).client_trace(client, record);
    }

    fn server_trace(&mut self, server: &Server, record: &Traced) {
        (**self).server_trace(server, record);
    }

    fn link_datagram(&mut self, datagram: &LinkDatagram<'_>) {
        (**self).link_datagram(datagram);
    }
}

/// Two observers, each told everything, the first first.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn client_event(&mut self, now: Instant, client: usize, core: &Client, event: &ClientEvent) {
        self.0.client_event(now, client, core, event);
        self.1.client_event(now, client, core, event);
    }

    fn server_event(&mut self, now: Instant, server: &Server, event: &ServerEvent) {
        self.0.server_event(now, server, event);
        self.1.server_event(now, server, event);
    }

    fn server_touched(&mut self, now: Instant, server: &Server) {
        self.0.server_touched(now, server);
        self.1.server_touched(now, server);
    }

    fn client_sent(&mut self, client: usize, datagram: &[u8]) {
        self.0.client_sent(client, datagram);
        self.1.client_sent(client, datagram);
    }

    fn unrouted(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.0.unrouted(to, datagram);
        self.1.unrouted(to, datagram);
    }

    fn client_trace(&mut self, client: usize, record: &Traced) {
        self.0.client_trace(client, record);
        self.1.client_trace(client, record);
    }

    fn server_trace(&mut self, server: &Server, record: &Traced) {
        self.0.server_trace(server, record);
        self.1.server_trace(server, record);
    }

    fn link_datagram(&mut self, datagram: &LinkDatagram<'_>) {
        self.0.link_datagram(datagram);
        self.1.link_datagram(datagram);
    }
}

/// What became of one datagram on a link ([`LinkDatagram::fate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFate {
    /// It arrives intact, `after` it was sent (bottleneck queueing, link
    /// delay and jitter, the flow's extra delay).
    Delivered {
        /// Time on the way.
        after: Duration,
    },
    /// It arrives with bit `bit` flipped (the bytes are the damaged copy;
    /// a reference flow's receiver discards it).
    Corrupted {
        /// Time on the way.
        after: Duration,
        /// The bit flipped (`risp_netem::flip_bit`'s numbering).
        bit: usize,
    },
    /// The link's second copy of a datagram it duplicated.
    Duplicated {
        /// Time on the way.
        after: Duration,
    },
    /// Lost on the link (its loss model, a burst or a blackhole).
    Lost,
    /// Dropped by the shared bottleneck's queue, before the link.
    QueueDrop,
}

impl LinkFate {
    /// Whether a copy arrives at the far end of the link.
    pub fn arrives(&self) -> bool {
        !matches!(self, Self::Lost | Self::QueueDrop)
    }
}

/// One datagram on a flow's link, as [`Observer::link_datagram`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct LinkDatagram<'a> {
    /// When it was sent.
    pub at: Instant,
    /// `at` since the network's start (its virtual time).
    pub elapsed: Duration,
    /// The flow: a client's index, or the number of clients plus a
    /// reference flow's index.
    pub flow: usize,
    /// Which way it travels.
    pub direction: Direction,
    /// Its source address.
    pub from: SocketAddr,
    /// The address it was sent to.
    pub to: SocketAddr,
    /// Its bytes (for [`LinkFate::Corrupted`], the damaged copy).
    pub bytes: &'a [u8],
    /// What became of it.
    pub fate: LinkFate,
}

/// When a client's socket is killed (it reconnects from a new port).
#[derive(Debug, Clone, Default)]
pub(super) enum Kills {
    /// Never.
    #[default]
    Never,
    /// This long after it started, and as long again after each kill.
    Every(Duration),
    /// At these times since the network's start, earliest first.
    At(VecDeque<Duration>),
}

/// What the network counted for one client (what only the wire sees).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Datagrams the client sent.
    pub datagrams_to_server: u64,
    /// Datagrams the servers sent it (before its link).
    pub datagrams_to_client: u64,
    /// Of those, data datagrams.
    pub data_sent: u64,
    /// Datagrams that arrived at an address it had left.
    pub lost_to_old_address: u64,
    /// Socket kills carried out.
    pub reconnects: u64,
    /// NAT rebindings carried out.
    pub rebinds: u64,
    /// Datagrams sent to each of its server addresses, in its list's order.
    pub sent_to: Vec<u64>,
}

/// One client: the core, the server addresses it knows (its
/// [`ClientConfig::servers`](crate::proto::client::ClientConfig::servers)
/// list, in order), its link, and its socket's schedule. Like the tokio
/// driver, the client moves to a new address of its own when its socket
/// is killed, when a NAT rebinds it, and on each failover.
pub struct ClientNode {
    pub(super) client: Client,
    pub(super) servers: Vec<SocketAddr>,
    /// Each of `servers` as an index of the network's server addresses
    /// (filled in when it joins).
    pub(super) paths: Vec<Option<usize>>,
    /// Its current address (`None` until the network gives it one).
    pub(super) addr: Option<SocketAddr>,
    pub(super) link: Link,
    pub(super) started: Instant,
    pub(super) kills: Kills,
    pub(super) next_kill: Option<Instant>,
    pub(super) tamper: Option<Tamper>,
    pub(super) counters: ClientCounters,
    /// True once it emitted `Completed` or `Failed`.
    pub(super) ended: bool,
}

impl ClientNode {
    /// `client`, which starts at `started` (the `now` it was made with),
    /// talking to `servers`; over a perfect link until told otherwise.
    pub fn new(client: Client, started: Instant, servers: Vec<SocketAddr>) -> Self {
        let n = servers.len();
        Self {
            client,
            servers,
            paths: Vec::new(),
            addr: None,
            link: Link::perfect(),
            started,
            kills: Kills::Never,
            next_kill: None,
            tamper: None,
            counters: ClientCounters {
                sent_to: vec![0; n],
                ..ClientCounters::default()
            },
            ended: false,
        }
    }

    /// Over `link`.
    pub fn with_link(mut self, link: Link) -> Self {
        self.link = link;
        self
    }

    /// At `addr` (by default the network picks one).
    pub fn at(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Its socket is killed `every` this long, from its start.
    pub fn killswitch(mut self, every: Option<Duration>) -> Self {
        self.kills = every.map_or(Kills::Never, Kills::Every);
        self.next_kill = every.map(|k| self.started + k);
        self
    }

    /// Its socket is killed at each of `times` (since the network's
    /// start at `epoch`).
    pub fn kills_at(mut self, epoch: Instant, times: Vec<Duration>) -> Self {
        self.set_kills_at(epoch, times);
        self
    }

    /// Every server datagram on its way to it goes through `tamper`.
    pub fn tamper(mut self, tamper: Tamper) -> Self {
        self.set_tamper(Some(tamper));
        self
    }

    /// From now on its socket is killed at each of `times` (since the
    /// network's start at `epoch`), instead of as scheduled before.
    pub fn set_kills_at(&mut self, epoch: Instant, mut times: Vec<Duration>) {
        times.sort_unstable();
        let mut times = VecDeque::from(times);
        self.next_kill = times.pop_front().map(|t| epoch + t);
        self.kills = Kills::At(times);
    }

    /// From now on every server datagram on its way to it goes through
    /// `tamper` (`None`: untouched).
    pub fn set_tamper(&mut self, tamper: Option<Tamper>) {
        self.tamper = tamper;
    }

    /// The client core.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Its current address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Its link.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// What the network counted for it.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Whether it still has something to do: it has not finished, or its
    /// end was not seen yet.
    pub(super) fn is_active(&self) -> bool {
        !self.client.is_finished() || !self.ended
    }

    /// The server address it talks to now (an index of the network's).
    pub(super) fn target(&self) -> Option<usize> {
        self.paths
            .get(self.client.server_index() as usize)
            .copied()
            .flatten()
    }

    /// The next kill after one at `now`.
    pub(super) fn schedule_next_kill(&mut self, now: Instant, epoch: Instant) {
        self.next_kill = match &mut self.kills {
            Kills::Never => None,
            Kills::Every(k) => Some(now + *k),
            Kills::At(times) => times.pop_front().map(|t| epoch + t),
        };
    }
}

/// A Reno-style reference flow ([`super::reference`]): its sender on the
/// servers' side of the bottleneck, its receiver at the end of its own
/// link.
pub struct ReferenceNode {
    pub(super) sender: RenoSender,
    pub(super) receiver: RenoReceiver,
    pub(super) link: Link,
    pub(super) started: Instant,
}

impl ReferenceNode {
    /// A flow of at most `packets` new packets (`None`: endless) that
    /// starts at `started`, over `link`.
    pub fn new(packets: Option<u64>, started: Instant, link: Link) -> Self {
        Self {
            sender: RenoSender::new(packets, started),
            receiver: RenoReceiver::new(),
            link,
            started,
        }
    }

    /// The sender.
    pub fn sender(&self) -> &RenoSender {
        &self.sender
    }

    /// The receiver.
    pub fn receiver(&self) -> &RenoReceiver {
        &self.receiver
    }
}
