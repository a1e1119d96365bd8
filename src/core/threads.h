/* threads.h - the one owner of threads: a small pool behind a parallel-for.
 *
 * Kernels split their work into contiguous chunks of an index range and hand
 * them to parallel_for; the pool's workers and the calling thread run the
 * chunks, and parallel_for returns when all are done. Workers wait passively
 * (a condition variable), never spin: on a machine whose cores are shared
 * with other processes, a spinning worker steals the core another thread
 * needs. The pool starts lazily, on the first call that can use it, with
 * lego_set_num_threads' count (default: LEGO_NUM_THREADS from the
 * environment, else every online core), and stops at exit or at
 * lego_shutdown_threads.
 *
 * One job at a time: a call made while the pool is running another job (from
 * another application thread, or from inside a chunk: nested parallelism)
 * runs its chunks inline on the calling thread instead, one after another in
 * chunk order. Because chunk boundaries depend only on (n, chunks), never on
 * who runs them, a kernel whose chunks write disjoint outputs gives the same
 * bits whichever way it ran.
 *
 * BLAS stays single-threaded (blas.c): parallelism is ours, around it. */
#ifndef LEGO_CORE_THREADS_H
#define LEGO_CORE_THREADS_H

#include <stdint.h>

#include "legodnn.h"

/* One chunk: items [begin, end) of the range. `chunk` is the chunk's index,
 * 0 <= chunk < the number of chunks, and no two chunks of one call share it:
 * index per-chunk scratch or partial sums with it. */
typedef void par_fn(void *ctx, int64_t begin, int64_t end, int chunk);

/* The configured number of threads (at least 1). */
int par_threads(void);

/* Work, in rough float operations, that repays waking a thread: kernels cut
 * their ranges so that no chunk holds less, and run smaller jobs inline. */
#define PAR_MIN_WORK 65536.0

/* Sets that threshold (PAR_MIN_WORK when work <= 0). Tests lower it so that
 * small shapes take the parallel paths too. */
void par_set_min_work(double work);

/* How many chunks a range of n items should be cut into when each chunk
 * should hold at least min_items of them (to repay waking a thread): between
 * 1 and par_threads(), and at most n. */
int par_chunks(int64_t n, int64_t min_items);
/* par_chunks for items of about `work` float operations each, no chunk
 * holding less than the threshold above. */
int par_chunks_work(int64_t n, double work);

/* Cuts [0, n) into min(n, chunks) contiguous chunks of near-equal size,
 * chunk k being [k*n/chunks, (k+1)*n/chunks), and runs fn on each, on the
 * pool and the calling thread. With chunks <= 1, or one thread configured,
 * fn runs inline. Returns when every chunk is done. */
void parallel_for_chunks(int64_t n, int chunks, par_fn *fn, void *ctx);

/* parallel_for_chunks with one chunk per configured thread. */
void parallel_for(int64_t n, par_fn *fn, void *ctx);

#endif
