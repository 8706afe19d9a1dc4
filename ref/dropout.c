/* Dropout with a mask given by the caller (0 or 1/(1-p), drawn by core/ from the RNG or a file). */
#include "ref/ref.h"

void anx_f32_dropout_fwd__ref(float *dst, const float *src, const float *mask, size_t count)
{
    /* dst, src, mask [count] */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) dst[i] = src[i] * mask[i];
}

void anx_f32_dropout_bwd_data__ref(float *diff_src, const float *diff_dst, const float *mask, size_t count)
{
    /* diff_src, diff_dst, mask [count] */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) diff_src[i] = diff_dst[i] * mask[i];
}
