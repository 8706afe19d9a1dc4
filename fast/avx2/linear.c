/* Linear forward, backward-data and backward-weights: cache-blocked SGEMM microkernels.  The
 * weights are read in place (no packing copy: they are contiguous along the vector dimension of
 * every kernel), so the 151 MB of fc6 weights are streamed once per call; bwd_weights packs its
 * two small operands, which in place would be read down columns.
 *
 *  src [n, k] (one sample contiguous, k in the src activation's order), w [oc, k], dst [n, oc].
 *  fwd          dst[n,o] = b[o] + sum_k src[n,k] w[o,k]: 4 samples x 3 outputs of 8-lane dot
 *               products over a k block (12 accumulators, 7 loads per 12 FMA); the k blocks are
 *               added in ascending order, each as a fixed 8-lane horizontal sum.
 *  bwd_data     diff_src[n,k] = sum_o diff_dst[n,o] w[o,k]: 6 samples x 16 k, o ascending.
 *  bwd_weights  diff_w[o,k] = sum_n diff_dst[n,o] src[n,k]: 6 outputs x 16 k, n ascending, over
 *               diff_dst transposed to [oc][n] and src packed per k block into [16-column
 *               panel][n][16] (fc6 bwd_weights 92.8 -> 74.6 CPU ms at batch 32).
 * Threads own disjoint outputs (fwd: o tiles; bwd_data: k tiles; bwd_weights: o tiles).
 */
#include <stdlib.h>
#include <string.h>

#include "fast/avx2/avx2.h"

enum { KC = 1024, OB = 32, KD = 512 };  /* k block of fwd / bwd_weights; o block, k chunk of bwd_data */

/* Lane mask for the first m (0..8) lanes. */
static inline __m256i lane_mask(int m)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), idx);
}

/* ---- forward ---------------------------------------------------------------------------- */

/* dst[i][j] (row stride ldd) += hsum over k < kc of x[i][k] * w[j][k]; rows ldx / ldw apart.
 * Named accumulators a<i><j> (an array indexed under conditions would live in memory). */
AX_INLINE void linear_fwd_tile(const int nn, const int no, float *dst, size_t ldd, const float *x,
                               size_t ldx, const float *w, size_t ldw, int kc)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 a00 = z, a01 = z, a02 = z, a10 = z, a11 = z, a12 = z;
    __m256 a20 = z, a21 = z, a22 = z, a30 = z, a31 = z, a32 = z;
    const float *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx, *w1 = w + ldw, *w2 = w + 2 * ldw;
    __m256i m = _mm256_set1_epi32(-1);
    for (int k = 0; k < kc; k += 8) {
        __m256 w0v, w1v = z, w2v = z, xv;
        if (k + 8 > kc) m = lane_mask(kc - k); /* the k tail: masked loads read nothing beyond */
#define AX_LD(p) (k + 8 <= kc ? _mm256_loadu_ps((p) + k) : _mm256_maskload_ps((p) + k, m))
        w0v = AX_LD(w);
        if (no > 1) w1v = AX_LD(w1);
        if (no > 2) w2v = AX_LD(w2);
#define AX_ROW(i, xp)                                                  \
    xv = AX_LD(xp);                                                    \
    a##i##0 = _mm256_fmadd_ps(xv, w0v, a##i##0);                       \
    if (no > 1) a##i##1 = _mm256_fmadd_ps(xv, w1v, a##i##1);           \
    if (no > 2) a##i##2 = _mm256_fmadd_ps(xv, w2v, a##i##2);
        AX_ROW(0, x)
        if (nn > 1) { AX_ROW(1, x1) }
        if (nn > 2) { AX_ROW(2, x2) }
        if (nn > 3) { AX_ROW(3, x3) }
#undef AX_ROW
#undef AX_LD
    }
#define AX_OUT(i)                                                      \
    dst[i * ldd] += ax_hsum(a##i##0);                                  \
    if (no > 1) dst[i * ldd + 1] += ax_hsum(a##i##1);                  \
    if (no > 2) dst[i * ldd + 2] += ax_hsum(a##i##2);
    AX_OUT(0)
    if (nn > 1) { AX_OUT(1) }
    if (nn > 2) { AX_OUT(2) }
    if (nn > 3) { AX_OUT(3) }
#undef AX_OUT
}

static void linear_fwd_tile_edge(int nn, int no, float *dst, size_t ldd, const float *x, size_t ldx,
                                 const float *w, size_t ldw, int kc)
{
#define AX_CASE(NN, NO)                                                \
    if (nn == NN && no == NO) {                                        \
        linear_fwd_tile(NN, NO, dst, ldd, x, ldx, w, ldw, kc);         \
        return;                                                        \
    }
    AX_CASE(4, 3) AX_CASE(4, 2) AX_CASE(4, 1)
    AX_CASE(3, 3) AX_CASE(3, 2) AX_CASE(3, 1)
    AX_CASE(2, 3) AX_CASE(2, 2) AX_CASE(2, 1)
    AX_CASE(1, 3) AX_CASE(1, 2) AX_CASE(1, 1)
#undef AX_CASE
}

void anx_f32_linear_fwd__avx2_4x3(float *dst, const float *src, const float *w, const float *b, int n,
                                  int k, int oc, int threads)
{
    /* dst [n, oc], src [n, k], w [oc, k], b [oc] */
    const int ntile = (oc + 2) / 3;
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int t = 0; t < ntile; t++)
            for (int o = 3 * t; o < 3 * t + 3 && o < oc; o++)
                for (int i = 0; i < n; i++) dst[(size_t)i * oc + o] = b ? b[o] : 0.0f;
        /* the same static split of o tiles in every k block: a thread only touches its own */
        for (int k0 = 0; k0 < k; k0 += KC) {
            const int kc = k - k0 < KC ? k - k0 : KC;
#pragma omp for schedule(static)
            for (int t = 0; t < ntile; t++) {
                const int o = 3 * t, no = oc - o < 3 ? oc - o : 3;
                for (int i = 0; i < n; i += 4) {
                    const int nn = n - i < 4 ? n - i : 4;
                    float *d = dst + (size_t)i * oc + o;
                    const float *x = src + (size_t)i * k + k0, *wr = w + (size_t)o * k + k0;
                    if (nn == 4 && no == 3)
                        linear_fwd_tile(4, 3, d, oc, x, k, wr, k, kc);
                    else
                        linear_fwd_tile_edge(nn, no, d, oc, x, k, wr, k, kc);
                }
            }
        }
    }
}

/* ---- backward data and backward weights: c[i][0..16) += sum over l of a[i][l] * bm[l][0..16) --- */

/* c rows ldc apart, a element (i, l) at a[i*ai + l*al], bm rows ldb apart; accumulates onto c
 * when load_c, else starts from 0.  masked: only the first m of the 16 columns exist.
 * Named accumulators c<i>0, c<i>1 for the 6 rows (see linear_fwd_tile). */
AX_INLINE void gemm_tile_6x16(const int ni, const int masked, float *c, size_t ldc, int load_c, const float *a,
                              size_t ai, size_t al, const float *bm, size_t ldb, int nl, int m)
{
    const __m256i m0 = lane_mask(masked ? (m < 8 ? m : 8) : 8);
    const __m256i m1 = lane_mask(masked ? (m > 8 ? m - 8 : 0) : 8);
    const __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z;
    __m256 c50 = z, c51 = z;
#define AX_LDC(i)                                                                          \
    if (ni > i && load_c) {                                                                \
        c##i##0 = masked ? _mm256_maskload_ps(c + i * ldc, m0) : _mm256_loadu_ps(c + i * ldc); \
        c##i##1 = masked ? _mm256_maskload_ps(c + i * ldc + 8, m1) : _mm256_loadu_ps(c + i * ldc + 8); \
    }
    AX_LDC(0) AX_LDC(1) AX_LDC(2) AX_LDC(3) AX_LDC(4) AX_LDC(5)
#undef AX_LDC
    for (int l = 0; l < nl; l++) {
        const float *br = bm + l * ldb, *ap = a + l * al;
        const __m256 b0 = masked ? _mm256_maskload_ps(br, m0) : _mm256_loadu_ps(br);
        const __m256 b1 = masked ? _mm256_maskload_ps(br + 8, m1) : _mm256_loadu_ps(br + 8);
        __m256 av;
#define AX_FMA(i)                                                      \
    if (ni > i) {                                                      \
        av = _mm256_broadcast_ss(ap + i * ai);                         \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                    \
        c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                    \
    }
        AX_FMA(0) AX_FMA(1) AX_FMA(2) AX_FMA(3) AX_FMA(4) AX_FMA(5)
#undef AX_FMA
    }
#define AX_STC(i)                                                      \
    if (ni > i) {                                                      \
        if (masked) {                                                  \
            _mm256_maskstore_ps(c + i * ldc, m0, c##i##0);             \
            _mm256_maskstore_ps(c + i * ldc + 8, m1, c##i##1);         \
        } else {                                                       \
            _mm256_storeu_ps(c + i * ldc, c##i##0);                    \
            _mm256_storeu_ps(c + i * ldc + 8, c##i##1);                \
        }                                                              \
    }
    AX_STC(0) AX_STC(1) AX_STC(2) AX_STC(3) AX_STC(4) AX_STC(5)
#undef AX_STC
}

static void gemm_tile_any(int ni, int masked, float *c, size_t ldc, int load_c, const float *a, size_t ai,
                          size_t al, const float *bm, size_t ldb, int nl, int m)
{
#define AX_CASE(NI)                                                                  \
    if (ni == NI) {                                                                  \
        if (masked)                                                                  \
            gemm_tile_6x16(NI, 1, c, ldc, load_c, a, ai, al, bm, ldb, nl, m);        \
        else                                                                         \
            gemm_tile_6x16(NI, 0, c, ldc, load_c, a, ai, al, bm, ldb, nl, m);        \
        return;                                                                      \
    }
    AX_CASE(6) AX_CASE(5) AX_CASE(4) AX_CASE(3) AX_CASE(2) AX_CASE(1)
#undef AX_CASE
}

void anx_f32_linear_bwd_data__avx2_6x16(float *diff_src, const float *diff_dst, const float *w, int n,
                                        int k, int oc, int threads)
{
    /* diff_src [n, k], diff_dst [n, oc], w [oc, k].  A thread owns chunks of KD columns; inside, o
     * blocks ascend and o ascends within each, so every element sums over o in ascending order.
     * W is read as OB rows x KD contiguous floats, not as 16-float columns 36 KB apart; OB = 32
     * rows keep the pages of one o block within the 64-entry L1 TLB (128: 120 -> 106 ms at fc6). */
    const int nchunk = (k + KD - 1) / KD;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int ch = 0; ch < nchunk; ch++) {
        const int kend = k - ch * KD < KD ? k : (ch + 1) * KD;
        for (int o0 = 0; o0 < oc; o0 += OB) {
            const int nl = oc - o0 < OB ? oc - o0 : OB;
            for (int k0 = ch * KD; k0 < kend; k0 += 16) {
                const int m = kend - k0 < 16 ? kend - k0 : 16;
                for (int i = 0; i < n; i += 6)
                    gemm_tile_any(n - i < 6 ? n - i : 6, m < 16, diff_src + (size_t)i * k + k0, k, o0 > 0,
                                  diff_dst + (size_t)i * oc + o0, oc, 1, w + (size_t)o0 * k + k0, k, nl, m);
            }
        }
    }
}

anx_status anx_f32_linear_bwd_weights__avx2_6x16(float *diff_w, float *diff_b, const float *src,
                                                 const float *diff_dst, int n, int k, int oc, int threads)
{
    /* diff_w [oc, k], diff_b [oc], src [n, k], diff_dst [n, oc]: n ascending for every element.
     * Both operands are packed first: read in place, the n rows of a 16-column strip of src
     * (and of 6 columns of diff_dst) lie k (oc) floats apart, 36 KB at fc6, all in one L1 set. */
    const int ntile = (oc + 5) / 6, npanel = (KC + 15) / 16;
    const size_t ddt_bytes = (size_t)oc * n * sizeof(float), panel_bytes = (size_t)npanel * n * 16 * sizeof(float);
    float *ddt = ax_alloc_bytes(ddt_bytes); /* [oc][n] */
    /* [KC/16][n][16]: one k block of src, 16 columns a panel, zero past k */
    float *panels = ax_alloc_bytes(panel_bytes);
    if (!ddt || !panels) {
        free(ddt);
        free(panels);
        return ddt ? anx_status_oom("linear src panels", panel_bytes) : anx_status_oom("linear diff_dst packed", ddt_bytes);
    }
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int o = 0; o < oc; o++) {
            float s = 0.0f;
            for (int i = 0; i < n; i++) s += ddt[(size_t)o * n + i] = diff_dst[(size_t)i * oc + o];
            if (diff_b) diff_b[o] = s;
        }
        for (int k0 = 0; k0 < k; k0 += KC) {
            const int kend = k - k0 < KC ? k : k0 + KC, np = (kend - k0 + 15) / 16;
#pragma omp for schedule(static)
            for (int p = 0; p < np; p++) {
                const int c0 = k0 + 16 * p, m = kend - c0 < 16 ? kend - c0 : 16;
                for (int i = 0; i < n; i++) {
                    float *d = panels + ((size_t)p * n + i) * 16;
                    memcpy(d, src + (size_t)i * k + c0, (size_t)m * sizeof *d);
                    memset(d + m, 0, (size_t)(16 - m) * sizeof *d);
                }
            }
            /* (the implicit barrier: every panel is packed before any thread reads it) */
#pragma omp for schedule(static)
            for (int t = 0; t < ntile; t++) {
                const int o = 6 * t, no = oc - o < 6 ? oc - o : 6;
                for (int p = 0; p < np; p++) {
                    const int c0 = k0 + 16 * p, m = kend - c0 < 16 ? kend - c0 : 16;
                    gemm_tile_any(no, m < 16, diff_w + (size_t)o * k + c0, k, 0, ddt + (size_t)o * n, n, 1,
                                  panels + (size_t)p * n * 16, 16, n, m);
                }
            }
        }
    }
    free(panels);
    free(ddt);
    return NULL;
}

/* ---- exec-table entries ----------------------------------------------------------------- */

static int linear_k(const anx_layer_desc *l) { return l->ic * l->ih * l->iw; }

anx_status ax_linear_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_f32_linear_fwd__avx2_4x3(a->dst, a->src, a->weights, a->bias, l->n, linear_k(l), l->oc,
                                 ax_threads(ctx));
    return NULL;
}

anx_status ax_linear_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_f32_linear_bwd_data__avx2_6x16(a->diff_src, a->diff_dst, a->weights, l->n, linear_k(l), l->oc,
                                       ax_threads(ctx));
    return NULL;
}

anx_status ax_linear_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return anx_f32_linear_bwd_weights__avx2_6x16(a->diff_weights, a->diff_bias, a->src, a->diff_dst, l->n,
                                                 linear_k(l), l->oc, ax_threads(ctx));
}
