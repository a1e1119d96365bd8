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
 * side's data, accumulated over the batch. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "blas.h"
#include "op.h"
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
    return lego_ok();
}

/* y is (N,M,Ho,Wo): every channel starts at its bias (or zero). */
static void fill_bias(const conv_params *p, const float *b, float *y)
{
    int64_t plane = p->ho * p->wo;
    for (int64_t i = 0; i < p->n * p->m; i++) {
        float v = b ? b[i % p->m] : 0.0f;
        for (int64_t j = 0; j < plane; j++)
            y[i * plane + j] = v;
    }
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

/* The start of both forwards: y gets the bias, and col (kdim rows by one
 * tile) is allocated unless the op is direct (then NULL). Without memory y
 * is NaN and the forward stops (false). */
static bool begin_forward(const op_call *c, int64_t kdim, float **col)
{
    const conv_params *p = c->params;
    *col = NULL;
    if (!p->direct) {
        *col = malloc((size_t)(kdim * p->tile) * sizeof(float));
        if (!*col) {
            fill_nan(c);
            return false;
        }
    }
    const lego_tensor *bt = op_input(c, 2);
    fill_bias(p, bt ? bt->data : NULL, c->out[0]->data);
    return true;
}

/* The patch geometry both ops share: a kernel tap (ki,kj) at position (r,q)
 * of the "small" map reaches (r*sh - pad_t + ki*dh, q*sw - pad_l + kj*dw) of
 * the "big" map. For Conv the small map is the output and the big one the
 * input; for ConvTranspose it is the other way round. Columns index small
 * positions p0..p0+nt (row-major, small_w wide); rows are (channel,ki,kj). */

/* big is one group of one image, (ch,big_h,big_w); col is (ch*kh*kw, nt):
 * column j holds the patch reached from small position p0+j, zero where it
 * falls outside the big map. */
static void im2col(const conv_params *p, int64_t ch, const float *big, int64_t big_h,
                   int64_t big_w, int64_t small_w, int64_t p0, int64_t nt, float *col)
{
    for (int64_t cc = 0; cc < ch; cc++) {
        const float *bc = big + cc * big_h * big_w;
        for (int64_t ki = 0; ki < p->kh; ki++) {
            for (int64_t kj = 0; kj < p->kw; kj++) {
                float *row = col + ((cc * p->kh + ki) * p->kw + kj) * nt;
                int64_t r = p0 / small_w, q = p0 % small_w;
                for (int64_t j = 0; j < nt; j++) {
                    int64_t bh = r * p->sh - p->pad_t + ki * p->dh;
                    int64_t bw = q * p->sw - p->pad_l + kj * p->dw;
                    row[j] = bh >= 0 && bh < big_h && bw >= 0 && bw < big_w ? bc[bh * big_w + bw]
                                                                           : 0.0f;
                    if (++q == small_w) {
                        q = 0;
                        r++;
                    }
                }
            }
        }
    }
}

/* The adjoint of im2col: each column entry is added to the big-map pixel its
 * tap reaches, if inside. big is (ch,big_h,big_w), col (ch*kh*kw, nt). */
static void col2im(const conv_params *p, int64_t ch, const float *col, int64_t small_w,
                   int64_t p0, int64_t nt, float *big, int64_t big_h, int64_t big_w)
{
    for (int64_t cc = 0; cc < ch; cc++) {
        float *bc = big + cc * big_h * big_w;
        for (int64_t ki = 0; ki < p->kh; ki++) {
            for (int64_t kj = 0; kj < p->kw; kj++) {
                const float *row = col + ((cc * p->kh + ki) * p->kw + kj) * nt;
                int64_t r = p0 / small_w, q = p0 % small_w;
                for (int64_t j = 0; j < nt; j++) {
                    int64_t bh = r * p->sh - p->pad_t + ki * p->dh;
                    int64_t bw = q * p->sw - p->pad_l + kj * p->dw;
                    if (bh >= 0 && bh < big_h && bw >= 0 && bw < big_w)
                        bc[bh * big_w + bw] += row[j];
                    if (++q == small_w) {
                        q = 0;
                        r++;
                    }
                }
            }
        }
    }
}

// x is (N,C,H,W), w is (M,C/group,kh,kw), b is (M) or absent, y is (N,M,Ho,Wo)
static void conv_forward(const op_call *c)
{
    const conv_params *p = c->params;
    const float *x = c->in[0]->data, *w = c->in[1]->data;
    float *y = c->out[0]->data;
    int64_t cg = p->c / p->group, mg = p->m / p->group;
    int64_t kdim = cg * p->kh * p->kw, ipix = p->h * p->w, opix = p->ho * p->wo;
    float *col;
    if (!begin_forward(c, kdim, &col))
        return;
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t g = 0; g < p->group; g++) {
            const float *xg = x + (n * p->c + g * cg) * ipix;
            const float *wg = w + g * mg * kdim;
            float *yg = y + (n * p->m + g * mg) * opix;
            if (p->direct) {
                lego_sgemm(0, 0, mg, opix, kdim, 1.0f, wg, kdim, xg, ipix, 1.0f, yg, opix);
                continue;
            }
            for (int64_t p0 = 0; p0 < opix; p0 += p->tile) {
                int64_t nt = opix - p0 < p->tile ? opix - p0 : p->tile;
                im2col(p, cg, xg, p->h, p->w, p->wo, p0, nt, col);
                lego_sgemm(0, 0, mg, nt, kdim, 1.0f, wg, kdim, col, nt, 1.0f, yg + p0, opix);
            }
        }
    }
    free(col);
}

// x is (N,C,H,W), w is (C,M/group,kh,kw), b is (M) or absent, y is (N,M,Ho,Wo)
static void convt_forward(const op_call *c)
{
    const conv_params *p = c->params;
    const float *x = c->in[0]->data, *w = c->in[1]->data;
    float *y = c->out[0]->data;
    int64_t cg = p->c / p->group, mg = p->m / p->group;
    int64_t kdim = mg * p->kh * p->kw, ipix = p->h * p->w, opix = p->ho * p->wo;
    float *col;
    if (!begin_forward(c, kdim, &col))
        return;
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t g = 0; g < p->group; g++) {
            const float *xg = x + (n * p->c + g * cg) * ipix;
            const float *wg = w + g * cg * kdim; /* (C/group, M/group*kh*kw) */
            float *yg = y + (n * p->m + g * mg) * opix;
            if (p->direct) {
                lego_sgemm(1, 0, mg, ipix, cg, 1.0f, wg, kdim, xg, ipix, 1.0f, yg, opix);
                continue;
            }
            for (int64_t p0 = 0; p0 < ipix; p0 += p->tile) {
                int64_t nt = ipix - p0 < p->tile ? ipix - p0 : p->tile;
                lego_sgemm(1, 0, kdim, nt, cg, 1.0f, wg, kdim, xg + p0, ipix, 0.0f, col, nt);
                col2im(p, mg, col, p->w, p0, nt, yg, p->ho, p->wo);
            }
        }
    }
    free(col);
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

/* db is (M): adds the sum of dy (N,M,Ho,Wo) over N, Ho and Wo. */
static void bias_backward(const conv_params *p, const float *dy, float *db)
{
    int64_t plane = p->ho * p->wo;
    for (int64_t m = 0; m < p->m; m++) {
        double sum = 0;
        for (int64_t n = 0; n < p->n; n++) {
            const float *d = dy + (n * p->m + m) * plane;
            for (int64_t j = 0; j < plane; j++)
                sum += d[j];
        }
        db[m] += (float)sum;
    }
}

/* The start of both backwards: dB, and col (kdim rows by one tile) unless
 * the op is direct. false when there is nothing more to do (no dY, neither
 * dX nor dW asked for, or no memory: then they get NaN). */
static bool begin_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din,
                           int64_t kdim, float **col)
{
    const conv_params *p = c->params;
    *col = NULL;
    if (!dout[0])
        return false;
    if (c->n_in > 2 && din[2])
        bias_backward(p, dout[0]->data, din[2]->data);
    if (!din[0] && !din[1])
        return false;
    if (!p->direct) {
        *col = malloc((size_t)(kdim * p->tile) * sizeof(float));
        if (!*col) {
            poison(din, 2);
            return false;
        }
    }
    return true;
}

/* Conv: y = W·im2col(x) per image and group, so
 *   dW += dY·im2col(x)ᵀ and dX += col2im(Wᵀ·dY).
 * x is (N,C,H,W), w (M,C/group,kh,kw); dy is (N,M,Ho,Wo) and dx, dw, db
 * have the shapes of x, w and b. */
static void conv_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const conv_params *p = c->params;
    int64_t cg = p->c / p->group, mg = p->m / p->group;
    int64_t kdim = cg * p->kh * p->kw, ipix = p->h * p->w, opix = p->ho * p->wo;
    float *col;
    if (!begin_backward(c, dout, din, kdim, &col))
        return;
    const float *x = c->in[0]->data, *w = c->in[1]->data, *dy = dout[0]->data;
    float *dx = din[0] ? din[0]->data : NULL, *dw = din[1] ? din[1]->data : NULL;
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t g = 0; g < p->group; g++) {
            const float *xg = x + (n * p->c + g * cg) * ipix;
            const float *wg = w + g * mg * kdim;
            const float *dyg = dy + (n * p->m + g * mg) * opix;
            float *dxg = dx ? dx + (n * p->c + g * cg) * ipix : NULL;
            float *dwg = dw ? dw + g * mg * kdim : NULL;
            if (p->direct) { /* x is the (C/group, H*W) column matrix itself */
                if (dwg)
                    lego_sgemm(0, 1, mg, kdim, opix, 1.0f, dyg, opix, xg, ipix, 1.0f, dwg, kdim);
                if (dxg)
                    lego_sgemm(1, 0, kdim, opix, mg, 1.0f, wg, kdim, dyg, opix, 1.0f, dxg, ipix);
                continue;
            }
            for (int64_t p0 = 0; p0 < opix; p0 += p->tile) {
                int64_t nt = opix - p0 < p->tile ? opix - p0 : p->tile;
                if (dwg) {
                    im2col(p, cg, xg, p->h, p->w, p->wo, p0, nt, col);
                    lego_sgemm(0, 1, mg, kdim, nt, 1.0f, dyg + p0, opix, col, nt, 1.0f, dwg, kdim);
                }
                if (dxg) {
                    lego_sgemm(1, 0, kdim, nt, mg, 1.0f, wg, kdim, dyg + p0, opix, 0.0f, col, nt);
                    col2im(p, cg, col, p->wo, p0, nt, dxg, p->h, p->w);
                }
            }
        }
    }
    free(col);
}

/* ConvTranspose: y = col2im(Wᵀ·x) per image and group, so with
 * col = im2col(dY) (the adjoint of col2im):
 *   dX += W·col and dW += x·colᵀ.
 * x is (N,C,H,W), w (C,M/group,kh,kw); dy is (N,M,Ho,Wo) and dx, dw, db
 * have the shapes of x, w and b. */
static void convt_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const conv_params *p = c->params;
    int64_t cg = p->c / p->group, mg = p->m / p->group;
    int64_t kdim = mg * p->kh * p->kw, ipix = p->h * p->w, opix = p->ho * p->wo;
    float *col;
    if (!begin_backward(c, dout, din, kdim, &col))
        return;
    const float *x = c->in[0]->data, *w = c->in[1]->data, *dy = dout[0]->data;
    float *dx = din[0] ? din[0]->data : NULL, *dw = din[1] ? din[1]->data : NULL;
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t g = 0; g < p->group; g++) {
            const float *xg = x + (n * p->c + g * cg) * ipix;
            const float *wg = w + g * cg * kdim; /* (C/group, M/group*kh*kw) */
            const float *dyg = dy + (n * p->m + g * mg) * opix;
            float *dxg = dx ? dx + (n * p->c + g * cg) * ipix : NULL;
            float *dwg = dw ? dw + g * cg * kdim : NULL;
            if (p->direct) { /* dY is the (M/group, H*W) column matrix itself */
                if (dxg)
                    lego_sgemm(0, 0, cg, ipix, kdim, 1.0f, wg, kdim, dyg, opix, 1.0f, dxg, ipix);
                if (dwg)
                    lego_sgemm(0, 1, cg, kdim, ipix, 1.0f, xg, ipix, dyg, opix, 1.0f, dwg, kdim);
                continue;
            }
            for (int64_t p0 = 0; p0 < ipix; p0 += p->tile) {
                int64_t nt = ipix - p0 < p->tile ? ipix - p0 : p->tile;
                im2col(p, mg, dyg, p->ho, p->wo, p->w, p0, nt, col);
                if (dxg)
                    lego_sgemm(0, 0, cg, nt, kdim, 1.0f, wg, kdim, col, nt, 1.0f, dxg + p0, ipix);
                if (dwg)
                    lego_sgemm(0, 1, cg, kdim, nt, 1.0f, xg + p0, ipix, col, nt, 1.0f, dwg, kdim);
            }
        }
    }
    free(col);
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
};
