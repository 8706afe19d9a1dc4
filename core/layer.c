/* Names, plain sizes and FLOP counts of layer descriptors. */
#include "anx/layer.h"

const char *anx_op_name(anx_op op)
{
    static const char *const names[] = {
#define ANX_X_NAME(e, s) #s,
        ANX_OP_LIST(ANX_X_NAME)
#undef ANX_X_NAME
    };
    return (unsigned)op < ANX_OP_COUNT ? names[op] : "?";
}

const char *anx_dir_name(anx_dir dir)
{
    static const char *const names[] = {
#define ANX_X_NAME(e, s) #s,
        ANX_DIR_LIST(ANX_X_NAME)
#undef ANX_X_NAME
    };
    return (unsigned)dir < ANX_DIR_COUNT ? names[dir] : "?";
}

int anx_desc_has_weights(const anx_layer_desc *l)
{
    return l->op == ANX_OP_CONV2D || l->op == ANX_OP_LINEAR;
}

size_t anx_desc_plain_count(const anx_layer_desc *l, anx_slot slot)
{
    switch (slot) {
    case ANX_SRC: return (size_t)l->n * l->ic * l->ih * l->iw;
    case ANX_DST: return (size_t)l->n * l->oc * l->oh * l->ow;
    case ANX_WEIGHTS: return anx_desc_has_weights(l) ? (size_t)l->oc * l->ic * l->kh * l->kw : 0;
    case ANX_BIAS: return anx_desc_has_weights(l) ? (size_t)l->oc : 0;
    default: return 0;
    }
}

double anx_desc_flops(const anx_layer_desc *l, anx_dir dir)
{
    if (anx_desc_has_weights(l))
        return 2.0 * l->n * l->oc * l->oh * l->ow * (double)l->ic * l->kh * l->kw;
    (void)dir;
    if (l->op == ANX_OP_MAXPOOL) /* comparisons per output element */
        return (double)anx_desc_plain_count(l, ANX_DST) * l->kh * l->kw;
    return (double)anx_desc_plain_count(l, l->op == ANX_OP_LOSS ? ANX_SRC : ANX_DST);
}

/* Over the out positions of one axis, the kernel taps that read the input rather than its
 * zero padding: sum over o of #{j < k : 0 <= o*stride - pad + j < in}. */
static double taps_inside(int out, int k, int stride, int pad, int in)
{
    double n = 0;
    for (int o = 0; o < out; o++) {
        const int first = o * stride - pad, lo = first < 0 ? -first : 0, hi = in - first < k ? in - first : k;
        n += hi > lo ? hi - lo : 0;
    }
    return n;
}

double anx_desc_flops_unpadded(const anx_layer_desc *l, anx_dir dir)
{
    if (l->op != ANX_OP_CONV2D) return anx_desc_flops(l, dir);
    return 2.0 * l->n * l->oc * (double)l->ic * taps_inside(l->oh, l->kh, l->stride, l->pad, l->ih) *
           taps_inside(l->ow, l->kw, l->stride, l->pad, l->iw);
}
