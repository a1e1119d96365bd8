/* elementwise.c - binary arithmetic, comparison and selection with numpy
 * broadcasting: Add, Sub, Mul, Div (float32 and int64), Pow, Sqrt, Equal,
 * Where, with their backward passes.
 *
 * int64 matters as much as float32 here: exported models compute shapes with
 * Shape -> Gather -> Mul -> Concat, and the graph layer folds those at load by
 * running these same kernels. Integer arithmetic wraps instead of trapping and
 * division by zero gives 0, because forward cannot fail.
 *
 * Backward is float32 only: an input that was broadcast receives its
 * gradient summed over the broadcast dimensions.
 *
 * Rows of the output run in parallel (core/threads.h) when they write
 * disjoint data: always forward, and backward unless a broadcast input takes
 * a gradient (its sums then run in one chunk, in row order). Either way the
 * results do not depend on the thread count. Equal's backward adds
 * nothing (its gradient is zero); it exists so a float value compared by
 * Equal does not stop a training graph from being planned. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../core/threads.h"
#include "op.h"
#include "simd.h"

enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW, BIN_EQUAL };

/* ---- broadcasting ------------------------------------------------------ */

/* The output visited row by row along its last dimension. For input k,
 * step[k][d] is its element stride along output dimension d, 0 where it
 * broadcasts. */
typedef struct bcast {
    int rank, n;
    int64_t dims[LEGO_MAX_RANK];
    int64_t step[3][LEGO_MAX_RANK];
} bcast;

static void bcast_init(bcast *b, const lego_tensor *out, const lego_tensor *const *in, int n)
{
    *b = (bcast){.rank = out->rank, .n = n};
    for (int d = 0; d < out->rank; d++)
        b->dims[d] = out->dims[d];
    for (int k = 0; k < n; k++) {
        int64_t s = 1;
        for (int d = out->rank - 1; d >= 0; d--) {
            int id = d - (out->rank - in[k]->rank);
            int64_t dim = id >= 0 ? in[k]->dims[id] : 1;
            b->step[k][d] = dim == 1 ? 0 : s;
            s *= dim;
        }
    }
}

/* Calls fn(ctx, out_offset, in_offsets, in_increments, length) once per
 * output row in [r0, r1) (the output is contiguous); offsets and increments
 * are in elements. */
typedef void walk_fn(void *ctx, int64_t o, const int64_t *off, const int64_t *inc, int64_t len);

static void bcast_walk_rows(const bcast *b, int64_t r0, int64_t r1, walk_fn *fn, void *ctx)
{
    int64_t off[3] = {0, 0, 0}, inc[3] = {0, 0, 0};
    if (b->rank == 0) {
        fn(ctx, 0, off, inc, 1);
        return;
    }
    int last = b->rank - 1;
    int64_t len = b->dims[last];
    for (int k = 0; k < b->n; k++)
        inc[k] = b->step[k][last];
    /* the odometer's start: row r0 as an index over the outer dimensions */
    int64_t idx[LEGO_MAX_RANK] = {0}, rest = r0;
    for (int d = last - 1; d >= 0; d--) {
        idx[d] = rest % b->dims[d];
        rest /= b->dims[d];
        for (int k = 0; k < b->n; k++)
            off[k] += idx[d] * b->step[k][d];
    }
    for (int64_t r = r0; r < r1; r++) {
        fn(ctx, r * len, off, inc, len);
        /* odometer over the outer dimensions, carrying the input offsets */
        for (int d = last - 1; d >= 0; d--) {
            idx[d]++;
            for (int k = 0; k < b->n; k++)
                off[k] += b->step[k][d];
            if (idx[d] < b->dims[d])
                break;
            for (int k = 0; k < b->n; k++)
                off[k] -= b->step[k][d] * b->dims[d];
            idx[d] = 0;
        }
    }
}

/* The output rows of b (rank 0: one row of one element). */
static int64_t bcast_rows_count(const bcast *b)
{
    if (b->rank == 0)
        return 1;
    int64_t rows = 1;
    for (int d = 0; d < b->rank - 1; d++)
        rows *= b->dims[d];
    return b->dims[b->rank - 1] == 0 ? 0 : rows;
}

typedef struct walk_job {
    const bcast *b;
    walk_fn *fn;
    void *ctx;
} walk_job;

static void walk_chunk(void *ctx, int64_t r0, int64_t r1, int thread)
{
    (void)thread;
    const walk_job *j = ctx;
    bcast_walk_rows(j->b, r0, r1, j->fn, j->ctx);
}

/* Every output row, the rows spread over threads (core/threads.h) when
 * `parallel` and the output is large; work is the operations per element.
 * Rows must then write disjoint data, which holds for every output and for
 * the gradient of an input that is not broadcast. */
static void bcast_walk(const bcast *b, walk_fn *fn, void *ctx, bool parallel, double work)
{
    int64_t rows = bcast_rows_count(b);
    double row_work = work * (double)(b->rank ? b->dims[b->rank - 1] : 1);
    walk_job j = {b, fn, ctx};
    par_split one = {1, 1, 0};
    parallel_run(rows, parallel ? par_split_work(rows, row_work) : one, walk_chunk, &j);
}

/* Whether input k is broadcast along some output dimension. */
static bool is_broadcast(const bcast *b, int k)
{
    int64_t s = 1;
    for (int d = b->rank - 1; d >= 0; d--) {
        if (b->dims[d] != 1 && b->step[k][d] != s)
            return true;
        s *= b->dims[d];
    }
    return false;
}

/* The forward kernels' row form: the op_call is the context. */
typedef void row_fn(const op_call *c, int64_t o, const int64_t *off, const int64_t *inc,
                    int64_t len);

typedef struct row_ctx {
    const op_call *c;
    row_fn *row;
} row_ctx;

static void call_row(void *ctx, int64_t o, const int64_t *off, const int64_t *inc, int64_t len)
{
    const row_ctx *k = ctx;
    k->row(k->c, o, off, inc, len);
}

/* Every output row of a forward, in parallel when large; work is the
 * operations per element. */
static void bcast_rows(const op_call *c, const bcast *b, row_fn *row, double work)
{
    row_ctx k = {c, row};
    bcast_walk(b, call_row, &k, true, work);
}

/* dst[i * inc] += v[i] for i < len. A broadcast input (inc 0) receives the
 * row's sum, added up in double, once. */
static void add_row(float *dst, int64_t inc, const float *v, int64_t len)
{
    if (inc == 0) {
        double sum = 0;
        for (int64_t i = 0; i < len; i++)
            sum += v[i];
        dst[0] += (float)sum;
        return;
    }
    for (int64_t i = 0; i < len; i++)
        dst[i * inc] += v[i];
}

/* dst[i * inc] = v[i] for i < len (an input that is not broadcast). */
static void set_row(float *dst, int64_t inc, const float *v, int64_t len)
{
    for (int64_t i = 0; i < len; i++)
        dst[i * inc] = v[i];
}

/* ---- binary ops -------------------------------------------------------- */

typedef struct binary_params {
    int kind; /* BIN_* */
} binary_params;

static int64_t wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int64_t wrap_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static int64_t wrap_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

/* C division truncates toward zero, as ONNX integer Div does. */
static int64_t safe_div(int64_t a, int64_t b)
{
    if (b == 0)
        return 0;
    if (b == -1)
        return wrap_sub(0, a); /* INT64_MIN / -1 overflows */
    return a / b;
}

SIMD_CLONES
static void add_f32(const float *a, const float *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

/* a + b clamped to [lo, hi], rounded and clamped as Add then activation.c's
 * Relu or Clip: the same bits as the two ops. */
SIMD_CLONES
static void add_clamp_f32(const float *a, const float *b, float *y, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = clamp_f32(a[i] + b[i], lo, hi);
}

/* Add of n contiguous floats, with the clamp a plan fused after it. */
static void add_plain(const op_call *c, const float *a, const float *b, float *y, int64_t n)
{
    if (c->clamp)
        add_clamp_f32(a, b, y, n, c->lo, c->hi);
    else
        add_f32(a, b, y, n);
}

SIMD_CLONES
static void row_f32(const op_call *c, int64_t o, const int64_t *off, const int64_t *inc,
                    int64_t len)
{
    const binary_params *p = c->params;
    const float *a = (const float *)c->in[0]->data + off[0];
    const float *b = (const float *)c->in[1]->data + off[1];
    float *y = (float *)c->out[0]->data + o;
    int64_t sa = inc[0], sb = inc[1];
    if (sa == 1 && sb == 1 && p->kind == BIN_ADD) { /* residual adds: vectorizes */
        add_plain(c, a, b, y, len);
        return;
    }
    switch (p->kind) {
    case BIN_ADD: for (int64_t i = 0; i < len; i++) y[i] = a[i * sa] + b[i * sb]; break;
    case BIN_SUB: for (int64_t i = 0; i < len; i++) y[i] = a[i * sa] - b[i * sb]; break;
    case BIN_MUL: for (int64_t i = 0; i < len; i++) y[i] = a[i * sa] * b[i * sb]; break;
    case BIN_DIV: for (int64_t i = 0; i < len; i++) y[i] = a[i * sa] / b[i * sb]; break;
    case BIN_POW: for (int64_t i = 0; i < len; i++) y[i] = powf(a[i * sa], b[i * sb]); break;
    }
    for (int64_t i = 0; c->clamp && i < len; i++) /* plans fuse only the path above */
        y[i] = clamp_f32(y[i], c->lo, c->hi);
}

static void row_i64(const op_call *c, int64_t o, const int64_t *off, const int64_t *inc,
                    int64_t len)
{
    const binary_params *p = c->params;
    const int64_t *a = (const int64_t *)c->in[0]->data + off[0];
    const int64_t *b = (const int64_t *)c->in[1]->data + off[1];
    int64_t *y = (int64_t *)c->out[0]->data + o;
    int64_t sa = inc[0], sb = inc[1];
    switch (p->kind) {
    case BIN_ADD: for (int64_t i = 0; i < len; i++) y[i] = wrap_add(a[i * sa], b[i * sb]); break;
    case BIN_SUB: for (int64_t i = 0; i < len; i++) y[i] = wrap_sub(a[i * sa], b[i * sb]); break;
    case BIN_MUL: for (int64_t i = 0; i < len; i++) y[i] = wrap_mul(a[i * sa], b[i * sb]); break;
    case BIN_DIV: for (int64_t i = 0; i < len; i++) y[i] = safe_div(a[i * sa], b[i * sb]); break;
    }
}

/* Pow with an int64 exponent: float base, exponent converted per element. */
static void row_pow_f32_i64(const op_call *c, int64_t o, const int64_t *off, const int64_t *inc,
                            int64_t len)
{
    const float *a = (const float *)c->in[0]->data + off[0];
    const int64_t *b = (const int64_t *)c->in[1]->data + off[1];
    float *y = (float *)c->out[0]->data + o;
    for (int64_t i = 0; i < len; i++)
        y[i] = powf(a[i * inc[0]], (float)b[i * inc[1]]);
}

static void row_equal(const op_call *c, int64_t o, const int64_t *off, const int64_t *inc,
                      int64_t len)
{
    uint8_t *y = (uint8_t *)c->out[0]->data + o;
    switch (c->in[0]->dtype) {
    case LEGO_F32: {
        const float *a = (const float *)c->in[0]->data + off[0];
        const float *b = (const float *)c->in[1]->data + off[1];
        for (int64_t i = 0; i < len; i++)
            y[i] = a[i * inc[0]] == b[i * inc[1]];
        break;
    }
    case LEGO_I64: {
        const int64_t *a = (const int64_t *)c->in[0]->data + off[0];
        const int64_t *b = (const int64_t *)c->in[1]->data + off[1];
        for (int64_t i = 0; i < len; i++)
            y[i] = a[i * inc[0]] == b[i * inc[1]];
        break;
    }
    default: {
        const uint8_t *a = (const uint8_t *)c->in[0]->data + off[0];
        const uint8_t *b = (const uint8_t *)c->in[1]->data + off[1];
        for (int64_t i = 0; i < len; i++)
            y[i] = (a[i * inc[0]] != 0) == (b[i * inc[1]] != 0);
        break;
    }
    }
}

static lego_status binary_prepare(op_call *c, int kind)
{
    binary_params *p = c->params;
    p->kind = kind;
    const lego_tensor *a = c->in[0], *b = c->in[1];
    if (!a || !b)
        return op_error(c, LEGO_ERR_FORMAT, "both inputs are required");
    lego_dtype out_dt = a->dtype;
    switch (kind) {
    case BIN_POW:
        if (a->dtype != LEGO_F32)
            return op_error(c, LEGO_ERR_UNSUPPORTED, "base is %s; only float32 is supported",
                            dtype_name(a->dtype));
        if (b->dtype != LEGO_F32 && b->dtype != LEGO_I64)
            return op_error(c, LEGO_ERR_UNSUPPORTED,
                            "exponent is %s; only float32 and int64 are supported",
                            dtype_name(b->dtype));
        break;
    case BIN_EQUAL:
        if (a->dtype != b->dtype)
            return op_error(c, LEGO_ERR_SHAPE, "cannot compare %s with %s",
                            dtype_name(a->dtype), dtype_name(b->dtype));
        out_dt = LEGO_BOOL;
        break;
    default:
        if (a->dtype != b->dtype)
            return op_error(c, LEGO_ERR_SHAPE, "input dtypes differ: %s and %s",
                            dtype_name(a->dtype), dtype_name(b->dtype));
        if (a->dtype != LEGO_F32 && a->dtype != LEGO_I64)
            return op_error(c, LEGO_ERR_UNSUPPORTED,
                            "inputs are %s; only float32 and int64 are supported",
                            dtype_name(a->dtype));
        break;
    }
    c->out[0]->dtype = out_dt;
    return op_broadcast_shape(c, a, b, c->out[0]);
}

/* y = a (op) b, all broadcast to y's shape */
static void binary_forward(const op_call *c)
{
    const binary_params *p = c->params;
    const lego_tensor *in[2] = {c->in[0], c->in[1]};
    bcast b;
    bcast_init(&b, c->out[0], in, 2);
    double work = p->kind == BIN_POW ? 20.0 : 1.0;
    if (p->kind == BIN_EQUAL)
        bcast_rows(c, &b, row_equal, work);
    else if (p->kind == BIN_POW && in[1]->dtype == LEGO_I64)
        bcast_rows(c, &b, row_pow_f32_i64, work);
    else if (in[0]->dtype == LEGO_I64)
        bcast_rows(c, &b, row_i64, work);
    else
        bcast_rows(c, &b, row_f32, work);
}

/* ---- binary backward --------------------------------------------------- */

/* din[i]'s data when input i takes a gradient (present, float32), or NULL. */
static float *grad_of(lego_tensor *const *din, int i)
{
    return din[i] && din[i]->dtype == LEGO_F32 ? din[i]->data : NULL;
}

/* Partial products are formed a chunk of a row at a time, then added into
 * the inputs' gradients (summed first where an input broadcasts). */
#define GRAD_CHUNK 256

typedef struct binary_grad {
    int kind;
    const float *g, *y, *a, *b; /* dL/dy, y, the inputs */
    const int64_t *bi;          /* Pow's exponent when it is int64, else NULL */
    float *da, *db;             /* NULL when not wanted */
    bool set_a, set_b;          /* write da / db rather than add (op_call.fresh) */
} binary_grad;

/* One output row: g is dL/dy, and
 *   Add: da += g, db += g         Sub: da += g, db -= g
 *   Mul: da += g b, db += g a     Div: da += g / b, db -= g y / b
 *   Pow: da += g e a^(e-1), db += g y ln(a)
 * Pow follows PyTorch at the edges: no base gradient where e == 0, and no
 * exponent gradient where a == 0 and e >= 0 (a < 0 gives NaN, as there). */
SIMD_CLONES
static void binary_grad_row(void *ctx, int64_t o, const int64_t *off, const int64_t *inc,
                            int64_t len)
{
    const binary_grad *k = ctx;
    float ga[GRAD_CHUNK], gb[GRAD_CHUNK];
    for (int64_t i0 = 0; i0 < len; i0 += GRAD_CHUNK) {
        int64_t n = len - i0 < GRAD_CHUNK ? len - i0 : GRAD_CHUNK;
        int64_t ia = off[0] + i0 * inc[0], ib = off[1] + i0 * inc[1];
        const float *g = k->g + o + i0, *y = k->y + o + i0;
        if (k->kind == BIN_ADD || k->kind == BIN_SUB) { /* the inputs' data is never read */
            for (int64_t i = 0; i < n; i++)
                ga[i] = g[i], gb[i] = k->kind == BIN_ADD ? g[i] : -g[i];
        } else {
            for (int64_t i = 0; i < n; i++) {
                float a = k->a[ia + i * inc[0]];
                float b = k->bi ? (float)k->bi[ib + i * inc[1]] : k->b[ib + i * inc[1]];
                switch (k->kind) {
                case BIN_MUL: ga[i] = g[i] * b, gb[i] = g[i] * a; break;
                case BIN_DIV: ga[i] = g[i] / b, gb[i] = -g[i] * y[i] / b; break;
                default: /* BIN_POW */
                    ga[i] = b == 0 ? 0.0f : g[i] * b * powf(a, b - 1.0f);
                    gb[i] = a == 0 && b >= 0 ? 0.0f : g[i] * y[i] * logf(a);
                    break;
                }
            }
        }
        if (k->da)
            (k->set_a ? set_row : add_row)(k->da + ia, inc[0], ga, n);
        if (k->db)
            (k->set_b ? set_row : add_row)(k->db + ib, inc[1], gb, n);
    }
}

/* float32 only: dy is y's shape; each input's gradient is summed over the
 * dimensions it was broadcast along. Equal (bool output) has a zero
 * gradient, so it adds nothing. */
static void binary_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    const binary_params *p = c->params;
    bool flows = dout[0] && c->out[0]->dtype == LEGO_F32 && p->kind != BIN_EQUAL;
    const lego_tensor *in[2] = {c->in[0], c->in[1]};
    binary_grad k = {.kind = p->kind};
    bcast b;
    if (flows) {
        k.g = dout[0]->data, k.y = c->out[0]->data, k.a = in[0]->data;
        k.da = grad_of(din, 0), k.db = grad_of(din, 1);
        if (in[1]->dtype == LEGO_I64) {
            k.bi = in[1]->data;
            k.db = NULL; /* an integer exponent takes no gradient */
        } else {
            k.b = in[1]->data;
        }
        bcast_init(&b, c->out[0], in, 2);
    }
    /* a fresh gradient is written where each element gets one value; one
     * that gets none (nothing flows, an integer exponent) or a sum over
     * rows (a broadcast input) is cleared first */
    for (int i = 0; i < 2; i++) {
        float *d = i ? k.db : k.da;
        if (!(c->fresh >> i & 1u) || !din[i])
            continue;
        if (d && !is_broadcast(&b, i))
            *(i ? &k.set_b : &k.set_a) = true;
        else
            memset(din[i]->data, 0, lego_tensor_bytes(din[i]));
    }
    if (!k.da && !k.db)
        return;
    /* a broadcast input's gradient sums over rows: one chunk keeps its order */
    bool parallel = !(k.da && is_broadcast(&b, 0)) && !(k.db && is_broadcast(&b, 1));
    bcast_walk(&b, binary_grad_row, &k, parallel, p->kind == BIN_POW ? 40.0 : 2.0);
}

static int64_t numel_flops(const op_call *c) { return lego_tensor_numel(c->out[0]); }

static lego_status add_prepare(op_call *c) { return binary_prepare(c, BIN_ADD); }
static lego_status sub_prepare(op_call *c) { return binary_prepare(c, BIN_SUB); }
static lego_status mul_prepare(op_call *c) { return binary_prepare(c, BIN_MUL); }
static lego_status div_prepare(op_call *c) { return binary_prepare(c, BIN_DIV); }
static lego_status pow_prepare(op_call *c) { return binary_prepare(c, BIN_POW); }
static lego_status equal_prepare(op_call *c) { return binary_prepare(c, BIN_EQUAL); }

/* Add of three float tensors of one shape, image by image (op_desc.
 * forward_images): an inference plan runs MobileNetV2's residual Add in the
 * chain of convolutions before it, while their output is still in cache.
 * The same sums as binary_forward's. */
static size_t add_image_scratch(const op_call *c, int64_t *group)
{
    const lego_tensor *a = c->in[0], *b = c->in[1], *y = c->out[0];
    *group = 1;
    bool plain = a && b && y && y->dtype == LEGO_F32 && a->dtype == LEGO_F32 &&
                 b->dtype == LEGO_F32 && y->rank >= 1 && y->dims[0] > 0 &&
                 tensor_same_shape(a, y) && tensor_same_shape(b, y);
    return plain ? 64 : 0;
}

static bool add_forward_images(const op_call *c, int64_t i0, int64_t i1, void *scratch)
{
    (void)scratch;
    int64_t per = lego_tensor_numel(c->out[0]) / c->out[0]->dims[0];
    add_plain(c, (const float *)c->in[0]->data + i0 * per, (const float *)c->in[1]->data + i0 * per,
              (float *)c->out[0]->data + i0 * per, (i1 - i0) * per);
    return true;
}

#define BINARY_DESC(Name, prep, unread, ...)                                                 \
    const op_desc op_desc_##Name = {.name = #Name, .min_in = 2, .max_in = 2, .min_out = 1,  \
                                    .max_out = 1, .params_size = sizeof(binary_params),     \
                                    .prepare = prep, .forward = binary_forward,             \
                                    .flops = numel_flops, .backward = binary_backward,      \
                                    .in_unread = unread, .out_unread = unread ? 1u : 0,    \
                                    .grad_writes = 3u, .grad_inplace = 3u, __VA_ARGS__};
BINARY_DESC(Add, add_prepare, 3u, /* the gradient is dY's */
            .image_scratch = add_image_scratch, .forward_images = add_forward_images,
            .takes_clamp = true)
BINARY_DESC(Sub, sub_prepare, 3u)
BINARY_DESC(Mul, mul_prepare, 0)
BINARY_DESC(Div, div_prepare, 0)
BINARY_DESC(Pow, pow_prepare, 0)
BINARY_DESC(Equal, equal_prepare, 0)

/* ---- Sqrt -------------------------------------------------------------- */

static lego_status sqrt_prepare(op_call *c)
{
    LEGO_TRY(op_expect_dtype(c, 0, LEGO_F32));
    tensor_set_shape(c->out[0], LEGO_F32, c->in[0]->rank, c->in[0]->dims);
    return lego_ok();
}

typedef struct sqrt_job {
    const float *x, *y, *g; /* g: dY (backward) */
    float *out;             /* y (forward) or dX (backward) */
} sqrt_job;

static void sqrt_forward_range(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const sqrt_job *k = ctx;
    for (int64_t i = b; i < e; i++)
        k->out[i] = sqrtf(k->x[i]);
}

static void sqrt_forward(const op_call *c)
{
    sqrt_job k = {.x = c->in[0]->data, .out = c->out[0]->data};
    int64_t n = lego_tensor_numel(c->out[0]);
    parallel_run(n, par_split_work(n, 4.0), sqrt_forward_range, &k);
}

/* dx += dy / (2 y), from the forward output as PyTorch does */
static void sqrt_backward_range(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)thread;
    const sqrt_job *k = ctx;
    for (int64_t i = b; i < e; i++)
        k->out[i] += k->g[i] / (2.0f * k->y[i]);
}

static void sqrt_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    float *dx = grad_of(din, 0);
    if (!dout[0] || !dx)
        return;
    sqrt_job k = {.y = c->out[0]->data, .g = dout[0]->data, .out = dx};
    int64_t n = lego_tensor_numel(c->out[0]);
    parallel_run(n, par_split_work(n, 4.0), sqrt_backward_range, &k);
}

const op_desc op_desc_Sqrt = {.name = "Sqrt", .min_in = 1, .max_in = 1, .min_out = 1,
                              .max_out = 1, .prepare = sqrt_prepare, .forward = sqrt_forward,
                              .flops = numel_flops, .backward = sqrt_backward};

/* ---- Where ------------------------------------------------------------- */

static lego_status where_prepare(op_call *c)
{
    LEGO_TRY(op_expect_dtype(c, 0, LEGO_BOOL));
    const lego_tensor *x = c->in[1], *y = c->in[2];
    if (!x || !y)
        return op_error(c, LEGO_ERR_FORMAT, "inputs X and Y are required");
    if (x->dtype != y->dtype)
        return op_error(c, LEGO_ERR_SHAPE, "X is %s but Y is %s", dtype_name(x->dtype),
                        dtype_name(y->dtype));
    if (lego_dtype_size(x->dtype) == 0)
        return op_error(c, LEGO_ERR_UNSUPPORTED, "X and Y are %s", dtype_name(x->dtype));
    lego_tensor xy = {.dtype = x->dtype};
    LEGO_TRY(op_broadcast_shape(c, x, y, &xy));
    c->out[0]->dtype = x->dtype;
    return op_broadcast_shape(c, c->in[0], &xy, c->out[0]);
}

static void row_where(const op_call *c, int64_t o, const int64_t *off, const int64_t *inc,
                      int64_t len)
{
    size_t es = lego_dtype_size(c->out[0]->dtype);
    const uint8_t *cond = (const uint8_t *)c->in[0]->data + off[0];
    const char *x = (const char *)c->in[1]->data + off[1] * (int64_t)es;
    const char *y = (const char *)c->in[2]->data + off[2] * (int64_t)es;
    char *out = (char *)c->out[0]->data + o * (int64_t)es;
    for (int64_t i = 0; i < len; i++) {
        const char *src = cond[i * inc[0]] ? x + i * inc[1] * (int64_t)es
                                           : y + i * inc[2] * (int64_t)es;
        memcpy(out + i * (int64_t)es, src, es);
    }
}

/* out = cond ? X : Y, all three broadcast to out's shape */
static void where_forward(const op_call *c)
{
    const lego_tensor *in[3] = {c->in[0], c->in[1], c->in[2]};
    bcast b;
    bcast_init(&b, c->out[0], in, 3);
    bcast_rows(c, &b, row_where, 1.0);
}

typedef struct where_grad {
    const uint8_t *cond;
    const float *g;
    float *dx, *dy; /* NULL when not wanted */
} where_grad;

static void where_grad_row(void *ctx, int64_t o, const int64_t *off, const int64_t *inc,
                           int64_t len)
{
    const where_grad *k = ctx;
    float gx[GRAD_CHUNK], gy[GRAD_CHUNK];
    for (int64_t i0 = 0; i0 < len; i0 += GRAD_CHUNK) {
        int64_t n = len - i0 < GRAD_CHUNK ? len - i0 : GRAD_CHUNK;
        const uint8_t *cond = k->cond + off[0] + i0 * inc[0];
        const float *g = k->g + o + i0;
        for (int64_t i = 0; i < n; i++) {
            bool take_x = cond[i * inc[0]] != 0;
            gx[i] = take_x ? g[i] : 0.0f;
            gy[i] = take_x ? 0.0f : g[i];
        }
        if (k->dx)
            add_row(k->dx + off[1] + i0 * inc[1], inc[1], gx, n);
        if (k->dy)
            add_row(k->dy + off[2] + i0 * inc[2], inc[2], gy, n);
    }
}

/* float32: dX gets dout where cond holds, dY where it does not, each summed
 * over its broadcast dimensions; the condition takes no gradient. */
static void where_backward(const op_call *c, lego_tensor *const *dout, lego_tensor *const *din)
{
    if (!dout[0] || c->out[0]->dtype != LEGO_F32)
        return;
    where_grad k = {.cond = c->in[0]->data, .g = dout[0]->data, .dx = grad_of(din, 1),
                    .dy = grad_of(din, 2)};
    if (!k.dx && !k.dy)
        return;
    const lego_tensor *in[3] = {c->in[0], c->in[1], c->in[2]};
    bcast b;
    bcast_init(&b, c->out[0], in, 3);
    bool parallel = !(k.dx && is_broadcast(&b, 1)) && !(k.dy && is_broadcast(&b, 2));
    bcast_walk(&b, where_grad_row, &k, parallel, 2.0);
}

const op_desc op_desc_Where = {.name = "Where", .min_in = 3, .max_in = 3, .min_out = 1,
                               .max_out = 1, .prepare = where_prepare,
                               .forward = where_forward, .backward = where_backward};
