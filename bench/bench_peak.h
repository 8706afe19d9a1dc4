/* bench_peak.h — the FMA peak kernels, each in a file compiled for its ISA only.
 * Each runs iters iterations of (chains x lanes) independent FMAs and returns a value that
 * depends on all of them. */
#ifndef ANX_BENCH_PEAK_H
#define ANX_BENCH_PEAK_H

#include <stdint.h>

#define ANX_FMA_AVX2_FLOPS_PER_ITER (12 * 8 * 2)     /* 12 chains x 8 lanes x (mul + add) */
#define ANX_FMA_AVX512_FLOPS_PER_ITER (16 * 16 * 2)  /* 16 chains x 16 lanes x (mul + add) */

double anx_f32_fma_peak__avx2_12x8(int64_t iters);
double anx_f32_fma_peak__avx512_16x16(int64_t iters);

#endif
