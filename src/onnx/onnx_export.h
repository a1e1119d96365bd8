/* onnx_export.h - graph IR -> ONNX ModelProto, the inverse of onnx_import.
 *
 * The exported file is the model as imported, with the current contents of
 * its initializers: trained weights go back out in a file PyTorch, onnx and
 * onnxruntime read. */
#ifndef LEGO_ONNX_EXPORT_H
#define LEGO_ONNX_EXPORT_H

#include <stddef.h>

#include "../graph/graph.h"

/* Serialise g as an ONNX model: opset g->opset with the lowest IR version
 * that carries it (IR 4 at least, so initializers need not be graph inputs),
 * producer "legodnn" LEGO_VERSION. Written are every node, folded ones too
 * (in topological order when g has one), every VALUE_INITIALIZER with its
 * current data (raw little-endian), graph inputs with their declared shapes
 * (a dynamic dimension becomes dim_param "batch" for dim 0, "d<i>" for dim i;
 * an input with no declared shape, as in a graph built in code, gets its
 * current one)
 * and graph outputs with their current dtype and shape, so g must have been
 * through graph_infer. An output dimension that equals a dynamic input
 * dimension of the same position is written with that input's dim_param.
 *
 * Metadata: g's own pairs, then meta_keys[i] = meta_values[i] for each extra
 * pair (NULL-terminated arrays, both NULL for none); an extra key replaces a
 * same-named existing one. *buf (malloc'd, the caller frees it) receives
 * *len bytes. */
lego_status onnx_export(const lego_graph *g, const char *const *meta_keys,
                        const char *const *meta_values, unsigned char **buf, size_t *len);

/* The same, written atomically to path (core/file.h file_write_atomic): on
 * failure no file is left at path. */
lego_status onnx_export_file(const lego_graph *g, const char *path, const char *const *meta_keys,
                             const char *const *meta_values);

#endif
