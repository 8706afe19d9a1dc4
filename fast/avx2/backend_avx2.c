/* anx_backend_avx2: the shared kernels (fast/simd/) at AVX2+FMA width, 8-channel blocks.
 * This file is compiled for plain x86-64 (SV_PORTABLE): unavailable() must run on any CPU. */
#define SV_PORTABLE 1
#include "fast/simd/isa_avx2.h"

static const char *sv_unavailable(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NULL;
    return "CPU lacks AVX2/FMA";
}

#include "fast/simd/backend.inc"
