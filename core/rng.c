/* The counter-based RNG of anx/rng.h (splitmix64 mixing keyed by stream name and index). */
#include "anx/rng.h"

#include <math.h>

uint64_t anx_rng_mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001B3ull;
    }
    return h;
}

uint64_t anx_rng_key(uint64_t seed, const char *name, uint64_t sub)
{
    return anx_rng_mix(anx_rng_mix(seed ^ fnv1a64(name)) ^ sub);
}

uint64_t anx_rng_bits(uint64_t key, uint64_t i) { return anx_rng_mix(key ^ anx_rng_mix(i)); }

double anx_rng_u01(uint64_t key, uint64_t i)
{
    return (double)(anx_rng_bits(key, i) >> 40) * (1.0 / 16777216.0);
}

void anx_rng_fill_uniform(float *dst, size_t n, uint64_t key, double bound)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) dst[i] = (float)((2.0 * anx_rng_u01(key, i) - 1.0) * bound);
}

void anx_rng_fill_u01(float *dst, size_t n, uint64_t key)
{
    for (size_t i = 0; i < n; i++) dst[i] = (float)anx_rng_u01(key, i);
}

void anx_rng_fill_dropout(float *dst, size_t n, uint64_t key, float p)
{
    const float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) dst[i] = anx_rng_u01(key, i) >= p ? scale : 0.0f;
}

void anx_rng_fill_dropout_from(float *dst, size_t n, uint64_t key, float p, uint64_t first)
{
    const float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) dst[i] = anx_rng_u01(key, first + i) >= p ? scale : 0.0f;
}

void anx_rng_fill_targets(int64_t *dst, size_t n, uint64_t key, int n_class)
{
    for (size_t i = 0; i < n; i++) dst[i] = (int64_t)floor(anx_rng_u01(key, i) * n_class);
}
