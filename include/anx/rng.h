/* anx/rng.h — the counter-based RNG behind init, inputs, targets and dropout masks.
 *
 * Every random number is a pure function of (seed, stream name, sub-stream, element index),
 * so any thread count, any backend and the Python golden generator draw the same bits.
 *
 *   mix(z):  z += 0x9E3779B97F4A7C15;                     (splitmix64's finaliser, mod 2^64)
 *            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 *            return z ^ (z >> 31);
 *   fnv1a64(name) over the bytes of name (offset 0xCBF29CE484222325, prime 0x100000001B3)
 *   key(seed, name, sub) = mix(mix(seed ^ fnv1a64(name)) ^ sub)
 *   bits(key, i)         = mix(key ^ mix(i))
 *   u(key, i)            = (bits(key, i) >> 40) * 2^-24        uniform in [0, 1), exact in float32
 *
 * Streams (data/golden/gen_golden.py draws the same ones):
 *   "<param>" sub 0 (e.g. "conv.0.weight")  init: (2u - 1) / sqrt(fan_in), computed in double
 *   "input"   sub 0                          input pixels: u
 *   "target"  sub 0                          class: floor(u * n_class)
 *   "Dropout-16" / "Dropout-19", sub = step  mask element: u >= p ? 1/(1-p) : 0; element index
 *                                            = global sample * 4096 + feature (sample = position in
 *                                            the global batch, so N ranks draw one process's masks)
 */
#ifndef ANX_RNG_H
#define ANX_RNG_H

#include <stddef.h>
#include <stdint.h>

uint64_t anx_rng_mix(uint64_t z);
uint64_t anx_rng_key(uint64_t seed, const char *name, uint64_t sub);
uint64_t anx_rng_bits(uint64_t key, uint64_t i);
double anx_rng_u01(uint64_t key, uint64_t i);

/* dst[i] = (float)((2u - 1) * bound) for i in [0, n) */
void anx_rng_fill_uniform(float *dst, size_t n, uint64_t key, double bound);
/* dst[i] = u */
void anx_rng_fill_u01(float *dst, size_t n, uint64_t key);
/* dst[i] = u >= p ? 1/(1-p) : 0 */
void anx_rng_fill_dropout(float *dst, size_t n, uint64_t key, float p);
/* dst[i] = u(key, first + i) >= p ? 1/(1-p) : 0: elements first.. of the stream above, so a rank
 * holding samples s0.. of a global batch draws exactly the masks one process draws for them */
void anx_rng_fill_dropout_from(float *dst, size_t n, uint64_t key, float p, uint64_t first);
/* dst[i] = floor(u * n_class) */
void anx_rng_fill_targets(int64_t *dst, size_t n, uint64_t key, int n_class);

#endif
