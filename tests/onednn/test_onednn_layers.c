/* test_onednn_layers — every layer and direction of the oneDNN backend against the ref backend,
 * both driven only through the anx_backend interface (import, exec, export).
 *
 * Tiers (DESIGN.md section 5):
 *   exact   integer-valued inputs in [-2, 2] (benchdnn's trick): every partial sum is an integer
 *           far below 2^24, so any summation order is exact and oneDNN must match ref bit for bit
 *           in fwd, bwd_data and bwd_weights.
 *   random  uniform inputs: |onednn - ref| <= 2 gamma(K) * M / (1 - gamma(K)) per element, where
 *           K is the accumulation length behind that output, gamma(K) = K u / (1 - K u), u = 2^-24
 *           (Higham's bound for a sum of K products in any order, once for each backend), and M
 *           = sum of |a||b| behind the output, computed by ref from |inputs|.  Element-wise ops
 *           (relu, dropout, pool fwd) and the loss (double sums in the same order) stay bitwise;
 *           relu backward up to the sign of zeros (see expect_bitwise_but_zero_sign).
 * Shapes: Alexnet(3, 10) at batch 1 and 3 (every layer), Conv2d-1 for in_dim 1 and 4 and inputs
 * 228 / 230 (floor mode leaves pixels unused), and small layers whose channel counts are not a
 * multiple of oneDNN's block (padding must be zero on import and stay zero through every exec).
 * Every buffer is NaN-prefilled and guarded (testutil), so an unwritten output shows as NaN.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "onednn_internal.h"
#include "testutil.h"

#define U (1.0 / 16777216.0) /* unit roundoff of float32 */
#define THREADS 2

static uint64_t g_seed = 20261127;

/* Plain tensors of one layer call, and what the call wrote. */
typedef struct io {
    float *src, *dst, *w, *b, *dsrc, *ddst, *dw, *db, *mask;
    int64_t *target;
    float loss;
} io;

static size_t plain(const anx_layer_desc *l, anx_slot s)
{
    if (l->op == ANX_OP_LOSS && s == ANX_DST) return (size_t)l->n;
    return anx_desc_plain_count(l, s);
}

/* A backend buffer for slot s: NaN-filled and guarded; imported from p when p is given. */
static float *bbuf(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *p, const char *what)
{
    float *b = tu_alloc(be->tensor_floats(l, s), what);
    if (p) be->tensor_import(l, s, b, p);
    return b;
}

static float *export_new(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *b, const char *what)
{
    float *p = tu_alloc(plain(l, s), what);
    be->tensor_export(l, s, p, b);
    return p;
}

/* Is every float of a backend buffer outside the plain tensor zero?  (Adam runs over padding.) */
static int padding_zero(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *b)
{
    size_t nb = be->tensor_floats(l, s), np = plain(l, s);
    if (nb == np) return 1;
    float *ones = malloc(np * sizeof *ones), *mark = tu_alloc(nb, "mark");
    for (size_t i = 0; i < np; i++) ones[i] = 1.0f;
    be->tensor_import(l, s, mark, ones); /* 1 where a real element lives, 0 in the padding */
    int ok = 1;
    for (size_t i = 0; i < nb; i++)
        if (mark[i] == 0.0f && !(b[i] == 0.0f)) ok = 0;
    free(ones);
    tu_free(mark);
    return ok;
}

/* Runs (l, dir) on be from plain inputs in `in`, exports the outputs into `out` (fresh buffers). */
static void run(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, const io *in, io *out, int fwd_first)
{
    void *ctx = tu_layer_create(be, l, THREADS);
    anx_args a = {0};
    int w = anx_desc_has_weights(l);
    a.src = bbuf(be, l, ANX_SRC, in->src, "src");
    a.dst = bbuf(be, l, ANX_DST, dir == ANX_FWD ? NULL : in->dst, "dst");
    if (w) {
        a.weights = bbuf(be, l, ANX_WEIGHTS, in->w, "weights");
        a.bias = bbuf(be, l, ANX_BIAS, in->b, "bias");
        a.diff_weights = bbuf(be, l, ANX_WEIGHTS, NULL, "diff_weights");
        a.diff_bias = bbuf(be, l, ANX_BIAS, NULL, "diff_bias");
    }
    float *mask = l->op == ANX_OP_DROPOUT ? bbuf(be, l, ANX_DST, in->mask, "mask") : NULL;
    a.mask = mask;
    a.diff_src = bbuf(be, l, ANX_SRC, NULL, "diff_src");
    a.diff_dst = bbuf(be, l, ANX_DST, in->ddst, "diff_dst");
    a.target = in->target;
    a.loss = &out->loss;
    if (fwd_first && dir != ANX_FWD) tu_exec(be, ctx, l, ANX_FWD, &a); /* the net's order */
    tu_exec(be, ctx, l, dir, &a);
    if (dir == ANX_FWD && l->op != ANX_OP_LOSS) {
        out->dst = export_new(be, l, ANX_DST, a.dst, "dst out");
        TU_CHECKF(padding_zero(be, l, ANX_DST, a.dst), "%s %s: dst padding not zero", be->name, l->name);
    }
    if (dir == ANX_BWD_DATA) {
        out->dsrc = export_new(be, l, ANX_SRC, a.diff_src, "diff_src out");
        TU_CHECKF(padding_zero(be, l, ANX_SRC, a.diff_src), "%s %s: diff_src padding not zero", be->name, l->name);
    }
    if (dir == ANX_BWD_WEIGHTS) {
        out->dw = export_new(be, l, ANX_WEIGHTS, a.diff_weights, "diff_weights out");
        out->db = export_new(be, l, ANX_BIAS, a.diff_bias, "diff_bias out");
        TU_CHECKF(padding_zero(be, l, ANX_WEIGHTS, a.diff_weights), "%s %s: diff_weights padding not zero",
                  be->name, l->name);
    }
    float *bufs[] = {a.src, a.dst, a.weights, a.bias, a.diff_weights, a.diff_bias, mask, a.diff_src, a.diff_dst};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) tu_free(bufs[i]);
    if (ctx) be->layer_destroy(ctx);
}

static void io_free(io *x)
{
    float *p[] = {x->src, x->dst, x->w, x->b, x->dsrc, x->ddst, x->dw, x->db, x->mask};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) tu_free(p[i]);
    free(x->target);
    memset(x, 0, sizeof *x);
}

static float *fill(size_t n, int exact, uint64_t seed, const char *what)
{
    float *p = tu_alloc(n, what);
    if (exact) tu_fill_int(p, n, seed, -2, 2, 0.7);
    else tu_fill_uniform(p, n, seed, -1.0f, 1.0f);
    return p;
}

static float *absdup(const float *p, size_t n)
{
    if (!p) return NULL;
    float *q = tu_alloc(n, "abs");
    for (size_t i = 0; i < n; i++) q[i] = fabsf(p[i]);
    return q;
}

/* Inputs for (l, dir): src, weights, bias, diff_dst, mask, target; dst = ref fwd of src when a
 * backward needs it (relu reads dst). */
static void make_inputs(const anx_layer_desc *l, int exact, io *in)
{
    memset(in, 0, sizeof *in);
    uint64_t s = g_seed + (uint64_t)l->index * 100 + (uint64_t)exact;
    in->src = fill(plain(l, ANX_SRC), exact, s + 1, "src in");
    if (anx_desc_has_weights(l)) {
        in->w = fill(plain(l, ANX_WEIGHTS), exact, s + 2, "w in");
        in->b = fill(plain(l, ANX_BIAS), exact, s + 3, "b in");
    }
    in->ddst = fill(plain(l, ANX_DST), exact, s + 4, "ddst in");
    if (l->op == ANX_OP_DROPOUT) {
        in->mask = tu_alloc(plain(l, ANX_DST), "mask in");
        tu_fill_uniform(in->mask, plain(l, ANX_DST), s + 5, 0.0f, 1.0f);
        for (size_t i = 0; i < plain(l, ANX_DST); i++) in->mask[i] = in->mask[i] >= l->p ? 1.0f / (1.0f - l->p) : 0.0f;
    }
    if (l->op == ANX_OP_LOSS) {
        in->target = malloc((size_t)l->n * sizeof *in->target);
        for (int i = 0; i < l->n; i++) in->target[i] = (i * 7 + 3) % (l->ic * l->ih * l->iw);
    }
    if (l->op == ANX_OP_RELU || l->op == ANX_OP_MAXPOOL) { /* dst consistent with src */
        io o = {0};
        run(&anx_backend_ref, l, ANX_FWD, in, &o, 0);
        in->dst = o.dst;
    }
}

/* Accumulation length K behind each output of (l, dir), per output tensor. */
static double k_len(const anx_layer_desc *l, anx_dir dir, int bias_out)
{
    switch (l->op) {
    case ANX_OP_CONV2D:
    case ANX_OP_LINEAR:
        if (dir == ANX_FWD) return (double)l->ic * l->kh * l->kw + 1; /* + the bias */
        if (dir == ANX_BWD_DATA) return (double)l->oc * (l->op == ANX_OP_CONV2D ? l->kh * l->kw : 1);
        (void)bias_out; /* diff_weights and diff_bias both sum over (n, oh, ow) */
        return (double)l->n * l->oh * l->ow;
    case ANX_OP_MAXPOOL: return (double)l->kh * l->kw; /* overlapping windows add up */
    default: return 1;
    }
}

static void expect_bounded(const float *got, const float *want, const float *mag, size_t n, double k,
                           const char *what)
{
    double g = k * U / (1 - k * U);
    double *w = malloc(n * sizeof *w), *b = malloc(n * sizeof *b);
    for (size_t i = 0; i < n; i++) {
        w[i] = want[i];
        b[i] = 2 * g * mag[i] / (1 - g); /* M itself was summed in float: M_true <= M / (1 - g) */
    }
    tu_expect_within(got, w, b, n, what);
    free(w);
    free(b);
}

/* Bitwise, except that a zero may differ in sign: oneDNN's relu backward writes diff_dst * 0,
 * which is -0 for a negative diff_dst, where PyTorch (and ref) write +0.  IEEE -0 == +0, so no
 * later sum can differ in value; every other bit must match, and the sign flips are counted. */
static void expect_bitwise_but_zero_sign(const float *got, const float *want, size_t n, const char *what)
{
    size_t flips = 0, bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], sizeof(float)) == 0) continue;
        if (got[i] == 0.0f && want[i] == 0.0f) {
            flips++;
            continue;
        }
        if (!bad++) first = i;
    }
    TU_CHECKF(bad == 0, "%s: %zu of %zu elements differ beyond the sign of a zero, first at [%zu]: got %.9g want %.9g",
              what, bad, n, first, bad ? got[first] : 0.0, bad ? want[first] : 0.0);
    if (flips) printf("  %s: %zu zeros are -0 where ref has +0 (oneDNN's diff_dst * 0)\n", what, flips);
}

/* One (layer, direction, tier): onednn against ref. */
static void check(const anx_layer_desc *l, anx_dir dir, int exact, int fwd_first)
{
    const anx_backend *ob = &anx_backend_onednn, *rb = &anx_backend_ref;
    const char *why = anx_backend_declines(ob, l, dir);
    if (why) {
        if (exact) printf("%s %s n%d: skipped: %s\n", l->name, anx_dir_name(dir), l->n, why);
        return;
    }
    io in, o = {0}, r = {0};
    make_inputs(l, exact, &in);
    run(ob, l, dir, &in, &o, fwd_first);
    run(rb, l, dir, &in, &r, fwd_first);
    char what[160];
    snprintf(what, sizeof what, "%s %s n%d %s%s", l->name, anx_dir_name(dir), l->n, exact ? "exact" : "random",
             fwd_first ? " after fwd" : "");
    /* element-wise ops, pool fwd and the loss are bitwise in both tiers */
    int bitwise = exact || l->op == ANX_OP_RELU || l->op == ANX_OP_DROPOUT || l->op == ANX_OP_LOSS ||
                  (l->op == ANX_OP_MAXPOOL && dir == ANX_FWD);
    io m = {0}; /* magnitudes from |inputs| */
    if (!bitwise) {
        io ai = in;
        ai.src = absdup(in.src, plain(l, ANX_SRC));
        ai.w = absdup(in.w, plain(l, ANX_WEIGHTS));
        ai.b = absdup(in.b, plain(l, ANX_BIAS));
        ai.ddst = absdup(in.ddst, plain(l, ANX_DST));
        if (l->op == ANX_OP_MAXPOOL) { /* same winners: keep the signed src */
            tu_free(ai.src);
            ai.src = in.src;
        }
        run(rb, l, dir, &ai, &m, fwd_first);
        if (l->op != ANX_OP_MAXPOOL) tu_free(ai.src);
        tu_free(ai.w), tu_free(ai.b), tu_free(ai.ddst);
    }
    struct { float *g, *w, *m; size_t n; const char *name; double k; } outs[] = {
        {o.dst, r.dst, m.dst, plain(l, ANX_DST), "dst", k_len(l, dir, 0)},
        {o.dsrc, r.dsrc, m.dsrc, plain(l, ANX_SRC), "diff_src", k_len(l, dir, 0)},
        {o.dw, r.dw, m.dw, plain(l, ANX_WEIGHTS), "diff_weights", k_len(l, dir, 0)},
        {o.db, r.db, m.db, plain(l, ANX_BIAS), "diff_bias", k_len(l, dir, 1)},
    };
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
        if (!outs[i].g) continue;
        char w2[200];
        snprintf(w2, sizeof w2, "%s: %s", what, outs[i].name);
        if (l->op == ANX_OP_RELU && dir == ANX_BWD_DATA)
            expect_bitwise_but_zero_sign(outs[i].g, outs[i].w, outs[i].n, w2);
        else if (bitwise) tu_expect_bitwise(outs[i].g, outs[i].w, outs[i].n, w2);
        else expect_bounded(outs[i].g, outs[i].w, outs[i].m, outs[i].n, outs[i].k, w2);
    }
    if (l->op == ANX_OP_LOSS && dir == ANX_FWD)
        TU_CHECKF(memcmp(&o.loss, &r.loss, sizeof o.loss) == 0, "%s: loss %.9g vs ref %.9g", what, o.loss, r.loss);
    io_free(&in), io_free(&o), io_free(&r), io_free(&m);
    printf("  checked %s\n", what);
}

static void check_layer(const anx_layer_desc *l)
{
    for (int exact = 1; exact >= 0; exact--)
        for (int d = 0; d < ANX_DIR_COUNT; d++) {
            if (d == ANX_BWD_WEIGHTS && !anx_desc_has_weights(l)) continue;
            check(l, (anx_dir)d, exact, 0);
            if (l->op == ANX_OP_MAXPOOL && d == ANX_BWD_DATA) check(l, ANX_BWD_DATA, exact, 1);
        }
}

static int model(anx_model *m, int in_dim, int n_class, int batch, int hw)
{
    anx_model_config cfg = {in_dim, n_class, batch, hw};
    char err[256];
    int rc = anx_model_init(m, &cfg, err, sizeof err);
    TU_CHECKF(rc == 0, "model: %s", err);
    return rc;
}

/* Small layers off the model: channels 12 and 5 are not multiples of the block (8 or 16). */
static void check_padded(void)
{
    anx_layer_desc conv = {.op = ANX_OP_CONV2D, .index = 1, .name = "conv-pad", .n = 3, .ic = 12, .ih = 9,
                           .iw = 9, .oc = 12, .oh = 5, .ow = 5, .kh = 3, .kw = 3, .stride = 2, .pad = 1};
    anx_layer_desc relu = {.op = ANX_OP_RELU, .index = 2, .name = "relu-pad", .n = 3, .ic = 12, .ih = 5, .iw = 5,
                           .oc = 12, .oh = 5, .ow = 5};
    anx_layer_desc pool = {.op = ANX_OP_MAXPOOL, .index = 3, .name = "pool-pad", .n = 3, .ic = 12, .ih = 8, .iw = 8,
                           .oc = 12, .oh = 3, .ow = 3, .kh = 3, .kw = 3, .stride = 2};
    anx_layer_desc fc = {.op = ANX_OP_LINEAR, .index = 4, .name = "fc-pad", .n = 3, .ic = 12, .ih = 3, .iw = 3,
                         .oc = 5, .oh = 1, .ow = 1, .kh = 3, .kw = 3};
    anx_layer_desc fc2 = {.op = ANX_OP_LINEAR, .index = 5, .name = "fc-odd", .n = 3, .ic = 7, .ih = 1, .iw = 1,
                          .oc = 5, .oh = 1, .ow = 1, .kh = 1, .kw = 1};
    anx_layer_desc conv_s = {.op = ANX_OP_CONV2D, .index = 6, .name = "conv-c5", .n = 1, .ic = 5, .ih = 10,
                             .iw = 10, .oc = 12, .oh = 3, .ow = 3, .kh = 4, .kw = 4, .stride = 3, .pad = 0};
    const anx_layer_desc *ls[] = {&conv, &relu, &pool, &fc, &fc2, &conv_s};
    for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) check_layer(ls[i]);
}

/* The implementation oneDNN picked for each layer of the full-size step (batch 32): none of the
 * directions the step runs may be oneDNN's reference fallback. */
static void check_impls(void)
{
    anx_model m;
    if (model(&m, 3, 1000, 32, 227)) return;
    const anx_backend *be = &anx_backend_onednn;
    printf("oneDNN implementations, Alexnet(3, 1000) batch 32, %d threads:\n", THREADS);
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m.layers[i];
        void *ctx = tu_layer_create(be, l, THREADS);
        printf("  %-13s", l->name);
        for (int d = 0; d < ANX_DIR_COUNT; d++) {
            if (!be->exec[l->op][d] || (d == ANX_BWD_WEIGHTS && !anx_desc_has_weights(l))) continue;
            const char *impl = be->impl_name(ctx, l, (anx_dir)d);
            printf("  %s %s", anx_dir_name((anx_dir)d), impl);
            int runs = !(i == 0 && d == ANX_BWD_DATA); /* the step never needs d input */
            if (runs) TU_CHECKF(strncmp(impl, "ref", 3) != 0, "%s %s uses oneDNN's reference %s", l->name,
                                anx_dir_name((anx_dir)d), impl);
        }
        printf("\n");
        be->layer_destroy(ctx);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) g_seed = strtoull(argv[1], NULL, 10);
    printf("test_onednn_layers: seed %llu (rerun: test_onednn_layers %llu)\n", (unsigned long long)g_seed,
           (unsigned long long)g_seed);
    const char *why = anx_backend_onednn.unavailable();
    if (why) {
        printf("test_onednn_layers: skipped: %s\n", why);
        return tu_finish("test_onednn_layers");
    }
    check_impls();
    check_padded();
    anx_model m;
    for (int batch = 1; batch <= 3; batch += 2) {
        if (model(&m, 3, 10, batch, 227)) continue;
        for (int i = 0; i < ANX_NUM_LAYERS; i++) check_layer(&m.layers[i]);
        check_layer(&m.loss);
    }
    int in_dims[] = {1, 4}, sizes[] = {228, 230};
    for (int i = 0; i < 2; i++) {
        if (model(&m, in_dims[i], 10, 1, 227) == 0) check_layer(&m.layers[0]);
        if (model(&m, 3, 10, 1, sizes[i]) == 0) check_layer(&m.layers[0]);
    }
    return tu_finish("test_onednn_layers");
}
