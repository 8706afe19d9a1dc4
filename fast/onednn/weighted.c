/* The part of Conv2d and Linear that does not depend on which op it is: three primitives on
 * weights in the forward primitive's format, and the two weight reorders that bridge a backward
 * primitive wanting another format (see onednn_weighted_layer in onednn_internal.h).  conv2d.c
 * and linear.c build the op descriptors; everything after that lives here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onednn_internal.h"

static int impl_is_ref(const onednn_prim *p) { return strncmp(p->impl, "ref", 3) == 0; }

void onednn_weighted_picked_md(dnnl_memory_desc_t *md, const void *fwd_op_desc)
{
    dnnl_primitive_desc_t pd;
    memset(md, 0, sizeof *md);
    if (ONEDNN_CHECK(dnnl_primitive_desc_create(&pd, fwd_op_desc, NULL, anx_onednn_engine(), NULL))) return;
    *md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
}

void onednn_weighted_make_fwd(onednn_weighted_layer *wl, const void *op_desc, const onednn_weighted_mds *m,
                              const char *layer, const char *what)
{
    if (onednn_prim_init(&wl->fwd, op_desc, NULL) != 0) {
        char why[160];
        snprintf(why, sizeof why, "%s: no oneDNN %s forward for its own weight format", layer, what);
        anx_onednn_fail(why);
        return;
    }
    onednn_prim_arg(&wl->fwd, DNNL_ARG_SRC, &m->src);
    onednn_prim_arg(&wl->fwd, DNNL_ARG_WEIGHTS, &m->weights);
    onednn_prim_arg(&wl->fwd, DNNL_ARG_BIAS, &m->bias);
    onednn_prim_arg(&wl->fwd, DNNL_ARG_DST, &m->dst);
}

int onednn_weighted_init_preferring(onednn_prim *p, const void *ours, const void *any,
                                    const onednn_weighted_layer *wl, const char *layer, const char *what)
{
    int ok = onednn_prim_init(p, ours, wl->fwd.pd) == 0;
    if (ok && !impl_is_ref(p)) return 0;
    /* Our format was refused or only ref takes it: let oneDNN choose, unless that is no better. */
    onednn_prim alt;
    if (onednn_prim_init(&alt, any, wl->fwd.pd) != 0 || (ok && impl_is_ref(&alt))) {
        if (!ok) {
            char why[160];
            snprintf(why, sizeof why, "%s: no oneDNN %s", layer, what);
            anx_onednn_fail(why);
        }
        if (alt.pd) onednn_prim_destroy(&alt);
        return 0;
    }
    if (ok) onednn_prim_destroy(p);
    *p = alt;
    return 1;
}

void onednn_weighted_bwd_data_args(onednn_weighted_layer *wl, const onednn_weighted_mds *m, int reorder)
{
    const dnnl_memory_desc_t *wb = onednn_prim_md(&wl->bwd_data, dnnl_query_weights_md);
    if (reorder) {
        ONEDNN_CHECK(onednn_prim_init_reorder(&wl->wei_to_bwd, &m->weights, wb) ? dnnl_unimplemented : dnnl_success);
        onednn_prim_arg(&wl->wei_to_bwd, DNNL_ARG_FROM, &m->weights);
        wl->wei_bwd = onednn_prim_arg_owned(&wl->wei_to_bwd, DNNL_ARG_TO, wb);
    }
    onednn_prim_arg(&wl->bwd_data, DNNL_ARG_DIFF_DST, &m->dst);
    onednn_prim_arg(&wl->bwd_data, DNNL_ARG_WEIGHTS, wb);
    onednn_prim_arg(&wl->bwd_data, DNNL_ARG_DIFF_SRC, &m->src);
}

void onednn_weighted_make_bwd_weights(onednn_weighted_layer *wl, const void *ours, const void *any,
                                      const onednn_weighted_mds *m, const char *layer, const char *what)
{
    if (onednn_weighted_init_preferring(&wl->bwd_weights, ours, any, wl, layer, what)) {
        /* it writes its own format: reorder that back to ours after every exec */
        const dnnl_memory_desc_t *own = onednn_prim_md(&wl->bwd_weights, dnnl_query_diff_weights_md);
        ONEDNN_CHECK(onednn_prim_init_reorder(&wl->dwei_to_fwd, own, &m->weights) ? dnnl_unimplemented
                                                                                   : dnnl_success);
        onednn_prim_arg(&wl->dwei_to_fwd, DNNL_ARG_FROM, own);
        onednn_prim_arg(&wl->dwei_to_fwd, DNNL_ARG_TO, &m->weights);
    }
    onednn_prim_arg(&wl->bwd_weights, DNNL_ARG_SRC, &m->src);
    onednn_prim_arg(&wl->bwd_weights, DNNL_ARG_DIFF_DST, &m->dst);
    onednn_prim_arg(&wl->bwd_weights, DNNL_ARG_DIFF_BIAS, &m->bias);
    const dnnl_memory_desc_t *dw = onednn_prim_md(&wl->bwd_weights, dnnl_query_diff_weights_md);
    if (wl->dwei_to_fwd.prim) wl->dwei_own = onednn_prim_arg_owned(&wl->bwd_weights, DNNL_ARG_DIFF_WEIGHTS, dw);
    else onednn_prim_arg(&wl->bwd_weights, DNNL_ARG_DIFF_WEIGHTS, dw);
}

void onednn_weighted_destroy(void *ctx)
{
    onednn_weighted_layer *wl = ctx;
    onednn_prim_destroy(&wl->fwd);
    onednn_prim_destroy(&wl->bwd_data);
    onednn_prim_destroy(&wl->bwd_weights);
    onednn_prim_destroy(&wl->wei_to_bwd);
    onednn_prim_destroy(&wl->dwei_to_fwd);
    free(wl);
}

const char *onednn_weighted_impl(const onednn_weighted_layer *wl, anx_dir dir)
{
    return dir == ANX_FWD ? wl->fwd.impl : dir == ANX_BWD_DATA ? wl->bwd_data.impl : wl->bwd_weights.impl;
}

/* dst = op(src, weights) + bias */
void onednn_weighted_fwd(onednn_weighted_layer *wl, const anx_args *a)
{
    void *bufs[] = {a->src, a->weights, a->bias, a->dst};
    onednn_prim_exec(&wl->fwd, bufs, wl->head.threads);
}

/* diff_src = op^T(diff_dst, weights), the weights first reordered when bwd_data wants its own format */
void onednn_weighted_bwd_data(onednn_weighted_layer *wl, const anx_args *a)
{
    float *w = a->weights;
    if (wl->wei_bwd) {
        void *rb[] = {a->weights};
        onednn_prim_exec(&wl->wei_to_bwd, rb, wl->head.threads);
        anx_onednn_reorder_counted(ANX_ONEDNN_REORDER_EXEC_WEIGHTS);
        w = wl->wei_bwd;
    }
    void *bufs[] = {a->diff_dst, w, a->diff_src};
    onednn_prim_exec(&wl->bwd_data, bufs, wl->head.threads);
}

/* diff_weights, diff_bias from (src, diff_dst); diff_weights reordered back when bwd_weights wrote its own */
void onednn_weighted_bwd_weights(onednn_weighted_layer *wl, const anx_args *a)
{
    void *bufs[] = {a->src, a->diff_dst, a->diff_bias, a->diff_weights};
    onednn_prim_exec(&wl->bwd_weights, bufs, wl->head.threads); /* last buf unused when dwei_own */
    if (wl->dwei_own) {
        void *rb[] = {wl->dwei_own, a->diff_weights};
        onednn_prim_exec(&wl->dwei_to_fwd, rb, wl->head.threads);
        anx_onednn_reorder_counted(ANX_ONEDNN_REORDER_EXEC_WEIGHTS);
    }
}
