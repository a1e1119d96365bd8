/* onnx_import.c - reading ONNX files through protobuf-c.
 *
 * The C code for onnx.proto is generated at build time from the schema that
 * Debian's libonnx-dev installs. This file turns the parsed message into our
 * IR and checks what the schema cannot: that tensors hold as many bytes as
 * their shapes say, that names resolve, that opsets are ones we know. */
#include "onnx_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "onnx/onnx.pb-c.h"

static char *dup_str(const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static const char *onnx_type_name(int32_t t)
{
    static const char *names[] = {"undefined", "float", "uint8", "int8", "uint16", "int16",
                                  "int32", "int64", "string", "bool", "float16", "double",
                                  "uint32", "uint64", "complex64", "complex128", "bfloat16"};
    return t >= 0 && t < (int32_t)(sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

/* The ONNX element types we hold, and what each becomes. */
static lego_dtype map_dtype(int32_t t)
{
    switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return LEGO_F32;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return LEGO_I64;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return LEGO_BOOL;
    default: return LEGO_UNDEFINED;
    }
}

static size_t onnx_elem_size(int32_t t)
{
    switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return 8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return 1;
    default: return 0;
    }
}

/* Convert one stored element (raw little-endian bytes or a typed field) into
 * our dtype. x86-64 and ARM Linux are little-endian, as ONNX raw_data is. */
static void convert_raw(int32_t t, const unsigned char *src, int64_t n, void *dst)
{
    switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
        if (n)
            memcpy(dst, src, (size_t)n * onnx_elem_size(t));
        break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            ((float *)dst)[i] = (float)d;
        }
        break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, src + 4 * i, 4);
            ((int64_t *)dst)[i] = v;
        }
        break;
    }
}

static lego_status tensor_from_proto(const Onnx__TensorProto *tp, const char *what, lego_tensor *t)
{
    memset(t, 0, sizeof *t);
    const char *name = tp->name && tp->name[0] ? tp->name : what;
    int32_t ty = tp->has_data_type ? tp->data_type : 0;
    lego_dtype dt = map_dtype(ty);
    if (dt == LEGO_UNDEFINED)
        return lego_error(LEGO_ERR_UNSUPPORTED, "tensor '%s' has element type %s (%d); supported are float, double, int32, int64 and bool",
                          name, onnx_type_name(ty), ty);
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return lego_error(LEGO_ERR_UNSUPPORTED, "tensor '%s' keeps its data in an external file; save the model with the weights inside it",
                          name);
    if (tp->segment)
        return lego_error(LEGO_ERR_UNSUPPORTED, "tensor '%s' is segmented", name);
    if (tp->n_dims > LEGO_MAX_RANK)
        return lego_error(LEGO_ERR_UNSUPPORTED, "tensor '%s' has rank %zu; at most %d is supported",
                          name, tp->n_dims, LEGO_MAX_RANK);
    int64_t n = 1;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0 || (tp->dims[i] > 0 && n > ((int64_t)1 << 40) / tp->dims[i]))
            return lego_error(LEGO_ERR_FORMAT, "tensor '%s' has an invalid dimension %lld", name,
                              (long long)tp->dims[i]);
        n *= tp->dims[i];
    }
    /* Check sizes before allocating: a hostile file must not make us ask
     * for memory its bytes cannot back. */
    size_t esz = onnx_elem_size(ty);
    size_t have;
    if (tp->has_raw_data) {
        if (tp->raw_data.len != (size_t)n * esz)
            return lego_error(LEGO_ERR_FORMAT, "tensor '%s' holds %zu bytes, but its shape needs %lld (is the file truncated?)",
                              name, tp->raw_data.len, (long long)n * (long long)esz);
    } else {
        switch (ty) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: have = tp->n_float_data; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: have = tp->n_double_data; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: have = tp->n_int64_data; break;
        default: have = tp->n_int32_data; break; /* int32 and bool live in int32_data */
        }
        if (have != (size_t)n)
            return lego_error(LEGO_ERR_FORMAT, "tensor '%s' holds %zu values, but its shape needs %lld",
                              name, have, (long long)n);
    }
    tensor_set_shape(t, dt, (int)tp->n_dims, tp->dims);
    LEGO_TRY(tensor_alloc(t));
    if (tp->has_raw_data) {
        convert_raw(ty, tp->raw_data.data, n, t->data);
        return lego_ok();
    }
    for (int64_t i = 0; i < n; i++) {
        switch (ty) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: ((float *)t->data)[i] = tp->float_data[i]; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: ((float *)t->data)[i] = (float)tp->double_data[i]; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: ((int64_t *)t->data)[i] = tp->int64_data[i]; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: ((int64_t *)t->data)[i] = tp->int32_data[i]; break;
        default: ((uint8_t *)t->data)[i] = tp->int32_data[i] != 0; break;
        }
    }
    return lego_ok();
}

static lego_status convert_attr(const Onnx__AttributeProto *ap, lego_attr *a)
{
    memset(a, 0, sizeof *a);
    a->name = dup_str(ap->name);
    if (!a->name)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    a->type = ap->has_type ? (attr_type)ap->type : 0;
    if (!ap->has_type) { /* very old files: infer from which field is set */
        a->type = ap->n_ints ? ATTR_INTS : ap->n_floats ? ATTR_FLOATS : ap->t ? ATTR_TENSOR
                : ap->has_s ? ATTR_STRING : ap->has_f ? ATTR_FLOAT : ATTR_INT;
    }
    switch (a->type) {
    case ATTR_FLOAT: a->f = ap->f; break;
    case ATTR_INT: a->i = ap->i; break;
    case ATTR_STRING:
        a->s = malloc(ap->s.len + 1);
        if (!a->s)
            return lego_error(LEGO_ERR_NOMEM, "out of memory");
        if (ap->s.len)
            memcpy(a->s, ap->s.data, ap->s.len);
        a->s[ap->s.len] = 0;
        break;
    case ATTR_TENSOR:
        if (!ap->t)
            return lego_error(LEGO_ERR_FORMAT, "attribute '%s' is a tensor with no value", a->name);
        a->t = calloc(1, sizeof *a->t);
        if (!a->t)
            return lego_error(LEGO_ERR_NOMEM, "out of memory");
        return tensor_from_proto(ap->t, a->name, a->t);
    case ATTR_FLOATS:
        a->n = (int)ap->n_floats;
        a->floats = malloc(sizeof(float) * (ap->n_floats + 1));
        if (!a->floats)
            return lego_error(LEGO_ERR_NOMEM, "out of memory");
        if (ap->n_floats)
            memcpy(a->floats, ap->floats, sizeof(float) * ap->n_floats);
        break;
    case ATTR_INTS:
        a->n = (int)ap->n_ints;
        a->ints = malloc(sizeof(int64_t) * (ap->n_ints + 1));
        if (!a->ints)
            return lego_error(LEGO_ERR_NOMEM, "out of memory");
        if (ap->n_ints)
            memcpy(a->ints, ap->ints, sizeof(int64_t) * ap->n_ints);
        break;
    default: break; /* graphs, strings lists...: kept by name, read by no op we have */
    }
    return lego_ok();
}

static lego_status convert_attrs(const Onnx__NodeProto *np, attr_list *l)
{
    l->n = 0;
    l->a = calloc(np->n_attribute + 1, sizeof *l->a);
    if (!l->a)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < np->n_attribute; i++) {
        lego_status st = convert_attr(np->attribute[i], &l->a[i]);
        l->n = (int)i + 1;
        if (st.code) {
            attr_list_free(l);
            return st;
        }
    }
    return lego_ok();
}

static int model_opset(const Onnx__ModelProto *mp)
{
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (!o->domain || !o->domain[0] || strcmp(o->domain, "ai.onnx") == 0)
            return o->has_version ? (int)o->version : 1;
    }
    return -1;
}

static lego_status add_graph_input(lego_graph *g, const Onnx__ValueInfoProto *vi)
{
    const char *name = vi->name ? vi->name : "";
    if (!name[0])
        return lego_error(LEGO_ERR_FORMAT, "a graph input has no name");
    if (graph_find_value(g, name) >= 0)
        return lego_ok(); /* an initializer listed as input too (old exporters) */
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return lego_error(LEGO_ERR_UNSUPPORTED, "graph input '%s' is not a tensor", name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    lego_dtype dt = map_dtype(tt->elem_type);
    if (dt != LEGO_F32 || tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return lego_error(LEGO_ERR_UNSUPPORTED, "graph input '%s' is %s; only float inputs are supported",
                          name, onnx_type_name(tt->elem_type));
    if (!tt->shape)
        return lego_error(LEGO_ERR_UNSUPPORTED, "graph input '%s' has no shape", name);
    if (tt->shape->n_dim > LEGO_MAX_RANK)
        return lego_error(LEGO_ERR_UNSUPPORTED, "graph input '%s' has rank %zu; at most %d is supported",
                          name, tt->shape->n_dim, LEGO_MAX_RANK);
    int idx;
    LEGO_TRY(graph_add_value(g, name, VALUE_INPUT, &idx));
    gvalue *v = &g->values[idx];
    v->declared_rank = (int)tt->shape->n_dim;
    int64_t dims[LEGO_MAX_RANK];
    for (size_t i = 0; i < tt->shape->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        int64_t x = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? d->dim_value : -1;
        if (x == 0 || x < -1)
            return lego_error(LEGO_ERR_FORMAT, "graph input '%s' has dimension %lld", name, (long long)x);
        v->declared[i] = x;
        dims[i] = x < 0 ? 1 : x; /* dynamic dims start at 1 until the caller sets them */
    }
    tensor_set_shape(&v->t, dt, (int)tt->shape->n_dim, dims);
    int *inputs = realloc(g->inputs, sizeof *inputs * (size_t)(g->n_inputs + 1));
    if (!inputs)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    g->inputs = inputs;
    g->inputs[g->n_inputs++] = idx;
    return lego_ok();
}

/* Look a value up by name, creating an activation for a name not seen yet
 * (a node's output, or an input that a later node defines). */
static lego_status value_ref(lego_graph *g, const char *name, int *idx)
{
    *idx = graph_find_value(g, name);
    if (*idx >= 0)
        return lego_ok();
    return graph_add_value(g, name, VALUE_ACTIVATION, idx);
}

static lego_status add_node(lego_graph *g, const Onnx__NodeProto *np, int k)
{
    char fallback[32];
    snprintf(fallback, sizeof fallback, "#%d", k);
    const char *name = np->name && np->name[0] ? np->name : fallback;
    const char *op_type = np->op_type ? np->op_type : "";
    if (np->domain && np->domain[0] && strcmp(np->domain, "ai.onnx") != 0)
        return lego_error(LEGO_ERR_UNSUPPORTED, "node '%s' (%s) is in domain '%s'; only the default ONNX domain is supported",
                          name, op_type, np->domain);
    if (np->n_input > OP_MAX_IO || np->n_output > OP_MAX_IO)
        return lego_error(LEGO_ERR_UNSUPPORTED, "node '%s' (%s) has too many inputs or outputs", name, op_type);
    int in[OP_MAX_IO], out[OP_MAX_IO];
    for (size_t i = 0; i < np->n_input; i++) {
        if (!np->input[i] || !np->input[i][0])
            in[i] = -1;
        else
            LEGO_TRY(value_ref(g, np->input[i], &in[i]));
    }
    for (size_t i = 0; i < np->n_output; i++) {
        if (!np->output[i] || !np->output[i][0])
            return lego_error(LEGO_ERR_UNSUPPORTED, "node '%s' (%s) leaves output %zu unnamed", name, op_type, i);
        LEGO_TRY(value_ref(g, np->output[i], &out[i]));
    }
    attr_list attrs;
    LEGO_TRY(lego_error_context(convert_attrs(np, &attrs), "node '%s' (%s)", name, op_type));
    int idx;
    return graph_add_node(g, name, op_type, in, (int)np->n_input, out, (int)np->n_output, &attrs, &idx);
}

static lego_status import_graph(const Onnx__ModelProto *mp, lego_graph *g)
{
    const Onnx__GraphProto *gp = mp->graph;
    if (!gp)
        return lego_error(LEGO_ERR_FORMAT, "the file has no graph (is it an ONNX model?)");
    g->opset = model_opset(mp);
    if (g->opset < 0)
        return lego_error(LEGO_ERR_FORMAT, "the model does not import the default ONNX opset");
    if (g->opset < ONNX_MIN_OPSET || g->opset > ONNX_MAX_OPSET)
        return lego_error(LEGO_ERR_UNSUPPORTED, "opset %d is not supported (supported: %d to %d)",
                          g->opset, ONNX_MIN_OPSET, ONNX_MAX_OPSET);
    if (mp->producer_name) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s%s%s", mp->producer_name,
                 mp->producer_version && mp->producer_version[0] ? " " : "",
                 mp->producer_version ? mp->producer_version : "");
        free(g->producer);
        g->producer = dup_str(buf);
        if (!g->producer)
            return lego_error(LEGO_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < mp->n_metadata_props; i++) {
        const Onnx__StringStringEntryProto *e = mp->metadata_props[i];
        if (!e->key || !e->key[0])
            continue; /* nothing could look it up; not worth refusing the model */
        LEGO_TRY(graph_set_meta(g, e->key, e->value ? e->value : ""));
    }
    if (gp->n_sparse_initializer)
        return lego_error(LEGO_ERR_UNSUPPORTED, "sparse initializers are not supported");
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        if (!tp->name || !tp->name[0])
            return lego_error(LEGO_ERR_FORMAT, "initializer %zu has no name", i);
        int idx;
        LEGO_TRY(graph_add_value(g, tp->name, VALUE_INITIALIZER, &idx));
        LEGO_TRY(tensor_from_proto(tp, tp->name, &g->values[idx].t));
    }
    for (size_t i = 0; i < gp->n_input; i++)
        LEGO_TRY(add_graph_input(g, gp->input[i]));
    for (size_t k = 0; k < gp->n_node; k++)
        LEGO_TRY(add_node(g, gp->node[k], (int)k));
    if (gp->n_output == 0)
        return lego_error(LEGO_ERR_FORMAT, "the graph has no outputs");
    g->outputs = malloc(sizeof *g->outputs * gp->n_output);
    if (!g->outputs)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < gp->n_output; i++) {
        const char *name = gp->output[i]->name ? gp->output[i]->name : "";
        int v = graph_find_value(g, name);
        if (v < 0)
            return lego_error(LEGO_ERR_FORMAT, "graph output '%s' is not produced by any node", name);
        g->outputs[g->n_outputs++] = v;
    }
    return lego_ok();
}

static lego_status unpack(const void *buf, size_t len, const char *name, Onnx__ModelProto **mp)
{
    if (len == 0)
        return lego_error(LEGO_ERR_FORMAT, "%s: the file is empty", name);
    *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!*mp)
        return lego_error(LEGO_ERR_FORMAT, "%s: not a valid ONNX model (the protobuf data is malformed or truncated)",
                          name);
    return lego_ok();
}

/* g from the parsed model, which is freed. */
static lego_status import_unpacked(Onnx__ModelProto *mp, const char *name, lego_graph *g)
{
    lego_status st = graph_init(g, name);
    if (st.code == LEGO_OK)
        st = import_graph(mp, g);
    onnx__model_proto__free_unpacked(mp, NULL);
    if (st.code) {
        graph_free(g);
        return lego_error_context(st, "%s", name);
    }
    return lego_ok();
}

lego_status onnx_import(const void *buf, size_t len, const char *name, lego_graph *g)
{
    memset(g, 0, sizeof *g);
    Onnx__ModelProto *mp;
    LEGO_TRY(unpack(buf, len, name, &mp));
    return import_unpacked(mp, name, g);
}

lego_status onnx_load_file(const char *path, lego_graph *g)
{
    memset(g, 0, sizeof *g);
    unsigned char *buf;
    size_t len;
    LEGO_TRY(file_read_all(path, &buf, &len));
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    Onnx__ModelProto *mp;
    lego_status st = unpack(buf, len, base, &mp);
    free(buf); /* parsed: the model's bytes are in mp now */
    LEGO_TRY(st);
    st = import_unpacked(mp, base, g);
    if (st.code)
        return st;
    st = graph_infer(g);
    if (st.code)
        graph_free(g);
    return st;
}
