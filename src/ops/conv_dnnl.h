/* conv_dnnl.h - Conv forward through oneDNN, for inference plans (conv.c).
 *
 * Built only when CMake finds libdnnl (LEGO_HAVE_DNNL); elsewhere every call
 * here declines and conv.c keeps its portable im2col + BLAS path, which is
 * also the reference the tests hold this one to.
 *
 * A dnnl_conv holds, for one Conv at one batch size, the primitives oneDNN
 * chose (its own layouts: `format any`), the reorders from and to our NCHW
 * tensors and the weights reordered once into the primitive's layout.
 * Running it cuts the work into units of one image (at small batches, one
 * band of its output rows or one block of its output channels), each
 * computed by a single-threaded primitive inside our
 * own thread pool (core/threads.h): oneDNN's OpenMP never starts a thread of
 * its own, so nothing spins, and each output value comes from the same
 * primitive call whatever the thread count, so results are the same bits
 * for any count. */
#ifndef LEGO_OPS_CONV_DNNL_H
#define LEGO_OPS_CONV_DNNL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../core/workspace.h"

/* One Conv's geometry: input (C,H,W), output (M,Ho,Wo), leading pads. */
typedef struct conv_shape {
    int64_t c, h, w, m, ho, wo;
    int64_t kh, kw, sh, sw, dh, dw, pad_t, pad_l;
    int64_t group;
} conv_shape;

/* Whether s is a dense 3x3 convolution of stride and dilation 1: the
 * shapes Winograd F(m x m, 3x3) computes (oneDNN's and conv_wino.c's). */
static inline bool conv_shape_3x3_unit(const conv_shape *s)
{
    return s->group == 1 && s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->dh == 1 &&
           s->dw == 1;
}

/* What runs on the output after the bias, in this order: y*scale + shift
 * per output channel (a BatchNormalization; both NULL when none), then a
 * clamp to [lo, hi] (Relu: [0, inf), Clip). Each step rounds as the
 * separate op would, so fusing them changes no bits. */
typedef struct conv_epilogue {
    const float *scale, *shift;
    bool clamp;
    float lo, hi;
} conv_epilogue;

typedef struct dnnl_conv dnnl_conv;

/* Whether oneDNN was built in and not disabled by LEGO_DNNL=0 in the
 * environment (read once; for measuring the portable path). */
bool dnnl_conv_enabled(void);

/* Whether oneDNN is enabled and this CPU has its Winograd kernels
 * (AVX-512); for the tests, which expect them then. */
bool dnnl_conv_winograd_available(void);

/* "LEGO_DNNL=0" or "LEGO_WINOGRAD=0" when the environment turned oneDNN
 * (in a build that has it) or the Winograd kernels (oneDNN's or
 * conv_wino.c's) off, else "": kernels other than this build's own, which
 * time and hold weights differently. */
const char *dnnl_conv_switched_off(void);

/* The primitives for batch n of shape s with weights w (M, C/group, kh, kw),
 * bias b (M) or NULL, then the epilogue (copied); with `add`, a fused Add's
 * residual after the epilogue's y*a + b and before its clamp. *out is NULL
 * (and the status ok) when oneDNN is absent or has no kernel for the shape
 * (or, with `add`, none whose output our epilogue can run on: oneDNN's own
 * post-ops would clamp before the residual is added). */
lego_status dnnl_conv_create(const conv_shape *s, int64_t n, const float *w, const float *b,
                             const conv_epilogue *ep, bool add, dnnl_conv **out);

/* y (n, M, Ho, Wo) from x (n, C, H, W), n as created, both NCHW unless
 * x_native / y_native: then in the layout dnnl_conv_layout names; res (read
 * when created with `add`) is laid out as y. Scratch (the batch reordered,
 * each thread's output block) comes from ws, or from malloc when ws is
 * NULL. false when scratch memory or oneDNN failed (y is then undefined). */
bool dnnl_conv_run(dnnl_conv *k, const float *x, const float *res, float *y, bool x_native,
                   bool y_native, workspace *ws);

/* The layout (OP_LAYOUT_* of ops/op.h) the primitives read an image in
 * (dst false) or write it in (dst true); -1 when it is none of those or,
 * for dst, when output-channel blocks each write their own. */
int dnnl_conv_layout(const dnnl_conv *k, bool dst);

/* Image by image (op_desc.forward_images): the per-thread scratch bytes
 * one call of *group images needs, 0 when a unit is not whole images
 * (bands, channel blocks) or x would need reordering first; and images
 * [i0, i1), whole groups, run on the calling thread. */
size_t dnnl_conv_image_scratch(const dnnl_conv *k, bool x_native, int64_t *group);
bool dnnl_conv_run_images(const dnnl_conv *k, const float *x, const float *res, float *y,
                          bool x_native, bool y_native, int64_t i0, int64_t i1, void *scratch);

void dnnl_conv_free(dnnl_conv *k);

/* The bytes k holds of the layer's own: its packed weights (Winograd's
 * transformed ones four times the weights), bias and epilogue. */
size_t dnnl_conv_packed_bytes(const dnnl_conv *k);

/* Whether k's primitives run Winograd (see conv_dnnl_algorithm). */
bool dnnl_conv_winograd(const dnnl_conv *k);

/* How many units (bands of rows, channel blocks or depthwise slices) k
 * cuts one call into; 1 when it runs whole. */
int dnnl_conv_units(const dnnl_conv *k);

/* Whether a Conv's packed state (conv.c, op_desc.pack) runs on oneDNN; for
 * the tests. */
bool conv_packed_dnnl(const void *packed);
bool conv_packed_winograd(const void *packed);
int conv_packed_units(const void *packed); /* dnnl_conv_units; 0 off oneDNN */

#endif
