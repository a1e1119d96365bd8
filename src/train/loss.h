/* loss.h - training losses: value and gradient in one pass.
 *
 * Every loss is the mean over its elements (or over the batch for
 * cross-entropy), as PyTorch's defaults are. When the gradient pointer is not
 * NULL it receives d(loss)/d(input), overwriting what was there. */
#ifndef LEGO_TRAIN_LOSS_H
#define LEGO_TRAIN_LOSS_H

#include <stdint.h>

/* logits is (n,k), labels (n) in [0,k); smoothing in [0,1): the target puts
 * 1-smoothing on the label and smoothing/k on every class. */
double loss_cross_entropy(const float *logits, const int32_t *labels, int64_t n, int64_t k,
                          float smoothing, float *dlogits);
/* pred and target hold n values. */
double loss_mse(const float *pred, const float *target, int64_t n, float *dpred);
/* pred holds probabilities in [0,1], target values in [0,1]; logs are clamped
 * at -100 as PyTorch does, so a confident mistake costs 100, not infinity. */
double loss_bce(const float *pred, const float *target, int64_t n, float *dpred);
/* The same on logits, computed stably. */
double loss_bce_logits(const float *logits, const float *target, int64_t n, float *dlogits);

/* Index of the largest of k logits: the predicted class. */
int64_t argmax(const float *logits, int64_t k);

#endif
