/* pool.c - AveragePool and MaxPool over NCHW windows (2-D), and
 * GlobalAveragePool and GlobalMaxPool over all spatial axes of any rank.
 *
 * Windowed pools read the input directly (no im2col): each output pixel walks
 * its kernel taps and skips those in the padding. Output sizes follow ONNX and
 * PyTorch, ceil_mode included: a window may hang over the end padding, but
 * the last one must start inside the input or the leading padding. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "op.h"

typedef enum auto_pad { PAD_NOTSET, PAD_SAME_UPPER, PAD_SAME_LOWER, PAD_VALID } auto_pad;

typedef struct pool_params {
    int64_t nc, h, w, ho, wo; /* nc: batch times channels */
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int count_include_pad;
} pool_params;

typedef struct global_params {
    int64_t nc, plane; /* plane: product of the spatial axes */
} global_params;

static lego_status get_auto_pad(const op_call *c, auto_pad *out)
{
    const char *s;
    LEGO_TRY(attr_get_string(c->attrs, "auto_pad", "NOTSET", &s));
    if (strcmp(s, "NOTSET") == 0)
        *out = PAD_NOTSET;
    else if (strcmp(s, "SAME_UPPER") == 0)
        *out = PAD_SAME_UPPER;
    else if (strcmp(s, "SAME_LOWER") == 0)
        *out = PAD_SAME_LOWER;
    else if (strcmp(s, "VALID") == 0)
        *out = PAD_VALID;
    else
        return op_error(c, LEGO_ERR_FORMAT,
                        "auto_pad is '%s', expected NOTSET, SAME_UPPER, SAME_LOWER or VALID", s);
    return lego_ok();
}

/* An ints attribute of exactly n values, each at least min; def fills it when absent. */
static lego_status get_ints_n(const op_call *c, const char *name, int n, int64_t def, int64_t min,
                              int64_t *out)
{
    const int64_t *v = NULL;
    int nv = 0;
    for (int i = 0; i < n; i++)
        out[i] = def;
    LEGO_TRY(attr_get_ints(c->attrs, name, &v, &nv));
    if (!v)
        return lego_ok();
    if (nv != n)
        return op_error(c, LEGO_ERR_FORMAT, "%s has %d values, expected %d", name, nv, n);
    for (int i = 0; i < n; i++) {
        if (v[i] < min)
            return op_error(c, LEGO_ERR_FORMAT, "%s[%d] is %lld, must be at least %lld", name, i,
                            (long long)v[i], (long long)min);
        out[i] = v[i];
    }
    return lego_ok();
}

static lego_status check_float_input(const op_call *c, int min_rank, int max_rank)
{
    LEGO_TRY(op_expect_dtype(c, 0, LEGO_F32));
    const lego_tensor *x = c->in[0];
    char sx[96];
    if (x->rank < min_rank || x->rank > max_rank) {
        if (min_rank == max_rank)
            return op_error(c, LEGO_ERR_UNSUPPORTED,
                            "only 2-D pooling is supported (NCHW input); input has rank %d (%s)",
                            x->rank, tensor_shape_str(x, sx, sizeof sx));
        return op_error(c, LEGO_ERR_SHAPE, "input has rank %d (%s), expected at least %d", x->rank,
                        tensor_shape_str(x, sx, sizeof sx), min_rank);
    }
    for (int i = 2; i < x->rank; i++)
        if (x->dims[i] <= 0)
            return op_error(c, LEGO_ERR_SHAPE, "input has an empty spatial dimension (%s)",
                            tensor_shape_str(x, sx, sizeof sx));
    return lego_ok();
}

/* Attributes and output shape of AveragePool and MaxPool; x is (N,C,H,W). */
static lego_status pool_prepare(op_call *c, int is_max)
{
    pool_params *p = c->params;
    LEGO_TRY(check_float_input(c, 4, 4));
    if (is_max && c->n_out > 1 && c->out[1])
        return op_error(c, LEGO_ERR_UNSUPPORTED, "the Indices output of MaxPool is not supported");
    const lego_tensor *x = c->in[0];

    if (!attr_find(c->attrs, "kernel_shape"))
        return op_error(c, LEGO_ERR_FORMAT, "kernel_shape is required");
    int64_t k[2], s[2], d[2], pads[4], ceil_mode, cip = 0;
    auto_pad mode = PAD_NOTSET;
    LEGO_TRY(get_ints_n(c, "kernel_shape", 2, 1, 1, k));
    LEGO_TRY(get_ints_n(c, "strides", 2, 1, 1, s));
    LEGO_TRY(get_ints_n(c, "dilations", 2, 1, 1, d)); /* AveragePool has them since opset 19 */
    /* pads give way to a set auto_pad (ONNX forbids both; onnxruntime ignores pads) */
    LEGO_TRY(get_ints_n(c, "pads", 4, 0, 0, pads));
    LEGO_TRY(get_auto_pad(c, &mode));
    LEGO_TRY(attr_get_int(c->attrs, "ceil_mode", 0, &ceil_mode));
    if (!is_max)
        LEGO_TRY(attr_get_int(c->attrs, "count_include_pad", 0, &cip));

    int64_t in[2] = {x->dims[2], x->dims[3]}, out[2], pb[2], pe[2], dk[2];
    for (int i = 0; i < 2; i++) {
        dk[i] = (k[i] - 1) * d[i] + 1;
        if (mode == PAD_SAME_UPPER || mode == PAD_SAME_LOWER) {
            out[i] = (in[i] + s[i] - 1) / s[i];
            int64_t total = (out[i] - 1) * s[i] + dk[i] - in[i];
            if (total < 0)
                total = 0;
            /* SAME_UPPER puts the odd pad at the end, SAME_LOWER at the start */
            pb[i] = mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
            pe[i] = total - pb[i];
            continue;
        }
        pb[i] = mode == PAD_VALID ? 0 : pads[i];
        pe[i] = mode == PAD_VALID ? 0 : pads[i + 2];
        /* in ceil mode one window may be longer than the padded input */
        int64_t span = in[i] + pb[i] + pe[i] - dk[i] + (ceil_mode ? s[i] - 1 : 0);
        out[i] = span >= 0 ? span / s[i] + 1 : 0;
        if (ceil_mode && out[i] > 0 && (out[i] - 1) * s[i] >= in[i] + pb[i])
            out[i]--;
    }
    if (out[0] < 1 || out[1] < 1)
        return op_error(c, LEGO_ERR_SHAPE,
                        "input %lldx%lld padded by [%lld,%lld,%lld,%lld] is smaller than the "
                        "kernel %lldx%lld",
                        (long long)in[0], (long long)in[1], (long long)pb[0], (long long)pb[1],
                        (long long)pe[0], (long long)pe[1], (long long)dk[0], (long long)dk[1]);

    *p = (pool_params){.nc = x->dims[0] * x->dims[1], .h = in[0], .w = in[1], .ho = out[0],
                       .wo = out[1], .kh = k[0], .kw = k[1], .sh = s[0], .sw = s[1], .dh = d[0],
                       .dw = d[1], .pad_t = pb[0], .pad_l = pb[1], .pad_b = pe[0], .pad_r = pe[1],
                       .count_include_pad = cip != 0};
    int64_t dims[4] = {x->dims[0], x->dims[1], out[0], out[1]};
    tensor_set_shape(c->out[0], LEGO_F32, 4, dims);
    return lego_ok();
}

static lego_status avgpool_prepare(op_call *c) { return pool_prepare(c, 0); }
static lego_status maxpool_prepare(op_call *c) { return pool_prepare(c, 1); }

/* Taps of one window axis: the first and one-past-last tap index that land
 * inside [lo, hi), given the window starts at `start` with dilation d. */
static void tap_range(int64_t start, int64_t k, int64_t d, int64_t lo, int64_t hi, int64_t *first,
                      int64_t *end)
{
    int64_t f = start >= lo ? 0 : (lo - start + d - 1) / d;
    int64_t e = start >= hi ? 0 : (hi - start + d - 1) / d;
    *first = f < k ? f : k;
    *end = e < k ? e : k;
    if (*end < *first)
        *end = *first;
}

// x is (N,C,H,W), y is (N,C,Ho,Wo)
static void avgpool_forward(const op_call *c)
{
    const pool_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t nc = 0; nc < p->nc; nc++) {
        const float *xp = x + nc * p->h * p->w;
        float *yp = y + nc * p->ho * p->wo;
        for (int64_t oh = 0; oh < p->ho; oh++) {
            int64_t hs = oh * p->sh - p->pad_t, i0, i1, pi0, pi1;
            tap_range(hs, p->kh, p->dh, 0, p->h, &i0, &i1);
            tap_range(hs, p->kh, p->dh, -p->pad_t, p->h + p->pad_b, &pi0, &pi1);
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t ws = ow * p->sw - p->pad_l, j0, j1, pj0, pj1;
                tap_range(ws, p->kw, p->dw, 0, p->w, &j0, &j1);
                tap_range(ws, p->kw, p->dw, -p->pad_l, p->w + p->pad_r, &pj0, &pj1);
                float sum = 0;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = j0; j < j1; j++)
                        sum += xp[(hs + i * p->dh) * p->w + ws + j * p->dw];
                /* with padding counted, the divisor still stops at the end
                 * padding: a ceil_mode window hanging beyond it is cut (PyTorch) */
                int64_t count = p->count_include_pad ? (pi1 - pi0) * (pj1 - pj0)
                                                     : (i1 - i0) * (j1 - j0);
                yp[oh * p->wo + ow] = count > 0 ? sum / (float)count : 0.0f;
            }
        }
    }
}

// x is (N,C,H,W), y is (N,C,Ho,Wo)
static void maxpool_forward(const op_call *c)
{
    const pool_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t nc = 0; nc < p->nc; nc++) {
        const float *xp = x + nc * p->h * p->w;
        float *yp = y + nc * p->ho * p->wo;
        for (int64_t oh = 0; oh < p->ho; oh++) {
            int64_t hs = oh * p->sh - p->pad_t, i0, i1;
            tap_range(hs, p->kh, p->dh, 0, p->h, &i0, &i1);
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t ws = ow * p->sw - p->pad_l, j0, j1;
                tap_range(ws, p->kw, p->dw, 0, p->w, &j0, &j1);
                /* a window with no input tap (only with dilation or huge
                 * pads) gives the lowest float, as onnxruntime does */
                float m = -FLT_MAX;
                int nan = 0;
                for (int64_t i = i0; i < i1; i++) {
                    for (int64_t j = j0; j < j1; j++) {
                        float v = xp[(hs + i * p->dh) * p->w + ws + j * p->dw];
                        nan |= isnan(v);
                        m = v > m ? v : m;
                    }
                }
                yp[oh * p->wo + ow] = nan ? NAN : m; /* NaN propagates, as in PyTorch */
            }
        }
    }
}

static int64_t pool_flops(const op_call *c)
{
    const pool_params *p = c->params;
    return lego_tensor_numel(c->out[0]) * p->kh * p->kw;
}

/* x is (N,C,D1,...,Dk) with k >= 1; y is (N,C,1,...,1). */
static lego_status global_prepare(op_call *c)
{
    global_params *p = c->params;
    LEGO_TRY(check_float_input(c, 3, LEGO_MAX_RANK));
    const lego_tensor *x = c->in[0];
    int64_t dims[LEGO_MAX_RANK];
    p->nc = x->dims[0] * x->dims[1];
    p->plane = 1;
    for (int i = 0; i < x->rank; i++) {
        dims[i] = i < 2 ? x->dims[i] : 1;
        if (i >= 2)
            p->plane *= x->dims[i];
    }
    tensor_set_shape(c->out[0], LEGO_F32, x->rank, dims);
    return lego_ok();
}

// x is (N,C,spatial...), y is (N,C,1...)
static void global_avg_forward(const op_call *c)
{
    const global_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t i = 0; i < p->nc; i++) {
        double sum = 0; /* planes can be large; keep the mean accurate */
        for (int64_t j = 0; j < p->plane; j++)
            sum += x[i * p->plane + j];
        y[i] = (float)(sum / (double)p->plane);
    }
}

// x is (N,C,spatial...), y is (N,C,1...)
static void global_max_forward(const op_call *c)
{
    const global_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t i = 0; i < p->nc; i++) {
        float m = -INFINITY;
        int nan = 0;
        for (int64_t j = 0; j < p->plane; j++) {
            float v = x[i * p->plane + j];
            nan |= isnan(v);
            m = v > m ? v : m;
        }
        y[i] = nan ? NAN : m;
    }
}

static int64_t global_flops(const op_call *c) { return lego_tensor_numel(c->in[0]); }

const op_desc op_desc_AveragePool = {
    .name = "AveragePool",
    .min_in = 1, .max_in = 1,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(pool_params),
    .prepare = avgpool_prepare,
    .forward = avgpool_forward,
    .flops = pool_flops,
};

const op_desc op_desc_MaxPool = {
    .name = "MaxPool",
    .min_in = 1, .max_in = 1,
    .min_out = 1, .max_out = 2, /* ONNX allows Indices; prepare refuses it */
    .params_size = sizeof(pool_params),
    .prepare = maxpool_prepare,
    .forward = maxpool_forward,
    .flops = pool_flops,
};

const op_desc op_desc_GlobalAveragePool = {
    .name = "GlobalAveragePool",
    .min_in = 1, .max_in = 1,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(global_params),
    .prepare = global_prepare,
    .forward = global_avg_forward,
    .flops = global_flops,
};

const op_desc op_desc_GlobalMaxPool = {
    .name = "GlobalMaxPool",
    .min_in = 1, .max_in = 1,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(global_params),
    .prepare = global_prepare,
    .forward = global_max_forward,
    .flops = global_flops,
};
