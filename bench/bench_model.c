/* bench_model.c - times lego_model_run on one ONNX image model at given batch
 * sizes and thread counts: the numbers behind docs/PERFORMANCE.md's
 * convolution section. Input is random; the median and the fastest of
 * `repeat` runs after 3 warm-up runs are printed per (batch, threads), in
 * wall time and in the process's CPU time (all threads together), which a
 * busy neighbour inflates much less: at 1 thread it is close to the wall
 * time of a quiet machine.
 *   build/bench/bench_model MODEL.onnx [--batch 1,32] [--threads 1,2] [--repeat 20]
 * LEGO_DNNL=0 and LEGO_FUSE=0 in the environment time the portable
 * convolution and the unfused graph. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "legodnn.h"

static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1)
            return 0;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static int fail(lego_status st)
{
    fprintf(stderr, "bench_model: %s\n", lego_status_msg(st));
    lego_status_free(&st);
    return 1;
}

int main(int argc, char **argv)
{
    int batches[8] = {1, 32}, nb = 2, threads[8] = {1, 2}, nt = 2, repeat = 20;
    if (argc < 2) {
        fprintf(stderr, "usage: bench_model MODEL.onnx [--batch 1,32] [--threads 1,2] [--repeat 20]\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--batch") == 0)
            nb = parse_list(argv[i + 1], batches, 8);
        else if (strcmp(argv[i], "--threads") == 0)
            nt = parse_list(argv[i + 1], threads, 8);
        else if (strcmp(argv[i], "--repeat") == 0)
            repeat = atoi(argv[i + 1]);
        else
            nb = 0;
    }
    if (nb == 0 || nt == 0 || repeat < 1) {
        fprintf(stderr, "bench_model: bad option\n");
        return 2;
    }
    lego_model *m;
    lego_status st = lego_model_load(argv[1], &m);
    if (st.code)
        return fail(st);
    printf("%s (LEGO_DNNL=%s LEGO_FUSE=%s)\n", argv[1], getenv("LEGO_DNNL") ? getenv("LEGO_DNNL") : "-",
           getenv("LEGO_FUSE") ? getenv("LEGO_FUSE") : "-");
    printf("batch threads  median_ms   min_ms  cpu_median_ms  cpu_min_ms\n");
    double *t = malloc(sizeof *t * (size_t)repeat), *cpu = malloc(sizeof *cpu * (size_t)repeat);
    for (int b = 0; b < nb && t; b++) {
        const lego_tensor *in0 = lego_model_input(m, 0);
        int64_t dims[LEGO_MAX_RANK];
        memcpy(dims, in0->dims, sizeof dims);
        dims[0] = batches[b];
        st = lego_model_set_input_shape(m, 0, in0->rank, dims);
        if (st.code)
            return fail(st);
        lego_tensor x = {.dtype = LEGO_F32, .rank = in0->rank};
        int64_t n = 1;
        for (int d = 0; d < in0->rank; d++)
            n *= (x.dims[d] = dims[d]);
        float *data = malloc(sizeof(float) * (size_t)n);
        if (!data)
            return 1;
        srand(1);
        for (int64_t i = 0; i < n; i++)
            data[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        x.data = data;
        const lego_tensor *ins[] = {&x};
        for (int k = 0; k < nt; k++) {
            lego_set_num_threads(threads[k]);
            for (int r = -3; r < repeat; r++) {
                lego_tensor *out = NULL;
                double t0 = clock_ms(CLOCK_MONOTONIC), c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
                st = lego_model_run(m, ins, &out);
                double dt = clock_ms(CLOCK_MONOTONIC) - t0;
                double dc = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
                if (st.code)
                    return fail(st);
                lego_tensor_free(out);
                if (r >= 0)
                    t[r] = dt, cpu[r] = dc;
            }
            qsort(t, (size_t)repeat, sizeof *t, cmp_double);
            qsort(cpu, (size_t)repeat, sizeof *cpu, cmp_double);
            printf("%5d %7d %10.2f %8.2f %14.2f %11.2f\n", batches[b], threads[k], t[repeat / 2],
                   t[0], cpu[repeat / 2], cpu[0]);
            fflush(stdout);
        }
        free(data);
    }
    free(t);
    free(cpu);
    lego_model_free(m);
    return 0;
}
