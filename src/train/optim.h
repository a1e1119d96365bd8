/* optim.h - optimizers (SGD with momentum/Nesterov, Adam, AdamW) and
 * learning-rate schedules, with PyTorch's exact update rules so a run can be
 * checked step by step against torch.optim. */
#ifndef LEGO_TRAIN_OPTIM_H
#define LEGO_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"

typedef enum optim_kind { OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW } optim_kind;

typedef struct optim_config {
    optim_kind kind;
    float momentum;     /* SGD */
    bool nesterov;      /* SGD */
    float weight_decay; /* L2 added to the gradient (SGD, Adam); decoupled (AdamW) */
    float beta1, beta2, eps; /* Adam, AdamW */
} optim_config;

/* One trainable tensor: its weights, its gradient, and the state the
 * optimizer keeps for it (allocated by optim_init). */
typedef struct optim_param {
    float *w;
    const float *g;
    int64_t n;
    float *m; /* momentum buffer, or Adam's first moment */
    float *v; /* Adam's second moment */
} optim_param;

typedef struct optimizer {
    optim_config cfg;
    optim_param *p;
    int n_params;
    int64_t steps; /* updates done, for Adam's bias correction */
} optimizer;

optim_config optim_defaults(optim_kind kind);
/* w[i] and g[i] are n[i] floats each; the optimizer keeps the pointers. */
lego_status optim_init(optimizer *o, const optim_config *cfg, float *const *w, const float *const *g,
                       const int64_t *n, int count);
/* One update of every parameter with learning rate lr. */
void optim_step(optimizer *o, float lr);
void optim_free(optimizer *o);

typedef enum sched_kind { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE } sched_kind;

typedef struct schedule {
    sched_kind kind;
    float base_lr;
    int epochs;          /* the whole run, for cosine */
    int step_size;       /* SCHED_STEP: multiply by gamma every step_size epochs */
    float gamma;
    float eta_min;       /* SCHED_COSINE: the floor */
    int warmup_epochs;   /* linear warm-up first, from warmup_start*base_lr */
    float warmup_start;
} schedule;

/* The learning rate used during epoch e (0-based), as torch.optim's
 * schedulers give it when stepped once per epoch (LinearLR warm-up chained to
 * the main schedule with SequentialLR). */
float schedule_lr(const schedule *s, int epoch);

#endif
