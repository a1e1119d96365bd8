/* bench_stats.h - what bench_infer.c and bench_train.c share: their
 * options, a monotonic clock, the median and quartiles of a sample, the process's resident memory
 * (from /proc/self/status), reading a raw float32 file, and the rule that
 * picks how many timed runs fit a time budget. Header-only: two small
 * programs, no library. The Python and Node runners in bench/ follow the
 * same rules so that the three engines are timed alike. */
#ifndef LEGO_BENCH_STATS_H
#define LEGO_BENCH_STATS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The options both runners take; each sets its own defaults first. */
typedef struct bench_opts {
    int batch, threads, warmup, min_reps, max_reps;
    double budget_ms;
    const char *out; /* --out, only where out_ok */
} bench_opts;

/* Reads the option pairs argv[first..argc); 0, or 2 (a usage error, said
 * on stderr under prog's name). */
static int bench_parse_opts(bench_opts *o, int argc, char **argv, int first, const char *prog, int out_ok)
{
    for (int i = first; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--batch")) o->batch = atoi(v);
        else if (!strcmp(k, "--threads")) o->threads = atoi(v);
        else if (!strcmp(k, "--warmup")) o->warmup = atoi(v);
        else if (!strcmp(k, "--budget-ms")) o->budget_ms = atof(v);
        else if (!strcmp(k, "--min-reps")) o->min_reps = atoi(v);
        else if (!strcmp(k, "--max-reps")) o->max_reps = atoi(v);
        else if (out_ok && !strcmp(k, "--out")) o->out = v;
        else {
            fprintf(stderr, "%s: unknown option %s\n", prog, k);
            return 2;
        }
    }
    if (o->batch < 1 || o->threads < 1 || o->warmup < 1 || o->min_reps < 1 || o->max_reps < o->min_reps) {
        fprintf(stderr, "%s: bad counts\n", prog);
        return 2;
    }
    return 0;
}

static double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* q-quantile of the sorted v[0..n-1], linear between neighbours (numpy's
 * default), so every runner reports the same statistic. */
static double bench_quantile(const double *v, int n, double q)
{
    double pos = q * (double)(n - 1);
    int i = (int)pos;
    if (i >= n - 1)
        return v[n - 1];
    return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

/* A field of /proc/self/status in KiB ("VmRSS", "VmHWM"), or -1. */
static long bench_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    size_t len = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            kb = strtol(line + len + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Timed runs after warm-up: enough to fill budget_ms at the warm-up pace,
 * clamped to [min_reps, max_reps]. */
static int bench_pick_reps(double warm_ms, double budget_ms, int min_reps, int max_reps)
{
    int reps = warm_ms > 0 ? (int)(budget_ms / warm_ms) : max_reps;
    if (reps < min_reps)
        reps = min_reps;
    if (reps > max_reps)
        reps = max_reps;
    return reps;
}

/* The first n floats of a raw little-endian float32 file, or NULL. */
static float *bench_read_floats(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *v = malloc(n * sizeof *v);
    if (v && fread(v, sizeof *v, n, f) != n) {
        free(v);
        v = NULL;
    }
    fclose(f);
    return v;
}

#endif
