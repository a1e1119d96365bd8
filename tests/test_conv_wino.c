/* test_conv_wino.c - the portable Winograd F(4x4,3x3) forward (conv_wino.c)
 * called directly, on any CPU (whether or not plans would choose it here):
 *  - against a direct convolution summed in double, on shapes covering
 *    edge tiles (maps not a multiple of 4), every padding from 0 to 2 on
 *    each side, units that are bands of tile rows and units of several
 *    images, with and without bias, BatchNorm scale and clamp;
 *  - the same bits on 1, 2 and 3 threads;
 *  - the epilogue rounds as the separate ops do: the fused result equals
 *    the unfused one followed by y*a + b and the clamp;
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
    CHECK_OK(wino_conv_create(s, q->n, w, b, b != NULL, ep, &k));
    int64_t ny = q->n * s->m * s->ho * s->wo;
    float *y = malloc(sizeof(float) * (size_t)ny);
    for (int64_t i = 0; i < ny; i++)
        y[i] = NAN;
    CHECK(k && wino_conv_run(k, x, y, NULL));
    CHECK(wino_conv_packed_bytes(k) >= sizeof(float) * 36 * (size_t)(s->m * s->c));
    wino_conv_free(k);
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
    };
    par_set_min_work(1); /* small units still spread over the threads */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        one_case(&cases[i]);
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
    t = s, t.c = t.m = 512;
    CHECK(!wino_conv_fits(&t, 32)); /* transformed weights too large */
    t = s, t.c = 32;
    CHECK(!wino_conv_fits(&t, 32)); /* few channels: direct is faster */
    t = s, t.h = t.w = t.ho = t.wo = 4;
    CHECK(!wino_conv_fits(&t, 32)); /* small maps: the same */
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
    fits();
    return harness_finish();
}
