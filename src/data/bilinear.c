/* bilinear.c - bilinear resampling shared by load-time resizing and the
 * loader's transforms. The coordinate mapping is PyTorch's
 * F.interpolate(mode="bilinear", align_corners=False) without antialiasing,
 * so a model trained here sees the same inputs as one trained in PyTorch. */
#include "data/data_internal.h"

#include <stdlib.h>

void bilinear_axis(int in, int out, int32_t *lo, int32_t *hi, float *frac)
{
    /* Computed in float, as PyTorch does for float tensors. */
    float scale = (float)in / (float)out;
    for (int o = 0; o < out; o++) {
        float s = scale * ((float)o + 0.5f) - 0.5f;
        if (s < 0)
            s = 0;
        int i = (int)s;
        if (i > in - 1)
            i = in - 1;
        lo[o] = i;
        hi[o] = i < in - 1 ? i + 1 : i;
        frac[o] = s - (float)i;
    }
}

lego_status resize_u8(const uint8_t *src, int c, int h, int w, uint8_t *dst, int oh, int ow)
{
    int32_t *ylo = malloc(sizeof(int32_t) * 2 * ((size_t)oh + (size_t)ow));
    float *yf = malloc(sizeof(float) * ((size_t)oh + (size_t)ow));
    if (!ylo || !yf) {
        free(ylo);
        free(yf);
        return lego_error(LEGO_ERR_NOMEM, "out of memory resizing %dx%d to %dx%d", h, w, oh, ow);
    }
    int32_t *yhi = ylo + oh, *xlo = yhi + oh, *xhi = xlo + ow;
    float *xf = yf + oh;
    bilinear_axis(h, oh, ylo, yhi, yf);
    bilinear_axis(w, ow, xlo, xhi, xf);
    for (int ch = 0; ch < c; ch++) {
        const uint8_t *p = src + (size_t)ch * h * w;
        uint8_t *q = dst + (size_t)ch * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            const uint8_t *r0 = p + (size_t)ylo[oy] * w, *r1 = p + (size_t)yhi[oy] * w;
            float fy = yf[oy];
            for (int ox = 0; ox < ow; ox++) {
                float fx = xf[ox];
                float top = (float)r0[xlo[ox]] + fx * (float)(r0[xhi[ox]] - r0[xlo[ox]]);
                float bot = (float)r1[xlo[ox]] + fx * (float)(r1[xhi[ox]] - r1[xlo[ox]]);
                float v = top + fy * (bot - top) + 0.5f;
                q[(size_t)oy * ow + ox] = v >= 255.0f ? 255 : v <= 0.0f ? 0 : (uint8_t)v;
            }
        }
    }
    free(ylo);
    free(yf);
    return lego_ok();
}
