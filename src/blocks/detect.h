/* detect.h - automatic block detection: which parts of a model become
 * LegoDNN blocks.
 *
 * A block is a region of the graph with one input tensor and one output
 * tensor that holds 2 to max(floor(N*r), 2) of the model's N convolutions
 * (Conv and ConvTranspose), at least one of them prunable. The convs that
 * produce the block output ("kept" convs) keep their output channels, so a
 * descendant block has the teacher block's input and output shapes; every
 * other conv in the block may be thinned. detect.c explains how the regions
 * are found and chosen.
 *
 * The result is plain data: node and value indices into the graph it was
 * computed on (valid while that graph is not edited), ready for descendant
 * generation and the block library. */
#ifndef LEGO_BLOCKS_DETECT_H
#define LEGO_BLOCKS_DETECT_H

#include <stdint.h>

#include "../graph/graph.h"

/* LegoDNN's compress_layer_max_ratio in nearly every experiment. */
#define BLOCKS_DEFAULT_RATIO 0.125

typedef struct block {
    int entry;  /* value index of the one input (an activation or a graph input) */
    int exit;   /* value index of the one output */
    /* node indices in a topological order that does not depend on the order
     * of the graph's node array (longest path from the inputs, then name) */
    int *nodes, n_nodes;
    int *convs, n_convs;       /* the Conv/ConvTranspose nodes, same order */
    int *kept, n_kept;         /* convs met first walking back from the exit */
    int *prunable, n_prunable; /* convs - kept: thinned by descendants */
    int n_layers;              /* distinct conv weights (a reused conv counts once) */
    int64_t params, param_bytes; /* float initializers only this block reads */
    int64_t flops;               /* one forward pass at the graph's shapes */
} block;

typedef struct block_set {
    double max_ratio;
    int total_convs;  /* N: distinct conv layers in the model */
    int max_convs;    /* max(floor(N * max_ratio), 2) */
    int n_regions;    /* single-entry single-exit regions that satisfy the rule */
    int n_candidates; /* distinct conv sets among them */
    /* chosen blocks, pairwise disjoint, in topological order of their first conv */
    block *blocks;
    int n_blocks;
    int covered_convs; /* sum of the blocks' n_layers */
    /* what stays outside every block: non-folded nodes, canonical order */
    int *outside, n_outside;
    int *outside_convs, n_outside_convs;
    int64_t params, param_bytes, flops; /* the whole model */
    int64_t outside_params, outside_param_bytes, outside_flops;
} block_set;

/* Detect the blocks of g, which graph_infer has prepared. max_ratio must be
 * in (0, 1]. Fails with LEGO_ERR_ARG, naming the reason, when the model
 * yields no block. The result is the same whatever the order of g's node
 * array. Free it with block_set_free. */
lego_status blocks_detect(const lego_graph *g, double max_ratio, block_set *out);
void block_set_free(block_set *s);

/* A node's name for people: its own name, or its first output's when the
 * node has none (ONNX node names are optional and need not be unique). */
const char *blocks_node_name(const lego_graph *g, int node);

#endif
