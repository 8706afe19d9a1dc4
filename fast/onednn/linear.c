/* Linear on oneDNN: inner product forward (with bias), backward data, backward weights (with bias).
 *
 * Linear-14 reads the blocked [n,256,6,6] output of MaxPool2d-13 directly (a 4-D inner product:
 * the flatten is free); the other Linears read [n, in] as nc.  Weights live in what the forward
 * primitive picks (on AVX2 a transposed "io" or a blocked 4-D format for gemm:jit); backward data
 * and backward weights are made with exactly that format and accept it here.  If a oneDNN build
 * refused it, a reorder in the ctx would bridge it, counted as EXEC_WEIGHTS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onednn_internal.h"

typedef struct linear_ctx {
    onednn_ctx_head head;
    onednn_prim fwd, bwd_data, bwd_weights;
    onednn_prim wei_to_bwd;  /* fwd weights -> bwd_data's, only if bwd_data refused ours */
    float *wei_bwd;
    onednn_prim dwei_to_fwd; /* bwd_weights' diff_weights -> fwd format, only if it refused ours */
    float *dwei_own;
} linear_ctx;

/* src [n,ic,ih,iw] (nc when ih = iw = 1), dst [n,oc] nc, bias x [oc] */
static void ip_mds(const anx_layer_desc *l, dnnl_memory_desc_t *s, dnnl_memory_desc_t *b, dnnl_memory_desc_t *d)
{
    anx_onednn_act_md(s, l->n, l->ic, l->ih, l->iw);
    anx_onednn_act_md(d, l->n, l->oc, 1, 1);
    dnnl_dims_t bd = {l->oc};
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(b, 1, bd, dnnl_f32, dnnl_x));
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
    dnnl_memory_desc_t s, b, d;
    ip_mds(l, &s, &b, &d);
    ONEDNN_CHECK(dnnl_inner_product_forward_desc_init(ipd, dnnl_forward_training, &s, w, &b, &d));
}

void anx_onednn_linear_weights_md(dnnl_memory_desc_t *md, const anx_layer_desc *l)
{
    dnnl_memory_desc_t w;
    weights_any(&w, l);
    dnnl_inner_product_desc_t ipd;
    fwd_desc(&ipd, l, &w);
    dnnl_primitive_desc_t pd;
    ONEDNN_CHECK(dnnl_primitive_desc_create(&pd, &ipd, NULL, anx_onednn_engine(), NULL));
    *md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
}

static int usable(const onednn_prim *p, int ok) { return ok && strncmp(p->impl, "ref", 3) != 0; }

static void make_bwd_data(linear_ctx *c, const anx_layer_desc *l, const dnnl_memory_desc_t *w)
{
    dnnl_memory_desc_t s, b, d, any;
    ip_mds(l, &s, &b, &d);
    dnnl_inner_product_desc_t ipd;
    ONEDNN_CHECK(dnnl_inner_product_backward_data_desc_init(&ipd, &s, w, &d));
    int ok = onednn_prim_init(&c->bwd_data, &ipd, c->fwd.pd) == 0;
    if (!usable(&c->bwd_data, ok)) {
        onednn_prim alt;
        weights_any(&any, l);
        ONEDNN_CHECK(dnnl_inner_product_backward_data_desc_init(&ipd, &s, &any, &d));
        if (onednn_prim_init(&alt, &ipd, c->fwd.pd) == 0 && (!ok || usable(&alt, 1))) {
            if (ok) onednn_prim_destroy(&c->bwd_data);
            c->bwd_data = alt;
            const dnnl_memory_desc_t *wb = onednn_prim_md(&c->bwd_data, dnnl_query_weights_md);
            ONEDNN_CHECK(onednn_prim_init_reorder(&c->wei_to_bwd, w, wb) ? dnnl_unimplemented : dnnl_success);
            onednn_prim_arg(&c->wei_to_bwd, DNNL_ARG_FROM, w);
            c->wei_bwd = onednn_prim_arg_owned(&c->wei_to_bwd, DNNL_ARG_TO, wb);
        } else if (!ok) {
            fprintf(stderr, "anx onednn: %s: no inner product backward data\n", l->name);
            abort();
        } else if (alt.pd) {
            onednn_prim_destroy(&alt);
        }
    }
    onednn_prim_arg(&c->bwd_data, DNNL_ARG_DIFF_DST, &d);
    onednn_prim_arg(&c->bwd_data, DNNL_ARG_WEIGHTS, onednn_prim_md(&c->bwd_data, dnnl_query_weights_md));
    onednn_prim_arg(&c->bwd_data, DNNL_ARG_DIFF_SRC, &s);
}

static void make_bwd_weights(linear_ctx *c, const anx_layer_desc *l, const dnnl_memory_desc_t *w)
{
    dnnl_memory_desc_t s, b, d, any;
    ip_mds(l, &s, &b, &d);
    dnnl_inner_product_desc_t ipd;
    ONEDNN_CHECK(dnnl_inner_product_backward_weights_desc_init(&ipd, &s, w, &b, &d));
    int ok = onednn_prim_init(&c->bwd_weights, &ipd, c->fwd.pd) == 0;
    if (!usable(&c->bwd_weights, ok)) {
        onednn_prim alt;
        weights_any(&any, l);
        ONEDNN_CHECK(dnnl_inner_product_backward_weights_desc_init(&ipd, &s, &any, &b, &d));
        if (onednn_prim_init(&alt, &ipd, c->fwd.pd) == 0 && (!ok || usable(&alt, 1))) {
            if (ok) onednn_prim_destroy(&c->bwd_weights);
            c->bwd_weights = alt;
            const dnnl_memory_desc_t *own = onednn_prim_md(&c->bwd_weights, dnnl_query_diff_weights_md);
            ONEDNN_CHECK(onednn_prim_init_reorder(&c->dwei_to_fwd, own, w) ? dnnl_unimplemented : dnnl_success);
            onednn_prim_arg(&c->dwei_to_fwd, DNNL_ARG_FROM, own);
            onednn_prim_arg(&c->dwei_to_fwd, DNNL_ARG_TO, w);
        } else if (!ok) {
            fprintf(stderr, "anx onednn: %s: no inner product backward weights\n", l->name);
            abort();
        } else if (alt.pd) {
            onednn_prim_destroy(&alt);
        }
    }
    onednn_prim_arg(&c->bwd_weights, DNNL_ARG_SRC, &s);
    onednn_prim_arg(&c->bwd_weights, DNNL_ARG_DIFF_DST, &d);
    onednn_prim_arg(&c->bwd_weights, DNNL_ARG_DIFF_BIAS, &b);
    const dnnl_memory_desc_t *dw = onednn_prim_md(&c->bwd_weights, dnnl_query_diff_weights_md);
    if (c->dwei_to_fwd.prim) c->dwei_own = onednn_prim_arg_owned(&c->bwd_weights, DNNL_ARG_DIFF_WEIGHTS, dw);
    else onednn_prim_arg(&c->bwd_weights, DNNL_ARG_DIFF_WEIGHTS, dw);
}

void *anx_onednn_linear_create(const anx_layer_desc *l, int threads)
{
    linear_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->head.op = ANX_OP_LINEAR;
    c->head.threads = threads;
    dnnl_memory_desc_t w, s, b, d;
    anx_onednn_linear_weights_md(&w, l);
    ip_mds(l, &s, &b, &d);
    dnnl_inner_product_desc_t ipd;
    fwd_desc(&ipd, l, &w);
    if (onednn_prim_init(&c->fwd, &ipd, NULL) != 0) {
        fprintf(stderr, "anx onednn: %s: no inner product forward for its own weight format\n", l->name);
        abort();
    }
    onednn_prim_arg(&c->fwd, DNNL_ARG_SRC, &s);
    onednn_prim_arg(&c->fwd, DNNL_ARG_WEIGHTS, &w);
    onednn_prim_arg(&c->fwd, DNNL_ARG_BIAS, &b);
    onednn_prim_arg(&c->fwd, DNNL_ARG_DST, &d);
    make_bwd_data(c, l, &w);
    make_bwd_weights(c, l, &w);
    return c;
}

void anx_onednn_linear_destroy(void *ctx)
{
    linear_ctx *c = ctx;
    onednn_prim_destroy(&c->fwd);
    onednn_prim_destroy(&c->bwd_data);
    onednn_prim_destroy(&c->bwd_weights);
    onednn_prim_destroy(&c->wei_to_bwd);
    onednn_prim_destroy(&c->dwei_to_fwd);
    free(c);
}

const char *anx_onednn_linear_impl(void *ctx, anx_dir dir)
{
    linear_ctx *c = ctx;
    return dir == ANX_FWD ? c->fwd.impl : dir == ANX_BWD_DATA ? c->bwd_data.impl : c->bwd_weights.impl;
}

static linear_ctx *ctx_or_tmp(void *ctx, const anx_layer_desc *l)
{
    return ctx ? ctx : anx_onednn_linear_create(l, anx_onednn_ctx_threads(NULL));
}

/* dst [n,oc] = src [n, ic*ih*iw] . weights^T [ic*ih*iw, oc] + bias [oc] */
void anx_onednn_linear_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    linear_ctx *c = ctx_or_tmp(ctx, l);
    void *bufs[] = {a->src, a->weights, a->bias, a->dst};
    onednn_prim_exec(&c->fwd, bufs, c->head.threads);
    if (!ctx) anx_onednn_linear_destroy(c);
}

/* diff_src [n, ic*ih*iw] = diff_dst [n,oc] . weights [oc, ic*ih*iw] */
void anx_onednn_linear_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    linear_ctx *c = ctx_or_tmp(ctx, l);
    float *w = a->weights;
    if (c->wei_bwd) {
        void *rb[] = {a->weights};
        onednn_prim_exec(&c->wei_to_bwd, rb, c->head.threads);
        anx_onednn_reorder_counted(ANX_ONEDNN_REORDER_EXEC_WEIGHTS);
        w = c->wei_bwd;
    }
    void *bufs[] = {a->diff_dst, w, a->diff_src};
    onednn_prim_exec(&c->bwd_data, bufs, c->head.threads);
    if (!ctx) anx_onednn_linear_destroy(c);
}

/* diff_weights [oc, ic*ih*iw] = diff_dst^T . src; diff_bias [oc] = sum over n of diff_dst */
void anx_onednn_linear_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    linear_ctx *c = ctx_or_tmp(ctx, l);
    void *bufs[] = {a->src, a->diff_dst, a->diff_bias, a->diff_weights};
    onednn_prim_exec(&c->bwd_weights, bufs, c->head.threads);
    if (c->dwei_own) {
        void *rb[] = {c->dwei_own, a->diff_weights};
        onednn_prim_exec(&c->dwei_to_fwd, rb, c->head.threads);
        anx_onednn_reorder_counted(ANX_ONEDNN_REORDER_EXEC_WEIGHTS);
    }
    if (!ctx) anx_onednn_linear_destroy(c);
}
