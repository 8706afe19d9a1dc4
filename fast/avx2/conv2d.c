/* The AVX2 instance of fast/simd/conv2d.inc (compiled with -mavx2 -mfma: fast/avx2/CMakeLists.txt). */
#include "fast/simd/isa_avx2.h"
#include "fast/simd/conv2d.inc"
