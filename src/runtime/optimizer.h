/* optimizer.h - the exact scaling optimizer: which descendant to run for each
 * block so that the model fits a latency and a memory budget with the least
 * accuracy loss (LegoDNN's decision; the original solves it as an ILP with
 * PuLP/CBC in 0.2-0.5 s, this answers in microseconds).
 *
 * Problem. B blocks; block b has options s = 0..S_b-1 (its descendants,
 * option 0 usually the original block), each with an accuracy loss a[b][s]
 * (any finite real: measured losses can be slightly negative), a latency
 * l[b][s] >= 0 and a memory m[b][s] >= 0 (bytes). The rest of the model costs
 * L0 = base_latency and M0 = base_memory. Choose one option per block to
 *     minimise  A = sum_b a[b][s_b]
 *     s.t.      L = L0 + sum_b l[b][s_b] <= T   and   Mem = M0 + sum_b m[b][s_b] <= M.
 * Sums are taken in block order 0..B-1, left to right, starting from 0.0 for
 * A, L0 for L and M0 for Mem ("canonical sums"); these exact double values are
 * what the optimizer minimises and checks, so the answer is exactly what an
 * exhaustive search over all compositions with the same arithmetic returns.
 * Memory is int64 and exact.
 * Ties: lower A, then lower latency, then lower memory, then the
 * lexicographically smallest choice vector (option indices in block order).
 *
 * Method (exact branch and bound; no discretisation anywhere):
 *  1. scale_prepare drops, per block, every option that another option of the
 *     same block dominates (no worse in loss, latency and memory). An option
 *     is only dropped when the replacement can never lose a tie: it has a
 *     lower index, or it is strictly better in a quantity whose sums are exact
 *     (memory always; loss or latency when all their values lie on a common
 *     binary grid, e.g. integers).
 *  2. Blocks are searched in order of decreasing latency range (the blocks
 *     whose choice moves the budget most first); within a block the children
 *     are visited in order of their lower bounds (best first).
 *  3. A node's lower bound on the loss of any completion is the largest of
 *     (a) the sum of the per-block minimum losses of the remaining blocks,
 *     (b) the LP relaxation of the remaining multiple-choice knapsack with the
 *         latency constraint alone, (c) the same with the memory constraint
 *         alone, and, when both budgets bind, (d) a Lagrangian bound
 *         F(T_rem) - mu * M_rem, where F is the LP with objective
 *         loss + mu * memory under the latency constraint and mu is the
 *         multiplier that makes (d) equal, at the root, to the LP relaxation
 *         with both constraints (found per decision by cutting planes on the
 *         concave dual, typically a handful of linear-time LP solves).
 *         Each LP is an exact piecewise-linear function of the remaining
 *         budget: the greedy over the lower convex hull of (resource, cost)
 *         per block, merged by slope for every suffix of the block order
 *         ((b), (c) once at prepare time, (d) per decision), so a bound costs
 *         one binary search. Nodes whose least remaining latency or memory
 *         cannot fit are pruned. All float bounds are made rigorous with a
 *         rounding margin derived from the data (zero when the values lie on a
 *         binary grid), so no composition that could win or tie is ever cut.
 *         Ties are resolved exactly: a node that can at best tie on loss is
 *         pruned by lower bounds on its latency and memory given that loss
 *         (LP tables of latency and memory over loss) and by the order of its
 *         fixed choices, so even many symmetric blocks stay fast.
 *  4. Infeasible budgets (no composition fits both): the answer is the
 *     composition that needs the smallest common scale factor z of both
 *     budgets, z = max(L/T, Mem/M) (a second branch and bound finds the
 *     least z exactly), and among those the usual order (loss, latency,
 *     memory, lexicographic). out->feasible is false, out->budget_scale is z
 *     and the excesses over each budget are reported. The call still returns
 *     LEGO_OK: an infeasible budget is an answer, not an error.
 * The prepared form (scale_prepare) holds everything that does not depend on
 * the budgets; a decision is then scale_solve_prepared and allocates nothing
 * of its own.
 *
 * Cost (bench/bench_optimizer, random budgets on realistic instances, one
 * core): 20 blocks x 6 options, median ~17 us per decision (p90 ~50 us); 50 x
 * 6, median ~75 us (p90 ~300 us); the original's PuLP/CBC call takes ~50 ms
 * here. Exact search is worst-case exponential: hundreds of blocks with both
 * budgets binding can take milliseconds to seconds.
 *
 * Errors: malformed problems (no blocks or options, NaN or infinite values,
 * negative latency or memory, sums that overflow) and budgets that are zero,
 * negative, NaN or infinite give LEGO_ERR_ARG naming the block and option.
 * Pass DBL_MAX or INT64_MAX for "no budget". */
#ifndef LEGO_RUNTIME_OPTIMIZER_H
#define LEGO_RUNTIME_OPTIMIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"

#define SCALE_MAX_BLOCKS 4096
#define SCALE_MAX_OPTIONS 4096

/* The costs of every option: acc_loss[b], latency[b], memory[b] each point at
 * n_options[b] values. The optimizer copies what it needs at prepare time. */
typedef struct scale_problem {
    int n_blocks;
    const int *n_options;          /* [n_blocks] */
    const double *const *acc_loss; /* [n_blocks][n_options[b]] */
    const double *const *latency;  /* [n_blocks][n_options[b]], >= 0, same unit as budgets */
    const int64_t *const *memory;  /* [n_blocks][n_options[b]], bytes, >= 0 */
    double base_latency;           /* latency outside the blocks, >= 0 */
    int64_t base_memory;           /* memory outside the blocks (frame, arena), >= 0 */
} scale_problem;

/* One decision. `option` is supplied by the caller: n_blocks ints, filled with
 * the chosen option index of each block. The sums are canonical (see above). */
typedef struct scale_choice {
    int *option;
    double acc_loss, latency;
    int64_t memory;
    bool feasible;          /* false: no composition fits; this is the closest */
    double budget_scale;    /* 1 when feasible; else z = max(latency/T, memory/M) */
    double latency_excess;  /* max(0, latency - T) */
    int64_t memory_excess;  /* max(0, memory - M) */
    int64_t nodes_explored; /* search nodes visited, for benchmarks and tests */
} scale_choice;

typedef struct scale_prepared scale_prepared;

lego_status scale_prepare(const scale_problem *p, scale_prepared **out);
/* The same with a cap on each LP table (5 tables of 32 bytes per entry). A
 * table for every suffix of the block order has about B^2 * S / 2 entries;
 * past the cap only every k-th suffix is kept and the blocks in between are
 * bounded by their minima (exact still; the bounds are weaker, so the search
 * visits more nodes). scale_prepare uses SCALE_TABLE_ENTRIES, which keeps
 * every suffix up to about 640 blocks of 6 options. */
#define SCALE_TABLE_ENTRIES ((int64_t)1 << 20)
lego_status scale_prepare_limited(const scale_problem *p, int64_t max_table_entries, scale_prepared **out);
void scale_prepared_free(scale_prepared *sp);
/* Number of options kept for block b after dominance pruning. */
int scale_prepared_kept(const scale_prepared *sp, int block);
/* One decision on a prepared problem. Not reentrant on the same `sp` (it holds
 * the search scratch): use one prepared problem per thread. */
lego_status scale_solve_prepared(scale_prepared *sp, double latency_budget, int64_t memory_budget,
                                 scale_choice *out);
/* Prepare, solve, free: for one-off decisions. */
lego_status scale_solve(const scale_problem *p, double latency_budget, int64_t memory_budget,
                        scale_choice *out);
/* The canonical sums of a composition (option[b] for each block). */
lego_status scale_cost(const scale_problem *p, const int *option, double *acc_loss,
                       double *latency, int64_t *memory);

/* ---- Pareto frontiers ---------------------------------------------------
 * Points are compositions with their canonical sums; option holds n_points
 * rows of n_blocks option indices. */
typedef struct scale_frontier {
    int n_points, n_blocks;
    double *acc_loss;  /* [n_points] */
    double *latency;   /* [n_points] */
    int64_t *memory;   /* [n_points] */
    int *option;       /* [n_points * n_blocks] */
    bool truncated;    /* 2-D only: stopped after max_points points */
    int64_t nodes_explored;
} scale_frontier;

/* The exact 3-D frontier of (loss, latency, memory) over the compositions
 * that fit both budgets: every distinct non-dominated triple once (with the
 * lexicographically smallest composition that achieves it), sorted by loss,
 * then latency, then memory. Built by merging blocks in order and dropping
 * dominated partial compositions. If the frontier, or a partial one while it
 * is built, has more than max_points points, fails with LEGO_ERR_UNSUPPORTED
 * (use scale_frontier2 then). */
lego_status scale_frontier3(scale_prepared *sp, double latency_budget, int64_t memory_budget,
                            int max_points, scale_frontier *out);

typedef enum scale_axis {
    SCALE_AXIS_LATENCY, /* loss vs latency, memory <= memory_budget */
    SCALE_AXIS_MEMORY   /* loss vs memory, latency <= latency_budget */
} scale_axis;

/* The exact 2-D frontier of loss against one resource, with both budgets
 * applied: by the epsilon-constraint method, each point is an exact solve with
 * the axis budget just below the previous point's usage. One point per
 * distinct (loss, resource) pair (the composition the solver prefers: least of
 * the other resource, then lexicographic), sorted by loss ascending (so the
 * resource descends). At most max_points points, the lowest-loss ones;
 * `truncated` says more exist. */
lego_status scale_frontier2(scale_prepared *sp, scale_axis axis, double latency_budget,
                            int64_t memory_budget, int max_points, scale_frontier *out);
void scale_frontier_free(scale_frontier *f);

#endif
