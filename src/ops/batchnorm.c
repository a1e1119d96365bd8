/* batchnorm.c - BatchNormalization over any rank >= 2, forward and backward,
 * in inference and training mode.
 *
 * y = (x - mean) / sqrt(var + epsilon) * scale + B per channel (axis 1).
 * At inference mean and var are the running statistics, inputs 3 and 4, and
 * nothing changes; the graph layer may fold the op into a preceding Conv.
 * In training mode (op_call.training) mean and var are the batch's own,
 * over N and the spatial axes with the biased variance, and the running
 * statistics are updated in place in inputs 3 and 4:
 *   running = momentum * running + (1 - momentum) * batch,
 * where the batch variance here is the unbiased one (times n/(n-1)). This
 * follows PyTorch, whose BatchNorm exports momentum 0.9 for its 0.1; the ONNX
 * spec's training-mode formula updates with the population (biased) variance
 * instead. Backward flows through the batch statistics in training mode and
 * treats the running ones as constants at inference; inputs 3 and 4 get no
 * gradient either way. Channels run in parallel, each in a fixed order, so
 * the results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/threads.h"
#include "op.h"
#include "simd.h"

typedef struct bn_params {
    int64_t n, c, plane; /* plane: product of the axes after the channel axis */
    float epsilon;
    float momentum; /* weight of the old running statistics (training) */
} bn_params;

static const char *const bn_input_names[5] = {"X", "scale", "B", "input_mean", "input_var"};

static lego_status bn_prepare(op_call *c)
{
    bn_params *p = c->params;
    for (int i = 0; i < 5; i++)
        LEGO_TRY(op_expect_dtype(c, i, LEGO_F32));
    const lego_tensor *x = c->in[0];
    char s[96];
    if (x->rank < 2)
        return op_error(c, LEGO_ERR_SHAPE, "input has rank %d (%s), expected at least 2 (N,C,...)",
                        x->rank, tensor_shape_str(x, s, sizeof s));
    int64_t ch = x->dims[1];
    for (int i = 1; i < 5; i++) {
        const lego_tensor *t = c->in[i];
        if (t->rank != 1 || t->dims[0] != ch)
            return op_error(c, LEGO_ERR_SHAPE, "%s has shape %s, expected %lld (one per channel)",
                            bn_input_names[i], tensor_shape_str(t, s, sizeof s), (long long)ch);
    }
    int64_t training, spatial;
    LEGO_TRY(attr_get_int(c->attrs, "training_mode", 0, &training));
    if (training != 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "training_mode=%lld is not supported at inference",
                        (long long)training);
    /* opsets before 9: spatial=0 means statistics per element, not per channel */
    LEGO_TRY(attr_get_int(c->attrs, "spatial", 1, &spatial));
    if (spatial == 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "spatial=0 is not supported");
    for (int i = 1; i < c->n_out; i++)
        if (c->out[i])
            return op_error(c, LEGO_ERR_UNSUPPORTED,
                            "only the Y output is supported at inference; output %d (running or "
                            "saved statistics) is requested",
                            i);
    LEGO_TRY(attr_get_float(c->attrs, "epsilon", 1e-5f, &p->epsilon));
    LEGO_TRY(attr_get_float(c->attrs, "momentum", 0.9f, &p->momentum));
    p->n = x->dims[0];
    p->c = ch;
    p->plane = 1;
    for (int i = 2; i < x->rank; i++)
        p->plane *= x->dims[i];
    tensor_set_shape(c->out[0], LEGO_F32, x->rank, x->dims);
    return lego_ok();
}

/* The sums below run in double over LANES interleaved partial sums, as
 * op_sum_f32 (op.h) does for the mean. */
#define LANES 8

/* Σ (x[i] - mean)² over n floats. */
SIMD_CLONES
static double sum_sq_dev(const float *x, int64_t n, double mean)
{
    double q[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            q[j] += (x[i + j] - mean) * (x[i + j] - mean);
    for (; i < n; i++)
        q[0] += (x[i] - mean) * (x[i] - mean);
    double sq = 0;
    for (int j = 0; j < LANES; j++)
        sq += q[j];
    return sq;
}

/* Adds Σ dy[i] and Σ dy[i]·(x[i] - mean) over n floats. */
SIMD_CLONES
static void sum_grad(const float *dy, const float *x, int64_t n, double mean, double *sum_dy,
                     double *sum_dy_dev)
{
    double s[LANES] = {0}, d[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            double g = dy[i + j];
            s[j] += g;
            d[j] += g * (x[i + j] - mean);
        }
    for (; i < n; i++) {
        s[0] += dy[i];
        d[0] += (double)dy[i] * (x[i] - mean);
    }
    for (int j = 0; j < LANES; j++) {
        *sum_dy += s[j];
        *sum_dy_dev += d[j];
    }
}

/* The batch mean and biased variance of channel ch of x (N,C,plane). */
static void batch_stats(const bn_params *p, const float *x, int64_t ch, double *mean, double *var)
{
    double sum = 0, sq = 0, cnt = (double)(p->n * p->plane);
    for (int64_t n = 0; n < p->n; n++)
        sum += op_sum_f32(x + (n * p->c + ch) * p->plane, p->plane);
    *mean = cnt > 0 ? sum / cnt : 0.0;
    for (int64_t n = 0; n < p->n; n++)
        sq += sum_sq_dev(x + (n * p->c + ch) * p->plane, p->plane, *mean);
    *var = cnt > 0 ? sq / cnt : 0.0;
}

/* What a train plan keeps per BatchNormalization (op_desc.train_pack):
 * the batch statistics of its last training forward, so that the backward
 * does not compute them again: two of the seven passes over x a training
 * step made (the same doubles from the same x, so the same bits). */
typedef struct bn_saved {
    bool valid;         /* set by a training forward, cleared by an inference one */
    double *mean, *var; /* per channel */
} bn_saved;

static lego_status bn_train_pack(const op_call *c, void **state)
{
    const bn_params *p = c->params;
    bn_saved *sv = calloc(1, sizeof *sv);
    if (sv) {
        sv->mean = malloc(sizeof *sv->mean * (size_t)(p->c ? p->c : 1));
        sv->var = malloc(sizeof *sv->var * (size_t)(p->c ? p->c : 1));
    }
    if (!sv || !sv->mean || !sv->var) {
        if (sv)
            free(sv->mean), free(sv->var);
        free(sv);
        return op_error(c, LEGO_ERR_NOMEM, "out of memory");
    }
    *state = sv;
    return lego_ok();
}

static void bn_train_unpack(void *state)
{
    bn_saved *sv = state;
    if (sv)
        free(sv->mean), free(sv->var);
    free(sv);
}

/* The statistics channel ch is normalised with: the batch's in training
 * mode (saved by the forward, for the backward), the running ones
 * otherwise. */
static void channel_stats(const op_call *c, int64_t ch, bool forward, double *mean, double *var)
{
    const bn_params *p = c->params;
    bn_saved *sv = c->train_state;
    if (c->training && !forward && sv && sv->valid) {
        *mean = sv->mean[ch];
        *var = sv->var[ch];
    } else if (c->training) {
        batch_stats(p, c->in[0]->data, ch, mean, var);
        if (forward && sv)
            sv->mean[ch] = *mean, sv->var[ch] = *var;
    } else {
        *mean = ((const float *)c->in[3]->data)[ch];
        *var = ((const float *)c->in[4]->data)[ch];
    }
}

/* Channels [b, e) of bn_forward; every channel is independent, so the
 * channels are spread over threads (core/threads.h). */
SIMD_CLONES
static void bn_forward_channels(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const op_call *c = ctx;
    const bn_params *p = c->params;
    const float *x = c->in[0]->data, *scale = c->in[1]->data, *bias = c->in[2]->data;
    float *run_mean = c->in[3]->data, *run_var = c->in[4]->data;
    float *y = c->out[0]->data;
    int64_t cnt = p->n * p->plane;
    for (int64_t ch = b; ch < e; ch++) {
        double mean, var;
        channel_stats(c, ch, true, &mean, &var);
        float a = (float)(scale[ch] / sqrt(var + p->epsilon));
        float sh = (float)(bias[ch] - mean * a);
        for (int64_t n = 0; n < p->n; n++) {
            int64_t off = (n * p->c + ch) * p->plane;
            if (c->clamp) /* a Relu or Clip the plan fused after it (inference only) */
                for (int64_t i = 0; i < p->plane; i++)
                    y[off + i] = clamp_f32(x[off + i] * a + sh, c->lo, c->hi);
            else
                for (int64_t i = 0; i < p->plane; i++)
                    y[off + i] = x[off + i] * a + sh;
        }
        if (c->training) {
            /* one value per channel has no unbiased variance; PyTorch refuses it */
            double unbiased = cnt > 1 ? var * (double)cnt / (double)(cnt - 1) : var;
            double m = p->momentum;
            run_mean[ch] = (float)(m * run_mean[ch] + (1.0 - m) * mean);
            run_var[ch] = (float)(m * run_var[ch] + (1.0 - m) * unbiased);
        }
    }
}

// x is (N,C,D...), scale/B/mean/var are (C), y is like x
static void bn_forward(const op_call *c)
{
    const bn_params *p = c->params;
    double work = (double)(p->n * p->plane) * (c->training ? 4.0 : 2.0);
    parallel_run(p->c, par_split_work(p->c, work), bn_forward_channels, (void *)c);
    bn_saved *sv = c->train_state;
    if (sv)
        sv->valid = c->training;
}

typedef struct bn_grad {
    const op_call *c;
    const float *dy;
    float *dx, *dscale, *db; /* NULL when not wanted */
    bool assign;             /* dx = rather than += (op_call.fresh) */
} bn_grad;

/* Channels [b, e) of bn_backward. */
SIMD_CLONES
static void bn_backward_channels(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const bn_grad *k = ctx;
    const op_call *c = k->c;
    const bn_params *p = c->params;
    const float *x = c->in[0]->data, *scale = c->in[1]->data, *dy = k->dy;
    float *dx = k->dx;
    double cnt = (double)(p->n * p->plane);
    for (int64_t ch = b; ch < e; ch++) {
        double mean, var;
        channel_stats(c, ch, false, &mean, &var);
        double inv_std = 1.0 / sqrt(var + p->epsilon);
        double sum_dy = 0, sum_dy_dev = 0;
        for (int64_t n = 0; n < p->n; n++) {
            int64_t off = (n * p->c + ch) * p->plane;
            sum_grad(dy + off, x + off, p->plane, mean, &sum_dy, &sum_dy_dev);
        }
        double sum_dy_xhat = sum_dy_dev * inv_std;
        if (k->db)
            k->db[ch] += (float)sum_dy;
        if (k->dscale)
            k->dscale[ch] += (float)sum_dy_xhat;
        if (!dx)
            continue;
        double kk = scale[ch] * inv_std;
        /* at inference the statistics are constants: no mean terms */
        double mean_dy = c->training && cnt > 0 ? sum_dy / cnt : 0.0;
        double mean_dy_xhat = c->training && cnt > 0 ? sum_dy_xhat / cnt : 0.0;
        for (int64_t n = 0; n < p->n; n++) {
            int64_t off = (n * p->c + ch) * p->plane;
            if (k->assign && dx == dy) /* in place: one pointer, or the vectorizer's overlap check fails */
                for (int64_t i = 0; i < p->plane; i++) {
                    double xhat = (x[off + i] - mean) * inv_std;
                    dx[off + i] = (float)(kk * (dx[off + i] - mean_dy - xhat * mean_dy_xhat));
                }
            else if (k->assign)
                for (int64_t i = 0; i < p->plane; i++) {
                    double xhat = (x[off + i] - mean) * inv_std;
                    dx[off + i] = (float)(kk * (dy[off + i] - mean_dy - xhat * mean_dy_xhat));
                }
            else
                for (int64_t i = 0; i < p->plane; i++) {
                    double xhat = (x[off + i] - mean) * inv_std;
                    dx[off + i] += (float)(kk * (dy[off + i] - mean_dy - xhat * mean_dy_xhat));
                }
        }
    }
}

/* With x̂ = (x - mean) / sqrt(var + eps) and y = x̂*scale + B:
 *   dB += Σ dy,  dscale += Σ dy*x̂ (sums over N and the spatial axes),
 *   dx += dy*scale/sqrt(var + eps) at inference (mean, var constant), and in
 *   training mode, where mean and var are functions of x,
 *   dx += scale/sqrt(var + eps) * (dy - mean(dy) - x̂*mean(dy*x̂)).
 * x is (N,C,D...), dy like x; dscale and dB are (C). */
static void bn_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const bn_params *p = c->params;
    if (!dout[0] && din[0] && c->fresh & 1u)
        memset(din[0]->data, 0, lego_tensor_bytes(din[0]));
    if (!dout[0] || (!din[0] && !din[1] && !din[2]))
        return;
    bn_grad k = {.c = c, .dy = dout[0]->data, .dx = din[0] ? din[0]->data : NULL,
                 .dscale = din[1] ? din[1]->data : NULL, .db = din[2] ? din[2]->data : NULL,
                 .assign = (c->fresh & 1u) != 0};
    double work = (double)(p->n * p->plane) * (c->training ? 8.0 : 4.0);
    parallel_run(p->c, par_split_work(p->c, work), bn_backward_channels, &k);
}

static int64_t bn_flops(const op_call *c) { return 2 * lego_tensor_numel(c->in[0]); }

const op_desc op_desc_BatchNormalization = {
    .name = "BatchNormalization",
    .min_in = 5, .max_in = 5,
    .min_out = 1, .max_out = 5, /* older opsets list the statistics; prepare refuses them */
    .params_size = sizeof(bn_params),
    .prepare = bn_prepare,
    .forward = bn_forward,
    .flops = bn_flops,
    .backward = bn_backward,
    .out_unread = 1u, /* x̂ is recomputed from x */
    .grad_writes = 1u,
    .grad_inplace = 1u, /* a channel's sums are taken before its dX is written */
    .takes_clamp = true, /* where no Conv before it takes it in (graph/exec.c) */
    .train_pack = bn_train_pack,
    .train_unpack = bn_train_unpack,
};
