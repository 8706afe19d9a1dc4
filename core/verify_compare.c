/* The comparison module of anx verify: rows, the error bounds every mode derives from, the
 * comparison of a backend's tensor with the golden one, and the verdict.  It calls nothing of
 * the modes (verify_isolated.c, verify_chained.c) or of the driver (verify.c), which sit on top.
 *
 * Verdict rule of one row (got: the backend's float32 result, want: the golden float32, bound:
 * the per-element error bound derived where the row is made):
 *   FAILED      some |got_i - want_i| > bound_i, or got_i is NaN/Inf;
 *   MISTRUSTED  not failed, and some bound exceeds V_MISTRUST_BOUND_REL of the tensor's max |x|,
 *               or (at least V_MISTRUST_MIN_COUNT elements) more than V_MISTRUST_ZEROS of want
 *               are exact zeros: a pass would mostly compare zeros with zeros (benchdnn's rule);
 *   PASSED      otherwise.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/verify_internal.h"

/* benchdnn's rule: a row of at least this many elements, more than this fraction exact zeros in
 * the golden, proves little when it passes */
#define V_MISTRUST_MIN_COUNT 100
#define V_MISTRUST_ZEROS 0.99
/* A pass proves nothing when some element may move by more than this fraction of the tensor's
 * largest |x| (issue #15: chained bounds of 7.55 x max once passed a wrong backend) */
#define V_MISTRUST_BOUND_REL 0.01

/* Accumulation bound for a float32 dot product of length k against the exact value:
 *     |fl(sum a_i b_i) - sum a_i b_i| <= gamma~(k) * sum |a_i b_i|,
 *     gamma~(k) = exp(lambda * sqrt(k) * u + k u^2 / (1 - u)) - 1            (u = 2^-24)
 * Higham & Mary, "A new approach to probabilistic rounding error analysis", SISC 2019, Thm 2.4:
 * with the rounding errors modelled as independent, mean-zero, it holds with probability at
 * least 1 - 2k exp(-lambda^2 (1-u)^2 / 2) per output.  lambda = 8 makes that 2.5e-14 k: over all
 * outputs of a training step (sum of k over outputs ~ 3.4e9 for Alexnet(3,5) at batch 2) a false
 * alarm has probability < 1e-4.  The deterministic worst case gamma_k = k u / (1 - k u) would be
 * 12x looser at k = 9216 and miss a 0.1%-of-max change; blocked and pairwise sums (oneDNN, avx2)
 * err less than sequential ones, so the model is conservative for them. */
double v_gamma(double k)
{
    return expm1(V_LAMBDA * sqrt(k) * V_U + k * V_U * V_U / (1.0 - V_U));
}

double v_bwd_data_k(const anx_layer_desc *l)
{
    if (l->op == ANX_OP_LINEAR) return (double)l->oc;
    int s = l->stride > 0 ? l->stride : 1;
    return (double)l->oc * ((l->kh + s - 1) / s) * ((l->kw + s - 1) / s);
}

void v_copy_str(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

int v_param_of(const anx_model *m, int layer)
{
    for (int p = 0; p < ANX_NUM_PARAMS; p += 2)
        if (m->params[p].layer == layer) return p;
    return -1;
}

const char *v_impl_of(const anx_backend *be, void *ctx, const anx_layer_desc *l, anx_dir d)
{
    const char *s = be->impl_name ? be->impl_name(ctx, l, d) : NULL;
    return s ? s : "";
}

/* The reference's kernel on plain buffers (the magnitudes M behind each output, in both modes).
 * The reference's execs cannot fail (no workspace they cannot do without) and take a NULL ctx
 * (OpenMP's default team), so a ctx that could not be made only costs the thread count. */
void v_ref_run(const anx_layer_desc *l, anx_dir dir, const anx_args *a, int threads)
{
    const anx_backend *ref = anx_backend_reference();
    void *ctx;
    anx_backend_layer_create(ref, &ctx, l, threads);
    (void)ref->exec[l->op][dir](ctx, l, a);
    if (ctx) ref->layer_destroy(ctx);
}

/* Room for n more rows.  v_row may move rep->rows, so a check that holds several rows at once
 * (a parameter's Adam triple, weight and bias) reserves them first: growing the array between
 * two of its v_row calls left the first pointer dangling (a crash in `verify --backend all` once
 * five backends' rows crossed a doubling inside an Adam triple). */
void v_reserve(anx_verify_report *rep, int n)
{
    if (rep->count + n <= rep->cap) return;
    int cap = rep->cap ? rep->cap : 256;
    while (cap < rep->count + n) cap *= 2;
    anx_verify_row *rows = realloc(rep->rows, (size_t)cap * sizeof *rows);
    if (!rows) v_oom("the report", (size_t)cap * sizeof *rows);
    rep->rows = rows, rep->cap = cap;
}

anx_verify_row *v_row(anx_verify_report *rep, const vgold *g, const char *backend, const char *mode,
                      const char *layer, const char *dir, const char *tensor)
{
    v_reserve(rep, 1);
    anx_verify_row *r = &rep->rows[rep->count++];
    memset(r, 0, sizeof *r);
    v_copy_str(r->golden, sizeof r->golden, g ? g->base : "-");
    v_copy_str(r->backend, sizeof r->backend, backend);
    v_copy_str(r->mode, sizeof r->mode, mode);
    v_copy_str(r->layer, sizeof r->layer, layer);
    v_copy_str(r->dir, sizeof r->dir, dir);
    v_copy_str(r->tensor, sizeof r->tensor, tensor);
    r->verdict = ANX_SKIPPED;
    return r;
}

void v_skip(anx_verify_row *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    r->verdict = ANX_SKIPPED;
}

void v_fail_status(anx_verify_row *r, anx_status st)
{
    r->verdict = ANX_FAILED;
    snprintf(r->reason, sizeof r->reason, "%s", st);
}
static void unravel(int64_t flat, const int64_t *shape, int ndim, int64_t *out)
{
    for (int d = ndim - 1; d >= 0; d--) {
        int64_t s = shape[d] > 0 ? shape[d] : 1;
        out[d] = flat % s;
        flat /= s;
    }
}

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


/* Puts element i (error / bound = score) into the row's worst list, largest score first. */
static void keep_worst(anx_verify_row *row, double *score, int *nw, double s, int64_t flat, const int64_t *shape,
                       int ndim, double got, double want, double bound)
{
    int pos = *nw < ANX_VERIFY_WORST ? *nw : ANX_VERIFY_WORST;
    while (pos > 0 && score[pos - 1] < s) pos--;
    if (pos >= ANX_VERIFY_WORST) return;
    int last = *nw < ANX_VERIFY_WORST ? *nw : ANX_VERIFY_WORST - 1;
    for (int k = last; k > pos; k--) score[k] = score[k - 1], row->worst[k] = row->worst[k - 1];
    if (*nw < ANX_VERIFY_WORST) (*nw)++;
    score[pos] = s;
    anx_verify_elem *el = &row->worst[pos];
    memset(el, 0, sizeof *el);
    el->index = flat;
    unravel(flat, shape, ndim < 4 ? ndim : 4, el->nchw);
    el->got = got, el->want = want, el->bound = bound;
}

static void set_verdict(anx_verify_row *row, size_t bad, size_t wzeros, size_t n)
{
    if (bad) {
        row->verdict = ANX_FAILED;
        snprintf(row->reason, sizeof row->reason, "%zu of %zu elements beyond their bound", bad, n);
    } else if (row->bound_rel > V_MISTRUST_BOUND_REL) {
        row->verdict = ANX_MISTRUSTED;
        snprintf(row->reason, sizeof row->reason, "a bound of %.3g x the tensor's max |x| (over %g) proves nothing",
                 row->bound_rel, V_MISTRUST_BOUND_REL);
    } else if (n >= V_MISTRUST_MIN_COUNT && (double)wzeros > V_MISTRUST_ZEROS * (double)n) {
        row->verdict = ANX_MISTRUSTED;
        snprintf(row->reason, sizeof row->reason, "%.1f%% of the golden elements are exact zeros",
                 100.0 * (double)wzeros / (double)n);
    } else {
        row->verdict = ANX_PASSED;
        row->reason[0] = 0;
    }
}

void anx_verify_compare(anx_verify_row *row, const float *got, const float *want, const double *bound,
                        size_t n, const int64_t *index, const int64_t *shape, int ndim)
{
    double max_abs = 0, max_rel = 0, se = 0, sw = 0, maxw = 0, maxb = 0;
    size_t zeros = 0, wzeros = 0, bad = 0;
    double score[ANX_VERIFY_WORST]; /* worst: by err / bound (a failure ranks by how far past its bound) */
    int nw = 0;
    row->ndim = ndim;
    for (int d = 0; d < ndim && d < 4; d++) row->shape[d] = shape[d];
    for (size_t i = 0; i < n; i++) {
        double gv = got[i], wv = want[i], e = fabs(gv - wv);
        int finite = isfinite(gv) && isfinite(wv);
        if (!finite) e = INFINITY;
        zeros += gv == 0, wzeros += wv == 0;
        if (e > max_abs) max_abs = e;
        if (wv != 0 && e / fabs(wv) > max_rel) max_rel = e / fabs(wv);
        if (finite) se += e * e;
        sw += wv * wv;
        if (fabs(wv) > maxw) maxw = fabs(wv);
        if (bound[i] > maxb || isnan(bound[i])) maxb = isnan(maxb) ? maxb : bound[i];
        int fails = !finite || !(e <= bound[i]); /* a NaN bound is a verifier bug: it passes nothing */
        bad += fails;
        if (e == 0 && !fails) continue;
        double s = !finite ? INFINITY : bound[i] > 0 ? e / bound[i] : (e > 0 ? INFINITY : 0);
        keep_worst(row, score, &nw, s, index ? index[i] : (int64_t)i, shape, ndim, gv, wv, bound[i]);
    }
    row->nworst = nw;
    row->count = n;
    row->max_abs = max_abs;
    row->max_rel = max_rel;
    row->nmse = sw > 0 ? se / sw : (se > 0 ? INFINITY : 0);
    row->zeros = n ? (double)zeros / (double)n : 0;
    row->bound_rel = maxw > 0 ? maxb / maxw : (maxb > 0 ? INFINITY : 0);
    set_verdict(row, bad, wzeros, n);
}

void v_compare_want(anx_verify_row *r, const float *got, const vwant *w, const float *bound)
{
    size_t n = w->n;
    float *g = malloc((n ? n : 1) * sizeof *g);
    double *b = malloc((n ? n : 1) * sizeof *b);
    if (!g || !b) v_oom(w->key, (n ? n : 1) * (sizeof *g + sizeof *b));
    for (size_t i = 0; i < n; i++) {
        size_t j = w->idx ? (size_t)w->idx[i] : i;
        g[i] = got[j];
        b[i] = bound ? bound[j] : 0.0;
    }
    anx_verify_compare(r, g, w->val, b, n, w->idx, w->shape, w->ndim);
    free(g);
    free(b);
}

/* ---- out of memory inside a check ------------------------------------------------------------ */

/* The guards live: each is a frame of v_guarded still on this thread's stack, innermost first.
 * There is no other jump target: v_oom outside every guard is a programming error (an internal
 * function called around the entry points) and aborts with the message instead of jumping. */
typedef struct v_guard {
    jmp_buf env;
    struct v_guard *outer;
} v_guard;
static _Thread_local v_guard *g_guard;
static _Thread_local char g_oom_what[160];

int v_guarded(void (*fn)(void *), void *arg, char *err, size_t errlen)
{
    v_guard gd;
    gd.outer = g_guard;
    g_guard = &gd;
    if (setjmp(gd.env)) {
        g_guard = gd.outer; /* gd is popped before anything else can run v_oom */
        if (err && errlen) snprintf(err, errlen, "%s", g_oom_what);
        return -1;
    }
    fn(arg);
    g_guard = gd.outer;
    return 0;
}

_Noreturn void v_oom(const char *what, size_t bytes)
{
    snprintf(g_oom_what, sizeof g_oom_what, "out of memory for %s (%.1f MiB)", what, (double)bytes / 1048576.0);
    v_oom_again();
}

_Noreturn void v_oom_again(void)
{
    if (!g_guard) {
        /* Not an error to return but a broken invariant: every entry point that allocates runs
           under v_guarded.  The library ends no process on an error (no exit/abort), so stop
           here with a trap that names itself rather than a jump through NULL. */
        fprintf(stderr, "anx verify: %s outside every guarded entry point (v_guarded): a bug\n", g_oom_what);
        __builtin_trap();
    }
    longjmp(g_guard->env, 1);
}

/* ---- Adam ------------------------------------------------------------------------------------ */

/* update(m, v) = lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps) */
/* the cap 2 U_t below is of the exact updates; the backend's float32 ops move it by ~14u: 1e-3 covers */
#define V_ADAM_CAP_SLACK 1e-3

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
        dup = fmin(dup, 2 * umax * (1 + V_ADAM_CAP_SLACK));
        /* m's own rounding is absolute (4u(b1|m0| + (1-b1)|g|)): where m cancels (t > 1) it is not
           small next to |m|, so it enters the update through m / denom, not as 14u|update| */
        double mround = 4 * u * (G->beta1 * fabs(mi0) + (1 - G->beta1) * fabs(gi));
        double mr_up = adam_upd(mround, v, G->lr, gbc1, gbc2, G->eps);
        dm[i] = dmp + mround + fabs(mB - m);
        dv[i] = dvp + 6 * u * (G->beta2 * fabs(vi0) + (1 - G->beta2) * gi * gi) + fabs(vB - v);
        dp[i] = dp0[i] + dup + 14 * u * fabs(up) + mr_up + fabs(upB - up) + u * fabs(p0[i] - up);
    }
}
