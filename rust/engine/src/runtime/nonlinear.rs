//! Validated non-linear ops of a session: comparisons by sign bit and bit
//! injection, ReLU, and the pooling windows the max tournament runs on.

use super::agree;
use super::history::Note;
use super::{Session, Tensor};
use crate::error::{invalid, shape_err, EngineError, Result};
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
        let note = Note::op("msb_inject").dims(&x.shape).dims(&shape);
        self.note(note.flag(v.is_some()).word(one));
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
        self.note(Note::op("a2b").dims(&x.shape));
        let all = self.run("a2b", |p| p.a2b_open(x.at(p.rank)?))?;
        agree(all, "parties opened different words")
    }

    /// max(x, 0) = x - msb(x) x. 10 rounds.
    pub fn relu(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        self.note(Note::op("relu").dims(&x.shape));
        let r = self.run("relu", |p| Ok(p.relu(x.at(p.rank)?, false)?.0))?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    /// ReLU and, for the backward pass, its derivative mask 1 - msb(x),
    /// injected in the same call: 10 rounds (binary.rs table), two ring
    /// elements per element in the injection instead of one.
    pub fn relu_with_mask(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.check(x)?;
        self.note(Note::op("relu_with_mask").dims(&x.shape));
        let r = self.run("relu", |p| {
            let (y, m) = p.relu(x.at(p.rank)?, true)?;
            let m = m.ok_or_else(|| EngineError::Internal("no ReLU mask".into()))?;
            Ok((y, m))
        })?;
        let (ys, ms): (Vec<_>, Vec<_>) = r.into_iter().unzip();
        Ok((
            self.wrap(x.shape.clone(), ys),
            self.wrap(x.shape.clone(), ms),
        ))
    }

    /// Maximum over the last dim by a tournament (protocol/nonlinear.rs),
    /// labelled `op`: the values (the last dim removed) and, with
    /// `want_arg`, the one-hot argmax (the input's shape).
    pub fn tournament(
        &self,
        x: &Tensor,
        want_arg: bool,
        op: &str,
    ) -> Result<(Tensor, Option<Tensor>)> {
        self.check(x)?;
        let Some((&k, outer)) = x.shape.split_last() else {
            return shape_err("max of a 0-d tensor over a dim");
        };
        if k == 0 {
            return invalid("max of an empty dimension");
        }
        let rows = numel(outer);
        self.note(Note::op("tournament").dims(&x.shape).flag(want_arg));
        let r = self.run(op, |p| p.tournament(x.at(p.rank)?, rows, k, want_arg))?;
        let (vs, ohs): (Vec<_>, Vec<_>) = r.into_iter().unzip();
        let values = self.wrap(outer.to_vec(), vs);
        let arg = if want_arg {
            let ohs = ohs
                .into_iter()
                .map(|o| o.ok_or_else(|| EngineError::Internal("no argmax".into())))
                .collect::<Result<Vec<_>>>()?;
            Some(self.wrap(x.shape.clone(), ohs))
        } else {
            None
        };
        Ok((values, arg))
    }

    /// A joint random integer below 3 `bound`: each party shares a draw of
    /// its own OS randomness below `bound` (labelled "share": 3 rounds, one
    /// element from each party to each other), the sum is opened
    /// ("reveal"). No party chooses it; all parties learn it.
    pub fn coin(&self, bound: u64) -> Result<u64> {
        if bound == 0 || bound > 1 << 62 {
            return invalid(format!("coin bound must be in 1..=2^62, got {bound}"));
        }
        self.note(Note::op("coin").word(bound));
        let shares = self.run("share", |p| {
            let mut b = [0u8; 8];
            getrandom::getrandom(&mut b)
                .map_err(|e| EngineError::Unavailable(format!("OS randomness: {e}")))?;
            p.coin_share(u64::from_le_bytes(b) % bound)
        })?;
        let t = self.wrap(vec![1], shares);
        let v = self.reveal_ring(&t)?;
        v.first()
            .copied()
            .ok_or_else(|| EngineError::Internal("empty coin".into()))
    }

    /// Pooling windows of an NCHW tensor: [N, C, OH, OW, kh * kw]. A padded
    /// position repeats the first in-bounds element of its window, so a max
    /// over the window ignores padding (PyTorch pads max pooling with -inf).
    pub fn pool_windows(&self, x: &Tensor, win: &Window) -> Result<Tensor> {
        self.check(x)?;
        let g = shape::pool_geom(&x.shape, win)?;
        let (oh, ow) = g.out_hw();
        let idx = shape::window_index(&g)?;
        self.note(Note::op("pool_windows").dims(&x.shape).win(win));
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
        self.note(Note::op("pool_scatter").dims(input_shape).win(win));
        self.local(w, input_shape.to_vec(), |d, _, s| {
            s.map(|v| d.index_scatter_add(v, &idx, n))
        })
    }
}
