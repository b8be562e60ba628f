//! Ring GEMM throughput per microkernel, in multiply-adds per second.
//! `cargo run --release --example gemm_throughput -- 1024`
use cryptgpu_engine::{device::cpu::gemm, prg::Prg};
use std::time::Instant;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![256, 512, 1024]
    } else {
        sizes
    };
    let mut prg = Prg::new([1; 16]);
    for n in sizes {
        let a = prg.gen(n * n);
        let b = prg.gen(n * n);
        let mut c = vec![0u64; n * n];
        for isa in gemm::available() {
            gemm::gemm_with(isa, n, n, n, &a, &b, &mut c, false);
            let reps = (2e9 / (n * n * n) as f64).clamp(1.0, 50.0) as usize;
            let t = Instant::now();
            for _ in 0..reps {
                gemm::gemm_with(isa, n, n, n, &a, &b, &mut c, false);
            }
            let dt = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "n={n} isa={} {:.2} G madd/s ({:.4} s)",
                isa.name(),
                (n * n * n) as f64 / dt / 1e9,
                dt
            );
        }
    }
}
