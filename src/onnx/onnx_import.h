/* onnx_import.h - ONNX ModelProto -> graph IR. */
#ifndef LEGO_ONNX_IMPORT_H
#define LEGO_ONNX_IMPORT_H

#include "../graph/graph.h"

/* Parse an ONNX model held in memory into g (freshly initialised here).
 * `name` labels every message. Shapes are not inferred yet: call
 * graph_infer. On failure g is left empty. */
lego_status onnx_import(const void *buf, size_t len, const char *name, lego_graph *g);

/* Read the ONNX file at path, import it (messages name the file's base
 * name) and prepare it with graph_infer. On failure g is left empty. */
lego_status onnx_load_file(const char *path, lego_graph *g);

#define ONNX_MIN_OPSET 7
#define ONNX_MAX_OPSET 18

#endif
