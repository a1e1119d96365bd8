/* tensor.c - tensor storage, shapes and their printing. */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEGO_ALIGN 64

size_t lego_dtype_size(lego_dtype dt)
{
    switch (dt) {
    case LEGO_F32: return 4;
    case LEGO_I64: return 8;
    case LEGO_BOOL: return 1;
    default: return 0;
    }
}

const char *dtype_name(lego_dtype dt)
{
    switch (dt) {
    case LEGO_F32: return "float32";
    case LEGO_I64: return "int64";
    case LEGO_BOOL: return "bool";
    default: return "undefined";
    }
}

int64_t lego_tensor_numel(const lego_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dims[i];
    return n;
}

size_t lego_tensor_bytes(const lego_tensor *t)
{
    return (size_t)lego_tensor_numel(t) * lego_dtype_size(t->dtype);
}

void *lego_aligned_alloc(size_t bytes)
{
    /* aligned_alloc needs a size that is a multiple of the alignment. */
    size_t rounded = (bytes + LEGO_ALIGN - 1) / LEGO_ALIGN * LEGO_ALIGN;
    if (rounded == 0)
        rounded = LEGO_ALIGN;
    return aligned_alloc(LEGO_ALIGN, rounded);
}

void lego_aligned_free(void *p) { free(p); }

void tensor_set_shape(lego_tensor *t, lego_dtype dt, int rank, const int64_t *dims)
{
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    for (int i = rank; i < LEGO_MAX_RANK; i++)
        t->dims[i] = 0;
}

lego_status tensor_alloc(lego_tensor *t)
{
    size_t bytes = lego_tensor_bytes(t);
    void *p = lego_aligned_alloc(bytes);
    if (!p)
        return lego_error(LEGO_ERR_NOMEM, "cannot allocate %zu bytes for a tensor", bytes);
    memset(p, 0, bytes);
    if (t->owns)
        lego_aligned_free(t->data);
    t->data = p;
    t->owns = 1;
    return lego_ok();
}

void tensor_release(lego_tensor *t)
{
    if (t->owns)
        lego_aligned_free(t->data);
    t->data = NULL;
    t->owns = 0;
}

void lego_tensor_free(lego_tensor *t)
{
    if (!t)
        return;
    tensor_release(t);
    free(t);
}

lego_status tensor_clone(const lego_tensor *src, lego_tensor *dst)
{
    memset(dst, 0, sizeof *dst);
    tensor_set_shape(dst, src->dtype, src->rank, src->dims);
    LEGO_TRY(tensor_alloc(dst));
    if (src->data)
        memcpy(dst->data, src->data, lego_tensor_bytes(src));
    return lego_ok();
}

bool tensor_same_shape(const lego_tensor *a, const lego_tensor *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

const char *tensor_shape_str(const lego_tensor *t, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = 0;
    if (t->rank == 0) {
        snprintf(buf, len, "scalar");
        return buf;
    }
    for (int i = 0; i < t->rank && pos < len; i++) {
        int n = snprintf(buf + pos, len - pos, i ? "x%lld" : "%lld", (long long)t->dims[i]);
        if (n < 0)
            break;
        pos += (size_t)n;
    }
    return buf;
}

int64_t tensor_get_i64(const lego_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case LEGO_I64: return ((const int64_t *)t->data)[i];
    case LEGO_F32: return (int64_t)((const float *)t->data)[i];
    case LEGO_BOOL: return ((const uint8_t *)t->data)[i];
    default: return 0;
    }
}

void tensor_strides(const lego_tensor *t, int64_t *strides)
{
    int64_t s = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= t->dims[i];
    }
}
