/* bench_common.h - what the runtime benchmarks (bench_switch, bench_memory)
 * share: a clock, the process's resident memory, and a block library made
 * on the spot so a benchmark runs without a dataset or a profiled library. */
#ifndef LEGO_BENCH_COMMON_H
#define LEGO_BENCH_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "legodnn.h"

double bench_now_ms(void);

/* Resident set size now (/proc/self/statm), and its peak (VmHWM of
 * /proc/self/status), in bytes; -1 when unreadable. */
int64_t bench_rss_bytes(void);
int64_t bench_peak_rss_bytes(void);

/* Make a block library in dir (replaced if there) that lego_runtime_open
 * accepts with the current thread count at batch 1:
 *  - model is an ONNX file, or "resnet18:W" for the built-in CIFAR ResNet18
 *    at width W with its initial (untrained) weights, written to dir.onnx;
 *  - `legodnn extract` at sparsities 0, 0.3, 0.6, 0.8 (library_extract);
 *  - `legodnn latency` measured for real (latency_measure, `repeat` rounds);
 *  - accuracy_loss per descendant is synthetic (rising with the sparsity,
 *    different per block) and the teacher accuracy is 0.9: these benchmarks
 *    time switching and count memory, which the accuracy numbers do not
 *    change, and a real `legodnn profile` needs a dataset and minutes.
 * Prints one line of what it did. */
lego_status bench_make_library(const char *model, const char *dir, int repeat);

/* A copy of the runtime's input i, filled with a fixed pseudo-random
 * pattern; free its data with free(). */
lego_tensor bench_input(const lego_runtime *rt, int i);

/* One inference of the current composition on inputs x (one per model
 * input), outputs dropped; info as lego_runtime_run's. */
lego_status bench_run(lego_runtime *rt, const lego_tensor *x, lego_run_info *info);

/* The options both runtime benchmarks take: --lib LIB, --model MODEL,
 * --threads N. If argv[*i] is one of them (with a value), store it, advance
 * *i past the value and return true. */
bool bench_library_arg(int argc, char **argv, int *i, const char **lib, const char **model, int *threads);

/* The usual lego_status check of a benchmark's main: print and exit 1. */
void bench_check(lego_status st, const char *what);

#endif
