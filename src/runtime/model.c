/* model.c - the public model handle: an imported graph plus its execution
 * plan, behind the lego_model_* calls of legodnn.h.
 *
 * Weights are held once. The plan's packed kernels (oneDNN's Conv) keep
 * their own copies of the weights they read, so a model loaded from a file
 * frees the graph's copies (exec_release_packed): a 45 MB model ran holding
 * 45 MB of them on top of oneDNN's. It does so at the first run, not when
 * planned, because callers set their input shapes between loading and
 * running, and each new shape needs a new plan, and so the weights: after
 * a release they are read again from the file, which must be the one
 * loaded (same identity, core/file.h). A model loaded from memory keeps its
 * weights, having nowhere to read them again. */
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "../graph/exec.h"
#include "../onnx/onnx_import.h"

struct lego_model {
    lego_graph g;
    exec_plan plan;
    bool planned;
    char *path;   /* the file it was loaded from (NULL: from memory) */
    file_id id;   /* that file's identity when loaded */
    bool release; /* free the weights the kernels copied at the next run */
    lego_op_count *op_counts;
    int n_op_counts;
};

/* The initializers exec_release_packed freed, read again from m's file. */
static lego_status restore_weights(lego_model *m)
{
    file_id now;
    LEGO_TRY(file_id_of_path(m->path, &now));
    if (!file_id_equal(&now, &m->id))
        return lego_error(LEGO_ERR_IO,
                          "%s changed since the model was loaded: its weights (freed once the kernels "
                          "copied them) cannot be read again for a new plan; load it again",
                          m->path);
    lego_graph again;
    LEGO_TRY(onnx_load_file(m->path, &again));
    lego_status st = lego_ok();
    for (int v = 0; v < m->g.n_values && st.code == LEGO_OK; v++) {
        lego_tensor *t = &m->g.values[v].t;
        if (m->g.values[v].kind != VALUE_INITIALIZER || t->data)
            continue;
        int w = graph_find_value(&again, m->g.values[v].name);
        lego_tensor *u = w >= 0 ? &again.values[w].t : NULL;
        if (!u || again.values[w].kind != VALUE_INITIALIZER || !u->data || !u->owns || u->dtype != t->dtype ||
            !tensor_same_shape(u, t)) {
            st = lego_error(LEGO_ERR_FORMAT, "%s: initializer '%s' is not what it was when loaded", m->path,
                            m->g.values[v].name);
            break;
        }
        t->data = u->data; /* taken over */
        t->owns = 1;
        u->data = NULL;
        u->owns = 0;
    }
    graph_free(&again);
    if (st.code == LEGO_OK)
        m->g.weights_released = false;
    return st;
}

/* Plans m for its current input shapes. The weights come back first: when
 * they cannot, the plan m had stays, whole and runnable. */
static lego_status model_prepare(lego_model *m)
{
    if (m->g.weights_released)
        LEGO_TRY(restore_weights(m));
    if (m->planned) {
        exec_plan_free(&m->plan);
        m->planned = false;
    }
    LEGO_TRY(graph_infer(&m->g));
    LEGO_TRY(exec_plan_build(&m->g, &m->plan));
    m->planned = true;
    m->release = m->path != NULL;
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
 * weights are in memory twice at most while loading, not three times. The
 * identity is taken first, so a file replaced while being read is not
 * taken for the one loaded. */
lego_status lego_model_load(const char *path, lego_model **out)
{
    *out = NULL;
    lego_model *m = calloc(1, sizeof *m);
    if (!m)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    lego_status st = file_id_of_path(path, &m->id);
    if (st.code == LEGO_OK && !(m->path = strdup(path)))
        st = lego_error(LEGO_ERR_NOMEM, "out of memory");
    if (st.code == LEGO_OK)
        st = onnx_load_file(path, &m->g);
    return finish_load(m, st, out);
}

void lego_model_free(lego_model *m)
{
    if (!m)
        return;
    if (m->planned)
        exec_plan_free(&m->plan);
    graph_free(&m->g);
    free(m->path);
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
    if (m->release) {
        exec_release_packed(&m->g, m->plan.steps, m->plan.n_steps, m->plan.st, m->plan.vt);
        m->release = false;
    }
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
    out->held_weight_bytes = m->planned ? exec_weight_bytes(g, m->plan.steps, m->plan.n_steps, m->plan.st)
                                        : out->param_bytes;
    out->opset = g->opset;
    out->producer = g->producer;
    out->num_op_types = n_types;
    out->op_types = counts;
    return lego_ok();
}
