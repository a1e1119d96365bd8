/* detect.c - automatic block detection from the graph's structure.
 *
 * The original LegoDNN scans nodes in a DFS numbering and grows contiguous
 * runs, so its blocks depend on that numbering. Here blocks come from the
 * graph's dominator and post-dominator trees, so they depend only on the
 * graph. Three steps:
 *
 * 1. Candidate regions. Take the graph G of the non-folded nodes and their
 *    run-time values (activations and graph inputs; initializers and folded
 *    values are constants and do not count), as a DAG whose vertices are
 *    nodes and values, with a virtual source before the graph inputs (and
 *    before any node with no run-time input) and a virtual sink after the
 *    graph outputs (and after any node whose outputs nobody reads). For a
 *    value x made by node p and a value e, the region
 *        S(e, x) = { n : n is reachable from e and n reaches p } (p included)
 *    has one input and one output exactly when
 *      (i)  e dominates p: then every input of a node in S is e or made in
 *           S (a path from the source to an outside input of n in S would
 *           reach p around e);
 *      (ii) x post-dominates every consumer of e that lies in S: then x
 *           post-dominates all of S, so every value made in S other than x
 *           is read only inside S and is no graph output. Values nobody
 *           reads are ignored.
 *    Both directions hold, so each candidate is found by walking p's
 *    dominator chain for entries e and testing (ii) in O(1) with the
 *    post-dominator tree's DFS intervals. e may also feed nodes outside S
 *    (the fork of a projection shortcut), and x may feed several. Walking up
 *    the chain only grows S, so the walk stops once S holds more than the
 *    conv limit. A region is a candidate block when it also meets LegoDNN's
 *    rule: e and x are float tensors; 2 <= convs <= max(floor(N*r), 2),
 *    counting a conv whose weight several nodes share once; at least one
 *    conv is prunable, i.e. not among the "kept" convs, which are the first
 *    Conv/ConvTranspose met on each path walking back from p inside S; and
 *    every node that shares a parameter (a weight of a Conv, ConvTranspose,
 *    Gemm, MatMul or normalisation node) with a node in S lies in S too.
 *
 * 2. The partition. Regions with the same set of convs are one candidate;
 *    its footprint is its smallest region. We choose pairwise disjoint
 *    candidates that cover the most convolutions; among those, the fewest
 *    blocks (larger blocks, as the original prefers the largest conv count,
 *    so r keeps its meaning of "about 1/r blocks"). The search is exact: a
 *    dynamic programme over the convs in canonical order (longest path from
 *    the source, then name) whose state is the position plus the chosen
 *    candidates that still overlap some candidate starting later; on a
 *    chain of units that is a handful of states per position. Remaining
 *    ties go to the option met first: taking a candidate before leaving a
 *    conv uncovered, larger candidates first. So in a run of five convs
 *    with at most two per block, the blocks are {1,2} and {3,4}, as the
 *    original's left-to-right greedy scan gives.
 *
 * 3. Boundaries. A chosen conv set usually fits several regions (a ReLU or
 *    BatchNorm before or after it may be in or out). Going downstream, each
 *    block takes its region with the earliest entry, then the earliest exit,
 *    that overlaps no other block: so free nodes before a block join it,
 *    and a block ends as soon as it can. This is the original's rule (start
 *    right after the previous block, end at the first valid position) and
 *    gives its ResNet18 blocks node for node: the stem BN and ReLU join the
 *    first unit, each identity unit starts at the previous unit's final
 *    ReLU and ends at its Add, and a unit with a projection shortcut (3
 *    convs where at most 2 fit) yields the block conv1..conv2 of its main
 *    branch; the stem conv and the shortcut convs stay outside.
 *
 * Everything is ordered by depth and names, never by node indices, so
 * shuffling the node array changes nothing but the indices. Cost: building
 * the trees and per-node reachability bitsets is O(V * N / 64); each
 * candidate test is O(N / 64). */
#include "detect.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t word;

/* The DP gives up past this many states rather than run for hours; no
 * real network comes near (a chain of units needs a few per conv). */
#define MAX_STATES (1 << 22)

typedef struct region {
    int e, x;       /* entry and exit value indices */
    int n_nodes;
    size_t set;     /* offset of its node bitset in det.pool */
    size_t cset;    /* offset of its conv bitset */
    int group;      /* candidate it belongs to */
} region;

typedef struct cand {
    int n_layers;   /* distinct conv layers */
    int first;      /* smallest conv rank */
    int *ranks, n_ranks; /* sorted conv ranks */
    int *reg, n_reg;     /* its regions, in boundary-preference order */
    int core;            /* its smallest region */
    int last_conflict;   /* largest `first` of a candidate it overlaps, or -1 */
} cand;

typedef struct det {
    const lego_graph *g;
    int nn, nval, nv, src, snk; /* vertices: nodes, then values, source, sink */
    bool *live;
    int *succ_off, *succ, *pred_off, *pred;
    int *cons_off, *cons; /* per value: distinct live consumer nodes */
    bool *is_out;         /* per value: a graph output */
    int *topo, n_topo, *tpos;
    int *idom, *ipdom, *depth, *tin, *tout;
    int words;              /* bitset words over nodes */
    word *fwd, *bwd;        /* per node: nodes it reaches / that reach it */
    word *conv_mask;
    int *layer;             /* per node: conv layer id, or -1 */
    int n_layers;
    int *canon;             /* live nodes in canonical order */
    int n_canon;
    int *rank;              /* per node: position in canon */
    int *conv_rank;         /* per node: position among convs, or -1 */
    int n_conv_nodes;
    int *init_users_off, *init_users; /* per value: live param-op users */
    bool *shares_param;     /* per node */
    int max_convs;
    /* scratch */
    word *s;                /* one bitset */
    int *stamp, gen, *queue;
    int *layer_stamp, layer_gen;
    /* regions and candidates */
    word *pool;
    size_t pool_n, pool_cap;
    region *reg;
    int n_reg, cap_reg;
    cand *cand;
    int n_cand;
} det;

#define VV(d, v) ((d)->nn + (v)) /* vertex of value v */

static lego_status nomem(void) { return lego_error(LEGO_ERR_NOMEM, "out of memory detecting blocks"); }

static bool is_conv(const gnode *n)
{
    return strcmp(n->op_type, "Conv") == 0 || strcmp(n->op_type, "ConvTranspose") == 0;
}

/* Ops whose inputs after the first are parameters (weights, biases, stats). */
static bool is_param_op(const gnode *n)
{
    static const char *const ops[] = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization",
                                      "InstanceNormalization", "LayerNormalization",
                                      "GroupNormalization", "PRelu"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(n->op_type, ops[i]) == 0)
            return true;
    return false;
}

const char *blocks_node_name(const lego_graph *g, int node)
{
    const gnode *n = &g->nodes[node];
    if (n->name[0] || n->n_out == 0)
        return n->name;
    return g->values[n->out[0]].name;
}

/* The name that orders nodes: the first output's, unique in the graph. */
static const char *node_key(const lego_graph *g, int node)
{
    const gnode *n = &g->nodes[node];
    return n->n_out ? g->values[n->out[0]].name : n->name;
}

static bool bit(const word *s, int i) { return s[i >> 6] >> (i & 63) & 1u; }
static void set_bit(word *s, int i) { s[i >> 6] |= (word)1 << (i & 63); }

static int popcount(const word *s, int words)
{
    int c = 0;
    for (int i = 0; i < words; i++)
        c += __builtin_popcountll(s[i]);
    return c;
}

static bool overlaps(const word *a, const word *b, int words)
{
    for (int i = 0; i < words; i++)
        if (a[i] & b[i])
            return true;
    return false;
}

/* ---- the vertex graph ---------------------------------------------------- */

static bool value_live(const lego_graph *g, int v)
{
    const gvalue *val = &g->values[v];
    if (val->kind == VALUE_INPUT)
        return true;
    return val->kind == VALUE_ACTIVATION && val->producer >= 0 && !g->nodes[val->producer].folded;
}

static bool has_live_input(const det *d, int k)
{
    const gnode *nd = &d->g->nodes[k];
    for (int i = 0; i < nd->n_in; i++)
        if (nd->in[i] >= 0 && d->live[VV(d, nd->in[i])])
            return true;
    return false;
}

/* Successors of vertex u written to out (when not NULL); returns how many.
 * Values need d->cons (their distinct live consumers) and d->is_out. */
static int successors(const det *d, int u, int *out)
{
    const lego_graph *g = d->g;
    int n = 0;
#define EMIT(w)               \
    do {                      \
        if (out)              \
            out[n] = (w);     \
        n++;                  \
    } while (0)
    if (!d->live[u] || u == d->snk)
        return 0;
    if (u == d->src) {
        for (int v = 0; v < d->nval; v++)
            if (g->values[v].kind == VALUE_INPUT)
                EMIT(VV(d, v));
        for (int k = 0; k < d->nn; k++)
            if (d->live[k] && !has_live_input(d, k))
                EMIT(k);
    } else if (u < d->nn) {
        /* a node whose outputs nobody reads still reaches the sink, so that
         * reading from inside a region counts as a use outside it */
        const gnode *nd = &g->nodes[u];
        bool read = false;
        for (int o = 0; o < nd->n_out; o++) {
            int w = VV(d, nd->out[o]);
            if (!d->live[w])
                continue;
            EMIT(w);
            read |= d->cons_off[nd->out[o] + 1] > d->cons_off[nd->out[o]] || d->is_out[nd->out[o]];
        }
        if (!read)
            EMIT(d->snk);
    } else {
        int v = u - d->nn;
        for (int i = d->cons_off[v]; i < d->cons_off[v + 1]; i++)
            EMIT(d->cons[i]);
        if (d->is_out[v])
            EMIT(d->snk);
    }
#undef EMIT
    return n;
}

static lego_status build_graph(det *d)
{
    const lego_graph *g = d->g;
    d->nn = g->n_nodes;
    d->nval = g->n_values;
    d->src = d->nn + d->nval;
    d->snk = d->src + 1;
    d->nv = d->snk + 1;
    int nv = d->nv;
    d->live = calloc((size_t)nv, sizeof *d->live);
    d->succ_off = calloc((size_t)nv + 1, sizeof *d->succ_off);
    d->pred_off = calloc((size_t)nv + 1, sizeof *d->pred_off);
    d->topo = malloc(sizeof *d->topo * (size_t)nv);
    d->tpos = malloc(sizeof *d->tpos * (size_t)nv);
    d->cons_off = calloc((size_t)d->nval + 1, sizeof *d->cons_off);
    d->is_out = calloc((size_t)d->nval + 1, sizeof *d->is_out);
    if (!d->live || !d->succ_off || !d->pred_off || !d->topo || !d->tpos || !d->cons_off || !d->is_out)
        return nomem();
    for (int k = 0; k < d->nn; k++)
        d->live[k] = !g->nodes[k].folded;
    for (int v = 0; v < d->nval; v++)
        d->live[VV(d, v)] = value_live(g, v);
    d->live[d->src] = d->live[d->snk] = true;
    for (int i = 0; i < g->n_outputs; i++)
        d->is_out[g->outputs[i]] = true;

    /* distinct live consumers of each value */
    for (int pass = 0; pass < 2; pass++) {
        int *fill = pass ? calloc((size_t)d->nval + 1, sizeof *fill) : NULL;
        if (pass && !fill)
            return nomem();
        for (int k = 0; k < d->nn; k++) {
            if (!d->live[k])
                continue;
            const gnode *nd = &g->nodes[k];
            for (int i = 0; i < nd->n_in; i++) {
                int v = nd->in[i];
                bool dup = false;
                for (int j = 0; j < i; j++)
                    dup |= nd->in[j] == v;
                if (v < 0 || dup || !d->live[VV(d, v)])
                    continue;
                if (pass)
                    d->cons[d->cons_off[v] + fill[v]++] = k;
                else
                    d->cons_off[v + 1]++;
            }
        }
        if (!pass) {
            for (int v = 0; v < d->nval; v++)
                d->cons_off[v + 1] += d->cons_off[v];
            d->cons = malloc(sizeof *d->cons * (size_t)(d->cons_off[d->nval] + 1));
            if (!d->cons)
                return nomem();
        }
        free(fill);
    }

    /* successors and predecessors, compressed rows */
    for (int u = 0; u < nv; u++)
        d->succ_off[u + 1] = d->succ_off[u] + successors(d, u, NULL);
    d->succ = malloc(sizeof *d->succ * (size_t)(d->succ_off[nv] + 1));
    d->pred = malloc(sizeof *d->pred * (size_t)(d->succ_off[nv] + 1));
    int *pf = calloc((size_t)nv, sizeof *pf);
    if (!d->succ || !d->pred || !pf) {
        free(pf);
        return nomem();
    }
    for (int u = 0; u < nv; u++)
        successors(d, u, d->succ + d->succ_off[u]);
    for (int i = 0; i < d->succ_off[nv]; i++)
        d->pred_off[d->succ[i] + 1]++;
    for (int u = 0; u < nv; u++)
        d->pred_off[u + 1] += d->pred_off[u];
    for (int u = 0; u < nv; u++)
        for (int i = d->succ_off[u]; i < d->succ_off[u + 1]; i++) {
            int w = d->succ[i];
            d->pred[d->pred_off[w] + pf[w]++] = u;
        }
    free(pf);

    /* topological order of the vertices, from the graph's node order */
    int n = 0;
    d->topo[n++] = d->src;
    for (int v = 0; v < d->nval; v++)
        if (g->values[v].kind == VALUE_INPUT)
            d->topo[n++] = VV(d, v);
    for (int j = 0; j < g->n_nodes; j++) {
        int k = g->order[j];
        if (!d->live[k])
            continue;
        d->topo[n++] = k;
        for (int o = 0; o < g->nodes[k].n_out; o++)
            if (d->live[VV(d, g->nodes[k].out[o])])
                d->topo[n++] = VV(d, g->nodes[k].out[o]);
    }
    d->topo[n++] = d->snk;
    d->n_topo = n;
    for (int u = 0; u < nv; u++)
        d->tpos[u] = -1;
    for (int i = 0; i < n; i++)
        d->tpos[d->topo[i]] = i;
    return lego_ok();
}

/* ---- dominators, post-dominators, depth ----------------------------------- */

/* Cooper, Harvey and Kennedy's intersection; on a DAG one pass in
 * topological order is exact. sign +1 walks dominators, -1 post-dominators. */
static int intersect(const det *d, const int *dom, int a, int b, int sign)
{
    while (a != b) {
        while (sign * (d->tpos[a] - d->tpos[b]) > 0)
            a = dom[a];
        while (sign * (d->tpos[b] - d->tpos[a]) > 0)
            b = dom[b];
    }
    return a;
}

static lego_status trees(det *d)
{
    int nv = d->nv;
    d->idom = malloc(sizeof *d->idom * (size_t)nv);
    d->ipdom = malloc(sizeof *d->ipdom * (size_t)nv);
    d->depth = calloc((size_t)nv, sizeof *d->depth);
    d->tin = malloc(sizeof *d->tin * (size_t)nv);
    d->tout = malloc(sizeof *d->tout * (size_t)nv);
    if (!d->idom || !d->ipdom || !d->depth || !d->tin || !d->tout)
        return nomem();
    for (int u = 0; u < nv; u++)
        d->idom[u] = d->ipdom[u] = -1;
    d->idom[d->src] = d->src;
    for (int i = 1; i < d->n_topo; i++) {
        int u = d->topo[i], dom = -1, dep = 0;
        for (int j = d->pred_off[u]; j < d->pred_off[u + 1]; j++) {
            int p = d->pred[j];
            if (d->idom[p] < 0)
                continue;
            dom = dom < 0 ? p : intersect(d, d->idom, dom, p, 1);
            if (d->depth[p] + 1 > dep)
                dep = d->depth[p] + 1;
        }
        d->idom[u] = dom;
        d->depth[u] = dep;
    }
    d->ipdom[d->snk] = d->snk;
    for (int i = d->n_topo - 2; i >= 0; i--) {
        int u = d->topo[i], dom = -1;
        for (int j = d->succ_off[u]; j < d->succ_off[u + 1]; j++) {
            int s = d->succ[j];
            if (d->ipdom[s] < 0)
                continue;
            dom = dom < 0 ? s : intersect(d, d->ipdom, dom, s, -1);
        }
        d->ipdom[u] = dom;
    }
    /* DFS intervals of the post-dominator tree: a pdom b iff b's interval
     * lies in a's. Children lists from ipdom, then an explicit stack. */
    int *head = malloc(sizeof *head * (size_t)nv), *next = malloc(sizeof *next * (size_t)nv);
    int *stack = malloc(sizeof *stack * (size_t)nv);
    if (!head || !next || !stack) {
        free(head), free(next), free(stack);
        return nomem();
    }
    for (int u = 0; u < nv; u++) {
        head[u] = -1;
        d->tin[u] = d->tout[u] = -1;
    }
    for (int u = 0; u < nv; u++) {
        if (u == d->snk || d->ipdom[u] < 0)
            continue;
        next[u] = head[d->ipdom[u]];
        head[d->ipdom[u]] = u;
    }
    int sp = 0, clock = 0;
    stack[sp++] = d->snk;
    d->tin[d->snk] = clock++;
    while (sp) {
        int u = stack[sp - 1];
        if (head[u] >= 0) {
            int c = head[u];
            head[u] = next[c];
            d->tin[c] = clock++;
            stack[sp++] = c;
        } else {
            d->tout[u] = clock++;
            sp--;
        }
    }
    free(head), free(next), free(stack);
    return lego_ok();
}

static bool pdominates(const det *d, int a, int b)
{
    return d->tin[a] >= 0 && d->tin[b] >= 0 && d->tin[a] <= d->tin[b] && d->tout[b] <= d->tout[a];
}

/* ---- reachability, convs, canonical order -------------------------------- */

typedef struct keyed {
    int depth;
    const char *name;
    int node;
} keyed;

static int by_depth_name(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    return strcmp(x->name, y->name);
}

static lego_status prepare(det *d)
{
    const lego_graph *g = d->g;
    int nn = d->nn, W = d->words = (nn + 63) / 64 ? (nn + 63) / 64 : 1;
    d->fwd = calloc((size_t)nn * (size_t)W + 1, sizeof *d->fwd);
    d->bwd = calloc((size_t)nn * (size_t)W + 1, sizeof *d->bwd);
    d->conv_mask = calloc((size_t)W, sizeof *d->conv_mask);
    d->layer = malloc(sizeof *d->layer * (size_t)(nn + 1));
    d->rank = malloc(sizeof *d->rank * (size_t)(nn + 1));
    d->conv_rank = malloc(sizeof *d->conv_rank * (size_t)(nn + 1));
    d->canon = malloc(sizeof *d->canon * (size_t)(nn + 1));
    d->s = calloc((size_t)W, sizeof *d->s);
    d->stamp = calloc((size_t)nn + 1, sizeof *d->stamp);
    d->queue = malloc(sizeof *d->queue * (size_t)(nn + 1));
    d->shares_param = calloc((size_t)nn + 1, sizeof *d->shares_param);
    d->init_users_off = calloc((size_t)d->nval + 1, sizeof *d->init_users_off);
    keyed *ks = malloc(sizeof *ks * (size_t)(nn + 1));
    if (!d->fwd || !d->bwd || !d->conv_mask || !d->layer || !d->rank || !d->conv_rank || !d->canon ||
        !d->s || !d->stamp || !d->queue || !d->shares_param || !d->init_users_off || !ks) {
        free(ks);
        return nomem();
    }
    /* reachability over nodes, in reverse and forward topological order */
    for (int i = d->n_topo - 1; i >= 0; i--) {
        int k = d->topo[i];
        if (k >= nn)
            continue;
        word *f = d->fwd + (size_t)k * (size_t)W;
        set_bit(f, k);
        for (int a = d->succ_off[k]; a < d->succ_off[k + 1]; a++) {
            int v = d->succ[a];
            if (v == d->snk)
                continue;
            for (int b = d->succ_off[v]; b < d->succ_off[v + 1]; b++) {
                int c = d->succ[b];
                if (c < nn) {
                    const word *fc = d->fwd + (size_t)c * (size_t)W;
                    for (int w = 0; w < W; w++)
                        f[w] |= fc[w];
                }
            }
        }
    }
    for (int i = 0; i < d->n_topo; i++) {
        int k = d->topo[i];
        if (k >= nn)
            continue;
        word *bk = d->bwd + (size_t)k * (size_t)W;
        set_bit(bk, k);
        const gnode *nd = &g->nodes[k];
        for (int j = 0; j < nd->n_in; j++) {
            int v = nd->in[j];
            if (v < 0 || !d->live[VV(d, v)] || g->values[v].producer < 0)
                continue;
            const word *bp = d->bwd + (size_t)g->values[v].producer * (size_t)W;
            for (int w = 0; w < W; w++)
                bk[w] |= bp[w];
        }
    }
    /* conv layers: nodes sharing a weight initializer are one layer */
    int *layer_of_value = malloc(sizeof *layer_of_value * (size_t)(d->nval + 1));
    if (!layer_of_value) {
        free(ks);
        return nomem();
    }
    for (int v = 0; v < d->nval; v++)
        layer_of_value[v] = -1;
    d->n_layers = 0;
    /* canonical order first, so layer ids do not depend on node indices */
    int n = 0;
    for (int k = 0; k < nn; k++)
        if (d->live[k])
            ks[n++] = (keyed){d->depth[k], node_key(g, k), k};
    qsort(ks, (size_t)n, sizeof *ks, by_depth_name);
    d->n_canon = n;
    d->n_conv_nodes = 0;
    for (int k = 0; k < nn; k++) {
        d->rank[k] = -1;
        d->conv_rank[k] = -1;
        d->layer[k] = -1;
    }
    for (int i = 0; i < n; i++) {
        int k = ks[i].node;
        d->canon[i] = k;
        d->rank[k] = i;
        const gnode *nd = &g->nodes[k];
        if (!is_conv(nd))
            continue;
        d->conv_rank[k] = d->n_conv_nodes++;
        set_bit(d->conv_mask, k);
        int w = nd->n_in > 1 ? nd->in[1] : -1;
        if (w >= 0 && g->values[w].kind == VALUE_INITIALIZER) {
            if (layer_of_value[w] < 0)
                layer_of_value[w] = d->n_layers++;
            d->layer[k] = layer_of_value[w];
        } else {
            d->layer[k] = d->n_layers++;
        }
    }
    free(layer_of_value);
    free(ks);
    d->layer_stamp = calloc((size_t)d->n_layers + 1, sizeof *d->layer_stamp);
    if (!d->layer_stamp)
        return nomem();

    /* parameters shared by several live nodes */
    for (int k = 0; k < nn; k++) {
        const gnode *nd = &g->nodes[k];
        if (!d->live[k] || !is_param_op(nd))
            continue;
        for (int i = 1; i < nd->n_in; i++)
            if (nd->in[i] >= 0 && g->values[nd->in[i]].kind == VALUE_INITIALIZER)
                d->init_users_off[nd->in[i] + 1]++;
    }
    for (int v = 0; v < d->nval; v++)
        d->init_users_off[v + 1] += d->init_users_off[v];
    d->init_users = malloc(sizeof *d->init_users * (size_t)(d->init_users_off[d->nval] + 1));
    int *uf = calloc((size_t)d->nval + 1, sizeof *uf);
    if (!d->init_users || !uf) {
        free(uf);
        return nomem();
    }
    for (int k = 0; k < nn; k++) {
        const gnode *nd = &g->nodes[k];
        if (!d->live[k] || !is_param_op(nd))
            continue;
        for (int i = 1; i < nd->n_in; i++) {
            int v = nd->in[i];
            if (v >= 0 && g->values[v].kind == VALUE_INITIALIZER)
                d->init_users[d->init_users_off[v] + uf[v]++] = k;
        }
    }
    free(uf);
    for (int v = 0; v < d->nval; v++) {
        if (d->init_users_off[v + 1] - d->init_users_off[v] < 2)
            continue;
        for (int i = d->init_users_off[v]; i < d->init_users_off[v + 1]; i++)
            d->shares_param[d->init_users[i]] = true;
    }
    return lego_ok();
}

/* ---- one region ---------------------------------------------------------- */

/* d->s = S(e, p). */
static void region_set(det *d, int e, int p)
{
    int W = d->words;
    memset(d->s, 0, sizeof *d->s * (size_t)W);
    int u = VV(d, e);
    for (int i = d->succ_off[u]; i < d->succ_off[u + 1]; i++) {
        int c = d->succ[i];
        if (c >= d->nn)
            continue;
        const word *f = d->fwd + (size_t)c * (size_t)W;
        for (int w = 0; w < W; w++)
            d->s[w] |= f[w];
    }
    const word *b = d->bwd + (size_t)p * (size_t)W;
    for (int w = 0; w < W; w++)
        d->s[w] &= b[w];
}

/* Distinct conv layers in set s. */
static int count_layers(det *d, const word *s)
{
    d->layer_gen++;
    int n = 0;
    for (int w = 0; w < d->words; w++) {
        word m = s[w] & d->conv_mask[w];
        while (m) {
            int k = w * 64 + __builtin_ctzll(m);
            m &= m - 1;
            if (d->layer_stamp[d->layer[k]] != d->layer_gen) {
                d->layer_stamp[d->layer[k]] = d->layer_gen;
                n++;
            }
        }
    }
    return n;
}

/* Kept convs of region s with exit producer p: stamps them with d->gen in
 * d->stamp (after a fresh gen), returns how many nodes are kept. A conv
 * layer counts as kept when any of its nodes is. */
static int mark_kept(det *d, const word *s, int p)
{
    const lego_graph *g = d->g;
    int gen = ++d->gen, head = 0, tail = 0, kept = 0;
    /* visited marks use gen; kept convs get -gen so both fit one array */
    d->queue[tail++] = p;
    d->stamp[p] = gen;
    while (head < tail) {
        int n = d->queue[head++];
        if (d->layer[n] >= 0) {
            d->stamp[n] = -gen;
            kept++;
            continue;
        }
        const gnode *nd = &g->nodes[n];
        for (int i = 0; i < nd->n_in; i++) {
            int v = nd->in[i];
            if (v < 0 || !d->live[VV(d, v)])
                continue;
            int q = g->values[v].producer;
            if (q < 0 || !bit(s, q) || d->stamp[q] == gen || d->stamp[q] == -gen)
                continue;
            d->stamp[q] = gen;
            d->queue[tail++] = q;
        }
    }
    return kept;
}

static bool is_kept(const det *d, int k) { return d->stamp[k] == -d->gen; }

/* Prunable conv layers of s, after mark_kept. */
static int count_prunable(det *d, const word *s)
{
    /* layers with a kept node */
    d->layer_gen++;
    int kept_gen = d->layer_gen;
    for (int w = 0; w < d->words; w++) {
        word m = s[w] & d->conv_mask[w];
        while (m) {
            int k = w * 64 + __builtin_ctzll(m);
            m &= m - 1;
            if (is_kept(d, k))
                d->layer_stamp[d->layer[k]] = kept_gen;
        }
    }
    d->layer_gen++;
    int n = 0;
    for (int w = 0; w < d->words; w++) {
        word m = s[w] & d->conv_mask[w];
        while (m) {
            int k = w * 64 + __builtin_ctzll(m);
            m &= m - 1;
            int l = d->layer[k];
            if (d->layer_stamp[l] != kept_gen && d->layer_stamp[l] != d->layer_gen) {
                d->layer_stamp[l] = d->layer_gen;
                n++;
            }
        }
    }
    return n;
}

/* Every node sharing a parameter with a node of s is in s. */
static bool params_closed(const det *d, const word *s)
{
    const lego_graph *g = d->g;
    for (int w = 0; w < d->words; w++) {
        word m = s[w];
        while (m) {
            int k = w * 64 + __builtin_ctzll(m);
            m &= m - 1;
            if (!d->shares_param[k])
                continue;
            const gnode *nd = &g->nodes[k];
            for (int i = 1; i < nd->n_in; i++) {
                int v = nd->in[i];
                if (v < 0 || g->values[v].kind != VALUE_INITIALIZER)
                    continue;
                for (int j = d->init_users_off[v]; j < d->init_users_off[v + 1]; j++)
                    if (!bit(s, d->init_users[j]))
                        return false;
            }
        }
    }
    return true;
}

static lego_status add_region(det *d, int e, int x)
{
    int W = d->words;
    if (d->pool_n + 2 * (size_t)W > d->pool_cap) {
        size_t cap = d->pool_cap ? d->pool_cap * 2 : 1024;
        while (cap < d->pool_n + 2 * (size_t)W)
            cap *= 2;
        word *p = realloc(d->pool, sizeof *p * cap);
        if (!p)
            return nomem();
        d->pool = p;
        d->pool_cap = cap;
    }
    if (d->n_reg == d->cap_reg) {
        int cap = d->cap_reg ? d->cap_reg * 2 : 64;
        region *r = realloc(d->reg, sizeof *r * (size_t)cap);
        if (!r)
            return nomem();
        d->reg = r;
        d->cap_reg = cap;
    }
    region *r = &d->reg[d->n_reg++];
    r->e = e;
    r->x = x;
    r->set = d->pool_n;
    memcpy(d->pool + d->pool_n, d->s, sizeof *d->s * (size_t)W);
    d->pool_n += (size_t)W;
    r->cset = d->pool_n;
    for (int w = 0; w < W; w++)
        d->pool[d->pool_n + (size_t)w] = d->s[w] & d->conv_mask[w];
    d->pool_n += (size_t)W;
    r->n_nodes = popcount(d->s, W);
    r->group = -1;
    return lego_ok();
}

/* ---- step 1: candidate regions ------------------------------------------- */

static lego_status enumerate(det *d)
{
    const lego_graph *g = d->g;
    for (int x = 0; x < d->nval; x++) {
        int xv = VV(d, x);
        if (!d->live[xv] || g->values[x].kind != VALUE_ACTIVATION || g->values[x].t.dtype != LEGO_F32)
            continue;
        if (d->succ_off[xv + 1] == d->succ_off[xv] || d->tin[xv] < 0)
            continue; /* nobody reads it */
        int p = g->values[x].producer;
        for (int u = d->idom[p]; u != d->src && u >= 0; u = d->idom[u]) {
            if (u < d->nn || u >= d->src)
                continue;
            int e = u - d->nn;
            region_set(d, e, p);
            int layers = count_layers(d, d->s);
            if (layers > d->max_convs)
                break;
            if (layers < 2 || g->values[e].t.dtype != LEGO_F32)
                continue;
            /* (ii): x post-dominates the consumers of e inside S */
            bool ok = true;
            for (int i = d->succ_off[u]; i < d->succ_off[u + 1] && ok; i++) {
                int c = d->succ[i];
                if (c < d->nn && bit(d->s, c) && !pdominates(d, xv, c))
                    ok = false;
            }
            if (!ok || !params_closed(d, d->s))
                continue;
            mark_kept(d, d->s, p);
            if (count_prunable(d, d->s) < 1)
                continue;
            LEGO_TRY(add_region(d, e, x));
        }
    }
    return lego_ok();
}

/* ---- step 2: candidates and the partition --------------------------------- */

typedef struct dp {
    det *d;
    int n_pos;
    int **starts, *n_starts; /* candidates by first conv rank, in try order */
    word *conflict;          /* n_cand x cwords */
    int cwords;
    /* memo: open addressing over entries; keys in a shared int pool */
    int *slot, n_slot;
    struct entry {
        size_t key;
        int len, cov, blocks, choice;
    } *ent;
    int n_ent, cap_ent;
    int *keys;
    size_t n_keys, cap_keys;
} dp;

static int cmp_ints(const int *a, int na, const int *b, int nb)
{
    for (int i = 0; i < na && i < nb; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return na == nb ? 0 : na < nb ? -1 : 1;
}

typedef struct sort_ctx_item {
    const det *d;
    int id;
} sort_ctx_item;

/* Candidate try order: first conv, then larger first, then conv ranks. */
static int by_candidate(const void *a, const void *b)
{
    const sort_ctx_item *x = a, *y = b;
    const cand *p = &x->d->cand[x->id], *q = &y->d->cand[y->id];
    if (p->first != q->first)
        return p->first < q->first ? -1 : 1;
    if (p->n_layers != q->n_layers)
        return p->n_layers > q->n_layers ? -1 : 1;
    return cmp_ints(p->ranks, p->n_ranks, q->ranks, q->n_ranks);
}

/* Region preference for boundaries: earliest entry, then earliest exit. */
static int by_boundary(const void *a, const void *b)
{
    const sort_ctx_item *x = a, *y = b;
    const det *d = x->d;
    const region *p = &d->reg[x->id], *q = &d->reg[y->id];
    int de = d->depth[VV(d, p->e)] - d->depth[VV(d, q->e)];
    if (de)
        return de < 0 ? -1 : 1;
    int dx = d->depth[VV(d, p->x)] - d->depth[VV(d, q->x)];
    if (dx)
        return dx < 0 ? -1 : 1;
    int c = strcmp(d->g->values[p->e].name, d->g->values[q->e].name);
    return c ? c : strcmp(d->g->values[p->x].name, d->g->values[q->x].name);
}

/* Footprint preference: fewest nodes, then latest entry, earliest exit. */
static bool smaller_region(const det *d, int a, int b)
{
    const region *p = &d->reg[a], *q = &d->reg[b];
    if (p->n_nodes != q->n_nodes)
        return p->n_nodes < q->n_nodes;
    int de = d->depth[VV(d, p->e)] - d->depth[VV(d, q->e)];
    if (de)
        return de > 0;
    int dx = d->depth[VV(d, p->x)] - d->depth[VV(d, q->x)];
    if (dx)
        return dx < 0;
    int c = strcmp(d->g->values[p->e].name, d->g->values[q->e].name);
    return c ? c < 0 : strcmp(d->g->values[p->x].name, d->g->values[q->x].name) < 0;
}

static lego_status group(det *d)
{
    int W = d->words;
    int *rep = malloc(sizeof *rep * (size_t)(d->n_reg + 1)); /* a region per candidate */
    d->cand = calloc((size_t)d->n_reg + 1, sizeof *d->cand);
    if (!rep || !d->cand) {
        free(rep);
        return nomem();
    }
    int nc = 0;
    for (int r = 0; r < d->n_reg; r++) {
        const word *cs = d->pool + d->reg[r].cset;
        int c = 0;
        while (c < nc && memcmp(d->pool + d->reg[rep[c]].cset, cs, sizeof *cs * (size_t)W) != 0)
            c++;
        if (c == nc)
            rep[nc++] = r;
        d->reg[r].group = c;
        d->cand[c].n_reg++;
    }
    free(rep);
    d->n_cand = nc;
    for (int c = 0; c < nc; c++) {
        cand *cd = &d->cand[c];
        cd->reg = malloc(sizeof *cd->reg * (size_t)cd->n_reg);
        cd->ranks = malloc(sizeof *cd->ranks * (size_t)(d->n_conv_nodes + 1));
        if (!cd->reg || !cd->ranks)
            return nomem();
        cd->n_reg = 0;
        cd->core = -1;
    }
    for (int r = 0; r < d->n_reg; r++) {
        cand *cd = &d->cand[d->reg[r].group];
        cd->reg[cd->n_reg++] = r;
        if (cd->core < 0 || smaller_region(d, r, cd->core))
            cd->core = r;
    }
    sort_ctx_item *tmp = malloc(sizeof *tmp * (size_t)(d->n_reg + 1));
    if (!tmp)
        return nomem();
    for (int c = 0; c < nc; c++) {
        cand *cd = &d->cand[c];
        const word *cs = d->pool + d->reg[cd->core].cset;
        cd->n_ranks = 0;
        for (int w = 0; w < W; w++) {
            word m = cs[w];
            while (m) {
                int k = w * 64 + __builtin_ctzll(m);
                m &= m - 1;
                cd->ranks[cd->n_ranks++] = d->conv_rank[k];
            }
        }
        /* insertion sort: a handful of convs */
        for (int i = 1; i < cd->n_ranks; i++)
            for (int j = i; j > 0 && cd->ranks[j - 1] > cd->ranks[j]; j--) {
                int t = cd->ranks[j];
                cd->ranks[j] = cd->ranks[j - 1];
                cd->ranks[j - 1] = t;
            }
        cd->first = cd->ranks[0];
        cd->n_layers = count_layers(d, cs);
        for (int i = 0; i < cd->n_reg; i++)
            tmp[i] = (sort_ctx_item){d, cd->reg[i]};
        qsort(tmp, (size_t)cd->n_reg, sizeof *tmp, by_boundary);
        for (int i = 0; i < cd->n_reg; i++)
            cd->reg[i] = tmp[i].id;
    }
    free(tmp);
    return lego_ok();
}

static uint32_t hash_key(const int *k, int n)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++)
        h = (h ^ (uint32_t)k[i]) * 16777619u;
    return h;
}

static int memo_find(const dp *p, const int *key, int len, uint32_t *slot)
{
    uint32_t mask = (uint32_t)p->n_slot - 1;
    for (uint32_t h = hash_key(key, len) & mask;; h = (h + 1) & mask) {
        int e = p->slot[h];
        if (e < 0) {
            *slot = h;
            return -1;
        }
        if (p->ent[e].len == len && memcmp(p->keys + p->ent[e].key, key, sizeof *key * (size_t)len) == 0)
            return e;
    }
}

static lego_status memo_add(dp *p, const int *key, int len, int *idx)
{
    if ((p->n_ent + 1) * 2 > p->n_slot) {
        int n = p->n_slot * 2;
        int *s = malloc(sizeof *s * (size_t)n);
        if (!s)
            return nomem();
        for (int i = 0; i < n; i++)
            s[i] = -1;
        for (int e = 0; e < p->n_ent; e++) {
            uint32_t h = hash_key(p->keys + p->ent[e].key, p->ent[e].len) & (uint32_t)(n - 1);
            while (s[h] >= 0)
                h = (h + 1) & (uint32_t)(n - 1);
            s[h] = e;
        }
        free(p->slot);
        p->slot = s;
        p->n_slot = n;
    }
    if (p->n_ent == p->cap_ent) {
        int cap = p->cap_ent ? p->cap_ent * 2 : 256;
        struct entry *e = realloc(p->ent, sizeof *e * (size_t)cap);
        if (!e)
            return nomem();
        p->ent = e;
        p->cap_ent = cap;
    }
    if (p->n_keys + (size_t)len > p->cap_keys) {
        size_t cap = p->cap_keys ? p->cap_keys * 2 : 1024;
        while (cap < p->n_keys + (size_t)len)
            cap *= 2;
        int *k = realloc(p->keys, sizeof *k * cap);
        if (!k)
            return nomem();
        p->keys = k;
        p->cap_keys = cap;
    }
    uint32_t h;
    memo_find(p, key, len, &h);
    memcpy(p->keys + p->n_keys, key, sizeof *key * (size_t)len);
    struct entry *e = &p->ent[p->n_ent];
    e->key = p->n_keys;
    e->len = len;
    e->cov = e->blocks = 0;
    e->choice = -1;
    p->n_keys += (size_t)len;
    p->slot[h] = p->n_ent;
    *idx = p->n_ent++;
    return lego_ok();
}

static bool conflicts(const dp *p, int a, int b)
{
    return bit(p->conflict + (size_t)a * (size_t)p->cwords, b);
}

/* key = [pos, active candidates...] for pos+1 after taking `add` (or -1):
 * the active ones that still overlap a candidate starting at pos+1 or later. */
static int next_key(const dp *p, const int *key, int len, int add, int *out)
{
    int pos = key[0] + 1, n = 1;
    out[0] = pos;
    bool placed = add < 0;
    for (int i = 1; i <= len; i++) {
        int c = i < len ? key[i] : -1;
        if (!placed && (c < 0 || add < c)) {
            if (p->d->cand[add].last_conflict >= pos)
                out[n++] = add;
            placed = true;
        }
        if (c >= 0 && p->d->cand[c].last_conflict >= pos)
            out[n++] = c;
    }
    return n;
}

/* Best (most convs, then fewest blocks) from state key; its memo entry in *out. */
static lego_status solve(dp *p, const int *key, int len, int *out)
{
    uint32_t h;
    int e = memo_find(p, key, len, &h);
    if (e >= 0) {
        *out = e;
        return lego_ok();
    }
    if (p->n_ent >= MAX_STATES)
        return lego_error(LEGO_ERR_UNSUPPORTED,
                          "block search: more than %d partial partitions; try a smaller max ratio", MAX_STATES);
    int cov = 0, blocks = 0, choice = -1;
    int pos = key[0];
    if (pos < p->n_pos) {
        int *nk = malloc(sizeof *nk * (size_t)(len + 2));
        if (!nk)
            return nomem();
        bool have = false;
        lego_status st = lego_ok();
        for (int t = 0; t <= p->n_starts[pos] && !st.code; t++) {
            int c = t < p->n_starts[pos] ? p->starts[pos][t] : -1; /* -1: take none */
            bool free_ = true;
            for (int i = 1; i < len && c >= 0; i++)
                if (conflicts(p, c, key[i]))
                    free_ = false;
            if (!free_)
                continue;
            int nlen = next_key(p, key, len, c, nk), sub;
            st = solve(p, nk, nlen, &sub);
            if (st.code)
                break;
            int sc = p->ent[sub].cov + (c >= 0 ? p->d->cand[c].n_layers : 0);
            int sb = p->ent[sub].blocks + (c >= 0 ? 1 : 0);
            if (!have || sc > cov || (sc == cov && sb < blocks)) {
                cov = sc, blocks = sb, choice = c;
                have = true;
            }
        }
        free(nk);
        LEGO_TRY(st);
    }
    LEGO_TRY(memo_add(p, key, len, &e));
    p->ent[e].cov = cov;
    p->ent[e].blocks = blocks;
    p->ent[e].choice = choice;
    *out = e;
    return lego_ok();
}

static void dp_free(dp *p)
{
    if (p->starts)
        for (int i = 0; i < p->n_pos; i++)
            free(p->starts[i]);
    free(p->starts);
    free(p->n_starts);
    free(p->conflict);
    free(p->slot);
    free(p->ent);
    free(p->keys);
}

/* The chosen candidates go to chosen (in try order along the convs). */
static lego_status partition(det *d, int *chosen, int *n_chosen)
{
    *n_chosen = 0;
    dp p = {0};
    p.d = d;
    p.n_pos = d->n_conv_nodes;
    int nc = d->n_cand, W = d->words;
    p.cwords = (nc + 63) / 64 ? (nc + 63) / 64 : 1;
    p.starts = calloc((size_t)p.n_pos + 1, sizeof *p.starts);
    p.n_starts = calloc((size_t)p.n_pos + 1, sizeof *p.n_starts);
    p.conflict = calloc((size_t)nc * (size_t)p.cwords + 1, sizeof *p.conflict);
    p.n_slot = 1024;
    p.slot = malloc(sizeof *p.slot * (size_t)p.n_slot);
    sort_ctx_item *order = malloc(sizeof *order * (size_t)(nc + 1));
    int *key = malloc(sizeof *key * (size_t)(nc + 2));
    lego_status st = lego_ok();
    if (!p.starts || !p.n_starts || !p.conflict || !p.slot || !order || !key) {
        st = nomem();
        goto done;
    }
    for (int i = 0; i < p.n_slot; i++)
        p.slot[i] = -1;
    for (int a = 0; a < nc; a++)
        d->cand[a].last_conflict = -1;
    for (int a = 0; a < nc; a++) {
        const word *sa = d->pool + d->reg[d->cand[a].core].set;
        for (int b = a + 1; b < nc; b++) {
            if (!overlaps(sa, d->pool + d->reg[d->cand[b].core].set, W))
                continue;
            set_bit(p.conflict + (size_t)a * (size_t)p.cwords, b);
            set_bit(p.conflict + (size_t)b * (size_t)p.cwords, a);
            if (d->cand[b].first > d->cand[a].last_conflict)
                d->cand[a].last_conflict = d->cand[b].first;
            if (d->cand[a].first > d->cand[b].last_conflict)
                d->cand[b].last_conflict = d->cand[a].first;
        }
    }
    for (int c = 0; c < nc; c++)
        order[c] = (sort_ctx_item){d, c};
    qsort(order, (size_t)nc, sizeof *order, by_candidate);
    for (int i = 0; i < nc; i++)
        p.n_starts[d->cand[order[i].id].first]++;
    for (int pos = 0; pos < p.n_pos; pos++) {
        p.starts[pos] = malloc(sizeof *p.starts[pos] * (size_t)(p.n_starts[pos] + 1));
        if (!p.starts[pos]) {
            st = nomem();
            goto done;
        }
        p.n_starts[pos] = 0;
    }
    for (int i = 0; i < nc; i++) {
        int c = order[i].id, f = d->cand[c].first;
        p.starts[f][p.n_starts[f]++] = c;
    }
    /* solve from the start, then follow the choices */
    key[0] = 0;
    int len = 1, e;
    while (key[0] < p.n_pos) {
        st = solve(&p, key, len, &e);
        if (st.code)
            goto done;
        int c = p.ent[e].choice;
        if (c >= 0)
            chosen[(*n_chosen)++] = c;
        /* next_key writes at most len + 1 entries; key has room for nc + 2 */
        int *tmp = malloc(sizeof *tmp * (size_t)(len + 2));
        if (!tmp) {
            st = nomem();
            goto done;
        }
        len = next_key(&p, key, len, c, tmp);
        memcpy(key, tmp, sizeof *key * (size_t)len);
        free(tmp);
    }
done:
    free(order);
    free(key);
    dp_free(&p);
    return st;
}

/* ---- step 3: boundaries and the result ------------------------------------ */

static int by_rank(const void *a, const void *b)
{
    const int *x = a, *y = b;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* Nodes of bitset s in canonical order, into a new array. */
static lego_status set_nodes(const det *d, const word *s, int **out, int *n)
{
    int cnt = popcount(s, d->words);
    int *pairs = malloc(sizeof *pairs * 2 * (size_t)(cnt + 1));
    *out = malloc(sizeof **out * (size_t)(cnt + 1));
    if (!pairs || !*out) {
        free(pairs);
        return nomem();
    }
    int i = 0;
    for (int w = 0; w < d->words; w++) {
        word m = s[w];
        while (m) {
            int k = w * 64 + __builtin_ctzll(m);
            m &= m - 1;
            pairs[2 * i] = k;
            pairs[2 * i + 1] = d->rank[k];
            i++;
        }
    }
    qsort(pairs, (size_t)cnt, 2 * sizeof *pairs, by_rank);
    for (i = 0; i < cnt; i++)
        (*out)[i] = pairs[2 * i];
    *n = cnt;
    free(pairs);
    return lego_ok();
}

static lego_status fill_block(det *d, int r, block *b)
{
    const lego_graph *g = d->g;
    const region *rg = &d->reg[r];
    const word *s = d->pool + rg->set;
    b->entry = rg->e;
    b->exit = rg->x;
    LEGO_TRY(set_nodes(d, s, &b->nodes, &b->n_nodes));
    b->convs = malloc(sizeof *b->convs * (size_t)(b->n_nodes + 1));
    b->kept = malloc(sizeof *b->kept * (size_t)(b->n_nodes + 1));
    b->prunable = malloc(sizeof *b->prunable * (size_t)(b->n_nodes + 1));
    if (!b->convs || !b->kept || !b->prunable)
        return nomem();
    mark_kept(d, s, g->values[rg->x].producer);
    /* a layer is kept when any of its nodes is */
    d->layer_gen++;
    for (int i = 0; i < b->n_nodes; i++)
        if (d->layer[b->nodes[i]] >= 0 && is_kept(d, b->nodes[i]))
            d->layer_stamp[d->layer[b->nodes[i]]] = d->layer_gen;
    for (int i = 0; i < b->n_nodes; i++) {
        int k = b->nodes[i];
        if (d->layer[k] < 0)
            continue;
        b->convs[b->n_convs++] = k;
        if (d->layer_stamp[d->layer[k]] == d->layer_gen)
            b->kept[b->n_kept++] = k;
        else
            b->prunable[b->n_prunable++] = k;
    }
    b->n_layers = count_layers(d, s);
    return lego_ok();
}

lego_status blocks_detect(const lego_graph *g, double max_ratio, block_set *out)
{
    memset(out, 0, sizeof *out);
    if (!(max_ratio > 0 && max_ratio <= 1))
        return lego_error(LEGO_ERR_ARG, "max ratio %g is outside (0, 1]", max_ratio);
    if (!g->order && g->n_nodes)
        return lego_error(LEGO_ERR_ARG, "%s: the graph is not prepared (graph_infer)", g->name);
    det d = {0};
    d.g = g;
    int *chosen = NULL, *owner = NULL, *own = NULL;
    int64_t *per_node = NULL;
    word *taken = NULL;
    lego_status st = build_graph(&d);
    if (!st.code)
        st = trees(&d);
    if (!st.code)
        st = prepare(&d);
    if (st.code)
        goto done;
    out->max_ratio = max_ratio;
    out->total_convs = d.n_layers;
    int m = (int)floor(d.n_layers * max_ratio + 1e-9);
    d.max_convs = out->max_convs = m > 2 ? m : 2;
    if (d.n_layers < 2) {
        st = lego_error(LEGO_ERR_ARG, "%s: no block found: the model has %d convolution%s; a block needs at least 2",
                        g->name, d.n_layers, d.n_layers == 1 ? "" : "s");
        goto done;
    }
    st = enumerate(&d);
    if (!st.code)
        st = group(&d);
    if (st.code)
        goto done;
    out->n_regions = d.n_reg;
    out->n_candidates = d.n_cand;
    if (d.n_cand == 0) {
        st = lego_error(LEGO_ERR_ARG,
                        "%s: no block found: no single-input single-output part of the model holds 2 to %d of its "
                        "%d convolutions with at least one that can be pruned (max ratio %g)",
                        g->name, d.max_convs, d.n_layers, max_ratio);
        goto done;
    }
    chosen = malloc(sizeof *chosen * (size_t)(d.n_cand + 1));
    if (!chosen) {
        st = nomem();
        goto done;
    }
    int n_chosen;
    st = partition(&d, chosen, &n_chosen);
    if (st.code)
        goto done;

    /* boundaries, going downstream (the try order is by first conv) */
    int W = d.words;
    taken = calloc((size_t)W, sizeof *taken);
    out->blocks = calloc((size_t)n_chosen + 1, sizeof *out->blocks);
    owner = malloc(sizeof *owner * (size_t)(d.nn + 1));
    per_node = calloc((size_t)d.nn + 1, sizeof *per_node);
    if (!taken || !out->blocks || !owner || !per_node) {
        st = nomem();
        goto done;
    }
    for (int i = 0; i < n_chosen; i++)
        for (int j = i + 1; j < n_chosen; j++)
            if (d.cand[chosen[j]].first < d.cand[chosen[i]].first) {
                int t = chosen[i];
                chosen[i] = chosen[j];
                chosen[j] = t;
            }
    for (int k = 0; k < d.nn; k++)
        owner[k] = -1;
    for (int i = 0; i < n_chosen; i++) {
        /* taken = realised blocks so far + cores of the blocks still to come */
        memset(taken, 0, sizeof *taken * (size_t)W);
        for (int k = 0; k < d.nn; k++)
            if (owner[k] >= 0)
                set_bit(taken, k);
        for (int j = i + 1; j < n_chosen; j++) {
            const word *cs = d.pool + d.reg[d.cand[chosen[j]].core].set;
            for (int w = 0; w < W; w++)
                taken[w] |= cs[w];
        }
        const cand *cd = &d.cand[chosen[i]];
        int r = cd->core;
        for (int j = 0; j < cd->n_reg; j++) {
            if (!overlaps(d.pool + d.reg[cd->reg[j]].set, taken, W)) {
                r = cd->reg[j];
                break;
            }
        }
        block *b = &out->blocks[out->n_blocks++];
        st = fill_block(&d, r, b);
        if (st.code)
            goto done;
        for (int j = 0; j < b->n_nodes; j++)
            owner[b->nodes[j]] = i;
        out->covered_convs += b->n_layers;
    }

    /* parameters: an initializer belongs to a block when only that block
     * reads it; own[v] is -2 while unread, -1 once read from two places */
    out->flops = graph_flops(g, per_node);
    out->params = graph_param_count(g, &out->param_bytes);
    own = malloc(sizeof *own * (size_t)(d.nval + 1));
    if (!own) {
        st = nomem();
        goto done;
    }
    for (int v = 0; v < d.nval; v++)
        own[v] = -2;
    for (int k = 0; k < d.nn; k++) {
        if (!d.live[k])
            continue;
        const gnode *nd = &g->nodes[k];
        for (int i = 0; i < nd->n_in; i++) {
            int v = nd->in[i];
            if (v >= 0 && g->values[v].kind == VALUE_INITIALIZER)
                own[v] = own[v] == -2 || own[v] == owner[k] ? owner[k] : -1;
        }
    }
    for (int v = 0; v < d.nval; v++) {
        const gvalue *val = &g->values[v];
        if (val->kind != VALUE_INITIALIZER || val->t.dtype != LEGO_F32 || own[v] < 0)
            continue;
        out->blocks[own[v]].params += lego_tensor_numel(&val->t);
        out->blocks[own[v]].param_bytes += (int64_t)lego_tensor_bytes(&val->t);
    }
    out->outside_params = out->params;
    out->outside_param_bytes = out->param_bytes;
    out->outside_flops = out->flops;
    for (int i = 0; i < out->n_blocks; i++) {
        block *b = &out->blocks[i];
        for (int j = 0; j < b->n_nodes; j++)
            b->flops += per_node[b->nodes[j]];
        out->outside_params -= b->params;
        out->outside_param_bytes -= b->param_bytes;
        out->outside_flops -= b->flops;
    }
    out->outside = malloc(sizeof *out->outside * (size_t)(d.n_canon + 1));
    out->outside_convs = malloc(sizeof *out->outside_convs * (size_t)(d.n_canon + 1));
    if (!out->outside || !out->outside_convs) {
        st = nomem();
        goto done;
    }
    for (int i = 0; i < d.n_canon; i++) {
        int k = d.canon[i];
        if (owner[k] >= 0)
            continue;
        out->outside[out->n_outside++] = k;
        if (d.layer[k] >= 0)
            out->outside_convs[out->n_outside_convs++] = k;
    }
done:
    free(chosen);
    free(owner);
    free(own);
    free(per_node);
    free(taken);
    free(d.live), free(d.cons_off), free(d.cons), free(d.is_out);
    free(d.succ_off), free(d.succ), free(d.pred_off), free(d.pred);
    free(d.topo), free(d.tpos), free(d.idom), free(d.ipdom), free(d.depth), free(d.tin), free(d.tout);
    free(d.fwd), free(d.bwd), free(d.conv_mask), free(d.layer), free(d.canon), free(d.rank);
    free(d.conv_rank), free(d.init_users_off), free(d.init_users), free(d.shares_param);
    free(d.s), free(d.stamp), free(d.queue), free(d.layer_stamp), free(d.pool), free(d.reg);
    if (d.cand)
        for (int c = 0; c < d.n_cand; c++)
            free(d.cand[c].ranks), free(d.cand[c].reg);
    free(d.cand);
    if (st.code)
        block_set_free(out);
    return st;
}

void block_set_free(block_set *s)
{
    for (int i = 0; i < s->n_blocks; i++) {
        block *b = &s->blocks[i];
        free(b->nodes), free(b->convs), free(b->kept), free(b->prunable);
    }
    free(s->blocks);
    free(s->outside);
    free(s->outside_convs);
    memset(s, 0, sizeof *s);
}
