/* blockexec.h - running a composition block by block: the frame's nodes in
 * segments, and between them one ready descendant per block slot.
 *
 * This is the executor behind the runtime's live block switching (and the
 * latency stage's timings). Nothing here re-plans when a block changes:
 *  - the frame (library.h: the model outside the blocks) is scheduled once
 *    into items, each a frame node or a block slot, in an order where every
 *    slot runs as soon as its entry value is ready; its activations (block
 *    exits included) get one arena planned from their lifetimes over that
 *    schedule;
 *  - a descendant becomes a bx_desc once: its graph, its node order and its
 *    activation offsets (its own small plan). It reads its input straight
 *    from the frame arena and writes its output straight into the frame
 *    arena's buffer for the block exit, so a composition is just an array of
 *    bx_desc pointers, one per block;
 *  - the scratch a run writes lives in a bx_ctx (the frame arena, one block
 *    arena sized for the largest descendant it has run, per-value tensor
 *    views). Frames and descendants are read-only while they run, so several
 *    threads may run at once, each with its own bx_ctx.
 * Both are planned for inference (graph/exec.h): BatchNormalization folded
 * into the Conv before it, Relu/Clip fused, Conv weights packed once when a
 * descendant or the frame opens, never inside a run, and never across a
 * block boundary (a boundary value is read outside its side's nodes).
 * Memory of one run = frame arena + largest block arena of the composition.
 * The kernels and their order are the composed model's, so a run gives the
 * same bits as compose_graphs + exec_run on the same descendants. */
#ifndef LEGO_RUNTIME_BLOCKEXEC_H
#define LEGO_RUNTIME_BLOCKEXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../blocks/library.h"
#include "../graph/exec.h"
#include "../graph/graph.h"

typedef struct bx_desc {
    lego_graph *g;        /* owned */
    int block, option;    /* where it comes from in the library */
    int in_v, out_v;      /* its input and output value */
    int *steps, n_steps;  /* nodes to run, in order */
    step_state *st;       /* per step: fusion and packed kernels (graph/exec.h) */
    lego_tensor *vt;      /* per value: shape; data for constants */
    size_t *offset;       /* per value: arena offset, or SIZE_MAX */
    size_t arena_bytes;
    int64_t weight_bytes; /* the memory its weights take (exec_weight_bytes): the
                             initializers it keeps, all dtypes, and its packed kernels' copies */
    int n_values;
    int bind_out;         /* 1: the output is written in place in the frame */
} bx_desc;

typedef enum { BX_NODE, BX_BLOCK } bx_kind;

typedef struct bx_item {
    bx_kind kind;
    int index; /* node index in the frame, or block index */
} bx_item;

typedef struct bx_frame {
    lego_graph *g;        /* owned */
    int n_model_inputs, n_model_outputs, n_blocks;
    int *entry_v, *exit_v;                 /* [n_blocks] frame values */
    lego_tensor *in_shape, *out_shape;     /* [n_blocks] boundary shapes */
    bx_item *items;
    int n_items;
    step_state *ist;      /* per item: a node's fusion and packed kernels */
    lego_tensor *vt;      /* per value: shape; data for constants */
    size_t *offset;       /* per value: frame arena offset, or SIZE_MAX */
    size_t arena_bytes;
    int64_t weight_bytes; /* as bx_desc's */
    int n_values;
} bx_frame;

typedef struct bx_ctx {
    unsigned char *frame_arena;
    unsigned char *block_arena;
    size_t block_cap;
    lego_tensor *fvt;     /* the frame's values, bound to frame_arena */
    lego_tensor *dvt;     /* one descendant's values while it runs */
    int dvt_cap;
    workspace ws;         /* the kernels' scratch (op_call.ws) */
} bx_ctx;

/* Set the first dimension of every input of g to batch and infer again
 * (no-op when it already is). Errors say the batch does not fit. */
lego_status bx_set_batch(lego_graph *g, int64_t batch);

/* The frame of lib, taken over from the library (lib->frame is cleared, so
 * library_free does not free it), at the given batch. Its plans and its
 * descendants' take the fastest kernels built in (oneDNN's, where present,
 * in their own layouts); their packed copies of the weights count in
 * weight_bytes, so a memory budget sees them. */
lego_status bx_frame_open(block_library *lib, int64_t batch, bx_frame *out);
void bx_frame_free(bx_frame *f);

/* Descendant d of block b, taken over from the library, at the frame's
 * batch and checked against the frame's boundary shapes. */
lego_status bx_desc_open(block_library *lib, const bx_frame *f, int b, int d, bx_desc **out);
void bx_desc_free(bx_desc *d);
/* Free d's weights that its packed kernels copied (exec_release_packed),
 * for a caller that only runs d from now on: d can no longer be composed
 * (bx_compose fails). weight_bytes drops by the bytes freed, which are
 * returned. bx_frame_release_weights does the same for the frame. */
size_t bx_desc_release_weights(bx_desc *d);
size_t bx_frame_release_weights(bx_frame *f);

void bx_ctx_init(bx_ctx *c);
void bx_ctx_free(bx_ctx *c);
/* Size c for f and for descendants of up to block_bytes of arena and
 * n_values values (grows, never shrinks). */
lego_status bx_ctx_reserve(bx_ctx *c, const bx_frame *f, size_t block_bytes, int n_values);
/* Bytes of activation scratch c holds. */
size_t bx_ctx_bytes(const bx_ctx *c, const bx_frame *f);

/* One forward pass of the composition desc[0..n_blocks-1]. inputs are the
 * model's (shapes as the frame's); outputs[i] receives a new tensor per model
 * output. block_ms, when not NULL, receives each block's wall time (ms).
 * c must have been reserved for these descendants. */
lego_status bx_run(const bx_frame *f, const bx_desc *const *desc, bx_ctx *c,
                   const lego_tensor *const *inputs, lego_tensor **outputs, double *block_ms);

/* Items [from, to) of f's schedule only, with the model inputs bound
 * (fvt) by the caller: the frame arena holds whatever earlier items left
 * there, so a caller that restores the values live at item `from` can run
 * the rest of a composition again with other descendants from there on
 * (profiling shares the common prefix of compositions this way). */
lego_status bx_run_items(const bx_frame *f, const bx_desc *const *desc, bx_ctx *c, int from, int to);

/* One descendant alone: x is its input (shape as the block entry's), y
 * receives its output (caller's buffer of the exit's size). c reserved. */
lego_status bx_run_desc(const bx_desc *d, bx_ctx *c, const void *x, void *y);

/* The teacher-shaped composed graph of the given descendants (compose.h),
 * prepared at the frame's shapes. */
lego_status bx_compose(const bx_frame *f, const bx_desc *const *desc, lego_graph *out);

#endif
