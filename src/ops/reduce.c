/* reduce.c - ReduceMean, ReduceMax and ReduceSum over float32.
 *
 * Axes come from the `axes` attribute or, from opset 18 (ReduceSum: 13),
 * from an optional constant input; none means every axis. keepdims (default 1)
 * keeps reduced dimensions as size 1. Sums accumulate in double so a mean
 * over a large feature map does not drift. Backward spreads dy back over
 * each reduced group (ReduceMax: to the one winning element). */
#include <math.h>
#include <string.h>

#include "op.h"
#include "simd.h"

#define LANES 8

SIMD_CLONES
double op_sum_f32(const float *x, int64_t n)
{
    double s[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            s[j] += x[i + j];
    for (; i < n; i++)
        s[0] += x[i];
    double sum = 0;
    for (int j = 0; j < LANES; j++)
        sum += s[j];
    return sum;
}

enum { RED_MEAN, RED_MAX, RED_SUM };

typedef struct reduce_params {
    int kind;
    bool reduced[LEGO_MAX_RANK]; /* true where the input dimension is reduced */
} reduce_params;

static lego_status reduce_prepare(op_call *c, int kind)
{
    reduce_params *p = c->params;
    memset(p, 0, sizeof *p);
    p->kind = kind;
    LEGO_TRY(op_expect_dtype(c, 0, LEGO_F32));
    const lego_tensor *x = c->in[0];
    int64_t keepdims, noop_empty;
    LEGO_TRY(attr_get_int(c->attrs, "keepdims", 1, &keepdims));
    LEGO_TRY(attr_get_int(c->attrs, "noop_with_empty_axes", 0, &noop_empty));

    int64_t axes_buf[LEGO_MAX_RANK];
    const int64_t *axes = NULL;
    int n_axes = 0;
    const lego_tensor *ax = op_input(c, 1);
    if (ax) {
        if (!ax->data)
            return op_error(c, LEGO_ERR_UNSUPPORTED, "axes input must be a constant");
        int64_t n = lego_tensor_numel(ax);
        if (ax->rank > 1 || n > x->rank)
            return op_error(c, LEGO_ERR_SHAPE, "axes must be a 1-D list of at most %d axes",
                            x->rank);
        for (int64_t i = 0; i < n; i++)
            axes_buf[i] = tensor_get_i64(ax, i);
        axes = axes_buf;
        n_axes = (int)n;
    } else {
        LEGO_TRY(attr_get_ints(c->attrs, "axes", &axes, &n_axes));
    }

    if (n_axes == 0) {
        if (!noop_empty)
            for (int d = 0; d < x->rank; d++)
                p->reduced[d] = true;
    }
    for (int i = 0; i < n_axes; i++) {
        int a;
        LEGO_TRY(op_axis_once(c, axes[i], x->rank, p->reduced, &a));
    }

    int64_t dims[LEGO_MAX_RANK];
    int rank = 0;
    for (int d = 0; d < x->rank; d++) {
        if (!p->reduced[d])
            dims[rank++] = x->dims[d];
        else if (keepdims)
            dims[rank++] = 1;
    }
    tensor_set_shape(c->out[0], LEGO_F32, rank, dims);
    return lego_ok();
}

/* x split into the kept dimensions (walked in order, which is y's
 * row-major order whether or not keepdims) and the reduced ones (walked in
 * full for each y element). */
typedef struct reduce_walk {
    int nk, nr;
    int64_t n_out, n_red;
    int64_t kdims[LEGO_MAX_RANK], kstr[LEGO_MAX_RANK], rdims[LEGO_MAX_RANK], rstr[LEGO_MAX_RANK];
} reduce_walk;

static void walk_init(const reduce_params *p, const lego_tensor *x, reduce_walk *w)
{
    int64_t strides[LEGO_MAX_RANK];
    tensor_strides(x, strides);
    w->nk = w->nr = 0;
    w->n_out = w->n_red = 1;
    for (int d = 0; d < x->rank; d++) {
        if (p->reduced[d]) {
            w->rdims[w->nr] = x->dims[d];
            w->rstr[w->nr++] = strides[d];
            w->n_red *= x->dims[d];
        } else {
            w->kdims[w->nk] = x->dims[d];
            w->kstr[w->nk++] = strides[d];
            w->n_out *= x->dims[d];
        }
    }
}

/* x: any shape; y: x with the reduced dimensions dropped or kept as 1. */
static void reduce_forward(const op_call *c)
{
    const reduce_params *p = c->params;
    const float *xd = c->in[0]->data;
    float *y = c->out[0]->data;
    reduce_walk w;
    walk_init(p, c->in[0], &w);
    int64_t kidx[LEGO_MAX_RANK] = {0}, base = 0;
    for (int64_t o = 0; o < w.n_out; o++) {
        int64_t ridx[LEGO_MAX_RANK] = {0}, off = base;
        double sum = 0;
        float m = -INFINITY;
        for (int64_t r = 0; r < w.n_red; r++) {
            float v = xd[off];
            sum += v;
            if (v > m || v != v) /* NaN wins, as in numpy */
                m = v;
            op_index_next(w.nr, w.rdims, w.rstr, ridx, &off);
        }
        if (p->kind == RED_MEAN)
            y[o] = w.n_red ? (float)(sum / (double)w.n_red) : NAN;
        else if (p->kind == RED_SUM)
            y[o] = (float)sum;
        else
            y[o] = m;
        op_index_next(w.nk, w.kdims, w.kstr, kidx, &base);
    }
}

/* dx gets dy spread back over each reduced group: as is for ReduceSum,
 * divided by the group size for ReduceMean. ReduceMax gives the whole of
 * dy to one element, the one forward picked: the first maximum in row-major
 * order (the last NaN, if any). That is torch.max(x, dim)'s rule, which is
 * where exported ReduceMax nodes come from (CBAM's channel attention);
 * torch.amax would split dy evenly among ties instead. */
static void reduce_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const reduce_params *p = c->params;
    if (!dout[0] || !din[0])
        return;
    const float *xd = c->in[0]->data, *g = dout[0]->data;
    float *dx = din[0]->data;
    reduce_walk w;
    walk_init(p, c->in[0], &w);
    int64_t kidx[LEGO_MAX_RANK] = {0}, base = 0;
    for (int64_t o = 0; o < w.n_out; o++) {
        int64_t ridx[LEGO_MAX_RANK] = {0}, off = base;
        if (p->kind == RED_MAX) {
            float m = -INFINITY;
            int64_t win = -1;
            for (int64_t r = 0; r < w.n_red; r++) {
                float v = xd[off];
                if (v > m || v != v) {
                    m = v;
                    win = off;
                }
                op_index_next(w.nr, w.rdims, w.rstr, ridx, &off);
            }
            if (win < 0 && w.n_red > 0) /* every value is -inf: the first wins */
                win = base;
            if (win >= 0)
                dx[win] += g[o];
        } else if (w.n_red > 0) {
            float v = p->kind == RED_MEAN ? (float)(g[o] / (double)w.n_red) : g[o];
            for (int64_t r = 0; r < w.n_red; r++) {
                dx[off] += v;
                op_index_next(w.nr, w.rdims, w.rstr, ridx, &off);
            }
        }
        op_index_next(w.nk, w.kdims, w.kstr, kidx, &base);
    }
}

static int64_t reduce_flops(const op_call *c) { return lego_tensor_numel(c->in[0]); }

static lego_status mean_prepare(op_call *c) { return reduce_prepare(c, RED_MEAN); }
static lego_status max_prepare(op_call *c) { return reduce_prepare(c, RED_MAX); }
static lego_status sum_prepare(op_call *c) { return reduce_prepare(c, RED_SUM); }

const op_desc op_desc_ReduceMean = {.name = "ReduceMean", .min_in = 1, .max_in = 2,
                                    .min_out = 1, .max_out = 1,
                                    .params_size = sizeof(reduce_params),
                                    .const_inputs = 1u << 1, .prepare = mean_prepare,
                                    .forward = reduce_forward, .flops = reduce_flops,
                                    .backward = reduce_backward};
const op_desc op_desc_ReduceMax = {.name = "ReduceMax", .min_in = 1, .max_in = 2,
                                   .min_out = 1, .max_out = 1,
                                   .params_size = sizeof(reduce_params),
                                   .const_inputs = 1u << 1, .prepare = max_prepare,
                                   .forward = reduce_forward, .flops = reduce_flops,
                                   .backward = reduce_backward};
const op_desc op_desc_ReduceSum = {.name = "ReduceSum", .min_in = 1, .max_in = 2,
                                   .min_out = 1, .max_out = 1,
                                   .params_size = sizeof(reduce_params),
                                   .const_inputs = 1u << 1, .prepare = sum_prepare,
                                   .forward = reduce_forward, .flops = reduce_flops,
                                   .backward = reduce_backward};
