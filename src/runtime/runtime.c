/* runtime.c - the lego_runtime_* calls: estimates from the manifest, exact
 * decisions, the descendant cache, live switching and online calibration
 * (runtime.h and include/legodnn.h describe the design). */
#include "runtime.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/tensor.h"
#include "blockexec.h"

static lego_status nomem(void) { return lego_error(LEGO_ERR_NOMEM, "out of memory in the runtime"); }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- estimates ---------------------------------------------------------------- */

void rt_estimates_free(rt_estimates *e)
{
    for (int b = 0; b < e->n_blocks; b++) {
        if (e->acc_loss)
            free(e->acc_loss[b]);
        if (e->latency)
            free(e->latency[b]);
        if (e->memory)
            free(e->memory[b]);
    }
    free(e->acc_loss), free(e->latency), free(e->memory), free(e->n_options);
    memset(e, 0, sizeof *e);
}

static void latency_hint(const block_library *lib, int threads, int64_t batch, char *buf, size_t len)
{
    if (batch != 1)
        snprintf(buf, len, "run `legodnn latency %s --threads %d --batch %lld` on this machine first", lib->dir,
                 threads, (long long)batch);
    else
        snprintf(buf, len, "run `legodnn latency %s --threads %d` on this machine first", lib->dir, threads);
}

static lego_status no_profile(const block_library *lib, const char *profile, int threads, int64_t batch)
{
    char hint[600], have[512] = "";
    latency_hint(lib, threads, batch, hint, sizeof hint);
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(lib->manifest, "devices");
    size_t pos = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, devs)
    {
        if (d->string && pos < sizeof have - 8)
            pos += (size_t)snprintf(have + pos, sizeof have - pos, "%s'%s'", pos ? ", " : "", d->string);
    }
    if (pos)
        return lego_error(LEGO_ERR_ARG, "%s has no latency for this device ('%s'; it has %s): %s", lib->dir, profile,
                          have, hint);
    return lego_error(LEGO_ERR_ARG, "%s has no latency measurements ('%s' needed): %s", lib->dir, profile, hint);
}

static bool json_number(const cJSON *o, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return false;
    *out = v->valuedouble;
    return true;
}

static lego_status estimates_in(block_library *lib, const char *profile, int threads, int64_t batch,
                                rt_estimates *e)
{
    snprintf(e->profile, sizeof e->profile, "%s", profile);
    e->teacher_accuracy = NAN;
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(lib->manifest, "devices"),
                                                        profile);
    if (!cJSON_IsObject(dev))
        return no_profile(lib, profile, threads, batch);
    char hint[600];
    latency_hint(lib, threads, batch, hint, sizeof hint);
    double frame_arena = 0, frame_weights = 0;
    if (!json_number(dev, "frame_ms", &e->frame_ms) || !json_number(dev, "frame_arena_bytes", &frame_arena) ||
        !json_number(dev, "frame_weight_bytes", &frame_weights) || e->frame_ms < 0 || frame_arena < 0 ||
        frame_weights < 0)
        return lego_error(LEGO_ERR_FORMAT,
                          "%s/manifest.json: devices['%s'] lacks frame_ms, frame_arena_bytes or frame_weight_bytes "
                          "(an older legodnn measured it): %s",
                          lib->dir, profile, hint);
    e->frame_arena_bytes = (int64_t)frame_arena;
    e->frame_weight_bytes = (int64_t)frame_weights;
    if (!json_number(dev, "teacher_ms", &e->teacher_ms))
        e->teacher_ms = NAN;
    const cJSON *prof = cJSON_GetObjectItemCaseSensitive(lib->manifest, "profile");
    double ta;
    if (json_number(prof, "teacher_accuracy", &ta))
        e->teacher_accuracy = ta;
    const cJSON *metric = cJSON_GetObjectItemCaseSensitive(prof, "metric");
    if (cJSON_IsString(metric))
        snprintf(e->metric, sizeof e->metric, "%s", metric->valuestring);
    int nb = lib->n_blocks;
    if (nb < 1 || nb > LEGO_MAX_BLOCKS)
        return lego_error(LEGO_ERR_UNSUPPORTED, "%s: %d blocks; the runtime handles 1 to %d", lib->dir, nb,
                          LEGO_MAX_BLOCKS);
    e->n_blocks = nb;
    e->n_options = calloc((size_t)nb, sizeof *e->n_options);
    e->acc_loss = calloc((size_t)nb, sizeof *e->acc_loss);
    e->latency = calloc((size_t)nb, sizeof *e->latency);
    e->memory = calloc((size_t)nb, sizeof *e->memory);
    if (!e->n_options || !e->acc_loss || !e->latency || !e->memory)
        return nomem();
    for (int b = 0; b < nb; b++) {
        const lib_block *bl = &lib->blocks[b];
        int nd = bl->n_desc;
        e->n_options[b] = nd;
        e->acc_loss[b] = calloc((size_t)nd, sizeof **e->acc_loss);
        e->latency[b] = calloc((size_t)nd, sizeof **e->latency);
        e->memory[b] = calloc((size_t)nd, sizeof **e->memory);
        if (!e->acc_loss[b] || !e->latency[b] || !e->memory[b])
            return nomem();
        for (int d = 0; d < nd; d++) {
            const cJSON *dj = library_descendant_json(lib, b, d);
            const cJSON *lat = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(dj, "latency"),
                                                                profile);
            double med, arena, weights;
            if (!json_number(lat, "median_ms", &med) || !json_number(lat, "arena_bytes", &arena) ||
                !json_number(lat, "weight_bytes", &weights) || med < 0 || arena < 0 || weights < 0)
                return lego_error(LEGO_ERR_FORMAT,
                                  "%s: block %d at sparsity %g has no latency, arena_bytes or weight_bytes for this "
                                  "device: %s",
                                  lib->dir, b, bl->desc[d].sparsity, hint);
            e->latency[b][d] = med;
            if ((int64_t)arena > e->block_arena_bytes)
                e->block_arena_bytes = (int64_t)arena;
            e->memory[b][d] = (int64_t)weights;
        }
    }
    for (int b = 0; b < nb; b++) {
        const lib_block *bl = &lib->blocks[b];
        for (int d = 0; d < bl->n_desc; d++) {
            double a;
            if (!json_number(library_descendant_json(lib, b, d), "accuracy_loss", &a))
                return lego_error(LEGO_ERR_ARG,
                                  "%s: block %d at sparsity %g has no accuracy_loss: run `legodnn profile %s --data "
                                  "DATASET` first",
                                  lib->dir, b, bl->desc[d].sparsity, lib->dir);
            e->acc_loss[b][d] = a;
        }
    }
    e->problem = (scale_problem){.n_blocks = nb,
                                 .n_options = e->n_options,
                                 .acc_loss = (const double *const *)e->acc_loss,
                                 .latency = (const double *const *)e->latency,
                                 .memory = (const int64_t *const *)e->memory,
                                 .base_latency = e->frame_ms,
                                 .base_memory = e->frame_weight_bytes + e->frame_arena_bytes + e->block_arena_bytes};
    return lego_ok();
}

lego_status rt_estimates_load(block_library *lib, const char *profile, int threads, int64_t batch, rt_estimates *out)
{
    memset(out, 0, sizeof *out);
    lego_status st = estimates_in(lib, profile, threads, batch, out);
    if (st.code)
        rt_estimates_free(out);
    return st;
}

lego_status rt_check_budget(double latency_ms, int64_t memory_bytes, double *latency_out)
{
    if (isnan(latency_ms) || latency_ms <= 0)
        return lego_error(LEGO_ERR_ARG, "latency budget %g ms: give a positive number of milliseconds", latency_ms);
    if (isfinite(latency_ms) && latency_ms > 1e9)
        return lego_error(LEGO_ERR_ARG, "latency budget %g ms is absurd (over 11 days); use INFINITY for no limit",
                          latency_ms);
    if (memory_bytes <= 0)
        return lego_error(LEGO_ERR_ARG, "memory budget %lld bytes: give a positive number of bytes",
                          (long long)memory_bytes);
    if (memory_bytes != INT64_MAX && memory_bytes > ((int64_t)1 << 60))
        return lego_error(LEGO_ERR_ARG, "memory budget %lld bytes is absurd (over 2^60); use INT64_MAX for no limit",
                          (long long)memory_bytes);
    *latency_out = isfinite(latency_ms) ? latency_ms : DBL_MAX;
    return lego_ok();
}

void rt_fill_choice(const block_library *lib, const rt_estimates *e, const scale_choice *c, double ratio,
                    lego_choice *out)
{
    out->n_blocks = e->n_blocks;
    for (int b = 0; b < e->n_blocks; b++) {
        out->option[b] = c->option[b];
        out->sparsity[b] = lib->blocks[b].desc[c->option[b]].sparsity;
    }
    out->accuracy_loss = c->acc_loss;
    out->accuracy = e->teacher_accuracy - c->acc_loss;
    out->latency_ms = c->latency * ratio;
    out->memory_bytes = c->memory;
    out->feasible = c->feasible;
    out->budget_scale = c->budget_scale;
    out->latency_excess_ms = c->latency_excess * ratio;
    out->memory_excess_bytes = c->memory_excess;
}

/* ---- the runtime ------------------------------------------------------------------ */

#define CALIB_WINDOW 15
#define CALIB_MIN 3
#define CALIB_LO 0.2
#define CALIB_HI 5.0

typedef struct cache_entry {
    bx_desc *d;          /* NULL when not cached */
    int holds;           /* compositions holding it */
    uint64_t last_used;
} cache_entry;

typedef struct composition {
    uint64_t id;
    int refs;            /* the runtime's "current" + runs using it */
    int *choice;
    const bx_desc **desc;
    double nominal_ms;   /* uncalibrated latency estimate */
    size_t block_arena;
    int max_values;
} composition;

struct lego_runtime {
    block_library lib;
    bool lib_open;
    bx_frame frame;
    rt_estimates est;
    scale_prepared *sp;
    lego_runtime_options opt;
    int threads;
    int64_t batch;
    lego_tensor *in_shapes, *out_shapes;
    double teacher_ms;      /* the teacher's nominal estimates: for runs before any */
    int64_t teacher_memory; /* decision, and for lego_runtime_stats */

    pthread_mutex_t lock;   /* everything below */
    pthread_mutex_t decide; /* one decision at a time: sp, lib, cache inserts */
    cache_entry **cache;    /* [b][s] */
    int64_t cache_bytes;
    int cache_entries;
    uint64_t tick, next_id;
    composition *current;
    lego_choice current_choice;
    bx_ctx **idle;          /* run contexts not in use */
    int n_idle, n_ctx;
    int64_t arena_bytes;
    double ratios[CALIB_WINDOW];
    int n_ratios, ratio_pos;
    double ratio;
    uint64_t runs, decisions, switches, loads, evictions;
    double switch_ms, load_ms, last_switch_ms, last_solve_us;
    int *scratch;           /* decision scratch: n_blocks ints (under decide) */
};

static void comp_free(composition *c)
{
    if (!c)
        return;
    free(c->choice);
    free(c->desc);
    free(c);
}

/* Drop one reference; at zero the composition goes and its descendants
 * become evictable. Under rt->lock. */
static void release_locked(lego_runtime *rt, composition *c)
{
    if (!c || --c->refs > 0)
        return;
    for (int b = 0; b < rt->frame.n_blocks; b++) {
        cache_entry *e = &rt->cache[b][c->choice[b]];
        e->holds--;
        e->last_used = ++rt->tick;
    }
    comp_free(c);
}

/* Unheld cached descendants, least recently used first, out of the cache
 * until it fits its cap (extra bytes are about to come in); they go to
 * victims (freed by the caller outside the lock). Under rt->lock. */
static int evict_locked(lego_runtime *rt, int64_t extra, bx_desc **victims, int max_victims)
{
    int n = 0;
    int64_t cap = rt->opt.cache_bytes;
    if (cap <= 0)
        return 0;
    while (rt->cache_bytes + extra > cap && n < max_victims) {
        cache_entry *best = NULL;
        for (int b = 0; b < rt->frame.n_blocks; b++)
            for (int s = 0; s < rt->est.n_options[b]; s++) {
                cache_entry *e = &rt->cache[b][s];
                if (e->d && e->holds == 0 && (!best || e->last_used < best->last_used))
                    best = e;
            }
        if (!best)
            break;
        victims[n++] = best->d;
        rt->cache_bytes -= best->d->weight_bytes;
        rt->cache_entries--;
        rt->evictions++;
        best->d = NULL;
    }
    return n;
}

static void free_victims(bx_desc **victims, int n)
{
    for (int i = 0; i < n; i++)
        bx_desc_free(victims[i]);
}

static double calibrated_locked(const lego_runtime *rt)
{
    if (rt->opt.fixed_latency || rt->n_ratios < CALIB_MIN)
        return 1.0;
    return rt->ratio;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void calibrate_locked(lego_runtime *rt, double measured_ms, double nominal_ms)
{
    if (rt->opt.fixed_latency || !(nominal_ms > 0) || !(measured_ms > 0))
        return;
    rt->ratios[rt->ratio_pos] = measured_ms / nominal_ms;
    rt->ratio_pos = (rt->ratio_pos + 1) % CALIB_WINDOW;
    if (rt->n_ratios < CALIB_WINDOW)
        rt->n_ratios++;
    double v[CALIB_WINDOW];
    memcpy(v, rt->ratios, sizeof v);
    qsort(v, (size_t)rt->n_ratios, sizeof *v, cmp_double);
    int n = rt->n_ratios;
    double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    rt->ratio = med < CALIB_LO ? CALIB_LO : med > CALIB_HI ? CALIB_HI : med;
}

/* Make choice[] current. nominal_ms is its uncalibrated latency. Under
 * rt->decide. */
static lego_status apply(lego_runtime *rt, const int *choice, double nominal_ms, int *switched, int *loaded,
                         double *load_ms)
{
    int nb = rt->frame.n_blocks;
    *switched = *loaded = 0;
    *load_ms = 0;
    composition *old = rt->current; /* only decisions change it, and we hold decide */
    if (old) {
        bool same = true;
        for (int b = 0; b < nb && same; b++)
            same = old->choice[b] == choice[b];
        if (same)
            return lego_ok();
    }
    composition *c = calloc(1, sizeof *c);
    if (c) {
        c->choice = malloc(sizeof *c->choice * (size_t)nb);
        c->desc = calloc((size_t)nb, sizeof *c->desc);
    }
    if (!c || !c->choice || !c->desc) {
        comp_free(c);
        return nomem();
    }
    memcpy(c->choice, choice, sizeof *choice * (size_t)nb);
    c->refs = 1;
    c->nominal_ms = nominal_ms;
    bool *held = calloc((size_t)nb, sizeof *held);
    bx_desc **victims = malloc(sizeof *victims * 64);
    if (!held || !victims) {
        free(held), free(victims);
        comp_free(c);
        return nomem();
    }
    pthread_mutex_lock(&rt->lock);
    for (int b = 0; b < nb; b++) {
        cache_entry *e = &rt->cache[b][choice[b]];
        if (e->d) {
            e->holds++;
            e->last_used = ++rt->tick;
            c->desc[b] = e->d;
            held[b] = true;
        }
    }
    pthread_mutex_unlock(&rt->lock);
    lego_status st = lego_ok();
    for (int b = 0; b < nb && st.code == LEGO_OK; b++) {
        if (held[b])
            continue;
        pthread_mutex_lock(&rt->lock);
        int nv = evict_locked(rt, rt->est.memory[b][choice[b]], victims, 64);
        pthread_mutex_unlock(&rt->lock);
        free_victims(victims, nv);
        double t0 = now_ms();
        bx_desc *d;
        st = bx_desc_open(&rt->lib, &rt->frame, b, choice[b], &d);
        if (st.code)
            break;
        bx_desc_release_weights(d); /* it only runs: its kernels' copies serve */
        *load_ms += now_ms() - t0;
        (*loaded)++;
        pthread_mutex_lock(&rt->lock);
        cache_entry *e = &rt->cache[b][choice[b]];
        e->d = d;
        e->holds = 1;
        e->last_used = ++rt->tick;
        rt->cache_bytes += d->weight_bytes;
        rt->cache_entries++;
        rt->loads++;
        pthread_mutex_unlock(&rt->lock);
        c->desc[b] = d;
        held[b] = true;
    }
    if (st.code) {
        pthread_mutex_lock(&rt->lock);
        for (int b = 0; b < nb; b++) {
            if (held[b]) {
                rt->cache[b][choice[b]].holds--;
            }
        }
        pthread_mutex_unlock(&rt->lock);
        free(held), free(victims);
        comp_free(c);
        return st;
    }
    for (int b = 0; b < nb; b++) {
        if (c->desc[b]->arena_bytes > c->block_arena)
            c->block_arena = c->desc[b]->arena_bytes;
        if (c->desc[b]->n_values > c->max_values)
            c->max_values = c->desc[b]->n_values;
        if (!old || old->choice[b] != choice[b])
            (*switched)++;
    }
    pthread_mutex_lock(&rt->lock);
    c->id = ++rt->next_id;
    rt->current = c;
    release_locked(rt, old);
    int nv = evict_locked(rt, 0, victims, 64);
    pthread_mutex_unlock(&rt->lock);
    free_victims(victims, nv);
    free(held), free(victims);
    return lego_ok();
}

static lego_status open_in(lego_runtime *rt, const char *dir)
{
    LEGO_TRY(library_open(dir, &rt->lib));
    rt->lib_open = true;
    char profile[LATENCY_PROFILE_MAX];
    device_profile_key(rt->threads, rt->batch, profile, sizeof profile);
    LEGO_TRY(rt_estimates_load(&rt->lib, profile, rt->threads, rt->batch, &rt->est));
    LEGO_TRY(scale_prepare(&rt->est.problem, &rt->sp));
    LEGO_TRY(bx_frame_open(&rt->lib, rt->batch, &rt->frame));
    bx_frame_release_weights(&rt->frame);
    const lego_graph *g = rt->frame.g;
    int nb = rt->frame.n_blocks;
    rt->in_shapes = calloc((size_t)rt->frame.n_model_inputs, sizeof *rt->in_shapes);
    rt->out_shapes = calloc((size_t)rt->frame.n_model_outputs, sizeof *rt->out_shapes);
    rt->cache = calloc((size_t)nb, sizeof *rt->cache);
    rt->scratch = calloc((size_t)nb, sizeof *rt->scratch);
    if (!rt->in_shapes || !rt->out_shapes || !rt->cache || !rt->scratch)
        return nomem();
    for (int i = 0; i < rt->frame.n_model_inputs; i++) {
        rt->in_shapes[i] = rt->frame.vt[g->inputs[i]];
        rt->in_shapes[i].data = NULL;
    }
    for (int i = 0; i < rt->frame.n_model_outputs; i++) {
        rt->out_shapes[i] = rt->frame.vt[g->outputs[i]];
        rt->out_shapes[i].data = NULL;
    }
    for (int b = 0; b < nb; b++) {
        rt->cache[b] = calloc((size_t)rt->est.n_options[b], sizeof **rt->cache);
        if (!rt->cache[b])
            return nomem();
    }
    /* The teacher is the composition until the first decision, but nothing
     * of it is loaded yet: a device that sets a budget before its first run
     * never holds the teacher's weights (the peak would be teacher + choice). */
    double lat;
    int64_t mem;
    double loss;
    LEGO_TRY(scale_cost(&rt->est.problem, rt->scratch, &loss, &lat, &mem));
    scale_choice sc = {.option = rt->scratch, .acc_loss = loss, .latency = lat, .memory = mem, .feasible = true,
                       .budget_scale = 1};
    rt_fill_choice(&rt->lib, &rt->est, &sc, 1.0, &rt->current_choice);
    rt->teacher_ms = lat;
    rt->teacher_memory = mem;
    return lego_ok();
}

/* A run before any decision: load the teacher (once, whoever comes first). */
static lego_status load_teacher(lego_runtime *rt)
{
    pthread_mutex_lock(&rt->decide);
    lego_status st = lego_ok();
    pthread_mutex_lock(&rt->lock);
    bool have = rt->current != NULL;
    pthread_mutex_unlock(&rt->lock);
    if (!have) {
        for (int b = 0; b < rt->frame.n_blocks; b++)
            rt->scratch[b] = 0;
        int switched, loaded;
        double load_ms;
        double t0 = now_ms();
        st = apply(rt, rt->scratch, rt->teacher_ms, &switched, &loaded, &load_ms);
        if (st.code == LEGO_OK) {
            pthread_mutex_lock(&rt->lock);
            rt->load_ms += load_ms;
            rt->switch_ms += now_ms() - t0;
            rt->current_choice.composition = rt->current->id;
            pthread_mutex_unlock(&rt->lock);
        }
    }
    pthread_mutex_unlock(&rt->decide);
    return st;
}

lego_status lego_runtime_open(const char *lib_dir, const lego_runtime_options *opt, lego_runtime **out)
{
    *out = NULL;
    if (!lib_dir)
        return lego_error(LEGO_ERR_ARG, "no library directory given");
    lego_runtime_options o = {0};
    if (opt)
        o = *opt;
    if (o.threads < 0 || o.threads > 1024)
        return lego_error(LEGO_ERR_ARG, "threads %d: give 1 to 1024, or 0 for the current count", o.threads);
    if (o.batch < 0 || o.batch > 65536)
        return lego_error(LEGO_ERR_ARG, "batch %lld: give 1 to 65536, or 0 for 1", (long long)o.batch);
    if (o.cache_bytes < 0)
        return lego_error(LEGO_ERR_ARG, "cache cap %lld bytes: give a positive cap, or 0 for none",
                          (long long)o.cache_bytes);
    lego_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return nomem();
    rt->opt = o;
    if (o.threads > 0)
        lego_set_num_threads(o.threads);
    rt->threads = lego_get_num_threads();
    rt->batch = o.batch ? o.batch : 1;
    rt->ratio = 1;
    pthread_mutex_init(&rt->lock, NULL);
    pthread_mutex_init(&rt->decide, NULL);
    lego_status st = open_in(rt, lib_dir);
    if (st.code) {
        lego_runtime_close(rt);
        return st;
    }
    *out = rt;
    return lego_ok();
}

void lego_runtime_close(lego_runtime *rt)
{
    if (!rt)
        return;
    if (rt->current) {
        rt->current->refs = 1;
        pthread_mutex_lock(&rt->lock);
        release_locked(rt, rt->current);
        pthread_mutex_unlock(&rt->lock);
    }
    for (int b = 0; rt->cache && b < rt->frame.n_blocks; b++) {
        for (int s = 0; rt->cache[b] && s < rt->est.n_options[b]; s++)
            bx_desc_free(rt->cache[b][s].d);
        free(rt->cache[b]);
    }
    free(rt->cache);
    for (int i = 0; i < rt->n_idle; i++) {
        bx_ctx_free(rt->idle[i]);
        free(rt->idle[i]);
    }
    free(rt->idle);
    free(rt->scratch);
    free(rt->in_shapes), free(rt->out_shapes);
    scale_prepared_free(rt->sp);
    rt_estimates_free(&rt->est);
    bx_frame_free(&rt->frame);
    if (rt->lib_open)
        library_free(&rt->lib);
    pthread_mutex_destroy(&rt->lock);
    pthread_mutex_destroy(&rt->decide);
    free(rt);
}

lego_status lego_runtime_set_budget(lego_runtime *rt, double latency_ms, int64_t memory_bytes, lego_choice *out)
{
    double budget;
    LEGO_TRY(rt_check_budget(latency_ms, memory_bytes, &budget));
    pthread_mutex_lock(&rt->decide);
    pthread_mutex_lock(&rt->lock);
    double ratio = calibrated_locked(rt);
    pthread_mutex_unlock(&rt->lock);
    double nominal_budget = budget == DBL_MAX ? DBL_MAX : budget / ratio;
    scale_choice sc = {.option = rt->scratch};
    double t0 = now_ms();
    lego_status st = scale_solve_prepared(rt->sp, nominal_budget, memory_bytes, &sc);
    double solve_us = (now_ms() - t0) * 1e3;
    int switched = 0, loaded = 0;
    double load_ms = 0, switch_ms = 0;
    if (st.code == LEGO_OK) {
        double t1 = now_ms();
        st = apply(rt, sc.option, sc.latency, &switched, &loaded, &load_ms);
        switch_ms = now_ms() - t1;
    }
    lego_choice ch;
    if (st.code == LEGO_OK) {
        memset(&ch, 0, sizeof ch);
        rt_fill_choice(&rt->lib, &rt->est, &sc, ratio, &ch);
        /* excess against the caller's budget, in calibrated terms */
        ch.latency_excess_ms = ch.latency_ms > budget ? ch.latency_ms - budget : 0;
        ch.switched = switched;
        ch.loaded = loaded;
        ch.solve_us = solve_us;
        ch.switch_ms = switch_ms;
        pthread_mutex_lock(&rt->lock);
        ch.composition = rt->current->id;
        rt->current_choice = ch;
        rt->decisions++;
        rt->switches += (uint64_t)switched;
        rt->switch_ms += switch_ms;
        rt->load_ms += load_ms;
        rt->last_switch_ms = switch_ms;
        rt->last_solve_us = solve_us;
        pthread_mutex_unlock(&rt->lock);
        if (out)
            *out = ch;
    }
    pthread_mutex_unlock(&rt->decide);
    return st;
}

int lego_runtime_num_inputs(const lego_runtime *rt) { return rt->frame.n_model_inputs; }
int lego_runtime_num_outputs(const lego_runtime *rt) { return rt->frame.n_model_outputs; }
int lego_runtime_num_blocks(const lego_runtime *rt) { return rt->frame.n_blocks; }

const lego_tensor *lego_runtime_input(const lego_runtime *rt, int i)
{
    return i >= 0 && i < rt->frame.n_model_inputs ? &rt->in_shapes[i] : NULL;
}

const lego_tensor *lego_runtime_output(const lego_runtime *rt, int i)
{
    return i >= 0 && i < rt->frame.n_model_outputs ? &rt->out_shapes[i] : NULL;
}

lego_status lego_runtime_run(lego_runtime *rt, const lego_tensor *const *inputs, lego_tensor **outputs,
                             lego_run_info *info)
{
    if (!inputs || !outputs)
        return lego_error(LEGO_ERR_ARG, "lego_runtime_run needs input and output arrays");
    pthread_mutex_lock(&rt->lock);
    composition *c = rt->current;
    if (!c) {
        pthread_mutex_unlock(&rt->lock);
        LEGO_TRY(load_teacher(rt));
        pthread_mutex_lock(&rt->lock);
        c = rt->current;
    }
    c->refs++;
    double est = c->nominal_ms * calibrated_locked(rt);
    bx_ctx *ctx = rt->n_idle ? rt->idle[--rt->n_idle] : NULL;
    if (!ctx)
        rt->n_ctx++;
    pthread_mutex_unlock(&rt->lock);
    lego_status st = lego_ok();
    if (!ctx) {
        ctx = malloc(sizeof *ctx);
        if (ctx)
            bx_ctx_init(ctx);
        else
            st = nomem();
    }
    size_t before = ctx ? bx_ctx_bytes(ctx, &rt->frame) : 0;
    if (st.code == LEGO_OK)
        st = bx_ctx_reserve(ctx, &rt->frame, c->block_arena, c->max_values);
    size_t after = ctx ? bx_ctx_bytes(ctx, &rt->frame) : 0;
    double ms = 0;
    if (st.code == LEGO_OK) {
        double t0 = now_ms();
        st = bx_run(&rt->frame, c->desc, ctx, inputs, outputs, NULL);
        ms = now_ms() - t0;
    }
    if (info && st.code == LEGO_OK) {
        info->composition = c->id;
        info->latency_ms = ms;
        info->estimated_ms = est;
    }
    bx_desc *victims[64];
    pthread_mutex_lock(&rt->lock);
    rt->arena_bytes += (int64_t)after - (int64_t)before;
    if (ctx) {
        bx_ctx **idle = realloc(rt->idle, sizeof *idle * (size_t)(rt->n_idle + 1));
        if (idle) {
            rt->idle = idle;
            rt->idle[rt->n_idle++] = ctx;
        } else {
            rt->arena_bytes -= (int64_t)after;
            rt->n_ctx--;
            bx_ctx_free(ctx);
            free(ctx);
        }
    } else {
        rt->n_ctx--;
    }
    if (st.code == LEGO_OK) {
        rt->runs++;
        calibrate_locked(rt, ms, c->nominal_ms);
    }
    release_locked(rt, c);
    int nv = evict_locked(rt, 0, victims, 64);
    pthread_mutex_unlock(&rt->lock);
    free_victims(victims, nv);
    return st;
}

lego_status lego_runtime_stats_get(lego_runtime *rt, lego_runtime_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&rt->lock);
    out->runs = rt->runs;
    out->decisions = rt->decisions;
    out->switches = rt->switches;
    out->loads = rt->loads;
    out->evictions = rt->evictions;
    out->switch_ms = rt->switch_ms;
    out->load_ms = rt->load_ms;
    out->last_switch_ms = rt->last_switch_ms;
    out->last_solve_us = rt->last_solve_us;
    out->cache_bytes = rt->cache_bytes;
    out->cache_entries = rt->cache_entries;
    out->weights_bytes = rt->frame.weight_bytes;
    for (int b = 0; rt->current && b < rt->frame.n_blocks; b++)
        out->weights_bytes += rt->current->desc[b]->weight_bytes;
    out->arena_bytes = rt->arena_bytes;
    out->run_contexts = rt->n_ctx;
    out->calibration = calibrated_locked(rt);
    out->calibration_samples = rt->opt.fixed_latency ? 0 : rt->n_ratios;
    out->frame_ms = rt->est.frame_ms;
    out->teacher_latency_ms = rt->teacher_ms;
    out->teacher_memory_bytes = rt->teacher_memory;
    snprintf(out->profile, sizeof out->profile, "%s", rt->est.profile);
    out->current = rt->current_choice;
    double ratio = out->calibration;
    /* the current composition's latency at today's calibration */
    double nominal = rt->current ? rt->current->nominal_ms : rt->teacher_ms;
    pthread_mutex_unlock(&rt->lock);
    out->current.latency_ms = nominal * ratio;
    return lego_ok();
}
