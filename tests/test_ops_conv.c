/* test_ops_conv.c - Conv and ConvTranspose against direct-loop references
 * over random sweeps, plus shape inference, flops and error messages; their
 * backward passes against finite differences for every attribute variant,
 * against direct-loop references over random sweeps (tiled columns
 * included), and for accumulating into the gradients they are given. */
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "op_test.h"

extern const op_desc op_desc_Conv, op_desc_ConvTranspose;

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

/* The adjoints of ref_conv and ref_convt: the same loops, each multiply-add
 * y += x*w sending dy back to x and w. dx, dw, db (NULL to skip) are added to. */
static void ref_conv_backward(const cfg *q, const float *x, const float *w, const float *dy,
                              float *dx, float *dw, float *db)
{
    int64_t cg = q->c / q->group, mg = q->m / q->group;
    for (int64_t n = 0; n < q->n; n++)
        for (int64_t m = 0; m < q->m; m++)
            for (int64_t oh = 0; oh < q->ho; oh++)
                for (int64_t ow = 0; ow < q->wo; ow++) {
                    float g = dy[((n * q->m + m) * q->ho + oh) * q->wo + ow];
                    if (db)
                        db[m] += g;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t ki = 0; ki < q->kh; ki++)
                            for (int64_t kj = 0; kj < q->kw; kj++) {
                                int64_t ih = oh * q->sh - q->pt + ki * q->dh;
                                int64_t iw = ow * q->sw - q->pl + kj * q->dw;
                                if (ih < 0 || ih >= q->h || iw < 0 || iw >= q->w)
                                    continue;
                                int64_t xc = n * q->c + m / mg * cg + ci;
                                int64_t xi = (xc * q->h + ih) * q->w + iw;
                                int64_t wi = ((m * cg + ci) * q->kh + ki) * q->kw + kj;
                                if (dx)
                                    dx[xi] += g * w[wi];
                                if (dw)
                                    dw[wi] += g * x[xi];
                            }
                }
}

static void ref_convt_backward(const cfg *q, const float *x, const float *w, const float *dy,
                               float *dx, float *dw, float *db)
{
    int64_t cg = q->c / q->group, mg = q->m / q->group, plane = q->ho * q->wo;
    if (db)
        for (int64_t i = 0; i < q->n * q->m * plane; i++)
            db[(i / plane) % q->m] += dy[i];
    for (int64_t n = 0; n < q->n; n++)
        for (int64_t ci = 0; ci < q->c; ci++)
            for (int64_t ih = 0; ih < q->h; ih++)
                for (int64_t iw = 0; iw < q->w; iw++) {
                    int64_t xi = ((n * q->c + ci) * q->h + ih) * q->w + iw;
                    for (int64_t mo = 0; mo < mg; mo++)
                        for (int64_t ki = 0; ki < q->kh; ki++)
                            for (int64_t kj = 0; kj < q->kw; kj++) {
                                int64_t oh = ih * q->sh - q->pt + ki * q->dh;
                                int64_t ow = iw * q->sw - q->pl + kj * q->dw;
                                if (oh < 0 || oh >= q->ho || ow < 0 || ow >= q->wo)
                                    continue;
                                float g = dy[((n * q->m + ci / cg * mg + mo) * q->ho + oh) * q->wo +
                                             ow];
                                int64_t wi = ((ci * mg + mo) * q->kh + ki) * q->kw + kj;
                                if (dx)
                                    dx[xi] += g * w[wi];
                                if (dw)
                                    dw[wi] += g * x[xi];
                            }
                }
}

/* ---- Conv --------------------------------------------------------------- */

/* x (N,C,H,W) and the weight for q: (M,C/group,kh,kw) for Conv, (C,M/group,kh,kw)
 * for ConvTranspose; with alloc, filled with random values. */
static void make_xw(const op_desc *d, const cfg *q, int alloc, lego_tensor *x, lego_tensor *w)
{
    int t = d == &op_desc_ConvTranspose;
    int64_t xd[4] = {q->n, q->c, q->h, q->w};
    int64_t wd[4] = {t ? q->c : q->m, (t ? q->m : q->c) / q->group, q->kh, q->kw};
    make(x, LEGO_F32, 4, xd, alloc);
    make(w, LEGO_F32, 4, wd, alloc);
}

/* Run Conv or ConvTranspose (d) on q, with the attributes in l, and compare
 * with the reference. */
static void check_conv(const op_desc *d, const char *what, const cfg *q, attrs *l, int bias)
{
    lego_tensor x, w, b, y = {0};
    make_xw(d, q, 1, &x, &w);
    make(&b, LEGO_F32, 1, &q->m, 1);
    lego_tensor *in[3] = {&x, &w, bias ? &b : NULL};
    lego_status st = run1(d, l, 3, in, &y, 1, NULL);
    if (st.code != LEGO_OK) {
        CHECK_OK(st);
        fprintf(stderr, "  in %s\n", what);
    } else {
        int64_t want[4] = {q->n, q->m, q->ho, q->wo};
        lego_tensor wt;
        make(&wt, LEGO_F32, 4, want, 1);
        CHECK(tensor_same_shape(&y, &wt));
        if (tensor_same_shape(&y, &wt)) {
            if (d == &op_desc_ConvTranspose)
                ref_convt(q, x.data, w.data, bias ? b.data : NULL, wt.data);
            else
                ref_conv(q, x.data, w.data, bias ? b.data : NULL, wt.data);
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

/* Random groups (a quarter depthwise), channels, H and W up to max_hw, kernel,
 * strides and dilations; the pads and the output size are left at zero. */
static void random_cfg(cfg *q, uint32_t max_hw)
{
    *q = (cfg){0};
    int depthwise = rnd(4) == 0;
    q->group = depthwise ? 1 + rnd(4) : 1 + rnd(3);
    q->c = q->group * (depthwise ? 1 : 1 + rnd(3));
    q->m = q->group * (1 + rnd(depthwise ? 2 : 3));
    q->n = 1 + rnd(2);
    q->h = 1 + rnd(max_hw);
    q->w = 1 + rnd(max_hw);
    q->kh = 1 + rnd(4);
    q->kw = 1 + rnd(4);
    q->sh = 1 + rnd(3);
    q->sw = 1 + rnd(3);
    q->dh = 1 + rnd(2);
    q->dw = 1 + rnd(2);
}

/* A random Conv case for the sweeps: q (pads and output size filled in as
 * "how many windows fit"), its attributes in l, and a description. */
static void random_conv(cfg *q, attrs *l, char *what, size_t what_size, int trial)
{
    static const char *modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    random_cfg(q, 9);
    int64_t pads[4] = {rnd(3), rnd(3), rnd(3), rnd(3)};
    int mode = rnd(8);
    mode = mode < 4 ? mode : 0;
    if (rnd(6) == 0) { /* the 1x1 path that skips im2col */
        q->kh = q->kw = q->sh = q->sw = 1;
        memset(pads, 0, sizeof pads);
    }
    *l = (attrs){0};
    int64_t s[2] = {q->sh, q->sw}, d[2] = {q->dh, q->dw}, k[2] = {q->kh, q->kw};
    add_ints(l, "strides", 2, s);
    add_ints(l, "dilations", 2, d);
    add_int(l, "group", q->group);
    if (rnd(2))
        add_ints(l, "kernel_shape", 2, k);
    if (mode == 0)
        add_ints(l, "pads", 4, pads);
    else
        add_str(l, "auto_pad", modes[mode]);

    int64_t in[2] = {q->h, q->w}, out[2], pb[2], pe[2];
    for (int i = 0; i < 2; i++) {
        int64_t dk = (k[i] - 1) * d[i] + 1;
        pb[i] = mode == 0 ? pads[i] : 0;
        pe[i] = mode == 0 ? pads[i + 2] : 0;
        if (mode == 1 || mode == 2) {
            out[i] = 0;
            while (out[i] * s[i] < in[i])
                out[i]++;
            int64_t need = (out[i] - 1) * s[i] + dk - in[i];
            need = need > 0 ? need : 0;
            pb[i] = mode == 1 ? need / 2 : (need + 1) / 2;
            pe[i] = need - pb[i];
        } else {
            out[i] = 0;
            while (out[i] * s[i] + dk <= in[i] + pb[i] + pe[i])
                out[i]++;
        }
    }
    q->pt = pb[0];
    q->pl = pb[1];
    q->pb = pe[0];
    q->pr = pe[1];
    q->ho = out[0];
    q->wo = out[1];
    snprintf(what, what_size,
             "conv trial %d: x %lldx%lldx%lldx%lld m %lld k %lldx%lld s %lldx%lld d %lldx%lld "
             "pads %lld,%lld,%lld,%lld group %lld %s",
             trial, (long long)q->n, (long long)q->c, (long long)q->h, (long long)q->w,
             (long long)q->m, (long long)q->kh, (long long)q->kw, (long long)q->sh,
             (long long)q->sw, (long long)q->dh, (long long)q->dw, (long long)pb[0],
             (long long)pb[1], (long long)pe[0], (long long)pe[1], (long long)q->group,
             modes[mode]);
}

static void conv_sweep(void)
{
    int ran = 0, refused = 0;
    for (int trial = 0; trial < 400; trial++) {
        cfg q;
        attrs l;
        char what[200];
        random_conv(&q, &l, what, sizeof what, trial);
        if (q.ho < 1 || q.wo < 1) {
            lego_tensor x, w, y = {0};
            make_xw(&op_desc_Conv, &q, 0, &x, &w);
            lego_tensor *ins[2] = {&x, &w};
            CHECK_FAILS(run1(&op_desc_Conv, &l, 2, ins, &y, 0, NULL), LEGO_ERR_SHAPE,
                        "smaller than the dilated kernel");
            refused++;
            continue;
        }
        check_conv(&op_desc_Conv, what, &q, &l, rnd(2));
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
    check_conv(&op_desc_Conv, "SAME_UPPER 5x6 k4x3 s1x2", &q, &l, 1);
    /* SAME_LOWER puts the odd one first: W=6 s2 k3 needs 1, it goes left */
    q.pt = 2;
    q.pb = 1;
    q.pl = 1;
    q.pr = 0;
    attrs l2 = {0};
    add_ints(&l2, "strides", 2, s);
    add_str(&l2, "auto_pad", "SAME_LOWER");
    check_conv(&op_desc_Conv, "SAME_LOWER 5x6 k4x3 s1x2", &q, &l2, 0);
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
    CHECK_OK(run1(&op_desc_Conv, &l, 2, in, &y, 0, &flops));
    CHECK(y.rank == 4 && y.dims[0] == 1 && y.dims[1] == 64 && y.dims[2] == 112 &&
          y.dims[3] == 112 && y.dtype == LEGO_F32);
    CHECK(flops == 2LL * 64 * 112 * 112 * 3 * 7 * 7);

    /* 64 input channels x 3x3 over 70x70 outputs: more columns than the budget */
    cfg q = {.n = 1, .c = 64, .h = 70, .w = 70, .m = 4, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
             .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .group = 1, .ho = 70, .wo = 70};
    attrs l2 = {0};
    int64_t p1[4] = {1, 1, 1, 1};
    add_ints(&l2, "pads", 4, p1);
    check_conv(&op_desc_Conv, "tiled im2col 64x70x70 k3", &q, &l2, 1);
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
    CHECK_FAILS(run1(&op_desc_Conv, &none, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "weight has 16 input channels per group, input has 3 channels and group 1");

    wd[1] = 3;
    make(&w, LEGO_F32, 4, wd, 0);
    attrs g2 = {0};
    add_int(&g2, "group", 3);
    CHECK_FAILS(run1(&op_desc_Conv, &g2, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "weight has 3 input channels per group, input has 3 channels and group 3");
    wd[1] = 1;
    make(&w, LEGO_F32, 4, wd, 0);
    CHECK_FAILS(run1(&op_desc_Conv, &g2, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "weight has 4 output channels, not divisible by group 3");
    wd[1] = 3;
    make(&w, LEGO_F32, 4, wd, 0);

    in[2] = &b;
    CHECK_FAILS(run1(&op_desc_Conv, &none, 3, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "bias has shape 5, expected 4");
    in[2] = NULL;

    attrs l = {0};
    int64_t p3[3] = {1, 1, 1};
    add_ints(&l, "pads", 3, p3);
    CHECK_FAILS(run1(&op_desc_Conv, &l, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "pads has 3 values, expected 4");
    attrs lp = {0};
    int64_t pneg[4] = {0, -1, 0, 0};
    add_ints(&lp, "pads", 4, pneg);
    CHECK_FAILS(run1(&op_desc_Conv, &lp, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "pads[1] is -1, must be at least 0");
    attrs ls = {0};
    int64_t s0[2] = {1, 0};
    add_ints(&ls, "strides", 2, s0);
    CHECK_FAILS(run1(&op_desc_Conv, &ls, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "strides[1] is 0, must be at least 1");
    attrs lk = {0};
    int64_t k5[2] = {5, 5};
    add_ints(&lk, "kernel_shape", 2, k5);
    CHECK_FAILS(run1(&op_desc_Conv, &lk, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "kernel_shape is 5x5 but the weight is 3x3");
    attrs la = {0};
    add_str(&la, "auto_pad", "SAME");
    CHECK_FAILS(run1(&op_desc_Conv, &la, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "auto_pad is 'SAME'");
    attrs lg = {0};
    add_int(&lg, "group", 0);
    CHECK_FAILS(run1(&op_desc_Conv, &lg, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "group is 0, must be at least 1");
    attrs lt = {0};
    add_str(&lt, "strides", "2");
    CHECK_FAILS(run1(&op_desc_Conv, &lt, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "attribute 'strides' should be a list of ints");

    int64_t x3d[3] = {1, 3, 8};
    make(&xi, LEGO_F32, 3, x3d, 0);
    in[0] = &xi;
    CHECK_FAILS(run1(&op_desc_Conv, &none, 2, in, &y, 0, NULL), LEGO_ERR_UNSUPPORTED,
                "only 2-D convolution is supported (NCHW input); input has rank 3 (1x3x8)");
    make(&xi, LEGO_I64, 4, xd, 0);
    CHECK_FAILS(run1(&op_desc_Conv, &none, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "input 0 is int64, expected float32");
    in[0] = &x;
    int64_t small[4] = {1, 3, 2, 2};
    make(&xi, LEGO_F32, 4, small, 0);
    in[0] = &xi;
    CHECK_FAILS(run1(&op_desc_Conv, &none, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "input 2x2 padded by [0,0,0,0] is smaller than the dilated kernel 3x3");
}

/* ---- ConvTranspose ------------------------------------------------------ */

/* A random ConvTranspose case for the sweeps: q with its explicit pads and
 * output size, its attributes in l, and a description. */
static void random_convt(cfg *q, attrs *l, char *what, size_t what_size, int trial)
{
    random_cfg(q, 6);
    int64_t pads[4] = {rnd(3), rnd(3), rnd(3), rnd(3)};
    /* PyTorch keeps output_padding below stride or dilation */
    int64_t op[2] = {rnd((uint32_t)(q->sh > q->dh ? q->sh : q->dh)),
                     rnd((uint32_t)(q->sw > q->dw ? q->sw : q->dw))};
    if (rnd(6) == 0) {
        q->kh = q->kw = q->sh = q->sw = 1;
        memset(pads, 0, sizeof pads);
        op[0] = op[1] = 0;
    }
    q->pt = pads[0];
    q->pl = pads[1];
    q->pb = pads[2];
    q->pr = pads[3];
    q->ho = (q->h - 1) * q->sh + op[0] + (q->kh - 1) * q->dh + 1 - q->pt - q->pb;
    q->wo = (q->w - 1) * q->sw + op[1] + (q->kw - 1) * q->dw + 1 - q->pl - q->pr;
    *l = (attrs){0};
    int64_t s[2] = {q->sh, q->sw}, d[2] = {q->dh, q->dw};
    add_ints(l, "strides", 2, s);
    add_ints(l, "dilations", 2, d);
    add_ints(l, "pads", 4, pads);
    add_ints(l, "output_padding", 2, op);
    add_int(l, "group", q->group);
    snprintf(what, what_size,
             "convT trial %d: x %lldx%lldx%lldx%lld m %lld k %lldx%lld s %lldx%lld d "
             "%lldx%lld pads %lld,%lld,%lld,%lld op %lld,%lld group %lld",
             trial, (long long)q->n, (long long)q->c, (long long)q->h, (long long)q->w,
             (long long)q->m, (long long)q->kh, (long long)q->kw, (long long)q->sh,
             (long long)q->sw, (long long)q->dh, (long long)q->dw, (long long)pads[0],
             (long long)pads[1], (long long)pads[2], (long long)pads[3], (long long)op[0],
             (long long)op[1], (long long)q->group);
}

static void convt_sweep(void)
{
    int ran = 0;
    for (int trial = 0; trial < 300; trial++) {
        cfg q;
        attrs l;
        char what[200];
        random_convt(&q, &l, what, sizeof what, trial);
        if (q.ho < 1 || q.wo < 1) {
            lego_tensor x, w, y = {0};
            make_xw(&op_desc_ConvTranspose, &q, 0, &x, &w);
            lego_tensor *ins[2] = {&x, &w};
            CHECK_FAILS(run1(&op_desc_ConvTranspose, &l, 2, ins, &y, 0, NULL), LEGO_ERR_SHAPE,
                        "leave an empty output");
            continue;
        }
        check_conv(&op_desc_ConvTranspose, what, &q, &l, rnd(2));
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
    check_conv(&op_desc_ConvTranspose, "output_shape 8x6", &q, &l, 1);

    attrs l2 = {0};
    int64_t os4[4] = {1, 3, 8, 6};
    add_ints(&l2, "strides", 2, s);
    add_ints(&l2, "output_shape", 4, os4);
    add_str(&l2, "auto_pad", "SAME_UPPER");
    q.pt = 0; /* SAME_UPPER: the odd pad at the end */
    check_conv(&op_desc_ConvTranspose, "output_shape 1x3x8x6 SAME_UPPER", &q, &l2, 1);

    /* SAME_UPPER without output_shape: the output is input*stride */
    attrs l3 = {0};
    add_ints(&l3, "strides", 2, s);
    add_str(&l3, "auto_pad", "SAME_UPPER");
    cfg q3 = {.n = 1, .c = 2, .h = 4, .w = 3, .m = 3, .kh = 3, .kw = 2, .sh = 2, .sw = 1,
              .dh = 1, .dw = 1, .group = 1, .ho = 8, .wo = 3, .pt = 0, .pl = 0};
    check_conv(&op_desc_ConvTranspose, "SAME_UPPER 4x3 -> 8x3", &q3, &l3, 0);

    attrs l4 = {0};
    int64_t big[2] = {10, 4};
    add_ints(&l4, "strides", 2, s);
    add_ints(&l4, "output_shape", 2, big);
    q.ho = 10;
    q.wo = 4;
    q.pt = 0;
    q.pl = 0;
    check_conv(&op_desc_ConvTranspose, "output_shape 10x4 (beyond the kernel's reach)", &q, &l4, 1);

    /* a map large enough to tile the columns (64*3*3 rows, 4096 positions) */
    cfg t = {.n = 1, .c = 3, .h = 64, .w = 64, .m = 64, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
             .dh = 1, .dw = 1, .pt = 1, .pl = 1, .group = 1, .ho = 64, .wo = 64};
    attrs l5 = {0};
    int64_t p1[4] = {1, 1, 1, 1};
    add_ints(&l5, "pads", 4, p1);
    check_conv(&op_desc_ConvTranspose, "tiled col2im 3x64x64 -> 64", &t, &l5, 1);

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
    CHECK_OK(run1(&op_desc_ConvTranspose, &l6, 2, in, &y, 0, &flops));
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
    CHECK_FAILS(run1(&op_desc_ConvTranspose, &none, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "weight has 3 input channels, input has 4 channels");
    wd[0] = 4;
    make(&w, LEGO_F32, 4, wd, 0);
    attrs g = {0};
    add_int(&g, "group", 3);
    CHECK_FAILS(run1(&op_desc_ConvTranspose, &g, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "input has 4 channels, not divisible by group 3");
    attrs o = {0};
    int64_t os[3] = {1, 2, 3};
    add_ints(&o, "output_shape", 3, os);
    CHECK_FAILS(run1(&op_desc_ConvTranspose, &o, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "output_shape has 3 values, expected 2");
    attrs op = {0};
    int64_t opad[2] = {0, -1};
    add_ints(&op, "output_padding", 2, opad);
    CHECK_FAILS(run1(&op_desc_ConvTranspose, &op, 2, in, &y, 0, NULL), LEGO_ERR_FORMAT,
                "output_padding[1] is -1");
    attrs p = {0};
    int64_t pads[4] = {4, 0, 4, 0};
    add_ints(&p, "pads", 4, pads);
    CHECK_FAILS(run1(&op_desc_ConvTranspose, &p, 2, in, &y, 0, NULL), LEGO_ERR_SHAPE,
                "leave an empty output (-1x7) for input 5x5");
    int64_t x5[5] = {1, 4, 2, 2, 2};
    make(&x, LEGO_F32, 5, x5, 0);
    CHECK_FAILS(run1(&op_desc_ConvTranspose, &none, 2, in, &y, 0, NULL), LEGO_ERR_UNSUPPORTED,
                "only 2-D convolution");
}

/* ---- backward ----------------------------------------------------------- */

/* One finite-difference check of d's backward on q (inputs x, w and, with
 * bias, b), then the accumulation contract on the same case. */
static void grad_case(const op_desc *d, const char *what, const cfg *q, attrs *l, int bias)
{
    lego_tensor x, w, b;
    make_xw(d, q, 1, &x, &w);
    make(&b, LEGO_F32, 1, &q->m, 1);
    lego_tensor *in[3] = {&x, &w, bias ? &b : NULL};
    /* both ops are linear in each input: the differences have no truncation
     * error, only float rounding of the outputs */
    gradcheck(d, l, 17, 3, in, 1, 7u, 0, 1e-2f, 2e-3f, 2e-3f, 200, what);
    check_accumulates(d, l, 3, in, 7u, 0, what);
    tensor_release(&x);
    tensor_release(&w);
    tensor_release(&b);
}

typedef struct conv_case {
    const char *what;
    int64_t n, c, h, w, m, kh, kw, sh, sw, dh, dw, group;
    int64_t pads[4];
    const char *auto_pad; /* NULL: explicit pads */
    int bias;
} conv_case;

static void conv_grads(void)
{
    static const conv_case cases[] = {
        {"plain 3x3", 2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 1},
        {"1x1 direct", 2, 3, 4, 3, 5, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 1},
        {"1x1 stride 2", 1, 3, 5, 4, 2, 1, 1, 2, 2, 1, 1, 1, {0, 0, 0, 0}, NULL, 1},
        {"1x1 padded", 1, 2, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, {1, 0, 0, 1}, NULL, 0},
        {"strides 2x3", 2, 2, 7, 8, 3, 3, 2, 2, 3, 1, 1, 1, {0, 0, 0, 0}, NULL, 1},
        {"dilation 2x1", 1, 2, 7, 6, 3, 3, 3, 1, 1, 2, 1, 1, {1, 1, 1, 1}, NULL, 1},
        {"asymmetric pads", 2, 2, 5, 5, 3, 3, 2, 1, 2, 1, 1, 1, {2, 0, 1, 3}, NULL, 1},
        {"groups 2", 2, 4, 5, 5, 6, 3, 3, 1, 1, 1, 1, 2, {1, 1, 1, 1}, NULL, 1},
        {"depthwise", 2, 3, 6, 5, 3, 3, 3, 2, 1, 1, 2, 3, {1, 2, 1, 0}, NULL, 1},
        {"depthwise x2", 1, 2, 5, 5, 4, 2, 2, 1, 1, 1, 1, 2, {0, 0, 0, 0}, NULL, 0},
        {"SAME_UPPER", 1, 2, 5, 6, 3, 4, 3, 1, 2, 1, 1, 1, {0, 0, 0, 0}, "SAME_UPPER", 1},
        {"SAME_LOWER", 1, 2, 5, 6, 3, 4, 3, 2, 2, 1, 1, 1, {0, 0, 0, 0}, "SAME_LOWER", 1},
        {"VALID", 2, 2, 6, 5, 2, 3, 2, 2, 1, 1, 1, 1, {5, 5, 5, 5}, "VALID", 1},
        {"no bias", 1, 3, 4, 4, 2, 2, 3, 1, 1, 1, 1, 1, {1, 1, 0, 0}, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_case *k = &cases[i];
        cfg q = {.n = k->n, .c = k->c, .h = k->h, .w = k->w, .m = k->m, .kh = k->kh, .kw = k->kw,
                 .sh = k->sh, .sw = k->sw, .dh = k->dh, .dw = k->dw, .group = k->group};
        attrs l = {0};
        int64_t s[2] = {k->sh, k->sw}, d[2] = {k->dh, k->dw};
        add_ints(&l, "strides", 2, s);
        add_ints(&l, "dilations", 2, d);
        add_int(&l, "group", k->group);
        add_ints(&l, "pads", 4, k->pads);
        if (k->auto_pad)
            add_str(&l, "auto_pad", k->auto_pad);
        char what[96];
        snprintf(what, sizeof what, "conv backward, %s", k->what);
        grad_case(&op_desc_Conv, what, &q, &l, k->bias);
    }
}

typedef struct convt_case {
    const char *what;
    int64_t n, c, h, w, m, kh, kw, sh, sw, dh, dw, group;
    int64_t pads[4], outpad[2], out_shape[2]; /* out_shape {0,0}: none */
    const char *auto_pad;
    int bias;
} convt_case;

static void convt_grads(void)
{
    static const convt_case cases[] = {
        {"plain 3x3", 2, 3, 3, 4, 2, 3, 3, 1, 1, 1, 1, 1, {0, 0, 0, 0}, {0, 0}, {0, 0}, NULL, 1},
        {"1x1 direct", 2, 3, 3, 4, 2, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, {0, 0}, {0, 0}, NULL, 1},
        {"strides 2x3 pads", 1, 2, 3, 3, 3, 3, 2, 2, 3, 1, 1, 1, {1, 0, 2, 1}, {0, 0}, {0, 0},
         NULL, 1},
        {"output_padding", 2, 2, 3, 2, 2, 3, 3, 2, 3, 1, 1, 1, {1, 1, 1, 1}, {1, 2}, {0, 0},
         NULL, 1},
        {"dilation", 1, 2, 3, 3, 2, 2, 3, 1, 2, 2, 2, 1, {0, 1, 1, 0}, {1, 1}, {0, 0}, NULL, 1},
        {"groups 2", 2, 4, 3, 3, 6, 3, 2, 2, 1, 1, 1, 2, {1, 0, 0, 1}, {0, 0}, {0, 0}, NULL, 1},
        {"depthwise", 1, 3, 4, 3, 3, 3, 3, 2, 2, 1, 1, 3, {1, 1, 1, 1}, {1, 0}, {0, 0}, NULL, 0},
        {"output_shape", 1, 2, 4, 3, 3, 3, 2, 2, 1, 1, 1, 1, {0, 0, 0, 0}, {0, 0}, {8, 6}, NULL, 1},
        {"output_shape beyond reach", 1, 2, 3, 3, 2, 3, 2, 2, 1, 1, 1, 1, {0, 0, 0, 0}, {0, 0},
         {9, 5}, NULL, 1},
        {"SAME_UPPER", 1, 2, 4, 3, 3, 3, 2, 2, 1, 1, 1, 1, {0, 0, 0, 0}, {0, 0}, {0, 0},
         "SAME_UPPER", 1},
        {"SAME_LOWER", 1, 2, 3, 3, 2, 3, 4, 2, 2, 1, 1, 1, {0, 0, 0, 0}, {0, 0}, {0, 0},
         "SAME_LOWER", 1},
        {"VALID", 1, 2, 3, 3, 2, 3, 2, 2, 2, 1, 1, 1, {2, 2, 2, 2}, {0, 0}, {0, 0}, "VALID", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const convt_case *k = &cases[i];
        cfg q = {.n = k->n, .c = k->c, .h = k->h, .w = k->w, .m = k->m, .kh = k->kh, .kw = k->kw,
                 .sh = k->sh, .sw = k->sw, .dh = k->dh, .dw = k->dw, .group = k->group};
        attrs l = {0};
        int64_t s[2] = {k->sh, k->sw}, d[2] = {k->dh, k->dw};
        add_ints(&l, "strides", 2, s);
        add_ints(&l, "dilations", 2, d);
        add_int(&l, "group", k->group);
        add_ints(&l, "pads", 4, k->pads);
        add_ints(&l, "output_padding", 2, k->outpad);
        if (k->out_shape[0])
            add_ints(&l, "output_shape", 2, k->out_shape);
        if (k->auto_pad)
            add_str(&l, "auto_pad", k->auto_pad);
        char what[96];
        snprintf(what, sizeof what, "convT backward, %s", k->what);
        grad_case(&op_desc_ConvTranspose, what, &q, &l, k->bias);
    }
}

/* Backward of d on q against the reference adjoint, every gradient starting
 * from random values it must be added to. */
static void check_backward(const op_desc *d, const char *what, const cfg *q, attrs *l, int bias)
{
    int t = d == &op_desc_ConvTranspose;
    lego_tensor x, w, b, y = {0}, dy = {0}, g[3], want[3];
    make_xw(d, q, 1, &x, &w);
    make(&b, LEGO_F32, 1, &q->m, 1);
    lego_tensor *in[3] = {&x, &w, bias ? &b : NULL}, *din[3], *like[3] = {&x, &w, &b};
    for (int i = 0; i < 3; i++) {
        make(&g[i], LEGO_F32, like[i]->rank, like[i]->dims, 1);
        make(&want[i], LEGO_F32, g[i].rank, g[i].dims, 0);
        CHECK_OK(tensor_alloc(&want[i]));
        memcpy(want[i].data, g[i].data, lego_tensor_bytes(&g[i]));
        din[i] = in[i] ? &g[i] : NULL;
    }
    lego_status st = run_backward(d, l, 1, 3, in, &y, &dy, din);
    if (st.code != LEGO_OK) {
        CHECK_OK(st);
        fprintf(stderr, "  in %s\n", what);
    } else {
        (t ? ref_convt_backward : ref_conv_backward)(q, x.data, w.data, dy.data, want[0].data,
                                                     want[1].data, bias ? want[2].data : NULL);
        static const char *names[3] = {"dX", "dW", "dB"};
        for (int i = 0; i < (bias ? 3 : 2); i++) {
            char msg[240];
            snprintf(msg, sizeof msg, "%s: %s", what, names[i]);
            check_close(g[i].data, want[i].data, (long)lego_tensor_numel(&g[i]), 1e-4f, 1e-3f,
                        msg);
        }
    }
    for (int i = 0; i < 3; i++) {
        tensor_release(&g[i]);
        tensor_release(&want[i]);
    }
    tensor_release(&x);
    tensor_release(&w);
    tensor_release(&b);
    tensor_release(&y);
    tensor_release(&dy);
}

static void backward_sweeps(void)
{
    int ran = 0;
    for (int trial = 0; trial < 150; trial++) {
        cfg q;
        attrs l;
        char what[200];
        random_conv(&q, &l, what, sizeof what, trial);
        if (q.ho >= 1 && q.wo >= 1) {
            check_backward(&op_desc_Conv, what, &q, &l, rnd(2));
            ran++;
        }
        random_convt(&q, &l, what, sizeof what, trial);
        if (q.ho >= 1 && q.wo >= 1) {
            check_backward(&op_desc_ConvTranspose, what, &q, &l, rnd(2));
            ran++;
        }
    }
    CHECK(ran > 200);

    /* maps large enough that the columns come in several tiles, the last
     * one starting mid-row */
    cfg q = {.n = 1, .c = 64, .h = 70, .w = 70, .m = 4, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
             .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .group = 1, .ho = 70, .wo = 70};
    attrs l = {0};
    int64_t p1[4] = {1, 1, 1, 1};
    add_ints(&l, "pads", 4, p1);
    check_backward(&op_desc_Conv, "conv backward, tiled im2col 64x70x70 k3", &q, &l, 1);
    cfg t = {.n = 1, .c = 3, .h = 64, .w = 64, .m = 64, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
             .dh = 1, .dw = 1, .pt = 1, .pl = 1, .group = 1, .ho = 64, .wo = 64};
    check_backward(&op_desc_ConvTranspose, "convT backward, tiled 3x64x64 -> 64", &t, &l, 1);
}

/* ---- threads ------------------------------------------------------------ */

/* y, dX, dW and dB of d on q after forward and backward with `threads`
 * threads, from seeded data; out[0..3] are allocated here. */
static void run_with_threads(const op_desc *d, const cfg *q, attrs *l, int threads,
                             lego_tensor out[4])
{
    lego_set_num_threads(threads);
    test_seed(777u);
    lego_tensor x, w, b, dy = {0};
    make_xw(d, q, 1, &x, &w);
    make(&b, LEGO_F32, 1, &q->m, 1);
    lego_tensor *in[3] = {&x, &w, &b}, *like[3] = {&x, &w, &b}, *din[3];
    out[0] = (lego_tensor){0};
    for (int i = 0; i < 3; i++) {
        make(&out[i + 1], LEGO_F32, like[i]->rank, like[i]->dims, 1);
        din[i] = &out[i + 1];
    }
    CHECK_OK(run_backward(d, l, 1, 3, in, &out[0], &dy, din));
    tensor_release(&x);
    tensor_release(&w);
    tensor_release(&b);
    tensor_release(&dy);
}

/* The same bits with 1, 2 and 3 threads, forward and backward. */
static void same_bits(const op_desc *d, const char *what, const cfg *q, attrs *l)
{
    lego_tensor one[4], more[4];
    run_with_threads(d, q, l, 1, one);
    for (int t = 2; t <= 3; t++) {
        run_with_threads(d, q, l, t, more);
        static const char *names[4] = {"y", "dX", "dW", "dB"};
        for (int i = 0; i < 4; i++) {
            int same = tensor_same_shape(&one[i], &more[i]) &&
                       memcmp(one[i].data, more[i].data, lego_tensor_bytes(&one[i])) == 0;
            if (!same)
                fprintf(stderr, "  %s: %s differs between 1 and %d threads\n", what, names[i], t);
            CHECK(same);
            tensor_release(&more[i]);
        }
    }
    for (int i = 0; i < 4; i++)
        tensor_release(&one[i]);
}

static void thread_invariance(void)
{
    for (int trial = 0; trial < 40; trial++) {
        cfg q;
        attrs l;
        char what[200];
        random_conv(&q, &l, what, sizeof what, trial);
        q.n += 2; /* several images, so that units spread over threads */
        if (q.ho >= 1 && q.wo >= 1)
            same_bits(&op_desc_Conv, what, &q, &l);
        random_convt(&q, &l, what, sizeof what, trial);
        q.n += 2;
        if (q.ho >= 1 && q.wo >= 1)
            same_bits(&op_desc_ConvTranspose, what, &q, &l);
    }
    /* a resnet-like layer, large enough to split at the default threshold */
    par_set_min_work(0);
    cfg r = {.n = 8, .c = 16, .h = 14, .w = 14, .m = 16, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
             .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .group = 1, .ho = 14, .wo = 14};
    attrs l = {0};
    int64_t p1[4] = {1, 1, 1, 1};
    add_ints(&l, "pads", 4, p1);
    same_bits(&op_desc_Conv, "16x14x14 k3 at the default threshold", &r, &l);
    par_set_min_work(1);
}

/* The sweeps against the references run with one thread and with two; the
 * parallel threshold is lowered so that even these small shapes split. */
int main(void)
{
    par_set_min_work(1);
    for (int threads = 1; threads <= 2; threads++) {
        lego_set_num_threads(threads);
        test_seed(12345u);
        conv_sweep();
        conv_same_pads();
        conv_shapes_and_tiles();
        conv_reprepare();
        conv_errors();
        convt_sweep();
        convt_output_shape();
        convt_errors();
        conv_grads();
        convt_grads();
        backward_sweeps();
    }
    thread_invariance();
    return harness_finish();
}
