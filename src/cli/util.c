/* util.c - helpers shared by the subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
