/* anx verify, chained mode: the whole training step on one backend from the seed (init, input,
 * targets, dropout masks), every layer's output, output gradient, parameter gradient and the
 * Adam state compared with the golden.
 *
 * Bounds through the depth.  A worst-case first-order propagation (|W| d[x]) grows by about
 * sqrt(K)/2 per layer (every error assumed to have the sign that hurts): 30-50x per layer, 1e7
 * at the logits, a bound that would pass anything.  So errors are propagated with the same model
 * as the accumulation bound of one layer (Higham & Mary): the errors reaching an output are
 * independent and mean-zero, each within its bound b_k, and by Hoeffding
 *     |sum_k w_k e_k| <= lambda sqrt(sum_k w_k^2 b_k^2 / lambda^2)     (lambda = 8, verify.c)
 * Each element carries a scale s = bound / lambda; the comparison allows lambda s + u|want|:
 *
 *   conv2d / linear fwd    s[y]^2  = (gamma~(K+1) conv(|x|,|W|) / lambda)^2 + conv(s[x]^2, W^2)
 *   bwd_data               s[dx]^2 = (gamma~(K_bd) bwd_data(|dy|,|W|) / lambda)^2 + bwd_data(s[dy]^2, W^2)
 *   bwd_weights            s[dW]^2 = (gamma~(n oh ow) bwd_w(|x|,|dy|) / lambda)^2 + bwd_w(x^2, s[dy]^2)
 *                                    + bwd_w(s[x]^2, dy^2 + s[dy]^2);  bias: + sum s[dy]^2
 *   relu fwd, dropout      s[y] = s[x], mask * s[x] (exact ops)
 *   maxpool fwd            s[y] = max of s[x] over the window (the max is 1-Lipschitz)
 *   relu bwd               gate surely open (x > lambda s[x]): s[dy]; surely closed: 0; else the
 *                          golden may gate otherwise: a worst-case error (|dy| + lambda s[dy])
 *   maxpool bwd            the golden's winner is any j with x_j + lambda s_j >= max_k (x_k - lambda s_k);
 *                          one candidate: s[dy] goes to it (in quadrature); several: each gets the
 *                          worst case |dy| + lambda s[dy] (added linearly)
 *   loss                   bound(loss) = mean_n 2 lambda max_c s[z_nc] + (C + 10) u (max|z| + |loss|)
 *                          bound(dz_nc) = (exp(2 lambda max_c s[z_nc]) - 1 + (C + 6) u) p_nc / n
 *   Adam                   v_adam_bounds with dg = lambda s[dW]: where |g| <= dg the sign of the
 *                          step is unknown and ~2 lr is allowed there, as it must be.
 * The magnitudes are the backend's own values (the golden is not stored whole everywhere): the
 * rounding of a layer is bounded by its actual inputs, and the golden lies within the bound of
 * them.  A wrong kernel still fails at the first layer it touches: its inputs are right there.
 * Squares are formed scaled by 2^30 (float32 kernels; avoids underflow of tiny gradients).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/net.h"
#include "core/verify_internal.h"

static int param_of(const anx_model *m, int layer)
{
    for (int p = 0; p < ANX_NUM_PARAMS; p += 2)
        if (m->params[p].layer == layer) return p;
    return -1;
}

typedef struct chain {
    anx_verify_report *rep;
    vgold *g;
    const anx_backend *be;
    const anx_verify_opts *o;
    anx_net *net;
} chain;

static int wanted(const chain *c, const char *layer)
{
    return !c->o->layer || strcmp(c->o->layer, layer) == 0;
}

/* compare got with golden key, allowing lambda s + u|want| (u|got| + u bound stands in for u|want|);
 * scale == 0 means d holds bounds already */
static void cmp(chain *c, const char *layer, const char *dir, const char *key, const float *got, const float *d,
                size_t n, const anx_layer_desc *l, anx_slot slot, double scale)
{
    if (!wanted(c, layer)) return;
    anx_verify_row *r = v_row(c->rep, c->g, c->be->name, "chained", layer, dir, key);
    vwant w;
    if (vgold_want(c->g, key, &w)) return v_skip(r, "golden file lacks %s", key);
    if (w.idx && l) w.ndim = v_slot_shape(l, slot, w.shape);
    float *b = v_alloc(n);
    for (size_t i = 0; i < n; i++) {
        double bd = scale > 0 ? scale * d[i] : d[i];
        b[i] = (float)((bd * (1 + V_U) + 2 * V_U * fabs(got[i])) * (1 + 1e-6));
    }
    v_compare_want(r, got, &w, b);
    free(b);
    vwant_free(&w);
}

static void add_to(float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

#define V_LAMBDA_CHAIN 8.0 /* lambda of verify.c's v_gamma */
#define LAM V_LAMBDA_CHAIN
#define SQ_SCALE 1073741824.0 /* 2^30 */

static float *sq_scaled(const float *x, size_t n)
{
    float *y = v_alloc(n);
    for (size_t i = 0; i < n; i++) y[i] = (float)((double)x[i] * SQ_SCALE * ((double)x[i] * SQ_SCALE));
    return y;
}

static float *sq(const float *x, size_t n)
{
    float *y = v_alloc(n);
    for (size_t i = 0; i < n; i++) y[i] = x[i] * x[i];
    return y;
}

/* s = sqrt(r^2 + P / 2^60), r = gamma M / lambda */
static void combine(float *s, const float *M, double gam, const float *P, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double r = gam * M[i] / V_LAMBDA_CHAIN, q = P ? P[i] / (SQ_SCALE * SQ_SCALE) : 0.0;
        s[i] = (float)sqrt(r * r + q);
    }
}

/* The layer's parameters as this step sees them: W, b plain, with scales sW, sb (NULL: exact) */
typedef struct lparams {
    const float *W, *b, *sW, *sb;
} lparams;

/* s[y] of forward layer i from s[x] (NULL: x exact) */
static float *fwd_scale(chain *c, int i, const float *x, const float *sx, const float *mask, const lparams *lp)
{
    const anx_model *m = &c->g->m;
    const anx_layer_desc *l = &m->layers[i];
    size_t ns = anx_desc_plain_count(l, ANX_SRC), nd = anx_desc_plain_count(l, ANX_DST);
    float *d = v_alloc(nd);
    int p = param_of(m, i), th = c->o->threads;
    switch (l->op) {
    case ANX_OP_CONV2D:
    case ANX_OP_LINEAR: {
        size_t nw = m->params[p].count, nb = m->params[p + 1].count;
        float *ax = v_alloc(ns), *aw = v_alloc(nw), *ab = v_alloc(nb), *M = v_alloc(nd), *P = NULL;
        v_abs(ax, x, ns), v_abs(aw, lp->W, nw), v_abs(ab, lp->b, nb);
        anx_args a = {0};
        a.src = ax, a.weights = aw, a.bias = ab, a.dst = M;
        v_ref_run(l, ANX_FWD, &a, th);
        if (sx || lp->sW) P = v_alloc(nd);
        if (sx) { /* conv(s[x]^2, W^2) */
            float *w2 = sq(lp->W, nw), *s2 = sq_scaled(sx, ns), *zb = v_alloc(nb), *Q = v_alloc(nd);
            anx_args b = {0};
            b.src = s2, b.weights = w2, b.bias = zb, b.dst = Q;
            v_ref_run(l, ANX_FWD, &b, th);
            add_to(P, Q, nd);
            free(w2), free(s2), free(zb), free(Q);
        }
        if (lp->sW) { /* conv(x^2, s[W]^2) + s[b]^2 */
            float *x2 = sq(x, ns), *sw2 = sq_scaled(lp->sW, nw), *sb2 = sq_scaled(lp->sb, nb), *Q = v_alloc(nd);
            anx_args b = {0};
            b.src = x2, b.weights = sw2, b.bias = sb2, b.dst = Q;
            v_ref_run(l, ANX_FWD, &b, th);
            add_to(P, Q, nd);
            free(x2), free(sw2), free(sb2), free(Q);
        }
        combine(d, M, v_gamma((double)l->ic * l->kh * l->kw + 1), P, nd);
        free(ax), free(aw), free(ab), free(M), free(P);
        break;
    }
    case ANX_OP_RELU: memcpy(d, sx, nd * sizeof *d); break;
    case ANX_OP_DROPOUT:
        for (size_t k = 0; k < nd; k++) d[k] = mask[k] * sx[k];
        break;
    case ANX_OP_MAXPOOL: {
        anx_args a = {0};
        a.src = (float *)sx, a.dst = d;
        v_ref_run(l, ANX_FWD, &a, th);
        break;
    }
    default: break;
    }
    return d;
}

/* s[dx] of layer i's bwd_data (relu / pool / dropout / conv / linear) */
static float *bwd_scale(chain *c, int i, const float *x, const float *sx, const float *dy, const float *sdy,
                        const float *mask, const lparams *lp)
{
    const anx_model *m = &c->g->m;
    const anx_layer_desc *l = &m->layers[i];
    const double lam = V_LAMBDA_CHAIN;
    size_t ns = anx_desc_plain_count(l, ANX_SRC), nd = anx_desc_plain_count(l, ANX_DST);
    float *d = v_alloc(ns);
    int p = param_of(m, i);
    switch (l->op) {
    case ANX_OP_CONV2D:
    case ANX_OP_LINEAR: {
        size_t nw = m->params[p].count;
        float *aw = v_alloc(nw), *ady = v_alloc(nd), *M = v_alloc(ns), *P = v_alloc(ns);
        v_abs(aw, lp->W, nw), v_abs(ady, dy, nd);
        anx_args a = {0};
        a.weights = aw, a.diff_dst = ady, a.diff_src = M;
        v_ref_run(l, ANX_BWD_DATA, &a, c->o->threads);
        float *w2 = sq(lp->W, nw), *s2 = sq_scaled(sdy, nd);
        a.weights = w2, a.diff_dst = s2, a.diff_src = P;
        v_ref_run(l, ANX_BWD_DATA, &a, c->o->threads); /* bwd_data(s[dy]^2, W^2) */
        if (lp->sW) { /* + bwd_data(dy^2, s[W]^2) */
            float *dy2 = sq(dy, nd), *sw2 = sq_scaled(lp->sW, nw), *Q = v_alloc(ns);
            a.weights = sw2, a.diff_dst = dy2, a.diff_src = Q;
            v_ref_run(l, ANX_BWD_DATA, &a, c->o->threads);
            add_to(P, Q, ns);
            free(dy2), free(sw2), free(Q);
        }
        combine(d, M, v_gamma(v_bwd_data_k(l)), P, ns);
        free(aw), free(ady), free(M), free(P), free(w2), free(s2);
        break;
    }
    case ANX_OP_RELU:
        for (size_t k = 0; k < ns; k++)
            d[k] = x[k] > lam * sx[k] ? sdy[k] : (x[k] < -lam * sx[k] ? 0.0f : (float)((fabsf(dy[k]) + lam * sdy[k]) / lam));
        break;
    case ANX_OP_DROPOUT:
        for (size_t k = 0; k < ns; k++) d[k] = mask[k] * sdy[k];
        break;
    case ANX_OP_MAXPOOL: {
        double *q = calloc(ns, sizeof *q), *lin = calloc(ns, sizeof *lin);
        if (!q || !lin) v_oom("the max-pool bound", 2 * ns * sizeof *q);
        for (int n = 0; n < l->n; n++)
            for (int ch = 0; ch < l->ic; ch++) {
                size_t pin = ((size_t)n * l->ic + ch) * l->ih * l->iw, pout = ((size_t)n * l->oc + ch) * l->oh * l->ow;
                for (int oy = 0; oy < l->oh; oy++)
                    for (int ox = 0; ox < l->ow; ox++) {
                        double lo = -INFINITY;
                        size_t o = pout + (size_t)oy * l->ow + ox, last = 0;
                        for (int ky = 0; ky < l->kh; ky++)
                            for (int kx = 0; kx < l->kw; kx++) {
                                size_t j = pin + (size_t)(oy * l->stride + ky) * l->iw + (size_t)(ox * l->stride + kx);
                                lo = fmax(lo, (double)x[j] - lam * sx[j]);
                            }
                        int cand = 0;
                        for (int pass = 0; pass < 2; pass++)
                            for (int ky = 0; ky < l->kh; ky++)
                                for (int kx = 0; kx < l->kw; kx++) {
                                    size_t j = pin + (size_t)(oy * l->stride + ky) * l->iw + (size_t)(ox * l->stride + kx);
                                    if ((double)x[j] + lam * sx[j] < lo) continue;
                                    if (pass == 0) cand++, last = j;
                                    else if (cand > 1) lin[j] += (fabs(dy[o]) + lam * sdy[o]) / lam;
                                }
                        if (cand == 1) q[last] += (double)sdy[o] * sdy[o];
                    }
            }
        for (size_t k = 0; k < ns; k++) d[k] = (float)(sqrt(q[k]) + lin[k]);
        free(q), free(lin);
        break;
    }
    default: break;
    }
    return d;
}

/* Golden key of step t: the one-step file has DESIGN.md's keys, the multi-step file prefixes the
 * per-step ones ("step2.grad.fc.0.weight"). */
static void step_key(char *dst, size_t cap, const vgold *g, int t, const char *key)
{
    if (g->steps == 1)
        snprintf(dst, cap, "%s", key);
    else
        snprintf(dst, cap, "step%d.%s", t, key);
}

/* Scales of the parameters and Adam state against the exact trajectory, whole, per parameter
 * (NULL before the first update: exact init, zero state). */
typedef struct pscale {
    float *p[ANX_NUM_PARAMS], *m[ANX_NUM_PARAMS], *v[ANX_NUM_PARAMS];
} pscale;

/* One training step t on the net with bounds; fills ps with the scales after the update.
 * 0, or -1 when the net could not run the step (anx_net_error says why). */
static int chain_step(chain *c, int t, pscale *ps)
{
    vgold *g = c->g;
    const anx_model *m = &g->m;
    const anx_verify_opts *o = c->o;
    anx_net *net = c->net;
    const int last = t == g->steps, full = g->steps == 1; /* full: every layer's tensors are golden */
    char key[128], k2[96];
    float *W[ANX_NUM_PARAMS];
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        W[p] = v_alloc(m->params[p].count);
        anx_net_get_state(net, ANX_PARAM, p, W[p]);
    }
    float loss;
    if (anx_net_forward(net, 1, &loss) || anx_net_backward(net)) {
        for (int p = 0; p < ANX_NUM_PARAMS; p++) free(W[p]);
        return -1;
    }

    float *act[ANX_NUM_LAYERS], *gact[ANX_NUM_LAYERS], *d[ANX_NUM_LAYERS], *dd[ANX_NUM_LAYERS], *mask[ANX_NUM_LAYERS];
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        size_t nd = anx_desc_plain_count(l, ANX_DST);
        act[i] = v_alloc(nd), gact[i] = v_alloc(nd), mask[i] = NULL, dd[i] = NULL;
        anx_net_get_activation(net, i, 0, act[i]);
        anx_net_get_activation(net, i, 1, gact[i]);
        if (l->op == ANX_OP_DROPOUT) {
            mask[i] = v_alloc(nd);
            anx_net_get_mask(net, i, mask[i]);
            snprintf(k2, sizeof k2, "mask.%s", l->name);
            step_key(key, sizeof key, g, t, k2);
            float *zero = v_alloc(nd);
            cmp(c, l->name, "fwd", key, mask[i], zero, nd, l, ANX_DST, 0);
            free(zero);
        }
    }
    lparams lp[ANX_NUM_LAYERS] = {{0}};
    for (int p = 0; p < ANX_NUM_PARAMS; p += 2) {
        int i = m->params[p].layer;
        lp[i].W = W[p], lp[i].b = W[p + 1], lp[i].sW = ps->p[p], lp[i].sb = ps->p[p + 1];
    }
    /* forward */
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        d[i] = fwd_scale(c, i, i ? act[i - 1] : g->input, i ? d[i - 1] : NULL, mask[i], &lp[i]);
        snprintf(key, sizeof key, "out.%s", l->name);
        if (full) cmp(c, l->name, "fwd", key, act[i], d[i], anx_desc_plain_count(l, ANX_DST), l, ANX_DST, LAM);
    }
    /* loss */
    const anx_layer_desc *ll = &m->loss;
    const int n = ll->n, C = ll->ic;
    const float *z = act[ANX_NUM_LAYERS - 1], *dz = d[ANX_NUM_LAYERS - 1];
    {
        double dl = 0, zmax = 0;
        for (int s = 0; s < n; s++) {
            double dm = 0;
            for (int k = 0; k < C; k++) dm = fmax(dm, dz[s * C + k]), zmax = fmax(zmax, fabs(z[s * C + k]));
            dl += 2 * LAM * dm / n;
        }
        float b = (float)(dl + (C + 10) * V_U * (zmax + fabs(loss)));
        step_key(key, sizeof key, g, t, "loss");
        cmp(c, ll->name, "fwd", key, &loss, &b, 1, NULL, ANX_SRC, 0);
        float *g19 = gact[ANX_NUM_LAYERS - 1];
        dd[ANX_NUM_LAYERS - 1] = v_alloc((size_t)n * C);
        for (int s = 0; s < n; s++) {
            double dm = 0;
            for (int k = 0; k < C; k++) dm = fmax(dm, dz[s * C + k]);
            for (int k = 0; k < C; k++) {
                double pr = fabs((double)g19[s * C + k] * n + (k == g->target[s])) + V_U;
                dd[ANX_NUM_LAYERS - 1][s * C + k] = (float)((expm1(2 * LAM * dm) + (C + 6) * V_U) * pr / n / LAM);
            }
        }
    }
    /* backward */
    float *sg[ANX_NUM_PARAMS] = {0}; /* scales of the parameter gradients, whole */
    for (int i = ANX_NUM_LAYERS - 1; i >= 0; i--) {
        const anx_layer_desc *l = &m->layers[i];
        snprintf(key, sizeof key, "grad_out.%s", l->name);
        if (full)
            cmp(c, i == ANX_NUM_LAYERS - 1 ? ll->name : m->layers[i + 1].name, "bwd_data", key, gact[i], dd[i],
                anx_desc_plain_count(l, ANX_DST), l, ANX_DST, LAM);
        const float *x = i ? act[i - 1] : g->input;
        size_t ns = anx_desc_plain_count(l, ANX_SRC), nd = anx_desc_plain_count(l, ANX_DST);
        const float *dx = i ? d[i - 1] : NULL;
        int p = param_of(m, i);
        if (p >= 0) {
            size_t nw = m->params[p].count, nb = m->params[p + 1].count;
            float *ax = v_alloc(ns), *ady = v_alloc(nd), *Mw = v_alloc(nw), *Mb = v_alloc(nb), *Pw = v_alloc(nw),
                  *Pb = v_alloc(nb), *Qw = v_alloc(nw), *Qb = v_alloc(nb);
            v_abs(ax, x, ns), v_abs(ady, gact[i], nd);
            anx_args a = {0};
            a.src = ax, a.diff_dst = ady, a.diff_weights = Mw, a.diff_bias = Mb;
            v_ref_run(l, ANX_BWD_WEIGHTS, &a, o->threads); /* M = |x|^T |dy| */
            float *x2 = sq(x, ns), *sdy2 = sq_scaled(dd[i], nd);
            a.src = x2, a.diff_dst = sdy2, a.diff_weights = Pw, a.diff_bias = Pb; /* x^2 s[dy]^2; bias: sum s[dy]^2 */
            v_ref_run(l, ANX_BWD_WEIGHTS, &a, o->threads);
            if (dx) {
                float *sx2 = sq_scaled(dx, ns), *dy2 = v_alloc(nd);
                for (size_t k = 0; k < nd; k++) dy2[k] = gact[i][k] * gact[i][k] + dd[i][k] * dd[i][k];
                a.src = sx2, a.diff_dst = dy2, a.diff_weights = Qw, a.diff_bias = Qb; /* s[x]^2 (dy^2 + s[dy]^2) */
                v_ref_run(l, ANX_BWD_WEIGHTS, &a, o->threads);
                add_to(Pw, Qw, nw);
                free(sx2), free(dy2);
            }
            double gam = v_gamma((double)l->n * l->oh * l->ow);
            combine(Mw, Mw, gam, Pw, nw);
            combine(Mb, Mb, gam, Pb, nb);
            free(ax), free(ady), free(Pw), free(Pb), free(Qw), free(Qb), free(x2), free(sdy2);
            float *gw = v_alloc(nw), *gb = v_alloc(nb);
            anx_net_get_state(net, ANX_GRAD, p, gw);
            anx_net_get_state(net, ANX_GRAD, p + 1, gb);
            snprintf(k2, sizeof k2, "grad.%s", m->params[p].name);
            step_key(key, sizeof key, g, t, k2);
            cmp(c, l->name, "bwd_weights", key, gw, Mw, nw, l, ANX_WEIGHTS, LAM);
            snprintf(k2, sizeof k2, "grad.%s", m->params[p + 1].name);
            step_key(key, sizeof key, g, t, k2);
            cmp(c, l->name, "bwd_weights", key, gb, Mb, nb, l, ANX_BIAS, LAM);
            free(gw), free(gb);
            sg[p] = Mw, sg[p + 1] = Mb;
        }
        if (i) dd[i - 1] = bwd_scale(c, i, x, dx, gact[i], dd[i], mask[i], &lp[i]);
    }
    for (int i = 0; i < ANX_NUM_LAYERS; i++) free(act[i]), free(gact[i]), free(d[i]), free(dd[i]), free(mask[i]);

    /* Adam bounds from the state before the update (element-wise, in chunks) */
    const v_adam_hp hb = {(float)g->hp.lr, 0.9f, 0.999f, 1e-8f};
    enum { CH = 1 << 16 };
    double *bp = malloc(CH * sizeof *bp), *bm = malloc(CH * sizeof *bm), *bv = malloc(CH * sizeof *bv),
           *dp0 = malloc(CH * sizeof *dp0), *dm0 = malloc(CH * sizeof *dm0), *dv0 = malloc(CH * sizeof *dv0),
           *dg = malloc(CH * sizeof *dg);
    if (!bp || !bm || !bv || !dp0 || !dm0 || !dv0 || !dg) v_oom("the Adam bounds", 7 * CH * sizeof *bp);
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        size_t cnt = m->params[p].count;
        float *gr = v_alloc(cnt), *m0 = v_alloc(cnt), *v0 = v_alloc(cnt);
        anx_net_get_state(net, ANX_GRAD, p, gr);
        anx_net_get_state(net, ANX_EXP_AVG, p, m0);
        anx_net_get_state(net, ANX_EXP_AVG_SQ, p, v0);
        float *np_ = v_alloc(cnt), *nm = v_alloc(cnt), *nv = v_alloc(cnt);
        for (size_t off = 0; off < cnt; off += CH) {
            size_t k = cnt - off < CH ? cnt - off : CH;
            for (size_t q = 0; q < k; q++) {
                size_t j = off + q;
                dp0[q] = ps->p[p] ? LAM * ps->p[p][j] : 0;
                dm0[q] = ps->m[p] ? LAM * ps->m[p][j] : 0;
                dv0[q] = ps->v[p] ? LAM * ps->v[p][j] : 0;
                dg[q] = LAM * sg[p][j];
            }
            v_adam_bounds(bp, bm, bv, W[p] + off, gr + off, m0 + off, v0 + off, dp0, dg, dm0, dv0, k, t, &g->hp, &hb);
            for (size_t q = 0; q < k; q++)
                np_[off + q] = (float)(bp[q] / LAM), nm[off + q] = (float)(bm[q] / LAM), nv[off + q] = (float)(bv[q] / LAM);
        }
        free(ps->p[p]), free(ps->m[p]), free(ps->v[p]);
        ps->p[p] = np_, ps->m[p] = nm, ps->v[p] = nv;
        free(gr), free(m0), free(v0), free(sg[p]), free(W[p]);
    }
    free(bp), free(bm), free(bv), free(dp0), free(dm0), free(dv0), free(dg);
    anx_net_adam(net, (float)g->hp.lr);

    if (!last || (o->layer && strcmp(o->layer, "Adam"))) return 0;
    /* the state after the last update */
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &m->params[p];
        const anx_layer_desc *l = &m->layers[pi->layer];
        const anx_state which[3] = {ANX_PARAM, ANX_EXP_AVG, ANX_EXP_AVG_SQ};
        const char *pre[3] = {"", "adam.exp_avg.", "adam.exp_avg_sq."};
        float *sc[3] = {ps->p[p], ps->m[p], ps->v[p]};
        float *st = v_alloc(pi->count);
        for (int k = 0; k < 3; k++) {
            anx_net_get_state(net, which[k], p, st);
            snprintf(key, sizeof key, "%s%s", pre[k], pi->name);
            cmp(c, "Adam", "update", key, st, sc[k], pi->count, l, pi->slot, LAM);
            anx_verify_row *r = &c->rep->rows[c->rep->count - 1];
            snprintf(r->impl, sizeof r->impl, "adam t=1..%d", g->steps);
        }
        free(st);
    }
    return 0;
}

void v_chained(anx_verify_report *rep, vgold *g, const anx_backend *be, const anx_verify_opts *o)
{
    const anx_model *m = &g->m;
    char err[256];
    anx_net *net = anx_net_create(be, &m->cfg, o->threads, err, sizeof err);
    if (!net) return v_skip(v_row(rep, g, be->name, "chained", "-", "-", "-"), "%s", err);
    if (o->log) fprintf(o->log, "verify %s chained %s\n", be->name, g->base);
    chain c = {rep, g, be, o, net};
    if (anx_net_init_params(net, g->seed)) {
        v_fail_status(v_row(rep, g, be->name, "chained", "-", "-", "-"), anx_net_error(net));
        anx_net_destroy(net);
        return;
    }
    anx_net_set_dropout_seed(net, g->seed);
    anx_net_set_input(net, g->input, g->target);
    anx_net_set_masks(net, NULL, NULL); /* back to drawn masks: frees, cannot fail */
    /* core's init is what the golden started from */
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &m->params[p];
        if (!wanted(&c, m->layers[pi->layer].name)) continue;
        float *w = v_alloc(pi->count);
        anx_net_get_state(net, ANX_PARAM, p, w);
        char key[96], mk[96], got[24];
        snprintf(key, sizeof key, "init.%s", pi->name);
        snprintf(mk, sizeof mk, "init_fnv1a64.%s", pi->name);
        anx_verify_row *r = v_row(rep, g, be->name, "chained", m->layers[pi->layer].name, "-", key);
        const char *want = anx_st_meta(&g->f, mk);
        snprintf(got, sizeof got, "%016llx", (unsigned long long)v_fnv1a64(w, pi->count * sizeof(float)));
        r->count = pi->count;
        r->verdict = want && !strcmp(want, got) ? ANX_PASSED : ANX_FAILED;
        if (r->verdict == ANX_FAILED)
            snprintf(r->reason, sizeof r->reason, "anx_net_init_params gives fnv1a64 %s, golden %s", got, want ? want : "-");
        free(w);
    }
    pscale ps;
    memset(&ps, 0, sizeof ps);
    for (int t = 1; t <= g->steps; t++) {
        if (o->log && g->steps > 1) fprintf(o->log, "verify %s chained %s step %d\n", be->name, g->base, t);
        if (chain_step(&c, t, &ps)) {
            char what[16];
            snprintf(what, sizeof what, "step %d", t);
            v_fail_status(v_row(rep, g, be->name, "chained", "-", what, "-"), anx_net_error(net));
            break;
        }
    }
    for (int p = 0; p < ANX_NUM_PARAMS; p++) free(ps.p[p]), free(ps.m[p]), free(ps.v[p]);
    anx_net_destroy(net);
}
