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

// Transpose a 64x64 bit matrix in place: bit c of word r moves to bit r of
// word c (recursive block swaps, as rust/engine/src/binary.rs transpose64).
__device__ static inline void transpose64(u64* a) {
    u64 m = 0x00000000FFFFFFFFull;
    for (u64 j = 32; j != 0; j >>= 1, m ^= m << j) {
        for (u64 k = 0; k < 64; k = (k + j + 1) & ~j) {
            u64 t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k] ^= t << j;
            a[k + j] ^= t;
        }
    }
}

// n values -> 64 planes of nw = ceil(n / 64) words. One thread per word
// column w: it reads its 64 elements once, transposes them as a bit matrix
// and writes word w of every plane (each element read once, each plane word
// written once).
extern "C" __global__ void to_planes(const u64* x, u64 n, u64 nw, u64* planes) {
    FOR_EACH(w, nw) {
        u64 blk[64];
        for (u64 b = 0; b < 64; b++) blk[b] = 64 * w + b < n ? x[64 * w + b] : 0ull;
        transpose64(blk);
        for (u64 j = 0; j < 64; j++) planes[j * nw + w] = blk[j];
    }
}

// The inverse, the same way: one thread per word column.
extern "C" __global__ void from_planes(const u64* planes, u64 n, u64 nw, u64* out) {
    FOR_EACH(w, nw) {
        u64 blk[64];
        for (u64 j = 0; j < 64; j++) blk[j] = planes[j * nw + w];
        transpose64(blk);
        for (u64 b = 0; b < 64 && 64 * w + b < n; b++) out[64 * w + b] = blk[b];
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
