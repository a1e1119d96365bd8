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
    if (!p->shared) {
        lego_aligned_free(p->act);
        lego_aligned_free(p->grad);
    }
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

/* Per value: its bytes (zeroed), the step defining it and the last one
 * reading it, for arena_layout; plus n_extra int arrays of scratch. */
typedef struct lifetimes {
    size_t *bytes;
    int *def, *last, *extra[2];
} lifetimes;

static void lifetimes_free(lifetimes *lt)
{
    free(lt->bytes), free(lt->def), free(lt->last), free(lt->extra[0]), free(lt->extra[1]);
}

static lego_status lifetimes_alloc(lifetimes *lt, int nv, int n_extra)
{
    memset(lt, 0, sizeof *lt);
    size_t n = (size_t)nv + 1;
    lt->bytes = calloc(n, sizeof *lt->bytes);
    lt->def = malloc(sizeof *lt->def * n);
    lt->last = malloc(sizeof *lt->last * n);
    bool ok = lt->bytes && lt->def && lt->last;
    for (int i = 0; i < n_extra; i++)
        ok &= (lt->extra[i] = malloc(sizeof *lt->extra[i] * n)) != NULL;
    if (!ok) {
        lifetimes_free(lt);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning training");
    }
    return lego_ok();
}

/* Activation storage by lifetime over the forward pass. A value backward
 * reads (as an input or output of a step, unless its op declares that slot
 * unread: op_desc.in_unread/out_unread) and the plan's outputs live to the
 * end; any other value only until its last reader in the forward pass.
 * The inputs take no storage: forward reads the caller's tensors in place. */
static lego_status plan_activations(train_plan *p, size_t *offset, size_t *total)
{
    const lego_graph *g = p->g;
    int nv = g->n_values, n = p->n_steps;
    lifetimes lt;
    LEGO_TRY(lifetimes_alloc(&lt, nv, 0));
    size_t *bytes = lt.bytes;
    int *def = lt.def, *last = lt.last;
    for (int v = 0; v < nv; v++)
        def[v] = last[v] = -1;
    for (int s = 0; s < n; s++) {
        const gnode *nd = &g->nodes[p->steps[s]];
        for (int o = 0; o < nd->n_out; o++) {
            int v = nd->out[o];
            def[v] = last[v] = s;
            bytes[v] = lego_tensor_bytes(&p->vt[v]);
            if (!(nd->op->out_unread >> o & 1u) || contains(p->outputs, p->n_outputs, v))
                last[v] = n;
        }
        for (int i = 0; i < nd->n_in; i++) {
            int v = nd->in[i];
            if (v < 0 || def[v] < 0 || last[v] == n)
                continue; /* not the plan's (an input or a constant), or kept already */
            last[v] = nd->op->in_unread >> i & 1u ? s : n;
        }
    }
    lego_status st = arena_layout(nv, bytes, def, last, n, offset, total);
    lifetimes_free(&lt);
    return st;
}

/* Gradient storage by lifetime. Backward runs the steps in reverse, so in
 * backward time t (step n-1-t) the gradient of an inner value is first
 * written by its last reader and last read by its producer; only then can
 * its memory go to another gradient. The seeded outputs live from the start;
 * the parameters' and inputs' gradients (read by the caller afterwards)
 * until the end. zero_at[v] is the backward time at which v's gradient is
 * cleared before the first += (-1: never, the caller seeds it;
 * ZERO_AT_START: before the first step, for a parameter no step reads). */
static lego_status plan_gradients(train_plan *p, size_t *offset, size_t *total)
{
    const lego_graph *g = p->g;
    int nv = g->n_values, n = p->n_steps;
    lifetimes lt;
    LEGO_TRY(lifetimes_alloc(&lt, nv, 2));
    size_t *bytes = lt.bytes;
    int *def = lt.def, *last = lt.last, *producer = lt.extra[0], *reader = lt.extra[1];
    for (int v = 0; v < nv; v++)
        producer[v] = reader[v] = -1;
    for (int s = 0; s < n; s++) { /* the step of each value's producer and last reader */
        const gnode *nd = &g->nodes[p->steps[s]];
        for (int i = 0; i < nd->n_in; i++)
            if (nd->in[i] >= 0)
                reader[nd->in[i]] = s;
        for (int o = 0; o < nd->n_out; o++)
            producer[nd->out[o]] = s;
    }
    for (int v = 0; v < nv; v++) {
        def[v] = p->zero_at[v] = -1;
        if (!p->needs_grad[v])
            continue;
        bytes[v] = lego_tensor_bytes(&p->gt[v]);
        if (contains(p->outputs, p->n_outputs, v)) {
            def[v] = 0;
        } else if (reader[v] < 0 && producer[v] < 0) { /* a parameter no step reads */
            def[v] = 0;
            p->zero_at[v] = ZERO_AT_START;
        } else {
            def[v] = n - 1 - (reader[v] >= 0 ? reader[v] : producer[v]);
            p->zero_at[v] = def[v];
        }
        last[v] = producer[v] >= 0 ? n - 1 - producer[v] : n;
    }
    lego_status st = arena_layout(nv, bytes, def, last, n, offset, total);
    lifetimes_free(&lt);
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

    /* Storage: activations and gradients, each laid out by lifetimes. */
    size_t act_bytes = 0, grad_bytes = 0;
    for (int v = 0; v < nv; v++) {
        p->vt[v] = g->values[v].t;
        p->vt[v].owns = 0;
        p->gt[v] = g->values[v].t;
        p->gt[v].owns = 0;
        p->gt[v].data = NULL;
    }
    size_t *act_off = malloc(sizeof *act_off * ((size_t)nv + 1));
    lego_status lay = act_off ? plan_activations(p, act_off, &act_bytes)
                              : lego_error(LEGO_ERR_NOMEM, "out of memory planning training");
    if (lay.code) {
        free(act_off);
        train_plan_free(p);
        return lay;
    }
    size_t *grad_off = malloc(sizeof *grad_off * ((size_t)nv + 1));
    p->zero_at = malloc(sizeof *p->zero_at * ((size_t)nv + 1));
    lay = grad_off && p->zero_at ? plan_gradients(p, grad_off, &grad_bytes)
                                             : lego_error(LEGO_ERR_NOMEM, "out of memory planning training");
    if (lay.code) {
        free(act_off), free(grad_off);
        train_plan_free(p);
        return lay;
    }
    p->act = lego_aligned_alloc(act_bytes ? act_bytes : 64);
    p->grad = lego_aligned_alloc(grad_bytes ? grad_bytes : 64);
    if (!p->act || !p->grad) {
        free(act_off), free(grad_off);
        train_plan_free(p);
        return lego_error(LEGO_ERR_NOMEM, "cannot allocate %zu bytes of activations and %zu of gradients",
                          act_bytes, grad_bytes);
    }
    for (int v = 0; v < nv; v++) {
        if (act_off[v] != SIZE_MAX)
            p->vt[v].data = p->act + act_off[v];
        if (grad_off[v] != SIZE_MAX)
            p->gt[v].data = p->grad + grad_off[v];
    }
    free(act_off), free(grad_off);
    memset(p->grad, 0, grad_bytes);
    p->act_bytes = act_bytes;
    p->grad_bytes = grad_bytes;
    st = pack_steps(p);
    if (st.code)
        train_plan_free(p);
    return st;
}

size_t train_plan_storage_bytes(const train_plan *p) { return p->act_bytes + p->grad_bytes; }

void train_plan_use_storage(train_plan *p, void *mem)
{
    unsigned char *act = mem, *grad = act + p->act_bytes;
    uintptr_t a0 = (uintptr_t)p->act, g0 = (uintptr_t)p->grad;
    for (int v = 0; v < p->g->n_values; v++) {
        /* only the pointers into the plan's own storage move (initializers stay) */
        uintptr_t d = (uintptr_t)p->vt[v].data;
        if (d && d - a0 < p->act_bytes)
            p->vt[v].data = act + (d - a0);
        d = (uintptr_t)p->gt[v].data;
        if (d && d - g0 < p->grad_bytes)
            p->gt[v].data = grad + (d - g0);
    }
    if (!p->shared) {
        lego_aligned_free(p->act);
        lego_aligned_free(p->grad);
    }
    p->act = act;
    p->grad = grad;
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
        c.train_ws = p->ws ? p->ws : &p->own_ws;
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
 * read (their producer reads zeros). */
static void clear_gradients(train_plan *p, const gnode *n, int t)
{
    for (int i = 0; i < n->n_in + n->n_out; i++) {
        int v = i < n->n_in ? n->in[i] : n->out[i - n->n_in];
        if (v >= 0 && p->zero_at[v] == t)
            memset(p->gt[v].data, 0, lego_tensor_bytes(&p->gt[v]));
    }
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
        clear_gradients(p, n, p->n_steps - 1 - s);
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
        if (!flows || !wanted)
            continue;
        op_call c;
        graph_node_call(g, n, p->vt, in, out, &c);
        c.training = p->training;
        c.train_state = p->kstate[s];
        c.train_ws = p->ws ? p->ws : &p->own_ws;
        n->op->backward(&c, dout, din);
    }
}
