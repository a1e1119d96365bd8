/* blockexec.c - the block-by-block executor (blockexec.h). */
#include "blockexec.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../blocks/compose.h"
#include "../core/tensor.h"
#include "../graph/exec.h"

static lego_status nomem(void) { return lego_error(LEGO_ERR_NOMEM, "out of memory preparing blocks to run"); }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

lego_status bx_set_batch(lego_graph *g, int64_t batch)
{
    bool change = false;
    for (int i = 0; i < g->n_inputs; i++) {
        lego_tensor *t = &g->values[g->inputs[i]].t;
        if (t->rank > 0 && t->dims[0] != batch) {
            t->dims[0] = batch;
            change = true;
        }
    }
    if (!change)
        return lego_ok();
    lego_status st = graph_infer(g);
    if (st.code == LEGO_OK)
        return st;
    lego_status e = lego_error(LEGO_ERR_SHAPE,
                               "%s cannot run at batch %lld (the model fixes its batch size; export it with a "
                               "dynamic batch axis): %s",
                               g->name, (long long)batch, lego_status_msg(st));
    lego_status_free(&st);
    return e;
}

/* ---- the frame ---------------------------------------------------------------- */

/* Order the frame's nodes and the block slots: a slot runs as soon as its
 * entry is ready, nodes in topological order. */
static lego_status schedule(bx_frame *f)
{
    lego_graph *g = f->g;
    int nv = g->n_values, nn = g->n_nodes;
    bool *avail = calloc((size_t)nv + 1, sizeof *avail);
    bool *done_node = calloc((size_t)nn + 1, sizeof *done_node);
    bool *done_block = calloc((size_t)f->n_blocks + 1, sizeof *done_block);
    f->items = malloc(sizeof *f->items * ((size_t)nn + (size_t)f->n_blocks + 1));
    if (!avail || !done_node || !done_block || !f->items) {
        free(avail), free(done_node), free(done_block);
        return nomem();
    }
    for (int v = 0; v < nv; v++)
        avail[v] = g->values[v].kind == VALUE_INITIALIZER || g->values[v].kind == VALUE_FOLDED;
    for (int i = 0; i < f->n_model_inputs; i++)
        avail[g->inputs[i]] = true;
    int todo = f->n_blocks;
    for (int k = 0; k < nn; k++)
        if (!g->nodes[k].folded)
            todo++;
    lego_status st = lego_ok();
    while (f->n_items < todo) {
        bool progress = false;
        for (int b = 0; b < f->n_blocks; b++) {
            if (!done_block[b] && avail[f->entry_v[b]]) {
                done_block[b] = true;
                avail[f->exit_v[b]] = true;
                f->items[f->n_items++] = (bx_item){BX_BLOCK, b};
                progress = true;
            }
        }
        for (int j = 0; j < nn; j++) {
            int k = g->order[j];
            const gnode *n = &g->nodes[k];
            if (n->folded || done_node[k])
                continue;
            bool ready = true;
            for (int i = 0; i < n->n_in && ready; i++)
                ready = n->in[i] < 0 || avail[n->in[i]];
            if (!ready)
                continue;
            done_node[k] = true;
            for (int o = 0; o < n->n_out; o++)
                avail[n->out[o]] = true;
            f->items[f->n_items++] = (bx_item){BX_NODE, k};
            progress = true;
            break; /* back to the slots: run a block as soon as it can */
        }
        if (!progress) {
            st = lego_error(LEGO_ERR_FORMAT, "%s: the frame and its blocks cannot be ordered (a block's entry "
                                             "depends on its own exit)", g->name);
            break;
        }
    }
    free(avail), free(done_node), free(done_block);
    return st;
}

/* Fuses and packs the frame's nodes (graph/exec.h), dropping the fused
 * ones from the schedule. Block entries are read by block slots, so
 * nothing is fused across them. */
static lego_status fuse_frame(bx_frame *f)
{
    lego_graph *g = f->g;
    int n = 0, nv = g->n_values;
    int *steps = malloc(sizeof *steps * ((size_t)f->n_items + 1));
    step_state *st = calloc((size_t)f->n_items + 1, sizeof *st);
    bool *ext = calloc((size_t)nv + 1, sizeof *ext);
    f->ist = calloc((size_t)f->n_items + 1, sizeof *f->ist);
    if (!steps || !st || !ext || !f->ist) {
        free(steps), free(st), free(ext);
        return nomem();
    }
    for (int i = 0; i < f->n_items; i++)
        if (f->items[i].kind == BX_NODE)
            steps[n++] = f->items[i].index;
    for (int i = 0; i < f->n_model_outputs; i++)
        ext[g->outputs[i]] = true;
    for (int b = 0; b < f->n_blocks; b++)
        ext[f->entry_v[b]] = true;
    lego_status r = exec_fuse_pack(g, steps, &n, ext, st);
    free(ext);
    if (r.code) {
        free(steps), free(st);
        return r;
    }
    /* the kept nodes, in their order, between the block slots */
    int kept = 0, k = 0;
    for (int i = 0; i < f->n_items; i++) {
        bx_item it = f->items[i];
        if (it.kind == BX_NODE) {
            if (k >= n || steps[k] != it.index)
                continue; /* fused into an earlier node */
            f->ist[kept] = st[k++];
        } else {
            f->ist[kept] = (step_state){.out_v = -1, .res_v = -1};
        }
        f->items[kept++] = it;
    }
    f->n_items = kept;
    free(steps), free(st);
    return lego_ok();
}

/* One arena for the frame's activations over the schedule. */
static lego_status plan_frame(bx_frame *f)
{
    lego_graph *g = f->g;
    int nv = g->n_values;
    f->n_values = nv;
    f->vt = calloc((size_t)nv + 1, sizeof *f->vt);
    f->offset = malloc(sizeof *f->offset * ((size_t)nv + 1));
    int *last_use = malloc(sizeof *last_use * ((size_t)nv + 1));
    int *def = malloc(sizeof *def * ((size_t)nv + 1));
    size_t *bytes = malloc(sizeof *bytes * ((size_t)nv + 1));
    if (!f->vt || !f->offset || !last_use || !def || !bytes) {
        free(last_use), free(def), free(bytes);
        return nomem();
    }
    for (int v = 0; v < nv; v++) {
        f->vt[v] = g->values[v].t;
        f->vt[v].owns = 0;
        if (g->values[v].kind == VALUE_ACTIVATION || g->values[v].kind == VALUE_INPUT)
            f->vt[v].data = NULL;
        bytes[v] = lego_tensor_bytes(&f->vt[v]);
        last_use[v] = def[v] = -1;
    }
    for (int s = 0; s < f->n_items; s++) {
        const bx_item *it = &f->items[s];
        if (it->kind == BX_BLOCK) {
            int x = f->exit_v[it->index];
            last_use[f->entry_v[it->index]] = s;
            def[x] = s;
            if (last_use[x] < s)
                last_use[x] = s;
            continue;
        }
        exec_step_liveness(&g->nodes[it->index], &f->ist[s], s, def, last_use, true);
    }
    for (int i = 0; i < f->n_model_outputs; i++)
        last_use[g->outputs[i]] = f->n_items;
    size_t high = 0;
    lego_status st = arena_layout(nv, bytes, def, last_use, f->n_items, f->offset, &high);
    free(last_use), free(def), free(bytes);
    LEGO_TRY(st);
    f->arena_bytes = high;
    return lego_ok();
}

void bx_frame_free(bx_frame *f)
{
    if (f->ist)
        exec_unpack(f->ist, f->n_items);
    free(f->ist);
    if (f->g) {
        graph_free(f->g);
        free(f->g);
    }
    free(f->entry_v), free(f->exit_v), free(f->in_shape), free(f->out_shape);
    free(f->items), free(f->vt), free(f->offset);
    memset(f, 0, sizeof *f);
}

/* f->weight_bytes, after freeing the weights its packed kernels copied
 * when `release` (*freed, when not NULL, gets the bytes): the frame's steps
 * are its node items. */
static lego_status frame_weights(bx_frame *f, bool release, size_t *freed)
{
    int *steps = malloc(sizeof *steps * ((size_t)f->n_items + 1));
    step_state *st = malloc(sizeof *st * ((size_t)f->n_items + 1));
    if (!steps || !st) {
        free(steps), free(st);
        return nomem();
    }
    int n = 0;
    for (int i = 0; i < f->n_items; i++)
        if (f->items[i].kind == BX_NODE) {
            steps[n] = f->items[i].index;
            st[n++] = f->ist[i];
        }
    size_t gone = release ? exec_release_packed(f->g, steps, n, st, f->vt) : 0;
    if (freed)
        *freed = gone;
    f->weight_bytes = exec_weight_bytes(f->g, steps, n, st);
    free(steps), free(st);
    return lego_ok();
}

static lego_status frame_open_in(block_library *lib, int64_t batch, bx_frame *f)
{
    lego_graph *g;
    LEGO_TRY(library_frame(lib, &g));
    lib->frame = NULL; /* ours now */
    f->g = g;
    f->n_model_inputs = lib->frame_model_inputs;
    f->n_model_outputs = lib->frame_model_outputs;
    f->n_blocks = lib->n_blocks;
    LEGO_TRY(bx_set_batch(g, batch));
    int nb = lib->n_blocks;
    f->entry_v = malloc(sizeof *f->entry_v * ((size_t)nb + 1));
    f->exit_v = malloc(sizeof *f->exit_v * ((size_t)nb + 1));
    f->in_shape = calloc((size_t)nb + 1, sizeof *f->in_shape);
    f->out_shape = calloc((size_t)nb + 1, sizeof *f->out_shape);
    if (!f->entry_v || !f->exit_v || !f->in_shape || !f->out_shape)
        return nomem();
    for (int b = 0; b < nb; b++) {
        const lib_block *bl = &lib->blocks[b];
        int e = graph_find_value(g, bl->entry), x = graph_find_value(g, bl->exit);
        if (e < 0)
            return lego_error(LEGO_ERR_FORMAT, "%s/%s: block %d's entry '%s' is not a value of the frame", lib->dir,
                              lib->frame_file, b, bl->entry);
        if (x < 0 || g->values[x].kind != VALUE_INPUT)
            return lego_error(LEGO_ERR_FORMAT, "%s/%s: block %d's exit '%s' is not an input of the frame", lib->dir,
                              lib->frame_file, b, bl->exit);
        f->entry_v[b] = e;
        f->exit_v[b] = x;
        f->in_shape[b] = g->values[e].t;
        f->out_shape[b] = g->values[x].t;
        f->in_shape[b].data = f->out_shape[b].data = NULL;
        f->in_shape[b].owns = f->out_shape[b].owns = 0;
    }
    LEGO_TRY(schedule(f));
    LEGO_TRY(fuse_frame(f));
    LEGO_TRY(plan_frame(f));
    return frame_weights(f, false, NULL);
}

lego_status bx_frame_open(block_library *lib, int64_t batch, bx_frame *out)
{
    memset(out, 0, sizeof *out);
    lego_status st = frame_open_in(lib, batch, out);
    if (st.code)
        bx_frame_free(out);
    return st;
}

/* ---- descendants ---------------------------------------------------------------- */

void bx_desc_free(bx_desc *d)
{
    if (!d)
        return;
    if (d->g) {
        graph_free(d->g);
        free(d->g);
    }
    exec_unpack(d->st, d->n_steps);
    free(d->steps), free(d->st), free(d->vt), free(d->offset);
    free(d);
}

static lego_status desc_open_in(block_library *lib, const bx_frame *f, int b, int di, bx_desc *d)
{
    lego_graph *g;
    LEGO_TRY(library_descendant(lib, b, di, &g));
    lib->blocks[b].desc[di].g = NULL; /* ours now */
    d->g = g;
    d->block = b;
    d->option = di;
    d->in_v = g->inputs[0];
    d->out_v = g->outputs[0];
    const lego_tensor *want_in = &f->in_shape[b], *want_out = &f->out_shape[b];
    lego_tensor *in = &g->values[d->in_v].t;
    char a[96], c[96];
    if (in->rank != want_in->rank)
        return lego_error(LEGO_ERR_FORMAT, "%s: input has rank %d, block %d's entry in the frame %d", g->name, in->rank,
                          b, want_in->rank);
    if (!tensor_same_shape(in, want_in)) {
        memcpy(in->dims, want_in->dims, sizeof in->dims);
        LEGO_TRY(graph_infer(g));
    }
    const lego_tensor *out = &g->values[d->out_v].t;
    if (out->dtype != want_out->dtype || !tensor_same_shape(out, want_out) || in->dtype != want_in->dtype)
        return lego_error(LEGO_ERR_FORMAT, "%s: makes %s %s from %s; block %d's exit in the frame is %s %s", g->name,
                          dtype_name(out->dtype), tensor_shape_str(out, a, sizeof a),
                          tensor_shape_str(in, c, sizeof c), b, dtype_name(want_out->dtype),
                          tensor_shape_str(want_out, c, sizeof c));
    exec_plan p;
    LEGO_TRY(exec_plan_build(g, &p));
    lego_aligned_free(p.arena); /* runs use the context's block arena */
    free(p.def), free(p.last);   /* nor its lifetimes */
    d->steps = p.steps;
    d->n_steps = p.n_steps;
    d->st = p.st;
    d->vt = p.vt;
    d->offset = p.offset;
    d->arena_bytes = p.arena_bytes;
    d->n_values = g->n_values;
    for (int v = 0; v < g->n_values; v++)
        if (d->offset[v] != SIZE_MAX || v == d->in_v)
            d->vt[v].data = NULL;
    const gvalue *ov = &g->values[d->out_v];
    d->bind_out = ov->kind == VALUE_ACTIVATION && ov->producer >= 0 && !g->nodes[ov->producer].folded &&
                  d->out_v != d->in_v;
    d->weight_bytes = exec_weight_bytes(g, d->steps, d->n_steps, d->st);
    return lego_ok();
}

size_t bx_desc_release_weights(bx_desc *d)
{
    size_t freed = exec_release_packed(d->g, d->steps, d->n_steps, d->st, d->vt);
    d->weight_bytes = exec_weight_bytes(d->g, d->steps, d->n_steps, d->st);
    return freed;
}

size_t bx_frame_release_weights(bx_frame *f)
{
    size_t freed = 0;
    lego_status st = frame_weights(f, true, &freed);
    lego_status_free(&st); /* out of memory: nothing freed, the count unchanged */
    return freed;
}

lego_status bx_desc_open(block_library *lib, const bx_frame *f, int b, int d, bx_desc **out)
{
    *out = NULL;
    if (b < 0 || b >= f->n_blocks)
        return lego_error(LEGO_ERR_ARG, "%s: no block %d", lib->dir, b);
    bx_desc *x = calloc(1, sizeof *x);
    if (!x)
        return nomem();
    lego_status st = desc_open_in(lib, f, b, d, x);
    if (st.code) {
        bx_desc_free(x);
        return st;
    }
    *out = x;
    return lego_ok();
}

/* ---- contexts ------------------------------------------------------------------- */

void bx_ctx_init(bx_ctx *c) { memset(c, 0, sizeof *c); }

void bx_ctx_free(bx_ctx *c)
{
    lego_aligned_free(c->frame_arena);
    lego_aligned_free(c->block_arena);
    free(c->fvt);
    free(c->dvt);
    workspace_free(&c->ws);
    memset(c, 0, sizeof *c);
}

lego_status bx_ctx_reserve(bx_ctx *c, const bx_frame *f, size_t block_bytes, int n_values)
{
    if (f && !c->fvt) {
        c->frame_arena = lego_aligned_alloc(f->arena_bytes ? f->arena_bytes : 64);
        c->fvt = malloc(sizeof *c->fvt * ((size_t)f->n_values + 1));
        if (!c->frame_arena || !c->fvt) {
            lego_aligned_free(c->frame_arena);
            free(c->fvt);
            c->frame_arena = NULL;
            c->fvt = NULL;
            return nomem();
        }
        for (int v = 0; v < f->n_values; v++) {
            c->fvt[v] = f->vt[v];
            if (f->offset[v] != SIZE_MAX)
                c->fvt[v].data = c->frame_arena + f->offset[v];
        }
    }
    if (block_bytes > c->block_cap || !c->block_arena) {
        unsigned char *a = lego_aligned_alloc(block_bytes ? block_bytes : 64);
        if (!a)
            return lego_error(LEGO_ERR_NOMEM, "cannot allocate %zu bytes of block activations", block_bytes);
        lego_aligned_free(c->block_arena);
        c->block_arena = a;
        c->block_cap = block_bytes;
    }
    if (n_values > c->dvt_cap) {
        lego_tensor *t = realloc(c->dvt, sizeof *t * (size_t)n_values);
        if (!t)
            return nomem();
        c->dvt = t;
        c->dvt_cap = n_values;
    }
    return lego_ok();
}

size_t bx_ctx_bytes(const bx_ctx *c, const bx_frame *f)
{
    return (c->fvt ? f->arena_bytes : 0) + (c->block_arena ? c->block_cap : 0);
}

/* ---- running -------------------------------------------------------------------- */

static void run_nodes(lego_graph *g, const int *steps, const step_state *st, int n_steps,
                      lego_tensor *vt, workspace *ws)
{
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    for (int s = 0; s < n_steps; s++) {
        const gnode *n = &g->nodes[steps[s]];
        op_call call;
        exec_step_call(g, n, &st[s], vt, ws, in, out, &call);
        n->op->forward(&call);
    }
}

/* Run d reading x, writing y. */
static lego_status run_block(const bx_desc *d, bx_ctx *c, const void *x, void *y)
{
    if (c->dvt_cap < d->n_values || c->block_cap < d->arena_bytes || !c->block_arena)
        return lego_error(LEGO_ERR_INTERNAL, "block %d: the run context was not reserved for its descendant",
                          d->block);
    lego_tensor *vt = c->dvt;
    memcpy(vt, d->vt, sizeof *vt * (size_t)d->n_values);
    for (int v = 0; v < d->n_values; v++)
        if (d->offset[v] != SIZE_MAX)
            vt[v].data = c->block_arena + d->offset[v];
    vt[d->in_v].data = (void *)x; /* kernels never write their inputs */
    if (d->bind_out)
        vt[d->out_v].data = y;
    run_nodes(d->g, d->steps, d->st, d->n_steps, vt, &c->ws);
    if (!d->bind_out)
        memmove(y, vt[d->out_v].data, lego_tensor_bytes(&vt[d->out_v]));
    return lego_ok();
}

lego_status bx_run_desc(const bx_desc *d, bx_ctx *c, const void *x, void *y) { return run_block(d, c, x, y); }

static lego_status run_items(const bx_frame *f, const bx_desc *const *desc, bx_ctx *c, int from, int to,
                             double *block_ms)
{
    for (int s = from; s < to; s++) {
        const bx_item *it = &f->items[s];
        if (it->kind == BX_NODE) {
            run_nodes(f->g, &it->index, &f->ist[s], 1, c->fvt, &c->ws);
            continue;
        }
        int b = it->index;
        double t0 = block_ms ? now_ms() : 0;
        LEGO_TRY(run_block(desc[b], c, c->fvt[f->entry_v[b]].data, c->fvt[f->exit_v[b]].data));
        if (block_ms)
            block_ms[b] = now_ms() - t0;
    }
    return lego_ok();
}

lego_status bx_run_items(const bx_frame *f, const bx_desc *const *desc, bx_ctx *c, int from, int to)
{
    if (!c->fvt)
        return lego_error(LEGO_ERR_INTERNAL, "the run context was not reserved for the frame");
    if (from < 0 || to > f->n_items || from > to)
        return lego_error(LEGO_ERR_INTERNAL, "items %d to %d are not in the frame's schedule", from, to);
    return run_items(f, desc, c, from, to, NULL);
}

lego_status bx_run(const bx_frame *f, const bx_desc *const *desc, bx_ctx *c, const lego_tensor *const *inputs,
                   lego_tensor **outputs, double *block_ms)
{
    lego_graph *g = f->g;
    if (!c->fvt)
        return lego_error(LEGO_ERR_INTERNAL, "the run context was not reserved for the frame");
    for (int i = 0; i < f->n_model_inputs; i++) {
        int v = g->inputs[i];
        const lego_tensor *x = inputs[i];
        char want[96], got[96];
        if (!x || !x->data)
            return lego_error(LEGO_ERR_ARG, "input '%s' has no data", g->values[v].name);
        if (x->dtype != f->vt[v].dtype || !tensor_same_shape(x, &f->vt[v]))
            return lego_error(LEGO_ERR_SHAPE, "input '%s' is %s %s, the model expects %s %s", g->values[v].name,
                              dtype_name(x->dtype), tensor_shape_str(x, got, sizeof got),
                              dtype_name(f->vt[v].dtype), tensor_shape_str(&f->vt[v], want, sizeof want));
        c->fvt[v].data = x->data;
    }
    LEGO_TRY(run_items(f, desc, c, 0, f->n_items, block_ms));
    for (int i = 0; i < f->n_model_outputs; i++)
        outputs[i] = NULL;
    for (int i = 0; i < f->n_model_outputs; i++) {
        lego_tensor *t = calloc(1, sizeof *t);
        lego_status st = t ? tensor_clone(&c->fvt[g->outputs[i]], t) : nomem();
        if (st.code) {
            free(t);
            for (int j = 0; j < i; j++) {
                lego_tensor_free(outputs[j]);
                outputs[j] = NULL;
            }
            return st;
        }
        outputs[i] = t;
    }
    return lego_ok();
}

lego_status bx_compose(const bx_frame *f, const bx_desc *const *desc, lego_graph *out)
{
    const lego_graph **gs = calloc((size_t)f->n_blocks + 1, sizeof *gs);
    if (!gs)
        return nomem();
    for (int b = 0; b < f->n_blocks; b++)
        gs[b] = desc[b]->g;
    lego_status st = compose_graphs(f->g, f->n_model_inputs, f->n_model_outputs, gs, f->n_blocks, f->g->name, out);
    free(gs);
    return st;
}
