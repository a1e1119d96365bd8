/* simd.h - the thin per-architecture layer of the op kernels.
 *
 * The build targets baseline x86-64 (SSE2), which leaves most of a modern
 * core's vector width unused. SIMD_CLONES on a hot loop's function compiles
 * it three times, for AVX-512, AVX2 and the baseline, and the dynamic loader
 * picks the best the CPU has (GCC's target_clones, through an ifunc). The
 * clones compute the same IEEE operations in the same order (no fast-math,
 * no contraction of a*b+c: see CMakeLists.txt), so they give the same bits.
 * Elsewhere (other compilers or CPUs, sanitizer builds) it expands to
 * nothing, and the plain C loops stay the portable path. */
#ifndef LEGO_OPS_SIMD_H
#define LEGO_OPS_SIMD_H

#include <stdint.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* A helper of SIMD_CLONES functions, inlined into each clone so that it is
 * compiled for that clone's instruction set. Small loops called many times
 * (a Winograd transform over the 8 tiles of a row) spent as long in the
 * call through the ifunc and its setup as in their arithmetic. */
#if defined(__GNUC__)
#define SIMD_INLINE static inline __attribute__((always_inline))
#else
#define SIMD_INLINE static inline
#endif

/* Relu and Clip as ONNX defines them, max(lo, v) then min(., hi): a NaN
 * stays NaN, and lo > hi gives hi. Written so that the vectorisers make it
 * two instructions; every fused epilogue and Clip uses it, so that fusing
 * changes no bits. */
static inline float clamp_f32(float v, float lo, float hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* Before a loop whose pointers the compiler cannot prove apart (several
 * output streams from one scratch buffer): they never overlap, vectorise.
 * GCC's pragma; other compilers leave the loop as written. */
#if defined(__GNUC__) && !defined(__clang__)
#define SIMD_IVDEP _Pragma("GCC ivdep")
#else
#define SIMD_IVDEP
#endif

/* Where GCC's vector extensions are there, eight floats as one value and
 * their shuffles: the compiler maps each to the clone's instructions
 * (AVX2's unpack, shufps and vperm2f128; two SSE halves in the baseline
 * clone; NEON on ARM). Elsewhere SIMD_VECTORS is undefined and callers
 * keep their scalar loops. */
#if defined(__GNUC__) && !defined(__clang__)
#define SIMD_VECTORS 1
typedef float simd_f8 __attribute__((vector_size(32)));
typedef int simd_i8 __attribute__((vector_size(32)));
/* the same, for loads and stores at any float's address */
typedef float simd_f8u __attribute__((vector_size(32), aligned(4), may_alias));

/* (by pointer: a 32-byte vector passed by value changes the baseline ABI) */
SIMD_INLINE void simd_load8(simd_f8 *v, const float *p) { *v = *(const simd_f8u *)p; }
SIMD_INLINE void simd_store8(float *p, const simd_f8 *v) { *(simd_f8u *)p = *v; }

/* n floats from src to dst (apart) for n up to 32, as at most four
 * vectors, the last overlapping the ones before; longer runs by memcpy
 * (without vectors, a plain loop).
 * GCC turns any copy loop, vectors or not, into a call to memcpy, which
 * cost more than the copy for the rows of a small map. */
SIMD_INLINE void simd_copy_short(float *restrict dst, const float *restrict src, int64_t n)
{
    typedef float f4u __attribute__((vector_size(16), aligned(4), may_alias));
    if (n > 32) {
        __builtin_memcpy(dst, src, sizeof(float) * (size_t)n);
    } else if (n >= 8) {
        *(simd_f8u *)dst = *(const simd_f8u *)src;
        if (n > 16)
            *(simd_f8u *)(dst + 8) = *(const simd_f8u *)(src + 8);
        if (n > 24)
            *(simd_f8u *)(dst + 16) = *(const simd_f8u *)(src + 16);
        *(simd_f8u *)(dst + n - 8) = *(const simd_f8u *)(src + n - 8);
    } else if (n >= 4) {
        *(f4u *)dst = *(const f4u *)src;
        *(f4u *)(dst + n - 4) = *(const f4u *)(src + n - 4);
    } else {
        for (int64_t j = 0; j < n; j++)
            dst[j] = src[j];
    }
}

/* v[i][j] becomes v[j][i]. */
SIMD_INLINE void simd_transpose8(simd_f8 v[8])
{
    const simd_i8 lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
    const simd_i8 lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const simd_i8 lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    simd_f8 t[8], u[8];
    for (int i = 0; i < 8; i += 2) /* pairs of rows interleaved within each half */
        t[i] = __builtin_shuffle(v[i], v[i + 1], lo), t[i + 1] = __builtin_shuffle(v[i], v[i + 1], hi);
    for (int i = 0; i < 8; i += 4) /* then pairs of pairs */
        for (int j = 0; j < 2; j++) {
            u[i + 2 * j] = __builtin_shuffle(t[i + j], t[i + j + 2], lo2);
            u[i + 2 * j + 1] = __builtin_shuffle(t[i + j], t[i + j + 2], hi2);
        }
    for (int j = 0; j < 4; j++) { /* then the halves */
        v[j] = __builtin_shuffle(u[j], u[j + 4], lo4);
        v[j + 4] = __builtin_shuffle(u[j], u[j + 4], hi4);
    }
}
#else
SIMD_INLINE void simd_copy_short(float *restrict dst, const float *restrict src, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        dst[j] = src[j];
}
#endif

#endif
