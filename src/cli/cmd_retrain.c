/* cmd_retrain.c - `legodnn retrain`: retrain every descendant of a block
 * library on the teacher's intermediate features (train/retrain.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/file.h"
#include "train/retrain.h"
#include "train/task.h"

static const char usage[] =
    "legodnn retrain LIB --data DATASET [--epochs 2] [--batch 128] [--lr 3e-4] [--max-train N]\n"
    "         [--holdout 0.1] [--cache-mb N] [--stages auto|1|2] [--seed 1] [--task classification] [--resume]\n"
    "         [--threads N] [--quiet] [--json]";

static void print_epoch_line(const retrain_epoch *e)
{
    if (e->stages > 1)
        printf("stage %d/%d (%d blocks)  ", e->stage, e->stages, e->stage_blocks);
    printf("epoch %3d/%d  train mse %.5g  held-out mse %.5g  %d improved  teacher passes %lld  %.0f samples/s  %.1f s\n",
           e->epoch, e->epochs, e->train_loss, e->holdout_loss, e->improved, (long long)e->teacher_batches,
           e->samples_per_sec, e->seconds);
    fflush(stdout);
}

static bool on_epoch(void *ctx, const retrain_epoch *e)
{
    bool *json = ctx;
    if (!*json)
        print_epoch_line(e);
    return true;
}

static cJSON *number_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static void print_json(const char *lib, const retrain_options *o, const retrain_result *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "library", lib);
    cJSON_AddStringToObject(root, "data", o->data);
    cJSON_AddNumberToObject(root, "epochs", r->epochs_done);
    cJSON_AddNumberToObject(root, "resumed_at_epoch", r->first_epoch);
    cJSON_AddNumberToObject(root, "stages", r->stages);
    cJSON_AddNumberToObject(root, "resumed_at_stage", r->first_stage);
    cJSON *sb = cJSON_AddArrayToObject(root, "stage_blocks");
    for (int i = 0; i < r->stages && i < 2; i++)
        cJSON_AddItemToArray(sb, cJSON_CreateNumber(r->stage_blocks[i]));
    cJSON_AddNumberToObject(root, "feature_file_bytes", (double)r->feature_file_bytes);
    cJSON_AddNumberToObject(root, "batch", o->batch);
    cJSON_AddNumberToObject(root, "lr", (double)o->lr);
    cJSON_AddNumberToObject(root, "train_samples", (double)r->train_samples);
    cJSON_AddNumberToObject(root, "holdout_samples", (double)r->holdout_samples);
    cJSON_AddNumberToObject(root, "batches", (double)r->batches);
    cJSON_AddNumberToObject(root, "cached_batches", (double)r->cached_batches);
    cJSON_AddNumberToObject(root, "cache_bytes", (double)r->cache_bytes);
    cJSON *tp = cJSON_AddArrayToObject(root, "teacher_passes");
    for (int i = 0; i < r->n_passes; i++)
        cJSON_AddItemToArray(tp, cJSON_CreateNumber((double)r->teacher_batches[i]));
    cJSON_AddNumberToObject(root, "threads", lego_get_num_threads());
    cJSON_AddNumberToObject(root, "seconds", r->seconds);
    cJSON_AddNumberToObject(root, "teacher_seconds", r->teacher_seconds);
    cJSON_AddNumberToObject(root, "student_seconds", r->student_seconds);
    cJSON *ds = cJSON_AddArrayToObject(root, "descendants");
    for (int i = 0; i < r->n_students; i++) {
        const retrain_student *s = &r->students[i];
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "block", s->block);
        cJSON_AddNumberToObject(d, "sparsity", s->sparsity);
        cJSON_AddStringToObject(d, "file", s->file ? s->file : "");
        cJSON_AddItemToObject(d, "initial_loss", number_or_null(s->initial_loss));
        cJSON_AddItemToObject(d, "retraining_loss", number_or_null(s->best_loss));
        cJSON_AddItemToObject(d, "retraining_train_loss", number_or_null(s->train_loss));
        cJSON_AddNumberToObject(d, "best_epoch", s->best_epoch);
        cJSON_AddItemToArray(ds, d);
    }
    cli_print_json(root);
}

static void print_table(const char *lib, const retrain_result *r)
{
    printf("\n block  sparsity   held-out mse before -> after   train mse  best epoch  file\n");
    for (int i = 0; i < r->n_students; i++) {
        const retrain_student *s = &r->students[i];
        char train[32];
        if (isfinite(s->train_loss))
            snprintf(train, sizeof train, "%.5g", s->train_loss);
        else
            snprintf(train, sizeof train, "-");
        printf(" %5d  %8.3g   %12.5g -> %-12.5g  %9s  %10d  %s\n", s->block, s->sparsity, s->initial_loss,
               s->best_loss, train, s->best_epoch, s->file ? s->file : "");
    }
    char a[32];
    int64_t teacher = 0;
    for (int i = 0; i < r->n_passes; i++)
        teacher += r->teacher_batches[i];
    printf("\nretrained %d descendants of %s for %d epochs in %.1f s (%lld train + %lld held-out samples; %lld teacher passes; feature cache %s, %lld of %lld batches)\n",
           r->n_students, lib, r->epochs_done, r->seconds, (long long)r->train_samples,
           (long long)r->holdout_samples, (long long)teacher, cli_bytes((double)r->cache_bytes, a),
           (long long)r->cached_batches, (long long)r->batches);
    if (r->stages > 1)
        printf("in two stages (%d blocks, then %d from %s of features saved between them)\n", r->stage_blocks[0],
               r->stage_blocks[1], cli_bytes((double)r->feature_file_bytes, a));
}

int cmd_retrain(int argc, char **argv)
{
    retrain_options o;
    memset(&o, 0, sizeof o);
    o.lr = 3e-4f;
    o.holdout = 0.1;
    o.cache_bytes = -1;
    const char *lib = NULL;
    cli_common co = {.threads = -1, .epochs = 2, .batch = 128, .seed = 1};
    const unsigned common = CLI_OPT_JSON | CLI_OPT_QUIET | CLI_OPT_THREADS | CLI_OPT_BATCH | CLI_OPT_SEED |
                            CLI_OPT_EPOCHS | CLI_OPT_MAX_TRAIN;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long n;
        double f;
        int rc = cli_common_option(argc, argv, &i, common, usage, &co);
        if (rc == EXIT_USAGE)
            return rc;
        if (rc == EXIT_OK)
            continue;
        if (strcmp(a, "--resume") == 0) {
            o.resume = true;
            continue;
        } else if (strcmp(a, "--data") && strcmp(a, "--cache-mb") && strcmp(a, "--task") && strcmp(a, "--lr") &&
                   strcmp(a, "--holdout") && strcmp(a, "--stages")) {
            if (cli_operand(usage, a, &lib, "library") != EXIT_OK)
                return EXIT_USAGE;
            continue;
        }
        const char *v = cli_option_value(argc, argv, &i, usage);
        if (!v)
            return EXIT_USAGE;
        if (strcmp(a, "--data") == 0) {
            o.data = v;
        } else if (strcmp(a, "--cache-mb") == 0) {
            if (!cli_parse_int(v, 0, 1L << 30, &n))
                return cli_usage_error(usage, "--cache-mb needs a size in MiB (0: no cache)");
            o.cache_bytes = (int64_t)n << 20;
        } else if (strcmp(a, "--task") == 0) {
            if (!task_find(v))
                return cli_usage_error(usage, "unknown task '%s' (built in: %s)", v, task_names());
            o.task = v;
        } else if (strcmp(a, "--stages") == 0) {
            if (strcmp(v, "auto") == 0)
                o.stages = 0;
            else if (strcmp(v, "1") == 0 || strcmp(v, "2") == 0)
                o.stages = v[0] - '0';
            else
                return cli_usage_error(usage, "--stages takes auto, 1 or 2, not '%s'", v);
        } else if (strcmp(a, "--lr") == 0) {
            if (!cli_parse_double(v, &f) || !(f > 0))
                return cli_usage_error(usage, "--lr needs a positive number");
            o.lr = (float)f;
        } else {
            if (!cli_parse_double(v, &f) || !(f > 0 && f <= 0.5))
                return cli_usage_error(usage, "--holdout needs a fraction of the train split in (0, 0.5], not '%s'", v);
            o.holdout = f;
        }
    }
    bool json = co.json;
    o.quiet = co.quiet;
    o.epochs = (int)co.epochs;
    o.batch = (int)co.batch;
    o.seed = (uint64_t)co.seed;
    o.max_train = co.max_train;
    cli_apply_threads(&co);
    if (!lib)
        return cli_usage_error(usage, "no block library given (a directory `legodnn extract` wrote)");
    if (!o.data)
        return cli_usage_error(usage, "--data is required");

    size_t n = strlen(lib) + sizeof RETRAIN_STATE_FILE + 2;
    char *state = malloc(n);
    if (!state)
        return cli_fail(lego_error(LEGO_ERR_NOMEM, "out of memory"));
    snprintf(state, n, "%s/%s", lib, RETRAIN_STATE_FILE);
    bool have_state = file_exists(state);
    if (!json && have_state && !o.resume)
        fprintf(stderr, "legodnn: %s holds an interrupted run; starting over (--resume continues it)\n", state);
    if (!json && !have_state && o.resume)
        fprintf(stderr, "legodnn: %s has no %s to resume; starting from the extracted weights\n", lib,
                RETRAIN_STATE_FILE);
    free(state);

    retrain_result r;
    lego_status st = retrain_library(lib, &o, on_epoch, &json, &r);
    if (st.code) {
        retrain_result_free(&r);
        return cli_fail(st);
    }
    if (json)
        print_json(lib, &o, &r);
    else {
        if (r.first_epoch >= o.epochs)
            printf("%s: already retrained for %d epochs; kept the best weights\n", lib, r.first_epoch);
        print_table(lib, &r);
    }
    retrain_result_free(&r);
    return EXIT_OK;
}
