//! The CPU device: multi-threaded Rust on host vectors, always built and
//! always tested (DESIGN.md layer 2). The ring GEMM is in `gemm`, bit
//! slicing in `bits`, data movement in `host`.

pub mod bits;
pub mod gemm;
pub mod host;
mod pack;
mod small;

use super::{bounds, Buf, Conv2dGeom, Device, MatDims, Op1, Op2, Span};
use crate::error::{EngineError, Result};

pub struct Cpu;

/// Requests at least this large are checked against the memory the system
/// has available before they are made: Linux overcommits, so a refused
/// allocation is rare and an impossible one ends in the OOM killer instead.
const CHECKED_BYTES: usize = 1 << 30;

/// MemAvailable of /proc/meminfo in bytes (None off Linux).
fn available_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// An empty host vector with room for n words, or `OutOfMemory` where it
/// cannot fit (never an abort, never the OOM killer for a size that cannot
/// fit).
pub fn with_capacity(n: usize) -> Result<Vec<u64>> {
    let oom = |why: &str| {
        EngineError::OutOfMemory(format!(
            "cannot allocate {n} ring elements ({} bytes) of host memory: {why}",
            n.saturating_mul(8)
        ))
    };
    let bytes = n.checked_mul(8).ok_or_else(|| oom("the size overflows"))?;
    if bytes >= CHECKED_BYTES {
        if let Some(avail) = available_bytes() {
            if bytes > avail {
                return Err(oom(&format!("{avail} bytes available")));
            }
        }
    }
    let mut v: Vec<u64> = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| oom("the allocator refused"))?;
    Ok(v)
}

/// A zeroed host vector of n words, checked as `with_capacity`.
pub fn alloc(n: usize) -> Result<Vec<u64>> {
    let mut v = with_capacity(n)?;
    v.resize(n, 0);
    Ok(v)
}

/// The words [off, off + len) of a slice, or an internal error where the
/// range does not fit (the runtime validates every range first).
fn range(v: &[u64], off: usize, len: usize) -> Result<&[u64]> {
    off.checked_add(len)
        .and_then(|end| v.get(off..end))
        .ok_or_else(|| EngineError::Internal(format!("range {off}+{len} of {} words", v.len())))
}

fn range_mut(v: &mut [u64], off: usize, len: usize) -> Result<&mut [u64]> {
    let n = v.len();
    off.checked_add(len)
        .and_then(|end| v.get_mut(off..end))
        .ok_or_else(|| EngineError::Internal(format!("range {off}+{len} of {n} words")))
}

fn same_len(a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(EngineError::Internal(format!(
            "element-wise operands of {a} and {b} words"
        )));
    }
    Ok(())
}

/// Run `body` with the op as a compile-time closure, so each loop is
/// specialised (no match per element).
macro_rules! with_op2 {
    ($op:expr, |$f:ident| $body:expr) => {
        match $op {
            Op2::Add => {
                let $f = |x: u64, y: u64| x.wrapping_add(y);
                $body
            }
            Op2::Sub => {
                let $f = |x: u64, y: u64| x.wrapping_sub(y);
                $body
            }
            Op2::Mul => {
                let $f = |x: u64, y: u64| x.wrapping_mul(y);
                $body
            }
            Op2::Xor => {
                let $f = |x: u64, y: u64| x ^ y;
                $body
            }
        }
    };
}

fn zip_into(d: &mut [u64], s: &[u64], f: impl Fn(u64, u64) -> u64) {
    d.iter_mut().zip(s).for_each(|(x, y)| *x = f(*x, *y));
}

fn apply1(op: Op1, v: &mut [u64]) {
    match op {
        Op1::Neg => v.iter_mut().for_each(|x| *x = x.wrapping_neg()),
        Op1::AddScalar(s) => v.iter_mut().for_each(|x| *x = x.wrapping_add(s)),
        Op1::DivFloor(d) => crate::ring::div_floor(v, d),
    }
}

impl Device for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn upload(&self, v: Vec<u64>) -> Result<Buf> {
        Ok(Buf::Host(v))
    }

    fn adopt(&self, b: Buf) -> Result<Buf> {
        Ok(Buf::Host(b.into_vec()?))
    }

    fn zeros(&self, n: usize) -> Result<Buf> {
        Ok(Buf::Host(alloc(n)?))
    }

    fn map2(&self, op: Op2, a: &Buf, b: &Buf) -> Result<Buf> {
        let (a, b) = (a.host()?, b.host()?);
        same_len(a.len(), b.len())?;
        Ok(with_op2!(op, |f| Buf::Host(
            a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
        )))
    }

    fn map2_into(&self, op: Op2, dst: &mut Buf, src: &Buf) -> Result<()> {
        let (d, s) = (dst.host_mut()?, src.host()?);
        same_len(d.len(), s.len())?;
        with_op2!(op, |f| zip_into(d, s, f));
        Ok(())
    }

    fn map1(&self, op: Op1, a: &Buf) -> Result<Buf> {
        let mut v = a.host()?.to_vec();
        apply1(op, &mut v);
        Ok(Buf::Host(v))
    }

    fn map1_into(&self, op: Op1, x: &mut Buf) -> Result<()> {
        apply1(op, x.host_mut()?);
        Ok(())
    }

    fn prg(&self, prg: &mut crate::prg::Prg, n: usize) -> Result<Buf> {
        let mut v = with_capacity(n)?;
        prg.fill_uninit(&mut v.spare_capacity_mut()[..n]);
        // SAFETY: fill_uninit wrote all n words.
        unsafe { v.set_len(n) };
        Ok(Buf::Host(v))
    }

    fn mul_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Result<Buf> {
        let mut z = r.into_vec()?;
        let n = z.len();
        let (x0, x1) = (range(x0.host()?, 0, n)?, range(x1.host()?, 0, n)?);
        let (y0, y1) = (range(y0.host()?, 0, n)?, range(y1.host()?, 0, n)?);
        for (j, zj) in z.iter_mut().enumerate() {
            let t = x0[j]
                .wrapping_mul(y0[j].wrapping_add(y1[j]))
                .wrapping_add(x1[j].wrapping_mul(y0[j]));
            *zj = zj.wrapping_add(t);
        }
        Ok(Buf::Host(z))
    }

    fn and_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Result<Buf> {
        let mut z = r.into_vec()?;
        let n = z.len();
        let (x0, x1) = (range(x0.host()?, 0, n)?, range(x1.host()?, 0, n)?);
        let (y0, y1) = (range(y0.host()?, 0, n)?, range(y1.host()?, 0, n)?);
        for (j, zj) in z.iter_mut().enumerate() {
            *zj ^= (x0[j] & y0[j]) ^ (x0[j] & y1[j]) ^ (x1[j] & y0[j]);
        }
        Ok(Buf::Host(z))
    }

    fn and_local_spans(&self, x: &[Span], y: &[Span], r: Buf) -> Result<Buf> {
        let mut z = r.into_vec()?;
        let mut at = 0;
        if x.len() != y.len() {
            return Err(EngineError::Internal(
                "AND operands of unequal spans".into(),
            ));
        }
        for (&(x0, x1, xo, n), &(y0, y1, yo, yn)) in x.iter().zip(y) {
            if yn != n {
                return Err(EngineError::Internal("AND spans of unequal lengths".into()));
            }
            let zs = range_mut(&mut z, at, n)?;
            let (x0, x1) = (range(x0.host()?, xo, n)?, range(x1.host()?, xo, n)?);
            let (y0, y1) = (range(y0.host()?, yo, n)?, range(y1.host()?, yo, n)?);
            for (j, zj) in zs.iter_mut().enumerate() {
                *zj ^= (x0[j] & y0[j]) ^ (x0[j] & y1[j]) ^ (x1[j] & y0[j]);
            }
            at += n;
        }
        if at != z.len() {
            return Err(EngineError::Internal(
                "AND spans do not cover the output".into(),
            ));
        }
        Ok(Buf::Host(z))
    }

    fn concat(&self, parts: &[(&Buf, usize, usize)]) -> Result<Buf> {
        let mut out = Vec::new();
        out.try_reserve_exact(parts.iter().map(|p| p.2).sum())
            .map_err(|_| EngineError::OutOfMemory("concatenation".into()))?;
        for (b, off, len) in parts {
            out.extend_from_slice(range(b.host()?, *off, *len)?);
        }
        Ok(Buf::Host(out))
    }

    fn update(
        &self,
        op: Option<Op2>,
        dst: &mut Buf,
        doff: usize,
        src: &Buf,
        soff: usize,
        len: usize,
    ) -> Result<()> {
        let s = range(src.host()?, soff, len)?;
        let d = range_mut(dst.host_mut()?, doff, len)?;
        match op {
            None => d.copy_from_slice(s),
            Some(op) => with_op2!(op, |f| zip_into(d, s, f)),
        }
        Ok(())
    }

    fn to_planes(&self, x: &Buf) -> Result<Buf> {
        Ok(Buf::Host(bits::to_planes(x.host()?)))
    }

    fn unslice_planes(&self, planes: &Buf, n: usize) -> Result<Buf> {
        let p = planes.host()?;
        if p.len() < 64 * n.div_ceil(64) {
            return Err(EngineError::Internal("too few bit planes".into()));
        }
        Ok(Buf::Host(bits::from_planes(p, n)))
    }

    fn expand_bits(&self, plane: &Buf, n: usize, reps: usize) -> Result<Buf> {
        let p = plane.host()?;
        if p.len() < n.div_ceil(64) {
            return Err(EngineError::Internal("bit plane too short".into()));
        }
        let mut out = alloc(n * reps)?;
        for (i, o) in out.iter_mut().enumerate() {
            *o = bits::bit(p, i / reps);
        }
        Ok(Buf::Host(out))
    }

    fn gemm(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: (&Buf, usize),
        b: (&Buf, usize),
        c: (&mut Buf, usize),
        accumulate: bool,
    ) -> Result<()> {
        let a = range(a.0.host()?, a.1, m * k)?;
        let b = range(b.0.host()?, b.1, k * n)?;
        let c = range_mut(c.0.host_mut()?, c.1, m * n)?;
        gemm::gemm(m, k, n, a, b, c, accumulate);
        Ok(())
    }

    fn matmul_local(
        &self,
        x: (&Buf, &Buf),
        y: (&Buf, &Buf),
        dims: MatDims,
        z: &mut Buf,
    ) -> Result<()> {
        let MatDims {
            batch,
            m,
            k,
            n,
            y_trans,
        } = dims;
        let (xs, ys) = (m * k, k * n);
        let (x0, x1) = (
            range(x.0.host()?, 0, batch * xs)?,
            range(x.1.host()?, 0, batch * xs)?,
        );
        let (y0, y1) = (
            range(y.0.host()?, 0, batch * ys)?,
            range(y.1.host()?, 0, batch * ys)?,
        );
        let z = range_mut(z.host_mut()?, 0, batch * m * n)?;
        for (bi, zb) in z.chunks_mut((m * n).max(1)).enumerate().take(batch) {
            let xa = [&x0[bi * xs..(bi + 1) * xs]];
            let xb = [&x1[bi * xs..(bi + 1) * xs]];
            let (ya, yb) = (&y0[bi * ys..(bi + 1) * ys], &y1[bi * ys..(bi + 1) * ys]);
            let (both, first) = ([ya, yb], [ya]);
            let terms = [
                gemm::Term {
                    a: &xa,
                    b: &both,
                    b_trans: y_trans,
                },
                gemm::Term {
                    a: &xb,
                    b: &first,
                    b_trans: y_trans,
                },
            ];
            gemm::gemm_terms(m, k, n, &terms, zb);
        }
        Ok(())
    }

    fn conv_local(
        &self,
        x: (&Buf, &Buf),
        w: (&Buf, &Buf),
        g: &Conv2dGeom,
        out_ch: usize,
        groups: usize,
    ) -> Result<Buf> {
        let (oh, ow) = g.out_hw();
        let (p, l) = (oh * ow, g.n * oh * ow);
        let (cg, og) = (g.c / groups, out_ch / groups);
        let kk = cg * g.kh * g.kw;
        let (w0, w1) = (
            range(w.0.host()?, 0, out_ch * kk)?,
            range(w.1.host()?, 0, out_ch * kk)?,
        );
        let mut y = alloc(out_ch * l)?;
        // Few output positions (deep layers at batch 1): the product taken
        // transposed, patches x W^T, so the weight is read in place as dot
        // products (gemm's small-m path) rather than packed; out [L, O].
        let transposed = l <= gemm::SMALL_M_T;
        let mut yt = if transposed {
            vec![0u64; l * og]
        } else {
            Vec::new()
        };
        // The patch matrices written straight in the GEMM's packed layout
        // (both share components, one after the other) where the blocked
        // product runs.
        let packed = !transposed && gemm::prepacked_ok(og);
        let layout = gemm::PackedB::new(kk, l);
        for gi in 0..groups {
            let (wa, wb) = (
                &w0[gi * og * kk..(gi + 1) * og * kk],
                &w1[gi * og * kk..(gi + 1) * og * kk],
            );
            let (wsum, wfirst) = ([wa, wb], [wa]);
            if packed {
                let tl = layout.term_len();
                let (xa, xb) = (x.0.host()?, x.1.host()?);
                let dst = &mut y[gi * og * l..(gi + 1) * og * l];
                // The thread's packing scratch (im2col_packed writes every
                // word, so it needs no clearing).
                gemm::with_scratch(2 * tl, |bp| {
                    let (p0, p1) = bp.split_at_mut(tl);
                    host::im2col_packed(xa, g, gi * cg, cg, &layout, p0);
                    host::im2col_packed(xb, g, gi * cg, cg, &layout, p1);
                    gemm::gemm_prepacked(og, kk, l, &[&wsum, &wfirst], bp, dst);
                });
                continue;
            }
            let c0 = host::im2col(x.0.host()?, g, gi * cg, cg)?;
            let c1 = host::im2col(x.1.host()?, g, gi * cg, cg)?;
            if transposed {
                let t = |c: &[u64]| -> Vec<u64> {
                    (0..l * kk).map(|i| c[(i % kk) * l + i / kk]).collect()
                };
                let (p0, p1) = (t(&c0), t(&c1));
                let (a0, a1) = ([&p0[..]], [&p1[..]]);
                let terms = [
                    gemm::Term {
                        a: &a0,
                        b: &wsum,
                        b_trans: true,
                    },
                    gemm::Term {
                        a: &a1,
                        b: &wfirst,
                        b_trans: true,
                    },
                ];
                yt.iter_mut().for_each(|v| *v = 0);
                gemm::gemm_terms(l, kk, og, &terms, &mut yt);
                // [(n, q), o] -> NCHW [n, gi og + o, q]
                for (i, row) in yt.chunks(og).enumerate() {
                    let (n, q) = (i / p, i % p);
                    for (o, v) in row.iter().enumerate() {
                        y[(n * out_ch + gi * og + o) * p + q] = *v;
                    }
                }
            } else {
                let (b0, b1) = ([&c0[..]], [&c1[..]]);
                let terms = [
                    gemm::Term {
                        a: &wsum,
                        b: &b0,
                        b_trans: false,
                    },
                    gemm::Term {
                        a: &wfirst,
                        b: &b1,
                        b_trans: false,
                    },
                ];
                gemm::gemm_terms(og, kk, l, &terms, &mut y[gi * og * l..(gi + 1) * og * l]);
            }
        }
        // One image: [O, 1, OH*OW] is already NCHW.
        if transposed || g.n == 1 {
            return Ok(Buf::Host(y));
        }
        // [O, N, OH*OW] -> [N, O, OH*OW]
        Ok(Buf::Host(host::gather(
            &y,
            &[g.n, out_ch, p],
            0,
            &[p, l, 1],
        )?))
    }

    fn im2col(&self, x: &Buf, g: &Conv2dGeom, c0: usize, cg: usize) -> Result<Buf> {
        bounds::conv_input("im2col", g, (c0, cg), x.len())?;
        Ok(Buf::Host(host::im2col(x.host()?, g, c0, cg)?))
    }

    fn col2im(&self, cols: &Buf, g: &Conv2dGeom) -> Result<Buf> {
        bounds::conv_cols("col2im", g, cols.len())?;
        Ok(Buf::Host(host::col2im(cols.host()?, g)?))
    }

    fn window_sum(&self, x: &Buf, g: &Conv2dGeom) -> Result<Buf> {
        bounds::conv_input("window sum", g, (0, g.c), x.len())?;
        Ok(Buf::Host(host::window_sum(x.host()?, g)?))
    }

    fn gather(&self, src: &Buf, shape: &[usize], offset: usize, strides: &[usize]) -> Result<Buf> {
        bounds::view("gather", shape, offset, strides, src.len())?;
        Ok(Buf::Host(host::gather(
            src.host()?,
            shape,
            offset,
            strides,
        )?))
    }

    fn scatter(
        &self,
        src: &Buf,
        dst: &mut Buf,
        shape: &[usize],
        offset: usize,
        strides: &[usize],
    ) -> Result<()> {
        bounds::view("scatter", shape, offset, strides, dst.len())?;
        bounds::words("scatter", src.len(), Some(crate::ring::numel(shape)))?;
        host::scatter(src.host()?, dst.host_mut()?, shape, offset, strides);
        Ok(())
    }

    fn index_gather(&self, src: &Buf, idx: &[usize]) -> Result<Buf> {
        let s = src.host()?;
        idx.iter()
            .map(|&i| {
                s.get(i)
                    .copied()
                    .ok_or_else(|| EngineError::Internal(format!("index {i} of {}", s.len())))
            })
            .collect::<Result<Vec<u64>>>()
            .map(Buf::Host)
    }

    fn index_scatter_add(&self, src: &Buf, idx: &[usize], n: usize) -> Result<Buf> {
        let mut out = alloc(n)?;
        for (v, &i) in src.host()?.iter().zip(idx) {
            let o = out
                .get_mut(i)
                .ok_or_else(|| EngineError::Internal(format!("index {i} of {n}")))?;
            *o = o.wrapping_add(*v);
        }
        Ok(Buf::Host(out))
    }

    fn sum_axis(&self, x: &Buf, outer: usize, len: usize, inner: usize) -> Result<Buf> {
        bounds::rows("sum over an axis", (outer, len, inner), x.len())?;
        Ok(Buf::Host(host::sum_axis(x.host()?, outer, len, inner)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Buf;

    fn words(seed: u8, n: usize) -> Buf {
        Buf::Host(crate::prg::Prg::new([seed; 16]).gen(n))
    }

    /// The CPU's fused products equal the trait's composed defaults (what
    /// the CUDA device runs), bit for bit, in both layouts, through the
    /// small-m and blocked paths and the transposed small-output conv.
    #[test]
    fn fused_products_equal_the_composed_defaults() {
        let dev = Cpu;
        for &(batch, m, k, n) in &[
            (1, 1, 37, 19),
            (3, 2, 5, 9),
            (2, 7, 300, 13),
            (1, 40, 20, 50),
        ] {
            for y_trans in [false, true] {
                let dims = MatDims {
                    batch,
                    m,
                    k,
                    n,
                    y_trans,
                };
                let (x0, x1) = (words(1, batch * m * k), words(2, batch * m * k));
                let (y0, y1) = (words(3, batch * k * n), words(4, batch * k * n));
                let mut fused = words(5, batch * m * n);
                let mut composed = fused.clone();
                dev.matmul_local((&x0, &x1), (&y0, &y1), dims, &mut fused)
                    .unwrap();
                crate::device::composed::matmul_local(
                    &dev,
                    (&x0, &x1),
                    (&y0, &y1),
                    dims,
                    &mut composed,
                )
                .unwrap();
                assert_eq!(
                    fused.to_vec().unwrap(),
                    composed.to_vec().unwrap(),
                    "{dims:?}"
                );
            }
        }
        // (n, c, hw, o, k, pad, groups): 1-4 output positions go transposed.
        for &(n, c, hw, o, k, pad, groups) in &[
            (1, 4, 6, 6, 3, 1, 1),
            (1, 8, 2, 6, 3, 1, 1),
            (2, 6, 3, 4, 3, 0, 2),
            (1, 5, 4, 7, 3, 0, 1),
            // Patch rows past one KC block of the packed layout.
            (1, 32, 5, 5, 3, 1, 1),
            (2, 30, 5, 4, 3, 1, 1),
            // Panels that are one run of an output row (16 wide).
            (1, 4, 16, 5, 3, 1, 1),
            // Groups on the packed path (each group's channels from c0).
            (2, 8, 9, 6, 3, 1, 2),
        ] {
            let g = Conv2dGeom {
                n,
                c,
                h: hw,
                w: hw,
                kh: k,
                kw: k,
                stride: (1, 1),
                padding: (pad, pad),
                dilation: (1, 1),
            };
            let wlen = o * (c / groups) * k * k;
            let (x0, x1) = (words(6, n * c * hw * hw), words(7, n * c * hw * hw));
            let (w0, w1) = (words(8, wlen), words(9, wlen));
            let fused = dev
                .conv_local((&x0, &x1), (&w0, &w1), &g, o, groups)
                .unwrap();
            let wsum = dev.map2(Op2::Add, &w0, &w1).unwrap();
            let composed = crate::device::composed::conv_terms(
                &dev,
                &[(&wsum, &x0), (&w0, &x1)],
                &g,
                o,
                groups,
            )
            .unwrap();
            assert_eq!(fused.to_vec().unwrap(), composed.to_vec().unwrap(), "{g:?}");
        }
    }

    #[test]
    fn and_over_spans_reads_in_place_what_the_default_gathers() {
        let cpu = Cpu;
        let bufs: Vec<Buf> = (0..6).map(|i| words(i as u8 + 1, 40)).collect();
        let x: Vec<Span> = vec![(&bufs[0], &bufs[1], 3, 5), (&bufs[2], &bufs[3], 30, 10)];
        let y: Vec<Span> = vec![(&bufs[4], &bufs[5], 0, 5), (&bufs[0], &bufs[3], 12, 10)];
        let got = cpu.and_local_spans(&x, &y, words(9, 15)).unwrap();
        let want = crate::device::and_local_gathered(&cpu, &x, &y, words(9, 15)).unwrap();
        assert_eq!(got.host().unwrap(), want.host().unwrap());
        // Spans that do not pair up are refused, not read past.
        let short: Vec<Span> = vec![(&bufs[4], &bufs[5], 0, 4), (&bufs[0], &bufs[3], 12, 10)];
        assert!(cpu.and_local_spans(&x, &short, words(9, 15)).is_err());
        assert!(cpu.and_local_spans(&x, &y, words(9, 14)).is_err());
    }

    #[test]
    fn gather_permutes() {
        // 2x3 -> transpose 3x2
        let x: Vec<u64> = (0..6).collect();
        let t = host::gather(&x, &[3, 2], 0, &[1, 3]).unwrap();
        assert_eq!(t, vec![0, 3, 1, 4, 2, 5]);
        let e = host::gather(&[7], &[2, 2], 0, &[0, 0]).unwrap();
        assert_eq!(e, vec![7; 4]);
        // A 3-d strided view with a step and an offset, against the definition.
        let x: Vec<u64> = (0..1000).collect();
        let (shape, st, off) = ([3usize, 4, 5], [200usize, 30, 2], 7usize);
        let g = host::gather(&x, &shape, off, &st).unwrap();
        let mut want = Vec::new();
        for i in 0..3 {
            for j in 0..4 {
                for k in 0..5 {
                    want.push(x[off + i * 200 + j * 30 + k * 2]);
                }
            }
        }
        assert_eq!(g, want);
        // Many short rows cross task boundaries.
        let big: Vec<u64> = (0..(40000 * 3) as u64).collect();
        let t = host::gather(&big, &[3, 40000], 0, &[1, 3]).unwrap();
        assert_eq!(t[40000], 1);
        assert_eq!(t[3 * 40000 - 1], big[3 * 39999 + 2]);
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> over the ring.
        let g = Conv2dGeom {
            n: 2,
            c: 3,
            h: 5,
            w: 4,
            kh: 3,
            kw: 2,
            stride: (2, 1),
            padding: (1, 1),
            dilation: (1, 2),
        };
        let x: Vec<u64> = (0..2 * 3 * 5 * 4).map(|i| (i * 7 + 3) as u64).collect();
        let cols = host::im2col(&x, &g, 0, 3).unwrap();
        let y: Vec<u64> = (0..cols.len()).map(|i| (i * 13 + 1) as u64).collect();
        let back = host::col2im(&y, &g).unwrap();
        let dot = |a: &[u64], b: &[u64]| {
            a.iter()
                .zip(b)
                .fold(0u64, |s, (p, q)| s.wrapping_add(p.wrapping_mul(*q)))
        };
        assert_eq!(dot(&cols, &y), dot(&x, &back));
    }

    #[test]
    fn im2col_matches_the_definition_on_many_geometries() {
        // Each entry against its definition: row (c, ky, kx), column
        // (img, oy, ox) holds x[img, c, oy s + ky d - p, ox s + kx d - p],
        // or 0 outside the image; strides, paddings past the kernel's
        // reach and dilations that leave whole rows empty included.
        for (w, kw, s, p, d) in [
            (7, 3, 1, 1, 1),
            (7, 3, 2, 0, 1),
            (5, 5, 1, 4, 1),
            (6, 2, 3, 2, 2),
            (4, 3, 1, 3, 2),
            (9, 11, 4, 9, 1),
            (1, 1, 1, 0, 1),
        ] {
            let g = Conv2dGeom {
                n: 2,
                c: 2,
                h: 3,
                w,
                kh: 2,
                kw,
                stride: (1, s),
                padding: (1, p),
                dilation: (1, d),
            };
            if !g.fits() {
                continue;
            }
            let x: Vec<u64> = (0..(2 * 2 * 3 * w) as u64).map(|i| i + 1).collect();
            let got = host::im2col(&x, &g, 0, 2).unwrap();
            let (oh, ow) = g.out_hw();
            let ncols = 2 * oh * ow;
            for r in 0..2 * 2 * kw {
                let (c, ky, kx) = (r / (2 * kw), (r / kw) % 2, r % kw);
                for col in 0..ncols {
                    let (img, oy, ox) = (col / (oh * ow), (col / ow) % oh, col % ow);
                    let iy = (oy + ky) as isize - 1;
                    let ix = (ox * s + kx * d) as isize - p as isize;
                    let want = if (0..3).contains(&iy) && (0..w as isize).contains(&ix) {
                        x[((img * 2 + c) * 3 + iy as usize) * w + ix as usize]
                    } else {
                        0
                    };
                    assert_eq!(got[r * ncols + col], want, "w{w} k{kw} s{s} p{p} d{d}");
                }
            }
        }
    }

    #[test]
    fn im2col_packed_is_im2col_in_the_gemm_layout() {
        // Strides, padding, dilation, two images and more patch rows than
        // one KC block (30 channels of 3x3).
        for (c, w, k, s, p, d) in [
            (2, 7, 3, 1, 1, 1),
            (30, 6, 3, 2, 1, 1),
            (3, 9, 5, 1, 4, 2),
            // 16-wide output rows: panels that are one run of a row.
            (2, 19, 3, 1, 1, 1),
        ] {
            let g = Conv2dGeom {
                n: 2,
                c,
                h: 5,
                w,
                kh: k,
                kw: k,
                stride: (s, s),
                padding: (p, p),
                dilation: (d, d),
            };
            if !g.fits() {
                continue;
            }
            let x: Vec<u64> = (0..(2 * c * 5 * w) as u64).map(|i| i * 7 + 1).collect();
            let (oh, ow) = g.out_hw();
            let (rows, ncols) = (c * k * k, 2 * oh * ow);
            let plain = host::im2col(&x, &g, 0, c).unwrap();
            let layout = gemm::PackedB::new(rows, ncols);
            let mut packed = vec![0u64; layout.term_len()];
            host::im2col_packed(&x, &g, 0, c, &layout, &mut packed);
            let mut want = vec![0u64; layout.term_len()];
            for r in 0..rows {
                for j in 0..ncols {
                    want[layout.index(r, j)] = plain[r * ncols + j];
                }
            }
            assert_eq!(packed, want, "{g:?}");
        }
    }

    #[test]
    fn im2col_identity_kernel() {
        let g = Conv2dGeom {
            n: 1,
            c: 1,
            h: 2,
            w: 2,
            kh: 1,
            kw: 1,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
        };
        assert_eq!(
            host::im2col(&[1, 2, 3, 4], &g, 0, 1).unwrap(),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn scatter_inverts_gather_and_sum_axis_sums_the_middle() {
        let x: Vec<u64> = (1..=12).collect();
        let mut big = vec![0u64; 35];
        host::scatter(&x, &mut big, &[3, 4], 7 + 2, &[7, 1]);
        assert_eq!(host::gather(&big, &[3, 4], 9, &[7, 1]).unwrap(), x);
        assert_eq!(big.iter().sum::<u64>(), x.iter().sum::<u64>());
        // 3-D with a strided last dim: element (i, j, k) lands at
        // 1 + 40 i + 9 j + 2 k, checked against that formula.
        let mut big = vec![0u64; 100];
        host::scatter(&x, &mut big, &[2, 3, 2], 1, &[40, 9, 2]);
        for (e, v) in x.iter().enumerate() {
            let (i, j, k) = (e / 6, (e / 2) % 3, e % 2);
            assert_eq!(big[1 + 40 * i + 9 * j + 2 * k], *v);
        }
        assert_eq!(big.iter().filter(|v| **v != 0).count(), 12);
        // Size-1 dims (any stride) and contiguous dims that merge: [2, 1, 3, 2]
        // with strides [6, 99, 2, 1] is 12 contiguous words; [12, 1] with
        // strides [2, 1] is every other word.
        let mut big = vec![0u64; 30];
        host::scatter(&x, &mut big, &[2, 1, 3, 2], 3, &[6, 99, 2, 1]);
        assert_eq!(&big[3..15], &x[..]);
        assert_eq!(
            host::gather(&big, &[2, 1, 3, 2], 3, &[6, 99, 2, 1]).unwrap(),
            x
        );
        let mut big = vec![0u64; 30];
        host::scatter(&x, &mut big, &[12, 1], 1, &[2, 1]);
        let odd: Vec<u64> = big.iter().skip(1).step_by(2).take(12).copied().collect();
        assert_eq!(odd, x);
        assert_eq!(host::gather(&big, &[12, 1], 1, &[2, 1]).unwrap(), x);
        // [2, 3, 2]: sums over the 3
        let y: Vec<u64> = (0..12).collect();
        assert_eq!(host::sum_axis(&y, 2, 3, 2).unwrap(), vec![6, 9, 24, 27]);
    }

    #[test]
    fn range_ops_and_bit_expansion() {
        let d = Cpu;
        let a = Buf::Host((0..10).collect());
        let b = Buf::Host((100..110).collect());
        let c = d.concat(&[(&a, 8, 2), (&b, 0, 3)]).unwrap();
        assert_eq!(c.to_vec().unwrap(), vec![8, 9, 100, 101, 102]);
        let mut e = a.clone();
        d.update(Some(Op2::Xor), &mut e, 1, &b, 2, 2).unwrap();
        d.update(None, &mut e, 5, &b, 0, 1).unwrap();
        assert_eq!(
            e.to_vec().unwrap(),
            vec![0, 1 ^ 102, 2 ^ 103, 3, 4, 100, 6, 7, 8, 9]
        );
        let plane = Buf::Host(vec![0b1011]);
        assert_eq!(
            d.expand_bits(&plane, 4, 2).unwrap().to_vec().unwrap(),
            vec![1, 1, 1, 1, 0, 0, 1, 1]
        );
        let g = d.index_gather(&b, &[3, 3, 0]).unwrap();
        assert_eq!(g.to_vec().unwrap(), vec![103, 103, 100]);
        let s = d.index_scatter_add(&g, &[1, 1, 0], 2).unwrap();
        assert_eq!(s.to_vec().unwrap(), vec![100, 206]);
        assert_eq!(
            d.map1(Op1::DivFloor(4), &Buf::Host(vec![(-5i64) as u64, 5]))
                .unwrap()
                .to_vec()
                .unwrap(),
            vec![(-2i64) as u64, 1]
        );
    }
}
