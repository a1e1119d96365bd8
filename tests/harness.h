/* harness.h - a tiny assertion harness shared by the test programs.
 *
 * CHECK records a failure and goes on; each test program ends with
 * harness_finish(), which prints "N passed, M failed" and sets the exit code. */
#ifndef LEGO_TEST_HARNESS_H
#define LEGO_TEST_HARNESS_H

#include <stdio.h>

#include "legodnn.h"

extern int harness_passed, harness_failed;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) {                                                              \
            harness_passed++;                                                    \
        } else {                                                                 \
            harness_failed++;                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

/* Check a status is OK; print its message otherwise and free it. */
#define CHECK_OK(expr)                                                           \
    do {                                                                         \
        lego_status check_st_ = (expr);                                          \
        if (check_st_.code == LEGO_OK) {                                         \
            harness_passed++;                                                    \
        } else {                                                                 \
            harness_failed++;                                                    \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, \
                    lego_status_msg(check_st_));                                 \
            lego_status_free(&check_st_);                                        \
        }                                                                        \
    } while (0)

/* Check a status failed with `code` and that its message contains `needle`. */
void check_fails_with(lego_status st, lego_code code, const char *needle, const char *file,
                      int line);
#define CHECK_FAILS(expr, code, needle) check_fails_with((expr), (code), (needle), __FILE__, __LINE__)

/* Max of |a-b| checked against atol*max(1,max|b|) + rtol*|b| elementwise. */
int check_close(const float *got, const float *want, long n, float atol, float rtol,
                const char *what);

/* tests/data/models/<name>.onnx imported and inferred (onnx_load_file);
 * run from tests/, as CTest does. */
struct lego_graph;
lego_status harness_load_model(const char *name, struct lego_graph *g);

int harness_finish(void);

#endif
