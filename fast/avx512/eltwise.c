/* The AVX-512 instance of fast/simd/eltwise.inc (compiled with -mavx512f: fast/avx512/CMakeLists.txt). */
#include "fast/simd/isa_avx512.h"
#include "fast/simd/eltwise.inc"
