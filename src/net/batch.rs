//! Batched UDP I/O: many datagrams per system call.
//!
//! One value is one datagram (that is the protocol), so at loopback speeds
//! the system call per datagram is the ceiling. A [`BatchSocket`] moves
//! datagrams in batches with `quinn-udp`:
//!
//! - sends: a batch of equal-size datagrams for one destination (what the
//!   server core's `poll_transmit` hands out) goes out as one `sendmsg` with
//!   `UDP_SEGMENT` (GSO) where the kernel supports it, in runs of at most
//!   its segment limit; elsewhere one datagram per call;
//! - receives: one `recvmmsg` fills up to [`RecvSizing::slots`] buffers,
//!   each holding one datagram or, with `UDP_GRO`, a run of equal-size
//!   datagrams from one source, which is split here at its stride.
//!
//! [`IoMode::Plain`] forces the fallback (one `sendto`/`recvfrom` per
//! datagram) on any platform, for comparison and for tests that must cover
//! both paths whatever the kernel supports.
//!
//! The lossy-socket shim still judges every datagram: a batch is run
//! through [`LossySocket::admit_outbound`] and
//! [`LossySocket::admit_inbound`] one datagram at a time, and the
//! survivors travel batched. Buffers are allocated once per socket; nothing
//! is allocated per datagram (except the shim's delayed copies).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use risp_netem::LossySocket;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::socket::sleep_until_opt;

/// How a [`BatchSocket`] talks to the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoMode {
    /// GSO sends and `recvmmsg`/GRO receives where the platform has them
    /// (quinn-udp falls back by itself where it does not).
    #[default]
    Batched,
    /// One datagram per system call (`sendto`/`recvfrom`), whatever the
    /// platform supports.
    Plain,
}

impl IoMode {
    /// [`IoMode::Plain`] when the environment variable `RISP_IO` is `plain`,
    /// [`IoMode::Batched`] otherwise (the command line's switch; libraries
    /// pass a mode explicitly).
    pub fn from_env() -> Self {
        match std::env::var("RISP_IO") {
            Ok(v) if v.eq_ignore_ascii_case("plain") => Self::Plain,
            _ => Self::Batched,
        }
    }

    /// `batched` or `plain`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Batched => "batched",
            Self::Plain => "plain",
        }
    }
}

/// The receive buffers of a [`BatchSocket`]: `slots` buffers of
/// `max_datagram × segments` bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvSizing {
    /// The longest datagram expected.
    pub max_datagram: usize,
    /// Datagrams one buffer holds when the kernel coalesces (GRO); a
    /// coalesced run longer than a buffer loses its tail, as a full
    /// receive buffer would drop it. 1 turns coalescing off on the socket.
    pub segments: usize,
    /// Buffers filled by one system call.
    pub slots: usize,
}

impl RecvSizing {
    /// Bytes of one buffer.
    fn slot_len(&self) -> usize {
        self.max_datagram.max(1) * self.segments.max(1)
    }
}

/// Most buffers one receive call fills (quinn-udp's own batch limit).
pub const MAX_RECV_SLOTS: usize = quinn_udp::BATCH_SIZE;

/// A send that failed part-way: the datagrams before `sent` went out, the
/// rest of the batch did not.
#[derive(Debug)]
pub struct SendError {
    /// Datagrams handed to the kernel before the error.
    pub sent: usize,
    /// What the kernel said.
    pub error: io::Error,
}

/// A UDP socket that sends and receives in batches. See the module docs.
#[derive(Debug)]
pub struct BatchSocket {
    socket: LossySocket,
    /// quinn-udp's per-socket state; `None` in [`IoMode::Plain`].
    state: Option<quinn_udp::UdpSocketState>,
    sizing: RecvSizing,
    /// `sizing.slots` receive buffers, back to back.
    recv_buf: Vec<u8>,
    metas: Vec<quinn_udp::RecvMeta>,
    /// The survivors of a batch the shim judged, when impaired.
    scratch: Vec<u8>,
}

impl BatchSocket {
    /// Wraps `socket` (passthrough or impaired) for batched I/O in `mode`.
    pub fn new(socket: LossySocket, mode: IoMode, sizing: RecvSizing) -> io::Result<Self> {
        let state = match mode {
            IoMode::Batched => Some(quinn_udp::UdpSocketState::new(socket.get_ref().into())?),
            IoMode::Plain => None,
        };
        if state.is_some() && sizing.segments <= 1 {
            // quinn-udp turns coalescing on; buffers of one datagram would
            // truncate coalesced runs.
            disable_gro(socket.get_ref())?;
        }
        let sizing = RecvSizing {
            slots: match mode {
                IoMode::Batched => sizing.slots.clamp(1, MAX_RECV_SLOTS),
                IoMode::Plain => 1,
            },
            ..sizing
        };
        Ok(Self {
            recv_buf: vec![0; sizing.slot_len() * sizing.slots],
            metas: vec![quinn_udp::RecvMeta::default(); sizing.slots],
            scratch: Vec::new(),
            socket,
            state,
            sizing,
        })
    }

    /// The mode in force.
    pub fn mode(&self) -> IoMode {
        if self.state.is_some() {
            IoMode::Batched
        } else {
            IoMode::Plain
        }
    }

    /// Most datagrams one send system call carries now (1 without GSO).
    pub fn max_segments(&self) -> usize {
        self.state
            .as_ref()
            .map_or(1, quinn_udp::UdpSocketState::max_gso_segments)
            .max(1)
    }

    /// Most datagrams one receive buffer holds (1 without coalescing).
    pub fn gro_segments(&self) -> usize {
        match &self.state {
            Some(s) if self.sizing.segments > 1 => s.gro_segments().min(self.sizing.segments),
            _ => 1,
        }
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &LossySocket {
        &self.socket
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits until [`try_recv`](Self::try_recv) may have something: the
    /// socket is readable, or a copy the shim held back falls due.
    /// Cancel-safe (it takes nothing off the socket).
    pub async fn readable(&self) -> io::Result<()> {
        let held = self.socket.next_held_due().map(|t| t.into_std());
        tokio::select! {
            r = self.socket.get_ref().readable() => r,
            () = sleep_until_opt(held) => Ok(()),
        }
    }

    /// Reads what is waiting without blocking, and hands each datagram to
    /// `on_datagram` with its source (coalesced runs split, the shim's
    /// verdicts applied). Returns how many datagrams were handed over; 0
    /// when nothing was waiting.
    pub fn try_recv(
        &mut self,
        mut on_datagram: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let mut count = 0;
        let slot = self.sizing.slot_len();
        // One clock read for the batch (a datagram's verdict and a held
        // copy's due time need no finer grain than one call), and none
        // without a shim.
        let now = (!self.socket.is_passthrough())
            .then(|| tokio::time::Instant::from_std(crate::clock::now()));
        let capturing = self.socket.is_captured();
        // Copies the shim held back and that are due now.
        while let Some((n, from)) =
            now.and_then(|now| self.socket.pop_held_at(&mut self.recv_buf[..slot], now))
        {
            on_datagram(from, &self.recv_buf[..n]);
            count += 1;
        }
        let sock = self.socket.get_ref();
        let received = match &self.state {
            None => match sock.try_recv_from(&mut self.recv_buf[..slot]) {
                Ok((n, from)) => {
                    self.metas[0].addr = from;
                    self.metas[0].len = n;
                    self.metas[0].stride = n;
                    Ok(1)
                }
                Err(e) => Err(e),
            },
            Some(state) => {
                let mut chunks = self.recv_buf.chunks_mut(slot);
                let mut iovs: [IoSliceMut<'_>; MAX_RECV_SLOTS] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
                let n = self.sizing.slots;
                let metas = &mut self.metas[..n];
                sock.try_io(Interest::READABLE, || {
                    state.recv(sock.into(), &mut iovs[..n], metas)
                })
            }
        };
        let messages = match received {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(count),
            Err(e) => return Err(e),
        };
        for (meta, buf) in self
            .metas
            .iter()
            .zip(self.recv_buf.chunks_mut(slot))
            .take(messages)
        {
            for datagram in split_coalesced(&mut buf[..meta.len.min(slot)], meta.stride) {
                let admit = match now {
                    Some(now) => self.socket.admit_inbound_at(datagram, meta.addr, now),
                    // Passed through: only a capture needs to hear of it.
                    None => !capturing || self.socket.admit_inbound(datagram, meta.addr),
                };
                if admit {
                    on_datagram(meta.addr, datagram);
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// Sends `contents`, datagrams of `segment_size` bytes each, to
    /// `destination`: in runs of up to [`max_segments`](Self::max_segments)
    /// per system call. Waits while the socket's send buffer is full. On an
    /// error the rest of the batch is dropped; the error says how many went
    /// out.
    pub async fn send(
        &mut self,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: usize,
    ) -> Result<(), SendError> {
        let segment_size = segment_size.clamp(1, contents.len().max(1));
        if self.socket.is_passthrough() {
            if self.socket.is_captured() {
                // The shim's capture sees each datagram (a passthrough
                // socket sends every one, unchanged).
                for datagram in contents.chunks(segment_size) {
                    self.socket.admit_outbound(datagram, destination);
                }
            }
            let mut sink = KernelSink {
                socket: self.socket.get_ref(),
                state: self.state.as_ref(),
            };
            return send_runs(&mut sink, destination, contents, segment_size).await;
        }
        // The shim judges each datagram; the survivors (and duplicates) go
        // out batched.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        for datagram in contents.chunks(segment_size) {
            let now = self.socket.admit_outbound(datagram, destination);
            for copy in 0..now.copies {
                let off = scratch.len();
                scratch.extend_from_slice(datagram);
                if let (0, Some(bit)) = (copy, now.corrupt_bit) {
                    risp_netem::flip_bit(&mut scratch[off..], bit);
                }
            }
        }
        let mut sink = KernelSink {
            socket: self.socket.get_ref(),
            state: self.state.as_ref(),
        };
        let r = send_runs(&mut sink, destination, &scratch, segment_size).await;
        self.scratch = scratch;
        r
    }
}

/// Turns receive coalescing (`UDP_GRO`) off.
#[cfg(target_os = "linux")]
fn disable_gro(socket: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let off: libc::c_int = 0;
    // SAFETY: a valid socket descriptor (borrowed for the call), and a
    // pointer to a live `c_int` with its exact size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            std::ptr::from_ref(&off).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Receive coalescing exists only on Linux: nothing to turn off.
#[cfg(not(target_os = "linux"))]
fn disable_gro(_: &UdpSocket) -> io::Result<()> {
    Ok(())
}

/// The datagrams of a received buffer: runs of `stride` bytes (the last may
/// be shorter); the whole buffer when `stride` is 0 or covers it.
pub fn split_coalesced(buf: &mut [u8], stride: usize) -> std::slice::ChunksMut<'_, u8> {
    let stride = if stride == 0 {
        buf.len().max(1)
    } else {
        stride
    };
    buf.chunks_mut(stride)
}

/// Where [`send_runs`] hands each run of datagrams.
pub(crate) trait RunSink {
    /// Most datagrams one run may carry now (it may drop, e.g. to 1 when
    /// the kernel refuses segmentation offload).
    fn max_segments(&self) -> usize;

    /// Sends `run`, datagrams of `segment_size` bytes, to `destination`, in
    /// one system call.
    async fn send_run(
        &mut self,
        destination: SocketAddr,
        run: &[u8],
        segment_size: usize,
    ) -> io::Result<()>;
}

/// Sends `contents` in runs no longer than the sink allows. A run the
/// kernel refused while it also lowered the segment limit (GSO not
/// supported after all) is sent again in smaller runs; any other error
/// ends the batch, reporting the datagrams sent before it.
pub(crate) async fn send_runs(
    sink: &mut impl RunSink,
    destination: SocketAddr,
    contents: &[u8],
    segment_size: usize,
) -> Result<(), SendError> {
    let mut off = 0;
    while off < contents.len() {
        let segments = sink.max_segments().max(1);
        let end = contents
            .len()
            .min(off.saturating_add(segments.saturating_mul(segment_size)));
        let run = &contents[off..end];
        match sink.send_run(destination, run, segment_size).await {
            Ok(()) => off = end,
            Err(_) if run.len() > segment_size && sink.max_segments() < segments => continue,
            Err(error) => {
                return Err(SendError {
                    sent: off / segment_size,
                    error,
                })
            }
        }
    }
    Ok(())
}

/// Runs to the kernel: one `sendmsg` with GSO per run (quinn-udp), or
/// `sendto` in plain mode.
struct KernelSink<'a> {
    socket: &'a UdpSocket,
    state: Option<&'a quinn_udp::UdpSocketState>,
}

impl RunSink for KernelSink<'_> {
    fn max_segments(&self) -> usize {
        self.state
            .map_or(1, quinn_udp::UdpSocketState::max_gso_segments)
    }

    async fn send_run(
        &mut self,
        destination: SocketAddr,
        run: &[u8],
        segment_size: usize,
    ) -> io::Result<()> {
        let Some(state) = self.state else {
            return self.socket.send_to(run, destination).await.map(|_| ());
        };
        let transmit = quinn_udp::Transmit {
            destination,
            ecn: None,
            contents: run,
            segment_size: (run.len() > segment_size).then_some(segment_size),
            src_ip: None,
        };
        let sock = self.socket;
        sock.async_io(Interest::WRITABLE, || {
            state.try_send(sock.into(), &transmit)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records runs; fails the `fail_at`-th call (0-based) with `error`,
    /// lowering its segment limit to `limit_after_failure` first.
    struct FakeSink {
        max: usize,
        runs: Vec<Vec<u8>>,
        calls: usize,
        fail_at: Option<(usize, io::ErrorKind, usize)>,
    }

    impl FakeSink {
        fn new(max: usize) -> Self {
            Self {
                max,
                runs: Vec::new(),
                calls: 0,
                fail_at: None,
            }
        }
    }

    impl RunSink for FakeSink {
        fn max_segments(&self) -> usize {
            self.max
        }

        async fn send_run(&mut self, _: SocketAddr, run: &[u8], seg: usize) -> io::Result<()> {
            assert!(
                run.len().div_ceil(seg) <= self.max,
                "run longer than allowed"
            );
            let call = self.calls;
            self.calls += 1;
            if let Some((at, kind, limit)) = self.fail_at {
                if at == call {
                    self.max = limit;
                    return Err(io::Error::from(kind));
                }
            }
            self.runs.push(run.to_vec());
            Ok(())
        }
    }

    fn datagrams(n: usize, seg: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| std::iter::repeat_n(i as u8, seg))
            .collect()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn dest() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn runs_end_on_segment_boundaries() {
        for (n, max) in [(1, 64), (64, 64), (65, 64), (130, 64), (10, 3), (7, 1)] {
            let data = datagrams(n, 24);
            let mut sink = FakeSink::new(max);
            block_on(send_runs(&mut sink, dest(), &data, 24)).unwrap();
            assert_eq!(
                sink.runs.len(),
                n.div_ceil(max),
                "{n} datagrams, {max} per run"
            );
            assert!(sink.runs.iter().all(|r| r.len() % 24 == 0));
            // Every run but the last is full; nothing lost or reordered.
            assert!(sink.runs[..sink.runs.len() - 1]
                .iter()
                .all(|r| r.len() == max * 24));
            assert_eq!(sink.runs.concat(), data);
        }
    }

    #[test]
    fn a_send_error_cuts_the_batch_short_and_counts_what_went_out() {
        let data = datagrams(200, 24);
        let mut sink = FakeSink::new(64);
        sink.fail_at = Some((2, io::ErrorKind::PermissionDenied, 64));
        let err = block_on(send_runs(&mut sink, dest(), &data, 24)).unwrap_err();
        assert_eq!(err.sent, 128);
        assert_eq!(err.error.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(sink.runs.concat(), data[..128 * 24]);
        assert_eq!(sink.calls, 3, "nothing is sent after the error");
    }

    #[test]
    fn a_refused_offload_is_retried_one_datagram_at_a_time() {
        let data = datagrams(10, 24);
        let mut sink = FakeSink::new(8);
        // The kernel refuses the first GSO run and the socket drops to
        // one segment per call, as quinn-udp does on EIO/EINVAL.
        sink.fail_at = Some((0, io::ErrorKind::InvalidInput, 1));
        block_on(send_runs(&mut sink, dest(), &data, 24)).unwrap();
        assert_eq!(sink.runs.len(), 10);
        assert_eq!(sink.runs.concat(), data);
    }

    #[test]
    fn coalesced_buffers_split_at_the_stride() {
        let mut buf = datagrams(5, 24);
        buf.extend_from_slice(&[9; 10]); // a shorter last datagram
        let parts: Vec<Vec<u8>> = split_coalesced(&mut buf, 24).map(|d| d.to_vec()).collect();
        assert_eq!(parts.len(), 6);
        for (i, p) in parts[..5].iter().enumerate() {
            assert_eq!(p, &vec![i as u8; 24]);
        }
        assert_eq!(parts[5], vec![9; 10]);
        // No stride (a plain datagram), or a stride as long as the buffer.
        assert_eq!(split_coalesced(&mut buf.clone(), 0).count(), 1);
        assert_eq!(split_coalesced(&mut buf.clone(), buf.len()).count(), 1);
        assert_eq!(split_coalesced(&mut [], 24).count(), 0);
    }
}
