use risp_netem::{Direction, DirectionConfig, Impairment, ImpairmentConfig};
use std::time::Duration;
fn main() {
    let mut d = DirectionConfig::default();
    d.loss = 0.5;
    let mut m = Impairment::new(ImpairmentConfig::symmetric(d), 2);
    let (mut run, mut max, mut drops) = (0, 0, 0);
    for i in 0..100_000u64 {
        let v = m.decide(Direction::ToServer, Duration::from_millis(i), 50);
        if v.is_dropped() { run += 1; drops += 1; max = max.max(run); } else { run = 0; }
    }
    println!("drops={drops} max_run={max}");
}
