/* fast/simd/linear.inc at AVX2 width under the name avx2s (see test_simd_avx2_width.c). */
#define SV_ISA avx2s
#include "fast/simd/isa_avx2.h"
#include "fast/simd/linear.inc"
