/* test_conv_dnnl_train.c - the Conv of a train plan on oneDNN
 * (op_desc.train_pack, conv_dnnl_train.c) against the portable im2col +
 * BLAS forward and backward that test_ops_conv.c and test_ops_grad.c hold
 * to direct loops and to PyTorch:
 *  - random shapes (strides 1 and 2, pads, dilations, groups, depthwise,
 *    1x1, 3-channel stems, batches 1, 3, 8 and others, with and without
 *    bias) give y, dX, dW and dB within a stated tolerance, each gradient
 *    ADDED to what its buffer held;
 *  - the same bits with 1, 2 and 3 threads (the weight gradient's blocks
 *    of output channels depend on the shape only);
 *  - a second step after the weights change uses the new weights;
 *  - dX, dW and dB written into buffers of NaN when told they are fresh
 *    (op_call.fresh) equal what is added into zeros;
 *  - scratch from a workspace filled with NaN between calls (what a
 *    shared workspace may hold from other layers) changes nothing, and
 *    the weight gradient taken over the batch in chunks agrees too;
 *  - oneDNN takes almost every shape where it is built in (with its gate
 *    off: small 1x1 convolutions stay portable by default), and
 *    none when it is not (or LEGO_DNNL=0), nor for portable_kernels graphs. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/threads.h"
#include "graph/autodiff.h"
#include "onnx/onnx_import.h"
#include "ops/conv_dnnl.h"
#include "ops/conv_wino.h"
#include "ops/conv_dnnl_train.h"
#include "op_test.h"
#include "train/trainer.h"

extern const op_desc op_desc_Conv;

typedef struct tcase {
    int64_t n, c, h, w, m, k[2], s[2], d[2], pads[4], group;
    bool bias;
} tcase;

static void random_case(tcase *q, int trial)
{
    static const int64_t chans[] = {1, 3, 8, 16, 17, 32, 48, 64};
    static const int64_t batches[] = {1, 3, 8, 2, 5};
    *q = (tcase){0};
    int kind = trial % 5; /* 0 dense, 1 depthwise, 2 grouped, 3 stem (3 channels), 4 1x1 */
    int64_t c = chans[rnd(8)];
    q->group = 1;
    q->c = c;
    q->m = chans[rnd(8)];
    if (kind == 1)
        q->group = q->c = q->m = c;
    if (kind == 2) {
        q->group = 2;
        q->c = 2 * (1 + rnd(8));
        q->m = 2 * (1 + rnd(8));
    }
    if (kind == 3)
        q->c = 3;
    q->n = batches[trial / 5 % 5];
    q->h = 1 + rnd(14);
    q->w = 1 + rnd(14);
    for (int i = 0; i < 2; i++) {
        q->k[i] = kind == 4 ? 1 : 1 + rnd(3) * (rnd(2) ? 2 : 1); /* 1, 3, 5, 2 */
        q->s[i] = 1 + rnd(2);
        q->d[i] = rnd(4) == 0 ? 2 : 1;
    }
    for (int i = 0; i < 4; i++)
        q->pads[i] = kind == 4 ? 0 : rnd(3);
    q->bias = rnd(3) != 0;
}

static bool case_fits(const tcase *q)
{
    for (int i = 0; i < 2; i++) {
        int64_t in = i ? q->w : q->h, dk = (q->k[i] - 1) * q->d[i] + 1;
        if (in + q->pads[i] + q->pads[i + 2] < dk)
            return false;
    }
    return true;
}

/* One training step's results. */
typedef struct result {
    lego_tensor y, dx, dw, db;
    bool dnnl;      /* a train state was made */
    bool winograd;  /* it runs Winograd */
    int64_t chunks; /* its weight gradient's chunks of the batch */
} result;

/* When not NULL, the oneDNN calls of step() take their scratch from here,
 * NaN-filled before every call: no call may read what an earlier one left. */
static workspace *step_ws;

static void poison(workspace *w)
{
    if (w && w->data)
        memset(w->data, 0xff, w->bytes); /* all ones: a NaN */
}

static void result_free(result *r)
{
    tensor_release(&r->y), tensor_release(&r->dx), tensor_release(&r->dw), tensor_release(&r->db);
}

/* Forward then backward of q on seeded data, with the train state
 * (train) or the portable path, at `threads`; the gradients are added
 * into buffers prefilled with seeded values. With `steps` 2, the weights
 * change after the first step and the second step's results are kept. */
static void step(const tcase *q, bool train, bool portable, int threads, int steps, result *r)
{
    lego_set_num_threads(threads);
    test_seed(777u);
    int64_t xd[4] = {q->n, q->c, q->h, q->w}, wd[4] = {q->m, q->c / q->group, q->k[0], q->k[1]};
    lego_tensor x, w, b, dy = {0};
    make(&x, LEGO_F32, 4, xd, 1);
    make(&w, LEGO_F32, 4, wd, 1);
    make(&b, LEGO_F32, 1, &q->m, 1);
    make(&r->dx, LEGO_F32, 4, xd, 1);
    make(&r->dw, LEGO_F32, 4, wd, 1);
    make(&r->db, LEGO_F32, 1, &q->m, 1);
    attrs l = {0};
    add_ints(&l, "kernel_shape", 2, q->k);
    add_ints(&l, "strides", 2, q->s);
    add_ints(&l, "dilations", 2, q->d);
    add_ints(&l, "pads", 4, q->pads);
    add_int(&l, "group", q->group);
    attr_list al = {l.n, l.a};
    lego_tensor *in[3] = {&x, &w, q->bias ? &b : NULL}, *out[1] = {&r->y};
    void *params = calloc(1, op_desc_Conv.params_size);
    op_call c = {.attrs = &al, .node_name = "", .opset = 17, .n_in = 3, .n_out = 1, .in = in,
                 .out = out, .params = params, .training = true, .portable = portable};
    r->y = (lego_tensor){0};
    CHECK_OK(op_desc_Conv.prepare(&c));
    CHECK_OK(tensor_alloc(&r->y));
    make(&dy, LEGO_F32, 4, r->y.dims, 1);
    void *state = NULL;
    if (train)
        CHECK_OK(op_desc_Conv.train_pack(&c, &state));
    r->dnnl = conv_trained_dnnl(state) != NULL;
    r->winograd = conv_trained_winograd(state);
    c.train_state = state;
    c.ws = step_ws;
    lego_tensor *dout[1] = {&dy}, *din[3] = {&r->dx, &r->dw, q->bias ? &r->db : NULL};
    for (int s = 0; s < steps; s++) {
        if (s > 0) { /* an optimizer step: new weights, fresh gradients */
            float *wv = w.data;
            for (int64_t i = 0; i < lego_tensor_numel(&w); i++)
                wv[i] = wv[i] * 0.5f - 0.25f;
            memset(r->dx.data, 0, lego_tensor_bytes(&r->dx));
            memset(r->dw.data, 0, lego_tensor_bytes(&r->dw));
            memset(r->db.data, 0, lego_tensor_bytes(&r->db));
        }
        /* the second step's forward as an evaluation's (training false):
         * the state keeps no weights then, and backward reorders its own */
        c.training = s == 0;
        poison(step_ws);
        op_desc_Conv.forward(&c);
        poison(step_ws);
        op_desc_Conv.backward(&c, dout, din);
    }
    /* dX, dW and dB into zeros, and written fresh over NaN */
    const lego_tensor *like[3] = {&x, &w, &b};
    lego_tensor z[3], f[3];
    lego_tensor *dz[3] = {NULL}, *df[3] = {NULL};
    int grads = q->bias ? 3 : 2;
    for (int i = 0; i < grads; i++) {
        make(&z[i], LEGO_F32, like[i]->rank, like[i]->dims, 1);
        make(&f[i], LEGO_F32, like[i]->rank, like[i]->dims, 1);
        memset(z[i].data, 0, lego_tensor_bytes(&z[i]));
        for (int64_t k = 0; k < lego_tensor_numel(&f[i]); k++)
            ((float *)f[i].data)[k] = NAN;
        dz[i] = &z[i], df[i] = &f[i];
    }
    op_desc_Conv.backward(&c, dout, dz);
    c.fresh = 7u;
    op_desc_Conv.backward(&c, dout, df);
    c.fresh = 0;
    for (int i = 0; i < grads; i++) {
        bool same = true;
        for (int64_t k = 0; k < lego_tensor_numel(&f[i]) && same; k++)
            same = ((float *)f[i].data)[k] == ((float *)z[i].data)[k];
        CHECK(same);
        tensor_release(&z[i]), tensor_release(&f[i]);
    }
    r->chunks = r->dnnl ? dnnl_conv_train_chunks(conv_trained_dnnl(state)) : 0;
    if (state)
        op_desc_Conv.train_unpack(state);
    free(params);
    tensor_release(&x), tensor_release(&w), tensor_release(&b), tensor_release(&dy);
}

static void describe(const tcase *q, int trial, char *what, size_t len)
{
    snprintf(what, len,
             "trial %d: x %lldx%lldx%lldx%lld m %lld k %lldx%lld s %lldx%lld d %lldx%lld pads "
             "%lld,%lld,%lld,%lld group %lld bias %d",
             trial, (long long)q->n, (long long)q->c, (long long)q->h, (long long)q->w,
             (long long)q->m, (long long)q->k[0], (long long)q->k[1], (long long)q->s[0],
             (long long)q->s[1], (long long)q->d[0], (long long)q->d[1], (long long)q->pads[0],
             (long long)q->pads[1], (long long)q->pads[2], (long long)q->pads[3],
             (long long)q->group, q->bias);
}

/* Tolerance, for an output that sums T products of values in [-1, 1]:
 * 2e-6*T of the tensor's largest magnitude (check_close scales atol by
 * max|want|), at least 1e-5, plus 1e-4 relative. Both paths sum the same
 * products in different orders (oneDNN's blocked kernels against GEMM
 * tiles; dB in float against conv.c's double), and two float orders of a
 * T-term sum differ by about sqrt(T), at worst T, roundings of 2^-24 of its
 * magnitude: 2e-6*T is some 30 roundings per term. A wrong index or a lost
 * term changes a sum by about 1/T of it at least, and 1/T > 2e-6*T for
 * every T < 700, which covers these shapes (T is at most 5*5*64 = 1600 for
 * y and dX, and up to 8*15*15 for dW: those still catch a lost image or
 * channel, which moves a sum by far more than one term). */
static float tol(int64_t terms)
{
    float t = 2e-6f * (float)terms;
    return t > 1e-5f ? t : 1e-5f;
}

static bool same_bits(const lego_tensor *a, const lego_tensor *b)
{
    return memcmp(a->data, b->data, lego_tensor_bytes(a)) == 0;
}

static void sweep(void)
{
    int cases = 0, dnnl_cases = 0, chunked = 0;
    par_set_min_work(1); /* small shapes split over threads too */
    dnnl_conv_train_gate(false); /* oneDNN on the small shapes too */
    workspace ws = {0};
    for (int trial = 0; trial < 100; trial++) {
        tcase q;
        test_seed(1000u + (uint32_t)trial);
        random_case(&q, trial);
        if (!case_fits(&q))
            continue;
        char what[300], part[340];
        describe(&q, trial, what, sizeof what);
        result want, got;
        step(&q, false, false, 1, 1, &want);
        /* every other case: the weight gradient in chunks of at most two
         * images; every third: scratch from the shared poisoned workspace */
        int64_t image = 4 * (q.c * q.h * q.w + q.m * want.y.dims[2] * want.y.dims[3]);
        dnnl_conv_train_set_chunk(trial % 2 ? (size_t)(2 * image) : 0);
        step_ws = trial % 3 ? NULL : &ws;
        step(&q, true, false, 1, 1, &got);
        int64_t k_terms = q.c / q.group * q.k[0] * q.k[1];
        int64_t pix = want.y.dims[2] * want.y.dims[3];
        int64_t w_terms = q.n * pix, x_terms = q.m / q.group * q.k[0] * q.k[1];
        snprintf(part, sizeof part, "%s: y", what);
        check_close(got.y.data, want.y.data, (long)lego_tensor_numel(&want.y), tol(k_terms), 1e-4f, part);
        snprintf(part, sizeof part, "%s: dx", what);
        check_close(got.dx.data, want.dx.data, (long)lego_tensor_numel(&want.dx), tol(x_terms), 1e-4f, part);
        snprintf(part, sizeof part, "%s: dw", what);
        check_close(got.dw.data, want.dw.data, (long)lego_tensor_numel(&want.dw), tol(w_terms), 1e-4f, part);
        snprintf(part, sizeof part, "%s: db", what);
        check_close(got.db.data, want.db.data, (long)lego_tensor_numel(&want.db), tol(w_terms), 1e-4f, part);
        for (int t = 2; t <= 3; t++) {
            result more;
            step(&q, true, false, t, 1, &more);
            bool same = same_bits(&got.y, &more.y) && same_bits(&got.dx, &more.dx) &&
                        same_bits(&got.dw, &more.dw) && same_bits(&got.db, &more.db);
            if (!same)
                fprintf(stderr, "  %s: differs between 1 and %d threads\n", what, t);
            CHECK(same && more.dnnl == got.dnnl && more.chunks == got.chunks);
            result_free(&more);
        }
        cases++;
        dnnl_cases += got.dnnl;
        chunked += got.chunks > 1;
        /* chunks of at most two images, where the batch has such divisors */
        if (got.chunks && trial % 2 && q.n != 1 && q.n % 2 == 0)
            CHECK(got.chunks >= q.n / 2);
        result_free(&want), result_free(&got);
    }
    step_ws = NULL;
    workspace_free(&ws);
    dnnl_conv_train_set_chunk(0);
    par_set_min_work(0);
    dnnl_conv_train_gate(true);
    CHECK(cases > 60);
    if (dnnl_conv_enabled())
        CHECK(dnnl_cases > cases * 3 / 4 && chunked > 10);
    else
        CHECK(dnnl_cases == 0);
    printf("train conv: %d random cases, %d through oneDNN, %d of them with the batch in chunks\n",
           cases, dnnl_cases, chunked);
}

/* The weights change between steps (an optimizer's): the second step must
 * see the new ones, in forward and in backward. */
static void second_step(void)
{
    tcase q = {.n = 8, .c = 16, .h = 10, .w = 10, .m = 32, .k = {3, 3}, .s = {1, 1},
               .d = {1, 1}, .pads = {1, 1, 1, 1}, .group = 1, .bias = true};
    result want, got;
    for (int depthwise = 0; depthwise < 2; depthwise++) {
        if (depthwise) /* MobileNet's: 32 channels, stride 2 */
            q.c = q.m = q.group = 32, q.s[0] = q.s[1] = 2;
        step(&q, false, false, 2, 2, &want);
        step(&q, true, false, 2, 2, &got);
        check_close(got.y.data, want.y.data, (long)lego_tensor_numel(&want.y), tol(144), 1e-4f, "second step y");
        check_close(got.dx.data, want.dx.data, (long)lego_tensor_numel(&want.dx), tol(288), 1e-4f, "second step dx");
        check_close(got.dw.data, want.dw.data, (long)lego_tensor_numel(&want.dw), tol(800), 1e-4f, "second step dw");
        check_close(got.db.data, want.db.data, (long)lego_tensor_numel(&want.db), tol(800), 1e-4f, "second step db");
        CHECK(got.dnnl == dnnl_conv_enabled());
        result_free(&want), result_free(&got);
    }
    /* the gate: a small 1x1 convolution keeps the portable path */
    tcase small = q;
    small.c = small.m = 8, small.group = 1, small.k[0] = small.k[1] = 1;
    memset(small.pads, 0, sizeof small.pads);
    step(&small, true, false, 1, 1, &got);
    CHECK(!got.dnnl);
    result_free(&got);
    /* portable_kernels graphs never take oneDNN */
    step(&q, true, true, 2, 1, &got);
    CHECK(!got.dnnl);
    result_free(&got);
}

/* 3x3 convolutions of stride 1 with 16 or more input channels train
 * through Winograd where the CPU has oneDNN's kernels (AVX-512), and
 * elsewhere those our Winograd takes (wino_conv_fits; of these shapes, all
 * but 32 channels on 7x7) run their forward, dX and dW through it: forward,
 * dX, dW and dB within the
 * tolerance of the portable path, over two steps (new weights in between),
 * the same bits on 1, 2 and 3 threads. */
static void winograd(void)
{
    static const int64_t shapes[][5] = {
        /* n, c, hw, m, pad */
        {8, 64, 16, 64, 1}, {4, 32, 32, 45, 1}, {2, 45, 24, 64, 1},
        {32, 384, 4, 192, 1}, /* more channel pairs than an inference plan keeps */
        {16, 24, 32, 24, 1}, {4, 32, 9, 32, 0}, {8, 64, 8, 64, 1},
    };
    int taken = 0, ours = 0;
    conv_set_winograd(true); /* whatever LEGO_WINOGRAD says: this tests it */
    par_set_min_work(1);
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const int64_t *v = shapes[i];
        tcase q = {.n = v[0], .c = v[1], .h = v[2], .w = v[2], .m = v[3], .k = {3, 3},
                   .s = {1, 1}, .d = {1, 1}, .pads = {v[4], v[4], v[4], v[4]}, .group = 1,
                   .bias = true};
        char what[300], part[340];
        describe(&q, (int)i, what, sizeof what);
        conv_shape s = {.c = q.c, .h = q.h, .w = q.w, .m = q.m, .ho = q.h + 2 * v[4] - 2,
                        .wo = q.w + 2 * v[4] - 2, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1,
                        .dw = 1, .pad_t = v[4], .pad_l = v[4], .group = 1};
        ours += wino_conv_fits(&s, q.n);
        result want, got, more;
        step(&q, false, false, 1, 2, &want);
        step(&q, true, false, 1, 2, &got);
        taken += got.winograd;
        int64_t pix = q.h * q.w; /* pad 0 only shrinks it */
        snprintf(part, sizeof part, "winograd %s: y", what);
        check_close(got.y.data, want.y.data, (long)lego_tensor_numel(&want.y), tol(q.c * 9), 1e-4f, part);
        snprintf(part, sizeof part, "winograd %s: dx", what);
        check_close(got.dx.data, want.dx.data, (long)lego_tensor_numel(&want.dx), tol(q.m * 9), 1e-4f, part);
        snprintf(part, sizeof part, "winograd %s: dw", what);
        check_close(got.dw.data, want.dw.data, (long)lego_tensor_numel(&want.dw), tol(q.n * pix), 1e-4f, part);
        snprintf(part, sizeof part, "winograd %s: db", what);
        check_close(got.db.data, want.db.data, (long)lego_tensor_numel(&want.db), tol(q.n * pix), 1e-4f, part);
        for (int t = 2; t <= 3; t++) {
            step(&q, true, false, t, 2, &more);
            CHECK(more.winograd == got.winograd && same_bits(&got.y, &more.y) &&
                  same_bits(&got.dx, &more.dx) && same_bits(&got.dw, &more.dw) &&
                  same_bits(&got.db, &more.db));
            result_free(&more);
        }
        result_free(&want), result_free(&got);
    }
    par_set_min_work(0);
    if (dnnl_conv_winograd_available())
        CHECK(taken >= 5);
    else
        CHECK(taken == ours); /* ours: every shape it fits, oneDNN there or not */
    printf("train winograd: %d of %zu shapes\n", taken, sizeof shapes / sizeof *shapes);
}

/* One step of a whole model's train plan: every parameter's gradient,
 * oneDNN's plan against the same graph with portable_kernels. A random
 * output gradient stands in for a loss. */
static void plan_grads(const char *file, bool portable, float lr, float **grads, int *n_params,
                       int64_t **sizes)
{
    unsigned char *buf;
    size_t len;
    lego_graph g;
    *grads = NULL, *n_params = 0, *sizes = NULL;
    lego_status st = file_read_all(file, &buf, &len);
    CHECK_OK(st);
    if (st.code) /* run from elsewhere than tests/ (ctest's directory) */
        return;
    st = onnx_import(buf, len, "m", &g);
    CHECK_OK(st);
    free(buf);
    if (st.code)
        return;
    CHECK_OK(graph_infer(&g));
    g.portable_kernels = portable;
    int *params, np;
    CHECK_OK(train_trainable_params(&g, &params, &np));
    int in = g.inputs[0], out = g.outputs[0];
    train_plan p;
    CHECK_OK(train_plan_build(&g, &in, 1, &out, 1, params, np, &p));
    workspace shared = {0}; /* as retraining's groups share one, poisoned between passes */
    train_plan_use_workspace(&p, &shared);
    lego_tensor x;
    test_seed(99u);
    make(&x, LEGO_F32, g.values[in].t.rank, g.values[in].t.dims, 1);
    const lego_tensor *xs[1] = {&x};
    for (int s = 0; s < 2; s++) { /* a small SGD step between: the weights change */
        for (int i = 0; s > 0 && i < np; i++) {
            float *w = train_param(&p, i)->data;
            const float *d = train_param_grad(&p, i)->data;
            for (int64_t j = 0; j < lego_tensor_numel(train_param(&p, i)); j++)
                w[j] -= lr * d[j];
        }
        poison(&shared);
        CHECK_OK(train_forward(&p, xs, true));
        lego_tensor *dy = train_output_grad(&p, 0);
        float *d = dy->data;
        for (int64_t i = 0; i < lego_tensor_numel(dy); i++)
            d[i] = frand();
        poison(&shared);
        train_backward(&p);
    }
    *n_params = np;
    *grads = NULL;
    *sizes = calloc((size_t)np, sizeof **sizes);
    int64_t total = 0;
    for (int i = 0; i < np; i++)
        total += (*sizes)[i] = lego_tensor_numel(train_param_grad(&p, i));
    *grads = malloc(sizeof(float) * (size_t)total);
    for (int i = 0, at = 0; i < np; i++) {
        memcpy(*grads + at, train_param_grad(&p, i)->data, sizeof(float) * (size_t)(*sizes)[i]);
        at += (int)(*sizes)[i];
    }
    CHECK(portable == (shared.data == NULL) || !dnnl_conv_enabled());
    tensor_release(&x);
    train_plan_free(&p);
    workspace_free(&shared);
    free(params);
    graph_free(&g);
}

/* lr 0 for MobileNetV2's fixture, whose float32 gradients are
 * ill-conditioned (tests/data/train/README.md): after any step its
 * gradients move by percents for changes at the rounding level. */
static void plan_step(const char *file, float lr)
{
    float *want, *got;
    int64_t *ws, *gs;
    int nw, ng;
    plan_grads(file, true, lr, &want, &nw, &ws);
    plan_grads(file, false, lr, &got, &ng, &gs);
    CHECK(nw == ng);
    for (int i = 0, at = 0; i < nw && nw == ng; i++) {
        char what[128];
        snprintf(what, sizeof what, "%s parameter %d", file, i);
        check_close(got + at, want + at, (long)ws[i], 2e-3f, 1e-3f, what);
        at += (int)ws[i];
    }
    free(want), free(got), free(ws), free(gs);
}

/* Channel counts that pruning leaves (7, 13, 45: no multiple of oneDNN's
 * blocks of 16), at the small maps and batch of test_retrain's blocks,
 * over two steps with a weight change between; on two threads the same bits
 * as on one (45 outputs: two weight-gradient blocks, 32 and 13; 32 or
 * fewer: one block, its batch in two halves, so at least two chunks). */
static void pruned(void)
{
    static const int64_t shp[][4] = {{7, 4, 16, 16}, {45, 1, 64, 16}, {8, 8, 6, 16}, {7, 2, 32, 16},
                                     {64, 1, 64, 16}, {13, 2, 32, 16}, {32, 8, 45, 16}};
    for (int i = 0; i < 7; i++) {
        tcase q = {.n = shp[i][3], .c = shp[i][0], .h = shp[i][1], .w = shp[i][1], .m = shp[i][2], .k = {3, 3}, .s = {1, 1},
                   .d = {1, 1}, .pads = {1, 1, 1, 1}, .group = 1, .bias = false};
        result want, got;
        step(&q, false, false, 1, 2, &want);
        step(&q, true, false, 1, 2, &got);
        char what[64];
        snprintf(what, sizeof what, "pruned %d", i);
        check_close(got.y.data, want.y.data, (long)lego_tensor_numel(&want.y), 1e-3, 1e-4f, what);
        check_close(got.dx.data, want.dx.data, (long)lego_tensor_numel(&want.dx), 1e-3, 1e-4f, what);
        check_close(got.dw.data, want.dw.data, (long)lego_tensor_numel(&want.dw), 1e-3, 1e-4f, what);
        result two;
        step(&q, true, false, 2, 2, &two);
        CHECK(memcmp(two.dw.data, got.dw.data, lego_tensor_bytes(&got.dw)) == 0 &&
              memcmp(two.dx.data, got.dx.data, lego_tensor_bytes(&got.dx)) == 0);
        if (got.dnnl && q.m <= 32)
            CHECK(got.chunks >= 2);
        result_free(&want), result_free(&got), result_free(&two);
    }
}

int main(void)
{
    pruned();
    plan_step("data/models/resnet18.onnx", 1e-3f);
    plan_step("data/train/resnet18_train.onnx", 1e-3f);
    plan_step("data/train/mobilenetv2_train.onnx", 0.0f);
    sweep();
    second_step();
    winograd();
    return harness_finish();
}
