/* harness.c - assertion bookkeeping and float comparison for tests. */
#include "harness.h"

#include <math.h>
#include <string.h>

#include "onnx/onnx_import.h"

int harness_passed, harness_failed;

void check_fails_with(lego_status st, lego_code code, const char *needle, const char *file,
                      int line)
{
    const char *msg = lego_status_msg(st);
    if (st.code == code && (!needle || strstr(msg, needle))) {
        harness_passed++;
    } else {
        harness_failed++;
        fprintf(stderr, "%s:%d: expected failure %s containing '%s', got %s: %s\n", file, line,
                lego_code_name(code), needle ? needle : "", lego_code_name(st.code), msg);
    }
    lego_status_free(&st);
}

int check_close(const float *got, const float *want, long n, float atol, float rtol,
                const char *what)
{
    float maxref = 0;
    for (long i = 0; i < n; i++)
        if (fabsf(want[i]) > maxref)
            maxref = fabsf(want[i]);
    float scale = maxref > 1 ? maxref : 1;
    long bad = 0, first = -1;
    double worst = 0;
    for (long i = 0; i < n; i++) {
        float d = fabsf(got[i] - want[i]);
        float tol = atol * scale + rtol * fabsf(want[i]);
        if (!(d <= tol)) { /* NaN counts as a mismatch */
            if (first < 0)
                first = i;
            bad++;
        }
        if (d > worst || d != d)
            worst = d;
    }
    if (bad) {
        harness_failed++;
        fprintf(stderr, "%s: %ld of %ld values differ (first at %ld: got %g want %g), max |diff| %g\n",
                what, bad, n, first, got[first], want[first], worst);
        return 0;
    }
    harness_passed++;
    return 1;
}

lego_status harness_load_model(const char *name, struct lego_graph *g)
{
    char path[256];
    snprintf(path, sizeof path, "data/models/%s.onnx", name);
    return onnx_load_file(path, g);
}

int harness_finish(void)
{
    printf("%d passed, %d failed\n", harness_passed, harness_failed);
    return harness_failed ? 1 : 0;
}
