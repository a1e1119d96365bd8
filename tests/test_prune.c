/* test_prune.c - descendant generation by L1 filter pruning (blocks/prune.c).
 *
 * For every model family in tests/data/models: every block's descendants at
 * 0, 0.3, 0.6 and 0.8 infer with the block's input and output shapes; s = 0
 * has the block's initializers byte for byte, its parameters and FLOPs;
 * each thinned conv keeps C - floor(C*s) filters (per group for grouped
 * convs); every conv weight in a descendant is the teacher's weight gathered
 * at the reported kept channels, and the parameter count equals what the
 * kept channels imply. One conv's kept filters are checked by hand against
 * their L1 norms. Hand-made graphs cover grouped and depthwise convs,
 * Concat, an SE gate, a residual Add inside a block, a broadcast constant,
 * ConvTranspose with groups, and ops the analysis cannot cut through; there
 * the descendant must compute what the teacher computes with the removed
 * filters zeroed. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/prune.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "graph/exec.h"
#include "harness.h"
#include "onnx/onnx_import.h"
#include "train/zoo.h"

static const char *const families[] = {"resnet18",      "resnet18_dynbatch", "mobilenetv2", "resnext29", "inceptionv3",
                                       "wideresnet",    "ran",               "cbam_resnet18", "senet18", "vgg11_bn",
                                       "fcn",           "deeplabv3",         "unet",        "yolov3",    "ganomaly",
                                       "deeppose",      "simplebaseline",    "tsn",         "trn",       NULL};

static const double sparsities[] = {0, 0.3, 0.6, 0.8};
#define N_SPARSITIES 4

static int find_node(const lego_graph *g, const char *name)
{
    for (int k = 0; k < g->n_nodes; k++)
        if (strcmp(blocks_node_name(g, k), name) == 0)
            return k;
    return -1;
}

static int64_t get_group(const gnode *n)
{
    int64_t gr = 1;
    lego_status st = attr_get_int(&n->attrs, "group", 1, &gr);
    lego_status_free(&st);
    return gr;
}

/* The conv weight of the descendant is the teacher's at the kept channels;
 * *wp and *bp get the parameters its weight and bias should have. */
static void check_conv(const lego_graph *g, const lego_graph *d, const prune_conv *pc, int64_t *wp, int64_t *bp)
{
    *wp = *bp = -1;
    const gnode *tn = &g->nodes[pc->node];
    int k = find_node(d, pc->name);
    CHECK(k >= 0);
    if (k < 0)
        return;
    const gnode *dn = &d->nodes[k];
    const lego_tensor *tw = &g->values[tn->in[1]].t, *dw = &d->values[dn->in[1]].t;
    bool transpose = strcmp(tn->op_type, "ConvTranspose") == 0;
    int64_t G = get_group(tn), G2 = get_group(dn);
    CHECK(G2 == pc->new_groups);
    /* groups stay, except a depthwise conv's, which follow its channels */
    bool depthwise = G > 1 && G == pc->in_channels && G == pc->out_channels;
    CHECK(depthwise ? G2 == pc->n_kept_out && pc->n_kept_in == pc->n_kept_out : G2 == G);
    int64_t K = 1;
    for (int i = 2; i < tw->rank; i++)
        K *= tw->dims[i];
    int64_t want0 = transpose ? pc->n_kept_in : pc->n_kept_out;
    int64_t want1 = transpose ? pc->n_kept_out / G2 : pc->n_kept_in / G2;
    CHECK(dw->dims[0] == want0 && dw->dims[1] == want1);
    if (dw->dims[0] != want0 || dw->dims[1] != want1)
        return;
    /* the values: gathered from the teacher */
    const float *tv = tw->data, *dv = dw->data;
    int64_t cig = pc->in_channels / G, cog = pc->out_channels / G, kig = pc->n_kept_in / G2,
            kog = pc->n_kept_out / G2;
    bool same = true;
    for (int64_t o = 0; o < pc->n_kept_out && same; o++) {
        int64_t to = pc->kept_out[o], grp = o / kog;
        for (int64_t i = 0; i < kig && same; i++) {
            int64_t ti = pc->kept_in[grp * kig + i];
            CHECK(ti / cig == to / cog); /* same group */
            const float *a, *b;
            if (transpose) {
                a = dv + ((grp * kig + i) * kog + o % kog) * K;
                b = tv + (ti * cog + to % cog) * K;
            } else {
                a = dv + (o * kig + i) * K;
                b = tv + (to * cig + ti % cig) * K;
            }
            same = memcmp(a, b, sizeof(float) * (size_t)K) == 0;
        }
    }
    CHECK(same);
    *wp = want0 * want1 * K;
    if (tn->n_in > 2 && tn->in[2] >= 0) {
        const lego_tensor *db = &d->values[dn->in[2]].t, *tb = &g->values[tn->in[2]].t;
        CHECK(db->dims[0] == pc->n_kept_out);
        for (int64_t o = 0; o < pc->n_kept_out && o < db->dims[0]; o++)
            same &= ((const float *)db->data)[o] == ((const float *)tb->data)[pc->kept_out[o]];
        CHECK(same);
        *bp = pc->n_kept_out;
    }
}

/* Parameters the kept channels imply, per distinct initializer: a conv's
 * weight and bias from its kept lists, a BatchNormalization vector one per
 * channel it reads, any other constant as in the teacher. */
static int64_t implied_params(const lego_graph *g, const descendant *d)
{
    int64_t total = 0;
    bool *seen = calloc((size_t)d->g.n_values + 1, 1);
    for (int k = 0; k < d->g.n_nodes; k++) {
        const gnode *n = &d->g.nodes[k];
        int tk = find_node(g, n->name);
        const prune_conv *pc = NULL;
        for (int c = 0; c < d->n_convs; c++)
            if (d->convs[c].node == tk)
                pc = &d->convs[c];
        int64_t wp = -1, bp = -1;
        if (pc)
            check_conv(g, &d->g, pc, &wp, &bp);
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            if (v < 0 || seen[v] || d->g.values[v].kind != VALUE_INITIALIZER || d->g.values[v].t.dtype != LEGO_F32)
                continue;
            seen[v] = true;
            if (pc && (i == 1 || i == 2))
                total += i == 1 ? wp : bp;
            else if (strcmp(n->op_type, "BatchNormalization") == 0 && i >= 1)
                total += d->g.values[n->in[0]].t.dims[1];
            else if (tk >= 0)
                total += lego_tensor_numel(&g->values[g->nodes[tk].in[i]].t);
            else
                CHECK(!"a descendant node the teacher does not have");
        }
    }
    free(seen);
    return total;
}

/* Distinct float initializers the block's nodes read. */
static int64_t block_initializer_params(const lego_graph *g, const block *b)
{
    bool *seen = calloc((size_t)g->n_values + 1, 1);
    int64_t total = 0;
    for (int j = 0; j < b->n_nodes; j++) {
        const gnode *n = &g->nodes[b->nodes[j]];
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            if (v >= 0 && !seen[v] && g->values[v].kind == VALUE_INITIALIZER && g->values[v].t.dtype == LEGO_F32) {
                seen[v] = true;
                total += lego_tensor_numel(&g->values[v].t);
            }
        }
    }
    free(seen);
    return total;
}

static void check_identity(const lego_graph *g, const descendant *d)
{
    /* s = 0: every initializer is the teacher's, byte for byte */
    for (int v = 0; v < d->g.n_values; v++) {
        const gvalue *dv = &d->g.values[v];
        if (dv->kind != VALUE_INITIALIZER)
            continue;
        int tv = graph_find_value(g, dv->name);
        CHECK(tv >= 0);
        if (tv < 0)
            continue;
        const lego_tensor *t = &g->values[tv].t;
        CHECK(tensor_same_shape(t, &dv->t) && t->dtype == dv->t.dtype);
        CHECK(memcmp(t->data, dv->t.data, lego_tensor_bytes(t)) == 0);
    }
    for (int c = 0; c < d->n_convs; c++)
        CHECK(d->convs[c].n_kept_out == d->convs[c].out_channels && d->convs[c].n_kept_in == d->convs[c].in_channels &&
              d->convs[c].new_groups == d->convs[c].groups);
}

static void test_families(void)
{
    for (int f = 0; families[f]; f++) {
        lego_graph g;
        lego_status st = harness_load_model(families[f], &g);
        CHECK_OK(st);
        if (st.code)
            continue;
        block_set bs;
        st = blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs);
        CHECK_OK(st);
        if (st.code) {
            graph_free(&g);
            continue;
        }
        int bad = harness_failed, cut_blocks = 0;
        for (int i = 0; i < bs.n_blocks; i++) {
            const block *b = &bs.blocks[i];
            prune_plan *p;
            st = prune_analyze(&g, b, &p);
            CHECK_OK(st);
            if (st.code)
                continue;
            int thin = 0;
            prune_plan_spaces(p, &thin);
            cut_blocks += thin > 0;
            int64_t prev_params = INT64_MAX;
            for (int si = 0; si < N_SPARSITIES; si++) {
                double s = sparsities[si];
                descendant d;
                st = prune_descendant(p, s, NULL, &d);
                CHECK_OK(st);
                if (st.code)
                    continue;
                /* one input and one output with the block's shapes */
                CHECK(d.g.n_inputs == 1 && d.g.n_outputs == 1);
                const gvalue *in = &d.g.values[d.g.inputs[0]], *out = &d.g.values[d.g.outputs[0]];
                CHECK(strcmp(in->name, g.values[b->entry].name) == 0 && strcmp(out->name, g.values[b->exit].name) == 0);
                CHECK(tensor_same_shape(&in->t, &g.values[b->entry].t));
                CHECK(tensor_same_shape(&out->t, &g.values[b->exit].t));
                CHECK(in->declared_rank == in->t.rank && in->declared[0] == -1);
                /* parameters as the kept channels imply */
                CHECK(d.params == implied_params(&g, &d));
                CHECK(d.params <= prev_params);
                prev_params = d.params;
                if (s == 0) {
                    check_identity(&g, &d);
                    CHECK(d.params == block_initializer_params(&g, b));
                    CHECK(d.flops == b->flops);
                }
                /* thinned convs keep C - floor(C*s), per group */
                for (int c = 0; c < d.n_convs; c++) {
                    const prune_conv *pc = &d.convs[c];
                    if (!prune_plan_cuts_conv(p, pc->node)) {
                        CHECK(pc->n_kept_out == pc->out_channels);
                        continue;
                    }
                    bool listed = false;
                    for (int j = 0; j < b->n_prunable; j++)
                        listed |= b->prunable[j] == pc->node;
                    CHECK(listed); /* only prunable convs lose filters */
                    /* C - floor(C*s), or that per group when a grouped
                     * conv of the block reads or writes the space */
                    int64_t C = pc->out_channels;
                    bool ok = pc->n_kept_out == C - (int64_t)floor((double)C * s);
                    for (int j = 0; j < d.n_convs; j++) {
                        const prune_conv *q = &d.convs[j];
                        bool dw = q->groups == q->in_channels && q->groups == q->out_channels;
                        int64_t G = q->groups;
                        if (G > 1 && !dw && C % G == 0)
                            ok |= pc->n_kept_out == G * (C / G - (int64_t)floor((double)(C / G) * s));
                    }
                    CHECK(ok);
                    for (int64_t j = 1; j < pc->n_kept_out; j++)
                        CHECK(pc->kept_out[j] > pc->kept_out[j - 1]);
                }
                descendant_free(&d);
            }
            prune_plan_free(p);
        }
        /* every family has something to thin */
        CHECK(cut_blocks > 0);
        if (harness_failed != bad)
            fprintf(stderr, "  (in %s)\n", families[f]);
        block_set_free(&bs);
        graph_free(&g);
    }
}

/* ---- the L1 ranking by hand -------------------------------------------------------- */

static void test_l1_by_hand(void)
{
    lego_graph g;
    CHECK_OK(harness_load_model("resnet18", &g));
    block_set bs;
    CHECK_OK(blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs));
    const block *b = &bs.blocks[0];
    int c1 = find_node(&g, "/layer1/layer1.0/conv1/Conv");
    CHECK(c1 >= 0 && b->n_prunable == 1 && b->prunable[0] == c1);
    const lego_tensor *w = &g.values[g.nodes[c1].in[1]].t;
    int64_t C = w->dims[0], len = lego_tensor_numel(w) / C;
    double l1[64];
    for (int64_t o = 0; o < C; o++) {
        l1[o] = 0;
        for (int64_t j = 0; j < len; j++)
            l1[o] += fabs(((const float *)w->data)[o * len + j]);
    }
    prune_plan *p;
    CHECK_OK(prune_analyze(&g, b, &p));
    int spaces, thin;
    spaces = prune_plan_spaces(p, &thin);
    CHECK(thin == 1 && spaces >= 2);
    CHECK(prune_plan_cuts_conv(p, c1));
    for (int si = 1; si < N_SPARSITIES; si++) {
        descendant d;
        CHECK_OK(prune_descendant(p, sparsities[si], "b0", &d));
        int64_t k = C - (int64_t)floor((double)C * sparsities[si]);
        const prune_conv *pc = &d.convs[0];
        CHECK(pc->node == c1 && pc->n_kept_out == k);
        /* kept: exactly the k filters of largest L1 norm */
        for (int64_t o = 0; o < C; o++) {
            int rank = 0; /* filters that beat o */
            for (int64_t q = 0; q < C; q++)
                rank += l1[q] > l1[o] || (l1[q] == l1[o] && q < o);
            bool kept = false;
            for (int64_t j = 0; j < pc->n_kept_out; j++)
                kept |= pc->kept_out[j] == o;
            CHECK(kept == (rank < k));
        }
        /* conv2 reads exactly those channels; its own filters stay */
        const prune_conv *pc2 = &d.convs[1];
        CHECK(pc2->n_kept_in == k && pc2->n_kept_out == pc2->out_channels);
        for (int64_t j = 0; j < k && j < pc2->n_kept_in; j++)
            CHECK(pc2->kept_in[j] == pc->kept_out[j]);
        /* conv1's BatchNormalization follows */
        int bn = find_node(&d.g, "/layer1/layer1.0/bn1/BatchNormalization");
        CHECK(bn >= 0);
        if (bn >= 0) {
            const lego_tensor *scale = &d.g.values[d.g.nodes[bn].in[1]].t;
            const lego_tensor *tscale = &g.values[g.nodes[find_node(&g, "/layer1/layer1.0/bn1/BatchNormalization")].in[1]].t;
            CHECK(scale->dims[0] == k);
            for (int64_t j = 0; j < k && j < scale->dims[0]; j++)
                CHECK(((const float *)scale->data)[j] == ((const float *)tscale->data)[pc->kept_out[j]]);
        }
        descendant_free(&d);
    }
    /* a sparsity outside [0, 1) */
    descendant d;
    CHECK_FAILS(prune_descendant(p, 1.0, NULL, &d), LEGO_ERR_ARG, "sparsity 1 is outside [0, 1)");
    CHECK_FAILS(prune_descendant(p, -0.1, NULL, &d), LEGO_ERR_ARG, "outside [0, 1)");
    CHECK_FAILS(prune_descendant(p, NAN, NULL, &d), LEGO_ERR_ARG, "outside [0, 1)");
    prune_plan_free(p);
    block_set_free(&bs);
    graph_free(&g);
}

/* Ties: equal filters keep the lower indices, and exactly C - floor(C*s) of
 * them (the original prunes every filter at the threshold). */
static void test_ties(void)
{
    CHECK(prune_keep_count(10, 0.3) == 7 && prune_keep_count(5, 0.6) == 2 && prune_keep_count(8, 0.8) == 2);
    CHECK(prune_keep_count(1, 0.8) == 1 && prune_keep_count(64, 0) == 64 && prune_keep_count(3, 0.99) == 1);
}

/* ---- hand-made graphs ----------------------------------------------------------------- */

typedef struct builder {
    lego_graph g;
    int x;
    uint64_t seed;
} builder;

static void b_init(builder *b, const char *name, int64_t c, int64_t hw)
{
    CHECK_OK(graph_init(&b->g, name));
    b->g.opset = 13;
    b->seed = 7;
    CHECK_OK(graph_add_value(&b->g, "x", VALUE_INPUT, &b->x));
    int64_t d[4] = {1, c, hw, hw};
    tensor_set_shape(&b->g.values[b->x].t, LEGO_F32, 4, d);
    b->g.inputs = malloc(sizeof *b->g.inputs);
    b->g.inputs[0] = b->x;
    b->g.n_inputs = 1;
}

static int b_const(builder *b, const char *name, int rank, const int64_t *dims, bool positive)
{
    int v;
    CHECK_OK(graph_add_value(&b->g, name, VALUE_INITIALIZER, &v));
    tensor_set_shape(&b->g.values[v].t, LEGO_F32, rank, dims);
    CHECK_OK(tensor_alloc(&b->g.values[v].t));
    float *p = b->g.values[v].t.data;
    for (int64_t i = 0; i < lego_tensor_numel(&b->g.values[v].t); i++) {
        b->seed = b->seed * 6364136223846793005ull + 1442695040888963407ull;
        float r = (float)((b->seed >> 40) & 0xffff) / 65536.0f;
        p[i] = positive ? 0.5f + r : r - 0.5f;
    }
    return v;
}

static int b_node(builder *b, const char *name, const char *op, const int *in, int n_in, attr_list *attrs)
{
    int y, k;
    attr_list none = {0, NULL};
    CHECK_OK(graph_add_value(&b->g, name, VALUE_ACTIVATION, &y));
    CHECK_OK(graph_add_node(&b->g, name, op, in, n_in, &y, 1, attrs ? attrs : &none, &k));
    return y;
}

/* Conv (or ConvTranspose) cin -> cout, kernel k, padding to keep the size,
 * with a bias. */
static int b_conv(builder *b, const char *name, int x, int64_t cin, int64_t cout, int64_t k, int64_t group,
                  bool transpose)
{
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(bn, sizeof bn, "%s.bias", name);
    int64_t wd[4] = {transpose ? cin : cout, transpose ? cout / group : cin / group, k, k}, bd[1] = {cout};
    int in[3] = {x, b_const(b, wn, 4, wd, false), b_const(b, bn, 1, bd, false)};
    attr_list a = {0, NULL};
    int64_t pads[4] = {k / 2, k / 2, k / 2, k / 2};
    CHECK_OK(attr_add_ints(&a, "pads", pads, 4));
    if (group > 1)
        CHECK_OK(attr_add_int(&a, "group", group));
    return b_node(b, name, transpose ? "ConvTranspose" : "Conv", in, 3, &a);
}

/* BatchNormalization with zero mean and bias: it maps 0 to 0, so a removed
 * channel stays zero in the zeroed teacher. */
static int b_bn(builder *b, const char *name, int x, int64_t c)
{
    char n1[64], n2[64], n3[64], n4[64];
    snprintf(n1, sizeof n1, "%s.scale", name), snprintf(n2, sizeof n2, "%s.bias", name);
    snprintf(n3, sizeof n3, "%s.mean", name), snprintf(n4, sizeof n4, "%s.var", name);
    int64_t d[1] = {c};
    int in[5] = {x, b_const(b, n1, 1, d, true), b_const(b, n2, 1, d, false), b_const(b, n3, 1, d, false),
                 b_const(b, n4, 1, d, true)};
    memset(b->g.values[in[2]].t.data, 0, sizeof(float) * (size_t)c);
    memset(b->g.values[in[3]].t.data, 0, sizeof(float) * (size_t)c);
    return b_node(b, name, "BatchNormalization", in, 5, NULL);
}

static int b_unary(builder *b, const char *name, const char *op, int x) { return b_node(b, name, op, &x, 1, NULL); }

static int b_binary(builder *b, const char *name, const char *op, int x, int y)
{
    int in[2] = {x, y};
    return b_node(b, name, op, in, 2, NULL);
}

static void b_finish(builder *b, int y)
{
    b->g.outputs = malloc(sizeof *b->g.outputs);
    b->g.outputs[0] = y;
    b->g.n_outputs = 1;
    CHECK_OK(graph_infer(&b->g));
}

static lego_tensor *run(lego_graph *g, const lego_tensor *x)
{
    exec_plan plan;
    lego_tensor *out = NULL;
    CHECK_OK(exec_plan_build(g, &plan));
    const lego_tensor *in[1] = {x};
    CHECK_OK(exec_run(g, &plan, in, &out));
    exec_plan_free(&plan);
    return out;
}

/* The block is the whole graph. The descendant at s must compute what the
 * teacher computes with every removed filter (and its bias) zeroed: each
 * graph here maps a zero channel to zero until a conv reads it. */
static void check_numerics(builder *b, const char *want_cut, double s)
{
    lego_graph *g = &b->g;
    block_set bs;
    CHECK_OK(blocks_detect(g, 1.0, &bs));
    if (bs.n_blocks != 1) {
        CHECK(bs.n_blocks == 1);
        block_set_free(&bs);
        return;
    }
    prune_plan *p;
    CHECK_OK(prune_analyze(g, &bs.blocks[0], &p));
    descendant d;
    lego_status st = prune_descendant(p, s, NULL, &d);
    CHECK_OK(st);
    if (st.code) {
        prune_plan_free(p);
        block_set_free(&bs);
        return;
    }
    /* which convs were cut, by name */
    char cut[256] = "";
    for (int c = 0; c < d.n_convs; c++)
        if (prune_plan_cuts_conv(p, d.convs[c].node))
            snprintf(cut + strlen(cut), sizeof cut - strlen(cut), "%s%s", cut[0] ? " " : "", d.convs[c].name);
    if (strcmp(cut, want_cut) != 0) {
        fprintf(stderr, "%s at %g: cut '%s', want '%s'\n", g->name, s, cut, want_cut);
        CHECK(!"the convs that are cut");
    }
    /* zero the removed filters of a copy of the teacher's weights */
    lego_tensor x;
    memset(&x, 0, sizeof x);
    tensor_set_shape(&x, LEGO_F32, 4, g->values[g->inputs[0]].t.dims);
    CHECK_OK(tensor_alloc(&x));
    for (int64_t i = 0; i < lego_tensor_numel(&x); i++)
        ((float *)x.data)[i] = (float)sin((double)i * 0.37);
    lego_tensor saved[16];
    int n_saved = 0;
    for (int c = 0; c < d.n_convs; c++) {
        const prune_conv *pc = &d.convs[c];
        if (pc->n_kept_out == pc->out_channels)
            continue;
        const gnode *n = &g->nodes[pc->node];
        bool transpose = strcmp(n->op_type, "ConvTranspose") == 0;
        for (int i = 1; i < 3; i++) {
            lego_tensor *t = &g->values[n->in[i]].t;
            CHECK_OK(tensor_clone(t, &saved[n_saved++]));
            int64_t G = pc->groups, cog = pc->out_channels / G;
            for (int64_t o = 0; o < pc->out_channels; o++) {
                bool kept = false;
                for (int64_t j = 0; j < pc->n_kept_out; j++)
                    kept |= pc->kept_out[j] == o;
                if (kept)
                    continue;
                float *w = t->data;
                if (i == 2) {
                    w[o] = 0;
                } else if (!transpose) {
                    int64_t len = lego_tensor_numel(t) / t->dims[0];
                    memset(w + o * len, 0, sizeof(float) * (size_t)len);
                } else {
                    int64_t K = t->dims[2] * t->dims[3], cig = t->dims[0] / G, grp = o / cog;
                    for (int64_t r = grp * cig; r < (grp + 1) * cig; r++)
                        memset(w + (r * cog + o % cog) * K, 0, sizeof(float) * (size_t)K);
                }
            }
        }
    }
    lego_tensor *want = run(g, &x), *got = run(&d.g, &x);
    if (want && got) {
        CHECK(tensor_same_shape(want, got));
        if (tensor_same_shape(want, got))
            check_close(got->data, want->data, (long)lego_tensor_numel(got), 1e-5f, 1e-5f, g->name);
    }
    lego_tensor_free(want);
    lego_tensor_free(got);
    /* put the weights back */
    n_saved = 0;
    for (int c = 0; c < d.n_convs; c++) {
        const prune_conv *pc = &d.convs[c];
        if (pc->n_kept_out == pc->out_channels)
            continue;
        const gnode *n = &g->nodes[pc->node];
        for (int i = 1; i < 3; i++) {
            lego_tensor *t = &g->values[n->in[i]].t;
            memcpy(t->data, saved[n_saved].data, lego_tensor_bytes(t));
            tensor_release(&saved[n_saved++]);
        }
    }
    tensor_release(&x);
    descendant_free(&d);
    prune_plan_free(p);
    block_set_free(&bs);
}

static void check_weight(const lego_graph *g, const descendant *d, const char *conv, int64_t d0, int64_t d1,
                         int64_t group)
{
    (void)g;
    int k = find_node(&d->g, conv);
    CHECK(k >= 0);
    if (k < 0)
        return;
    const lego_tensor *w = &d->g.values[d->g.nodes[k].in[1]].t;
    CHECK(w->dims[0] == d0 && w->dims[1] == d1 && get_group(&d->g.nodes[k]) == group);
    if (w->dims[0] != d0 || w->dims[1] != d1 || get_group(&d->g.nodes[k]) != group)
        fprintf(stderr, "%s: weight %lldx%lld group %lld, want %lldx%lld group %lld\n", conv, (long long)w->dims[0],
                (long long)w->dims[1], (long long)get_group(&d->g.nodes[k]), (long long)d0, (long long)d1,
                (long long)group);
}

static descendant one_descendant(lego_graph *g, double s, prune_plan **pp, block_set *bs)
{
    descendant d;
    memset(&d, 0, sizeof d);
    CHECK_OK(blocks_detect(g, 1.0, bs));
    CHECK_OK(prune_analyze(g, &bs->blocks[0], pp));
    CHECK_OK(prune_descendant(*pp, s, NULL, &d));
    return d;
}

static void test_grouped(void)
{
    /* x(8) -> c1 1x1 -> relu -> c2 3x3 group 4 -> relu -> c3 1x1 (exit):
     * c1 and c2 are cut evenly across 4 groups, the group count stays */
    builder b;
    b_init(&b, "grouped", 8, 6);
    int v = b_unary(&b, "r1", "Relu", b_conv(&b, "c1", b.x, 8, 8, 1, 1, false));
    v = b_unary(&b, "r2", "Relu", b_conv(&b, "c2", v, 8, 8, 3, 4, false));
    b_finish(&b, b_conv(&b, "c3", v, 8, 8, 1, 1, false));
    prune_plan *p;
    block_set bs;
    descendant d = one_descendant(&b.g, 0.6, &p, &bs);
    /* 2 channels per group, keep 2 - floor(1.2) = 1 in each */
    check_weight(&b.g, &d, "c1", 4, 8, 1);
    check_weight(&b.g, &d, "c2", 4, 1, 4);
    check_weight(&b.g, &d, "c3", 8, 4, 1);
    for (int c = 0; c < d.n_convs; c++)
        if (strcmp(d.convs[c].name, "c1") == 0)
            for (int64_t j = 0; j < d.convs[c].n_kept_out; j++)
                CHECK(d.convs[c].kept_out[j] / 2 == j); /* one per group */
    descendant_free(&d);
    prune_plan_free(p);
    block_set_free(&bs);
    check_numerics(&b, "c1 c2", 0.6);
    check_numerics(&b, "c1 c2", 0.3);
    graph_free(&b.g);
}

static void test_depthwise(void)
{
    /* MobileNet's pattern: expand 1x1 -> BN -> ReLU -> depthwise 3x3 -> BN ->
     * ReLU -> project 1x1; expand and depthwise share one space */
    builder b;
    b_init(&b, "depthwise", 4, 6);
    int v = b_unary(&b, "r1", "Relu", b_bn(&b, "bn1", b_conv(&b, "expand", b.x, 4, 10, 1, 1, false), 10));
    v = b_unary(&b, "r2", "Relu", b_bn(&b, "bn2", b_conv(&b, "dw", v, 10, 10, 3, 10, false), 10));
    b_finish(&b, b_conv(&b, "project", v, 10, 4, 1, 1, false));
    prune_plan *p;
    block_set bs;
    descendant d = one_descendant(&b.g, 0.3, &p, &bs);
    check_weight(&b.g, &d, "expand", 7, 4, 1);
    check_weight(&b.g, &d, "dw", 7, 1, 7);
    check_weight(&b.g, &d, "project", 4, 7, 1);
    descendant_free(&d);
    prune_plan_free(p);
    block_set_free(&bs);
    check_numerics(&b, "expand dw", 0.3);
    check_numerics(&b, "expand dw", 0.8);
    graph_free(&b.g);
}

static void test_concat(void)
{
    /* two branches joined by a Concat, then a conv reading both */
    builder b;
    b_init(&b, "concat", 4, 5);
    int a1 = b_unary(&b, "ra", "Relu", b_conv(&b, "a", b.x, 4, 6, 3, 1, false));
    int b1 = b_unary(&b, "rb", "Relu", b_conv(&b, "b", b.x, 4, 10, 1, 1, false));
    attr_list at = {0, NULL};
    CHECK_OK(attr_add_int(&at, "axis", 1));
    int in[2] = {a1, b1};
    int cat = b_node(&b, "cat", "Concat", in, 2, &at);
    b_finish(&b, b_conv(&b, "c", cat, 16, 5, 1, 1, false));
    prune_plan *p;
    block_set bs;
    descendant d = one_descendant(&b.g, 0.5, &p, &bs);
    check_weight(&b.g, &d, "a", 3, 4, 1);
    check_weight(&b.g, &d, "b", 5, 4, 1);
    check_weight(&b.g, &d, "c", 5, 8, 1);
    for (int c = 0; c < d.n_convs; c++)
        if (strcmp(d.convs[c].name, "c") == 0) {
            const prune_conv *pc = &d.convs[c];
            CHECK(pc->n_kept_in == 8);
            for (int64_t j = 0; j < pc->n_kept_in; j++)
                CHECK(j < 3 ? pc->kept_in[j] < 6 : pc->kept_in[j] >= 6);
        }
    descendant_free(&d);
    prune_plan_free(p);
    block_set_free(&bs);
    check_numerics(&b, "a b", 0.5);
    graph_free(&b.g);
}

static void test_se_gate(void)
{
    /* c1 -> relu -> c2 = y; gate = sigmoid(fc2(relu(fc1(gap(y))))); y * gate
     * -> c3: c2's space takes in fc2's output, fc1 reads it, fc1's own
     * space is thinned too */
    builder b;
    b_init(&b, "se", 4, 6);
    int y = b_conv(&b, "c2", b_unary(&b, "r1", "Relu", b_conv(&b, "c1", b.x, 4, 8, 3, 1, false)), 8, 8, 3, 1, false);
    int gp = b_unary(&b, "gap", "GlobalAveragePool", y);
    int h = b_unary(&b, "r2", "Relu", b_conv(&b, "fc1", gp, 8, 4, 1, 1, false));
    int gate = b_unary(&b, "sig", "Sigmoid", b_conv(&b, "fc2", h, 4, 8, 1, 1, false));
    int m = b_binary(&b, "mul", "Mul", y, gate);
    b_finish(&b, b_conv(&b, "c3", m, 8, 4, 1, 1, false));
    prune_plan *p;
    block_set bs;
    descendant d = one_descendant(&b.g, 0.5, &p, &bs);
    check_weight(&b.g, &d, "c2", 4, 4, 1);
    check_weight(&b.g, &d, "fc1", 2, 4, 1);
    check_weight(&b.g, &d, "fc2", 4, 2, 1);
    check_weight(&b.g, &d, "c3", 4, 4, 1);
    /* one selection for c2 and fc2, ranked by both filters' L1 norms */
    const prune_conv *c2 = NULL, *fc2 = NULL;
    for (int c = 0; c < d.n_convs; c++) {
        if (strcmp(d.convs[c].name, "c2") == 0)
            c2 = &d.convs[c];
        if (strcmp(d.convs[c].name, "fc2") == 0)
            fc2 = &d.convs[c];
    }
    CHECK(c2 && fc2);
    if (c2 && fc2) {
        CHECK(memcmp(c2->kept_out, fc2->kept_out, sizeof(int64_t) * 4) == 0);
        const lego_tensor *w2 = &b.g.values[b.g.nodes[c2->node].in[1]].t, *wf = &b.g.values[b.g.nodes[fc2->node].in[1]].t;
        double score[8];
        for (int o = 0; o < 8; o++) {
            score[o] = 0;
            for (int j = 0; j < 72; j++)
                score[o] += fabs(((const float *)w2->data)[o * 72 + j]);
            for (int j = 0; j < 4; j++)
                score[o] += fabs(((const float *)wf->data)[o * 4 + j]);
        }
        for (int j = 0; j < 4; j++) {
            int o = (int)c2->kept_out[j], beaten = 0;
            for (int q = 0; q < 8; q++)
                beaten += score[q] > score[o];
            CHECK(beaten < 4);
        }
    }
    descendant_free(&d);
    prune_plan_free(p);
    block_set_free(&bs);
    check_numerics(&b, "c1 c2 fc1 fc2", 0.5);
    graph_free(&b.g);
}

static void test_residual_and_constant(void)
{
    /* c1 -> relu = r; c2(r) + r -> add a [C,1,1] constant -> c3 (exit): the
     * residual Add ties c1 and c2, which are thinned together; the constant
     * is sliced with them */
    builder b;
    b_init(&b, "residual", 4, 5);
    int r = b_unary(&b, "r1", "Relu", b_conv(&b, "c1", b.x, 4, 6, 3, 1, false));
    int s = b_binary(&b, "add", "Add", b_conv(&b, "c2", r, 6, 6, 3, 1, false), r);
    int64_t cd[3] = {6, 1, 1};
    int k = b_const(&b, "shift", 3, cd, false);
    int t = b_unary(&b, "r2", "Relu", b_binary(&b, "add2", "Add", s, k));
    b_finish(&b, b_conv(&b, "c3", t, 6, 4, 1, 1, false));
    /* zero shift, so a removed channel stays zero in the zeroed teacher */
    memset(b.g.values[k].t.data, 0, sizeof(float) * 6);
    prune_plan *p;
    block_set bs;
    descendant d = one_descendant(&b.g, 0.5, &p, &bs);
    check_weight(&b.g, &d, "c1", 3, 4, 1);
    check_weight(&b.g, &d, "c2", 3, 3, 1);
    check_weight(&b.g, &d, "c3", 4, 3, 1);
    int sv = graph_find_value(&d.g, "shift");
    CHECK(sv >= 0 && d.g.values[sv].t.dims[0] == 3);
    descendant_free(&d);
    prune_plan_free(p);
    block_set_free(&bs);
    check_numerics(&b, "c1 c2", 0.5);
    graph_free(&b.g);
}

static void test_conv_transpose(void)
{
    /* ConvTranspose 4 -> 8 in 2 groups -> relu -> ConvTranspose 8 -> 4 */
    builder b;
    b_init(&b, "convtranspose", 4, 5);
    int v = b_unary(&b, "r1", "Relu", b_conv(&b, "t1", b.x, 4, 8, 3, 2, true));
    b_finish(&b, b_conv(&b, "t2", v, 8, 4, 3, 1, true));
    prune_plan *p;
    block_set bs;
    descendant d = one_descendant(&b.g, 0.5, &p, &bs);
    /* t1: weight [C_in, C_out/group]: 4 per group, keep 2 per group */
    check_weight(&b.g, &d, "t1", 4, 2, 2);
    check_weight(&b.g, &d, "t2", 4, 4, 1);
    descendant_free(&d);
    prune_plan_free(p);
    block_set_free(&bs);
    check_numerics(&b, "t1", 0.5);
    check_numerics(&b, "t1", 0.8);
    graph_free(&b.g);
}

static void test_opaque(void)
{
    /* a Transpose (NCHW -> NCWH and back) reads c1's space: nothing the
     * analysis cannot carry is cut; c2's space is still thinned */
    builder b;
    b_init(&b, "opaque", 4, 5);
    int v = b_unary(&b, "r1", "Relu", b_conv(&b, "c1", b.x, 4, 6, 3, 1, false));
    attr_list perm = {0, NULL};
    int64_t pm[4] = {0, 1, 3, 2};
    CHECK_OK(attr_add_ints(&perm, "perm", pm, 4));
    v = b_node(&b, "tr", "Transpose", &v, 1, &perm);
    v = b_unary(&b, "r2", "Relu", b_conv(&b, "c2", v, 6, 6, 3, 1, false));
    b_finish(&b, b_conv(&b, "c3", v, 6, 4, 1, 1, false));
    check_numerics(&b, "c2", 0.5);
    prune_plan *p;
    block_set bs;
    descendant d = one_descendant(&b.g, 0.5, &p, &bs);
    check_weight(&b.g, &d, "c1", 6, 4, 1);
    check_weight(&b.g, &d, "c2", 3, 6, 1);
    descendant_free(&d);
    prune_plan_free(p);
    block_set_free(&bs);
    graph_free(&b.g);
}

/* ---- ResNet18 at the paper's width ------------------------------------------------------ */

static void test_resnet18_width64(void)
{
    lego_graph g;
    CHECK_OK(zoo_resnet18(64, 100, 3, 32, 32, 1, &g));
    block_set bs;
    CHECK_OK(blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs));
    CHECK(bs.n_blocks == 8);
    prune_plan *p;
    CHECK_OK(prune_analyze(&g, &bs.blocks[0], &p));
    descendant d;
    CHECK_OK(prune_descendant(p, 0.8, NULL, &d));
    /* block 0 at s = 0.8: conv1 keeps 64 - 51 = 13 filters; conv1 and conv2
     * 13 x 64 x 9 each, bn1 4 x 13, bn2 and the stem BN 4 x 64: 15,540 of
     * 74,496 (the original's 15,258 of 74,112 counts 2 BN vectors, not 4) */
    CHECK(d.params == 2 * 13 * 64 * 9 + 4 * 13 + 2 * 4 * 64);
    CHECK(bs.blocks[0].params == 74496);
    descendant_free(&d);
    prune_plan_free(p);
    block_set_free(&bs);
    graph_free(&g);
}

int main(void)
{
    test_families();
    test_l1_by_hand();
    test_ties();
    test_grouped();
    test_depthwise();
    test_concat();
    test_se_gate();
    test_residual_and_constant();
    test_conv_transpose();
    test_opaque();
    test_resnet18_width64();
    return harness_finish();
}
