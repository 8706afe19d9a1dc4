/* test_ref_grad: every backward kernel of the ref backend against central finite differences
 * of its own forward kernel.
 *
 * For a forward y = f(x) and a fixed random R, L(x) = sum_j y_j R_j (in double).  The backward
 * kernel fed diff_dst = R must return dL/dx.  The finite difference perturbs one element by the
 * float steps actually taken, d+ = fl(x+h) - x and d- = x - fl(x-h) (exact in double):
 *     fd = (L(x+) - L(x-)) / (d+ + d-).
 * Error budget (per element, all derived, none tuned):
 *   - forward rounding: y_j is a float dot product of K terms (plus the bias), so
 *     |y_j - exact| <= gamma_K * M_j with M_j = sum |w||x| + |b| (Higham's bound, any summation
 *     order), gamma_K = K u / (1 - K u), u = 2^-24.  M_j is obtained by running the same forward
 *     kernel on |x|, |w|, |b|.  Hence |L err| <= gamma_K sum_j |R_j| M_j + (double sum error),
 *     and it enters the difference quotient divided by (d+ + d-).
 *   - truncation: zero for the piecewise-linear layers (conv, linear, relu, pool, dropout are
 *     linear in each input, and relu/pool inputs are kept further than h from every kink);
 *     for the loss h^2/6 * max|f'''| with |d^3 lse / dx_i^3| = |p(1-p)(1-2p)| <= 1/(6 sqrt 3).
 *   - the backward kernel's own rounding: gamma_K' * M'_i, M'_i from the backward kernel run on
 *     absolute values (K' = the length of its sums).
 * Linear layers therefore take a large h (1.0): no truncation, and the rounding term shrinks as 1/h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "anx/rng.h"
#include "ref/ref.h"
#include "testutil.h"

#define U (0x1p-24)
#define UD (0x1p-53)

static double gamma_k(double k) { return k * U / (1.0 - k * U); }

static void fabs_copy(float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = fabsf(src[i]);
}

/* What fd_check differentiates: eval(ctx) recomputes y [ny] from the current inputs and, when
 * yabs is not NULL, the magnitude sums yabs [ny] (the forward kernel run on absolute values).
 * The rounding of y_j is bounded by gam * yabs_j (yabs computed in float, so divided by 1 - gam)
 * plus rel * |y_j| + abs_err. */
typedef struct fd_fn {
    void (*eval)(void *ctx);
    void *ctx;
    const float *y, *yabs, *r;
    size_t ny;
    double gam, rel, abs_err;
} fd_fn;

/* Compares the analytic gradient g[i] (bound gb[i] on its own rounding) of every x[i] with the
 * central difference of L = sum y R.  Outputs that do not depend on x[i] come out bit-identical in
 * both evaluations and cancel exactly in sum (y+ - y-) R, so only the outputs that changed (in value
 * or in magnitude sum) carry rounding into the quotient.  Returns the worst |fd - g| / bound. */
static double fd_check(const char *what, float *x, size_t n, const float *g, const double *gb, double h,
                       double trunc, const fd_fn *f)
{
    double *fd = malloc(n * sizeof *fd), *bound = malloc(n * sizeof *bound);
    float *yp = malloc(f->ny * sizeof *yp), *yap = malloc(f->ny * sizeof *yap);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i], xp = (float)(x0 + h), xm = (float)(x0 - h);
        x[i] = xp;
        f->eval(f->ctx);
        memcpy(yp, f->y, f->ny * sizeof *yp);
        if (f->yabs) memcpy(yap, f->yabs, f->ny * sizeof *yap);
        x[i] = xm;
        f->eval(f->ctx);
        x[i] = x0;
        double dl = 0, err = 0, mag = 0;
        for (size_t j = 0; j < f->ny; j++) {
            int changed = f->rel > 0 || f->abs_err > 0 || yp[j] != f->y[j] || (f->yabs && yap[j] != f->yabs[j]);
            if (!changed) continue;
            double r = f->r[j], dy = (double)yp[j] - f->y[j];
            dl += dy * r;
            mag += fabs(dy * r);
            double e = f->rel * (fabs((double)yp[j]) + fabs((double)f->y[j])) + 2 * f->abs_err;
            if (f->yabs) e += f->gam * ((double)yap[j] + f->yabs[j]) / (1.0 - f->gam);
            err += fabs(r) * e;
        }
        err += (f->ny + 3) * UD * mag; /* y+ - y-, its product with R and the sum, all in double */
        double step = ((double)xp - x0) + ((double)x0 - xm);
        fd[i] = dl / step;
        bound[i] = err / step + trunc + gb[i];
        double r = fabs(fd[i] - g[i]) / bound[i];
        if (r > worst) worst = r;
    }
    tu_expect_within(g, fd, bound, n, what);
    printf("  %-34s %5zu elements, worst |fd - grad| / bound = %.3f\n", what, n, worst);
    free(fd), free(bound), free(yp), free(yap);
    return worst;
}

/* ---------------- Conv2d ---------------- */

typedef struct conv_case {
    int n, ic, ih, iw, oc, oh, ow, kh, kw, stride, pad;
    float *src, *w, *b, *r;           /* inputs and the random cotangent R = diff_dst */
    float *dst, *dst_abs, *abs_s, *abs_w, *abs_b;
} conv_case;

static size_t conv_nsrc(const conv_case *c) { return (size_t)c->n * c->ic * c->ih * c->iw; }
static size_t conv_ndst(const conv_case *c) { return (size_t)c->n * c->oc * c->oh * c->ow; }
static size_t conv_nw(const conv_case *c) { return (size_t)c->oc * c->ic * c->kh * c->kw; }

static void conv_eval(void *ctx)
{
    conv_case *c = ctx;
    anx_f32_conv2d_fwd__ref(c->dst, c->src, c->w, c->b, c->n, c->ic, c->ih, c->iw, c->oc, c->oh, c->ow, c->kh,
                            c->kw, c->stride, c->pad);
    fabs_copy(c->abs_s, c->src, conv_nsrc(c));
    fabs_copy(c->abs_w, c->w, conv_nw(c));
    fabs_copy(c->abs_b, c->b, c->oc);
    anx_f32_conv2d_fwd__ref(c->dst_abs, c->abs_s, c->abs_w, c->abs_b, c->n, c->ic, c->ih, c->iw, c->oc, c->oh,
                            c->ow, c->kh, c->kw, c->stride, c->pad);
}

static void test_conv(int n, int ic, int ih, int iw, int oc, int kh, int kw, int stride, int pad, uint64_t seed)
{
    conv_case c = {n, ic, ih, iw, oc, (ih - kh + 2 * pad) / stride + 1, (iw - kw + 2 * pad) / stride + 1, kh, kw,
                   stride, pad, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    char what[96];
    printf("conv2d n%d ic%d %dx%d oc%d k%dx%d s%d p%d -> %dx%d (seed %llu)\n", n, ic, ih, iw, oc, kh, kw, stride,
           pad, c.oh, c.ow, (unsigned long long)seed);
    size_t ns = conv_nsrc(&c), nd = conv_ndst(&c), nw = conv_nw(&c);
    c.src = tu_alloc(ns, "src"), c.w = tu_alloc(nw, "w"), c.b = tu_alloc(oc, "b"), c.r = tu_alloc(nd, "R");
    c.dst = tu_alloc(nd, "dst"), c.dst_abs = tu_alloc(nd, "dst_abs");
    c.abs_s = tu_alloc(ns, "abs_s"), c.abs_w = tu_alloc(nw, "abs_w"), c.abs_b = tu_alloc(oc, "abs_b");
    tu_fill_uniform(c.src, ns, seed, -1, 1);
    tu_fill_uniform(c.w, nw, seed + 1, -1, 1);
    tu_fill_uniform(c.b, oc, seed + 2, -1, 1);
    tu_fill_uniform(c.r, nd, seed + 3, -1, 1);

    float *dsrc = tu_alloc(ns, "diff_src"), *dw = tu_alloc(nw, "diff_w"), *db = tu_alloc(oc, "diff_b");
    float *m_src = tu_alloc(ns, "M diff_src"), *m_w = tu_alloc(nw, "M diff_w"), *m_b = tu_alloc(oc, "M diff_b");
    float *abs_r = tu_alloc(nd, "|R|");
    anx_f32_conv2d_bwd_data__ref(dsrc, c.r, c.w, n, ic, ih, iw, oc, c.oh, c.ow, kh, kw, stride, pad);
    anx_f32_conv2d_bwd_weights__ref(dw, db, c.src, c.r, n, ic, ih, iw, oc, c.oh, c.ow, kh, kw, stride, pad);
    /* the backward sums' magnitudes M' from the same kernels on absolute values */
    fabs_copy(abs_r, c.r, nd);
    fabs_copy(c.abs_w, c.w, nw);
    fabs_copy(c.abs_s, c.src, ns);
    anx_f32_conv2d_bwd_data__ref(m_src, abs_r, c.abs_w, n, ic, ih, iw, oc, c.oh, c.ow, kh, kw, stride, pad);
    anx_f32_conv2d_bwd_weights__ref(m_w, m_b, c.abs_s, abs_r, n, ic, ih, iw, oc, c.oh, c.ow, kh, kw, stride, pad);

    /* forward: K = ic*kh*kw products plus the bias */
    fd_fn f = {conv_eval, &c, c.dst, c.dst_abs, c.r, nd, gamma_k(ic * kh * kw + 1.0), 0.0, 0.0};
    double *gb = malloc((ns > nw ? ns : nw) * sizeof *gb);
    double g_data = gamma_k((double)oc * kh * kw), g_wts = gamma_k((double)n * c.oh * c.ow);
    for (size_t i = 0; i < ns; i++) gb[i] = g_data * m_src[i] / (1 - g_data);
    snprintf(what, sizeof what, "conv2d bwd_data k%dx%d s%d p%d", kh, kw, stride, pad);
    fd_check(what, c.src, ns, dsrc, gb, 1.0, 0.0, &f);
    for (size_t i = 0; i < nw; i++) gb[i] = g_wts * m_w[i] / (1 - g_wts);
    snprintf(what, sizeof what, "conv2d bwd_weights k%dx%d s%d p%d", kh, kw, stride, pad);
    fd_check(what, c.w, nw, dw, gb, 1.0, 0.0, &f);
    for (int i = 0; i < oc; i++) gb[i] = g_wts * m_b[i] / (1 - g_wts);
    snprintf(what, sizeof what, "conv2d bwd_bias k%dx%d s%d p%d", kh, kw, stride, pad);
    fd_check(what, c.b, oc, db, gb, 1.0, 0.0, &f);

    free(gb);
    float *bufs[] = {c.src, c.w, c.b, c.r, c.dst, c.dst_abs, c.abs_s, c.abs_w, c.abs_b,
                     dsrc, dw, db, m_src, m_w, m_b, abs_r};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) tu_free(bufs[i]);
}

/* ---------------- Linear ---------------- */

typedef struct linear_case {
    int n, k, oc;
    float *src, *w, *b, *r, *dst, *dst_abs, *abs_s, *abs_w, *abs_b;
} linear_case;

static void linear_eval(void *ctx)
{
    linear_case *c = ctx;
    size_t ns = (size_t)c->n * c->k, nw = (size_t)c->oc * c->k;
    anx_f32_linear_fwd__ref(c->dst, c->src, c->w, c->b, c->n, c->k, c->oc);
    fabs_copy(c->abs_s, c->src, ns);
    fabs_copy(c->abs_w, c->w, nw);
    fabs_copy(c->abs_b, c->b, c->oc);
    anx_f32_linear_fwd__ref(c->dst_abs, c->abs_s, c->abs_w, c->abs_b, c->n, c->k, c->oc);
}

static void test_linear(int n, int k, int oc, uint64_t seed)
{
    printf("linear n%d k%d oc%d (seed %llu)\n", n, k, oc, (unsigned long long)seed);
    size_t ns = (size_t)n * k, nw = (size_t)oc * k, nd = (size_t)n * oc;
    linear_case c = {n, k, oc, tu_alloc(ns, "src"), tu_alloc(nw, "w"), tu_alloc(oc, "b"), tu_alloc(nd, "R"),
                     tu_alloc(nd, "dst"), tu_alloc(nd, "dst_abs"), tu_alloc(ns, "abs_s"), tu_alloc(nw, "abs_w"),
                     tu_alloc(oc, "abs_b")};
    tu_fill_uniform(c.src, ns, seed, -1, 1);
    tu_fill_uniform(c.w, nw, seed + 1, -1, 1);
    tu_fill_uniform(c.b, oc, seed + 2, -1, 1);
    tu_fill_uniform(c.r, nd, seed + 3, -1, 1);
    float *dsrc = tu_alloc(ns, "diff_src"), *dw = tu_alloc(nw, "diff_w"), *db = tu_alloc(oc, "diff_b");
    float *m_src = tu_alloc(ns, "M diff_src"), *m_w = tu_alloc(nw, "M diff_w"), *m_b = tu_alloc(oc, "M diff_b");
    float *abs_r = tu_alloc(nd, "|R|");
    anx_f32_linear_bwd_data__ref(dsrc, c.r, c.w, n, k, oc);
    anx_f32_linear_bwd_weights__ref(dw, db, c.src, c.r, n, k, oc);
    fabs_copy(abs_r, c.r, nd);
    fabs_copy(c.abs_w, c.w, nw);
    fabs_copy(c.abs_s, c.src, ns);
    anx_f32_linear_bwd_data__ref(m_src, abs_r, c.abs_w, n, k, oc);
    anx_f32_linear_bwd_weights__ref(m_w, m_b, c.abs_s, abs_r, n, k, oc);

    fd_fn f = {linear_eval, &c, c.dst, c.dst_abs, c.r, nd, gamma_k(k + 1.0), 0.0, 0.0};
    double *gb = malloc((ns > nw ? ns : nw) * sizeof *gb);
    double g_data = gamma_k(oc), g_wts = gamma_k(n);
    for (size_t i = 0; i < ns; i++) gb[i] = g_data * m_src[i] / (1 - g_data);
    fd_check("linear bwd_data", c.src, ns, dsrc, gb, 1.0, 0.0, &f);
    for (size_t i = 0; i < nw; i++) gb[i] = g_wts * m_w[i] / (1 - g_wts);
    fd_check("linear bwd_weights", c.w, nw, dw, gb, 1.0, 0.0, &f);
    for (int i = 0; i < oc; i++) gb[i] = g_wts * m_b[i] / (1 - g_wts);
    fd_check("linear bwd_bias", c.b, oc, db, gb, 1.0, 0.0, &f);
    free(gb);
    float *bufs[] = {c.src, c.w, c.b, c.r, c.dst, c.dst_abs, c.abs_s, c.abs_w, c.abs_b,
                     dsrc, dw, db, m_src, m_w, m_b, abs_r};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) tu_free(bufs[i]);
}

/* ---------------- MaxPool2d ---------------- */

typedef struct pool_case {
    int n, c, ih, iw, oh, ow, k, stride;
    float *src, *r, *dst;
} pool_case;

static void pool_eval(void *ctx)
{
    pool_case *p = ctx;
    anx_f32_maxpool_fwd__ref(p->dst, p->src, p->n, p->c, p->ih, p->iw, p->oh, p->ow, p->k, p->k, p->stride);
}

static void test_maxpool(int n, int c, int ih, int iw, int k, int stride, uint64_t seed)
{
    pool_case p = {n, c, ih, iw, (ih - k) / stride + 1, (iw - k) / stride + 1, k, stride, 0, 0, 0};
    printf("maxpool n%d c%d %dx%d k%d s%d -> %dx%d (seed %llu)\n", n, c, ih, iw, k, stride, p.oh, p.ow,
           (unsigned long long)seed);
    size_t ns = (size_t)n * c * ih * iw, nd = (size_t)n * c * p.oh * p.ow;
    p.src = tu_alloc(ns, "src"), p.r = tu_alloc(nd, "R"), p.dst = tu_alloc(nd, "dst");
    /* distinct values (i - ns/2) / 64 in a seeded shuffle: every window has one strict maximum,
       1/64 above the runner-up, so a perturbation of h = 2^-9 never changes the winner */
    for (size_t i = 0; i < ns; i++) p.src[i] = ((float)i - (float)(ns / 2)) / 64.0f;
    uint64_t key = anx_rng_key(seed, "shuffle", 0);
    for (size_t i = ns - 1; i > 0; i--) {
        size_t j = (size_t)(anx_rng_u01(key, i) * (double)(i + 1));
        float t = p.src[i];
        p.src[i] = p.src[j], p.src[j] = t;
    }
    tu_fill_uniform(p.r, nd, seed + 1, -1, 1);
    float *dsrc = tu_alloc(ns, "diff_src"), *m_src = tu_alloc(ns, "M diff_src"), *abs_r = tu_alloc(nd, "|R|");
    anx_f32_maxpool_bwd_data__ref(dsrc, p.r, p.src, n, c, ih, iw, p.oh, p.ow, k, k, stride);
    fabs_copy(abs_r, p.r, nd);
    anx_f32_maxpool_bwd_data__ref(m_src, abs_r, p.src, n, c, ih, iw, p.oh, p.ow, k, k, stride);
    /* an input sits in at most ceil(k/s)^2 windows: that many terms in its sum */
    int over = (k + stride - 1) / stride;
    double *gb = malloc(ns * sizeof *gb), g = gamma_k((double)over * over);
    for (size_t i = 0; i < ns; i++) gb[i] = g * m_src[i] / (1 - g);
    fd_fn f = {pool_eval, &p, p.dst, NULL, p.r, nd, 0.0, 0.0, 0.0}; /* selection is exact */
    fd_check("maxpool bwd", p.src, ns, dsrc, gb, 0x1p-9, 0.0, &f);
    free(gb);
    tu_free(p.src), tu_free(p.r), tu_free(p.dst), tu_free(dsrc), tu_free(m_src), tu_free(abs_r);
}

/* ---------------- ReLU and Dropout (element-wise) ---------------- */

typedef struct elt_case {
    size_t count;
    float *src, *mask, *r, *dst;
    int dropout;
} elt_case;

static void elt_eval(void *ctx)
{
    elt_case *e = ctx;
    if (e->dropout)
        anx_f32_dropout_fwd__ref(e->dst, e->src, e->mask, e->count);
    else
        anx_f32_relu_fwd__ref(e->dst, e->src, e->count);
}

static void test_relu_dropout(size_t count, uint64_t seed)
{
    printf("relu, dropout p=0.5 over %zu elements (seed %llu)\n", count, (unsigned long long)seed);
    elt_case e = {count, tu_alloc(count, "src"), tu_alloc(count, "mask"), tu_alloc(count, "R"),
                  tu_alloc(count, "dst"), 0};
    tu_fill_uniform(e.src, count, seed, -1, 1);
    /* keep every input at least 1/16 from the kink at 0, h = 2^-8 never crosses it */
    for (size_t i = 0; i < count; i++)
        if (fabsf(e.src[i]) < 0.0625f) e.src[i] += e.src[i] < 0 ? -0.0625f : 0.0625f;
    anx_rng_fill_dropout(e.mask, count, anx_rng_key(seed, "Dropout-16", 1), 0.5f);
    tu_fill_uniform(e.r, count, seed + 1, -1, 1);
    float *dsrc = tu_alloc(count, "diff_src");
    double *gb = calloc(count, sizeof *gb); /* both backward kernels are exact: bound 0 */

    anx_f32_relu_fwd__ref(e.dst, e.src, count);
    anx_f32_relu_bwd_data__ref(dsrc, e.r, e.dst, count);
    /* relu is exact; src * mask with mask in {0, 2} is exact too */
    fd_fn f = {elt_eval, &e, e.dst, NULL, e.r, count, 0.0, 0.0, 0.0};
    fd_check("relu bwd", e.src, count, dsrc, gb, 0x1p-8, 0.0, &f);

    e.dropout = 1;
    anx_f32_dropout_bwd_data__ref(dsrc, e.r, e.mask, count);
    fd_check("dropout bwd", e.src, count, dsrc, gb, 0x1p-8, 0.0, &f);
    free(gb);
    tu_free(e.src), tu_free(e.mask), tu_free(e.r), tu_free(e.dst), tu_free(dsrc);
}

/* ---------------- CrossEntropyLoss ---------------- */

typedef struct loss_case {
    int n, c;
    float *logits;
    const int64_t *target;
    float loss;
} loss_case;

static void loss_eval(void *ctx)
{
    loss_case *l = ctx;
    l->loss = anx_f32_loss_fwd__ref(l->logits, l->target, l->n, l->c);
}

static void test_loss(int n, int c, uint64_t seed)
{
    printf("loss n%d c%d (seed %llu)\n", n, c, (unsigned long long)seed);
    size_t nl = (size_t)n * c;
    int64_t *target = malloc(n * sizeof *target);
    anx_rng_fill_targets(target, n, anx_rng_key(seed, "target", 0), c);
    loss_case l = {n, c, tu_alloc(nl, "logits"), target, 0};
    tu_fill_uniform(l.logits, nl, seed, -3, 3);
    float *dsrc = tu_alloc(nl, "diff_src");
    anx_f32_loss_bwd_data__ref(dsrc, l.logits, target, n, c);
    /* bwd: computed in double, rounded once */
    double *gb = malloc(nl * sizeof *gb);
    for (size_t i = 0; i < nl; i++) gb[i] = U * fabs(dsrc[i]) + 1e-15;
    /* h from the error balance u|L|/h + h^2 max|f'''|/6 with max|f'''| = 1/(6 sqrt 3) / n: with
       |L| ~ log c + 3 that is h ~ 0.02; take 2^-6 and add the truncation term to the bound. */
    double h = 0x1p-6, trunc = h * h / 6.0 * (1.0 / (6.0 * sqrt(3.0))) / n;
    /* L = loss (R = 1): the double result rounded once to float (u |L|), plus the double evaluation
       itself, <= (2c + 4) 2^-53 (max|x| + log c + |x_t|) ~ 1e-14 here: 1e-13 covers it */
    const float one = 1.0f;
    fd_fn f = {loss_eval, &l, &l.loss, NULL, &one, 1, 0.0, U, 1e-13};
    fd_check("loss bwd", l.logits, nl, dsrc, gb, h, trunc, &f);
    free(gb);
    free(target);
    tu_free(l.logits), tu_free(dsrc);
}

int main(void)
{
    /* thousands of tiny kernel calls: one thread (thread-count independence is test_ref_backend's;
       on a loaded machine every parallel region of a tiny call costs a context switch) */
    omp_set_num_threads(1);
    test_conv(2, 3, 9, 9, 4, 3, 3, 2, 1, 11);  /* stride 2, pad 1 */
    test_conv(2, 3, 9, 9, 4, 5, 5, 1, 2, 12);  /* AlexNet conv2's k5 s1 p2 */
    test_conv(1, 2, 15, 15, 3, 7, 7, 4, 0, 13); /* conv1-like stride 4, no pad; 15 = 4*2 + 7 */
    test_conv(2, 2, 7, 10, 3, 3, 2, 2, 1, 14);  /* non-square image and kernel */
    /* stride 1 runs the flattened-plane kernels: odd shapes, no pad, pad >= kernel */
    test_conv(2, 3, 8, 6, 3, 3, 2, 1, 1, 15);
    test_conv(1, 2, 7, 7, 2, 3, 3, 1, 0, 16);
    test_conv(1, 2, 5, 4, 2, 2, 2, 1, 2, 17);
    test_conv(1, 2, 6, 6, 2, 5, 1, 1, 0, 18);
    test_linear(3, 2 * 3 * 3, 5, 21);          /* a Linear-14-like flattened [n, 2, 3, 3] input */
    test_linear(2, 300, 11, 22);               /* k over several fwd chunks, oc with a partial block */
    test_maxpool(2, 3, 9, 9, 3, 2, 31);        /* AlexNet's 3/2: overlapping windows */
    test_maxpool(1, 2, 8, 7, 2, 2, 32);        /* floor mode drops the last column */
    test_relu_dropout(200, 41);
    test_loss(3, 7, 51);
    return tu_finish("test_ref_grad");
}
