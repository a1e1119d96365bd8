/* zoo.h - built-in model definitions, so a user without PyTorch can start.
 * Each builds an initialised graph in our IR, with PyTorch's parameter
 * names, ready to train and to export as ONNX. */
#ifndef LEGO_TRAIN_ZOO_H
#define LEGO_TRAIN_ZOO_H

#include "../graph/graph.h"

/* The CIFAR-style ResNet18 of the LegoDNN paper (3x3 stem, four stages of two
 * BasicBlocks at width w, 2w, 4w, 8w; w = 64 is the full model), for inputs
 * of in_c x in_h x in_w with a dynamic batch axis. Weights: Kaiming-normal
 * (fan-out) convolutions, BatchNorm 1/0, PyTorch's default Linear init.
 * The result is inferred (graph_infer) at batch 1. */
lego_status zoo_resnet18(int width, int num_classes, int in_c, int in_h, int in_w, uint64_t seed,
                         lego_graph *g);

/* "resnet18" or "resnet18:W" -> width W (default 16); 0 if name is not a
 * built-in model. */
int zoo_parse_resnet18(const char *name);

#endif
