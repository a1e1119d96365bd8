/* test_ops_batchnorm.c - BatchNormalization (inference) against a direct
 * formula over ranks 2 to 5, and its error messages. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "harness.h"
#include "ops/op.h"

extern const op_desc op_desc_BatchNormalization;

/* registry.c comes with op_error and names every op; until all op files
 * exist these weak stand-ins let this test link. Nothing here looks them up. */
#define WEAK_OP(op) __attribute__((weak)) const op_desc op_desc_##op = {.name = #op};
WEAK_OP(Add) WEAK_OP(Sub) WEAK_OP(Mul) WEAK_OP(Div) WEAK_OP(Pow) WEAK_OP(Sqrt) WEAK_OP(Equal)
WEAK_OP(Where) WEAK_OP(Relu) WEAK_OP(LeakyRelu) WEAK_OP(Clip) WEAK_OP(Sigmoid) WEAK_OP(Tanh)
WEAK_OP(Softmax) WEAK_OP(Conv) WEAK_OP(ConvTranspose) WEAK_OP(AveragePool) WEAK_OP(MaxPool)
WEAK_OP(GlobalAveragePool) WEAK_OP(GlobalMaxPool) WEAK_OP(Gemm) WEAK_OP(MatMul) WEAK_OP(ReduceMean)
WEAK_OP(ReduceMax) WEAK_OP(Reshape) WEAK_OP(Flatten) WEAK_OP(Squeeze) WEAK_OP(Unsqueeze)
WEAK_OP(Transpose) WEAK_OP(Concat) WEAK_OP(Slice) WEAK_OP(Gather) WEAK_OP(Expand) WEAK_OP(Shape)
WEAK_OP(Identity) WEAK_OP(Dropout) WEAK_OP(Constant) WEAK_OP(Cast) WEAK_OP(ConstantOfShape)
WEAK_OP(Pad) WEAK_OP(Resize)

/* ---- small helpers ---------------------------------------------------- */

static uint32_t rng = 4242;
static uint32_t rnd(uint32_t n)
{
    rng = rng * 1664525u + 1013904223u;
    return (rng >> 8) % n;
}
static float frand(void) { return (float)rnd(20001) / 10000.0f - 1.0f; }

typedef struct attrs {
    int n;
    lego_attr a[12];
} attrs;

static void add_int(attrs *l, const char *name, int64_t v)
{
    l->a[l->n++] = (lego_attr){.name = (char *)name, .type = ATTR_INT, .i = v};
}

static void make(lego_tensor *t, lego_dtype dt, int rank, const int64_t *dims, int alloc)
{
    memset(t, 0, sizeof *t);
    tensor_set_shape(t, dt, rank, dims);
    if (alloc && tensor_alloc(t).code == LEGO_OK && dt == LEGO_F32)
        for (int64_t i = 0; i < lego_tensor_numel(t); i++)
            ((float *)t->data)[i] = frand();
}

/* prepare, then (if it worked and forward is set) allocate out[0] and run forward. */
static lego_status run(const op_desc *d, attrs *l, int n_in, lego_tensor **in, int n_out,
                       lego_tensor **out, int forward, int64_t *flops)
{
    attr_list al = {l->n, l->a};
    void *params = calloc(1, d->params_size);
    op_call c = {.attrs = &al, .node_name = "", .opset = 17, .n_in = n_in, .n_out = n_out,
                 .in = in, .out = out, .params = params};
    lego_status st = d->prepare(&c);
    if (st.code == LEGO_OK && flops)
        *flops = d->flops(&c);
    if (st.code == LEGO_OK && forward) {
        st = tensor_alloc(out[0]);
        if (st.code == LEGO_OK)
            d->forward(&c);
    }
    free(params);
    return st;
}

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
            l.a[l.n++] = (lego_attr){.name = "epsilon", .type = ATTR_FLOAT, .f = eps};
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

int main(void)
{
    bn_sweep();
    bn_errors();
    return harness_finish();
}
