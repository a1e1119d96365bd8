/* test_runtime.c - the runtime (runtime/runtime.c, blockexec.c) and the
 * latency stage (runtime/latency.c) on a ResNet18 library extracted here.
 *
 * The library gets synthetic accuracy losses and a teacher accuracy written
 * by the test (so it does not depend on profiling) and latency from a quick
 * real `latency` measurement whose medians are then replaced by
 * deterministic ones (FLOPs-proportional), so decisions are reproducible.
 * Checked:
 *  - the latency stage: profile key, manifest fields, the noise rule;
 *  - lego_runtime_set_budget picks exactly what scale_solve picks on the
 *    same estimates, for a sweep of budgets, infeasible ones included;
 *  - switching touches only the blocks that changed, and a cached
 *    descendant is never loaded again;
 *  - lego_runtime_run gives, bit for bit, the output of the composed graph
 *    (compose_model + the ordinary executor) for several compositions, also
 *    with a cache cap small enough to force evictions;
 *  - bad budgets are LEGO_ERR_ARG and leave the running model as it was;
 *  - a broken library (missing file, corrupt manifest, a descendant file
 *    removed after open), a library measured on another device, one without
 *    accuracy losses: clear errors naming the command to run;
 *  - threads: inference on several threads while another changes budgets;
 *    every output equals the one of the composition that run reports.
 *
 * usage: test_runtime [--threads-only] (the ThreadSanitizer build runs the
 * thread test alone). */
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blocks/compose.h"
#include "blocks/detect.h"
#include "blocks/library.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "graph/exec.h"
#include "harness.h"
#include "onnx/onnx_import.h"
#include "ops/conv_dnnl.h"
#include "runtime/blockexec.h"
#include "runtime/latency.h"
#include "runtime/optimizer.h"
#include "runtime/runtime.h"

static char scratch[256];
static const double sparsities[] = {0, 0.3, 0.6, 0.8};

/* Synthetic accuracy loss of descendant d of block b: 0 at s = 0, growing
 * with the sparsity, different per block. */
static double synthetic_loss(int b, int d) { return d == 0 ? 0 : 0.002 * d * d * (1 + (b * 7 + d) % 5); }

/* Extract resnet18 into dir; with `accuracy`, write synthetic accuracy
 * losses and a teacher accuracy; with `latency`, measure quickly and store
 * FLOPs-proportional medians under this device's profile. */
static lego_status make_library_of(const char *model, const char *dir, bool accuracy, bool latency, int64_t batch)
{
    lego_graph g;
    LEGO_TRY(onnx_load_file(model, &g));
    block_set bs;
    lego_status st = blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &bs);
    if (st.code) {
        graph_free(&g);
        return st;
    }
    extract_options opt = {.sparsities = sparsities, .n_sparsities = 4, .force = true};
    st = library_extract(&g, &bs, model, dir, &opt, NULL);
    block_set_free(&bs);
    graph_free(&g);
    LEGO_TRY(st);
    block_library lib;
    LEGO_TRY(library_open(dir, &lib));
    if (accuracy) {
        for (int b = 0; b < lib.n_blocks && st.code == LEGO_OK; b++)
            for (int d = 0; d < lib.blocks[b].n_desc && st.code == LEGO_OK; d++)
                st = library_set_number(library_descendant_json(&lib, b, d), "accuracy_loss", synthetic_loss(b, d));
        cJSON *p = cJSON_AddObjectToObject(lib.manifest, "profile");
        cJSON_AddNumberToObject(p, "teacher_accuracy", 0.9);
        cJSON_AddStringToObject(p, "metric", "top-1 accuracy");
    }
    if (latency && st.code == LEGO_OK) {
        latency_options lo = {.repeat = 3, .batch = batch, .n_random = 1, .seed = 3, .quiet = true};
        latency_result r;
        st = latency_measure(&lib, &lo, &r);
        if (st.code == LEGO_OK) {
            for (int b = 0; b < r.n_blocks; b++)
                for (int d = 0; d < r.n_desc[b]; d++)
                    r.median[b][d] = r.raw_median[b][d] = 1e-8 * (double)(r.flops[b][d] * batch) + 0.001 * (b % 3);
            r.frame_ms = 0.05;
            st = latency_store(&lib, &r);
            latency_result_free(&r);
        }
    }
    if (st.code == LEGO_OK)
        st = library_save(&lib);
    library_free(&lib);
    return st;
}

static lego_status make_library(const char *dir, bool accuracy, bool latency)
{
    return make_library_of("data/models/resnet18.onnx", dir, accuracy, latency, 1);
}

/* ---- the latency stage --------------------------------------------------------------- */

static void test_latency(const char *dir)
{
    block_library lib;
    CHECK_OK(library_open(dir, &lib));
    latency_options lo = {.repeat = 5, .batch = 1, .n_random = 2, .seed = 9, .quiet = true};
    latency_result r;
    lego_status st = latency_measure(&lib, &lo, &r);
    CHECK_OK(st);
    if (st.code) {
        library_free(&lib);
        return;
    }
    char key[LATENCY_PROFILE_MAX];
    device_profile_key(lego_get_num_threads(), 1, key, sizeof key);
    CHECK(strcmp(key, r.profile) == 0);
    CHECK(strstr(key, "| batch 1") != NULL);
    CHECK(r.n_checks == 4 && strcmp(r.checks[0].name, "all-s0") == 0 && strcmp(r.checks[1].name, "all-last") == 0);
    CHECK(r.frame_ms >= 0 && r.teacher_ms > 0);
    for (int b = 0; b < r.n_blocks; b++) {
        for (int d = 0; d < r.n_desc[b]; d++) {
            CHECK(r.median[b][d] > 0 && r.median[b][d] <= r.raw_median[b][d]);
            CHECK(r.median[b][d] <= r.median[b][0]); /* the noise rule: never slower than s = 0 */
            CHECK(r.arena[b][d] > 0);
        }
    }
    for (int c = 0; c < r.n_checks; c++)
        CHECK(r.checks[c].predicted_ms > 0 && r.checks[c].measured_ms > 0);
    /* resnet18.onnx fixes its batch at 1 (a Reshape to 1x128): say so */
    latency_options l2 = lo;
    l2.batch = 2;
    l2.n_random = 0;
    latency_result r2;
    CHECK_FAILS(latency_measure(&lib, &l2, &r2), LEGO_ERR_SHAPE, "cannot run at batch 2");
    CHECK_OK(latency_store(&lib, &r));
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(lib.manifest, "devices"), key);
    CHECK(cJSON_IsObject(dev));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(dev, "frame_ms")));
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(dev, "measured_at")));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(dev, "checks")) == 4);
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(library_descendant_json(&lib, 2, 1), "latency"), key);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(l, "median_ms")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(l, "iqr_ms")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(l, "arena_bytes")));
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(l, "weight_bytes");
    CHECK(cJSON_IsNumber(w) && w->valuedouble == (double)r.weights[2][1]);
    w = cJSON_GetObjectItemCaseSensitive(dev, "frame_weight_bytes");
    CHECK(cJSON_IsNumber(w) && w->valuedouble == (double)r.frame_weights && r.frame_weights > 0);
    latency_result_free(&r);
    library_free(&lib);
    /* the weights recorded are those of a descendant that only runs: on
     * oneDNN its kernels' copies, the ONNX weights they replace freed */
    CHECK_OK(library_open(dir, &lib));
    bx_frame f;
    CHECK_OK(bx_frame_open(&lib, 1, &f));
    bx_desc *d = NULL;
    CHECK_OK(bx_desc_open(&lib, &f, 2, 1, &d));
    if (d) {
        int64_t before = d->weight_bytes;
        size_t freed = bx_desc_release_weights(d);
        CHECK(d->weight_bytes == before - (int64_t)freed);
        CHECK(dnnl_conv_enabled() ? freed > 0 : freed == 0);
        CHECK(d->weight_bytes == (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
                                     cJSON_GetObjectItemCaseSensitive(
                                         cJSON_GetObjectItemCaseSensitive(library_descendant_json(&lib, 2, 1),
                                                                          "latency"),
                                         key),
                                     "weight_bytes")));
    }
    bx_desc_free(d);
    bx_frame_free(&f);
    library_free(&lib);
    CHECK_FAILS(latency_measure(&(block_library){0}, &(latency_options){.repeat = 1}, &r), LEGO_ERR_ARG, "repeat 1");
}

/* ---- helpers ---------------------------------------------------------------------- */

static lego_tensor input_tensor(const lego_runtime *rt, uint64_t seed)
{
    lego_tensor x = *lego_runtime_input(rt, 0);
    x.data = NULL;
    tensor_alloc(&x);
    rng g;
    rng_seed(&g, seed);
    float *p = x.data;
    for (int64_t i = 0; i < lego_tensor_numel(&x); i++)
        p[i] = rng_normal(&g);
    return x;
}

/* The output of composition `choice` through compose_model and exec_run. */
static lego_status reference(block_library *lib, const int *choice, const lego_tensor *x, lego_tensor **out)
{
    lego_graph g;
    LEGO_TRY(compose_model(lib, choice, &g));
    exec_plan p;
    lego_status st = exec_plan_build(&g, &p);
    if (st.code == LEGO_OK) {
        const lego_tensor *ins[] = {x};
        st = exec_run(&g, &p, ins, out);
        exec_plan_free(&p);
    }
    graph_free(&g);
    return st;
}

static bool same_bits(const lego_tensor *a, const lego_tensor *b)
{
    return a && b && tensor_same_shape(a, b) && memcmp(a->data, b->data, lego_tensor_bytes(a)) == 0;
}

static int count_diff(const int *a, const int *b, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += a[i] != b[i];
    return k;
}

/* Budgets that sweep the space: latency from the smallest to the largest
 * composition, memory from tight to none. */
static const double lat_budgets[] = {0.1, 0.13, 0.16, 0.19, 0.22, 0.26, 0.3, INFINITY, 0.01};
static const int64_t mem_budgets[] = {INT64_MAX, 600000, 520000, 480000, 450000, 430000, 1000};

/* ---- decisions and switching -------------------------------------------------------- */

static void test_decisions(const char *dir)
{
    lego_runtime_options o = {.fixed_latency = 1};
    lego_runtime *rt;
    lego_status st = lego_runtime_open(dir, &o, &rt);
    CHECK_OK(st);
    if (st.code)
        return;
    int nb = lego_runtime_num_blocks(rt);
    CHECK(nb == 8);
    CHECK(lego_runtime_num_inputs(rt) == 1 && lego_runtime_num_outputs(rt) == 1);
    CHECK(lego_runtime_output(rt, 0)->dims[1] == 10);
    /* the same estimates, solved directly */
    block_library lib;
    CHECK_OK(library_open(dir, &lib));
    char key[LATENCY_PROFILE_MAX];
    device_profile_key(lego_get_num_threads(), 1, key, sizeof key);
    rt_estimates e;
    st = rt_estimates_load(&lib, key, lego_get_num_threads(), 1, &e);
    CHECK_OK(st);
    if (st.code) {
        library_free(&lib);
        lego_runtime_close(rt);
        return;
    }
    CHECK(e.teacher_accuracy == 0.9 && e.block_arena_bytes > 0 && e.frame_arena_bytes > 0);
    lego_runtime_stats s;
    CHECK_OK(lego_runtime_stats_get(rt, &s));
    /* open reads no descendant: the teacher is current but not loaded */
    CHECK(s.loads == 0 && s.cache_entries == 0 && s.current.composition == 0);
    CHECK(s.weights_bytes > 0 && s.cache_bytes == 0 && s.teacher_latency_ms > 0 && s.teacher_memory_bytes > 0);
    for (int b = 0; b < nb; b++)
        CHECK(s.current.option[b] == 0);
    int prev[LEGO_MAX_BLOCKS];
    for (int b = 0; b < nb; b++)
        prev[b] = -1; /* nothing loaded: the first decision switches every block */
    int n_lat = (int)(sizeof lat_budgets / sizeof *lat_budgets), n_mem = (int)(sizeof mem_budgets / sizeof *mem_budgets);
    int infeasible = 0, distinct = 0;
    lego_tensor x = input_tensor(rt, 42);
    for (int i = 0; i < n_lat; i++) {
        for (int j = 0; j < n_mem; j++) {
            int want_opt[LEGO_MAX_BLOCKS];
            scale_choice want = {.option = want_opt};
            CHECK_OK(scale_solve(&e.problem, isfinite(lat_budgets[i]) ? lat_budgets[i] : DBL_MAX, mem_budgets[j], &want));
            lego_runtime_stats before;
            CHECK_OK(lego_runtime_stats_get(rt, &before));
            lego_choice ch;
            st = lego_runtime_set_budget(rt, lat_budgets[i], mem_budgets[j], &ch);
            CHECK_OK(st);
            if (st.code)
                continue;
            CHECK(memcmp(ch.option, want_opt, sizeof(int) * (size_t)nb) == 0);
            CHECK(ch.feasible == want.feasible);
            CHECK(ch.accuracy_loss == want.acc_loss && ch.memory_bytes == want.memory);
            CHECK(fabs(ch.latency_ms - want.latency) < 1e-12);
            CHECK(fabs(ch.accuracy - (0.9 - want.acc_loss)) < 1e-12);
            CHECK(ch.solve_us >= 0 && ch.switch_ms >= 0);
            infeasible += !ch.feasible;
            if (!ch.feasible)
                CHECK(ch.latency_excess_ms > 0 || ch.memory_excess_bytes > 0);
            /* only the changed blocks switch; only uncached ones load */
            int changed = count_diff(prev, ch.option, nb);
            CHECK(ch.switched == changed);
            lego_runtime_stats after;
            CHECK_OK(lego_runtime_stats_get(rt, &after));
            CHECK(after.loads - before.loads == (uint64_t)ch.loaded);
            CHECK(ch.loaded <= changed);
            CHECK(after.current.composition == ch.composition);
            CHECK(changed == 0 ? ch.composition == before.current.composition
                               : ch.composition > before.current.composition);
            memcpy(prev, ch.option, sizeof(int) * (size_t)nb);
            /* bit for bit the composed graph's output */
            if (changed || (i == 0 && j == 0)) {
                distinct++;
                lego_tensor *got = NULL, *ref = NULL;
                const lego_tensor *ins[] = {&x};
                lego_run_info info;
                CHECK_OK(lego_runtime_run(rt, ins, &got, &info));
                CHECK(info.composition == ch.composition && info.latency_ms > 0);
                /* the weights it holds are what `latency` recorded for this device */
                lego_runtime_stats now;
                CHECK_OK(lego_runtime_stats_get(rt, &now));
                int64_t weights = e.frame_weight_bytes;
                for (int b = 0; b < nb; b++)
                    weights += e.memory[b][ch.option[b]];
                CHECK(now.weights_bytes == weights);
                CHECK_OK(reference(&lib, ch.option, &x, &ref));
                CHECK(same_bits(got, ref));
                lego_tensor_free(got);
                lego_tensor_free(ref);
            }
        }
    }
    CHECK(infeasible > 0 && distinct > 5);
    /* everything is cached by now: a full sweep again loads nothing */
    CHECK_OK(lego_runtime_stats_get(rt, &s));
    uint64_t loads = s.loads;
    for (int i = 0; i < n_lat; i++)
        for (int j = 0; j < n_mem; j++)
            CHECK_OK(lego_runtime_set_budget(rt, lat_budgets[i], mem_budgets[j], NULL));
    CHECK_OK(lego_runtime_stats_get(rt, &s));
    CHECK(s.loads == loads && s.evictions == 0);
    /* switch time of cached blocks: report it (0.12 is not among the
     * budgets above; which descendants it takes depends on the kernels'
     * memory, so it is loaded once first) */
    double t_switch = 0;
    int n_switched = 0;
    CHECK_OK(lego_runtime_set_budget(rt, 0.12, INT64_MAX, NULL));
    for (int k = 0; k < 200; k++) {
        lego_choice ch;
        CHECK_OK(lego_runtime_set_budget(rt, k % 2 ? 0.12 : 0.3, INT64_MAX, &ch));
        t_switch += ch.switch_ms;
        n_switched += ch.switched;
        CHECK(ch.loaded == 0);
    }
    if (n_switched)
        printf("cached switch: %.2f us per block switched (%d switches), solve %.1f us\n", 1e3 * t_switch / n_switched,
               n_switched, s.last_solve_us);
    /* bad budgets change nothing */
    lego_runtime_stats keep;
    CHECK_OK(lego_runtime_stats_get(rt, &keep));
    lego_tensor *ref = NULL, *got = NULL;
    const lego_tensor *ins[] = {&x};
    CHECK_OK(lego_runtime_run(rt, ins, &ref, NULL));
    CHECK_FAILS(lego_runtime_set_budget(rt, 0, 1000000, NULL), LEGO_ERR_ARG, "latency budget 0");
    CHECK_FAILS(lego_runtime_set_budget(rt, -1, 1000000, NULL), LEGO_ERR_ARG, "latency budget -1");
    CHECK_FAILS(lego_runtime_set_budget(rt, NAN, 1000000, NULL), LEGO_ERR_ARG, "latency budget");
    CHECK_FAILS(lego_runtime_set_budget(rt, -INFINITY, 1000000, NULL), LEGO_ERR_ARG, "latency budget");
    CHECK_FAILS(lego_runtime_set_budget(rt, 1e12, 1000000, NULL), LEGO_ERR_ARG, "absurd");
    CHECK_FAILS(lego_runtime_set_budget(rt, 1, 0, NULL), LEGO_ERR_ARG, "memory budget 0");
    CHECK_FAILS(lego_runtime_set_budget(rt, 1, -5, NULL), LEGO_ERR_ARG, "memory budget -5");
    CHECK_FAILS(lego_runtime_set_budget(rt, 1, (int64_t)1 << 61, NULL), LEGO_ERR_ARG, "absurd");
    lego_runtime_stats now;
    CHECK_OK(lego_runtime_stats_get(rt, &now));
    CHECK(now.current.composition == keep.current.composition && now.decisions == keep.decisions);
    CHECK_OK(lego_runtime_run(rt, ins, &got, NULL));
    CHECK(same_bits(got, ref));
    lego_tensor_free(got);
    lego_tensor_free(ref);
    /* wrong input shape */
    lego_tensor bad = x;
    bad.dims[2] = 16;
    const lego_tensor *bins[] = {&bad};
    CHECK_FAILS(lego_runtime_run(rt, bins, &got, NULL), LEGO_ERR_SHAPE, "the model expects");
    tensor_release(&x);
    rt_estimates_free(&e);
    library_free(&lib);
    lego_runtime_close(rt);
}

/* A cache cap below one composition: only what runs stays cached. */
static void test_cache_cap(const char *dir)
{
    lego_runtime_options o = {.fixed_latency = 1, .cache_bytes = 1};
    lego_runtime *rt;
    lego_status st = lego_runtime_open(dir, &o, &rt);
    CHECK_OK(st);
    if (st.code)
        return;
    block_library lib;
    CHECK_OK(library_open(dir, &lib));
    lego_tensor x = input_tensor(rt, 7);
    const lego_tensor *ins[] = {&x};
    int n_lat = (int)(sizeof lat_budgets / sizeof *lat_budgets);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n_lat; i++) {
            lego_choice ch;
            CHECK_OK(lego_runtime_set_budget(rt, lat_budgets[i], INT64_MAX, &ch));
            lego_runtime_stats s;
            CHECK_OK(lego_runtime_stats_get(rt, &s));
            CHECK(s.cache_entries == 8);
            CHECK(s.cache_bytes > 0 && s.cache_bytes < s.weights_bytes);
            lego_tensor *got = NULL, *ref = NULL;
            CHECK_OK(lego_runtime_run(rt, ins, &got, NULL));
            CHECK_OK(reference(&lib, ch.option, &x, &ref));
            CHECK(same_bits(got, ref));
            lego_tensor_free(got);
            lego_tensor_free(ref);
        }
    }
    lego_runtime_stats s;
    CHECK_OK(lego_runtime_stats_get(rt, &s));
    CHECK(s.evictions > 0);
    CHECK(s.loads > 8 + s.evictions / 2);
    CHECK(s.run_contexts == 1 && s.arena_bytes > 0);
    tensor_release(&x);
    library_free(&lib);
    lego_runtime_close(rt);
}

/* Online calibration: the ratio of measured to estimated latency rescales
 * the budgets set_budget solves for. */
static void test_calibration(const char *dir)
{
    lego_runtime *rt;
    lego_status st = lego_runtime_open(dir, NULL, &rt);
    CHECK_OK(st);
    if (st.code)
        return;
    lego_tensor x = input_tensor(rt, 3);
    const lego_tensor *ins[] = {&x};
    lego_runtime_stats s;
    for (int i = 0; i < 6; i++) {
        lego_tensor *out = NULL;
        lego_run_info info;
        CHECK_OK(lego_runtime_run(rt, ins, &out, &info));
        CHECK_OK(lego_runtime_stats_get(rt, &s));
        /* fewer than 3 ratios: not trusted yet */
        CHECK(i >= 2 ? s.calibration_samples == i + 1 : s.calibration == 1.0);
        lego_tensor_free(out);
    }
    CHECK(s.calibration >= 0.2 && s.calibration <= 5.0);
    block_library lib;
    CHECK_OK(library_open(dir, &lib));
    char key[LATENCY_PROFILE_MAX];
    device_profile_key(lego_get_num_threads(), 1, key, sizeof key);
    rt_estimates e;
    CHECK_OK(rt_estimates_load(&lib, key, lego_get_num_threads(), 1, &e));
    for (int i = 0; i < 8; i++) {
        double T = 0.12 + 0.03 * i;
        int want_opt[LEGO_MAX_BLOCKS];
        scale_choice want = {.option = want_opt};
        CHECK_OK(scale_solve(&e.problem, T / s.calibration, INT64_MAX, &want));
        lego_choice ch;
        CHECK_OK(lego_runtime_set_budget(rt, T, INT64_MAX, &ch));
        CHECK(memcmp(ch.option, want_opt, sizeof(int) * 8) == 0);
        CHECK(fabs(ch.latency_ms - want.latency * s.calibration) < 1e-9);
    }
    rt_estimates_free(&e);
    library_free(&lib);
    tensor_release(&x);
    lego_runtime_close(rt);
}

/* A model with a dynamic batch axis: latency and the runtime at batch 2. */
static void test_batch(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/dyn", scratch);
    lego_status st = make_library_of("data/models/resnet18_dynbatch.onnx", dir, true, true, 2);
    CHECK_OK(st);
    if (st.code)
        return;
    lego_runtime *rt;
    CHECK_FAILS(lego_runtime_open(dir, NULL, &rt), LEGO_ERR_ARG, "| batch 2'");
    st = lego_runtime_open(dir, &(lego_runtime_options){.batch = 2, .fixed_latency = 1}, &rt);
    CHECK_OK(st);
    if (st.code)
        return;
    CHECK(lego_runtime_input(rt, 0)->dims[0] == 2 && lego_runtime_output(rt, 0)->dims[0] == 2);
    lego_runtime_stats s;
    CHECK_OK(lego_runtime_stats_get(rt, &s));
    CHECK(strstr(s.profile, "| batch 2") != NULL);
    block_library lib;
    CHECK_OK(library_open(dir, &lib));
    lego_tensor x = input_tensor(rt, 8);
    const lego_tensor *ins[] = {&x};
    for (int i = 0; i < 3; i++) {
        lego_choice ch;
        CHECK_OK(lego_runtime_set_budget(rt, 0.2 + 0.1 * i, INT64_MAX, &ch));
        lego_tensor *got = NULL, *ref = NULL;
        CHECK_OK(lego_runtime_run(rt, ins, &got, NULL));
        lego_graph g;
        CHECK_OK(compose_model(&lib, ch.option, &g));
        g.values[g.inputs[0]].t.dims[0] = 2;
        CHECK_OK(graph_infer(&g));
        exec_plan p;
        CHECK_OK(exec_plan_build(&g, &p));
        CHECK_OK(exec_run(&g, &p, ins, &ref));
        CHECK(same_bits(got, ref));
        exec_plan_free(&p);
        graph_free(&g);
        lego_tensor_free(got);
        lego_tensor_free(ref);
    }
    tensor_release(&x);
    library_free(&lib);
    lego_runtime_close(rt);
}

/* ---- broken libraries ---------------------------------------------------------------- */

static void rename_profile(const char *dir, const char *to)
{
    block_library lib;
    CHECK_OK(library_open(dir, &lib));
    char key[LATENCY_PROFILE_MAX];
    device_profile_key(lego_get_num_threads(), 1, key, sizeof key);
    cJSON *devs = cJSON_GetObjectItemCaseSensitive(lib.manifest, "devices");
    cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(devs, key);
    CHECK(d != NULL);
    cJSON_AddItemToObject(devs, to, d);
    for (int b = 0; b < lib.n_blocks; b++)
        for (int k = 0; k < lib.blocks[b].n_desc; k++) {
            cJSON *lat = cJSON_GetObjectItemCaseSensitive(library_descendant_json(&lib, b, k), "latency");
            cJSON *e = cJSON_DetachItemFromObjectCaseSensitive(lat, key);
            if (e)
                cJSON_AddItemToObject(lat, to, e);
        }
    CHECK_OK(library_save(&lib));
    library_free(&lib);
}

static void test_broken(const char *dir)
{
    lego_runtime *rt = NULL;
    char path[800], other[512];
    /* no accuracy loss yet */
    snprintf(other, sizeof other, "%s/noacc", scratch);
    CHECK_OK(make_library(other, false, true));
    CHECK_FAILS(lego_runtime_open(other, NULL, &rt), LEGO_ERR_ARG, "no accuracy_loss: run `legodnn profile");
    CHECK(rt == NULL);
    /* no latency at all */
    snprintf(other, sizeof other, "%s/nolat", scratch);
    CHECK_OK(make_library(other, true, false));
    CHECK_FAILS(lego_runtime_open(other, NULL, &rt), LEGO_ERR_ARG, "no latency measurements");
    CHECK_FAILS(lego_runtime_open(other, NULL, &rt), LEGO_ERR_ARG, "run `legodnn latency");
    /* measured on another machine */
    snprintf(other, sizeof other, "%s/elsewhere", scratch);
    CHECK_OK(make_library(other, true, true));
    rename_profile(other, "Some Other CPU @ 1.00GHz | 4 threads | batch 1");
    CHECK_FAILS(lego_runtime_open(other, NULL, &rt), LEGO_ERR_ARG, "it has 'Some Other CPU @ 1.00GHz");
    CHECK_FAILS(lego_runtime_open(other, NULL, &rt), LEGO_ERR_ARG, "on this machine first");
    /* another batch than measured */
    CHECK_FAILS(lego_runtime_open(dir, &(lego_runtime_options){.batch = 3}, &rt), LEGO_ERR_ARG, "--batch 3");
    /* a missing descendant file: library_open's check */
    snprintf(other, sizeof other, "%s/missing", scratch);
    CHECK_OK(make_library(other, true, true));
    snprintf(path, sizeof path, "%s/blocks/block-5-0.60.onnx", other);
    CHECK(unlink(path) == 0);
    CHECK_FAILS(lego_runtime_open(other, NULL, &rt), LEGO_ERR_FORMAT, "block-5-0.60.onnx is missing");
    /* corrupt manifest */
    snprintf(other, sizeof other, "%s/corrupt", scratch);
    CHECK_OK(make_library(other, true, true));
    snprintf(path, sizeof path, "%s/manifest.json", other);
    CHECK_OK(file_write_atomic(path, "{\"format_version\": 1, \"blocks\": [", 34));
    CHECK_FAILS(lego_runtime_open(other, NULL, &rt), LEGO_ERR_FORMAT, "manifest.json is not valid JSON");
    CHECK_FAILS(lego_runtime_open("/nonexistent/lib", NULL, &rt), LEGO_ERR_IO, "cannot open");
    /* a descendant file damaged after open: the decision fails, the model
     * keeps running what it ran */
    snprintf(other, sizeof other, "%s/later", scratch);
    CHECK_OK(make_library(other, true, true));
    lego_status st = lego_runtime_open(other, &(lego_runtime_options){.fixed_latency = 1}, &rt);
    CHECK_OK(st);
    if (st.code)
        return;
    lego_tensor x = input_tensor(rt, 5);
    const lego_tensor *ins[] = {&x};
    lego_tensor *before = NULL, *after = NULL;
    CHECK_OK(lego_runtime_run(rt, ins, &before, NULL));
    snprintf(path, sizeof path, "%s/blocks/block-7-0.80.onnx", other);
    CHECK_OK(file_write_atomic(path, "garbage", 7));
    CHECK_FAILS(lego_runtime_set_budget(rt, 0.01, INT64_MAX, NULL), LEGO_ERR_FORMAT, "block-7-0.80.onnx");
    lego_runtime_stats s;
    CHECK_OK(lego_runtime_stats_get(rt, &s));
    CHECK(s.current.composition == 1 && s.decisions == 0);
    CHECK_OK(lego_runtime_run(rt, ins, &after, NULL));
    CHECK(same_bits(before, after));
    /* blocks loaded before the failure stay cached and unheld */
    CHECK(s.cache_entries > 8);
    lego_tensor_free(before);
    lego_tensor_free(after);
    tensor_release(&x);
    lego_runtime_close(rt);
    CHECK_FAILS(lego_runtime_open(dir, &(lego_runtime_options){.cache_bytes = -1}, &rt), LEGO_ERR_ARG, "cache cap");
}

/* ---- threads ------------------------------------------------------------------------ */

#define RUNNERS 3
#define RUNS_PER_THREAD 60
#define DECISIONS 150
#define MAX_IDS (DECISIONS + 2)

typedef struct run_record {
    uint64_t id;
    float out[10];
} run_record;

typedef struct thread_ctx {
    lego_runtime *rt;
    const lego_tensor *x;
    run_record rec[RUNS_PER_THREAD];
    int n, errors;
    int fixed;                             /* budget thread: no calibration */
    int choices[MAX_IDS][LEGO_MAX_BLOCKS]; /* budget thread: id -> choice */
    bool known[MAX_IDS];
} thread_ctx;

static thread_ctx *shared_ctx;
static thread_ctx runner_ctx[RUNNERS];

static void *runner(void *arg)
{
    thread_ctx *t = arg;
    const lego_tensor *ins[] = {t->x};
    for (int i = 0; i < RUNS_PER_THREAD; i++) {
        lego_tensor *out = NULL;
        lego_run_info info;
        lego_status st = lego_runtime_run(t->rt, ins, &out, &info);
        if (st.code || lego_tensor_numel(out) != 10) {
            t->errors++;
            lego_status_free(&st);
            lego_tensor_free(out);
            continue;
        }
        t->rec[t->n].id = info.composition;
        memcpy(t->rec[t->n].out, out->data, sizeof t->rec[t->n].out);
        t->n++;
        lego_tensor_free(out);
    }
    return NULL;
}

static void *decider(void *arg)
{
    thread_ctx *t = arg;
    /* wide enough for any calibration ratio the contention brings */
    static const double wide[] = {0.1, 0.8, 0.25, 0.5, 0.35, 1.0, 0.2, 0.6, 0.3, 0.45, 0.7};
    static const double nominal[] = {0.1, 0.2, 0.13, 0.17, 0.21, 0.15, 0.12, 0.19, 0.3, 0.14};
    const double *budgets = t->fixed ? nominal : wide;
    int n_lat = t->fixed ? (int)(sizeof nominal / sizeof *nominal) : (int)(sizeof wide / sizeof *wide);
    for (int k = 0; k < DECISIONS; k++) {
        lego_choice ch;
        lego_status st = lego_runtime_set_budget(t->rt, budgets[k % n_lat], k % 3 ? INT64_MAX : 480000, &ch);
        if (st.code || ch.composition >= MAX_IDS) {
            t->errors++;
            lego_status_free(&st);
            continue;
        }
        memcpy(t->choices[ch.composition], ch.option, sizeof(int) * (size_t)ch.n_blocks);
        t->known[ch.composition] = true;
    }
    return NULL;
}

/* fixed: no calibration (so the budgets sweep many compositions even under
 * a sanitizer's slowdown); else calibration runs concurrently too. */
static void test_threads(const char *dir, int fixed)
{
    /* a small cache cap: evictions happen while runs hold compositions */
    lego_runtime_options o = {.cache_bytes = 300000, .fixed_latency = fixed};
    lego_runtime *rt;
    lego_status st = lego_runtime_open(dir, &o, &rt);
    CHECK_OK(st);
    if (st.code)
        return;
    lego_tensor x = input_tensor(rt, 11);
    thread_ctx *dec = calloc(1, sizeof *dec);
    shared_ctx = dec;
    dec->rt = rt;
    dec->fixed = fixed;
    dec->known[1] = true; /* the teacher, current at open */
    memset(dec->choices[1], 0, sizeof dec->choices[1]);
    pthread_t th[RUNNERS + 1];
    for (int i = 0; i < RUNNERS; i++) {
        memset(&runner_ctx[i], 0, sizeof runner_ctx[i]);
        runner_ctx[i].rt = rt;
        runner_ctx[i].x = &x;
        pthread_create(&th[i], NULL, runner, &runner_ctx[i]);
    }
    pthread_create(&th[RUNNERS], NULL, decider, dec);
    for (int i = 0; i <= RUNNERS; i++)
        pthread_join(th[i], NULL);
    CHECK(dec->errors == 0);
    lego_runtime_stats s;
    CHECK_OK(lego_runtime_stats_get(rt, &s));
    CHECK(s.runs == RUNNERS * RUNS_PER_THREAD);
    CHECK(s.run_contexts >= 1 && s.run_contexts <= RUNNERS);
    printf("threads: %d runs, %llu decisions, %llu block switches, %llu loads, %llu evictions, %d run contexts, "
           "calibration %.3f over %d\n",
           RUNNERS * RUNS_PER_THREAD, (unsigned long long)s.decisions, (unsigned long long)s.switches,
           (unsigned long long)s.loads, (unsigned long long)s.evictions, s.run_contexts, s.calibration,
           s.calibration_samples);
    /* every output is its composition's */
    block_library lib;
    CHECK_OK(library_open(dir, &lib));
    lego_tensor *expected[MAX_IDS] = {0};
    int checked = 0, wrong = 0, unknown = 0, ids_seen = 0;
    for (int i = 0; i < RUNNERS; i++) {
        CHECK(runner_ctx[i].errors == 0);
        for (int r = 0; r < runner_ctx[i].n; r++) {
            uint64_t id = runner_ctx[i].rec[r].id;
            if (id >= MAX_IDS || !dec->known[id]) {
                unknown++;
                continue;
            }
            if (!expected[id]) {
                /* the same choice may have several ids: share the reference */
                for (uint64_t j = 1; j < MAX_IDS && !expected[id]; j++)
                    if (expected[j] && memcmp(dec->choices[j], dec->choices[id], sizeof dec->choices[id]) == 0)
                        CHECK_OK(tensor_clone(expected[j], (expected[id] = calloc(1, sizeof(lego_tensor)))));
                if (!expected[id]) {
                    CHECK_OK(reference(&lib, dec->choices[id], &x, &expected[id]));
                    ids_seen++;
                }
            }
            checked++;
            if (!expected[id] || memcmp(expected[id]->data, runner_ctx[i].rec[r].out, 10 * sizeof(float)) != 0)
                wrong++;
        }
    }
    CHECK(unknown == 0);
    CHECK(wrong == 0);
    CHECK(checked == RUNNERS * RUNS_PER_THREAD);
    printf("threads%s: %d outputs checked against %d distinct compositions, %d wrong\n",
           fixed ? " (fixed latency)" : "", checked, ids_seen, wrong);
    for (int i = 0; i < MAX_IDS; i++)
        lego_tensor_free(expected[i]);
    library_free(&lib);
    tensor_release(&x);
    free(dec);
    lego_runtime_close(rt);
}

int main(int argc, char **argv)
{
    bool threads_only = argc > 1 && strcmp(argv[1], "--threads-only") == 0;
    snprintf(scratch, sizeof scratch, "/tmp/legodnn-test-runtime-XXXXXX");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/lib", scratch);
    lego_status st = make_library(dir, true, true);
    CHECK_OK(st);
    if (st.code == LEGO_OK) {
        if (!threads_only) {
            test_decisions(dir);
            test_cache_cap(dir);
            test_calibration(dir);
            test_batch();
            test_broken(dir);
        }
        test_threads(dir, 1);
        test_threads(dir, 0);
        if (!threads_only) {
            /* last: it replaces the synthetic medians with measured ones */
            test_latency(dir);
        }
    }
    CHECK_OK(file_remove_tree(scratch));
    return harness_finish();
}
