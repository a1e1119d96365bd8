/* pool.c - AveragePool and MaxPool over NCHW windows (2-D), and
 * GlobalAveragePool and GlobalMaxPool over all spatial axes of any rank,
 * forward and backward.
 *
 * Windowed pools read the input directly (no im2col): each output pixel walks
 * its kernel taps and skips those in the padding. Output sizes follow ONNX and
 * PyTorch, ceil_mode included: a window may hang over the end padding, but
 * the last one must start inside the input or the leading padding.
 *
 * Backward walks the same windows. Average pools spread each output gradient
 * over the window's input taps with the forward's divisor; max pools find the
 * winner again from the input (the first maximum in row-major tap order, as
 * PyTorch breaks ties; a NaN wins) and route the whole gradient to it. */
#include <float.h>
#include <math.h>

#include "../core/threads.h"
#include "op.h"
#include "simd.h"
#include "window.h"

typedef struct pool_params {
    int64_t nc, h, w, ho, wo; /* nc: batch times channels */
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int count_include_pad;
} pool_params;

typedef struct global_params {
    int64_t nc, plane; /* plane: product of the spatial axes */
} global_params;

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
    window win = {.mode = PAD_NOTSET};
    int64_t cip = 0;
    LEGO_TRY(window_get_ints(c, "kernel_shape", 2, 1, 1, win.k));
    LEGO_TRY(window_get_ints(c, "strides", 2, 1, 1, win.stride));
    /* AveragePool has dilations since opset 19 */
    LEGO_TRY(window_get_ints(c, "dilations", 2, 1, 1, win.dilation));
    /* pads give way to a set auto_pad (ONNX forbids both; onnxruntime ignores pads) */
    LEGO_TRY(window_get_ints(c, "pads", 4, 0, 0, win.pads));
    LEGO_TRY(window_auto_pad(c, &win.mode));
    LEGO_TRY(attr_get_int(c->attrs, "ceil_mode", 0, &win.ceil_mode));
    if (!is_max)
        LEGO_TRY(attr_get_int(c->attrs, "count_include_pad", 0, &cip));

    int64_t in[2] = {x->dims[2], x->dims[3]}, out[2], pb[2], pe[2];
    LEGO_TRY(window_output(c, &win, in, "kernel", out, pb, pe));

    *p = (pool_params){.nc = x->dims[0] * x->dims[1], .h = in[0], .w = in[1], .ho = out[0],
                       .wo = out[1], .kh = win.k[0], .kw = win.k[1], .sh = win.stride[0],
                       .sw = win.stride[1], .dh = win.dilation[0], .dw = win.dilation[1],
                       .pad_t = pb[0], .pad_l = pb[1], .pad_b = pe[0], .pad_r = pe[1],
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

/* One call's data; planes (image, channel) are independent, so ranges of
 * them run in parallel (core/threads.h), with the same results for any
 * thread count. */
typedef struct pool_job {
    const op_call *c;
    const float *dy; /* backward only */
    float *dx;
} pool_job;

/* Runs fn over every plane of c, in parallel when the planes are big
 * enough; work is the operations of one plane. */
static void for_planes(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din,
                       int64_t planes, double work, par_fn *fn)
{
    pool_job k = {.c = c, .dy = dout ? dout[0]->data : NULL, .dx = din ? din[0]->data : NULL};
    parallel_run(planes, par_split_work(planes, work), fn, &k);
}

/* Operations of one windowed plane: every output walks its window. */
static double window_work(const pool_params *p)
{
    return (double)(p->ho * p->wo * p->kh * p->kw);
}

// x is (N,C,H,W), y is (N,C,Ho,Wo); planes [b, e)
SIMD_CLONES
static void avgpool_forward_planes(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const op_call *c = ((const pool_job *)ctx)->c;
    const pool_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t nc = b; nc < e; nc++) {
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

static void avgpool_forward(const op_call *c)
{
    const pool_params *p = c->params;
    for_planes(c, NULL, NULL, p->nc, window_work(p), avgpool_forward_planes);
}

/* dx += the gradient of avgpool_forward: each dy over its window's input
 * taps, divided by the forward's count. x is (N,C,H,W), dy (N,C,Ho,Wo);
 * planes [b, e). */
SIMD_CLONES
static void avgpool_backward_planes(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const pool_job *k = ctx;
    const pool_params *p = k->c->params;
    const float *dy = k->dy;
    float *dx = k->dx;
    for (int64_t nc = b; nc < e; nc++) {
        float *dxp = dx + nc * p->h * p->w;
        const float *dyp = dy + nc * p->ho * p->wo;
        for (int64_t oh = 0; oh < p->ho; oh++) {
            int64_t hs = oh * p->sh - p->pad_t, i0, i1, pi0, pi1;
            tap_range(hs, p->kh, p->dh, 0, p->h, &i0, &i1);
            tap_range(hs, p->kh, p->dh, -p->pad_t, p->h + p->pad_b, &pi0, &pi1);
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t ws = ow * p->sw - p->pad_l, j0, j1, pj0, pj1;
                tap_range(ws, p->kw, p->dw, 0, p->w, &j0, &j1);
                tap_range(ws, p->kw, p->dw, -p->pad_l, p->w + p->pad_r, &pj0, &pj1);
                int64_t count = p->count_include_pad ? (pi1 - pi0) * (pj1 - pj0)
                                                     : (i1 - i0) * (j1 - j0);
                if (count <= 0)
                    continue;
                float g = dyp[oh * p->wo + ow] / (float)count;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = j0; j < j1; j++)
                        dxp[(hs + i * p->dh) * p->w + ws + j * p->dw] += g;
            }
        }
    }
}

static void avgpool_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const pool_params *p = c->params;
    if (dout[0] && din[0])
        for_planes(c, dout, din, p->nc, window_work(p), avgpool_backward_planes);
}

// x is (N,C,H,W), y is (N,C,Ho,Wo); planes [b, e)
SIMD_CLONES
static void maxpool_forward_planes(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const op_call *c = ((const pool_job *)ctx)->c;
    const pool_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t nc = b; nc < e; nc++) {
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

static void maxpool_forward(const op_call *c)
{
    const pool_params *p = c->params;
    for_planes(c, NULL, NULL, p->nc, window_work(p), maxpool_forward_planes);
}

/* dx += the gradient of maxpool_forward: each dy to its window's winner,
 * found again from x. x is (N,C,H,W), dy (N,C,Ho,Wo); planes [b, e). */
SIMD_CLONES
static void maxpool_backward_planes(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const pool_job *k = ctx;
    const pool_params *p = k->c->params;
    const float *x = k->c->in[0]->data, *dy = k->dy;
    float *dx = k->dx;
    for (int64_t nc = b; nc < e; nc++) {
        const float *xp = x + nc * p->h * p->w;
        float *dxp = dx + nc * p->h * p->w;
        const float *dyp = dy + nc * p->ho * p->wo;
        for (int64_t oh = 0; oh < p->ho; oh++) {
            int64_t hs = oh * p->sh - p->pad_t, i0, i1;
            tap_range(hs, p->kh, p->dh, 0, p->h, &i0, &i1);
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t ws = ow * p->sw - p->pad_l, j0, j1;
                tap_range(ws, p->kw, p->dw, 0, p->w, &j0, &j1);
                int64_t best = -1; /* stays -1 for a window with no input tap */
                for (int64_t i = i0; i < i1; i++) {
                    for (int64_t j = j0; j < j1; j++) {
                        int64_t at = (hs + i * p->dh) * p->w + ws + j * p->dw;
                        if (best < 0 || xp[at] > xp[best] || (isnan(xp[at]) && !isnan(xp[best])))
                            best = at;
                    }
                }
                if (best >= 0)
                    dxp[best] += dyp[oh * p->wo + ow];
            }
        }
    }
}

static void maxpool_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const pool_params *p = c->params;
    if (dout[0] && din[0])
        for_planes(c, dout, din, p->nc, window_work(p), maxpool_backward_planes);
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

// x is (N,C,spatial...), y is (N,C,1...); planes [b, e)
static void global_avg_planes(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const op_call *c = ((const pool_job *)ctx)->c;
    const global_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t i = b; i < e; i++)
        y[i] = (float)(op_sum_f32(x + i * p->plane, p->plane) / (double)p->plane);
}

static void global_avg_forward(const op_call *c)
{
    const global_params *p = c->params;
    for_planes(c, NULL, NULL, p->nc, (double)p->plane, global_avg_planes);
}

// x is (N,C,spatial...), y is (N,C,1...); planes [b, e)
static void global_max_planes(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const op_call *c = ((const pool_job *)ctx)->c;
    const global_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t i = b; i < e; i++) {
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

static void global_max_forward(const op_call *c)
{
    const global_params *p = c->params;
    for_planes(c, NULL, NULL, p->nc, (double)p->plane, global_max_planes);
}

/* dx += dy / plane at every element. x is (N,C,spatial...), dy (N,C,1...);
 * planes [b, e). */
static void global_avg_backward_planes(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const pool_job *k = ctx;
    const global_params *p = k->c->params;
    const float *dy = k->dy;
    float *dx = k->dx;
    for (int64_t i = b; i < e; i++) {
        float g = (float)(dy[i] / (double)p->plane);
        for (int64_t j = 0; j < p->plane; j++)
            dx[i * p->plane + j] += g;
    }
}

static void global_avg_backward(const op_call *c, lego_tensor *const *dout,
                                lego_tensor *const *din)
{
    const global_params *p = c->params;
    if (dout[0] && din[0])
        for_planes(c, dout, din, p->nc, (double)p->plane, global_avg_backward_planes);
}

/* dx += dy at each plane's first maximum (or first NaN); planes [b, e). */
static void global_max_backward_planes(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const pool_job *k = ctx;
    const global_params *p = k->c->params;
    const float *x = k->c->in[0]->data, *dy = k->dy;
    float *dx = k->dx;
    for (int64_t i = b; i < e; i++) {
        const float *xp = x + i * p->plane;
        int64_t best = 0;
        for (int64_t j = 1; j < p->plane && !isnan(xp[best]); j++)
            if (xp[j] > xp[best] || isnan(xp[j]))
                best = j;
        dx[i * p->plane + best] += dy[i];
    }
}

static void global_max_backward(const op_call *c, lego_tensor *const *dout,
                                lego_tensor *const *din)
{
    const global_params *p = c->params;
    if (dout[0] && din[0])
        for_planes(c, dout, din, p->nc, (double)p->plane, global_max_backward_planes);
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
    .backward = avgpool_backward,
};

const op_desc op_desc_MaxPool = {
    .name = "MaxPool",
    .min_in = 1, .max_in = 1,
    .min_out = 1, .max_out = 2, /* ONNX allows Indices; prepare refuses it */
    .params_size = sizeof(pool_params),
    .prepare = maxpool_prepare,
    .forward = maxpool_forward,
    .flops = pool_flops,
    .backward = maxpool_backward,
};

const op_desc op_desc_GlobalAveragePool = {
    .name = "GlobalAveragePool",
    .min_in = 1, .max_in = 1,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(global_params),
    .prepare = global_prepare,
    .forward = global_avg_forward,
    .flops = global_flops,
    .backward = global_avg_backward,
};

const op_desc op_desc_GlobalMaxPool = {
    .name = "GlobalMaxPool",
    .min_in = 1, .max_in = 1,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(global_params),
    .prepare = global_prepare,
    .forward = global_max_forward,
    .flops = global_flops,
    .backward = global_max_backward,
};
