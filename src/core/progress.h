/* progress.h - a progress bar for long work.
 *
 * On a terminal it redraws one line (bar, count, rate, ETA and a caller's
 * status text); elsewhere (logs, CI) it prints a plain line every ~10% so
 * the output stays readable. Writes to stderr. */
#ifndef LEGO_CORE_PROGRESS_H
#define LEGO_CORE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct progress {
    char label[64];
    int64_t total, done;
    double start, last_draw;
    int last_decile;
    bool tty, quiet;
} progress;

double now_seconds(void);
void progress_start(progress *p, const char *label, int64_t total, bool quiet);
/* Advance to `done` of total; status is shown after the numbers (may be NULL). */
void progress_update(progress *p, int64_t done, const char *status);
/* Final line, with the total time. */
void progress_finish(progress *p, const char *status);

#endif
