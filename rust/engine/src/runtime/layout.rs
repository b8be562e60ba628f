//! Validated layout ops of a session: strided views, reshape, concatenation,
//! padding, reductions over dims, and im2col/col2im. All are local (no
//! messages): each party moves its own shares on its own device.

use super::history::Note;
use super::{Session, Tensor};
use crate::device::{Buf, Device};
use crate::error::{invalid, shape_err, EngineError, Result};
use crate::protocol::AShare;
use crate::ring::shape::view_fits;
use crate::ring::{self, numel, shape, Window};

impl Session {
    /// im2col over all channels (groups = 1): [C*kh*kw, N*OH*OW], local.
    pub fn im2col(&self, x: &Tensor, win: &Window) -> Result<Tensor> {
        self.check(x)?;
        let ws = [
            1,
            x.shape.get(1).copied().unwrap_or(0),
            win.kernel.0,
            win.kernel.1,
        ];
        let (g, _) = shape::conv_geom(&x.shape, &ws, win.stride, win.padding, win.dilation, 1)?;
        let (oh, ow) = g.out_hw();
        self.note(Note::op("im2col").dims(&x.shape).win(win));
        self.local(x, vec![g.c * g.kh * g.kw, g.n * oh * ow], |d, _, s| {
            s.map(|v| d.im2col(v, &g, 0, g.c))
        })
    }

    /// col2im, the adjoint of `im2col`, back to `input_shape` (NCHW), local.
    pub fn col2im(&self, cols: &Tensor, input_shape: &[usize], win: &Window) -> Result<Tensor> {
        self.check(cols)?;
        if input_shape.len() != 4 {
            return shape_err(format!("col2im needs an NCHW shape, got {input_shape:?}"));
        }
        let ws = [1, input_shape[1], win.kernel.0, win.kernel.1];
        let (g, _) = shape::conv_geom(input_shape, &ws, win.stride, win.padding, win.dilation, 1)?;
        let (oh, ow) = g.out_hw();
        if cols.shape != [g.c * g.kh * g.kw, g.n * oh * ow] {
            return shape_err(format!(
                "col2im: columns {:?} do not match input {input_shape:?}",
                cols.shape
            ));
        }
        self.note(Note::op("col2im").dims(input_shape).win(win));
        self.local(cols, input_shape.to_vec(), |d, _, s| {
            s.map(|v| d.col2im(v, &g))
        })
    }

    // ---------------------------------------------------------- shape ops

    /// A strided view materialised: out[idx] = x[offset + sum idx_d st_d].
    pub fn gather(
        &self,
        x: &Tensor,
        shape: Vec<usize>,
        offset: usize,
        st: &[usize],
    ) -> Result<Tensor> {
        self.check(x)?;
        view_fits(&shape, offset, st, x.numel())?;
        let note = Note::op("gather").dims(&x.shape).dims(&shape);
        self.note(note.word(offset as u64).dims(st));
        self.local(x, shape.clone(), |d, _, s| {
            s.map(|v| d.gather(v, &shape, offset, st))
        })
    }

    /// The adjoint of `gather` for a view that does not overlap itself
    /// (indexing with ints and positive-step slices): x placed at the view
    /// of a zero tensor of shape `out_shape` (backward of indexing).
    pub fn scatter(
        &self,
        x: &Tensor,
        out_shape: Vec<usize>,
        offset: usize,
        st: &[usize],
    ) -> Result<Tensor> {
        self.check(x)?;
        let view = x.shape.clone();
        let n = numel(&out_shape);
        view_fits(&view, offset, st, n)?;
        // (an empty view places nothing: a 0-size tensor's strides may be 0)
        if !view.contains(&0) && view.iter().zip(st).any(|(&s, &t)| s > 1 && t == 0) {
            return invalid("scatter: a view with stride 0 overlaps itself");
        }
        let note = Note::op("scatter").dims(&view).dims(&out_shape);
        self.note(note.word(offset as u64).dims(st));
        self.local(x, out_shape, |d, _, s| {
            s.map(|v| {
                let mut out = d.zeros(n)?;
                d.scatter(v, &mut out, &view, offset, st)?;
                Ok(out)
            })
        })
    }

    /// out (of `shape`) [j] = x.flat[idx[j]]: indexing by public positions
    /// (integer arrays, boolean masks), local on every party.
    pub fn take(&self, x: &Tensor, idx: &[usize], shape: Vec<usize>) -> Result<Tensor> {
        self.check(x)?;
        if numel(&shape) != idx.len() {
            return shape_err(format!(
                "take: {} positions for an output of shape {shape:?}",
                idx.len()
            ));
        }
        let n = x.numel();
        if let Some(bad) = idx.iter().find(|&&i| i >= n) {
            return invalid(format!(
                "position {bad} is out of range for a tensor of {n} elements"
            ));
        }
        self.note(Note::op("take").dims(&x.shape).dims(&shape).positions(idx));
        self.local(x, shape, |d, _, s| s.map(|v| d.index_gather(v, idx)))
    }

    /// The adjoint of `take`: a zero tensor of `out_shape` with x.flat[j]
    /// added at position idx[j] (repeated positions sum).
    pub fn put_add(&self, x: &Tensor, idx: &[usize], out_shape: Vec<usize>) -> Result<Tensor> {
        self.check(x)?;
        if x.numel() != idx.len() {
            return shape_err(format!(
                "put_add: {} positions for {} values",
                idx.len(),
                x.numel()
            ));
        }
        let n = numel(&out_shape);
        if let Some(bad) = idx.iter().find(|&&i| i >= n) {
            return invalid(format!(
                "position {bad} is out of range for a tensor of {n} elements"
            ));
        }
        let note = Note::op("put_add").dims(&x.shape).dims(&out_shape);
        self.note(note.positions(idx));
        self.local(x, out_shape, |d, _, s| {
            s.map(|v| d.index_scatter_add(v, idx, n))
        })
    }

    pub fn reshape(&self, x: &Tensor, shape: Vec<usize>) -> Result<Tensor> {
        self.check(x)?;
        if numel(&shape) != x.numel() {
            return shape_err(format!("cannot reshape {:?} into {shape:?}", x.shape));
        }
        self.note(Note::op("reshape").dims(&x.shape).dims(&shape));
        Ok(Tensor {
            session: x.session,
            shape,
            shares: x.shares.clone(),
        })
    }

    /// Concatenate along `dim`; all other dims must agree.
    pub fn cat(&self, xs: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = xs
            .first()
            .ok_or_else(|| EngineError::Invalid("cat of an empty list".into()))?;
        let r = first.shape.len();
        if dim >= r {
            return shape_err(format!("cat: dim {dim} out of range for rank {r}"));
        }
        for t in xs {
            self.check(t)?;
            if t.shape.len() != r
                || t.shape
                    .iter()
                    .enumerate()
                    .any(|(d, &s)| d != dim && s != first.shape[d])
            {
                return shape_err(format!(
                    "cat: shapes {:?} and {:?} differ outside dim {dim}",
                    first.shape, t.shape
                ));
            }
        }
        let note = xs.iter().fold(Note::op("cat"), |n, t| n.dims(&t.shape));
        self.note(note.word(xs.len() as u64).word(dim as u64));
        let outer = numel(&first.shape[..dim]);
        let mut shape = first.shape.clone();
        shape[dim] = xs.iter().map(|t| t.shape[dim]).sum();
        let total_inner = numel(&shape[dim..]);
        let s = self
            .ranks
            .iter()
            .map(|&i| {
                let d = self.dev(i)?;
                let mut out = AShare {
                    a: d.zeros(numel(&shape))?,
                    b: d.zeros(numel(&shape))?,
                };
                // Each input fills a [outer, inner_t] view of the output.
                let mut off = 0;
                for t in xs {
                    let inner = numel(&t.shape[dim..]);
                    let src = t.at(i)?;
                    for (dst, sv) in [(&mut out.a, &src.a), (&mut out.b, &src.b)] {
                        d.scatter(sv, dst, &[outer, inner], off, &[total_inner, 1])?;
                    }
                    off += inner;
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.wrap(shape, s))
    }

    /// Zero padding: `pads[d] = (before, after)` for every dim.
    pub fn pad(&self, x: &Tensor, pads: &[(usize, usize)]) -> Result<Tensor> {
        self.check(x)?;
        if pads.len() != x.shape.len() {
            return shape_err("pad: one (before, after) pair per dim");
        }
        let shape: Vec<usize> = x
            .shape
            .iter()
            .zip(pads)
            .map(|(s, (a, b))| s + a + b)
            .collect();
        let os = ring::strides(&shape);
        let offset: usize = pads.iter().zip(&os).map(|((a, _), st)| a * st).sum();
        let total = numel(&shape);
        let xshape = x.shape.clone();
        let note = pads
            .iter()
            .fold(Note::op("pad").dims(&xshape), |n, &p| n.pair(p));
        self.note(note);
        self.local(x, shape, |d, _, s| {
            s.map(|v| {
                let mut out = d.zeros(total)?;
                d.scatter(v, &mut out, &xshape, offset, &os)?;
                Ok(out)
            })
        })
    }

    /// Sum over the given dims (removed from the shape unless `keepdim`).
    pub fn sum(&self, x: &Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.check(x)?;
        let r = x.shape.len();
        if dims.iter().any(|&d| d >= r) {
            return shape_err(format!(
                "sum: dims {dims:?} out of range for shape {:?}",
                x.shape
            ));
        }
        self.note(Note::op("sum").dims(&x.shape).dims(dims).flag(keepdim));
        let kept: Vec<usize> = x
            .shape
            .iter()
            .enumerate()
            .map(|(d, &s)| if dims.contains(&d) { 1 } else { s })
            .collect();
        // Runs of adjacent reduced dims, summed from the last run to the
        // first, each as the middle axis of an [outer, len, inner] view (no
        // data movement): a reduced dim becomes 1 and the others keep place.
        let mut ds: Vec<usize> = dims.to_vec();
        ds.sort_unstable();
        ds.dedup();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &d in &ds {
            match runs.last_mut() {
                Some((_, end)) if *end == d => *end = d + 1,
                _ => runs.push((d, d + 1)),
            }
        }
        let red = |dev: &dyn Device, v: &Buf| -> Result<Buf> {
            let mut cur = x.shape.clone();
            let mut out: Option<Buf> = None;
            for &(d0, d1) in runs.iter().rev() {
                let (outer, len, inner) =
                    (numel(&cur[..d0]), numel(&cur[d0..d1]), numel(&cur[d1..]));
                out = Some(dev.sum_axis(out.as_ref().unwrap_or(v), outer, len, inner)?);
                cur[d0..d1].iter_mut().for_each(|c| *c = 1);
            }
            Ok(out.unwrap_or_else(|| v.clone()))
        };
        let shape = if keepdim {
            kept.clone()
        } else {
            x.shape
                .iter()
                .enumerate()
                .filter(|(d, _)| !dims.contains(d))
                .map(|(_, &s)| s)
                .collect()
        };
        self.local(x, shape, |d, _, s| s.map(|v| red(d, v)))
    }
}
