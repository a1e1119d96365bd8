/* latency.c - timing descendants, frame and teacher; the device profile
 * (latency.h has the method and the manifest fields). */
#include "latency.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/progress.h"
#include "../core/rng.h"
#include "../core/tensor.h"
#include "../graph/exec.h"
#include "../ops/conv_dnnl.h"
#include "blockexec.h"

static lego_status nomem(void) { return lego_error(LEGO_ERR_NOMEM, "out of memory measuring latency"); }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- the device --------------------------------------------------------------- */

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    size_t k = 0;
    while (s[k] == ' ' || s[k] == '\t')
        k++;
    memmove(s, s + k, strlen(s + k) + 1);
}

void device_cpu_name(char *buf, size_t len)
{
    snprintf(buf, len, "unknown cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512], hw[256] = "";
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = 0;
        char *key = line;
        trim(key);
        char *val = colon + 1;
        trim(val);
        if (!*val)
            continue;
        if (strcmp(key, "model name") == 0) {
            snprintf(buf, len, "%s", val);
            found = true;
            break;
        }
        if (strcmp(key, "Hardware") == 0 && !hw[0])
            snprintf(hw, sizeof hw, "%s", val);
    }
    fclose(f);
    if (!found && hw[0])
        snprintf(buf, len, "%s", hw);
    /* '|' separates the key's fields */
    for (char *p = buf; *p; p++)
        if (*p == '|')
            *p = '/';
}

void device_profile_key(int threads, int64_t batch, char *buf, size_t len)
{
    char cpu[128];
    device_cpu_name(cpu, sizeof cpu);
    /* kernels or fusion switched off for a measurement time and hold
     * weights differently: their numbers go under their own key */
    const char *off = dnnl_conv_switched_off();
    snprintf(buf, len, "%s | %d thread%s | batch %lld%s%s%s", cpu, threads, threads == 1 ? "" : "s",
             (long long)batch, off[0] ? " | " : "", off, exec_fusion_enabled() ? "" : " | LEGO_FUSE=0");
}

/* ---- statistics ----------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median and interquartile range of v[0..n) (sorted in place). */
static void median_iqr(double *v, int n, double *median, double *iqr)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    *iqr = v[(3 * n) / 4] - v[n / 4];
}

/* ---- measuring -------------------------------------------------------------------- */

/* What one round-robin item is. */
typedef enum { IT_DESC, IT_COMP, IT_TEACHER } item_kind;

typedef struct item {
    item_kind kind;
    int b, d;       /* IT_DESC */
    int check;      /* IT_COMP: index into checks */
    int reps;       /* runs per sample */
    double *samples;
} item;

typedef struct meas {
    block_library *lib;
    const latency_options *opt;
    latency_result *r;
    bx_frame frame;
    bx_desc ***desc;       /* [b][d] */
    const bx_desc ***picks; /* [check][b] */
    bx_ctx ctx;
    float *x, *y;          /* a block's input and output */
    lego_tensor *in_t;     /* model inputs */
    const lego_tensor **in_p;
    lego_tensor **outs;
    double *block_ms;
    double *frame_samples; /* in-place frame times */
    int n_frame_samples;
    lego_graph teacher;
    exec_plan teacher_plan;
    bool have_teacher;
    item *items;
    int n_items;
} meas;

static void fill_random(rng *g, float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_normal(g);
}

static lego_status run_item(meas *m, item *it, double *ms)
{
    int nb = m->frame.n_blocks;
    double t0 = now_ms();
    lego_status st = lego_ok();
    for (int k = 0; k < it->reps && st.code == LEGO_OK; k++) {
        if (it->kind == IT_DESC) {
            st = bx_run_desc(m->desc[it->b][it->d], &m->ctx, m->x, m->y);
        } else if (it->kind == IT_COMP) {
            const bx_desc *const *pick = m->picks[it->check];
            double c0 = now_ms();
            st = bx_run(&m->frame, pick, &m->ctx, m->in_p, m->outs, m->block_ms);
            double total = now_ms() - c0;
            if (st.code == LEGO_OK) {
                double blocks = 0;
                for (int b = 0; b < nb; b++)
                    blocks += m->block_ms[b];
                double fr = total - blocks;
                m->frame_samples[m->n_frame_samples++] = fr > 0 ? fr : 0;
                for (int o = 0; o < m->frame.n_model_outputs; o++)
                    lego_tensor_free(m->outs[o]);
            }
        } else {
            st = exec_run(&m->teacher, &m->teacher_plan, m->in_p, m->outs);
            if (st.code == LEGO_OK)
                for (int o = 0; o < m->teacher.n_outputs; o++)
                    lego_tensor_free(m->outs[o]);
        }
    }
    *ms = (now_ms() - t0) / it->reps;
    return st;
}

static lego_status setup(meas *m)
{
    block_library *lib = m->lib;
    latency_result *r = m->r;
    const latency_options *opt = m->opt;
    LEGO_TRY(bx_frame_open(lib, opt->batch, &m->frame));
    int nb = lib->n_blocks;
    r->n_blocks = nb;
    r->n_desc = calloc((size_t)nb + 1, sizeof *r->n_desc);
    r->median = calloc((size_t)nb + 1, sizeof *r->median);
    r->iqr = calloc((size_t)nb + 1, sizeof *r->iqr);
    r->raw_median = calloc((size_t)nb + 1, sizeof *r->raw_median);
    r->flops = calloc((size_t)nb + 1, sizeof *r->flops);
    r->arena = calloc((size_t)nb + 1, sizeof *r->arena);
    r->weights = calloc((size_t)nb + 1, sizeof *r->weights);
    m->desc = calloc((size_t)nb + 1, sizeof *m->desc);
    m->block_ms = calloc((size_t)nb + 1, sizeof *m->block_ms);
    if (!r->n_desc || !r->median || !r->iqr || !r->raw_median || !r->flops || !r->arena || !r->weights || !m->desc ||
        !m->block_ms)
        return nomem();
    size_t max_arena = 0;
    int max_values = 0;
    int64_t max_elems = 1;
    for (int b = 0; b < nb; b++) {
        int nd = lib->blocks[b].n_desc;
        r->n_desc[b] = nd;
        r->median[b] = calloc((size_t)nd, sizeof **r->median);
        r->iqr[b] = calloc((size_t)nd, sizeof **r->iqr);
        r->raw_median[b] = calloc((size_t)nd, sizeof **r->raw_median);
        r->flops[b] = calloc((size_t)nd, sizeof **r->flops);
        r->arena[b] = calloc((size_t)nd, sizeof **r->arena);
        r->weights[b] = calloc((size_t)nd, sizeof **r->weights);
        m->desc[b] = calloc((size_t)nd, sizeof **m->desc);
        if (!r->median[b] || !r->iqr[b] || !r->raw_median[b] || !r->flops[b] || !r->arena[b] || !r->weights[b] ||
            !m->desc[b])
            return nomem();
        for (int d = 0; d < nd; d++) {
            LEGO_TRY(bx_desc_open(lib, &m->frame, b, d, &m->desc[b][d]));
            const bx_desc *x = m->desc[b][d];
            r->flops[b][d] = lib->blocks[b].desc[d].flops;
            r->arena[b][d] = x->arena_bytes;
            if (x->arena_bytes > max_arena)
                max_arena = x->arena_bytes;
            if (x->n_values > max_values)
                max_values = x->n_values;
        }
        int64_t ni = lego_tensor_numel(&m->frame.in_shape[b]), no = lego_tensor_numel(&m->frame.out_shape[b]);
        if (ni > max_elems)
            max_elems = ni;
        if (no > max_elems)
            max_elems = no;
    }
    r->frame_arena = m->frame.arena_bytes;
    LEGO_TRY(bx_ctx_reserve(&m->ctx, &m->frame, max_arena, max_values));
    rng g;
    rng_seed(&g, opt->seed);
    m->x = lego_aligned_alloc((size_t)max_elems * sizeof(float));
    m->y = lego_aligned_alloc((size_t)max_elems * sizeof(float));
    int ni = m->frame.n_model_inputs, no = m->frame.n_model_outputs;
    m->in_t = calloc((size_t)ni, sizeof *m->in_t);
    m->in_p = calloc((size_t)ni, sizeof *m->in_p);
    m->outs = calloc((size_t)no + (size_t)nb + 1, sizeof *m->outs);
    if (!m->x || !m->y || !m->in_t || !m->in_p || !m->outs)
        return nomem();
    fill_random(&g, m->x, max_elems);
    for (int i = 0; i < ni; i++) {
        const lego_tensor *want = &m->frame.vt[m->frame.g->inputs[i]];
        if (want->dtype != LEGO_F32)
            return lego_error(LEGO_ERR_UNSUPPORTED, "%s: input %d is %s; latency runs feed float32 inputs",
                              m->frame.g->name, i, dtype_name(want->dtype));
        tensor_set_shape(&m->in_t[i], LEGO_F32, want->rank, want->dims);
        LEGO_TRY(tensor_alloc(&m->in_t[i]));
        fill_random(&g, m->in_t[i].data, lego_tensor_numel(&m->in_t[i]));
        m->in_p[i] = &m->in_t[i];
    }
    /* the compositions to check */
    int n_checks = 2 + (opt->n_random > 0 ? opt->n_random : 0);
    r->checks = calloc((size_t)n_checks, sizeof *r->checks);
    if (!r->checks)
        return nomem();
    for (int c = 0; c < n_checks; c++) {
        latency_check *k = &r->checks[c];
        k->choice = calloc((size_t)nb + 1, sizeof *k->choice);
        if (!k->choice)
            return nomem();
        r->n_checks++;
        if (c == 0)
            snprintf(k->name, sizeof k->name, "all-s0");
        else if (c == 1)
            snprintf(k->name, sizeof k->name, "all-last");
        else
            snprintf(k->name, sizeof k->name, "random-%d", c - 1);
        for (int b = 0; b < nb; b++)
            k->choice[b] = c == 0 ? 0 : c == 1 ? r->n_desc[b] - 1 : (int)rng_below(&g, (uint64_t)r->n_desc[b]);
    }
    m->picks = calloc((size_t)n_checks, sizeof *m->picks);
    if (!m->picks)
        return nomem();
    for (int c = 0; c < n_checks; c++) {
        m->picks[c] = calloc((size_t)nb + 1, sizeof **m->picks);
        if (!m->picks[c])
            return nomem();
        for (int b = 0; b < nb; b++)
            m->picks[c][b] = m->desc[b][r->checks[c].choice[b]];
    }
    /* the teacher: the all-s0 composition as one graph */
    const bx_desc **s0 = calloc((size_t)nb + 1, sizeof *s0);
    if (!s0)
        return nomem();
    for (int b = 0; b < nb; b++)
        s0[b] = m->desc[b][0];
    lego_status st = bx_compose(&m->frame, s0, &m->teacher);
    free(s0);
    LEGO_TRY(st);
    st = exec_plan_build(&m->teacher, &m->teacher_plan);
    if (st.code) {
        graph_free(&m->teacher);
        return st;
    }
    m->have_teacher = true;
    exec_release_packed(&m->teacher, m->teacher_plan.steps, m->teacher_plan.n_steps, m->teacher_plan.st,
                        m->teacher_plan.vt);
    /* composed: from here on everything only runs, holding its weights as the
     * runtime does (runtime.c), which is what the manifest records */
    bx_frame_release_weights(&m->frame);
    r->frame_weights = m->frame.weight_bytes;
    for (int b = 0; b < nb; b++)
        for (int d = 0; d < r->n_desc[b]; d++) {
            bx_desc_release_weights(m->desc[b][d]);
            r->weights[b][d] = m->desc[b][d]->weight_bytes;
        }
    /* the items */
    int total = 0;
    for (int b = 0; b < nb; b++)
        total += r->n_desc[b];
    total += r->n_checks + 1;
    m->items = calloc((size_t)total, sizeof *m->items);
    m->frame_samples = calloc((size_t)opt->repeat * (size_t)r->n_checks + 1, sizeof *m->frame_samples);
    if (!m->items || !m->frame_samples)
        return nomem();
    for (int b = 0; b < nb; b++)
        for (int d = 0; d < r->n_desc[b]; d++)
            m->items[m->n_items++] = (item){.kind = IT_DESC, .b = b, .d = d, .reps = 1};
    for (int c = 0; c < r->n_checks; c++)
        m->items[m->n_items++] = (item){.kind = IT_COMP, .check = c, .reps = 1};
    m->items[m->n_items++] = (item){.kind = IT_TEACHER, .reps = 1};
    for (int i = 0; i < m->n_items; i++) {
        m->items[i].samples = calloc((size_t)opt->repeat, sizeof *m->items[i].samples);
        if (!m->items[i].samples)
            return nomem();
    }
    return lego_ok();
}

static void meas_free(meas *m)
{
    if (m->desc) {
        for (int b = 0; b < m->frame.n_blocks; b++) {
            for (int d = 0; m->desc[b] && d < m->r->n_desc[b]; d++)
                bx_desc_free(m->desc[b][d]);
            free(m->desc[b]);
        }
        free(m->desc);
    }
    for (int i = 0; m->in_t && i < m->frame.n_model_inputs; i++)
        tensor_release(&m->in_t[i]);
    for (int c = 0; m->picks && c < m->r->n_checks; c++)
        free(m->picks[c]);
    free(m->picks);
    free(m->in_t), free(m->in_p), free(m->outs), free(m->block_ms), free(m->frame_samples);
    lego_aligned_free(m->x);
    lego_aligned_free(m->y);
    for (int i = 0; m->items && i < m->n_items; i++)
        free(m->items[i].samples);
    free(m->items);
    if (m->have_teacher) {
        exec_plan_free(&m->teacher_plan);
        graph_free(&m->teacher);
    }
    bx_ctx_free(&m->ctx);
    bx_frame_free(&m->frame);
}

/* Noise rule: a descendant is never slower than one of its block with at
 * least its FLOPs. */
static void apply_rule(latency_result *r)
{
    for (int b = 0; b < r->n_blocks; b++) {
        for (int d = 0; d < r->n_desc[b]; d++) {
            double best = r->raw_median[b][d];
            for (int e = 0; e < r->n_desc[b]; e++)
                if (r->flops[b][e] >= r->flops[b][d] && r->raw_median[b][e] < best)
                    best = r->raw_median[b][e];
            r->median[b][d] = best;
        }
    }
}

static lego_status measure(meas *m)
{
    const latency_options *opt = m->opt;
    latency_result *r = m->r;
    double start = now_ms();
    progress bar;
    progress_start(&bar, "latency", opt->repeat + 1, opt->quiet);
    /* warm-up, and how many runs make one sample */
    for (int i = 0; i < m->n_items; i++) {
        item *it = &m->items[i];
        double ms = 0;
        for (int k = 0; k < 3; k++)
            LEGO_TRY(run_item(m, it, &ms));
        if (it->kind != IT_COMP) {
            int reps = ms > 0 ? (int)(opt->sample_ms / ms + 0.5) : 1000;
            it->reps = reps < 1 ? 1 : reps > 1000 ? 1000 : reps;
        }
    }
    m->n_frame_samples = 0;
    progress_update(&bar, 1, "warm-up done");
    for (int round = 0; round < opt->repeat; round++) {
        for (int i = 0; i < m->n_items; i++)
            LEGO_TRY(run_item(m, &m->items[i], &m->items[i].samples[round]));
        progress_update(&bar, round + 2, NULL);
    }
    for (int i = 0; i < m->n_items; i++) {
        item *it = &m->items[i];
        double med, iqr;
        median_iqr(it->samples, opt->repeat, &med, &iqr);
        if (it->kind == IT_DESC) {
            r->raw_median[it->b][it->d] = med;
            r->iqr[it->b][it->d] = iqr;
        } else if (it->kind == IT_COMP) {
            r->checks[it->check].measured_ms = med;
            r->checks[it->check].iqr_ms = iqr;
        } else {
            r->teacher_ms = med;
            r->teacher_iqr_ms = iqr;
        }
    }
    median_iqr(m->frame_samples, m->n_frame_samples, &r->frame_ms, &r->frame_iqr_ms);
    apply_rule(r);
    for (int c = 0; c < r->n_checks; c++) {
        double p = r->frame_ms;
        for (int b = 0; b < r->n_blocks; b++)
            p += r->median[b][r->checks[c].choice[b]];
        r->checks[c].predicted_ms = p;
    }
    r->seconds = (now_ms() - start) / 1e3;
    progress_finish(&bar, NULL);
    return lego_ok();
}

lego_status latency_measure(block_library *lib, const latency_options *opt_in, latency_result *out)
{
    memset(out, 0, sizeof *out);
    latency_options opt = {.repeat = 30, .batch = 1, .n_random = 2, .seed = 1, .sample_ms = 0.02};
    if (opt_in) {
        opt = *opt_in;
        if (opt.repeat == 0)
            opt.repeat = 30;
        if (opt.batch == 0)
            opt.batch = 1;
        if (opt.sample_ms <= 0)
            opt.sample_ms = 0.02;
    }
    if (opt.repeat < 3 || opt.repeat > 100000)
        return lego_error(LEGO_ERR_ARG, "repeat %d: give 3 to 100000 timed runs", opt.repeat);
    if (opt.batch < 1 || opt.batch > 65536)
        return lego_error(LEGO_ERR_ARG, "batch %lld: give 1 to 65536", (long long)opt.batch);
    if (opt.n_random < 0 || opt.n_random > 100)
        return lego_error(LEGO_ERR_ARG, "%d random compositions: give 0 to 100", opt.n_random);
    out->threads = lego_get_num_threads();
    out->batch = opt.batch;
    out->repeat = opt.repeat;
    device_cpu_name(out->cpu, sizeof out->cpu);
    device_profile_key(out->threads, opt.batch, out->profile, sizeof out->profile);
    meas m;
    memset(&m, 0, sizeof m);
    m.lib = lib;
    m.opt = &opt;
    m.r = out;
    lego_status st = setup(&m);
    if (st.code == LEGO_OK)
        st = measure(&m);
    meas_free(&m);
    if (st.code)
        latency_result_free(out);
    return st;
}

void latency_result_free(latency_result *r)
{
    for (int b = 0; b < r->n_blocks; b++) {
        if (r->median)
            free(r->median[b]);
        if (r->iqr)
            free(r->iqr[b]);
        if (r->raw_median)
            free(r->raw_median[b]);
        if (r->flops)
            free(r->flops[b]);
        if (r->arena)
            free(r->arena[b]);
        if (r->weights)
            free(r->weights[b]);
    }
    free(r->median), free(r->iqr), free(r->raw_median), free(r->flops), free(r->arena), free(r->weights);
    free(r->n_desc);
    for (int c = 0; c < r->n_checks; c++)
        free(r->checks[c].choice);
    free(r->checks);
    memset(r, 0, sizeof *r);
}

/* ---- the manifest ------------------------------------------------------------------ */

/* obj[key] as an object, made (replacing a null or non-object) when needed. */
static cJSON *object_at(cJSON *obj, const char *key)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsObject(o))
        return o;
    cJSON *n = cJSON_CreateObject();
    if (!n)
        return NULL;
    if (o)
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, n);
    else
        cJSON_AddItemToObject(obj, key, n);
    return n;
}

/* obj[key] = item, replacing what was there (item consumed). */
static bool put(cJSON *obj, const char *key, cJSON *item)
{
    if (!obj || !item) {
        cJSON_Delete(item);
        return false;
    }
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
    else
        cJSON_AddItemToObject(obj, key, item);
    return true;
}

lego_status latency_store(block_library *lib, const latency_result *r)
{
    if (r->n_blocks != lib->n_blocks)
        return lego_error(LEGO_ERR_INTERNAL, "latency of %d blocks for a library of %d", r->n_blocks, lib->n_blocks);
    bool ok = true;
    for (int b = 0; b < r->n_blocks; b++) {
        for (int d = 0; d < r->n_desc[b]; d++) {
            cJSON *dj = library_descendant_json(lib, b, d);
            cJSON *lat = dj ? object_at(dj, "latency") : NULL;
            cJSON *e = cJSON_CreateObject();
            if (!lat || !e) {
                cJSON_Delete(e);
                return nomem();
            }
            cJSON_AddNumberToObject(e, "median_ms", r->median[b][d]);
            cJSON_AddNumberToObject(e, "iqr_ms", r->iqr[b][d]);
            cJSON_AddNumberToObject(e, "arena_bytes", (double)r->arena[b][d]);
            cJSON_AddNumberToObject(e, "weight_bytes", (double)r->weights[b][d]);
            if (r->raw_median[b][d] != r->median[b][d])
                cJSON_AddNumberToObject(e, "raw_median_ms", r->raw_median[b][d]);
            ok = ok && put(lat, r->profile, e);
        }
    }
    cJSON *devs = object_at(lib->manifest, "devices");
    cJSON *p = cJSON_CreateObject();
    if (!devs || !p) {
        cJSON_Delete(p);
        return nomem();
    }
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(p, "cpu", r->cpu);
    cJSON_AddNumberToObject(p, "threads", r->threads);
    cJSON_AddNumberToObject(p, "batch", (double)r->batch);
    cJSON_AddNumberToObject(p, "frame_ms", r->frame_ms);
    cJSON_AddNumberToObject(p, "frame_iqr_ms", r->frame_iqr_ms);
    cJSON_AddNumberToObject(p, "teacher_ms", r->teacher_ms);
    cJSON_AddNumberToObject(p, "teacher_iqr_ms", r->teacher_iqr_ms);
    cJSON_AddNumberToObject(p, "frame_arena_bytes", (double)r->frame_arena);
    cJSON_AddNumberToObject(p, "frame_weight_bytes", (double)r->frame_weights);
    cJSON_AddNumberToObject(p, "repeat", r->repeat);
    cJSON_AddStringToObject(p, "measured_at", when);
    cJSON_AddStringToObject(p, "generator", "legodnn " LEGO_VERSION);
    cJSON *checks = cJSON_AddArrayToObject(p, "checks");
    for (int c = 0; checks && c < r->n_checks; c++) {
        const latency_check *k = &r->checks[c];
        cJSON *cj = cJSON_CreateObject();
        if (!cj)
            break;
        cJSON_AddStringToObject(cj, "name", k->name);
        cJSON *ch = cJSON_AddArrayToObject(cj, "choice");
        for (int b = 0; ch && b < r->n_blocks; b++)
            cJSON_AddItemToArray(ch, cJSON_CreateNumber(k->choice[b]));
        cJSON_AddNumberToObject(cj, "predicted_ms", k->predicted_ms);
        cJSON_AddNumberToObject(cj, "measured_ms", k->measured_ms);
        cJSON_AddNumberToObject(cj, "error", k->measured_ms > 0 ? k->predicted_ms / k->measured_ms - 1 : 0);
        cJSON_AddItemToArray(checks, cj);
    }
    ok = put(devs, r->profile, p) && ok;
    return ok ? lego_ok() : nomem();
}
