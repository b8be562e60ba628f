//! Ring GEMM throughput per microkernel, in multiply-adds per second.
//! `cargo run --release --example gemm_throughput -- 1024 64x192x576`
//! (a bare n is n x n x n; MxKxN is an M x K by K x N product).
use cryptgpu_engine::{device::cpu::gemm, prg::Prg};
use std::time::Instant;

fn parse(s: &str) -> Option<(usize, usize, usize)> {
    let v: Vec<usize> = s
        .split('x')
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    match v[..] {
        [n] => Some((n, n, n)),
        [m, k, n] => Some((m, k, n)),
        _ => None,
    }
}

fn main() {
    let sizes: Vec<(usize, usize, usize)> =
        std::env::args().skip(1).filter_map(|s| parse(&s)).collect();
    let sizes = if sizes.is_empty() {
        vec![(256, 256, 256), (512, 512, 512), (1024, 1024, 1024)]
    } else {
        sizes
    };
    let mut prg = Prg::new([1; 16]);
    for (m, k, n) in sizes {
        let a = prg.gen(m * k);
        let b = prg.gen(k * n);
        let mut c = vec![0u64; m * n];
        let macs = (m * k * n) as f64;
        for isa in gemm::available() {
            gemm::gemm_with(isa, m, k, n, &a, &b, &mut c, false);
            let reps = (2e9 / macs).clamp(1.0, 2000.0) as usize;
            let t = Instant::now();
            for _ in 0..reps {
                gemm::gemm_with(isa, m, k, n, &a, &b, &mut c, false);
            }
            let dt = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{m}x{k}x{n} isa={} {:.2} G madd/s ({:.6} s)",
                isa.name(),
                macs / dt / 1e9,
                dt
            );
        }
    }
}
