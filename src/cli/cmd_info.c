/* cmd_info.c - `legodnn info MODEL.onnx [--json]`: what a model holds. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char info_usage[] = "legodnn info MODEL.onnx [--json]";

static cJSON *tensor_json(const char *name, const lego_tensor *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "dtype", t->dtype == LEGO_F32 ? "float32" : t->dtype == LEGO_I64 ? "int64" : "bool");
    cJSON *dims = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < t->rank; d++)
        cJSON_AddItemToArray(dims, cJSON_CreateNumber((double)t->dims[d]));
    return o;
}

static int print_json(const char *path, lego_model *m, const lego_model_stats *s)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", path);
    cJSON_AddStringToObject(root, "producer", s->producer);
    cJSON_AddNumberToObject(root, "opset", s->opset);
    cJSON *ins = cJSON_AddArrayToObject(root, "inputs");
    for (int i = 0; i < lego_model_num_inputs(m); i++)
        cJSON_AddItemToArray(ins, tensor_json(lego_model_input_name(m, i), lego_model_input(m, i)));
    cJSON *outs = cJSON_AddArrayToObject(root, "outputs");
    for (int i = 0; i < lego_model_num_outputs(m); i++)
        cJSON_AddItemToArray(outs, tensor_json(lego_model_output_name(m, i), lego_model_output(m, i)));
    cJSON_AddNumberToObject(root, "params", (double)s->params);
    cJSON_AddNumberToObject(root, "param_bytes", (double)s->param_bytes);
    cJSON_AddNumberToObject(root, "flops", (double)s->flops);
    cJSON_AddNumberToObject(root, "nodes", s->num_nodes);
    cJSON_AddNumberToObject(root, "folded_nodes", s->num_folded);
    cJSON *ops = cJSON_AddArrayToObject(root, "ops");
    for (int i = 0; i < s->num_op_types; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op_type", s->op_types[i].op_type);
        cJSON_AddNumberToObject(o, "count", s->op_types[i].count);
        cJSON_AddNumberToObject(o, "flops", (double)s->op_types[i].flops);
        cJSON_AddItemToArray(ops, o);
    }
    return cli_print_json(root);
}

static int by_flops_desc(const void *a, const void *b)
{
    const lego_op_count *x = a, *y = b;
    if (x->flops != y->flops)
        return x->flops < y->flops ? 1 : -1;
    return y->count - x->count;
}

static void print_table(const char *path, lego_model *m, const lego_model_stats *s)
{
    char a[32], b[32], sh[128];
    printf("model     %s (%s%sopset %d)\n", path, s->producer, s->producer[0] ? ", " : "", s->opset);
    for (int i = 0; i < lego_model_num_inputs(m); i++)
        printf("%-9s %s  float32 %s\n", i ? "" : "inputs", lego_model_input_name(m, i),
               cli_shape(lego_model_input(m, i), sh));
    for (int i = 0; i < lego_model_num_outputs(m); i++)
        printf("%-9s %s  float32 %s\n", i ? "" : "outputs", lego_model_output_name(m, i),
               cli_shape(lego_model_output(m, i), sh));
    printf("params    %s (%s of weights)\n", cli_count((double)s->params, a),
           cli_bytes((double)s->param_bytes, b));
    printf("FLOPs     %s per forward pass\n", cli_count((double)s->flops, a));
    printf("nodes     %d to run, %d folded into constants at load\n\n", s->num_nodes, s->num_folded);

    lego_op_count *ops = malloc(sizeof *ops * (size_t)(s->num_op_types + 1));
    if (!ops)
        return;
    memcpy(ops, s->op_types, sizeof *ops * (size_t)s->num_op_types);
    qsort(ops, (size_t)s->num_op_types, sizeof *ops, by_flops_desc);
    printf("%-22s %6s %10s %7s\n", "op", "count", "FLOPs", "share");
    for (int i = 0; i < s->num_op_types; i++) {
        double share = s->flops ? 100.0 * (double)ops[i].flops / (double)s->flops : 0;
        printf("%-22s %6d %10s %6.1f%%\n", ops[i].op_type, ops[i].count,
               cli_count((double)ops[i].flops, a), share);
    }
    free(ops);
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (cli_operand(info_usage, argv[i], &path, "model") != EXIT_OK)
            return EXIT_USAGE;
    }
    if (!path)
        return cli_usage_error(info_usage, "no model given");
    lego_model *m;
    lego_status st = lego_model_load(path, &m);
    if (st.code)
        return cli_fail(st);
    lego_model_stats s;
    st = lego_model_stats_get(m, &s);
    if (st.code) {
        lego_model_free(m);
        return cli_fail(st);
    }
    int rc = EXIT_OK;
    if (json)
        rc = print_json(path, m, &s);
    else
        print_table(path, m, &s);
    lego_model_free(m);
    return rc;
}
