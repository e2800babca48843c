pub mod client;
pub mod rtt;
pub mod sack;
pub mod sequence;
pub mod server;
pub mod timer;
pub mod window;
pub mod wire;
