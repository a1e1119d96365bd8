/* test_onnx_import.c - the importer, shape inference, constant folding and
 * the executor on models built here through protobuf-c, and every kind of
 * bad input we promise a clear error for. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/tensor.h"
#include "harness.h"
#include "onnx/onnx.pb-c.h"
#include "onnx/onnx_import.h"
#include "ops/conv_dnnl.h"

/* ---- a tiny model builder (owns everything through a free list) ---- */

typedef struct builder {
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1];
    Onnx__NodeProto *nodes[16];
    Onnx__TensorProto *inits[16];
    Onnx__ValueInfoProto *inputs[4], *outputs[4];
    void *allocs[256];
    int n_allocs;
} builder;

static void *keep(builder *b, void *p)
{
    b->allocs[b->n_allocs++] = p;
    return p;
}

static void builder_init(builder *b, int opset)
{
    memset(b, 0, sizeof *b);
    onnx__model_proto__init(&b->model);
    onnx__graph_proto__init(&b->graph);
    onnx__operator_set_id_proto__init(&b->opset);
    b->opset.domain = "";
    b->opset.has_version = 1;
    b->opset.version = opset;
    b->opsets[0] = &b->opset;
    b->model.n_opset_import = 1;
    b->model.opset_import = b->opsets;
    b->model.has_ir_version = 1;
    b->model.ir_version = 8;
    b->model.producer_name = "test";
    b->model.graph = &b->graph;
    b->graph.name = "g";
    b->graph.node = b->nodes;
    b->graph.initializer = b->inits;
    b->graph.input = b->inputs;
    b->graph.output = b->outputs;
}

static void builder_free(builder *b)
{
    for (int i = 0; i < b->n_allocs; i++)
        free(b->allocs[i]);
}

static Onnx__ValueInfoProto *value_info(builder *b, const char *name, int rank, const int64_t *dims)
{
    Onnx__ValueInfoProto *vi = keep(b, calloc(1, sizeof *vi));
    Onnx__TypeProto *tp = keep(b, calloc(1, sizeof *tp));
    Onnx__TypeProto__Tensor *tt = keep(b, calloc(1, sizeof *tt));
    Onnx__TensorShapeProto *sp = keep(b, calloc(1, sizeof *sp));
    Onnx__TensorShapeProto__Dimension **dp = keep(b, calloc((size_t)rank + 1, sizeof *dp));
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sp);
    for (int i = 0; i < rank; i++) {
        dp[i] = keep(b, calloc(1, sizeof **dp));
        onnx__tensor_shape_proto__dimension__init(dp[i]);
        if (dims[i] >= 0) {
            dp[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dp[i]->dim_value = dims[i];
        } else {
            dp[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dp[i]->dim_param = "N";
        }
    }
    sp->n_dim = (size_t)rank;
    sp->dim = dp;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = (char *)name;
    vi->type = tp;
    return vi;
}

static void add_input(builder *b, const char *name, int rank, const int64_t *dims)
{
    b->inputs[b->graph.n_input++] = value_info(b, name, rank, dims);
}

static void add_output(builder *b, const char *name)
{
    b->outputs[b->graph.n_output++] = value_info(b, name, 0, NULL);
}

/* A float initializer with values 0.1*(i%7) - 0.3, in raw_data. */
static Onnx__TensorProto *add_float_init(builder *b, const char *name, int rank, const int64_t *dims)
{
    Onnx__TensorProto *t = keep(b, calloc(1, sizeof *t));
    onnx__tensor_proto__init(t);
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    float *v = keep(b, calloc((size_t)n + 1, sizeof *v));
    for (int64_t i = 0; i < n; i++)
        v[i] = 0.1f * (float)(i % 7) - 0.3f;
    t->name = (char *)name;
    t->n_dims = (size_t)rank;
    t->dims = (int64_t *)dims;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * 4;
    t->raw_data.data = (uint8_t *)v;
    b->inits[b->graph.n_initializer++] = t;
    return t;
}

/* An int64 initializer; n < 0 makes a scalar holding one value. */
static Onnx__TensorProto *add_int_init(builder *b, const char *name, int64_t n, const int64_t *vals)
{
    Onnx__TensorProto *t = keep(b, calloc(1, sizeof *t));
    int64_t *dims = keep(b, calloc(1, sizeof *dims));
    onnx__tensor_proto__init(t);
    dims[0] = n;
    t->name = (char *)name;
    t->n_dims = n < 0 ? 0 : 1;
    if (n < 0)
        n = 1;
    t->dims = dims;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->n_int64_data = (size_t)n;
    t->int64_data = (int64_t *)vals;
    b->inits[b->graph.n_initializer++] = t;
    return t;
}

static Onnx__NodeProto *add_node(builder *b, const char *op, const char *name, int n_in,
                                 const char **ins, const char *out)
{
    Onnx__NodeProto *n = keep(b, calloc(1, sizeof *n));
    onnx__node_proto__init(n);
    n->op_type = (char *)op;
    n->name = (char *)name;
    n->n_input = (size_t)n_in;
    n->input = (char **)ins;
    n->n_output = 1;
    n->output = keep(b, calloc(1, sizeof(char *)));
    n->output[0] = (char *)out;
    b->nodes[b->graph.n_node++] = n;
    return n;
}

static void add_int_attr(builder *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = keep(b, calloc(1, sizeof *a));
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    Onnx__AttributeProto **list = keep(b, calloc(n->n_attribute + 1, sizeof *list));
    for (size_t i = 0; i < n->n_attribute; i++)
        list[i] = n->attribute[i];
    list[n->n_attribute++] = a;
    n->attribute = list;
}

static lego_status load(builder *b, lego_model **m, size_t truncate_to)
{
    size_t len = onnx__model_proto__get_packed_size(&b->model);
    uint8_t *buf = malloc(len + 1);
    onnx__model_proto__pack(&b->model, buf);
    lego_status st = lego_model_load_memory(buf, truncate_to ? truncate_to : len, "test.onnx", m);
    free(buf);
    return st;
}

/* x (1,2,4,4) -> Conv(w 3x2x3x3) -> Relu -> y (1,3,2,2) */
static const int64_t x_dims[4] = {1, 2, 4, 4}, w_dims[4] = {3, 2, 3, 3};
static const char *conv_in[] = {"x", "w"}, *relu_in[] = {"c"};

static void conv_relu(builder *b, int opset)
{
    builder_init(b, opset);
    add_input(b, "x", 4, x_dims);
    add_float_init(b, "w", 4, w_dims);
    add_node(b, "Conv", "conv1", 2, conv_in, "c");
    add_node(b, "Relu", "relu1", 1, relu_in, "y");
    add_output(b, "y");
}

static void test_valid_model_runs(void)
{
    builder b;
    conv_relu(&b, 13);
    lego_model *m = NULL;
    CHECK_OK(load(&b, &m, 0));
    if (m) {
        const lego_tensor *y = lego_model_output(m, 0);
        CHECK(y->rank == 4 && y->dims[1] == 3 && y->dims[2] == 2 && y->dims[3] == 2);
        float xs[32];
        for (int i = 0; i < 32; i++)
            xs[i] = (float)i / 8.0f;
        lego_tensor x = *lego_model_input(m, 0);
        x.data = xs;
        const lego_tensor *ins[] = {&x};
        lego_tensor *outs[1] = {0};
        CHECK_OK(lego_model_run(m, ins, outs));
        if (outs[0]) {
            /* y[0,0,0,0] by hand: sum over c,i,j of x[c][i][j] * w[0][c][i][j] */
            const float *w = NULL;
            float expect = 0;
            float wv[18];
            for (int k = 0; k < 18; k++)
                wv[k] = 0.1f * (float)(k % 7) - 0.3f;
            w = wv;
            for (int c = 0; c < 2; c++)
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++)
                        expect += xs[c * 16 + i * 4 + j] * w[c * 9 + i * 3 + j];
            expect = expect > 0 ? expect : 0;
            float got = ((float *)outs[0]->data)[0];
            CHECK(got > expect - 1e-4f && got < expect + 1e-4f);
            lego_tensor_free(outs[0]);
        }
        /* wrong input shape at run time */
        lego_tensor bad = x;
        bad.dims[2] = 5;
        const lego_tensor *bad_ins[] = {&bad};
        CHECK_FAILS(lego_model_run(m, bad_ins, outs), LEGO_ERR_SHAPE, "the model expects float32 1x2x4x4");
        lego_model_stats s;
        CHECK_OK(lego_model_stats_get(m, &s));
        CHECK(s.params == 54 && s.param_bytes == 216);
        CHECK(s.flops >= 2 * 3 * 2 * 2 * 18);
        CHECK(s.num_nodes == 2 && s.opset == 13);
    }
    lego_model_free(m);
    builder_free(&b);
}

static void test_truncated_and_garbage(void)
{
    builder b;
    conv_relu(&b, 13);
    lego_model *m = NULL;
    size_t len = onnx__model_proto__get_packed_size(&b.model);
    for (size_t cut = 1; cut < len; cut += len / 17 + 1) {
        lego_status st = load(&b, &m, cut);
        CHECK(st.code != LEGO_OK && m == NULL);
        lego_status_free(&st);
    }
    const char garbage[] = "this is not an onnx file at all, just text\n";
    CHECK_FAILS(lego_model_load_memory(garbage, sizeof garbage, "junk.onnx", &m), LEGO_ERR_FORMAT,
                "junk.onnx");
    CHECK_FAILS(lego_model_load_memory(garbage, 0, "empty.onnx", &m), LEGO_ERR_FORMAT, "empty");
    CHECK_FAILS(lego_model_load("/nonexistent/model.onnx", &m), LEGO_ERR_IO, "/nonexistent/model.onnx");
    builder_free(&b);
}

static void test_unsupported_op_and_opset(void)
{
    builder b;
    conv_relu(&b, 13);
    b.nodes[1]->op_type = "FancyAttention";
    lego_model *m = NULL;
    CHECK_FAILS(load(&b, &m, 0), LEGO_ERR_UNSUPPORTED, "FancyAttention (node 'relu1')");
    lego_status st = load(&b, &m, 0);
    CHECK(strstr(lego_status_msg(st), "opset 13") != NULL);
    lego_status_free(&st);
    builder_free(&b);

    conv_relu(&b, 30);
    CHECK_FAILS(load(&b, &m, 0), LEGO_ERR_UNSUPPORTED, "opset 30");
    builder_free(&b);

    conv_relu(&b, 13);
    b.nodes[0]->domain = "com.microsoft";
    CHECK_FAILS(load(&b, &m, 0), LEGO_ERR_UNSUPPORTED, "com.microsoft");
    builder_free(&b);
}

static void test_missing_and_inconsistent(void)
{
    builder b;
    lego_model *m = NULL;
    conv_relu(&b, 13);
    b.graph.n_initializer = 0; /* the weight disappears */
    CHECK_FAILS(load(&b, &m, 0), LEGO_ERR_FORMAT, "reads 'w', which no node, initializer or graph input defines");
    builder_free(&b);

    static const int64_t w_bad[4] = {3, 5, 3, 3};
    builder_init(&b, 13);
    add_input(&b, "x", 4, x_dims);
    add_float_init(&b, "w", 4, w_bad);
    add_node(&b, "Conv", "conv1", 2, conv_in, "y");
    add_output(&b, "y");
    CHECK_FAILS(load(&b, &m, 0), LEGO_ERR_SHAPE, "node 'conv1' (Conv)");
    builder_free(&b);

    conv_relu(&b, 13);
    b.inits[0]->raw_data.len -= 4; /* one float short */
    CHECK_FAILS(load(&b, &m, 0), LEGO_ERR_FORMAT, "tensor 'w' holds 212 bytes, but its shape needs 216");
    builder_free(&b);

    conv_relu(&b, 13);
    b.outputs[0]->name = "nowhere";
    CHECK_FAILS(load(&b, &m, 0), LEGO_ERR_FORMAT, "graph output 'nowhere'");
    builder_free(&b);

    /* a cycle: c = Relu(d), d = Relu(c) */
    static const char *in_c[] = {"c"}, *in_d[] = {"d"};
    builder_init(&b, 13);
    add_input(&b, "x", 4, x_dims);
    add_node(&b, "Relu", "a", 1, in_d, "c");
    add_node(&b, "Relu", "b", 1, in_c, "d");
    add_output(&b, "d");
    CHECK_FAILS(load(&b, &m, 0), LEGO_ERR_FORMAT, "cycle");
    builder_free(&b);

    /* an attribute of the wrong type */
    conv_relu(&b, 13);
    Onnx__AttributeProto *a = calloc(1, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = "strides";
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.data = (uint8_t *)"two";
    a->s.len = 3;
    Onnx__AttributeProto *list[1] = {a};
    b.nodes[0]->n_attribute = 1;
    b.nodes[0]->attribute = list;
    CHECK_FAILS(load(&b, &m, 0), LEGO_ERR_FORMAT, "strides");
    free(a);
    builder_free(&b);
}

/* x (N,2,4,4) -> Flatten the PyTorch way: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) */
static void test_shape_folding_follows_batch(void)
{
    static const int64_t dyn[4] = {-1, 2, 4, 4};
    static const int64_t zero[1] = {0}, minus1[1] = {-1};
    static const char *shape_in[] = {"x"}, *gather_in[] = {"s", "zero"}, *unsq_in[] = {"n", "axes"},
                      *cat_in[] = {"n1", "minus1"}, *reshape_in[] = {"x", "shape"};
    builder b;
    builder_init(&b, 13);
    add_input(&b, "x", 4, dyn);
    add_int_init(&b, "zero", -1, zero); /* a scalar index, as PyTorch exports */
    add_int_init(&b, "axes", 1, zero);
    add_int_init(&b, "minus1", 1, minus1);
    add_node(&b, "Shape", "shape", 1, shape_in, "s");
    Onnx__NodeProto *g = add_node(&b, "Gather", "gather", 2, gather_in, "n");
    add_int_attr(&b, g, "axis", 0);
    add_node(&b, "Unsqueeze", "unsq", 2, unsq_in, "n1");
    Onnx__NodeProto *c = add_node(&b, "Concat", "cat", 2, cat_in, "shape");
    add_int_attr(&b, c, "axis", 0);
    add_node(&b, "Reshape", "reshape", 2, reshape_in, "y");
    add_output(&b, "y");
    lego_model *m = NULL;
    CHECK_OK(load(&b, &m, 0));
    if (m) {
        const lego_tensor *y = lego_model_output(m, 0);
        CHECK(y->rank == 2 && y->dims[0] == 1 && y->dims[1] == 32);
        lego_model_stats s;
        CHECK_OK(lego_model_stats_get(m, &s));
        CHECK(s.num_folded == 4 && s.num_nodes == 1);
        int64_t three[4] = {3, 2, 4, 4};
        CHECK_OK(lego_model_set_input_shape(m, 0, 4, three));
        y = lego_model_output(m, 0);
        CHECK(y->dims[0] == 3 && y->dims[1] == 32);
        float xs[96];
        for (int i = 0; i < 96; i++)
            xs[i] = (float)i;
        lego_tensor x = *lego_model_input(m, 0);
        x.data = xs;
        const lego_tensor *ins[] = {&x};
        lego_tensor *outs[1] = {0};
        CHECK_OK(lego_model_run(m, ins, outs));
        if (outs[0]) {
            CHECK(((float *)outs[0]->data)[95] == 95.0f);
            lego_tensor_free(outs[0]);
        }
        int64_t bad[4] = {3, 7, 4, 4};
        CHECK_FAILS(lego_model_set_input_shape(m, 0, 4, bad), LEGO_ERR_SHAPE, "fixed at 2");
        CHECK(lego_model_output(m, 0)->dims[0] == 3); /* still usable at the old shape */
    }
    lego_model_free(m);
    builder_free(&b);
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && sscanf(line + n, ": %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* The resident size, with the peak (VmHWM) reset to it: writing 5 to
 * clear_refs does that. -1 when it cannot. */
static long reset_peak(void)
{
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    bool reset = cr && fputs("5", cr) >= 0;
    if (cr)
        reset = fclose(cr) == 0 && reset;
    return reset ? status_kb("VmRSS") : -1;
}

/* b's model written to a fresh file named from path's XXXXXX template. */
static void write_model(builder *b, char *path)
{
    int fd = mkstemp(path);
    size_t len = onnx__model_proto__get_packed_size(&b->model);
    uint8_t *buf = malloc(len);
    onnx__model_proto__pack(&b->model, buf);
    CHECK(fd >= 0 && write(fd, buf, len) == (ssize_t)len);
    if (fd >= 0)
        close(fd);
    free(buf);
}

/* Loading holds at most two copies of the weights (the file is freed once
 * parsed, before the tensors are made from the parsed message: three copies
 * before), through onnx_load_file and lego_model_load, and they come out
 * bit for bit. */
static void test_large_weights_load_once(void)
{
    static const int64_t big[4] = {512, 256, 3, 3};
#ifdef __GLIBC__
    /* a fixed threshold: large blocks are mapped and unmapped, never kept in
     * the heap, whose reused pages would hide a second load's growth */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    builder b;
    builder_init(&b, 13);
    add_input(&b, "x", 4, x_dims);
    add_float_init(&b, "w", 4, big);
    static const char *id_in[] = {"x"};
    add_node(&b, "Identity", "id", 1, id_in, "y");
    add_output(&b, "y");
    char path[] = "/tmp/lego_import_XXXXXX";
    write_model(&b, path);
    long rss0 = reset_peak();
    long weights = 512 * 256 * 9 * (long)sizeof(float);
    (void)weights; /* the peak checks are off under ASan */
    lego_graph g;
    CHECK_OK(onnx_load_file(path, &g));
    long grew = status_kb("VmHWM") - rss0;
#ifndef __SANITIZE_ADDRESS__ /* its allocator keeps freed memory (quarantine) and shadows it */
    if (rss0 > 0)
        CHECK(grew * 1024 < weights * 5 / 2); /* two copies, with room for the rest */
#endif
    (void)grew;
    int w = graph_find_value(&g, "w");
    CHECK(w >= 0);
    if (w >= 0) {
        const float *v = g.values[w].t.data;
        bool same = lego_tensor_numel(&g.values[w].t) == 512 * 256 * 9;
        for (int64_t i = 0; same && i < 512 * 256 * 9; i++)
            same = v[i] == 0.1f * (float)(i % 7) - 0.3f;
        CHECK(same);
    }
    graph_free(&g);
    /* the public loader the same way */
    rss0 = reset_peak();
    lego_model *m = NULL;
    CHECK_OK(lego_model_load(path, &m));
    grew = status_kb("VmHWM") - rss0;
#ifndef __SANITIZE_ADDRESS__
    if (rss0 > 0)
        CHECK(grew * 1024 < weights * 5 / 2);
#endif
    lego_model_free(m);
    unlink(path);
    builder_free(&b);
}

/* A model loaded from a file holds its Conv weights once (the kernels'
 * packed copies serve; the graph's are freed), reads them again from the
 * file for a new input shape, and refuses to when the file changed, staying
 * runnable at its old shape. */
static void test_weights_held_once(void)
{
    static const int64_t x_any[4] = {-1, 256, 8, 8}, w1x1[4] = {512, 256, 1, 1};
    static const char *in[] = {"x", "w"};
    builder b;
    builder_init(&b, 13);
    add_input(&b, "x", 4, x_any);
    add_float_init(&b, "w", 4, w1x1);
    add_node(&b, "Conv", "conv", 2, in, "y");
    add_output(&b, "y");
    char path[] = "/tmp/lego_import_XXXXXX";
    write_model(&b, path);
    float *xs = malloc(sizeof *xs * 3 * 256 * 64);
    for (int i = 0; i < 3 * 256 * 64; i++)
        xs[i] = (float)(i % 11) * 0.25f - 1.0f;
    lego_tensor *y1[1] = {0}, *y3[1] = {0}, *y3b[1] = {0};
    int64_t one[4] = {1, 256, 8, 8}, three[4] = {3, 256, 8, 8}, two[4] = {2, 256, 8, 8};
    lego_model *m = NULL;
    CHECK_OK(lego_model_load(path, &m));
    if (m) {
        CHECK_OK(lego_model_set_input_shape(m, 0, 4, one));
        lego_model_stats s;
        CHECK_OK(lego_model_stats_get(m, &s));
        int64_t before = s.held_weight_bytes, weights = s.param_bytes;
        CHECK(weights == 512 * 256 * 4);
        /* oneDNN's copy beside the graph's until the first run */
        CHECK(before >= weights && (!dnnl_conv_enabled() || before >= 2 * weights));
        lego_tensor x = *lego_model_input(m, 0);
        x.data = xs;
        const lego_tensor *ins[] = {&x};
        CHECK_OK(lego_model_run(m, ins, y1));
        CHECK_OK(lego_model_stats_get(m, &s));
        CHECK(s.held_weight_bytes >= weights && s.held_weight_bytes < weights * 3 / 2);
        /* a new shape: the weights read again, the same results */
        CHECK_OK(lego_model_set_input_shape(m, 0, 4, three));
        x = *lego_model_input(m, 0);
        x.data = xs;
        CHECK_OK(lego_model_run(m, ins, y3));
        CHECK(y1[0] && y3[0] && memcmp(y1[0]->data, y3[0]->data, lego_tensor_bytes(y1[0])) == 0);
        CHECK_OK(lego_model_stats_get(m, &s));
        CHECK(s.held_weight_bytes < weights * 3 / 2);
        /* the file rewritten (same bytes, a new modification time) */
        struct timespec t[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
        CHECK(utimensat(AT_FDCWD, path, t, 0) == 0);
        if (dnnl_conv_enabled()) { /* the weights were freed: reading them again fails */
            CHECK_FAILS(lego_model_set_input_shape(m, 0, 4, two), LEGO_ERR_IO,
                        "changed since the model was loaded");
            CHECK(lego_model_input(m, 0)->dims[0] == 3 && lego_model_output(m, 0)->dims[0] == 3);
            CHECK_OK(lego_model_run(m, ins, y3b));
            CHECK(y3b[0] && memcmp(y3[0]->data, y3b[0]->data, lego_tensor_bytes(y3[0])) == 0);
        } else { /* no kernel here copied them: still held, the file not needed */
            CHECK_OK(lego_model_set_input_shape(m, 0, 4, two));
            CHECK(lego_model_input(m, 0)->dims[0] == 2);
        }
    }
    lego_tensor_free(y1[0]), lego_tensor_free(y3[0]), lego_tensor_free(y3b[0]);
    free(xs);
    lego_model_free(m);
    unlink(path);
    builder_free(&b);
}

int main(void)
{
    test_valid_model_runs();
    test_truncated_and_garbage();
    test_unsupported_op_and_opset();
    test_missing_and_inconsistent();
    test_shape_folding_follows_batch();
    test_large_weights_load_once();
    test_weights_held_once();
    return harness_finish();
}
