/* file.h - whole-file reads and atomic writes. */
#ifndef LEGO_CORE_FILE_H
#define LEGO_CORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Read a whole file into a malloc'd buffer (one spare byte, zeroed). */
lego_status file_read_all(const char *path, unsigned char **buf, size_t *len);
/* Write through a temporary file in the same directory and a rename, so a
 * failure never leaves a half-written file at path. */
lego_status file_write_atomic(const char *path, const void *data, size_t len);

/* Remove path and, when it is a directory, everything under it (symbolic
 * links are removed, not followed). A path that does not exist is fine. */
lego_status file_remove_tree(const char *path);
/* True when path exists (any kind of file). */
bool file_exists(const char *path);
/* Size of a regular file in bytes, or -1 when it cannot be read. */
int64_t file_size(const char *path);

#endif
