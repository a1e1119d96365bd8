/* cifar.c - the CIFAR-10 and CIFAR-100 binary versions.
 *
 * A file is a run of fixed-size records: the label byte(s), then 3072 pixel
 * bytes already planar (1024 R, 1024 G, 1024 B of a 32x32 image), so a record
 * copies straight into the NCHW array. CIFAR-100 stores a coarse and a fine
 * label; the fine one (100 classes) is the usual task. */
#include "data/data_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CIFAR_PIXELS = 3 * 32 * 32 };

/* Append the records of one file, up to `keep` samples in all. */
static lego_status read_file(const char *path, int classes, int64_t keep, dataset *d,
                             int64_t *cap)
{
    int label_bytes = classes == 10 ? 1 : 2;
    size_t rec = (size_t)label_bytes + CIFAR_PIXELS;
    uint8_t buf[2 + CIFAR_PIXELS];
    gzFile f;
    LEGO_TRY(gz_open(path, &f));
    lego_status st = lego_ok();
    for (int64_t r = 0; d->n < keep; r++) {
        size_t got;
        st = gz_read(f, path, buf, rec, &got);
        if (st.code != LEGO_OK)
            break;
        if (got == 0) {
            if (r == 0)
                st = lego_error(LEGO_ERR_FORMAT, "%s: empty: no %zu-byte records", path, rec);
            break;
        }
        if (got < rec) {
            st = lego_error(LEGO_ERR_FORMAT,
                            "%s: truncated: record %lld has %zu of %zu bytes", path,
                            (long long)r, got, rec);
            break;
        }
        int label = buf[label_bytes - 1];
        if (label >= classes) {
            st = lego_error(LEGO_ERR_FORMAT,
                            "%s: label %d at index %lld is out of range for %d classes", path,
                            label, (long long)r, classes);
            break;
        }
        if (d->n == *cap) {
            int64_t nc = *cap ? *cap * 2 : 10000;
            uint8_t *img = realloc(d->images, (size_t)nc * CIFAR_PIXELS);
            if (img)
                d->images = img;
            int32_t *lab = img ? realloc(d->labels, sizeof(int32_t) * (size_t)nc) : NULL;
            if (lab)
                d->labels = lab;
            if (!img || !lab) {
                st = lego_error(LEGO_ERR_NOMEM, "%s: out of memory after %lld records", path,
                                (long long)d->n);
                break;
            }
            *cap = nc;
        }
        memcpy(d->images + (size_t)d->n * CIFAR_PIXELS, buf + label_bytes, CIFAR_PIXELS);
        d->labels[d->n++] = label;
    }
    gzclose(f);
    return st;
}

lego_status cifar_open(const char *dir, int classes, data_split split, const dataset_opts *opts,
                       dataset *out)
{
    char names[5][32];
    int nfiles = 0;
    if (classes == 10 && split == SPLIT_TRAIN) {
        for (int i = 0; i < 5; i++)
            snprintf(names[nfiles++], sizeof names[0], "data_batch_%d.bin", i + 1);
    } else {
        snprintf(names[nfiles++], sizeof names[0], "%s",
                 classes == 10 ? "test_batch.bin" : split == SPLIT_TRAIN ? "train.bin" : "test.bin");
    }
    char *paths[5] = {0};
    lego_status st = lego_ok();
    /* All files must be there even when max_samples stops early: a missing
     * batch would otherwise silently drop a fifth of the training set. */
    for (int i = 0; i < nfiles && st.code == LEGO_OK; i++) {
        paths[i] = path_join(dir, names[i]);
        if (!paths[i])
            st = lego_error(LEGO_ERR_NOMEM, "out of memory");
        else if (!path_is_file(paths[i]))
            st = lego_error(LEGO_ERR_IO, "%s: not found (CIFAR-%d %s split)", paths[i], classes,
                            split == SPLIT_TRAIN ? "train" : "test");
    }
    int64_t keep = opts->max_samples > 0 ? opts->max_samples : INT64_MAX, cap = 0;
    for (int i = 0; i < nfiles && st.code == LEGO_OK && out->n < keep; i++)
        st = read_file(paths[i], classes, keep, out, &cap);
    for (int i = 0; i < nfiles; i++)
        free(paths[i]);
    if (st.code == LEGO_OK) {
        out->c = 3;
        out->h = 32;
        out->w = 32;
        out->num_classes = classes;
    }
    return st;
}
