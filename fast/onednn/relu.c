/* ReLU on oneDNN: eltwise relu forward and backward.  The backward reads the forward output
 * (relu_use_dst_for_bwd: diff_src = dst > 0 ? diff_dst : 0), as PyTorch's threshold_backward on
 * the result does, and works on the same blocked layout as the conv before it. */
#include <stdlib.h>

#include "onednn_internal.h"

typedef struct relu_ctx {
    onednn_ctx_head head;
    onednn_prim fwd, bwd;
} relu_ctx;

void *anx_onednn_relu_create(const anx_layer_desc *l, int threads)
{
    relu_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->head.op = ANX_OP_RELU;
    c->head.threads = threads;
    dnnl_memory_desc_t md; /* [n,c,h,w]: SRC and DST share one layout */
    anx_onednn_act_md(&md, l->n, l->oc, l->oh, l->ow);
    dnnl_eltwise_desc_t ed;
    ONEDNN_CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training, dnnl_eltwise_relu_use_dst_for_bwd,
                                                &md, 0.0f, 0.0f));
    ONEDNN_CHECK(onednn_prim_init(&c->fwd, &ed, NULL) ? dnnl_unimplemented : dnnl_success);
    onednn_prim_arg(&c->fwd, DNNL_ARG_SRC, &md);
    onednn_prim_arg(&c->fwd, DNNL_ARG_DST, &md);
    ONEDNN_CHECK(dnnl_eltwise_backward_desc_init(&ed, dnnl_eltwise_relu_use_dst_for_bwd, &md, &md, 0.0f, 0.0f));
    ONEDNN_CHECK(onednn_prim_init(&c->bwd, &ed, c->fwd.pd) ? dnnl_unimplemented : dnnl_success);
    onednn_prim_arg(&c->bwd, DNNL_ARG_DST, &md);
    onednn_prim_arg(&c->bwd, DNNL_ARG_DIFF_DST, &md);
    onednn_prim_arg(&c->bwd, DNNL_ARG_DIFF_SRC, &md);
    return c;
}

void anx_onednn_relu_destroy(void *ctx)
{
    relu_ctx *c = ctx;
    onednn_prim_destroy(&c->fwd);
    onednn_prim_destroy(&c->bwd);
    free(c);
}

const char *anx_onednn_relu_impl(void *ctx, anx_dir dir)
{
    relu_ctx *c = ctx;
    return dir == ANX_FWD ? c->fwd.impl : c->bwd.impl;
}

/* dst [n,c,h,w] = max(src, 0) */
anx_status anx_onednn_relu_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    relu_ctx *c = ctx;
    void *bufs[] = {a->src, a->dst};
    onednn_prim_exec(&c->fwd, bufs, c->head.threads);
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}

/* diff_src [n,c,h,w] = dst > 0 ? diff_dst : 0 */
anx_status anx_onednn_relu_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    relu_ctx *c = ctx;
    void *bufs[] = {a->dst, a->diff_dst, a->diff_src};
    onednn_prim_exec(&c->bwd, bufs, c->head.threads);
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}
