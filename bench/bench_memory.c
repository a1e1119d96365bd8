/* bench_memory.c - the resident memory of the runtime against the memory
 * budget it was given.
 *
 *   bench_memory [--lib LIB | --model MODEL.onnx|resnet18:W] [--points N]
 *                [--threads N] [--runs N]
 *
 * Without --lib it makes a library in a temporary directory from MODEL
 * (default resnet18:32, the built-in CIFAR ResNet18 at width 32, 2.8 M
 * parameters, so that weights dominate; bench_common.h) and removes it at
 * the end.
 *
 * For each of --points memory budgets spread from the smallest composition's
 * estimate to the teacher's (plus one below the smallest: infeasible), a
 * fresh process (this program again, --child) measures its resident memory
 * (baseline), opens the library with lego_runtime_open (cache cap 1 byte:
 * only the descendants in use stay cached), sets the budget (no latency
 * limit), runs --runs inferences and measures again. It reports:
 *  - estimated: lego_choice.memory_bytes, what the budget is compared with:
 *    chosen descendants' weights + frame weights + frame activation arena +
 *    the largest activation arena of any descendant;
 *  - weights + arena in use (lego_runtime_stats: weights_bytes, arena_bytes);
 *  - anon@open: the anonymous growth once the budget is applied, before
 *    any inference (the loaded descendants, frame and structures);
 *  - growth of the anonymous resident memory (RssAnon: heap and mmap'd
 *    allocations, no program text) and of the whole RSS over the baseline,
 *    after malloc_trim(0) has handed back the freed heap pages (the teacher
 *    the runtime holds from open until the first decision is evicted by then,
 *    but glibc keeps freed pages unless trimmed);
 *  - the peak (VmHWM) over the baseline, which includes that teacher.
 * overhead = anonymous growth - estimated: what the estimate does not count
 * (graph and manifest structures, the run context's tensor views, the
 * optimizer's tables, malloc's own slack), which should not grow with the
 * budget. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "core/file.h"

static int64_t status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':' && sscanf(line + n + 1, "%lld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

/* One budget in this process; prints one line for the parent. */
static int child(const char *lib, int threads, int64_t budget, int runs)
{
    lego_set_num_threads(threads);
    malloc_trim(0);
    int64_t rss0 = bench_rss_bytes(), anon0 = status_kb("RssAnon"), peak0 = bench_peak_rss_bytes();
    lego_runtime_options opt = {.threads = threads, .fixed_latency = 1, .cache_bytes = 1};
    lego_runtime *rt;
    bench_check(lego_runtime_open(lib, &opt, &rt), lib);
    lego_choice ch;
    bench_check(lego_runtime_set_budget(rt, INFINITY, budget, &ch), "set_budget");
    malloc_trim(0);
    int64_t anon_decided = status_kb("RssAnon");
    lego_tensor x[16];
    int ni = lego_runtime_num_inputs(rt);
    if (ni > 16)
        ni = 16;
    for (int i = 0; i < ni; i++)
        x[i] = bench_input(rt, i);
    for (int r = 0; r < runs; r++)
        bench_check(bench_run(rt, x, NULL), "run");
    for (int i = 0; i < ni; i++)
        free(x[i].data);
    lego_runtime_stats s;
    bench_check(lego_runtime_stats_get(rt, &s), "stats");
    malloc_trim(0);
    int64_t rss = bench_rss_bytes(), anon = status_kb("RssAnon"), peak = bench_peak_rss_bytes();
    printf("%lld %d %lld %lld %lld %lld %lld %lld %d %lld\n", (long long)ch.memory_bytes, ch.feasible,
           (long long)s.weights_bytes, (long long)s.arena_bytes, (long long)(anon - anon0), (long long)(rss - rss0),
           (long long)(peak - (peak0 > rss0 ? peak0 : rss0)), (long long)s.cache_bytes, s.cache_entries,
           (long long)(anon_decided - anon0));
    lego_runtime_close(rt);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_memory [--lib LIB | --model MODEL.onnx|resnet18:W] [--points N] [--threads N] "
                    "[--runs N]\n");
    exit(2);
}

static double kib(int64_t b) { return (double)b / 1024; }

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "--child"))
        return child(argv[2], atoi(argv[3]), atoll(argv[4]), atoi(argv[5]));
    const char *lib = NULL, *model = "resnet18:32";
    int points = 6, threads = 1, runs = 3;
    for (int i = 1; i < argc; i++) {
        if (bench_library_arg(argc, argv, &i, &lib, &model, &threads))
            continue;
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--points"))
            points = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[++i]);
        else
            usage();
    }
    if (points < 2 || threads < 1 || runs < 1)
        usage();
    lego_set_num_threads(threads);
    char tmp[64] = "";
    if (!lib) {
        snprintf(tmp, sizeof tmp, "/tmp/bench_memory_lib.%d", (int)getpid());
        bench_check(bench_make_library(model, tmp, 3), "making the library");
        lib = tmp;
    }
    /* the range: the teacher and the smallest composition (no kernel runs
     * here; the children measure) */
    lego_runtime_options opt = {.threads = threads, .fixed_latency = 1};
    lego_runtime *rt;
    bench_check(lego_runtime_open(lib, &opt, &rt), lib);
    lego_choice big, small;
    bench_check(lego_runtime_set_budget(rt, INFINITY, INT64_MAX, &big), "set_budget");
    bench_check(lego_runtime_set_budget(rt, INFINITY, 1, &small), "set_budget");
    lego_runtime_stats s;
    bench_check(lego_runtime_stats_get(rt, &s), "stats");
    lego_runtime_close(rt);
    printf("memory estimates from %.0f KiB (smallest composition) to %.0f KiB (teacher); %d kernel thread(s), %d "
           "run(s) per budget, one fresh process per budget\n",
           kib(small.memory_bytes), kib(big.memory_bytes), threads, runs);
    printf("%12s %12s %4s %11s %10s %11s %11s %11s %11s %11s %12s\n", "budget KiB", "estimate KiB", "fits",
           "weights KiB", "arena KiB", "anon@open", "anon +KiB", "RSS +KiB", "overhead", "peak +KiB", "anon/budget");
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "cannot find this program (/proc/self/exe)\n");
        return 1;
    }
    self[n] = 0;
    double worst = 0, over_min = INFINITY, over_max = -INFINITY;
    for (int p = -1; p < points; p++) {
        int64_t budget = p < 0 ? small.memory_bytes / 2
                               : small.memory_bytes + (big.memory_bytes - small.memory_bytes) * p / (points - 1);
        char cmd[8400];
        snprintf(cmd, sizeof cmd, "'%s' --child '%s' %d %lld %d", self, lib, threads, (long long)budget, runs);
        FILE *f = popen(cmd, "r");
        long long est, w, a, anon, rss, peak, cache, decided;
        int feasible, entries;
        int got = f ? fscanf(f, "%lld %d %lld %lld %lld %lld %lld %lld %d %lld", &est, &feasible, &w, &a, &anon, &rss,
                             &peak, &cache, &entries, &decided)
                    : 0;
        if (!f || pclose(f) != 0 || got != 10) {
            fprintf(stderr, "the measuring process failed for budget %lld\n", (long long)budget);
            return 1;
        }
        double over = (double)(anon - est);
        printf("%12.0f %12.0f %4s %11.0f %10.0f %11.0f %11.0f %11.0f %11.0f %11.0f %12.3f\n", kib(budget), kib(est),
               feasible ? "yes" : "no", kib(w), kib(a), kib(decided), kib(anon), kib(rss), over / 1024, kib(peak),
               (double)anon / (double)budget);
        if (feasible) {
            if (over > over_max)
                over_max = over;
            if (over < over_min)
                over_min = over;
            if ((double)anon - (double)budget > worst)
                worst = (double)anon - (double)budget;
        }
    }
    printf("feasible budgets: anonymous growth = estimate + %.0f to %.0f KiB; at most %.0f KiB over the budget\n",
           over_min / 1024, over_max / 1024, worst / 1024);
    if (tmp[0]) {
        char onnx[80];
        snprintf(onnx, sizeof onnx, "%s.onnx", tmp);
        remove(onnx);
        bench_check(file_remove_tree(tmp), "removing the library");
    }
    return 0;
}
