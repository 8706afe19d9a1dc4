/* MaxPool2d(k, stride): no padding, floor mode, one window per output element. */
#include <math.h>
#include <string.h>

#include "ref/ref.h"

/* Index in the [ih, iw] plane of the winner of the window at (oy, ox): the first maximum in
 * row-major (ky, kx) order, or the last NaN — the rule of PyTorch's CPU max_pool2d kernel
 * ("val > maxval || isnan(val)" starting from -inf and the window's first index). */
static size_t window_argmax(const float *s, int iw, int oy, int ox, int kh, int kw, int stride)
{
    size_t best_i = (size_t)oy * stride * iw + (size_t)ox * stride;
    float best = -INFINITY;
    for (int ky = 0; ky < kh; ky++) {
        for (int kx = 0; kx < kw; kx++) {
            size_t i = (size_t)(oy * stride + ky) * iw + (size_t)(ox * stride + kx);
            if (s[i] > best || isnan(s[i])) best = s[i], best_i = i;
        }
    }
    return best_i;
}

void anx_f32_maxpool_fwd__ref(float *dst, const float *src, int n, int c, int ih, int iw, int oh, int ow,
                              int kh, int kw, int stride)
{
    /* dst [n, c, oh, ow], src [n, c, ih, iw] */
    const size_t splane = (size_t)ih * iw, dplane = (size_t)oh * ow;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)n * c; p++) {
        const float *s = src + p * splane;
        float *d = dst + p * dplane;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                d[(size_t)oy * ow + ox] = s[window_argmax(s, iw, oy, ox, kh, kw, stride)];
    }
}

void anx_f32_maxpool_bwd_data__ref(float *diff_src, const float *diff_dst, const float *src, int n, int c,
                              int ih, int iw, int oh, int ow, int kh, int kw, int stride)
{
    /* diff_src [n, c, ih, iw], diff_dst [n, c, oh, ow], src [n, c, ih, iw].  Overlapping windows
       add into the same element in (oy, ox) row-major order; a plane belongs to one thread. */
    const size_t splane = (size_t)ih * iw, dplane = (size_t)oh * ow;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)n * c; p++) {
        const float *s = src + p * splane, *dd = diff_dst + p * dplane;
        float *ds = diff_src + p * splane;
        memset(ds, 0, splane * sizeof *ds);
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                ds[window_argmax(s, iw, oy, ox, kh, kw, stride)] += dd[(size_t)oy * ow + ox];
    }
}
