/* autodiff.c - the training executor: sub-graph selection, gradient
 * bookkeeping, forward in training mode and reverse-mode backward. */
#include "autodiff.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"

static bool contains(const int *list, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (list[i] == v)
            return true;
    return false;
}

static int *dup_list(const int *a, int n)
{
    int *d = malloc(sizeof *d * (size_t)(n + 1));
    if (d && n)
        memcpy(d, a, sizeof *d * (size_t)n);
    return d;
}

/* Each step's kernel state (op_desc.train_pack: oneDNN's primitives for a
 * Conv), made once for the plan's shapes; steps without one keep NULL. */
static lego_status pack_steps(train_plan *p)
{
    lego_graph *g = p->g;
    p->kstate = calloc((size_t)p->n_steps + 1, sizeof *p->kstate);
    if (!p->kstate)
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning training");
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    for (int s = 0; s < p->n_steps; s++) {
        const gnode *n = &g->nodes[p->steps[s]];
        if (!n->op->train_pack)
            continue;
        op_call c;
        graph_node_call(g, n, p->vt, in, out, &c);
        LEGO_TRY(n->op->train_pack(&c, &p->kstate[s]));
    }
    return lego_ok();
}

static void unpack_steps(train_plan *p)
{
    for (int s = 0; p->kstate && s < p->n_steps; s++)
        if (p->kstate[s])
            p->g->nodes[p->steps[s]].op->train_unpack(p->kstate[s]);
    free(p->kstate);
    workspace_free(&p->own_ws);
}

void train_plan_free(train_plan *p)
{
    unpack_steps(p);
    free(p->vt);
    free(p->gt);
    free(p->needs_grad);
    free(p->zero_at);
    free(p->steps);
    free(p->inputs);
    free(p->outputs);
    free(p->params);
    if (!p->shared)
        lego_aligned_free(p->mem);
    memset(p, 0, sizeof *p);
}

/* Mark the nodes needed for the outputs, walking back from them and
 * stopping at the caller's inputs and at constants. */
static lego_status select_nodes(train_plan *p, bool *in_sub)
{
    lego_graph *g = p->g;
    int *stack = malloc(sizeof *stack * ((size_t)g->n_values + 1));
    bool *seen = calloc((size_t)g->n_values + 1, sizeof *seen);
    if (!stack || !seen) {
        free(stack), free(seen);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning training");
    }
    int top = 0;
    for (int i = 0; i < p->n_outputs; i++)
        stack[top++] = p->outputs[i], seen[p->outputs[i]] = true;
    lego_status st = lego_ok();
    while (top > 0 && st.code == LEGO_OK) {
        int v = stack[--top];
        const gvalue *val = &g->values[v];
        if (contains(p->inputs, p->n_inputs, v) || val->kind == VALUE_INITIALIZER ||
            val->kind == VALUE_FOLDED)
            continue;
        if (val->producer < 0) {
            st = lego_error(LEGO_ERR_ARG, "%s: the sub-graph needs '%s', which is not among its inputs",
                            g->name, val->name);
            break;
        }
        const gnode *n = &g->nodes[val->producer];
        in_sub[val->producer] = true;
        for (int i = 0; i < n->n_in; i++) {
            int u = n->in[i];
            if (u >= 0 && !seen[u]) {
                seen[u] = true;
                stack[top++] = u;
            }
        }
    }
    free(stack);
    free(seen);
    return st;
}

#define ZERO_AT_START (-2)

/* Whether node n's backward writes input i's gradient outright when it is
 * the first to write it (op_desc.grad_writes), rather than adding into a
 * cleared buffer: not when n reads that value through another input too. */
static bool writes_fresh(const gnode *n, int i)
{
    int reads = 0;
    for (int j = 0; j < n->n_in; j++)
        reads += n->in[j] == n->in[i];
    return n->op->grad_writes >> i & 1u && reads == 1;
}

/* The input of step s (node nd) whose gradient may take output 0's
 * gradient's memory, or -1: s is the value's last reader (its gradient's
 * first writer), writes it fresh (writes_fresh, as clear_gradients then
 * decides) and in place, the two gradients have one shape, and the input
 * is not one whose gradient the caller seeds. */
static int inplace_input(const train_plan *p, const gnode *nd, int s, const int *reader)
{
    int y = nd->out[0];
    if (nd->n_out < 1 || !p->needs_grad[y])
        return -1;
    for (int i = 0; i < nd->n_in; i++) {
        int v = nd->in[i];
        if (v >= 0 && nd->op->grad_inplace >> i & 1u && writes_fresh(nd, i) && p->needs_grad[v] &&
            reader[v] == s && !contains(p->outputs, p->n_outputs, v) &&
            tensor_same_shape(&p->gt[v], &p->gt[y]) && p->gt[v].dtype == p->gt[y].dtype)
            return v;
    }
    return -1;
}

/* The gradient whose memory gradient k ends up in (share[k] < 0: its own). */
static int share_root(const int *share, int k)
{
    while (share[k] >= 0)
        k = share[k];
    return k;
}

/* Storage for activations and gradients, one arena laid out by lifetimes
 * over one timeline: forward step s at time s, the caller's turn (it reads
 * the outputs and seeds their gradients) at time n, backward of step s at
 * time 2n - s, and the end (the caller reads the parameters' and inputs'
 * gradients) at 2n + 1. A value backward reads (as an input or output of a
 * step, unless its op declares that slot unread: op_desc.in_unread/
 * out_unread) lives until the backward of the earliest step reading it, so
 * the gradients of later steps reuse what the first ones no longer need;
 * any other value only until its last reader in the forward pass. The
 * plan's outputs live at least to the caller's turn (train_output: valid
 * until train_backward). The inputs take no storage: forward reads the
 * caller's tensors in place.
 *
 * A gradient lives from its first writer to its producer: backward runs the
 * steps in reverse, so the gradient of an inner value is first written by
 * its last reader and last read by its producer. The seeded outputs' live
 * from the caller's turn; the parameters' and inputs' until the end.
 * zero_at[v] is the backward time (step n-1-t) at which v's gradient is
 * cleared before the first += (-1: never, the caller seeds it;
 * ZERO_AT_START: before the first step, for a parameter no step reads).
 *
 * A fresh gradient that an op computes in place (op_desc.grad_inplace) takes
 * its output's gradient's memory, which dies at that very step: the two
 * share one interval (inplace_input).
 *
 * off receives the offsets: [0, nv) the activations', [nv, 2nv) the
 * gradients' (SIZE_MAX: none). */
static lego_status plan_storage(train_plan *p, size_t *off, size_t *total)
{
    const lego_graph *g = p->g;
    int nv = g->n_values, n = p->n_steps, end = 2 * n + 1;
    size_t m = 2 * (size_t)nv + 1;
    size_t *bytes = calloc(m, sizeof *bytes);
    int *def = malloc(sizeof *def * m), *last = malloc(sizeof *last * m);
    int *producer = malloc(sizeof *producer * ((size_t)nv + 1)), *reader = malloc(sizeof *reader * ((size_t)nv + 1));
    if (!bytes || !def || !last || !producer || !reader) {
        free(bytes), free(def), free(last), free(producer), free(reader);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning training");
    }
    for (size_t v = 0; v < m; v++)
        def[v] = last[v] = -1;
    for (int v = 0; v < nv; v++)
        producer[v] = reader[v] = -1;
    /* activations: def and last use in the forward pass, then the backward
     * reads (the earliest reading step's backward comes last) */
    for (int s = 0; s < n; s++) {
        const gnode *nd = &g->nodes[p->steps[s]];
        for (int o = 0; o < nd->n_out; o++) {
            int v = nd->out[o];
            producer[v] = s;
            def[v] = last[v] = s;
            bytes[v] = lego_tensor_bytes(&p->vt[v]);
            if (!(nd->op->out_unread >> o & 1u))
                last[v] = 2 * n - s;
            if (contains(p->outputs, p->n_outputs, v) && last[v] < n)
                last[v] = n;
        }
        for (int i = 0; i < nd->n_in; i++) {
            int v = nd->in[i];
            if (v < 0)
                continue;
            reader[v] = s;
            if (def[v] < 0)
                continue; /* not the plan's (an input or a constant) */
            int t = nd->op->in_unread >> i & 1u ? s : 2 * n - s;
            if (t > last[v])
                last[v] = t;
        }
    }
    /* gradients, in backward time t first (step n-1-t), then on the timeline */
    for (int v = 0; v < nv; v++) {
        p->zero_at[v] = -1;
        if (!p->needs_grad[v])
            continue;
        int k = nv + v, first, final;
        bytes[k] = lego_tensor_bytes(&p->gt[v]);
        if (contains(p->outputs, p->n_outputs, v)) {
            first = -1; /* the caller's turn */
        } else if (reader[v] < 0 && producer[v] < 0) { /* a parameter no step reads */
            first = 0;
            p->zero_at[v] = ZERO_AT_START;
        } else {
            first = n - 1 - (reader[v] >= 0 ? reader[v] : producer[v]);
            p->zero_at[v] = first;
        }
        final = producer[v] >= 0 ? n - 1 - producer[v] : n;
        def[k] = n + 1 + first;
        last[k] = n + 1 + final;
    }
    /* in-place gradients: share[k] is the gradient whose memory k takes;
     * steps run backward, so a chain (Relu's input takes its output's,
     * BatchNormalization's input then takes that) resolves in order */
    int *share = malloc(sizeof *share * m);
    if (!share) {
        free(bytes), free(def), free(last), free(producer), free(reader);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning training");
    }
    for (size_t k = 0; k < m; k++)
        share[k] = -1;
    for (int s = n - 1; s >= 0; s--) {
        const gnode *nd = &g->nodes[p->steps[s]];
        int v = inplace_input(p, nd, s, reader);
        if (v < 0)
            continue;
        int to = share_root(share, nv + nd->out[0]);
        share[nv + v] = to;
        if (last[nv + v] > last[to])
            last[to] = last[nv + v];
        def[nv + v] = last[nv + v] = -1;
        bytes[nv + v] = 0;
    }
    lego_status st = arena_layout(2 * nv, bytes, def, last, end + 1, off, total);
    for (size_t k = 0; st.code == LEGO_OK && k < m; k++)
        if (share[k] >= 0)
            off[k] = off[share_root(share, (int)k)];
    free(share);
    free(bytes), free(def), free(last), free(producer), free(reader);
    return st;
}

lego_status train_plan_build(lego_graph *g, const int *inputs, int n_inputs, const int *outputs,
                             int n_outputs, const int *params, int n_params, train_plan *p)
{
    return train_plan_build_ex(g, inputs, n_inputs, outputs, n_outputs, params, n_params, true, p);
}

lego_status train_plan_build_ex(lego_graph *g, const int *inputs, int n_inputs, const int *outputs,
                                int n_outputs, const int *params, int n_params, bool input_grads,
                                train_plan *p)
{
    memset(p, 0, sizeof *p);
    if (g->weights_released)
        return lego_error(LEGO_ERR_INTERNAL, "%s: its weights were released by an inference plan", g->name);
    p->g = g;
    int nv = g->n_values, nn = g->n_nodes;
    p->inputs = dup_list(inputs, n_inputs);
    p->outputs = dup_list(outputs, n_outputs);
    p->params = dup_list(params, n_params);
    p->n_inputs = n_inputs, p->n_outputs = n_outputs, p->n_params = n_params;
    p->vt = calloc((size_t)nv + 1, sizeof *p->vt);
    p->gt = calloc((size_t)nv + 1, sizeof *p->gt);
    p->needs_grad = calloc((size_t)nv + 1, sizeof *p->needs_grad);
    p->steps = malloc(sizeof *p->steps * ((size_t)nn + 1));
    bool *in_sub = calloc((size_t)nn + 1, sizeof *in_sub);
    if (!p->inputs || !p->outputs || !p->params || !p->vt || !p->gt || !p->needs_grad || !p->steps ||
        !in_sub) {
        free(in_sub);
        train_plan_free(p);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning training");
    }
    for (int i = 0; i < n_params; i++) {
        const gvalue *v = &g->values[params[i]];
        if (v->kind != VALUE_INITIALIZER || v->t.dtype != LEGO_F32) {
            free(in_sub);
            train_plan_free(p);
            return lego_error(LEGO_ERR_ARG, "%s: '%s' is not a float initializer and cannot be trained",
                              g->name, v->name);
        }
    }
    lego_status st = select_nodes(p, in_sub);
    for (int k = 0; k < nn && st.code == LEGO_OK; k++) {
        int node = g->order[k];
        if (in_sub[node] && !g->nodes[node].folded)
            p->steps[p->n_steps++] = node;
    }
    free(in_sub);
    if (st.code) {
        train_plan_free(p);
        return st;
    }

    /* Gradients flow from the parameters (and the caller's float inputs)
     * forward through every float value computed from them. */
    for (int i = 0; i < n_params; i++)
        p->needs_grad[params[i]] = true;
    for (int i = 0; input_grads && i < n_inputs; i++)
        p->needs_grad[inputs[i]] = g->values[inputs[i]].t.dtype == LEGO_F32;
    char label[256];
    for (int s = 0; s < p->n_steps; s++) {
        const gnode *n = &g->nodes[p->steps[s]];
        bool any = false;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0 && p->needs_grad[n->in[i]])
                any = true;
        bool float_out = false;
        for (int o = 0; o < n->n_out; o++)
            float_out |= g->values[n->out[o]].t.dtype == LEGO_F32;
        /* a node with no float output (Shape, Equal, Cast to int) passes no
         * gradient on, whatever it reads */
        if (!any || !float_out)
            continue;
        if (!n->op->backward) {
            lego_status err = lego_error(LEGO_ERR_UNSUPPORTED, "%s: %s has no backward pass yet",
                                         g->name, graph_node_label(g, p->steps[s], label, sizeof label));
            train_plan_free(p);
            return err;
        }
        for (int o = 0; o < n->n_out; o++)
            p->needs_grad[n->out[o]] = g->values[n->out[o]].t.dtype == LEGO_F32;
    }

    /* Storage: activations and gradients, in one arena by lifetimes. */
    for (int v = 0; v < nv; v++) {
        p->vt[v] = g->values[v].t;
        p->vt[v].owns = 0;
        p->gt[v] = g->values[v].t;
        p->gt[v].owns = 0;
        p->gt[v].data = NULL;
    }
    size_t bytes = 0;
    size_t *off = malloc(sizeof *off * (2 * (size_t)nv + 1));
    p->zero_at = malloc(sizeof *p->zero_at * ((size_t)nv + 1));
    lego_status lay = off && p->zero_at ? plan_storage(p, off, &bytes)
                                        : lego_error(LEGO_ERR_NOMEM, "out of memory planning training");
    if (lay.code == LEGO_OK && !(p->mem = lego_aligned_alloc(bytes ? bytes : 64)))
        lay = lego_error(LEGO_ERR_NOMEM, "cannot allocate %zu bytes of activations and gradients", bytes);
    if (lay.code) {
        free(off);
        train_plan_free(p);
        return lay;
    }
    for (int v = 0; v < nv; v++) {
        if (off[v] != SIZE_MAX)
            p->vt[v].data = p->mem + off[v];
        if (off[nv + v] != SIZE_MAX)
            p->gt[v].data = p->mem + off[nv + v];
    }
    free(off);
    p->mem_bytes = bytes;
    st = pack_steps(p);
    if (st.code)
        train_plan_free(p);
    return st;
}

size_t train_plan_storage_bytes(const train_plan *p) { return p->mem_bytes; }

void train_plan_use_storage(train_plan *p, void *mem)
{
    unsigned char *to = mem;
    uintptr_t m0 = (uintptr_t)p->mem;
    for (int v = 0; v < p->g->n_values; v++) {
        /* only the pointers into the plan's own storage move (initializers stay) */
        uintptr_t d = (uintptr_t)p->vt[v].data;
        if (d && d - m0 < p->mem_bytes)
            p->vt[v].data = to + (d - m0);
        d = (uintptr_t)p->gt[v].data;
        if (d && d - m0 < p->mem_bytes)
            p->gt[v].data = to + (d - m0);
    }
    if (!p->shared)
        lego_aligned_free(p->mem);
    p->mem = to;
    p->shared = true;
}

void train_plan_use_workspace(train_plan *p, workspace *ws)
{
    workspace_free(&p->own_ws);
    p->ws = ws;
}

lego_status train_forward(train_plan *p, const lego_tensor *const *x, bool training)
{
    lego_graph *g = p->g;
    char got[96], want[96];
    for (int i = 0; i < p->n_inputs; i++) {
        lego_tensor *dst = &p->vt[p->inputs[i]];
        if (x[i]->dtype != dst->dtype || !tensor_same_shape(x[i], dst))
            return lego_error(LEGO_ERR_SHAPE, "input '%s' is %s %s, the plan expects %s %s",
                              g->values[p->inputs[i]].name, dtype_name(x[i]->dtype),
                              tensor_shape_str(x[i], got, sizeof got), dtype_name(dst->dtype),
                              tensor_shape_str(dst, want, sizeof want));
        dst->data = x[i]->data; /* kernels never write their inputs */
    }
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    p->training = training;
    for (int s = 0; s < p->n_steps; s++) {
        const gnode *n = &g->nodes[p->steps[s]];
        op_call c;
        graph_node_call(g, n, p->vt, in, out, &c);
        c.training = training;
        c.train_state = p->kstate[s];
        c.ws = p->ws ? p->ws : &p->own_ws;
        n->op->forward(&c);
    }
    for (int i = 0; i < p->n_outputs; i++) {
        lego_tensor *d = &p->gt[p->outputs[i]];
        if (d->data)
            memset(d->data, 0, lego_tensor_bytes(d));
    }
    return lego_ok();
}

lego_tensor *train_output(train_plan *p, int i) { return &p->vt[p->outputs[i]]; }
lego_tensor *train_output_grad(train_plan *p, int i) { return &p->gt[p->outputs[i]]; }
lego_tensor *train_param(train_plan *p, int i) { return &p->vt[p->params[i]]; }
lego_tensor *train_param_grad(train_plan *p, int i) { return &p->gt[p->params[i]]; }
lego_tensor *train_input_grad(train_plan *p, int i) { return &p->gt[p->inputs[i]]; }

/* Ops add into gradients, so each starts from zero, cleared just before
 * the step that writes it first (it may share memory with gradients that
 * died earlier). Those are the step's inputs, or its outputs that nothing
 * read (their producer reads zeros). An op that can write an input's
 * gradient outright (op_desc.grad_writes) is told so instead (the returned
 * op_call.fresh bits), unless the step reads that value twice. */
static unsigned clear_gradients(train_plan *p, const gnode *n, int t)
{
    unsigned fresh = 0;
    for (int i = 0; i < n->n_in + n->n_out; i++) {
        int v = i < n->n_in ? n->in[i] : n->out[i - n->n_in];
        if (v < 0 || p->zero_at[v] != t)
            continue;
        if (i < n->n_in && writes_fresh(n, i))
            fresh |= 1u << i;
        else
            memset(p->gt[v].data, 0, lego_tensor_bytes(&p->gt[v]));
    }
    return fresh;
}

void train_backward(train_plan *p)
{
    lego_graph *g = p->g;
    for (int v = 0; v < g->n_values; v++)
        if (p->zero_at[v] == ZERO_AT_START)
            memset(p->gt[v].data, 0, lego_tensor_bytes(&p->gt[v]));
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO], *dout[OP_MAX_IO], *din[OP_MAX_IO];
    for (int s = p->n_steps - 1; s >= 0; s--) {
        const gnode *n = &g->nodes[p->steps[s]];
        unsigned fresh = clear_gradients(p, n, p->n_steps - 1 - s);
        bool flows = false;
        for (int o = 0; o < n->n_out; o++) {
            dout[o] = p->gt[n->out[o]].data ? &p->gt[n->out[o]] : NULL;
            flows |= dout[o] != NULL;
        }
        bool wanted = false;
        for (int i = 0; i < n->n_in; i++) {
            din[i] = n->in[i] >= 0 && p->gt[n->in[i]].data ? &p->gt[n->in[i]] : NULL;
            wanted |= din[i] != NULL;
        }
        if (!flows || !wanted) { /* nothing flows: a fresh gradient is zero */
            for (int i = 0; i < n->n_in; i++)
                if (fresh >> i & 1u && din[i])
                    memset(din[i]->data, 0, lego_tensor_bytes(din[i]));
            continue;
        }
        op_call c;
        graph_node_call(g, n, p->vt, in, out, &c);
        c.training = p->training;
        c.train_state = p->kstate[s];
        c.ws = p->ws ? p->ws : &p->own_ws;
        c.fresh = fresh;
        n->op->backward(&c, dout, din);
    }
}
