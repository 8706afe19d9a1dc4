/* Conv2d on oneDNN: forward (with bias), backward data, backward weights (with bias), each
 * convolution_direct, or in the onednn-wino variant convolution_winograd where oneDNN has a
 * Winograd for that (layer, direction) (prefer_winograd; its impl name then says jit_wino_*).
 *
 * Weights live in the forward primitive's preferred format (OIhw8i8o on AVX2).  backward
 * weights is made with diff_weights in exactly that format (accepted by jit:avx2), so Adam sees
 * param and grad in one layout.  oneDNN's jit backward data only takes the transposed inner
 * block (OIhw8o8i on AVX2, OIhw16o16i on AVX-512) and falls back to ref:any otherwise, so that
 * primitive gets its weights through a reorder kept in the ctx, counted as EXEC_WEIGHTS: one
 * per conv layer and step (the same reorder PyTorch's ideep does).  What conv and linear share
 * (the ctx, the reorders, the exec) is in weighted.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onednn_internal.h"

/* The weighted layer (weighted.c), and whether oneDNN made a backward data at all. */
typedef struct conv_ctx {
    onednn_weighted_layer wl;
    int have_bwd_data; /* 0 when oneDNN has no backward data for this shape */
} conv_ctx;

/* An activation as a convolution sees it: the layout rule, except that a 1x1 image, which the
 * rule keeps as 2-D nc, is the same memory as 4-D nchw [n,c,1,1] (a convolution wants 4-D). */
static void conv_act_md(dnnl_memory_desc_t *md, int n, int c, int h, int w)
{
    if (h != 1 || w != 1) {
        anx_onednn_act_md(md, n, c, h, w);
        return;
    }
    dnnl_dims_t d = {n, c, 1, 1};
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nchw));
}

/* src [n,ic,ih,iw], dst [n,oc,oh,ow] in the layout rule, bias x [oc]; m->weights is the caller's. */
static void conv_mds(const anx_layer_desc *l, onednn_weighted_mds *m)
{
    conv_act_md(&m->src, l->n, l->ic, l->ih, l->iw);
    conv_act_md(&m->dst, l->n, l->oc, l->oh, l->ow);
    dnnl_dims_t bd = {l->oc};
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&m->bias, 1, bd, dnnl_f32, dnnl_x));
}

/* PyTorch's floor mode: the right padding is what makes oneDNN's (ih - kh + pl + pr) / s + 1 == oh
 * exact (may be < 0). */
static void conv_geometry(const anx_layer_desc *l, dnnl_dims_t strides, dnnl_dims_t pl, dnnl_dims_t pr)
{
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

/* Winograd in place of direct in cd, when algo asks for it and oneDNN has a Winograd other than
 * its reference for cd (hint: the forward pd of a backward desc, else NULL); else cd stays
 * direct.  Only oneDNN knows which shapes and ISAs its Winograd takes (2.6: 3x3, stride 1,
 * AVX-512), so it is asked, per (layer, direction), instead of a rule written here. */
static void prefer_winograd(dnnl_convolution_desc_t *cd, anx_onednn_algo algo, const_dnnl_primitive_desc_t hint)
{
    if (algo == ANX_ONEDNN_DIRECT) return;
    dnnl_convolution_desc_t w = *cd;
    w.alg_kind = dnnl_convolution_winograd;
    dnnl_primitive_desc_t pd;
    if (dnnl_primitive_desc_create(&pd, &w, NULL, anx_onednn_engine(), hint) != dnnl_success) return;
    const char *impl = NULL;
    const int ok = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
                   strncmp(impl, "ref", 3) != 0;
    dnnl_primitive_desc_destroy(pd);
    if (ok) *cd = w;
}

static void fwd_desc(dnnl_convolution_desc_t *cd, const anx_layer_desc *l, const dnnl_memory_desc_t *w)
{
    onednn_weighted_mds m;
    dnnl_dims_t st, pl, pr;
    conv_mds(l, &m);
    conv_geometry(l, st, pl, pr);
    ONEDNN_CHECK(dnnl_convolution_forward_desc_init(cd, dnnl_forward_training, dnnl_convolution_direct, &m.src, w,
                                                    &m.bias, &m.dst, st, pl, pr));
}

void anx_onednn_conv2d_weights_md(dnnl_memory_desc_t *md, const anx_layer_desc *l)
{
    dnnl_memory_desc_t w;
    weights_any(&w, l);
    dnnl_convolution_desc_t cd;
    fwd_desc(&cd, l, &w);
    onednn_weighted_picked_md(md, &cd);
}

/* oneDNN 2.6 has no jit backward data for a first-layer convolution (ic below the block: plain
 * nchw src); its ref:any takes minutes at Alexnet's Conv2d-1.  The step never needs d input, so
 * that direction is declined (reported skipped) rather than run at reference speed. */
const char *anx_onednn_conv2d_declines(const anx_layer_desc *l, anx_dir dir)
{
    if (dir != ANX_BWD_DATA) return NULL;
    onednn_weighted_mds m;
    dnnl_memory_desc_t any;
    dnnl_dims_t st, pl, pr;
    anx_onednn_conv2d_weights_md(&m.weights, l);
    conv_mds(l, &m);
    conv_geometry(l, st, pl, pr);
    weights_any(&any, l);
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t fpd, bpd;
    fwd_desc(&cd, l, &m.weights);
    if (ONEDNN_CHECK(dnnl_primitive_desc_create(&fpd, &cd, NULL, anx_onednn_engine(), NULL)))
        return "oneDNN has no convolution forward for this shape"; /* the pending status says more */
    if (ONEDNN_CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &m.src, &any, &m.dst,
                                                              st, pl, pr))) {
        dnnl_primitive_desc_destroy(fpd);
        return "oneDNN cannot describe this convolution's backward data";
    }
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

/* diff_weights exactly in the forward format (jit:avx2 accepts it); weighted.c falls back to
 * format_any + a reorder back if a oneDNN build refuses it. */
static void make_bwd_weights(conv_ctx *c, const anx_layer_desc *l, const onednn_weighted_mds *m,
                             anx_onednn_algo algo)
{
    dnnl_memory_desc_t any;
    dnnl_dims_t st, pl, pr;
    conv_geometry(l, st, pl, pr);
    weights_any(&any, l);
    dnnl_convolution_desc_t ours, alt;
    ONEDNN_CHECK(dnnl_convolution_backward_weights_desc_init(&ours, dnnl_convolution_direct, &m->src, &m->weights,
                                                             &m->bias, &m->dst, st, pl, pr));
    ONEDNN_CHECK(dnnl_convolution_backward_weights_desc_init(&alt, dnnl_convolution_direct, &m->src, &any, &m->bias,
                                                             &m->dst, st, pl, pr));
    /* oneDNN's Winograd bwd_weights fails the golden gate's per-element bound (docs/verify.md,
       "Winograd"): it runs only when asked for by name, to measure it */
    const anx_onednn_algo wa = algo == ANX_ONEDNN_WINOGRAD_ALL ? ANX_ONEDNN_WINOGRAD : ANX_ONEDNN_DIRECT;
    prefer_winograd(&ours, wa, c->wl.fwd.pd);
    prefer_winograd(&alt, wa, c->wl.fwd.pd);
    onednn_weighted_make_bwd_weights(&c->wl, &ours, &alt, m, l->name, "convolution backward weights");
}

/* Backward data always with format_any: jit only takes the transposed inner block, so asking for
 * ours would get ref:any.  No primitive at all leaves have_bwd_data 0 (exec then returns a status;
 * supports() declines that direction first). */
static void make_bwd_data(conv_ctx *c, const anx_layer_desc *l, const onednn_weighted_mds *m, anx_onednn_algo algo)
{
    dnnl_memory_desc_t any;
    dnnl_dims_t st, pl, pr;
    conv_geometry(l, st, pl, pr);
    weights_any(&any, l);
    dnnl_convolution_desc_t cd;
    ONEDNN_CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &m->src, &any, &m->dst, st,
                                                          pl, pr));
    prefer_winograd(&cd, algo, c->wl.fwd.pd);
    if (onednn_prim_init(&c->wl.bwd_data, &cd, c->wl.fwd.pd) != 0) return;
    c->have_bwd_data = 1;
    const dnnl_memory_desc_t *wb = onednn_prim_md(&c->wl.bwd_data, dnnl_query_weights_md);
    onednn_weighted_bwd_data_args(&c->wl, m, !dnnl_memory_desc_equal(wb, &m->weights));
}

void *anx_onednn_conv2d_create(const anx_layer_desc *l, int threads, anx_onednn_algo algo)
{
    conv_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->wl.head.op = ANX_OP_CONV2D;
    c->wl.head.threads = threads;
    onednn_weighted_mds m;
    anx_onednn_conv2d_weights_md(&m.weights, l);
    conv_mds(l, &m);
    dnnl_convolution_desc_t cd;
    fwd_desc(&cd, l, &m.weights);
    prefer_winograd(&cd, algo, NULL);
    onednn_weighted_make_fwd(&c->wl, &cd, &m, l->name, "convolution");
    make_bwd_data(c, l, &m, algo);
    make_bwd_weights(c, l, &m, algo);
    return c;
}

const char *anx_onednn_conv2d_impl(void *ctx, anx_dir dir)
{
    conv_ctx *c = ctx;
    if (dir == ANX_BWD_DATA && !c->have_bwd_data) return "none";
    return onednn_weighted_impl(&c->wl, dir);
}

/* dst [n,oc,oh,ow] = conv(src [n,ic,ih,iw], weights [oc,ic,kh,kw]) + bias [oc] */
anx_status anx_onednn_conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    onednn_weighted_fwd(ctx, a);
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}

/* diff_src [n,ic,ih,iw] = conv_transpose(diff_dst [n,oc,oh,ow], weights) */
anx_status anx_onednn_conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    conv_ctx *c = ctx;
    if (!c->have_bwd_data) return "oneDNN has no convolution backward data for this layer";
    onednn_weighted_bwd_data(&c->wl, a);
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}

/* diff_weights [oc,ic,kh,kw] = sum over (n, oh, ow) of diff_dst x src; diff_bias [oc] = sum of diff_dst */
anx_status anx_onednn_conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_onednn_need_ctx(ctx, l);
    if (st) return st;
    onednn_weighted_bwd_weights(ctx, a);
    return anx_onednn_take_status(); /* a oneDNN call that failed in here or before */
}
