/* zoo.c - the built-in CIFAR ResNet18, built node by node. */
#include "zoo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

typedef struct builder {
    lego_graph *g;
    rng r;
} builder;

static lego_status new_param(builder *b, const char *name, int rank, const int64_t *dims, int *idx)
{
    LEGO_TRY(graph_add_value(b->g, name, VALUE_INITIALIZER, idx));
    lego_tensor *t = &b->g->values[*idx].t;
    tensor_set_shape(t, LEGO_F32, rank, dims);
    return tensor_alloc(t);
}

static lego_status node(builder *b, const char *name, const char *op, const int *in, int n_in,
                        attr_list *attrs, int *out)
{
    char vname[160];
    snprintf(vname, sizeof vname, "%s_out", name);
    int ins[8], y;
    memcpy(ins, in, sizeof *in * (size_t)n_in); /* out may alias in */
    LEGO_TRY(graph_add_value(b->g, vname, VALUE_ACTIVATION, &y));
    attr_list none = {0};
    int idx;
    LEGO_TRY(graph_add_node(b->g, name, op, ins, n_in, &y, 1, attrs ? attrs : &none, &idx));
    *out = y;
    return lego_ok();
}

static lego_status conv(builder *b, const char *name, int x, int cin, int cout, int k, int stride,
                        int *out)
{
    char wname[160];
    snprintf(wname, sizeof wname, "%s.weight", name);
    int64_t dims[4] = {cout, cin, k, k};
    int w;
    LEGO_TRY(new_param(b, wname, 4, dims, &w));
    float *wd = b->g->values[w].t.data;
    /* kaiming_normal_(mode='fan_out', nonlinearity='relu'), as torchvision does */
    float std = sqrtf(2.0f / (float)(cout * k * k));
    for (int64_t i = 0; i < (int64_t)cout * cin * k * k; i++)
        wd[i] = std * rng_normal(&b->r);
    attr_list a = {0};
    int64_t kk[2] = {k, k}, ss[2] = {stride, stride}, pp[4] = {k / 2, k / 2, k / 2, k / 2};
    lego_status st = attr_add_ints(&a, "kernel_shape", kk, 2);
    if (!st.code)
        st = attr_add_ints(&a, "strides", ss, 2);
    if (!st.code)
        st = attr_add_ints(&a, "pads", pp, 4);
    if (st.code) {
        attr_list_free(&a);
        return st;
    }
    int in[2] = {x, w};
    return node(b, name, "Conv", in, 2, &a, out);
}

static lego_status batchnorm(builder *b, const char *name, int x, int c, int *out)
{
    static const char *suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    static const float fill[4] = {1, 0, 0, 1};
    int in[5] = {x};
    int64_t dims[1] = {c};
    for (int i = 0; i < 4; i++) {
        char pname[160];
        snprintf(pname, sizeof pname, "%s.%s", name, suffix[i]);
        LEGO_TRY(new_param(b, pname, 1, dims, &in[i + 1]));
        float *d = b->g->values[in[i + 1]].t.data;
        for (int j = 0; j < c; j++)
            d[j] = fill[i];
    }
    attr_list a = {0};
    lego_status st = attr_add_float(&a, "epsilon", 1e-5f);
    /* ONNX momentum weighs the old running value: PyTorch's 0.1 is 0.9 here */
    if (!st.code)
        st = attr_add_float(&a, "momentum", 0.9f);
    if (st.code) {
        attr_list_free(&a);
        return st;
    }
    return node(b, name, "BatchNormalization", in, 5, &a, out);
}

static lego_status relu(builder *b, const char *name, int x, int *out)
{
    return node(b, name, "Relu", &x, 1, NULL, out);
}

/* conv-bn-relu-conv-bn (+ shortcut) -relu, named like PyTorch's BasicBlock */
static lego_status basic_block(builder *b, const char *prefix, int x, int cin, int cout, int stride,
                               int *out)
{
    char n[160];
    int t, s;
    snprintf(n, sizeof n, "%s.conv1", prefix);
    LEGO_TRY(conv(b, n, x, cin, cout, 3, stride, &t));
    snprintf(n, sizeof n, "%s.bn1", prefix);
    LEGO_TRY(batchnorm(b, n, t, cout, &t));
    snprintf(n, sizeof n, "%s.relu1", prefix);
    LEGO_TRY(relu(b, n, t, &t));
    snprintf(n, sizeof n, "%s.conv2", prefix);
    LEGO_TRY(conv(b, n, t, cout, cout, 3, 1, &t));
    snprintf(n, sizeof n, "%s.bn2", prefix);
    LEGO_TRY(batchnorm(b, n, t, cout, &t));
    s = x;
    if (stride != 1 || cin != cout) {
        snprintf(n, sizeof n, "%s.shortcut.0", prefix);
        LEGO_TRY(conv(b, n, x, cin, cout, 1, stride, &s));
        snprintf(n, sizeof n, "%s.shortcut.1", prefix);
        LEGO_TRY(batchnorm(b, n, s, cout, &s));
    }
    int sum_in[2] = {t, s};
    snprintf(n, sizeof n, "%s.add", prefix);
    LEGO_TRY(node(b, n, "Add", sum_in, 2, NULL, &t));
    snprintf(n, sizeof n, "%s.relu2", prefix);
    return relu(b, n, t, out);
}

static lego_status linear(builder *b, const char *name, int x, int cin, int cout, int *out)
{
    char pname[160];
    int w, bias;
    int64_t wd[2] = {cout, cin}, bd[1] = {cout};
    snprintf(pname, sizeof pname, "%s.weight", name);
    LEGO_TRY(new_param(b, pname, 2, wd, &w));
    snprintf(pname, sizeof pname, "%s.bias", name);
    LEGO_TRY(new_param(b, pname, 1, bd, &bias));
    /* nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both */
    float bound = 1.0f / sqrtf((float)cin);
    float *wp = b->g->values[w].t.data, *bp = b->g->values[bias].t.data;
    for (int i = 0; i < cout * cin; i++)
        wp[i] = bound * (2 * rng_uniform(&b->r) - 1);
    for (int i = 0; i < cout; i++)
        bp[i] = bound * (2 * rng_uniform(&b->r) - 1);
    attr_list a = {0};
    lego_status st = attr_add_int(&a, "transB", 1);
    if (st.code) {
        attr_list_free(&a);
        return st;
    }
    int in[3] = {x, w, bias};
    return node(b, name, "Gemm", in, 3, &a, out);
}

static lego_status build(builder *b, int width, int num_classes, int in_c, int in_h, int in_w)
{
    lego_graph *g = b->g;
    g->opset = 13;
    int x;
    LEGO_TRY(graph_add_value(g, "input", VALUE_INPUT, &x));
    gvalue *xv = &g->values[x];
    int64_t dims[4] = {1, in_c, in_h, in_w};
    tensor_set_shape(&xv->t, LEGO_F32, 4, dims);
    xv->declared_rank = 4;
    xv->declared[0] = -1; /* a dynamic batch axis */
    for (int i = 1; i < 4; i++)
        xv->declared[i] = dims[i];
    g->inputs = malloc(sizeof *g->inputs);
    if (!g->inputs)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    g->inputs[g->n_inputs++] = x;

    int t;
    LEGO_TRY(conv(b, "conv1", x, in_c, width, 3, 1, &t));
    LEGO_TRY(batchnorm(b, "bn1", t, width, &t));
    LEGO_TRY(relu(b, "relu1", t, &t));
    int cin = width;
    for (int stage = 0; stage < 4; stage++) {
        int cout = width << stage;
        for (int blk = 0; blk < 2; blk++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "layer%d.%d", stage + 1, blk);
            LEGO_TRY(basic_block(b, prefix, t, cin, cout, stage > 0 && blk == 0 ? 2 : 1, &t));
            cin = cout;
        }
    }
    LEGO_TRY(node(b, "avgpool", "GlobalAveragePool", &t, 1, NULL, &t));
    LEGO_TRY(node(b, "flatten", "Flatten", &t, 1, NULL, &t));
    int out;
    LEGO_TRY(linear(b, "linear", t, cin, num_classes, &out));
    g->outputs = malloc(sizeof *g->outputs);
    if (!g->outputs)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    g->outputs[g->n_outputs++] = out;
    return graph_infer(g);
}

lego_status zoo_resnet18(int width, int num_classes, int in_c, int in_h, int in_w, uint64_t seed,
                         lego_graph *g)
{
    if (width < 1 || width > 512 || num_classes < 1 || in_c < 1 || in_h < 8 || in_w < 8)
        return lego_error(LEGO_ERR_ARG, "resnet18: width %d, %d classes, input %dx%dx%d is out of range",
                          width, num_classes, in_c, in_h, in_w);
    char name[64];
    snprintf(name, sizeof name, "resnet18:%d", width);
    LEGO_TRY(graph_init(g, name));
    builder b = {g, {{0}}};
    rng_seed(&b.r, seed);
    lego_status st = build(&b, width, num_classes, in_c, in_h, in_w);
    if (st.code)
        graph_free(g);
    return st;
}

int zoo_parse_resnet18(const char *name)
{
    if (strcmp(name, "resnet18") == 0)
        return 16;
    if (strncmp(name, "resnet18:", 9) != 0)
        return 0;
    char *end;
    long w = strtol(name + 9, &end, 10);
    return *end || w < 1 || w > 512 ? 0 : (int)w;
}
