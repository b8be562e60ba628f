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
    pub fn out_hw(&self) -> (usize, usize) {
        let oh =
            (self.h + 2 * self.padding.0 - self.dilation.0 * (self.kh - 1) - 1) / self.stride.0 + 1;
        let ow =
            (self.w + 2 * self.padding.1 - self.dilation.1 * (self.kw - 1) - 1) / self.stride.1 + 1;
        (oh, ow)
    }
    /// True when the (dilated) window fits in the padded input.
    pub fn fits(&self) -> bool {
        self.kh > 0
            && self.kw > 0
            && self.stride.0 > 0
            && self.stride.1 > 0
            && self.dilation.0 > 0
            && self.dilation.1 > 0
            && self.h + 2 * self.padding.0 > self.dilation.0 * (self.kh - 1)
            && self.w + 2 * self.padding.1 > self.dilation.1 * (self.kw - 1)
    }
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
    Ok((g, vec![xs[0], ws[0], oh, ow]))
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
