//! Validated arithmetic ops of a session: sharing and opening, the linear
//! ops, products, convolution and average pooling. Each checks its public
//! arguments before any party starts, then runs one protocol on every
//! hosted party.

use super::agree;
use super::factor::{extra_bits, mixed_extra};
use super::history::Note;
use super::{Session, Tensor};
use crate::device::MatDims;
use crate::error::{invalid, shape_err, EngineError, Result};
use crate::protocol::{local, ConvWeight};
use crate::ring::{self, numel, shape, Window};

impl Session {
    // ---------------------------------------------------------------- I/O

    /// Share `values` from party `src`. Only src's values are read: a party
    /// of a multi-process session that is not src passes a placeholder of
    /// the right length (CrypTen's tutorials pass `torch.empty`), which is
    /// never encoded. The process hosting src encodes its values before the
    /// operation begins, in every runtime: a bad value (NaN, beyond the
    /// range) is an EncodingError before anything is sent, any shared
    /// randomness drawn or the session marked broken, so the owner may catch
    /// it and share clean data while the others wait for the share. Until
    /// 2026-12-07 a src party of a multi-process session encoded inside the
    /// operation, and a caught EncodingError left every party's session
    /// broken (a user probe). An owner that does not catch it ends its
    /// program, which tells its neighbours (spmd.run and the launcher abort
    /// a party's session when its function raises).
    pub fn share_f64(&self, values: &[f64], shape: Vec<usize>, src: usize) -> Result<Tensor> {
        let words = if self.ranks.contains(&src) {
            ring::encode(values, self.frac_bits)?
        } else {
            vec![0; values.len()] // a placeholder's values are never read
        };
        self.share_ring(words, shape, src)
    }

    /// Share ring elements from party `src` (only src's are read).
    pub fn share_ring(&self, values: Vec<u64>, shape: Vec<usize>, src: usize) -> Result<Tensor> {
        check_share(values.len(), &shape, src)?;
        self.note(Note::op("share").dims(&shape).word(src as u64));
        let n = values.len();
        let vals = &values;
        let what = format!("shape {shape:?}");
        let r = self.run("share", |p| {
            p.comm.salt(&what);
            p.share(src, if p.rank == src { Some(vals) } else { None }, n)
        })?;
        Ok(self.wrap(shape, r))
    }

    /// Reveal to all parties; returns the ring values (all three agree).
    /// The shape is mixed into the step tag (as `share` does): a party that
    /// skipped a reveal (or a barrier) on its own and then revealed a value
    /// of another shape combined unrelated shares into garbage, silently (a
    /// user probe); it is now out of step at the first message.
    pub fn reveal_ring(&self, t: &Tensor) -> Result<Vec<u64>> {
        self.check(t)?;
        self.note(Note::op("reveal").dims(&t.shape));
        let what = format!("shape {:?}", t.shape);
        let all = self.run("reveal", |p| {
            p.comm.salt(&what);
            p.reveal(t.at(p.rank)?)
        })?;
        agree(all, "parties revealed different values")
    }

    pub fn reveal_f64(&self, t: &Tensor) -> Result<Vec<f64>> {
        Ok(ring::decode(&self.reveal_ring(t)?, self.frac_bits))
    }

    /// Reveal to party `to` only; returns what that party decodes.
    /// Reveal to party `to` only: Some(values) where this process hosts it.
    pub fn reveal_to_f64(&self, t: &Tensor, to: usize) -> Result<Option<Vec<f64>>> {
        self.check(t)?;
        if to > 2 {
            return invalid(format!("dst must be 0, 1 or 2, got {to}"));
        }
        self.note(Note::op("reveal_to").dims(&t.shape).word(to as u64));
        let what = format!("shape {:?} to party {to}", t.shape);
        let r = self.run("reveal", |p| {
            p.comm.salt(&what);
            p.reveal_to(t.at(p.rank)?, to)
        })?;
        match r.into_iter().flatten().next() {
            Some(x) => Ok(Some(ring::decode(&x, self.frac_bits))),
            // This process does not host the target party.
            None if !self.ranks.contains(&to) => Ok(None),
            None => Err(EngineError::Internal("target party got nothing".into())),
        }
    }

    pub fn add(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.same_shape(x, y, "add")?;
        self.note(Note::op("add").dims(&x.shape));
        self.local2(x, y, local::add)
    }

    pub fn sub(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.same_shape(x, y, "sub")?;
        self.note(Note::op("sub").dims(&x.shape));
        self.local2(x, y, local::sub)
    }

    pub fn neg(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        self.note(Note::op("neg").dims(&x.shape));
        self.local(x, x.shape.clone(), |d, _, s| local::neg(d, s))
    }

    /// x + p for a public fixed-point tensor p of the same shape.
    pub fn add_public(&self, x: &Tensor, p: &[f64]) -> Result<Tensor> {
        self.check(x)?;
        self.public_len(x, p)?;
        let e = ring::encode(p, self.frac_bits)?;
        self.note(Note::op("add_public").dims(&x.shape).words(&e));
        if e.len() != x.numel() {
            // One value for all: added in place, no public vector.
            let c = e[0];
            return self.local(x, x.shape.clone(), |d, i, s| local::add_scalar(d, i, s, c));
        }
        self.local(x, x.shape.clone(), |d, i, s| {
            local::add_public(d, i, s, &d.upload(e.clone())?)
        })
    }

    /// x * p for public integers p (no truncation, no messages).
    pub fn mul_public_int(&self, x: &Tensor, p: &[i64]) -> Result<Tensor> {
        self.check(x)?;
        self.public_len(x, p)?;
        let mut e: Vec<u64> = p.iter().map(|&v| v as u64).collect();
        self.note(Note::op("mul_public_int").dims(&x.shape).words(&e));
        if e.len() != x.numel() {
            e = vec![e[0]; x.numel()]; // one value for all
        }
        self.local(x, x.shape.clone(), |d, _, s| {
            local::mul_public(d, s, &d.upload(e.clone())?)
        })
    }

    /// x * p for a public fixed-point tensor: local product, then truncation.
    /// Factors below 1/4 in magnitude are encoded with `extra_bits` more
    /// fractional bits, so a learning rate of 1e-5 keeps 15 significant
    /// bits instead of 16 bits after the point (0.66 of a unit at f = 16: a
    /// step 57% too long), and truncated by the exact protocol always. A
    /// factor whose entries need different extra bits goes in two steps
    /// (`factor`: two truncations, 4 rounds).
    pub fn mul_public(&self, x: &Tensor, p: &[f64]) -> Result<Tensor> {
        self.check(x)?;
        self.public_len(x, p)?;
        if p.len() > 1 {
            if let Some(e) = mixed_extra(p, self.frac_bits) {
                return self.mul_public_mixed(x, p, &e);
            }
        }
        let extra = extra_bits(p, self.frac_bits);
        let bits = self.frac_bits + extra;
        let mut e = ring::encode(p, bits)?;
        // the bits too: p and 2p encoded one bit apart are the same words
        // (a learning rate of 0.2 on one party, 0.1 on the others opened
        // garbage with no error, a user probe)
        let note = Note::op("mul_public").dims(&x.shape).word(extra.into());
        self.note(note.words(&e));
        if e.len() != x.numel() {
            e = vec![e[0]; x.numel()]; // one value for all
        }
        let r = self.run("mul", |pt| {
            let d = pt.dev.clone();
            let z = local::mul_public(&*d, x.at(pt.rank)?, &d.upload(e.clone())?)?;
            if extra > 0 {
                // the extra bits scale the ring value up by 2^extra: only the
                // exact protocol keeps the failure-free bound
                pt.divide_exact_always(&z, 1u64 << bits)
            } else {
                pt.divide(&z, 1u64 << bits)
            }
        })?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    /// x * y / 2^shift with one truncation (GELU's u = x^2 / 16): the cost
    /// of one product (counted as `mul`).
    pub fn mul_shift(&self, x: &Tensor, y: &Tensor, shift: u32) -> Result<Tensor> {
        self.same_shape(x, y, "mul")?;
        self.note(Note::op("mul_shift").dims(&x.shape).word(shift.into()));
        if shift > 16 {
            return invalid(format!("mul_shift: shift {shift} is above 16"));
        }
        let r = self.run("mul", |p| {
            p.mul_fused(x.at(p.rank)?, y.at(p.rank)?, shift, None)
        })?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    /// c_0 + c_1 u + ... + c_d u^d for public fixed-point coefficients
    /// (lowest first, d >= 1), plus c w for a sharing w when `plus` is
    /// given (d >= 2), by Horner's rule in one call: c_d u as a public
    /// product, then d - 1 shared products acc * u, each constant added in
    /// place, c w folded into the last product's truncation. The products,
    /// rounds and bytes of composing `mul_public`, `mul` and `add_public`
    /// (d products: 2d rounds, d n elements per party) without a call and a
    /// copy of the tensor per step, and c w costs nothing (GELU's x / 2).
    pub fn horner(
        &self,
        u: &Tensor,
        coeffs: &[f64],
        plus: Option<(&Tensor, f64)>,
    ) -> Result<Tensor> {
        self.check(u)?;
        let d = coeffs.len().saturating_sub(1);
        if d < 1 || (plus.is_some() && d < 2) {
            return invalid("a Horner polynomial needs degree 1 (2 with an added term)");
        }
        let e = ring::encode(coeffs, self.frac_bits)?;
        let plus = match plus {
            Some((w, c)) => {
                self.same_shape(u, w, "horner")?;
                // at scale 2^f: k w is c w at the product's scale 2^2f
                let k = ring::encode(&[c], self.frac_bits)?[0];
                Some((w, k))
            }
            None => None,
        };
        let n = u.numel();
        let k = plus.map(|(w, k)| (w.shape.clone(), k));
        let note = Note::op("horner").dims(&u.shape).words(&e);
        self.note(k.map_or(note, |(ws, k)| note.dims(&ws).word(k)));
        let r = self.run("horner", |p| {
            let dev = p.dev.clone();
            let us = u.at(p.rank)?;
            let top = dev.upload(vec![e[d]; n])?;
            let mut acc = p.truncate(&local::mul_public(&*dev, us, &top)?)?;
            local::add_scalar_into(&*dev, p.rank, &mut acc, e[d - 1])?;
            for (i, &c) in e[..d - 1].iter().enumerate().rev() {
                acc = match (i, plus) {
                    (0, Some((w, k))) => p.mul_fused(&acc, us, 0, Some((w.at(p.rank)?, k)))?,
                    _ => p.mul(&acc, us)?,
                };
                local::add_scalar_into(&*dev, p.rank, &mut acc, c)?;
            }
            Ok(acc)
        })?;
        Ok(self.wrap(u.shape.clone(), r))
    }

    /// Division by a positive public integer (sum -> mean, pooling).
    pub fn div_public_int(&self, x: &Tensor, d: u64) -> Result<Tensor> {
        self.div_int(x, d, false, false)
    }

    /// [`Session::div_public_int`] (`fresh`: [`Session::div_public_int_fresh`])
    /// by the exact protocol whatever the session's mode: a plaintext factor
    /// 1/d below 1/4 (`x * 0.001`), as a product by such a factor always was,
    /// since the probabilistic protocol's failure chance follows x, not the
    /// result.
    pub fn div_public_int_exact(&self, x: &Tensor, d: u64, fresh: bool) -> Result<Tensor> {
        self.div_int(x, d, fresh, true)
    }

    /// [`Session::div_public_int`] with independent rounding of equal
    /// elements (`Party::divide_fresh`): the same rounds and bytes.
    pub fn div_public_int_fresh(&self, x: &Tensor, d: u64) -> Result<Tensor> {
        self.div_int(x, d, true, false)
    }

    fn div_int(&self, x: &Tensor, d: u64, fresh: bool, exact: bool) -> Result<Tensor> {
        self.check(x)?;
        if d == 0 {
            return invalid("division by zero");
        }
        self.note(Note::op("div_int").dims(&x.shape).word(d).flag(fresh));
        if d == 1 {
            return Ok(x.clone());
        }
        let r = self.run("truncate", |p| {
            let xs = x.at(p.rank)?;
            match (fresh, exact) {
                (true, true) => p.divide_exact_always_fresh(xs, d),
                (false, true) => p.divide_exact_always(xs, d),
                (true, false) => p.divide_fresh(xs, d),
                (false, false) => p.divide(xs, d),
            }
        })?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    pub fn mul(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.same_shape(x, y, "mul")?;
        self.note(Note::op("mul").dims(&x.shape));
        let r = self.run("mul", |p| p.mul(x.at(p.rank)?, y.at(p.rank)?))?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    /// x * y as ring integers: the product reshared with no truncation
    /// (one round). Exact for any words, so a 0/1 integer x selects y even
    /// where y is out of the fixed-point range.
    pub fn mul_int(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.same_shape(x, y, "mul_int")?;
        self.note(Note::op("mul_int").dims(&x.shape));
        let r = self.run("mul_int", |p| p.mul_int(x.at(p.rank)?, y.at(p.rank)?))?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    pub fn matmul(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.matmul_with(x, y, false)
    }

    /// x @ y^T over the last two dims (y [.., n, k]), with no transpose
    /// written out: a Linear layer's x W^T, attention's Q K^T.
    pub fn matmul_t(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.matmul_with(x, y, true)
    }

    fn matmul_with(&self, x: &Tensor, y: &Tensor, y_trans: bool) -> Result<Tensor> {
        self.check(x)?;
        self.check(y)?;
        let mut ys = y.shape.clone();
        if y_trans && ys.len() >= 2 {
            let r = ys.len();
            ys.swap(r - 2, r - 1);
        }
        let (batch, m, k, n, shape) = shape::mm_dims(&x.shape, &ys)?;
        let dims = MatDims {
            batch,
            m,
            k,
            n,
            y_trans,
        };
        let note = Note::op("matmul")
            .dims(&x.shape)
            .dims(&y.shape)
            .flag(y_trans);
        self.note(note);
        let r = self.run("matmul", |p| p.matmul(x.at(p.rank)?, y.at(p.rank)?, dims))?;
        Ok(self.wrap(shape, r))
    }

    /// x @ p (or p @ x when `public_left`) for a public fixed-point p.
    pub fn matmul_public(
        &self,
        x: &Tensor,
        p: &[f64],
        pshape: &[usize],
        public_left: bool,
    ) -> Result<Tensor> {
        self.check(x)?;
        if p.len() != numel(pshape) {
            return shape_err(format!("{} values for shape {pshape:?}", p.len()));
        }
        let (b, m, k, n, shape) = if public_left {
            shape::mm_dims(pshape, &x.shape)?
        } else {
            shape::mm_dims(&x.shape, pshape)?
        };
        let e = ring::encode(p, self.frac_bits)?;
        let note = Note::op("matmul_public").dims(&x.shape).dims(pshape);
        self.note(note.flag(public_left).words(&e));
        let r = self.run("matmul", |pt| {
            pt.matmul_public(x.at(pt.rank)?, &e, public_left, b, m, k, n)
        })?;
        Ok(self.wrap(shape, r))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        self.check(x)?;
        self.check(w)?;
        let (g, shape) = shape::conv_geom(&x.shape, &w.shape, stride, padding, dilation, groups)?;
        let o = w.shape[0];
        let note = Note::op("conv2d")
            .dims(&x.shape)
            .dims(&w.shape)
            .pair(stride);
        self.note(note.pair(padding).pair(dilation).word(groups as u64));
        let r = self.run("conv2d", |p| {
            p.conv2d(x.at(p.rank)?, w.at(p.rank)?, &g, o, groups)
        })?;
        Ok(self.wrap(shape, r))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_public(
        &self,
        x: &Tensor,
        w: &[f64],
        wshape: &[usize],
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        self.check(x)?;
        if w.len() != numel(wshape) {
            return shape_err(format!("{} weight values for shape {wshape:?}", w.len()));
        }
        let (g, shape) = shape::conv_geom(&x.shape, wshape, stride, padding, dilation, groups)?;
        let e = ring::encode(w, self.frac_bits)?;
        let note = Note::op("conv2d_public")
            .dims(&x.shape)
            .dims(wshape)
            .pair(stride);
        self.note(
            note.pair(padding)
                .pair(dilation)
                .word(groups as u64)
                .words(&e),
        );
        let o = wshape[0];
        let r = self.run("conv2d", |p| {
            p.conv2d_public(x.at(p.rank)?, &e, &g, o, groups)
        })?;
        Ok(self.wrap(shape, r))
    }

    /// Gradients of `conv2d(x, w)` from the output gradient `gy`: (dL/dx
    /// when `need_x`, dL/dw when `need_w` and w is shared). The weight is
    /// `w` (shared) or `w_public` (plaintext, `wshape`).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_backward(
        &self,
        x: &Tensor,
        w: Option<&Tensor>,
        w_public: Option<&[f64]>,
        wshape: &[usize],
        gy: &Tensor,
        conv: (Window, usize),
        need: (bool, bool),
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.check(x)?;
        self.conv_backward_at(Some(x), &x.shape, w, w_public, wshape, gy, conv, need)
    }

    /// `conv_transpose2d(x, w)`: the input gradient of a conv2d of weight
    /// `w` over an input of `out_shape`, taking `x` as that conv's output
    /// gradient (one truncated product and a col2im; the conv's input is
    /// never needed, only its shape).
    pub fn conv_transpose2d(
        &self,
        x: &Tensor,
        w: Option<&Tensor>,
        w_public: Option<&[f64]>,
        wshape: &[usize],
        out_shape: &[usize],
        conv: (Window, usize),
    ) -> Result<Tensor> {
        let (y, _) =
            self.conv_backward_at(None, out_shape, w, w_public, wshape, x, conv, (true, false))?;
        y.ok_or_else(|| EngineError::Internal("conv_transpose2d: no result".into()))
    }

    /// `conv2d_backward` for a conv input of `xshape`, whose shares `x` are
    /// needed only for the weight gradient.
    #[allow(clippy::too_many_arguments)]
    fn conv_backward_at(
        &self,
        x: Option<&Tensor>,
        xshape: &[usize],
        w: Option<&Tensor>,
        w_public: Option<&[f64]>,
        wshape: &[usize],
        gy: &Tensor,
        conv: (Window, usize),
        need: (bool, bool),
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (win, groups) = conv;
        self.check(gy)?;
        let (g, yshape) = shape::conv_geom(
            xshape,
            wshape,
            win.stride,
            win.padding,
            win.dilation,
            groups,
        )?;
        if gy.shape != yshape {
            return shape_err(format!(
                "conv2d backward: gradient {:?} for an output of shape {yshape:?}",
                gy.shape
            ));
        }
        let enc = match (w, w_public) {
            (Some(w), None) => {
                self.check(w)?;
                if w.shape != wshape {
                    return shape_err("conv2d backward: weight shape differs");
                }
                None
            }
            (None, Some(p)) => {
                if p.len() != numel(wshape) {
                    return shape_err(format!("{} weight values for {wshape:?}", p.len()));
                }
                Some(ring::encode(p, self.frac_bits)?)
            }
            _ => return invalid("conv2d backward needs exactly one of a shared or public weight"),
        };
        let note = Note::op("conv2d_backward")
            .dims(xshape)
            .dims(wshape)
            .win(&win);
        let note = note
            .word(groups as u64)
            .flag(x.is_some())
            .flag(need.0)
            .flag(need.1);
        self.note(enc.as_deref().map_or(note, |e| note.words(e)));
        let (need_x, need_w) = (need.0, need.1 && w.is_some());
        let o = wshape[0];
        let r = self.run("conv2d_backward", |p| {
            let wt = match (w, &enc) {
                (Some(w), _) => ConvWeight::Shared(w.at(p.rank)?),
                (None, Some(e)) => ConvWeight::Public(e),
                (None, None) => return invalid("no weight"),
            };
            p.conv2d_backward(
                x.map(|t| t.at(p.rank)).transpose()?,
                wt,
                gy.at(p.rank)?,
                &g,
                o,
                groups,
                need_x,
                need_w,
            )
        })?;
        let (gxs, gws): (Vec<_>, Vec<_>) = r.into_iter().unzip();
        let collect = |v: Vec<Option<_>>, shape: &[usize]| -> Option<Tensor> {
            v.into_iter()
                .collect::<Option<Vec<_>>>()
                .map(|s| self.wrap(shape.to_vec(), s))
        };
        Ok((collect(gxs, xshape), collect(gws, wshape)))
    }

    /// Backward of `avg_pool2d` to an input of `input_shape` (NCHW).
    pub fn avg_pool2d_backward(
        &self,
        gy: &Tensor,
        input_shape: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        self.check(gy)?;
        let win = Window::pool(kernel, stride, padding);
        let g = shape::pool_geom(input_shape, &win)?;
        let (oh, ow) = g.out_hw();
        if gy.shape != [g.n, g.c, oh, ow] {
            return shape_err(format!(
                "avg_pool2d backward: gradient {:?} for an output of [{}, {}, {oh}, {ow}]",
                gy.shape, g.n, g.c
            ));
        }
        self.note(Note::op("avg_pool2d_backward").dims(input_shape).win(&win));
        let r = self.run("avg_pool2d_backward", |p| {
            p.avg_pool2d_backward(gy.at(p.rank)?, &g)
        })?;
        Ok(self.wrap(input_shape.to_vec(), r))
    }

    pub fn avg_pool2d(
        &self,
        x: &Tensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        self.check(x)?;
        let xs = &x.shape;
        let win = Window::pool(kernel, stride, padding);
        let g = shape::pool_geom(xs, &win)?;
        let (oh, ow) = g.out_hw();
        self.note(Note::op("avg_pool2d").dims(xs).win(&win));
        let r = self.run("avg_pool2d", |p| p.avg_pool2d(x.at(p.rank)?, &g))?;
        Ok(self.wrap(vec![xs[0], xs[1], oh, ow], r))
    }

    /// A sharing of public fixed-point values (components (p, 0, 0)); no
    /// messages.
    pub fn public_tensor(&self, values: &[f64], shape: Vec<usize>) -> Result<Tensor> {
        if values.len() != numel(&shape) {
            return shape_err(format!("{} values for shape {shape:?}", values.len()));
        }
        let e = ring::encode(values, self.frac_bits)?;
        self.note(Note::op("public_tensor").dims(&shape).words(&e));
        let s = self
            .ranks
            .iter()
            .map(|&i| local::public(self.dev(i)?, i, &e))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.wrap(shape, s))
    }

    /// One party's view of a tensor: its two components (for the security
    /// sanity tests and the "what each party sees" demo).
    pub fn party_share(&self, x: &Tensor, party: usize) -> Result<(Vec<u64>, Vec<u64>)> {
        self.check(x)?;
        if party > 2 {
            return invalid(format!("party must be 0, 1 or 2, got {party}"));
        }
        let s = x.at(party)?;
        Ok((s.a.to_vec()?, s.b.to_vec()?))
    }
}

/// The arguments of a sharing: a party index, and as many values as the
/// shape holds.
fn check_share(n: usize, shape: &[usize], src: usize) -> Result<()> {
    if src > 2 {
        return invalid(format!("src must be 0, 1 or 2, got {src}"));
    }
    if n != numel(shape) {
        return shape_err(format!("{n} values for shape {shape:?}"));
    }
    Ok(())
}
