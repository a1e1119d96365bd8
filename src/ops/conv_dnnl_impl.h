/* conv_dnnl_impl.h - what conv_dnnl.c shares with conv_dnnl_train.c: the
 * one CPU engine, the OpenMP guard, and small wrappers over oneDNN's C API.
 * Included only where LEGO_HAVE_DNNL is defined. */
#ifndef LEGO_OPS_CONV_DNNL_IMPL_H
#define LEGO_OPS_CONV_DNNL_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "conv_dnnl.h"

/* The engine every primitive runs on; NULL when oneDNN is disabled
 * (LEGO_DNNL=0) or has no CPU engine. */
dnnl_engine_t conv_dnnl_engine(void);

/* Keeps oneDNN inline on the calling thread (OpenMP count 1): call it on
 * every thread before it creates or runs a primitive. */
void conv_dnnl_one_thread(void);

/* One argument of a primitive: its DNNL_ARG_*, layout and data. */
typedef struct conv_dnnl_arg {
    int arg;
    const dnnl_memory_desc_t *md;
    void *data;
} conv_dnnl_arg;

/* Runs prim with args on a fresh stream of this thread; false on failure. */
bool conv_dnnl_execute(dnnl_primitive_t prim, const conv_dnnl_arg *args, int nargs);

/* What each participant of our pool (threads.h's `thread`) runs a state's
 * primitives with: a stream, and a memory object per (argument, layout) it
 * has used (keyed by the descriptor's address in the state), rebound to
 * each call's data. Creating them per call was 10-15% of a small
 * network's time. A participant runs one unit at a time, and a state one
 * call at a time, so no two threads ever use one binding at once. Setting
 * a handle zero-fills a blocked layout's padding, as creating the object
 * did. */
typedef struct conv_dnnl_binding conv_dnnl_binding;
typedef struct conv_dnnl_bindings {
    conv_dnnl_binding *b;
    int n;
} conv_dnnl_bindings;

/* Bindings for participants [0, threads), made before they start. */
bool conv_dnnl_bind(conv_dnnl_bindings *bs, int threads);
void conv_dnnl_unbind(conv_dnnl_bindings *bs);
/* conv_dnnl_execute on participant `thread`'s binding. */
bool conv_dnnl_execute_bound(conv_dnnl_bindings *bs, int thread, dnnl_primitive_t prim,
                             const conv_dnnl_arg *args, int nargs);

/* A reorder from `from` to `to`; with sum it adds into what `to` holds. */
bool conv_dnnl_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, bool sum,
                       dnnl_primitive_t *prim);

/* A dense f32 descriptor of nd dims in layout tag. */
void conv_dnnl_md(dnnl_memory_desc_t *md, int nd, const int64_t *dims, dnnl_format_tag_t tag);

/* oneDNN's strides, dilations (counted from 0) and both pads of shape s;
 * false when a pad is negative (no oneDNN kernel). */
bool conv_dnnl_geometry(const conv_shape *s, dnnl_dims_t strides, dnnl_dims_t dil,
                        dnnl_dims_t pad_l, dnnl_dims_t pad_r);

/* The algorithm to try first for shape s: Winograd for 3x3 convolutions of
 * stride and dilation 1 and at least 16 input channels (oneDNN's F(4x4,3x3)
 * and F(2x2,3x3) kernels, 1.5 to 3 times faster than its direct ones here,
 * forward and backward; with 3 input channels 4 times slower) and at least
 * 16 output channels (its training kernels take no fewer, and inference
 * must round as training's forward does, so that profiling's block
 * executor and a composed model's evaluation agree) on maps of at least
 * 16 outputs (a smaller one is mostly the padding of one 4x4 tile) up to 256x256
 * channels, direct otherwise, or everywhere under LEGO_WINOGRAD=0. The
 * limit is memory: F(4x4,3x3) keeps its weights transformed, four times
 * their size (28 MB more per 512x512 layer), and its weight gradient's
 * scratchpad took 140 MB at batch 128 there; with those layers on Winograd
 * CIFAR ResNet18 at batch 32 took 263 MiB, ONNX Runtime 225, without them
 * 184 (and 5% more time). A Winograd result rounds
 * differently from a direct one (within about 1e-5 relative, the same for
 * any thread count); where oneDNN has no Winograd kernel for the layouts
 * or post-ops asked, callers fall back to direct. */
dnnl_alg_kind_t conv_dnnl_algorithm(const conv_shape *s);

/* Whether dnnl_wino_pack writes weights of layout md: oneDNN's F(4x4,3x3)
 * and F(2x2,3x3) inference weights (conv_dnnl_wino.c; anything else goes
 * through oneDNN's reorder). */
bool dnnl_wino_packs(const dnnl_memory_desc_t *md);
/* Transforms OIHW 3x3 weights w (oc x ic) into md's layout at out (md's
 * size, zero-padded): the bits oneDNN's reorder writes (test_conv_dnnl),
 * far faster. */
void dnnl_wino_pack(const dnnl_memory_desc_t *md, const float *w, int64_t oc, int64_t ic, void *out);

#endif
