/* exec.h - running a prepared graph.
 *
 * A plan fixes, for the current shapes, the nodes to run and where every
 * activation lives: one arena whose offsets come from value lifetimes, so a
 * buffer is reused as soon as its last reader has run. */
#ifndef LEGO_GRAPH_EXEC_H
#define LEGO_GRAPH_EXEC_H

#include "graph.h"

typedef struct exec_plan {
    lego_tensor *vt;      /* per value: shape, and data once bound */
    size_t *offset;       /* per value: offset in the arena, or SIZE_MAX */
    int *steps, n_steps;  /* nodes to run, in order (folded ones left out) */
    size_t arena_bytes;
    unsigned char *arena;
} exec_plan;

/* Lay values out in one arena by lifetime: value v (bytes[v], defined at
 * step def[v] >= 0, last read at step last[v]) never shares memory with a
 * value alive at the same time, nor with the inputs of the step defining it.
 * Values with def[v] < 0 get SIZE_MAX. Offsets are 64-byte aligned; *total
 * is the arena's size. */
lego_status arena_layout(int n_values, const size_t *bytes, const int *def, const int *last,
                         int n_steps, size_t *offset, size_t *total);

/* Build a plan for g's current shapes (after graph_infer). */
lego_status exec_plan_build(lego_graph *g, exec_plan *p);
void exec_plan_free(exec_plan *p);

/* inputs[i] matches graph input i; outputs[i] receives a new tensor. */
lego_status exec_run(lego_graph *g, exec_plan *p, const lego_tensor *const *inputs,
                     lego_tensor **outputs);

#endif
