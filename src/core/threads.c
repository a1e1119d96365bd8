/* threads.c - the thread pool behind parallel_for (see threads.h).
 *
 * One mutex guards everything. A job is (fn, ctx, n, chunks) plus two
 * counters: the next chunk to claim and the chunks not yet finished. The
 * caller publishes a job, wakes the workers with a broadcast and claims
 * chunks itself like any worker; each chunk is claimed under the mutex and
 * run outside it. Workers sleep on a condition variable whenever there is
 * nothing to claim, so an idle pool costs no CPU. Because the caller claims
 * chunks too, a job finishes even if no worker ever wakes (a pool whose
 * threads could not start, or a forked child).
 *
 * The pool is the only mutable global state: the configured count, the
 * workers and the current job. Workers are started when a job first needs
 * them and told to exit by lego_shutdown_threads (registered with atexit) or
 * when lego_set_num_threads lowers the count while the pool is idle. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "threads.h"

#define MAX_THREADS 256

typedef struct job {
    par_fn *fn;
    void *ctx;
    int64_t n;
    int chunks;
    int next;       /* the next chunk to claim */
    int unfinished; /* chunks claimed or not whose fn has not returned */
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
    job job;
} pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
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
    par_split s = {(int)chunks, chunks < threads ? (int)chunks : threads};
    return s;
}

/* The first item of chunk k of n items cut into `chunks`: k*n/chunks
 * without overflow. */
static int64_t chunk_begin(int64_t n, int chunks, int k)
{
    return n / chunks * k + n % chunks * k / chunks;
}

/* Claims and runs chunks of the current job, as participant `thread`, until
 * none is left. Called and returns with the mutex held. */
static void run_chunks(int thread)
{
    while (pool.job.next < pool.job.chunks) {
        job j = pool.job;
        int k = pool.job.next++;
        pthread_mutex_unlock(&pool.mu);
        j.fn(j.ctx, chunk_begin(j.n, j.chunks, k), chunk_begin(j.n, j.chunks, k + 1), thread);
        pthread_mutex_lock(&pool.mu);
        if (--pool.job.unfinished == 0)
            pthread_cond_signal(&pool.done);
    }
}

static void *worker_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool.mu);
    while (id < pool.keep) {
        if (id < pool.helpers && pool.job.next < pool.job.chunks)
            run_chunks(id + 1);
        else
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
    if (helpers > 0) {
        pthread_mutex_lock(&pool.mu);
        if (!pool.busy && start_workers(helpers) > 0) {
            pool.busy = true;
            pool.job = (job){.fn = fn, .ctx = ctx, .n = n, .chunks = chunks, .next = 0,
                             .unfinished = chunks};
            pool.helpers = helpers < pool.nworkers ? helpers : pool.nworkers;
            pthread_cond_broadcast(&pool.wake);
            run_chunks(0);
            while (pool.job.unfinished > 0)
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
    par_split s = {chunks, par_threads()};
    parallel_run(n, s, fn, ctx);
}
