/* test_data.c - the data layer: the RNG, IDX / CIFAR / image-folder loading,
 * their error messages, and the loader's transforms, order and determinism.
 * Every dataset is written on the fly into a temporary directory. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "core/rng.h"
#include "data/data_internal.h"
#include "data/dataset.h"
#include "harness.h"

static char tmp_root[64];

/* tmp_root/rel in a static buffer (one live at a time per slot). */
static const char *P(const char *rel)
{
    static char buf[4][512];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", tmp_root, rel);
    return buf[slot];
}

/* mkdir -p for a path under tmp_root (the last component is a file unless
 * dir is set). */
static void make_parents(const char *path, int dir)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *s = tmp + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            mkdir(tmp, 0755);
            *s = '/';
        }
    }
    if (dir)
        mkdir(tmp, 0755);
}

static void write_bytes(const char *path, const void *data, size_t len, int gz)
{
    make_parents(path, 0);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CHECK(f != NULL);
        if (!f)
            return;
        CHECK(gzwrite(f, data, (unsigned)len) == (int)len);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL);
        if (!f)
            return;
        CHECK(fwrite(data, 1, len, f) == len);
        fclose(f);
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An IDX images file: header for `n` images of h x w, then `bytes` pixels. */
static void write_idx_images(const char *path, uint32_t magic, uint32_t n, uint32_t h,
                             uint32_t w, size_t bytes, int gz)
{
    uint8_t *b = malloc(16 + bytes);
    put_be32(b, magic);
    put_be32(b + 4, n);
    put_be32(b + 8, h);
    put_be32(b + 12, w);
    for (size_t i = 0; i < bytes; i++)
        b[16 + i] = (uint8_t)(i * 7 + i / 13);
    write_bytes(path, b, 16 + bytes, gz);
    free(b);
}

static void write_idx_labels(const char *path, uint32_t n, const uint8_t *labels, int gz)
{
    uint8_t *b = malloc(8 + n);
    put_be32(b, 0x801);
    put_be32(b + 4, n);
    memcpy(b + 8, labels, n);
    write_bytes(path, b, 8 + n, gz);
    free(b);
}

static void write_png(const char *path, int w, int h, int channels, const uint8_t *pix)
{
    make_parents(path, 0);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = channels == 1 ? PNG_FORMAT_GRAY : channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
    CHECK(png_image_write_to_file(&img, path, 0, pix, 0, NULL));
}

static void write_jpeg(const char *path, int w, int h, int channels, const uint8_t *pix)
{
    make_parents(path, 0);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = channels;
    ci.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 100, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * channels);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

/* Keep the first `keep` bytes of a file. */
static void cut_file(const char *path, double fraction)
{
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    CHECK(truncate(path, (off_t)(sb.st_size * fraction)) == 0);
}

static void rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[512];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* ---- RNG ---- */

static void test_rng(void)
{
    rng a, b, c;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    rng_seed(&c, 43);
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = rng_next_u64(&a), y = rng_next_u64(&b), z = rng_next_u64(&c);
        same &= x == y;
        differ += x != z;
    }
    CHECK(same);
    CHECK(differ == 100);

    double sum = 0, sq = 0, usum = 0;
    int in_range = 1, counts[7] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        float u = rng_uniform(&a);
        in_range &= u >= 0.0f && u < 1.0f;
        usum += u;
        uint64_t k = rng_below(&a, 7);
        if (k < 7)
            counts[k]++;
        else
            in_range = 0;
        double g = rng_normal(&a);
        sum += g;
        sq += g * g;
    }
    CHECK(in_range);
    CHECK(fabs(usum / N - 0.5) < 0.02);
    for (int k = 0; k < 7; k++)
        CHECK(fabs(counts[k] / (double)N - 1.0 / 7) < 0.02);
    CHECK(fabs(sum / N) < 0.05);
    CHECK(fabs(sq / N - 1.0) < 0.05);
    CHECK(rng_below(&a, 1) == 0 && rng_below(&a, 0) == 0);
    CHECK(rng_mix(1, 2) != rng_mix(1, 3) && rng_mix(1, 2) != rng_mix(2, 2));
}

/* ---- IDX ---- */

static void test_idx(void)
{
    /* 12 train images of 3x4 (gzipped), 5 test images (plain). */
    uint8_t lab[12], tlab[5];
    for (int i = 0; i < 12; i++)
        lab[i] = (uint8_t)(i % 3);
    for (int i = 0; i < 5; i++)
        tlab[i] = (uint8_t)((i + 1) % 3);
    write_idx_images(P("idx/train-images-idx3-ubyte.gz"), 0x803, 12, 3, 4, 12 * 12, 1);
    write_idx_labels(P("idx/train-labels-idx1-ubyte.gz"), 12, lab, 1);
    write_idx_images(P("idx/t10k-images-idx3-ubyte"), 0x803, 5, 3, 4, 5 * 12, 0);
    write_idx_labels(P("idx/t10k-labels-idx1-ubyte"), 5, tlab, 0);

    dataset d;
    CHECK_OK(dataset_open(P("idx"), SPLIT_TRAIN, NULL, &d));
    CHECK(d.n == 12 && d.c == 1 && d.h == 3 && d.w == 4 && d.num_classes == 3);
    CHECK(d.name && strstr(d.name, "(train)"));
    int ok = 1;
    for (int i = 0; i < 12 * 12 && d.images; i++)
        ok &= d.images[i] == (uint8_t)(i * 7 + i / 13);
    for (int i = 0; i < 12 && d.labels; i++)
        ok &= d.labels[i] == i % 3;
    CHECK(ok);
    dataset_free(&d);
    CHECK(d.images == NULL && d.n == 0);

    CHECK_OK(dataset_open(P("idx"), SPLIT_TEST, NULL, &d));
    CHECK(d.n == 5 && d.num_classes == 3 && d.labels && d.labels[0] == 1 && d.labels[2] == 0);
    dataset_free(&d);

    dataset_opts o = {.max_samples = 4};
    CHECK_OK(dataset_open(P("idx"), SPLIT_TRAIN, &o, &d));
    CHECK(d.n == 4 && d.num_classes == 3 && d.labels && d.labels[3] == 0);
    dataset_free(&d);
    o = (dataset_opts){.resize_h = 6, .resize_w = 8};
    CHECK_OK(dataset_open(P("idx"), SPLIT_TRAIN, &o, &d));
    CHECK(d.n == 12 && d.h == 6 && d.w == 8);
    dataset_free(&d);

    /* Truncated pixels: the header promises 12 images of 28x28. */
    uint8_t lab10[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1};
    write_idx_images(P("trunc/train-images-idx3-ubyte.gz"), 0x803, 12, 28, 28, 1000, 1);
    write_idx_labels(P("trunc/train-labels-idx1-ubyte.gz"), 12, lab10, 1);
    CHECK_FAILS(dataset_open(P("trunc"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "trunc/train-images-idx3-ubyte.gz: truncated: expected 9408 bytes of pixels, got 1000");
    CHECK(d.images == NULL && d.n == 0);
    /* A cut gzip stream. */
    write_idx_images(P("cutgz/train-images-idx3-ubyte.gz"), 0x803, 12, 28, 28, 12 * 784, 1);
    write_idx_labels(P("cutgz/train-labels-idx1-ubyte.gz"), 12, lab10, 1);
    cut_file(P("cutgz/train-images-idx3-ubyte.gz"), 0.5);
    CHECK_FAILS(dataset_open(P("cutgz"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "cutgz/train-images-idx3-ubyte.gz");
    /* Bad magic. */
    write_idx_images(P("magic/train-images-idx3-ubyte"), 0x801, 12, 3, 4, 144, 0);
    write_idx_labels(P("magic/train-labels-idx1-ubyte"), 12, lab10, 0);
    CHECK_FAILS(dataset_open(P("magic"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "train-images-idx3-ubyte: bad magic 0x00000801");
    /* An IDX type other than unsigned bytes. */
    write_idx_images(P("dtype/train-images-idx3-ubyte"), 0xD03, 12, 3, 4, 144, 0);
    write_idx_labels(P("dtype/train-labels-idx1-ubyte"), 12, lab10, 0);
    CHECK_FAILS(dataset_open(P("dtype"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_UNSUPPORTED,
                "IDX data type 0x0d");
    /* Count mismatch. */
    write_idx_images(P("count/train-images-idx3-ubyte"), 0x803, 12, 3, 4, 144, 0);
    write_idx_labels(P("count/train-labels-idx1-ubyte"), 11, lab10, 0);
    CHECK_FAILS(dataset_open(P("count"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "12 images, but the labels file has 11 labels");
    /* A corrupt label in a 10-class file. */
    uint8_t bad[12];
    memcpy(bad, lab10, 12);
    bad[5] = 200;
    write_idx_images(P("label/train-images-idx3-ubyte"), 0x803, 12, 3, 4, 144, 0);
    write_idx_labels(P("label/train-labels-idx1-ubyte"), 12, bad, 0);
    CHECK_FAILS(dataset_open(P("label"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "train-labels-idx1-ubyte: label 200 at index 5 is out of range");
    /* A test label beyond the classes of the train split (3 classes in idx/). */
    uint8_t tbad[5] = {0, 1, 7, 2, 0};
    write_idx_images(P("idx2/train-images-idx3-ubyte.gz"), 0x803, 12, 3, 4, 144, 1);
    write_idx_labels(P("idx2/train-labels-idx1-ubyte.gz"), 12, lab, 1);
    write_idx_images(P("idx2/t10k-images-idx3-ubyte.gz"), 0x803, 5, 3, 4, 60, 1);
    write_idx_labels(P("idx2/t10k-labels-idx1-ubyte.gz"), 5, tbad, 1);
    CHECK_FAILS(dataset_open(P("idx2"), SPLIT_TEST, NULL, &d), LEGO_ERR_FORMAT,
                "label 7 at index 2 is out of range for 3 classes");
    /* A known 10-class dataset rejects label 10 even with no gap. */
    CHECK_FAILS(idx_open(P("label"), SPLIT_TRAIN, &(dataset_opts){0}, 10, NULL, &d),
                LEGO_ERR_FORMAT, "label 200 at index 5 is out of range for 10 classes");
    dataset_free(&d);
    /* Missing files, dirs, and the install hint. */
    CHECK_FAILS(dataset_open(P("trunc"), SPLIT_TEST, NULL, &d), LEGO_ERR_IO,
                "trunc/t10k-images-idx3-ubyte[.gz]: not found");
    make_parents(P("empty"), 1);
    CHECK_FAILS(idx_open(P("empty"), SPLIT_TRAIN, &(dataset_opts){0}, 10,
                         "install it with `apt-get install dataset-fashion-mnist`", &d),
                LEGO_ERR_IO, "not found; install it with `apt-get install dataset-fashion-mnist`");
    dataset_free(&d);
    CHECK_FAILS(dataset_open(P("empty"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "not a dataset");
    CHECK_FAILS(dataset_open(P("no/such/dir"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_IO,
                "no/such/dir: no such dataset directory");
    CHECK_FAILS(dataset_open(P("idx/t10k-labels-idx1-ubyte"), SPLIT_TRAIN, NULL, &d),
                LEGO_ERR_ARG, "not a directory");
    o = (dataset_opts){.resize_h = 4};
    CHECK_FAILS(dataset_open(P("idx"), SPLIT_TRAIN, &o, &d), LEGO_ERR_ARG, "resize");
}

/* ---- CIFAR ---- */

static void write_cifar(const char *path, int label_bytes, int n, int first, const int *labels)
{
    size_t rec = (size_t)label_bytes + 3072;
    uint8_t *b = malloc(rec * (size_t)n);
    for (int r = 0; r < n; r++) {
        uint8_t *p = b + rec * (size_t)r;
        if (label_bytes == 2)
            p[0] = 19; /* coarse label, ignored */
        p[label_bytes - 1] = (uint8_t)labels[r];
        for (int i = 0; i < 3072; i++)
            p[label_bytes + i] = (uint8_t)(first + r + i * 3);
    }
    write_bytes(path, b, rec * (size_t)n, 0);
    free(b);
}

static void test_cifar(void)
{
    char name[64];
    for (int f = 0; f < 5; f++) {
        int labels[2] = {(2 * f) % 10, (2 * f + 1) % 10};
        snprintf(name, sizeof name, "c10/data_batch_%d.bin", f + 1);
        write_cifar(P(name), 1, 2, 2 * f, labels);
    }
    int tl[3] = {9, 0, 4};
    write_cifar(P("c10/test_batch.bin"), 1, 3, 100, tl);

    dataset d;
    CHECK_OK(dataset_open(P("c10"), SPLIT_TRAIN, NULL, &d));
    CHECK(d.n == 10 && d.c == 3 && d.h == 32 && d.w == 32 && d.num_classes == 10);
    int ok = d.images != NULL;
    for (int s = 0; s < 10 && ok; s++) {
        ok &= d.labels[s] == s;
        for (int i = 0; i < 3072; i += 97) /* NCHW: record bytes are already planar */
            ok &= d.images[s * 3072 + i] == (uint8_t)(s + i * 3);
    }
    CHECK(ok);
    dataset_free(&d);
    CHECK_OK(dataset_open(P("c10"), SPLIT_TEST, &(dataset_opts){.max_samples = 2}, &d));
    CHECK(d.n == 2 && d.labels && d.labels[0] == 9 && d.labels[1] == 0);
    CHECK(d.images && d.images[3072 + 5] == (uint8_t)(101 + 15));
    dataset_free(&d);

    /* The directory the CIFAR-10 archive unpacks to, found from its parent. */
    write_cifar(P("c10nest/cifar-10-batches-bin/test_batch.bin"), 1, 3, 100, tl);
    CHECK_OK(dataset_open(P("c10nest"), SPLIT_TEST, NULL, &d));
    CHECK(d.n == 3);
    dataset_free(&d);
    CHECK_FAILS(dataset_open(P("c10nest"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_IO,
                "data_batch_1.bin: not found");

    /* Truncated record, out-of-range label. */
    write_cifar(P("c10bad/test_batch.bin"), 1, 3, 0, tl);
    cut_file(P("c10bad/test_batch.bin"), 0.5);
    CHECK_FAILS(dataset_open(P("c10bad"), SPLIT_TEST, NULL, &d), LEGO_ERR_FORMAT,
                "test_batch.bin: truncated: record 1 has");
    int bl[3] = {1, 10, 2};
    write_cifar(P("c10bad/test_batch.bin"), 1, 3, 0, bl);
    CHECK_FAILS(dataset_open(P("c10bad"), SPLIT_TEST, NULL, &d), LEGO_ERR_FORMAT,
                "label 10 at index 1 is out of range for 10 classes");

    /* CIFAR-100: two label bytes, the fine one counts. */
    int fine[4] = {0, 57, 99, 3};
    write_cifar(P("c100/train.bin"), 2, 4, 0, fine);
    CHECK_OK(dataset_open(P("c100"), SPLIT_TRAIN, NULL, &d));
    CHECK(d.n == 4 && d.num_classes == 100 && d.labels && d.labels[1] == 57 && d.labels[2] == 99);
    CHECK(d.images && d.images[3 * 3072 + 1] == 6);
    dataset_free(&d);
    CHECK_FAILS(dataset_open(P("c100"), SPLIT_TEST, NULL, &d), LEGO_ERR_IO, "test.bin: not found");
}

/* ---- image folders ---- */

static void test_folder(void)
{
    uint8_t gray50[16], rgb_const[48], grad[48], gray_grad[24], rgba[20 * 4];
    memset(gray50, 50, sizeof gray50);
    for (int i = 0; i < 16; i++) {
        rgb_const[3 * i] = 200;
        rgb_const[3 * i + 1] = 100;
        rgb_const[3 * i + 2] = 50;
        for (int ch = 0; ch < 3; ch++)
            grad[3 * i + ch] = (uint8_t)(i * 10 + ch);
    }
    for (int i = 0; i < 24; i++)
        gray_grad[i] = (uint8_t)(i * 9);
    for (int i = 0; i < 20; i++) {
        rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = 77;
        rgba[4 * i + 3] = 128;
    }

    /* Mixed gray and color: three channels, gray replicated. */
    write_png(P("imgs/train/cat/a.png"), 4, 4, 1, gray50);
    write_jpeg(P("imgs/train/cat/b.jpg"), 4, 4, 3, rgb_const);
    write_png(P("imgs/train/dog/c.PNG"), 4, 4, 3, grad);
    write_bytes(P("imgs/train/dog/notes.txt"), "not an image", 12, 0);
    write_png(P("imgs/test/dog/d.png"), 4, 4, 1, gray50);
    write_jpeg(P("imgs/test/cat/e.jpeg"), 4, 4, 3, rgb_const);
    dataset d;
    CHECK_OK(dataset_open(P("imgs"), SPLIT_TRAIN, NULL, &d));
    CHECK(d.n == 3 && d.c == 3 && d.h == 4 && d.w == 4 && d.num_classes == 2);
    CHECK(d.class_names && !strcmp(d.class_names[0], "cat") && !strcmp(d.class_names[1], "dog"));
    CHECK(d.labels && d.labels[0] == 0 && d.labels[1] == 0 && d.labels[2] == 1);
    int ok = d.images != NULL, near = ok;
    for (int i = 0; i < 48 && ok; i++) {
        ok &= d.images[i] == 50;                                     /* a.png, replicated */
        ok &= d.images[96 + i] == (uint8_t)((i % 16) * 10 + i / 16); /* c.PNG, planar */
        int want = i < 16 ? 200 : i < 32 ? 100 : 50;                /* b.jpg, lossy */
        near &= abs(d.images[48 + i] - want) <= 3;
    }
    CHECK(ok);
    CHECK(near);
    dataset_free(&d);
    CHECK_OK(dataset_open(P("imgs"), SPLIT_TEST, NULL, &d));
    CHECK(d.n == 2 && d.num_classes == 2 && d.labels && d.labels[0] == 0 && d.labels[1] == 1);
    dataset_free(&d);

    /* All gray (PNG and JPEG): one channel. */
    write_png(P("gray/train/x/1.png"), 6, 4, 1, gray_grad);
    write_jpeg(P("gray/train/y/2.jpg"), 6, 4, 1, gray_grad);
    CHECK_OK(dataset_open(P("gray"), SPLIT_TRAIN, NULL, &d));
    CHECK(d.n == 2 && d.c == 1 && d.h == 4 && d.w == 6);
    CHECK(d.images && d.images[7] == 63 && abs(d.images[24 + 7] - 63) <= 2);
    dataset_free(&d);

    /* Mixed sizes need a resize; resizing keeps a constant image constant. */
    write_png(P("sizes/train/a/1.png"), 4, 4, 1, gray50);
    write_png(P("sizes/train/a/2.png"), 5, 4, 4, rgba);
    CHECK_FAILS(dataset_open(P("sizes"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_SHAPE,
                "2.png is 4x5 (HxW)");
    dataset_opts o = {.resize_h = 7, .resize_w = 9};
    CHECK_OK(dataset_open(P("sizes"), SPLIT_TRAIN, &o, &d));
    CHECK(d.n == 2 && d.c == 3 && d.h == 7 && d.w == 9);
    ok = d.images != NULL;
    for (int i = 0; i < 3 * 63 && ok; i++)
        ok &= d.images[i] == 50 && d.images[3 * 63 + i] == 77;
    CHECK(ok);
    dataset_free(&d);

    /* Corrupt images name the file. */
    write_png(P("badpng/train/a/good.png"), 4, 4, 3, grad);
    write_png(P("badpng/train/a/x.png"), 4, 4, 3, grad);
    cut_file(P("badpng/train/a/x.png"), 0.6);
    CHECK_FAILS(dataset_open(P("badpng"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "badpng/train/a/x.png: corrupt PNG");
    write_bytes(P("junk/train/a/x.png"), "GIF89a, sorry", 13, 0);
    CHECK_FAILS(dataset_open(P("junk"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "junk/train/a/x.png: not a PNG or JPEG file");
    uint8_t fake[64] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F'};
    for (int i = 10; i < 64; i++)
        fake[i] = (uint8_t)(i * 37);
    write_bytes(P("badjpg/train/a/x.jpg"), fake, sizeof fake, 0);
    CHECK_FAILS(dataset_open(P("badjpg"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "badjpg/train/a/x.jpg: corrupt JPEG");
    uint8_t big[32 * 32 * 3];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31 + i / 7);
    write_jpeg(P("cutjpg/train/a/x.jpg"), 32, 32, 3, big);
    cut_file(P("cutjpg/train/a/x.jpg"), 0.5);
    CHECK_FAILS(dataset_open(P("cutjpg"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT,
                "cutjpg/train/a/x.jpg: corrupt JPEG");

    /* Split structure. */
    write_png(P("cls/train/a/1.png"), 4, 4, 1, gray50);
    write_png(P("cls/test/b/1.png"), 4, 4, 1, gray50);
    CHECK_FAILS(dataset_open(P("cls"), SPLIT_TEST, NULL, &d), LEGO_ERR_FORMAT, "class 'b'");
    CHECK_FAILS(dataset_open(P("badpng"), SPLIT_TEST, NULL, &d), LEGO_ERR_IO, "badpng/test: not found");
    make_parents(P("noimg/train/a"), 1);
    CHECK_FAILS(dataset_open(P("noimg"), SPLIT_TRAIN, NULL, &d), LEGO_ERR_FORMAT, "no .png");
}

/* ---- loader ---- */

/* An in-memory dataset for loader tests. */
static dataset make_ds(int64_t n, int c, int h, int w, int classes)
{
    dataset d = {0};
    d.n = n;
    d.c = c;
    d.h = h;
    d.w = w;
    d.num_classes = classes;
    d.images = calloc((size_t)(n * c * h * w), 1);
    d.labels = calloc((size_t)n, sizeof(int32_t));
    return d;
}

static void test_loader_values(void)
{
    /* 2x2 gray -> 3x4x4: replication plus bilinear upsampling, values from
     * F.interpolate(align_corners=False): source coords 0, .25, .75, 1. */
    dataset d = make_ds(1, 1, 2, 2, 1);
    const uint8_t img[4] = {0, 40, 80, 120};
    memcpy(d.images, img, 4);
    const float want4[16] = {0, 10, 30, 40, 20, 30, 50, 60, 60, 70, 90, 100, 80, 90, 110, 120};
    float want[48], x[48];
    transform t = {.out_c = 3, .out_h = 4, .out_w = 4};
    loader *l;
    CHECK_OK(loader_create(&d, &t, 1, false, false, 1, &l));
    int32_t y = -1;
    CHECK(loader_next(l, x, &y) == 1 && y == 0);
    for (int i = 0; i < 48; i++)
        want[i] = want4[i % 16] / 255.0f;
    check_close(x, want, 48, 1e-6f, 0, "bilinear 2x2 -> 4x4, replicated");
    CHECK(loader_next(l, x, &y) == 0);
    loader_free(l);

    /* Normalisation per output channel. */
    t = (transform){.out_c = 3, .out_h = 4, .out_w = 4, .mean = {0.5f, 0.4f, 0.3f},
                    .std = {0.5f, 0.25f, 0.2f}};
    CHECK_OK(loader_create(&d, &t, 1, false, false, 1, &l));
    CHECK(loader_next(l, x, NULL) == 1);
    for (int i = 0; i < 48; i++)
        want[i] = (want4[i % 16] / 255.0f - t.mean[i / 16]) / t.std[i / 16];
    check_close(x, want, 48, 1e-5f, 0, "normalised");
    int c, h, w;
    loader_sample_shape(l, &c, &h, &w);
    CHECK(c == 3 && h == 4 && w == 4);
    loader_free(l);
    free(d.images);
    free(d.labels);

    /* A constant 28x28 image stays constant at 32x32 (and at 20x20). */
    d = make_ds(1, 1, 28, 28, 1);
    memset(d.images, 123, 28 * 28);
    float *big = malloc(sizeof(float) * 3 * 32 * 32), *cw = malloc(sizeof(float) * 3 * 32 * 32);
    for (int i = 0; i < 3 * 32 * 32; i++)
        cw[i] = 123 / 255.0f;
    t = (transform){.out_c = 3, .out_h = 32, .out_w = 32};
    CHECK_OK(loader_create(&d, &t, 1, true, false, 7, &l));
    CHECK(loader_next(l, big, NULL) == 1);
    check_close(big, cw, 3 * 32 * 32, 1e-6f, 0, "constant 28x28 -> 32x32");
    loader_free(l);
    t = (transform){.out_h = 20, .out_w = 20};
    CHECK_OK(loader_create(&d, &t, 1, true, false, 7, &l));
    CHECK(loader_next(l, big, NULL) == 1);
    check_close(big, cw, 20 * 20, 1e-6f, 0, "constant 28x28 -> 20x20");
    loader_free(l);
    free(big);
    free(cw);
    free(d.images);
    free(d.labels);

    /* RGB -> gray takes the luminance. */
    d = make_ds(1, 3, 1, 2, 1);
    const uint8_t rgb[6] = {100, 0, 50, 255, 200, 10};
    memcpy(d.images, rgb, 6);
    t = (transform){.out_c = 1};
    CHECK_OK(loader_create(&d, &t, 1, false, false, 0, &l));
    CHECK(loader_next(l, x, NULL) == 1);
    float lum[2] = {(0.299f * 100 + 0.587f * 50 + 0.114f * 200) / 255,
                    (0.299f * 0 + 0.587f * 255 + 0.114f * 10) / 255};
    check_close(x, lum, 2, 1e-6f, 0, "luminance");
    loader_free(l);

    /* Bad arguments. */
    CHECK_FAILS(loader_create(&d, NULL, 0, false, false, 0, &l), LEGO_ERR_ARG, "batch size 0");
    t = (transform){.out_c = 2};
    CHECK_FAILS(loader_create(&d, &t, 4, false, false, 0, &l), LEGO_ERR_SHAPE,
                "cannot turn 3-channel images into 2 channels");
    t = (transform){.mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0, 0.5f}};
    CHECK_FAILS(loader_create(&d, &t, 4, false, false, 0, &l), LEGO_ERR_ARG, "channel 1");
    CHECK(l == NULL);
    free(d.images);
    free(d.labels);
}

/* The labels of one epoch, in loader order. */
static int64_t epoch_labels(loader *l, int epoch, int32_t *out, float *x, int64_t *sizes)
{
    loader_start_epoch(l, epoch);
    int64_t total = 0, k, nb = 0;
    while ((k = loader_next(l, x, out + total)) > 0) {
        if (sizes)
            sizes[nb] = k;
        nb++;
        total += k;
    }
    return total;
}

static void test_loader_order(void)
{
    enum { N = 103 };
    dataset d = make_ds(N, 1, 1, 1, N);
    for (int i = 0; i < N; i++)
        d.labels[i] = i;
    float x[10];
    int32_t e0[N + 10], e1[N + 10], again[N + 10];
    int64_t sizes[16] = {0};
    loader *l, *l2;
    CHECK_OK(loader_create(&d, NULL, 10, true, false, 1234, &l));
    CHECK(loader_batches_per_epoch(l) == 11);
    CHECK(epoch_labels(l, 0, e0, x, sizes) == N);
    CHECK(sizes[0] == 10 && sizes[10] == 3);
    int seen[N] = {0}, ok = 1, same = 1;
    for (int i = 0; i < N; i++)
        seen[e0[i]]++;
    for (int i = 0; i < N; i++)
        ok &= seen[i] == 1;
    CHECK(ok);
    for (int i = 0; i < N; i++)
        same &= e0[i] == i;
    CHECK(!same); /* shuffled */
    CHECK(epoch_labels(l, 1, e1, x, NULL) == N);
    same = 1;
    for (int i = 0; i < N; i++)
        same &= e0[i] == e1[i];
    CHECK(!same); /* another epoch, another order */
    /* A fresh loader resumed at epoch 1 (after any history) repeats it. */
    CHECK_OK(loader_create(&d, NULL, 10, true, false, 1234, &l2));
    epoch_labels(l2, 5, again, x, NULL);
    CHECK(epoch_labels(l2, 1, again, x, NULL) == N);
    CHECK(memcmp(again, e1, sizeof(int32_t) * N) == 0);
    loader_free(l2);
    /* Another seed, another order. */
    CHECK_OK(loader_create(&d, NULL, 10, true, false, 99, &l2));
    epoch_labels(l2, 0, again, x, NULL);
    CHECK(memcmp(again, e0, sizeof(int32_t) * N) != 0);
    loader_free(l2);
    loader_free(l);
    /* No shuffle: dataset order. */
    CHECK_OK(loader_create(&d, NULL, 10, false, false, 1234, &l));
    epoch_labels(l, 3, again, x, NULL);
    same = 1;
    for (int i = 0; i < N; i++)
        same &= again[i] == i;
    CHECK(same);
    loader_free(l);
    free(d.images);
    free(d.labels);

    /* drop_last: 10 samples in batches of 4. */
    d = make_ds(10, 1, 1, 1, 1);
    float xb[4];
    int32_t yb[4];
    CHECK_OK(loader_create(&d, NULL, 4, true, true, 5, &l));
    CHECK(loader_batches_per_epoch(l) == 2);
    CHECK(loader_next(l, xb, yb) == 4 && loader_next(l, xb, yb) == 4 && loader_next(l, xb, yb) == 0);
    CHECK(loader_next(l, xb, yb) == 0);
    loader_free(l);
    CHECK_OK(loader_create(&d, NULL, 4, true, false, 5, &l));
    CHECK(loader_batches_per_epoch(l) == 3);
    CHECK(loader_next(l, xb, yb) == 4 && loader_next(l, xb, yb) == 4);
    xb[2] = xb[3] = -7;
    CHECK(loader_next(l, xb, yb) == 2 && xb[2] == -7 && xb[3] == -7);
    CHECK(loader_next(l, xb, yb) == 0);
    loader_start_epoch(l, 1);
    CHECK(loader_next(l, xb, yb) == 4);
    loader_free(l);
    free(d.images);
    free(d.labels);
}

/* Which (dy, dx, flip) explains out (8x8) as a crop of padded img: returns
 * the count of explanations and the last one found. */
static int explain(const uint8_t *img, const float *out, int p, int *dy, int *dx, int *flip)
{
    int found = 0;
    for (int fy = -p; fy <= p; fy++)
        for (int fx = -p; fx <= p; fx++)
            for (int f = 0; f < 2; f++) {
                int match = 1;
                for (int y = 0; y < 8 && match; y++)
                    for (int x = 0; x < 8 && match; x++) {
                        int ry = y + fy, rx = (f ? 7 - x : x) + fx;
                        float v = ry < 0 || ry >= 8 || rx < 0 || rx >= 8 ? 0 : img[ry * 8 + rx] / 255.0f;
                        match = fabsf(out[y * 8 + x] - v) < 1e-6f;
                    }
                if (match) {
                    found++;
                    *dy = fy;
                    *dx = fx;
                    *flip = f;
                }
            }
    return found;
}

static void test_loader_augment(void)
{
    enum { N = 50, EPOCHS = 8, P = 2 };
    dataset d = make_ds(N, 1, 8, 8, N);
    for (int s = 0; s < N; s++) {
        d.labels[s] = s; /* names the sample in a shuffled batch */
        for (int i = 0; i < 64; i++)
            d.images[s * 64 + i] = (uint8_t)(i + 1 + s);
    }
    transform t = {.pad_crop = P, .hflip = 1};
    loader *l, *l2;
    CHECK_OK(loader_create(&d, &t, 16, true, false, 77, &l));
    CHECK_OK(loader_create(&d, &t, 16, true, false, 77, &l2));
    float *x = malloc(sizeof(float) * 16 * 64), *x2 = malloc(sizeof(float) * 16 * 64);
    int32_t y[16], y2[16];
    int offsets[2 * P + 1][2 * P + 1] = {{0}}, flips = 0, draws = 0, unique = 1, identical = 1;
    for (int e = 0; e < EPOCHS; e++) {
        loader_start_epoch(l, e);
        loader_start_epoch(l2, e);
        int64_t k;
        while ((k = loader_next(l, x, y)) > 0) {
            CHECK(loader_next(l2, x2, y2) == k);
            identical &= memcmp(x, x2, sizeof(float) * (size_t)k * 64) == 0;
            for (int64_t i = 0; i < k; i++) {
                int dy = 0, dx = 0, f = 0;
                int found = explain(d.images + y[i] * 64, x + i * 64, P, &dy, &dx, &f);
                unique &= found == 1;
                if (found == 1) {
                    offsets[dy + P][dx + P]++;
                    flips += f;
                    draws++;
                }
            }
        }
    }
    CHECK(identical);
    CHECK(unique);
    CHECK(draws == N * EPOCHS);
    int all_offsets = 1;
    for (int a = 0; a <= 2 * P; a++)
        for (int b = 0; b <= 2 * P; b++)
            all_offsets &= offsets[a][b] > 0;
    CHECK(all_offsets);
    CHECK(fabs(flips / (double)draws - 0.5) < 0.1);
    loader_free(l);
    loader_free(l2);

    /* One sample across epochs: varies with the epoch, same for the same
     * epoch, and independent of the order (shuffle off vs on). */
    transform crop = {.pad_crop = P};
    loader *a, *b;
    CHECK_OK(loader_create(&d, &crop, N, false, false, 3, &a));
    CHECK_OK(loader_create(&d, &crop, N, true, false, 3, &b));
    float *xa = malloc(sizeof(float) * N * 64), *xb = malloc(sizeof(float) * N * 64);
    int32_t ya[N], yb[N];
    int differs = 0, order_free = 1;
    float prev[64];
    for (int e = 0; e < EPOCHS; e++) {
        loader_start_epoch(a, e);
        loader_start_epoch(b, e);
        loader_next(a, xa, ya);
        loader_next(b, xb, yb);
        if (e > 0)
            differs += memcmp(prev, xa, sizeof prev) != 0;
        memcpy(prev, xa, sizeof prev);
        /* Sample 0 in b's shuffled batch gets the same crop as in a's. */
        for (int i = 0; i < N; i++)
            if (yb[i] == 0)
                order_free &= memcmp(xb + i * 64, xa, sizeof prev) == 0;
    }
    CHECK(differs > 0);
    CHECK(order_free);
    /* Replaying an epoch replays its crops. */
    loader_start_epoch(a, 3);
    loader_next(a, xa, ya);
    loader_start_epoch(a, 6);
    loader_next(a, xb, yb);
    loader_start_epoch(a, 3);
    loader_next(a, xb, yb);
    CHECK(memcmp(xa, xb, sizeof(float) * N * 64) == 0);
    loader_free(a);
    loader_free(b);

    /* Flip alone mirrors exactly. */
    transform flip = {.hflip = 1};
    CHECK_OK(loader_create(&d, &flip, N, false, false, 11, &a));
    loader_next(a, xa, ya);
    int mirrored = 0, plain = 0, exact = 1;
    for (int s = 0; s < N; s++) {
        int is_m = 1, is_p = 1;
        for (int yy = 0; yy < 8; yy++)
            for (int xx = 0; xx < 8; xx++) {
                float v = xa[s * 64 + yy * 8 + xx];
                is_p &= fabsf(v - d.images[s * 64 + yy * 8 + xx] / 255.0f) < 1e-6f;
                is_m &= fabsf(v - d.images[s * 64 + yy * 8 + 7 - xx] / 255.0f) < 1e-6f;
            }
        mirrored += is_m;
        plain += is_p;
        exact &= is_m || is_p;
    }
    CHECK(exact);
    CHECK(mirrored > 10 && plain > 10);
    loader_free(a);
    free(xa);
    free(xb);
    free(x);
    free(x2);
    free(d.images);
    free(d.labels);
}

/* ---- the real Fashion-MNIST, where installed ---- */

static void test_fashion(void)
{
    if (!path_is_dir(FASHION_MNIST_DIR)) {
        printf("note: %s absent (apt-get install dataset-fashion-mnist); skipping\n",
               FASHION_MNIST_DIR);
        return;
    }
    dataset d;
    CHECK_OK(dataset_open("fashion-mnist", SPLIT_TRAIN, NULL, &d));
    CHECK(d.n == 60000 && d.c == 1 && d.h == 28 && d.w == 28 && d.num_classes == 10);
    CHECK(d.name && !strcmp(d.name, "fashion-mnist (train)"));
    int64_t count[10] = {0};
    for (int64_t i = 0; i < d.n; i++)
        count[d.labels[i]]++;
    int balanced = 1;
    for (int k = 0; k < 10; k++)
        balanced &= count[k] == 6000;
    CHECK(balanced);
    /* A full epoch through the loader, shaped for a CIFAR-style model. */
    transform t = {.out_c = 3, .out_h = 32, .out_w = 32, .pad_crop = 4, .hflip = 1,
                   .mean = {0.2860f, 0.2860f, 0.2860f}, .std = {0.3530f, 0.3530f, 0.3530f}};
    loader *l;
    CHECK_OK(loader_create(&d, &t, 256, true, true, 1, &l));
    float *x = malloc(sizeof(float) * 256 * 3 * 32 * 32);
    int32_t y[256];
    int64_t total = 0, k, batches = 0;
    while ((k = loader_next(l, x, y)) > 0) {
        total += k;
        batches++;
    }
    CHECK(total == 59904 && batches == loader_batches_per_epoch(l));
    free(x);
    loader_free(l);
    dataset_free(&d);
    CHECK_OK(dataset_open("fashion-mnist", SPLIT_TEST, NULL, &d));
    CHECK(d.n == 10000 && d.c == 1 && d.h == 28 && d.w == 28 && d.num_classes == 10);
    dataset_free(&d);
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/legodnn-data-XXXXXX");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_rng();
    test_idx();
    test_cifar();
    test_folder();
    test_loader_values();
    test_loader_order();
    test_loader_augment();
    test_fashion();
    rm_rf(tmp_root);
    return harness_finish();
}
