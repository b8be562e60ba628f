// Ring GEMM over Z_2^64 on floating-point / integer GEMM hardware: the
// operands are split into limbs, the limb products run as exact GEMMs
// (cuBLAS float64, or cuBLASLt int8 with int32 accumulation), and the
// partial results are recombined modulo 2^64.
//
// (a) 16-bit limbs in float64 (the CryptGPU paper): a = sum_i a_i 2^(16 i),
//     i < 4, 0 <= a_i < 2^16. For each shift s < 4 the products A_i B_j with
//     i + j = s are accumulated into one partial (a GEMM per pair, beta = 1
//     after the first); its entries are below (s + 1) K 2^32, exact in
//     float64 while that is below 2^53, so K is chunked to 2^19
//     (4 K 2^32 <= 2^53).
// (b) 8-bit signed limbs in int8 (tensor cores): a = sum_i d_i 2^(8 i), i < 8,
//     d_i in [-128, 127] (balanced digits; the carry out of the top digit
//     vanishes mod 2^64). For each shift s < 8 the products D_i E_j with
//     i + j = s are accumulated into one int32 partial the same way; each
//     product is at most 2^14 in magnitude, so the partial is exact while
//     8 K 2^14 < 2^31: K is chunked to 2^13.
#include "common.cuh"

// limbs[i * n + e] = 16-bit limb i of a[e], as a double.
extern "C" __global__ void limbs16_split(const u64* a, u64 n, double* limbs) {
    FOR_EACH(e, n) {
        for (int i = 0; i < 4; i++) limbs[(u64)i * n + e] = (double)((a[e] >> (16 * i)) & 0xffffull);
    }
}

// c[e] (+)= sum_s parts[s * mn + e] 2^(16 s) mod 2^64; parts are exact
// non-negative integers below 2^53.
extern "C" __global__ void limbs16_combine(const double* parts, u64 mn, u32 accumulate, u64* c) {
    FOR_EACH(e, mn) {
        u64 v = accumulate ? c[e] : 0;
        for (int s = 0; s < 4; s++) v += ((u64)parts[(u64)s * mn + e]) << (16 * s);
        c[e] = v;
    }
}

// digits[i * n + e] = balanced base-256 digit i of a[e].
extern "C" __global__ void limbs8_split(const u64* a, u64 n, signed char* digits) {
    FOR_EACH(e, n) {
        u64 x = a[e];
        int carry = 0;
        for (int i = 0; i < 8; i++) {
            int d = (int)((x >> (8 * i)) & 0xff) + carry;
            carry = d >= 128 ? 1 : 0;
            digits[(u64)i * n + e] = (signed char)(d - 256 * carry);
        }
    }
}

// c[e] (+)= sum_s parts[s * mn + e] 2^(8 s) mod 2^64 for int32 partials.
extern "C" __global__ void limbs8_combine(const int* parts, u64 mn, u32 accumulate, u64* c) {
    FOR_EACH(e, mn) {
        u64 v = accumulate ? c[e] : 0;
        for (int s = 0; s < 8; s++) v += ((u64)(i64)parts[(u64)s * mn + e]) << (8 * s);
        c[e] = v;
    }
}
