/* anx verify, layer-isolated mode: each (layer, direction) of a backend gets the golden inputs
 * (float32 roundings of the float64 golden, init weights regenerated from the seed) and its
 * outputs are compared element by element with a bound from error analysis.
 *
 * Notation: u = 2^-24; want = f32(y), y the float64 golden; |want - y| <= u |want|, which every
 * bound below includes as "+ u|want|".  M = sum |a||b| behind an output, computed by running the
 * ref kernel on |a| and |b| (its own rounding is a relative K u, negligible next to the bound).
 *
 *   conv2d / linear fwd   |got - y| <= (gamma~(K+1) + u) M + u|want|,  K = ic kh kw,
 *                         M = conv(|x|, |W|) + |b|; the extra u M: the golden's float32 input
 *                         x = f32(x64) feeds the backend, the golden used x64.
 *   bwd_data              the same with K = v_bwd_data_k: oc (Linear), oc ceil(kh/s) ceil(kw/s) (conv),
 *                         M = conv_bwd_data(|dy|, |W|).
 *   bwd_weights           (gamma~(K) + 2u) M + u|want|, K = n oh ow, M = conv_bwd_weights(|x|, |dy|)
 *                         (x and dy are both float32 roundings: 2u M).
 *   relu, dropout, maxpool fwd, relu bwd   exact (0): they select or scale by 2, and rounding
 *                         commutes with that; ties in max pool are checked away by the generator.
 *   maxpool bwd           4u M + u|want|, M = maxpool_bwd(|dy|): up to 4 overlapping windows
 *                         add into one input, 3 roundings, plus the rounding of the inputs.
 *   loss fwd              (C + 10) u (max|z| + |loss|): C exponentials each within u, their sum
 *                         within C u relative, the log, the max subtraction and the mean.
 *   loss bwd              ((C + 6) u + 2u max_c|z_nc|) p_nc / n + 2u|want|, p = softmax: C + 6
 *                         roundings relative to p, and z = f32(z64) moves exp(z) by u|z| relative.
 *   Adam                  v_adam_bounds below.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/verify_internal.h"

float *v_be_buf(const anx_backend *be, const anx_layer_desc *l, anx_slot s)
{
    return v_alloc(be->tensor_floats(l, s));
}

float *v_be_import(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *plain)
{
    float *p = v_be_buf(be, l, s);
    be->tensor_import(l, s, p, plain);
    return p;
}

static int param_of(const anx_model *m, int layer)
{
    for (int p = 0; p < ANX_NUM_PARAMS; p += 2)
        if (m->params[p].layer == layer) return p;
    return -1;
}

static const char *impl_of(const anx_backend *be, void *ctx, const anx_layer_desc *l, anx_dir d)
{
    const char *s = be->impl_name ? be->impl_name(ctx, l, d) : NULL;
    return s ? s : "";
}

/* bound[i] = c * M[i] + u |want|: want is only known where stored, so u|got| + u^2 stands in for
 * u|want| (|want| <= |got| + bound: the difference is second order, covered by the +u|got|). */
static float *bound_from(const float *M, double c, const float *got, size_t n)
{
    float *b = v_alloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (float)((c * M[i] + 2 * V_U * fabs(got[i])) * (1 + 1e-6));
    return b;
}

static int want_or_skip(anx_verify_row *r, const vgold *g, const char *key, vwant *w, const anx_layer_desc *l,
                        anx_slot s)
{
    if (vgold_want(g, key, w)) {
        v_skip(r, "golden file lacks %s", key);
        return -1;
    }
    if (w->idx) w->ndim = v_slot_shape(l, s, w->shape);
    return 0;
}

static void iso_fwd(anx_verify_report *rep, vgold *g, const anx_backend *be, int i, int threads)
{
    const anx_model *m = &g->m;
    const anx_layer_desc *l = &m->layers[i];
    char key[96];
    snprintf(key, sizeof key, "out.%s", l->name);
    anx_verify_row *r = v_row(rep, g, be->name, "isolated", l->name, "fwd", key);
    const char *why = anx_backend_declines(be, l, ANX_FWD);
    if (why) return v_skip(r, "%s", why);
    const float *src = i == 0 ? g->input : g->out[i - 1];
    if (!src) return v_skip(r, "golden input out.%s is stored as a sample only", m->layers[i - 1].name);
    vwant w;
    if (want_or_skip(r, g, key, &w, l, ANX_DST)) return;
    size_t nd = anx_desc_plain_count(l, ANX_DST), ns = anx_desc_plain_count(l, ANX_SRC);
    void *ctx;
    anx_status st = anx_backend_layer_create(be, &ctx, l, threads);
    int p = param_of(m, i);
    anx_args a = {0};
    a.src = v_be_import(be, l, ANX_SRC, src);
    a.dst = v_be_buf(be, l, ANX_DST);
    float *maskp = NULL;
    if (p >= 0) {
        a.weights = v_be_import(be, l, ANX_WEIGHTS, g->init[p]);
        a.bias = v_be_import(be, l, ANX_BIAS, g->init[p + 1]);
    }
    if (l->op == ANX_OP_DROPOUT) {
        maskp = v_alloc(nd);
        v_mask(g, l->name, 1, maskp, nd);
        a.mask = v_be_import(be, l, ANX_DST, maskp);
    }
    if (!st) st = be->exec[l->op][ANX_FWD](ctx, l, &a);
    char failed[160] = ""; /* st's text lasts only until the next backend call (ref_run below) */
    if (st) snprintf(failed, sizeof failed, "%s", st);
    float *got = v_alloc(nd);
    be->tensor_export(l, ANX_DST, got, a.dst);
    snprintf(r->impl, sizeof r->impl, "%s", impl_of(be, ctx, l, ANX_FWD));
    float *bound = NULL;
    if (p >= 0) {
        /* M = |W| * |x| + |b| by the ref kernel on plain buffers */
        size_t nw = m->params[p].count, nb = m->params[p + 1].count;
        anx_args ra = {0};
        float *ax = v_alloc(ns), *aw = v_alloc(nw), *ab = v_alloc(nb), *M = v_alloc(nd);
        v_abs(ax, src, ns), v_abs(aw, g->init[p], nw), v_abs(ab, g->init[p + 1], nb);
        ra.src = ax, ra.weights = aw, ra.bias = ab, ra.dst = M;
        v_ref_run(l, ANX_FWD, &ra, threads);
        double K = (double)l->ic * l->kh * l->kw + 1;
        bound = bound_from(M, v_gamma(K) + V_U, got, nd);
        free(ax), free(aw), free(ab), free(M);
    }
    v_compare_want(r, got, &w, bound);
    if (failed[0]) v_fail_status(r, failed);
    free(bound), free(got), free(maskp);
    free(a.src), free(a.dst), free(a.weights), free(a.bias), free((void *)a.mask);
    if (ctx) be->layer_destroy(ctx);
    vwant_free(&w);
}

static void iso_bwd_data(anx_verify_report *rep, vgold *g, const anx_backend *be, int i, int threads)
{
    const anx_model *m = &g->m;
    const anx_layer_desc *l = &m->layers[i];
    char key[96];
    snprintf(key, sizeof key, "grad_out.%s", m->layers[i - 1].name);
    anx_verify_row *r = v_row(rep, g, be->name, "isolated", l->name, "bwd_data", key);
    const char *why = anx_backend_declines(be, l, ANX_BWD_DATA);
    if (why) return v_skip(r, "%s", why);
    const float *src = g->out[i - 1], *dst = g->out[i], *dy = g->gout[i];
    if (!dy) return v_skip(r, "golden input grad_out.%s is stored as a sample only", l->name);
    if (!src) return v_skip(r, "golden input out.%s is stored as a sample only", m->layers[i - 1].name);
    if (!dst) return v_skip(r, "golden input out.%s is stored as a sample only", l->name);
    vwant w;
    if (want_or_skip(r, g, key, &w, l, ANX_SRC)) return;
    size_t nd = anx_desc_plain_count(l, ANX_DST), ns = anx_desc_plain_count(l, ANX_SRC);
    void *ctx;
    anx_status st = anx_backend_layer_create(be, &ctx, l, threads);
    int p = param_of(m, i);
    anx_args a = {0};
    a.src = v_be_import(be, l, ANX_SRC, src);
    a.dst = v_be_import(be, l, ANX_DST, dst);
    a.diff_dst = v_be_import(be, l, ANX_DST, dy);
    a.diff_src = v_be_buf(be, l, ANX_SRC);
    float *maskp = NULL;
    if (p >= 0) {
        a.weights = v_be_import(be, l, ANX_WEIGHTS, g->init[p]);
        a.bias = v_be_import(be, l, ANX_BIAS, g->init[p + 1]);
    }
    if (l->op == ANX_OP_DROPOUT) {
        maskp = v_alloc(nd);
        v_mask(g, l->name, 1, maskp, nd);
        a.mask = v_be_import(be, l, ANX_DST, maskp);
    }
    if (!st) st = be->exec[l->op][ANX_BWD_DATA](ctx, l, &a);
    char failed[160] = ""; /* st's text lasts only until the next backend call (ref_run below) */
    if (st) snprintf(failed, sizeof failed, "%s", st);
    float *got = v_alloc(ns);
    be->tensor_export(l, ANX_SRC, got, a.diff_src);
    snprintf(r->impl, sizeof r->impl, "%s", impl_of(be, ctx, l, ANX_BWD_DATA));
    float *bound = NULL;
    if (p >= 0 || l->op == ANX_OP_MAXPOOL) {
        anx_args ra = {0};
        float *ady = v_alloc(nd), *M = v_alloc(ns), *aw = NULL;
        v_abs(ady, dy, nd);
        ra.diff_dst = ady, ra.diff_src = M, ra.src = (float *)src, ra.dst = (float *)dst;
        double c;
        if (p >= 0) {
            size_t nw = m->params[p].count;
            aw = v_alloc(nw);
            v_abs(aw, g->init[p], nw);
            ra.weights = aw;
            c = v_gamma(v_bwd_data_k(l)) + V_U;
        } else {
            c = 4 * V_U;
        }
        v_ref_run(l, ANX_BWD_DATA, &ra, threads);
        bound = bound_from(M, c, got, ns);
        free(ady), free(M), free(aw);
    }
    v_compare_want(r, got, &w, bound);
    if (failed[0]) v_fail_status(r, failed);
    free(bound), free(got), free(maskp);
    free(a.src), free(a.dst), free(a.diff_dst), free(a.diff_src), free(a.weights), free(a.bias);
    free((void *)a.mask);
    if (ctx) be->layer_destroy(ctx);
    vwant_free(&w);
}

static void iso_bwd_weights(anx_verify_report *rep, vgold *g, const anx_backend *be, int i, int threads)
{
    const anx_model *m = &g->m;
    const anx_layer_desc *l = &m->layers[i];
    int p = param_of(m, i);
    char key[2][96];
    anx_verify_row *r[2];
    v_reserve(rep, 2); /* both pointers stay valid */
    for (int s = 0; s < 2; s++) {
        snprintf(key[s], sizeof key[s], "grad.%s", m->params[p + s].name);
        r[s] = v_row(rep, g, be->name, "isolated", l->name, "bwd_weights", key[s]);
    }
    const char *why = anx_backend_declines(be, l, ANX_BWD_WEIGHTS);
    const float *src = i == 0 ? g->input : g->out[i - 1], *dy = g->gout[i];
    for (int s = 0; s < 2; s++) {
        if (why) v_skip(r[s], "%s", why);
        else if (!dy) v_skip(r[s], "golden input grad_out.%s is stored as a sample only", l->name);
        else if (!src) v_skip(r[s], "golden input out.%s is stored as a sample only", m->layers[i - 1].name);
    }
    if (why || !dy || !src) return;
    vwant w[2];
    if (want_or_skip(r[0], g, key[0], &w[0], l, ANX_WEIGHTS)) return;
    if (want_or_skip(r[1], g, key[1], &w[1], l, ANX_BIAS)) {
        vwant_free(&w[0]);
        return;
    }
    size_t nd = anx_desc_plain_count(l, ANX_DST), ns = anx_desc_plain_count(l, ANX_SRC);
    size_t nw = m->params[p].count, nb = m->params[p + 1].count;
    void *ctx;
    anx_status st = anx_backend_layer_create(be, &ctx, l, threads);
    anx_args a = {0};
    a.src = v_be_import(be, l, ANX_SRC, src);
    a.diff_dst = v_be_import(be, l, ANX_DST, dy);
    a.weights = v_be_import(be, l, ANX_WEIGHTS, g->init[p]);
    a.bias = v_be_import(be, l, ANX_BIAS, g->init[p + 1]);
    a.diff_weights = v_be_buf(be, l, ANX_WEIGHTS);
    a.diff_bias = v_be_buf(be, l, ANX_BIAS);
    if (!st) st = be->exec[l->op][ANX_BWD_WEIGHTS](ctx, l, &a);
    char failed[160] = ""; /* st's text lasts only until the next backend call (ref_run below) */
    if (st) snprintf(failed, sizeof failed, "%s", st);
    float *got[2] = {v_alloc(nw), v_alloc(nb)};
    be->tensor_export(l, ANX_WEIGHTS, got[0], a.diff_weights);
    be->tensor_export(l, ANX_BIAS, got[1], a.diff_bias);
    /* M = |x|^T |dy| (weights) and sum |dy| (bias) */
    anx_args ra = {0};
    float *ax = v_alloc(ns), *ady = v_alloc(nd), *Mw = v_alloc(nw), *Mb = v_alloc(nb);
    v_abs(ax, src, ns), v_abs(ady, dy, nd);
    ra.src = ax, ra.diff_dst = ady, ra.diff_weights = Mw, ra.diff_bias = Mb;
    v_ref_run(l, ANX_BWD_WEIGHTS, &ra, threads);
    double c = v_gamma((double)l->n * l->oh * l->ow) + 2 * V_U;
    float *M[2] = {Mw, Mb};
    for (int s = 0; s < 2; s++) {
        float *bound = bound_from(M[s], c, got[s], s ? nb : nw);
        snprintf(r[s]->impl, sizeof r[s]->impl, "%s", impl_of(be, ctx, l, ANX_BWD_WEIGHTS));
        v_compare_want(r[s], got[s], &w[s], bound);
        if (failed[0]) v_fail_status(r[s], failed);
        free(bound), free(got[s]), free(M[s]);
        vwant_free(&w[s]);
    }
    free(ax), free(ady);
    free(a.src), free(a.diff_dst), free(a.weights), free(a.bias), free(a.diff_weights), free(a.diff_bias);
    if (ctx) be->layer_destroy(ctx);
}

static void iso_loss(anx_verify_report *rep, vgold *g, const anx_backend *be, int threads)
{
    const anx_model *m = &g->m;
    const anx_layer_desc *l = &m->loss;
    const float *z = g->out[ANX_NUM_LAYERS - 1];
    const int n = l->n, C = l->ic;
    v_reserve(rep, 2); /* rf stays valid while rb is added */
    anx_verify_row *rf = v_row(rep, g, be->name, "isolated", l->name, "fwd", "loss");
    anx_verify_row *rb = v_row(rep, g, be->name, "isolated", l->name, "bwd_data", "grad_out.Linear-20");
    if (!z) {
        v_skip(rf, "golden logits not stored whole");
        v_skip(rb, "golden logits not stored whole");
        return;
    }
    anx_dir dirs[2] = {ANX_FWD, ANX_BWD_DATA};
    anx_verify_row *rows[2] = {rf, rb};
    for (int k = 0; k < 2; k++) {
        anx_verify_row *r = rows[k];
        const char *why = anx_backend_declines(be, l, dirs[k]);
        if (why) {
            v_skip(r, "%s", why);
            continue;
        }
        vwant w;
        if (want_or_skip(r, g, k ? "grad_out.Linear-20" : "loss", &w, l, ANX_SRC)) continue;
        void *ctx;
        anx_status st = anx_backend_layer_create(be, &ctx, l, threads);
        anx_args a = {0};
        float loss = NAN;
        a.src = v_be_import(be, l, ANX_SRC, z);
        a.target = g->target;
        a.loss = &loss;
        a.diff_src = v_be_buf(be, l, ANX_SRC);
        if (!st) st = be->exec[l->op][dirs[k]](ctx, l, &a);
        char failed[160] = "";
        if (st) snprintf(failed, sizeof failed, "%s", st);
        snprintf(r->impl, sizeof r->impl, "%s", impl_of(be, ctx, l, dirs[k]));
        double zmax = 0;
        for (int i = 0; i < n * C; i++) zmax = fmax(zmax, fabs(z[i]));
        if (k == 0) {
            float bound = (float)((C + 10) * V_U * (zmax + fabs(loss)));
            w.ndim = 0;
            v_compare_want(r, &loss, &w, &bound);
        } else {
            float *got = v_alloc((size_t)n * C), *bound = v_alloc((size_t)n * C);
            be->tensor_export(l, ANX_SRC, got, a.diff_src);
            for (int s = 0; s < n; s++) {
                double rowmax = 0;
                for (int c = 0; c < C; c++) rowmax = fmax(rowmax, fabs(z[s * C + c]));
                for (int c = 0; c < C; c++) {
                    double gv = got[s * C + c];
                    double pr = fabs(gv * n + (c == g->target[s])) + V_U; /* softmax p from the result */
                    bound[s * C + c] = (float)((((C + 6) * V_U + 2 * V_U * rowmax) * pr / n + 2 * V_U * fabs(gv)) * 1.001);
                }
            }
            w.ndim = 2, w.shape[0] = n, w.shape[1] = C;
            v_compare_want(r, got, &w, bound);
            free(got), free(bound);
        }
        if (failed[0]) v_fail_status(r, failed);
        free(a.src), free(a.diff_src);
        if (ctx) be->layer_destroy(ctx);
        vwant_free(&w);
    }
}

/* ---- Adam ---------------------------------------------------------------------------------- */

/* update(m, v) = lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps) */
static double adam_upd(double m, double v, double lr, double bc1, double bc2, double eps)
{
    return lr / bc1 * m / (sqrt(v > 0 ? v : 0) / sqrt(bc2) + eps);
}

/* Bounds for one Adam update against the exact float64 trajectory (PyTorch's double
 * hyperparameters `gold`), evaluated at the backend's inputs in double:
 *   propagated  dm = b1 dm0 + (1-b1) dg,  dv = b2 dv0 + (1-b2)(2|g| dg + dg^2);
 *               d(update): at t = 1 (dm0 = dv0 = 0) update = f(g) is monotone in g, so
 *               max |f(g +- dg) - f(g)| is exact; later, update is monotone in m and in v
 *               separately, so the largest change sits on a corner of the box m +- dm, v +- dv.
 *   rounding    float32 ops on float32 inputs: m' 4u(b1|m0| + (1-b1)|g|) (2 products, an add,
 *               the rounding of g); v' 6u(b2 v0 + (1-b2) g^2); update 14u|update| (m' 4u,
 *               sqrt(v') 3u+u, /sqrt(bc2) u, +eps u, step size u, divide u, multiply u, slack);
 *               p' = p - update: u|p'|.
 *   hyperparameters  the backend gets float32 lr, betas, eps (anx_adam_hparams): the difference
 *               between the float64 update with those and with PyTorch's is added as is
 *               (1 - (double)0.999f differs from 0.001 by 1.3e-5 relative: ~200 ulps of v').
 * Step-1 Adam makes update ~ lr sign(g) where |g| >> eps: where |g| <= dg the sign is unknown
 * and the bound on p' is ~2 lr, as it must be.
 * The box corners treat m and v as unrelated, but both come from the same gradients: by
 * Cauchy-Schwarz |m_t| <= (1-b1) sqrt(S_t v_t / (1-b2)), S_t = sum_{j<t} (b1^2/b2)^j, so every
 * update (the golden's and the backend's) is within U_t = lr/bc1 (1-b1) sqrt(S_t bc2/(1-b2))
 * (U_1 = lr) and d(update) <= 2 U_t (1 + 1e-3; the backend's float32 ops) caps the corners. */
void v_adam_bounds(double *dp, double *dm, double *dv, const float *p0, const float *g, const float *m0,
                   const float *v0, const double *dp0, const double *dg, const double *dm0, const double *dv0,
                   size_t n, int64_t t, const v_adam_hp *G, const v_adam_hp *B)
{
    const double u = V_U;
    const double gbc1 = 1 - pow(G->beta1, (double)t), gbc2 = 1 - pow(G->beta2, (double)t);
    const double bbc1 = 1 - pow(B->beta1, (double)t), bbc2 = 1 - pow(B->beta2, (double)t);
    double S = 0;
    for (int64_t j = 0; j < t; j++) S += pow(G->beta1 * G->beta1 / G->beta2, (double)j);
    const double umax = G->lr / gbc1 * (1 - G->beta1) * sqrt(S * gbc2 / (1 - G->beta2));
    /* each element on its own: threads cannot change a bit (62M parameters make this worth it) */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double gi = g[i], mi0 = m0[i], vi0 = v0[i];
        double m = G->beta1 * mi0 + (1 - G->beta1) * gi, v = G->beta2 * vi0 + (1 - G->beta2) * gi * gi;
        double mB = B->beta1 * mi0 + (1 - B->beta1) * gi, vB = B->beta2 * vi0 + (1 - B->beta2) * gi * gi;
        double up = adam_upd(m, v, G->lr, gbc1, gbc2, G->eps), upB = adam_upd(mB, vB, B->lr, bbc1, bbc2, B->eps);
        double dmp = G->beta1 * dm0[i] + (1 - G->beta1) * dg[i];
        double dvp = G->beta2 * dv0[i] + (1 - G->beta2) * (2 * fabs(gi) * dg[i] + dg[i] * dg[i]);
        double dup = 0;
        if (dm0[i] == 0 && dv0[i] == 0 && mi0 == 0 && vi0 == 0) {
            for (int s = -1; s <= 1; s += 2) {
                double gg = gi + s * dg[i];
                double f = adam_upd((1 - G->beta1) * gg, (1 - G->beta2) * gg * gg, G->lr, gbc1, gbc2, G->eps);
                dup = fmax(dup, fabs(f - up));
            }
        } else {
            for (int sm = -1; sm <= 1; sm += 2)
                for (int sv = -1; sv <= 1; sv += 2)
                    dup = fmax(dup, fabs(adam_upd(m + sm * dmp, v + sv * dvp, G->lr, gbc1, gbc2, G->eps) - up));
        }
        dup = fmin(dup, 2 * umax * 1.001);
        dm[i] = dmp + 4 * u * (G->beta1 * fabs(mi0) + (1 - G->beta1) * fabs(gi)) + fabs(mB - m);
        dv[i] = dvp + 6 * u * (G->beta2 * fabs(vi0) + (1 - G->beta2) * gi * gi) + fabs(vB - v);
        dp[i] = dp0[i] + dup + 14 * u * fabs(up) + fabs(upB - up) + u * fabs(p0[i] - up);
    }
}

/* Gathers a parameter tensor at the indices of w (all when whole). */
static void gather(float *dst, const float *src, const vwant *w)
{
    for (size_t i = 0; i < w->n; i++) dst[i] = src[w->idx ? (size_t)w->idx[i] : i];
}

static int same_index(const vwant *a, const vwant *b)
{
    if (a->n != b->n || (!a->idx) != (!b->idx)) return 0;
    return !a->idx || memcmp(a->idx, b->idx, a->n * sizeof *a->idx) == 0;
}

/* Adam t = 1..steps on the stored (sampled) elements: init regenerated, the golden gradient of
 * every step fed in, state after the last step compared.  Catches bias correction beyond t = 1. */
static void iso_adam(anx_verify_report *rep, vgold *g, const anx_backend *be, int threads)
{
    const anx_model *m = &g->m;
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &m->params[p];
        const anx_layer_desc *l = &m->layers[pi->layer];
        char key[3][96];
        snprintf(key[0], sizeof key[0], "%s", pi->name);
        snprintf(key[1], sizeof key[1], "adam.exp_avg.%s", pi->name);
        snprintf(key[2], sizeof key[2], "adam.exp_avg_sq.%s", pi->name);
        anx_verify_row *r[3];
        vwant w[3], gw[8];
        int nw = 0, ng = 0, bad = 0;
        v_reserve(rep, 3); /* the three pointers stay valid */
        for (int k = 0; k < 3; k++) r[k] = v_row(rep, g, be->name, "isolated", "Adam", "update", key[k]);
        if (!be->adam) {
            for (int k = 0; k < 3; k++) v_skip(r[k], "backend has no Adam");
            continue;
        }
        for (; nw < 3 && !bad; nw++) bad = want_or_skip(r[nw], g, key[nw], &w[nw], l, pi->slot);
        if (bad) nw--;
        for (int t = 1; t <= g->steps && t <= 8 && !bad; t++, ng++) {
            char gk[96];
            if (g->steps == 1)
                snprintf(gk, sizeof gk, "grad.%s", pi->name);
            else
                snprintf(gk, sizeof gk, "step%d.grad.%s", t, pi->name);
            bad = want_or_skip(r[0], g, gk, &gw[ng], l, pi->slot);
            if (bad) ng--;
        }
        for (int k = 1; k < nw && !bad; k++) bad = !same_index(&w[0], &w[k]);
        for (int k = 0; k < ng && !bad; k++) bad = !same_index(&w[0], &gw[k]);
        if (bad || nw < 3) {
            for (int k = 0; k < 3; k++)
                if (r[k]->verdict == ANX_SKIPPED && !r[k]->reason[0]) v_skip(r[k], "golden samples of %s do not line up", pi->name);
        } else {
            size_t n = w[0].n;
            float *pp = v_alloc(n), *mm = v_alloc(n), *vv = v_alloc(n), *pprev = v_alloc(n), *mprev = v_alloc(n),
                  *vprev = v_alloc(n);
            double *dp = calloc(n, sizeof *dp), *dm = calloc(n, sizeof *dm), *dv = calloc(n, sizeof *dv),
                   *dg = calloc(n, sizeof *dg);
            if (!dp || !dm || !dv || !dg) v_oom("the Adam bounds", 4 * n * sizeof *dp);
            gather(pp, g->init[p], &w[0]);
            anx_adam_hparams hp = {(float)g->hp.lr, (float)g->hp.beta1, (float)g->hp.beta2, (float)g->hp.eps, 1};
            v_adam_hp hb = {hp.lr, hp.beta1, hp.beta2, hp.eps};
            for (int t = 1; t <= ng; t++) {
                memcpy(pprev, pp, n * sizeof *pp), memcpy(mprev, mm, n * sizeof *mm), memcpy(vprev, vv, n * sizeof *vv);
                hp.step = t;
                be->adam(pp, gw[t - 1].val, mm, vv, n, &hp, threads);
                for (size_t i = 0; i < n; i++) dg[i] = V_U * fabs(gw[t - 1].val[i]); /* g = f32(g64) */
                v_adam_bounds(dp, dm, dv, pprev, gw[t - 1].val, mprev, vprev, dp, dg, dm, dv, n, t, &g->hp, &hb);
            }
            float *res[3] = {pp, mm, vv};
            double *bd[3] = {dp, dm, dv};
            for (int k = 0; k < 3; k++) {
                float *b = v_alloc(n);
                for (size_t i = 0; i < n; i++) b[i] = (float)((bd[k][i] + V_U * fabs(res[k][i]) * 2) * (1 + 1e-6));
                double *bb = malloc(n * sizeof *bb);
                if (!bb) v_oom("the Adam bound", n * sizeof *bb);
                for (size_t i = 0; i < n; i++) bb[i] = b[i];
                /* got, want and bound are compact here; idx maps them back for the report */
                anx_verify_compare(r[k], res[k], w[k].val, bb, n, w[k].idx, w[k].shape, w[k].ndim);
                snprintf(r[k]->impl, sizeof r[k]->impl, "adam t=1..%d", ng);
                free(bb), free(b);
            }
            free(pp), free(mm), free(vv), free(pprev), free(mprev), free(vprev);
            free(dp), free(dm), free(dv), free(dg);
        }
        for (int k = 0; k < nw; k++) vwant_free(&w[k]);
        for (int k = 0; k < ng; k++) vwant_free(&gw[k]);
    }
}

void v_isolated(anx_verify_report *rep, vgold *g, const anx_backend *be, const anx_verify_opts *o)
{
    const anx_model *m = &g->m;
    const char *only = o->layer;
    if (g->steps == 1) {
        for (int i = 0; i < ANX_NUM_LAYERS; i++) {
            const anx_layer_desc *l = &m->layers[i];
            if (only && strcmp(only, l->name)) continue;
            if (o->log) fprintf(o->log, "verify %s isolated %s %s\n", be->name, g->base, l->name);
            iso_fwd(rep, g, be, i, o->threads);
            if (i > 0) iso_bwd_data(rep, g, be, i, o->threads);
            if (anx_desc_has_weights(l)) iso_bwd_weights(rep, g, be, i, o->threads);
        }
        if (!only || !strcmp(only, "CrossEntropyLoss")) iso_loss(rep, g, be, o->threads);
    }
    if (!only || !strcmp(only, "Adam")) iso_adam(rep, g, be, o->threads);
}
