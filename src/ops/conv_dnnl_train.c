/* conv_dnnl_train.c - Conv forward and backward through oneDNN for train
 * plans (see conv_dnnl_train.h).
 *
 * Forward: the current weights are reordered once into the forward
 * primitive's layout (kept for backward), then units of `ipu` images each
 * reorder their input from NCHW into the primitive's layout, convolve with
 * the bias, and reorder the output back to NCHW, all in per-thread buffers.
 * Input gradient: the same units run a backward-data primitive on their
 * images' dY and add the result into dX with a summing reorder. Weight and
 * bias gradients: the output channels are cut into `wblocks` blocks (a
 * function of the shape alone), each running a backward-weights primitive
 * over the whole batch for its channels (the input reordered once for all
 * of them, its slice of dY per block) and adding its rows of dW and dB with
 * a summing reorder. Each value of dW thus comes from one primitive call
 * over the whole batch, whatever the threads: no partial sums to combine.
 * (Cutting the batch instead costs a buffer of dW per piece and a
 * reduction; measured on CIFAR ResNet18, the weight gradients' time at one
 * thread rose by a third with four pieces against one.) Only where the
 * batch's copies would be large (WCHUNK_BYTES: 64 channels at 32x32 and
 * batch 128 took 57 MB) does the batch go in chunks of `wn` images, one
 * after another, each chunk's blocks adding into dW in turn: a function of
 * the shape and batch, so still the same bits for any thread count. A layer
 * of one block (32 output channels or fewer, and grouped ones) would leave
 * every thread but one waiting: its chunks go in two halves of the batch
 * instead, each half's adding into its own dW, the second half's added to
 * the first's at the end (`halves`: the shape decides, not the threads).
 *
 * oneDNN's reference kernels are far slower than our own path: a primitive
 * that comes out as one ("ref:" in its name) declines the shape. Memory:
 * the state keeps the primitives, one copy of the weights from a forward
 * to its backward, and per thread of our pool a stream and the memory
 * objects its calls bind to each call's data (made on first use: creating
 * them per call was some 15% of a small network's training time). Every
 * buffer a call needs beyond those comes from the plan's workspace
 * (core/workspace.h), which all its steps share: allocated per call
 * instead, glibc kept them in its heaps anyway (retraining holds many
 * plans at once, and several threads' heaps). */
#include "conv_dnnl_train.h"

#include <stdlib.h>
#include <string.h>

#ifdef LEGO_HAVE_DNNL

#include <math.h>
#include <stdatomic.h>

#include "../core/tensor.h"
#include "../core/threads.h"
#include "conv_dnnl_impl.h"

#define SPLIT_PIECES 4   /* units wanted per call, as conv_dnnl.c */
#define SMALL_MAP 64     /* output maps this small go several images per call */
#define MAX_IPU 8
#define WEIGHT_BLOCKS 4  /* output-channel blocks of the weight gradient, at most */
#define MIN_WBLOCK 32    /* channels per block, at least (oneDNN blocks them by 16) */
#define WCHUNK_BYTES ((size_t)16 << 20) /* the weight gradient's copies of x and dY, at most */
#define ALIGN(b) (((b) + 63) / 64 * 64)

typedef conv_dnnl_arg arg;

/* A primitive with its user-mode scratchpad. */
typedef struct prim {
    dnnl_primitive_t p;
    dnnl_memory_desc_t pad_md;
    size_t pad_bytes;
} prim;

/* The backward-weights primitive for a block of oc output channels over
 * the whole batch. */
typedef struct wblock {
    int64_t oc;
    prim bw;
    dnnl_primitive_t to_ddst, dw_add; /* to_ddst: NULL when the primitive reads NCHW */
    dnnl_primitive_t dw_copy; /* the first chunk's dW written, not added (fresh); NULL when OIHW */
    dnnl_memory_desc_t plain_dst, ddst_md, dwei_md, plain_wei, dbias_md;
    size_t ddst_bytes, dwei_bytes;
} wblock;

struct dnnl_conv_train {
    conv_shape s;
    int64_t n, ipu;
    bool bias;
    dnnl_alg_kind_t alg; /* Winograd or direct (conv_dnnl_algorithm): all three passes */
    /* forward, for ipu images */
    dnnl_primitive_desc_t fwd_pd; /* the backward primitives' hint */
    prim fwd;
    dnnl_primitive_t to_src, to_plain, to_wei; /* to_src, to_plain: NULL when NCHW */
    dnnl_memory_desc_t plain_src, plain_dst, plain_wei, src_md, dst_md, wei_md, bias_md;
    size_t src_bytes, dst_bytes, wei_bytes;
    float *wei;     /* the weights in wei_md, from a training forward until its backward */
    bool wei_valid; /* wei holds the current weights */
    /* backward data, for ipu images (made on first use: 0 not yet, 1 ready, -1 none) */
    int bd_state;
    prim bd;
    dnnl_primitive_t bd_ddst, bd_add, bd_wei; /* bd_ddst: NULL when NCHW; bd_wei: NULL when wei_md */
    dnnl_primitive_t bd_copy; /* dX written, not added (a fresh gradient); NULL when NCHW */
    dnnl_memory_desc_t bd_ddst_md, bd_dsrc_md, bd_wei_md;
    size_t bd_ddst_bytes, bd_dsrc_bytes, bd_wei_bytes;
    /* backward weights (same states) */
    int bw_state;
    int64_t wn;           /* images per call (a divisor of n) */
    bool halves;          /* one block: the chunks in two halves of the batch, one per thread */
    int64_t wblocks, woc; /* blocks of woc output channels; the last may be shorter */
    wblock wb[2];         /* a whole block, and a shorter last one (oc 0: none) */
    dnnl_primitive_t wsrc; /* the batch from NCHW into wsrc_md; NULL when the same */
    dnnl_primitive_t wsrc_half; /* the same for half of its images (NULL: whole only) */
    dnnl_memory_desc_t plain_half, wsrc_half_md;
    size_t plain_half_bytes, wsrc_half_bytes; /* where the second half starts */
    dnnl_memory_desc_t plain_wsrc, wsrc_md;
    size_t wsrc_bytes;
    conv_dnnl_bindings bind; /* per participant of a call (conv_dnnl_impl.h) */
};

static void one_thread(void) { conv_dnnl_one_thread(); }

/* The activations' layout oneDNN may choose: any, except for dense
 * convolutions with fewer than 16 channels on a side, which take NHWC:
 * oneDNN's own choice there, blocks of 16 channels, pads 8 channels to 16
 * and ran their input gradient at half the speed (measured: 8 channels at
 * 32x32, batch 128, 7 ms against 4 in NHWC; 5 in, 8 out, 7 against 4). */
static dnnl_format_tag_t free_tag(const conv_shape *s)
{
    bool narrow = s->group == 1 && (s->c < 16 || s->m < 16);
    return narrow ? dnnl_nhwc : dnnl_format_tag_any;
}

static void act_md(dnnl_memory_desc_t *md, int64_t mb, int64_t c, int64_t h, int64_t w,
                   dnnl_format_tag_t tag)
{
    int64_t d[4] = {mb, c, h, w};
    conv_dnnl_md(md, 4, d, tag);
}

static void wei_md_of(const conv_shape *s, dnnl_memory_desc_t *md, bool plain)
{
    if (s->group > 1) {
        int64_t d[5] = {s->group, s->m / s->group, s->c / s->group, s->kh, s->kw};
        conv_dnnl_md(md, 5, d, plain ? dnnl_goihw : dnnl_format_tag_any);
    } else {
        int64_t d[4] = {s->m, s->c, s->kh, s->kw};
        conv_dnnl_md(md, 4, d, plain ? dnnl_oihw : dnnl_format_tag_any);
    }
}

static const dnnl_memory_desc_t *query(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* A primitive descriptor for cd with a user scratchpad; false when oneDNN
 * has none, or only its reference kernel. */
static bool make_pd(const dnnl_convolution_desc_t *cd, const_dnnl_primitive_desc_t hint,
                    dnnl_primitive_desc_t *pd)
{
    *pd = NULL;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success)
        return false;
    bool ok = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) ==
                  dnnl_success &&
              dnnl_primitive_desc_create(pd, cd, attr, conv_dnnl_engine(), hint) == dnnl_success;
    dnnl_primitive_attr_destroy(attr);
    const char *impl = NULL;
    if (ok && (dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success ||
               !impl || strncmp(impl, "ref", 3) == 0))
        ok = false;
    if (!ok && *pd) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
    }
    return ok;
}

static bool make_prim(const_dnnl_primitive_desc_t pd, prim *out)
{
    out->pad_md = *query(pd, dnnl_query_scratchpad_md);
    out->pad_bytes = dnnl_memory_desc_get_size(&out->pad_md);
    return dnnl_primitive_create(&out->p, pd) == dnnl_success;
}

static void prim_free(prim *p)
{
    if (p->p)
        dnnl_primitive_destroy(p->p);
    p->p = NULL;
}

static void destroy(dnnl_primitive_t *p)
{
    if (*p)
        dnnl_primitive_destroy(*p);
    *p = NULL;
}

/* A reorder from `from` to `to`, or none (*p NULL) when they are the same. */
static bool reorder_unless_same(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                dnnl_primitive_t *p)
{
    *p = NULL;
    return dnnl_memory_desc_equal(from, to) || conv_dnnl_reorder(from, to, false, p);
}

/* The forward descriptor for mb images, every layout oneDNN's choice. */
static bool fwd_desc(const dnnl_conv_train *k, int64_t mb, dnnl_convolution_desc_t *cd)
{
    const conv_shape *s = &k->s;
    dnnl_memory_desc_t src, wei, dst, bias;
    act_md(&src, mb, s->c, s->h, s->w, free_tag(s));
    act_md(&dst, mb, s->m, s->ho, s->wo, free_tag(s));
    wei_md_of(s, &wei, false);
    int64_t bd[1] = {s->m};
    conv_dnnl_md(&bias, 1, bd, dnnl_x);
    dnnl_dims_t st, dil, pl, pr;
    return conv_dnnl_geometry(s, st, dil, pl, pr) &&
           dnnl_dilated_convolution_forward_desc_init(cd, dnnl_forward_training, k->alg, &src,
                                                      &wei, k->bias ? &bias : NULL, &dst, st, dil,
                                                      pl, pr) == dnnl_success;
}

/* Images per forward and backward-data call: one, except for small maps,
 * where one image gives oneDNN too little to block over (conv_dnnl.c's
 * pick_ipu), and for small convolutions, where each call's fixed cost
 * (memory objects, a stream, two reorders: some microseconds) weighs on an
 * image of little work: then the smallest divisor of the batch, up to
 * MAX_IPU, that gives a call MIN_CALL_FLOPS and still leaves SPLIT_PIECES
 * calls (the largest for small maps). */
#define MIN_CALL_FLOPS 8e6

static int64_t pick_ipu(const conv_shape *s, int64_t n, dnnl_alg_kind_t alg)
{
    double per_image = 2.0 * (double)(s->m * s->ho * s->wo) * (double)(s->c / s->group * s->kh * s->kw);
    bool small_map = s->ho * s->wo <= SMALL_MAP;
    /* Winograd takes its faster F(4x4,3x3) kernel from two images of a
     * large map on (conv_dnnl.c's pick_ipu) */
    if (!small_map && alg == dnnl_convolution_winograd && n % 2 == 0 && n / 2 >= SPLIT_PIECES)
        return 2;
    if (!small_map && per_image >= MIN_CALL_FLOPS)
        return 1;
    int64_t best = 1;
    for (int64_t d = 2; d <= MAX_IPU; d++) {
        if (n % d || n / d < SPLIT_PIECES)
            continue;
        best = d;
        if (!small_map && per_image * (double)d >= MIN_CALL_FLOPS)
            break;
    }
    return best;
}

static bool create_fwd(dnnl_conv_train *k)
{
    const conv_shape *s = &k->s;
    dnnl_convolution_desc_t cd;
    if (!fwd_desc(k, k->ipu, &cd) || !make_pd(&cd, NULL, &k->fwd_pd) || !make_prim(k->fwd_pd, &k->fwd))
        return false;
    k->src_md = *query(k->fwd_pd, dnnl_query_src_md);
    k->dst_md = *query(k->fwd_pd, dnnl_query_dst_md);
    k->wei_md = *query(k->fwd_pd, dnnl_query_weights_md);
    int64_t bd[1] = {s->m};
    conv_dnnl_md(&k->bias_md, 1, bd, dnnl_x);
    act_md(&k->plain_src, k->ipu, s->c, s->h, s->w, dnnl_nchw);
    act_md(&k->plain_dst, k->ipu, s->m, s->ho, s->wo, dnnl_nchw);
    wei_md_of(s, &k->plain_wei, true);
    k->src_bytes = dnnl_memory_desc_get_size(&k->src_md);
    k->dst_bytes = dnnl_memory_desc_get_size(&k->dst_md);
    k->wei_bytes = dnnl_memory_desc_get_size(&k->wei_md);
    return reorder_unless_same(&k->plain_src, &k->src_md, &k->to_src) &&
           reorder_unless_same(&k->dst_md, &k->plain_dst, &k->to_plain) &&
           conv_dnnl_reorder(&k->plain_wei, &k->wei_md, false, &k->to_wei);
}

/* Whether oneDNN repays itself on shape s. Measured per shape (thread CPU
 * time of forward + dX + dW at one thread, batches 32 and 128; see
 * docs/PERFORMANCE.md), the portable path was as fast or faster for 1x1
 * convolutions unless large: at stride 1 without pads conv.c runs those as
 * one plain GEMM per image, which oneDNN beat only from 960x320 channels
 * (1.8x; 192x64 was 0.9x, 144x24 0.5x); strided ones need im2col there, and
 * oneDNN won from 16x32 channels. Every 3x3 shape measured was as fast or
 * faster on oneDNN (8 channels at 32x32 in NHWC: 1.1x; 64 at 4x4: 3x), and
 * grouped and depthwise convolutions 2-40x. */
static atomic_bool ungated;

void dnnl_conv_train_gate(bool on) { atomic_store(&ungated, !on); }

static bool worth_it(const conv_shape *s)
{
    if (s->group > 1 || atomic_load(&ungated))
        return true;
    int64_t cm = s->c * s->m;
    if (s->kh == 1 && s->kw == 1) {
        bool gemm = s->sh == 1 && s->sw == 1 && s->pad_t == 0 && s->pad_l == 0;
        return cm >= (gemm ? 65536 : 512);
    }
    return true;
}

/* A state running alg in every pass; *out stays NULL (and the status ok)
 * when oneDNN has no kernel for it. */
static lego_status create_with(const conv_shape *s, int64_t n, bool bias, dnnl_alg_kind_t alg,
                               dnnl_conv_train **out)
{
    dnnl_conv_train *k = calloc(1, sizeof *k);
    if (!k)
        return lego_error(LEGO_ERR_NOMEM, "out of memory preparing a convolution for training");
    k->s = *s;
    k->n = n;
    k->bias = bias;
    k->alg = alg;
    k->ipu = pick_ipu(s, n, alg);
    if (!create_fwd(k)) {
        dnnl_conv_train_free(k);
        return lego_ok();
    }
    *out = k;
    return lego_ok();
}

lego_status dnnl_conv_train_create(const conv_shape *s, int64_t n, bool bias,
                                   dnnl_conv_train **out)
{
    *out = NULL;
    if (!conv_dnnl_engine() || !worth_it(s))
        return lego_ok();
    one_thread(); /* primitives are made for the one thread that runs them */
    dnnl_alg_kind_t alg = conv_dnnl_algorithm(s);
    LEGO_TRY(create_with(s, n, bias, alg, out));
    if (!*out && alg == dnnl_convolution_winograd) /* no Winograd kernel here: direct */
        LEGO_TRY(create_with(s, n, bias, dnnl_convolution_direct, out));
    return lego_ok(); /* *out NULL: conv.c's path runs this shape */
}

bool dnnl_conv_train_matches(const dnnl_conv_train *k, const conv_shape *s, int64_t n)
{
    return k->n == n && memcmp(&k->s, s, sizeof *s) == 0;
}

static bool create_bd(dnnl_conv_train *k)
{
    const conv_shape *s = &k->s;
    dnnl_memory_desc_t dsrc, wei, ddst;
    act_md(&dsrc, k->ipu, s->c, s->h, s->w, free_tag(s));
    act_md(&ddst, k->ipu, s->m, s->ho, s->wo, free_tag(s));
    wei_md_of(s, &wei, false);
    dnnl_dims_t st, dil, pl, pr;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    bool ok = conv_dnnl_geometry(s, st, dil, pl, pr) &&
              dnnl_dilated_convolution_backward_data_desc_init(&cd, k->alg, &dsrc, &wei, &ddst, st,
                                                               dil, pl, pr) == dnnl_success &&
              make_pd(&cd, k->fwd_pd, &pd) && make_prim(pd, &k->bd);
    if (ok) {
        k->bd_ddst_md = *query(pd, dnnl_query_diff_dst_md);
        k->bd_dsrc_md = *query(pd, dnnl_query_diff_src_md);
        k->bd_wei_md = *query(pd, dnnl_query_weights_md);
        k->bd_ddst_bytes = dnnl_memory_desc_get_size(&k->bd_ddst_md);
        k->bd_dsrc_bytes = dnnl_memory_desc_get_size(&k->bd_dsrc_md);
        k->bd_wei_bytes = dnnl_memory_desc_get_size(&k->bd_wei_md);
        /* the forward's weight copy serves when the layouts agree */
        ok = reorder_unless_same(&k->plain_dst, &k->bd_ddst_md, &k->bd_ddst) &&
             conv_dnnl_reorder(&k->bd_dsrc_md, &k->plain_src, true, &k->bd_add) &&
             reorder_unless_same(&k->bd_dsrc_md, &k->plain_src, &k->bd_copy) &&
             (dnnl_memory_desc_equal(&k->bd_wei_md, &k->wei_md) ||
              conv_dnnl_reorder(&k->plain_wei, &k->bd_wei_md, false, &k->bd_wei));
    }
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return ok;
}

/* The backward-weights primitive for a block of wb->oc output channels
 * over the batch; with `src`, it must read the batch in that layout (every
 * block reads the one reordered copy). */
static bool create_wblock(dnnl_conv_train *k, wblock *wb, const dnnl_memory_desc_t *src)
{
    const conv_shape *s = &k->s;
    conv_shape t = *s;
    t.m = wb->oc;
    dnnl_memory_desc_t src_any, wei, ddst, bias;
    /* NHWC on 4x4 maps and smaller: oneDNN's blocked weight gradient ran
     * 512 channels at 4x4, batch 32, in 39 ms against 25 in NHWC (measured
     * twice; 8x8 maps the same either way, 32x32 with stride 2 twice as slow) */
    bool nhwc = s->group == 1 && s->ho * s->wo <= 16 && k->alg != dnnl_convolution_winograd;
    dnnl_format_tag_t wt = nhwc ? dnnl_nhwc : free_tag(s);
    act_md(&src_any, k->wn, s->c, s->h, s->w, wt);
    act_md(&ddst, k->wn, wb->oc, s->ho, s->wo, wt);
    wei_md_of(&t, &wei, false);
    int64_t bd[1] = {wb->oc};
    conv_dnnl_md(&bias, 1, bd, dnnl_x);
    dnnl_dims_t st, dil, pl, pr;
    dnnl_convolution_desc_t fd, cd;
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    /* the hint: a forward of this block, batch and bias */
    dnnl_memory_desc_t fdst;
    act_md(&fdst, k->wn, wb->oc, s->ho, s->wo, wt);
    bool ok = conv_dnnl_geometry(s, st, dil, pl, pr) &&
              dnnl_dilated_convolution_forward_desc_init(
                  &fd, dnnl_forward_training, k->alg, src ? src : &src_any, &wei,
                  k->bias ? &bias : NULL, &fdst, st, dil, pl, pr) == dnnl_success &&
              make_pd(&fd, NULL, &hint) &&
              dnnl_dilated_convolution_backward_weights_desc_init(
                  &cd, k->alg, src ? src : &src_any, &wei,
                  k->bias ? &bias : NULL, &ddst, st, dil, pl, pr) == dnnl_success &&
              make_pd(&cd, hint, &pd) && make_prim(pd, &wb->bw);
    if (ok) {
        if (!src) {
            k->wsrc_md = *query(pd, dnnl_query_src_md);
            k->wsrc_bytes = dnnl_memory_desc_get_size(&k->wsrc_md);
            act_md(&k->plain_wsrc, k->wn, s->c, s->h, s->w, dnnl_nchw);
        }
        wb->ddst_md = *query(pd, dnnl_query_diff_dst_md);
        wb->dwei_md = *query(pd, dnnl_query_diff_weights_md);
        wb->dbias_md = bias;
        wb->ddst_bytes = dnnl_memory_desc_get_size(&wb->ddst_md);
        wb->dwei_bytes = dnnl_memory_desc_get_size(&wb->dwei_md);
        wei_md_of(&t, &wb->plain_wei, true);
        /* the block's channels of dY (N, M, Ho, Wo): a strided slice */
        dnnl_dims_t dd = {k->wn, wb->oc, s->ho, s->wo};
        dnnl_dims_t strides = {s->m * s->ho * s->wo, s->ho * s->wo, s->wo, 1};
        ok = dnnl_memory_desc_init_by_strides(&wb->plain_dst, 4, dd, dnnl_f32, strides) ==
                 dnnl_success &&
             reorder_unless_same(&wb->plain_dst, &wb->ddst_md, &wb->to_ddst) &&
             conv_dnnl_reorder(&wb->dwei_md, &wb->plain_wei, true, &wb->dw_add) &&
             reorder_unless_same(&wb->dwei_md, &wb->plain_wei, &wb->dw_copy);
    }
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (hint)
        dnnl_primitive_desc_destroy(hint);
    return ok;
}

static atomic_size_t wchunk_bytes = WCHUNK_BYTES;

void dnnl_conv_train_set_chunk(size_t bytes) { atomic_store(&wchunk_bytes, bytes ? bytes : WCHUNK_BYTES); }

int64_t dnnl_conv_train_chunks(const dnnl_conv_train *k) { return k->wn ? k->n / k->wn : 0; }

/* *half: md for half of its images, when md is a plain blocked layout with
 * images outermost (each image's data contiguous, the second half right
 * after the first); false otherwise. */
static bool half_images(const dnnl_memory_desc_t *md, dnnl_memory_desc_t *half)
{
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    if (md->format_kind != dnnl_blocked || md->offset0 != 0 || md->padded_dims[0] != md->dims[0] ||
        md->dims[0] % 2 || md->padded_offsets[0] != 0)
        return false;
    for (int i = 0; i < b->inner_nblks; i++)
        if (b->inner_idxs[i] == 0)
            return false;
    if (dnnl_memory_desc_get_size(md) != sizeof(float) * (size_t)(b->strides[0] * md->dims[0]))
        return false;
    *half = *md;
    half->dims[0] = half->padded_dims[0] = md->dims[0] / 2;
    return dnnl_memory_desc_get_size(half) * 2 == dnnl_memory_desc_get_size(md);
}

/* Images per weight-gradient call: the whole batch (at most `most`
 * images), unless its copies of x and dY (in oneDNN's layouts) would pass
 * WCHUNK_BYTES; then the largest divisor of the batch within both (at least
 * one image). */
static int64_t pick_wn(const conv_shape *s, int64_t n, int64_t most)
{
    size_t limit = atomic_load(&wchunk_bytes);
    size_t image = sizeof(float) * (size_t)(s->c * s->h * s->w + s->m * s->ho * s->wo);
    int64_t wn = n;
    while (wn > 1 && (wn > most || (size_t)wn * image > limit)) {
        int64_t d = wn - 1;
        while (n % d)
            d--;
        wn = d;
    }
    return wn;
}

/* The blocks: up to WEIGHT_BLOCKS of at least MIN_WBLOCK channels, a
 * multiple of 16, and two for any layer wider than MIN_WBLOCK (pruned layers
 * of 33 to 63 channels ran as one block, on one thread while the other
 * waited: a third of retraining's weight-gradient time at full width); one
 * for grouped convolutions. Shapes alone decide. */
static bool create_bw(dnnl_conv_train *k)
{
    const conv_shape *s = &k->s;
    int64_t most = s->m / MIN_WBLOCK, blocks = s->group > 1 ? 1 : WEIGHT_BLOCKS < most ? WEIGHT_BLOCKS : most;
    if (s->group == 1 && s->m > MIN_WBLOCK && blocks < 2)
        blocks = 2;
    blocks = blocks > 1 ? blocks : 1;
    /* one block: at least two chunks, for two halves */
    k->wn = pick_wn(s, k->n, blocks == 1 ? k->n / 2 : k->n);
    k->halves = blocks == 1 && k->n / k->wn >= 2;
    int64_t oc = blocks > 1 ? ((s->m + blocks - 1) / blocks + 15) / 16 * 16 : s->m;
    k->woc = oc;
    k->wblocks = (s->m + oc - 1) / oc;
    k->wb[0].oc = oc;
    if (!create_wblock(k, &k->wb[0], NULL))
        return false;
    int64_t last = s->m - (k->wblocks - 1) * oc;
    if (last != oc) {
        k->wb[1].oc = last;
        if (!create_wblock(k, &k->wb[1], &k->wsrc_md))
            return false;
    }
    if (!reorder_unless_same(&k->plain_wsrc, &k->wsrc_md, &k->wsrc))
        return false;
    /* several blocks read one copy of each chunk: the threads make it, a
     * half of its images each, where images are the layout's outermost
     * dimension (one primitive for both halves, at two offsets; oneDNN's
     * sub-memory descriptors took a slower reorder for the second half) */
    if (k->wsrc && !k->halves && k->wn % 2 == 0 && half_images(&k->plain_wsrc, &k->plain_half) &&
        half_images(&k->wsrc_md, &k->wsrc_half_md)) {
        k->plain_half_bytes = dnnl_memory_desc_get_size(&k->plain_half);
        k->wsrc_half_bytes = dnnl_memory_desc_get_size(&k->wsrc_half_md);
        if (!conv_dnnl_reorder(&k->plain_half, &k->wsrc_half_md, false, &k->wsrc_half))
            k->wsrc_half = NULL;
    }
    return true;
}

static void wblock_free(wblock *wb)
{
    prim_free(&wb->bw);
    destroy(&wb->to_ddst);
    destroy(&wb->dw_add), destroy(&wb->dw_copy);
}

bool dnnl_conv_train_winograd(const dnnl_conv_train *k)
{
    return k->alg == dnnl_convolution_winograd;
}

void dnnl_conv_train_free(dnnl_conv_train *k)
{
    if (!k)
        return;
    if (k->fwd_pd)
        dnnl_primitive_desc_destroy(k->fwd_pd);
    prim_free(&k->fwd);
    prim_free(&k->bd);
    destroy(&k->to_src), destroy(&k->to_plain), destroy(&k->to_wei);
    destroy(&k->bd_ddst), destroy(&k->bd_add), destroy(&k->bd_wei), destroy(&k->bd_copy);
    destroy(&k->wsrc), destroy(&k->wsrc_half);
    wblock_free(&k->wb[0]);
    wblock_free(&k->wb[1]);
    conv_dnnl_unbind(&k->bind);
    lego_aligned_free(k->wei);
    free(k);
}

/* ---- running ------------------------------------------------------------ */

/* Bindings for participants [0, threads); made by the caller, before the
 * participants start (this moves them). */
static bool bind_threads(dnnl_conv_train *k, int threads) { return conv_dnnl_bind(&k->bind, threads); }

/* Runs prim with args on participant `thread`'s stream and memory objects. */
static bool execute(dnnl_conv_train *k, int thread, dnnl_primitive_t prim, const arg *args,
                    int nargs)
{
    return conv_dnnl_execute_bound(&k->bind, thread, prim, args, nargs);
}

/* One chunk of the weight gradient: wsrc (the chunk in wsrc_md) and wdy
 * (its dY) give rows of dw and db, written (w_write, b_write: the first
 * chunk of a fresh gradient) or added. */
typedef struct bw_chunk {
    const void *wsrc;
    const float *wdy;
    float *dw, *db;
    bool w_write, b_write;
} bw_chunk;

typedef struct run {
    dnnl_conv_train *k;
    const float *x, *b, *dy;
    float *y, *dx;
    unsigned fresh;        /* op_call.fresh: bit 0 dx, 1 dw, 2 db hold nothing yet */
    float *dw, *db;
    void *wei;             /* backward data's weights */
    unsigned char *scratch; /* per thread */
    size_t per_thread;
    bw_chunk ch;           /* backward weights, by blocks: the chunk at hand */
    float *dw2, *db2;      /* halves: the second half's dW and dB (plain layouts) */
    size_t wsrc_bytes;     /* halves: each half's copy of its chunk, after its scratch */
    atomic_bool failed;
} run;

static size_t bias_bytes(const dnnl_conv_train *k) { return ALIGN(sizeof(float) * (size_t)k->s.m); }

static void fwd_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    run *r = ctx;
    dnnl_conv_train *k = r->k;
    const conv_shape *s = &k->s;
    one_thread();
    unsigned char *src = r->scratch + (size_t)thread * r->per_thread;
    unsigned char *dst = src + (k->to_src ? ALIGN(k->src_bytes) : 0);
    unsigned char *pad = dst + (k->to_plain ? ALIGN(k->dst_bytes) : 0);
    int64_t in = k->ipu * s->c * s->h * s->w, on = k->ipu * s->m * s->ho * s->wo;
    for (int64_t u = begin; u < end && !atomic_load(&r->failed); u++) {
        float *x = (float *)r->x + u * in, *y = r->y + u * on;
        bool ok = true;
        if (k->to_src) {
            arg a[2] = {{DNNL_ARG_FROM, &k->plain_src, x}, {DNNL_ARG_TO, &k->src_md, src}};
            ok = execute(k, thread, k->to_src, a, 2);
        }
        arg a[5] = {{DNNL_ARG_SRC, &k->src_md, k->to_src ? (void *)src : x},
                    {DNNL_ARG_WEIGHTS, &k->wei_md, k->wei},
                    {DNNL_ARG_DST, &k->dst_md, k->to_plain ? (void *)dst : y},
                    {DNNL_ARG_SCRATCHPAD, &k->fwd.pad_md, pad},
                    {DNNL_ARG_BIAS, &k->bias_md, (void *)r->b}};
        ok = ok && execute(k, thread, k->fwd.p, a, k->bias ? 5 : 4);
        if (ok && k->to_plain) {
            arg t[2] = {{DNNL_ARG_FROM, &k->dst_md, dst}, {DNNL_ARG_TO, &k->plain_dst, y}};
            ok = execute(k, thread, k->to_plain, t, 2);
        }
        if (!ok)
            atomic_store(&r->failed, true);
    }
}

static double unit_flops(const dnnl_conv_train *k, int64_t images)
{
    const conv_shape *s = &k->s;
    return 2.0 * (double)(images * s->m * s->ho * s->wo) * (double)(s->c / s->group * s->kh * s->kw);
}

/* The copy of the weights lives from a forward that a backward follows
 * until that backward: never across an optimizer step, and never for more
 * than one plan at a time where plans run one after another (retraining). */
static void drop_weights(dnnl_conv_train *k)
{
    lego_aligned_free(k->wei);
    k->wei = NULL;
    k->wei_valid = false;
}

void dnnl_conv_train_forget_weights(dnnl_conv_train *k) { drop_weights(k); }

bool dnnl_conv_train_forward(dnnl_conv_train *k, const float *x, const float *w, const float *b,
                             float *y, bool keep, workspace *ws)
{
    one_thread();
    k->wei_valid = false;
    int64_t units = k->n / k->ipu;
    par_split sp = par_split_work(units, unit_flops(k, k->ipu) / 16.0); /* as conv.c's gemm_work */
    if (!bind_threads(k, sp.threads))
        return false;
    if (!k->wei && !(k->wei = lego_aligned_alloc(k->wei_bytes ? k->wei_bytes : 64)))
        return false;
    arg a[2] = {{DNNL_ARG_FROM, &k->plain_wei, (void *)w}, {DNNL_ARG_TO, &k->wei_md, k->wei}};
    if (!execute(k, 0, k->to_wei, a, 2)) {
        drop_weights(k);
        return false;
    }
    run r = {.k = k, .x = x, .b = b, .y = y};
    r.per_thread = (k->to_src ? ALIGN(k->src_bytes) : 0) + (k->to_plain ? ALIGN(k->dst_bytes) : 0) +
                   ALIGN(k->fwd.pad_bytes);
    atomic_init(&r.failed, false);
    workspace own = {0};
    r.scratch = workspace_get(ws ? ws : &own, r.per_thread * (size_t)sp.threads);
    if (r.scratch)
        parallel_run(units, sp, fwd_units, &r);
    workspace_free(&own);
    bool ok = r.scratch && !atomic_load(&r.failed);
    k->wei_valid = ok;
    if (!ok || !keep)
        drop_weights(k);
    return ok;
}

static void bd_units(void *ctx, int64_t begin, int64_t end, int thread)
{
    run *r = ctx;
    dnnl_conv_train *k = r->k;
    const conv_shape *s = &k->s;
    one_thread();
    unsigned char *ddst = r->scratch + (size_t)thread * r->per_thread;
    unsigned char *dsrc = ddst + (k->bd_ddst ? ALIGN(k->bd_ddst_bytes) : 0);
    unsigned char *pad = dsrc + ALIGN(k->bd_dsrc_bytes);
    int64_t in = k->ipu * s->c * s->h * s->w, on = k->ipu * s->m * s->ho * s->wo;
    for (int64_t u = begin; u < end && !atomic_load(&r->failed); u++) {
        float *dy = (float *)r->dy + u * on, *dx = r->dx + u * in;
        bool ok = true;
        if (k->bd_ddst) {
            arg a[2] = {{DNNL_ARG_FROM, &k->plain_dst, dy}, {DNNL_ARG_TO, &k->bd_ddst_md, ddst}};
            ok = execute(k, thread, k->bd_ddst, a, 2);
        }
        /* a fresh dX in the primitive's own layout is written in place */
        bool direct = r->fresh & 1u && !k->bd_copy;
        arg a[4] = {{DNNL_ARG_DIFF_DST, &k->bd_ddst_md, k->bd_ddst ? (void *)ddst : dy},
                    {DNNL_ARG_WEIGHTS, &k->bd_wei_md, r->wei},
                    {DNNL_ARG_DIFF_SRC, &k->bd_dsrc_md, direct ? (void *)dx : dsrc},
                    {DNNL_ARG_SCRATCHPAD, &k->bd.pad_md, pad}};
        ok = ok && execute(k, thread, k->bd.p, a, 4);
        arg t[2] = {{DNNL_ARG_FROM, &k->bd_dsrc_md, dsrc}, {DNNL_ARG_TO, &k->plain_src, dx}};
        if (!direct) /* dx = (fresh), else dx += */
            ok = ok && execute(k, thread, r->fresh & 1u ? k->bd_copy : k->bd_add, t, 2);
        if (!ok)
            atomic_store(&r->failed, true);
    }
}

/* Weight-gradient block b of chunk ch: the block's rows of dw and db. */
static bool bw_block(run *r, int thread, int64_t b, const bw_chunk *ch)
{
    dnnl_conv_train *k = r->k;
    const conv_shape *s = &k->s;
    int64_t per_oc = s->c / s->group * s->kh * s->kw;
    const wblock *wb = &k->wb[b == k->wblocks - 1 && k->wb[1].oc ? 1 : 0];
    int64_t m0 = b * k->woc;
    unsigned char *ddst = r->scratch + (size_t)thread * r->per_thread;
    unsigned char *dwei = ddst + (wb->to_ddst ? ALIGN(wb->ddst_bytes) : 0);
    float *dbias = (float *)(dwei + ALIGN(wb->dwei_bytes));
    unsigned char *pad = (unsigned char *)dbias + bias_bytes(k);
    float *dy = (float *)ch->wdy + m0 * s->ho * s->wo;
    bool ok = true;
    if (wb->to_ddst) {
        arg a[2] = {{DNNL_ARG_FROM, &wb->plain_dst, dy}, {DNNL_ARG_TO, &wb->ddst_md, ddst}};
        ok = execute(k, thread, wb->to_ddst, a, 2);
    }
    /* a written dW in OIHW comes straight from the primitive */
    float *dw = ch->dw ? ch->dw + m0 * per_oc : NULL;
    bool direct = dw && ch->w_write && !wb->dw_copy;
    arg a[5] = {{DNNL_ARG_SRC, &k->wsrc_md, (void *)ch->wsrc},
                {DNNL_ARG_DIFF_DST, &wb->ddst_md, wb->to_ddst ? (void *)ddst : dy},
                {DNNL_ARG_DIFF_WEIGHTS, &wb->dwei_md, direct ? (void *)dw : dwei},
                {DNNL_ARG_SCRATCHPAD, &wb->bw.pad_md, pad},
                {DNNL_ARG_DIFF_BIAS, &wb->dbias_md, dbias}};
    ok = ok && execute(k, thread, wb->bw.p, a, k->bias ? 5 : 4);
    if (ok && dw && !direct) {
        arg t[2] = {{DNNL_ARG_FROM, &wb->dwei_md, dwei}, {DNNL_ARG_TO, &wb->plain_wei, dw}};
        ok = execute(k, thread, ch->w_write ? wb->dw_copy : wb->dw_add, t, 2); /* dw = or += */
    }
    if (ok && ch->db && ch->b_write)
        memcpy(ch->db + m0, dbias, sizeof(float) * (size_t)wb->oc);
    else if (ok && ch->db)
        for (int64_t m = 0; m < wb->oc; m++)
            ch->db[m0 + m] += dbias[m];
    return ok;
}

/* Weight-gradient blocks [begin, end) of the chunk r->ch. */
static void bw_blocks(void *ctx, int64_t begin, int64_t end, int thread)
{
    run *r = ctx;
    one_thread();
    for (int64_t b = begin; b < end && !atomic_load(&r->failed); b++)
        if (!bw_block(r, thread, b, &r->ch))
            atomic_store(&r->failed, true);
}

/* A chunk of NCHW images (from) into wsrc_md (to), whole or, by the
 * threads, half of its images each (wsrc_halves). */
typedef struct wsrc_job {
    dnnl_conv_train *k;
    const void *from;
    void *to;
    atomic_bool failed;
} wsrc_job;

static void wsrc_halves(void *ctx, int64_t begin, int64_t end, int thread)
{
    wsrc_job *j = ctx;
    dnnl_conv_train *k = j->k;
    one_thread();
    for (int64_t h = begin; h < end; h++) {
        arg a[2] = {{DNNL_ARG_FROM, &k->plain_half, (unsigned char *)j->from + h * k->plain_half_bytes},
                    {DNNL_ARG_TO, &k->wsrc_half_md, (unsigned char *)j->to + h * k->wsrc_half_bytes}};
        if (!execute(k, thread, k->wsrc_half, a, 2))
            atomic_store(&j->failed, true);
    }
}

static bool to_wsrc(dnnl_conv_train *k, int thread, const void *from, void *to)
{
    arg a[2] = {{DNNL_ARG_FROM, &k->plain_wsrc, (void *)from}, {DNNL_ARG_TO, &k->wsrc_md, to}};
    return execute(k, thread, k->wsrc, a, 2);
}

/* Halves [begin, end) of a one-block layer's batch: half h runs its chunks
 * in order, each reordered into its own copy, into dw and db (half 0: as
 * the call asks; half 1: r->dw2 and r->db2, written by its first chunk). */
static void bw_halves(void *ctx, int64_t begin, int64_t end, int thread)
{
    run *r = ctx;
    dnnl_conv_train *k = r->k;
    const conv_shape *s = &k->s;
    one_thread();
    int64_t chunks = k->n / k->wn, in = k->wn * s->c * s->h * s->w, on = k->wn * s->m * s->ho * s->wo;
    unsigned char *wsrc = r->scratch + (size_t)thread * r->per_thread + (r->per_thread - r->wsrc_bytes);
    for (int64_t h = begin; h < end; h++)
        for (int64_t i = h * chunks / 2; i < (h + 1) * chunks / 2 && !atomic_load(&r->failed); i++) {
            bool first = i == h * chunks / 2;
            bw_chunk ch = {r->x + i * in, r->dy + i * on, h ? r->dw2 : r->dw, h ? r->db2 : r->db,
                           first && (h || r->fresh & 2u), first && (h || r->fresh & 4u)};
            bool ok = true;
            if (k->wsrc) {
                ok = to_wsrc(k, thread, ch.wsrc, wsrc);
                ch.wsrc = wsrc;
            }
            if (!(ok && bw_block(r, thread, 0, &ch)))
                atomic_store(&r->failed, true);
        }
}

static size_t bd_per_thread(const dnnl_conv_train *k)
{
    return (k->bd_ddst ? ALIGN(k->bd_ddst_bytes) : 0) + ALIGN(k->bd_dsrc_bytes) +
           ALIGN(k->bd.pad_bytes);
}

static size_t bw_per_thread(const dnnl_conv_train *k)
{
    size_t most = 0;
    for (int i = 0; i < 2; i++) {
        const wblock *wb = &k->wb[i];
        if (!wb->bw.p)
            continue;
        size_t need = (wb->to_ddst ? ALIGN(wb->ddst_bytes) : 0) + ALIGN(wb->dwei_bytes) +
                      bias_bytes(k) + ALIGN(wb->bw.pad_bytes);
        most = need > most ? need : most;
    }
    return most;
}

static void add_nan(float *v, int64_t n)
{
    if (v)
        for (int64_t i = 0; i < n; i++)
            v[i] += NAN;
}

bool dnnl_conv_train_backward(dnnl_conv_train *k, const float *x, const float *w, const float *dy,
                              float *dx, float *dw, float *db, unsigned fresh, workspace *ws)
{
    const conv_shape *s = &k->s;
    bool want_w = dw || db;
    if (!dx && !want_w)
        return true;
    one_thread();
    if (dx && !k->bd_state)
        k->bd_state = create_bd(k) ? 1 : -1;
    if (want_w && !k->bw_state)
        k->bw_state = create_bw(k) ? 1 : -1;
    if ((dx && k->bd_state < 0) || (want_w && k->bw_state < 0))
        return false;

    int64_t units = k->n / k->ipu;
    par_split sd = par_split_work(units, unit_flops(k, k->ipu) / 16.0);
    par_split sw = k->halves ? par_split_work(2, unit_flops(k, k->n / 2) / 16.0)
                             : par_split_work(k->wblocks, unit_flops(k, k->wn) / (double)k->wblocks / 16.0);
    par_split sp = par_split_work(2, (double)(k->wsrc_bytes / 8)); /* wsrc_halves: a copy's floats */
    run r = {.k = k, .x = x, .dy = dy, .dx = dx, .fresh = fresh, .dw = dw, .db = db};
    atomic_init(&r.failed, false);
    /* The weight gradient, then the input gradient, one after the other in
     * one buffer: each phase's per-thread scratch, then the chunk's copy of
     * x (weights; with halves, one per thread at the end of its scratch,
     * and the second half's dW and dB) or the weights in backward data's
     * layout (input) */
    size_t bw_thread = 0, bd_thread = 0, wsrc_bytes = 0, wei_bytes = 0, half_bytes = 0, total = 0;
    int64_t dw_n = s->m * s->c / s->group * s->kh * s->kw;
    int threads = 1;
    if (want_w) {
        bw_thread = ALIGN(bw_per_thread(k));
        wsrc_bytes = k->wsrc ? ALIGN(k->wsrc_bytes) : 0;
        if (k->halves) {
            bw_thread += wsrc_bytes;
            half_bytes = ALIGN(sizeof(float) * (size_t)dw_n) + bias_bytes(k);
            total = bw_thread * (size_t)sw.threads + half_bytes;
        } else {
            total = bw_thread * (size_t)sw.threads + wsrc_bytes;
        }
        threads = sw.threads > sp.threads ? sw.threads : sp.threads;
    }
    if (dx) {
        bd_thread = ALIGN(bd_per_thread(k));
        /* the forward's copy of the weights when the layouts agree */
        if (k->bd_wei || !k->wei_valid)
            wei_bytes = ALIGN(k->bd_wei ? k->bd_wei_bytes : k->wei_bytes);
        size_t need = bd_thread * (size_t)sd.threads + wei_bytes;
        total = need > total ? need : total;
        threads = sd.threads > threads ? sd.threads : threads;
    }
    workspace own = {0};
    unsigned char *buf = bind_threads(k, threads) ? workspace_get(ws ? ws : &own, total) : NULL;
    if (!buf)
        return false;
    r.scratch = buf;
    bool ok = true;
    if (want_w && k->halves) {
        r.per_thread = bw_thread;
        r.wsrc_bytes = wsrc_bytes;
        r.dw2 = dw ? (float *)(buf + bw_thread * (size_t)sw.threads) : NULL;
        r.db2 = db ? (float *)(buf + bw_thread * (size_t)sw.threads + ALIGN(sizeof(float) * (size_t)dw_n)) : NULL;
        parallel_run(2, sw, bw_halves, &r);
        ok = !atomic_load(&r.failed);
        for (int64_t i = 0; ok && dw && i < dw_n; i++)
            dw[i] += r.dw2[i];
        for (int64_t i = 0; ok && db && i < s->m; i++)
            db[i] += r.db2[i];
    } else if (want_w) {
        r.per_thread = bw_thread;
        unsigned char *wsrc = buf + bw_thread * (size_t)sw.threads;
        int64_t in = k->wn * s->c * s->h * s->w, on = k->wn * s->m * s->ho * s->wo;
        for (int64_t i = 0; ok && i < k->n / k->wn; i++) { /* chunks in order: dW += each */
            /* a fresh dW (dB) takes the first chunk's */
            r.ch = (bw_chunk){x + i * in, dy + i * on, dw, db, i == 0 && fresh & 2u, i == 0 && fresh & 4u};
            if (k->wsrc_half && sp.threads > 1) { /* on one thread, the whole in one call */
                wsrc_job j = {.k = k, .from = r.ch.wsrc, .to = wsrc};
                atomic_init(&j.failed, false);
                parallel_run(2, sp, wsrc_halves, &j);
                ok = !atomic_load(&j.failed);
            } else if (k->wsrc) {
                ok = to_wsrc(k, 0, r.ch.wsrc, wsrc);
            }
            if (k->wsrc)
                r.ch.wsrc = wsrc;
            if (ok)
                parallel_run(k->wblocks, sw, bw_blocks, &r);
            ok = ok && !atomic_load(&r.failed);
        }
    }
    if (ok && dx) {
        r.per_thread = bd_thread;
        r.wei = k->wei;
        if (wei_bytes) {
            r.wei = buf + bd_thread * (size_t)sd.threads;
            const dnnl_memory_desc_t *to = k->bd_wei ? &k->bd_wei_md : &k->wei_md;
            arg a[2] = {{DNNL_ARG_FROM, &k->plain_wei, (void *)w}, {DNNL_ARG_TO, to, r.wei}};
            ok = execute(k, 0, k->bd_wei ? k->bd_wei : k->to_wei, a, 2);
        }
        if (ok)
            parallel_run(units, sd, bd_units, &r);
        ok = ok && !atomic_load(&r.failed);
    }
    workspace_free(&own);
    drop_weights(k);
    if (!ok) { /* as conv.c: a failure shows as NaN, never as a silent wrong step */
        add_nan(dx, k->n * s->c * s->h * s->w);
        add_nan(dw, s->m * s->c / s->group * s->kh * s->kw);
        add_nan(db, s->m);
    }
    return true;
}

#else /* no oneDNN: conv.c's own path runs every Conv */

lego_status dnnl_conv_train_create(const conv_shape *s, int64_t n, bool bias,
                                   dnnl_conv_train **out)
{
    (void)s, (void)n, (void)bias;
    *out = NULL;
    return lego_ok();
}

bool dnnl_conv_train_matches(const dnnl_conv_train *k, const conv_shape *s, int64_t n)
{
    (void)k, (void)s, (void)n;
    return false;
}

void dnnl_conv_train_gate(bool on) { (void)on; }

bool dnnl_conv_train_winograd(const dnnl_conv_train *k)
{
    (void)k;
    return false;
}

void dnnl_conv_train_set_chunk(size_t bytes) { (void)bytes; }

int64_t dnnl_conv_train_chunks(const dnnl_conv_train *k)
{
    (void)k;
    return 0;
}

bool dnnl_conv_train_forward(dnnl_conv_train *k, const float *x, const float *w, const float *b,
                             float *y, bool keep, workspace *ws)
{
    (void)k, (void)x, (void)w, (void)b, (void)y, (void)keep, (void)ws;
    return false;
}

bool dnnl_conv_train_backward(dnnl_conv_train *k, const float *x, const float *w, const float *dy,
                              float *dx, float *dw, float *db, unsigned fresh, workspace *ws)
{
    (void)k, (void)x, (void)w, (void)dy, (void)dx, (void)dw, (void)db, (void)fresh, (void)ws;
    return false;
}

void dnnl_conv_train_forget_weights(dnnl_conv_train *k) { (void)k; }

void dnnl_conv_train_free(dnnl_conv_train *k) { (void)k; }

#endif
