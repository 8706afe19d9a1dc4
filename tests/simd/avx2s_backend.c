/* anx_backend_avx2s: the table of the shared kernels at AVX2 width (see test_simd_avx2_width.c). */
#define SV_ISA avx2s
#define SV_PORTABLE 1
#include "fast/simd/isa_avx2.h"

static const char *sv_unavailable(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? NULL : "CPU lacks AVX2/FMA";
}

#include "fast/simd/backend.inc"
