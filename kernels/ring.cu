// Ring Z_2^64 element-wise ops: unsigned 64-bit arithmetic wraps, which is
// exactly the ring.
#include "common.cuh"

extern "C" __global__ void ring_neg(const u64* a, u64* out, u64 n) {
    FOR_EACH(i, n) out[i] = (u64)0 - a[i];
}

extern "C" __global__ void ring_add_scalar(const u64* a, u64 s, u64* out, u64 n) {
    FOR_EACH(i, n) out[i] = a[i] + s;
}

// The local step of a replicated product: party i holds (x_i, x_{i+1}) and
// (y_i, y_{i+1}) and computes its 3-out-of-3 share of x y, masked by a share
// of zero r_i: z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + r_i.
extern "C" __global__ void rss_mul_local(const u64* x0, const u64* x1, const u64* y0,
                                         const u64* y1, const u64* r, u64* out, u64 n) {
    FOR_EACH(i, n) out[i] = x0[i] * y0[i] + x0[i] * y1[i] + x1[i] * y0[i] + r[i];
}

// One kernel for every element-wise binary op of the device trait (the op
// codes of rust/engine/src/device/cuda/mod.rs `op2_code`): 0 add, 1 sub,
// 2 mul, 3 xor; 4 (and) is not used by the device but kept for the emulation
// test's coverage of the switch.
__device__ static inline u64 apply_op2(u32 op, u64 a, u64 b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a ^ b;
        default: return a & b;
    }
}

extern "C" __global__ void ring_map2(const u64* a, const u64* b, u64* out, u64 n, u32 op) {
    FOR_EACH(i, n) out[i] = apply_op2(op, a[i], b[i]);
}

// dst = dst op src, in place.
extern "C" __global__ void ring_map2_into(u64* dst, const u64* src, u64 n, u32 op) {
    FOR_EACH(i, n) dst[i] = apply_op2(op, dst[i], src[i]);
}

// Signed floor division by a positive public d below 2^63 (the local step of
// truncation; an arithmetic shift when d is a power of two).
extern "C" __global__ void ring_div_floor(const u64* a, u64 d, u64* out, u64 n) {
    FOR_EACH(i, n) {
        i64 v = (i64)a[i], q = v / (i64)d;
        if (v % (i64)d != 0 && v < 0) q -= 1;
        out[i] = (u64)q;
    }
}
