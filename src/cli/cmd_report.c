/* cmd_report.c - `legodnn report LIB [--serve SERVE.json] [--plot OUT.png|OUT.svg]
 * [--save REPORT.json] [--threads N] [--batch B] [--json]`: what a finished block library offers
 * on this device, in one table and one picture.
 *
 * It reads the library after `extract`, `retrain`, `profile` and `latency`
 * (the same estimates the runtime and `scale` use) and reports: blocks,
 * descendants, the number of composable models, the teacher, the uniform
 * compositions (every block at one sparsity; their measured accuracy when
 * `profile` measured them), the smallest composition and a middle one (the
 * optimizer's choice for the memory half-way between the smallest and the
 * teacher), the optimizer's decision time over many random budgets, and the
 * block switch time measured in the runtime (first load from disk, then once
 * cached), and the exact Pareto frontiers of estimated accuracy against
 * memory and against latency (--json lists their compositions). --serve adds the budget trace that `legodnn serve --log` wrote.
 * --save also writes the --json report to a file (atomically).
 *
 * --plot draws estimated accuracy against memory and against latency: every
 * composition (or a seeded sample of 100,000 when there are more), the exact
 * Pareto frontier of each, the measured compositions and the trace's
 * choices. The data and a script go to a temporary directory, gnuplot
 * (Debian's gnuplot-nox) renders them, and the picture is written
 * atomically; nothing is left behind on failure. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blocks/library.h"
#include "cli.h"
#include "core/file.h"
#include "core/progress.h"
#include "core/rng.h"
#include "runtime/latency.h"
#include "runtime/optimizer.h"
#include "runtime/runtime.h"

extern char **environ; /* for gnuplot: POSIX declares it nowhere */

static const char report_usage[] =
    "legodnn report LIB [--serve SERVE.json] [--plot OUT.png|OUT.svg] [--save REPORT.json]\n"
    "         [--threads N] [--batch B] [--json]";

#define CLOUD_MAX 100000    /* compositions drawn in the plot, at most */
#define OPT_DECISIONS 1000  /* random budgets timed */
#define SWITCH_ROUNDS 20    /* cached switches timed */
#define FRONTIER_MAX 4096

typedef struct report_args {
    const char *lib, *serve, *plot, *save;
    long threads, batch;
    bool json;
} report_args;

/* One composition worth naming in the table. */
typedef struct named {
    char label[48];
    int option[LEGO_MAX_BLOCKS];
    double est_acc, meas_acc; /* fractions; meas NaN when never measured */
    double latency_ms;
    int64_t memory, weights;
} named;

/* One step of a serve trace. */
typedef struct trace_pt {
    double est_acc, latency_ms, memory, acc;
    bool feasible;
} trace_pt;

typedef struct report {
    int n_blocks, n_desc;
    double n_models;
    named teacher, smallest, middle;
    named *uniform;
    int n_uniform;
    double opt_median_us, opt_p90_us;
    int opt_kept_options;
    double switch_first_ms, switch_cached_ms; /* per block */
    int switch_samples;
    trace_pt *trace;
    int n_trace;
    double trace_accuracy;    /* served accuracy, NaN without data */
    int trace_infeasible;
    double trace_switch_ms;   /* per switched block, the trace's decisions */
    scale_frontier front[2];  /* exact Pareto frontiers: [0] against memory, [1] latency */
} report;

/* The q-quantile of v[0..n) (sorts v). */
static double quantile(double *v, int n, double q)
{
    if (n == 0)
        return NAN;
    cli_sort_doubles(v, (size_t)n);
    int i = (int)floor(q * (n - 1) + 0.5);
    return v[i];
}

/* ---- compositions ------------------------------------------------------------------ */

static int64_t weights_of(const block_library *lib, const int *option)
{
    int64_t w = lib->frame_param_bytes;
    for (int b = 0; b < lib->n_blocks; b++)
        w += lib->blocks[b].desc[option[b]].weight_bytes;
    return w;
}

/* The accuracy `profile` measured for this composition, or NaN. The manifest
 * keeps each evaluated composition as its sparsity per block. */
static double measured_accuracy(const block_library *lib, const int *option)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(lib->manifest, "profile");
    const cJSON *comps = cJSON_GetObjectItemCaseSensitive(p, "compositions");
    const cJSON *c;
    cJSON_ArrayForEach(c, comps)
    {
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(c, "choice");
        const cJSON *acc = cJSON_GetObjectItemCaseSensitive(c, "accuracy");
        if (!cJSON_IsArray(ch) || !cJSON_IsNumber(acc) || cJSON_GetArraySize(ch) != lib->n_blocks)
            continue;
        bool same = true;
        for (int b = 0; b < lib->n_blocks && same; b++) {
            const cJSON *s = cJSON_GetArrayItem(ch, b);
            same = cJSON_IsNumber(s) && fabs(s->valuedouble - lib->blocks[b].desc[option[b]].sparsity) < 1e-9;
        }
        if (same)
            return acc->valuedouble;
    }
    return NAN;
}

static lego_status name_composition(const block_library *lib, const rt_estimates *e, const char *label,
                                    const int *option, named *out)
{
    snprintf(out->label, sizeof out->label, "%s", label);
    memcpy(out->option, option, sizeof *option * (size_t)lib->n_blocks);
    double loss;
    LEGO_TRY(scale_cost(&e->problem, option, &loss, &out->latency_ms, &out->memory));
    out->est_acc = e->teacher_accuracy - loss;
    out->meas_acc = measured_accuracy(lib, option);
    out->weights = weights_of(lib, option);
    return lego_ok();
}

/* Every block at its k-th descendant, for each k all blocks have. */
static lego_status uniform_compositions(const block_library *lib, const rt_estimates *e, report *r)
{
    int k_max = lib->n_sparsities;
    for (int b = 0; b < lib->n_blocks; b++)
        if (lib->blocks[b].n_desc < k_max)
            k_max = lib->blocks[b].n_desc;
    r->uniform = calloc((size_t)k_max, sizeof *r->uniform);
    if (!r->uniform)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    int option[LEGO_MAX_BLOCKS];
    for (int k = 0; k < k_max; k++) {
        for (int b = 0; b < lib->n_blocks; b++)
            option[b] = k;
        char label[48];
        snprintf(label, sizeof label, k ? "all %.2f" : "teacher (all 0)", lib->sparsities[k]);
        LEGO_TRY(name_composition(lib, e, label, option, &r->uniform[k]));
        r->n_uniform = k + 1;
    }
    return lego_ok();
}

/* The least memory per block (ties: the smaller loss, then the lower index). */
static lego_status smallest_composition(const block_library *lib, const rt_estimates *e, named *out)
{
    int option[LEGO_MAX_BLOCKS];
    for (int b = 0; b < e->n_blocks; b++) {
        int best = 0;
        for (int s = 1; s < e->n_options[b]; s++) {
            if (e->memory[b][s] < e->memory[b][best] ||
                (e->memory[b][s] == e->memory[b][best] && e->acc_loss[b][s] < e->acc_loss[b][best]))
                best = s;
        }
        option[b] = best;
    }
    return name_composition(lib, e, "smallest", option, out);
}

/* The optimizer's choice for the memory half-way between the smallest
 * composition and the teacher, latency unlimited. */
static lego_status middle_composition(const block_library *lib, const rt_estimates *e, scale_prepared *sp,
                                      const named *small, const named *teacher, named *out)
{
    int option[LEGO_MAX_BLOCKS];
    scale_choice c = {.option = option};
    int64_t budget = small->memory + (teacher->memory - small->memory) / 2;
    LEGO_TRY(scale_solve_prepared(sp, DBL_MAX, budget, &c));
    char label[48];
    snprintf(label, sizeof label, "middle (<= %.2f MB)", (double)budget / 1e6);
    return name_composition(lib, e, label, option, out);
}

/* Decision time over random budgets spanning the library's range. */
static lego_status time_optimizer(scale_prepared *sp, const named *small, const named *teacher, report *r)
{
    double *t = malloc(sizeof *t * OPT_DECISIONS);
    if (!t)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    int option[LEGO_MAX_BLOCKS];
    scale_choice c = {.option = option};
    rng g;
    rng_seed(&g, 7);
    lego_status st = lego_ok();
    double lat_lo = small->latency_ms, lat_hi = fmax(teacher->latency_ms, lat_lo);
    double mem_lo = (double)small->memory, mem_hi = fmax((double)teacher->memory, mem_lo);
    for (int i = 0; i < OPT_DECISIONS && st.code == LEGO_OK; i++) {
        /* up to 10% below the smallest, so infeasible answers are timed too */
        double lat = lat_lo * 0.9 + (lat_hi - lat_lo * 0.9) * rng_uniform(&g);
        int64_t mem = (int64_t)(mem_lo * 0.9 + (mem_hi - mem_lo * 0.9) * rng_uniform(&g));
        double t0 = now_seconds();
        st = scale_solve_prepared(sp, fmax(lat, 1e-9), mem > 0 ? mem : 1, &c);
        t[i] = (now_seconds() - t0) * 1e6;
    }
    if (st.code == LEGO_OK) {
        r->opt_p90_us = quantile(t, OPT_DECISIONS, 0.9);
        r->opt_median_us = quantile(t, OPT_DECISIONS, 0.5);
    }
    free(t);
    return st;
}

/* Switch time inside the runtime: the first switch to the smallest
 * composition reads its descendants from disk; later switches between it and
 * the teacher-side choice find both cached. Per switched block. */
static lego_status time_switch(const report_args *a, report *r)
{
    lego_runtime_options o = {.threads = 0, .batch = a->batch, .fixed_latency = 1};
    lego_runtime *rt;
    LEGO_TRY(lego_runtime_open(a->lib, &o, &rt));
    lego_status st = lego_ok();
    lego_choice ch;
    double cached[2 * SWITCH_ROUNDS];
    int n_cached = 0;
    double first_ms = 0;
    int first_blocks = 0;
    int64_t small = r->smallest.memory;
    for (int i = 0; i <= 2 * SWITCH_ROUNDS && st.code == LEGO_OK; i++) {
        bool to_small = i % 2 == 0;
        st = lego_runtime_set_budget(rt, INFINITY, to_small ? small : INT64_MAX, &ch);
        if (st.code || ch.switched == 0)
            continue;
        if (ch.loaded) {
            first_ms += ch.switch_ms;
            first_blocks += ch.switched;
        } else {
            cached[n_cached++] = ch.switch_ms / ch.switched;
        }
    }
    lego_runtime_close(rt);
    if (st.code)
        return st;
    r->switch_first_ms = first_blocks ? first_ms / first_blocks : NAN;
    r->switch_samples = n_cached;
    r->switch_cached_ms = quantile(cached, n_cached, 0.5);
    return lego_ok();
}

/* ---- the serve log ------------------------------------------------------------------ */

static double json_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static lego_status read_serve(const char *path, const block_library *lib, const rt_estimates *e, report *r)
{
    unsigned char *buf;
    size_t len;
    LEGO_TRY(file_read_all(path, &buf, &len));
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    if (!root || !cJSON_IsArray(steps)) {
        cJSON_Delete(root);
        return lego_error(LEGO_ERR_FORMAT, "%s: not the JSON that `legodnn serve --json` writes (no \"steps\")",
                          path);
    }
    lego_status st = lego_ok();
    int n = cJSON_GetArraySize(steps);
    r->trace = calloc((size_t)(n ? n : 1), sizeof *r->trace);
    if (!r->trace)
        st = lego_error(LEGO_ERR_NOMEM, "out of memory reading %s", path);
    double switch_ms = 0, switched = 0, acc_sum = 0, samples = 0;
    const cJSON *s;
    int i = 0;
    cJSON_ArrayForEach(s, steps)
    {
        if (st.code)
            break;
        const cJSON *choice = cJSON_GetObjectItemCaseSensitive(s, "choice");
        trace_pt *p = &r->trace[i];
        p->acc = json_num(s, "accuracy");
        p->feasible = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "feasible"));
        int option[LEGO_MAX_BLOCKS];
        bool ok = cJSON_IsArray(choice) && cJSON_GetArraySize(choice) == lib->n_blocks;
        for (int b = 0; ok && b < lib->n_blocks; b++) {
            const cJSON *o = cJSON_GetArrayItem(choice, b);
            double v = cJSON_IsNumber(o) ? o->valuedouble : -1;
            ok = v >= 0 && v < e->n_options[b] && v == floor(v);
            option[b] = ok ? (int)v : 0;
        }
        if (!ok) {
            st = lego_error(LEGO_ERR_FORMAT, "%s: step %d does not describe a composition of this library's %d blocks",
                            path, i, lib->n_blocks);
            break;
        }
        /* the library's estimates, as the plot's other points: serve logged
         * latencies scaled by its online calibration of the moment */
        double loss;
        int64_t mem;
        st = scale_cost(&e->problem, option, &loss, &p->latency_ms, &mem);
        if (st.code)
            break;
        p->est_acc = e->teacher_accuracy - loss;
        p->memory = (double)mem;
        r->trace_infeasible += !p->feasible;
        double sw = json_num(s, "switched"), ms = json_num(s, "switch_ms"), loaded = json_num(s, "loaded");
        if (sw > 0 && loaded == 0 && !isnan(ms)) {
            switch_ms += ms;
            switched += sw;
        }
        double ns = json_num(s, "samples");
        if (!isnan(p->acc) && ns > 0) {
            acc_sum += p->acc * ns;
            samples += ns;
        }
        i++;
    }
    r->n_trace = i;
    r->trace_accuracy = samples > 0 ? acc_sum / samples : NAN;
    r->trace_switch_ms = switched > 0 ? switch_ms / switched : NAN;
    cJSON_Delete(root);
    return st;
}

/* ---- the plot ----------------------------------------------------------------------- */

/* Estimated (accuracy %, latency ms, memory MB) of every composition, or of a
 * seeded sample when there are too many. */
static lego_status write_cloud(const rt_estimates *e, double n_models, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    int option[LEGO_MAX_BLOCKS] = {0};
    bool all = n_models <= CLOUD_MAX;
    int64_t count = all ? (int64_t)n_models : CLOUD_MAX;
    rng g;
    rng_seed(&g, 11);
    lego_status st = lego_ok();
    for (int64_t i = 0; i < count && st.code == LEGO_OK; i++) {
        if (!all)
            for (int b = 0; b < e->n_blocks; b++)
                option[b] = (int)rng_below(&g, (uint64_t)e->n_options[b]);
        double loss, lat;
        int64_t mem;
        st = scale_cost(&e->problem, option, &loss, &lat, &mem);
        if (st.code == LEGO_OK)
            fprintf(f, "%.6f %.6f %.6f\n", 100 * (e->teacher_accuracy - loss), lat, (double)mem / 1e6);
        /* the next composition, counting in mixed radix */
        for (int b = 0; all && b < e->n_blocks && ++option[b] == e->n_options[b]; b++)
            option[b] = 0;
    }
    if (fclose(f) != 0 && st.code == LEGO_OK)
        st = lego_error(LEGO_ERR_IO, "%s: write failed", path);
    return st;
}

/* A frontier in ascending resource order (what a staircase plot wants). */
static lego_status write_frontier(const scale_frontier *fr, const rt_estimates *e, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    for (int i = fr->n_points - 1; i >= 0; i--)
        fprintf(f, "%.6f %.6f %.6f\n", 100 * (e->teacher_accuracy - fr->acc_loss[i]), fr->latency[i],
                (double)fr->memory[i] / 1e6);
    return fclose(f) == 0 ? lego_ok() : lego_error(LEGO_ERR_IO, "%s: write failed", path);
}

static lego_status write_points(const report *r, const char *named_path, const char *trace_path)
{
    FILE *f = fopen(named_path, "w");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot write: %s", named_path, strerror(errno));
    /* measured where profile measured it, else the estimate */
    for (int k = 0; k < r->n_uniform; k++) {
        const named *n = &r->uniform[k];
        if (!isnan(n->meas_acc))
            fprintf(f, "%.6f %.6f %.6f \"%s\"\n", 100 * n->meas_acc, n->latency_ms, (double)n->memory / 1e6,
                    k ? n->label : "teacher");
    }
    fprintf(f, "\n"); /* gnuplot refuses a file with no data at all */
    if (fclose(f) != 0)
        return lego_error(LEGO_ERR_IO, "%s: write failed", named_path);
    f = fopen(trace_path, "w");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot write: %s", trace_path, strerror(errno));
    for (int i = 0; i < r->n_trace; i++)
        if (!isnan(r->trace[i].est_acc))
            fprintf(f, "%.6f %.6f %.6f\n", 100 * r->trace[i].est_acc, r->trace[i].latency_ms,
                    r->trace[i].memory / 1e6);
    fprintf(f, "\n"); /* gnuplot refuses a file with no data at all */
    return fclose(f) == 0 ? lego_ok() : lego_error(LEGO_ERR_IO, "%s: write failed", trace_path);
}

static lego_status write_script(const char *path, const char *dir, bool svg, const char *title, bool has_trace,
                                bool sampled)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "set terminal %s size 1400,560 font \"sans,11\"\n", svg ? "svg dynamic" : "pngcairo");
    fprintf(f, "set output \"%s/plot.out\"\n", dir);
    fprintf(f, "set multiplot layout 1,2 title \"%s\"\n", title);
    fprintf(f, "set grid\nset key bottom right box opaque\nset ylabel \"top-1 accuracy (%%)\"\n");
    const char *axes[2][2] = {{"3", "estimated memory: weights + activation arenas (MB)"},
                              {"2", "estimated latency on this device (ms)"}};
    const char *front[2] = {"frontier_memory.dat", "frontier_latency.dat"};
    for (int k = 0; k < 2; k++) {
        const char *x = axes[k][0];
        fprintf(f, "set xlabel \"%s\"\n", axes[k][1]);
        fprintf(f,
                "plot \"%s/cloud.dat\" using %s:1 with dots lc rgb \"#a0a0a0\" title \"%s (estimated)\", \\\n"
                "     \"%s/%s\" using %s:1 with steps lw 2 lc rgb \"#1f5fbf\" title \"Pareto frontier\", \\\n"
                "     \"%s/%s\" using %s:1 with points pt 7 ps 0.6 lc rgb \"#1f5fbf\" notitle, \\\n"
                "     \"%s/named.dat\" using %s:1 with points pt 5 ps 1.2 lc rgb \"black\" "
                "title \"uniform compositions (measured)\", \\\n"
                "     \"%s/named.dat\" using %s:1:4 with labels offset 0,1 font \",9\" notitle",
                dir, x, sampled ? "a sample of the compositions" : "every composition", dir, front[k], x, dir,
                front[k], x, dir, x, dir, x);
        if (has_trace)
            fprintf(f,
                    ", \\\n     \"%s/trace.dat\" using %s:1 with points pt 6 ps 1.8 lw 2 lc rgb \"#d62728\" "
                    "title \"chosen along the budget trace\"",
                    dir, x);
        fprintf(f, "\n");
    }
    fprintf(f, "unset multiplot\n");
    return fclose(f) == 0 ? lego_ok() : lego_error(LEGO_ERR_IO, "%s: write failed", path);
}

/* Run gnuplot on the script; its messages go to log. */
static lego_status run_gnuplot(const char *script, const char *log)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = {"gnuplot", (char *)script, NULL};
    pid_t pid;
    int err = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err == ENOENT)
        return lego_error(LEGO_ERR_IO, "--plot needs gnuplot, which is not installed (Debian package gnuplot-nox; "
                                       "scripts/install-deps.sh installs it)");
    if (err)
        return lego_error(LEGO_ERR_IO, "cannot start gnuplot: %s", strerror(err));
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return lego_error(LEGO_ERR_IO, "waiting for gnuplot: %s", strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return lego_ok();
    char first[256] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        while (fgets(first, sizeof first, f) && strspn(first, " \t\r\n^") == strlen(first))
            ;
        fclose(f);
        first[strcspn(first, "\r\n")] = 0;
    }
    return lego_error(LEGO_ERR_IO, "gnuplot failed%s%s", first[0] ? ": " : "", first);
}

static lego_status plot(const report_args *a, const block_library *lib, const rt_estimates *e, const report *r)
{
    size_t n = strlen(a->plot);
    bool svg = n >= 4 && strcmp(a->plot + n - 4, ".svg") == 0;
    char tmpl[] = "/tmp/legodnn-report-XXXXXX";
    if (!mkdtemp(tmpl))
        return lego_error(LEGO_ERR_IO, "cannot make a temporary directory: %s", strerror(errno));
    char p[5][sizeof tmpl + 32];
    const char *names[5] = {"cloud.dat", "frontier_memory.dat", "frontier_latency.dat", "plot.gp", "gnuplot.log"};
    for (int i = 0; i < 5; i++)
        snprintf(p[i], sizeof p[i], "%s/%s", tmpl, names[i]);
    char named_path[sizeof tmpl + 32], trace_path[sizeof tmpl + 32], out_path[sizeof tmpl + 32];
    snprintf(named_path, sizeof named_path, "%s/named.dat", tmpl);
    snprintf(trace_path, sizeof trace_path, "%s/trace.dat", tmpl);
    snprintf(out_path, sizeof out_path, "%s/plot.out", tmpl);
    /* the title names the library by its last path component: no quoting trouble */
    const char *base = strrchr(lib->dir, '/');
    base = base && base[1] ? base + 1 : lib->dir;
    char title[256];
    snprintf(title, sizeof title, "LegoDNN: %d blocks, %s composable models (%s)", r->n_blocks,
             cli_count(r->n_models, (char[32]){0}), base);
    for (char *c = title; *c; c++)
        if (*c == '"' || *c == '\\')
            *c = '_';
    lego_status st = write_cloud(e, r->n_models, p[0]);
    if (st.code == LEGO_OK)
        st = write_frontier(&r->front[0], e, p[1]);
    if (st.code == LEGO_OK)
        st = write_frontier(&r->front[1], e, p[2]);
    if (st.code == LEGO_OK)
        st = write_points(r, named_path, trace_path);
    if (st.code == LEGO_OK)
        st = write_script(p[3], tmpl, svg, title, r->n_trace > 0, r->n_models > CLOUD_MAX);
    if (st.code == LEGO_OK)
        st = run_gnuplot(p[3], p[4]);
    unsigned char *img = NULL;
    size_t len = 0;
    if (st.code == LEGO_OK)
        st = file_read_all(out_path, &img, &len);
    if (st.code == LEGO_OK)
        st = file_write_atomic(a->plot, img, len);
    free(img);
    lego_status rm = file_remove_tree(tmpl);
    lego_status_free(&rm);
    return st;
}

/* ---- output ------------------------------------------------------------------------- */

static void sparsities_str(const block_library *lib, const int *option, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = 0;
    for (int b = 0; b < lib->n_blocks && pos + 8 < len; b++) {
        double s = lib->blocks[b].desc[option[b]].sparsity;
        pos += (size_t)snprintf(buf + pos, len - pos, s == 0 ? "%s0" : "%s%.2g", b ? " " : "", s);
    }
}

static void print_named(const block_library *lib, const named *n)
{
    char sp[LEGO_MAX_BLOCKS * 6], w[32], m[32], meas[16];
    sparsities_str(lib, n->option, sp, sizeof sp);
    snprintf(meas, sizeof meas, isnan(n->meas_acc) ? "-" : "%.2f%%", 100 * n->meas_acc);
    printf("  %-20s %6.2f%% %9s %10s %10s %9.4f  %s\n", n->label, 100 * n->est_acc, meas,
           cli_bytes((double)n->weights, w), cli_bytes((double)n->memory, m), n->latency_ms, sp);
}

static void print_table(const block_library *lib, const rt_estimates *e, const report_args *a, const report *r)
{
    char b1[32], b2[32];
    printf("library      %s\ndevice       %s\n\n", lib->dir, e->profile);
    printf("blocks       %d\n", r->n_blocks);
    printf("descendants  %d (sparsities", r->n_desc);
    for (int k = 0; k < lib->n_sparsities; k++)
        printf(" %g", lib->sparsities[k]);
    printf(")\n");
    printf("compositions %s composable models\n", cli_count(r->n_models, b1));
    printf("teacher      %.2f%% %s, %s weights (%s parameters), %.4f ms measured\n\n",
           100 * e->teacher_accuracy, e->metric[0] ? e->metric : "accuracy",
           cli_bytes((double)lib->model_param_bytes, b1), cli_count((double)lib->model_params, b2), e->teacher_ms);
    printf("  %-20s %7s %9s %10s %10s %9s  %s\n", "composition", "est.", "measured", "weights", "memory",
           "lat. ms", "sparsity per block");
    for (int k = 0; k < r->n_uniform; k++)
        print_named(lib, &r->uniform[k]);
    print_named(lib, &r->smallest);
    print_named(lib, &r->middle);
    printf("\n  est.: teacher accuracy minus the summed accuracy loss of the chosen descendants (what the\n"
           "  optimizer maximises); measured: the composition's accuracy as `profile` evaluated it.\n"
           "  memory: the weights as this device's kernels hold them plus activation arenas, as the\n"
           "  runtime accounts it.\n\n");
    printf("frontier     %d Pareto-optimal compositions against memory (none both smaller and more accurate),\n"
           "             %d against latency (--json lists them)\n", r->front[0].n_points, r->front[1].n_points);
    printf("optimizer    %.1f us median, %.1f us p90 per decision (%d random budgets, exact)\n", r->opt_median_us,
           r->opt_p90_us, OPT_DECISIONS);
    if (!isnan(r->switch_cached_ms))
        printf("switch       %.2f us per block once cached (median of %d), %.3f ms per block on first load\n",
               1e3 * r->switch_cached_ms, r->switch_samples, r->switch_first_ms);
    else
        printf("switch       not measured (every budget gave the same composition)\n");
    if (a->serve) {
        printf("trace        %d steps from %s: %d infeasible", r->n_trace, a->serve, r->trace_infeasible);
        if (!isnan(r->trace_accuracy))
            printf(", %.2f%% accuracy on the samples served", 100 * r->trace_accuracy);
        if (!isnan(r->trace_switch_ms))
            printf(", %.2f us per cached block switch", 1e3 * r->trace_switch_ms);
        printf("\n");
    }
    if (a->plot)
        printf("plot         %s\n", a->plot);
}

static cJSON *named_json(const block_library *lib, const named *n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "label", n->label);
    cJSON *sp = cJSON_AddArrayToObject(o, "sparsity");
    for (int b = 0; b < lib->n_blocks; b++)
        cJSON_AddItemToArray(sp, cJSON_CreateNumber(lib->blocks[b].desc[n->option[b]].sparsity));
    cJSON_AddNumberToObject(o, "estimated_accuracy", n->est_acc);
    if (isnan(n->meas_acc))
        cJSON_AddNullToObject(o, "measured_accuracy");
    else
        cJSON_AddNumberToObject(o, "measured_accuracy", n->meas_acc);
    cJSON_AddNumberToObject(o, "weight_bytes", (double)n->weights);
    cJSON_AddNumberToObject(o, "memory_bytes", (double)n->memory);
    cJSON_AddNumberToObject(o, "latency_ms", n->latency_ms);
    return o;
}

static void add_num_or_null(cJSON *o, const char *key, double v)
{
    if (isnan(v))
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, v);
}

/* The report as JSON: to stdout, or atomically into `path` when not NULL. */
static lego_status print_json(const block_library *lib, const rt_estimates *e, const report_args *a, const report *r,
                              const char *path)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "library", lib->dir);
    cJSON_AddStringToObject(root, "profile", e->profile);
    cJSON_AddNumberToObject(root, "blocks", r->n_blocks);
    cJSON_AddNumberToObject(root, "descendants", r->n_desc);
    cJSON_AddNumberToObject(root, "compositions", r->n_models);
    cJSON *t = cJSON_AddObjectToObject(root, "teacher");
    cJSON_AddNumberToObject(t, "accuracy", e->teacher_accuracy);
    cJSON_AddNumberToObject(t, "weight_bytes", (double)lib->model_param_bytes);
    cJSON_AddNumberToObject(t, "parameters", (double)lib->model_params);
    cJSON_AddNumberToObject(t, "latency_ms", e->teacher_ms);
    cJSON *u = cJSON_AddArrayToObject(root, "uniform");
    for (int k = 0; k < r->n_uniform; k++)
        cJSON_AddItemToArray(u, named_json(lib, &r->uniform[k]));
    cJSON_AddItemToObject(root, "smallest", named_json(lib, &r->smallest));
    cJSON_AddItemToObject(root, "middle", named_json(lib, &r->middle));
    cJSON *o = cJSON_AddObjectToObject(root, "optimizer");
    cJSON_AddNumberToObject(o, "median_us", r->opt_median_us);
    cJSON_AddNumberToObject(o, "p90_us", r->opt_p90_us);
    cJSON_AddNumberToObject(o, "decisions", OPT_DECISIONS);
    cJSON *s = cJSON_AddObjectToObject(root, "switch");
    add_num_or_null(s, "cached_ms_per_block", r->switch_cached_ms);
    add_num_or_null(s, "first_load_ms_per_block", r->switch_first_ms);
    if (a->serve) {
        cJSON *tr = cJSON_AddObjectToObject(root, "trace");
        cJSON_AddStringToObject(tr, "file", a->serve);
        cJSON_AddNumberToObject(tr, "steps", r->n_trace);
        cJSON_AddNumberToObject(tr, "infeasible", r->trace_infeasible);
        add_num_or_null(tr, "accuracy", r->trace_accuracy);
        add_num_or_null(tr, "cached_switch_ms_per_block", r->trace_switch_ms);
    }
    cJSON *fr = cJSON_AddObjectToObject(root, "frontier");
    const char *axis[2] = {"memory", "latency"};
    for (int k = 0; k < 2; k++) {
        const scale_frontier *f = &r->front[k];
        cJSON *pts = cJSON_AddArrayToObject(fr, axis[k]);
        for (int i = f->n_points - 1; i >= 0; i--) {
            cJSON *o = cJSON_CreateObject();
            cJSON *sp = cJSON_AddArrayToObject(o, "sparsity");
            for (int b = 0; b < lib->n_blocks; b++)
                cJSON_AddItemToArray(sp, cJSON_CreateNumber(lib->blocks[b].desc[f->option[i * f->n_blocks + b]].sparsity));
            cJSON_AddNumberToObject(o, "estimated_accuracy", e->teacher_accuracy - f->acc_loss[i]);
            cJSON_AddNumberToObject(o, "latency_ms", f->latency[i]);
            cJSON_AddNumberToObject(o, "memory_bytes", (double)f->memory[i]);
            cJSON_AddItemToArray(pts, o);
        }
    }
    if (a->plot)
        cJSON_AddStringToObject(root, "plot", a->plot);
    return cli_emit_json(root, path);
}

/* ---- the command -------------------------------------------------------------------- */

static int parse_args(int argc, char **argv, report_args *a)
{
    memset(a, 0, sizeof *a);
    a->threads = -1;
    a->batch = 1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--json") == 0) {
            a->json = true;
        } else if (strcmp(arg, "--serve") == 0 || strcmp(arg, "--plot") == 0 || strcmp(arg, "--save") == 0) {
            if (i + 1 >= argc)
                return cli_usage_error(report_usage, "%s needs a file name", arg);
            *(strcmp(arg, "--serve") == 0 ? &a->serve : arg[2] == 'p' ? &a->plot : &a->save) = argv[++i];
        } else if (strcmp(arg, "--threads") == 0) {
            if (i + 1 >= argc || !cli_parse_int(argv[++i], 1, 1024, &a->threads))
                return cli_usage_error(report_usage, "--threads needs a number from 1 to 1024");
        } else if (strcmp(arg, "--batch") == 0) {
            if (i + 1 >= argc || !cli_parse_int(argv[++i], 1, 65536, &a->batch))
                return cli_usage_error(report_usage, "--batch needs a number from 1 to 65536");
        } else if (arg[0] == '-') {
            return cli_usage_error(report_usage, "unknown option '%s'", arg);
        } else if (!a->lib) {
            a->lib = arg;
        } else {
            return cli_usage_error(report_usage, "one library at a time ('%s' is extra)", arg);
        }
    }
    if (!a->lib)
        return cli_usage_error(report_usage, "no library given");
    if (a->plot) {
        size_t n = strlen(a->plot);
        if (n < 5 || (strcmp(a->plot + n - 4, ".png") != 0 && strcmp(a->plot + n - 4, ".svg") != 0))
            return cli_usage_error(report_usage, "--plot '%s': name a .png or .svg file", a->plot);
    }
    return EXIT_OK;
}

static lego_status build_report(const report_args *a, block_library *lib, rt_estimates *e, scale_prepared *sp,
                                report *r)
{
    r->n_blocks = lib->n_blocks;
    r->n_models = 1;
    for (int b = 0; b < lib->n_blocks; b++) {
        r->n_desc += lib->blocks[b].n_desc;
        r->n_models *= lib->blocks[b].n_desc;
    }
    r->trace_accuracy = r->trace_switch_ms = NAN;
    LEGO_TRY(uniform_compositions(lib, e, r));
    r->teacher = r->uniform[0];
    LEGO_TRY(smallest_composition(lib, e, &r->smallest));
    LEGO_TRY(middle_composition(lib, e, sp, &r->smallest, &r->teacher, &r->middle));
    LEGO_TRY(time_optimizer(sp, &r->smallest, &r->teacher, r));
    LEGO_TRY(scale_frontier2(sp, SCALE_AXIS_MEMORY, DBL_MAX, INT64_MAX, FRONTIER_MAX, &r->front[0]));
    LEGO_TRY(scale_frontier2(sp, SCALE_AXIS_LATENCY, DBL_MAX, INT64_MAX, FRONTIER_MAX, &r->front[1]));
    LEGO_TRY(time_switch(a, r));
    if (a->serve)
        LEGO_TRY(read_serve(a->serve, lib, e, r));
    return lego_ok();
}

int cmd_report(int argc, char **argv)
{
    report_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != EXIT_OK)
        return rc;
    if (a.threads > 0)
        lego_set_num_threads((int)a.threads);
    block_library lib;
    rt_estimates e;
    lego_status st = cli_open_estimates(a.lib, a.batch, &lib, &e);
    if (st.code)
        return cli_fail(st);
    if (isnan(e.teacher_accuracy))
        st = lego_error(LEGO_ERR_ARG, "%s: no accuracy in the library: run `legodnn profile %s --data DATASET` first",
                        a.lib, a.lib);
    scale_prepared *sp = NULL;
    if (st.code == LEGO_OK)
        st = scale_prepare(&e.problem, &sp);
    report r;
    memset(&r, 0, sizeof r);
    if (st.code == LEGO_OK)
        st = build_report(&a, &lib, &e, sp, &r);
    if (st.code == LEGO_OK && a.plot)
        st = plot(&a, &lib, &e, &r);
    if (st.code == LEGO_OK && a.save)
        st = print_json(&lib, &e, &a, &r, a.save);
    if (st.code == LEGO_OK) {
        if (a.json)
            st = print_json(&lib, &e, &a, &r, NULL);
        else
            print_table(&lib, &e, &a, &r);
    }
    scale_prepared_free(sp);
    free(r.uniform);
    free(r.trace);
    scale_frontier_free(&r.front[0]);
    scale_frontier_free(&r.front[1]);
    rt_estimates_free(&e);
    library_free(&lib);
    return st.code ? cli_fail(st) : EXIT_OK;
}
