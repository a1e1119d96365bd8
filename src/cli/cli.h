/* cli.h - shared pieces of the legodnn command: exit codes, argument
 * parsing help, number formatting, atomic file output. */
#ifndef LEGO_CLI_H
#define LEGO_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/library.h"
#include "core/status.h"
#include "runtime/runtime.h"
#include "legodnn.h"

enum { EXIT_OK = 0, EXIT_USER = 1, EXIT_USAGE = 2 };

int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_blocks(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_retrain(int argc, char **argv);
int cmd_latency(int argc, char **argv);
int cmd_scale(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* Print "legodnn: <msg>" to stderr, free st, and return EXIT_USER. */
int cli_fail(lego_status st);
/* Print a usage error for a subcommand and return EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *fmt, ...);

/* "11.2M", "1.11G": human-friendly counts; buf needs 32 bytes. */
const char *cli_count(double v, char *buf);
/* "44.9 MB" style; buf needs 32 bytes. */
const char *cli_bytes(double v, char *buf);
/* "1x3x32x32"; buf needs 128 bytes. */
const char *cli_shape(const lego_tensor *t, char *buf);

/* Parse a positive integer option value. */
bool cli_parse_int(const char *s, long min, long max, long *out);
/* Parse a whole argument as a finite number. */
bool cli_parse_double(const char *s, double *out);
/* Budgets: a latency in ms, or "none" (INFINITY); a memory size in bytes,
 * optionally with a unit (KB, MB, GB = 1000^k; KiB, MiB, GiB = 1024^k), or
 * "none" (INT64_MAX). False when unparsable; the range is checked later. */
bool cli_parse_latency(const char *s, double *out);
bool cli_parse_memory(const char *s, int64_t *out);

/* Open the block library in `dir` and load its estimates for this device at
 * the current thread count and `batch` (what `scale` and the runtime use).
 * On failure nothing is left open. */
lego_status cli_open_estimates(const char *dir, int64_t batch, block_library *lib, rt_estimates *e);

/* Print root (then free it) to stdout, or write it atomically to `path`
 * when not NULL. */
struct cJSON;
lego_status cli_emit_json(struct cJSON *root, const char *path);

#endif
