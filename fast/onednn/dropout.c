/* Dropout (oneDNN has no dropout primitive): dst = src * mask, diff_src = diff_dst * mask, with
 * the mask given in the DST layout (0 or 1/(1-p)).  Element-wise over the whole buffer, padding
 * included (0 * 0 keeps it 0), so the layout does not matter; threaded and vectorised, one
 * multiply per element, so the bits do not depend on the thread count. */
#include <stddef.h>

#include "onednn_internal.h"

static void mul_f32(float *out, const float *x, const float *mask, size_t count, int threads)
{
    /* out, x, mask [count] */
#pragma omp parallel for simd num_threads(threads) schedule(static) if (count > 65536)
    for (size_t i = 0; i < count; i++) out[i] = x[i] * mask[i];
}

static size_t dst_floats(const anx_layer_desc *l)
{
    dnnl_memory_desc_t md;
    anx_onednn_act_md(&md, l->n, l->oc, l->oh, l->ow);
    return dnnl_memory_desc_get_size(&md) / sizeof(float);
}

/* dst [n,c] = src [n,c] * mask [n,c] */
anx_status anx_onednn_dropout_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    mul_f32(a->dst, a->src, a->mask, dst_floats(l), anx_onednn_ctx_threads(ctx));
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}

/* diff_src [n,c] = diff_dst [n,c] * mask [n,c] */
anx_status anx_onednn_dropout_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    mul_f32(a->diff_src, a->diff_dst, a->mask, dst_floats(l), anx_onednn_ctx_threads(ctx));
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}
