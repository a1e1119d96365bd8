/* dataset.h - image classification datasets held in memory, and the batch
 * loader that feeds them to training and evaluation.
 *
 * A dataset is the decoded uint8 pixels of one split (NCHW) plus int32
 * labels; formats are read once at open. The loader turns it into float
 * batches: channel replication, bilinear resize, random crop/flip, and
 * normalisation. Its order and augmentation are a pure function of
 * (seed, epoch), so a run resumed at epoch k sees exactly the batches the
 * uninterrupted run would have seen. */
#ifndef LEGO_DATA_DATASET_H
#define LEGO_DATA_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

/* Where Debian's dataset-fashion-mnist installs the IDX files. */
#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef enum data_split { SPLIT_TRAIN, SPLIT_TEST } data_split;

typedef struct dataset {
    char *name;          /* e.g. "fashion-mnist (train)", for messages */
    int64_t n;           /* samples */
    int c, h, w;         /* stored image shape */
    int num_classes;     /* from the format, or inferred from the labels */
    uint8_t *images;     /* n*c*h*w bytes, NCHW */
    int32_t *labels;     /* n labels, each in [0, num_classes) */
    char **class_names;  /* num_classes names for image folders; NULL otherwise */
} dataset;

typedef struct dataset_opts {
    int64_t max_samples;   /* > 0: keep only the first max_samples */
    int resize_h, resize_w; /* > 0 (both): bilinear-resize every image at load */
} dataset_opts;

/* spec is one of:
 *  - "fashion-mnist": the IDX files in FASHION_MNIST_DIR (10 classes);
 *  - a directory of IDX files: train-images-idx3-ubyte[.gz],
 *    train-labels-idx1-ubyte[.gz], t10k-images-..., t10k-labels-... The
 *    classes are 0..K-1 where every one of them occurs in the train labels;
 *  - a CIFAR-10 binary directory (data_batch_1..5.bin, test_batch.bin) or a
 *    CIFAR-100 one (train.bin, test.bin; the fine label is used), or a
 *    directory holding cifar-10-batches-bin/ or cifar-100-binary/;
 *  - an image folder: DIR/train/<class>/<image> and DIR/test/<class>/<image>,
 *    images being .png, .jpg or .jpeg files.
 *    Classes are the train/ subfolders sorted by name. Images are gray (one
 *    channel) if all are gray, else RGB; they must share one size unless
 *    opts->resize_h/resize_w are set.
 * opts may be NULL. On failure *out is left empty (dataset_free is safe). */
lego_status dataset_open(const char *spec, data_split split, const dataset_opts *opts,
                         dataset *out);
void dataset_free(dataset *d);

typedef struct transform {
    int out_c, out_h, out_w; /* output shape; 0 keeps the dataset's. 1->N channels
                                replicates gray, 3->1 takes the luminance;
                                a different size is bilinear-resized
                                (F.interpolate, align_corners=False) */
    int pad_crop;            /* > 0: random crop of out_h x out_w after zero
                                padding by this many pixels (the pad is pixel
                                value 0, as torchvision's RandomCrop) */
    int hflip;               /* nonzero: random horizontal flip with p = 0.5 */
    float mean[4], std[4];   /* per output channel: x = (pixel/255 - mean)/std;
                                all zero means mean 0, std 1 */
} transform;

typedef struct loader loader;

/* d must outlive the loader. t may be NULL (dataset shape, pixel/255).
 * The loader starts at epoch 0. */
lego_status loader_create(const dataset *d, const transform *t, int batch, bool shuffle,
                          bool drop_last, uint64_t seed, loader **out);
/* Start epoch `epoch`: order and augmentation depend only on (seed, epoch). */
void loader_start_epoch(loader *l, int epoch);
/* Fill x (batch, out_c, out_h, out_w) floats and y (batch) labels (y may be
 * NULL); returns the samples written, 0 at the end of the epoch. A short
 * last batch leaves the tail of x and y untouched. */
int64_t loader_next(loader *l, float *x, int32_t *y);
int64_t loader_batches_per_epoch(const loader *l);
/* The output shape the loader produces per sample. */
void loader_sample_shape(const loader *l, int *c, int *h, int *w);
void loader_free(loader *l);

#endif
