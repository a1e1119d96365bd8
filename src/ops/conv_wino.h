/* conv_wino.h - Conv by Winograd F(4x4,3x3) on the portable path (BLAS
 * for the multiplications): forward, input and weight gradients of 3x3
 * convolutions of stride 1 where
 * oneDNN has no Winograd kernels of its own: AVX2 machines, and builds
 * without oneDNN (ARM boards). See conv_wino.c. */
#ifndef LEGO_OPS_CONV_WINO_H
#define LEGO_OPS_CONV_WINO_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/status.h"
#include "../core/workspace.h"
#include "conv_dnnl.h"

typedef struct wino_conv wino_conv;

/* Whether Winograd kernels (oneDNN's and ours) are on: unless LEGO_WINOGRAD=0
 * (read once); conv_set_winograd overrides it for kernels packed from then
 * on (for the tests). */
bool conv_winograd_on(void);
void conv_set_winograd(bool on);

/* Whether shape s at batch n takes this path: one group, 3x3, stride and
 * dilation 1, at least 8 channels in and out, enough work per image that
 * the transforms pay (channels in x out x output pixels of 2^19 or more,
 * or 64 x 64 channels or more on maps of 4x4 or more: conv_wino.c has the
 * measurements), 32 tiles or more per call. Not where
 * oneDNN runs Winograd itself on this CPU. LEGO_WINOGRAD=0 turns it off,
 * as it does oneDNN's. */
bool wino_conv_fits(const conv_shape *s, int64_t n);

/* A state for shape s at batch n. With weights w (M, C, 3, 3) and bias b
 * (M) or NULL, of at most 256x256 channel pairs: transformed once and
 * kept (they are four times the direct weights). Otherwise (larger, or w
 * NULL: a train plan, whose weights change every step) the weights given
 * to each run are transformed into its scratch. ep (kept by pointer: it
 * must outlive the state; NULL: none) runs on each output after the bias. */
lego_status wino_conv_create(const conv_shape *s, int64_t n, const float *w, const float *b,
                             const conv_epilogue *ep, wino_conv **out);

/* Whether k was made for shape s at batch n. */
bool wino_conv_matches(const wino_conv *k, const conv_shape *s, int64_t n);

/* y (n, M, Ho, Wo) from x (n, C, H, W), both NCHW, n as created, with
 * weights w and bias b (or NULL): those it was created with when it kept
 * them, else transformed first. res (NULL: none), of y's shape, is added
 * after the epilogue's y*a + b and before its clamp (a fused residual
 * Add). Scratch from ws (or malloc when NULL); false without it. The same
 * bits for any thread count, kept or not. */
bool wino_conv_run(const wino_conv *k, const float *w, const float *b, const float *x, const float *res,
                   float *y, workspace *ws);

/* The input gradient of a 3x3 stride-1 convolution with weights w (C', M',
 * 3, 3), k being made without weights or epilogue for the shape that
 * computes it (dY in, its C' = M' channels of dX out, the padding 2 - the
 * forward's): each filter transposed and turned by 180 degrees. Written
 * into y, or added to it when `add`. */
bool wino_conv_run_flipped(const wino_conv *k, const float *w, const float *x, float *y, bool add,
                           workspace *ws);

/* dW (M, C, 3, 3) of the convolution k computes (stored weights or not),
 * from its input x and dY (n, M, Ho, Wo): written when fresh, else added.
 * Scratch from ws (or malloc when NULL); false without it. The same bits
 * for any thread count; the gradient of this Winograd forward, which
 * differs from the direct convolution's by rounding. */
bool wino_conv_weight_grad(const wino_conv *k, const float *x, const float *dy, float *dw,
                           bool fresh, workspace *ws);

/* Bytes of the kept transformed weights and the bias copy (0 without). */
size_t wino_conv_packed_bytes(const wino_conv *k);

void wino_conv_free(wino_conv *k);

/* conv.c's epilogue (y*a + b per row, then res's value added when res is
 * not NULL, then the clamp, rounding as the separate ops do) on rows x
 * cols of y, and of res, row stride ld, rows being output channels from
 * m0. */
void conv_epilogue_rows(float *y, const float *res, int64_t ld, int64_t rows, int64_t cols,
                        const conv_epilogue *e, int64_t m0);

#endif
