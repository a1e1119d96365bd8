/* tensor.h - internal helpers around the public lego_tensor. */
#ifndef LEGO_CORE_TENSOR_H
#define LEGO_CORE_TENSOR_H

#include "status.h"

#include <stdbool.h>

/* Set shape (and dtype) with no data. */
void tensor_set_shape(lego_tensor *t, lego_dtype dt, int rank, const int64_t *dims);
/* Allocate (64-byte aligned, zeroed) storage for t's current shape. */
lego_status tensor_alloc(lego_tensor *t);
/* Release owned storage and leave t as an empty shape. */
void tensor_release(lego_tensor *t);
/* Deep copy of shape and data into a fresh owned tensor. */
lego_status tensor_clone(const lego_tensor *src, lego_tensor *dst);
bool tensor_same_shape(const lego_tensor *a, const lego_tensor *b);
/* "1x3x32x32" into buf; returns buf. */
const char *tensor_shape_str(const lego_tensor *t, char *buf, size_t len);
const char *dtype_name(lego_dtype dt);
/* Read element i of an integer-valued tensor (I64 or F32 or BOOL) as int64. */
int64_t tensor_get_i64(const lego_tensor *t, int64_t i);
/* Row-major strides of t in elements. */
void tensor_strides(const lego_tensor *t, int64_t *strides);

void *lego_aligned_alloc(size_t bytes);
void lego_aligned_free(void *p);

#endif
