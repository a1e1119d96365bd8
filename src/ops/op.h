/* op.h - the contract between the graph layer and the op kernels.
 *
 * Ops know nothing of graphs or files. The graph layer hands each op an
 * op_call: the node's attributes, its input tensors (shape and dtype always;
 * data when the value is known) and its output tensors. An op family file
 * (conv.c, pool.c, ...) defines, per ONNX op type:
 *   prepare - parse and check attributes, check inputs, set every output's
 *             dtype and shape, and fill `params` (params_size bytes, zeroed,
 *             owned by the caller). Runs at load and whenever shapes change.
 *             Inputs listed in `const_inputs` must have data here.
 *   forward - compute outputs from inputs; outputs are allocated by the
 *             caller to the shapes prepare set. Cannot fail.
 *   flops   - floating-point operations of one forward pass (optional).
 *   backward - (training) given the gradients of the outputs, dout[o] (NULL
 *             where no gradient flows), ADD the gradient of each input i into
 *             din[i] when din[i] is not NULL. in/out hold the forward pass's
 *             data; backward recomputes whatever else it needs (BN batch
 *             statistics, max-pool winners), so forward saves nothing. `+=`
 *             makes fan-out free: a value read twice just receives twice.
 *             An op listing input i in `grad_writes` may be told that
 *             din[i] holds no contribution yet (c->fresh bit i; its
 *             contents are then undefined): it WRITES that gradient, every
 *             element, instead of adding. The plan spares the buffer's
 *             clearing and the op a read of it.
 *   pack    - (optional; inference plans only, graph/exec.c) build what
 *             forward needs beyond params once, from the call's shapes and
 *             constant inputs (weights in the kernel's own layout, kernel
 *             choices), folding in `fused` when not NULL; forward then finds
 *             it in c->packed. The state stays valid while the shapes and
 *             the constant inputs do: whoever changes them builds a new plan.
 *             Without a state (training, block extraction), forward computes
 *             from the inputs alone. unpack frees it. layout (below) lets a
 *             plan skip the reorders between kernels that share a layout.
 *   train_pack - (optional; train plans only, graph/autodiff.c) build, once
 *             per plan, what forward and backward need beyond params for
 *             the plan's fixed shapes; the weights are NOT constant (the
 *             optimizer changes them between steps). forward and backward
 *             then find it in c->train_state, which they may update (a
 *             forward may leave there what its backward reuses).
 *             train_unpack frees it. *state NULL: nothing to keep. Transient
             buffers of a call come from c->ws, one for the whole
             plan (sized by its largest need), not from malloc.
 * c->training is set for a forward pass in training mode: BatchNormalization
 * then normalises with batch statistics and updates its running statistics
 * in place (inputs 3 and 4), PyTorch's way (see batchnorm.c).
 * Kernels handle the dtypes their prepare accepts: shape arithmetic arrives
 * as int64 and is folded at load by running the same forward on constants.
 * prepare may run many times on the same params: params hold plain data only.
 * Every descriptor is listed once in the table in registry.c. */
#ifndef LEGO_OPS_OP_H
#define LEGO_OPS_OP_H

#include <stdbool.h>

#include "../core/attr.h"
#include "../core/status.h"
#include "../core/tensor.h"
#include "../core/workspace.h"

#define OP_MAX_IO 64

/* What an inference plan folded into a node after it (Conv only): a
 * BatchNormalization with constant statistics, y = conv(x)*scale + shift
 * per output channel (both NULL when none), then with `add` an Add of a
 * tensor of y's shape computed earlier (a residual: op_call.residual,
 * NCHW), then a clamp to [lo, hi] from a Relu (lo 0, hi +inf) or Clip. */
typedef struct op_fused {
    const float *scale, *shift;
    bool add;
    bool clamp;
    float lo, hi;
} op_fused;

typedef struct op_call {
    const attr_list *attrs;
    const char *node_name; /* for messages; may be "" */
    int opset;             /* the default-domain opset of the model */
    int n_in, n_out;
    lego_tensor **in;      /* in[i] == NULL for an omitted optional input */
    lego_tensor **out;
    void *params;
    bool training;         /* forward/backward of a training pass */
    const void *packed;    /* the state op_desc.pack built, or NULL */
    unsigned native;       /* with packed: bit 0, input 0 arrives in the kernel's own
                              layout (op_desc.layout); bit 1, output 0 is written in it */
    bool portable;         /* pack: no library kernels (lego_graph.portable_kernels) */
    void *train_state;     /* the state op_desc.train_pack built, or NULL */
    workspace *ws;         /* scratch the plan's steps share (one step runs at a time;
                              contents do not survive the call), or NULL: malloc's */
    unsigned fresh;        /* backward: bit i set, din[i] holds no contribution yet and
                              must be written, not added to (op_desc.grad_writes) */
    const lego_tensor *residual; /* with a state packed with op_fused.add: what it adds */
    bool clamp;            /* a Relu or Clip a plan fused after this op (op_desc.takes_clamp): */
    float lo, hi;          /* the output clamped to [lo, hi] as activation.c does */
} op_call;

typedef struct op_desc {
    const char *name;
    int min_in, max_in;
    int min_out, max_out;
    size_t params_size;
    unsigned const_inputs; /* bit i set: input i must be a known constant */
    unsigned shape_inputs; /* bit i set: forward reads only input i's shape (Shape) */
    lego_status (*prepare)(op_call *c);
    void (*forward)(const op_call *c);
    int64_t (*flops)(const op_call *c);
    void (*backward)(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din);
    lego_status (*pack)(const op_call *c, const op_fused *fused, void **state);
    void (*unpack)(void *state);
    /* (optional) Whether pack would take op_fused.add for this call (its
     * kernel can add the residual in its epilogue). Absent: never. */
    bool (*packs_add)(const op_call *c);
    /* The forward (and forward_images) of same-shape float inputs honours
     * op_call.clamp, so a plan may fuse a Relu or Clip after it (Add). */
    bool takes_clamp;
    /* (optional) the memory layout a packed kernel reads input 0 in
     * (output false) or writes output 0 in (true) when spared the reorder
     * from or to NCHW: 0 for NCHW itself, an id > 0 shared by the kernels
     * using the same layout (OP_LAYOUT_*), < 0 when it cannot. Plans keep a
     * value between two such kernels in their layout (graph/exec.c). */
    int (*layout)(const void *state, bool output);
    /* (optional) Bit i set: the packed state holds its own copy of constant
     * input i, and a packed forward never reads the graph's (oneDNN's
     * reordered weights). Lets a plan free those weights
     * (exec_release_packed). */
    unsigned (*packed_owns)(const void *state);
    /* (optional) The bytes the packed state holds of the layer's own data
     * (reordered weights, fused epilogue): with the initializers a plan
     * keeps, the memory its weights take (exec_weight_bytes). */
    size_t (*packed_bytes)(const void *state);
    /* Bit i set: backward never reads input i's (out_unread: output i's)
     * data, only its shape. A training plan then lets that activation's
     * memory go to later values once the forward pass is done with it
     * (graph/autodiff.c). Zero, the default, is always safe. */
    unsigned in_unread, out_unread;
    /* Bit i set: backward handles op_call.fresh bit i (writes input i's
     * gradient when told it holds nothing yet). */
    unsigned grad_writes;
    /* Bit i set (with grad_writes): a fresh gradient of input i, of output
     * 0's shape, comes out right when it is the very memory of output 0's
     * gradient (element i of each read before it is written, as
     * elementwise and per-channel ops do). A train plan then gives the two
     * one buffer when output 0's gradient dies at this step. */
    unsigned grad_inplace;
    /* (optional) a packed forward that works image by image, each image's
     * output from that image's input alone, computed the same whatever
     * images a call covers, in groups of *group images: image_scratch gives
     * the scratch bytes one thread needs for it and the group (0: this state
     * cannot), forward_images runs images [i0, i1) (whole groups) on the
     * calling thread with that scratch (false on failure).
     * Plans run chains of such kernels an image at a time (graph/exec.c),
     * so that an image's activations are still in cache for the next. */
    size_t (*image_scratch)(const op_call *c, int64_t *group);
    bool (*forward_images)(const op_call *c, int64_t i0, int64_t i1, void *scratch);
    lego_status (*train_pack)(const op_call *c, void **state);
    void (*train_unpack)(void *state);
} op_desc;

/* Layouts of a 4-D activation, per image (one image after another). Every
 * element appears once, so a value takes the same bytes in each and the
 * elementwise ops (Add of equal shapes, Relu, Clip) run on any of them.
 * The blocked ones (channels in blocks of 16 or 8, then rows, columns, the
 * block's channels) hold only channel counts that fill whole blocks. oneDNN
 * picks nChw16c on AVX-512 and nChw8c on AVX2 for its direct kernels. */
enum { OP_LAYOUT_NCHW = 0, OP_LAYOUT_NHWC = 1, OP_LAYOUT_NCHW16C = 2, OP_LAYOUT_NCHW8C = 3 };

/* The descriptor for an ONNX op type in the default domain, or NULL. */
const op_desc *op_find(const char *op_type);
/* All descriptors, for listing what is supported. */
const op_desc *const *op_all(int *count);

/* Helpers shared by op files. */
lego_status op_error(const op_call *c, lego_code code, const char *fmt, ...) LEGO_PRINTF(3, 4);
/* Normalise a possibly negative axis against rank; error if out of range. */
lego_status op_axis(const op_call *c, int64_t axis, int rank, int *out);
/* op_axis for one of a list of axes that may name each axis once: seen[*out]
 * is set, and an axis already seen is an error. */
lego_status op_axis_once(const op_call *c, int64_t axis, int rank, bool *seen, int *out);
/* Numpy-style broadcast of a and b into out (shape only). */
lego_status op_broadcast_shape(const op_call *c, const lego_tensor *a, const lego_tensor *b,
                               lego_tensor *out);
/* Input i, or NULL when the node lists fewer inputs or omits it. */
const lego_tensor *op_input(const op_call *c, int i);
/* Require input i to be present with dtype dt. */
lego_status op_expect_dtype(const op_call *c, int i, lego_dtype dt);

/* Σ x[i] over n floats, in double over 8 interleaved partial sums, which
 * the compiler turns into vector code (reduce.c). The order is fixed, so
 * the result does not depend on threads or CPU; in double it moves a float
 * mean only in the rarest rounding tie against one running sum, which a
 * chain of dependent additions computes four times slower. */
double op_sum_f32(const float *x, int64_t n);

/* Steps idx, a row-major index over dims[0..n), to the next element and
 * moves off by step[d] for each axis d it advances (all in elements); after
 * the last element idx and off are back at the start. */
static inline void op_index_next(int n, const int64_t *dims, const int64_t *step, int64_t *idx,
                                 int64_t *off)
{
    for (int d = n - 1; d >= 0; d--) {
        *off += step[d];
        if (++idx[d] < dims[d])
            return;
        *off -= step[d] * dims[d];
        idx[d] = 0;
    }
}

#endif
