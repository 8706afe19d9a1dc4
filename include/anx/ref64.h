/* anx/ref64.h — the float64 reference (ref64): the ref backend's kernels built a second time
 * over double, from the same source (the ref/<op>.inc templates, ref/ref_type.h), so every output element
 * is summed in the same order as ref/ref.h documents; only the rounding of each operation
 * differs (u = 2^-53 instead of 2^-24).  `anx verify` runs it as the answer every backend is
 * compared with, and anchors it to PyTorch's float64 golden data (docs/verify.md).
 *
 * The kernels take exactly the arguments of their float32 twins in ref/ref.h (read that header
 * for what each computes), on plain NCHW / OIHW / [oc] double buffers.  Not a backend: there is
 * no layout, no ctx, nothing that can decline.
 */
#ifndef ANX_REF64_H
#define ANX_REF64_H

#include <stddef.h>
#include <stdint.h>

#include "anx/layer.h"

void anx_f64_conv2d_fwd__ref64(double *dst, const double *src, const double *w, const double *b, int n, int ic,
                               int ih, int iw, int oc, int oh, int ow, int kh, int kw, int stride, int pad);
void anx_f64_conv2d_bwd_data__ref64(double *diff_src, const double *diff_dst, const double *w, int n, int ic,
                                    int ih, int iw, int oc, int oh, int ow, int kh, int kw, int stride,
                                    int pad);
void anx_f64_conv2d_bwd_weights__ref64(double *diff_w, double *diff_b, const double *src, const double *diff_dst,
                                       int n, int ic, int ih, int iw, int oc, int oh, int ow, int kh, int kw,
                                       int stride, int pad);

void anx_f64_linear_fwd__ref64(double *dst, const double *src, const double *w, const double *b, int n, int k,
                               int oc);
void anx_f64_linear_bwd_data__ref64(double *diff_src, const double *diff_dst, const double *w, int n, int k,
                                    int oc);
void anx_f64_linear_bwd_weights__ref64(double *diff_w, double *diff_b, const double *src, const double *diff_dst,
                                       int n, int k, int oc);

void anx_f64_relu_fwd__ref64(double *dst, const double *src, size_t count);
void anx_f64_relu_bwd_data__ref64(double *diff_src, const double *diff_dst, const double *dst, size_t count);

void anx_f64_maxpool_fwd__ref64(double *dst, const double *src, int n, int c, int ih, int iw, int oh, int ow,
                                int kh, int kw, int stride);
void anx_f64_maxpool_bwd_data__ref64(double *diff_src, const double *diff_dst, const double *src, int n, int c,
                                     int ih, int iw, int oh, int ow, int kh, int kw, int stride);

void anx_f64_dropout_fwd__ref64(double *dst, const double *src, const double *mask, size_t count);
void anx_f64_dropout_bwd_data__ref64(double *diff_src, const double *diff_dst, const double *mask, size_t count);

/* Mean cross-entropy of logits [n, c]; a target outside [0, c) gives NaN (as the float32 one). */
double anx_f64_loss_fwd__ref64(const double *logits, const int64_t *target, int n, int c);
void anx_f64_loss_bwd_data__ref64(double *diff_src, const double *logits, const int64_t *target, int n, int c);

/* PyTorch-1.13 Adam evaluated in float64 (as the golden generator's float64 model does): the
 * float32 kernel's operations and fused multiply-adds with every scalar kept a double.  In place
 * over count elements at step t (1-based); OpenMP's default team. */
void anx_f64_adam__ref64(double *param, const double *grad, double *exp_avg, double *exp_avg_sq, size_t count,
                         double lr, double beta1, double beta2, double eps, int64_t t);

/* The buffers of one ref64 call: the roles of anx_args (anx/backend.h), plain layout, double. */
typedef struct anx_args64 {
    double *src, *dst, *weights, *bias, *diff_src, *diff_dst, *diff_weights, *diff_bias;
    const double *mask;     /* Dropout: [n, oc], 0 or 1/(1-p) */
    const int64_t *target;  /* loss: [n] */
    double *loss;           /* loss fwd: the scalar */
} anx_args64;

/* Runs (layer, dir) in float64 as the ref backend's exec would in float32: conv2d and linear
 * fwd / bwd_data / bwd_weights (diff_bias may be NULL), relu, maxpool, dropout fwd / bwd_data,
 * loss fwd (*loss) and bwd_data (diff_src from src = logits).  threads: team size for this
 * call (<= 0: OpenMP's default).  Returns 0, or -1 for a (layer, dir) that does not exist
 * (relu bwd_weights, an unknown op): nothing is written then. */
int anx_ref64_exec(const anx_layer_desc *l, anx_dir dir, const anx_args64 *a, int threads);

#endif
