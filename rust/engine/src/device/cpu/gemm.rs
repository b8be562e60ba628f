//! Ring GEMM over Z_2^64 on the CPU: C (+)= A * B with wrapping u64
//! arithmetic (DESIGN.md "Where the speed comes from").
//!
//! A BLIS-style blocked GEMM: B is packed into KC x NR panels, A into MC x KC
//! blocks of MR-row panels, and an MR x NR register-blocked microkernel runs
//! over them. The microkernel is chosen once at run time:
//! - AVX-512 (F + DQ): native 64-bit lane multiply (`vpmullq`), 8 x 16 tile.
//! - AVX2: 64-bit products from three 32x32->64 `vpmuludq`, with the cross
//!   terms kept in a separate accumulator so their shift by 32 is paid once
//!   per tile instead of once per multiply-add (hand-written intrinsics).
//! - scalar: portable fallback, 4 x 4 tile.
//!
//! We also tried the CryptGPU limb trick on the CPU (split each word into
//! limbs whose products sum exactly in f64, run f64 GEMMs): 64-bit words need
//! 6 to 10 limb GEMMs, each as slow as one f64 GEMM, while the AVX2 kernel
//! costs about three f64 GEMMs' worth of multiplies; native u64 wins (see
//! benchmarks/RESULTS.md).

use super::host::chunks_each;
use super::pack::{pack_a, pack_b};
use rayon::prelude::*;

const KC: usize = 256;
const MC: usize = 96;
const AVX2_MR: usize = 3;

/// Rows of the AVX-512 kernel's tile (16 columns: two zmm per row).
const AVX512_MR: usize = 8;

/// Which microkernel the dispatcher picked; reported by benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Scalar,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        }
    }
}

/// The microkernel in use, chosen once per process: `CRYPTGPU_CPU_KERNEL`
/// (avx512, avx2 or scalar) when set to one this CPU can run; else, where
/// the CPU has both AVX-512 and AVX2, whichever runs a 128^3 GEMM faster
/// (a few milliseconds, at first use): 64-bit multiplies (`vpmullq`) are
/// slow on some AVX-512 CPUs, where the AVX2 kernel was measured 3x faster
/// (benchmarks/RESULTS.md); else the best it supports.
pub fn detect() -> Isa {
    static CHOICE: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        let forced = std::env::var("CRYPTGPU_CPU_KERNEL").ok();
        let avail = available();
        if let Some(i) = avail.iter().find(|i| forced.as_deref() == Some(i.name())) {
            return *i;
        }
        match best() {
            Isa::Avx512 if avail.contains(&Isa::Avx2) => faster(Isa::Avx512, Isa::Avx2),
            other => other,
        }
    })
}

/// The faster of two kernels on a 128^3 GEMM: one warm-up run each, then
/// five runs each, alternating, the best of each kept (timed one after
/// the other, the first kernel's runs met a cold pool and caches and lost
/// to AVX2 on a Zen 4 pair where it is 1.5-1.7x faster).
fn faster(x: Isa, y: Isa) -> Isa {
    let n: usize = 128;
    let a: Vec<u64> = (0..(n * n) as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let mut c = vec![0u64; n * n];
    let mut run = |isa: Isa| {
        let t = std::time::Instant::now();
        gemm_with(isa, n, n, n, &a, &a, &mut c, false);
        t.elapsed()
    };
    run(x);
    run(y);
    let (mut tx, mut ty) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..5 {
        tx = tx.min(run(x));
        ty = ty.min(run(y));
    }
    if tx <= ty {
        x
    } else {
        y
    }
}

/// The best microkernel this CPU supports, by instruction set.
pub fn best() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq") {
            return Isa::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

/// Kernels this CPU can run, best first (tests run every one of them).
pub fn available() -> Vec<Isa> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq") {
            v.push(Isa::Avx512);
        }
        if std::is_x86_feature_detected!("avx2") {
            v.push(Isa::Avx2);
        }
    }
    v.push(Isa::Scalar);
    v
}

/// C = A * B (or C += A * B when `accumulate`), A m x k, B k x n, C m x n,
/// all row-major and contiguous, arithmetic mod 2^64.
pub fn gemm(m: usize, k: usize, n: usize, a: &[u64], b: &[u64], c: &mut [u64], accumulate: bool) {
    gemm_with(detect(), m, k, n, a, b, c, accumulate)
}

#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    a: &[u64],
    b: &[u64],
    c: &mut [u64],
    accumulate: bool,
) {
    assert!(c.len() >= m * n);
    if !accumulate {
        c[..m * n].iter_mut().for_each(|x| *x = 0);
    }
    let term = Term {
        a: &[a],
        b: &[b],
        b_trans: false,
    };
    terms_with(isa, m, k, n, &[term], c);
}

/// One product of a sum of GEMMs: A B, where A (m x k, row-major) is the
/// sum of the slices in `a` and B the sum of those in `b`, stored k x n, or
/// n x k when `b_trans` (B's transpose row-major, as a Linear weight is).
/// Sums are formed while packing, never materialised.
#[derive(Clone, Copy)]
pub struct Term<'a> {
    pub a: &'a [&'a [u64]],
    pub b: &'a [&'a [u64]],
    pub b_trans: bool,
}

/// C += sum_t A_t B_t over Z_2^64 (every term m x k x n). The local step of
/// a replicated matrix product is two terms, x0 (y0 + y1) + x1 y0, run as
/// one GEMM with K doubled: one packing pass over each operand, no sum or
/// transpose written out, one pass over C.
pub fn gemm_terms(m: usize, k: usize, n: usize, terms: &[Term], c: &mut [u64]) {
    terms_with(detect(), m, k, n, terms, c)
}

/// Rows of A up to which the unpacked small-m path runs instead of the
/// blocked one: below the microkernel's MR most of its tile is padding, and
/// packing B (one read and write of the whole weight) costs more than the
/// products at batch 1.
const SMALL_M: usize = 2;
/// The same bound when every B is stored transposed (dot products along
/// contiguous rows): each further row of A re-reads a B row from L1.
pub const SMALL_M_T: usize = 4;

pub fn terms_with(isa: Isa, m: usize, k: usize, n: usize, terms: &[Term], c: &mut [u64]) {
    for t in terms {
        assert!(!t.a.is_empty() && !t.b.is_empty());
        assert!(t.a.iter().all(|s| s.len() >= m * k) && t.b.iter().all(|s| s.len() >= k * n));
    }
    assert!(c.len() >= m * n);
    if m == 0 || n == 0 || k == 0 || terms.is_empty() {
        return;
    }
    if m <= SMALL_M || (m <= SMALL_M_T && terms.iter().all(|t| t.b_trans)) {
        return super::small::run(m, k, n, terms, c);
    }
    dispatch(isa, m, k, n, terms, c, None)
}

fn dispatch(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    terms: &[Term],
    c: &mut [u64],
    bp: Option<&[u64]>,
) {
    match isa {
        Isa::Avx512 => blocked::<AVX512_MR, 16, AVX512_MR>(m, k, n, terms, c, kernel_avx512, bp),
        Isa::Avx2 => blocked::<AVX2_MR, 8, { 2 * AVX2_MR }>(m, k, n, terms, c, kernel_avx2, bp),
        Isa::Scalar => blocked::<4, 4, 4>(m, k, n, terms, c, kernel_scalar::<4, 4>, bp),
    }
}

/// Where B's word (r, j) of term `t` goes in the packed B that
/// `gemm_prepacked` takes: the layout `pack_b` writes, for the kernel
/// `detect()` picks (NR-wide panels per KC-deep block, terms one after
/// another). A producer of B (im2col) writes it there directly and the
/// product skips a pass over B.
#[derive(Clone, Copy, Debug)]
pub struct PackedB {
    k: usize,
    pub nr: usize,
    npanels: usize,
}

impl PackedB {
    pub fn new(k: usize, n: usize) -> PackedB {
        let nr = match detect() {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Scalar => 4,
        };
        PackedB {
            k,
            nr,
            npanels: n.div_ceil(nr),
        }
    }
    /// Words per term (padding columns included, zero).
    pub fn term_len(&self) -> usize {
        self.k * self.npanels * self.nr
    }
    /// The words of rows [k0, k0 + kc) of one term: whole KC blocks are
    /// contiguous, so a block's rows can be written by one task.
    pub fn block_len(&self, kc: usize) -> usize {
        kc * self.npanels * self.nr
    }
    /// Index of (r, j) within its term: the layout's definition, which the
    /// tests hold `pack_b`'s consumers and `im2col_packed` to (the writers
    /// walk the layout in storage order instead of calling this per word).
    #[cfg(test)]
    pub fn index(&self, r: usize, j: usize) -> usize {
        let (k0, kc) = (r / KC * KC, (self.k - r / KC * KC).min(KC));
        k0 * self.npanels * self.nr
            + (j / self.nr) * kc * self.nr
            + (r - k0) * self.nr
            + j % self.nr
    }
}

/// Depth of the blocks of a packed B.
pub const KC_DEPTH: usize = KC;

/// Rows of A above which `gemm_prepacked` applies (the blocked path).
pub fn prepacked_ok(m: usize) -> bool {
    m > SMALL_M
}

/// C += sum_t A_t B_t with every B_t already packed (`PackedB`, terms in
/// order in `packed_b`); m must pass `prepacked_ok`.
pub fn gemm_prepacked(
    m: usize,
    k: usize,
    n: usize,
    a: &[&[&[u64]]],
    packed_b: &[u64],
    c: &mut [u64],
) {
    let layout = PackedB::new(k, n);
    assert!(prepacked_ok(m) && c.len() >= m * n);
    assert!(packed_b.len() >= a.len() * layout.term_len());
    assert!(a
        .iter()
        .all(|t| !t.is_empty() && t.iter().all(|s| s.len() >= m * k)));
    if n == 0 || k == 0 || a.is_empty() {
        return;
    }
    let terms: Vec<Term> = a
        .iter()
        .map(|a| Term {
            a,
            b: &[],
            b_trans: false,
        })
        .collect();
    dispatch(detect(), m, k, n, &terms, c, Some(packed_b))
}

type Kernel<const MR: usize, const NR: usize> = fn(usize, &[u64], &[u64], &mut [[u64; NR]; MR]);

/// One KC-deep slice of one term: the unit the packed B is made of.
#[derive(Clone, Copy)]
pub(super) struct Block {
    pub(super) term: usize,
    pub(super) k0: usize,
    pub(super) kc: usize,
    /// Offset of its packed panels in the packed B.
    pub(super) off: usize,
}

fn blocks(terms: usize, k: usize, npanels: usize, nr: usize) -> Vec<Block> {
    let mut v = Vec::new();
    let mut off = 0;
    for term in 0..terms {
        for k0 in (0..k).step_by(KC) {
            let kc = (k - k0).min(KC);
            v.push(Block { term, k0, kc, off });
            off += kc * npanels * nr;
        }
    }
    v
}

/// Sum of the sources at one index.
#[inline(always)]
pub(super) fn at(src: &[&[u64]], i: usize) -> u64 {
    match src {
        [a] => a[i],
        [a, b] => a[i].wrapping_add(b[i]),
        _ => src.iter().fold(0u64, |s, v| s.wrapping_add(v[i])),
    }
}

/// Largest packed B (in words) a thread keeps between calls: small layers
/// then pack into warm memory instead of fresh pages; larger ones allocate.
const KEEP_WORDS: usize = 1 << 21;

/// Largest A (in packed words) packed once for all column groups.
const PREPACK_WORDS: usize = 1 << 21;

thread_local! {
    static PACKED_B: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` on a scratch buffer of `len` words (contents unspecified).
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u64]) -> R) -> R {
    if len > KEEP_WORDS {
        return f(&mut vec![0u64; len]);
    }
    PACKED_B.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0u64; len]),
    })
}

fn blocked<const MR: usize, const NR: usize, const AW: usize>(
    m: usize,
    k: usize,
    n: usize,
    terms: &[Term],
    c: &mut [u64],
    kernel: Kernel<MR, NR>,
    packed_b: Option<&[u64]>,
) {
    let npanels = n.div_ceil(NR);
    let blks = blocks(terms.len(), k, npanels, NR);
    let par = m * k * n * terms.len() >= PAR_MACS;
    if let Some(bp) = packed_b {
        return product::<MR, NR, AW>(m, k, n, terms, c, kernel, &blks, bp, par);
    }
    with_scratch(terms.len() * k * npanels * NR, |bp| {
        // Blocks are disjoint ranges of the packed B, packed in parallel.
        let mut parts = Vec::with_capacity(blks.len());
        let mut rest = &mut bp[..];
        for blk in &blks {
            let (head, tail) = rest.split_at_mut(blk.kc * npanels * NR);
            parts.push((blk, head));
            rest = tail;
        }
        each(par, parts, |(blk, dst)| {
            pack_b::<NR>(&terms[blk.term], k, n, blk, dst)
        });
        product::<MR, NR, AW>(m, k, n, terms, c, kernel, &blks, bp, par)
    })
}

/// The blocked product over a packed B (`bp`, in `blocks` order).
#[allow(clippy::too_many_arguments)]
fn product<const MR: usize, const NR: usize, const AW: usize>(
    m: usize,
    k: usize,
    n: usize,
    terms: &[Term],
    c: &mut [u64],
    kernel: Kernel<MR, NR>,
    blks: &[Block],
    bp: &[u64],
    par: bool,
) {
    let npanels = n.div_ceil(NR);
    let row_blocks = m.div_ceil(MC);
    let groups = col_groups(row_blocks, npanels);
    // With column groups, A is packed once per row block (every group
    // reads it) when that costs at most PREPACK_WORDS words.
    let ktot: usize = blks.iter().map(|b| b.kc).sum();
    let a_words = |mc: usize| mc.div_ceil(MR) * AW * ktot;
    let prepacked: Vec<Vec<u64>> = if groups > 1 && a_words(m) <= PREPACK_WORDS {
        each(par, (0..row_blocks).collect(), |ib| {
            let (i0, mc) = (ib * MC, (m - ib * MC).min(MC));
            let mut out = vec![0u64; a_words(mc)];
            let mut off = 0;
            for blk in blks {
                let len = mc.div_ceil(MR) * AW * blk.kc;
                let a = terms[blk.term].a;
                pack_a::<MR, AW>(a, k, i0, mc, blk.k0, blk.kc, &mut out[off..off + len]);
                off += len;
            }
            out
        })
    } else {
        Vec::new()
    };
    let tile = |i0: usize, mc: usize, p0: usize, p1: usize, dst: &mut [u64], ld: usize| {
        let t = Tile { i0, mc, p0, p1, ld };
        let pre = prepacked.get(i0 / MC).map(|v| &v[..]);
        tile_product::<MR, NR, AW>(terms, k, n, blks, bp, &t, pre, dst, kernel)
    };
    if groups == 1 {
        // Each task owns MC rows of C; tasks never share output rows.
        chunks_each(par, &mut c[..m * n], MC * n, |ib, cblk| {
            let i0 = ib * MC;
            tile(i0, (m - i0).min(MC), 0, npanels, cblk, n)
        });
    } else {
        // Few row blocks (a batch-1 layer, a 65-token transformer): the
        // columns are split too, so the three parties' products keep
        // both cores busy. Each task fills its own buffer, added into C
        // afterwards.
        let per = npanels.div_ceil(groups);
        let tiles: Vec<(usize, usize, usize, usize, Vec<u64>)> =
            each(par, (0..row_blocks * groups).collect(), |t| {
                let (ib, g) = (t / groups, t % groups);
                let (i0, p0) = (ib * MC, (g * per).min(npanels));
                let (mc, p1) = ((m - i0).min(MC), ((g + 1) * per).min(npanels));
                let ld = (p1 - p0) * NR;
                let mut buf = vec![0u64; mc * ld];
                if p0 < p1 {
                    tile(i0, mc, p0, p1, &mut buf, ld);
                }
                (i0, mc, p0 * NR, ld, buf)
            });
        // An empty group (p0 = p1) has ld = 0 and adds nothing.
        for (i0, mc, j0, ld, buf) in tiles.into_iter().filter(|t| t.3 > 0) {
            let w = ld.min(n - j0);
            for r in 0..mc {
                let dst = &mut c[(i0 + r) * n + j0..(i0 + r) * n + j0 + w];
                for (d, s) in dst.iter_mut().zip(&buf[r * ld..r * ld + w]) {
                    *d = d.wrapping_add(*s);
                }
            }
        }
    }
}

/// Multiply-adds (summed over the terms) below which a product runs on the
/// calling thread: in the local runtime that is a party thread, and handing
/// a small product to the pool and waiting for it costs more than the
/// product (the three parties already keep the cores busy). Measured on
/// the 2-core machine, interleaved: 2^20 to 2^22 are alike; 2^24 made the
/// 1.6M-MAC layers slower.
pub(super) const PAR_MACS: usize = 1 << 20;

/// `f` over `items` in order, on the thread pool when `par`.
fn each<T: Send, R: Send>(par: bool, items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    if par && super::host::pool_here() {
        items.into_par_iter().map(f).collect()
    } else {
        items.into_iter().map(f).collect()
    }
}

/// How many column groups each block of MC rows is split into: with one or
/// two row blocks, enough for about four tasks per product (three parties'
/// products share two cores), each at least four NR-wide panels; with
/// more, the row blocks alone keep the cores busy.
fn col_groups(row_blocks: usize, npanels: usize) -> usize {
    if row_blocks > 2 {
        return 1;
    }
    4usize.div_ceil(row_blocks).min(npanels / 4).max(1)
}

/// Rows [i0, i0 + mc) x panels [p0, p1) of C: the destination holds those
/// rows with row stride `ld`, panel p0 at column 0.
struct Tile {
    i0: usize,
    mc: usize,
    p0: usize,
    p1: usize,
    ld: usize,
}

#[allow(clippy::too_many_arguments)]
fn tile_product<const MR: usize, const NR: usize, const AW: usize>(
    terms: &[Term],
    k: usize,
    n: usize,
    blks: &[Block],
    bp: &[u64],
    t: &Tile,
    prepacked: Option<&[u64]>,
    dst: &mut [u64],
    kernel: Kernel<MR, NR>,
) {
    let npanels = n.div_ceil(NR);
    let mut own = Vec::new();
    if prepacked.is_none() {
        // pack_a writes every word it later reads: sized for the deepest
        // block, not KC, since small products have k far below KC.
        own = vec![0u64; t.mc.div_ceil(MR) * AW * k.min(KC)];
    }
    let col0 = t.p0 * NR;
    let mut off = 0;
    for blk in blks {
        let kc = blk.kc;
        let len = t.mc.div_ceil(MR) * AW * kc;
        let ap: &[u64] = match prepacked {
            Some(pre) => &pre[off..off + len],
            None => {
                pack_a::<MR, AW>(terms[blk.term].a, k, t.i0, t.mc, blk.k0, kc, &mut own);
                &own
            }
        };
        off += len;
        let bblk = &bp[blk.off..blk.off + kc * npanels * NR];
        for p in t.p0..t.p1 {
            let j0 = p * NR;
            let w = (n - j0).min(NR);
            let bpan = &bblk[p * kc * NR..(p + 1) * kc * NR];
            for q in 0..t.mc.div_ceil(MR) {
                let apan = &ap[q * kc * AW..(q + 1) * kc * AW];
                let mut acc = [[0u64; NR]; MR];
                kernel(kc, apan, bpan, &mut acc);
                let h = (t.mc - q * MR).min(MR);
                for (r, row) in acc.iter().enumerate().take(h) {
                    let at = (q * MR + r) * t.ld + j0 - col0;
                    for (d, s) in dst[at..at + w].iter_mut().zip(row) {
                        *d = d.wrapping_add(*s);
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn kernel_body<const MR: usize, const NR: usize>(
    kc: usize,
    ap: &[u64],
    bp: &[u64],
    acc: &mut [[u64; NR]; MR],
) {
    for kk in 0..kc {
        let bv: &[u64; NR] = bp[kk * NR..kk * NR + NR].try_into().unwrap_or(&[0; NR]);
        let av: &[u64; MR] = ap[kk * MR..kk * MR + MR].try_into().unwrap_or(&[0; MR]);
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = acc[i][j].wrapping_add(av[i].wrapping_mul(bv[j]));
            }
        }
    }
}

fn kernel_scalar<const MR: usize, const NR: usize>(
    kc: usize,
    ap: &[u64],
    bp: &[u64],
    acc: &mut [[u64; NR]; MR],
) {
    kernel_body(kc, ap, bp, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn kernel_avx512_inner(kc: usize, ap: &[u64], bp: &[u64], acc: &mut [[u64; 16]; AVX512_MR]) {
    use std::arch::x86_64::*;
    // The MR x 16 tile in 2 MR zmm accumulators: per k step two loads of B,
    // MR broadcasts of A from memory and 2 MR vpmullq + vpaddq (8
    // multiply-adds each). The autovectorised scalar body it replaces kept the tile in
    // memory and ran at 1.8 G MAC/s on a Zen 4 core pair where this AVX2
    // kernel's two-multiply trick ran at 15.7.
    let mut c = [[_mm512_setzero_si512(); 2]; AVX512_MR];
    let a_ptr = ap.as_ptr();
    let b_ptr = bp.as_ptr();
    for kk in 0..kc {
        let b0 = _mm512_loadu_si512(b_ptr.add(kk * 16) as *const __m512i);
        let b1 = _mm512_loadu_si512(b_ptr.add(kk * 16 + 8) as *const __m512i);
        for (i, ci) in c.iter_mut().enumerate() {
            let a = _mm512_set1_epi64(*a_ptr.add(kk * AVX512_MR + i) as i64);
            ci[0] = _mm512_add_epi64(ci[0], _mm512_mullo_epi64(a, b0));
            ci[1] = _mm512_add_epi64(ci[1], _mm512_mullo_epi64(a, b1));
        }
    }
    for (row, ci) in acc.iter_mut().zip(c.iter()) {
        for (h, v) in ci.iter().enumerate() {
            let mut out = [0u64; 8];
            _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, *v);
            for (j, o) in out.iter().enumerate() {
                row[h * 8 + j] = row[h * 8 + j].wrapping_add(*o);
            }
        }
    }
}

fn kernel_avx512(kc: usize, ap: &[u64], bp: &[u64], acc: &mut [[u64; 16]; AVX512_MR]) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(ap.len() >= kc * AVX512_MR && bp.len() >= kc * 16);
        // SAFETY: only dispatched when `detect` saw avx512f and avx512dq; the
        // slices hold at least kc steps of AVX512_MR and 16 words (checked above).
        unsafe { kernel_avx512_inner(kc, ap, bp, acc) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    kernel_body(kc, ap, bp, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2_inner(kc: usize, ap: &[u64], bp: &[u64], acc: &mut [[u64; 8]; AVX2_MR]) {
    use std::arch::x86_64::*;
    // a*b mod 2^64 = lo(a)lo(b) + ((lo(a)hi(b) + hi(a)lo(b)) mod 2^32) << 32.
    // `lo` accumulates lo(a)lo(b) in 64-bit lanes (vpmuludq). The cross terms
    // are only needed mod 2^32: one vpmulld of b against a with its halves
    // swapped gives lo(b)hi(a) and hi(b)lo(a) in the two 32-bit lanes of each
    // word, accumulated mod 2^32 in `x` and folded once after the k loop.
    // Two multiplies per four multiply-adds instead of three.
    let mut lo = [[_mm256_setzero_si256(); 2]; AVX2_MR];
    let mut x = [[_mm256_setzero_si256(); 2]; AVX2_MR];
    let a_ptr = ap.as_ptr();
    let b_ptr = bp.as_ptr();
    for kk in 0..kc {
        let b0 = _mm256_loadu_si256(b_ptr.add(kk * 8) as *const __m256i);
        let b1 = _mm256_loadu_si256(b_ptr.add(kk * 8 + 4) as *const __m256i);
        for i in 0..AVX2_MR {
            // Broadcast from memory: a load, no ALU work. Written as asm so
            // LLVM cannot "narrow" it into a 32-bit load, blend and register
            // broadcast (it knows vpmuludq reads only the low halves).
            let ap_i = a_ptr.add(kk * 2 * AVX2_MR + i);
            let al = bcast(ap_i);
            let asw = bcast(ap_i.add(AVX2_MR));
            lo[i][0] = _mm256_add_epi64(lo[i][0], _mm256_mul_epu32(al, b0));
            lo[i][1] = _mm256_add_epi64(lo[i][1], _mm256_mul_epu32(al, b1));
            x[i][0] = _mm256_add_epi32(x[i][0], _mm256_mullo_epi32(asw, b0));
            x[i][1] = _mm256_add_epi32(x[i][1], _mm256_mullo_epi32(asw, b1));
        }
    }
    let himask = _mm256_set1_epi64x(0xffff_ffff_0000_0000u64 as i64);
    for i in 0..AVX2_MR {
        for h in 0..2 {
            let cross = _mm256_add_epi64(
                _mm256_slli_epi64(x[i][h], 32),
                _mm256_and_si256(x[i][h], himask),
            );
            let v = _mm256_add_epi64(lo[i][h], cross);
            let mut out = [0u64; 4];
            _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, v);
            for (j, o) in out.iter().enumerate() {
                acc[i][h * 4 + j] = acc[i][h * 4 + j].wrapping_add(*o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bcast(p: *const u64) -> std::arch::x86_64::__m256i {
    let v: std::arch::x86_64::__m256i;
    std::arch::asm!(
        "vpbroadcastq {v}, qword ptr [{p}]",
        v = out(ymm_reg) v,
        p = in(reg) p,
        options(pure, readonly, nostack, preserves_flags)
    );
    v
}

fn kernel_avx2(kc: usize, ap: &[u64], bp: &[u64], acc: &mut [[u64; 8]; AVX2_MR]) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(ap.len() >= kc * 2 * AVX2_MR && bp.len() >= kc * 8);
        // SAFETY: only dispatched when `detect` saw avx2; the slices hold at
        // least kc steps of 2 MR and 8 words (checked above).
        unsafe { kernel_avx2_inner(kc, ap, bp, acc) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    kernel_body(kc, ap, bp, acc)
}

/// x0 (y0 + y1) + x1 y0 by the definition (y stored k x n): the local step
/// of a replicated product, for tests.
#[cfg(test)]
pub(super) fn two_terms_naive(
    m: usize,
    k: usize,
    n: usize,
    x: (&[u64], &[u64]),
    y: (&[u64], &[u64]),
) -> Vec<u64> {
    let ysum: Vec<u64> =
        y.0.iter()
            .zip(y.1)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();
    let mut want = gemm_naive(m, k, n, x.0, &ysum);
    for (w, v) in want.iter_mut().zip(gemm_naive(m, k, n, x.1, y.0)) {
        *w = w.wrapping_add(v);
    }
    want
}

/// Reference GEMM for tests: the definition, one multiply-add at a time.
pub fn gemm_naive(m: usize, k: usize, n: usize, a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut c = vec![0u64; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p];
            for j in 0..n {
                c[i * n + j] = c[i * n + j].wrapping_add(x.wrapping_mul(b[p * n + j]));
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::Prg;

    #[test]
    fn every_kernel_matches_naive_on_ragged_shapes() {
        let mut prg = Prg::new([9; 16]);
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 3, 7),
            (13, 300, 17),
            (97, 513, 33),
            (200, 70, 129),
            // Few row blocks: the columns are split into groups (one empty).
            (65, 40, 200),
            (10, 20, 90),
        ] {
            let a = prg.gen(m * k);
            let b = prg.gen(k * n);
            let want = gemm_naive(m, k, n, &a, &b);
            for isa in available() {
                let mut c = vec![0u64; m * n];
                gemm_with(isa, m, k, n, &a, &b, &mut c, false);
                assert_eq!(c, want, "{isa:?} {m}x{k}x{n}");
                gemm_with(isa, m, k, n, &a, &b, &mut c, true);
                let twice: Vec<u64> = want.iter().map(|x| x.wrapping_mul(2)).collect();
                assert_eq!(c, twice, "{isa:?} accumulate");
            }
        }
    }

    #[test]
    fn prepacked_b_gives_the_product_of_the_packed_words() {
        let mut prg = Prg::new([5; 16]);
        for &(m, k, n) in &[(3, 5, 7), (13, 300, 17), (65, 513, 100), (97, 40, 129)] {
            let (a0, a1) = (prg.gen(m * k), prg.gen(m * k));
            let (b0, b1) = (prg.gen(k * n), prg.gen(k * n));
            let layout = PackedB::new(k, n);
            let tl = layout.term_len();
            let mut bp = vec![0u64; 2 * tl];
            for r in 0..k {
                for j in 0..n {
                    bp[layout.index(r, j)] = b0[r * n + j];
                    bp[tl + layout.index(r, j)] = b1[r * n + j];
                }
            }
            let mut want = gemm_naive(m, k, n, &a0, &b0);
            for (w, v) in want.iter_mut().zip(gemm_naive(m, k, n, &a1, &b1)) {
                *w = w.wrapping_add(v);
            }
            let mut c = vec![0u64; m * n];
            gemm_prepacked(m, k, n, &[&[&a0], &[&a1]], &bp, &mut c);
            assert_eq!(c, want, "{m}x{k}x{n}");
        }
    }

    /// x0 (y0 + y1) + x1 y0 with y stored as given or transposed, through
    /// every kernel and the small-m path, against the definition.
    #[test]
    fn product_terms_match_naive_in_both_layouts() {
        let mut prg = Prg::new([3; 16]);
        for &(m, k, n) in &[
            (1, 1, 1),
            (1, 300, 17),
            (2, 513, 70),
            (3, 9, 5),
            (40, 260, 33),
            (65, 300, 130),
        ] {
            let (x0, x1) = (prg.gen(m * k), prg.gen(m * k));
            let (y0, y1) = (prg.gen(k * n), prg.gen(k * n));
            let want = two_terms_naive(m, k, n, (&x0, &x1), (&y0, &y1));
            let tr =
                |y: &[u64]| -> Vec<u64> { (0..n * k).map(|i| y[(i % k) * n + i / k]).collect() };
            let (t0, t1) = (tr(&y0), tr(&y1));
            for isa in available() {
                for b_trans in [false, true] {
                    let (b0, b1): (&[u64], &[u64]) = if b_trans { (&t0, &t1) } else { (&y0, &y1) };
                    let (a0, a1): (&[u64], &[u64]) = (&x0, &x1);
                    let terms = [
                        Term {
                            a: &[a0],
                            b: &[b0, b1],
                            b_trans,
                        },
                        Term {
                            a: &[a1],
                            b: &[b0],
                            b_trans,
                        },
                    ];
                    let mut c = vec![7u64; m * n];
                    terms_with(isa, m, k, n, &terms, &mut c);
                    let got: Vec<u64> = c.iter().map(|v| v.wrapping_sub(7)).collect();
                    assert_eq!(got, want, "{isa:?} {m}x{k}x{n} trans {b_trans}");
                }
            }
        }
    }
}
