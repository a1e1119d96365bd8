/* conv_wino.c - Conv by Winograd F(4x4,3x3) on the portable path: the
 * forward, and for training the input and weight gradients (see
 * conv_wino.h).
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
 * U[36][M][C] = G g G^T being the weights transformed once at pack time
 * (or on each call: MAX_STORED_PAIRS; then, for calls of few tiles, the
 * units are bands of output channels instead, over all of V: plan_units).
 * The input gradient is the same kernel on dY with the filters turned
 * (conv.c); the weight gradient is at the end of this file.
 * B, G and A are Lavin and Gray's matrices for the points 0, +-1, +-2,
 * +-1/2. Units are a function of the shape alone and each unit's GEMMs
 * run on one thread, so the results are the same bits for any thread
 * count; they differ from the direct convolution's by rounding (within
 * about 1e-5 relative), as oneDNN's Winograd does. */
#include "conv_wino.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/env.h"
#include "../core/tensor.h"
#include "../core/threads.h"
#include "blas.h"
#include "simd.h"

#define POINTS 36 /* 6x6 */
/* Scratch a unit's V and M may take together: the tiles per unit follow
 * from it, but at least MIN_TILES where the batch allows, since each GEMM
 * packs its M x C block of U for the unit's columns (512 x 512 channels at
 * 4x4, batch 128, two threads: 28 tiles per unit took 24.6-33.7 ms, 96
 * tiles 20.0-26.2). */
#define UNIT_BYTES (4u << 20)
#define MIN_TILES 96
#define MIN_CALL_TILES 32
/* Where the transforms cost more than the multiplications saved, measured
 * against oneDNN's direct AVX2 kernels on one and two threads (a layer on
 * its own, batch 32 or 128). Winograd took 0.4-0.9 of their time for
 * channels x channels x output pixels of 2^19 or more (13 x 64 channels at
 * 32x32, 26 x 128 at 16x16, 128 x 128 at 8x8, 103 x 512 at 4x4), and for
 * 64 x 64 channels or more on maps down to 4x4 (64 x 64 at 8x8: 0.45-0.57;
 * at 4x4: 0.46-0.57); 0.9-1.8 for fewer (16 x 16 at 28x28: 1.17; 32 x 32
 * at 14x14: 1.13; 8 x 16 at 32x32: 1.46). Fewer than 8 channels make GEMMs
 * too thin; maps under 4x4 fill too little of a tile. */
#define MIN_IMAGE_WORK (1 << 19)
#define MIN_PAIRS (64 * 64)
#define MIN_CHANNELS 8
/* Transformed weights are four times the direct ones: kept with an
 * inference plan only up to 256 x 256 channels (CIFAR ResNet18's 512 x 512
 * layers would add 95 MB); larger ones, and a train plan's, are
 * transformed into the workspace on each call (some 330 flops per filter,
 * against 216 saved per filter and tile: a few percent at 32 tiles). */
#define MAX_STORED_PAIRS (256 * 256)
/* Channel units (plan_units): for calls of at most CHANNEL_TILES tiles,
 * each with about CHANNEL_UNIT_BYTES of transformed weights (harness, two
 * threads, 512 x 512 channels at 4x4, batch 64: 1 MB (8 channels) 11.8
 * ms, 2 MB 10.0-10.4, 4 MB 10.5-10.7, 8 MB 10.9-11.0; tile units 11.3-13.1;
 * batch 128: 24.2, 19.0-19.5, 21.1, 20.7; tile units 19.5-20.8). */
#define CHANNEL_TILES 256
#define CHANNEL_UNIT_BYTES (2u << 20)
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
    int64_t mb;           /* > 0: channel units (plan_units), of mb output channels */
    int64_t chan_scratch; /* their bytes per thread */
    float *u;             /* [36][M][C], or NULL: transformed on each call (training) */
    float *bias;          /* (M) or NULL; kept with u */
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

/* Floats from one point's block of V (or of the products, or of A dY A^T)
 * to the next: the block rounded up to an odd number of cache lines. The
 * transforms write (or read) all 36 points of a tile at once; with blocks
 * of a multiple of 4 KB (64 channels x 128 tiles) those 36 streams fell
 * into one set of the L1 cache, which holds 8. */
static int64_t point_stride(int64_t floats) { return ((floats + 15) / 16 | 1) * 16; }

/* The output transform (and the weight gradient's of dY) runs over all of
 * a unit's tiles at once (staged_output, staged_dy): tile row by tile row,
 * a CIFAR ResNet18's 4x4 maps spent more time in the calls per row than in
 * their arithmetic. So does the input transform for maps of STAGED_TX
 * tiles per row or fewer (staged_input); wider ones read rows split by
 * phase, which cost less there (26 x 64 channels at 32x32, batch 128: 27
 * against 35 ms; 52 x 128 at 16x16: 22-28 against 20-21). */
#define STAGED_TX 4

/* A thread's buffers for the transforms: rb and wv (6 rows split by phase
 * each) for the input by tile rows, rb the padded planes for the staged
 * input and dY (pad_planes: at most 6 rows of 4 (tx + 1) floats a tile
 * row); st and tmp (36 x T each) for the staged transforms. */
typedef struct row_buffers {
    float *rb, *wv, *st, *tmp;
} row_buffers;

static size_t row_buffers_bytes(int64_t tx, int64_t T)
{
    size_t wp = (size_t)(4 * (tx + 1)), rows = 6 * (size_t)((T + tx - 1) / tx);
    return align64(sizeof(float) * rows * wp) + align64(sizeof(float) * 6 * wp) +
           2 * align64(sizeof(float) * POINTS * (size_t)T);
}

static row_buffers row_buffers_at(unsigned char *p, int64_t tx, int64_t T)
{
    size_t wp = (size_t)(4 * (tx + 1));
    size_t rows = 6 * (size_t)((T + tx - 1) / tx);
    row_buffers b;
    b.rb = (float *)p;
    p += align64(sizeof(float) * rows * wp);
    b.wv = (float *)p;
    p += align64(sizeof(float) * 6 * wp);
    b.st = (float *)p;
    b.tmp = (float *)(p + align64(sizeof(float) * POINTS * (size_t)T));
    return b;
}

static int switch_on = -1;
static pthread_once_t switch_once = PTHREAD_ONCE_INIT;

static void read_switch(void) { switch_on = env_switch_on("LEGO_WINOGRAD"); }

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
    if (!conv_shape_3x3_unit(s) || s->c < MIN_CHANNELS || s->m < MIN_CHANNELS)
        return false;
    return s->c * s->m * s->ho * s->wo >= MIN_IMAGE_WORK ||
           (s->c * s->m >= MIN_PAIRS && s->ho * s->wo >= 16);
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
    k->scratch = align64(sizeof(float) * POINTS * (size_t)point_stride(s->c * k->T)) +
                 align64(sizeof(float) * POINTS * (size_t)point_stride(s->m * k->T)) +
                 row_buffers_bytes(k->tx, k->T);
    /* Channel units where the weights are transformed on each call and a
     * call has few tiles (CIFAR ResNet18's 512-channel layers at 4x4): U
     * of 512 x 512 channels is 37.7 MB, written to memory and read back
     * by every tile unit, each of whose GEMMs then uses it for only its
     * few tiles. Instead the call's V is computed first (by the tile
     * units), then each unit of mb output channels transforms just its
     * filters (CHANNEL_UNIT_BYTES of U, which stays in cache) and runs
     * the 36 GEMMs over all the tiles. */
    int64_t all = k->n * k->tx * k->ty;
    if (s->c * s->m > MAX_STORED_PAIRS && all <= CHANNEL_TILES) {
        int64_t mb = (int64_t)(CHANNEL_UNIT_BYTES / (POINTS * sizeof(float) * (size_t)s->c)) / 8 * 8;
        k->mb = mb < 8 ? 8 : mb > s->m ? s->m : mb;
        k->chan_scratch = align64(sizeof(float) * POINTS * (size_t)(k->mb * s->c)) +
                          align64(sizeof(float) * POINTS * (size_t)point_stride(k->mb * all)) +
                          row_buffers_bytes(k->tx, all);
    }
}

/* U = G g G^T for filters [f0, f0 + nf) of mc, nf <= WEIGHT_CHUNK, into u
 * (filter f0's place at point 0; points `stride` apart), the filters
 * side by side so that each step is a vector operation across them (a
 * train plan transforms every 3x3 layer's weights on each forward). */
#define WEIGHT_CHUNK 256

static SIMD_CLONES void transform_chunk(const float *w, int64_t f0, int64_t nf, float *u,
                                        int64_t stride, int64_t mc, int64_t flip_c)
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
            float *o = u + (a * 6 + b) * stride;
            for (int64_t f = 0; f < nf; f++)
                o[f] = t[a][0][f] * G[b][0] + t[a][1][f] * G[b][1] + t[a][2][f] * G[b][2];
        }
}

/* U of w into u, in chunks of filters spread over the threads (a train
 * plan's 512 x 512 layer has 262,144 filters to transform per call). */
typedef struct weight_job {
    const float *w;
    float *u;
    int64_t mc, flip_c;
} weight_job;

static void weight_chunks(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const weight_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        int64_t f0 = i * WEIGHT_CHUNK;
        transform_chunk(j->w, f0, j->mc - f0 < WEIGHT_CHUNK ? j->mc - f0 : WEIGHT_CHUNK, j->u + f0,
                        j->mc, j->mc, j->flip_c);
    }
}

static void transform_weights(const wino_conv *k, const float *w, bool flipped, float *u)
{
    weight_job j = {w, u, k->s.m * k->s.c, flipped ? k->s.c : 0};
    int64_t chunks = (j.mc + WEIGHT_CHUNK - 1) / WEIGHT_CHUNK;
    /* some 330 flops per filter */
    parallel_run(chunks, par_split_work(chunks, 330.0 * WEIGHT_CHUNK), weight_chunks, &j);
}

lego_status wino_conv_create(const conv_shape *s, int64_t n, const float *w, const float *b,
                             const conv_epilogue *ep, wino_conv **out)
{
    *out = NULL;
    wino_conv *k = calloc(1, sizeof *k);
    if (!k)
        return lego_error(LEGO_ERR_NOMEM, "out of memory preparing a convolution");
    k->s = *s;
    k->n = n;
    k->ep = ep;
    plan_units(k);
    if (w && s->c * s->m <= MAX_STORED_PAIRS) {
        k->u = lego_aligned_alloc(sizeof(float) * POINTS * (size_t)(s->m * s->c));
        if (b)
            k->bias = malloc(sizeof(float) * (size_t)s->m);
        if (!k->u || (b && !k->bias)) {
            wino_conv_free(k);
            return lego_error(LEGO_ERR_NOMEM, "out of memory transforming a convolution's weights");
        }
        transform_weights(k, w, false, k->u);
        if (b)
            memcpy(k->bias, b, sizeof(float) * (size_t)s->m);
    }
    *out = k;
    return lego_ok();
}

bool wino_conv_matches(const wino_conv *k, const conv_shape *s, int64_t n)
{
    return k->n == n && memcmp(&k->s, s, sizeof *s) == 0; /* as dnnl_conv_train_matches */
}

size_t wino_conv_packed_bytes(const wino_conv *k)
{
    return k->u ? sizeof(float) * (POINTS * (size_t)(k->s.m * k->s.c) +
                                   (k->bias ? (size_t)k->s.m : 0))
                : 0;
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
 * tiles, so the transform along the row vectorises (cols_bt). Read from
 * the image directly (a copy of the padded row first took a fifth of the
 * transforms' time); only the tiles over its edges test each column. */
SIMD_INLINE void padded_phases(const float *xc, const conv_shape *s, int64_t row,
                               float *restrict out, int64_t tx)
{
    int64_t ph = tx + 1;
    float *o0 = out, *o1 = o0 + ph, *o2 = o1 + ph, *o3 = o2 + ph;
    if (row < 0 || row >= s->h) {
        memset(out, 0, sizeof(float) * (size_t)(4 * ph));
        return;
    }
    const float *r = xc + row * s->w;
    /* tiles [lo, hi) have all four columns inside the row */
    int64_t lo = (s->pad_l + 3) / 4;
    int64_t hi = s->w + s->pad_l >= 4 ? (s->w + s->pad_l - 4) / 4 + 1 : 0;
    hi = hi < ph ? hi : ph;
    lo = lo < hi ? lo : hi;
    float *o[4] = {o0, o1, o2, o3};
    for (int64_t x = 0; x < ph; x++) {
        if (x == lo)
            x = hi; /* past the inner tiles */
        for (int j = 0; j < 4 && x < ph; j++) {
            int64_t col = 4 * x + j - s->pad_l;
            o[j][x] = col >= 0 && col < s->w ? r[col] : 0.0f;
        }
    }
    const float *p = r + 4 * lo - s->pad_l;
    int64_t n = hi - lo;
    o0 += lo, o1 += lo, o2 += lo, o3 += lo;
SIMD_IVDEP
    for (int64_t x = 0; x < n; x++) {
        o0[x] = p[4 * x];
        o1[x] = p[4 * x + 1];
        o2[x] = p[4 * x + 2];
        o3[x] = p[4 * x + 3];
    }
}

/* B^T applied across six lines: out line a at j is row a of B^T times
 * (d0[j] .. d5[j]), for j < n. */
SIMD_INLINE void bt_lines(const float *const d[6], float *const o[6], int64_t n)
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
SIMD_INLINE void rows_bt(const float *const d[6], float *o, int64_t wp)
{
    float *out[6] = {o, o + wp, o + 2 * wp, o + 3 * wp, o + 4 * wp, o + 5 * wp};
    bt_lines(d, out, wp);
}

/* The same along each tile's six columns, for tx tiles, from rows split
 * by phase (padded_phases; pw floats each): point (a, b) of tile x goes to
 * v[(a*6 + b)*stride + x]. Columns 4 and 5 of tile x are columns 0 and 1
 * of tile x + 1. */
SIMD_INLINE void cols_bt(const float *wv, int64_t pw, int64_t tx, float *v, int64_t stride)
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
SIMD_INLINE void output_tiles(const float *restrict s, int64_t stride, int64_t tx,
                              float *restrict q, float *restrict o)
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

/* ---- small maps: all of a call's tiles at once ---------------------------- */

/* The planes a staged transform gathers its tiles from: the input's
 * (6x6 tiles, 4 apart, over its padding) or dY's (4x4 tiles). */
typedef struct tile_planes {
    int64_t h, w, c;  /* a plane's size; planes per image */
    int64_t top, left; /* image row 0, column 0 in the padded copy */
    int size;          /* a tile's rows and columns: 6, or 4 */
} tile_planes;

static tile_planes input_planes(const conv_shape *s)
{
    return (tile_planes){s->h, s->w, s->c, s->pad_t, s->pad_l, 6};
}

static tile_planes dy_planes(const conv_shape *s) { return (tile_planes){s->ho, s->wo, s->m, 0, 0, 4}; }

/* A zero-padded copy of a unit's planes (one channel at a time): each
 * image's rows under the unit's tile rows of it, 4 (tx + 1) floats each,
 * image column j at j + left; its floats for tile rows [g0, g1). */
static int64_t padded_floats(const wino_conv *k, const tile_planes *p, int64_t g0, int64_t g1)
{
    int64_t images = (g1 - 1) / k->ty - g0 / k->ty + 1;
    return (4 * (g1 - g0) + (p->size - 4) * images) * 4 * (k->tx + 1);
}

/* Channel c of the images under tile rows [g0, g1) into pp, whose padding
 * is already zero; with `ahead`, a prefetch of those rows instead (a
 * unit's planes of one channel are a few KB each, a channel's stride
 * apart, which the hardware prefetchers did not foresee: their loads took
 * a third of the staged input's time). */
SIMD_INLINE void pad_planes(const wino_conv *k, const tile_planes *p, const float *x, int64_t c,
                            int64_t g0, int64_t g1, float *restrict pp, bool ahead)
{
    int64_t wp = 4 * (k->tx + 1);
    for (int64_t g = g0; g < g1;) {
        int64_t n = g / k->ty, ya = g % k->ty, yb = (g1 - n * k->ty < k->ty ? g1 - n * k->ty : k->ty);
        const float *xc = x + (n * p->c + c) * p->h * p->w;
        int64_t r0 = 4 * ya - p->top, rows = 4 * (yb - ya) + p->size - 4;
        g = n * k->ty + yb;
        if (ahead) {
#if defined(__GNUC__)
            int64_t a = r0 > 0 ? r0 : 0, b = r0 + rows < p->h ? r0 + rows : p->h;
            for (int64_t i = a * p->w; i < b * p->w; i += 16)
                __builtin_prefetch(xc + i);
#endif
            continue;
        }
        for (int64_t r = r0 < 0 ? -r0 : 0; r < rows && r0 + r < p->h; r++) {
            const float *src = xc + (r0 + r) * p->w;
            simd_copy_short(pp + r * wp + p->left, src, p->w);
        }
        pp += rows * wp;
    }
}

/* Every tile of the padded planes pp (tile rows [g0, g1)) into
 * st[size^2][nt]: eight tiles at a time by a transpose of their rows where
 * the compiler has vectors. */
SIMD_INLINE void gather_tiles(const wino_conv *k, const tile_planes *p, int64_t g0, int64_t g1,
                              const float *pp, float *restrict st, int64_t nt)
{
    int64_t wp = 4 * (k->tx + 1), t = 0;
    int size = p->size;
    const float *at[8];
    int q = 0;
    for (int64_t g = g0; g < g1; g++) {
        if (g > g0 && g % k->ty == 0)
            pp += (size - 4) * wp; /* past the last image's rows under its last tile row */
        for (int64_t x = 0; x < k->tx; x++, t++) {
            at[q++] = pp + 4 * x;
            if (q < 8 && t + 1 < nt)
                continue;
#ifdef SIMD_VECTORS
            if (q == 8) {
                for (int r = 0; r < size; r++) {
                    simd_f8 v[8];
                    for (int i = 0; i < 8; i++)
                        simd_load8(&v[i], at[i] + r * wp);
                    simd_transpose8(v); /* v[col]: column col of the eight tiles' row r */
                    for (int col = 0; col < size; col++)
                        simd_store8(st + (r * size + col) * nt + t - 7, &v[col]);
                }
                q = 0;
                continue;
            }
#endif
            for (int i = 0; i < q; i++)
                for (int r = 0; r < size; r++)
                    for (int col = 0; col < size; col++)
                        st[(r * size + col) * nt + t + 1 - q + i] = at[i][r * wp + col];
            q = 0;
        }
        pp += 4 * wp;
    }
}

/* Channel c's tiles of tile rows [g0, g1) from x into st, through the
 * padded copy pp, the next channel's rows prefetched. */
SIMD_INLINE void stage_tiles(const wino_conv *k, const tile_planes *p, const float *x, int64_t c,
                             int64_t g0, int64_t g1, float *restrict pp, float *restrict st)
{
    if (c + 1 < p->c)
        pad_planes(k, p, x, c + 1, g0, g1, pp, true);
    pad_planes(k, p, x, c, g0, g1, pp, false);
    gather_tiles(k, p, g0, g1, pp, st, (g1 - g0) * k->tx);
}

/* V for the tiles of tile rows [g0, g1) (counted over the batch: image
 * g / ty, row g % ty), in columns of v from 0, T per channel: each
 * channel's planes copied with their padding (pp), each tile's 6x6 inputs
 * gathered from there into st[36][nt], then B^T d B across all nt tiles. */
static SIMD_CLONES void staged_input(const wino_conv *k, const float *x, int64_t g0, int64_t g1,
                                     float *v, int64_t T, float *pp, float *st, float *tmp)
{
    const conv_shape *s = &k->s;
    int64_t nt = (g1 - g0) * k->tx, ct = point_stride(s->c * T);
    tile_planes p = input_planes(s);
    memset(pp, 0, sizeof(float) * (size_t)padded_floats(k, &p, g0, g1));
    for (int64_t c = 0; c < s->c; c++) {
        stage_tiles(k, &p, x, c, g0, g1, pp, st);
        const float *in[6];
        float *out[6];
        for (int r = 0; r < 6; r++) /* down the columns: tmp[a][col][t] */
            in[r] = st + r * 6 * nt, out[r] = tmp + r * 6 * nt;
        bt_lines(in, out, 6 * nt);
        for (int a = 0; a < 6; a++) { /* along the rows */
            for (int i = 0; i < 6; i++)
                in[i] = tmp + (a * 6 + i) * nt, out[i] = v + (a * 6 + i) * ct + c * T;
            bt_lines(in, out, nt);
        }
    }
}

/* y's tiles of tile rows [g0, g1), channels [m0, m1), from the 36
 * products mo (T columns per channel), plus bias, then the epilogue (with
 * res, when not NULL, added in it); added into y instead when `add` (an input gradient that is not
 * fresh: no bias, no epilogue); q (24 x nt) and o (16 x nt). */
static SIMD_CLONES void staged_output(const wino_conv *k, const float *mo, int64_t m0, int64_t m1,
                                      int64_t T, const float *bias_m, const float *res, float *y,
                                      int64_t g0, int64_t g1, bool add, float *q, float *o)
{
    static const conv_epilogue none = {0};
    const conv_shape *s = &k->s;
    int64_t nt = (g1 - g0) * k->tx, mt = point_stride((m1 - m0) * T), opix = s->ho * s->wo;
    const conv_epilogue *e = k->ep ? k->ep : &none;
    bool ep = e->scale || e->clamp || res;
    for (int64_t m = m0; m < m1; m++) { /* mo holds channels m0 .. m1, T columns each */
        float bias = bias_m ? bias_m[m] : 0.0f;
        output_tiles(mo + (m - m0) * T, mt, nt, q, o); /* o[(i*4 + j)*nt + t] */
        int64_t t = 0;
        for (int64_t g = g0; g < g1; g++) {
            int64_t ty = g % k->ty, rows = s->ho - ty * 4 < 4 ? s->ho - ty * 4 : 4;
            float *yr = y + (g / k->ty * s->m + m) * opix + ty * 4 * s->wo;
            for (int64_t tx = 0; tx < k->tx; tx++, t++) {
                int64_t cols = s->wo - tx * 4 < 4 ? s->wo - tx * 4 : 4;
                for (int64_t i = 0; i < rows; i++)
                    for (int64_t j = 0; j < cols; j++)
                        yr[i * s->wo + tx * 4 + j] =
                            o[(i * 4 + j) * nt + t] + (add ? yr[i * s->wo + tx * 4 + j] : bias);
            }
            if (ep)
                conv_epilogue_rows(yr, res ? res + (yr - y) : NULL, 0, 1, rows * s->wo, e, m);
        }
    }
}

/* ---- running ------------------------------------------------------------- */

typedef struct wino_run {
    const wino_conv *k;
    bool add; /* y += the result (staged_output) */
    const float *u, *bias;
    const float *x, *res;
    float *y;
    unsigned char *scratch;
    const float *w;   /* channel units: the weights, each unit transforming its own */
    int64_t flip_c;   /* as transform_chunk's */
    float *vall;      /* channel units: the call's V */
} wino_run;

/* V for the tiles of tile rows [g0, g1) (counted over the batch: image
 * g / ty, row g % ty), in columns of v from 0, T columns per channel, by
 * tile rows: six input rows split by phase, of which the next tile row of
 * the same image reuses the last two. */
static SIMD_CLONES void rows_input(const wino_conv *k, const float *x, int64_t g0, int64_t g1,
                                   float *v, int64_t T, float *rb, float *wv)
{
    const conv_shape *s = &k->s;
    int64_t ct = point_stride(s->c * T), pw = 4 * (k->tx + 1);
    for (int64_t c = 0; c < s->c; c++) {
        float *row[6];
        int64_t t = 0;
        for (int64_t g = g0; g < g1; g++, t += k->tx) {
            const float *xc = x + (g / k->ty * s->c + c) * s->h * s->w;
            int64_t top = g % k->ty * 4 - s->pad_t;
            if (g == g0 || g % k->ty == 0) { /* a new image: all six rows */
                for (int r = 0; r < 6; r++) {
                    row[r] = rb + r * pw;
                    padded_phases(xc, s, top + r, row[r], k->tx);
                }
            } else {
                float *free4[4] = {row[0], row[1], row[2], row[3]};
                row[0] = row[4], row[1] = row[5];
                for (int r = 2; r < 6; r++) {
                    row[r] = free4[r - 2];
                    padded_phases(xc, s, top + r, row[r], k->tx);
                }
            }
            rows_bt((const float *const *)row, wv, pw);
            cols_bt(wv, pw, k->tx, v + c * T + t, ct);
        }
    }
}

/* V for the tiles of tile rows [g0, g1): staged on maps of STAGED_TX tiles
 * per row or fewer, else by tile rows. */
static void input_tiles(const wino_conv *k, const float *x, int64_t g0, int64_t g1, float *v,
                        int64_t T, const row_buffers *b)
{
    if (k->tx <= STAGED_TX)
        staged_input(k, x, g0, g1, v, T, b->rb, b->st, b->tmp);
    else
        rows_input(k, x, g0, g1, v, T, b->rb, b->wv);
}

/* Tile unit u's tile rows [g0, g1), counted over the batch. */
static void unit_rows(const wino_conv *k, int64_t u, int64_t *g0, int64_t *g1)
{
    int64_t n0 = u / k->bands * k->ipu, ty0 = u % k->bands * k->rows;
    int64_t ty1 = ty0 + k->rows < k->ty ? ty0 + k->rows : k->ty;
    *g0 = n0 * k->ty + ty0;
    *g1 = *g0 + k->ipu * (ty1 - ty0);
}

static void wino_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    const wino_run *r = ctx;
    const wino_conv *k = r->k;
    const conv_shape *s = &k->s;
    unsigned char *p = r->scratch + (size_t)thread * k->scratch;
    float *v = (float *)p;
    p += align64(sizeof(float) * POINTS * (size_t)point_stride(s->c * k->T));
    float *mo = (float *)p;
    p += align64(sizeof(float) * POINTS * (size_t)point_stride(s->m * k->T));
    row_buffers b = row_buffers_at(p, k->tx, k->T);
    for (int64_t u = begin; u < end; u++) {
        int64_t g0, g1;
        unit_rows(k, u, &g0, &g1);
        int64_t tiles = (g1 - g0) * k->tx;
        input_tiles(k, r->x, g0, g1, v, k->T, &b);
        for (int i = 0; i < POINTS; i++)
            lego_sgemm_jit(0, 0, s->m, tiles, s->c, 1.0f, r->u + (int64_t)i * s->m * s->c, s->c,
                           v + i * point_stride(s->c * k->T), k->T, 0.0f,
                           mo + i * point_stride(s->m * k->T), k->T);
        staged_output(k, mo, 0, s->m, k->T, r->bias, r->res, r->y, g0, g1, r->add, b.st, b.tmp);
    }
}

/* A thread's scratch for channel units (k->chan_scratch bytes): a unit's
 * U (36 x mb x C), its products (36 x mb x all tiles), the transforms'
 * buffers. */
typedef struct chan_buffers {
    float *ub, *mo;
    row_buffers b;
} chan_buffers;

static chan_buffers chan_buffers_at(const wino_run *r, int thread)
{
    const wino_conv *k = r->k;
    int64_t all = k->n * k->tx * k->ty;
    unsigned char *p = r->scratch + (size_t)thread * k->chan_scratch;
    chan_buffers c;
    c.ub = (float *)p;
    p += align64(sizeof(float) * POINTS * (size_t)(k->mb * k->s.c));
    c.mo = (float *)p;
    p += align64(sizeof(float) * POINTS * (size_t)point_stride(k->mb * all));
    c.b = row_buffers_at(p, k->tx, all);
    return c;
}

/* Channel units, first pass: the call's V (vall, all tiles, T = n tx ty
 * columns per channel), by the tile units. */
static void chan_input(void *ctx, int64_t begin, int64_t end, int thread)
{
    const wino_run *r = ctx;
    const wino_conv *k = r->k;
    chan_buffers cb = chan_buffers_at(r, thread);
    for (int64_t u = begin; u < end; u++) {
        int64_t g0, g1;
        unit_rows(k, u, &g0, &g1);
        input_tiles(k, r->x, g0, g1, r->vall + g0 * k->tx, k->n * k->tx * k->ty, &cb.b);
    }
}

/* Second pass: unit u's mb output channels, from their filters'
 * transform, over every tile. */
static void chan_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    const wino_run *r = ctx;
    const wino_conv *k = r->k;
    const conv_shape *s = &k->s;
    int64_t all = k->n * k->tx * k->ty, mc = s->m * s->c;
    chan_buffers cb = chan_buffers_at(r, thread);
    float *ub = cb.ub, *mo = cb.mo;
    for (int64_t u = begin; u < end; u++) {
        int64_t m0 = u * k->mb, nb = s->m - m0 < k->mb ? s->m - m0 : k->mb;
        for (int64_t f = m0 * s->c; f < (m0 + nb) * s->c; f += WEIGHT_CHUNK) {
            int64_t nf = (m0 + nb) * s->c - f < WEIGHT_CHUNK ? (m0 + nb) * s->c - f : WEIGHT_CHUNK;
            transform_chunk(r->w, f, nf, ub + (f - m0 * s->c), nb * s->c, mc, r->flip_c);
        }
        for (int i = 0; i < POINTS; i++)
            lego_sgemm_jit(0, 0, nb, all, s->c, 1.0f, ub + (int64_t)i * nb * s->c, s->c,
                           r->vall + i * point_stride(s->c * all), all, 0.0f,
                           mo + i * point_stride(nb * all), all);
        staged_output(k, mo, m0, m0 + nb, all, r->bias, r->res, r->y, 0, k->n * k->ty, r->add, cb.b.st,
                      cb.b.tmp);
    }
}

/* A call by channel units (k->mb > 0): V first, then the units. */
static bool run_channels(const wino_conv *k, const float *w, const float *b, bool flipped, bool add,
                         const float *x, const float *res, float *y, workspace *ws)
{
    const conv_shape *s = &k->s;
    int64_t all = k->n * k->tx * k->ty, units = (s->m + k->mb - 1) / k->mb;
    size_t vb = align64(sizeof(float) * POINTS * (size_t)point_stride(s->c * all));
    /* a unit's GEMMs: 36 x 2 mb C T flops, counted as conv.c's gemm_work */
    par_split sp = par_split_work(units, 2.0 * POINTS * (double)(k->mb * s->c) * (double)all / 16.0);
    par_split si = par_split_work(k->units, 2.0 * POINTS * (double)(s->m * s->c) * (double)k->T / 16.0);
    int threads = sp.threads > si.threads ? sp.threads : si.threads;
    size_t total = vb + k->chan_scratch * (size_t)threads;
    unsigned char *buf = ws ? workspace_get(ws, total) : lego_aligned_alloc(total);
    if (!buf)
        return false;
    wino_run r = {.k = k, .add = add, .bias = b, .x = x, .res = res, .y = y, .w = w,
                  .flip_c = flipped ? s->c : 0, .vall = (float *)buf, .scratch = buf + vb};
    parallel_run(k->units, si, chan_input, &r);
    parallel_run(units, sp, chan_units, &r);
    if (!ws)
        lego_aligned_free(buf);
    return true;
}

/* The units, with U stored (w NULL) or transformed from w first into the
 * front of the scratch (flipped: for the input gradient). */
static bool run_units(const wino_conv *k, const float *w, const float *b, bool flipped, bool add,
                      const float *x, const float *res, float *y, workspace *ws)
{
    if (k->mb && w)
        return run_channels(k, w, b, flipped, add, x, res, y, ws);
    const conv_shape *s = &k->s;
    /* a unit's GEMMs: 36 x 2 M C T flops, counted as conv.c's gemm_work */
    double work = 2.0 * POINTS * (double)(s->m * s->c) * (double)k->T / 16.0;
    par_split sp = par_split_work(k->units, work);
    size_t ub = w ? align64(sizeof(float) * POINTS * (size_t)(s->m * s->c)) : 0;
    size_t total = ub + k->scratch * (size_t)sp.threads;
    unsigned char *buf = ws ? workspace_get(ws, total) : lego_aligned_alloc(total);
    if (!buf)
        return false;
    wino_run r = {.k = k, .add = add, .u = k->u, .bias = k->bias, .x = x, .res = res, .y = y,
                  .scratch = buf + ub};
    if (w) {
        transform_weights(k, w, flipped, (float *)buf);
        r.u = (const float *)buf;
        r.bias = b;
    }
    parallel_run(k->units, sp, wino_units, &r);
    if (!ws)
        lego_aligned_free(buf);
    return true;
}

bool wino_conv_run(const wino_conv *k, const float *w, const float *b, const float *x, const float *res,
                   float *y, workspace *ws)
{
    return k->u ? run_units(k, NULL, NULL, false, false, x, res, y, ws)
                : run_units(k, w, b, false, false, x, res, y, ws);
}

bool wino_conv_run_flipped(const wino_conv *k, const float *w, const float *x, float *y, bool add,
                           workspace *ws)
{
    return !k->u && !k->ep && run_units(k, w, NULL, true, add, x, NULL, y, ws);
}

/* ---- weight gradient ----------------------------------------------------- */

/* The forward is y = A^T M A per tile with M = U . V summed over channels
 * and U = G g G^T, so its weight gradient is
 *   dU[36][M][C] = sum over tiles of (A dY A^T) . V^T,   dW = G^T dU G,
 * V being the forward's input transform: again 36 GEMMs, now over the
 * tiles. The tiles go in chunks of whole tile rows (GRAD_CHUNK_BYTES of V
 * and A dY A^T: a function of the shape alone); each point's GEMM adds a
 * chunk into its dU on one thread, chunk after chunk, so the sums run in
 * the same order for any thread count. */
#define GRAD_CHUNK_BYTES (4u << 20)

/* A applied across four lines (the transpose of output_tiles' A^T): out
 * line a at j is row a of A times (d0[j] .. d3[j]), for j < n. */
SIMD_INLINE void a_lines(const float *const d[4], float *const o[6], int64_t n)
{
    const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3];
    float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
SIMD_IVDEP
    for (int64_t j = 0; j < n; j++) {
        o0[j] = d0[j];
        o1[j] = d0[j] + d1[j] + d2[j] + d3[j];
        o2[j] = d0[j] - d1[j] + d2[j] - d3[j];
        o3[j] = d0[j] + 2.0f * d1[j] + 4.0f * d2[j] + 8.0f * d3[j];
        o4[j] = d0[j] - 2.0f * d1[j] + 4.0f * d2[j] - 8.0f * d3[j];
        o5[j] = d3[j];
    }
}

/* A dY A^T for the tiles of tile rows [g0, g1), as staged_input: point
 * (a, b) of the chunk's tile t at yh[(a*6 + b)*point_stride(M*T) + m*T + t]. */
static SIMD_CLONES void staged_dy(const wino_conv *k, const float *dy, int64_t g0, int64_t g1,
                                  float *yh, int64_t T, float *pp, float *st, float *tmp)
{
    const conv_shape *s = &k->s;
    int64_t nt = (g1 - g0) * k->tx, mt = point_stride(s->m * T);
    tile_planes p = dy_planes(s);
    memset(pp, 0, sizeof(float) * (size_t)padded_floats(k, &p, g0, g1));
    for (int64_t m = 0; m < s->m; m++) {
        stage_tiles(k, &p, dy, m, g0, g1, pp, st);
        const float *in[4];
        float *out[6];
        for (int i = 0; i < 4; i++) { /* along each row: tmp[i][b][t] */
            for (int j = 0; j < 4; j++)
                in[j] = st + (i * 4 + j) * nt;
            for (int b = 0; b < 6; b++)
                out[b] = tmp + (i * 6 + b) * nt;
            a_lines(in, out, nt);
        }
        for (int b = 0; b < 6; b++) { /* down the columns */
            for (int i = 0; i < 4; i++)
                in[i] = tmp + (i * 6 + b) * nt;
            for (int a = 0; a < 6; a++)
                out[a] = yh + (a * 6 + b) * mt + m * T;
            a_lines(in, out, nt);
        }
    }
}

typedef struct grad_run {
    const wino_conv *k;
    const float *x, *dy;
    float *v, *yh, *du, *dw;
    int64_t T;      /* columns of v and yh */
    int64_t row0;   /* the chunk's first tile row, counted over the batch */
    int64_t tiles;  /* the chunk's tiles */
    bool first;     /* the chunk that writes dU */
    bool fresh;     /* dW written, not added */
    unsigned char *scratch; /* row_buffers per thread */
} grad_run;

/* Tile rows [begin, end) of the chunk: V and A dY A^T. */
static void grad_rows(void *ctx, int64_t begin, int64_t end, int thread)
{
    const grad_run *r = ctx;
    const wino_conv *k = r->k;
    row_buffers b = row_buffers_at(r->scratch + (size_t)thread * row_buffers_bytes(k->tx, r->T),
                                   k->tx, r->T);
    staged_dy(k, r->dy, r->row0 + begin, r->row0 + end, r->yh + begin * k->tx, r->T, b.rb, b.st, b.tmp);
    input_tiles(k, r->x, r->row0 + begin, r->row0 + end, r->v + begin * k->tx, r->T, &b);
}

/* Points [begin, end): dU[i] (+)= yh[i] . v[i]^T over the chunk's tiles. */
static void grad_points(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const grad_run *r = ctx;
    const conv_shape *s = &r->k->s;
    for (int64_t i = begin; i < end; i++)
        lego_sgemm_jit(0, 1, s->m, s->c, r->tiles, 1.0f, r->yh + i * point_stride(s->m * r->T), r->T,
                       r->v + i * point_stride(s->c * r->T), r->T, r->first ? 0.0f : 1.0f,
                       r->du + i * s->m * s->c, s->c);
}

/* dW = G^T dU G for filters [f0, f0 + nf), vectorised across them as
 * transform_chunk. */
static SIMD_CLONES void grad_filters(const float *du, int64_t mc, int64_t f0, int64_t nf, float *dw,
                                     bool fresh)
{
    float t[3][6][WEIGHT_CHUNK], g[9][WEIGHT_CHUNK];
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 6; b++) {
            const float *d = du + (int64_t)b * mc + f0;
            for (int64_t f = 0; f < nf; f++)
                t[i][b][f] = G[0][i] * d[f] + G[1][i] * d[6 * mc + f] + G[2][i] * d[12 * mc + f] +
                             G[3][i] * d[18 * mc + f] + G[4][i] * d[24 * mc + f] +
                             G[5][i] * d[30 * mc + f];
        }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int64_t f = 0; f < nf; f++)
                g[i * 3 + j][f] = t[i][0][f] * G[0][j] + t[i][1][f] * G[1][j] + t[i][2][f] * G[2][j] +
                                  t[i][3][f] * G[3][j] + t[i][4][f] * G[4][j] + t[i][5][f] * G[5][j];
    for (int64_t f = 0; f < nf; f++)
        for (int q = 0; q < 9; q++)
            dw[(f0 + f) * 9 + q] = fresh ? g[q][f] : dw[(f0 + f) * 9 + q] + g[q][f];
}

static void grad_weights(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const grad_run *r = ctx;
    int64_t mc = r->k->s.m * r->k->s.c;
    for (int64_t i = begin; i < end; i++) {
        int64_t f0 = i * WEIGHT_CHUNK;
        grad_filters(r->du, mc, f0, mc - f0 < WEIGHT_CHUNK ? mc - f0 : WEIGHT_CHUNK, r->dw, r->fresh);
    }
}

bool wino_conv_weight_grad(const wino_conv *k, const float *x, const float *dy, float *dw,
                           bool fresh, workspace *ws)
{
    const conv_shape *s = &k->s;
    int64_t rows = k->n * k->ty, mc = s->m * s->c;
    size_t du_bytes = align64(sizeof(float) * POINTS * (size_t)mc);
    size_t chunk = du_bytes > GRAD_CHUNK_BYTES ? du_bytes : GRAD_CHUNK_BYTES;
    int64_t per_row = (int64_t)(chunk / (POINTS * sizeof(float) * (size_t)(s->c + s->m))) / k->tx;
    per_row = per_row > 1 ? per_row : 1;
    per_row = per_row < rows ? per_row : rows;
    int64_t T = per_row * k->tx;
    /* a row's transforms: some 12 flops per point of each channel's tiles */
    double row_work = 12.0 * POINTS * (double)(k->tx * (s->c + s->m));
    par_split sr = par_split_work(per_row, row_work);
    par_split sg = par_split_work(POINTS, 2.0 * (double)(mc * T) / 16.0);
    int threads = sr.threads > sg.threads ? sr.threads : sg.threads;
    size_t v_bytes = align64(sizeof(float) * POINTS * (size_t)point_stride(s->c * T));
    size_t yh_bytes = align64(sizeof(float) * POINTS * (size_t)point_stride(s->m * T));
    size_t total = du_bytes + v_bytes + yh_bytes + row_buffers_bytes(k->tx, T) * (size_t)threads;
    unsigned char *buf = ws ? workspace_get(ws, total) : lego_aligned_alloc(total);
    if (!buf)
        return false;
    grad_run r = {.k = k, .x = x, .dy = dy, .du = (float *)buf, .v = (float *)(buf + du_bytes),
                  .yh = (float *)(buf + du_bytes + v_bytes), .dw = dw, .T = T, .fresh = fresh,
                  .scratch = buf + du_bytes + v_bytes + yh_bytes};
    for (int64_t row0 = 0; row0 < rows; row0 += per_row) {
        int64_t n = rows - row0 < per_row ? rows - row0 : per_row;
        r.row0 = row0;
        r.tiles = n * k->tx;
        r.first = row0 == 0;
        parallel_run(n, par_split_work(n, row_work), grad_rows, &r);
        parallel_run(POINTS, sg, grad_points, &r);
    }
    int64_t chunks = (mc + WEIGHT_CHUNK - 1) / WEIGHT_CHUNK;
    parallel_run(chunks, par_split_work(chunks, 400.0 * WEIGHT_CHUNK), grad_weights, &r);
    if (!ws)
        lego_aligned_free(buf);
    return true;
}
