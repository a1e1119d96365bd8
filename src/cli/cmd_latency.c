/* cmd_latency.c - `legodnn latency LIB [--repeat 30] [--batch 1] [--threads N]
 * [--random 2] [--quiet] [--json]`: time every descendant, the frame and the
 * teacher on this machine and keep the numbers in the library under this
 * device's profile (runtime/latency.h has the method). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/library.h"
#include "cli.h"
#include "runtime/latency.h"

static const char latency_usage[] =
    "legodnn latency LIB [--repeat 30] [--batch 1] [--threads N] [--random 2] [--quiet] [--json]";

static void print_table(const block_library *lib, const latency_result *r)
{
    char buf[32];
    printf("device   %s\n\n", r->profile);
    printf("%-6s %-9s %10s %11s %10s %8s\n", "block", "sparsity", "FLOPs", "median ms", "IQR ms", "saving");
    for (int b = 0; b < r->n_blocks; b++) {
        for (int d = 0; d < r->n_desc[b]; d++) {
            double s0 = r->median[b][0];
            printf("%-6d %-9.2f %10s %11.4f %10.4f %7.1f%%%s\n", b, lib->blocks[b].desc[d].sparsity,
                   cli_count((double)r->flops[b][d], buf), r->median[b][d], r->iqr[b][d],
                   s0 > 0 ? 100 * (s0 - r->median[b][d]) / s0 : 0.0,
                   r->raw_median[b][d] != r->median[b][d] ? "  (noise rule)" : "");
        }
    }
    printf("\nframe    %.4f ms (IQR %.4f)   teacher %.4f ms (IQR %.4f)\n", r->frame_ms, r->frame_iqr_ms,
           r->teacher_ms, r->teacher_iqr_ms);
    printf("\n%-10s %13s %12s %8s   (frame + sum of blocks vs a measured run)\n", "check", "predicted ms",
           "measured ms", "error");
    for (int c = 0; c < r->n_checks; c++) {
        const latency_check *k = &r->checks[c];
        printf("%-10s %13.4f %12.4f %7.1f%%\n", k->name, k->predicted_ms, k->measured_ms,
               k->measured_ms > 0 ? 100 * (k->predicted_ms / k->measured_ms - 1) : 0.0);
    }
    int n = 0;
    for (int b = 0; b < r->n_blocks; b++)
        n += r->n_desc[b];
    printf("\n%d descendants timed %d times each in %.1f s; saved under this profile in %s/manifest.json\n", n,
           r->repeat, r->seconds, lib->dir);
}

static void print_json(const block_library *lib, const latency_result *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "library", lib->dir);
    cJSON_AddStringToObject(root, "profile", r->profile);
    cJSON_AddStringToObject(root, "cpu", r->cpu);
    cJSON_AddNumberToObject(root, "threads", r->threads);
    cJSON_AddNumberToObject(root, "batch", (double)r->batch);
    cJSON_AddNumberToObject(root, "repeat", r->repeat);
    cJSON_AddNumberToObject(root, "frame_ms", r->frame_ms);
    cJSON_AddNumberToObject(root, "frame_iqr_ms", r->frame_iqr_ms);
    cJSON_AddNumberToObject(root, "teacher_ms", r->teacher_ms);
    cJSON_AddNumberToObject(root, "teacher_iqr_ms", r->teacher_iqr_ms);
    cJSON_AddNumberToObject(root, "seconds", r->seconds);
    cJSON *blocks = cJSON_AddArrayToObject(root, "blocks");
    for (int b = 0; b < r->n_blocks; b++) {
        cJSON *bj = cJSON_CreateObject();
        cJSON_AddNumberToObject(bj, "index", b);
        cJSON *ds = cJSON_AddArrayToObject(bj, "descendants");
        for (int d = 0; d < r->n_desc[b]; d++) {
            cJSON *dj = cJSON_CreateObject();
            cJSON_AddNumberToObject(dj, "sparsity", lib->blocks[b].desc[d].sparsity);
            cJSON_AddNumberToObject(dj, "flops", (double)r->flops[b][d]);
            cJSON_AddNumberToObject(dj, "median_ms", r->median[b][d]);
            cJSON_AddNumberToObject(dj, "iqr_ms", r->iqr[b][d]);
            cJSON_AddNumberToObject(dj, "raw_median_ms", r->raw_median[b][d]);
            cJSON_AddNumberToObject(dj, "arena_bytes", (double)r->arena[b][d]);
            cJSON_AddItemToArray(ds, dj);
        }
        cJSON_AddItemToArray(blocks, bj);
    }
    cJSON *checks = cJSON_AddArrayToObject(root, "checks");
    for (int c = 0; c < r->n_checks; c++) {
        const latency_check *k = &r->checks[c];
        cJSON *cj = cJSON_CreateObject();
        cJSON_AddStringToObject(cj, "name", k->name);
        cJSON *ch = cJSON_AddArrayToObject(cj, "choice");
        for (int b = 0; b < r->n_blocks; b++)
            cJSON_AddItemToArray(ch, cJSON_CreateNumber(k->choice[b]));
        cJSON_AddNumberToObject(cj, "predicted_ms", k->predicted_ms);
        cJSON_AddNumberToObject(cj, "measured_ms", k->measured_ms);
        cJSON_AddNumberToObject(cj, "measured_iqr_ms", k->iqr_ms);
        cJSON_AddItemToArray(checks, cj);
    }
    cli_print_json(root);
}

int cmd_latency(int argc, char **argv)
{
    const char *dir = NULL;
    long repeat = 30, n_random = 2;
    cli_common co = {.threads = -1, .batch = 1};
    const unsigned common = CLI_OPT_JSON | CLI_OPT_QUIET | CLI_OPT_THREADS | CLI_OPT_BATCH;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        int rc = cli_common_option(argc, argv, &i, common, latency_usage, &co);
        if (rc == EXIT_USAGE)
            return rc;
        if (rc == EXIT_OK)
            continue;
        if (strcmp(a, "--repeat") == 0) {
            if (!has || !cli_parse_int(argv[++i], 3, 100000, &repeat))
                return cli_usage_error(latency_usage, "--repeat needs a count from 3 to 100000");
        } else if (strcmp(a, "--random") == 0) {
            if (!has || !cli_parse_int(argv[++i], 0, 100, &n_random))
                return cli_usage_error(latency_usage, "--random needs a count from 0 to 100");
        } else if (cli_operand(latency_usage, a, &dir, "library") != EXIT_OK) {
            return EXIT_USAGE;
        }
    }
    if (!dir)
        return cli_usage_error(latency_usage, "no library given");
    cli_apply_threads(&co);
    bool json = co.json, quiet = co.quiet;
    long batch = co.batch;
    block_library lib;
    lego_status st = library_open(dir, &lib);
    if (st.code)
        return cli_fail(st);
    latency_options opt = {.repeat = (int)repeat, .batch = batch, .n_random = (int)n_random, .seed = 1,
                           .quiet = quiet || json};
    latency_result r;
    st = latency_measure(&lib, &opt, &r);
    if (st.code == LEGO_OK) {
        st = latency_store(&lib, &r);
        if (st.code == LEGO_OK)
            st = library_save(&lib);
        if (st.code == LEGO_OK) {
            if (json)
                print_json(&lib, &r);
            else
                print_table(&lib, &r);
        }
        latency_result_free(&r);
    }
    library_free(&lib);
    return st.code ? cli_fail(st) : EXIT_OK;
}
