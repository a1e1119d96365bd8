/* test_conv_dnnl.c - the inference Conv of a plan (op_desc.pack: oneDNN
 * where built in, else im2col + BLAS with a fused epilogue) against the
 * unpacked forward that test_ops_conv.c holds to direct loops:
 *  - random shapes (batch 1 and more, odd sizes, strides, pads, dilations,
 *    groups, depthwise, channel counts around oneDNN's blocks of 16) agree
 *    within a float tolerance, with and without a fused BatchNormalization
 *    and Relu/Clip, and give the same bits with 1, 2 and 3 threads (large
 *    maps at batch 1 and 2 too, which oneDNN cuts into bands of rows, and
 *    batches of 8 and more, whose small maps go several images per call);
 *  - the fused epilogue rounds as the separate ops do: a plan with fusion
 *    gives the unfused plan's output (graphs Conv->BN->Relu, Conv->BN->Clip,
 *    and shapes that must not fuse: a Conv output read twice, a Conv output
 *    that is a graph output);
 *  - oneDNN's OpenMP never starts a thread of its own: after packed convs
 *    on 3 threads, the process has at most our pool's threads;
 *  - our Winograd weight transforms (conv_dnnl_wino.c) write the bits
 *    oneDNN's own reorder writes, padding included. */
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "graph/exec.h"
#include "onnx/onnx_export.h"
#include "ops/conv_dnnl.h"
#include "ops/conv_wino.h"
#include "op_test.h"
#ifdef LEGO_HAVE_DNNL
#include "ops/conv_dnnl_impl.h"
#endif

extern const op_desc op_desc_Conv;

typedef struct conv_case {
    int64_t n, c, h, w, m, k[2], s[2], d[2], pads[4], group;
    bool bias, bn, clamp;
    float lo, hi;
} conv_case;

static void case_attrs(const conv_case *q, attrs *l)
{
    *l = (attrs){0};
    add_ints(l, "kernel_shape", 2, q->k);
    add_ints(l, "strides", 2, q->s);
    add_ints(l, "dilations", 2, q->d);
    add_ints(l, "pads", 4, q->pads);
    add_int(l, "group", q->group);
}

static void random_case(conv_case *q, int trial)
{
    static const int64_t chans[] = {1, 3, 8, 16, 17, 32, 48, 64};
    *q = (conv_case){0};
    int depthwise = rnd(4) == 0;
    q->group = depthwise ? 0 : rnd(5) == 0 ? 2 : 1;
    int64_t c = chans[rnd(8)];
    if (depthwise) {
        q->group = c;
        q->c = q->m = c;
    } else {
        q->c = q->group * (q->group > 1 ? 1 + rnd(8) : c);
        q->m = q->group * (q->group > 1 ? 1 + rnd(8) : chans[rnd(8)]);
    }
    q->n = trial % 3 == 0 ? 1 : 1 + rnd(5);
    q->h = 1 + rnd(13);
    q->w = 1 + rnd(13);
    if (trial % 6 == 2) /* batches whose small maps go to oneDNN several images at a time */
        q->n = 8 + rnd(12);
    if (trial % 3 == 1) { /* maps large enough to be cut into bands of rows at batch 1 */
        q->n = 1 + rnd(2);
        q->h = 16 + rnd(20);
        q->w = 8 + rnd(24);
    }
    for (int i = 0; i < 2; i++) {
        q->k[i] = 1 + rnd(3) * (rnd(2) ? 2 : 1); /* 1, 3, 5, 2 */
        q->s[i] = 1 + rnd(2);
        q->d[i] = rnd(4) == 0 ? 2 : 1;
    }
    for (int i = 0; i < 4; i++)
        q->pads[i] = rnd(3);
    q->bias = rnd(3) != 0;
    q->bn = rnd(2);
    q->clamp = rnd(2);
    q->lo = rnd(2) ? 0.0f : -0.25f;
    q->hi = rnd(2) ? INFINITY : 0.5f;
}

static bool case_fits(const conv_case *q)
{
    for (int i = 0; i < 2; i++) {
        int64_t in = i ? q->w : q->h, dk = (q->k[i] - 1) * q->d[i] + 1;
        if (in + q->pads[i] + q->pads[i + 2] < dk)
            return false;
    }
    return true;
}

static bool last_winograd; /* the last packed conv_run took Winograd */
static int last_units;     /* and cut each call into that many units */
static int last_layout;    /* writing this layout (OP_LAYOUT_*, -1: none) */

/* y of q's Conv on seeded data, through a packed call (packed) or the
 * plain forward followed by the epilogue computed as batchnorm.c and
 * activation.c do. *used_dnnl: whether the packed call took oneDNN. */
static void conv_run(const conv_case *q, bool packed, int threads, lego_tensor *y,
                     bool *used_dnnl)
{
    lego_set_num_threads(threads);
    test_seed(4242u);
    int64_t xd[4] = {q->n, q->c, q->h, q->w}, wd[4] = {q->m, q->c / q->group, q->k[0], q->k[1]};
    lego_tensor x, w, b;
    make(&x, LEGO_F32, 4, xd, 1);
    make(&w, LEGO_F32, 4, wd, 1);
    make(&b, LEGO_F32, 1, &q->m, 1);
    float *scale = malloc(sizeof(float) * (size_t)q->m), *shift = malloc(sizeof(float) * (size_t)q->m);
    for (int64_t i = 0; i < q->m; i++) {
        scale[i] = 0.5f + frand();
        shift[i] = frand();
    }
    attrs l;
    case_attrs(q, &l);
    attr_list al = {l.n, l.a};
    lego_tensor *in[3] = {&x, &w, q->bias ? &b : NULL}, *out[1] = {y};
    void *params = calloc(1, op_desc_Conv.params_size);
    op_call c = {.attrs = &al, .node_name = "", .opset = 17, .n_in = 3, .n_out = 1, .in = in,
                 .out = out, .params = params};
    *y = (lego_tensor){0};
    CHECK_OK(op_desc_Conv.prepare(&c));
    CHECK_OK(tensor_alloc(y));
    op_fused f = {.scale = q->bn ? scale : NULL, .shift = q->bn ? shift : NULL, .clamp = q->clamp,
                  .lo = q->lo, .hi = q->hi};
    void *state = NULL;
    if (packed) {
        CHECK_OK(op_desc_Conv.pack(&c, q->bn || q->clamp ? &f : NULL, &state));
        CHECK(state != NULL);
        c.packed = state;
    }
    op_desc_Conv.forward(&c);
    *used_dnnl = state && conv_packed_dnnl(state);
    last_winograd = state && conv_packed_winograd(state);
    last_units = state ? conv_packed_units(state) : 0;
    last_layout = state ? op_desc_Conv.layout(state, true) : -1;
    if (packed) {
        /* again on copies at other addresses (the output poisoned): the
         * kernels' memory objects, kept from call to call, follow the data */
        lego_tensor x2, y2;
        CHECK_OK(tensor_clone(&x, &x2));
        CHECK_OK(tensor_clone(y, &y2));
        for (int64_t i = 0; i < lego_tensor_numel(&y2); i++)
            ((float *)y2.data)[i] = NAN;
        in[0] = &x2, out[0] = &y2;
        op_desc_Conv.forward(&c);
        CHECK(memcmp(y->data, y2.data, lego_tensor_bytes(y)) == 0);
        in[0] = &x, out[0] = y;
        tensor_release(&x2), tensor_release(&y2);
    }
    if (!packed) {
        float *v = y->data;
        int64_t plane = y->dims[2] * y->dims[3];
        for (int64_t i = 0; i < lego_tensor_numel(y); i++) {
            int64_t ch = i / plane % q->m;
            if (q->bn)
                v[i] = v[i] * scale[ch] + shift[ch];
            if (q->clamp) {
                float t = v[i] < q->lo ? q->lo : v[i];
                v[i] = t > q->hi ? q->hi : t;
            }
        }
    }
    if (state)
        op_desc_Conv.unpack(state);
    free(params), free(scale), free(shift);
    tensor_release(&x), tensor_release(&w), tensor_release(&b);
}

static void describe(const conv_case *q, int trial, char *what, size_t len)
{
    snprintf(what, len,
             "trial %d: x %lldx%lldx%lldx%lld m %lld k %lldx%lld s %lldx%lld d %lldx%lld pads "
             "%lld,%lld,%lld,%lld group %lld bias %d bn %d clamp %d [%g, %g]",
             trial, (long long)q->n, (long long)q->c, (long long)q->h, (long long)q->w,
             (long long)q->m, (long long)q->k[0], (long long)q->k[1], (long long)q->s[0],
             (long long)q->s[1], (long long)q->d[0], (long long)q->d[1], (long long)q->pads[0],
             (long long)q->pads[1], (long long)q->pads[2], (long long)q->pads[3],
             (long long)q->group, q->bias, q->bn, q->clamp, q->lo, q->hi);
}

static void sweep(void)
{
    int dnnl_cases = 0, cases = 0;
    par_set_min_work(1); /* small shapes split over threads too */
    for (int trial = 0; trial < 120; trial++) {
        conv_case q;
        random_case(&q, trial);
        if (!case_fits(&q))
            continue;
        char what[300];
        describe(&q, trial, what, sizeof what);
        lego_tensor want, got, more;
        bool d0, d1, d2;
        conv_run(&q, false, 1, &want, &d0);
        conv_run(&q, true, 1, &got, &d1);
        check_close(got.data, want.data, (long)lego_tensor_numel(&want), 1e-4f, 1e-4f, what);
        for (int t = 2; t <= 3; t++) {
            conv_run(&q, true, t, &more, &d2);
            bool same = memcmp(got.data, more.data, lego_tensor_bytes(&got)) == 0;
            if (!same)
                fprintf(stderr, "  %s: differs between 1 and %d threads\n", what, t);
            CHECK(same && d1 == d2);
            tensor_release(&more);
        }
        cases++;
        dnnl_cases += d1;
        tensor_release(&want), tensor_release(&got);
    }
    par_set_min_work(0);
    CHECK(cases > 80);
    /* oneDNN takes (almost) every shape where it is built in; nowhere else */
    if (dnnl_conv_enabled())
        CHECK(dnnl_cases > cases * 3 / 4);
    else
        CHECK(dnnl_cases == 0);
    printf("packed conv: %d random cases, %d through oneDNN\n", cases, dnnl_cases);
}

/* 3x3 convolutions of stride 1 with 16 or more input channels run Winograd
 * where the CPU has oneDNN's kernels for it (AVX-512), and elsewhere those
 * our own Winograd fits (conv_wino.c; one of these shapes): within 1e-4 of the
 * portable path, with and without the fused BatchNormalization and clamp
 * (an epilogue on the blocked output), the same bits on 1, 2 and 3 threads;
 * with Winograd turned off, direct. Output channels that do not fill a
 * block of 16 keep their padding zero: oneDNN's post-ops run them. */
static void winograd(void)
{
    static const int64_t shapes[][7] = {
        /* n, c, hw, m, pad, bn+clamp, the clamp's low bound */
        {1, 64, 32, 64, 1, 1, 0}, {2, 16, 9, 32, 1, 0, 0}, {8, 128, 4, 128, 1, 1, 0},
        {3, 32, 13, 48, 0, 1, 0}, {1, 45, 16, 64, 1, 1, 0}, {2, 64, 8, 45, 1, 1, 0},
        {2, 32, 8, 90, 1, 1, -1}, /* outputs padded to whole blocks of 16: our epilogue */
        {32, 64, 4, 45, 1, 1, 0}, /* the same, eight images per call on a small map */
        {2, 32, 8, 45, 1, 1, 1},  /* a clamp that moves the padding's zeros: post-ops */
    };
    int taken = 0, ours = 0;
    conv_set_winograd(true); /* whatever LEGO_WINOGRAD says: this tests it */
    par_set_min_work(1);
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const int64_t *v = shapes[i];
        conv_case q = {.n = v[0], .c = v[1], .h = v[2], .w = v[2], .m = v[3], .k = {3, 3},
                       .s = {1, 1}, .d = {1, 1}, .pads = {v[4], v[4], v[4], v[4]}, .group = 1,
                       .bias = true, .bn = v[5], .clamp = v[5], .lo = (float)v[6],
                       .hi = v[6] ? 6.0f : INFINITY};
        char what[300];
        describe(&q, (int)i, what, sizeof what);
        conv_shape s = {.c = q.c, .h = q.h, .w = q.w, .m = q.m, .ho = q.h + 2 * v[4] - 2,
                        .wo = q.w + 2 * v[4] - 2, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1,
                        .dw = 1, .pad_t = v[4], .pad_l = v[4], .group = 1};
        ours += wino_conv_fits(&s, q.n);
        lego_tensor want, got, more;
        bool d0, d1, d2;
        conv_run(&q, false, 1, &want, &d0);
        conv_run(&q, true, 1, &got, &d1);
        bool wino = last_winograd;
        taken += wino;
        check_close(got.data, want.data, (long)lego_tensor_numel(&want), 1e-4f, 1e-4f, what);
        for (int t = 2; t <= 3; t++) {
            conv_run(&q, true, t, &more, &d2);
            CHECK(last_winograd == wino &&
                  memcmp(got.data, more.data, lego_tensor_bytes(&got)) == 0);
            tensor_release(&more);
        }
        conv_set_winograd(false);
        conv_run(&q, true, 1, &more, &d2);
        CHECK(!last_winograd);
        check_close(more.data, want.data, (long)lego_tensor_numel(&want), 1e-4f, 1e-4f, what);
        conv_set_winograd(true);
        tensor_release(&more), tensor_release(&want), tensor_release(&got);
    }
    par_set_min_work(0);
    /* every shape but the last: oneDNN's Winograd takes no per-channel
     * post-ops on outputs that do not fill whole blocks of 16 */
    if (dnnl_conv_winograd_available())
        CHECK(taken == 8);
    else /* our Winograd (conv_wino.c) takes what it fits, oneDNN built in or not */
        CHECK(taken == ours);
    printf("winograd: %d of %zu shapes\n", taken, sizeof shapes / sizeof *shapes);
}

/* A clamp with a finite top (Clip(0, 0.5)) after a BatchNormalization, on
 * oneDNN's blocked output (a stride-2 layer: direct kernels, nChw8c on
 * AVX2, nChw16c on AVX-512): our epilogue pass clips both ends, block by
 * block of 8 and 16 channels, with channels that fill their last block and
 * channels that do not. */
static void blocked_clamp(void)
{
    static const int64_t channels[] = {32, 40, 24};
    for (size_t i = 0; i < sizeof channels / sizeof *channels; i++) {
        conv_case q = {.n = 2, .c = 16, .h = 12, .w = 12, .m = channels[i], .k = {3, 3}, .s = {2, 2},
                       .d = {1, 1}, .pads = {1, 1, 1, 1}, .group = 1, .bias = true, .bn = true,
                       .clamp = true, .lo = 0.0f, .hi = 0.5f};
        char what[300];
        describe(&q, (int)i, what, sizeof what);
        lego_tensor want, got;
        bool d0, d1;
        conv_run(&q, false, 1, &want, &d0);
        conv_run(&q, true, 1, &got, &d1);
        check_close(got.data, want.data, (long)lego_tensor_numel(&want), 1e-4f, 1e-4f, what);
        int64_t top = 0, bottom = 0;
        for (int64_t j = 0; j < lego_tensor_numel(&got); j++) {
            top += ((float *)got.data)[j] == 0.5f;
            bottom += ((float *)got.data)[j] == 0.0f;
        }
        CHECK(top > 0 && bottom > 0); /* both ends engaged */
        tensor_release(&want), tensor_release(&got);
    }
}

/* q's Conv packed, on 1 thread within 1e-4 of the plain forward and on 2
 * and 3 threads the same bits on the same kernel; whether that kernel was
 * oneDNN's (last_units and last_layout are its). */
static bool packed_like_plain(const conv_case *q, int trial)
{
    char what[300];
    describe(q, trial, what, sizeof what);
    lego_tensor want, got, more;
    bool d0, d1, d2;
    conv_run(q, false, 1, &want, &d0);
    conv_run(q, true, 1, &got, &d1);
    check_close(got.data, want.data, (long)lego_tensor_numel(&want), 1e-4f, 1e-4f, what);
    for (int t = 2; t <= 3; t++) {
        conv_run(q, true, t, &more, &d2);
        CHECK(d2 == d1 && memcmp(got.data, more.data, lego_tensor_bytes(&got)) == 0);
        tensor_release(&more);
    }
    tensor_release(&want), tensor_release(&got);
    return d1;
}

/* A depthwise 3x3 layer of a batch-1 MobileNetV2 (96 and 144 channels,
 * 16x16 and 8x8 maps), at the default threshold: oneDNN's kernel is cut
 * into units so that two threads share it (slices of whole channel blocks
 * in nChw8c and nChw16c; bands of rows in NHWC, where the map has room for
 * two bands of 128 pixels), with the fused BN and Clip(0, 6); within 1e-4
 * of the portable path and the same bits on 1, 2 and 3 threads. */
static void depthwise_split(void)
{
    static const int64_t shapes[][2] = {{96, 16}, {144, 8}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int64_t c = shapes[i][0], hw = shapes[i][1];
        conv_case q = {.n = 1, .c = c, .h = hw, .w = hw, .m = c, .k = {3, 3}, .s = {1, 1},
                       .d = {1, 1}, .pads = {1, 1, 1, 1}, .group = c, .bias = false, .bn = true,
                       .clamp = true, .lo = 0.0f, .hi = 6.0f};
        bool used = packed_like_plain(&q, (int)i);
        bool blocked = last_layout == OP_LAYOUT_NCHW8C || last_layout == OP_LAYOUT_NCHW16C;
        CHECK(dnnl_conv_enabled() ? used && (last_units >= 2 || (!blocked && hw * hw < 256))
                                  : last_units == 0);
    }
}

/* ---- fusion in plans ------------------------------------------------------ */

typedef struct builder {
    lego_graph g;
    int x;
    uint32_t seed;
} builder;

static int b_const(builder *b, const char *name, int rank, const int64_t *dims, bool positive)
{
    int v;
    CHECK_OK(graph_add_value(&b->g, name, VALUE_INITIALIZER, &v));
    tensor_set_shape(&b->g.values[v].t, LEGO_F32, rank, dims);
    CHECK_OK(tensor_alloc(&b->g.values[v].t));
    float *p = b->g.values[v].t.data;
    for (int64_t i = 0; i < lego_tensor_numel(&b->g.values[v].t); i++)
        p[i] = positive ? 0.5f + fabsf(frand()) : frand();
    return v;
}

/* An opset-13 graph whose one input, x, has shape d. */
static void b_begin(builder *b, const char *name, const int64_t d[4])
{
    CHECK_OK(graph_init(&b->g, name));
    b->g.opset = 13;
    CHECK_OK(graph_add_value(&b->g, "x", VALUE_INPUT, &b->x));
    tensor_set_shape(&b->g.values[b->x].t, LEGO_F32, 4, d);
    b->g.inputs = malloc(sizeof *b->g.inputs);
    b->g.inputs[0] = b->x;
    b->g.n_inputs = 1;
}

static int b_node(builder *b, const char *name, const char *op, const int *in, int n_in,
                  attr_list *a)
{
    int y, k;
    attr_list none = {0, NULL};
    CHECK_OK(graph_add_value(&b->g, name, VALUE_ACTIVATION, &y));
    CHECK_OK(graph_add_node(&b->g, name, op, in, n_in, &y, 1, a ? a : &none, &k));
    return y;
}

/* The graph's one output y, and its shapes inferred. */
static void b_finish(builder *b, int y)
{
    b->g.outputs = malloc(sizeof *b->g.outputs);
    b->g.outputs[0] = y;
    b->g.n_outputs = 1;
    CHECK_OK(graph_infer(&b->g));
}

/* A k x k Conv ("same" padding) of `group` groups and the given stride. */
static int b_conv_ks(builder *b, const char *name, int x, int64_t cin, int64_t cout, int64_t k,
                     int64_t group, int64_t stride)
{
    char wn[64];
    snprintf(wn, sizeof wn, "%s.w", name);
    int64_t wd[4] = {cout, cin / group, k, k};
    int in[2] = {x, b_const(b, wn, 4, wd, false)};
    attr_list a = {0, NULL};
    int64_t pads[4] = {k / 2, k / 2, k / 2, k / 2};
    CHECK_OK(attr_add_ints(&a, "pads", pads, 4));
    if (group > 1)
        CHECK_OK(attr_add_int(&a, "group", group));
    if (stride > 1)
        CHECK_OK(attr_add_ints(&a, "strides", (int64_t[2]){stride, stride}, 2));
    return b_node(b, name, "Conv", in, 2, &a);
}

static int b_conv_k(builder *b, const char *name, int x, int64_t cin, int64_t cout, int64_t k,
                    int64_t group)
{
    return b_conv_ks(b, name, x, cin, cout, k, group, 1);
}

static int b_conv(builder *b, const char *name, int x, int64_t cin, int64_t cout)
{
    return b_conv_k(b, name, x, cin, cout, 3, 1);
}

static int b_bn(builder *b, const char *name, int x, int64_t c)
{
    char n[4][64];
    int64_t d[1] = {c};
    int in[5] = {x};
    for (int i = 0; i < 4; i++) {
        snprintf(n[i], sizeof n[i], "%s.%d", name, i);
        in[i + 1] = b_const(b, n[i], 1, d, i == 0 || i == 3);
    }
    return b_node(b, name, "BatchNormalization", in, 5, NULL);
}

static int b_clip(builder *b, const char *name, int x, float lo, float hi)
{
    char n0[64], n1[64];
    snprintf(n0, sizeof n0, "%s.min", name), snprintf(n1, sizeof n1, "%s.max", name);
    int in[3] = {x, b_const(b, n0, 0, NULL, false), b_const(b, n1, 0, NULL, false)};
    *(float *)b->g.values[in[1]].t.data = lo;
    *(float *)b->g.values[in[2]].t.data = hi;
    return b_node(b, name, "Clip", in, 3, NULL);
}

/* The graph: x (2,16,9,9) -> conv a -> BN -> Relu -> conv b -> BN -> Clip(0,0.5)
 * -> conv c -> (BN -> Relu, and conv c's output also added to that) -> Add
 * -> (conv e -> BN) + (conv f -> BN) -> Add -> Relu -> conv d (a graph
 * output too) -> Relu (the other output). Fusable: a+BN+Relu, b+BN+Clip,
 * e+BN, f+BN; conv c's output is read twice (its BN takes the Relu after
 * it instead) and conv d's is an output.
 * With oneDNN, a->b, b->c and e, f -> Add -> Relu -> d keep its layout. */
static void build(builder *b, const int64_t d[4])
{
    b_begin(b, "fusion", d);
    int y = b_conv(b, "a", b->x, 16, 32);
    y = b_bn(b, "a.bn", y, 32);
    y = b_node(b, "a.relu", "Relu", &y, 1, NULL);
    y = b_conv(b, "b", y, 32, 16);
    y = b_bn(b, "b.bn", y, 16);
    y = b_clip(b, "b.clip", y, 0.0f, 0.5f); /* low enough for these activations to reach */
    int c = b_conv(b, "c", y, 16, 16);
    y = b_bn(b, "c.bn", c, 16);
    y = b_node(b, "c.relu", "Relu", &y, 1, NULL);
    int add[2] = {y, c};
    y = b_node(b, "add", "Add", add, 2, NULL);
    int e = b_bn(b, "e.bn", b_conv(b, "e", y, 16, 16), 16);
    int f = b_bn(b, "f.bn", b_conv(b, "f", y, 16, 16), 16);
    int add2[2] = {e, f};
    y = b_node(b, "add2", "Add", add2, 2, NULL);
    y = b_node(b, "add2.relu", "Relu", &y, 1, NULL);
    int dv = b_conv(b, "d", y, 16, 16);
    y = b_node(b, "d.relu", "Relu", &dv, 1, NULL);
    b->g.outputs = malloc(sizeof *b->g.outputs * 2);
    b->g.outputs[0] = y;
    b->g.outputs[1] = dv;
    b->g.n_outputs = 2;
    CHECK_OK(graph_infer(&b->g));
}

static int plan_chains; /* chains of image-by-image steps in plan_run's last plan */

static void plan_run(lego_graph *g, const lego_tensor *x, bool fuse, lego_tensor **out,
                     int *steps, int *native)
{
    if (fuse)
        unsetenv("LEGO_FUSE");
    else
        setenv("LEGO_FUSE", "0", 1);
    exec_plan p;
    CHECK_OK(exec_plan_build(g, &p));
    *steps = p.n_steps;
    *native = 0;
    plan_chains = 0;
    for (int s = 0; s < p.n_steps; s++) {
        *native += p.st[s].native != 0;
        plan_chains += p.st[s].chain > 1;
    }
    const lego_tensor *in[1] = {x};
    CHECK_OK(exec_run(g, &p, in, out));
    exec_plan_free(&p);
    unsetenv("LEGO_FUSE");
}

/* Equal values (+0 and -0 equal: oneDNN's Relu returns +0 for -0). */
static bool same_values(const lego_tensor *a, const lego_tensor *b)
{
    if (!tensor_same_shape(a, b))
        return false;
    const float *p = a->data, *q = b->data;
    for (int64_t i = 0; i < lego_tensor_numel(a); i++)
        if (!(p[i] == q[i]))
            return false;
    return true;
}

/* The n outputs of a fused plan and an unfused one hold the same values;
 * both are freed. */
static void check_same_outputs(lego_tensor **fused, lego_tensor **plain, int n)
{
    for (int i = 0; i < n; i++) {
        CHECK(fused[i] && plain[i] && same_values(fused[i], plain[i]));
        lego_tensor_free(fused[i]);
        lego_tensor_free(plain[i]);
    }
}

/* g's one output from a plan without fusion (out[0], steps[0] its step
 * count) and from one with it (out[1], steps[1]). */
static void run_unfused_and_fused(lego_graph *g, const lego_tensor *const *ins, lego_tensor **out, int *steps)
{
    for (int fuse = 0; fuse < 2; fuse++) {
        if (fuse)
            unsetenv("LEGO_FUSE");
        else
            setenv("LEGO_FUSE", "0", 1);
        exec_plan p;
        lego_status st = exec_plan_build(g, &p);
        CHECK_OK(st);
        if (st.code == LEGO_OK) {
            steps[fuse] = p.n_steps;
            CHECK_OK(exec_run(g, &p, ins, &out[fuse]));
            exec_plan_free(&p);
        }
    }
    unsetenv("LEGO_FUSE");
}

/* At batch 2 on 9x9 maps, and at batch 1 on 20x20 maps, where convolutions
 * are cut into bands of rows. */
static void fusion(const int64_t d[4])
{
    test_seed(99u);
    builder b;
    build(&b, d);
    lego_tensor x;
    make(&x, LEGO_F32, 4, d, 1);
    for (int threads = 1; threads <= 2; threads++) {
        lego_set_num_threads(threads);
        lego_tensor *fused[2] = {0}, *plain[2] = {0};
        int nf, np, native_f, native_p;
        plan_run(&b.g, &x, true, fused, &nf, &native_f);
        plan_run(&b.g, &x, false, plain, &np, &native_p);
        /* a, b, e and f absorb 6 nodes, c's BN its Relu, f also add2 and
         * its Relu (every kernel adds a residual); nothing else fuses */
        CHECK(np == 18 && nf == np - 9);
        /* layouts are kept only with fusion on, and only by oneDNN */
        CHECK(native_p == 0);
        CHECK(dnnl_conv_enabled() ? native_f >= 4 : native_f == 0);
        check_same_outputs(fused, plain, 2);
    }
    tensor_release(&x);
    graph_free(&b.g);
}

/* A graph marked portable_kernels (the block runtime's, whose memory budget
 * counts every weight once) plans without oneDNN: no packed copies, no kept
 * layouts, the same fusion and the same values. */
static void portable_plans(const int64_t d[4])
{
    test_seed(7u);
    builder b;
    build(&b, d);
    lego_tensor x;
    make(&x, LEGO_F32, 4, d, 1);
    lego_tensor *out[2][2] = {{0}}; /* [portable][graph output]: the graph has two */
    int n[2] = {0};
    CHECK(b.g.n_outputs == 2);
    for (int portable = 0; portable < 2 && b.g.n_outputs == 2; portable++) {
        b.g.portable_kernels = portable;
        exec_plan p;
        lego_status st = exec_plan_build(&b.g, &p);
        CHECK_OK(st);
        if (st.code)
            continue;
        n[portable] = p.n_steps;
        int dnnl = 0, native = 0;
        for (int s = 0; s < p.n_steps; s++) {
            dnnl += conv_packed_dnnl(p.st[s].packed);
            native += p.st[s].native != 0;
        }
        if (portable)
            CHECK(dnnl == 0 && native == 0);
        else
            CHECK(dnnl_conv_enabled() ? dnnl > 0 : dnnl == 0);
        const lego_tensor *ins[1] = {&x};
        CHECK_OK(exec_run(&b.g, &p, ins, out[portable]));
        exec_plan_free(&p);
    }
    /* fused alike: every kernel takes add2 and its Relu into conv f */
    CHECK(n[0] == n[1]);
    for (int i = 0; i < 2; i++) {
        const lego_tensor *a = out[0][i], *c = out[1][i];
        CHECK(a && c && tensor_same_shape(a, c));
        if (a && c && tensor_same_shape(a, c))
            check_close(c->data, a->data, (long)lego_tensor_numel(a), 1e-4f, 1e-4f, "portable plan");
        lego_tensor_free(out[0][i]);
        lego_tensor_free(out[1][i]);
    }
    tensor_release(&x);
    graph_free(&b.g);
}

/* A Conv whose weights are a graph input (computed, not packable) still
 * fuses the BN and Relu after it, and gives the unfused output. */
static void computed_weights(void)
{
    test_seed(5u);
    builder b;
    CHECK_OK(graph_init(&b.g, "computed"));
    b.g.opset = 13;
    int w;
    int64_t xd[4] = {2, 4, 6, 6}, wd[4] = {8, 4, 3, 3};
    CHECK_OK(graph_add_value(&b.g, "x", VALUE_INPUT, &b.x));
    CHECK_OK(graph_add_value(&b.g, "w", VALUE_INPUT, &w));
    tensor_set_shape(&b.g.values[b.x].t, LEGO_F32, 4, xd);
    tensor_set_shape(&b.g.values[w].t, LEGO_F32, 4, wd);
    b.g.inputs = malloc(sizeof *b.g.inputs * 2);
    b.g.inputs[0] = b.x;
    b.g.inputs[1] = w;
    b.g.n_inputs = 2;
    int in[2] = {b.x, w};
    attr_list a = {0, NULL};
    int64_t pads[4] = {1, 1, 1, 1};
    CHECK_OK(attr_add_ints(&a, "pads", pads, 4));
    int y = b_node(&b, "conv", "Conv", in, 2, &a);
    y = b_bn(&b, "bn", y, 8);
    y = b_node(&b, "relu", "Relu", &y, 1, NULL);
    b_finish(&b, y);
    lego_tensor x, wt;
    make(&x, LEGO_F32, 4, xd, 1);
    make(&wt, LEGO_F32, 4, wd, 1);
    const lego_tensor *ins[2] = {&x, &wt};
    lego_tensor *out[2] = {0};
    int steps[2] = {-1, -1};
    run_unfused_and_fused(&b.g, ins, out, steps);
    CHECK(steps[0] == 3 && steps[1] == 1);
    CHECK(out[0] && out[1] && same_values(out[0], out[1]));
    lego_tensor_free(out[0]);
    lego_tensor_free(out[1]);
    tensor_release(&x), tensor_release(&wt);
    graph_free(&b.g);
}

/* A BatchNormalization that no Conv before it takes in (pre-activation: on
 * the graph's input) takes the Relu or Clip after it into its own pass:
 * x (2,5,7,7) -> BN -> Clip(0, 0.5) -> conv -> BN -> Relu, and x -> BN ->
 * Relu alone. Fused, the same values in fewer steps. */
static void bn_clamp(void)
{
    for (int form = 0; form < 2; form++) {
        builder b;
        b.seed = 7;
        b_begin(&b, "bn_clamp", (const int64_t[4]){2, 5, 7, 7});
        int y = b_bn(&b, "bn_a", b.x, 5);
        if (form == 0) {
            y = b_clip(&b, "clip", y, 0.0f, 0.5f);
            y = b_conv(&b, "conv", y, 5, 6);
            y = b_bn(&b, "bn_b", y, 6);
        }
        y = b_node(&b, "relu", "Relu", &y, 1, NULL);
        b_finish(&b, y);
        lego_tensor x;
        make(&x, LEGO_F32, 4, b.g.values[b.x].t.dims, 1);
        const lego_tensor *ins[1] = {&x};
        lego_tensor *out[2] = {0};
        int steps[2] = {-1, -1};
        run_unfused_and_fused(&b.g, ins, out, steps);
        CHECK(form == 0 ? steps[0] == 5 && steps[1] == 2 : steps[0] == 2 && steps[1] == 1);
        CHECK(out[0] && out[1] && same_values(out[0], out[1]));
        lego_tensor_free(out[0]);
        lego_tensor_free(out[1]);
        tensor_release(&x);
        graph_free(&b.g);
    }
}

/* Residual Adds fused into the convolution before them, whichever kernel
 * runs it (our Winograd, im2col, oneDNN's with our epilogue): x (2,64,16,16)
 * -> conv s -> BN -> Relu = r (read by conv a and, at the end, the Add:
 * fused, the Add's read moves to conv b, whose output must not take r's
 * memory) -> conv a -> BN -> Relu -> conv b -> BN, + r -> Relu = q -> conv
 * c -> BN, q + that (the residual first) = t (a graph output: the Relu
 * after it stays) -> Relu -> conv d (no BN), + t -> Clip(0, 0.5) = y ->
 * conv g -> BN -> Relu -> conv h -> BN, + (y -> 1x1 conv k -> BN: a
 * shortcut after conv h in the graph, which the plan runs before it) ->
 * Relu, the other output. Fused or not, portable or not, 1 or 2 threads:
 * the same values, with the four Adds fused (into our Winograd, im2col's
 * epilogue or ours after oneDNN's primitive, whichever runs the layer). */
static void residual_adds(void)
{
    test_seed(5u);
    builder b;
    const int64_t d[4] = {2, 64, 16, 16};
    b_begin(&b, "residual", d);
    int y = b_bn(&b, "s.bn", b_conv(&b, "s", b.x, 64, 64), 64);
    int r = b_node(&b, "s.relu", "Relu", &y, 1, NULL);
    y = b_bn(&b, "a.bn", b_conv(&b, "a", r, 64, 64), 64);
    y = b_node(&b, "a.relu", "Relu", &y, 1, NULL);
    y = b_bn(&b, "b.bn", b_conv(&b, "b", y, 64, 64), 64);
    int add[2] = {y, r};
    y = b_node(&b, "add", "Add", add, 2, NULL);
    int q = b_node(&b, "add.relu", "Relu", &y, 1, NULL);
    int c = b_bn(&b, "c.bn", b_conv(&b, "c", q, 64, 64), 64);
    int add2[2] = {q, c};
    int t = b_node(&b, "add2", "Add", add2, 2, NULL);
    y = b_node(&b, "add2.relu", "Relu", &t, 1, NULL);
    int add3[2] = {b_conv(&b, "d", y, 64, 64), t};
    y = b_node(&b, "add3", "Add", add3, 2, NULL);
    y = b_clip(&b, "add3.clip", y, 0.0f, 0.5f);
    int g = b_bn(&b, "g.bn", b_conv(&b, "g", y, 64, 64), 64);
    g = b_node(&b, "g.relu", "Relu", &g, 1, NULL);
    int add4[2] = {b_bn(&b, "h.bn", b_conv(&b, "h", g, 64, 64), 64),
                   b_bn(&b, "k.bn", b_conv_k(&b, "k", y, 64, 64, 1, 1), 64)};
    y = b_node(&b, "add4", "Add", add4, 2, NULL);
    y = b_node(&b, "add4.relu", "Relu", &y, 1, NULL);
    b.g.outputs = malloc(sizeof *b.g.outputs * 2);
    b.g.outputs[0] = y;
    b.g.outputs[1] = t;
    b.g.n_outputs = 2;
    CHECK_OK(graph_infer(&b.g));
    lego_tensor x;
    make(&x, LEGO_F32, 4, d, 1);
    for (int portable = 0; portable < 2; portable++) {
        b.g.portable_kernels = portable;
        for (int threads = 1; threads <= 2; threads++) {
            lego_set_num_threads(threads);
            lego_tensor *fused[2] = {0}, *plain[2] = {0};
            int nf, np, native;
            plan_run(&b.g, &x, false, plain, &np, &native);
            plan_run(&b.g, &x, true, fused, &nf, &native);
            /* 7 BNs and 3 Relus after them, the 4 Adds and 3 clamps after
             * them (add2's Relu reads an output) */
            CHECK(np == 26 && nf == np - 17);
            check_same_outputs(fused, plain, 2);
        }
    }
    tensor_release(&x);
    graph_free(&b.g);
}

/* A residual added where the fused Conv's output leaves its kernel's
 * layout (a graph output, NCHW): x -> conv a -> BN -> Relu = r; r -> 1x1
 * conv p -> BN, + r -> Clip(0, 0.5) -> the output. The residual then goes
 * in after the reorder to NCHW, and the clamp after it: with m = 20 (a
 * padded blocked output on oneDNN's direct kernels) and m = 48 (at batch
 * 1 with the threshold lowered, cut into channel blocks or bands). And
 * where it keeps the layout (a 3x3 conv d reads it): at batch 1 on a 9x9
 * map, too small for bands, an NHWC kernel's channel blocks are copied
 * into the image's NHWC, and the residual goes in with the copy. Fused or
 * plain, 1 or 2 threads: the same values. */
static void residual_output(void)
{
    /* n, channels, map, whether conv d follows */
    static const int64_t shapes[][4] = {{2, 20, 9, 0}, {1, 48, 20, 0}, {1, 48, 9, 1}};
    par_set_min_work(1);
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int64_t m = shapes[i][1], d[4] = {shapes[i][0], m, shapes[i][2], shapes[i][2]};
        bool tail = shapes[i][3];
        test_seed(17u);
        builder b;
        b_begin(&b, "residual_output", d);
        int r = b_bn(&b, "a.bn", b_conv(&b, "a", b.x, m, m), m);
        r = b_node(&b, "a.relu", "Relu", &r, 1, NULL);
        int add[2] = {b_bn(&b, "p.bn", b_conv_k(&b, "p", r, m, m, 1, 1), m), r};
        int y = b_node(&b, "add", "Add", add, 2, NULL);
        y = b_clip(&b, "clip", y, 0.0f, 0.5f);
        b_finish(&b, tail ? b_conv(&b, "d", y, m, m) : y);
        lego_tensor x;
        make(&x, LEGO_F32, 4, d, 1);
        for (int threads = 1; threads <= 2; threads++) {
            lego_set_num_threads(threads);
            lego_tensor *fused[1] = {0}, *plain[1] = {0};
            int nf, np, native;
            plan_run(&b.g, &x, true, fused, &nf, &native);
            plan_run(&b.g, &x, false, plain, &np, &native);
            CHECK(np == 7 + tail && nf == 2 + tail);
            check_same_outputs(fused, plain, 1);
        }
        tensor_release(&x);
        graph_free(&b.g);
    }
    par_set_min_work(0);
}

/* Stride-2 3x3 layers to a map of at most 4x4 with 192 filters or more,
 * from batch 8, run im2col + BLAS (conv.c's im2col_beats_direct) where
 * oneDNN's kernels are its direct AVX2 ones; fewer filters, batch 1 or a
 * larger map keep oneDNN. Either way within 1e-4 of the plain forward and
 * the same bits on 1 to 3 threads. The im2col kernel then takes a residual
 * Add into its epilogue: x -> conv s (stride 2) -> BN, + (x -> 1x1 conv k,
 * stride 2 -> BN) -> Relu is two steps, fused or plain the same values. */
static void strided_im2col(void)
{
    static const int64_t shapes[][4] = {
        /* n, hw, m, whether im2col takes it */
        {8, 8, 192, 1}, {9, 7, 256, 1}, {8, 8, 103, 0}, {1, 8, 192, 0}, {8, 16, 192, 0},
    };
    bool direct_avx2 = dnnl_conv_enabled() && !dnnl_conv_winograd_available();
    par_set_min_work(1);
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const int64_t *v = shapes[i];
        conv_case q = {.n = v[0], .c = 32, .h = v[1], .w = v[1], .m = v[2], .k = {3, 3}, .s = {2, 2},
                       .d = {1, 1}, .pads = {1, 1, 1, 1}, .group = 1, .bias = true, .bn = true,
                       .clamp = true, .lo = 0.0f, .hi = INFINITY};
        CHECK(packed_like_plain(&q, (int)i) == (dnnl_conv_enabled() && !(direct_avx2 && v[3])));
    }
    par_set_min_work(0);

    test_seed(6u);
    builder b;
    const int64_t d[4] = {8, 32, 8, 8};
    b_begin(&b, "strided", d);
    int add[2] = {b_bn(&b, "s.bn", b_conv_ks(&b, "s", b.x, 32, 192, 3, 1, 2), 192),
                  b_bn(&b, "k.bn", b_conv_ks(&b, "k", b.x, 32, 192, 1, 1, 2), 192)};
    int y = b_node(&b, "add", "Add", add, 2, NULL);
    y = b_node(&b, "add.relu", "Relu", &y, 1, NULL);
    b_finish(&b, y);
    lego_tensor x;
    make(&x, LEGO_F32, 4, d, 1);
    bool ours = direct_avx2 || !dnnl_conv_enabled();
    for (int threads = 1; threads <= 2; threads++) {
        lego_set_num_threads(threads);
        lego_tensor *fused[1] = {0}, *plain[1] = {0};
        int nf, np, native;
        plan_run(&b.g, &x, false, plain, &np, &native);
        plan_run(&b.g, &x, true, fused, &nf, &native);
        CHECK(np == 6 && nf == (ours ? 2 : 3));
        check_same_outputs(fused, plain, 1);
    }
    tensor_release(&x);
    graph_free(&b.g);
}

/* MobileNetV2's inverted residual, x (n,32,h,w) -> conv a (3x3) -> BN ->
 * Relu = r; r -> 1x1 expand to 96 -> BN -> Clip(0,6) -> depthwise 3x3 -> BN
 * -> Clip(0,6) -> 1x1 project to 32 -> BN; + r -> conv d (3x3, the
 * output). With the parallel threshold lowered, a batch-1 plan cuts the 1x1
 * convolutions into blocks of output channels, each copied into the
 * image's NHWC, and larger maps into bands of rows, the depthwise one
 * included; from batch 4 (where nothing is cut), e, dw, p and the Add run as a chain, image by image (or
 * by the groups of images oneDNN takes per call on small maps). Fused or
 * not, on 1 or 2 threads, the same values, and the layout is kept from
 * conv a to conv d. */
static void inverted_residual(const int64_t d[4])
{
    test_seed(11u);
    builder b;
    b_begin(&b, "mobile", d);
    int r = b_node(&b, "a.relu", "Relu", (int[]){b_bn(&b, "a.bn", b_conv(&b, "a", b.x, 32, 32), 32)}, 1, NULL);
    int y = b_bn(&b, "e.bn", b_conv_k(&b, "e", r, 32, 96, 1, 1), 96);
    y = b_clip(&b, "e.clip", y, 0.0f, 6.0f);
    y = b_bn(&b, "dw.bn", b_conv_k(&b, "dw", y, 96, 96, 3, 96), 96);
    y = b_clip(&b, "dw.clip", y, 0.0f, 6.0f);
    y = b_bn(&b, "p.bn", b_conv_k(&b, "p", y, 96, 32, 1, 1), 32);
    y = b_node(&b, "add", "Add", (int[]){r, y}, 2, NULL);
    y = b_conv(&b, "d", y, 32, 16);
    b_finish(&b, y);
    lego_tensor x;
    make(&x, LEGO_F32, 4, d, 1);
    par_set_min_work(1);
    conv_set_winograd(false); /* conv a stands for a dense 3x3 layer in NHWC */
    lego_tensor *first = NULL;
    for (int threads = 1; threads <= 2; threads++) {
        lego_set_num_threads(threads);
        lego_tensor *fused[1] = {0}, *plain[1] = {0};
        int nf, np, native_f, native_p;
        plan_run(&b.g, &x, true, fused, &nf, &native_f);
        int chains = plan_chains;
        plan_run(&b.g, &x, false, plain, &np, &native_p);
        /* 4 BNs, 3 clamps and the Add */
        CHECK(np == 13 && nf == np - 8);
        CHECK(plan_chains == 0); /* no fusion, no chains */
        /* a, e, dw, p and d read or write NHWC */
        CHECK(dnnl_conv_enabled() ? native_f == 5 : native_f == 0);
        CHECK(dnnl_conv_enabled() ? d[0] < 4 || chains == 1 : chains == 0);
        CHECK(fused[0] && plain[0] && same_values(fused[0], plain[0]));
        if (threads == 1) {
            first = fused[0];
            fused[0] = NULL;
        } else {
            CHECK(first && fused[0] &&
                  memcmp(first->data, fused[0]->data, lego_tensor_bytes(first)) == 0);
        }
        lego_tensor_free(fused[0]);
        lego_tensor_free(plain[0]);
    }
    par_set_min_work(0);
    conv_set_winograd(true);
    lego_tensor_free(first);
    tensor_release(&x);
    graph_free(&b.g);
}

/* ---- threads -------------------------------------------------------------- */

static int process_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

#if defined(__SANITIZE_THREAD__)
#define TSAN_THREADS 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN_THREADS 1
#endif
#endif
#ifndef TSAN_THREADS
#define TSAN_THREADS 0
#endif

static void no_openmp_threads(void)
{
    conv_case q = {.n = 4, .c = 32, .h = 16, .w = 16, .m = 64, .k = {3, 3}, .s = {1, 1},
                   .d = {1, 1}, .pads = {1, 1, 1, 1}, .group = 1, .bias = true, .bn = true,
                   .clamp = true, .lo = 0.0f, .hi = INFINITY};
    lego_tensor y;
    bool used;
    conv_run(&q, true, 3, &y, &used);
    tensor_release(&y);
    int n = process_threads();
    if (n >= 0) {
        /* the caller and our two workers, plus ThreadSanitizer's own background
         * thread when it runs the test */
        CHECK(n <= 3 + TSAN_THREADS);
        if (n > 3 + TSAN_THREADS)
            fprintf(stderr, "  %d threads after packed convs on 3 threads\n", n);
    }
}

/* A plan that only runs frees the weights its oneDNN kernels copied
 * (exec_release_packed) and computes the same bits after; the graph then
 * refuses a new plan and an export, and keeps what other readers (the
 * BatchNormalizations' statistics, fused or not) or a portable plan need. */
static void released_weights(const int64_t d[4])
{
    test_seed(5u);
    for (int portable = 0; portable < 2; portable++) {
        builder b;
        build(&b, d);
        b.g.portable_kernels = portable;
        lego_tensor x;
        make(&x, LEGO_F32, 4, d, 1);
        exec_plan p;
        CHECK_OK(exec_plan_build(&b.g, &p));
        const lego_tensor *ins[1] = {&x};
        lego_tensor *before[2] = {0}, *after[2] = {0};
        CHECK_OK(exec_run(&b.g, &p, ins, before));
        size_t freed = exec_release_packed(&b.g, p.steps, p.n_steps, p.st, p.vt);
        int w = graph_find_value(&b.g, "a.w"), bn = graph_find_value(&b.g, "c.bn.0");
        int fused = graph_find_value(&b.g, "a.bn.0");
        CHECK(w >= 0 && bn >= 0 && fused >= 0);
        bool dnnl = dnnl_conv_enabled() && !portable;
        CHECK(dnnl ? freed > 0 : freed == 0);
        CHECK(b.g.weights_released == (freed > 0));
        if (w >= 0)
            CHECK(dnnl ? !b.g.values[w].t.data && !p.vt[w].data : b.g.values[w].t.data != NULL);
        if (bn >= 0 && fused >= 0)
            CHECK(b.g.values[bn].t.data && b.g.values[fused].t.data);
        CHECK_OK(exec_run(&b.g, &p, ins, after));
        for (int i = 0; i < 2; i++) {
            CHECK(before[i] && after[i] && same_values(before[i], after[i]));
            lego_tensor_free(before[i]);
            lego_tensor_free(after[i]);
        }
        exec_plan q;
        lego_status st = exec_plan_build(&b.g, &q);
        CHECK(dnnl ? st.code != LEGO_OK && strstr(lego_status_msg(st), "released") : st.code == LEGO_OK);
        if (st.code == LEGO_OK)
            exec_plan_free(&q);
        lego_status_free(&st);
        unsigned char *buf = NULL;
        size_t len = 0;
        st = onnx_export(&b.g, NULL, NULL, &buf, &len);
        CHECK(dnnl ? st.code != LEGO_OK : st.code == LEGO_OK);
        lego_status_free(&st);
        free(buf);
        exec_plan_free(&p);
        tensor_release(&x);
        graph_free(&b.g);
    }
}

/* ---- Winograd weights packed by us ------------------------------------------ */

#ifdef LEGO_HAVE_DNNL
/* The weights layout oneDNN's Winograd inference primitive picks for oc x ic
 * 3x3 filters on an hw x hw map; false when it has none. */
static bool wino_weights_md(int64_t oc, int64_t ic, int64_t hw, dnnl_memory_desc_t *wei)
{
    dnnl_memory_desc_t src, dst, any;
    int64_t sd[4] = {1, ic, hw, hw}, dd[4] = {1, oc, hw, hw}, wd[4] = {oc, ic, 3, 3};
    conv_dnnl_md(&src, 4, sd, dnnl_nChw16c);
    conv_dnnl_md(&dst, 4, dd, dnnl_nChw16c);
    conv_dnnl_md(&any, 4, wd, dnnl_format_tag_any);
    dnnl_dims_t st = {1, 1}, pad = {1, 1};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd;
    if (dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_winograd, &src,
                                           &any, NULL, &dst, st, pad, pad) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &cd, NULL, conv_dnnl_engine(), NULL) != dnnl_success)
        return false;
    *wei = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    return true;
}
#endif

static void wino_packing(void)
{
#ifdef LEGO_HAVE_DNNL
    if (!dnnl_conv_winograd_available())
        return;
    /* oc, ic, map: blocks of 16 whole and cut on both sides, and layers the
     * runtime packs, in each of the three layouts oneDNN picks here */
    static const int64_t shapes[][3] = {
        {64, 64, 16}, {45, 64, 16}, {64, 45, 16}, {16, 26, 16}, {90, 32, 16}, {128, 128, 16},
        {256, 256, 16}, {48, 256, 16}, {103, 128, 16}, {64, 256, 8}, {64, 52, 8}, {45, 180, 8},
        {32, 128, 8}, {128, 103, 4}};
    int ours = 0, formats[8] = {0};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int64_t oc = shapes[i][0], ic = shapes[i][1];
        dnnl_memory_desc_t wei, plain;
        if (!wino_weights_md(oc, ic, shapes[i][2], &wei) || !dnnl_wino_packs(&wei))
            continue;
        ours++;
        formats[wei.format_desc.wino_desc.wino_format & 7]++;
        int64_t wd[4] = {oc, ic, 3, 3};
        conv_dnnl_md(&plain, 4, wd, dnnl_oihw);
        size_t bytes = dnnl_memory_desc_get_size(&wei);
        int64_t n = oc * ic * 9;
        float *w = malloc(sizeof *w * (size_t)n);
        float *got = malloc(bytes), *want = malloc(bytes);
        test_seed(77 + (uint32_t)i);
        for (int64_t k = 0; k < n; k++)
            w[k] = frand();
        memset(got, 0x7f, bytes); /* every byte must be written, the padding too */
        dnnl_wino_pack(&wei, w, oc, ic, got);
        dnnl_primitive_t r;
        CHECK(conv_dnnl_reorder(&plain, &wei, false, &r));
        conv_dnnl_arg a[2] = {{DNNL_ARG_FROM, &plain, w}, {DNNL_ARG_TO, &wei, want}};
        CHECK(conv_dnnl_execute(r, a, 2));
        dnnl_primitive_destroy(r);
        /* the same operations in the same order: the same bits */
        bool same = memcmp(got, want, bytes) == 0;
        if (!same)
            fprintf(stderr, "wino packing %lldx%lld differs from oneDNN's reorder\n", (long long)oc,
                    (long long)ic);
        CHECK(same);
        free(w), free(got), free(want);
    }
    CHECK(ours == (int)(sizeof shapes / sizeof *shapes));
    CHECK(formats[dnnl_wino_wei_OBaaIBOIio] && formats[dnnl_wino_wei_aaOBiOo] &&
          formats[dnnl_wino_wei_aaOio]);
    printf("winograd packing: %d of %zu shapes ours (F(4x4,3x3) %d, F(2x2,3x3) %d + %d)\n", ours,
           sizeof shapes / sizeof *shapes, formats[dnnl_wino_wei_OBaaIBOIio],
           formats[dnnl_wino_wei_aaOBiOo], formats[dnnl_wino_wei_aaOio]);
#endif
}

int main(void)
{
    sweep();
    winograd();
    blocked_clamp();
    depthwise_split();
    wino_packing();
    fusion((const int64_t[4]){2, 16, 9, 9});
    fusion((const int64_t[4]){1, 16, 20, 20});
    residual_adds();
    residual_output();
    strided_im2col();
    inverted_residual((const int64_t[4]){1, 32, 6, 6});
    inverted_residual((const int64_t[4]){1, 32, 20, 20});
    inverted_residual((const int64_t[4]){2, 32, 7, 7});
    inverted_residual((const int64_t[4]){4, 32, 9, 9});
    inverted_residual((const int64_t[4]){8, 32, 7, 7});
    computed_weights();
    bn_clamp();
    portable_plans((const int64_t[4]){2, 16, 9, 9});
    released_weights((const int64_t[4]){2, 16, 9, 9});
    no_openmp_threads();
    return harness_finish();
}
