/* status.c - building and releasing error values. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returned when even the message cannot be allocated; never freed. */
static char oom_message[] = "out of memory while reporting an error";

const char *lego_code_name(lego_code code)
{
    switch (code) {
    case LEGO_OK: return "ok";
    case LEGO_ERR_IO: return "i/o error";
    case LEGO_ERR_FORMAT: return "malformed input";
    case LEGO_ERR_UNSUPPORTED: return "unsupported";
    case LEGO_ERR_SHAPE: return "shape error";
    case LEGO_ERR_ARG: return "bad argument";
    case LEGO_ERR_NOMEM: return "out of memory";
    case LEGO_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

lego_status lego_error(lego_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    lego_status st = {code, msg ? msg : oom_message};
    return st;
}

lego_status lego_error_context(lego_status st, const char *fmt, ...)
{
    if (st.code == LEGO_OK)
        return st;
    va_list ap;
    va_start(ap, fmt);
    char *ctx = vformat(fmt, ap);
    va_end(ap);
    if (!ctx)
        return st;
    size_t a = strlen(ctx), b = strlen(st.msg);
    char *joined = malloc(a + b + 3);
    if (joined) {
        memcpy(joined, ctx, a);
        memcpy(joined + a, ": ", 2);
        memcpy(joined + a + 2, st.msg, b + 1);
        lego_status_free(&st);
        st.msg = joined;
    }
    free(ctx);
    return st;
}

const char *lego_status_msg(lego_status st)
{
    return st.code == LEGO_OK || !st.msg ? "ok" : st.msg;
}

void lego_status_free(lego_status *st)
{
    if (st->msg && st->msg != oom_message)
        free(st->msg);
    st->msg = NULL;
}
