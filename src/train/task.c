/* task.c - the task interface's dispatch, and image classification built
 * in: datasets read through data/, batches normalised as the model says,
 * top-1 accuracy. */
#include "task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"

_Static_assert((int)LEGO_SPLIT_TRAIN == (int)SPLIT_TRAIN && (int)LEGO_SPLIT_TEST == (int)SPLIT_TEST,
               "lego_split and data_split number the splits alike");

/* ---- shared classification helpers ------------------------------------ */

lego_status classifier_of(const lego_graph *g, classifier *m)
{
    if (g->n_inputs != 1 || g->n_outputs != 1)
        return lego_error(LEGO_ERR_UNSUPPORTED, "%s: a classifier needs one input and one output, the model has %d and %d",
                          g->name, g->n_inputs, g->n_outputs);
    const lego_tensor *x = &g->values[g->inputs[0]].t, *y = &g->values[g->outputs[0]].t;
    char a[96], b[96];
    if (x->rank != 4 || y->rank != 2 || y->dtype != LEGO_F32)
        return lego_error(LEGO_ERR_SHAPE, "%s: a classifier maps (N,C,H,W) images to (N,classes) scores; this model maps %s to %s",
                          g->name, tensor_shape_str(x, a, sizeof a), tensor_shape_str(y, b, sizeof b));
    m->c = (int)x->dims[1], m->h = (int)x->dims[2], m->w = (int)x->dims[3];
    m->classes = (int)y->dims[1];
    m->input = g->inputs[0];
    m->output = g->outputs[0];
    return lego_ok();
}

lego_status task_set_batch(lego_graph *g, int batch)
{
    gvalue *x = &g->values[g->inputs[0]];
    if (x->t.dims[0] == batch)
        return lego_ok();
    if (x->declared_rank > 0 && x->declared[0] > 0 && x->declared[0] != batch)
        return lego_error(LEGO_ERR_SHAPE, "%s: the model's batch size is fixed at %lld, not %d; export it with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}})) or use --batch %lld",
                          g->name, (long long)x->declared[0], batch, (long long)x->declared[0]);
    x->t.dims[0] = batch;
    return graph_infer(g);
}

int task_fixed_batch(const lego_graph *g)
{
    const gvalue *x = &g->values[g->inputs[0]];
    return x->declared_rank > 0 && x->declared[0] > 0 ? (int)x->declared[0] : 0;
}

/* Per-channel mean and std of the pixels (in [0,1]) of a dataset. */
static void dataset_stats(const dataset *d, float *mean, float *std)
{
    int64_t plane = (int64_t)d->h * d->w;
    for (int ch = 0; ch < d->c && ch < 4; ch++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < d->n; i++) {
            const uint8_t *p = d->images + (i * d->c + ch) * plane;
            for (int64_t j = 0; j < plane; j++) {
                double v = p[j] / 255.0;
                s += v;
                s2 += v * v;
            }
        }
        double cnt = (double)d->n * (double)plane;
        double m = cnt ? s / cnt : 0;
        double var = cnt ? s2 / cnt - m * m : 1;
        mean[ch] = (float)m;
        std[ch] = (float)sqrt(var > 1e-12 ? var : 1.0);
    }
}

static bool parse_floats(const char *s, float *out, int n)
{
    for (int i = 0; i < n; i++) {
        char *end;
        out[i] = strtof(s, &end);
        if (end == s)
            return false;
        s = *end == ',' ? end + 1 : end;
    }
    return true;
}

bool task_normalisation(const char *mean_meta, const char *std_meta, const dataset *train,
                        int out_c, float *mean, float *std)
{
    if (mean_meta && std_meta && parse_floats(mean_meta, mean, out_c) &&
        parse_floats(std_meta, std, out_c))
        return true;
    float dm[4] = {0}, ds[4] = {1, 1, 1, 1};
    dataset_stats(train, dm, ds);
    for (int c = 0; c < out_c && c < 4; c++) {
        /* gray replicated to RGB keeps its one statistic per copy */
        mean[c] = train->c == 1 ? dm[0] : dm[c < train->c ? c : 0];
        std[c] = train->c == 1 ? ds[0] : ds[c < train->c ? c : 0];
    }
    return false;
}

void task_format_floats(const float *v, int n, char *buf, size_t len)
{
    if (len)
        buf[0] = 0;
    for (int c = 0; c < n && c < 4; c++) {
        size_t l = strlen(buf);
        /* %.9g round-trips a float exactly: a resumed run normalises bit
         * for bit as the first one did */
        snprintf(buf + l, len - l, "%s%.9g", c ? "," : "", v[c]);
    }
}

lego_status task_check_fits(const char *model_name, const dataset *d, int c, int classes)
{
    if (d->c != c && d->c != 1 && !(d->c == 3 && c == 1))
        return lego_error(LEGO_ERR_SHAPE, "%s has %d-channel images; the model %s takes %d channels",
                          d->name, d->c, model_name, c);
    if (classes > 0 && d->num_classes > classes) {
        for (int64_t i = 0; i < d->n; i++)
            if (d->labels[i] >= classes)
                return lego_error(LEGO_ERR_SHAPE, "%s: label %d of sample %lld is out of range for a model with %d outputs",
                                  d->name, d->labels[i], (long long)i, classes);
    }
    return lego_ok();
}

transform task_transform(int c, int h, int w, const float *mean, const float *std, bool augment)
{
    transform t;
    memset(&t, 0, sizeof t);
    t.out_c = c, t.out_h = h, t.out_w = w;
    if (augment) {
        t.pad_crop = h / 8 > 0 ? h / 8 : 1;
        t.hflip = 1;
    }
    for (int k = 0; k < 4; k++) {
        t.mean[k] = k < c ? mean[k] : 0;
        t.std[k] = k < c ? std[k] : 1;
    }
    return t;
}

/* ---- classification as a lego_task ------------------------------------ */

typedef struct cls_state {
    dataset split[2];   /* SPLIT_TRAIN, SPLIT_TEST */
    loader *ld[2];      /* NULL for a split left out */
    int batch, classes;
    int32_t *y;         /* targets of the last batch */
    int64_t last_n;
    int64_t correct, seen;
} cls_state;

static void cls_close(void *state)
{
    cls_state *s = state;
    if (!s)
        return;
    for (int i = 0; i < 2; i++) {
        loader_free(s->ld[i]);
        dataset_free(&s->split[i]);
    }
    free(s->y);
    free(s);
}

static lego_status cls_setup(cls_state *s, const char *spec, const lego_task_model *m, int batch,
                             int64_t max_train, int64_t max_test, uint64_t seed)
{
    const char *name = m->name ? m->name : "the model";
    const lego_tensor *x = m->input;
    char a[96], b[96];
    if (!x || x->rank != 4 || x->dtype != LEGO_F32)
        return lego_error(LEGO_ERR_SHAPE, "%s: classification needs one float (N,C,H,W) input, not %s",
                          name, x ? tensor_shape_str(x, a, sizeof a) : "none");
    if (m->num_outputs < 1 || m->outputs[0]->rank != 2 || m->outputs[0]->dtype != LEGO_F32)
        return lego_error(LEGO_ERR_SHAPE, "%s: classification needs a (N,classes) float output, not %s",
                          name, m->num_outputs < 1 ? "none" : tensor_shape_str(m->outputs[0], b, sizeof b));
    if (batch < 1)
        return lego_error(LEGO_ERR_ARG, "the batch size must be positive, not %d", batch);
    int c = (int)x->dims[1], h = (int)x->dims[2], w = (int)x->dims[3];
    s->classes = (int)m->outputs[0]->dims[1];
    s->batch = batch;
    bool have_meta = m->mean && m->std;
    bool want[2] = {max_train >= 0, max_test >= 0};
    int64_t cap[2] = {max_train, max_test};
    for (int i = 0; i < 2; i++) {
        /* the train split is read for statistics when the model has none */
        if (!want[i] && !(i == SPLIT_TRAIN && !have_meta))
            continue;
        dataset_opts o = {want[i] ? cap[i] : 0, 0, 0};
        LEGO_TRY(dataset_open(spec, (data_split)i, &o, &s->split[i]));
        LEGO_TRY(task_check_fits(name, &s->split[i], c, s->classes));
    }
    float mean[4] = {0}, std[4] = {1, 1, 1, 1};
    const dataset *stats = s->split[SPLIT_TRAIN].images ? &s->split[SPLIT_TRAIN] : &s->split[SPLIT_TEST];
    if (!task_normalisation(m->mean, m->std, stats, c, mean, std) && have_meta)
        return lego_error(LEGO_ERR_FORMAT, "%s: cannot read its normalisation metadata (mean \"%s\", std \"%s\") for %d channels",
                          name, m->mean, m->std, c);
    transform t = task_transform(c, h, w, mean, std, false);
    for (int i = 0; i < 2; i++) {
        if (!want[i])
            continue;
        bool train = i == SPLIT_TRAIN;
        bool drop = train && s->split[i].n >= batch;
        LEGO_TRY(loader_create(&s->split[i], &t, batch, train, drop, seed, &s->ld[i]));
    }
    s->y = calloc((size_t)batch, sizeof *s->y);
    if (!s->y)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    return lego_ok();
}

static lego_status cls_open(const char *spec, const lego_task_model *m, int batch, int64_t max_train,
                            int64_t max_test, uint64_t seed, void **state)
{
    *state = NULL;
    cls_state *s = calloc(1, sizeof *s);
    if (!s)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    lego_status st = cls_setup(s, spec, m, batch, max_train, max_test, seed);
    if (st.code) {
        cls_close(s);
        return st;
    }
    *state = s;
    return st;
}

static void cls_start(void *state, lego_split split, int epoch)
{
    cls_state *s = state;
    if (s->ld[split])
        loader_start_epoch(s->ld[split], epoch);
}

static int64_t cls_next(void *state, lego_split split, float *x)
{
    cls_state *s = state;
    s->last_n = s->ld[split] ? loader_next(s->ld[split], x, s->y) : 0;
    return s->last_n;
}

static void cls_score(void *state, const lego_tensor *const *outputs, int num_outputs, int64_t n)
{
    cls_state *s = state;
    if (num_outputs < 1 || !outputs[0] || !outputs[0]->data || outputs[0]->rank != 2)
        return;
    const float *logits = outputs[0]->data;
    int64_t k = outputs[0]->dims[1];
    if (n > s->last_n)
        n = s->last_n;
    if (n > outputs[0]->dims[0])
        n = outputs[0]->dims[0];
    for (int64_t i = 0; i < n; i++)
        s->correct += argmax(logits + i * k, k) == s->y[i];
    s->seen += n;
}

static double cls_metric(void *state, int reset)
{
    cls_state *s = state;
    double v = s->seen ? (double)s->correct / (double)s->seen : 0;
    if (reset)
        s->correct = s->seen = 0;
    return v;
}

static int64_t cls_batches(const void *state, lego_split split)
{
    const cls_state *s = state;
    return s->ld[split] ? loader_batches_per_epoch(s->ld[split]) : 0;
}

const lego_task lego_task_classification = {
    "classification", "top-1 accuracy", cls_open, cls_start, cls_next, cls_score, cls_metric,
    cls_batches, cls_close,
};

/* ---- dispatch ---------------------------------------------------------- */

struct task_data {
    const lego_task *t;
    void *state;
    int n_outputs;
};

static const lego_task *const builtin[] = {&lego_task_classification};

const lego_task *task_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof builtin / sizeof *builtin; i++)
        if (strcmp(builtin[i]->name, name) == 0)
            return builtin[i];
    return NULL;
}

const char *task_names(void) { return "classification"; }

lego_status task_open(const lego_task *t, const char *spec, const lego_graph *g, int batch,
                      int64_t max_train, int64_t max_test, uint64_t seed, task_data **out)
{
    *out = NULL;
    if (!t || !t->open || !t->start || !t->next || !t->score || !t->metric_value || !t->batches ||
        !t->close)
        return lego_error(LEGO_ERR_ARG, "task %s lacks a callback", t && t->name ? t->name : "(null)");
    if (batch < 1)
        return lego_error(LEGO_ERR_ARG, "the batch size must be positive, not %d", batch);
    char a[96];
    if (g->n_inputs != 1)
        return lego_error(LEGO_ERR_UNSUPPORTED, "%s: the %s task feeds one input; the model has %d",
                          g->name, t->name, g->n_inputs);
    const lego_tensor *x = &g->values[g->inputs[0]].t;
    if (x->rank != 4 || x->dtype != LEGO_F32)
        return lego_error(LEGO_ERR_SHAPE, "%s: the %s task feeds (N,C,H,W) float images; the model's input is %s",
                          g->name, t->name, tensor_shape_str(x, a, sizeof a));
    const lego_tensor **outs = malloc(sizeof *outs * ((size_t)g->n_outputs + 1));
    task_data *d = calloc(1, sizeof *d);
    if (!outs || !d) {
        free(outs), free(d);
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < g->n_outputs; i++)
        outs[i] = &g->values[g->outputs[i]].t;
    lego_task_model m = {x, g->n_outputs, outs, graph_meta(g, "legodnn.mean"),
                         graph_meta(g, "legodnn.std"), g->name};
    lego_status st = t->open(spec, &m, batch, max_train, max_test, seed, &d->state);
    free(outs);
    if (st.code) {
        free(d);
        return st;
    }
    d->t = t;
    d->n_outputs = g->n_outputs;
    *out = d;
    return st;
}

void task_start(task_data *d, data_split split, int epoch)
{
    d->t->start(d->state, (lego_split)split, epoch);
}

int64_t task_next(task_data *d, data_split split, float *x)
{
    return d->t->next(d->state, (lego_split)split, x);
}

void task_score(task_data *d, const lego_tensor *const *outputs, int64_t n)
{
    d->t->score(d->state, outputs, d->n_outputs, n);
}

double task_metric(task_data *d, bool reset) { return d->t->metric_value(d->state, reset); }

/* Only the built-in classification's tally is known here: two counts. */
size_t task_kind_tally_bytes(const lego_task *t)
{
    return t == &lego_task_classification ? 2 * sizeof(int64_t) : 0;
}

size_t task_tally_bytes(const task_data *d) { return task_kind_tally_bytes(d->t); }

void task_tally_add(const task_data *d, void *sum, const void *part)
{
    (void)d; /* classification's: both counts add */
    int64_t a[2], b[2];
    memcpy(a, sum, sizeof a);
    memcpy(b, part, sizeof b);
    a[0] += b[0], a[1] += b[1];
    memcpy(sum, a, sizeof a);
}

void task_tally_get(const task_data *d, void *buf)
{
    const cls_state *s = d->state;
    int64_t v[2] = {s->correct, s->seen};
    memcpy(buf, v, sizeof v);
}

void task_tally_set(task_data *d, const void *buf)
{
    cls_state *s = d->state;
    int64_t v[2];
    memcpy(v, buf, sizeof v);
    s->correct = v[0], s->seen = v[1];
}

int64_t task_batches(const task_data *d, data_split split)
{
    return d->t->batches(d->state, (lego_split)split);
}

const lego_task *task_of(const task_data *d) { return d->t; }

void task_close(task_data *d)
{
    if (!d)
        return;
    d->t->close(d->state);
    free(d);
}
