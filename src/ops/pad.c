/* pad.c - Pad, any rank and element type, modes constant, reflect and edge.
 *
 * Pad-11 and later take pads (and optionally constant_value, and from
 * opset 18 axes) as inputs; Pad-2 takes pads and value as attributes. pads
 * is [begin_0, ..., begin_n, end_0, ..., end_n]; negative pads crop. Every
 * output index maps back to an input index, or to the constant; backward
 * (float32) follows the same map in reverse, adding each output's gradient
 * into its source. */
#include <string.h>

#include "op.h"

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE };

typedef struct pad_params {
    int mode;
    int64_t begin[LEGO_MAX_RANK];
    float value; /* Pad-2's attribute; Pad-11 reads input 2 in forward */
} pad_params;

static lego_status read_pads_input(op_call *c, int64_t *v, int max, int *n)
{
    const lego_tensor *t = c->in[1];
    if (!t->data)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "pads must be a constant known at load");
    if (t->dtype != LEGO_I64 || t->rank != 1)
        return op_error(c, LEGO_ERR_SHAPE, "pads must be a 1-D int64 tensor");
    if (t->dims[0] > max)
        return op_error(c, LEGO_ERR_SHAPE, "pads has %lld values, at most %d allowed",
                        (long long)t->dims[0], max);
    *n = (int)t->dims[0];
    for (int i = 0; i < *n; i++)
        v[i] = tensor_get_i64(t, i);
    return lego_ok();
}

static lego_status pad_prepare(op_call *c)
{
    pad_params *p = c->params;
    memset(p, 0, sizeof *p);
    const lego_tensor *x = c->in[0];
    if (lego_dtype_size(x->dtype) == 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "input has unsupported dtype %s",
                        dtype_name(x->dtype));
    const char *mode;
    LEGO_TRY(attr_get_string(c->attrs, "mode", "constant", &mode));
    if (strcmp(mode, "constant") == 0)
        p->mode = PAD_CONSTANT;
    else if (strcmp(mode, "reflect") == 0)
        p->mode = PAD_REFLECT;
    else if (strcmp(mode, "edge") == 0)
        p->mode = PAD_EDGE;
    else
        return op_error(c, LEGO_ERR_UNSUPPORTED, "mode '%s' is not supported", mode);

    int r = x->rank;
    int64_t pads[2 * LEGO_MAX_RANK];
    int n_pads = 0;
    int axes[LEGO_MAX_RANK];
    int n_axes = r;
    for (int d = 0; d < r; d++)
        axes[d] = d;
    if (c->opset >= 11) {
        if (!op_input(c, 1))
            return op_error(c, LEGO_ERR_FORMAT, "input pads is required");
        LEGO_TRY(read_pads_input(c, pads, 2 * LEGO_MAX_RANK, &n_pads));
        const lego_tensor *cv = op_input(c, 2);
        if (cv && lego_tensor_numel(cv) > 0 && cv->dtype != x->dtype)
            return op_error(c, LEGO_ERR_SHAPE, "constant_value is %s but the input is %s",
                            dtype_name(cv->dtype), dtype_name(x->dtype));
        if (cv && lego_tensor_numel(cv) > 1)
            return op_error(c, LEGO_ERR_SHAPE, "constant_value must be a scalar");
        const lego_tensor *ax = op_input(c, 3);
        if (ax) { /* Pad-18: pads cover only the listed axes */
            if (!ax->data || ax->rank != 1 || ax->dims[0] > r)
                return op_error(c, LEGO_ERR_SHAPE, "axes must be a constant 1-D list of at "
                                                   "most %d axes", r);
            n_axes = (int)ax->dims[0];
            bool seen[LEGO_MAX_RANK] = {false};
            for (int i = 0; i < n_axes; i++) {
                LEGO_TRY(op_axis(c, tensor_get_i64(ax, i), r, &axes[i]));
                if (seen[axes[i]])
                    return op_error(c, LEGO_ERR_SHAPE, "axis %d is listed twice", axes[i]);
                seen[axes[i]] = true;
            }
        }
    } else {
        const int64_t *a = NULL;
        LEGO_TRY(attr_get_ints(c->attrs, "pads", &a, &n_pads));
        if (!a)
            return op_error(c, LEGO_ERR_FORMAT, "attribute 'pads' is required");
        if (n_pads > 2 * LEGO_MAX_RANK)
            return op_error(c, LEGO_ERR_SHAPE, "pads has %d values", n_pads);
        memcpy(pads, a, (size_t)n_pads * sizeof *a);
        LEGO_TRY(attr_get_float(c->attrs, "value", 0.0f, &p->value));
    }
    if (n_pads != 2 * n_axes)
        return op_error(c, LEGO_ERR_SHAPE, "pads has %d values, expected %d for %d axes", n_pads,
                        2 * n_axes, n_axes);

    int64_t dims[LEGO_MAX_RANK];
    memcpy(dims, x->dims, sizeof dims);
    for (int i = 0; i < n_axes; i++) {
        int d = axes[i];
        int64_t b = pads[i], e = pads[i + n_axes];
        dims[d] = x->dims[d] + b + e;
        if (dims[d] < 0)
            return op_error(c, LEGO_ERR_SHAPE,
                            "pads %lld,%lld leave axis %d of size %lld with a negative size",
                            (long long)b, (long long)e, d, (long long)x->dims[d]);
        if (p->mode != PAD_CONSTANT && x->dims[d] == 0 && dims[d] > 0)
            return op_error(c, LEGO_ERR_SHAPE, "cannot %s-pad axis %d of size 0", mode, d);
        p->begin[d] = b;
    }
    tensor_set_shape(c->out[0], x->dtype, r, dims);
    return lego_ok();
}

/* Input index for padded index i on an axis of size n, or -1 for "use the
 * constant". */
static int64_t pad_source(int mode, int64_t i, int64_t n)
{
    if (i >= 0 && i < n)
        return i;
    if (mode == PAD_CONSTANT)
        return -1;
    if (mode == PAD_EDGE)
        return i < 0 ? 0 : n - 1;
    /* reflect mirrors about the end elements without repeating them, so
     * the pattern repeats every 2(n-1); numpy extends it the same way when
     * pads exceed the axis */
    if (n == 1)
        return 0;
    int64_t period = 2 * (n - 1);
    i %= period;
    if (i < 0)
        i += period;
    return i < n ? i : period - i;
}

/* The fill value as the bytes of one element of dt. */
static void pad_value(const op_call *c, lego_dtype dt, char *out)
{
    const pad_params *p = c->params;
    const lego_tensor *cv = c->opset >= 11 ? op_input(c, 2) : NULL;
    if (cv && lego_tensor_numel(cv) == 1) {
        memcpy(out, cv->data, lego_dtype_size(dt));
        return;
    }
    float f = c->opset >= 11 ? 0.0f : p->value;
    if (dt == LEGO_F32) {
        memcpy(out, &f, sizeof f);
    } else if (dt == LEGO_I64) {
        int64_t v = f >= -9.2e18f && f <= 9.2e18f ? (int64_t)f : 0;
        memcpy(out, &v, sizeof v);
    } else {
        out[0] = f != 0;
    }
}

/* x: any shape; y: x's shape grown by begin+end per axis */
static void pad_forward(const op_call *c)
{
    const pad_params *p = c->params;
    const lego_tensor *x = c->in[0], *y = c->out[0];
    size_t es = lego_dtype_size(x->dtype);
    char val[8];
    pad_value(c, x->dtype, val);
    const char *xd = x->data;
    char *yd = y->data;
    if (y->rank == 0) {
        memcpy(yd, xd, es);
        return;
    }
    int64_t xs[LEGO_MAX_RANK];
    tensor_strides(x, xs);
    int last = y->rank - 1;
    int64_t len = y->dims[last], rows = 1;
    for (int d = 0; d < last; d++)
        rows *= y->dims[d];
    if (len == 0 || rows == 0)
        return;
    int64_t idx[LEGO_MAX_RANK] = {0};
    for (int64_t r = 0; r < rows; r++) {
        char *row = yd + r * len * (int64_t)es;
        int64_t base = 0;
        bool outside = false;
        for (int d = 0; d < last && !outside; d++) {
            int64_t s = pad_source(p->mode, idx[d] - p->begin[d], x->dims[d]);
            outside = s < 0;
            base += s * xs[d];
        }
        for (int64_t j = 0; j < len; j++) {
            int64_t s = outside ? -1 : pad_source(p->mode, j - p->begin[last], x->dims[last]);
            memcpy(row + j * (int64_t)es, s < 0 ? val : xd + (base + s) * (int64_t)es, es);
        }
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < y->dims[d])
                break;
            idx[d] = 0;
        }
    }
}

/* float32: each dy element goes back to the x element forward copied it
 * from, so in reflect and edge modes the mirrored or replicated positions
 * add into their sources; cropped x elements (negative pads) get nothing.
 * The constant positions' dy, summed, is the gradient of constant_value
 * (input 2) when that is given and wanted. */
static void pad_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const pad_params *p = c->params;
    const lego_tensor *x = c->in[0], *y = c->out[0];
    if (!dout[0] || y->dtype != LEGO_F32)
        return;
    float *dx = din[0] ? din[0]->data : NULL;
    const lego_tensor *cv = c->opset >= 11 ? op_input(c, 2) : NULL;
    float *dv = cv && lego_tensor_numel(cv) == 1 && din[2] ? din[2]->data : NULL;
    if (!dx && !dv)
        return;
    const float *g = dout[0]->data;
    if (y->rank == 0) {
        if (dx)
            dx[0] += g[0];
        return;
    }
    int64_t xs[LEGO_MAX_RANK];
    tensor_strides(x, xs);
    int last = y->rank - 1;
    int64_t len = y->dims[last], rows = 1;
    for (int d = 0; d < last; d++)
        rows *= y->dims[d];
    if (len == 0 || rows == 0)
        return;
    double to_value = 0;
    int64_t idx[LEGO_MAX_RANK] = {0};
    for (int64_t r = 0; r < rows; r++) {
        const float *row = g + r * len;
        int64_t base = 0;
        bool outside = false;
        for (int d = 0; d < last && !outside; d++) {
            int64_t s = pad_source(p->mode, idx[d] - p->begin[d], x->dims[d]);
            outside = s < 0;
            base += s * xs[d];
        }
        for (int64_t j = 0; j < len; j++) {
            int64_t s = outside ? -1 : pad_source(p->mode, j - p->begin[last], x->dims[last]);
            if (s < 0)
                to_value += row[j];
            else if (dx)
                dx[base + s] += row[j];
        }
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < y->dims[d])
                break;
            idx[d] = 0;
        }
    }
    if (dv)
        dv[0] += (float)to_value;
}

const op_desc op_desc_Pad = {.name = "Pad", .min_in = 1, .max_in = 4, .min_out = 1,
                             .max_out = 1, .params_size = sizeof(pad_params),
                             .const_inputs = (1u << 1) | (1u << 3), .prepare = pad_prepare,
                             .forward = pad_forward, .backward = pad_backward};
