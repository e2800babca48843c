//! A sealed session's cryptographic state, kept beside the session in the
//! table: its sealer and opener, and its handshake (the client's first
//! message and the reply datagram), to answer a repeated handshake with
//! the same bytes from any address.

use crate::proto::crypto::{Opener, Sealer};
use crate::proto::wire::SERVER_TOKEN_LEN;

/// One sealed session's keys and handshake.
#[derive(Debug)]
pub(super) struct SessionSeal {
    /// Seals what the server sends.
    pub(super) sealer: Sealer,
    /// Opens what the client sends.
    pub(super) opener: Opener,
    /// The client's handshake message, as it arrived.
    pub(super) first: Vec<u8>,
    /// The whole handshake-reply datagram sent in answer.
    pub(super) reply: Vec<u8>,
    /// The routing id of the session's datagrams (its token).
    pub(super) route: [u8; SERVER_TOKEN_LEN],
}
