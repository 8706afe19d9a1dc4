/* MaxPool2d(k, stride), no padding, floor mode.  nChw8c: 8 channels per vector; plain NCHW
 * (C % 8 != 0, never in Alexnet): scalar.  The winner of a window is the first maximum in
 * row-major (ky, kx) order, or the last NaN (PyTorch's CPU rule, as ref); bwd recomputes it
 * from src (no index tensor) and adds diff_dst in (oy, ox) row-major order, as ref does, so
 * overlapping windows sum in the same order. */
#include <math.h>
#include <string.h>

#include "fast/avx2/avx2.h"

/* Best value and its window position (as an exact small float) of the 8 lanes at window s. */
AX_INLINE void window_argmax8(__m256 *best, __m256 *pos, const float *s, int iw, int kh, int kw)
{
    __m256 b = _mm256_set1_ps(-INFINITY), p = _mm256_setzero_ps();
    for (int ky = 0; ky < kh; ky++) {
        for (int kx = 0; kx < kw; kx++) {
            const __m256 v = _mm256_loadu_ps(s + ((size_t)ky * iw + kx) * 8);
            const __m256 win = _mm256_or_ps(_mm256_cmp_ps(v, b, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            b = _mm256_blendv_ps(b, v, win);
            p = _mm256_blendv_ps(p, _mm256_set1_ps((float)(ky * kw + kx)), win);
        }
    }
    *best = b, *pos = p;
}

/* Scalar twin for plain planes: index in the plane of the winner. */
static size_t window_argmax1(const float *s, int iw, int oy, int ox, int kh, int kw, int stride)
{
    size_t best_i = (size_t)oy * stride * iw + (size_t)ox * stride;
    float best = -INFINITY;
    for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++) {
            const size_t i = (size_t)(oy * stride + ky) * iw + (size_t)(ox * stride + kx);
            if (s[i] > best || isnan(s[i])) best = s[i], best_i = i;
        }
    return best_i;
}

void anx_f32_maxpool_fwd__avx2_8c(float *dst, const float *src, const anx_layer_desc *l, int threads)
{
    /* dst [n, c, oh, ow], src [n, c, ih, iw], both nChw{cb}c */
    const int cb = ax_cb(l->ic), s = l->stride;
    const size_t splane = (size_t)l->ih * l->iw * cb, dplane = (size_t)l->oh * l->ow * cb;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long p = 0; p < (long)l->n * (l->ic / cb); p++) {
        const float *sp = src + p * splane;
        float *dp = dst + p * dplane;
        for (int oy = 0; oy < l->oh; oy++) {
            for (int ox = 0; ox < l->ow; ox++) {
                const size_t o = (size_t)oy * l->ow + ox;
                if (cb == 8) {
                    __m256 b, pos;
                    window_argmax8(&b, &pos, sp + ((size_t)oy * s * l->iw + (size_t)ox * s) * 8, l->iw,
                                   l->kh, l->kw);
                    _mm256_storeu_ps(dp + o * 8, b);
                } else {
                    dp[o] = sp[window_argmax1(sp, l->iw, oy, ox, l->kh, l->kw, s)];
                }
            }
        }
    }
}

void anx_f32_maxpool_bwd_data__avx2_8c(float *diff_src, const float *diff_dst, const float *src,
                                  const anx_layer_desc *l, int threads)
{
    /* diff_src, src [n, c, ih, iw], diff_dst [n, c, oh, ow], all nChw{cb}c */
    const int cb = ax_cb(l->ic), s = l->stride;
    const size_t splane = (size_t)l->ih * l->iw * cb, dplane = (size_t)l->oh * l->ow * cb;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long p = 0; p < (long)l->n * (l->ic / cb); p++) {
        const float *sp = src + p * splane, *dd = diff_dst + p * dplane;
        float *ds = diff_src + p * splane;
        const size_t row = (size_t)l->iw * cb;
        int zeroed = 0; /* rows of ds zeroed so far: each just before its first use, while the
                           lines are still in cache for the adds (pool1: 37 MB not swept twice) */
        for (int oy = 0; oy < l->oh; oy++) {
            const int need = oy * s + l->kh < l->ih ? oy * s + l->kh : l->ih;
            if (need > zeroed) memset(ds + zeroed * row, 0, (size_t)(need - zeroed) * row * sizeof *ds);
            zeroed = need > zeroed ? need : zeroed;
            for (int ox = 0; ox < l->ow; ox++) {
                const size_t o = (size_t)oy * l->ow + ox;
                if (cb == 8) {
                    const size_t corner = ((size_t)oy * s * l->iw + (size_t)ox * s) * 8;
                    __m256 b, pos;
                    window_argmax8(&b, &pos, sp + corner, l->iw, l->kh, l->kw);
                    const __m256 g = _mm256_loadu_ps(dd + o * 8);
                    /* every tap gets g in the lanes it won and +0 elsewhere (x + 0 == x: ds is never -0) */
                    for (int ky = 0; ky < l->kh; ky++) {
                        for (int kx = 0; kx < l->kw; kx++) {
                            float *d = ds + corner + ((size_t)ky * l->iw + kx) * 8;
                            const __m256 won = _mm256_cmp_ps(pos, _mm256_set1_ps((float)(ky * l->kw + kx)), _CMP_EQ_OQ);
                            _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), _mm256_and_ps(won, g)));
                        }
                    }
                } else {
                    ds[window_argmax1(sp, l->iw, oy, ox, l->kh, l->kw, s)] += dd[o];
                }
            }
        }
        memset(ds + zeroed * row, 0, (size_t)(l->ih - zeroed) * row * sizeof *ds); /* rows no window reads */
    }
}

anx_status ax_maxpool_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_f32_maxpool_fwd__avx2_8c(a->dst, a->src, l, ax_threads(ctx));
    return NULL;
}

anx_status ax_maxpool_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_f32_maxpool_bwd_data__avx2_8c(a->diff_src, a->diff_dst, a->src, l, ax_threads(ctx));
    return NULL;
}
