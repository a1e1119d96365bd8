/* legodnn.h - the public API of legodnn, block-grained scaling of CNNs.
 *
 * One header, one prefix (lego_). Every fallible call returns a lego_status:
 * a code plus a heap message that names the problem; release it with
 * lego_status_free. Tensors are float32, NCHW, contiguous, unless a dtype says
 * otherwise. Handles are opaque. */
#ifndef LEGODNN_H
#define LEGODNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LEGO_VERSION "0.1.0"
#define LEGO_MAX_RANK 8

/* ---- errors ---------------------------------------------------------- */

typedef enum lego_code {
    LEGO_OK = 0,
    LEGO_ERR_IO,          /* a file could not be read or written */
    LEGO_ERR_FORMAT,      /* a file is malformed or truncated */
    LEGO_ERR_UNSUPPORTED, /* valid input we cannot handle (an op, an opset) */
    LEGO_ERR_SHAPE,       /* shapes or dtypes that do not fit */
    LEGO_ERR_ARG,         /* a bad argument from the caller */
    LEGO_ERR_NOMEM,       /* allocation failed */
    LEGO_ERR_INTERNAL     /* a bug in legodnn */
} lego_code;

typedef struct lego_status {
    lego_code code;
    char *msg; /* NULL when code == LEGO_OK */
} lego_status;

const char *lego_code_name(lego_code code);
/* The message, or "ok". Never NULL. */
const char *lego_status_msg(lego_status st);
void lego_status_free(lego_status *st);

/* ---- tensors --------------------------------------------------------- */

typedef enum lego_dtype {
    LEGO_UNDEFINED = 0,
    LEGO_F32 = 1,  /* the numbers match ONNX TensorProto.DataType */
    LEGO_I64 = 7,
    LEGO_BOOL = 9
} lego_dtype;

typedef struct lego_tensor {
    lego_dtype dtype;
    int rank;
    int64_t dims[LEGO_MAX_RANK];
    void *data;  /* contiguous, row-major; NULL when only the shape is known */
    int owns;    /* nonzero when data is freed with the tensor */
} lego_tensor;

size_t lego_dtype_size(lego_dtype dt);
int64_t lego_tensor_numel(const lego_tensor *t);
size_t lego_tensor_bytes(const lego_tensor *t);

/* ---- threads --------------------------------------------------------- */

/* The number of threads legodnn's kernels use, the calling thread included.
 * n <= 0 means every online core. The default is the environment variable
 * LEGO_NUM_THREADS when set (read once), else every online core. Safe to call
 * at any time from any thread; a running call finishes with the threads it
 * started with. Results do not depend on the count (see docs/PERFORMANCE.md). */
void lego_set_num_threads(int n);
int lego_get_num_threads(void);
/* Stop the worker threads now; they start again when next needed. Runs by
 * itself at exit. */
void lego_shutdown_threads(void);

/* ---- models ---------------------------------------------------------- */

typedef struct lego_model lego_model;

/* Load an ONNX model from a file or from memory. `name` labels messages. */
lego_status lego_model_load(const char *path, lego_model **out);
lego_status lego_model_load_memory(const void *buf, size_t len, const char *name,
                                   lego_model **out);
void lego_model_free(lego_model *m);

/* Graph inputs and outputs, in graph order (initializers are not inputs).
 * A dimension of -1 is dynamic until lego_model_set_input_shape fixes it. */
int lego_model_num_inputs(const lego_model *m);
int lego_model_num_outputs(const lego_model *m);
const char *lego_model_input_name(const lego_model *m, int i);
const char *lego_model_output_name(const lego_model *m, int i);
/* Shapes and dtypes only (data is NULL). */
const lego_tensor *lego_model_input(const lego_model *m, int i);
const lego_tensor *lego_model_output(const lego_model *m, int i);

/* Fix the shape of input i (e.g. choose the batch size) and re-infer every
 * shape downstream. Folded shape arithmetic is recomputed too. */
lego_status lego_model_set_input_shape(lego_model *m, int i, int rank,
                                       const int64_t *dims);

/* Run a forward pass. inputs[i] must match lego_model_input(m, i) in dtype
 * and shape; outputs[i] receives a newly allocated tensor the caller frees
 * with lego_tensor_free. Not safe to call on one model from two threads
 * at once: the activation arena belongs to the model. */
lego_status lego_model_run(lego_model *m, const lego_tensor *const *inputs,
                           lego_tensor **outputs);
void lego_tensor_free(lego_tensor *t);

/* Summary of a model: what `legodnn info` prints. */
typedef struct lego_op_count {
    const char *op_type;
    int count;
    int64_t flops;
} lego_op_count;

typedef struct lego_model_stats {
    int num_nodes;      /* nodes that run (folded constants excluded) */
    int num_folded;     /* nodes folded into constants at load */
    int64_t params;     /* float parameters in initializers */
    int64_t param_bytes;
    int64_t flops;      /* one forward pass at the current input shapes */
    int opset;
    const char *producer; /* e.g. "pytorch 1.13.1"; "" when absent */
    int num_op_types;
    const lego_op_count *op_types; /* owned by the model */
} lego_model_stats;

lego_status lego_model_stats_get(lego_model *m, lego_model_stats *out);

#ifdef __cplusplus
}
#endif
#endif
