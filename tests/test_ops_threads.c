/* test_ops_threads.c - the threaded kernels outside conv.c (BatchNormalization,
 * activations, pools, broadcasting arithmetic, Sqrt) give the same bits,
 * forward and backward, with 1, 2 and 3 threads. The parallel threshold is
 * lowered so that these small tensors are cut into as many chunks as there
 * are threads; one chunk is the code the other op tests check against their
 * references, so equal bits mean the cut changes nothing. (Conv and
 * ConvTranspose have the same check in test_ops_conv.c.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "op_test.h"

extern const op_desc op_desc_BatchNormalization, op_desc_Relu, op_desc_LeakyRelu,
    op_desc_Sigmoid, op_desc_Tanh, op_desc_Clip, op_desc_MaxPool, op_desc_AveragePool,
    op_desc_GlobalAveragePool, op_desc_GlobalMaxPool, op_desc_Add, op_desc_Mul, op_desc_Sqrt;

#define MAX_IN 5

/* One case: the op, its attributes, its inputs (made from the seed by
 * setup) and whether it runs in training mode. */
typedef struct op_case {
    const char *what;
    const op_desc *d;
    int n_in;
    int rank;
    int64_t dims[4];  /* input 0 */
    int64_t dims1[4]; /* input 1 when it is a tensor of rank `rank` (binary ops) */
    int training;
    int positive; /* input 0 kept positive (Sqrt) */
} op_case;

/* Inputs for k: input 0 of k->dims; BN's four (C) vectors, var positive;
 * Clip's scalar bounds; a binary op's second operand of k->dims1. */
static void make_inputs(const op_case *k, lego_tensor *in)
{
    make(&in[0], LEGO_F32, k->rank, k->dims, 1);
    if (k->positive) {
        float *x = in[0].data;
        for (int64_t i = 0; i < lego_tensor_numel(&in[0]); i++)
            x[i] = fabsf(x[i]) + 0.1f;
    }
    if (k->d == &op_desc_BatchNormalization) {
        for (int i = 1; i < 5; i++)
            make(&in[i], LEGO_F32, 1, &k->dims[1], 1);
        float *var = in[4].data;
        for (int64_t i = 0; i < k->dims[1]; i++)
            var[i] = fabsf(var[i]) + 0.1f;
    } else if (k->d == &op_desc_Clip) {
        int64_t one = 1;
        make(&in[1], LEGO_F32, 0, &one, 1);
        make(&in[2], LEGO_F32, 0, &one, 1);
        *(float *)in[1].data = -0.3f;
        *(float *)in[2].data = 0.4f;
    } else if (k->n_in == 2) {
        make(&in[1], LEGO_F32, k->rank, k->dims1, 1);
    }
}

static void make_attrs(const op_case *k, attrs *l)
{
    *l = (attrs){0};
    if (k->d == &op_desc_BatchNormalization) {
        add_float(l, "momentum", 0.8f);
    } else if (k->d == &op_desc_LeakyRelu) {
        add_float(l, "alpha", 0.2f);
    } else if (k->d == &op_desc_MaxPool || k->d == &op_desc_AveragePool) {
        static const int64_t ks[2] = {3, 3}, s[2] = {2, 2}, p[4] = {1, 1, 1, 1};
        add_ints(l, "kernel_shape", 2, ks);
        add_ints(l, "strides", 2, s);
        add_ints(l, "pads", 4, p);
        if (k->d == &op_desc_AveragePool)
            add_int(l, "count_include_pad", 1);
    }
}

/* Everything k computes with `threads` threads: y, the input gradients
 * (added to random values) and, in training mode, BN's running statistics.
 * out[] is allocated here; returns how many tensors it holds. */
static int run_case(const op_case *k, int threads, lego_tensor *out)
{
    lego_set_num_threads(threads);
    test_seed(4242u);
    lego_tensor in[MAX_IN], g[MAX_IN], dy = {0};
    lego_tensor *ins[MAX_IN], *din[MAX_IN];
    make_inputs(k, in);
    attrs l;
    make_attrs(k, &l);
    for (int i = 0; i < k->n_in; i++) {
        ins[i] = &in[i];
        make(&g[i], LEGO_F32, in[i].rank, in[i].dims, 1);
        din[i] = &g[i];
    }
    int n = 0;
    out[n] = (lego_tensor){0};
    CHECK_OK(run_backward(k->d, &l, k->training, k->n_in, ins, &out[n++], &dy, din));
    for (int i = 0; i < k->n_in; i++)
        out[n++] = g[i];
    if (k->training) {
        out[n++] = in[3];
        out[n++] = in[4];
    }
    for (int i = 0; i < k->n_in; i++)
        if (!k->training || i < 3)
            tensor_release(&in[i]);
    tensor_release(&dy);
    return n;
}

static void same_bits(const op_case *k)
{
    lego_tensor one[2 * MAX_IN], more[2 * MAX_IN];
    int n = run_case(k, 1, one);
    for (int t = 2; t <= 3; t++) {
        int m = run_case(k, t, more);
        int same = m == n;
        for (int i = 0; i < n && same; i++)
            same = tensor_same_shape(&one[i], &more[i]) &&
                   memcmp(one[i].data, more[i].data, lego_tensor_bytes(&one[i])) == 0;
        if (!same)
            fprintf(stderr, "  %s: 1 and %d threads differ\n", k->what, t);
        CHECK(same);
        for (int i = 0; i < m; i++)
            tensor_release(&more[i]);
    }
    for (int i = 0; i < n; i++)
        tensor_release(&one[i]);
}

int main(void)
{
    static const op_case cases[] = {
        {"BatchNormalization, training", &op_desc_BatchNormalization, 5, 4, {6, 5, 9, 7}, {0}, 1, 0},
        {"BatchNormalization, inference", &op_desc_BatchNormalization, 5, 4, {6, 5, 9, 7}, {0}, 0, 0},
        {"Relu", &op_desc_Relu, 1, 4, {3, 4, 10, 9}, {0}, 0, 0},
        {"LeakyRelu", &op_desc_LeakyRelu, 1, 4, {3, 4, 10, 9}, {0}, 0, 0},
        {"Sigmoid", &op_desc_Sigmoid, 1, 3, {3, 40, 9}, {0}, 0, 0},
        {"Tanh", &op_desc_Tanh, 1, 2, {30, 37}, {0}, 0, 0},
        {"Clip with bound gradients", &op_desc_Clip, 3, 4, {3, 4, 10, 9}, {0}, 0, 0},
        {"MaxPool 3x3/2", &op_desc_MaxPool, 1, 4, {3, 5, 11, 12}, {0}, 0, 0},
        {"AveragePool 3x3/2", &op_desc_AveragePool, 1, 4, {3, 5, 11, 12}, {0}, 0, 0},
        {"GlobalAveragePool", &op_desc_GlobalAveragePool, 1, 4, {3, 7, 6, 5}, {0}, 0, 0},
        {"GlobalMaxPool", &op_desc_GlobalMaxPool, 1, 4, {3, 7, 6, 5}, {0}, 0, 0},
        {"Add, same shapes", &op_desc_Add, 2, 4, {3, 4, 10, 9}, {3, 4, 10, 9}, 0, 0},
        {"Add, a broadcast bias", &op_desc_Add, 2, 4, {3, 4, 10, 9}, {1, 4, 1, 1}, 0, 0},
        {"Mul, broadcast rows", &op_desc_Mul, 2, 4, {3, 4, 10, 9}, {3, 1, 10, 1}, 0, 0},
        {"Sqrt", &op_desc_Sqrt, 1, 3, {7, 11, 13}, {0}, 0, 1},
    };
    par_set_min_work(1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        same_bits(&cases[i]);
    return harness_finish();
}
