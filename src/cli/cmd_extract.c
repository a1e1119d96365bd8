/* cmd_extract.c - `legodnn extract MODEL.onnx --out LIB [--sparsity LIST]
 * [--max-ratio R] [--force] [--json]`: detect the blocks, generate every
 * block's descendants by L1 filter pruning and write the block library
 * (blocks/library.h has the format).
 *
 * Sparsities: a comma-separated list of numbers in [0, 1); 0 (the original
 * block) is added when missing, the list is sorted, a value listed twice is
 * an error. An unparsable list is a usage error (exit 2); a value out of
 * range is exit 1, naming it. Ctrl-C (SIGINT) or SIGTERM stops after the
 * file being written and leaves no library behind (exit 1). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/library.h"
#include "cli.h"
#include "core/file.h"
#include "core/progress.h"
#include "graph/graph.h"
#include "onnx/onnx_import.h"

static const char extract_usage[] =
    "legodnn extract MODEL.onnx --out LIB [--sparsity 0,0.3,0.6,0.8] [--max-ratio 0.125] [--force] [--json]";

#define MAX_SPARSITIES 64

typedef struct run_ctx {
    progress bar;
} run_ctx;

static bool on_progress(void *ctx, int done, int total, const char *what)
{
    run_ctx *r = ctx;
    (void)total;
    progress_update(&r->bar, done, what);
    return !cli_interrupted();
}

/* Parse "0,0.3,0.6": false (with *bad at the offending item) when the list
 * is not a list of numbers. */
static bool parse_list(const char *s, double *out, int *n, char *bad, size_t bad_len)
{
    *n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[64];
        snprintf(bad, bad_len, "%.*s", (int)(len < 60 ? len : 60), p);
        if (len == 0 || len >= sizeof item || *n >= MAX_SPARSITIES)
            return false;
        memcpy(item, p, len);
        item[len] = 0;
        char *end;
        errno = 0;
        double v = strtod(item, &end);
        if (end == item || *end || errno == ERANGE)
            return false;
        out[(*n)++] = v;
        if (!comma)
            return true;
        p = comma + 1;
    }
}

static double pct(int64_t part, int64_t whole) { return whole ? 100.0 * (double)part / (double)whole : 0; }

static void print_table(const block_library *lib, const char *model, bool added_zero)
{
    char a[32], b[32], c[32];
    int n_desc = lib->n_blocks * lib->n_sparsities;
    int dec = library_sparsity_decimals(lib->sparsities, lib->n_sparsities);
    printf("model     %s (%s params, %s FLOPs, sha256 %.16s...)\n", model, cli_count((double)lib->model_params, a),
           cli_count((double)lib->model_flops, b), lib->model_sha256);
    printf("library   %s: %d block%s x %d sparsities = %d descendants, max ratio %g\n", lib->dir, lib->n_blocks,
           lib->n_blocks == 1 ? "" : "s", lib->n_sparsities, n_desc, lib->max_ratio);
    printf("frame     %s: %s params, %s FLOPs outside the blocks\n", lib->frame_file,
           cli_count((double)lib->frame_params, a), cli_count((double)lib->frame_flops, b));
    if (added_zero)
        printf("note      sparsity 0 (the original block) was added to the list\n");
    for (int i = 0; i < lib->n_blocks; i++) {
        const lib_block *bl = &lib->blocks[i];
        char in[160] = "", out[160] = "";
        for (int d = 0; d < bl->in_rank; d++)
            snprintf(in + strlen(in), sizeof in - strlen(in), d ? "x%lld" : "%lld", (long long)bl->in_shape[d]);
        for (int d = 0; d < bl->out_rank; d++)
            snprintf(out + strlen(out), sizeof out - strlen(out), d ? "x%lld" : "%lld", (long long)bl->out_shape[d]);
        printf("\nblock %d  %s -> %s  (%s -> %s)\n", i, bl->entry, bl->exit, in, out);
        if (bl->n_pruned_convs == 0)
            printf("  nothing to thin: every space of this block is fixed (its convs feed the block output)\n");
        for (int j = 0; j < bl->n_pruned_convs; j++)
            printf("  %s %s\n", j ? "       " : "thinned", bl->pruned_convs[j]);
        printf("  %-9s %9s %7s %9s %7s %10s %7s  %s\n", "sparsity", "params", "", "FLOPs", "", "weights", "", "file");
        const lib_descendant *d0 = &bl->desc[0];
        for (int d = 0; d < bl->n_desc; d++) {
            const lib_descendant *x = &bl->desc[d];
            printf("  %-9.*f %9s %6.1f%% %9s %6.1f%% %10s %6.1f%%  %s\n", dec, x->sparsity, cli_count((double)x->params, a),
                   pct(x->params, d0->params), cli_count((double)x->flops, b), pct(x->flops, d0->flops),
                   cli_bytes((double)x->weight_bytes, c), pct(x->weight_bytes, d0->weight_bytes), x->file);
        }
    }
}

static cJSON *shape_json(int rank, const int64_t *dims)
{
    cJSON *s = cJSON_CreateArray();
    for (int d = 0; d < rank; d++)
        cJSON_AddItemToArray(s, cJSON_CreateNumber((double)dims[d]));
    return s;
}

static int print_json(const block_library *lib, const char *model, bool added_zero)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "library", lib->dir);
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddStringToObject(root, "model_sha256", lib->model_sha256);
    cJSON_AddNumberToObject(root, "max_ratio", lib->max_ratio);
    cJSON *sp = cJSON_AddArrayToObject(root, "sparsities");
    for (int i = 0; i < lib->n_sparsities; i++)
        cJSON_AddItemToArray(sp, cJSON_CreateNumber(lib->sparsities[i]));
    cJSON_AddBoolToObject(root, "added_sparsity_0", added_zero);
    cJSON *fr = cJSON_AddObjectToObject(root, "frame");
    cJSON_AddStringToObject(fr, "file", lib->frame_file);
    cJSON_AddNumberToObject(fr, "params", (double)lib->frame_params);
    cJSON_AddNumberToObject(fr, "flops", (double)lib->frame_flops);
    cJSON *blocks = cJSON_AddArrayToObject(root, "blocks");
    for (int i = 0; i < lib->n_blocks; i++) {
        const lib_block *bl = &lib->blocks[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", i);
        cJSON_AddStringToObject(o, "entry", bl->entry);
        cJSON_AddStringToObject(o, "exit", bl->exit);
        cJSON_AddItemToObject(o, "input_shape", shape_json(bl->in_rank, bl->in_shape));
        cJSON_AddItemToObject(o, "output_shape", shape_json(bl->out_rank, bl->out_shape));
        cJSON *pc = cJSON_AddArrayToObject(o, "pruned_convs");
        for (int j = 0; j < bl->n_pruned_convs; j++)
            cJSON_AddItemToArray(pc, cJSON_CreateString(bl->pruned_convs[j]));
        cJSON *ds = cJSON_AddArrayToObject(o, "descendants");
        for (int d = 0; d < bl->n_desc; d++) {
            const lib_descendant *x = &bl->desc[d];
            cJSON *dj = cJSON_CreateObject();
            cJSON_AddNumberToObject(dj, "sparsity", x->sparsity);
            cJSON_AddStringToObject(dj, "file", x->file);
            cJSON_AddNumberToObject(dj, "params", (double)x->params);
            cJSON_AddNumberToObject(dj, "flops", (double)x->flops);
            cJSON_AddNumberToObject(dj, "weight_bytes", (double)x->weight_bytes);
            cJSON_AddNumberToObject(dj, "bytes", (double)x->bytes);
            cJSON_AddItemToArray(ds, dj);
        }
        cJSON_AddItemToArray(blocks, o);
    }
    return cli_print_json(root);
}

int cmd_extract(int argc, char **argv)
{
    const char *path = NULL, *out = NULL;
    bool json = false, force = false, added_zero = false;
    double ratio = BLOCKS_DEFAULT_RATIO;
    double sp[MAX_SPARSITIES + 1] = {0, 0.3, 0.6, 0.8};
    int n_sp = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--force") == 0) {
            force = true;
        } else if (strcmp(argv[i], "--out") == 0) {
            if (i + 1 >= argc || !argv[i + 1][0])
                return cli_usage_error(extract_usage, "--out needs the library directory to write");
            out = argv[++i];
        } else if (strcmp(argv[i], "--max-ratio") == 0) {
            if (i + 1 >= argc || !cli_parse_fraction(argv[++i], &ratio))
                return cli_usage_error(extract_usage,
                                       "--max-ratio needs a number in (0, 1]: the largest share of the model's "
                                       "convolutions one block may hold");
        } else if (strcmp(argv[i], "--sparsity") == 0) {
            char bad[64] = "";
            if (i + 1 >= argc)
                return cli_usage_error(extract_usage, "--sparsity needs a comma-separated list such as 0,0.3,0.6,0.8");
            if (!parse_list(argv[++i], sp, &n_sp, bad, sizeof bad)) {
                if (n_sp >= MAX_SPARSITIES)
                    return cli_usage_error(extract_usage, "--sparsity takes at most %d values", MAX_SPARSITIES);
                return cli_usage_error(extract_usage,
                                       "--sparsity needs a comma-separated list of numbers such as 0,0.3,0.6,0.8 "
                                       "('%s' is not a number)",
                                       bad);
            }
        } else if (cli_operand(extract_usage, argv[i], &path, "model") != EXIT_OK) {
            return EXIT_USAGE;
        }
    }
    if (!path)
        return cli_usage_error(extract_usage, "no model given");
    if (!out)
        return cli_usage_error(extract_usage, "no --out LIB given: where to write the block library");
    for (int i = 0; i < n_sp; i++)
        if (!(sp[i] >= 0 && sp[i] < 1))
            return cli_fail(lego_error(LEGO_ERR_ARG,
                                       "sparsity %g is outside [0, 1): it is the share of each prunable conv's "
                                       "filters removed",
                                       sp[i]));
    cli_sort_doubles(sp, (size_t)n_sp);
    for (int i = 1; i < n_sp; i++)
        if (sp[i] == sp[i - 1])
            return cli_fail(lego_error(LEGO_ERR_ARG, "sparsity %g is listed twice", sp[i]));
    if (sp[0] != 0) {
        memmove(sp + 1, sp, sizeof *sp * (size_t)n_sp);
        sp[0] = 0;
        n_sp++;
        added_zero = true;
    }

    lego_graph g;
    lego_status st = onnx_load_file(path, &g);
    if (st.code)
        return cli_fail(st);
    block_set bs;
    st = blocks_detect(&g, ratio, &bs);
    if (st.code) {
        graph_free(&g);
        return cli_fail(st);
    }
    run_ctx rc;
    progress_start(&rc.bar, "extract", 1 + (int64_t)bs.n_blocks * n_sp, false);
    cli_catch_interrupts();
    extract_options opt = {.sparsities = sp, .n_sparsities = n_sp, .force = force, .progress = on_progress, .ctx = &rc};
    block_library lib;
    st = library_extract(&g, &bs, path, out, &opt, &lib);
    cli_release_interrupts();
    block_set_free(&bs);
    graph_free(&g);
    if (st.code) {
        if (rc.bar.tty && rc.bar.done > 0)
            fputc('\n', stderr);
        return cli_fail(st);
    }
    progress_finish(&rc.bar, NULL);
    const char *base = strrchr(path, '/');
    int code = EXIT_OK;
    if (json)
        code = print_json(&lib, base ? base + 1 : path, added_zero);
    else
        print_table(&lib, base ? base + 1 : path, added_zero);
    library_free(&lib);
    return code;
}
