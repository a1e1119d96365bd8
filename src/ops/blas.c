/* blas.c - lego_sgemm over the CBLAS interface (BLIS in our builds). */
#include <cblas.h>

#include "blas.h"

/* Reference loop for sizes the BLAS integer type cannot express. */
static void sgemm_naive(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) {
                float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                acc += (double)a * b;
            }
            float *c = &C[i * ldc + j];
            *c = (float)(alpha * acc) + (beta == 0 ? 0 : beta * *c);
        }
    }
}

static int fits_blas_int(int64_t v)
{
    return (int64_t)(f77_int)v == v;
}

void lego_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) { /* BLAS libraries differ here; the product is empty, so C = beta * C */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
    if (!fits_blas_int(M) || !fits_blas_int(N) || !fits_blas_int(K) || !fits_blas_int(lda) ||
        !fits_blas_int(ldb) || !fits_blas_int(ldc)) {
        sgemm_naive(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (f77_int)M, (f77_int)N, (f77_int)K, alpha, A,
                (f77_int)lda, B, (f77_int)ldb, beta, C, (f77_int)ldc);
}
