/* test_library.c - the block library on disk (blocks/library.c), offline
 * composition (blocks/compose.c) and SHA-256 (core/sha256.c).
 *
 * For every model family: extract a library at sparsities 0, 0.3, 0.6, 0.8;
 * reopen it and compare with what extraction returned; compose every block
 * at s = 0 and check the composed model reproduces the teacher's output on
 * the fixture input bit for bit; compose every block at 0.8 (and a mix) and
 * check it runs with the teacher's output shapes and fewer parameters. Then
 * the ways a library goes wrong: a tampered, truncated or missing file, a
 * broken or future manifest, an existing directory, an interrupted
 * extraction (nothing half-written, an old library left intact), stale
 * temporary directories. */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "blocks/compose.h"
#include "blocks/library.h"
#include "core/file.h"
#include "core/sha256.h"
#include "core/tensor.h"
#include "graph/exec.h"
#include "harness.h"
#include "onnx/onnx_import.h"

static char scratch[256];

/* ---- SHA-256 ----------------------------------------------------------------------------- */

static void test_sha256(void)
{
    char hex[65];
    sha256_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m, strlen(m), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    /* a million 'a' from a file, read in pieces */
    char path[] = "/tmp/test_library_sha_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    CHECK(f != NULL);
    if (!f)
        return;
    for (int i = 0; i < 1000000; i++)
        fputc('a', f);
    fclose(f);
    lego_status st = sha256_file_hex(path, hex, NULL);
    remove(path);
    CHECK(st.code == LEGO_OK &&
          strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    lego_status_free(&st);
    st = sha256_file_hex("/nonexistent/sha", hex, NULL);
    CHECK(st.code == LEGO_ERR_IO);
    lego_status_free(&st);
}

/* ---- sparsity names ------------------------------------------------------------------------ */

static void test_names(void)
{
    double a[] = {0, 0.3, 0.6, 0.8};
    CHECK(library_sparsity_decimals(a, 4) == 2);
    char buf[128];
    library_descendant_file(3, 0.3, 2, buf, sizeof buf);
    CHECK(strcmp(buf, "blocks/block-3-0.30.onnx") == 0);
    /* the original names 0.05 and 0.5 "05" and "5"; here they differ */
    double b[] = {0, 0.05, 0.5};
    int dec = library_sparsity_decimals(b, 3);
    char f1[128], f2[128];
    library_descendant_file(0, 0.05, dec, f1, sizeof f1);
    library_descendant_file(0, 0.5, dec, f2, sizeof f2);
    CHECK(strcmp(f1, "blocks/block-0-0.05.onnx") == 0 && strcmp(f2, "blocks/block-0-0.50.onnx") == 0);
    double c[] = {0, 0.125, 0.5};
    CHECK(library_sparsity_decimals(c, 3) == 3);
    CHECK_OK(library_check_sparsities(a, 4));
    double bad1[] = {0, 1.0};
    CHECK_FAILS(library_check_sparsities(bad1, 2), LEGO_ERR_ARG, "sparsity 1 is outside [0, 1)");
    double bad2[] = {0, -0.2};
    CHECK_FAILS(library_check_sparsities(bad2, 2), LEGO_ERR_ARG, "sparsity -0.2 is outside [0, 1)");
    double bad3[] = {0, 0.3, 0.3};
    CHECK_FAILS(library_check_sparsities(bad3, 3), LEGO_ERR_ARG, "sparsity 0.3 is listed twice");
    double bad4[] = {0.3, 0.6};
    CHECK_FAILS(library_check_sparsities(bad4, 2), LEGO_ERR_ARG, "must start with 0");
    double bad5[] = {0, 0.6, 0.3};
    CHECK_FAILS(library_check_sparsities(bad5, 3), LEGO_ERR_ARG, "must ascend");
    double bad6[] = {0, NAN};
    CHECK_FAILS(library_check_sparsities(bad6, 2), LEGO_ERR_ARG, "outside [0, 1)");
}

/* ---- the families -------------------------------------------------------------------------- */

static const char *const families[] = {"resnet18",      "resnet18_dynbatch", "mobilenetv2", "resnext29", "inceptionv3",
                                       "wideresnet",    "ran",               "cbam_resnet18", "senet18", "vgg11_bn",
                                       "fcn",           "deeplabv3",         "unet",        "yolov3",    "ganomaly",
                                       "deeppose",      "simplebaseline",    "tsn",         "trn",       NULL};

static const double sparsities[] = {0, 0.3, 0.6, 0.8};

/* The fixture input, batched as its size says; set as g's input shape. */
static lego_tensor *fixture_input(const char *name, lego_graph *g)
{
    char path[256];
    snprintf(path, sizeof path, "data/models/%s.in.bin", name);
    unsigned char *buf;
    size_t len;
    lego_status st = file_read_all(path, &buf, &len);
    CHECK_OK(st);
    if (st.code)
        return NULL;
    lego_tensor *t = calloc(1, sizeof *t);
    gvalue *in = &g->values[g->inputs[0]];
    int64_t dims[LEGO_MAX_RANK];
    memcpy(dims, in->t.dims, sizeof dims);
    int64_t per = lego_tensor_numel(&in->t) / dims[0];
    dims[0] = (int64_t)(len / sizeof(float)) / per;
    tensor_set_shape(t, LEGO_F32, in->t.rank, dims);
    CHECK_OK(tensor_alloc(t));
    memcpy(t->data, buf, len);
    free(buf);
    return t;
}

/* Run g on x (setting its input's shape); outputs into out[]. */
static bool run(lego_graph *g, const lego_tensor *x, lego_tensor **out)
{
    gvalue *in = &g->values[g->inputs[0]];
    memcpy(in->t.dims, x->dims, sizeof x->dims);
    lego_status st = graph_infer(g);
    CHECK_OK(st);
    if (st.code)
        return false;
    exec_plan plan;
    st = exec_plan_build(g, &plan);
    CHECK_OK(st);
    if (st.code)
        return false;
    const lego_tensor *ins[1] = {x};
    st = exec_run(g, &plan, ins, out);
    CHECK_OK(st);
    exec_plan_free(&plan);
    return st.code == LEGO_OK;
}

static void same_library(const block_library *a, const block_library *b)
{
    CHECK(a->n_blocks == b->n_blocks && a->n_sparsities == b->n_sparsities);
    CHECK(strcmp(a->model_sha256, b->model_sha256) == 0 && strcmp(a->frame_sha256, b->frame_sha256) == 0);
    CHECK(a->frame_model_inputs == b->frame_model_inputs && a->frame_model_outputs == b->frame_model_outputs);
    for (int i = 0; i < a->n_blocks && i < b->n_blocks; i++) {
        const lib_block *x = &a->blocks[i], *y = &b->blocks[i];
        CHECK(strcmp(x->entry, y->entry) == 0 && strcmp(x->exit, y->exit) == 0);
        CHECK(x->n_nodes == y->n_nodes && x->n_pruned_convs == y->n_pruned_convs && x->n_desc == y->n_desc);
        for (int d = 0; d < x->n_desc && d < y->n_desc; d++) {
            const lib_descendant *p = &x->desc[d], *q = &y->desc[d];
            CHECK(strcmp(p->file, q->file) == 0 && strcmp(p->sha256, q->sha256) == 0);
            CHECK(p->params == q->params && p->flops == q->flops && p->bytes == q->bytes);
            CHECK(p->n_cuts == q->n_cuts);
            for (int c = 0; c < p->n_cuts && c < q->n_cuts; c++)
                CHECK(p->cuts[c].n_kept == q->cuts[c].n_kept &&
                      memcmp(p->cuts[c].kept, q->cuts[c].kept, sizeof(int64_t) * (size_t)p->cuts[c].n_kept) == 0);
        }
    }
}

static int64_t param_count(const lego_graph *g) { return graph_param_count(g, NULL); }

static void test_family(const char *name)
{
    int bad = harness_failed;
    lego_graph g;
    lego_status st = harness_load_model(name, &g);
    CHECK_OK(st);
    if (st.code)
        return;
    block_set bs;
    st = blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs);
    CHECK_OK(st);
    if (st.code) {
        graph_free(&g);
        return;
    }
    char dir[512], model_path[256];
    snprintf(dir, sizeof dir, "%s/%s.lib", scratch, name);
    snprintf(model_path, sizeof model_path, "data/models/%s.onnx", name);
    extract_options opt = {.sparsities = sparsities, .n_sparsities = 4};
    block_library made, lib;
    st = library_extract(&g, &bs, model_path, dir, &opt, &made);
    CHECK_OK(st);
    if (st.code) {
        block_set_free(&bs);
        graph_free(&g);
        return;
    }
    st = library_open(dir, &lib);
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        same_library(&made, &lib);
        CHECK(lib.n_blocks == bs.n_blocks && lib.n_sparsities == 4);
        CHECK(strcmp(lib.model_file, strrchr(model_path, '/') + 1) == 0);
        char hex[65];
        CHECK_OK(sha256_file_hex(model_path, hex, NULL));
        CHECK(strcmp(hex, lib.model_sha256) == 0);
        for (int b = 0; b < lib.n_blocks; b++) {
            const lib_block *lb = &lib.blocks[b];
            CHECK(lb->params == bs.blocks[b].params && lb->flops == bs.blocks[b].flops);
            for (int d = 0; d < lb->n_desc; d++) {
                /* each descendant file loads on its own with the block's shapes */
                lego_graph *dg;
                st = library_descendant(&lib, b, d, &dg);
                CHECK_OK(st);
                if (st.code)
                    continue;
                const lego_tensor *o = &dg->values[dg->outputs[0]].t;
                CHECK(o->rank == lb->out_rank && memcmp(o->dims, lb->out_shape, sizeof(int64_t) * (size_t)o->rank) == 0);
                CHECK(param_count(dg) == lb->desc[d].params);
                CHECK(graph_flops(dg, NULL) == lb->desc[d].flops);
                if (d > 0)
                    CHECK(lb->desc[d].params <= lb->desc[d - 1].params);
            }
        }
        /* composition: all at 0 reproduces the teacher bit for bit */
        lego_tensor *x = fixture_input(name, &g);
        int *choice = calloc((size_t)lib.n_blocks, sizeof *choice);
        lego_tensor *want[8] = {0}, *got[8] = {0};
        lego_graph c0;
        st = compose_model(&lib, choice, &c0);
        CHECK_OK(st);
        if (st.code == LEGO_OK && x) {
            CHECK(c0.n_outputs == g.n_outputs && c0.n_inputs == g.n_inputs && c0.n_outputs <= 8);
            CHECK(param_count(&c0) == param_count(&g));
            if (run(&g, x, want) && run(&c0, x, got)) {
                for (int i = 0; i < g.n_outputs; i++) {
                    CHECK(tensor_same_shape(want[i], got[i]));
                    if (tensor_same_shape(want[i], got[i]))
                        CHECK(memcmp(want[i]->data, got[i]->data, lego_tensor_bytes(want[i])) == 0);
                }
            }
            for (int i = 0; i < 8; i++)
                lego_tensor_free(got[i]), got[i] = NULL;
            graph_free(&c0);
        }
        /* all at 0.8, and a mix: they run, with the teacher's output shapes */
        for (int mix = 0; mix < 2 && x; mix++) {
            for (int b = 0; b < lib.n_blocks; b++)
                choice[b] = mix ? b % 4 : 3;
            lego_graph cm;
            st = compose_model(&lib, choice, &cm);
            CHECK_OK(st);
            if (st.code)
                continue;
            CHECK(param_count(&cm) < param_count(&g));
            if (run(&cm, x, got))
                for (int i = 0; i < g.n_outputs; i++)
                    CHECK(tensor_same_shape(want[i], got[i]));
            for (int i = 0; i < 8; i++)
                lego_tensor_free(got[i]), got[i] = NULL;
            graph_free(&cm);
        }
        for (int i = 0; i < 8; i++)
            lego_tensor_free(want[i]);
        lego_tensor_free(x);
        free(choice);
        library_free(&lib);
    }
    library_free(&made);
    if (harness_failed != bad)
        fprintf(stderr, "  (in %s)\n", name);
    block_set_free(&bs);
    graph_free(&g);
}

/* ---- things going wrong --------------------------------------------------------------------- */

static bool stop_after_three(void *ctx, int done, int total, const char *what)
{
    (void)total, (void)what;
    *(int *)ctx = done;
    return done < 3;
}

static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* Flips a byte of the file in place, giving it a modification time of its
 * own (the library skips hashing a file whose identity it has seen match;
 * a rewrite within the same clock tick could otherwise keep it). */
static void flip_byte(const char *path, long at)
{
    static time_t flips;
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f)
        return;
    int c = (fseek(f, at, SEEK_SET), fgetc(f));
    CHECK(c != EOF && fseek(f, at, SEEK_SET) == 0 && fputc(c ^ 0x5a, f) != EOF);
    CHECK(fclose(f) == 0);
    flips++;
    struct timespec t[2] = {{.tv_sec = 1000000000 + flips}, {.tv_sec = 1000000000 + flips}};
    CHECK(utimensat(AT_FDCWD, path, t, 0) == 0);
}

static void test_failures(void)
{
    lego_graph g;
    CHECK_OK(harness_load_model("resnet18", &g));
    block_set bs;
    CHECK_OK(blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs));
    extract_options opt = {.sparsities = sparsities, .n_sparsities = 4};
    char dir[512], path[640], path2[640];
    snprintf(dir, sizeof dir, "%s/bad.lib", scratch);
    block_library lib;

    /* an interrupted extraction leaves nothing */
    int seen = 0;
    opt.progress = stop_after_three;
    opt.ctx = &seen;
    CHECK_FAILS(library_extract(&g, &bs, NULL, dir, &opt, NULL), LEGO_ERR_IO, "interrupted");
    CHECK(seen == 3);
    CHECK(!file_exists(dir));
    CHECK(count_entries(scratch, "bad.lib.") == 0);
    opt.progress = NULL;

    /* a good one; then into an existing directory */
    CHECK_OK(library_extract(&g, &bs, NULL, dir, &opt, NULL));
    CHECK_FAILS(library_extract(&g, &bs, NULL, dir, &opt, NULL), LEGO_ERR_ARG, "already exists (use --force");
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    char want_sha[65], sha[65];
    CHECK_OK(sha256_file_hex(path, want_sha, NULL));
    /* --force with an interruption keeps the old library as it was */
    opt.force = true;
    opt.progress = stop_after_three;
    CHECK_FAILS(library_extract(&g, &bs, NULL, dir, &opt, NULL), LEGO_ERR_IO, "interrupted");
    CHECK_OK(sha256_file_hex(path, sha, NULL));
    CHECK(strcmp(sha, want_sha) == 0);
    CHECK_OK(library_open(dir, &lib));
    library_free(&lib);
    CHECK(count_entries(scratch, "bad.lib.") == 0);
    opt.progress = NULL;
    /* --force replaces a library, and only once the new one is whole */
    double other[] = {0, 0.5};
    opt.sparsities = other;
    opt.n_sparsities = 2;
    CHECK_OK(library_extract(&g, &bs, NULL, dir, &opt, &lib));
    CHECK(lib.n_sparsities == 2 && lib.blocks[0].n_desc == 2);
    library_free(&lib);
    CHECK_OK(library_open(dir, &lib));
    CHECK(lib.n_sparsities == 2);
    library_free(&lib);
    snprintf(path2, sizeof path2, "%s/blocks/block-0-0.30.onnx", dir);
    CHECK(!file_exists(path2)); /* the old library's files are gone */
    /* --force never replaces what is not a library */
    char other_dir[512];
    snprintf(other_dir, sizeof other_dir, "%s/precious", scratch);
    mkdir(other_dir, 0777);
    snprintf(path2, sizeof path2, "%s/notes.txt", other_dir);
    CHECK_OK(file_write_atomic(path2, "keep me", 7));
    CHECK_FAILS(library_extract(&g, &bs, NULL, other_dir, &opt, NULL), LEGO_ERR_ARG,
                "exists and is not a block library; not replacing it");
    CHECK(file_exists(path2));
    opt.force = false;
    opt.sparsities = sparsities;
    opt.n_sparsities = 4;
    /* bad sparsities */
    double bad[] = {0, 1.5};
    opt.sparsities = bad;
    CHECK_FAILS(library_extract(&g, &bs, NULL, other_dir, &opt, NULL), LEGO_ERR_ARG, "sparsity 1.5 is outside [0, 1)");
    opt.sparsities = sparsities;

    /* stale temporary directories of killed extractions go away */
    char dir2[512], stale[600];
    snprintf(dir2, sizeof dir2, "%s/fresh.lib", scratch);
    snprintf(stale, sizeof stale, "%s.tmp.%d", dir2, 999999999);
    mkdir(stale, 0777);
    CHECK_OK(library_extract(&g, &bs, NULL, dir2, &opt, NULL));
    CHECK(!file_exists(stale));

    /* tampering */
    snprintf(path, sizeof path, "%s/blocks/block-2-0.60.onnx", dir2);
    flip_byte(path, 100);
    snprintf(path2, sizeof path2, "%s/blocks/block-2-0.60.onnx does not match the manifest (SHA-256 differs): the "
                                  "library was modified after extraction", dir2);
    CHECK_FAILS(library_open(dir2, &lib), LEGO_ERR_FORMAT, path2);
    flip_byte(path, 100);
    CHECK_OK(library_open(dir2, &lib));
    /* opening hashed every file once; loading unchanged files hashes none */
    int files = 1;
    for (int b = 0; b < lib.n_blocks; b++)
        files += lib.blocks[b].n_desc;
    CHECK(lib.files_hashed == files);
    lego_graph *dg;
    CHECK_OK(library_descendant(&lib, 1, 1, &dg));
    CHECK_OK(library_frame(&lib, &dg));
    CHECK(lib.files_hashed == files);
    /* modified after opening: caught when loaded */
    flip_byte(path, 100);
    CHECK_FAILS(library_descendant(&lib, 2, 2, &dg), LEGO_ERR_FORMAT, "SHA-256 differs");
    CHECK(lib.files_hashed == files + 1);
    flip_byte(path, 100);
    CHECK_OK(library_descendant(&lib, 2, 2, &dg));
    CHECK(lib.files_hashed == files + 2);
    /* unloaded, it is read again on the next use, and hashed again only if
     * the file changed since its hash last matched */
    library_unload(&lib, 2, 2);
    CHECK(lib.blocks[2].desc[2].g == NULL);
    CHECK_OK(library_descendant(&lib, 2, 2, &dg));
    CHECK(lib.files_hashed == files + 2);
    library_unload(&lib, 2, 2);
    flip_byte(path, 100);
    CHECK_FAILS(library_descendant(&lib, 2, 2, &dg), LEGO_ERR_FORMAT, "SHA-256 differs");
    flip_byte(path, 100);
    CHECK_OK(library_descendant(&lib, 2, 2, &dg));
    CHECK(dg && lib.blocks[2].desc[2].g == dg);
    CHECK(lib.files_hashed == files + 4);
    /* cut short after opening: the error names both sizes */
    library_unload(&lib, 2, 2);
    unsigned char *whole;
    size_t whole_len;
    CHECK_OK(file_read_all(path, &whole, &whole_len));
    CHECK_OK(file_write_atomic(path, whole, whole_len - 7));
    char sizes[96];
    snprintf(sizes, sizeof sizes, "(%zu bytes, the manifest says %zu)", whole_len - 7, whole_len);
    CHECK_FAILS(library_descendant(&lib, 2, 2, &dg), LEGO_ERR_FORMAT, sizes);
    CHECK_OK(file_write_atomic(path, whole, whole_len));
    free(whole);
    CHECK_OK(library_descendant(&lib, 2, 2, &dg));
    library_free(&lib);
    /* a file grown, one missing */
    unsigned char *buf;
    size_t len;
    CHECK_OK(file_read_all(path, &buf, &len));
    CHECK_OK(file_write_atomic(path, buf, len - 1));
    CHECK_FAILS(library_open(dir2, &lib), LEGO_ERR_FORMAT, "bytes, the manifest says");
    remove(path);
    CHECK_FAILS(library_open(dir2, &lib), LEGO_ERR_FORMAT, "block-2-0.60.onnx is missing: the library is incomplete");
    CHECK_OK(file_write_atomic(path, buf, len));
    free(buf);
    CHECK_OK(library_open(dir2, &lib));
    library_free(&lib);
    /* the manifest: truncated, not JSON, a future version, a field missing */
    snprintf(path, sizeof path, "%s/manifest.json", dir2);
    CHECK_OK(file_read_all(path, &buf, &len));
    CHECK_OK(file_write_atomic(path, buf, len / 2));
    CHECK_FAILS(library_open(dir2, &lib), LEGO_ERR_FORMAT, "manifest.json is not valid JSON (truncated or edited?)");
    CHECK_OK(file_write_atomic(path, "", 0));
    CHECK_FAILS(library_open(dir2, &lib), LEGO_ERR_FORMAT, "manifest.json is empty");
    char *text = malloc(len + 1);
    memcpy(text, buf, len);
    text[len] = 0;
    char *v = strstr(text, "\"format_version\":\t1");
    CHECK(v != NULL);
    if (v) {
        v[strlen("\"format_version\":\t")] = '2';
        CHECK_OK(file_write_atomic(path, text, len));
        CHECK_FAILS(library_open(dir2, &lib), LEGO_ERR_UNSUPPORTED, "format_version 2 is not supported (this legodnn reads 1)");
        v[strlen("\"format_version\":\t")] = '1';
    }
    char *f = strstr(text, "\"weight_bytes\"");
    CHECK(f != NULL);
    if (f) {
        memcpy(f, "\"weight_bytez\"", 14);
        CHECK_OK(file_write_atomic(path, text, len));
        CHECK_FAILS(library_open(dir2, &lib), LEGO_ERR_FORMAT,
                    "manifest.json: blocks[0].descendants[0]: 'weight_bytes' is missing or not a number");
    }
    free(text);
    CHECK_OK(file_write_atomic(path, buf, len));
    free(buf);
    CHECK_OK(library_open(dir2, &lib));
    library_free(&lib);
    /* not a library at all */
    CHECK_FAILS(library_open(other_dir, &lib), LEGO_ERR_FORMAT, "is not a block library: it has no manifest.json");
    snprintf(path2, sizeof path2, "%s/nope", scratch);
    CHECK_FAILS(library_open(path2, &lib), LEGO_ERR_IO, "cannot open");

    block_set_free(&bs);
    graph_free(&g);
}

/* ---- updates by the later stages ------------------------------------------------------------ */

/* library_replace_descendant writes under a new name and library_save
 * switches the manifest: a reader sees a valid library at every step, and a
 * replacement never saved leaves no file behind. */
static void test_updates(void)
{
    lego_graph g;
    CHECK_OK(harness_load_model("resnet18", &g));
    block_set bs;
    CHECK_OK(blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs));
    extract_options opt = {.sparsities = sparsities, .n_sparsities = 4};
    char dir[512], path[700];
    snprintf(dir, sizeof dir, "%s/update.lib", scratch);
    block_library lib, reader;
    lego_status st = library_extract(&g, &bs, NULL, dir, &opt, &lib);
    CHECK_OK(st);
    if (st.code) {
        block_set_free(&bs);
        graph_free(&g);
        return;
    }
    lego_graph *d;
    CHECK_OK(library_descendant(&lib, 1, 2, &d));
    /* change a weight so the file differs */
    for (int v = 0; v < d->n_values; v++)
        if (d->values[v].kind == VALUE_INITIALIZER && d->values[v].t.dtype == LEGO_F32) {
            ((float *)d->values[v].t.data)[0] += 1;
            break;
        }
    char old_sha[65];
    strcpy(old_sha, lib.blocks[1].desc[2].sha256);
    CHECK_OK(library_replace_descendant(&lib, 1, 2, d));
    CHECK(strcmp(lib.blocks[1].desc[2].file, "blocks/block-1-0.60.r1.onnx") == 0);
    CHECK(strcmp(lib.blocks[1].desc[2].sha256, old_sha) != 0);
    snprintf(path, sizeof path, "%s/blocks/block-1-0.60.r1.onnx", dir);
    CHECK(file_exists(path));
    /* not saved yet: a reader sees the old library, whole */
    CHECK_OK(library_open(dir, &reader));
    CHECK(strcmp(reader.blocks[1].desc[2].sha256, old_sha) == 0);
    library_free(&reader);
    /* never saved: the new file goes away with the library */
    library_free(&lib);
    CHECK(!file_exists(path));
    CHECK_OK(library_open(dir, &lib));

    /* saved: the manifest names the new file, the old one is gone */
    CHECK_OK(library_descendant(&lib, 1, 2, &d));
    CHECK_OK(library_replace_descendant(&lib, 1, 2, d));
    CHECK_OK(library_set_number(library_descendant_json(&lib, 1, 2), "retraining_loss", 0.25));
    CHECK_OK(library_save(&lib));
    library_free(&lib);
    CHECK(file_exists(path));
    snprintf(path, sizeof path, "%s/blocks/block-1-0.60.onnx", dir);
    CHECK(!file_exists(path));
    CHECK_OK(library_open(dir, &lib));
    CHECK(strcmp(lib.blocks[1].desc[2].file, "blocks/block-1-0.60.r1.onnx") == 0);
    CHECK_OK(library_descendant(&lib, 1, 2, &d));
    /* a second rewrite: .r2, and .r1 goes */
    CHECK_OK(library_replace_descendant(&lib, 1, 2, d));
    CHECK(strcmp(lib.blocks[1].desc[2].file, "blocks/block-1-0.60.r2.onnx") == 0);
    CHECK_OK(library_save(&lib));
    library_free(&lib);
    snprintf(path, sizeof path, "%s/blocks/block-1-0.60.r1.onnx", dir);
    CHECK(!file_exists(path));
    CHECK_OK(library_open(dir, &lib));
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(library_descendant_json(&lib, 1, 2), "retraining_loss")) == 0.25);
    library_free(&lib);
    block_set_free(&bs);
    graph_free(&g);
}

int main(void)
{
    snprintf(scratch, sizeof scratch, "/tmp/legodnn-test-library-XXXXXX");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    test_sha256();
    test_names();
    for (int f = 0; families[f]; f++)
        test_family(families[f]);
    test_failures();
    test_updates();
    lego_status st = file_remove_tree(scratch);
    CHECK_OK(st);
    return harness_finish();
}
