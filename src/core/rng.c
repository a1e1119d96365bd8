/* rng.c - xoshiro256** (Blackman and Vigna) with splitmix64 seeding. */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(rng *r, uint64_t seed)
{
    /* splitmix64 never yields four zero words, the one state xoshiro must avoid. */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t rng_next_u64(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float rng_uniform(rng *r)
{
    /* The top 24 bits fit a float's mantissa exactly, so 1.0 is never returned. */
    return (float)(rng_next_u64(r) >> 40) * (1.0f / 16777216.0f);
}

float rng_normal(rng *r)
{
    /* u1 in (0, 1] keeps the log finite. */
    double u1 = ((double)(rng_next_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rng_next_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t rng_below(rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    /* Rejection on the low end of the range removes the modulo bias. */
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = rng_next_u64(r);
        if (x >= threshold)
            return x % n;
    }
}

uint64_t rng_mix(uint64_t seed, uint64_t value)
{
    uint64_t x = seed ^ (value * 0xd1b54a32d192ed03ull);
    return splitmix64(&x);
}
