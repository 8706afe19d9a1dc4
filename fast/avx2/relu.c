/* ReLU forward and backward over 8-lane vectors (layout-agnostic: element-wise, 0 stays 0). */
#include "fast/avx2/avx2.h"

enum { CHUNK = 4096 }; /* floats per OpenMP work item */

/* dst[i] = src[i] <= 0 ? 0 : src[i]  (a NaN fails "<= 0" and passes, as torch.relu) */
void anx_f32_relu_fwd__avx2(float *dst, const float *src, size_t count, int threads)
{
    /* dst, src [count] */
    const long nchunk = (long)((count + CHUNK - 1) / CHUNK);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long c = 0; c < nchunk; c++) {
        const size_t lo = (size_t)c * CHUNK, hi = lo + CHUNK < count ? lo + CHUNK : count;
        size_t i = lo;
        for (; i + 8 <= hi; i += 8) {
            const __m256 v = _mm256_loadu_ps(src + i);
            const __m256 le = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LE_OQ);
            _mm256_storeu_ps(dst + i, _mm256_andnot_ps(le, v));
        }
        for (; i < hi; i++) dst[i] = src[i] <= 0.0f ? 0.0f : src[i];
    }
}

/* diff_src[i] = dst[i] <= 0 ? 0 : diff_dst[i]  (threshold_backward on the forward output) */
void anx_f32_relu_bwd_data__avx2(float *diff_src, const float *diff_dst, const float *dst, size_t count,
                            int threads)
{
    /* diff_src, diff_dst, dst [count] */
    const long nchunk = (long)((count + CHUNK - 1) / CHUNK);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long c = 0; c < nchunk; c++) {
        const size_t lo = (size_t)c * CHUNK, hi = lo + CHUNK < count ? lo + CHUNK : count;
        size_t i = lo;
        for (; i + 8 <= hi; i += 8) {
            const __m256 le = _mm256_cmp_ps(_mm256_loadu_ps(dst + i), _mm256_setzero_ps(), _CMP_LE_OQ);
            _mm256_storeu_ps(diff_src + i, _mm256_andnot_ps(le, _mm256_loadu_ps(diff_dst + i)));
        }
        for (; i < hi; i++) diff_src[i] = dst[i] <= 0.0f ? 0.0f : diff_dst[i];
    }
}

anx_status ax_relu_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_f32_relu_fwd__avx2(a->dst, a->src, anx_desc_plain_count(l, ANX_DST), ax_threads(ctx));
    return NULL;
}

anx_status ax_relu_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_f32_relu_bwd_data__avx2(a->diff_src, a->diff_dst, a->dst, anx_desc_plain_count(l, ANX_DST),
                           ax_threads(ctx));
    return NULL;
}
