/* test_avx2_layers: every layer and direction of the avx2 backend against the ref backend,
 * both driven only through the backend interface (layouts, import/export, exec table).
 *
 * Exact tier: integer-valued fills in small ranges keep every partial sum an integer below
 * 2^24, so any summation order is exact and avx2 must give ref's bits in every direction.
 * Random tier: uniform fills; conv and linear are checked per element against
 *     |avx2 - ref| <= 2 gamma_K S / (1 - gamma_K),   gamma_K = K u / (1 - K u),  u = 2^-24
 * (each of the two sums is within gamma_K S of the exact one, whatever its order or use of
 * FMA; S = sum of |a||b| behind the element, computed by running ref on |inputs|; K the
 * accumulation length).  Element-wise ops, pooling, loss and Adam do the same float operations
 * in the same order as ref, so they must be bit-identical in both tiers.
 * Every avx2 buffer is NaN-prefilled and guarded; each case also runs avx2 with 1 and 2 threads
 * and twice, and requires identical bits.
 *
 * Shapes: every layer of Alexnet(3, 1000) at batch 1, conv1 with in_dim 1 and 4 at batch 3,
 * and awkward ones (batch 3 and 7, widths 2..13 that are not multiples of 8, odd channel
 * block counts, k tails, 1x1 kernels, stride 2 on blocked input, windows wider than the image,
 * several input-channel chunks, plain-layout pooling).
 * Seeds are fixed and printed with every failure.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "testutil.h"

#define SKIP_CODE 77

typedef struct plain_set { /* the plain tensors of one case; NULL when the layer has none */
    float *src, *dst, *w, *b, *diff_dst, *mask;
    int64_t *target;
} plain_set;

typedef struct result { /* plain outputs of one exec */
    float *out, *out2; /* fwd: dst (loss: 1 float); bwd_data: diff_src; bwd_weights: diff_w, diff_b */
    size_t n, n2;
} result;

static size_t count_of(const anx_layer_desc *l, anx_slot s) { return anx_desc_plain_count(l, s); }

static float *import_slot(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *plain,
                          const char *what)
{
    if (!plain) return NULL;
    float *buf = tu_alloc(be->tensor_floats(l, s), what);
    be->tensor_import(l, s, buf, plain);
    return buf;
}

/* Runs (l, dir) on be with `threads` threads; the outputs are exported to fresh plain arrays. */
static result run(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, int threads,
                  const plain_set *in)
{
    result r = {0};
    void *ctx = tu_layer_create(be, l, threads);
    anx_args a = {0};
    float loss = NAN;
    a.src = import_slot(be, l, ANX_SRC, in->src, "src");
    a.dst = dir == ANX_FWD || l->op == ANX_OP_LOSS ? NULL : import_slot(be, l, ANX_DST, in->dst, "dst");
    a.weights = import_slot(be, l, ANX_WEIGHTS, in->w, "weights");
    a.bias = import_slot(be, l, ANX_BIAS, in->b, "bias");
    a.diff_dst = import_slot(be, l, ANX_DST, in->diff_dst, "diff_dst");
    float *mask = import_slot(be, l, ANX_DST, in->mask, "mask");
    a.mask = mask;
    a.target = in->target;
    a.loss = &loss;
    anx_slot o1 = ANX_DST, o2 = ANX_SLOT_COUNT;
    if (dir == ANX_BWD_DATA) o1 = ANX_SRC;
    if (dir == ANX_BWD_WEIGHTS) o1 = ANX_WEIGHTS, o2 = ANX_BIAS;
    float *out1 = NULL, *out2 = NULL;
    if (!(l->op == ANX_OP_LOSS && dir == ANX_FWD)) out1 = tu_alloc(be->tensor_floats(l, o1), "output");
    if (o2 != ANX_SLOT_COUNT) out2 = tu_alloc(be->tensor_floats(l, o2), "output 2");
    if (dir == ANX_FWD) a.dst = out1;
    if (dir == ANX_BWD_DATA) a.diff_src = out1;
    if (dir == ANX_BWD_WEIGHTS) a.diff_weights = out1, a.diff_bias = out2;
    tu_exec(be, ctx, l, dir, &a);
    if (out1) {
        r.n = count_of(l, o1);
        r.out = malloc(r.n * sizeof(float));
        be->tensor_export(l, o1, r.out, out1);
    } else {
        r.n = 1;
        r.out = malloc(sizeof(float));
        r.out[0] = loss;
    }
    if (out2) {
        r.n2 = count_of(l, o2);
        r.out2 = malloc(r.n2 * sizeof(float));
        be->tensor_export(l, o2, r.out2, out2);
    }
    tu_free(a.src), tu_free(a.weights), tu_free(a.bias), tu_free(a.diff_dst), tu_free(mask);
    if (dir != ANX_FWD && l->op != ANX_OP_LOSS) tu_free(a.dst);
    tu_free(out1), tu_free(out2);
    if (be->layer_destroy) be->layer_destroy(ctx);
    return r;
}

static void result_free(result *r) { free(r->out), free(r->out2); }

static float *fabs_copy(const float *p, size_t n)
{
    if (!p) return NULL;
    float *q = malloc((n ? n : 1) * sizeof *q);
    for (size_t i = 0; i < n; i++) q[i] = fabsf(p[i]);
    return q;
}

/* The accumulation length behind one output of (l, dir) for the error bound. */
static double accum_len(const anx_layer_desc *l, anx_dir dir)
{
    if (dir == ANX_FWD) return (double)l->ic * l->kh * l->kw + 1; /* + bias */
    if (dir == ANX_BWD_DATA) return (double)l->oc * l->kh * l->kw;
    return (double)l->n * l->oh * l->ow;
}

/* got vs want elementwise within the gamma_K bound built from s (= ref on |inputs|). */
static void expect_bounded(const float *got, const float *want, const float *s, size_t n, double k,
                           const char *what)
{
    const double u = ldexp(1.0, -24), g = k * u / (1.0 - k * u);
    double *w = malloc(n * sizeof *w), *bound = malloc(n * sizeof *bound);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        w[i] = want[i];
        bound[i] = 2.0 * g * s[i] / (1.0 - g);
        double e = fabs((double)got[i] - want[i]);
        if (bound[i] > 0 && e / bound[i] > worst) worst = e / bound[i];
    }
    tu_expect_within(got, w, bound, n, what);
    if (getenv("ANX_TEST_VERBOSE")) printf("  %s: worst error / bound = %.3g\n", what, worst);
    free(w), free(bound);
}

static void fill(float *p, size_t n, uint64_t seed, int exact, int lo, int hi)
{
    if (!p) return;
    if (exact)
        tu_fill_int(p, n, seed, lo, hi, 1.0);
    else
        tu_fill_uniform(p, n, seed, (float)lo / hi, 1.0f);
}

/* One layer, every direction both backends do, one tier. */
static void check_layer(const anx_backend *fast, const anx_layer_desc *l, int exact, uint64_t seed)
{
    const anx_backend *ref = &anx_backend_ref;
    const size_t ns = count_of(l, ANX_SRC), nd = l->op == ANX_OP_LOSS ? (size_t)l->n : count_of(l, ANX_DST);
    const size_t nw = count_of(l, ANX_WEIGHTS), nb = count_of(l, ANX_BIAS);
    plain_set in = {0};
    in.src = malloc(ns * sizeof(float));
    fill(in.src, ns, seed, exact, -3, 3);
    if (nw) {
        in.w = malloc(nw * sizeof(float)), in.b = malloc(nb * sizeof(float));
        fill(in.w, nw, seed + 1, exact, -2, 2);
        fill(in.b, nb, seed + 2, exact, -8, 8);
    }
    if (l->op != ANX_OP_LOSS) {
        in.diff_dst = malloc(nd * sizeof(float));
        fill(in.diff_dst, nd, seed + 3, exact, -3, 3);
    }
    if (l->op == ANX_OP_DROPOUT) {
        in.mask = malloc(nd * sizeof(float));
        tu_fill_int(in.mask, nd, seed + 4, 2, 2, 0.5); /* 0 or 1/(1-p) = 2 */
    }
    if (l->op == ANX_OP_LOSS) {
        in.target = malloc(l->n * sizeof(int64_t));
        for (int i = 0; i < l->n; i++) in.target[i] = (int64_t)((seed * 7 + (uint64_t)i * 13) % (uint64_t)l->ic);
    }
    if (l->op == ANX_OP_MAXPOOL && exact) /* many ties: the first-maximum rule must match */
        tu_fill_int(in.src, ns, seed, -2, 2, 1.0);
    if (l->op != ANX_OP_LOSS) { /* dst = the forward output, for relu's backward */
        result f = run(ref, l, ANX_FWD, 0, &in);
        in.dst = f.out;
    }
    for (int d = 0; d < ANX_DIR_COUNT; d++) {
        const anx_dir dir = (anx_dir)d;
        if (anx_backend_declines(ref, l, dir) || (dir == ANX_BWD_WEIGHTS && !anx_desc_has_weights(l))) continue;
        const char *why = anx_backend_declines(fast, l, dir);
        if (why) {
            printf("  %s %s: skipped: %s\n", l->name, anx_dir_name(dir), why);
            continue;
        }
        char what[160], what2[200];
        snprintf(what, sizeof what, "%s %s [n%d %dx%dx%d -> %dx%dx%d k%d s%d p%d] %s tier seed %llu",
                 l->name, anx_dir_name(dir), l->n, l->ic, l->ih, l->iw, l->oc, l->oh, l->ow, l->kh,
                 l->stride, l->pad, exact ? "exact" : "random", (unsigned long long)seed);
        result want = run(ref, l, dir, 0, &in);
        result got = run(fast, l, dir, 1, &in);
        result got2 = run(fast, l, dir, 2, &in);
        result again = run(fast, l, dir, 2, &in);
        snprintf(what2, sizeof what2, "%s (1 vs 2 threads)", what);
        tu_expect_bitwise(got2.out, got.out, got.n, what2);
        snprintf(what2, sizeof what2, "%s (run twice)", what);
        tu_expect_bitwise(again.out, got2.out, got.n, what2);
        if (got.out2) tu_expect_bitwise(got2.out2, got.out2, got.n2, what2);
        const int rounding = !exact && anx_desc_has_weights(l);
        if (!rounding) {
            tu_expect_bitwise(got.out, want.out, want.n, what);
            if (want.out2) {
                snprintf(what2, sizeof what2, "%s bias", what);
                tu_expect_bitwise(got.out2, want.out2, want.n2, what2);
            }
        } else {
            /* S: ref on the absolute values of the inputs this direction reads */
            plain_set abs_in = {0};
            abs_in.src = fabs_copy(in.src, ns), abs_in.w = fabs_copy(in.w, nw), abs_in.b = fabs_copy(in.b, nb);
            abs_in.diff_dst = fabs_copy(in.diff_dst, nd);
            result s = run(ref, l, dir, 0, &abs_in);
            expect_bounded(got.out, want.out, s.out, want.n, accum_len(l, dir), what);
            if (want.out2) {
                snprintf(what2, sizeof what2, "%s bias", what);
                expect_bounded(got.out2, want.out2, s.out2, want.n2, (double)l->n * l->oh * l->ow, what2);
            }
            result_free(&s);
            free(abs_in.src), free(abs_in.w), free(abs_in.b), free(abs_in.diff_dst);
        }
        result_free(&want), result_free(&got), result_free(&got2), result_free(&again);
    }
    free(in.src), free(in.dst), free(in.w), free(in.b), free(in.diff_dst), free(in.mask), free(in.target);
}

/* A stand-alone descriptor (not from the model) for awkward shapes. */
static anx_layer_desc make(anx_op op, const char *name, int n, int ic, int ih, int iw, int oc, int k, int stride,
                           int pad)
{
    anx_layer_desc l;
    memset(&l, 0, sizeof l);
    l.op = op;
    l.index = 99;
    snprintf(l.name, sizeof l.name, "%s", name);
    snprintf(l.tag, sizeof l.tag, "t");
    l.n = n, l.ic = ic, l.ih = ih, l.iw = iw;
    switch (op) {
    case ANX_OP_CONV2D:
    case ANX_OP_MAXPOOL:
        l.oc = op == ANX_OP_CONV2D ? oc : ic;
        l.kh = l.kw = k, l.stride = stride, l.pad = pad;
        l.oh = (ih - k + 2 * pad) / stride + 1, l.ow = (iw - k + 2 * pad) / stride + 1;
        break;
    case ANX_OP_LINEAR:
        l.oc = oc, l.oh = l.ow = 1, l.kh = ih, l.kw = iw;
        break;
    case ANX_OP_LOSS:
        l.oc = l.oh = l.ow = 1;
        break;
    default:
        l.oc = ic, l.oh = ih, l.ow = iw, l.p = 0.5f;
        break;
    }
    return l;
}

static void check_both_tiers(const anx_backend *fast, const anx_layer_desc *l, uint64_t seed)
{
    check_layer(fast, l, 1, seed);
    check_layer(fast, l, 0, seed + 100);
}

/* Adam through the interface: same float operations as ref, so the same bits, for a count that
 * is not a multiple of 8 and at steps 1 and 3 (bias corrections differ). */
static void check_adam(const anx_backend *fast, uint64_t seed)
{
    const size_t n = 1003;
    float *st[2][4];
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 4; k++) st[b][k] = tu_alloc(n, "adam state");
    for (int b = 0; b < 2; b++) {
        tu_fill_uniform(st[b][0], n, seed, -1, 1);      /* param */
        tu_fill_uniform(st[b][2], n, seed + 2, -0.1f, 0.1f); /* exp_avg */
        tu_fill_uniform(st[b][3], n, seed + 3, 0, 0.01f);    /* exp_avg_sq */
    }
    for (int64_t t = 1; t <= 3; t++) {
        for (int b = 0; b < 2; b++) tu_fill_uniform(st[b][1], n, seed + 10 * (uint64_t)t, -1e-3f, 1e-3f);
        const anx_adam_hparams hp = {1e-3f, 0.9f, 0.999f, 1e-8f, t};
        anx_backend_ref.adam(st[0][0], st[0][1], st[0][2], st[0][3], n, &hp, 1);
        fast->adam(st[1][0], st[1][1], st[1][2], st[1][3], n, &hp, 2);
        char what[64];
        snprintf(what, sizeof what, "adam step %lld param", (long long)t);
        tu_expect_bitwise(st[1][0], st[0][0], n, what);
        snprintf(what, sizeof what, "adam step %lld exp_avg", (long long)t);
        tu_expect_bitwise(st[1][2], st[0][2], n, what);
        snprintf(what, sizeof what, "adam step %lld exp_avg_sq", (long long)t);
        tu_expect_bitwise(st[1][3], st[0][3], n, what);
    }
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 4; k++) tu_free(st[b][k]);
}

int main(int argc, char **argv)
{
    const anx_backend *fast = &anx_backend_avx2;
    const char *why = fast->unavailable ? fast->unavailable() : NULL;
    if (why) {
        printf("test_avx2_layers: skipped: %s\n", why);
        return SKIP_CODE;
    }
    const int quick = argc > 1 && strcmp(argv[1], "--awkward-only") == 0;

    /* awkward shapes first: they are fast and catch tails */
    const anx_layer_desc awk[] = {
        make(ANX_OP_CONV2D, "conv 16->24 k3p1 w7", 3, 16, 9, 7, 24, 3, 1, 1),
        make(ANX_OP_CONV2D, "conv 8->8 k5p2 w13", 1, 8, 13, 13, 8, 5, 1, 2),
        make(ANX_OP_CONV2D, "conv 8->40 k1 w5", 3, 8, 6, 5, 40, 1, 1, 0),
        make(ANX_OP_CONV2D, "conv 16->16 k3s2p1 w11", 3, 16, 11, 11, 16, 3, 2, 1),
        make(ANX_OP_CONV2D, "conv 3->16 k4s3 w10", 3, 3, 10, 13, 16, 4, 3, 0),
        make(ANX_OP_CONV2D, "conv 5->8 k3p1 w9", 1, 5, 9, 9, 8, 3, 1, 1),
        make(ANX_OP_CONV2D, "conv 1->24 k11s4 w31", 3, 1, 31, 31, 24, 11, 4, 0),
        make(ANX_OP_CONV2D, "conv 12->16 k3 w6", 3, 12, 6, 6, 16, 3, 1, 0),
        /* fwd reads src in place and skips the taps in the padding: windows wider than the
         * image (w2, k5p2), outputs of 1 pixel (w3 k3, and its bwd_data 1 -> 3 with pad 2),
         * pad = k-1 (bwd_data pad 0), rows of 4 = 3 + 1 pixels */
        make(ANX_OP_CONV2D, "conv 8->16 k5p2 w2", 3, 8, 2, 2, 16, 5, 1, 2),
        make(ANX_OP_CONV2D, "conv 8->8 k3 w3", 3, 8, 3, 3, 8, 3, 1, 0),
        make(ANX_OP_CONV2D, "conv 8->16 k3p2 w4", 2, 8, 4, 4, 16, 3, 1, 2),
        /* more than one input-channel chunk (fwd_icb_chunk: 14 blocks of 3x3), in fwd and in bwd_data */
        make(ANX_OP_CONV2D, "conv 136->40 k3p1 w4", 2, 136, 4, 4, 40, 3, 1, 1),
        make(ANX_OP_CONV2D, "conv 40->136 k3p1 w4", 2, 40, 4, 4, 136, 3, 1, 1),
        make(ANX_OP_MAXPOOL, "pool 16 k3s2 w11", 3, 16, 9, 11, 0, 3, 2, 0),
        make(ANX_OP_MAXPOOL, "pool 3 k3s2 w13", 3, 3, 13, 13, 0, 3, 2, 0),
        make(ANX_OP_MAXPOOL, "pool 8 k2s2 w6", 1, 8, 6, 6, 0, 2, 2, 0),
        make(ANX_OP_RELU, "relu 3x5x7x7", 3, 5, 7, 7, 0, 0, 0, 0),
        make(ANX_OP_RELU, "relu 3x16x5x5", 3, 16, 5, 5, 0, 0, 0, 0),
        make(ANX_OP_DROPOUT, "dropout 3x37", 3, 37, 1, 1, 0, 0, 0, 0),
        make(ANX_OP_LINEAR, "linear 37->10", 3, 37, 1, 1, 10, 0, 0, 0),
        make(ANX_OP_LINEAR, "linear 4->1", 1, 4, 1, 1, 1, 0, 0, 0),
        make(ANX_OP_LINEAR, "linear 16x3x3->13", 7, 16, 3, 3, 13, 0, 0, 0),
        make(ANX_OP_LINEAR, "linear 2100->35", 5, 2100, 1, 1, 35, 0, 0, 0),
        make(ANX_OP_LOSS, "loss 3x10", 3, 10, 1, 1, 0, 0, 0, 0),
    };
    for (size_t i = 0; i < sizeof awk / sizeof awk[0]; i++) check_both_tiers(fast, &awk[i], 1000 + 10 * i);
    check_adam(fast, 4000);

    if (!quick) {
        /* conv1 with grayscale and 4-channel input at batch 3 */
        const int dims[] = {1, 4};
        for (int d = 0; d < 2; d++) {
            anx_model m;
            char err[256];
            const anx_model_config cfg = {dims[d], 10, 3, 227};
            TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
            check_both_tiers(fast, &m.layers[0], 2000 + d);
        }
        /* every layer of Alexnet(3, 1000) at batch 1, and the loss */
        anx_model m;
        char err[256];
        const anx_model_config cfg = {3, 1000, 1, 227};
        TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
        for (int i = 0; i < ANX_NUM_LAYERS; i++) check_both_tiers(fast, &m.layers[i], 3000 + 10 * i);
        check_both_tiers(fast, &m.loss, 3300);
    }
    return tu_finish("test_avx2_layers");
}
