/* rng.h - a small seeded random number generator (xoshiro256** seeded by
 * splitmix64).
 *
 * Everything random in legodnn (data shuffling, augmentation, weight init)
 * draws from an explicit rng value, never from global state, so a run is
 * reproduced exactly from its seed. rng_mix derives independent streams from
 * a seed and a few integers (epoch, sample index) without sequential
 * dependence, which lets a resumed run or another thread reach the same
 * numbers. */
#ifndef LEGO_CORE_RNG_H
#define LEGO_CORE_RNG_H

#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
} rng;

void rng_seed(rng *r, uint64_t seed);
uint64_t rng_next_u64(rng *r);
/* Uniform float in [0, 1) with 24 random bits. */
float rng_uniform(rng *r);
/* Standard normal (Box-Muller, one value per call). */
float rng_normal(rng *r);
/* Uniform integer in [0, n), unbiased; n == 0 gives 0. */
uint64_t rng_below(rng *r, uint64_t n);
/* Hash a seed and a value into a new well-mixed seed (splitmix64 finalizer):
 * rng_mix(rng_mix(seed, epoch), index) names one stream per (epoch, index). */
uint64_t rng_mix(uint64_t seed, uint64_t value);

#endif
