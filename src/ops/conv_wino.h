/* conv_wino.h - Conv forward by Winograd F(4x4,3x3) on the portable path
 * (BLAS for the multiplications), for 3x3 convolutions of stride 1 where
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
 * dilation 1, at least 64 channels in and out and no more than 256x256
 * channel pairs (its weights are four times the direct ones'), maps of 8x8
 * outputs or more, 32 tiles or more per call; and oneDNN does not run
 * Winograd itself on this CPU. LEGO_WINOGRAD=0 turns it off, as it does
 * oneDNN's. */
bool wino_conv_fits(const conv_shape *s, int64_t n);

/* The transformed weights of w (M, C, 3, 3) and a copy of bias b (M) or
 * NULL, for batches of n; ep (kept by pointer: it must outlive the state;
 * NULL: none) runs on each output after the bias. With w NULL (training,
 * whose weights change every step) the weights come from
 * wino_conv_set_weights before each run, and bias says whether a bias
 * will. */
lego_status wino_conv_create(const conv_shape *s, int64_t n, const float *w, const float *b,
                             bool bias, const conv_epilogue *ep, wino_conv **out);

/* New weights w and bias b (NULL when created without) for the next runs. */
void wino_conv_set_weights(wino_conv *k, const float *w, const float *b);

/* The weights of the input gradient of a 3x3 stride-1 convolution with
 * weights w (C', M', 3, 3), k being made for the shape that computes it
 * (dY in, its C' = M' channels of dX out, the padding 2 - the forward's):
 * each filter transposed and turned by 180 degrees. */
void wino_conv_set_weights_flipped(wino_conv *k, const float *w);

/* Whether k was made for shape s at batch n. */
bool wino_conv_matches(const wino_conv *k, const conv_shape *s, int64_t n);

/* y (n, M, Ho, Wo) from x (n, C, H, W), both NCHW, n as created; scratch
 * from ws (or malloc when NULL). false without scratch memory. The same
 * bits for any thread count. */
bool wino_conv_run(const wino_conv *k, const float *x, float *y, workspace *ws);

/* Bytes of the transformed weights and the bias copy. */
size_t wino_conv_packed_bytes(const wino_conv *k);

void wino_conv_free(wino_conv *k);

/* conv.c's epilogue (y*a + b per row, then the clamp, rounding as the
 * separate ops do) on rows x cols of y, row stride ld, rows being output
 * channels from m0. */
void conv_epilogue_rows(float *y, int64_t ld, int64_t rows, int64_t cols, const conv_epilogue *e,
                        int64_t m0);

#endif
