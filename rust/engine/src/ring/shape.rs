//! Shapes and window geometry: element counts, row-major strides, strided
//! views and the sliding windows of convolution and pooling. All of it is
//! public (shapes are not secret) and checked before any party starts.

use crate::error::{invalid, shape_err, EngineError, Result};

/// Number of elements of a shape, saturating at `usize::MAX` (a shape
/// whose product overflows can never be allocated, and an allocation of
/// `usize::MAX` elements is refused as out of memory, never wrapped to a
/// small size).
pub fn numel(shape: &[usize]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |n, &s| n.checked_mul(s))
        .unwrap_or(if shape.contains(&0) { 0 } else { usize::MAX })
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Geometry of a 2-D convolution or pooling window over NCHW data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl Conv2dGeom {
    /// Output height and width; call only on a geometry that `fits`.
    pub fn out_hw(&self) -> (usize, usize) {
        self.checked_out_hw().unwrap_or((0, 0))
    }
    /// Output height and width, or None when a kernel, stride or dilation
    /// is zero, the (dilated) window does not fit the padded input, or a
    /// size overflows (the padded extent must also fit an isize, as the
    /// kernels index with signed coordinates).
    pub fn checked_out_hw(&self) -> Option<(usize, usize)> {
        fn span(len: usize, pad: usize, dil: usize, k: usize, s: usize) -> Option<usize> {
            if k == 0 || s == 0 || dil == 0 {
                return None;
            }
            let padded = pad.checked_mul(2)?.checked_add(len)?;
            let reach = dil.checked_mul(k - 1)?.checked_add(1)?;
            if padded < reach || isize::try_from(padded).is_err() {
                return None;
            }
            Some((padded - reach) / s + 1)
        }
        Some((
            span(
                self.h,
                self.padding.0,
                self.dilation.0,
                self.kh,
                self.stride.0,
            )?,
            span(
                self.w,
                self.padding.1,
                self.dilation.1,
                self.kw,
                self.stride.1,
            )?,
        ))
    }
    /// True when the (dilated) window fits in the padded input.
    pub fn fits(&self) -> bool {
        self.checked_out_hw().is_some()
    }
    /// Elements of the im2col matrix (c x kh x kw rows, n x oh x ow
    /// columns), or an out-of-memory error naming the size when the
    /// product of its non-zero factors overflows a usize (so that no
    /// partial product in a kernel can wrap either).
    pub fn checked_cols(&self, what: &str) -> Result<usize> {
        let (oh, ow) = self.out_hw();
        let f = [self.c, self.kh, self.kw, self.n, oh, ow];
        checked_nonzero_product(&f).ok_or_else(|| {
                EngineError::OutOfMemory(format!(
                    "{what}: {} x {} x {} x {} x {oh} x {ow} window elements overflow the address space",
                    self.n, self.c, self.kh, self.kw
                ))
            })?;
        Ok(numel(&f))
    }
}

/// Product of the non-zero factors, None when it overflows.
pub fn checked_nonzero_product(f: &[usize]) -> Option<usize> {
    f.iter()
        .filter(|&&b| b != 0)
        .try_fold(1usize, |a, &b| a.checked_mul(b))
}

/// A sliding window over NCHW data (pooling, im2col): PyTorch's kernel,
/// stride, padding and dilation, each (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl Window {
    /// A pooling window (no dilation).
    pub fn pool(kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize)) -> Self {
        Window {
            kernel,
            stride,
            padding,
            dilation: (1, 1),
        }
    }
}

/// A view (shape, offset, strides) lies inside a tensor of n elements.
pub fn view_fits(shape: &[usize], offset: usize, st: &[usize], n: usize) -> Result<()> {
    if st.len() != shape.len() {
        return shape_err("a view needs one stride per dim");
    }
    if numel(shape) > 0 {
        // Checked: a product or sum that overflows would wrap to a small
        // offset and pass the bounds check.
        let last = shape.iter().zip(st).try_fold(offset, |acc, (s, t)| {
            (s - 1).checked_mul(*t)?.checked_add(acc)
        });
        match last {
            Some(last) if last < n => {}
            Some(last) => {
                return shape_err(format!("view reaches element {last} of a tensor of {n}"))
            }
            None => return shape_err("view offsets overflow"),
        }
    }
    Ok(())
}

/// Batched matmul on [.., m, k] x [.., k, n] with equal batch dims, or
/// plain 2-D.
pub fn mm_dims(xs: &[usize], ys: &[usize]) -> Result<(usize, usize, usize, usize, Vec<usize>)> {
    if xs.len() < 2 || ys.len() < 2 || xs.len() != ys.len() {
        return shape_err(format!(
            "matmul needs two tensors of equal rank >= 2, got {xs:?} and {ys:?}"
        ));
    }
    let r = xs.len();
    if xs[..r - 2] != ys[..r - 2] {
        return shape_err(format!("matmul batch dims differ: {xs:?} and {ys:?}"));
    }
    let (m, k, k2, n) = (xs[r - 2], xs[r - 1], ys[r - 2], ys[r - 1]);
    if k != k2 {
        return shape_err(format!("matmul: inner dims differ ({xs:?} @ {ys:?})"));
    }
    let batch = numel(&xs[..r - 2]);
    let mut out = xs[..r - 2].to_vec();
    out.extend([m, n]);
    Ok((batch, m, k, n, out))
}

#[allow(clippy::too_many_arguments)]
pub fn conv_geom(
    xs: &[usize],
    ws: &[usize],
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> Result<(Conv2dGeom, Vec<usize>)> {
    if xs.len() != 4 || ws.len() != 4 {
        return shape_err(format!(
            "conv2d needs a 4-D input and weight, got {xs:?} and {ws:?}"
        ));
    }
    if groups == 0 || !xs[1].is_multiple_of(groups) || !ws[0].is_multiple_of(groups) {
        return shape_err(format!(
            "conv2d: groups={groups} must divide in_channels={} and out_channels={}",
            xs[1], ws[0]
        ));
    }
    if ws[1] * groups != xs[1] {
        return shape_err(format!(
            "conv2d: weight {ws:?} expects {} input channels, input {xs:?} has {}",
            ws[1] * groups,
            xs[1]
        ));
    }
    let g = Conv2dGeom {
        n: xs[0],
        c: xs[1],
        h: xs[2],
        w: xs[3],
        kh: ws[2],
        kw: ws[3],
        stride,
        padding,
        dilation,
    };
    if !g.fits() {
        return shape_err(format!(
            "conv2d: kernel {}x{} (dilation {dilation:?}, stride {stride:?}) does not fit input {xs:?} with padding {padding:?}",
            g.kh, g.kw
        ));
    }
    let (oh, ow) = g.out_hw();
    Conv2dGeom {
        c: xs[1] / groups,
        ..g
    }
    .checked_cols("conv2d")?;
    let out = vec![xs[0], ws[0], oh, ow];
    if checked_nonzero_product(&out).is_none() {
        return Err(EngineError::OutOfMemory(format!(
            "conv2d: an output of shape {out:?} overflows the address space"
        )));
    }
    Ok((g, out))
}

pub fn pool_geom(shape: &[usize], win: &Window) -> Result<Conv2dGeom> {
    let Window {
        kernel,
        stride,
        padding,
        dilation,
    } = *win;
    if shape.len() != 4 {
        return shape_err(format!("pooling needs NCHW input, got {shape:?}"));
    }
    if padding.0 * 2 > kernel.0 || padding.1 * 2 > kernel.1 {
        return invalid(format!(
            "padding {padding:?} must be at most half the kernel {kernel:?}"
        ));
    }
    let g = Conv2dGeom {
        n: shape[0],
        c: shape[1],
        h: shape[2],
        w: shape[3],
        kh: kernel.0,
        kw: kernel.1,
        stride,
        padding,
        dilation,
    };
    if !g.fits() {
        return shape_err(format!(
            "pooling kernel {kernel:?} does not fit input {shape:?}"
        ));
    }
    g.checked_cols("pooling")?;
    Ok(g)
}

/// Input index of every window slot; a padded slot repeats the first
/// in-bounds element of its window.
pub fn window_index(g: &Conv2dGeom) -> Result<Vec<usize>> {
    let (oh, ow) = g.out_hw();
    let kk = g.kh * g.kw;
    let mut idx = Vec::with_capacity(g.n * g.c * oh * ow * kk);
    for p in 0..g.n * g.c {
        for oy in 0..oh {
            for ox in 0..ow {
                let pos = |k: usize| {
                    let (ky, kx) = (k / g.kw, k % g.kw);
                    let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                    let ix = (ox * g.stride.1 + kx * g.dilation.1) as isize - g.padding.1 as isize;
                    (iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w)
                        .then(|| p * g.h * g.w + iy as usize * g.w + ix as usize)
                };
                let first = (0..kk).find_map(pos).ok_or_else(|| {
                    EngineError::Invalid("a pooling window lies entirely in the padding".into())
                })?;
                idx.extend((0..kk).map(|k| pos(k).unwrap_or(first)));
            }
        }
    }
    Ok(idx)
}

/// A strided view of public host values, materialised: out[idx] =
/// v[sum_d idx_d st_d] (a transposed public weight, say). The view must lie
/// inside `v` (callers build it from the shape of `v`).
pub fn gather_host(v: &[u64], shape: &[usize], st: &[usize]) -> Vec<u64> {
    let n = numel(shape);
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        let pos: usize = idx.iter().zip(st).map(|(i, s)| i * s).sum();
        out.push(v.get(pos).copied().unwrap_or(0));
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_geometry_that_overflows_is_refused_not_wrapped() {
        let big = 1usize << 62;
        // Padding of 2^62: the padded extent overflows (it used to wrap and
        // panic on a slice range in im2col).
        assert!(conv_geom(&[1, 3, 4, 4], &[2, 3, 1, 1], (2, 2), (big, big), (1, 1), 1).is_err());
        // Dilation times kernel overflows.
        assert!(conv_geom(&[1, 1, 4, 4], &[1, 1, 3, 3], (1, 1), (0, 0), (big, big), 1).is_err());
        // A window count that fits each factor but not the product.
        let e = conv_geom(
            &[1 << 22, 1, 1 << 21, 1 << 21],
            &[1, 1, 1, 1],
            (1, 1),
            (0, 0),
            (1, 1),
            1,
        );
        assert!(matches!(e, Err(EngineError::OutOfMemory(_))), "{e:?}");
        let w = Window::pool((2, 2), (1, 1), (1, 1));
        assert!(matches!(
            pool_geom(&[1 << 20, 1 << 20, 1 << 12, 1 << 12], &w),
            Err(EngineError::OutOfMemory(_))
        ));
        // An ordinary geometry is unchanged.
        let (g, out) = conv_geom(&[2, 3, 5, 4], &[4, 3, 3, 2], (2, 1), (1, 1), (1, 2), 1).unwrap();
        assert_eq!(out, vec![2, 4, 3, 4]);
        assert_eq!(g.checked_out_hw(), Some((3, 4)));
    }

    #[test]
    fn zero_kernel_stride_or_dilation_does_not_fit() {
        let mut g = Conv2dGeom {
            n: 1,
            c: 1,
            h: 3,
            w: 3,
            kh: 1,
            kw: 1,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
        };
        assert!(g.fits());
        for f in [
            |g: &mut Conv2dGeom| g.kh = 0,
            |g: &mut Conv2dGeom| g.stride.1 = 0,
            |g: &mut Conv2dGeom| g.dilation.0 = 0,
            |g: &mut Conv2dGeom| g.kw = 4,
        ] {
            let mut h = g;
            f(&mut h);
            assert!(!h.fits(), "{h:?}");
        }
        g.padding = (usize::MAX / 2, 0);
        assert!(!g.fits(), "padded extent past isize::MAX");
    }
}
