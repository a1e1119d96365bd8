/* loss.c - cross-entropy, MSE and binary cross-entropy. Sums run in double:
 * a batch mean of 128 float terms would otherwise drift from PyTorch's. */
#include "loss.h"

#include <math.h>

double loss_cross_entropy(const float *logits, const int32_t *labels, int64_t n, int64_t k,
                          float smoothing, float *dlogits)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * k;
        double mx = z[0];
        for (int64_t j = 1; j < k; j++)
            mx = z[j] > mx ? z[j] : mx;
        double sum = 0;
        for (int64_t j = 0; j < k; j++)
            sum += exp(z[j] - mx);
        double log_sum = log(sum) + mx;
        /* -log p_j = log_sum - z_j */
        double nll_label = log_sum - z[labels[i]];
        double nll_mean = 0;
        for (int64_t j = 0; j < k; j++)
            nll_mean += log_sum - z[j];
        nll_mean /= (double)k;
        total += (1.0 - smoothing) * nll_label + smoothing * nll_mean;
        if (dlogits) {
            float *d = dlogits + i * k;
            for (int64_t j = 0; j < k; j++) {
                double p = exp(z[j] - log_sum);
                double target = smoothing / (double)k + (j == labels[i] ? 1.0 - smoothing : 0.0);
                d[j] = (float)((p - target) / (double)n);
            }
        }
    }
    return n ? total / (double)n : 0;
}

double loss_mse(const float *pred, const float *target, int64_t n, float *dpred)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)pred[i] - target[i];
        total += d * d;
        if (dpred)
            dpred[i] = (float)(2.0 * d / (double)n);
    }
    return n ? total / (double)n : 0;
}

static double clamped_log(double x) { return x > 0 ? fmax(log(x), -100.0) : -100.0; }

double loss_bce(const float *pred, const float *target, int64_t n, float *dpred)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = pred[i], t = target[i];
        total -= t * clamped_log(p) + (1 - t) * clamped_log(1 - p);
        if (dpred) {
            /* PyTorch keeps the denominator away from zero with eps 1e-12 */
            double denom = fmax((1 - p) * p, 1e-12);
            dpred[i] = (float)((p - t) / denom / (double)n);
        }
    }
    return n ? total / (double)n : 0;
}

double loss_bce_logits(const float *logits, const float *target, int64_t n, float *dlogits)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double z = logits[i], t = target[i];
        /* log(1 + e^-|z|) + max(z, 0) - z t: no overflow for any z */
        total += fmax(z, 0) - z * t + log1p(exp(-fabs(z)));
        if (dlogits) {
            double s = 1.0 / (1.0 + exp(-z));
            dlogits[i] = (float)((s - t) / (double)n);
        }
    }
    return n ? total / (double)n : 0;
}

int64_t argmax(const float *logits, int64_t k)
{
    int64_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (logits[j] > logits[best])
            best = j;
    return best;
}
