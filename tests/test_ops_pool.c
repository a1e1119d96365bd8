/* test_ops_pool.c - AveragePool, MaxPool and the global pools against
 * direct-loop references, hand-worked PyTorch cases, and error messages. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "harness.h"
#include "ops/op.h"

extern const op_desc op_desc_AveragePool, op_desc_MaxPool, op_desc_GlobalAveragePool,
    op_desc_GlobalMaxPool;

/* registry.c comes with op_error and names every op; until all op files
 * exist these weak stand-ins let this test link. Nothing here looks them up. */
#define WEAK_OP(op) __attribute__((weak)) const op_desc op_desc_##op = {.name = #op};
WEAK_OP(Add) WEAK_OP(Sub) WEAK_OP(Mul) WEAK_OP(Div) WEAK_OP(Pow) WEAK_OP(Sqrt) WEAK_OP(Equal)
WEAK_OP(Where) WEAK_OP(Relu) WEAK_OP(LeakyRelu) WEAK_OP(Clip) WEAK_OP(Sigmoid) WEAK_OP(Tanh)
WEAK_OP(Softmax) WEAK_OP(Conv) WEAK_OP(ConvTranspose) WEAK_OP(BatchNormalization) WEAK_OP(Gemm)
WEAK_OP(MatMul) WEAK_OP(ReduceMean) WEAK_OP(ReduceMax) WEAK_OP(Reshape) WEAK_OP(Flatten)
WEAK_OP(Squeeze) WEAK_OP(Unsqueeze) WEAK_OP(Transpose) WEAK_OP(Concat) WEAK_OP(Slice)
WEAK_OP(Gather) WEAK_OP(Expand) WEAK_OP(Shape) WEAK_OP(Identity) WEAK_OP(Dropout)
WEAK_OP(Constant) WEAK_OP(Cast) WEAK_OP(ConstantOfShape) WEAK_OP(Pad) WEAK_OP(Resize)

/* ---- small helpers ---------------------------------------------------- */

static uint32_t rng = 777;
static uint32_t rnd(uint32_t n)
{
    rng = rng * 1664525u + 1013904223u;
    return (rng >> 8) % n;
}
static float frand(void) { return (float)rnd(20001) / 10000.0f - 1.0f; }

typedef struct attrs {
    int n;
    lego_attr a[12];
    int64_t ints[12][8];
} attrs;

static void add_int(attrs *l, const char *name, int64_t v)
{
    l->a[l->n++] = (lego_attr){.name = (char *)name, .type = ATTR_INT, .i = v};
}

static void add_ints(attrs *l, const char *name, int n, const int64_t *v)
{
    int k = l->n;
    memcpy(l->ints[k], v, (size_t)n * sizeof *v);
    l->a[l->n++] = (lego_attr){.name = (char *)name, .type = ATTR_INTS, .n = n, .ints = l->ints[k]};
}

static void add_str(attrs *l, const char *name, const char *s)
{
    l->a[l->n++] = (lego_attr){.name = (char *)name, .type = ATTR_STRING, .s = (char *)s};
}

static void make(lego_tensor *t, lego_dtype dt, int rank, const int64_t *dims, int alloc)
{
    memset(t, 0, sizeof *t);
    tensor_set_shape(t, dt, rank, dims);
    if (alloc && tensor_alloc(t).code == LEGO_OK && dt == LEGO_F32)
        for (int64_t i = 0; i < lego_tensor_numel(t); i++)
            ((float *)t->data)[i] = frand();
}

/* prepare on one input, then (if it worked and forward is set) allocate out[0] and run forward. */
static lego_status run(const op_desc *d, attrs *l, lego_tensor *x, int n_out, lego_tensor **out,
                       int forward, int64_t *flops)
{
    attr_list al = {l->n, l->a};
    void *params = calloc(1, d->params_size);
    lego_tensor *in[1] = {x};
    op_call c = {.attrs = &al, .node_name = "", .opset = 17, .n_in = 1, .n_out = n_out,
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

static lego_status run1(const op_desc *d, attrs *l, lego_tensor *x, lego_tensor *y, int forward)
{
    lego_tensor *out[1] = {y};
    return run(d, l, x, 1, out, forward, NULL);
}

/* ---- reference ---------------------------------------------------------- */

typedef struct cfg {
    int64_t n, c, h, w, kh, kw, sh, sw, dh, dw;
    int64_t pt, pl, pb, pr;
    int64_t ho, wo;
    int is_max, count_include_pad;
} cfg;

// x is (N,C,H,W), y is (N,C,Ho,Wo)
static void ref_pool(const cfg *q, const float *x, float *y)
{
    for (int64_t nc = 0; nc < q->n * q->c; nc++)
        for (int64_t oh = 0; oh < q->ho; oh++)
            for (int64_t ow = 0; ow < q->wo; ow++) {
                double sum = 0;
                float m = -INFINITY;
                int64_t inside = 0, padded = 0;
                for (int64_t ki = 0; ki < q->kh; ki++)
                    for (int64_t kj = 0; kj < q->kw; kj++) {
                        int64_t ih = oh * q->sh - q->pt + ki * q->dh;
                        int64_t iw = ow * q->sw - q->pl + kj * q->dw;
                        if (ih >= -q->pt && ih < q->h + q->pb && iw >= -q->pl && iw < q->w + q->pr)
                            padded++;
                        if (ih < 0 || ih >= q->h || iw < 0 || iw >= q->w)
                            continue;
                        float v = x[(nc * q->h + ih) * q->w + iw];
                        inside++;
                        sum += v;
                        m = v > m ? v : m;
                    }
                float *o = &y[(nc * q->ho + oh) * q->wo + ow];
                if (inside == 0) /* only dilation can leave a window with no input tap */
                    *o = q->is_max ? -FLT_MAX : 0.0f;
                else if (q->is_max)
                    *o = m;
                else
                    *o = (float)(sum / (double)(q->count_include_pad ? padded : inside));
            }
}

/* How many windows fit on one axis: floor mode needs the window inside the
 * padded input; ceil mode lets it hang over the end but start in the input
 * or the leading pad. */
static int64_t windows(int64_t in, int64_t pb, int64_t pe, int64_t dk, int64_t s, int ceil_mode)
{
    int64_t n = 0;
    for (int64_t start = 0;; start += s) {
        int fits = start + dk <= in + pb + pe;
        int partial = ceil_mode && start + dk < in + pb + pe + s && start < in + pb;
        if (!fits && !partial)
            return n;
        n++;
    }
}

static void pool_sweep(int is_max)
{
    static const char *modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    int ran = 0, refused = 0, ceil_grew = 0;
    for (int trial = 0; trial < 400; trial++) {
        cfg q = {.is_max = is_max};
        q.n = 1 + rnd(2);
        q.c = 1 + rnd(3);
        q.h = 1 + rnd(9);
        q.w = 1 + rnd(9);
        q.kh = 1 + rnd(4);
        q.kw = 1 + rnd(4);
        q.sh = 1 + rnd(3);
        q.sw = 1 + rnd(3);
        q.dh = 1 + rnd(2);
        q.dw = 1 + rnd(2);
        int64_t k[2] = {q.kh, q.kw}, d[2] = {q.dh, q.dw}, s[2] = {q.sh, q.sw};
        int64_t dk[2] = {(q.kh - 1) * q.dh + 1, (q.kw - 1) * q.dw + 1};
        /* PyTorch keeps pads at most half the kernel */
        int64_t pads[4] = {rnd((uint32_t)(dk[0] / 2 + 1)), rnd((uint32_t)(dk[1] / 2 + 1)),
                           rnd((uint32_t)(dk[0] / 2 + 1)), rnd((uint32_t)(dk[1] / 2 + 1))};
        int ceil_mode = (int)rnd(2);
        q.count_include_pad = (int)rnd(2);
        int mode = (int)rnd(8);
        mode = mode < 4 ? mode : 0;
        attrs l = {0};
        add_ints(&l, "kernel_shape", 2, k);
        add_ints(&l, "strides", 2, s);
        if (is_max || rnd(2))
            add_ints(&l, "dilations", 2, d);
        else
            q.dh = q.dw = 1, dk[0] = q.kh, dk[1] = q.kw;
        add_int(&l, "ceil_mode", ceil_mode);
        if (!is_max)
            add_int(&l, "count_include_pad", q.count_include_pad);
        if (mode == 0)
            add_ints(&l, "pads", 4, pads);
        else
            add_str(&l, "auto_pad", modes[mode]);

        int64_t in[2] = {q.h, q.w}, out[2], pb[2], pe[2];
        for (int i = 0; i < 2; i++) {
            pb[i] = mode == 0 ? pads[i] : 0;
            pe[i] = mode == 0 ? pads[i + 2] : 0;
            if (mode == 1 || mode == 2) {
                out[i] = (in[i] + s[i] - 1) / s[i];
                int64_t need = (out[i] - 1) * s[i] + dk[i] - in[i];
                need = need > 0 ? need : 0;
                pb[i] = mode == 1 ? need / 2 : (need + 1) / 2;
                pe[i] = need - pb[i];
            } else {
                out[i] = windows(in[i], pb[i], pe[i], dk[i], s[i], ceil_mode);
                if (out[i] > windows(in[i], pb[i], pe[i], dk[i], s[i], 0))
                    ceil_grew++;
            }
        }
        q.pt = pb[0], q.pl = pb[1], q.pb = pe[0], q.pr = pe[1], q.ho = out[0], q.wo = out[1];

        char what[200];
        snprintf(what, sizeof what,
                 "%s trial %d: x %lldx%lld k %lldx%lld s %lldx%lld d %lldx%lld pads "
                 "%lld,%lld,%lld,%lld ceil %d cip %d %s",
                 is_max ? "MaxPool" : "AveragePool", trial, (long long)q.h, (long long)q.w,
                 (long long)q.kh, (long long)q.kw, (long long)q.sh, (long long)q.sw,
                 (long long)q.dh, (long long)q.dw, (long long)pb[0], (long long)pb[1],
                 (long long)pe[0], (long long)pe[1], ceil_mode, q.count_include_pad, modes[mode]);
        const op_desc *desc = is_max ? &op_desc_MaxPool : &op_desc_AveragePool;
        lego_tensor x, y = {0};
        int64_t xd[4] = {q.n, q.c, q.h, q.w};
        make(&x, LEGO_F32, 4, xd, 1);
        if (q.ho < 1 || q.wo < 1) {
            CHECK_FAILS(run1(desc, &l, &x, &y, 0), LEGO_ERR_SHAPE, "is smaller than the kernel");
            refused++;
        } else {
            lego_status st = run1(desc, &l, &x, &y, 1);
            int64_t want_d[4] = {q.n, q.c, q.ho, q.wo};
            lego_tensor want;
            make(&want, LEGO_F32, 4, want_d, 1);
            if (st.code != LEGO_OK) {
                CHECK_OK(st);
                fprintf(stderr, "  in %s\n", what);
            } else if (!tensor_same_shape(&y, &want)) {
                CHECK(tensor_same_shape(&y, &want));
                fprintf(stderr, "  %s: got %lldx%lld want %lldx%lld\n", what, (long long)y.dims[2],
                        (long long)y.dims[3], (long long)q.ho, (long long)q.wo);
            } else {
                ref_pool(&q, x.data, want.data);
                check_close(y.data, want.data, (long)lego_tensor_numel(&y), 1e-5f, 1e-4f, what);
            }
            tensor_release(&want);
            ran++;
        }
        tensor_release(&x);
        tensor_release(&y);
    }
    CHECK(ran > 300 && refused > 0 && ceil_grew > 20);
}

/* Cases worked by hand from PyTorch's rules. */
static void pool_known(void)
{
    lego_tensor x, y = {0};
    int64_t x5[4] = {1, 1, 5, 5};
    make(&x, LEGO_F32, 4, x5, 1);
    int64_t k2[2] = {2, 2}, s2[2] = {2, 2}, p1[4] = {1, 1, 1, 1};

    /* MaxPool2d(2, 2, ceil_mode=True) on 5x5 gives 3x3 */
    attrs l = {0};
    add_ints(&l, "kernel_shape", 2, k2);
    add_ints(&l, "strides", 2, s2);
    add_int(&l, "ceil_mode", 1);
    CHECK_OK(run1(&op_desc_MaxPool, &l, &x, &y, 0));
    CHECK(y.dims[2] == 3 && y.dims[3] == 3);
    /* with padding 1 the fourth window would start in the end padding: dropped */
    add_ints(&l, "pads", 4, p1);
    CHECK_OK(run1(&op_desc_MaxPool, &l, &x, &y, 0));
    CHECK(y.dims[2] == 3 && y.dims[3] == 3);
    attrs lf = {0};
    add_ints(&lf, "kernel_shape", 2, k2);
    add_ints(&lf, "strides", 2, s2);
    CHECK_OK(run1(&op_desc_MaxPool, &lf, &x, &y, 0));
    CHECK(y.dims[2] == 2 && y.dims[3] == 2);
    tensor_release(&x);

    /* AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=True) on
     * 4x4 ones: 3x3 out; the divisor stops at the end padding */
    int64_t x4[4] = {1, 1, 4, 4}, k3[2] = {3, 3};
    make(&x, LEGO_F32, 4, x4, 1);
    for (int i = 0; i < 16; i++)
        ((float *)x.data)[i] = 1.0f;
    attrs la = {0};
    add_ints(&la, "kernel_shape", 2, k3);
    add_ints(&la, "strides", 2, s2);
    add_ints(&la, "pads", 4, p1);
    add_int(&la, "ceil_mode", 1);
    add_int(&la, "count_include_pad", 1);
    CHECK_OK(run1(&op_desc_AveragePool, &la, &x, &y, 1));
    const float want[9] = {4 / 9.f, 6 / 9.f, 2 / 6.f, 6 / 9.f, 1.f, 3 / 6.f, 2 / 6.f, 3 / 6.f, 1 / 4.f};
    CHECK(y.dims[2] == 3 && y.dims[3] == 3);
    check_close(y.data, want, 9, 1e-6f, 1e-6f, "avgpool ceil count_include_pad on ones");
    tensor_release(&y);
    /* without count_include_pad every window of ones averages to one */
    la.a[4].i = 0;
    CHECK_OK(run1(&op_desc_AveragePool, &la, &x, &y, 1));
    const float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    check_close(y.data, ones, 9, 1e-6f, 1e-6f, "avgpool ceil without count_include_pad");
    tensor_release(&y);

    /* NaN wins in MaxPool, as in PyTorch */
    ((float *)x.data)[5] = NAN;
    ((float *)x.data)[6] = 7.0f;
    attrs lm = {0};
    add_ints(&lm, "kernel_shape", 2, k2);
    add_ints(&lm, "strides", 2, s2);
    CHECK_OK(run1(&op_desc_MaxPool, &lm, &x, &y, 1));
    const float *yv = y.data;
    CHECK(isnan(yv[0]) && yv[1] == 7.0f && yv[2] == 1.0f && yv[3] == 1.0f);
    int64_t flops = 0;
    lego_tensor *outs[1] = {&y};
    CHECK_OK(run(&op_desc_MaxPool, &lm, &x, 1, outs, 0, &flops));
    CHECK(flops == 4 * 4);
    tensor_release(&y);
    tensor_release(&x);
}

// x is (N,C,D...) for any rank >= 3
static void global_pools(void)
{
    for (int rank = 3; rank <= 5; rank++) {
        int64_t dims[5] = {2, 3, 4, 5, 3};
        lego_tensor x, ya = {0}, ym = {0};
        make(&x, LEGO_F32, rank, dims, 1);
        attrs none = {0};
        CHECK_OK(run1(&op_desc_GlobalAveragePool, &none, &x, &ya, 1));
        CHECK_OK(run1(&op_desc_GlobalMaxPool, &none, &x, &ym, 1));
        CHECK(ya.rank == rank && ym.rank == rank && ya.dims[0] == 2 && ya.dims[1] == 3);
        int ones = 1;
        for (int i = 2; i < rank; i++)
            ones &= ya.dims[i] == 1 && ym.dims[i] == 1;
        CHECK(ones);
        int64_t plane = lego_tensor_numel(&x) / 6;
        float want_a[6], want_m[6];
        const float *xv = x.data;
        for (int i = 0; i < 6; i++) {
            double s = 0;
            float m = -INFINITY;
            for (int64_t j = 0; j < plane; j++) {
                s += xv[i * plane + j];
                m = xv[i * plane + j] > m ? xv[i * plane + j] : m;
            }
            want_a[i] = (float)(s / (double)plane);
            want_m[i] = m;
        }
        check_close(ya.data, want_a, 6, 1e-6f, 1e-5f, "GlobalAveragePool");
        check_close(ym.data, want_m, 6, 0, 0, "GlobalMaxPool");
        tensor_release(&x);
        tensor_release(&ya);
        tensor_release(&ym);
    }
}

static void pool_errors(void)
{
    lego_tensor x, y = {0}, idx = {0};
    int64_t xd[4] = {1, 2, 6, 6}, k2[2] = {2, 2};
    make(&x, LEGO_F32, 4, xd, 0);
    attrs none = {0};
    CHECK_FAILS(run1(&op_desc_MaxPool, &none, &x, &y, 0), LEGO_ERR_FORMAT,
                "kernel_shape is required");
    attrs l = {0};
    add_ints(&l, "kernel_shape", 2, k2);
    lego_tensor *outs[2] = {&y, &idx};
    CHECK_FAILS(run(&op_desc_MaxPool, &l, &x, 2, outs, 0, NULL), LEGO_ERR_UNSUPPORTED,
                "the Indices output of MaxPool is not supported");
    outs[1] = NULL; /* an omitted Indices output is fine */
    CHECK_OK(run(&op_desc_MaxPool, &l, &x, 2, outs, 0, NULL));
    CHECK(y.dims[2] == 5 && y.dims[3] == 5);

    attrs l3 = {0};
    int64_t k3[3] = {2, 2, 2};
    add_ints(&l3, "kernel_shape", 3, k3);
    CHECK_FAILS(run1(&op_desc_AveragePool, &l3, &x, &y, 0), LEGO_ERR_FORMAT,
                "kernel_shape has 3 values, expected 2");
    attrs lp = {0};
    int64_t p2[2] = {1, 1};
    add_ints(&lp, "kernel_shape", 2, k2);
    add_ints(&lp, "pads", 2, p2);
    CHECK_FAILS(run1(&op_desc_AveragePool, &lp, &x, &y, 0), LEGO_ERR_FORMAT,
                "pads has 2 values, expected 4");
    attrs la = {0};
    add_ints(&la, "kernel_shape", 2, k2);
    add_str(&la, "auto_pad", "same");
    CHECK_FAILS(run1(&op_desc_AveragePool, &la, &x, &y, 0), LEGO_ERR_FORMAT,
                "auto_pad is 'same'");
    attrs lk = {0};
    int64_t k9[2] = {9, 2};
    add_ints(&lk, "kernel_shape", 2, k9);
    CHECK_FAILS(run1(&op_desc_MaxPool, &lk, &x, &y, 0), LEGO_ERR_SHAPE,
                "input 6x6 padded by [0,0,0,0] is smaller than the kernel 9x2");

    int64_t x5[5] = {1, 2, 4, 4, 4};
    make(&x, LEGO_F32, 5, x5, 0);
    CHECK_FAILS(run1(&op_desc_MaxPool, &l, &x, &y, 0), LEGO_ERR_UNSUPPORTED,
                "only 2-D pooling is supported (NCHW input); input has rank 5 (1x2x4x4x4)");
    int64_t x2[2] = {3, 4};
    make(&x, LEGO_F32, 2, x2, 0);
    CHECK_FAILS(run1(&op_desc_GlobalAveragePool, &none, &x, &y, 0), LEGO_ERR_SHAPE,
                "input has rank 2 (3x4), expected at least 3");
    make(&x, LEGO_I64, 4, xd, 0);
    CHECK_FAILS(run1(&op_desc_GlobalMaxPool, &none, &x, &y, 0), LEGO_ERR_SHAPE,
                "input 0 is int64, expected float32");
}

int main(void)
{
    pool_sweep(0);
    pool_sweep(1);
    pool_known();
    global_pools();
    pool_errors();
    return harness_finish();
}
