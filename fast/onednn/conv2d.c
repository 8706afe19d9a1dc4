/* Conv2d on oneDNN: convolution_direct forward (with bias), backward data, backward weights
 * (with bias).
 *
 * Weights live in the forward primitive's preferred format (OIhw8i8o on AVX2).  backward
 * weights is made with diff_weights in exactly that format (accepted by jit:avx2), so Adam sees
 * param and grad in one layout.  oneDNN's jit backward data only takes the transposed inner
 * block (OIhw8o8i on AVX2, OIhw16o16i on AVX-512) and falls back to ref:any otherwise, so that
 * primitive gets its weights through a reorder kept in the ctx, counted as EXEC_WEIGHTS: one
 * per conv layer and step (the same reorder PyTorch's ideep does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onednn_internal.h"

typedef struct conv_ctx {
    onednn_ctx_head head;
    onednn_prim fwd, bwd_data, bwd_weights;
    onednn_prim wei_to_bwd;   /* fwd weights -> bwd_data weights, when they differ */
    float *wei_bwd;           /* its output, owned by wei_to_bwd */
    onednn_prim dwei_to_fwd;  /* bwd_weights' own diff_weights -> fwd format, only if it refused ours */
    float *dwei_own;          /* bwd_weights' output in that case, owned by bwd_weights */
    int have_bwd_data;        /* 0 when oneDNN has no backward data for this shape */
} conv_ctx;

/* src [n,ic,ih,iw], dst [n,oc,oh,ow] in the layout rule, bias x [oc]; PyTorch's floor mode: the
 * right padding is what makes oneDNN's (ih - kh + pl + pr) / s + 1 == oh exact (may be < 0). */
static void conv_mds(const anx_layer_desc *l, dnnl_memory_desc_t *s, dnnl_memory_desc_t *b, dnnl_memory_desc_t *d,
                     dnnl_dims_t strides, dnnl_dims_t pl, dnnl_dims_t pr)
{
    anx_onednn_act_md(s, l->n, l->ic, l->ih, l->iw);
    anx_onednn_act_md(d, l->n, l->oc, l->oh, l->ow);
    dnnl_dims_t bd = {l->oc};
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(b, 1, bd, dnnl_f32, dnnl_x));
    strides[0] = strides[1] = l->stride;
    pl[0] = pl[1] = l->pad;
    pr[0] = (dnnl_dim_t)(l->oh - 1) * l->stride + l->kh - l->ih - l->pad;
    pr[1] = (dnnl_dim_t)(l->ow - 1) * l->stride + l->kw - l->iw - l->pad;
}

static void weights_any(dnnl_memory_desc_t *w, const anx_layer_desc *l)
{
    dnnl_dims_t wd = {l->oc, l->ic, l->kh, l->kw};
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(w, 4, wd, dnnl_f32, dnnl_format_tag_any));
}

static void fwd_desc(dnnl_convolution_desc_t *cd, const anx_layer_desc *l, const dnnl_memory_desc_t *w)
{
    dnnl_memory_desc_t s, b, d;
    dnnl_dims_t st, pl, pr;
    conv_mds(l, &s, &b, &d, st, pl, pr);
    ONEDNN_CHECK(dnnl_convolution_forward_desc_init(cd, dnnl_forward_training, dnnl_convolution_direct, &s, w,
                                                    &b, &d, st, pl, pr));
}

void anx_onednn_conv2d_weights_md(dnnl_memory_desc_t *md, const anx_layer_desc *l)
{
    dnnl_memory_desc_t w;
    weights_any(&w, l);
    dnnl_convolution_desc_t cd;
    fwd_desc(&cd, l, &w);
    dnnl_primitive_desc_t pd;
    ONEDNN_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, anx_onednn_engine(), NULL));
    *md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
}

static int impl_is_ref(const onednn_prim *p) { return strncmp(p->impl, "ref", 3) == 0; }

/* oneDNN 2.6 has no jit backward data for a first-layer convolution (ic below the block: plain
 * nchw src); its ref:any takes minutes at Alexnet's Conv2d-1.  The step never needs d input, so
 * that direction is declined (reported skipped) rather than run at reference speed. */
const char *anx_onednn_conv2d_declines(const anx_layer_desc *l, anx_dir dir)
{
    if (dir != ANX_BWD_DATA) return NULL;
    dnnl_memory_desc_t w, s, b, d, any;
    dnnl_dims_t st, pl, pr;
    anx_onednn_conv2d_weights_md(&w, l);
    conv_mds(l, &s, &b, &d, st, pl, pr);
    weights_any(&any, l);
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t fpd, bpd;
    fwd_desc(&cd, l, &w);
    ONEDNN_CHECK(dnnl_primitive_desc_create(&fpd, &cd, NULL, anx_onednn_engine(), NULL));
    ONEDNN_CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &s, &any, &d, st, pl, pr));
    const char *why = NULL, *impl = NULL;
    if (dnnl_primitive_desc_create(&bpd, &cd, NULL, anx_onednn_engine(), fpd) != dnnl_success) {
        why = "oneDNN has no convolution backward data for this shape";
    } else {
        if (dnnl_primitive_desc_query(bpd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
            strncmp(impl, "ref", 3) == 0)
            why = "oneDNN 2.6 has only its reference ref:any for this convolution's backward data "
                  "(first layer, ic below the channel block); the training step never needs d input";
        dnnl_primitive_desc_destroy(bpd);
    }
    dnnl_primitive_desc_destroy(fpd);
    return why;
}

static void make_bwd_weights(conv_ctx *c, const anx_layer_desc *l, const dnnl_memory_desc_t *w)
{
    dnnl_memory_desc_t s, b, d, any;
    dnnl_dims_t st, pl, pr;
    conv_mds(l, &s, &b, &d, st, pl, pr);
    dnnl_convolution_desc_t cd;
    ONEDNN_CHECK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &s, w, &b, &d, st, pl, pr));
    int ok = onednn_prim_init(&c->bwd_weights, &cd, c->fwd.pd) == 0;
    if (ok && !impl_is_ref(&c->bwd_weights)) goto args;
    /* Our format was refused or only ref takes it: let oneDNN choose, then reorder to ours. */
    onednn_prim alt;
    weights_any(&any, l);
    ONEDNN_CHECK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &s, &any, &b, &d, st, pl, pr));
    if (onednn_prim_init(&alt, &cd, c->fwd.pd) != 0 || (ok && impl_is_ref(&alt))) {
        if (!ok) {
            fprintf(stderr, "anx onednn: %s: no convolution backward weights\n", l->name);
            abort();
        }
        if (alt.pd) onednn_prim_destroy(&alt);
        goto args;
    }
    if (ok) onednn_prim_destroy(&c->bwd_weights);
    c->bwd_weights = alt;
    const dnnl_memory_desc_t *own = onednn_prim_md(&c->bwd_weights, dnnl_query_diff_weights_md);
    ONEDNN_CHECK(onednn_prim_init_reorder(&c->dwei_to_fwd, own, w) ? dnnl_unimplemented : dnnl_success);
    onednn_prim_arg(&c->dwei_to_fwd, DNNL_ARG_FROM, own);
    onednn_prim_arg(&c->dwei_to_fwd, DNNL_ARG_TO, w);
args:
    onednn_prim_arg(&c->bwd_weights, DNNL_ARG_SRC, &s);
    onednn_prim_arg(&c->bwd_weights, DNNL_ARG_DIFF_DST, &d);
    onednn_prim_arg(&c->bwd_weights, DNNL_ARG_DIFF_BIAS, &b);
    const dnnl_memory_desc_t *dw = onednn_prim_md(&c->bwd_weights, dnnl_query_diff_weights_md);
    if (c->dwei_to_fwd.prim) c->dwei_own = onednn_prim_arg_owned(&c->bwd_weights, DNNL_ARG_DIFF_WEIGHTS, dw);
    else onednn_prim_arg(&c->bwd_weights, DNNL_ARG_DIFF_WEIGHTS, dw);
}

static void make_bwd_data(conv_ctx *c, const anx_layer_desc *l, const dnnl_memory_desc_t *w)
{
    dnnl_memory_desc_t s, b, d, any;
    dnnl_dims_t st, pl, pr;
    conv_mds(l, &s, &b, &d, st, pl, pr);
    weights_any(&any, l);
    dnnl_convolution_desc_t cd;
    ONEDNN_CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &s, &any, &d, st, pl, pr));
    if (onednn_prim_init(&c->bwd_data, &cd, c->fwd.pd) != 0) return;
    c->have_bwd_data = 1;
    const dnnl_memory_desc_t *wb = onednn_prim_md(&c->bwd_data, dnnl_query_weights_md);
    if (!dnnl_memory_desc_equal(wb, w)) {
        ONEDNN_CHECK(onednn_prim_init_reorder(&c->wei_to_bwd, w, wb) ? dnnl_unimplemented : dnnl_success);
        onednn_prim_arg(&c->wei_to_bwd, DNNL_ARG_FROM, w);
        c->wei_bwd = onednn_prim_arg_owned(&c->wei_to_bwd, DNNL_ARG_TO, wb);
    }
    onednn_prim_arg(&c->bwd_data, DNNL_ARG_DIFF_DST, &d);
    onednn_prim_arg(&c->bwd_data, DNNL_ARG_WEIGHTS, wb);
    onednn_prim_arg(&c->bwd_data, DNNL_ARG_DIFF_SRC, &s);
}

void *anx_onednn_conv2d_create(const anx_layer_desc *l, int threads)
{
    conv_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->head.op = ANX_OP_CONV2D;
    c->head.threads = threads;
    dnnl_memory_desc_t w, s, b, d;
    dnnl_dims_t st, pl, pr;
    anx_onednn_conv2d_weights_md(&w, l);
    conv_mds(l, &s, &b, &d, st, pl, pr);
    dnnl_convolution_desc_t cd;
    fwd_desc(&cd, l, &w);
    if (onednn_prim_init(&c->fwd, &cd, NULL) != 0) {
        fprintf(stderr, "anx onednn: %s: no convolution forward for its own weight format\n", l->name);
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

void anx_onednn_conv2d_destroy(void *ctx)
{
    conv_ctx *c = ctx;
    onednn_prim_destroy(&c->fwd);
    onednn_prim_destroy(&c->bwd_data);
    onednn_prim_destroy(&c->bwd_weights);
    onednn_prim_destroy(&c->wei_to_bwd);
    onednn_prim_destroy(&c->dwei_to_fwd);
    free(c);
}

const char *anx_onednn_conv2d_impl(void *ctx, anx_dir dir)
{
    conv_ctx *c = ctx;
    switch (dir) {
    case ANX_FWD: return c->fwd.impl;
    case ANX_BWD_DATA: return c->have_bwd_data ? c->bwd_data.impl : "none";
    default: return c->bwd_weights.impl;
    }
}

/* A caller without layer_create (allowed by backend.h) gets a ctx for this one call. */
static conv_ctx *ctx_or_tmp(void *ctx, const anx_layer_desc *l, int *tmp)
{
    *tmp = ctx == NULL;
    return ctx ? ctx : anx_onednn_conv2d_create(l, anx_onednn_ctx_threads(NULL));
}

static void done(conv_ctx *c, int tmp)
{
    if (tmp) anx_onednn_conv2d_destroy(c);
}

/* dst [n,oc,oh,ow] = conv(src [n,ic,ih,iw], weights [oc,ic,kh,kw]) + bias [oc] */
void anx_onednn_conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int tmp;
    conv_ctx *c = ctx_or_tmp(ctx, l, &tmp);
    void *bufs[] = {a->src, a->weights, a->bias, a->dst};
    onednn_prim_exec(&c->fwd, bufs, c->head.threads);
    done(c, tmp);
}

/* diff_src [n,ic,ih,iw] = conv_transpose(diff_dst [n,oc,oh,ow], weights) */
void anx_onednn_conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int tmp;
    conv_ctx *c = ctx_or_tmp(ctx, l, &tmp);
    if (!c->have_bwd_data) {
        fprintf(stderr, "anx onednn: %s: oneDNN has no convolution backward data here\n", l->name);
        abort();
    }
    float *w = a->weights;
    if (c->wei_bwd) {
        void *rb[] = {a->weights};
        onednn_prim_exec(&c->wei_to_bwd, rb, c->head.threads);
        anx_onednn_reorder_counted(ANX_ONEDNN_REORDER_EXEC_WEIGHTS);
        w = c->wei_bwd;
    }
    void *bufs[] = {a->diff_dst, w, a->diff_src};
    onednn_prim_exec(&c->bwd_data, bufs, c->head.threads);
    done(c, tmp);
}

/* diff_weights [oc,ic,kh,kw] = sum over (n, oh, ow) of diff_dst x src; diff_bias [oc] = sum of diff_dst */
void anx_onednn_conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int tmp;
    conv_ctx *c = ctx_or_tmp(ctx, l, &tmp);
    void *bufs[] = {a->src, a->diff_dst, a->diff_bias, a->diff_weights};
    onednn_prim_exec(&c->bwd_weights, bufs, c->head.threads); /* last buf unused when dwei_own */
    if (c->dwei_own) {
        void *rb[] = {c->dwei_own, a->diff_weights};
        onednn_prim_exec(&c->dwei_to_fwd, rb, c->head.threads);
        anx_onednn_reorder_counted(ANX_ONEDNN_REORDER_EXEC_WEIGHTS);
    }
    done(c, tmp);
}
