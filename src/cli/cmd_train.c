/* cmd_train.c - `legodnn train` and `legodnn eval`: train or fine-tune a
 * classifier (the teacher), and measure one. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/file.h"
#include "graph/graph.h"
#include "onnx/onnx_import.h"
#include "train/trainer.h"
#include "train/zoo.h"

static const char train_usage[] =
    "legodnn train MODEL.onnx|resnet18[:WIDTH] --data DATASET --out TRAINED.onnx\n"
    "         [--epochs 10] [--batch 128] [--lr 0.1] [--optimizer sgd|adam|adamw]\n"
    "         [--momentum 0.9] [--nesterov] [--weight-decay 5e-4] [--schedule cosine|step|constant]\n"
    "         [--step-size 30] [--gamma 0.1] [--warmup 0] [--label-smoothing 0] [--seed 1]\n"
    "         [--classes 10] [--input 3x32x32] [--max-train N] [--max-test N] [--no-augment]\n"
    "         [--resume] [--threads N] [--quiet] [--json]";
static const char eval_usage[] =
    "legodnn eval MODEL.onnx --data DATASET [--batch 100] [--max-test N] [--threads N] [--quiet]\n"
    "         [--json]";

/* Load an ONNX file, or build a built-in model, into g. */
static lego_status load_graph(const char *spec, int classes, int c, int h, int w, uint64_t seed,
                              lego_graph *g)
{
    int width = zoo_parse_resnet18(spec);
    if (width)
        return zoo_resnet18(width, classes, c, h, w, seed, g);
    return onnx_load_file(spec, g);
}

static bool parse_shape(const char *s, int *c, int *h, int *w)
{
    long a, b, d;
    char x1, x2, extra;
    if (sscanf(s, "%ld%c%ld%c%ld%c", &a, &x1, &b, &x2, &d, &extra) != 5 || x1 != 'x' || x2 != 'x')
        return false;
    if (a < 1 || a > 4 || b < 8 || b > 4096 || d < 8 || d > 4096)
        return false;
    *c = (int)a, *h = (int)b, *w = (int)d;
    return true;
}

static void print_epoch(const epoch_stats *s, void *ctx)
{
    bool *json = ctx;
    if (*json)
        return;
    printf("epoch %3d  lr %.5f  train loss %.4f  acc %6.2f%%  test loss %.4f  acc %6.2f%%  %6.0f img/s  %.1f s\n",
           s->epoch, s->lr, s->train_loss, 100 * s->train_acc, s->test_loss, 100 * s->test_acc,
           s->images_per_sec, s->seconds);
    fflush(stdout);
}

int cmd_train(int argc, char **argv)
{
    train_options o;
    memset(&o, 0, sizeof o);
    o.optim = optim_defaults(OPTIM_SGD);
    o.optim.weight_decay = 5e-4f;
    o.sched.kind = SCHED_COSINE;
    o.sched.base_lr = 0.1f;
    o.sched.step_size = 30;
    o.sched.gamma = 0.1f;
    o.sched.warmup_start = 0.1f;
    o.augment = true;
    const char *model = NULL;
    bool lr_set = false, wd_set = false;
    int classes = 10, c = 3, h = 32, w = 32;
    cli_common co = {.threads = -1, .epochs = 10, .batch = 128, .seed = 1};
    const unsigned common = CLI_OPT_JSON | CLI_OPT_QUIET | CLI_OPT_THREADS | CLI_OPT_BATCH | CLI_OPT_SEED |
                            CLI_OPT_EPOCHS | CLI_OPT_MAX_TRAIN | CLI_OPT_MAX_TEST;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long n;
        double d;
        int rc = cli_common_option(argc, argv, &i, common, train_usage, &co);
        if (rc == EXIT_USAGE)
            return rc;
        if (rc == EXIT_OK)
            continue;
        /* the rest take a value, except these flags and the model */
        if (strcmp(a, "--resume") == 0) {
            o.resume = true;
            continue;
        } else if (strcmp(a, "--no-augment") == 0) {
            o.augment = false;
            continue;
        } else if (strcmp(a, "--nesterov") == 0) {
            o.optim.nesterov = true;
            continue;
        }
        static const char *const valued[] = {"--data", "--out", "--classes", "--input", "--optimizer",
                                             "--schedule", "--step-size", "--warmup", "--lr", "--momentum",
                                             "--weight-decay", "--gamma", "--label-smoothing"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof *valued && !known; k++)
            known = strcmp(a, valued[k]) == 0;
        if (!known) {
            if (cli_operand(train_usage, a, &model, "model") != EXIT_OK)
                return EXIT_USAGE;
            continue;
        }
        const char *v = cli_option_value(argc, argv, &i, train_usage);
        if (!v)
            return EXIT_USAGE;
        if (strcmp(a, "--data") == 0) {
            o.data = v;
        } else if (strcmp(a, "--out") == 0) {
            o.out = v;
        } else if (strcmp(a, "--classes") == 0) {
            if (!cli_parse_int(v, 1, 100000, &n))
                return cli_usage_error(train_usage, "--classes needs a count from 1 to 100000");
            classes = (int)n;
        } else if (strcmp(a, "--input") == 0) {
            if (!parse_shape(v, &c, &h, &w))
                return cli_usage_error(train_usage, "--input needs CxHxW, e.g. 3x32x32 (C 1..4, H and W 8..4096)");
        } else if (strcmp(a, "--optimizer") == 0) {
            optim_kind k;
            if (strcmp(v, "sgd") == 0)
                k = OPTIM_SGD;
            else if (strcmp(v, "adam") == 0)
                k = OPTIM_ADAM;
            else if (strcmp(v, "adamw") == 0)
                k = OPTIM_ADAMW;
            else
                return cli_usage_error(train_usage, "--optimizer is sgd, adam or adamw, not '%s'", v);
            float mom = o.optim.momentum, wd = o.optim.weight_decay;
            bool nest = o.optim.nesterov;
            o.optim = optim_defaults(k);
            o.optim.nesterov = nest;
            if (k == OPTIM_SGD)
                o.optim.momentum = mom;
            if (wd_set || k == OPTIM_SGD)
                o.optim.weight_decay = wd;
            if (!lr_set && k != OPTIM_SGD)
                o.sched.base_lr = 1e-3f;
        } else if (strcmp(a, "--schedule") == 0) {
            if (strcmp(v, "cosine") == 0)
                o.sched.kind = SCHED_COSINE;
            else if (strcmp(v, "step") == 0)
                o.sched.kind = SCHED_STEP;
            else if (strcmp(v, "constant") == 0)
                o.sched.kind = SCHED_CONSTANT;
            else
                return cli_usage_error(train_usage, "--schedule is cosine, step or constant, not '%s'", v);
        } else if (strcmp(a, "--step-size") == 0 || strcmp(a, "--warmup") == 0) {
            if (!cli_parse_int(v, 0, 100000, &n))
                return cli_usage_error(train_usage, "%s needs a count of epochs", a);
            *(strcmp(a, "--step-size") == 0 ? &o.sched.step_size : &o.sched.warmup_epochs) = (int)n;
        } else {
            if (!cli_parse_double(v, &d) || d < 0)
                return cli_usage_error(train_usage, "%s needs a non-negative number", a);
            float f = (float)d;
            if (strcmp(a, "--lr") == 0)
                o.sched.base_lr = f, lr_set = true;
            else if (strcmp(a, "--momentum") == 0)
                o.optim.momentum = f;
            else if (strcmp(a, "--weight-decay") == 0)
                o.optim.weight_decay = f, wd_set = true;
            else if (strcmp(a, "--gamma") == 0)
                o.sched.gamma = f;
            else
                o.label_smoothing = f;
        }
    }
    bool json = co.json;
    o.quiet = co.quiet;
    o.epochs = (int)co.epochs;
    o.batch = (int)co.batch;
    o.seed = (uint64_t)co.seed;
    o.max_train = co.max_train;
    o.max_test = co.max_test;
    cli_apply_threads(&co);
    if (!model)
        return cli_usage_error(train_usage, "no model given (an ONNX file, or resnet18[:WIDTH])");
    if (!o.data || !o.out)
        return cli_usage_error(train_usage, "--data and --out are required");
    o.sched.epochs = o.epochs;

    lego_graph g;
    /* --resume picks up the checkpoint at --out when there is one */
    FILE *probe = o.resume ? fopen(o.out, "rb") : NULL;
    const char *from = probe ? o.out : model;
    if (probe)
        fclose(probe);
    else
        o.resume = false;
    lego_status st = load_graph(from, classes, c, h, w, o.seed, &g);
    if (st.code)
        return cli_fail(st);
    train_result r;
    st = train_classifier(&g, &o, print_epoch, &json, &r);
    if (st.code) {
        graph_free(&g);
        return cli_fail(st);
    }
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "model", from);
        cJSON_AddStringToObject(root, "out", o.out);
        cJSON_AddNumberToObject(root, "params", (double)r.params);
        cJSON_AddNumberToObject(root, "epochs", r.epochs_done);
        cJSON_AddNumberToObject(root, "resumed_at_epoch", r.first_epoch);
        cJSON_AddNumberToObject(root, "train_loss", r.last.train_loss);
        cJSON_AddNumberToObject(root, "train_accuracy", r.last.train_acc);
        cJSON_AddNumberToObject(root, "test_loss", r.last.test_loss);
        cJSON_AddNumberToObject(root, "test_accuracy", r.last.test_acc);
        cJSON_AddNumberToObject(root, "images_per_second", r.last.images_per_sec);
        cJSON_AddNumberToObject(root, "threads", lego_get_num_threads());
        cJSON_AddNumberToObject(root, "seconds", r.seconds);
        cli_print_json(root);
    } else {
        char a[32];
        if (r.first_epoch >= o.epochs)
            printf("already trained for %d epochs; nothing to do\n", r.first_epoch);
        printf("trained %s (%s parameters) for %d epochs in %.1f s: test accuracy %.2f%%, written to %s\n",
               from, cli_count((double)r.params, a), r.epochs_done, r.seconds, 100 * r.last.test_acc,
               o.out);
    }
    graph_free(&g);
    return EXIT_OK;
}

int cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *data = NULL;
    cli_common co = {.threads = -1};
    const unsigned common = CLI_OPT_JSON | CLI_OPT_QUIET | CLI_OPT_THREADS | CLI_OPT_BATCH | CLI_OPT_MAX_TEST;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = cli_common_option(argc, argv, &i, common, eval_usage, &co);
        if (rc == EXIT_USAGE)
            return rc;
        if (rc == EXIT_OK)
            continue;
        if (strcmp(a, "--data") == 0) {
            if (!(data = cli_option_value(argc, argv, &i, eval_usage)))
                return EXIT_USAGE;
        } else if (cli_operand(eval_usage, a, &model, "model") != EXIT_OK) {
            return EXIT_USAGE;
        }
    }
    cli_apply_threads(&co);
    bool json = co.json, quiet = co.quiet;
    long batch = co.batch, max_test = co.max_test;
    if (!model || !data)
        return cli_usage_error(eval_usage, "a model and --data are required");
    lego_graph g;
    lego_status st = load_graph(model, 10, 3, 32, 32, 1, &g);
    if (st.code)
        return cli_fail(st);
    eval_result r;
    st = eval_classifier(&g, data, (int)batch, max_test, quiet || json, &r);
    graph_free(&g);
    if (st.code)
        return cli_fail(st);
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "model", model);
        cJSON_AddStringToObject(root, "data", data);
        cJSON_AddNumberToObject(root, "samples", (double)r.samples);
        cJSON_AddNumberToObject(root, "accuracy", r.accuracy);
        cJSON_AddNumberToObject(root, "loss", r.loss);
        cJSON_AddNumberToObject(root, "seconds", r.seconds);
        cli_print_json(root);
    } else {
        printf("%s on %s: top-1 accuracy %.2f%% over %lld test images (loss %.4f, %.1f s)\n", model,
               data, 100 * r.accuracy, (long long)r.samples, r.loss, r.seconds);
    }
    return EXIT_OK;
}
