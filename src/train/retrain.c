/* retrain.c - block retraining on the teacher's boundary features
 * (retrain.h has the method, the data order and the checkpoint rules).
 *
 * The pieces, in the order a run uses them: the teacher's trunk (the nodes
 * of the all-s=0 composition that lead to block boundaries, so the
 * classifier head never has to run, nor fit the batch size), the split
 * into stages and the features file between them, one train plan per
 * student, the feature cache, the per-batch steps (all students at once on
 * the thread pool), the checkpoint file, and the final commit into the
 * library. A stage sets up its trunk, students and buffers (setup_stage)
 * and lets them go (end_stage) before the next. */
#include "retrain.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include "../blocks/compose.h"
#include "../core/file.h"
#include "../core/progress.h"
#include "../core/tensor.h"
#include "../core/threads.h"
#include "../graph/autodiff.h"
#include "../graph/exec.h"
#include "optim.h"
#include "task.h"
#include "trainer.h"

static lego_status nomem(void) { return lego_error(LEGO_ERR_NOMEM, "out of memory retraining blocks"); }

/* ---- state of a run ------------------------------------------------------ */

/* One distinct block boundary value: where its features sit in a batch
 * record of the cache. */
typedef struct slot {
    int tv;             /* value index in the trunk */
    int64_t floats;     /* per batch */
    int64_t off;        /* in a batch record, floats */
} slot;

typedef struct student {
    int block, desc;
    int stage;          /* the stage that trains it */
    bool done;          /* its stage is over: graph, plan and optimizer are gone */
    lego_graph *g;      /* the library's graph, trained in place (its stage only) */
    int in_slot, out_slot;
    train_plan plan;
    bool planned;
    int *params, n_params;
    optimizer opt;
    int *vals, n_vals;  /* every float initializer: weights and BatchNorm statistics */
    int64_t n_floats;
    int64_t best_at;    /* with best_epoch > 0: where the checkpoint holds the kept weights
                           (n_floats, vals in order); they are not kept in memory */
    void *parked;       /* untouched storage the plan waits in until its group's */
    double initial, best_loss, best_train;
    int best_epoch;
    double train_sum, eval_sum; /* this epoch's sums of batch means */
    int64_t train_n, eval_n;
    lego_tensor x;      /* the input: a header over a feature slot */
    lego_status err;    /* set by a worker */
} student;

typedef struct run {
    const retrain_options *o;
    block_library lib;
    bool lib_open;
    lego_graph full;    /* the teacher's whole model, until a stage cuts its trunk out */
    bool full_init;
    lego_graph trunk;
    bool trunk_init;
    exec_plan teacher;  /* inference, activations laid out by lifetime */
    bool teacher_planned;
    /* per block: the teacher step after which both its boundaries exist;
     * by_ready: the blocks in that order. A boundary's memory is reused once
     * the last block that reads it has been trained, so the teacher never
     * holds every boundary of a batch at once. */
    int *ready, *by_ready;
    /* Students step block by block during the teacher pass only when they
     * run one at a time (one group): with several groups, stepping all of
     * them once per batch keeps the groups balanced and the threads busy,
     * and the boundaries then live to the end of the pass. */
    bool interleave;
    /* Interleaved, the students' buffer and the teacher's activations may be
     * one: while a block's students run, what the teacher still needs (the
     * values live across that step, and the block's boundaries the students
     * read) waits in `carry`, and is put back before the teacher goes on. */
    bool share;
    unsigned char *carry;
    task_data *data;
    lego_tensor x;      /* a batch of inputs (B,C,H,W) */
    slot *slots;
    int n_slots;
    int64_t record;     /* floats per cached batch */
    student *st;        /* every student, whatever its stage */
    int n_st;
    int *order;         /* this stage's students by FLOPs, largest first */
    int n_active;       /* how many: order[0, n_active) */
    /* Stages (plan_stages; retrain.h): with two, stage 0 trains the blocks
     * the cut does not precede and writes the cut's features of every
     * batch to feat_path; stage 1's teacher reads them as its input. */
    int n_stages, stage;
    char *cut;          /* the value between the stages, or NULL */
    bool *in_stage1;    /* per block */
    char *feat_path;
    int feat_fd;        /* -1: closed */
    int64_t cut_floats; /* per batch */
    int cut_def;        /* stage 0: the teacher step that computes the cut */
    uint32_t *feat_crc; /* per batch: the CRC-32 of its features as written */
    bool *feat_written; /* per batch */
    /* Stage 1 of two: each batch's record (what the feature cache would
     * hold) also goes to the file, after the cut's region, the first time
     * its teacher runs; once every batch's is there, the teacher is let go
     * (teacher_dropped) and the records are read instead (disk_records). */
    bool disk_records, teacher_dropped;
    uint32_t *rec_crc;  /* per batch and slot */
    bool *rec_on_disk;  /* per batch */
    float *rec_buf;     /* one record, once the teacher is gone */
    int64_t feat_file_bytes; /* the features file's size, cut and records */
    int n_ready;        /* this stage's blocks: by_ready[0, n_ready) */
    /* The students split among the threads, balanced by FLOPs (largest
     * first onto the least loaded): a group's students run one after
     * another on one thread and share one buffer for their activations and
     * gradients, so memory holds one plan per thread, not per student. */
    int *group_of, n_groups;
    size_t *arena_bytes; /* per group: its largest student's storage */
    void **arena;       /* per group */
    workspace *ws;      /* per group: its kernels' scratch (train_plan_use_workspace) */
    int64_t nb, nt, nh; /* batches: all, training, held out */
    float **cache;      /* per batch: its record, or NULL */
    bool *want;         /* per batch: cache it when computed */
    int64_t cached;
    int64_t cached_before, cache_bytes_before; /* earlier stages' */
    int64_t teacher_count;
    double teacher_seconds, student_seconds; /* this run's */
    double seconds_before;   /* earlier runs' (from the checkpoint) */
    int64_t teacher_before;
    char *state_path;
} run;

/* Let go of a student's graph (back to the library's file), plan and
 * optimizer: what remains is its losses and where its kept weights are. */
static void drop_student(run *r, student *s)
{
    if (s->planned)
        train_plan_free(&s->plan);
    s->planned = false;
    optim_free(&s->opt);
    memset(&s->opt, 0, sizeof s->opt);
    free(s->params);
    free(s->vals);
    s->params = s->vals = NULL;
    s->n_params = s->n_vals = 0;
    lego_aligned_free(s->parked);
    s->parked = NULL;
    lego_status_free(&s->err);
    if (s->g && r->lib_open)
        library_unload(&r->lib, s->block, s->desc);
    s->g = NULL;
}

/* Everything a stage set up (setup_stage), its students' graphs included. */
static void end_stage(run *r)
{
    free(r->ready);
    free(r->by_ready);
    r->ready = r->by_ready = NULL;
    r->n_ready = 0;
    for (int i = 0; r->st && i < r->n_st; i++)
        if (r->st[i].stage == r->stage && (r->st[i].g || r->st[i].planned)) {
            drop_student(r, &r->st[i]);
            r->st[i].done = true;
        }
    free(r->order);
    free(r->group_of);
    r->order = r->group_of = NULL;
    r->n_active = 0;
    for (int g = 0; r->arena && g < r->n_groups; g++)
        lego_aligned_free(r->arena[g]);
    free(r->arena);
    free(r->arena_bytes);
    r->arena = NULL, r->arena_bytes = NULL;
    lego_aligned_free(r->carry);
    r->carry = NULL;
    for (int g = 0; r->ws && g < r->n_groups; g++)
        workspace_free(&r->ws[g]);
    free(r->ws);
    r->ws = NULL;
    r->n_groups = 0;
    r->interleave = r->share = false;
    for (int64_t k = 0; r->cache && k < r->nb; k++)
        lego_aligned_free(r->cache[k]);
    free(r->cache);
    free(r->want);
    r->cache = NULL, r->want = NULL;
    r->cached_before += r->cached;
    r->cache_bytes_before += r->cached * r->record * (int64_t)sizeof(float);
    r->cached = 0;
    free(r->slots);
    r->slots = NULL;
    r->n_slots = 0;
    r->record = 0;
    if (r->teacher_planned)
        exec_plan_free(&r->teacher);
    r->teacher_planned = false;
    if (r->trunk_init)
        graph_free(&r->trunk);
    r->trunk_init = false;
    tensor_release(&r->x);
    if (r->feat_fd >= 0)
        close(r->feat_fd);
    r->feat_fd = -1;
    r->disk_records = r->teacher_dropped = false;
    free(r->rec_crc);
    free(r->rec_on_disk);
    lego_aligned_free(r->rec_buf);
    r->rec_crc = NULL, r->rec_on_disk = NULL, r->rec_buf = NULL;
}

static void release_full(run *r);

static void run_free(run *r)
{
    end_stage(r);
    release_full(r);
    for (int i = 0; r->st && i < r->n_st; i++)
        drop_student(r, &r->st[i]);
    free(r->st);
    if (r->data)
        task_close(r->data);
    if (r->lib_open)
        library_free(&r->lib);
    free(r->state_path);
    free(r->feat_path);
    free(r->cut);
    free(r->in_stage1);
    free(r->feat_crc);
    free(r->feat_written);
}

static lego_status check_options(const retrain_options *o)
{
    if (!o->data || !o->data[0])
        return lego_error(LEGO_ERR_ARG, "retraining needs a dataset (--data)");
    if (o->epochs < 1 || o->epochs > 100000)
        return lego_error(LEGO_ERR_ARG, "epochs must be between 1 and 100000, not %d", o->epochs);
    if (o->batch < 1 || o->batch > 65536)
        return lego_error(LEGO_ERR_ARG, "batch must be between 1 and 65536, not %d", o->batch);
    if (!(o->lr > 0) || !isfinite(o->lr))
        return lego_error(LEGO_ERR_ARG, "the learning rate must be positive, not %g", (double)o->lr);
    if (!(o->holdout > 0 && o->holdout <= 0.5))
        return lego_error(LEGO_ERR_ARG, "the held-out fraction must be in (0, 0.5], not %g", o->holdout);
    if (o->max_train < 0)
        return lego_error(LEGO_ERR_ARG, "max_train must not be negative");
    if (o->stages < 0 || o->stages > 2)
        return lego_error(LEGO_ERR_ARG, "stages must be 0 (decide), 1 or 2, not %d", o->stages);
    return lego_ok();
}

/* ---- the teacher's trunk ------------------------------------------------- */

static lego_status push_int(int **list, int *n, int v)
{
    int *l = realloc(*list, sizeof *l * (size_t)(*n + 1));
    if (!l)
        return nomem();
    l[(*n)++] = v;
    *list = l;
    return lego_ok();
}

/* Copy into t the nodes of `full` that the values keep[] depend on, with
 * keep[] as the outputs and the model input at batch `batch`; with stop >=
 * 0, value stop is the input instead, and what only leads to it stays out. */
static lego_status build_trunk_in(const lego_graph *full, const int *keep, int n_keep, int stop, int batch,
                                  lego_graph *t, bool *need_node, bool *used, int *map, int *stack)
{
    int top = 0;
    for (int i = 0; i < n_keep; i++)
        if (!used[keep[i]])
            used[keep[i]] = true, stack[top++] = keep[i];
    while (top > 0) {
        int v = stack[--top], p = full->values[v].producer;
        if (v == stop || p < 0 || need_node[p])
            continue;
        need_node[p] = true;
        const gnode *n = &full->nodes[p];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0 && !used[n->in[i]])
                used[n->in[i]] = true, stack[top++] = n->in[i];
        for (int o = 0; o < n->n_out; o++)
            used[n->out[o]] = true;
    }
    t->opset = full->opset;
    for (int i = 0; i < full->n_meta; i++)
        LEGO_TRY(graph_set_meta(t, full->meta_keys[i], full->meta_values[i]));
    for (int v = 0; v < full->n_values; v++) {
        map[v] = -1;
        if (!used[v])
            continue;
        const gvalue *src = &full->values[v];
        value_kind kind = src->kind == VALUE_INPUT || src->kind == VALUE_INITIALIZER ? src->kind : VALUE_ACTIVATION;
        if (src->kind == VALUE_FOLDED && src->producer < 0)
            kind = VALUE_INITIALIZER; /* a constant with no node to fold it again */
        if (v == stop)
            kind = VALUE_INPUT;
        LEGO_TRY(graph_add_value(t, src->name, kind, &map[v]));
        gvalue *dst = &t->values[map[v]];
        if (kind == VALUE_INITIALIZER) {
            LEGO_TRY(tensor_clone(&src->t, &dst->t));
        } else if (kind == VALUE_INPUT) {
            tensor_set_shape(&dst->t, src->t.dtype, src->t.rank, src->t.dims);
            if (dst->t.rank > 0)
                dst->t.dims[0] = batch;
            dst->declared_rank = v == stop ? src->t.rank : src->declared_rank;
            memcpy(dst->declared, v == stop ? src->t.dims : src->declared, sizeof dst->declared);
            if (dst->declared_rank > 0)
                dst->declared[0] = -1;
            LEGO_TRY(push_int(&t->inputs, &t->n_inputs, map[v]));
        }
    }
    for (int j = 0; j < full->n_nodes; j++) {
        int k = full->order ? full->order[j] : j;
        if (!need_node[k])
            continue;
        const gnode *n = &full->nodes[k];
        int in[OP_MAX_IO], out[OP_MAX_IO];
        for (int i = 0; i < n->n_in; i++)
            in[i] = n->in[i] < 0 ? -1 : map[n->in[i]];
        for (int o = 0; o < n->n_out; o++)
            out[o] = map[n->out[o]];
        attr_list attrs;
        LEGO_TRY(attr_list_copy(&n->attrs, &attrs));
        int idx;
        LEGO_TRY(graph_add_node(t, n->name, n->op_type, in, n->n_in, out, n->n_out, &attrs, &idx));
    }
    for (int i = 0; i < n_keep; i++)
        LEGO_TRY(push_int(&t->outputs, &t->n_outputs, map[keep[i]]));
    return graph_infer(t);
}

static lego_status build_trunk(const lego_graph *full, const int *keep, int n_keep, int stop, int batch,
                               lego_graph *t)
{
    size_t nv = (size_t)full->n_values + 1;
    bool *need_node = calloc((size_t)full->n_nodes + 1, sizeof *need_node);
    bool *used = calloc(nv, sizeof *used);
    int *map = malloc(sizeof *map * nv), *stack = malloc(sizeof *stack * nv);
    lego_status st = need_node && used && map && stack ? graph_init(t, full->name) : nomem();
    if (st.code == LEGO_OK) {
        st = build_trunk_in(full, keep, n_keep, stop, batch, t, need_node, used, map, stack);
        if (st.code)
            graph_free(t);
    }
    free(need_node), free(used), free(map), free(stack);
    return st;
}

/* ---- setting a run up ------------------------------------------------------ */

static int slot_of(const run *r, const char *name)
{
    int v = graph_find_value(&r->trunk, name);
    for (int i = 0; i < r->n_slots; i++)
        if (r->slots[i].tv == v)
            return i;
    return -1;
}

/* Position in the trunk's run order of the node that computes v (-1: an
 * input). */
static int topo_pos(const lego_graph *g, int v)
{
    for (int k = 0; k < g->n_nodes; k++) {
        const gnode *n = &g->nodes[g->order[k]];
        for (int o = 0; o < n->n_out; o++)
            if (n->out[o] == v)
                return k;
    }
    return -1;
}

/* The teacher step that defines value v (its fused chain's step), or -1. */
static int plan_def(const lego_graph *g, const exec_plan *p, int v)
{
    for (int s = 0; s < p->n_steps; s++) {
        const gnode *n = &g->nodes[p->steps[s]];
        for (int o = 0; o < n->n_out; o++)
            if (exec_step_out(n, &p->st[s], o) == v)
                return s;
    }
    return -1;
}

/* Whether this stage trains block b's descendants. */
static bool block_active(const run *r, int b)
{
    return r->n_stages < 2 || (r->in_stage1[b] ? 1 : 0) == r->stage;
}

static lego_status plan_teacher(run *r)
{
    lego_graph *t = &r->trunk;
    block_library *lib = &r->lib;
    int nb = lib->n_blocks;
    int *until = malloc(sizeof *until * ((size_t)t->n_values + 1));
    r->ready = malloc(sizeof *r->ready * ((size_t)nb + 1));
    r->by_ready = malloc(sizeof *r->by_ready * ((size_t)nb + 1));
    if (!until || !r->ready || !r->by_ready) {
        free(until);
        return nomem();
    }
    /* each boundary stays until the latest exit among the blocks reading it */
    for (int v = 0; v < t->n_values; v++)
        until[v] = -1;
    for (int b = 0; b < nb; b++) {
        if (!block_active(r, b))
            continue;
        int x = graph_find_value(t, lib->blocks[b].exit);
        const char *names[2] = {lib->blocks[b].entry, lib->blocks[b].exit};
        for (int e = 0; e < 2; e++) {
            int v = graph_find_value(t, names[e]);
            if (until[v] < 0 || topo_pos(t, x) > topo_pos(t, until[v]))
                until[v] = x;
        }
    }
    lego_status st = exec_plan_build_until(t, r->interleave ? until : NULL, &r->teacher);
    free(until);
    LEGO_TRY(st);
    r->teacher_planned = true;
    /* the teacher only runs: its packed kernels' copies of the weights do */
    exec_release_packed(t, r->teacher.steps, r->teacher.n_steps, r->teacher.st, r->teacher.vt);
    r->n_ready = 0;
    for (int b = 0; b < nb; b++) {
        r->ready[b] = -1;
        if (!block_active(r, b))
            continue;
        r->ready[b] = plan_def(t, &r->teacher, graph_find_value(t, lib->blocks[b].exit));
        if (r->ready[b] < 0)
            return lego_error(LEGO_ERR_INTERNAL, "block %d's exit is not computed by the teacher", b);
        r->by_ready[r->n_ready++] = b;
    }
    r->cut_def = -1;
    if (r->n_stages > 1 && r->stage == 0) {
        r->cut_def = plan_def(t, &r->teacher, graph_find_value(t, r->cut));
        if (r->cut_def < 0)
            return lego_error(LEGO_ERR_INTERNAL, "the teacher does not compute '%s', where the stages meet", r->cut);
    }
    for (int i = 1; i < r->n_ready; i++) /* insertion sort: a few dozen blocks */
        for (int j = i; j > 0 && r->ready[r->by_ready[j]] < r->ready[r->by_ready[j - 1]]; j--) {
            int k = r->by_ready[j];
            r->by_ready[j] = r->by_ready[j - 1];
            r->by_ready[j - 1] = k;
        }
    return lego_ok();
}

/* The teacher: the all-s=0 composition cut down to its block boundaries,
 * at the run's batch size, planned for inference with no gradients. */
static lego_status setup_teacher(run *r, lego_graph *full)
{
    block_library *lib = &r->lib;
    int *keep = NULL, n_keep = 0;
    lego_status st = lego_ok();
    for (int b = 0; b < lib->n_blocks + 1 && st.code == LEGO_OK; b++) {
        /* this stage's blocks' boundaries, and at the end, in stage 0 of
         * two, the cut (it has to be computed and saved) */
        bool cut = b == lib->n_blocks;
        if (cut ? !(r->n_stages > 1 && r->stage == 0) : !block_active(r, b))
            continue;
        const char *names[2] = {cut ? r->cut : lib->blocks[b].entry, cut ? r->cut : lib->blocks[b].exit};
        for (int e = 0; e < 2 && st.code == LEGO_OK; e++) {
            int v = graph_find_value(full, names[e]);
            if (v < 0) {
                st = lego_error(LEGO_ERR_FORMAT, "%s: block %d's boundary '%s' is not a value of the composed teacher",
                                lib->dir, b, names[e]);
                break;
            }
            bool dup = false;
            for (int i = 0; i < n_keep; i++)
                dup |= keep[i] == v;
            if (!dup)
                st = push_int(&keep, &n_keep, v);
        }
    }
    int stop = r->n_stages > 1 && r->stage == 1 ? graph_find_value(full, r->cut) : -1;
    if (st.code == LEGO_OK) {
        st = build_trunk(full, keep, n_keep, stop, r->o->batch, &r->trunk);
        if (st.code == LEGO_OK)
            r->trunk_init = true;
        else
            st = lego_error_context(st, "%s: the teacher cannot run at batch %d up to its last block", lib->dir,
                                    r->o->batch);
    }
    free(keep);
    LEGO_TRY(st);
    lego_graph *t = &r->trunk;
    if (t->n_inputs != 1)
        return lego_error(LEGO_ERR_UNSUPPORTED, "%s: retraining feeds one model input; the blocks depend on %d",
                          lib->dir, t->n_inputs);
    if (stop >= 0 && strcmp(t->values[t->inputs[0]].name, r->cut) != 0)
        return lego_error(LEGO_ERR_INTERNAL, "%s: the second stage's blocks do not all follow '%s'", lib->dir, r->cut);
    r->n_slots = t->n_outputs;
    r->slots = calloc((size_t)r->n_slots + 1, sizeof *r->slots);
    if (!r->slots)
        return nomem();
    for (int i = 0; i < r->n_slots; i++) {
        slot *s = &r->slots[i];
        s->tv = t->outputs[i];
        s->floats = lego_tensor_numel(&t->values[s->tv].t);
        s->off = r->record;
        r->record += (s->floats + 15) & ~(int64_t)15; /* 64-byte aligned in a record */
    }
    int in = t->inputs[0];
    tensor_set_shape(&r->x, LEGO_F32, t->values[in].t.rank, t->values[in].t.dims);
    return tensor_alloc(&r->x);
}

static lego_status set_batch(lego_graph *g, int batch)
{
    gvalue *x = &g->values[g->inputs[0]];
    x->t.dims[0] = batch;
    return graph_infer(g);
}

/* s's graph from the library, and its float initializers (vals,
 * n_floats: the weights a checkpoint holds). */
static lego_status load_student(run *r, student *s)
{
    LEGO_TRY(library_descendant(&r->lib, s->block, s->desc, &s->g));
    free(s->vals);
    s->vals = NULL;
    s->n_vals = 0;
    s->n_floats = 0;
    const lego_graph *g = s->g;
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].kind == VALUE_INITIALIZER && g->values[v].t.dtype == LEGO_F32) {
            LEGO_TRY(push_int(&s->vals, &s->n_vals, v));
            s->n_floats += lego_tensor_numel(&g->values[v].t);
        }
    return lego_ok();
}

static lego_status setup_student(run *r, student *s)
{
    block_library *lib = &r->lib;
    const lib_block *bl = &lib->blocks[s->block];
    LEGO_TRY(load_student(r, s));
    lego_graph *g = s->g;
    LEGO_TRY(lego_error_context(set_batch(g, r->o->batch), "%s at batch %d", lib->blocks[s->block].desc[s->desc].file,
                                r->o->batch));
    s->in_slot = slot_of(r, bl->entry);
    s->out_slot = slot_of(r, bl->exit);
    const lego_tensor *xin = &g->values[g->inputs[0]].t, *yout = &g->values[g->outputs[0]].t;
    char a[96], b[96];
    if (s->in_slot < 0 || s->out_slot < 0)
        return lego_error(LEGO_ERR_INTERNAL, "block %d's boundaries are not among the teacher's features", s->block);
    const lego_tensor *tin = &r->trunk.values[r->slots[s->in_slot].tv].t;
    const lego_tensor *tout = &r->trunk.values[r->slots[s->out_slot].tv].t;
    if (!tensor_same_shape(xin, tin) || !tensor_same_shape(yout, tout))
        return lego_error(LEGO_ERR_FORMAT, "%s maps %s to %s, but the teacher's block %d maps %s to %s",
                          lib->blocks[s->block].desc[s->desc].file, tensor_shape_str(xin, a, sizeof a),
                          tensor_shape_str(yout, b, sizeof b), s->block, tensor_shape_str(tin, a, sizeof a),
                          tensor_shape_str(tout, b, sizeof b));
    s->x = *xin;
    s->x.owns = 0;
    s->x.data = NULL;
    LEGO_TRY(train_trainable_params(g, &s->params, &s->n_params));
    int in = g->inputs[0], out = g->outputs[0];
    LEGO_TRY(train_plan_build_ex(g, &in, 1, &out, 1, s->params, s->n_params, false, &s->plan));
    s->planned = true;
    /* Park the plan in memory nobody touches (so not resident) until
     * give_storage gives it its group's buffer: otherwise every student's
     * own buffers, zeroed gradients included, would be resident together
     * (GBs at full width). */
    size_t bytes = train_plan_storage_bytes(&s->plan);
    if (!(s->parked = lego_aligned_alloc(bytes ? bytes : 64)))
        return nomem();
    train_plan_use_storage(&s->plan, s->parked);
    return lego_ok();
}

/* Adam over the student's parameters; after the plan has its final storage. */
static lego_status setup_optimizer(student *s)
{
    float **w = malloc(sizeof *w * ((size_t)s->n_params + 1));
    const float **gr = malloc(sizeof *gr * ((size_t)s->n_params + 1));
    int64_t *n = malloc(sizeof *n * ((size_t)s->n_params + 1));
    lego_status st = w && gr && n ? lego_ok() : nomem();
    for (int i = 0; st.code == LEGO_OK && i < s->n_params; i++) {
        w[i] = train_param(&s->plan, i)->data;
        gr[i] = train_param_grad(&s->plan, i)->data;
        n[i] = lego_tensor_numel(train_param(&s->plan, i));
    }
    optim_config cfg = optim_defaults(OPTIM_ADAM);
    if (st.code == LEGO_OK)
        st = optim_init(&s->opt, &cfg, w, gr, n, s->n_params);
    free(w), free(gr), free(n);
    return st;
}

/* The weights of s (vals in order) to or from buf. */
static void get_weights(const student *s, float *buf)
{
    for (int i = 0; i < s->n_vals; i++) {
        const lego_tensor *t = &s->g->values[s->vals[i]].t;
        int64_t n = lego_tensor_numel(t);
        memcpy(buf, t->data, sizeof *buf * (size_t)n);
        buf += n;
    }
}

static void set_weights(student *s, const float *buf)
{
    for (int i = 0; i < s->n_vals; i++) {
        lego_tensor *t = &s->g->values[s->vals[i]].t;
        int64_t n = lego_tensor_numel(t);
        memcpy(t->data, buf, sizeof *buf * (size_t)n);
        buf += n;
    }
}

/* 256 MiB, or an eighth of the memory when less: a small model's features
 * fit whole (2,000 images of the width-8 ResNet18 take 55 MB), while a
 * full-width ResNet18's (236 MB per batch of 128) would take GBs, and the
 * teacher pass they save costs a fraction of the students' epoch. By
 * default the cache holds every batch or none (plan_cache). */
static int64_t default_cache_bytes(void)
{
    int64_t cap = (int64_t)256 << 20;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && (int64_t)pages * page / 8 < cap)
        cap = (int64_t)pages * page / 8;
    return cap;
}

/* Which batches to keep once computed: the held-out ones first (they are
 * read every epoch and before the first), then training batches from the
 * start, as many as the cap allows. */
static lego_status plan_cache(run *r)
{
    r->cache = calloc((size_t)r->nb + 1, sizeof *r->cache);
    r->want = calloc((size_t)r->nb + 1, sizeof *r->want);
    if (!r->cache || !r->want)
        return nomem();
    /* a run split into stages is split for memory: by default, no cache */
    int64_t cap = r->o->cache_bytes >= 0 ? r->o->cache_bytes : r->n_stages > 1 ? 0 : default_cache_bytes();
    int64_t per = r->record * (int64_t)sizeof(float);
    int64_t fit = per > 0 ? cap / per : 0;
    /* by default all or nothing: a part of the batches saves only that part
     * of the teacher passes, for as much memory */
    if (r->o->cache_bytes < 0 && fit < r->nb)
        fit = 0;
    for (int64_t k = r->nt; k < r->nb && fit > 0; k++, fit--)
        r->want[k] = true;
    for (int64_t k = 0; k < r->nt && fit > 0; k++, fit--)
        r->want[k] = true;
    return lego_ok();
}

static int cmp_flops_desc(const void *a, const void *b, const run *r)
{
    const student *x = &r->st[*(const int *)a], *y = &r->st[*(const int *)b];
    int64_t fx = r->lib.blocks[x->block].desc[x->desc].flops, fy = r->lib.blocks[y->block].desc[y->desc].flops;
    if (fx != fy)
        return fx > fy ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

/* Insertion sort (qsort has no context argument in C11); a few dozen items. */
static void order_students(run *r)
{
    for (int i = 1; i < r->n_active; i++)
        for (int j = i; j > 0 && cmp_flops_desc(&r->order[j], &r->order[j - 1], r) < 0; j--) {
            int t = r->order[j];
            r->order[j] = r->order[j - 1];
            r->order[j - 1] = t;
        }
}

/* Assign the students (largest FLOPs first) to n groups, each to the least
 * loaded; bytes[g] receives the largest plan of group g. Returns the sum. */
static size_t assign_groups(run *r, int n, double *load, size_t *bytes)
{
    size_t total = 0;
    for (int g = 0; g < n; g++)
        load[g] = 0, bytes[g] = 0;
    for (int i = 0; i < r->n_active; i++) {
        student *s = &r->st[r->order[i]];
        int g = 0;
        for (int k = 1; k < n; k++)
            if (load[k] < load[g])
                g = k;
        r->group_of[r->order[i]] = g;
        load[g] += (double)r->lib.blocks[s->block].desc[s->desc].flops;
        size_t b = train_plan_storage_bytes(&s->plan);
        if (b > bytes[g])
            bytes[g] = b;
    }
    for (int g = 0; g < n; g++)
        total += bytes[g];
    return total;
}

/* Students train side by side, one group per thread, while their groups'
 * buffers together stay within RETRAIN_SIDE_BY_SIDE_BYTES; beyond that
 * (a full-width ResNet18's first block at batch 128 alone needs ~0.5 GB)
 * fewer groups, down to one student at a time with the kernels threaded
 * instead. Either way a student computes the same bits. */
#define RETRAIN_SIDE_BY_SIDE_BYTES ((size_t)256 << 20)

/* Side by side only pays for small students: when a student's step (three
 * times its forward FLOPs at the batch size) is over this on average, its
 * own kernels keep the threads busy, and one group needs one buffer, which
 * the teacher's activations can share (the second stage of the full-width
 * ResNet18 work unit, 23 GFLOP a step: 5-10% faster and 58 MB less than two
 * groups; the main job's 0.4 GFLOP students stay side by side). */
#define RETRAIN_THREADED_STEP_FLOPS 4e9

static double mean_step_flops(const run *r)
{
    double sum = 0;
    for (int j = 0; j < r->n_active; j++) {
        const student *s = &r->st[r->order[j]];
        sum += 3.0 * (double)r->o->batch * (double)r->lib.blocks[s->block].desc[s->desc].flops;
    }
    return r->n_active ? sum / r->n_active : 0;
}

static lego_status group_students(run *r)
{
    int most = par_threads() < r->n_active ? par_threads() : r->n_active;
    if (most < 1 || mean_step_flops(r) > RETRAIN_THREADED_STEP_FLOPS)
        most = 1;
    r->group_of = calloc((size_t)r->n_st + 1, sizeof *r->group_of);
    r->arena = calloc((size_t)most, sizeof *r->arena);
    r->arena_bytes = calloc((size_t)most, sizeof *r->arena_bytes);
    r->ws = calloc((size_t)most, sizeof *r->ws);
    double *load = calloc((size_t)most, sizeof *load);
    lego_status st = r->group_of && r->arena && r->arena_bytes && r->ws && load ? lego_ok() : nomem();
    r->n_groups = most;
    while (st.code == LEGO_OK && r->n_groups > 1 &&
           assign_groups(r, r->n_groups, load, r->arena_bytes) > RETRAIN_SIDE_BY_SIDE_BYTES)
        r->n_groups--;
    if (st.code == LEGO_OK)
        assign_groups(r, r->n_groups, load, r->arena_bytes);
    free(load);
    return st;
}

/* Value v of the teacher's arena waits in the carry while the students of
 * the blocks ready at step s run: it is live across s, or one of their
 * boundaries. */
static bool carried(const run *r, int s, int v)
{
    const exec_plan *p = &r->teacher;
    if (p->offset[v] == SIZE_MAX)
        return false;
    if (p->def[v] <= s && p->last[v] > s)
        return true;
    for (int b = 0; b < r->lib.n_blocks; b++)
        if (r->ready[b] == s && (r->slots[slot_of(r, r->lib.blocks[b].entry)].tv == v ||
                                 r->slots[slot_of(r, r->lib.blocks[b].exit)].tv == v))
            return true;
    return false;
}

/* Whether the teacher lends its activations to the students (r->share),
 * and the carry that takes: the most any pause holds. Sharing needs the
 * carry to be smaller than the memory it saves. */
static lego_status plan_sharing(run *r)
{
    if (!r->interleave)
        return lego_ok();
    const exec_plan *p = &r->teacher;
    size_t most = 0;
    for (int b = 0; b < r->lib.n_blocks; b++) {
        size_t n = 0;
        for (int v = 0; v < p->n_values; v++)
            if (carried(r, r->ready[b], v))
                n += (lego_tensor_bytes(&p->vt[v]) + 63) / 64 * 64;
        if (n > most)
            most = n;
    }
    size_t t = p->arena_bytes, u = r->arena_bytes[0];
    if (most >= (t < u ? t : u))
        return lego_ok();
    if (!(r->carry = lego_aligned_alloc(most ? most : 64)))
        return nomem();
    r->share = true;
    if (t > u)
        r->arena_bytes[0] = t;
    return lego_ok();
}

/* Each group's buffer, given to its students (and, sharing, to the
 * teacher), then the students' optimizers, which point into it. */
static lego_status give_storage(run *r)
{
    lego_status st = lego_ok();
    for (int g = 0; st.code == LEGO_OK && g < r->n_groups; g++)
        if (!(r->arena[g] = lego_aligned_alloc(r->arena_bytes[g] ? r->arena_bytes[g] : 64)))
            st = lego_error(LEGO_ERR_NOMEM, "cannot allocate %zu bytes for training the descendants",
                            r->arena_bytes[g]);
    if (st.code == LEGO_OK && r->share)
        exec_plan_use_arena(&r->teacher, r->arena[0]);
    /* the teacher never runs beside the students: one scratch serves both */
    exec_plan_use_workspace(&r->teacher, &r->ws[0]);
    for (int j = 0; st.code == LEGO_OK && j < r->n_active; j++) {
        int i = r->order[j];
        train_plan_use_storage(&r->st[i].plan, r->arena[r->group_of[i]]);
        train_plan_use_workspace(&r->st[i].plan, &r->ws[r->group_of[i]]);
        lego_aligned_free(r->st[i].parked);
        r->st[i].parked = NULL;
        st = setup_optimizer(&r->st[i]);
    }
    return st;
}

/* ---- stages --------------------------------------------------------------- */

static uLong crc_add(uLong crc, const void *d, size_t n);

/* Floats of one image of a boundary (its dims past the batch). */
static int64_t per_image(const int64_t *dims, int rank)
{
    int64_t n = 1;
    for (int i = 1; i < rank; i++)
        n *= dims[i];
    return n;
}

/* Whether every path from the model's inputs to value v passes through
 * value cut (v == cut included). seen and stack: n_values each. */
static bool follows(const lego_graph *g, int v, int cut, bool *seen, int *stack)
{
    memset(seen, 0, sizeof *seen * (size_t)g->n_values);
    int top = 0;
    stack[top++] = v;
    seen[v] = true;
    while (top > 0) {
        int u = stack[--top];
        if (u == cut)
            continue;
        if (g->values[u].kind == VALUE_INPUT)
            return false;
        int p = g->values[u].producer;
        if (p < 0)
            continue;
        const gnode *n = &g->nodes[p];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0 && !seen[n->in[i]])
                seen[n->in[i]] = true, stack[top++] = n->in[i];
    }
    return true;
}

/* What a stage of the blocks with in[b] == which would hold, roughly (see
 * retrain.h): its students' weights and two Adam moments, the teacher's
 * weights twice (its kernels' copies are larger than the ONNX weights), and
 * four times the largest pair of boundaries at the batch size (the largest
 * student's training buffer and the carry). */
static double stage_estimate(const run *r, const bool *in, bool which)
{
    const block_library *lib = &r->lib;
    double fixed = 0, pair = 0;
    for (int b = 0; b < lib->n_blocks; b++) {
        if (in[b] != which)
            continue;
        const lib_block *bl = &lib->blocks[b];
        fixed += 2.0 * sizeof(float) * (double)bl->params;
        for (int d = 1; d < bl->n_desc; d++)
            fixed += 3.0 * sizeof(float) * (double)bl->desc[d].params;
        double p = sizeof(float) * (double)r->o->batch *
                   (double)(per_image(bl->in_shape, bl->in_rank) + per_image(bl->out_shape, bl->out_rank));
        pair = p > pair ? p : pair;
    }
    return fixed + 4.0 * pair;
}

/* Whether the library's disk has room for `bytes` more, with a tenth to spare. */
static bool disk_has_room(const char *dir, double bytes)
{
    struct statvfs fs;
    return statvfs(dir, &fs) == 0 && (double)fs.f_bavail * (double)fs.f_frsize >= 1.1 * bytes;
}

/* Split in two where a block's entry separates the blocks, if the options
 * or the estimate say so (retrain.h); a resumed run keeps its checkpoint's
 * split (want_cut: its cut, "" for none). */
#define STAGE_SPLIT_FLOOR ((double)(128 << 20))

static lego_status plan_stages(run *r, const lego_graph *full, const char *want_cut)
{
    const block_library *lib = &r->lib;
    int nb = lib->n_blocks, nv = full->n_values;
    r->n_stages = 1;
    r->in_stage1 = calloc((size_t)nb + 1, sizeof *r->in_stage1);
    bool *in = calloc((size_t)nb + 1, sizeof *in), *seen = malloc(sizeof *seen * ((size_t)nv + 1));
    int *stack = malloc(sizeof *stack * ((size_t)nv + 1));
    lego_status st = r->in_stage1 && in && seen && stack ? lego_ok() : nomem();
    double one = 0, best = -1;
    int best_c = -1;
    if (st.code == LEGO_OK)
        one = stage_estimate(r, in, false);
    for (int c = 0; st.code == LEGO_OK && c < nb && (want_cut || r->o->stages != 1); c++) {
        int cut = graph_find_value(full, lib->blocks[c].entry);
        if (cut < 0 || full->values[cut].kind == VALUE_INPUT || (want_cut && strcmp(want_cut, lib->blocks[c].entry)))
            continue;
        int later = 0;
        for (int b = 0; b < nb; b++) {
            int e = graph_find_value(full, lib->blocks[b].entry), x = graph_find_value(full, lib->blocks[b].exit);
            in[b] = e >= 0 && x >= 0 && follows(full, e, cut, seen, stack) && follows(full, x, cut, seen, stack);
            later += in[b];
        }
        if (later == 0 || later == nb)
            continue;
        double a = stage_estimate(r, in, false), z = stage_estimate(r, in, true), m = a > z ? a : z;
        if (best_c < 0 || m < best) {
            best = m, best_c = c;
            memcpy(r->in_stage1, in, sizeof *in * (size_t)nb);
        }
    }
    free(in), free(seen), free(stack);
    LEGO_TRY(st);
    if (want_cut) {
        if (!want_cut[0])
            return lego_ok();
        if (best_c < 0)
            return lego_error(LEGO_ERR_ARG, "%s was written for two stages split at '%s', which this library cannot be; run without --resume to start over",
                              r->state_path, want_cut);
    } else if (best_c < 0) {
        if (r->o->stages == 2)
            return lego_error(LEGO_ERR_ARG, "%s cannot be retrained in two stages: no block's entry separates some blocks from the others",
                              lib->dir);
        return lego_ok();
    } else if (r->o->stages == 0 && !(one > STAGE_SPLIT_FLOOR && best <= 0.8 * one)) {
        return lego_ok();
    }
    const lego_tensor *ct = &full->values[graph_find_value(full, lib->blocks[best_c].entry)].t;
    int64_t cut_floats = (int64_t)r->o->batch * per_image(ct->dims, ct->rank);
    double file = (double)r->nb * (double)cut_floats * sizeof(float);
    if (!want_cut && r->o->stages == 0 && !disk_has_room(lib->dir, file))
        return lego_ok(); /* no room for the features: one stage */
    r->n_stages = 2;
    r->cut_floats = cut_floats;
    r->cut = strdup(lib->blocks[best_c].entry);
    r->feat_crc = calloc((size_t)r->nb + 1, sizeof *r->feat_crc);
    r->feat_written = calloc((size_t)r->nb + 1, sizeof *r->feat_written);
    if (!r->cut || !r->feat_crc || !r->feat_written)
        return nomem();
    for (int i = 0; i < r->n_st; i++)
        r->st[i].stage = r->in_stage1[r->st[i].block] ? 1 : 0;
    return lego_ok();
}

static int64_t cut_bytes(const run *r) { return r->cut_floats * (int64_t)sizeof(float); }

static uint32_t crc_of(const void *d, size_t n) { return (uint32_t)crc_add(crc32(0L, Z_NULL, 0), d, n); }

/* n bytes at x into the features file at `at`; *crc receives their CRC-32. */
static lego_status save_features(run *r, off_t at, const void *x, size_t n, uint32_t *crc)
{
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(r->feat_fd, (const char *)x + done, n - done, at + (off_t)done);
        if (w <= 0)
            return lego_error(LEGO_ERR_IO, "%s: cannot write: %s", r->feat_path, w < 0 ? strerror(errno) : "no progress");
        done += (size_t)w;
    }
    *crc = crc_of(x, n);
    return lego_ok();
}

/* n bytes of the features file at `at` into x: how many there were (fewer
 * at the file's end), or -1 on a read error (errno says which). */
static ssize_t read_features(const run *r, off_t at, void *x, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(r->feat_fd, (char *)x + done, n - done, at + (off_t)done);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

/* Stage 0: batch k's cut features into the file, once. */
static lego_status save_cut(run *r, int64_t k, const float *x)
{
    size_t n = (size_t)cut_bytes(r);
    LEGO_TRY(save_features(r, (off_t)k * (off_t)n, x, n, &r->feat_crc[k]));
    r->feat_written[k] = true;
    return lego_ok();
}

/* Stage 1: batch k's cut features from the file into r->x, checked. */
static lego_status load_cut(run *r, int64_t k)
{
    size_t n = (size_t)cut_bytes(r);
    ssize_t got = read_features(r, (off_t)k * (off_t)n, r->x.data, n);
    if (got < 0)
        return lego_error(LEGO_ERR_IO, "%s: read error: %s", r->feat_path, strerror(errno));
    if ((size_t)got < n)
        return lego_error(LEGO_ERR_FORMAT, "%s is cut short (batch %lld of %lld is missing); run without --resume to start over",
                          r->feat_path, (long long)k + 1, (long long)r->nb);
    if (!r->feat_written[k] || crc_of(r->x.data, n) != r->feat_crc[k])
        return lego_error(LEGO_ERR_FORMAT, "%s is damaged (batch %lld of %lld fails its checksum); run without --resume to start over",
                          r->feat_path, (long long)k + 1, (long long)r->nb);
    return lego_ok();
}

/* Stage 1 of two keeps its records on disk when nothing else caches them,
 * a later epoch will read them, and they take at most DISK_RECORDS_MAX and
 * fit: its teacher then runs once per batch, not once per epoch, for one
 * record's memory. */
#define DISK_RECORDS_MAX ((double)(1 << 30))

static lego_status plan_disk_records(run *r)
{
    r->feat_file_bytes = r->nb * cut_bytes(r);
    double bytes = (double)r->nb * (double)r->record * sizeof(float);
    if (r->stage != 1 || r->o->cache_bytes >= 0 || r->o->epochs < 2 || bytes > DISK_RECORDS_MAX ||
        !disk_has_room(r->lib.dir, bytes))
        return lego_ok();
    r->rec_crc = calloc((size_t)(r->nb * r->n_slots) + 1, sizeof *r->rec_crc);
    r->rec_on_disk = calloc((size_t)r->nb + 1, sizeof *r->rec_on_disk);
    if (!r->rec_crc || !r->rec_on_disk)
        return nomem();
    r->disk_records = true;
    r->feat_file_bytes += (int64_t)bytes;
    return lego_ok();
}

/* Where slot i of batch k's record sits in the file (after the cut's). */
static off_t record_at(const run *r, int64_t k, int i)
{
    return (off_t)cut_bytes(r) * (off_t)r->nb + ((off_t)k * (off_t)r->record + (off_t)r->slots[i].off) * (off_t)sizeof(float);
}

/* Stage 1: slot i of batch k, straight from the teacher's memory. */
static lego_status save_slot(run *r, int64_t k, int i, const float *x)
{
    return save_features(r, record_at(r, k, i), x, sizeof(float) * (size_t)r->slots[i].floats,
                         &r->rec_crc[k * r->n_slots + i]);
}

/* Batch k's record from the file into rec_buf, checked, and feat[] onto it. */
static lego_status load_record(run *r, int64_t k, const float **feat)
{
    for (int i = 0; i < r->n_slots; i++) {
        size_t n = sizeof(float) * (size_t)r->slots[i].floats;
        char *to = (char *)(r->rec_buf + r->slots[i].off);
        ssize_t got = read_features(r, record_at(r, k, i), to, n);
        if (got < 0 || (size_t)got < n)
            return lego_error(LEGO_ERR_IO, "%s: cannot read back batch %lld's features: %s", r->feat_path,
                              (long long)k + 1, got < 0 ? strerror(errno) : "the file is cut short");
        if (crc_of(to, n) != r->rec_crc[k * r->n_slots + i])
            return lego_error(LEGO_ERR_FORMAT, "%s was changed during the run (batch %lld's features fail their checksum)",
                              r->feat_path, (long long)k + 1);
        feat[i] = (const float *)to;
    }
    return lego_ok();
}

/* Once every batch's record is on disk, the teacher (its kernels' weights
 * and activations) goes, and one record's buffer takes its place. */
static lego_status drop_teacher(run *r)
{
    if (!r->disk_records || r->teacher_dropped)
        return lego_ok();
    for (int64_t k = 0; k < r->nb; k++)
        if (!r->rec_on_disk[k])
            return lego_ok();
    if (r->teacher_planned)
        exec_plan_free(&r->teacher);
    r->teacher_planned = false;
    r->teacher_dropped = true;
    if (!(r->rec_buf = lego_aligned_alloc(sizeof(float) * (size_t)(r->record ? r->record : 1))))
        return nomem();
    return lego_ok();
}

static lego_status open_features(run *r, bool resumed)
{
    if (r->n_stages < 2)
        return lego_ok();
    LEGO_TRY(plan_disk_records(r));
    int flags = r->stage == 1 ? (r->disk_records ? O_RDWR : O_RDONLY) : O_RDWR | O_CREAT | (resumed ? 0 : O_TRUNC);
    r->feat_fd = open(r->feat_path, flags | O_CLOEXEC, 0644);
    if (r->feat_fd < 0)
        return lego_error(LEGO_ERR_IO, "%s: cannot %s: %s%s", r->feat_path, r->stage == 1 ? "open" : "create",
                          strerror(errno), r->stage == 1 ? " (the first stage's features; run without --resume to start over)" : "");
    return lego_ok();
}

/* ---- setting a run up, stage by stage -------------------------------------- */

static lego_status peek_cut(run *r, char **cut, int *stage);

/* r->full: the library's model with every block at sparsity 0. */
static lego_status compose_full(run *r)
{
    if (r->full_init)
        return lego_ok();
    int *choice = calloc((size_t)r->lib.n_blocks + 1, sizeof *choice);
    if (!choice)
        return nomem();
    lego_status st = compose_model(&r->lib, choice, &r->full);
    free(choice);
    r->full_init = st.code == LEGO_OK;
    return st;
}

/* r->full gone, and the library's sparsity-0 graphs it was made of (a
 * trunk has its own copy of what it needs). */
static void release_full(run *r)
{
    if (r->full_init)
        graph_free(&r->full);
    r->full_init = false;
    for (int b = 0; r->lib_open && b < r->lib.n_blocks; b++)
        library_unload(&r->lib, b, 0);
}

/* The library, the data, the students and the stages. */
static lego_status setup(run *r, const char *dir)
{
    const retrain_options *o = r->o;
    LEGO_TRY(library_open(dir, &r->lib));
    r->lib_open = true;
    block_library *lib = &r->lib;
    if (lib->n_blocks == 0)
        return lego_error(LEGO_ERR_ARG, "%s has no blocks to retrain", dir);
    r->state_path = file_join(dir, RETRAIN_STATE_FILE);
    r->feat_path = file_join(dir, RETRAIN_FEATURES_FILE);
    if (!r->state_path || !r->feat_path)
        return nomem();

    /* the teacher (kept for the first stage's trunk), and the data shaped
     * for it */
    for (int b = 0; b < lib->n_blocks; b++)
        if (lib->blocks[b].n_desc < 1 || lib->blocks[b].desc[0].sparsity != 0)
            return lego_error(LEGO_ERR_FORMAT, "%s: block %d has no sparsity-0 descendant (the teacher's block)", dir, b);
    LEGO_TRY(compose_full(r));
    lego_graph *full = &r->full;
    lego_status st = lego_ok();
    const char *tname = o->task ? o->task : "classification";
    const lego_task *task = task_find(tname);
    if (!task)
        st = lego_error(LEGO_ERR_ARG, "no task '%s' (known: %s)", tname, task_names());
    if (st.code == LEGO_OK)
        st = task_open(task, o->data, full, o->batch, o->max_train, -1, o->seed, &r->data);
    for (int b = 0; b < lib->n_blocks && st.code == LEGO_OK; b++) {
        const char *names[2] = {lib->blocks[b].entry, lib->blocks[b].exit};
        for (int e = 0; e < 2 && st.code == LEGO_OK; e++)
            if (graph_find_value(full, names[e]) < 0)
                st = lego_error(LEGO_ERR_FORMAT, "%s: block %d's boundary '%s' is not a value of the composed teacher",
                                lib->dir, b, names[e]);
    }
    if (st.code == LEGO_OK) {
        r->nb = task_batches(r->data, SPLIT_TRAIN);
        if (r->nb < 2)
            st = lego_error(LEGO_ERR_ARG, "%s: retraining needs at least two batches of %d from the train split (one to train on, one held out), and it gives %lld; lower the batch size%s",
                            o->data, o->batch, (long long)r->nb, o->max_train > 0 ? " or raise max-train" : "");
    }
    r->nh = (int64_t)ceil(o->holdout * (double)r->nb - 1e-9);
    if (r->nh < 1)
        r->nh = 1;
    if (r->nh >= r->nb)
        r->nh = r->nb - 1;
    r->nt = r->nb - r->nh;

    /* the students: every descendant with s > 0 */
    for (int b = 0; b < lib->n_blocks; b++)
        r->n_st += lib->blocks[b].n_desc - 1;
    if (st.code == LEGO_OK && !(r->st = calloc((size_t)r->n_st + 1, sizeof *r->st)))
        st = nomem();
    for (int b = 0, i = 0; st.code == LEGO_OK && b < lib->n_blocks; b++)
        for (int d = 1; d < lib->blocks[b].n_desc; d++, i++)
            r->st[i].block = b, r->st[i].desc = d;
    char *want_cut = NULL;
    if (st.code == LEGO_OK && o->resume && file_exists(r->state_path))
        st = peek_cut(r, &want_cut, &r->stage);
    if (st.code == LEGO_OK)
        st = plan_stages(r, full, want_cut);
    free(want_cut);
    return st;
}

/* This stage's teacher, students and buffers. */
static lego_status setup_stage(run *r, bool resumed)
{
    LEGO_TRY(compose_full(r)); /* the first stage finds it composed by setup */
    lego_status st = setup_teacher(r, &r->full);
    release_full(r);
    LEGO_TRY(st);
    LEGO_TRY(plan_cache(r));
    r->order = calloc((size_t)r->n_st + 1, sizeof *r->order);
    if (!r->order)
        return nomem();
    for (int i = 0; i < r->n_st; i++)
        if (r->st[i].stage == r->stage) {
            LEGO_TRY(setup_student(r, &r->st[i]));
            r->order[r->n_active++] = i;
        }
    order_students(r);
    LEGO_TRY(group_students(r));
    r->interleave = r->n_groups == 1;
    /* an inference plan (a train plan would keep every activation of the
     * trunk, GBs at full width), whose boundaries live until their blocks'
     * students have run */
    LEGO_TRY(plan_teacher(r));
    LEGO_TRY(plan_sharing(r));
    LEGO_TRY(give_storage(r));
    return open_features(r, resumed);
}

/* ---- one batch ----------------------------------------------------------- */

/* Read batch k of the stream (stage 1 of two: of the features file) into
 * r->x. */
static lego_status next_batch(run *r, int64_t k)
{
    if (r->n_stages > 1 && r->stage == 1)
        return load_cut(r, k);
    int64_t got = task_next(r->data, SPLIT_TRAIN, r->x.data);
    if (got != r->o->batch)
        return lego_error(LEGO_ERR_INTERNAL, "%s: the train split gave %lld samples for batch %lld of %lld, not %d",
                          r->o->data, (long long)got, (long long)k + 1, (long long)r->nb, r->o->batch);
    return lego_ok();
}

/* Batch k's features from the cache: feat[i] receives slot i's data. */
static void cached_features(const run *r, int64_t k, const float **feat)
{
    for (int i = 0; i < r->n_slots; i++)
        feat[i] = r->cache[k] + r->slots[i].off;
}

static lego_status step_all(run *r, const float **feat, bool training, int epoch, int block);

/* Sharing (r->share), before the students of the blocks ready at step s
 * run: what the teacher keeps across s into the carry, and the features
 * that pointed at the teacher's copies to the carry's; after them (!out),
 * what the teacher reads later back into its arena. */
static void carry(run *r, int s, const float **feat, bool out)
{
    exec_plan *p = &r->teacher;
    size_t at = 0;
    for (int v = 0; v < p->n_values; v++) {
        if (!carried(r, s, v))
            continue;
        size_t n = lego_tensor_bytes(&p->vt[v]);
        unsigned char *c = r->carry + at;
        if (out) {
            parallel_memcpy(c, p->vt[v].data, n);
            for (int i = 0; i < r->n_slots; i++)
                if (feat[i] == p->vt[v].data)
                    feat[i] = (const float *)c;
        } else if (p->last[v] > s) {
            parallel_memcpy(p->vt[v].data, c, n);
        }
        at += (n + 63) / 64 * 64;
    }
}

/* The teacher on r->x (batch k), a step at a time. With r->interleave, as
 * soon as a block's boundaries exist its students take one step on them
 * (when `students`), before later steps reuse their memory; otherwise all
 * students step after the pass. The batch's record is filled on the way
 * when the cache plans to keep it. */
static lego_status teacher_pass(run *r, int64_t k, const float **feat, bool students, bool training, int epoch)
{
    lego_graph *g = &r->trunk;
    exec_plan *p = &r->teacher;
    p->vt[g->inputs[0]].data = r->x.data; /* kernels never write their inputs */
    /* the cache is optional: without memory for the record, no record */
    float *rec = r->want[k] ? lego_aligned_alloc(sizeof(float) * (size_t)r->record) : NULL;
    bool save = r->disk_records && !r->rec_on_disk[k];
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    lego_status st = lego_ok();
    int next = 0, nb = r->n_ready;
    double t0 = now_seconds();
    for (int s = 0; s < p->n_steps && st.code == LEGO_OK; s++) {
        const gnode *n = &g->nodes[p->steps[s]];
        op_call c;
        /* fused and packed steps */
        exec_step_call(g, n, &p->st[s], p->vt, exec_plan_workspace(p), in, out, &c);
        n->op->forward(&c);
        if (s == r->cut_def && !r->feat_written[k] &&
            (st = save_cut(r, k, p->vt[graph_find_value(g, r->cut)].data)).code)
            break;
        int first = next;
        for (; next < nb && r->ready[r->by_ready[next]] == s; next++) {
            int b = r->by_ready[next];
            int sl[2] = {slot_of(r, r->lib.blocks[b].entry), slot_of(r, r->lib.blocks[b].exit)};
            for (int e = 0; e < 2; e++) {
                const slot *x = &r->slots[sl[e]];
                feat[sl[e]] = p->vt[x->tv].data;
                if (save && (st = save_slot(r, k, sl[e], feat[sl[e]])).code)
                    break;
                if (rec) {
                    memcpy(rec + x->off, feat[sl[e]], sizeof(float) * (size_t)x->floats);
                    feat[sl[e]] = rec + x->off;
                }
            }
        }
        if (!students || !r->interleave || first == next)
            continue;
        r->teacher_seconds += now_seconds() - t0;
        if (r->share)
            carry(r, s, feat, true);
        for (int i = first; i < next && st.code == LEGO_OK; i++)
            st = step_all(r, feat, training, epoch, r->by_ready[i]);
        if (r->share)
            carry(r, s, feat, false);
        t0 = now_seconds();
    }
    r->teacher_seconds += now_seconds() - t0;
    if (students && !r->interleave && st.code == LEGO_OK)
        st = step_all(r, feat, training, epoch, -1);
    r->teacher_count++;
    if (save && st.code == LEGO_OK)
        r->rec_on_disk[k] = true;
    if (rec && st.code == LEGO_OK) {
        r->cache[k] = rec;
        r->cached++;
    } else {
        lego_aligned_free(rec);
    }
    return st;
}

/* Batch k (read into r->x unless cached): its features, and one step of
 * every student on them when `students`. */
static lego_status batch_pass(run *r, int64_t k, const float **feat, bool students, bool training, int epoch)
{
    if (r->teacher_dropped) {
        LEGO_TRY(load_record(r, k, feat));
    } else if (r->cache[k]) {
        cached_features(r, k, feat);
    } else {
        return teacher_pass(r, k, feat, students, training, epoch);
    }
    return students ? step_all(r, feat, training, epoch, -1) : lego_ok();
}

/* Whether batch k's input is to be read before its pass: the dataset is a
 * stream, read in order; the features file is read where the teacher will
 * run (`runs`: the pass computes the batch). */
static bool read_input(const run *r, int64_t k, bool runs)
{
    if (r->n_stages < 2 || r->stage == 0)
        return true;
    return runs && !r->cache[k] && !r->teacher_dropped;
}

/* Mean squared error of pred against target (n floats) and, when grad is
 * not NULL, its gradient 2(pred - target)/n, as loss_mse gives them but
 * written for the vectorizer: 16 float lanes summed per block of MSE_BLOCK
 * elements into a double, the blocks' sums added in order, and a division
 * hoisted out of the loop. It runs for every student on every batch, over
 * whole feature maps, so the blocks are split among the threads: each
 * block's sum is the same on any thread, and their order is fixed, so the
 * loss has the same bits for any thread count. */
#define MSE_BLOCK 1024

typedef struct mse_run {
    const float *pred, *target;
    float *grad;
    int64_t n;
    double *part; /* per block */
    float scale;
} mse_run;

static void mse_blocks(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const mse_run *m = ctx;
    for (int64_t k = begin; k < end; k++) {
        int64_t b = k * MSE_BLOCK, e = m->n - b < MSE_BLOCK ? m->n : b + MSE_BLOCK;
        const float *pred = m->pred, *target = m->target;
        float lane[16] = {0};
        int64_t i = b;
        for (; i + 16 <= e; i += 16)
            for (int l = 0; l < 16; l++) {
                float d = pred[i + l] - target[i + l];
                lane[l] += d * d;
            }
        for (; i < e; i++) {
            float d = pred[i] - target[i];
            lane[0] += d * d;
        }
        double part = 0;
        for (int l = 0; l < 16; l++)
            part += lane[l];
        m->part[k] = part;
        if (m->grad)
            for (i = b; i < e; i++)
                m->grad[i] = m->scale * (pred[i] - target[i]);
    }
}

static double mse(const float *pred, const float *target, int64_t n, float *grad)
{
    if (n <= 0)
        return 0;
    int64_t blocks = (n + MSE_BLOCK - 1) / MSE_BLOCK;
    double one, total = 0, *part = blocks == 1 ? NULL : malloc(sizeof *part * (size_t)blocks);
    mse_run m = {pred, target, grad, n, part, 2.0f / (float)n};
    if (part) {
        parallel_run(blocks, par_split_work(blocks, 4.0 * MSE_BLOCK), mse_blocks, &m);
        for (int64_t k = 0; k < blocks; k++)
            total += part[k];
        free(part);
        return total / (double)n;
    }
    for (int64_t b = 0; b < n; b += MSE_BLOCK) { /* one block, or no memory for their sums */
        mse_run one_block = {pred + b, target + b, grad ? grad + b : NULL,
                             n - b < MSE_BLOCK ? n - b : MSE_BLOCK, &one, m.scale};
        mse_blocks(&one_block, 0, 1, 0);
        total += one;
    }
    return total / (double)n;
}

typedef struct step_ctx {
    run *r;
    const float **feat;
    bool training;
    int epoch;
    int block; /* the students of this block, or of all when -1 */
} step_ctx;

static void step_student(step_ctx *c, student *s)
{
    s->x.data = (void *)c->feat[s->in_slot];
    const lego_tensor *xs[1] = {&s->x};
    lego_status st = train_forward(&s->plan, xs, c->training);
    if (st.code) {
        s->err = st;
        return;
    }
    const lego_tensor *y = train_output(&s->plan, 0);
    const float *target = c->feat[s->out_slot];
    int64_t n = lego_tensor_numel(y);
    if (!c->training) {
        s->eval_sum += mse(y->data, target, n, NULL);
        s->eval_n++;
        return;
    }
    double loss = mse(y->data, target, n, train_output_grad(&s->plan, 0)->data);
    if (!isfinite(loss)) {
        const lib_block *bl = &c->r->lib.blocks[s->block];
        s->err = lego_error(LEGO_ERR_ARG, "block %d at sparsity %g: the loss became %s in epoch %d (learning rate %g may be too high)",
                            s->block, bl->desc[s->desc].sparsity, isnan(loss) ? "NaN" : "infinite", c->epoch + 1,
                            (double)c->r->o->lr);
        return;
    }
    train_backward(&s->plan);
    optim_step(&s->opt, c->r->o->lr);
    s->train_sum += loss;
    s->train_n++;
}

/* One chunk per group: its students one after another, largest first.
 * With several groups every kernel a student runs finds the pool busy and
 * runs inline (threads.h), with the chunking it would have had, so a
 * student computes the same bits whichever group or thread it lands on;
 * with one group the kernels use the pool. */
static void step_chunk(void *ctx, int64_t begin, int64_t end, int chunk)
{
    step_ctx *c = ctx;
    (void)chunk;
    for (int64_t g = begin; g < end; g++)
        for (int i = 0; i < c->r->n_active; i++) {
            student *s = &c->r->st[c->r->order[i]];
            if (c->r->group_of[c->r->order[i]] == g && s->err.code == LEGO_OK &&
                (c->block < 0 || s->block == c->block))
                step_student(c, s);
        }
}

static lego_status step_all(run *r, const float **feat, bool training, int epoch, int block)
{
    step_ctx c = {r, feat, training, epoch, block};
    double t0 = now_seconds();
    if (r->n_groups > 1)
        parallel_for_chunks(r->n_groups, r->n_groups, step_chunk, &c);
    else
        step_chunk(&c, 0, 1, 0); /* one at a time: the kernels take the threads */
    r->student_seconds += now_seconds() - t0;
    for (int j = 0; j < r->n_active; j++) {
        student *s = &r->st[r->order[j]];
        if (s->err.code) {
            lego_status st = s->err;
            memset(&s->err, 0, sizeof st);
            return st;
        }
    }
    return lego_ok();
}

static double mean_of(const run *r, bool train)
{
    double sum = 0;
    for (int j = 0; j < r->n_active; j++) {
        const student *s = &r->st[r->order[j]];
        int64_t n = train ? s->train_n : s->eval_n;
        sum += n ? (train ? s->train_sum : s->eval_sum) / (double)n : 0;
    }
    return r->n_active ? sum / r->n_active : 0;
}

/* ---- passes ---------------------------------------------------------------- */

/* The held-out features and the initial held-out losses; the training
 * batches planned for the cache are computed on the way. */
static lego_status first_pass(run *r)
{
    progress bar;
    progress_start(&bar, "features", r->nb, r->o->quiet);
    task_start(r->data, SPLIT_TRAIN, 0);
    const float **feat = calloc((size_t)r->n_slots + 1, sizeof *feat);
    if (!feat)
        return nomem();
    lego_status st = lego_ok();
    for (int64_t k = 0; k < r->nb && st.code == LEGO_OK; k++) {
        bool runs = k >= r->nt || r->want[k];
        if (read_input(r, k, runs))
            st = next_batch(r, k);
        if (st.code == LEGO_OK && runs)
            st = batch_pass(r, k, feat, k >= r->nt, false, -1);
        progress_update(&bar, k + 1, NULL);
    }
    free(feat);
    char msg[96];
    snprintf(msg, sizeof msg, "held-out mse %.5g", mean_of(r, false));
    progress_finish(&bar, st.code ? NULL : msg);
    LEGO_TRY(st);
    for (int j = 0; j < r->n_active; j++) {
        student *s = &r->st[r->order[j]];
        s->initial = s->best_loss = s->eval_n ? s->eval_sum / (double)s->eval_n : 0;
        s->best_train = NAN;
        s->best_epoch = 0; /* the library's weights: no copy needed */
        s->eval_sum = 0, s->eval_n = 0;
    }
    return lego_ok();
}

static lego_status train_epoch(run *r, int epoch, retrain_epoch *es)
{
    const retrain_options *o = r->o;
    bool stream = r->cached < r->nb;
    if (stream)
        task_start(r->data, SPLIT_TRAIN, 0);
    for (int j = 0; j < r->n_active; j++) {
        student *s = &r->st[r->order[j]];
        s->train_sum = s->eval_sum = 0;
        s->train_n = s->eval_n = 0;
    }
    const float **feat = calloc((size_t)r->n_slots + 1, sizeof *feat);
    if (!feat)
        return nomem();
    progress bar;
    char label[48], msg[128];
    snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, o->epochs);
    progress_start(&bar, label, r->nt, o->quiet);
    int64_t teacher0 = r->teacher_count;
    double t0 = now_seconds();
    lego_status st = lego_ok();
    for (int64_t k = 0; k < r->nt && st.code == LEGO_OK; k++) {
        if (stream && read_input(r, k, true))
            st = next_batch(r, k);
        if (st.code == LEGO_OK)
            st = batch_pass(r, k, feat, true, true, epoch);
        double el = now_seconds() - t0;
        snprintf(msg, sizeof msg, "mse %.5g  %.0f samples/s", mean_of(r, true),
                 el > 0 ? (double)(k + 1) * o->batch / el : 0);
        progress_update(&bar, k + 1, msg);
    }
    double train_seconds = now_seconds() - t0;
    snprintf(msg, sizeof msg, "mse %.5g", mean_of(r, true));
    progress_finish(&bar, st.code ? NULL : msg);
    progress hb;
    progress_start(&hb, "  held-out", r->nh, o->quiet);
    for (int64_t k = r->nt; k < r->nb && st.code == LEGO_OK; k++) {
        if (stream && read_input(r, k, true))
            st = next_batch(r, k);
        if (st.code == LEGO_OK)
            st = batch_pass(r, k, feat, true, false, epoch);
        progress_update(&hb, k - r->nt + 1, NULL);
    }
    free(feat);
    int improved = 0;
    for (int j = 0; st.code == LEGO_OK && j < r->n_active; j++) {
        student *s = &r->st[r->order[j]];
        double loss = s->eval_n ? s->eval_sum / (double)s->eval_n : INFINITY;
        if (loss < s->best_loss) {
            s->best_loss = loss;
            s->best_train = s->train_n ? s->train_sum / (double)s->train_n : NAN;
            s->best_epoch = epoch + 1; /* the current weights: the checkpoint keeps them */
            improved++;
        }
    }
    snprintf(msg, sizeof msg, "mse %.5g  (%d of %d improved)", mean_of(r, false), improved, r->n_active);
    progress_finish(&hb, st.code ? NULL : msg);
    LEGO_TRY(st);
    memset(es, 0, sizeof *es);
    es->epoch = epoch + 1;
    es->epochs = o->epochs;
    es->train_loss = mean_of(r, true);
    es->holdout_loss = mean_of(r, false);
    es->improved = improved;
    es->teacher_batches = r->teacher_count - teacher0;
    es->seconds = now_seconds() - t0;
    es->samples_per_sec = train_seconds > 0 ? (double)(r->nt * o->batch) / train_seconds : 0;
    return lego_ok();
}

/* ---- the checkpoint file --------------------------------------------------- */

#define STATE_MAGIC "LEGORTRN"
#define STATE_VERSION 4u

/* The checkpoint streams to its file, its CRC-32 computed on the way and
 * written last: in memory it would be every student's weights four times
 * over (hundreds of MB at full width) on top of the training buffers. A
 * CRC-32 (zlib's, 3 GB/s here) catches a damaged or cut file as well as
 * the SHA-256 of version 2 did (240 MB/s: about a second per epoch of a
 * full-width ResNet18, while the other thread waited). */
typedef struct wbuf {
    FILE *f;
    uLong crc;
    bool failed;
} wbuf;

/* crc extended by n bytes at d (crc32 takes a uInt length). */
static uLong crc_add(uLong crc, const void *d, size_t n)
{
    for (size_t at = 0; at < n;) {
        uInt part = n - at > (1u << 30) ? 1u << 30 : (uInt)(n - at);
        crc = crc32(crc, (const Bytef *)d + at, part);
        at += part;
    }
    return crc;
}

static void put(wbuf *w, const void *d, size_t n)
{
    if (w->failed || n == 0)
        return;
    w->crc = crc_add(w->crc, d, n);
    w->failed = fwrite(d, 1, n, w->f) != n;
}

static void put_u32(wbuf *w, uint32_t v) { put(w, &v, sizeof v); }
static void put_i64(wbuf *w, int64_t v) { put(w, &v, sizeof v); }
static void put_f64(wbuf *w, double v) { put(w, &v, sizeof v); }
static void put_str(wbuf *w, const char *s)
{
    put_u32(w, (uint32_t)strlen(s));
    put(w, s, strlen(s));
}

/* The checkpoint is read as it was written, a piece at a time: in memory
 * it would be as large again as every student's weights and moments. */
typedef struct rbuf {
    FILE *f;
    int64_t left; /* bytes before the checksum */
    bool bad;
} rbuf;

static void get(rbuf *r, void *d, size_t n)
{
    if (r->bad || r->left < (int64_t)n || fread(d, 1, n, r->f) != n) {
        r->bad = true;
        memset(d, 0, n);
        return;
    }
    r->left -= (int64_t)n;
}

/* Skips n bytes; returns where they started. */
static int64_t skip(rbuf *r, size_t n)
{
    long at = ftell(r->f);
    if (r->bad || at < 0 || r->left < (int64_t)n || fseek(r->f, (long)n, SEEK_CUR) != 0) {
        r->bad = true;
        return -1;
    }
    r->left -= (int64_t)n;
    return at;
}

static uint32_t get_u32(rbuf *r)
{
    uint32_t v;
    get(r, &v, sizeof v);
    return v;
}
static int64_t get_i64(rbuf *r)
{
    int64_t v;
    get(r, &v, sizeof v);
    return v;
}
static double get_f64(rbuf *r)
{
    double v;
    get(r, &v, sizeof v);
    return v;
}
/* A string of the state, compared with `want`. */
static bool get_str_is(rbuf *r, const char *want)
{
    uint32_t n = get_u32(r);
    if (r->bad || r->left < (int64_t)n) {
        r->bad = true;
        return false;
    }
    if (n != strlen(want)) {
        skip(r, n);
        return false;
    }
    char *got = malloc((size_t)n + 1);
    if (!got) {
        r->bad = true;
        return false;
    }
    get(r, got, n);
    bool same = !r->bad && memcmp(got, want, n) == 0;
    free(got);
    return same;
}

static const char *task_name(const retrain_options *o) { return o->task ? o->task : "classification"; }

/* Appends s's kept weights from the last checkpoint (*old, opened on first
 * use) to w; false when they cannot be read. */
static bool copy_kept(const run *r, FILE **old, const student *s, wbuf *w)
{
    if (!*old && !(*old = fopen(r->state_path, "rb")))
        return false;
    if (fseek(*old, (long)s->best_at, SEEK_SET) != 0)
        return false;
    unsigned char chunk[16384];
    for (size_t left = sizeof(float) * (size_t)s->n_floats; left > 0;) {
        size_t n = left < sizeof chunk ? left : sizeof chunk;
        if (fread(chunk, 1, n, *old) != n)
            return false;
        put(w, chunk, n);
        left -= n;
    }
    return true;
}

/* Where a student stands in a checkpoint: its stage is still to come
 * (only its identity is written), over (its losses and kept weights), or
 * this one (everything, Adam's moments included). */
enum { STUDENT_LATER = 0, STUDENT_DONE = 1, STUDENT_NOW = 2 };

static uint32_t student_status(const run *r, const student *s)
{
    return s->stage > r->stage ? STUDENT_LATER : s->stage < r->stage ? STUDENT_DONE : STUDENT_NOW;
}

/* The kept weights are written only for students whose held-out loss
 * improved (best_epoch > 0; otherwise they are the library's own): the
 * current weights when that was in this epoch, else a copy of the last
 * checkpoint's. So they never sit in memory: at full width that was tens
 * of MB for as long as the run lasted. */
static lego_status write_state(run *r, int epochs_done, double seconds)
{
    const retrain_options *o = r->o;
    size_t plen = strlen(r->state_path) + 32;
    char *tmp = malloc(plen);
    if (!tmp)
        return nomem();
    snprintf(tmp, plen, "%s.tmp.%ld", r->state_path, (long)getpid());
    wbuf w;
    memset(&w, 0, sizeof w);
    w.f = fopen(tmp, "wb");
    if (!w.f) {
        lego_status e = lego_error(LEGO_ERR_IO, "%s: cannot write: %s", r->state_path, strerror(errno));
        free(tmp);
        return e;
    }
    w.crc = crc32(0L, Z_NULL, 0);
    bool oom = false;
    put(&w, STATE_MAGIC, 8);
    put_u32(&w, STATE_VERSION);
    put_u32(&w, (uint32_t)epochs_done);
    put_u32(&w, (uint32_t)o->batch);
    put_i64(&w, (int64_t)o->seed);
    put(&w, &o->lr, sizeof o->lr);
    put_f64(&w, o->holdout);
    put_i64(&w, o->max_train);
    put_i64(&w, r->nb);
    put_i64(&w, r->nt);
    put_str(&w, task_name(o));
    put_str(&w, o->data);
    put_f64(&w, seconds);
    put_i64(&w, r->teacher_before + r->teacher_count);
    put_u32(&w, (uint32_t)r->n_st);
    put_u32(&w, (uint32_t)r->n_stages);
    put_u32(&w, (uint32_t)r->stage);
    put_str(&w, r->cut ? r->cut : "");
    for (int64_t k = 0; r->n_stages > 1 && k < r->nb; k++) {
        put_u32(&w, r->feat_crc[k]);
        put_u32(&w, r->feat_written[k]);
    }
    float *cur = NULL;
    int64_t *at = calloc((size_t)r->n_st + 1, sizeof *at); /* the kept weights' new places */
    FILE *old = NULL;
    int lost = -1; /* a student whose kept weights could not be read back */
    oom = !at;
    for (int i = 0; i < r->n_st && !w.failed && !oom && lost < 0; i++) {
        student *s = &r->st[i];
        uint32_t status = student_status(r, s);
        put_u32(&w, status);
        put_u32(&w, (uint32_t)s->block);
        put_u32(&w, (uint32_t)s->desc);
        put(&w, r->lib.blocks[s->block].desc[s->desc].sha256, 64);
        if (status == STUDENT_LATER)
            continue;
        put_f64(&w, s->initial);
        put_f64(&w, s->best_loss);
        put_f64(&w, s->best_train);
        put_u32(&w, (uint32_t)s->best_epoch);
        if (status == STUDENT_DONE) { /* its kept weights, if any, from the last checkpoint */
            put_i64(&w, s->n_floats);
            if (s->best_epoch > 0) {
                at[i] = (int64_t)ftell(w.f);
                w.failed |= at[i] < 0;
                if (!copy_kept(r, &old, s, &w))
                    lost = i;
            }
            continue;
        }
        put_i64(&w, s->opt.steps);
        put_i64(&w, s->n_floats);
        float *c = realloc(cur, sizeof *c * ((size_t)s->n_floats + 1));
        if (!c) {
            oom = true;
            break;
        }
        cur = c;
        get_weights(s, cur);
        put(&w, cur, sizeof *cur * (size_t)s->n_floats);
        if (s->best_epoch > 0) {
            at[i] = (int64_t)ftell(w.f);
            w.failed |= at[i] < 0;
            if (s->best_epoch == epochs_done)
                put(&w, cur, sizeof *cur * (size_t)s->n_floats);
            else if (!copy_kept(r, &old, s, &w))
                lost = i;
        }
        put_u32(&w, (uint32_t)s->n_params);
        for (int j = 0; j < s->n_params; j++) {
            const optim_param *p = &s->opt.p[j];
            put_i64(&w, p->n);
            put(&w, p->m, sizeof(float) * (size_t)p->n);
            put(&w, p->v, sizeof(float) * (size_t)p->n);
        }
    }
    free(cur);
    if (old)
        fclose(old);
    uint32_t crc = (uint32_t)w.crc;
    if (!w.failed && !oom && lost < 0)
        w.failed = fwrite(&crc, 1, sizeof crc, w.f) != sizeof crc;
    int err = errno;
    bool closed = fclose(w.f) == 0;
    lego_status st = lego_ok();
    if (oom)
        st = nomem();
    else if (lost >= 0)
        st = lego_error(LEGO_ERR_IO, "%s: cannot read back the kept weights of %s", r->state_path,
                        r->lib.blocks[r->st[lost].block].desc[r->st[lost].desc].file);
    else if (w.failed || !closed || rename(tmp, r->state_path) != 0)
        st = lego_error(LEGO_ERR_IO, "%s: cannot write: %s", r->state_path, strerror(w.failed ? err : errno));
    if (st.code)
        remove(tmp);
    for (int i = 0; st.code == LEGO_OK && i < r->n_st; i++)
        if (r->st[i].best_epoch > 0)
            r->st[i].best_at = at[i];
    free(at);
    free(tmp);
    return st;
}

static lego_status state_mismatch(const run *r, const char *what)
{
    return lego_error(LEGO_ERR_ARG, "%s was written %s; rerun with the same options to resume it, or without --resume to start over",
                      r->state_path, what);
}

/* Load the checkpoint into the students; *epochs_done receives its epoch. */
static lego_status read_state(run *r, int *epochs_done)
{
    const retrain_options *o = r->o;
    FILE *f = fopen(r->state_path, "rb");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot open: %s", r->state_path, strerror(errno));
    long flen = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    int64_t len = flen > 0 ? (int64_t)flen : 0;
    unsigned char head[12];
    bool headed = flen >= 0 && fseek(f, 0, SEEK_SET) == 0 && fread(head, 1, sizeof head, f) == sizeof head;
    lego_status st = lego_ok();
    uint32_t older = 0;
    if (headed)
        memcpy(&older, head + 8, 4);
    if (!headed || len < 8 + 4 + 4 || memcmp(head, STATE_MAGIC, 8) != 0) {
        st = lego_error(LEGO_ERR_FORMAT, "%s is not a retraining checkpoint; delete it (or run without --resume) to start over",
                        r->state_path);
    } else if (older >= 1 && older < STATE_VERSION) {
        /* its checksum is another kind: say so rather than "damaged" */
        st = lego_error(LEGO_ERR_FORMAT, "%s is a checkpoint of format %u, from an older legodnn (this one writes %u); delete it (or run without --resume) to start over",
                        r->state_path, older, STATE_VERSION);
    } else { /* the checksum first, over the whole file, before anything is taken from it */
        uLong crc = crc32(0L, Z_NULL, 0);
        unsigned char piece[1 << 16];
        int64_t left = len - 4;
        bool read_ok = fseek(f, 0, SEEK_SET) == 0;
        while (read_ok && left > 0) {
            size_t n = left < (int64_t)sizeof piece ? (size_t)left : sizeof piece;
            read_ok = fread(piece, 1, n, f) == n;
            crc = crc_add(crc, piece, n);
            left -= (int64_t)n;
        }
        uint32_t want = 0;
        read_ok = read_ok && fread(&want, 1, 4, f) == 4;
        if (!read_ok)
            st = lego_error(LEGO_ERR_IO, "%s: read error", r->state_path);
        else if ((uint32_t)crc != want)
            st = lego_error(LEGO_ERR_FORMAT, "%s is damaged (its checksum fails); delete it (or run without --resume) to start over",
                            r->state_path);
    }
    rbuf rb = {f, len - 4 - 8, false};
    if (st.code == LEGO_OK && fseek(f, 8, SEEK_SET) != 0)
        st = lego_error(LEGO_ERR_IO, "%s: read error", r->state_path);
    float *cur = NULL; /* one student's weights at a time */
    char what[256];
    if (st.code == LEGO_OK) {
        uint32_t version = get_u32(&rb);
        uint32_t done = get_u32(&rb);
        uint32_t batch = get_u32(&rb);
        int64_t seed = get_i64(&rb);
        float lr;
        get(&rb, &lr, sizeof lr);
        double holdout = get_f64(&rb);
        int64_t max_train = get_i64(&rb);
        int64_t nb = get_i64(&rb), nt = get_i64(&rb);
        bool same_task = get_str_is(&rb, task_name(o));
        bool same_data = get_str_is(&rb, o->data);
        double seconds = get_f64(&rb);
        int64_t teacher = get_i64(&rb);
        uint32_t n_st = get_u32(&rb);
        uint32_t n_stages = get_u32(&rb), stage = get_u32(&rb);
        bool same_cut = get_str_is(&rb, r->cut ? r->cut : "");
        for (int64_t k = 0; r->n_stages > 1 && n_stages == (uint32_t)r->n_stages && k < r->nb; k++) {
            r->feat_crc[k] = get_u32(&rb);
            r->feat_written[k] = get_u32(&rb) != 0;
        }
        what[0] = 0;
        if (rb.bad || version != STATE_VERSION)
            st = lego_error(LEGO_ERR_FORMAT, "%s is not a checkpoint this version reads; delete it (or run without --resume) to start over",
                            r->state_path);
        else if (!same_task || !same_data)
            snprintf(what, sizeof what, "for another %s", same_task ? "dataset" : "task");
        else if (batch != (uint32_t)o->batch)
            snprintf(what, sizeof what, "with batch %u (this run: %d)", batch, o->batch);
        else if (seed != (int64_t)o->seed)
            snprintf(what, sizeof what, "with seed %lld (this run: %llu)", (long long)seed, (unsigned long long)o->seed);
        else if (lr != o->lr)
            snprintf(what, sizeof what, "with learning rate %g (this run: %g)", (double)lr, (double)o->lr);
        else if (holdout != o->holdout)
            snprintf(what, sizeof what, "with held-out fraction %g (this run: %g)", holdout, o->holdout);
        else if (max_train != o->max_train)
            snprintf(what, sizeof what, "with max-train %lld (this run: %lld)", (long long)max_train,
                     (long long)o->max_train);
        else if (nb != r->nb || nt != r->nt)
            snprintf(what, sizeof what, "for %lld batches (%lld held out); the data now gives %lld (%lld)",
                     (long long)nb, (long long)(nb - nt), (long long)r->nb, (long long)r->nh);
        else if (n_st != (uint32_t)r->n_st)
            snprintf(what, sizeof what, "for %u descendants; the library has %d", n_st, r->n_st);
        else if (n_stages != (uint32_t)r->n_stages || stage != (uint32_t)r->stage || !same_cut)
            snprintf(what, sizeof what, "in another split into stages (%u, at stage %u)", n_stages, stage + 1);
        if (st.code == LEGO_OK && what[0])
            st = state_mismatch(r, what);
        *epochs_done = (int)done;
        r->seconds_before = seconds;
        r->teacher_before = teacher;
    }
    for (int i = 0; st.code == LEGO_OK && i < r->n_st; i++) {
        student *s = &r->st[i];
        const lib_descendant *x = &r->lib.blocks[s->block].desc[s->desc];
        uint32_t status = get_u32(&rb), b = get_u32(&rb), d = get_u32(&rb);
        char sha[64];
        get(&rb, sha, 64);
        if (!rb.bad && (b != (uint32_t)s->block || d != (uint32_t)s->desc || memcmp(sha, x->sha256, 64) != 0)) {
            st = lego_error(LEGO_ERR_ARG, "%s belongs to other descendant files than %s has now (the library changed, or that run finished); run without --resume to start over",
                            r->state_path, x->file);
            break;
        }
        if (rb.bad || status != student_status(r, s)) {
            st = lego_error(LEGO_ERR_FORMAT, "%s does not match %s; run without --resume to start over",
                            r->state_path, x->file);
            break;
        }
        if (status == STUDENT_LATER)
            continue;
        s->initial = get_f64(&rb);
        s->best_loss = get_f64(&rb);
        s->best_train = get_f64(&rb);
        s->best_epoch = (int)get_u32(&rb);
        if (status == STUDENT_DONE) {
            s->done = true;
            s->n_floats = get_i64(&rb);
            if (!rb.bad && (s->n_floats < 0 || s->n_floats > rb.left / (int64_t)sizeof(float)))
                rb.bad = true;
            if (!rb.bad && s->best_epoch > 0)
                s->best_at = skip(&rb, sizeof(float) * (size_t)s->n_floats);
            if (rb.bad)
                st = lego_error(LEGO_ERR_FORMAT, "%s does not match %s's weights; run without --resume to start over",
                                r->state_path, x->file);
            continue;
        }
        int64_t steps = get_i64(&rb);
        int64_t nf = get_i64(&rb);
        int64_t copies = s->best_epoch > 0 ? 2 : 1; /* the current weights, and the kept ones if any */
        if (rb.bad || nf != s->n_floats || rb.left < copies * (int64_t)sizeof(float) * nf) {
            st = lego_error(LEGO_ERR_FORMAT, "%s does not match %s's weights; run without --resume to start over",
                            r->state_path, x->file);
            break;
        }
        float *c = realloc(cur, sizeof *c * ((size_t)nf + 1));
        if (!c) {
            st = nomem();
            break;
        }
        cur = c;
        get(&rb, cur, sizeof *cur * (size_t)nf);
        if (!rb.bad)
            set_weights(s, cur);
        if (s->best_epoch > 0) /* left in the file until the commit */
            s->best_at = skip(&rb, sizeof(float) * (size_t)nf);
        uint32_t np = get_u32(&rb);
        if (np != (uint32_t)s->n_params)
            rb.bad = true;
        for (int j = 0; !rb.bad && j < s->n_params; j++) {
            optim_param *p = &s->opt.p[j];
            if (get_i64(&rb) != p->n) {
                rb.bad = true;
                break;
            }
            get(&rb, p->m, sizeof(float) * (size_t)p->n);
            get(&rb, p->v, sizeof(float) * (size_t)p->n);
        }
        s->opt.steps = steps;
        if (rb.bad)
            st = lego_error(LEGO_ERR_FORMAT, "%s does not match %s's parameters; run without --resume to start over",
                            r->state_path, x->file);
    }
    if (st.code == LEGO_OK && rb.left != 0)
        st = lego_error(LEGO_ERR_FORMAT, "%s has trailing data; run without --resume to start over", r->state_path);
    free(cur);
    fclose(f);
    return st;
}

/* The split a checkpoint was written for (*cut: "" for one stage) and its
 * stage, read before the run is set up; *cut stays NULL when the file does
 * not tell (read_state then says what is wrong with it). */
static lego_status peek_cut(run *r, char **cut, int *stage)
{
    *cut = NULL;
    FILE *f = fopen(r->state_path, "rb");
    if (!f)
        return lego_ok();
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    char magic[8];
    bool ok = len >= 16 && fseek(f, 0, SEEK_SET) == 0 && fread(magic, 1, 8, f) == 8 &&
              memcmp(magic, STATE_MAGIC, 8) == 0;
    rbuf rb = {f, ok ? (int64_t)len - 8 - 4 : 0, !ok};
    uint32_t version = get_u32(&rb);
    skip(&rb, 4 + 4 + 8 + sizeof(float) + 8 + 8 + 8 + 8); /* epochs, batch, seed, lr, holdout, max_train, nb, nt */
    for (int i = 0; i < 2; i++) /* task, data */
        skip(&rb, get_u32(&rb));
    skip(&rb, 8 + 8 + 4); /* seconds, teacher passes, students */
    uint32_t n_stages = get_u32(&rb), at = get_u32(&rb), n = get_u32(&rb);
    char *c = !rb.bad && n < 4096 ? malloc((size_t)n + 1) : NULL;
    if (c) {
        get(&rb, c, n);
        c[n] = 0;
    }
    fclose(f);
    if (c && !rb.bad && version == STATE_VERSION && (n_stages == 1 || n_stages == 2) && at < n_stages &&
        (n_stages == 2) == (n > 0)) {
        *cut = c;
        *stage = (int)at;
    } else {
        free(c);
    }
    return lego_ok();
}

/* ---- the commit ------------------------------------------------------------ */

static lego_status set_field(cJSON *obj, const char *key, cJSON *v)
{
    if (!v)
        return nomem();
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
    else
        cJSON_AddItemToObject(obj, key, v);
    return lego_ok();
}

/* s's kept weights, read back from the checkpoint, into its graph. */
static lego_status restore_kept(const run *r, student *s)
{
    size_t bytes = sizeof(float) * (size_t)s->n_floats;
    float *buf = malloc(bytes + 1);
    if (!buf)
        return nomem();
    FILE *f = fopen(r->state_path, "rb");
    bool ok = f && fseek(f, (long)s->best_at, SEEK_SET) == 0 && fread(buf, 1, bytes, f) == bytes;
    if (f)
        fclose(f);
    if (ok)
        set_weights(s, buf);
    free(buf);
    return ok ? lego_ok()
              : lego_error(LEGO_ERR_IO, "%s: cannot read back the kept weights of %s", r->state_path,
                           r->lib.blocks[s->block].desc[s->desc].file);
}

/* The kept weights into the library: new descendant files, then the
 * manifest in one rename (library_replace_descendant, library_save), then
 * the checkpoint is no longer needed. */
static lego_status commit(run *r, int epochs, double seconds)
{
    const retrain_options *o = r->o;
    block_library *lib = &r->lib;
    for (int i = 0; i < r->n_st; i++) {
        student *s = &r->st[i];
        /* the kept weights into the library's graph (at the library's
         * shapes, so the file says what extraction wrote), one at a time */
        if (s->best_epoch > 0) {
            int64_t n = s->n_floats;
            LEGO_TRY(load_student(r, s));
            lego_status st = s->n_floats == n ? restore_kept(r, s)
                                              : lego_error(LEGO_ERR_FORMAT, "%s: %s changed during retraining",
                                                           lib->dir, lib->blocks[s->block].desc[s->desc].file);
            if (st.code == LEGO_OK)
                st = library_replace_descendant(lib, s->block, s->desc, s->g);
            drop_student(r, s);
            LEGO_TRY(st);
        }
        cJSON *j = library_descendant_json(lib, s->block, s->desc);
        LEGO_TRY(library_set_number(j, "retraining_loss", s->best_loss));
        LEGO_TRY(library_set_number(j, "retraining_train_loss", s->best_train));
        LEGO_TRY(library_set_number(j, "retraining_initial_loss", s->initial));
        LEGO_TRY(library_set_number(j, "retraining_epoch", s->best_epoch));
    }
    for (int b = 0; b < lib->n_blocks; b++) {
        cJSON *j = library_descendant_json(lib, b, 0);
        LEGO_TRY(library_set_number(j, "retraining_loss", 0));
        LEGO_TRY(library_set_number(j, "retraining_train_loss", 0));
    }
    cJSON *rt = cJSON_CreateObject();
    if (!rt)
        return nomem();
    cJSON_AddStringToObject(rt, "task", task_name(o));
    cJSON_AddStringToObject(rt, "dataset", o->data);
    cJSON_AddNumberToObject(rt, "epochs", epochs);
    cJSON_AddNumberToObject(rt, "batch", o->batch);
    cJSON_AddNumberToObject(rt, "lr", (double)o->lr);
    cJSON_AddStringToObject(rt, "optimizer", "adam");
    cJSON_AddStringToObject(rt, "loss", "mse");
    cJSON_AddNumberToObject(rt, "holdout", o->holdout);
    cJSON_AddNumberToObject(rt, "train_samples", (double)(r->nt * o->batch));
    cJSON_AddNumberToObject(rt, "holdout_samples", (double)(r->nh * o->batch));
    cJSON_AddNumberToObject(rt, "seed", (double)o->seed);
    if (o->max_train > 0)
        cJSON_AddNumberToObject(rt, "max_train", (double)o->max_train);
    cJSON_AddNumberToObject(rt, "seconds", seconds);
    cJSON_AddNumberToObject(rt, "teacher_passes", (double)(r->teacher_before + r->teacher_count));
    cJSON_AddNumberToObject(rt, "cached_batches", (double)(r->cached_before + r->cached));
    cJSON_AddNumberToObject(rt, "cache_bytes", (double)(r->cache_bytes_before + r->cached * r->record * (int64_t)sizeof(float)));
    cJSON_AddNumberToObject(rt, "stages", r->n_stages);
    cJSON_AddNumberToObject(rt, "threads", par_threads());
    LEGO_TRY(set_field(lib->manifest, "retrain", rt));
    LEGO_TRY(library_save(lib));
    unlink(r->state_path);
    if (r->n_stages > 1)
        unlink(r->feat_path);
    return lego_ok();
}

/* ---- the run --------------------------------------------------------------- */

static lego_status fill_result(const run *r, retrain_result *res)
{
    res->stages = r->n_stages;
    res->stage_blocks[0] = res->stage_blocks[1] = 0;
    for (int b = 0; b < r->lib.n_blocks; b++)
        res->stage_blocks[r->n_stages > 1 && r->in_stage1[b] ? 1 : 0]++;
    res->feature_file_bytes = r->n_stages > 1 ? r->feat_file_bytes : 0;
    res->batches = r->nb;
    res->train_samples = r->nt * r->o->batch;
    res->holdout_samples = r->nh * r->o->batch;
    if (r->teacher_planned) /* a stage is set up: its figures */
        res->shared_memory = r->share;
    res->cached_batches = r->cached_before + r->cached;
    res->cache_bytes = r->cache_bytes_before + r->cached * r->record * (int64_t)sizeof(float);
    res->teacher_total = r->teacher_count;
    res->teacher_seconds = r->teacher_seconds;
    res->student_seconds = r->student_seconds;
    if (!res->students) {
        res->students = calloc((size_t)r->n_st + 1, sizeof *res->students);
        if (!res->students)
            return nomem();
        res->n_students = r->n_st;
    }
    for (int i = 0; i < r->n_st; i++) {
        const student *s = &r->st[i];
        retrain_student *o = &res->students[i];
        o->block = s->block, o->desc = s->desc;
        o->sparsity = r->lib.blocks[s->block].desc[s->desc].sparsity;
        o->initial_loss = s->initial;
        o->best_loss = s->best_loss;
        o->train_loss = s->best_train;
        o->best_epoch = s->best_epoch;
        free(o->file);
        o->file = strdup(r->lib.blocks[s->block].desc[s->desc].file);
        if (!o->file)
            return nomem();
    }
    return lego_ok();
}

/* One stage's epochs, from `start` (a resumed checkpoint's) on. */
static lego_status run_epochs(run *r, int start, retrain_epoch_fn on_epoch, void *ctx, retrain_result *res,
                              double t_start)
{
    const retrain_options *o = r->o;
    for (int e = start; e < o->epochs; e++) {
        retrain_epoch es;
        lego_status st = train_epoch(r, e, &es);
        if (st.code && (e > 0 || r->stage > 0)) {
            /* the checkpoint stays: say so */
            char at[64] = "";
            if (r->n_stages > 1)
                snprintf(at, sizeof at, "stage %d's ", e > 0 ? r->stage + 1 : r->stage);
            lego_status told = lego_error(st.code, "%s; %s keeps %sepoch %d (resume continues from it)",
                                          lego_status_msg(st), r->state_path, at, e > 0 ? e : o->epochs);
            lego_status_free(&st);
            return told;
        }
        LEGO_TRY(st);
        es.stage = r->stage + 1;
        es.stages = r->n_stages;
        es.stage_blocks = r->n_ready;
        res->teacher_batches[e + 1] += es.teacher_batches;
        LEGO_TRY(write_state(r, e + 1, r->seconds_before + now_seconds() - t_start));
        LEGO_TRY(drop_teacher(r));
        res->epochs_done = e + 1;
        LEGO_TRY(fill_result(r, res));
        bool more = e + 1 < o->epochs || r->stage + 1 < r->n_stages;
        if (on_epoch && !on_epoch(ctx, &es) && more)
            return lego_error(LEGO_ERR_ARG, "interrupted after %sepoch %d of %d; %s holds it (resume to continue)",
                              r->n_stages > 1 ? (r->stage ? "stage 2's " : "stage 1's ") : "", e + 1, o->epochs,
                              r->state_path);
    }
    return lego_ok();
}

static lego_status retrain_in(run *r, const char *dir, retrain_epoch_fn on_epoch, void *ctx, retrain_result *res,
                              double t_start)
{
    const retrain_options *o = r->o;
    LEGO_TRY(setup(r, dir));
    bool resumed = o->resume && file_exists(r->state_path);
    int first = r->stage; /* a resumed checkpoint's stage, else 0 */
    res->first_stage = first + 1;
    res->n_passes = o->epochs + 1;
    res->teacher_batches = calloc((size_t)res->n_passes, sizeof *res->teacher_batches);
    if (!res->teacher_batches)
        return nomem();
    for (; r->stage < r->n_stages; r->stage++) {
        bool from_state = resumed && r->stage == first;
        LEGO_TRY(setup_stage(r, from_state));
        int start = 0;
        if (from_state) {
            LEGO_TRY(lego_error_context(read_state(r, &start), "cannot resume"));
        } else {
            int64_t before = r->teacher_count;
            LEGO_TRY(first_pass(r));
            res->teacher_batches[0] += r->teacher_count - before;
        }
        if (r->stage == first)
            res->first_epoch = res->epochs_done = start;
        LEGO_TRY(run_epochs(r, start, on_epoch, ctx, res, t_start));
        LEGO_TRY(fill_result(r, res));
        /* this stage's students are done: their graphs, plans and moments go */
        end_stage(r);
    }
    r->stage = r->n_stages - 1; /* where the results were */
    int epochs = res->epochs_done > o->epochs ? res->epochs_done : o->epochs;
    LEGO_TRY(commit(r, epochs, r->seconds_before + now_seconds() - t_start));
    return fill_result(r, res);
}

lego_status retrain_library(const char *dir, const retrain_options *o, retrain_epoch_fn on_epoch, void *ctx,
                            retrain_result *res)
{
    memset(res, 0, sizeof *res);
    LEGO_TRY(check_options(o));
    double t0 = now_seconds();
    run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.feat_fd = -1;
    lego_status st = retrain_in(&r, dir, on_epoch, ctx, res, t0);
    if (r.lib_open && r.st) {
        lego_status f = fill_result(&r, res);
        lego_status_free(&f);
    }
    /* features no checkpoint refers to would only take space */
    if (st.code && r.feat_path && r.n_stages > 1 && !file_exists(r.state_path))
        unlink(r.feat_path);
    res->seconds = now_seconds() - t0;
    run_free(&r);
    return st;
}

void retrain_result_free(retrain_result *r)
{
    for (int i = 0; r->students && i < r->n_students; i++)
        free(r->students[i].file);
    free(r->students);
    free(r->teacher_batches);
    memset(r, 0, sizeof *r);
}
