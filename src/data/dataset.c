/* dataset.c - dataset_open: resolves a dataset spec to a format, then applies
 * what every format shares (naming, load-time resize, a final label check). */
#include "data/data_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char fashion_hint[] = "install it with `apt-get install dataset-fashion-mnist`";

char *path_join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    bool slash = na > 0 && a[na - 1] == '/';
    char *p = malloc(na + nb + 2);
    if (p)
        snprintf(p, na + nb + 2, "%s%s%s", a, slash ? "" : "/", b);
    return p;
}

bool path_is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

bool path_is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Read up to len bytes; *got says how many arrived. A short read is not an
 * error here (the caller words "truncated"); a zlib failure is. */
lego_status gz_read(gzFile f, const char *path, void *buf, size_t len, size_t *got)
{
    *got = 0;
    uint8_t *p = buf;
    while (*got < len) {
        size_t want = len - *got;
        if (want > (1u << 30))
            want = 1u << 30;
        int n = gzread(f, p + *got, (unsigned)want);
        if (n < 0) {
            int err;
            const char *msg = gzerror(f, &err);
            return lego_error(LEGO_ERR_FORMAT, "%s: corrupt compressed data: %s", path, msg);
        }
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    return lego_ok();
}

lego_status gz_open(const char *path, gzFile *f)
{
    errno = 0;
    *f = gzopen(path, "rb");
    if (!*f)
        return lego_error(LEGO_ERR_IO, "%s: cannot open: %s", path,
                          errno ? strerror(errno) : "out of memory");
    gzbuffer(*f, 1 << 17);
    return lego_ok();
}

static bool has_file(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    bool yes = p && path_is_file(p);
    free(p);
    return yes;
}

static bool has_dir(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    bool yes = p && path_is_dir(p);
    free(p);
    return yes;
}

static bool idx_detect(const char *dir)
{
    static const char *const names[] = {
        "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "train-images.idx3-ubyte",
        "t10k-images-idx3-ubyte.gz",  "t10k-images-idx3-ubyte",  "t10k-images.idx3-ubyte",
        "train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (has_file(dir, names[i]))
            return true;
    return false;
}

/* Pick the format from what the directory holds; depth bounds the descent
 * into the folder names the CIFAR archives unpack to. */
static lego_status open_dir(const char *dir, data_split split, const dataset_opts *opts,
                            int depth, dataset *out)
{
    if (idx_detect(dir))
        return idx_open(dir, split, opts, 0, NULL, out);
    if (has_file(dir, "data_batch_1.bin") || has_file(dir, "test_batch.bin"))
        return cifar_open(dir, 10, split, opts, out);
    if (has_file(dir, "train.bin") || has_file(dir, "test.bin"))
        return cifar_open(dir, 100, split, opts, out);
    if (has_dir(dir, "train") || has_dir(dir, "test"))
        return folder_open(dir, split, opts, out);
    static const char *const subdirs[] = {"cifar-10-batches-bin", "cifar-100-binary"};
    for (size_t i = 0; depth == 0 && i < 2; i++) {
        if (has_dir(dir, subdirs[i])) {
            char *sub = path_join(dir, subdirs[i]);
            if (!sub)
                return lego_error(LEGO_ERR_NOMEM, "out of memory");
            lego_status st = open_dir(sub, split, opts, depth + 1, out);
            free(sub);
            return st;
        }
    }
    return lego_error(LEGO_ERR_FORMAT,
                      "%s: not a dataset: expected IDX files (train-images-idx3-ubyte[.gz], ...), "
                      "CIFAR binaries (data_batch_1.bin, ... or train.bin, test.bin) "
                      "or image folders (train/<class>/*.png|jpg, test/<class>/...)",
                      dir);
}

/* Load-time resize for the formats that store one size (IDX, CIFAR). */
static lego_status resize_all(dataset *d, int oh, int ow)
{
    size_t per_in = (size_t)d->c * d->h * d->w, per_out = (size_t)d->c * oh * ow;
    uint8_t *img = malloc(per_out * (size_t)d->n);
    if (!img)
        return lego_error(LEGO_ERR_NOMEM, "out of memory resizing %lld images to %dx%d",
                          (long long)d->n, oh, ow);
    for (int64_t i = 0; i < d->n; i++) {
        lego_status st = resize_u8(d->images + per_in * i, d->c, d->h, d->w, img + per_out * i,
                                   oh, ow);
        if (st.code != LEGO_OK) {
            free(img);
            return st;
        }
    }
    free(d->images);
    d->images = img;
    d->h = oh;
    d->w = ow;
    return lego_ok();
}

static lego_status finish(dataset *d, const char *label, data_split split,
                          const dataset_opts *opts)
{
    const char *which = split == SPLIT_TRAIN ? "train" : "test";
    size_t len = strlen(label) + strlen(which) + 4;
    d->name = malloc(len);
    if (!d->name)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    snprintf(d->name, len, "%s (%s)", label, which);
    if (opts->resize_h > 0 && (d->h != opts->resize_h || d->w != opts->resize_w))
        LEGO_TRY(resize_all(d, opts->resize_h, opts->resize_w));
    /* Each format checks labels against its own rules with file and index;
     * this catches a format that forgot to, before a loss reads out of bounds. */
    for (int64_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= d->num_classes)
            return lego_error(LEGO_ERR_INTERNAL, "%s: label %d at index %lld is out of range for %d classes",
                              d->name, d->labels[i], (long long)i, d->num_classes);
    return lego_ok();
}

lego_status dataset_open(const char *spec, data_split split, const dataset_opts *opts,
                         dataset *out)
{
    if (!out)
        return lego_error(LEGO_ERR_ARG, "dataset_open: no output");
    memset(out, 0, sizeof *out);
    if (!spec || !*spec)
        return lego_error(LEGO_ERR_ARG, "dataset: empty name");
    if (split != SPLIT_TRAIN && split != SPLIT_TEST)
        return lego_error(LEGO_ERR_ARG, "%s: unknown split %d", spec, (int)split);
    dataset_opts o = {0};
    if (opts)
        o = *opts;
    if (o.max_samples < 0)
        return lego_error(LEGO_ERR_ARG, "%s: max_samples %lld is negative", spec,
                          (long long)o.max_samples);
    if (o.resize_h < 0 || o.resize_w < 0 || (o.resize_h > 0) != (o.resize_w > 0) ||
        (int64_t)o.resize_h * o.resize_w > DATA_MAX_PIXELS)
        return lego_error(LEGO_ERR_ARG, "%s: bad resize %dx%d (give both, positive)", spec,
                          o.resize_h, o.resize_w);

    bool fashion = strcmp(spec, "fashion-mnist") == 0;
    const char *dir = fashion ? FASHION_MNIST_DIR : spec;
    if (!path_is_dir(dir)) {
        if (fashion)
            return lego_error(LEGO_ERR_IO, "fashion-mnist: %s not found; %s", dir, fashion_hint);
        struct stat sb;
        if (stat(dir, &sb) == 0)
            return lego_error(LEGO_ERR_ARG,
                              "%s: not a directory (a dataset is a directory or a known "
                              "name such as fashion-mnist)",
                              dir);
        return lego_error(LEGO_ERR_IO,
                          "%s: no such dataset directory (nor a known dataset such as "
                          "fashion-mnist)",
                          dir);
    }
    lego_status st = fashion ? idx_open(dir, split, &o, 10, fashion_hint, out)
                             : open_dir(dir, split, &o, 0, out);
    if (st.code == LEGO_OK)
        st = finish(out, spec, split, &o);
    if (st.code != LEGO_OK)
        dataset_free(out);
    return st;
}

void dataset_free(dataset *d)
{
    if (!d)
        return;
    if (d->class_names) {
        for (int i = 0; i < d->num_classes; i++)
            free(d->class_names[i]);
        free(d->class_names);
    }
    free(d->name);
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
