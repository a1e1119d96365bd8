/* bench_train.c - training throughput of one image classifier in legodnn:
 * images per second of whole steps (forward in training mode, cross-entropy,
 * backward, SGD with momentum 0.9 and weight decay 5e-4), for
 * bench/bench_engines.sh; bench/torch_bench.py --train times PyTorch the same
 * way on the same ONNX file.
 *
 *   bench_train MODEL.onnx INPUT.bin [--batch B] [--threads T] [--warmup W]
 *               [--budget-ms MS] [--min-reps N] [--max-reps N]
 *
 * The batch is fixed (the first B samples of INPUT.bin, labels i mod classes)
 * so that no data loading or augmentation is timed, only the step the trainer
 * (src/train/trainer.c) runs per batch. Prints one JSON line: the median step
 * in ms and its quartiles, images per second at the median, and the resident
 * memory before loading and at the peak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <legodnn.h>

#include "bench_stats.h"
#include "graph/autodiff.h"
#include "onnx/onnx_import.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/task.h"
#include "train/trainer.h"

static int fail(lego_status st)
{
    fprintf(stderr, "bench_train: %s\n", lego_status_msg(st));
    lego_status_free(&st);
    return 1;
}

#define TRY(expr)                             \
    do {                                      \
        lego_status st_ = (expr);             \
        if (st_.code)                         \
            return fail(st_);                 \
    } while (0)

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_train MODEL.onnx INPUT.bin [--batch B] [--threads T] [--warmup W]\n"
                        "       [--budget-ms MS] [--min-reps N] [--max-reps N]\n");
        return 2;
    }
    const char *model = argv[1], *input = argv[2];
    bench_opts o = {.batch = 32, .threads = 1, .warmup = 2, .min_reps = 5, .max_reps = 50, .budget_ms = 5000};
    if (bench_parse_opts(&o, argc, argv, 3, "bench_train", 0))
        return 2;
    int batch = o.batch, threads = o.threads, warmup = o.warmup, min_reps = o.min_reps, max_reps = o.max_reps;
    double budget = o.budget_ms;
    lego_set_num_threads(threads);
    long rss_base = bench_status_kb("VmRSS");

    lego_graph g;
    TRY(onnx_load_file(model, &g));
    TRY(task_set_batch(&g, batch));
    classifier m;
    TRY(classifier_of(&g, &m));
    int *params, n_params;
    TRY(train_trainable_params(&g, &params, &n_params));
    train_plan p;
    TRY(train_plan_build_ex(&g, &m.input, 1, &m.output, 1, params, n_params, false, &p));
    float **w = malloc(sizeof *w * (size_t)n_params);
    const float **gr = malloc(sizeof *gr * (size_t)n_params);
    int64_t *n = malloc(sizeof *n * (size_t)n_params);
    for (int i = 0; i < n_params; i++) {
        w[i] = train_param(&p, i)->data;
        gr[i] = train_param_grad(&p, i)->data;
        n[i] = lego_tensor_numel(train_param(&p, i));
    }
    optim_config cfg = optim_defaults(OPTIM_SGD); /* momentum 0.9 */
    cfg.weight_decay = 5e-4f;
    optimizer opt;
    TRY(optim_init(&opt, &cfg, w, gr, n, n_params));

    lego_tensor x = {0};
    x.dtype = LEGO_F32;
    x.rank = 4;
    x.dims[0] = batch, x.dims[1] = m.c, x.dims[2] = m.h, x.dims[3] = m.w;
    x.data = bench_read_floats(input, (size_t)lego_tensor_numel(&x));
    if (!x.data) {
        fprintf(stderr, "bench_train: %s holds fewer than %d samples of %dx%dx%d\n", input, batch, m.c,
                m.h, m.w);
        optim_free(&opt);
        train_plan_free(&p);
        graph_free(&g);
        free(w), free(gr), free(n), free(params);
        return 1;
    }
    int32_t *y = malloc((size_t)batch * sizeof *y);
    for (int i = 0; i < batch; i++)
        y[i] = i % m.classes;
    const lego_tensor *xs[] = {&x};

    int total = warmup + max_reps, reps = max_reps;
    double *ms = malloc((size_t)total * sizeof *ms), loss = 0;
    for (int r = 0; r < warmup + reps; r++) {
        double a = bench_now_ms();
        TRY(train_forward(&p, xs, true));
        loss = loss_cross_entropy(train_output(&p, 0)->data, y, batch, m.classes, 0,
                                  train_output_grad(&p, 0)->data);
        train_backward(&p);
        optim_step(&opt, 0.01f);
        ms[r] = bench_now_ms() - a;
        if (r == warmup - 1)
            reps = bench_pick_reps(ms[r], budget, min_reps, max_reps);
    }
    double *t = ms + warmup;
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    double med = bench_quantile(t, reps, 0.5);
    printf("{\"engine\": \"legodnn\", \"mode\": \"train\", \"batch\": %d, \"threads\": %d, \"reps\": %d, "
           "\"median_ms\": %.3f, \"p25_ms\": %.3f, \"p75_ms\": %.3f, \"min_ms\": %.3f, "
           "\"img_per_s\": %.1f, \"last_loss\": %.4f, \"rss_base_kb\": %ld, \"rss_peak_kb\": %ld, \"rss_end_kb\": %ld}\n",
           batch, threads, reps, med, bench_quantile(t, reps, 0.25), bench_quantile(t, reps, 0.75), t[0],
           (double)batch * 1e3 / med, loss, rss_base, bench_status_kb("VmHWM"), bench_status_kb("VmRSS"));
    optim_free(&opt);
    train_plan_free(&p);
    graph_free(&g);
    free(ms), free(y), free(x.data), free(w), free(gr), free(n), free(params);
    return 0;
}
