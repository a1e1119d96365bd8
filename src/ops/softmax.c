/* softmax.c - Softmax over float32, both ONNX meanings.
 *
 * Before opset 13 the input is viewed as 2-D, [prod(dims[:axis]),
 * prod(dims[axis:])], and each row is normalised as a whole (axis defaults
 * to 1). From opset 13 only the one dimension `axis` is normalised (axis
 * defaults to -1). Both reduce to normalising `n` values that lie `inner`
 * elements apart, `outer * inner` times; backward uses the same view. */
#include <math.h>

#include "op.h"

typedef struct softmax_params {
    int64_t outer, n, inner;
} softmax_params;

static lego_status softmax_prepare(op_call *c)
{
    softmax_params *p = c->params;
    LEGO_TRY(op_expect_dtype(c, 0, LEGO_F32));
    const lego_tensor *x = c->in[0];
    bool coerce_2d = c->opset < 13;
    int64_t axis_attr;
    LEGO_TRY(attr_get_int(c->attrs, "axis", coerce_2d ? 1 : -1, &axis_attr));
    int axis;
    if (coerce_2d && x->rank > 0 && axis_attr == x->rank) {
        axis = x->rank; /* a 1-column view is valid in the old form */
    } else if (x->rank == 0) {
        return op_error(c, LEGO_ERR_SHAPE, "input is a scalar; softmax needs an axis");
    } else {
        LEGO_TRY(op_axis(c, axis_attr, x->rank, &axis));
    }
    p->outer = 1;
    for (int d = 0; d < axis; d++)
        p->outer *= x->dims[d];
    if (coerce_2d) {
        p->n = 1;
        for (int d = axis; d < x->rank; d++)
            p->n *= x->dims[d];
        p->inner = 1;
    } else {
        p->n = x->dims[axis];
        p->inner = 1;
        for (int d = axis + 1; d < x->rank; d++)
            p->inner *= x->dims[d];
    }
    tensor_set_shape(c->out[0], LEGO_F32, x->rank, x->dims);
    return lego_ok();
}

/* x, y viewed as [outer, n, inner]; normalised along n */
static void softmax_forward(const op_call *c)
{
    const softmax_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t o = 0; o < p->outer; o++) {
        for (int64_t j = 0; j < p->inner; j++) {
            const float *xs = x + o * p->n * p->inner + j;
            float *ys = y + o * p->n * p->inner + j;
            /* subtracting the max keeps exp from overflowing */
            float m = -INFINITY;
            for (int64_t i = 0; i < p->n; i++)
                if (xs[i * p->inner] > m)
                    m = xs[i * p->inner];
            double sum = 0;
            for (int64_t i = 0; i < p->n; i++) {
                float e = expf(xs[i * p->inner] - m);
                ys[i * p->inner] = e;
                sum += e;
            }
            float inv = (float)(1.0 / sum);
            for (int64_t i = 0; i < p->n; i++)
                ys[i * p->inner] *= inv;
        }
    }
}

/* dx = y * (dy - sum(dy * y)) over each normalised group of n values, in
 * the same [outer, n, inner] view as forward, so it serves both the
 * pre-13 (2-D coerced) and the single-axis meaning. */
static void softmax_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const softmax_params *p = c->params;
    if (!dout[0] || !din[0])
        return;
    const float *y = c->out[0]->data, *g = dout[0]->data;
    float *dx = din[0]->data;
    for (int64_t o = 0; o < p->outer; o++) {
        for (int64_t j = 0; j < p->inner; j++) {
            int64_t base = o * p->n * p->inner + j;
            const float *ys = y + base, *gs = g + base;
            float *dxs = dx + base;
            double dot = 0;
            for (int64_t i = 0; i < p->n; i++)
                dot += (double)gs[i * p->inner] * ys[i * p->inner];
            float d = (float)dot;
            for (int64_t i = 0; i < p->n; i++)
                dxs[i * p->inner] += ys[i * p->inner] * (gs[i * p->inner] - d);
        }
    }
}

static int64_t softmax_flops(const op_call *c) { return 3 * lego_tensor_numel(c->out[0]); }

const op_desc op_desc_Softmax = {.name = "Softmax", .min_in = 1, .max_in = 1, .min_out = 1,
                                 .max_out = 1, .params_size = sizeof(softmax_params),
                                 .prepare = softmax_prepare, .forward = softmax_forward,
                                 .flops = softmax_flops, .backward = softmax_backward};
