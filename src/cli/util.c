/* util.c - helpers shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "core/file.h"
#include "runtime/latency.h"

int cli_fail(lego_status st)
{
    fprintf(stderr, "legodnn: %s\n", lego_status_msg(st));
    lego_status_free(&st);
    return EXIT_USER;
}

int cli_usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "legodnn: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nusage: %s\n", usage);
    va_end(ap);
    return EXIT_USAGE;
}

static volatile sig_atomic_t interrupted;
static struct sigaction old_int, old_term;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

void cli_catch_interrupts(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
}

void cli_release_interrupts(void)
{
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
}

bool cli_interrupted(void) { return interrupted != 0; }

int cli_print_json(cJSON *root)
{
    lego_status st = cli_emit_json(root, NULL);
    return st.code ? cli_fail(st) : EXIT_OK;
}

bool cli_parse_fraction(const char *s, double *out)
{
    double v;
    if (!cli_parse_double(s, &v) || !(v > 0 && v <= 1))
        return false;
    *out = v;
    return true;
}

/* v divided by 1000 until under 1000 (or at suffix[4]), then "<v><sep><suffix>";
 * buf holds 32 bytes. */
static const char *scaled(double v, const char *const suffix[5], const char *sep, char *buf)
{
    int i = 0;
    while (v >= 1000 && i < 4) {
        v /= 1000;
        i++;
    }
    snprintf(buf, 32, i ? "%.2f%s%s" : "%.0f%s%s", v, sep, suffix[i]);
    return buf;
}

const char *cli_count(double v, char *buf)
{
    static const char *const suffix[] = {"", "K", "M", "G", "T"};
    return scaled(v, suffix, "", buf);
}

const char *cli_bytes(double v, char *buf)
{
    static const char *const suffix[] = {"B", "KB", "MB", "GB", "TB"};
    return scaled(v, suffix, " ", buf);
}

const char *cli_shape(const lego_tensor *t, char *buf)
{
    size_t pos = 0;
    buf[0] = 0;
    for (int i = 0; i < t->rank && pos < 120; i++)
        pos += (size_t)snprintf(buf + pos, 128 - pos, i ? "x%lld" : "%lld", (long long)t->dims[i]);
    if (t->rank == 0)
        snprintf(buf, 128, "scalar");
    return buf;
}

bool cli_parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static const struct common_spec {
    unsigned flag;
    const char *name;
    long min, max;
    const char *needs;
    size_t offset;
} common_specs[] = {
    {CLI_OPT_THREADS, "--threads", 0, 256, "a count from 1 to 256 (0: every core)", offsetof(cli_common, threads)},
    {CLI_OPT_BATCH, "--batch", 1, 65536, "a size from 1 to 65536", offsetof(cli_common, batch)},
    {CLI_OPT_SEED, "--seed", 0, 2147483647L, "a non-negative integer", offsetof(cli_common, seed)},
    {CLI_OPT_EPOCHS, "--epochs", 1, 100000, "a count from 1 to 100000", offsetof(cli_common, epochs)},
    {CLI_OPT_MAX_TRAIN, "--max-train", 1, 1000000000L, "a positive count", offsetof(cli_common, max_train)},
    {CLI_OPT_MAX_TEST, "--max-test", 1, 1000000000L, "a positive count", offsetof(cli_common, max_test)},
};

int cli_common_option(int argc, char **argv, int *i, unsigned which, const char *usage, cli_common *o)
{
    const char *a = argv[*i];
    if ((which & CLI_OPT_JSON) && strcmp(a, "--json") == 0) {
        o->json = true;
        return EXIT_OK;
    }
    if ((which & CLI_OPT_QUIET) && strcmp(a, "--quiet") == 0) {
        o->quiet = true;
        return EXIT_OK;
    }
    for (size_t k = 0; k < sizeof common_specs / sizeof *common_specs; k++) {
        const struct common_spec *c = &common_specs[k];
        if (!(which & c->flag) || strcmp(a, c->name) != 0)
            continue;
        long *slot = (long *)((char *)o + c->offset);
        if (*i + 1 >= argc || !cli_parse_int(argv[*i + 1], c->min, c->max, slot))
            return cli_usage_error(usage, "%s needs %s", c->name, c->needs);
        (*i)++;
        return EXIT_OK;
    }
    return CLI_NOT_COMMON;
}

void cli_apply_threads(const cli_common *o)
{
    if (o->threads >= 0)
        lego_set_num_threads((int)o->threads);
}

const char *cli_option_value(int argc, char **argv, int *i, const char *usage)
{
    if (*i + 1 >= argc) {
        cli_usage_error(usage, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_operand(const char *usage, const char *arg, const char **slot, const char *what)
{
    if (arg[0] == '-' && arg[1])
        return cli_usage_error(usage, "unknown option '%s'", arg);
    if (*slot)
        return cli_usage_error(usage, "one %s at a time ('%s' is extra)", what, arg);
    *slot = arg;
    return EXIT_OK;
}

/* "none", or a number. false when unparsable. */
bool cli_parse_latency(const char *s, double *out)
{
    if (strcmp(s, "none") == 0) {
        *out = INFINITY;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || isnan(v))
        return false;
    *out = v;
    return true;
}

/* "none", bytes, or a number with a unit. false when unparsable. */
bool cli_parse_memory(const char *s, int64_t *out)
{
    if (strcmp(s, "none") == 0) {
        *out = INT64_MAX;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || isnan(v))
        return false;
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1},       {"B", 1},          {"KB", 1e3},         {"MB", 1e6},
                 {"GB", 1e9},   {"KiB", 1024.0},   {"MiB", 1048576.0},  {"GiB", 1073741824.0},
                 {"K", 1e3},    {"M", 1e6},        {"G", 1e9}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        if (strcmp(end, units[i].unit) == 0) {
            double b = v * units[i].scale;
            /* out of int64 range: left to the budget check ("absurd") */
            *out = b >= 9.2e18 ? INT64_MAX - 1 : b <= -9.2e18 ? INT64_MIN : (int64_t)llround(b);
            if (b > 0 && *out == 0)
                *out = 1;
            return true;
        }
    }
    return false;
}

bool cli_parse_double(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return end != s && *end == 0 && isfinite(*out);
}

lego_status cli_emit_json(struct cJSON *root, const char *path)
{
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return lego_error(LEGO_ERR_NOMEM, "out of memory printing JSON");
    lego_status st = lego_ok();
    if (path) {
        size_t len = strlen(text);
        text[len] = '\n'; /* cJSON's terminator becomes the file's last newline */
        st = file_write_atomic(path, text, len + 1);
    } else {
        puts(text);
    }
    free(text);
    return st;
}

lego_status cli_open_estimates(const char *dir, int64_t batch, block_library *lib, rt_estimates *e)
{
    LEGO_TRY(library_open(dir, lib));
    char profile[LATENCY_PROFILE_MAX];
    int threads = lego_get_num_threads();
    device_profile_key(threads, batch, profile, sizeof profile);
    lego_status st = rt_estimates_load(lib, profile, threads, batch, e);
    if (st.code)
        library_free(lib);
    return st;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void cli_sort_doubles(double *v, size_t n) { qsort(v, n, sizeof *v, cmp_double); }
