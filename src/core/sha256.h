/* sha256.h - SHA-256 (FIPS 180-4), for the block library's file hashes.
 *
 * A small self-contained implementation: the library manifest records the
 * hash of the source model and of every file it lists, and library_open
 * checks them, so a library modified after extraction is caught. No crypto
 * library is linked for this; speed is about 200-400 MB/s, far below the
 * cost of writing the files. */
#ifndef LEGO_CORE_SHA256_H
#define LEGO_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t bytes;          /* message length so far */
    unsigned char buf[64];   /* a partial block */
    size_t n;                /* bytes in buf */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, unsigned char digest[32]);

/* The digest of data as 64 lowercase hex digits and a NUL. */
void sha256_hex(const void *data, size_t len, char hex[65]);
/* The same for a whole file. */
lego_status sha256_file_hex(const char *path, char hex[65]);

#endif
