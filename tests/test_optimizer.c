/* test_optimizer.c - the exact scaling optimizer against exhaustive search
 * (random instances with ties, zeros, duplicate options, infeasible budgets
 * and budgets exactly at a composition's cost), its Pareto frontiers against
 * exhaustive frontiers, hand-made cases, bad input, and, when GLPK was found
 * at configure time, an independent MILP model of the same problem. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "harness.h"
#include "runtime/optimizer.h"

#ifdef LEGO_HAVE_GLPK
#include <glpk.h>
#endif

#define MAXB 16
#define MAXS 8

/* A problem with its own storage. */
typedef struct inst {
    int B, n[MAXB];
    double a[MAXB][MAXS], l[MAXB][MAXS];
    int64_t m[MAXB][MAXS];
    const double *ap[MAXB], *lp[MAXB];
    const int64_t *mp[MAXB];
    scale_problem p;
} inst;

static void inst_wire(inst *x, double L0, int64_t M0)
{
    for (int b = 0; b < x->B; b++) {
        x->ap[b] = x->a[b];
        x->lp[b] = x->l[b];
        x->mp[b] = x->m[b];
    }
    x->p = (scale_problem){x->B, x->n, x->ap, x->lp, x->mp, L0, M0};
}

static double unif(rng *r)
{
    return (double)(rng_next_u64(r) >> 11) * 0x1p-53;
}

/* ---- exhaustive reference ----------------------------------------------------- */

static bool next_comp(const inst *x, int *c)
{
    for (int b = x->B - 1; b >= 0; b--) {
        if (++c[b] < x->n[b])
            return true;
        c[b] = 0;
    }
    return false;
}

static void cost(const inst *x, const int *c, double *A, double *L, int64_t *M)
{
    double a = 0.0, l = x->p.base_latency;
    int64_t m = x->p.base_memory;
    for (int b = 0; b < x->B; b++) {
        a += x->a[b][c[b]];
        l += x->l[b][c[b]];
        m += x->m[b][c[b]];
    }
    *A = a;
    *L = l;
    *M = m;
}

static int64_t n_comps(const inst *x)
{
    int64_t n = 1;
    for (int b = 0; b < x->B; b++)
        n *= x->n[b];
    return n;
}

typedef struct ref {
    bool feasible;
    int opt[MAXB];
    double A, L, z;
    int64_t M;
} ref;

/* Enumeration runs in lexicographic order, so the first of equal keys is
 * the lexicographically smallest. */
static void ref_solve(const inst *x, double T, int64_t Mb, ref *r)
{
    int c[MAXB] = {0};
    bool have = false;
    double A, L;
    int64_t M;
    do {
        cost(x, c, &A, &L, &M);
        if (L <= T && M <= Mb &&
            (!have || A < r->A || (A == r->A && (L < r->L || (L == r->L && M < r->M))))) {
            have = true;
            r->A = A, r->L = L, r->M = M;
            memcpy(r->opt, c, sizeof c);
        }
    } while (next_comp(x, c));
    r->feasible = have;
    r->z = 1.0;
    if (have)
        return;
    double z = INFINITY;
    memset(c, 0, sizeof c);
    do {
        cost(x, c, &A, &L, &M);
        z = fmin(z, fmax(L / T, (double)M / (double)Mb));
    } while (next_comp(x, c));
    r->z = z;
    memset(c, 0, sizeof c);
    do {
        cost(x, c, &A, &L, &M);
        if (L / T <= z && (double)M / (double)Mb <= z &&
            (!have || A < r->A || (A == r->A && (L < r->L || (L == r->L && M < r->M))))) {
            have = true;
            r->A = A, r->L = L, r->M = M;
            memcpy(r->opt, c, sizeof c);
        }
    } while (next_comp(x, c));
}

/* ---- random instances ----------------------------------------------------------- */

enum { K_REAL, K_SMALLINT, K_DYADIC, K_DUPS, K_REALISTIC, K_DECIMAL, K_NKINDS };

static void random_inst(rng *r, inst *x, int kind, int maxB, int64_t max_comps)
{
    do {
        x->B = 1 + (int)rng_below(r, (uint64_t)maxB);
        for (int b = 0; b < x->B; b++)
            x->n[b] = 1 + (int)rng_below(r, 6);
    } while (n_comps(x) > max_comps);
    double L0 = 0;
    int64_t M0 = 0;
    if (rng_below(r, 2)) {
        L0 = kind == K_SMALLINT ? (double)rng_below(r, 3)
             : kind == K_DYADIC ? rng_below(r, 8) / 8.0
             : kind == K_DECIMAL ? rng_below(r, 8) / 10.0
                                 : unif(r);
        M0 = (int64_t)rng_below(r, kind == K_SMALLINT ? 3 : 1000);
    }
    for (int b = 0; b < x->B; b++) {
        double base_l = 0.5 + unif(r) * 4, base_m = 1000 + unif(r) * 100000, sens = unif(r) * 0.2;
        for (int s = 0; s < x->n[b]; s++) {
            switch (kind) {
            case K_REAL:
                x->a[b][s] = unif(r) - (rng_below(r, 10) == 0 ? 0.7 : 0.0);
                x->l[b][s] = rng_below(r, 10) == 0 ? 0.0 : unif(r);
                x->m[b][s] = rng_below(r, 10) == 0 ? 0 : (int64_t)rng_below(r, 1000);
                break;
            case K_SMALLINT:
                x->a[b][s] = (double)rng_below(r, 3);
                x->l[b][s] = (double)rng_below(r, 3);
                x->m[b][s] = (int64_t)rng_below(r, 3);
                break;
            case K_DYADIC:
                x->a[b][s] = (double)rng_below(r, 16) / 8.0 - 0.25;
                x->l[b][s] = (double)rng_below(r, 16) / 4.0;
                x->m[b][s] = (int64_t)rng_below(r, 8) * 512;
                break;
            case K_DECIMAL: /* ties in real arithmetic that rounding may split */
                x->a[b][s] = (double)rng_below(r, 6) / 10.0;
                x->l[b][s] = (double)rng_below(r, 6) / 10.0;
                x->m[b][s] = (int64_t)rng_below(r, 4);
                break;
            case K_DUPS:
                if (s > 0 && rng_below(r, 2)) {
                    int t = (int)rng_below(r, (uint64_t)s);
                    x->a[b][s] = x->a[b][t];
                    x->l[b][s] = x->l[b][t];
                    x->m[b][s] = x->m[b][t];
                    if (rng_below(r, 3) == 0)
                        x->a[b][s] += 0.125; /* dominated by its twin */
                } else {
                    x->a[b][s] = (double)rng_below(r, 4) * 0.5;
                    x->l[b][s] = unif(r);
                    x->m[b][s] = (int64_t)rng_below(r, 4);
                }
                break;
            default: { /* loss rises, latency and memory fall with sparsity */
                double sp = x->n[b] > 1 ? 0.9 * s / (x->n[b] - 1) : 0;
                x->a[b][s] = sens * pow(sp, 1.5 + unif(r)) + (unif(r) - 0.5) * 0.002;
                x->l[b][s] = base_l * (1 - 0.8 * sp) * (1 + (unif(r) - 0.5) * 0.05);
                x->m[b][s] = (int64_t)(base_m * (1 - sp) * (1 - sp)) + 64;
                break;
            }
            }
        }
    }
    inst_wire(x, L0, M0);
}

/* Budgets: between the least and the largest usage, exactly at a random
 * composition's cost, below anything (infeasible), or unlimited. */
static void random_budget(rng *r, const inst *x, double *T, int64_t *M)
{
    double lmin = x->p.base_latency, lmax = lmin;
    int64_t mmin = x->p.base_memory, mmax = mmin;
    for (int b = 0; b < x->B; b++) {
        double a = INFINITY, c = 0;
        int64_t d = INT64_MAX, e = 0;
        for (int s = 0; s < x->n[b]; s++) {
            a = fmin(a, x->l[b][s]);
            c = fmax(c, x->l[b][s]);
            d = x->m[b][s] < d ? x->m[b][s] : d;
            e = x->m[b][s] > e ? x->m[b][s] : e;
        }
        lmin += a, lmax += c, mmin += d, mmax += e;
    }
    int c[MAXB];
    double A;
    switch (rng_below(r, 6)) {
    case 0: /* exactly at a composition */
        for (int b = 0; b < x->B; b++)
            c[b] = (int)rng_below(r, (uint64_t)x->n[b]);
        cost(x, c, &A, T, M);
        break;
    case 1: /* latency at one composition, memory at another */
        for (int b = 0; b < x->B; b++)
            c[b] = (int)rng_below(r, (uint64_t)x->n[b]);
        cost(x, c, &A, T, M);
        for (int b = 0; b < x->B; b++)
            c[b] = (int)rng_below(r, (uint64_t)x->n[b]);
        {
            double t2;
            cost(x, c, &A, &t2, M);
        }
        break;
    case 2: /* infeasible */
        *T = lmin * (0.5 + 0.6 * unif(r));
        *M = (int64_t)((double)mmin * (0.5 + 0.6 * unif(r)));
        break;
    case 3:
        *T = DBL_MAX;
        *M = INT64_MAX;
        break;
    default:
        *T = lmin + (lmax - lmin) * unif(r);
        *M = mmin + (int64_t)((double)(mmax - mmin) * unif(r));
        break;
    }
    if (!(*T > 0))
        *T = 0.25;
    if (*M <= 0)
        *M = 1;
}

static int report_left = 10;

static bool same_answer(const inst *x, double T, int64_t M, const scale_choice *got, const ref *want,
                        const char *what)
{
    bool ok = got->feasible == want->feasible && got->acc_loss == want->A && got->latency == want->L &&
              got->memory == want->M && memcmp(got->option, want->opt, (size_t)x->B * sizeof(int)) == 0;
    if (!want->feasible)
        ok = ok && got->budget_scale == want->z;
    ok = ok && got->latency_excess == (want->L > T ? want->L - T : 0) &&
         got->memory_excess == (want->M > M ? want->M - M : 0);
    if (!ok && report_left-- > 0) {
        fprintf(stderr, "%s: B=%d T=%.17g M=%lld feasible %d/%d A %.17g/%.17g L %.17g/%.17g M %lld/%lld\n",
                what, x->B, T, (long long)M, got->feasible, want->feasible, got->acc_loss, want->A,
                got->latency, want->L, (long long)got->memory, (long long)want->M);
        for (int b = 0; b < x->B; b++)
            fprintf(stderr, "  block %d: got %d want %d\n", b, got->option[b], want->opt[b]);
    }
    return ok;
}

static void test_random_vs_exhaustive(void)
{
    rng r;
    rng_seed(&r, 12345);
    int instances = 0, decisions = 0, infeasible = 0, bad = 0;
    int64_t comps = 0;
    for (int it = 0; it < 3000; it++) {
        inst x;
        int kind = it % K_NKINDS;
        random_inst(&r, &x, kind, 8, 4000);
        scale_prepared *P = NULL;
        /* a third with small LP tables: every k-th suffix only, or none */
        int64_t limit = it % 3 == 1 ? (int64_t)rng_below(&r, 12) : SCALE_TABLE_ENTRIES;
        lego_status st = scale_prepare_limited(&x.p, limit, &P);
        CHECK_OK(st);
        if (!P)
            continue;
        instances++;
        comps += n_comps(&x);
        for (int k = 0; k < 4; k++) {
            double T;
            int64_t M;
            random_budget(&r, &x, &T, &M);
            ref want;
            ref_solve(&x, T, M, &want);
            int opt[MAXB];
            scale_choice got = {.option = opt};
            lego_status s2 = scale_solve_prepared(P, T, M, &got);
            if (s2.code != LEGO_OK) {
                bad++;
                fprintf(stderr, "solve failed: %s\n", lego_status_msg(s2));
                lego_status_free(&s2);
                continue;
            }
            decisions++;
            infeasible += !want.feasible;
            if (!same_answer(&x, T, M, &got, &want, "prepared"))
                bad++;
            if (k == 0) { /* the one-shot call agrees */
                int opt2[MAXB];
                scale_choice g2 = {.option = opt2};
                CHECK_OK(scale_solve(&x.p, T, M, &g2));
                if (!same_answer(&x, T, M, &g2, &want, "one-shot"))
                    bad++;
            }
        }
        scale_prepared_free(P);
    }
    printf("exhaustive: %d instances (%lld compositions), %d decisions (%d infeasible), %d mismatches\n",
           instances, (long long)comps, decisions, infeasible, bad);
    CHECK(bad == 0);
    CHECK(infeasible > 100 && decisions - infeasible > 1000);
}

/* ---- frontiers against exhaustive ----------------------------------------------- */

typedef struct cpt {
    double A, L;
    int64_t M;
    int rank;
    int opt[MAXB];
} cpt;

static int key_mode; /* 0: (A, L, M), 1: (A, M, L) */

static int cmp_cpt(const void *x, const void *y)
{
    const cpt *p = x, *q = y;
    if (p->A != q->A)
        return p->A < q->A ? -1 : 1;
    if (key_mode == 1 && p->M != q->M)
        return p->M < q->M ? -1 : 1;
    if (p->L != q->L)
        return p->L < q->L ? -1 : 1;
    if (p->M != q->M)
        return p->M < q->M ? -1 : 1;
    return p->rank - q->rank;
}

/* mode 0: 3-D; 1: loss vs latency; 2: loss vs memory. */
static int ref_frontier(const inst *x, double T, int64_t Mb, int mode, cpt *out)
{
    int64_t n = n_comps(x);
    cpt *all = malloc((size_t)n * sizeof *all);
    int c[MAXB] = {0}, k = 0, rank = 0;
    do {
        cpt p;
        cost(x, c, &p.A, &p.L, &p.M);
        p.rank = rank++;
        memcpy(p.opt, c, sizeof c);
        if (p.L <= T && p.M <= Mb)
            all[k++] = p;
    } while (next_comp(x, c));
    key_mode = mode == 2;
    qsort(all, (size_t)k, sizeof *all, cmp_cpt);
    int nf = 0;
    for (int i = 0; i < k; i++) {
        bool dom = false;
        for (int j = 0; j < nf && !dom; j++) {
            const cpt *q = &out[j];
            if (mode == 0)
                dom = q->L <= all[i].L && q->M <= all[i].M;
            else if (mode == 1)
                dom = q->L <= all[i].L;
            else
                dom = q->M <= all[i].M;
        }
        if (!dom)
            out[nf++] = all[i];
    }
    free(all);
    return nf;
}

static bool same_frontier(const inst *x, const scale_frontier *f, const cpt *want, int nw, const char *what)
{
    bool ok = f->n_points == nw;
    for (int i = 0; ok && i < nw; i++)
        ok = f->acc_loss[i] == want[i].A && f->latency[i] == want[i].L && f->memory[i] == want[i].M &&
             memcmp(&f->option[(size_t)i * x->B], want[i].opt, (size_t)x->B * sizeof(int)) == 0;
    if (!ok && report_left-- > 0) {
        fprintf(stderr, "%s frontier: B=%d got %d points, want %d\n", what, x->B, f->n_points, nw);
        for (int i = 0; i < nw || i < f->n_points; i++)
            fprintf(stderr, "  %d: got %.17g %.17g %lld  want %.17g %.17g %lld\n", i,
                    i < f->n_points ? f->acc_loss[i] : NAN, i < f->n_points ? f->latency[i] : NAN,
                    i < f->n_points ? (long long)f->memory[i] : -1LL, i < nw ? want[i].A : NAN,
                    i < nw ? want[i].L : NAN, i < nw ? (long long)want[i].M : -1LL);
    }
    return ok;
}

static void test_frontiers(void)
{
    rng r;
    rng_seed(&r, 777);
    int bad = 0, n3 = 0, n2 = 0, pts = 0, truncated = 0;
    cpt *want = malloc(2000 * sizeof *want);
    for (int it = 0; it < 600; it++) {
        inst x;
        random_inst(&r, &x, it % K_NKINDS, 7, 1500);
        scale_prepared *P = NULL;
        CHECK_OK(scale_prepare(&x.p, &P));
        if (!P)
            continue;
        double T;
        int64_t M;
        random_budget(&r, &x, &T, &M);
        if (it % 3 == 0)
            T = DBL_MAX, M = INT64_MAX;
        scale_frontier f;
        int nw = ref_frontier(&x, T, M, 0, want);
        lego_status st = scale_frontier3(P, T, M, 2000, &f);
        CHECK_OK(st);
        if (st.code == LEGO_OK) {
            n3++;
            pts += f.n_points;
            if (!same_frontier(&x, &f, want, nw, "3-D"))
                bad++;
            scale_frontier_free(&f);
        }
        for (int axis = 0; axis < 2; axis++) {
            nw = ref_frontier(&x, T, M, axis + 1, want);
            int cap = it % 5 == 0 ? 3 : 2000;
            st = scale_frontier2(P, (scale_axis)axis, T, M, cap, &f);
            CHECK_OK(st);
            if (st.code != LEGO_OK)
                continue;
            n2++;
            if (nw > cap) {
                truncated++;
                CHECK(f.truncated);
                nw = cap;
            } else {
                CHECK(!f.truncated);
            }
            if (!same_frontier(&x, &f, want, nw, axis ? "memory" : "latency"))
                bad++;
            scale_frontier_free(&f);
        }
        scale_prepared_free(P);
    }
    free(want);
    printf("frontiers: %d 3-D (%d points), %d 2-D (%d truncated), %d mismatches\n", n3, pts, n2, truncated,
           bad);
    CHECK(bad == 0);
}

/* ---- hand-made cases ---------------------------------------------------------------- */

static void test_hand(void)
{
    /* Two blocks, the classic trade: block 0 is expensive to shrink. */
    inst x = {.B = 2, .n = {3, 3}};
    double a[2][3] = {{0, 0.02, 0.10}, {0, 0.01, 0.03}};
    double l[2][3] = {{4, 3, 1}, {4, 2, 1}};
    int64_t m[2][3] = {{400, 300, 100}, {400, 200, 100}};
    for (int b = 0; b < 2; b++)
        for (int s = 0; s < 3; s++)
            x.a[b][s] = a[b][s], x.l[b][s] = l[b][s], x.m[b][s] = m[b][s];
    inst_wire(&x, 1.0, 50);
    int opt[2];
    scale_choice c = {.option = opt};
    CHECK_OK(scale_solve(&x.p, 9.0, 1000, &c)); /* everything fits */
    CHECK(c.feasible && opt[0] == 0 && opt[1] == 0 && c.acc_loss == 0 && c.latency == 9.0 && c.memory == 850);
    CHECK_OK(scale_solve(&x.p, 7.0, 1000, &c)); /* shrink block 1 first */
    CHECK(c.feasible && opt[0] == 0 && opt[1] == 1 && c.latency == 7.0);
    CHECK_OK(scale_solve(&x.p, 6.0, 1000, &c)); /* 0.02+0.01 beats 0+0.03 ... both 6.0 */
    CHECK(c.feasible && c.acc_loss == 0.03 && opt[0] == 0 && opt[1] == 2); /* tie 0.03: lower latency wins */
    CHECK_OK(scale_solve(&x.p, 9.0, 650, &c)); /* memory binds */
    CHECK(c.feasible && opt[0] == 0 && opt[1] == 1 && c.memory == 650);
    /* Infeasible: the least budget scale is the smallest model. */
    CHECK_OK(scale_solve(&x.p, 2.0, 1000, &c));
    CHECK(!c.feasible && opt[0] == 2 && opt[1] == 2 && c.latency == 3.0 && c.budget_scale == 1.5 &&
          c.latency_excess == 1.0 && c.memory_excess == 0);
    CHECK_OK(scale_solve(&x.p, 100, 200, &c));
    CHECK(!c.feasible && opt[0] == 2 && opt[1] == 2 && c.memory == 250 && c.memory_excess == 50 &&
          c.latency_excess == 0 && c.budget_scale == 1.25);
    /* Both budgets short: z = max(3/2.8, 250/240). */
    CHECK_OK(scale_solve(&x.p, 2.8, 240, &c));
    CHECK(!c.feasible && c.budget_scale == 3.0 / 2.8 && c.memory_excess == 10);
    {
        ref want;
        ref_solve(&x, 2.8, 240, &want);
        CHECK(same_answer(&x, 2.8, 240, &c, &want, "hand infeasible"));
    }

    /* Symmetric blocks: 16 identical blocks, 5 must shrink. Many optima; the
     * lexicographically smallest shrinks the last 5, and ties must not make
     * the search exponential. */
    static inst y;
    memset(&y, 0, sizeof y);
    y.B = 16;
    for (int b = 0; b < y.B; b++) {
        y.n[b] = 2;
        y.a[b][0] = 0, y.l[b][0] = 1, y.m[b][0] = 1;
        y.a[b][1] = 1, y.l[b][1] = 0, y.m[b][1] = 1;
    }
    inst_wire(&y, 0, 0);
    int yo[MAXB];
    scale_choice yc = {.option = yo};
    CHECK_OK(scale_solve(&y.p, 11, INT64_MAX, &yc));
    bool lex = yc.feasible && yc.acc_loss == 5 && yc.latency == 11;
    for (int b = 0; b < y.B; b++)
        lex = lex && yo[b] == (b >= 11);
    CHECK(lex);
    CHECK(yc.nodes_explored < 2000);
    printf("symmetric 16x2: %lld nodes\n", (long long)yc.nodes_explored);

    /* One block, one option; zero costs; budgets exactly at the cost. */
    inst z = {.B = 1, .n = {1}};
    inst_wire(&z, 0, 0);
    int zo[1];
    scale_choice zc = {.option = zo};
    CHECK_OK(scale_solve(&z.p, 1e-300, 1, &zc));
    CHECK(zc.feasible && zo[0] == 0 && zc.latency == 0 && zc.memory == 0);

    /* Negative (noise) losses are used as given. */
    inst w = {.B = 2, .n = {2, 2}};
    w.a[0][0] = 0, w.a[0][1] = -0.01, w.l[0][0] = 2, w.l[0][1] = 1, w.m[0][0] = 2, w.m[0][1] = 1;
    w.a[1][0] = 0, w.a[1][1] = 0.5, w.l[1][0] = 2, w.l[1][1] = 1, w.m[1][0] = 2, w.m[1][1] = 1;
    inst_wire(&w, 0.5, 0);
    int wo[2];
    scale_choice wc = {.option = wo};
    CHECK_OK(scale_solve(&w.p, 10, 10, &wc));
    CHECK(wc.feasible && wo[0] == 1 && wo[1] == 0 && wc.acc_loss == -0.01);

    /* Dominated and duplicate options are dropped; the lower index survives. */
    inst d = {.B = 1, .n = {4}};
    double da[4] = {0.1, 0.1, 0.2, 0.0}, dl[4] = {1, 1, 1, 2};
    int64_t dm[4] = {5, 5, 6, 5};
    for (int s = 0; s < 4; s++)
        d.a[0][s] = da[s], d.l[0][s] = dl[s], d.m[0][s] = dm[s];
    inst_wire(&d, 0, 0);
    scale_prepared *P;
    CHECK_OK(scale_prepare(&d.p, &P));
    CHECK(scale_prepared_kept(P, 0) == 2);
    int dopt[1];
    scale_choice dc = {.option = dopt};
    CHECK_OK(scale_solve_prepared(P, 1.5, 100, &dc));
    CHECK(dc.feasible && dopt[0] == 0);
    scale_prepared_free(P);

    /* Rounding collision: option 1 is better than option 0 by 1e-17, which
     * vanishes in the sum 1e-17 + 1.0, so both compositions have the same
     * canonical sums and the lexicographic rule picks option 0. Dominance
     * pruning and the frontier must not drop it. */
    inst rc = {.B = 2, .n = {2, 1}};
    rc.a[0][0] = 1e-17, rc.a[0][1] = 0, rc.l[0][0] = rc.l[0][1] = 1, rc.m[0][0] = rc.m[0][1] = 1;
    rc.a[1][0] = 1.0, rc.l[1][0] = 1, rc.m[1][0] = 1;
    inst_wire(&rc, 0, 0);
    int ro[2];
    scale_choice rcc = {.option = ro};
    CHECK_OK(scale_solve(&rc.p, 10, 10, &rcc));
    CHECK(rcc.feasible && rcc.acc_loss == 1.0 && ro[0] == 0 && ro[1] == 0);
    CHECK_OK(scale_prepare(&rc.p, &P));
    scale_frontier rf;
    CHECK_OK(scale_frontier3(P, 10, 10, 10, &rf));
    CHECK(rf.n_points == 1 && rf.option[0] == 0 && rf.acc_loss[0] == 1.0);
    scale_frontier_free(&rf);
    /* ...whereas 0.5 vs 0 in a sum 0.5 + 1.0 is exact: option 1 dominates */
    rc.a[0][0] = 0.5;
    inst_wire(&rc, 0, 0);
    scale_prepared_free(P);
    CHECK_OK(scale_prepare(&rc.p, &P));
    CHECK(scale_prepared_kept(P, 0) == 1);
    scale_prepared_free(P);
}

/* A realistic 50x6 problem stays fast in nodes. */
static void test_large(void)
{
    rng r;
    rng_seed(&r, 99);
    static double a[50][6], l[50][6];
    static int64_t m[50][6];
    const double *ap[50], *lp[50];
    const int64_t *mp[50];
    int n[50];
    double lmin = 0, lmax = 0;
    for (int b = 0; b < 50; b++) {
        double base_l = 0.5 + unif(&r) * 4, base_m = 1e5 + unif(&r) * 1e6, sens = unif(&r) * 0.05;
        for (int s = 0; s < 6; s++) {
            double sp = 0.9 * s / 5.0;
            a[b][s] = sens * pow(sp, 1.5 + unif(&r)) + (s ? (unif(&r) - 0.5) * 0.0005 : 0);
            l[b][s] = base_l * (1 - 0.8 * sp) * (1 + (unif(&r) - 0.5) * 0.05);
            m[b][s] = (int64_t)(base_m * (1 - sp) * (1 - sp));
        }
        lmin += l[b][5], lmax += l[b][0];
        ap[b] = a[b], lp[b] = l[b], mp[b] = m[b], n[b] = 6;
    }
    scale_problem p = {50, n, ap, lp, mp, 3.0, 1 << 20};
    scale_prepared *P;
    CHECK_OK(scale_prepare(&p, &P));
    int64_t worst = 0;
    for (int k = 0; k < 50; k++) {
        int opt[50];
        scale_choice c = {.option = opt};
        double T = 3.0 + lmin + (lmax - lmin) * (0.1 + 0.8 * unif(&r));
        CHECK_OK(scale_solve_prepared(P, T, INT64_MAX / 2, &c));
        CHECK(c.feasible && c.latency <= T);
        worst = c.nodes_explored > worst ? c.nodes_explored : worst;
    }
    printf("realistic 50x6: at most %lld nodes per decision\n", (long long)worst);

    /* Frontiers of a realistic problem: every point is what its composition
     * costs, losses rise while the resource falls, and each point is the
     * optimum for a budget equal to its own resource use. */
    p.n_blocks = 20;
    scale_prepared *Q;
    CHECK_OK(scale_prepare(&p, &Q));
    for (int axis = 0; axis < 2; axis++) {
        scale_frontier f;
        CHECK_OK(scale_frontier2(Q, (scale_axis)axis, DBL_MAX, INT64_MAX, 100000, &f));
        bool ok = f.n_points > 10 && !f.truncated;
        for (int i = 0; ok && i < f.n_points; i++) {
            double A, L;
            int64_t M;
            CHECK_OK(scale_cost(&p, &f.option[(size_t)i * 20], &A, &L, &M));
            ok = A == f.acc_loss[i] && L == f.latency[i] && M == f.memory[i];
            if (i > 0)
                ok = ok && f.acc_loss[i] > f.acc_loss[i - 1] &&
                     (axis ? f.memory[i] < f.memory[i - 1] : f.latency[i] < f.latency[i - 1]);
        }
        for (int i = 0; ok && i < f.n_points; i += 1 + f.n_points / 25) {
            int opt[20];
            scale_choice c = {.option = opt};
            CHECK_OK(scale_solve_prepared(Q, axis ? DBL_MAX : f.latency[i], axis ? f.memory[i] : INT64_MAX, &c));
            ok = c.acc_loss == f.acc_loss[i];
        }
        printf("realistic 20x6 %s frontier: %d points, %lld nodes\n", axis ? "memory" : "latency", f.n_points,
               (long long)f.nodes_explored);
        CHECK(ok);
        scale_frontier_free(&f);
    }
    scale_prepared_free(Q);
    scale_prepared_free(P);
}

/* Past a size limit only every k-th suffix keeps its LP tables: still
 * exact, so a prepare with small tables answers exactly as one with full
 * tables (200 realistic blocks; both budgets binding in some decisions). */
static void test_strided_tables(void)
{
    enum { NB = 200 };
    static double a[NB][6], l[NB][6];
    static int64_t m[NB][6];
    static const double *ap[NB], *lp[NB];
    static const int64_t *mp[NB];
    static int n[NB];
    rng r;
    rng_seed(&r, 5);
    double lmin = 0, lmax = 0, mmin = 0, mmax = 0;
    for (int b = 0; b < NB; b++) {
        double t = 0.3 + 4.7 * unif(&r), k = 0.5 + 0.45 * unif(&r), w = 5e4 + 3e6 * unif(&r);
        double sens = 0.005 + 0.075 * unif(&r), pw = 1.2 + 1.8 * unif(&r);
        for (int s = 0; s < 6; s++) {
            double sp = 0.9 * s / 5;
            a[b][s] = sens * pow(sp, pw) + (s ? (unif(&r) - 0.5) * 0.002 : 0);
            l[b][s] = t * (1 - k * sp) * (1 + (unif(&r) - 0.5) * 0.06);
            m[b][s] = (int64_t)(w * (1 - sp) * (1 - sp)) + 256;
        }
        lmin += fmin(l[b][5], l[b][0]), lmax += l[b][0], mmin += (double)m[b][5], mmax += (double)m[b][0];
        ap[b] = a[b], lp[b] = l[b], mp[b] = m[b], n[b] = 6;
    }
    scale_problem p = {NB, n, ap, lp, mp, 0, 0};
    scale_prepared *full, *small;
    CHECK_OK(scale_prepare(&p, &full));
    CHECK_OK(scale_prepare_limited(&p, 1 << 15, &small));
    rng_seed(&r, 9);
    int same = 0;
    int64_t nodes[2] = {0, 0};
    for (int k = 0; k < 3; k++) {
        double T = lmin + (lmax - lmin) * (0.1 + 0.8 * unif(&r));
        int64_t M = (int64_t)(mmin + (mmax - mmin) * (0.1 + 0.8 * unif(&r)));
        if (k < 2)
            M = INT64_MAX;
        int o1[NB], o2[NB];
        scale_choice c1 = {.option = o1}, c2 = {.option = o2};
        CHECK_OK(scale_solve_prepared(full, T, M, &c1));
        CHECK_OK(scale_solve_prepared(small, T, M, &c2));
        same += c1.feasible && c1.acc_loss == c2.acc_loss && c1.latency == c2.latency &&
                c1.memory == c2.memory && memcmp(o1, o2, sizeof o1) == 0;
        nodes[0] += c1.nodes_explored, nodes[1] += c2.nodes_explored;
    }
    printf("200 blocks, full vs strided LP tables: %d/3 identical (%lld vs %lld nodes)\n", same,
           (long long)nodes[0], (long long)nodes[1]);
    CHECK(same == 3);
    scale_prepared_free(full);
    scale_prepared_free(small);
}

/* ---- bad input ------------------------------------------------------------------------ */

static void test_bad_input(void)
{
    inst x = {.B = 2, .n = {2, 2}};
    for (int b = 0; b < 2; b++)
        for (int s = 0; s < 2; s++)
            x.a[b][s] = s, x.l[b][s] = 1, x.m[b][s] = 1;
    inst_wire(&x, 0, 0);
    int opt[2];
    scale_choice c = {.option = opt};
    scale_prepared *P = NULL;
    CHECK_FAILS(scale_prepare(NULL, &P), LEGO_ERR_ARG, "NULL problem");
    CHECK_FAILS(scale_solve(&x.p, 0, 10, &c), LEGO_ERR_ARG, "latency budget 0");
    CHECK_FAILS(scale_solve(&x.p, -1, 10, &c), LEGO_ERR_ARG, "latency budget -1");
    CHECK_FAILS(scale_solve(&x.p, NAN, 10, &c), LEGO_ERR_ARG, "latency budget nan");
    CHECK_FAILS(scale_solve(&x.p, INFINITY, 10, &c), LEGO_ERR_ARG, "latency budget inf");
    CHECK_FAILS(scale_solve(&x.p, 1, 0, &c), LEGO_ERR_ARG, "memory budget 0");
    CHECK_FAILS(scale_solve(&x.p, 1, -5, &c), LEGO_ERR_ARG, "memory budget -5");
    scale_choice nc = {0};
    CHECK_FAILS(scale_solve(&x.p, 1, 5, &nc), LEGO_ERR_ARG, "option array");

    inst y = x;
    y.n[1] = 0;
    inst_wire(&y, 0, 0);
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "block 1 has 0 options");
    y = x;
    y.B = 0;
    inst_wire(&y, 0, 0);
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "0 blocks");
    y = x;
    y.a[1][1] = NAN;
    inst_wire(&y, 0, 0);
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "block 1 option 1: accuracy loss nan");
    y = x;
    y.l[0][1] = -0.5;
    inst_wire(&y, 0, 0);
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "block 0 option 1: latency -0.5");
    y = x;
    y.l[1][0] = INFINITY;
    inst_wire(&y, 0, 0);
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "block 1 option 0: latency inf");
    y = x;
    y.m[1][0] = -3;
    inst_wire(&y, 0, 0);
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "block 1 option 0: memory -3 is negative");
    y = x;
    y.m[0][0] = INT64_MAX - 1;
    y.m[1][0] = 5;
    inst_wire(&y, 0, 0);
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "overflows");
    y = x;
    inst_wire(&y, NAN, 0);
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "base latency");
    inst_wire(&y, 0, -1);
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "base memory");
    y = x;
    y.ap[0] = NULL;
    y.p.acc_loss = y.ap;
    CHECK_FAILS(scale_solve(&y.p, 1, 5, &c), LEGO_ERR_ARG, "block 0: NULL");

    int bad_opt[2] = {0, 2};
    CHECK_FAILS(scale_cost(&x.p, bad_opt, NULL, NULL, NULL), LEGO_ERR_ARG, "block 1: option 2 out of range");
    int good[2] = {1, 0};
    double A, L;
    int64_t M;
    CHECK_OK(scale_cost(&x.p, good, &A, &L, &M));
    CHECK(A == 1 && L == 2 && M == 2);

    CHECK_OK(scale_prepare(&x.p, &P));
    scale_frontier f;
    CHECK_FAILS(scale_frontier3(P, 10, 10, 0, &f), LEGO_ERR_ARG, "max_points 0");
    CHECK_FAILS(scale_frontier2(P, (scale_axis)7, 10, 10, 5, &f), LEGO_ERR_ARG, "unknown axis");
    CHECK_FAILS(scale_frontier2(P, SCALE_AXIS_LATENCY, NAN, 10, 5, &f), LEGO_ERR_ARG, "latency budget");
    /* a 3-D frontier over the cap is refused, not cut */
    inst big = {.B = 6};
    for (int b = 0; b < 6; b++) {
        big.n[b] = 6;
        for (int s = 0; s < 6; s++)
            big.a[b][s] = s * (b + 1), big.l[b][s] = 6 - s + b * 0.1, big.m[b][s] = (int64_t)((s * 7 + b) % 6);
    }
    inst_wire(&big, 0, 0);
    scale_prepared *Q;
    CHECK_OK(scale_prepare(&big.p, &Q));
    CHECK_FAILS(scale_frontier3(Q, DBL_MAX, INT64_MAX, 10, &f), LEGO_ERR_UNSUPPORTED, "more than 10 points");
    CHECK_OK(scale_frontier2(Q, SCALE_AXIS_LATENCY, DBL_MAX, INT64_MAX, 4, &f));
    CHECK(f.n_points == 4 && f.truncated);
    scale_frontier_free(&f);
    scale_prepared_free(Q);
    scale_prepared_free(P);
}

/* ---- GLPK: an independent MILP model ---------------------------------------------- */

#ifdef LEGO_HAVE_GLPK
/* min sum a x  s.t.  sum_s x[b][s] = 1,  L0 + sum l x <= T,  M0 + sum m x <= M,
 * x binary. Returns 1 optimal (objective, choice), 0 infeasible, -1 error. */
static int glpk_solve(const inst *x, double T, int64_t Mb, double *obj, int *choice)
{
    glp_prob *lp = glp_create_prob();
    glp_set_obj_dir(lp, GLP_MIN);
    int nv = 0;
    for (int b = 0; b < x->B; b++)
        nv += x->n[b];
    glp_add_rows(lp, x->B + 2);
    glp_add_cols(lp, nv);
    int *ia = malloc((size_t)(3 * nv + 1) * sizeof(int)), *ja = malloc((size_t)(3 * nv + 1) * sizeof(int));
    double *ar = malloc((size_t)(3 * nv + 1) * sizeof(double));
    int ne = 0, col = 0;
    for (int b = 0; b < x->B; b++) {
        glp_set_row_bnds(lp, b + 1, GLP_FX, 1, 1);
        for (int s = 0; s < x->n[b]; s++) {
            col++;
            glp_set_col_kind(lp, col, GLP_BV);
            glp_set_obj_coef(lp, col, x->a[b][s]);
            ia[++ne] = b + 1, ja[ne] = col, ar[ne] = 1;
            ia[++ne] = x->B + 1, ja[ne] = col, ar[ne] = x->l[b][s];
            ia[++ne] = x->B + 2, ja[ne] = col, ar[ne] = (double)x->m[b][s];
        }
    }
    glp_set_row_bnds(lp, x->B + 1, GLP_UP, 0, T - x->p.base_latency);
    glp_set_row_bnds(lp, x->B + 2, GLP_UP, 0, (double)(Mb - x->p.base_memory));
    glp_load_matrix(lp, ne, ia, ja, ar);
    glp_iocp parm;
    glp_init_iocp(&parm);
    parm.presolve = GLP_ON;
    parm.msg_lev = GLP_MSG_OFF;
    parm.mip_gap = 0;
    parm.tol_int = 1e-9;
    parm.tol_obj = 1e-12;
    int ret = glp_intopt(lp, &parm), res = -1;
    int status = glp_mip_status(lp);
    if (ret == 0 && status == GLP_OPT) {
        *obj = glp_mip_obj_val(lp);
        col = 0;
        for (int b = 0; b < x->B; b++) {
            choice[b] = -1;
            for (int s = 0; s < x->n[b]; s++)
                if (glp_mip_col_val(lp, ++col) > 0.5)
                    choice[b] = s;
        }
        res = 1;
    } else if (ret == GLP_ENOPFS || ret == GLP_ENODFS || status == GLP_NOFEAS) {
        res = 0;
    }
    free(ia);
    free(ja);
    free(ar);
    glp_delete_prob(lp);
    return res;
}

static void test_glpk(void)
{
    glp_term_out(GLP_OFF);
    rng r;
    rng_seed(&r, 4242);
    int n = 0, bad = 0, infeas = 0;
    for (int it = 0; it < 300; it++) {
        inst x;
        int kind = it % 2 ? K_REALISTIC : K_REAL;
        random_inst(&r, &x, kind, 14, INT64_MAX);
        double T;
        int64_t M;
        random_budget(&r, &x, &T, &M);
        if (T == DBL_MAX)
            T = 1e9, M = (int64_t)1e15;
        int opt[MAXB], gopt[MAXB];
        scale_choice c = {.option = opt};
        CHECK_OK(scale_solve(&x.p, T, M, &c));
        double gobj = 0;
        int g = glpk_solve(&x, T, M, &gobj, gopt);
        n++;
        bool ok;
        if (g < 0) {
            ok = false;
        } else if (g == 0) {
            ok = !c.feasible;
            infeas++;
        } else {
            /* GLPK works in doubles with tolerances: its choice may sit just
             * past a budget. It can never beat a strictly feasible optimum. */
            double A, L;
            int64_t Mm;
            CHECK_OK(scale_cost(&x.p, gopt, &A, &L, &Mm));
            bool gfeas = L <= T && Mm <= M;
            double tol = 1e-7 * (1 + fabs(gobj));
            ok = (!c.feasible && !gfeas) || (c.feasible && gobj >= c.acc_loss - tol &&
                                            (!gfeas || c.acc_loss <= A + 1e-12 * (1 + fabs(A))));
        }
        if (!ok) {
            bad++;
            if (report_left-- > 0)
                fprintf(stderr, "glpk mismatch: B=%d glpk %d obj %.17g, ours feasible %d obj %.17g\n", x.B, g,
                        gobj, c.feasible, c.acc_loss);
        }
    }
    printf("GLPK cross-check: %d instances (%d infeasible), %d mismatches\n", n, infeas, bad);
    CHECK(bad == 0);
}
#endif

int main(void)
{
    test_hand();
    test_bad_input();
    test_random_vs_exhaustive();
    test_frontiers();
    test_large();
    test_strided_tables();
#ifdef LEGO_HAVE_GLPK
    test_glpk();
#else
    printf("GLPK cross-check: skipped (glpk was not found at configure time; scripts/install-deps.sh installs "
           "libglpk-dev)\n");
#endif
    return harness_finish();
}
