/* file.h - whole-file reads and atomic writes, and files' identities. */
#ifndef LEGO_CORE_FILE_H
#define LEGO_CORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

/* What tells a file's versions apart without reading it: device, inode,
 * size, and modification and change times. Writing a file changes its
 * times (to the kernel clock's tick, a few milliseconds; a rename gives a
 * new inode), so an equal identity means unchanged contents, except for a
 * rewrite of the same size within the tick of the version seen. */
typedef struct file_id {
    uint64_t dev, ino;
    int64_t size, mtime_s, mtime_ns, ctime_s, ctime_ns;
} file_id;

bool file_id_equal(const file_id *a, const file_id *b);
/* The identity of the file open as f (fstat of its descriptor). */
lego_status file_id_of(FILE *f, const char *path, file_id *id);
/* The identity of the file at path now. */
lego_status file_id_of_path(const char *path, file_id *id);

/* Read a whole file into a malloc'd buffer (one spare byte, zeroed). */
lego_status file_read_all(const char *path, unsigned char **buf, size_t *len);
/* The same, with the identity the file had when opened (id may be NULL). */
lego_status file_read_all_id(const char *path, unsigned char **buf, size_t *len, file_id *id);
/* Write through a temporary file in the same directory and a rename, so a
 * failure never leaves a half-written file at path. */
lego_status file_write_atomic(const char *path, const void *data, size_t len);

/* Remove path and, when it is a directory, everything under it (symbolic
 * links are removed, not followed). A path that does not exist is fine. */
lego_status file_remove_tree(const char *path);
/* True when path exists (any kind of file). */
bool file_exists(const char *path);
/* dir + "/" + name, malloc'd; NULL when out of memory. */
char *file_join(const char *dir, const char *name);
/* Size of a regular file in bytes, or -1 when it cannot be read. */
int64_t file_size(const char *path);

#endif
