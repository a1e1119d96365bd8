/* retrain.h - block retraining: every descendant learns to reproduce its
 * original block's output from the original block's input (LegoDNN §5).
 *
 * The teacher is the library's model with every block at sparsity 0. One
 * inference-mode pass of it (BatchNorm on running statistics) gives every
 * block's entry and exit features for a batch, and every descendant with
 * s > 0 of every block trains on that same batch: MSE between
 * descendant(entry) and the teacher's exit, Adam, BatchNorm in training mode
 * as in the original. So one teacher pass serves B*(|S|-1) students, where
 * the original ran the teacher again for every epoch and trained one
 * descendant after another. Students run concurrently on the thread pool:
 * split into one group per thread, balanced by FLOPs, each group's students
 * one after another on its thread (the kernels inside run single-threaded,
 * so there is one owner of threads) and sharing one buffer for activations
 * and gradients, so memory holds one training plan per thread rather than
 * one per student. When those buffers together would pass 256 MiB (a
 * full-width ResNet18's first block trains in ~0.3 GB at batch 128) there
 * are fewer groups, down to one student at a time with threaded kernels;
 * one group too when the students are large (a step of over 4 GFLOP on
 * average), whose own kernels keep the threads busy.
 * The teacher runs as an inference plan whose buffers are reused by
 * lifetime; when students run one at a time, it runs a step at a time and
 * a block's students step as soon as its exit is computed, its boundaries'
 * memory reused once the blocks reading them are done. Results do not
 * depend on the thread count. The s = 0 blocks
 * are the teacher's own and stay frozen.
 *
 * Data. The train split is read in one fixed order (the task's epoch-0
 * order, seeded): its last `holdout` fraction of batches is held out, the
 * rest trains, every epoch in the same order. Fixed, because the teacher's
 * features are then the same every epoch and can be cached: when they fit
 * under cache_bytes (held-out batches first, then train batches from the
 * start), they are computed once and later epochs run no teacher at all.
 * Cached or not, a run computes exactly the same thing.
 *
 * Selection. Before training and after every epoch each descendant's MSE on
 * the held-out features is measured (inference mode); the weights with the
 * lowest held-out MSE are kept, the original ones included, so a descendant
 * that retraining does not improve stays as it was (the original kept the
 * lowest *training* loss).
 *
 * Stages. Every student trains on every batch, so a one-stage run holds
 * the early blocks' training buffers (large maps) beside the late blocks'
 * weights and Adam moments (many channels) at once. A run can instead go
 * in two stages split at a value `cut` (a block's entry that every path to
 * the later blocks passes through): the first trains the blocks before the
 * cut, running the teacher only that far and saving the cut's features of
 * every batch to LIB/retrain.features (CRC-32 per batch); the second trains
 * the rest, its teacher starting from those features. Each stage runs all
 * the epochs of its blocks; students are independent given the teacher's
 * features, so a staged run writes the same files as a one-stage run, and
 * the teacher's work is the same. By default (stages = 0) the run splits
 * when an estimate from the library (the weights and Adam moments of each
 * stage's students, the teacher's weights, and four copies of the largest
 * pair of block boundaries at the batch size) says one stage would hold
 * more than 128 MiB and the best cut lowers that by a fifth or more, and
 * the file fits on the library's disk. The file goes with the checkpoint.
 * Unless a feature cache was asked for, the second stage of a run of two or
 * more epochs also appends each batch's features (every boundary it reads)
 * to the file the first time its teacher computes them, when all of them
 * take at most 1 GiB and fit; once
 * every batch's are there it frees its teacher and reads them instead, so
 * its teacher runs once per batch rather than once per epoch.
 *
 * Checkpoints and the library. After every epoch LIB/retrain.state receives
 * every student's current and best weights (BatchNorm statistics included;
 * best only where retraining improved them, and only there: they are not
 * kept in memory), Adam's state and the losses, atomically; with resume a run continues from
 * it, after checking it belongs to this library and these options (a
 * staged run's checkpoint also holds the split, the stage, the cut's
 * checksums and, for a finished stage's students, only their losses and
 * kept weights; resuming keeps its split whatever `stages` says). The
 * library itself changes only once, at the end: the best weights go to new
 * descendant files, then manifest.json switches to them in one rename, then
 * the old files and retrain.state are removed (library_replace_descendant).
 * So an interrupted or failed run leaves the library exactly as it was and
 * every hash valid. Each retrained descendant's manifest entry gets
 * retraining_loss (held-out MSE of the kept weights), retraining_train_loss
 * (mean training MSE of the epoch that gave them; null when the original
 * weights were kept), retraining_initial_loss and retraining_epoch; s = 0
 * entries get 0. A top-level "retrain" object records the run. */
#ifndef LEGO_TRAIN_RETRAIN_H
#define LEGO_TRAIN_RETRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"

#define RETRAIN_STATE_FILE "retrain.state"
#define RETRAIN_FEATURES_FILE "retrain.features"

typedef struct retrain_options {
    const char *data;      /* dataset spec, as the task reads it */
    const char *task;      /* task name; NULL: "classification" */
    int epochs;            /* in all, a resumed run's earlier epochs included */
    int batch;
    float lr;              /* Adam's learning rate */
    int64_t max_train;     /* > 0: only the first samples of the train split */
    double holdout;        /* fraction of the train split's batches held out, (0, 0.5] */
    int64_t cache_bytes;   /* cap on cached features; 0: no cache; < 0: the default:
                              every batch when all fit in 256 MiB (or an eighth of
                              the memory when less), else none */
    uint64_t seed;         /* the data order */
    int stages;            /* 0: decide (see "Stages" above); 1: one; 2: two, at the cut
                              that gives the lowest estimated peak */
    bool resume;           /* continue from LIB/retrain.state when there is one */
    bool quiet;            /* no progress bars */
} retrain_options;

/* What the per-epoch callback sees. */
typedef struct retrain_epoch {
    int stage, stages;          /* 1-based; stages is 1 unless the run is split */
    int stage_blocks;           /* blocks whose descendants this stage trains */
    int epoch, epochs;          /* 1-based, within the stage */
    double train_loss;          /* mean over students of their mean training MSE */
    double holdout_loss;        /* mean over students of their held-out MSE */
    int improved;               /* students whose held-out MSE reached a new best */
    int64_t teacher_batches;    /* teacher passes this epoch (0 when cached) */
    double seconds, samples_per_sec;
} retrain_epoch;

/* Return false to stop after this epoch (its checkpoint is written): the run
 * then fails with "interrupted" and a later resume continues it. */
typedef bool (*retrain_epoch_fn)(void *ctx, const retrain_epoch *e);

typedef struct retrain_student {
    int block, desc;            /* indices into the library */
    double sparsity;
    char *file;                 /* its file after the run (library-relative) */
    double initial_loss;        /* held-out MSE of the extracted weights */
    double best_loss;           /* held-out MSE of the kept weights */
    double train_loss;          /* training MSE of the epoch that gave them (NaN: originals kept) */
    int best_epoch;             /* 0: the original weights were kept */
} retrain_student;

typedef struct retrain_result {
    int stages;                 /* 1, or 2 (see "Stages") */
    int first_stage;            /* 1-based: where this run began (a resumed one: the state's) */
    int stage_blocks[2];        /* blocks per stage */
    int64_t feature_file_bytes; /* the features saved between the stages (0: one stage) */
    int first_epoch;            /* 0, or the epochs of first_stage a resumed state held */
    int epochs_done;
    int64_t train_samples, holdout_samples;
    int64_t cache_bytes;        /* what the feature cache holds at the end */
    int64_t cached_batches, batches; /* of the train split's batches */
    /* teacher passes (batches) of this run: [0] before the first epoch (the
     * held-out features for the initial losses, and the cache), [e] during
     * epoch e (1-based); n_passes = epochs + 1 entries */
    int64_t *teacher_batches;   /* (summed over the stages) */
    int n_passes;
    int64_t teacher_total;      /* all of this run's */
    double seconds;             /* this run's wall time */
    double teacher_seconds;     /* of which running the teacher */
    double student_seconds;     /* and training and evaluating the students */
    bool shared_memory;         /* the students ran in the teacher's activation memory
                                   (one at a time, block by block inside its passes) */
    retrain_student *students;  /* the descendants with s > 0, block by block */
    int n_students;
} retrain_result;

/* Retrain every descendant of library `dir` (see above). on_epoch may be
 * NULL. res is filled as far as the run got (free it with
 * retrain_result_free either way). */
lego_status retrain_library(const char *dir, const retrain_options *o, retrain_epoch_fn on_epoch, void *ctx,
                            retrain_result *res);
void retrain_result_free(retrain_result *r);

#endif
