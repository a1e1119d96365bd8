/* window.h - the sliding-window arithmetic that Conv, ConvTranspose and the
 * windowed pools share: the auto_pad attribute, fixed-length ints attributes
 * (kernel_shape, strides, dilations, pads), and the output size and padding
 * of a 2-D window over an NCHW map, as ONNX defines them. */
#ifndef LEGO_OPS_WINDOW_H
#define LEGO_OPS_WINDOW_H

#include "op.h"

typedef enum window_pad {
    PAD_NOTSET,
    PAD_SAME_UPPER,
    PAD_SAME_LOWER,
    PAD_VALID
} window_pad;

/* A 2-D window over (H,W); index 0 is H, 1 is W. */
typedef struct window {
    window_pad mode;
    int64_t k[2], stride[2], dilation[2];
    int64_t pads[4];   /* top, left, bottom, right; only for mode NOTSET */
    int64_t ceil_mode; /* non-zero: a last, partial window counts (pools only) */
} window;

/* The auto_pad attribute (default NOTSET). */
lego_status window_auto_pad(const op_call *c, window_pad *out);

/* An ints attribute of exactly n values, each at least min; def fills it when absent. */
lego_status window_get_ints(const op_call *c, const char *name, int n, int64_t def, int64_t min,
                            int64_t *out);

/* Splits a total pad between begin and end: SAME_UPPER puts the odd one at
 * the end, any other mode at the start. */
void window_split_pad(window_pad mode, int64_t total, int64_t *pb, int64_t *pe);

/* The output size out and the pads applied before (pb) and after (pe) the
 * input in (H,W), per axis. With SAME_* the output is ceil(in / stride) and
 * the pads are what that needs; otherwise the pads are w->pads (none for
 * VALID) and out counts the windows that fit, ceil_mode letting the last one
 * hang over the end padding as long as it starts inside the input or the
 * leading padding. Fails when an axis has no window; `kernel` names the
 * window in that message ("kernel", "dilated kernel"). */
lego_status window_output(const op_call *c, const window *w, const int64_t in[2],
                          const char *kernel, int64_t out[2], int64_t pb[2], int64_t pe[2]);

#endif
