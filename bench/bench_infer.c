/* bench_infer.c - inference latency and peak memory of one ONNX model in
 * legodnn, for bench/bench_engines.sh (the ONNX Runtime and PyTorch runners
 * beside it time the same file the same way).
 *
 *   bench_infer MODEL.onnx INPUT.bin [--batch B] [--threads T] [--warmup W]
 *               [--budget-ms MS] [--min-reps N] [--max-reps N] [--out OUT.bin]
 *
 * INPUT.bin holds raw float32 samples in the model's input shape; the first B
 * are used. After W warm-up runs, the number of timed runs is what fills the
 * budget at the warm-up pace, within [min, max]. Prints one JSON line: median,
 * quartiles and minimum in ms, load time, and the process's resident memory
 * before loading the model and at its peak (VmHWM). --out writes the output of
 * the last run (for the cross-engine check). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <legodnn.h>

#include "bench_stats.h"

static int fail(lego_status st)
{
    fprintf(stderr, "bench_infer: %s\n", lego_status_msg(st));
    lego_status_free(&st);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_infer MODEL.onnx INPUT.bin [--batch B] [--threads T] [--warmup W]\n"
                        "       [--budget-ms MS] [--min-reps N] [--max-reps N] [--out OUT.bin]\n");
        return 2;
    }
    const char *model = argv[1], *input = argv[2];
    bench_opts o = {.batch = 1, .threads = 1, .warmup = 3, .min_reps = 5, .max_reps = 200, .budget_ms = 3000};
    if (bench_parse_opts(&o, argc, argv, 3, "bench_infer", 1))
        return 2;
    int batch = o.batch, threads = o.threads, warmup = o.warmup, min_reps = o.min_reps, max_reps = o.max_reps;
    double budget = o.budget_ms;
    const char *out_path = o.out;
    lego_set_num_threads(threads);
    long rss_base = bench_status_kb("VmRSS");

    double t0 = bench_now_ms();
    lego_model *m;
    lego_status st = lego_model_load(model, &m);
    if (st.code)
        return fail(st);
    lego_tensor x = *lego_model_input(m, 0);
    x.dims[0] = batch;
    st = lego_model_set_input_shape(m, 0, x.rank, x.dims);
    if (st.code) {
        lego_model_free(m);
        return fail(st);
    }
    double load_ms = bench_now_ms() - t0;
    x = *lego_model_input(m, 0);
    size_t n = (size_t)lego_tensor_numel(&x);
    x.data = bench_read_floats(input, n);
    if (!x.data) {
        fprintf(stderr, "bench_infer: %s holds fewer than %zu floats\n", input, n);
        lego_model_free(m);
        return 1;
    }
    const lego_tensor *ins[] = {&x};
    int n_out = lego_model_num_outputs(m);
    lego_tensor **outs = calloc((size_t)n_out, sizeof *outs);

    double warm = 0;
    for (int r = 0; r < warmup; r++) {
        double a = bench_now_ms();
        if ((st = lego_model_run(m, ins, outs)).code)
            return fail(st);
        warm = bench_now_ms() - a; /* the last warm-up run sets the pace */
        for (int o = 0; o < n_out; o++)
            lego_tensor_free(outs[o]);
    }
    int reps = bench_pick_reps(warm, budget, min_reps, max_reps);
    double *ms = malloc((size_t)reps * sizeof *ms);
    for (int r = 0; r < reps; r++) {
        double a = bench_now_ms();
        if ((st = lego_model_run(m, ins, outs)).code)
            return fail(st);
        ms[r] = bench_now_ms() - a;
        if (r + 1 < reps)
            for (int o = 0; o < n_out; o++)
                lego_tensor_free(outs[o]);
    }
    if (out_path) {
        FILE *f = fopen(out_path, "wb");
        if (!f || fwrite(outs[0]->data, 1, lego_tensor_bytes(outs[0]), f) != lego_tensor_bytes(outs[0])) {
            fprintf(stderr, "bench_infer: cannot write %s\n", out_path);
            return 1;
        }
        fclose(f);
    }
    for (int o = 0; o < n_out; o++)
        lego_tensor_free(outs[o]);
    qsort(ms, (size_t)reps, sizeof *ms, bench_cmp_double);
    printf("{\"engine\": \"legodnn\", \"batch\": %d, \"threads\": %d, \"reps\": %d, \"median_ms\": %.4f, "
           "\"p25_ms\": %.4f, \"p75_ms\": %.4f, \"min_ms\": %.4f, \"load_ms\": %.1f, "
           "\"rss_base_kb\": %ld, \"rss_peak_kb\": %ld, \"rss_end_kb\": %ld}\n",
           batch, threads, reps, bench_quantile(ms, reps, 0.5), bench_quantile(ms, reps, 0.25),
           bench_quantile(ms, reps, 0.75), ms[0], load_ms, rss_base, bench_status_kb("VmHWM"), bench_status_kb("VmRSS"));
    free(ms);
    free(outs);
    free(x.data);
    lego_model_free(m);
    return 0;
}
