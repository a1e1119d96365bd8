/* test_ops_gemm.c - Gemm and MatMul against direct loops: transposes,
 * alpha/beta, every broadcast of C, numpy batching and 1-D promotion; their
 * backward passes against finite differences over the same variants, and for
 * accumulating into the gradients they are given. Also the two GEMM doors
 * the kernels use (ops/blas.h), on strided matrices. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "op_test.h"
#include "ops/blas.h"

extern const op_desc op_desc_Gemm, op_desc_MatMul;

/* ---- Gemm --------------------------------------------------------------- */

/* One Gemm with C of shape cshape (rank crank < 0: no C) against the formula. */
static void gemm_case(int64_t m, int64_t n, int64_t k, int ta, int tb, float alpha, float beta,
                      int crank, const int64_t *cshape)
{
    lego_tensor a, b, cc, y = {0};
    int64_t ad[2] = {ta ? k : m, ta ? m : k}, bd[2] = {tb ? n : k, tb ? k : n};
    make(&a, LEGO_F32, 2, ad, 1);
    make(&b, LEGO_F32, 2, bd, 1);
    make(&cc, LEGO_F32, crank < 0 ? 0 : crank, cshape, 1);
    attrs l = {0};
    add_int(&l, "transA", ta);
    add_int(&l, "transB", tb);
    add_float(&l, "alpha", alpha);
    add_float(&l, "beta", beta);
    lego_tensor *in[3] = {&a, &b, &cc}, *out[1] = {&y};
    int64_t flops = 0;
    char what[160];
    snprintf(what, sizeof what, "gemm %lldx%lldx%lld tA %d tB %d alpha %g beta %g C rank %d",
             (long long)m, (long long)n, (long long)k, ta, tb, alpha, beta, crank);
    lego_status st = run(&op_desc_Gemm, &l, crank < 0 ? 2 : 3, in, 1, out, 1, &flops);
    if (st.code != LEGO_OK) {
        CHECK_OK(st);
        fprintf(stderr, "  in %s\n", what);
    } else {
        CHECK(y.rank == 2 && y.dims[0] == m && y.dims[1] == n);
        CHECK(flops == 2 * m * n * k + (crank < 0 ? 0 : m * n));
        const float *av = a.data, *bv = b.data, *cv = cc.data;
        float *want = malloc((size_t)(m * n) * sizeof *want);
        int64_t cm = crank == 2 ? cshape[0] : 1, cn = crank >= 1 ? cshape[crank - 1] : 1;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++)
                    s += (double)(ta ? av[p * m + i] : av[i * k + p]) *
                         (tb ? bv[j * k + p] : bv[p * n + j]);
                s *= alpha;
                if (crank >= 0)
                    s += beta * cv[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
                want[i * n + j] = (float)s;
            }
        check_close(y.data, want, (long)(m * n), 1e-5f, 1e-4f, what);
        free(want);
    }
    tensor_release(&a);
    tensor_release(&b);
    tensor_release(&cc);
    tensor_release(&y);
}

static void gemm_sweep(void)
{
    static const float alphas[] = {1.0f, 0.5f, -2.0f}, betas[] = {1.0f, 0.0f, 0.25f};
    for (int trial = 0; trial < 200; trial++) {
        int64_t m = 1 + rnd(7), n = 1 + rnd(7), k = 1 + rnd(7);
        int choice = (int)rnd(8);
        /* no C, scalar, (N), (1,N), (M,1), (M,N), (1,1), (1) */
        int ranks[8] = {-1, 0, 1, 2, 2, 2, 2, 1};
        int64_t shapes[8][2] = {{0}, {0}, {n}, {1, n}, {m, 1}, {m, n}, {1, 1}, {1}};
        gemm_case(m, n, k, (int)rnd(2), (int)rnd(2), alphas[rnd(3)], betas[rnd(3)],
                  ranks[choice], shapes[choice]);
    }
    int64_t c[1] = {50};
    gemm_case(37, 50, 64, 0, 1, 1.0f, 1.0f, 1, c); /* a fully connected layer */
}

/* beta = 0 ignores C entirely, as onnxruntime does: no NaN leaks through. */
static void gemm_beta_zero(void)
{
    lego_tensor a, b, cc, y = {0};
    int64_t ad[2] = {2, 3}, bd[2] = {3, 2}, cd[2] = {2, 2};
    make(&a, LEGO_F32, 2, ad, 1);
    make(&b, LEGO_F32, 2, bd, 1);
    make(&cc, LEGO_F32, 2, cd, 1);
    ((float *)cc.data)[0] = NAN;
    ((float *)cc.data)[1] = NAN;
    attrs l = {0};
    add_float(&l, "beta", 0.0f);
    lego_tensor *in[3] = {&a, &b, &cc}, *out[1] = {&y};
    CHECK_OK(run(&op_desc_Gemm, &l, 3, in, 1, out, 1, NULL));
    int finite = 1;
    for (int i = 0; i < 4 && y.data; i++)
        finite &= isfinite(((float *)y.data)[i]) != 0;
    CHECK(y.data && finite);
    tensor_release(&a);
    tensor_release(&b);
    tensor_release(&cc);
    tensor_release(&y);
}

static void gemm_errors(void)
{
    lego_tensor a, b, cc, y = {0};
    int64_t ad[2] = {2, 3}, bd[2] = {4, 5}, a3[3] = {1, 2, 3}, cd[2] = {3, 2};
    make(&a, LEGO_F32, 2, ad, 0);
    make(&b, LEGO_F32, 2, bd, 0);
    lego_tensor *in[3] = {&a, &b, NULL}, *out[1] = {&y};
    attrs none = {0};
    CHECK_FAILS(run(&op_desc_Gemm, &none, 2, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "A is 2x3 (transA=0) and B is 4x5 (transB=0): inner dimensions 3 and 4 differ");
    attrs tb = {0};
    add_int(&tb, "transB", 1);
    bd[0] = 5;
    bd[1] = 3;
    make(&b, LEGO_F32, 2, bd, 0);
    CHECK_OK(run(&op_desc_Gemm, &tb, 2, in, 1, out, 0, NULL));
    CHECK(y.dims[0] == 2 && y.dims[1] == 5);
    make(&cc, LEGO_F32, 2, cd, 0);
    in[2] = &cc;
    CHECK_FAILS(run(&op_desc_Gemm, &tb, 3, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "C has shape 3x2, which does not broadcast to 2x5");
    in[2] = NULL;
    make(&a, LEGO_F32, 3, a3, 0);
    CHECK_FAILS(run(&op_desc_Gemm, &tb, 2, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "A is 1x2x3 and B is 5x3, both must have rank 2");
    attrs bad = {0};
    add_float(&bad, "transA", 1.0f);
    make(&a, LEGO_F32, 2, ad, 0);
    CHECK_FAILS(run(&op_desc_Gemm, &bad, 2, in, 1, out, 0, NULL), LEGO_ERR_FORMAT,
                "attribute 'transA' should be an int");
}

/* ---- MatMul ------------------------------------------------------------- */

static void matmul_sweep(void)
{
    for (int trial = 0; trial < 300; trial++) {
        int ra = 1 + (int)rnd(4), rb = 1 + (int)rnd(4);
        int na = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0, nb = na > nbb ? na : nbb;
        int64_t bat[2], m = 1 + rnd(5), k = rnd(6) == 0 ? 0 : 1 + rnd(5), n = 1 + rnd(5);
        for (int i = 0; i < nb; i++)
            bat[i] = 1 + rnd(3);
        int64_t ad[4], bd[4];
        for (int i = 0; i < na; i++)
            ad[i] = rnd(3) == 0 ? 1 : bat[nb - na + i];
        for (int i = 0; i < nbb; i++)
            bd[i] = rnd(3) == 0 ? 1 : bat[nb - nbb + i];
        /* the broadcast batch is the larger of the two, 1 where both are 1 */
        for (int i = 0; i < nb; i++) {
            int ia = i - (nb - na), ib = i - (nb - nbb);
            int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
            bat[i] = da > db ? da : db;
        }
        if (ra == 1) {
            ad[0] = k;
        } else {
            ad[ra - 2] = m;
            ad[ra - 1] = k;
        }
        if (rb == 1) {
            bd[0] = k;
        } else {
            bd[rb - 2] = k;
            bd[rb - 1] = n;
        }
        int64_t mm = ra == 1 ? 1 : m, nn = rb == 1 ? 1 : n;
        lego_tensor a, b, y = {0};
        make(&a, LEGO_F32, ra, ad, 1);
        make(&b, LEGO_F32, rb, bd, 1);
        lego_tensor *in[2] = {&a, &b}, *out[1] = {&y};
        attrs none = {0};
        char what[160], sa[64], sb[64];
        snprintf(what, sizeof what, "matmul trial %d: %s @ %s", trial,
                 tensor_shape_str(&a, sa, sizeof sa), tensor_shape_str(&b, sb, sizeof sb));
        int64_t flops = 0;
        lego_status st = run(&op_desc_MatMul, &none, 2, in, 1, out, 1, &flops);
        if (st.code != LEGO_OK) {
            CHECK_OK(st);
            fprintf(stderr, "  in %s\n", what);
        } else {
            int64_t want_d[4];
            int wr = 0;
            for (int i = 0; i < nb; i++)
                want_d[wr++] = bat[i];
            if (ra >= 2)
                want_d[wr++] = m;
            if (rb >= 2)
                want_d[wr++] = n;
            lego_tensor want;
            make(&want, LEGO_F32, wr, want_d, 1);
            int same = tensor_same_shape(&y, &want);
            CHECK(same);
            if (!same)
                fprintf(stderr, "  %s: got %s\n", what, tensor_shape_str(&y, sa, sizeof sa));
            int64_t total = 1;
            for (int i = 0; i < nb; i++)
                total *= bat[i];
            CHECK(flops == 2 * total * mm * nn * k);
            float *wv = want.data;
            const float *av = a.data, *bv = b.data;
            for (int64_t t = 0; t < total && same; t++) {
                /* batch index of t, then the offset of each operand's matrix */
                int64_t idx[2], rem = t, oa = 0, ob = 0, sta = mm * k, stb = k * nn;
                for (int i = nb - 1; i >= 0; i--) {
                    idx[i] = rem % bat[i];
                    rem /= bat[i];
                }
                for (int i = na - 1; i >= 0; i--) {
                    oa += (ad[i] == 1 ? 0 : idx[nb - na + i]) * sta;
                    sta *= ad[i];
                }
                for (int i = nbb - 1; i >= 0; i--) {
                    ob += (bd[i] == 1 ? 0 : idx[nb - nbb + i]) * stb;
                    stb *= bd[i];
                }
                for (int64_t i = 0; i < mm; i++)
                    for (int64_t j = 0; j < nn; j++) {
                        double s = 0;
                        for (int64_t p = 0; p < k; p++)
                            s += (double)av[oa + i * k + p] * bv[ob + p * nn + j];
                        wv[(t * mm + i) * nn + j] = (float)s;
                    }
            }
            if (same)
                check_close(y.data, want.data, (long)lego_tensor_numel(&want), 1e-5f, 1e-4f, what);
            /* both inputs' gradients, broadcast batch axes summed; linear, so
             * the differences are exact up to float rounding */
            gradcheck(&op_desc_MatMul, &none, 17, 2, in, 1, 3u, 0, 1e-2f, 1e-3f, 1e-3f, 24, what);
            tensor_release(&want);
        }
        tensor_release(&a);
        tensor_release(&b);
        tensor_release(&y);
    }
}

static void matmul_errors(void)
{
    lego_tensor a, b, y = {0};
    int64_t ad[3] = {2, 3, 4}, bd[3] = {3, 5, 6};
    make(&a, LEGO_F32, 3, ad, 0);
    make(&b, LEGO_F32, 3, bd, 0);
    lego_tensor *in[2] = {&a, &b}, *out[1] = {&y};
    attrs none = {0};
    CHECK_FAILS(run(&op_desc_MatMul, &none, 2, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "A is 2x3x4 and B is 3x5x6: inner dimensions 4 and 5 differ");
    bd[1] = 4;
    make(&b, LEGO_F32, 3, bd, 0);
    CHECK_FAILS(run(&op_desc_MatMul, &none, 2, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "batch dimensions of A (2x3x4) and B (3x4x6) do not broadcast");
    int64_t v4 = 4;
    make(&b, LEGO_F32, 1, &v4, 0);
    CHECK_OK(run(&op_desc_MatMul, &none, 2, in, 1, out, 0, NULL));
    CHECK(y.rank == 2 && y.dims[0] == 2 && y.dims[1] == 3);
    make(&a, LEGO_F32, 1, &v4, 0);
    CHECK_OK(run(&op_desc_MatMul, &none, 2, in, 1, out, 0, NULL));
    CHECK(y.rank == 0);
    make(&a, LEGO_F32, 0, ad, 0);
    CHECK_FAILS(run(&op_desc_MatMul, &none, 2, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "MatMul needs rank at least 1");
    make(&a, LEGO_I64, 1, &v4, 0);
    CHECK_FAILS(run(&op_desc_MatMul, &none, 2, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "input 0 is int64, expected float32");
}

/* ---- backward ----------------------------------------------------------- */

static void gemm_grads(void)
{
    /* every shape C may take for (M,N) = (3,4); rank -1: no C */
    static const struct {
        int rank;
        int64_t dims[2];
    } cs[] = {{-1, {0, 0}}, {0, {0, 0}}, {1, {1, 0}}, {1, {4, 0}}, {2, {1, 1}},
              {2, {1, 4}},  {2, {3, 1}}, {2, {3, 4}}};
    static const float ab[][2] = {{1.0f, 1.0f}, {0.5f, -1.5f}, {-2.0f, 0.0f}};
    int64_t m = 3, n = 4, k = 2;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t v = 0; v < sizeof ab / sizeof ab[0]; v++)
                for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
                    lego_tensor a, b, cc;
                    int64_t ad[2] = {ta ? k : m, ta ? m : k}, bd[2] = {tb ? n : k, tb ? k : n};
                    make(&a, LEGO_F32, 2, ad, 1);
                    make(&b, LEGO_F32, 2, bd, 1);
                    make(&cc, LEGO_F32, cs[ci].rank < 0 ? 0 : cs[ci].rank, cs[ci].dims, 1);
                    attrs l = {0};
                    add_int(&l, "transA", ta);
                    add_int(&l, "transB", tb);
                    add_float(&l, "alpha", ab[v][0]);
                    add_float(&l, "beta", ab[v][1]);
                    lego_tensor *in[3] = {&a, &b, &cc};
                    int n_in = cs[ci].rank < 0 ? 2 : 3;
                    char what[128];
                    snprintf(what, sizeof what,
                             "Gemm backward, tA %d tB %d alpha %g beta %g C rank %d %lldx%lld", ta,
                             tb, ab[v][0], ab[v][1], cs[ci].rank, (long long)cs[ci].dims[0],
                             (long long)cs[ci].dims[1]);
                    gradcheck(&op_desc_Gemm, &l, 17, n_in, in, 1, 7u, 0, 1e-2f, 1e-3f, 1e-3f, 100,
                              what);
                    check_accumulates(&op_desc_Gemm, &l, n_in, in, 7u, 0, what);
                    tensor_release(&a);
                    tensor_release(&b);
                    tensor_release(&cc);
                }
}

static void matmul_grads(void)
{
    /* shapes of A and B; 0 ends a shape */
    static const int64_t cases[][2][5] = {
        {{5, 0}, {5, 0}},                   /* vector dot vector */
        {{4, 0}, {4, 3, 0}},                /* vector @ matrix */
        {{3, 4, 0}, {4, 0}},                /* matrix @ vector */
        {{3, 4, 0}, {4, 2, 0}},             /* plain */
        {{2, 3, 4, 0}, {4, 2, 0}},          /* batch folded into rows */
        {{3, 4, 0}, {2, 4, 5, 0}},          /* A broadcast over B's batch */
        {{2, 3, 4, 0}, {2, 4, 2, 0}},       /* matching batch */
        {{2, 1, 3, 4, 0}, {3, 4, 2, 0}},    /* both broadcast */
        {{1, 3, 2, 0}, {3, 2, 4, 0}},       /* A's batch of one */
        {{3, 2, 4, 0}, {1, 4, 2, 0}},       /* B's batch of one */
        {{2, 3, 4, 0}, {4, 0}},             /* batched @ vector */
        {{4, 0}, {2, 3, 4, 2, 0}},          /* vector @ batched */
        {{2, 2, 3, 2, 0}, {2, 2, 2, 3, 0}}, /* rank 4 both */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lego_tensor t[2];
        for (int j = 0; j < 2; j++) {
            int r = 0;
            while (cases[i][j][r])
                r++;
            make(&t[j], LEGO_F32, r, cases[i][j], 1);
        }
        lego_tensor *in[2] = {&t[0], &t[1]};
        attrs none = {0};
        char what[128], sa[64], sb[64];
        snprintf(what, sizeof what, "MatMul backward, %s @ %s",
                 tensor_shape_str(&t[0], sa, sizeof sa), tensor_shape_str(&t[1], sb, sizeof sb));
        gradcheck(&op_desc_MatMul, &none, 17, 2, in, 1, 3u, 0, 1e-2f, 1e-3f, 1e-3f, 100, what);
        check_accumulates(&op_desc_MatMul, &none, 2, in, 3u, 0, what);
        tensor_release(&t[0]);
        tensor_release(&t[1]);
    }
}

/* ---- lego_sgemm and lego_sgemm_jit ---------------------------------------- */

/* One product through `gemm` on row strides wider than the matrices (the
 * Winograd kernels' case: C is a window of a wider buffer), against a
 * double loop: C's other columns untouched, and with beta = 0 a NaN in C
 * ignored. */
typedef void (*sgemm_fn)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                         const float *, int64_t, float, float *, int64_t);

static void sgemm_case(sgemm_fn gemm, const char *name, int64_t m, int64_t n, int64_t k, int ta, int tb,
                       float beta)
{
    int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int64_t lda = ac + 3, ldb = bc + 2, ldc = n + 5;
    float *a = malloc(sizeof(float) * (size_t)(ar * lda)), *b = malloc(sizeof(float) * (size_t)(br * ldb));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc)), *c0 = malloc(sizeof(float) * (size_t)(m * ldc));
    for (int64_t i = 0; i < ar * lda; i++)
        a[i] = (float)rnd(2001) / 1000.0f - 1.0f;
    for (int64_t i = 0; i < br * ldb; i++)
        b[i] = (float)rnd(2001) / 1000.0f - 1.0f;
    for (int64_t i = 0; i < m * ldc; i++)
        c0[i] = c[i] = beta == 0 && i % 7 == 0 ? NAN : (float)rnd(2001) / 1000.0f - 1.0f;
    gemm(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, beta, c, ldc);
    double worst = 0;
    bool others = true;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < ldc; j++) {
            if (j >= n) {
                others = others && memcmp(&c[i * ldc + j], &c0[i * ldc + j], sizeof(float)) == 0;
                continue;
            }
            double want = 0;
            for (int64_t p = 0; p < k; p++)
                want += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            want = 0.75 * want + (beta == 0 ? 0 : beta * (double)c0[i * ldc + j]);
            double err = fabs(c[i * ldc + j] - want);
            if (err != err) /* a NaN let through */
                err = INFINITY;
            if (err > worst)
                worst = err;
        }
    if (!(worst <= 1e-5 * (double)(k + 1)) || !others)
        fprintf(stderr, "  %s %lldx%lldx%lld tA %d tB %d beta %g: error %g, other columns %s\n", name,
                (long long)m, (long long)n, (long long)k, ta, tb, beta, worst, others ? "kept" : "written");
    CHECK(worst <= 1e-5 * (double)(k + 1));
    CHECK(others);
    free(a), free(b), free(c), free(c0);
}

static void sgemm_doors(void)
{
    for (int trial = 0; trial < 60; trial++) {
        int64_t m = 1 + rnd(40), n = 1 + rnd(70), k = 1 + rnd(300);
        int ta = (int)rnd(2), tb = (int)rnd(2);
        float beta = trial % 3 == 0 ? 0.0f : trial % 3 == 1 ? 1.0f : 0.5f;
        sgemm_case(lego_sgemm, "lego_sgemm", m, n, k, ta, tb, beta);
        sgemm_case(lego_sgemm_jit, "lego_sgemm_jit", m, n, k, ta, tb, beta);
    }
    /* the Winograd products' shapes: U x V and dY x V^T */
    sgemm_case(lego_sgemm_jit, "lego_sgemm_jit", 64, 96, 64, 0, 0, 0.0f);
    sgemm_case(lego_sgemm_jit, "lego_sgemm_jit", 103, 128, 512, 0, 0, 0.0f);
    sgemm_case(lego_sgemm_jit, "lego_sgemm_jit", 64, 45, 384, 0, 1, 1.0f);
}

int main(void)
{
    test_seed(99u);
    sgemm_doors();
    gemm_sweep();
    gemm_beta_zero();
    gemm_errors();
    matmul_sweep();
    matmul_errors();
    gemm_grads();
    matmul_grads();
    return harness_finish();
}
