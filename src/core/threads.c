/* threads.c - the thread pool behind parallel_for (see threads.h).
 *
 * One mutex guards everything. A job is (fn, ctx, n, chunks) plus two
 * counters: the next chunk to claim and the chunks not yet finished. The
 * caller publishes a job, wakes the workers with a broadcast and claims
 * chunks itself like any worker; each chunk is claimed under the mutex and
 * run outside it. Because the caller claims chunks too, a job finishes even
 * if no worker ever wakes (a pool whose threads could not start, or a forked
 * child).
 *
 * Waiting is passive, after a short poll. On a VM, waking a worker that
 * sleeps on a condition variable takes 50 to 90 us (the 2-core dev VM: a
 * fork-join of 100 us of work gained nothing from the second thread), longer
 * than most layers of a small model at batch 1. So a worker that has just
 * finished, and a caller waiting for the last chunk, first poll for at most
 * SPIN_MAX_NS before they sleep. The poll gives way to other threads:
 *  - a thread whose partner (the caller it waits on, or the worker running
 *    the last chunk) is on its own CPU yields between polls, so the partner
 *    runs;
 *  - a thread that finds it was descheduled while polling (another process
 *    wanted the core) stops polling, but for a short probe every
 *    SPIN_PROBE_EVERY waits that turns it back on once cores are free;
 *  - small jobs go to workers only while one polls (parallel_run).
 * With one core taken by another process, CIFAR MobileNetV2 at batch 1 on
 * two threads ran as fast as with the passive pool; idle, 1.7 times faster.
 *
 * The pool is the only mutable global state: the configured count, the
 * workers and the current job. Workers are started when a job first needs
 * them and told to exit by lego_shutdown_threads (registered with atexit) or
 * when lego_set_num_threads lowers the count while the pool is idle. */
#define _GNU_SOURCE /* sched_getcpu and glibc's adaptive mutex */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "threads.h"

#define MAX_THREADS 256

/* The adaptive spin (see the top of the file). */
/* the longest poll before sleeping: longer than the serial stretches between
 * a small model's parallel layers (CIFAR MobileNetV2's 24-channel 1x1 layers
 * at batch 1, 56 and 83 us: at 50 us the worker slept through them twice a
 * run, and the layer after each began without it) */
#define SPIN_MAX_NS 150000
#define SPIN_PREEMPTED_NS 200000 /* a gap this long between polls: descheduled */
#define SPIN_PROBE_NS 4000     /* the probe of a thread that stopped spinning */
#define SPIN_PROBE_EVERY 32

/* A thread that finds the mutex held spins briefly where glibc allows it
 * (the mutex is only ever held for a few instructions), rather than sleeping
 * and paying the wake-up the spin above avoids. */
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
#define POOL_MUTEX_INITIALIZER PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
#else
#define POOL_MUTEX_INITIALIZER PTHREAD_MUTEX_INITIALIZER
#endif

typedef struct spin_state {
    bool off;         /* the thread was descheduled while it polled */
    unsigned skipped; /* waits since the last probe, while off */
} spin_state;

typedef struct job {
    par_fn *fn;
    void *ctx;
    int64_t n;
    int chunks;
    int next;              /* the next chunk to claim */
    atomic_int unfinished; /* chunks claimed or not whose fn has not returned;
                              changed under the mutex, polled without it */
} job;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* workers: a job to help with, or time to exit */
    pthread_cond_t done; /* the caller: the job's last chunk finished */
    pthread_cond_t idle; /* lego_shutdown_threads: the pool is free */
    pthread_t tid[MAX_THREADS];
    int keep;     /* workers with an id >= keep exit */
    int nworkers; /* workers started and not yet joined: ids [0, nworkers) */
    int helpers;  /* workers with an id < helpers may claim chunks of the job */
    bool busy;    /* a job is running, or workers are being joined */
    bool at_exit; /* lego_shutdown_threads is registered with atexit */
    atomic_uint generation; /* bumped under the mutex for each job and each
                               change of `keep`; workers poll it */
    spin_state caller_spin; /* the job's caller's (the pool is busy) */
    atomic_int caller_cpu;  /* where the last job's caller published it */
    atomic_int worker_cpu;  /* where a worker last claimed a chunk */
    atomic_int spinning;    /* workers polling for the next job */
    job job;
} pool = {
    .mu = POOL_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .idle = PTHREAD_COND_INITIALIZER,
};

static atomic_int configured; /* threads to use, set once from the environment */
static _Atomic double min_work = PAR_MIN_WORK;
static pthread_once_t configured_once = PTHREAD_ONCE_INIT;

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

static int clamp_threads(long n)
{
    if (n <= 0)
        return online_cores();
    return n > MAX_THREADS ? MAX_THREADS : (int)n;
}

static void read_environment(void)
{
    const char *s = getenv("LEGO_NUM_THREADS");
    long n = 0;
    if (s && *s) {
        char *end;
        n = strtol(s, &end, 10);
        if (*end)
            n = 0; /* not a number: every core, as if unset */
    }
    atomic_store(&configured, clamp_threads(n));
}

int par_threads(void)
{
    pthread_once(&configured_once, read_environment);
    return atomic_load(&configured);
}

int lego_get_num_threads(void) { return par_threads(); }

void par_set_min_work(double work)
{
    atomic_store(&min_work, work > 0 ? work : PAR_MIN_WORK);
}

double par_min_work(void) { return atomic_load(&min_work); }

par_split par_split_work(int64_t n, double work)
{
    double least = atomic_load(&min_work);
    double fit = work > 0 ? (double)n * work / least : (double)n; /* chunks of `least` */
    int threads = par_threads();
    int64_t most = threads > 1 ? (int64_t)threads * PAR_CHUNKS_PER_THREAD : 1;
    int64_t chunks = fit < (double)most ? (int64_t)fit : most;
    chunks = chunks < n ? chunks : n;
    chunks = chunks > 1 ? chunks : 1;
    par_split s = {(int)chunks, chunks < threads ? (int)chunks : threads,
                   work > 0 ? (double)n * work / (double)chunks : 0};
    return s;
}

/* The first item of chunk k of n items cut into `chunks`: k*n/chunks
 * without overflow. */
static int64_t chunk_begin(int64_t n, int chunks, int k)
{
    return n / chunks * k + n % chunks * k / chunks;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef bool spin_until_fn(const void *arg);

/* The CPU this thread runs on now, or -1 where that cannot be known. */
static int current_cpu(void)
{
#ifdef __linux__
    return sched_getcpu();
#else
    return -1;
#endif
}

/* Polls ready(arg), without the mutex, for SPIN_MAX_NS at most, unless the
 * thread it waits for runs on this thread's CPU (`other_cpu`): polling would
 * only keep that thread off the core. Returns whether ready(arg) became true;
 * either way the caller re-checks under the mutex and sleeps if there is
 * still nothing to do. A poll that finds this thread was descheduled turns
 * spinning off, except for a short probe every SPIN_PROBE_EVERY waits. */
static bool spin_wait(spin_state *s, int other_cpu, spin_until_fn *ready, const void *arg)
{
    int64_t budget = SPIN_MAX_NS;
    if (s->off) {
        if (++s->skipped < SPIN_PROBE_EVERY)
            return false;
        s->skipped = 0;
        budget = SPIN_PROBE_NS;
    }
    bool shared = other_cpu >= 0 && other_cpu == current_cpu();
    int64_t start = now_ns(), last = start;
    for (;;) {
        if (shared)
            sched_yield();
        for (int i = 0; i < 16; i++) {
            if (ready(arg)) {
                s->off = false;
                return true;
            }
            cpu_relax();
        }
        int64_t t = now_ns();
        if (t - last > SPIN_PREEMPTED_NS) { /* the core was wanted elsewhere */
            s->off = true;
            s->skipped = 0;
            return false;
        }
        if (t - start > budget)
            return false;
        last = t;
    }
}

static bool generation_moved(const void *arg)
{
    return atomic_load_explicit(&pool.generation, memory_order_relaxed) !=
           *(const unsigned *)arg;
}

static bool job_finished(const void *arg)
{
    (void)arg;
    return atomic_load_explicit(&pool.job.unfinished, memory_order_relaxed) == 0;
}

/* Claims and runs chunks of the current job, as participant `thread`, until
 * none is left. Called and returns with the mutex held. */
static void run_chunks(int thread)
{
    while (pool.job.next < pool.job.chunks) {
        par_fn *fn = pool.job.fn;
        void *ctx = pool.job.ctx;
        int64_t n = pool.job.n;
        int chunks = pool.job.chunks;
        int k = pool.job.next++;
        if (thread > 0)
            atomic_store_explicit(&pool.worker_cpu, current_cpu(), memory_order_relaxed);
        pthread_mutex_unlock(&pool.mu);
        fn(ctx, chunk_begin(n, chunks, k), chunk_begin(n, chunks, k + 1), thread);
        pthread_mutex_lock(&pool.mu);
        if (atomic_fetch_sub(&pool.job.unfinished, 1) == 1)
            pthread_cond_signal(&pool.done);
    }
}

static void *worker_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    spin_state spin = {0};
    pthread_mutex_lock(&pool.mu);
    while (id < pool.keep) {
        if (id < pool.helpers && pool.job.next < pool.job.chunks) {
            run_chunks(id + 1);
            continue;
        }
        unsigned seen = atomic_load(&pool.generation);
        pthread_mutex_unlock(&pool.mu);
        atomic_fetch_add(&pool.spinning, 1);
        bool moved = spin_wait(&spin, atomic_load(&pool.caller_cpu), generation_moved, &seen);
        atomic_fetch_sub(&pool.spinning, 1);
        pthread_mutex_lock(&pool.mu);
        if (!moved && atomic_load(&pool.generation) == seen)
            pthread_cond_wait(&pool.wake, &pool.mu);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

/* Joins the workers with an id >= keep. Called and returns with the mutex
 * held and the pool idle; the mutex is released while joining, with the
 * pool marked busy so that no job starts meanwhile. */
static void stop_workers(int keep)
{
    int from = keep, to = pool.nworkers;
    if (to <= from)
        return;
    pool.keep = keep;
    pool.busy = true;
    atomic_fetch_add(&pool.generation, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
    for (int i = from; i < to; i++)
        pthread_join(pool.tid[i], NULL);
    pthread_mutex_lock(&pool.mu);
    pool.nworkers = keep;
    pool.busy = false;
    pthread_cond_broadcast(&pool.idle);
}

void lego_shutdown_threads(void)
{
    pthread_mutex_lock(&pool.mu);
    while (pool.busy)
        pthread_cond_wait(&pool.idle, &pool.mu);
    stop_workers(0);
    pthread_mutex_unlock(&pool.mu);
}

/* Starts workers until there are `want` (called with the mutex held).
 * Workers block every signal, so handlers run on application threads.
 * Returns how many workers there are; fewer than asked when the system
 * refuses a thread. */
static int start_workers(int want)
{
    if (pool.nworkers >= want)
        return pool.nworkers;
    if (!pool.at_exit)
        pool.at_exit = atexit(lego_shutdown_threads) == 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pool.keep = want;
    while (pool.nworkers < want &&
           pthread_create(&pool.tid[pool.nworkers], NULL, worker_main,
                          (void *)(intptr_t)pool.nworkers) == 0)
        pool.nworkers++;
    pool.keep = pool.nworkers;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pool.nworkers;
}

void lego_set_num_threads(int n)
{
    pthread_once(&configured_once, read_environment);
    int t = clamp_threads(n);
    atomic_store(&configured, t);
    /* idle workers beyond the new count would only be woken for nothing */
    pthread_mutex_lock(&pool.mu);
    if (!pool.busy)
        stop_workers(t - 1);
    pthread_mutex_unlock(&pool.mu);
}

void parallel_run(int64_t n, par_split s, par_fn *fn, void *ctx)
{
    if (n <= 0)
        return;
    int chunks = s.chunks < n ? s.chunks : (int)n;
    chunks = chunks > 1 ? chunks : 1;
    int threads = par_threads();
    threads = s.threads < threads ? s.threads : threads;
    int helpers = (threads < chunks ? threads : chunks) - 1;
    /* a chunk too small to repay a wake-up goes to workers only while one is
     * polling: a sleeping pool leaves it to this thread */
    if (s.work > 0 && s.work < PAR_WAKE_FACTOR * atomic_load(&min_work) &&
        atomic_load(&pool.spinning) == 0)
        helpers = 0;
    if (helpers > 0) {
        pthread_mutex_lock(&pool.mu);
        if (!pool.busy && start_workers(helpers) > 0) {
            pool.busy = true;
            pool.job.fn = fn;
            pool.job.ctx = ctx;
            pool.job.n = n;
            pool.job.chunks = chunks;
            pool.job.next = 0;
            atomic_store(&pool.job.unfinished, chunks);
            pool.helpers = helpers < pool.nworkers ? helpers : pool.nworkers;
            atomic_store_explicit(&pool.caller_cpu, current_cpu(), memory_order_relaxed);
            atomic_fetch_add(&pool.generation, 1);
            pthread_cond_broadcast(&pool.wake);
            run_chunks(0);
            if (atomic_load(&pool.job.unfinished) > 0) {
                pthread_mutex_unlock(&pool.mu);
                spin_wait(&pool.caller_spin, atomic_load(&pool.worker_cpu), job_finished, NULL);
                pthread_mutex_lock(&pool.mu);
            }
            while (atomic_load(&pool.job.unfinished) > 0)
                pthread_cond_wait(&pool.done, &pool.mu);
            pool.helpers = 0;
            pool.busy = false;
            pthread_cond_broadcast(&pool.idle);
            pthread_mutex_unlock(&pool.mu);
            return;
        }
        pthread_mutex_unlock(&pool.mu);
    }
    /* inline: the same chunks, in order, on this thread */
    for (int k = 0; k < chunks; k++)
        fn(ctx, chunk_begin(n, chunks, k), chunk_begin(n, chunks, k + 1), 0);
}

void parallel_for(int64_t n, par_fn *fn, void *ctx)
{
    parallel_run(n, par_split_work(n, 1.0), fn, ctx);
}

void parallel_for_chunks(int64_t n, int chunks, par_fn *fn, void *ctx)
{
    par_split s = {chunks, par_threads(), 0};
    parallel_run(n, s, fn, ctx);
}

/* Pieces of a parallel copy: 64 KiB, so that a piece is a few microseconds
 * and every thread gets several (threads.h: PAR_CHUNKS_PER_THREAD). */
#define COPY_PIECE ((size_t)64 << 10)

typedef struct copy_job {
    unsigned char *dst;
    const unsigned char *src;
    size_t bytes;
} copy_job;

static void copy_pieces(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const copy_job *j = ctx;
    size_t from = (size_t)begin * COPY_PIECE, to = (size_t)end * COPY_PIECE;
    if (to > j->bytes)
        to = j->bytes;
    memcpy(j->dst + from, j->src + from, to - from);
}

void parallel_memcpy(void *dst, const void *src, size_t bytes)
{
    copy_job j = {dst, src, bytes};
    int64_t pieces = (int64_t)((bytes + COPY_PIECE - 1) / COPY_PIECE);
    if (pieces > 0)
        parallel_run(pieces, par_split_work(pieces, (double)COPY_PIECE), copy_pieces, &j);
}
