/* trainer.h - training and evaluating an image classifier held in our IR.
 *
 * The model is any graph with one float input (N,C,H,W) and one output
 * (N,classes): imported from ONNX or built in (zoo.h). Training is
 * cross-entropy on the dataset's train split with the chosen optimizer and
 * schedule; after every epoch the model is evaluated on the test split and
 * checkpointed (the ONNX file plus a ".state" file with the optimizer's
 * state), so an interrupted run resumes where it stopped, with the same
 * batches. */
#ifndef LEGO_TRAIN_TRAINER_H
#define LEGO_TRAIN_TRAINER_H

#include "../graph/graph.h"
#include "optim.h"

typedef struct train_options {
    const char *data;       /* dataset spec (see data/dataset.h) */
    const char *out;        /* the trained ONNX file; OUT.state beside it */
    int epochs;
    int batch;
    optim_config optim;
    schedule sched;         /* base_lr is the learning rate */
    float label_smoothing;
    uint64_t seed;
    int64_t max_train, max_test; /* > 0: use only the first samples */
    bool augment;           /* random crop (pad H/8) and horizontal flip */
    bool resume;            /* continue from OUT and OUT.state if present */
    bool quiet;             /* no progress bars */
} train_options;

typedef struct epoch_stats {
    int epoch;
    float lr;
    double train_loss, train_acc, test_loss, test_acc;
    double seconds, images_per_sec;
} epoch_stats;

typedef struct train_result {
    int epochs_done;      /* including those of a resumed run */
    int first_epoch;      /* 0, or where a resumed run started */
    epoch_stats last;
    double seconds;       /* this run's wall time */
    int64_t params;
} train_result;

/* Trains g in place and writes opt->out. The per-epoch callback (may be
 * NULL) sees each epoch's statistics as they come. */
lego_status train_classifier(lego_graph *g, const train_options *opt,
                             void (*on_epoch)(const epoch_stats *s, void *ctx), void *ctx,
                             train_result *res);

/* The float initializers a training run updates: all but those some node
 * reads as configuration (BatchNorm running statistics, shapes, pads,
 * scales, bounds). *out is malloc'd value indices. */
lego_status train_trainable_params(const lego_graph *g, int **out, int *n);

typedef struct eval_result {
    int64_t samples;
    double loss, accuracy;
    double seconds;
    int num_classes;
} eval_result;

/* Top-1 accuracy and mean cross-entropy of g on the test split of data,
 * normalised as the model's metadata says (or with the train split's
 * statistics). batch <= 0 picks one. */
lego_status eval_classifier(lego_graph *g, const char *data, int batch, int64_t max_test,
                            bool quiet, eval_result *res);

#endif
