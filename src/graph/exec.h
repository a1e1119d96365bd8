/* exec.h - running a prepared graph.
 *
 * A plan fixes, for the current shapes, the nodes to run and where every
 * activation lives: one arena whose offsets come from value lifetimes, so a
 * buffer is reused as soon as its last reader has run. */
#ifndef LEGO_GRAPH_EXEC_H
#define LEGO_GRAPH_EXEC_H

#include "graph.h"

/* What an inference plan adds to one step: the value its output 0 is
 * written to when nodes after it were fused into it (else -1), and the
 * op's packed state (op_desc.pack), freed by unpack. */
typedef struct step_state {
    int out_v;
    int res_v;       /* >= 0: the value a fused Add adds (op_call.residual), read at this step */
    bool clamp;      /* a Relu or Clip fused into an elementwise op (op_call.clamp) */
    float lo, hi;
    void *packed;
    void (*unpack)(void *state);
    unsigned native; /* op_call.native: input 0 / output 0 kept in the kernel's layout */
    int chain;       /* > 1: this step and the chain-1 after it run image by image
                        (op_desc.forward_images; exec_run) */
} step_state;

/* Inference rewriting of the nodes steps[0..*n_steps) (run order), in
 * place: a Conv whose output only a BatchNormalization with constant
 * statistics reads absorbs it (the weights are folded), then an Add that
 * alone reads the result where the kernel can add (op_desc.packs_add) and
 * the Add's other input, of the same shape, is computed before the Conv
 * (a residual: read at the Conv's step, st[s].res_v), then a Relu or
 * Clip that alone reads the result; every node whose op packs gets its
 * state. A Relu or Clip that alone reads an Add of same-shape float
 * tensors, or a BatchNormalization no Conv took in (op_desc.takes_clamp),
 * runs in that node's pass (st[s].clamp). Then a value that one packed kernel writes and only kernels of
 * the same layout (op_desc.layout) or elementwise ops between them read
 * stays in that layout, sparing the reorders (no value changes: reorders
 * copy). Runs of steps that work image by image (op_desc.forward_images),
 * each reading only the one before's output, are marked as chains
 * (st[s].chain), which exec_run runs an image at a time; running them step
 * by step, as other runners do, gives the same values. Fused nodes leave
 * steps (*n_steps shrinks); st[s] describes step s.
 * ext[v] marks values read by something other than these steps (graph
 * outputs, block slots): those are never fused away. Plans for inference
 * only: training and block extraction keep every node. */
lego_status exec_fuse_pack(lego_graph *g, int *steps, int *n_steps, const bool *ext,
                           step_state *st);
void exec_unpack(step_state *st, int n);

/* The value output o of a step running node n with state st writes: a
 * fused step's first output is its last fused node's. */
int exec_step_out(const gnode *n, const step_state *st, int o);

/* Step s (node n, state st) in a pass over a schedule's liveness:
 * last_use[v] = s for each value it reads (its inputs and a fused Add's
 * residual), def[v] = s for each value it writes (exec_step_out) and, with
 * `room`, last_use of those raised to s (an unread output still needs
 * room). */
void exec_step_liveness(const gnode *n, const step_state *st, int s, int *def, int *last_use, bool room);

/* The op_call of node n run with state st (NULL: none), over vt, its
 * kernels' scratch from ws (NULL: malloc's). */
void exec_step_call(lego_graph *g, const gnode *n, const step_state *st, lego_tensor *vt, workspace *ws,
                    lego_tensor **in, lego_tensor **out, op_call *c);

/* A plan runs one graph at its current shapes with its weights as they
 * were when it was built (Conv weights are packed, BatchNormalization folded
 * into them): after changing either, build a new plan. */
typedef struct exec_plan {
    lego_tensor *vt;      /* per value: shape, and data once bound */
    size_t *offset;       /* per value: offset in the arena, or SIZE_MAX */
    int *steps, n_steps;  /* nodes to run, in order (folded and fused ones left out) */
    step_state *st;       /* per step */
    int *def, *last;      /* per value: the steps defining it and last using it (-1: none) */
    int n_values;
    size_t arena_bytes;
    unsigned char *arena;
    bool shared;          /* the arena is the caller's (exec_plan_use_arena) */
    workspace *ws;        /* the kernels' scratch: the caller's (exec_plan_use_workspace) */
    workspace own_ws;     /* or, when ws is NULL, the plan's own */
} exec_plan;

/* Lay values out in one arena by lifetime: value v (bytes[v], defined at
 * step def[v] >= 0, last read at step last[v]) never shares memory with a
 * value alive at the same time, nor with the inputs of the step defining it.
 * Values with def[v] < 0 get SIZE_MAX. Offsets are 64-byte aligned; *total
 * is the arena's size. */
lego_status arena_layout(int n_values, const size_t *bytes, const int *def, const int *last,
                         int n_steps, size_t *offset, size_t *total);

/* Free the initializers that only packed steps read, each of which holds
 * its own copy (op_desc.packed_owns: oneDNN's reordered Conv weights), so
 * a plan that only runs does not keep the weights twice. For a caller done
 * with g's weights otherwise: g is marked (weights_released) and later
 * plans, train plans and exports of it fail. vt (the plan's value tensors,
 * or NULL) forgets them too. Returns the bytes freed. */
size_t exec_release_packed(lego_graph *g, const int *steps, int n_steps, const step_state *st,
                           lego_tensor *vt);

/* The memory g's weights take for a plan of these steps: the initializers
 * still allocated (all of them, unless exec_release_packed freed some) plus
 * what each packed step holds of its own (op_desc.packed_bytes). */
int64_t exec_weight_bytes(const lego_graph *g, const int *steps, int n_steps, const step_state *st);

/* Whether inference plans fuse BatchNormalization and Relu/Clip into the
 * Conv before them: unless LEGO_FUSE=0 is in the environment. */
bool exec_fusion_enabled(void);

/* Build a plan for g's current shapes (after graph_infer). */
lego_status exec_plan_build(lego_graph *g, exec_plan *p);
/* The same, where a caller reads graph outputs between steps: output v
 * with until[v] >= 0 (a value index) keeps its memory only until the step
 * that defines value until[v] has run, and may be overwritten after it;
 * outputs with until[v] < 0 live to the end. until is per value. */
lego_status exec_plan_build_until(lego_graph *g, const int *until, exec_plan *p);
void exec_plan_free(exec_plan *p);
/* Let the plan's kernels take their scratch from ws (which must outlive
 * the plan) instead of the plan's own, as train_plan_use_workspace does. */
void exec_plan_use_workspace(exec_plan *p, workspace *ws);
/* The workspace the plan's kernels use (op_call.ws), for callers that run
 * its steps themselves. */
workspace *exec_plan_workspace(exec_plan *p);
/* Move the plan's activations into `mem` (64-byte aligned, arena_bytes
 * long, outliving the plan), freeing its own arena. A caller that lends the
 * memory to others between steps keeps what is live across them: values v
 * with def[v] <= step < last[v]. */
void exec_plan_use_arena(exec_plan *p, void *mem);

/* inputs[i] matches graph input i; outputs[i] receives a new tensor. */
lego_status exec_run(lego_graph *g, exec_plan *p, const lego_tensor *const *inputs,
                     lego_tensor **outputs);

#endif
