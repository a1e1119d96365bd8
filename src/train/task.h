/* task.h - how the stages feed a model data and score its outputs.
 *
 * The pipeline (training, retraining, profiling) reaches accuracy, data and
 * inference through a lego_task (include/legodnn.h): a table of callbacks an
 * application can supply. This file is the internal side: task_find names
 * the built-in tasks, and task_open/next/score/metric dispatch through the
 * table for one model held in our IR. Image classification is built in
 * (lego_task_classification); the helpers it shares with trainer.c
 * (normalisation, dataset checks, transforms) live here too, in one copy.
 *
 * Typical use (evaluation of a model g on the test split):
 *   task_data *d;
 *   task_open(task_find("classification"), "fashion-mnist", g, 100, -1, 0, 0, &d);
 *   task_start(d, SPLIT_TEST, 0);
 *   while ((n = task_next(d, SPLIT_TEST, x)) > 0) {
 *       run g on x (batch,C,H,W);
 *       task_score(d, outputs, n);
 *   }
 *   acc = task_metric(d, true);
 *   task_close(d);
 */
#ifndef LEGO_TRAIN_TASK_H
#define LEGO_TRAIN_TASK_H

#include <stdbool.h>
#include <stddef.h>

#include "../data/dataset.h"
#include "../graph/graph.h"

typedef struct task_data task_data; /* a task's data opened for one model */

/* The built-in tasks by name: "classification" (top-1 accuracy). NULL if
 * unknown. */
const lego_task *task_find(const char *name);
/* The built-in task names, comma-separated, for messages. */
const char *task_names(void);

/* Open dataset `spec` for `model` (one float input (N,C,H,W)): batches are
 * shaped to the model's input and normalised as its metadata says (else with
 * the train split's statistics). batch > 0; max_train/max_test > 0 cap the
 * splits, 0 keeps all, < 0 leaves the split out (its passes are empty; the
 * train split is still read for statistics when the model has none). */
lego_status task_open(const lego_task *t, const char *spec, const lego_graph *model, int batch,
                      int64_t max_train, int64_t max_test, uint64_t seed, task_data **out);
/* Deterministic order per (seed, epoch); train split shuffled, test not; no
 * augmentation. The train split drops a short last batch when it has at
 * least one full batch (BatchNorm statistics of a tiny batch are noise). */
void task_start(task_data *d, data_split split, int epoch);
/* Fills x (batch,C,H,W); returns samples, 0 at the end; remembers the
 * batch's targets. */
int64_t task_next(task_data *d, data_split split, float *x);
/* Scores the model outputs (the model's outputs in graph order, batch
 * first) for the last batch task_next returned, whose size was n. */
void task_score(task_data *d, const lego_tensor *const *outputs, int64_t n);
/* The metric so far (top-1 accuracy in [0,1]); reset starts a new tally. */
double task_metric(task_data *d, bool reset);
int64_t task_batches(const task_data *d, data_split split);
/* The running tally behind task_metric as bytes, so one pass over a split
 * can score several models (profiling): tally_bytes is 0 when the task
 * cannot do this (a task from outside; score one model per pass then);
 * tally_get copies the tally out, tally_set puts one back (tally_bytes of
 * them; all zero bytes is a fresh tally). */
size_t task_tally_bytes(const task_data *d);
void task_tally_get(const task_data *d, void *buf);
void task_tally_set(task_data *d, const void *buf);
/* task_tally_bytes of a task before it is opened. */
size_t task_kind_tally_bytes(const lego_task *t);
/* sum += part: the tally of both sets of batches together (passes over
 * parts of a split, scored apart). */
void task_tally_add(const task_data *d, void *sum, const void *part);
/* The task it was opened with. */
const lego_task *task_of(const task_data *d);
void task_close(task_data *d);

/* ---- the classification helpers trainer.c shares ---------------------- */

/* The input and output of an (N,C,H,W) -> (N,classes) classifier. */
typedef struct classifier {
    int c, h, w, classes;
    int input, output; /* value indices */
} classifier;

lego_status classifier_of(const lego_graph *g, classifier *m);

/* Shapes follow the batch size: a dynamic batch axis of g's first input
 * takes `batch` (and shapes are inferred again), a fixed one must already
 * equal it. */
lego_status task_set_batch(lego_graph *g, int batch);
/* The batch size g's first input is fixed at, or 0 when it is dynamic. */
int task_fixed_batch(const lego_graph *g);

/* Per-channel mean and std (out_c <= 4 channels) to normalise inputs with:
 * parsed from the metadata strings mean_meta/std_meta ("a,b,c") when both are
 * given and parse, else the statistics of `train` (gray replicated to every
 * channel). Returns true when they came from the metadata. */
bool task_normalisation(const char *mean_meta, const char *std_meta, const dataset *train,
                        int out_c, float *mean, float *std);
/* "a,b,c" with %.9g (a float round-trips exactly); buf of 128 bytes. */
void task_format_floats(const float *v, int n, char *buf, size_t len);
/* An error when dataset d cannot feed a model of c channels and `classes`
 * outputs (classes <= 0: not checked). */
lego_status task_check_fits(const char *model_name, const dataset *d, int c, int classes);
/* The loader's transform for a (c,h,w) input; augment adds random crop (pad
 * h/8) and horizontal flip. */
transform task_transform(int c, int h, int w, const float *mean, const float *std, bool augment);

#endif
