/* conv_dnnl_train.h - Conv forward and backward through oneDNN, for train
 * plans (graph/autodiff.c via op_desc.train_pack; conv.c calls these).
 *
 * Built only with LEGO_HAVE_DNNL; elsewhere create declines and conv.c runs
 * its portable im2col + BLAS forward and backward, which the tests hold
 * this path to (tests/test_conv_dnnl.c).
 *
 * A dnnl_conv_train belongs to one Conv of one train plan: the shapes are
 * fixed, the weights are not (the optimizer changes them between steps),
 * so each forward reorders the current weights into the primitive's layout
 * once and keeps that copy for the backward pass that follows it (and only
 * until then: retraining holds many plans). Like
 * conv_dnnl.c, every primitive runs single-threaded inside our own pool.
 * Results are the same bits for any thread count: forward and the input
 * gradient are computed image by image (a few images per call for small
 * maps: a function of the batch only), and the weight gradient in blocks
 * of output channels (a function of the shape only), each over the whole
 * batch, or for large maps over chunks of it taken in order (a function of
 * the shape and batch), so no partial sums of threads are ever combined.
 * A call's buffers come from the workspace given (a train plan's,
 * op_call.ws), so that none is allocated per call. */
#ifndef LEGO_OPS_CONV_DNNL_TRAIN_H
#define LEGO_OPS_CONV_DNNL_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../core/workspace.h"
#include "conv_dnnl.h"

typedef struct dnnl_conv_train dnnl_conv_train;

/* The state for shape s at batch n, with a bias input or without. *out is
 * NULL (and the status ok) when oneDNN is absent, disabled (LEGO_DNNL=0)
 * or has no fast kernel for the forward. Backward primitives are made on
 * the first backward pass, which falls back the same way. */
lego_status dnnl_conv_train_create(const conv_shape *s, int64_t n, bool bias,
                                   dnnl_conv_train **out);

/* Whether k was made for shape s at batch n (a graph re-prepared at other
 * shapes keeps its old plans' states out of use). */
bool dnnl_conv_train_matches(const dnnl_conv_train *k, const conv_shape *s, int64_t n);

/* y (n,M,Ho,Wo) = conv(x (n,C,H,W), w (M,C/group,kh,kw)) + b (b NULL when
 * created without bias). With keep (a training forward: a backward
 * follows), the reordered weights stay for that backward, which frees them.
 * Scratch comes from ws (the plan's; NULL: allocated for the call).
 * false when nothing was computed (memory or oneDNN failed): the caller
 * then runs its own forward. */
bool dnnl_conv_train_forward(dnnl_conv_train *k, const float *x, const float *w, const float *b,
                             float *y, bool keep, workspace *ws);

/* ADDS the gradients of x, w and b (each NULL when not wanted) for dy,
 * x and w being the last forward's; those whose bit is set in fresh (bit
 * 0 dx, 1 dw, 2 db, as op_call.fresh) hold nothing yet and are written
 * instead. false when nothing was touched (no
 * kernel for the backward of this shape, or no memory): the caller then
 * runs its own backward. A failure part way adds NaN to what was asked,
 * as conv.c does. */
bool dnnl_conv_train_backward(dnnl_conv_train *k, const float *x, const float *w, const float *dy,
                              float *dx, float *dw, float *db, unsigned fresh, workspace *ws);

/* Forgets the weights a forward kept for its backward: the next backward
 * reorders w itself. For a forward that ran elsewhere (conv_wino.c). */
void dnnl_conv_train_forget_weights(dnnl_conv_train *k);

void dnnl_conv_train_free(dnnl_conv_train *k);

/* A Conv's train-plan state (conv.c, op_desc.train_pack): its oneDNN state
 * (NULL: none), and whether its forward runs Winograd (oneDNN's or
 * conv_wino.c's); for the tests. */
dnnl_conv_train *conv_trained_dnnl(void *state);
bool conv_trained_winograd(void *state);

/* With on false, create takes every shape oneDNN has a fast kernel for,
 * also those where the portable path measured faster (1x1 convolutions
 * with few channels): for the tests, which hold the kernels to the portable path
 * on every shape class. On by default. */
void dnnl_conv_train_gate(bool on);

/* Whether k runs Winograd (conv_dnnl_algorithm); for the tests. */
bool dnnl_conv_train_winograd(const dnnl_conv_train *k);

/* The most bytes the weight gradient's copies of x and dY may take before
 * it goes through the batch in chunks (0: the default, 16 MiB); for the
 * tests, which lower it so that small shapes take chunks too. Read when a
 * state makes its backward primitives. */
void dnnl_conv_train_set_chunk(size_t bytes);

/* The chunks k's weight gradient takes the batch in (0 before its first
 * backward pass): for the tests. */
int64_t dnnl_conv_train_chunks(const dnnl_conv_train *k);

#endif
