/* reduce.c - ReduceMean, ReduceMax and ReduceSum over float32.
 *
 * Axes come from the `axes` attribute or, from opset 18 (ReduceSum: 13),
 * from an optional constant input; none means every axis. keepdims (default 1)
 * keeps reduced dimensions as size 1. Sums accumulate in double so a mean
 * over a large feature map does not drift. */
#include <math.h>
#include <string.h>

#include "op.h"

enum { RED_MEAN, RED_MAX, RED_SUM };

typedef struct reduce_params {
    int kind;
    int reduced[LEGO_MAX_RANK]; /* 1 where the input dimension is reduced */
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
    const lego_tensor *ax = c->n_in > 1 ? c->in[1] : NULL;
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
                p->reduced[d] = 1;
    }
    for (int i = 0; i < n_axes; i++) {
        int a;
        LEGO_TRY(op_axis(c, axes[i], x->rank, &a));
        if (p->reduced[a])
            return op_error(c, LEGO_ERR_SHAPE, "axis %lld is listed twice", (long long)axes[i]);
        p->reduced[a] = 1;
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

/* x: any shape; y: x with the reduced dimensions dropped or kept as 1.
 * The kept dimensions are walked in order, which is y's row-major order,
 * and for each y element the reduced dimensions are walked in full. */
static void reduce_forward(const op_call *c)
{
    const reduce_params *p = c->params;
    const lego_tensor *x = c->in[0];
    const float *xd = x->data;
    float *y = c->out[0]->data;
    int64_t strides[LEGO_MAX_RANK];
    tensor_strides(x, strides);

    int64_t kdims[LEGO_MAX_RANK], kstr[LEGO_MAX_RANK], rdims[LEGO_MAX_RANK],
        rstr[LEGO_MAX_RANK];
    int nk = 0, nr = 0;
    int64_t n_out = 1, n_red = 1;
    for (int d = 0; d < x->rank; d++) {
        if (p->reduced[d]) {
            rdims[nr] = x->dims[d];
            rstr[nr++] = strides[d];
            n_red *= x->dims[d];
        } else {
            kdims[nk] = x->dims[d];
            kstr[nk++] = strides[d];
            n_out *= x->dims[d];
        }
    }

    int64_t kidx[LEGO_MAX_RANK] = {0}, base = 0;
    for (int64_t o = 0; o < n_out; o++) {
        int64_t ridx[LEGO_MAX_RANK] = {0}, off = base;
        double sum = 0;
        float m = -INFINITY;
        for (int64_t r = 0; r < n_red; r++) {
            float v = xd[off];
            sum += v;
            if (v > m || v != v) /* NaN wins, as in numpy */
                m = v;
            for (int d = nr - 1; d >= 0; d--) {
                off += rstr[d];
                if (++ridx[d] < rdims[d])
                    break;
                off -= rstr[d] * rdims[d];
                ridx[d] = 0;
            }
        }
        if (p->kind == RED_MEAN)
            y[o] = n_red ? (float)(sum / (double)n_red) : NAN;
        else if (p->kind == RED_SUM)
            y[o] = (float)sum;
        else
            y[o] = m;
        for (int d = nk - 1; d >= 0; d--) {
            base += kstr[d];
            if (++kidx[d] < kdims[d])
                break;
            base -= kstr[d] * kdims[d];
            kidx[d] = 0;
        }
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
                                    .forward = reduce_forward, .flops = reduce_flops};
const op_desc op_desc_ReduceMax = {.name = "ReduceMax", .min_in = 1, .max_in = 2,
                                   .min_out = 1, .max_out = 1,
                                   .params_size = sizeof(reduce_params),
                                   .const_inputs = 1u << 1, .prepare = max_prepare,
                                   .forward = reduce_forward, .flops = reduce_flops};
const op_desc op_desc_ReduceSum = {.name = "ReduceSum", .min_in = 1, .max_in = 2,
                                   .min_out = 1, .max_out = 1,
                                   .params_size = sizeof(reduce_params),
                                   .const_inputs = 1u << 1, .prepare = sum_prepare,
                                   .forward = reduce_forward, .flops = reduce_flops};
