/* resize.c - Resize (opset 11+), modes nearest (any rank, any element type)
 * and linear (float32, on the last two axes: bilinear for NCHW).
 *
 * Each output coordinate maps back to an input coordinate through the
 * coordinate_transformation_mode, with `scale` = the given scale, or
 * out/in when sizes are given, as the ONNX spec says; nearest then rounds
 * by nearest_mode and linear blends the two neighbours. PyTorch exports
 * F.interpolate as nearest + asymmetric + floor, or linear + half_pixel /
 * pytorch_half_pixel / align_corners. Backward (float32) scatters each
 * output's gradient back to the input elements it was read from, with the
 * same weights. */
#include <math.h>
#include <string.h>

#include "op.h"

enum { RS_NEAREST, RS_LINEAR };
enum { CTM_HALF_PIXEL, CTM_PYTORCH_HALF_PIXEL, CTM_ALIGN_CORNERS, CTM_ASYMMETRIC, CTM_TF_HALF_NN };
enum { NN_ROUND_PREFER_FLOOR, NN_ROUND_PREFER_CEIL, NN_FLOOR, NN_CEIL };

typedef struct resize_params {
    int mode, ctm, nearest;
    double scale[LEGO_MAX_RANK];
} resize_params;

/* Index of `s` in the NULL-terminated `names`, or -1. */
static int lookup(const char *s, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* A resize input counts only when present and non-empty (exporters pass
 * empty tensors for "not given"). */
static const lego_tensor *given(const op_call *c, int i)
{
    const lego_tensor *t = op_input(c, i);
    return t && lego_tensor_numel(t) > 0 ? t : NULL;
}

static lego_status parse_attrs(op_call *c, resize_params *p)
{
    static const char *const modes[] = {"nearest", "linear", NULL};
    static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                       "asymmetric", "tf_half_pixel_for_nn", NULL};
    static const char *const nns[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                      "ceil", NULL};
    const char *mode, *ctm, *nn, *policy;
    LEGO_TRY(attr_get_string(c->attrs, "mode", "nearest", &mode));
    LEGO_TRY(attr_get_string(c->attrs, "coordinate_transformation_mode", "half_pixel", &ctm));
    LEGO_TRY(attr_get_string(c->attrs, "nearest_mode", "round_prefer_floor", &nn));
    LEGO_TRY(attr_get_string(c->attrs, "keep_aspect_ratio_policy", "stretch", &policy));
    if ((p->mode = lookup(mode, modes)) < 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "mode '%s' is not supported (nearest, linear)",
                        mode);
    if ((p->ctm = lookup(ctm, ctms)) < 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED,
                        "coordinate_transformation_mode '%s' is not supported", ctm);
    if ((p->nearest = lookup(nn, nns)) < 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "nearest_mode '%s' is not supported", nn);
    int64_t antialias;
    LEGO_TRY(attr_get_int(c->attrs, "antialias", 0, &antialias));
    if (antialias)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "antialias is not supported");
    if (attr_find(c->attrs, "axes"))
        return op_error(c, LEGO_ERR_UNSUPPORTED, "attribute 'axes' is not supported");
    if (strcmp(policy, "stretch") != 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "keep_aspect_ratio_policy '%s' is not supported",
                        policy);
    return lego_ok();
}

static lego_status resize_prepare(op_call *c)
{
    resize_params *p = c->params;
    memset(p, 0, sizeof *p);
    if (c->opset < 11)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "Resize before opset 11 is not supported");
    LEGO_TRY(parse_attrs(c, p));
    const lego_tensor *x = c->in[0];
    if (p->mode == RS_LINEAR && x->dtype != LEGO_F32)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "linear resize of %s; only float32",
                        dtype_name(x->dtype));
    if (lego_dtype_size(x->dtype) == 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "input has unsupported dtype %s",
                        dtype_name(x->dtype));
    if (x->rank == 0)
        return op_error(c, LEGO_ERR_SHAPE, "input is a scalar");

    const lego_tensor *scales = given(c, 2), *sizes = given(c, 3);
    if (scales && sizes)
        return op_error(c, LEGO_ERR_FORMAT, "scales and sizes are both given; give one");
    if (!scales && !sizes)
        return op_error(c, LEGO_ERR_FORMAT, "neither scales nor sizes is given");
    const lego_tensor *src = scales ? scales : sizes;
    const char *what = scales ? "scales" : "sizes";
    if (!src->data)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "%s must be a constant known at load", what);
    if (src->dtype != (scales ? LEGO_F32 : LEGO_I64))
        return op_error(c, LEGO_ERR_SHAPE, "%s is %s, expected %s", what, dtype_name(src->dtype),
                        scales ? "float32" : "int64");
    if (src->rank != 1 || src->dims[0] != x->rank)
        return op_error(c, LEGO_ERR_SHAPE, "%s has %lld values for an input of rank %d", what,
                        (long long)lego_tensor_numel(src), x->rank);

    int64_t dims[LEGO_MAX_RANK];
    for (int d = 0; d < x->rank; d++) {
        int64_t in = x->dims[d];
        if (scales) {
            float s = ((const float *)scales->data)[d];
            if (!(s > 0) || !isfinite(s))
                return op_error(c, LEGO_ERR_SHAPE, "scale %g for axis %d is not positive", s, d);
            p->scale[d] = s;
            dims[d] = (int64_t)floor((double)in * s);
        } else {
            dims[d] = ((const int64_t *)sizes->data)[d];
            if (dims[d] < 0)
                return op_error(c, LEGO_ERR_SHAPE, "size %lld for axis %d is negative",
                                (long long)dims[d], d);
            p->scale[d] = in > 0 ? (double)dims[d] / (double)in : 1.0;
        }
        if (in == 0 && dims[d] > 0)
            return op_error(c, LEGO_ERR_SHAPE, "cannot resize axis %d of size 0 to %lld", d,
                            (long long)dims[d]);
        /* linear blends along the last two axes only; the others must
         * map each index to itself */
        if (p->mode == RS_LINEAR && d < x->rank - 2 && p->scale[d] != 1.0 &&
            !(in == 1 && dims[d] == 1))
            return op_error(c, LEGO_ERR_UNSUPPORTED,
                            "linear resize of axis %d (scale %g); only the last two axes may "
                            "be resized",
                            d, p->scale[d]);
    }
    tensor_set_shape(c->out[0], x->dtype, x->rank, dims);
    return lego_ok();
}

/* The input coordinate that output index i of axis d maps to. */
static double source_coord(const resize_params *p, int d, int64_t i, int64_t in, int64_t out)
{
    double s = p->scale[d], xi = (double)i;
    switch (p->ctm) {
    case CTM_HALF_PIXEL: return (xi + 0.5) / s - 0.5;
    case CTM_PYTORCH_HALF_PIXEL: return out > 1 ? (xi + 0.5) / s - 0.5 : 0.0;
    case CTM_ALIGN_CORNERS: return out > 1 ? xi * (double)(in - 1) / (double)(out - 1) : 0.0;
    case CTM_ASYMMETRIC: return xi / s;
    default: return (xi + 0.5) / s; /* tf_half_pixel_for_nn */
    }
}

static int64_t nearest_index(const resize_params *p, int d, int64_t i, int64_t in, int64_t out)
{
    double x = source_coord(p, d, i, in, out), f = floor(x), r;
    switch (p->nearest) {
    case NN_ROUND_PREFER_FLOOR: r = x - f == 0.5 ? f : round(x); break;
    case NN_ROUND_PREFER_CEIL: r = x - f == 0.5 ? f + 1 : round(x); break;
    case NN_FLOOR: r = f; break;
    default: r = ceil(x); break;
    }
    /* clamp as a double: the cast of an out-of-range double is undefined */
    if (r < 0)
        r = 0;
    if (r > (double)(in - 1))
        r = (double)(in - 1);
    return (int64_t)r;
}

/* y[i] = x[nearest(i)] along every axis; any rank, any element size */
static void nearest_forward(const op_call *c)
{
    const resize_params *p = c->params;
    const lego_tensor *x = c->in[0], *y = c->out[0];
    size_t es = lego_dtype_size(x->dtype);
    int r = y->rank, last = r - 1;
    int64_t xs[LEGO_MAX_RANK];
    tensor_strides(x, xs);
    int64_t len = y->dims[last], rows = 1;
    for (int d = 0; d < last; d++)
        rows *= y->dims[d];
    if (len == 0 || rows == 0)
        return;
    const char *xd = x->data;
    char *yd = y->data;
    int64_t idx[LEGO_MAX_RANK] = {0};
    for (int64_t row = 0; row < rows; row++) {
        int64_t base = 0;
        for (int d = 0; d < last; d++)
            base += nearest_index(p, d, idx[d], x->dims[d], y->dims[d]) * xs[d];
        char *dst = yd + row * len * (int64_t)es;
        for (int64_t j = 0; j < len; j++) {
            int64_t s = nearest_index(p, last, j, x->dims[last], len);
            memcpy(dst + j * (int64_t)es, xd + (base + s) * (int64_t)es, es);
        }
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < y->dims[d])
                break;
            idx[d] = 0;
        }
    }
}

/* The two neighbours of output index i along axis d and the weight of the
 * second. Clamping the coordinate first gives the spec's edge padding. */
static void linear_taps(const resize_params *p, int d, int64_t i, int64_t in, int64_t out,
                        int64_t *i0, int64_t *i1, float *w)
{
    double x = source_coord(p, d, i, in, out);
    if (x < 0)
        x = 0;
    if (x > (double)(in - 1))
        x = (double)(in - 1);
    *i0 = (int64_t)x;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *w = (float)(x - (double)*i0);
}

/* x [outer, H, W] -> y [outer, OH, OW], bilinear; rank 1 is [1, W] */
static void linear_forward(const op_call *c)
{
    const resize_params *p = c->params;
    const lego_tensor *x = c->in[0], *y = c->out[0];
    int r = x->rank, dw = r - 1, dh = r - 2;
    int64_t H = r >= 2 ? x->dims[dh] : 1, W = x->dims[dw];
    int64_t OH = r >= 2 ? y->dims[dh] : 1, OW = y->dims[dw];
    int64_t outer = 1;
    for (int d = 0; d < r - 2; d++)
        outer *= y->dims[d];
    const float *xd = x->data;
    float *yd = y->data;
    for (int64_t o = 0; o < outer; o++) {
        const float *plane = xd + o * H * W;
        for (int64_t oy = 0; oy < OH; oy++) {
            int64_t y0 = 0, y1 = 0;
            float wy = 0;
            if (r >= 2)
                linear_taps(p, dh, oy, H, OH, &y0, &y1, &wy);
            const float *r0 = plane + y0 * W, *r1 = plane + y1 * W;
            float *dst = yd + (o * OH + oy) * OW;
            for (int64_t ox = 0; ox < OW; ox++) {
                int64_t x0, x1;
                float wx;
                linear_taps(p, dw, ox, W, OW, &x0, &x1, &wx);
                float top = r0[x0] + wx * (r0[x1] - r0[x0]);
                float bot = r1[x0] + wx * (r1[x1] - r1[x0]);
                dst[ox] = top + wy * (bot - top);
            }
        }
    }
}

/* nearest backward, float32: dx[nearest(i)] += dy[i]; an input element
 * picked by several outputs (upsampling) receives them all. */
static void nearest_backward(const op_call *c, const float *g, float *dx)
{
    const resize_params *p = c->params;
    const lego_tensor *x = c->in[0], *y = c->out[0];
    int r = y->rank, last = r - 1;
    int64_t xs[LEGO_MAX_RANK];
    tensor_strides(x, xs);
    int64_t len = y->dims[last], rows = 1;
    for (int d = 0; d < last; d++)
        rows *= y->dims[d];
    if (len == 0 || rows == 0)
        return;
    int64_t idx[LEGO_MAX_RANK] = {0};
    for (int64_t row = 0; row < rows; row++) {
        int64_t base = 0;
        for (int d = 0; d < last; d++)
            base += nearest_index(p, d, idx[d], x->dims[d], y->dims[d]) * xs[d];
        const float *src = g + row * len;
        for (int64_t j = 0; j < len; j++)
            dx[base + nearest_index(p, last, j, x->dims[last], len)] += src[j];
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < y->dims[d])
                break;
            idx[d] = 0;
        }
    }
}

/* linear backward: each dy element goes to its four taps with the bilinear
 * weights (1-wy)(1-wx), (1-wy)wx, wy(1-wx), wy wx; taps clamped onto the same
 * element at an edge add up there. */
static void linear_backward(const op_call *c, const float *g, float *dx)
{
    const resize_params *p = c->params;
    const lego_tensor *x = c->in[0], *y = c->out[0];
    int r = x->rank, dw = r - 1, dh = r - 2;
    int64_t H = r >= 2 ? x->dims[dh] : 1, W = x->dims[dw];
    int64_t OH = r >= 2 ? y->dims[dh] : 1, OW = y->dims[dw];
    int64_t outer = 1;
    for (int d = 0; d < r - 2; d++)
        outer *= y->dims[d];
    for (int64_t o = 0; o < outer; o++) {
        float *plane = dx + o * H * W;
        for (int64_t oy = 0; oy < OH; oy++) {
            int64_t y0 = 0, y1 = 0;
            float wy = 0;
            if (r >= 2)
                linear_taps(p, dh, oy, H, OH, &y0, &y1, &wy);
            float *r0 = plane + y0 * W, *r1 = plane + y1 * W;
            const float *src = g + (o * OH + oy) * OW;
            for (int64_t ox = 0; ox < OW; ox++) {
                int64_t x0, x1;
                float wx;
                linear_taps(p, dw, ox, W, OW, &x0, &x1, &wx);
                float top = src[ox] * (1.0f - wy), bot = src[ox] * wy;
                r0[x0] += top * (1.0f - wx);
                r0[x1] += top * wx;
                r1[x0] += bot * (1.0f - wx);
                r1[x1] += bot * wx;
            }
        }
    }
}

/* float32 only; roi, scales and sizes take no gradient. */
static void resize_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const resize_params *p = c->params;
    if (!dout[0] || !din[0] || c->out[0]->dtype != LEGO_F32)
        return;
    if (p->mode == RS_LINEAR)
        linear_backward(c, dout[0]->data, din[0]->data);
    else
        nearest_backward(c, dout[0]->data, din[0]->data);
}

static void resize_forward(const op_call *c)
{
    const resize_params *p = c->params;
    if (p->mode == RS_LINEAR)
        linear_forward(c);
    else
        nearest_forward(c);
}

const op_desc op_desc_Resize = {.name = "Resize", .min_in = 1, .max_in = 4, .min_out = 1,
                                .max_out = 1, .params_size = sizeof(resize_params),
                                .const_inputs = (1u << 2) | (1u << 3),
                                .prepare = resize_prepare, .forward = resize_forward,
                                .backward = resize_backward};
