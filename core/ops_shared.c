/* The layout-agnostic ops every fast backend uses (anx/ops_shared.h): ReLU, dropout, the
 * cross-entropy loss and Adam.  Portable C; Adam alone picks an AVX2+FMA loop at run time,
 * because without hardware FMA each fmaf is a library call. */
#include "anx/ops_shared.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPS_X86 1
#endif

enum { CHUNK = 1 << 14 }; /* floats per OpenMP work item: 64 KiB per stream */

static int team(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

static size_t chunks(size_t count) { return (count + CHUNK - 1) / CHUNK; }

#ifdef OPS_X86
static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
static int have_avx2_fma(void) { return have_avx2() && __builtin_cpu_supports("fma"); }
#else
static int have_avx2(void) { return 0; }
static int have_avx2_fma(void) { return 0; }
#endif

/* ---- element-wise: one span [lo, hi) per work item ----
 * Each span function is plain C that the compiler vectorises; OPS_AVX2_TWIN makes a copy of it
 * compiled for AVX2 (measured: the 16-byte loops alone were 1.2x slower than the avx2 backend's
 * at relu fwd), and the dispatch picks it at run time.  The same operations either way (compare,
 * select, one multiply), so the same bits. */
#define OPS_INLINE static inline __attribute__((always_inline))

OPS_INLINE void relu_fwd_span(float *dst, const float *src, size_t lo, size_t hi)
{
    /* "< 0" is false for -0 and NaN, so they pass (torch.relu keeps both) */
    for (size_t i = lo; i < hi; i++) dst[i] = src[i] < 0.0f ? 0.0f : src[i];
}

/* the same, counting the NaNs it writes ("x != x" only for NaN; no branch, so it vectorises) */
OPS_INLINE size_t relu_fwd_nan_span(float *dst, const float *src, size_t lo, size_t hi)
{
    size_t nans = 0;
    for (size_t i = lo; i < hi; i++) {
        const float v = src[i] < 0.0f ? 0.0f : src[i];
        dst[i] = v;
        nans += v != v;
    }
    return nans;
}

OPS_INLINE size_t nan_span(const float *x, size_t lo, size_t hi)
{
    size_t nans = 0;
    for (size_t i = lo; i < hi; i++) nans += x[i] != x[i];
    return nans;
}

OPS_INLINE void relu_bwd_span(float *diff_src, const float *diff_dst, const float *dst, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        const float g = diff_dst[i]; /* loaded unconditionally, so the loop vectorises */
        diff_src[i] = dst[i] <= 0.0f ? 0.0f : g;
    }
}

OPS_INLINE void mul_span(float *out, const float *in, const float *mask, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) out[i] = in[i] * mask[i];
}

#ifdef OPS_X86
__attribute__((target("avx2"))) static void relu_fwd_span_avx2(float *dst, const float *src, size_t lo, size_t hi)
{
    relu_fwd_span(dst, src, lo, hi);
}
__attribute__((target("avx2"))) static size_t relu_fwd_nan_span_avx2(float *dst, const float *src, size_t lo,
                                                                     size_t hi)
{
    return relu_fwd_nan_span(dst, src, lo, hi);
}
__attribute__((target("avx2"))) static size_t nan_span_avx2(const float *x, size_t lo, size_t hi)
{
    return nan_span(x, lo, hi);
}
__attribute__((target("avx2"))) static void relu_bwd_span_avx2(float *diff_src, const float *diff_dst,
                                                                const float *dst, size_t lo, size_t hi)
{
    relu_bwd_span(diff_src, diff_dst, dst, lo, hi);
}
__attribute__((target("avx2"))) static void mul_span_avx2(float *out, const float *in, const float *mask, size_t lo,
                                                           size_t hi)
{
    mul_span(out, in, mask, lo, hi);
}
#define OPS_PICK(avx2, f, ...) ((avx2) ? f##_avx2(__VA_ARGS__) : f(__VA_ARGS__))
#else
#define OPS_PICK(avx2, f, ...) ((void)(avx2), f(__VA_ARGS__))
#endif

void anx_f32_relu_fwd__shared(float *dst, const float *src, size_t count, int threads)
{
    /* dst, src [count] */
    const int avx2 = have_avx2();
    const size_t nc = chunks(count);
#pragma omp parallel for num_threads(team(threads)) schedule(static)
    for (size_t c = 0; c < nc; c++) {
        const size_t lo = c * CHUNK, hi = lo + CHUNK < count ? lo + CHUNK : count;
        OPS_PICK(avx2, relu_fwd_span, dst, src, lo, hi);
    }
}

size_t anx_f32_relu_fwd_nans__shared(float *dst, const float *src, size_t count, int threads)
{
    /* dst, src [count] */
    const int avx2 = have_avx2();
    const size_t nc = chunks(count);
    size_t nans = 0;
#pragma omp parallel for num_threads(team(threads)) schedule(static) reduction(+ : nans)
    for (size_t c = 0; c < nc; c++) {
        const size_t lo = c * CHUNK, hi = lo + CHUNK < count ? lo + CHUNK : count;
        nans += OPS_PICK(avx2, relu_fwd_nan_span, dst, src, lo, hi);
    }
    return nans;
}

/* How many of x's count floats are NaN. */
static size_t count_nan(const float *x, size_t count, int threads)
{
    /* x [count] */
    const int avx2 = have_avx2();
    const size_t nc = chunks(count);
    size_t nans = 0;
#pragma omp parallel for num_threads(team(threads)) schedule(static) reduction(+ : nans)
    for (size_t c = 0; c < nc; c++) {
        const size_t lo = c * CHUNK, hi = lo + CHUNK < count ? lo + CHUNK : count;
        nans += OPS_PICK(avx2, nan_span, x, lo, hi);
    }
    return nans;
}

void anx_f32_relu_bwd_data__shared(float *diff_src, const float *diff_dst, const float *dst, size_t count,
                                   int threads)
{
    /* diff_src, diff_dst, dst [count] */
    const int avx2 = have_avx2();
    const size_t nc = chunks(count);
#pragma omp parallel for num_threads(team(threads)) schedule(static)
    for (size_t c = 0; c < nc; c++) {
        const size_t lo = c * CHUNK, hi = lo + CHUNK < count ? lo + CHUNK : count;
        OPS_PICK(avx2, relu_bwd_span, diff_src, diff_dst, dst, lo, hi);
    }
}

void anx_f32_dropout__shared(float *out, const float *in, const float *mask, size_t count, int threads)
{
    /* out, in, mask [count] */
    const int avx2 = have_avx2();
    const size_t nc = chunks(count);
#pragma omp parallel for num_threads(team(threads)) schedule(static)
    for (size_t c = 0; c < nc; c++) {
        const size_t lo = c * CHUNK, hi = lo + CHUNK < count ? lo + CHUNK : count;
        OPS_PICK(avx2, mul_span, out, in, mask, lo, hi);
    }
}

void anx_f32_maxpool_nan_wins__shared(float *dst, const float *src, const anx_layer_desc *l, anx_act_off_fn off,
                                      const void *src_lay, const void *dst_lay, size_t ns, int threads)
{
    if (!count_nan(src, ns, threads)) return;
    for (int n = 0; n < l->n; n++)
        for (int c = 0; c < l->oc; c++)
            for (int oy = 0; oy < l->oh; oy++)
                for (int ox = 0; ox < l->ow; ox++) {
                    int found = 0;
                    float last = 0.0f;
                    for (int ky = 0; ky < l->kh; ky++)
                        for (int kx = 0; kx < l->kw; kx++) {
                            const float v = src[off(src_lay, n, c, oy * l->stride + ky, ox * l->stride + kx)];
                            if (isnan(v)) found = 1, last = v;
                        }
                    if (found) dst[off(dst_lay, n, c, oy, ox)] = last;
                }
}

anx_status anx_relu_fwd__shared(const anx_args *a, size_t count, int threads)
{
    anx_f32_relu_fwd__shared(a->dst, a->src, count, threads);
    return NULL;
}

anx_status anx_relu_bwd_data__shared(const anx_args *a, size_t count, int threads)
{
    anx_f32_relu_bwd_data__shared(a->diff_src, a->diff_dst, a->dst, count, threads);
    return NULL;
}

anx_status anx_dropout_fwd__shared(const anx_args *a, size_t count, int threads)
{
    anx_f32_dropout__shared(a->dst, a->src, a->mask, count, threads);
    return NULL;
}

anx_status anx_dropout_bwd_data__shared(const anx_args *a, size_t count, int threads)
{
    anx_f32_dropout__shared(a->diff_src, a->diff_dst, a->mask, count, threads);
    return NULL;
}

/* ---- CrossEntropyLoss: [n, 1000] is about 0.01% of a step, so serial, in double ---- */

/* max_j x[j] (a NaN wins) and sum_j exp(x[j] - max) of one row; the max keeps exp() finite */
static void row_softmax_terms(const float *x, int c, double *max, double *sum)
{
    double m = -INFINITY;
    for (int j = 0; j < c; j++)
        if (x[j] > m || isnan(x[j])) m = x[j];
    double s = 0.0;
    for (int j = 0; j < c; j++) s += exp((double)x[j] - m);
    *max = m, *sum = s;
}

float anx_f32_loss_fwd__shared(const float *logits, const int64_t *target, int n, int c)
{
    /* logits [n, c], target [n]; the row terms are added in row order */
    double total = 0.0;
    for (int bi = 0; bi < n; bi++) {
        const float *x = logits + (size_t)bi * c; /* [c] */
        const int64_t t = target[bi];
        if (t < 0 || t >= c) { /* refused by the net; never read outside the row */
            total = NAN;
            continue;
        }
        double m, s;
        row_softmax_terms(x, c, &m, &s);
        total += m + log(s) - (double)x[t]; /* -log_softmax(x)[t] */
    }
    return (float)(total / n);
}

void anx_f32_loss_bwd_data__shared(float *diff_src, const float *logits, const int64_t *target, int n, int c)
{
    /* diff_src, logits [n, c], target [n] */
    for (int bi = 0; bi < n; bi++) {
        const float *x = logits + (size_t)bi * c; /* [c] */
        float *d = diff_src + (size_t)bi * c;     /* [c] */
        const int64_t t = target[bi];
        if (t < 0 || t >= c) {
            for (int j = 0; j < c; j++) d[j] = NAN;
            continue;
        }
        double m, s;
        row_softmax_terms(x, c, &m, &s);
        for (int j = 0; j < c; j++) d[j] = (float)((exp((double)x[j] - m) / s - (j == t ? 1.0 : 0.0)) / n);
    }
}

/* The loss descriptor sees logits [n, ic, ih, iw] = [n, classes, 1, 1]. */
static int classes(const anx_layer_desc *l) { return l->ic * l->ih * l->iw; }

anx_status anx_loss_fwd__shared(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)ctx;
    *a->loss = anx_f32_loss_fwd__shared(a->src, a->target, l->n, classes(l));
    return NULL;
}

anx_status anx_loss_bwd_data__shared(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)ctx;
    anx_f32_loss_bwd_data__shared(a->diff_src, a->src, a->target, l->n, classes(l));
    return NULL;
}

/* ---- Adam: memory-bound (4 streams in, 3 out) ---- */

typedef struct adam_scalars {
    float b1, one_minus_b1, b2, one_minus_b2, neg_step_size, bc2_sqrt, eps;
} adam_scalars;

/* The double PyTorch holds for a hyper-parameter that reached us as a float: the shortest
 * decimal that rounds to it ("0.9", not 0.899999976...), as typed on a command line.  It
 * matters: 1 - beta1 differs by 2.4e-7 relative between 0.9 and (double)0.9f. */
static double typed_decimal(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

/* Python-float (double) arithmetic, then Scalar::to<float>, as torch.optim.Adam does. */
static adam_scalars adam_scalars_of(const anx_adam_hparams *hp)
{
    const double lr = typed_decimal(hp->lr), beta1 = typed_decimal(hp->beta1), beta2 = typed_decimal(hp->beta2);
    const double bc1 = 1.0 - pow(beta1, (double)hp->step), bc2 = 1.0 - pow(beta2, (double)hp->step);
    const adam_scalars s = {(float)beta1,          (float)(1.0 - beta1), (float)beta2,
                            (float)(1.0 - beta2),  (float)(-(lr / bc1)), (float)sqrt(bc2),
                            (float)typed_decimal(hp->eps)};
    return s;
}

/* m = fma(g, 1-b1, m*b1); v = fma((1-b2)*g, g, v*b2); p = p + (-step_size*m) / (sqrt(v)/sqrt(bc2) + eps):
 * exp_avg.mul_(b1).add_(g, alpha=1-b1), exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2), addcdiv_ */
static void adam_span(float *p, const float *g, float *m, float *v, size_t lo, size_t hi,
                            const adam_scalars *s)
{
    for (size_t i = lo; i < hi; i++) {
        const float mi = fmaf(g[i], s->one_minus_b1, m[i] * s->b1);
        const float vi = fmaf(s->one_minus_b2 * g[i], g[i], v[i] * s->b2);
        p[i] = p[i] + (s->neg_step_size * mi) / (sqrtf(vi) / s->bc2_sqrt + s->eps);
        m[i] = mi;
        v[i] = vi;
    }
}

#ifdef OPS_X86
/* The same operations 8 lanes at a time (vsqrtps and vdivps round correctly, as sqrtf and /). */
__attribute__((target("avx2,fma"))) static void adam_span_avx2(float *p, const float *g, float *m, float *v,
                                                               size_t lo, size_t hi, const adam_scalars *s)
{
    const __m256 b1 = _mm256_set1_ps(s->b1), omb1 = _mm256_set1_ps(s->one_minus_b1);
    const __m256 b2 = _mm256_set1_ps(s->b2), omb2 = _mm256_set1_ps(s->one_minus_b2);
    const __m256 nss = _mm256_set1_ps(s->neg_step_size), bc2 = _mm256_set1_ps(s->bc2_sqrt);
    const __m256 eps = _mm256_set1_ps(s->eps);
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        const __m256 gi = _mm256_loadu_ps(g + i);
        const __m256 mi = _mm256_fmadd_ps(gi, omb1, _mm256_mul_ps(_mm256_loadu_ps(m + i), b1));
        const __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(omb2, gi), gi, _mm256_mul_ps(_mm256_loadu_ps(v + i), b2));
        const __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
        const __m256 pi = _mm256_add_ps(_mm256_loadu_ps(p + i), _mm256_div_ps(_mm256_mul_ps(nss, mi), den));
        _mm256_storeu_ps(p + i, pi);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
    }
    adam_span(p, g, m, v, i, hi, s);
}
#endif

void anx_adam__shared(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t n,
                      const anx_adam_hparams *hp, int threads)
{
    /* param, grad, exp_avg, exp_avg_sq [n], any layout (element-wise; padding 0 stays 0) */
    const adam_scalars s = adam_scalars_of(hp);
    const int avx2 = have_avx2_fma();
    const size_t nc = chunks(n);
#pragma omp parallel for num_threads(team(threads)) schedule(static)
    for (size_t c = 0; c < nc; c++) {
        const size_t lo = c * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n;
        OPS_PICK(avx2, adam_span, param, grad, exp_avg, exp_avg_sq, lo, hi, &s);
    }
}
