/* env.h - switches read from the environment (LEGO_DNNL, LEGO_WINOGRAD,
 * LEGO_FUSE): on unless set to "0", so that a measurement can turn a
 * kernel or a fusion off to see what it buys. */
#ifndef LEGO_CORE_ENV_H
#define LEGO_CORE_ENV_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline bool env_switch_on(const char *name)
{
    const char *s = getenv(name);
    return !(s && strcmp(s, "0") == 0);
}

#endif
