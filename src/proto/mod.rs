pub mod sequence;
pub mod wire;
