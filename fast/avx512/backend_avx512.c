/* anx_backend_avx512: the shared kernels (fast/simd/) at AVX-512F width, 16-channel blocks.
 * This file is compiled for plain x86-64 (SV_PORTABLE): unavailable() must run on any CPU, so the
 * check is cpuid and xgetbv by hand, no AVX-512 instruction. */
#define SV_PORTABLE 1
#include <cpuid.h>
#include <stdint.h>

#include "fast/simd/isa_avx512.h"

/* XCR0: the register state the OS saves on a context switch. */
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

/* AVX-512F needs the CPU's flag (leaf 7, EBX bit 16) and the OS's consent: OSXSAVE (leaf 1, ECX
 * bit 27), then XCR0 bits 1-2 (SSE, AVX) and 5-7 (opmask, upper halves of ZMM0-15, ZMM16-31).
 * AVX2 and FMA come with every AVX-512F CPU but are checked too: the kernels are built with them. */
static const char *sv_unavailable(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return "CPU lacks AVX-512F (no cpuid leaf 1)";
    const int osxsave = c >> 27 & 1, fma = c >> 12 & 1;
    if (__get_cpuid_max(0, NULL) < 7) return "CPU lacks AVX-512F (no cpuid leaf 7)";
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = b >> 5 & 1, avx512f = b >> 16 & 1;
    if (!avx512f) return "CPU lacks AVX-512F";
    if (!avx2 || !fma) return "CPU lacks AVX2/FMA";
    if (!osxsave || (xgetbv0() & 0xe6) != 0xe6) return "OS does not enable the AVX-512 register state (XCR0)";
    return NULL;
}

#include "fast/simd/backend.inc"
