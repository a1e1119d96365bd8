/* exec.c - activation planning, inference fusion and packing, and the
 * forward executor. */
#include "exec.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/env.h"
#include "../core/threads.h"

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

typedef struct span {
    size_t start, end;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* A value to place: largest first, then earliest defined, then by index
 * (a total order, so the layout is the same on every run). */
typedef struct to_place {
    size_t bytes;
    int def, v;
} to_place;

static int cmp_by_size(const void *a, const void *b)
{
    const to_place *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    if (x->def != y->def)
        return x->def < y->def ? -1 : 1;
    return x->v < y->v ? -1 : x->v > y->v;
}

/* Greedy by size: each value, largest first, goes to the lowest offset
 * free of the values already placed whose lifetimes [def, last] meet its
 * own. Placing the big ones first keeps small short-lived values from
 * splitting the arena into gaps nothing large fits in (first fit in
 * definition order left training plans a third larger than needed). */
lego_status arena_layout(int n_values, const size_t *bytes, const int *def, const int *last,
                         int n_steps, size_t *offset, size_t *total)
{
    to_place *order = malloc(sizeof *order * ((size_t)n_values + 1));
    int *placed = malloc(sizeof *placed * ((size_t)n_values + 1));
    span *busy = malloc(sizeof *busy * ((size_t)n_values + 1));
    if (!order || !placed || !busy) {
        free(order), free(placed), free(busy);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning activations");
    }
    int n = 0, n_placed = 0;
    for (int v = 0; v < n_values; v++) {
        offset[v] = SIZE_MAX;
        if (def[v] >= 0 && def[v] < n_steps)
            order[n++] = (to_place){bytes[v], def[v], v};
    }
    qsort(order, (size_t)n, sizeof *order, cmp_by_size);
    size_t high = 0;
    for (int i = 0; i < n; i++) {
        int v = order[i].v, end_v = last[v] > def[v] ? last[v] : def[v];
        size_t size = align64(bytes[v]);
        int nb = 0;
        for (int j = 0; j < n_placed; j++) {
            int u = placed[j], end_u = last[u] > def[u] ? last[u] : def[u];
            if (def[u] <= end_v && def[v] <= end_u)
                busy[nb++] = (span){offset[u], offset[u] + align64(bytes[u])};
        }
        qsort(busy, (size_t)nb, sizeof *busy, cmp_span);
        size_t at = 0;
        for (int j = 0; j < nb && busy[j].start < at + size; j++)
            if (busy[j].end > at)
                at = busy[j].end;
        offset[v] = at;
        placed[n_placed++] = v;
        if (at + size > high)
            high = at + size;
    }
    free(order), free(placed), free(busy);
    *total = high;
    return lego_ok();
}

/* ---- inference fusion and packing ---------------------------------------- */

/* Value v holds constant float data (an initializer or a folded value). */
static const float *const_f32(const lego_graph *g, int v, int64_t numel)
{
    if (v < 0)
        return NULL;
    const gvalue *x = &g->values[v];
    if ((x->kind != VALUE_INITIALIZER && x->kind != VALUE_FOLDED) || !x->t.data ||
        x->t.dtype != LEGO_F32 || lego_tensor_numel(&x->t) != numel)
        return NULL;
    return x->t.data;
}

/* The step reading v when it is v's only reader (once), else -1. */
static int sole_reader(const int *readers, const int *reader_step, const bool *ext, int v)
{
    return v >= 0 && readers[v] == 1 && !ext[v] ? reader_step[v] : -1;
}

/* BN node n folded as y*scale + shift per channel, computed as
 * batchnorm.c's inference does. false when n is not a foldable BN. */
static bool bn_fold(const lego_graph *g, const gnode *n, int64_t m, float *scale, float *shift)
{
    if (strcmp(n->op_type, "BatchNormalization") != 0 || n->n_in != 5 || n->n_out != 1)
        return false;
    const float *gamma = const_f32(g, n->in[1], m), *beta = const_f32(g, n->in[2], m);
    const float *mean = const_f32(g, n->in[3], m), *var = const_f32(g, n->in[4], m);
    float eps;
    lego_status st = attr_get_float(&n->attrs, "epsilon", 1e-5f, &eps);
    if (st.code) {
        lego_status_free(&st);
        return false;
    }
    if (!gamma || !beta || !mean || !var)
        return false;
    for (int64_t c = 0; c < m; c++) {
        float a = (float)(gamma[c] / sqrt((double)var[c] + eps));
        scale[c] = a;
        shift[c] = (float)(beta[c] - (double)mean[c] * a);
    }
    return true;
}

/* Relu or Clip node n as a clamp [lo, hi]. false for anything else. */
static bool clamp_of(const lego_graph *g, const gnode *n, float *lo, float *hi)
{
    if (strcmp(n->op_type, "Relu") == 0 && n->n_out == 1) {
        *lo = 0.0f;
        *hi = INFINITY;
        return true;
    }
    if (strcmp(n->op_type, "Clip") != 0 || n->n_out != 1)
        return false;
    *lo = -FLT_MAX;
    *hi = FLT_MAX;
    if (g->opset < 11) {
        lego_status a = attr_get_float(&n->attrs, "min", -FLT_MAX, lo);
        lego_status b = attr_get_float(&n->attrs, "max", FLT_MAX, hi);
        bool ok = !a.code && !b.code;
        lego_status_free(&a), lego_status_free(&b);
        return ok && *lo <= *hi;
    }
    for (int i = 1; i < n->n_in; i++) {
        if (n->in[i] < 0)
            continue;
        const float *v = const_f32(g, n->in[i], 1);
        if (!v)
            return false;
        *(i == 1 ? lo : hi) = *v;
    }
    return *lo <= *hi;
}

/* LEGO_FUSE=0 in the environment turns fusion off, to measure what it buys
 * (docs/PERFORMANCE.md); results are the same bits either way. */
bool exec_fusion_enabled(void) { return env_switch_on("LEGO_FUSE"); }

void exec_unpack(step_state *st, int n)
{
    for (int s = 0; st && s < n; s++)
        if (st[s].packed && st[s].unpack)
            st[s].unpack(st[s].packed);
}

/* The other input of an Add node n that reads y, when it can be added in
 * step s's epilogue: an Add of two tensors of its output's shape, the
 * other one ready before step s (computed by an earlier step, or the
 * graph's input or a constant). -1 when not. */
static int residual_of(const lego_graph *g, const gnode *n, int y, int s, const int *def_step)
{
    if (strcmp(n->op_type, "Add") != 0 || n->n_in != 2 || n->n_out != 1 || n->in[0] == n->in[1])
        return -1;
    int r = n->in[0] == y ? n->in[1] : n->in[1] == y ? n->in[0] : -1;
    if (r < 0 || !tensor_same_shape(&g->values[r].t, &g->values[n->out[0]].t) ||
        !tensor_same_shape(&g->values[y].t, &g->values[n->out[0]].t) ||
        g->values[r].t.dtype != LEGO_F32)
        return -1;
    value_kind kind = g->values[r].kind;
    bool ready = def_step[r] >= 0 ? def_step[r] < s : kind != VALUE_ACTIVATION;
    return ready ? r : -1;
}

/* The step of the Conv whose output v is, directly or through a
 * BatchNormalization only it feeds, or -1. */
static int conv_before(const lego_graph *g, const int *steps, const int *def_step, int v)
{
    int d = def_step[v];
    if (d < 0)
        return -1;
    const gnode *n = &g->nodes[steps[d]];
    if (strcmp(n->op_type, "BatchNormalization") == 0 && n->in[0] >= 0)
        d = def_step[n->in[0]], n = d >= 0 ? &g->nodes[steps[d]] : NULL;
    return n && n->op->pack && n->op->packs_add && strcmp(n->op_type, "Conv") == 0 ? d : -1;
}

/* Whether the steps that compute v after step s (mark[] set for them)
 * read nothing else computed after s: then they can run before it. */
static bool movable(const lego_graph *g, const int *steps, const int *def_step, int s, int v,
                    bool *mark)
{
    int d = def_step[v];
    if (d < s)
        return true;
    if (d == s)
        return false;
    if (mark[d])
        return true;
    mark[d] = true;
    const gnode *n = &g->nodes[steps[d]];
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0 && !movable(g, steps, def_step, s, n->in[i], mark))
            return false;
    return true;
}

/* A ResNet block's shortcut (a 1x1 Conv and its BN, say) often comes after
 * the block's last Conv in the graph, so that the Add joining them cannot
 * go into that Conv's epilogue: its residual is not ready. Where the
 * steps computing the residual depend only on values from before that
 * Conv, they move to just before it (running independent steps in
 * another order changes no value). Exec plans only: a block frame keeps
 * its schedule. */
static lego_status hoist_residuals(lego_graph *g, int *steps, int n)
{
    int nv = g->n_values;
    int *def_step = malloc(sizeof *def_step * ((size_t)nv + 1));
    int *tmp = malloc(sizeof *tmp * ((size_t)n + 1));
    bool *mark = calloc((size_t)n + 1, sizeof *mark);
    if (!def_step || !tmp || !mark) {
        free(def_step), free(tmp), free(mark);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning execution");
    }
    bool stale = true; /* def_step, until the first Add and after each move */
    for (int j = 0; j < n; j++) {
        const gnode *add = &g->nodes[steps[j]];
        if (strcmp(add->op_type, "Add") != 0 || add->n_in != 2 || add->in[0] < 0 || add->in[1] < 0)
            continue;
        for (int v = 0; stale && v < nv; v++)
            def_step[v] = -1;
        for (int t = 0; stale && t < n; t++)
            for (int o = 0; o < g->nodes[steps[t]].n_out; o++)
                def_step[g->nodes[steps[t]].out[o]] = t;
        stale = false;
        int at[2];
        for (int side = 0; side < 2; side++) { /* the Conv on each side that would take the Add */
            at[side] = conv_before(g, steps, def_step, add->in[side]);
            if (at[side] >= 0) {
                lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
                op_call c;
                const gnode *conv = &g->nodes[steps[at[side]]];
                graph_node_call(g, conv, NULL, in, out, &c);
                if (!conv->op->packs_add(&c))
                    at[side] = -1;
            }
        }
        /* nothing to do where either side's residual is ready already */
        if ((at[0] >= 0 && def_step[add->in[1]] < at[0]) || (at[1] >= 0 && def_step[add->in[0]] < at[1]))
            continue;
        for (int side = 0; side < 2; side++) {
            int s = at[side], r = add->in[1 - side];
            memset(mark, 0, sizeof *mark * (size_t)n);
            if (s < 0 || !movable(g, steps, def_step, s, r, mark))
                continue;
            int k = 0;
            for (int t = s; t < n; t++) /* the marked steps, then the rest, in order */
                if (mark[t])
                    tmp[k++] = steps[t];
            for (int t = s; t < n; t++)
                if (!mark[t])
                    tmp[k++] = steps[t];
            memcpy(steps + s, tmp, sizeof *steps * (size_t)(n - s));
            stale = true;
            break;
        }
    }
    free(def_step), free(tmp), free(mark);
    return lego_ok();
}

/* When step j, after step s, is a Relu or Clip reading y: its bounds, j
 * marked gone, and its output returned; else -1. */
static int take_clamp(const lego_graph *g, const int *steps, int s, int j, int y, bool *gone, float *lo,
                      float *hi)
{
    if (j <= s || g->nodes[steps[j]].in[0] != y || !clamp_of(g, &g->nodes[steps[j]], lo, hi))
        return -1;
    gone[j] = true;
    return g->nodes[steps[j]].out[0];
}

/* Fuses into step s (a packing Conv) what follows it; marks the fused
 * steps in gone and sets st->out_v and st->res_v. */
static lego_status fuse_conv(lego_graph *g, const int *steps, int s, const int *readers,
                             const int *reader_step, const int *def_step, const bool *ext, bool fuse,
                             bool *gone, step_state *st)
{
    const gnode *n = &g->nodes[steps[s]];
    int y = n->out[0];
    int64_t m = g->values[y].t.rank == 4 ? g->values[y].t.dims[1] : 0;
    float *scale = malloc(sizeof(float) * (size_t)(m + 1) * 2);
    if (!scale)
        return lego_error(LEGO_ERR_NOMEM, "out of memory fusing convolutions");
    op_fused f = {0};
    int j = fuse ? sole_reader(readers, reader_step, ext, y) : -1;
    if (j > s && m > 0 && g->nodes[steps[j]].in[0] == y &&
        bn_fold(g, &g->nodes[steps[j]], m, scale, scale + m + 1)) {
        f.scale = scale;
        f.shift = scale + m + 1;
        gone[j] = true;
        y = g->nodes[steps[j]].out[0];
        j = sole_reader(readers, reader_step, ext, y);
    }
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    op_call c;
    graph_node_call(g, n, NULL, in, out, &c);
    int r = j > s && n->op->packs_add && n->op->packs_add(&c)
                ? residual_of(g, &g->nodes[steps[j]], y, s, def_step) : -1;
    if (r >= 0) {
        f.add = true;
        st->res_v = r;
        gone[j] = true;
        y = g->nodes[steps[j]].out[0];
        j = sole_reader(readers, reader_step, ext, y);
    }
    int z = fuse ? take_clamp(g, steps, s, j, y, gone, &f.lo, &f.hi) : -1;
    if (z >= 0) {
        f.clamp = true;
        y = z;
    }
    st->out_v = y == n->out[0] ? -1 : y;
    lego_status e = n->op->pack(&c, f.scale || f.add || f.clamp ? &f : NULL, &st->packed);
    st->unpack = n->op->unpack;
    free(scale);
    if (e.code) {
        char label[256];
        lego_status named = lego_error(e.code, "%s: %s", graph_node_label(g, steps[s], label, sizeof label),
                                       lego_status_msg(e));
        lego_status_free(&e);
        return named;
    }
    return lego_ok();
}

/* A Relu or Clip that alone reads step s's output (an op that takes a
 * clamp, on same-shape float tensors; a BatchNormalization's statistics
 * are per channel) runs in step s's pass. */
static void fuse_clamp(lego_graph *g, const int *steps, int s, const int *readers,
                       const int *reader_step, const bool *ext, bool *gone, step_state *st)
{
    const gnode *n = &g->nodes[steps[s]];
    int y = n->out[0];
    int same_shape = strcmp(n->op_type, "BatchNormalization") == 0 ? 1 : n->n_in;
    for (int i = 0; i < same_shape; i++)
        if (n->in[i] < 0 || g->values[n->in[i]].t.dtype != LEGO_F32 ||
            !tensor_same_shape(&g->values[n->in[i]].t, &g->values[y].t))
            return;
    int z = take_clamp(g, steps, s, sole_reader(readers, reader_step, ext, y), y, gone, &st->lo, &st->hi);
    if (z >= 0) {
        st->clamp = true;
        st->out_v = z;
    }
}

/* ---- layouts ------------------------------------------------------------- */

/* Ops that compute element by element and so run on any layout, when their
 * activation inputs share the output's shape: Relu, Clip (bounds are
 * scalars) and Add without broadcasting. */
static bool layout_free(const lego_graph *g, const gnode *n)
{
    if (n->n_out != 1 || n->in[0] < 0)
        return false;
    if (strcmp(n->op_type, "Relu") == 0 || strcmp(n->op_type, "Clip") == 0)
        return true;
    return strcmp(n->op_type, "Add") == 0 && n->n_in == 2 && n->in[1] >= 0 &&
           tensor_same_shape(&g->values[n->in[0]].t, &g->values[n->out[0]].t) &&
           tensor_same_shape(&g->values[n->in[1]].t, &g->values[n->out[0]].t);
}

int exec_step_out(const gnode *n, const step_state *st, int o)
{
    return o == 0 && st->out_v >= 0 ? st->out_v : n->out[o];
}

static int step_out(const gnode *n, const step_state *st) { return exec_step_out(n, st, 0); }

void exec_step_liveness(const gnode *n, const step_state *st, int s, int *def, int *last_use, bool room)
{
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0)
            last_use[n->in[i]] = s;
    if (st->res_v >= 0)
        last_use[st->res_v] = s;
    for (int o = 0; o < n->n_out; o++) {
        int v = exec_step_out(n, st, o);
        def[v] = s;
        if (room && last_use[v] < s)
            last_use[v] = s;
    }
}

static int kernel_layout(const gnode *n, const step_state *st, bool output)
{
    return n->op->layout && st->packed ? n->op->layout(st->packed, output) : -1;
}

/* lay[v] for every value: > 0 when v stays in that layout. Assigned
 * forward (a kernel's output layout; an elementwise op's inputs' common
 * one), then every reader must accept it (a kernel reading input 0 in that
 * layout, or an elementwise op whose output has it); a value some reader
 * refuses is forced back to NCHW, and the passes repeat until none is. */
static lego_status plan_layouts(lego_graph *g, const int *steps, int n, const bool *ext,
                                step_state *st)
{
    int nv = g->n_values;
    int *lay = calloc((size_t)nv + 1, sizeof *lay);
    bool *forced = calloc((size_t)nv + 1, sizeof *forced);
    if (!lay || !forced) {
        free(lay), free(forced);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning layouts");
    }
    for (bool changed = true; changed;) {
        memset(lay, 0, sizeof *lay * (size_t)nv);
        for (int s = 0; s < n; s++) {
            const gnode *x = &g->nodes[steps[s]];
            int y = step_out(x, &st[s]), l = 0;
            if (x->op->layout)
                l = kernel_layout(x, &st[s], true);
            else if (layout_free(g, x))
                l = lay[x->in[0]] > 0 && (strcmp(x->op_type, "Add") != 0 || lay[x->in[1]] == lay[x->in[0]])
                        ? lay[x->in[0]] : 0;
            if (l > 0 && !forced[y] && !ext[y] && g->values[y].t.rank == 4)
                lay[y] = l;
        }
        changed = false;
        for (int s = 0; s < n; s++) {
            const gnode *x = &g->nodes[steps[s]];
            for (int i = 0; i < x->n_in; i++) {
                int v = x->in[i];
                if (v < 0 || lay[v] <= 0)
                    continue;
                bool ok = x->op->layout ? i == 0 && kernel_layout(x, &st[s], false) == lay[v]
                                        : layout_free(g, x) && lay[step_out(x, &st[s])] == lay[v];
                if (!ok) {
                    forced[v] = true;
                    changed = true;
                }
            }
            /* a fused Add's residual is added in the output's layout */
            int r = st[s].res_v, y = step_out(x, &st[s]);
            if (r >= 0 && lay[r] != lay[y]) {
                forced[lay[r] > 0 ? r : y] = true;
                changed = true;
            }
        }
    }
    for (int s = 0; s < n; s++) {
        const gnode *x = &g->nodes[steps[s]];
        if (x->op->layout && st[s].packed)
            st[s].native = (lay[x->in[0]] > 0 ? 1u : 0u) | (lay[step_out(x, &st[s])] > 0 ? 2u : 0u);
    }
    free(lay), free(forced);
    return lego_ok();
}

/* ---- chains ------------------------------------------------------------- */

#define MAX_CHAIN 16

/* Per-thread scratch step s needs to run image by image, in groups of
 * *group images; 0 when it cannot, or when the batch is a single group
 * (nothing to gain: layer by layer is image by image then). */
static size_t image_scratch(lego_graph *g, const int *steps, int s, const step_state *st,
                            int64_t *group)
{
    const gnode *n = &g->nodes[steps[s]];
    *group = 1;
    if (!n->op->image_scratch || !n->op->forward_images)
        return 0;
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    op_call c;
    exec_step_call(g, n, &st[s], NULL, NULL, in, out, &c);
    if (!c.out[0] || c.out[0]->rank != 4)
        return 0;
    size_t b = n->op->image_scratch(&c, group);
    return *group > 0 && c.out[0]->dims[0] % *group == 0 && c.out[0]->dims[0] > *group ? b : 0;
}

/* Chains: runs of steps that work image by image, each reading the one
 * before's output, which nothing else reads (any other input was computed
 * before the chain began). A plan runs a chain an image at
 * a time (exec_run): at batch 32, MobileNetV2's 32x32 blocks write 590 KB
 * per image and layer, which a layer-by-layer pass over the batch sends to
 * memory and reads back; image by image it is still in L2. Every image's
 * output is the same computation either way (same kernel, same image), so
 * no value changes. */
static lego_status plan_chains(lego_graph *g, const int *steps, int n, const bool *ext,
                               step_state *st)
{
    int *readers = calloc((size_t)g->n_values + 1, sizeof *readers);
    if (!readers)
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning chains");
    for (int s = 0; s < n; s++) {
        const gnode *x = &g->nodes[steps[s]];
        for (int i = 0; i < x->n_in; i++)
            if (x->in[i] >= 0)
                readers[x->in[i]]++;
        if (st[s].res_v >= 0) /* a fused Add reads its residual at this step */
            readers[st[s].res_v]++;
    }
    for (int s = 0; s < n;) {
        int len = 1;
        int64_t group, next_group;
        if (image_scratch(g, steps, s, st, &group) > 0)
            while (s + len < n && len < MAX_CHAIN) { /* the same groups all along */
                int v = step_out(&g->nodes[steps[s + len - 1]], &st[s + len - 1]);
                const gnode *next = &g->nodes[steps[s + len]];
                bool reads = false; /* an Add may take it as either input */
                for (int i = 0; i < next->n_in; i++)
                    reads = reads || next->in[i] == v;
                if (!reads || readers[v] != 1 || ext[v] ||
                    image_scratch(g, steps, s + len, st, &next_group) == 0 || next_group != group)
                    break;
                len++;
            }
        st[s].chain = len;
        s += len;
    }
    free(readers);
    return lego_ok();
}

lego_status exec_fuse_pack(lego_graph *g, int *steps, int *n_steps, const bool *ext,
                           step_state *st)
{
    int nv = g->n_values, n = *n_steps;
    int *readers = calloc((size_t)nv + 1, sizeof *readers);
    int *reader_step = malloc(sizeof *reader_step * ((size_t)nv + 1));
    int *def_step = malloc(sizeof *def_step * ((size_t)nv + 1));
    bool *gone = calloc((size_t)n + 1, sizeof *gone);
    if (!readers || !reader_step || !def_step || !gone) {
        free(readers), free(reader_step), free(def_step), free(gone);
        return lego_error(LEGO_ERR_NOMEM, "out of memory fusing convolutions");
    }
    for (int v = 0; v < nv; v++)
        def_step[v] = -1;
    for (int s = 0; s < n; s++) {
        const gnode *x = &g->nodes[steps[s]];
        for (int i = 0; i < x->n_in; i++)
            if (x->in[i] >= 0) {
                readers[x->in[i]]++;
                reader_step[x->in[i]] = s;
            }
        for (int o = 0; o < x->n_out; o++)
            def_step[x->out[o]] = s;
        st[s] = (step_state){.out_v = -1, .res_v = -1};
    }
    lego_status r = lego_ok();
    bool fuse = exec_fusion_enabled();
    for (int s = 0; s < n && !r.code; s++) {
        const gnode *x = &g->nodes[steps[s]];
        if (!gone[s] && fuse && x->op->takes_clamp)
            fuse_clamp(g, steps, s, readers, reader_step, ext, gone, &st[s]);
        if (gone[s] || !x->op->pack)
            continue;
        r = fuse_conv(g, steps, s, readers, reader_step, def_step, ext, fuse, gone, &st[s]);
    }
    int kept = 0;
    for (int s = 0; s < n; s++) {
        if (gone[s])
            continue;
        steps[kept] = steps[s];
        st[kept++] = st[s];
    }
    free(readers), free(reader_step), free(def_step), free(gone);
    *n_steps = kept;
    if (!r.code && fuse)
        r = plan_layouts(g, steps, kept, ext, st);
    if (!r.code && fuse)
        r = plan_chains(g, steps, kept, ext, st);
    if (r.code) {
        exec_unpack(st, kept);
        memset(st, 0, sizeof *st * (size_t)kept);
    }
    return r;
}

void exec_step_call(lego_graph *g, const gnode *n, const step_state *st, lego_tensor *vt, workspace *ws,
                    lego_tensor **in, lego_tensor **out, op_call *c)
{
    graph_node_call(g, n, vt, in, out, c);
    c->ws = ws;
    if (!st)
        return;
    c->packed = st->packed;
    c->native = st->native;
    if (st->out_v >= 0)
        out[0] = vt ? &vt[st->out_v] : &g->values[st->out_v].t;
    if (st->res_v >= 0)
        c->residual = vt ? &vt[st->res_v] : &g->values[st->res_v].t;
    c->clamp = st->clamp;
    c->lo = st->lo, c->hi = st->hi;
}

/* ---- plans ----------------------------------------------------------------- */

void exec_plan_free(exec_plan *p)
{
    exec_unpack(p->st, p->n_steps);
    free(p->st);
    free(p->vt);
    free(p->offset);
    free(p->steps);
    free(p->def);
    free(p->last);
    if (!p->shared)
        lego_aligned_free(p->arena);
    workspace_free(&p->own_ws);
    memset(p, 0, sizeof *p);
}

void exec_plan_use_workspace(exec_plan *p, workspace *ws)
{
    workspace_free(&p->own_ws);
    p->ws = ws;
}

workspace *exec_plan_workspace(exec_plan *p) { return p->ws ? p->ws : &p->own_ws; }

void exec_plan_use_arena(exec_plan *p, void *mem)
{
    unsigned char *to = mem;
    for (int v = 0; p->offset && p->vt && v < p->n_values; v++)
        if (p->offset[v] != SIZE_MAX)
            p->vt[v].data = to + p->offset[v];
    if (!p->shared)
        lego_aligned_free(p->arena);
    p->arena = to;
    p->shared = true;
}

size_t exec_release_packed(lego_graph *g, const int *steps, int n_steps, const step_state *st,
                           lego_tensor *vt)
{
    int nv = g->n_values;
    int *reads = calloc((size_t)nv + 1, sizeof *reads), *owned = calloc((size_t)nv + 1, sizeof *owned);
    if (!reads || !owned) { /* nothing freed is always safe */
        free(reads), free(owned);
        return 0;
    }
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_in; i++)
            if (g->nodes[k].in[i] >= 0)
                reads[g->nodes[k].in[i]]++;
    for (int i = 0; i < g->n_outputs; i++)
        reads[g->outputs[i]]++;
    for (int s = 0; s < n_steps; s++) {
        const gnode *n = &g->nodes[steps[s]];
        unsigned own = n->op->packed_owns && st[s].packed ? n->op->packed_owns(st[s].packed) : 0;
        for (int i = 0; i < n->n_in; i++)
            if (own >> i & 1u && n->in[i] >= 0)
                owned[n->in[i]]++;
    }
    size_t freed = 0;
    for (int v = 0; v < nv; v++) {
        lego_tensor *t = &g->values[v].t;
        if (g->values[v].kind != VALUE_INITIALIZER || !t->data || !t->owns || reads[v] == 0 ||
            owned[v] != reads[v])
            continue;
        freed += lego_tensor_bytes(t);
        tensor_release(t);
        if (vt)
            vt[v].data = NULL;
        g->weights_released = true;
    }
    free(reads), free(owned);
    return freed;
}

int64_t exec_weight_bytes(const lego_graph *g, const int *steps, int n_steps, const step_state *st)
{
    int64_t n = 0;
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].kind == VALUE_INITIALIZER && g->values[v].t.data)
            n += (int64_t)lego_tensor_bytes(&g->values[v].t);
    for (int s = 0; s < n_steps; s++) {
        const gnode *x = &g->nodes[steps[s]];
        if (st[s].packed && x->op->packed_bytes)
            n += (int64_t)x->op->packed_bytes(st[s].packed);
    }
    return n;
}

lego_status exec_plan_build(lego_graph *g, exec_plan *p) { return exec_plan_build_until(g, NULL, p); }

lego_status exec_plan_build_until(lego_graph *g, const int *until, exec_plan *p)
{
    memset(p, 0, sizeof *p);
    if (g->weights_released)
        return lego_error(LEGO_ERR_INTERNAL, "%s: its weights were released by an earlier plan", g->name);
    int nv = g->n_values, nn = g->n_nodes;
    p->vt = calloc((size_t)nv + 1, sizeof *p->vt);
    p->offset = malloc(sizeof *p->offset * ((size_t)nv + 1));
    p->steps = malloc(sizeof *p->steps * ((size_t)nn + 1));
    p->st = calloc((size_t)nn + 1, sizeof *p->st);
    bool *ext = calloc((size_t)nv + 1, sizeof *ext);
    int *last_use = malloc(sizeof *last_use * ((size_t)nv + 1));
    int *def = malloc(sizeof *def * ((size_t)nv + 1));
    size_t *bytes = malloc(sizeof *bytes * ((size_t)nv + 1));
    if (!p->vt || !p->offset || !p->steps || !p->st || !ext || !last_use || !def || !bytes) {
        free(ext), free(last_use), free(def), free(bytes);
        exec_plan_free(p);
        return lego_error(LEGO_ERR_NOMEM, "out of memory planning execution");
    }
    for (int k = 0; k < nn; k++)
        if (!g->nodes[g->order[k]].folded)
            p->steps[p->n_steps++] = g->order[k];
    for (int i = 0; i < g->n_outputs; i++)
        ext[g->outputs[i]] = true;
    lego_status fst = exec_fusion_enabled() ? hoist_residuals(g, p->steps, p->n_steps) : lego_ok();
    if (!fst.code)
        fst = exec_fuse_pack(g, p->steps, &p->n_steps, ext, p->st);
    free(ext);
    if (fst.code) {
        free(last_use), free(def), free(bytes);
        exec_plan_free(p);
        return fst;
    }
    for (int v = 0; v < nv; v++) {
        p->vt[v] = g->values[v].t;
        p->vt[v].owns = 0; /* the plan never frees graph data */
        bytes[v] = lego_tensor_bytes(&p->vt[v]);
        last_use[v] = def[v] = -1;
    }
    for (int s = 0; s < p->n_steps; s++)
        exec_step_liveness(&g->nodes[p->steps[s]], &p->st[s], s, def, last_use, true);
    /* A chain runs image by image, its inner values in per-thread buffers
     * (run_chain): what its steps read from outside it is in use until its
     * last step, whose output is written image by image meanwhile and so
     * must not take their memory. The inner values keep their own places
     * and lifetimes, for whoever runs the plan step by step. */
    for (int s = 0; s < p->n_steps; s++) {
        int end = s + p->st[s].chain - 1;
        for (int j = s; j <= end && j < p->n_steps; j++) {
            const gnode *n = &g->nodes[p->steps[j]], *prev = &g->nodes[p->steps[j > 0 ? j - 1 : 0]];
            int inner = j > s ? step_out(prev, &p->st[j - 1]) : -1;
            for (int i = 0; i < n->n_in; i++) {
                int v = n->in[i];
                if (v >= 0 && v != inner && last_use[v] < end)
                    last_use[v] = end;
            }
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        int v = g->outputs[i], u = until ? until[v] : -1;
        if (u < 0)
            last_use[v] = p->n_steps;
        else if (def[u] > last_use[v])
            last_use[v] = def[u];
    }
    size_t high = 0;
    lego_status st = arena_layout(nv, bytes, def, last_use, p->n_steps, p->offset, &high);
    free(bytes);
    p->def = def, p->last = last_use, p->n_values = nv;
    if (st.code) {
        exec_plan_free(p);
        return st;
    }
    p->arena_bytes = high;
    p->arena = lego_aligned_alloc(high ? high : 64);
    if (!p->arena) {
        exec_plan_free(p);
        return lego_error(LEGO_ERR_NOMEM, "cannot allocate %zu bytes of activations", high);
    }
    for (int v = 0; v < nv; v++)
        if (p->offset[v] != SIZE_MAX)
            p->vt[v].data = p->arena + p->offset[v];
    return lego_ok();
}

typedef struct chain_run {
    op_call c[MAX_CHAIN];
    const op_desc *op[MAX_CHAIN];
    bool per_image[MAX_CHAIN][OP_MAX_IO]; /* input i is an activation, cut by image */
    int len;
    int64_t group;
    size_t scratch, inner; /* per thread: the kernels' scratch; one inner value's group */
    unsigned char *buf;    /* per thread: scratch, then two inner buffers */
    atomic_bool failed;
} chain_run;

/* Bytes of one group of images of t. */
static size_t group_bytes(const lego_tensor *t, int64_t group)
{
    return lego_tensor_bytes(t) / (size_t)t->dims[0] * (size_t)group;
}

/* Groups [begin, end): each runs through every step, the steps' calls
 * viewing that group alone (forward_images over images [0, group) of the
 * views); inner values go to this thread's two buffers in turn, so they
 * stay in its cache from one step to the next. */
static void chain_images(void *ctx, int64_t begin, int64_t end, int thread)
{
    chain_run *r = ctx;
    unsigned char *mine = r->buf + (size_t)thread * (r->scratch + 2 * r->inner);
    unsigned char *inner[2] = {mine + r->scratch, mine + r->scratch + r->inner};
    for (int64_t i = begin; i < end; i++)
        for (int j = 0; j < r->len; j++) {
            const op_call *c = &r->c[j];
            lego_tensor tin[OP_MAX_IO], tout, tres, *pin[OP_MAX_IO], *pout[1] = {&tout};
            op_call v = *c;
            if (c->residual) { /* computed before the chain (plan_chains counts its read) */
                tres = *c->residual;
                tres.dims[0] = r->group;
                tres.data = (unsigned char *)c->residual->data +
                            (size_t)i * group_bytes(c->residual, r->group);
                v.residual = &tres;
            }
            for (int k = 0; k < c->n_in; k++) {
                pin[k] = c->in[k];
                if (!c->in[k] || !r->per_image[j][k])
                    continue;
                tin[k] = *c->in[k];
                tin[k].dims[0] = r->group;
                bool from_inner = j > 0 && c->in[k] == r->c[j - 1].out[0];
                tin[k].data = from_inner ? (void *)inner[(j - 1) & 1]
                                         : (void *)((unsigned char *)c->in[k]->data +
                                                    (size_t)i * group_bytes(c->in[k], r->group));
                pin[k] = &tin[k];
            }
            tout = *c->out[0];
            tout.dims[0] = r->group;
            tout.data = j < r->len - 1 ? (void *)inner[j & 1]
                                       : (void *)((unsigned char *)c->out[0]->data +
                                                  (size_t)i * group_bytes(c->out[0], r->group));
            v.in = pin;
            v.out = pout;
            if (!r->op[j]->forward_images(&v, 0, r->group, mine))
                atomic_store(&r->failed, true);
        }
}

/* Steps [s, s+len) image by image over the pool's threads; false when
 * scratch or a kernel failed (the caller then runs them one by one). */
static bool run_chain(lego_graph *g, exec_plan *p, int s, int len, lego_tensor *in[][OP_MAX_IO],
                      lego_tensor *out[][OP_MAX_IO])
{
    chain_run r = {.len = len};
    atomic_init(&r.failed, false);
    double work = 0;
    for (int j = 0; j < len; j++) {
        const gnode *n = &g->nodes[p->steps[s + j]];
        exec_step_call(g, n, &p->st[s + j], p->vt, NULL, in[j], out[j], &r.c[j]);
        r.op[j] = n->op;
        size_t b = n->op->image_scratch(&r.c[j], &r.group);
        r.scratch = b > r.scratch ? b : r.scratch;
        work += (double)lego_tensor_numel(r.c[j].out[0]);
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            r.per_image[j][k] = v >= 0 && (g->values[v].kind == VALUE_ACTIVATION ||
                                           g->values[v].kind == VALUE_INPUT);
        }
    }
    for (int j = 0; j + 1 < len; j++) {
        size_t b = group_bytes(r.c[j].out[0], r.group);
        r.inner = b > r.inner ? b : r.inner;
    }
    int64_t images = r.c[0].out[0]->dims[0] / r.group; /* groups, from here on */
    r.scratch = (r.scratch + 63) / 64 * 64;
    r.inner = (r.inner + 63) / 64 * 64;
    /* per image: about 16 operations per output value (a GEMM's flops
     * count 1/16, conv.c), so the values themselves are the measure */
    par_split sp = par_split_work(images, work / (double)images);
    r.buf = lego_aligned_alloc((r.scratch + 2 * r.inner) * (size_t)sp.threads);
    if (!r.buf)
        return false;
    parallel_run(images, sp, chain_images, &r);
    lego_aligned_free(r.buf);
    return !atomic_load(&r.failed);
}

lego_status exec_run(lego_graph *g, exec_plan *p, const lego_tensor *const *inputs,
                     lego_tensor **outputs)
{
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        const lego_tensor *x = inputs[i];
        char want[96], got[96];
        if (!x || !x->data)
            return lego_error(LEGO_ERR_ARG, "input '%s' has no data", g->values[v].name);
        if (x->dtype != p->vt[v].dtype || !tensor_same_shape(x, &p->vt[v]))
            return lego_error(LEGO_ERR_SHAPE, "input '%s' is %s %s, the model expects %s %s",
                              g->values[v].name, dtype_name(x->dtype),
                              tensor_shape_str(x, got, sizeof got), dtype_name(p->vt[v].dtype),
                              tensor_shape_str(&p->vt[v], want, sizeof want));
        p->vt[v].data = x->data; /* kernels never write their inputs */
    }
    lego_tensor *in[OP_MAX_IO], *out[OP_MAX_IO];
    for (int s = 0; s < p->n_steps; s++) {
        int len = p->st[s].chain;
        if (len > 1) {
            lego_tensor *cin[MAX_CHAIN][OP_MAX_IO], *cout[MAX_CHAIN][OP_MAX_IO];
            if (run_chain(g, p, s, len, cin, cout)) {
                s += len - 1;
                continue;
            }
        }
        const gnode *n = &g->nodes[p->steps[s]];
        op_call c;
        exec_step_call(g, n, &p->st[s], p->vt, exec_plan_workspace(p), in, out, &c);
        n->op->forward(&c);
    }
    for (int i = 0; i < g->n_outputs; i++)
        outputs[i] = NULL;
    for (int i = 0; i < g->n_outputs; i++) {
        lego_tensor *t = calloc(1, sizeof *t);
        lego_status st = t ? tensor_clone(&p->vt[g->outputs[i]], t)
                           : lego_error(LEGO_ERR_NOMEM, "out of memory");
        if (st.code) {
            free(t);
            for (int j = 0; j < i; j++) {
                lego_tensor_free(outputs[j]);
                outputs[j] = NULL;
            }
            return st;
        }
        outputs[i] = t;
    }
    return lego_ok();
}
