/* test_ops_tensor.c - the non-conv op kernels, called directly through their
 * descriptors: elementwise, activations, Softmax, reductions, the shape and
 * data-movement ops, Pad and Resize.
 *
 * Each case builds inputs and attributes by hand, runs prepare, allocates
 * outputs filled with NaN bytes (so a kernel that skips an element is caught),
 * runs forward and compares with values worked out by hand or by a naive
 * loop written here independently of the kernel. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/attr.h"
#include "core/tensor.h"
#include "harness.h"
#include "ops/op.h"

extern const op_desc op_desc_Add, op_desc_Sub, op_desc_Mul, op_desc_Div, op_desc_Pow,
    op_desc_Sqrt, op_desc_Equal, op_desc_Where, op_desc_Relu, op_desc_LeakyRelu,
    op_desc_Clip, op_desc_Sigmoid, op_desc_Tanh, op_desc_Softmax, op_desc_ReduceMean,
    op_desc_ReduceMax, op_desc_ReduceSum, op_desc_Reshape, op_desc_Flatten, op_desc_Squeeze,
    op_desc_Unsqueeze,
    op_desc_Transpose, op_desc_Concat, op_desc_Slice, op_desc_Gather, op_desc_Expand,
    op_desc_Shape, op_desc_Identity, op_desc_Dropout, op_desc_Constant, op_desc_Cast,
    op_desc_ConstantOfShape, op_desc_Pad, op_desc_Resize;

/* ---- building inputs ---------------------------------------------------- */

/* Every tensor made here, freed by pool_free() after each case. */
static lego_tensor *pool[256];
static int n_pool;

static lego_tensor *tnew(lego_dtype dt, int rank, const int64_t *dims, const void *data)
{
    lego_tensor *t = calloc(1, sizeof *t);
    tensor_set_shape(t, dt, rank, dims);
    if (data) {
        lego_status st = tensor_alloc(t);
        lego_status_free(&st);
        memcpy(t->data, data, lego_tensor_bytes(t));
    }
    pool[n_pool++] = t;
    return t;
}

static void pool_free(void)
{
    while (n_pool > 0)
        lego_tensor_free(pool[--n_pool]);
}

#define DIMS(...) (const int64_t[]){__VA_ARGS__}
#define NDIMS(...) ((int)(sizeof(int64_t[]){__VA_ARGS__} / sizeof(int64_t)))
/* F(dims..)(values..) style is awkward in C; these take the dims as a
 * braced list and the values as the rest. */
#define TF(rank, dims, ...) tnew(LEGO_F32, rank, dims, (const float[]){__VA_ARGS__})
#define TI(rank, dims, ...) tnew(LEGO_I64, rank, dims, (const int64_t[]){__VA_ARGS__})
#define TB(rank, dims, ...) tnew(LEGO_BOOL, rank, dims, (const uint8_t[]){__VA_ARGS__})
/* 1-D int64 list, the usual form of shape-like inputs */
#define LIST(...) tnew(LEGO_I64, 1, DIMS(NDIMS(__VA_ARGS__)), (const int64_t[]){__VA_ARGS__})
/* a known 1-D list with no values (data present, zero elements) */
static lego_tensor *empty_list(lego_dtype dt)
{
    lego_tensor *t = tnew(dt, 1, DIMS(0), NULL);
    lego_status st = tensor_alloc(t);
    lego_status_free(&st);
    return t;
}

static lego_attr a_int(const char *name, int64_t v)
{
    lego_attr a = {.name = (char *)name, .type = ATTR_INT, .i = v};
    return a;
}
static lego_attr a_float(const char *name, float v)
{
    lego_attr a = {.name = (char *)name, .type = ATTR_FLOAT, .f = v};
    return a;
}
static lego_attr a_str(const char *name, const char *s)
{
    lego_attr a = {.name = (char *)name, .type = ATTR_STRING, .s = (char *)s};
    return a;
}
static lego_attr a_ints(const char *name, int n, const int64_t *v)
{
    lego_attr a = {.name = (char *)name, .type = ATTR_INTS, .n = n, .ints = (int64_t *)v};
    return a;
}
static lego_attr a_floats(const char *name, int n, const float *v)
{
    lego_attr a = {.name = (char *)name, .type = ATTR_FLOATS, .n = n, .floats = (float *)v};
    return a;
}
static lego_attr a_tensor(const char *name, lego_tensor *t)
{
    lego_attr a = {.name = (char *)name, .type = ATTR_TENSOR, .t = t};
    return a;
}

#define ATTRS(...)                                                                          \
    (&(const attr_list){(int)(sizeof((lego_attr[]){__VA_ARGS__}) / sizeof(lego_attr)),     \
                        (lego_attr[]){__VA_ARGS__}})
static const attr_list no_attrs = {0, NULL};
#define NOATTR (&no_attrs)
#define INS(...) (lego_tensor *[]){__VA_ARGS__}, NDIMS_P(__VA_ARGS__)
#define NDIMS_P(...) ((int)(sizeof((lego_tensor *[]){__VA_ARGS__}) / sizeof(lego_tensor *)))

/* ---- running ops -------------------------------------------------------- */

static lego_tensor out[2]; /* outputs of the last run, released by next_case() */

static void next_case(void)
{
    tensor_release(&out[0]);
    tensor_release(&out[1]);
    pool_free();
}

/* prepare, allocate outputs filled with garbage, forward. */
static lego_status run_n(const op_desc *d, const attr_list *attrs, int opset, lego_tensor **in,
                         int n_in, int n_out)
{
    for (int i = 0; i < 2; i++) {
        tensor_release(&out[i]);
        memset(&out[i], 0, sizeof out[i]);
    }
    if (n_in < d->min_in || n_in > d->max_in || n_out < d->min_out || n_out > d->max_out) {
        harness_failed++;
        fprintf(stderr, "%s: arity %d in / %d out outside the descriptor's range\n", d->name,
                n_in, n_out);
    }
    void *params = calloc(1, d->params_size + 1);
    lego_tensor *outp[2] = {&out[0], &out[1]};
    op_call c = {attrs, "test", opset, n_in, n_out, in, outp, params, false, NULL, 0, false, NULL, NULL, 0, NULL, false, 0.0f, 0.0f};
    lego_status st = d->prepare(&c);
    if (st.code == LEGO_OK) {
        for (int i = 0; i < n_out; i++) {
            lego_status a = tensor_alloc(&out[i]);
            lego_status_free(&a);
            memset(out[i].data, 0xFF, lego_tensor_bytes(&out[i])); /* NaN, -1 */
        }
        d->forward(&c);
    }
    free(params);
    return st;
}

static lego_status run(const op_desc *d, const attr_list *attrs, int opset, lego_tensor **in,
                       int n_in)
{
    return run_n(d, attrs, opset, in, n_in, 1);
}

/* ---- checking ----------------------------------------------------------- */

static int shape_is(const lego_tensor *t, lego_dtype dt, int rank, const int64_t *dims)
{
    if (t->dtype != dt || t->rank != rank)
        return 0;
    for (int d = 0; d < rank; d++)
        if (t->dims[d] != dims[d])
            return 0;
    return 1;
}
#define SHAPE_IS(t, dt, ...) shape_is(t, dt, NDIMS(__VA_ARGS__), DIMS(__VA_ARGS__))
#define SCALAR_IS(t, dt) shape_is(t, dt, 0, NULL)

static int i64_is(const lego_tensor *t, int n, const int64_t *want)
{
    if (t->dtype != LEGO_I64 || lego_tensor_numel(t) != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (((const int64_t *)t->data)[i] != want[i]) {
            fprintf(stderr, "  int64 [%d]: got %lld want %lld\n", i,
                    (long long)((const int64_t *)t->data)[i], (long long)want[i]);
            return 0;
        }
    return 1;
}
#define I64_IS(t, ...) i64_is(t, NDIMS(__VA_ARGS__), DIMS(__VA_ARGS__))

static int bool_is(const lego_tensor *t, int n, const uint8_t *want)
{
    if (t->dtype != LEGO_BOOL || lego_tensor_numel(t) != n)
        return 0;
    return memcmp(t->data, want, (size_t)n) == 0;
}
#define BOOL_IS(t, ...)                                                                     \
    bool_is(t, (int)sizeof((const uint8_t[]){__VA_ARGS__}), (const uint8_t[]){__VA_ARGS__})

/* float output against listed values (count must match too) */
static void f32_close(const lego_tensor *t, int n, const float *want, const char *what)
{
    if (t->dtype != LEGO_F32 || lego_tensor_numel(t) != n || !t->data) {
        harness_failed++;
        fprintf(stderr, "%s: output is %s with %lld elements, expected float32 with %d\n", what,
                dtype_name(t->dtype), (long long)lego_tensor_numel(t), n);
        return;
    }
    check_close(t->data, want, n, 1e-6f, 1e-5f, what);
}
#define F32_IS(t, what, ...)                                                                \
    f32_close(t, (int)(sizeof((const float[]){__VA_ARGS__}) / sizeof(float)),              \
              (const float[]){__VA_ARGS__}, what)

static float frand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f * 4.0f - 2.0f;
}

static lego_tensor *trand(int rank, const int64_t *dims, unsigned seed)
{
    lego_tensor *t = tnew(LEGO_F32, rank, dims, NULL);
    lego_status st = tensor_alloc(t);
    lego_status_free(&st);
    for (int64_t i = 0; i < lego_tensor_numel(t); i++)
        ((float *)t->data)[i] = frand(&seed);
    return t;
}

/* ---- elementwise -------------------------------------------------------- */

static void test_elementwise(void)
{
    CHECK_OK(run(&op_desc_Add, NOATTR, 13,
                 INS(TF(2, DIMS(2, 3), 1, 2, 3, 4, 5, 6), TF(1, DIMS(3), 10, 20, 30))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 3));
    F32_IS(&out[0], "Add row broadcast", 11, 22, 33, 14, 25, 36);
    next_case();

    /* both sides broadcast: [2,1] * [1,3] -> [2,3] */
    CHECK_OK(run(&op_desc_Mul, NOATTR, 13,
                 INS(TF(2, DIMS(2, 1), 1, 2), TF(2, DIMS(1, 3), 1, 2, 3))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 3));
    F32_IS(&out[0], "Mul outer broadcast", 1, 2, 3, 2, 4, 6);
    next_case();

    CHECK_OK(run(&op_desc_Sub, NOATTR, 13, INS(TF(1, DIMS(3), 1, 2, 3), TF(0, NULL, 1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3));
    F32_IS(&out[0], "Sub scalar", 0, 1, 2);
    next_case();

    CHECK_OK(run(&op_desc_Sub, NOATTR, 13, INS(TF(0, NULL, 1), TF(1, DIMS(3), 1, 2, 3))));
    F32_IS(&out[0], "Sub from scalar", 0, -1, -2);
    next_case();

    CHECK_OK(run(&op_desc_Div, NOATTR, 13, INS(TF(1, DIMS(3), 1, 2, 3), TF(1, DIMS(1), 2))));
    F32_IS(&out[0], "Div", 0.5f, 1, 1.5f);
    next_case();

    /* rank-4 broadcast against a naive loop: [2,3,4,5] + [3,1,5] */
    {
        lego_tensor *a = trand(4, DIMS(2, 3, 4, 5), 1), *b = trand(3, DIMS(3, 1, 5), 2);
        CHECK_OK(run(&op_desc_Add, NOATTR, 13, INS(a, b)));
        float want[120];
        const float *ad = a->data, *bd = b->data;
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++)
                    for (int l = 0; l < 5; l++)
                        want[((i * 3 + j) * 4 + k) * 5 + l] =
                            ad[((i * 3 + j) * 4 + k) * 5 + l] + bd[j * 5 + l];
        CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 3, 4, 5));
        f32_close(&out[0], 120, want, "Add rank-4 broadcast");
        next_case();
    }

    /* int64: the shape arithmetic the graph layer folds */
    CHECK_OK(run(&op_desc_Add, NOATTR, 13, INS(TI(1, DIMS(2), 3, -4), TI(0, NULL, 5))));
    CHECK(I64_IS(&out[0], 8, 1));
    next_case();
    CHECK_OK(run(&op_desc_Sub, NOATTR, 13, INS(TI(1, DIMS(2), 3, -4), TI(1, DIMS(2), 1, 1))));
    CHECK(I64_IS(&out[0], 2, -5));
    next_case();
    CHECK_OK(run(&op_desc_Mul, NOATTR, 13, INS(TI(1, DIMS(2), 3, -4), TI(1, DIMS(1), 2))));
    CHECK(I64_IS(&out[0], 6, -8));
    next_case();
    /* truncation toward zero; x/0 gives 0 rather than trapping; MIN/-1 wraps */
    CHECK_OK(run(&op_desc_Div, NOATTR, 13,
                 INS(TI(1, DIMS(6), 7, -7, 7, 5, INT64_MIN, 5),
                     TI(1, DIMS(6), 2, 2, -2, 0, -1, -1))));
    CHECK(I64_IS(&out[0], 3, -3, -3, 0, INT64_MIN, -5));
    next_case();

    CHECK_OK(run(&op_desc_Pow, NOATTR, 13, INS(TF(1, DIMS(2), 2, 3), TF(0, NULL, 2))));
    F32_IS(&out[0], "Pow float exponent", 4, 9);
    next_case();
    CHECK_OK(run(&op_desc_Pow, NOATTR, 13, INS(TF(1, DIMS(2), 2, 3), TI(1, DIMS(1), 3))));
    F32_IS(&out[0], "Pow int64 exponent", 8, 27);
    next_case();

    CHECK_OK(run(&op_desc_Sqrt, NOATTR, 13, INS(TF(2, DIMS(1, 2), 4, 9))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 2));
    F32_IS(&out[0], "Sqrt", 2, 3);
    next_case();

    CHECK_OK(run(&op_desc_Equal, NOATTR, 13, INS(TI(1, DIMS(3), 1, 2, 3), TI(0, NULL, 2))));
    CHECK(SHAPE_IS(&out[0], LEGO_BOOL, 3));
    CHECK(BOOL_IS(&out[0], 0, 1, 0));
    next_case();
    CHECK_OK(run(&op_desc_Equal, NOATTR, 13,
                 INS(TF(2, DIMS(2, 1), 1, 2), TF(1, DIMS(2), 2, 1))));
    CHECK(SHAPE_IS(&out[0], LEGO_BOOL, 2, 2));
    CHECK(BOOL_IS(&out[0], 0, 1, 1, 0));
    next_case();
    CHECK_OK(run(&op_desc_Equal, NOATTR, 13, INS(TB(1, DIMS(3), 1, 0, 1), TB(0, NULL, 1))));
    CHECK(BOOL_IS(&out[0], 1, 0, 1));
    next_case();

    /* Where broadcasts all three: [2,1], [1,3], scalar -> [2,3] */
    CHECK_OK(run(&op_desc_Where, NOATTR, 13,
                 INS(TB(2, DIMS(2, 1), 1, 0), TF(2, DIMS(1, 3), 1, 2, 3), TF(0, NULL, 9))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 3));
    F32_IS(&out[0], "Where", 1, 2, 3, 9, 9, 9);
    next_case();
    CHECK_OK(run(&op_desc_Where, NOATTR, 13,
                 INS(TB(1, DIMS(3), 0, 1, 0), TI(1, DIMS(3), 1, 2, 3), TI(1, DIMS(1), -1))));
    CHECK(I64_IS(&out[0], -1, 2, -1));
    next_case();

    CHECK_FAILS(run(&op_desc_Add, NOATTR, 13,
                    INS(TF(2, DIMS(2, 3), 1, 2, 3, 4, 5, 6), TF(1, DIMS(4), 1, 2, 3, 4))),
                LEGO_ERR_SHAPE, "2x3 and 4 do not broadcast");
    next_case();
    CHECK_FAILS(run(&op_desc_Add, NOATTR, 13, INS(TF(1, DIMS(1), 1), TI(1, DIMS(1), 1))),
                LEGO_ERR_SHAPE, "float32 and int64");
    next_case();
    CHECK_FAILS(run(&op_desc_Pow, NOATTR, 13, INS(TI(1, DIMS(1), 2), TI(1, DIMS(1), 2))),
                LEGO_ERR_UNSUPPORTED, "base is int64");
    next_case();
    CHECK_FAILS(run(&op_desc_Where, NOATTR, 13,
                    INS(TB(1, DIMS(1), 1), TF(1, DIMS(1), 1), TI(1, DIMS(1), 1))),
                LEGO_ERR_SHAPE, "X is float32 but Y is int64");
    next_case();
    CHECK_FAILS(run(&op_desc_Where, NOATTR, 13,
                    INS(TF(1, DIMS(1), 1), TF(1, DIMS(1), 1), TF(1, DIMS(1), 1))),
                LEGO_ERR_SHAPE, "expected bool");
    next_case();

    /* flops: one per output element */
    {
        lego_tensor *a = TF(2, DIMS(2, 3), 1, 2, 3, 4, 5, 6), *b = TF(1, DIMS(3), 1, 2, 3);
        CHECK_OK(run(&op_desc_Add, NOATTR, 13, INS(a, b)));
        lego_tensor *outp[1] = {&out[0]};
        op_call c = {NOATTR, "", 13, 2, 1, (lego_tensor *[]){a, b}, outp, NULL, false, NULL, 0, false, NULL, NULL, 0, NULL, false, 0.0f, 0.0f};
        CHECK(op_desc_Add.flops(&c) == 6);
        next_case();
    }
}

/* ---- activations -------------------------------------------------------- */

static void test_activation(void)
{
    CHECK_OK(run(&op_desc_Relu, NOATTR, 13, INS(TF(1, DIMS(3), -1, 0, 2))));
    F32_IS(&out[0], "Relu", 0, 0, 2);
    next_case();

    CHECK_OK(run(&op_desc_LeakyRelu, NOATTR, 13, INS(TF(1, DIMS(2), -1, 2))));
    F32_IS(&out[0], "LeakyRelu default alpha", -0.01f, 2);
    next_case();
    CHECK_OK(run(&op_desc_LeakyRelu, ATTRS(a_float("alpha", 0.2f)), 13,
                 INS(TF(1, DIMS(2), -1, 2))));
    F32_IS(&out[0], "LeakyRelu alpha", -0.2f, 2);
    next_case();

    /* ReLU6 as Clip-11 with min and max inputs */
    CHECK_OK(run(&op_desc_Clip, NOATTR, 13,
                 INS(TF(1, DIMS(4), -1, 3, 7, 6), TF(0, NULL, 0), TF(0, NULL, 6))));
    F32_IS(&out[0], "Clip min max", 0, 3, 6, 6);
    next_case();
    CHECK_OK(run(&op_desc_Clip, NOATTR, 13, INS(TF(1, DIMS(3), -1, 3, 7), NULL, TF(0, NULL, 6))));
    F32_IS(&out[0], "Clip max only", -1, 3, 6);
    next_case();
    CHECK_OK(run(&op_desc_Clip, NOATTR, 13, INS(TF(1, DIMS(3), -1e30f, 3, 1e30f))));
    F32_IS(&out[0], "Clip no bounds", -1e30f, 3, 1e30f);
    next_case();
    CHECK_OK(run(&op_desc_Clip, ATTRS(a_float("min", 0), a_float("max", 6)), 6,
                 INS(TF(1, DIMS(3), -1, 3, 7))));
    F32_IS(&out[0], "Clip-6 attributes", 0, 3, 6);
    next_case();
    CHECK_FAILS(run(&op_desc_Clip, NOATTR, 13,
                    INS(TF(1, DIMS(1), 1), TF(1, DIMS(2), 0, 1))),
                LEGO_ERR_SHAPE, "min must be a scalar");
    next_case();

    CHECK_OK(run(&op_desc_Sigmoid, NOATTR, 13, INS(TF(1, DIMS(4), 0, 1, -100, 100))));
    F32_IS(&out[0], "Sigmoid", 0.5f, 0.7310586f, 3.7200760e-44f, 1);
    next_case();
    CHECK_OK(run(&op_desc_Tanh, NOATTR, 13, INS(TF(1, DIMS(3), 0, 0.5f, -20))));
    F32_IS(&out[0], "Tanh", 0, 0.46211716f, -1);
    next_case();

    CHECK_FAILS(run(&op_desc_Relu, NOATTR, 13, INS(TI(1, DIMS(1), 1))), LEGO_ERR_SHAPE,
                "expected float32");
    next_case();
}

/* ---- Softmax ------------------------------------------------------------ */

static void test_softmax(void)
{
    CHECK_OK(run(&op_desc_Softmax, NOATTR, 13, INS(TF(2, DIMS(2, 3), 1, 2, 3, 1, 1, 1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 3));
    F32_IS(&out[0], "Softmax rows", 0.09003057f, 0.24472847f, 0.66524096f, 1 / 3.0f, 1 / 3.0f,
           1 / 3.0f);
    next_case();

    /* [1,2,2,2] axis 1: opset 11 normalises the flattened 2x2x2 block,
     * opset 13 only the pairs along axis 1 (which differ by 4). */
    CHECK_OK(run(&op_desc_Softmax, ATTRS(a_int("axis", 1)), 11,
                 INS(TF(4, DIMS(1, 2, 2, 2), 0, 1, 2, 3, 4, 5, 6, 7))));
    {
        float want[8], sum = 0;
        for (int i = 0; i < 8; i++)
            sum += (want[i] = expf((float)i));
        for (int i = 0; i < 8; i++)
            want[i] /= sum;
        f32_close(&out[0], 8, want, "Softmax opset 11 (2-D view)");
    }
    next_case();
    CHECK_OK(run(&op_desc_Softmax, ATTRS(a_int("axis", 1)), 13,
                 INS(TF(4, DIMS(1, 2, 2, 2), 0, 1, 2, 3, 4, 5, 6, 7))));
    {
        float lo = 1 / (1 + expf(4)), hi = 1 - lo;
        F32_IS(&out[0], "Softmax opset 13 (one axis)", lo, lo, lo, lo, hi, hi, hi, hi);
    }
    next_case();
    /* default axis: 1 before 13 (whole rows of [2,2,2] flattened) */
    CHECK_OK(run(&op_desc_Softmax, NOATTR, 11,
                 INS(TF(3, DIMS(2, 2, 2), 0, 1, 2, 3, 0, 0, 0, 0))));
    {
        float s = 1 + expf(1) + expf(2) + expf(3);
        F32_IS(&out[0], "Softmax opset 11 default axis", 1 / s, expf(1) / s, expf(2) / s,
               expf(3) / s, 0.25f, 0.25f, 0.25f, 0.25f);
    }
    /* opset 12 still has the old meaning */
    CHECK_OK(run(&op_desc_Softmax, NOATTR, 12,
                 INS(TF(3, DIMS(2, 2, 2), 0, 1, 2, 3, 0, 0, 0, 0))));
    {
        float s = 1 + expf(1) + expf(2) + expf(3);
        F32_IS(&out[0], "Softmax opset 12 default axis", 1 / s, expf(1) / s, expf(2) / s,
               expf(3) / s, 0.25f, 0.25f, 0.25f, 0.25f);
    }
    next_case();

    CHECK_OK(run(&op_desc_Softmax, NOATTR, 13, INS(TF(1, DIMS(2), 1000, 1000))));
    F32_IS(&out[0], "Softmax large inputs", 0.5f, 0.5f);
    next_case();

    CHECK_FAILS(run(&op_desc_Softmax, ATTRS(a_int("axis", 2)), 13,
                    INS(TF(2, DIMS(1, 2), 1, 2))),
                LEGO_ERR_SHAPE, "axis 2 is out of range for rank 2");
    next_case();
}

/* ---- reductions --------------------------------------------------------- */

static void test_reduce(void)
{
#define X23 TF(2, DIMS(2, 3), 1, 2, 3, 4, 5, 6)
    CHECK_OK(run(&op_desc_ReduceMean, ATTRS(a_ints("axes", 1, DIMS(1))), 13, INS(X23)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 1));
    F32_IS(&out[0], "ReduceMean axis 1", 2, 5);
    next_case();
    CHECK_OK(run(&op_desc_ReduceMean, ATTRS(a_ints("axes", 1, DIMS(1)), a_int("keepdims", 0)),
                 13, INS(X23)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2));
    next_case();
    CHECK_OK(run(&op_desc_ReduceMean, ATTRS(a_ints("axes", 1, DIMS(-2))), 13, INS(X23)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 3));
    F32_IS(&out[0], "ReduceMean axis -2", 2.5f, 3.5f, 4.5f);
    next_case();
    CHECK_OK(run(&op_desc_ReduceMean, NOATTR, 13, INS(X23)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 1));
    F32_IS(&out[0], "ReduceMean all", 3.5f);
    next_case();
    CHECK_OK(run(&op_desc_ReduceMean, ATTRS(a_int("keepdims", 0)), 13, INS(X23)));
    CHECK(SCALAR_IS(&out[0], LEGO_F32));
    next_case();
    CHECK_OK(run(&op_desc_ReduceMax, ATTRS(a_ints("axes", 1, DIMS(0))), 13, INS(X23)));
    F32_IS(&out[0], "ReduceMax axis 0", 4, 5, 6);
    next_case();
    CHECK_OK(run(&op_desc_ReduceMax, ATTRS(a_int("keepdims", 0)), 13,
                 INS(TF(1, DIMS(3), -5, -2, -7))));
    F32_IS(&out[0], "ReduceMax negatives", -2);
    next_case();

    /* two non-adjacent axes of [2,3,4] against a naive loop */
    {
        lego_tensor *x = trand(3, DIMS(2, 3, 4), 7);
        const float *xd = x->data;
        float mean[3] = {0}, mx[3] = {-1e9f, -1e9f, -1e9f};
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++) {
                    float v = xd[(i * 3 + j) * 4 + k];
                    mean[j] += v / 8;
                    mx[j] = v > mx[j] ? v : mx[j];
                }
        CHECK_OK(run(&op_desc_ReduceMean, ATTRS(a_ints("axes", 2, DIMS(0, 2))), 13, INS(x)));
        CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 3, 1));
        f32_close(&out[0], 3, mean, "ReduceMean axes 0,2");
        CHECK_OK(run(&op_desc_ReduceMax,
                     ATTRS(a_ints("axes", 2, DIMS(2, 0)), a_int("keepdims", 0)), 13, INS(x)));
        CHECK(SHAPE_IS(&out[0], LEGO_F32, 3));
        f32_close(&out[0], 3, mx, "ReduceMax axes 2,0");
        next_case();
    }
    /* ReduceSum takes axes as an input from opset 13, an attribute before */
    CHECK_OK(run(&op_desc_ReduceSum, NOATTR, 13, INS(X23, LIST(-1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 1));
    F32_IS(&out[0], "ReduceSum-13 axes input", 6, 15);
    CHECK_OK(run(&op_desc_ReduceSum, ATTRS(a_ints("axes", 1, DIMS(0)), a_int("keepdims", 0)), 11,
                 INS(X23)));
    F32_IS(&out[0], "ReduceSum-11 axes attribute", 5, 7, 9);
    CHECK_OK(run(&op_desc_ReduceSum, ATTRS(a_int("noop_with_empty_axes", 1)), 13, INS(X23)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 3));
    F32_IS(&out[0], "ReduceSum no-op", 1, 2, 3, 4, 5, 6);
    next_case();
    /* opset 18 form: axes as an input */
    CHECK_OK(run(&op_desc_ReduceMean, NOATTR, 18, INS(X23, LIST(1))));
    F32_IS(&out[0], "ReduceMean-18 axes input", 2, 5);
    next_case();

    CHECK_FAILS(run(&op_desc_ReduceMean, ATTRS(a_ints("axes", 1, DIMS(2))), 13, INS(X23)),
                LEGO_ERR_SHAPE, "axis 2 is out of range");
    next_case();
    CHECK_FAILS(run(&op_desc_ReduceMax, ATTRS(a_ints("axes", 2, DIMS(1, -1))), 13, INS(X23)),
                LEGO_ERR_SHAPE, "listed twice");
    next_case();
#undef X23
}

/* ---- shape ops ---------------------------------------------------------- */

static lego_tensor *iota_f(int rank, const int64_t *dims)
{
    lego_tensor *t = tnew(LEGO_F32, rank, dims, NULL);
    lego_status st = tensor_alloc(t);
    lego_status_free(&st);
    for (int64_t i = 0; i < lego_tensor_numel(t); i++)
        ((float *)t->data)[i] = (float)i;
    return t;
}

static lego_tensor *iota_i(int rank, const int64_t *dims)
{
    lego_tensor *t = tnew(LEGO_I64, rank, dims, NULL);
    lego_status st = tensor_alloc(t);
    lego_status_free(&st);
    for (int64_t i = 0; i < lego_tensor_numel(t); i++)
        ((int64_t *)t->data)[i] = i;
    return t;
}

static int same_data(const lego_tensor *a, const lego_tensor *b)
{
    return lego_tensor_bytes(a) == lego_tensor_bytes(b) &&
           memcmp(a->data, b->data, lego_tensor_bytes(a)) == 0;
}

static void test_reshape_family(void)
{
    lego_tensor *x = iota_f(3, DIMS(2, 3, 4));
    CHECK_OK(run(&op_desc_Reshape, NOATTR, 14, INS(x, LIST(0, -1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 12));
    CHECK(same_data(&out[0], x));
    CHECK_OK(run(&op_desc_Reshape, NOATTR, 14, INS(x, LIST(4, -1, 2))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 4, 3, 2));
    CHECK_FAILS(run(&op_desc_Reshape, NOATTR, 14, INS(x, LIST(5, 5))), LEGO_ERR_SHAPE,
                "cannot reshape 2x3x4 (24 elements) to 5x5 (25 elements)");
    CHECK_FAILS(run(&op_desc_Reshape, NOATTR, 14, INS(x, LIST(-1, -1))), LEGO_ERR_SHAPE,
                "more than one -1");
    CHECK_FAILS(run(&op_desc_Reshape, NOATTR, 14, INS(x, LIST(5, -1))), LEGO_ERR_SHAPE,
                "no size fits the -1");
    CHECK_FAILS(run(&op_desc_Reshape, NOATTR, 14, INS(x, LIST(0, 0, 0, 0))), LEGO_ERR_SHAPE,
                "copies dimension 3");
    CHECK_FAILS(run(&op_desc_Reshape, NOATTR, 14, INS(x, tnew(LEGO_I64, 1, DIMS(2), NULL))),
                LEGO_ERR_UNSUPPORTED, "must be a constant");
    next_case();
    /* allowzero: 0 is a real size, not "copy" */
    {
        lego_tensor *e = tnew(LEGO_F32, 2, DIMS(0, 3), NULL);
        CHECK_OK(run(&op_desc_Reshape, ATTRS(a_int("allowzero", 1)), 14, INS(e, LIST(3, 0))));
        CHECK(SHAPE_IS(&out[0], LEGO_F32, 3, 0));
        CHECK_FAILS(run(&op_desc_Reshape, NOATTR, 14, INS(e, LIST(3, 0))), LEGO_ERR_SHAPE,
                    "(0 elements) to 3x3 (9 elements)");
        next_case();
    }
    CHECK_OK(run(&op_desc_Reshape, NOATTR, 14, INS(TI(1, DIMS(1), 42), empty_list(LEGO_I64))));
    CHECK(SCALAR_IS(&out[0], LEGO_I64) && I64_IS(&out[0], 42));
    next_case();

    x = iota_f(3, DIMS(2, 3, 4));
    CHECK_OK(run(&op_desc_Flatten, NOATTR, 13, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 12));
    CHECK(same_data(&out[0], x));
    CHECK_OK(run(&op_desc_Flatten, ATTRS(a_int("axis", 0)), 13, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 24));
    CHECK_OK(run(&op_desc_Flatten, ATTRS(a_int("axis", -1)), 13, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 6, 4));
    CHECK_OK(run(&op_desc_Flatten, ATTRS(a_int("axis", 3)), 13, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 24, 1));
    CHECK_FAILS(run(&op_desc_Flatten, ATTRS(a_int("axis", 4)), 13, INS(x)), LEGO_ERR_SHAPE,
                "out of range");
    next_case();

    x = iota_f(4, DIMS(1, 3, 1, 2));
    CHECK_OK(run(&op_desc_Squeeze, NOATTR, 13, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3, 2));
    CHECK(same_data(&out[0], x));
    CHECK_OK(run(&op_desc_Squeeze, NOATTR, 13, INS(x, LIST(-2))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 3, 2));
    CHECK_OK(run(&op_desc_Squeeze, ATTRS(a_ints("axes", 1, DIMS(0))), 11, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3, 1, 2));
    CHECK_FAILS(run(&op_desc_Squeeze, NOATTR, 13, INS(x, LIST(1))), LEGO_ERR_SHAPE,
                "cannot squeeze axis 1 of 1x3x1x2: its size is 3");
    next_case();

    x = TI(1, DIMS(3), 7, 8, 9);
    CHECK_OK(run(&op_desc_Unsqueeze, NOATTR, 13, INS(x, LIST(0, -1))));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 1, 3, 1));
    CHECK(I64_IS(&out[0], 7, 8, 9));
    CHECK_OK(run(&op_desc_Unsqueeze, ATTRS(a_ints("axes", 1, DIMS(1))), 11, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 3, 1));
    CHECK_OK(run(&op_desc_Unsqueeze, NOATTR, 13, INS(TI(0, NULL, 5), LIST(0))));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 1) && I64_IS(&out[0], 5));
    CHECK_FAILS(run(&op_desc_Unsqueeze, NOATTR, 13, INS(x, LIST(1, 1))), LEGO_ERR_SHAPE,
                "listed twice");
    CHECK_FAILS(run(&op_desc_Unsqueeze, NOATTR, 11, INS(x)), LEGO_ERR_FORMAT,
                "axes are required");
    next_case();

    x = TI(1, DIMS(2), 4, 5);
    CHECK_OK(run(&op_desc_Identity, NOATTR, 13, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 2) && I64_IS(&out[0], 4, 5));
    next_case();
}

static void test_transpose_concat(void)
{
    CHECK_OK(run(&op_desc_Transpose, NOATTR, 13, INS(TF(2, DIMS(2, 3), 1, 2, 3, 4, 5, 6))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3, 2));
    F32_IS(&out[0], "Transpose default", 1, 4, 2, 5, 3, 6);
    next_case();
    {
        lego_tensor *x = iota_i(3, DIMS(2, 3, 4));
        CHECK_OK(run(&op_desc_Transpose, ATTRS(a_ints("perm", 3, DIMS(1, 2, 0))), 13, INS(x)));
        CHECK(SHAPE_IS(&out[0], LEGO_I64, 3, 4, 2));
        int64_t want[24];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++)
                    want[(j * 4 + k) * 2 + i] = (i * 3 + j) * 4 + k;
        CHECK(i64_is(&out[0], 24, want));
        CHECK_FAILS(run(&op_desc_Transpose, ATTRS(a_ints("perm", 3, DIMS(0, 0, 1))), 13, INS(x)),
                    LEGO_ERR_SHAPE, "not a permutation");
        CHECK_FAILS(run(&op_desc_Transpose, ATTRS(a_ints("perm", 2, DIMS(1, 0))), 13, INS(x)),
                    LEGO_ERR_SHAPE, "perm has 2 entries for an input of rank 3");
        next_case();
    }

    CHECK_OK(run(&op_desc_Concat, ATTRS(a_int("axis", 1)), 13,
                 INS(TF(2, DIMS(2, 1), 1, 2), TF(2, DIMS(2, 2), 3, 4, 5, 6))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 3));
    F32_IS(&out[0], "Concat axis 1", 1, 3, 4, 2, 5, 6);
    next_case();
    CHECK_OK(run(&op_desc_Concat, ATTRS(a_int("axis", -2)), 13,
                 INS(TF(2, DIMS(1, 2), 1, 2), TF(2, DIMS(0, 2), 0),
                     TF(2, DIMS(2, 2), 3, 4, 5, 6))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3, 2));
    F32_IS(&out[0], "Concat axis -2 with an empty input", 1, 2, 3, 4, 5, 6);
    next_case();
    CHECK_OK(run(&op_desc_Concat, ATTRS(a_int("axis", 0)), 13, INS(LIST(1), LIST(-1), LIST(7, 7))));
    CHECK(I64_IS(&out[0], 1, -1, 7, 7));
    next_case();
    CHECK_FAILS(run(&op_desc_Concat, ATTRS(a_int("axis", 0)), 13, INS(LIST(1), TF(1, DIMS(1), 1))),
                LEGO_ERR_SHAPE, "input 1 is float32 but input 0 is int64");
    next_case();
    CHECK_FAILS(run(&op_desc_Concat, ATTRS(a_int("axis", 0)), 13,
                    INS(TF(2, DIMS(1, 2), 1, 2), TF(2, DIMS(1, 3), 1, 2, 3))),
                LEGO_ERR_SHAPE, "input 1 (1x3) does not match input 0 (1x2)");
    next_case();
    CHECK_FAILS(run(&op_desc_Concat, NOATTR, 13, INS(LIST(1))), LEGO_ERR_FORMAT, "axis");
    next_case();
}

static void test_slice(void)
{
    lego_tensor *x = iota_i(1, DIMS(10));
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(2), LIST(7))));
    CHECK(I64_IS(&out[0], 2, 3, 4, 5, 6));
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(-3), LIST(INT64_MAX))));
    CHECK(I64_IS(&out[0], 7, 8, 9));
    /* the exported form of x[::-1] */
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13,
                 INS(x, LIST(-1), LIST(INT64_MIN), LIST(0), LIST(-1))));
    CHECK(I64_IS(&out[0], 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(8), LIST(1), NULL, LIST(-3))));
    CHECK(I64_IS(&out[0], 8, 5, 2));
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(0), LIST(10), NULL, LIST(3))));
    CHECK(I64_IS(&out[0], 0, 3, 6, 9));
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(20), LIST(30))));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 0));
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(-100), LIST(100), NULL, LIST(-1))));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 0)); /* numpy: x[-100:100:-1] is empty */
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(100), LIST(-100), NULL, LIST(-4))));
    CHECK(I64_IS(&out[0], 9, 5, 1));
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13,
                 INS(x, LIST(5), LIST(INT64_MIN), NULL, LIST(INT64_MIN))));
    CHECK(I64_IS(&out[0], 5));
    next_case();

    /* two axes, given out of order, with a step: [3,4] -> rows 1:3, cols 0::2 */
    x = iota_f(2, DIMS(3, 4));
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13,
                 INS(x, LIST(0, 1), LIST(INT64_MAX, 3), LIST(-1, 0), LIST(2, 1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 2));
    F32_IS(&out[0], "Slice 2-D", 4, 6, 8, 10);
    /* both axes backwards */
    CHECK_OK(run(&op_desc_Slice, NOATTR, 13,
                 INS(x, LIST(-1, -1), LIST(INT64_MIN, INT64_MIN), LIST(0, 1), LIST(-2, -3))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 2));
    F32_IS(&out[0], "Slice 2-D backwards", 11, 8, 3, 0);
    /* Slice-1 attributes */
    CHECK_OK(run(&op_desc_Slice,
                 ATTRS(a_ints("starts", 1, DIMS(1)), a_ints("ends", 1, DIMS(1000)),
                       a_ints("axes", 1, DIMS(1))),
                 9, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3, 3));
    F32_IS(&out[0], "Slice-1", 1, 2, 3, 5, 6, 7, 9, 10, 11);

    CHECK_FAILS(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(0), LIST(1), NULL, LIST(0))),
                LEGO_ERR_SHAPE, "step for axis 0 is 0");
    CHECK_FAILS(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(0, 0), LIST(1))), LEGO_ERR_SHAPE,
                "same length");
    CHECK_FAILS(run(&op_desc_Slice, NOATTR, 13, INS(x, LIST(0, 0), LIST(1, 1), LIST(1, -1))),
                LEGO_ERR_SHAPE, "axis 1 is sliced twice");
    CHECK_FAILS(run(&op_desc_Slice, NOATTR, 13, INS(x, tnew(LEGO_I64, 1, DIMS(1), NULL), LIST(1))),
                LEGO_ERR_UNSUPPORTED, "starts (input 1) must be a constant");
    next_case();
}

static void test_gather(void)
{
    lego_tensor *x = TF(2, DIMS(3, 2), 1, 2, 3, 4, 5, 6);
    CHECK_OK(run(&op_desc_Gather, NOATTR, 13, INS(x, LIST(-1, 0))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 2));
    F32_IS(&out[0], "Gather axis 0, negative index", 5, 6, 1, 2);
    CHECK_OK(run(&op_desc_Gather, ATTRS(a_int("axis", 1)), 13, INS(x, TI(0, NULL, 1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3));
    F32_IS(&out[0], "Gather axis 1, scalar index", 2, 4, 6);
    CHECK_OK(run(&op_desc_Gather, ATTRS(a_int("axis", -2)), 13,
                 INS(x, TI(2, DIMS(2, 2), 0, 2, 1, 1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 2, 2));
    F32_IS(&out[0], "Gather 2-D indices", 1, 2, 5, 6, 3, 4, 3, 4);
    CHECK_FAILS(run(&op_desc_Gather, NOATTR, 13, INS(x, LIST(0, 3))), LEGO_ERR_SHAPE,
                "index 3 is out of range for axis 0 of size 3");
    CHECK_FAILS(run(&op_desc_Gather, NOATTR, 13, INS(x, LIST(-4))), LEGO_ERR_SHAPE,
                "index -4 is out of range");
    next_case();

    /* Shape -> Gather(0): the batch size as a scalar */
    CHECK_OK(run(&op_desc_Gather, NOATTR, 13, INS(LIST(1, 3, 224, 224), TI(0, NULL, 0))));
    CHECK(SCALAR_IS(&out[0], LEGO_I64) && I64_IS(&out[0], 1));
    next_case();

    /* indices unknown at prepare, out of range at forward: clamped, no crash */
    {
        x = TF(1, DIMS(3), 10, 20, 30);
        lego_tensor *idx = tnew(LEGO_I64, 1, DIMS(2), NULL);
        lego_tensor *outp[1] = {&out[0]};
        int64_t params[4] = {0};
        op_call c = {NOATTR, "", 13, 2, 1, (lego_tensor *[]){x, idx}, outp, params, false, NULL, 0, false, NULL, NULL, 0, NULL, false, 0.0f, 0.0f};
        CHECK_OK(op_desc_Gather.prepare(&c));
        lego_status st = tensor_alloc(&out[0]);
        lego_status_free(&st);
        st = tensor_alloc(idx);
        lego_status_free(&st);
        ((int64_t *)idx->data)[0] = 99;
        ((int64_t *)idx->data)[1] = -99;
        op_desc_Gather.forward(&c);
        F32_IS(&out[0], "Gather clamps run-time indices", 30, 10);
        next_case();
    }
}

static void test_expand_shape(void)
{
    CHECK_OK(run(&op_desc_Expand, NOATTR, 13, INS(TF(2, DIMS(3, 1), 1, 2, 3), LIST(2, 1, 4))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 3, 4));
    {
        float want[24];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++)
                    want[(i * 3 + j) * 4 + k] = (float)(j + 1);
        f32_close(&out[0], 24, want, "Expand");
    }
    next_case();
    CHECK_OK(run(&op_desc_Expand, NOATTR, 13, INS(TI(1, DIMS(3), 1, 2, 3), LIST(1))));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 3) && I64_IS(&out[0], 1, 2, 3));
    CHECK_FAILS(run(&op_desc_Expand, NOATTR, 13, INS(TI(1, DIMS(3), 1, 2, 3), LIST(2))),
                LEGO_ERR_SHAPE, "do not broadcast");
    next_case();

    lego_tensor *x = tnew(LEGO_F32, 3, DIMS(2, 3, 4), NULL); /* shape only */
    CHECK(op_desc_Shape.shape_inputs == 1);
    CHECK_OK(run(&op_desc_Shape, NOATTR, 13, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 3) && I64_IS(&out[0], 2, 3, 4));
    CHECK_OK(run(&op_desc_Shape, ATTRS(a_int("start", 1)), 15, INS(x)));
    CHECK(I64_IS(&out[0], 3, 4));
    CHECK_OK(run(&op_desc_Shape, ATTRS(a_int("end", -1)), 15, INS(x)));
    CHECK(I64_IS(&out[0], 2, 3));
    CHECK_OK(run(&op_desc_Shape, ATTRS(a_int("start", -10)), 15, INS(x)));
    CHECK(I64_IS(&out[0], 2, 3, 4));
    CHECK_OK(run(&op_desc_Shape, ATTRS(a_int("start", 2), a_int("end", 1)), 15, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 0));
    next_case();
}

static void test_dropout_constant_cast(void)
{
    lego_tensor *x = TF(1, DIMS(3), 1, 2, 3);
    CHECK_OK(run_n(&op_desc_Dropout, NOATTR, 13, INS(x), 2));
    F32_IS(&out[0], "Dropout", 1, 2, 3);
    CHECK(SHAPE_IS(&out[1], LEGO_BOOL, 3) && BOOL_IS(&out[1], 1, 1, 1));
    CHECK_OK(run(&op_desc_Dropout, NOATTR, 13, INS(x, TF(0, NULL, 0.5f), TB(0, NULL, 0))));
    F32_IS(&out[0], "Dropout training_mode false", 1, 2, 3);
    CHECK_FAILS(run(&op_desc_Dropout, NOATTR, 13, INS(x, NULL, TB(0, NULL, 1))),
                LEGO_ERR_UNSUPPORTED, "training_mode");
    next_case();

    CHECK_OK(run(&op_desc_Constant, ATTRS(a_tensor("value", TF(2, DIMS(1, 2), 1.5f, 2.5f))), 13,
                 NULL, 0));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 2));
    F32_IS(&out[0], "Constant tensor", 1.5f, 2.5f);
    CHECK_OK(run(&op_desc_Constant, ATTRS(a_int("value_int", 7)), 13, NULL, 0));
    CHECK(SCALAR_IS(&out[0], LEGO_I64) && I64_IS(&out[0], 7));
    CHECK_OK(run(&op_desc_Constant, ATTRS(a_ints("value_ints", 3, DIMS(1, -2, 3))), 13, NULL, 0));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 3) && I64_IS(&out[0], 1, -2, 3));
    CHECK_OK(run(&op_desc_Constant, ATTRS(a_float("value_float", 0.25f)), 13, NULL, 0));
    CHECK(SCALAR_IS(&out[0], LEGO_F32));
    F32_IS(&out[0], "Constant value_float", 0.25f);
    CHECK_OK(run(&op_desc_Constant, ATTRS(a_floats("value_floats", 2, (const float[]){1, 2})), 13,
                 NULL, 0));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2));
    F32_IS(&out[0], "Constant value_floats", 1, 2);
    CHECK_FAILS(run(&op_desc_Constant, NOATTR, 13, NULL, 0), LEGO_ERR_FORMAT, "no value");
    CHECK_FAILS(run(&op_desc_Constant, ATTRS(a_str("value_string", "hi")), 13, NULL, 0),
                LEGO_ERR_UNSUPPORTED, "value_string");
    CHECK_FAILS(run(&op_desc_Constant, ATTRS(a_int("value_int", 1), a_float("value_float", 1)),
                    13, NULL, 0),
                LEGO_ERR_FORMAT, "both");
    next_case();

    CHECK_OK(run(&op_desc_Cast, ATTRS(a_int("to", LEGO_I64)), 13,
                 INS(TF(1, DIMS(5), 1.7f, -1.7f, NAN, 1e30f, -1e30f))));
    CHECK(I64_IS(&out[0], 1, -1, 0, INT64_MAX, INT64_MIN));
    CHECK_OK(run(&op_desc_Cast, ATTRS(a_int("to", LEGO_F32)), 13, INS(LIST(3, -4))));
    F32_IS(&out[0], "Cast int64 to float", 3, -4);
    CHECK_OK(run(&op_desc_Cast, ATTRS(a_int("to", LEGO_BOOL)), 13,
                 INS(TF(1, DIMS(3), 0, 0.5f, -2))));
    CHECK(BOOL_IS(&out[0], 0, 1, 1));
    CHECK_OK(run(&op_desc_Cast, ATTRS(a_int("to", LEGO_F32)), 13, INS(TB(1, DIMS(2), 1, 0))));
    F32_IS(&out[0], "Cast bool to float", 1, 0);
    CHECK_OK(run(&op_desc_Cast, ATTRS(a_int("to", LEGO_I64)), 13, INS(LIST(5, 6))));
    CHECK(I64_IS(&out[0], 5, 6));
    CHECK_FAILS(run(&op_desc_Cast, ATTRS(a_int("to", 10)), 13, INS(LIST(1))),
                LEGO_ERR_UNSUPPORTED, "float16");
    next_case();

    CHECK_OK(run(&op_desc_ConstantOfShape, NOATTR, 13, INS(LIST(2, 3))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 3));
    F32_IS(&out[0], "ConstantOfShape default", 0, 0, 0, 0, 0, 0);
    CHECK_OK(run(&op_desc_ConstantOfShape, ATTRS(a_tensor("value", TI(1, DIMS(1), 7))), 13,
                 INS(LIST(3))));
    CHECK(SHAPE_IS(&out[0], LEGO_I64, 3) && I64_IS(&out[0], 7, 7, 7));
    CHECK_OK(run(&op_desc_ConstantOfShape, ATTRS(a_tensor("value", TF(1, DIMS(1), 2.5f))), 13,
                 INS(empty_list(LEGO_I64))));
    CHECK(SCALAR_IS(&out[0], LEGO_F32));
    F32_IS(&out[0], "ConstantOfShape scalar", 2.5f);
    CHECK_FAILS(run(&op_desc_ConstantOfShape, NOATTR, 13, INS(LIST(2, -1))), LEGO_ERR_SHAPE,
                "negative");
    CHECK_FAILS(run(&op_desc_ConstantOfShape, ATTRS(a_tensor("value", TF(1, DIMS(2), 1, 2))), 13,
                    INS(LIST(2))),
                LEGO_ERR_FORMAT, "one element");
    next_case();
}

/* ---- Pad ---------------------------------------------------------------- */

static void test_pad(void)
{
    lego_tensor *x = TF(2, DIMS(2, 3), 1, 2, 3, 4, 5, 6);
    /* pads are [begin_0, begin_1, end_0, end_1] */
    CHECK_OK(run(&op_desc_Pad, NOATTR, 13, INS(x, LIST(0, 1, 1, 0), TF(0, NULL, 9))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3, 4));
    F32_IS(&out[0], "Pad constant", 9, 1, 2, 3, 9, 4, 5, 6, 9, 9, 9, 9);
    CHECK_OK(run(&op_desc_Pad, NOATTR, 13, INS(x, LIST(0, 1, 0, 0))));
    F32_IS(&out[0], "Pad constant default 0", 0, 1, 2, 3, 0, 4, 5, 6);
    /* np.pad([[1,2,3],[4,5,6]], 1, 'reflect') */
    CHECK_OK(run(&op_desc_Pad, ATTRS(a_str("mode", "reflect")), 13, INS(x, LIST(1, 1, 1, 1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 4, 5));
    F32_IS(&out[0], "Pad reflect 2-D", 5, 4, 5, 6, 5, 2, 1, 2, 3, 2, 5, 4, 5, 6, 5, 2, 1, 2, 3, 2);
    CHECK_OK(run(&op_desc_Pad, ATTRS(a_str("mode", "edge")), 13, INS(x, LIST(1, 0, 0, 2))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3, 5));
    F32_IS(&out[0], "Pad edge 2-D", 1, 2, 3, 3, 3, 1, 2, 3, 3, 3, 4, 5, 6, 6, 6);
    /* negative pads crop */
    CHECK_OK(run(&op_desc_Pad, NOATTR, 13, INS(x, LIST(0, -1, 0, 0))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 2));
    F32_IS(&out[0], "Pad crop", 2, 3, 5, 6);
    CHECK_OK(run(&op_desc_Pad, NOATTR, 13, INS(x, LIST(-1, 1, 0, -1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 3));
    F32_IS(&out[0], "Pad crop and pad", 0, 4, 5);
    /* Pad-2 attributes */
    CHECK_OK(run(&op_desc_Pad, ATTRS(a_ints("pads", 4, DIMS(1, 0, 0, 0)), a_float("value", 2.5f)),
                 10, INS(x)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 3, 3));
    F32_IS(&out[0], "Pad-2 attributes", 2.5f, 2.5f, 2.5f, 1, 2, 3, 4, 5, 6);
    next_case();

    x = TF(2, DIMS(1, 4), 1, 2, 3, 4);
    CHECK_OK(run(&op_desc_Pad, ATTRS(a_str("mode", "reflect")), 13, INS(x, LIST(0, 2, 0, 2))));
    F32_IS(&out[0], "Pad reflect 1-D", 3, 2, 1, 2, 3, 4, 3, 2);
    /* wider than the axis: numpy keeps reflecting */
    CHECK_OK(run(&op_desc_Pad, ATTRS(a_str("mode", "reflect")), 13, INS(x, LIST(0, 7, 0, 0))));
    F32_IS(&out[0], "Pad reflect wide", 2, 1, 2, 3, 4, 3, 2, 1, 2, 3, 4);
    CHECK_OK(run(&op_desc_Pad, ATTRS(a_str("mode", "edge")), 13, INS(x, LIST(0, 2, 0, 1))));
    F32_IS(&out[0], "Pad edge 1-D", 1, 1, 1, 2, 3, 4, 4);
    next_case();

    /* rank 4, the usual conv padding on H and W, int64 data */
    {
        lego_tensor *xi = iota_i(4, DIMS(1, 1, 2, 2));
        CHECK_OK(run(&op_desc_Pad, NOATTR, 13,
                     INS(xi, LIST(0, 0, 1, 0, 0, 0, 0, 1), TI(0, NULL, -1))));
        CHECK(SHAPE_IS(&out[0], LEGO_I64, 1, 1, 3, 3));
        CHECK(I64_IS(&out[0], -1, -1, -1, 0, 1, -1, 2, 3, -1));
        next_case();
    }
    /* Pad-18 axes input */
    x = TF(2, DIMS(2, 3), 1, 2, 3, 4, 5, 6);
    CHECK_OK(run(&op_desc_Pad, NOATTR, 18, INS(x, LIST(1, 0), NULL, LIST(-1))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 2, 4));
    F32_IS(&out[0], "Pad-18 axes", 0, 1, 2, 3, 0, 4, 5, 6);

    CHECK_FAILS(run(&op_desc_Pad, NOATTR, 13, INS(x, LIST(1, 1))), LEGO_ERR_SHAPE,
                "pads has 2 values, expected 4");
    CHECK_FAILS(run(&op_desc_Pad, NOATTR, 13, INS(x, LIST(0, -2, 0, -2))), LEGO_ERR_SHAPE,
                "negative size");
    CHECK_FAILS(run(&op_desc_Pad, ATTRS(a_str("mode", "wrap")), 13, INS(x, LIST(0, 0, 0, 0))),
                LEGO_ERR_UNSUPPORTED, "mode 'wrap'");
    CHECK_FAILS(run(&op_desc_Pad, NOATTR, 13, INS(x, LIST(0, 0, 0, 0), LIST(1))), LEGO_ERR_SHAPE,
                "constant_value is int64 but the input is float32");
    next_case();
}

/* ---- Resize ------------------------------------------------------------- */

static lego_tensor *scales4(float n, float c, float h, float w)
{
    return tnew(LEGO_F32, 1, DIMS(4), (const float[]){n, c, h, w});
}

static void test_resize(void)
{
    lego_tensor *x = TF(4, DIMS(1, 1, 2, 2), 1, 2, 3, 4);
    lego_tensor *empty = empty_list(LEGO_F32);

    /* F.interpolate(scale_factor=2, mode='nearest') */
    CHECK_OK(run(&op_desc_Resize,
                 ATTRS(a_str("mode", "nearest"),
                       a_str("coordinate_transformation_mode", "asymmetric"),
                       a_str("nearest_mode", "floor")),
                 13, INS(x, empty, scales4(1, 1, 2, 2))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 1, 4, 4));
    F32_IS(&out[0], "Resize nearest asymmetric floor", 1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4,
           4);

    /* F.interpolate(scale_factor=2, mode='bilinear', align_corners=False):
     * per axis the taps are x0, .75x0+.25x1, .25x0+.75x1, x1 */
    CHECK_OK(run(&op_desc_Resize, ATTRS(a_str("mode", "linear")), 13,
                 INS(x, empty, scales4(1, 1, 2, 2))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 1, 4, 4));
    F32_IS(&out[0], "Resize linear half_pixel", 1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f,
           2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4);
    CHECK_OK(run(&op_desc_Resize,
                 ATTRS(a_str("mode", "linear"),
                       a_str("coordinate_transformation_mode", "pytorch_half_pixel")),
                 13, INS(x, empty, scales4(1, 1, 2, 2))));
    F32_IS(&out[0], "Resize linear pytorch_half_pixel", 1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f,
           2.5f, 2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4);

    /* align_corners=True, by sizes */
    CHECK_OK(run(&op_desc_Resize,
                 ATTRS(a_str("mode", "linear"),
                       a_str("coordinate_transformation_mode", "align_corners")),
                 13, INS(x, NULL, NULL, LIST(1, 1, 3, 3))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 1, 3, 3));
    F32_IS(&out[0], "Resize linear align_corners", 1, 1.5f, 2, 2, 2.5f, 3, 3, 3.5f, 4);

    /* a 1x1 output separates pytorch_half_pixel (coordinate 0) from
     * half_pixel (coordinate 0.5, the mean of all four) */
    CHECK_OK(run(&op_desc_Resize,
                 ATTRS(a_str("mode", "linear"),
                       a_str("coordinate_transformation_mode", "pytorch_half_pixel")),
                 13, INS(x, NULL, NULL, LIST(1, 1, 1, 1))));
    F32_IS(&out[0], "Resize linear pytorch_half_pixel to 1x1", 1);
    CHECK_OK(run(&op_desc_Resize, ATTRS(a_str("mode", "linear")), 13,
                 INS(x, NULL, NULL, LIST(1, 1, 1, 1))));
    F32_IS(&out[0], "Resize linear half_pixel to 1x1", 2.5f);
    next_case();

    /* 4 -> 3 by sizes, half_pixel: source coordinates 0.17, 1.5, 2.83 */
    x = TF(4, DIMS(1, 1, 1, 4), 1, 2, 3, 4);
    empty = empty_list(LEGO_F32); /* next_case() freed the first */
    lego_tensor *sizes = LIST(1, 1, 1, 3);
    CHECK_OK(run(&op_desc_Resize, NOATTR, 13, INS(x, NULL, NULL, sizes)));
    F32_IS(&out[0], "Resize nearest round_prefer_floor", 1, 2, 4);
    CHECK_OK(run(&op_desc_Resize, ATTRS(a_str("nearest_mode", "round_prefer_ceil")), 13,
                 INS(x, NULL, NULL, sizes)));
    F32_IS(&out[0], "Resize nearest round_prefer_ceil", 1, 3, 4);
    CHECK_OK(run(&op_desc_Resize, ATTRS(a_str("nearest_mode", "floor")), 13,
                 INS(x, NULL, NULL, sizes)));
    F32_IS(&out[0], "Resize nearest floor", 1, 2, 3);
    CHECK_OK(run(&op_desc_Resize, ATTRS(a_str("nearest_mode", "ceil")), 13,
                 INS(x, NULL, NULL, sizes)));
    F32_IS(&out[0], "Resize nearest ceil", 2, 3, 4);
    /* downsampling by 2, half_pixel: each output averages a pair */
    CHECK_OK(run(&op_desc_Resize, ATTRS(a_str("mode", "linear")), 13,
                 INS(x, empty, scales4(1, 1, 1, 0.5f))));
    F32_IS(&out[0], "Resize linear downsample", 1.5f, 3.5f);
    /* the given scale, not out/in, drives the transform: 4 * 0.6 -> 2
     * outputs, and output 1 reads x[floor(1 / 0.6)] = x[1] (out/in = 0.5
     * would give x[2]) */
    CHECK_OK(run(&op_desc_Resize,
                 ATTRS(a_str("coordinate_transformation_mode", "asymmetric"),
                       a_str("nearest_mode", "floor")),
                 13, INS(x, empty, scales4(1, 1, 1, 0.6f))));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 1, 1, 2));
    F32_IS(&out[0], "Resize uses the given scale", 1, 2);
    /* empty scales count as absent (opset 11 passes one with sizes) */
    CHECK_OK(run(&op_desc_Resize, NOATTR, 11, INS(x, empty, empty, sizes)));
    CHECK(SHAPE_IS(&out[0], LEGO_F32, 1, 1, 1, 3));
    next_case();

    /* bilinear on a random [2,3,5,4] -> [2,3,7,9] against a direct
     * evaluation of the ONNX formula (half_pixel, edge clamping) */
    {
        lego_tensor *xr = trand(4, DIMS(2, 3, 5, 4), 11);
        CHECK_OK(run(&op_desc_Resize, ATTRS(a_str("mode", "linear")), 13,
                     INS(xr, NULL, NULL, LIST(2, 3, 7, 9))));
        static float want[2 * 3 * 7 * 9];
        const float *xd = xr->data;
        for (int p = 0; p < 6; p++)
            for (int oy = 0; oy < 7; oy++)
                for (int ox = 0; ox < 9; ox++) {
                    double sy = (oy + 0.5) * 5.0 / 7.0 - 0.5, sx = (ox + 0.5) * 4.0 / 9.0 - 0.5;
                    double acc = 0;
                    /* sum of tent weights over all pixels, indices clamped */
                    sy = sy < 0 ? 0 : sy > 4 ? 4 : sy;
                    sx = sx < 0 ? 0 : sx > 3 ? 3 : sx;
                    for (int iy = 0; iy < 5; iy++)
                        for (int ix = 0; ix < 4; ix++) {
                            double wy = 1 - fabs(sy - iy), wx = 1 - fabs(sx - ix);
                            if (wy > 0 && wx > 0)
                                acc += wy * wx * xd[(p * 5 + iy) * 4 + ix];
                        }
                    want[(p * 7 + oy) * 9 + ox] = (float)acc;
                }
        f32_close(&out[0], 2 * 3 * 7 * 9, want, "Resize linear random");
        next_case();
    }

    x = TF(4, DIMS(1, 1, 2, 2), 1, 2, 3, 4);
    empty = empty_list(LEGO_F32);
    CHECK_FAILS(run(&op_desc_Resize, ATTRS(a_str("mode", "cubic")), 13,
                    INS(x, empty, scales4(1, 1, 2, 2))),
                LEGO_ERR_UNSUPPORTED, "mode 'cubic'");
    CHECK_FAILS(run(&op_desc_Resize,
                    ATTRS(a_str("coordinate_transformation_mode", "tf_crop_and_resize")), 13,
                    INS(x, empty, scales4(1, 1, 2, 2))),
                LEGO_ERR_UNSUPPORTED, "tf_crop_and_resize");
    CHECK_FAILS(run(&op_desc_Resize, NOATTR, 13,
                    INS(x, empty, scales4(1, 1, 2, 2), LIST(1, 1, 4, 4))),
                LEGO_ERR_FORMAT, "both given");
    CHECK_FAILS(run(&op_desc_Resize, NOATTR, 13, INS(x, empty, empty)), LEGO_ERR_FORMAT,
                "neither");
    CHECK_FAILS(run(&op_desc_Resize, ATTRS(a_str("mode", "linear")), 13,
                    INS(x, empty, scales4(1, 2, 2, 2))),
                LEGO_ERR_UNSUPPORTED, "axis 1");
    CHECK_FAILS(run(&op_desc_Resize, NOATTR, 13, INS(x, empty, LIST(1, 1, 2, 2))), LEGO_ERR_SHAPE,
                "scales is int64");
    CHECK_FAILS(run(&op_desc_Resize, NOATTR, 13, INS(x, NULL, NULL, LIST(4, 4))), LEGO_ERR_SHAPE,
                "sizes has 2 values for an input of rank 4");
    CHECK_FAILS(run(&op_desc_Resize, NOATTR, 13, INS(x, empty, scales4(1, 1, 0, 2))),
                LEGO_ERR_SHAPE, "not positive");
    next_case();
}

int main(void)
{
    test_elementwise();
    test_activation();
    test_softmax();
    test_reduce();
    test_reshape_family();
    test_transpose_concat();
    test_slice();
    test_gather();
    test_expand_shape();
    test_dropout_constant_cast();
    test_pad();
    test_resize();
    next_case();
    return harness_finish();
}
