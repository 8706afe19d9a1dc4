/* test_avx2_step: one whole training step of Alexnet(3, 10) at batch 3 (227x227) on the avx2
 * backend against the ref backend, through the step driver: the same init, input, targets
 * and dropout masks (from the seed), then every activation, every gradient w.r.t. an
 * activation, the loss, every parameter gradient, both Adam moments and the updated
 * parameters.  Also: avx2 with 1 and 2 threads gives the same bits for all of them.
 *
 * Tolerances (chained, so normwise per tensor: max|avx2 - ref| <= tol * max|ref|):
 *  - one conv/linear layer alone is within 2 gamma_K S of ref (backend_layers_avx2*), i.e. a
 *    relative error below 2 K u ~ 1e-3 in the worst case (K = 9216 at fc6) and ~sqrt(K) u
 *    ~ 1e-5 typically; chaining 8 such layers adds these up: forward tol = 8 * sqrt(9216) u *
 *    (safety 2 for the max-normalisation) ~ 9e-5 -> 1e-4.
 *  - backward: the same chain twice (forward into the loss, then back) plus ReLU/max-pool
 *    decisions that flip when a pre-activation or a pooling tie is within rounding of 0 or of
 *    its rival (each flip moves one gradient element): 1e-3.
 *  - Adam, given the same gradient, is bit-identical (backend_layers_avx2).  At step 1 it moves
 *    p by -lr g / (|g| + eps) (moments start at 0), so the parameter difference is bounded per
 *    element by lr |ga/(|ga|+eps) - gr/(|gr|+eps)|, plus the roundings: ~6 in computing the update
 *    u (|u| <= lr) on each side, 12 u lr, and one in p + u on each side, 2 u |p|.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "anx/net.h"
#include "anx/rng.h"
#include "testutil.h"

enum { SEED = 5, BATCH = 3 };
static const anx_model_config CFG = {3, 10, BATCH, 227};
static const float LR = 1e-3f;

static anx_net *make_net(const anx_backend *be, int threads)
{
    char err[256];
    anx_net *net = anx_net_create(be, &CFG, threads, err, sizeof err);
    TU_CHECKF(net != NULL, "anx_net_create(%s): %s", be->name, err);
    if (!net) exit(tu_finish("test_avx2_step"));
    anx_net_init_params(net, SEED);
    anx_net_set_dropout_seed(net, SEED);
    const anx_model *m = anx_net_model(net);
    const size_t nin = anx_desc_plain_count(&m->layers[0], ANX_SRC);
    float *x = malloc(nin * sizeof *x);
    int64_t t[BATCH];
    anx_rng_fill_u01(x, nin, anx_rng_key(SEED, "input", 0));
    anx_rng_fill_targets(t, BATCH, anx_rng_key(SEED, "target", 0), CFG.n_class);
    TU_CHECK(anx_net_set_input(net, x, t) == 0);
    free(x);
    return net;
}

static void normwise(const float *got, const float *want, size_t n, double tol, const char *what)
{
    double maxw = 0, maxe = 0;
    for (size_t i = 0; i < n; i++) {
        maxw = fmax(maxw, fabs(want[i]));
        double e = fabs((double)got[i] - want[i]);
        maxe = isnan(e) ? INFINITY : fmax(maxe, e);
    }
    TU_CHECKF(maxe <= tol * maxw, "%s: max error %.3g > %.3g * max|ref| %.3g (normwise %.3g)", what, maxe, tol,
              maxw, maxw > 0 ? maxe / maxw : maxe);
    if (getenv("ANX_TEST_VERBOSE")) printf("  %-28s normwise error %.3g (tol %.0e)\n", what, maxw > 0 ? maxe / maxw : maxe, tol);
}

int main(void)
{
    const anx_backend *fast = &anx_backend_avx2;
    const char *why = fast->unavailable ? fast->unavailable() : NULL;
    if (why) {
        printf("test_avx2_step: skipped: %s\n", why);
        return 77;
    }
    anx_net *ref = make_net(&anx_backend_ref, 2), *a1 = make_net(fast, 1), *a2 = make_net(fast, 2);
    const anx_model *m = anx_net_model(ref);
    const float lr = tu_net_train_step(ref, LR), la1 = tu_net_train_step(a1, LR), la2 = tu_net_train_step(a2, LR);
    printf("loss: ref %.9g avx2 %.9g (2 threads %.9g)\n", lr, la1, la2);
    TU_CHECKF(memcmp(&la1, &la2, sizeof la1) == 0, "loss differs between 1 and 2 threads");
    TU_CHECKF(fabsf(la1 - lr) <= 1e-4f * fabsf(lr), "loss %.9g vs ref %.9g", la1, lr);

    char what[96];
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const size_t n = anx_desc_plain_count(&m->layers[i], ANX_DST);
        float *r = malloc(n * sizeof *r), *g1 = malloc(n * sizeof *g1), *g2 = malloc(n * sizeof *g2);
        for (int grad = 0; grad < 2; grad++) {
            anx_net_get_activation(ref, i, grad, r);
            anx_net_get_activation(a1, i, grad, g1);
            anx_net_get_activation(a2, i, grad, g2);
            snprintf(what, sizeof what, "%s %s", grad ? "grad_out" : "out", m->layers[i].name);
            tu_expect_bitwise(g2, g1, n, what);
            normwise(g1, r, n, grad ? 1e-3 : 1e-4, what);
        }
        free(r), free(g1), free(g2);
    }
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const size_t n = m->params[p].count;
        float *r[ANX_STATE_COUNT], *g1[ANX_STATE_COUNT], *g2 = malloc(n * sizeof *g2);
        for (int s = 0; s < ANX_STATE_COUNT; s++) {
            r[s] = malloc(n * sizeof(float)), g1[s] = malloc(n * sizeof(float));
            anx_net_get_state(ref, (anx_state)s, p, r[s]);
            anx_net_get_state(a1, (anx_state)s, p, g1[s]);
            anx_net_get_state(a2, (anx_state)s, p, g2);
            snprintf(what, sizeof what, "%s state %d", m->params[p].name, s);
            tu_expect_bitwise(g2, g1[s], n, what);
        }
        snprintf(what, sizeof what, "grad.%s", m->params[p].name);
        normwise(g1[ANX_GRAD], r[ANX_GRAD], n, 1e-3, what);
        snprintf(what, sizeof what, "exp_avg.%s", m->params[p].name);
        normwise(g1[ANX_EXP_AVG], r[ANX_EXP_AVG], n, 1e-3, what);
        snprintf(what, sizeof what, "exp_avg_sq.%s", m->params[p].name);
        normwise(g1[ANX_EXP_AVG_SQ], r[ANX_EXP_AVG_SQ], n, 2e-3, what); /* g^2: twice g's relative error */
        double *want = malloc(n * sizeof *want), *bound = malloc(n * sizeof *bound);
        for (size_t i = 0; i < n; i++) {
            const double ga = g1[ANX_GRAD][i], gr = r[ANX_GRAD][i], eps = 1e-8;
            want[i] = r[ANX_PARAM][i];
            /* exact difference of the two updates -lr g / (|g| + eps), then the roundings: the update
               (|u| <= lr) takes ~6 on each side, 12 u lr, and p + u one on each side, 2 u |p| */
            bound[i] = LR * (fabs(ga / (fabs(ga) + eps) - gr / (fabs(gr) + eps)) + 12.0 * 0x1p-24) +
                       2.0 * 0x1p-24 * fabs(want[i]);
        }
        snprintf(what, sizeof what, "%s after Adam", m->params[p].name);
        tu_expect_within(g1[ANX_PARAM], want, bound, n, what);
        free(want), free(bound), free(g2);
        for (int s = 0; s < ANX_STATE_COUNT; s++) free(r[s]), free(g1[s]);
    }
    anx_net_destroy(ref), anx_net_destroy(a1), anx_net_destroy(a2);
    return tu_finish("test_avx2_step");
}
