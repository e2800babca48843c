//! Encryption foundations (issue 21), sans-IO: server keys, the Noise
//! handshake, sealed datagrams and their replay window.
//!
//! Nothing on the wire uses these yet: the client and server cores still
//! speak the plain datagrams of [`crate::proto::wire`]. This module is
//! what they will call.
//!
//! - [`keys`]: the server's static X25519 key ([`ServerKey`]) and its
//!   public half ([`PublicKey`]), in base64 as WireGuard writes keys.
//! - [`handshake`]: one round trip of Noise through `snow`, NK when the
//!   client pins the server's key and NX when it learns it; both sides
//!   end with [`SessionKeys`].
//! - [`seal`]: [`Sealer`] and [`Opener`], ChaCha20-Poly1305 datagrams with
//!   an 8-byte clear header (version, kind, key phase, packet number) as
//!   associated data, key phases that move every
//!   [`seal::KEY_UPDATE_INTERVAL`] datagrams.
//! - [`replay`]: the 2,048-number sliding window an opener keeps.
//!
//! Randomness is the caller's: every function that draws takes an RNG
//! (`rand::rngs::OsRng` for real use, a seeded `rand_chacha::ChaCha20Rng`
//! in the simulator, where the same seed gives the same bytes). No
//! function here reads a clock or touches a socket, and no cryptographic
//! primitive is written here: X25519, BLAKE2s and ChaCha20-Poly1305 are
//! snow's default resolver's, and the handshake state machine is snow's.

pub mod handshake;
pub mod keys;
pub mod replay;
mod resolver;
pub mod seal;

pub use handshake::{
    ClientFinished, ClientHandshake, HandshakeError, Pattern, Responded, ServerHandshake,
    SessionKeys,
};
pub use keys::{KeyTextError, PublicKey, ServerKey};
pub use replay::ReplayWindow;
pub use seal::{Malformation, OpenError, OpenStats, Opener, SealError, Sealer};
