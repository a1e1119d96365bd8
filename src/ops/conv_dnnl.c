/* conv_dnnl.c - Conv forward through oneDNN (see conv_dnnl.h).
 *
 * Per call: (1) each image's input is reordered from NCHW into the layout
 * the primitive chose (skipped when it reads NCHW itself, as for 3-channel
 * stems, or when the plan kept the input in that layout); (2) units
 * u = image*blocks + block run the convolution of one image, or of one
 * part of it at small batches (a band of output rows, or a block of output
 * channels), with the bias fused, into a per-thread buffer, then run the
 * epilogue (BN, clamp) on it while it is in cache (as oneDNN post-ops only
 * when the primitive's output is blocked), and (3) reorder that buffer
 * straight into the unit's part of y (or write y in place when the plan
 * keeps the output in the layout; channel blocks are copied into the
 * image's NHWC). All
 * primitives are made for a batch of one, so a unit's arithmetic does not
 * depend on the batch split or the threads.
 *
 * Threads: Debian's libdnnl runs on OpenMP (libgomp), whose idle threads
 * busy-wait. We never let it start any: every thread that creates or runs
 * a primitive first sets its OpenMP thread count to one, so oneDNN runs
 * inline, and the parallelism is our pool's, whose threads sleep when idle.
 * Scratchpads are ours too (user mode), one per thread of a call. */
#include "conv_dnnl.h"
#include "conv_wino.h"

#include <stdlib.h>
#include <string.h>

#ifdef LEGO_HAVE_DNNL

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include <oneapi/dnnl/dnnl.h>

#include "../core/env.h"
#include "../core/tensor.h"
#include "conv_dnnl_impl.h"
#include "../core/threads.h"
#include "op.h"
#include "simd.h"

#if DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_OMP
void omp_set_num_threads(int n); /* libgomp, loaded with libdnnl */
static void one_thread(void) { omp_set_num_threads(1); }
#elif DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_SEQ
static void one_thread(void) {}
#else
#error "oneDNN must use OpenMP or run sequentially (CMake checks this)"
#endif

/* A batch-1 unit of fewer output channels than this runs slower per flop
 * than the whole image does (oneDNN blocks output channels by 16 and reuses
 * each input load across several blocks); split_blocks never cuts finer.
 * 1x1 layers reuse little of their input, and MobileNetV2's project layers
 * (24 or 32 outputs) otherwise ran on one thread while the other waited:
 * with 16, CIFAR MobileNetV2 at batch 1 on two threads took 1.75 rather
 * than 2.05-2.08 ms (AVX2), CIFAR ResNet18 and the Fashion-MNIST teacher the
 * same; 16 for 3x3 layers too made the teacher 19% slower. */
#define MIN_BLOCK 32
#define MIN_BLOCK_1X1 16
#define SPLIT_PIECES 4 /* units wanted per call, as conv.c's split_small_batch */

/* Buffers carved out of one scratch start on 64-byte boundaries. */
static size_t align64(size_t bytes) { return (bytes + 63) / 64 * 64; }

static dnnl_engine_t engine;
static bool engine_ok;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static int enabled = -1;
static pthread_once_t enabled_once = PTHREAD_ONCE_INIT;

static void engine_init(void)
{
    one_thread();
    engine_ok = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success;
}

/* LEGO_DNNL=0 turns oneDNN off (core/env.h), to measure the portable path. */
static void read_enabled(void) { enabled = env_switch_on("LEGO_DNNL"); }

bool dnnl_conv_winograd_available(void)
{
    return dnnl_conv_enabled() && dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx512_core;
}

const char *dnnl_conv_switched_off(void)
{
    if (!dnnl_conv_enabled())
        return "LEGO_DNNL=0";
    return conv_winograd_on() ? "" : "LEGO_WINOGRAD=0";
}

dnnl_alg_kind_t conv_dnnl_algorithm(const conv_shape *s)
{
    bool fits = conv_shape_3x3_unit(s) && s->c >= 16 && s->m >= 16 && s->c * s->m <= 256 * 256 &&
                s->ho * s->wo >= 16;
    return conv_winograd_on() && fits && dnnl_conv_winograd_available() ? dnnl_convolution_winograd
                                                              : dnnl_convolution_direct;
}

bool dnnl_conv_enabled(void)
{
    pthread_once(&enabled_once, read_enabled);
    return enabled == 1;
}

/* One primitive for blocks of `oc` output channels of one image. */
typedef struct kind {
    int64_t oc, pix;  /* output channels; output pixels per image (rows x width) */
    dnnl_alg_kind_t alg; /* the algorithm oneDNN took (conv_dnnl_algorithm) */
    int lay;          /* OP_LAYOUT_* of dst_md (dense), -1 when none */
    int padded;       /* 16 or 8: dst_md is nChw16c or nChw8c with oc not a multiple of that
                         block, the last block padded with zeros; 0 otherwise */
    dnnl_primitive_t conv, to_plain; /* to_plain: NULL when dst is NCHW already */
    dnnl_memory_desc_t src_md, wei_md, bias_md, dst_md, plain_md, pad_md, chan_md;
    size_t dst_bytes, pad_bytes, wei_bytes;
} kind;

#define MAX_UNITS 4 /* units per image: SPLIT_PIECES at most */

struct dnnl_conv {
    conv_shape s;
    int64_t ipu;           /* images per call (pick_ipu) */
    int64_t n, blocks, oc; /* units per call; channel blocks: oc channels each, the last
                              may be shorter */
    bool bands;            /* units are bands of output rows (NHWC) instead */
    bool slices;           /* depthwise, one image a call: the channel blocks read their own
                              channels of a blocked input (try_slices) */
    bool own_ep;           /* the epilogue runs here (epilogue_nhwc/nchw) on the primitive's
                              dense output, not as oneDNN post-ops */
    bool add;              /* a fused Add: each run's residual goes into that epilogue */
    kind k[MAX_UNITS];     /* channel blocks: k[0] full, k[1] a shorter last one; bands:
                              one per band */
    int64_t r0[MAX_UNITS], ih0[MAX_UNITS]; /* bands: first output row, first input row */
    size_t wei_off[MAX_UNITS]; /* bytes into wei of each unit's packed weights */
    dnnl_primitive_t to_src; /* NCHW image -> src_md; NULL when src_md is NCHW */
    dnnl_memory_desc_t plain_src_md, src_md;
    size_t src_bytes;
    float *wei;            /* packed weights of every block, one after another (bands
                              whose layouts agree share one copy: same_weights) */
    size_t wei_bytes;
    float *bias;           /* (M) or NULL */
    float *scale, *shift;  /* (M) or NULL: the epilogue's */
    conv_epilogue ep;
    size_t scratch;        /* bytes of per-thread scratch: dst buffer + scratchpad */
    conv_dnnl_bindings bind; /* per participant of dnnl_conv_run */
    atomic_bool binding;   /* true while a run uses bind: concurrent runs (the block
                              runtime's, lego_runtime_run from several threads) take
                              fresh objects instead */
};

static const kind *block_kind(const dnnl_conv *k, int64_t b)
{
    if (k->bands)
        return &k->k[b];
    return b == k->blocks - 1 && k->k[1].conv ? &k->k[1] : &k->k[0];
}

/* Runs prim with its arguments (args[i] = {arg, md, data}) on a fresh
 * stream of this thread. */
typedef conv_dnnl_arg arg;

static bool execute(dnnl_primitive_t prim, const arg *args, int nargs)
{
    dnnl_memory_t mem[8];
    dnnl_exec_arg_t ea[8];
    int made = 0;
    bool ok = true;
    for (int i = 0; i < nargs && ok; i++) {
        ok = dnnl_memory_create(&mem[i], args[i].md, engine, args[i].data) == dnnl_success;
        if (ok) {
            made++;
            ea[i] = (dnnl_exec_arg_t){args[i].arg, mem[i]};
        }
    }
    dnnl_stream_t st = NULL;
    ok = ok && dnnl_stream_create(&st, engine, dnnl_stream_default_flags) == dnnl_success;
    ok = ok && dnnl_primitive_execute(prim, st, nargs, ea) == dnnl_success;
    ok = ok && dnnl_stream_wait(st) == dnnl_success;
    if (st)
        dnnl_stream_destroy(st);
    for (int i = 0; i < made; i++)
        dnnl_memory_destroy(mem[i]);
    return ok;
}

static bool make_primitive(dnnl_primitive_t *prim, const_dnnl_primitive_desc_t pd)
{
    return dnnl_primitive_create(prim, pd) == dnnl_success;
}

static bool reorder_attr(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, bool sum,
                         dnnl_primitive_t *prim)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    bool ok = true;
    if (sum) {
        ok = dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_post_ops_create(&po) == dnnl_success &&
             dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    }
    dnnl_primitive_desc_t pd = NULL;
    ok = ok && dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, attr) == dnnl_success;
    ok = ok && make_primitive(prim, pd);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return ok;
}

static bool reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                    dnnl_primitive_t *prim)
{
    return reorder_attr(from, to, false, prim);
}

static void set_md(dnnl_memory_desc_t *md, int nd, const int64_t *dims, dnnl_format_tag_t tag)
{
    dnnl_dims_t d;
    for (int i = 0; i < nd; i++)
        d[i] = dims[i];
    dnnl_memory_desc_init_by_tag(md, nd, d, dnnl_f32, tag);
}

/* Channels per block of a blocked OP_LAYOUT_*; 1 for the others. */
static int64_t layout_block(int lay)
{
    return lay == OP_LAYOUT_NCHW16C ? 16 : lay == OP_LAYOUT_NCHW8C ? 8 : 1;
}

/* Which OP_LAYOUT_* md is, for one image of c channels, -1 if none. */
static int layout_of(const dnnl_memory_desc_t *md, int64_t mb, int64_t c, int64_t h, int64_t w)
{
    int64_t d[4] = {mb, c, h, w};
    static const dnnl_format_tag_t tags[4] = {dnnl_nchw, dnnl_nhwc, dnnl_nChw16c, dnnl_nChw8c};
    for (int i = 0; i < 4; i++) {
        if (c % layout_block(i) != 0)
            continue; /* padded to whole blocks: not one element per value */
        dnnl_memory_desc_t t;
        set_md(&t, 4, d, tags[i]);
        if (dnnl_memory_desc_equal(md, &t))
            return i;
    }
    return -1;
}

/* The convolution of shape s (one image) for `oc` output channels (a
 * group's worth when grouped) from src to dst (NULL: oneDNN picks), with
 * the bias and the epilogue as post-ops, and the reorder from its dst to
 * plain (NULL: dense NCHW). */
static bool make_kind(dnnl_conv *k, const conv_shape *s, int64_t oc,
                      const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                      const dnnl_memory_desc_t *plain, kind *out)
{
    out->oc = oc;
    int64_t sd[4] = {k->ipu, s->c, s->h, s->w}, dd[4] = {k->ipu, oc, s->ho, s->wo}, bd[1] = {oc};
    dnnl_memory_desc_t src_any, wei_any, dst_any, bias;
    set_md(&src_any, 4, sd, dnnl_format_tag_any);
    set_md(&dst_any, 4, dd, dnnl_format_tag_any);
    if (plain)
        out->plain_md = *plain;
    else
        set_md(&out->plain_md, 4, dd, dnnl_nchw);
    set_md(&bias, 1, bd, dnnl_x);
    if (s->group > 1) {
        int64_t wd[5] = {s->group, oc / s->group, s->c / s->group, s->kh, s->kw};
        set_md(&wei_any, 5, wd, dnnl_format_tag_any);
    } else {
        int64_t wd[4] = {oc, s->c, s->kh, s->kw};
        set_md(&wei_any, 4, wd, dnnl_format_tag_any);
    }
    dnnl_dims_t strides, dil, pl, pr;
    if (!conv_dnnl_geometry(s, strides, dil, pl, pr))
        return false;
    dnnl_convolution_desc_t cd[2];
    dnnl_alg_kind_t algs[2] = {conv_dnnl_algorithm(s), dnnl_convolution_direct};
    int n_algs = algs[0] == algs[1] ? 1 : 2;
    for (int i = 0; i < n_algs; i++)
        if (dnnl_dilated_convolution_forward_desc_init(&cd[i], dnnl_forward_inference, algs[i],
                                                       src ? src : &src_any, &wei_any,
                                                       k->bias ? &bias : NULL, dst ? dst : &dst_any,
                                                       strides, dil, pl, pr) != dnnl_success)
            return false;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success)
        return false;
    bool ok = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) ==
              dnnl_success;
    dnnl_post_ops_t po = NULL;
    int64_t cd4[4] = {1, oc, 1, 1};
    set_md(&out->chan_md, 4, cd4, dnnl_nchw);
    if (ok && !k->own_ep && (k->scale || k->ep.clamp)) {
        ok = dnnl_post_ops_create(&po) == dnnl_success;
        if (ok && k->scale) /* two binary steps round as batchnorm.c's x*a + b does */
            ok = dnnl_post_ops_append_binary(po, dnnl_binary_mul, &out->chan_md) == dnnl_success &&
                 dnnl_post_ops_append_binary(po, dnnl_binary_add, &out->chan_md) == dnnl_success;
        if (ok && k->ep.clamp) {
            /* Relu as relu: oneDNN's clip has no infinite bound of its own */
            bool relu = k->ep.lo == 0.0f && isinf(k->ep.hi) && k->ep.hi > 0;
            ok = dnnl_post_ops_append_eltwise(po, 1.0f, relu ? dnnl_eltwise_relu : dnnl_eltwise_clip,
                                              relu ? 0.0f : k->ep.lo,
                                              relu ? 0.0f : k->ep.hi) == dnnl_success;
        }
        ok = ok && dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    }
    if (po)
        dnnl_post_ops_destroy(po);
    dnnl_primitive_desc_t pd = NULL;
    for (int i = 0; ok && !pd && i < n_algs; i++) { /* Winograd first where it applies */
        if (dnnl_primitive_desc_create(&pd, &cd[i], attr, engine, NULL) != dnnl_success)
            pd = NULL;
        out->alg = algs[i];
    }
    dnnl_primitive_attr_destroy(attr);
    if (!ok || !pd)
        return false;
    out->wei_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    out->bias_md = bias;
    out->dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    out->pad_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    out->dst_bytes = dnnl_memory_desc_get_size(&out->dst_md);
    out->pad_bytes = dnnl_memory_desc_get_size(&out->pad_md);
    out->wei_bytes = dnnl_memory_desc_get_size(&out->wei_md);
    out->src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    out->pix = s->ho * s->wo;
    out->lay = layout_of(&out->dst_md, k->ipu, oc, s->ho, s->wo);
    int64_t d[4] = {k->ipu, oc, s->ho, s->wo};
    for (int blk = 16; out->lay < 0 && !out->padded && blk >= 8; blk /= 2) {
        dnnl_memory_desc_t t;
        set_md(&t, 4, d, blk == 16 ? dnnl_nChw16c : dnnl_nChw8c);
        out->padded = dnnl_memory_desc_equal(&out->dst_md, &t) ? blk : 0;
    }
    ok = make_primitive(&out->conv, pd);
    dnnl_primitive_desc_destroy(pd);
    if (ok && !dnnl_memory_desc_equal(&out->dst_md, &out->plain_md))
        ok = reorder(&out->dst_md, &out->plain_md, &out->to_plain);
    return ok;
}

static void kind_free(kind *kd)
{
    if (kd->conv)
        dnnl_primitive_destroy(kd->conv);
    if (kd->to_plain)
        dnnl_primitive_destroy(kd->to_plain);
    memset(kd, 0, sizeof *kd);
}

/* The output-channel blocks of a batch of n: the whole map per image unless
 * a small batch leaves threads idle, then blocks of at least MIN_BLOCK
 * channels, a multiple of 16 (oneDNN's channel block). A function of the
 * shapes alone, never of the thread count. */
/* Images per call: one, except for small maps at large batches, where one
 * image gives oneDNN too little to block over (a 4x4 map of layer 4 ran at
 * 70-90 GFLOP/s alone); then up to MAX_IPU images, as long as the batch
 * still makes SPLIT_PIECES units. A divisor of the batch, so that every
 * call sees the same number of images. */
#define SMALL_MAP 64
#define MAX_IPU 8

static void pick_ipu(dnnl_conv *k)
{
    k->ipu = 1;
    /* Winograd on one 32x32 image took oneDNN's F(2x2,3x3) kernel at 160
     * GFLOP/s; two images took F(4x4,3x3) at 250 */
    int64_t most = k->s.ho * k->s.wo <= SMALL_MAP                       ? MAX_IPU
                   : conv_dnnl_algorithm(&k->s) == dnnl_convolution_winograd ? 2
                                                                         : 1;
    for (int64_t d = most; d > 1; d--)
        if (k->n % d == 0 && k->n / d >= SPLIT_PIECES) {
            k->ipu = d;
            return;
        }
}

static void split_blocks(dnnl_conv *k)
{
    const conv_shape *s = &k->s;
    int64_t min_block = s->kh * s->kw == 1 ? MIN_BLOCK_1X1 : MIN_BLOCK;
    int64_t m = s->m, want = (SPLIT_PIECES + k->n - 1) / k->n, most = m / min_block;
    /* no block under the work that repays a thread (PAR_MIN_WORK, counted as
     * dnnl_conv_run does): a smaller one could only run beside the others on
     * one thread, where cutting costs a call, a re-read of the input and a
     * reorder per block */
    double flops = 2.0 * (double)(s->ho * s->wo) * (double)(m * s->c / s->group * s->kh * s->kw);
    double fit = flops / 16.0 / par_min_work();
    most = fit < (double)most ? (int64_t)fit : most;
    int64_t blocks = s->group > 1 ? 1 : want < most ? want : most;
    blocks = blocks > 1 ? blocks : 1;
    /* whole blocks of the layout the kernels write: 16 channels with
     * AVX-512 (nChw16c, and brgconv's NHWC blocks), 8 on AVX2 (nChw8c),
     * where 96 channels cut in 16s went 32 + 32 + 32 to two threads */
    int64_t unit = dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx512_core ? 16 : 8;
    int64_t oc = (m + blocks - 1) / blocks;
    oc = blocks > 1 ? (oc + unit - 1) / unit * unit : m;
    k->oc = oc;
    k->blocks = (m + oc - 1) / oc;
}

/* Bands of output rows, for a small batch on an NHWC kernel: rows are
 * contiguous in NHWC, so each band reads a slice of the image and writes
 * its rows of the output in place, and the output keeps the layout. A
 * band holds at least BAND_PIXELS outputs. false (and nothing made) when
 * the shape does not fit. */
#define BAND_PIXELS 128

static bool try_bands(dnnl_conv *k)
{
    const conv_shape *s = &k->s;
    int64_t want = (SPLIT_PIECES + k->n - 1) / k->n, most = s->ho * s->wo / BAND_PIXELS;
    int64_t bands = want < most ? want : most;
    bands = bands < s->ho ? bands : s->ho;
    if (bands < 2)
        return false;
    kind probe = {0};
    bool nhwc = make_kind(k, s, s->m, NULL, NULL, NULL, &probe) &&
                layout_of(&probe.src_md, 1, s->c, s->h, s->w) == OP_LAYOUT_NHWC &&
                layout_of(&probe.dst_md, 1, s->m, s->ho, s->wo) == OP_LAYOUT_NHWC;
    kind_free(&probe);
    if (!nhwc)
        return false;
    int64_t rows = (s->ho + bands - 1) / bands;
    k->bands = true;
    k->blocks = (s->ho + rows - 1) / rows;
    k->oc = s->m;
    for (int64_t b = 0; b < k->blocks; b++) {
        conv_shape t = *s;
        int64_t r0 = b * rows, last = r0 + rows < s->ho ? r0 + rows : s->ho;
        int64_t ih0 = r0 * s->sh - s->pad_t, ih1 = (last - 1) * s->sh - s->pad_t + (s->kh - 1) * s->dh + 1;
        int64_t lo = ih0 > 0 ? ih0 : 0, hi = ih1 < s->h ? ih1 : s->h;
        if (hi <= lo)
            return false; /* a band of padding only */
        t.ho = last - r0;
        t.h = hi - lo;
        t.pad_t = lo - ih0;
        k->r0[b] = r0;
        k->ih0[b] = lo;
        int64_t sd[4] = {1, s->c, t.h, s->w}, dd[4] = {1, s->m, t.ho, s->wo};
        dnnl_memory_desc_t src, dst, plain;
        set_md(&src, 4, sd, dnnl_nhwc);
        set_md(&dst, 4, dd, dnnl_nhwc);
        /* the band's rows of the image's NCHW, for outputs that leave the layout */
        dnnl_dims_t st = {s->m * s->ho * s->wo, s->ho * s->wo, s->wo, 1};
        dnnl_dims_t pd = {1, s->m, t.ho, s->wo};
        if (dnnl_memory_desc_init_by_strides(&plain, 4, pd, dnnl_f32, st) != dnnl_success ||
            !make_kind(k, &t, s->m, &src, &dst, &plain, &k->k[b]))
            return false;
    }
    int64_t sd[4] = {1, s->c, s->h, s->w};
    set_md(&k->src_md, 4, sd, dnnl_nhwc);
    return true;
}

/* Depthwise channel blocks, for one image a call on a blocked layout:
 * channels [c0, c0 + oc) of an nChw8c or nChw16c image are one contiguous
 * run of its input and of its output when oc is whole blocks, so each
 * block is a depthwise convolution of its own (oc groups of one channel)
 * on a part of the image. Without them a depthwise layer at batch 1 ran
 * on one thread while the other waited (CIFAR MobileNetV2 on two threads:
 * 17 layers, some 13% of the pass). false (and nothing made) when the
 * shape does not fit. */
static bool try_slices(dnnl_conv *k)
{
    const conv_shape *s = &k->s;
    if (s->group != s->c || s->m != s->c || k->ipu != 1)
        return false;
    kind probe = {0};
    if (!make_kind(k, s, s->m, NULL, NULL, NULL, &probe)) {
        kind_free(&probe);
        return false;
    }
    int64_t blk = layout_block(probe.lay);
    bool blocked = blk > 1 && s->c % blk == 0 &&
                   layout_of(&probe.src_md, 1, s->c, s->h, s->w) == probe.lay;
    dnnl_memory_desc_t src_md = probe.src_md;
    kind_free(&probe);
    if (!blocked)
        return false;
    /* as split_blocks: no slice under the work that repays a thread, the
     * values read and written counted as dnnl_conv_run counts them */
    double work = 2.0 * (double)(s->c * s->ho * s->wo * s->kh * s->kw) / 16.0 +
                  (double)(s->c * s->h * s->w + s->m * s->ho * s->wo);
    double fit = work / par_min_work();
    int64_t want = (SPLIT_PIECES + k->n - 1) / k->n, most = s->c / blk;
    most = fit < (double)most ? (int64_t)fit : most;
    int64_t slices = want < most ? want : most;
    if (slices < 2)
        return false;
    int64_t oc = (s->c / blk + slices - 1) / slices * blk;
    k->slices = true;
    k->oc = oc;
    k->blocks = (s->c + oc - 1) / oc;
    int64_t sizes[2] = {oc, s->c - (k->blocks - 1) * oc};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && sizes[1] == oc)
            break;
        conv_shape t = *s;
        t.c = t.m = t.group = sizes[i];
        if (!make_kind(k, &t, sizes[i], NULL, NULL, NULL, &k->k[i]) || k->k[i].lay != k->k[0].lay ||
            layout_of(&k->k[i].src_md, 1, t.c, s->h, s->w) != k->k[0].lay)
            return false;
    }
    k->src_md = src_md;
    return true;
}

/* The earlier unit whose packed weights unit b can read: bands hold every
 * weight each, and usually in one layout (b itself when none). */
static int64_t same_weights(const dnnl_conv *k, int64_t b)
{
    for (int64_t a = 0; k->bands && a < b; a++)
        if (dnnl_memory_desc_equal(&block_kind(k, a)->wei_md, &block_kind(k, b)->wei_md))
            return a;
    return b;
}

static bool pack_weights(dnnl_conv *k, const float *w)
{
    const conv_shape *s = &k->s;
    int64_t per_oc = s->c / s->group * s->kh * s->kw;
    size_t total = 0;
    for (int64_t b = 0; b < k->blocks; b++)
        total += same_weights(k, b) == b ? block_kind(k, b)->wei_bytes : 0;
    k->wei_bytes = total;
    k->wei = lego_aligned_alloc(total ? total : 64);
    if (!k->wei)
        return false;
    unsigned char *at = (unsigned char *)k->wei;
    for (int64_t b = 0; b < k->blocks; b++) {
        const kind *kd = block_kind(k, b);
        int64_t same = same_weights(k, b);
        if (same != b) {
            k->wei_off[b] = k->wei_off[same];
            continue;
        }
        k->wei_off[b] = (size_t)(at - (unsigned char *)k->wei);
        dnnl_memory_desc_t plain;
        if (s->group > 1) {
            int64_t g = k->slices ? kd->oc : s->group; /* a slice: one group per channel */
            int64_t wd[5] = {g, kd->oc / g, s->c / s->group, s->kh, s->kw};
            set_md(&plain, 5, wd, dnnl_goihw);
        } else {
            int64_t wd[4] = {kd->oc, s->c, s->kh, s->kw};
            set_md(&plain, 4, wd, dnnl_oihw);
        }
        const float *from = k->bands ? w : w + b * k->oc * per_oc;
        if (s->group == 1 && s->kh == 3 && s->kw == 3 && dnnl_wino_packs(&kd->wei_md)) {
            dnnl_wino_pack(&kd->wei_md, from, kd->oc, s->c, at);
            at += kd->wei_bytes;
            continue;
        }
        dnnl_primitive_t r;
        if (!reorder(&plain, &kd->wei_md, &r))
            return false;
        arg a[2] = {{DNNL_ARG_FROM, &plain, (void *)from},
                    {DNNL_ARG_TO, &kd->wei_md, at}};
        bool ok = execute(r, a, 2);
        dnnl_primitive_destroy(r);
        if (!ok)
            return false;
        at += kd->wei_bytes;
    }
    return true;
}

/* A copy of v's n floats, followed by zeros up to a whole block of 16 (the
 * epilogue of a padded output reads whole blocks, of 16 or 8). */
static float *copy_of(const float *v, int64_t n)
{
    float *c = calloc((size_t)(n + 15) / 16 * 16, sizeof(float));
    if (c)
        memcpy(c, v, sizeof(float) * (size_t)n);
    return c;
}

/* The primitives: bands of rows, else blocks of output channels. */
static bool make_kinds(dnnl_conv *k)
{
    const conv_shape *s = &k->s;
    for (int i = 0; i < MAX_UNITS; i++)
        kind_free(&k->k[i]);
    k->bands = k->slices = false;
    k->ipu = 1;
    if (!try_bands(k)) {
        pick_ipu(k);
        for (int i = 0; i < MAX_UNITS; i++)
            kind_free(&k->k[i]);
        k->bands = false;
        if (try_slices(k))
            return true;
        for (int i = 0; i < MAX_UNITS; i++)
            kind_free(&k->k[i]);
        k->slices = false;
        split_blocks(k);
        if (!make_kind(k, s, k->oc, NULL, NULL, NULL, &k->k[0]))
            return false;
        k->src_md = k->k[0].src_md;
        int64_t last = s->m - (k->blocks - 1) * k->oc;
        if (last != k->oc && !make_kind(k, s, last, &k->src_md, NULL, NULL, &k->k[1]))
            return false;
    }
    return true;
}

/* Whether every primitive writes a layout the epilogue can run on after it
 * (epilogue_nhwc, _blocked, conv_epilogue_rows). A blocked output whose channels do not
 * fill their last block (padded) qualifies when the epilogue keeps its
 * zero padding zero: the scale and shift are zero there (create_in), and a
 * clamp must hold 0. Otherwise post-ops handle it; but oneDNN's Winograd
 * takes no per-channel post-ops on such channel counts (45, 90 and 180 of a
 * pruned ResNet18 then ran direct, 1.5-3x slower). */
static bool dense_dsts(const dnnl_conv *k)
{
    bool keeps_zero = !k->ep.clamp || (k->ep.lo <= 0.0f && k->ep.hi >= 0.0f);
    for (int64_t b = 0; b < k->blocks; b++) {
        const kind *kd = block_kind(k, b);
        if (kd->lay < 0 && !(kd->padded && keeps_zero))
            return false;
    }
    return true;
}

static bool create_in(dnnl_conv *k, const float *w, const float *b)
{
    const conv_shape *s = &k->s;
    if ((b && !(k->bias = copy_of(b, s->m))) ||
        (k->ep.scale && (!(k->scale = copy_of(k->ep.scale, s->m)) ||
                         !(k->shift = copy_of(k->ep.shift, s->m)))))
        return false;
    k->own_ep = k->scale || k->ep.clamp || k->add;
    bool ok = make_kinds(k);
    if (k->own_ep && (!ok || !dense_dsts(k))) { /* a blocked dst: oneDNN's post-ops */
        if (k->add)
            return false; /* none adds a residual before the clamp */
        k->own_ep = false;
        ok = make_kinds(k);
    }
    if (!ok)
        return false;
    int64_t sd[4] = {k->ipu, s->c, s->h, s->w};
    set_md(&k->plain_src_md, 4, sd, dnnl_nchw);
    k->src_bytes = dnnl_memory_desc_get_size(&k->src_md);
    if (!dnnl_memory_desc_equal(&k->src_md, &k->plain_src_md) &&
        !reorder(&k->plain_src_md, &k->src_md, &k->to_src))
        return false;
    for (int i = 0; i < MAX_UNITS; i++) {
        const kind *kd = &k->k[i];
        size_t need = (kd->to_plain ? align64(kd->dst_bytes) : 0) + kd->pad_bytes;
        k->scratch = need > k->scratch ? need : k->scratch;
    }
    return pack_weights(k, w);
}

lego_status dnnl_conv_create(const conv_shape *s, int64_t n, const float *w, const float *b,
                             const conv_epilogue *ep, bool add, dnnl_conv **out)
{
    *out = NULL;
    if (!dnnl_conv_enabled())
        return lego_ok();
    pthread_once(&engine_once, engine_init);
    if (!engine_ok)
        return lego_ok();
    one_thread(); /* primitives are made for the one thread that runs them */
    dnnl_conv *k = calloc(1, sizeof *k);
    if (!k)
        return lego_error(LEGO_ERR_NOMEM, "out of memory preparing a convolution");
    k->s = *s;
    k->n = n;
    k->ep = *ep;
    k->add = add;
    atomic_init(&k->binding, false);
    if (!create_in(k, w, b)) {
        dnnl_conv_free(k); /* no kernel for this shape: conv.c's path runs it */
        return lego_ok();
    }
    *out = k;
    return lego_ok();
}

size_t dnnl_conv_packed_bytes(const dnnl_conv *k)
{
    size_t chans = sizeof(float) * (size_t)((k->s.m + 15) / 16 * 16); /* copy_of's floats */
    return k->wei_bytes + (k->bias ? chans : 0) + (k->scale ? 2 * chans : 0);
}

bool dnnl_conv_winograd(const dnnl_conv *k)
{
    return k->k[0].alg == dnnl_convolution_winograd;
}

int dnnl_conv_units(const dnnl_conv *k) { return (int)k->blocks; }

void dnnl_conv_free(dnnl_conv *k)
{
    if (!k)
        return;
    for (int i = 0; i < MAX_UNITS; i++)
        kind_free(&k->k[i]);
    if (k->to_src)
        dnnl_primitive_destroy(k->to_src);
    lego_aligned_free(k->wei);
    free(k->bias), free(k->scale), free(k->shift);
    conv_dnnl_unbind(&k->bind);
    free(k);
}

/* ---- running ------------------------------------------------------------ */

int dnnl_conv_layout(const dnnl_conv *k, bool dst)
{
    const conv_shape *s = &k->s;
    if (!dst)
        return layout_of(&k->src_md, k->ipu, s->c, s->h, s->w);
    if (k->bands)
        return OP_LAYOUT_NHWC;
    if (k->blocks == 1)
        return layout_of(&k->k[0].dst_md, k->ipu, s->m, s->ho, s->wo);
    /* blocks of NHWC are copied into the image's NHWC (conv_units); blocks
     * of whole channel blocks (oc0 a multiple of 16) are a contiguous part
     * of the image's nChw16c or nChw8c, written in place as NCHW's are */
    int lay = k->k[0].lay;
    for (int64_t b = 0; b < k->blocks; b++)
        if (block_kind(k, b)->lay != lay)
            return -1;
    return lay == OP_LAYOUT_NHWC || layout_block(lay) > 1 ? lay : -1;
}

/* The epilogue on a primitive's dense output: y*a + b per channel, then a
 * fused Add's residual q (laid out as y; NULL: none), then the clamp,
 * computed as batchnorm.c, elementwise.c and activation.c compute them (and
 * as conv.c's conv_epilogue_rows does), so that fusing changes no bits. It
 * runs here rather than as oneDNN's post-ops: two per-channel binary
 * post-ops made brgconv's 1x1 kernels up to twice as slow on MobileNetV2's
 * layers, while this pass reads the output while it is still in cache.
 * With a residual, lo and hi are the clamp's or infinite (a clamp to
 * [-inf, inf] passes every value as it is). NHWC: pix rows of oc channels
 * per image (an NCHW output takes conv_epilogue_rows). */
static SIMD_CLONES void epilogue_nhwc(float *y, const float *q, int64_t pix, int64_t oc, const float *a,
                                      const float *b, bool clamp, float lo, float hi)
{
    for (int64_t p = 0; p < pix; p++) { /* one pass: the output is read once */
        float *r = y + p * oc;
        const float *rq = q ? q + p * oc : NULL;
        if (rq && a) {
            for (int64_t c = 0; c < oc; c++) {
                float v = r[c] * a[c] + b[c];
                r[c] = clamp_f32(v + rq[c], lo, hi);
            }
        } else if (rq) {
            for (int64_t c = 0; c < oc; c++)
                r[c] = clamp_f32(r[c] + rq[c], lo, hi);
        } else if (a && clamp)
            for (int64_t c = 0; c < oc; c++)
                r[c] = clamp_f32(r[c] * a[c] + b[c], lo, hi);
        else if (a)
            for (int64_t c = 0; c < oc; c++)
                r[c] = r[c] * a[c] + b[c];
        else
            for (int64_t c = 0; c < oc; c++)
                r[c] = clamp_f32(r[c], lo, hi);
    }
}

/* One block of B channels over pix pixels, B a constant so that each
 * pixel's B values are one or two vectors with no loop around them (row by
 * row through epilogue_nhwc, the loop's setup per pixel took 12% of
 * MobileNetV2's batch-1 time on two threads). */
#define EPILOGUE_BLOCK(B)                                                              \
    do {                                                                               \
        if (q && a) {                                                                  \
            for (int64_t p = 0; p < pix; p++)                                          \
                for (int c = 0; c < (B); c++) {                                        \
                    float v = y[p * (B) + c] * a[c] + b[c];                            \
                    y[p * (B) + c] = clamp_f32(v + q[p * (B) + c], lo, hi);            \
                }                                                                      \
        } else if (q) {                                                                \
            for (int64_t p = 0; p < pix; p++)                                          \
                for (int c = 0; c < (B); c++)                                          \
                    y[p * (B) + c] = clamp_f32(y[p * (B) + c] + q[p * (B) + c], lo, hi); \
        } else if (a && clamp) {                                                       \
            for (int64_t p = 0; p < pix; p++)                                          \
                for (int c = 0; c < (B); c++)                                          \
                    y[p * (B) + c] = clamp_f32(y[p * (B) + c] * a[c] + b[c], lo, hi);  \
        } else if (a) {                                                                \
            for (int64_t p = 0; p < pix; p++)                                          \
                for (int c = 0; c < (B); c++)                                          \
                    y[p * (B) + c] = y[p * (B) + c] * a[c] + b[c];                     \
        } else {                                                                       \
            for (int64_t p = 0; p < pix; p++)                                          \
                for (int c = 0; c < (B); c++)                                          \
                    y[p * (B) + c] = clamp_f32(y[p * (B) + c], lo, hi);                \
        }                                                                              \
    } while (0)

static SIMD_CLONES void epilogue_block8(float *restrict y, const float *restrict q, int64_t pix,
                                        const float *restrict a, const float *restrict b, bool clamp,
                                        float lo, float hi)
{
    EPILOGUE_BLOCK(8);
}

static SIMD_CLONES void epilogue_block16(float *restrict y, const float *restrict q, int64_t pix,
                                         const float *restrict a, const float *restrict b, bool clamp,
                                         float lo, float hi)
{
    EPILOGUE_BLOCK(16);
}
#undef EPILOGUE_BLOCK

/* nChw16c (Winograd's output) and nChw8c (AVX2's direct kernels): per
 * block of blk channels, pix rows of blk */
static void epilogue_blocked(float *y, const float *q, int64_t oc, int64_t pix, int64_t blk,
                             const float *a, const float *b, bool clamp, float lo, float hi)
{
    for (int64_t c0 = 0; c0 < oc; c0 += blk) {
        float *yb = y + c0 * pix;
        const float *qb = q ? q + c0 * pix : NULL;
        const float *ab = a ? a + c0 : NULL, *bb = b ? b + c0 : NULL;
        if (blk == 8)
            epilogue_block8(yb, qb, pix, ab, bb, clamp, lo, hi);
        else if (blk == 16)
            epilogue_block16(yb, qb, pix, ab, bb, clamp, lo, hi);
        else
            epilogue_nhwc(yb, qb, pix, blk, ab, bb, clamp, lo, hi);
    }
}

/* The epilogue on unit output y (channels from oc0, in kd's layout): with
 * residual q laid out as y, everything; without one, the clamp only when
 * `clamp` (a residual still to come is added before it: finish_residual). */
static void own_epilogue(const dnnl_conv *k, const kind *kd, float *y, const float *q, int64_t oc0,
                         bool clamp)
{
    const float *a = k->scale ? k->scale + oc0 : NULL, *b = k->shift ? k->shift + oc0 : NULL;
    clamp = clamp && k->ep.clamp;
    if (!a && !q && !clamp)
        return;
    float lo = clamp ? k->ep.lo : -INFINITY, hi = clamp ? k->ep.hi : INFINITY;
    /* a padded image is whole blocks, the padding included (dense_dsts) */
    int64_t blk = kd->padded ? kd->padded : layout_block(kd->lay);
    int64_t chans = (kd->oc + blk - 1) / blk * blk;
    conv_epilogue nchw = {.scale = k->scale, .shift = k->shift, .clamp = clamp, .lo = lo, .hi = hi};
    for (int64_t i = 0; i < k->ipu; i++) {
        float *yi = y + i * chans * kd->pix;
        const float *qi = q ? q + i * chans * kd->pix : NULL;
        if (kd->lay == OP_LAYOUT_NHWC)
            epilogue_nhwc(yi, qi, kd->pix, kd->oc, a, b, clamp, lo, hi);
        else if (blk > 1)
            epilogue_blocked(yi, qi, kd->oc, kd->pix, blk, a, b, clamp, lo, hi);
        else /* NCHW: oc planes of pix, as conv.c's epilogue on its own outputs */
            conv_epilogue_rows(yi, qi, kd->pix, kd->oc, kd->pix, &nchw, oc0);
    }
}

/* The residual and the clamp of a unit whose output went through our
 * scratch (own_epilogue ran without them) and now lies in y's NCHW: the
 * call's images, channels from oc0, rows from r0 (bands). */
static void finish_residual(const dnnl_conv *k, const kind *kd, float *y, const float *q,
                            int64_t oc0, int64_t r0)
{
    const conv_shape *s = &k->s;
    int64_t plane = s->ho * s->wo;
    conv_epilogue e = {.clamp = true, .lo = k->ep.clamp ? k->ep.lo : -INFINITY,
                       .hi = k->ep.clamp ? k->ep.hi : INFINITY};
    for (int64_t i = 0; i < k->ipu; i++) {
        size_t at = (size_t)((i * s->m + oc0) * plane + r0 * s->wo);
        conv_epilogue_rows(y + at, q + at, plane, kd->oc, kd->pix, &e, 0);
    }
}

typedef struct run {
    const dnnl_conv *k;
    dnnl_conv *bound;   /* k, whose bindings the participants run on; NULL: fresh objects per call */
    const float *x;
    const float *res;   /* a fused Add's residual, laid out as y, or NULL */
    float *y;
    bool y_native;
    unsigned char *src; /* the batch in src_md's layout, or NULL */
    bool src_per_unit;  /* or each unit reorders its own call's input into its scratch */
    size_t per_thread;  /* scratch bytes per participant */
    unsigned char *scratch;
    atomic_bool failed;
} run;

static bool run_prim(const run *r, int thread, dnnl_primitive_t prim, const arg *a, int n)
{
    return r->bound ? conv_dnnl_execute_bound(&r->bound->bind, thread, prim, a, n) : execute(prim, a, n);
}

static void src_images(void *ctx, int64_t begin, int64_t end, int thread)
{
    run *r = ctx;
    const dnnl_conv *k = r->k;
    one_thread();
    int64_t img = k->ipu * k->s.c * k->s.h * k->s.w; /* one call's images */
    for (int64_t i = begin; i < end; i++) {
        arg a[2] = {{DNNL_ARG_FROM, &k->plain_src_md, (void *)(r->x + i * img)},
                    {DNNL_ARG_TO, &k->src_md, r->src + (size_t)i * k->src_bytes}};
        if (!run_prim(r, thread, k->to_src, a, 2))
            atomic_store(&r->failed, true);
    }
}

static void conv_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    run *r = ctx;
    const dnnl_conv *k = r->k;
    const conv_shape *s = &k->s;
    one_thread();
    unsigned char *mine = r->scratch + (size_t)thread * r->per_thread;
    unsigned char *own_src = NULL;
    if (r->src_per_unit) {
        own_src = mine;
        mine += align64(k->src_bytes);
    }
    int64_t img = k->ipu * s->c * s->h * s->w, opix = k->ipu * s->ho * s->wo; /* per call */
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / k->blocks, b = u % k->blocks, oc0 = k->bands ? 0 : b * k->oc;
        const kind *kd = block_kind(k, b);
        size_t wei_off = k->wei_off[b];
        unsigned char *src = r->src ? r->src + (size_t)n * k->src_bytes
                                    : (unsigned char *)(r->x + n * img);
        if (k->slices) /* the slice's channels, whole blocks of them */
            src += (size_t)(oc0 * s->h * s->w) * sizeof(float);
        if (own_src) {
            arg t[2] = {{DNNL_ARG_FROM, &k->plain_src_md, (void *)(r->x + n * img)},
                        {DNNL_ARG_TO, &k->src_md, own_src}};
            if (!run_prim(r, thread, k->to_src, t, 2)) {
                atomic_store(&r->failed, true);
                continue;
            }
            src = own_src;
        }
        float *y = r->y + (n * s->m + oc0) * opix;
        if (k->bands) { /* the band's input rows in NHWC; its output rows in either */
            src += (size_t)(k->ih0[b] * s->w * s->c) * sizeof(float);
            y += r->y_native ? k->r0[b] * s->wo * s->m : k->r0[b] * s->wo;
        }
        /* channel blocks into the image's NHWC: the block's own NHWC, then
         * copied row by row (brgconv refuses a strided view of the image) */
        bool copy_y = r->y_native && !k->bands && k->blocks > 1 && kd->lay == OP_LAYOUT_NHWC;
        if (copy_y)
            y = r->y + n * s->m * opix + oc0;
        bool reorder_y = kd->to_plain && !r->y_native;
        void *dst = reorder_y || copy_y ? (void *)mine : (void *)y;
        unsigned char *pad = mine + (kd->to_plain ? align64(kd->dst_bytes) : 0);
        arg a[7] = {{DNNL_ARG_SRC, &kd->src_md, src},
                    {DNNL_ARG_WEIGHTS, &kd->wei_md, (unsigned char *)k->wei + wei_off},
                    {DNNL_ARG_DST, &kd->dst_md, dst},
                    {DNNL_ARG_SCRATCHPAD, &kd->pad_md, pad}};
        int na = 4;
        if (k->bias)
            a[na++] = (arg){DNNL_ARG_BIAS, &kd->bias_md, k->bias + oc0};
        if (k->scale && !k->own_ep) {
            a[na++] = (arg){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, &kd->chan_md,
                            k->scale + oc0};
            a[na++] = (arg){DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, &kd->chan_md,
                            k->shift + oc0};
        }
        bool ok = run_prim(r, thread, kd->conv, a, na);
        /* the residual where y has it: in place, with the rest of the
         * epilogue; else after the copy or the reorder */
        const float *q = r->res ? r->res + (y - r->y) : NULL;
        bool in_place = dst == (void *)y;
        if (ok && k->own_ep)
            own_epilogue(k, kd, dst, in_place ? q : NULL, oc0, in_place || !q);
        if (ok && copy_y) {
            const float *from = dst;
            for (int64_t p = 0; p < opix; p++) {
                memcpy(y + p * s->m, from + p * kd->oc, sizeof(float) * (size_t)kd->oc);
                if (q)
                    epilogue_nhwc(y + p * s->m, q + p * s->m, 1, kd->oc, NULL, NULL, k->ep.clamp,
                                  k->ep.clamp ? k->ep.lo : -INFINITY, k->ep.clamp ? k->ep.hi : INFINITY);
            }
        }
        if (ok && reorder_y) {
            arg t[2] = {{DNNL_ARG_FROM, &kd->dst_md, dst}, {DNNL_ARG_TO, &kd->plain_md, y}};
            ok = run_prim(r, thread, kd->to_plain, t, 2);
            size_t call = (size_t)(n * s->m * opix); /* the call's first image */
            if (ok && q)
                finish_residual(k, kd, r->y + call, r->res + call, oc0, k->bands ? k->r0[b] : 0);
        }
        if (!ok)
            atomic_store(&r->failed, true);
    }
}

size_t dnnl_conv_image_scratch(const dnnl_conv *k, bool x_native, int64_t *group)
{
    *group = k->ipu;
    if (k->blocks != 1 || (k->to_src && !x_native))
        return 0;
    return k->scratch > 0 ? k->scratch : 64;
}

bool dnnl_conv_run_images(const dnnl_conv *k, const float *x, const float *res, float *y,
                          bool x_native, bool y_native, int64_t i0, int64_t i1, void *scratch)
{
    /* chains call this from every thread at once with no participant
     * index: fresh objects per call */
    run r = {.k = k, .x = x, .res = k->add ? res : NULL, .y = y, .y_native = y_native,
             .per_thread = k->scratch, .scratch = scratch};
    r.src = x_native ? (unsigned char *)x : NULL;
    atomic_init(&r.failed, false);
    conv_units(&r, i0 / k->ipu, i1 / k->ipu, 0); /* units are calls of ipu images here */
    return !atomic_load(&r.failed);
}

bool dnnl_conv_run(dnnl_conv *k, const float *x, const float *res, float *y, bool x_native,
                   bool y_native, workspace *ws)
{
    const conv_shape *s = &k->s;
    double flops = 2.0 * (double)(k->ipu * k->oc * s->ho * s->wo) *
                   (double)(s->c / s->group * s->kh * s->kw) / (k->bands ? (double)k->blocks : 1.0);
    int64_t calls = k->n / k->ipu, units = calls * k->blocks;
    /* a GEMM's flops count 1/16 (as conv.c's gemm_work); a depthwise unit
     * does little arithmetic per value, so the values it reads and writes
     * count too */
    double moved = (double)(k->ipu * (s->c * s->h * s->w + s->m * s->ho * s->wo) / k->blocks);
    par_split sp = par_split_work(units, flops / 16.0 + moved);
    bool reorder_x = k->to_src && !x_native;
    /* A call whose input feeds one unit has that unit reorder it into its
     * own scratch, where the convolution finds it in cache; only calls split
     * into several units share a reordered batch (at batch 128 of a
     * 64-channel 32x32 layer that batch was 34 MB). */
    bool per_unit = reorder_x && k->blocks == 1;
    size_t src_total = reorder_x && !per_unit ? (size_t)calls * k->src_bytes : 0;
    run r = {.k = k, .x = x, .res = k->add ? res : NULL, .y = y, .y_native = y_native,
             .src_per_unit = per_unit,
             .per_thread = k->scratch + (per_unit ? align64(k->src_bytes) : 0)};
    size_t total = align64(src_total) + r.per_thread * (size_t)sp.threads;
    par_split sx = par_split_work(calls, (double)(k->ipu * s->c * s->h * s->w));
    bool claimed = !atomic_exchange(&k->binding, true);
    r.bound = claimed && conv_dnnl_bind(&k->bind, sp.threads > sx.threads ? sp.threads : sx.threads) ? k : NULL;
    atomic_init(&r.failed, false);
    unsigned char *buf = ws ? workspace_get(ws, total ? total : 64) : lego_aligned_alloc(total ? total : 64);
    if (!buf) {
        if (claimed)
            atomic_store(&k->binding, false);
        return false;
    }
    r.src = reorder_x && !per_unit ? buf : x_native ? (unsigned char *)x : NULL;
    r.scratch = buf + align64(src_total);
    if (reorder_x && !per_unit)
        parallel_run(calls, sx, src_images, &r);
    if (!atomic_load(&r.failed))
        parallel_run(units, sp, conv_units, &r);
    if (!ws)
        lego_aligned_free(buf);
    if (claimed)
        atomic_store(&k->binding, false);
    return !atomic_load(&r.failed);
}

/* ---- shared with conv_dnnl_train.c (conv_dnnl_impl.h) ------------------- */

dnnl_engine_t conv_dnnl_engine(void)
{
    if (!dnnl_conv_enabled())
        return NULL;
    pthread_once(&engine_once, engine_init);
    return engine_ok ? engine : NULL;
}

void conv_dnnl_one_thread(void) { one_thread(); }

bool conv_dnnl_execute(dnnl_primitive_t prim, const conv_dnnl_arg *args, int nargs)
{
    return execute(prim, args, nargs);
}

/* (argument, layout) pairs a state's calls bind: at most 36 measured in
 * training (CIFAR MobileNetV2) and 26 at inference (CIFAR ResNet18 at batch
 * 1); a state that needs more runs its further calls on fresh objects */
#define MAX_MEMS 64

struct conv_dnnl_binding {
    dnnl_stream_t stream;
    int n;
    int arg[MAX_MEMS];
    const dnnl_memory_desc_t *md[MAX_MEMS];
    dnnl_memory_t mem[MAX_MEMS];
};

bool conv_dnnl_bind(conv_dnnl_bindings *bs, int threads)
{
    if (threads <= bs->n)
        return true;
    conv_dnnl_binding *b = realloc(bs->b, sizeof *b * (size_t)threads);
    if (!b)
        return false;
    memset(b + bs->n, 0, sizeof *b * (size_t)(threads - bs->n));
    bs->b = b;
    bs->n = threads;
    return true;
}

void conv_dnnl_unbind(conv_dnnl_bindings *bs)
{
    for (int t = 0; t < bs->n; t++) {
        conv_dnnl_binding *b = &bs->b[t];
        for (int i = 0; i < b->n; i++)
            dnnl_memory_destroy(b->mem[i]);
        if (b->stream)
            dnnl_stream_destroy(b->stream);
    }
    free(bs->b);
    bs->b = NULL;
    bs->n = 0;
}

bool conv_dnnl_execute_bound(conv_dnnl_bindings *bs, int thread, dnnl_primitive_t prim,
                             const conv_dnnl_arg *args, int nargs)
{
    conv_dnnl_binding *b = &bs->b[thread];
    if (!b->stream && dnnl_stream_create(&b->stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        b->stream = NULL;
        return false;
    }
    dnnl_exec_arg_t ea[8];
    for (int i = 0; i < nargs; i++) {
        dnnl_memory_t m = NULL;
        for (int j = 0; j < b->n && !m; j++)
            if (b->md[j] == args[i].md && b->arg[j] == args[i].arg)
                m = b->mem[j];
        if (m) {
            if (dnnl_memory_set_data_handle(m, args[i].data) != dnnl_success)
                return false;
        } else {
            if (b->n == MAX_MEMS)
                return execute(prim, args, nargs);
            if (dnnl_memory_create(&m, args[i].md, engine, args[i].data) != dnnl_success)
                return false;
            b->arg[b->n] = args[i].arg;
            b->md[b->n] = args[i].md;
            b->mem[b->n++] = m;
        }
        ea[i] = (dnnl_exec_arg_t){args[i].arg, m};
    }
    return dnnl_primitive_execute(prim, b->stream, nargs, ea) == dnnl_success &&
           dnnl_stream_wait(b->stream) == dnnl_success;
}

bool conv_dnnl_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, bool sum,
                       dnnl_primitive_t *prim)
{
    return reorder_attr(from, to, sum, prim);
}

void conv_dnnl_md(dnnl_memory_desc_t *md, int nd, const int64_t *dims, dnnl_format_tag_t tag)
{
    set_md(md, nd, dims, tag);
}

bool conv_dnnl_geometry(const conv_shape *s, dnnl_dims_t strides, dnnl_dims_t dil,
                        dnnl_dims_t pad_l, dnnl_dims_t pad_r)
{
    /* oneDNN counts dilation from 0 and wants both pads; the trailing ones
     * follow from the output size (conv.c checked it). */
    int64_t pad_b = (s->ho - 1) * s->sh + (s->kh - 1) * s->dh + 1 - s->h - s->pad_t;
    int64_t pad_e = (s->wo - 1) * s->sw + (s->kw - 1) * s->dw + 1 - s->w - s->pad_l;
    /* A stride that leaves the last rows unread gives a negative trailing
     * pad; oneDNN rounds the output size down as ONNX does, so 0 will do. */
    pad_b = pad_b < 0 && pad_b > -s->sh ? 0 : pad_b;
    pad_e = pad_e < 0 && pad_e > -s->sw ? 0 : pad_e;
    if (s->pad_t < 0 || s->pad_l < 0 || pad_b < 0 || pad_e < 0)
        return false;
    strides[0] = s->sh, strides[1] = s->sw;
    dil[0] = s->dh - 1, dil[1] = s->dw - 1;
    pad_l[0] = s->pad_t, pad_l[1] = s->pad_l;
    pad_r[0] = pad_b, pad_r[1] = pad_e;
    return true;
}

#else /* no oneDNN: conv.c's own path runs every Conv */

bool dnnl_conv_enabled(void) { return false; }

lego_status dnnl_conv_create(const conv_shape *s, int64_t n, const float *w, const float *b,
                             const conv_epilogue *ep, bool add, dnnl_conv **out)
{
    (void)s, (void)n, (void)w, (void)b, (void)ep, (void)add;
    *out = NULL;
    return lego_ok();
}

bool dnnl_conv_run(dnnl_conv *k, const float *x, const float *res, float *y, bool x_native,
                   bool y_native, workspace *ws)
{
    (void)k, (void)x, (void)res, (void)y, (void)x_native, (void)y_native, (void)ws;
    return false;
}

int dnnl_conv_layout(const dnnl_conv *k, bool dst)
{
    (void)k, (void)dst;
    return -1;
}

size_t dnnl_conv_image_scratch(const dnnl_conv *k, bool x_native, int64_t *group)
{
    (void)k, (void)x_native;
    *group = 1;
    return 0;
}

bool dnnl_conv_run_images(const dnnl_conv *k, const float *x, const float *res, float *y,
                          bool x_native, bool y_native, int64_t i0, int64_t i1, void *scratch)
{
    (void)k, (void)x, (void)res, (void)y, (void)x_native, (void)y_native, (void)i0, (void)i1, (void)scratch;
    return false;
}

void dnnl_conv_free(dnnl_conv *k) { (void)k; }

bool dnnl_conv_winograd_available(void) { return false; }

const char *dnnl_conv_switched_off(void) { return conv_winograd_on() ? "" : "LEGO_WINOGRAD=0"; }

size_t dnnl_conv_packed_bytes(const dnnl_conv *k)
{
    (void)k;
    return 0;
}

bool dnnl_conv_winograd(const dnnl_conv *k)
{
    (void)k;
    return false;
}

int dnnl_conv_units(const dnnl_conv *k)
{
    (void)k;
    return 1;
}

#endif
