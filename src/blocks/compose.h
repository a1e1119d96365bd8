/* compose.h - one ordinary model from a block library: the frame with one
 * chosen descendant spliced in for every block.
 *
 * This is the offline composition that profiling and `legodnn scale
 * --export` use (the runtime's live block switching comes later). The
 * result is a plain graph: the frame's nodes and the chosen descendants'
 * nodes, with the model's inputs and outputs; every block boundary becomes
 * an ordinary value again. Names stay unique: a descendant value or
 * initializer whose name the composed graph already has (a constant copied
 * into both the frame and a block) is renamed "<name>__block<i>". With every
 * block at sparsity 0 the composition computes exactly what the teacher
 * does. */
#ifndef LEGO_BLOCKS_COMPOSE_H
#define LEGO_BLOCKS_COMPOSE_H

#include "library.h"

/* choice[i] is the descendant of block i (an index into lib->sparsities).
 * Loads what it needs through library_frame and library_descendant; out is
 * initialised here and prepared (graph_infer has run) at the library's
 * shapes. */
lego_status compose_model(block_library *lib, const int *choice, lego_graph *out);

/* The same from graphs in memory: the frame (model inputs first, then one
 * input per block exit; model outputs first) and one descendant per block,
 * whose single input and output are named as block i's entry and exit. */
lego_status compose_graphs(const lego_graph *frame, int model_inputs, int model_outputs,
                           const lego_graph *const *desc, int n_blocks, const char *name, lego_graph *out);

#endif
