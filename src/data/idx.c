/* idx.c - MNIST-style IDX files (images idx3, labels idx1), plain or gzipped.
 *
 * zlib's gzread reads both transparently, so one path serves the .gz files
 * Debian ships and the unpacked ones other distributions use. The class count
 * is fixed for a known dataset, otherwise inferred from the train labels as
 * 0..K-1 with every class present, which exposes a corrupt label (200 in a
 * 10-class file) instead of silently growing the model's output layer. */
#include "data/data_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Read the magic and ndims big-endian dimensions. */
static lego_status read_header(gzFile f, const char *path, int ndims, uint32_t *dims)
{
    uint8_t h[4 + 4 * 3];
    size_t want = 4 + 4 * (size_t)ndims, got;
    LEGO_TRY(gz_read(f, path, h, want, &got));
    uint32_t magic = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    uint32_t expect = 0x800u | (uint32_t)ndims;
    if (got < 4)
        return lego_error(LEGO_ERR_FORMAT, "%s: truncated: %zu bytes, too short for an IDX header",
                          path, got);
    bool idx_type = h[2] == 0x08 || h[2] == 0x09 || (h[2] >= 0x0B && h[2] <= 0x0E);
    if (h[0] == 0 && h[1] == 0 && idx_type && h[3] == ndims && h[2] != 0x08)
        return lego_error(LEGO_ERR_UNSUPPORTED,
                          "%s: IDX data type 0x%02x; only unsigned bytes (0x08) are supported",
                          path, h[2]);
    if (magic != expect)
        return lego_error(LEGO_ERR_FORMAT, "%s: bad magic 0x%08x: not an IDX %s file (expected 0x%08x)",
                          path, magic, ndims == 1 ? "label" : "image", expect);
    if (got < want)
        return lego_error(LEGO_ERR_FORMAT, "%s: truncated: header ends after %zu of %zu bytes",
                          path, got, want);
    for (int i = 0; i < ndims; i++) {
        const uint8_t *d = h + 4 + 4 * i;
        dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
    }
    return lego_ok();
}

/* The first existing spelling of "<prefix>-<kind>-idx<nd>-ubyte": .gz,
 * plain, or the "<kind>.idx" variant some mirrors use. NULL if none. */
static char *find_idx(const char *dir, const char *prefix, const char *kind, int nd)
{
    char name[3][64];
    snprintf(name[0], sizeof name[0], "%s-%s-idx%d-ubyte.gz", prefix, kind, nd);
    snprintf(name[1], sizeof name[1], "%s-%s-idx%d-ubyte", prefix, kind, nd);
    snprintf(name[2], sizeof name[2], "%s-%s.idx%d-ubyte", prefix, kind, nd);
    for (int i = 0; i < 3; i++) {
        char *p = path_join(dir, name[i]);
        if (p && path_is_file(p))
            return p;
        free(p);
    }
    return NULL;
}

static lego_status missing(const char *dir, const char *prefix, const char *kind, int nd,
                           const char *hint)
{
    return lego_error(LEGO_ERR_IO, "%s%s%s-%s-idx%d-ubyte[.gz]: not found%s%s", dir,
                      dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", prefix, kind, nd,
                      hint ? "; " : "", hint ? hint : "");
}

/* A whole labels file into *labels (malloc'd bytes). */
static lego_status read_labels(const char *path, uint8_t **labels, int64_t *n)
{
    *labels = NULL;
    gzFile f;
    LEGO_TRY(gz_open(path, &f));
    uint32_t dims[1] = {0};
    lego_status st = read_header(f, path, 1, dims);
    size_t got = 0;
    if (st.code == LEGO_OK) {
        *n = dims[0];
        *labels = malloc(dims[0] ? dims[0] : 1);
        if (!*labels)
            st = lego_error(LEGO_ERR_NOMEM, "%s: out of memory for %u labels", path, dims[0]);
    }
    if (st.code == LEGO_OK)
        st = gz_read(f, path, *labels, dims[0], &got);
    if (st.code == LEGO_OK && got < dims[0])
        st = lego_error(LEGO_ERR_FORMAT, "%s: truncated: expected %u bytes of labels, got %zu",
                        path, dims[0], got);
    gzclose(f);
    if (st.code != LEGO_OK) {
        free(*labels);
        *labels = NULL;
    }
    return st;
}

/* Classes 0..K-1 with every class present in the (train) labels. A label
 * above a run of unused classes is what a flipped byte looks like. */
static lego_status infer_classes(const char *path, const uint8_t *labels, int64_t n, int *k)
{
    int64_t count[257] = {0};
    for (int64_t i = 0; i < n; i++)
        count[labels[i]]++;
    int K = 0;
    while (K < 256 && count[K] > 0)
        K++;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] >= K) {
            int next = labels[i];
            if (K == 0)
                return lego_error(LEGO_ERR_FORMAT,
                                  "%s: label %d at index %lld: class 0 never occurs, but labels "
                                  "must be 0..K-1",
                                  path, next, (long long)i);
            return lego_error(LEGO_ERR_FORMAT,
                              "%s: label %d at index %lld is out of range: classes 0..%d occur "
                              "but %d..%d never do, so the file looks corrupt",
                              path, next, (long long)i, K - 1, K, next - 1);
        }
    }
    *k = K;
    return lego_ok();
}

static lego_status check_range(const char *path, const uint8_t *labels, int64_t n, int k,
                               const char *source)
{
    for (int64_t i = 0; i < n; i++)
        if (labels[i] >= k)
            return lego_error(LEGO_ERR_FORMAT,
                              "%s: label %d at index %lld is out of range for %d classes%s%s%s",
                              path, labels[i], (long long)i, k,
                              source ? " (the classes found in " : "", source ? source : "",
                              source ? ")" : "");
    return lego_ok();
}

static lego_status read_images(const char *path, int64_t want_n, int64_t keep, dataset *out)
{
    gzFile f;
    LEGO_TRY(gz_open(path, &f));
    uint32_t dims[3] = {0};
    lego_status st = read_header(f, path, 3, dims);
    if (st.code == LEGO_OK && (int64_t)dims[0] != want_n)
        st = lego_error(LEGO_ERR_FORMAT, "%s: %u images, but the labels file has %lld labels",
                        path, dims[0], (long long)want_n);
    if (st.code == LEGO_OK && (dims[1] == 0 || dims[2] == 0 ||
                               (int64_t)dims[1] * dims[2] > DATA_MAX_PIXELS))
        st = lego_error(LEGO_ERR_FORMAT, "%s: implausible image size %ux%u", path, dims[1],
                        dims[2]);
    size_t bytes = 0, got = 0;
    if (st.code == LEGO_OK) {
        bytes = (size_t)keep * dims[1] * dims[2];
        out->images = malloc(bytes ? bytes : 1);
        if (!out->images)
            st = lego_error(LEGO_ERR_NOMEM, "%s: out of memory for %zu bytes of pixels", path,
                            bytes);
    }
    if (st.code == LEGO_OK)
        st = gz_read(f, path, out->images, bytes, &got);
    if (st.code == LEGO_OK && got < bytes)
        st = lego_error(LEGO_ERR_FORMAT, "%s: truncated: expected %zu bytes of pixels, got %zu",
                        path, bytes, got);
    gzclose(f);
    if (st.code == LEGO_OK) {
        out->c = 1;
        out->h = (int)dims[1];
        out->w = (int)dims[2];
    }
    return st;
}

lego_status idx_open(const char *dir, data_split split, const dataset_opts *opts,
                     int known_classes, const char *hint, dataset *out)
{
    const char *prefix = split == SPLIT_TRAIN ? "train" : "t10k";
    char *img_path = find_idx(dir, prefix, "images", 3);
    char *lab_path = find_idx(dir, prefix, "labels", 1);
    char *train_lab = split == SPLIT_TEST ? find_idx(dir, "train", "labels", 1) : NULL;
    uint8_t *labels = NULL, *train_labels = NULL;
    int64_t n = 0, train_n = 0;
    lego_status st = lego_ok();
    if (!img_path)
        st = missing(dir, prefix, "images", 3, hint);
    else if (!lab_path)
        st = missing(dir, prefix, "labels", 1, hint);
    if (st.code == LEGO_OK)
        st = read_labels(lab_path, &labels, &n);
    if (st.code == LEGO_OK && n == 0)
        st = lego_error(LEGO_ERR_FORMAT, "%s: no samples", lab_path);
    /* The class count comes from the train labels for both splits, so a model
     * and its test set agree on it. */
    int k = known_classes;
    if (st.code == LEGO_OK && k > 0)
        st = check_range(lab_path, labels, n, k, NULL);
    else if (st.code == LEGO_OK && train_lab) {
        st = read_labels(train_lab, &train_labels, &train_n);
        if (st.code == LEGO_OK)
            st = infer_classes(train_lab, train_labels, train_n, &k);
        if (st.code == LEGO_OK)
            st = check_range(lab_path, labels, n, k, train_lab);
    } else if (st.code == LEGO_OK) {
        st = infer_classes(lab_path, labels, n, &k);
    }
    int64_t keep = opts->max_samples > 0 && opts->max_samples < n ? opts->max_samples : n;
    if (st.code == LEGO_OK)
        st = read_images(img_path, n, keep, out);
    if (st.code == LEGO_OK) {
        out->labels = malloc(sizeof(int32_t) * (size_t)keep);
        if (!out->labels)
            st = lego_error(LEGO_ERR_NOMEM, "out of memory");
    }
    if (st.code == LEGO_OK) {
        for (int64_t i = 0; i < keep; i++)
            out->labels[i] = labels[i];
        out->n = keep;
        out->num_classes = k;
    }
    free(labels);
    free(train_labels);
    free(img_path);
    free(lab_path);
    free(train_lab);
    return st;
}
