/* onnx_export.c - writing the graph IR back out as an ONNX model.
 *
 * The protobuf-c message tree is built in one arena and freed with it, so
 * every error path releases everything with a single arena_free. Strings,
 * shapes and tensor bytes are not copied: the messages point into the graph,
 * which outlives the packing (protobuf-c's pack only reads them; the casts
 * from const below are for its non-const field types). */
#include "onnx_export.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/arena.h"
#include "../core/file.h"
#include "onnx/onnx.pb-c.h"

/* The names of dynamic dimensions, by position. */
static const char *const dim_names[LEGO_MAX_RANK] = {"batch", "d1", "d2", "d3",
                                                     "d4",    "d5", "d6", "d7"};

typedef struct exporter {
    arena a;
    const lego_graph *g;
} exporter;

static lego_status nomem(void)
{
    return lego_error(LEGO_ERR_NOMEM, "out of memory building the ONNX model");
}

/* Allocate and initialise one message or array in the arena. */
#define NEW_MSG(x, type, init, out)                 \
    do {                                            \
        static const type init_ = init;             \
        (out) = arena_alloc(&(x)->a, sizeof(type)); \
        if (!(out))                                 \
            return nomem();                         \
        *(out) = init_;                             \
    } while (0)
#define NEW_ARRAY(x, n, out)                                              \
    do {                                                                  \
        (out) = arena_alloc(&(x)->a, sizeof *(out) * ((size_t)(n) + 1)); \
        if (!(out))                                                       \
            return nomem();                                               \
    } while (0)

/* The lowest IR version that carries the opset (onnx/docs/Versioning.md),
 * but at least 4: from IR 4 on initializers need not be graph inputs. */
static int64_t ir_for_opset(int opset)
{
    if (opset <= 9)
        return 4;
    if (opset == 10)
        return 5;
    if (opset == 11)
        return 6;
    if (opset <= 14)
        return 7;
    if (opset <= 18)
        return 8;
    return 9;
}

static lego_status onnx_dtype(lego_dtype dt, const char *what, int32_t *out)
{
    switch (dt) {
    case LEGO_F32: *out = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT; return lego_ok();
    case LEGO_I64: *out = ONNX__TENSOR_PROTO__DATA_TYPE__INT64; return lego_ok();
    case LEGO_BOOL: *out = ONNX__TENSOR_PROTO__DATA_TYPE__BOOL; return lego_ok();
    default:
        return lego_error(LEGO_ERR_ARG, "%s has no known element type (dtype %d); was the graph inferred?",
                          what, (int)dt);
    }
}

/* A TensorProto over t's bytes; name may be NULL (attribute tensors). */
static lego_status tensor_proto(exporter *x, const lego_tensor *t, const char *name, const char *what,
                                Onnx__TensorProto **out)
{
    Onnx__TensorProto *tp;
    NEW_MSG(x, Onnx__TensorProto, ONNX__TENSOR_PROTO__INIT, tp);
    tp->name = (char *)name;
    tp->has_data_type = 1;
    LEGO_TRY(onnx_dtype(t->dtype, what, &tp->data_type));
    tp->n_dims = (size_t)t->rank;
    tp->dims = (int64_t *)t->dims;
    size_t bytes = lego_tensor_bytes(t);
    if (bytes && !t->data)
        return lego_error(LEGO_ERR_INTERNAL, "%s has no data", what);
    tp->has_raw_data = 1;
    tp->raw_data.len = bytes;
    tp->raw_data.data = bytes ? (uint8_t *)t->data : NULL;
    *out = tp;
    return lego_ok();
}

static lego_status attr_proto(exporter *x, const lego_attr *a, const char *node, const char *op_type,
                              Onnx__AttributeProto **out)
{
    Onnx__AttributeProto *ap;
    NEW_MSG(x, Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT, ap);
    ap->name = a->name;
    ap->has_type = 1;
    ap->type = (Onnx__AttributeProto__AttributeType)a->type;
    switch (a->type) {
    case ATTR_FLOAT:
        ap->has_f = 1;
        ap->f = a->f;
        break;
    case ATTR_INT:
        ap->has_i = 1;
        ap->i = a->i;
        break;
    case ATTR_STRING:
        ap->has_s = 1;
        ap->s.len = a->s ? strlen(a->s) : 0;
        ap->s.data = (uint8_t *)a->s;
        break;
    case ATTR_TENSOR: {
        char what[256];
        snprintf(what, sizeof what, "node '%s' (%s): attribute '%s'", node, op_type, a->name);
        if (!a->t)
            return lego_error(LEGO_ERR_INTERNAL, "%s is a tensor with no value", what);
        LEGO_TRY(tensor_proto(x, a->t, NULL, what, &ap->t));
        break;
    }
    case ATTR_FLOATS:
        ap->n_floats = (size_t)a->n;
        ap->floats = a->floats;
        break;
    case ATTR_INTS:
        ap->n_ints = (size_t)a->n;
        ap->ints = a->ints;
        break;
    default:
        /* The importer keeps graph and list-of-string attributes by name
         * only; writing them back would make a different model. */
        return lego_error(LEGO_ERR_UNSUPPORTED,
                          "node '%s' (%s): attribute '%s' has type %d, which cannot be exported",
                          node, op_type, a->name, (int)a->type);
    }
    *out = ap;
    return lego_ok();
}

static lego_status node_proto(exporter *x, const gnode *n, Onnx__NodeProto **out)
{
    const lego_graph *g = x->g;
    Onnx__NodeProto *np;
    NEW_MSG(x, Onnx__NodeProto, ONNX__NODE_PROTO__INIT, np);
    np->name = n->name;
    np->op_type = n->op_type;
    NEW_ARRAY(x, n->n_in, np->input);
    NEW_ARRAY(x, n->n_out, np->output);
    NEW_ARRAY(x, n->attrs.n, np->attribute);
    np->n_input = (size_t)n->n_in;
    np->n_output = (size_t)n->n_out;
    np->n_attribute = (size_t)n->attrs.n;
    for (int i = 0; i < n->n_in; i++)
        np->input[i] = n->in[i] < 0 ? (char *)"" : g->values[n->in[i]].name;
    for (int i = 0; i < n->n_out; i++)
        np->output[i] = g->values[n->out[i]].name;
    for (int i = 0; i < n->attrs.n; i++)
        LEGO_TRY(attr_proto(x, &n->attrs.a[i], n->name, n->op_type, &np->attribute[i]));
    *out = np;
    return lego_ok();
}

/* A tensor ValueInfoProto: dims[i] >= 0 is written as a value, else
 * dim_names[i] as a parameter. */
static lego_status value_info(exporter *x, const char *name, lego_dtype dt, int rank,
                              const int64_t *dims, Onnx__ValueInfoProto **out)
{
    Onnx__ValueInfoProto *vi;
    Onnx__TypeProto *tp;
    Onnx__TypeProto__Tensor *tt;
    Onnx__TensorShapeProto *sp;
    NEW_MSG(x, Onnx__ValueInfoProto, ONNX__VALUE_INFO_PROTO__INIT, vi);
    NEW_MSG(x, Onnx__TypeProto, ONNX__TYPE_PROTO__INIT, tp);
    NEW_MSG(x, Onnx__TypeProto__Tensor, ONNX__TYPE_PROTO__TENSOR__INIT, tt);
    NEW_MSG(x, Onnx__TensorShapeProto, ONNX__TENSOR_SHAPE_PROTO__INIT, sp);
    char what[256];
    snprintf(what, sizeof what, "graph input or output '%s'", name);
    vi->name = (char *)name;
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    LEGO_TRY(onnx_dtype(dt, what, &tt->elem_type));
    tt->shape = sp;
    NEW_ARRAY(x, rank, sp->dim);
    sp->n_dim = (size_t)rank;
    for (int i = 0; i < rank; i++) {
        Onnx__TensorShapeProto__Dimension *d;
        NEW_MSG(x, Onnx__TensorShapeProto__Dimension, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT, d);
        if (dims[i] >= 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = (char *)dim_names[i];
        }
        sp->dim[i] = d;
    }
    *out = vi;
    return lego_ok();
}

/* Graph outputs carry their current shape, except that a dimension equal
 * to a dynamic input dimension at the same position is taken to follow it
 * (the batch passing through a CNN): it gets that input's dim_param. */
static lego_status output_info(exporter *x, int v, Onnx__ValueInfoProto **out)
{
    const lego_graph *g = x->g;
    const gvalue *val = &g->values[v];
    int64_t dims[LEGO_MAX_RANK];
    for (int i = 0; i < val->t.rank; i++) {
        dims[i] = val->t.dims[i];
        for (int j = 0; j < g->n_inputs; j++) {
            const gvalue *in = &g->values[g->inputs[j]];
            if (i < in->declared_rank && in->declared[i] < 0 && in->t.dims[i] == dims[i])
                dims[i] = -1;
        }
    }
    return value_info(x, val->name, val->t.dtype, val->t.rank, dims, out);
}

/* Node indices to write, in g->order when it is a full permutation (after
 * graph_infer), else in file order. */
static lego_status node_order(exporter *x, int **out)
{
    const lego_graph *g = x->g;
    int *order;
    NEW_ARRAY(x, g->n_nodes, order);
    bool *seen;
    NEW_ARRAY(x, g->n_nodes, seen);
    bool full = g->order != NULL;
    for (int k = 0; k < g->n_nodes && full; k++) {
        int j = g->order[k];
        if (j < 0 || j >= g->n_nodes || seen[j])
            full = false;
        else
            seen[j] = true;
    }
    for (int k = 0; k < g->n_nodes; k++)
        order[k] = full ? g->order[k] : k;
    *out = order;
    return lego_ok();
}

static lego_status metadata(exporter *x, Onnx__ModelProto *mp, const char *const *keys,
                            const char *const *values)
{
    const lego_graph *g = x->g;
    int extra = 0;
    if (keys && !values)
        return lego_error(LEGO_ERR_ARG, "metadata keys are given without values");
    for (; keys && keys[extra]; extra++) {
        if (!keys[extra][0])
            return lego_error(LEGO_ERR_ARG, "metadata key %d is empty", extra);
        if (!values[extra])
            return lego_error(LEGO_ERR_ARG, "metadata key '%s' has no value", keys[extra]);
    }
    NEW_ARRAY(x, g->n_meta + extra, mp->metadata_props);
    size_t n = 0;
    for (int i = 0; i < g->n_meta + extra; i++) {
        const char *k = i < g->n_meta ? g->meta_keys[i] : keys[i - g->n_meta];
        const char *v = i < g->n_meta ? g->meta_values[i] : values[i - g->n_meta];
        size_t j = 0;
        while (j < n && strcmp(mp->metadata_props[j]->key, k) != 0)
            j++;
        if (j == n) {
            NEW_MSG(x, Onnx__StringStringEntryProto, ONNX__STRING_STRING_ENTRY_PROTO__INIT,
                    mp->metadata_props[n]);
            mp->metadata_props[n++]->key = (char *)k;
        }
        mp->metadata_props[j]->value = (char *)v;
    }
    mp->n_metadata_props = n;
    return lego_ok();
}

static lego_status build_model(exporter *x, const char *const *meta_keys,
                               const char *const *meta_values, Onnx__ModelProto **out)
{
    const lego_graph *g = x->g;
    Onnx__ModelProto *mp;
    Onnx__GraphProto *gp;
    Onnx__OperatorSetIdProto *ops;
    NEW_MSG(x, Onnx__ModelProto, ONNX__MODEL_PROTO__INIT, mp);
    NEW_MSG(x, Onnx__GraphProto, ONNX__GRAPH_PROTO__INIT, gp);
    NEW_MSG(x, Onnx__OperatorSetIdProto, ONNX__OPERATOR_SET_ID_PROTO__INIT, ops);
    if (g->opset < 1)
        return lego_error(LEGO_ERR_ARG, "the graph has no opset");
    mp->has_ir_version = 1;
    mp->ir_version = ir_for_opset(g->opset);
    mp->producer_name = (char *)"legodnn";
    mp->producer_version = (char *)LEGO_VERSION;
    ops->domain = (char *)"";
    ops->has_version = 1;
    ops->version = g->opset;
    NEW_ARRAY(x, 1, mp->opset_import);
    mp->opset_import[0] = ops;
    mp->n_opset_import = 1;
    mp->graph = gp;
    gp->name = g->name && g->name[0] ? g->name : (char *)"model";
    LEGO_TRY(metadata(x, mp, meta_keys, meta_values));

    int *order = NULL;
    LEGO_TRY(node_order(x, &order));
    NEW_ARRAY(x, g->n_nodes, gp->node);
    for (int k = 0; k < g->n_nodes; k++)
        LEGO_TRY(node_proto(x, &g->nodes[order[k]], &gp->node[gp->n_node++]));

    NEW_ARRAY(x, g->n_values, gp->initializer);
    for (int i = 0; i < g->n_values; i++) {
        const gvalue *v = &g->values[i];
        if (v->kind != VALUE_INITIALIZER)
            continue;
        char what[256];
        snprintf(what, sizeof what, "initializer '%s'", v->name);
        LEGO_TRY(tensor_proto(x, &v->t, v->name, what, &gp->initializer[gp->n_initializer++]));
    }

    NEW_ARRAY(x, g->n_inputs, gp->input);
    for (int i = 0; i < g->n_inputs; i++) {
        const gvalue *v = &g->values[g->inputs[i]];
        /* Declared shapes come from a file; a graph built in code may
         * leave them unset and have only the current shape. */
        bool declared = v->declared_rank == v->t.rank;
        LEGO_TRY(value_info(x, v->name, v->t.dtype, v->t.rank, declared ? v->declared : v->t.dims,
                            &gp->input[gp->n_input++]));
    }
    NEW_ARRAY(x, g->n_outputs, gp->output);
    for (int i = 0; i < g->n_outputs; i++)
        LEGO_TRY(output_info(x, g->outputs[i], &gp->output[gp->n_output++]));
    *out = mp;
    return lego_ok();
}

lego_status onnx_export(const lego_graph *g, const char *const *meta_keys,
                        const char *const *meta_values, unsigned char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (g->weights_released)
        return lego_error(LEGO_ERR_INTERNAL, "%s: its weights were released by a plan; nothing to export",
                          g->name ? g->name : "model");
    exporter x = {.g = g};
    arena_init(&x.a, 1u << 16);
    Onnx__ModelProto *mp = NULL;
    lego_status st = build_model(&x, meta_keys, meta_values, &mp);
    if (st.code == LEGO_OK) {
        size_t n = onnx__model_proto__get_packed_size(mp);
        /* Protobuf readers other than protobuf-c refuse messages over 2 GiB. */
        if (n > INT32_MAX)
            st = lego_error(LEGO_ERR_UNSUPPORTED, "the model needs %zu bytes, over protobuf's 2 GiB limit", n);
        else if (!(*buf = malloc(n ? n : 1)))
            st = nomem();
        else
            *len = onnx__model_proto__pack(mp, *buf);
    }
    arena_free(&x.a);
    if (st.code)
        return lego_error_context(st, "%s: exporting ONNX", g->name ? g->name : "model");
    return lego_ok();
}

lego_status onnx_export_file(const lego_graph *g, const char *path, const char *const *meta_keys,
                             const char *const *meta_values)
{
    unsigned char *buf;
    size_t len;
    LEGO_TRY(onnx_export(g, meta_keys, meta_values, &buf, &len));
    lego_status st = file_write_atomic(path, buf, len);
    free(buf);
    return st;
}
