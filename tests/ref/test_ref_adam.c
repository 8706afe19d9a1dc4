/* test_ref_adam: three Adam steps of the ref kernel against PyTorch 1.13's formula evaluated in
 * double, step by step from the kernel's own float state (so each step's bound is that step's
 * rounding alone, not an accumulation), with gradients spanning 1e-9..1e2, zeros and sign flips.
 *
 *   m' = b1 m + (1-b1) g            float ops: fl(m*b1f), fma with fl(1-b1)  -> |err| <= 4u(|b1 m| + |(1-b1) g|)
 *   v' = b2 v + (1-b2) g^2          fl(v*b2f), fma(fl(a2f*g), g, .)          -> |err| <= 4u(|b2 v| + (1-b2) g^2)
 *   p' = p - lr/bc1 * m' / (sqrt(v')/sqrt(bc2) + eps)   (m', v' = the kernel's float outputs)
 *        denominator: sqrt, two casts, division, addition of a positive eps: relative <= 4u;
 *        update: cast of -lr/bc1, product, quotient: 3u more; then the addition to p: u |p'|
 *                                                                   -> |err| <= 8u |update| + u |p'|
 * (first-order counts 3u, 3u, 7u; the next integer covers the O(u^2) terms).  u = 2^-24.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/rng.h"
#include "ref/ref.h"
#include "testutil.h"

#define U (0x1p-24)
enum { N = 1200 };

static void grads_for_step(float *g, int t)
{
    uint64_t key = anx_rng_key(7, "adam grads", (uint64_t)t);
    for (int i = 0; i < N; i++) {
        double u = 2 * anx_rng_u01(key, (uint64_t)i) - 1;
        int decade = i % 12 - 9;               /* 1e-9 .. 1e2 */
        g[i] = (i % 13 == 0) ? 0.0f : (float)(u * pow(10.0, decade));
    }
}

int main(void)
{
    const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    float *p = tu_alloc(N, "param"), *m = tu_alloc(N, "exp_avg"), *v = tu_alloc(N, "exp_avg_sq");
    float *g = tu_alloc(N, "grad");
    float *p0 = malloc(N * sizeof *p0), *m0 = malloc(N * sizeof *m0), *v0 = malloc(N * sizeof *v0);
    double *want = malloc(N * sizeof *want), *bound = malloc(N * sizeof *bound);
    tu_fill_uniform(p, N, 5, -1, 1);
    memset(m, 0, N * sizeof *m);
    memset(v, 0, N * sizeof *v);
    printf("Adam lr %g betas %g/%g eps %g over %d elements, 3 steps (seed 7)\n", lr, b1, b2, eps, N);

    for (int t = 1; t <= 3; t++) {
        grads_for_step(g, t);
        memcpy(p0, p, N * sizeof *p), memcpy(m0, m, N * sizeof *m), memcpy(v0, v, N * sizeof *v);
        anx_f32_adam__ref(p, g, m, v, N, lr, b1, b2, eps, t, 0);

        char what[64];
        for (int i = 0; i < N; i++) {
            want[i] = b1 * m0[i] + (1 - b1) * g[i];
            bound[i] = 4 * U * (fabs(b1 * m0[i]) + fabs((1 - b1) * g[i]));
        }
        snprintf(what, sizeof what, "exp_avg after step %d", t);
        tu_expect_within(m, want, bound, N, what);
        for (int i = 0; i < N; i++) {
            double g2 = (double)g[i] * g[i];
            want[i] = b2 * v0[i] + (1 - b2) * g2;
            bound[i] = 4 * U * (b2 * v0[i] + (1 - b2) * g2);
        }
        snprintf(what, sizeof what, "exp_avg_sq after step %d", t);
        tu_expect_within(v, want, bound, N, what);
        double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
        for (int i = 0; i < N; i++) {
            double upd = -(lr / bc1) * m[i] / (sqrt((double)v[i]) / sqrt(bc2) + eps);
            want[i] = p0[i] + upd;
            bound[i] = 8 * U * fabs(upd) + U * fabs(want[i]);
        }
        snprintf(what, sizeof what, "param after step %d", t);
        tu_expect_within(p, want, bound, N, what);
    }
    /* the first step moves every parameter with a gradient well above eps by about lr */
    TU_CHECKF(fabsf(p[1] - p0[1]) < 2e-3f, "Adam moved a parameter by more than 2 lr: %g", p[1] - p0[1]);

    /* The backend table takes float hyper-parameters and must hand the kernel the decimals they
       came from (0.9, not 0.899999976): same bits as the kernel called with the doubles. */
    float *p2 = tu_alloc(N, "param table"), *m2 = tu_alloc(N, "exp_avg table"), *v2 = tu_alloc(N, "exp_avg_sq table");
    tu_fill_uniform(p, N, 5, -1, 1);
    memcpy(p2, p, N * sizeof *p);
    memset(m, 0, N * sizeof *m), memset(v, 0, N * sizeof *v);
    memset(m2, 0, N * sizeof *m2), memset(v2, 0, N * sizeof *v2);
    for (int t = 1; t <= 3; t++) {
        grads_for_step(g, t);
        anx_f32_adam__ref(p, g, m, v, N, lr, b1, b2, eps, t, 1);
        anx_adam_hparams hp = {1e-3f, 0.9f, 0.999f, 1e-8f, t};
        anx_backend_ref.adam(p2, g, m2, v2, N, &hp, 2);
    }
    tu_expect_bitwise(p2, p, N, "table adam (float hparams) vs kernel (decimal doubles): param");
    tu_expect_bitwise(m2, m, N, "table adam vs kernel: exp_avg");
    tu_expect_bitwise(v2, v, N, "table adam vs kernel: exp_avg_sq");

    /* zero gradient on zero state stays exactly zero (padding elements of fast layouts rely on it) */
    memset(p, 0, N * sizeof *p), memset(m, 0, N * sizeof *m), memset(v, 0, N * sizeof *v), memset(g, 0, N * sizeof *g);
    anx_f32_adam__ref(p, g, m, v, N, lr, b1, b2, eps, 1, 0);
    int nonzero = 0;
    for (int i = 0; i < N; i++) nonzero += p[i] != 0 || m[i] != 0 || v[i] != 0;
    TU_CHECKF(nonzero == 0, "Adam made %d elements of an all-zero state non-zero", nonzero);

    tu_free(p), tu_free(m), tu_free(v), tu_free(g), tu_free(p2), tu_free(m2), tu_free(v2);
    free(p0), free(m0), free(v0), free(want), free(bound);
    return tu_finish("test_ref_adam");
}
