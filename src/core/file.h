/* file.h - whole-file reads and atomic writes. */
#ifndef LEGO_CORE_FILE_H
#define LEGO_CORE_FILE_H

#include <stddef.h>

#include "status.h"

/* Read a whole file into a malloc'd buffer (one spare byte, zeroed). */
lego_status file_read_all(const char *path, unsigned char **buf, size_t *len);
/* Write through a temporary file in the same directory and a rename, so a
 * failure never leaves a half-written file at path. */
lego_status file_write_atomic(const char *path, const void *data, size_t len);

#endif
