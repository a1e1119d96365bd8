/* test_ops_grad.c - the backward passes of the non-conv op families:
 * elementwise (with broadcasting), activations, Softmax, reductions, the
 * shape and data-movement ops, Pad and Resize.
 *
 * Every case runs gradcheck() (op_test.h) over every element of every float
 * input, then check_adds(): backward must ADD into a gradient that already
 * holds values, never overwrite it, unless told the gradient is fresh
 * (op_call.fresh, for the inputs in op_desc.grad_writes): then it must
 * write every element (the buffer starts as NaN), also over dY's own buffer
 * for the inputs in grad_inplace. Inputs are chosen away from
 * kinks (ReLU at 0, Clip at its bounds, ties in ReduceMax) so that central
 * differences are exact up to rounding; the few rules that live at a kink
 * (which tie ReduceMax picks) are checked directly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "harness.h"
#include "op_test.h"
#include "ops/op.h"

extern const op_desc op_desc_Add, op_desc_Sub, op_desc_Mul, op_desc_Div, op_desc_Pow,
    op_desc_Sqrt, op_desc_Equal, op_desc_Where, op_desc_Relu, op_desc_LeakyRelu,
    op_desc_Clip, op_desc_Sigmoid, op_desc_Tanh, op_desc_Softmax, op_desc_ReduceMean,
    op_desc_ReduceMax, op_desc_ReduceSum, op_desc_Reshape, op_desc_Flatten, op_desc_Squeeze,
    op_desc_Unsqueeze, op_desc_Transpose, op_desc_Concat, op_desc_Slice, op_desc_Gather,
    op_desc_Expand, op_desc_Shape, op_desc_Identity, op_desc_Dropout, op_desc_Cast,
    op_desc_Pad, op_desc_Resize;

/* ---- tensors ------------------------------------------------------------ */

/* Every tensor a case makes, released by reset() at its end. */
static lego_tensor store[16];
static int n_store;

static void reset(void)
{
    while (n_store > 0)
        tensor_release(&store[--n_store]);
}

#define DIMS(...) (const int64_t[]){__VA_ARGS__}
#define NDIMS(...) ((int)(sizeof(int64_t[]){__VA_ARGS__} / sizeof(int64_t)))
/* rank and dims as two arguments: F(D(2, 3)) */
#define D(...) NDIMS(__VA_ARGS__), DIMS(__VA_ARGS__)
#define IN(...)                                                                             \
    (int)(sizeof((lego_tensor *[]){__VA_ARGS__}) / sizeof(lego_tensor *)),                  \
        (lego_tensor *[]){__VA_ARGS__}

static lego_tensor *slot(void)
{
    if (n_store == (int)(sizeof store / sizeof store[0])) {
        fprintf(stderr, "test_ops_grad: more than %d tensors in one case\n", n_store);
        abort();
    }
    return &store[n_store++];
}

/* float32, random in [-1, 1] */
static lego_tensor *F(int rank, const int64_t *dims)
{
    lego_tensor *t = slot();
    make(t, LEGO_F32, rank, dims, 1);
    return t;
}

/* float32 holding v */
static lego_tensor *Fv(int rank, const int64_t *dims, const float *v)
{
    lego_tensor *t = F(rank, dims);
    memcpy(t->data, v, lego_tensor_bytes(t));
    return t;
}

static float *fdata(lego_tensor *t) { return t->data; }

/* int64 (rank, dims) holding v */
static lego_tensor *Iv(int rank, const int64_t *dims, const int64_t *v)
{
    lego_tensor *t = slot();
    make(t, LEGO_I64, rank, dims, 1);
    if (lego_tensor_bytes(t))
        memcpy(t->data, v, lego_tensor_bytes(t));
    return t;
}
#define LIST(...) Iv(1, DIMS(NDIMS(__VA_ARGS__)), DIMS(__VA_ARGS__))

/* an empty float32 list: Resize's "not given" roi */
static lego_tensor *empty_f32(void)
{
    lego_tensor *t = slot();
    make(t, LEGO_F32, 1, DIMS(0), 1);
    return t;
}

/* bool, random */
static lego_tensor *B(int rank, const int64_t *dims)
{
    lego_tensor *t = slot();
    make(t, LEGO_BOOL, rank, dims, 1);
    for (int64_t i = 0; i < lego_tensor_numel(t); i++)
        ((uint8_t *)t->data)[i] = (uint8_t)rnd(2);
    return t;
}

/* Moves every element at least `margin` away from `point`, keeping its side. */
static void away_from(lego_tensor *t, float point, float margin)
{
    float *x = t->data;
    for (int64_t i = 0; i < lego_tensor_numel(t); i++)
        if (fabsf(x[i] - point) < margin)
            x[i] = x[i] < point ? point - margin - 0.01f * (float)rnd(10)
                                : point + margin + 0.01f * (float)rnd(10);
}

/* |x| in [lo, lo + 1], sign kept when signed */
static void magnitude(lego_tensor *t, float lo, int keep_sign)
{
    float *x = t->data;
    for (int64_t i = 0; i < lego_tensor_numel(t); i++) {
        float m = lo + fabsf(x[i]);
        x[i] = keep_sign && x[i] < 0 ? -m : m;
    }
}

/* Distinct values 0.05 apart in scrambled order (n must not be a multiple
 * of 37): no two elements are within a finite-difference step, so a max
 * never changes hands under perturbation. */
static void distinct(lego_tensor *t)
{
    int64_t n = lego_tensor_numel(t);
    float *x = t->data;
    for (int64_t i = 0; i < n; i++)
        x[i] = 0.05f * (float)((i * 37 + 11) % n) - 1.0f;
}

/* ---- checks ------------------------------------------------------------- */

/* The backward contract at any opset (op_test's check_accumulates runs at
 * opset 17 only, and Softmax-11, Clip-6, Pad-2 and Slice-1 differ): from one
 * forward and one random dY, backward into gradients holding random values
 * must end at those values plus what it gives into zeros (it adds, never
 * overwrites), and asking for each input alone must give the same. */
static void check_adds(const op_desc *d, attrs *l, int opset, int n_in, lego_tensor **in,
                       unsigned mask, const char *what)
{
    attr_list al = {l->n, l->a};
    void *params = calloc(1, d->params_size + 1);
    lego_tensor y, g, zero[8], acc[8], start[8], alone;
    lego_tensor *out[1] = {&y}, *dout[1] = {&g}, *dz[8], *da[8];
    memset(&y, 0, sizeof y);
    op_call c = {.attrs = &al, .node_name = "", .opset = opset, .n_in = n_in, .n_out = 1,
                 .in = in, .out = out, .params = params};
    lego_status st = d->prepare(&c);
    if (st.code != LEGO_OK || !d->backward) {
        fprintf(stderr, "%s: %s\n", what, st.code ? lego_status_msg(st) : "no backward");
        lego_status_free(&st);
        harness_failed++;
        free(params);
        return;
    }
    tensor_alloc(&y);
    d->forward(&c);
    make(&g, LEGO_F32, y.rank, y.dims, 1);
    for (int i = 0; i < n_in; i++) {
        dz[i] = da[i] = NULL;
        if (!in[i] || !(mask >> i & 1u))
            continue;
        make(&zero[i], LEGO_F32, in[i]->rank, in[i]->dims, 1);
        memset(zero[i].data, 0, lego_tensor_bytes(&zero[i]));
        make(&acc[i], LEGO_F32, in[i]->rank, in[i]->dims, 1);
        tensor_clone(&acc[i], &start[i]);
        dz[i] = &zero[i];
        da[i] = &acc[i];
    }
    d->backward(&c, dout, dz);
    d->backward(&c, dout, da);
    for (int i = 0; i < n_in; i++) {
        if (!dz[i])
            continue;
        lego_tensor *one[8] = {NULL};
        make(&alone, LEGO_F32, in[i]->rank, in[i]->dims, 1);
        memset(alone.data, 0, lego_tensor_bytes(&alone));
        one[i] = &alone;
        d->backward(&c, dout, one);
        CHECK(check_writes(d, &c, &g, i, &alone, what)); /* written, not added, when fresh */
        const float *z = zero[i].data, *a = acc[i].data, *s = start[i].data, *o = alone.data;
        int ok = 1;
        for (int64_t k = 0; k < lego_tensor_numel(&zero[i]) && ok; k++) {
            float want = s[k] + z[k];
            if (!(fabsf(a[k] - want) <= 1e-5f * (1.0f + fabsf(s[k]) + fabsf(z[k]))) ||
                o[k] != z[k]) {
                fprintf(stderr, "%s: input %d element %lld: from %g, into zeros %g, ended at "
                                "%g (overwritten?), alone %g\n",
                        what, i, (long long)k, s[k], z[k], a[k], o[k]);
                ok = 0;
            }
        }
        CHECK(ok);
        tensor_release(&alone);
        tensor_release(&zero[i]);
        tensor_release(&acc[i]);
        tensor_release(&start[i]);
    }
    tensor_release(&y);
    tensor_release(&g);
    free(params);
}

/* Finite differences over every element of the inputs in mask, then the
 * accumulation check. */
static void grad_ok(const op_desc *d, attrs *l, int opset, int n_in, lego_tensor **in,
                    unsigned mask, float h, float tol, const char *what)
{
    gradcheck(d, l, opset, n_in, in, 1, mask, 0, h, tol, tol, 100000, what);
    check_adds(d, l, opset, n_in, in, mask, what);
    reset();
}

/* One prepared and run node, for the checks made by hand: outputs
 * allocated, the op_call ready for backward. */
typedef struct call {
    op_call c;
    attr_list al;
    lego_tensor out[2];
    lego_tensor *outp[2];
} call;

static void call_run(call *k, const op_desc *d, attrs *l, int opset, int n_in, lego_tensor **in,
                     int n_out)
{
    memset(k, 0, sizeof *k);
    k->al = (attr_list){l->n, l->a};
    k->outp[0] = &k->out[0];
    k->outp[1] = &k->out[1];
    k->c = (op_call){.attrs = &k->al, .node_name = "", .opset = opset, .n_in = n_in,
                     .n_out = n_out, .in = in, .out = k->outp,
                     .params = calloc(1, d->params_size + 1)};
    CHECK_OK(d->prepare(&k->c));
    for (int o = 0; o < n_out; o++)
        tensor_alloc(&k->out[o]);
    d->forward(&k->c);
}

static void call_free(call *k)
{
    free(k->c.params);
    tensor_release(&k->out[0]);
    tensor_release(&k->out[1]);
}

/* a float32 gradient buffer: random, or zero */
static lego_tensor *G(int rank, const int64_t *dims, int zero)
{
    lego_tensor *t = F(rank, dims);
    if (zero)
        memset(t->data, 0, lego_tensor_bytes(t));
    return t;
}

#define NO_ATTRS (&(attrs){.n = 0})
#define SMOOTH 1e-2f, 2e-3f /* h and tolerance for smooth ops */
#define LINEAR 1e-2f, 1e-3f /* for ops linear in their inputs */

/* ---- elementwise -------------------------------------------------------- */

/* The broadcast cases each binary op runs: same shape, a scalar on either
 * side, a [C,1,1] bias against NCHW, and both sides broadcast. */
typedef struct bcase {
    int ra;
    int64_t a[4];
    int rb;
    int64_t b[4];
    const char *what;
} bcase;

static const bcase bcases[] = {
    {3, {2, 3, 4}, 3, {2, 3, 4}, "same shape"},
    {3, {2, 3, 4}, 0, {0}, "b scalar"},
    {0, {0}, 2, {3, 4}, "a scalar"},
    {4, {2, 3, 2, 3}, 3, {3, 1, 1}, "b [C,1,1]"},
    {3, {3, 1, 1}, 4, {2, 3, 2, 2}, "a [C,1,1]"},
    {3, {3, 1, 4}, 4, {2, 1, 5, 1}, "both broadcast"},
    {1, {1}, 2, {2, 3}, "a [1]"},
};

static void test_binary(void)
{
    const op_desc *ops[] = {&op_desc_Add, &op_desc_Sub, &op_desc_Mul, &op_desc_Div,
                            &op_desc_Pow};
    char what[128];
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        for (size_t k = 0; k < sizeof bcases / sizeof bcases[0]; k++) {
            const bcase *bc = &bcases[k];
            lego_tensor *a = F(bc->ra, bc->a), *b = F(bc->rb, bc->b);
            if (ops[o] == &op_desc_Div)
                magnitude(b, 0.5f, 1); /* away from the pole */
            if (ops[o] == &op_desc_Pow) {
                magnitude(a, 0.5f, 0); /* positive base: ln(a) exists */
                for (int64_t i = 0; i < lego_tensor_numel(b); i++)
                    fdata(b)[i] *= 2.0f;
            }
            snprintf(what, sizeof what, "%s %s", ops[o]->name, bc->what);
            grad_ok(ops[o], NO_ATTRS, 17, IN(a, b), 3, SMOOTH, what);
        }
    }

    /* Pow with an int64 exponent: the base's gradient only, negative
     * bases allowed */
    lego_tensor *a = F(D(2, 3)), *e = Iv(D(3), DIMS(2, 3, 0));
    magnitude(a, 0.3f, 1);
    grad_ok(&op_desc_Pow, NO_ATTRS, 17, IN(a, e), 1, SMOOTH, "Pow int64 exponent");
    /* Pow at e == 0 and at a == 0: PyTorch's zeros, not NaN */
    a = Fv(D(3), (const float[]){0.0f, 2.0f, 0.0f});
    lego_tensor *b = Fv(D(3), (const float[]){2.0f, 0.0f, 0.0f});
    call k;
    call_run(&k, &op_desc_Pow, NO_ATTRS, 17, IN(a, b), 1);
    lego_tensor *g = G(D(3), 0), *da = G(D(3), 1), *db = G(D(3), 1);
    op_desc_Pow.backward(&k.c, &g, (lego_tensor *[]){da, db});
    const float *pa = da->data, *pb = db->data, *pg = g->data;
    /* d/da a^2 at 0 is 0; a^0: no base gradient; 0^0: none either */
    CHECK(pa[0] == 0.0f && pa[1] == 0.0f && pa[2] == 0.0f);
    /* d/db a^b at a == 0, b >= 0 is 0; at a = 2, b = 0: ln 2 */
    CHECK(pb[0] == 0.0f && pb[2] == 0.0f);
    CHECK(fabsf(pb[1] - pg[1] * logf(2.0f)) < 1e-6f);
    call_free(&k);
    reset();
}

static void test_sqrt_where_equal(void)
{
    lego_tensor *x = F(D(2, 3, 4));
    magnitude(x, 0.3f, 0);
    grad_ok(&op_desc_Sqrt, NO_ATTRS, 17, IN(x), 1, SMOOTH, "Sqrt");

    /* Where: gradients to X and Y, each reduced over its broadcast dims */
    lego_tensor *cond = B(D(2, 1, 4)), *X = F(D(3, 1)), *Y = F(D(2, 3, 4));
    grad_ok(&op_desc_Where, NO_ATTRS, 17, IN(cond, X, Y), 6, LINEAR, "Where X [3,1]");
    cond = B(D(2, 3, 4)), X = F(D(2, 3, 4)), Y = F(0, NULL);
    grad_ok(&op_desc_Where, NO_ATTRS, 17, IN(cond, X, Y), 6, LINEAR, "Where Y scalar");
    cond = B(D(4)), X = F(D(2, 1, 1)), Y = F(D(3, 1));
    grad_ok(&op_desc_Where, NO_ATTRS, 17, IN(cond, X, Y), 4, LINEAR, "Where only Y wanted");

    /* Equal: bool output, zero gradient: backward exists and adds nothing */
    lego_tensor *a = F(D(2, 3)), *b = F(D(3));
    call k;
    call_run(&k, &op_desc_Equal, NO_ATTRS, 17, IN(a, b), 1);
    CHECK(k.out[0].dtype == LEGO_BOOL && op_desc_Equal.backward != NULL);
    lego_tensor *g = G(D(2, 3), 0), *da = G(D(2, 3), 0), *db = G(D(3), 0);
    lego_tensor *da0 = Fv(D(2, 3), da->data), *db0 = Fv(D(3), db->data);
    op_desc_Equal.backward(&k.c, &g, (lego_tensor *[]){da, db});
    CHECK(memcmp(da->data, da0->data, lego_tensor_bytes(da)) == 0);
    CHECK(memcmp(db->data, db0->data, lego_tensor_bytes(db)) == 0);
    call_free(&k);
    reset();
}

/* ---- activations -------------------------------------------------------- */

static void test_activations(void)
{
    lego_tensor *x = F(D(2, 3, 5));
    away_from(x, 0.0f, 0.05f);
    grad_ok(&op_desc_Relu, NO_ATTRS, 17, IN(x), 1, LINEAR, "Relu");

    attrs l = {.n = 0};
    add_float(&l, "alpha", 0.2f);
    x = F(D(2, 3, 5));
    away_from(x, 0.0f, 0.05f);
    grad_ok(&op_desc_LeakyRelu, &l, 17, IN(x), 1, LINEAR, "LeakyRelu alpha 0.2");
    x = F(D(7));
    away_from(x, 0.0f, 0.05f);
    grad_ok(&op_desc_LeakyRelu, NO_ATTRS, 17, IN(x), 1, LINEAR, "LeakyRelu default alpha");

    /* Clip-11: min and max as inputs, which take gradients too */
    x = F(D(3, 8));
    away_from(x, -0.4f, 0.05f);
    away_from(x, 0.5f, 0.05f);
    grad_ok(&op_desc_Clip, NO_ATTRS, 13,
            IN(x, Fv(0, NULL, (const float[]){-0.4f}), Fv(0, NULL, (const float[]){0.5f})), 7,
            LINEAR, "Clip-13 min and max");
    x = F(D(3, 8));
    away_from(x, 0.25f, 0.05f);
    grad_ok(&op_desc_Clip, NO_ATTRS, 13, IN(x, Fv(0, NULL, (const float[]){0.25f})), 3,
            LINEAR, "Clip-13 min only");
    x = F(D(3, 8));
    away_from(x, -0.2f, 0.05f);
    lego_tensor *none = NULL;
    grad_ok(&op_desc_Clip, NO_ATTRS, 13, IN(x, none, Fv(0, NULL, (const float[]){-0.2f})), 5,
            LINEAR, "Clip-13 max only");
    /* min > max: the output is max everywhere */
    x = F(D(10));
    away_from(x, 0.3f, 0.05f);
    away_from(x, -0.3f, 0.05f);
    grad_ok(&op_desc_Clip, NO_ATTRS, 13,
            IN(x, Fv(0, NULL, (const float[]){0.3f}), Fv(0, NULL, (const float[]){-0.3f})), 7,
            LINEAR, "Clip-13 min > max");
    /* Clip-6: attributes; ReLU6-like */
    l = (attrs){.n = 0};
    add_float(&l, "min", 0.0f);
    add_float(&l, "max", 0.6f);
    x = F(D(4, 6));
    away_from(x, 0.0f, 0.05f);
    away_from(x, 0.6f, 0.05f);
    grad_ok(&op_desc_Clip, &l, 6, IN(x), 1, LINEAR, "Clip-6 attributes");

    /* the boundaries themselves pass nothing, as hardtanh's backward */
    {
        lego_tensor *xb = Fv(D(4), (const float[]){0.0f, 0.6f, 0.3f, 0.7f});
        call k;
        call_run(&k, &op_desc_Clip, &l, 6, IN(xb), 1);
        lego_tensor *g = G(D(4), 0), *dx = G(D(4), 1);
        op_desc_Clip.backward(&k.c, &g, &dx);
        const float *pd = dx->data, *pg = g->data;
        CHECK(pd[0] == 0.0f && pd[1] == 0.0f && pd[2] == pg[2] && pd[3] == 0.0f);
        call_free(&k);
        reset();
    }

    x = F(D(2, 3, 4));
    for (int64_t i = 0; i < 24; i++)
        fdata(x)[i] *= 3.0f;
    grad_ok(&op_desc_Sigmoid, NO_ATTRS, 17, IN(x), 1, SMOOTH, "Sigmoid");
    x = F(D(2, 3, 4));
    for (int64_t i = 0; i < 24; i++)
        fdata(x)[i] *= 2.0f;
    grad_ok(&op_desc_Tanh, NO_ATTRS, 17, IN(x), 1, SMOOTH, "Tanh");
}

/* ---- Softmax ------------------------------------------------------------ */

static void test_softmax(void)
{
    static const struct {
        int opset, has_axis;
        int64_t axis;
        const char *what;
    } cases[] = {
        {11, 0, 0, "Softmax-11 default axis 1 (2-D coerced over 3x4)"},
        {11, 1, 2, "Softmax-11 axis 2"},
        {11, 1, 0, "Softmax-11 axis 0 (all 24 values)"},
        {11, 1, -2, "Softmax-11 axis -2"},
        {13, 0, 0, "Softmax-13 default axis -1"},
        {13, 1, 1, "Softmax-13 axis 1 (3 values, inner 4)"},
        {13, 1, 0, "Softmax-13 axis 0"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        attrs l = {.n = 0};
        if (cases[k].has_axis)
            add_int(&l, "axis", cases[k].axis);
        lego_tensor *x = F(D(2, 3, 4));
        for (int64_t i = 0; i < 24; i++)
            fdata(x)[i] *= 2.0f;
        grad_ok(&op_desc_Softmax, &l, cases[k].opset, IN(x), 1, SMOOTH, cases[k].what);
    }
}

/* ---- reductions --------------------------------------------------------- */

static void test_reduce(void)
{
    static const struct {
        int n_axes;
        int64_t axes[3];
        int keepdims;
    } cases[] = {
        {1, {1}, 1}, {1, {1}, 0}, {2, {0, 2}, 1}, {2, {0, 2}, 0},
        {0, {0}, 0}, {0, {0}, 1}, {1, {-1}, 1},   {3, {2, -3, 1}, 0},
    };
    const op_desc *ops[] = {&op_desc_ReduceMean, &op_desc_ReduceSum, &op_desc_ReduceMax};
    char what[128];
    for (size_t o = 0; o < 3; o++) {
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            /* attribute form (opset 13 for Mean/Max; Sum takes an input) */
            lego_tensor *x = F(D(2, 3, 4));
            if (ops[o] == &op_desc_ReduceMax)
                distinct(x);
            attrs l = {.n = 0};
            add_int(&l, "keepdims", cases[k].keepdims);
            snprintf(what, sizeof what, "%s %d axes keepdims %d", ops[o]->name, cases[k].n_axes,
                     cases[k].keepdims);
            if (ops[o] == &op_desc_ReduceSum) {
                lego_tensor *ax = Iv(D(cases[k].n_axes), cases[k].axes);
                grad_ok(ops[o], &l, 13, IN(x, ax), 1, LINEAR, what);
                continue;
            }
            if (cases[k].n_axes)
                add_ints(&l, "axes", cases[k].n_axes, cases[k].axes);
            grad_ok(ops[o], &l, 13, IN(x), 1, LINEAR, what);
        }
    }
    /* opset 18: axes as an input for Mean and Max too */
    lego_tensor *x = F(D(3, 5));
    grad_ok(&op_desc_ReduceMean, NO_ATTRS, 18, IN(x, LIST(0)), 1, LINEAR, "ReduceMean-18 axes");
    x = F(D(3, 5));
    distinct(x);
    grad_ok(&op_desc_ReduceMax, NO_ATTRS, 18, IN(x, LIST(-1)), 1, LINEAR, "ReduceMax-18 axes");

    /* ties: the whole gradient goes to the first maximum in row-major order
     * (torch.max(x, dim)'s one-winner rule) */
    x = Fv(D(2, 4), (const float[]){1.0f, 3.0f, 3.0f, 0.0f, /**/ 2.0f, -1.0f, 2.0f, 2.0f});
    attrs l = {.n = 0};
    add_ints(&l, "axes", 1, DIMS(1));
    add_int(&l, "keepdims", 0);
    call k;
    call_run(&k, &op_desc_ReduceMax, &l, 13, IN(x), 1);
    lego_tensor *g = Fv(D(2), (const float[]){1.5f, -2.0f}), *dx = G(D(2, 4), 1);
    op_desc_ReduceMax.backward(&k.c, &g, &dx);
    const float want[8] = {0, 1.5f, 0, 0, -2.0f, 0, 0, 0};
    CHECK(memcmp(dx->data, want, sizeof want) == 0);
    call_free(&k);
    reset();
    /* over two axes (0 and 2), row-major order among the reduced elements */
    x = Fv(D(2, 2, 2), (const float[]){1, 5, 2, 0, /**/ 5, 5, 3, 2});
    l = (attrs){.n = 0};
    add_ints(&l, "axes", 2, DIMS(0, 2));
    call_run(&k, &op_desc_ReduceMax, &l, 13, IN(x), 1);
    g = Fv(D(1, 2, 1), (const float[]){1.5f, -2.0f}), dx = G(D(2, 2, 2), 1);
    op_desc_ReduceMax.backward(&k.c, &g, &dx);
    const float want2[8] = {0, 1.5f, 0, 0, 0, 0, -2.0f, 0};
    CHECK(memcmp(dx->data, want2, sizeof want2) == 0);
    call_free(&k);
    reset();
}

/* ---- shape and data-movement ops ---------------------------------------- */

static void test_relabel(void)
{
    grad_ok(&op_desc_Reshape, NO_ATTRS, 17, IN(F(D(2, 3, 4)), LIST(4, -1)), 1, LINEAR,
            "Reshape");
    attrs l = {.n = 0};
    add_int(&l, "axis", 2);
    grad_ok(&op_desc_Flatten, &l, 17, IN(F(D(2, 3, 2, 2))), 1, LINEAR, "Flatten axis 2");
    grad_ok(&op_desc_Squeeze, NO_ATTRS, 13, IN(F(D(2, 1, 3)), LIST(1)), 1, LINEAR, "Squeeze");
    grad_ok(&op_desc_Unsqueeze, NO_ATTRS, 13, IN(F(D(2, 3)), LIST(0, 3)), 1, LINEAR,
            "Unsqueeze");
    grad_ok(&op_desc_Identity, NO_ATTRS, 17, IN(F(D(5))), 1, LINEAR, "Identity");
    grad_ok(&op_desc_Dropout, NO_ATTRS, 17, IN(F(D(2, 5))), 1, LINEAR, "Dropout inference");
    l = (attrs){.n = 0};
    add_int(&l, "to", LEGO_F32);
    grad_ok(&op_desc_Cast, &l, 17, IN(F(D(2, 3))), 1, LINEAR, "Cast float32 -> float32");

    /* Dropout with its mask output: the mask takes no gradient */
    {
        call k;
        call_run(&k, &op_desc_Dropout, NO_ATTRS, 13, IN(F(D(2, 3))), 2);
        lego_tensor *g = G(D(2, 3), 0), *dx = G(D(2, 3), 1);
        op_desc_Dropout.backward(&k.c, (lego_tensor *[]){g, NULL}, &dx);
        CHECK(memcmp(dx->data, g->data, lego_tensor_bytes(g)) == 0);
        call_free(&k);
        reset();
    }

    /* Shape's output is int64, so the training planner sends it no gradient
     * and it needs no backward; a float -> int64 Cast adds nothing either */
    {
        lego_tensor *x = F(D(2, 3)), *dx = G(D(2, 3), 0), *dx0 = Fv(D(2, 3), dx->data);
        call k;
        CHECK(op_desc_Shape.backward == NULL);
        lego_tensor g;
        lego_tensor *gp = &g;
        attrs lc = {.n = 0};
        add_int(&lc, "to", LEGO_I64);
        call_run(&k, &op_desc_Cast, &lc, 17, IN(x), 1);
        make(&g, LEGO_I64, D(2, 3), 1);
        op_desc_Cast.backward(&k.c, &gp, &dx);
        CHECK(memcmp(dx->data, dx0->data, lego_tensor_bytes(dx)) == 0);
        call_free(&k);
        tensor_release(&g);
        reset();
    }
}

static void test_transpose_concat(void)
{
    attrs l = {.n = 0};
    add_ints(&l, "perm", 3, DIMS(2, 0, 1));
    grad_ok(&op_desc_Transpose, &l, 17, IN(F(D(2, 3, 4))), 1, LINEAR, "Transpose 2,0,1");
    grad_ok(&op_desc_Transpose, NO_ATTRS, 17, IN(F(D(2, 3, 4))), 1, LINEAR,
            "Transpose reversed");
    l = (attrs){.n = 0};
    add_ints(&l, "perm", 4, DIMS(0, 2, 3, 1));
    grad_ok(&op_desc_Transpose, &l, 17, IN(F(D(2, 3, 2, 3))), 1, LINEAR, "Transpose NCHW->NHWC");

    static const struct {
        int64_t axis;
        const char *what;
    } cases[] = {{0, "Concat axis 0"}, {1, "Concat axis 1"}, {-1, "Concat axis -1"}};
    for (int k = 0; k < 3; k++) {
        int64_t d0[3] = {2, 3, 4}, d1[3] = {2, 3, 4}, d2[3] = {2, 3, 4};
        int a = (int)(cases[k].axis < 0 ? cases[k].axis + 3 : cases[k].axis);
        d1[a] = 1;
        d2[a] = 3;
        l = (attrs){.n = 0};
        add_int(&l, "axis", cases[k].axis);
        grad_ok(&op_desc_Concat, &l, 17, IN(F(3, d0), F(3, d1), F(3, d2)), 7, LINEAR,
                cases[k].what);
    }
    /* only some inputs want a gradient */
    l = (attrs){.n = 0};
    add_int(&l, "axis", 1);
    grad_ok(&op_desc_Concat, &l, 17, IN(F(D(2, 2)), F(D(2, 3)), F(D(2, 1))), 5, LINEAR,
            "Concat inputs 0 and 2 only");
}

static void test_slice_gather_expand(void)
{
    /* starts, ends, axes, steps */
    grad_ok(&op_desc_Slice, NO_ATTRS, 13,
            IN(F(D(4, 5, 6)), LIST(1, 0), LIST(3, 5), LIST(0, 2), LIST(1, 2)), 1, LINEAR,
            "Slice steps 1 and 2");
    grad_ok(&op_desc_Slice, NO_ATTRS, 13,
            IN(F(D(4, 5, 6)), LIST(-1), LIST(-100), LIST(1), LIST(-2)), 1, LINEAR,
            "Slice step -2 to the front");
    grad_ok(&op_desc_Slice, NO_ATTRS, 13,
            IN(F(D(4, 5, 6)), LIST(3, 5, 1), LIST(0, 0, 5), LIST(0, -1, 1), LIST(-1, -3, 1)), 1,
            LINEAR, "Slice steps -1, -3 and 1 on three axes");
    grad_ok(&op_desc_Slice, NO_ATTRS, 13, IN(F(D(3, 4)), LIST(1), LIST(INT64_MAX)), 1, LINEAR,
            "Slice to the end, default axes");
    attrs l = {.n = 0};
    add_ints(&l, "starts", 1, DIMS(1));
    add_ints(&l, "ends", 1, DIMS(-1));
    add_ints(&l, "axes", 1, DIMS(1));
    grad_ok(&op_desc_Slice, &l, 9, IN(F(D(3, 4))), 1, LINEAR, "Slice-1 attributes");

    l = (attrs){.n = 0};
    add_int(&l, "axis", 0);
    grad_ok(&op_desc_Gather, &l, 13, IN(F(D(5, 3)), LIST(1, 1, -1, 0, 1)), 1, LINEAR,
            "Gather axis 0, repeated and negative indices");
    l = (attrs){.n = 0};
    add_int(&l, "axis", 1);
    grad_ok(&op_desc_Gather, &l, 13, IN(F(D(2, 4, 3)), Iv(D(2, 2), DIMS(0, -1, 3, 0))), 1,
            LINEAR, "Gather axis 1, 2-D indices");
    l = (attrs){.n = 0};
    add_int(&l, "axis", -1);
    grad_ok(&op_desc_Gather, &l, 13, IN(F(D(2, 4, 3)), Iv(0, NULL, DIMS(-2))), 1, LINEAR,
            "Gather axis -1, scalar index");

    grad_ok(&op_desc_Expand, NO_ATTRS, 13, IN(F(D(3, 1)), LIST(2, 3, 4)), 1, LINEAR,
            "Expand [3,1] to [2,3,4]");
    grad_ok(&op_desc_Expand, NO_ATTRS, 13, IN(F(D(1)), LIST(2, 2)), 1, LINEAR,
            "Expand [1] to [2,2]");
    grad_ok(&op_desc_Expand, NO_ATTRS, 13, IN(F(D(2, 1, 3)), LIST(4, 1)), 1, LINEAR,
            "Expand [2,1,3] by [4,1]");
    grad_ok(&op_desc_Expand, NO_ATTRS, 13, IN(F(D(2, 3)), LIST(2, 3)), 1, LINEAR,
            "Expand to the same shape");
}

/* ---- Pad ---------------------------------------------------------------- */

static void test_pad(void)
{
    static const struct {
        const char *mode;
        int64_t pads[6];
        const char *what;
    } cases[] = {
        {"constant", {0, 1, 2, 0, 1, 3}, "Pad constant"},
        {"constant", {1, -1, 2, -1, 1, -2}, "Pad constant with crops"},
        {"reflect", {0, 2, 3, 0, 1, 3}, "Pad reflect"},
        {"reflect", {1, 5, 7, 0, 4, 6}, "Pad reflect beyond the axis"},
        {"reflect", {0, -1, 2, 1, 1, -1}, "Pad reflect with crops"},
        {"edge", {1, 2, 5, 0, 3, 1}, "Pad edge"},
        {"edge", {0, -2, 3, 1, 2, -1}, "Pad edge with crops"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        attrs l = {.n = 0};
        add_str(&l, "mode", cases[k].mode);
        grad_ok(&op_desc_Pad, &l, 13, IN(F(D(2, 3, 4)), Iv(D(6), cases[k].pads)), 1, LINEAR,
                cases[k].what);
    }
    /* constant_value given: it takes the padded positions' gradient */
    attrs l = {.n = 0};
    grad_ok(&op_desc_Pad, &l, 13,
            IN(F(D(2, 3)), LIST(1, 0, 0, 2), Fv(0, NULL, (const float[]){0.7f})), 5, LINEAR,
            "Pad constant_value input");
    /* Pad-18 axes */
    add_str(&l, "mode", "reflect");
    grad_ok(&op_desc_Pad, &l, 18, IN(F(D(2, 3, 4)), LIST(2, 3, 1, 2), NULL, LIST(-1, 1)), 1,
            LINEAR, "Pad-18 reflect on axes -1, 1");
    /* Pad-2 attributes */
    l = (attrs){.n = 0};
    add_str(&l, "mode", "edge");
    add_ints(&l, "pads", 4, DIMS(1, 2, 2, 0));
    grad_ok(&op_desc_Pad, &l, 2, IN(F(D(3, 2))), 1, LINEAR, "Pad-2 edge");
}

/* ---- Resize ------------------------------------------------------------- */

/* one Resize case: x [1,2,H,W] to scales (sh, sw) or sizes (oh, ow) */
static void resize_case(const char *mode, const char *ctm, const char *nearest, int64_t h,
                        int64_t w, float sh, float sw, int64_t oh, int64_t ow)
{
    attrs l = {.n = 0};
    add_str(&l, "mode", mode);
    add_str(&l, "coordinate_transformation_mode", ctm);
    if (nearest)
        add_str(&l, "nearest_mode", nearest);
    char what[160];
    lego_tensor *x = F(D(1, 2, h, w));
    if (sh > 0) {
        snprintf(what, sizeof what, "Resize %s %s %s %lldx%lld scales %gx%g", mode, ctm,
                 nearest ? nearest : "", (long long)h, (long long)w, sh, sw);
        lego_tensor *scales = Fv(D(4), (const float[]){1, 1, sh, sw});
        grad_ok(&op_desc_Resize, &l, 13, IN(x, empty_f32(), scales), 1, LINEAR, what);
    } else {
        snprintf(what, sizeof what, "Resize %s %s %s %lldx%lld to %lldx%lld", mode, ctm,
                 nearest ? nearest : "", (long long)h, (long long)w, (long long)oh,
                 (long long)ow);
        lego_tensor *none = empty_f32();
        grad_ok(&op_desc_Resize, &l, 13, IN(x, empty_f32(), none, LIST(1, 2, oh, ow)), 1,
                LINEAR, what);
    }
}

static void test_resize(void)
{
    /* nearest: PyTorch's export, and the ONNX default rounding */
    resize_case("nearest", "asymmetric", "floor", 3, 4, 2, 2, 0, 0);
    resize_case("nearest", "asymmetric", "floor", 4, 6, 0.5f, 0.5f, 0, 0);
    resize_case("nearest", "asymmetric", "floor", 3, 4, 0, 0, 5, 7);
    resize_case("nearest", "half_pixel", "round_prefer_floor", 3, 4, 2, 2, 0, 0);
    resize_case("nearest", "half_pixel", "round_prefer_floor", 3, 4, 0, 0, 5, 7);
    resize_case("nearest", "half_pixel", "round_prefer_floor", 5, 6, 0, 0, 3, 4);
    resize_case("nearest", "half_pixel", "round_prefer_ceil", 3, 4, 0, 0, 5, 6);
    resize_case("nearest", "align_corners", "ceil", 3, 4, 0, 0, 4, 7);
    resize_case("nearest", "pytorch_half_pixel", "round_prefer_floor", 4, 4, 0, 0, 1, 3);
    resize_case("nearest", "tf_half_pixel_for_nn", "floor", 3, 4, 0, 0, 5, 5);

    /* linear in every coordinate mode, up and down */
    static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                       "asymmetric"};
    for (int k = 0; k < 4; k++) {
        resize_case("linear", ctms[k], NULL, 3, 4, 2, 2, 0, 0);
        resize_case("linear", ctms[k], NULL, 3, 4, 0, 0, 5, 7);
        resize_case("linear", ctms[k], NULL, 4, 6, 0.5f, 0.5f, 0, 0);
        resize_case("linear", ctms[k], NULL, 5, 6, 0, 0, 3, 4);
        resize_case("linear", ctms[k], NULL, 3, 4, 0, 0, 1, 1);
        resize_case("linear", ctms[k], NULL, 2, 3, 3, 1.5f, 0, 0);
    }
    /* linear on a rank-2 input */
    attrs l = {.n = 0};
    add_str(&l, "mode", "linear");
    add_str(&l, "coordinate_transformation_mode", "half_pixel");
    grad_ok(&op_desc_Resize, &l, 13,
            IN(F(D(3, 4)), empty_f32(), Fv(D(2), (const float[]){2.0f, 1.5f})), 1, LINEAR,
            "Resize linear rank 2");
}

int main(void)
{
    test_seed(12345);
    test_binary();
    test_sqrt_where_equal();
    test_activations();
    test_softmax();
    test_reduce();
    test_relabel();
    test_transpose_concat();
    test_slice_gather_expand();
    test_pad();
    test_resize();
    return harness_finish();
}
