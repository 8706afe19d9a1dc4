/* Linear on LIBXSMM 1.17: one fully-connected handle per layer (fp32, NCPACKED activations with
 * the whole batch in one block, CKPACKED weights, FUSE_NONE), run for FWD, BWD and UPD.
 *
 * The bias is anx's (added after FWD, reduced after UPD, in the same OpenMP region): LIBXSMM's
 * FUSE_BIAS would do the same sums, but its bias gradient comes with the BWD pass, which the
 * backend interface separates from UPD.  Linear-14's src is Pool-13's [n][C/B][h][w][B]; the
 * fully-connected layer wants [C'/B'][n][B'] over C' = C*h*w in PyTorch's flatten order, so
 * fwd and bwd_weights convert src into a buffer of the ctx and bwd_data converts diff_src back,
 * each counted (ANX_XSMM_CONVERT_EXEC).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xsmm_internal.h"

static _Alignas(64) float g_dummy[16]; /* what tensors point at between execs */

static int in_features(const anx_layer_desc *l) { return l->ic * l->ih * l->iw; }
static int src_is_4d(const anx_layer_desc *l) { return l->ih * l->iw > 1; }

static anx_status bind_one(xs_ctx *c, int t, libxsmm_dnn_tensor_type type, int want0, int want1, const char *what)
{
    libxsmm_dnn_err_t e;
    libxsmm_dnn_tensor_datalayout *lay = libxsmm_dnn_fullyconnected_create_tensor_datalayout(c->fc, type, &e);
    if (!lay || anx_xsmm_failed(e)) return anx_xsmm_status(&c->l, "fullyconnected_create_tensor_datalayout", e);
    if ((int)lay->dim_size[0] != want0 || (int)lay->dim_size[1] != want1) {
        static _Thread_local char why[200];
        snprintf(why, sizeof why, "%s: LIBXSMM blocks the %s as %ux%u, anx's layout assumed %dx%d", c->l.name, what,
                 lay->dim_size[1], lay->dim_size[0], want1, want0);
        libxsmm_dnn_destroy_tensor_datalayout(lay);
        return why;
    }
    c->t[t] = libxsmm_dnn_link_tensor(lay, g_dummy, &e);
    libxsmm_dnn_destroy_tensor_datalayout(lay);
    if (!c->t[t] || anx_xsmm_failed(e)) return anx_xsmm_status(&c->l, "link_tensor", e);
    e = libxsmm_dnn_fullyconnected_bind_tensor(c->fc, c->t[t], type);
    return anx_xsmm_failed(e) ? anx_xsmm_status(&c->l, "fullyconnected_bind_tensor", e) : NULL;
}

static void impl_names(xs_ctx *c)
{
    const char *t = anx_xsmm_target(), *flat = src_is_4d(&c->l) ? " + flatten (anx, counted)" : "";
    snprintf(c->impl[ANX_FWD], sizeof c->impl[0], "libxsmm:%s f32_linear_fwd ncnc_kcck (LIBXSMM %s) + bias (anx)%s", t,
             anx_xsmm_version(), flat);
    snprintf(c->impl[ANX_BWD_DATA], sizeof c->impl[0], "libxsmm:%s f32_linear_bwd_data ncnc_kcck (LIBXSMM %s)%s", t,
             anx_xsmm_version(), flat);
    snprintf(c->impl[ANX_BWD_WEIGHTS], sizeof c->impl[0],
             "libxsmm:%s f32_linear_bwd_weights ncnc_kcck (LIBXSMM %s) + bias (anx)%s", t, anx_xsmm_version(), flat);
}

static anx_status alloc_floats(float **p, size_t n, const char *what)
{
    if (posix_memalign((void **)p, 64, (n ? n : 1) * sizeof(float))) {
        *p = NULL;
        return anx_status_oom(what, n * sizeof(float));
    }
    return NULL;
}

anx_status anx_xsmm_linear_create(xs_ctx *c)
{
    const anx_layer_desc *l = &c->l;
    const int C = in_features(l), bc = anx_xsmm_blk(C), bk = anx_xsmm_blk(l->oc);
    libxsmm_dnn_fullyconnected_desc d;
    memset(&d, 0, sizeof d);
    d.N = l->n, d.C = C, d.K = l->oc, d.bn = l->n, d.bk = bk, d.bc = bc;
    d.threads = c->threads;
    d.datatype_in = d.datatype_out = LIBXSMM_DNN_DATATYPE_F32;
    d.buffer_format = LIBXSMM_DNN_TENSOR_FORMAT_NCPACKED;
    d.filter_format = LIBXSMM_DNN_TENSOR_FORMAT_CKPACKED;
    d.fuse_ops = LIBXSMM_DNN_FULLYCONNECTED_FUSE_NONE;
    libxsmm_dnn_err_t e;
    c->fc = libxsmm_dnn_create_fullyconnected(d, &e);
    if (!c->fc || anx_xsmm_failed(e)) {
        c->fc = NULL;
        return anx_xsmm_status(l, "create_fullyconnected", e);
    }
    if (c->probe) return NULL; /* LIBXSMM takes the layer; the rest is anx's own */
    anx_status st = NULL;
    if (!st) st = bind_one(c, XS_IN, LIBXSMM_DNN_REGULAR_INPUT, bc, l->n, "input");
    if (!st) st = bind_one(c, XS_DIN, LIBXSMM_DNN_GRADIENT_INPUT, bc, l->n, "input gradient");
    if (!st) st = bind_one(c, XS_OUT, LIBXSMM_DNN_REGULAR_OUTPUT, bk, l->n, "output");
    if (!st) st = bind_one(c, XS_DOUT, LIBXSMM_DNN_GRADIENT_OUTPUT, bk, l->n, "output gradient");
    if (!st) st = bind_one(c, XS_FILTER, LIBXSMM_DNN_REGULAR_FILTER, bk, bc, "weights");
    if (!st) st = bind_one(c, XS_DFILTER, LIBXSMM_DNN_GRADIENT_FILTER, bk, bc, "weight gradient");
    if (st) return st;
    const size_t bytes = libxsmm_dnn_fullyconnected_get_scratch_size(c->fc, &e);
    if (anx_xsmm_failed(e)) return anx_xsmm_status(l, "fullyconnected_get_scratch_size", e);
    if (posix_memalign(&c->scratch, 2097152, bytes ? bytes : 64)) {
        c->scratch = NULL;
        return anx_status_oom("LIBXSMM's fully-connected scratch", bytes);
    }
    c->ws_bytes = bytes;
    e = libxsmm_dnn_fullyconnected_bind_scratch(c->fc, c->scratch);
    if (anx_xsmm_failed(e)) return anx_xsmm_status(l, "fullyconnected_bind_scratch", e);
    if (src_is_4d(l)) {
        const size_t n = (size_t)l->n * (size_t)C;
        if ((st = alloc_floats(&c->flat, n, "the flattened src of a libxsmm linear"))) return st;
        if ((st = alloc_floats(&c->dflat, n, "the flattened diff_src of a libxsmm linear"))) return st;
        c->ws_bytes += 2 * n * sizeof(float);
    }
    impl_names(c);
    return NULL;
}

static anx_status need_ctx(const void *ctx)
{
    return ctx && ((const xs_ctx *)ctx)->fc ? NULL : "the libxsmm backend needs the layer context its layer_create makes";
}

/* flat [C'/B'][n][B'] <-> src [n][C/B][h][w][B], C' = C*h*w in PyTorch's order (c, y, x); split
 * over the flat's rows (one n and B' features each, contiguous).  Along a row the feature f steps
 * x, then y, then c, so the src offset follows from counters: one set of divisions per row, none
 * per element (a division per element cost more than LIBXSMM's fc6 FWD at batch 32). */
static void flatten(const anx_layer_desc *l, float *flat, float *src4, int to_flat, int tid, int nthr)
{
    const size_t C = (size_t)in_features(l), hw = (size_t)l->ih * (size_t)l->iw, W = (size_t)l->iw;
    const size_t H = (size_t)l->ih, Bf = (size_t)anx_xsmm_blk((int)C), B = (size_t)anx_xsmm_blk(l->ic);
    const size_t N = (size_t)l->n, cblocks = (size_t)l->ic / B;
    size_t r0, r1;
    anx_xsmm_split(C / Bf * N, tid, nthr, &r0, &r1);
    for (size_t r = r0; r < r1; r++) {
        const size_t n = r % N, f0 = r / N * Bf;
        size_t c = f0 / hw, y = f0 % hw / W, x = f0 % W, cb = c / B, cl = c % B;
        float *row = flat + r * Bf;
        for (size_t j = 0; j < Bf; j++) {
            const size_t o4 = (((n * cblocks + cb) * H + y) * W + x) * B + cl;
            if (to_flat) row[j] = src4[o4];
            else src4[o4] = row[j];
            if (++x == W) {
                x = 0;
                if (++y == H) {
                    y = 0;
                    if (++cl == B) cl = 0, cb++;
                }
            }
        }
    }
}

static void src_to_flat(const xs_job *j, int tid, int nthr) { flatten(&j->c->l, j->c->flat, j->a->src, 1, tid, nthr); }
static void flat_to_diff_src(const xs_job *j, int tid, int nthr)
{
    flatten(&j->c->l, j->c->dflat, j->a->diff_src, 0, tid, nthr);
}

/* dst [K/B][n][B] += bias, split over the (channel block, n) rows */
static void bias_add(const xs_job *j, int tid, int nthr)
{
    const anx_layer_desc *l = &j->c->l;
    const int B = anx_xsmm_blk(l->oc);
    size_t r0, r1;
    anx_xsmm_split((size_t)(l->oc / B) * (size_t)l->n, tid, nthr, &r0, &r1);
    for (size_t r = r0; r < r1; r++) {
        float *d = j->a->dst + r * (size_t)B;
        const float *b = j->a->bias + r / (size_t)l->n * (size_t)B;
        for (int k = 0; k < B; k++) d[k] += b[k];
    }
}

/* diff_bias [K] = sum over n of diff_dst, in n order, split over channel blocks */
static void bias_grad(const xs_job *j, int tid, int nthr)
{
    const anx_layer_desc *l = &j->c->l;
    const int B = anx_xsmm_blk(l->oc);
    size_t b0, b1;
    anx_xsmm_split((size_t)(l->oc / B), tid, nthr, &b0, &b1);
    for (size_t cb = b0; cb < b1; cb++) {
        float *db = j->a->diff_bias + cb * (size_t)B;
        for (int k = 0; k < B; k++) db[k] = 0.0f;
        for (int n = 0; n < l->n; n++) {
            const float *d = j->a->diff_dst + (cb * (size_t)l->n + (size_t)n) * (size_t)B;
            for (int k = 0; k < B; k++) db[k] += d[k];
        }
    }
}

/* Points the handle's tensors of kind at a's buffers (Linear-14's src and diff_src: the
 * flattened copies of the ctx) and runs LIBXSMM's execute_st on the team, with anx's flatten
 * before (FWD, UPD) or after (BWD) and the bias after (FWD, UPD) in the same region; bare:
 * LIBXSMM's call alone (the backend's library_exec), on whatever the copies hold. */
static anx_status fc_exec(void *ctx, const anx_layer_desc *l, libxsmm_dnn_compute_kind kind, const anx_args *a,
                          int bare)
{
    anx_status st = need_ctx(ctx);
    if (st) return st;
    xs_ctx *c = ctx;
    const int flat = src_is_4d(l);
    xs_job j = {c, kind, a, NULL, NULL};
    switch (kind) {
    case LIBXSMM_DNN_COMPUTE_KIND_FWD:
        anx_xsmm_point(c, XS_IN, flat ? c->flat : a->src), anx_xsmm_point(c, XS_FILTER, a->weights);
        anx_xsmm_point(c, XS_OUT, a->dst);
        j.before = flat ? src_to_flat : NULL, j.after = bias_add;
        break;
    case LIBXSMM_DNN_COMPUTE_KIND_BWD:
        anx_xsmm_point(c, XS_DOUT, a->diff_dst), anx_xsmm_point(c, XS_FILTER, a->weights);
        anx_xsmm_point(c, XS_DIN, flat ? c->dflat : a->diff_src);
        j.after = flat ? flat_to_diff_src : NULL;
        break;
    default:
        anx_xsmm_point(c, XS_IN, flat ? c->flat : a->src), anx_xsmm_point(c, XS_DOUT, a->diff_dst);
        anx_xsmm_point(c, XS_DFILTER, a->diff_weights);
        j.before = flat ? src_to_flat : NULL, j.after = bias_grad;
    }
    if (bare) j.before = j.after = NULL;
    else if (flat) anx_xsmm_conversion_counted(ANX_XSMM_CONVERT_EXEC);
    return anx_xsmm_run(&j, kind == LIBXSMM_DNN_COMPUTE_KIND_FWD   ? "fullyconnected_execute_st(FWD)"
                            : kind == LIBXSMM_DNN_COMPUTE_KIND_BWD ? "fullyconnected_execute_st(BWD)"
                                                                   : "fullyconnected_execute_st(UPD)");
}

/* dst [n,oc] = src [n, ic*ih*iw] . weights^T + bias [oc] */
anx_status anx_xsmm_linear_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return fc_exec(ctx, l, LIBXSMM_DNN_COMPUTE_KIND_FWD, a, 0);
}

/* diff_src [n, ic*ih*iw] = diff_dst [n,oc] . weights */
anx_status anx_xsmm_linear_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return fc_exec(ctx, l, LIBXSMM_DNN_COMPUTE_KIND_BWD, a, 0);
}

/* diff_weights [oc, ic*ih*iw] = diff_dst^T . src; diff_bias [oc] = sum over n of diff_dst */
anx_status anx_xsmm_linear_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return fc_exec(ctx, l, LIBXSMM_DNN_COMPUTE_KIND_UPD, a, 0);
}

/* The same three without bias and flatten */
anx_status anx_xsmm_linear_fwd_bare(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return fc_exec(ctx, l, LIBXSMM_DNN_COMPUTE_KIND_FWD, a, 1);
}

anx_status anx_xsmm_linear_bwd_data_bare(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return fc_exec(ctx, l, LIBXSMM_DNN_COMPUTE_KIND_BWD, a, 1);
}

anx_status anx_xsmm_linear_bwd_weights_bare(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return fc_exec(ctx, l, LIBXSMM_DNN_COMPUTE_KIND_UPD, a, 1);
}
