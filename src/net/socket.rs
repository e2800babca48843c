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

/// Binds a UDP socket with large buffers.
pub async fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr).await?;
    tune(&socket);
    Ok(socket)
}

/// Asks for large buffers; failure is not fatal (the defaults still work).
pub fn tune(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    if let Err(e) = s.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the receive buffer");
    }
    if let Err(e) = s.set_send_buffer_size(SOCKET_BUFFER) {
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
