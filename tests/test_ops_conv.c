/* test_ops_conv.c - Conv and ConvTranspose against direct-loop references
 * over random sweeps, plus shape inference, flops and error messages. */
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "harness.h"
#include "ops/op.h"

extern const op_desc op_desc_Conv, op_desc_ConvTranspose;

/* registry.c comes with op_error and names every op; until all op files
 * exist these weak stand-ins let this test link. Nothing here looks them up. */
#define WEAK_OP(op) __attribute__((weak)) const op_desc op_desc_##op = {.name = #op};
WEAK_OP(Add) WEAK_OP(Sub) WEAK_OP(Mul) WEAK_OP(Div) WEAK_OP(Pow) WEAK_OP(Sqrt) WEAK_OP(Equal)
WEAK_OP(Where) WEAK_OP(Relu) WEAK_OP(LeakyRelu) WEAK_OP(Clip) WEAK_OP(Sigmoid) WEAK_OP(Tanh)
WEAK_OP(Softmax) WEAK_OP(AveragePool) WEAK_OP(MaxPool) WEAK_OP(GlobalAveragePool)
WEAK_OP(GlobalMaxPool) WEAK_OP(BatchNormalization) WEAK_OP(Gemm) WEAK_OP(MatMul)
WEAK_OP(ReduceMean) WEAK_OP(ReduceMax) WEAK_OP(Reshape) WEAK_OP(Flatten) WEAK_OP(Squeeze)
WEAK_OP(Unsqueeze) WEAK_OP(Transpose) WEAK_OP(Concat) WEAK_OP(Slice) WEAK_OP(Gather)
WEAK_OP(Expand) WEAK_OP(Shape) WEAK_OP(Identity) WEAK_OP(Dropout) WEAK_OP(Constant) WEAK_OP(Cast)
WEAK_OP(ConstantOfShape) WEAK_OP(Pad) WEAK_OP(Resize)

/* ---- small helpers ---------------------------------------------------- */

static uint32_t rng = 12345;
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
    lego_attr *a = &l->a[l->n++];
    *a = (lego_attr){.name = (char *)name, .type = ATTR_INT, .i = v};
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

/* prepare, then (if it worked and forward is set) allocate and run forward. */
static lego_status run(const op_desc *d, attrs *l, int n_in, lego_tensor **in, lego_tensor *out,
                       int forward, int64_t *flops)
{
    attr_list al = {l->n, l->a};
    void *params = calloc(1, d->params_size);
    lego_tensor *outs[1] = {out};
    op_call c = {.attrs = &al, .node_name = "", .opset = 17, .n_in = n_in, .n_out = 1,
                 .in = in, .out = outs, .params = params};
    lego_status st = d->prepare(&c);
    if (st.code == LEGO_OK && flops)
        *flops = d->flops(&c);
    if (st.code == LEGO_OK && forward) {
        st = tensor_alloc(out);
        if (st.code == LEGO_OK)
            d->forward(&c);
    }
    free(params);
    return st;
}

/* ---- references --------------------------------------------------------- */

typedef struct cfg {
    int64_t n, c, h, w, m, kh, kw, sh, sw, dh, dw;
    int64_t pt, pl, pb, pr; /* pads actually applied */
    int64_t group, ho, wo;
} cfg;

// x is (N,C,H,W), w is (M,C/group,kh,kw), b is (M) or NULL, y is (N,M,Ho,Wo)
static void ref_conv(const cfg *q, const float *x, const float *w, const float *b, float *y)
{
    int64_t cg = q->c / q->group, mg = q->m / q->group;
    for (int64_t n = 0; n < q->n; n++)
        for (int64_t m = 0; m < q->m; m++)
            for (int64_t oh = 0; oh < q->ho; oh++)
                for (int64_t ow = 0; ow < q->wo; ow++) {
                    double acc = b ? b[m] : 0;
                    int64_t g = m / mg;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t ki = 0; ki < q->kh; ki++)
                            for (int64_t kj = 0; kj < q->kw; kj++) {
                                int64_t ih = oh * q->sh - q->pt + ki * q->dh;
                                int64_t iw = ow * q->sw - q->pl + kj * q->dw;
                                if (ih < 0 || ih >= q->h || iw < 0 || iw >= q->w)
                                    continue;
                                acc += (double)x[((n * q->c + g * cg + ci) * q->h + ih) * q->w + iw] *
                                       w[((m * cg + ci) * q->kh + ki) * q->kw + kj];
                            }
                    y[((n * q->m + m) * q->ho + oh) * q->wo + ow] = (float)acc;
                }
}

// x is (N,C,H,W), w is (C,M/group,kh,kw), b is (M) or NULL, y is (N,M,Ho,Wo)
static void ref_convt(const cfg *q, const float *x, const float *w, const float *b, float *y)
{
    int64_t cg = q->c / q->group, mg = q->m / q->group, plane = q->ho * q->wo;
    for (int64_t i = 0; i < q->n * q->m * plane; i++)
        y[i] = b ? b[(i / plane) % q->m] : 0;
    for (int64_t n = 0; n < q->n; n++)
        for (int64_t ci = 0; ci < q->c; ci++)
            for (int64_t ih = 0; ih < q->h; ih++)
                for (int64_t iw = 0; iw < q->w; iw++) {
                    float xv = x[((n * q->c + ci) * q->h + ih) * q->w + iw];
                    int64_t g = ci / cg;
                    for (int64_t mo = 0; mo < mg; mo++)
                        for (int64_t ki = 0; ki < q->kh; ki++)
                            for (int64_t kj = 0; kj < q->kw; kj++) {
                                int64_t oh = ih * q->sh - q->pt + ki * q->dh;
                                int64_t ow = iw * q->sw - q->pl + kj * q->dw;
                                if (oh < 0 || oh >= q->ho || ow < 0 || ow >= q->wo)
                                    continue;
                                y[((n * q->m + g * mg + mo) * q->ho + oh) * q->wo + ow] +=
                                    xv * w[((ci * mg + mo) * q->kh + ki) * q->kw + kj];
                            }
                }
}

/* ---- Conv --------------------------------------------------------------- */

/* Run Conv on q (with the attributes in l) and compare with the reference. */
static void check_conv(const char *what, const cfg *q, attrs *l, int bias)
{
    lego_tensor x, w, b, y = {0};
    int64_t xd[4] = {q->n, q->c, q->h, q->w}, wd[4] = {q->m, q->c / q->group, q->kh, q->kw};
    make(&x, LEGO_F32, 4, xd, 1);
    make(&w, LEGO_F32, 4, wd, 1);
    make(&b, LEGO_F32, 1, &q->m, 1);
    lego_tensor *in[3] = {&x, &w, bias ? &b : NULL};
    lego_status st = run(&op_desc_Conv, l, 3, in, &y, 1, NULL);
    if (st.code != LEGO_OK) {
        CHECK_OK(st);
        fprintf(stderr, "  in %s\n", what);
    } else {
        int64_t want[4] = {q->n, q->m, q->ho, q->wo};
        lego_tensor wt;
        make(&wt, LEGO_F32, 4, want, 1);
        CHECK(tensor_same_shape(&y, &wt));
        if (tensor_same_shape(&y, &wt)) {
            ref_conv(q, x.data, w.data, bias ? b.data : NULL, wt.data);
            check_close(y.data, wt.data, (long)lego_tensor_numel(&y), 1e-4f, 1e-3f, what);
        }
        tensor_release(&wt);
    }
    tensor_release(&x);
    tensor_release(&w);
    tensor_release(&b);
    tensor_release(&y);
}

static void conv_sweep(void)
{
    static const char *modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    int ran = 0, refused = 0;
    for (int trial = 0; trial < 400; trial++) {
        cfg q = {0};
        int depthwise = rnd(4) == 0;
        q.group = depthwise ? 1 + rnd(4) : 1 + rnd(3);
        q.c = q.group * (depthwise ? 1 : 1 + rnd(3));
        q.m = q.group * (1 + rnd(depthwise ? 2 : 3));
        q.n = 1 + rnd(2);
        q.h = 1 + rnd(9);
        q.w = 1 + rnd(9);
        q.kh = 1 + rnd(4);
        q.kw = 1 + rnd(4);
        q.sh = 1 + rnd(3);
        q.sw = 1 + rnd(3);
        q.dh = 1 + rnd(2);
        q.dw = 1 + rnd(2);
        int64_t pads[4] = {rnd(3), rnd(3), rnd(3), rnd(3)};
        int mode = rnd(8);
        mode = mode < 4 ? mode : 0;
        if (rnd(6) == 0) { /* the 1x1 path that skips im2col */
            q.kh = q.kw = q.sh = q.sw = 1;
            memset(pads, 0, sizeof pads);
        }
        attrs l = {0};
        int64_t s[2] = {q.sh, q.sw}, d[2] = {q.dh, q.dw}, k[2] = {q.kh, q.kw};
        add_ints(&l, "strides", 2, s);
        add_ints(&l, "dilations", 2, d);
        add_int(&l, "group", q.group);
        if (rnd(2))
            add_ints(&l, "kernel_shape", 2, k);
        if (mode == 0)
            add_ints(&l, "pads", 4, pads);
        else
            add_str(&l, "auto_pad", modes[mode]);

        /* the output size, written as "how many windows fit" */
        int64_t in[2] = {q.h, q.w}, st[2] = {q.sh, q.sw}, out[2], pb[2], pe[2];
        for (int i = 0; i < 2; i++) {
            int64_t dk = (k[i] - 1) * d[i] + 1;
            pb[i] = mode == 0 ? pads[i] : 0;
            pe[i] = mode == 0 ? pads[i + 2] : 0;
            if (mode == 1 || mode == 2) {
                out[i] = 0;
                while (out[i] * st[i] < in[i])
                    out[i]++;
                int64_t need = (out[i] - 1) * st[i] + dk - in[i];
                need = need > 0 ? need : 0;
                pb[i] = mode == 1 ? need / 2 : (need + 1) / 2;
                pe[i] = need - pb[i];
            } else {
                out[i] = 0;
                while (out[i] * st[i] + dk <= in[i] + pb[i] + pe[i])
                    out[i]++;
            }
        }
        q.pt = pb[0];
        q.pl = pb[1];
        q.pb = pe[0];
        q.pr = pe[1];
        q.ho = out[0];
        q.wo = out[1];
        char what[200];
        snprintf(what, sizeof what,
                 "conv trial %d: x %lldx%lldx%lldx%lld m %lld k %lldx%lld s %lldx%lld d %lldx%lld "
                 "pads %lld,%lld,%lld,%lld group %lld %s",
                 trial, (long long)q.n, (long long)q.c, (long long)q.h, (long long)q.w,
                 (long long)q.m, (long long)q.kh, (long long)q.kw, (long long)q.sh, (long long)q.sw,
                 (long long)q.dh, (long long)q.dw, (long long)pb[0], (long long)pb[1],
                 (long long)pe[0], (long long)pe[1], (long long)q.group, modes[mode]);
        if (q.ho < 1 || q.wo < 1) {
            lego_tensor x, w, y = {0};
            int64_t xd[4] = {q.n, q.c, q.h, q.w}, wd[4] = {q.m, q.c / q.group, q.kh, q.kw};
            make(&x, LEGO_F32, 4, xd, 0);
            make(&w, LEGO_F32, 4, wd, 0);
            lego_tensor *ins[2] = {&x, &w};
            CHECK_FAILS(run(&op_desc_Conv, &l, 2, ins, &y, 0, NULL), LEGO_ERR_SHAPE,
                        "smaller than the dilated kernel");
            refused++;
            continue;
        }
        check_conv(what, &q, &l, rnd(2));
        ran++;
    }
    CHECK(ran > 250 && refused > 5); /* the sweep covers both outcomes */
}

/* SAME_* must equal the explicit pads it stands for. */
static void conv_same_pads(void)
{
    /* H=5 k=4 s=1: total pad 3, SAME_UPPER puts 1 before and 2 after */
    cfg q = {.n = 1, .c = 2, .h = 5, .w = 6, .m = 3, .kh = 4, .kw = 3, .sh = 1, .sw = 2, .dh = 1,
             .dw = 1, .pt = 1, .pl = 0, .pb = 2, .pr = 1, .group = 1, .ho = 5, .wo = 3};
    attrs l = {0};
    int64_t s[2] = {1, 2};
    add_ints(&l, "strides", 2, s);
    add_str(&l, "auto_pad", "SAME_UPPER");
    check_conv("SAME_UPPER 5x6 k4x3 s1x2", &q, &l, 1);
    /* SAME_LOWER puts the odd one first: W=6 s2 k3 needs 1, it goes left */
    q.pt = 2;
    q.pb = 1;
    q.pl = 1;
    q.pr = 0;
    attrs l2 = {0};
    add_ints(&l2, "strides", 2, s);
    add_str(&l2, "auto_pad", "SAME_LOWER");
    check_conv("SAME_LOWER 5x6 k4x3 s1x2", &q, &l2, 0);
}

/* A 1x3x224x224 stem: shapes, flops; and a map large enough to tile im2col. */
static void conv_shapes_and_tiles(void)
{
    lego_tensor x, w, y = {0};
    int64_t xd[4] = {1, 3, 224, 224}, wd[4] = {64, 3, 7, 7};
    make(&x, LEGO_F32, 4, xd, 0);
    make(&w, LEGO_F32, 4, wd, 0);
    attrs l = {0};
    int64_t s[2] = {2, 2}, p[4] = {3, 3, 3, 3};
    add_ints(&l, "strides", 2, s);
    add_ints(&l, "pads", 4, p);
    lego_tensor *in[2] = {&x, &w};
    int64_t flops = 0;
    CHECK_OK(run(&op_desc_Conv, &l, 2, in, &y, 0, &flops));
    CHECK(y.rank == 4 && y.dims[0] == 1 && y.dims[1] == 64 && y.dims[2] == 112 &&
          y.dims[3] == 112 && y.dtype == LEGO_F32);
    CHECK(flops == 2LL * 64 * 112 * 112 * 3 * 7 * 7);

    /* 64 input channels x 3x3 over 70x70 outputs: more columns than the budget */
    cfg q = {.n = 1, .c = 64, .h = 70, .w = 70, .m = 4, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
             .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .group = 1, .ho = 70, .wo = 70};
    attrs l2 = {0};
    int64_t p1[4] = {1, 1, 1, 1};
    add_ints(&l2, "pads", 4, p1);
    check_conv("tiled im2col 64x70x70 k3", &q, &l2, 1);
}

/* prepare may run again on the same params when the input shape changes. */
static void conv_reprepare(void)
{
    attrs l = {0};
    attr_list al = {l.n, l.a};
    void *params = calloc(1, op_desc_Conv.params_size);
    lego_tensor x1, x2, w, y = {0};
    int64_t d1[4] = {1, 2, 9, 9}, d2[4] = {2, 2, 4, 5}, wd[4] = {3, 2, 2, 2};
    make(&x1, LEGO_F32, 4, d1, 1);
    make(&x2, LEGO_F32, 4, d2, 1);
    make(&w, LEGO_F32, 4, wd, 1);
    lego_tensor *in[2] = {&x1, &w}, *out[1] = {&y};
    op_call c = {.attrs = &al, .node_name = "", .opset = 17, .n_in = 2, .n_out = 1, .in = in,
                 .out = out, .params = params};
    CHECK_OK(op_desc_Conv.prepare(&c));
    CHECK(y.dims[2] == 8 && y.dims[3] == 8);
    in[0] = &x2;
    CHECK_OK(op_desc_Conv.prepare(&c));
    CHECK(y.dims[0] == 2 && y.dims[2] == 3 && y.dims[3] == 4);
    CHECK_OK(tensor_alloc(&y));
    op_desc_Conv.forward(&c);
    cfg q = {.n = 2, .c = 2, .h = 4, .w = 5, .m = 3, .kh = 2, .kw = 2, .sh = 1, .sw = 1, .dh = 1,
             .dw = 1, .group = 1, .ho = 3, .wo = 4};
    float want[2 * 3 * 3 * 4];
    ref_conv(&q, x2.data, w.data, NULL, want);
    check_close(y.data, want, 2 * 3 * 3 * 4, 1e-4f, 1e-3f, "conv after a second prepare");
    tensor_release(&x1);
    tensor_release(&x2);
    tensor_release(&w);
    tensor_release(&y);
    free(params);
}

static void conv_errors(void)
{
    lego_tensor x, w, b, y = {0}, xi;
    int64_t xd[4] = {1, 3, 8, 8}, wd[4] = {4, 16, 3, 3}, bd = 5;
    make(&x, LEGO_F32, 4, xd, 0);
    make(&w, LEGO_F32, 4, wd, 0);
    make(&b, LEGO_F32, 1, &bd, 0);
    lego_tensor *in[3] = {&x, &w, NULL};
    attrs none = {0};
    CHECK_FAILS(run(&op_desc_Conv, &none, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "weight has 16 input channels per group, input has 3 channels and group 1");

    wd[1] = 3;
    make(&w, LEGO_F32, 4, wd, 0);
    attrs g2 = {0};
    add_int(&g2, "group", 3);
    CHECK_FAILS(run(&op_desc_Conv, &g2, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "weight has 3 input channels per group, input has 3 channels and group 3");
    wd[1] = 1;
    make(&w, LEGO_F32, 4, wd, 0);
    CHECK_FAILS(run(&op_desc_Conv, &g2, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "weight has 4 output channels, not divisible by group 3");
    wd[1] = 3;
    make(&w, LEGO_F32, 4, wd, 0);

    in[2] = &b;
    CHECK_FAILS(run(&op_desc_Conv, &none, 3, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "bias has shape 5, expected 4");
    in[2] = NULL;

    attrs l = {0};
    int64_t p3[3] = {1, 1, 1};
    add_ints(&l, "pads", 3, p3);
    CHECK_FAILS(run(&op_desc_Conv, &l, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "pads has 3 values, expected 4");
    attrs lp = {0};
    int64_t pneg[4] = {0, -1, 0, 0};
    add_ints(&lp, "pads", 4, pneg);
    CHECK_FAILS(run(&op_desc_Conv, &lp, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "pads[1] is -1, must be at least 0");
    attrs ls = {0};
    int64_t s0[2] = {1, 0};
    add_ints(&ls, "strides", 2, s0);
    CHECK_FAILS(run(&op_desc_Conv, &ls, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "strides[1] is 0, must be at least 1");
    attrs lk = {0};
    int64_t k5[2] = {5, 5};
    add_ints(&lk, "kernel_shape", 2, k5);
    CHECK_FAILS(run(&op_desc_Conv, &lk, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "kernel_shape is 5x5 but the weight is 3x3");
    attrs la = {0};
    add_str(&la, "auto_pad", "SAME");
    CHECK_FAILS(run(&op_desc_Conv, &la, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "auto_pad is 'SAME'");
    attrs lg = {0};
    add_int(&lg, "group", 0);
    CHECK_FAILS(run(&op_desc_Conv, &lg, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "group is 0, must be at least 1");
    attrs lt = {0};
    add_str(&lt, "strides", "2");
    CHECK_FAILS(run(&op_desc_Conv, &lt, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "attribute 'strides' should be a list of ints");

    int64_t x3d[3] = {1, 3, 8};
    make(&xi, LEGO_F32, 3, x3d, 0);
    in[0] = &xi;
    CHECK_FAILS(run(&op_desc_Conv, &none, 2, in, &y, 0, NULL), LEGO_ERR_UNSUPPORTED,
                "only 2-D convolution is supported (NCHW input); input has rank 3 (1x3x8)");
    make(&xi, LEGO_I64, 4, xd, 0);
    CHECK_FAILS(run(&op_desc_Conv, &none, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "input 0 is int64, expected float32");
    in[0] = &x;
    int64_t small[4] = {1, 3, 2, 2};
    make(&xi, LEGO_F32, 4, small, 0);
    in[0] = &xi;
    CHECK_FAILS(run(&op_desc_Conv, &none, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "input 2x2 padded by [0,0,0,0] is smaller than the dilated kernel 3x3");
}

/* ---- ConvTranspose ------------------------------------------------------ */

static void check_convt(const char *what, const cfg *q, attrs *l, int bias)
{
    lego_tensor x, w, b, y = {0};
    int64_t xd[4] = {q->n, q->c, q->h, q->w}, wd[4] = {q->c, q->m / q->group, q->kh, q->kw};
    make(&x, LEGO_F32, 4, xd, 1);
    make(&w, LEGO_F32, 4, wd, 1);
    make(&b, LEGO_F32, 1, &q->m, 1);
    lego_tensor *in[3] = {&x, &w, bias ? &b : NULL};
    lego_status st = run(&op_desc_ConvTranspose, l, 3, in, &y, 1, NULL);
    if (st.code != LEGO_OK) {
        CHECK_OK(st);
        fprintf(stderr, "  in %s\n", what);
    } else {
        int64_t want[4] = {q->n, q->m, q->ho, q->wo};
        lego_tensor wt;
        make(&wt, LEGO_F32, 4, want, 1);
        CHECK(tensor_same_shape(&y, &wt));
        if (tensor_same_shape(&y, &wt)) {
            ref_convt(q, x.data, w.data, bias ? b.data : NULL, wt.data);
            check_close(y.data, wt.data, (long)lego_tensor_numel(&y), 1e-4f, 1e-3f, what);
        } else {
            fprintf(stderr, "  %s: got %lldx%lld, want %lldx%lld\n", what, (long long)y.dims[2],
                    (long long)y.dims[3], (long long)q->ho, (long long)q->wo);
        }
        tensor_release(&wt);
    }
    tensor_release(&x);
    tensor_release(&w);
    tensor_release(&b);
    tensor_release(&y);
}

static void convt_sweep(void)
{
    int ran = 0;
    for (int trial = 0; trial < 300; trial++) {
        cfg q = {0};
        int depthwise = rnd(4) == 0;
        q.group = depthwise ? 1 + rnd(4) : 1 + rnd(3);
        q.c = q.group * (depthwise ? 1 : 1 + rnd(3));
        q.m = q.group * (1 + rnd(depthwise ? 2 : 3));
        q.n = 1 + rnd(2);
        q.h = 1 + rnd(6);
        q.w = 1 + rnd(6);
        q.kh = 1 + rnd(4);
        q.kw = 1 + rnd(4);
        q.sh = 1 + rnd(3);
        q.sw = 1 + rnd(3);
        q.dh = 1 + rnd(2);
        q.dw = 1 + rnd(2);
        int64_t pads[4] = {rnd(3), rnd(3), rnd(3), rnd(3)};
        /* PyTorch keeps output_padding below stride or dilation */
        int64_t op[2] = {rnd((uint32_t)(q.sh > q.dh ? q.sh : q.dh)),
                         rnd((uint32_t)(q.sw > q.dw ? q.sw : q.dw))};
        if (rnd(6) == 0) {
            q.kh = q.kw = q.sh = q.sw = 1;
            memset(pads, 0, sizeof pads);
            op[0] = op[1] = 0;
        }
        q.pt = pads[0];
        q.pl = pads[1];
        q.pb = pads[2];
        q.pr = pads[3];
        q.ho = (q.h - 1) * q.sh + op[0] + (q.kh - 1) * q.dh + 1 - q.pt - q.pb;
        q.wo = (q.w - 1) * q.sw + op[1] + (q.kw - 1) * q.dw + 1 - q.pl - q.pr;
        attrs l = {0};
        int64_t s[2] = {q.sh, q.sw}, d[2] = {q.dh, q.dw};
        add_ints(&l, "strides", 2, s);
        add_ints(&l, "dilations", 2, d);
        add_ints(&l, "pads", 4, pads);
        add_ints(&l, "output_padding", 2, op);
        add_int(&l, "group", q.group);
        char what[200];
        snprintf(what, sizeof what,
                 "convT trial %d: x %lldx%lldx%lldx%lld m %lld k %lldx%lld s %lldx%lld d "
                 "%lldx%lld pads %lld,%lld,%lld,%lld op %lld,%lld group %lld",
                 trial, (long long)q.n, (long long)q.c, (long long)q.h, (long long)q.w,
                 (long long)q.m, (long long)q.kh, (long long)q.kw, (long long)q.sh, (long long)q.sw,
                 (long long)q.dh, (long long)q.dw, (long long)pads[0], (long long)pads[1],
                 (long long)pads[2], (long long)pads[3], (long long)op[0], (long long)op[1],
                 (long long)q.group);
        if (q.ho < 1 || q.wo < 1) {
            lego_tensor x, w, y = {0};
            int64_t xd[4] = {q.n, q.c, q.h, q.w}, wd[4] = {q.c, q.m / q.group, q.kh, q.kw};
            make(&x, LEGO_F32, 4, xd, 0);
            make(&w, LEGO_F32, 4, wd, 0);
            lego_tensor *ins[2] = {&x, &w};
            CHECK_FAILS(run(&op_desc_ConvTranspose, &l, 2, ins, &y, 0, NULL), LEGO_ERR_SHAPE,
                        "leave an empty output");
            continue;
        }
        check_convt(what, &q, &l, rnd(2));
        ran++;
    }
    CHECK(ran > 250);
}

static void convt_output_shape(void)
{
    /* H=4 s2 k3: the full output is 9. Asking for 8 trims one pad at the start
     * (the odd pad goes first outside SAME_UPPER); asking for 10 adds a row at
     * the end that only the bias reaches. */
    cfg q = {.n = 1, .c = 2, .h = 4, .w = 3, .m = 3, .kh = 3, .kw = 2, .sh = 2, .sw = 1,
             .dh = 1, .dw = 1, .group = 1};
    int64_t s[2] = {2, 1};
    attrs l = {0};
    int64_t os[2] = {8, 6};
    add_ints(&l, "strides", 2, s);
    add_ints(&l, "output_shape", 2, os);
    q.ho = 8;
    q.wo = 6;
    q.pt = 1;
    q.pl = 0;
    check_convt("output_shape 8x6", &q, &l, 1);

    attrs l2 = {0};
    int64_t os4[4] = {1, 3, 8, 6};
    add_ints(&l2, "strides", 2, s);
    add_ints(&l2, "output_shape", 4, os4);
    add_str(&l2, "auto_pad", "SAME_UPPER");
    q.pt = 0; /* SAME_UPPER: the odd pad at the end */
    check_convt("output_shape 1x3x8x6 SAME_UPPER", &q, &l2, 1);

    /* SAME_UPPER without output_shape: the output is input*stride */
    attrs l3 = {0};
    add_ints(&l3, "strides", 2, s);
    add_str(&l3, "auto_pad", "SAME_UPPER");
    check_convt("SAME_UPPER 4x3 -> 8x3", &(cfg){.n = 1, .c = 2, .h = 4, .w = 3, .m = 3, .kh = 3,
                                                .kw = 2, .sh = 2, .sw = 1, .dh = 1, .dw = 1,
                                                .group = 1, .ho = 8, .wo = 3, .pt = 0, .pl = 0},
                &l3, 0);

    attrs l4 = {0};
    int64_t big[2] = {10, 4};
    add_ints(&l4, "strides", 2, s);
    add_ints(&l4, "output_shape", 2, big);
    q.ho = 10;
    q.wo = 4;
    q.pt = 0;
    q.pl = 0;
    check_convt("output_shape 10x4 (beyond the kernel's reach)", &q, &l4, 1);

    /* a map large enough to tile the columns (64*3*3 rows, 4096 positions) */
    cfg t = {.n = 1, .c = 3, .h = 64, .w = 64, .m = 64, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
             .dh = 1, .dw = 1, .pt = 1, .pl = 1, .group = 1, .ho = 64, .wo = 64};
    attrs l5 = {0};
    int64_t p1[4] = {1, 1, 1, 1};
    add_ints(&l5, "pads", 4, p1);
    check_convt("tiled col2im 3x64x64 -> 64", &t, &l5, 1);

    lego_tensor x, w, y = {0};
    int64_t xd[4] = {2, 8, 5, 5}, wd[4] = {8, 2, 4, 4};
    make(&x, LEGO_F32, 4, xd, 0);
    make(&w, LEGO_F32, 4, wd, 0);
    attrs l6 = {0};
    int64_t s2[2] = {2, 2}, p[4] = {1, 1, 1, 1};
    add_ints(&l6, "strides", 2, s2);
    add_ints(&l6, "pads", 4, p);
    add_int(&l6, "group", 2);
    lego_tensor *in[2] = {&x, &w};
    int64_t flops = 0;
    CHECK_OK(run(&op_desc_ConvTranspose, &l6, 2, in, &y, 0, &flops));
    CHECK(y.dims[0] == 2 && y.dims[1] == 4 && y.dims[2] == 10 && y.dims[3] == 10);
    CHECK(flops == 2LL * 2 * 8 * 5 * 5 * 2 * 4 * 4);
}

static void convt_errors(void)
{
    lego_tensor x, w, y = {0};
    int64_t xd[4] = {1, 4, 5, 5}, wd[4] = {3, 2, 3, 3};
    make(&x, LEGO_F32, 4, xd, 0);
    make(&w, LEGO_F32, 4, wd, 0);
    lego_tensor *in[2] = {&x, &w};
    attrs none = {0};
    CHECK_FAILS(run(&op_desc_ConvTranspose, &none, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "weight has 3 input channels, input has 4 channels");
    wd[0] = 4;
    make(&w, LEGO_F32, 4, wd, 0);
    attrs g = {0};
    add_int(&g, "group", 3);
    CHECK_FAILS(run(&op_desc_ConvTranspose, &g, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "input has 4 channels, not divisible by group 3");
    attrs o = {0};
    int64_t os[3] = {1, 2, 3};
    add_ints(&o, "output_shape", 3, os);
    CHECK_FAILS(run(&op_desc_ConvTranspose, &o, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "output_shape has 3 values, expected 2");
    attrs op = {0};
    int64_t opad[2] = {0, -1};
    add_ints(&op, "output_padding", 2, opad);
    CHECK_FAILS(run(&op_desc_ConvTranspose, &op, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "output_padding[1] is -1");
    attrs p = {0};
    int64_t pads[4] = {4, 0, 4, 0};
    add_ints(&p, "pads", 4, pads);
    CHECK_FAILS(run(&op_desc_ConvTranspose, &p, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "leave an empty output (-1x7) for input 5x5");
    int64_t x5[5] = {1, 4, 2, 2, 2};
    make(&x, LEGO_F32, 5, x5, 0);
    CHECK_FAILS(run(&op_desc_ConvTranspose, &none, 2, in, &y, 0, NULL), LEGO_ERR_UNSUPPORTED,
                "only 2-D convolution");
}

int main(void)
{
    conv_sweep();
    conv_same_pads();
    conv_shapes_and_tiles();
    conv_reprepare();
    conv_errors();
    convt_sweep();
    convt_output_shape();
    convt_errors();
    return harness_finish();
}
