/* Judging one backend call against ref64 fed the same inputs (part of the comparison module:
 * it calls only the reference kernels and verify_compare.c).
 *
 * Both modes hand the plain float32 inputs a backend's (layer, direction) was given and the
 * outputs it made.  ref64 (anx/ref64.h: the ref loops over double, the same summation order)
 * runs on those inputs widened to double (exactly), so the only difference left is the
 * backend's own float32 rounding, bounded per element (u = 2^-24, M = sum |a||b| behind the
 * element, computed by the float32 ref kernel on |a| and |b|):
 *
 *   conv2d / linear fwd   gamma~(ic kh kw + 1) M + u|want|,  M = conv(|x|, |W|) + |b|
 *   bwd_data              gamma~(v_bwd_data_k) M + u|want|,  M = bwd_data(|dy|, |W|)
 *   bwd_weights           gamma~(n oh ow) M + u|want|,       M = bwd_weights(|x|, |dy|)
 *   relu, dropout, maxpool fwd, relu and dropout bwd   0: they select or scale by 2 (exact)
 *   maxpool bwd           4u M + u|want|, M = maxpool_bwd(|dy|): up to 4 windows add into one input
 *   loss fwd              (C + 10) u (max|z| + |loss|): C exponentials, their sum, the log, the mean
 *   loss bwd              (C + 6) u p / n + u|want|, p = softmax(z)
 * gamma~ is v_gamma's probabilistic bound (verify_compare.c); u|want| covers the rounding of the
 * double answer to the float32 the row compares with.  The ref kernel's own rounding of M is a
 * relative O(sqrt(K) u) change of the bound itself, far below its slack (lambda = 8).
 * A conv call the backend computed by Winograd (v_in.algo) is not a sum of products: its output
 * row gets verify_wino.c's bound instead (the bias gradient, a plain sum, keeps the one above).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "anx/ref64.h"
#include "core/verify_internal.h"

/* widened copy of x[n] (NULL stays NULL) */
static double *wide(const float *x, size_t n)
{
    if (!x) return NULL;
    double *d = malloc((n ? n : 1) * sizeof *d);
    if (!d) v_oom("a float64 copy", n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static double *dalloc(size_t n)
{
    double *d = calloc(n ? n : 1, sizeof *d);
    if (!d) v_oom("a float64 answer", n * sizeof *d);
    return d;
}

/* ref64's outputs of (l, dir) on in: out[0] (dst / diff_src / diff_weights / the loss), out[1] diff_bias. */
static void ref64_answer(const anx_layer_desc *l, anx_dir dir, const v_in *in, double **out, int threads)
{
    size_t ns = anx_desc_plain_count(l, ANX_SRC), nd = anx_desc_plain_count(l, ANX_DST);
    size_t nw = anx_desc_has_weights(l) ? anx_desc_plain_count(l, ANX_WEIGHTS) : 0;
    size_t nb = anx_desc_has_weights(l) ? anx_desc_plain_count(l, ANX_BIAS) : 0;
    anx_args64 a = {0};
    a.src = wide(in->src, ns), a.dst = wide(in->dst, nd), a.weights = wide(in->weights, nw);
    a.bias = wide(in->bias, nb), a.diff_dst = wide(in->diff_dst, nd), a.target = in->target;
    double *mask = wide(in->mask, nd);
    a.mask = mask;
    out[1] = NULL;
    if (dir == ANX_FWD && l->op == ANX_OP_LOSS) out[0] = dalloc(1), a.loss = out[0];
    else if (dir == ANX_FWD) free(a.dst), out[0] = dalloc(nd), a.dst = out[0];
    else if (dir == ANX_BWD_DATA) out[0] = dalloc(ns), a.diff_src = out[0];
    else out[0] = dalloc(nw), out[1] = dalloc(nb), a.diff_weights = out[0], a.diff_bias = out[1];
    anx_ref64_exec(l, dir, &a, threads);
    if (a.src != out[0]) free(a.src);
    if (a.dst != out[0]) free(a.dst);
    free(a.weights), free(a.bias), free(a.diff_dst), free(mask);
}

/* M behind each output of (l, dir) (the float32 ref kernel on |inputs|) and gamma~ of its sum;
 * M[k] NULL for the exact ops.  The loss is handled by judge_loss. */
static double magnitudes(const anx_layer_desc *l, anx_dir dir, const v_in *in, float **M, int threads)
{
    size_t ns = anx_desc_plain_count(l, ANX_SRC), nd = anx_desc_plain_count(l, ANX_DST);
    M[0] = M[1] = NULL;
    int lin = anx_desc_has_weights(l), pool_bwd = l->op == ANX_OP_MAXPOOL && dir == ANX_BWD_DATA;
    if (!lin && !pool_bwd) return 0;
    size_t nw = lin ? anx_desc_plain_count(l, ANX_WEIGHTS) : 0, nb = lin ? anx_desc_plain_count(l, ANX_BIAS) : 0;
    anx_args a = {0};
    float *ax = in->src ? v_alloc(ns) : NULL, *aw = in->weights ? v_alloc(nw) : NULL, *ab = in->bias ? v_alloc(nb) : NULL;
    float *ady = in->diff_dst ? v_alloc(nd) : NULL;
    if (ax) v_abs(ax, in->src, ns);
    if (aw) v_abs(aw, in->weights, nw);
    if (ab) v_abs(ab, in->bias, nb);
    if (ady) v_abs(ady, in->diff_dst, nd);
    a.src = ax, a.weights = aw, a.bias = ab, a.diff_dst = ady, a.dst = (float *)in->dst;
    double c;
    if (dir == ANX_FWD) {
        M[0] = a.dst = v_alloc(nd);
        c = v_gamma((double)l->ic * l->kh * l->kw + 1);
    } else if (dir == ANX_BWD_DATA) {
        a.src = (float *)in->src; /* max pool's winners come from the real values */
        M[0] = a.diff_src = v_alloc(ns);
        c = lin ? v_gamma(v_bwd_data_k(l)) : 4 * V_U;
    } else {
        M[0] = a.diff_weights = v_alloc(nw), M[1] = a.diff_bias = v_alloc(nb);
        c = v_gamma((double)l->n * l->oh * l->ow);
    }
    v_ref_run(l, dir, &a, threads);
    free(ax), free(aw), free(ab), free(ady);
    return c;
}

/* The row of got[n] against want[n]: bound c M + u|want| (M NULL: exact, bound 0). */
static void judge(anx_verify_row *r, const float *got, const double *want, const float *M, double c, size_t n,
                  const int64_t *shape, int ndim)
{
    float *w = v_alloc(n);
    double *b = dalloc(n);
    for (size_t i = 0; i < n; i++) {
        w[i] = (float)want[i];
        b[i] = M ? (c * M[i] + V_U * fabs(want[i])) * (1 + V_BOUND_SLACK) : 0.0;
    }
    anx_verify_compare(r, got, w, b, n, NULL, shape, ndim);
    free(w), free(b);
}

static void judge_loss(anx_verify_row *r, const anx_layer_desc *l, anx_dir dir, const v_in *in, const float *got,
                       const double *want)
{
    const int n = l->n, C = l->ic;
    int64_t shape[4] = {n, C, 0, 0};
    if (dir == ANX_FWD) {
        double zmax = 0;
        for (int i = 0; i < n * C; i++) zmax = fmax(zmax, fabs(in->src[i]));
        double b = (C + 10) * V_U * (zmax + fabs(want[0])) * (1 + V_BOUND_SLACK);
        float w = (float)want[0];
        anx_verify_compare(r, got, &w, &b, 1, NULL, shape, 0);
        return;
    }
    float *w = v_alloc((size_t)n * C);
    double *b = dalloc((size_t)n * C);
    for (int s = 0; s < n; s++)
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)s * C + c;
            double p = fabs(want[i] * n + (c == in->target[s])); /* softmax p from the answer */
            w[i] = (float)want[i];
            b[i] = ((C + 6) * V_U * p / n + V_U * fabs(want[i])) * (1 + V_BOUND_SLACK);
        }
    anx_verify_compare(r, got, w, b, (size_t)n * C, NULL, shape, 2);
    free(w), free(b);
}

void v_judge_exec(anx_verify_row *const *r, const anx_layer_desc *l, anx_dir dir, const v_in *in,
                  const float *const *got, int threads, anx_verify_cache *cache)
{
    double *want[2] = {NULL, NULL}, c = 0;
    float *M[2] = {NULL, NULL};
    uint64_t key = cache ? v_answer_key(l, dir, in) : 0;
    int hit = cache && v_cache_answer(cache, key, want, M, &c);
    if (!hit) {
        ref64_answer(l, dir, in, want, threads);
        if (l->op != ANX_OP_LOSS) c = magnitudes(l, dir, in, M, threads);
    }
    if (l->op == ANX_OP_LOSS) {
        judge_loss(r[0], l, dir, in, got[0], want[0]);
    } else {
        /* A Winograd call is not a sum of products: its output row gets verify_wino.c's bound
           (not cached: it depends on the backend's algorithm; diff_bias stays a plain sum). */
        float *Mw = NULL;
        double cw = v_wino_applies(in->algo, l, dir) ? v_wino_magnitudes(l, dir, in, &Mw, threads) : c;
        anx_slot slot[2] = {dir == ANX_FWD ? ANX_DST : dir == ANX_BWD_DATA ? ANX_SRC : ANX_WEIGHTS, ANX_BIAS};
        for (int k = 0; k < 2 && want[k]; k++) {
            int64_t shape[4];
            int ndim = v_slot_shape(l, slot[k], shape);
            judge(r[k], got[k], want[k], k == 0 && Mw ? Mw : M[k], k == 0 && Mw ? cw : c,
                  anx_desc_plain_count(l, slot[k]), shape, ndim);
        }
        free(Mw);
    }
    if (hit || (cache && !v_cache_keep_answer(cache, key, want, M, c))) return; /* the cache owns them */
    for (int k = 0; k < 2; k++) free(want[k]), free(M[k]);
}

/* Adam's float32 rounding against ref64's Adam on the same inputs (v_adam_bounds with exact
 * inputs).  hp: the hyperparameters as PyTorch holds them (doubles); a backend handed them as
 * float32 recovers the same doubles (core/ops_shared.c: typed_decimal), so both sides use hp. */
void v_judge_adam(anx_verify_row *const *r, const float *p0, const float *g, const float *m0, const float *v0,
                  const float *const *got, size_t n, const v_adam_hp *hp, int64_t t, const int64_t *shape, int ndim)
{
    double *p = wide(p0, n), *gg = wide(g, n), *m = wide(m0, n), *v = wide(v0, n);
    anx_f64_adam__ref64(p, gg, m, v, n, hp->lr, hp->beta1, hp->beta2, hp->eps, t);
    double *dp = dalloc(n), *dm = dalloc(n), *dv = dalloc(n), *zero = dalloc(n);
    v_adam_bounds(dp, dm, dv, p0, g, m0, v0, zero, zero, zero, zero, n, t, hp, hp);
    double *want[3] = {p, m, v}, *bd[3] = {dp, dm, dv};
    for (int k = 0; k < 3; k++) {
        float *w = v_alloc(n);
        for (size_t i = 0; i < n; i++) {
            w[i] = (float)want[k][i];
            bd[k][i] = (bd[k][i] + V_U * fabs(want[k][i])) * (1 + V_BOUND_SLACK);
        }
        anx_verify_compare(r[k], got[k], w, bd[k], n, NULL, shape, ndim);
        free(w);
    }
    free(p), free(gg), free(m), free(v), free(dp), free(dm), free(dv), free(zero);
}
