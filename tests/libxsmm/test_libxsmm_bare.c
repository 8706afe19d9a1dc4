/* test_libxsmm_bare — the "bare LIBXSMM call" anx-bench times beside each libxsmm row (the
 * backend's library_exec, rows <op>_<dir>/<tag>/libxsmm_bare/...) is LIBXSMM's own work of that
 * exec and nothing less: for every conv, pool and linear layer of Alexnet(3, 10) at batch 2 on 1
 * thread (the same handle either way; LIBXSMM's spinning barrier makes 2 slow on a loaded
 * machine) and each direction, with the bias imported as 0 (the only thing the bare call leaves
 * out besides the flatten and the checks), library_exec after one exec gives the same bits as the
 * exec did in its output: dst, diff_src or diff_weights; for Linear-14's bwd_data, whose LIBXSMM
 * output is the ctx's flattened diff_src (the exec converts it back), that buffer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/rng.h"
#include "testutil.h"
#include "xsmm_internal.h"

extern const anx_backend anx_backend_libxsmm;
#define THREADS 1

enum { B_SRC, B_DST, B_W, B_BIAS, B_DSRC, B_DDST, B_DW, B_DBIAS, B_COUNT };
static const anx_slot kSlot[B_COUNT] = {ANX_SRC, ANX_DST, ANX_WEIGHTS, ANX_BIAS, ANX_SRC, ANX_DST, ANX_WEIGHTS, ANX_BIAS};

/* The buffer exec writes in dir (and its size), or the ctx's flat copy for Linear-14's bwd_data. */
static float *output_of(xs_ctx *c, const anx_layer_desc *l, anx_dir dir, float **buf, const size_t *n, size_t *count)
{
    if (dir == ANX_BWD_DATA && l->op == ANX_OP_LINEAR && l->ih * l->iw > 1) {
        *count = (size_t)l->n * (size_t)(l->ic * l->ih * l->iw);
        return c->dflat;
    }
    const int b = dir == ANX_FWD ? B_DST : dir == ANX_BWD_DATA ? B_DSRC : B_DW;
    *count = n[b];
    return buf[b];
}

static void check_layer(const anx_layer_desc *l)
{
    const anx_backend *be = &anx_backend_libxsmm;
    float *buf[B_COUNT] = {0};
    size_t n[B_COUNT] = {0};
    for (int b = 0; b < B_COUNT; b++) {
        if ((kSlot[b] == ANX_WEIGHTS || kSlot[b] == ANX_BIAS) && !anx_desc_has_weights(l)) continue;
        n[b] = be->tensor_floats(l, kSlot[b]);
        buf[b] = tu_alloc(n[b], l->name);
        if (b != B_SRC && b != B_W && b != B_BIAS && b != B_DDST) continue; /* outputs: NaN */
        const size_t plain_n = anx_desc_plain_count(l, kSlot[b]);
        float *plain = malloc(plain_n * sizeof *plain);
        anx_rng_fill_uniform(plain, plain_n, anx_rng_key(3, l->name, (uint64_t)b), 1.0);
        if (b == B_BIAS) memset(plain, 0, plain_n * sizeof *plain);
        be->tensor_import(l, kSlot[b], buf[b], plain);
        free(plain);
    }
    const anx_args a = {.src = buf[B_SRC], .dst = buf[B_DST], .weights = buf[B_W], .bias = buf[B_BIAS],
                        .diff_src = buf[B_DSRC], .diff_dst = buf[B_DDST], .diff_weights = buf[B_DW],
                        .diff_bias = buf[B_DBIAS]};
    void *ctx = tu_layer_create(be, l, THREADS);
    const int ndir = anx_desc_has_weights(l) ? ANX_DIR_COUNT : ANX_BWD_WEIGHTS;
    for (int d = 0; ctx && d < ndir; d++) {
        char what[96];
        snprintf(what, sizeof what, "%s %s: library_exec vs exec", l->name, anx_dir_name((anx_dir)d));
        TU_CHECKF(be->library_exec[l->op][d] != NULL, "%s: no library_exec", what);
        if (!be->library_exec[l->op][d] || tu_exec(be, ctx, l, (anx_dir)d, &a)) continue;
        size_t count;
        float *out = output_of(ctx, l, (anx_dir)d, buf, n, &count);
        float *want = malloc(count * sizeof *want);
        memcpy(want, out, count * sizeof *want);
        for (size_t i = 0; i < count; i++) out[i] = NAN;
        anx_status st = be->library_exec[l->op][d](ctx, l, &a);
        TU_CHECKF(st == NULL, "%s: %s", what, st);
        tu_expect_bitwise(out, want, count, what);
        free(want);
    }
    if (ctx) be->layer_destroy(ctx);
    for (int b = 0; b < B_COUNT; b++)
        if (buf[b]) tu_free(buf[b]);
}

int main(void)
{
    const char *why = anx_backend_libxsmm.unavailable();
    if (why) {
        printf("test_libxsmm_bare: skipped: %s\n", why);
        return 77;
    }
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 10, 2, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    int layers = 0;
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m.layers[i];
        if (l->op != ANX_OP_CONV2D && l->op != ANX_OP_LINEAR && l->op != ANX_OP_MAXPOOL) continue;
        check_layer(l);
        layers++;
    }
    printf("test_libxsmm_bare: %d layers (target %s)\n", layers, anx_xsmm_target());
    return tu_finish("test_libxsmm_bare");
}
