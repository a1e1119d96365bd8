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

#endif
