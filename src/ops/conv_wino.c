/* conv_wino.c - Conv forward by Winograd F(4x4,3x3) on the portable path
 * (see conv_wino.h).
 *
 * Why: oneDNN 2.6 has Winograd kernels for AVX-512 only. On an AVX2 machine
 * (Zen 3) its direct 3x3 kernels ran CIFAR ResNet18's layers at 65-80
 * GFLOP/s, about 70% of the core's FMA peak, and ONNX Runtime took 0.74 of
 * our time at batch 32. F(4x4,3x3) computes a 4x4 output tile from a 6x6
 * input tile with 36 multiplications per input channel where the direct
 * convolution does 144, and its multiplications are 36 plain GEMMs, which
 * BLAS runs well on any CPU (BLIS: 65-75 GFLOP/s on these shapes here).
 *
 * How, per unit of work (a band of tile rows of one image, or whole images
 * when their maps are small), with T tiles:
 *   V[36][C][T] = B^T d B for each input tile d (6x6, zero outside the image),
 *   M[i] = U[i] (M x C) . V[i] (C x T) for each of the 36 points i (BLAS),
 *   y = A^T M A + bias for each output tile (4x4, clipped at the map's edge),
 *   then the fused epilogue (conv.c's, so that fusing changes no bits),
 * U[36][M][C] = G g G^T being the weights transformed once at pack time.
 * B, G and A are Lavin and Gray's matrices for the points 0, +-1, +-2,
 * +-1/2. Units are a function of the shape alone and each unit's GEMMs
 * run on one thread, so the results are the same bits for any thread
 * count; they differ from the direct convolution's by rounding (within
 * about 1e-5 relative), as oneDNN's Winograd does. */
#include "conv_wino.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/tensor.h"
#include "../core/threads.h"
#include "blas.h"
#include "simd.h"

#define POINTS 36 /* 6x6 */
/* Scratch a unit's V and M may take together: the tiles per unit follow
 * from it (bounded below so that each GEMM has some columns). */
#define UNIT_BYTES (4u << 20)
#define MIN_TILES 8
#define MIN_CALL_TILES 32
/* Fewer channels, or maps under 8x8, ran slower than oneDNN's direct AVX2
 * kernels (the Fashion-MNIST teacher's 16- and 32-channel layers at batch
 * 32: 16.7 ms against 11.0 for the model; 64-channel 4x4 maps: 11.8): the
 * transforms then cost more than the multiplications saved. */
#define MIN_CHANNELS 64
#define MIN_PIXELS 64
/* Units wanted per call at small batches. conv_dnnl.c wants 4; here a
 * band is a GEMM of fewer columns, and 4 bands of a 64-channel 32x32 image
 * at batch 1 took twice the time of 2 on two threads (0.73 against 0.35
 * ms; one thread 0.74 against 0.65). */
#define SPLIT_PIECES 2

struct wino_conv {
    conv_shape s;
    int64_t n;
    int64_t tx, ty;       /* tiles per row, tile rows per image */
    int64_t ipu, rows;    /* a unit: ipu whole images, or `rows` tile rows of one image */
    int64_t bands, units; /* bands per image (1 when ipu > 1); units per call */
    int64_t T;            /* most tiles in a unit */
    float *u;             /* [36][M][C] */
    float *bias;          /* (M) or NULL */
    const conv_epilogue *ep;
    size_t scratch;       /* bytes per thread */
};

static const float G[6][3] = {
    {1.0f / 4, 0.0f, 0.0f},
    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6},
    {1.0f / 24, -1.0f / 12, 1.0f / 6},
    {0.0f, 0.0f, 1.0f},
};

static size_t align64(size_t bytes) { return (bytes + 63) / 64 * 64; }

static int switch_on = -1;
static pthread_once_t switch_once = PTHREAD_ONCE_INIT;

static void read_switch(void)
{
    const char *env = getenv("LEGO_WINOGRAD");
    switch_on = !(env && strcmp(env, "0") == 0);
}

bool conv_winograd_on(void)
{
    pthread_once(&switch_once, read_switch);
    return switch_on == 1;
}

void conv_set_winograd(bool on)
{
    pthread_once(&switch_once, read_switch);
    switch_on = on;
}

bool wino_conv_fits(const conv_shape *s, int64_t n)
{
    /* a call of fewer tiles spends its time packing U for GEMMs of a few
     * columns */
    if (n * ((s->ho + 3) / 4) * ((s->wo + 3) / 4) < MIN_CALL_TILES)
        return false;
#ifdef LEGO_HAVE_DNNL
    if (dnnl_conv_winograd_available())
        return false; /* oneDNN's own kernels, where it has them */
#endif
    if (!conv_winograd_on())
        return false;
    return conv_shape_3x3_unit(s) && s->c >= MIN_CHANNELS && s->m >= MIN_CHANNELS &&
           s->c * s->m <= 256 * 256 && s->ho * s->wo >= MIN_PIXELS;
}

/* Units: bands of tile rows when an image has enough tiles, else groups of
 * whole images (a divisor of the batch). */
static void plan_units(wino_conv *k)
{
    const conv_shape *s = &k->s;
    k->tx = (s->wo + 3) / 4;
    k->ty = (s->ho + 3) / 4;
    int64_t per_image = k->tx * k->ty;
    int64_t goal = (int64_t)(UNIT_BYTES / (POINTS * sizeof(float) * (size_t)(s->c + s->m)));
    goal = goal > MIN_TILES ? goal : MIN_TILES;
    k->ipu = 1;
    if (per_image >= goal || k->n == 1) {
        int64_t rows = goal / k->tx > 1 ? goal / k->tx : 1;
        int64_t want = (SPLIT_PIECES + k->n - 1) / k->n; /* bands per image for small batches */
        int64_t most = (k->ty + want - 1) / want;
        k->rows = rows < most ? rows : most;
    } else {
        for (int64_t d = k->n; d > 1; d--)
            if (k->n % d == 0 && d * per_image <= goal && k->n / d >= SPLIT_PIECES) {
                k->ipu = d;
                break;
            }
        k->rows = k->ty;
    }
    k->bands = (k->ty + k->rows - 1) / k->rows;
    k->units = k->n / k->ipu * k->bands;
    k->T = k->ipu * k->rows * k->tx;
    size_t wp = (size_t)(4 * (k->tx + 1));
    k->scratch = align64(sizeof(float) * POINTS * (size_t)(s->c * k->T)) +
                 align64(sizeof(float) * POINTS * (size_t)(s->m * k->T)) +
                 2 * align64(sizeof(float) * 6 * wp) + align64(sizeof(float) * 24 * (size_t)k->tx) +
                 align64(sizeof(float) * wp);
}

/* U = G g G^T for filters [f0, f0 + nf), nf <= WEIGHT_CHUNK, the filters
 * side by side so that each step is a vector operation across them (a
 * train plan transforms every 3x3 layer's weights on each forward). */
#define WEIGHT_CHUNK 256

static SIMD_CLONES void transform_chunk(const float *w, int64_t f0, int64_t nf, float *u,
                                        int64_t mc, int64_t flip_c)
{
    float g[9][WEIGHT_CHUNK], t[6][3][WEIGHT_CHUNK];
    for (int64_t f = 0; f < nf; f++) {
        int64_t fi = f0 + f; /* filter (row, col) = (fi / c, fi % c) */
        if (flip_c) /* w holds (col, row)'s filter, turned by 180 degrees */
            for (int i = 0; i < 9; i++)
                g[i][f] = w[(fi % flip_c * (mc / flip_c) + fi / flip_c) * 9 + 8 - i];
        else
            for (int i = 0; i < 9; i++)
                g[i][f] = w[fi * 9 + i];
    }
    for (int a = 0; a < 6; a++)
        for (int j = 0; j < 3; j++)
            for (int64_t f = 0; f < nf; f++)
                t[a][j][f] = G[a][0] * g[j][f] + G[a][1] * g[3 + j][f] + G[a][2] * g[6 + j][f];
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 6; b++) {
            float *o = u + (a * 6 + b) * mc + f0;
            for (int64_t f = 0; f < nf; f++)
                o[f] = t[a][0][f] * G[b][0] + t[a][1][f] * G[b][1] + t[a][2][f] * G[b][2];
        }
}

static void transform_weights(wino_conv *k, const float *w, bool flipped)
{
    int64_t mc = k->s.m * k->s.c;
    for (int64_t f0 = 0; f0 < mc; f0 += WEIGHT_CHUNK)
        transform_chunk(w, f0, mc - f0 < WEIGHT_CHUNK ? mc - f0 : WEIGHT_CHUNK, k->u, mc,
                        flipped ? k->s.c : 0);
}

lego_status wino_conv_create(const conv_shape *s, int64_t n, const float *w, const float *b,
                             bool bias, const conv_epilogue *ep, wino_conv **out)
{
    *out = NULL;
    wino_conv *k = calloc(1, sizeof *k);
    if (!k)
        return lego_error(LEGO_ERR_NOMEM, "out of memory preparing a convolution");
    k->s = *s;
    k->n = n;
    k->ep = ep;
    plan_units(k);
    k->u = lego_aligned_alloc(sizeof(float) * POINTS * (size_t)(s->m * s->c));
    bias = bias || b;
    if (bias)
        k->bias = calloc((size_t)s->m, sizeof(float));
    if (!k->u || (bias && !k->bias)) {
        wino_conv_free(k);
        return lego_error(LEGO_ERR_NOMEM, "out of memory transforming a convolution's weights");
    }
    if (w)
        wino_conv_set_weights(k, w, b);
    *out = k;
    return lego_ok();
}

void wino_conv_set_weights_flipped(wino_conv *k, const float *w) { transform_weights(k, w, true); }

void wino_conv_set_weights(wino_conv *k, const float *w, const float *b)
{
    transform_weights(k, w, false);
    if (k->bias && b)
        memcpy(k->bias, b, sizeof(float) * (size_t)k->s.m);
}

bool wino_conv_matches(const wino_conv *k, const conv_shape *s, int64_t n)
{
    return k->n == n && memcmp(&k->s, s, sizeof *s) == 0; /* as dnnl_conv_train_matches */
}

size_t wino_conv_packed_bytes(const wino_conv *k)
{
    return sizeof(float) * (POINTS * (size_t)(k->s.m * k->s.c) + (k->bias ? (size_t)k->s.m : 0));
}

void wino_conv_free(wino_conv *k)
{
    if (!k)
        return;
    lego_aligned_free(k->u);
    free(k->bias);
    free(k);
}

/* ---- transforms ---------------------------------------------------------- */

/* Input row `row` of channel plane xc, columns -pad_l .. 4 tx + 3 - pad_l
 * (zero outside the image), split by phase: column 4x + j goes to
 * out[j * (tx + 1) + x]. Then the six columns of tile x are phase j at x
 * (j < 4) and phases 0 and 1 at x + 1, each a contiguous run over the
 * tiles, so the transform along the row vectorises (cols_bt). */
static SIMD_CLONES void padded_phases(const float *xc, const conv_shape *s, int64_t row,
                                      float *restrict out, int64_t tx, float *restrict line)
{
    int64_t pw = 4 * (tx + 1);
    if (row < 0 || row >= s->h) {
        memset(out, 0, sizeof(float) * (size_t)pw);
        return;
    }
    int64_t lead = s->pad_l < pw ? s->pad_l : pw;
    int64_t body = pw - lead < s->w ? pw - lead : s->w;
    memset(line, 0, sizeof(float) * (size_t)lead);
    memcpy(line + lead, xc + row * s->w, sizeof(float) * (size_t)body);
    memset(line + lead + body, 0, sizeof(float) * (size_t)(pw - lead - body));
    float *o0 = out, *o1 = o0 + tx + 1, *o2 = o1 + tx + 1, *o3 = o2 + tx + 1;
SIMD_IVDEP
    for (int64_t x = 0; x <= tx; x++) {
        o0[x] = line[4 * x];
        o1[x] = line[4 * x + 1];
        o2[x] = line[4 * x + 2];
        o3[x] = line[4 * x + 3];
    }
}

/* B^T applied across six lines: out line a at j is row a of B^T times
 * (d0[j] .. d5[j]), for j < n. */
static SIMD_CLONES void bt_lines(const float *const d[6], float *const o[6], int64_t n)
{
    const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
    float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
SIMD_IVDEP
    for (int64_t j = 0; j < n; j++) {
        o0[j] = 4.0f * d0[j] - 5.0f * d2[j] + d4[j];
        o1[j] = -4.0f * d1[j] - 4.0f * d2[j] + d3[j] + d4[j];
        o2[j] = 4.0f * d1[j] - 4.0f * d2[j] - d3[j] + d4[j];
        o3[j] = -2.0f * d1[j] - d2[j] + 2.0f * d3[j] + d4[j];
        o4[j] = 2.0f * d1[j] - d2[j] - 2.0f * d3[j] + d4[j];
        o5[j] = 4.0f * d1[j] - 5.0f * d3[j] + d5[j];
    }
}

/* B^T d down the columns of six rows d (wp each, any layout, the same for
 * all six): six rows out. */
static void rows_bt(const float *d, float *o, int64_t wp)
{
    const float *in[6] = {d, d + wp, d + 2 * wp, d + 3 * wp, d + 4 * wp, d + 5 * wp};
    float *out[6] = {o, o + wp, o + 2 * wp, o + 3 * wp, o + 4 * wp, o + 5 * wp};
    bt_lines(in, out, wp);
}

/* The same along each tile's six columns, for tx tiles, from rows split
 * by phase (padded_phases; pw floats each): point (a, b) of tile x goes to
 * v[(a*6 + b)*stride + x]. Columns 4 and 5 of tile x are columns 0 and 1
 * of tile x + 1. */
static void cols_bt(const float *wv, int64_t pw, int64_t tx, float *v, int64_t stride)
{
    int64_t ph = pw / 4;
    for (int a = 0; a < 6; a++) {
        const float *p = wv + a * pw;
        const float *in[6] = {p, p + ph, p + 2 * ph, p + 3 * ph, p + 1, p + ph + 1};
        float *o = v + (int64_t)(a * 6) * stride;
        float *out[6] = {o, o + stride, o + 2 * stride, o + 3 * stride, o + 4 * stride,
                         o + 5 * stride};
        bt_lines(in, out, tx);
    }
}

/* A^T s A for tx tiles of one output channel: s point (a, b) of tile x at
 * s[(a*6 + b)*stride + x]; q (24 x tx) is scratch; output row i of tile x,
 * column j, goes to o[i][j][x] (o: 16 x tx). */
static SIMD_CLONES void output_tiles(const float *restrict s, int64_t stride, int64_t tx, float *restrict q,
                         float *restrict o)
{
    for (int a = 0; a < 6; a++) { /* along b: q[a][j] */
        const float *p = s + (int64_t)(a * 6) * stride;
        float *q0 = q + (a * 4) * tx, *q1 = q0 + tx, *q2 = q1 + tx, *q3 = q2 + tx;
SIMD_IVDEP
        for (int64_t x = 0; x < tx; x++) {
            float s0 = p[x], s1 = p[stride + x], s2 = p[2 * stride + x], s3 = p[3 * stride + x],
                  s4 = p[4 * stride + x], s5 = p[5 * stride + x];
            q0[x] = s0 + s1 + s2 + s3 + s4;
            q1[x] = s1 - s2 + 2.0f * (s3 - s4);
            q2[x] = s1 + s2 + 4.0f * (s3 + s4);
            q3[x] = s1 - s2 + 8.0f * (s3 - s4) + s5;
        }
    }
    for (int j = 0; j < 4; j++) { /* along a: o[i][j] */
        const float *p0 = q + j * tx, *p1 = p0 + 4 * tx, *p2 = p1 + 4 * tx, *p3 = p2 + 4 * tx,
                    *p4 = p3 + 4 * tx, *p5 = p4 + 4 * tx;
        float *o0 = o + j * tx, *o1 = o0 + 4 * tx, *o2 = o1 + 4 * tx, *o3 = o2 + 4 * tx;
SIMD_IVDEP
        for (int64_t x = 0; x < tx; x++) {
            o0[x] = p0[x] + p1[x] + p2[x] + p3[x] + p4[x];
            o1[x] = p1[x] - p2[x] + 2.0f * (p3[x] - p4[x]);
            o2[x] = p1[x] + p2[x] + 4.0f * (p3[x] + p4[x]);
            o3[x] = p1[x] - p2[x] + 8.0f * (p3[x] - p4[x]) + p5[x];
        }
    }
}

/* One output row from output_tiles' o (rows of tiles: column 4x + j of the
 * map is o[j*tx + x]), plus the bias, clipped at wo columns. */
static SIMD_CLONES void store_row(float *restrict row, const float *restrict o, int64_t tx,
                                  int64_t wo, float bias)
{
    const float *o0 = o, *o1 = o0 + tx, *o2 = o1 + tx, *o3 = o2 + tx;
    int64_t full = wo / 4;
SIMD_IVDEP
    for (int64_t x = 0; x < full; x++) {
        row[4 * x] = o0[x] + bias;
        row[4 * x + 1] = o1[x] + bias;
        row[4 * x + 2] = o2[x] + bias;
        row[4 * x + 3] = o3[x] + bias;
    }
    for (int64_t col = full * 4; col < wo; col++)
        row[col] = o[(col & 3) * tx + (col >> 2)] + bias;
}

/* ---- running ------------------------------------------------------------- */

typedef struct wino_run {
    const wino_conv *k;
    const float *x;
    float *y;
    unsigned char *scratch;
} wino_run;

/* V for the unit's tiles: images n0.. (ipu), tile rows ty0..ty1. */
static void unit_input(const wino_conv *k, const float *x, int64_t n0, int64_t ty0, int64_t ty1,
                       float *v, float *rb, float *wv, float *line)
{
    const conv_shape *s = &k->s;
    int64_t ct = s->c * k->T, pw = 4 * (k->tx + 1);
    for (int64_t c = 0; c < s->c; c++) {
        int64_t t = 0;
        for (int64_t i = 0; i < k->ipu; i++) {
            const float *xc = x + ((n0 + i) * s->c + c) * s->h * s->w;
            for (int64_t ty = ty0; ty < ty1; ty++, t += k->tx) {
                for (int r = 0; r < 6; r++)
                    padded_phases(xc, s, ty * 4 - s->pad_t + r, rb + r * pw, k->tx, line);
                rows_bt(rb, wv, pw);
                cols_bt(wv, pw, k->tx, v + c * k->T + t, ct);
            }
        }
    }
}

/* y's rows for the unit from the 36 products mo, then bias and epilogue. */
static void unit_output(const wino_conv *k, const float *mo, float *y, int64_t n0, int64_t ty0,
                        int64_t ty1, float *q, float *o)
{
    const conv_shape *s = &k->s;
    int64_t mt = s->m * k->T, opix = s->ho * s->wo;
    int64_t r0 = ty0 * 4, r1 = ty1 * 4 < s->ho ? ty1 * 4 : s->ho;
    for (int64_t m = 0; m < s->m; m++) {
        float bias = k->bias ? k->bias[m] : 0.0f;
        int64_t t = 0;
        for (int64_t i = 0; i < k->ipu; i++) {
            float *ym = y + ((n0 + i) * s->m + m) * opix;
            for (int64_t ty = ty0; ty < ty1; ty++, t += k->tx) {
                output_tiles(mo + m * k->T + t, mt, k->tx, q, o);
                for (int64_t r = 0; r < 4 && ty * 4 + r < s->ho; r++)
                    store_row(ym + (ty * 4 + r) * s->wo, o + r * 4 * k->tx, k->tx, s->wo, bias);
            }
            if (k->ep && (k->ep->scale || k->ep->clamp))
                conv_epilogue_rows(ym + r0 * s->wo, 0, 1, (r1 - r0) * s->wo, k->ep, m);
        }
    }
}

static void wino_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    const wino_run *r = ctx;
    const wino_conv *k = r->k;
    const conv_shape *s = &k->s;
    unsigned char *p = r->scratch + (size_t)thread * k->scratch;
    size_t wp = (size_t)(4 * (k->tx + 1));
    float *v = (float *)p;
    p += align64(sizeof(float) * POINTS * (size_t)(s->c * k->T));
    float *mo = (float *)p;
    p += align64(sizeof(float) * POINTS * (size_t)(s->m * k->T));
    float *rb = (float *)p, *wv = (float *)(p + align64(sizeof(float) * 6 * wp));
    float *q = (float *)(p + 2 * align64(sizeof(float) * 6 * wp));
    float *line = (float *)(p + 2 * align64(sizeof(float) * 6 * wp) +
                            align64(sizeof(float) * 24 * (size_t)k->tx));
    float *o = wv; /* 16 x tx fits in wv's 6 x 4 (tx + 1) once the input is done */
    for (int64_t u = begin; u < end; u++) {
        int64_t n0 = u / k->bands * k->ipu, ty0 = u % k->bands * k->rows;
        int64_t ty1 = ty0 + k->rows < k->ty ? ty0 + k->rows : k->ty;
        int64_t tiles = k->ipu * (ty1 - ty0) * k->tx;
        unit_input(k, r->x, n0, ty0, ty1, v, rb, wv, line);
        for (int i = 0; i < POINTS; i++)
            lego_sgemm(0, 0, s->m, tiles, s->c, 1.0f, k->u + (int64_t)i * s->m * s->c, s->c,
                       v + (int64_t)i * s->c * k->T, k->T, 0.0f, mo + (int64_t)i * s->m * k->T, k->T);
        unit_output(k, mo, r->y, n0, ty0, ty1, q, o);
    }
}

bool wino_conv_run(const wino_conv *k, const float *x, float *y, workspace *ws)
{
    const conv_shape *s = &k->s;
    /* a unit's GEMMs: 36 x 2 M C T flops, counted as conv.c's gemm_work */
    double work = 2.0 * POINTS * (double)(s->m * s->c) * (double)k->T / 16.0;
    par_split sp = par_split_work(k->units, work);
    size_t total = k->scratch * (size_t)sp.threads;
    unsigned char *buf = ws ? workspace_get(ws, total) : lego_aligned_alloc(total);
    if (!buf)
        return false;
    wino_run r = {.k = k, .x = x, .y = y, .scratch = buf};
    parallel_run(k->units, sp, wino_units, &r);
    if (!ws)
        lego_aligned_free(buf);
    return true;
}
