/* window.c - sliding-window attributes and output sizes shared by conv.c and
 * pool.c (see window.h). */
#include "window.h"

#include <string.h>

lego_status window_auto_pad(const op_call *c, window_pad *out)
{
    const char *s;
    LEGO_TRY(attr_get_string(c->attrs, "auto_pad", "NOTSET", &s));
    if (strcmp(s, "NOTSET") == 0)
        *out = PAD_NOTSET;
    else if (strcmp(s, "SAME_UPPER") == 0)
        *out = PAD_SAME_UPPER;
    else if (strcmp(s, "SAME_LOWER") == 0)
        *out = PAD_SAME_LOWER;
    else if (strcmp(s, "VALID") == 0)
        *out = PAD_VALID;
    else
        return op_error(c, LEGO_ERR_FORMAT,
                        "auto_pad is '%s', expected NOTSET, SAME_UPPER, SAME_LOWER or VALID", s);
    return lego_ok();
}

lego_status window_get_ints(const op_call *c, const char *name, int n, int64_t def, int64_t min,
                            int64_t *out)
{
    const int64_t *v = NULL;
    int nv = 0;
    for (int i = 0; i < n; i++)
        out[i] = def;
    LEGO_TRY(attr_get_ints(c->attrs, name, &v, &nv));
    if (!v)
        return lego_ok();
    if (nv != n)
        return op_error(c, LEGO_ERR_FORMAT, "%s has %d values, expected %d", name, nv, n);
    for (int i = 0; i < n; i++) {
        if (v[i] < min)
            return op_error(c, LEGO_ERR_FORMAT, "%s[%d] is %lld, must be at least %lld", name, i,
                            (long long)v[i], (long long)min);
        out[i] = v[i];
    }
    return lego_ok();
}

void window_split_pad(window_pad mode, int64_t total, int64_t *pb, int64_t *pe)
{
    *pb = mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
    *pe = total - *pb;
}

lego_status window_output(const op_call *c, const window *w, const int64_t in[2],
                          const char *kernel, int64_t out[2], int64_t pb[2], int64_t pe[2])
{
    int64_t dk[2];
    for (int i = 0; i < 2; i++) {
        int64_t s = w->stride[i];
        dk[i] = (w->k[i] - 1) * w->dilation[i] + 1;
        if (w->mode == PAD_SAME_UPPER || w->mode == PAD_SAME_LOWER) {
            out[i] = (in[i] + s - 1) / s;
            int64_t total = (out[i] - 1) * s + dk[i] - in[i];
            window_split_pad(w->mode, total < 0 ? 0 : total, &pb[i], &pe[i]);
            continue;
        }
        pb[i] = w->mode == PAD_VALID ? 0 : w->pads[i];
        pe[i] = w->mode == PAD_VALID ? 0 : w->pads[i + 2];
        /* in ceil mode one window may be longer than the padded input */
        int64_t span = in[i] + pb[i] + pe[i] - dk[i] + (w->ceil_mode ? s - 1 : 0);
        out[i] = span >= 0 ? span / s + 1 : 0;
        if (w->ceil_mode && out[i] > 0 && (out[i] - 1) * s >= in[i] + pb[i])
            out[i]--;
    }
    if (out[0] < 1 || out[1] < 1)
        return op_error(c, LEGO_ERR_SHAPE,
                        "input %lldx%lld padded by [%lld,%lld,%lld,%lld] is smaller than the "
                        "%s %lldx%lld",
                        (long long)in[0], (long long)in[1], (long long)pb[0], (long long)pb[1],
                        (long long)pe[0], (long long)pe[1], kernel, (long long)dk[0],
                        (long long)dk[1]);
    return lego_ok();
}
