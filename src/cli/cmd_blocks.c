/* cmd_blocks.c - `legodnn blocks MODEL.onnx [--max-ratio R] [--json]`: the
 * blocks that automatic detection finds (blocks/detect.h), their boundaries,
 * shapes, convolutions, parameters and FLOPs, and what stays outside. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/detect.h"
#include "cli.h"
#include "core/file.h"
#include "graph/graph.h"
#include "onnx/onnx_import.h"

static const char blocks_usage[] = "legodnn blocks MODEL.onnx [--max-ratio 0.125] [--json]";

static cJSON *shape_json(const lego_tensor *t)
{
    cJSON *a = cJSON_CreateArray();
    for (int d = 0; d < t->rank; d++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)t->dims[d]));
    return a;
}

static cJSON *names_json(const lego_graph *g, const int *nodes, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(blocks_node_name(g, nodes[i])));
    return a;
}

static int print_json(const char *path, const lego_graph *g, const block_set *s)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", path);
    cJSON_AddNumberToObject(root, "max_ratio", s->max_ratio);
    cJSON_AddNumberToObject(root, "convs", s->total_convs);
    cJSON_AddNumberToObject(root, "max_convs_per_block", s->max_convs);
    cJSON_AddNumberToObject(root, "candidates", s->n_candidates);
    cJSON_AddNumberToObject(root, "covered_convs", s->covered_convs);
    cJSON_AddNumberToObject(root, "params", (double)s->params);
    cJSON_AddNumberToObject(root, "param_bytes", (double)s->param_bytes);
    cJSON_AddNumberToObject(root, "flops", (double)s->flops);
    cJSON *blocks = cJSON_AddArrayToObject(root, "blocks");
    for (int i = 0; i < s->n_blocks; i++) {
        const block *b = &s->blocks[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", i);
        cJSON_AddStringToObject(o, "entry", g->values[b->entry].name);
        cJSON_AddStringToObject(o, "exit", g->values[b->exit].name);
        cJSON_AddItemToObject(o, "input_shape", shape_json(&g->values[b->entry].t));
        cJSON_AddItemToObject(o, "output_shape", shape_json(&g->values[b->exit].t));
        cJSON_AddItemToObject(o, "nodes", names_json(g, b->nodes, b->n_nodes));
        cJSON_AddItemToObject(o, "convs", names_json(g, b->convs, b->n_convs));
        cJSON_AddItemToObject(o, "prunable", names_json(g, b->prunable, b->n_prunable));
        cJSON_AddItemToObject(o, "kept", names_json(g, b->kept, b->n_kept));
        cJSON_AddNumberToObject(o, "params", (double)b->params);
        cJSON_AddNumberToObject(o, "param_bytes", (double)b->param_bytes);
        cJSON_AddNumberToObject(o, "flops", (double)b->flops);
        cJSON_AddItemToArray(blocks, o);
    }
    cJSON *out = cJSON_AddObjectToObject(root, "outside");
    cJSON_AddItemToObject(out, "nodes", names_json(g, s->outside, s->n_outside));
    cJSON_AddItemToObject(out, "convs", names_json(g, s->outside_convs, s->n_outside_convs));
    cJSON_AddNumberToObject(out, "params", (double)s->outside_params);
    cJSON_AddNumberToObject(out, "param_bytes", (double)s->outside_param_bytes);
    cJSON_AddNumberToObject(out, "flops", (double)s->outside_flops);
    return cli_print_json(root);
}

static double share(int64_t part, int64_t whole) { return whole ? 100.0 * (double)part / (double)whole : 0; }

static void print_table(const char *path, const lego_graph *g, const block_set *s)
{
    char a[32], b[32], in[128], out[128];
    int64_t block_params = s->params - s->outside_params, block_flops = s->flops - s->outside_flops;
    printf("model     %s\n", path);
    printf("convs     %d; a block holds 2 to %d of them (max ratio %g)\n", s->total_convs, s->max_convs,
           s->max_ratio);
    printf("blocks    %d, covering %d of %d convs, %.1f%% of params, %.1f%% of FLOPs\n\n", s->n_blocks,
           s->covered_convs, s->total_convs, share(block_params, s->params), share(block_flops, s->flops));
    printf("%3s  %-14s %-14s %5s %8s %8s %8s %6s  %s\n", "#", "input", "output", "convs", "prunable", "params",
           "FLOPs", "share", "entry -> exit");
    for (int i = 0; i < s->n_blocks; i++) {
        const block *bl = &s->blocks[i];
        printf("%3d  %-14s %-14s %5d %8d %8s %8s %5.1f%%  %s -> %s\n", i, cli_shape(&g->values[bl->entry].t, in),
               cli_shape(&g->values[bl->exit].t, out), bl->n_layers, bl->n_prunable,
               cli_count((double)bl->params, a), cli_count((double)bl->flops, b), share(bl->flops, s->flops),
               g->values[bl->entry].name, g->values[bl->exit].name);
    }
    printf("\noutside   %d node%s, %d conv%s, %s params, %s FLOPs (%.1f%%)\n", s->n_outside,
           s->n_outside == 1 ? "" : "s", s->n_outside_convs, s->n_outside_convs == 1 ? "" : "s",
           cli_count((double)s->outside_params, a), cli_count((double)s->outside_flops, b),
           share(s->outside_flops, s->flops));
    for (int i = 0; i < s->n_outside_convs; i++)
        printf("%-9s %s\n", i ? "" : "  convs", blocks_node_name(g, s->outside_convs[i]));
}

int cmd_blocks(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    double ratio = BLOCKS_DEFAULT_RATIO;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--max-ratio") == 0) {
            if (i + 1 >= argc || !cli_parse_fraction(argv[++i], &ratio))
                return cli_usage_error(blocks_usage,
                                       "--max-ratio needs a number in (0, 1]: the largest share of the model's "
                                       "convolutions one block may hold");
        } else if (cli_operand(blocks_usage, argv[i], &path, "model") != EXIT_OK) {
            return EXIT_USAGE;
        }
    }
    if (!path)
        return cli_usage_error(blocks_usage, "no model given");
    lego_graph g;
    lego_status st = onnx_load_file(path, &g);
    if (st.code)
        return cli_fail(st);
    block_set s;
    st = blocks_detect(&g, ratio, &s);
    if (st.code) {
        graph_free(&g);
        return cli_fail(st);
    }
    int rc = EXIT_OK;
    if (json)
        rc = print_json(path, &g, &s);
    else
        print_table(path, &g, &s);
    block_set_free(&s);
    graph_free(&g);
    return rc;
}
