/* latency.h - latency of every descendant on this device (`legodnn latency`),
 * kept in the block library per device profile.
 *
 * Device profile. Latency depends on the CPU, the thread count and the
 * batch, so measurements are filed under a key naming all three:
 * "<cpu> | <threads> thread(s) | batch <b>", the CPU being /proc/cpuinfo's
 * "model name" (else "Hardware", else "unknown cpu"), followed by
 * " | LEGO_DNNL=0" or " | LEGO_WINOGRAD=0", and " | LEGO_FUSE=0", when the
 * environment switched those kernels or the fusion off (they time and hold
 * weights differently). The runtime
 * looks up the key of the machine it runs on and refuses a library
 * measured elsewhere.
 *
 * Method (the original times each block 100 times with time.time() and
 * gets negative savings from noise; see legodnn-method.md §7):
 *  - every descendant is timed alone, on a fixed random input at the block
 *    entry's shape, with its own small activation plan (blockexec.h);
 *  - the frame (the model outside the blocks) is timed in place: inside
 *    runs of whole compositions through the block-by-block executor, the
 *    run's time minus its blocks' times;
 *  - the teacher is timed as one ordinary graph (the all-s0 composition,
 *    which computes exactly what the teacher does);
 *  - warm-up: 3 runs of each item first. A sample is one run (an item
 *    quicker than sample_ms, 0.02 ms by default, repeats until it lasts
 *    that long, for the timer's sake), and samples are taken round-robin
 *    over all items, `repeat` rounds: between two runs of a block every
 *    other item runs, so its weights and inputs are as cold or warm in the
 *    caches as inside a real composition (timing a block back to back keeps
 *    them hot and made the sums under-predict whole runs by ~15% on
 *    ResNet18), and a burst of background load hits every item alike.
 *    Reported: median and interquartile range of the samples;
 *  - noise rule: a descendant is never reported slower than a descendant
 *    of the same block with at least its FLOPs: latency(b,s) :=
 *    min over s' with flops(b,s') >= flops(b,s) of median(b,s'). So the
 *    saving against s = 0 is never negative, and the raw median is kept
 *    beside it ("raw_median_ms") when the rule changed it;
 *  - the additive model (frame + sum of the chosen blocks) is checked on a
 *    few compositions (all-s0, all-sparsest, two random ones): predicted and
 *    measured latency are reported and stored.
 *
 * Manifest (library.h), for profile P:
 *   descendants[].latency[P] = {median_ms, iqr_ms, arena_bytes,
 *                               weight_bytes [, raw_median_ms]}
 *   devices[P] = {cpu, threads, batch, frame_ms, frame_iqr_ms, teacher_ms,
 *                 teacher_iqr_ms, frame_arena_bytes, frame_weight_bytes,
 *                 repeat, measured_at (UTC, ISO 8601), generator, checks:
 *                 [{name, choice: [option per block], predicted_ms,
 *                 measured_ms, error}]}
 * arena_bytes are the activation bytes each descendant needs at that batch,
 * weight_bytes the bytes its weights take in the kernels that run it here
 * (oneDNN keeps its own copies, Winograd's four times the weights, and the
 * ONNX weights those copies replace are freed: bx_desc_release_weights);
 * the runtime's memory estimate uses both. */
#ifndef LEGO_RUNTIME_LATENCY_H
#define LEGO_RUNTIME_LATENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../blocks/library.h"

#define LATENCY_PROFILE_MAX 256

/* /proc/cpuinfo's CPU name (see above). */
void device_cpu_name(char *buf, size_t len);
/* The profile key for this CPU with `threads` threads at `batch`. */
void device_profile_key(int threads, int64_t batch, char *buf, size_t len);

typedef struct latency_options {
    int repeat;           /* samples per item, >= 3 (default 30) */
    int64_t batch;        /* >= 1 (default 1) */
    int n_random;         /* random compositions to check (default 2) */
    uint64_t seed;        /* the random inputs and compositions */
    double sample_ms;     /* quicker items repeat to about this long (default 0.02) */
    bool quiet;           /* no progress bar */
} latency_options;

typedef struct latency_check {
    char name[32];        /* "all-s0", "all-last", "random-1", ... */
    int *choice;          /* option per block */
    double predicted_ms, measured_ms, iqr_ms;
} latency_check;

typedef struct latency_result {
    char profile[LATENCY_PROFILE_MAX], cpu[128];
    int threads;
    int64_t batch;
    int repeat;
    int n_blocks;
    int *n_desc;                 /* [n_blocks] */
    double **median, **iqr;      /* [b][d], median after the noise rule */
    double **raw_median;         /* [b][d], as measured */
    int64_t **flops;             /* [b][d] at this batch */
    size_t **arena;              /* [b][d] activation bytes */
    int64_t **weights;           /* [b][d] the bytes its weights take as it runs here */
    double frame_ms, frame_iqr_ms, teacher_ms, teacher_iqr_ms;
    size_t frame_arena;
    int64_t frame_weights;
    latency_check *checks;
    int n_checks;
    double seconds;              /* wall time of the measurement */
} latency_result;

/* Measure every descendant, the frame, the teacher and the checks with the
 * current thread count (lego_get_num_threads). opt may be NULL (defaults). */
lego_status latency_measure(block_library *lib, const latency_options *opt, latency_result *out);
/* Write r into lib's manifest in memory (library_save writes it). */
lego_status latency_store(block_library *lib, const latency_result *r);
void latency_result_free(latency_result *r);

#endif
