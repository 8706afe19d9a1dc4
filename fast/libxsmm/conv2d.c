/* Conv2d on LIBXSMM 1.17: one direct-convolution handle per layer (fp32, LIBXSMM format for
 * activations and filters, OVERWRITE), run for FWD, BWD (d input) and UPD (d weights).
 *
 * Padding is logical (pad_h = pad, pad_h_in = pad_h_out = 0): the activations between layers
 * carry no rim, so ReLU, pooling and the next convolution read the same buffer; LIBXSMM copies
 * the input into a padded scratch itself (its fwd/upd "padding copy", its generic bwd loops).
 * LIBXSMM 1.17's convolution has no bias (fuse_ops: NONE only), so the bias is anx's: added
 * after FWD and reduced from diff_dst after UPD, in the same OpenMP region, split by channel
 * block (each channel summed in (n, y, x) order by one thread: the same bits for any team).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xsmm_internal.h"

static _Alignas(64) float g_dummy[16]; /* what tensors point at between execs */

static libxsmm_dnn_conv_desc conv_desc(const anx_layer_desc *l, int threads)
{
    libxsmm_dnn_conv_desc d;
    memset(&d, 0, sizeof d);
    d.N = l->n, d.C = l->ic, d.H = l->ih, d.W = l->iw, d.K = l->oc, d.R = l->kh, d.S = l->kw;
    d.u = d.v = l->stride;
    d.pad_h = d.pad_w = l->pad;
    d.pad_h_in = d.pad_w_in = d.pad_h_out = d.pad_w_out = 0;
    d.threads = threads;
    d.datatype_in = d.datatype_out = LIBXSMM_DNN_DATATYPE_F32;
    d.buffer_format = d.filter_format = LIBXSMM_DNN_TENSOR_FORMAT_LIBXSMM;
    d.algo = LIBXSMM_DNN_CONV_ALGO_DIRECT;
    d.options = LIBXSMM_DNN_CONV_OPTION_OVERWRITE;
    d.fuse_ops = LIBXSMM_DNN_CONV_FUSE_NONE;
    return d;
}

/* Links tensor slot t of type type (its layout from the handle), after checking that LIBXSMM's
 * innermost block is the one anx_xsmm_blk assumed (dim 0 of every LIBXSMM-format layout). */
static anx_status bind_one(xs_ctx *c, int t, libxsmm_dnn_tensor_type type, int want_blk, const char *what)
{
    libxsmm_dnn_err_t e;
    libxsmm_dnn_tensor_datalayout *lay = libxsmm_dnn_create_tensor_datalayout(c->conv, type, &e);
    if (!lay || anx_xsmm_failed(e)) return anx_xsmm_status(&c->l, "create_tensor_datalayout", e);
    if ((int)lay->dim_size[0] != want_blk) {
        static _Thread_local char why[200];
        snprintf(why, sizeof why, "%s: LIBXSMM blocks the %s by %u channels, anx's layout assumed %d", c->l.name, what,
                 lay->dim_size[0], want_blk);
        libxsmm_dnn_destroy_tensor_datalayout(lay);
        return why;
    }
    c->t[t] = libxsmm_dnn_link_tensor(lay, g_dummy, &e);
    libxsmm_dnn_destroy_tensor_datalayout(lay);
    if (!c->t[t] || anx_xsmm_failed(e)) return anx_xsmm_status(&c->l, "link_tensor", e);
    e = libxsmm_dnn_bind_tensor(c->conv, c->t[t], type);
    return anx_xsmm_failed(e) ? anx_xsmm_status(&c->l, "bind_tensor", e) : NULL;
}

static void impl_names(xs_ctx *c)
{
    const char *t = anx_xsmm_target();
    snprintf(c->impl[ANX_FWD], sizeof c->impl[0], "libxsmm:%s f32_conv2d_fwd direct (LIBXSMM %s) + bias (anx)", t,
             anx_xsmm_version());
    snprintf(c->impl[ANX_BWD_DATA], sizeof c->impl[0], "libxsmm:%s f32_conv2d_bwd_data direct (LIBXSMM %s)", t,
             anx_xsmm_version());
    snprintf(c->impl[ANX_BWD_WEIGHTS], sizeof c->impl[0],
             "libxsmm:%s f32_conv2d_bwd_weights direct upd (LIBXSMM %s) + bias (anx)", t, anx_xsmm_version());
}

anx_status anx_xsmm_conv2d_create(xs_ctx *c)
{
    const anx_layer_desc *l = &c->l;
    libxsmm_dnn_err_t e;
    c->conv = libxsmm_dnn_create_conv_layer(conv_desc(l, c->threads), &e);
    if (!c->conv || anx_xsmm_failed(e)) {
        c->conv = NULL;
        return anx_xsmm_status(l, "create_conv_layer", e);
    }
    if (c->probe) return NULL; /* LIBXSMM takes the layer; the rest is anx's own */
    const int bi = anx_xsmm_blk(l->ic), bo = anx_xsmm_blk(l->oc);
    anx_status st = NULL;
    if (!st) st = bind_one(c, XS_IN, LIBXSMM_DNN_REGULAR_INPUT, bi, "input");
    if (!st) st = bind_one(c, XS_DIN, LIBXSMM_DNN_GRADIENT_INPUT, bi, "input gradient");
    if (!st) st = bind_one(c, XS_OUT, LIBXSMM_DNN_REGULAR_OUTPUT, bo, "output");
    if (!st) st = bind_one(c, XS_DOUT, LIBXSMM_DNN_GRADIENT_OUTPUT, bo, "output gradient");
    if (!st) st = bind_one(c, XS_FILTER, LIBXSMM_DNN_REGULAR_FILTER, bo, "filter");
    if (!st) st = bind_one(c, XS_DFILTER, LIBXSMM_DNN_GRADIENT_FILTER, bo, "filter gradient");
    if (st) return st;
    const size_t bytes = libxsmm_dnn_get_scratch_size(c->conv, LIBXSMM_DNN_COMPUTE_KIND_ALL, &e);
    if (anx_xsmm_failed(e)) return anx_xsmm_status(l, "get_scratch_size", e);
    if (posix_memalign(&c->scratch, 2097152, bytes ? bytes : 64)) {
        c->scratch = NULL;
        return anx_status_oom("LIBXSMM's convolution scratch", bytes);
    }
    c->ws_bytes = bytes;
    e = libxsmm_dnn_bind_scratch(c->conv, LIBXSMM_DNN_COMPUTE_KIND_ALL, c->scratch);
    if (anx_xsmm_failed(e)) return anx_xsmm_status(l, "bind_scratch", e);
    impl_names(c);
    return NULL;
}

static anx_status need_ctx(const void *ctx)
{
    return ctx && ((const xs_ctx *)ctx)->conv ? NULL : "the libxsmm backend needs the layer context its layer_create makes";
}

/* dst [n][K/B][oh][ow][B] += bias, split over the (n, channel block) planes.  Each thread walks
 * its planes last to first: the dst LIBXSMM's FWD wrote last is likeliest still in cache, so the
 * pass starts with cache hits (conv1 at batch 32, a 25 MB dst, in the step on a Zen 5: exec /
 * bare 1.15-1.35 walking first to last, 1.08 last to first, 1.03 with no pass; docs/bench.md).  Same bits: each
 * element gets one add. */
static void bias_add(const xs_job *j, int tid, int nthr)
{
    const anx_layer_desc *l = &j->c->l;
    const int B = anx_xsmm_blk(l->oc), kb = l->oc / B;
    const size_t plane = (size_t)l->oh * (size_t)l->ow;
    size_t p0, p1;
    anx_xsmm_split((size_t)l->n * (size_t)kb, tid, nthr, &p0, &p1);
    for (size_t q = p1; q > p0; q--) {
        const size_t p = q - 1;
        float *d = j->a->dst + p * plane * (size_t)B;
        const float *b = j->a->bias + (p % (size_t)kb) * (size_t)B;
        for (size_t i = 0; i < plane; i++)
            for (int k = 0; k < B; k++) d[i * (size_t)B + (size_t)k] += b[k];
    }
}

/* diff_bias [K] = sum over (n, y, x) of diff_dst, split over channel blocks */
static void bias_grad(const xs_job *j, int tid, int nthr)
{
    const anx_layer_desc *l = &j->c->l;
    const int B = anx_xsmm_blk(l->oc), kb = l->oc / B;
    const size_t plane = (size_t)l->oh * (size_t)l->ow;
    size_t b0, b1;
    anx_xsmm_split((size_t)kb, tid, nthr, &b0, &b1);
    for (size_t cb = b0; cb < b1; cb++) {
        float *db = j->a->diff_bias + cb * (size_t)B;
        for (int k = 0; k < B; k++) db[k] = 0.0f;
        for (int n = 0; n < l->n; n++) {
            const float *d = j->a->diff_dst + ((size_t)n * (size_t)kb + cb) * plane * (size_t)B;
            for (size_t i = 0; i < plane; i++)
                for (int k = 0; k < B; k++) db[k] += d[i * (size_t)B + (size_t)k];
        }
    }
}

/* Points the handle's tensors of kind at a's buffers and runs LIBXSMM's execute_st on the team;
 * bare: without anx's bias pass after FWD and UPD (the backend's library_exec). */
static anx_status conv_exec(void *ctx, libxsmm_dnn_compute_kind kind, const anx_args *a, int bare)
{
    anx_status st = need_ctx(ctx);
    if (st) return st;
    xs_ctx *c = ctx;
    xs_job j = {c, kind, a, NULL, NULL};
    switch (kind) {
    case LIBXSMM_DNN_COMPUTE_KIND_FWD:
        anx_xsmm_point(c, XS_IN, a->src), anx_xsmm_point(c, XS_FILTER, a->weights), anx_xsmm_point(c, XS_OUT, a->dst);
        j.after = bare ? NULL : bias_add;
        return anx_xsmm_run(&j, "execute_st(FWD)");
    case LIBXSMM_DNN_COMPUTE_KIND_BWD:
        anx_xsmm_point(c, XS_DOUT, a->diff_dst), anx_xsmm_point(c, XS_FILTER, a->weights);
        anx_xsmm_point(c, XS_DIN, a->diff_src);
        return anx_xsmm_run(&j, "execute_st(BWD)");
    default:
        anx_xsmm_point(c, XS_IN, a->src), anx_xsmm_point(c, XS_DOUT, a->diff_dst);
        anx_xsmm_point(c, XS_DFILTER, a->diff_weights);
        j.after = bare ? NULL : bias_grad;
        return anx_xsmm_run(&j, "execute_st(UPD)");
    }
}

/* dst [n,oc,oh,ow] = conv(src [n,ic,ih,iw], weights [oc,ic,kh,kw]) + bias [oc] */
anx_status anx_xsmm_conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)l;
    return conv_exec(ctx, LIBXSMM_DNN_COMPUTE_KIND_FWD, a, 0);
}

/* diff_src [n,ic,ih,iw] = conv_transpose(diff_dst [n,oc,oh,ow], weights); LIBXSMM transposes
 * the filter into its scratch itself (no BWD_NO_FILTER_TRANSPOSE) */
anx_status anx_xsmm_conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)l;
    return conv_exec(ctx, LIBXSMM_DNN_COMPUTE_KIND_BWD, a, 0);
}

/* diff_weights [oc,ic,kh,kw] = sum over (n, oh, ow) of diff_dst x src; diff_bias [oc] = sum of diff_dst */
anx_status anx_xsmm_conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)l;
    return conv_exec(ctx, LIBXSMM_DNN_COMPUTE_KIND_UPD, a, 0);
}

/* The same three without the bias (bwd_data has none: the same call) */
anx_status anx_xsmm_conv2d_fwd_bare(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)l;
    return conv_exec(ctx, LIBXSMM_DNN_COMPUTE_KIND_FWD, a, 1);
}

anx_status anx_xsmm_conv2d_bwd_data_bare(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)l;
    return conv_exec(ctx, LIBXSMM_DNN_COMPUTE_KIND_BWD, a, 1);
}

anx_status anx_xsmm_conv2d_bwd_weights_bare(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)l;
    return conv_exec(ctx, LIBXSMM_DNN_COMPUTE_KIND_UPD, a, 1);
}
