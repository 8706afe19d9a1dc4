/* ref/ref.h — the reference kernels (internal to the ref backend and its tests).
 *
 * Plain NCHW / OIHW / [oc] float32 loops, no intrinsics, no fast-math.  Each kernel overwrites
 * its outputs completely (no accumulation into what the caller passed).  Loops are ordered so
 * the innermost one is contiguous and the compiler can vectorise it WITHOUT reassociating a sum:
 * every output element is accumulated in one fixed, documented order, so the bits do not depend
 * on the OpenMP thread count (outer loops are split over independent outputs only).
 * The team size is OpenMP's current default (omp_set_num_threads); the backend table sets it
 * from layer_create's thread count.
 */
#ifndef ANX_REF_H
#define ANX_REF_H

#include <stddef.h>
#include <stdint.h>

/* Conv2d, square stride and symmetric zero padding, OIHW weights.
 * dst[n,oc,oy,ox] = b[oc] + sum over (ic, ky, kx) in that order (accumulated left to right from the bias) of
 *                   w[oc,ic,ky,kx] * src[n,ic,oy*stride-pad+ky,ox*stride-pad+kx]  (out-of-range taps skipped) */
void anx_f32_conv2d_fwd__ref(float *dst, const float *src, const float *w, const float *b, int n, int ic,
                             int ih, int iw, int oc, int oh, int ow, int kh, int kw, int stride, int pad);
/* diff_src[n,ic,iy,ix] = sum over (oc, ky, kx) in that order of w[oc,ic,ky,kx] * diff_dst[n,oc,oy,ox]
 *                        for the (oy, ox) that tap (iy, ix) */
void anx_f32_conv2d_bwd_data__ref(float *diff_src, const float *diff_dst, const float *w, int n, int ic,
                                  int ih, int iw, int oc, int oh, int ow, int kh, int kw, int stride,
                                  int pad);
/* diff_w[oc,ic,ky,kx] = sum over ox (ascending) of [sum over (n, oy) of diff_dst * src]
 * (per-column partial sums keep the inner loop a vectorisable axpy; the order is fixed);
 * diff_b[oc] = sum over (n, oy, ox) in that order of diff_dst[n,oc,oy,ox]. */
void anx_f32_conv2d_bwd_weights__ref(float *diff_w, float *diff_b, const float *src, const float *diff_dst,
                                     int n, int ic, int ih, int iw, int oc, int oh, int ow, int kh, int kw,
                                     int stride, int pad);

/* Linear: src [n, k] (a flattened NCHW view), w [oc, k], b [oc], dst [n, oc].
 * dst[n,o] = b[o] + sum over k ascending of w[o,k] * src[n,k] */
void anx_f32_linear_fwd__ref(float *dst, const float *src, const float *w, const float *b, int n, int k,
                             int oc);
/* diff_src[n,k] = sum over o ascending of diff_dst[n,o] * w[o,k] */
void anx_f32_linear_bwd_data__ref(float *diff_src, const float *diff_dst, const float *w, int n, int k,
                                  int oc);
/* diff_w[o,k] = sum over n ascending of diff_dst[n,o] * src[n,k]; diff_b[o] = sum over n of diff_dst[n,o] */
void anx_f32_linear_bwd_weights__ref(float *diff_w, float *diff_b, const float *src, const float *diff_dst,
                                     int n, int k, int oc);

/* ReLU over count elements.  fwd: dst = src < 0 ? +0 : src (NaN and -0 pass, as torch.relu).
 * bwd from the output: diff_src = dst > 0 ? diff_dst : 0 (threshold_backward on the result). */
void anx_f32_relu_fwd__ref(float *dst, const float *src, size_t count);
void anx_f32_relu_bwd_data__ref(float *diff_src, const float *diff_dst, const float *dst, size_t count);

/* MaxPool2d(k, stride), no padding, floor mode, per channel plane.  The window's winner is the
 * first maximum in row-major (ky, kx) order; a NaN wins (the last NaN), as PyTorch's CPU kernel
 * (checked against torch 1.13, forward and backward, with ties, NaNs and all -inf).
 * bwd recomputes the winner from src and adds diff_dst to it (windows may overlap). */
void anx_f32_maxpool_fwd__ref(float *dst, const float *src, int n, int c, int ih, int iw, int oh, int ow,
                              int kh, int kw, int stride);
void anx_f32_maxpool_bwd_data__ref(float *diff_src, const float *diff_dst, const float *src, int n, int c,
                              int ih, int iw, int oh, int ow, int kh, int kw, int stride);

/* Dropout with a given mask (0 or 1/(1-p)): dst = src * mask; diff_src = diff_dst * mask. */
void anx_f32_dropout_fwd__ref(float *dst, const float *src, const float *mask, size_t count);
void anx_f32_dropout_bwd_data__ref(float *diff_src, const float *diff_dst, const float *mask, size_t count);

/* CrossEntropyLoss (mean): logits [n, c], target [n].
 * fwd: mean over n of logsumexp(logits[n]) - logits[n, target[n]], in double, max subtracted.
 * bwd: diff_src[n, j] = (softmax(logits[n])_j - (j == target[n])) / n.
 * A target outside [0, c) is never read through: its loss term and gradient row are NaN. */
float anx_f32_loss_fwd__ref(const float *logits, const int64_t *target, int n, int c);
void anx_f32_loss_bwd_data__ref(float *diff_src, const float *logits, const int64_t *target, int n, int c);

/* One PyTorch-1.13 Adam update (single-tensor path, no weight decay, no amsgrad) over count
 * parameters in place, at step t (1-based).  lr, betas and eps are the doubles PyTorch holds as
 * Python floats; the element-wise ops round in float32 in PyTorch's order (see adam.c). */
void anx_f32_adam__ref(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t count,
                       double lr, double beta1, double beta2, double eps, int64_t t, int threads);

#endif
