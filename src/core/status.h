/* status.h - errors as values: a code plus a formatted message.
 *
 * Functions that can fail return lego_status. The message is heap-allocated;
 * whoever receives a failed status either returns it upward (maybe with
 * context prepended) or frees it. */
#ifndef LEGO_CORE_STATUS_H
#define LEGO_CORE_STATUS_H

#include "legodnn.h"

#if defined(__GNUC__)
#define LEGO_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LEGO_PRINTF(a, b)
#endif

static inline lego_status lego_ok(void) { lego_status s = {LEGO_OK, 0}; return s; }

lego_status lego_error(lego_code code, const char *fmt, ...) LEGO_PRINTF(2, 3);
/* Prepend "context: " to a failed status's message; OK passes through. */
lego_status lego_error_context(lego_status st, const char *fmt, ...) LEGO_PRINTF(2, 3);

#define LEGO_TRY(expr)                      \
    do {                                    \
        lego_status lego_try_st_ = (expr);  \
        if (lego_try_st_.code != LEGO_OK)   \
            return lego_try_st_;            \
    } while (0)

#endif
