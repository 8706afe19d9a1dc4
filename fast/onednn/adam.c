/* Adam (oneDNN has no optimizer primitive): PyTorch 1.13's _single_tensor_adam on float32, in
 * PyTorch's rounding order (the ref backend's ref/adam.c documents it op by op):
 *   m = fma(g, 1-b1, m*b1);  v = fma((1-b2)*g, g, v*b2);  p = p + (-step_size*m) / (sqrt(v)/sqrt(bc2) + eps)
 * with the scalars computed in double and cast to float, as PyTorch's Scalar::to<float> does.
 * AVX2+FMA when the CPU has them (8 lanes, the same single-rounding fma), else scalar fmaf: both
 * round identically, and every element is independent, so the bits match the ref backend for any
 * thread count.  Memory-bound (4 streams in, 3 out); threads split contiguous chunks.
 */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "onednn_internal.h"

typedef struct adam_scalars {
    float b1, one_minus_b1, b2, one_minus_b2, neg_step_size, bc2_sqrt, eps;
} adam_scalars;

/* The double PyTorch holds for a hyper-parameter that reached us as a float: the shortest
 * decimal that rounds to it ("0.9", not 0.899999976), as the ref backend derives it. */
static double decimal_of(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

static adam_scalars scalars_of(const anx_adam_hparams *hp)
{
    const double lr = decimal_of(hp->lr), beta1 = decimal_of(hp->beta1), beta2 = decimal_of(hp->beta2);
    const double bc1 = 1.0 - pow(beta1, (double)hp->step), bc2 = 1.0 - pow(beta2, (double)hp->step);
    adam_scalars s = {(float)beta1, (float)(1.0 - beta1), (float)beta2, (float)(1.0 - beta2),
                      (float)(-(lr / bc1)), (float)sqrt(bc2), (float)decimal_of(hp->eps)};
    return s;
}

static void adam_f32_scalar(float *p, const float *g, float *m, float *v, size_t lo, size_t hi, const adam_scalars *s)
{
    for (size_t i = lo; i < hi; i++) {
        float mi = fmaf(g[i], s->one_minus_b1, m[i] * s->b1);
        float vi = fmaf(s->one_minus_b2 * g[i], g[i], v[i] * s->b2);
        p[i] = p[i] + (s->neg_step_size * mi) / (sqrtf(vi) / s->bc2_sqrt + s->eps);
        m[i] = mi;
        v[i] = vi;
    }
}

__attribute__((target("avx2,fma"))) static void adam_f32_avx2_8(float *p, const float *g, float *m, float *v,
                                                                 size_t lo, size_t hi, const adam_scalars *s)
{
    const __m256 b1 = _mm256_set1_ps(s->b1), omb1 = _mm256_set1_ps(s->one_minus_b1);
    const __m256 b2 = _mm256_set1_ps(s->b2), omb2 = _mm256_set1_ps(s->one_minus_b2);
    const __m256 nss = _mm256_set1_ps(s->neg_step_size), bc2 = _mm256_set1_ps(s->bc2_sqrt);
    const __m256 eps = _mm256_set1_ps(s->eps);
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        __m256 mi = _mm256_fmadd_ps(gi, omb1, _mm256_mul_ps(_mm256_loadu_ps(m + i), b1));
        __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(omb2, gi), gi, _mm256_mul_ps(_mm256_loadu_ps(v + i), b2));
        __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
        __m256 pi = _mm256_add_ps(_mm256_loadu_ps(p + i), _mm256_div_ps(_mm256_mul_ps(nss, mi), den));
        _mm256_storeu_ps(p + i, pi);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
    }
    adam_f32_scalar(p, g, m, v, i, hi, s);
}

/* param, grad, exp_avg, exp_avg_sq [n], any layout (element-wise) */
void anx_onednn_adam(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t n,
                     const anx_adam_hparams *hp, int threads)
{
    const adam_scalars s = scalars_of(hp);
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const size_t chunk = 1 << 14; /* 64 KiB per stream: whole chunks per thread, 8-aligned */
    const size_t nchunks = (n + chunk - 1) / chunk;
    const int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        size_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        if (avx2) adam_f32_avx2_8(param, grad, exp_avg, exp_avg_sq, lo, hi, &s);
        else adam_f32_scalar(param, grad, exp_avg, exp_avg_sq, lo, hi, &s);
    }
}
