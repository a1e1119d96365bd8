/* profile.c - descendants' accuracy loss in composed models, the additive
 * estimate checked against measurement, and the manifest update
 * (profile.h). */
#include "profile.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/compose.h"
#include "../core/progress.h"
#include "../core/rng.h"
#include "../core/tensor.h"
#include "../core/threads.h"
#include "../graph/autodiff.h"
#include "../runtime/blockexec.h"
#include "../train/task.h"

#define DEFAULT_BATCH 128 /* as the original's profiling (bench/profile_reference.py) */
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
        c->cap = cap;
    }
    int *copy = malloc(sizeof *copy * (size_t)c->n_blocks);
    if (!copy)
        return nomem();
    memcpy(copy, choice, sizeof *copy * (size_t)c->n_blocks);
    c->items[c->n] = (profile_composition){copy, NAN};
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

/* ---- many compositions in one pass, sharing their common prefix ------- */

/* The compositions a run needs (every environment's, the validation's)
 * differ from one another only from some block on. Per test batch the
 * frame runs up to its first block slot once; then a depth-first walk over
 * all of them, sorted by the choices in slot order, runs each slot's
 * descendant once per distinct prefix: before a slot where they branch,
 * the frame values live across that slot are saved, and restored before
 * every further branch. The branch with the most compositions goes last,
 * and its saved values are dropped once restored for it, so the saved
 * values form a stack of a few slots' (an environment's compositions
 * branch off one large branch, the environment itself) instead of every
 * slot's; at the first slot the frame before it (a stem) runs again
 * instead where it is cheap (shared_open). One walk for all environments
 * rather than one each runs once what their compositions share, such as
 * block 0 at each sparsity: on the offline work unit (CIFAR ResNet18, 81
 * compositions, 1000 test images) 29.9 GFLOPs a sample instead of 31.9,
 * 100 s instead of 108.5, the stack 33.6 MB a walker, peak memory the same.
 * Each composition keeps its own tally of the task's metric
 * (task_tally_get/set). The kernels, their order and the arena offsets are
 * the block executor's (runtime/blockexec.h), which computes the composed
 * model's bits, so every accuracy is the one eval_choice measures.
 *
 * With several threads the test batches are shared out between walkers,
 * one per thread, each with its own run context, stack, tallies and task
 * state (the frame and the descendants are read-only while they run), and
 * each walker's kernels run on its own thread (threads.h: a busy pool runs
 * them inline). A walker's batch is the --batch over the walkers, so the
 * activations in flight are those of one walker at --batch; two walkers
 * of 64 profiled over 1000 test images some 5% sooner than one walk at
 * 128 on two threads (no barrier per kernel, each core's data its own). Tallies are
 * counts, so their sum is the same whichever walker scored a batch. */
#define PROFILE_MAX_WALKERS 8

static int prefix_rerun = -1; /* profile_set_prefix_rerun */

void profile_set_prefix_rerun(int mode) { prefix_rerun = mode; }

typedef struct walker {
    bx_ctx ctx;
    const bx_desc **cur;     /* [B]: the descendants being run */
    unsigned char *snap;     /* the stack of saved values (walk) */
    size_t snap_top;
    int *runs;               /* [B][2 S]: each slot's branches (walk) */
    unsigned char *tallies;  /* per composition walked */
    const lego_tensor **outs; /* the model's outputs, for scoring */
    task_data *task;         /* walker 0: the evaluator's; else its own */
    lego_tensor x;           /* the batch (walker 0: the evaluator's) */
    bool count;              /* add the blocks run to flops (the pass's first batch) */
    double flops;            /* per sample */
    int64_t seen;            /* samples scored in this pass */
    lego_status err;
} walker;

typedef struct shared {
    int B, S;
    bx_frame f;
    bool have_frame;
    bx_desc **desc;          /* [B*S] */
    int *slot_block;         /* [B]: the block run at the k-th slot of the schedule */
    int *slot_item;          /* [B+1]: that slot's item; [B] = the schedule's end */
    int **live;              /* [B]: arena values defined before slot k and used from it on */
    int *n_live;
    size_t *live_bytes;      /* [B]: their size, aligned */
    size_t tally_bytes;
    int *order;              /* the cache indices walked, sorted by choice in slot order */
    const block_library *lib;
    walker w[PROFILE_MAX_WALKERS];
    int n_walkers;
    const cache *c;          /* the compositions being walked: order[0..n) */
    int n;
    bool rerun_prefix;       /* slot 0's branches run the frame before it again (walk) */
    atomic_int_fast64_t next; /* the next test batch a walker may claim */
    atomic_int_fast64_t finished; /* test batches walked */
    int64_t batches;          /* in the pass */
    atomic_bool failed;       /* a walker failed: the others stop */
    profile_progress_fn progress; /* called by walker 0 after each of its batches */
    void *progress_ctx;
} shared;

static void walker_free(walker *w, bool own)
{
    lego_aligned_free(w->snap);
    free(w->cur), free(w->runs), free(w->tallies), free((void *)w->outs);
    bx_ctx_free(&w->ctx);
    if (own) {
        task_close(w->task);
        tensor_release(&w->x);
    }
    lego_status_free(&w->err);
    memset(w, 0, sizeof *w);
}

static void shared_free(shared *sh)
{
    for (int i = 0; i < sh->n_walkers; i++)
        walker_free(&sh->w[i], i > 0);
    for (int i = 0; sh->desc && i < sh->B * sh->S; i++)
        bx_desc_free(sh->desc[i]);
    for (int k = 0; sh->live && k < sh->B; k++)
        free(sh->live[k]);
    free(sh->desc), free(sh->slot_block), free(sh->slot_item);
    free(sh->live), free(sh->n_live), free(sh->live_bytes);
    free(sh->order);
    if (sh->have_frame)
        bx_frame_free(&sh->f);
    memset(sh, 0, sizeof *sh);
}

/* Which frame values each slot must keep: live[k] = arena values defined
 * by an item before slot k and used by it or a later item (the model's
 * outputs count as used at the end). */
static lego_status shared_liveness(shared *sh)
{
    const bx_frame *f = &sh->f;
    const lego_graph *g = f->g;
    int nv = f->n_values;
    int *def = malloc(sizeof *def * ((size_t)nv + 1)), *last = malloc(sizeof *last * ((size_t)nv + 1));
    if (!def || !last) {
        free(def), free(last);
        return nomem();
    }
    for (int v = 0; v < nv; v++)
        def[v] = last[v] = -1;
    int k = 0;
    for (int s = 0; s < f->n_items; s++) {
        const bx_item *it = &f->items[s];
        if (it->kind == BX_BLOCK) {
            if (k < sh->B)
                sh->slot_block[k] = it->index, sh->slot_item[k] = s;
            k++;
            last[f->entry_v[it->index]] = s;
            def[f->exit_v[it->index]] = s;
            continue;
        }
        exec_step_liveness(&g->nodes[it->index], &f->ist[s], s, def, last, false);
    }
    for (int i = 0; i < f->n_model_outputs; i++)
        last[g->outputs[i]] = f->n_items;
    sh->slot_item[sh->B] = f->n_items;
    lego_status st = k == sh->B ? lego_ok()
                                : lego_error(LEGO_ERR_INTERNAL, "the frame schedules %d block slots for %d blocks", k,
                                             sh->B);
    for (k = 0; st.code == LEGO_OK && k < sh->B; k++) {
        int at = sh->slot_item[k], n = 0;
        size_t bytes = 0;
        sh->live[k] = malloc(sizeof **sh->live * ((size_t)nv + 1));
        if (!sh->live[k]) {
            st = nomem();
            break;
        }
        for (int v = 0; v < nv; v++) {
            if (f->offset[v] == SIZE_MAX || def[v] < 0 || def[v] >= at || last[v] < at)
                continue;
            sh->live[k][n++] = v;
            bytes += lego_tensor_bytes(&f->vt[v]);
        }
        sh->n_live[k] = n;
        sh->live_bytes[k] = (bytes + 63) / 64 * 64;
    }
    free(def), free(last);
    return st;
}

/* Walkers 1.. of n: each its own task state over the test split and its own
 * batch buffer (walker 0 has the evaluator's). */
static lego_status open_walker_tasks(shared *sh, int n, const lego_task *t, const profile_options *opt,
                                     const lego_graph *teacher, const evaluator *e)
{
    sh->n_walkers = n;
    sh->w[0].task = e->task;
    sh->w[0].x = e->x;
    for (int i = 1; i < n; i++) {
        walker *w = &sh->w[i];
        LEGO_TRY(task_open(t, opt->data, teacher, e->batch, -1, opt->max_test > 0 ? opt->max_test : 0,
                           opt->seed, &w->task));
        tensor_set_shape(&w->x, LEGO_F32, e->x.rank, e->x.dims);
        LEGO_TRY(tensor_alloc(&w->x));
    }
    return lego_ok();
}

/* Take the frame and every descendant over from lib at the evaluator's
 * batch, and size each walker's run context for them. */
static lego_status shared_open(shared *sh, block_library *lib, const evaluator *e)
{
    int B = lib->n_blocks, S = lib->n_sparsities;
    sh->B = B, sh->S = S;
    sh->lib = lib;
    sh->desc = calloc((size_t)(B * S) + 1, sizeof *sh->desc);
    sh->slot_block = calloc((size_t)B + 1, sizeof *sh->slot_block);
    sh->slot_item = calloc((size_t)B + 1, sizeof *sh->slot_item);
    sh->live = calloc((size_t)B + 1, sizeof *sh->live);
    sh->n_live = calloc((size_t)B + 1, sizeof *sh->n_live);
    sh->live_bytes = calloc((size_t)B + 1, sizeof *sh->live_bytes);
    if (!sh->desc || !sh->slot_block || !sh->slot_item || !sh->live || !sh->n_live || !sh->live_bytes)
        return nomem();
    LEGO_TRY(bx_frame_open(lib, e->batch, &sh->f));
    sh->have_frame = true;
    size_t block_bytes = 0;
    int n_values = 0;
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++) {
            LEGO_TRY(bx_desc_open(lib, &sh->f, b, s, &sh->desc[b * S + s]));
            /* profiling only runs it: oneDNN's packed copy is all it needs */
            bx_desc_release_weights(sh->desc[b * S + s]);
            const bx_desc *d = sh->desc[b * S + s];
            if (d->arena_bytes > block_bytes)
                block_bytes = d->arena_bytes;
            if (d->n_values > n_values)
                n_values = d->n_values;
        }
    for (int i = 0; i < sh->n_walkers; i++) {
        walker *w = &sh->w[i];
        w->cur = calloc((size_t)B + 1, sizeof *w->cur);
        w->runs = calloc((size_t)(2 * B * S) + 1, sizeof *w->runs);
        w->outs = calloc((size_t)sh->f.n_model_outputs + 1, sizeof *w->outs);
        if (!w->cur || !w->runs || !w->outs)
            return nomem();
        LEGO_TRY(bx_ctx_reserve(&w->ctx, &sh->f, block_bytes, n_values));
        for (int j = 0; j < sh->f.n_model_inputs; j++)
            w->ctx.fvt[sh->f.g->inputs[j]].data = w->x.data;
    }
    LEGO_TRY(shared_liveness(sh));
    /* the frame before the first slot (a stem) is run again for each
     * further branch there rather than saved, when the whole frame costs
     * no more than the cheapest descendant of that slot: a CIFAR ResNet18's
     * stem is 3.5 MFLOPs a sample, its saved output 16.8 MB a walker */
    int64_t cheapest = INT64_MAX;
    for (int s = 0; B > 0 && s < S; s++) {
        int64_t fl = lib->blocks[sh->slot_block[0]].desc[s].flops;
        cheapest = fl < cheapest ? fl : cheapest;
    }
    sh->rerun_prefix = prefix_rerun < 0 ? B > 0 && lib->frame_flops <= cheapest : prefix_rerun;
    return lego_ok();
}

/* Save slot k's live values into w's stack at offset off, or restore them
 * from there. */
static void snap_copy(const shared *sh, walker *w, int k, size_t off, bool save)
{
    unsigned char *at = w->snap + off;
    for (int i = 0; i < sh->n_live[k]; i++) {
        lego_tensor *t = &w->ctx.fvt[sh->live[k][i]];
        size_t n = lego_tensor_bytes(t);
        if (save)
            memcpy(at, t->data, n);
        else
            memcpy(t->data, at, n);
        at += n;
    }
}

/* The branches of order[lo..hi) at slot k, runs of one choice of its
 * block, as [lo, hi) pairs into run (2 S ints), the largest last, the
 * others in order; returns how many. */
static int branches(const shared *sh, const cache *c, int k, int lo, int hi, int *run)
{
    int b = sh->slot_block[k], n = 0, big = 0;
    for (int i = lo; i < hi; n++) {
        int s = c->items[sh->order[i]].choice[b], j = i;
        while (j < hi && c->items[sh->order[j]].choice[b] == s)
            j++;
        run[2 * n] = i, run[2 * n + 1] = j;
        if (j - i > run[2 * big + 1] - run[2 * big])
            big = n;
        i = j;
    }
    int blo = run[2 * big], bhi = run[2 * big + 1];
    memmove(run + 2 * big, run + 2 * big + 2, sizeof *run * (size_t)(2 * (n - 1 - big)));
    run[2 * n - 2] = blo, run[2 * n - 1] = bhi;
    return n;
}

/* The stack walk needs for order[lo..hi) from slot k on (runs: [B][2 S]
 * scratch). */
static size_t snap_need(const shared *sh, const cache *c, int *runs, int k, int lo, int hi)
{
    if (k == sh->B)
        return 0;
    int *run = runs + (size_t)k * 2 * (size_t)sh->S;
    int n = branches(sh, c, k, lo, hi, run);
    if (n == 1)
        return snap_need(sh, c, runs, k + 1, lo, hi);
    size_t most = 0;
    bool saved = !(k == 0 && sh->rerun_prefix);
    for (int r = 0; r < n; r++) {
        size_t need = snap_need(sh, c, runs, k + 1, run[2 * r], run[2 * r + 1]);
        need += saved && r + 1 < n ? sh->live_bytes[k] : 0; /* the last runs after the pop */
        most = need > most ? need : most;
    }
    return most;
}

/* Compositions order[lo..hi) share their choices at slots before k, and
 * w's frame arena holds what items before slot k left. */
static lego_status walk(const shared *sh, walker *w, int k, int lo, int hi, int64_t got)
{
    const cache *c = sh->c;
    if (k == sh->B) {
        const lego_graph *g = sh->f.g;
        for (int i = 0; i < sh->f.n_model_outputs; i++)
            w->outs[i] = &w->ctx.fvt[g->outputs[i]];
        for (int i = lo; i < hi; i++) {
            unsigned char *t = w->tallies + (size_t)i * sh->tally_bytes;
            task_tally_set(w->task, t);
            task_score(w->task, w->outs, got);
            task_tally_get(w->task, t);
        }
        return lego_ok();
    }
    int b = sh->slot_block[k];
    int *run = w->runs + (size_t)k * 2 * (size_t)sh->S;
    int n = branches(sh, c, k, lo, hi, run);
    size_t at = w->snap_top;
    bool saved = n > 1 && !(k == 0 && sh->rerun_prefix);
    if (saved) {
        snap_copy(sh, w, k, at, true);
        w->snap_top = at + sh->live_bytes[k];
    }
    for (int r = 0; r < n; r++) {
        int i = run[2 * r], j = run[2 * r + 1], s = c->items[sh->order[i]].choice[b];
        if (r > 0 && saved)
            snap_copy(sh, w, k, at, false);
        else if (r > 0)
            LEGO_TRY(bx_run_items(&sh->f, w->cur, &w->ctx, 0, sh->slot_item[0]));
        if (r > 0 && r + 1 == n && saved)
            w->snap_top = at; /* restored for the last time */
        w->cur[b] = sh->desc[b * sh->S + s];
        if (w->count)
            w->flops += (double)sh->lib->blocks[b].desc[s].flops;
        LEGO_TRY(bx_run_items(&sh->f, w->cur, &w->ctx, sh->slot_item[k], sh->slot_item[k + 1]));
        LEGO_TRY(walk(sh, w, k + 1, i, j, got));
    }
    return lego_ok();
}

/* Walker `i`'s share of a pass: it reads the test split in order through
 * its own task state and walks the batches it claims, the next unclaimed
 * one each time it is free (a walker whose core is busy elsewhere takes
 * fewer). */
static void walker_pass(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    shared *sh = ctx;
    for (int64_t i = begin; i < end; i++) {
        walker *w = &sh->w[i];
        int64_t got, k = 0, mine = atomic_fetch_add(&sh->next, 1);
        task_start(w->task, SPLIT_TEST, 0);
        while (w->err.code == LEGO_OK && !atomic_load(&sh->failed) &&
               (got = task_next(w->task, SPLIT_TEST, w->x.data)) > 0) {
            if (k++ != mine)
                continue; /* another walker's */
            w->count = mine == 0;
            w->err = bx_run_items(&sh->f, w->cur, &w->ctx, 0, sh->slot_item[0]);
            if (w->err.code == LEGO_OK)
                w->err = walk(sh, w, 0, 0, sh->n, got);
            w->count = false;
            w->seen += got;
            int64_t done = atomic_fetch_add(&sh->finished, 1) + 1;
            if (i == 0 && sh->progress && w->err.code == LEGO_OK &&
                !sh->progress(sh->progress_ctx, (int)done, (int)sh->batches, NAN))
                w->err = lego_error(LEGO_ERR_ARG, "interrupted");
            mine = atomic_fetch_add(&sh->next, 1);
        }
        if (w->err.code)
            atomic_store(&sh->failed, true);
    }
}

/* Evaluate every item of c in one pass over the test split. */
static lego_status shared_eval(shared *sh, evaluator *e, cache *c)
{
    int n = c->n;
    sh->order = malloc(sizeof *sh->order * (size_t)n);
    if (!sh->order)
        return nomem();
    /* insertion sort by the choices in slot order (about a hundred, up to a
     * thousand more with --validate) */
    for (int i = 0; i < n; i++) {
        int x = i, j = i;
        for (; j > 0; j--) {
            const int *a = c->items[sh->order[j - 1]].choice, *bch = c->items[x].choice;
            int cmp = 0;
            for (int k = 0; k < sh->B && !cmp; k++)
                cmp = (a[sh->slot_block[k]] > bch[sh->slot_block[k]]) - (a[sh->slot_block[k]] < bch[sh->slot_block[k]]);
            if (cmp <= 0)
                break;
            sh->order[j] = sh->order[j - 1];
        }
        sh->order[j] = x;
    }
    sh->c = c, sh->n = n;
    size_t need = snap_need(sh, c, sh->w[0].runs, 0, 0, n);
    for (int i = 0; i < sh->n_walkers; i++) {
        walker *w = &sh->w[i];
        w->tallies = calloc((size_t)n, sh->tally_bytes);
        w->snap = lego_aligned_alloc(need ? need : 64);
        if (!w->tallies || !w->snap)
            return nomem();
    }
    atomic_store(&sh->next, 0);
    atomic_store(&sh->finished, 0);
    atomic_store(&sh->failed, false);
    if (sh->n_walkers > 1)
        parallel_for_chunks(sh->n_walkers, sh->n_walkers, walker_pass, sh);
    else
        walker_pass(sh, 0, 1, 0); /* one walker: its kernels take the threads */
    e->samples = 0;
    for (int i = 0; i < sh->n_walkers; i++) {
        walker *w = &sh->w[i];
        if (w->err.code) {
            lego_status st = w->err;
            memset(&w->err, 0, sizeof st);
            return st;
        }
        e->samples += w->seen;
        for (int j = 0; i > 0 && j < n; j++)
            task_tally_add(e->task, sh->w[0].tallies + (size_t)j * sh->tally_bytes,
                           w->tallies + (size_t)j * sh->tally_bytes);
    }
    for (int i = 0; i < n; i++) {
        task_tally_set(e->task, sh->w[0].tallies + (size_t)i * sh->tally_bytes);
        c->items[sh->order[i]].accuracy = task_metric(e->task, true);
    }
    return lego_ok();
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

/* Every composition the run needs, into the cache: the teacher, then per
 * environment its baselines and tests, then the validation set (the plain
 * path evaluates them in this order; the shared walk sorts them). */
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
        /* every uniform composition: all-second and all-last (the
         * environments), then the sparsities between them, so a report can
         * give the measured accuracy of "every block at s" for each s */
        for (int f = 0; f < S - 1 && st.code == LEGO_OK; f++) {
            int k = f == 0 ? 1 : f == 1 ? S - 1 : f;
            for (int b = 0; b < B; b++)
                ch[b] = k;
            st = cache_add(c, ch, &idx);
            labels[*n_checks] = f == 0 ? "all-second" : f == 1 ? "all-last" : "uniform";
            checks[(*n_checks)++] = idx;
        }
        int n_fixed = *n_checks;
        rng g;
        rng_seed(&g, rng_mix(seed, 0x70726f66ull));
        /* distinct random mixes, not the teacher nor one already checked */
        for (int tries = 0; st.code == LEGO_OK && tries < 50 * (n_random + 1) &&
                            *n_checks < n_fixed + n_random; tries++) {
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
    int *checks = malloc(sizeof *checks * (size_t)(n_random + S));
    const char **labels = malloc(sizeof *labels * (size_t)(n_random + S));
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
    /* compositions share prefixes where the task's tally can be kept per
     * composition, unless asked for the plain path */
    bool share = !opt->plain && B > 0 && task_kind_tally_bytes(t) > 0;
    int walkers = 1;
    if (st.code == LEGO_OK) {
        int fixed = task_fixed_batch(&teacher);
        int batch = fixed ? fixed : opt->batch > 0 ? opt->batch : DEFAULT_BATCH;
        if (share && !fixed) {
            walkers = par_threads() < PROFILE_MAX_WALKERS ? par_threads() : PROFILE_MAX_WALKERS;
            walkers = walkers < batch ? walkers : batch;
        }
        e->batch = (batch + walkers - 1) / walkers;
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
    share = share && st.code == LEGO_OK;
    if (share) {
        /* every composition in one pass over the test split, prefixes shared */
        shared sh;
        memset(&sh, 0, sizeof sh);
        sh.tally_bytes = task_tally_bytes(e->task);
        st = open_walker_tasks(&sh, walkers, t, opt, &teacher, e);
        graph_free(&teacher);
        have_teacher = false;
        if (st.code == LEGO_OK)
            st = shared_open(&sh, lib, e);
        sh.batches = task_batches(e->task, SPLIT_TEST);
        sh.progress = opt->progress, sh.progress_ctx = opt->ctx;
        if (st.code == LEGO_OK)
            st = shared_eval(&sh, e, c);
        if (st.code == LEGO_OK) {
            r->test_samples = e->samples;
            r->batch = e->batch * walkers;
            r->walkers = walkers;
            if (opt->progress && !opt->progress(opt->ctx, (int)sh.batches, (int)sh.batches, NAN))
                st = lego_error(LEGO_ERR_ARG, "interrupted");
        }
        for (int i = 0; i < sh.n_walkers; i++)
            r->block_flops_run += sh.w[i].flops;
        shared_free(&sh);
    }
    if (!share && st.code == LEGO_OK)
        st = eval_graph(e, &teacher, &c->items[0].accuracy);
    if (have_teacher)
        graph_free(&teacher);
    if (!share && st.code == LEGO_OK) {
        r->test_samples = e->samples;
        r->batch = e->batch;
        r->walkers = 1;
        if (opt->progress && !opt->progress(opt->ctx, 1, c->n, c->items[0].accuracy))
            st = lego_error(LEGO_ERR_ARG, "interrupted");
    }
    for (int i = 1; !share && st.code == LEGO_OK && i < c->n; i++) {
        st = eval_choice(e, c->items[i].choice, &c->items[i].accuracy);
        if (st.code)
            break;
        if (opt->progress && !opt->progress(opt->ctx, i + 1, c->n, c->items[i].accuracy))
            st = lego_error(LEGO_ERR_ARG, "interrupted");
    }

    if (st.code == LEGO_OK) {
        r->teacher_accuracy = c->items[0].accuracy;
        for (int i = 0; i < c->n; i++)
            for (int b = 0; b < B; b++)
                r->block_flops_plain += (double)lib->blocks[b].desc[c->items[i].choice[b]].flops;
        if (!share)
            r->block_flops_run = r->block_flops_plain;
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
    cache c = {lib->n_blocks, NULL, 0, 0};
    evaluator e;
    memset(&e, 0, sizeof e);
    e.lib = lib;
    lego_status st = run(lib, opt, res, &c, &e);
    task_close(e.task);
    tensor_release(&e.x);
    res->compositions = c.items;
    res->n_compositions = c.n;
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
    cJSON_AddNumberToObject(p, "walkers", r->walkers);
    cJSON_AddNumberToObject(p, "teacher_accuracy", r->teacher_accuracy);
    cJSON *env = cJSON_AddArrayToObject(p, "environments");
    for (int k = 0; env && k < r->n_envs; k++)
        cJSON_AddItemToArray(env, cJSON_CreateNumber(lib->sparsities[r->envs[k]]));
    cJSON_AddNumberToObject(p, "compositions_evaluated", r->n_compositions);
    cJSON_AddNumberToObject(p, "seconds", r->seconds);
    cJSON_AddBoolToObject(p, "shared_prefixes", r->block_flops_run < r->block_flops_plain);
    cJSON_AddNumberToObject(p, "block_flops_per_sample", r->block_flops_run);
    cJSON_AddNumberToObject(p, "block_flops_per_sample_unshared", r->block_flops_plain);
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
