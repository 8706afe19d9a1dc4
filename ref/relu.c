/* ReLU forward and backward (from the forward output, as PyTorch's in-place ReLU must). */
#include "ref/ref.h"

void anx_f32_relu_fwd__ref(float *dst, const float *src, size_t count)
{
    /* dst, src [count].  As torch.relu (checked against torch 1.13): negatives -> +0; a NaN and
       -0 fail "< 0" and pass through unchanged */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) dst[i] = src[i] < 0.0f ? 0.0f : src[i];
}

void anx_f32_relu_bwd_data__ref(float *diff_src, const float *diff_dst, const float *dst, size_t count)
{
    /* diff_src, diff_dst, dst [count]: threshold_backward(grad, result, 0) = result <= 0 ? 0 : grad */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) diff_src[i] = dst[i] <= 0.0f ? 0.0f : diff_dst[i];
}
