//! The ring GEMM's unpacked path for m <= SMALL_M rows (batch-1 linear layers): B is
//! read once, in place, in the order it is stored. With B transposed (a
//! Linear weight) every output is a dot product along contiguous rows;
//! otherwise strips of columns are accumulated row by row. Plain loops,
//! compiled with AVX2 enabled so LLVM vectorises the 64-bit products.

use super::gemm::{at, Term};
use super::host::chunks_each;

/// Multiply-adds from which this path splits its columns over the pool:
/// it streams the weight once, so it is bound by memory, and several
/// cores reading help from a quarter of the blocked path's PAR_MACS
/// (interleaved on the 2-core machine: 256->256 faster on the party
/// thread, 800->500 and 4096->1024 faster split).
const PAR_MACS_SMALL: usize = 1 << 18;

/// Columns per task (B transposed: rows of the stored B) and per strip.
const ROWS_PER_TASK: usize = 64;
const STRIP: usize = 64;

pub fn run(m: usize, k: usize, n: usize, terms: &[Term], c: &mut [u64]) {
    // A is at most SMALL_M rows: form its sums once.
    let a: Vec<Vec<u64>> = terms
        .iter()
        .map(|t| (0..m * k).map(|i| at(t.a, i)).collect())
        .collect();
    let c = &mut c[..m * n];
    // Column-major scratch of the result, one task per range of columns.
    let mut ct = vec![0u64; n * m];
    let par = m * k * n * terms.len() >= PAR_MACS_SMALL;
    chunks_each(par, &mut ct, ROWS_PER_TASK * m, |task, out| {
        let j0 = task * ROWS_PER_TASK;
        let cols = out.len() / m;
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { cols_avx2(m, k, n, terms, &a, j0, cols, out) };
        }
        cols_body(m, k, n, terms, &a, j0, cols, out)
    });
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = c[i * n + j].wrapping_add(ct[j * m + i]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn cols_avx2(
    m: usize,
    k: usize,
    n: usize,
    terms: &[Term],
    a: &[Vec<u64>],
    j0: usize,
    cols: usize,
    out: &mut [u64],
) {
    cols_body(m, k, n, terms, a, j0, cols, out)
}

/// out[(j - j0) * m + i] = sum_t A_t[i] . column j of B_t, j in j0..j0+cols.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn cols_body(
    m: usize,
    k: usize,
    n: usize,
    terms: &[Term],
    a: &[Vec<u64>],
    j0: usize,
    cols: usize,
    out: &mut [u64],
) {
    for (t, av) in terms.iter().zip(a) {
        if t.b_trans {
            for jj in 0..cols {
                let j = j0 + jj;
                for i in 0..m {
                    let ar = &av[i * k..(i + 1) * k];
                    let s = match t.b {
                        [b0] => dot1(ar, &b0[j * k..(j + 1) * k]),
                        [b0, b1] => dot2(ar, &b0[j * k..(j + 1) * k], &b1[j * k..(j + 1) * k]),
                        _ => (0..k).fold(0u64, |s, kk| {
                            s.wrapping_add(ar[kk].wrapping_mul(at(t.b, j * k + kk)))
                        }),
                    };
                    out[jj * m + i] = out[jj * m + i].wrapping_add(s);
                }
            }
        } else {
            for s0 in (0..cols).step_by(STRIP) {
                let w = (cols - s0).min(STRIP);
                let js = j0 + s0;
                for i in 0..m {
                    let mut acc = [0u64; STRIP];
                    for kk in 0..k {
                        let x = av[i * k + kk];
                        let row = kk * n + js;
                        match t.b {
                            [b0] => axpy1(&mut acc[..w], x, &b0[row..row + w]),
                            [b0, b1] => {
                                axpy2(&mut acc[..w], x, &b0[row..row + w], &b1[row..row + w])
                            }
                            _ => {
                                for (jj, a) in acc[..w].iter_mut().enumerate() {
                                    *a = a.wrapping_add(x.wrapping_mul(at(t.b, row + jj)));
                                }
                            }
                        }
                    }
                    for (jj, v) in acc[..w].iter().enumerate() {
                        let o = &mut out[(s0 + jj) * m + i];
                        *o = o.wrapping_add(*v);
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn dot1(a: &[u64], b: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] = acc[l].wrapping_add(x[l].wrapping_mul(y[l]));
        }
    }
    let tail = ar
        .iter()
        .zip(br)
        .fold(0u64, |s, (x, y)| s.wrapping_add(x.wrapping_mul(*y)));
    acc.iter().fold(tail, |s, v| s.wrapping_add(*v))
}

#[inline(always)]
fn dot2(a: &[u64], b0: &[u64], b1: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let (ac, bc0, bc1) = (a.chunks_exact(8), b0.chunks_exact(8), b1.chunks_exact(8));
    let r = ac.remainder().len();
    for ((x, y0), y1) in ac.zip(bc0).zip(bc1) {
        for l in 0..8 {
            acc[l] = acc[l].wrapping_add(x[l].wrapping_mul(y0[l].wrapping_add(y1[l])));
        }
    }
    let k = a.len();
    let tail = (k - r..k).fold(0u64, |s, i| {
        s.wrapping_add(a[i].wrapping_mul(b0[i].wrapping_add(b1[i])))
    });
    acc.iter().fold(tail, |s, v| s.wrapping_add(*v))
}

#[inline(always)]
fn axpy1(acc: &mut [u64], x: u64, b: &[u64]) {
    for (a, y) in acc.iter_mut().zip(b) {
        *a = a.wrapping_add(x.wrapping_mul(*y));
    }
}

#[inline(always)]
fn axpy2(acc: &mut [u64], x: u64, b0: &[u64], b1: &[u64]) {
    for ((a, y0), y1) in acc.iter_mut().zip(b0).zip(b1) {
        *a = a.wrapping_add(x.wrapping_mul(y0.wrapping_add(*y1)));
    }
}
