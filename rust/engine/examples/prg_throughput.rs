//! AES-CTR PRG throughput on one core: `cargo run --release --example prg_throughput`
use cryptgpu_engine::prg::Prg;
use std::time::Instant;

fn main() {
    let mut p = Prg::new([3; 16]);
    let mut buf = vec![0u64; 1 << 22];
    p.fill(&mut buf);
    let reps = 10;
    let t = Instant::now();
    for _ in 0..reps {
        p.fill(&mut buf);
    }
    let dt = t.elapsed().as_secs_f64();
    let gb = (reps * buf.len() * 8) as f64 / 1e9;
    println!("AES-128-CTR PRG: {:.2} GB/s on one core", gb / dt);
}
