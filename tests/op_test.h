/* op_test.h - helpers for the tests that call op kernels through their
 * descriptors (test_ops_conv.c, test_ops_pool.c, ...): seeded random data,
 * attribute lists built by hand, and one call of prepare and forward.
 * Compiled into every test program next to harness.c. */
#ifndef LEGO_TEST_OP_TEST_H
#define LEGO_TEST_OP_TEST_H

#include <stdint.h>

#include "core/tensor.h"
#include "harness.h"
#include "ops/op.h"

/* A linear congruential generator: each test seeds it once, so every run
 * sees the same data. rnd(n) is in [0, n), frand() in [-1, 1]. */
void test_seed(uint32_t seed);
uint32_t rnd(uint32_t n);
float frand(void);

/* A node's attributes; names and strings are borrowed, ints are copied. */
typedef struct attrs {
    int n;
    lego_attr a[12];
    int64_t ints[12][8];
} attrs;

void add_int(attrs *l, const char *name, int64_t v);
void add_ints(attrs *l, const char *name, int n, const int64_t *v);
void add_float(attrs *l, const char *name, float v);
void add_str(attrs *l, const char *name, const char *s);

/* t set to shape dims; with alloc, its data allocated and, for float32,
 * filled with frand(). */
void make(lego_tensor *t, lego_dtype dt, int rank, const int64_t *dims, int alloc);

/* prepare at opset 17, then flops (when flops is set) and, if it worked and
 * forward is set, allocate out[0] and run forward. */
lego_status run(const op_desc *d, attrs *l, int n_in, lego_tensor **in, int n_out,
                lego_tensor **out, int forward, int64_t *flops);
/* run with the one output y. */
lego_status run1(const op_desc *d, attrs *l, int n_in, lego_tensor **in, lego_tensor *y,
                 int forward, int64_t *flops);

/* Finite-difference check of d->backward at opset `opset`. The loss is
 * L = sum over outputs o of <out_o, g_o> with a fixed random g_o, so dL/dout
 * is g and backward's din must match central differences
 * (L(x+h) - L(x-h)) / 2h, summed in double. Checks input i when bit i of
 * mask is set, at up to max_points elements spread over the tensor;
 * |analytic - numeric| <= atol + rtol*|numeric| must hold at each. Inputs
 * must have data; outputs are allocated here. training sets op_call.training
 * for every forward and for backward. Records one CHECK per input checked;
 * returns nonzero when all agree. */
int gradcheck(const op_desc *d, attrs *l, int opset, int n_in, lego_tensor **in, int n_out,
              unsigned mask, int training, float h, float atol, float rtol, int max_points,
              const char *what);

/* prepare (opset 17, op_call.training = training), forward into the one
 * output y (allocated here), then backward with dY = dy, which is made here
 * the shape of y and filled with frand(); din has n_in entries, NULL where
 * no gradient is wanted. The caller releases y and dy. */
lego_status run_backward(const op_desc *d, attrs *l, int training, int n_in, lego_tensor **in,
                         lego_tensor *y, lego_tensor *dy, lego_tensor **din);

/* The backward contract beyond the values gradcheck sees: for one forward
 * and one random dY, backward with din[i] prefilled with ones must give
 * exactly one more than into zeros (it adds, never overwrites), and asking
 * for each masked input alone must give what asking for all of them gives;
 * an input in op_desc.grad_writes, told its gradient is fresh
 * (op_call.fresh), must write every element of a buffer of NaN with what
 * adding into zeros gives, and one in grad_inplace the same over dY's own
 * buffer.
 * Records one CHECK per masked input; returns nonzero when all hold. */
int check_accumulates(const op_desc *d, attrs *l, int n_in, lego_tensor **in, unsigned mask,
                      int training, const char *what);

/* For input i of the forward call c (dy its output gradient, `alone` the
 * gradient backward added into zeros for input i alone): when the op
 * writes a fresh gradient (op_desc.grad_writes), backward told so must
 * write a buffer of NaN with exactly `alone`; when it may do so in place
 * (grad_inplace, one shape), the same over a copy of dy that is both its
 * output gradient and the input's. Returns nonzero when both hold (or do
 * not apply); says what differs on stderr. */
int check_writes(const op_desc *d, op_call *c, const lego_tensor *dy, int i, const lego_tensor *alone,
                 const char *what);

#endif
