/* bench_optimizer.c - decision time of the exact scaling optimizer on random
 * instances with realistic structure (accuracy loss rising, latency and memory
 * falling with sparsity), against the original's ILP solved by PuLP + CBC
 * (bench/pulp_optimizer.py, run with Debian's /usr/bin/python3) on the same
 * instances and budgets.
 *
 *   bench_optimizer [solves-per-config] [pulp-solves-per-config] [blocks options]
 *
 * Prints, per blocks x options: our median microseconds per decision (random
 * budgets on a prepared problem), the median search nodes, PuLP's median
 * milliseconds, the ratio (on the same decisions) and how many objectives
 * agree. Without python3-pulp and coinor-cbc it prints our numbers only. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "runtime/optimizer.h"

#ifndef LEGO_SOURCE_DIR
#define LEGO_SOURCE_DIR "."
#endif

#define MAXB 50
#define MAXS 6
#define INSTANCES 20

typedef struct inst {
    int B, S, n[MAXB];
    double a[MAXB][MAXS], l[MAXB][MAXS];
    int64_t m[MAXB][MAXS];
    const double *ap[MAXB], *lp[MAXB];
    const int64_t *mp[MAXB];
    scale_problem p;
    double lmin, lmax;
    int64_t mmin, mmax;
} inst;

typedef struct decision {
    int inst;
    double T;
    int64_t M;
    double us, obj;
    int64_t nodes;
    bool feasible;
} decision;

static double unif(rng *r)
{
    return (double)(rng_next_u64(r) >> 11) * 0x1p-53;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Latency in milliseconds, memory in bytes, loss as a fraction of accuracy. */
static void make_inst(rng *r, inst *x, int B, int S)
{
    x->B = B;
    x->S = S;
    x->lmin = x->lmax = 0;
    x->mmin = x->mmax = 0;
    for (int b = 0; b < B; b++) {
        x->n[b] = S;
        double t = 0.3 + 4.7 * unif(r), k = 0.5 + 0.45 * unif(r);
        double w = 5e4 + 3e6 * unif(r), sens = 0.005 + 0.075 * unif(r), pw = 1.2 + 1.8 * unif(r);
        for (int s = 0; s < S; s++) {
            double sp = 0.9 * s / (S - 1);
            x->a[b][s] = sens * pow(sp, pw) + (s ? (unif(r) - 0.5) * 0.002 : 0);
            x->l[b][s] = t * (1 - k * sp) * (1 + (unif(r) - 0.5) * 0.06);
            x->m[b][s] = (int64_t)(w * (1 - sp) * (1 - sp)) + 256;
        }
        x->ap[b] = x->a[b];
        x->lp[b] = x->l[b];
        x->mp[b] = x->m[b];
        x->lmin += x->l[b][S - 1] < x->l[b][0] ? x->l[b][S - 1] : x->l[b][0];
        x->lmax += x->l[b][0];
        x->mmin += x->m[b][S - 1];
        x->mmax += x->m[b][0];
    }
    double L0 = 0.1 * x->lmax;
    int64_t M0 = (int64_t)(4e6 * (1 + unif(r)));
    x->lmin += L0, x->lmax += L0, x->mmin += M0, x->mmax += M0;
    x->p = (scale_problem){B, x->n, x->ap, x->lp, x->mp, L0, M0};
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static bool have_pulp(void)
{
    return system("/usr/bin/python3 -c 'import pulp, shutil, sys; "
                  "sys.exit(0 if pulp.PULP_CBC_CMD().available() or shutil.which(\"cbc\") else 1)' "
                  ">/dev/null 2>&1") == 0;
}

static void write_list(FILE *f, const inst *x, int which)
{
    fputc('[', f);
    for (int b = 0; b < x->B; b++) {
        fputs(b ? ",[" : "[", f);
        for (int s = 0; s < x->S; s++) {
            if (which == 0)
                fprintf(f, "%s%.17g", s ? "," : "", x->a[b][s]);
            else if (which == 1)
                fprintf(f, "%s%.17g", s ? "," : "", x->l[b][s]);
            else
                fprintf(f, "%s%lld", s ? "," : "", (long long)x->m[b][s]);
        }
        fputc(']', f);
    }
    fputc(']', f);
}

/* Runs PuLP on the first n decisions; returns its median seconds (or -1),
 * counts the objectives that agree with ours (1e-6 relative), and those where
 * CBC's answer is worse than ours (CBC stops within its own tolerances; the
 * tests check ours against exhaustive search and GLPK). A PuLP objective
 * below ours would be a bug here and is reported as such. */
static double run_pulp(const inst *insts, const decision *d, int n, int *agree, int *cbc_worse)
{
    char in[] = "/tmp/bench_optimizer_XXXXXX", out[64];
    int fd = mkstemp(in);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    fputs("{\"problems\":[", f);
    for (int i = 0; i < n; i++) {
        const inst *x = &insts[d[i].inst];
        fputs(i ? ",{\"acc\":" : "{\"acc\":", f);
        write_list(f, x, 0);
        fputs(",\"lat\":", f);
        write_list(f, x, 1);
        fputs(",\"mem\":", f);
        write_list(f, x, 2);
        fprintf(f, ",\"L0\":%.17g,\"M0\":%lld,\"T\":%.17g,\"M\":%lld}", x->p.base_latency,
                (long long)x->p.base_memory, d[i].T, (long long)d[i].M);
    }
    fputs("]}\n", f);
    fclose(f);
    snprintf(out, sizeof out, "%s.out", in);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/pulp_optimizer.py %s %s", LEGO_SOURCE_DIR, in, out);
    double med = -1;
    *agree = *cbc_worse = 0;
    if (system(cmd) == 0 && (f = fopen(out, "r"))) {
        if (fscanf(f, "median_s %lf", &med) != 1)
            med = -1;
        for (int i = 0; i < n; i++) {
            int status;
            double obj;
            char buf[64];
            if (fscanf(f, "%d %63s", &status, buf) != 2)
                break;
            obj = strtod(buf, NULL);
            double tol = 1e-6 * (1 + fabs(obj));
            bool ok = d[i].feasible ? status == 1 && fabs(obj - d[i].obj) <= tol : status != 1;
            bool worse = d[i].feasible && status == 1 && obj > d[i].obj + tol;
            if (!ok && !worse)
                fprintf(stderr, "BUG? decision %d: ours %s %.9g, PuLP status %d objective %.9g\n", i,
                        d[i].feasible ? "feasible" : "infeasible", d[i].obj, status, obj);
            *agree += ok;
            *cbc_worse += worse;
        }
        fclose(f);
    }
    remove(in);
    remove(out);
    return med;
}

int main(int argc, char **argv)
{
    int solves = argc > 1 ? atoi(argv[1]) : 2000;
    int psolves = argc > 2 ? atoi(argv[2]) : 12;
    int only_b = argc > 4 ? atoi(argv[3]) : 0, only_s = argc > 4 ? atoi(argv[4]) : 0;
    if (solves < 1 || psolves < 0 || psolves > solves) {
        fprintf(stderr, "usage: bench_optimizer [solves-per-config] [pulp-solves-per-config] [blocks options]\n");
        return 2;
    }
    bool pulp = psolves > 0 && have_pulp();
    if (psolves == 0)
        printf("PuLP comparison off (0 PuLP decisions asked for): our numbers only\n");
    else if (!pulp)
        printf("PuLP/CBC not available (python3-pulp, coinor-cbc: scripts/install-deps.sh --dev): "
               "our numbers only\n");
    static const int Bs[3] = {8, 20, 50}, Ss[2] = {4, 6};
    static inst insts[INSTANCES];
    decision *d = calloc((size_t)solves, sizeof *d);
    double *t = malloc((size_t)solves * sizeof *t), *nodes = malloc((size_t)solves * sizeof *nodes);
    printf("%-13s %11s %11s %9s %9s %10s %9s %14s %9s\n", "blocks x opts", "ours med us", "ours p90 us",
           "med nodes", "p90 nodes", "infeasible", "PuLP ms", "PuLP/ours", "agree");
    for (int bi = 0; bi < 3; bi++) {
        for (int si = 0; si < 2; si++) {
            int B = Bs[bi], S = Ss[si];
            if (only_b && (B != only_b || S != only_s))
                continue;
            rng r;
            rng_seed(&r, (uint64_t)(1000 * B + S));
            scale_prepared *P[INSTANCES];
            for (int i = 0; i < INSTANCES; i++) {
                make_inst(&r, &insts[i], B, S);
                lego_status st = scale_prepare(&insts[i].p, &P[i]);
                if (st.code != LEGO_OK) {
                    fprintf(stderr, "prepare: %s\n", lego_status_msg(st));
                    return 1;
                }
            }
            int infeasible = 0;
            for (int k = 0; k < solves; k++) {
                int i = k % INSTANCES;
                const inst *x = &insts[i];
                /* budgets anywhere from the smallest to the largest model */
                d[k].inst = i;
                d[k].T = x->lmin + (x->lmax - x->lmin) * (0.02 + 0.96 * unif(&r));
                d[k].M = x->mmin + (int64_t)((double)(x->mmax - x->mmin) * (0.02 + 0.96 * unif(&r)));
                int opt[MAXB];
                scale_choice c = {.option = opt};
                double t0 = now();
                lego_status st = scale_solve_prepared(P[i], d[k].T, d[k].M, &c);
                double t1 = now();
                if (st.code != LEGO_OK) {
                    fprintf(stderr, "solve: %s\n", lego_status_msg(st));
                    return 1;
                }
                d[k].us = (t1 - t0) * 1e6;
                d[k].obj = c.acc_loss;
                d[k].feasible = c.feasible;
                d[k].nodes = c.nodes_explored;
                infeasible += !c.feasible;
                t[k] = d[k].us;
                nodes[k] = (double)c.nodes_explored;
            }
            for (int i = 0; i < INSTANCES; i++)
                scale_prepared_free(P[i]);
            double med = median(t, solves), p90 = t[(int)(0.9 * (solves - 1))];
            double mnodes = median(nodes, solves), pnodes = nodes[(int)(0.9 * (solves - 1))];
            char label[32];
            snprintf(label, sizeof label, "%d x %d", B, S);
            if (!pulp) {
                printf("%-13s %11.2f %11.2f %9.0f %9.0f %10d\n", label, med, p90, mnodes, pnodes, infeasible);
                fflush(stdout);
                continue;
            }
            int agree = 0, worse = 0;
            double pmed = run_pulp(insts, d, psolves, &agree, &worse);
            for (int k = 0; k < psolves; k++)
                t[k] = d[k].us;
            double ours_same = median(t, psolves);
            if (pmed < 0)
                printf("%-13s %11.2f %11.2f %9.0f %9.0f %10d %9s\n", label, med, p90, mnodes, pnodes, infeasible,
                       "failed");
            else
                printf("%-13s %11.2f %11.2f %9.0f %9.0f %10d %9.1f %14.0f %6d/%d%s\n", label, med, p90, mnodes,
                       pnodes, infeasible, pmed * 1e3, pmed * 1e6 / ours_same, agree, psolves,
                       worse ? " (rest: CBC worse)" : "");
            fflush(stdout);
        }
    }
    printf("(%d decisions per row on %d instances, random budgets; PuLP on the first %d of them, ratio "
           "against our median on those same decisions)\n",
           solves, INSTANCES, psolves);
    free(d);
    free(t);
    free(nodes);
    return 0;
}
