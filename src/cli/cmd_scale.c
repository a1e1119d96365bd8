/* cmd_scale.c - `legodnn scale LIB --latency MS --memory BYTES [--threads N]
 * [--batch B] [--export OUT.onnx] [--input IN.bin --output OUT.bin] [--json]`:
 * the most accurate composition that fits a latency and a memory budget on
 * this device, as the runtime would choose it (runtime/runtime.h: the same
 * estimates, the same exact optimizer, no online calibration).
 *
 * Budgets: --latency in milliseconds; --memory in bytes, or with a unit
 * (KB, MB, GB = 1000^k; KiB, MiB, GiB = 1024^k); "none" for no limit. An
 * unparsable value is a usage error (exit 2); zero, negative or absurd
 * values are exit 1, naming the value.
 *
 * Infeasible budgets (no composition fits both): the closest composition
 * (the least common scale-up of both budgets) is printed with how far it is
 * over each budget, and the command exits 1 with a one-line message on
 * stderr: the caller asked for something this library cannot do on this
 * device, which the contract counts as a user error. Nothing is exported
 * then. --json prints the same answer as JSON (feasible: false) before the
 * message.
 *
 * --export writes the chosen composition as one ordinary ONNX model
 * (compose_model; metadata legodnn.choice = option per block).
 * --input/--output run the choice once through the runtime (block by block,
 * as lego_runtime_run does) on a raw float32 input and write the output:
 * `legodnn run OUT.onnx` on the same input gives the same bits. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blocks/compose.h"
#include "blocks/library.h"
#include "cli.h"
#include "core/file.h"
#include "onnx/onnx_export.h"
#include "runtime/latency.h"
#include "runtime/optimizer.h"
#include "runtime/runtime.h"

static const char scale_usage[] =
    "legodnn scale LIB --latency MS --memory BYTES [--threads N] [--batch B] [--export OUT.onnx]\n"
    "         [--input IN.bin --output OUT.bin] [--json]";

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

typedef struct scale_args {
    const char *lib, *export_path, *input, *output;
    double latency;
    int64_t memory;
    bool have_latency, have_memory;
    cli_common co; /* --json, --threads, --batch */
} scale_args;

static void print_table(const block_library *lib, const rt_estimates *e, const scale_args *a, const lego_choice *ch,
                        double solve_us, double prepare_us)
{
    char b1[32], b2[32], b3[32];
    printf("library  %s\ndevice   %s\n", lib->dir, e->profile);
    printf("budget   latency %s ms, memory %s\n\n",
           isfinite(a->latency) ? (snprintf(b1, sizeof b1, "%.4g", a->latency), b1) : "none",
           a->memory == INT64_MAX ? "none" : cli_bytes((double)a->memory, b2));
    printf("%-6s %-9s %14s %12s %12s\n", "block", "sparsity", "accuracy loss", "latency ms", "weights");
    for (int b = 0; b < ch->n_blocks; b++) {
        int s = ch->option[b];
        printf("%-6d %-9.2f %14.5f %12.4f %12s\n", b, ch->sparsity[b], e->acc_loss[b][s], e->latency[b][s],
               cli_bytes((double)e->memory[b][s], b1));
    }
    printf("%-6s %-9s %14s %12.4f %12s\n", "frame", "", "", e->frame_ms, cli_bytes((double)e->frame_weight_bytes, b1));
    printf("\n");
    if (isfinite(ch->accuracy))
        printf("accuracy %.4f estimated (teacher %.4f - loss %.4f)%s%s\n", ch->accuracy, e->teacher_accuracy,
               ch->accuracy_loss, e->metric[0] ? ", " : "", e->metric);
    else
        printf("accuracy loss %.5f (the library has no teacher accuracy)\n", ch->accuracy_loss);
    printf("latency  %.4f ms estimated\n", ch->latency_ms);
    printf("memory   %s estimated (%s weights + %s activations)\n", cli_bytes((double)ch->memory_bytes, b1),
           cli_bytes((double)(ch->memory_bytes - e->frame_arena_bytes - e->block_arena_bytes), b2),
           cli_bytes((double)(e->frame_arena_bytes + e->block_arena_bytes), b3));
    printf("solved   in %.1f us (prepare %.1f us)\n", solve_us, prepare_us);
    if (!ch->feasible) {
        printf("\ninfeasible: nothing fits; this is the closest composition: both budgets x%.3f, over by %.4f ms "
               "and %lld bytes\n",
               ch->budget_scale, ch->latency_excess_ms, (long long)ch->memory_excess_bytes);
    }
}

static void print_json(const block_library *lib, const rt_estimates *e, const scale_args *a, const lego_choice *ch,
                       double solve_us, double prepare_us)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "library", lib->dir);
    cJSON_AddStringToObject(root, "profile", e->profile);
    if (isfinite(a->latency))
        cJSON_AddNumberToObject(root, "latency_budget_ms", a->latency);
    else
        cJSON_AddNullToObject(root, "latency_budget_ms");
    if (a->memory != INT64_MAX)
        cJSON_AddNumberToObject(root, "memory_budget_bytes", (double)a->memory);
    else
        cJSON_AddNullToObject(root, "memory_budget_bytes");
    cJSON_AddBoolToObject(root, "feasible", ch->feasible);
    cJSON *opts = cJSON_AddArrayToObject(root, "choice");
    cJSON *sps = cJSON_AddArrayToObject(root, "sparsity");
    for (int b = 0; b < ch->n_blocks; b++) {
        cJSON_AddItemToArray(opts, cJSON_CreateNumber(ch->option[b]));
        cJSON_AddItemToArray(sps, cJSON_CreateNumber(ch->sparsity[b]));
    }
    if (isfinite(ch->accuracy))
        cJSON_AddNumberToObject(root, "accuracy", ch->accuracy);
    else
        cJSON_AddNullToObject(root, "accuracy");
    cJSON_AddNumberToObject(root, "accuracy_loss", ch->accuracy_loss);
    cJSON_AddNumberToObject(root, "latency_ms", ch->latency_ms);
    cJSON_AddNumberToObject(root, "memory_bytes", (double)ch->memory_bytes);
    cJSON_AddNumberToObject(root, "activation_bytes", (double)(e->frame_arena_bytes + e->block_arena_bytes));
    cJSON_AddNumberToObject(root, "budget_scale", ch->budget_scale);
    cJSON_AddNumberToObject(root, "latency_excess_ms", ch->latency_excess_ms);
    cJSON_AddNumberToObject(root, "memory_excess_bytes", (double)ch->memory_excess_bytes);
    cJSON_AddNumberToObject(root, "solve_us", solve_us);
    cJSON_AddNumberToObject(root, "prepare_us", prepare_us);
    if (a->export_path)
        cJSON_AddStringToObject(root, "export", a->export_path);
    cli_print_json(root);
}

static lego_status export_choice(block_library *lib, const lego_choice *ch, const char *path)
{
    lego_graph g;
    LEGO_TRY(compose_model(lib, ch->option, &g));
    char buf[LEGO_MAX_BLOCKS * 12 + 16];
    size_t pos = 0;
    for (int b = 0; b < ch->n_blocks && pos < sizeof buf - 12; b++)
        pos += (size_t)snprintf(buf + pos, sizeof buf - pos, b ? ",%d" : "%d", ch->option[b]);
    const char *keys[] = {"legodnn.choice", NULL};
    const char *vals[] = {buf, NULL};
    lego_status st = onnx_export_file(&g, path, keys, vals);
    graph_free(&g);
    return st;
}

/* Run the choice through the runtime on a raw float32 file. */
static lego_status run_choice(const scale_args *a, const lego_choice *want)
{
    lego_runtime_options o = {.threads = 0, .batch = a->co.batch, .fixed_latency = 1};
    lego_runtime *rt;
    LEGO_TRY(lego_runtime_open(a->lib, &o, &rt));
    lego_choice ch;
    unsigned char *buf = NULL;
    size_t len = 0;
    lego_tensor *out = NULL;
    lego_status st = lego_runtime_set_budget(rt, a->latency, a->memory, &ch);
    if (st.code == LEGO_OK && memcmp(ch.option, want->option, sizeof *ch.option * (size_t)ch.n_blocks) != 0)
        st = lego_error(LEGO_ERR_INTERNAL, "the runtime chose another composition than the optimizer");
    if (st.code == LEGO_OK && (lego_runtime_num_inputs(rt) != 1 || lego_runtime_num_outputs(rt) != 1))
        st = lego_error(LEGO_ERR_UNSUPPORTED, "--input/--output handle models of one input and one output");
    if (st.code == LEGO_OK)
        st = file_read_all(a->input, &buf, &len);
    if (st.code == LEGO_OK) {
        lego_tensor x = *lego_runtime_input(rt, 0);
        char sh[128];
        if (x.dtype != LEGO_F32 || len != lego_tensor_bytes(&x)) {
            st = lego_error(LEGO_ERR_SHAPE, "%s: has %zu bytes, but the input (float32 %s) needs %zu", a->input, len,
                            cli_shape(&x, sh), lego_tensor_bytes(&x));
        } else {
            x.data = buf;
            const lego_tensor *ins[] = {&x};
            st = lego_runtime_run(rt, ins, &out, NULL);
        }
    }
    if (st.code == LEGO_OK)
        st = file_write_atomic(a->output, out->data, lego_tensor_bytes(out));
    lego_tensor_free(out);
    free(buf);
    lego_runtime_close(rt);
    return st;
}

static int parse_args(int argc, char **argv, scale_args *a)
{
    memset(a, 0, sizeof *a);
    a->co.threads = -1;
    a->co.batch = 1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool has = i + 1 < argc;
        int rc = cli_common_option(argc, argv, &i, CLI_OPT_JSON | CLI_OPT_THREADS | CLI_OPT_BATCH, scale_usage, &a->co);
        if (rc == EXIT_USAGE)
            return rc;
        if (rc == EXIT_OK)
            continue;
        if (strcmp(arg, "--latency") == 0) {
            if (!has || !cli_parse_latency(argv[++i], &a->latency))
                return cli_usage_error(scale_usage, "--latency needs milliseconds (or 'none')");
            a->have_latency = true;
        } else if (strcmp(arg, "--memory") == 0) {
            if (!has || !cli_parse_memory(argv[++i], &a->memory))
                return cli_usage_error(scale_usage, "--memory needs bytes, e.g. 3000000, 3MB, 2.5MiB (or 'none')");
            a->have_memory = true;
        } else if (strcmp(arg, "--export") == 0 || strcmp(arg, "--input") == 0 || strcmp(arg, "--output") == 0) {
            if (!has)
                return cli_usage_error(scale_usage, "%s needs a file name", arg);
            const char **slot = arg[2] == 'e' ? &a->export_path : arg[2] == 'i' ? &a->input : &a->output;
            *slot = argv[++i];
        } else if (cli_operand(scale_usage, arg, &a->lib, "library") != EXIT_OK) {
            return EXIT_USAGE;
        }
    }
    if (!a->lib)
        return cli_usage_error(scale_usage, "no library given");
    if (!a->have_latency || !a->have_memory)
        return cli_usage_error(scale_usage, "both budgets are needed: --latency MS and --memory BYTES ('none' for no "
                                            "limit)");
    if (!a->input != !a->output)
        return cli_usage_error(scale_usage, "--input and --output go together");
    return EXIT_OK;
}

int cmd_scale(int argc, char **argv)
{
    scale_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != EXIT_OK)
        return rc;
    cli_apply_threads(&a.co);
    double budget;
    lego_status st = rt_check_budget(a.latency, a.memory, &budget);
    if (st.code)
        return cli_fail(st);
    block_library lib;
    rt_estimates e;
    st = cli_open_estimates(a.lib, a.co.batch, &lib, &e);
    if (st.code)
        return cli_fail(st);
    int options[LEGO_MAX_BLOCKS];
    scale_choice sc = {.option = options};
    scale_prepared *sp = NULL;
    double t0 = now_us();
    st = scale_prepare(&e.problem, &sp);
    double t1 = now_us();
    if (st.code == LEGO_OK)
        st = scale_solve_prepared(sp, budget, a.memory, &sc);
    double t2 = now_us();
    scale_prepared_free(sp);
    lego_choice ch;
    memset(&ch, 0, sizeof ch);
    if (st.code == LEGO_OK) {
        rt_fill_choice(&lib, &e, &sc, 1.0, &ch);
        if (a.co.json)
            print_json(&lib, &e, &a, &ch, t2 - t1, t1 - t0);
        else
            print_table(&lib, &e, &a, &ch, t2 - t1, t1 - t0);
        if (!ch.feasible) {
            char b1[32], b2[32];
            st = lego_error(LEGO_ERR_ARG,
                            "infeasible: no composition fits %s ms and %s on this device; the closest needs %.4f ms "
                            "and %lld bytes (over by %.4f ms and %lld bytes)",
                            isfinite(a.latency) ? (snprintf(b1, sizeof b1, "%g", a.latency), b1) : "no limit",
                            a.memory == INT64_MAX ? "no memory limit" : cli_bytes((double)a.memory, b2),
                            ch.latency_ms, (long long)ch.memory_bytes, ch.latency_excess_ms,
                            (long long)ch.memory_excess_bytes);
        }
    }
    if (st.code == LEGO_OK && a.export_path) {
        st = export_choice(&lib, &ch, a.export_path);
        if (st.code == LEGO_OK && !a.co.json)
            printf("exported %s\n", a.export_path);
    }
    rt_estimates_free(&e);
    library_free(&lib);
    if (st.code == LEGO_OK && a.input) {
        st = run_choice(&a, &ch);
        if (st.code == LEGO_OK && !a.co.json)
            printf("ran the runtime on %s, wrote %s\n", a.input, a.output);
    }
    return st.code ? cli_fail(st) : EXIT_OK;
}
