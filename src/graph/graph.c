/* graph.c - building the IR: values, nodes, the name index. */
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* FNV-1a: names are short and few; any decent spread will do. */
static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

lego_status graph_init(lego_graph *g, const char *name)
{
    memset(g, 0, sizeof *g);
    g->name = dup_str(name ? name : "model");
    g->producer = dup_str("");
    if (!g->name || !g->producer)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    return lego_ok();
}

void graph_free(lego_graph *g)
{
    for (int i = 0; i < g->n_values; i++) {
        free(g->values[i].name);
        tensor_release(&g->values[i].t);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        gnode *n = &g->nodes[i];
        free(n->name);
        free(n->op_type);
        free(n->in);
        free(n->out);
        free(n->params);
        attr_list_free(&n->attrs);
    }
    free(g->values);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->order);
    for (int i = 0; i < g->n_meta; i++) {
        free(g->meta_keys[i]);
        free(g->meta_values[i]);
    }
    free(g->meta_keys);
    free(g->meta_values);
    free(g->hash);
    free(g->name);
    free(g->producer);
    memset(g, 0, sizeof *g);
}

int graph_find_value(const lego_graph *g, const char *name)
{
    if (!g->hash_cap)
        return -1;
    uint32_t mask = (uint32_t)g->hash_cap - 1;
    for (uint32_t h = hash_name(name) & mask;; h = (h + 1) & mask) {
        int v = g->hash[h];
        if (v < 0)
            return -1;
        if (strcmp(g->values[v].name, name) == 0)
            return v;
    }
}

static lego_status hash_grow(lego_graph *g)
{
    int cap = g->hash_cap ? g->hash_cap * 2 : 64;
    int *h = malloc(sizeof *h * (size_t)cap);
    if (!h)
        return lego_error(LEGO_ERR_NOMEM, "out of memory indexing value names");
    for (int i = 0; i < cap; i++)
        h[i] = -1;
    uint32_t mask = (uint32_t)cap - 1;
    for (int v = 0; v < g->n_values; v++) {
        uint32_t k = hash_name(g->values[v].name) & mask;
        while (h[k] >= 0)
            k = (k + 1) & mask;
        h[k] = v;
    }
    free(g->hash);
    g->hash = h;
    g->hash_cap = cap;
    return lego_ok();
}

/* items (*cap elements of size bytes) reallocated to twice the capacity, or
 * 64 at first, and *cap updated; NULL, items untouched, when out of memory. */
static void *grow(void *items, int *cap, size_t size)
{
    int n = *cap ? *cap * 2 : 64;
    void *p = realloc(items, size * (size_t)n);
    if (p)
        *cap = n;
    return p;
}

lego_status graph_add_value(lego_graph *g, const char *name, value_kind kind, int *idx)
{
    if (graph_find_value(g, name) >= 0)
        return lego_error(LEGO_ERR_FORMAT, "value '%s' is defined twice", name);
    if (g->n_values == g->cap_values) {
        gvalue *v = grow(g->values, &g->cap_values, sizeof *v);
        if (!v)
            return lego_error(LEGO_ERR_NOMEM, "out of memory adding value '%s'", name);
        g->values = v;
    }
    gvalue *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = dup_str(name);
    if (!v->name)
        return lego_error(LEGO_ERR_NOMEM, "out of memory adding value '%s'", name);
    v->kind = kind;
    v->producer = -1;
    *idx = g->n_values++;
    if (g->n_values * 2 > g->hash_cap)
        return hash_grow(g);
    /* insert the new value into the existing table */
    uint32_t mask = (uint32_t)g->hash_cap - 1;
    uint32_t k = hash_name(name) & mask;
    while (g->hash[k] >= 0)
        k = (k + 1) & mask;
    g->hash[k] = *idx;
    return lego_ok();
}

static int *dup_ints(const int *a, int n)
{
    int *d = malloc(sizeof *d * (size_t)(n ? n : 1));
    if (d && n)
        memcpy(d, a, sizeof *d * (size_t)n);
    return d;
}

lego_status graph_add_node(lego_graph *g, const char *name, const char *op_type,
                           const int *in, int n_in, const int *out, int n_out,
                           attr_list *attrs, int *idx)
{
    if (n_in > OP_MAX_IO || n_out > OP_MAX_IO) {
        attr_list_free(attrs);
        return lego_error(LEGO_ERR_UNSUPPORTED, "node '%s' (%s) has %d inputs and %d outputs; at most %d are supported",
                          name, op_type, n_in, n_out, OP_MAX_IO);
    }
    for (int i = 0; i < n_out; i++) {
        if (g->values[out[i]].producer >= 0 || g->values[out[i]].kind != VALUE_ACTIVATION) {
            attr_list_free(attrs);
            return lego_error(LEGO_ERR_FORMAT, "node '%s' (%s) writes value '%s', which is already defined",
                              name, op_type, g->values[out[i]].name);
        }
    }
    if (g->n_nodes == g->cap_nodes) {
        gnode *nn = grow(g->nodes, &g->cap_nodes, sizeof *nn);
        if (!nn) {
            attr_list_free(attrs);
            return lego_error(LEGO_ERR_NOMEM, "out of memory adding node '%s'", name);
        }
        g->nodes = nn;
    }
    gnode *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->name = dup_str(name);
    n->op_type = dup_str(op_type);
    n->in = dup_ints(in, n_in);
    n->out = dup_ints(out, n_out);
    n->n_in = n_in;
    n->n_out = n_out;
    n->attrs = *attrs;
    attrs->a = NULL;
    attrs->n = 0;
    n->op = op_find(op_type);
    *idx = g->n_nodes++;
    if (!n->name || !n->op_type || !n->in || !n->out)
        return lego_error(LEGO_ERR_NOMEM, "out of memory adding node '%s'", name);
    if (n->op && n->op->params_size) {
        n->params = calloc(1, n->op->params_size);
        if (!n->params)
            return lego_error(LEGO_ERR_NOMEM, "out of memory adding node '%s'", name);
    }
    for (int i = 0; i < n_out; i++)
        g->values[out[i]].producer = *idx;
    return lego_ok();
}

const char *graph_meta(const lego_graph *g, const char *key)
{
    for (int i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta_keys[i], key) == 0)
            return g->meta_values[i];
    return NULL;
}

lego_status graph_set_meta(lego_graph *g, const char *key, const char *value)
{
    char *v = dup_str(value);
    if (!v)
        return lego_error(LEGO_ERR_NOMEM, "out of memory setting metadata '%s'", key);
    for (int i = 0; i < g->n_meta; i++) {
        if (strcmp(g->meta_keys[i], key) == 0) {
            free(g->meta_values[i]);
            g->meta_values[i] = v;
            return lego_ok();
        }
    }
    char *k = dup_str(key);
    char **keys = realloc(g->meta_keys, sizeof *keys * (size_t)(g->n_meta + 1));
    if (keys)
        g->meta_keys = keys;
    char **values = keys ? realloc(g->meta_values, sizeof *values * (size_t)(g->n_meta + 1)) : NULL;
    if (values)
        g->meta_values = values;
    if (!k || !keys || !values) {
        free(k), free(v);
        return lego_error(LEGO_ERR_NOMEM, "out of memory setting metadata '%s'", key);
    }
    g->meta_keys[g->n_meta] = k;
    g->meta_values[g->n_meta] = v;
    g->n_meta++;
    return lego_ok();
}

const char *graph_node_label(const lego_graph *g, int node, char *buf, size_t len)
{
    const gnode *n = &g->nodes[node];
    if (n->name[0])
        snprintf(buf, len, "node '%s' (%s)", n->name, n->op_type);
    else
        snprintf(buf, len, "node #%d (%s)", node, n->op_type);
    return buf;
}

void graph_node_call(lego_graph *g, const gnode *n, lego_tensor *vt, lego_tensor **in,
                     lego_tensor **out, op_call *c)
{
    for (int i = 0; i < n->n_in; i++)
        in[i] = n->in[i] < 0 ? NULL : vt ? &vt[n->in[i]] : &g->values[n->in[i]].t;
    for (int i = 0; i < n->n_out; i++)
        out[i] = vt ? &vt[n->out[i]] : &g->values[n->out[i]].t;
    c->attrs = &n->attrs;
    c->node_name = n->name;
    c->opset = g->opset;
    c->n_in = n->n_in;
    c->n_out = n->n_out;
    c->in = in;
    c->out = out;
    c->params = n->params;
    c->training = false;
    c->packed = NULL;
    c->native = 0;
    c->portable = g->portable_kernels;
    c->train_state = NULL;
    c->ws = NULL;
    c->fresh = 0;
    c->residual = NULL;
    c->clamp = false;
    c->lo = c->hi = 0.0f;
}

int64_t graph_param_count(const lego_graph *g, int64_t *bytes)
{
    int64_t count = 0, b = 0;
    for (int i = 0; i < g->n_values; i++) {
        const gvalue *v = &g->values[i];
        if (v->kind == VALUE_INITIALIZER && v->t.dtype == LEGO_F32) {
            count += lego_tensor_numel(&v->t);
            b += (int64_t)lego_tensor_bytes(&v->t);
        }
    }
    if (bytes)
        *bytes = b;
    return count;
}

int64_t graph_flops(const lego_graph *g, int64_t *per_node)
{
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    int64_t total = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        const gnode *n = &g->nodes[k];
        int64_t f = 0;
        if (!n->folded && n->op && n->op->flops) {
            op_call c;
            graph_node_call((lego_graph *)g, n, NULL, in, out, &c);
            f = n->op->flops(&c);
        }
        if (per_node)
            per_node[k] = f;
        total += f;
    }
    return total;
}
