/* progress.c - terminal progress bars and their plain-text fallback. */
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void progress_start(progress *p, const char *label, int64_t total, bool quiet)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total > 0 ? total : 1;
    p->start = now_seconds();
    p->tty = isatty(fileno(stderr));
    p->quiet = quiet;
    p->last_decile = -1;
}

static void fmt_time(double s, char *buf, size_t len)
{
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%d:%02d", t / 60, t % 60);
}

static void draw(progress *p, const char *status, bool final)
{
    double el = now_seconds() - p->start;
    double frac = (double)p->done / (double)p->total;
    char bar[32], eta[32], spent[32];
    int fill = (int)(frac * 24 + 0.5);
    for (int i = 0; i < 24; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[24] = 0;
    fmt_time(el, spent, sizeof spent);
    fmt_time(frac > 0 ? el / frac - el : 0, eta, sizeof eta);
    if (p->tty)
        fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %s%s%s%s", p->label, bar, (long long)p->done,
                (long long)p->total, spent, final ? "" : " eta ", final ? "" : eta,
                status ? "  " : "");
    else
        fprintf(stderr, "%s %3.0f%% %lld/%lld %s%s", p->label, 100 * frac, (long long)p->done,
                (long long)p->total, spent, status ? "  " : "");
    if (status)
        fputs(status, stderr);
    if (!p->tty || final)
        fputc('\n', stderr);
    fflush(stderr);
}

void progress_update(progress *p, int64_t done, const char *status)
{
    p->done = done;
    if (p->quiet)
        return;
    double t = now_seconds();
    int decile = (int)(10 * done / p->total);
    if (p->tty ? t - p->last_draw < 0.1 : decile == p->last_decile)
        return;
    p->last_draw = t;
    p->last_decile = decile;
    draw(p, status, false);
}

void progress_finish(progress *p, const char *status)
{
    p->done = p->total;
    if (!p->quiet)
        draw(p, status, true);
}
