/* test_onnx_export.c - ONNX export: every fixture model (and every op
 * fixture) survives import -> export -> import with the same structure and
 * bit-identical outputs; exporting is idempotent; metadata and changed
 * weights round-trip; a failed file export leaves no file. Runs from tests/. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "core/tensor.h"
#include "harness.h"
#include "onnx/onnx_export.h"
#include "onnx/onnx_import.h"

/* Import and infer, as lego_model_load does. */
static lego_status load_graph(const void *buf, size_t len, const char *name, lego_graph *g)
{
    LEGO_TRY(onnx_import(buf, len, name, g));
    lego_status st = graph_infer(g);
    if (st.code)
        graph_free(g);
    return st;
}

static lego_status load_graph_file(const char *path, const char *name, lego_graph *g)
{
    unsigned char *buf;
    size_t len;
    LEGO_TRY(file_read_all(path, &buf, &len));
    lego_status st = load_graph(buf, len, name, g);
    free(buf);
    return st;
}

static int count_initializers(const lego_graph *g)
{
    int n = 0;
    for (int i = 0; i < g->n_values; i++)
        n += g->values[i].kind == VALUE_INITIALIZER;
    return n;
}

/* Structure and initializer contents of b match a. */
static void check_same_graph(const lego_graph *a, const lego_graph *b, const char *what)
{
    int before = harness_failed;
    CHECK(a->opset == b->opset);
    CHECK(a->n_nodes == b->n_nodes);
    CHECK(count_initializers(a) == count_initializers(b));
    CHECK(a->n_inputs == b->n_inputs && a->n_outputs == b->n_outputs);
    for (int i = 0; i < a->n_inputs && i < b->n_inputs; i++) {
        const gvalue *x = &a->values[a->inputs[i]], *y = &b->values[b->inputs[i]];
        CHECK(strcmp(x->name, y->name) == 0);
        CHECK(x->declared_rank == y->declared_rank);
        CHECK(memcmp(x->declared, y->declared, sizeof x->declared[0] * (size_t)x->declared_rank) == 0);
    }
    for (int i = 0; i < a->n_outputs && i < b->n_outputs; i++)
        CHECK(strcmp(a->values[a->outputs[i]].name, b->values[b->outputs[i]].name) == 0);
    for (int i = 0; i < a->n_values; i++) {
        const gvalue *x = &a->values[i];
        if (x->kind != VALUE_INITIALIZER)
            continue;
        int j = graph_find_value(b, x->name);
        CHECK(j >= 0);
        if (j < 0)
            continue;
        const gvalue *y = &b->values[j];
        CHECK(y->kind == VALUE_INITIALIZER && tensor_same_shape(&x->t, &y->t));
        CHECK(memcmp(x->t.data, y->t.data, lego_tensor_bytes(&x->t)) == 0);
    }
    /* Nodes as written: names, op types, inputs and attributes. */
    for (int k = 0; k < a->n_nodes && k < b->n_nodes; k++) {
        const gnode *x = &a->nodes[a->order[k]], *y = &b->nodes[b->order[k]];
        CHECK(strcmp(x->name, y->name) == 0 && strcmp(x->op_type, y->op_type) == 0);
        CHECK(x->n_in == y->n_in && x->n_out == y->n_out && x->attrs.n == y->attrs.n);
        CHECK(x->folded == y->folded);
        for (int i = 0; i < x->n_in && i < y->n_in; i++)
            CHECK(x->in[i] < 0 ? y->in[i] < 0
                               : strcmp(a->values[x->in[i]].name, b->values[y->in[i]].name) == 0);
        for (int i = 0; i < x->attrs.n && i < y->attrs.n; i++) {
            const lego_attr *p = &x->attrs.a[i], *q = &y->attrs.a[i];
            CHECK(strcmp(p->name, q->name) == 0 && p->type == q->type);
            CHECK(p->i == q->i && p->n == q->n && memcmp(&p->f, &q->f, sizeof p->f) == 0);
            if (p->s && q->s)
                CHECK(strcmp(p->s, q->s) == 0);
            if (p->t && q->t)
                CHECK(tensor_same_shape(p->t, q->t) && p->t->dtype == q->t->dtype &&
                      memcmp(p->t->data, q->t->data, lego_tensor_bytes(p->t)) == 0);
        }
    }
    if (harness_failed != before)
        fprintf(stderr, "  ... in %s\n", what);
}

/* Run a and b on PREFIX.in.bin (choosing the batch as test_fixture does);
 * their outputs must be bit-identical. */
static void check_same_outputs(lego_model *a, lego_model *b, const char *prefix)
{
    char path[1100];
    snprintf(path, sizeof path, "%s.in.bin", prefix);
    unsigned char *in_buf;
    size_t in_len;
    lego_status st = file_read_all(path, &in_buf, &in_len);
    CHECK_OK(st);
    if (st.code)
        return;
    int n_in = lego_model_num_inputs(a), n_out = lego_model_num_outputs(a);
    CHECK(n_in == lego_model_num_inputs(b) && n_out == lego_model_num_outputs(b));
    const lego_tensor *x0 = lego_model_input(a, 0);
    size_t first = lego_tensor_bytes(x0);
    if (n_in == 1 && in_len != first && first && in_len % first == 0) {
        int64_t dims[LEGO_MAX_RANK];
        memcpy(dims, x0->dims, sizeof dims);
        dims[0] = (int64_t)(in_len / first) * x0->dims[0];
        CHECK_OK(lego_model_set_input_shape(a, 0, x0->rank, dims));
        CHECK_OK(lego_model_set_input_shape(b, 0, x0->rank, dims));
    }
    lego_tensor ins[64];
    const lego_tensor *in_ptrs[64];
    lego_tensor *out_a[64] = {0}, *out_b[64] = {0};
    size_t pos = 0;
    for (int i = 0; i < n_in && i < 64; i++) {
        ins[i] = *lego_model_input(a, i);
        CHECK(tensor_same_shape(&ins[i], lego_model_input(b, i)));
        ins[i].data = in_buf + pos;
        ins[i].owns = 0;
        in_ptrs[i] = &ins[i];
        pos += lego_tensor_bytes(&ins[i]);
    }
    CHECK(pos == in_len);
    if (pos == in_len) {
        CHECK_OK(lego_model_run(a, in_ptrs, out_a));
        CHECK_OK(lego_model_run(b, in_ptrs, out_b));
    }
    for (int o = 0; o < n_out && out_a[0] && out_b[0]; o++) {
        CHECK(tensor_same_shape(out_a[o], out_b[o]) && out_a[o]->dtype == out_b[o]->dtype);
        if (tensor_same_shape(out_a[o], out_b[o]) &&
            memcmp(out_a[o]->data, out_b[o]->data, lego_tensor_bytes(out_a[o])) != 0) {
            CHECK(!"outputs differ after export");
            fprintf(stderr, "  ... %s output %d\n", prefix, o);
        }
    }
    for (int o = 0; o < n_out; o++) {
        lego_tensor_free(out_a[o]);
        lego_tensor_free(out_b[o]);
    }
    free(in_buf);
}

/* The round trip for one fixture: DIR/NAME.onnx. */
static void round_trip(const char *dir, const char *name)
{
    char prefix[1024], path[1100];
    snprintf(prefix, sizeof prefix, "%s/%s", dir, name);
    snprintf(path, sizeof path, "%s.onnx", prefix);
    lego_graph g, g2;
    lego_status st = load_graph_file(path, name, &g);
    CHECK_OK(st);
    if (st.code)
        return;
    unsigned char *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    CHECK_OK(onnx_export(&g, NULL, NULL, &buf, &len));
    st = buf ? load_graph(buf, len, name, &g2) : lego_error(LEGO_ERR_INTERNAL, "no export");
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        check_same_graph(&g, &g2, path);
        /* Exporting the re-imported graph gives the same bytes. */
        CHECK_OK(onnx_export(&g2, NULL, NULL, &buf2, &len2));
        CHECK(buf2 && len2 == len && memcmp(buf, buf2, len) == 0);
        graph_free(&g2);
    }
    lego_model *a = NULL, *b = NULL;
    CHECK_OK(lego_model_load(path, &a));
    if (buf)
        CHECK_OK(lego_model_load_memory(buf, len, name, &b));
    if (a && b)
        check_same_outputs(a, b, prefix);
    lego_model_free(a);
    lego_model_free(b);
    free(buf);
    free(buf2);
    graph_free(&g);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every DIR/NAME.onnx, in name order; returns how many. */
static int round_trip_dir(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d)
        return 0;
    char *names[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".onnx") == 0) {
            names[n] = malloc(l - 4);
            if (!names[n])
                break;
            memcpy(names[n], e->d_name, l - 5);
            names[n++][l - 5] = 0;
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++) {
        round_trip(dir, names[i]);
        free(names[i]);
    }
    return n;
}

static void test_dynamic_batch(void)
{
    lego_graph g, g2;
    CHECK_OK(load_graph_file("data/models/resnet18_dynbatch.onnx", "dyn", &g));
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_OK(onnx_export(&g, NULL, NULL, &buf, &len));
    CHECK_OK(load_graph(buf, len, "dyn", &g2));
    const gvalue *x = &g2.values[g2.inputs[0]];
    CHECK(x->declared_rank == 4 && x->declared[0] == -1 && x->declared[1] == 3);
    /* The public model sees the dynamic axis too, and takes a batch of 3. */
    lego_model *m = NULL;
    CHECK_OK(lego_model_load_memory(buf, len, "dyn", &m));
    if (m) {
        int64_t dims[4] = {3, 3, x->declared[2], x->declared[3]};
        CHECK_OK(lego_model_set_input_shape(m, 0, 4, dims));
        CHECK(lego_model_output(m, 0)->dims[0] == 3);
    }
    lego_model_free(m);
    free(buf);
    graph_free(&g2);
    graph_free(&g);
}

static void test_metadata(void)
{
    lego_graph g, g2, g3;
    CHECK_OK(load_graph_file("data/ops/relu_o11.onnx", "relu", &g));
    CHECK(g.n_meta == 0 && graph_meta(&g, "a") == NULL);
    const char *k1[] = {"a", "b", "a", NULL}, *v1[] = {"1", "two", "one", NULL};
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_OK(onnx_export(&g, k1, v1, &buf, &len));
    CHECK_OK(load_graph(buf, len, "relu", &g2));
    free(buf);
    CHECK(g2.n_meta == 2);
    CHECK(graph_meta(&g2, "a") && strcmp(graph_meta(&g2, "a"), "one") == 0);
    CHECK(graph_meta(&g2, "b") && strcmp(graph_meta(&g2, "b"), "two") == 0);
    CHECK(graph_meta(&g2, "c") == NULL);
    /* The graph's own metadata, then the extras; an extra key replaces. */
    const char *k2[] = {"c", "b", NULL}, *v2[] = {"", "2", NULL};
    CHECK_OK(onnx_export(&g2, k2, v2, &buf, &len));
    CHECK_OK(load_graph(buf, len, "relu", &g3));
    free(buf);
    CHECK(g3.n_meta == 3);
    if (g3.n_meta == 3) {
        CHECK(strcmp(g3.meta_keys[0], "a") == 0 && strcmp(g3.meta_values[0], "one") == 0);
        CHECK(strcmp(g3.meta_keys[1], "b") == 0 && strcmp(g3.meta_values[1], "2") == 0);
        CHECK(strcmp(g3.meta_keys[2], "c") == 0 && strcmp(g3.meta_values[2], "") == 0);
    }
    /* Bad arguments. */
    const char *bad_k[] = {"", NULL}, *bad_v[] = {"x", NULL}, *short_v[] = {NULL};
    CHECK_FAILS(onnx_export(&g, bad_k, bad_v, &buf, &len), LEGO_ERR_ARG, "empty");
    CHECK_FAILS(onnx_export(&g, k1, NULL, &buf, &len), LEGO_ERR_ARG, "without values");
    CHECK_FAILS(onnx_export(&g, k1, short_v, &buf, &len), LEGO_ERR_ARG, "has no value");
    CHECK(buf == NULL && len == 0);
    graph_free(&g3);
    graph_free(&g2);
    graph_free(&g);
}

/* Training changes weights: the export must carry the current data. */
static void test_changed_weights(void)
{
    lego_graph g, g2;
    CHECK_OK(load_graph_file("data/models/resnet18.onnx", "resnet18", &g));
    int w = -1;
    for (int i = 0; i < g.n_values && w < 0; i++)
        if (g.values[i].kind == VALUE_INITIALIZER && g.values[i].t.dtype == LEGO_F32 &&
            g.values[i].t.rank == 4)
            w = i;
    CHECK(w >= 0);
    if (w < 0) {
        graph_free(&g);
        return;
    }
    float *d = g.values[w].t.data;
    int64_t n = lego_tensor_numel(&g.values[w].t);
    for (int64_t i = 0; i < n; i++)
        d[i] = d[i] * 0.5f + (float)i * 1e-3f;
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_OK(onnx_export(&g, NULL, NULL, &buf, &len));
    CHECK_OK(load_graph(buf, len, "resnet18", &g2));
    int w2 = graph_find_value(&g2, g.values[w].name);
    CHECK(w2 >= 0);
    if (w2 >= 0)
        CHECK(memcmp(g2.values[w2].t.data, d, sizeof *d * (size_t)n) == 0);

    /* ...and the file written to disk runs with them: its output differs
     * from the original model's. */
    char path[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/legodnn_export_test_%ld.onnx", tmp && tmp[0] ? tmp : "/tmp",
             (long)getpid());
    CHECK_OK(onnx_export_file(&g, path, NULL, NULL));
    lego_model *a = NULL, *b = NULL;
    CHECK_OK(lego_model_load("data/models/resnet18.onnx", &a));
    CHECK_OK(lego_model_load(path, &b));
    remove(path);
    if (a && b) {
        const lego_tensor *x = lego_model_input(a, 0);
        lego_tensor in = *x;
        in.data = calloc((size_t)lego_tensor_numel(x), sizeof(float));
        for (int64_t i = 0; in.data && i < lego_tensor_numel(x); i++)
            ((float *)in.data)[i] = (float)(i % 7) * 0.25f - 0.5f;
        const lego_tensor *ins[1] = {&in};
        lego_tensor *oa = NULL, *ob = NULL;
        CHECK_OK(lego_model_run(a, ins, &oa));
        CHECK_OK(lego_model_run(b, ins, &ob));
        CHECK(oa && ob && memcmp(oa->data, ob->data, lego_tensor_bytes(oa)) != 0);
        lego_tensor_free(oa);
        lego_tensor_free(ob);
        free(in.data);
    }
    lego_model_free(a);
    lego_model_free(b);
    free(buf);
    graph_free(&g2);
    graph_free(&g);
}

/* A graph made in code, with no declared input shape: the export takes
 * the current one. x (2x3) * w (3) -> LeakyRelu(alpha 0.25) -> y. */
static void test_built_in_code(void)
{
    lego_graph g, g2;
    CHECK_OK(graph_init(&g, "handmade"));
    g.opset = 13;
    int x, w, t, y, node;
    CHECK_OK(graph_add_value(&g, "x", VALUE_INPUT, &x));
    CHECK_OK(graph_add_value(&g, "w", VALUE_INITIALIZER, &w));
    CHECK_OK(graph_add_value(&g, "t", VALUE_ACTIVATION, &t));
    CHECK_OK(graph_add_value(&g, "y", VALUE_ACTIVATION, &y));
    int64_t xd[2] = {2, 3}, wd[1] = {3};
    tensor_set_shape(&g.values[x].t, LEGO_F32, 2, xd);
    tensor_set_shape(&g.values[w].t, LEGO_F32, 1, wd);
    CHECK_OK(tensor_alloc(&g.values[w].t));
    float wv[3] = {1.0f, -2.0f, 0.5f};
    memcpy(g.values[w].t.data, wv, sizeof wv);
    g.inputs = malloc(sizeof *g.inputs);
    g.outputs = malloc(sizeof *g.outputs);
    g.inputs[0] = x, g.n_inputs = 1;
    g.outputs[0] = y, g.n_outputs = 1;
    attr_list none = {0, NULL}, alpha = {1, calloc(1, sizeof(lego_attr))};
    alpha.a[0].name = malloc(6);
    memcpy(alpha.a[0].name, "alpha", 6);
    alpha.a[0].type = ATTR_FLOAT;
    alpha.a[0].f = 0.25f;
    int mul_in[2] = {x, w};
    CHECK_OK(graph_add_node(&g, "", "Mul", mul_in, 2, &t, 1, &none, &node));
    CHECK_OK(graph_add_node(&g, "act", "LeakyRelu", &t, 1, &y, 1, &alpha, &node));
    CHECK_OK(graph_infer(&g));
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_OK(onnx_export(&g, NULL, NULL, &buf, &len));
    CHECK_OK(load_graph(buf, len, "handmade", &g2));
    const gvalue *x2 = &g2.values[g2.inputs[0]];
    CHECK(x2->declared_rank == 2 && x2->declared[0] == 2 && x2->declared[1] == 3);
    CHECK(g2.n_nodes == 2 && strcmp(g2.nodes[1].name, "act") == 0);
    lego_model *m = NULL;
    CHECK_OK(lego_model_load_memory(buf, len, "handmade", &m));
    if (m) {
        float xv[6] = {1, 1, 1, -1, -1, -1}, want[6] = {1, -0.5f, 0.5f, -0.25f, 2, -0.125f};
        lego_tensor in = *lego_model_input(m, 0);
        in.data = xv;
        const lego_tensor *ins[1] = {&in};
        lego_tensor *out = NULL;
        CHECK_OK(lego_model_run(m, ins, &out));
        CHECK(out && memcmp(out->data, want, sizeof want) == 0);
        lego_tensor_free(out);
    }
    lego_model_free(m);
    free(buf);
    graph_free(&g2);
    graph_free(&g);
}

static void test_errors(void)
{
    lego_graph g;
    CHECK_OK(load_graph_file("data/ops/conv_3x3_o11.onnx", "conv", &g));
    const char *path = "data/no_such_dir/out.onnx";
    CHECK_FAILS(onnx_export_file(&g, path, NULL, NULL), LEGO_ERR_IO, "no_such_dir");
    CHECK(access(path, F_OK) != 0 && access("data/no_such_dir", F_OK) != 0);

    /* An attribute the importer keeps by name only (a graph) cannot be written. */
    unsigned char *buf = NULL;
    size_t len = 0;
    gnode *conv = NULL;
    for (int k = 0; k < g.n_nodes; k++)
        if (strcmp(g.nodes[k].op_type, "Conv") == 0 && g.nodes[k].attrs.n)
            conv = &g.nodes[k];
    CHECK(conv != NULL);
    if (conv) {
        attr_type saved = conv->attrs.a[0].type;
        conv->attrs.a[0].type = (attr_type)5;
        CHECK_FAILS(onnx_export(&g, NULL, NULL, &buf, &len), LEGO_ERR_UNSUPPORTED, "cannot be exported");
        CHECK(buf == NULL);
        conv->attrs.a[0].type = saved;
    }
    graph_free(&g);

    /* Outputs need inferred types. */
    unsigned char *file;
    size_t file_len;
    CHECK_OK(file_read_all("data/ops/relu_o11.onnx", &file, &file_len));
    CHECK_OK(onnx_import(file, file_len, "relu", &g));
    CHECK_FAILS(onnx_export(&g, NULL, NULL, &buf, &len), LEGO_ERR_ARG, "inferred");
    graph_free(&g);
    free(file);
}

int main(void)
{
    int models = round_trip_dir("data/models");
    CHECK(models >= 19);
    int ops = round_trip_dir("data/ops");
    CHECK(ops >= 150);
    test_dynamic_batch();
    test_metadata();
    test_changed_weights();
    test_built_in_code();
    test_errors();
    printf("round trips: %d models, %d op graphs\n", models, ops);
    return harness_finish();
}
