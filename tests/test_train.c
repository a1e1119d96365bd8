/* test_train.c - training against PyTorch, as llm.c's test_gpt2.c does:
 * the loss and every parameter gradient of one training step, BatchNorm's
 * running statistics, then ten steps of SGD, SGD-Nesterov, Adam and AdamW
 * whose losses must follow torch.optim's; plus the losses and schedules on
 * their own. Reference data: tests/data/train (tools/gen_train_fixtures.py). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "graph/autodiff.h"
#include "harness.h"
#include "onnx/onnx_import.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/trainer.h"

#define DIR "data/train/"

static cJSON *load_json(const char *name)
{
    unsigned char *buf;
    size_t len;
    char path[256];
    snprintf(path, sizeof path, DIR "%s", name);
    lego_status st = file_read_all(path, &buf, &len);
    if (st.code) {
        fprintf(stderr, "%s\n", lego_status_msg(st));
        lego_status_free(&st);
        return NULL;
    }
    cJSON *j = cJSON_Parse((const char *)buf);
    free(buf);
    return j;
}

static void *load_bin(const char *name, size_t *len)
{
    unsigned char *buf = NULL;
    char path[256];
    snprintf(path, sizeof path, DIR "%s", name);
    lego_status st = file_read_all(path, &buf, len);
    CHECK(st.code == LEGO_OK);
    lego_status_free(&st);
    return buf;
}

static float *json_floats(const cJSON *arr, int *n)
{
    *n = cJSON_GetArraySize(arr);
    float *v = malloc(sizeof *v * (size_t)(*n + 1));
    for (int i = 0; i < *n; i++)
        v[i] = (float)cJSON_GetArrayItem(arr, i)->valuedouble;
    return v;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v ? v->valuedouble : NAN;
}

/* ---- losses and schedules ------------------------------------------ */

static void check_loss(const cJSON *root, const char *key)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, key);
    CHECK(c != NULL);
    if (!c)
        return;
    int n, nt, ng;
    float *want_grad = json_floats(cJSON_GetObjectItemCaseSensitive(c, "grad"), &ng);
    float *got = calloc((size_t)ng + 1, sizeof *got);
    double loss = NAN;
    if (strncmp(key, "cross_entropy", 13) == 0) {
        float *z = json_floats(cJSON_GetObjectItemCaseSensitive(c, "logits"), &n);
        float *lf = json_floats(cJSON_GetObjectItemCaseSensitive(c, "labels"), &nt);
        int32_t labels[16];
        for (int i = 0; i < nt; i++)
            labels[i] = (int32_t)lf[i];
        loss = loss_cross_entropy(z, labels, nt, n / nt, (float)num(c, "label_smoothing"), got);
        free(z), free(lf);
    } else {
        bool logits = strstr(key, "logits") != NULL;
        float *x = json_floats(cJSON_GetObjectItemCaseSensitive(c, logits ? "logits" : "pred"), &n);
        float *t = json_floats(cJSON_GetObjectItemCaseSensitive(c, "target"), &nt);
        if (strcmp(key, "mse") == 0)
            loss = loss_mse(x, t, n, got);
        else if (logits)
            loss = loss_bce_logits(x, t, n, got);
        else
            loss = loss_bce(x, t, n, got);
        free(x), free(t);
    }
    double want = num(c, "loss");
    if (!(fabs(loss - want) <= 1e-5 * fmax(1, fabs(want))))
        fprintf(stderr, "%s: loss %.8f, PyTorch %.8f\n", key, loss, want);
    CHECK(fabs(loss - want) <= 1e-5 * fmax(1, fabs(want)));
    check_close(got, want_grad, ng, 1e-5f, 1e-4f, key);
    free(got), free(want_grad);
}

static void test_losses_and_schedules(void)
{
    cJSON *l = load_json("losses.json");
    CHECK(l != NULL);
    if (l) {
        const char *keys[] = {"cross_entropy", "cross_entropy_ls0.1", "mse", "bce_hard", "bce_soft",
                              "bce_logits_hard", "bce_logits_soft"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            check_loss(l, keys[i]);
        cJSON_Delete(l);
    }
    cJSON *s = load_json("schedules.json");
    CHECK(s != NULL);
    if (!s)
        return;
    schedule sched[3] = {
        {SCHED_STEP, 0.1f, 20, 5, 0.1f, 0, 0, 0},
        {SCHED_COSINE, 0.1f, 20, 0, 0, 0, 0, 0},
        {SCHED_COSINE, 0.1f, 20, 0, 0, 0, 3, 0.1f},
    };
    const char *names[3] = {"step", "cosine", "warmup_cosine"};
    for (int k = 0; k < 3; k++) {
        int n;
        float *want = json_floats(cJSON_GetObjectItemCaseSensitive(
                                      cJSON_GetObjectItemCaseSensitive(s, names[k]), "lrs"), &n);
        float got[32];
        for (int e = 0; e < n; e++)
            got[e] = schedule_lr(&sched[k], e);
        check_close(got, want, n, 1e-7f, 1e-5f, names[k]);
        free(want);
    }
    cJSON_Delete(s);
}

/* ---- whole-model training steps ------------------------------------ */

typedef struct fixture {
    const char *name;
    lego_graph g;
    int *params, n_params;
    train_plan plan;
    lego_tensor x;
    int32_t y[64];
    int batch, classes;
} fixture;

/* Plans of the next fixture_open use only the portable kernels. */
static bool fixture_portable;

static int fixture_open(fixture *f, const char *name)
{
    memset(f, 0, sizeof *f);
    f->name = name;
    char file[128];
    snprintf(file, sizeof file, DIR "%s.onnx", name);
    unsigned char *buf;
    size_t len;
    lego_status st = file_read_all(file, &buf, &len);
    if (st.code == LEGO_OK) {
        st = onnx_import(buf, len, name, &f->g);
        free(buf);
    }
    if (st.code == LEGO_OK)
        st = graph_infer(&f->g);
    if (st.code == LEGO_OK)
        st = train_trainable_params(&f->g, &f->params, &f->n_params);
    f->g.portable_kernels = fixture_portable;
    int in = f->g.inputs[0], out = f->g.outputs[0];
    if (st.code == LEGO_OK)
        st = train_plan_build(&f->g, &in, 1, &out, 1, f->params, f->n_params, &f->plan);
    if (st.code) {
        fprintf(stderr, "%s: %s\n", name, lego_status_msg(st));
        lego_status_free(&st);
        harness_failed++;
        return 0;
    }
    f->x = f->g.values[in].t;
    f->batch = (int)f->x.dims[0];
    f->classes = (int)f->g.values[out].t.dims[1];
    snprintf(file, sizeof file, "%s.x.bin", name);
    f->x.data = load_bin(file, &len);
    f->x.owns = 0;
    CHECK(len == lego_tensor_bytes(&f->x));
    snprintf(file, sizeof file, "%s.y.bin", name);
    int32_t *y = load_bin(file, &len);
    CHECK(len == sizeof(int32_t) * (size_t)f->batch && f->batch <= 64);
    memcpy(f->y, y, len < sizeof f->y ? len : sizeof f->y);
    free(y);
    return 1;
}

static void fixture_close(fixture *f)
{
    train_plan_free(&f->plan);
    graph_free(&f->g);
    free(f->params);
    free(f->x.data);
}

static double step_loss(fixture *f)
{
    const lego_tensor *xs[1] = {&f->x};
    lego_status st = train_forward(&f->plan, xs, true);
    CHECK(st.code == LEGO_OK);
    lego_status_free(&st);
    return loss_cross_entropy(train_output(&f->plan, 0)->data, f->y, f->batch, f->classes, 0,
                              train_output_grad(&f->plan, 0)->data);
}

static int param_index(fixture *f, const char *name)
{
    for (int i = 0; i < f->n_params; i++)
        if (strcmp(f->g.values[f->params[i]].name, name) == 0)
            return i;
    return -1;
}

/* One step: logits, loss, every gradient, every running statistic.
 * grad_rtol is the per-tensor relative L2 error allowed (see the README in
 * tests/data/train for why MobileNetV2's float32 gradients are noisier). */
static void test_one_step(const char *name, double grad_rtol)
{
    fixture f;
    if (!fixture_open(&f, name))
        return;
    cJSON *j;
    char file[128];
    snprintf(file, sizeof file, "%s.json", name);
    j = load_json(file);
    CHECK(j != NULL);
    if (!j) {
        fixture_close(&f);
        return;
    }
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step");
    double loss = step_loss(&f);
    double want = num(step, "loss");
    if (!(fabs(loss - want) < 1e-4))
        fprintf(stderr, "%s: loss %.7f, PyTorch %.7f\n", name, loss, want);
    CHECK(fabs(loss - want) < 1e-4);
    size_t len;
    snprintf(file, sizeof file, "%s.logits.bin", name);
    float *logits = load_bin(file, &len);
    check_close(train_output(&f.plan, 0)->data, logits, f.batch * f.classes, 1e-4f, 1e-3f, "logits");
    free(logits);

    train_backward(&f.plan);
    snprintf(file, sizeof file, "%s.grads.bin", name);
    float *grads = load_bin(file, &len);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(step, "grads"), *it;
    int matched = 0;
    cJSON_ArrayForEach(it, list)
    {
        const char *pname = cJSON_GetObjectItemCaseSensitive(it, "name")->valuestring;
        int64_t off = (int64_t)num(it, "offset");
        int k = param_index(&f, pname);
        if (k < 0) {
            fprintf(stderr, "%s: PyTorch parameter %s is not trained here\n", name, pname);
            CHECK(k >= 0);
            continue;
        }
        const lego_tensor *gt = train_param_grad(&f.plan, k);
        const float *got = gt->data, *ref = grads + off;
        double d2 = 0, r2 = 0;
        for (int64_t i = 0; i < lego_tensor_numel(gt); i++) {
            d2 += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
            r2 += (double)ref[i] * ref[i];
        }
        /* relative L2 per tensor; gradients that are zero in exact arithmetic
         * (a bias before a train-mode BatchNorm) are judged absolutely */
        double err = sqrt(d2) / fmax(sqrt(r2), 1e-4);
        if (!(err <= grad_rtol))
            fprintf(stderr, "%s: gradient of %s off by %.3g (relative L2)\n", name, pname, err);
        CHECK(err <= grad_rtol);
        matched++;
    }
    CHECK(matched == f.n_params);
    free(grads);

    snprintf(file, sizeof file, "%s.running.bin", name);
    float *running = load_bin(file, &len);
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(step, "running"))
    {
        const char *vname = cJSON_GetObjectItemCaseSensitive(it, "name")->valuestring;
        int v = graph_find_value(&f.g, vname);
        CHECK(v >= 0);
        if (v >= 0)
            check_close(f.g.values[v].t.data, running + (int64_t)num(it, "offset"),
                        (long)lego_tensor_numel(&f.g.values[v].t), 1e-4f, 1e-3f, vname);
    }
    free(running);
    cJSON_Delete(j);
    fixture_close(&f);
}

/* Ten optimizer steps from the file's weights; losses follow PyTorch's. */
static void ten_steps(const char *name, const char *which, double tol)
{
    fixture f;
    if (!fixture_open(&f, name))
        return;
    char file[128];
    snprintf(file, sizeof file, "%s.json", name);
    cJSON *j = load_json(file);
    const cJSON *c = j ? cJSON_GetObjectItemCaseSensitive(j, which) : NULL;
    CHECK(c != NULL);
    if (!c) {
        cJSON_Delete(j);
        fixture_close(&f);
        return;
    }
    optim_kind kind = strncmp(which, "sgd", 3) == 0 ? OPTIM_SGD
                    : strcmp(which, "adam") == 0   ? OPTIM_ADAM
                                                    : OPTIM_ADAMW;
    optim_config cfg = optim_defaults(kind);
    cfg.weight_decay = (float)num(c, "weight_decay");
    if (kind == OPTIM_SGD) {
        cfg.momentum = (float)num(c, "momentum");
        cfg.nesterov = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "nesterov"));
    } else {
        cfg.eps = (float)num(c, "eps");
    }
    float **w = malloc(sizeof *w * (size_t)f.n_params);
    const float **g = malloc(sizeof *g * (size_t)f.n_params);
    int64_t *n = malloc(sizeof *n * (size_t)f.n_params);
    for (int i = 0; i < f.n_params; i++) {
        w[i] = train_param(&f.plan, i)->data;
        g[i] = train_param_grad(&f.plan, i)->data;
        n[i] = lego_tensor_numel(train_param(&f.plan, i));
    }
    optimizer o;
    CHECK_OK(optim_init(&o, &cfg, w, g, n, f.n_params));
    int nl;
    float *want = json_floats(cJSON_GetObjectItemCaseSensitive(c, "losses"), &nl);
    float got[16];
    float lr = (float)num(c, "lr");
    for (int s = 0; s < nl && s < 16; s++) {
        got[s] = (float)step_loss(&f);
        train_backward(&f.plan);
        optim_step(&o, lr);
    }
    char what[96];
    snprintf(what, sizeof what, "%s %s losses", name, which);
    check_close(got, want, nl, (float)tol, 0, what);
    optim_free(&o);
    free(w), free(g), free(n), free(want);
    cJSON_Delete(j);
    fixture_close(&f);
}

/* The ResNet18 fixture with a free batch dimension. */
static void load_dynbatch(lego_graph *g)
{
    unsigned char *buf;
    size_t len;
    CHECK_OK(file_read_all("data/models/resnet18_dynbatch.onnx", &buf, &len));
    CHECK_OK(onnx_import(buf, len, "resnet18_dynbatch", g));
    free(buf);
}

/* Ten steps on the portable kernels, within tol of PyTorch; then on the
 * default kernels (oneDNN's convolutions where built in), within
 * max(tol, 1e-2). The wider bound is the fixture's, not the kernels': its
 * SGD run has an event at step 4 that any change of about 3e-6 in the
 * convolution weight gradients flips (scaling every 7th dW value of the
 * portable path by 1 +- 3e-6 moves step 7's loss by 0.0038, as oneDNN's
 * summation order does: 0.2922 against 0.2960), while each step's gradients
 * stay within 5e-6 (relative L2) of the portable path's on the same
 * weights (tests/test_conv_dnnl_train.c holds them to it). */
static void test_ten_steps(const char *name, const char *which, double tol)
{
    fixture_portable = true;
    ten_steps(name, which, tol);
    fixture_portable = false;
    ten_steps(name, which, tol > 1e-2 ? tol : 1e-2);
}

/* An exported dynamic-batch model reads its activation's shape (Shape ->
 * Gather -> Reshape): the int64 path carries no gradient and must not stop
 * training from being planned. */
static void test_plan_through_shape_nodes(void)
{
    lego_graph g;
    int *params = NULL, n = 0;
    train_plan p;
    load_dynbatch(&g);
    CHECK_OK(graph_infer(&g));
    CHECK_OK(train_trainable_params(&g, &params, &n));
    CHECK(n == 62); /* 20 convs, 20 BN scale+bias, the linear layer's 2 */
    int in = g.inputs[0], out = g.outputs[0];
    CHECK_OK(train_plan_build(&g, &in, 1, &out, 1, params, n, &p));
    lego_tensor x = g.values[in].t;
    x.data = calloc((size_t)lego_tensor_numel(&x), sizeof(float));
    x.owns = 0;
    const lego_tensor *xs[1] = {&x};
    CHECK_OK(train_forward(&p, xs, true));
    float *dl = train_output_grad(&p, 0)->data;
    for (int64_t i = 0; i < lego_tensor_numel(train_output_grad(&p, 0)); i++)
        dl[i] = 1.0f;
    train_backward(&p);
    const float *gw = train_param_grad(&p, n - 2)->data; /* linear.weight */
    bool finite = true;
    for (int64_t i = 0; i < lego_tensor_numel(train_param_grad(&p, n - 2)); i++)
        finite &= isfinite(gw[i]);
    CHECK(finite);
    free(x.data);
    train_plan_free(&p);
    free(params);
    graph_free(&g);
}

/* Activations and gradients share memory by lifetime: the plan must take
 * well under one buffer per value, gradients must reuse activations', and a step that follows a step on other
 * data must give the same gradients bit for bit (every gradient is cleared
 * before its first +=, whatever an earlier value left in its memory). */
static void test_storage_by_lifetime(void)
{
    lego_graph g;
    int *params = NULL, n = 0;
    train_plan p;
    load_dynbatch(&g);
    g.values[g.inputs[0]].t.dims[0] = 4;
    CHECK_OK(graph_infer(&g));
    CHECK_OK(train_trainable_params(&g, &params, &n));
    int in = g.inputs[0], out = g.outputs[0];
    CHECK_OK(train_plan_build(&g, &in, 1, &out, 1, params, n, &p));
    size_t one_each = 0;
    for (int s = 0; s < p.n_steps; s++) {
        const gnode *nd = &g.nodes[p.steps[s]];
        for (int o = 0; o < nd->n_out; o++)
            one_each += lego_tensor_bytes(&g.values[nd->out[o]].t) * (p.needs_grad[nd->out[o]] ? 2 : 1);
    }
    CHECK(train_plan_storage_bytes(&p) < one_each * 7 / 10);
    /* one timeline for both: some gradient takes the memory of an
     * activation that backward no longer needs */
    bool reused = false;
    for (int v = 0; v < g.n_values; v++)
        for (int u = 0; u < g.n_values && p.gt[v].data; u++) {
            const unsigned char *a = p.vt[u].data, *d = p.gt[v].data;
            uintptr_t lo = (uintptr_t)p.mem, hi = lo + p.mem_bytes;
            if (a && (uintptr_t)a >= lo && (uintptr_t)a < hi && a < d + lego_tensor_bytes(&p.gt[v]) &&
                d < a + lego_tensor_bytes(&p.vt[u]))
                reused = true;
        }
    CHECK(reused);
    /* a Relu's input gradient is computed in its output gradient's memory */
    int inplace = 0;
    for (int s = 0; s < p.n_steps; s++) {
        const gnode *nd = &g.nodes[p.steps[s]];
        if (strcmp(nd->op_type, "Relu") == 0 && p.gt[nd->in[0]].data &&
            p.gt[nd->in[0]].data == p.gt[nd->out[0]].data)
            inplace++;
    }
    CHECK(inplace > 0);
    lego_tensor x[2];
    for (int k = 0; k < 2; k++) {
        x[k] = g.values[in].t;
        x[k].owns = 0;
        x[k].data = malloc(lego_tensor_bytes(&x[k]));
        float *d = x[k].data;
        for (int64_t i = 0; i < lego_tensor_numel(&x[k]); i++)
            d[i] = (float)((i * (k + 3) % 97) - 48) / 50.0f;
    }
    const lego_tensor *t = train_param_grad(&p, 0);
    int64_t gn = lego_tensor_numel(t);
    float *first = malloc(sizeof *first * (size_t)gn);
    for (int round = 0; round < 3; round++) {
        const lego_tensor *xs[1] = {&x[round == 1]};
        CHECK_OK(train_forward(&p, xs, true));
        float *dl = train_output_grad(&p, 0)->data;
        for (int64_t i = 0; i < lego_tensor_numel(train_output_grad(&p, 0)); i++)
            dl[i] = (float)(i % 7) - 3.0f;
        train_backward(&p);
        if (round == 0)
            memcpy(first, t->data, sizeof *first * (size_t)gn);
        if (round == 2)
            CHECK(memcmp(first, t->data, sizeof *first * (size_t)gn) == 0);
    }
    free(first);
    free(x[0].data), free(x[1].data);
    train_plan_free(&p);
    free(params);
    graph_free(&g);
}

int main(void)
{
    test_storage_by_lifetime();
    test_plan_through_shape_nodes();
    test_losses_and_schedules();
    test_one_step("resnet18_train", 1e-3);
    test_one_step("mobilenetv2_train", 2e-2);
    test_ten_steps("resnet18_train", "sgd", 1e-3);
    test_ten_steps("resnet18_train", "sgd_nesterov", 3e-3);
    test_ten_steps("resnet18_train", "adam", 1e-3);
    test_ten_steps("resnet18_train", "adamw", 1e-3);
    test_ten_steps("mobilenetv2_train", "sgd", 5e-2);
    test_ten_steps("mobilenetv2_train", "adam", 1e-2);
    return harness_finish();
}
