/* MaxPool2d on LIBXSMM 1.17: one max-pooling handle per layer (fp32, LIBXSMM format, int32 mask
 * of the winning taps), run for FWD and BWD.
 *
 * The mask (which tap won each window) lives in the ctx.  The step driver runs a layer's forward
 * before its backward on the same buffers, so backward reuses it; a backward called alone or on
 * another src than the last forward's first recomputes it by a forward into a scratch dst (the
 * check is by pointer, as in the onednn backend).
 *
 * NaN: LIBXSMM keeps a window's max with "max < x" (its AVX-512 kernels: _CMP_LT_OS), so a NaN
 * never wins, where PyTorch lets it win (the last one in the window, as ref).  When src holds a NaN
 * (rare), the windows that read one get it, so a corrupt weight cannot pass silently; the
 * backward still follows LIBXSMM's mask there (the same documented gap as onednn's).  Whether src
 * holds one: in the step the ReLU just before counted the NaNs it wrote and left a note when there
 * were none (xsmm_internal.h), which costs nothing here; else one threaded scan of src (measured:
 * the old serial scan made pool1 fwd 2.5-5x LIBXSMM's own call).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/ops_shared.h"
#include "xsmm_internal.h"

static _Alignas(64) float g_dummy[16]; /* what tensors point at between execs */

static anx_status bind_one(xs_ctx *c, int t, libxsmm_dnn_tensor_type type, const char *what)
{
    libxsmm_dnn_err_t e;
    libxsmm_dnn_tensor_datalayout *lay = libxsmm_dnn_pooling_create_tensor_datalayout(c->pool, type, &e);
    if (!lay || anx_xsmm_failed(e)) return anx_xsmm_status(&c->l, "pooling_create_tensor_datalayout", e);
    const int want = anx_xsmm_blk(c->l.ic);
    if ((int)lay->dim_size[0] != want) {
        static _Thread_local char why[200];
        snprintf(why, sizeof why, "%s: LIBXSMM blocks the %s by %u channels, anx's layout assumed %d", c->l.name, what,
                 lay->dim_size[0], want);
        libxsmm_dnn_destroy_tensor_datalayout(lay);
        return why;
    }
    c->t[t] = libxsmm_dnn_link_tensor(lay, t == XS_MASK ? (const void *)c->mask : (const void *)g_dummy, &e);
    libxsmm_dnn_destroy_tensor_datalayout(lay);
    if (!c->t[t] || anx_xsmm_failed(e)) return anx_xsmm_status(&c->l, "link_tensor", e);
    e = libxsmm_dnn_pooling_bind_tensor(c->pool, c->t[t], type);
    return anx_xsmm_failed(e) ? anx_xsmm_status(&c->l, "pooling_bind_tensor", e) : NULL;
}

anx_status anx_xsmm_maxpool_create(xs_ctx *c)
{
    const anx_layer_desc *l = &c->l;
    libxsmm_dnn_pooling_desc d;
    memset(&d, 0, sizeof d);
    d.N = l->n, d.C = l->ic, d.H = l->ih, d.W = l->iw, d.R = l->kh, d.S = l->kw;
    d.u = d.v = l->stride;
    d.pad_h = d.pad_w = l->pad; /* 0: supports() declines padded pooling */
    d.threads = c->threads;
    d.datatype_in = d.datatype_out = LIBXSMM_DNN_DATATYPE_F32;
    d.datatype_mask = LIBXSMM_DNN_DATATYPE_I32;
    d.buffer_format = LIBXSMM_DNN_TENSOR_FORMAT_LIBXSMM;
    d.pooling_type = LIBXSMM_DNN_POOLING_MAX;
    libxsmm_dnn_err_t e;
    c->pool = libxsmm_dnn_create_pooling(d, &e);
    if (!c->pool || anx_xsmm_failed(e)) {
        c->pool = NULL;
        return anx_xsmm_status(l, "create_pooling", e);
    }
    if (c->probe) return NULL; /* LIBXSMM takes the layer; the rest is anx's own */
    const size_t outs = anx_desc_plain_count(l, ANX_DST);
    c->mask = malloc(outs * sizeof *c->mask);
    if (posix_memalign((void **)&c->pool_dst, 64, (outs ? outs : 1) * sizeof *c->pool_dst)) c->pool_dst = NULL;
    if (!c->mask || !c->pool_dst) return anx_status_oom("the libxsmm pooling mask and scratch dst", outs * 8);
    anx_status st = NULL;
    if (!st) st = bind_one(c, XS_IN, LIBXSMM_DNN_REGULAR_INPUT, "input");
    if (!st) st = bind_one(c, XS_DIN, LIBXSMM_DNN_GRADIENT_INPUT, "input gradient");
    if (!st) st = bind_one(c, XS_OUT, LIBXSMM_DNN_REGULAR_OUTPUT, "output");
    if (!st) st = bind_one(c, XS_DOUT, LIBXSMM_DNN_GRADIENT_OUTPUT, "output gradient");
    if (!st) st = bind_one(c, XS_MASK, LIBXSMM_DNN_POOLING_MASK, "mask");
    if (st) return st;
    const size_t bytes = libxsmm_dnn_pooling_get_scratch_size(c->pool, &e);
    if (anx_xsmm_failed(e)) return anx_xsmm_status(l, "pooling_get_scratch_size", e);
    if (posix_memalign(&c->scratch, 64, bytes ? bytes : 64)) {
        c->scratch = NULL;
        return anx_status_oom("LIBXSMM's pooling scratch", bytes);
    }
    c->ws_bytes = bytes + outs * (sizeof *c->mask + sizeof *c->pool_dst);
    e = libxsmm_dnn_pooling_bind_scratch(c->pool, c->scratch);
    if (anx_xsmm_failed(e)) return anx_xsmm_status(l, "pooling_bind_scratch", e);
    const char *t = anx_xsmm_target();
    snprintf(c->impl[ANX_FWD], sizeof c->impl[0], "libxsmm:%s f32_maxpool_fwd (LIBXSMM %s)", t, anx_xsmm_version());
    snprintf(c->impl[ANX_BWD_DATA], sizeof c->impl[0], "libxsmm:%s f32_maxpool_bwd_data (LIBXSMM %s)", t,
             anx_xsmm_version());
    return NULL;
}

static anx_status need_ctx(const void *ctx)
{
    return ctx && ((const xs_ctx *)ctx)->pool ? NULL : "the libxsmm backend needs the layer context its layer_create makes";
}

/* (n, c, y, x) in [n][C/B][H][W][B]; lay: {C, H, W} */
static size_t act_off(const void *lay, int n, int c, int y, int x)
{
    const int *d = lay;
    return anx_xsmm_act4_off(d[0], d[1], d[2], n, c, y, x);
}

/* PyTorch's NaN rule on top of LIBXSMM's result (see the top of this file); nan_free: the ReLU
 * that wrote src just before found no NaN in it. */
static void nan_wins(const xs_ctx *c, const float *src, float *dst, int nan_free)
{
    const anx_layer_desc *l = &c->l;
    if (nan_free) return;
    anx_xsmm_nan_scan_counted();
    const int sl[3] = {l->ic, l->ih, l->iw}, dl[3] = {l->oc, l->oh, l->ow};
    anx_f32_maxpool_nan_wins__shared(dst, src, l, act_off, sl, dl, anx_desc_plain_count(l, ANX_SRC), c->threads);
}

/* LIBXSMM's AVX-512 pooling kernels write dst (fwd) and diff_src (bwd) with streaming stores
 * (vmovntps), which fault unless 64-byte aligned: the contract of backend.h, refused otherwise. */
static anx_status unaligned(const anx_layer_desc *l, const char *what)
{
    static _Thread_local char why[160];
    snprintf(why, sizeof why, "%s: %s is not 64-byte aligned (LIBXSMM's pooling stores it with vmovntps)", l->name,
             what);
    return why;
}

static anx_status run_fwd(xs_ctx *c, const anx_args *a, float *dst)
{
    anx_xsmm_point(c, XS_IN, a->src);
    anx_xsmm_point(c, XS_OUT, dst);
    const xs_job j = {c, LIBXSMM_DNN_COMPUTE_KIND_FWD, a, NULL, NULL};
    anx_status st = anx_xsmm_run(&j, "pooling_execute_st(FWD)");
    c->mask_src = st ? NULL : a->src;
    return st;
}

/* dst [n,c,oh,ow] = max over each kh x kw window of src [n,c,ih,iw]; records the winners */
anx_status anx_xsmm_maxpool_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = need_ctx(ctx);
    if (st) return st;
    if ((uintptr_t)a->dst % 64) return unaligned(l, "dst");
    const int nan_free = anx_xsmm_nan_free_take(a->src, anx_desc_plain_count(l, ANX_SRC));
    st = run_fwd(ctx, a, a->dst);
    if (st) return st;
    nan_wins(ctx, a->src, a->dst, nan_free);
    return NULL;
}

/* diff_src [n,c,ih,iw] = sum over the windows each element won of diff_dst [n,c,oh,ow] */
anx_status anx_xsmm_maxpool_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = need_ctx(ctx);
    if (st) return st;
    xs_ctx *c = ctx;
    if (!a->src && !c->mask_src) return "no forward ran and no src given to recompute the pooling mask";
    if (a->src && a->src != c->mask_src && (st = run_fwd(c, a, c->pool_dst))) return st;
    if ((uintptr_t)a->diff_src % 64) return unaligned(l, "diff_src");
    return anx_xsmm_maxpool_bwd_data_bare(c, l, a);
}

/* The same two bare: LIBXSMM's pooling alone (no alignment check, NaN rule or mask recompute;
 * bwd follows the mask of the last fwd) */
anx_status anx_xsmm_maxpool_fwd_bare(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)l;
    anx_status st = need_ctx(ctx);
    return st ? st : run_fwd(ctx, a, a->dst);
}

anx_status anx_xsmm_maxpool_bwd_data_bare(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)l;
    anx_status st = need_ctx(ctx);
    if (st) return st;
    xs_ctx *c = ctx;
    anx_xsmm_point(c, XS_DOUT, a->diff_dst);
    anx_xsmm_point(c, XS_DIN, a->diff_src);
    const xs_job j = {c, LIBXSMM_DNN_COMPUTE_KIND_BWD, a, NULL, NULL};
    return anx_xsmm_run(&j, "pooling_execute_st(BWD)");
}
