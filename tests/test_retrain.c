/* test_retrain.c - block retraining (train/retrain.c).
 *
 * On a library extracted from the built-in resnet18 (width 4, 1x8x8 inputs,
 * 4 classes) and a tiny IDX dataset written here: a 2-epoch run lowers the
 * held-out MSE of every s > 0 descendant, leaves the s = 0 files as they
 * were, and leaves a library that reopens with every hash matching and the
 * retraining results in its manifest; the teacher runs at most once per
 * batch per pass and never in epoch 2 when the features are cached; cached,
 * uncached, one thread or two, and interrupted-then-resumed runs write the
 * same files bit for bit; a descendant that did best in an earlier epoch
 * gets that epoch's weights (kept in the checkpoint, not in memory); bad
 * input fails with a clear message and the library untouched. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "blocks/compose.h"
#include "blocks/detect.h"
#include "blocks/library.h"
#include "core/file.h"
#include "core/sha256.h"
#include "core/threads.h"
#include "graph/autodiff.h"
#include "harness.h"
#include "train/retrain.h"
#include "train/trainer.h"
#include "train/zoo.h"

static char scratch[256];
static const double sparsities[] = {0, 0.3, 0.6, 0.8};
#define N_TRAIN 320
#define CLASSES 4
#define BATCH 16

/* ---- fixtures ------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* An IDX split of n 8x8 images whose brightness tells the class (classes
 * 0..k-1), with some texture: tests/cli_lib.sh's make_idx, byte for byte. */
static void write_idx(const char *dir, const char *prefix, uint32_t n, int k)
{
    char path[512];
    mkdir(dir, 0755);
    uint8_t *img = malloc(16 + (size_t)n * 64), *lab = malloc(8 + n);
    put_be32(img, 0x803), put_be32(img + 4, n), put_be32(img + 8, 8), put_be32(img + 12, 8);
    put_be32(lab, 0x801), put_be32(lab + 4, n);
    for (uint32_t i = 0; i < n; i++) {
        int v = (int)(i % (uint32_t)k) * 255 / k;
        for (int p = 0; p < 64; p++)
            img[16 + i * 64 + p] = (uint8_t)((v + (p * 7 + (int)i) % 23) % 256);
        lab[8 + i] = (uint8_t)(i % (uint32_t)k);
    }
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    CHECK_OK(file_write_atomic(path, img, 16 + (size_t)n * 64));
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    CHECK_OK(file_write_atomic(path, lab, 8 + n));
    free(img);
    free(lab);
}

static lego_graph model;
static block_set blocks;

static bool extract(const char *name, char *dir, size_t len)
{
    snprintf(dir, len, "%s/%s", scratch, name);
    extract_options opt = {.sparsities = sparsities, .n_sparsities = 4};
    lego_status st = library_extract(&model, &blocks, NULL, dir, &opt, NULL);
    CHECK_OK(st);
    return st.code == LEGO_OK;
}

/* test_kept's learning rate: 2 of the 24 descendants do best after epoch 2
 * of 3 (the other 22 after epoch 3) */
#define KEPT_LR 3e-2f

static retrain_options options(const char *data)
{
    retrain_options o;
    memset(&o, 0, sizeof o);
    o.data = data;
    o.epochs = 2;
    o.batch = BATCH;
    o.lr = 1e-3f;
    o.holdout = 0.2;
    o.cache_bytes = -1;
    o.seed = 1;
    o.quiet = true;
    return o;
}

/* SHA-256 of every file of a library directory (and its blocks/), sorted by
 * name into one string, for "the library is exactly as it was". */
static char *snapshot(const char *dir)
{
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(cap, 1);
    const char *subs[] = {"", "/blocks"};
    for (int s = 0; s < 2; s++) {
        char path[640];
        snprintf(path, sizeof path, "%s%s", dir, subs[s]);
        struct dirent **names;
        int n = scandir(path, &names, NULL, alphasort);
        for (int i = 0; i < n; i++) {
            char file[900], hex[65] = "-";
            snprintf(file, sizeof file, "%s/%s", path, names[i]->d_name);
            if (names[i]->d_name[0] != '.' && strcmp(names[i]->d_name, "blocks") != 0) {
                lego_status st = sha256_file_hex(file, hex, NULL);
                lego_status_free(&st);
                len += (size_t)snprintf(out + len, cap - len, "%s%s/%s %s\n", subs[s], "", names[i]->d_name, hex);
            }
            free(names[i]);
        }
        free(names);
    }
    return out;
}

/* dir/name into path. */
static void lib_file(const char *dir, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
}

/* A snapshot without the line of file `name` (top level); false when it
 * has none. */
static bool drop_line(char *snap, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "/%s ", name);
    char *at = strstr(snap, key), *eol = at ? strchr(at, '\n') : NULL;
    if (eol)
        memmove(at, eol + 1, strlen(eol + 1) + 1);
    return eol != NULL;
}

/* The SHA-256 of descendant (b, d)'s current file. */
static void desc_sha(const block_library *lib, int b, int d, char hex[65])
{
    strcpy(hex, lib->blocks[b].desc[d].sha256);
}

static bool stop_after_one(void *ctx, const retrain_epoch *e)
{
    (void)e;
    (*(int *)ctx)++;
    return false;
}

/* Every descendant file of two libraries is the same. */
static bool same_descendants(const char *a, const char *b)
{
    block_library la, lb;
    lego_status s1 = library_open(a, &la), s2 = library_open(b, &lb);
    CHECK_OK(s1);
    CHECK_OK(s2);
    bool same = s1.code == LEGO_OK && s2.code == LEGO_OK && la.n_blocks == lb.n_blocks;
    for (int i = 0; same && i < la.n_blocks; i++)
        for (int d = 0; d < la.blocks[i].n_desc; d++) {
            char ha[65], hb[65];
            desc_sha(&la, i, d, ha);
            desc_sha(&lb, i, d, hb);
            if (strcmp(ha, hb) != 0) {
                fprintf(stderr, "  block %d descendant %d differs between %s and %s\n", i, d, a, b);
                same = false;
            }
        }
    if (s1.code == LEGO_OK)
        library_free(&la);
    if (s2.code == LEGO_OK)
        library_free(&lb);
    return same;
}

/* ---- a full run ------------------------------------------------------------ */

static void test_run(const char *data)
{
    char dir[512];
    if (!extract("a.lib", dir, sizeof dir))
        return;
    block_library before;
    CHECK_OK(library_open(dir, &before));
    retrain_options o = options(data);
    retrain_result r;
    lego_status st = retrain_library(dir, &o, NULL, NULL, &r);
    CHECK_OK(st);
    if (st.code) {
        library_free(&before);
        return;
    }
    int64_t nb = r.batches, nh = r.holdout_samples / BATCH;
    CHECK(nb == N_TRAIN / BATCH && nh == 4 && r.train_samples == (nb - nh) * BATCH);
    CHECK(r.epochs_done == 2 && r.first_epoch == 0 && r.n_passes == 3);
    /* everything fits: one teacher pass per batch, before the first epoch */
    CHECK(r.cached_batches == nb);
    int64_t per_batch = r.cached_batches ? r.cache_bytes / r.cached_batches : 0;
    CHECK(r.teacher_batches[0] == nb && r.teacher_batches[1] == 0 && r.teacher_batches[2] == 0);
    CHECK(r.n_students == before.n_blocks * 3);
    double before_sum = 0, after_sum = 0;
    for (int i = 0; i < r.n_students; i++) {
        const retrain_student *s = &r.students[i];
        /* every s > 0 descendant ends below where it started on the held-out split */
        CHECK(s->sparsity > 0 && s->best_epoch >= 1 && s->best_loss < s->initial_loss);
        CHECK(isfinite(s->train_loss) && s->train_loss > 0);
        if (!(s->best_loss < s->initial_loss))
            fprintf(stderr, "  block %d s=%g: held-out %g -> %g\n", s->block, s->sparsity, s->initial_loss,
                    s->best_loss);
        before_sum += s->initial_loss;
        after_sum += s->best_loss;
    }
    CHECK(after_sum < 0.9 * before_sum);
    /* the library: reopens (every hash checked), s = 0 untouched, results in the manifest */
    block_library lib;
    st = library_open(dir, &lib);
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        for (int b = 0; b < lib.n_blocks; b++) {
            CHECK(strcmp(lib.blocks[b].desc[0].sha256, before.blocks[b].desc[0].sha256) == 0);
            CHECK(strcmp(lib.blocks[b].desc[0].file, before.blocks[b].desc[0].file) == 0);
            cJSON *j0 = library_descendant_json(&lib, b, 0);
            CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j0, "retraining_loss")) == 0);
            for (int d = 1; d < lib.blocks[b].n_desc; d++) {
                const lib_descendant *x = &lib.blocks[b].desc[d];
                CHECK(strcmp(x->sha256, before.blocks[b].desc[d].sha256) != 0);
                CHECK(strstr(x->file, ".r1.onnx") != NULL);
                char old[900];
                snprintf(old, sizeof old, "%s/%s", dir, before.blocks[b].desc[d].file);
                CHECK(!file_exists(old)); /* superseded files are gone */
                cJSON *j = library_descendant_json(&lib, b, d);
                double loss = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "retraining_loss"));
                double train = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "retraining_train_loss"));
                CHECK(loss > 0 && isfinite(loss) && train > 0 && isfinite(train));
                lego_graph *g;
                CHECK_OK(library_descendant(&lib, b, d, &g));
            }
        }
        cJSON *rt = cJSON_GetObjectItem(lib.manifest, "retrain");
        CHECK(cJSON_IsObject(rt));
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(rt, "epochs")) == 2);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(rt, "teacher_passes")) == (double)nb);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(rt, "holdout_samples")) == (double)(nh * BATCH));
        CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(rt, "dataset")), data) == 0);
        /* the all-0.8 composition builds and runs at the library's shapes */
        int *choice = calloc((size_t)lib.n_blocks, sizeof *choice);
        for (int b = 0; b < lib.n_blocks; b++)
            choice[b] = 3;
        lego_graph c;
        st = compose_model(&lib, choice, &c);
        CHECK_OK(st);
        if (st.code == LEGO_OK) {
            train_plan p;
            int in = c.inputs[0], out = c.outputs[0];
            CHECK_OK(train_plan_build_ex(&c, &in, 1, &out, 1, NULL, 0, false, &p));
            lego_tensor x = c.values[in].t;
            x.owns = 0;
            x.data = calloc((size_t)lego_tensor_numel(&x), sizeof(float));
            const lego_tensor *xs[1] = {&x};
            CHECK_OK(train_forward(&p, xs, false));
            const lego_tensor *y = train_output(&p, 0);
            CHECK(y->rank == 2 && y->dims[1] == CLASSES && isfinite(((float *)y->data)[0]));
            free(x.data);
            train_plan_free(&p);
            graph_free(&c);
        }
        free(choice);
        library_free(&lib);
    }
    char state[600];
    lib_file(dir, RETRAIN_STATE_FILE, state, sizeof state);
    CHECK(!file_exists(state));
    retrain_result_free(&r);
    library_free(&before);

    /* no cache: the teacher runs for every batch of every epoch (the held-out
     * ones before the first too), and the result is the same bit for bit */
    char dir2[512];
    if (extract("nocache.lib", dir2, sizeof dir2)) {
        o.cache_bytes = 0;
        st = retrain_library(dir2, &o, NULL, NULL, &r);
        CHECK_OK(st);
        CHECK(r.cached_batches == 0 && r.cache_bytes == 0);
        if (r.teacher_batches)
            CHECK(r.teacher_batches[0] == nh && r.teacher_batches[1] == nb && r.teacher_batches[2] == nb);
        retrain_result_free(&r);
        CHECK(same_descendants(dir, dir2));
    }
    /* a cache for 5 batches: the 4 held-out ones, then the first training
     * batch; the teacher runs for the other training batches every epoch */
    char dir3[512];
    if (per_batch > 0 && extract("partial.lib", dir3, sizeof dir3)) {
        o.cache_bytes = 5 * per_batch + per_batch / 2;
        CHECK_OK(retrain_library(dir3, &o, NULL, NULL, &r));
        CHECK(r.cached_batches == 5);
        if (r.teacher_batches)
            CHECK(r.teacher_batches[0] == 5 && r.teacher_batches[1] == nb - 5 && r.teacher_batches[2] == nb - 5);
        retrain_result_free(&r);
        CHECK(same_descendants(dir, dir3));
    }
    /* one thread: the same bits as the pool's */
    char dir4[512];
    if (extract("one-thread.lib", dir4, sizeof dir4)) {
        int threads = par_threads();
        lego_set_num_threads(1);
        o.cache_bytes = -1;
        CHECK_OK(retrain_library(dir4, &o, NULL, NULL, &r));
        retrain_result_free(&r);
        lego_set_num_threads(threads);
        CHECK(same_descendants(dir, dir4));
    }
    /* one thread and no cache: the students run block by block inside every
     * teacher pass, in the teacher's own memory (what it still needs waits
     * aside meanwhile); the same bits again */
    char dir6[512];
    if (extract("one-thread-nocache.lib", dir6, sizeof dir6)) {
        int threads = par_threads();
        lego_set_num_threads(1);
        o.cache_bytes = 0;
        CHECK_OK(retrain_library(dir6, &o, NULL, NULL, &r));
        CHECK(r.shared_memory);
        retrain_result_free(&r);
        lego_set_num_threads(threads);
        o.cache_bytes = -1;
        CHECK(same_descendants(dir, dir6));
    }

    /* interrupted after epoch 1: the library is exactly as it was, the
     * checkpoint is there; resuming ends where the uninterrupted run did */
    char dir5[512];
    if (extract("resume.lib", dir5, sizeof dir5)) {
        char *snap = snapshot(dir5);
        int calls = 0;
        CHECK_FAILS(retrain_library(dir5, &o, stop_after_one, &calls, &r), LEGO_ERR_ARG, "interrupted after epoch 1 of 2");
        CHECK(calls == 1 && r.epochs_done == 1);
        retrain_result_free(&r);
        char *after = snapshot(dir5);
        /* the same files plus retrain.state */
        CHECK(drop_line(after, RETRAIN_STATE_FILE));
        CHECK(strcmp(snap, after) == 0);
        free(after);
        block_library l;
        CHECK_OK(library_open(dir5, &l));
        library_free(&l);

        /* a resume with other options is refused, the library untouched */
        retrain_options other = o;
        other.lr = 2e-3f;
        other.resume = true;
        CHECK_FAILS(retrain_library(dir5, &other, NULL, NULL, &r), LEGO_ERR_ARG, "learning rate");
        retrain_result_free(&r);
        other = o;
        other.batch = 8;
        other.resume = true;
        CHECK_FAILS(retrain_library(dir5, &other, NULL, NULL, &r), LEGO_ERR_ARG, "with batch 16 (this run: 8)");
        retrain_result_free(&r);

        o.resume = true;
        o.cache_bytes = 0;
        st = retrain_library(dir5, &o, NULL, NULL, &r);
        CHECK_OK(st);
        CHECK(r.first_epoch == 1 && r.epochs_done == 2);
        if (r.teacher_batches)
            CHECK(r.teacher_batches[0] == 0 && r.teacher_batches[1] == 0 && r.teacher_batches[2] == nb);
        retrain_result_free(&r);
        CHECK(same_descendants(dir, dir5));
        free(snap);
        o.resume = false;
        o.cache_bytes = -1;
    }
}

/* ---- two stages ------------------------------------------------------------ */

/* ctx: {epochs seen, the one after which to stop} */
static bool stop_at(void *ctx, const retrain_epoch *e)
{
    int *c = ctx;
    (void)e;
    return ++c[0] != c[1];
}


/* Split in two stages, a run writes the same files as in one; interrupted
 * after any epoch of either stage and resumed, it still does; the features
 * file between the stages goes with the run, and one damaged or cut short
 * stops a resume naming it, the library untouched; a run that fails before
 * its first checkpoint leaves no features behind. */
static void test_stages(const char *data)
{
    char one[512], two[512], state[600], feat[600];
    if (!extract("one.lib", one, sizeof one) || !extract("two.lib", two, sizeof two))
        return;
    retrain_options o = options(data);
    o.stages = 1;
    retrain_result r;
    CHECK_OK(retrain_library(one, &o, NULL, NULL, &r));
    CHECK(r.stages == 1 && r.feature_file_bytes == 0);
    retrain_result_free(&r);

    o.stages = 2;
    CHECK_OK(retrain_library(two, &o, NULL, NULL, &r));
    CHECK(r.stages == 2 && r.stage_blocks[0] > 0 && r.stage_blocks[1] > 0 &&
          r.stage_blocks[0] + r.stage_blocks[1] == blocks.n_blocks);
    CHECK(r.feature_file_bytes > 0 && r.epochs_done == 2 && r.first_stage == 1);
    /* each stage's teacher runs every batch in epoch 1; in epoch 2 only the
     * first stage's does: the second reads the records it saved */
    if (r.teacher_batches)
        CHECK(r.teacher_batches[1] == 2 * r.batches && r.teacher_batches[2] == r.batches);
    retrain_result_free(&r);
    CHECK(same_descendants(one, two));
    lib_file(two, RETRAIN_FEATURES_FILE, feat, sizeof feat);
    lib_file(two, RETRAIN_STATE_FILE, state, sizeof state);
    CHECK(!file_exists(feat) && !file_exists(state));

    /* stopped after epoch 1 or 2 of stage 1, or epoch 1 of stage 2 */
    for (int stop = 1; stop <= 3; stop++) {
        char dir[512], name[32];
        snprintf(name, sizeof name, "stop%d.lib", stop);
        if (!extract(name, dir, sizeof dir))
            return;
        int c[2] = {0, stop};
        CHECK_FAILS(retrain_library(dir, &o, stop_at, c, &r), LEGO_ERR_ARG,
                    stop == 1 ? "after stage 1's epoch 1 of 2" : stop == 2 ? "after stage 1's epoch 2 of 2"
                                                                   : "after stage 2's epoch 1 of 2");
        retrain_result_free(&r);
        lib_file(dir, RETRAIN_FEATURES_FILE, feat, sizeof feat);
        lib_file(dir, RETRAIN_STATE_FILE, state, sizeof state);
        CHECK(file_exists(feat) && file_exists(state));
        /* the checkpoint's split wins over the options' */
        o.resume = true;
        o.stages = stop == 3 ? 1 : 0;
        CHECK_OK(retrain_library(dir, &o, NULL, NULL, &r));
        CHECK(r.first_stage == (stop <= 2 ? 1 : 2) && r.first_epoch == (stop == 3 ? 1 : stop) && r.stages == 2);
        retrain_result_free(&r);
        o.resume = false;
        o.stages = 2;
        CHECK(same_descendants(one, dir));
        CHECK(!file_exists(feat) && !file_exists(state));
    }

    /* the features damaged, then cut short, between the stages */
    char bad[512];
    if (!extract("damaged.lib", bad, sizeof bad))
        return;
    int c[2] = {0, 2};
    CHECK_FAILS(retrain_library(bad, &o, stop_at, c, &r), LEGO_ERR_ARG, "interrupted");
    retrain_result_free(&r);
    lib_file(bad, RETRAIN_FEATURES_FILE, feat, sizeof feat);
    FILE *f = fopen(feat, "r+b");
    CHECK(f != NULL);
    long size = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fseek(f, size / 2, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, size / 2, SEEK_SET);
        fputc(ch ^ 0x40, f);
        fclose(f);
    }
    char *snap = snapshot(bad);
    o.resume = true;
    CHECK_FAILS(retrain_library(bad, &o, NULL, NULL, &r), LEGO_ERR_FORMAT, RETRAIN_FEATURES_FILE " is damaged (batch ");
    retrain_result_free(&r);
    /* the library and the checkpoint as they were (the features file is
     * scratch: the second stage adds its own records to it as it goes) */
    char *after = snapshot(bad);
    drop_line(snap, RETRAIN_FEATURES_FILE);
    drop_line(after, RETRAIN_FEATURES_FILE);
    CHECK(strcmp(snap, after) == 0);
    CHECK(strstr(snap, RETRAIN_STATE_FILE) != NULL);
    free(after);
    CHECK(truncate(feat, size / 3) == 0);
    CHECK_FAILS(retrain_library(bad, &o, NULL, NULL, &r), LEGO_ERR_FORMAT, RETRAIN_FEATURES_FILE " is cut short (batch ");
    retrain_result_free(&r);
    free(snap);

    /* a run that fails in its first epoch: no checkpoint, no features */
    char nan[512];
    if (!extract("diverging.lib", nan, sizeof nan))
        return;
    o.resume = false;
    o.lr = 1e30f;
    CHECK_FAILS(retrain_library(nan, &o, NULL, NULL, &r), LEGO_ERR_ARG, "the loss became");
    retrain_result_free(&r);
    lib_file(nan, RETRAIN_FEATURES_FILE, feat, sizeof feat);
    lib_file(nan, RETRAIN_STATE_FILE, state, sizeof state);
    CHECK(!file_exists(feat) && !file_exists(state));
    o.lr = 1e-3f;
    o.stages = 3;
    CHECK_FAILS(retrain_library(nan, &o, NULL, NULL, &r), LEGO_ERR_ARG, "stages must be 0 (decide), 1 or 2, not 3");
    retrain_result_free(&r);
}

/* The kept weights come back from the checkpoint (they are not kept in
 * memory): at a learning rate high enough that some descendants do best
 * after epoch 1 or 2 of 3, each descendant's file is the one a run of as
 * many epochs as its best epoch writes. */
static void test_kept(const char *data)
{
    char dir[512];
    if (!extract("kept.lib", dir, sizeof dir))
        return;
    retrain_options o = options(data);
    o.lr = KEPT_LR;
    o.epochs = 3;
    retrain_result r;
    CHECK_OK(retrain_library(dir, &o, NULL, NULL, &r));
    int n = r.n_students, *best = calloc((size_t)n + 1, sizeof *best), count[4] = {0};
    for (int i = 0; i < n; i++) {
        best[i] = r.students[i].best_epoch;
        count[best[i] < 0 || best[i] > 3 ? 0 : best[i]]++;
    }
    CHECK(count[1] + count[2] > 0 && count[3] > 0);
    block_library full;
    CHECK_OK(library_open(dir, &full));
    for (int e = 1; e <= 2; e++) {
        char sub[512], name[32];
        snprintf(name, sizeof name, "kept-%d.lib", e);
        if (!count[e] || !extract(name, sub, sizeof sub))
            continue;
        o.epochs = e;
        retrain_result rs;
        CHECK_OK(retrain_library(sub, &o, NULL, NULL, &rs));
        retrain_result_free(&rs);
        block_library part;
        CHECK_OK(library_open(sub, &part));
        for (int i = 0; i < n; i++) {
            const retrain_student *s = &r.students[i];
            bool same = strcmp(full.blocks[s->block].desc[s->desc].sha256, part.blocks[s->block].desc[s->desc].sha256) == 0;
            if (best[i] == e)
                CHECK(same);
            else if (best[i] > e)
                CHECK(!same); /* later weights: the comparison tells them apart */
        }
        library_free(&part);
    }
    library_free(&full);
    free(best);
    retrain_result_free(&r);
}

/* ---- failures -------------------------------------------------------------- */

static void test_failures(const char *data, const char *wide)
{
    char dir[512];
    if (!extract("bad.lib", dir, sizeof dir))
        return;
    char *snap = snapshot(dir);
    retrain_options o = options(data);
    retrain_result r;
    char path[600];

    snprintf(path, sizeof path, "%s/missing.lib", scratch);
    CHECK_FAILS(retrain_library(path, &o, NULL, NULL, &r), LEGO_ERR_IO, "missing.lib: cannot open");
    retrain_result_free(&r);
    CHECK_FAILS(retrain_library(data, &o, NULL, NULL, &r), LEGO_ERR_FORMAT, "is not a block library");
    retrain_result_free(&r);

    o.holdout = 0.7;
    CHECK_FAILS(retrain_library(dir, &o, NULL, NULL, &r), LEGO_ERR_ARG, "held-out fraction must be in (0, 0.5], not 0.7");
    retrain_result_free(&r);
    o.holdout = 0;
    CHECK_FAILS(retrain_library(dir, &o, NULL, NULL, &r), LEGO_ERR_ARG, "held-out fraction");
    retrain_result_free(&r);
    o = options(data);
    o.epochs = 0;
    CHECK_FAILS(retrain_library(dir, &o, NULL, NULL, &r), LEGO_ERR_ARG, "epochs must be");
    retrain_result_free(&r);

    o = options(wide); /* labels 0..5 for a 4-class model */
    CHECK_FAILS(retrain_library(dir, &o, NULL, NULL, &r), LEGO_ERR_SHAPE, "out of range for a model with 4 outputs");
    retrain_result_free(&r);
    snprintf(path, sizeof path, "%s/nowhere", scratch);
    o = options(path);
    CHECK_FAILS(retrain_library(dir, &o, NULL, NULL, &r), LEGO_ERR_IO, "nowhere");
    retrain_result_free(&r);
    o = options(data);
    o.batch = 256; /* one batch: nothing to hold out */
    CHECK_FAILS(retrain_library(dir, &o, NULL, NULL, &r), LEGO_ERR_ARG, "at least two batches");
    retrain_result_free(&r);
    o = options(data);
    o.resume = true; /* with nothing to resume: a fresh run, which then blows up */
    o.lr = 1e30f;
    CHECK_FAILS(retrain_library(dir, &o, NULL, NULL, &r), LEGO_ERR_ARG, "the loss became");
    retrain_result_free(&r);

    /* a damaged checkpoint is refused */
    lib_file(dir, RETRAIN_STATE_FILE, path, sizeof path);
    CHECK_OK(file_write_atomic(path, "LEGORTRN and then nothing that makes sense", 42));
    o = options(data);
    o.resume = true;
    CHECK_FAILS(retrain_library(dir, &o, NULL, NULL, &r), LEGO_ERR_FORMAT, "damaged");
    retrain_result_free(&r);
    /* one of an older format (version 2 ended in a SHA-256): named as such */
    unsigned char old[8 + 4 + 40] = "LEGORTRN";
    uint32_t two = 2;
    memcpy(old + 8, &two, 4);
    CHECK_OK(file_write_atomic(path, old, sizeof old));
    CHECK_FAILS(retrain_library(dir, &o, NULL, NULL, &r), LEGO_ERR_FORMAT, "format 2, from an older legodnn");
    retrain_result_free(&r);
    unlink(path);

    char *after = snapshot(dir);
    CHECK(strcmp(snap, after) == 0);
    if (strcmp(snap, after) != 0)
        fprintf(stderr, "before:\n%safter:\n%s", snap, after);
    free(after);
    free(snap);
    block_library lib;
    CHECK_OK(library_open(dir, &lib));
    library_free(&lib);
}

int main(void)
{
    snprintf(scratch, sizeof scratch, "/tmp/legodnn-test-retrain-XXXXXX");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    char data[512], wide[512];
    snprintf(data, sizeof data, "%s/data", scratch);
    snprintf(wide, sizeof wide, "%s/wide", scratch);
    write_idx(data, "train", N_TRAIN, CLASSES);
    write_idx(data, "t10k", 32, CLASSES);
    write_idx(wide, "train", 64, 6);
    write_idx(wide, "t10k", 16, 6);
    /* the teacher: resnet18:8 trained for 4 epochs as `legodnn train` does,
     * so its BatchNorm statistics describe the data */
    lego_status st = zoo_resnet18(8, CLASSES, 1, 8, 8, 1, &model);
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        char out[600];
        snprintf(out, sizeof out, "%s/teacher.onnx", scratch);
        train_options t;
        memset(&t, 0, sizeof t);
        t.data = data, t.out = out, t.epochs = 4, t.batch = BATCH, t.seed = 1, t.augment = true, t.quiet = true;
        t.optim = optim_defaults(OPTIM_SGD);
        t.optim.weight_decay = 5e-4f;
        t.sched = (schedule){.kind = SCHED_COSINE, .base_lr = 0.03f, .epochs = 4};
        train_result tr;
        /* 80 steps at lr 0.1 on 320 images were chaotic: a 3e-6 relative
         * change of the convolution weight gradients (oneDNN's summation
         * order against the portable kernels', or another BLAS kernel under
         * valgrind) gave a teacher with 4x the loss, which failed 18 checks
         * below. At 0.03 the checks pass on teachers trained by either
         * kernels with seeds 1 to 3; the portable ones still train it, so
         * that its bits do not depend on the machine's oneDNN. */
        model.portable_kernels = true;
        lego_status ts = train_classifier(&model, &t, NULL, NULL, &tr);
        model.portable_kernels = false;
        CHECK_OK(ts);
        /* back at batch 1, as a model read from its file is */
        model.values[model.inputs[0]].t.dims[0] = 1;
        if (ts.code == LEGO_OK)
            CHECK_OK(ts = graph_infer(&model));
        if (ts.code == LEGO_OK)
            CHECK_OK(ts = blocks_detect(&model, BLOCKS_DEFAULT_RATIO, &blocks));
        if (ts.code == LEGO_OK) {
            CHECK(blocks.n_blocks >= 4);
            test_run(data);
            test_kept(data);
            test_stages(data);
            test_failures(data, wide);
            block_set_free(&blocks);
        }
        graph_free(&model);
    }
    CHECK_OK(file_remove_tree(scratch));
    return harness_finish();
}
