/* prune.h - descendant blocks by L1-norm filter pruning.
 *
 * LegoDNN's descendants of a block are the block with a share s of the
 * filters of its prunable convolutions removed. Here that happens in two
 * steps:
 *
 * 1. prune_analyze works out, once per block, which channels must be cut
 *    together. Every run-time tensor in the block has a channel axis (axis
 *    1); ops that pass channels through one to one (BatchNormalization,
 *    activations, pools, depthwise convs, elementwise ops between tensors
 *    with the same channel count, the broadcast Mul of an SE or CBAM gate)
 *    tie the channel axes of their inputs and outputs into one "channel
 *    space", and Concat lines its inputs' spaces up one after another. A
 *    space may be thinned when every conv writing into it is a prunable
 *    conv of the block, it is not the block's input or output, and no op
 *    that the analysis cannot carry a cut through (Reshape, Gemm, Split,
 *    Expand, ... prune.c lists what it can) reads it. The filters of a
 *    space are ranked by the sum of the L1 norms (sum of |W|) of the
 *    filters of all the convs writing into it.
 *
 * 2. prune_descendant builds, for one sparsity s, a standalone graph: in
 *    every thinnable space it keeps the C - floor(C*s) channels with the
 *    largest scores (ties to the lower index, so exactly that many), and
 *    slices every weight the cut touches: the writing convs' filters and
 *    biases, the BatchNormalization vectors, the reading convs' input
 *    channels (per group for grouped convs, whose group count stays; a
 *    depthwise conv's group count follows its channels), constants that
 *    broadcast over the channel axis. Its input and output shapes are the
 *    block's; s = 0 gives the block's own weights, byte for byte.
 *
 * prune.c's header comment has the rules in full. */
#ifndef LEGO_BLOCKS_PRUNE_H
#define LEGO_BLOCKS_PRUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "detect.h"

/* The channel analysis of one block (opaque). It points into the graph and
 * the block it was computed from, which must outlive it unchanged. */
typedef struct prune_plan prune_plan;

/* How one conv of a descendant relates to the teacher's conv. */
typedef struct prune_conv {
    int node;                    /* the conv's node index in the teacher graph */
    const char *name;            /* its name (blocks_node_name), owned by the teacher graph */
    int64_t out_channels, in_channels; /* the teacher's */
    int groups, new_groups;
    /* kept channels, ascending teacher indices; every channel when not cut */
    int64_t *kept_out, n_kept_out;
    int64_t *kept_in, n_kept_in;
} prune_conv;

typedef struct descendant {
    double sparsity;
    /* Standalone and prepared (graph_infer has run): one graph input, the
     * block's entry value (same name, dynamic batch dimension), and one
     * output, its exit value. Weights sliced; folded constants the block
     * reads are Constant nodes. */
    lego_graph g;
    prune_conv *convs;           /* every conv node of the block, in block order */
    int n_convs;
    int64_t params, param_bytes; /* float initializers of g */
    int64_t flops;               /* at the teacher's shapes */
} descendant;

/* Analyse block b of the prepared graph g. */
lego_status prune_analyze(const lego_graph *g, const block *b, prune_plan **out);
void prune_plan_free(prune_plan *p);

/* Channel spaces of the block, and how many of them may be thinned. */
int prune_plan_spaces(const prune_plan *p, int *prunable);
/* Whether the output channels of conv node `node` are thinned for s > 0 (a
 * prunable conv whose space is thinnable). */
bool prune_plan_cuts_conv(const prune_plan *p, int node);

/* The descendant at sparsity s, 0 <= s < 1. The graph is named `name`
 * (NULL: "<block entry> -> <block exit>"). Free with descendant_free. */
lego_status prune_descendant(const prune_plan *p, double s, const char *name, descendant *out);
void descendant_free(descendant *d);

/* C - floor(C*s): the channels a space of C keeps at sparsity s (at least 1). */
int64_t prune_keep_count(int64_t c, double s);

#endif
