/* anx_ref64_exec: descriptor -> ref64 kernel arguments, as ref/backend_ref.c does for float32. */
#include <omp.h>

#include "anx/ref64.h"

/* A Linear's input is its NCHW source viewed as [n, ic*ih*iw]; the loss sees logits [n, ic, 1, 1]. */
static int flat_k(const anx_layer_desc *l) { return l->ic * l->ih * l->iw; }

static void conv2d(const anx_layer_desc *l, anx_dir dir, const anx_args64 *a)
{
    if (dir == ANX_FWD)
        anx_f64_conv2d_fwd__ref64(a->dst, a->src, a->weights, a->bias, l->n, l->ic, l->ih, l->iw, l->oc, l->oh,
                                  l->ow, l->kh, l->kw, l->stride, l->pad);
    else if (dir == ANX_BWD_DATA)
        anx_f64_conv2d_bwd_data__ref64(a->diff_src, a->diff_dst, a->weights, l->n, l->ic, l->ih, l->iw, l->oc,
                                       l->oh, l->ow, l->kh, l->kw, l->stride, l->pad);
    else
        anx_f64_conv2d_bwd_weights__ref64(a->diff_weights, a->diff_bias, a->src, a->diff_dst, l->n, l->ic, l->ih,
                                          l->iw, l->oc, l->oh, l->ow, l->kh, l->kw, l->stride, l->pad);
}

static void linear(const anx_layer_desc *l, anx_dir dir, const anx_args64 *a)
{
    if (dir == ANX_FWD)
        anx_f64_linear_fwd__ref64(a->dst, a->src, a->weights, a->bias, l->n, flat_k(l), l->oc);
    else if (dir == ANX_BWD_DATA)
        anx_f64_linear_bwd_data__ref64(a->diff_src, a->diff_dst, a->weights, l->n, flat_k(l), l->oc);
    else
        anx_f64_linear_bwd_weights__ref64(a->diff_weights, a->diff_bias, a->src, a->diff_dst, l->n, flat_k(l),
                                          l->oc);
}

/* The ops without weights: fwd or bwd_data only. */
static void elementwise(const anx_layer_desc *l, anx_dir dir, const anx_args64 *a)
{
    size_t count = anx_desc_plain_count(l, ANX_DST);
    int fwd = dir == ANX_FWD;
    switch (l->op) {
    case ANX_OP_RELU:
        if (fwd) anx_f64_relu_fwd__ref64(a->dst, a->src, count);
        else anx_f64_relu_bwd_data__ref64(a->diff_src, a->diff_dst, a->dst, count);
        break;
    case ANX_OP_MAXPOOL:
        if (fwd) anx_f64_maxpool_fwd__ref64(a->dst, a->src, l->n, l->ic, l->ih, l->iw, l->oh, l->ow, l->kh, l->kw, l->stride);
        else anx_f64_maxpool_bwd_data__ref64(a->diff_src, a->diff_dst, a->src, l->n, l->ic, l->ih, l->iw, l->oh,
                                             l->ow, l->kh, l->kw, l->stride);
        break;
    case ANX_OP_DROPOUT:
        if (fwd) anx_f64_dropout_fwd__ref64(a->dst, a->src, a->mask, count);
        else anx_f64_dropout_bwd_data__ref64(a->diff_src, a->diff_dst, a->mask, count);
        break;
    case ANX_OP_LOSS:
        if (fwd) *a->loss = anx_f64_loss_fwd__ref64(a->src, a->target, l->n, flat_k(l));
        else anx_f64_loss_bwd_data__ref64(a->diff_src, a->src, a->target, l->n, flat_k(l));
        break;
    default: break;
    }
}

int anx_ref64_exec(const anx_layer_desc *l, anx_dir dir, const anx_args64 *a, int threads)
{
    if ((unsigned)l->op >= ANX_OP_COUNT || (unsigned)dir >= ANX_DIR_COUNT) return -1;
    int has_weights = l->op == ANX_OP_CONV2D || l->op == ANX_OP_LINEAR;
    if (dir == ANX_BWD_WEIGHTS && !has_weights) return -1;
    /* the kernels use OpenMP's default team: set it for this call only (a per-thread ICV) */
    int saved = omp_get_max_threads();
    if (threads > 0) omp_set_num_threads(threads);
    if (l->op == ANX_OP_CONV2D) conv2d(l, dir, a);
    else if (l->op == ANX_OP_LINEAR) linear(l, dir, a);
    else elementwise(l, dir, a);
    omp_set_num_threads(saved);
    return 0;
}
