/* trainer.c - the classifier training loop, evaluation and checkpoints. */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "../core/progress.h"
#include "../data/dataset.h"
#include "../graph/autodiff.h"
#include "../onnx/onnx_export.h"
#include "loss.h"
#include "task.h"

/* ---- the model's shape and what to train ---------------------------- */

/* An initializer is trained unless some node reads it as configuration:
 * BatchNorm's running statistics, or an input its op needs constant
 * (shapes, pads, scales) or reads as bounds. */
static bool is_configuration(const gnode *n, int i)
{
    if (strcmp(n->op_type, "BatchNormalization") == 0)
        return i >= 3;
    if (strcmp(n->op_type, "Clip") == 0 || strcmp(n->op_type, "Pad") == 0 ||
        strcmp(n->op_type, "Resize") == 0)
        return i >= 1;
    return i < 32 && ((n->op->const_inputs >> i) & 1u);
}

lego_status train_trainable_params(const lego_graph *g, int **out, int *n)
{
    bool *config = calloc((size_t)g->n_values + 1, sizeof *config);
    bool *used = calloc((size_t)g->n_values + 1, sizeof *used);
    int *list = malloc(sizeof *list * ((size_t)g->n_values + 1));
    if (!config || !used || !list) {
        free(config), free(used), free(list);
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const gnode *nd = &g->nodes[k];
        for (int i = 0; i < nd->n_in; i++) {
            int v = nd->in[i];
            if (v < 0)
                continue;
            used[v] = true;
            if (is_configuration(nd, i))
                config[v] = true;
        }
    }
    *n = 0;
    for (int v = 0; v < g->n_values; v++) {
        const gvalue *val = &g->values[v];
        if (val->kind == VALUE_INITIALIZER && val->t.dtype == LEGO_F32 && used[v] && !config[v])
            list[(*n)++] = v;
    }
    free(config);
    free(used);
    *out = list;
    return lego_ok();
}

/* ---- normalisation -------------------------------------------------- */

/* The model remembers how its inputs were normalised (ONNX metadata), so
 * evaluation and later stages feed it the same way (task.c reads it). */
static lego_status normalisation(lego_graph *g, const dataset *train, int out_c, float *mean,
                                 float *std)
{
    if (task_normalisation(graph_meta(g, "legodnn.mean"), graph_meta(g, "legodnn.std"), train,
                           out_c, mean, std))
        return lego_ok();
    char mbuf[128], sbuf[128];
    task_format_floats(mean, out_c, mbuf, sizeof mbuf);
    task_format_floats(std, out_c, sbuf, sizeof sbuf);
    LEGO_TRY(graph_set_meta(g, "legodnn.mean", mbuf));
    return graph_set_meta(g, "legodnn.std", sbuf);
}

static lego_status check_dataset_fits(const lego_graph *g, const dataset *d, const classifier *m)
{
    return task_check_fits(g->name, d, m->c, m->classes);
}

static transform make_transform(const classifier *m, const float *mean, const float *std, bool augment)
{
    return task_transform(m->c, m->h, m->w, mean, std, augment);
}

/* ---- checkpoints ---------------------------------------------------- */

#define STATE_MAGIC "LEGOSTAT"
#define STATE_VERSION 1u

typedef struct state_header {
    char magic[8];
    uint32_t version, optim_kind;
    uint32_t epochs_done, n_params;
    uint64_t steps, seed;
} state_header;

static char *state_path(const char *out)
{
    size_t n = strlen(out);
    char *p = malloc(n + 7);
    if (p)
        snprintf(p, n + 7, "%s.state", out);
    return p;
}

/* Optimizer state, named parameter by parameter so a mismatch is caught. */
static lego_status write_state(const char *out, const lego_graph *g, const int *params,
                               const optimizer *o, int epochs_done, uint64_t seed)
{
    size_t bytes = sizeof(state_header);
    bool adam = o->cfg.kind != OPTIM_SGD;
    for (int i = 0; i < o->n_params; i++)
        bytes += 4 + strlen(g->values[params[i]].name) + 8 +
                 (size_t)o->p[i].n * sizeof(float) * (adam ? 2 : 1);
    unsigned char *buf = malloc(bytes), *p = buf;
    char *path = state_path(out);
    if (!buf || !path) {
        free(buf), free(path);
        return lego_error(LEGO_ERR_NOMEM, "out of memory writing a checkpoint");
    }
    state_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.version = STATE_VERSION;
    h.optim_kind = (uint32_t)o->cfg.kind;
    h.epochs_done = (uint32_t)epochs_done;
    h.n_params = (uint32_t)o->n_params;
    h.steps = (uint64_t)o->steps;
    h.seed = seed;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    for (int i = 0; i < o->n_params; i++) {
        const char *name = g->values[params[i]].name;
        uint32_t len = (uint32_t)strlen(name);
        uint64_t n = (uint64_t)o->p[i].n;
        memcpy(p, &len, 4), p += 4;
        memcpy(p, name, len), p += len;
        memcpy(p, &n, 8), p += 8;
        memcpy(p, o->p[i].m, n * sizeof(float)), p += n * sizeof(float);
        if (adam)
            memcpy(p, o->p[i].v, n * sizeof(float)), p += n * sizeof(float);
    }
    lego_status st = file_write_atomic(path, buf, bytes);
    free(buf);
    free(path);
    return st;
}

static lego_status state_corrupt(const char *path, const char *why)
{
    return lego_error(LEGO_ERR_FORMAT, "%s: %s; delete it (and train without --resume) to start over",
                      path, why);
}

static lego_status read_state(const char *out, const lego_graph *g, const int *params, optimizer *o,
                              int *epochs_done, uint64_t seed)
{
    char *path = state_path(out);
    if (!path)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    unsigned char *buf;
    size_t len;
    lego_status st = file_read_all(path, &buf, &len);
    if (st.code) {
        free(path);
        return st;
    }
    state_header h;
    const unsigned char *p = buf, *end = buf + len;
    bool adam = o->cfg.kind != OPTIM_SGD;
    if (len < sizeof h)
        st = state_corrupt(path, "too short to be a training state");
    else {
        memcpy(&h, p, sizeof h);
        p += sizeof h;
        if (memcmp(h.magic, STATE_MAGIC, 8) != 0 || h.version != STATE_VERSION)
            st = state_corrupt(path, "not a legodnn training state");
        else if (h.optim_kind != (uint32_t)o->cfg.kind || h.seed != seed)
            st = state_corrupt(path, "was written with another optimizer or seed");
        else if (h.n_params != (uint32_t)o->n_params)
            st = state_corrupt(path, "does not match the model's parameters");
    }
    for (int i = 0; st.code == LEGO_OK && i < o->n_params; i++) {
        const char *name = g->values[params[i]].name;
        uint32_t nl;
        uint64_t n;
        size_t need_floats = (size_t)o->p[i].n * (adam ? 2 : 1);
        if (end - p < 4 || (memcpy(&nl, p, 4), p += 4, (size_t)(end - p) < (size_t)nl + 8) ||
            nl != strlen(name) || memcmp(p, name, nl) != 0) {
            st = state_corrupt(path, "does not match the model's parameters");
            break;
        }
        p += nl;
        memcpy(&n, p, 8), p += 8;
        if (n != (uint64_t)o->p[i].n || (size_t)(end - p) < need_floats * sizeof(float)) {
            st = state_corrupt(path, "is truncated or does not match the model");
            break;
        }
        memcpy(o->p[i].m, p, n * sizeof(float)), p += n * sizeof(float);
        if (adam)
            memcpy(o->p[i].v, p, n * sizeof(float)), p += n * sizeof(float);
    }
    if (st.code == LEGO_OK) {
        o->steps = (int64_t)h.steps;
        *epochs_done = (int)h.epochs_done;
    }
    free(buf);
    free(path);
    return st;
}

static lego_status write_checkpoint(const train_options *opt, lego_graph *g, const int *params,
                                    const optimizer *o, int epochs_done, double test_acc)
{
    char epoch[32], acc[32];
    snprintf(epoch, sizeof epoch, "%d", epochs_done);
    snprintf(acc, sizeof acc, "%.6f", test_acc);
    const char *keys[] = {"legodnn.epochs", "legodnn.test_accuracy", "legodnn.dataset", NULL};
    const char *vals[] = {epoch, acc, opt->data, NULL};
    /* The ONNX file first: the state names the epoch it belongs to, and a
     * crash between the two leaves a state the resume check rejects. */
    LEGO_TRY(onnx_export_file(g, opt->out, keys, vals));
    LEGO_TRY(graph_set_meta(g, "legodnn.epochs", epoch));
    return write_state(opt->out, g, params, o, epochs_done, opt->seed);
}

/* ---- one pass over a split ------------------------------------------ */

typedef struct pass_stats {
    double loss_sum;
    int64_t correct, seen;
} pass_stats;

static void score_batch(const float *logits, const int32_t *y, int64_t n, int k, pass_stats *s)
{
    for (int64_t i = 0; i < n; i++)
        s->correct += argmax(logits + i * k, k) == y[i];
    s->seen += n;
}

static lego_status evaluate(train_plan *p, loader *l, lego_tensor *x, int32_t *y, int k,
                            const char *label, bool quiet, pass_stats *s)
{
    memset(s, 0, sizeof *s);
    loader_start_epoch(l, 0);
    progress bar;
    progress_start(&bar, label, loader_batches_per_epoch(l), quiet);
    int64_t got, b = 0;
    const lego_tensor *xs[1] = {x};
    while ((got = loader_next(l, x->data, y)) > 0) {
        LEGO_TRY(train_forward(p, xs, false));
        const float *logits = train_output(p, 0)->data;
        s->loss_sum += loss_cross_entropy(logits, y, got, k, 0, NULL) * (double)got;
        score_batch(logits, y, got, k, s);
        progress_update(&bar, ++b, NULL);
    }
    char msg[96];
    snprintf(msg, sizeof msg, "accuracy %.2f%%", s->seen ? 100.0 * (double)s->correct / (double)s->seen : 0);
    progress_finish(&bar, msg);
    return lego_ok();
}

/* ---- training -------------------------------------------------------- */

typedef struct session {
    dataset train, test;
    loader *train_loader, *test_loader;
    train_plan plan;
    bool planned;
    optimizer opt;
    int *params, n_params;
    lego_tensor x;
    int32_t *y;
    float *dlogits;
} session;

static void session_free(session *s)
{
    loader_free(s->train_loader);
    loader_free(s->test_loader);
    dataset_free(&s->train);
    dataset_free(&s->test);
    if (s->planned)
        train_plan_free(&s->plan);
    optim_free(&s->opt);
    free(s->params);
    tensor_release(&s->x);
    free(s->y);
    free(s->dlogits);
}

static lego_status check_options(const train_options *o)
{
    if (o->epochs < 1 || o->epochs > 100000)
        return lego_error(LEGO_ERR_ARG, "epochs must be between 1 and 100000, not %d", o->epochs);
    if (o->batch < 1 || o->batch > 65536)
        return lego_error(LEGO_ERR_ARG, "batch must be between 1 and 65536, not %d", o->batch);
    if (!(o->sched.base_lr > 0) || !isfinite(o->sched.base_lr))
        return lego_error(LEGO_ERR_ARG, "the learning rate must be positive, not %g", o->sched.base_lr);
    if (o->label_smoothing < 0 || o->label_smoothing >= 1)
        return lego_error(LEGO_ERR_ARG, "label smoothing must be in [0, 1), not %g", o->label_smoothing);
    if (!o->data || !o->out)
        return lego_error(LEGO_ERR_ARG, "a dataset and an output file are required");
    return lego_ok();
}

static lego_status setup(lego_graph *g, const train_options *o, classifier *m, session *s)
{
    LEGO_TRY(classifier_of(g, m));
    dataset_opts tr = {o->max_train, 0, 0}, te = {o->max_test, 0, 0};
    LEGO_TRY(dataset_open(o->data, SPLIT_TRAIN, &tr, &s->train));
    LEGO_TRY(dataset_open(o->data, SPLIT_TEST, &te, &s->test));
    LEGO_TRY(check_dataset_fits(g, &s->train, m));
    LEGO_TRY(check_dataset_fits(g, &s->test, m));
    float mean[4] = {0}, std[4] = {1, 1, 1, 1};
    LEGO_TRY(normalisation(g, &s->train, m->c, mean, std));
    transform ttrain = make_transform(m, mean, std, o->augment);
    transform ttest = make_transform(m, mean, std, false);
    /* drop_last: BatchNorm statistics of a 3-sample tail batch are noise */
    bool drop = s->train.n >= o->batch;
    LEGO_TRY(loader_create(&s->train, &ttrain, o->batch, true, drop, o->seed, &s->train_loader));
    LEGO_TRY(loader_create(&s->test, &ttest, o->batch, false, false, o->seed, &s->test_loader));

    LEGO_TRY(task_set_batch(g, o->batch));
    LEGO_TRY(train_trainable_params(g, &s->params, &s->n_params));
    if (s->n_params == 0)
        return lego_error(LEGO_ERR_ARG, "%s has no trainable parameters", g->name);
    int in = m->input, out = m->output;
    /* no gradient for the images: the first convolution skips its dX */
    LEGO_TRY(train_plan_build_ex(g, &in, 1, &out, 1, s->params, s->n_params, false, &s->plan));
    s->planned = true;

    float **w = malloc(sizeof *w * (size_t)s->n_params);
    const float **gr = malloc(sizeof *gr * (size_t)s->n_params);
    int64_t *n = malloc(sizeof *n * (size_t)s->n_params);
    lego_status st = lego_ok();
    if (!w || !gr || !n)
        st = lego_error(LEGO_ERR_NOMEM, "out of memory");
    for (int i = 0; st.code == LEGO_OK && i < s->n_params; i++) {
        w[i] = train_param(&s->plan, i)->data;
        gr[i] = train_param_grad(&s->plan, i)->data;
        n[i] = lego_tensor_numel(train_param(&s->plan, i));
    }
    if (st.code == LEGO_OK)
        st = optim_init(&s->opt, &o->optim, w, gr, n, s->n_params);
    free(w), free(gr), free(n);
    LEGO_TRY(st);

    int64_t dims[4] = {o->batch, m->c, m->h, m->w};
    tensor_set_shape(&s->x, LEGO_F32, 4, dims);
    LEGO_TRY(tensor_alloc(&s->x));
    s->y = calloc((size_t)o->batch, sizeof *s->y);
    s->dlogits = calloc((size_t)o->batch * (size_t)m->classes, sizeof *s->dlogits);
    if (!s->y || !s->dlogits)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    return lego_ok();
}

static lego_status train_epoch(session *s, const train_options *o, const classifier *m, int epoch,
                               float lr, pass_stats *ps)
{
    memset(ps, 0, sizeof *ps);
    loader_start_epoch(s->train_loader, epoch);
    progress bar;
    char label[32];
    snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, o->epochs);
    progress_start(&bar, label, loader_batches_per_epoch(s->train_loader), o->quiet);
    double t0 = now_seconds();
    int64_t got, b = 0;
    const lego_tensor *xs[1] = {&s->x};
    while ((got = loader_next(s->train_loader, s->x.data, s->y)) > 0) {
        if (got < o->batch)
            break; /* only when the split is smaller than one batch: skip the tail */
        LEGO_TRY(train_forward(&s->plan, xs, true));
        const float *logits = train_output(&s->plan, 0)->data;
        double loss = loss_cross_entropy(logits, s->y, got, m->classes, o->label_smoothing,
                                         train_output_grad(&s->plan, 0)->data);
        if (!isfinite(loss))
            return lego_error(LEGO_ERR_ARG, "the loss became %s at epoch %d, batch %lld (learning rate %g may be too high)",
                              isnan(loss) ? "NaN" : "infinite", epoch + 1, (long long)b + 1, lr);
        score_batch(logits, s->y, got, m->classes, ps); /* before backward reuses their memory */
        train_backward(&s->plan);
        optim_step(&s->opt, lr);
        ps->loss_sum += loss * (double)got;
        b++;
        double el = now_seconds() - t0;
        char msg[96];
        snprintf(msg, sizeof msg, "loss %.4f  acc %.2f%%  %.0f img/s", ps->loss_sum / (double)ps->seen,
                 100.0 * (double)ps->correct / (double)ps->seen, el > 0 ? (double)ps->seen / el : 0);
        progress_update(&bar, b, msg);
    }
    char msg[96];
    snprintf(msg, sizeof msg, "loss %.4f  acc %.2f%%", ps->seen ? ps->loss_sum / (double)ps->seen : 0,
             ps->seen ? 100.0 * (double)ps->correct / (double)ps->seen : 0);
    progress_finish(&bar, msg);
    if (ps->seen == 0)
        return lego_error(LEGO_ERR_ARG, "the training split has %lld samples, fewer than one batch of %d",
                          (long long)s->train.n, o->batch);
    return lego_ok();
}

lego_status train_classifier(lego_graph *g, const train_options *o,
                             void (*on_epoch)(const epoch_stats *s, void *ctx), void *ctx,
                             train_result *res)
{
    memset(res, 0, sizeof *res);
    LEGO_TRY(check_options(o));
    session s;
    memset(&s, 0, sizeof s);
    classifier m;
    double t_start = now_seconds();
    lego_status st = setup(g, o, &m, &s);
    int start = 0;
    if (st.code == LEGO_OK && o->resume) {
        const char *e = graph_meta(g, "legodnn.epochs");
        st = lego_error_context(read_state(o->out, g, s.params, &s.opt, &start, o->seed),
                                "cannot resume from %s", o->out);
        if (st.code == LEGO_OK && (!e || atoi(e) != start))
            st = lego_error(LEGO_ERR_FORMAT, "%s holds epoch %s but its .state file epoch %d; delete both to start over",
                            o->out, e ? e : "(none)", start);
    }
    res->first_epoch = start;
    res->epochs_done = start;
    res->params = 0;
    for (int i = 0; st.code == LEGO_OK && i < s.n_params; i++)
        res->params += lego_tensor_numel(train_param(&s.plan, i));
    for (int epoch = start; st.code == LEGO_OK && epoch < o->epochs; epoch++) {
        float lr = schedule_lr(&o->sched, epoch);
        pass_stats tr, te;
        double t0 = now_seconds();
        st = train_epoch(&s, o, &m, epoch, lr, &tr);
        if (st.code)
            break;
        double train_seconds = now_seconds() - t0;
        st = evaluate(&s.plan, s.test_loader, &s.x, s.y, m.classes, "  test", o->quiet, &te);
        if (st.code)
            break;
        epoch_stats es = {epoch + 1, lr, tr.loss_sum / (double)tr.seen,
                          (double)tr.correct / (double)tr.seen,
                          te.seen ? te.loss_sum / (double)te.seen : 0,
                          te.seen ? (double)te.correct / (double)te.seen : 0,
                          now_seconds() - t0, train_seconds > 0 ? (double)tr.seen / train_seconds : 0};
        st = write_checkpoint(o, g, s.params, &s.opt, epoch + 1, es.test_acc);
        res->epochs_done = epoch + 1;
        res->last = es;
        if (on_epoch)
            on_epoch(&es, ctx);
    }
    if (st.code && res->epochs_done > 0) {
        lego_status told = lego_error(st.code, "%s; %s holds the last good checkpoint (epoch %d)",
                                      lego_status_msg(st), o->out, res->epochs_done);
        lego_status_free(&st);
        st = told;
    }
    res->seconds = now_seconds() - t_start;
    session_free(&s);
    return st;
}

lego_status eval_classifier(lego_graph *g, const char *data, int batch, int64_t max_test, bool quiet,
                            eval_result *res)
{
    memset(res, 0, sizeof *res);
    classifier m;
    LEGO_TRY(classifier_of(g, &m));
    const gvalue *xv = &g->values[m.input];
    if (batch <= 0)
        batch = 100;
    if (xv->declared_rank > 0 && xv->declared[0] > 0)
        batch = (int)xv->declared[0]; /* a fixed batch axis decides */
    session s;
    memset(&s, 0, sizeof s);
    double t0 = now_seconds();
    dataset_opts te = {max_test, 0, 0};
    lego_status st = dataset_open(data, SPLIT_TEST, &te, &s.test);
    if (st.code == LEGO_OK)
        st = check_dataset_fits(g, &s.test, &m);
    float mean[4] = {0}, std[4] = {1, 1, 1, 1};
    if (st.code == LEGO_OK && !graph_meta(g, "legodnn.mean")) {
        /* a model from elsewhere: normalise with the train split's statistics */
        st = dataset_open(data, SPLIT_TRAIN, NULL, &s.train);
    }
    if (st.code == LEGO_OK)
        st = normalisation(g, s.train.images ? &s.train : &s.test, m.c, mean, std);
    transform t = make_transform(&m, mean, std, false);
    if (st.code == LEGO_OK)
        st = loader_create(&s.test, &t, batch, false, false, 0, &s.test_loader);
    if (st.code == LEGO_OK)
        st = task_set_batch(g, batch);
    int in = m.input, out = m.output;
    if (st.code == LEGO_OK) {
        st = train_plan_build_ex(g, &in, 1, &out, 1, NULL, 0, false, &s.plan);
        s.planned = st.code == LEGO_OK;
    }
    int64_t dims[4] = {batch, m.c, m.h, m.w};
    tensor_set_shape(&s.x, LEGO_F32, 4, dims);
    if (st.code == LEGO_OK)
        st = tensor_alloc(&s.x);
    s.y = calloc((size_t)batch, sizeof *s.y);
    if (st.code == LEGO_OK && !s.y)
        st = lego_error(LEGO_ERR_NOMEM, "out of memory");
    pass_stats ps = {0};
    if (st.code == LEGO_OK)
        st = evaluate(&s.plan, s.test_loader, &s.x, s.y, m.classes, "eval", quiet, &ps);
    res->samples = ps.seen;
    res->loss = ps.seen ? ps.loss_sum / (double)ps.seen : 0;
    res->accuracy = ps.seen ? (double)ps.correct / (double)ps.seen : 0;
    res->num_classes = m.classes;
    res->seconds = now_seconds() - t0;
    session_free(&s);
    return st;
}
