// Reductions over one axis of a [outer, len, inner] view (wrapping sums).
#include "common.cuh"

extern "C" __global__ void sum_axis(const u64* x, u64 outer, u64 len, u64 inner, u64* out) {
    FOR_EACH(t, outer * inner) {
        u64 o = t / inner, i = t % inner, s = 0;
        const u64* p = x + o * len * inner + i;
        for (u64 k = 0; k < len; k++) s += p[k * inner];
        out[t] = s;
    }
}
