//! ReLU on n elements in the local runtime: `cargo run --release --example relu_bench -- 1000000`
use cryptgpu_engine::runtime::{Config, Session};
use std::time::Instant;

// The same allocator as the Python extension.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let s = Session::new(Config::default()).unwrap();
    let v: Vec<f64> = (0..n)
        .map(|i| (i as f64 - n as f64 / 2.0) / 1000.0)
        .collect();
    let x = s.share_f64(&v, vec![n], 0).unwrap();
    s.relu(&x).unwrap();
    s.reset_stats().unwrap();
    let t = Instant::now();
    s.relu(&x).unwrap();
    let dt = t.elapsed();
    let st = s.stats().unwrap();
    let b = (0..3).map(|p| st[p]["relu"].bytes).max().unwrap_or(0);
    println!(
        "relu n={n}: {:.3} s, {} rounds, {:.1} MB/party",
        dt.as_secs_f64(),
        st[0]["relu"].rounds,
        b as f64 / 1e6
    );
}
