/* activation.c - pointwise float32 activations: Relu, LeakyRelu, Clip,
 * Sigmoid, Tanh, forward and backward. Output shape is the input's; NaN
 * passes through unchanged, as in PyTorch. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "../core/threads.h"
#include "op.h"
#include "simd.h"

enum { ACT_RELU, ACT_LEAKY, ACT_CLIP, ACT_SIGMOID, ACT_TANH };

typedef struct act_params {
    int kind;
    float alpha;  /* LeakyRelu */
    float lo, hi; /* Clip before opset 11, and the defaults after */
} act_params;

static lego_status act_prepare(op_call *c, int kind)
{
    act_params *p = c->params;
    p->kind = kind;
    LEGO_TRY(op_expect_dtype(c, 0, LEGO_F32));
    if (kind == ACT_LEAKY)
        LEGO_TRY(attr_get_float(c->attrs, "alpha", 0.01f, &p->alpha));
    if (kind == ACT_CLIP) {
        /* Clip-6 has min/max attributes; from Clip-11 they are optional
         * scalar inputs, read in forward because they need not be constant. */
        p->lo = -FLT_MAX;
        p->hi = FLT_MAX;
        if (c->opset < 11) {
            LEGO_TRY(attr_get_float(c->attrs, "min", -FLT_MAX, &p->lo));
            LEGO_TRY(attr_get_float(c->attrs, "max", FLT_MAX, &p->hi));
        } else {
            for (int i = 1; i < 3; i++) {
                const lego_tensor *t = op_input(c, i);
                if (!t)
                    continue;
                if (t->dtype != LEGO_F32)
                    return op_error(c, LEGO_ERR_SHAPE, "%s is %s, expected float32",
                                    i == 1 ? "min" : "max", dtype_name(t->dtype));
                if (lego_tensor_numel(t) != 1)
                    return op_error(c, LEGO_ERR_SHAPE,
                                    "%s must be a scalar, got %lld elements",
                                    i == 1 ? "min" : "max", (long long)lego_tensor_numel(t));
            }
        }
    }
    tensor_set_shape(c->out[0], LEGO_F32, c->in[0]->rank, c->in[0]->dims);
    return lego_ok();
}

/* Split by sign so exp never overflows. */
static float sigmoid(float x)
{
    if (x >= 0)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* Clip's bounds for this call: Clip-6's attributes, or Clip-11's inputs. */
static void clip_bounds(const op_call *c, float *lo, float *hi)
{
    const act_params *p = c->params;
    *lo = p->lo;
    *hi = p->hi;
    if (c->opset >= 11) {
        const lego_tensor *tlo = op_input(c, 1), *thi = op_input(c, 2);
        if (tlo)
            *lo = *(const float *)tlo->data;
        if (thi)
            *hi = *(const float *)thi->data;
    }
}

/* One call's data: the forward's x and y, the backward's dY and dX, and
 * Clip's bounds. Elements are independent, so ranges of them run in
 * parallel (core/threads.h) with the same results for any thread count. */
typedef struct act_job {
    const act_params *p;
    const float *x, *y, *g; /* g: dY (backward) */
    float *out;             /* y (forward) or dX (backward) */
    float lo, hi;           /* Clip */
    float *dlo, *dhi;       /* Clip's bound gradients, NULL when not wanted */
    bool assign;            /* Relu's backward: dX = rather than += (op_call.fresh) */
} act_job;

/* Elements [b, e) of the forward. */
SIMD_CLONES
static void act_forward_range(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const act_job *k = ctx;
    const float *x = k->x;
    float *y = k->out;
    switch (k->p->kind) {
    case ACT_RELU:
        for (int64_t i = b; i < e; i++)
            y[i] = x[i] < 0 ? 0.0f : x[i];
        break;
    case ACT_LEAKY:
        for (int64_t i = b; i < e; i++)
            y[i] = x[i] < 0 ? k->p->alpha * x[i] : x[i];
        break;
    case ACT_CLIP:
        /* min > max gives max everywhere, as ONNX specifies */
        for (int64_t i = b; i < e; i++)
            y[i] = clamp_f32(x[i], k->lo, k->hi);
        break;
    case ACT_SIGMOID:
        for (int64_t i = b; i < e; i++)
            y[i] = sigmoid(x[i]);
        break;
    case ACT_TANH:
        for (int64_t i = b; i < e; i++)
            y[i] = tanhf(x[i]);
        break;
    }
}

/* Operations per element, roughly, for the parallel threshold. */
static double act_work(int kind)
{
    return kind == ACT_SIGMOID || kind == ACT_TANH ? 20.0 : 1.0;
}

static void act_forward(const op_call *c)
{
    const act_params *p = c->params;
    act_job k = {.p = p, .x = c->in[0]->data, .out = c->out[0]->data};
    if (p->kind == ACT_CLIP)
        clip_bounds(c, &k.lo, &k.hi);
    int64_t n = lego_tensor_numel(c->out[0]);
    parallel_run(n, par_split_work(n, act_work(p->kind)), act_forward_range, &k);
}

/* The gradient of one Clip bound input, or NULL when not wanted. */
static float *bound_grad(const op_call *c, lego_tensor *const *din, int i)
{
    if (c->opset < 11 || !op_input(c, i) || !din[i])
        return NULL;
    return din[i]->data;
}

/* Elements [b, e) of the backward (see act_backward). */
SIMD_CLONES
static void act_backward_range(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const act_job *k = ctx;
    const float *x = k->x, *y = k->y, *g = k->g;
    float *dx = k->out;
    switch (k->p->kind) {
    /* g[i] is read whatever the sign, so the select vectorizes */
    case ACT_RELU: /* y > 0 exactly where x > 0, so x need not be kept */
        if (k->assign && dx == g) /* in place: one pointer, or the vectorizer's overlap check fails */
            for (int64_t i = b; i < e; i++) {
                float gi = dx[i];
                dx[i] = y[i] > 0 ? gi : 0.0f;
            }
        else if (k->assign)
            for (int64_t i = b; i < e; i++) {
                float gi = g[i];
                dx[i] = y[i] > 0 ? gi : 0.0f;
            }
        else
            for (int64_t i = b; i < e; i++) {
                float gi = g[i];
                dx[i] += y[i] > 0 ? gi : 0.0f;
            }
        break;
    case ACT_LEAKY: {
        float alpha = k->p->alpha;
        for (int64_t i = b; i < e; i++) {
            float gi = g[i];
            dx[i] += x[i] > 0 ? gi : alpha * gi;
        }
        break;
    }
    case ACT_CLIP: {
        float lo = k->lo, hi = k->hi;
        double slo = 0, shi = 0;
        for (int64_t i = b; i < e; i++) {
            if (x[i] > lo && x[i] < hi) {
                if (dx)
                    dx[i] += g[i];
            } else if (x[i] < lo && lo <= hi) {
                slo += g[i];
            } else if (x[i] > hi || lo > hi) {
                shi += g[i];
            }
        }
        if (k->dlo)
            *k->dlo += (float)slo;
        if (k->dhi)
            *k->dhi += (float)shi;
        break;
    }
    case ACT_SIGMOID:
        for (int64_t i = b; i < e; i++)
            dx[i] += g[i] * y[i] * (1.0f - y[i]);
        break;
    case ACT_TANH:
        for (int64_t i = b; i < e; i++)
            dx[i] += g[i] * (1.0f - y[i] * y[i]);
        break;
    }
}

/* dx += dy * f'(x), with PyTorch's choices at the kinks:
 *   Relu: x > 0 (read as y > 0);  LeakyRelu: 1 for x > 0, else alpha;
 *   Clip: passes strictly inside, min < x < max (hardtanh/relu6); the min
 *         input gets the gradient where x < min <= max, the max input where
 *         the output is max (x > max, or everywhere when min > max); at
 *         x == min or x == max nothing flows (a measure-zero set);
 *   Sigmoid: y (1 - y);  Tanh: 1 - y^2, both from the forward output.
 * Clip's bound gradients are sums over every element: they run in one
 * chunk, so that their order never depends on the thread count. */
static void act_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const act_params *p = c->params;
    if (!dout[0]) {
        if (din[0] && c->fresh & 1u)
            memset(din[0]->data, 0, lego_tensor_bytes(din[0]));
        return;
    }
    act_job k = {.p = p, .x = c->in[0]->data, .y = c->out[0]->data, .g = dout[0]->data,
                 .out = din[0] ? din[0]->data : NULL};
    if (p->kind == ACT_CLIP) {
        clip_bounds(c, &k.lo, &k.hi);
        k.dlo = bound_grad(c, din, 1);
        k.dhi = bound_grad(c, din, 2);
    }
    int64_t n = lego_tensor_numel(c->out[0]);
    if (k.out && c->fresh & 1u) { /* dX holds nothing yet: Relu writes it, the others add to zeros */
        k.assign = p->kind == ACT_RELU;
        if (!k.assign)
            memset(k.out, 0, sizeof(float) * (size_t)n);
    }
    if (!k.out && !k.dlo && !k.dhi)
        return;
    par_split one = {1, 1, 0}, s = k.dlo || k.dhi ? one : par_split_work(n, act_work(p->kind));
    parallel_run(n, s, act_backward_range, &k);
}

static int64_t act_flops(const op_call *c) { return lego_tensor_numel(c->out[0]); }

static lego_status relu_prepare(op_call *c) { return act_prepare(c, ACT_RELU); }
static lego_status leaky_prepare(op_call *c) { return act_prepare(c, ACT_LEAKY); }
static lego_status clip_prepare(op_call *c) { return act_prepare(c, ACT_CLIP); }
static lego_status sigmoid_prepare(op_call *c) { return act_prepare(c, ACT_SIGMOID); }
static lego_status tanh_prepare(op_call *c) { return act_prepare(c, ACT_TANH); }

/* Relu writes a fresh dX (so in place too); the others clear it first. */
#define ACT_DESC(Name, prep, nmax, unread, inplace)                                          \
    const op_desc op_desc_##Name = {.name = #Name, .min_in = 1, .max_in = nmax, .min_out = 1, \
                                    .max_out = 1, .params_size = sizeof(act_params),         \
                                    .prepare = prep, .forward = act_forward,                 \
                                    .flops = act_flops, .backward = act_backward,           \
                                    .in_unread = unread, .grad_writes = 1u, .grad_inplace = inplace};
ACT_DESC(Relu, relu_prepare, 1, 1u, 1u) /* backward reads y only */
ACT_DESC(LeakyRelu, leaky_prepare, 1, 0, 0)
ACT_DESC(Clip, clip_prepare, 3, 0, 0)
ACT_DESC(Sigmoid, sigmoid_prepare, 1, 0, 0)
ACT_DESC(Tanh, tanh_prepare, 1, 0, 0)
