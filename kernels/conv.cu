// Convolution and pooling data movement over NCHW ring tensors, in the CPU
// device's layouts (rust/engine/src/device.rs): im2col rows are (channel,
// ky, kx) for channels [c0, c0 + cg), columns are (image, oy, ox); zero
// padding. col2im is written as a gather (one thread per input element), so
// it needs no atomics and sums in a fixed order.
#include "common.cuh"

struct Geom {
    u64 n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw;
};

__device__ static inline u64 out_h(const Geom& g) { return (g.h + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1; }
__device__ static inline u64 out_w(const Geom& g) { return (g.w + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1; }

extern "C" __global__ void im2col(const u64* x, Geom g, u64 c0, u64 cg, u64* out) {
    u64 oh = out_h(g), ow = out_w(g), ncols = g.n * oh * ow;
    FOR_EACH(t, cg * g.kh * g.kw * ncols) {
        u64 r = t / ncols, col = t % ncols;
        u64 c = c0 + r / (g.kh * g.kw), ky = (r / g.kw) % g.kh, kx = r % g.kw;
        u64 img = col / (oh * ow), oy = (col / ow) % oh, ox = col % ow;
        i64 iy = (i64)(oy * g.sh + ky * g.dh) - (i64)g.ph;
        i64 ix = (i64)(ox * g.sw + kx * g.dw) - (i64)g.pw;
        u64 v = 0;
        if (iy >= 0 && iy < (i64)g.h && ix >= 0 && ix < (i64)g.w)
            v = x[((img * g.c + c) * g.h + (u64)iy) * g.w + (u64)ix];
        out[t] = v;
    }
}

extern "C" __global__ void col2im(const u64* cols, Geom g, u64* out) {
    u64 oh = out_h(g), ow = out_w(g), ncols = g.n * oh * ow;
    FOR_EACH(t, g.n * g.c * g.h * g.w) {
        u64 ix = t % g.w, iy = (t / g.w) % g.h, c = (t / (g.w * g.h)) % g.c, img = t / (g.w * g.h * g.c);
        u64 s = 0;
        for (u64 ky = 0; ky < g.kh; ky++) {
            i64 ny = (i64)iy + (i64)g.ph - (i64)(ky * g.dh);
            if (ny < 0 || ny % (i64)g.sh != 0) continue;
            u64 oy = (u64)ny / g.sh;
            if (oy >= oh) continue;
            for (u64 kx = 0; kx < g.kw; kx++) {
                i64 nx = (i64)ix + (i64)g.pw - (i64)(kx * g.dw);
                if (nx < 0 || nx % (i64)g.sw != 0) continue;
                u64 ox = (u64)nx / g.sw;
                if (ox >= ow) continue;
                s += cols[((c * g.kh + ky) * g.kw + kx) * ncols + (img * oh + oy) * ow + ox];
            }
        }
        out[t] = s;
    }
}

// Sum over each pooling window (zero padding): NCHW -> N C OH OW.
extern "C" __global__ void window_sum(const u64* x, Geom g, u64* out) {
    u64 oh = out_h(g), ow = out_w(g);
    FOR_EACH(t, g.n * g.c * oh * ow) {
        u64 ox = t % ow, oy = (t / ow) % oh, p = t / (oh * ow);
        const u64* plane = x + p * g.h * g.w;
        u64 s = 0;
        for (u64 ky = 0; ky < g.kh; ky++) {
            i64 iy = (i64)(oy * g.sh + ky * g.dh) - (i64)g.ph;
            if (iy < 0 || iy >= (i64)g.h) continue;
            for (u64 kx = 0; kx < g.kw; kx++) {
                i64 ix = (i64)(ox * g.sw + kx * g.dw) - (i64)g.pw;
                if (ix >= 0 && ix < (i64)g.w) s += plane[(u64)iy * g.w + (u64)ix];
            }
        }
        out[t] = s;
    }
}

// A strided view materialised: out[i] = src[offset + sum_d idx_d strides_d]
// over `shape` (ndim <= 8): permute, expand and stepped slices are all this.
struct View {
    u64 ndim, offset;
    u64 shape[8];
    u64 strides[8];
};

// Where element i of the view lies in the viewed buffer.
__device__ static inline u64 view_at(const View& v, u64 i) {
    u64 rem = i, at = v.offset;
    for (int d = (int)v.ndim - 1; d >= 0; d--) {
        at += (rem % v.shape[d]) * v.strides[d];
        rem /= v.shape[d];
    }
    return at;
}

extern "C" __global__ void gather(const u64* src, View v, u64* out, u64 n) {
    FOR_EACH(i, n) out[i] = src[view_at(v, i)];
}

// The inverse placement of `gather`: dst[offset + sum_d idx_d strides_d] =
// src[i] (pad, cat); the view never overlaps itself.
extern "C" __global__ void scatter(const u64* src, View v, u64* dst, u64 n) {
    FOR_EACH(i, n) dst[view_at(v, i)] = src[i];
}

// out[j] = src[idx[j]] (pooling windows).
extern "C" __global__ void index_gather(const u64* src, const u64* idx, u64* out, u64 n) {
    FOR_EACH(j, n) out[j] = src[idx[j]];
}

// out[idx[j]] += src[j] (max-pool backward). Wrapping integer adds commute,
// so the atomic order does not change the result.
extern "C" __global__ void index_scatter_add(const u64* src, const u64* idx, u64* out, u64 n) {
    FOR_EACH(j, n) atomicAdd(&out[idx[j]], src[j]);
}
