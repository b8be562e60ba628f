//! The ring GEMM's unpacked path for m <= SMALL_M rows, or SMALL_M_T when
//! every B is transposed (batch-1 to batch-4 linear layers): B is read once,
//! in place, in the order it is stored. With B transposed (a Linear weight)
//! every output is a dot product along contiguous rows, on AVX2 with the
//! blocked kernel's two-multiply product (`dots_avx2`); otherwise strips of
//! columns are accumulated row by row in plain loops, compiled with AVX2
//! enabled so LLVM vectorises the 64-bit products.

use super::gemm::{at, Term, SMALL_M_T};
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
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let avx2 = false;
    run_with(avx2, m, k, n, terms, c)
}

/// `run`, with the AVX2 paths only when `avx2` (which the CPU must have).
fn run_with(avx2: bool, m: usize, k: usize, n: usize, terms: &[Term], c: &mut [u64]) {
    // A is at most SMALL_M_T rows: form its sums once.
    let a: Vec<Vec<u64>> = terms
        .iter()
        .map(|t| (0..m * k).map(|i| at(t.a, i)).collect())
        .collect();
    // Every B transposed (a Linear weight; a deep convolution's weight):
    // dot products along rows, with A's words also kept with their 32-bit
    // halves swapped for the two-multiply AVX2 product (see `dots_avx2`).
    let trans = avx2 && m <= SMALL_M_T && terms.iter().all(|t| t.b_trans && t.b.len() <= 2);
    let asw: Vec<Vec<u64>> = if trans {
        a.iter()
            .map(|v| v.iter().map(|x| x.rotate_left(32)).collect())
            .collect()
    } else {
        Vec::new()
    };
    let c = &mut c[..m * n];
    // Column-major scratch of the result, one task per range of columns.
    let mut ct = vec![0u64; n * m];
    let par = m * k * n * terms.len() >= PAR_MACS_SMALL;
    chunks_each(par, &mut ct, ROWS_PER_TASK * m, |task, out| {
        let j0 = task * ROWS_PER_TASK;
        let cols = out.len() / m;
        #[cfg(target_arch = "x86_64")]
        if trans {
            // SAFETY: `trans` implies the CPU has AVX2 (the caller's promise).
            return unsafe { cols_trans_avx2(m, k, terms, &a, &asw, j0, cols, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2 (the caller's promise).
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

/// out[(j - j0) * m + i] = sum_t A_t[i] . row j of B_t, every B_t stored
/// transposed with one or two sources, by `dots_avx2`. The CPU must have
/// AVX2.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn cols_trans_avx2(
    m: usize,
    k: usize,
    terms: &[Term],
    a: &[Vec<u64>],
    asw: &[Vec<u64>],
    j0: usize,
    cols: usize,
    out: &mut [u64],
) {
    for jj in 0..cols {
        let j = j0 + jj;
        let mut s = [0u64; SMALL_M_T];
        for ((t, av), aw) in terms.iter().zip(a).zip(asw) {
            let mut src = t.b.iter().map(|b| &b[j * k..(j + 1) * k]);
            let (Some(b0), b1) = (src.next(), src.next()) else {
                continue;
            };
            dots_avx2(m, k, av, aw, b0, b1, &mut s);
        }
        for (o, v) in out[jj * m..(jj + 1) * m].iter_mut().zip(s) {
            *o = o.wrapping_add(v);
        }
    }
}

/// s[i] += A[i] . (b0 + b1) for the m <= SMALL_M_T rows of A (`a`, m x k; `asw`
/// the same words with their 32-bit halves swapped). The low halves'
/// products accumulate in 64-bit lanes (vpmuludq); the cross terms are only
/// needed mod 2^32, so one vpmulld of b against swapped A gives both in
/// 32-bit lanes, folded into the high half once at the end: two multiplies
/// per four products where the compiler's 64-bit multiply takes three plus
/// shifts (the blocked kernel's trick, along a row).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)] // as measured: inlined, its loop reloads pointers from the stack
unsafe fn dots_avx2(
    m: usize,
    k: usize,
    a: &[u64],
    asw: &[u64],
    b0: &[u64],
    b1: Option<&[u64]>,
    s: &mut [u64; SMALL_M_T],
) {
    use std::arch::x86_64::*;
    assert!(m <= SMALL_M_T && a.len() >= m * k && asw.len() >= m * k && b0.len() >= k);
    assert!(b1.is_none_or(|b| b.len() >= k));
    let mut lo = [_mm256_setzero_si256(); SMALL_M_T];
    let mut x = [_mm256_setzero_si256(); SMALL_M_T];
    let k4 = k / 4 * 4;
    let ld = |p: &[u64], i: usize| _mm256_loadu_si256(p.as_ptr().add(i) as *const __m256i);
    for kk in (0..k4).step_by(4) {
        let bv = match b1 {
            Some(b1) => _mm256_add_epi64(ld(b0, kk), ld(b1, kk)),
            None => ld(b0, kk),
        };
        for r in 0..m {
            lo[r] = _mm256_add_epi64(lo[r], _mm256_mul_epu32(ld(a, r * k + kk), bv));
            x[r] = _mm256_add_epi32(x[r], _mm256_mullo_epi32(ld(asw, r * k + kk), bv));
        }
    }
    let himask = _mm256_set1_epi64x(0xffff_ffff_0000_0000u64 as i64);
    for r in 0..m {
        let cross = _mm256_add_epi64(_mm256_slli_epi64(x[r], 32), _mm256_and_si256(x[r], himask));
        let mut lanes = [0u64; 4];
        _mm256_storeu_si256(
            lanes.as_mut_ptr() as *mut __m256i,
            _mm256_add_epi64(lo[r], cross),
        );
        let tail = (k4..k).fold(0u64, |acc, kk| {
            let bv = b0[kk].wrapping_add(b1.map_or(0, |b| b[kk]));
            acc.wrapping_add(a[r * k + kk].wrapping_mul(bv))
        });
        s[r] = lanes
            .iter()
            .fold(s[r].wrapping_add(tail), |t, v| t.wrapping_add(*v));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu::gemm::two_terms_naive;
    use crate::prg::Prg;

    /// x0 (w0 + w1) + x1 w0 with the weights stored transposed, on the
    /// AVX2 dot products (where the CPU has them) and the portable loops,
    /// against the definition: ragged k around the 4-word vectors, 1-4 rows.
    #[test]
    fn transposed_dots_match_naive() {
        let mut prg = Prg::new([11; 16]);
        let paths: &[bool] = if has_avx2() { &[false, true] } else { &[false] };
        for &(m, k, n) in &[
            (1, 1, 1),
            (1, 3, 5),
            (2, 4, 9),
            (3, 5, 70),
            (4, 301, 130),
            (4, 17, 3),
        ] {
            let (x0, x1) = (prg.gen(m * k), prg.gen(m * k));
            let (w0, w1) = (prg.gen(n * k), prg.gen(n * k));
            let tr =
                |w: &[u64]| -> Vec<u64> { (0..k * n).map(|i| w[(i % n) * k + i / n]).collect() };
            let want = two_terms_naive(m, k, n, (&x0, &x1), (&tr(&w0), &tr(&w1)));
            let terms = [
                Term {
                    a: &[&x0],
                    b: &[&w0, &w1],
                    b_trans: true,
                },
                Term {
                    a: &[&x1],
                    b: &[&w0],
                    b_trans: true,
                },
            ];
            for &avx2 in paths {
                let mut c = vec![5u64; m * n];
                run_with(avx2, m, k, n, &terms, &mut c);
                let got: Vec<u64> = c.iter().map(|v| v.wrapping_sub(5)).collect();
                assert_eq!(got, want, "{m}x{k}x{n} avx2 {avx2}");
            }
        }
    }

    fn has_avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        return std::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}
