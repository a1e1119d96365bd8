/* batchnorm.c - BatchNormalization in its inference form, any rank >= 2.
 *
 * y = (x - mean) / sqrt(var + epsilon) * scale + B per channel (axis 1).
 * The running statistics are inputs, so nothing is learned or updated here;
 * the graph layer may fold this op into a preceding Conv at load. */
#include <math.h>

#include "op.h"

typedef struct bn_params {
    int64_t n, c, plane; /* plane: product of the axes after the channel axis */
    float epsilon;
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
    p->n = x->dims[0];
    p->c = ch;
    p->plane = 1;
    for (int i = 2; i < x->rank; i++)
        p->plane *= x->dims[i];
    tensor_set_shape(c->out[0], LEGO_F32, x->rank, x->dims);
    return lego_ok();
}

// x is (N,C,D...), scale/B/mean/var are (C), y is like x
static void bn_forward(const op_call *c)
{
    const bn_params *p = c->params;
    const float *x = c->in[0]->data, *scale = c->in[1]->data, *bias = c->in[2]->data;
    const float *mean = c->in[3]->data, *var = c->in[4]->data;
    float *y = c->out[0]->data;
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t ch = 0; ch < p->c; ch++) {
            float a = scale[ch] / sqrtf(var[ch] + p->epsilon);
            float b = bias[ch] - mean[ch] * a;
            int64_t off = (n * p->c + ch) * p->plane;
            for (int64_t i = 0; i < p->plane; i++)
                y[off + i] = x[off + i] * a + b;
        }
    }
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
};
