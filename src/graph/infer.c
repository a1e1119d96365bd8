/* infer.c - ordering, shape inference and constant folding.
 *
 * One pass over the nodes in topological order asks each op's prepare for
 * its output shapes. A node whose inputs are all known at load (initializers,
 * or values folded earlier in the pass) is run right away and its outputs
 * become constants: this is how the Shape->Gather->Unsqueeze->Concat chains
 * that exporters emit around Reshape turn into plain constant shapes. The pass
 * is re-run whenever an input shape changes, so folded shapes follow it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

/* No CNN activation comes near this; a larger one is a corrupt shape. The
 * fuzzer build lowers it to stay within its memory limit. */
#ifndef LEGO_MAX_ELEMENTS
#define LEGO_MAX_ELEMENTS ((int64_t)1 << 32)
#endif
#define MAX_ELEMENTS ((int64_t)LEGO_MAX_ELEMENTS)

static lego_status check_ops_known(const lego_graph *g)
{
    /* Name every unsupported op type at once: a user converting a model
     * wants the whole list, not one op per attempt. */
    char list[1024] = "";
    size_t pos = 0;
    int missing = 0, first = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *n = &g->nodes[i];
        if (n->op)
            continue;
        bool seen = false;
        for (int j = 0; j < i; j++)
            if (!g->nodes[j].op && strcmp(g->nodes[j].op_type, n->op_type) == 0)
                seen = true;
        if (seen)
            continue;
        if (first < 0)
            first = i;
        missing++;
        if (pos < sizeof list - 1) {
            int w = snprintf(list + pos, sizeof list - pos, "%s%s (node '%s')", missing > 1 ? ", " : "",
                             n->op_type, n->name);
            if (w > 0)
                pos += (size_t)w;
        }
    }
    if (missing)
        return lego_error(LEGO_ERR_UNSUPPORTED, "unsupported op type%s at opset %d: %s",
                          missing > 1 ? "s" : "", g->opset, list);
    return lego_ok();
}

static lego_status check_arity(const lego_graph *g, int k)
{
    const gnode *n = &g->nodes[k];
    char label[256];
    if (n->n_in < n->op->min_in || n->n_in > n->op->max_in)
        return lego_error(LEGO_ERR_FORMAT, "%s: has %d inputs, expected %d to %d",
                          graph_node_label(g, k, label, sizeof label), n->n_in, n->op->min_in,
                          n->op->max_in);
    if (n->n_out < n->op->min_out || n->n_out > n->op->max_out)
        return lego_error(LEGO_ERR_FORMAT, "%s: has %d outputs, expected %d to %d",
                          graph_node_label(g, k, label, sizeof label), n->n_out, n->op->min_out,
                          n->op->max_out);
    for (int i = 0; i < n->op->min_in; i++)
        if (n->in[i] < 0)
            return lego_error(LEGO_ERR_FORMAT, "%s: required input %d is empty",
                              graph_node_label(g, k, label, sizeof label), i);
    return lego_ok();
}

/* Kahn's algorithm; ONNX promises sorted nodes, but a hand-edited file may
 * not keep that promise, and a cycle must be an error, not a hang. */
static lego_status topo_sort(lego_graph *g)
{
    int n = g->n_nodes;
    int *pending = calloc((size_t)(n ? n : 1), sizeof *pending);
    int *order = malloc(sizeof *order * (size_t)(n ? n : 1));
    if (!pending || !order) {
        free(pending), free(order);
        return lego_error(LEGO_ERR_NOMEM, "out of memory ordering nodes");
    }
    char label[256];
    for (int k = 0; k < n; k++) {
        const gnode *nd = &g->nodes[k];
        for (int i = 0; i < nd->n_in; i++) {
            int v = nd->in[i];
            if (v < 0)
                continue;
            const gvalue *val = &g->values[v];
            if (val->kind == VALUE_ACTIVATION && val->producer < 0) {
                free(pending), free(order);
                return lego_error(LEGO_ERR_FORMAT,
                                  "%s reads '%s', which no node, initializer or graph input defines",
                                  graph_node_label(g, k, label, sizeof label), val->name);
            }
            if (val->producer >= 0)
                pending[k]++;
        }
    }
    /* Stable: among ready nodes keep file order, so results never depend on
     * anything but the graph. */
    int done = 0;
    bool *placed = calloc((size_t)(n ? n : 1), sizeof *placed);
    if (!placed) {
        free(pending), free(order);
        return lego_error(LEGO_ERR_NOMEM, "out of memory ordering nodes");
    }
    bool progress = true;
    while (done < n && progress) {
        progress = false;
        for (int k = 0; k < n; k++) {
            if (placed[k] || pending[k])
                continue;
            placed[k] = true;
            order[done++] = k;
            progress = true;
            const gnode *nd = &g->nodes[k];
            for (int o = 0; o < nd->n_out; o++)
                for (int j = 0; j < n; j++)
                    for (int i = 0; i < g->nodes[j].n_in; i++)
                        if (g->nodes[j].in[i] == nd->out[o])
                            pending[j]--;
        }
    }
    lego_status st = lego_ok();
    if (done < n) {
        int k = 0;
        while (placed[k])
            k++;
        st = lego_error(LEGO_ERR_FORMAT, "the graph has a cycle through %s",
                        graph_node_label(g, k, label, sizeof label));
    }
    free(placed);
    free(pending);
    free(g->order);
    g->order = order;
    return st;
}

static void unfold_all(lego_graph *g)
{
    for (int i = 0; i < g->n_values; i++) {
        gvalue *v = &g->values[i];
        if (v->kind == VALUE_FOLDED) {
            tensor_release(&v->t);
            v->kind = VALUE_ACTIVATION;
        }
    }
    for (int k = 0; k < g->n_nodes; k++)
        g->nodes[k].folded = false;
}

static bool is_known(const gvalue *v)
{
    return v->kind == VALUE_INITIALIZER || v->kind == VALUE_FOLDED;
}

static lego_status infer_node(lego_graph *g, int k)
{
    gnode *n = &g->nodes[k];
    const op_desc *op = n->op;
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    op_call c;
    char label[256];
    graph_node_call(g, n, NULL, in, out, &c);

    bool foldable = true;
    for (int i = 0; i < n->n_in; i++) {
        if (!in[i])
            continue;
        const gvalue *v = &g->values[n->in[i]];
        if (in[i]->dtype == LEGO_UNDEFINED)
            return lego_error(LEGO_ERR_SHAPE, "%s: input '%s' has no known type or shape",
                              graph_node_label(g, k, label, sizeof label), v->name);
        bool shape_only = i < 32 && (op->shape_inputs >> i & 1u);
        if (i < 32 && (op->const_inputs >> i & 1u) && !is_known(v))
            return lego_error(LEGO_ERR_UNSUPPORTED,
                              "%s: input %d ('%s') must be a constant known at load, but it is computed at run time",
                              graph_node_label(g, k, label, sizeof label), i, v->name);
        if (!shape_only && !is_known(v))
            foldable = false;
    }
    for (int i = 0; i < n->n_out; i++) {
        tensor_release(out[i]);
        out[i]->dtype = LEGO_UNDEFINED;
        out[i]->rank = 0;
    }
    if (n->params)
        memset(n->params, 0, op->params_size);
    lego_status st = op->prepare(&c);
    if (st.code)
        return lego_error_context(st, "%s: %s", g->name, graph_node_label(g, k, label, sizeof label));
    for (int i = 0; i < n->n_out; i++) {
        if (out[i]->dtype == LEGO_UNDEFINED || out[i]->rank < 0 || out[i]->rank > LEGO_MAX_RANK)
            return lego_error(LEGO_ERR_INTERNAL, "%s: prepare left output %d without a shape",
                              graph_node_label(g, k, label, sizeof label), i);
        int64_t numel = 1;
        for (int d = 0; d < out[i]->rank; d++) {
            int64_t dim = out[i]->dims[d];
            if (dim < 0)
                return lego_error(LEGO_ERR_SHAPE, "%s: output %d would have a negative dimension",
                                  graph_node_label(g, k, label, sizeof label), i);
            if (dim > 0 && numel > MAX_ELEMENTS / dim)
                return lego_error(LEGO_ERR_SHAPE, "%s: output %d would have over %lld elements",
                                  graph_node_label(g, k, label, sizeof label), i,
                                  (long long)MAX_ELEMENTS);
            numel *= dim;
        }
    }
    if (!foldable)
        return lego_ok();
    for (int i = 0; i < n->n_out; i++)
        LEGO_TRY(tensor_alloc(out[i]));
    op->forward(&c);
    for (int i = 0; i < n->n_out; i++)
        g->values[n->out[i]].kind = VALUE_FOLDED;
    n->folded = true;
    return lego_ok();
}

lego_status graph_infer(lego_graph *g)
{
    LEGO_TRY(check_ops_known(g));
    for (int k = 0; k < g->n_nodes; k++)
        LEGO_TRY(lego_error_context(check_arity(g, k), "%s", g->name));
    LEGO_TRY(lego_error_context(topo_sort(g), "%s", g->name));
    unfold_all(g);
    for (int i = 0; i < g->n_values; i++) {
        gvalue *v = &g->values[i];
        if (v->kind == VALUE_ACTIVATION) {
            v->t.dtype = LEGO_UNDEFINED;
            v->t.rank = 0;
        }
    }
    for (int j = 0; j < g->n_nodes; j++)
        LEGO_TRY(infer_node(g, g->order[j]));
    for (int i = 0; i < g->n_outputs; i++) {
        const gvalue *v = &g->values[g->outputs[i]];
        if (v->t.dtype == LEGO_UNDEFINED)
            return lego_error(LEGO_ERR_FORMAT, "%s: graph output '%s' is never computed", g->name,
                              v->name);
    }
    return lego_ok();
}
