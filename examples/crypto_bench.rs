//! Timing loops for the encryption foundations (`proto::crypto`): Noise
//! handshakes per second on one core, and the cost of sealing and opening
//! a 64-byte datagram.
//!
//! ```text
//! cargo run --release --example crypto_bench [SECONDS_PER_FIGURE]
//! ```
//!
//! One thread, the operating system's randomness (as a server uses), and
//! each figure measured for SECONDS_PER_FIGURE (default 2) seconds.

use std::time::Duration;

use rand::rngs::OsRng;
use risp_udp::clock;
use risp_udp::proto::crypto::seal::OVERHEAD;
use risp_udp::proto::crypto::{ClientHandshake, PublicKey, ServerHandshake, ServerKey};

/// Runs `step` for `budget` and returns how many times it ran per second.
fn rate(budget: Duration, mut step: impl FnMut()) -> f64 {
    let start = clock::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            step();
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn handshake(key: &ServerKey, pin: Option<PublicKey>) {
    let (client, first) = ClientHandshake::start(pin, &[0u8; 16], &mut OsRng).expect("start");
    let done = ServerHandshake::respond(key, &first, &[0u8; 8], &mut OsRng).expect("respond");
    client.finish(&done.reply).expect("finish");
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    let key = ServerKey::generate(&mut OsRng);
    for (name, pin) in [("NK", Some(key.public())), ("NX", None)] {
        let both = rate(budget, || handshake(&key, pin));
        let (_, first) = ClientHandshake::start(pin, &[0u8; 16], &mut OsRng).expect("start");
        let server = rate(budget, || {
            ServerHandshake::respond(&key, &first, &[0u8; 8], &mut OsRng).expect("respond");
        });
        println!(
            "{name}: {both:>8.0} whole handshakes/s (both sides on one core), {server:>8.0} server replies/s"
        );
    }
    let (client, first) =
        ClientHandshake::start(Some(key.public()), &[0u8; 16], &mut OsRng).expect("start");
    let done = ServerHandshake::respond(&key, &first, &[], &mut OsRng).expect("respond");
    let (mut sealer, _) = client
        .finish(&done.reply)
        .expect("finish")
        .keys
        .into_transport();
    let (_, mut opener) = done.keys.into_transport();
    let plaintext = [0x5au8; 64];
    let mut sealed = [0u8; 64 + OVERHEAD];
    let mut opened = [0u8; 64 + OVERHEAD];
    let seal_rate = rate(budget, || {
        sealer.seal(&plaintext, &mut sealed).expect("seal");
    });
    let pair_rate = rate(budget, || {
        let n = sealer.seal(&plaintext, &mut sealed).expect("seal");
        opener.open(&sealed[..n], &mut opened).expect("open");
    });
    // snow's ChaCha20-Poly1305 alone, for what the seal adds to it.
    let mut cipher = snow::resolvers::CryptoResolver::resolve_cipher(
        &snow::resolvers::DefaultResolver,
        &snow::params::CipherChoice::ChaChaPoly,
    )
    .expect("ChaChaPoly");
    cipher.set(&[7u8; 32]);
    let mut nonce = 0u64;
    let raw_rate = rate(budget, || {
        nonce += 1;
        cipher.encrypt(nonce, &sealed[..8], &plaintext, &mut opened[..80]);
    });
    println!(
        "snow's ChaCha20-Poly1305 alone, 64 bytes: {:.0} ns",
        1e9 / raw_rate
    );
    println!(
        "64-byte datagram: seal {:.0} ns, seal+open {:.0} ns, {} bytes of overhead ({} sealed)",
        1e9 / seal_rate,
        1e9 / pair_rate,
        OVERHEAD,
        64 + OVERHEAD
    );
}
