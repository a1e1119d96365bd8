/* conv.c - Conv and ConvTranspose over NCHW tensors (2-D only).
 *
 * Both lower to GEMM per image and group. Conv gathers input patches into
 * columns (im2col) and multiplies the weight by them; ConvTranspose multiplies
 * the transposed weight by the input and scatters the columns back into the
 * output (col2im). The column buffer is tiled over spatial positions so that
 * its size stays under COL_BUDGET whatever the feature map. A 1x1 kernel with
 * stride 1 and no padding needs no columns at all: the input is the matrix. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "op.h"

#define COL_BUDGET ((int64_t)8 << 20) /* bytes of column scratch per call */

typedef enum auto_pad { PAD_NOTSET, PAD_SAME_UPPER, PAD_SAME_LOWER, PAD_VALID } auto_pad;

/* Attributes shared by Conv and ConvTranspose, after defaults. */
typedef struct conv_attrs {
    auto_pad pad_mode;
    int64_t stride[2], dilation[2];
    int64_t pads[4]; /* top, left, bottom, right */
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

static const lego_tensor *input(const op_call *c, int i)
{
    return i < c->n_in ? c->in[i] : NULL;
}

static lego_status get_auto_pad(const op_call *c, auto_pad *out)
{
    const char *s;
    LEGO_TRY(attr_get_string(c->attrs, "auto_pad", "NOTSET", &s));
    if (strcmp(s, "NOTSET") == 0)
        *out = PAD_NOTSET;
    else if (strcmp(s, "SAME_UPPER") == 0)
        *out = PAD_SAME_UPPER;
    else if (strcmp(s, "SAME_LOWER") == 0)
        *out = PAD_SAME_LOWER;
    else if (strcmp(s, "VALID") == 0)
        *out = PAD_VALID;
    else
        return op_error(c, LEGO_ERR_FORMAT,
                        "auto_pad is '%s', expected NOTSET, SAME_UPPER, SAME_LOWER or VALID", s);
    return lego_ok();
}

/* An ints attribute of exactly n values, each at least min; def fills it when absent. */
static lego_status get_ints_n(const op_call *c, const char *name, int n, int64_t def, int64_t min,
                              int64_t *out)
{
    const int64_t *v = NULL;
    int nv = 0;
    for (int i = 0; i < n; i++)
        out[i] = def;
    LEGO_TRY(attr_get_ints(c->attrs, name, &v, &nv));
    if (!v)
        return lego_ok();
    if (nv != n)
        return op_error(c, LEGO_ERR_FORMAT, "%s has %d values, expected %d", name, nv, n);
    for (int i = 0; i < n; i++) {
        if (v[i] < min)
            return op_error(c, LEGO_ERR_FORMAT, "%s[%d] is %lld, must be at least %lld", name, i,
                            (long long)v[i], (long long)min);
        out[i] = v[i];
    }
    return lego_ok();
}

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
    LEGO_TRY(get_ints_n(c, "kernel_shape", 2, 0, 1, ks));
    if (attr_find(c->attrs, "kernel_shape") && (ks[0] != w->dims[2] || ks[1] != w->dims[3]))
        return op_error(c, LEGO_ERR_SHAPE, "kernel_shape is %lldx%lld but the weight is %lldx%lld",
                        (long long)ks[0], (long long)ks[1], (long long)w->dims[2],
                        (long long)w->dims[3]);
    LEGO_TRY(get_auto_pad(c, &a->pad_mode));
    LEGO_TRY(get_ints_n(c, "strides", 2, 1, 1, a->stride));
    LEGO_TRY(get_ints_n(c, "dilations", 2, 1, 1, a->dilation));
    /* pads give way to a set auto_pad (ONNX forbids both; onnxruntime ignores pads) */
    LEGO_TRY(get_ints_n(c, "pads", 4, 0, 0, a->pads));
    LEGO_TRY(attr_get_int(c->attrs, "group", 1, &a->group));
    if (a->group < 1)
        return op_error(c, LEGO_ERR_FORMAT, "group is %lld, must be at least 1",
                        (long long)a->group);
    return lego_ok();
}

static lego_status check_bias(const op_call *c, int64_t m)
{
    const lego_tensor *b = input(c, 2);
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

    int64_t in[2] = {x->dims[2], x->dims[3]}, k[2] = {w->dims[2], w->dims[3]};
    int64_t out[2], pb[2], pe[2], dk[2];
    for (int i = 0; i < 2; i++) {
        int64_t s = a.stride[i];
        dk[i] = (k[i] - 1) * a.dilation[i] + 1;
        if (a.pad_mode == PAD_SAME_UPPER || a.pad_mode == PAD_SAME_LOWER) {
            out[i] = (in[i] + s - 1) / s;
            int64_t total = (out[i] - 1) * s + dk[i] - in[i];
            if (total < 0)
                total = 0;
            /* SAME_UPPER puts the odd pad at the end, SAME_LOWER at the start */
            pb[i] = a.pad_mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
            pe[i] = total - pb[i];
        } else {
            pb[i] = a.pad_mode == PAD_VALID ? 0 : a.pads[i];
            pe[i] = a.pad_mode == PAD_VALID ? 0 : a.pads[i + 2];
            int64_t span = in[i] + pb[i] + pe[i];
            out[i] = span >= dk[i] ? (span - dk[i]) / s + 1 : 0;
        }
    }
    if (out[0] < 1 || out[1] < 1)
        return op_error(c, LEGO_ERR_SHAPE,
                        "input %lldx%lld padded by [%lld,%lld,%lld,%lld] is smaller than the "
                        "dilated kernel %lldx%lld",
                        (long long)in[0], (long long)in[1], (long long)pb[0], (long long)pb[1],
                        (long long)pe[0], (long long)pe[1], (long long)dk[0], (long long)dk[1]);

    *p = (conv_params){.n = x->dims[0], .c = cin, .h = in[0], .w = in[1], .m = m,
                       .ho = out[0], .wo = out[1], .kh = k[0], .kw = k[1],
                       .sh = a.stride[0], .sw = a.stride[1], .dh = a.dilation[0],
                       .dw = a.dilation[1], .pad_t = pb[0], .pad_l = pb[1], .group = a.group};
    p->direct = k[0] == 1 && k[1] == 1 && p->sh == 1 && p->sw == 1 && pb[0] == 0 && pb[1] == 0 &&
                pe[0] == 0 && pe[1] == 0;
    p->tile = tile_for(cin / a.group * k[0] * k[1], out[0] * out[1]);
    int64_t dims[4] = {p->n, m, out[0], out[1]};
    tensor_set_shape(c->out[0], LEGO_F32, 4, dims);
    return lego_ok();
}

/* The output spatial size of ConvTranspose on one axis, and its pads.
 * With output_shape or SAME_*, pads come from the ONNX formula
 *   total = stride*(in-1) + output_padding + dilated_kernel - out,
 * split with the odd one at the end for SAME_UPPER and at the start
 * otherwise (the ONNX spec and reference; onnxruntime splits NOTSET the other
 * way). A negative total (an output larger than the kernel reaches) becomes
 * extra rows at the end that only receive the bias. */
static void convt_axis(const conv_attrs *a, int i, int64_t in, int64_t k, int64_t outpad,
                       int64_t want, int64_t *pb, int64_t *pe, int64_t *out)
{
    int64_t full = a->stride[i] * (in - 1) + outpad + (k - 1) * a->dilation[i] + 1;
    if (want <= 0 && (a->pad_mode == PAD_SAME_UPPER || a->pad_mode == PAD_SAME_LOWER))
        want = in * a->stride[i];
    if (want > 0) {
        int64_t total = full - want;
        if (total < 0) {
            *pb = 0;
            *pe = total;
        } else {
            *pb = a->pad_mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
            *pe = total - *pb;
        }
        *out = want;
        return;
    }
    *pb = a->pad_mode == PAD_VALID ? 0 : a->pads[i];
    *pe = a->pad_mode == PAD_VALID ? 0 : a->pads[i + 2];
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
    LEGO_TRY(get_ints_n(c, "output_padding", 2, 0, 0, outpad));
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
    int64_t in[2] = {x->dims[2], x->dims[3]}, k[2] = {w->dims[2], w->dims[3]};
    int64_t out[2], pb[2], pe[2];
    for (int i = 0; i < 2; i++)
        convt_axis(&a, i, in[i], k[i], outpad[i], want[i], &pb[i], &pe[i], &out[i]);
    if (out[0] < 1 || out[1] < 1)
        return op_error(c, LEGO_ERR_SHAPE,
                        "pads [%lld,%lld,%lld,%lld] leave an empty output (%lldx%lld) for input "
                        "%lldx%lld",
                        (long long)pb[0], (long long)pb[1], (long long)pe[0], (long long)pe[1],
                        (long long)out[0], (long long)out[1], (long long)in[0], (long long)in[1]);

    *p = (conv_params){.n = x->dims[0], .c = cin, .h = in[0], .w = in[1], .m = m,
                       .ho = out[0], .wo = out[1], .kh = k[0], .kw = k[1],
                       .sh = a.stride[0], .sw = a.stride[1], .dh = a.dilation[0],
                       .dw = a.dilation[1], .pad_t = pb[0], .pad_l = pb[1], .group = a.group};
    p->direct = k[0] == 1 && k[1] == 1 && p->sh == 1 && p->sw == 1 && pb[0] == 0 && pb[1] == 0 &&
                out[0] == in[0] && out[1] == in[1];
    p->tile = tile_for(w->dims[1] * k[0] * k[1], in[0] * in[1]);
    int64_t dims[4] = {p->n, m, out[0], out[1]};
    tensor_set_shape(c->out[0], LEGO_F32, 4, dims);
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

/* x is one group of one image, (C/group,H,W); col is (C/group*kh*kw, nt):
 * column j holds the patch under output position p0+j (row-major in Ho x Wo),
 * zero where it reaches into the padding. */
static void im2col(const conv_params *p, const float *x, int64_t p0, int64_t nt, float *col)
{
    int64_t cg = p->c / p->group;
    for (int64_t ch = 0; ch < cg; ch++) {
        const float *xc = x + ch * p->h * p->w;
        for (int64_t ki = 0; ki < p->kh; ki++) {
            for (int64_t kj = 0; kj < p->kw; kj++) {
                float *row = col + ((ch * p->kh + ki) * p->kw + kj) * nt;
                int64_t oh = p0 / p->wo, ow = p0 % p->wo;
                for (int64_t j = 0; j < nt; j++) {
                    int64_t ih = oh * p->sh - p->pad_t + ki * p->dh;
                    int64_t iw = ow * p->sw - p->pad_l + kj * p->dw;
                    row[j] = ih >= 0 && ih < p->h && iw >= 0 && iw < p->w ? xc[ih * p->w + iw] : 0.0f;
                    if (++ow == p->wo) {
                        ow = 0;
                        oh++;
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
    const lego_tensor *bt = input(c, 2);
    float *y = c->out[0]->data;
    int64_t cg = p->c / p->group, mg = p->m / p->group;
    int64_t kdim = cg * p->kh * p->kw, ipix = p->h * p->w, opix = p->ho * p->wo;
    float *col = NULL;
    if (!p->direct) {
        col = malloc((size_t)(kdim * p->tile) * sizeof(float));
        if (!col) {
            fill_nan(c);
            return;
        }
    }
    fill_bias(p, bt ? bt->data : NULL, y);
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
                im2col(p, xg, p0, nt, col);
                lego_sgemm(0, 0, mg, nt, kdim, 1.0f, wg, kdim, col, nt, 1.0f, yg + p0, opix);
            }
        }
    }
    free(col);
}

/* col is (M/group*kh*kw, nt) for input positions p0.. (row-major in H x W);
 * y is one group of one image, (M/group,Ho,Wo). Each column entry lands on
 * the output pixel its kernel tap reaches, if inside. */
static void col2im(const conv_params *p, const float *col, int64_t p0, int64_t nt, float *y)
{
    int64_t mg = p->m / p->group;
    for (int64_t m = 0; m < mg; m++) {
        float *ym = y + m * p->ho * p->wo;
        for (int64_t ki = 0; ki < p->kh; ki++) {
            for (int64_t kj = 0; kj < p->kw; kj++) {
                const float *row = col + ((m * p->kh + ki) * p->kw + kj) * nt;
                int64_t ih = p0 / p->w, iw = p0 % p->w;
                for (int64_t j = 0; j < nt; j++) {
                    int64_t oh = ih * p->sh - p->pad_t + ki * p->dh;
                    int64_t ow = iw * p->sw - p->pad_l + kj * p->dw;
                    if (oh >= 0 && oh < p->ho && ow >= 0 && ow < p->wo)
                        ym[oh * p->wo + ow] += row[j];
                    if (++iw == p->w) {
                        iw = 0;
                        ih++;
                    }
                }
            }
        }
    }
}

// x is (N,C,H,W), w is (C,M/group,kh,kw), b is (M) or absent, y is (N,M,Ho,Wo)
static void convt_forward(const op_call *c)
{
    const conv_params *p = c->params;
    const float *x = c->in[0]->data, *w = c->in[1]->data;
    const lego_tensor *bt = input(c, 2);
    float *y = c->out[0]->data;
    int64_t cg = p->c / p->group, mg = p->m / p->group;
    int64_t kdim = mg * p->kh * p->kw, ipix = p->h * p->w, opix = p->ho * p->wo;
    float *col = NULL;
    if (!p->direct) {
        col = malloc((size_t)(kdim * p->tile) * sizeof(float));
        if (!col) {
            fill_nan(c);
            return;
        }
    }
    fill_bias(p, bt ? bt->data : NULL, y);
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
                col2im(p, col, p0, nt, yg);
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
};

const op_desc op_desc_ConvTranspose = {
    .name = "ConvTranspose",
    .min_in = 2, .max_in = 3,
    .min_out = 1, .max_out = 1,
    .params_size = sizeof(conv_params),
    .prepare = convt_prepare,
    .forward = convt_forward,
    .flops = convt_flops,
};
