/* test_ref_backend: anx_backend_ref as the rest of anx drives it — through the table, from layer
 * descriptors.  For every (op, dir) it exposes:
 *   - the exec wrapper passes the descriptor's sizes to the right kernel (same bits as a direct
 *     kernel call with the sizes written out here),
 *   - the result is bit-identical with 1 and 2 threads, and when run twice,
 *   - every output element is written (outputs are NaN-prefilled) and nothing outside (guards).
 * Plus the table's plain-layout contract: tensor_floats = plain count, import/export are copies.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/rng.h"
#include "ref/ref.h"
#include "testutil.h"

static const anx_backend *be = &anx_backend_ref;

/* Every buffer a layer may touch, NaN-prefilled and guarded, inputs filled from seed. */
typedef struct bufs {
    float *t[8]; /* src dst weights bias diff_src diff_dst diff_weights diff_bias */
    float *mask;
    int64_t *target;
    float loss;
} bufs;

static void bufs_make(bufs *b, const anx_layer_desc *l, uint64_t seed)
{
    static const char *names[8] = {"src", "dst", "weights", "bias", "diff_src", "diff_dst", "diff_weights", "diff_bias"};
    for (int i = 0; i < 8; i++) {
        size_t n = be->tensor_floats(l, (anx_slot)(i % 4));
        b->t[i] = tu_alloc(n ? n : 1, names[i]);
        if (i == 0 || i == 2 || i == 3 || i == 5) tu_fill_uniform(b->t[i], n, seed + i, -1, 1);
    }
    /* relu/dropout/pool backward read dst: give it a forward result's kind of values */
    size_t nd = be->tensor_floats(l, ANX_DST);
    tu_fill_uniform(b->t[1], nd, seed + 1, -1, 1);
    b->mask = tu_alloc(nd, "mask");
    anx_rng_fill_dropout(b->mask, nd, anx_rng_key(seed, "Dropout-16", 1), 0.5f);
    b->target = malloc((size_t)l->n * sizeof *b->target);
    anx_rng_fill_targets(b->target, (size_t)l->n, anx_rng_key(seed, "target", 0), l->ic);
    b->loss = NAN;
}

static void bufs_free(bufs *b)
{
    for (int i = 0; i < 8; i++) tu_free(b->t[i]);
    tu_free(b->mask);
    free(b->target);
}

static anx_args args_of(bufs *b)
{
    anx_args a = {b->t[0], b->t[1], b->t[2], b->t[3], b->t[4], b->t[5], b->t[6], b->t[7], b->mask, b->target, &b->loss,
                  NULL, 0}; /* ref needs no scratch */
    return a;
}

/* The output slots of (op, dir), as indices into bufs.t; -1 ends. */
static void outputs_of(const anx_layer_desc *l, anx_dir dir, int out[3])
{
    out[0] = out[1] = out[2] = -1;
    if (dir == ANX_FWD) out[0] = l->op == ANX_OP_LOSS ? -1 : 1;
    if (dir == ANX_BWD_DATA) out[0] = 4;
    if (dir == ANX_BWD_WEIGHTS) out[0] = 6, out[1] = 7;
}

/* Runs (l, dir) through the table with a team of `threads`, copies the outputs into saved. */
static void run_table(const anx_layer_desc *l, anx_dir dir, bufs *b, int threads, float **saved, float *loss)
{
    void *ctx = tu_layer_create(be, l, threads);
    anx_args a = args_of(b);
    int out[3];
    outputs_of(l, dir, out);
    for (int k = 0; k < 3 && out[k] >= 0; k++) /* refill outputs with NaN: every element must be written */
        for (size_t i = 0; i < tu_count(b->t[out[k]]); i++) b->t[out[k]][i] = NAN;
    tu_exec(be, ctx, l, dir, &a);
    for (int k = 0; k < 3 && out[k] >= 0; k++) {
        saved[k] = malloc(tu_count(b->t[out[k]]) * sizeof(float));
        memcpy(saved[k], b->t[out[k]], tu_count(b->t[out[k]]) * sizeof(float));
    }
    *loss = b->loss;
    if (be->layer_destroy) be->layer_destroy(ctx);
}

/* The same call written out against the kernels, sizes spelled from the descriptor by hand. */
static void run_direct(const anx_layer_desc *l, anx_dir dir, bufs *b, float *loss)
{
    float **t = b->t;
    int n = l->n, k = l->ic * l->ih * l->iw;
    size_t nd = (size_t)n * l->oc * l->oh * l->ow;
    switch (l->op * 3 + dir) {
    case ANX_OP_CONV2D * 3 + ANX_FWD:
        anx_f32_conv2d_fwd__ref(t[1], t[0], t[2], t[3], n, l->ic, l->ih, l->iw, l->oc, l->oh, l->ow, l->kh, l->kw, l->stride, l->pad);
        break;
    case ANX_OP_CONV2D * 3 + ANX_BWD_DATA:
        anx_f32_conv2d_bwd_data__ref(t[4], t[5], t[2], n, l->ic, l->ih, l->iw, l->oc, l->oh, l->ow, l->kh, l->kw, l->stride, l->pad);
        break;
    case ANX_OP_CONV2D * 3 + ANX_BWD_WEIGHTS:
        anx_f32_conv2d_bwd_weights__ref(t[6], t[7], t[0], t[5], n, l->ic, l->ih, l->iw, l->oc, l->oh, l->ow, l->kh, l->kw, l->stride, l->pad);
        break;
    case ANX_OP_LINEAR * 3 + ANX_FWD: anx_f32_linear_fwd__ref(t[1], t[0], t[2], t[3], n, k, l->oc); break;
    case ANX_OP_LINEAR * 3 + ANX_BWD_DATA: anx_f32_linear_bwd_data__ref(t[4], t[5], t[2], n, k, l->oc); break;
    case ANX_OP_LINEAR * 3 + ANX_BWD_WEIGHTS: anx_f32_linear_bwd_weights__ref(t[6], t[7], t[0], t[5], n, k, l->oc); break;
    case ANX_OP_RELU * 3 + ANX_FWD: anx_f32_relu_fwd__ref(t[1], t[0], nd); break;
    case ANX_OP_RELU * 3 + ANX_BWD_DATA: anx_f32_relu_bwd_data__ref(t[4], t[5], t[1], nd); break;
    case ANX_OP_MAXPOOL * 3 + ANX_FWD:
        anx_f32_maxpool_fwd__ref(t[1], t[0], n, l->ic, l->ih, l->iw, l->oh, l->ow, l->kh, l->kw, l->stride);
        break;
    case ANX_OP_MAXPOOL * 3 + ANX_BWD_DATA:
        anx_f32_maxpool_bwd_data__ref(t[4], t[5], t[0], n, l->ic, l->ih, l->iw, l->oh, l->ow, l->kh, l->kw, l->stride);
        break;
    case ANX_OP_DROPOUT * 3 + ANX_FWD: anx_f32_dropout_fwd__ref(t[1], t[0], b->mask, nd); break;
    case ANX_OP_DROPOUT * 3 + ANX_BWD_DATA: anx_f32_dropout_bwd_data__ref(t[4], t[5], b->mask, nd); break;
    case ANX_OP_LOSS * 3 + ANX_FWD: *loss = anx_f32_loss_fwd__ref(t[0], b->target, n, l->ic); break;
    case ANX_OP_LOSS * 3 + ANX_BWD_DATA: anx_f32_loss_bwd_data__ref(t[4], t[0], b->target, n, l->ic); break;
    default: TU_CHECKF(0, "no direct call for %s %s", anx_op_name(l->op), anx_dir_name(dir));
    }
}

static int all_finite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return 0;
    return 1;
}

static void check_layer(const anx_layer_desc *l, uint64_t seed)
{
    for (int d = 0; d < ANX_DIR_COUNT; d++) {
        anx_dir dir = (anx_dir)d;
        if (!be->exec[l->op][dir]) continue;
        char what[128];
        snprintf(what, sizeof what, "%s %s (%s, n%d %dx%dx%d -> %dx%dx%d)", l->name, anx_dir_name(dir),
                 be->impl_name(NULL, l, dir), l->n, l->ic, l->ih, l->iw, l->oc, l->oh, l->ow);
        TU_CHECKF(anx_backend_declines(be, l, dir) == NULL, "ref declines %s", what);
        bufs b;
        bufs_make(&b, l, seed);
        float *one[3] = {0}, *two[3] = {0}, *again[3] = {0}, loss1, loss2, loss3;
        run_table(l, dir, &b, 1, one, &loss1);
        run_table(l, dir, &b, 2, two, &loss2);
        run_table(l, dir, &b, 2, again, &loss3);
        int out[3];
        outputs_of(l, dir, out);
        for (int k = 0; k < 3 && out[k] >= 0; k++) {
            size_t n = tu_count(b.t[out[k]]);
            char w2[192];
            snprintf(w2, sizeof w2, "%s: 1 vs 2 threads", what);
            tu_expect_bitwise(two[k], one[k], n, w2);
            snprintf(w2, sizeof w2, "%s: run twice", what);
            tu_expect_bitwise(again[k], two[k], n, w2);
            TU_CHECKF(all_finite(one[k], n), "%s: output %d has a NaN/inf (an element not written?)", what, k);
        }
        if (l->op == ANX_OP_LOSS && dir == ANX_FWD) {
            TU_CHECKF(memcmp(&loss1, &loss2, sizeof loss1) == 0 && isfinite(loss1), "%s: loss %g vs %g", what, loss1, loss2);
        }
        /* the direct kernel call gives the same bits */
        float loss_d = NAN;
        run_direct(l, dir, &b, &loss_d);
        for (int k = 0; k < 3 && out[k] >= 0; k++) {
            char w2[192];
            snprintf(w2, sizeof w2, "%s: table vs direct kernel", what);
            tu_expect_bitwise(b.t[out[k]], one[k], tu_count(b.t[out[k]]), w2);
        }
        if (l->op == ANX_OP_LOSS && dir == ANX_FWD)
            TU_CHECKF(memcmp(&loss_d, &loss1, sizeof loss1) == 0, "%s: table loss %g vs direct %g", what, loss1, loss_d);
        for (int k = 0; k < 3; k++) free(one[k]), free(two[k]), free(again[k]);
        bufs_free(&b);
    }
}

/* A layer descriptor by hand (shapes not in the model: odd sizes, larger batch). */
static anx_layer_desc desc(anx_op op, const char *name, int n, int ic, int ih, int iw, int oc, int k, int stride, int pad)
{
    anx_layer_desc l;
    memset(&l, 0, sizeof l);
    l.op = op;
    snprintf(l.name, sizeof l.name, "%s", name);
    l.n = n, l.ic = ic, l.ih = ih, l.iw = iw;
    l.kh = l.kw = k, l.stride = stride, l.pad = pad;
    switch (op) {
    case ANX_OP_CONV2D:
    case ANX_OP_MAXPOOL:
        l.oc = op == ANX_OP_CONV2D ? oc : ic;
        l.oh = (ih - k + 2 * pad) / stride + 1, l.ow = (iw - k + 2 * pad) / stride + 1;
        break;
    case ANX_OP_LINEAR: l.oc = oc, l.oh = l.ow = 1, l.kh = ih, l.kw = iw; break;
    case ANX_OP_LOSS: l.oc = l.oh = l.ow = 1; break;
    default: l.oc = ic, l.oh = ih, l.ow = iw, l.p = 0.5f; break;
    }
    return l;
}

static void test_plain_layout(const anx_layer_desc *l)
{
    for (int s = 0; s < ANX_SLOT_COUNT; s++) {
        size_t n = anx_desc_plain_count(l, (anx_slot)s);
        TU_CHECKF(be->tensor_floats(l, (anx_slot)s) == n, "%s slot %d: tensor_floats != plain count", l->name, s);
        if (!n) continue;
        float *plain = tu_alloc(n, "plain"), *mine = tu_alloc(n, "backend"), *back = tu_alloc(n, "exported");
        tu_fill_uniform(plain, n, 99 + s, -1, 1);
        be->tensor_import(l, (anx_slot)s, mine, plain);
        be->tensor_export(l, (anx_slot)s, back, mine);
        tu_expect_bitwise(back, plain, n, "import/export round trip");
        tu_free(plain), tu_free(mine), tu_free(back);
    }
}

int main(void)
{
    printf("backend %s, OpenMP max threads %d (seed 1000)\n", be->name, omp_get_max_threads());
    TU_CHECK(be->unavailable == NULL || be->unavailable() == NULL);
    TU_CHECK(anx_backend_find("ref") == be);
    TU_CHECK(be->adam != NULL);

    const anx_layer_desc hand[] = {
        desc(ANX_OP_CONV2D, "conv k3 s1 p1", 2, 5, 13, 13, 7, 3, 1, 1),
        desc(ANX_OP_CONV2D, "conv k11 s4 p0", 2, 3, 31, 31, 6, 11, 4, 0),
        desc(ANX_OP_CONV2D, "conv k5 s2 p2", 3, 4, 12, 9, 5, 5, 2, 2),
        desc(ANX_OP_MAXPOOL, "pool k3 s2", 2, 7, 13, 13, 0, 3, 2, 0),
        desc(ANX_OP_LINEAR, "linear 16x3x3", 3, 16, 3, 3, 37, 0, 0, 0),
        desc(ANX_OP_LINEAR, "linear 300", 2, 300, 1, 1, 700, 0, 0, 0),
        desc(ANX_OP_RELU, "relu", 2, 9, 5, 5, 0, 0, 0, 0),
        desc(ANX_OP_DROPOUT, "dropout", 2, 100, 1, 1, 0, 0, 0, 0),
        desc(ANX_OP_LOSS, "loss", 4, 10, 1, 1, 0, 0, 0, 0),
    };
    for (size_t i = 0; i < sizeof hand / sizeof *hand; i++) check_layer(&hand[i], 1000 + i);

    /* the model's own descriptors at a small input (in_dim 1, 10 classes, batch 2, 227x227):
       the real layer shapes at a size the quick label can afford */
    anx_model m;
    char err[256];
    anx_model_config cfg = {1, 10, 2, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m.layers[i];
        test_plain_layout(l);
        /* the three 3x3 convs at full channel counts are covered by the hand cases' code paths;
           keep the quick label quick: run the model layers whose cost is small */
        if (anx_desc_flops(l, ANX_FWD) < 4e8) check_layer(l, 2000 + i);
    }
    check_layer(&m.loss, 3000);

    /* Adam through the table: 1 vs 2 threads */
    enum { NA = 100003 };
    float *p1 = tu_alloc(NA, "p1"), *p2 = tu_alloc(NA, "p2"), *g = tu_alloc(NA, "g");
    float *m1 = tu_alloc(NA, "m1"), *m2 = tu_alloc(NA, "m2"), *v1 = tu_alloc(NA, "v1"), *v2 = tu_alloc(NA, "v2");
    tu_fill_uniform(p1, NA, 4, -1, 1);
    memcpy(p2, p1, NA * sizeof *p1);
    memset(m1, 0, NA * sizeof *m1), memset(v1, 0, NA * sizeof *v1);
    memset(m2, 0, NA * sizeof *m2), memset(v2, 0, NA * sizeof *v2);
    for (int t = 1; t <= 2; t++) {
        tu_fill_uniform(g, NA, 40 + t, -1, 1);
        anx_adam_hparams hp = {1e-3f, 0.9f, 0.999f, 1e-8f, t};
        be->adam(p1, g, m1, v1, NA, &hp, 1);
        be->adam(p2, g, m2, v2, NA, &hp, 2);
    }
    tu_expect_bitwise(p2, p1, NA, "adam param 1 vs 2 threads");
    tu_expect_bitwise(m2, m1, NA, "adam exp_avg 1 vs 2 threads");
    tu_expect_bitwise(v2, v1, NA, "adam exp_avg_sq 1 vs 2 threads");
    tu_free(p1), tu_free(p2), tu_free(g), tu_free(m1), tu_free(m2), tu_free(v1), tu_free(v2);
    return tu_finish("test_ref_backend");
}
