/* cmd_run.c - `legodnn run`: inference on raw float32 files, optionally
 * timed over repeated runs. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "core/file.h"

static const char run_usage[] =
    "legodnn run MODEL.onnx --input IN.bin [--input ...] [--output OUT.bin ...] [--threads N]\n"
    "         [--repeat N] [--json]";

#define MAX_FILES 64

typedef struct run_args {
    const char *model;
    const char *inputs[MAX_FILES];
    const char *outputs[MAX_FILES];
    int n_inputs, n_outputs;
    long repeat;
    cli_common co; /* --json, --threads */
} run_args;

static int parse_args(int argc, char **argv, run_args *a)
{
    memset(a, 0, sizeof *a);
    a->co.threads = -1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool has_value = i + 1 < argc;
        int rc = cli_common_option(argc, argv, &i, CLI_OPT_JSON | CLI_OPT_THREADS, run_usage, &a->co);
        if (rc == EXIT_USAGE)
            return rc;
        if (rc == EXIT_OK)
            continue;
        if (strcmp(arg, "--input") == 0 || strcmp(arg, "--output") == 0) {
            if (!has_value)
                return cli_usage_error(run_usage, "%s needs a file name", arg);
            bool in = arg[2] == 'i';
            int *n = in ? &a->n_inputs : &a->n_outputs;
            if (*n == MAX_FILES)
                return cli_usage_error(run_usage, "too many %s files", in ? "input" : "output");
            (in ? a->inputs : a->outputs)[(*n)++] = argv[++i];
        } else if (strcmp(arg, "--repeat") == 0) {
            if (!has_value || !cli_parse_int(argv[++i], 1, 1000000, &a->repeat))
                return cli_usage_error(run_usage, "--repeat needs a count from 1 to 1000000");
        } else if (cli_operand(run_usage, arg, &a->model, "model") != EXIT_OK) {
            return EXIT_USAGE;
        }
    }
    if (!a->model)
        return cli_usage_error(run_usage, "no model given");
    return EXIT_OK;
}

/* Read input i. A file holding a whole number of samples sets the batch
 * size when the model's first dimension is dynamic. */
static lego_status load_input(lego_model *m, int i, const char *path, lego_tensor *t)
{
    unsigned char *buf;
    size_t len;
    LEGO_TRY(file_read_all(path, &buf, &len));
    const lego_tensor *want = lego_model_input(m, i);
    size_t need = lego_tensor_bytes(want);
    char sh[128], why[512] = "";
    size_t sample = want->rank > 0 && want->dims[0] > 0 ? need / (size_t)want->dims[0] : 0;
    if (len != need && sample && len && len % sample == 0) {
        int64_t dims[LEGO_MAX_RANK];
        memcpy(dims, want->dims, sizeof dims);
        dims[0] = (int64_t)(len / sample);
        lego_status st = lego_model_set_input_shape(m, i, want->rank, dims);
        if (st.code)
            snprintf(why, sizeof why, " (a batch of %lld does not fit: %s)", (long long)dims[0],
                     lego_status_msg(st));
        lego_status_free(&st);
        want = lego_model_input(m, i);
        need = lego_tensor_bytes(want);
    }
    if (len != need) {
        free(buf);
        return lego_error(LEGO_ERR_SHAPE, "%s: has %zu bytes, but input '%s' (float32 %s) needs %zu%s",
                          path, len, lego_model_input_name(m, i), cli_shape(want, sh), need, why);
    }
    *t = *want;
    t->data = buf;
    t->owns = 0;
    return lego_ok();
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void summarize(const lego_tensor *t, double *mn, double *mx, double *mean)
{
    int64_t n = lego_tensor_numel(t);
    const float *x = t->data;
    *mn = INFINITY, *mx = -INFINITY, *mean = 0;
    for (int64_t i = 0; i < n; i++) {
        *mn = x[i] < *mn ? x[i] : *mn;
        *mx = x[i] > *mx ? x[i] : *mx;
        *mean += x[i];
    }
    *mean = n ? *mean / (double)n : 0;
}

static lego_status timed_runs(lego_model *m, const lego_tensor *const *ins, long repeat,
                              double *median, double *spread)
{
    int n_out = lego_model_num_outputs(m);
    lego_tensor *outs[MAX_FILES];
    double *ms = malloc(sizeof *ms * (size_t)repeat);
    if (!ms)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    for (long r = 0; r < repeat; r++) {
        double t0 = now_ms();
        lego_status st = lego_model_run(m, ins, outs);
        ms[r] = now_ms() - t0;
        if (st.code) {
            free(ms);
            return st;
        }
        for (int o = 0; o < n_out; o++)
            lego_tensor_free(outs[o]);
    }
    cli_sort_doubles(ms, (size_t)repeat);
    *median = ms[repeat / 2];
    /* interquartile range: robust against a stray slow run */
    *spread = ms[(repeat * 3) / 4] - ms[repeat / 4];
    free(ms);
    return lego_ok();
}

static int report(const run_args *a, lego_model *m, lego_tensor **outs, double median, double spread)
{
    int n_out = lego_model_num_outputs(m);
    char sh[128];
    if (!a->co.json) {
        printf("%-24s %-16s %12s %12s %12s\n", "output", "shape", "min", "max", "mean");
        for (int o = 0; o < n_out; o++) {
            double mn, mx, mean;
            summarize(outs[o], &mn, &mx, &mean);
            printf("%-24s %-16s %12.5g %12.5g %12.5g\n", lego_model_output_name(m, o),
                   cli_shape(outs[o], sh), mn, mx, mean);
        }
        if (a->repeat)
            printf("\nlatency   %.3f ms median over %ld runs (interquartile range %.3f ms), %d thread%s\n",
                   median, a->repeat, spread, lego_get_num_threads(),
                   lego_get_num_threads() == 1 ? "" : "s");
        return EXIT_OK;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", a->model);
    cJSON *arr = cJSON_AddArrayToObject(root, "outputs");
    for (int o = 0; o < n_out; o++) {
        double mn, mx, mean;
        summarize(outs[o], &mn, &mx, &mean);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", lego_model_output_name(m, o));
        cJSON *dims = cJSON_AddArrayToObject(j, "shape");
        for (int d = 0; d < outs[o]->rank; d++)
            cJSON_AddItemToArray(dims, cJSON_CreateNumber((double)outs[o]->dims[d]));
        cJSON_AddNumberToObject(j, "min", mn);
        cJSON_AddNumberToObject(j, "max", mx);
        cJSON_AddNumberToObject(j, "mean", mean);
        if (a->n_outputs > o)
            cJSON_AddStringToObject(j, "file", a->outputs[o]);
        cJSON_AddItemToArray(arr, j);
    }
    if (a->repeat) {
        cJSON *t = cJSON_AddObjectToObject(root, "latency_ms");
        cJSON_AddNumberToObject(t, "median", median);
        cJSON_AddNumberToObject(t, "iqr", spread);
        cJSON_AddNumberToObject(t, "runs", (double)a->repeat);
        cJSON_AddNumberToObject(t, "threads", lego_get_num_threads());
    }
    return cli_print_json(root);
}

int cmd_run(int argc, char **argv)
{
    run_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != EXIT_OK)
        return rc;
    cli_apply_threads(&a.co);
    lego_model *m;
    lego_status st = lego_model_load(a.model, &m);
    if (st.code)
        return cli_fail(st);
    int n_in = lego_model_num_inputs(m), n_out = lego_model_num_outputs(m);
    if (a.n_inputs != n_in || (a.n_outputs && a.n_outputs != n_out) || n_out > MAX_FILES) {
        lego_model_free(m);
        return cli_usage_error(run_usage, "the model has %d input%s and %d output%s; give --input once per input%s",
                               n_in, n_in == 1 ? "" : "s", n_out, n_out == 1 ? "" : "s",
                               " and, if any, --output once per output");
    }
    lego_tensor ins[MAX_FILES];
    const lego_tensor *in_ptrs[MAX_FILES];
    lego_tensor *outs[MAX_FILES] = {0};
    int loaded = 0;
    for (; loaded < n_in && st.code == LEGO_OK; loaded++) {
        st = load_input(m, loaded, a.inputs[loaded], &ins[loaded]);
        in_ptrs[loaded] = &ins[loaded];
    }
    if (st.code)
        loaded--; /* the failed one holds nothing */
    double median = 0, spread = 0;
    if (st.code == LEGO_OK)
        st = lego_model_run(m, in_ptrs, outs);
    if (st.code == LEGO_OK && a.repeat)
        st = timed_runs(m, in_ptrs, a.repeat, &median, &spread);
    for (int o = 0; st.code == LEGO_OK && o < a.n_outputs; o++)
        st = file_write_atomic(a.outputs[o], outs[o]->data, lego_tensor_bytes(outs[o]));
    rc = st.code ? cli_fail(st) : report(&a, m, outs, median, spread);
    for (int i = 0; i < loaded; i++)
        free(ins[i].data);
    for (int o = 0; o < n_out; o++)
        lego_tensor_free(outs[o]);
    lego_model_free(m);
    return rc;
}
