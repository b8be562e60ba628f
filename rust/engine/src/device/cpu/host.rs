//! The CPU device's data movement on host slices: im2col/col2im, window
//! sums, strided gather/scatter and axis sums (the CUDA device's fallbacks
//! and the tests' references use them too).

use super::alloc;
use super::gemm::{PackedB, KC_DEPTH};
use crate::error::Result;
use crate::ring::numel;
use crate::ring::Conv2dGeom;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// The same strided view with fewer dims: size-1 dims dropped and each dim
/// merged into the one before it where they are contiguous, so rows are as
/// long as the view allows (a [n, 1] column becomes one strided row).
fn simplify(shape: &[usize], st: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut sh: Vec<usize> = Vec::with_capacity(shape.len());
    let mut ss: Vec<usize> = Vec::with_capacity(shape.len());
    for (&n, &s) in shape.iter().zip(st) {
        if n == 1 {
            continue;
        }
        match (sh.last_mut(), ss.last_mut()) {
            (Some(pn), Some(ps)) if *ps == n * s => {
                *pn *= n;
                *ps = s;
            }
            _ => {
                sh.push(n);
                ss.push(s);
            }
        }
    }
    (sh, ss)
}

/// One step of the row odometer of `gather` and `scatter`: the next index
/// over the outer dims `outer` (strides `st`), and the row's base offset.
#[inline]
fn next_row(idx: &mut [usize], base: &mut usize, outer: &[usize], st: &[usize]) {
    for d in (0..outer.len()).rev() {
        idx[d] += 1;
        *base += st[d];
        if idx[d] < outer[d] {
            return;
        }
        *base -= st[d] * outer[d];
        idx[d] = 0;
    }
}

/// The inverse placement of `gather` (no accumulation).
pub fn scatter(src: &[u64], dst: &mut [u64], shape: &[usize], offset: usize, st: &[usize]) {
    let n = numel(shape);
    if n == 0 {
        return;
    }
    let (shape, st) = simplify(shape, st);
    let nd = shape.len();
    if nd == 0 {
        dst[offset] = src[0];
        return;
    }
    // Whole rows of the last dim at a time (one copy when they are
    // contiguous in dst); an odometer over the outer dims moves the row's
    // base by one stride per row.
    let (inner, inner_st) = (shape[nd - 1], st[nd - 1]);
    let outer = &shape[..nd - 1];
    let mut idx = vec![0usize; outer.len()];
    let mut base = offset;
    for row in src[..n].chunks(inner) {
        if inner_st == 1 {
            dst[base..base + inner].copy_from_slice(row);
        } else {
            for (j, v) in row.iter().enumerate() {
                dst[base + j * inner_st] = *v;
            }
        }
        next_row(&mut idx, &mut base, outer, &st);
    }
}

/// Sums over the middle axis of [outer, len, inner].
pub fn sum_axis(x: &[u64], outer: usize, len: usize, inner: usize) -> Result<Vec<u64>> {
    let mut out = alloc(outer * inner)?;
    if inner == 0 {
        return Ok(out);
    }
    let x = &x[..outer * len * inner];
    let one = |o: usize, row: &mut [u64]| {
        let block = &x[o * len * inner..(o + 1) * len * inner];
        if inner == 1 {
            // The sum of a contiguous run (a softmax or LayerNorm row).
            row[0] = block.iter().fold(0u64, |a, v| a.wrapping_add(*v));
            return;
        }
        for src in block.chunks_exact(inner) {
            for (d, s) in row.iter_mut().zip(src) {
                *d = d.wrapping_add(*s);
            }
        }
    };
    // Below about 2^16 words the sum takes microseconds, less than handing
    // rows to the thread pool (these run on the parties' own threads).
    if x.len() < PAR_WORDS || !pool_here() {
        out.chunks_mut(inner)
            .enumerate()
            .for_each(|(o, r)| one(o, r));
    } else {
        let rows = (PAR_WORDS / (len * inner).max(1)).max(1);
        out.par_chunks_mut(rows * inner)
            .enumerate()
            .for_each(|(t, rs)| {
                for (i, r) in rs.chunks_mut(inner).enumerate() {
                    one(t * rows + i, r);
                }
            });
    }
    Ok(out)
}

/// Work below which the data movement here stays on the calling thread.
const PAR_WORDS: usize = 1 << 16;

/// The process whose threads make up rayon's pool (0: none started yet).
static POOL_PID: AtomicU32 = AtomicU32::new(0);

/// Whether work may go to rayon's pool in this process. A child forked
/// after the pool started has its queues but not its threads: work handed
/// there would wait for ever, so such a child computes on its own thread.
pub(super) fn pool_here() -> bool {
    let me = std::process::id();
    match POOL_PID.compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => true,
        Err(started) => started == me,
    }
}

/// `f(i, chunk)` over the `size`-long chunks of `out`, on the thread pool
/// when `par`, else on this thread. In the local runtime this thread is a
/// party's: three parties already share the cores, and handing small work
/// to the pool and waiting for it costs more than the work.
pub(super) fn chunks_each<T: Send>(
    par: bool,
    out: &mut [T],
    size: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if par && pool_here() {
        out.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        out.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    }
}

pub fn im2col(x: &[u64], g: &Conv2dGeom, c0: usize, cg: usize) -> Result<Vec<u64>> {
    let (oh, ow) = g.out_hw();
    let ncols = g.n * oh * ow;
    let rows = cg * g.kh * g.kw;
    let mut out = alloc(rows * ncols)?;
    if out.is_empty() {
        return Ok(out);
    }
    let par = out.len() >= PAR_WORDS;
    chunks_each(par, &mut out, ncols, |r, row| {
        let c = c0 + r / (g.kh * g.kw);
        let ky = (r / g.kw) % g.kh;
        let kx = r % g.kw;
        for img in 0..g.n {
            let plane = &x[(img * g.c + c) * g.h * g.w..(img * g.c + c + 1) * g.h * g.w];
            for oy in 0..oh {
                let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                let dst = &mut row[(img * oh + oy) * ow..(img * oh + oy + 1) * ow];
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                // The output columns whose input column is inside the row
                // form one range [lo, hi) (the rest stay zero: padding).
                let (lo, hi) = valid_cols(g.w, ow, g.stride.1, kx * g.dilation.1, g.padding.1);
                if lo >= hi {
                    continue;
                }
                let first = (lo * g.stride.1 + kx * g.dilation.1).saturating_sub(g.padding.1);
                if g.stride.1 == 1 {
                    dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                } else {
                    let cols = src[first..].iter().step_by(g.stride.1);
                    for (d, v) in dst[lo..hi].iter_mut().zip(cols) {
                        *d = *v;
                    }
                }
            }
        }
    });
    Ok(out)
}

/// im2col written straight into the packed-B layout of the ring GEMM
/// (`PackedB` over rows cg kh kw and columns n oh ow), one term: `dst` is
/// `layout.term_len()` words, each written. Saves the GEMM's pass over B, which
/// re-read and re-wrote the whole patch matrix (12-18% of a 64-channel
/// 3x3 convolution). One task per KC-deep block of rows.
pub fn im2col_packed(
    x: &[u64],
    g: &Conv2dGeom,
    c0: usize,
    cg: usize,
    layout: &PackedB,
    dst: &mut [u64],
) {
    let (oh, ow) = g.out_hw();
    let rows = cg * g.kh * g.kw;
    let kcd = KC_DEPTH;
    let blocks: Vec<(usize, &mut [u64])> = {
        let mut v = Vec::new();
        let mut rest = &mut dst[..layout.term_len()];
        for k0 in (0..rows).step_by(kcd) {
            let len = layout.block_len((rows - k0).min(kcd));
            let (head, tail) = rest.split_at_mut(len);
            v.push((k0, head));
            rest = tail;
        }
        v
    };
    let ncols = g.n * oh * ow;
    let nr = layout.nr;
    // Every word in the order the layout stores it (panel, row, column of
    // the panel), so the writes stream; the reads gather from the input
    // image, which stays in cache. Writing row by row instead scattered
    // each row over every panel and cost more than the copy it replaced.
    let one = |(k0, blk): (usize, &mut [u64])| {
        let kc = (rows - k0).min(kcd);
        // (image plane offset, oy s - p, ox s - p) of each column of a
        // panel; None past the last column.
        let mut cols = vec![None; nr];
        for (p, pan) in blk.chunks_mut(kc * nr).enumerate() {
            for (jj, col) in cols.iter_mut().enumerate() {
                let j = p * nr + jj;
                *col = (j < ncols).then(|| {
                    let (img, q) = (j / (oh * ow), j % (oh * ow));
                    let (oy, ox) = (q / ow, q % ow);
                    (
                        img * g.c,
                        (oy * g.stride.0) as isize - g.padding.0 as isize,
                        (ox * g.stride.1) as isize - g.padding.1 as isize,
                    )
                });
            }
            // The panel's columns are one run of an output row (stride 1):
            // a line inside the image is then one copy.
            let run = match (cols[0], cols[nr - 1]) {
                (Some((p0, y0, x0)), Some((p1, y1, x1))) => {
                    g.stride.1 == 1 && p0 == p1 && y0 == y1 && x1 - x0 == nr as isize - 1
                }
                _ => false,
            };
            for (kk, line) in pan.chunks_mut(nr).enumerate() {
                let r = k0 + kk;
                let c = c0 + r / (g.kh * g.kw);
                let dy = (((r / g.kw) % g.kh) * g.dilation.0) as isize;
                let dx = ((r % g.kw) * g.dilation.1) as isize;
                if let (true, Some((plane, y0, x0))) = (run, cols[0]) {
                    let (iy, ix) = (y0 + dy, x0 + dx);
                    if iy >= 0 && iy < g.h as isize && ix >= 0 && ix as usize + nr <= g.w {
                        let at = ((plane + c) * g.h + iy as usize) * g.w + ix as usize;
                        line.copy_from_slice(&x[at..at + nr]);
                        continue;
                    }
                }
                for (o, col) in line.iter_mut().zip(&cols) {
                    *o = match *col {
                        Some((plane, y0, x0)) => {
                            let (iy, ix) = (y0 + dy, x0 + dx);
                            if iy >= 0 && iy < g.h as isize && ix >= 0 && ix < g.w as isize {
                                x[((plane + c) * g.h + iy as usize) * g.w + ix as usize]
                            } else {
                                0
                            }
                        }
                        None => 0,
                    };
                }
            }
        }
    };
    if layout.term_len() >= PAR_WORDS && pool_here() {
        blocks.into_par_iter().for_each(one);
    } else {
        blocks.into_iter().for_each(one);
    }
}

/// [lo, hi): the output columns ox < ow whose input column
/// ox * stride + off - pad lies in [0, w).
fn valid_cols(w: usize, ow: usize, stride: usize, off: usize, pad: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(off).div_ceil(stride).min(ow);
    let hi = if w + pad > off {
        (w + pad - off).div_ceil(stride).min(ow)
    } else {
        0
    };
    (lo, hi.max(lo))
}

pub fn col2im(cols: &[u64], g: &Conv2dGeom) -> Result<Vec<u64>> {
    let (oh, ow) = g.out_hw();
    let ncols = g.n * oh * ow;
    let mut out = alloc(g.n * g.c * g.h * g.w)?;
    if out.is_empty() || ncols == 0 {
        return Ok(out);
    }
    // One task per (image, channel) plane: its rows are disjoint.
    let par = cols.len() >= PAR_WORDS;
    chunks_each(par, &mut out, g.h * g.w, |p, plane| {
        let (img, c) = (p / g.c, p % g.c);
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &cols[((c * g.kh + ky) * g.kw + kx) * ncols..][..ncols];
                for oy in 0..oh {
                    let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    for ox in 0..ow {
                        let ix =
                            (ox * g.stride.1 + kx * g.dilation.1) as isize - g.padding.1 as isize;
                        if ix >= 0 && ix < g.w as isize {
                            let d = &mut plane[iy as usize * g.w + ix as usize];
                            *d = d.wrapping_add(row[(img * oh + oy) * ow + ox]);
                        }
                    }
                }
            }
        }
    });
    Ok(out)
}

pub fn window_sum(x: &[u64], g: &Conv2dGeom) -> Result<Vec<u64>> {
    let (oh, ow) = g.out_hw();
    let mut out = alloc(g.n * g.c * oh * ow)?;
    let par = x.len() >= PAR_WORDS;
    chunks_each(par, &mut out, (oh * ow).max(1), |p, o| {
        let plane = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = 0u64;
                for ky in 0..g.kh {
                    let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    for kx in 0..g.kw {
                        let ix =
                            (ox * g.stride.1 + kx * g.dilation.1) as isize - g.padding.1 as isize;
                        if ix >= 0 && ix < g.w as isize {
                            s = s.wrapping_add(plane[iy as usize * g.w + ix as usize]);
                        }
                    }
                }
                o[oy * ow + ox] = s;
            }
        }
    });
    Ok(out)
}

pub fn gather(src: &[u64], shape: &[usize], offset: usize, st: &[usize]) -> Result<Vec<u64>> {
    let n = numel(shape);
    if n == 0 {
        return Ok(Vec::new());
    }
    let (shape, st) = simplify(shape, st);
    let (shape, st) = (&shape[..], &st[..]);
    let nd = shape.len();
    if nd == 0 {
        return Ok(vec![src[offset]]);
    }
    let inner = shape[nd - 1];
    let inner_st = st[nd - 1];
    let outer = &shape[..nd - 1];
    let mut out = alloc(n)?;
    // Tasks of whole rows; inside a task an odometer over the outer dims
    // moves the base offset by one stride per row (no div/mod per row).
    let rows_per_task = (1 << 14) / inner.max(1) + 1;
    let task = |(t, o): (usize, &mut [u64])| {
        let mut idx = vec![0usize; outer.len()];
        let mut rem = t * rows_per_task;
        for d in (0..outer.len()).rev() {
            idx[d] = rem % outer[d];
            rem /= outer[d];
        }
        let mut base = offset + idx.iter().zip(st).map(|(i, s)| i * s).sum::<usize>();
        for row in o.chunks_mut(inner) {
            match inner_st {
                1 => row.copy_from_slice(&src[base..base + inner]),
                // A broadcast (expand) of one value along the row.
                0 => row.fill(src[base]),
                _ => {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = src[base + j * inner_st];
                    }
                }
            }
            next_row(&mut idx, &mut base, outer, st);
        }
    };
    chunks_each(n >= PAR_WORDS, &mut out, rows_per_task * inner, |t, o| {
        task((t, o))
    });
    Ok(out)
}
