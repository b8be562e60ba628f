// Ring GEMM over Z_2^64 on floating-point / integer GEMM hardware: the
// operands are split into limbs, the limb products run as exact GEMMs
// (cuBLAS float64, or cuBLASLt int8 with int32 accumulation), and the
// partial results are recombined modulo 2^64.
//
// (a) 16-bit limbs in float64 (the CryptGPU paper): a = sum_i a_i 2^(16 i),
//     i < 4, 0 <= a_i < 2^16. For each shift s < 4 the products a_i b_j with
//     i + j = s are one GEMM over the K axis concatenated s + 1 times; its
//     entries are below (s + 1) K 2^32, exact in float64 while that is below
//     2^53, so K is chunked to 2^19 (4 K 2^32 <= 2^53).
// (b) 8-bit signed limbs in int8 (tensor cores): a = sum_i d_i 2^(8 i), i < 8,
//     d_i in [-128, 127] (balanced digits; the carry out of the top digit
//     vanishes mod 2^64). For each shift s < 8 the products d_i e_j with
//     i + j = s form one GEMM over the K axis concatenated s + 1 times; each
//     product is at most 2^14 in magnitude, so int32 accumulation is exact
//     while 8 K 2^14 < 2^31: K is chunked to 2^13.
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

// Concatenate limbs along K for shift s: for the row-major A (m x k), the
// operand block i (i <= s) of the result (m x (s+1)k) is limb i of A; for B
// (k x n) the block i is limb s - i of B. Both as one kernel each, for
// doubles and for int8 digits.
extern "C" __global__ void concat_a_f64(const double* limbs, u64 m, u64 k, u32 s, double* out) {
    u64 kk = (u64)(s + 1) * k;
    FOR_EACH(t, m * kk) {
        u64 row = t / kk, col = t % kk, i = col / k, kc = col % k;
        out[t] = limbs[i * m * k + row * k + kc];
    }
}

extern "C" __global__ void concat_b_f64(const double* limbs, u64 k, u64 n, u32 s, double* out) {
    FOR_EACH(t, (u64)(s + 1) * k * n) {
        u64 i = t / (k * n), rest = t % (k * n);
        out[t] = limbs[((u64)s - i) * k * n + rest];
    }
}

extern "C" __global__ void concat_a_i8(const signed char* d, u64 m, u64 k, u32 s, signed char* out) {
    u64 kk = (u64)(s + 1) * k;
    FOR_EACH(t, m * kk) {
        u64 row = t / kk, col = t % kk, i = col / k, kc = col % k;
        out[t] = d[i * m * k + row * k + kc];
    }
}

extern "C" __global__ void concat_b_i8(const signed char* d, u64 k, u64 n, u32 s, signed char* out) {
    FOR_EACH(t, (u64)(s + 1) * k * n) {
        u64 i = t / (k * n), rest = t % (k * n);
        out[t] = d[((u64)s - i) * k * n + rest];
    }
}
