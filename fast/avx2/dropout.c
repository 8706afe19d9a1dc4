/* Dropout with the caller's mask (0 or 1/(1-p)), element-wise over 8-lane vectors. */
#include "fast/avx2/avx2.h"

enum { CHUNK = 4096 }; /* floats per OpenMP work item */

/* out[i] = in[i] * mask[i] */
void anx_f32_dropout__avx2(float *out, const float *in, const float *mask, size_t count, int threads)
{
    /* out, in, mask [count] */
    const long nchunk = (long)((count + CHUNK - 1) / CHUNK);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long c = 0; c < nchunk; c++) {
        const size_t lo = (size_t)c * CHUNK, hi = lo + CHUNK < count ? lo + CHUNK : count;
        size_t i = lo;
        for (; i + 8 <= hi; i += 8)
            _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(in + i), _mm256_loadu_ps(mask + i)));
        for (; i < hi; i++) out[i] = in[i] * mask[i];
    }
}

anx_status ax_dropout_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_f32_dropout__avx2(a->dst, a->src, a->mask, anx_desc_plain_count(l, ANX_DST), ax_threads(ctx));
    return NULL;
}

anx_status ax_dropout_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_f32_dropout__avx2(a->diff_src, a->diff_dst, a->mask, anx_desc_plain_count(l, ANX_DST),
                          ax_threads(ctx));
    return NULL;
}
