/* test_ops_batchnorm.c - BatchNormalization (inference) against a direct
 * formula over ranks 2 to 5, and its error messages; training mode's batch
 * statistics and running-statistic update worked by hand; backward in both
 * modes against finite differences and for accumulating into the gradients
 * it is given. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "op_test.h"

extern const op_desc op_desc_BatchNormalization;

/* x, scale, B, mean, var for x of the given shape; var is kept positive. */
static void make_inputs(lego_tensor *t, int rank, const int64_t *dims)
{
    make(&t[0], LEGO_F32, rank, dims, 1);
    for (int i = 1; i < 5; i++)
        make(&t[i], LEGO_F32, 1, &dims[1], 1);
    float *var = t[4].data;
    for (int64_t i = 0; i < dims[1]; i++)
        var[i] = fabsf(var[i]) + 0.1f;
}

static void bn_sweep(void)
{
    for (int trial = 0; trial < 40; trial++) {
        int rank = 2 + (int)rnd(4);
        int64_t dims[5];
        for (int i = 0; i < rank; i++)
            dims[i] = 1 + rnd(i < 2 ? 4 : 6);
        lego_tensor t[5], y = {0};
        make_inputs(t, rank, dims);
        lego_tensor *in[5] = {&t[0], &t[1], &t[2], &t[3], &t[4]}, *out[1] = {&y};
        attrs l = {0};
        float eps = 1e-5f;
        if (rnd(2)) {
            eps = 1e-3f;
            add_float(&l, "epsilon", eps);
        }
        add_int(&l, "training_mode", 0);
        int64_t flops = 0;
        CHECK_OK(run(&op_desc_BatchNormalization, &l, 5, in, 1, out, 1, &flops));
        CHECK(tensor_same_shape(&y, &t[0]) && y.dtype == LEGO_F32);
        CHECK(flops == 2 * lego_tensor_numel(&t[0]));
        int64_t plane = 1;
        for (int i = 2; i < rank; i++)
            plane *= dims[i];
        int64_t n = lego_tensor_numel(&t[0]);
        float *want = malloc((size_t)n * sizeof *want);
        const float *x = t[0].data, *sc = t[1].data, *b = t[2].data, *mu = t[3].data,
                    *var = t[4].data;
        for (int64_t i = 0; i < n; i++) {
            int64_t ch = (i / plane) % dims[1];
            want[i] = (float)((x[i] - mu[ch]) / sqrt((double)var[ch] + eps) * sc[ch] + b[ch]);
        }
        char what[64];
        snprintf(what, sizeof what, "batchnorm trial %d rank %d", trial, rank);
        if (y.data)
            check_close(y.data, want, (long)n, 1e-5f, 1e-4f, what);
        free(want);
        for (int i = 0; i < 5; i++)
            tensor_release(&t[i]);
        tensor_release(&y);
    }
}

static void bn_errors(void)
{
    int64_t dims[4] = {2, 3, 4, 4};
    lego_tensor t[5], y = {0}, mean = {0};
    make_inputs(t, 4, dims);
    lego_tensor *in[5] = {&t[0], &t[1], &t[2], &t[3], &t[4]}, *out[3] = {&y, NULL, NULL};
    attrs train = {0};
    add_int(&train, "training_mode", 1);
    CHECK_FAILS(run(&op_desc_BatchNormalization, &train, 5, in, 1, out, 0, NULL),
                LEGO_ERR_UNSUPPORTED, "training_mode=1 is not supported at inference");
    attrs sp = {0};
    add_int(&sp, "spatial", 0);
    CHECK_FAILS(run(&op_desc_BatchNormalization, &sp, 5, in, 1, out, 0, NULL),
                LEGO_ERR_UNSUPPORTED, "spatial=0 is not supported");
    attrs none = {0};
    out[1] = &mean;
    CHECK_FAILS(run(&op_desc_BatchNormalization, &none, 5, in, 2, out, 0, NULL),
                LEGO_ERR_UNSUPPORTED, "only the Y output is supported at inference; output 1");
    out[1] = NULL; /* omitted optional outputs are fine */
    CHECK_OK(run(&op_desc_BatchNormalization, &none, 5, in, 3, out, 0, NULL));

    int64_t four = 4;
    lego_tensor bad;
    make(&bad, LEGO_F32, 1, &four, 0);
    in[4] = &bad;
    CHECK_FAILS(run(&op_desc_BatchNormalization, &none, 5, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "input_var has shape 4, expected 3 (one per channel)");
    in[4] = &t[4];
    in[1] = &t[0];
    CHECK_FAILS(run(&op_desc_BatchNormalization, &none, 5, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "scale has shape 2x3x4x4, expected 3");
    in[1] = &t[1];
    lego_tensor x1;
    make(&x1, LEGO_F32, 1, &four, 0);
    in[0] = &x1;
    CHECK_FAILS(run(&op_desc_BatchNormalization, &none, 5, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "input has rank 1 (4), expected at least 2");
    make(&x1, LEGO_I64, 4, dims, 0);
    CHECK_FAILS(run(&op_desc_BatchNormalization, &none, 5, in, 1, out, 0, NULL), LEGO_ERR_SHAPE,
                "input 0 is int64, expected float32");
    in[0] = &t[0];
    in[3] = NULL;
    CHECK_FAILS(run(&op_desc_BatchNormalization, &none, 5, in, 1, out, 0, NULL), LEGO_ERR_FORMAT,
                "input 3 is missing");
    for (int i = 0; i < 5; i++)
        tensor_release(&t[i]);
}

/* ---- training mode and backward ----------------------------------------- */

/* Training mode normalises with the batch mean and biased variance and
 * moves the running statistics towards the batch's, PyTorch's way: the
 * unbiased variance, weighted 1 - momentum. */
static void bn_training_forward(void)
{
    /* x is 2x2x3: channel 0 holds 1..6, channel 1 holds 0,0,0,2,2,2 */
    int64_t dims[3] = {2, 2, 3};
    lego_tensor t[5], y = {0};
    make_inputs(t, 3, dims);
    const float xs[12] = {1, 2, 3, 0, 0, 0, 4, 5, 6, 2, 2, 2};
    memcpy(t[0].data, xs, sizeof xs);
    float *sc = t[1].data, *b = t[2].data, *mu = t[3].data, *var = t[4].data;
    sc[0] = 2.0f, sc[1] = 0.5f, b[0] = 0.25f, b[1] = -1.0f;
    mu[0] = 1.0f, mu[1] = -2.0f, var[0] = 4.0f, var[1] = 0.5f;
    lego_tensor *in[5] = {&t[0], &t[1], &t[2], &t[3], &t[4]}, *out[1] = {&y};
    attrs l = {0};
    add_float(&l, "epsilon", 1e-3f);
    add_float(&l, "momentum", 0.8f);
    attr_list al = {l.n, l.a};
    void *params = calloc(1, op_desc_BatchNormalization.params_size);
    op_call c = {.attrs = &al, .node_name = "", .opset = 15, .n_in = 5, .n_out = 1, .in = in,
                 .out = out, .params = params, .training = true};
    CHECK_OK(op_desc_BatchNormalization.prepare(&c));
    CHECK_OK(tensor_alloc(&y));
    op_desc_BatchNormalization.forward(&c);
    /* channel 0: mean 3.5, biased variance 17.5/6, unbiased 17.5/5 = 3.5;
     * channel 1: mean 1, biased variance 1, unbiased 6/5 */
    double m0 = 3.5, v0 = 17.5 / 6, m1 = 1.0, v1 = 1.0;
    float want_y[12];
    for (int i = 0; i < 12; i++) {
        int ch = (i / 3) % 2;
        double m = ch ? m1 : m0, v = ch ? v1 : v0, s = ch ? 0.5 : 2.0, bb = ch ? -1.0 : 0.25;
        want_y[i] = (float)((xs[i] - m) / sqrt(v + 1e-3) * s + bb);
    }
    check_close(y.data, want_y, 12, 1e-6f, 1e-5f, "training-mode output (batch statistics)");
    const float want_mu[2] = {0.8f * 1.0f + 0.2f * 3.5f, 0.8f * -2.0f + 0.2f * 1.0f};
    const float want_var[2] = {0.8f * 4.0f + 0.2f * 3.5f, 0.8f * 0.5f + 0.2f * 1.2f};
    check_close(mu, want_mu, 2, 1e-6f, 1e-6f, "running mean after one training step");
    check_close(var, want_var, 2, 1e-6f, 1e-6f, "running var (unbiased) after one training step");

    /* the default momentum is 0.9 (PyTorch's 0.1): a second step from here */
    attrs ld = {0};
    add_float(&ld, "epsilon", 1e-3f);
    al = (attr_list){ld.n, ld.a};
    CHECK_OK(op_desc_BatchNormalization.prepare(&c));
    op_desc_BatchNormalization.forward(&c);
    const float want_mu2[2] = {0.9f * want_mu[0] + 0.1f * 3.5f, 0.9f * want_mu[1] + 0.1f * 1.0f};
    const float want_var2[2] = {0.9f * want_var[0] + 0.1f * 3.5f,
                                0.9f * want_var[1] + 0.1f * 1.2f};
    check_close(mu, want_mu2, 2, 1e-6f, 1e-6f, "running mean, default momentum");
    check_close(var, want_var2, 2, 1e-6f, 1e-6f, "running var, default momentum");

    /* inference reads the running statistics and leaves them alone */
    const float saved_mu[2] = {mu[0], mu[1]}, saved_var[2] = {var[0], var[1]};
    c.training = false;
    op_desc_BatchNormalization.forward(&c);
    check_close(mu, saved_mu, 2, 0, 0, "running mean unchanged at inference");
    check_close(var, saved_var, 2, 0, 0, "running var unchanged at inference");
    for (int i = 0; i < 12; i++) {
        int ch = (i / 3) % 2;
        want_y[i] = (float)((xs[i] - mu[ch]) / sqrt((double)var[ch] + 1e-3) * (ch ? 0.5 : 2.0) +
                            (ch ? -1.0 : 0.25));
    }
    check_close(y.data, want_y, 12, 1e-6f, 1e-5f, "inference output after training steps");
    for (int i = 0; i < 5; i++)
        tensor_release(&t[i]);
    tensor_release(&y);
    free(params);
}

static void bn_grads(void)
{
    static const int64_t shapes[][5] = {
        {2, 3, 4, 3, 0}, {4, 2, 0, 0, 0}, {2, 2, 5, 0, 0}, {1, 3, 3, 4, 0}, {2, 2, 2, 3, 2},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rank = 0;
        while (rank < 5 && shapes[s][rank])
            rank++;
        for (int training = 0; training < 2; training++) {
            lego_tensor t[5];
            make_inputs(t, rank, shapes[s]);
            /* channels off zero mean and unit variance, as real activations are */
            float *x = t[0].data;
            for (int64_t i = 0; i < lego_tensor_numel(&t[0]); i++)
                x[i] = x[i] * 1.5f + 0.3f;
            lego_tensor *in[5] = {&t[0], &t[1], &t[2], &t[3], &t[4]};
            attrs l = {0};
            add_float(&l, "epsilon", 1e-3f);
            char what[80];
            snprintf(what, sizeof what, "BatchNormalization backward, rank %d, %s", rank,
                     training ? "training" : "inference");
            gradcheck(&op_desc_BatchNormalization, &l, 15, 5, in, 1, 7u, training, 1e-2f, 1e-3f,
                      2e-3f, 200, what);
            check_accumulates(&op_desc_BatchNormalization, &l, 5, in, 7u, training, what);
            for (int i = 0; i < 5; i++)
                tensor_release(&t[i]);
        }
    }
}

int main(void)
{
    test_seed(4242u);
    bn_sweep();
    bn_errors();
    bn_training_forward();
    bn_grads();
    return harness_finish();
}
