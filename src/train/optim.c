/* optim.c - parameter updates and learning-rate schedules. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/threads.h"

optim_config optim_defaults(optim_kind kind)
{
    optim_config c = {0};
    c.kind = kind;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    if (kind == OPTIM_SGD)
        c.momentum = 0.9f;
    if (kind == OPTIM_ADAMW)
        c.weight_decay = 0.01f;
    return c;
}

lego_status optim_init(optimizer *o, const optim_config *cfg, float *const *w, const float *const *g,
                       const int64_t *n, int count)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->p = calloc((size_t)(count ? count : 1), sizeof *o->p);
    if (!o->p)
        return lego_error(LEGO_ERR_NOMEM, "out of memory for optimizer state");
    o->n_params = count;
    bool adam = cfg->kind != OPTIM_SGD;
    for (int i = 0; i < count; i++) {
        optim_param *p = &o->p[i];
        p->w = w[i];
        p->g = g[i];
        p->n = n[i];
        p->m = calloc((size_t)n[i] + 1, sizeof *p->m);
        p->v = adam ? calloc((size_t)n[i] + 1, sizeof *p->v) : NULL;
        if (!p->m || (adam && !p->v)) {
            optim_free(o);
            return lego_error(LEGO_ERR_NOMEM, "out of memory for optimizer state");
        }
    }
    return lego_ok();
}

void optim_free(optimizer *o)
{
    for (int i = 0; i < o->n_params; i++) {
        free(o->p[i].m);
        free(o->p[i].v);
    }
    free(o->p);
    memset(o, 0, sizeof *o);
}

/* One parameter's update over elements [begin, end): every element on its
 * own, so a split among the threads changes no bits. */
typedef struct update {
    const optim_config *c;
    optim_param *p;
    float lr;
    int64_t t;             /* the step, from 1 */
    float step_size, bc2_sqrt; /* Adam's bias corrections */
} update;

/* torch.optim.SGD with dampening 0: the first step seeds the buffer with the
 * gradient itself rather than decaying from zero. */
static void sgd_range(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const update *u = ctx;
    const optim_config *c = u->c;
    optim_param *p = u->p;
    for (int64_t i = begin; i < end; i++) {
        float g = p->g[i] + c->weight_decay * p->w[i];
        if (c->momentum != 0) {
            float buf = u->t == 1 ? g : c->momentum * p->m[i] + g;
            p->m[i] = buf;
            g = c->nesterov ? g + c->momentum * buf : buf;
        }
        p->w[i] -= u->lr * g;
    }
}

static void adam_range(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const update *u = ctx;
    const optim_config *c = u->c;
    optim_param *p = u->p;
    bool decoupled = c->kind == OPTIM_ADAMW;
    for (int64_t i = begin; i < end; i++) {
        float g = p->g[i];
        if (decoupled)
            p->w[i] *= 1.0f - u->lr * c->weight_decay;
        else
            g += c->weight_decay * p->w[i];
        p->m[i] = c->beta1 * p->m[i] + (1.0f - c->beta1) * g;
        p->v[i] = c->beta2 * p->v[i] + (1.0f - c->beta2) * g * g;
        float denom = sqrtf(p->v[i]) / u->bc2_sqrt + c->eps;
        p->w[i] -= u->step_size * p->m[i] / denom;
    }
}

/* Large parameters (a 512x512 convolution's 2.4M weights) are split among
 * the threads; the rest run inline. */
void optim_step(optimizer *o, float lr)
{
    o->steps++;
    const optim_config *c = &o->cfg;
    update u = {c, NULL, lr, o->steps, 0, 0};
    if (c->kind != OPTIM_SGD) {
        double bc1 = 1.0 - pow(c->beta1, (double)u.t);
        double bc2 = 1.0 - pow(c->beta2, (double)u.t);
        u.step_size = (float)(lr / bc1);
        u.bc2_sqrt = (float)sqrt(bc2);
    }
    for (int i = 0; i < o->n_params; i++) {
        u.p = &o->p[i];
        parallel_run(u.p->n, par_split_work(u.p->n, 12.0), c->kind == OPTIM_SGD ? sgd_range : adam_range, &u);
    }
}

float schedule_lr(const schedule *s, int epoch)
{
    if (epoch < s->warmup_epochs) {
        /* LinearLR: the factor climbs from warmup_start to 1 over the warm-up */
        float f = s->warmup_start + (1.0f - s->warmup_start) * (float)epoch / (float)s->warmup_epochs;
        return s->base_lr * f;
    }
    int e = epoch - s->warmup_epochs;
    switch (s->kind) {
    case SCHED_STEP:
        return s->base_lr * powf(s->gamma, (float)(s->step_size > 0 ? e / s->step_size : 0));
    case SCHED_COSINE: {
        int span = s->epochs - s->warmup_epochs;
        if (span <= 0)
            return s->base_lr;
        double c = cos(3.14159265358979323846 * (double)e / (double)span);
        return (float)(s->eta_min + (s->base_lr - s->eta_min) * (1.0 + c) / 2.0);
    }
    default:
        return s->base_lr;
    }
}
