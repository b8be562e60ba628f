//! Validated non-linear ops of a session: comparisons by sign bit and bit
//! injection, ReLU, and the pooling windows the max tournament runs on.

use super::agree;
use super::{Session, Tensor};
use crate::error::{shape_err, Result};
use crate::protocol::local;
use crate::ring::{numel, shape, Window};

impl Session {
    // ----------------------------------------------------- comparisons

    /// msb(x) * v: the sign bit of x (1 where x < 0) injected into v, where
    /// v has shape x.shape + extra dims (the same bit for each trailing
    /// group), or v = None for the public fixed-point 1.0 (so the result is
    /// the 0/1 indicator x < 0). 10 rounds (binary.rs table).
    pub fn msb_inject(&self, x: &Tensor, v: Option<&Tensor>, op: &str) -> Result<Tensor> {
        self.check(x)?;
        let n = x.numel();
        let (reps, shape) = match v {
            Some(v) => {
                self.check(v)?;
                if v.shape.len() < x.shape.len() || v.shape[..x.shape.len()] != x.shape[..] {
                    return shape_err(format!(
                        "msb_inject: values {:?} must start with the shape {:?}",
                        v.shape, x.shape
                    ));
                }
                (numel(&v.shape[x.shape.len()..]), v.shape.clone())
            }
            None => (1, x.shape.clone()),
        };
        let one = 1u64 << self.frac_bits;
        let r = self.run(op, |p| {
            let xs = x.at(p.rank)?;
            let c = p.msb(xs)?;
            let pubv;
            let vs = match v {
                Some(v) => v.at(p.rank)?,
                None => {
                    pubv = local::public(&*p.dev, p.rank, &vec![one; n])?;
                    &pubv
                }
            };
            p.bit_inject(&c, vs, n, reps)
        })?;
        Ok(self.wrap(shape, r))
    }

    /// Full A2B, opened: the 64-bit words the binary sharing reconstructs to
    /// (for tests and inspection; 8 rounds for the conversion, 1 to open).
    pub fn a2b_reveal(&self, x: &Tensor) -> Result<Vec<u64>> {
        self.check(x)?;
        let all = self.run("a2b", |p| p.a2b_open(x.at(p.rank)?))?;
        agree(all, "parties opened different words")
    }

    /// max(x, 0) = x - msb(x) x. 10 rounds.
    pub fn relu(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        let r = self.run("relu", |p| {
            let xs = x.at(p.rank)?;
            let c = p.msb(xs)?;
            let m = p.bit_inject(&c, xs, xs.len(), 1)?;
            local::sub(&*p.dev, xs, &m)
        })?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    /// Pooling windows of an NCHW tensor: [N, C, OH, OW, kh * kw]. A padded
    /// position repeats the first in-bounds element of its window, so a max
    /// over the window ignores padding (PyTorch pads max pooling with -inf).
    pub fn pool_windows(&self, x: &Tensor, win: &Window) -> Result<Tensor> {
        self.check(x)?;
        let g = shape::pool_geom(&x.shape, win)?;
        let (oh, ow) = g.out_hw();
        let idx = shape::window_index(&g)?;
        self.local(x, vec![g.n, g.c, oh, ow, g.kh * g.kw], |d, _, s| {
            s.map(|v| d.index_gather(v, &idx))
        })
    }

    /// The adjoint of `pool_windows`: scatter-add window values back to the
    /// input positions they were taken from (max-pool backward).
    pub fn pool_scatter(&self, w: &Tensor, input_shape: &[usize], win: &Window) -> Result<Tensor> {
        self.check(w)?;
        let g = shape::pool_geom(input_shape, win)?;
        let (oh, ow) = g.out_hw();
        if w.shape != [g.n, g.c, oh, ow, g.kh * g.kw] {
            return shape_err(format!(
                "pool_scatter: windows {:?} do not match input {input_shape:?}",
                w.shape
            ));
        }
        let idx = shape::window_index(&g)?;
        let n = numel(input_shape);
        self.local(w, input_shape.to_vec(), |d, _, s| {
            s.map(|v| d.index_scatter_add(v, &idx, n))
        })
    }
}
