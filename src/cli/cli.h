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

/* Ctrl-C and SIGTERM while a stage that can stop cleanly runs: between
 * cli_catch_interrupts and cli_release_interrupts (which puts the previous
 * handlers back) they only set the flag cli_interrupted reads, which the
 * stage's progress callback turns into "stop", so the stage cleans up
 * instead of dying half-way through its files. */
void cli_catch_interrupts(void);
void cli_release_interrupts(void);
bool cli_interrupted(void);

struct cJSON;
/* Print root (cJSON_Print) on stdout and free it; EXIT_OK, or EXIT_USER
 * after a message when there was no memory to build it. */
int cli_print_json(struct cJSON *root);

/* Parse a fraction in (0, 1] (--max-ratio). */
bool cli_parse_fraction(const char *s, double *out);

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
/* Options several commands share, each with one spelling, one range and
 * one message everywhere ("--batch needs a size from 1 to 65536"). */
enum {
    CLI_OPT_JSON = 1 << 0,      /* --json */
    CLI_OPT_QUIET = 1 << 1,     /* --quiet */
    CLI_OPT_THREADS = 1 << 2,   /* --threads N: 0..256, 0 for every core */
    CLI_OPT_BATCH = 1 << 3,     /* --batch N: 1..65536 */
    CLI_OPT_SEED = 1 << 4,      /* --seed N: 0..2^31-1 */
    CLI_OPT_EPOCHS = 1 << 5,    /* --epochs N: 1..100000 */
    CLI_OPT_MAX_TRAIN = 1 << 6, /* --max-train N: positive */
    CLI_OPT_MAX_TEST = 1 << 7,  /* --max-test N: positive */
};
#define CLI_NOT_COMMON (-1)

typedef struct cli_common {
    bool json, quiet;
    long threads;               /* -1 when not given */
    long batch, seed, epochs, max_train, max_test; /* as given, else as preset */
} cli_common;

/* If argv[*i] is one of the options in `which` (CLI_OPT_* bits), store its
 * value in *o, advance *i past it and return EXIT_OK; a missing or bad value
 * prints the usage error and returns EXIT_USAGE; CLI_NOT_COMMON when it is
 * none of them. */
int cli_common_option(int argc, char **argv, int *i, unsigned which, const char *usage, cli_common *o);
/* lego_set_num_threads(o->threads) when --threads was given. */
void cli_apply_threads(const cli_common *o);
/* The value after option argv[*i] (advancing *i), or NULL after printing
 * "<option> needs a value" (the caller returns EXIT_USAGE). */
const char *cli_option_value(int argc, char **argv, int *i, const char *usage);

/* A word that is not one of the command's options: an unknown option
 * ("-x": usage error), or the command's one operand (`what`: "model",
 * "library"), stored in *slot; a second operand is a usage error. Returns
 * EXIT_OK or EXIT_USAGE. */
int cli_operand(const char *usage, const char *arg, const char **slot, const char *what);

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
lego_status cli_emit_json(struct cJSON *root, const char *path);

/* Sort v[0..n) ascending (timings, sparsity lists). */
void cli_sort_doubles(double *v, size_t n);

#endif
