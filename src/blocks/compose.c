/* compose.c - splicing descendants into the frame (compose.h). */
#include "compose.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/tensor.h"

static lego_status nomem(void) { return lego_error(LEGO_ERR_NOMEM, "out of memory composing a model"); }

/* A name not yet in g: base, else base__block<i>, base__block<i>_2, ... */
static lego_status fresh_name(const lego_graph *g, const char *base, int block, char **out)
{
    size_t n = strlen(base) + 48;
    char *s = malloc(n);
    if (!s)
        return nomem();
    snprintf(s, n, "%s", base);
    for (int k = 1; graph_find_value(g, s) >= 0; k++) {
        if (k == 1)
            snprintf(s, n, "%s__block%d", base, block);
        else
            snprintf(s, n, "%s__block%d_%d", base, block, k);
    }
    *out = s;
    return lego_ok();
}

/* Copy src's values and nodes into dst. map (src value -> dst value) comes
 * with the bound values (src's inputs, and its outputs when dst already has
 * them) set and the rest -1. Initializers are cloned; every other value
 * becomes an activation (folded ones are folded again by graph_infer). */
static lego_status copy_graph(lego_graph *dst, const lego_graph *src, int *map, int block)
{
    for (int v = 0; v < src->n_values; v++) {
        if (map[v] >= 0)
            continue;
        const gvalue *val = &src->values[v];
        if (val->kind == VALUE_INPUT)
            return lego_error(LEGO_ERR_INTERNAL, "%s: input '%s' is not bound", src->name, val->name);
        char *name = NULL;
        LEGO_TRY(fresh_name(dst, val->name, block, &name));
        lego_status st;
        if (val->kind == VALUE_INITIALIZER) {
            st = graph_add_value(dst, name, VALUE_INITIALIZER, &map[v]);
            if (st.code == LEGO_OK)
                st = tensor_clone(&val->t, &dst->values[map[v]].t);
        } else {
            st = graph_add_value(dst, name, VALUE_ACTIVATION, &map[v]);
        }
        free(name);
        LEGO_TRY(st);
    }
    for (int j = 0; j < src->n_nodes; j++) {
        int k = src->order ? src->order[j] : j;
        const gnode *n = &src->nodes[k];
        int in[OP_MAX_IO], out[OP_MAX_IO];
        for (int i = 0; i < n->n_in; i++)
            in[i] = n->in[i] < 0 ? -1 : map[n->in[i]];
        for (int o = 0; o < n->n_out; o++)
            out[o] = map[n->out[o]];
        attr_list attrs;
        LEGO_TRY(attr_list_copy(&n->attrs, &attrs));
        int idx;
        LEGO_TRY(graph_add_node(dst, n->name, n->op_type, in, n->n_in, out, n->n_out, &attrs, &idx));
    }
    return lego_ok();
}

static lego_status add_io(int **list, int *n, int v)
{
    int *l = realloc(*list, sizeof *l * (size_t)(*n + 1));
    if (!l)
        return nomem();
    l[(*n)++] = v;
    *list = l;
    return lego_ok();
}

static lego_status compose_in(const lego_graph *frame, int model_inputs, int model_outputs,
                              const lego_graph *const *desc, int n_blocks, lego_graph *out, int *map)
{
    lego_graph *g = out;
    g->opset = frame->opset;
    for (int i = 0; i < frame->n_meta; i++)
        LEGO_TRY(graph_set_meta(g, frame->meta_keys[i], frame->meta_values[i]));
    if (model_inputs < 1 || model_inputs > frame->n_inputs || model_outputs < 1 || model_outputs > frame->n_outputs)
        return lego_error(LEGO_ERR_ARG, "%s: %d inputs and %d outputs; the model has %d and %d", frame->name,
                          frame->n_inputs, frame->n_outputs, model_inputs, model_outputs);
    /* the frame: model inputs stay inputs, block exits become values the
     * descendants will make */
    for (int v = 0; v < frame->n_values; v++)
        map[v] = -1;
    for (int i = 0; i < frame->n_inputs; i++) {
        const gvalue *src = &frame->values[frame->inputs[i]];
        int idx;
        LEGO_TRY(graph_add_value(g, src->name, i < model_inputs ? VALUE_INPUT : VALUE_ACTIVATION, &idx));
        map[frame->inputs[i]] = idx;
        if (i >= model_inputs)
            continue;
        gvalue *dst = &g->values[idx];
        tensor_set_shape(&dst->t, src->t.dtype, src->t.rank, src->t.dims);
        dst->declared_rank = src->declared_rank;
        memcpy(dst->declared, src->declared, sizeof dst->declared);
        LEGO_TRY(add_io(&g->inputs, &g->n_inputs, idx));
    }
    LEGO_TRY(copy_graph(g, frame, map, -1));
    for (int i = 0; i < model_outputs; i++)
        LEGO_TRY(add_io(&g->outputs, &g->n_outputs, map[frame->outputs[i]]));
    /* the descendants, between their entry and exit */
    for (int b = 0; b < n_blocks; b++) {
        const lego_graph *d = desc[b];
        if (d->n_inputs != 1 || d->n_outputs != 1)
            return lego_error(LEGO_ERR_ARG, "%s: a descendant has one input and one output, not %d and %d", d->name,
                              d->n_inputs, d->n_outputs);
        const char *entry = d->values[d->inputs[0]].name, *exit = d->values[d->outputs[0]].name;
        int e = graph_find_value(g, entry), x = graph_find_value(g, exit);
        if (e < 0)
            return lego_error(LEGO_ERR_ARG, "%s: its input '%s' is not a value of the frame", d->name, entry);
        if (x < 0 || g->values[x].kind != VALUE_ACTIVATION || g->values[x].producer >= 0)
            return lego_error(LEGO_ERR_ARG, "%s: its output '%s' is not a block exit of the frame (or is made twice)",
                              d->name, exit);
        int *dm = malloc(sizeof *dm * ((size_t)d->n_values + 1));
        if (!dm)
            return nomem();
        for (int v = 0; v < d->n_values; v++)
            dm[v] = -1;
        dm[d->inputs[0]] = e;
        dm[d->outputs[0]] = x;
        lego_status st = copy_graph(g, d, dm, b);
        free(dm);
        LEGO_TRY(st);
    }
    for (int i = model_inputs; i < frame->n_inputs; i++) {
        const gvalue *v = &g->values[map[frame->inputs[i]]];
        if (v->producer < 0)
            return lego_error(LEGO_ERR_ARG, "%s: no descendant makes block exit '%s'", frame->name, v->name);
    }
    return graph_infer(g);
}

lego_status compose_graphs(const lego_graph *frame, int model_inputs, int model_outputs,
                           const lego_graph *const *desc, int n_blocks, const char *name, lego_graph *out)
{
    for (int b = 0; b < n_blocks; b++)
        if (frame->weights_released || desc[b]->weights_released)
            return lego_error(LEGO_ERR_INTERNAL, "%s: its weights were released by a plan; it cannot be composed",
                              frame->weights_released ? frame->name : desc[b]->name);
    LEGO_TRY(graph_init(out, name ? name : frame->name));
    int *map = malloc(sizeof *map * ((size_t)frame->n_values + 1));
    lego_status st = map ? compose_in(frame, model_inputs, model_outputs, desc, n_blocks, out, map) : nomem();
    free(map);
    if (st.code)
        graph_free(out);
    return st;
}

lego_status compose_model(block_library *lib, const int *choice, lego_graph *out)
{
    memset(out, 0, sizeof *out);
    lego_graph *frame;
    LEGO_TRY(library_frame(lib, &frame));
    const lego_graph **desc = calloc((size_t)lib->n_blocks + 1, sizeof *desc);
    if (!desc)
        return nomem();
    lego_status st = lego_ok();
    for (int b = 0; b < lib->n_blocks && st.code == LEGO_OK; b++) {
        if (choice[b] < 0 || choice[b] >= lib->blocks[b].n_desc) {
            st = lego_error(LEGO_ERR_ARG, "block %d has no descendant %d (it has %d)", b, choice[b],
                            lib->blocks[b].n_desc);
            break;
        }
        lego_graph *d;
        st = library_descendant(lib, b, choice[b], &d);
        desc[b] = d;
    }
    if (st.code == LEGO_OK)
        st = compose_graphs(frame, lib->frame_model_inputs, lib->frame_model_outputs, desc, lib->n_blocks,
                            lib->model_file, out);
    free(desc);
    return st;
}
