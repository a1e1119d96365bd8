/* folder.c - image-folder datasets: DIR/<split>/<class>/<image>.
 *
 * Classes are the subfolders of DIR/train sorted by name (so labels do not
 * depend on the file system's listing order) and the test split reuses that
 * list, so both splits agree on label numbers. Loading is two passes: the
 * headers first, to pick one channel count and check sizes before any pixel
 * is decoded, then the pixels straight into the NCHW array. */
#include "data/data_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static lego_status strlist_push(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, nc * sizeof *v);
        if (!v)
            return lego_error(LEGO_ERR_NOMEM, "out of memory listing a directory");
        l->v = v;
        l->cap = nc;
    }
    size_t len = strlen(s) + 1;
    if (!(l->v[l->n] = malloc(len)))
        return lego_error(LEGO_ERR_NOMEM, "out of memory listing a directory");
    memcpy(l->v[l->n++], s, len);
    return lego_ok();
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 ||
                   strcasecmp(dot, ".jpeg") == 0);
}

/* The sorted names in dir: subdirectories (dirs) or image files; hidden
 * entries are skipped. */
static lego_status list_dir(const char *dir, bool dirs, strlist *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return lego_error(LEGO_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    lego_status st = lego_ok();
    struct dirent *e;
    while (st.code == LEGO_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (!dirs && !is_image_name(e->d_name))
            continue;
        char *p = path_join(dir, e->d_name);
        if (!p) {
            st = lego_error(LEGO_ERR_NOMEM, "out of memory");
            break;
        }
        bool keep = dirs ? path_is_dir(p) : path_is_file(p);
        free(p);
        if (keep)
            st = strlist_push(out, e->d_name);
    }
    closedir(d);
    if (st.code == LEGO_OK && out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return st;
}

/* Every image of the split, class by class, in name order. */
static lego_status gather(const char *split_dir, const strlist *classes, strlist *paths,
                          int32_t **labels)
{
    strlist here = {0}, files = {0};
    LEGO_TRY(list_dir(split_dir, true, &here));
    lego_status st = lego_ok();
    size_t cap = 0;
    for (size_t i = 0; i < here.n && st.code == LEGO_OK; i++) {
        char **hit = bsearch(&here.v[i], classes->v, classes->n, sizeof *classes->v, cmp_str);
        if (!hit) {
            st = lego_error(LEGO_ERR_FORMAT, "%s/%s: class '%s' has no folder in train/", split_dir,
                            here.v[i], here.v[i]);
            break;
        }
        char *cdir = path_join(split_dir, here.v[i]);
        if (!cdir) {
            st = lego_error(LEGO_ERR_NOMEM, "out of memory");
            break;
        }
        st = list_dir(cdir, false, &files);
        for (size_t j = 0; j < files.n && st.code == LEGO_OK; j++) {
            char *p = path_join(cdir, files.v[j]);
            st = p ? strlist_push(paths, p) : lego_error(LEGO_ERR_NOMEM, "out of memory");
            free(p);
            if (st.code == LEGO_OK && paths->n > cap) {
                cap = paths->cap;
                int32_t *nl = realloc(*labels, cap * sizeof **labels);
                if (!nl)
                    st = lego_error(LEGO_ERR_NOMEM, "out of memory");
                else
                    *labels = nl;
            }
            if (st.code == LEGO_OK)
                (*labels)[paths->n - 1] = (int32_t)(hit - classes->v);
        }
        strlist_free(&files);
        free(cdir);
    }
    strlist_free(&here);
    return st;
}

/* HWC interleaved -> CHW planar. */
static void to_planar(const uint8_t *src, int c, int h, int w, uint8_t *dst)
{
    size_t plane = (size_t)h * w;
    for (size_t i = 0; i < plane; i++)
        for (int ch = 0; ch < c; ch++)
            dst[(size_t)ch * plane + i] = src[i * (size_t)c + (size_t)ch];
}

static lego_status load_pixels(const strlist *paths, int c, int h, int w, dataset *out)
{
    out->images = malloc((size_t)paths->n * (size_t)c * h * w);
    if (!out->images)
        return lego_error(LEGO_ERR_NOMEM, "out of memory for %zu images of %dx%dx%d", paths->n,
                          c, h, w);
    lego_status st = lego_ok();
    uint8_t *planar = NULL;
    size_t planar_cap = 0;
    for (size_t i = 0; i < paths->n && st.code == LEGO_OK; i++) {
        uint8_t *pix = NULL;
        image_info info;
        st = image_decode(paths->v[i], c, &pix, &info);
        if (st.code != LEGO_OK)
            break;
        uint8_t *dst = out->images + i * (size_t)c * h * w;
        if (info.h == h && info.w == w) {
            to_planar(pix, c, h, w, dst);
        } else {
            size_t need = (size_t)c * info.h * info.w;
            if (need > planar_cap) {
                free(planar);
                planar = malloc(need);
                planar_cap = planar ? need : 0;
            }
            if (!planar)
                st = lego_error(LEGO_ERR_NOMEM, "%s: out of memory", paths->v[i]);
            else {
                to_planar(pix, c, info.h, info.w, planar);
                st = resize_u8(planar, c, info.h, info.w, dst, h, w);
            }
        }
        free(pix);
    }
    free(planar);
    return st;
}

lego_status folder_open(const char *dir, data_split split, const dataset_opts *opts,
                        dataset *out)
{
    char *train_dir = path_join(dir, "train");
    char *split_dir = path_join(dir, split == SPLIT_TRAIN ? "train" : "test");
    strlist classes = {0}, paths = {0};
    int32_t *labels = NULL;
    lego_status st = lego_ok();
    if (!train_dir || !split_dir)
        st = lego_error(LEGO_ERR_NOMEM, "out of memory");
    else if (!path_is_dir(split_dir))
        st = lego_error(LEGO_ERR_IO, "%s: not found (an image folder has train/ and test/)",
                        split_dir);
    /* Without train/ (a test-only folder) the split's own classes define the labels. */
    if (st.code == LEGO_OK)
        st = list_dir(path_is_dir(train_dir) ? train_dir : split_dir, true, &classes);
    if (st.code == LEGO_OK && classes.n == 0)
        st = lego_error(LEGO_ERR_FORMAT, "%s: no class folders", path_is_dir(train_dir) ? train_dir : split_dir);
    if (st.code == LEGO_OK && classes.n > INT32_MAX / 2)
        st = lego_error(LEGO_ERR_UNSUPPORTED, "%s: too many classes", dir);
    if (st.code == LEGO_OK)
        st = gather(split_dir, &classes, &paths, &labels);
    if (st.code == LEGO_OK && paths.n == 0)
        st = lego_error(LEGO_ERR_FORMAT, "%s: no .png/.jpg/.jpeg images in its class folders",
                        split_dir);
    if (st.code == LEGO_OK && opts->max_samples > 0 && (size_t)opts->max_samples < paths.n) {
        for (size_t i = (size_t)opts->max_samples; i < paths.n; i++)
            free(paths.v[i]);
        paths.n = (size_t)opts->max_samples;
    }

    /* Pass 1: headers. Gray only if every image is gray. */
    int c = 1, h = opts->resize_h, w = opts->resize_w;
    for (size_t i = 0; i < paths.n && st.code == LEGO_OK; i++) {
        image_info info;
        st = image_probe(paths.v[i], &info);
        if (st.code != LEGO_OK)
            break;
        if (!info.gray)
            c = 3;
        if (opts->resize_h > 0)
            continue;
        if (i == 0) {
            h = info.h;
            w = info.w;
        } else if (info.h != h || info.w != w) {
            st = lego_error(LEGO_ERR_SHAPE,
                            "%s is %dx%d (HxW) but %s is %dx%d; set a resize size to load "
                            "images of different sizes",
                            paths.v[i], info.h, info.w, paths.v[0], h, w);
        }
    }
    /* Pass 2: pixels. */
    if (st.code == LEGO_OK)
        st = load_pixels(&paths, c, h, w, out);
    if (st.code == LEGO_OK) {
        out->n = (int64_t)paths.n;
        out->c = c;
        out->h = h;
        out->w = w;
        out->labels = labels;
        labels = NULL;
        out->num_classes = (int)classes.n;
        /* Hand the names over; dataset_free releases them. */
        out->class_names = classes.v;
        classes.v = NULL;
        classes.n = 0;
    }
    free(labels);
    strlist_free(&classes);
    strlist_free(&paths);
    free(train_dir);
    free(split_dir);
    return st;
}
