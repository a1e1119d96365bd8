/* test_profile.c - the task interface (train/task.c) and descendant
 * profiling (profile/profile.c).
 *
 * A tiny 4-class IDX dataset is written here, a built-in resnet18:4 is
 * trained on it for a few epochs and extracted into a block library at
 * sparsities 0, 0.3, 0.6, 0.8. Then: the task feeds and scores batches as
 * `legodnn eval` does, deterministically; the environments follow the
 * original's rule; ΔAcc(b, s) equals the three-environment mean of
 * accuracies computed independently (compose_model + eval_classifier); every
 * composition is evaluated once; the additive estimates are what the deltas
 * say; the manifest gains accuracy_loss and "profile" and reopens; a test
 * subset is honoured and recorded; a task supplied by the application is
 * dispatched to; the default pass that shares compositions' common prefix
 * gives exactly the accuracies of one composed model per pass (here and on
 * the PyTorch ResNet18 fixture); and the failures (labels out of range, wrong channels, a
 * missing dataset) leave the manifest byte for byte as it was. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blocks/compose.h"
#include "blocks/library.h"
#include "core/file.h"
#include "core/tensor.h"
#include "graph/autodiff.h"
#include "harness.h"
#include "onnx/onnx_import.h"
#include "profile/profile.h"
#include "train/task.h"
#include "train/trainer.h"
#include "train/zoo.h"

static char scratch[256];
static char data_dir[300], data10_dir[300], cifar_dir[300], lib_dir[300], model_path[300];

static void be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    fwrite(b, 1, 4, f);
}

/* 8x8 images whose brightness tells the class (as test_train_cli.sh) */
static void write_idx(const char *dir, const char *prefix, int n, int k)
{
    char path[400];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *f = fopen(path, "wb");
    fwrite("\0\0\x08\x03", 1, 4, f);
    be32(f, (uint32_t)n), be32(f, 8), be32(f, 8);
    for (int i = 0; i < n; i++) {
        int v = (i % k) * 255 / k;
        for (int p = 0; p < 64; p++)
            fputc((v + (p * 7 + i) % 23) % 256, f);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    f = fopen(path, "wb");
    fwrite("\0\0\x08\x01", 1, 4, f);
    be32(f, (uint32_t)n);
    for (int i = 0; i < n; i++)
        fputc(i % k, f);
    fclose(f);
}

/* A CIFAR-100 binary directory: 3-channel 32x32 images. */
static void write_cifar100(const char *dir)
{
    mkdir(dir, 0755);
    const char *names[2] = {"train.bin", "test.bin"};
    for (int s = 0; s < 2; s++) {
        char path[400];
        snprintf(path, sizeof path, "%s/%s", dir, names[s]);
        FILE *f = fopen(path, "wb");
        for (int i = 0; i < 8; i++) {
            fputc(0, f), fputc(i % 4, f);
            for (int p = 0; p < 3072; p++)
                fputc((p + i) % 256, f);
        }
        fclose(f);
    }
}

static const double sparsities[4] = {0, 0.3, 0.6, 0.8};

/* Train resnet18:W on the dataset and extract a library of it into dir. */
static int make_library(int width, int in_c, const char *dir, const char *onnx)
{
    lego_graph g;
    lego_status st = zoo_resnet18(width, 4, in_c, 8, 8, 1, &g);
    CHECK_OK(st);
    if (st.code)
        return 0;
    train_options o;
    memset(&o, 0, sizeof o);
    o.data = data_dir;
    o.out = onnx;
    o.epochs = in_c == 1 ? 15 : 1;
    o.batch = 16;
    o.optim = optim_defaults(OPTIM_SGD);
    o.optim.momentum = 0.9f;
    o.sched = (schedule){SCHED_COSINE, 0.1f, o.epochs, 0, 0, 0, 0, 0};
    o.seed = 1;
    o.augment = true;
    o.quiet = true;
    train_result tr;
    st = train_classifier(&g, &o, NULL, NULL, &tr);
    CHECK_OK(st);
    graph_free(&g);
    if (st.code)
        return 0;
    st = onnx_load_file(onnx, &g);
    CHECK_OK(st);
    if (st.code)
        return 0;
    block_set bs;
    st = blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs);
    CHECK_OK(st);
    extract_options eo = {sparsities, 4, true, NULL, NULL};
    if (st.code == LEGO_OK) {
        st = library_extract(&g, &bs, onnx, dir, &eo, NULL);
        CHECK_OK(st);
        block_set_free(&bs);
    }
    graph_free(&g);
    return st.code == LEGO_OK;
}

/* ---- the task interface ------------------------------------------------ */

/* Accuracy of g on the test split through the task, as profile.c scores. */
static double task_accuracy(const lego_task *t, lego_graph *g, int batch, int64_t max_test, int64_t *seen)
{
    task_data *d = NULL;
    lego_status st = task_open(t, data_dir, g, batch, -1, max_test, 0, &d);
    CHECK_OK(st);
    if (st.code)
        return NAN;
    CHECK_OK(task_set_batch(g, batch));
    const lego_tensor *x0 = &g->values[g->inputs[0]].t;
    lego_tensor x;
    memset(&x, 0, sizeof x);
    int64_t dims[4] = {batch, x0->dims[1], x0->dims[2], x0->dims[3]};
    tensor_set_shape(&x, LEGO_F32, 4, dims);
    CHECK_OK(tensor_alloc(&x));
    train_plan p;
    int in = g->inputs[0];
    CHECK_OK(train_plan_build(g, &in, 1, g->outputs, 1, NULL, 0, &p));
    const lego_tensor *xs[1] = {&x};
    int64_t got, batches = 0;
    *seen = 0;
    task_start(d, SPLIT_TEST, 0);
    while ((got = task_next(d, SPLIT_TEST, x.data)) > 0) {
        CHECK_OK(train_forward(&p, xs, false));
        const lego_tensor *outs[1] = {train_output(&p, 0)};
        task_score(d, outs, got);
        *seen += got;
        batches++;
    }
    CHECK(batches == task_batches(d, SPLIT_TEST));
    CHECK(task_batches(d, SPLIT_TRAIN) == 0); /* left out with max_train < 0 */
    double acc = task_metric(d, true);
    CHECK(task_metric(d, false) == 0); /* reset */
    train_plan_free(&p);
    tensor_release(&x);
    task_close(d);
    return acc;
}

static void test_task(void)
{
    CHECK(task_find("classification") == &lego_task_classification);
    CHECK(task_find("detection") == NULL);
    CHECK(task_find(NULL) == NULL);

    lego_graph g;
    CHECK_OK(onnx_load_file(model_path, &g));
    eval_result er;
    CHECK_OK(eval_classifier(&g, data_dir, 16, 0, true, &er));
    int64_t seen;
    double acc = task_accuracy(&lego_task_classification, &g, 16, 0, &seen);
    CHECK(seen == 64 && er.samples == 64);
    CHECK(acc == er.accuracy);
    CHECK(acc > 0.5); /* it learned something */
    acc = task_accuracy(&lego_task_classification, &g, 16, 10, &seen);
    CHECK(seen == 10);

    /* the train split: shuffled, the same for the same (seed, epoch); the
     * short tail dropped (96 = 6 x 16, so 6 batches) */
    task_data *d;
    CHECK_OK(task_open(&lego_task_classification, data_dir, &g, 16, 0, -1, 7, &d));
    CHECK(task_batches(d, SPLIT_TRAIN) == 6 && task_batches(d, SPLIT_TEST) == 0);
    float *a = malloc(sizeof *a * 16 * 64), *b = malloc(sizeof *b * 16 * 64);
    task_start(d, SPLIT_TRAIN, 3);
    CHECK(task_next(d, SPLIT_TRAIN, a) == 16);
    task_start(d, SPLIT_TRAIN, 3);
    CHECK(task_next(d, SPLIT_TRAIN, b) == 16);
    CHECK(memcmp(a, b, sizeof *a * 16 * 64) == 0);
    task_start(d, SPLIT_TRAIN, 4);
    CHECK(task_next(d, SPLIT_TRAIN, b) == 16);
    CHECK(memcmp(a, b, sizeof *a * 16 * 64) != 0);
    task_start(d, SPLIT_TEST, 0);
    CHECK(task_next(d, SPLIT_TEST, b) == 0);
    task_close(d);
    free(a), free(b);

    /* failures name the problem */
    CHECK_FAILS(task_open(&lego_task_classification, data10_dir, &g, 16, 0, 0, 0, &d), LEGO_ERR_SHAPE,
                "out of range for a model with 4 outputs");
    CHECK(d == NULL);
    CHECK_FAILS(task_open(&lego_task_classification, "/nonexistent-dataset", &g, 16, 0, 0, 0, &d),
                LEGO_ERR_IO, "nonexistent");
    CHECK_FAILS(task_open(&lego_task_classification, data_dir, &g, 0, 0, 0, 0, &d), LEGO_ERR_ARG, "batch");
    graph_free(&g);
}

/* ---- profiling --------------------------------------------------------- */

static void test_environments(void)
{
    int e[PROFILE_MAX_ENVS];
    CHECK(profile_environments(4, e) == 3 && e[0] == 0 && e[1] == 1 && e[2] == 3);
    CHECK(profile_environments(5, e) == 3 && e[0] == 0 && e[1] == 1 && e[2] == 4); /* doc: 0, 0.2, 0.8 */
    CHECK(profile_environments(3, e) == 3 && e[0] == 0 && e[1] == 0 && e[2] == 2); /* doc: 0, 0.0, 0.8 */
    CHECK(profile_environments(2, e) == 3 && e[0] == 0 && e[1] == 0 && e[2] == 1);
    CHECK(profile_environments(1, e) == 2 && e[0] == 0 && e[1] == 0);
    CHECK(profile_environments(7, e) == 3 && e[0] == 0 && e[1] == 2 && e[2] == 6);
}

typedef struct counter {
    int calls, last_done, last_total;
} counter;

static bool count_progress(void *ctx, int done, int total, double acc)
{
    counter *c = ctx;
    (void)acc;
    c->calls++;
    c->last_done = done, c->last_total = total;
    return true;
}

static bool stop_at_3(void *ctx, int done, int total, double acc)
{
    (void)ctx, (void)total, (void)acc;
    return done < 3;
}

static bool stop_now(void *ctx, int done, int total, double acc)
{
    (void)ctx, (void)done, (void)total, (void)acc;
    return false;
}

/* Accuracy of one composition, independently of profile.c. */
static double composed_accuracy(block_library *lib, const int *choice)
{
    lego_graph g;
    lego_status st = compose_model(lib, choice, &g);
    CHECK_OK(st);
    if (st.code)
        return NAN;
    eval_result er;
    CHECK_OK(eval_classifier(&g, data_dir, 64, 0, true, &er));
    graph_free(&g);
    return er.accuracy;
}

/* An application's task: classification with a counter on score, to show
 * a task from outside is what the pipeline calls. */
static int outside_scores;
static void outside_score(void *state, const lego_tensor *const *outputs, int n_outputs, int64_t n)
{
    outside_scores++;
    lego_task_classification.score(state, outputs, n_outputs, n);
}

static bool same_file(const char *path, const unsigned char *want, size_t want_len)
{
    unsigned char *buf;
    size_t len;
    lego_status st = file_read_all(path, &buf, &len);
    if (st.code) {
        lego_status_free(&st);
        return false;
    }
    bool same = len == want_len && memcmp(buf, want, len) == 0;
    free(buf);
    return same;
}

static void test_profile(void)
{
    block_library lib;
    lego_status st = library_open(lib_dir, &lib);
    CHECK_OK(st);
    if (st.code)
        return;
    int B = lib.n_blocks, S = lib.n_sparsities;
    CHECK(B >= 2 && S == 4);

    counter cnt = {0, 0, 0};
    profile_options o;
    memset(&o, 0, sizeof o);
    o.data = data_dir;
    o.n_random = 5;
    o.seed = 3;
    o.progress = count_progress;
    o.ctx = &cnt;
    profile_result r;
    st = profile_library(&lib, &o, &r);
    CHECK_OK(st);
    if (st.code) {
        library_free(&lib);
        return;
    }
    CHECK(r.n_blocks == B && r.n_sparsities == S && r.n_envs == 3);
    CHECK(r.envs[0] == 0 && r.envs[1] == 1 && r.envs[2] == 3);
    CHECK(r.test_samples == 64 && r.batch == 128 /* the default */);
    CHECK(r.walkers == 2); /* one per thread, 64 samples each: the second has none here */

    /* progress counts the test batches of the one pass: one here */
    CHECK(cnt.calls >= 1 && cnt.last_done == 1 && cnt.last_total == 1);
    /* each composition evaluated once: as many as the distinct ones the
     * environments and checks need, and far fewer than without a cache */
    int *ch = malloc(sizeof *ch * (size_t)B);
    int n_needed = 0, cap = 3 + 3 * B * (S - 1) + 7;
    int **seen = calloc((size_t)cap, sizeof *seen);
    for (int e = 0; e < 3; e++)
        for (int b = 0; b < B; b++)
            for (int s = 0; s < S; s++) {
                for (int k = 0; k < B; k++)
                    ch[k] = r.envs[e];
                ch[b] = s;
                bool dup = false;
                for (int i = 0; i < n_needed && !dup; i++)
                    dup = memcmp(seen[i], ch, sizeof *ch * (size_t)B) == 0;
                if (!dup) {
                    seen[n_needed] = malloc(sizeof *ch * (size_t)B);
                    memcpy(seen[n_needed++], ch, sizeof *ch * (size_t)B);
                }
            }
    int n_profile = n_needed;
    for (int k = 0; k < r.n_checks; k++) {
        const int *c = r.compositions[r.checks[k].composition].choice;
        bool dup = false;
        for (int i = 0; i < n_needed && !dup; i++)
            dup = memcmp(seen[i], c, sizeof *c * (size_t)B) == 0;
        if (!dup) {
            seen[n_needed] = malloc(sizeof *ch * (size_t)B);
            memcpy(seen[n_needed++], c, sizeof *c * (size_t)B);
        }
    }
    CHECK(r.n_compositions == n_needed);
    CHECK(n_profile <= 3 + 3 * B * (S - 1));
    CHECK(n_profile < 1 + 2 * 3 * B * (S - 1)); /* the uncached count */
    for (int i = 0; i < n_needed; i++)
        free(seen[i]);
    free(seen);
    /* distinct compositions, the teacher first */
    for (int i = 0; i < r.n_compositions; i++) {
        for (int j = 0; j < i; j++)
            CHECK(memcmp(r.compositions[i].choice, r.compositions[j].choice, sizeof *ch * (size_t)B) != 0);
        CHECK(r.compositions[i].accuracy >= 0 && r.compositions[i].accuracy <= 1);
    }
    for (int b = 0; b < B; b++)
        CHECK(r.compositions[0].choice[b] == 0);

    /* the teacher's accuracy is the model's own */
    lego_graph g;
    CHECK_OK(onnx_load_file(model_path, &g));
    eval_result er;
    CHECK_OK(eval_classifier(&g, data_dir, 64, 0, true, &er));
    graph_free(&g);
    CHECK(r.teacher_accuracy == er.accuracy);

    /* ΔAcc(b, 0) = 0; ΔAcc(b, s) from independently measured accuracies */
    for (int b = 0; b < B; b++)
        CHECK(r.delta[b * S] == 0);
    const int pairs[3][2] = {{0, 3}, {B - 1, 2}, {B / 2, 1}};
    bool some_nonzero = false;
    for (int p = 0; p < 3; p++) {
        int b = pairs[p][0], s = pairs[p][1];
        double sum = 0;
        for (int e = 0; e < 3; e++) {
            for (int k = 0; k < B; k++)
                ch[k] = r.envs[e];
            ch[b] = 0;
            double base = composed_accuracy(&lib, ch);
            ch[b] = s;
            sum += base - composed_accuracy(&lib, ch);
        }
        CHECK(fabs(r.delta[b * S + s] - sum / 3) < 1e-12);
        some_nonzero |= r.delta[b * S + s] != 0;
    }
    for (int i = 0; i < B * S; i++)
        some_nonzero |= r.delta[i] != 0;
    CHECK(some_nonzero); /* pruning a trained model costs something somewhere */

    /* the additive estimates, and their measurements */
    CHECK(r.n_checks == 8); /* 3 uniform (S = 4) + 5 random */
    CHECK(strcmp(r.checks[0].label, "all-second") == 0 && strcmp(r.checks[1].label, "all-last") == 0);
    CHECK(strcmp(r.checks[2].label, "uniform") == 0 && strcmp(r.checks[3].label, "random") == 0);
    double max_err = 0, sum_err = 0;
    for (int k = 0; k < r.n_checks; k++) {
        const int *c = r.compositions[r.checks[k].composition].choice;
        double est = r.teacher_accuracy;
        for (int b = 0; b < B; b++)
            est -= r.delta[b * S + c[b]];
        CHECK(fabs(est - r.checks[k].estimated) < 1e-12);
        if (k < 3) {
            for (int b = 0; b < B; b++)
                CHECK(c[b] == (k == 0 ? 1 : k == 1 ? S - 1 : 2));
        }
        if (k == 1)
            CHECK(fabs(composed_accuracy(&lib, c) - r.checks[k].measured) < 1e-12);
        double err = fabs(est - r.checks[k].measured);
        max_err = err > max_err ? err : max_err;
        sum_err += err;
    }
    CHECK(fabs(max_err - r.max_error) < 1e-12 && fabs(sum_err / 8 - r.mean_error) < 1e-12);
    free(ch);

    /* into the manifest, and back */
    CHECK_OK(profile_store(&lib, &o, &r));
    library_free(&lib);
    CHECK_OK(library_open(lib_dir, &lib));
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++) {
            cJSON *d = library_descendant_json(&lib, b, s);
            cJSON *al = cJSON_GetObjectItemCaseSensitive(d, "accuracy_loss");
            CHECK(cJSON_IsNumber(al) && al->valuedouble == r.delta[b * S + s]);
            /* sizes from extraction are still there */
            CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "weight_bytes")));
            CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "flops")));
            CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "params")));
        }
    cJSON *p = cJSON_GetObjectItemCaseSensitive(lib.manifest, "profile");
    CHECK(cJSON_IsObject(p));
    CHECK(cJSON_GetObjectItemCaseSensitive(p, "test_samples")->valuedouble == 64);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(p, "max_test")));
    CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(p, "task")->valuestring, "classification") == 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(p, "teacher_accuracy")->valuedouble == r.teacher_accuracy);
    CHECK(cJSON_GetObjectItemCaseSensitive(p, "compositions_evaluated")->valuedouble == r.n_compositions);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "environments")) == 3);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "validation")) == 8);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "compositions")) == r.n_compositions);
    profile_result_free(&r);

    /* a test subset, recorded; a second profile replaces the first */
    o.max_test = 10;
    o.n_random = 0;
    o.batch = 4;
    st = profile_library(&lib, &o, &r);
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        CHECK(r.test_samples == 10 && r.batch == 4 && r.n_checks == 3);
        CHECK_OK(profile_store(&lib, &o, &r));
        profile_result_free(&r);
        library_free(&lib);
        CHECK_OK(library_open(lib_dir, &lib));
        p = cJSON_GetObjectItemCaseSensitive(lib.manifest, "profile");
        CHECK(cJSON_GetObjectItemCaseSensitive(p, "test_samples")->valuedouble == 10);
        CHECK(cJSON_GetObjectItemCaseSensitive(p, "max_test")->valuedouble == 10);
    }

    /* an application's task is the one called */
    lego_task outside = lego_task_classification;
    outside.name = "outside";
    outside.score = outside_score;
    o.task = &outside;
    o.max_test = 8;
    st = profile_library(&lib, &o, &r);
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        CHECK(outside_scores == r.n_compositions * 2); /* 8 samples in batches of 4 */
        profile_result_free(&r);
    }
    o.task = NULL;

    /* failures leave the manifest as it was */
    char manifest[400];
    snprintf(manifest, sizeof manifest, "%s/manifest.json", lib_dir);
    unsigned char *before;
    size_t before_len;
    CHECK_OK(file_read_all(manifest, &before, &before_len));
    o.data = data10_dir;
    CHECK_FAILS(profile_library(&lib, &o, &r), LEGO_ERR_SHAPE, "label 4 of sample 4 is out of range for a model with 4 outputs");
    CHECK(r.delta == NULL && r.n_compositions == 0);
    o.data = "/nonexistent-dataset";
    CHECK_FAILS(profile_library(&lib, &o, &r), LEGO_ERR_IO, "nonexistent");
    o.data = data_dir;
    o.progress = stop_now; /* at the first test batch */
    CHECK_FAILS(profile_library(&lib, &o, &r), LEGO_ERR_ARG, "interrupted");
    o.plain = true, o.progress = stop_at_3; /* at the third composition */
    CHECK_FAILS(profile_library(&lib, &o, &r), LEGO_ERR_ARG, "interrupted");
    o.plain = false;
    o.data = NULL;
    CHECK_FAILS(profile_library(&lib, &o, &r), LEGO_ERR_ARG, "needs a dataset");
    CHECK(same_file(manifest, before, before_len));
    free(before);
    library_free(&lib);
}

/* Another shared walk of the same library (other walkers, other saving)
 * gives want's accuracies and runs want's blocks. */
static void same_walk(const profile_result *got, const profile_result *want)
{
    CHECK(got->n_compositions == want->n_compositions);
    for (int i = 0; i < got->n_compositions && i < want->n_compositions; i++)
        CHECK(got->compositions[i].accuracy == want->compositions[i].accuracy);
    CHECK(got->block_flops_run == want->block_flops_run);
}

/* Profile lib both ways: one composed model per pass (plain) and the
 * default one pass sharing prefixes (two walkers, then one, then with the
 * frame before the first block saved rather than run again);
 * every composition's accuracy, every ΔAcc and every check must be the
 * same numbers. */
static void same_as_plain(block_library *lib, const char *data, int batch, int64_t max_test)
{
    profile_options o;
    memset(&o, 0, sizeof o);
    o.data = data;
    o.batch = batch;
    o.max_test = max_test;
    o.n_random = 5;
    o.seed = 11;
    profile_result shared_r, plain_r;
    lego_status st = profile_library(lib, &o, &shared_r);
    CHECK_OK(st);
    if (st.code)
        return;
    o.plain = true;
    st = profile_library(lib, &o, &plain_r);
    CHECK_OK(st);
    if (st.code) {
        profile_result_free(&shared_r);
        return;
    }
    int B = lib->n_blocks, S = lib->n_sparsities;
    CHECK(shared_r.walkers == 2 && plain_r.walkers == 1 && shared_r.batch == batch);
    CHECK(shared_r.n_compositions == plain_r.n_compositions && shared_r.n_compositions > 3 * B);
    CHECK(shared_r.test_samples == plain_r.test_samples && shared_r.test_samples == (max_test ? max_test : 64));
    int differ = 0, distinct_acc = 0;
    for (int i = 0; i < shared_r.n_compositions && i < plain_r.n_compositions; i++) {
        CHECK(memcmp(shared_r.compositions[i].choice, plain_r.compositions[i].choice, sizeof(int) * (size_t)B) == 0);
        differ += shared_r.compositions[i].accuracy != plain_r.compositions[i].accuracy;
        distinct_acc += shared_r.compositions[i].accuracy != shared_r.compositions[0].accuracy;
    }
    CHECK(differ == 0);
    CHECK(distinct_acc > 0); /* the compositions do not all score alike */
    for (int i = 0; i < B * S; i++)
        CHECK(shared_r.delta[i] == plain_r.delta[i]);
    CHECK(shared_r.n_checks == plain_r.n_checks && shared_r.max_error == plain_r.max_error);
    /* the blocks run: fewer FLOPs shared, all of them plain */
    CHECK(plain_r.block_flops_run == plain_r.block_flops_plain && plain_r.block_flops_plain > 0);
    CHECK(shared_r.block_flops_plain == plain_r.block_flops_plain);
    CHECK(shared_r.block_flops_run > 0 && shared_r.block_flops_run < 0.8 * plain_r.block_flops_plain);
    for (int k = 0; k < shared_r.n_checks && k < plain_r.n_checks; k++)
        CHECK(shared_r.checks[k].measured == plain_r.checks[k].measured &&
              shared_r.checks[k].composition == plain_r.checks[k].composition);
    /* one thread: one walker at the whole batch, the same numbers */
    profile_result one_r;
    o.plain = false;
    lego_set_num_threads(1);
    st = profile_library(lib, &o, &one_r);
    lego_set_num_threads(2);
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        CHECK(one_r.walkers == 1 && one_r.batch == batch);
        same_walk(&one_r, &shared_r);
        profile_result_free(&one_r);
    }
    /* the frame before the first block saved and restored at its branches
     * instead of run again (these small libraries run it again): the same */
    profile_set_prefix_rerun(0);
    st = profile_library(lib, &o, &one_r);
    profile_set_prefix_rerun(-1);
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        same_walk(&one_r, &shared_r);
        profile_result_free(&one_r);
    }
    profile_result_free(&shared_r);
    profile_result_free(&plain_r);
}

static void test_shared_prefix(void)
{
    /* the trained resnet18:4 library: a short last batch (64 = 3 x 20 + 4) */
    block_library lib;
    lego_status st = library_open(lib_dir, &lib);
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        same_as_plain(&lib, data_dir, 20, 0);
        library_free(&lib);
    }
    /* the PyTorch ResNet18 fixture at sparsities 0, 0.5, 0.8 on 10 classes */
    char dir[400];
    snprintf(dir, sizeof dir, "%s/lib-fixture", scratch);
    lego_graph g;
    st = onnx_load_file("data/models/resnet18_dynbatch.onnx", &g);
    CHECK_OK(st);
    if (st.code)
        return;
    block_set bs;
    st = blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs);
    CHECK_OK(st);
    static const double sp[3] = {0, 0.5, 0.8};
    extract_options eo = {sp, 3, true, NULL, NULL};
    if (st.code == LEGO_OK) {
        st = library_extract(&g, &bs, "data/models/resnet18_dynbatch.onnx", dir, &eo, NULL);
        CHECK_OK(st);
        block_set_free(&bs);
    }
    graph_free(&g);
    if (st.code)
        return;
    st = library_open(dir, &lib);
    CHECK_OK(st);
    if (st.code)
        return;
    CHECK(lib.n_blocks == 8 && lib.n_sparsities == 3);
    same_as_plain(&lib, data10_dir, 16, 40);
    library_free(&lib);
}

/* A 3-channel dataset for a 2-channel model. */
static void test_wrong_channels(void)
{
    char dir[400], onnx[400];
    snprintf(dir, sizeof dir, "%s/lib2", scratch);
    snprintf(onnx, sizeof onnx, "%s/m2.onnx", scratch);
    if (!make_library(2, 2, dir, onnx))
        return;
    block_library lib;
    CHECK_OK(library_open(dir, &lib));
    profile_options o;
    memset(&o, 0, sizeof o);
    o.data = cifar_dir;
    profile_result r;
    CHECK_FAILS(profile_library(&lib, &o, &r), LEGO_ERR_SHAPE, "has 3-channel images; the model");
    library_free(&lib);
}

int main(void)
{
    snprintf(scratch, sizeof scratch, "/tmp/legodnn-test-profile-XXXXXX");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    lego_set_num_threads(2);
    snprintf(data_dir, sizeof data_dir, "%s/data", scratch);
    snprintf(data10_dir, sizeof data10_dir, "%s/data10", scratch);
    snprintf(cifar_dir, sizeof cifar_dir, "%s/cifar", scratch);
    snprintf(lib_dir, sizeof lib_dir, "%s/lib", scratch);
    snprintf(model_path, sizeof model_path, "%s/m.onnx", scratch);
    write_idx(data_dir, "train", 96, 4);
    write_idx(data_dir, "t10k", 64, 4);
    write_idx(data10_dir, "train", 40, 10);
    write_idx(data10_dir, "t10k", 40, 10);
    write_cifar100(cifar_dir);
    if (make_library(4, 1, lib_dir, model_path)) {
        test_task();
        test_environments();
        test_profile();
        test_shared_prefix();
        test_wrong_channels();
    }
    CHECK_OK(file_remove_tree(scratch));
    return harness_finish();
}
