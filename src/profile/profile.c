/* profile.c - descendants' accuracy loss in composed models, the additive
 * estimate checked against measurement, and the manifest update
 * (profile.h). */
#include "profile.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/compose.h"
#include "../core/progress.h"
#include "../core/rng.h"
#include "../core/tensor.h"
#include "../graph/autodiff.h"
#include "../train/task.h"

#define DEFAULT_BATCH 64
#define DEFAULT_RANDOM 5

static lego_status nomem(void) { return lego_error(LEGO_ERR_NOMEM, "out of memory profiling"); }

int profile_environments(int n_sparsities, int *envs)
{
    /* the original's list: [all original] + [all at S[j] for every j] */
    int n = n_sparsities + 1, keep[PROFILE_MAX_ENVS], k = 0;
    if (n > 3) {
        keep[0] = 0, keep[1] = (n - 1) / 2, keep[2] = n - 1;
        k = 3;
    } else {
        for (int i = 0; i < n; i++)
            keep[k++] = i;
    }
    /* entry 0 is the teacher's blocks, which are the s = 0 descendants */
    for (int i = 0; i < k; i++)
        envs[i] = keep[i] == 0 ? 0 : keep[i] - 1;
    return k;
}

/* ---- the composition cache ------------------------------------------- */

typedef struct cache {
    int n_blocks;
    profile_composition *items;
    bool *done;
    int n, cap;
} cache;

static int cache_find(const cache *c, const int *choice)
{
    for (int i = 0; i < c->n; i++)
        if (memcmp(c->items[i].choice, choice, sizeof *choice * (size_t)c->n_blocks) == 0)
            return i;
    return -1;
}

/* The index of `choice` in the cache, added (not yet evaluated) if new. */
static lego_status cache_add(cache *c, const int *choice, int *idx)
{
    *idx = cache_find(c, choice);
    if (*idx >= 0)
        return lego_ok();
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        profile_composition *items = realloc(c->items, sizeof *items * (size_t)cap);
        if (!items)
            return nomem();
        c->items = items;
        bool *done = realloc(c->done, sizeof *done * (size_t)cap);
        if (!done)
            return nomem();
        c->done = done;
        c->cap = cap;
    }
    int *copy = malloc(sizeof *copy * (size_t)c->n_blocks);
    if (!copy)
        return nomem();
    memcpy(copy, choice, sizeof *copy * (size_t)c->n_blocks);
    c->items[c->n] = (profile_composition){copy, NAN};
    c->done[c->n] = false;
    *idx = c->n++;
    return lego_ok();
}

/* ---- evaluating one composition -------------------------------------- */

typedef struct evaluator {
    block_library *lib;
    task_data *task;
    int batch;
    lego_tensor x;           /* (batch, C, H, W) */
    int64_t samples;
} evaluator;

/* Score g (prepared at the library's shapes) on the test split: the task's
 * metric, with BatchNorm in inference mode, as `legodnn eval` does. */
static lego_status eval_graph(evaluator *e, lego_graph *g, double *acc)
{
    LEGO_TRY(task_set_batch(g, e->batch));
    int in = g->inputs[0];
    train_plan p;
    LEGO_TRY(train_plan_build(g, &in, 1, g->outputs, g->n_outputs, NULL, 0, &p));
    const lego_tensor **outs = malloc(sizeof *outs * (size_t)g->n_outputs);
    lego_status st = outs ? lego_ok() : nomem();
    const lego_tensor *xs[1] = {&e->x};
    int64_t got, seen = 0;
    task_metric(e->task, true);
    task_start(e->task, SPLIT_TEST, 0);
    while (st.code == LEGO_OK && (got = task_next(e->task, SPLIT_TEST, e->x.data)) > 0) {
        st = train_forward(&p, xs, false);
        if (st.code)
            break;
        for (int i = 0; i < g->n_outputs; i++)
            outs[i] = train_output(&p, i);
        task_score(e->task, outs, got);
        seen += got;
    }
    *acc = task_metric(e->task, true);
    e->samples = seen;
    free(outs);
    train_plan_free(&p);
    return st;
}

static lego_status eval_choice(evaluator *e, const int *choice, double *acc)
{
    lego_graph g;
    LEGO_TRY(compose_model(e->lib, choice, &g));
    lego_status st = eval_graph(e, &g, acc);
    graph_free(&g);
    return st;
}

/* ---- profiling -------------------------------------------------------- */

static void result_init(profile_result *r)
{
    memset(r, 0, sizeof *r);
    r->teacher_accuracy = NAN;
}

void profile_result_free(profile_result *r)
{
    for (int i = 0; i < r->n_compositions; i++)
        free(r->compositions[i].choice);
    free(r->compositions);
    free(r->delta);
    free(r->checks);
    result_init(r);
}

static double acc_of(const cache *c, const int *choice)
{
    int i = cache_find(c, choice);
    return i >= 0 ? c->items[i].accuracy : NAN;
}

/* Every composition the run needs, in the order they are evaluated: the
 * teacher, then per environment its baselines and tests, then the
 * validation set. */
static lego_status plan_compositions(const block_library *lib, const profile_result *r, int n_random,
                                     uint64_t seed, cache *c, int *checks, const char **labels,
                                     int *n_checks)
{
    int B = lib->n_blocks, S = lib->n_sparsities;
    int *ch = malloc(sizeof *ch * (size_t)(B ? B : 1));
    if (!ch)
        return nomem();
    int idx;
    lego_status st = lego_ok();
    for (int b = 0; b < B; b++)
        ch[b] = 0;
    st = cache_add(c, ch, &idx); /* the teacher, first */
    for (int e = 0; st.code == LEGO_OK && e < r->n_envs; e++) {
        for (int b = 0; st.code == LEGO_OK && b < B; b++) {
            for (int k = 0; k < B; k++)
                ch[k] = r->envs[e];
            for (int s = 0; st.code == LEGO_OK && s < S; s++) {
                ch[b] = s; /* s = 0 is the baseline */
                if (s == 0 || S > 1)
                    st = cache_add(c, ch, &idx);
            }
        }
    }
    *n_checks = 0;
    if (st.code == LEGO_OK && S > 1 && B > 0) {
        int fixed[2] = {1, S - 1};
        for (int f = 0; f < 2 && st.code == LEGO_OK; f++) {
            if (f == 1 && S - 1 == 1)
                break; /* all-second is all-last */
            for (int b = 0; b < B; b++)
                ch[b] = fixed[f];
            st = cache_add(c, ch, &idx);
            labels[*n_checks] = f == 0 ? "all-second" : "all-last";
            checks[(*n_checks)++] = idx;
        }
        rng g;
        rng_seed(&g, rng_mix(seed, 0x70726f66ull));
        /* distinct random mixes, not the teacher nor one already checked */
        for (int tries = 0; st.code == LEGO_OK && tries < 50 * (n_random + 1) &&
                            *n_checks < 2 + n_random; tries++) {
            bool all0 = true;
            for (int b = 0; b < B; b++) {
                ch[b] = (int)rng_below(&g, (uint64_t)S);
                all0 &= ch[b] == 0;
            }
            bool dup = all0;
            for (int k = 0; k < *n_checks && !dup; k++)
                dup = memcmp(c->items[checks[k]].choice, ch, sizeof *ch * (size_t)B) == 0;
            if (dup)
                continue;
            st = cache_add(c, ch, &idx);
            labels[*n_checks] = "random";
            checks[(*n_checks)++] = idx;
        }
    }
    free(ch);
    return st;
}

static lego_status run(block_library *lib, const profile_options *opt, profile_result *r, cache *c,
                       evaluator *e)
{
    int B = lib->n_blocks, S = lib->n_sparsities;
    if (S < 1 || lib->sparsities[0] != 0)
        return lego_error(LEGO_ERR_FORMAT, "%s: the library's sparsities must start with 0 (the original blocks)",
                          lib->dir);
    const lego_task *t = opt->task ? opt->task : &lego_task_classification;
    int n_random = opt->n_random < 0 ? DEFAULT_RANDOM : opt->n_random;
    r->n_blocks = B, r->n_sparsities = S;
    r->n_envs = profile_environments(S, r->envs);
    r->delta = calloc((size_t)B * (size_t)S + 1, sizeof *r->delta);
    int *checks = malloc(sizeof *checks * (size_t)(n_random + 2));
    const char **labels = malloc(sizeof *labels * (size_t)(n_random + 2));
    if (!r->delta || !checks || !labels) {
        free(checks), free((void *)labels);
        return nomem();
    }
    lego_status st = plan_compositions(lib, r, n_random, opt->seed, c, checks, labels, &r->n_checks);

    /* the teacher first: it opens the task (every composition has its input
     * and output shapes) and is the first measurement */
    lego_graph teacher;
    bool have_teacher = false;
    if (st.code == LEGO_OK) {
        st = compose_model(lib, c->items[0].choice, &teacher);
        have_teacher = st.code == LEGO_OK;
    }
    if (st.code == LEGO_OK) {
        int fixed = task_fixed_batch(&teacher);
        e->batch = fixed ? fixed : opt->batch > 0 ? opt->batch : DEFAULT_BATCH;
        st = task_open(t, opt->data, &teacher, e->batch, -1, opt->max_test > 0 ? opt->max_test : 0,
                       opt->seed, &e->task);
    }
    if (st.code == LEGO_OK && task_batches(e->task, SPLIT_TEST) == 0)
        st = lego_error(LEGO_ERR_ARG, "%s: the test split is empty; nothing to measure accuracy on", opt->data);
    if (st.code == LEGO_OK) {
        const lego_tensor *x = &teacher.values[teacher.inputs[0]].t;
        int64_t dims[4] = {e->batch, x->dims[1], x->dims[2], x->dims[3]};
        tensor_set_shape(&e->x, LEGO_F32, 4, dims);
        st = tensor_alloc(&e->x);
    }
    if (st.code == LEGO_OK)
        st = eval_graph(e, &teacher, &c->items[0].accuracy);
    if (have_teacher)
        graph_free(&teacher);
    if (st.code == LEGO_OK) {
        c->done[0] = true;
        r->test_samples = e->samples;
        r->batch = e->batch;
        if (opt->progress && !opt->progress(opt->ctx, 1, c->n, c->items[0].accuracy))
            st = lego_error(LEGO_ERR_ARG, "interrupted");
    }
    for (int i = 1; st.code == LEGO_OK && i < c->n; i++) {
        st = eval_choice(e, c->items[i].choice, &c->items[i].accuracy);
        if (st.code)
            break;
        c->done[i] = true;
        if (opt->progress && !opt->progress(opt->ctx, i + 1, c->n, c->items[i].accuracy))
            st = lego_error(LEGO_ERR_ARG, "interrupted");
    }

    if (st.code == LEGO_OK) {
        r->teacher_accuracy = c->items[0].accuracy;
        int *ch = malloc(sizeof *ch * (size_t)(B ? B : 1));
        if (!ch)
            st = nomem();
        for (int b = 0; st.code == LEGO_OK && b < B; b++) {
            for (int s = 1; s < S; s++) {
                double sum = 0;
                for (int k = 0; k < r->n_envs; k++) {
                    for (int j = 0; j < B; j++)
                        ch[j] = r->envs[k];
                    ch[b] = 0;
                    double base = acc_of(c, ch);
                    ch[b] = s;
                    sum += base - acc_of(c, ch);
                }
                r->delta[b * S + s] = sum / r->n_envs;
            }
        }
        free(ch);
        r->checks = calloc((size_t)(r->n_checks ? r->n_checks : 1), sizeof *r->checks);
        if (st.code == LEGO_OK && !r->checks)
            st = nomem();
        double err_sum = 0;
        for (int k = 0; st.code == LEGO_OK && k < r->n_checks; k++) {
            const profile_composition *pc = &c->items[checks[k]];
            double est = r->teacher_accuracy;
            for (int b = 0; b < B; b++)
                est -= r->delta[b * S + pc->choice[b]];
            r->checks[k] = (profile_check){checks[k], labels[k], est, pc->accuracy};
            double err = fabs(est - pc->accuracy);
            err_sum += err;
            if (err > r->max_error)
                r->max_error = err;
        }
        r->mean_error = r->n_checks ? err_sum / r->n_checks : 0;
    }
    free(checks);
    free((void *)labels);
    return st;
}

lego_status profile_library(block_library *lib, const profile_options *opt, profile_result *res)
{
    result_init(res);
    if (!opt->data)
        return lego_error(LEGO_ERR_ARG, "profiling needs a dataset");
    double t0 = now_seconds();
    cache c = {lib->n_blocks, NULL, NULL, 0, 0};
    evaluator e;
    memset(&e, 0, sizeof e);
    e.lib = lib;
    lego_status st = run(lib, opt, res, &c, &e);
    task_close(e.task);
    tensor_release(&e.x);
    res->compositions = c.items;
    res->n_compositions = c.n;
    free(c.done);
    res->seconds = now_seconds() - t0;
    if (st.code)
        profile_result_free(res);
    return st;
}

/* ---- the manifest ------------------------------------------------------ */

static cJSON *choice_json(const block_library *lib, const int *choice)
{
    cJSON *a = cJSON_CreateArray();
    for (int b = 0; a && b < lib->n_blocks; b++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(lib->sparsities[choice[b]]));
    return a;
}

cJSON *profile_json(const block_library *lib, const profile_options *opt, const profile_result *r)
{
    const lego_task *t = opt->task ? opt->task : &lego_task_classification;
    cJSON *p = cJSON_CreateObject();
    if (!p)
        return NULL;
    cJSON_AddStringToObject(p, "task", t->name);
    cJSON_AddStringToObject(p, "metric", t->metric ? t->metric : t->name);
    cJSON_AddStringToObject(p, "dataset", opt->data);
    cJSON_AddNumberToObject(p, "test_samples", (double)r->test_samples);
    cJSON_AddStringToObject(p, "test_subset", opt->max_test > 0 ? "first samples (--max-test)" : "full test split");
    if (opt->max_test > 0)
        cJSON_AddNumberToObject(p, "max_test", (double)opt->max_test);
    else
        cJSON_AddNullToObject(p, "max_test");
    cJSON_AddNumberToObject(p, "batch", r->batch);
    cJSON_AddNumberToObject(p, "teacher_accuracy", r->teacher_accuracy);
    cJSON *env = cJSON_AddArrayToObject(p, "environments");
    for (int k = 0; env && k < r->n_envs; k++)
        cJSON_AddItemToArray(env, cJSON_CreateNumber(lib->sparsities[r->envs[k]]));
    cJSON_AddNumberToObject(p, "compositions_evaluated", r->n_compositions);
    cJSON_AddNumberToObject(p, "seconds", r->seconds);
    cJSON *comp = cJSON_AddArrayToObject(p, "compositions");
    for (int i = 0; comp && i < r->n_compositions; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "choice", choice_json(lib, r->compositions[i].choice));
        cJSON_AddNumberToObject(o, "accuracy", r->compositions[i].accuracy);
        cJSON_AddItemToArray(comp, o);
    }
    cJSON *val = cJSON_AddArrayToObject(p, "validation");
    for (int k = 0; val && k < r->n_checks; k++) {
        const profile_check *ck = &r->checks[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", ck->label);
        cJSON_AddItemToObject(o, "choice", choice_json(lib, r->compositions[ck->composition].choice));
        cJSON_AddNumberToObject(o, "estimated", ck->estimated);
        cJSON_AddNumberToObject(o, "measured", ck->measured);
        cJSON_AddItemToArray(val, o);
    }
    cJSON_AddNumberToObject(p, "validation_max_error", r->max_error);
    cJSON_AddNumberToObject(p, "validation_mean_error", r->mean_error);
    return p;
}

lego_status profile_store(block_library *lib, const profile_options *opt, const profile_result *r)
{
    if (r->n_blocks != lib->n_blocks || r->n_sparsities != lib->n_sparsities)
        return lego_error(LEGO_ERR_INTERNAL, "the profile does not match the library %s", lib->dir);
    for (int b = 0; b < lib->n_blocks; b++)
        for (int s = 0; s < lib->n_sparsities; s++)
            LEGO_TRY(library_set_number(library_descendant_json(lib, b, s), "accuracy_loss",
                                        r->delta[b * r->n_sparsities + s]));
    cJSON *p = profile_json(lib, opt, r);
    if (!p)
        return nomem();
    if (cJSON_GetObjectItemCaseSensitive(lib->manifest, "profile"))
        cJSON_ReplaceItemInObjectCaseSensitive(lib->manifest, "profile", p);
    else
        cJSON_AddItemToObject(lib->manifest, "profile", p);
    return library_save(lib);
}
