/* library.c - writing, reading and checking the block library (library.h
 * has the format).
 *
 * Extraction builds the frame, then each block's channel analysis and its
 * descendants one at a time (each written and freed before the next, so
 * memory stays at one descendant), records everything in a cJSON manifest,
 * and finally swaps the finished temporary directory into place. The
 * in-memory library it returns is parsed back from that same manifest, so
 * extraction and library_open cannot disagree about what a library says. */
#include "library.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/file.h"
#include "../core/sha256.h"
#include "../core/tensor.h"
#include "../onnx/onnx_export.h"
#include "../onnx/onnx_import.h"
#include "prune.h"

static lego_status nomem(void) { return lego_error(LEGO_ERR_NOMEM, "out of memory building the block library"); }

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---- sparsities ---------------------------------------------------------------- */

lego_status library_check_sparsities(const double *s, int n)
{
    if (n < 1)
        return lego_error(LEGO_ERR_ARG, "no sparsity given");
    for (int i = 0; i < n; i++) {
        if (!(s[i] >= 0 && s[i] < 1))
            return lego_error(LEGO_ERR_ARG, "sparsity %g is outside [0, 1): it is the share of filters removed", s[i]);
        if (i > 0 && s[i] == s[i - 1])
            return lego_error(LEGO_ERR_ARG, "sparsity %g is listed twice", s[i]);
        if (i > 0 && s[i] < s[i - 1])
            return lego_error(LEGO_ERR_ARG, "sparsities must ascend (%g comes after %g)", s[i], s[i - 1]);
    }
    if (s[0] != 0)
        return lego_error(LEGO_ERR_ARG, "the sparsities must start with 0 (the original block)");
    return lego_ok();
}

int library_sparsity_decimals(const double *s, int n)
{
    for (int d = 2; d < 17; d++) {
        bool ok = true;
        for (int i = 0; i < n && ok; i++) {
            char buf[64];
            snprintf(buf, sizeof buf, "%.*f", d, s[i]);
            ok = strtod(buf, NULL) == s[i];
        }
        if (ok)
            return d;
    }
    return 17;
}

void library_descendant_file(int b, double s, int decimals, char *buf, size_t len)
{
    snprintf(buf, len, "blocks/block-%d-%.*f.onnx", b, decimals, s);
}

/* ---- the frame ------------------------------------------------------------------- */

typedef struct fcopy {
    const lego_graph *g;
    lego_graph *f;
    int *map;     /* teacher value -> frame value */
    char *state;  /* folded values: 0 unknown, 1 reproducible, 2 not */
    bool *avail;  /* run-time values the frame has */
} fcopy;

static bool reproducible(fcopy *c, int v)
{
    const gvalue *val = &c->g->values[v];
    if (val->kind == VALUE_INITIALIZER)
        return true;
    if (val->kind != VALUE_FOLDED)
        return c->avail[v];
    if (c->state[v])
        return c->state[v] == 1;
    c->state[v] = 2;
    int p = val->producer;
    if (p < 0)
        return false;
    const gnode *n = &c->g->nodes[p];
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0 && !reproducible(c, n->in[i]))
            return false;
    c->state[v] = 1;
    return true;
}

static lego_status copy_node(fcopy *c, int k);

static lego_status map_value(fcopy *c, int v)
{
    if (c->map[v] >= 0)
        return lego_ok();
    const gvalue *val = &c->g->values[v];
    int idx;
    if (val->kind == VALUE_INITIALIZER) {
        LEGO_TRY(graph_add_value(c->f, val->name, VALUE_INITIALIZER, &idx));
        LEGO_TRY(tensor_clone(&val->t, &c->f->values[idx].t));
        c->map[v] = idx;
        return lego_ok();
    }
    if (val->kind == VALUE_FOLDED) {
        if (reproducible(c, v))
            return copy_node(c, val->producer);
        attr_list attrs = {0, NULL};
        LEGO_TRY(attr_add_tensor(&attrs, "value", &val->t));
        lego_status st = graph_add_value(c->f, val->name, VALUE_ACTIVATION, &idx);
        if (st.code) {
            attr_list_free(&attrs);
            return st;
        }
        c->map[v] = idx;
        int k;
        return graph_add_node(c->f, val->name, "Constant", NULL, 0, &idx, 1, &attrs, &k);
    }
    if (!c->avail[v])
        return lego_error(LEGO_ERR_INTERNAL, "the frame reads '%s', which a block makes", val->name);
    LEGO_TRY(graph_add_value(c->f, val->name, VALUE_ACTIVATION, &idx));
    c->map[v] = idx;
    return lego_ok();
}

static lego_status copy_node(fcopy *c, int k)
{
    const gnode *n = &c->g->nodes[k];
    int in[OP_MAX_IO], out[OP_MAX_IO];
    for (int i = 0; i < n->n_in; i++) {
        in[i] = -1;
        if (n->in[i] >= 0) {
            LEGO_TRY(map_value(c, n->in[i]));
            in[i] = c->map[n->in[i]];
        }
    }
    for (int o = 0; o < n->n_out; o++) {
        int v = n->out[o];
        if (c->map[v] < 0) {
            LEGO_TRY(graph_add_value(c->f, c->g->values[v].name, VALUE_ACTIVATION, &c->map[v]));
        }
        out[o] = c->map[v];
    }
    attr_list attrs;
    LEGO_TRY(attr_list_copy(&n->attrs, &attrs));
    int idx;
    return graph_add_node(c->f, n->name, n->op_type, in, n->n_in, out, n->n_out, &attrs, &idx);
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

static lego_status build_frame_in(fcopy *c, const block_set *bs)
{
    const lego_graph *g = c->g;
    lego_graph *f = c->f;
    LEGO_TRY(graph_init(f, "frame"));
    f->opset = g->opset;
    for (int i = 0; i < g->n_meta; i++)
        LEGO_TRY(graph_set_meta(f, g->meta_keys[i], g->meta_values[i]));
    bool dyn = false;
    for (int i = 0; i < g->n_inputs; i++) {
        const gvalue *v = &g->values[g->inputs[i]];
        dyn |= v->declared_rank > 0 && v->declared[0] < 0;
    }
    /* inputs: the model's, then the block exits */
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i], idx;
        const gvalue *src = &g->values[v];
        LEGO_TRY(graph_add_value(f, src->name, VALUE_INPUT, &idx));
        gvalue *dst = &f->values[idx];
        tensor_set_shape(&dst->t, src->t.dtype, src->t.rank, src->t.dims);
        dst->declared_rank = src->declared_rank;
        memcpy(dst->declared, src->declared, sizeof dst->declared);
        c->map[v] = idx;
        c->avail[v] = true;
        LEGO_TRY(add_io(&f->inputs, &f->n_inputs, idx));
    }
    for (int b = 0; b < bs->n_blocks; b++) {
        int v = bs->blocks[b].exit, idx;
        const gvalue *src = &g->values[v];
        if (c->map[v] >= 0)
            continue;
        LEGO_TRY(graph_add_value(f, src->name, VALUE_INPUT, &idx));
        gvalue *dst = &f->values[idx];
        tensor_set_shape(&dst->t, src->t.dtype, src->t.rank, src->t.dims);
        dst->declared_rank = src->t.rank;
        for (int d = 0; d < src->t.rank; d++)
            dst->declared[d] = d == 0 && dyn ? -1 : src->t.dims[d];
        c->map[v] = idx;
        c->avail[v] = true;
        LEGO_TRY(add_io(&f->inputs, &f->n_inputs, idx));
    }
    /* the nodes outside the blocks, in topological order */
    bool *outside = calloc((size_t)g->n_nodes + 1, sizeof *outside);
    if (!outside)
        return nomem();
    for (int j = 0; j < bs->n_outside; j++)
        outside[bs->outside[j]] = true;
    for (int j = 0; j < bs->n_outside; j++) {
        const gnode *n = &g->nodes[bs->outside[j]];
        for (int o = 0; o < n->n_out; o++)
            c->avail[n->out[o]] = true;
    }
    lego_status st = lego_ok();
    for (int j = 0; j < g->n_nodes && st.code == LEGO_OK; j++) {
        int k = g->order ? g->order[j] : j;
        if (outside[k])
            st = copy_node(c, k);
    }
    free(outside);
    LEGO_TRY(st);
    /* outputs: the model's, then the block entries */
    for (int i = 0; i < g->n_outputs; i++) {
        LEGO_TRY(map_value(c, g->outputs[i]));
        LEGO_TRY(add_io(&f->outputs, &f->n_outputs, c->map[g->outputs[i]]));
    }
    for (int b = 0; b < bs->n_blocks; b++) {
        int v = bs->blocks[b].entry;
        LEGO_TRY(map_value(c, v));
        bool listed = false;
        for (int i = 0; i < f->n_outputs; i++)
            listed |= f->outputs[i] == c->map[v];
        if (!listed)
            LEGO_TRY(add_io(&f->outputs, &f->n_outputs, c->map[v]));
    }
    return lego_error_context(graph_infer(f), "building the frame");
}

static lego_status build_frame(const lego_graph *g, const block_set *bs, lego_graph *f)
{
    memset(f, 0, sizeof *f);
    fcopy c = {.g = g, .f = f};
    size_t nv = (size_t)g->n_values + 1;
    c.map = malloc(sizeof *c.map * nv);
    c.state = calloc(nv, 1);
    c.avail = calloc(nv, sizeof *c.avail);
    lego_status st = lego_ok();
    if (!c.map || !c.state || !c.avail) {
        st = nomem();
    } else {
        for (size_t v = 0; v < nv; v++)
            c.map[v] = -1;
        st = build_frame_in(&c, bs);
    }
    free(c.map), free(c.state), free(c.avail);
    if (st.code && (f->values || f->name))
        graph_free(f);
    return st;
}

/* ---- JSON helpers ------------------------------------------------------------------- */

static cJSON *shape_json(int rank, const int64_t *dims)
{
    cJSON *a = cJSON_CreateArray();
    for (int d = 0; a && d < rank; d++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)dims[d]));
    return a;
}

static cJSON *ints_json(const int64_t *v, int64_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

static cJSON *names_json(const lego_graph *g, const int *nodes, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(blocks_node_name(g, nodes[i])));
    return a;
}

static cJSON *values_json(const lego_graph *g, const int *vals, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        const gvalue *v = &g->values[vals[i]];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", v->name);
        cJSON_AddItemToObject(o, "shape", shape_json(v->t.rank, v->t.dims));
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

/* ---- reading the manifest ---------------------------------------------------------------- */

typedef struct jreader {
    const char *file; /* "LIB/manifest.json" for messages */
} jreader;

static lego_status missing(const jreader *r, const char *where, const char *key, const char *what)
{
    return lego_error(LEGO_ERR_FORMAT, "%s: %s'%s' is missing or not %s", r->file, where, key, what);
}

static lego_status jnum(const jreader *r, const cJSON *o, const char *where, const char *key, double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it))
        return missing(r, where, key, "a number");
    *out = it->valuedouble;
    return lego_ok();
}

static lego_status jint(const jreader *r, const cJSON *o, const char *where, const char *key, int64_t *out)
{
    double d = 0; /* set by jnum on success; -O3 cannot tell */
    LEGO_TRY(jnum(r, o, where, key, &d));
    if (d != floor(d) || fabs(d) > 9007199254740992.0)
        return missing(r, where, key, "a whole number");
    *out = (int64_t)d;
    return lego_ok();
}

static lego_status jstr(const jreader *r, const cJSON *o, const char *where, const char *key, char **out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(it) || !it->valuestring)
        return missing(r, where, key, "a string");
    if (!(*out = dup_str(it->valuestring)))
        return nomem();
    return lego_ok();
}

static lego_status jsha(const jreader *r, const cJSON *o, const char *where, const char *key, char out[65])
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    bool ok = cJSON_IsString(it) && it->valuestring && strlen(it->valuestring) == 64;
    for (int i = 0; ok && i < 64; i++)
        ok = strchr("0123456789abcdef", it->valuestring[i]) != NULL;
    if (!ok)
        return missing(r, where, key, "a SHA-256 (64 lowercase hex digits)");
    memcpy(out, it->valuestring, 65);
    return lego_ok();
}

static lego_status jstrs(const jreader *r, const cJSON *o, const char *where, const char *key, char ***out, int *n)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    *n = 0;
    if (!cJSON_IsArray(a))
        return missing(r, where, key, "a list of names");
    int len = cJSON_GetArraySize(a);
    char **s = calloc((size_t)len + 1, sizeof *s);
    if (!s)
        return nomem();
    *out = s;
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (!cJSON_IsString(it) || !it->valuestring)
            return missing(r, where, key, "a list of names");
        if (!(s[(*n)++] = dup_str(it->valuestring)))
            return nomem();
    }
    return lego_ok();
}

static lego_status jints(const jreader *r, const cJSON *a, const char *where, const char *key, int64_t **out,
                         int64_t *n)
{
    *out = NULL;
    *n = 0;
    if (!cJSON_IsArray(a))
        return missing(r, where, key, "a list of whole numbers");
    int len = cJSON_GetArraySize(a);
    int64_t *v = malloc(sizeof *v * (size_t)(len + 1));
    if (!v)
        return nomem();
    *out = v;
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0)
            return missing(r, where, key, "a list of whole numbers");
        v[(*n)++] = (int64_t)it->valuedouble;
    }
    return lego_ok();
}

static lego_status jshape(const jreader *r, const cJSON *o, const char *where, const char *key, int *rank,
                          int64_t *dims)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    int64_t *v;
    int64_t n;
    LEGO_TRY(jints(r, a, where, key, &v, &n));
    if (n > LEGO_MAX_RANK) {
        free(v);
        return missing(r, where, key, "a shape");
    }
    *rank = (int)n;
    memcpy(dims, v, sizeof *v * (size_t)n);
    free(v);
    return lego_ok();
}

/* A file name the manifest lists: relative, inside the library. */
static lego_status safe_name(const jreader *r, const char *where, const char *name)
{
    if (!name[0] || name[0] == '/' || strstr(name, "..") || strchr(name, '\\'))
        return lego_error(LEGO_ERR_FORMAT, "%s: %sfile '%s' is not a path inside the library", r->file, where, name);
    return lego_ok();
}

static lego_status parse_desc(const jreader *r, const cJSON *o, const char *where, lib_descendant *d)
{
    LEGO_TRY(jnum(r, o, where, "sparsity", &d->sparsity));
    LEGO_TRY(jstr(r, o, where, "file", &d->file));
    LEGO_TRY(safe_name(r, where, d->file));
    LEGO_TRY(jsha(r, o, where, "sha256", d->sha256));
    LEGO_TRY(jint(r, o, where, "bytes", &d->bytes));
    LEGO_TRY(jint(r, o, where, "weight_bytes", &d->weight_bytes));
    LEGO_TRY(jint(r, o, where, "params", &d->params));
    LEGO_TRY(jint(r, o, where, "flops", &d->flops));
    const cJSON *cuts = cJSON_GetObjectItemCaseSensitive(o, "pruned");
    if (!cJSON_IsArray(cuts))
        return missing(r, where, "pruned", "a list");
    int n = cJSON_GetArraySize(cuts);
    d->cuts = calloc((size_t)n + 1, sizeof *d->cuts);
    if (!d->cuts)
        return nomem();
    const cJSON *c;
    cJSON_ArrayForEach(c, cuts)
    {
        char w[256];
        snprintf(w, sizeof w, "%spruned[%d]: ", where, d->n_cuts);
        lib_cut *cut = &d->cuts[d->n_cuts++];
        LEGO_TRY(jstr(r, c, w, "conv", &cut->conv));
        LEGO_TRY(jint(r, c, w, "channels", &cut->channels));
        LEGO_TRY(jints(r, cJSON_GetObjectItemCaseSensitive(c, "kept"), w, "kept", &cut->kept, &cut->n_kept));
        for (int64_t i = 0; i < cut->n_kept; i++)
            if (cut->kept[i] >= cut->channels || (i && cut->kept[i] <= cut->kept[i - 1]))
                return missing(r, w, "kept", "a list of ascending channel indices");
    }
    return lego_ok();
}

static lego_status parse_block(const jreader *r, const cJSON *o, int i, const block_library *lib, lib_block *b)
{
    char where[64];
    snprintf(where, sizeof where, "blocks[%d]: ", i);
    int64_t idx = -1;
    LEGO_TRY(jint(r, o, where, "index", &idx));
    if (idx != i)
        return lego_error(LEGO_ERR_FORMAT, "%s: %sindex is %lld", r->file, where, (long long)idx);
    b->index = i;
    LEGO_TRY(jstr(r, o, where, "entry", &b->entry));
    LEGO_TRY(jstr(r, o, where, "exit", &b->exit));
    LEGO_TRY(jshape(r, o, where, "input_shape", &b->in_rank, b->in_shape));
    LEGO_TRY(jshape(r, o, where, "output_shape", &b->out_rank, b->out_shape));
    LEGO_TRY(jstrs(r, o, where, "nodes", &b->nodes, &b->n_nodes));
    LEGO_TRY(jstrs(r, o, where, "convs", &b->convs, &b->n_convs));
    LEGO_TRY(jstrs(r, o, where, "prunable", &b->prunable, &b->n_prunable));
    LEGO_TRY(jstrs(r, o, where, "kept", &b->kept, &b->n_kept));
    LEGO_TRY(jstrs(r, o, where, "pruned_convs", &b->pruned_convs, &b->n_pruned_convs));
    LEGO_TRY(jint(r, o, where, "params", &b->params));
    LEGO_TRY(jint(r, o, where, "param_bytes", &b->param_bytes));
    LEGO_TRY(jint(r, o, where, "flops", &b->flops));
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(o, "descendants");
    if (!cJSON_IsArray(ds))
        return missing(r, where, "descendants", "a list");
    if (cJSON_GetArraySize(ds) != lib->n_sparsities)
        return lego_error(LEGO_ERR_FORMAT, "%s: %shas %d descendants for %d sparsities", r->file, where,
                          cJSON_GetArraySize(ds), lib->n_sparsities);
    b->desc = calloc((size_t)lib->n_sparsities + 1, sizeof *b->desc);
    if (!b->desc)
        return nomem();
    const cJSON *d;
    cJSON_ArrayForEach(d, ds)
    {
        char w[96];
        snprintf(w, sizeof w, "blocks[%d].descendants[%d]: ", i, b->n_desc);
        lib_descendant *x = &b->desc[b->n_desc++];
        LEGO_TRY(parse_desc(r, d, w, x));
        if (x->sparsity != lib->sparsities[b->n_desc - 1])
            return lego_error(LEGO_ERR_FORMAT, "%s: %ssparsity %g, but the library's list says %g", r->file, w,
                              x->sparsity, lib->sparsities[b->n_desc - 1]);
    }
    return lego_ok();
}

static lego_status parse_manifest(const cJSON *root, const char *dir, const char *file, block_library *lib)
{
    jreader r = {file};
    memset(lib, 0, sizeof *lib);
    if (!(lib->dir = dup_str(dir)))
        return nomem();
    if (!cJSON_IsObject(root))
        return lego_error(LEGO_ERR_FORMAT, "%s: not a JSON object", file);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "format_version");
    if (!cJSON_IsNumber(ver))
        return lego_error(LEGO_ERR_FORMAT, "%s: no format_version: not a legodnn block library manifest", file);
    if (ver->valuedouble != LIBRARY_FORMAT_VERSION)
        return lego_error(LEGO_ERR_UNSUPPORTED, "%s: format_version %g is not supported (this legodnn reads %d)",
                          file, ver->valuedouble, LIBRARY_FORMAT_VERSION);
    lib->format_version = LIBRARY_FORMAT_VERSION;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(m))
        return missing(&r, "", "model", "an object");
    LEGO_TRY(jstr(&r, m, "model: ", "file", &lib->model_file));
    LEGO_TRY(jsha(&r, m, "model: ", "sha256", lib->model_sha256));
    LEGO_TRY(jint(&r, m, "model: ", "bytes", &lib->model_bytes));
    LEGO_TRY(jint(&r, m, "model: ", "params", &lib->model_params));
    LEGO_TRY(jint(&r, m, "model: ", "param_bytes", &lib->model_param_bytes));
    LEGO_TRY(jint(&r, m, "model: ", "flops", &lib->model_flops));
    LEGO_TRY(jshape(&r, root, "", "input_shape", &lib->input_rank, lib->input_shape));
    LEGO_TRY(jnum(&r, root, "", "max_ratio", &lib->max_ratio));
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(root, "sparsities");
    if (!cJSON_IsArray(sp))
        return missing(&r, "", "sparsities", "a list of numbers");
    int ns = cJSON_GetArraySize(sp);
    lib->sparsities = calloc((size_t)ns + 1, sizeof *lib->sparsities);
    if (!lib->sparsities)
        return nomem();
    const cJSON *it;
    cJSON_ArrayForEach(it, sp)
    {
        if (!cJSON_IsNumber(it))
            return missing(&r, "", "sparsities", "a list of numbers");
        lib->sparsities[lib->n_sparsities++] = it->valuedouble;
    }
    LEGO_TRY(lego_error_context(library_check_sparsities(lib->sparsities, lib->n_sparsities), "%s", file));
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(root, "frame");
    if (!cJSON_IsObject(fr))
        return missing(&r, "", "frame", "an object");
    LEGO_TRY(jstr(&r, fr, "frame: ", "file", &lib->frame_file));
    LEGO_TRY(safe_name(&r, "frame: ", lib->frame_file));
    LEGO_TRY(jsha(&r, fr, "frame: ", "sha256", lib->frame_sha256));
    LEGO_TRY(jint(&r, fr, "frame: ", "bytes", &lib->frame_bytes));
    LEGO_TRY(jint(&r, fr, "frame: ", "params", &lib->frame_params));
    LEGO_TRY(jint(&r, fr, "frame: ", "param_bytes", &lib->frame_param_bytes));
    LEGO_TRY(jint(&r, fr, "frame: ", "flops", &lib->frame_flops));
    int64_t fi, fo;
    LEGO_TRY(jint(&r, fr, "frame: ", "inputs", &fi));
    LEGO_TRY(jint(&r, fr, "frame: ", "outputs", &fo));
    if (fi < 1 || fo < 1 || fi > 1 << 20 || fo > 1 << 20)
        return lego_error(LEGO_ERR_FORMAT, "%s: frame: %lld inputs and %lld outputs", file, (long long)fi, (long long)fo);
    lib->frame_model_inputs = (int)fi;
    lib->frame_model_outputs = (int)fo;
    const cJSON *bl = cJSON_GetObjectItemCaseSensitive(root, "blocks");
    if (!cJSON_IsArray(bl) || cJSON_GetArraySize(bl) < 1)
        return missing(&r, "", "blocks", "a list of blocks");
    int nb = cJSON_GetArraySize(bl);
    lib->blocks = calloc((size_t)nb + 1, sizeof *lib->blocks);
    if (!lib->blocks)
        return nomem();
    cJSON_ArrayForEach(it, bl)
    {
        lib->n_blocks++;
        LEGO_TRY(parse_block(&r, it, lib->n_blocks - 1, lib, &lib->blocks[lib->n_blocks - 1]));
    }
    return lego_ok();
}

static void remove_files(const char *dir, char **list, int n);

/* ---- checking files ----------------------------------------------------------------------- */

static lego_status verify_file(block_library *lib, const char *rel, int64_t bytes, const char *sha,
                               lib_checked *checked)
{
    char *path = file_join(lib->dir, rel);
    if (!path)
        return nomem();
    lego_status st = lego_ok();
    int64_t size = file_size(path);
    char hex[65];
    file_id id;
    if (size < 0)
        st = lego_error(LEGO_ERR_FORMAT, "%s is missing: the library is incomplete", path);
    else if (size != bytes)
        st = lego_error(LEGO_ERR_FORMAT,
                        "%s does not match the manifest (%lld bytes, the manifest says %lld): the library was "
                        "modified after extraction",
                        path, (long long)size, (long long)bytes);
    else if ((st = sha256_file_hex(path, hex, &id)).code == LEGO_OK) {
        lib->files_hashed++;
        if (strcmp(hex, sha) != 0)
            st = lego_error(LEGO_ERR_FORMAT,
                            "%s does not match the manifest (SHA-256 differs): the library was modified "
                            "after extraction",
                            path);
    }
    if (st.code == LEGO_OK)
        *checked = (lib_checked){.id = id, .valid = true};
    free(path);
    return st;
}

static lego_status verify_files(block_library *lib)
{
    LEGO_TRY(verify_file(lib, lib->frame_file, lib->frame_bytes, lib->frame_sha256, &lib->frame_checked));
    for (int b = 0; b < lib->n_blocks; b++)
        for (int d = 0; d < lib->blocks[b].n_desc; d++) {
            lib_descendant *x = &lib->blocks[b].desc[d];
            LEGO_TRY(verify_file(lib, x->file, x->bytes, x->sha256, &x->checked));
        }
    return lego_ok();
}

lego_status library_open(const char *dir, block_library *out)
{
    memset(out, 0, sizeof *out);
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return lego_error(LEGO_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return lego_error(LEGO_ERR_FORMAT, "%s is not a block library (not a directory)", dir);
    char *file = file_join(dir, "manifest.json");
    if (!file)
        return nomem();
    if (!file_exists(file)) {
        lego_status st = lego_error(LEGO_ERR_FORMAT, "%s is not a block library: it has no manifest.json", dir);
        free(file);
        return st;
    }
    unsigned char *buf;
    size_t len;
    lego_status st = file_read_all(file, &buf, &len);
    if (st.code) {
        free(file);
        return st;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)buf, len + 1, &end, 1);
    if (!root) {
        long at = end ? (long)(end - (const char *)buf) : -1;
        st = len == 0 ? lego_error(LEGO_ERR_FORMAT, "%s is empty", file)
                      : lego_error(LEGO_ERR_FORMAT, "%s is not valid JSON (truncated or edited?) near byte %ld",
                                   file, at);
    } else {
        st = parse_manifest(root, dir, file, out);
        out->manifest = root; /* kept: later stages add their results to it */
        if (st.code == LEGO_OK)
            st = verify_files(out);
    }
    free(buf);
    free(file);
    if (st.code)
        library_free(out);
    return st;
}

static void unload(lib_descendant *x)
{
    if (x->g) {
        graph_free(x->g);
        free(x->g);
        x->g = NULL;
    }
}

void library_free(block_library *lib)
{
    /* files written for an update that was never saved: nothing names them */
    remove_files(lib->dir, lib->pending, lib->n_pending);
    for (int i = 0; i < lib->n_stale; i++)
        free(lib->stale[i]);
    free(lib->stale);
    cJSON_Delete(lib->manifest);

    for (int b = 0; b < lib->n_blocks; b++) {
        lib_block *bl = &lib->blocks[b];
        free(bl->entry), free(bl->exit);
        char **lists[] = {bl->nodes, bl->convs, bl->prunable, bl->kept, bl->pruned_convs};
        int counts[] = {bl->n_nodes, bl->n_convs, bl->n_prunable, bl->n_kept, bl->n_pruned_convs};
        for (int l = 0; l < 5; l++) {
            for (int i = 0; lists[l] && i < counts[l]; i++)
                free(lists[l][i]);
            free(lists[l]);
        }
        for (int d = 0; d < bl->n_desc; d++) {
            lib_descendant *x = &bl->desc[d];
            free(x->file);
            for (int c = 0; c < x->n_cuts; c++)
                free(x->cuts[c].conv), free(x->cuts[c].kept);
            free(x->cuts);
            unload(x);
        }
        free(bl->desc);
    }
    free(lib->blocks);
    if (lib->frame) {
        graph_free(lib->frame);
        free(lib->frame);
    }
    free(lib->dir), free(lib->model_file), free(lib->sparsities), free(lib->frame_file);
    memset(lib, 0, sizeof *lib);
}

/* ---- loading on demand --------------------------------------------------------------------- */

/* Read rel, check it against the manifest, import it. */
static lego_status load_checked(block_library *lib, const char *rel, int64_t bytes, const char *sha,
                                lib_checked *checked, lego_graph **out)
{
    char *path = file_join(lib->dir, rel);
    if (!path)
        return nomem();
    unsigned char *buf;
    size_t len;
    file_id id;
    lego_status st = file_read_all_id(path, &buf, &len, &id);
    if (st.code) {
        free(path);
        return st;
    }
    bool same = checked->valid && file_id_equal(&id, &checked->id);
    char hex[65];
    if (!same && (int64_t)len == bytes) {
        sha256_hex(buf, len, hex);
        lib->files_hashed++;
    }
    if ((int64_t)len != bytes) {
        checked->valid = false;
        st = lego_error(LEGO_ERR_FORMAT,
                        "%s does not match the manifest (%lld bytes, the manifest says %lld): the library was "
                        "modified after extraction",
                        path, (long long)len, (long long)bytes);
    } else if (!same && strcmp(hex, sha) != 0) {
        checked->valid = false;
        st = lego_error(LEGO_ERR_FORMAT,
                        "%s does not match the manifest (SHA-256 differs): the library was modified after "
                        "extraction",
                        path);
    } else {
        *checked = (lib_checked){.id = id, .valid = true};
        lego_graph *g = malloc(sizeof *g);
        if (!g)
            st = nomem();
        else if ((st = onnx_import(buf, len, path, g)).code)
            free(g);
        else
            *out = g;
    }
    free(buf);
    free(path);
    return st;
}

static lego_status set_input(lego_graph *g, const char *name, int rank, const int64_t *dims)
{
    int v = graph_find_value(g, name);
    if (v < 0 || g->values[v].kind != VALUE_INPUT)
        return lego_error(LEGO_ERR_FORMAT, "%s: no graph input '%s'", g->name, name);
    if (g->values[v].t.rank != rank)
        return lego_error(LEGO_ERR_FORMAT, "%s: input '%s' has rank %d, the manifest says %d", g->name, name,
                          g->values[v].t.rank, rank);
    memcpy(g->values[v].t.dims, dims, sizeof *dims * (size_t)rank);
    return lego_ok();
}

lego_status library_frame(block_library *lib, lego_graph **out)
{
    if (!lib->frame) {
        lego_graph *g;
        LEGO_TRY(load_checked(lib, lib->frame_file, lib->frame_bytes, lib->frame_sha256, &lib->frame_checked, &g));
        lego_status st = lego_ok();
        if (g->n_inputs < lib->frame_model_inputs || g->n_outputs < lib->frame_model_outputs)
            st = lego_error(LEGO_ERR_FORMAT, "%s: fewer inputs or outputs than the manifest says", g->name);
        if (st.code == LEGO_OK && lib->input_rank && g->n_inputs)
            st = set_input(g, g->values[g->inputs[0]].name, lib->input_rank, lib->input_shape);
        for (int b = 0; b < lib->n_blocks && st.code == LEGO_OK; b++) {
            int v = graph_find_value(g, lib->blocks[b].exit);
            if (v >= 0 && g->values[v].kind == VALUE_INPUT)
                st = set_input(g, lib->blocks[b].exit, lib->blocks[b].out_rank, lib->blocks[b].out_shape);
        }
        if (st.code == LEGO_OK)
            st = graph_infer(g);
        if (st.code) {
            graph_free(g);
            free(g);
            return st;
        }
        lib->frame = g;
    }
    *out = lib->frame;
    return lego_ok();
}

lego_status library_descendant(block_library *lib, int b, int d, lego_graph **out)
{
    if (b < 0 || b >= lib->n_blocks || d < 0 || d >= lib->blocks[b].n_desc)
        return lego_error(LEGO_ERR_ARG, "%s: no descendant %d of block %d", lib->dir, d, b);
    lib_block *bl = &lib->blocks[b];
    lib_descendant *x = &bl->desc[d];
    if (!x->g) {
        lego_graph *g;
        LEGO_TRY(load_checked(lib, x->file, x->bytes, x->sha256, &x->checked, &g));
        lego_status st = lego_ok();
        if (g->n_inputs != 1 || g->n_outputs != 1 || strcmp(g->values[g->inputs[0]].name, bl->entry) != 0 ||
            strcmp(g->values[g->outputs[0]].name, bl->exit) != 0)
            st = lego_error(LEGO_ERR_FORMAT, "%s: its input and output are not block %d's entry '%s' and exit '%s'",
                            g->name, b, bl->entry, bl->exit);
        if (st.code == LEGO_OK)
            st = set_input(g, bl->entry, bl->in_rank, bl->in_shape);
        if (st.code == LEGO_OK)
            st = graph_infer(g);
        if (st.code) {
            graph_free(g);
            free(g);
            return st;
        }
        x->g = g;
    }
    *out = x->g;
    return lego_ok();
}

void library_unload(block_library *lib, int b, int d)
{
    if (b >= 0 && b < lib->n_blocks && d >= 0 && d < lib->blocks[b].n_desc)
        unload(&lib->blocks[b].desc[d]);
}

/* ---- extraction --------------------------------------------------------------------------- */

typedef struct extraction {
    const lego_graph *g;
    const block_set *bs;
    const extract_options *opt;
    const char *tmp;
    int done, total, decimals;
} extraction;

static lego_status step(extraction *x, const char *what)
{
    x->done++;
    if (x->opt->progress && !x->opt->progress(x->opt->ctx, x->done, x->total, what))
        return lego_error(LEGO_ERR_IO, "interrupted: nothing was written");
    return lego_ok();
}

/* Export g to tmp/rel; record file, sha256 and bytes in o. */
static lego_status write_graph(extraction *x, const lego_graph *g, const char *rel, const char *const *keys,
                               const char *const *vals, cJSON *o)
{
    unsigned char *buf;
    size_t len;
    LEGO_TRY(onnx_export(g, keys, vals, &buf, &len));
    char *path = file_join(x->tmp, rel);
    lego_status st = path ? file_write_atomic(path, buf, len) : nomem();
    char hex[65];
    sha256_hex(buf, len, hex);
    free(buf);
    free(path);
    LEGO_TRY(st);
    cJSON_AddStringToObject(o, "file", rel);
    cJSON_AddStringToObject(o, "sha256", hex);
    cJSON_AddNumberToObject(o, "bytes", (double)len);
    return lego_ok();
}

static lego_status extract_block(extraction *x, int bi, cJSON *blocks)
{
    const lego_graph *g = x->g;
    const block *b = &x->bs->blocks[bi];
    prune_plan *plan;
    LEGO_TRY(lego_error_context(prune_analyze(g, b, &plan), "block %d", bi));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(blocks, o);
    char name[64];
    snprintf(name, sizeof name, "block-%d", bi);
    cJSON_AddNumberToObject(o, "index", bi);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "entry", g->values[b->entry].name);
    cJSON_AddStringToObject(o, "exit", g->values[b->exit].name);
    cJSON_AddItemToObject(o, "input_shape", shape_json(g->values[b->entry].t.rank, g->values[b->entry].t.dims));
    cJSON_AddItemToObject(o, "output_shape", shape_json(g->values[b->exit].t.rank, g->values[b->exit].t.dims));
    cJSON_AddItemToObject(o, "nodes", names_json(g, b->nodes, b->n_nodes));
    cJSON_AddItemToObject(o, "convs", names_json(g, b->convs, b->n_convs));
    cJSON_AddItemToObject(o, "prunable", names_json(g, b->prunable, b->n_prunable));
    cJSON_AddItemToObject(o, "kept", names_json(g, b->kept, b->n_kept));
    cJSON *pc = cJSON_AddArrayToObject(o, "pruned_convs");
    for (int j = 0; j < b->n_convs; j++)
        if (prune_plan_cuts_conv(plan, b->convs[j]))
            cJSON_AddItemToArray(pc, cJSON_CreateString(blocks_node_name(g, b->convs[j])));
    cJSON_AddNumberToObject(o, "params", (double)b->params);
    cJSON_AddNumberToObject(o, "param_bytes", (double)b->param_bytes);
    cJSON_AddNumberToObject(o, "flops", (double)b->flops);
    cJSON *ds = cJSON_AddArrayToObject(o, "descendants");
    lego_status st = lego_ok();
    for (int si = 0; si < x->opt->n_sparsities && st.code == LEGO_OK; si++) {
        double s = x->opt->sparsities[si];
        char rel[128], gname[160], sbuf[40], ibuf[16];
        library_descendant_file(bi, s, x->decimals, rel, sizeof rel);
        snprintf(sbuf, sizeof sbuf, "%.*f", x->decimals, s);
        snprintf(gname, sizeof gname, "%s-%s", name, sbuf);
        snprintf(ibuf, sizeof ibuf, "%d", bi);
        descendant d;
        st = lego_error_context(prune_descendant(plan, s, gname, &d), "block %d", bi);
        if (st.code)
            break;
        cJSON *dj = cJSON_CreateObject();
        cJSON_AddItemToArray(ds, dj);
        cJSON_AddNumberToObject(dj, "sparsity", s);
        const char *keys[] = {"legodnn.block", "legodnn.sparsity", NULL};
        const char *vals[] = {ibuf, sbuf, NULL};
        st = write_graph(x, &d.g, rel, keys, vals, dj);
        if (st.code == LEGO_OK) {
            cJSON_AddNumberToObject(dj, "weight_bytes", (double)d.param_bytes);
            cJSON_AddNumberToObject(dj, "params", (double)d.params);
            cJSON_AddNumberToObject(dj, "flops", (double)d.flops);
            cJSON *cuts = cJSON_AddArrayToObject(dj, "pruned");
            for (int c = 0; c < d.n_convs; c++) {
                const prune_conv *cv = &d.convs[c];
                if (!prune_plan_cuts_conv(plan, cv->node))
                    continue;
                cJSON *cj = cJSON_CreateObject();
                cJSON_AddStringToObject(cj, "conv", cv->name);
                cJSON_AddNumberToObject(cj, "channels", (double)cv->out_channels);
                cJSON_AddItemToObject(cj, "kept", ints_json(cv->kept_out, cv->n_kept_out));
                cJSON_AddItemToArray(cuts, cj);
            }
            cJSON_AddNullToObject(dj, "retraining_loss");
            cJSON_AddNullToObject(dj, "accuracy_loss");
            cJSON_AddNullToObject(dj, "latency");
        }
        descendant_free(&d);
        if (st.code == LEGO_OK)
            st = step(x, rel);
    }
    prune_plan_free(plan);
    return st;
}

static lego_status extract_into(extraction *x, const char *model_path, const char *dir, cJSON *root,
                                block_library *out)
{
    const lego_graph *g = x->g;
    const block_set *bs = x->bs;
    char hex[65];
    int64_t bytes;
    if (model_path) {
        LEGO_TRY(sha256_file_hex(model_path, hex, NULL));
        bytes = file_size(model_path);
    } else {
        unsigned char *buf;
        size_t len;
        LEGO_TRY(onnx_export(g, NULL, NULL, &buf, &len));
        sha256_hex(buf, len, hex);
        bytes = (int64_t)len;
        free(buf);
    }
    cJSON_AddNumberToObject(root, "format_version", LIBRARY_FORMAT_VERSION);
    cJSON_AddStringToObject(root, "generator", "legodnn " LEGO_VERSION);
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    const char *base = model_path ? strrchr(model_path, '/') : NULL;
    cJSON_AddStringToObject(m, "file", model_path ? (base ? base + 1 : model_path) : g->name);
    cJSON_AddStringToObject(m, "sha256", hex);
    cJSON_AddNumberToObject(m, "bytes", (double)bytes);
    cJSON_AddNumberToObject(m, "params", (double)bs->params);
    cJSON_AddNumberToObject(m, "param_bytes", (double)bs->param_bytes);
    cJSON_AddNumberToObject(m, "flops", (double)bs->flops);
    cJSON_AddItemToObject(m, "inputs", values_json(g, g->inputs, g->n_inputs));
    cJSON_AddItemToObject(m, "outputs", values_json(g, g->outputs, g->n_outputs));
    const lego_tensor *in0 = &g->values[g->inputs[0]].t;
    cJSON_AddItemToObject(root, "input_shape", shape_json(in0->rank, in0->dims));
    cJSON_AddNumberToObject(root, "max_ratio", bs->max_ratio);
    cJSON *sp = cJSON_AddArrayToObject(root, "sparsities");
    for (int i = 0; i < x->opt->n_sparsities; i++)
        cJSON_AddItemToArray(sp, cJSON_CreateNumber(x->opt->sparsities[i]));

    lego_graph frame;
    LEGO_TRY(build_frame(g, bs, &frame));
    cJSON *fr = cJSON_AddObjectToObject(root, "frame");
    const char *keys[] = {"legodnn.frame", NULL};
    const char *vals[] = {cJSON_GetObjectItem(m, "file")->valuestring, NULL};
    lego_status st = write_graph(x, &frame, "frame.onnx", keys, vals, fr);
    if (st.code == LEGO_OK) {
        int64_t pb;
        cJSON_AddNumberToObject(fr, "params", (double)graph_param_count(&frame, &pb));
        cJSON_AddNumberToObject(fr, "param_bytes", (double)pb);
        cJSON_AddNumberToObject(fr, "flops", (double)graph_flops(&frame, NULL));
        cJSON_AddNumberToObject(fr, "inputs", g->n_inputs);
        cJSON_AddNumberToObject(fr, "outputs", g->n_outputs);
    }
    graph_free(&frame);
    LEGO_TRY(st);
    LEGO_TRY(step(x, "frame.onnx"));
    cJSON *blocks = cJSON_AddArrayToObject(root, "blocks");
    for (int b = 0; b < bs->n_blocks; b++)
        LEGO_TRY(extract_block(x, b, blocks));
    char *text = cJSON_Print(root);
    if (!text)
        return nomem();
    char *path = file_join(x->tmp, "manifest.json");
    st = path ? file_write_atomic(path, text, strlen(text)) : nomem();
    free(path);
    free(text);
    LEGO_TRY(st);
    if (out) {
        char *file = file_join(dir, "manifest.json");
        st = file ? parse_manifest(root, dir, file, out) : nomem();
        free(file);
        /* kept, as library_open keeps it, for the later stages' updates */
        if (st.code == LEGO_OK && !(out->manifest = cJSON_Duplicate(root, 1)))
            st = nomem();
        if (st.code)
            library_free(out);
    }
    return st;
}

static bool empty_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return false;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(dp)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(dp);
    return empty;
}

/* An existing path that --force may replace: a block library or an empty
 * directory, never anything else. */
static lego_status replaceable(const char *dir)
{
    struct stat sb;
    if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return lego_error(LEGO_ERR_ARG, "%s exists and is not a block library; not replacing it", dir);
    char *m = file_join(dir, "manifest.json");
    if (!m)
        return nomem();
    bool lib = file_exists(m);
    free(m);
    if (lib || empty_dir(dir))
        return lego_ok();
    return lego_error(LEGO_ERR_ARG, "%s exists and is not a block library; not replacing it", dir);
}

/* Remove DIR.tmp.<pid> left by extractions that were killed (their process
 * is gone); a DIR.old.<pid> goes back to DIR when DIR is missing, else away. */
static void remove_stale(const char *dir)
{
    const char *slash = strrchr(dir, '/');
    char *parent = slash ? malloc((size_t)(slash - dir) + 2) : dup_str(".");
    if (!parent)
        return;
    if (slash) {
        size_t n = slash == dir ? 1 : (size_t)(slash - dir);
        memcpy(parent, dir, n);
        parent[n] = 0;
    }
    const char *base = slash ? slash + 1 : dir;
    size_t bl = strlen(base);
    DIR *dp = opendir(parent);
    if (!dp) {
        free(parent);
        return;
    }
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        const char *nm = e->d_name;
        if (strncmp(nm, base, bl) != 0 || (strncmp(nm + bl, ".tmp.", 5) != 0 && strncmp(nm + bl, ".old.", 5) != 0))
            continue;
        char *end;
        long pid = strtol(nm + bl + 5, &end, 10);
        if (*end || end == nm + bl + 5 || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char *path = file_join(parent, nm);
        if (path && nm[bl + 1] == 'o' && !file_exists(dir)) {
            /* killed between the two renames of a swap: the old library
             * comes back */
            rename(path, dir);
        } else if (path) {
            lego_status st = file_remove_tree(path);
            lego_status_free(&st);
        }
        free(path);
    }
    closedir(dp);
    free(parent);
}

lego_status library_extract(const lego_graph *model, const block_set *bs, const char *model_path,
                            const char *dir, const extract_options *opt, block_library *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    LEGO_TRY(library_check_sparsities(opt->sparsities, opt->n_sparsities));
    if (bs->n_blocks < 1)
        return lego_error(LEGO_ERR_ARG, "%s: no blocks to extract", model->name);
    if (model->n_inputs < 1)
        return lego_error(LEGO_ERR_ARG, "%s: the model has no input", model->name);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    char *d = malloc(n + 1), *tmp = malloc(n + 40), *old = malloc(n + 40);
    if (!d || !tmp || !old) {
        free(d), free(tmp), free(old);
        return nomem();
    }
    memcpy(d, dir, n);
    d[n] = 0;
    snprintf(tmp, n + 40, "%s.tmp.%ld", d, (long)getpid());
    snprintf(old, n + 40, "%s.old.%ld", d, (long)getpid());
    lego_status st = lego_ok();
    remove_stale(d);
    bool exists = file_exists(d);
    if (exists && !opt->force)
        st = lego_error(LEGO_ERR_ARG, "%s already exists (use --force to replace it)", d);
    else if (exists)
        st = replaceable(d);
    if (st.code == LEGO_OK)
        st = file_remove_tree(tmp);
    if (st.code == LEGO_OK && mkdir(tmp, 0777) != 0)
        st = lego_error(LEGO_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    bool made = st.code == LEGO_OK;
    if (made) {
        char *blocks = file_join(tmp, "blocks");
        if (!blocks)
            st = nomem();
        else if (mkdir(blocks, 0777) != 0)
            st = lego_error(LEGO_ERR_IO, "%s: cannot create: %s", blocks, strerror(errno));
        free(blocks);
    }
    cJSON *root = NULL;
    if (st.code == LEGO_OK) {
        extraction x = {.g = model, .bs = bs, .opt = opt, .tmp = tmp};
        x.total = 1 + bs->n_blocks * opt->n_sparsities;
        x.decimals = library_sparsity_decimals(opt->sparsities, opt->n_sparsities);
        root = cJSON_CreateObject();
        st = root ? extract_into(&x, model_path, d, root, out) : nomem();
        cJSON_Delete(root);
    }
    if (st.code == LEGO_OK) {
        /* the swap: the old library goes aside only once the new one is whole */
        if (exists && rename(d, old) != 0) {
            st = lego_error(LEGO_ERR_IO, "%s: cannot replace it: %s", d, strerror(errno));
        } else if (rename(tmp, d) != 0) {
            st = lego_error(LEGO_ERR_IO, "%s: cannot create: %s", d, strerror(errno));
            if (exists)
                rename(old, d);
        } else if (exists) {
            lego_status rm = file_remove_tree(old);
            lego_status_free(&rm);
        }
        if (st.code && out)
            library_free(out);
    }
    if (st.code && made) {
        lego_status rm = file_remove_tree(tmp);
        lego_status_free(&rm);
    }
    free(d), free(tmp), free(old);
    return st;
}

/* ---- updates by the later stages ---------------------------------------- */

cJSON *library_descendant_json(block_library *lib, int b, int d)
{
    cJSON *blocks = cJSON_GetObjectItemCaseSensitive(lib->manifest, "blocks");
    cJSON *blk = cJSON_GetArrayItem(blocks, b);
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(blk, "descendants"), d);
}

lego_status library_set_number(cJSON *obj, const char *key, double value)
{
    if (!obj)
        return lego_error(LEGO_ERR_INTERNAL, "no manifest entry to set '%s' in", key);
    cJSON *v = isfinite(value) ? cJSON_CreateNumber(value) : cJSON_CreateNull();
    if (!v)
        return nomem();
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
    else
        cJSON_AddItemToObject(obj, key, v);
    return lego_ok();
}

/* Remember a file to remove later (see library.h). */
static lego_status push_name(char ***list, int *n, const char *name)
{
    char *c = dup_str(name);
    char **l = c ? realloc(*list, sizeof *l * (size_t)(*n + 1)) : NULL;
    if (!l) {
        free(c);
        return nomem();
    }
    l[(*n)++] = c;
    *list = l;
    return lego_ok();
}

static void remove_files(const char *dir, char **list, int n)
{
    for (int i = 0; i < n; i++) {
        char *path = file_join(dir, list[i]);
        if (path)
            unlink(path);
        free(path);
        free(list[i]);
    }
    free(list);
}

/* Length of file's name without ".onnx" and a ".r<n>" generation. */
static size_t stem_length(const char *file, long *gen)
{
    size_t n = strlen(file);
    size_t stem = n >= 5 && strcmp(file + n - 5, ".onnx") == 0 ? n - 5 : n;
    size_t d = stem;
    *gen = 0;
    while (d > 0 && file[d - 1] >= '0' && file[d - 1] <= '9')
        d--;
    if (d < stem && stem - d < 9 && d >= 2 && file[d - 1] == 'r' && file[d - 2] == '.') {
        *gen = strtol(file + d, NULL, 10);
        stem = d - 2;
    }
    return stem;
}

/* The name a rewritten descendant file takes: "blocks/block-3-0.30.onnx"
 * becomes "blocks/block-3-0.30.r1.onnx", that one ".r2", and so on, skipping
 * names a file already has (left by an interrupted run). */
static char *next_file_name(const char *dir, const char *file)
{
    long gen;
    size_t stem = stem_length(file, &gen);
    size_t len = stem + 32;
    char *name = malloc(len);
    if (!name)
        return NULL;
    for (;;) {
        snprintf(name, len, "%.*s.r%ld.onnx", (int)stem, file, ++gen);
        char *path = file_join(dir, name);
        if (!path) {
            free(name);
            return NULL;
        }
        bool taken = file_exists(path);
        free(path);
        if (!taken)
            return name;
    }
}

lego_status library_replace_descendant(block_library *lib, int b, int d, const lego_graph *g)
{
    if (b < 0 || b >= lib->n_blocks || d < 0 || d >= lib->blocks[b].n_desc)
        return lego_error(LEGO_ERR_ARG, "%s: no descendant %d of block %d", lib->dir, d, b);
    lib_descendant *x = &lib->blocks[b].desc[d];
    cJSON *j = library_descendant_json(lib, b, d);
    if (!j)
        return lego_error(LEGO_ERR_INTERNAL, "%s: block %d descendant %d is not in the manifest", lib->dir, b, d);
    char *name = next_file_name(lib->dir, x->file);
    char *path = name ? file_join(lib->dir, name) : NULL;
    /* the graph keeps the name extraction gave it ("block-3-0.30"), not
     * the path it was read from, so equal weights make equal files */
    long gen;
    const char *base = strrchr(x->file, '/') ? strrchr(x->file, '/') + 1 : x->file;
    char graph_name[256];
    snprintf(graph_name, sizeof graph_name, "%.*s", (int)stem_length(base, &gen), base);
    lego_graph named = *g;
    named.name = graph_name;
    unsigned char *buf = NULL;
    size_t len = 0;
    lego_status st = path ? onnx_export(&named, NULL, NULL, &buf, &len) : nomem();
    if (st.code == LEGO_OK)
        st = file_write_atomic(path, buf, len);
    /* from here the new file exists: library_free removes it unless saved */
    if (st.code == LEGO_OK)
        st = push_name(&lib->pending, &lib->n_pending, name);
    if (st.code == LEGO_OK)
        st = push_name(&lib->stale, &lib->n_stale, x->file);
    cJSON *sha = NULL, *file = NULL;
    char hex[65];
    if (st.code == LEGO_OK) {
        sha256_hex(buf, len, hex);
        sha = cJSON_CreateString(hex);
        file = cJSON_CreateString(name);
        if (!sha || !file)
            st = nomem();
    }
    if (st.code == LEGO_OK) {
        memcpy(x->sha256, hex, sizeof hex);
        x->checked.valid = false; /* another file: hashed on its first load */
        x->bytes = (int64_t)len;
        free(x->file);
        x->file = name;
        name = NULL;
        cJSON_ReplaceItemInObjectCaseSensitive(j, "sha256", sha);
        cJSON_ReplaceItemInObjectCaseSensitive(j, "file", file);
        sha = file = NULL;
        st = library_set_number(j, "bytes", (double)len);
    }
    cJSON_Delete(sha);
    cJSON_Delete(file);
    free(buf);
    free(path);
    free(name);
    return st;
}

lego_status library_save(block_library *lib)
{
    char *text = cJSON_Print(lib->manifest);
    char *path = file_join(lib->dir, "manifest.json");
    lego_status st = text && path ? file_write_atomic(path, text, strlen(text)) : nomem();
    free(text);
    free(path);
    if (st.code == LEGO_OK) {
        /* the manifest now names the new files: the old ones can go */
        remove_files(lib->dir, lib->stale, lib->n_stale);
        for (int i = 0; i < lib->n_pending; i++)
            free(lib->pending[i]);
        free(lib->pending);
        lib->stale = lib->pending = NULL;
        lib->n_stale = lib->n_pending = 0;
    }
    return st;
}
