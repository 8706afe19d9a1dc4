/* Linear on oneDNN: inner product forward (with bias), backward data, backward weights (with bias).
 *
 * Linear-14 reads the blocked [n,256,6,6] output of MaxPool2d-13 directly (a 4-D inner product:
 * the flatten is free); the other Linears read [n, in] as nc.  Weights live in what the forward
 * primitive picks (on AVX2 a transposed "io" or a blocked 4-D format for gemm:jit); backward data
 * and backward weights are made with exactly that format and accept it here.  If a oneDNN build
 * refused it, a reorder in the ctx would bridge it, counted as EXEC_WEIGHTS (weighted.c).
 */
#include <stdlib.h>

#include "onednn_internal.h"

/* src [n,ic,ih,iw] (nc when ih = iw = 1), dst [n,oc] nc, bias x [oc]; m->weights is the caller's. */
static void ip_mds(const anx_layer_desc *l, onednn_weighted_mds *m)
{
    anx_onednn_act_md(&m->src, l->n, l->ic, l->ih, l->iw);
    anx_onednn_act_md(&m->dst, l->n, l->oc, 1, 1);
    dnnl_dims_t bd = {l->oc};
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&m->bias, 1, bd, dnnl_f32, dnnl_x));
}

static void weights_any(dnnl_memory_desc_t *w, const anx_layer_desc *l)
{
    if (l->ih == 1 && l->iw == 1) {
        dnnl_dims_t wd = {l->oc, l->ic};
        ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(w, 2, wd, dnnl_f32, dnnl_format_tag_any));
    } else {
        dnnl_dims_t wd = {l->oc, l->ic, l->ih, l->iw};
        ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(w, 4, wd, dnnl_f32, dnnl_format_tag_any));
    }
}

static void fwd_desc(dnnl_inner_product_desc_t *ipd, const anx_layer_desc *l, const dnnl_memory_desc_t *w)
{
    onednn_weighted_mds m;
    ip_mds(l, &m);
    ONEDNN_CHECK(dnnl_inner_product_forward_desc_init(ipd, dnnl_forward_training, &m.src, w, &m.bias, &m.dst));
}

void anx_onednn_linear_weights_md(dnnl_memory_desc_t *md, const anx_layer_desc *l)
{
    dnnl_memory_desc_t w;
    weights_any(&w, l);
    dnnl_inner_product_desc_t ipd;
    fwd_desc(&ipd, l, &w);
    onednn_weighted_picked_md(md, &ipd);
}

/* Both backward primitives are asked for the forward weight format first; weighted.c falls back
 * to format_any + a reorder if a oneDNN build refuses it (none here). */
static void make_bwd_data(onednn_weighted_layer *wl, const anx_layer_desc *l, const onednn_weighted_mds *m)
{
    dnnl_memory_desc_t any;
    weights_any(&any, l);
    dnnl_inner_product_desc_t ours, alt;
    ONEDNN_CHECK(dnnl_inner_product_backward_data_desc_init(&ours, &m->src, &m->weights, &m->dst));
    ONEDNN_CHECK(dnnl_inner_product_backward_data_desc_init(&alt, &m->src, &any, &m->dst));
    int took_any = onednn_weighted_init_preferring(&wl->bwd_data, &ours, &alt, wl, l->name,
                                                   "inner product backward data");
    onednn_weighted_bwd_data_args(wl, m, took_any);
}

static void make_bwd_weights(onednn_weighted_layer *wl, const anx_layer_desc *l, const onednn_weighted_mds *m)
{
    dnnl_memory_desc_t any;
    weights_any(&any, l);
    dnnl_inner_product_desc_t ours, alt;
    ONEDNN_CHECK(dnnl_inner_product_backward_weights_desc_init(&ours, &m->src, &m->weights, &m->bias, &m->dst));
    ONEDNN_CHECK(dnnl_inner_product_backward_weights_desc_init(&alt, &m->src, &any, &m->bias, &m->dst));
    onednn_weighted_make_bwd_weights(wl, &ours, &alt, m, l->name, "inner product backward weights");
}

void *anx_onednn_linear_create(const anx_layer_desc *l, int threads)
{
    onednn_weighted_layer *wl = calloc(1, sizeof *wl);
    if (!wl) return NULL;
    wl->head.op = ANX_OP_LINEAR;
    wl->head.threads = threads;
    onednn_weighted_mds m;
    anx_onednn_linear_weights_md(&m.weights, l);
    ip_mds(l, &m);
    dnnl_inner_product_desc_t ipd;
    fwd_desc(&ipd, l, &m.weights);
    onednn_weighted_make_fwd(wl, &ipd, &m, l->name, "inner product");
    make_bwd_data(wl, l, &m);
    make_bwd_weights(wl, l, &m);
    return wl;
}

const char *anx_onednn_linear_impl(void *ctx, anx_dir dir) { return onednn_weighted_impl(ctx, dir); }

/* dst [n,oc] = src [n, ic*ih*iw] . weights^T [ic*ih*iw, oc] + bias [oc] */
anx_status anx_onednn_linear_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    onednn_weighted_fwd(ctx, a);
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}

/* diff_src [n, ic*ih*iw] = diff_dst [n,oc] . weights [oc, ic*ih*iw] */
anx_status anx_onednn_linear_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    onednn_weighted_bwd_data(ctx, a);
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}

/* diff_weights [oc, ic*ih*iw] = diff_dst^T . src; diff_bias [oc] = sum over n of diff_dst */
anx_status anx_onednn_linear_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    onednn_weighted_bwd_weights(ctx, a);
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}
