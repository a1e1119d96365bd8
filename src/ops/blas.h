/* blas.h - the one door to the BLAS library, for op kernels.
 *
 * Kernels call lego_sgemm instead of cblas_sgemm so that the BLAS header (and
 * its integer width) stays in one file, and so that the edge cases BLAS
 * implementations disagree on (empty matrices, K == 0) behave one way. */
#ifndef LEGO_OPS_BLAS_H
#define LEGO_OPS_BLAS_H

#include <stdint.h>

/* C = alpha * op(A) @ op(B) + beta * C, row-major, float32.
 * op(A) is (M,K): A is (M,K) with row stride lda, or (K,M) when trans_a.
 * op(B) is (K,N): B is (K,N) with row stride ldb, or (N,K) when trans_b.
 * C is (M,N) with row stride ldc. With beta == 0, C is not read (NaNs in it
 * do not propagate). */
void lego_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                int64_t ldc);

/* The same product through oneDNN's JIT sgemm where oneDNN is built in and
 * enabled (LEGO_DNNL), else lego_sgemm: faster on x86-64, but not the
 * BLAS's bits, so the portable path (the tests' oracle, and what
 * portable_kernels asks for) keeps lego_sgemm. Used by the Winograd
 * convolution (conv_wino.c). */
void lego_sgemm_jit(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                    int64_t ldc);

#endif
