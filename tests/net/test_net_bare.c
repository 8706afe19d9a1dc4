/* test_net_bare — the step driver's timing-only bare mode (anx_net_set_bare) on a fake backend
 * that computes nothing and counts its calls, so no library is needed and Alexnet's step takes
 * microseconds:
 *  - a normal net calls exec for every (layer, direction) of the step and never library_exec;
 *  - a bare net runs exec once per (layer, direction) (library_exec's contract: after one exec),
 *    then library_exec wherever the backend has one (conv all three directions, pool fwd and
 *    bwd_data, linear fwd only: a partial table) and exec for the rest, and times every call;
 *  - a bare call that makes the data non-finite (the fake's write NaN, as a real bare call's
 *    skipped glue may leave garbage) does not stop the step: it returns 0 with a NaN loss;
 *  - a bare call's failure is reported as one ("(bare call)"); switching bare off goes back to
 *    exec everywhere; a backend without library_exec is told so (anx_net_set_bare returns 0).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/net.h"
#include "testutil.h"

#define NL ANX_NUM_LAYERS
enum { EXEC, BARE };
static int g_calls[2][NL + 1][ANX_DIR_COUNT]; /* [exec or bare][layer][dir] */
static int g_fail_bare;                       /* 1: the next bare call returns a status */

/* An exec lasts at least 2 us, so that a (layer, dir) whose seconds the net did not record
 * reads 0 and fails the check, whatever the clock's resolution; a bare call at least 1 ms, so
 * that seconds left over from the exec before it (2 us and a little) do not pass for its own. */
#define EXEC_S 2e-6
#define BARE_S 1e-3
static void spin(double seconds)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do clock_gettime(CLOCK_MONOTONIC, &t);
    while ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) < seconds);
}

static anx_status counted(const anx_layer_desc *l, anx_dir dir, int kind, const anx_args *a)
{
    g_calls[kind][l->index - 1][dir]++; /* index: torchsummary row 1..20, the loss 21 */
    spin(kind == BARE ? BARE_S : EXEC_S);
    if (kind == EXEC) {
        if (l->op == ANX_OP_LOSS && dir == ANX_FWD) *a->loss = a->src[0]; /* NaN logits: NaN loss */
        return NULL;
    }
    if (g_fail_bare) return g_fail_bare = 0, "planted bare failure";
    float *out = dir == ANX_FWD ? a->dst : dir == ANX_BWD_DATA ? a->diff_src : a->diff_weights;
    out[0] = NAN;
    return NULL;
}

#define FAKE_CALL(kind, dir, suffix)                                                          \
    static anx_status fake_##suffix(void *ctx, const anx_layer_desc *l, const anx_args *a)   \
    {                                                                                         \
        (void)ctx;                                                                            \
        return counted(l, dir, kind, a);                                                      \
    }
FAKE_CALL(EXEC, ANX_FWD, fwd)
FAKE_CALL(EXEC, ANX_BWD_DATA, bwd_data)
FAKE_CALL(EXEC, ANX_BWD_WEIGHTS, bwd_weights)
FAKE_CALL(BARE, ANX_FWD, bare_fwd)
FAKE_CALL(BARE, ANX_BWD_DATA, bare_bwd_data)
FAKE_CALL(BARE, ANX_BWD_WEIGHTS, bare_bwd_weights)

/* Plain layout; weights and biases get 16 floats (the fake never reads them and nothing sets
 * them), so the net allocates kilobytes instead of Alexnet's 0.9 GB of parameter state. */
static size_t fake_floats(const anx_layer_desc *l, anx_slot slot)
{
    return slot == ANX_WEIGHTS || slot == ANX_BIAS ? 16 : anx_desc_plain_count(l, slot);
}

static void fake_import(const anx_layer_desc *l, anx_slot slot, float *dst, const float *plain)
{
    if (slot == ANX_SRC || slot == ANX_DST) memcpy(dst, plain, anx_desc_plain_count(l, slot) * sizeof *dst);
}

static void fake_export(const anx_layer_desc *l, anx_slot slot, float *plain, const float *src)
{
    if (slot == ANX_SRC || slot == ANX_DST) memcpy(plain, src, anx_desc_plain_count(l, slot) * sizeof *plain);
}

static void fake_adam(float *param, const float *grad, float *m, float *v, size_t n, const anx_adam_hparams *hp,
                      int threads)
{
    (void)param, (void)grad, (void)m, (void)v, (void)n, (void)hp, (void)threads;
}

#define EXECS {fake_fwd, fake_bwd_data, fake_bwd_weights}
#define EXECS2 {fake_fwd, fake_bwd_data, NULL}
static const anx_backend kFake = {
    .name = "fake",
    .tensor_floats = fake_floats,
    .tensor_import = fake_import,
    .tensor_export = fake_export,
    .exec = {[ANX_OP_CONV2D] = EXECS, [ANX_OP_RELU] = EXECS2, [ANX_OP_MAXPOOL] = EXECS2,
             [ANX_OP_LINEAR] = EXECS, [ANX_OP_DROPOUT] = EXECS2, [ANX_OP_LOSS] = EXECS2},
    .adam = fake_adam,
    .library_exec = {[ANX_OP_CONV2D] = {fake_bare_fwd, fake_bare_bwd_data, fake_bare_bwd_weights},
                     [ANX_OP_MAXPOOL] = {fake_bare_fwd, fake_bare_bwd_data, NULL},
                     [ANX_OP_LINEAR] = {fake_bare_fwd, NULL, NULL}},
};

static const anx_layer_desc *desc(const anx_net *net, int i)
{
    return i == NL ? &anx_net_model(net)->loss : &anx_net_model(net)->layers[i];
}

static int step_runs(const anx_net *net, int i, int d)
{
    if (d == ANX_BWD_WEIGHTS && !anx_desc_has_weights(desc(net, i))) return 0;
    return !(d == ANX_BWD_DATA && i == 0);
}

static anx_net *make_net(const anx_backend *be)
{
    const anx_model_config cfg = {3, 10, 1, 227};
    char err[256];
    anx_net *net = anx_net_create(be, &cfg, 1, err, sizeof err);
    TU_CHECKF(net != NULL, "anx_net_create: %s", err);
    if (!net) return NULL;
    static float input[3 * 227 * 227];
    const int64_t target[1] = {3};
    TU_CHECK(anx_net_set_input(net, input, target) == 0);
    return net;
}

/* steps training steps; each must return 0.  The loss of the last one. */
static float steps(anx_net *net, int n)
{
    memset(g_calls, 0, sizeof g_calls);
    float loss = 0;
    for (int s = 0; s < n; s++) TU_CHECKF(anx_net_train_step(net, 1e-3f, &loss) == 0, "step: %s", anx_net_error(net));
    return loss;
}

/* After n steps: each (layer, dir) the step runs had `exec_n` execs and `bare_n` bare calls where
 * the backend has a library_exec, n execs and no bare call elsewhere; the rest nothing; every
 * run one has the seconds of its last call.  Prints the first mismatch only. */
static void expect_calls(const anx_net *net, const anx_backend *be, int n, int exec_n, int bare_n, const char *what)
{
    int bad = 0;
    for (int i = 0; i <= NL && !bad; i++)
        for (int d = 0; d < ANX_DIR_COUNT && !bad; d++) {
            const anx_layer_desc *l = desc(net, i);
            const int runs = step_runs(net, i, d), has = runs && be->library_exec[l->op][d];
            const int we = !runs ? 0 : has ? exec_n : n, wb = has ? bare_n : 0;
            if (g_calls[EXEC][i][d] != we || g_calls[BARE][i][d] != wb) {
                TU_CHECKF(0, "%s: %s %s: %d execs, %d bare calls; want %d, %d", what, l->name,
                          anx_dir_name((anx_dir)d), g_calls[EXEC][i][d], g_calls[BARE][i][d], we, wb);
                bad = 1;
            } else if (runs && !(anx_net_layer_seconds(net, i, (anx_dir)d) >= (has && bare_n ? BARE_S : EXEC_S))) {
                TU_CHECKF(0, "%s: %s %s: %.3g s recorded for a call of >= %g s", what, l->name,
                          anx_dir_name((anx_dir)d), anx_net_layer_seconds(net, i, (anx_dir)d),
                          has && bare_n ? BARE_S : EXEC_S);
                bad = 1;
            }
        }
    TU_CHECKF(!bad, "%s: every (layer, direction) called as expected", what);
}

int main(void)
{
    anx_net *net = make_net(&kFake);
    if (!net) return tu_finish("test_net_bare");
    float loss = steps(net, 2);
    expect_calls(net, &kFake, 2, 2, 0, "normal mode");
    TU_CHECKF(loss == 0.0f, "normal mode: loss %g, want 0 (no bare call wrote a NaN)", (double)loss);
    anx_net_destroy(net);

    /* conv 5 x 3 minus Conv2d-1's bwd_data, pool 3 x 2, linear fwd 3 */
    net = make_net(&kFake);
    if (!net) return tu_finish("test_net_bare");
    TU_CHECKF(anx_net_set_bare(net, 1) == 23, "anx_net_set_bare: %d (layer, dir)s with a library_exec, want 23",
              anx_net_set_bare(net, 1));
    steps(net, 1);
    expect_calls(net, &kFake, 1, 1, 0, "bare mode, first step (exec once before the bare call)");
    loss = steps(net, 2);
    expect_calls(net, &kFake, 2, 0, 2, "bare mode, steps 2-3");
    TU_CHECKF(isnan(loss), "bare mode: loss %g; the fake's bare fc8 fwd wrote a NaN logit", (double)loss);

    g_fail_bare = 1;
    float l2;
    TU_CHECK(anx_net_train_step(net, 1e-3f, &l2) == -1);
    TU_CHECKF(strstr(anx_net_error(net), "Conv2d-1 fwd on fake (bare call): planted bare failure") != NULL,
              "error '%s'", anx_net_error(net));

    TU_CHECK(anx_net_set_bare(net, 0) == 23);
    steps(net, 1);
    expect_calls(net, &kFake, 1, 1, 0, "bare mode switched off");
    anx_net_destroy(net);

    anx_backend plain = kFake;
    memset(plain.library_exec, 0, sizeof plain.library_exec);
    net = make_net(&plain);
    if (!net) return tu_finish("test_net_bare");
    TU_CHECK(anx_net_set_bare(net, 1) == 0);
    steps(net, 2);
    expect_calls(net, &plain, 2, 2, 0, "bare mode without library_exec");
    anx_net_destroy(net);
    return tu_finish("test_net_bare");
}
