/* Adam (PyTorch 1.13 single-tensor path, no weight decay) in one 8-lane pass over param, grad
 * and both moments.  Each element rounds in float32 in PyTorch's order:
 *   m = fma(g, 1-b1, m*b1)              exp_avg.mul_(b1).add_(grad, alpha=1-b1)
 *   v = v*b2 + ((1-b2)*g)*g             exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1-b2)
 *   p = p + (-step_size*m) / (sqrt(v)/sqrt(bc2) + eps)
 * with the scalars computed in double (Python floats) from the decimal the user typed, then cast
 * to float, so the result is the bits of ref (sqrt and div are correctly rounded in AVX too). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <omp.h>

#include "fast/avx2/avx2.h"

enum { CHUNK = 4096 }; /* floats per OpenMP work item */

/* The shortest decimal that rounds to f ("0.9", not 0.899999976): what PyTorch holds as a
 * Python float when the user typed 0.9; 1 - beta1 depends on it. */
static double typed_decimal(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

void anx_f32_adam__avx2(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t count,
                        const anx_adam_hparams *hp, int threads)
{
    /* param, grad, exp_avg, exp_avg_sq [count], any layout (element-wise) */
    const double lr = typed_decimal(hp->lr), beta1 = typed_decimal(hp->beta1);
    const double beta2 = typed_decimal(hp->beta2), eps = typed_decimal(hp->eps);
    const double bc1 = 1.0 - pow(beta1, (double)hp->step), bc2 = 1.0 - pow(beta2, (double)hp->step);
    const float b1 = (float)beta1, omb1 = (float)(1.0 - beta1), b2 = (float)beta2, omb2 = (float)(1.0 - beta2);
    const float nss = (float)(-(lr / bc1)), bc2s = (float)sqrt(bc2), epsf = (float)eps;
    const __m256 vb1 = _mm256_set1_ps(b1), vomb1 = _mm256_set1_ps(omb1), vb2 = _mm256_set1_ps(b2);
    const __m256 vomb2 = _mm256_set1_ps(omb2), vnss = _mm256_set1_ps(nss), vbc2s = _mm256_set1_ps(bc2s);
    const __m256 veps = _mm256_set1_ps(epsf);
    const long nchunk = (long)((count + CHUNK - 1) / CHUNK);
#pragma omp parallel for num_threads(threads > 0 ? threads : omp_get_max_threads()) schedule(static)
    for (long c = 0; c < nchunk; c++) {
        const size_t lo = (size_t)c * CHUNK, hi = lo + CHUNK < count ? lo + CHUNK : count;
        size_t i = lo;
        for (; i + 8 <= hi; i += 8) {
            const __m256 g = _mm256_loadu_ps(grad + i);
            const __m256 m = _mm256_fmadd_ps(g, vomb1, _mm256_mul_ps(_mm256_loadu_ps(exp_avg + i), vb1));
            const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(exp_avg_sq + i), vb2),
                                           _mm256_mul_ps(_mm256_mul_ps(vomb2, g), g));
            const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v), vbc2s), veps);
            const __m256 p = _mm256_add_ps(_mm256_loadu_ps(param + i),
                                           _mm256_div_ps(_mm256_mul_ps(vnss, m), denom));
            _mm256_storeu_ps(param + i, p);
            _mm256_storeu_ps(exp_avg + i, m);
            _mm256_storeu_ps(exp_avg_sq + i, v);
        }
        for (; i < hi; i++) {
            const float g = grad[i];
            const float m = fmaf(g, omb1, exp_avg[i] * b1);
            const float v = exp_avg_sq[i] * b2 + (omb2 * g) * g;
            const float denom = sqrtf(v) / bc2s + epsf;
            param[i] = param[i] + (nss * m) / denom;
            exp_avg[i] = m;
            exp_avg_sq[i] = v;
        }
    }
}

void ax_adam(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t n,
             const anx_adam_hparams *hp, int threads)
{
    anx_f32_adam__avx2(param, grad, exp_avg, exp_avg_sq, n, hp, threads);
}
