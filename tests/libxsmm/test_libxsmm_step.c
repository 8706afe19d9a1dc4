/* test_libxsmm_step — the libxsmm backend inside the step driver: what a steady-state step converts.
 *
 * A net at batch 2 (2 threads) runs one train step (warm-up), gets a new input batch and runs a
 * second step; the conversion counters (xsmm_internal.h) must show exactly:
 *   import 3   the input batch (plain NCHW -> [n][C/B][h][w][B]; C = 3 is one block, still a
 *              conversion because the channel moves innermost) and the two dropout masks the
 *              step driver draws for each step (plain [n, 4096] -> [4096/B][n][B]);
 *   export 0;
 *   exec 3     Linear-14's flatten: Pool-13's [n][256/B][6][6][B] -> LIBXSMM's fully-connected
 *              [9216/B'][n][B'] in fwd and bwd_weights, and diff_src back in bwd_data.  Every
 *              other pair of consecutive layers shares one layout (conv, ReLU, pool: B is a
 *              function of the channel count; the Linears and the loss: [c/B][n][B], plain for
 *              the 10 classes here).
 * And no max pooling scans its src for NaN: each takes the note of the ReLU just before it (the
 * ReLU counted the NaNs it wrote: none), so max pooling costs LIBXSMM's call alone.
 * A third step from the same state must count the same (nothing lazy), the losses must be finite,
 * and so must every parameter after 3 steps.  The impl names must carry the JIT target
 * ("libxsmm:<target> ...").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/net.h"
#include "anx/rng.h"
#include "testutil.h"
#include "xsmm_internal.h"

extern const anx_backend anx_backend_libxsmm;

static void counters(uint64_t c[ANX_XSMM_CONVERT_KIND_COUNT])
{
    for (int k = 0; k < ANX_XSMM_CONVERT_KIND_COUNT; k++) c[k] = anx_libxsmm_conversion_count((anx_xsmm_conv_kind)k);
}

static void set_batch(anx_net *net, uint64_t seed)
{
    const anx_model *m = anx_net_model(net);
    size_t n = anx_desc_plain_count(&m->layers[0], ANX_SRC);
    float *x = malloc(n * sizeof *x);
    int64_t *t = malloc((size_t)m->cfg.batch * sizeof *t);
    anx_rng_fill_u01(x, n, anx_rng_key(seed, "input", 0));
    anx_rng_fill_targets(t, (size_t)m->cfg.batch, anx_rng_key(seed, "target", 0), m->cfg.n_class);
    anx_net_set_input(net, x, t);
    free(x);
    free(t);
}

static void delta(uint64_t d[ANX_XSMM_CONVERT_KIND_COUNT], const uint64_t *before, const uint64_t *after)
{
    for (int k = 0; k < ANX_XSMM_CONVERT_KIND_COUNT; k++) d[k] = after[k] - before[k];
}

static void check_impl_names(const anx_net *net)
{
    const anx_model *m = anx_net_model(net);
    char want[48];
    snprintf(want, sizeof want, "libxsmm:%s ", anx_xsmm_target());
    void *ctx = NULL;
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        if (l->op != ANX_OP_CONV2D && l->op != ANX_OP_LINEAR && l->op != ANX_OP_MAXPOOL) continue;
        TU_CHECKF(anx_backend_layer_create(&anx_backend_libxsmm, &ctx, l, 2) == NULL, "%s: layer_create", l->name);
        const char *name = anx_backend_libxsmm.impl_name(ctx, l, ANX_FWD);
        TU_CHECKF(strncmp(name, want, strlen(want)) == 0, "%s fwd impl \"%s\" does not start with \"%s\"", l->name,
                  name, want);
        anx_backend_libxsmm.layer_destroy(ctx);
    }
}

static void check_step_conversions(void)
{
    anx_model_config cfg = {3, 10, 2, 227};
    char err[256];
    anx_net *net = anx_net_create(&anx_backend_libxsmm, &cfg, 2, err, sizeof err);
    TU_CHECKF(net != NULL, "anx_net_create(libxsmm): %s", err);
    if (!net) return;
    check_impl_names(net);
    anx_net_init_params(net, 7);
    set_batch(net, 1);
    const float loss1 = tu_net_train_step(net, 1e-3f); /* warm-up: first touches, Adam state */
    uint64_t before[ANX_XSMM_CONVERT_KIND_COUNT], after[ANX_XSMM_CONVERT_KIND_COUNT];
    uint64_t d[ANX_XSMM_CONVERT_KIND_COUNT], d3[ANX_XSMM_CONVERT_KIND_COUNT];
    counters(before);
    const uint64_t scans0 = anx_libxsmm_nan_scans();
    set_batch(net, 2); /* the input batch of the steady-state step */
    const float loss2 = tu_net_train_step(net, 1e-3f);
    counters(after);
    const uint64_t scans = anx_libxsmm_nan_scans() - scans0;
    TU_CHECKF(scans == 0, "%llu max poolings scanned their src for NaN in a step, want 0 (each takes its ReLU's note)",
              (unsigned long long)scans);
    delta(d, before, after);
    printf("steady-state step conversions: import %llu, export %llu, exec %llu; losses %.6f %.6f (target %s)\n",
           (unsigned long long)d[ANX_XSMM_CONVERT_IMPORT], (unsigned long long)d[ANX_XSMM_CONVERT_EXPORT],
           (unsigned long long)d[ANX_XSMM_CONVERT_EXEC], loss1, loss2, anx_xsmm_target());
    TU_CHECKF(d[ANX_XSMM_CONVERT_IMPORT] == 3, "%llu imports in a step, want 3 (the input batch, 2 dropout masks)",
              (unsigned long long)d[ANX_XSMM_CONVERT_IMPORT]);
    TU_CHECKF(d[ANX_XSMM_CONVERT_EXPORT] == 0, "%llu exports inside the step, want 0",
              (unsigned long long)d[ANX_XSMM_CONVERT_EXPORT]);
    TU_CHECKF(d[ANX_XSMM_CONVERT_EXEC] == 3, "%llu conversions inside exec, want 3 (Linear-14's flatten)",
              (unsigned long long)d[ANX_XSMM_CONVERT_EXEC]);
    TU_CHECKF(isfinite(loss1) && isfinite(loss2), "losses %g %g", loss1, loss2);
    counters(before);
    tu_net_train_step(net, 1e-3f); /* again without a new batch: the same counts but the input's import */
    counters(after);
    delta(d3, before, after);
    for (int k = 0; k < ANX_XSMM_CONVERT_KIND_COUNT; k++)
        TU_CHECKF(d3[k] == d[k] - (k == ANX_XSMM_CONVERT_IMPORT), "conversion kind %d: %llu in the third step, %llu in the second",
                  k, (unsigned long long)d3[k], (unsigned long long)d[k]);
    const anx_model *m = anx_net_model(net);
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        size_t n = m->params[p].count;
        float *x = malloc(n * sizeof *x);
        anx_net_get_state(net, ANX_PARAM, p, x);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += !isfinite(x[i]);
        TU_CHECKF(bad == 0, "%s: %zu non-finite after 3 steps", m->params[p].name, bad);
        free(x);
    }
    anx_net_destroy(net);
}

int main(void)
{
    const char *why = anx_backend_libxsmm.unavailable();
    if (why) {
        printf("test_libxsmm_step: skipped: %s\n", why);
        return 77;
    }
    check_step_conversions();
    return tu_finish("test_libxsmm_step");
}
