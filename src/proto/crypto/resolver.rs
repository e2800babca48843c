//! Where snow takes its randomness from: the caller's RNG.
//!
//! snow asks its [`CryptoResolver`] for a random source once per handshake
//! (and per key generation). [`SeededResolver`] answers with a ChaCha20
//! stream seeded from 32 bytes drawn from the caller's RNG, and leaves
//! Diffie-Hellman, hashing and the cipher to snow's default resolver. The
//! caller chooses: the operating system's randomness for real use
//! (`rand::rngs::OsRng`), or a ChaCha seeded from a number in the
//! simulator, where the same seed must give the same bytes.

use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::Zeroizing;

/// A resolver whose random source is a ChaCha20 stream from a seed.
pub(crate) struct SeededResolver {
    seed: Zeroizing<[u8; 32]>,
}

impl SeededResolver {
    /// A resolver seeded with 32 bytes drawn from `rng`.
    pub(crate) fn draw(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        Self { seed }
    }

    /// Boxed, as snow's builder takes it.
    pub(crate) fn boxed(self) -> Box<dyn CryptoResolver + Send> {
        Box::new(self)
    }
}

/// snow's `Random` over a seeded ChaCha20.
struct ChaChaRandom(ChaCha20Rng);

impl Random for ChaChaRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(ChaChaRandom(ChaCha20Rng::from_seed(*self.seed))))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// X25519 from snow's default resolver.
pub(crate) fn x25519() -> Box<dyn Dh> {
    // The default resolver is built with curve25519 (snow's default
    // features, which we keep): it always resolves.
    DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow's default resolver provides X25519")
}

/// ChaCha20-Poly1305 from snow's default resolver, keyed with `key`.
pub(crate) fn chacha_poly(key: &[u8; 32]) -> Box<dyn Cipher> {
    // As above: ChaChaPoly is among snow's default features.
    let mut cipher = DefaultResolver
        .resolve_cipher(&CipherChoice::ChaChaPoly)
        .expect("snow's default resolver provides ChaChaPoly");
    cipher.set(key);
    cipher
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_caller_seed_gives_the_same_stream_and_another_seed_another() {
        let stream = |seed: u64| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let resolver = SeededResolver::draw(&mut rng);
            let mut random = resolver.resolve_rng().unwrap();
            let mut out = [0u8; 64];
            random.try_fill_bytes(&mut out).unwrap();
            out
        };
        assert_eq!(stream(1), stream(1));
        assert_ne!(stream(1), stream(2));
    }
}
