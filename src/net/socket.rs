//! Socket set-up and the socket helpers the drivers share.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::time::{sleep_until, Instant as TokioInstant};

/// Receive and send buffer size asked for on every socket. A window of
/// values arrives as a burst of small datagrams; the kernel charges each one
/// far more than its 24 bytes, so the default buffer (about 200 KiB on
/// Linux) overflows at a few hundred datagrams and turns bursts into loss.
/// The kernel caps the request at `net.core.rmem_max`/`wmem_max`.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// What the kernel charges a receive buffer for one small datagram
/// (`skb->truesize`; measured on x86-64 Linux over loopback: a default
/// 212,992-byte buffer holds 256 datagrams of 24 bytes). Coalesced (GRO)
/// runs cost less per datagram, so a capacity derived from it errs on the
/// safe side.
pub const DATAGRAM_TRUESIZE: usize = 832;

/// The buffer size asked for: `RISP_SOCKET_BUFFER` (bytes) when set, else
/// [`SOCKET_BUFFER`]. (Small buffers show what a machine with the kernel's
/// default limits does.)
pub fn buffer_size() -> usize {
    std::env::var("RISP_SOCKET_BUFFER")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(SOCKET_BUFFER)
}

/// How many small datagrams `socket`'s receive buffer holds (see
/// [`DATAGRAM_TRUESIZE`]); `None` if the kernel does not say.
pub fn recv_capacity(socket: &UdpSocket) -> Option<u32> {
    let bytes = socket2::SockRef::from(socket).recv_buffer_size().ok()?;
    u32::try_from(bytes / DATAGRAM_TRUESIZE).ok()
}

/// Binds a UDP socket with large buffers.
pub async fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr).await?;
    tune(&socket);
    Ok(socket)
}

/// Binds one of several UDP sockets on the same address with
/// `SO_REUSEPORT` (Linux then spreads clients over them by a hash of their
/// 4-tuple), with large buffers. Every socket on the address must set it.
#[cfg(unix)]
pub fn bind_reuse_port(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    let socket = UdpSocket::from_std(s.into())?;
    tune(&socket);
    Ok(socket)
}

/// Asks for large buffers ([`buffer_size`]); failure is not fatal (the
/// defaults still work).
pub fn tune(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let size = buffer_size();
    if let Err(e) = s.set_recv_buffer_size(size) {
        tracing::debug!(error = %e, "cannot enlarge the receive buffer");
    }
    if let Err(e) = s.set_send_buffer_size(size) {
        tracing::debug!(error = %e, "cannot enlarge the send buffer");
    }
}

/// Errors that concern one datagram or one peer, not the socket.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::PermissionDenied
    )
}

/// Sleeps until `at`, or for ever when there is no deadline.
pub(crate) async fn sleep_until_opt(at: Option<std::time::Instant>) {
    match at {
        Some(t) => sleep_until(TokioInstant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
