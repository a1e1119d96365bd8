/* optimizer.c - the exact scaling optimizer: dominance pruning, a branch and
 * bound with LP-relaxation bounds precomputed per suffix of the block order,
 * the closest composition for infeasible budgets, and Pareto frontiers.
 * optimizer.h describes the problem, the method and the tie rules. */
#include "optimizer.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* An option kept after dominance pruning, in search order. */
typedef struct opt {
    double a, l;
    int64_t m;
    int orig; /* index in the caller's option list */
} opt;

/* The LP value function of every suffix d..B-1 of the search order, for one
 * objective y and one resource x among (loss, latency, memory):
 * F_d(c) = least fractional y of those blocks with sum x <= c. Starting from
 * each block's least-y option (value start_val[d], usage start_cap[d]), the
 * resource is given back along segments of increasing slope (y per unit of
 * x). Segment k of suffix d ends at cumulative reduction R[k] and cumulative
 * increase V[k] and has slope S[k]; W[k] is the cumulative change of a third
 * quantity (the other resource) along the way, from start_oth[d]. tol_val
 * and tol_x are the rounding margins of a value and of the resource axis.
 * When the tables of all B suffixes would be too large (they grow as B^2),
 * only every stride-th suffix is kept; a suffix in between is bounded by the
 * per-block minima of its first blocks (mo, mr: suffix sums of the least
 * objective and the least resource of each block) plus the next kept one. */
typedef struct lp_tab {
    bool on;
    int B, stride;
    double *mo, *mr;                           /* [B+1] */
    double *start_val, *start_cap, *start_oth; /* [B+1] */
    int64_t *off;                  /* [B+1] */
    int *n;                        /* [B+1] */
    double *R, *V, *S, *W;
    double tol_val, tol_x;
} lp_tab;

typedef struct child {
    double lb;
    int k;
} child;

typedef struct seg seg;
typedef struct pt pt;
typedef struct jseg jseg;

struct scale_prepared {
    int B, maxk;
    int *order;    /* depth -> block */
    int *depth_of; /* block -> depth */
    int *nk, *off; /* options kept per depth, their offset in opts */
    opt *opts;
    double L0;
    int64_t M0;
    double *sufA, *sufL; /* [B+1] sums of per-block minima over depths >= d */
    int64_t *sufM;
    double gridA, gridL; /* common binary grid of the values, 0 if none */
    double tolA, tolL;   /* rounding margins of sums of losses and latencies */
    /* loss given latency, loss given memory; for ties: latency given loss,
     * memory given loss */
    lp_tab lat, mem, latA, memA;
    /* per decision, when both budgets bind: loss + mu * memory given latency */
    lp_tab joint;
    int *ordq[3];         /* per depth, kept options by ascending loss, latency, memory */
    double Sa, Sm;        /* sums of per-block largest |loss| and memory */
    double Lblk, Mblk;    /* sums of per-block largest latency and memory */
    double mu_scale;      /* loss per byte: total loss range / total memory range */
    int64_t ntot;         /* kept options in all */
    /* scratch of one search */
    int *cur, *best; /* [B] kept option per depth */
    child *kids;     /* [B * maxk] */
    double *sufW;    /* [3 * (B+1)] for the ratio search */
    seg *segA, *segB, *segC; /* [ntot + 1] table building */
    jseg *jseg;              /* [ntot + 1] joint multiplier search */
    pt *hull;                /* [maxk] */
};

/* ---- validation ----------------------------------------------------------- */

static lego_status check_problem(const scale_problem *p)
{
    if (!p)
        return lego_error(LEGO_ERR_ARG, "scaling problem: NULL problem");
    if (p->n_blocks < 1 || p->n_blocks > SCALE_MAX_BLOCKS)
        return lego_error(LEGO_ERR_ARG, "scaling problem: %d blocks (want 1..%d)", p->n_blocks,
                          SCALE_MAX_BLOCKS);
    if (!p->n_options || !p->acc_loss || !p->latency || !p->memory)
        return lego_error(LEGO_ERR_ARG, "scaling problem: NULL option arrays");
    if (!isfinite(p->base_latency) || p->base_latency < 0)
        return lego_error(LEGO_ERR_ARG, "scaling problem: base latency %g is not a finite value >= 0",
                          p->base_latency);
    if (p->base_memory < 0)
        return lego_error(LEGO_ERR_ARG, "scaling problem: base memory %lld is negative",
                          (long long)p->base_memory);
    double suml = p->base_latency, suma = 0;
    int64_t summ = p->base_memory;
    for (int b = 0; b < p->n_blocks; b++) {
        int S = p->n_options[b];
        if (S < 1 || S > SCALE_MAX_OPTIONS)
            return lego_error(LEGO_ERR_ARG, "scaling problem: block %d has %d options (want 1..%d)", b,
                              S, SCALE_MAX_OPTIONS);
        if (!p->acc_loss[b] || !p->latency[b] || !p->memory[b])
            return lego_error(LEGO_ERR_ARG, "scaling problem: block %d: NULL option array", b);
        double maxl = 0, maxa = 0;
        int64_t maxm = 0;
        for (int s = 0; s < S; s++) {
            double a = p->acc_loss[b][s], l = p->latency[b][s];
            int64_t m = p->memory[b][s];
            if (!isfinite(a))
                return lego_error(LEGO_ERR_ARG, "scaling problem: block %d option %d: accuracy loss %g is not finite",
                                  b, s, a);
            if (!isfinite(l) || l < 0)
                return lego_error(LEGO_ERR_ARG,
                                  "scaling problem: block %d option %d: latency %g is not a finite value >= 0", b,
                                  s, l);
            if (m < 0)
                return lego_error(LEGO_ERR_ARG, "scaling problem: block %d option %d: memory %lld is negative",
                                  b, s, (long long)m);
            if (l > maxl)
                maxl = l;
            if (fabs(a) > maxa)
                maxa = fabs(a);
            if (m > maxm)
                maxm = m;
        }
        suml += maxl;
        suma += maxa;
        if (summ > INT64_MAX - maxm)
            return lego_error(LEGO_ERR_ARG, "scaling problem: block %d: total memory overflows int64", b);
        summ += maxm;
    }
    if (!isfinite(suml) || suml > DBL_MAX / 4)
        return lego_error(LEGO_ERR_ARG, "scaling problem: total latency %g is too large", suml);
    if (!isfinite(suma) || suma > DBL_MAX / 4)
        return lego_error(LEGO_ERR_ARG, "scaling problem: total accuracy loss %g is too large", suma);
    return lego_ok();
}

static lego_status check_budgets(double T, int64_t M)
{
    if (!isfinite(T) || !(T > 0))
        return lego_error(LEGO_ERR_ARG, "latency budget %g must be a finite value > 0 (DBL_MAX for none)", T);
    if (M <= 0)
        return lego_error(LEGO_ERR_ARG, "memory budget %lld must be > 0 bytes (INT64_MAX for none)",
                          (long long)M);
    return lego_ok();
}

/* The finest binary grid 2^-k (k = 0..60) on which all n values lie with
 * every possible sum exact in a double (sum of |values| below 2^52 grid
 * steps), or 0 when there is none. On a grid, sums are exact in any order. */
static double find_grid(const double *const *vals, const int *n, int B, const double *extra,
                        double abs_total)
{
    for (int k = 0; k <= 60; k++) {
        double scale = ldexp(1.0, k);
        if (abs_total * scale >= ldexp(1.0, 52))
            return 0;
        bool ok = !extra || floor(*extra * scale) == *extra * scale;
        for (int b = 0; ok && b < B; b++)
            for (int s = 0; ok && s < n[b]; s++)
                ok = floor(vals[b][s] * scale) == vals[b][s] * scale;
        if (ok)
            return ldexp(1.0, -k);
    }
    return 0;
}

/* ---- dominance pruning ------------------------------------------------------ */

static int cmp_opt_alm(const void *x, const void *y)
{
    const opt *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    if (p->l != q->l)
        return p->l < q->l ? -1 : 1;
    if (p->m != q->m)
        return p->m < q->m ? -1 : 1;
    return (p->orig > q->orig) - (p->orig < q->orig);
}

/* y dominates x and can never lose a tie to it (see optimizer.h). */
static bool dominates(const scale_prepared *P, const opt *y, const opt *x)
{
    if (y->a > x->a || y->l > x->l || y->m > x->m)
        return false;
    if (y->orig < x->orig || y->m < x->m)
        return true;
    return (P->gridA > 0 && y->a < x->a) || (P->gridL > 0 && y->l < x->l);
}

/* ---- LP tables --------------------------------------------------------------- */

enum { Q_A, Q_L, Q_M };

static inline double qval(const opt *o, int q)
{
    return q == Q_A ? o->a : q == Q_L ? o->l : (double)o->m;
}

struct seg {
    double dx, da, s, dw;
};

/* A hull point: resource x, objective y, memory m, for the joint bound. */
struct pt {
    double x, y, w; /* resource, objective, other quantity */
};

/* A hull segment with its memory change, for the joint multiplier search. */
struct jseg {
    double dx, dy, dm, s;
};

/* A sort record: an index with its key (qsort has no context argument). */
typedef struct keyed {
    double key;
    int k;
} keyed;

static int cmp_keyed(const void *x, const void *y)
{
    const keyed *p = x, *q = y;
    if (p->key != q->key)
        return p->key < q->key ? -1 : 1;
    return (p->k > q->k) - (p->k < q->k);
}

/* One block's lower convex hull of (x, y) with x = quantity res and
 * y = quantity obj + mu * memory, over its options o[ord[0..n-1]] given in
 * ascending x; w carries quantity oth along. Leaves the hull in h (ascending
 * x, descending y; the last point has the least y) and returns its size. */
static int block_hull(const opt *o, const int *ord, int n, int obj, int res, int oth, double mu, pt *h)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        const opt *p = &o[ord[i]];
        pt q = {qval(p, res), qval(p, obj) + (mu != 0 ? mu * (double)p->m : 0), qval(p, oth)};
        if (k > 0 && q.x == h[k - 1].x) { /* same x: keep the lower y */
            if (q.y < h[k - 1].y)
                h[k - 1] = q;
            continue;
        }
        if (k == 0 || q.y < h[k - 1].y)
            h[k++] = q;
    }
    /* the staircase is now strictly falling; keep its lower convex hull */
    int t = 0;
    for (int i = 0; i < k; i++) {
        while (t >= 2) {
            pt o0 = h[t - 2], o1 = h[t - 1], p = h[i];
            double cross = (o1.x - o0.x) * (p.y - o0.y) - (o1.y - o0.y) * (p.x - o0.x);
            if (cross > 0)
                break;
            t--;
        }
        h[t++] = h[i];
    }
    return t;
}

/* Segments of a hull from its least-y point towards less x, in order of
 * increasing slope (they are, by convexity; sorted again against rounding). */
static int hull_segments(const pt *h, int t, seg *out)
{
    int ns = 0;
    for (int i = t - 1; i >= 1; i--) {
        seg sg = {h[i].x - h[i - 1].x, h[i - 1].y - h[i].y, 0, h[i - 1].w - h[i].w};
        if (!(sg.dx > 0))
            continue;
        sg.s = sg.da / sg.dx;
        out[ns++] = sg;
    }
    for (int i = 1; i < ns; i++) { /* insertion sort: already in order */
        seg v = out[i];
        int j = i;
        while (j > 0 && out[j - 1].s > v.s) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = v;
    }
    return ns;
}


/* Entries of the tables of every stride-th suffix (an upper bound). */
static int64_t lp_entries(const scale_prepared *P, int stride)
{
    int64_t entries = 0, suffix = 0;
    for (int d = P->B - 1; d >= 0; d--) {
        suffix += P->nk[d] - 1;
        if (d % stride == 0)
            entries += suffix;
    }
    return entries;
}

static int cmp_seg(const void *x, const void *y)
{
    const seg *p = x, *q = y;
    return (p->s > q->s) - (p->s < q->s);
}

static lego_status lp_alloc(const scale_prepared *P, int64_t limit, lp_tab *t)
{
    int B = P->B;
    t->B = B;
    t->stride = 1;
    while (t->stride < B && lp_entries(P, t->stride) > limit)
        t->stride++;
    int64_t entries = lp_entries(P, t->stride);
    t->on = entries <= limit;
    t->mo = calloc((size_t)B + 1, sizeof(double));
    t->mr = calloc((size_t)B + 1, sizeof(double));
    t->start_val = calloc((size_t)B + 1, sizeof(double));
    t->start_cap = calloc((size_t)B + 1, sizeof(double));
    t->start_oth = calloc((size_t)B + 1, sizeof(double));
    t->off = calloc((size_t)B + 1, sizeof(int64_t));
    t->n = calloc((size_t)B + 1, sizeof(int));
    if (t->on) {
        t->R = malloc(((size_t)entries + 1) * sizeof(double));
        t->V = malloc(((size_t)entries + 1) * sizeof(double));
        t->S = malloc(((size_t)entries + 1) * sizeof(double));
        t->W = malloc(((size_t)entries + 1) * sizeof(double));
    }
    if (!t->mo || !t->mr || !t->start_val || !t->start_cap || !t->start_oth || !t->off || !t->n ||
        (t->on && (!t->R || !t->V || !t->S || !t->W)))
        return lego_error(LEGO_ERR_NOMEM, "scaling optimizer: out of memory for LP tables");
    return lego_ok();
}

/* Fill the suffix tables of objective obj + mu * memory over resource res,
 * tracking quantity oth. ord lists each depth's kept options in ascending res
 * (offsets as opts); the scratch buffers come from P. No allocation. */
static void lp_fill(scale_prepared *P, int obj, int res, int oth, double mu, const int *ord, lp_tab *t)
{
    int B = P->B;
    /* blk collects the segments of the blocks since the last kept suffix */
    seg *cur = P->segA, *nxt = P->segB, *blk = P->segC;
    int ncur = 0, nb = 0, pending = 0;
    int64_t pos = 0;
    t->start_val[B] = t->start_cap[B] = t->start_oth[B] = t->mo[B] = t->mr[B] = 0;
    t->n[B] = 0;
    t->off[B] = 0;
    for (int d = B - 1; d >= 0; d--) {
        int th = block_hull(&P->opts[P->off[d]], &ord[P->off[d]], P->nk[d], obj, res, oth, mu, P->hull);
        nb += hull_segments(P->hull, th, blk + nb);
        pending++;
        t->start_val[d] = t->start_val[d + 1] + P->hull[th - 1].y;
        t->start_cap[d] = t->start_cap[d + 1] + P->hull[th - 1].x;
        t->start_oth[d] = t->start_oth[d + 1] + P->hull[th - 1].w;
        t->mo[d] = t->mo[d + 1] + P->hull[th - 1].y;
        t->mr[d] = t->mr[d + 1] + P->hull[0].x;
        if (!t->on || d % t->stride != 0)
            continue;
        if (pending > 1) /* one block's segments are already in order */
            qsort(blk, (size_t)nb, sizeof *blk, cmp_seg);
        /* merge the new segments into the suffix's, by slope */
        int i = 0, j = 0, k = 0;
        while (i < nb || j < ncur) {
            if (j >= ncur || (i < nb && blk[i].s <= cur[j].s))
                nxt[k++] = blk[i++];
            else
                nxt[k++] = cur[j++];
        }
        seg *sw = cur;
        cur = nxt;
        nxt = sw;
        ncur = k;
        nb = pending = 0;
        t->n[d] = ncur;
        t->off[d] = pos;
        double R = 0, V = 0, W = 0;
        for (int q = 0; q < ncur; q++) {
            R += cur[q].dx;
            V += cur[q].da;
            W += cur[q].dw;
            t->R[pos + q] = R;
            t->V[pos + q] = V;
            t->S[pos + q] = cur[q].s;
            t->W[pos + q] = W;
        }
        pos += ncur;
    }
}

static void lp_free(lp_tab *t)
{
    free(t->mo);
    free(t->mr);
    free(t->start_val);
    free(t->start_cap);
    free(t->start_oth);
    free(t->off);
    free(t->n);
    free(t->R);
    free(t->V);
    free(t->S);
    free(t->W);
}

#if defined(__GNUC__)
#define HOT_INLINE inline __attribute__((always_inline))
#else
#define HOT_INLINE inline
#endif

/* The first k with R[k] >= r in ascending R[0..n-1], given R[n-1] > r;
 * branch-free (the comparisons are unpredictable). */
static HOT_INLINE int first_at_least(const double *R, int n, double r)
{
    const double *b = R;
    while (n > 1) {
        int half = n >> 1;
        b = b[half - 1] < r ? b + half : b;
        n -= half;
    }
    return (int)(b - R) + (*b < r);
}

/* F_e(c): least fractional loss of the blocks at depths >= e with resource
 * usage at most c. Below the least usage it returns the largest value, which
 * is still a valid bound (the feasibility test prunes those nodes). */
static HOT_INLINE double lp_eval(const lp_tab *t, int e, double c)
{
    double add = 0;
    if (t->stride > 1 && e % t->stride != 0) {
        /* the blocks up to the next kept suffix at their least cost and use */
        int e2 = e + t->stride - e % t->stride;
        e2 = e2 < t->B ? e2 : t->B;
        add = t->mo[e] - t->mo[e2];
        c -= t->mr[e] - t->mr[e2];
        e = e2;
    }
    double r = t->start_cap[e] - c;
    if (!(r > 0))
        return add + t->start_val[e];
    int n = t->n[e];
    if (n == 0)
        return add + t->start_val[e];
    const double *R = t->R + t->off[e], *V = t->V + t->off[e], *S = t->S + t->off[e];
    if (r >= R[n - 1])
        return add + t->start_val[e] + V[n - 1];
    int lo = first_at_least(R, n, r);
    double r0 = lo ? R[lo - 1] : 0, v0 = lo ? V[lo - 1] : 0;
    double v = r > r0 ? v0 + (r - r0) * S[lo] : v0;
    if (v > V[lo])
        v = V[lo];
    return add + t->start_val[e] + v;
}

/* The other quantity used by the LP solution behind F_e(c) (e.g. the memory
 * of the least-loss fractional composition within latency c). */
static double lp_other(const lp_tab *t, int e, double c)
{
    double r = t->start_cap[e] - c;
    int n = t->n[e];
    if (!(r > 0) || n == 0)
        return t->start_oth[e];
    const double *R = t->R + t->off[e], *W = t->W + t->off[e];
    if (r >= R[n - 1])
        return t->start_oth[e] + W[n - 1];
    int lo = first_at_least(R, n, r);
    double r0 = lo ? R[lo - 1] : 0, w0 = lo ? W[lo - 1] : 0;
    return t->start_oth[e] + w0 + (r - r0) / (R[lo] - r0) * (W[lo] - w0);
}

/* ---- prepare ------------------------------------------------------------------- */

typedef struct blk_key {
    double range;
    int b;
} blk_key;

static int cmp_blk(const void *x, const void *y)
{
    const blk_key *p = x, *q = y;
    if (p->range != q->range)
        return p->range > q->range ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

void scale_prepared_free(scale_prepared *P)
{
    if (!P)
        return;
    free(P->order);
    free(P->depth_of);
    free(P->nk);
    free(P->off);
    free(P->opts);
    free(P->sufA);
    free(P->sufL);
    free(P->sufM);
    lp_free(&P->lat);
    lp_free(&P->mem);
    lp_free(&P->latA);
    lp_free(&P->memA);
    lp_free(&P->joint);
    for (int q = 0; q < 3; q++)
        free(P->ordq[q]);
    free(P->segA);
    free(P->segB);
    free(P->segC);
    free(P->jseg);
    free(P->hull);
    free(P->cur);
    free(P->best);
    free(P->kids);
    free(P->sufW);
    free(P);
}

int scale_prepared_kept(const scale_prepared *P, int block)
{
    if (!P || block < 0 || block >= P->B)
        return 0;
    return P->nk[P->depth_of[block]];
}

lego_status scale_prepare(const scale_problem *p, scale_prepared **out)
{
    return scale_prepare_limited(p, SCALE_TABLE_ENTRIES, out);
}

lego_status scale_prepare_limited(const scale_problem *p, int64_t max_table_entries, scale_prepared **out)
{
    if (!out)
        return lego_error(LEGO_ERR_ARG, "scale_prepare: NULL output");
    *out = NULL;
    if (max_table_entries < 0)
        return lego_error(LEGO_ERR_ARG, "scale_prepare: table limit %lld is negative",
                          (long long)max_table_entries);
    LEGO_TRY(check_problem(p));
    int B = p->n_blocks;
    scale_prepared *P = calloc(1, sizeof *P);
    if (!P)
        return lego_error(LEGO_ERR_NOMEM, "scaling optimizer: out of memory");
    P->B = B;
    P->L0 = p->base_latency;
    P->M0 = p->base_memory;
    int64_t total = 0;
    int maxk = 1;
    double Sa = 0, Sl = p->base_latency, Sm = (double)p->base_memory;
    for (int b = 0; b < B; b++) {
        total += p->n_options[b];
        if (p->n_options[b] > maxk)
            maxk = p->n_options[b];
        double ma = 0, ml = 0;
        int64_t mm = 0;
        for (int s = 0; s < p->n_options[b]; s++) {
            ma = fmax(ma, fabs(p->acc_loss[b][s]));
            ml = fmax(ml, p->latency[b][s]);
            mm = p->memory[b][s] > mm ? p->memory[b][s] : mm;
        }
        Sa += ma;
        Sl += ml;
        Sm += (double)mm;
    }
    P->maxk = maxk;
    P->order = malloc((size_t)B * sizeof(int));
    P->depth_of = malloc((size_t)B * sizeof(int));
    P->nk = malloc((size_t)B * sizeof(int));
    P->off = malloc((size_t)B * sizeof(int));
    P->opts = malloc((size_t)total * sizeof(opt));
    P->sufA = calloc((size_t)B + 1, sizeof(double));
    P->sufL = calloc((size_t)B + 1, sizeof(double));
    P->sufM = calloc((size_t)B + 1, sizeof(int64_t));
    P->cur = calloc((size_t)B, sizeof(int));
    P->best = calloc((size_t)B, sizeof(int));
    P->kids = malloc((size_t)B * (size_t)maxk * sizeof(child));
    P->sufW = calloc(3 * ((size_t)B + 1), sizeof(double));
    opt *tmp = malloc((size_t)maxk * sizeof(opt));
    blk_key *keys = malloc((size_t)B * sizeof(blk_key));
    int *kept_n = malloc((size_t)B * sizeof(int));
    opt *kept = malloc((size_t)total * sizeof(opt));
    int *kept_off = malloc((size_t)B * sizeof(int));
    lego_status st = lego_ok();
    if (!P->order || !P->depth_of || !P->nk || !P->off || !P->opts || !P->sufA || !P->sufL ||
        !P->sufM || !P->cur || !P->best || !P->kids || !P->sufW || !tmp || !keys || !kept_n ||
        !kept || !kept_off) {
        st = lego_error(LEGO_ERR_NOMEM, "scaling optimizer: out of memory");
        goto done;
    }
    P->gridA = find_grid(p->acc_loss, p->n_options, B, NULL, Sa);
    P->gridL = find_grid(p->latency, p->n_options, B, &p->base_latency, Sl);

    /* dominance pruning, block by block (in the caller's order) */
    int pos = 0;
    for (int b = 0; b < B; b++) {
        int S = p->n_options[b];
        for (int s = 0; s < S; s++)
            tmp[s] = (opt){p->acc_loss[b][s], p->latency[b][s], p->memory[b][s], s};
        qsort(tmp, (size_t)S, sizeof *tmp, cmp_opt_alm);
        /* a dominator sorts before what it dominates; safe dominance is
         * transitive, so comparing with kept options is enough */
        kept_off[b] = pos;
        int n = 0;
        for (int s = 0; s < S; s++) {
            bool drop = false;
            for (int q = 0; q < n && !drop; q++)
                drop = dominates(P, &kept[pos + q], &tmp[s]);
            if (!drop)
                kept[pos + n++] = tmp[s];
        }
        kept_n[b] = n;
        pos += n;
        double lo = kept[kept_off[b]].l, hi = lo;
        for (int q = 0; q < n; q++) {
            lo = fmin(lo, kept[kept_off[b] + q].l);
            hi = fmax(hi, kept[kept_off[b] + q].l);
        }
        keys[b] = (blk_key){hi - lo, b};
    }
    /* search order: largest latency range first (measured best of the loss,
     * latency, memory and combined ranges on bench_optimizer's instances) */
    qsort(keys, (size_t)B, sizeof *keys, cmp_blk);
    pos = 0;
    for (int d = 0; d < B; d++) {
        int b = keys[d].b;
        P->order[d] = b;
        P->depth_of[b] = d;
        P->nk[d] = kept_n[b];
        P->off[d] = pos;
        memcpy(&P->opts[pos], &kept[kept_off[b]], (size_t)kept_n[b] * sizeof(opt));
        pos += kept_n[b];
    }
    P->ntot = pos;
    P->Sa = Sa;
    P->Sm = Sm;
    for (int q = 0; q < 3; q++) {
        P->ordq[q] = malloc((size_t)pos * sizeof(int));
        keyed *rec = malloc((size_t)maxk * sizeof *rec);
        if (!P->ordq[q] || !rec) {
            free(rec);
            st = lego_error(LEGO_ERR_NOMEM, "scaling optimizer: out of memory");
            goto done;
        }
        for (int d = 0; d < B; d++) {
            for (int k = 0; k < P->nk[d]; k++)
                rec[k] = (keyed){qval(&P->opts[P->off[d] + k], q), k};
            qsort(rec, (size_t)P->nk[d], sizeof *rec, cmp_keyed);
            for (int k = 0; k < P->nk[d]; k++)
                P->ordq[q][P->off[d] + k] = rec[k].k;
        }
        free(rec);
    }
    P->segA = malloc(((size_t)pos + 1) * sizeof(seg));
    P->segB = malloc(((size_t)pos + 1) * sizeof(seg));
    P->segC = malloc(((size_t)pos + 1) * sizeof(seg));
    P->jseg = malloc(((size_t)pos + 1) * sizeof(jseg));
    P->hull = malloc((size_t)maxk * sizeof(pt));
    if (!P->segA || !P->segB || !P->segC || !P->jseg || !P->hull) {
        st = lego_error(LEGO_ERR_NOMEM, "scaling optimizer: out of memory");
        goto done;
    }
    {
        double ra = 0, rm = 0;
        P->Lblk = P->Mblk = 0;
        for (int d = 0; d < B; d++) {
            const opt *o = &P->opts[P->off[d]];
            double lo_a = o[0].a, hi_a = o[0].a, hi_l = o[0].l;
            int64_t lo_m = o[0].m, hi_m = o[0].m;
            for (int k = 1; k < P->nk[d]; k++) {
                lo_a = fmin(lo_a, o[k].a), hi_a = fmax(hi_a, o[k].a), hi_l = fmax(hi_l, o[k].l);
                lo_m = o[k].m < lo_m ? o[k].m : lo_m;
                hi_m = o[k].m > hi_m ? o[k].m : hi_m;
            }
            ra += hi_a - lo_a;
            rm += (double)(hi_m - lo_m);
            P->Lblk += hi_l;
            P->Mblk += (double)hi_m;
        }
        P->mu_scale = rm > 0 && ra > 0 ? ra / rm : 0;
    }
    for (int d = B - 1; d >= 0; d--) {
        const opt *o = &P->opts[P->off[d]];
        double ma = o[0].a, ml = o[0].l;
        int64_t mm = o[0].m;
        for (int k = 1; k < P->nk[d]; k++) {
            ma = fmin(ma, o[k].a);
            ml = fmin(ml, o[k].l);
            mm = o[k].m < mm ? o[k].m : mm;
        }
        P->sufA[d] = P->sufA[d + 1] + ma;
        P->sufL[d] = P->sufL[d + 1] + ml;
        P->sufM[d] = P->sufM[d + 1] + mm;
    }
    {
        /* Rounding margins. A sum of n terms in any order is within
         * n*eps/2*sum|terms| of the exact sum; two such sums are compared. */
        double eps = DBL_EPSILON, scale[3] = {Sa, Sl, Sm};
        P->tolA = P->gridA > 0 ? 0 : 4.0 * (B + 8) * eps * Sa;
        P->tolL = P->gridL > 0 ? 0 : 4.0 * (B + 8) * eps * Sl;
        lp_tab *tabs[5] = {&P->lat, &P->mem, &P->latA, &P->memA, &P->joint};
        int objs[4] = {Q_A, Q_A, Q_L, Q_M}, ress[4] = {Q_L, Q_M, Q_A, Q_A}, oths[4] = {Q_M, Q_L, Q_M, Q_L};
        for (int i = 0; i < 5 && st.code == LEGO_OK; i++)
            st = lp_alloc(P, max_table_entries, tabs[i]);
        if (st.code != LEGO_OK)
            goto done;
        /* a table has at most ntot segments; a value sums at most that many
         * differences and B starts */
        double n = (double)P->ntot + B + 8;
        for (int i = 0; i < 4; i++) {
            lp_fill(P, objs[i], ress[i], oths[i], 0, P->ordq[ress[i]], tabs[i]);
            tabs[i]->tol_val = 16.0 * n * eps * scale[objs[i]] + (objs[i] == Q_M ? 2 : 0);
            tabs[i]->tol_x = 8.0 * n * eps * scale[ress[i]] + (ress[i] == Q_M ? 2 : 0);
        }
        P->joint.tol_x = P->lat.tol_x;
    }
done:
    free(tmp);
    free(keys);
    free(kept_n);
    free(kept);
    free(kept_off);
    if (st.code != LEGO_OK) {
        scale_prepared_free(P);
        return st;
    }
    *out = P;
    return lego_ok();
}

/* ---- branch and bound ---------------------------------------------------------- */

enum { MODE_BUDGET, MODE_RATIO };

typedef struct search {
    scale_prepared *P;
    int mode;
    bool mem_first; /* ties: memory before latency (the memory frontier) */
    double T;       /* the budgets the leaves are checked against */
    int64_t M;
    double z;       /* MODE_RATIO: leaves need latency/T <= z and memory/M <= z */
    double Tcap;    /* upper bounds on any acceptable leaf's latency, memory */
    int64_t Mcap;
    double shiftL, shiftM;
    bool joint;       /* the joint bound is on, with multiplier mu */
    double mu, tolJ;
    bool have;
    double bA, bL;
    int64_t bM;
    int64_t nodes;
} search;

/* Take segments in order of increasing slope until their reductions add up
 * to r (the last one in part), adding their objective and other-quantity
 * changes to *val and *oth: the greedy LP solution, by a weighted quickselect
 * (expected linear time; a is reordered). False when they add up to less. */
static bool take_cheapest(jseg *a, int n, double r, double *val, double *oth)
{
    int lo = 0, hi = n;
    while (hi - lo > 8) {
        double x = a[lo].s, y = a[(lo + hi) / 2].s, z = a[hi - 1].s;
        double p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        /* three-way partition: [lo, lt) < p, [lt, i) == p, [gt, hi) > p */
        int lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (a[i].s < p) {
                jseg t = a[lt];
                a[lt++] = a[i];
                a[i++] = t;
            } else if (a[i].s > p) {
                jseg t = a[--gt];
                a[gt] = a[i];
                a[i] = t;
            } else {
                i++;
            }
        }
        double dx = 0, dy = 0, dw = 0;
        for (int k = lo; k < lt; k++)
            dx += a[k].dx, dy += a[k].dy, dw += a[k].dm;
        if (dx >= r) {
            hi = lt;
            continue;
        }
        r -= dx, *val += dy, *oth += dw;
        dx = dy = dw = 0;
        for (int k = lt; k < gt; k++)
            dx += a[k].dx, dy += a[k].dy, dw += a[k].dm;
        if (dx >= r) { /* equal slopes: any mix gives the same value */
            double f = r / dx;
            *val += f * dy, *oth += f * dw;
            return true;
        }
        r -= dx, *val += dy, *oth += dw;
        lo = gt;
    }
    for (int i = lo + 1; i < hi; i++) {
        jseg v = a[i];
        int j = i;
        while (j > lo && a[j - 1].s > v.s) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
    for (int i = lo; i < hi; i++) {
        if (a[i].dx >= r) {
            double f = r / a[i].dx;
            *val += f * a[i].dy, *oth += f * a[i].dm;
            return true;
        }
        r -= a[i].dx, *val += a[i].dy, *oth += a[i].dm;
    }
    return !(r > 0);
}

/* The LP relaxation of the whole problem with objective loss + mu * memory
 * under latency <= Tr (the blocks' share of the budget). phi = its value less
 * mu * Mr is a lower bound on the loss of every composition within both
 * budgets, for any mu >= 0; g = its memory less Mr is a supergradient of phi
 * in mu; *slack says the latency constraint is not binding. False when even
 * the LP cannot meet Tr. */
static bool joint_eval(scale_prepared *P, double mu, double Tr, double Mr, double *phi, double *g,
                       bool *slack)
{
    int ns = 0;
    double cap = 0, val = 0, mem = 0;
    for (int d = 0; d < P->B; d++) {
        int th = block_hull(&P->opts[P->off[d]], &P->ordq[Q_L][P->off[d]], P->nk[d], Q_A, Q_L, Q_M, mu,
                            P->hull);
        const pt *h = P->hull;
        cap += h[th - 1].x;
        val += h[th - 1].y;
        mem += h[th - 1].w;
        for (int i = th - 1; i >= 1; i--) {
            jseg sg = {h[i].x - h[i - 1].x, h[i - 1].y - h[i].y, h[i - 1].w - h[i].w, 0};
            if (!(sg.dx > 0))
                continue;
            sg.s = sg.dy / sg.dx;
            P->jseg[ns++] = sg;
        }
    }
    double r = cap - Tr;
    *slack = !(r > 0);
    if (r > 0 && !take_cheapest(P->jseg, ns, r, &val, &mem))
        return false;
    *phi = val - mu * Mr;
    *g = mem - Mr;
    return true;
}

/* When both budgets bind, find the memory multiplier mu that maximises the
 * root's Lagrangian bound phi(mu) (then equal to the LP relaxation with both
 * constraints) by cutting planes on the concave piecewise-linear phi, and
 * build the tables of loss + mu * memory over latency for the node bounds
 * A + F_e(T_rem) - mu * M_rem. */
static void joint_setup(search *s)
{
    scale_prepared *P = s->P;
    s->joint = false;
    s->mu = 0;
    if (!P->joint.on || !(P->mu_scale > 0))
        return;
    double Tr = s->Tcap - P->L0, Mr = (double)(s->Mcap - P->M0);
    if (!(Tr > 0) || !(Mr > 0) || Tr >= P->Lblk || Mr >= P->Mblk)
        return; /* a budget that never binds: the single bounds are exact */
    /* If the latency-only LP solution fits the memory budget, or the
     * memory-only one fits the latency budget, the single bounds are already
     * the LP bound with both constraints. */
    if (P->lat.on && P->mem.on &&
        (lp_other(&P->lat, 0, Tr) <= Mr || lp_other(&P->mem, 0, Mr) <= Tr))
        return;
    double mlo = 0, plo, glo, mhi, phi, ghi;
    bool slack;
    if (!joint_eval(P, 0, Tr, Mr, &plo, &glo, &slack) || glo <= 0 || slack)
        return; /* memory is slack in the latency LP (or latency alone fails) */
    mhi = P->mu_scale;
    for (int it = 0;; it++) {
        if (it > 60 || !joint_eval(P, mhi, Tr, Mr, &phi, &ghi, &slack))
            return;
        if (ghi <= 0)
            break;
        mlo = mhi, plo = phi, glo = ghi;
        mhi *= 4;
    }
    double best_mu = plo >= phi ? mlo : mhi, best_phi = plo >= phi ? plo : phi;
    bool best_slack = plo >= phi ? false : slack;
    double phi_hi = phi;
    for (int it = 0; it < 40 && ghi < 0; it++) {
        double mc = (phi_hi - plo + glo * mlo - ghi * mhi) / (glo - ghi);
        if (!(mc > mlo && mc < mhi))
            break;
        double env = plo + glo * (mc - mlo), pc, gc;
        if (!joint_eval(P, mc, Tr, Mr, &pc, &gc, &slack))
            break;
        if (pc > best_phi)
            best_phi = pc, best_mu = mc, best_slack = slack;
        if (pc >= env - 1e-12 * (fabs(env) + P->Sa))
            break; /* on the envelope: optimal */
        if (gc > 0)
            mlo = mc, plo = pc, glo = gc;
        else if (gc < 0)
            mhi = mc, phi_hi = pc, ghi = gc;
        else
            break;
    }
    if (!(best_mu > 0) || best_slack)
        return; /* latency slack at the optimum: the memory table is exact */
    lp_fill(P, Q_A, Q_L, Q_M, best_mu, P->ordq[Q_L], &P->joint);
    s->joint = true;
    s->mu = best_mu;
    double n = (double)P->ntot + P->B + 8;
    s->tolJ = 16.0 * n * DBL_EPSILON * (P->Sa + best_mu * P->Sm) + 8 * DBL_EPSILON * best_mu * (double)s->Mcap;
}

static void search_init(search *s, scale_prepared *P, int mode, bool mem_first, double T, int64_t M,
                        double z)
{
    memset(s, 0, sizeof *s);
    s->P = P;
    s->mode = mode;
    s->mem_first = mem_first;
    s->T = T;
    s->M = M;
    s->z = z;
    if (mode == MODE_BUDGET) {
        s->Tcap = T;
        s->Mcap = M;
    } else {
        double eps = DBL_EPSILON;
        s->Tcap = T * z * (1 + 8 * eps);
        if (!(s->Tcap <= DBL_MAX))
            s->Tcap = DBL_MAX;
        double mc = (double)M * z * (1 + 8 * eps) + 2;
        s->Mcap = mc >= 9.0e18 ? INT64_MAX : (int64_t)ceil(mc);
    }
    s->shiftL = P->lat.tol_x + 4 * DBL_EPSILON * s->Tcap;
    s->shiftM = P->mem.tol_x + 4 * DBL_EPSILON * (double)s->Mcap;
    joint_setup(s);
}

static inline const opt *opt_at(const scale_prepared *P, const int *kidx, int d)
{
    return &P->opts[P->off[d] + kidx[d]];
}

/* Canonical sums: block order, left to right. */
static void canon(const scale_prepared *P, const int *kidx, double *A, double *L, int64_t *M)
{
    double a = 0.0, l = P->L0;
    int64_t m = P->M0;
    for (int b = 0; b < P->B; b++) {
        const opt *o = opt_at(P, kidx, P->depth_of[b]);
        a += o->a;
        l += o->l;
        m += o->m;
    }
    *A = a;
    *L = l;
    *M = m;
}

/* Lexicographic order of two compositions (option indices in block order). */
static int lex_cmp(const scale_prepared *P, const int *x, const int *y)
{
    for (int b = 0; b < P->B; b++) {
        int d = P->depth_of[b];
        int ox = opt_at(P, x, d)->orig, oy = opt_at(P, y, d)->orig;
        if (ox != oy)
            return ox < oy ? -1 : 1;
    }
    return 0;
}

/* Every completion of the current node (depths 0..d fixed in cur) is
 * lexicographically after the incumbent, or is the incumbent. */
static bool lex_after(const scale_prepared *P, int d)
{
    for (int b = 0; b < P->B; b++) {
        int dd = P->depth_of[b];
        if (dd > d)
            return false;
        int oc = opt_at(P, P->cur, dd)->orig, ob = opt_at(P, P->best, dd)->orig;
        if (oc != ob)
            return oc > ob;
    }
    return true;
}

static inline double ceil_grid(double x, double g)
{
    return ceil(x / g) * g;
}

/* A rigorous lower bound on the canonical loss of every completion of a node
 * whose depths < e are fixed with search-order sums A, Lu, Mu. Stops early
 * once the bound exceeds the incumbent's loss (the node is then pruned
 * whatever the rest would add). */
static inline double lb_loss(const search *s, int e, double A, double Lu, int64_t Mu)
{
    const scale_prepared *P = s->P;
    /* lb is the largest bound so far before the common margin tolA (each LP
     * bound has its own margin subtracted already) */
    double lb = A + P->sufA[e], stop = s->have ? s->bA + P->tolA : INFINITY;
    if (s->joint && lb <= stop) {
        double f = A + lp_eval(&P->joint, e, s->Tcap - P->L0 - Lu + s->shiftL) -
                   s->mu * (double)(s->Mcap - P->M0 - Mu) - s->tolJ;
        lb = f > lb ? f : lb;
    }
    if (P->lat.on && lb <= stop) {
        double f = A + lp_eval(&P->lat, e, s->Tcap - P->L0 - Lu + s->shiftL) - P->lat.tol_val;
        lb = f > lb ? f : lb;
    }
    if (P->mem.on && lb <= stop) {
        double f = A + lp_eval(&P->mem, e, (double)(s->Mcap - P->M0 - Mu) + s->shiftM) - P->mem.tol_val;
        lb = f > lb ? f : lb;
    }
    return P->gridA > 0 ? ceil_grid(lb, P->gridA) : lb - P->tolA;
}

/* Rigorous lower bounds on the canonical latency and memory of the
 * completions of a node (depths < e fixed, search-order sums A, Lu, Mu) that
 * tie with the incumbent's loss bA: their remaining blocks may add at most
 * about bA - A of loss, which the latency- and memory-given-loss LP tables
 * turn into a least latency and memory. */
static double tie_lbL(const search *s, int e, double A, double Lu)
{
    const scale_prepared *P = s->P;
    double lb = P->L0 + Lu + P->sufL[e] - P->tolL;
    if (P->latA.on) {
        double alpha = s->bA - A + P->tolA + P->latA.tol_x + 4 * DBL_EPSILON * (fabs(s->bA) + fabs(A));
        double g = P->L0 + Lu + lp_eval(&P->latA, e, alpha) - P->latA.tol_val - P->tolL;
        lb = g > lb ? g : lb;
    }
    return P->gridL > 0 ? ceil_grid(lb, P->gridL) : lb;
}

static int64_t tie_lbM(const search *s, int e, double A, int64_t Mu)
{
    const scale_prepared *P = s->P;
    int64_t lb = P->M0 + Mu + P->sufM[e];
    if (P->memA.on) {
        double alpha = s->bA - A + P->tolA + P->memA.tol_x + 4 * DBL_EPSILON * (fabs(s->bA) + fabs(A));
        double g = (double)(P->M0 + Mu) + lp_eval(&P->memA, e, alpha) - P->memA.tol_val;
        if (g > (double)lb && g < 9.0e18)
            lb = (int64_t)ceil(g);
    }
    return lb;
}

/* No leaf below the node (depths 0..d fixed in cur, search-order sums A, Lu,
 * Mu) can beat the incumbent, given lbA, a rigorous bound on its loss. */
static bool cannot_win(const search *s, int d, double lbA, double A, double Lu, int64_t Mu)
{
    if (!s->have)
        return false;
    if (lbA > s->bA)
        return true;
    if (lbA < s->bA)
        return false;
    /* can at best tie on loss: compare the lower bounds of the tie keys */
    if (s->mem_first) {
        int64_t lbM = tie_lbM(s, d + 1, A, Mu);
        if (lbM != s->bM)
            return lbM > s->bM;
        double lbL = tie_lbL(s, d + 1, A, Lu);
        if (lbL != s->bL)
            return lbL > s->bL;
    } else {
        double lbL = tie_lbL(s, d + 1, A, Lu);
        if (lbL != s->bL)
            return lbL > s->bL;
        int64_t lbM = tie_lbM(s, d + 1, A, Mu);
        if (lbM != s->bM)
            return lbM > s->bM;
    }
    return lex_after(s->P, d);
}

static void leaf(search *s)
{
    scale_prepared *P = s->P;
    double A, L;
    int64_t M;
    canon(P, P->cur, &A, &L, &M);
    if (s->mode == MODE_BUDGET) {
        if (!(L <= s->T) || M > s->M)
            return;
    } else if (!(L / s->T <= s->z) || !((double)M / (double)s->M <= s->z)) {
        return;
    }
    if (s->have) {
        int c;
        if (A != s->bA)
            c = A < s->bA ? -1 : 1;
        else if (s->mem_first && M != s->bM)
            c = M < s->bM ? -1 : 1;
        else if (L != s->bL)
            c = L < s->bL ? -1 : 1;
        else if (M != s->bM)
            c = M < s->bM ? -1 : 1;
        else
            c = lex_cmp(P, P->cur, P->best);
        if (c >= 0)
            return;
    }
    s->have = true;
    s->bA = A;
    s->bL = L;
    s->bM = M;
    memcpy(P->best, P->cur, (size_t)P->B * sizeof(int));
}

static void dfs(search *s, int d, double A, double Lu, int64_t Mu)
{
    scale_prepared *P = s->P;
    s->nodes++;
    const opt *o = &P->opts[P->off[d]];
    int e = d + 1, nk = P->nk[d];
    /* rest = least latency of the remaining blocks less the rounding margin:
     * exact on a grid, where the test below is then exact too */
    double rest = P->L0 + P->sufL[e] - P->tolL;
    int64_t capM = s->Mcap - P->M0 - P->sufM[e];
    if (e == P->B) {
        for (int k = 0; k < nk; k++) {
            double L2 = Lu + o[k].l;
            int64_t M2 = Mu + o[k].m;
            if (rest + L2 > s->Tcap || M2 > capM)
                continue;
            double A2 = A + o[k].a;
            double lb = P->gridA > 0 ? A2 : A2 - P->tolA;
            P->cur[d] = k;
            if (!cannot_win(s, d, lb, A2, L2, M2))
                leaf(s);
        }
        return;
    }
    child *kids = &P->kids[(size_t)d * P->maxk];
    int n = 0;
    for (int k = 0; k < nk; k++) {
        double L2 = Lu + o[k].l;
        int64_t M2 = Mu + o[k].m;
        if (rest + L2 > s->Tcap || M2 > capM)
            continue;
        double lb = lb_loss(s, e, A + o[k].a, L2, M2);
        P->cur[d] = k;
        if (cannot_win(s, d, lb, A + o[k].a, L2, M2))
            continue;
        /* insertion by (bound, option) keeps the order deterministic */
        int i = n++;
        while (i > 0 && kids[i - 1].lb > lb) {
            kids[i] = kids[i - 1];
            i--;
        }
        kids[i] = (child){lb, k};
    }
    for (int i = 0; i < n; i++) {
        int k = kids[i].k;
        double L2 = Lu + o[k].l;
        int64_t M2 = Mu + o[k].m;
        P->cur[d] = k;
        if (cannot_win(s, d, kids[i].lb, A + o[k].a, L2, M2))
            continue;
        dfs(s, e, A + o[k].a, L2, M2);
    }
}

/* ---- the least common budget scale (infeasible budgets) ---------------------- */

typedef struct rsearch {
    scale_prepared *P;
    double T, M, best, shrink;
    int64_t nodes;
} rsearch;

static const double ratio_w[3] = {0.25, 0.5, 0.75};

static double ratio_lb(const rsearch *r, int e, double Lu, int64_t Mu)
{
    const scale_prepared *P = r->P;
    double L = P->L0 + Lu, M = (double)(P->M0 + Mu);
    double lb = fmax((L + P->sufL[e]) / r->T, (M + (double)P->sufM[e]) / r->M);
    for (int w = 0; w < 3; w++) {
        double v = ratio_w[w] * L / r->T + (1 - ratio_w[w]) * M / r->M + P->sufW[w * (P->B + 1) + e];
        lb = fmax(lb, v);
    }
    return lb * r->shrink;
}

static void rdfs(rsearch *r, int d, double Lu, int64_t Mu)
{
    scale_prepared *P = r->P;
    r->nodes++;
    const opt *o = &P->opts[P->off[d]];
    int e = d + 1, nk = P->nk[d];
    if (e == P->B) {
        for (int k = 0; k < nk; k++) {
            P->cur[d] = k;
            if (ratio_lb(r, e, Lu + o[k].l, Mu + o[k].m) >= r->best)
                continue;
            double A, L;
            int64_t M;
            canon(P, P->cur, &A, &L, &M);
            double z = fmax(L / r->T, (double)M / r->M);
            if (z < r->best)
                r->best = z;
        }
        return;
    }
    child *kids = &P->kids[(size_t)d * P->maxk];
    int n = 0;
    for (int k = 0; k < nk; k++) {
        double lb = ratio_lb(r, e, Lu + o[k].l, Mu + o[k].m);
        if (lb >= r->best)
            continue;
        int i = n++;
        while (i > 0 && kids[i - 1].lb > lb) {
            kids[i] = kids[i - 1];
            i--;
        }
        kids[i] = (child){lb, k};
    }
    for (int i = 0; i < n; i++) {
        if (kids[i].lb >= r->best)
            continue;
        int k = kids[i].k;
        P->cur[d] = k;
        rdfs(r, e, Lu + o[k].l, Mu + o[k].m);
    }
}

/* z* = least over all compositions of max(latency/T, memory/M). */
static double min_ratio(scale_prepared *P, double T, int64_t M, int64_t *nodes)
{
    int B = P->B;
    for (int w = 0; w < 3; w++) {
        double *suf = &P->sufW[w * (B + 1)];
        suf[B] = 0;
        for (int d = B - 1; d >= 0; d--) {
            const opt *o = &P->opts[P->off[d]];
            double mn = INFINITY;
            for (int k = 0; k < P->nk[d]; k++)
                mn = fmin(mn, ratio_w[w] * o[k].l / T + (1 - ratio_w[w]) * (double)o[k].m / (double)M);
            suf[d] = suf[d + 1] + mn;
        }
    }
    rsearch r = {P, T, (double)M, INFINITY, 1 - 16.0 * (B + 8) * DBL_EPSILON, 0};
    rdfs(&r, 0, 0, 0);
    *nodes += r.nodes;
    return r.best;
}

/* ---- solve --------------------------------------------------------------------- */

static void fill_choice(const scale_prepared *P, int *option)
{
    for (int b = 0; b < P->B; b++)
        option[b] = opt_at(P, P->best, P->depth_of[b])->orig;
}

lego_status scale_solve_prepared(scale_prepared *P, double T, int64_t M, scale_choice *out)
{
    if (!P || !out || !out->option)
        return lego_error(LEGO_ERR_ARG, "scale_solve: NULL prepared problem, output or option array");
    LEGO_TRY(check_budgets(T, M));
    search s;
    search_init(&s, P, MODE_BUDGET, false, T, M, 1.0);
    dfs(&s, 0, 0.0, 0.0, 0);
    int64_t nodes = s.nodes;
    double z = 1.0;
    if (!s.have) {
        z = min_ratio(P, T, M, &nodes);
        search_init(&s, P, MODE_RATIO, false, T, M, z);
        dfs(&s, 0, 0.0, 0.0, 0);
        nodes += s.nodes;
        if (!s.have)
            return lego_error(LEGO_ERR_INTERNAL, "scaling optimizer: no composition reaches scale %.17g",
                              z);
    }
    fill_choice(P, out->option);
    out->acc_loss = s.bA;
    out->latency = s.bL;
    out->memory = s.bM;
    out->feasible = s.bL <= T && s.bM <= M;
    out->budget_scale = out->feasible ? 1.0 : z;
    out->latency_excess = s.bL > T ? s.bL - T : 0;
    out->memory_excess = s.bM > M ? s.bM - M : 0;
    out->nodes_explored = nodes;
    return lego_ok();
}

lego_status scale_solve(const scale_problem *p, double T, int64_t M, scale_choice *out)
{
    scale_prepared *P;
    LEGO_TRY(check_budgets(T, M));
    LEGO_TRY(scale_prepare(p, &P));
    lego_status st = scale_solve_prepared(P, T, M, out);
    scale_prepared_free(P);
    return st;
}

lego_status scale_cost(const scale_problem *p, const int *option, double *acc_loss, double *latency,
                       int64_t *memory)
{
    LEGO_TRY(check_problem(p));
    if (!option)
        return lego_error(LEGO_ERR_ARG, "scale_cost: NULL option array");
    double a = 0.0, l = p->base_latency;
    int64_t m = p->base_memory;
    for (int b = 0; b < p->n_blocks; b++) {
        int s = option[b];
        if (s < 0 || s >= p->n_options[b])
            return lego_error(LEGO_ERR_ARG, "scale_cost: block %d: option %d out of range 0..%d", b, s,
                              p->n_options[b] - 1);
        a += p->acc_loss[b][s];
        l += p->latency[b][s];
        m += p->memory[b][s];
    }
    if (acc_loss)
        *acc_loss = a;
    if (latency)
        *latency = l;
    if (memory)
        *memory = m;
    return lego_ok();
}

/* ---- frontiers ------------------------------------------------------------------ */

void scale_frontier_free(scale_frontier *f)
{
    if (!f)
        return;
    free(f->acc_loss);
    free(f->latency);
    free(f->memory);
    free(f->option);
    memset(f, 0, sizeof *f);
}

static lego_status frontier_alloc(scale_frontier *f, int B, int n)
{
    memset(f, 0, sizeof *f);
    f->n_blocks = B;
    size_t m = n > 0 ? (size_t)n : 1;
    f->acc_loss = malloc(m * sizeof(double));
    f->latency = malloc(m * sizeof(double));
    f->memory = malloc(m * sizeof(int64_t));
    f->option = malloc(m * (size_t)B * sizeof(int));
    if (!f->acc_loss || !f->latency || !f->memory || !f->option) {
        scale_frontier_free(f);
        return lego_error(LEGO_ERR_NOMEM, "scaling frontier: out of memory for %d points", n);
    }
    return lego_ok();
}

#define FRONTIER_MAX_POINTS (1 << 22)

lego_status scale_frontier2(scale_prepared *P, scale_axis axis, double T, int64_t M, int max_points,
                            scale_frontier *out)
{
    if (!P || !out)
        return lego_error(LEGO_ERR_ARG, "scale_frontier2: NULL argument");
    memset(out, 0, sizeof *out);
    if (axis != SCALE_AXIS_LATENCY && axis != SCALE_AXIS_MEMORY)
        return lego_error(LEGO_ERR_ARG, "scale_frontier2: unknown axis %d", (int)axis);
    if (max_points < 1 || max_points > FRONTIER_MAX_POINTS)
        return lego_error(LEGO_ERR_ARG, "scale_frontier2: max_points %d (want 1..%d)", max_points,
                          FRONTIER_MAX_POINTS);
    LEGO_TRY(check_budgets(T, M));
    LEGO_TRY(frontier_alloc(out, P->B, max_points));
    bool mem = axis == SCALE_AXIS_MEMORY;
    double Tc = T;
    int64_t Mc = M;
    for (;;) {
        search s;
        search_init(&s, P, MODE_BUDGET, mem, Tc, Mc, 1.0);
        dfs(&s, 0, 0.0, 0.0, 0);
        out->nodes_explored += s.nodes;
        if (!s.have)
            break;
        if (out->n_points == max_points) {
            out->truncated = true;
            break;
        }
        int i = out->n_points++;
        out->acc_loss[i] = s.bA;
        out->latency[i] = s.bL;
        out->memory[i] = s.bM;
        fill_choice(P, &out->option[(size_t)i * P->B]);
        if (mem) {
            if (s.bM == 0)
                break;
            Mc = s.bM - 1;
        } else {
            Tc = nextafter(s.bL, -INFINITY);
            if (Tc < 0)
                break;
        }
    }
    return lego_ok();
}

/* A partial composition of blocks 0..b, in the 3-D frontier merge. */
typedef struct fstate {
    double A, L;
    int64_t M;
    int parent; /* state in the previous stage */
    int opt;    /* option of block b (caller's index) */
} fstate;

typedef struct stair {
    double L;
    int64_t M;
    size_t who;
} stair;

/* A candidate's sums with its index (its rank in lexicographic order). */
typedef struct fkey {
    double A, L;
    int64_t M;
    size_t i;
} fkey;

static int cmp_fkey(const void *x, const void *y)
{
    const fkey *p = x, *q = y;
    if (p->A != q->A)
        return p->A < q->A ? -1 : 1;
    if (p->L != q->L)
        return p->L < q->L ? -1 : 1;
    if (p->M != q->M)
        return p->M < q->M ? -1 : 1;
    return (p->i > q->i) - (p->i < q->i);
}

static int cmp_size(const void *x, const void *y)
{
    size_t a = *(const size_t *)x, b = *(const size_t *)y;
    return (a > b) - (a < b);
}

/* Keep the candidates (in lexicographic order of their compositions) that no
 * earlier-sorted candidate safely dominates; `final` when the sums are
 * complete (any dominance is then exact). Writes the kept indices, in
 * lexicographic order, to keep and returns their count. */
static size_t dominance_filter(const scale_prepared *P, const fstate *c, size_t n, bool final,
                               fkey *idx, stair *st, size_t *keep)
{
    for (size_t i = 0; i < n; i++)
        idx[i] = (fkey){c[i].A, c[i].L, c[i].M, i};
    qsort(idx, n, sizeof *idx, cmp_fkey);
    size_t ns = 0, nk = 0;
    for (size_t t = 0; t < n; t++) {
        const fstate *p = &c[idx[t].i];
        /* the staircase point with the least memory among latency <= p's */
        size_t lo = 0, hi = ns;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (st[mid].L <= p->L)
                lo = mid + 1;
            else
                hi = mid;
        }
        long q = (long)lo - 1;
        if (q >= 0 && st[q].M <= p->M) {
            const fstate *d = &c[st[q].who];
            bool safe = final || st[q].who < idx[t].i || d->M < p->M ||
                        (P->gridA > 0 ? d->A < p->A : d->A < p->A - P->tolA) ||
                        (P->gridL > 0 ? d->L < p->L : d->L < p->L - P->tolL);
            if (!safe)
                keep[nk++] = idx[t].i;
            continue;
        }
        keep[nk++] = idx[t].i;
        size_t start = (q >= 0 && st[q].L == p->L) ? (size_t)q : (size_t)(q + 1), end = start;
        while (end < ns && st[end].M >= p->M)
            end++;
        /* replace [start, end) by p */
        if (end != start + 1)
            memmove(&st[start + 1], &st[end], (ns - end) * sizeof *st);
        ns = ns - (end - start) + 1;
        st[start] = (stair){p->L, p->M, idx[t].i};
    }
    if (!final)
        qsort(keep, nk, sizeof *keep, cmp_size);
    return nk;
}

lego_status scale_frontier3(scale_prepared *P, double T, int64_t M, int max_points, scale_frontier *out)
{
    if (!P || !out)
        return lego_error(LEGO_ERR_ARG, "scale_frontier3: NULL argument");
    memset(out, 0, sizeof *out);
    if (max_points < 1 || max_points > FRONTIER_MAX_POINTS)
        return lego_error(LEGO_ERR_ARG, "scale_frontier3: max_points %d (want 1..%d)", max_points,
                          FRONTIER_MAX_POINTS);
    LEGO_TRY(check_budgets(T, M));
    int B = P->B;
    lego_status st = lego_ok();
    fstate **stage = calloc((size_t)B + 1, sizeof *stage);
    size_t *count = calloc((size_t)B + 1, sizeof *count);
    double *minL = calloc((size_t)B + 1, sizeof *minL);
    int64_t *minM = calloc((size_t)B + 1, sizeof *minM);
    fstate *cand = NULL;
    fkey *idx = NULL;
    size_t *keep = NULL;
    stair *stc = NULL;
    size_t cap = 0;
    if (!stage || !count || !minL || !minM) {
        st = lego_error(LEGO_ERR_NOMEM, "scaling frontier: out of memory");
        goto done;
    }
    /* least latency and memory of blocks b..B-1 (caller's order) */
    for (int b = B - 1; b >= 0; b--) {
        int d = P->depth_of[b];
        const opt *o = &P->opts[P->off[d]];
        double ml = o[0].l;
        int64_t mm = o[0].m;
        for (int k = 1; k < P->nk[d]; k++) {
            ml = fmin(ml, o[k].l);
            mm = o[k].m < mm ? o[k].m : mm;
        }
        minL[b] = minL[b + 1] + ml;
        minM[b] = minM[b + 1] + mm;
    }
    stage[0] = malloc(sizeof(fstate));
    if (!stage[0]) {
        st = lego_error(LEGO_ERR_NOMEM, "scaling frontier: out of memory");
        goto done;
    }
    stage[0][0] = (fstate){0.0, P->L0, P->M0, -1, -1};
    count[0] = 1;
    for (int b = 0; b < B; b++) {
        int d = P->depth_of[b], nk = P->nk[d];
        const opt *o = &P->opts[P->off[d]];
        /* options in the caller's order, so candidates come out in
         * lexicographic order of their compositions */
        int ord[SCALE_MAX_OPTIONS];
        for (int k = 0; k < nk; k++) {
            int i = k;
            while (i > 0 && o[ord[i - 1]].orig > o[k].orig) {
                ord[i] = ord[i - 1];
                i--;
            }
            ord[i] = k;
        }
        size_t need = count[b] * (size_t)nk;
        if (need > cap) {
            free(cand);
            free(idx);
            free(keep);
            free(stc);
            cap = need;
            cand = malloc(cap * sizeof *cand);
            idx = malloc(cap * sizeof *idx);
            keep = malloc(cap * sizeof *keep);
            stc = malloc(cap * sizeof *stc);
            if (!cand || !idx || !keep || !stc) {
                st = lego_error(LEGO_ERR_NOMEM, "scaling frontier: out of memory for %zu candidates", cap);
                goto done;
            }
        }
        bool last = b == B - 1;
        size_t n = 0;
        for (size_t i = 0; i < count[b]; i++) {
            const fstate *p = &stage[b][i];
            for (int j = 0; j < nk; j++) {
                const opt *x = &o[ord[j]];
                fstate c = {p->A + x->a, p->L + x->l, p->M + x->m, (int)i, x->orig};
                if (last) {
                    if (!(c.L <= T) || c.M > M)
                        continue;
                } else if (c.L + minL[b + 1] - P->tolL > T || c.M + minM[b + 1] > M) {
                    continue;
                }
                cand[n++] = c;
            }
        }
        size_t nk2 = dominance_filter(P, cand, n, last, idx, stc, keep);
        if (nk2 > (size_t)max_points) {
            st = lego_error(LEGO_ERR_UNSUPPORTED,
                            "scaling frontier: more than %d points (%zu after block %d); raise max_points or "
                            "use the 2-D frontier",
                            max_points, nk2, b);
            goto done;
        }
        stage[b + 1] = malloc((nk2 ? nk2 : 1) * sizeof(fstate));
        if (!stage[b + 1]) {
            st = lego_error(LEGO_ERR_NOMEM, "scaling frontier: out of memory");
            goto done;
        }
        for (size_t i = 0; i < nk2; i++)
            stage[b + 1][i] = cand[keep[i]];
        count[b + 1] = nk2;
    }
    st = frontier_alloc(out, B, (int)count[B]);
    if (st.code != LEGO_OK)
        goto done;
    out->n_points = (int)count[B];
    for (size_t i = 0; i < count[B]; i++) {
        const fstate *f = &stage[B][i];
        out->acc_loss[i] = f->A;
        out->latency[i] = f->L;
        out->memory[i] = f->M;
        int *row = &out->option[i * (size_t)B];
        size_t at = i;
        for (int b = B - 1; b >= 0; b--) {
            const fstate *g = &stage[b + 1][at];
            row[b] = g->opt;
            at = (size_t)g->parent;
        }
    }
done:
    if (stage)
        for (int b = 0; b <= B; b++)
            free(stage[b]);
    free(stage);
    free(count);
    free(minL);
    free(minM);
    free(cand);
    free(idx);
    free(keep);
    free(stc);
    return st;
}
