/* sha256.c - SHA-256 hex digests of memory and of files, through Nettle. */
#include "sha256.h"

#include <errno.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <string.h>

static void to_hex(const unsigned char d[SHA256_DIGEST_SIZE], char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = 0;
}

void sha256_hex(const void *data, size_t len, char hex[65])
{
    struct sha256_ctx c;
    unsigned char d[SHA256_DIGEST_SIZE];
    sha256_init(&c);
    sha256_update(&c, len, data);
    sha256_digest(&c, sizeof d, d);
    to_hex(d, hex);
}

lego_status sha256_file_hex(const char *path, char hex[65], file_id *id)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return lego_error(LEGO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (id) {
        lego_status st = file_id_of(f, path, id);
        if (st.code) {
            fclose(f);
            return st;
        }
    }
    struct sha256_ctx c;
    sha256_init(&c);
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sha256_update(&c, n, buf);
    int err = ferror(f);
    fclose(f);
    if (err)
        return lego_error(LEGO_ERR_IO, "%s: read error (is it a directory?)", path);
    unsigned char d[SHA256_DIGEST_SIZE];
    sha256_digest(&c, sizeof d, d);
    to_hex(d, hex);
    return lego_ok();
}
