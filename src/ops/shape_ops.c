/* shape_ops.c - ops that move, select or create data without arithmetic:
 * Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Slice, Gather,
 * Expand, Shape, Identity, Dropout, Constant, Cast, ConstantOfShape.
 *
 * All are generic over the element size (float32, int64, bool), because
 * exported models route int64 shape arithmetic through the same ops as
 * activations (Shape -> Gather -> Unsqueeze -> Concat -> Reshape). Inputs
 * that decide an output shape (Reshape's shape, Slice's starts, ...) must be
 * constants; they are read and checked in prepare.
 *
 * Backward moves float32 gradients back along the same paths (scattering
 * where forward gathered, summing where it repeated); integer and bool
 * values carry no gradient. Shape's backward adds nothing (its output
 * depends on no value); Constant and ConstantOfShape have no backward, as
 * they have no float input. */
#include <math.h>
#include <string.h>

#include "op.h"

/* ---- helpers ------------------------------------------------------------ */

static size_t esize(const lego_tensor *t) { return lego_dtype_size(t->dtype); }

static lego_status check_dtype_known(const op_call *c, const lego_tensor *t, const char *what)
{
    if (esize(t) == 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "%s has unsupported dtype %s", what,
                        dtype_name(t->dtype));
    return lego_ok();
}

/* Output 0 takes input 0's bytes unchanged (the ops that only relabel dims). */
static void copy_forward(const op_call *c)
{
    size_t bytes = lego_tensor_bytes(c->out[0]);
    if (bytes && c->out[0]->data != c->in[0]->data)
        memcpy(c->out[0]->data, c->in[0]->data, bytes);
}

/* din[0]'s data when dout[0] and din[0] are float32 gradients, else NULL. */
static float *float_grad(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    if (!dout[0] || !din[0] || c->out[0]->dtype != LEGO_F32 || din[0]->dtype != LEGO_F32)
        return NULL;
    return din[0]->data;
}

/* The backward of the relabelling ops: dx += dy, float32 only (other
 * dtypes carry no gradient). */
static void copy_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    float *dx = float_grad(c, dout, din);
    if (!dx)
        return;
    const float *g = dout[0]->data;
    int64_t n = lego_tensor_numel(c->out[0]);
    for (int64_t i = 0; i < n; i++)
        dx[i] += g[i];
}

/* Read constant integer input i, a scalar or 1-D list of at most `max`
 * values, into v; *n gets the count. */
static lego_status read_const_ints(const op_call *c, int i, const char *what, int max,
                                   int64_t *v, int *n)
{
    const lego_tensor *t = c->in[i];
    if (!t->data)
        return op_error(c, LEGO_ERR_UNSUPPORTED,
                        "%s (input %d) must be a constant known at load", what, i);
    if (t->dtype != LEGO_I64)
        return op_error(c, LEGO_ERR_SHAPE, "%s is %s, expected int64", what,
                        dtype_name(t->dtype));
    if (t->rank > 1)
        return op_error(c, LEGO_ERR_SHAPE, "%s must be 1-D, got rank %d", what, t->rank);
    int64_t count = lego_tensor_numel(t);
    if (count > max)
        return op_error(c, LEGO_ERR_SHAPE, "%s has %lld values, at most %d allowed", what,
                        (long long)count, max);
    for (int64_t k = 0; k < count; k++)
        v[k] = tensor_get_i64(t, k);
    *n = (int)count;
    return lego_ok();
}

/* "2x3x-1" for messages about requested shapes. */
static const char *dims_str(const int64_t *dims, int rank, char *buf, size_t len)
{
    lego_tensor t = {.rank = rank};
    for (int d = 0; d < rank && d < LEGO_MAX_RANK; d++)
        t.dims[d] = dims[d];
    return tensor_shape_str(&t, buf, len);
}

/* dst[i] = src[i * stride] for i < n; elements of es bytes, stride in
 * elements (0 repeats one element, negative walks backwards). */
static void copy_row(char *dst, const char *src, int64_t stride, int64_t n, size_t es)
{
    int64_t sb = stride * (int64_t)es;
    switch (es) { /* constant sizes let memcpy become one load and store */
    case 1: for (int64_t i = 0; i < n; i++) memcpy(dst + i, src + i * sb, 1); break;
    case 4: for (int64_t i = 0; i < n; i++) memcpy(dst + 4 * i, src + i * sb, 4); break;
    case 8: for (int64_t i = 0; i < n; i++) memcpy(dst + 8 * i, src + i * sb, 8); break;
    default: for (int64_t i = 0; i < n; i++) memcpy(dst + i * (int64_t)es, src + i * sb, es);
    }
}

/* y (dims, contiguous) gets x[base + sum_d idx[d] * step[d]], in elements:
 * the common kernel of Transpose (permuted strides), Expand (0 strides) and
 * Slice (start offset, strides times steps). */
static void strided_copy(char *y, const char *x, int rank, const int64_t *dims, int64_t base,
                         const int64_t *step, size_t es)
{
    if (rank == 0) {
        memcpy(y, x + base * (int64_t)es, es);
        return;
    }
    int last = rank - 1;
    int64_t len = dims[last], rows = 1;
    for (int d = 0; d < last; d++)
        rows *= dims[d];
    if (len == 0 || rows == 0)
        return;
    int64_t idx[LEGO_MAX_RANK] = {0}, off = base;
    for (int64_t r = 0; r < rows; r++) {
        copy_row(y + r * len * (int64_t)es, x + off * (int64_t)es, step[last], len, es);
        op_index_next(last, dims, step, idx, &off);
    }
}

/* The backward of strided_copy for float32: x[base + sum_d idx[d] * step[d]]
 * += g[idx] (g contiguous over dims). Elements read more than once (0 steps)
 * receive every contribution. */
static void strided_add(float *x, const float *g, int rank, const int64_t *dims, int64_t base,
                        const int64_t *step)
{
    if (rank == 0) {
        x[base] += g[0];
        return;
    }
    int last = rank - 1;
    int64_t len = dims[last], rows = 1, s = step[last];
    for (int d = 0; d < last; d++)
        rows *= dims[d];
    if (len == 0 || rows == 0)
        return;
    int64_t idx[LEGO_MAX_RANK] = {0}, off = base;
    for (int64_t r = 0; r < rows; r++) {
        float *dst = x + off;
        const float *src = g + r * len;
        for (int64_t i = 0; i < len; i++)
            dst[i * s] += src[i];
        op_index_next(last, dims, step, idx, &off);
    }
}

/* ---- Reshape ------------------------------------------------------------ */

static lego_status reshape_prepare(op_call *c)
{
    const lego_tensor *x = c->in[0];
    LEGO_TRY(check_dtype_known(c, x, "input"));
    int64_t allowzero;
    LEGO_TRY(attr_get_int(c->attrs, "allowzero", 0, &allowzero));
    int64_t want[LEGO_MAX_RANK], dims[LEGO_MAX_RANK];
    int rank;
    LEGO_TRY(read_const_ints(c, 1, "shape", LEGO_MAX_RANK, want, &rank));

    char sx[96], sw[96];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < rank; i++) {
        int64_t v = want[i];
        if (v == -1) {
            if (infer >= 0)
                return op_error(c, LEGO_ERR_SHAPE, "shape %s has more than one -1",
                                dims_str(want, rank, sw, sizeof sw));
            infer = i;
            dims[i] = 1;
            continue;
        }
        if (v < -1)
            return op_error(c, LEGO_ERR_SHAPE, "shape %s has a negative dimension",
                            dims_str(want, rank, sw, sizeof sw));
        if (v == 0 && !allowzero) { /* 0 means "copy the input's dimension" */
            if (i >= x->rank)
                return op_error(c, LEGO_ERR_SHAPE,
                                "shape %s copies dimension %d, but the input %s has rank %d",
                                dims_str(want, rank, sw, sizeof sw), i,
                                tensor_shape_str(x, sx, sizeof sx), x->rank);
            v = x->dims[i];
        }
        dims[i] = v;
        known *= v;
    }
    int64_t numel = lego_tensor_numel(x);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return op_error(c, LEGO_ERR_SHAPE,
                            "cannot reshape %s (%lld elements) to %s: no size fits the -1",
                            tensor_shape_str(x, sx, sizeof sx), (long long)numel,
                            dims_str(want, rank, sw, sizeof sw));
        dims[infer] = numel / known;
        known = numel;
    }
    if (known != numel)
        return op_error(c, LEGO_ERR_SHAPE,
                        "cannot reshape %s (%lld elements) to %s (%lld elements)",
                        tensor_shape_str(x, sx, sizeof sx), (long long)numel,
                        dims_str(dims, rank, sw, sizeof sw), (long long)known);
    tensor_set_shape(c->out[0], x->dtype, rank, dims);
    return lego_ok();
}

const op_desc op_desc_Reshape = {.name = "Reshape", .min_in = 2, .max_in = 2, .min_out = 1,
                                 .max_out = 1, .const_inputs = 1u << 1,
                                 .prepare = reshape_prepare, .forward = copy_forward,
                                 .backward = copy_backward};

/* ---- Flatten ------------------------------------------------------------ */

static lego_status flatten_prepare(op_call *c)
{
    const lego_tensor *x = c->in[0];
    LEGO_TRY(check_dtype_known(c, x, "input"));
    int64_t axis;
    LEGO_TRY(attr_get_int(c->attrs, "axis", 1, &axis));
    if (axis < 0)
        axis += x->rank;
    if (axis < 0 || axis > x->rank) /* axis == rank is allowed: [numel, 1] */
        return op_error(c, LEGO_ERR_SHAPE, "axis is out of range for rank %d", x->rank);
    int64_t dims[2] = {1, 1};
    for (int d = 0; d < x->rank; d++)
        dims[d < axis ? 0 : 1] *= x->dims[d];
    tensor_set_shape(c->out[0], x->dtype, 2, dims);
    return lego_ok();
}

const op_desc op_desc_Flatten = {.name = "Flatten", .min_in = 1, .max_in = 1, .min_out = 1,
                                 .max_out = 1, .prepare = flatten_prepare,
                                 .forward = copy_forward, .backward = copy_backward};

/* ---- Squeeze, Unsqueeze ----------------------------------------------- */

/* Axes from input 1 (opset >= 13) or the `axes` attribute (before).
 * *given is false when neither is there. */
static lego_status read_axes(const op_call *c, int64_t *axes, int *n, bool *given)
{
    *n = 0;
    *given = false;
    if (op_input(c, 1)) {
        LEGO_TRY(read_const_ints(c, 1, "axes", LEGO_MAX_RANK, axes, n));
        *given = true;
        return lego_ok();
    }
    const int64_t *a = NULL;
    int na = 0;
    LEGO_TRY(attr_get_ints(c->attrs, "axes", &a, &na));
    if (!a)
        return lego_ok();
    if (na > LEGO_MAX_RANK)
        return op_error(c, LEGO_ERR_SHAPE, "%d axes given, at most %d allowed", na,
                        LEGO_MAX_RANK);
    memcpy(axes, a, (size_t)na * sizeof *axes);
    *n = na;
    *given = true;
    return lego_ok();
}

static lego_status squeeze_prepare(op_call *c)
{
    const lego_tensor *x = c->in[0];
    LEGO_TRY(check_dtype_known(c, x, "input"));
    int64_t axes[LEGO_MAX_RANK];
    int n;
    bool given;
    LEGO_TRY(read_axes(c, axes, &n, &given));
    bool drop[LEGO_MAX_RANK] = {false};
    if (!given || n == 0) {
        for (int d = 0; d < x->rank; d++)
            drop[d] = x->dims[d] == 1;
    }
    for (int i = 0; i < n; i++) {
        int a;
        LEGO_TRY(op_axis_once(c, axes[i], x->rank, drop, &a));
        if (x->dims[a] != 1) {
            char sx[96];
            return op_error(c, LEGO_ERR_SHAPE, "cannot squeeze axis %d of %s: its size is %lld",
                            a, tensor_shape_str(x, sx, sizeof sx), (long long)x->dims[a]);
        }
    }
    int64_t dims[LEGO_MAX_RANK];
    int rank = 0;
    for (int d = 0; d < x->rank; d++)
        if (!drop[d])
            dims[rank++] = x->dims[d];
    tensor_set_shape(c->out[0], x->dtype, rank, dims);
    return lego_ok();
}

static lego_status unsqueeze_prepare(op_call *c)
{
    const lego_tensor *x = c->in[0];
    LEGO_TRY(check_dtype_known(c, x, "input"));
    int64_t axes[LEGO_MAX_RANK];
    int n;
    bool given;
    LEGO_TRY(read_axes(c, axes, &n, &given));
    if (!given)
        return op_error(c, LEGO_ERR_FORMAT, "axes are required");
    int rank = x->rank + n;
    if (rank > LEGO_MAX_RANK)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "result would have rank %d, at most %d allowed",
                        rank, LEGO_MAX_RANK);
    bool ins[LEGO_MAX_RANK] = {false};
    for (int i = 0; i < n; i++) {
        int a;
        LEGO_TRY(op_axis_once(c, axes[i], rank, ins, &a)); /* axes index the output */
    }
    int64_t dims[LEGO_MAX_RANK];
    for (int d = 0, k = 0; d < rank; d++)
        dims[d] = ins[d] ? 1 : x->dims[k++];
    tensor_set_shape(c->out[0], x->dtype, rank, dims);
    return lego_ok();
}

const op_desc op_desc_Squeeze = {.name = "Squeeze", .min_in = 1, .max_in = 2, .min_out = 1,
                                 .max_out = 1, .const_inputs = 1u << 1,
                                 .prepare = squeeze_prepare, .forward = copy_forward,
                                 .backward = copy_backward};
const op_desc op_desc_Unsqueeze = {.name = "Unsqueeze", .min_in = 1, .max_in = 2, .min_out = 1,
                                   .max_out = 1, .const_inputs = 1u << 1,
                                   .prepare = unsqueeze_prepare, .forward = copy_forward,
                                   .backward = copy_backward};

/* ---- Transpose ---------------------------------------------------------- */

typedef struct transpose_params {
    int perm[LEGO_MAX_RANK];
} transpose_params;

static lego_status transpose_prepare(op_call *c)
{
    transpose_params *p = c->params;
    const lego_tensor *x = c->in[0];
    LEGO_TRY(check_dtype_known(c, x, "input"));
    const int64_t *perm = NULL;
    int n = 0;
    LEGO_TRY(attr_get_ints(c->attrs, "perm", &perm, &n));
    if (perm && n != x->rank)
        return op_error(c, LEGO_ERR_SHAPE, "perm has %d entries for an input of rank %d", n,
                        x->rank);
    bool seen[LEGO_MAX_RANK] = {false};
    int64_t dims[LEGO_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        int64_t a = perm ? perm[i] : x->rank - 1 - i;
        if (a < 0 || a >= x->rank || seen[a])
            return op_error(c, LEGO_ERR_SHAPE, "perm is not a permutation of 0..%d",
                            x->rank - 1);
        seen[a] = true;
        p->perm[i] = (int)a;
        dims[i] = x->dims[a];
    }
    tensor_set_shape(c->out[0], x->dtype, x->rank, dims);
    return lego_ok();
}

/* x: any shape; y[.., i_d, ..] = x[.., i_d at position perm[d], ..] */
static void transpose_forward(const op_call *c)
{
    const transpose_params *p = c->params;
    const lego_tensor *x = c->in[0], *y = c->out[0];
    int64_t xs[LEGO_MAX_RANK], step[LEGO_MAX_RANK];
    tensor_strides(x, xs);
    for (int d = 0; d < y->rank; d++)
        step[d] = xs[p->perm[d]];
    strided_copy(y->data, x->data, y->rank, y->dims, 0, step, esize(x));
}

/* dx = dy moved back through the inverse permutation: walk dy in order and
 * add each element at the x offset forward read it from. */
static void transpose_backward(const op_call *c, lego_tensor *const *dout,
                               lego_tensor *const *din)
{
    const transpose_params *p = c->params;
    float *dx = float_grad(c, dout, din);
    if (!dx)
        return;
    const lego_tensor *x = c->in[0], *y = c->out[0];
    int64_t xs[LEGO_MAX_RANK], step[LEGO_MAX_RANK];
    tensor_strides(x, xs);
    for (int d = 0; d < y->rank; d++)
        step[d] = xs[p->perm[d]];
    strided_add(dx, dout[0]->data, y->rank, y->dims, 0, step);
}

const op_desc op_desc_Transpose = {.name = "Transpose", .min_in = 1, .max_in = 1, .min_out = 1,
                                   .max_out = 1, .params_size = sizeof(transpose_params),
                                   .prepare = transpose_prepare, .forward = transpose_forward,
                                   .backward = transpose_backward};

/* ---- Concat ------------------------------------------------------------- */

typedef struct axis_params {
    int axis;
} axis_params;

static lego_status concat_prepare(op_call *c)
{
    axis_params *p = c->params;
    if (!attr_find(c->attrs, "axis"))
        return op_error(c, LEGO_ERR_FORMAT, "attribute 'axis' is required");
    int64_t axis;
    LEGO_TRY(attr_get_int(c->attrs, "axis", 0, &axis));
    for (int i = 0; i < c->n_in; i++)
        if (!c->in[i])
            return op_error(c, LEGO_ERR_FORMAT, "input %d is missing", i);
    const lego_tensor *x0 = c->in[0];
    LEGO_TRY(check_dtype_known(c, x0, "input 0"));
    LEGO_TRY(op_axis(c, axis, x0->rank, &p->axis));
    int64_t dims[LEGO_MAX_RANK];
    memcpy(dims, x0->dims, sizeof dims);
    for (int i = 1; i < c->n_in; i++) {
        const lego_tensor *t = c->in[i];
        char s0[96], si[96];
        if (t->dtype != x0->dtype)
            return op_error(c, LEGO_ERR_SHAPE, "input %d is %s but input 0 is %s", i,
                            dtype_name(t->dtype), dtype_name(x0->dtype));
        bool fits = t->rank == x0->rank;
        for (int d = 0; fits && d < x0->rank; d++)
            fits = d == p->axis || t->dims[d] == x0->dims[d];
        if (!fits)
            return op_error(c, LEGO_ERR_SHAPE,
                            "input %d (%s) does not match input 0 (%s) outside axis %d", i,
                            tensor_shape_str(t, si, sizeof si),
                            tensor_shape_str(x0, s0, sizeof s0), p->axis);
        dims[p->axis] += t->dims[p->axis];
    }
    tensor_set_shape(c->out[0], x0->dtype, x0->rank, dims);
    return lego_ok();
}

/* inputs [outer, d_i, inner] -> y [outer, sum d_i, inner] */
static void concat_forward(const op_call *c)
{
    const axis_params *p = c->params;
    const lego_tensor *y = c->out[0];
    size_t es = esize(y);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < p->axis; d++)
        outer *= y->dims[d];
    for (int d = p->axis + 1; d < y->rank; d++)
        inner *= y->dims[d];
    char *dst = y->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int i = 0; i < c->n_in; i++) {
            size_t chunk = (size_t)(c->in[i]->dims[p->axis] * inner) * es;
            if (chunk) {
                memcpy(dst, (const char *)c->in[i]->data + (size_t)o * chunk, chunk);
                dst += chunk;
            }
        }
    }
}

/* dy [outer, sum d_i, inner] split back into each input's [outer, d_i, inner] */
static void concat_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const axis_params *p = c->params;
    const lego_tensor *y = c->out[0];
    if (!dout[0] || y->dtype != LEGO_F32)
        return;
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < p->axis; d++)
        outer *= y->dims[d];
    for (int d = p->axis + 1; d < y->rank; d++)
        inner *= y->dims[d];
    const float *g = dout[0]->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int i = 0; i < c->n_in; i++) {
            int64_t n = c->in[i]->dims[p->axis] * inner;
            if (din[i]) {
                float *dx = (float *)din[i]->data + o * n;
                for (int64_t k = 0; k < n; k++)
                    dx[k] += g[k];
            }
            g += n;
        }
    }
}

const op_desc op_desc_Concat = {.name = "Concat", .min_in = 1, .max_in = OP_MAX_IO,
                                .min_out = 1, .max_out = 1, .params_size = sizeof(axis_params),
                                .prepare = concat_prepare, .forward = concat_forward,
                                .backward = concat_backward};

/* ---- Slice -------------------------------------------------------------- */

typedef struct slice_params {
    int64_t start[LEGO_MAX_RANK], step[LEGO_MAX_RANK];
} slice_params;

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static lego_status slice_prepare(op_call *c)
{
    slice_params *p = c->params;
    const lego_tensor *x = c->in[0];
    LEGO_TRY(check_dtype_known(c, x, "input"));
    int64_t starts[LEGO_MAX_RANK], ends[LEGO_MAX_RANK], axes[LEGO_MAX_RANK],
        steps[LEGO_MAX_RANK];
    int n = 0, n_ends = 0, n_axes = -1, n_steps = -1;

    if (op_input(c, 1) && op_input(c, 2)) { /* Slice-10 and later */
        LEGO_TRY(read_const_ints(c, 1, "starts", LEGO_MAX_RANK, starts, &n));
        LEGO_TRY(read_const_ints(c, 2, "ends", LEGO_MAX_RANK, ends, &n_ends));
        if (op_input(c, 3))
            LEGO_TRY(read_const_ints(c, 3, "axes", LEGO_MAX_RANK, axes, &n_axes));
        if (op_input(c, 4))
            LEGO_TRY(read_const_ints(c, 4, "steps", LEGO_MAX_RANK, steps, &n_steps));
    } else if (c->opset < 10 && c->n_in == 1) { /* Slice-1: attributes */
        const int64_t *a = NULL, *b = NULL, *ax = NULL;
        int na = 0, nb = 0, nax = 0;
        LEGO_TRY(attr_get_ints(c->attrs, "starts", &a, &na));
        LEGO_TRY(attr_get_ints(c->attrs, "ends", &b, &nb));
        LEGO_TRY(attr_get_ints(c->attrs, "axes", &ax, &nax));
        if (!a || !b)
            return op_error(c, LEGO_ERR_FORMAT, "attributes starts and ends are required");
        if (na > LEGO_MAX_RANK || nb > LEGO_MAX_RANK || nax > LEGO_MAX_RANK)
            return op_error(c, LEGO_ERR_SHAPE, "more than %d axes", LEGO_MAX_RANK);
        memcpy(starts, a, (size_t)na * sizeof *a);
        memcpy(ends, b, (size_t)nb * sizeof *b);
        n = na;
        n_ends = nb;
        if (ax) {
            memcpy(axes, ax, (size_t)nax * sizeof *ax);
            n_axes = nax;
        }
    } else {
        return op_error(c, LEGO_ERR_FORMAT, "inputs starts and ends are required");
    }
    if (n_ends != n || (n_axes >= 0 && n_axes != n) || (n_steps >= 0 && n_steps != n))
        return op_error(c, LEGO_ERR_SHAPE,
                        "starts, ends, axes and steps must have the same length");

    int64_t dims[LEGO_MAX_RANK];
    bool seen[LEGO_MAX_RANK] = {false};
    for (int d = 0; d < x->rank; d++) {
        p->start[d] = 0;
        p->step[d] = 1;
        dims[d] = x->dims[d];
    }
    for (int i = 0; i < n; i++) {
        int a;
        LEGO_TRY(op_axis(c, n_axes >= 0 ? axes[i] : i, x->rank, &a));
        if (seen[a])
            return op_error(c, LEGO_ERR_SHAPE, "axis %d is sliced twice", a);
        seen[a] = true;
        int64_t dim = x->dims[a], step = n_steps >= 0 ? steps[i] : 1;
        int64_t start = starts[i], end = ends[i], count;
        if (step == 0)
            return op_error(c, LEGO_ERR_SHAPE, "step for axis %d is 0", a);
        /* ONNX: negative indices count from the end, then clamp; the
         * bounds differ by direction so that a backward slice can reach
         * index 0 (end -1 means "past the front"). INT64_MAX/MIN ends
         * are common ("to the end") and must not overflow. */
        if (start < 0)
            start += dim;
        if (end < 0)
            end += dim;
        if (dim == 0) {
            start = 0;
            count = 0;
        } else if (step > 0) {
            start = clamp64(start, 0, dim);
            end = clamp64(end, 0, dim);
            count = end > start ? (end - start - 1) / step + 1 : 0;
        } else {
            start = clamp64(start, 0, dim - 1);
            end = clamp64(end, -1, dim - 1);
            int64_t back = step == INT64_MIN ? INT64_MAX : -step;
            count = start > end ? (start - end - 1) / back + 1 : 0;
        }
        p->start[a] = start;
        p->step[a] = count > 1 ? step : 1; /* a lone element needs no step */
        dims[a] = count;
    }
    tensor_set_shape(c->out[0], x->dtype, x->rank, dims);
    return lego_ok();
}

/* y[i] = x[start + i * step] along every axis */
static void slice_forward(const op_call *c)
{
    const slice_params *p = c->params;
    const lego_tensor *x = c->in[0], *y = c->out[0];
    if (lego_tensor_numel(y) == 0)
        return;
    int64_t xs[LEGO_MAX_RANK], step[LEGO_MAX_RANK], base = 0;
    tensor_strides(x, xs);
    for (int d = 0; d < x->rank; d++) {
        base += p->start[d] * xs[d];
        step[d] = p->step[d] * xs[d];
    }
    strided_copy(y->data, x->data, y->rank, y->dims, base, step, esize(x));
}

/* dx[start + i * step] += dy[i] along every axis; the positions not
 * sliced get nothing. Negative steps walk backwards as in forward. */
static void slice_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const slice_params *p = c->params;
    float *dx = float_grad(c, dout, din);
    const lego_tensor *x = c->in[0], *y = c->out[0];
    if (!dx || lego_tensor_numel(y) == 0)
        return;
    int64_t xs[LEGO_MAX_RANK], step[LEGO_MAX_RANK], base = 0;
    tensor_strides(x, xs);
    for (int d = 0; d < x->rank; d++) {
        base += p->start[d] * xs[d];
        step[d] = p->step[d] * xs[d];
    }
    strided_add(dx, dout[0]->data, y->rank, y->dims, base, step);
}

const op_desc op_desc_Slice = {.name = "Slice", .min_in = 1, .max_in = 5, .min_out = 1,
                               .max_out = 1, .params_size = sizeof(slice_params),
                               .const_inputs = 0xfu << 1, .prepare = slice_prepare,
                               .forward = slice_forward, .backward = slice_backward};

/* ---- Gather ------------------------------------------------------------- */

static lego_status gather_prepare(op_call *c)
{
    axis_params *p = c->params;
    const lego_tensor *x = c->in[0], *idx = c->in[1];
    LEGO_TRY(check_dtype_known(c, x, "data"));
    if (idx->dtype != LEGO_I64)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "indices are %s; only int64 is supported",
                        dtype_name(idx->dtype));
    int64_t axis;
    LEGO_TRY(attr_get_int(c->attrs, "axis", 0, &axis));
    LEGO_TRY(op_axis(c, axis, x->rank, &p->axis));
    int rank = x->rank - 1 + idx->rank;
    if (rank > LEGO_MAX_RANK)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "result would have rank %d, at most %d allowed",
                        rank, LEGO_MAX_RANK);
    int64_t dim = x->dims[p->axis], n_idx = lego_tensor_numel(idx);
    if (dim == 0 && n_idx > 0)
        return op_error(c, LEGO_ERR_SHAPE, "cannot gather from axis %d of size 0", p->axis);
    if (idx->data) {
        for (int64_t i = 0; i < n_idx; i++) {
            int64_t v = ((const int64_t *)idx->data)[i];
            if (v < -dim || v >= dim)
                return op_error(c, LEGO_ERR_SHAPE,
                                "index %lld is out of range for axis %d of size %lld",
                                (long long)v, p->axis, (long long)dim);
        }
    }
    int64_t dims[LEGO_MAX_RANK];
    int k = 0;
    for (int d = 0; d < p->axis; d++)
        dims[k++] = x->dims[d];
    for (int d = 0; d < idx->rank; d++)
        dims[k++] = idx->dims[d];
    for (int d = p->axis + 1; d < x->rank; d++)
        dims[k++] = x->dims[d];
    tensor_set_shape(c->out[0], x->dtype, rank, dims);
    return lego_ok();
}

/* x [outer, dim, inner], idx [n] -> y [outer, n, inner] */
static void gather_forward(const op_call *c)
{
    const axis_params *p = c->params;
    const lego_tensor *x = c->in[0], *idx = c->in[1];
    size_t es = esize(x);
    int64_t outer = 1, inner = 1, dim = x->dims[p->axis], n = lego_tensor_numel(idx);
    for (int d = 0; d < p->axis; d++)
        outer *= x->dims[d];
    for (int d = p->axis + 1; d < x->rank; d++)
        inner *= x->dims[d];
    if (outer == 0 || inner == 0 || n == 0)
        return;
    size_t chunk = (size_t)inner * es;
    const int64_t *iv = idx->data;
    const char *src = x->data;
    char *dst = c->out[0]->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < n; i++) {
            /* prepare rejects bad constant indices; computed ones are
             * clamped so a bad model cannot read out of bounds */
            int64_t j = clamp64(iv[i] < 0 ? iv[i] + dim : iv[i], 0, dim - 1);
            memcpy(dst, src + (size_t)(o * dim + j) * chunk, chunk);
            dst += chunk;
        }
    }
}

/* dx [outer, dim, inner] += dy [outer, n, inner] scattered to the gathered
 * rows; an index listed twice receives both. The indices take no gradient. */
static void gather_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const axis_params *p = c->params;
    float *dx = float_grad(c, dout, din);
    if (!dx)
        return;
    const lego_tensor *x = c->in[0], *idx = c->in[1];
    int64_t outer = 1, inner = 1, dim = x->dims[p->axis], n = lego_tensor_numel(idx);
    for (int d = 0; d < p->axis; d++)
        outer *= x->dims[d];
    for (int d = p->axis + 1; d < x->rank; d++)
        inner *= x->dims[d];
    if (outer == 0 || inner == 0 || n == 0)
        return;
    const int64_t *iv = idx->data;
    const float *g = dout[0]->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < n; i++) {
            int64_t j = clamp64(iv[i] < 0 ? iv[i] + dim : iv[i], 0, dim - 1);
            float *dst = dx + (o * dim + j) * inner;
            for (int64_t k = 0; k < inner; k++)
                dst[k] += g[k];
            g += inner;
        }
    }
}

const op_desc op_desc_Gather = {.name = "Gather", .min_in = 2, .max_in = 2, .min_out = 1,
                                 .max_out = 1, .params_size = sizeof(axis_params),
                                 .prepare = gather_prepare, .forward = gather_forward,
                                 .backward = gather_backward};

/* ---- Expand ------------------------------------------------------------- */

static lego_status expand_prepare(op_call *c)
{
    const lego_tensor *x = c->in[0];
    LEGO_TRY(check_dtype_known(c, x, "input"));
    lego_tensor shape = {.dtype = x->dtype};
    LEGO_TRY(read_const_ints(c, 1, "shape", LEGO_MAX_RANK, shape.dims, &shape.rank));
    for (int d = 0; d < shape.rank; d++)
        if (shape.dims[d] < 0)
        {
            char buf[96];
            return op_error(c, LEGO_ERR_SHAPE, "shape %s has a negative dimension",
                            dims_str(shape.dims, shape.rank, buf, sizeof buf));
        }
    c->out[0]->dtype = x->dtype;
    return op_broadcast_shape(c, x, &shape, c->out[0]);
}

/* y[idx] = x[idx with broadcast dimensions pinned to 0] */
static void expand_forward(const op_call *c)
{
    const lego_tensor *x = c->in[0], *y = c->out[0];
    int64_t xs[LEGO_MAX_RANK], step[LEGO_MAX_RANK];
    tensor_strides(x, xs);
    for (int d = 0; d < y->rank; d++) {
        int xd = d - (y->rank - x->rank);
        step[d] = xd >= 0 && x->dims[xd] != 1 ? xs[xd] : 0;
    }
    if (lego_tensor_numel(y))
        strided_copy(y->data, x->data, y->rank, y->dims, 0, step, esize(x));
}

/* dx = dy summed over the dimensions Expand repeated x along */
static void expand_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    float *dx = float_grad(c, dout, din);
    const lego_tensor *x = c->in[0], *y = c->out[0];
    if (!dx || lego_tensor_numel(y) == 0)
        return;
    int64_t xs[LEGO_MAX_RANK], step[LEGO_MAX_RANK];
    tensor_strides(x, xs);
    for (int d = 0; d < y->rank; d++) {
        int xd = d - (y->rank - x->rank);
        step[d] = xd >= 0 && x->dims[xd] != 1 ? xs[xd] : 0;
    }
    strided_add(dx, dout[0]->data, y->rank, y->dims, 0, step);
}

const op_desc op_desc_Expand = {.name = "Expand", .min_in = 2, .max_in = 2, .min_out = 1,
                                .max_out = 1, .const_inputs = 1u << 1,
                                .prepare = expand_prepare, .forward = expand_forward,
                                .backward = expand_backward};

/* ---- Shape -------------------------------------------------------------- */

typedef struct shape_params {
    int start;
} shape_params;

static lego_status shape_prepare(op_call *c)
{
    shape_params *p = c->params;
    int rank = c->in[0]->rank;
    int64_t start, end;
    LEGO_TRY(attr_get_int(c->attrs, "start", 0, &start));
    LEGO_TRY(attr_get_int(c->attrs, "end", rank, &end));
    /* Shape-15: negative bounds count from the end, then clamp to [0, rank] */
    if (start < 0)
        start += rank;
    if (end < 0)
        end += rank;
    start = clamp64(start, 0, rank);
    end = clamp64(end, 0, rank);
    p->start = (int)start;
    int64_t len = end > start ? end - start : 0;
    tensor_set_shape(c->out[0], LEGO_I64, 1, &len);
    return lego_ok();
}

static void shape_forward(const op_call *c)
{
    const shape_params *p = c->params;
    int64_t *y = c->out[0]->data;
    for (int64_t i = 0; i < c->out[0]->dims[0]; i++)
        y[i] = c->in[0]->dims[p->start + i];
}

const op_desc op_desc_Shape = {.name = "Shape", .min_in = 1, .max_in = 1, .min_out = 1,
                               .max_out = 1, .params_size = sizeof(shape_params),
                               .shape_inputs = 1, .prepare = shape_prepare,
                               .forward = shape_forward};

/* ---- Identity, Dropout -------------------------------------------------- */

static lego_status identity_prepare(op_call *c)
{
    const lego_tensor *x = c->in[0];
    LEGO_TRY(check_dtype_known(c, x, "input"));
    tensor_set_shape(c->out[0], x->dtype, x->rank, x->dims);
    return lego_ok();
}

const op_desc op_desc_Identity = {.name = "Identity", .min_in = 1, .max_in = 1, .min_out = 1,
                                  .max_out = 1, .prepare = identity_prepare,
                                  .forward = copy_forward, .backward = copy_backward};

static lego_status dropout_prepare(op_call *c)
{
    LEGO_TRY(identity_prepare(c));
    /* Dropout-12 takes training_mode as input 2; only a constant true
     * can be known to ask for training behaviour. */
    const lego_tensor *tm = op_input(c, 2);
    if (tm && tm->data && lego_tensor_numel(tm) == 1 && tensor_get_i64(tm, 0) != 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED,
                        "training_mode is true; only inference is supported");
    if (c->n_out > 1 && c->out[1])
        tensor_set_shape(c->out[1], LEGO_BOOL, c->in[0]->rank, c->in[0]->dims);
    return lego_ok();
}

/* Inference: y = x; the mask keeps everything. */
static void dropout_forward(const op_call *c)
{
    copy_forward(c);
    if (c->n_out > 1 && c->out[1])
        memset(c->out[1]->data, 1, lego_tensor_bytes(c->out[1]));
}

/* Inference Dropout is the identity, and so is its backward; the mask
 * (output 1) is bool and carries no gradient. */
const op_desc op_desc_Dropout = {.name = "Dropout", .min_in = 1, .max_in = 3, .min_out = 1,
                                 .max_out = 2, .prepare = dropout_prepare,
                                 .forward = dropout_forward, .backward = copy_backward};

/* ---- Constant ----------------------------------------------------------- */

/* Which attribute holds the value; forward reads it again from attrs. */
static lego_status constant_source(const op_call *c, const lego_attr **out)
{
    static const char *const names[] = {"value",         "value_float", "value_floats",
                                        "value_int",     "value_ints",  "value_string",
                                        "value_strings", "sparse_value"};
    *out = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const lego_attr *a = attr_find(c->attrs, names[i]);
        if (!a)
            continue;
        if (*out)
            return op_error(c, LEGO_ERR_FORMAT, "attributes '%s' and '%s' both give the value",
                            (*out)->name, a->name);
        *out = a;
    }
    if (!*out)
        return op_error(c, LEGO_ERR_FORMAT, "no value attribute");
    return lego_ok();
}

static lego_status constant_prepare(op_call *c)
{
    const lego_attr *a;
    LEGO_TRY(constant_source(c, &a));
    lego_tensor *y = c->out[0];
    if (strcmp(a->name, "value") == 0) {
        if (a->type != ATTR_TENSOR || !a->t)
            return op_error(c, LEGO_ERR_FORMAT, "attribute 'value' should be a tensor");
        LEGO_TRY(check_dtype_known(c, a->t, "value"));
        if (!a->t->data && lego_tensor_numel(a->t) > 0)
            return op_error(c, LEGO_ERR_FORMAT, "attribute 'value' has no data");
        tensor_set_shape(y, a->t->dtype, a->t->rank, a->t->dims);
    } else if (strcmp(a->name, "value_float") == 0 || strcmp(a->name, "value_int") == 0) {
        bool f = a->name[6] == 'f';
        if (a->type != (f ? ATTR_FLOAT : ATTR_INT))
            return op_error(c, LEGO_ERR_FORMAT, "attribute '%s' should be %s", a->name,
                            f ? "a float" : "an int");
        tensor_set_shape(y, f ? LEGO_F32 : LEGO_I64, 0, NULL);
    } else if (strcmp(a->name, "value_floats") == 0 || strcmp(a->name, "value_ints") == 0) {
        bool f = a->name[6] == 'f';
        if (a->type != (f ? ATTR_FLOATS : ATTR_INTS))
            return op_error(c, LEGO_ERR_FORMAT, "attribute '%s' should be a list of %s",
                            a->name, f ? "floats" : "ints");
        int64_t n = a->n;
        tensor_set_shape(y, f ? LEGO_F32 : LEGO_I64, 1, &n);
    } else {
        return op_error(c, LEGO_ERR_UNSUPPORTED, "attribute '%s' is not supported", a->name);
    }
    return lego_ok();
}

static void constant_forward(const op_call *c)
{
    const lego_attr *a = NULL;
    lego_status st = constant_source(c, &a); /* succeeded in prepare */
    lego_status_free(&st);
    lego_tensor *y = c->out[0];
    size_t bytes = lego_tensor_bytes(y);
    if (!a || bytes == 0)
        return;
    if (a->type == ATTR_TENSOR) {
        memcpy(y->data, a->t->data, bytes);
    } else if (a->type == ATTR_FLOAT) {
        memcpy(y->data, &a->f, sizeof a->f);
    } else if (a->type == ATTR_INT) {
        memcpy(y->data, &a->i, sizeof a->i);
    } else if (a->type == ATTR_FLOATS) {
        memcpy(y->data, a->floats, bytes);
    } else if (a->type == ATTR_INTS) {
        memcpy(y->data, a->ints, bytes);
    }
}

const op_desc op_desc_Constant = {.name = "Constant", .min_in = 0, .max_in = 0, .min_out = 1,
                                  .max_out = 1, .prepare = constant_prepare,
                                  .forward = constant_forward};

/* ---- Cast --------------------------------------------------------------- */

typedef struct cast_params {
    lego_dtype to;
} cast_params;

/* Names of ONNX TensorProto.DataType values, for messages. */
static const char *onnx_type_name(int64_t t)
{
    static const char *const names[] = {
        "undefined", "float32", "uint8",  "int8",      "uint16",     "int16",
        "int32",     "int64",   "string", "bool",      "float16",    "float64",
        "uint32",    "uint64",  "complex64", "complex128", "bfloat16"};
    if (t >= 0 && t < (int64_t)(sizeof names / sizeof names[0]))
        return names[t];
    return "an unknown type";
}

static lego_status cast_prepare(op_call *c)
{
    cast_params *p = c->params;
    const lego_tensor *x = c->in[0];
    LEGO_TRY(check_dtype_known(c, x, "input"));
    if (!attr_find(c->attrs, "to"))
        return op_error(c, LEGO_ERR_FORMAT, "attribute 'to' is required");
    int64_t to;
    LEGO_TRY(attr_get_int(c->attrs, "to", 0, &to));
    if (to != LEGO_F32 && to != LEGO_I64 && to != LEGO_BOOL)
        return op_error(c, LEGO_ERR_UNSUPPORTED,
                        "cast to %s (type %lld) is not supported; only float32, int64, bool",
                        onnx_type_name(to), (long long)to);
    p->to = (lego_dtype)to;
    tensor_set_shape(c->out[0], p->to, x->rank, x->dims);
    return lego_ok();
}

/* float -> int64 truncates; NaN and out-of-range values saturate instead of
 * being undefined behaviour. */
static int64_t f32_to_i64(float v)
{
    if (v != v)
        return 0;
    if (v >= 9223372036854775808.0f)
        return INT64_MAX;
    if (v < -9223372036854775808.0f)
        return INT64_MIN;
    return (int64_t)v;
}

static void cast_forward(const op_call *c)
{
    const cast_params *p = c->params;
    const lego_tensor *x = c->in[0];
    int64_t n = lego_tensor_numel(x);
    if (x->dtype == p->to) {
        copy_forward(c);
        return;
    }
    const void *src = x->data;
    void *dst = c->out[0]->data;
    for (int64_t i = 0; i < n; i++) {
        /* read as double: exact for every float32 and bool, and for int64
         * going to float32 the one rounding happens below */
        double v = 0;
        int64_t iv = 0;
        switch (x->dtype) {
        case LEGO_F32: v = ((const float *)src)[i]; break;
        case LEGO_I64: iv = ((const int64_t *)src)[i]; v = (double)iv; break;
        case LEGO_BOOL: v = ((const uint8_t *)src)[i] != 0; break;
        default: break;
        }
        switch (p->to) {
        case LEGO_F32:
            ((float *)dst)[i] = x->dtype == LEGO_I64 ? (float)iv : (float)v;
            break;
        case LEGO_I64:
            ((int64_t *)dst)[i] = x->dtype == LEGO_F32 ? f32_to_i64((float)v) : (int64_t)v;
            break;
        case LEGO_BOOL:
            ((uint8_t *)dst)[i] = x->dtype == LEGO_I64 ? iv != 0 : v != 0;
            break;
        default: break;
        }
    }
}

/* float32 -> float32 is the identity and passes the gradient; every other
 * cast has an integer or bool side, which carries none. */
const op_desc op_desc_Cast = {.name = "Cast", .min_in = 1, .max_in = 1, .min_out = 1,
                              .max_out = 1, .params_size = sizeof(cast_params),
                              .prepare = cast_prepare, .forward = cast_forward,
                              .backward = copy_backward};

/* ---- ConstantOfShape ---------------------------------------------------- */

/* The fill value: attribute `value`, a 1-element tensor, or float 0. */
static lego_status cos_value(const op_call *c, const lego_tensor **out)
{
    const lego_attr *a = attr_find(c->attrs, "value");
    *out = NULL;
    if (!a)
        return lego_ok();
    if (a->type != ATTR_TENSOR || !a->t)
        return op_error(c, LEGO_ERR_FORMAT, "attribute 'value' should be a tensor");
    LEGO_TRY(check_dtype_known(c, a->t, "value"));
    if (lego_tensor_numel(a->t) != 1 || !a->t->data)
        return op_error(c, LEGO_ERR_FORMAT, "attribute 'value' must hold one element, not %lld",
                        (long long)lego_tensor_numel(a->t));
    *out = a->t;
    return lego_ok();
}

static lego_status cos_prepare(op_call *c)
{
    const lego_tensor *v;
    LEGO_TRY(cos_value(c, &v));
    int64_t dims[LEGO_MAX_RANK];
    int rank;
    LEGO_TRY(read_const_ints(c, 0, "shape", LEGO_MAX_RANK, dims, &rank));
    for (int d = 0; d < rank; d++)
        if (dims[d] < 0)
        {
            char buf[96];
            return op_error(c, LEGO_ERR_SHAPE, "shape %s has a negative dimension",
                            dims_str(dims, rank, buf, sizeof buf));
        }
    tensor_set_shape(c->out[0], v ? v->dtype : LEGO_F32, rank, dims);
    return lego_ok();
}

static void cos_forward(const op_call *c)
{
    const lego_tensor *v = NULL;
    lego_status st = cos_value(c, &v); /* succeeded in prepare */
    lego_status_free(&st);
    lego_tensor *y = c->out[0];
    if (!v) { /* float 0 is all zero bits */
        memset(y->data, 0, lego_tensor_bytes(y));
        return;
    }
    size_t es = esize(y);
    int64_t n = lego_tensor_numel(y);
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)y->data + i * (int64_t)es, v->data, es);
}

const op_desc op_desc_ConstantOfShape = {.name = "ConstantOfShape", .min_in = 1, .max_in = 1,
                                         .min_out = 1, .max_out = 1, .const_inputs = 1u << 0,
                                         .prepare = cos_prepare, .forward = cos_forward};
