/* test_conv_wino.c - the portable Winograd F(4x4,3x3) forward (conv_wino.c)
 * called directly, on any CPU (whether or not plans would choose it here):
 *  - against a direct convolution summed in double, on shapes covering
 *    edge tiles (maps not a multiple of 4), every padding from 0 to 2 on
 *    each side, units that are bands of tile rows and units of several
 *    images, with and without bias, BatchNorm scale and clamp;
 *  - the same bits on 1, 2 and 3 threads;
 *  - the epilogue rounds as the separate ops do: the fused result equals
 *    the unfused one followed by y*a + b and the clamp;
 *  - the weight gradient (wino_conv_weight_grad) against a direct sum in
 *    double, over one chunk of tiles and several (a chunk ending inside an
 *    image), by tile rows and staged (maps of 1 or 2 tiles per row), the
 *    same bits on 1, 2 and 3 threads, added into zeros equal to written
 *    fresh;
 *  - which shapes fit (wino_conv_fits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "core/threads.h"
#include "harness.h"
#include "op_test.h"
#include "ops/conv_wino.h"

typedef struct wcase {
    int64_t n, c, h, w, m, pt, pl, pb, pr;
    bool bias, bn, clamp;
} wcase;

static conv_shape shape_of(const wcase *q)
{
    return (conv_shape){.c = q->c, .h = q->h, .w = q->w, .m = q->m,
                        .ho = q->h + q->pt + q->pb - 2, .wo = q->w + q->pl + q->pr - 2,
                        .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                        .pad_t = q->pt, .pad_l = q->pl, .group = 1};
}

static float *random_floats(int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}

/* Direct convolution in double, plus bias. */
static void reference(const wcase *q, const conv_shape *s, const float *x, const float *w,
                      const float *b, float *y)
{
    for (int64_t n = 0; n < q->n; n++)
        for (int64_t m = 0; m < s->m; m++)
            for (int64_t i = 0; i < s->ho; i++)
                for (int64_t j = 0; j < s->wo; j++) {
                    double acc = b ? b[m] : 0.0;
                    for (int64_t c = 0; c < s->c; c++)
                        for (int64_t ki = 0; ki < 3; ki++)
                            for (int64_t kj = 0; kj < 3; kj++) {
                                int64_t r = i + ki - s->pad_t, col = j + kj - s->pad_l;
                                if (r < 0 || r >= s->h || col < 0 || col >= s->w)
                                    continue;
                                acc += (double)x[((n * s->c + c) * s->h + r) * s->w + col] *
                                       w[((m * s->c + c) * 3 + ki) * 3 + kj];
                            }
                    y[((n * s->m + m) * s->ho + i) * s->wo + j] = (float)acc;
                }
}

static float *run_wino(const wcase *q, const conv_shape *s, const float *x, const float *w,
                       const float *b, const conv_epilogue *ep, int threads)
{
    lego_set_num_threads(threads);
    wino_conv *k = NULL;
    CHECK_OK(wino_conv_create(s, q->n, w, b, ep, &k));
    int64_t ny = q->n * s->m * s->ho * s->wo;
    float *y = malloc(sizeof(float) * (size_t)ny);
    for (int64_t i = 0; i < ny; i++)
        y[i] = NAN;
    CHECK(k && wino_conv_run(k, w, b, x, NULL, y, NULL));
    /* kept up to 256x256 channel pairs, else transformed on each run */
    bool keeps = s->m * s->c <= 256 * 256;
    CHECK(keeps ? wino_conv_packed_bytes(k) >= sizeof(float) * 36 * (size_t)(s->m * s->c)
                : wino_conv_packed_bytes(k) == 0);
    if (keeps)
        CHECK(!wino_conv_run_flipped(k, w, x, y, false, NULL)); /* it has a forward's weights */
    wino_conv_free(k);

    /* a train plan's state: the weights with each call, transformed into
     * the workspace; the same bits */
    CHECK_OK(wino_conv_create(s, q->n, NULL, NULL, ep, &k));
    float *again = malloc(sizeof(float) * (size_t)ny);
    workspace ws = {0};
    CHECK(k && wino_conv_packed_bytes(k) == 0);
    CHECK(wino_conv_run(k, w, b, x, NULL, again, &ws));
    CHECK(memcmp(again, y, sizeof(float) * (size_t)ny) == 0);
    /* the input gradient's run (weights turned) added into y, as a dX that
     * is not fresh: y + the fresh result, exactly */
    if (!ep->scale && !ep->clamp && !b) {
        float *fresh = malloc(sizeof(float) * (size_t)ny), *sum = malloc(sizeof(float) * (size_t)ny);
        float *base = random_floats(ny);
        memcpy(sum, base, sizeof(float) * (size_t)ny);
        wino_conv *kd = NULL; /* as conv.c makes it: no weights, no epilogue */
        CHECK_OK(wino_conv_create(s, q->n, NULL, NULL, NULL, &kd));
        CHECK(kd && wino_conv_run_flipped(kd, w, x, fresh, false, &ws));
        CHECK(kd && wino_conv_run_flipped(kd, w, x, sum, true, &ws));
        bool same = true;
        for (int64_t i = 0; i < ny && same; i++)
            same = sum[i] == base[i] + fresh[i];
        CHECK(same);
        CHECK(!wino_conv_run_flipped(k, w, x, sum, true, &ws)); /* k has an epilogue */
        wino_conv_free(kd);
        free(fresh), free(sum), free(base);
    }
    workspace_free(&ws);
    wino_conv_free(k);
    free(again);
    return y;
}

static void one_case(const wcase *q)
{
    conv_shape s = shape_of(q);
    int64_t nx = q->n * q->c * q->h * q->w, ny = q->n * q->m * s.ho * s.wo;
    float *x = random_floats(nx), *w = random_floats(q->m * q->c * 9);
    float *b = q->bias ? random_floats(q->m) : NULL;
    float *a = random_floats(q->m), *sh = random_floats(q->m);
    char what[160];
    snprintf(what, sizeof what, "n%lld c%lld %lldx%lld m%lld pads %lld,%lld,%lld,%lld%s%s%s",
             (long long)q->n, (long long)q->c, (long long)q->h, (long long)q->w, (long long)q->m,
             (long long)q->pt, (long long)q->pl, (long long)q->pb, (long long)q->pr,
             q->bias ? " bias" : "", q->bn ? " bn" : "", q->clamp ? " clamp" : "");

    float *want = malloc(sizeof(float) * (size_t)ny);
    reference(q, &s, x, w, b, want);
    conv_epilogue none = {0};
    float *plain = run_wino(q, &s, x, w, b, &none, 1);
    /* Winograd rounds differently from the direct sum: within 1e-4 of the
     * largest output, as oneDNN's Winograd is held in test_conv_dnnl */
    CHECK(check_close(plain, want, (long)ny, 1e-4f, 1e-4f, what));

    conv_epilogue ep = {.scale = q->bn ? a : NULL, .shift = q->bn ? sh : NULL, .clamp = q->clamp,
                        .lo = 0.0f, .hi = q->bn ? 6.0f : INFINITY};
    float *fused = run_wino(q, &s, x, w, b, &ep, 1);
    /* the unfused result through the same steps as batchnorm.c and the clamp */
    int64_t pix = s.ho * s.wo;
    bool same = true;
    for (int64_t i = 0; i < ny; i++) {
        int64_t m = i / pix % q->m;
        float v = plain[i];
        if (ep.scale)
            v = v * ep.scale[m] + ep.shift[m];
        if (ep.clamp) {
            v = v < ep.lo ? ep.lo : v;
            v = v > ep.hi ? ep.hi : v;
        }
        same = same && (v == fused[i] || (isnan(v) && isnan(fused[i])));
    }
    CHECK(same);
    for (int t = 2; t <= 3; t++) {
        float *more = run_wino(q, &s, x, w, b, &ep, t);
        CHECK(memcmp(more, fused, sizeof(float) * (size_t)ny) == 0);
        free(more);
    }
    lego_set_num_threads(1);
    free(x), free(w), free(b), free(a), free(sh), free(want), free(plain), free(fused);
}

static void shapes(void)
{
    static const wcase cases[] = {
        {1, 16, 8, 8, 16, 1, 1, 1, 1, true, true, true},        /* one image, 2x2 tiles */
        {2, 16, 9, 11, 24, 1, 1, 1, 1, false, false, true},     /* edge tiles both ways */
        {3, 20, 7, 5, 17, 0, 0, 0, 0, true, false, false},      /* no padding, odd channels */
        {1, 32, 32, 32, 32, 1, 1, 1, 1, true, true, true},      /* bands of tile rows */
        {2, 16, 13, 6, 16, 2, 0, 1, 2, true, true, false},      /* uneven pads */
        {16, 24, 4, 4, 40, 1, 1, 1, 1, true, false, true},      /* several images per unit */
        {8, 64, 8, 8, 64, 1, 1, 1, 1, false, true, true},
        {1, 16, 40, 18, 16, 1, 2, 0, 1, false, false, false},   /* tall map, many bands */
        {5, 48, 6, 6, 32, 1, 1, 1, 1, true, true, true},        /* a batch with no divisor */
        {2, 260, 5, 6, 257, 1, 1, 1, 1, true, true, true},      /* weights not kept: channel units */
        {3, 300, 4, 4, 270, 1, 1, 1, 1, false, false, false},   /* and the input gradient's */
        {4, 264, 18, 17, 256, 1, 1, 1, 1, false, true, false},  /* channel units over edge tiles */
        {9, 24, 6, 3, 16, 1, 1, 1, 2, true, false, true},       /* rows of 3 copied (staged) */
        {3, 16, 10, 15, 16, 1, 1, 1, 0, false, true, false},    /* rows of 15 into 16 */
    };
    par_set_min_work(1); /* small units still spread over the threads */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        one_case(&cases[i]);
    par_set_min_work(0);
}

/* dW[m][c][ki][kj] = sum over images and outputs of dy * x, in double. */
static void reference_grad(const wcase *q, const conv_shape *s, const float *x, const float *dy,
                           float *dw)
{
    for (int64_t m = 0; m < s->m; m++)
        for (int64_t c = 0; c < s->c; c++)
            for (int64_t ki = 0; ki < 3; ki++)
                for (int64_t kj = 0; kj < 3; kj++) {
                    double acc = 0.0;
                    for (int64_t n = 0; n < q->n; n++)
                        for (int64_t i = 0; i < s->ho; i++) {
                            int64_t r = i + ki - s->pad_t;
                            if (r < 0 || r >= s->h)
                                continue;
                            const float *dyr = dy + ((n * s->m + m) * s->ho + i) * s->wo;
                            const float *xr = x + ((n * s->c + c) * s->h + r) * s->w;
                            for (int64_t j = 0; j < s->wo; j++) {
                                int64_t col = j + kj - s->pad_l;
                                if (col >= 0 && col < s->w)
                                    acc += (double)dyr[j] * xr[col];
                            }
                        }
                    dw[((m * s->c + c) * 3 + ki) * 3 + kj] = (float)acc;
                }
}

static float *run_grad(const wcase *q, const conv_shape *s, const float *x, const float *dy,
                       int threads, bool fresh)
{
    lego_set_num_threads(threads);
    wino_conv *k = NULL;
    CHECK_OK(wino_conv_create(s, q->n, NULL, NULL, NULL, &k));
    int64_t nw = s->m * s->c * 9;
    float *dw = malloc(sizeof(float) * (size_t)nw);
    for (int64_t i = 0; i < nw; i++)
        dw[i] = fresh ? NAN : 0.0f;
    workspace ws = {0};
    CHECK(k && wino_conv_weight_grad(k, x, dy, dw, fresh, &ws));
    workspace_free(&ws);
    wino_conv_free(k);
    return dw;
}

static void grad_case(const wcase *q)
{
    conv_shape s = shape_of(q);
    int64_t nx = q->n * q->c * q->h * q->w, ny = q->n * q->m * s.ho * s.wo, nw = q->m * q->c * 9;
    float *x = random_floats(nx), *dy = random_floats(ny);
    char what[160];
    snprintf(what, sizeof what, "dW n%lld c%lld %lldx%lld m%lld pads %lld,%lld,%lld,%lld",
             (long long)q->n, (long long)q->c, (long long)q->h, (long long)q->w, (long long)q->m,
             (long long)q->pt, (long long)q->pl, (long long)q->pb, (long long)q->pr);
    float *want = malloc(sizeof(float) * (size_t)nw);
    reference_grad(q, &s, x, dy, want);
    float *got = run_grad(q, &s, x, dy, 1, true);
    CHECK(check_close(got, want, (long)nw, 1e-4f, 1e-4f, what));
    float *added = run_grad(q, &s, x, dy, 1, false);
    CHECK(memcmp(added, got, sizeof(float) * (size_t)nw) == 0);
    for (int t = 2; t <= 3; t++) {
        float *more = run_grad(q, &s, x, dy, t, true);
        CHECK(memcmp(more, got, sizeof(float) * (size_t)nw) == 0);
        free(more);
    }
    lego_set_num_threads(1);
    free(x), free(dy), free(want), free(got), free(added);
}

static void weight_grads(void)
{
    static const wcase cases[] = {
        {2, 16, 9, 11, 24, 1, 1, 1, 1, false, false, false},  /* edge tiles both ways */
        {3, 20, 7, 5, 17, 0, 0, 0, 0, false, false, false},   /* no padding */
        {2, 16, 13, 6, 16, 2, 0, 1, 2, false, false, false},  /* uneven pads */
        {15, 64, 32, 32, 64, 1, 1, 1, 1, false, false, false}, /* two chunks, the first ending mid-image */
        {60, 256, 4, 4, 256, 1, 1, 1, 1, false, false, false}, /* small maps (staged), two chunks */
        {9, 24, 6, 3, 16, 1, 1, 1, 2, false, false, false},    /* rows of 3 */
    };
    par_set_min_work(1);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        grad_case(&cases[i]);
    par_set_min_work(0);
}

static void fits(void)
{
    conv_shape s = {.c = 64, .h = 32, .w = 32, .m = 64, .ho = 32, .wo = 32, .kh = 3, .kw = 3,
                    .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pad_t = 1, .pad_l = 1, .group = 1};
    conv_set_winograd(true);
    bool base = wino_conv_fits(&s, 32);
    conv_shape t = s;
    t.sh = t.sw = 2, t.ho = t.wo = 16;
    CHECK(!wino_conv_fits(&t, 32)); /* stride 2 */
    t = s, t.group = 2;
    CHECK(!wino_conv_fits(&t, 32));
    t = s, t.c = t.m = 512, t.h = t.w = t.ho = t.wo = 4;
    CHECK(wino_conv_fits(&t, 32) == base); /* its weights transformed on each call */
    t = s, t.c = 4;
    CHECK(!wino_conv_fits(&t, 32)); /* GEMMs too thin */
    t = s, t.c = t.m = 16;
    CHECK(!wino_conv_fits(&t, 32)); /* too little work per image: direct is faster */
    t = s, t.c = 13;
    CHECK(wino_conv_fits(&t, 32) == base); /* a pruned 64-channel layer */
    t = s, t.h = t.w = t.ho = t.wo = 8;
    CHECK(wino_conv_fits(&t, 32) == base); /* 64 x 64 channels pay on small maps */
    t.c = t.m = 32;
    CHECK(!wino_conv_fits(&t, 32)); /* 32 x 32 at 8x8 do not */
    t = s, t.h = t.w = t.ho = t.wo = 3;
    CHECK(!wino_conv_fits(&t, 128)); /* under one tile */
    t = s, t.h = t.w = t.ho = t.wo = 8;
    CHECK(!wino_conv_fits(&t, 1) && wino_conv_fits(&t, 32) == base); /* 4 tiles per call */
    conv_set_winograd(false);
    CHECK(!wino_conv_fits(&s, 32));
    conv_set_winograd(true);
    /* where oneDNN has Winograd kernels (AVX-512) plans use those instead */
    CHECK(base == !dnnl_conv_winograd_available());
    printf("this CPU: plans %s the portable Winograd\n", base ? "use" : "do not use");
}

int main(void)
{
    test_seed(7u);
    shapes();
    weight_grads();
    fits();
    return harness_finish();
}
