/* test_threads.c - the thread pool: the default from LEGO_NUM_THREADS,
 * chunk boundaries and thread indices, every item run exactly once, chunks
 * really running on two threads at once, nested and concurrent calls (run
 * inline), splits, resizing and shutting down; parallel_memcpy copies
 * every byte, at sizes that end inside a piece. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/threads.h"
#include "harness.h"

/* ---- coverage ----------------------------------------------------------- */

#define MAX_N 1000
#define MAX_CHUNKS 1024

typedef struct cover {
    atomic_int hits[MAX_N];
    atomic_int calls;
    int64_t begin[MAX_CHUNKS], end[MAX_CHUNKS]; /* in call order */
    atomic_int bad_thread;
    int threads;
} cover;

static void cover_chunk(void *ctx, int64_t begin, int64_t end, int thread)
{
    cover *c = ctx;
    int k = atomic_fetch_add(&c->calls, 1);
    if (k < MAX_CHUNKS) {
        c->begin[k] = begin;
        c->end[k] = end;
    }
    if (thread < 0 || thread >= c->threads)
        atomic_fetch_add(&c->bad_thread, 1);
    for (int64_t i = begin; i < end; i++)
        atomic_fetch_add(&c->hits[i], 1);
}

/* Every item exactly once, in min(n, chunks) chunks k*n/chunks apart, and
 * thread indices below the split's thread count. */
static void check_cover(int64_t n, int chunks, int threads)
{
    static cover c;
    memset(&c, 0, sizeof c);
    c.threads = threads < 1 ? 1 : threads;
    par_split s = {chunks, threads, 0};
    parallel_run(n, s, cover_chunk, &c);
    int want = (int)(n < 1 ? 0 : chunks < 1 ? 1 : chunks > n ? n : chunks);
    int ok = atomic_load(&c.calls) == want && atomic_load(&c.bad_thread) == 0;
    for (int64_t i = 0; i < n; i++)
        ok &= atomic_load(&c.hits[i]) == 1;
    /* the chunk starting at k*n/want ends at (k+1)*n/want */
    for (int j = 0; ok && j < want; j++) {
        int k = 0;
        while (k < want && n * k / want != c.begin[j])
            k++;
        ok &= k < want && c.end[j] == n * (k + 1) / want;
    }
    if (!ok)
        fprintf(stderr, "  n %lld chunks %d threads %d (pool of %d)\n", (long long)n, chunks,
                threads, lego_get_num_threads());
    CHECK(ok);
}

static void coverage(void)
{
    static const int64_t ns[] = {0, 1, 2, 3, 7, 64, 999, 1000};
    static const int cs[] = {-1, 0, 1, 2, 3, 5, 16, 64};
    for (int t = 1; t <= 3; t++) {
        lego_set_num_threads(t);
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
            for (size_t j = 0; j < sizeof cs / sizeof cs[0]; j++)
                for (int threads = 1; threads <= 3; threads++)
                    check_cover(ns[i], cs[j], threads);
    }
}

/* ---- two chunks at once --------------------------------------------------- */

typedef struct meet {
    atomic_int arrived;
    atomic_int met; /* chunks that saw the other one arrive */
    pthread_t who[2];
    int thread[2];
} meet;

/* Each chunk waits (up to two seconds) until the other has started: only
 * possible when they run on two threads at the same time. */
static void meet_chunk(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)end;
    meet *m = ctx;
    m->who[begin] = pthread_self();
    m->thread[begin] = thread;
    atomic_fetch_add(&m->arrived, 1);
    for (int i = 0; i < 2000 && atomic_load(&m->arrived) < 2; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (atomic_load(&m->arrived) == 2)
        atomic_fetch_add(&m->met, 1);
}

static void runs_in_parallel(void)
{
    lego_set_num_threads(2);
    CHECK(lego_get_num_threads() == 2);
    meet m = {0};
    par_split two = {2, 2, 0};
    parallel_run(2, two, meet_chunk, &m);
    CHECK(atomic_load(&m.met) == 2);
    CHECK(!pthread_equal(m.who[0], m.who[1]));
    CHECK(m.thread[0] + m.thread[1] == 1); /* the caller is 0, the worker 1 */

    /* one thread: everything inline on the caller, in chunk order */
    lego_set_num_threads(1);
    meet one = {0};
    parallel_run(2, two, meet_chunk, &one);
    CHECK(pthread_equal(one.who[0], pthread_self()) && pthread_equal(one.who[1], pthread_self()));
    CHECK(one.thread[0] == 0 && one.thread[1] == 0);
    par_split s = par_split_work(1000, 1e9);
    CHECK(s.chunks == 1 && s.threads == 1);
}

/* ---- nested and concurrent calls ------------------------------------------ */

typedef struct sum_ctx {
    const int64_t *v;
    int64_t part[8]; /* per thread */
} sum_ctx;

static void sum_chunk(void *ctx, int64_t begin, int64_t end, int thread)
{
    sum_ctx *s = ctx;
    for (int64_t i = begin; i < end; i++)
        s->part[thread] += s->v[i];
}

/* The sum of v[0..n) by parallel_run over `chunks` chunks and 2 threads. */
static int64_t par_sum(const int64_t *v, int64_t n, int chunks)
{
    sum_ctx s = {.v = v};
    par_split split = {chunks, 2, 0};
    parallel_run(n, split, sum_chunk, &s);
    int64_t total = 0;
    for (int k = 0; k < 8; k++)
        total += s.part[k];
    return total;
}

static int64_t values[4096];

typedef struct nest_ctx {
    atomic_int ok;
} nest_ctx;

/* A chunk that itself calls parallel_run: the pool is busy, so it runs inline. */
static void nest_chunk(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    nest_ctx *c = ctx;
    for (int64_t i = begin; i < end; i++)
        if (par_sum(values, 4096, 4) == 4096 * 4095 / 2)
            atomic_fetch_add(&c->ok, 1);
}

static void *caller_main(void *arg)
{
    int *bad = arg;
    for (int r = 0; r < 300; r++)
        if (par_sum(values, 1 + r * 13, 1 + r % 5) != (int64_t)(r * 13) * (1 + r * 13) / 2)
            (*bad)++;
    return NULL;
}

static void nested_and_concurrent(void)
{
    for (int64_t i = 0; i < 4096; i++)
        values[i] = i;
    lego_set_num_threads(2);
    nest_ctx n = {0};
    par_split split = {4, 2, 0};
    parallel_run(8, split, nest_chunk, &n);
    CHECK(atomic_load(&n.ok) == 8);

    /* four application threads sharing the pool: the losers run inline */
    pthread_t t[4];
    int bad[4] = {0};
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, caller_main, &bad[i]) == 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(bad[i] == 0);
    }
}

/* ---- configuration ------------------------------------------------------- */

static void configuration(void)
{
    lego_set_num_threads(0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(lego_get_num_threads() == (cores < 1 ? 1 : cores));
    lego_set_num_threads(-5);
    CHECK(lego_get_num_threads() == (cores < 1 ? 1 : cores));
    lego_set_num_threads(4);
    CHECK(lego_get_num_threads() == 4 && par_threads() == 4);
    /* splits: chunks of at least the threshold, up to 4 per thread */
    par_split s = par_split_work(1000, PAR_MIN_WORK / 100);
    CHECK(s.chunks == 10 && s.threads == 4);
    s = par_split_work(1000, PAR_MIN_WORK);
    CHECK(s.chunks == 16 && s.threads == 4);
    s = par_split_work(3, PAR_MIN_WORK);
    CHECK(s.chunks == 3 && s.threads == 3);
    s = par_split_work(1000, PAR_MIN_WORK / 1000);
    CHECK(s.chunks == 1 && s.threads == 1);
    s = par_split_work(0, 1);
    CHECK(s.chunks == 1 && s.threads == 1);
    par_set_min_work(1);
    s = par_split_work(1000, 1);
    CHECK(s.chunks == 16 && s.threads == 4);
    par_set_min_work(0);
    s = par_split_work(1000, 1);
    CHECK(s.chunks == 1);
    check_cover(999, 4, 4);
    /* shrink while idle, then shut down; the pool comes back when needed */
    lego_set_num_threads(2);
    check_cover(999, 4, 2);
    lego_shutdown_threads();
    lego_shutdown_threads();
    check_cover(999, 3, 2);
    CHECK(par_sum(values, 4096, 2) == 4096 * 4095 / 2);
}

/* ---- parallel_memcpy ------------------------------------------------------ */

static void copies(void)
{
    static const size_t sizes[] = {0, 1, 65535, 65536, 65537, (size_t)3 << 20 | 77};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        unsigned char *src = malloc(n + 1), *dst = malloc(n + 2);
        CHECK(src && dst);
        if (!src || !dst) {
            free(src), free(dst);
            continue;
        }
        for (size_t k = 0; k < n; k++)
            src[k] = (unsigned char)(k * 2654435761u >> 13);
        memset(dst, 0xA5, n + 2);
        parallel_memcpy(dst, src, n);
        CHECK(memcmp(dst, src, n) == 0 && dst[n] == 0xA5 && dst[n + 1] == 0xA5);
        free(src), free(dst);
    }
}

int main(void)
{
    /* read once, at the first use: set before anything asks */
    setenv("LEGO_NUM_THREADS", "3", 1);
    CHECK(lego_get_num_threads() == 3);
    setenv("LEGO_NUM_THREADS", "1", 1);
    CHECK(lego_get_num_threads() == 3);
    coverage();
    runs_in_parallel();
    nested_and_concurrent();
    configuration();
    copies();
    return harness_finish();
}
