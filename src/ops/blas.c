/* blas.c - lego_sgemm over the CBLAS interface (BLIS in our builds), and
 * lego_sgemm_jit over oneDNN's sgemm where oneDNN is built in.
 *
 * The BLAS runs single-threaded: our kernels own the threads and call it
 * from several of them at once (core/threads.h). Nesting a multithreaded
 * BLAS inside that would oversubscribe the cores, so BLIS is told to use one
 * thread whatever BLIS_NUM_THREADS says. */
#include <cblas.h>
#include <pthread.h>

#include "blas.h"

#ifdef LEGO_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>

#include "conv_dnnl.h"
#include "conv_dnnl_impl.h"
#endif

#ifdef BLIS_TYPE_DEFS_H /* BLIS's cblas.h carries its types but not this */
void bli_thread_set_num_threads(dim_t n_threads);

static void blas_single_thread(void) { bli_thread_set_num_threads(1); }
#else
static void blas_single_thread(void) {}
#endif

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

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
    pthread_once(&blas_once, blas_single_thread);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (f77_int)M, (f77_int)N, (f77_int)K, alpha, A,
                (f77_int)lda, B, (f77_int)ldb, beta, C, (f77_int)ldc);
}

/* On one AVX2 Zen 3 core oneDNN's JIT sgemm ran most shapes of the Winograd
 * products (channels x channels by channels x tiles) 10-25% faster than
 * BLIS (512 x 512 x 128: 93 against 75 GFLOP/s; 128 x 128 x 128 was 4%
 * slower): whole Winograd layers 2-8% faster forward, 6-20% in the weight
 * gradient. It is kept to the calling thread as conv_dnnl.c keeps oneDNN's
 * convolutions. */
void lego_sgemm_jit(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                    int64_t ldc)
{
#ifdef LEGO_HAVE_DNNL
    if (M > 0 && N > 0 && K > 0 && dnnl_conv_enabled()) {
        conv_dnnl_one_thread();
        if (dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C,
                       ldc) == dnnl_success)
            return;
    }
#endif
    lego_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
