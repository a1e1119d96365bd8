/* model.c - the public model handle: an imported graph plus its execution
 * plan, behind the lego_model_* calls of legodnn.h. */
#include <stdlib.h>
#include <string.h>

#include "../graph/exec.h"
#include "../onnx/onnx_import.h"

struct lego_model {
    lego_graph g;
    exec_plan plan;
    bool planned;
    lego_op_count *op_counts;
    int n_op_counts;
};

static lego_status model_prepare(lego_model *m)
{
    if (m->planned) {
        exec_plan_free(&m->plan);
        m->planned = false;
    }
    LEGO_TRY(graph_infer(&m->g));
    LEGO_TRY(exec_plan_build(&m->g, &m->plan));
    m->planned = true;
    return lego_ok();
}

/* m (allocated, its graph imported or st failed) prepared into *out, or freed. */
static lego_status finish_load(lego_model *m, lego_status st, lego_model **out)
{
    if (st.code == LEGO_OK)
        st = model_prepare(m);
    if (st.code) {
        lego_model_free(m);
        return st;
    }
    *out = m;
    return lego_ok();
}

lego_status lego_model_load_memory(const void *buf, size_t len, const char *name,
                                   lego_model **out)
{
    *out = NULL;
    lego_model *m = calloc(1, sizeof *m);
    if (!m)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    return finish_load(m, onnx_import(buf, len, name ? name : "model", &m->g), out);
}

/* Through onnx_load_file, which frees the file's bytes once parsed: the
 * weights are in memory twice at most while loading, not three times. */
lego_status lego_model_load(const char *path, lego_model **out)
{
    *out = NULL;
    lego_model *m = calloc(1, sizeof *m);
    if (!m)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    return finish_load(m, onnx_load_file(path, &m->g), out);
}

void lego_model_free(lego_model *m)
{
    if (!m)
        return;
    if (m->planned)
        exec_plan_free(&m->plan);
    graph_free(&m->g);
    free(m->op_counts);
    free(m);
}

int lego_model_num_inputs(const lego_model *m) { return m->g.n_inputs; }
int lego_model_num_outputs(const lego_model *m) { return m->g.n_outputs; }

const char *lego_model_input_name(const lego_model *m, int i)
{
    return i >= 0 && i < m->g.n_inputs ? m->g.values[m->g.inputs[i]].name : NULL;
}

const char *lego_model_output_name(const lego_model *m, int i)
{
    return i >= 0 && i < m->g.n_outputs ? m->g.values[m->g.outputs[i]].name : NULL;
}

const lego_tensor *lego_model_input(const lego_model *m, int i)
{
    return i >= 0 && i < m->g.n_inputs ? &m->g.values[m->g.inputs[i]].t : NULL;
}

const lego_tensor *lego_model_output(const lego_model *m, int i)
{
    return i >= 0 && i < m->g.n_outputs ? &m->g.values[m->g.outputs[i]].t : NULL;
}

lego_status lego_model_set_input_shape(lego_model *m, int i, int rank, const int64_t *dims)
{
    if (i < 0 || i >= m->g.n_inputs)
        return lego_error(LEGO_ERR_ARG, "the model has no input %d", i);
    gvalue *v = &m->g.values[m->g.inputs[i]];
    if (rank != v->declared_rank)
        return lego_error(LEGO_ERR_SHAPE, "input '%s' has rank %d, not %d", v->name,
                          v->declared_rank, rank);
    for (int d = 0; d < rank; d++) {
        if (dims[d] <= 0)
            return lego_error(LEGO_ERR_SHAPE, "input '%s': dimension %d must be positive", v->name, d);
        if (v->declared[d] > 0 && v->declared[d] != dims[d])
            return lego_error(LEGO_ERR_SHAPE, "input '%s': dimension %d is fixed at %lld by the model, not %lld",
                              v->name, d, (long long)v->declared[d], (long long)dims[d]);
    }
    lego_tensor old = v->t;
    tensor_set_shape(&v->t, v->t.dtype, rank, dims);
    lego_status st = model_prepare(m);
    if (st.code) {
        /* Leave the model runnable at its previous shape. */
        v->t = old;
        lego_status again = model_prepare(m);
        lego_status_free(&again);
    }
    return st;
}

lego_status lego_model_run(lego_model *m, const lego_tensor *const *inputs, lego_tensor **outputs)
{
    if (!m->planned)
        return lego_error(LEGO_ERR_ARG, "the model is not prepared");
    return exec_run(&m->g, &m->plan, inputs, outputs);
}

lego_status lego_model_stats_get(lego_model *m, lego_model_stats *out)
{
    memset(out, 0, sizeof *out);
    const lego_graph *g = &m->g;
    int64_t *per_node = calloc((size_t)g->n_nodes + 1, sizeof *per_node);
    lego_op_count *counts = calloc((size_t)g->n_nodes + 1, sizeof *counts);
    if (!per_node || !counts) {
        free(per_node), free(counts);
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    }
    out->flops = graph_flops(g, per_node);
    int n_types = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        const gnode *n = &g->nodes[k];
        if (n->folded) {
            out->num_folded++;
            continue;
        }
        out->num_nodes++;
        int t = 0;
        while (t < n_types && strcmp(counts[t].op_type, n->op_type) != 0)
            t++;
        if (t == n_types)
            counts[n_types++].op_type = n->op_type;
        counts[t].count++;
        counts[t].flops += per_node[k];
    }
    free(per_node);
    free(m->op_counts);
    m->op_counts = counts;
    m->n_op_counts = n_types;
    out->params = graph_param_count(g, &out->param_bytes);
    out->opset = g->opset;
    out->producer = g->producer;
    out->num_op_types = n_types;
    out->op_types = counts;
    return lego_ok();
}
