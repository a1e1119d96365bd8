/* file.c - whole-file reads and atomic writes. */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

lego_status file_read_all(const char *path, unsigned char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* Grow as we read rather than trusting a size: works for pipes too. */
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap + 1);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap)
            break;
        unsigned char *nb = realloc(b, cap * 2 + 1);
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!b)
        return lego_error(LEGO_ERR_NOMEM, "%s: out of memory reading it", path);
    if (err) {
        free(b);
        return lego_error(LEGO_ERR_IO, "%s: read error (is it a directory?)", path);
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return lego_ok();
}

lego_status file_write_atomic(const char *path, const void *data, size_t len)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 32);
    if (!tmp)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        lego_status st = lego_error(LEGO_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    size_t wrote = len ? fwrite(data, 1, len, f) : 0;
    int closed = fclose(f);
    if (wrote != len || closed != 0 || rename(tmp, path) != 0) {
        lego_status st = lego_error(LEGO_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return lego_ok();
}
