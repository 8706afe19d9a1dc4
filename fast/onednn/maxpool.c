/* MaxPool2d on oneDNN: pooling_max forward (training, with workspace) and backward.
 *
 * The workspace (which tap won each window) lives in the ctx.  The step driver always runs a
 * layer's forward before its backward on the same buffers, so backward normally reuses it.
 * A caller that runs backward alone (layer-isolated verification: only src, dst and diff_dst
 * given), or on another src than the last forward's, gets the workspace recomputed first by a
 * forward from src into a scratch dst owned by the ctx.  Caveat: the check is by pointer, so a
 * caller that rewrites src in place between forward and backward must run forward again.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "anx/ops_shared.h"
#include "onednn_internal.h"

typedef struct pool_ctx {
    onednn_ctx_head head;
    onednn_prim fwd, bwd;
    void *ws;               /* [n,c,oh,ow] winners, owned by fwd */
    float *scratch_dst;     /* DST-sized, for the recompute */
    size_t scratch_bytes;   /* its bytes, once allocated */
    const float *ws_src;    /* the src the workspace belongs to, NULL when none */
} pool_ctx;

/* PyTorch floor mode, no padding: pr makes oneDNN's (ih - k + pr) / s + 1 == oh exact (may be < 0) */
static void pool_desc(const anx_layer_desc *l, dnnl_dims_t st, dnnl_dims_t k, dnnl_dims_t pl, dnnl_dims_t pr)
{
    st[0] = st[1] = l->stride;
    k[0] = l->kh, k[1] = l->kw;
    pl[0] = pl[1] = l->pad;
    pr[0] = (dnnl_dim_t)(l->oh - 1) * l->stride + l->kh - l->ih - l->pad;
    pr[1] = (dnnl_dim_t)(l->ow - 1) * l->stride + l->kw - l->iw - l->pad;
}

void *anx_onednn_maxpool_create(const anx_layer_desc *l, int threads)
{
    pool_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->head.op = ANX_OP_MAXPOOL;
    c->head.threads = threads;
    dnnl_memory_desc_t s, d; /* src [n,c,ih,iw], dst [n,c,oh,ow] */
    anx_onednn_act_md(&s, l->n, l->ic, l->ih, l->iw);
    anx_onednn_act_md(&d, l->n, l->oc, l->oh, l->ow);
    dnnl_dims_t st, k, pl, pr;
    pool_desc(l, st, k, pl, pr);
    dnnl_pooling_desc_t pd;
    ONEDNN_CHECK(dnnl_pooling_forward_desc_init(&pd, dnnl_forward_training, dnnl_pooling_max, &s, &d, st, k, pl, pr));
    ONEDNN_CHECK(onednn_prim_init(&c->fwd, &pd, NULL) ? dnnl_unimplemented : dnnl_success);
    const dnnl_memory_desc_t *ws = onednn_prim_md(&c->fwd, dnnl_query_workspace_md);
    onednn_prim_arg(&c->fwd, DNNL_ARG_SRC, &s);
    onednn_prim_arg(&c->fwd, DNNL_ARG_DST, &d);
    c->ws = onednn_prim_arg_owned(&c->fwd, DNNL_ARG_WORKSPACE, ws);
    ONEDNN_CHECK(dnnl_pooling_backward_desc_init(&pd, dnnl_pooling_max, &s, &d, st, k, pl, pr));
    ONEDNN_CHECK(onednn_prim_init(&c->bwd, &pd, c->fwd.pd) ? dnnl_unimplemented : dnnl_success);
    onednn_prim_arg(&c->bwd, DNNL_ARG_DIFF_DST, &d);
    onednn_prim_arg(&c->bwd, DNNL_ARG_WORKSPACE, ws);
    onednn_prim_arg(&c->bwd, DNNL_ARG_DIFF_SRC, &s);
    return c;
}

void anx_onednn_maxpool_destroy(void *ctx)
{
    pool_ctx *c = ctx;
    onednn_prim_destroy(&c->fwd);
    onednn_prim_destroy(&c->bwd);
    free(c->scratch_dst);
    free(c);
}

size_t anx_onednn_maxpool_workspace_bytes(void *ctx)
{
    const pool_ctx *c = ctx;
    return c->fwd.owned_bytes + c->bwd.owned_bytes + c->scratch_bytes;
}

const char *anx_onednn_maxpool_impl(void *ctx, anx_dir dir)
{
    pool_ctx *c = ctx;
    return dir == ANX_FWD ? c->fwd.impl : c->bwd.impl;
}

/* dst [n,c,oh,ow] = max over each kh x kw window of src [n,c,ih,iw]; records the winners */
/* Offset of (n, c, y, x) in an activation md of this backend (nChw{B}c, nchw, or nc for 1x1). */
static size_t act_off(const dnnl_memory_desc_t *md, int n, int c, int y, int x)
{
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    const int B = b->inner_nblks ? (int)b->inner_blks[0] : 1;
    size_t off = (size_t)n * (size_t)b->strides[0] + (size_t)(c / B) * (size_t)b->strides[1] + (size_t)(c % B);
    if (md->ndims == 4) off += (size_t)y * (size_t)b->strides[2] + (size_t)x * (size_t)b->strides[3];
    return off;
}

/* act_off for the shared NaN pass */
static size_t md_off(const void *md, int n, int c, int y, int x) { return act_off(md, n, c, y, x); }

/* oneDNN 2.6's max pooling drops NaN (an all-NaN window gives -FLT_MAX, a NaN beside numbers is
 * ignored: measured), where PyTorch lets a NaN win (the last one in the window, as ref), so a
 * corrupt weight would pass silently.  When src holds a NaN (one threaded scan; rare), the
 * windows that read one get it.  The backward still follows oneDNN's workspace there (a documented gap). */
static void nan_wins(const anx_layer_desc *l, const float *src, float *dst, int threads)
{
    dnnl_memory_desc_t smd, dmd;
    anx_onednn_act_md(&smd, l->n, l->ic, l->ih, l->iw);
    anx_onednn_act_md(&dmd, l->n, l->oc, l->oh, l->ow);
    anx_f32_maxpool_nan_wins__shared(dst, src, l, md_off, &smd, &dmd, dnnl_memory_desc_get_size(&smd) / sizeof(float),
                                     threads);
}

anx_status anx_onednn_maxpool_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    pool_ctx *c = ctx;
    void *bufs[] = {a->src, a->dst};
    onednn_prim_exec(&c->fwd, bufs, c->head.threads);
    nan_wins(l, a->src, a->dst, c->head.threads);
    c->ws_src = a->src;
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}

/* diff_src [n,c,ih,iw] = sum over the windows each element won of diff_dst [n,c,oh,ow] */
anx_status anx_onednn_maxpool_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    pool_ctx *c = ctx;
    if (!a->src && !c->ws_src) return "no forward ran and no src given to recompute the pooling workspace";
    if (a->src && a->src != c->ws_src) { /* no workspace for this src: recompute it */
        if (!c->scratch_dst) {
            dnnl_memory_desc_t d;
            anx_onednn_act_md(&d, l->n, l->oc, l->oh, l->ow);
            const size_t bytes = dnnl_memory_desc_get_size(&d);
            if (posix_memalign((void **)&c->scratch_dst, 64, bytes)) {
                c->scratch_dst = NULL;
                return anx_status_oom("the pooling scratch dst", bytes);
            }
            c->scratch_bytes = bytes;
        }
        void *fb[] = {a->src, c->scratch_dst};
        onednn_prim_exec(&c->fwd, fb, c->head.threads);
        c->ws_src = a->src;
    }
    void *bufs[] = {a->diff_dst, c->ws, a->diff_src};
    onednn_prim_exec(&c->bwd, bufs, c->head.threads);
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}
