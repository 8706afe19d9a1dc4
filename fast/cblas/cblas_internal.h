/* fast/cblas/cblas_internal.h — the cblas backend's kernels and per-layer state.
 *
 * Threads are anx's, not the library's: the BLAS is made serial before its first call, and each
 * kernel splits its work into tiles fixed by the shape alone (images, or constant row/column
 * tiles), one serial sgemm per tile on OpenMP threads.  The library's own threading was tried
 * first: OpenBLAS 0.3.21 gives other bits with 2 threads than with 1 (it rounds the same
 * sums in another order), which breaks the project's rule of the same bits for any thread count, and BLIS
 * reads its thread count only once, at its first call.
 *
 * Every tensor is in ref's plain layout (NCHW, OIHW, [oc]), so import/export are copies and the
 * pooling, ReLU, dropout and loss kernels are ref's or the shared ones.  A convolution is a GEMM
 * per image over the im2col matrix col [ic*kh*kw][oh*ow]: the classic (Caffe) lowering, whose
 * price is that buffer.  It holds nothing between calls, so it is the call's anx_args.scratch
 * (scratch_bytes per layer): the step driver allocates one for the whole net, at the largest
 * layer's need, instead of one per layer.
 */
#ifndef ANX_CBLAS_INTERNAL_H
#define ANX_CBLAS_INTERNAL_H

#include <stddef.h>

#include <cblas.h>

#include "anx/backend.h"

/* cblas_sgemm of the BLAS that backend_cblas.c loads (dlopen) at the first layer_create, not at
 * program start: linking it would make every anx process load OpenBLAS and start its thread pool,
 * cblas used or not.  NULL until then; conv2d.c and linear.c call through it. */
extern __typeof__(cblas_sgemm) *cb_sgemm;

typedef struct cb_ctx {
    int threads;       /* the layer's thread count (<= 0: OpenMP's default at layer_create) */
    int blas_threads;  /* threads of the Conv2d/Linear kernels: threads, or 1 where the library
                          is not known to take concurrent calls (backend_cblas.c) */
    size_t col_floats; /* Conv2d: the scratch its calls need, one im2col matrix per image
                          computed at once (cb_col_slices); else 0 */
    char impl[256];    /* impl_name of a Conv2d: the library, the lowering and the buffer's size */
} cb_ctx;

/* Floats of the im2col buffer of conv layer l: [ic*kh*kw][oh*ow], one image at a time. */
size_t cb_col_floats(const anx_layer_desc *l);
/* im2col matrices the Conv2d kernels use at once with `threads` threads on n images:
 * min(threads, n), at least 1 (fwd and bwd_data take one image per thread; bwd_weights one). */
int cb_col_slices(int n, int threads);

/* Conv2d, one function per direction; col holds cb_col_slices(n, threads) im2col matrices. */
void anx_f32_conv2d_fwd__cblas_im2col(float *dst, const float *src, const float *w, const float *b, float *col,
                                      int n, int ic, int ih, int iw, int oc, int oh, int ow, int kh, int kw,
                                      int stride, int pad, int threads);
void anx_f32_conv2d_bwd_data__cblas_col2im(float *diff_src, const float *diff_dst, const float *w, float *col,
                                           int n, int ic, int ih, int iw, int oc, int oh, int ow, int kh, int kw,
                                           int stride, int pad, int threads);
void anx_f32_conv2d_bwd_weights__cblas_im2col(float *diff_w, float *diff_b, const float *src, const float *diff_dst,
                                              float *col, int n, int ic, int ih, int iw, int oc, int oh, int ow,
                                              int kh, int kw, int stride, int pad, int threads);

/* Linear: src [n, k], w [oc, k], dst [n, oc], one sgemm each. */
void anx_f32_linear_fwd__cblas_sgemm(float *dst, const float *src, const float *w, const float *b, int n, int k,
                                     int oc, int threads);
void anx_f32_linear_bwd_data__cblas_sgemm(float *diff_src, const float *diff_dst, const float *w, int n, int k,
                                          int oc, int threads);
void anx_f32_linear_bwd_weights__cblas_sgemm(float *diff_w, float *diff_b, const float *src, const float *diff_dst,
                                             int n, int k, int oc, int threads);

#endif
