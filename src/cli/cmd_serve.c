/* cmd_serve.c - `legodnn serve LIB --trace BUDGETS.csv [--data DATASET]
 * [--max-test N] [--threads N] [--batch B] [--quiet] [--json] [--log FILE]`: replay a
 * trace of budgets against the runtime while it serves inference, switching
 * blocks live, and report what it chose and what it delivered.
 *
 * The trace: one step per line, "time_s,latency_ms,memory_bytes" (a header
 * line is allowed, blank lines and lines starting with '#' are skipped);
 * time_s starts at 0 or later and increases; a budget is a number, a memory
 * size may carry a unit (3MB, 2.5MiB), "none" means no limit, and a
 * percentage ("60%") is that share of the teacher's estimate on this device
 * (every block original), so one trace fits any library and device. Step i
 * starts at time_s[i] (wall clock, from the start of serving) and lasts
 * until the next step; the last step lasts as long as the mean step before
 * it (1 s for a one-line trace). A malformed line or a bad budget stops
 * everything before serving starts, naming the file and line (exit 1).
 *
 * Each step sets the budget (lego_runtime_set_budget, online calibration
 * on) and then runs batches until the step ends (at least one). With --data
 * the batches come from the test split through the task interface
 * (classification; train/task.h), looping over it, and each step reports
 * the accuracy on the samples it served; without it the inputs are random
 * and only latency is reported. Per step: the choice (descendant per
 * block), estimated accuracy and latency, measured latency (median of the
 * step's runs), runs, accuracy, memory in use (weights + activation
 * scratch), blocks switched and loaded, switch time, solve time. Then a
 * summary. --log FILE also writes the --json log to FILE (atomically), for
 * `legodnn report --serve FILE`. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blocks/compose.h"
#include "blocks/library.h"
#include "cli.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "runtime/runtime.h"
#include "train/task.h"

static const char serve_usage[] =
    "legodnn serve LIB --trace BUDGETS.csv [--data DATASET] [--max-test N] [--threads N] [--batch B]\n"
    "         [--quiet] [--json] [--log FILE]";

typedef struct trace_step {
    double time_s, latency_ms;
    int64_t memory;
    double latency_pct, memory_pct; /* "60%": of the teacher's estimate; NaN: absolute */
    int line;
} trace_step;

typedef struct step_log {
    lego_choice choice;
    double measured_ms;      /* median of the step's runs */
    double accuracy;         /* NaN without data */
    int64_t runs, samples;
    int64_t memory_in_use;
    double calibration;
    int over_budget;         /* measured median above the latency budget */
} step_log;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ---- the trace ------------------------------------------------------------------------- */

static char *next_field(char **p)
{
    char *s = *p;
    if (!s)
        return NULL;
    char *c = strchr(s, ',');
    if (c) {
        *c = 0;
        *p = c + 1;
    } else {
        *p = NULL;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

/* "60%" -> 60 (true); any other text leaves *out alone (false). A malformed
 * or out-of-range percentage sets -1, for the caller's message. */
static bool parse_percent(const char *s, double *out)
{
    size_t n = strlen(s);
    if (n < 2 || s[n - 1] != '%')
        return false;
    char num[64];
    if (n - 1 >= sizeof num) {
        *out = -1;
        return true;
    }
    memcpy(num, s, n - 1);
    num[n - 1] = 0;
    double v;
    *out = cli_parse_double(num, &v) && v > 0 && v <= 1000 ? v : -1;
    return true;
}

/* Percentages of the teacher's estimated latency and memory on this device
 * into absolute budgets, so one trace fits any device and library; then
 * every step's budgets are checked as lego_runtime_set_budget would. */
static lego_status resolve_budgets(lego_runtime *rt, const char *path, trace_step *steps, int n)
{
    lego_runtime_stats rs;
    LEGO_TRY(lego_runtime_stats_get(rt, &rs));
    for (int i = 0; i < n; i++) {
        trace_step *t = &steps[i];
        if (!isnan(t->latency_pct))
            t->latency_ms = rs.teacher_latency_ms * t->latency_pct / 100;
        if (!isnan(t->memory_pct))
            t->memory = (int64_t)((double)rs.teacher_memory_bytes * t->memory_pct / 100);
        double dummy;
        lego_status bad = rt_check_budget(t->latency_ms, t->memory, &dummy);
        if (bad.code) {
            lego_status st = lego_error(LEGO_ERR_FORMAT, "%s:%d: %s", path, t->line, lego_status_msg(bad));
            lego_status_free(&bad);
            return st;
        }
    }
    return lego_ok();
}

static lego_status read_trace(const char *path, trace_step **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    trace_step *steps = NULL;
    int n = 0, cap = 0, line_no = 0;
    bool seen_content = false;
    char line[1024];
    lego_status st = lego_ok();
    while (st.code == LEGO_OK && fgets(line, sizeof line, f)) {
        line_no++;
        if (!strchr(line, '\n') && !feof(f)) {
            st = lego_error(LEGO_ERR_FORMAT, "%s:%d: line too long", path, line_no);
            break;
        }
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == 0)
            continue;
        char *rest = p;
        char *a = next_field(&rest), *b = next_field(&rest), *c = next_field(&rest);
        bool first = !seen_content;
        seen_content = true;
        char *end;
        errno = 0;
        double t = a ? strtod(a, &end) : 0;
        bool t_ok = a && *a && !errno && end != a && !*end;
        if (!t_ok && first && a && strchr("0123456789.+-", a[0]) == NULL)
            continue; /* the header */
        if (!a || !b || !c || rest) {
            st = lego_error(LEGO_ERR_FORMAT, "%s:%d: want 3 fields, time_s,latency_ms,memory_bytes", path, line_no);
            break;
        }
        trace_step s = {.line = line_no};
        if (!t_ok || !isfinite(t) || t < 0) {
            st = lego_error(LEGO_ERR_FORMAT, "%s:%d: time_s '%s' is not a time in seconds (>= 0)", path, line_no, a);
            break;
        }
        if (n && t <= steps[n - 1].time_s) {
            st = lego_error(LEGO_ERR_FORMAT, "%s:%d: time_s %g does not come after %g (line %d)", path, line_no, t,
                            steps[n - 1].time_s, steps[n - 1].line);
            break;
        }
        s.time_s = t;
        s.latency_pct = s.memory_pct = NAN;
        bool lat_pct = parse_percent(b, &s.latency_pct), mem_pct = parse_percent(c, &s.memory_pct);
        if (lat_pct || mem_pct) {
            if (isnan(s.latency_pct) && !cli_parse_latency(b, &s.latency_ms))
                s.latency_pct = -1; /* reported below */
            if (isnan(s.memory_pct) && !cli_parse_memory(c, &s.memory))
                s.memory_pct = -1;
            if (s.latency_pct < 0 || s.memory_pct < 0) {
                st = lego_error(LEGO_ERR_FORMAT, "%s:%d: '%s' or '%s' is not a budget (a number, a percentage of "
                                "the teacher's estimate in (0, 1000]%%, or 'none')", path, line_no, b, c);
                break;
            }
        } else if (!cli_parse_latency(b, &s.latency_ms)) {
            st = lego_error(LEGO_ERR_FORMAT, "%s:%d: latency_ms '%s' is not a number of milliseconds (or 'none')",
                            path, line_no, b);
            break;
        } else if (!cli_parse_memory(c, &s.memory)) {
            st = lego_error(LEGO_ERR_FORMAT, "%s:%d: memory_bytes '%s' is not a size (bytes, 3MB, 2.5MiB, 'none')",
                            path, line_no, c);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            trace_step *g = realloc(steps, sizeof *g * (size_t)cap);
            if (!g) {
                st = lego_error(LEGO_ERR_NOMEM, "out of memory reading %s", path);
                break;
            }
            steps = g;
        }
        steps[n++] = s;
    }
    if (st.code == LEGO_OK && ferror(f))
        st = lego_error(LEGO_ERR_IO, "%s: read error", path);
    fclose(f);
    if (st.code == LEGO_OK && n == 0)
        st = lego_error(LEGO_ERR_FORMAT, "%s: no steps (want lines of time_s,latency_ms,memory_bytes)", path);
    if (st.code) {
        free(steps);
        return st;
    }
    *out = steps;
    *n_out = n;
    return lego_ok();
}

/* ---- serving ---------------------------------------------------------------------------- */

static void choice_str(const lego_choice *c, char *buf, size_t len)
{
    size_t pos = 0;
    bool digits = true;
    for (int b = 0; b < c->n_blocks; b++)
        digits = digits && c->option[b] < 10;
    for (int b = 0; b < c->n_blocks && pos + 8 < len; b++)
        pos += (size_t)snprintf(buf + pos, len - pos, digits ? "%d" : b ? ",%d" : "%d", c->option[b]);
}

typedef struct serve_args {
    const char *lib, *trace, *data, *log;
    cli_common co; /* --json, --quiet, --threads, --batch, --max-test */
} serve_args;

typedef struct server {
    const serve_args *a;
    lego_runtime *rt;
    task_data *task;
    lego_tensor x;
    rng g;
    int epoch;
    double *lat;        /* run latencies of one step */
    int64_t lat_cap;
} server;

/* The next batch into s->x: samples from the test split (looping), or
 * random. Returns the samples in it. */
static int64_t next_batch(server *s)
{
    if (!s->task) {
        float *p = s->x.data;
        for (int64_t i = 0; i < lego_tensor_numel(&s->x); i++)
            p[i] = rng_normal(&s->g);
        return s->x.dims[0];
    }
    int64_t n = task_next(s->task, SPLIT_TEST, s->x.data);
    if (n == 0) {
        task_start(s->task, SPLIT_TEST, ++s->epoch);
        n = task_next(s->task, SPLIT_TEST, s->x.data);
    }
    return n;
}

static lego_status serve_step(server *s, const trace_step *t, double end, step_log *log)
{
    memset(log, 0, sizeof *log);
    LEGO_TRY(lego_runtime_set_budget(s->rt, t->latency_ms, t->memory, &log->choice));
    if (s->task)
        task_metric(s->task, true);
    int64_t n_lat = 0;
    do {
        int64_t n = next_batch(s);
        if (n <= 0)
            return lego_error(LEGO_ERR_FORMAT, "%s: the test split is empty", s->a->data);
        const lego_tensor *ins[] = {&s->x};
        lego_tensor *out[16] = {0};
        lego_run_info info;
        LEGO_TRY(lego_runtime_run(s->rt, ins, out, &info));
        if (s->task)
            task_score(s->task, (const lego_tensor *const *)out, n);
        for (int o = 0; o < lego_runtime_num_outputs(s->rt); o++)
            lego_tensor_free(out[o]);
        if (n_lat == s->lat_cap) {
            int64_t cap = s->lat_cap ? 2 * s->lat_cap : 1024;
            double *l = realloc(s->lat, sizeof *l * (size_t)cap);
            if (!l)
                return lego_error(LEGO_ERR_NOMEM, "out of memory");
            s->lat = l;
            s->lat_cap = cap;
        }
        s->lat[n_lat++] = info.latency_ms;
        log->runs++;
        log->samples += n;
    } while (now_s() < end);
    cli_sort_doubles(s->lat, (size_t)n_lat);
    log->measured_ms = n_lat % 2 ? s->lat[n_lat / 2] : 0.5 * (s->lat[n_lat / 2 - 1] + s->lat[n_lat / 2]);
    log->accuracy = s->task ? task_metric(s->task, true) : NAN;
    lego_runtime_stats st;
    LEGO_TRY(lego_runtime_stats_get(s->rt, &st));
    log->memory_in_use = st.weights_bytes + st.arena_bytes;
    log->calibration = st.calibration;
    log->over_budget = log->measured_ms > t->latency_ms;
    return lego_ok();
}

static lego_status open_task(server *s)
{
    const serve_args *a = s->a;
    if (!a->data)
        return lego_ok();
    /* the task shapes batches after the model: the teacher composition */
    block_library lib;
    LEGO_TRY(library_open(a->lib, &lib));
    int zeros[LEGO_MAX_BLOCKS] = {0};
    lego_graph g;
    lego_status st = compose_model(&lib, zeros, &g);
    if (st.code == LEGO_OK) {
        g.values[g.inputs[0]].t.dims[0] = s->x.dims[0];
        st = graph_infer(&g);
        if (st.code == LEGO_OK)
            st = task_open(task_find("classification"), a->data, &g, (int)s->x.dims[0], -1, a->co.max_test, 1,
                           &s->task);
        graph_free(&g);
    }
    library_free(&lib);
    if (st.code == LEGO_OK)
        task_start(s->task, SPLIT_TEST, 0);
    return st;
}

static void print_steps(const serve_args *a, const trace_step *t, const step_log *l, int n,
                        const lego_runtime_stats *fin, double seconds)
{
    char b1[32], b2[32], b3[32], ch[LEGO_MAX_BLOCKS * 4 + 8];
    printf("device   %s\n\n", fin->profile);
    printf("%4s %7s %9s %10s  %-10s %8s %8s %9s %6s %8s %10s %3s %3s %9s %8s\n", "step", "time_s", "budget_ms",
           "budget_mem", "choice", "est_acc", "est_ms", "meas_ms", "runs", "accuracy", "memory", "sw", "ld", "switch_ms",
           "solve_us");
    for (int i = 0; i < n; i++) {
        const lego_choice *c = &l[i].choice;
        choice_str(c, ch, sizeof ch);
        char acc[16], eacc[16];
        snprintf(acc, sizeof acc, isnan(l[i].accuracy) ? "-" : "%.4f", l[i].accuracy);
        snprintf(eacc, sizeof eacc, isnan(c->accuracy) ? "-" : "%.4f", c->accuracy);
        printf("%4d %7.2f %9s %10s  %-10s %8s %8.4f %8.4f%s %6lld %8s %10s %3d %3d %9.4f %8.1f%s\n", i, t[i].time_s,
               isfinite(t[i].latency_ms) ? (snprintf(b1, sizeof b1, "%.4g", t[i].latency_ms), b1) : "none",
               t[i].memory == INT64_MAX ? "none" : cli_bytes((double)t[i].memory, b2), ch, eacc, c->latency_ms,
               l[i].measured_ms, l[i].over_budget ? "!" : " ", (long long)l[i].runs, acc,
               cli_bytes((double)l[i].memory_in_use, b3), c->switched, c->loaded, c->switch_ms, c->solve_us,
               c->feasible ? "" : "  infeasible: closest");
    }
    int64_t runs = 0, samples = 0, over = 0, infeasible = 0;
    double acc_sum = 0, sw = 0, solve = 0;
    for (int i = 0; i < n; i++) {
        runs += l[i].runs;
        samples += l[i].samples;
        over += l[i].over_budget;
        infeasible += !l[i].choice.feasible;
        if (!isnan(l[i].accuracy))
            acc_sum += l[i].accuracy * (double)l[i].samples;
        sw += l[i].choice.switch_ms;
        solve += l[i].choice.solve_us;
    }
    printf("\nchoice: the descendant of each block (0 = the original block); meas_ms: median run of the step (! over "
           "budget); memory: weights + activations in use; sw/ld: blocks switched / read from disk%s\n",
           a->data ? "" : "; random inputs (no --data): no accuracy");
    printf("\n%d steps in %.1f s: %lld runs, %lld samples", n, seconds, (long long)runs, (long long)samples);
    if (a->data)
        printf(", accuracy %.4f", samples ? acc_sum / (double)samples : 0.0);
    printf("\nlatency budget missed by the step median in %lld step(s); %lld infeasible step(s)\n", (long long)over,
           (long long)infeasible);
    printf("switching: %llu blocks switched, %llu loaded from disk, %.3f ms in all (%.4f ms per step); solve %.1f us "
           "per step\n",
           (unsigned long long)fin->switches, (unsigned long long)fin->loads, fin->switch_ms, sw / n, solve / n);
    printf("calibration ratio %.3f (median of %d runs)\n", fin->calibration, fin->calibration_samples);
}

/* The log as JSON: to stdout, or atomically into `path` when not NULL. */
static lego_status print_json(const serve_args *a, const trace_step *t, const step_log *l, int n,
                              const lego_runtime_stats *fin, double seconds, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "library", a->lib);
    cJSON_AddStringToObject(root, "trace", a->trace);
    cJSON_AddStringToObject(root, "profile", fin->profile);
    if (a->data)
        cJSON_AddStringToObject(root, "data", a->data);
    cJSON *steps = cJSON_AddArrayToObject(root, "steps");
    int64_t runs = 0, samples = 0;
    double acc_sum = 0;
    for (int i = 0; i < n; i++) {
        const lego_choice *c = &l[i].choice;
        cJSON *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "time_s", t[i].time_s);
        if (isfinite(t[i].latency_ms))
            cJSON_AddNumberToObject(s, "latency_budget_ms", t[i].latency_ms);
        else
            cJSON_AddNullToObject(s, "latency_budget_ms");
        if (t[i].memory != INT64_MAX)
            cJSON_AddNumberToObject(s, "memory_budget_bytes", (double)t[i].memory);
        else
            cJSON_AddNullToObject(s, "memory_budget_bytes");
        cJSON *ch = cJSON_AddArrayToObject(s, "choice");
        cJSON *sp = cJSON_AddArrayToObject(s, "sparsity");
        for (int b = 0; b < c->n_blocks; b++) {
            cJSON_AddItemToArray(ch, cJSON_CreateNumber(c->option[b]));
            cJSON_AddItemToArray(sp, cJSON_CreateNumber(c->sparsity[b]));
        }
        cJSON_AddBoolToObject(s, "feasible", c->feasible);
        if (isnan(c->accuracy))
            cJSON_AddNullToObject(s, "estimated_accuracy");
        else
            cJSON_AddNumberToObject(s, "estimated_accuracy", c->accuracy);
        cJSON_AddNumberToObject(s, "estimated_latency_ms", c->latency_ms);
        cJSON_AddNumberToObject(s, "estimated_memory_bytes", (double)c->memory_bytes);
        cJSON_AddNumberToObject(s, "measured_latency_ms", l[i].measured_ms);
        cJSON_AddNumberToObject(s, "runs", (double)l[i].runs);
        cJSON_AddNumberToObject(s, "samples", (double)l[i].samples);
        if (isnan(l[i].accuracy))
            cJSON_AddNullToObject(s, "accuracy");
        else
            cJSON_AddNumberToObject(s, "accuracy", l[i].accuracy);
        cJSON_AddNumberToObject(s, "memory_in_use_bytes", (double)l[i].memory_in_use);
        cJSON_AddNumberToObject(s, "switched", c->switched);
        cJSON_AddNumberToObject(s, "loaded", c->loaded);
        cJSON_AddNumberToObject(s, "switch_ms", c->switch_ms);
        cJSON_AddNumberToObject(s, "solve_us", c->solve_us);
        cJSON_AddNumberToObject(s, "calibration", l[i].calibration);
        cJSON_AddItemToArray(steps, s);
        runs += l[i].runs;
        samples += l[i].samples;
        if (!isnan(l[i].accuracy))
            acc_sum += l[i].accuracy * (double)l[i].samples;
    }
    cJSON *sum = cJSON_AddObjectToObject(root, "summary");
    cJSON_AddNumberToObject(sum, "steps", n);
    cJSON_AddNumberToObject(sum, "seconds", seconds);
    cJSON_AddNumberToObject(sum, "runs", (double)runs);
    cJSON_AddNumberToObject(sum, "samples", (double)samples);
    if (a->data)
        cJSON_AddNumberToObject(sum, "accuracy", samples ? acc_sum / (double)samples : 0);
    cJSON_AddNumberToObject(sum, "switches", (double)fin->switches);
    cJSON_AddNumberToObject(sum, "loads", (double)fin->loads);
    cJSON_AddNumberToObject(sum, "evictions", (double)fin->evictions);
    cJSON_AddNumberToObject(sum, "switch_ms", fin->switch_ms);
    cJSON_AddNumberToObject(sum, "load_ms", fin->load_ms);
    cJSON_AddNumberToObject(sum, "calibration", fin->calibration);
    return cli_emit_json(root, path);
}

static int parse_args(int argc, char **argv, serve_args *a)
{
    memset(a, 0, sizeof *a);
    a->co.threads = -1;
    a->co.batch = 1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool has = i + 1 < argc;
        int rc = cli_common_option(argc, argv, &i, CLI_OPT_JSON | CLI_OPT_QUIET | CLI_OPT_THREADS | CLI_OPT_BATCH |
                                                       CLI_OPT_MAX_TEST, serve_usage, &a->co);
        if (rc == EXIT_USAGE)
            return rc;
        if (rc == EXIT_OK)
            continue;
        if (strcmp(arg, "--trace") == 0 || strcmp(arg, "--data") == 0 || strcmp(arg, "--log") == 0) {
            if (!has)
                return cli_usage_error(serve_usage, "%s needs a value", arg);
            *(arg[2] == 't' ? &a->trace : arg[2] == 'd' ? &a->data : &a->log) = argv[++i];
        } else if (cli_operand(serve_usage, arg, &a->lib, "library") != EXIT_OK) {
            return EXIT_USAGE;
        }
    }
    if (!a->lib)
        return cli_usage_error(serve_usage, "no library given");
    if (!a->trace)
        return cli_usage_error(serve_usage, "--trace BUDGETS.csv is required");
    return EXIT_OK;
}

int cmd_serve(int argc, char **argv)
{
    serve_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != EXIT_OK)
        return rc;
    cli_apply_threads(&a.co);
    trace_step *steps;
    int n;
    lego_status st = read_trace(a.trace, &steps, &n);
    if (st.code)
        return cli_fail(st);
    server s;
    memset(&s, 0, sizeof s);
    s.a = &a;
    rng_seed(&s.g, 1);
    lego_runtime_options o = {.batch = a.co.batch};
    st = lego_runtime_open(a.lib, &o, &s.rt);
    if (st.code == LEGO_OK)
        st = resolve_budgets(s.rt, a.trace, steps, n);
    if (st.code == LEGO_OK && (lego_runtime_num_inputs(s.rt) != 1 || lego_runtime_num_outputs(s.rt) > 16))
        st = lego_error(LEGO_ERR_UNSUPPORTED, "%s: serve feeds models of one input", a.lib);
    if (st.code == LEGO_OK) {
        s.x = *lego_runtime_input(s.rt, 0);
        s.x.data = NULL;
        st = s.x.dtype == LEGO_F32 ? tensor_alloc(&s.x)
                                   : lego_error(LEGO_ERR_UNSUPPORTED, "%s: serve feeds float32 inputs", a.lib);
    }
    if (st.code == LEGO_OK)
        st = open_task(&s);
    step_log *logs = calloc((size_t)n, sizeof *logs);
    if (st.code == LEGO_OK && !logs)
        st = lego_error(LEGO_ERR_NOMEM, "out of memory");
    double mean_step = n > 1 ? (steps[n - 1].time_s - steps[0].time_s) / (n - 1) : 1.0;
    double start = now_s();
    int done = 0;
    for (int i = 0; i < n && st.code == LEGO_OK; i++) {
        sleep_s(start + steps[i].time_s - now_s());
        double end = start + (i + 1 < n ? steps[i + 1].time_s : steps[i].time_s + mean_step);
        st = serve_step(&s, &steps[i], end, &logs[i]);
        if (st.code == LEGO_OK) {
            done++;
            if (!a.co.quiet && !a.co.json) {
                char ch[LEGO_MAX_BLOCKS * 4 + 8];
                choice_str(&logs[i].choice, ch, sizeof ch);
                fprintf(stderr, "serve step %d/%d at %.2f s: choice %s, %lld runs, %.4f ms\n", i + 1, n,
                        now_s() - start, ch, (long long)logs[i].runs, logs[i].measured_ms);
            }
        } else {
            st = lego_error_context(st, "%s:%d", a.trace, steps[i].line);
        }
    }
    double seconds = now_s() - start;
    if (st.code == LEGO_OK) {
        lego_runtime_stats fin;
        st = lego_runtime_stats_get(s.rt, &fin);
        if (st.code == LEGO_OK) {
            if (a.co.json)
                st = print_json(&a, steps, logs, done, &fin, seconds, NULL);
            else
                print_steps(&a, steps, logs, done, &fin, seconds);
            if (st.code == LEGO_OK && a.log)
                st = print_json(&a, steps, logs, done, &fin, seconds, a.log);
        }
    }
    free(logs);
    free(s.lat);
    if (s.task)
        task_close(s.task);
    tensor_release(&s.x);
    lego_runtime_close(s.rt);
    free(steps);
    return st.code ? cli_fail(st) : EXIT_OK;
}
