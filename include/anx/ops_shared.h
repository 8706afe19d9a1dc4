/* anx/ops_shared.h — the layout-agnostic ops, written once for every fast backend.
 *
 * ReLU and dropout are element-wise, so they run over a backend's whole buffer whatever its
 * layout: count is the backend's tensor_floats (padding included), and a padding element, which
 * import makes 0 and every exec keeps 0, stays 0 (relu(0) = 0, 0 * 0 = 0).  Adam runs over the
 * flat parameter state the same way.  The loss reads its logits as plain [n, c], which is what
 * every backend's layout of an [n, c, 1, 1] activation is; a backend whose layout is not plain
 * there must override it.
 *
 * Each kernel gives the bits of the ref backend's kernel of the same name (ref/ref.h keeps its
 * own, independent copy: the harness in tests/backends/ holds every backend to it), for any
 * thread count: every element is computed alone, and the loss adds its row terms in row order.
 * A backend overrides one only for a measured reason, and the override must give the same bits.
 */
#ifndef ANX_OPS_SHARED_H
#define ANX_OPS_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "anx/backend.h"

/* dst = src < 0 ? +0 : src over count floats: -0 and NaN pass unchanged, as torch.relu. */
void anx_f32_relu_fwd__shared(float *dst, const float *src, size_t count, int threads);
/* The same ReLU (the same bits), returning how many NaNs it wrote: free in the pass that writes
 * them, so a backend whose max pooling must look for NaN (below) can know its input has none. */
size_t anx_f32_relu_fwd_nans__shared(float *dst, const float *src, size_t count, int threads);
/* diff_src = dst <= 0 ? +0 : diff_dst (threshold_backward on the forward output; a NaN output
 * passes the gradient). */
void anx_f32_relu_bwd_data__shared(float *diff_src, const float *diff_dst, const float *dst, size_t count,
                                   int threads);
/* out = in * mask: dropout forward (in = src) and backward (in = diff_dst), mask 0 or 1/(1-p). */
void anx_f32_dropout__shared(float *out, const float *in, const float *mask, size_t count, int threads);

/* CrossEntropyLoss (mean) of logits [n, c] plain, target [n], in double with the row max
 * subtracted.  A target outside [0, c) makes the loss NaN (fwd) or its gradient row NaN (bwd). */
float anx_f32_loss_fwd__shared(const float *logits, const int64_t *target, int n, int c);
/* diff_src [n, c] = (softmax(logits[n]) - onehot(target[n])) / n */
void anx_f32_loss_bwd_data__shared(float *diff_src, const float *logits, const int64_t *target, int n, int c);

/* ReLU and dropout on the buffers of one exec call, for a backend's exec-table entry to return:
 * count = that backend's tensor_floats(l, ANX_DST), threads = its layer's thread count.
 *   return anx_relu_fwd__shared(a, my_tensor_floats(l, ANX_DST), my_threads(ctx));        */
anx_status anx_relu_fwd__shared(const anx_args *a, size_t count, int threads);      /* dst from src */
anx_status anx_relu_bwd_data__shared(const anx_args *a, size_t count, int threads); /* diff_src from diff_dst, dst */
anx_status anx_dropout_fwd__shared(const anx_args *a, size_t count, int threads);   /* dst from src, mask */
anx_status anx_dropout_bwd_data__shared(const anx_args *a, size_t count, int threads); /* diff_src from diff_dst, mask */

/* The loss as exec-table entries (they need nothing from the backend's context):
 * fwd writes *a->loss from a->src, bwd_data writes a->diff_src. */
anx_status anx_loss_fwd__shared(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_loss_bwd_data__shared(void *ctx, const anx_layer_desc *l, const anx_args *a);

/* Where (n, c, y, x) of an activation is in a backend's layout, lay being the backend's own
 * description of it (a oneDNN memory desc, LIBXSMM's channel count and image size). */
typedef size_t (*anx_act_off_fn)(const void *lay, int n, int c, int y, int x);
/* Max pooling's NaN rule on top of a library whose pooling drops NaN (oneDNN 2.6, LIBXSMM 1.17):
 * PyTorch lets a NaN win (the last one in the window, as ref), so every window of src that reads
 * one gets it in dst.  One scan of the ns floats of src first, on `threads` threads; the window
 * pass only when it holds a NaN (rare: a corrupt weight must not pass silently).  Layouts:
 * off(src_lay / dst_lay, ...). */
void anx_f32_maxpool_nan_wins__shared(float *dst, const float *src, const anx_layer_desc *l, anx_act_off_fn off,
                                      const void *src_lay, const void *dst_lay, size_t ns, int threads);

/* PyTorch 1.13 Adam over n floats in place, the anx_backend.adam slot: in float32 in PyTorch's
 * order (two fused multiply-adds), scalars in double from the decimal the user typed.  AVX2+FMA
 * when the CPU has them, else scalar fmaf: the same roundings either way. */
void anx_adam__shared(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t n,
                      const anx_adam_hparams *hp, int threads);

#endif
