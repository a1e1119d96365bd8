/* file.c - whole-file reads and atomic writes. */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

bool file_id_equal(const file_id *a, const file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_s == b->mtime_s &&
           a->mtime_ns == b->mtime_ns && a->ctime_s == b->ctime_s && a->ctime_ns == b->ctime_ns;
}

static file_id id_of_stat(const struct stat *sb)
{
    return (file_id){.dev = (uint64_t)sb->st_dev,
                     .ino = (uint64_t)sb->st_ino,
                     .size = (int64_t)sb->st_size,
                     .mtime_s = (int64_t)sb->st_mtim.tv_sec,
                     .mtime_ns = (int64_t)sb->st_mtim.tv_nsec,
                     .ctime_s = (int64_t)sb->st_ctim.tv_sec,
                     .ctime_ns = (int64_t)sb->st_ctim.tv_nsec};
}

lego_status file_id_of(FILE *f, const char *path, file_id *id)
{
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0)
        return lego_error(LEGO_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    *id = id_of_stat(&sb);
    return lego_ok();
}

lego_status file_id_of_path(const char *path, file_id *id)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return lego_error(LEGO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    *id = id_of_stat(&sb);
    return lego_ok();
}

lego_status file_read_all(const char *path, unsigned char **buf, size_t *len)
{
    return file_read_all_id(path, buf, len, NULL);
}

lego_status file_read_all_id(const char *path, unsigned char **buf, size_t *len, file_id *id)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    file_id seen = {0};
    lego_status st = file_id_of(f, path, &seen);
    if (st.code) {
        fclose(f);
        return st;
    }
    if (id)
        *id = seen;
    /* A regular file's size sizes the buffer; grow as we read all the same
     * (a pipe has none, and a file may grow while read). One byte more than
     * the size lets a read that hits the end stop without growing. */
    size_t cap = seen.size > 0 ? (size_t)seen.size + 1 : (size_t)1 << 16, n = 0;
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

lego_status file_remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? lego_ok() : lego_error(LEGO_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return lego_error(LEGO_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        size_t n = strlen(path);
        lego_status st = lego_ok();
        struct dirent *e;
        while (st.code == LEGO_OK && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            size_t len = n + strlen(e->d_name) + 2;
            char *child = malloc(len);
            if (!child) {
                st = lego_error(LEGO_ERR_NOMEM, "out of memory");
                break;
            }
            snprintf(child, len, "%s/%s", path, e->d_name);
            st = file_remove_tree(child);
            free(child);
        }
        closedir(d);
        if (st.code)
            return st;
        if (rmdir(path) != 0)
            return lego_error(LEGO_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        return lego_ok();
    }
    if (unlink(path) != 0)
        return lego_error(LEGO_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return lego_ok();
}

bool file_exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

int64_t file_size(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return -1;
    return (int64_t)sb.st_size;
}

char *file_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}
