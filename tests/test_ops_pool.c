/* test_ops_pool.c - AveragePool, MaxPool and the global pools against
 * direct-loop references, hand-worked PyTorch cases, and error messages; their
 * backward passes against the references' adjoints over the same sweeps,
 * against finite differences for each attribute variant, for ties, and for
 * accumulating into the gradient they are given. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "op_test.h"

extern const op_desc op_desc_AveragePool, op_desc_MaxPool, op_desc_GlobalAveragePool,
    op_desc_GlobalMaxPool;

/* The pools take one input; here they give one output. */
static lego_status pool_run(const op_desc *d, attrs *l, lego_tensor *x, lego_tensor *y, int forward)
{
    return run1(d, l, 1, &x, y, forward, NULL);
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

/* The adjoint of ref_pool: dx += each dy spread over its window (average)
 * or given to the window's first maximum in row-major tap order (max). */
static void ref_pool_backward(const cfg *q, const float *x, const float *dy, float *dx)
{
    for (int64_t nc = 0; nc < q->n * q->c; nc++)
        for (int64_t oh = 0; oh < q->ho; oh++)
            for (int64_t ow = 0; ow < q->wo; ow++) {
                int64_t inside = 0, padded = 0, best = -1;
                for (int64_t ki = 0; ki < q->kh; ki++)
                    for (int64_t kj = 0; kj < q->kw; kj++) {
                        int64_t ih = oh * q->sh - q->pt + ki * q->dh;
                        int64_t iw = ow * q->sw - q->pl + kj * q->dw;
                        if (ih >= -q->pt && ih < q->h + q->pb && iw >= -q->pl && iw < q->w + q->pr)
                            padded++;
                        if (ih < 0 || ih >= q->h || iw < 0 || iw >= q->w)
                            continue;
                        int64_t at = (nc * q->h + ih) * q->w + iw;
                        inside++;
                        if (best < 0 || x[at] > x[best])
                            best = at;
                    }
                float g = dy[(nc * q->ho + oh) * q->wo + ow];
                if (q->is_max) {
                    if (best >= 0)
                        dx[best] += g;
                    continue;
                }
                int64_t count = q->count_include_pad ? padded : inside;
                for (int64_t ki = 0; ki < q->kh; ki++)
                    for (int64_t kj = 0; kj < q->kw; kj++) {
                        int64_t ih = oh * q->sh - q->pt + ki * q->dh;
                        int64_t iw = ow * q->sw - q->pl + kj * q->dw;
                        if (ih >= 0 && ih < q->h && iw >= 0 && iw < q->w)
                            dx[(nc * q->h + ih) * q->w + iw] += g / (float)count;
                    }
            }
}

/* Backward of desc on x against ref_pool_backward, the gradient starting
 * from random values it must be added to. */
static void check_pool_backward(const op_desc *desc, const cfg *q, attrs *l, lego_tensor *x,
                                const char *what)
{
    lego_tensor y = {0}, dy = {0}, dx, want;
    make(&dx, LEGO_F32, 4, x->dims, 1);
    make(&want, LEGO_F32, 4, x->dims, 0);
    CHECK_OK(tensor_alloc(&want));
    memcpy(want.data, dx.data, lego_tensor_bytes(&dx));
    lego_tensor *in[1] = {x}, *din[1] = {&dx};
    CHECK_OK(run_backward(desc, l, 1, 1, in, &y, &dy, din));
    if (dy.data) {
        ref_pool_backward(q, x->data, dy.data, want.data);
        char msg[240];
        snprintf(msg, sizeof msg, "%s: backward", what);
        check_close(dx.data, want.data, (long)lego_tensor_numel(&dx), 1e-5f, 1e-4f, msg);
    }
    tensor_release(&y);
    tensor_release(&dy);
    tensor_release(&dx);
    tensor_release(&want);
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
            CHECK_FAILS(pool_run(desc, &l, &x, &y, 0), LEGO_ERR_SHAPE,
                        "is smaller than the kernel");
            refused++;
        } else {
            lego_status st = pool_run(desc, &l, &x, &y, 1);
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
                check_pool_backward(desc, &q, &l, &x, what);
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
    CHECK_OK(pool_run(&op_desc_MaxPool, &l, &x, &y, 0));
    CHECK(y.dims[2] == 3 && y.dims[3] == 3);
    /* with padding 1 the fourth window would start in the end padding: dropped */
    add_ints(&l, "pads", 4, p1);
    CHECK_OK(pool_run(&op_desc_MaxPool, &l, &x, &y, 0));
    CHECK(y.dims[2] == 3 && y.dims[3] == 3);
    attrs lf = {0};
    add_ints(&lf, "kernel_shape", 2, k2);
    add_ints(&lf, "strides", 2, s2);
    CHECK_OK(pool_run(&op_desc_MaxPool, &lf, &x, &y, 0));
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
    CHECK_OK(pool_run(&op_desc_AveragePool, &la, &x, &y, 1));
    const float want[9] = {4 / 9.f, 6 / 9.f, 2 / 6.f, 6 / 9.f, 1.f, 3 / 6.f, 2 / 6.f, 3 / 6.f, 1 / 4.f};
    CHECK(y.dims[2] == 3 && y.dims[3] == 3);
    check_close(y.data, want, 9, 1e-6f, 1e-6f, "avgpool ceil count_include_pad on ones");
    tensor_release(&y);
    /* without count_include_pad every window of ones averages to one */
    la.a[4].i = 0;
    CHECK_OK(pool_run(&op_desc_AveragePool, &la, &x, &y, 1));
    const float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    check_close(y.data, ones, 9, 1e-6f, 1e-6f, "avgpool ceil without count_include_pad");
    tensor_release(&y);

    /* NaN wins in MaxPool, as in PyTorch */
    ((float *)x.data)[5] = NAN;
    ((float *)x.data)[6] = 7.0f;
    attrs lm = {0};
    add_ints(&lm, "kernel_shape", 2, k2);
    add_ints(&lm, "strides", 2, s2);
    CHECK_OK(pool_run(&op_desc_MaxPool, &lm, &x, &y, 1));
    const float *yv = y.data;
    CHECK(isnan(yv[0]) && yv[1] == 7.0f && yv[2] == 1.0f && yv[3] == 1.0f);
    int64_t flops = 0;
    lego_tensor *xs[1] = {&x};
    CHECK_OK(run1(&op_desc_MaxPool, &lm, 1, xs, &y, 0, &flops));
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
        CHECK_OK(pool_run(&op_desc_GlobalAveragePool, &none, &x, &ya, 1));
        CHECK_OK(pool_run(&op_desc_GlobalMaxPool, &none, &x, &ym, 1));
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
    CHECK_FAILS(pool_run(&op_desc_MaxPool, &none, &x, &y, 0), LEGO_ERR_FORMAT,
                "kernel_shape is required");
    attrs l = {0};
    add_ints(&l, "kernel_shape", 2, k2);
    lego_tensor *xs[1] = {&x}, *outs[2] = {&y, &idx};
    CHECK_FAILS(run(&op_desc_MaxPool, &l, 1, xs, 2, outs, 0, NULL), LEGO_ERR_UNSUPPORTED,
                "the Indices output of MaxPool is not supported");
    outs[1] = NULL; /* an omitted Indices output is fine */
    CHECK_OK(run(&op_desc_MaxPool, &l, 1, xs, 2, outs, 0, NULL));
    CHECK(y.dims[2] == 5 && y.dims[3] == 5);

    attrs l3 = {0};
    int64_t k3[3] = {2, 2, 2};
    add_ints(&l3, "kernel_shape", 3, k3);
    CHECK_FAILS(pool_run(&op_desc_AveragePool, &l3, &x, &y, 0), LEGO_ERR_FORMAT,
                "kernel_shape has 3 values, expected 2");
    attrs lp = {0};
    int64_t p2[2] = {1, 1};
    add_ints(&lp, "kernel_shape", 2, k2);
    add_ints(&lp, "pads", 2, p2);
    CHECK_FAILS(pool_run(&op_desc_AveragePool, &lp, &x, &y, 0), LEGO_ERR_FORMAT,
                "pads has 2 values, expected 4");
    attrs la = {0};
    add_ints(&la, "kernel_shape", 2, k2);
    add_str(&la, "auto_pad", "same");
    CHECK_FAILS(pool_run(&op_desc_AveragePool, &la, &x, &y, 0), LEGO_ERR_FORMAT,
                "auto_pad is 'same'");
    attrs lk = {0};
    int64_t k9[2] = {9, 2};
    add_ints(&lk, "kernel_shape", 2, k9);
    CHECK_FAILS(pool_run(&op_desc_MaxPool, &lk, &x, &y, 0), LEGO_ERR_SHAPE,
                "input 6x6 padded by [0,0,0,0] is smaller than the kernel 9x2");

    int64_t x5[5] = {1, 2, 4, 4, 4};
    make(&x, LEGO_F32, 5, x5, 0);
    CHECK_FAILS(pool_run(&op_desc_MaxPool, &l, &x, &y, 0), LEGO_ERR_UNSUPPORTED,
                "only 2-D pooling is supported (NCHW input); input has rank 5 (1x2x4x4x4)");
    int64_t x2[2] = {3, 4};
    make(&x, LEGO_F32, 2, x2, 0);
    CHECK_FAILS(pool_run(&op_desc_GlobalAveragePool, &none, &x, &y, 0), LEGO_ERR_SHAPE,
                "input has rank 2 (3x4), expected at least 3");
    make(&x, LEGO_I64, 4, xd, 0);
    CHECK_FAILS(pool_run(&op_desc_GlobalMaxPool, &none, &x, &y, 0), LEGO_ERR_SHAPE,
                "input 0 is int64, expected float32");
}

/* ---- backward ----------------------------------------------------------- */

/* x filled with distinct values 0.01 apart in random order, so that no
 * finite-difference step of 1e-3 changes which element of a window wins. */
static void distinct_fill(lego_tensor *x)
{
    float *v = x->data;
    int64_t n = lego_tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(i - n / 2) * 0.01f;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = rnd((uint32_t)(i + 1));
        float t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

typedef struct pool_case {
    const char *what;
    int64_t n, c, h, w, kh, kw, sh, sw, dh, dw;
    int64_t pads[4];
    int ceil_mode, count_include_pad;
    const char *auto_pad; /* NULL: explicit pads */
} pool_case;

static void pool_grads(void)
{
    static const pool_case cases[] = {
        {"2x2 stride 2", 2, 2, 4, 6, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 0, 0, NULL},
        {"3x3 stride 1 overlapping", 1, 2, 5, 4, 3, 3, 1, 1, 1, 1, {0, 0, 0, 0}, 0, 0, NULL},
        {"pads 1", 1, 2, 5, 5, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}, 0, 0, NULL},
        {"pads 1 count_include_pad", 1, 2, 5, 5, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}, 0, 1, NULL},
        {"asymmetric pads", 2, 1, 5, 6, 3, 2, 2, 1, 1, 1, {1, 0, 0, 1}, 0, 0, NULL},
        {"asymmetric pads count_include_pad", 2, 1, 5, 6, 3, 2, 2, 1, 1, 1, {1, 0, 0, 1}, 0, 1,
         NULL},
        {"ceil_mode", 1, 2, 5, 5, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 1, 0, NULL},
        {"ceil_mode pads count_include_pad", 1, 1, 4, 4, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}, 1, 1,
         NULL},
        {"ceil_mode pads", 1, 1, 4, 4, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}, 1, 0, NULL},
        {"ceil_mode strides 3x2", 1, 2, 7, 6, 2, 3, 3, 2, 1, 1, {0, 1, 0, 1}, 1, 1, NULL},
        {"dilation 2", 1, 2, 6, 7, 2, 3, 1, 2, 2, 2, {1, 1, 1, 0}, 0, 0, NULL},
        {"dilation ceil_mode", 1, 1, 7, 7, 2, 2, 2, 2, 2, 1, {1, 0, 1, 1}, 1, 1, NULL},
        {"SAME_UPPER", 1, 2, 5, 6, 2, 3, 2, 2, 1, 1, {0, 0, 0, 0}, 0, 1, "SAME_UPPER"},
        {"SAME_LOWER", 1, 2, 5, 6, 2, 3, 2, 2, 1, 1, {0, 0, 0, 0}, 0, 0, "SAME_LOWER"},
        {"VALID", 1, 2, 5, 6, 2, 2, 2, 2, 1, 1, {1, 1, 1, 1}, 0, 1, "VALID"},
    };
    for (int is_max = 0; is_max < 2; is_max++) {
        const op_desc *desc = is_max ? &op_desc_MaxPool : &op_desc_AveragePool;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const pool_case *k = &cases[i];
            if (is_max && k->count_include_pad)
                continue; /* the same windows as the case before it */
            attrs l = {0};
            int64_t ks[2] = {k->kh, k->kw}, s[2] = {k->sh, k->sw}, d[2] = {k->dh, k->dw};
            add_ints(&l, "kernel_shape", 2, ks);
            add_ints(&l, "strides", 2, s);
            add_ints(&l, "dilations", 2, d);
            add_ints(&l, "pads", 4, k->pads);
            add_int(&l, "ceil_mode", k->ceil_mode);
            if (!is_max)
                add_int(&l, "count_include_pad", k->count_include_pad);
            if (k->auto_pad)
                add_str(&l, "auto_pad", k->auto_pad);
            lego_tensor x;
            int64_t xd[4] = {k->n, k->c, k->h, k->w};
            make(&x, LEGO_F32, 4, xd, 1);
            distinct_fill(&x);
            lego_tensor *in[1] = {&x};
            char what[96];
            snprintf(what, sizeof what, "%s backward, %s", desc->name, k->what);
            gradcheck(desc, &l, 17, 1, in, 1, 1u, 0, 1e-3f, 1e-3f, 1e-3f, 200, what);
            check_accumulates(desc, &l, 1, in, 1u, 0, what);
            tensor_release(&x);
        }
    }
}

/* Ties go to the first maximum in the window, as in PyTorch; a NaN wins. */
static void pool_ties(void)
{
    /* 4x4 of equal values, 2x2 windows at stride 1: each of the 3x3 outputs
     * sends its gradient to its window's top-left element */
    int64_t xd[4] = {1, 1, 4, 4}, k2[2] = {2, 2};
    lego_tensor x, y = {0}, dy = {0}, dx;
    make(&x, LEGO_F32, 4, xd, 1);
    make(&dx, LEGO_F32, 4, xd, 1);
    for (int i = 0; i < 16; i++)
        ((float *)x.data)[i] = 0.5f, ((float *)dx.data)[i] = 0.0f;
    attrs l = {0};
    add_ints(&l, "kernel_shape", 2, k2);
    lego_tensor *in[1] = {&x}, *din[1] = {&dx};
    CHECK_OK(run_backward(&op_desc_MaxPool, &l, 1, 1, in, &y, &dy, din));
    float want[16] = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            want[i * 4 + j] = ((float *)dy.data)[i * 3 + j];
    check_close(dx.data, want, 16, 0, 0, "MaxPool ties go to the first maximum");
    tensor_release(&y);
    tensor_release(&dy);

    /* a NaN in the second window's last tap takes that window's gradient */
    ((float *)x.data)[1 * 4 + 2] = NAN;
    memset(dx.data, 0, sizeof want);
    CHECK_OK(run_backward(&op_desc_MaxPool, &l, 1, 1, in, &y, &dy, din));
    const float *g = dy.data;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            want[i * 4 + j] = g[i * 3 + j];
    /* windows (0,1), (0,2), (1,1) and (1,2) hold the NaN at (1,2) */
    want[1] = 0, want[2] = 0, want[5] = 0, want[6] = g[1] + g[2] + g[4] + g[5];
    check_close(dx.data, want, 16, 1e-6f, 0, "MaxPool routes to a NaN");
    tensor_release(&y);
    tensor_release(&dy);

    /* GlobalMaxPool: the first of equal maxima */
    for (int i = 0; i < 16; i++)
        ((float *)x.data)[i] = i % 5 == 3 ? 2.0f : 0.0f;
    memset(dx.data, 0, sizeof want);
    attrs none = {0};
    CHECK_OK(run_backward(&op_desc_GlobalMaxPool, &none, 0, 1, in, &y, &dy, din));
    memset(want, 0, sizeof want);
    want[3] = ((float *)dy.data)[0];
    check_close(dx.data, want, 16, 0, 0, "GlobalMaxPool ties go to the first maximum");
    tensor_release(&y);
    tensor_release(&dy);
    tensor_release(&dx);
    tensor_release(&x);
}

static void global_grads(void)
{
    for (int rank = 3; rank <= 5; rank++) {
        int64_t dims[5] = {2, 3, 3, 4, 2};
        lego_tensor x;
        make(&x, LEGO_F32, rank, dims, 1);
        distinct_fill(&x);
        lego_tensor *in[1] = {&x};
        attrs none = {0};
        char what[64];
        snprintf(what, sizeof what, "GlobalAveragePool backward, rank %d", rank);
        gradcheck(&op_desc_GlobalAveragePool, &none, 17, 1, in, 1, 1u, 0, 1e-3f, 1e-4f, 1e-3f,
                  200, what);
        check_accumulates(&op_desc_GlobalAveragePool, &none, 1, in, 1u, 0, what);
        snprintf(what, sizeof what, "GlobalMaxPool backward, rank %d", rank);
        gradcheck(&op_desc_GlobalMaxPool, &none, 17, 1, in, 1, 1u, 0, 1e-3f, 1e-4f, 1e-3f, 200,
                  what);
        check_accumulates(&op_desc_GlobalMaxPool, &none, 1, in, 1u, 0, what);
        tensor_release(&x);
    }
}

int main(void)
{
    test_seed(777u);
    pool_sweep(0);
    pool_sweep(1);
    pool_known();
    global_pools();
    pool_errors();
    pool_grads();
    pool_ties();
    global_grads();
    return harness_finish();
}
