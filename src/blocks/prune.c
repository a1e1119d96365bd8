/* prune.c - channel dependency analysis and L1-norm filter pruning of a
 * block (see prune.h for the outline).
 *
 * Channel spaces. Every run-time tensor of rank >= 2 in the block gets a
 * "layout": the list of atoms its channel axis (axis 1) is made of, each
 * atom a run of channels. Atoms live in a union-find; atoms that must keep
 * the same channels are united. Walking the block's nodes in topological
 * order:
 *   - the entry gets one atom, fixed (never thinned);
 *   - Conv / ConvTranspose (constant weight): the output gets a new atom of
 *     C_out channels written by the conv. A depthwise conv (group == C_in ==
 *     C_out > 1) instead passes its input layout through and also writes
 *     into it. A grouped conv (1 < group, not depthwise) asks its input atom
 *     and its output atom to be cut evenly across `group` groups (an input
 *     made of several atoms is fixed instead);
 *   - channel-wise ops pass their input layout to their outputs:
 *     BatchNormalization and InstanceNormalization (whose vectors are sliced
 *     with it), Relu, LeakyRelu, Clip, Sigmoid, Tanh, Sqrt, Identity,
 *     Dropout, Cast, the pools, Softmax over an axis >= 2, Reduce* over
 *     spatial axes only (keepdims), Pad with zero pads on axes 0 and 1,
 *     Resize with the channel count unchanged (a constant `sizes` gets its
 *     channel entry rewritten);
 *   - elementwise ops (Add, Sub, Mul, Div, Pow, Max, Min, Sum, Mean, PRelu,
 *     numpy broadcasting): run-time inputs whose channel axis lines up with
 *     the output's and has its size are united with the output (a residual
 *     Add ties its branches; x * gate with a [N,C,1,1] gate, as in SE and
 *     CBAM, ties the gate's space to x's, so the gate's producing conv loses
 *     the same output channels); an input whose channel axis broadcasts
 *     (size 1, or missing) is read whole; a constant whose channel axis has
 *     the output's size is sliced along it;
 *   - Concat on axis 1 lines its inputs' layouts up; on another axis it
 *     unites them;
 *   - Reduce* over axis 1 (not 0, keepdims) reads its input whole and
 *     makes a new 1-channel atom;
 *   - anything else (Reshape, Flatten, Gemm, MatMul, Transpose, Expand,
 *     Slice, Gather, Squeeze, Unsqueeze, Softmax over channels, a conv with
 *     a run-time weight, ...) cannot carry a cut: its inputs' atoms are
 *     fixed and its outputs get new fixed atoms.
 * Then the exit's atoms are fixed, and so is any block value read outside
 * the block's nodes (the exit, or a folded Shape). A constant read by
 * several nodes must be sliced one way: convs sharing a weight unite their
 * input and their output spaces; other mixed uses fix what they touch.
 * Uniting atoms unites their "fixed" flags and group requests (the finer
 * of two nested group counts; two that do not nest fix the atom).
 *
 * A space (atom root) is thinnable when it is not fixed, has >= 2 channels,
 * and every conv writing into it (through any of its atoms) is one of the
 * block's prunable convs (so a kept conv, whose output the block exit needs
 * whole, never loses filters). Its channel c scores the sum over its
 * writing convs (each weight once per offset) of the L1 norm of the
 * filter that writes c: W[c,:,...] for Conv, W[:,c,...] within c's group
 * for ConvTranspose. At sparsity s it keeps C - floor(C*s) channels with the
 * highest scores, the lower index winning a tie (the original prunes every
 * filter at or below the threshold, so ties over-prune); with g groups,
 * C/g - floor(C/g*s) in each group, ranked within the group, so the group
 * count stays and a grouped conv stays valid.
 *
 * The descendant copies the block's nodes with their names, slices every
 * constant as its use demands (conv weights on both axes, per group;
 * biases; normalisation vectors; broadcast constants; Resize sizes) and
 * sets a depthwise conv's group to its kept channel count. Folded values
 * that the block reads (constants computed at load) become Constant nodes,
 * so the descendant's initializers are exactly the block's (sliced)
 * weights. */
#include "prune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/tensor.h"

typedef struct atom {
    int parent;
    int64_t size;
    int groups; /* requested even cut over this many groups (1: none) */
    bool fixed;
} atom;

typedef struct producer {
    int atom;   /* an atom the conv writes into */
    int conv;   /* index into plan.convs */
    int64_t off; /* the conv's output channel of the atom's channel 0 */
} producer;

typedef struct conv_rec {
    int node;
    int x, y, w, b; /* value indices; b = -1 without bias */
    int groups;
    bool transpose, depthwise, opaque;
    int64_t cin, cout, kernel; /* kernel: elements of one spatial kernel */
} conv_rec;

typedef enum spec_kind { SPEC_NONE, SPEC_CONV_W, SPEC_CONV_B, SPEC_AXIS, SPEC_SHAPE } spec_kind;

/* One node's use of a constant: how it must be sliced. */
typedef struct cuse {
    int value;
    spec_kind kind;
    int conv;  /* SPEC_CONV_W / SPEC_CONV_B */
    int axis;  /* SPEC_AXIS: the axis; SPEC_SHAPE: the element holding the channel count */
    int ref;   /* SPEC_AXIS / SPEC_SHAPE: the value whose layout gives the channels */
} cuse;

struct prune_plan {
    const lego_graph *g;
    const block *b;
    atom *atoms;
    int n_atoms, cap_atoms;
    int **lay; /* per value: its atoms, or NULL */
    int *lay_n;
    bool *in_block; /* per value: the entry or made by a block node */
    producer *prod;
    int n_prod, cap_prod;
    conv_rec *convs;
    int n_convs;
    int *conv_of_node; /* per node: index into convs, or -1 */
    bool *node_prunable;
    cuse *uses;
    int n_uses, cap_uses;
    int *spec_of; /* per value: its first use, or -1 */
    /* per atom (meaningful at roots) */
    bool *thin;
    double **score;
    int n_spaces, n_thin;
    lego_status err; /* first allocation failure during the walk */
};

static lego_status nomem(void) { return lego_error(LEGO_ERR_NOMEM, "out of memory pruning a block"); }

static bool grow(void **items, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return true;
    int n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *p = realloc(*items, size * (size_t)n);
    if (!p)
        return false;
    *items = p;
    *cap = n;
    return true;
}

static void fail(prune_plan *p, lego_status st)
{
    if (p->err.code == LEGO_OK)
        p->err = st;
    else
        lego_status_free(&st);
}

/* ---- union-find ----------------------------------------------------------- */

static int find(prune_plan *p, int a)
{
    while (p->atoms[a].parent != a) {
        p->atoms[a].parent = p->atoms[p->atoms[a].parent].parent;
        a = p->atoms[a].parent;
    }
    return a;
}

static int new_atom(prune_plan *p, int64_t size, bool fixed)
{
    if (!grow((void **)&p->atoms, &p->cap_atoms, p->n_atoms + 1, sizeof *p->atoms)) {
        fail(p, nomem());
        return -1;
    }
    atom *a = &p->atoms[p->n_atoms];
    a->parent = p->n_atoms;
    a->size = size;
    a->groups = 1;
    a->fixed = fixed;
    return p->n_atoms++;
}

/* The finer of two group requests when one divides the other, else 0. */
static int combine_groups(int a, int b)
{
    if (a % b == 0)
        return a;
    if (b % a == 0)
        return b;
    return 0;
}

static void request_groups(prune_plan *p, int a, int groups)
{
    a = find(p, a);
    int c = combine_groups(p->atoms[a].groups, groups);
    if (c == 0 || p->atoms[a].size % c != 0)
        p->atoms[a].fixed = true;
    else
        p->atoms[a].groups = c;
}

static void unite(prune_plan *p, int a, int b)
{
    a = find(p, a);
    b = find(p, b);
    if (a == b)
        return;
    if (p->atoms[a].size != p->atoms[b].size) { /* callers check; be safe */
        p->atoms[a].fixed = p->atoms[b].fixed = true;
        return;
    }
    p->atoms[b].parent = a;
    p->atoms[a].fixed |= p->atoms[b].fixed;
    request_groups(p, a, p->atoms[b].groups);
}

/* ---- layouts ----------------------------------------------------------------- */

static bool is_runtime(const lego_graph *g, int v)
{
    return v >= 0 && (g->values[v].kind == VALUE_ACTIVATION || g->values[v].kind == VALUE_INPUT);
}

static bool is_const(const lego_graph *g, int v)
{
    return v >= 0 && (g->values[v].kind == VALUE_INITIALIZER || g->values[v].kind == VALUE_FOLDED);
}

static const lego_tensor *T(const prune_plan *p, int v) { return &p->g->values[v].t; }

static bool has_layout(const prune_plan *p, int v) { return v >= 0 && p->lay[v] != NULL; }

static void set_layout(prune_plan *p, int v, const int *atoms, int n)
{
    if (v < 0 || p->lay[v])
        return;
    int *a = malloc(sizeof *a * (size_t)(n ? n : 1));
    if (!a) {
        fail(p, nomem());
        return;
    }
    memcpy(a, atoms, sizeof *a * (size_t)n);
    p->lay[v] = a;
    p->lay_n[v] = n;
}

static void fix_value(prune_plan *p, int v)
{
    if (!has_layout(p, v))
        return;
    for (int i = 0; i < p->lay_n[v]; i++)
        p->atoms[find(p, p->lay[v][i])].fixed = true;
}

/* A fresh single-atom layout for a run-time value of rank >= 2. */
static int set_new(prune_plan *p, int v, bool fixed)
{
    if (v < 0 || !is_runtime(p->g, v) || T(p, v)->rank < 2)
        return -1;
    int a = new_atom(p, T(p, v)->dims[1], fixed);
    if (a >= 0)
        set_layout(p, v, &a, 1);
    return a;
}

/* Unite two layouts atom by atom when they are made the same way, else fix
 * both. */
static void unify_values(prune_plan *p, int u, int v)
{
    if (!has_layout(p, u) || !has_layout(p, v)) {
        fix_value(p, u);
        fix_value(p, v);
        return;
    }
    bool same = p->lay_n[u] == p->lay_n[v];
    for (int i = 0; same && i < p->lay_n[u]; i++)
        same = p->atoms[p->lay[u][i]].size == p->atoms[p->lay[v][i]].size;
    if (!same) {
        fix_value(p, u);
        fix_value(p, v);
        return;
    }
    for (int i = 0; i < p->lay_n[u]; i++)
        unite(p, p->lay[u][i], p->lay[v][i]);
}

static void add_use(prune_plan *p, int v, spec_kind kind, int conv, int axis, int ref)
{
    if (!grow((void **)&p->uses, &p->cap_uses, p->n_uses + 1, sizeof *p->uses)) {
        fail(p, nomem());
        return;
    }
    p->uses[p->n_uses++] = (cuse){v, kind, conv, axis, ref};
}

static void add_producer(prune_plan *p, int a, int conv, int64_t off)
{
    if (!grow((void **)&p->prod, &p->cap_prod, p->n_prod + 1, sizeof *p->prod)) {
        fail(p, nomem());
        return;
    }
    p->prod[p->n_prod++] = (producer){a, conv, off};
}

/* ---- ops ----------------------------------------------------------------------- */

static bool op_is(const gnode *n, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(n->op_type, *names) == 0)
            return true;
    return false;
}

static int64_t int_attr(const gnode *n, const char *name, int64_t def)
{
    int64_t v = def;
    lego_status st = attr_get_int(&n->attrs, name, def, &v);
    lego_status_free(&st);
    return v;
}

/* Constants a node reads with no channel meaning (pads, scales, scalars):
 * recorded so a constant used two ways is caught. */
static void plain_uses(prune_plan *p, const gnode *n, int from)
{
    for (int i = from; i < n->n_in; i++) {
        int v = n->in[i];
        if (is_const(p->g, v) && lego_tensor_numel(T(p, v)) > 1)
            add_use(p, v, SPEC_NONE, -1, 0, -1);
    }
}

/* Cannot carry a cut: fix what it reads, give its outputs fixed atoms. */
static void opaque(prune_plan *p, const gnode *n)
{
    for (int i = 0; i < n->n_in; i++)
        if (is_runtime(p->g, n->in[i]))
            fix_value(p, n->in[i]);
    plain_uses(p, n, 0);
    for (int o = 0; o < n->n_out; o++)
        set_new(p, n->out[o], true);
}

/* Input 0 passes its layout to every output of the same rank and channel
 * count. `vectors` inputs from 1 on are per-channel [C] constants. */
static void channelwise(prune_plan *p, const gnode *n, int vectors)
{
    int x = n->in[0];
    if (!is_runtime(p->g, x) || !has_layout(p, x)) {
        opaque(p, n);
        return;
    }
    const lego_tensor *tx = T(p, x);
    for (int i = 1; i < n->n_in; i++) {
        int v = n->in[i];
        if (v < 0)
            continue;
        if (is_runtime(p->g, v)) {
            opaque(p, n);
            return;
        }
        if (i <= vectors && (T(p, v)->rank != 1 || T(p, v)->dims[0] != tx->dims[1])) {
            opaque(p, n);
            return;
        }
    }
    for (int i = 1; i < n->n_in; i++)
        if (n->in[i] >= 0 && i <= vectors)
            add_use(p, n->in[i], SPEC_AXIS, -1, 0, x);
    plain_uses(p, n, vectors + 1);
    for (int o = 0; o < n->n_out; o++) {
        int y = n->out[o];
        const lego_tensor *ty = T(p, y);
        if (ty->rank == tx->rank && ty->dims[1] == tx->dims[1])
            set_layout(p, y, p->lay[x], p->lay_n[x]);
        else
            set_new(p, y, true);
    }
}

static int norm_axis(int64_t a, int rank) { return (int)(a < 0 ? a + rank : a); }

/* Pad with zero pads on axes 0 and 1 is channel-wise. */
static bool pad_keeps_channels(const prune_plan *p, const gnode *n, int rank)
{
    const int64_t *pads = NULL;
    int n_pads = 0;
    if (p->g->opset >= 11) {
        int v = n->n_in > 1 ? n->in[1] : -1;
        if (!is_const(p->g, v) || T(p, v)->dtype != LEGO_I64)
            return false;
        pads = T(p, v)->data;
        n_pads = (int)lego_tensor_numel(T(p, v));
    } else {
        lego_status st = attr_get_ints(&n->attrs, "pads", &pads, &n_pads);
        lego_status_free(&st);
    }
    if (!pads)
        return n_pads == 0;
    int half = n_pads / 2;
    int v_axes = n->n_in > 3 ? n->in[3] : -1;
    for (int j = 0; j < half; j++) {
        int axis = j;
        if (v_axes >= 0) {
            if (!is_const(p->g, v_axes) || lego_tensor_numel(T(p, v_axes)) != half)
                return false;
            axis = norm_axis(tensor_get_i64(T(p, v_axes), j), rank);
        }
        if ((axis == 0 || axis == 1) && (pads[j] != 0 || pads[j + half] != 0))
            return false;
    }
    return true;
}

static void resize(prune_plan *p, const gnode *n)
{
    int x = n->in[0], y = n->out[0];
    if (!is_runtime(p->g, x) || !has_layout(p, x) || T(p, y)->rank != T(p, x)->rank ||
        T(p, y)->dims[1] != T(p, x)->dims[1]) {
        opaque(p, n);
        return;
    }
    int sizes = strcmp(n->op_type, "Resize") == 0 && n->n_in > 3 ? n->in[3] : -1;
    int elem = -1;
    if (sizes >= 0 && lego_tensor_numel(T(p, sizes)) > 0) {
        if (!is_const(p->g, sizes) || T(p, sizes)->dtype != LEGO_I64) {
            opaque(p, n);
            return;
        }
        const int64_t *axes = NULL;
        int n_axes = 0;
        lego_status st = attr_get_ints(&n->attrs, "axes", &axes, &n_axes);
        lego_status_free(&st);
        if (!axes) {
            elem = 1;
        } else {
            for (int j = 0; j < n_axes; j++)
                if (norm_axis(axes[j], T(p, x)->rank) == 1)
                    elem = j;
        }
    }
    for (int i = 1; i < n->n_in; i++)
        if (n->in[i] >= 0 && is_runtime(p->g, n->in[i])) {
            opaque(p, n);
            return;
        }
    for (int i = 1; i < n->n_in; i++) {
        if (i == 3 && elem >= 0)
            add_use(p, sizes, SPEC_SHAPE, -1, elem, x);
        else if (is_const(p->g, n->in[i]) && lego_tensor_numel(T(p, n->in[i])) > 1)
            add_use(p, n->in[i], SPEC_NONE, -1, 0, -1);
    }
    set_layout(p, y, p->lay[x], p->lay_n[x]);
}

static void reduce(prune_plan *p, const gnode *n)
{
    int x = n->in[0], rank = T(p, x)->rank;
    bool seen[LEGO_MAX_RANK] = {false};
    int n_axes = 0;
    const int64_t *axes = NULL;
    lego_status st = attr_get_ints(&n->attrs, "axes", &axes, &n_axes);
    lego_status_free(&st);
    int va = n->n_in > 1 ? n->in[1] : -1;
    if (va >= 0) {
        if (!is_const(p->g, va)) {
            opaque(p, n);
            return;
        }
        n_axes = (int)lego_tensor_numel(T(p, va));
        for (int j = 0; j < n_axes; j++) {
            int a = norm_axis(tensor_get_i64(T(p, va), j), rank);
            if (a >= 0 && a < rank)
                seen[a] = true;
        }
    } else {
        for (int j = 0; j < n_axes; j++) {
            int a = norm_axis(axes[j], rank);
            if (a >= 0 && a < rank)
                seen[a] = true;
        }
    }
    bool keep = int_attr(n, "keepdims", 1) != 0;
    if (n_axes == 0) {
        if (int_attr(n, "noop_with_empty_axes", 0)) {
            channelwise(p, n, 0);
            return;
        }
        for (int a = 0; a < rank; a++)
            seen[a] = true;
    }
    if (!keep || seen[0] || !has_layout(p, x)) {
        opaque(p, n);
        return;
    }
    if (!seen[1]) {
        channelwise(p, n, 0);
        return;
    }
    /* over the channels: reads the input whole, as a conv does */
    plain_uses(p, n, 1);
    set_new(p, n->out[0], true);
}

static void softmax(prune_plan *p, const gnode *n)
{
    int rank = T(p, n->in[0])->rank;
    int axis = norm_axis(int_attr(n, "axis", p->g->opset >= 13 ? -1 : 1), rank);
    if (axis >= 2)
        channelwise(p, n, 0);
    else
        opaque(p, n);
}

static void elementwise(prune_plan *p, const gnode *n)
{
    int y = n->out[0];
    const lego_tensor *ty = T(p, y);
    if (ty->rank < 2) {
        opaque(p, n);
        return;
    }
    int R = ty->rank;
    int64_t C = ty->dims[1];
    int first = -1;
    for (int i = 0; i < n->n_in; i++) {
        int v = n->in[i];
        if (v < 0)
            continue;
        const lego_tensor *t = T(p, v);
        int pos = 1 - (R - t->rank);
        int64_t c = pos >= 0 ? t->dims[pos] : 1;
        if (is_runtime(p->g, v)) {
            if (t->rank == R && c == C && has_layout(p, v)) {
                if (first < 0)
                    first = v;
            } else if (c != 1) {
                opaque(p, n);
                return;
            }
        } else if (c != 1 && c != C) {
            opaque(p, n);
            return;
        }
    }
    if (first < 0) {
        /* every run-time input broadcasts over the channels */
        for (int i = 0; i < n->n_in; i++)
            if (is_const(p->g, n->in[i]) && lego_tensor_numel(T(p, n->in[i])) > 1)
                add_use(p, n->in[i], SPEC_NONE, -1, 0, -1);
        set_new(p, y, true);
        return;
    }
    for (int i = 0; i < n->n_in; i++) {
        int v = n->in[i];
        if (v < 0 || v == first)
            continue;
        const lego_tensor *t = T(p, v);
        int pos = 1 - (R - t->rank);
        int64_t c = pos >= 0 ? t->dims[pos] : 1;
        if (is_runtime(p->g, v)) {
            if (c == C && t->rank == R)
                unify_values(p, first, v);
        } else if (c == C && C != 1) {
            add_use(p, v, SPEC_AXIS, -1, pos, first);
        } else if (lego_tensor_numel(t) > 1) {
            add_use(p, v, SPEC_NONE, -1, 0, -1);
        }
    }
    set_layout(p, y, p->lay[first], p->lay_n[first]);
}

static void concat(prune_plan *p, const gnode *n)
{
    int y = n->out[0];
    int R = T(p, y)->rank;
    if (R < 2) {
        opaque(p, n);
        return;
    }
    int axis = norm_axis(int_attr(n, "axis", 0), R);
    int total = 0;
    for (int i = 0; i < n->n_in; i++) {
        int v = n->in[i];
        if (v < 0 || !is_runtime(p->g, v) || !has_layout(p, v) || T(p, v)->rank != R) {
            opaque(p, n);
            return;
        }
        total += p->lay_n[v];
    }
    if (axis != 1) {
        for (int i = 1; i < n->n_in; i++)
            unify_values(p, n->in[0], n->in[i]);
        set_layout(p, y, p->lay[n->in[0]], p->lay_n[n->in[0]]);
        return;
    }
    int *a = malloc(sizeof *a * (size_t)(total ? total : 1));
    if (!a) {
        fail(p, nomem());
        return;
    }
    int k = 0;
    for (int i = 0; i < n->n_in; i++)
        for (int j = 0; j < p->lay_n[n->in[i]]; j++)
            a[k++] = p->lay[n->in[i]][j];
    set_layout(p, y, a, k);
    free(a);
}

static void conv(prune_plan *p, int node)
{
    const gnode *n = &p->g->nodes[node];
    conv_rec *c = &p->convs[p->n_convs];
    memset(c, 0, sizeof *c);
    c->node = node;
    c->x = n->in[0];
    c->w = n->n_in > 1 ? n->in[1] : -1;
    c->b = n->n_in > 2 ? n->in[2] : -1;
    c->y = n->out[0];
    c->transpose = strcmp(n->op_type, "ConvTranspose") == 0;
    c->groups = (int)int_attr(n, "group", 1);
    const lego_tensor *tx = T(p, c->x), *ty = T(p, c->y);
    c->cin = tx->rank >= 2 ? tx->dims[1] : 0;
    c->cout = ty->rank >= 2 ? ty->dims[1] : 0;
    p->conv_of_node[node] = p->n_convs++;
    bool ok = c->w >= 0 && is_const(p->g, c->w) && (c->b < 0 || is_const(p->g, c->b)) && is_runtime(p->g, c->x) &&
              has_layout(p, c->x) && c->groups >= 1 && T(p, c->w)->rank >= 3 && T(p, c->w)->dtype == LEGO_F32;
    if (ok) {
        const lego_tensor *tw = T(p, c->w);
        int64_t cin = c->transpose ? tw->dims[0] : tw->dims[1] * c->groups;
        int64_t cout = c->transpose ? tw->dims[1] * c->groups : tw->dims[0];
        ok = cin == c->cin && cout == c->cout && cin % c->groups == 0 && cout % c->groups == 0 &&
             (c->b < 0 || (T(p, c->b)->rank == 1 && T(p, c->b)->dims[0] == cout));
        c->kernel = 1;
        for (int d = 2; d < tw->rank; d++)
            c->kernel *= tw->dims[d];
    }
    if (!ok) {
        c->opaque = true;
        opaque(p, n);
        return;
    }
    add_use(p, c->w, SPEC_CONV_W, p->n_convs - 1, 0, -1);
    if (c->b >= 0)
        add_use(p, c->b, SPEC_CONV_B, p->n_convs - 1, 0, -1);
    c->depthwise = c->groups > 1 && c->groups == c->cin && c->cout == c->cin;
    if (c->depthwise) {
        set_layout(p, c->y, p->lay[c->x], p->lay_n[c->x]);
        int64_t off = 0;
        for (int i = 0; i < p->lay_n[c->x]; i++) {
            int a = p->lay[c->x][i];
            add_producer(p, a, p->n_convs - 1, off);
            off += p->atoms[a].size;
        }
        return;
    }
    if (c->groups > 1) {
        if (p->lay_n[c->x] == 1)
            request_groups(p, p->lay[c->x][0], c->groups);
        else
            fix_value(p, c->x);
    }
    int a = set_new(p, c->y, false);
    if (a >= 0) {
        if (c->groups > 1)
            request_groups(p, a, c->groups);
        add_producer(p, a, p->n_convs - 1, 0);
    }
}

static const char *const unary_ops[] = {
    "Relu",  "LeakyRelu", "Clip",    "Sigmoid",     "Tanh",          "Sqrt",          "Identity",
    "Dropout", "Cast",    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
    "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Exp", "Log", "Neg",
    "Abs", "Reciprocal", "Floor", "Ceil", "Round", "Erf", "Sign", "Gelu", "Mish", "ThresholdedRelu",
    NULL};
static const char *const binary_ops[] = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu",
                                         NULL};
static const char *const reduce_ops[] = {"ReduceMean",   "ReduceMax",       "ReduceMin",  "ReduceSum",
                                         "ReduceProd",   "ReduceL1",        "ReduceL2",   "ReduceLogSum",
                                         "ReduceLogSumExp", "ReduceSumSquare", NULL};

static void visit(prune_plan *p, int node)
{
    const gnode *n = &p->g->nodes[node];
    if (strcmp(n->op_type, "Conv") == 0 || strcmp(n->op_type, "ConvTranspose") == 0)
        conv(p, node);
    else if (n->n_in < 1 || n->n_out < 1 || n->in[0] < 0)
        opaque(p, n);
    else if (op_is(n, unary_ops))
        channelwise(p, n, 0);
    else if (strcmp(n->op_type, "BatchNormalization") == 0)
        channelwise(p, n, 4);
    else if (strcmp(n->op_type, "InstanceNormalization") == 0)
        channelwise(p, n, 2);
    else if (strcmp(n->op_type, "Pad") == 0) {
        if (T(p, n->in[0])->rank >= 2 && pad_keeps_channels(p, n, T(p, n->in[0])->rank))
            channelwise(p, n, 0);
        else
            opaque(p, n);
    } else if (strcmp(n->op_type, "Resize") == 0 || strcmp(n->op_type, "Upsample") == 0)
        resize(p, n);
    else if (op_is(n, reduce_ops))
        reduce(p, n);
    else if (strcmp(n->op_type, "Softmax") == 0 || strcmp(n->op_type, "LogSoftmax") == 0)
        softmax(p, n);
    else if (op_is(n, binary_ops))
        elementwise(p, n);
    else if (strcmp(n->op_type, "Concat") == 0)
        concat(p, n);
    else
        opaque(p, n);
}

/* ---- after the walk ----------------------------------------------------------- */

/* A constant read several ways: convs sharing a weight unite their spaces;
 * anything else mixed is fixed. */
static void resolve_uses(prune_plan *p)
{
    for (int i = 0; i < p->n_uses; i++) {
        const cuse *u = &p->uses[i];
        int first = p->spec_of[u->value];
        if (first < 0) {
            p->spec_of[u->value] = i;
            continue;
        }
        const cuse *f = &p->uses[first];
        bool same = f->kind == u->kind;
        if (same && (u->kind == SPEC_CONV_W || u->kind == SPEC_CONV_B)) {
            const conv_rec *a = &p->convs[f->conv], *b = &p->convs[u->conv];
            same = a->transpose == b->transpose && a->groups == b->groups && a->cin == b->cin && a->cout == b->cout &&
                   a->depthwise == b->depthwise;
            if (same) {
                unify_values(p, a->y, b->y);
                if (u->kind == SPEC_CONV_W)
                    unify_values(p, a->x, b->x);
            }
        } else if (same && (u->kind == SPEC_AXIS || u->kind == SPEC_SHAPE)) {
            same = f->axis == u->axis;
            if (same)
                unify_values(p, f->ref, u->ref);
        }
        if (!same) {
            const cuse *both[2] = {f, u};
            for (int j = 0; j < 2; j++) {
                const cuse *w = both[j];
                if (w->kind == SPEC_CONV_W || w->kind == SPEC_CONV_B) {
                    fix_value(p, p->convs[w->conv].x);
                    fix_value(p, p->convs[w->conv].y);
                } else if (w->ref >= 0) {
                    fix_value(p, w->ref);
                }
            }
        }
    }
}

/* Sum of |W| of the filter that writes output channel o. */
static double filter_l1(const prune_plan *p, const conv_rec *c, int64_t o)
{
    const float *w = T(p, c->w)->data;
    double s = 0;
    if (!c->transpose) {
        int64_t len = c->cin / c->groups * c->kernel;
        for (int64_t j = 0; j < len; j++)
            s += fabs((double)w[o * len + j]);
        return s;
    }
    int64_t cog = c->cout / c->groups, cig = c->cin / c->groups;
    int64_t g = o / cog, ol = o % cog;
    for (int64_t i = g * cig; i < (g + 1) * cig; i++)
        for (int64_t k = 0; k < c->kernel; k++)
            s += fabs((double)w[(i * cog + ol) * c->kernel + k]);
    return s;
}

static lego_status finish(prune_plan *p)
{
    const lego_graph *g = p->g;
    const block *b = p->b;
    fix_value(p, b->exit);
    /* block values read anywhere else (a folded Shape, the exit's readers) */
    bool *inside = calloc((size_t)g->n_nodes + 1, sizeof *inside);
    if (!inside)
        return nomem();
    for (int j = 0; j < b->n_nodes; j++)
        inside[b->nodes[j]] = true;
    for (int k = 0; k < g->n_nodes; k++) {
        const gnode *n = &g->nodes[k];
        if (inside[k])
            continue;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0 && p->in_block[n->in[i]])
                fix_value(p, n->in[i]);
    }
    free(inside);
    for (int i = 0; i < g->n_outputs; i++)
        fix_value(p, g->outputs[i]);
    resolve_uses(p);
    if (p->err.code)
        return p->err;

    p->thin = calloc((size_t)p->n_atoms + 1, sizeof *p->thin);
    p->score = calloc((size_t)p->n_atoms + 1, sizeof *p->score);
    bool *written = calloc((size_t)p->n_atoms + 1, sizeof *written);
    if (!p->thin || !p->score || !written) {
        free(written);
        return nomem();
    }
    for (int a = 0; a < p->n_atoms; a++)
        if (find(p, a) == a) {
            p->n_spaces++;
            p->thin[a] = !p->atoms[a].fixed && p->atoms[a].size >= 2;
        }
    for (int i = 0; i < p->n_prod; i++) {
        int r = find(p, p->prod[i].atom);
        written[r] = true;
        if (!p->node_prunable[p->convs[p->prod[i].conv].node])
            p->thin[r] = false;
    }
    for (int a = 0; a < p->n_atoms; a++) {
        if (!written[a])
            p->thin[a] = false;
        if (p->thin[a]) {
            p->n_thin++;
            if (!(p->score[a] = calloc((size_t)p->atoms[a].size, sizeof **p->score))) {
                free(written);
                return nomem();
            }
        }
    }
    free(written);
    /* scores: each (weight, offset) once per space */
    for (int i = 0; i < p->n_prod; i++) {
        int r = find(p, p->prod[i].atom);
        if (!p->thin[r])
            continue;
        const conv_rec *c = &p->convs[p->prod[i].conv];
        bool dup = false;
        for (int j = 0; j < i && !dup; j++)
            dup = find(p, p->prod[j].atom) == r && p->convs[p->prod[j].conv].w == c->w && p->prod[j].off == p->prod[i].off;
        if (dup)
            continue;
        for (int64_t ch = 0; ch < p->atoms[r].size; ch++)
            p->score[r][ch] += filter_l1(p, c, p->prod[i].off + ch);
    }
    return lego_ok();
}

lego_status prune_analyze(const lego_graph *g, const block *b, prune_plan **out)
{
    *out = NULL;
    prune_plan *p = calloc(1, sizeof *p);
    if (!p)
        return nomem();
    p->g = g;
    p->b = b;
    size_t nv = (size_t)g->n_values + 1, nn = (size_t)g->n_nodes + 1;
    p->lay = calloc(nv, sizeof *p->lay);
    p->lay_n = calloc(nv, sizeof *p->lay_n);
    p->in_block = calloc(nv, sizeof *p->in_block);
    p->spec_of = malloc(nv * sizeof *p->spec_of);
    p->conv_of_node = malloc(nn * sizeof *p->conv_of_node);
    p->node_prunable = calloc(nn, sizeof *p->node_prunable);
    p->convs = calloc((size_t)b->n_convs + 1, sizeof *p->convs);
    if (!p->lay || !p->lay_n || !p->in_block || !p->spec_of || !p->conv_of_node || !p->node_prunable || !p->convs) {
        prune_plan_free(p);
        return nomem();
    }
    for (size_t v = 0; v < nv; v++)
        p->spec_of[v] = -1;
    for (size_t k = 0; k < nn; k++)
        p->conv_of_node[k] = -1;
    for (int i = 0; i < b->n_prunable; i++)
        p->node_prunable[b->prunable[i]] = true;
    p->in_block[b->entry] = true;
    for (int j = 0; j < b->n_nodes; j++) {
        const gnode *n = &g->nodes[b->nodes[j]];
        for (int o = 0; o < n->n_out; o++)
            if (n->out[o] >= 0)
                p->in_block[n->out[o]] = true;
    }
    int convs = 0;
    for (int j = 0; j < b->n_nodes; j++) {
        const char *op = g->nodes[b->nodes[j]].op_type;
        convs += strcmp(op, "Conv") == 0 || strcmp(op, "ConvTranspose") == 0;
    }
    if (convs > b->n_convs) {
        conv_rec *c = realloc(p->convs, sizeof *c * (size_t)convs);
        if (!c) {
            prune_plan_free(p);
            return nomem();
        }
        p->convs = c;
    }
    set_new(p, b->entry, true);
    for (int j = 0; j < b->n_nodes && p->err.code == LEGO_OK; j++)
        visit(p, b->nodes[j]);
    lego_status st = p->err.code ? p->err : finish(p);
    p->err = lego_ok();
    if (st.code) {
        prune_plan_free(p);
        return st;
    }
    *out = p;
    return lego_ok();
}

void prune_plan_free(prune_plan *p)
{
    if (!p)
        return;
    if (p->lay)
        for (int v = 0; v < p->g->n_values; v++)
            free(p->lay[v]);
    if (p->score)
        for (int a = 0; a < p->n_atoms; a++)
            free(p->score[a]);
    free(p->lay), free(p->lay_n), free(p->in_block), free(p->spec_of), free(p->conv_of_node);
    free(p->node_prunable), free(p->convs), free(p->atoms), free(p->prod), free(p->uses);
    free(p->thin), free(p->score);
    lego_status_free(&p->err);
    free(p);
}

int prune_plan_spaces(const prune_plan *p, int *prunable)
{
    if (prunable)
        *prunable = p->n_thin;
    return p->n_spaces;
}

static bool layout_thin(prune_plan *p, int v)
{
    if (!has_layout(p, v))
        return false;
    for (int i = 0; i < p->lay_n[v]; i++)
        if (p->thin[find(p, p->lay[v][i])])
            return true;
    return false;
}

bool prune_plan_cuts_conv(const prune_plan *p, int node)
{
    if (node < 0 || node >= p->g->n_nodes || p->conv_of_node[node] < 0)
        return false;
    const conv_rec *c = &p->convs[p->conv_of_node[node]];
    return !c->opaque && layout_thin((prune_plan *)p, c->y);
}

/* ---- descendants ------------------------------------------------------------- */

int64_t prune_keep_count(int64_t c, double s)
{
    int64_t k = c - (int64_t)floor((double)c * s);
    return k < 1 ? 1 : k > c ? c : k;
}

typedef struct ranked {
    double score;
    int64_t index;
} ranked;

static int by_score(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static int by_value(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The kept channels of thinnable space r at sparsity s, ascending. */
static lego_status select_space(const prune_plan *p, int r, double s, int64_t **sel, int64_t *n)
{
    const atom *a = &p->atoms[r];
    int64_t groups = a->groups, cg = a->size / groups, kg = prune_keep_count(cg, s);
    int64_t *out = malloc(sizeof *out * (size_t)(groups * kg));
    ranked *rk = malloc(sizeof *rk * (size_t)cg);
    if (!out || !rk) {
        free(out), free(rk);
        return nomem();
    }
    for (int64_t gi = 0; gi < groups; gi++) {
        for (int64_t i = 0; i < cg; i++)
            rk[i] = (ranked){p->score[r][gi * cg + i], gi * cg + i};
        qsort(rk, (size_t)cg, sizeof *rk, by_score);
        for (int64_t i = 0; i < kg; i++)
            out[gi * kg + i] = rk[i].index;
    }
    free(rk);
    qsort(out, (size_t)(groups * kg), sizeof *out, by_value);
    *sel = out;
    *n = groups * kg;
    return lego_ok();
}

typedef struct builder {
    prune_plan *p;
    lego_graph *d;
    int64_t **sel; /* per atom root: kept channels, or NULL for all */
    int64_t *n_sel;
    int *map;      /* teacher value -> descendant value */
    int64_t **csel_in, **csel_out; /* per conv rec */
    int64_t *cn_in, *cn_out;
    int *new_groups;
} builder;

/* Kept channels of value v's layout (teacher indices along axis 1). */
static lego_status layout_sel(builder *bd, int v, int64_t **sel, int64_t *n)
{
    prune_plan *p = bd->p;
    int64_t total = 0;
    for (int i = 0; i < p->lay_n[v]; i++)
        total += p->atoms[p->lay[v][i]].size;
    int64_t *out = malloc(sizeof *out * (size_t)(total ? total : 1));
    if (!out)
        return nomem();
    int64_t k = 0, off = 0;
    for (int i = 0; i < p->lay_n[v]; i++) {
        int r = find(p, p->lay[v][i]);
        int64_t size = p->atoms[r].size;
        if (bd->sel[r])
            for (int64_t j = 0; j < bd->n_sel[r]; j++)
                out[k++] = off + bd->sel[r][j];
        else
            for (int64_t j = 0; j < size; j++)
                out[k++] = off + j;
        off += size;
    }
    *sel = out;
    *n = k;
    return lego_ok();
}

/* dst = src gathered at sel along axis. */
static lego_status gather_axis(const lego_tensor *src, int axis, const int64_t *sel, int64_t n, lego_tensor *dst)
{
    int64_t dims[LEGO_MAX_RANK];
    memcpy(dims, src->dims, sizeof dims);
    dims[axis] = n;
    memset(dst, 0, sizeof *dst);
    tensor_set_shape(dst, src->dtype, src->rank, dims);
    LEGO_TRY(tensor_alloc(dst));
    size_t es = lego_dtype_size(src->dtype);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++)
        outer *= src->dims[d];
    for (int d = axis + 1; d < src->rank; d++)
        inner *= src->dims[d];
    const unsigned char *s = src->data;
    unsigned char *o = dst->data;
    size_t row = (size_t)inner * es;
    for (int64_t a = 0; a < outer; a++)
        for (int64_t j = 0; j < n; j++)
            memcpy(o + ((size_t)(a * n + j)) * row, s + ((size_t)(a * src->dims[axis] + sel[j])) * row, row);
    return lego_ok();
}

/* Groups kept by a conv with these selections, and the kept counts per
 * group; -1 when the selections do not cut every group alike. */
static int conv_groups(const conv_rec *c, const int64_t *in, int64_t n_in, const int64_t *out, int64_t n_out,
                       int64_t *ki, int64_t *ko)
{
    int64_t cig = c->cin / c->groups, cog = c->cout / c->groups;
    int kept = 0;
    *ki = *ko = -1;
    int64_t a = 0, b = 0;
    for (int g = 0; g < c->groups; g++) {
        int64_t ni = 0, no = 0;
        while (a < n_in && in[a] < (g + 1) * cig)
            a++, ni++;
        while (b < n_out && out[b] < (g + 1) * cog)
            b++, no++;
        if (ni == 0 && no == 0)
            continue;
        if (ni == 0 || no == 0 || (*ki >= 0 && (ni != *ki || no != *ko)))
            return -1;
        *ki = ni, *ko = no;
        kept++;
    }
    return kept;
}

static lego_status slice_conv_weight(const prune_plan *p, const conv_rec *c, const int64_t *in, int64_t n_in,
                                     const int64_t *out, int64_t n_out, lego_tensor *dst)
{
    const lego_tensor *w = T(p, c->w);
    int64_t ki, ko;
    int kept = conv_groups(c, in, n_in, out, n_out, &ki, &ko);
    if (kept <= 0)
        return lego_error(LEGO_ERR_INTERNAL, "conv '%s': the channel cut does not respect its %d groups",
                          blocks_node_name(p->g, c->node), c->groups);
    int64_t dims[LEGO_MAX_RANK];
    memcpy(dims, w->dims, sizeof dims);
    if (c->transpose)
        dims[0] = kept * ki, dims[1] = ko;
    else
        dims[0] = kept * ko, dims[1] = ki;
    memset(dst, 0, sizeof *dst);
    tensor_set_shape(dst, LEGO_F32, w->rank, dims);
    LEGO_TRY(tensor_alloc(dst));
    const float *s = w->data;
    float *o = dst->data;
    int64_t K = c->kernel, cig = c->cin / c->groups, cog = c->cout / c->groups;
    size_t kb = sizeof(float) * (size_t)K;
    /* walk kept groups: input and output selections are ascending, so each
     * group's channels are consecutive in them */
    int64_t a = 0, b = 0, gk = 0;
    for (int64_t g = 0; g < c->groups; g++) {
        int64_t a0 = a, b0 = b;
        while (a < n_in && in[a] < (g + 1) * cig)
            a++;
        while (b < n_out && out[b] < (g + 1) * cog)
            b++;
        if (a == a0)
            continue;
        for (int64_t i = 0; i < ki; i++)
            for (int64_t j = 0; j < ko; j++) {
                int64_t il = in[a0 + i] - g * cig, ol = out[b0 + j] - g * cog;
                if (c->transpose)
                    memcpy(o + ((gk * ki + i) * ko + j) * K, s + (in[a0 + i] * cog + ol) * K, kb);
                else
                    memcpy(o + ((gk * ko + j) * ki + i) * K, s + (out[b0 + j] * cig + il) * K, kb);
            }
        gk++;
    }
    return lego_ok();
}

static bool full_sel(const int64_t *sel, int64_t n, int64_t size)
{
    (void)sel;
    return n == size;
}

/* The descendant's copy of constant v, sliced as its use demands. */
static lego_status get_const(builder *bd, int v, int *idx)
{
    if (bd->map[v] >= 0) {
        *idx = bd->map[v];
        return lego_ok();
    }
    prune_plan *p = bd->p;
    const gvalue *src = &p->g->values[v];
    lego_tensor t;
    lego_status st = lego_ok();
    int spec = p->spec_of[v];
    const cuse *u = spec >= 0 ? &p->uses[spec] : NULL;
    int64_t *sel = NULL, n = 0;
    if (u && u->kind == SPEC_CONV_W) {
        int c = u->conv;
        if (bd->cn_in[c] == p->convs[c].cin && bd->cn_out[c] == p->convs[c].cout)
            st = tensor_clone(&src->t, &t);
        else
            st = slice_conv_weight(p, &p->convs[c], bd->csel_in[c], bd->cn_in[c], bd->csel_out[c], bd->cn_out[c], &t);
    } else if (u && u->kind == SPEC_CONV_B) {
        int c = u->conv;
        st = full_sel(bd->csel_out[c], bd->cn_out[c], p->convs[c].cout)
                 ? tensor_clone(&src->t, &t)
                 : gather_axis(&src->t, 0, bd->csel_out[c], bd->cn_out[c], &t);
    } else if (u && u->kind == SPEC_AXIS) {
        st = layout_sel(bd, u->ref, &sel, &n);
        if (st.code == LEGO_OK)
            st = full_sel(sel, n, src->t.dims[u->axis]) ? tensor_clone(&src->t, &t)
                                                       : gather_axis(&src->t, u->axis, sel, n, &t);
    } else if (u && u->kind == SPEC_SHAPE) {
        st = layout_sel(bd, u->ref, &sel, &n);
        if (st.code == LEGO_OK)
            st = tensor_clone(&src->t, &t);
        if (st.code == LEGO_OK && u->axis < lego_tensor_numel(&t))
            ((int64_t *)t.data)[u->axis] = n;
    } else {
        st = tensor_clone(&src->t, &t);
    }
    free(sel);
    LEGO_TRY(st);
    if (src->kind == VALUE_INITIALIZER) {
        st = graph_add_value(bd->d, src->name, VALUE_INITIALIZER, idx);
        if (st.code) {
            tensor_release(&t);
            return st;
        }
        bd->d->values[*idx].t = t;
    } else {
        /* a value folded at load: a Constant node, as exporters write them */
        attr_list attrs = {0, NULL};
        st = attr_add_tensor(&attrs, "value", &t);
        tensor_release(&t);
        if (st.code == LEGO_OK)
            st = graph_add_value(bd->d, src->name, VALUE_ACTIVATION, idx);
        if (st.code) {
            attr_list_free(&attrs);
            return st;
        }
        int k;
        LEGO_TRY(graph_add_node(bd->d, src->name, "Constant", NULL, 0, idx, 1, &attrs, &k));
    }
    bd->map[v] = *idx;
    return lego_ok();
}

static lego_status build(builder *bd, double s, const char *name, descendant *out)
{
    prune_plan *p = bd->p;
    const lego_graph *g = p->g;
    const block *b = p->b;
    lego_graph *d = &out->g;
    char label[512];
    if (!name) {
        snprintf(label, sizeof label, "%s -> %s", g->values[b->entry].name, g->values[b->exit].name);
        name = label;
    }
    LEGO_TRY(graph_init(d, name));
    d->opset = g->opset;
    /* selections */
    for (int a = 0; a < p->n_atoms; a++)
        if (find(p, a) == a && p->thin[a])
            LEGO_TRY(select_space(p, a, s, &bd->sel[a], &bd->n_sel[a]));
    for (int c = 0; c < p->n_convs; c++) {
        const conv_rec *cr = &p->convs[c];
        if (cr->opaque) {
            bd->cn_in[c] = cr->cin, bd->cn_out[c] = cr->cout;
            bd->new_groups[c] = cr->groups;
            continue;
        }
        LEGO_TRY(layout_sel(bd, cr->x, &bd->csel_in[c], &bd->cn_in[c]));
        LEGO_TRY(layout_sel(bd, cr->y, &bd->csel_out[c], &bd->cn_out[c]));
        int64_t ki, ko;
        bd->new_groups[c] = conv_groups(cr, bd->csel_in[c], bd->cn_in[c], bd->csel_out[c], bd->cn_out[c], &ki, &ko);
        if (bd->new_groups[c] <= 0)
            return lego_error(LEGO_ERR_INTERNAL, "conv '%s': the channel cut does not respect its %d groups",
                              blocks_node_name(g, cr->node), cr->groups);
    }
    /* the entry */
    const gvalue *ev = &g->values[b->entry];
    int in_idx;
    LEGO_TRY(graph_add_value(d, ev->name, VALUE_INPUT, &in_idx));
    gvalue *iv = &d->values[in_idx];
    tensor_set_shape(&iv->t, ev->t.dtype, ev->t.rank, ev->t.dims);
    iv->declared_rank = ev->t.rank;
    for (int i = 0; i < ev->t.rank; i++)
        iv->declared[i] = i == 0 ? -1 : ev->t.dims[i];
    d->inputs = malloc(sizeof *d->inputs);
    d->outputs = malloc(sizeof *d->outputs);
    if (!d->inputs || !d->outputs)
        return nomem();
    d->inputs[0] = in_idx;
    d->n_inputs = 1;
    bd->map[b->entry] = in_idx;
    /* the nodes */
    for (int j = 0; j < b->n_nodes; j++) {
        const gnode *n = &g->nodes[b->nodes[j]];
        int in[OP_MAX_IO], outv[OP_MAX_IO];
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            if (v < 0)
                in[i] = -1;
            else if (is_const(g, v))
                LEGO_TRY(get_const(bd, v, &in[i]));
            else if ((in[i] = bd->map[v]) < 0)
                return lego_error(LEGO_ERR_INTERNAL, "block %s: value '%s' is read before it is made", name,
                                  g->values[v].name);
        }
        for (int o = 0; o < n->n_out; o++) {
            LEGO_TRY(graph_add_value(d, g->values[n->out[o]].name, VALUE_ACTIVATION, &outv[o]));
            bd->map[n->out[o]] = outv[o];
        }
        attr_list attrs;
        LEGO_TRY(attr_list_copy(&n->attrs, &attrs));
        int c = p->conv_of_node[b->nodes[j]];
        if (c >= 0 && bd->new_groups[c] != p->convs[c].groups) {
            lego_status st = attr_set_int(&attrs, "group", bd->new_groups[c]);
            if (st.code) {
                attr_list_free(&attrs);
                return st;
            }
        }
        int k;
        LEGO_TRY(graph_add_node(d, n->name, n->op_type, in, n->n_in, outv, n->n_out, &attrs, &k));
    }
    d->outputs[0] = bd->map[b->exit];
    d->n_outputs = 1;
    LEGO_TRY(lego_error_context(graph_infer(d), "descendant at sparsity %g", s));
    const lego_tensor *got = &d->values[d->outputs[0]].t, *want = &g->values[b->exit].t;
    if (!tensor_same_shape(got, want)) {
        char a[128], c2[128];
        return lego_error(LEGO_ERR_INTERNAL, "%s: the descendant at sparsity %g outputs %s, the block %s", name, s,
                          tensor_shape_str(got, a, sizeof a), tensor_shape_str(want, c2, sizeof c2));
    }
    /* the report */
    out->convs = calloc((size_t)p->n_convs + 1, sizeof *out->convs);
    if (!out->convs)
        return nomem();
    out->n_convs = p->n_convs;
    for (int c = 0; c < p->n_convs; c++) {
        const conv_rec *cr = &p->convs[c];
        prune_conv *pc = &out->convs[c];
        pc->node = cr->node;
        pc->name = blocks_node_name(g, cr->node);
        pc->out_channels = cr->cout;
        pc->in_channels = cr->cin;
        pc->groups = cr->groups;
        pc->new_groups = bd->new_groups[c];
        pc->n_kept_out = bd->cn_out[c];
        pc->n_kept_in = bd->cn_in[c];
        pc->kept_out = malloc(sizeof(int64_t) * (size_t)(pc->n_kept_out + 1));
        pc->kept_in = malloc(sizeof(int64_t) * (size_t)(pc->n_kept_in + 1));
        if (!pc->kept_out || !pc->kept_in)
            return nomem();
        for (int64_t i = 0; i < pc->n_kept_out; i++)
            pc->kept_out[i] = bd->csel_out[c] ? bd->csel_out[c][i] : i;
        for (int64_t i = 0; i < pc->n_kept_in; i++)
            pc->kept_in[i] = bd->csel_in[c] ? bd->csel_in[c][i] : i;
    }
    out->params = graph_param_count(d, &out->param_bytes);
    out->flops = graph_flops(d, NULL);
    return lego_ok();
}

lego_status prune_descendant(const prune_plan *cp, double s, const char *name, descendant *out)
{
    memset(out, 0, sizeof *out);
    if (!(s >= 0 && s < 1))
        return lego_error(LEGO_ERR_ARG, "sparsity %g is outside [0, 1)", s);
    prune_plan *p = (prune_plan *)cp; /* find() compresses paths; nothing else changes */
    out->sparsity = s;
    builder bd = {.p = p, .d = &out->g};
    size_t na = (size_t)p->n_atoms + 1, nc = (size_t)p->n_convs + 1;
    bd.sel = calloc(na, sizeof *bd.sel);
    bd.n_sel = calloc(na, sizeof *bd.n_sel);
    bd.map = malloc(sizeof *bd.map * ((size_t)p->g->n_values + 1));
    bd.csel_in = calloc(nc, sizeof *bd.csel_in);
    bd.csel_out = calloc(nc, sizeof *bd.csel_out);
    bd.cn_in = calloc(nc, sizeof *bd.cn_in);
    bd.cn_out = calloc(nc, sizeof *bd.cn_out);
    bd.new_groups = calloc(nc, sizeof *bd.new_groups);
    lego_status st = lego_ok();
    if (!bd.sel || !bd.n_sel || !bd.map || !bd.csel_in || !bd.csel_out || !bd.cn_in || !bd.cn_out || !bd.new_groups) {
        st = nomem();
    } else {
        for (int v = 0; v < p->g->n_values; v++)
            bd.map[v] = -1;
        st = build(&bd, s, name, out);
    }
    if (bd.sel)
        for (size_t a = 0; a < na; a++)
            free(bd.sel[a]);
    for (size_t c = 0; c < nc; c++) {
        if (bd.csel_in)
            free(bd.csel_in[c]);
        if (bd.csel_out)
            free(bd.csel_out[c]);
    }
    free(bd.sel), free(bd.n_sel), free(bd.map), free(bd.csel_in), free(bd.csel_out), free(bd.cn_in);
    free(bd.cn_out), free(bd.new_groups);
    if (st.code)
        descendant_free(out);
    return st;
}

void descendant_free(descendant *d)
{
    if (d->g.values || d->g.name)
        graph_free(&d->g);
    for (int c = 0; c < d->n_convs; c++)
        free(d->convs[c].kept_out), free(d->convs[c].kept_in);
    free(d->convs);
    memset(d, 0, sizeof *d);
}
