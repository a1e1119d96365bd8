/* bench_common.c - clock, resident memory and the on-the-spot block
 * library of the runtime benchmarks (bench_common.h). */
#include "bench_common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blocks/detect.h"
#include "blocks/library.h"
#include "graph/graph.h"
#include "onnx/onnx_export.h"
#include "onnx/onnx_import.h"
#include "runtime/latency.h"
#include "train/zoo.h"

double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int64_t bench_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long size, resident;
    int n = f ? fscanf(f, "%lld %lld", &size, &resident) : 0;
    if (f)
        fclose(f);
    return n == 2 ? (int64_t)resident * sysconf(_SC_PAGESIZE) : -1;
}

int64_t bench_peak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

bool bench_library_arg(int argc, char **argv, int *i, const char **lib, const char **model, int *threads)
{
    if (*i + 1 >= argc)
        return false;
    const char *a = argv[*i], *v = argv[*i + 1];
    if (!strcmp(a, "--lib"))
        *lib = v;
    else if (!strcmp(a, "--model"))
        *model = v;
    else if (!strcmp(a, "--threads"))
        *threads = atoi(v);
    else
        return false;
    (*i)++;
    return true;
}

void bench_check(lego_status st, const char *what)
{
    if (st.code == LEGO_OK)
        return;
    fprintf(stderr, "%s: %s\n", what, lego_status_msg(st));
    lego_status_free(&st);
    exit(1);
}

lego_tensor bench_input(const lego_runtime *rt, int i)
{
    lego_tensor x = *lego_runtime_input(rt, i);
    int64_t n = lego_tensor_numel(&x);
    float *p = malloc(sizeof *p * (size_t)(n > 0 ? n : 1));
    uint32_t h = 12345u + (uint32_t)i;
    for (int64_t k = 0; p && k < n; k++) {
        h = h * 1664525u + 1013904223u;
        p[k] = (float)(h >> 8) * 0x1p-24f - 0.5f;
    }
    x.data = p;
    return x;
}

lego_status bench_run(lego_runtime *rt, const lego_tensor *x, lego_run_info *info)
{
    const lego_tensor *ins[16];
    lego_tensor *outs[16] = {0};
    int ni = lego_runtime_num_inputs(rt), no = lego_runtime_num_outputs(rt);
    if (ni > 16 || no > 16)
        return lego_error(LEGO_ERR_UNSUPPORTED, "the benchmarks handle up to 16 model inputs and outputs");
    for (int i = 0; i < ni; i++)
        ins[i] = &x[i];
    lego_status st = lego_runtime_run(rt, ins, outs, info);
    for (int i = 0; i < no; i++)
        lego_tensor_free(outs[i]);
    return st;
}

static double synthetic_loss(int b, int d) { return d == 0 ? 0 : 0.002 * d * d * (1 + (b * 7 + d) % 5); }

static lego_status model_graph(const char *model, const char *dir, char *path, size_t len, lego_graph *g)
{
    int width = zoo_parse_resnet18(model);
    if (!width) {
        snprintf(path, len, "%s", model);
        return onnx_load_file(model, g);
    }
    snprintf(path, len, "%s.onnx", dir);
    LEGO_TRY(zoo_resnet18(width, 10, 3, 32, 32, 1, g));
    lego_status st = onnx_export_file(g, path, NULL, NULL);
    if (st.code)
        graph_free(g);
    return st;
}

lego_status bench_make_library(const char *model, const char *dir, int repeat)
{
    static const double sparsities[] = {0, 0.3, 0.6, 0.8};
    double t0 = bench_now_ms();
    char path[1024];
    lego_graph g;
    LEGO_TRY(model_graph(model, dir, path, sizeof path, &g));
    block_set bs;
    lego_status st = blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs);
    if (st.code) {
        graph_free(&g);
        return st;
    }
    extract_options opt = {.sparsities = sparsities, .n_sparsities = 4, .force = true};
    st = library_extract(&g, &bs, path, dir, &opt, NULL);
    block_set_free(&bs);
    graph_free(&g);
    LEGO_TRY(st);
    block_library lib;
    LEGO_TRY(library_open(dir, &lib));
    for (int b = 0; b < lib.n_blocks && st.code == LEGO_OK; b++)
        for (int d = 0; d < lib.blocks[b].n_desc && st.code == LEGO_OK; d++)
            st = library_set_number(library_descendant_json(&lib, b, d), "accuracy_loss", synthetic_loss(b, d));
    cJSON *p = cJSON_AddObjectToObject(lib.manifest, "profile");
    if (!p || !cJSON_AddNumberToObject(p, "teacher_accuracy", 0.9) ||
        !cJSON_AddStringToObject(p, "metric", "top-1 accuracy (synthetic, bench_make_library)"))
        st = lego_error(LEGO_ERR_NOMEM, "out of memory writing the manifest");
    if (st.code == LEGO_OK) {
        latency_options lo = {.repeat = repeat < 3 ? 3 : repeat, .batch = 1, .n_random = 1, .seed = 3, .quiet = true};
        latency_result r;
        st = latency_measure(&lib, &lo, &r);
        if (st.code == LEGO_OK) {
            st = latency_store(&lib, &r);
            latency_result_free(&r);
        }
    }
    if (st.code == LEGO_OK)
        st = library_save(&lib);
    int nb = lib.n_blocks, nd = nb ? lib.blocks[0].n_desc : 0;
    library_free(&lib);
    if (st.code == LEGO_OK)
        printf("library %s: %s extracted into %d blocks x %d sparsities, latency measured (%d rounds), synthetic "
               "accuracy losses; %.1f s\n",
               dir, path, nb, nd, repeat < 3 ? 3 : repeat, (bench_now_ms() - t0) / 1e3);
    return st;
}
