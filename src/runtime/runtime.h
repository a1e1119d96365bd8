/* runtime.h - the internal side of the runtime (the public lego_runtime_*
 * calls are in include/legodnn.h, with the memory and latency estimates and
 * the threading rules).
 *
 * The estimates a decision uses come from the manifest alone (so `legodnn
 * scale`, which loads no model, and lego_runtime_set_budget agree exactly):
 *   accuracy loss a[b][s]  descendants[].accuracy_loss (`legodnn profile`)
 *   latency l[b][s]        descendants[].latency[P].median_ms, P this
 *                          device's profile (`legodnn latency`), and
 *                          devices[P].frame_ms for the rest of the model
 *   memory m[b][s]         descendants[].weight_bytes; the rest is
 *                          frame.param_bytes + devices[P].frame_arena_bytes
 *                          + the largest descendants[].latency[P].arena_bytes
 *   teacher accuracy       profile.teacher_accuracy (NaN when absent)
 *
 * Switching (runtime.c). A "composition" is an immutable object: an id, the
 * choice, one ready descendant (blockexec.h) per block, its estimates, and a
 * reference count. The runtime's current composition is a pointer swapped
 * under a mutex; a run takes a reference at its start and drops it at its
 * end, so it always runs one whole composition. Ready descendants are
 * cached per (block, option) with a count of the compositions holding them;
 * only unheld ones are evicted (least recently used first) to keep the
 * cache within its cap. A decision builds the new composition from cached
 * descendants (loading what is missing, outside the lock), then swaps it in:
 * switching a cached block costs one pointer per block. */
#ifndef LEGO_RUNTIME_RUNTIME_H
#define LEGO_RUNTIME_RUNTIME_H

#include <stdint.h>

#include "../blocks/library.h"
#include "latency.h"
#include "optimizer.h"

typedef struct rt_estimates {
    char profile[LATENCY_PROFILE_MAX];
    int n_blocks;
    int *n_options;            /* [n_blocks] */
    double **acc_loss;         /* [b][s] */
    double **latency;          /* [b][s] ms */
    int64_t **memory;          /* [b][s] weight bytes */
    double frame_ms, teacher_ms;
    int64_t frame_weight_bytes, frame_arena_bytes, block_arena_bytes;
    double teacher_accuracy;   /* NaN when the library has none */
    char metric[64];           /* what the accuracy measures, "" if unknown */
    scale_problem problem;     /* over the tables above, base = frame */
} rt_estimates;

/* The estimates of lib for device profile `profile` (device_profile_key),
 * the runtime's thread count and batch being `threads` and `batch` (for the
 * message that names the command to run). Errors name what is missing and
 * the command that fills it in. */
lego_status rt_estimates_load(block_library *lib, const char *profile, int threads, int64_t batch,
                              rt_estimates *out);
void rt_estimates_free(rt_estimates *e);

/* Check a budget as lego_runtime_set_budget does; converts "no limit"
 * (INFINITY, INT64_MAX) to the optimizer's DBL_MAX and INT64_MAX. */
lego_status rt_check_budget(double latency_ms, int64_t memory_bytes, double *latency_out);

/* Fill a lego_choice's estimate fields from an optimizer answer. */
void rt_fill_choice(const block_library *lib, const rt_estimates *e, const scale_choice *c, double ratio,
                    lego_choice *out);

#endif
