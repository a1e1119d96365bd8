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

/* Load an ONNX model from a file or from memory. `name` labels messages.
 * Loaded from a file, the model holds its weights once from its first run
 * on: the kernels' own copies (oneDNN's reordered Conv weights) serve, and
 * the graph's are freed; a later lego_model_set_input_shape reads them
 * again from the file, which must not have changed meanwhile. Loaded from
 * memory, it keeps both. */
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
 * shape downstream. Folded shape arithmetic is recomputed too. On failure
 * (a bad shape; a model file changed since it was loaded) the model keeps
 * its previous shapes and stays runnable. */
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
    int64_t held_weight_bytes; /* the weights' memory as held now: initializers still
                                  allocated plus the kernels' own copies */
    int64_t flops;      /* one forward pass at the current input shapes */
    int opset;
    const char *producer; /* e.g. "pytorch 1.13.1"; "" when absent */
    int num_op_types;
    const lego_op_count *op_types; /* owned by the model */
} lego_model_stats;

lego_status lego_model_stats_get(lego_model *m, lego_model_stats *out);

/* ---- tasks ------------------------------------------------------------ */

/* A task tells legodnn's stages (training, retraining, profiling, serving
 * checks) how to feed a model a batch and how to score what comes out: the
 * original's "model manager". Everything task-specific lives behind these
 * callbacks, so the pipeline never looks at labels, boxes or masks itself.
 * Image classification (top-1 accuracy) is built in as
 * lego_task_classification; its name is "classification".
 *
 * The stages call, for one model and one dataset:
 *   open -> { start(split, epoch) -> next ... score ... } ... metric -> close
 * next() fills one batch of inputs and keeps that batch's targets in the
 * task's state; score() then receives the model's outputs for exactly that
 * batch, and metric() reports the tally so far (higher is better).
 *
 * Another task plugs in by filling one of these structs. A detection task,
 * for instance: open() reads images and boxes from `spec` and resizes them to
 * model->input's H x W; next() writes normalised images into x and keeps the
 * ground-truth boxes of the batch; score() decodes the model's outputs
 * (e.g. boxes (N,K,4) and scores (N,K,classes)) into detections and
 * accumulates matches per class; metric() returns mAP over what was scored.
 * Segmentation (mIoU), pose (PCK), anomaly (AUROC) and action recognition
 * (top-1 over clips) follow the same pattern. */

typedef enum lego_split { LEGO_SPLIT_TRAIN = 0, LEGO_SPLIT_TEST = 1 } lego_split;

/* What a task learns about the model it feeds. Shapes only: no tensor here
 * carries data. */
typedef struct lego_task_model {
    const lego_tensor *input;          /* the one float input, (N,C,H,W); N may be
                                          -1 (dynamic) */
    int num_outputs;
    const lego_tensor *const *outputs; /* num_outputs shapes, in graph order */
    /* How the model's inputs were normalised when it was trained: the ONNX
     * metadata "legodnn.mean" and "legodnn.std", comma-separated per channel
     * ("0.4914,0.4822,0.4465"), or NULL when the model has none (the task
     * then picks its own, e.g. the train split's statistics). */
    const char *mean, *std;
    const char *name;                  /* for messages, e.g. the file name */
} lego_task_model;

typedef struct lego_task {
    const char *name;    /* "classification" */
    const char *metric;  /* what metric() measures, e.g. "top-1 accuracy" */
    /* Read dataset `spec` (whatever the task understands: a directory, a
     * known name) for `model`, producing batches of `batch` samples (> 0).
     * max_train, max_test > 0 keep only the first samples of a split; 0 keeps
     * all; < 0 says the split is not needed (next() then yields nothing).
     * `seed` fixes the shuffling. A dataset that does not fit the model (its
     * channels, its labels) is an error that names both. *state receives
     * the task's state, handed to every other callback. */
    lego_status (*open)(const char *spec, const lego_task_model *model, int batch,
                        int64_t max_train, int64_t max_test, uint64_t seed, void **state);
    /* Start a pass over a split. The order is a pure function of
     * (seed, epoch); the train split is shuffled, the test split is not. */
    void (*start)(void *state, lego_split split, int epoch);
    /* Fill x, (batch,C,H,W) floats at the model's C, H, W, with the next
     * batch of the pass and keep its targets. Returns the samples written
     * (a short last batch leaves x's tail as it was), 0 at the end. */
    int64_t (*next)(void *state, lego_split split, float *x);
    /* Score the model's outputs (shapes as the model's, batch first) for the
     * n samples the last next() returned. */
    void (*score)(void *state, const lego_tensor *const *outputs, int num_outputs, int64_t n);
    /* The metric over everything scored since the last reset; nonzero
     * `reset` then starts a new tally. */
    double (*metric_value)(void *state, int reset);
    /* Batches in one pass over a split (a progress bar's total). */
    int64_t (*batches)(const void *state, lego_split split);
    void (*close)(void *state);
} lego_task;

/* Image classification: a dataset as `legodnn train --data` reads it (IDX,
 * CIFAR binary, image folders), images resized and replicated to the model's
 * input and normalised as its metadata says; the model's first output is
 * (N,classes) scores; the metric is top-1 accuracy in [0, 1]. */
extern const lego_task lego_task_classification;

/* ---- the runtime: a scalable model under changing budgets ------------ */

/* A block library (`legodnn extract`, `profile`, `latency`) opened for
 * inference on this device. The runtime holds the frame (the model outside
 * the blocks) and, per block, one ready descendant; lego_runtime_set_budget
 * picks the most accurate composition that fits a latency and a memory
 * budget (an exact optimizer, microseconds) and switches only the blocks
 * whose choice changed. Descendants are read from the library on first use
 * and then stay cached (within options.cache_bytes, least recently used
 * first out), so switching back to a cached one is a pointer swap.
 *
 * Threads: every call is safe from any thread. lego_runtime_run may run on
 * several threads at once (each run gets its own activation scratch) while
 * another thread changes budgets: a run uses the composition that was
 * current when it started, whole, to its end; a budget change never waits
 * for runs and runs never wait for it (beyond a pointer swap).
 *
 * Memory estimate (what the memory budget is compared with): the bytes
 * the weights of the chosen descendants and of the frame take in this
 * device's kernels (recorded by `legodnn latency`: oneDNN keeps its own
 * packed copies, Winograd's four times the weights, and the runtime frees
 * the ONNX weights they replace) + an
 * activation bound: the frame's arena (planned once over the block-by-block
 * schedule) + the largest arena any descendant of the library needs at this
 * batch (one block runs at a time, so one block arena serves them all). A
 * run needs exactly frame arena + the largest arena of its composition's
 * blocks, so the bound holds; each further concurrent run adds one more
 * arena. Cached descendants not in use are not counted: bound them with
 * cache_bytes.
 *
 * Latency estimate: the frame's and each chosen descendant's median from
 * `legodnn latency` for this device profile (CPU, threads, batch), summed,
 * times the calibration ratio. Online calibration (the original's ratio
 * method, made robust): after every run the measured latency is divided by
 * the uncalibrated estimate of its composition; the ratio used is the
 * median of the last 15 such ratios (at least 3 of them, else 1), clamped
 * to [0.2, 5]. When the device slows down (heat, contention) the estimates
 * grow and set_budget picks smaller compositions for the same budget. */

#define LEGO_MAX_BLOCKS 256

typedef struct lego_runtime lego_runtime;

typedef struct lego_runtime_options {
    int threads;          /* kernel threads for this process (lego_set_num_threads);
                             0 keeps the current count. Part of the device profile. */
    int64_t batch;        /* samples per run; 0 means 1. Part of the device profile. */
    int64_t cache_bytes;  /* cap on the weight bytes of cached descendants, those in
                             use included (in-use ones are never dropped); 0: no cap */
    int fixed_latency;    /* nonzero: no online calibration (ratio stays 1) */
} lego_runtime_options;

/* The answer of one budget decision. */
typedef struct lego_choice {
    int n_blocks;
    int option[LEGO_MAX_BLOCKS];      /* chosen descendant of each block (index
                                         into the library's sparsities) */
    double sparsity[LEGO_MAX_BLOCKS]; /* its sparsity */
    double accuracy;        /* estimated: the teacher's accuracy from `legodnn
                               profile` minus accuracy_loss; NaN if unknown */
    double accuracy_loss;   /* sum of the chosen descendants' accuracy loss */
    double latency_ms;      /* estimated, calibrated */
    int64_t memory_bytes;   /* estimated (see above) */
    int feasible;           /* 0: nothing fits both budgets; this is the closest
                               composition (the least common scale-up of both
                               budgets), and it was applied all the same */
    double budget_scale;    /* 1 when feasible, else how far both budgets must grow */
    double latency_excess_ms;     /* max(0, latency_ms - latency budget) */
    int64_t memory_excess_bytes;  /* max(0, memory_bytes - memory budget) */
    int switched;           /* blocks whose descendant this decision changed */
    int loaded;             /* of those, descendants read from disk (not cached) */
    double solve_us;        /* optimizer time */
    double switch_ms;       /* time to apply the choice, loads included */
    uint64_t composition;   /* id of the composition now current (ids only grow) */
} lego_choice;

typedef struct lego_run_info {
    uint64_t composition;   /* the composition this run used */
    double latency_ms;      /* measured wall time of the run */
    double estimated_ms;    /* its calibrated estimate when the run started */
} lego_run_info;

typedef struct lego_runtime_stats {
    uint64_t runs;             /* completed lego_runtime_run calls */
    uint64_t decisions;        /* successful lego_runtime_set_budget calls */
    uint64_t switches;         /* blocks switched, all decisions together */
    uint64_t loads;            /* descendants read from the library */
    uint64_t evictions;        /* cached descendants dropped for the cap */
    double switch_ms;          /* time spent applying choices (loads included) */
    double load_ms;            /* of which reading and preparing descendants */
    double last_switch_ms;     /* the last decision's switch_ms */
    double last_solve_us;
    int64_t cache_bytes;       /* weight bytes of cached descendants (in use included) */
    int cache_entries;
    int64_t weights_bytes;     /* weight bytes in use: frame + current descendants */
    int64_t arena_bytes;       /* activation scratch allocated (all run contexts) */
    int run_contexts;          /* run contexts (one per concurrent run seen) */
    double calibration;        /* the latency ratio in use (1 = as profiled) */
    int calibration_samples;   /* ratios it is the median of */
    double frame_ms;           /* the profiled frame latency */
    double teacher_latency_ms; /* estimated latency of every block original (uncalibrated) */
    int64_t teacher_memory_bytes; /* estimated memory of every block original */
    char profile[256];         /* the device profile key in use */
    lego_choice current;       /* the current composition (its estimates) */
} lego_runtime_stats;

/* Open the block library in directory lib_dir for this device. opt may be
 * NULL (defaults). Fails, naming the command to run, when the library has no
 * latency for this device profile (`legodnn latency LIB`) or no accuracy
 * loss (`legodnn profile LIB --data DATASET`). The frame is loaded now;
 * descendants on first use. Until the first lego_runtime_set_budget the
 * composition is every block at option 0 (the teacher), loaded by the first
 * run that needs it: set a budget before the first run and the teacher's
 * blocks are never read. While a switch loads new descendants the old
 * composition stays whole for the runs using it, so memory peaks at the two
 * together for the length of the switch. */
lego_status lego_runtime_open(const char *lib_dir, const lego_runtime_options *opt, lego_runtime **out);
void lego_runtime_close(lego_runtime *rt);

/* Choose the most accurate composition whose estimated latency is at most
 * latency_ms and whose estimated memory is at most memory_bytes, and make
 * it current. INFINITY and INT64_MAX mean "no limit". Zero, negative, NaN
 * and absurd budgets (finite latency over 1e9 ms, memory over 2^60 bytes)
 * are LEGO_ERR_ARG and change nothing. An infeasible budget is not an
 * error: the closest composition is applied and out->feasible is 0. A
 * failure to load a descendant leaves the previous composition running.
 * out may be NULL. */
lego_status lego_runtime_set_budget(lego_runtime *rt, double latency_ms, int64_t memory_bytes,
                                    lego_choice *out);

/* Inputs and outputs: the model's, in graph order, at the runtime's batch
 * (shapes only; data is NULL). */
int lego_runtime_num_inputs(const lego_runtime *rt);
int lego_runtime_num_outputs(const lego_runtime *rt);
const lego_tensor *lego_runtime_input(const lego_runtime *rt, int i);
const lego_tensor *lego_runtime_output(const lego_runtime *rt, int i);
int lego_runtime_num_blocks(const lego_runtime *rt);

/* One forward pass of the current composition. inputs[i] matches
 * lego_runtime_input(rt, i); outputs[i] receives a new tensor (free with
 * lego_tensor_free). info, when not NULL, says which composition ran and
 * how long it took. */
lego_status lego_runtime_run(lego_runtime *rt, const lego_tensor *const *inputs, lego_tensor **outputs,
                             lego_run_info *info);

lego_status lego_runtime_stats_get(lego_runtime *rt, lego_runtime_stats *out);

#ifdef __cplusplus
}
#endif
#endif
