/* data_internal.h - what the data layer's files share: one opener per
 * dataset format, image decoding, bilinear resizing and small file helpers.
 * Not for use outside src/data/. */
#ifndef LEGO_DATA_INTERNAL_H
#define LEGO_DATA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "data/dataset.h"

/* ---- formats (each fills out->n, c, h, w, num_classes, images, labels and
 * honours opts->max_samples; dataset_open does the rest) ---- */

/* known_classes > 0 fixes the class count (fashion-mnist: 10); 0 infers it
 * from the train labels. hint, if not NULL, is appended to "not found". */
lego_status idx_open(const char *dir, data_split split, const dataset_opts *opts,
                     int known_classes, const char *hint, dataset *out);
/* classes is 10 (CIFAR-10 layout) or 100 (CIFAR-100 layout). */
lego_status cifar_open(const char *dir, int classes, data_split split, const dataset_opts *opts,
                       dataset *out);
/* Resizes at decode time when opts->resize_h/w are set. */
lego_status folder_open(const char *dir, data_split split, const dataset_opts *opts,
                        dataset *out);

/* ---- images ---- */

typedef struct image_info {
    int w, h;
    bool gray; /* stored as gray (with or without alpha) */
} image_info;

/* Read only the header of a PNG or JPEG (told apart by content, not name). */
lego_status image_probe(const char *path, image_info *info);
/* Decode to *pixels (malloc'd, h*w*channels bytes, interleaved HWC) with
 * channels 1 (gray) or 3 (RGB); alpha is dropped. */
lego_status image_decode(const char *path, int channels, uint8_t **pixels, image_info *info);

/* ---- bilinear resizing, PyTorch's F.interpolate(mode="bilinear",
 * align_corners=False) without antialiasing ---- */

/* For each output index o: the source pixels lo[o], hi[o] and the weight
 * frac[o] of hi. */
void bilinear_axis(int in, int out, int32_t *lo, int32_t *hi, float *frac);
/* Planar (c, h, w) -> (c, oh, ow), rounding to the nearest byte. */
lego_status resize_u8(const uint8_t *src, int c, int h, int w, uint8_t *dst, int oh, int ow);

/* ---- files ---- */

/* "a/b" in a malloc'd string (NULL when out of memory). */
char *path_join(const char *a, const char *b);
bool path_is_file(const char *path);
bool path_is_dir(const char *path);
/* gzopen for reading (plain files pass through), with a clear error. */
lego_status gz_open(const char *path, gzFile *f);
/* Read up to len bytes; *got says how many arrived. A short read is not an
 * error (the caller words "truncated"); corrupt compressed data is. */
lego_status gz_read(gzFile f, const char *path, void *buf, size_t len, size_t *got);
/* Largest pixel count of one image we accept: keeps n*c*h*w far from overflow. */
#define DATA_MAX_PIXELS ((int64_t)1 << 28)

#endif
