/* bench_switch.c - how long the runtime takes to switch blocks, and how long
 * a switch holds up inference, on a real block library.
 *
 *   bench_switch [--lib LIB | --model MODEL.onnx|resnet18:W] [--sweeps N]
 *                [--threads N] [--seconds S]
 *
 * Without --lib it makes a library in a temporary directory from MODEL
 * (default models/fmnist_resnet18w8.onnx; bench_common.h: extract, real
 * latency, synthetic accuracy losses) and removes it at the end. A --lib must
 * have latency for this device at --threads (default 1) and batch 1.
 *
 * One fixed sequence of budget decisions (random latency and memory budgets
 * between the sparsest and the largest composition) is applied to:
 *  - runtimes with no cache cap (one per sweep): the first sweep of each
 *    reads every descendant it needs from the library on first use (lazy
 *    load: read, SHA-256 check, ONNX import, shape inference, activation
 *    plan); the last one sweeps again and finds everything cached, so a
 *    switch is a pointer swap;
 *  - a runtime with a cache cap of 1 byte (only the descendants in use stay):
 *    every switched block is read again (the files are in the page cache by
 *    then, as they are for the first loads: the library was just written).
 * Per decision: switch time (lego_choice.switch_ms: applying the choice,
 * loads included, the optimizer not) divided by the blocks it read, or by
 * the blocks it switched when all were cached.
 *
 * Then, for both runtimes, one thread runs inference back to back while the
 * main thread first stays quiet and then changes budgets every millisecond.
 * For every run, the time lego_runtime_run spends outside the model's own
 * computation (its wall time minus lego_run_info.latency_ms: taking the
 * current composition, the run context, and giving them back) is the time
 * inference could be held up by a swap; its median, 99th percentile and
 * maximum are compared between the quiet and the swapping phase (on a busy
 * machine the maximum is mostly the scheduler's doing, in both phases). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "core/file.h"

#ifndef LEGO_SOURCE_DIR
#define LEGO_SOURCE_DIR "."
#endif

#define MAX_DECISIONS 4096
#define MAX_RUNS 200000

typedef struct budget {
    double ms;
    int64_t bytes;
} budget;

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Sorts v. */
static double quantile(double *v, int n, double q)
{
    if (n == 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[(int)(q * (n - 1) + 0.5)];
}

static double unif(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (double)(*s >> 8) * 0x1p-24;
}

typedef struct sweep_stats {
    double per_block[MAX_DECISIONS], per_update[MAX_DECISIONS];
    int n, switched;
} sweep_stats;

/* Apply budgets[0..n-1]. A decision that read descendants from disk goes to
 * `loads` (time per block read: its switch time over the blocks it read;
 * the cached switches beside them cost a ten-thousandth of that), one that
 * switched only cached descendants to `cached` (per block switched). Either
 * may be NULL: not collected. */
static void sweep(lego_runtime *rt, const budget *budgets, int n, sweep_stats *loads, sweep_stats *cached)
{
    for (int i = 0; i < n; i++) {
        lego_choice ch;
        bench_check(lego_runtime_set_budget(rt, budgets[i].ms, budgets[i].bytes, &ch), "set_budget");
        if (ch.switched == 0)
            continue;
        sweep_stats *to = ch.loaded ? loads : cached;
        if (!to || to->n == MAX_DECISIONS)
            continue;
        int k = ch.loaded ? ch.loaded : ch.switched;
        to->per_block[to->n] = ch.switch_ms / k;
        to->per_update[to->n] = ch.switch_ms;
        to->switched += k;
        to->n++;
    }
}

static void print_sweep(const char *what, sweep_stats *s)
{
    if (s->n == 0) {
        printf("  %-34s no decision of this kind\n", what);
        return;
    }
    double blocks = (double)s->switched / s->n;
    double b50 = quantile(s->per_block, s->n, 0.5), b90 = quantile(s->per_block, s->n, 0.9);
    double u50 = quantile(s->per_update, s->n, 0.5), u90 = quantile(s->per_update, s->n, 0.9);
    printf("  %-34s %5d %6.1f %12.4f %10.4f %12.4f %10.4f %9.0fx-%.0fx\n", what, s->n, blocks, b50, b90, u50, u90,
           5.0 / u50, 33.0 / u50);
}

/* ---- inference while budgets change ----------------------------------------- */

typedef struct runner {
    lego_runtime *rt;
    const lego_tensor *x;
    volatile int stop;
    volatile int phase; /* 0 quiet, 1 swapping */
    double outside[2][MAX_RUNS], compute[2][MAX_RUNS];
    int n[2];
    uint64_t compositions[2];
    lego_status st;
} runner;

static void *run_loop(void *arg)
{
    runner *r = arg;
    uint64_t last = 0;
    while (!r->stop) {
        int ph = r->phase;
        lego_run_info info;
        double t0 = bench_now_ms();
        lego_status st = bench_run(r->rt, r->x, &info);
        double wall = bench_now_ms() - t0;
        if (st.code) {
            r->st = st;
            break;
        }
        if (ph != r->phase || r->n[ph] == MAX_RUNS)
            continue; /* straddles the phase change */
        r->outside[ph][r->n[ph]] = wall - info.latency_ms;
        r->compute[ph][r->n[ph]] = info.latency_ms;
        r->n[ph]++;
        r->compositions[ph] += info.composition != last;
        last = info.composition;
    }
    return NULL;
}

static void sleep_ms(double ms)
{
    struct timespec ts = {(time_t)(ms / 1e3), (long)(fmod(ms, 1e3) * 1e6)};
    nanosleep(&ts, NULL);
}

static void under_swaps(const char *what, lego_runtime *rt, const lego_tensor *x, const budget *budgets, int nb,
                        double seconds)
{
    runner *r = calloc(1, sizeof *r);
    if (!r) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    r->rt = rt;
    r->x = x;
    pthread_t th;
    if (pthread_create(&th, NULL, run_loop, r) != 0) {
        fprintf(stderr, "cannot start the inference thread\n");
        exit(1);
    }
    sleep_ms(seconds * 1e3);
    r->phase = 1;
    double t_end = bench_now_ms() + seconds * 1e3, switch_ms = 0;
    int decisions = 0, switched = 0, loaded = 0;
    for (int i = 0; bench_now_ms() < t_end; i++) {
        lego_choice ch;
        bench_check(lego_runtime_set_budget(rt, budgets[i % nb].ms, budgets[i % nb].bytes, &ch), "set_budget");
        decisions++;
        switched += ch.switched;
        loaded += ch.loaded;
        switch_ms += ch.switch_ms;
        sleep_ms(1);
    }
    r->stop = 1;
    pthread_join(th, NULL);
    bench_check(r->st, "inference");
    printf("  %s: %d decisions in %.1f s (%d blocks switched, %d read from disk, %.1f ms applying them)\n", what,
           decisions, seconds, switched, loaded, switch_ms);
    printf("    %-10s %6s %12s %12s %14s %14s %14s\n", "phase", "runs", "compositions", "compute ms",
           "outside med ms", "outside p99 ms", "outside max ms");
    for (int ph = 0; ph < 2; ph++) {
        int n = r->n[ph];
        double c50 = quantile(r->compute[ph], n, 0.5);
        double o50 = quantile(r->outside[ph], n, 0.5), o99 = quantile(r->outside[ph], n, 0.99);
        double omax = n ? r->outside[ph][n - 1] : NAN;
        printf("    %-10s %6d %12llu %12.3f %14.4f %14.4f %14.4f\n", ph ? "swapping" : "quiet", n,
               (unsigned long long)r->compositions[ph], c50, o50, o99, omax);
    }
    free(r);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_switch [--lib LIB | --model MODEL.onnx|resnet18:W] [--sweeps N] [--threads N] "
                    "[--seconds S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *lib = NULL, *model = LEGO_SOURCE_DIR "/models/fmnist_resnet18w8.onnx";
    int sweeps = 5, threads = 1;
    double seconds = 1.5;
    for (int i = 1; i < argc; i++) {
        if (bench_library_arg(argc, argv, &i, &lib, &model, &threads))
            continue;
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--sweeps"))
            sweeps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[++i]);
        else
            usage();
    }
    if (sweeps < 2 || threads < 1 || !(seconds > 0))
        usage();
    lego_set_num_threads(threads);
    char tmp[64] = "";
    if (!lib) {
        snprintf(tmp, sizeof tmp, "/tmp/bench_switch_lib.%d", (int)getpid());
        bench_check(bench_make_library(model, tmp, 5), "making the library");
        lib = tmp;
    }
    lego_runtime_options free_opt = {.threads = threads, .fixed_latency = 1};
    lego_runtime_options capped_opt = {.threads = threads, .fixed_latency = 1, .cache_bytes = 1};
    lego_runtime *rt, *capped;
    bench_check(lego_runtime_open(lib, &free_opt, &rt), lib);
    bench_check(lego_runtime_open(lib, &capped_opt, &capped), lib);

    /* the range of the budgets: the largest composition and the smallest */
    lego_choice big, small;
    bench_check(lego_runtime_set_budget(capped, INFINITY, INT64_MAX, &big), "set_budget");
    bench_check(lego_runtime_set_budget(capped, 1e-6, 1, &small), "set_budget");
    budget *budgets = malloc(sizeof *budgets * 200);
    unsigned seed = 7;
    for (int i = 0; i < 200; i++) {
        budgets[i].ms = small.latency_ms + (big.latency_ms - small.latency_ms) * (0.02 + 0.98 * unif(&seed));
        budgets[i].bytes = small.memory_bytes +
                           (int64_t)((double)(big.memory_bytes - small.memory_bytes) * (0.02 + 0.98 * unif(&seed)));
    }
    int nb = lego_runtime_num_blocks(rt);
    printf("%d blocks; budgets between %.3f and %.3f ms, %lld and %lld bytes; %d kernel thread(s)\n", nb,
           small.latency_ms, big.latency_ms, (long long)small.memory_bytes, (long long)big.memory_bytes, threads);

    /* first loads: the first sweep of fresh runtimes (the one kept open
     * goes on to find everything cached) */
    static sweep_stats first, cached, reload;
    for (int s = 1; s < sweeps; s++) {
        lego_runtime *fresh;
        bench_check(lego_runtime_open(lib, &free_opt, &fresh), lib);
        sweep(fresh, budgets, 200, &first, NULL);
        lego_runtime_close(fresh);
    }
    sweep(rt, budgets, 200, &first, &cached);
    for (int s = 1; s < sweeps; s++)
        sweep(rt, budgets, 200, NULL, &cached);
    for (int s = 0; s < sweeps; s++)
        sweep(capped, budgets, 200, &reload, NULL);
    printf("\nswitch time (%d sweeps of 200 decisions; the optimizer's time not included; 'blocks' = blocks switched, "
           "or read, per update)\n",
           sweeps);
    printf("  %-34s %5s %6s %12s %10s %12s %10s %s\n", "kind", "n", "blocks", "ms/block med", "p90",
           "ms/update med", "p90", "vs original's 5-33 ms/update");
    print_sweep("cached (pointer swap)", &cached);
    print_sweep("first load (lazy, library files)", &first);
    print_sweep("reload after eviction", &reload);
    printf("  (first loads and reloads read, hash, import and plan the ONNX file; the library was just written, so\n"
           "   its files come from the page cache, not the disk)\n");

    lego_tensor x[16];
    int ni = lego_runtime_num_inputs(rt);
    for (int i = 0; i < ni && i < 16; i++)
        x[i] = bench_input(rt, i);
    printf("\ninference held up by swaps (one inference thread, budgets changed every ms by the main thread; "
           "'outside' = run wall time - its computation)\n");
    under_swaps("cached switches", rt, x, budgets, 200, seconds);
    under_swaps("every switch a reload (cache cap 1 byte)", capped, x, budgets, 200, seconds);
    printf("(the original applies an update on the inference thread: inference waits the whole 5-33 ms)\n");
    for (int i = 0; i < ni && i < 16; i++)
        free(x[i].data);
    free(budgets);
    lego_runtime_close(rt);
    lego_runtime_close(capped);
    if (tmp[0]) {
        char onnx[80];
        snprintf(onnx, sizeof onnx, "%s.onnx", tmp);
        remove(onnx);
        bench_check(file_remove_tree(tmp), "removing the library");
    }
    return 0;
}
