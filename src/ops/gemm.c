/* gemm.c - Gemm (the fully connected layer) and MatMul (numpy matmul), float32,
 * forward and backward.
 *
 * Both hand the arithmetic to lego_sgemm. MatMul loops over the broadcast
 * batch axes; when B has none, A's batch folds into the row count and the
 * whole product is one GEMM. Backward is two more GEMMs per product,
 * accumulating (beta = 1) into the gradients; an operand broadcast over
 * batch axes (or C over rows or columns) receives the sum over them. */
#include "blas.h"
#include "op.h"

typedef struct gemm_params {
    int64_t m, n, k;
    int trans_a, trans_b;
    float alpha, beta;
    int has_c;
    int64_t c_rs, c_cs; /* C's strides in the (M,N) view; 0 along broadcast axes */
} gemm_params;

typedef struct matmul_params {
    int64_t m, n, k;
    int nb;                        /* batch axes of the output */
    int64_t batch[LEGO_MAX_RANK];  /* output batch dims */
    int64_t a_str[LEGO_MAX_RANK];  /* A's batch strides in elements; 0 where broadcast */
    int64_t b_str[LEGO_MAX_RANK];
    int fold; /* B has no batch axes: one GEMM of (batch*M, K) by (K, N) */
} matmul_params;

static lego_status gemm_prepare(op_call *c)
{
    gemm_params *p = c->params;
    LEGO_TRY(op_expect_dtype(c, 0, LEGO_F32));
    LEGO_TRY(op_expect_dtype(c, 1, LEGO_F32));
    const lego_tensor *a = c->in[0], *b = c->in[1];
    const lego_tensor *ct = op_input(c, 2);
    char sa[96], sb[96], sc[96];
    if (a->rank != 2 || b->rank != 2)
        return op_error(c, LEGO_ERR_SHAPE, "A is %s and B is %s, both must have rank 2",
                        tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
    int64_t ta, tb;
    LEGO_TRY(attr_get_int(c->attrs, "transA", 0, &ta));
    LEGO_TRY(attr_get_int(c->attrs, "transB", 0, &tb));
    LEGO_TRY(attr_get_float(c->attrs, "alpha", 1.0f, &p->alpha));
    LEGO_TRY(attr_get_float(c->attrs, "beta", 1.0f, &p->beta));
    p->trans_a = ta != 0;
    p->trans_b = tb != 0;
    p->m = a->dims[p->trans_a ? 1 : 0];
    p->k = a->dims[p->trans_a ? 0 : 1];
    p->n = b->dims[p->trans_b ? 0 : 1];
    int64_t kb = b->dims[p->trans_b ? 1 : 0];
    if (kb != p->k)
        return op_error(c, LEGO_ERR_SHAPE,
                        "A is %s (transA=%d) and B is %s (transB=%d): inner dimensions %lld and "
                        "%lld differ",
                        tensor_shape_str(a, sa, sizeof sa), p->trans_a,
                        tensor_shape_str(b, sb, sizeof sb), p->trans_b, (long long)p->k,
                        (long long)kb);
    p->has_c = ct != NULL;
    if (ct) {
        LEGO_TRY(op_expect_dtype(c, 2, LEGO_F32));
        /* unidirectional broadcast: C's dims align right with (M,N) */
        int64_t cm = ct->rank == 2 ? ct->dims[0] : 1;
        int64_t cn = ct->rank >= 1 ? ct->dims[ct->rank - 1] : 1;
        if (ct->rank > 2 || (cm != 1 && cm != p->m) || (cn != 1 && cn != p->n))
            return op_error(c, LEGO_ERR_SHAPE, "C has shape %s, which does not broadcast to %lldx%lld",
                            tensor_shape_str(ct, sc, sizeof sc), (long long)p->m, (long long)p->n);
        p->c_cs = cn == 1 ? 0 : 1;
        p->c_rs = cm == 1 ? 0 : cn;
    }
    int64_t dims[2] = {p->m, p->n};
    tensor_set_shape(c->out[0], LEGO_F32, 2, dims);
    return lego_ok();
}

// a is (M,K) or (K,M) with transA, b is (K,N) or (N,K) with transB, c broadcasts to (M,N), y is (M,N)
static void gemm_forward(const op_call *c)
{
    const gemm_params *p = c->params;
    const float *a = c->in[0]->data, *b = c->in[1]->data;
    float *y = c->out[0]->data;
    float beta = 0.0f;
    /* beta == 0 skips C entirely, so NaNs or infinities in it do not leak */
    if (p->has_c && p->beta != 0.0f) {
        const float *cv = c->in[2]->data;
        for (int64_t i = 0; i < p->m; i++)
            for (int64_t j = 0; j < p->n; j++)
                y[i * p->n + j] = p->beta * cv[i * p->c_rs + j * p->c_cs];
        beta = 1.0f;
    }
    lego_sgemm(p->trans_a, p->trans_b, p->m, p->n, p->k, p->alpha, a, p->trans_a ? p->m : p->k, b,
               p->trans_b ? p->k : p->n, beta, y, p->n);
}

/* With Y = alpha*op(A)·op(B) + beta*C:
 *   d op(A) = alpha * dY·op(B)ᵀ   (M,K), transposed into dA when transA,
 *   d op(B) = alpha * op(A)ᵀ·dY   (K,N), transposed into dB when transB,
 *   dC      = beta * dY summed over the axes C is broadcast along.
 * dy is (M,N); da, db, dc have the shapes of a, b and c. */
static void gemm_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const gemm_params *p = c->params;
    if (!dout[0])
        return;
    const float *a = c->in[0]->data, *b = c->in[1]->data, *dy = dout[0]->data;
    int64_t m = p->m, n = p->n, k = p->k;
    int64_t lda = p->trans_a ? m : k, ldb = p->trans_b ? k : n;
    if (din[0]) {
        float *da = din[0]->data;
        if (!p->trans_a) /* (M,K) += dY·op(B)ᵀ */
            lego_sgemm(0, !p->trans_b, m, k, n, p->alpha, dy, n, b, ldb, 1.0f, da, k);
        else /* (K,M) += op(B)·dYᵀ */
            lego_sgemm(p->trans_b, 1, k, m, n, p->alpha, b, ldb, dy, n, 1.0f, da, m);
    }
    if (din[1]) {
        float *db = din[1]->data;
        if (!p->trans_b) /* (K,N) += op(A)ᵀ·dY */
            lego_sgemm(!p->trans_a, 0, k, n, m, p->alpha, a, lda, dy, n, 1.0f, db, n);
        else /* (N,K) += dYᵀ·op(A) */
            lego_sgemm(1, p->trans_a, n, k, m, p->alpha, dy, n, a, lda, 1.0f, db, k);
    }
    /* the forward skips C when beta is 0; so does its gradient */
    if (p->has_c && c->n_in > 2 && din[2] && p->beta != 0.0f) {
        float *dc = din[2]->data;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                dc[i * p->c_rs + j * p->c_cs] += p->beta * dy[i * n + j];
    }
}

static int64_t gemm_flops(const op_call *c)
{
    const gemm_params *p = c->params;
    return 2 * p->m * p->n * p->k + (p->has_c ? p->m * p->n : 0);
}

static lego_status matmul_prepare(op_call *c)
{
    matmul_params *p = c->params;
    LEGO_TRY(op_expect_dtype(c, 0, LEGO_F32));
    LEGO_TRY(op_expect_dtype(c, 1, LEGO_F32));
    const lego_tensor *a = c->in[0], *b = c->in[1];
    char sa[96], sb[96];
    if (a->rank < 1 || b->rank < 1)
        return op_error(c, LEGO_ERR_SHAPE, "A is %s and B is %s; MatMul needs rank at least 1",
                        tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
    /* a 1-D A is a row (1,K), a 1-D B a column (K,1); that axis is dropped from the output */
    p->m = a->rank >= 2 ? a->dims[a->rank - 2] : 1;
    p->k = a->dims[a->rank - 1];
    int64_t kb = b->rank >= 2 ? b->dims[b->rank - 2] : b->dims[0];
    p->n = b->rank >= 2 ? b->dims[b->rank - 1] : 1;
    if (kb != p->k)
        return op_error(c, LEGO_ERR_SHAPE, "A is %s and B is %s: inner dimensions %lld and %lld differ",
                        tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb),
                        (long long)p->k, (long long)kb);

    int na = a->rank > 2 ? a->rank - 2 : 0, nbb = b->rank > 2 ? b->rank - 2 : 0;
    p->nb = na > nbb ? na : nbb;
    int64_t sa_acc = p->m * p->k, sb_acc = p->k * p->n;
    for (int i = p->nb - 1; i >= 0; i--) {
        int ia = i - (p->nb - na), ib = i - (p->nb - nbb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return op_error(c, LEGO_ERR_SHAPE, "batch dimensions of A (%s) and B (%s) do not broadcast",
                            tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
        p->batch[i] = da == 1 ? db : da;
        p->a_str[i] = da == 1 ? 0 : sa_acc;
        p->b_str[i] = db == 1 ? 0 : sb_acc;
        sa_acc *= da;
        sb_acc *= db;
    }
    p->fold = nbb == 0;

    int64_t dims[LEGO_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < p->nb; i++)
        dims[rank++] = p->batch[i];
    if (a->rank >= 2)
        dims[rank++] = p->m;
    if (b->rank >= 2)
        dims[rank++] = p->n;
    tensor_set_shape(c->out[0], LEGO_F32, rank, dims);
    return lego_ok();
}

/* The number of (M,N) products: the product of the output batch dims. */
static int64_t batch_total(const matmul_params *p)
{
    int64_t total = 1;
    for (int i = 0; i < p->nb; i++)
        total *= p->batch[i];
    return total;
}

// a is (...,M,K) or (K), b is (...,K,N) or (K), y is (broadcast...,M,N) less the 1-D axes
static void matmul_forward(const op_call *c)
{
    const matmul_params *p = c->params;
    const float *a = c->in[0]->data, *b = c->in[1]->data;
    float *y = c->out[0]->data;
    int64_t total = batch_total(p);
    if (p->fold) {
        lego_sgemm(0, 0, total * p->m, p->n, p->k, 1.0f, a, p->k, b, p->n, 0.0f, y, p->n);
        return;
    }
    int64_t idx[LEGO_MAX_RANK] = {0};
    for (int64_t t = 0; t < total; t++) {
        int64_t oa = 0, ob = 0;
        for (int i = 0; i < p->nb; i++) {
            oa += idx[i] * p->a_str[i];
            ob += idx[i] * p->b_str[i];
        }
        lego_sgemm(0, 0, p->m, p->n, p->k, 1.0f, a + oa, p->k, b + ob, p->n, 0.0f,
                   y + t * p->m * p->n, p->n);
        for (int i = p->nb - 1; i >= 0 && ++idx[i] == p->batch[i]; i--)
            idx[i] = 0;
    }
}

/* Per product, dA += dY·Bᵀ and dB += Aᵀ·dY; where an operand is broadcast
 * over batch axes its gradient gathers every product it took part in (its
 * batch stride is 0 there). A 1-D operand has the same memory as its
 * promoted (1,K) or (K,1) matrix, so it needs nothing special.
 * dy is the output's shape; da, db have the shapes of a and b. */
static void matmul_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const matmul_params *p = c->params;
    if (!dout[0] || (!din[0] && !din[1]))
        return;
    const float *a = c->in[0]->data, *b = c->in[1]->data, *dy = dout[0]->data;
    float *da = din[0] ? din[0]->data : NULL, *db = din[1] ? din[1]->data : NULL;
    int64_t total = batch_total(p);
    if (p->fold) { /* A and dY as (batch*M, K) and (batch*M, N) */
        if (da)
            lego_sgemm(0, 1, total * p->m, p->k, p->n, 1.0f, dy, p->n, b, p->n, 1.0f, da, p->k);
        if (db)
            lego_sgemm(1, 0, p->k, p->n, total * p->m, 1.0f, a, p->k, dy, p->n, 1.0f, db, p->n);
        return;
    }
    int64_t idx[LEGO_MAX_RANK] = {0};
    for (int64_t t = 0; t < total; t++) {
        int64_t oa = 0, ob = 0;
        for (int i = 0; i < p->nb; i++) {
            oa += idx[i] * p->a_str[i];
            ob += idx[i] * p->b_str[i];
        }
        const float *dyt = dy + t * p->m * p->n;
        if (da)
            lego_sgemm(0, 1, p->m, p->k, p->n, 1.0f, dyt, p->n, b + ob, p->n, 1.0f, da + oa, p->k);
        if (db)
            lego_sgemm(1, 0, p->k, p->n, p->m, 1.0f, a + oa, p->k, dyt, p->n, 1.0f, db + ob, p->n);
        for (int i = p->nb - 1; i >= 0 && ++idx[i] == p->batch[i]; i--)
            idx[i] = 0;
    }
}

static int64_t matmul_flops(const op_call *c)
{
    const matmul_params *p = c->params;
    return 2 * batch_total(p) * p->m * p->n * p->k;
}

const op_desc op_desc_Gemm = {
    .name = "Gemm",
    .min_in = 2, .max_in = 3,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(gemm_params),
    .prepare = gemm_prepare,
    .forward = gemm_forward,
    .flops = gemm_flops,
    .backward = gemm_backward,
};

const op_desc op_desc_MatMul = {
    .name = "MatMul",
    .min_in = 2, .max_in = 2,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(matmul_params),
    .prepare = matmul_prepare,
    .forward = matmul_forward,
    .flops = matmul_flops,
    .backward = matmul_backward,
};
