//! The backward pass of a 2-D convolution (training): the input gradient by
//! col2im of W^T G and the weight gradient G cols(x)^T, per group, each one
//! truncated product (2 rounds, its output size sent per party), the groups
//! batched into that one product.
//!
//! The weight gradient is computed as (cols(x) G^T)^T: G^T ([groups, L, og])
//! is the size of the layer's output, while cols(x) ([groups, kk, L]) is
//! kh*kw times the input, so the transposed copy falls on the smaller operand
//! and the largest matrix is used where im2col writes it.

use super::{AShare, Party};
use crate::device::MatDims;
use crate::error::Result;
use crate::ring::Conv2dGeom;

/// The weight of a convolution: secret-shared, or public (encoded).
pub enum ConvWeight<'a> {
    Shared(&'a AShare),
    Public(&'a [u64]),
}

impl Party {
    /// Gradients of y = conv2d(x, w) given G = dL/dy (NCHW [N, O, OH, OW]):
    /// (dL/dx if `need_x`, dL/dw if `need_w`, w is shared and x given).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_backward(
        &mut self,
        x: Option<&AShare>,
        w: ConvWeight<'_>,
        gy: &AShare,
        g: &Conv2dGeom,
        out_ch: usize,
        groups: usize,
        need_x: bool,
        need_w: bool,
    ) -> Result<(Option<AShare>, Option<AShare>)> {
        let (oh, ow) = g.out_hw();
        let (p, l) = (oh * ow, g.n * oh * ow);
        let (cg, og) = (g.c / groups, out_ch / groups);
        let kk = cg * g.kh * g.kw;
        let dev = self.dev.clone();
        let gx = if need_x {
            // The input gradient's two buffers are allocated after the
            // product's round; an output that cannot fit (a transposed
            // convolution with a huge stride) must be refused before it,
            // where the local runtime keeps the parties in step.
            let out_len = (g.n.saturating_mul(g.c)).saturating_mul(g.h.saturating_mul(g.w));
            if out_len.saturating_mul(8) >= 1 << 30 {
                drop((dev.zeros(out_len)?, dev.zeros(out_len)?));
            }
            // G as [O, N*OH*OW] = [groups, og, L].
            let gm = gy.map(|v| dev.gather(v, &[out_ch, g.n, p], 0, &[p, out_ch * p, 1]))?;
            // W_g^T: [groups, kk, og] from W [groups, og, kk].
            let wt_view = ([groups, kk, og], [og * kk, 1, kk]);
            let cols = match &w {
                ConvWeight::Shared(ws) => {
                    let wt = ws.map(|v| dev.gather(v, &wt_view.0, 0, &wt_view.1))?;
                    self.matmul(&wt, &gm, MatDims::new(groups, kk, og, l))?
                }
                ConvWeight::Public(wp) => {
                    let wt = crate::ring::shape::gather_host(wp, &wt_view.0, &wt_view.1);
                    self.matmul_public(&gm, &wt, true, groups, kk, og, l)?
                }
            };
            Some(self.col2im_groups(&cols, g, groups)?)
        } else {
            None
        };
        let gw = match (&w, need_w, x) {
            (ConvWeight::Shared(_), true, Some(x)) => {
                // cols(x) per group, [groups, kk, L].
                let mut cols = AShare {
                    a: dev.zeros(groups * kk * l)?,
                    b: dev.zeros(groups * kk * l)?,
                };
                for gi in 0..groups {
                    for (dst, src) in [(&mut cols.a, &x.a), (&mut cols.b, &x.b)] {
                        let c = dev.im2col(src, g, gi * cg, cg)?;
                        if groups == 1 {
                            *dst = c;
                        } else {
                            dev.update(None, dst, gi * kk * l, &c, 0, kk * l)?;
                        }
                    }
                }
                // G^T per group: [groups, L, og], element (gi, (n, q), o) =
                // G[n, gi og + o, q].
                let gt = gy.map(|v| {
                    dev.gather(v, &[groups, g.n, p, og], 0, &[og * p, out_ch * p, 1, p])
                })?;
                let gwt = self.matmul(&cols, &gt, MatDims::new(groups, kk, l, og))?;
                // [groups, kk, og] -> [groups, og, kk] = W's layout.
                Some(gwt.map(|v| dev.gather(v, &[groups, og, kk], 0, &[kk * og, 1, og]))?)
            }
            _ => None,
        };
        Ok((gx, gw))
    }

    /// col2im of [groups, kk, L] columns into NCHW, group g's channels at
    /// [g cg, (g + 1) cg).
    fn col2im_groups(&self, cols: &AShare, g: &Conv2dGeom, groups: usize) -> Result<AShare> {
        let dev = &*self.dev;
        if groups == 1 {
            return cols.map(|v| dev.col2im(v, g));
        }
        let cg = g.c / groups;
        let gg = Conv2dGeom { c: cg, ..*g };
        let per = cols.len() / groups;
        let plane = g.h * g.w;
        let n = g.n * g.c * plane;
        let mut out = AShare {
            a: dev.zeros(n)?,
            b: dev.zeros(n)?,
        };
        for gi in 0..groups {
            for (dst, src) in [(&mut out.a, &cols.a), (&mut out.b, &cols.b)] {
                let part = dev.concat(&[(src, gi * per, per)])?;
                let img = dev.col2im(&part, &gg)?;
                // [N, cg, H, W] into channels [gi cg, (gi + 1) cg) of [N, C, H, W].
                dev.scatter(
                    &img,
                    dst,
                    &[g.n, cg * plane],
                    gi * cg * plane,
                    &[g.c * plane, 1],
                )?;
            }
        }
        Ok(out)
    }
}
