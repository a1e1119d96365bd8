/* conv.c - Conv and ConvTranspose over NCHW tensors (2-D only), forward and
 * backward.
 *
 * Both lower to GEMM per image and group. Conv gathers input patches into
 * columns (im2col) and multiplies the weight by them; ConvTranspose multiplies
 * the transposed weight by the input and scatters the columns back into the
 * output (col2im). The column buffer is tiled over spatial positions so that
 * its size stays under COL_BUDGET whatever the feature map. A 1x1 kernel with
 * stride 1 and no padding needs no columns at all: the input is the matrix.
 *
 * The two ops are each other's adjoint, so their backward passes reuse the
 * same pieces the other way round: Conv's input gradient scatters Wᵀ·dY
 * with col2im, ConvTranspose's gathers dY with im2col and multiplies by W;
 * each weight gradient is the product of one op's columns with the other
 * side's data, accumulated over the batch.
 *
 * Work is cut into units that run in parallel chunks (core/threads.h; see
 * "the work split" below), each unit always making the same BLAS calls, so
 * every result is the same bits whatever the thread count. BLAS itself runs
 * single-threaded (blas.c): the threads are ours. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/threads.h"
#include "blas.h"
#include "conv_dnnl.h"
#include "conv_dnnl_train.h"
#include "conv_wino.h"
#include "op.h"
#include "simd.h"
#include "window.h"

#define COL_BUDGET ((int64_t)8 << 20) /* bytes of column scratch per call */

/* Attributes shared by Conv and ConvTranspose, after defaults; the window's
 * kernel is the weight's. */
typedef struct conv_attrs {
    window win;
    int64_t group;
} conv_attrs;

typedef struct conv_params {
    int64_t n, c, h, w; /* input */
    int64_t m, ho, wo;  /* output channels and size */
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l; /* leading pads; may be negative for ConvTranspose */
    int64_t group;
    int64_t tile;         /* spatial positions per column tile */
    int64_t mblock;       /* output channels per forward unit (split_small_batch) */
    int direct;           /* no im2col / col2im needed */
} conv_params;

/* Checks shared by both ops: x is (N,C,H,W), w is 4-D with kernel (kh,kw) last. */
static lego_status parse_common(const op_call *c, conv_attrs *a)
{
    LEGO_TRY(op_expect_dtype(c, 0, LEGO_F32));
    LEGO_TRY(op_expect_dtype(c, 1, LEGO_F32));
    const lego_tensor *x = c->in[0], *w = c->in[1];
    char sx[96], sw[96];
    if (x->rank != 4)
        return op_error(c, LEGO_ERR_UNSUPPORTED,
                        "only 2-D convolution is supported (NCHW input); input has rank %d (%s)",
                        x->rank, tensor_shape_str(x, sx, sizeof sx));
    if (w->rank != 4)
        return op_error(c, LEGO_ERR_SHAPE, "weight has rank %d (%s), expected 4", w->rank,
                        tensor_shape_str(w, sw, sizeof sw));
    for (int i = 0; i < 4; i++)
        if (w->dims[i] <= 0)
            return op_error(c, LEGO_ERR_SHAPE, "weight has an empty dimension (%s)",
                            tensor_shape_str(w, sw, sizeof sw));
    if (x->dims[1] <= 0 || x->dims[2] <= 0 || x->dims[3] <= 0)
        return op_error(c, LEGO_ERR_SHAPE, "input has an empty channel or spatial dimension (%s)",
                        tensor_shape_str(x, sx, sizeof sx));

    int64_t ks[2];
    LEGO_TRY(window_get_ints(c, "kernel_shape", 2, 0, 1, ks));
    if (attr_find(c->attrs, "kernel_shape") && (ks[0] != w->dims[2] || ks[1] != w->dims[3]))
        return op_error(c, LEGO_ERR_SHAPE, "kernel_shape is %lldx%lld but the weight is %lldx%lld",
                        (long long)ks[0], (long long)ks[1], (long long)w->dims[2],
                        (long long)w->dims[3]);
    a->win.k[0] = w->dims[2];
    a->win.k[1] = w->dims[3];
    LEGO_TRY(window_auto_pad(c, &a->win.mode));
    LEGO_TRY(window_get_ints(c, "strides", 2, 1, 1, a->win.stride));
    LEGO_TRY(window_get_ints(c, "dilations", 2, 1, 1, a->win.dilation));
    /* pads give way to a set auto_pad (ONNX forbids both; onnxruntime ignores pads) */
    LEGO_TRY(window_get_ints(c, "pads", 4, 0, 0, a->win.pads));
    LEGO_TRY(attr_get_int(c->attrs, "group", 1, &a->group));
    if (a->group < 1)
        return op_error(c, LEGO_ERR_FORMAT, "group is %lld, must be at least 1",
                        (long long)a->group);
    return lego_ok();
}

static lego_status check_bias(const op_call *c, int64_t m)
{
    const lego_tensor *b = op_input(c, 2);
    if (!b)
        return lego_ok();
    LEGO_TRY(op_expect_dtype(c, 2, LEGO_F32));
    if (b->rank != 1 || b->dims[0] != m) {
        char sb[96];
        return op_error(c, LEGO_ERR_SHAPE, "bias has shape %s, expected %lld (one per output channel)",
                        tensor_shape_str(b, sb, sizeof sb), (long long)m);
    }
    return lego_ok();
}

/* Columns per tile: the whole map when it fits the budget, else fewer. */
static int64_t tile_for(int64_t rows, int64_t positions)
{
    int64_t t = COL_BUDGET / ((int64_t)sizeof(float) * rows);
    if (t < 1)
        t = 1;
    return t < positions ? t : positions;
}

/* A Conv with fewer image-groups than SPLIT_PIECES (inference at batch 1)
 * also cuts its forward within each image, so that threads can share it:
 * into column tiles of at least SPLIT_MIN_TILE positions, then, when the map
 * is too small for that, into blocks of at least SPLIT_MIN_ROWS output
 * channels (each block builds its tile's columns again: cheap, since the map
 * is small). The cut depends on the shapes alone, never on the threads. */
#define SPLIT_PIECES 4
#define SPLIT_MIN_TILE 64
#define SPLIT_MIN_ROWS 16

static void split_small_batch(conv_params *p, int64_t mg, int64_t opix)
{
    p->mblock = mg;
    int64_t units = p->n * p->group;
    if (units >= SPLIT_PIECES)
        return;
    int64_t want = (SPLIT_PIECES + units - 1) / units;
    int64_t tile = (opix + want - 1) / want;
    tile = tile > SPLIT_MIN_TILE ? tile : SPLIT_MIN_TILE;
    p->tile = tile < p->tile ? tile : p->tile;
    int64_t tiles = (opix + p->tile - 1) / p->tile;
    int64_t blocks = (want + tiles - 1) / tiles, most = mg / SPLIT_MIN_ROWS;
    blocks = blocks < most ? blocks : most;
    if (blocks > 1)
        p->mblock = (mg + blocks - 1) / blocks;
}

/* Fills the params both ops share and sets y to (N,M,Ho,Wo); x is (N,C,H,W). */
static void set_output(op_call *c, const conv_attrs *a, int64_t m, const int64_t out[2],
                       const int64_t pb[2])
{
    conv_params *p = c->params;
    const lego_tensor *x = c->in[0];
    *p = (conv_params){.n = x->dims[0], .c = x->dims[1], .h = x->dims[2], .w = x->dims[3],
                       .m = m, .ho = out[0], .wo = out[1], .kh = a->win.k[0], .kw = a->win.k[1],
                       .sh = a->win.stride[0], .sw = a->win.stride[1],
                       .dh = a->win.dilation[0], .dw = a->win.dilation[1], .pad_t = pb[0],
                       .pad_l = pb[1], .group = a->group};
    int64_t dims[4] = {p->n, m, out[0], out[1]};
    tensor_set_shape(c->out[0], LEGO_F32, 4, dims);
}

static lego_status conv_prepare(op_call *c)
{
    conv_params *p = c->params;
    conv_attrs a = {0};
    LEGO_TRY(parse_common(c, &a));
    const lego_tensor *x = c->in[0], *w = c->in[1];
    int64_t cin = x->dims[1], m = w->dims[0];
    if (w->dims[1] * a.group != cin)
        return op_error(c, LEGO_ERR_SHAPE,
                        "weight has %lld input channels per group, input has %lld channels and "
                        "group %lld",
                        (long long)w->dims[1], (long long)cin, (long long)a.group);
    if (m % a.group != 0)
        return op_error(c, LEGO_ERR_SHAPE, "weight has %lld output channels, not divisible by group %lld",
                        (long long)m, (long long)a.group);
    LEGO_TRY(check_bias(c, m));

    int64_t in[2] = {x->dims[2], x->dims[3]}, out[2], pb[2], pe[2];
    LEGO_TRY(window_output(c, &a.win, in, "dilated kernel", out, pb, pe));
    set_output(c, &a, m, out, pb);
    p->direct = p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && pb[0] == 0 &&
                pb[1] == 0 && pe[0] == 0 && pe[1] == 0;
    p->tile = tile_for(cin / a.group * p->kh * p->kw, out[0] * out[1]);
    split_small_batch(p, m / a.group, out[0] * out[1]);
    return lego_ok();
}

/* The output spatial size of ConvTranspose on one axis, and its pads.
 * With output_shape or SAME_*, pads come from the ONNX formula
 *   total = stride*(in-1) + output_padding + dilated_kernel - out,
 * split with the odd one at the end for SAME_UPPER and at the start
 * otherwise (the ONNX spec and reference; onnxruntime splits NOTSET the other
 * way). A negative total (an output larger than the kernel reaches) becomes
 * extra rows at the end that only receive the bias. */
static void convt_axis(const window *win, int i, int64_t in, int64_t outpad, int64_t want,
                       int64_t *pb, int64_t *pe, int64_t *out)
{
    int64_t full = win->stride[i] * (in - 1) + outpad + (win->k[i] - 1) * win->dilation[i] + 1;
    if (want <= 0 && (win->mode == PAD_SAME_UPPER || win->mode == PAD_SAME_LOWER))
        want = in * win->stride[i];
    if (want > 0) {
        int64_t total = full - want;
        if (total < 0) {
            *pb = 0;
            *pe = total;
        } else {
            window_split_pad(win->mode, total, pb, pe);
        }
        *out = want;
        return;
    }
    *pb = win->mode == PAD_VALID ? 0 : win->pads[i];
    *pe = win->mode == PAD_VALID ? 0 : win->pads[i + 2];
    *out = full - *pb - *pe;
}

static lego_status convt_prepare(op_call *c)
{
    conv_params *p = c->params;
    conv_attrs a = {0};
    LEGO_TRY(parse_common(c, &a));
    const lego_tensor *x = c->in[0], *w = c->in[1];
    int64_t cin = x->dims[1];
    if (w->dims[0] != cin)
        return op_error(c, LEGO_ERR_SHAPE, "weight has %lld input channels, input has %lld channels",
                        (long long)w->dims[0], (long long)cin);
    if (cin % a.group != 0)
        return op_error(c, LEGO_ERR_SHAPE, "input has %lld channels, not divisible by group %lld",
                        (long long)cin, (long long)a.group);
    int64_t m = w->dims[1] * a.group;
    LEGO_TRY(check_bias(c, m));

    int64_t outpad[2], want[2] = {0, 0};
    LEGO_TRY(window_get_ints(c, "output_padding", 2, 0, 0, outpad));
    const int64_t *os = NULL;
    int nos = 0;
    LEGO_TRY(attr_get_ints(c->attrs, "output_shape", &os, &nos));
    if (os) {
        /* some exporters give the full NCHW shape rather than the spatial one */
        if (nos != 2 && nos != 4)
            return op_error(c, LEGO_ERR_FORMAT, "output_shape has %d values, expected 2", nos);
        want[0] = os[nos - 2];
        want[1] = os[nos - 1];
        if (want[0] < 1 || want[1] < 1)
            return op_error(c, LEGO_ERR_FORMAT, "output_shape %lldx%lld is empty",
                            (long long)want[0], (long long)want[1]);
    }
    int64_t in[2] = {x->dims[2], x->dims[3]};
    int64_t out[2], pb[2], pe[2];
    for (int i = 0; i < 2; i++)
        convt_axis(&a.win, i, in[i], outpad[i], want[i], &pb[i], &pe[i], &out[i]);
    if (out[0] < 1 || out[1] < 1)
        return op_error(c, LEGO_ERR_SHAPE,
                        "pads [%lld,%lld,%lld,%lld] leave an empty output (%lldx%lld) for input "
                        "%lldx%lld",
                        (long long)pb[0], (long long)pb[1], (long long)pe[0], (long long)pe[1],
                        (long long)out[0], (long long)out[1], (long long)in[0], (long long)in[1]);

    set_output(c, &a, m, out, pb);
    p->direct = p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && pb[0] == 0 &&
                pb[1] == 0 && out[0] == in[0] && out[1] == in[1];
    p->tile = tile_for(w->dims[1] * p->kh * p->kw, in[0] * in[1]);
    p->mblock = m / a.group;
    return lego_ok();
}

/* ---- the column transforms ---------------------------------------------- */

/* The patch geometry both ops share: a kernel tap (ki,kj) at position (r,q)
 * of the "small" map reaches (r*sh - pad_t + ki*dh, q*sw - pad_l + kj*dw) of
 * the "big" map. For Conv the small map is the output and the big one the
 * input; for ConvTranspose it is the other way round. Columns index small
 * positions p0..p0+nt (row-major, small_w wide); rows k index (channel,ki,kj)
 * of one group, k = (channel*kh + ki)*kw + kj.
 *
 * Both transforms walk one column row at a time, and within it one small-map
 * row at a time: a small row reaches one big row (or none, in the padding),
 * and its positions q in [lo, hi) land inside that row, at q*s + off. So the
 * padding is two runs of zeros around one strided run (contiguous at stride
 * 1) that needs no bounds checks. */

/* The small-map columns [lo, hi) of a row small_w wide whose tap lands inside
 * a big row big_w wide, at q*s + off. */
static void inside_run(int64_t off, int64_t s, int64_t big_w, int64_t small_w, int64_t *lo,
                       int64_t *hi)
{
    int64_t a, b;
    if (s == 1) { /* the common case, without dividing */
        a = off >= 0 ? 0 : -off;
        b = off >= big_w ? 0 : big_w - off;
    } else {
        a = off >= 0 ? 0 : (-off + s - 1) / s;
        b = off >= big_w ? 0 : (big_w - 1 - off) / s + 1;
    }
    *lo = a < small_w ? a : small_w;
    *hi = b < small_w ? b : small_w;
    if (*hi < *lo)
        *hi = *lo;
}

/* One column row's walk: tap k = (chan*kh + ki)*kw + kj, the big-map offsets
 * it reaches from small (0,0), and the columns of each small row that land
 * inside. tap_next steps to k+1 without dividing. */
typedef struct tap {
    int64_t chan, ki, kj;
    int64_t offh, offw; /* big (row, column) of small (0,0) */
    int64_t lo, hi;     /* inside_run of the tap's column offset */
} tap;

static void tap_geometry(tap *t, const conv_params *p, int64_t big_w, int64_t small_w)
{
    t->offh = t->ki * p->dh - p->pad_t;
    t->offw = t->kj * p->dw - p->pad_l;
    inside_run(t->offw, p->sw, big_w, small_w, &t->lo, &t->hi);
}

static tap tap_at(const conv_params *p, int64_t k, int64_t big_w, int64_t small_w)
{
    tap t = {.chan = k / (p->kw * p->kh), .ki = k / p->kw % p->kh, .kj = k % p->kw};
    tap_geometry(&t, p, big_w, small_w);
    return t;
}

static inline void tap_next(tap *t, const conv_params *p, int64_t big_w, int64_t small_w)
{
    if (++t->kj == p->kw) {
        t->kj = 0;
        if (++t->ki == p->kh) {
            t->ki = 0;
            t->chan++;
        }
    }
    tap_geometry(t, p, big_w, small_w);
}

/* n floats of zeros; most runs of padding are empty, and a call costs more
 * than the test. */
static void zero_run(float *d, int64_t n)
{
    if (n > 0)
        memset(d, 0, (size_t)n * sizeof(float));
}

/* im2col's row for tap t when both strides are 1 and both maps are big_w
 * wide: then the row is the big channel bc shifted by offh*big_w + offw, so
 * one copy does it, after which the columns that wrapped around from the
 * neighbouring row (outside [lo, hi)) are zeroed. dst is (nt). */
static void im2col_shifted(const tap *t, const float *bc, int64_t big_h, int64_t big_w,
                           int64_t p0, int64_t nt, float *dst)
{
    int64_t shift = t->offh * big_w + t->offw, end = p0 + nt;
    /* positions whose big row is inside, and whose source is inside the channel */
    int64_t a = (t->offh < 0 ? -t->offh : 0) * big_w, b = (big_h - t->offh) * big_w;
    a = a > p0 ? a : p0;
    a = a > -shift ? a : -shift;
    b = b < end ? b : end;
    b = b < big_h * big_w - shift ? b : big_h * big_w - shift;
    if (b <= a) {
        memset(dst, 0, (size_t)nt * sizeof(float));
        return;
    }
    zero_run(dst, a - p0);
    memcpy(dst + (a - p0), bc + a + shift, (size_t)(b - a) * sizeof(float));
    zero_run(dst + (b - p0), end - b);
    if (t->lo == 0 && t->hi == big_w)
        return;
    /* the wrapped columns, [0, lo) and [hi, big_w) of each row in [a, b):
     * a few per row, stored one by one (a memset call each costs more) */
    for (int64_t rs = a / big_w * big_w; rs < b; rs += big_w) {
        for (int64_t i = rs; i < rs + t->lo; i++)
            if (i >= a && i < b)
                dst[i - p0] = 0.0f;
        for (int64_t i = rs + t->hi; i < rs + big_w; i++)
            if (i >= a && i < b)
                dst[i - p0] = 0.0f;
    }
}

/* d[i] = src[i*s] for i < n; stride 2 (downsampling convs) gets a loop of its
 * own so that the compiler can vectorize it. */
static void gather(float *d, const float *src, int64_t n, int64_t s)
{
    if (s == 1) {
        memcpy(d, src, (size_t)n * sizeof(float));
    } else if (s == 2) {
        for (int64_t i = 0; i < n; i++)
            d[i] = src[2 * i];
    } else {
        for (int64_t i = 0; i < n; i++)
            d[i] = src[i * s];
    }
}

/* big is one group of one image, (channels,big_h,big_w); col is (k1-k0, nt):
 * column j of row k holds what tap k reaches from small position p0+j, zero
 * where it falls outside the big map. */
static void im2col(const conv_params *p, const float *big, int64_t big_h, int64_t big_w,
                   int64_t small_w, int64_t k0, int64_t k1, int64_t p0, int64_t nt, float *col)
{
    bool shifted = p->sh == 1 && p->sw == 1 && big_w == small_w;
    int64_t r0 = p0 / small_w, q0 = p0 % small_w;
    tap t = tap_at(p, k0, big_w, small_w);
    float *dst = col;
    for (int64_t k = k0; k < k1; k++, dst += nt, tap_next(&t, p, big_w, small_w)) {
        const float *bc = big + t.chan * big_h * big_w;
        if (shifted) {
            im2col_shifted(&t, bc, big_h, big_w, p0, nt, dst);
            continue;
        }
        float *d0 = dst;
        int64_t r = r0, qa = q0;
        for (int64_t left = nt; left > 0; r++, qa = 0) {
            int64_t qb = qa + left < small_w ? qa + left : small_w, len = qb - qa;
            int64_t bh = r * p->sh + t.offh;
            int64_t a = t.lo > qa ? t.lo : qa, b = t.hi < qb ? t.hi : qb;
            if (bh < 0 || bh >= big_h || b <= a) {
                zero_run(d0, len);
            } else {
                float *d = d0 + (a - qa);
                zero_run(d0, a - qa);
                gather(d, bc + bh * big_w + a * p->sw + t.offw, b - a, p->sw);
                zero_run(d + (b - a), qb - b);
            }
            d0 += len;
            left -= len;
        }
    }
}

/* The adjoint of im2col over all rows: each entry of col (kh*kw*channels,
 * nt) is added to the big-map pixel its tap reaches, if inside. big is
 * (channels,big_h,big_w). */
SIMD_CLONES
static void col2im(const conv_params *p, int64_t channels, const float *col, int64_t small_w,
                   int64_t p0, int64_t nt, float *big, int64_t big_h, int64_t big_w)
{
    int64_t r0 = p0 / small_w, q0 = p0 % small_w;
    tap t = tap_at(p, 0, big_w, small_w);
    const float *src = col;
    for (int64_t k = 0; k < channels * p->kh * p->kw; k++, tap_next(&t, p, big_w, small_w)) {
        float *bc = big + t.chan * big_h * big_w;
        int64_t r = r0, qa = q0;
        for (int64_t left = nt; left > 0; r++, qa = 0) {
            int64_t qb = qa + left < small_w ? qa + left : small_w, len = qb - qa;
            int64_t bh = r * p->sh + t.offh;
            int64_t a = t.lo > qa ? t.lo : qa, b = t.hi < qb ? t.hi : qb;
            if (bh >= 0 && bh < big_h && b > a) {
                float *d = bc + bh * big_w + a * p->sw + t.offw;
                const float *v = src + (a - qa);
                if (p->sw == 1)
                    for (int64_t i = 0; i < b - a; i++)
                        d[i] += v[i];
                else
                    for (int64_t i = 0; i < b - a; i++)
                        d[i * p->sw] += v[i];
            }
            src += len;
            left -= len;
        }
    }
}

/* ---- the work split ----------------------------------------------------- */

/* Each pass cuts its work into units and runs contiguous chunks of units in
 * parallel (core/threads.h), each thread with its own column buffer. Every
 * unit writes its own part of the result, and the units and the BLAS calls
 * each makes depend on the shapes alone, never on the chunk or thread that
 * runs them, so the results are the same bits for any thread count:
 *   y and dX: units of one image and group (Conv's forward also cuts column
 *     tiles and, at small batches, blocks of output channels:
 *     split_small_batch); ConvTranspose's forward and Conv's dX keep an
 *     image's tiles together because they scatter into overlapping pixels.
 *   dW: units of one slab of column rows of one group, i.e. a slab of dW's
 *     columns (set_slabs). A unit sums over the whole batch in image order,
 *     building just its own rows of im2col, so no two threads ever add into
 *     the same weight, and the sum runs in image order as a one-threaded loop
 *     (and PyTorch) does. */

typedef struct conv_run {
    const conv_params *p;
    int64_t cg, mg, kdim, ipix, opix; /* per group: channels in and out, column rows */
    const float *x, *w, *b, *dy;      /* b: NULL for none; dy: backward only */
    float *y, *dx, *dw;               /* dx, dw: NULL when not wanted */
    float *col;                       /* kdim x tile floats per thread; NULL when direct */
    int64_t slabs;                    /* dW units per group (set_slabs) */
    const conv_epilogue *ep;          /* forward of a packed Conv, or NULL */
    const float *res;                 /* with ep: a fused Add's residual, laid out as y, or NULL */
} conv_run;

/* Shapes and data of one call; kdim is the column rows (Conv: C/group*kh*kw,
 * ConvTranspose: M/group*kh*kw). */
static conv_run run_for(const op_call *c, int64_t kdim)
{
    const conv_params *p = c->params;
    const lego_tensor *b = op_input(c, 2);
    conv_run r = {.p = p, .cg = p->c / p->group, .mg = p->m / p->group, .kdim = kdim,
                  .ipix = p->h * p->w, .opix = p->ho * p->wo, .x = c->in[0]->data,
                  .w = c->in[1]->data, .b = b ? b->data : NULL};
    return r;
}

/* A column buffer per thread, unless direct. false without memory. */
static bool run_alloc(conv_run *r, int threads)
{
    r->col = NULL;
    if (r->p->direct)
        return true;
    r->col = malloc((size_t)(r->kdim * r->p->tile * threads) * sizeof(float));
    return r->col != NULL;
}

/* The column buffer of one thread. */
static float *thread_col(const conv_run *r, int thread)
{
    return r->col ? r->col + thread * r->kdim * r->p->tile : NULL;
}

/* The parallel threshold's operations for a GEMM of `flops`: BLIS does some
 * 16 flops in the time a plain loop spends on one element. */
static double gemm_work(double flops)
{
    return flops / 16.0;
}

/* Forward cannot fail: without scratch memory the output becomes NaN, which
 * the caller can see, rather than silently wrong numbers. */
static void fill_nan(const op_call *c)
{
    float *y = c->out[0]->data;
    int64_t n = lego_tensor_numel(c->out[0]);
    for (int64_t i = 0; i < n; i++)
        y[i] = NAN;
}

/* rows x cols of y (row stride ld) set to one bias value per row, or zero. */
static void fill_bias(float *y, int64_t ld, int64_t rows, int64_t cols, const float *b)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            y[i * ld + j] = b ? b[i] : 0.0f;
}

/* ---- forward ------------------------------------------------------------ */

/* The epilogue of a packed Conv on rows x cols of y (row stride ld), rows
 * being output channels from m0: a fused BatchNormalization's y*a + b,
 * then a fused Add's residual (res, laid out as y; NULL: none), then a
 * Relu's or Clip's clamp, each computed exactly as batchnorm.c,
 * elementwise.c and activation.c compute them, so that fusing changes no
 * bits. One pass per row, vectorised (the Winograd output calls it for
 * every channel's tile rows: 2.5% of a profile run as two passes). */
SIMD_CLONES void conv_epilogue_rows(float *y, const float *res, int64_t ld, int64_t rows, int64_t cols,
                                    const conv_epilogue *e, int64_t m0)
{
    float lo = e->lo, hi = e->hi;
    if (res && !e->clamp) /* a clamp to [-inf, inf] passes every value as it is, NaN and -0 too */
        lo = -INFINITY, hi = INFINITY;
    for (int64_t i = 0; i < rows; i++) {
        float *r = y + i * ld;
        const float *q = res ? res + i * ld : NULL;
        if (q && e->scale) {
            float a = e->scale[m0 + i], b = e->shift[m0 + i];
            for (int64_t j = 0; j < cols; j++) {
                float v = r[j] * a + b;
                r[j] = clamp_f32(v + q[j], lo, hi);
            }
        } else if (q) {
            for (int64_t j = 0; j < cols; j++)
                r[j] = clamp_f32(r[j] + q[j], lo, hi);
        } else if (e->scale && e->clamp) {
            float a = e->scale[m0 + i], b = e->shift[m0 + i];
            for (int64_t j = 0; j < cols; j++)
                r[j] = clamp_f32(r[j] * a + b, lo, hi);
        } else if (e->scale) {
            float a = e->scale[m0 + i], b = e->shift[m0 + i];
            for (int64_t j = 0; j < cols; j++)
                r[j] = r[j] * a + b;
        } else if (e->clamp) {
            for (int64_t j = 0; j < cols; j++)
                r[j] = clamp_f32(r[j], lo, hi);
        }
    }
}

/* What an inference plan packed for one Conv (op_desc.pack): the epilogue
 * of the BatchNormalization and Relu/Clip fused after it, and the kernels
 * that run this shape: oneDNN's, or our Winograd where oneDNN has none for
 * a 3x3 layer (both NULL: im2col + BLAS). */
typedef struct conv_packed {
    float *scale, *shift; /* the epilogue's, owned: m each */
    int64_t m;
    conv_epilogue ep;
    bool add;             /* a fused Add: op_call.residual goes into the epilogue */
    dnnl_conv *dnnl;
    wino_conv *wino;
} conv_packed;

/* Conv units u = ((n*group + g)*tiles + t)*blocks + b: output channels
 * [b*mblock, (b+1)*mblock) of group g over column tile t of image n. Units
 * of one tile follow each other, so a chunk builds the tile's columns once. */
static void conv_forward_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    const conv_run *r = ctx;
    const conv_params *p = r->p;
    float *col = thread_col(r, thread);
    int64_t tiles = (r->opix + p->tile - 1) / p->tile;
    int64_t blocks = (r->mg + p->mblock - 1) / p->mblock, built = -1;
    for (int64_t u = begin; u < end; u++) {
        int64_t nt_u = u / blocks, ng = nt_u / tiles, n = ng / p->group, g = ng % p->group;
        int64_t p0 = nt_u % tiles * p->tile, nt = r->opix - p0 < p->tile ? r->opix - p0 : p->tile;
        int64_t m0 = u % blocks * p->mblock, mb = r->mg - m0 < p->mblock ? r->mg - m0 : p->mblock;
        const float *xg = r->x + (n * p->c + g * r->cg) * r->ipix;
        const float *wb = r->w + (g * r->mg + m0) * r->kdim;
        float *yt = r->y + (n * p->m + g * r->mg + m0) * r->opix + p0;
        fill_bias(yt, r->opix, mb, nt, r->b ? r->b + g * r->mg + m0 : NULL);
        if (p->direct) { /* x is the (C/group, H*W) column matrix itself */
            lego_sgemm(0, 0, mb, nt, r->kdim, 1.0f, wb, r->kdim, xg + p0, r->ipix, 1.0f, yt,
                       r->opix);
        } else {
            if (built != nt_u)
                im2col(p, xg, p->h, p->w, p->wo, 0, r->kdim, p0, nt, col);
            built = nt_u;
            lego_sgemm(0, 0, mb, nt, r->kdim, 1.0f, wb, r->kdim, col, nt, 1.0f, yt, r->opix);
        }
        if (r->ep)
            conv_epilogue_rows(yt, r->res ? r->res + (yt - r->y) : NULL, r->opix, mb, nt, r->ep,
                               g * r->mg + m0);
    }
}

static conv_shape shape_of(const conv_params *p)
{
    return (conv_shape){.c = p->c, .h = p->h, .w = p->w, .m = p->m, .ho = p->ho, .wo = p->wo,
                        .kh = p->kh, .kw = p->kw, .sh = p->sh, .sw = p->sw, .dh = p->dh,
                        .dw = p->dw, .pad_t = p->pad_t, .pad_l = p->pad_l, .group = p->group};
}

/* What a train plan packed for one Conv (conv_train_pack): oneDNN's
 * state for forward and backward, and our Winograd where oneDNN has none
 * for a 3x3 layer, for the forward (and the weight gradient) and for the
 * input gradient (itself a 3x3 convolution of dY); each NULL when not
 * used. */
typedef struct conv_trainer {
    dnnl_conv_train *dnnl;
    wino_conv *wino, *wino_dx;
} conv_trainer;

/* A train plan's oneDNN state, when it was made for the call's current
 * shapes. */
static dnnl_conv_train *train_state(const op_call *c)
{
    const conv_params *p = c->params;
    conv_shape s = shape_of(p);
    const conv_trainer *t = c->train_state;
    return t && t->dnnl && dnnl_conv_train_matches(t->dnnl, &s, p->n) ? t->dnnl : NULL;
}

dnnl_conv_train *conv_trained_dnnl(void *state)
{
    return state ? ((conv_trainer *)state)->dnnl : NULL;
}

bool conv_trained_winograd(void *state)
{
    conv_trainer *t = state;
    return t && (t->wino || (t->dnnl && dnnl_conv_train_winograd(t->dnnl)));
}

/* Its Winograd forward, likewise. */
static wino_conv *train_wino(const op_call *c)
{
    const conv_params *p = c->params;
    conv_shape s = shape_of(p);
    const conv_trainer *t = c->train_state;
    return t && t->wino && wino_conv_matches(t->wino, &s, p->n) ? t->wino : NULL;
}

/* dW by our Winograd when the state has its forward: written when fresh,
 * else added. false when not done (no such state, no memory): oneDNN's
 * backward or the portable path then computes it. */
static bool wino_dw(const op_call *c, const float *dy, float *dw)
{
    wino_conv *tw = train_wino(c);
    return tw && wino_conv_weight_grad(tw, c->in[0]->data, dy, dw, c->fresh & 2u, c->ws);
}

/* dX by our Winograd (dx_shape) when the state has it: written when fresh,
 * else added. false when not done (no such state, no memory): oneDNN's
 * backward then computes it. */
static bool wino_dx(const op_call *c, const float *dy, float *dx)
{
    const conv_trainer *t = c->train_state;
    if (!train_wino(c) || !t->wino_dx)
        return false;
    return wino_conv_run_flipped(t->wino_dx, c->in[1]->data, dy, dx, !(c->fresh & 1u), c->ws);
}

static const float *bias_data(const op_call *c)
{
    const lego_tensor *b = op_input(c, 2);
    return b ? b->data : NULL;
}

// x is (N,C,H,W), w is (M,C/group,kh,kw), b is (M) or absent, y is (N,M,Ho,Wo)
static void conv_forward(const op_call *c)
{
    const conv_params *p = c->params;
    const conv_packed *k = c->packed;
    dnnl_conv_train *t = train_state(c);
    wino_conv *tw = train_wino(c);
    if (tw) { /* weights change every step: transformed on each forward */
        if (t)
            dnnl_conv_train_forget_weights(t); /* its backward reorders w itself */
        if (wino_conv_run(tw, c->in[1]->data, bias_data(c), c->in[0]->data, NULL, c->out[0]->data,
                          c->ws))
            return;
    }
    if (t && dnnl_conv_train_forward(t, c->in[0]->data, c->in[1]->data, bias_data(c),
                                     c->out[0]->data, c->training, c->ws))
        return; /* else (no memory, oneDNN failed) the portable path below */
    const float *res = k && k->add && c->residual ? c->residual->data : NULL;
    if (k && k->dnnl) {
        if (!dnnl_conv_run(k->dnnl, c->in[0]->data, res, c->out[0]->data, c->native & 1,
                           c->native & 2, c->ws))
            fill_nan(c);
        return;
    }
    if (k && k->wino) {
        if (!wino_conv_run(k->wino, c->in[1]->data, bias_data(c), c->in[0]->data, res,
                           c->out[0]->data, c->ws))
            fill_nan(c);
        return;
    }
    conv_run r = run_for(c, p->c / p->group * p->kh * p->kw);
    r.y = c->out[0]->data;
    if (k && (k->ep.scale || k->ep.clamp || res))
        r.ep = &k->ep;
    r.res = res;
    int64_t blocks = (r.mg + p->mblock - 1) / p->mblock;
    int64_t units = p->n * p->group * ((r.opix + p->tile - 1) / p->tile) * blocks;
    par_split s = par_split_work(units, gemm_work(2.0 * (double)(p->mblock * r.kdim * p->tile)));
    if (!run_alloc(&r, s.threads)) {
        fill_nan(c);
        return;
    }
    parallel_run(units, s, conv_forward_units, &r);
    free(r.col);
}

/* Only oneDNN's kernels have a layout of their own; im2col reads NCHW. */
static int conv_layout(const void *state, bool output)
{
    const conv_packed *k = state;
    return k && k->dnnl ? dnnl_conv_layout(k->dnnl, output) : -1;
}

static size_t conv_image_scratch(const op_call *c, int64_t *group)
{
    const conv_packed *k = c->packed;
    *group = 1;
    return k && k->dnnl ? dnnl_conv_image_scratch(k->dnnl, c->native & 1, group) : 0;
}

static bool conv_forward_images(const op_call *c, int64_t i0, int64_t i1, void *scratch)
{
    const conv_packed *k = c->packed;
    const float *res = k && k->add && c->residual ? c->residual->data : NULL;
    return k && k->dnnl &&
           dnnl_conv_run_images(k->dnnl, c->in[0]->data, res, c->out[0]->data, c->native & 1,
                                c->native & 2, i0, i1, scratch);
}

/* oneDNN's kernels and ours for Winograd copy the weights and bias when
 * they pack, and a packed forward never falls back to the im2col path that
 * reads the graph's; except our Winograd of more channels than it keeps,
 * which reads them on each run. */
static unsigned conv_packed_owns(const void *state)
{
    const conv_packed *k = state;
    return k && (k->dnnl || (k->wino && wino_conv_packed_bytes(k->wino))) ? 6u : 0u;
}

static size_t conv_packed_bytes(const void *state)
{
    const conv_packed *k = state;
    if (!k)
        return 0;
    size_t ep = k->scale ? 2 * sizeof(float) * (size_t)k->m : 0;
    return ep + (k->dnnl ? dnnl_conv_packed_bytes(k->dnnl) : 0) +
           (k->wino ? wino_conv_packed_bytes(k->wino) : 0);
}

bool conv_packed_dnnl(const void *packed)
{
    return packed && ((const conv_packed *)packed)->dnnl;
}

int conv_packed_units(const void *packed)
{
    const conv_packed *k = packed;
    return k && k->dnnl ? dnnl_conv_units(k->dnnl) : 0;
}

bool conv_packed_winograd(const void *packed)
{
    const conv_packed *k = packed;
    return k && (k->wino || (k->dnnl && dnnl_conv_winograd(k->dnnl)));
}

static void conv_unpack(void *state)
{
    conv_packed *k = state;
    if (!k)
        return;
    free(k->scale);
    free(k->shift);
    dnnl_conv_free(k->dnnl);
    wino_conv_free(k->wino);
    free(k);
}

/* Stride-2 3x3 layers on small maps with many filters, at inference,
 * where oneDNN's direct kernels are its AVX2 ones (no Winograd): im2col +
 * BLAS took 0.80-0.85 of their time at batch 8 to 64 on one and two threads
 * (bench/bench_layers.sh: 256 -> 512 and 256 -> 359 channels from 8x8, CIFAR
 * ResNet18's last downsampling layer and its 0.3 descendant's), about the
 * same for 205 filters (0.94-0.98), more for 103 (1.09-1.13) and on 16x16
 * or larger maps (1.0 at 16x16, 1.23 at 32x32); at batch 1 the im2col
 * path's split by images leaves a second thread idle (1.12-1.42). */
#define IM2COL_MAX_PIXELS 16
#define IM2COL_MIN_FILTERS 192
#define IM2COL_MIN_BATCH 8
static bool im2col_beats_direct(const conv_shape *s, int64_t n)
{
#ifdef LEGO_HAVE_DNNL
    if (dnnl_conv_winograd_available())
        return false;
#endif
    return s->kh == 3 && s->kw == 3 && s->sh == 2 && s->sw == 2 && s->dh == 1 && s->dw == 1 &&
           s->group == 1 && s->ho * s->wo <= IM2COL_MAX_PIXELS && s->m >= IM2COL_MIN_FILTERS &&
           n >= IM2COL_MIN_BATCH;
}

/* Whether pack gets constant weights and so a library kernel (oneDNN's,
 * or our Winograd) rather than the im2col path. */
static bool packs_constant(const op_call *c)
{
    const lego_tensor *bt = op_input(c, 2);
    /* portable: the fused epilogue only, on the im2col path */
    return c->in[1]->data && (!bt || bt->data) && !c->portable;
}

/* The kernel pack gives a call (pack_in). */
typedef enum { KERNEL_IM2COL, KERNEL_WINO, KERNEL_DNNL } conv_kernel;
static conv_kernel kernel_for(const op_call *c, const conv_shape *s)
{
    const conv_params *p = c->params;
    if (!packs_constant(c) || im2col_beats_direct(s, p->n))
        return KERNEL_IM2COL;
    if (wino_conv_fits(s, p->n))
        return KERNEL_WINO;
    return dnnl_conv_enabled() ? KERNEL_DNNL : KERNEL_IM2COL;
}

static lego_status pack_in(const op_call *c, const op_fused *f, conv_packed *k)
{
    const conv_params *p = c->params;
    const lego_tensor *bt = op_input(c, 2);
    if (f && f->scale) {
        k->m = p->m;
        k->scale = malloc(sizeof(float) * (size_t)p->m);
        k->shift = malloc(sizeof(float) * (size_t)p->m);
        if (!k->scale || !k->shift)
            return lego_error(LEGO_ERR_NOMEM, "out of memory fusing BatchNormalization");
        memcpy(k->scale, f->scale, sizeof(float) * (size_t)p->m);
        memcpy(k->shift, f->shift, sizeof(float) * (size_t)p->m);
        k->ep.scale = k->scale;
        k->ep.shift = k->shift;
    }
    if (f && f->clamp) {
        k->ep.clamp = true;
        k->ep.lo = f->lo;
        k->ep.hi = f->hi;
    }
    k->add = f && f->add;
    conv_shape s = shape_of(p);
    conv_kernel kernel = kernel_for(c, &s);
    if (kernel == KERNEL_IM2COL)
        return lego_ok();
    if (kernel == KERNEL_WINO)
        return wino_conv_create(&s, p->n, c->in[1]->data, bt ? bt->data : NULL, &k->ep, &k->wino);
    /* without a oneDNN kernel (none for the shape, or, with a residual, none
     * whose output our epilogue can run on) the im2col path runs it */
    return dnnl_conv_create(&s, p->n, c->in[1]->data, bt ? bt->data : NULL, &k->ep, k->add, &k->dnnl);
}

/* A fused Add's residual goes into every kernel's epilogue: Winograd's,
 * im2col's, and ours after oneDNN's primitives (conv_dnnl.c). */
static bool conv_packs_add(const op_call *c)
{
    (void)c;
    return true;
}

/* oneDNN needs constant weights (and bias) to pack; a Conv whose weights
 * are computed runs im2col + BLAS from its inputs, with the epilogue. */
static lego_status conv_pack(const op_call *c, const op_fused *f, void **state)
{
    *state = NULL;
    if (!packs_constant(c) && !f)
        return lego_ok();
    conv_packed *k = calloc(1, sizeof *k);
    if (!k)
        return lego_error(LEGO_ERR_NOMEM, "out of memory preparing a convolution");
    lego_status st = pack_in(c, f, k);
    if (st.code) {
        conv_unpack(k);
        return st;
    }
    *state = k;
    return lego_ok();
}

/* The convolution that gives a 3x3 stride-1 layer's input gradient from
 * dY: dY's channels in, x's out, filters turned, padding 2 - the forward's
 * on each side (false when a forward pad exceeds 2). */
static bool dx_shape(const conv_shape *s, conv_shape *d)
{
    int64_t pb = s->ho - s->h - s->pad_t + 2, pr = s->wo - s->w - s->pad_l + 2;
    if (!conv_shape_3x3_unit(s) || s->pad_t > 2 || s->pad_l > 2 || pb < 0 || pb > 2 || pr < 0 ||
        pr > 2)
        return false;
    *d = (conv_shape){.c = s->m, .h = s->ho, .w = s->wo, .m = s->c, .ho = s->h, .wo = s->w,
                      .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                      .pad_t = 2 - s->pad_t, .pad_l = 2 - s->pad_l, .group = 1};
    return true;
}

static void conv_train_unpack(void *state)
{
    conv_trainer *t = state;
    if (!t)
        return;
    dnnl_conv_train_free(t->dnnl);
    wino_conv_free(t->wino);
    wino_conv_free(t->wino_dx);
    free(t);
}

/* A train plan's Conv runs forward and backward on oneDNN where it is built
 * in and takes the shape (conv_dnnl_train.c), else im2col + BLAS; a 3x3
 * layer that our Winograd takes (where oneDNN has none) runs its forward,
 * input gradient and weight gradient there instead. Not with
 * portable_kernels. ConvTranspose always keeps the portable path. */
static lego_status conv_train_pack(const op_call *c, void **state)
{
    const conv_params *p = c->params;
    *state = NULL;
    if (c->portable)
        return lego_ok();
    conv_shape s = shape_of(p);
    conv_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return lego_error(LEGO_ERR_NOMEM, "out of memory preparing a convolution");
    bool bias = op_input(c, 2) != NULL;
    lego_status st = dnnl_conv_train_create(&s, p->n, bias, &t->dnnl);
    if (!st.code && wino_conv_fits(&s, p->n))
        st = wino_conv_create(&s, p->n, NULL, NULL, NULL, &t->wino);
    conv_shape sd;
    if (!st.code && t->wino && dx_shape(&s, &sd) && wino_conv_fits(&sd, p->n))
        st = wino_conv_create(&sd, p->n, NULL, NULL, NULL, &t->wino_dx);
    if (st.code || (!t->dnnl && !t->wino)) {
        conv_train_unpack(t);
        return st;
    }
    *state = t;
    return lego_ok();
}

/* ConvTranspose units u = n*group + g. */
static void convt_forward_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    const conv_run *r = ctx;
    const conv_params *p = r->p;
    float *col = thread_col(r, thread);
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / p->group, g = u % p->group;
        const float *xg = r->x + (n * p->c + g * r->cg) * r->ipix;
        const float *wg = r->w + g * r->cg * r->kdim; /* (C/group, M/group*kh*kw) */
        float *yg = r->y + (n * p->m + g * r->mg) * r->opix;
        fill_bias(yg, r->opix, r->mg, r->opix, r->b ? r->b + g * r->mg : NULL);
        if (p->direct) {
            lego_sgemm(1, 0, r->mg, r->ipix, r->cg, 1.0f, wg, r->kdim, xg, r->ipix, 1.0f, yg,
                       r->opix);
            continue;
        }
        for (int64_t p0 = 0; p0 < r->ipix; p0 += p->tile) {
            int64_t nt = r->ipix - p0 < p->tile ? r->ipix - p0 : p->tile;
            lego_sgemm(1, 0, r->kdim, nt, r->cg, 1.0f, wg, r->kdim, xg + p0, r->ipix, 0.0f, col,
                       nt);
            col2im(p, r->mg, col, p->w, p0, nt, yg, p->ho, p->wo);
        }
    }
}

// x is (N,C,H,W), w is (C,M/group,kh,kw), b is (M) or absent, y is (N,M,Ho,Wo)
static void convt_forward(const op_call *c)
{
    const conv_params *p = c->params;
    conv_run r = run_for(c, p->m / p->group * p->kh * p->kw);
    r.y = c->out[0]->data;
    int64_t units = p->n * p->group;
    par_split s = par_split_work(units, gemm_work(2.0 * (double)(r.cg * r.kdim * r.ipix)));
    if (!run_alloc(&r, s.threads)) {
        fill_nan(c);
        return;
    }
    parallel_run(units, s, convt_forward_units, &r);
    free(r.col);
}

/* ---- backward ----------------------------------------------------------- */

/* Backward cannot fail either: without scratch memory every gradient asked
 * for gets NaN added, so the failure shows instead of a silent wrong step. */
static void poison(lego_tensor *const *din, int n)
{
    for (int i = 0; i < n; i++) {
        if (!din[i])
            continue;
        float *d = din[i]->data;
        for (int64_t j = 0; j < lego_tensor_numel(din[i]); j++)
            d[j] += NAN;
    }
}

typedef struct bias_grad {
    const conv_params *p;
    const float *dy;
    int64_t opix;
    float *db;
} bias_grad;

/* db is (M): adds the sum of dy (N,M,Ho,Wo) over N, Ho and Wo, for the
 * channels [b, e). */
static void bias_backward_chunk(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const bias_grad *k = ctx;
    const conv_params *p = k->p;
    for (int64_t m = b; m < e; m++) {
        double sum = 0;
        for (int64_t n = 0; n < p->n; n++) {
            const float *d = k->dy + (n * p->m + m) * k->opix;
            for (int64_t j = 0; j < k->opix; j++)
                sum += d[j];
        }
        k->db[m] += (float)sum;
    }
}

static void bias_backward(const conv_params *p, const float *dy, float *db)
{
    bias_grad k = {p, dy, p->ho * p->wo, db};
    parallel_run(p->m, par_split_work(p->m, (double)(p->n * k.opix)), bias_backward_chunk, &k);
}

/* One backward pass over `units` units of about `work` GEMM flops each. */
static void backward_pass(conv_run *r, lego_tensor *const *din, int64_t units, double work,
                          par_fn *fn)
{
    par_split s = par_split_work(units, gemm_work(work));
    if (!run_alloc(r, s.threads)) {
        poison(din, 2);
        return;
    }
    parallel_run(units, s, fn, r);
    free(r->col);
}

/* The start of both backwards: dB, and r's dY, dX and dW. false when there
 * is nothing more to do (no dY, or neither dX nor dW asked for). */
static bool begin_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din,
                           conv_run *r)
{
    const conv_params *p = c->params;
    if (!dout[0])
        return false;
    r->dy = dout[0]->data;
    if (c->n_in > 2 && din[2])
        bias_backward(p, r->dy, din[2]->data);
    r->dx = din[0] ? din[0]->data : NULL;
    r->dw = din[1] ? din[1]->data : NULL;
    return r->dx || r->dw;
}

/* Calls fn(r, g, k0, k1, col) for each dW unit in [begin, end): unit
 * u = g*slabs + s is slab s of group g, the column rows
 * [s*kdim/slabs, (s+1)*kdim/slabs). */
typedef void dw_rows_fn(const conv_run *r, int64_t g, int64_t k0, int64_t k1, float *col);

static void dw_units(const conv_run *r, int64_t begin, int64_t end, int thread, dw_rows_fn *fn)
{
    float *col = thread_col(r, thread);
    for (int64_t u = begin; u < end; u++) {
        int64_t g = u / r->slabs, s = u % r->slabs;
        fn(r, g, s * r->kdim / r->slabs, (s + 1) * r->kdim / r->slabs, col);
    }
}

/* The slabs each group's dW is cut into: a function of the shapes alone,
 * so that each unit makes the same GEMM calls whatever the thread count.
 * Slabs are at least DW_SLAB_ROWS wide and DW_SLAB_WORK operations big (a
 * narrower GEMM wastes more than a thread gains); a small layer keeps one
 * slab, the one GEMM per image and tile of a one-threaded loop. */
#define DW_SLABS_MAX 8
#define DW_SLAB_ROWS 16
#define DW_SLAB_WORK 4e6

static void set_slabs(conv_run *r, double work)
{
    int64_t by_rows = r->kdim / DW_SLAB_ROWS, by_work = (int64_t)(work / DW_SLAB_WORK);
    int64_t s = DW_SLABS_MAX < by_rows ? DW_SLABS_MAX : by_rows;
    s = s < by_work ? s : by_work;
    r->slabs = s < 1 ? 1 : s;
}

/* Conv: y = W·im2col(x) per image and group, so
 *   dW += dY·im2col(x)ᵀ and dX += col2im(Wᵀ·dY).
 * dW rows: columns [k0, k1) of group g's (M/group, kdim) block. */
static void conv_dw_rows(const conv_run *r, int64_t g, int64_t k0, int64_t k1, float *col)
{
    const conv_params *p = r->p;
    float *dwg = r->dw + g * r->mg * r->kdim + k0;
    for (int64_t n = 0; n < p->n; n++) {
        const float *xg = r->x + (n * p->c + g * r->cg) * r->ipix;
        const float *dyg = r->dy + (n * p->m + g * r->mg) * r->opix;
        for (int64_t p0 = 0; p0 < r->opix; p0 += p->tile) {
            int64_t nt = r->opix - p0 < p->tile ? r->opix - p0 : p->tile;
            const float *cols = xg + k0 * r->ipix + p0; /* direct: rows of x are the columns */
            int64_t ld = r->ipix;
            if (!p->direct) {
                im2col(p, xg, p->h, p->w, p->wo, k0, k1, p0, nt, col);
                cols = col;
                ld = nt;
            }
            lego_sgemm(0, 1, r->mg, k1 - k0, nt, 1.0f, dyg + p0, r->opix, cols, ld, 1.0f, dwg,
                       r->kdim);
        }
    }
}

static void conv_dw_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    dw_units(ctx, begin, end, thread, conv_dw_rows);
}

/* dX units u = n*group + g. */
static void conv_dx_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    const conv_run *r = ctx;
    const conv_params *p = r->p;
    float *col = thread_col(r, thread);
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / p->group, g = u % p->group;
        const float *wg = r->w + g * r->mg * r->kdim;
        const float *dyg = r->dy + (n * p->m + g * r->mg) * r->opix;
        float *dxg = r->dx + (n * p->c + g * r->cg) * r->ipix;
        if (p->direct) { /* dX is the (C/group, H*W) column matrix itself */
            lego_sgemm(1, 0, r->kdim, r->opix, r->mg, 1.0f, wg, r->kdim, dyg, r->opix, 1.0f, dxg,
                       r->ipix);
            continue;
        }
        for (int64_t p0 = 0; p0 < r->opix; p0 += p->tile) {
            int64_t nt = r->opix - p0 < p->tile ? r->opix - p0 : p->tile;
            lego_sgemm(1, 0, r->kdim, nt, r->mg, 1.0f, wg, r->kdim, dyg + p0, r->opix, 0.0f, col,
                       nt);
            col2im(p, r->cg, col, p->wo, p0, nt, dxg, p->h, p->w);
        }
    }
}

/* x is (N,C,H,W), w (M,C/group,kh,kw); dy is (N,M,Ho,Wo) and dx, dw, db
 * have the shapes of x, w and b. */
static void conv_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const conv_params *p = c->params;
    dnnl_conv_train *t = train_state(c);
    /* dX and dW first where our Winograd computes them (conv_trainer), then
     * the rest: what is left to do is in `rest` */
    bool dx_done = dout[0] && din[0] && wino_dx(c, dout[0]->data, din[0]->data);
    bool dw_done = dout[0] && din[1] && wino_dw(c, dout[0]->data, din[1]->data);
    lego_tensor *rest[3] = {dx_done ? NULL : din[0], dw_done ? NULL : din[1],
                            c->n_in > 2 ? din[2] : NULL};
    unsigned fresh = c->fresh & ~(dx_done ? 1u : 0u) & ~(dw_done ? 2u : 0u);
    if (dw_done && rest[2]) { /* oneDNN would run its whole weight gradient for dB */
        if (fresh & 4u)
            memset(rest[2]->data, 0, lego_tensor_bytes(rest[2]));
        bias_backward(p, dout[0]->data, rest[2]->data);
        rest[2] = NULL;
    }
    if (t && dout[0] &&
        dnnl_conv_train_backward(t, c->in[0]->data, c->in[1]->data, dout[0]->data,
                                 rest[0] ? rest[0]->data : NULL, rest[1] ? rest[1]->data : NULL,
                                 rest[2] ? rest[2]->data : NULL, fresh, c->ws))
        return; /* else (no kernel for this backward, no memory) the portable path */
    for (int i = 0; i < c->n_in && i < 3; i++) /* which adds into each gradient */
        if (rest[i] && fresh >> i & 1u)
            memset(rest[i]->data, 0, lego_tensor_bytes(rest[i]));
    conv_run r = run_for(c, p->c / p->group * p->kh * p->kw);
    if (!begin_backward(c, dout, rest, &r))
        return;
    double gemm = 2.0 * (double)(r.mg * r.kdim * r.opix); /* one image and group */
    if (r.dw) {
        set_slabs(&r, gemm * (double)p->n);
        backward_pass(&r, rest, p->group * r.slabs, gemm * (double)p->n / (double)r.slabs,
                      conv_dw_units);
    }
    if (r.dx)
        backward_pass(&r, rest, p->n * p->group, gemm, conv_dx_units);
}

/* ConvTranspose: y = col2im(Wᵀ·x) per image and group, so with
 * col = im2col(dY) (the adjoint of col2im):
 *   dX += W·col and dW += x·colᵀ.
 * dW rows: columns [k0, k1) of group g's (C/group, kdim) block. */
static void convt_dw_rows(const conv_run *r, int64_t g, int64_t k0, int64_t k1, float *col)
{
    const conv_params *p = r->p;
    float *dwg = r->dw + g * r->cg * r->kdim + k0;
    for (int64_t n = 0; n < p->n; n++) {
        const float *xg = r->x + (n * p->c + g * r->cg) * r->ipix;
        const float *dyg = r->dy + (n * p->m + g * r->mg) * r->opix;
        for (int64_t p0 = 0; p0 < r->ipix; p0 += p->tile) {
            int64_t nt = r->ipix - p0 < p->tile ? r->ipix - p0 : p->tile;
            const float *cols = dyg + k0 * r->opix + p0; /* direct: rows of dY are the columns */
            int64_t ld = r->opix;
            if (!p->direct) {
                im2col(p, dyg, p->ho, p->wo, p->w, k0, k1, p0, nt, col);
                cols = col;
                ld = nt;
            }
            lego_sgemm(0, 1, r->cg, k1 - k0, nt, 1.0f, xg + p0, r->ipix, cols, ld, 1.0f, dwg,
                       r->kdim);
        }
    }
}

static void convt_dw_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    dw_units(ctx, begin, end, thread, convt_dw_rows);
}

/* dX units u = n*group + g. */
static void convt_dx_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    const conv_run *r = ctx;
    const conv_params *p = r->p;
    float *col = thread_col(r, thread);
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / p->group, g = u % p->group;
        const float *wg = r->w + g * r->cg * r->kdim; /* (C/group, M/group*kh*kw) */
        const float *dyg = r->dy + (n * p->m + g * r->mg) * r->opix;
        float *dxg = r->dx + (n * p->c + g * r->cg) * r->ipix;
        if (p->direct) { /* dY is the (M/group, H*W) column matrix itself */
            lego_sgemm(0, 0, r->cg, r->ipix, r->kdim, 1.0f, wg, r->kdim, dyg, r->opix, 1.0f, dxg,
                       r->ipix);
            continue;
        }
        for (int64_t p0 = 0; p0 < r->ipix; p0 += p->tile) {
            int64_t nt = r->ipix - p0 < p->tile ? r->ipix - p0 : p->tile;
            im2col(p, dyg, p->ho, p->wo, p->w, 0, r->kdim, p0, nt, col);
            lego_sgemm(0, 0, r->cg, nt, r->kdim, 1.0f, wg, r->kdim, col, nt, 1.0f, dxg + p0,
                       r->ipix);
        }
    }
}

/* x is (N,C,H,W), w (C,M/group,kh,kw); dy is (N,M,Ho,Wo) and dx, dw, db
 * have the shapes of x, w and b. */
static void convt_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const conv_params *p = c->params;
    conv_run r = run_for(c, p->m / p->group * p->kh * p->kw);
    if (!begin_backward(c, dout, din, &r))
        return;
    double gemm = 2.0 * (double)(r.cg * r.kdim * r.ipix); /* one image and group */
    if (r.dw) {
        set_slabs(&r, gemm * (double)p->n);
        backward_pass(&r, din, p->group * r.slabs, gemm * (double)p->n / (double)r.slabs,
                      convt_dw_units);
    }
    if (r.dx)
        backward_pass(&r, din, p->n * p->group, gemm, convt_dx_units);
}

/* Multiply-adds of the kernel, counted as two flops; the bias is not counted. */
static int64_t conv_flops(const op_call *c)
{
    const lego_tensor *w = c->in[1];
    return 2 * lego_tensor_numel(c->out[0]) * w->dims[1] * w->dims[2] * w->dims[3];
}

static int64_t convt_flops(const op_call *c)
{
    const lego_tensor *w = c->in[1];
    return 2 * lego_tensor_numel(c->in[0]) * w->dims[1] * w->dims[2] * w->dims[3];
}

const op_desc op_desc_Conv = {
    .name = "Conv",
    .min_in = 2, .max_in = 3,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(conv_params),
    .prepare = conv_prepare,
    .forward = conv_forward,
    .flops = conv_flops,
    .backward = conv_backward,
    .out_unread = 1u, /* dW and dX need x, W and dY only */
    .grad_writes = 7u,
    .pack = conv_pack,
    .unpack = conv_unpack,
    .packs_add = conv_packs_add,
    .layout = conv_layout,
    .packed_owns = conv_packed_owns,
    .packed_bytes = conv_packed_bytes,
    .image_scratch = conv_image_scratch,
    .forward_images = conv_forward_images,
    .train_pack = conv_train_pack,
    .train_unpack = conv_train_unpack,
};

const op_desc op_desc_ConvTranspose = {
    .name = "ConvTranspose",
    .min_in = 2, .max_in = 3,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(conv_params),
    .prepare = convt_prepare,
    .forward = convt_forward,
    .flops = convt_flops,
    .backward = convt_backward,
    .out_unread = 1u,
};
