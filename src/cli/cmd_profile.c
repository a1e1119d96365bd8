/* cmd_profile.c - `legodnn profile LIB --data DATASET [--max-test N]
 * [--batch N] [--validate N] [--seed N] [--task NAME] [--threads N]
 * [--quiet] [--json]`: every descendant's accuracy loss measured in composed
 * models over three environments (profile/profile.h), the additive estimate
 * checked on a few compositions, all saved into the library's manifest.
 *
 * Weight bytes, parameters and FLOPs of every descendant are in the manifest
 * since extraction; this adds accuracy_loss and a top-level "profile"
 * object. A failure (a library that does not verify, a dataset that does
 * not fit the model, Ctrl-C) leaves the manifest as it was (exit 1). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/library.h"
#include "cli.h"
#include "core/progress.h"
#include "profile/profile.h"
#include "train/task.h"

static const char profile_usage[] =
    "legodnn profile LIB --data DATASET [--max-test N] [--batch N] [--validate N] [--seed N] "
    "[--task classification] [--threads N] [--plain] [--quiet] [--json]";

typedef struct run_ctx {
    progress bar;
} run_ctx;

static bool on_progress(void *ctx, int done, int total, double acc)
{
    run_ctx *r = ctx;
    char msg[64];
    r->bar.total = total;
    if (isnan(acc)) /* the shared pass: done of total test batches */
        snprintf(msg, sizeof msg, "test batches");
    else
        snprintf(msg, sizeof msg, "last %.2f%%", 100 * acc);
    progress_update(&r->bar, done, msg);
    return !cli_interrupted();
}

static void print_choice(const block_library *lib, const int *choice, int dec)
{
    for (int b = 0; b < lib->n_blocks; b++)
        printf("%s%.*f", b ? "," : "", dec, lib->sparsities[choice[b]]);
}

static void print_table(const block_library *lib, const profile_options *o, const profile_result *r)
{
    const lego_task *t = o->task;
    int dec = library_sparsity_decimals(lib->sparsities, lib->n_sparsities);
    printf("library       %s: %d block%s x %d sparsities\n", lib->dir, lib->n_blocks, lib->n_blocks == 1 ? "" : "s",
           lib->n_sparsities);
    printf("task          %s (%s) on %s, ", t->name, t->metric, o->data);
    if (o->max_test > 0)
        printf("test subset: the first %lld samples (--max-test %lld)\n", (long long)r->test_samples,
               (long long)o->max_test);
    else
        printf("the full test split (%lld samples)\n", (long long)r->test_samples);
    printf("teacher       %.2f%%\n", 100 * r->teacher_accuracy);
    printf("environments  every block at");
    for (int k = 0; k < r->n_envs; k++)
        printf("%s %.*f%s", k ? "," : "", dec, lib->sparsities[r->envs[k]], r->envs[k] == 0 ? " (original)" : "");
    printf("\ncompositions  %d evaluated (each once) in %.1f s, batch %d", r->n_compositions, r->seconds, r->batch);
    if (r->walkers > 1)
        printf(" (%d walkers of %d, one per thread)", r->walkers, r->batch / r->walkers);
    printf("\n");
    if (r->block_flops_plain > 0)
        printf("blocks run    %.1f GFLOPs per test sample, %.0f%% of one composed model per pass (%s)\n",
               r->block_flops_run / 1e9, 100 * r->block_flops_run / r->block_flops_plain,
               r->block_flops_run < r->block_flops_plain ? "common prefixes shared" : "--plain");

    printf("\naccuracy loss (percentage points; mean over the environments)\n%-7s", "block");
    for (int s = 0; s < lib->n_sparsities; s++)
        printf(" %8.*f", dec, lib->sparsities[s]);
    printf("\n");
    for (int b = 0; b < lib->n_blocks; b++) {
        printf("%-7d", b);
        for (int s = 0; s < lib->n_sparsities; s++)
            printf(" %8.2f", 100 * r->delta[b * lib->n_sparsities + s]);
        printf("\n");
    }
    if (r->n_checks) {
        printf("\nadditive estimate (teacher - sum of accuracy losses) vs measured\n");
        printf("  %-11s %9s %9s %8s  %s\n", "kind", "estimated", "measured", "error", "sparsity per block");
        for (int k = 0; k < r->n_checks; k++) {
            const profile_check *c = &r->checks[k];
            printf("  %-11s %8.2f%% %8.2f%% %+8.2f  ", c->label, 100 * c->estimated, 100 * c->measured,
                   100 * (c->estimated - c->measured));
            print_choice(lib, r->compositions[c->composition].choice, dec);
            printf("\n");
        }
        printf("  |error|: max %.2f, mean %.2f percentage points over %d compositions\n", 100 * r->max_error,
               100 * r->mean_error, r->n_checks);
    }
    printf("\nmanifest      %s/manifest.json: accuracy_loss for every descendant, and \"profile\"\n", lib->dir);
}

static int print_json(const block_library *lib, const profile_options *o, const profile_result *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "library", lib->dir);
    cJSON *sp = cJSON_AddArrayToObject(root, "sparsities");
    for (int s = 0; s < lib->n_sparsities; s++)
        cJSON_AddItemToArray(sp, cJSON_CreateNumber(lib->sparsities[s]));
    cJSON *al = cJSON_AddArrayToObject(root, "accuracy_loss");
    for (int b = 0; b < lib->n_blocks; b++) {
        cJSON *row = cJSON_CreateArray();
        for (int s = 0; s < lib->n_sparsities; s++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber(r->delta[b * lib->n_sparsities + s]));
        cJSON_AddItemToArray(al, row);
    }
    cJSON_AddItemToObject(root, "profile", profile_json(lib, o, r));
    return cli_print_json(root);
}

int cmd_profile(int argc, char **argv)
{
    const char *dir = NULL, *task = "classification";
    profile_options o;
    memset(&o, 0, sizeof o);
    o.n_random = -1;
    long n;
    cli_common co = {.threads = -1};
    const unsigned common = CLI_OPT_JSON | CLI_OPT_QUIET | CLI_OPT_THREADS | CLI_OPT_BATCH | CLI_OPT_SEED |
                            CLI_OPT_MAX_TEST;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        int rc = cli_common_option(argc, argv, &i, common, profile_usage, &co);
        if (rc == EXIT_USAGE)
            return rc;
        if (rc == EXIT_OK)
            continue;
        if (strcmp(a, "--plain") == 0) {
            o.plain = true;
        } else if (strcmp(a, "--data") == 0 || strcmp(a, "--task") == 0) {
            const char *v = cli_option_value(argc, argv, &i, profile_usage);
            if (!v)
                return EXIT_USAGE;
            *(a[2] == 'd' ? &o.data : &task) = v;
        } else if (strcmp(a, "--validate") == 0) {
            if (!has || !cli_parse_int(argv[++i], 0, 1000, &n))
                return cli_usage_error(profile_usage, "--validate needs a count from 0 to 1000 (random compositions to check)");
            o.n_random = (int)n;
        } else if (cli_operand(profile_usage, a, &dir, "library") != EXIT_OK) {
            return EXIT_USAGE;
        }
    }
    cli_apply_threads(&co);
    bool json = co.json, quiet = co.quiet;
    o.max_test = co.max_test;
    o.batch = (int)co.batch;
    o.seed = (uint64_t)co.seed;
    if (!dir)
        return cli_usage_error(profile_usage, "no library given");
    if (!o.data)
        return cli_usage_error(profile_usage, "no --data DATASET given: the test split measures accuracy");
    o.task = task_find(task);
    if (!o.task)
        return cli_usage_error(profile_usage, "unknown task '%s' (built in: %s)", task, task_names());

    block_library lib;
    lego_status st = library_open(dir, &lib);
    if (st.code)
        return cli_fail(st);
    run_ctx rc;
    progress_start(&rc.bar, "profile", 1, quiet);
    o.progress = on_progress;
    o.ctx = &rc;
    cli_catch_interrupts();
    profile_result r;
    st = profile_library(&lib, &o, &r);
    cli_release_interrupts();
    if (st.code) {
        if (rc.bar.tty && rc.bar.done > 0)
            fputc('\n', stderr);
        library_free(&lib);
        lego_status told = lego_error(st.code, "%s (%s is not profiled; its manifest is unchanged)",
                                      lego_status_msg(st), dir);
        lego_status_free(&st);
        return cli_fail(told);
    }
    char msg[64];
    snprintf(msg, sizeof msg, "%d compositions", r.n_compositions);
    progress_finish(&rc.bar, msg);
    st = profile_store(&lib, &o, &r);
    int code = EXIT_OK;
    if (st.code)
        code = cli_fail(st);
    else if (json)
        code = print_json(&lib, &o, &r);
    else
        print_table(&lib, &o, &r);
    profile_result_free(&r);
    library_free(&lib);
    return code;
}
