/* exec.c - activation planning and the forward executor. */
#include "exec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct live_block {
    size_t start, end;
    int value;
} live_block;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* First fit among the blocks alive now (kept sorted by start). */
static size_t place(live_block *live, int *n_live, size_t bytes, int value, size_t *high)
{
    size_t at = 0;
    int i = 0;
    for (; i < *n_live; i++) {
        if (live[i].start >= at + bytes)
            break;
        if (live[i].end > at)
            at = live[i].end;
    }
    memmove(&live[i + 1], &live[i], sizeof *live * (size_t)(*n_live - i));
    live[i] = (live_block){at, at + bytes, value};
    (*n_live)++;
    if (at + bytes > *high)
        *high = at + bytes;
    return at;
}

lego_status arena_layout(int n_values, const size_t *bytes, const int *def, const int *last,
                         int n_steps, size_t *offset, size_t *total)
{
    live_block *live = malloc(sizeof *live * ((size_t)n_values + 1));
    int *order = malloc(sizeof *order * ((size_t)n_values + 1));
    int *start = calloc((size_t)n_steps + 2, sizeof *start);
    if (!live || !order || !start) {
        free(live), free(order), free(start);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning activations");
    }
    /* bucket the values by the step that defines them, keeping value order */
    for (int v = 0; v < n_values; v++) {
        offset[v] = SIZE_MAX;
        if (def[v] >= 0 && def[v] < n_steps)
            start[def[v] + 1]++;
    }
    for (int s = 0; s < n_steps; s++)
        start[s + 1] += start[s];
    for (int v = 0; v < n_values; v++)
        if (def[v] >= 0 && def[v] < n_steps)
            order[start[def[v]]++] = v;
    int n_live = 0, k = 0;
    size_t high = 0;
    for (int s = 0; s < n_steps; s++) {
        /* Free before placing: a value read for the last time at s-1 is dead;
         * one read at s must not share memory with s's outputs. */
        int kept = 0;
        for (int i = 0; i < n_live; i++)
            if (last[live[i].value] >= s)
                live[kept++] = live[i];
        n_live = kept;
        for (; k < start[s]; k++)
            offset[order[k]] = place(live, &n_live, align64(bytes[order[k]]), order[k], &high);
    }
    free(live);
    free(order);
    free(start);
    *total = high;
    return lego_ok();
}

void exec_plan_free(exec_plan *p)
{
    free(p->vt);
    free(p->offset);
    free(p->steps);
    lego_aligned_free(p->arena);
    memset(p, 0, sizeof *p);
}

lego_status exec_plan_build(lego_graph *g, exec_plan *p)
{
    memset(p, 0, sizeof *p);
    int nv = g->n_values, nn = g->n_nodes;
    p->vt = calloc((size_t)nv + 1, sizeof *p->vt);
    p->offset = malloc(sizeof *p->offset * ((size_t)nv + 1));
    p->steps = malloc(sizeof *p->steps * ((size_t)nn + 1));
    int *last_use = malloc(sizeof *last_use * ((size_t)nv + 1));
    int *def = malloc(sizeof *def * ((size_t)nv + 1));
    size_t *bytes = malloc(sizeof *bytes * ((size_t)nv + 1));
    if (!p->vt || !p->offset || !p->steps || !last_use || !def || !bytes) {
        free(last_use), free(def), free(bytes);
        exec_plan_free(p);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning execution");
    }
    for (int k = 0; k < nn; k++)
        if (!g->nodes[g->order[k]].folded)
            p->steps[p->n_steps++] = g->order[k];
    for (int v = 0; v < nv; v++) {
        p->vt[v] = g->values[v].t;
        p->vt[v].owns = 0; /* the plan never frees graph data */
        bytes[v] = lego_tensor_bytes(&p->vt[v]);
        last_use[v] = def[v] = -1;
    }
    for (int s = 0; s < p->n_steps; s++) {
        const gnode *n = &g->nodes[p->steps[s]];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0)
                last_use[n->in[i]] = s;
        for (int i = 0; i < n->n_out; i++) {
            def[n->out[i]] = s;
            if (last_use[n->out[i]] < s)
                last_use[n->out[i]] = s; /* unread outputs still need room */
        }
    }
    for (int i = 0; i < g->n_outputs; i++)
        last_use[g->outputs[i]] = p->n_steps;
    size_t high = 0;
    lego_status st = arena_layout(nv, bytes, def, last_use, p->n_steps, p->offset, &high);
    free(last_use), free(def), free(bytes);
    if (st.code) {
        exec_plan_free(p);
        return st;
    }
    p->arena_bytes = high;
    p->arena = lego_aligned_alloc(high ? high : 64);
    if (!p->arena) {
        exec_plan_free(p);
        return lego_error(LEGO_ERR_NOMEM, "cannot allocate %zu bytes of activations", high);
    }
    for (int v = 0; v < nv; v++)
        if (p->offset[v] != SIZE_MAX)
            p->vt[v].data = p->arena + p->offset[v];
    return lego_ok();
}

lego_status exec_run(lego_graph *g, exec_plan *p, const lego_tensor *const *inputs,
                     lego_tensor **outputs)
{
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        const lego_tensor *x = inputs[i];
        char want[96], got[96];
        if (!x || !x->data)
            return lego_error(LEGO_ERR_ARG, "input '%s' has no data", g->values[v].name);
        if (x->dtype != p->vt[v].dtype || !tensor_same_shape(x, &p->vt[v]))
            return lego_error(LEGO_ERR_SHAPE, "input '%s' is %s %s, the model expects %s %s",
                              g->values[v].name, dtype_name(x->dtype),
                              tensor_shape_str(x, got, sizeof got), dtype_name(p->vt[v].dtype),
                              tensor_shape_str(&p->vt[v], want, sizeof want));
        p->vt[v].data = x->data; /* kernels never write their inputs */
    }
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    for (int s = 0; s < p->n_steps; s++) {
        const gnode *n = &g->nodes[p->steps[s]];
        op_call c;
        graph_node_call(g, n, p->vt, in, out, &c);
        n->op->forward(&c);
    }
    for (int i = 0; i < g->n_outputs; i++)
        outputs[i] = NULL;
    for (int i = 0; i < g->n_outputs; i++) {
        lego_tensor *t = calloc(1, sizeof *t);
        lego_status st = t ? tensor_clone(&p->vt[g->outputs[i]], t)
                           : lego_error(LEGO_ERR_NOMEM, "out of memory");
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
