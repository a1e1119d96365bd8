/* autodiff.h - training execution: forward in training mode and backward
 * over any sub-graph between given values.
 *
 * A train plan keeps alive the activations backward reads (op_desc says
 * which it never does) and one gradient per value that needs one, all in
 * one buffer shared by lifetimes: an activation lives until the last step
 * reading it, in the forward pass or in backward, a gradient while backward
 * needs it, so later gradients take the memory of activations backward is
 * done with (an inner value's activation and gradient are valid only while
 * the passes need them; the outputs until backward). Backward visits
 * the nodes in reverse, and each op accumulates (+=) into its inputs'
 * gradients, so a value read by several nodes needs no special case. Only the
 * parameters named at build time receive gradients. */
#ifndef LEGO_GRAPH_AUTODIFF_H
#define LEGO_GRAPH_AUTODIFF_H

#include "graph.h"

typedef struct train_plan {
    lego_graph *g;
    lego_tensor *vt;      /* per value: forward data */
    lego_tensor *gt;      /* per value: gradient (data NULL where none flows) */
    bool *needs_grad;     /* per value */
    int *zero_at;         /* per value: backward step (0 = the last node) that clears its gradient, or -1 */
    int *steps, n_steps;  /* the sub-graph's nodes in forward order */
    int *inputs, n_inputs;   /* values fed by the caller */
    int *outputs, n_outputs; /* values whose gradients the caller seeds */
    int *params, n_params;   /* values that receive gradients */
    unsigned char *mem;   /* storage behind vt and gt */
    size_t mem_bytes;
    bool shared;          /* mem is the caller's (train_plan_use_storage) */
    bool training;        /* the mode of the last forward pass; backward matches it */
    void **kstate;        /* per step: what op_desc.train_pack built, or NULL */
    workspace *ws;        /* the kernels' scratch: the caller's (train_plan_use_workspace) */
    workspace own_ws;     /* or, when ws is NULL, the plan's own */
} train_plan;

/* Plan the sub-graph that computes `outputs` from `inputs` (value indices);
 * every other value it reads must be an initializer or folded constant.
 * `params` are initializers to train. Shapes are the graph's current ones. */
lego_status train_plan_build(lego_graph *g, const int *inputs, int n_inputs, const int *outputs,
                             int n_outputs, const int *params, int n_params, train_plan *p);
/* The same, choosing whether the inputs get gradients (train_plan_build:
 * yes). Without them, backward stops at the parameters: no input gradient is
 * computed (the first layers skip their dx), and a plan with no parameters
 * holds no gradient memory at all, which is what an inference-only plan or a
 * block trained on fixed features wants. */
lego_status train_plan_build_ex(lego_graph *g, const int *inputs, int n_inputs, const int *outputs,
                                int n_outputs, const int *params, int n_params, bool input_grads,
                                train_plan *p);
void train_plan_free(train_plan *p);
/* Bytes of activation and gradient storage the plan uses (64-byte multiples). */
size_t train_plan_storage_bytes(const train_plan *p);
/* Move the plan's activations and gradients into `mem` (64-byte aligned,
 * train_plan_storage_bytes long), freeing its own. Plans that never run at
 * the same time may share one buffer: a pass reads nothing an earlier pass
 * left there (forward writes every activation and zeroes the output
 * gradients, backward zeroes every other gradient before accumulating).
 * Call it before taking pointers to the gradients (an optimizer's); mem must
 * outlive the plan. */
void train_plan_use_storage(train_plan *p, void *mem);
/* Let the plan's kernels take their scratch from ws (which must outlive
 * the plan) instead of the plan's own: plans that never run at the same
 * time may share one, which then grows to the largest need among them. */
void train_plan_use_workspace(train_plan *p, workspace *ws);

/* Forward pass. Input i reads x[i]'s data in place (its shape must
 * match): keep it unchanged until train_backward has returned.
 * training=true runs BatchNormalization on batch statistics and updates its
 * running statistics. */
lego_status train_forward(train_plan *p, const lego_tensor *const *x, bool training);
/* Output i of the last forward pass (data valid until train_backward,
 * whose gradients may take its memory, or the next forward pass). */
lego_tensor *train_output(train_plan *p, int i);
/* The gradient buffer of output i: fill it before train_backward. Zeroed by
 * train_forward. */
lego_tensor *train_output_grad(train_plan *p, int i);
/* Backward pass from the seeded output gradients. Parameter gradients are
 * overwritten (not accumulated across calls). */
void train_backward(train_plan *p);
/* The weights and gradient of parameter i. */
lego_tensor *train_param(train_plan *p, int i);
lego_tensor *train_param_grad(train_plan *p, int i);
/* Input i's gradient (a plan built with input gradients). */
lego_tensor *train_input_grad(train_plan *p, int i);

#endif
