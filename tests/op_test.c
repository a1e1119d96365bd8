/* op_test.c - helpers for the op kernel tests (see op_test.h). */
#include "op_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng;

void test_seed(uint32_t seed) { rng = seed; }

uint32_t rnd(uint32_t n)
{
    rng = rng * 1664525u + 1013904223u;
    return (rng >> 8) % n;
}

float frand(void) { return (float)rnd(20001) / 10000.0f - 1.0f; }

void add_int(attrs *l, const char *name, int64_t v)
{
    l->a[l->n++] = (lego_attr){.name = (char *)name, .type = ATTR_INT, .i = v};
}

void add_ints(attrs *l, const char *name, int n, const int64_t *v)
{
    int k = l->n;
    memcpy(l->ints[k], v, (size_t)n * sizeof *v);
    l->a[l->n++] = (lego_attr){.name = (char *)name, .type = ATTR_INTS, .n = n, .ints = l->ints[k]};
}

void add_float(attrs *l, const char *name, float v)
{
    l->a[l->n++] = (lego_attr){.name = (char *)name, .type = ATTR_FLOAT, .f = v};
}

void add_str(attrs *l, const char *name, const char *s)
{
    l->a[l->n++] = (lego_attr){.name = (char *)name, .type = ATTR_STRING, .s = (char *)s};
}

void make(lego_tensor *t, lego_dtype dt, int rank, const int64_t *dims, int alloc)
{
    memset(t, 0, sizeof *t);
    tensor_set_shape(t, dt, rank, dims);
    if (alloc && tensor_alloc(t).code == LEGO_OK && dt == LEGO_F32)
        for (int64_t i = 0; i < lego_tensor_numel(t); i++)
            ((float *)t->data)[i] = frand();
}

lego_status run(const op_desc *d, attrs *l, int n_in, lego_tensor **in, int n_out,
                lego_tensor **out, int forward, int64_t *flops)
{
    attr_list al = {l->n, l->a};
    void *params = calloc(1, d->params_size);
    op_call c = {.attrs = &al, .node_name = "", .opset = 17, .n_in = n_in, .n_out = n_out,
                 .in = in, .out = out, .params = params};
    lego_status st = d->prepare(&c);
    if (st.code == LEGO_OK && flops)
        *flops = d->flops(&c);
    if (st.code == LEGO_OK && forward) {
        st = tensor_alloc(out[0]);
        if (st.code == LEGO_OK)
            d->forward(&c);
    }
    free(params);
    return st;
}

lego_status run1(const op_desc *d, attrs *l, int n_in, lego_tensor **in, lego_tensor *y,
                 int forward, int64_t *flops)
{
    lego_tensor *out[1] = {y};
    return run(d, l, n_in, in, 1, out, forward, flops);
}

static double weighted_sum(const op_call *c, lego_tensor *const *g)
{
    double sum = 0;
    for (int o = 0; o < c->n_out; o++) {
        const float *y = c->out[o]->data, *w = g[o]->data;
        for (int64_t i = 0; i < lego_tensor_numel(c->out[o]); i++)
            sum += (double)y[i] * w[i];
    }
    return sum;
}

int gradcheck(const op_desc *d, attrs *l, int opset, int n_in, lego_tensor **in, int n_out,
              unsigned mask, int training, float h, float atol, float rtol, int max_points,
              const char *what)
{
    attr_list al = {l->n, l->a};
    void *params = calloc(1, d->params_size + 1);
    lego_tensor outs[8], grads[8], dins[8];
    lego_tensor *out[8], *g[8], *din[8];
    memset(outs, 0, sizeof outs);
    memset(dins, 0, sizeof dins);
    for (int o = 0; o < n_out; o++)
        out[o] = &outs[o];
    op_call c = {.attrs = &al, .node_name = "", .opset = opset, .n_in = n_in, .n_out = n_out,
                 .in = in, .out = out, .params = params, .training = training};
    lego_status st = d->prepare(&c);
    if (st.code != LEGO_OK || !d->backward) {
        fprintf(stderr, "%s: %s\n", what, st.code ? lego_status_msg(st) : "no backward");
        lego_status_free(&st);
        harness_failed++;
        free(params);
        return 0;
    }
    for (int o = 0; o < n_out; o++) {
        tensor_alloc(out[o]);
        make(&grads[o], LEGO_F32, outs[o].rank, outs[o].dims, 1);
        g[o] = &grads[o];
    }
    for (int i = 0; i < n_in; i++) {
        din[i] = NULL;
        if (in[i] && (mask >> i & 1u)) {
            make(&dins[i], LEGO_F32, in[i]->rank, in[i]->dims, 1);
            memset(dins[i].data, 0, lego_tensor_bytes(&dins[i]));
            din[i] = &dins[i];
        }
    }
    d->forward(&c);
    d->backward(&c, g, din);
    int all_ok = 1;
    for (int i = 0; i < n_in; i++) {
        if (!din[i])
            continue;
        float *x = in[i]->data;
        const float *analytic = din[i]->data;
        int64_t n = lego_tensor_numel(in[i]);
        int64_t stride = n > max_points ? n / max_points : 1;
        int ok = 1;
        for (int64_t k = 0; k < n && ok; k += stride) {
            float saved = x[k];
            x[k] = saved + h;
            d->forward(&c);
            double plus = weighted_sum(&c, g);
            x[k] = saved - h;
            d->forward(&c);
            double minus = weighted_sum(&c, g);
            x[k] = saved;
            double numeric = (plus - minus) / (2.0 * h);
            double diff = fabs(analytic[k] - numeric);
            if (!(diff <= atol + rtol * fabs(numeric))) {
                fprintf(stderr, "%s: input %d element %lld: backward %g, finite differences %g\n",
                        what, i, (long long)k, analytic[k], numeric);
                ok = 0;
            }
        }
        CHECK(ok);
        all_ok &= ok;
    }
    for (int o = 0; o < n_out; o++) {
        tensor_release(&outs[o]);
        tensor_release(&grads[o]);
    }
    for (int i = 0; i < n_in; i++)
        tensor_release(&dins[i]);
    free(params);
    return all_ok;
}

lego_status run_backward(const op_desc *d, attrs *l, int training, int n_in, lego_tensor **in,
                         lego_tensor *y, lego_tensor *dy, lego_tensor **din)
{
    attr_list al = {l->n, l->a};
    void *params = calloc(1, d->params_size + 1);
    lego_tensor *out[1] = {y}, *dout[1] = {dy};
    op_call c = {.attrs = &al, .node_name = "", .opset = 17, .n_in = n_in, .n_out = 1,
                 .in = in, .out = out, .params = params, .training = training};
    lego_status st = d->prepare(&c);
    if (st.code == LEGO_OK)
        st = tensor_alloc(y);
    if (st.code == LEGO_OK) {
        d->forward(&c);
        make(dy, LEGO_F32, y->rank, y->dims, 1);
        d->backward(&c, dout, din);
    }
    free(params);
    return st;
}

/* Whether backward, for input i alone with c.fresh set, leaves exactly
 * `want` in its gradient: a buffer of NaN (got NULL) or dy's copy (both
 * the output gradient and the input's). */
static int written(const op_desc *d, op_call *c, const lego_tensor *dy, int i, const float *want, bool in_place,
                   const char *what)
{
    lego_tensor buf, g;
    lego_tensor *dout[1] = {&g}, *din[8] = {NULL};
    if (in_place) {
        tensor_clone(dy, &buf);
        dout[0] = &buf;
    } else {
        make(&buf, LEGO_F32, c->in[i]->rank, c->in[i]->dims, 1);
        for (int64_t k = 0; k < lego_tensor_numel(&buf); k++)
            ((float *)buf.data)[k] = NAN;
        g = *dy;
    }
    din[i] = &buf;
    c->fresh = 1u << i;
    d->backward(c, dout, din);
    c->fresh = 0;
    int ok = 1;
    for (int64_t k = 0; k < lego_tensor_numel(&buf) && ok; k++)
        if (!(((float *)buf.data)[k] == want[k])) {
            fprintf(stderr, "%s: input %d element %lld: %s %g, into zeros %g\n", what, i, (long long)k,
                    in_place ? "in place" : "written fresh", ((float *)buf.data)[k], want[k]);
            ok = 0;
        }
    tensor_release(&buf);
    return ok;
}

int check_writes(const op_desc *d, op_call *c, const lego_tensor *dy, int i, const lego_tensor *alone,
                 const char *what)
{
    int ok = 1;
    if (d->grad_writes >> i & 1u)
        ok &= written(d, c, dy, i, alone->data, false, what);
    if (d->grad_inplace >> i & 1u && tensor_same_shape(c->in[i], dy))
        ok &= written(d, c, dy, i, alone->data, true, what);
    return ok;
}

int check_accumulates(const op_desc *d, attrs *l, int n_in, lego_tensor **in, unsigned mask,
                      int training, const char *what)
{
    attr_list al = {l->n, l->a};
    void *params = calloc(1, d->params_size + 1);
    lego_tensor y = {0}, dy = {0}, zero[8], ones[8], alone;
    lego_tensor *out[1] = {&y}, *dout[1] = {&dy}, *din[8];
    op_call c = {.attrs = &al, .node_name = "", .opset = 17, .n_in = n_in, .n_out = 1,
                 .in = in, .out = out, .params = params, .training = training};
    lego_status st = d->prepare(&c);
    if (st.code == LEGO_OK)
        st = tensor_alloc(&y);
    if (st.code != LEGO_OK || !d->backward) {
        fprintf(stderr, "%s: %s\n", what, st.code ? lego_status_msg(st) : "no backward");
        lego_status_free(&st);
        harness_failed++;
        tensor_release(&y);
        free(params);
        return 0;
    }
    d->forward(&c);
    make(&dy, LEGO_F32, y.rank, y.dims, 1);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n_in; i++) {
            din[i] = NULL;
            if (!in[i] || !(mask >> i & 1u))
                continue;
            lego_tensor *t = pass ? &ones[i] : &zero[i];
            make(t, LEGO_F32, in[i]->rank, in[i]->dims, 1);
            for (int64_t k = 0; k < lego_tensor_numel(t); k++)
                ((float *)t->data)[k] = pass ? 1.0f : 0.0f;
            din[i] = t;
        }
        d->backward(&c, dout, din);
    }
    int all_ok = 1;
    for (int i = 0; i < n_in; i++) {
        if (!in[i] || !(mask >> i & 1u))
            continue;
        /* the same input alone */
        lego_tensor *one[8] = {NULL};
        make(&alone, LEGO_F32, in[i]->rank, in[i]->dims, 1);
        memset(alone.data, 0, lego_tensor_bytes(&alone));
        one[i] = &alone;
        d->backward(&c, dout, one);
        const float *z = zero[i].data, *o = ones[i].data, *a = alone.data;
        int ok = check_writes(d, &c, &dy, i, &alone, what);
        for (int64_t k = 0; k < lego_tensor_numel(in[i]) && ok; k++) {
            float tol = 1e-5f * (1.0f + fabsf(z[k]));
            if (!(fabsf(o[k] - (z[k] + 1.0f)) <= tol) || !(fabsf(a[k] - z[k]) <= tol)) {
                fprintf(stderr,
                        "%s: input %d element %lld: into zeros %g, into ones %g, alone %g\n",
                        what, i, (long long)k, z[k], o[k], a[k]);
                ok = 0;
            }
        }
        CHECK(ok);
        all_ok &= ok;
        tensor_release(&alone);
        tensor_release(&zero[i]);
        tensor_release(&ones[i]);
    }
    tensor_release(&y);
    tensor_release(&dy);
    free(params);
    return all_ok;
}
