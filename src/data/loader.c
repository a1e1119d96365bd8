/* loader.c - batches of float tensors from a dataset, with augmentation.
 *
 * Randomness is drawn from streams named by (seed, epoch) for the order and
 * (seed, epoch, sample index) for a sample's crop and flip, never from a
 * generator carried across epochs or batches: a run resumed at epoch k, or
 * one with another batch size, sees the same order and the same augmented
 * images. The per-output-pixel resize coordinates are computed once here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/data_internal.h"

/* Stream tags, so the order stream never coincides with a sample's stream. */
#define ORDER_STREAM 0x6f72646572ull /* "order" */
#define AUG_STREAM 0x61756775ull     /* "augu" */

struct loader {
    const dataset *d;
    transform t; /* resolved: no zero sizes */
    int batch;
    bool shuffle, drop_last;
    uint64_t seed;
    int epoch;
    int64_t pos;
    int64_t *order;
    bool same_size; /* no resize: read pixels directly */
    int32_t *ylo, *yhi, *xlo, *xhi;
    float *yf, *xf;
    float scale[4], shift[4]; /* x = pixel * scale + shift */
    float *plane;             /* one source channel as floats (h*w) */
};

lego_status loader_create(const dataset *d, const transform *t, int batch, bool shuffle,
                          bool drop_last, uint64_t seed, loader **out)
{
    *out = NULL;
    if (!d || d->n <= 0 || !d->images || !d->labels)
        return lego_error(LEGO_ERR_ARG, "loader: the dataset is empty");
    const char *name = d->name ? d->name : "dataset";
    if (batch < 1)
        return lego_error(LEGO_ERR_ARG, "%s: batch size %d must be positive", name, batch);
    if (d->c < 1 || d->h < 1 || d->w < 1)
        return lego_error(LEGO_ERR_ARG, "%s: bad image shape %dx%dx%d", name, d->c, d->h, d->w);
    transform r = {0};
    if (t)
        r = *t;
    if (r.out_c == 0)
        r.out_c = d->c;
    if (r.out_h == 0)
        r.out_h = d->h;
    if (r.out_w == 0)
        r.out_w = d->w;
    if (r.out_c < 1 || r.out_c > 4 || r.out_h < 1 || r.out_w < 1 ||
        (int64_t)r.out_h * r.out_w > DATA_MAX_PIXELS)
        return lego_error(LEGO_ERR_ARG, "%s: bad output shape %dx%dx%d (channels 1..4)", name,
                          r.out_c, r.out_h, r.out_w);
    if (!(r.out_c == d->c || d->c == 1 || (d->c == 3 && r.out_c == 1)))
        return lego_error(LEGO_ERR_SHAPE,
                          "%s: cannot turn %d-channel images into %d channels (1 -> N "
                          "replicates, 3 -> 1 takes the luminance)",
                          name, d->c, r.out_c);
    if (r.pad_crop < 0 || r.pad_crop > 65536)
        return lego_error(LEGO_ERR_ARG, "%s: pad_crop %d out of range", name, r.pad_crop);
    bool any = false;
    for (int i = 0; i < 4; i++)
        any |= r.mean[i] != 0 || r.std[i] != 0;
    float scale[4], shift[4];
    for (int i = 0; i < r.out_c; i++) {
        float mean = any ? r.mean[i] : 0, std = any ? r.std[i] : 1;
        if (!isfinite(mean) || !isfinite(std) || std == 0)
            return lego_error(LEGO_ERR_ARG, "%s: channel %d: mean %g, std %g (std must be "
                              "finite and nonzero)", name, i, (double)mean, (double)std);
        scale[i] = 1.0f / (255.0f * std);
        shift[i] = -mean / std;
    }

    loader *l = calloc(1, sizeof *l);
    if (!l)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    l->d = d;
    l->t = r;
    l->batch = batch;
    l->shuffle = shuffle;
    l->drop_last = drop_last;
    l->seed = seed;
    memcpy(l->scale, scale, sizeof scale);
    memcpy(l->shift, shift, sizeof shift);
    l->same_size = r.out_h == d->h && r.out_w == d->w;
    l->order = malloc(sizeof(int64_t) * (size_t)d->n);
    l->ylo = malloc(sizeof(int32_t) * 2 * ((size_t)r.out_h + (size_t)r.out_w));
    l->yf = malloc(sizeof(float) * ((size_t)r.out_h + (size_t)r.out_w));
    l->plane = malloc(sizeof(float) * (size_t)d->h * (size_t)d->w);
    if (!l->order || !l->ylo || !l->yf || !l->plane) {
        loader_free(l);
        return lego_error(LEGO_ERR_NOMEM, "%s: out of memory for the loader", name);
    }
    l->yhi = l->ylo + r.out_h;
    l->xlo = l->yhi + r.out_h;
    l->xhi = l->xlo + r.out_w;
    l->xf = l->yf + r.out_h;
    bilinear_axis(d->h, r.out_h, l->ylo, l->yhi, l->yf);
    bilinear_axis(d->w, r.out_w, l->xlo, l->xhi, l->xf);
    loader_start_epoch(l, 0);
    *out = l;
    return lego_ok();
}

void loader_start_epoch(loader *l, int epoch)
{
    int64_t n = l->d->n;
    l->epoch = epoch;
    l->pos = 0;
    /* Rebuilt from the identity each epoch so it depends on nothing earlier. */
    for (int64_t i = 0; i < n; i++)
        l->order[i] = i;
    if (!l->shuffle)
        return;
    rng r;
    rng_seed(&r, rng_mix(l->seed ^ ORDER_STREAM, (uint64_t)(int64_t)epoch));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t tmp = l->order[i];
        l->order[i] = l->order[j];
        l->order[j] = tmp;
    }
}

/* Source channel for output channel oc, as floats in l->plane. */
static void source_plane(loader *l, const uint8_t *img, int oc)
{
    const dataset *d = l->d;
    size_t hw = (size_t)d->h * d->w;
    float *p = l->plane;
    if (d->c == 3 && l->t.out_c == 1) {
        /* ITU-R 601 luma, as PIL's convert("L") and torchvision's rgb_to_grayscale. */
        for (size_t i = 0; i < hw; i++)
            p[i] = 0.299f * img[i] + 0.587f * img[hw + i] + 0.114f * img[2 * hw + i];
        return;
    }
    const uint8_t *s = img + (d->c == 1 ? 0 : (size_t)oc * hw);
    for (size_t i = 0; i < hw; i++)
        p[i] = s[i];
}

static void fill_sample(loader *l, int64_t idx, float *x)
{
    const dataset *d = l->d;
    const transform *t = &l->t;
    int OH = t->out_h, OW = t->out_w, W = d->w, p = t->pad_crop;
    rng r;
    rng_seed(&r, rng_mix(rng_mix(l->seed ^ AUG_STREAM, (uint64_t)(int64_t)l->epoch),
                         (uint64_t)idx));
    /* Crop offset into the padded image, relative to the unpadded origin. */
    int dy = 0, dx = 0;
    if (p > 0) {
        dy = (int)rng_below(&r, 2 * (uint64_t)p + 1) - p;
        dx = (int)rng_below(&r, 2 * (uint64_t)p + 1) - p;
    }
    bool flip = t->hflip && (rng_next_u64(&r) >> 63);
    const uint8_t *img = d->images + (size_t)idx * d->c * d->h * d->w;
    for (int oc = 0; oc < t->out_c; oc++) {
        /* A replicated gray channel is converted once and reused. */
        if (oc == 0 || d->c != 1)
            source_plane(l, img, oc);
        const float *src = l->plane;
        float a = l->scale[oc], b = l->shift[oc];
        float *o = x + (size_t)oc * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            float *orow = o + (size_t)oy * OW;
            int ry = oy + dy;
            if (ry < 0 || ry >= OH) {
                for (int ox = 0; ox < OW; ox++)
                    orow[ox] = b; /* padding: pixel 0 */
                continue;
            }
            const float *r0 = src + (size_t)l->ylo[ry] * W, *r1 = src + (size_t)l->yhi[ry] * W;
            float h1 = l->yf[ry], h0 = 1.0f - h1;
            for (int ox = 0; ox < OW; ox++) {
                int rx = (flip ? OW - 1 - ox : ox) + dx;
                if (rx < 0 || rx >= OW) {
                    orow[ox] = b;
                    continue;
                }
                float v;
                if (l->same_size) {
                    v = src[(size_t)ry * W + rx];
                } else {
                    int x0 = l->xlo[rx], x1 = l->xhi[rx];
                    float w1 = l->xf[rx], w0 = 1.0f - w1;
                    /* PyTorch's order of operations, to match its values closely. */
                    v = h0 * (w0 * r0[x0] + w1 * r0[x1]) + h1 * (w0 * r1[x0] + w1 * r1[x1]);
                }
                orow[ox] = v * a + b;
            }
        }
    }
}

int64_t loader_next(loader *l, float *x, int32_t *y)
{
    int64_t left = l->d->n - l->pos;
    if (left <= 0)
        return 0;
    int64_t take = left < l->batch ? left : l->batch;
    if (take < l->batch && l->drop_last) {
        l->pos = l->d->n;
        return 0;
    }
    size_t per = (size_t)l->t.out_c * l->t.out_h * l->t.out_w;
    for (int64_t i = 0; i < take; i++) {
        int64_t idx = l->order[l->pos + i];
        fill_sample(l, idx, x + per * (size_t)i);
        if (y)
            y[i] = l->d->labels[idx];
    }
    l->pos += take;
    return take;
}

int64_t loader_batches_per_epoch(const loader *l)
{
    int64_t n = l->d->n;
    return l->drop_last ? n / l->batch : (n + l->batch - 1) / l->batch;
}

void loader_sample_shape(const loader *l, int *c, int *h, int *w)
{
    *c = l->t.out_c;
    *h = l->t.out_h;
    *w = l->t.out_w;
}

void loader_free(loader *l)
{
    if (!l)
        return;
    free(l->order);
    free(l->ylo);
    free(l->yf);
    free(l->plane);
    free(l);
}
