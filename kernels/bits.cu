// Binary sharings: the local step of AND on packed words, bit slicing (64
// planes of nw words: plane j, word w, bit b = bit j of element 64 w + b, as
// rust/engine/src/binary.rs) and bit expansion. XOR and the adder levels'
// plane moves use ring.cu's ring_map2 and the device's range copies.
#include "common.cuh"

// The local step of a replicated AND (the binary analogue of rss_mul_local).
extern "C" __global__ void rss_and_local(const u64* x0, const u64* x1, const u64* y0,
                                         const u64* y1, const u64* r, u64* out, u64 n) {
    FOR_EACH(i, n) out[i] = (x0[i] & y0[i]) ^ (x0[i] & y1[i]) ^ (x1[i] & y0[i]) ^ r[i];
}

// n values -> 64 planes of nw = ceil(n / 64) words; one thread per (plane, word).
extern "C" __global__ void to_planes(const u64* x, u64 n, u64 nw, u64* planes) {
    FOR_EACH(t, 64 * nw) {
        u64 j = t / nw, w = t % nw, word = 0;
        for (u64 b = 0; b < 64; b++) {
            u64 e = 64 * w + b;
            if (e < n) word |= ((x[e] >> j) & 1ull) << b;
        }
        planes[t] = word;
    }
}

// The inverse: one thread per element.
extern "C" __global__ void from_planes(const u64* planes, u64 n, u64 nw, u64* out) {
    FOR_EACH(e, n) {
        u64 w = e / 64, b = e % 64, v = 0;
        for (u64 j = 0; j < 64; j++) v |= ((planes[j * nw + w] >> b) & 1ull) << j;
        out[e] = v;
    }
}

// out[i] = bit (i / reps) of a packed plane, as the ring element 0 or 1
// (bit injection expands a packed sign bit to its values).
extern "C" __global__ void expand_bits(const u64* plane, u64 n, u64 reps, u64* out) {
    FOR_EACH(i, n * reps) {
        u64 e = i / reps;
        out[i] = (plane[e / 64] >> (e % 64)) & 1ull;
    }
}
