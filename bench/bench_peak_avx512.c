/* The AVX-512 FMA peak kernel: this file alone is compiled with -mavx512f, and it is only
 * called after the CPU said it has AVX-512F (bench_peak.c). */
#include <immintrin.h>
#include <stdint.h>

#include "bench_peak.h"

#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

/* 16 independent accumulators: FMA latency 4 x 2 FMA ports (Skylake-SP and later) needs 8 in
 * flight; 16 also covers 1-port parts and leaves room in the 32 zmm registers. */
double anx_f32_fma_peak__avx512_16x16(int64_t iters)
{
    const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
#define DECL(k) __m512 a##k = _mm512_set1_ps(0.10f + 0.01f * (k));
    CHAINS(DECL)
#undef DECL
    for (int64_t i = 0; i < iters; i++) {
#define STEP(k) a##k = _mm512_fmadd_ps(a##k, b, c);
        CHAINS(STEP)
#undef STEP
    }
    __m512 s = _mm512_setzero_ps();
#define SUM(k) s = _mm512_add_ps(s, a##k);
    CHAINS(SUM)
#undef SUM
    return (double)_mm512_reduce_add_ps(s);
}
