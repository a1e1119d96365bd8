/* threads.h - the one owner of threads: a small pool behind a parallel-for.
 *
 * Kernels split their work into contiguous chunks of an index range and hand
 * them to parallel_for; the pool's workers and the calling thread run the
 * chunks, and parallel_for returns when all are done. Workers wait on a
 * condition variable after a short poll (at most 150 us) that stops as soon
 * as it costs another thread its core (threads.c says how): on a machine
 * whose cores are shared with other processes, a spinning worker steals the
 * core another thread needs. The pool starts lazily, on the first call that can use it, with
 * lego_set_num_threads' count (default: LEGO_NUM_THREADS from the
 * environment, else every online core), and stops at exit or at
 * lego_shutdown_threads.
 *
 * One job at a time: a call made while the pool is running another job (from
 * another application thread, or from inside a chunk: nested parallelism)
 * runs its chunks inline on the calling thread instead, one after another in
 * chunk order. Kernels cut their work into units whose results never depend
 * on the chunk or thread that runs them, so they give the same bits however
 * the work was spread, and whatever the thread count.
 *
 * BLAS stays single-threaded (blas.c): parallelism is ours, around it. */
#ifndef LEGO_CORE_THREADS_H
#define LEGO_CORE_THREADS_H

#include <stdint.h>

#include "legodnn.h"

/* One chunk: items [begin, end) of the range, run by participant `thread`
 * (0 is the calling thread, 1.. the pool's workers), below the split's
 * thread count. A participant runs one chunk at a time, so per-thread
 * scratch indexed by `thread` needs no locking. Which thread runs which
 * chunk varies from run to run: results must not depend on it. */
typedef void par_fn(void *ctx, int64_t begin, int64_t end, int thread);

/* The configured number of threads (at least 1). */
int par_threads(void);

/* Work, in rough operations, that repays handing a chunk to a worker that
 * is polling for one: one element of a plain loop over memory counts 1 (a
 * GEMM's flops count 1/16: see conv.c). Kernels cut their ranges so that no
 * chunk holds less, and run smaller jobs inline. A worker that sleeps costs
 * far more: on the 2-core dev VM a woken thread took 50-90 us to start, and
 * a neighbour's process can delay it a whole time slice; so a job whose
 * chunks hold less than PAR_WAKE_FACTOR times this runs on the calling
 * thread alone unless a worker is polling. (The threshold was 16 times
 * higher, for every job, before workers polled: CIFAR MobileNetV2 at batch
 * 1 then ran most of its layers on one thread.) */
#define PAR_MIN_WORK 8192.0
#define PAR_WAKE_FACTOR 16.0

/* Sets that threshold (PAR_MIN_WORK when work <= 0). Tests lower it so that
 * small shapes take the parallel paths too. */
void par_set_min_work(double work);

/* The threshold now in force (for kernels that choose a shape-only cut by it:
 * the cut must be decided before the threads, never by them). */
double par_min_work(void);

/* How a range is cut: `chunks` contiguous chunks, run by at most `threads`
 * threads (allocate per-thread scratch for that many), each of about `work`
 * operations (0: unknown, as good as large). Up to
 * PAR_CHUNKS_PER_THREAD chunks per thread: when one thread is late (a busy
 * machine), the others take over more of the chunks. */
#define PAR_CHUNKS_PER_THREAD 4

typedef struct par_split {
    int chunks, threads;
    double work;
} par_split;

/* The split of n items of about `work` operations each: no chunk under the
 * threshold above, no more chunks than n. */
par_split par_split_work(int64_t n, double work);

/* Cuts [0, n) into min(n, s.chunks) contiguous chunks of near-equal size,
 * chunk k being [k*n/chunks, (k+1)*n/chunks), and runs fn on each, on the
 * calling thread and up to s.threads - 1 workers (never more than the
 * configured count). With one chunk or one thread, fn runs inline. Returns
 * when every chunk is done. */
void parallel_run(int64_t n, par_split s, par_fn *fn, void *ctx);

/* parallel_run for n items of one operation each. */
void parallel_for(int64_t n, par_fn *fn, void *ctx);

/* parallel_run with `chunks` chunks over the configured threads (thread
 * indices below min(chunks, par_threads()) at the time of the call). */
void parallel_for_chunks(int64_t n, int chunks, par_fn *fn, void *ctx);

/* memcpy(dst, src, bytes) over the threads, for copies of megabytes (one
 * core's copy bandwidth is well below the machine's). */
void parallel_memcpy(void *dst, const void *src, size_t bytes);

#endif
