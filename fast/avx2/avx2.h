/* fast/avx2/avx2.h — internal to the AVX2+FMA backend: its layouts and its kernels.
 *
 * Layouts (a pure function of the descriptor and slot, so import/export need nothing else):
 *   activation [n, C, H, W]  nChw8c when C % 8 == 0, else plain NCHW (= nChw1c).  For H = W = 1
 *                            both are plain [n, C], so the fc part of the net is plain.  conv1's
 *                            src (C = in_dim = 1, 3, 4) is plain and read as is by its kernel.
 *   conv weights             OIhw{cbi}i8o: [OC/8][IC/cbi][KH][KW][cbi][8] with cbi the src block
 *                            (8 or 1), so the (kx, ci) pair is one contiguous index f = kx*cbi + ci
 *                            in both the weights and a padded src row.
 *   linear weights           [OC][K] with K in the src activation's order (fc6's K is nChw8c)
 *   bias                     [OC]
 * No layout pads anything, so every tensor is exactly its plain size.
 *
 * Threading: every kernel splits independent outputs over OpenMP threads and accumulates each
 * output in one fixed order, so the bits never depend on the thread count.
 */
#ifndef ANX_AVX2_H
#define ANX_AVX2_H

/* Every file of this backend includes this header first.  fast/avx2/CMakeLists.txt compiles
 * the kernel files with -mavx2 -mfma; backend_avx2.c (AX_PORTABLE) is left plain x86-64 because
 * its CPU check must run anywhere. */
#ifndef AX_PORTABLE
#if !defined(__AVX2__) || !defined(__FMA__)
#error "fast/avx2 kernels must be compiled with -mavx2 -mfma (fast/avx2/CMakeLists.txt)"
#endif
#include <immintrin.h>
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "anx/backend.h"

#define AX_INLINE static inline __attribute__((always_inline))

/* A 64-byte aligned workspace of bytes, or NULL when memory runs out: the kernel then frees
 * what it holds and returns anx_status_oom(<the workspace's name>, bytes), which the step driver
 * passes up to the CLI (one line naming the workspace, exit status 2). */
static inline void *ax_alloc_bytes(size_t bytes)
{
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 1) == 0 ? p : NULL;
}

/* Channel block of an activation with c channels: 8 (nChw8c) or 1 (plain). */
static inline int ax_cb(int c) { return c % 8 == 0 ? 8 : 1; }

/* Offset of element (n, c, y, x) of an activation [N, C, H, W] in nChw{cb}c. */
static inline size_t ax_act_off(int c_total, int h_total, int w_total, int n, int c, int y, int x)
{
    const int cb = ax_cb(c_total);
    return ((((size_t)n * (c_total / cb) + c / cb) * h_total + y) * w_total + x) * cb + c % cb;
}

/* Per-layer state: only the thread count (workspaces are allocated per call). */
typedef struct ax_ctx {
    int threads;
} ax_ctx;
int ax_threads(const void *ctx);

/* A convolution as the kernels see it (bwd_data of a stride-1 conv is a fwd conv of diff_dst). */
typedef struct ax_conv {
    int n, ic, ih, iw, oc, oh, ow, kh, kw, stride, pad;
} ax_conv;

#ifndef AX_PORTABLE
/* Horizontal sum of the 8 lanes in a fixed order. */
AX_INLINE float ax_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* Conv2d kernels (conv2d.c).  Kernels with a workspace return NULL or the status naming it. */
anx_status anx_f32_conv2d_fwd__avx2_3x32(float *dst, const float *src, const float *w, const float *b,
                                   const ax_conv *cv, int threads);
anx_status anx_f32_conv2d_bwd_data__avx2_3x32(float *diff_src, const float *diff_dst, const float *w,
                                        const ax_conv *cv, int threads);
anx_status anx_f32_conv2d_bwd_data__avx2_gather(float *diff_src, const float *diff_dst, const float *w,
                                          const ax_conv *cv, int threads);
anx_status anx_f32_conv2d_bwd_weights__avx2_16x4(float *diff_w, float *diff_b, const float *src,
                                           const float *diff_dst, const ax_conv *cv, int threads);

/* Linear kernels (linear.c): src [n, k], w [oc, k], dst [n, oc]. */
void anx_f32_linear_fwd__avx2_4x3(float *dst, const float *src, const float *w, const float *b, int n,
                                  int k, int oc, int threads);
void anx_f32_linear_bwd_data__avx2_6x16(float *diff_src, const float *diff_dst, const float *w, int n,
                                        int k, int oc, int threads);
anx_status anx_f32_linear_bwd_weights__avx2_6x16(float *diff_w, float *diff_b, const float *src,
                                           const float *diff_dst, int n, int k, int oc, int threads);

/* Pooling kernels (maxpool.c).  ReLU, dropout, the loss and Adam are the shared ops of
 * anx/ops_shared.h (backend_avx2.c points its table at them). */
void anx_f32_maxpool_fwd__avx2_8c(float *dst, const float *src, const anx_layer_desc *l, int threads);
void anx_f32_maxpool_bwd_data__avx2_8c(float *diff_src, const float *diff_dst, const float *src,
                                  const anx_layer_desc *l, int threads);

/* exec-table entries, one per layer and direction. */
anx_status ax_conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status ax_conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status ax_conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a);
const char *ax_conv2d_impl(const anx_layer_desc *l, anx_dir dir);
anx_status ax_linear_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status ax_linear_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status ax_linear_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status ax_maxpool_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status ax_maxpool_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);

#endif
