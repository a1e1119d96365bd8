/* profile.h - how much accuracy each descendant costs, measured in composed
 * models (the profile layer; `legodnn profile` drives it).
 *
 * Following LegoDNN (docs: legodnn-method.md §6), a descendant's accuracy
 * loss is measured in whole models, in k = 3 environments: every block at
 * its original (s = 0), every block at the second sparsity, every block at
 * the largest. For block b at sparsity s and environment e,
 *
 *   ΔAcc(b, s) = (1/|E|) Σ_e [ Acc(e with b original) − Acc(e with b at s) ]
 *
 * The environments are the original's list [all original] + [all at S[j]
 * for every j], cut to entries 0, (n−1)/2 and n−1 when it has more than 3
 * entries: {original, S[1], S[last]} for 4 or more sparsities; with 3 it is
 * {original, S[0] (= original), S[2]}, with 2 {original, original, S[1]}.
 * ΔAcc(b, 0) is 0 by definition: s = 0 is the teacher's block byte for
 * byte (retraining leaves it alone).
 *
 * Every composition is scored on the test split through a task
 * (train/task.h) exactly as `legodnn eval` scores a model (BatchNorm in
 * inference mode). By default every composition is scored in one pass
 * over the test split, compositions sharing the blocks before the first
 * one they differ in (profile.c); with `plain`, or a task whose tally
 * cannot be kept per model, each is built with compose_model and run
 * whole; both give the same accuracies. Each distinct composition is
 * evaluated once and its accuracy cached, so the deltas cost at most
 * 3 + 3·B·(|S|−1) evaluations (the uncached count is 6·B·(|S|−1)), plus
 * the validation compositions not already among them. A test subset (the first max_test
 * samples) trades precision for time and is recorded.
 *
 * The additive model that scaling relies on (teacher accuracy minus the sum
 * of the chosen descendants' ΔAcc) is then checked: a few random
 * compositions plus every uniform one (every block at one sparsity: all-second,
 * all-last, then the others) are evaluated and the estimate compared with the
 * measurement (legodnn-method.md §13 item 13). */
#ifndef LEGO_PROFILE_PROFILE_H
#define LEGO_PROFILE_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "../blocks/library.h"

#define PROFILE_MAX_ENVS 3

/* Called as the work advances, done of total steps: the test batches of
 * the pass that scores every composition at once (accuracy NaN), or on the
 * plain path the compositions (accuracy: the one just measured). Return
 * false to stop, which fails the run with "interrupted" and changes
 * nothing. */
typedef bool (*profile_progress_fn)(void *ctx, int done, int total, double accuracy);

typedef struct profile_options {
    const char *data;        /* dataset spec (data/dataset.h) */
    const lego_task *task;   /* NULL: classification */
    int batch;               /* test samples in flight, <= 0: 128, shared out between
                                the walkers (profile_result) and rounded up to a
                                multiple of them; a model with a fixed batch axis
                                decides (one walker) */
    int64_t max_test;        /* > 0: only the first max_test test samples */
    int n_random;            /* random compositions to validate; < 0: 5 */
    uint64_t seed;           /* picks the random compositions */
    bool plain;              /* one composed model per pass over the test split (the
                                reference path; the default shares prefixes, below) */
    profile_progress_fn progress;
    void *ctx;
} profile_options;

typedef struct profile_composition {
    int *choice;             /* n_blocks sparsity indices */
    double accuracy;
} profile_composition;

typedef struct profile_check {
    int composition;         /* index into compositions */
    const char *label;       /* "all-second", "all-last", "uniform" (every block
                                at another sparsity), "random" */
    double estimated, measured;
} profile_check;

typedef struct profile_result {
    int n_blocks, n_sparsities;
    double *delta;           /* ΔAcc, n_blocks x n_sparsities, row-major, in [−1, 1] */
    int n_envs;
    int envs[PROFILE_MAX_ENVS];  /* the sparsity index every block has in environment e */
    double teacher_accuracy;
    int64_t test_samples;    /* samples each composition was scored on */
    int batch;               /* test samples in flight: walkers x each one's batch */
    int walkers;             /* passes over parts of the test split side by side,
                                one per thread (profile.c) */
    profile_composition *compositions; /* every one evaluated, in order; [0] is the teacher */
    int n_compositions;
    profile_check *checks;
    int n_checks;
    double max_error, mean_error; /* |estimated − measured| over the checks */
    /* FLOPs of the blocks run per test sample, all compositions together:
     * as run (prefixes shared) and with one composed model per pass */
    double block_flops_run, block_flops_plain;
    double seconds;
} profile_result;

/* The environments for n sparsities (see above): fills envs, returns how
 * many (n_sparsities >= 1). */
int profile_environments(int n_sparsities, int *envs);

/* Profile every descendant of lib. Nothing is written; see profile_store. */
lego_status profile_library(block_library *lib, const profile_options *opt, profile_result *res);

/* Put the result into lib's manifest: accuracy_loss per descendant and the
 * top-level "profile" object (task, dataset, test samples, teacher accuracy,
 * environments, compositions and their accuracies, validation), then save it
 * atomically. */
lego_status profile_store(block_library *lib, const profile_options *opt, const profile_result *res);

/* The "profile" object profile_store writes (caller frees with cJSON_Delete). */
struct cJSON *profile_json(const block_library *lib, const profile_options *opt,
                           const profile_result *res);

void profile_result_free(profile_result *res);

/* For tests: at the first block slot the shared pass runs the frame before
 * it again for each further branch (1) or saves and restores its values
 * (0); -1, the default, picks by cost (profile.c). */
void profile_set_prefix_rerun(int mode);

#endif
