/* sha256.h - SHA-256 hex digests, for the block library's file hashes.
 *
 * The library manifest records the hash of the source model and of every
 * file it lists, and library_open checks them, so a library modified after
 * extraction is caught. Nettle computes them (with the CPU's SHA
 * instructions where it has them: 1.6 GB/s here, against 240 MB/s for the
 * portable code this replaced, which ran on one thread while the others
 * waited whenever retraining or profiling opened a library). */
#ifndef LEGO_CORE_SHA256_H
#define LEGO_CORE_SHA256_H

#include <stddef.h>

#include "file.h"
#include "status.h"

/* The digest of data as 64 lowercase hex digits and a NUL. */
void sha256_hex(const void *data, size_t len, char hex[65]);
/* The same for a whole file; id (may be NULL) receives the identity the
 * file had when opened, before it was read (file.h). */
lego_status sha256_file_hex(const char *path, char hex[65], file_id *id);

#endif
