/* The AVX2 instance of fast/simd/maxpool.inc (compiled with -mavx2 -mfma: fast/avx2/CMakeLists.txt). */
#include "fast/simd/isa_avx2.h"
#include "fast/simd/maxpool.inc"
