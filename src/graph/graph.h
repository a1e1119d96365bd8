/* graph.h - the intermediate representation: values, nodes, initializers.
 *
 * A graph is built by an importer (onnx/), then prepared by graph_infer,
 * which orders the nodes, infers every shape and folds every node whose
 * inputs are all known at load (exporters' Shape->Gather->Concat chains).
 * The executor (exec.c) then runs the remaining nodes. The graph layer knows
 * ops only through the descriptor table in ops/op.h, and nothing of files. */
#ifndef LEGO_GRAPH_GRAPH_H
#define LEGO_GRAPH_GRAPH_H

#include <stdbool.h>

#include "../core/attr.h"
#include "../core/status.h"
#include "../core/tensor.h"
#include "../ops/op.h"

typedef enum value_kind {
    VALUE_ACTIVATION = 0, /* computed at run time */
    VALUE_INPUT,          /* graph input, supplied by the caller */
    VALUE_INITIALIZER,    /* weights and constants from the model file */
    VALUE_FOLDED          /* computed once at load from constants */
} value_kind;

typedef struct gvalue {
    char *name;
    value_kind kind;
    lego_tensor t;   /* dtype and shape; data for initializers and folded values */
    int producer;    /* index of the producing node, or -1 */
    int64_t declared[LEGO_MAX_RANK]; /* graph inputs: shape as declared, -1 = dynamic */
    int declared_rank;
} gvalue;

typedef struct gnode {
    char *name;
    char *op_type;
    const op_desc *op;
    int n_in, n_out;
    int *in;       /* value indices; -1 for an omitted optional input */
    int *out;
    attr_list attrs;
    void *params;  /* op's parameters, filled by its prepare */
    bool folded;   /* computed at load; skipped by the executor */
} gnode;

typedef struct lego_graph {
    char *name;     /* what messages call the model, e.g. its file name */
    char *producer; /* e.g. "pytorch 1.13.1" */
    int opset;
    gvalue *values;
    int n_values, cap_values;
    gnode *nodes;
    int n_nodes, cap_nodes;
    int *inputs, n_inputs;   /* value indices of graph inputs, in order */
    int *outputs, n_outputs; /* value indices of graph outputs, in order */
    int *order;              /* node indices in topological order */
    /* the model's metadata_props: key/value strings, keys unique */
    char **meta_keys, **meta_values;
    int n_meta;
    /* name -> value index, open addressing */
    int *hash;
    int hash_cap;
    /* Plans of this graph use only the portable kernels (no oneDNN packing):
     * the block runtime sets it, because its memory budget counts each weight
     * once and oneDNN's packed copies and primitives are not counted. */
    bool portable_kernels;
    /* A plan freed the weights its packed kernels copied
     * (exec_release_packed): nothing can plan, train or export the graph
     * again. */
    bool weights_released;
} lego_graph;

lego_status graph_init(lego_graph *g, const char *name);
void graph_free(lego_graph *g);

/* Find a value by name; -1 when absent. */
int graph_find_value(const lego_graph *g, const char *name);
/* Add a value (name must be new). Its index goes to *idx. */
lego_status graph_add_value(lego_graph *g, const char *name, value_kind kind, int *idx);
/* Add a node; inputs and outputs are value indices (-1 = omitted input).
 * Takes ownership of attrs. Output values get this node as producer. */
lego_status graph_add_node(lego_graph *g, const char *name, const char *op_type,
                           const int *in, int n_in, const int *out, int n_out,
                           attr_list *attrs, int *idx);

/* The value of metadata key, or NULL when absent. */
const char *graph_meta(const lego_graph *g, const char *key);
/* Set metadata key to value (copies both), replacing a value it had. */
lego_status graph_set_meta(lego_graph *g, const char *key, const char *value);

/* Order nodes, infer shapes, fold constants. Re-runnable after an input's
 * shape changes. Errors name the node and op. */
lego_status graph_infer(lego_graph *g);

/* "node 'Conv_3' (Conv)" for messages. */
const char *graph_node_label(const lego_graph *g, int node, char *buf, size_t len);

/* Parameters in float initializers, and their bytes. */
int64_t graph_param_count(const lego_graph *g, int64_t *bytes);
/* FLOPs of one forward pass at the current shapes; also per node if not NULL. */
int64_t graph_flops(const lego_graph *g, int64_t *per_node);

/* Build the op_call of node n. Tensors come from vt[value] when vt is given
 * (the executor's view), else from the graph's own values. in and out are
 * caller arrays of OP_MAX_IO entries. */
void graph_node_call(lego_graph *g, const gnode *n, lego_tensor *vt, lego_tensor **in,
                     lego_tensor **out, op_call *c);

#endif
