/* test_backend_layers <backend> — every (layer, direction) one backend does, against ref, both
 * driven only through the anx_backend interface (import, exec, export): the ggml
 * test-backend-ops idea, one driver for every backend the build has.
 *
 * Tiers (DESIGN.md section 5):
 *   exact   integer-valued inputs in small ranges: every partial sum is an integer below 2^24,
 *           so any summation order is exact, and the backend must give ref's bits in fwd,
 *           bwd_data and bwd_weights.
 *   random  uniform inputs in [-1, 1).  A sum of K products in any order, with or without FMA,
 *           is within gamma_K S of the exact one (Higham), gamma_K = K u / (1 - K u), u = 2^-24,
 *           S = sum of |a||b| behind the element, computed by ref from |inputs|; the backend and
 *           ref are each that close, and S itself was summed in float (S_true <= S / (1 - gamma_K)):
 *               |got - ref| <= 2 gamma_K S / (1 - gamma_K)      per element.
 *           K is the number of terms behind one output (conv fwd: ic kh kw + 1; conv bwd_data:
 *           oc ceil(kh/s) ceil(kw/s); linear bwd_data: oc; bwd_weights: n oh ow; maxpool
 *           bwd: the windows that overlap one input, ceil(kh/s) ceil(kw/s)).  Everything else
 *           (relu, dropout, maxpool fwd, the loss) does ref's float operations and stays bitwise.
 *   A row whose backend reports a transform_algorithm (Winograd: its transforms round even
 *   integer data) is held to a bound in the exact tier too, instead of to ref's bits, and says
 *   so.  Winograd F(4x4,3x3) rows (oneDNN's jit_wino_4x3 on a 3x3 stride-1 conv) are judged in
 *   both tiers by the derived Winograd bound of anx verify (core/verify_wino.c, docs/verify.md
 *   "Winograd"): the Winograd result is within eps W + u|exact| of the exact answer, ref within
 *   gamma_K S, so
 *               |got - ref| <= eps W (1 + 1e-6) + u |ref| + (1 + u) gamma_K S / (1 - gamma_K)
 *   with W the magnitudes of its stages from |inputs| (v_wino_magnitudes).  Its bias gradient (a
 *   plain sum) and a transform algorithm verify_wino.c does not bound keep the direct bound.
 * Every case also checks: outputs NaN-prefilled and guarded (canaries past both ends), every
 * input left as imported, import writing every float (padding as 0), the padding of every
 * output 0 after exec, and the same bits for each thread count and when run twice.
 * Besides the layers: ReLU's PyTorch semantics on special values (NaN, -0, infinities,
 * subnormals) and Adam on adversarial values, both bit for bit.
 *
 * The reference backend (ref, anx_backend_reference()) is compared with itself only where that
 * means something (threads, guards, padding, the semantics); its tier comparisons are skipped.
 * A backend that cannot run here (a stub, a CPU without its ISA) exits 77 with "skipped: why".
 * Under the sanitizers the slow tier keeps its batch-1 rows and says which it leaves out.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/rng.h"
#include "core/verify_internal.h" /* v_wino_magnitudes: the derived Winograd bound */
#include "testutil.h"

#define SKIP_CODE 77
#define U (1.0 / 16777216.0) /* unit roundoff of float32 */

/* ---- the shapes: ONE list ----
 * AWK(op, name, n, ic, ih, iw, oc, k, stride, pad)   a stand-alone layer, tier quick
 * NET(tier, in_dim, n_class, batch, input_hw, which)  layers of Alexnet(in_dim, n_class) at that
 *                                                      batch: ALL (+ the loss) or CONV1 only
 * Awkward: channel counts that are not a multiple of 8 or 16 (blocked layouts pad them), odd
 * widths 2..13, batch 1, 2, 3, 5, 7, k tails, 1x1 kernels, stride 2 on blocked input, windows
 * wider than the image, several input-channel chunks, plain-layout pooling; and stride-1 convs
 * with channels in multiples of 16 (32->48, 80->32: 2, 3 and 5 blocks), the only ones on which
 * AVX-512 runs bwd_data through its fwd tile (the others decline or gather); plain input with
 * kernel rows of 9-12 taps into 3 output blocks (a pair and a single), the only ones on which
 * AVX-512's bwd_weights runs its row tile at every width (SV_BWW_ROW_TAPS; conv1's 11 is the
 * model's). */
#define SHAPE_LIST(AWK, NET)                                              \
    AWK(CONV2D, "conv 16->24 k3p1 w7", 3, 16, 9, 7, 24, 3, 1, 1)          \
    AWK(CONV2D, "conv 8->8 k5p2 w13", 1, 8, 13, 13, 8, 5, 1, 2)           \
    AWK(CONV2D, "conv 8->40 k1 w5", 3, 8, 6, 5, 40, 1, 1, 0)              \
    AWK(CONV2D, "conv 16->16 k3s2p1 w11", 3, 16, 11, 11, 16, 3, 2, 1)     \
    AWK(CONV2D, "conv 3->16 k4s3 w13", 3, 3, 10, 13, 16, 4, 3, 0)         \
    AWK(CONV2D, "conv 5->8 k3p1 w9", 1, 5, 9, 9, 8, 3, 1, 1)              \
    AWK(CONV2D, "conv 1->24 k11s4 w31", 3, 1, 31, 31, 24, 11, 4, 0)       \
    AWK(CONV2D, "conv 12->16 k3 w6", 3, 12, 6, 6, 16, 3, 1, 0)            \
    AWK(CONV2D, "conv 8->16 k5p2 w2", 3, 8, 2, 2, 16, 5, 1, 2)            \
    AWK(CONV2D, "conv 8->8 k3 w3", 3, 8, 3, 3, 8, 3, 1, 0)                \
    AWK(CONV2D, "conv 8->16 k3p2 w4", 2, 8, 4, 4, 16, 3, 1, 2)            \
    AWK(CONV2D, "conv 136->40 k3p1 w4", 2, 136, 4, 4, 40, 3, 1, 1)        \
    AWK(CONV2D, "conv 40->136 k3p1 w4", 2, 40, 4, 4, 136, 3, 1, 1)        \
    AWK(CONV2D, "conv 12->12 k3s2p1 w9", 3, 12, 9, 9, 12, 3, 2, 1)        \
    AWK(CONV2D, "conv 5->12 k4s3 w10", 1, 5, 10, 10, 12, 4, 3, 0)         \
    AWK(CONV2D, "conv 20->24 k3p1 w5", 2, 20, 5, 5, 24, 3, 1, 1)          \
    AWK(CONV2D, "conv 32->48 k3p1 w7", 2, 32, 7, 7, 48, 3, 1, 1)          \
    AWK(CONV2D, "conv 80->32 k5p2 w6", 3, 80, 5, 6, 32, 5, 1, 2)          \
    AWK(CONV2D, "conv 3->48 k12s4 w27", 3, 3, 25, 27, 48, 12, 4, 0)      \
    AWK(CONV2D, "conv 2->48 k9s2p1 w17", 1, 2, 15, 17, 48, 9, 2, 1)       \
    AWK(MAXPOOL, "pool 16 k3s2 w11", 3, 16, 9, 11, 0, 3, 2, 0)            \
    AWK(MAXPOOL, "pool 3 k3s2 w13", 3, 3, 13, 13, 0, 3, 2, 0)             \
    AWK(MAXPOOL, "pool 8 k2s2 w6", 1, 8, 6, 6, 0, 2, 2, 0)                \
    AWK(MAXPOOL, "pool 12 k3s2 w8", 3, 12, 8, 8, 0, 3, 2, 0)              \
    AWK(MAXPOOL, "pool 20 k3s2 w7", 2, 20, 7, 7, 0, 3, 2, 0)              \
    AWK(RELU, "relu 3x5x7x7", 3, 5, 7, 7, 0, 0, 0, 0)                     \
    AWK(RELU, "relu 3x16x5x5", 3, 16, 5, 5, 0, 0, 0, 0)                   \
    AWK(RELU, "relu 3x12x5x5", 3, 12, 5, 5, 0, 0, 0, 0)                   \
    AWK(RELU, "relu 2x20x3x3", 2, 20, 3, 3, 0, 0, 0, 0)                   \
    AWK(DROPOUT, "dropout 3x37", 3, 37, 1, 1, 0, 0, 0, 0)                 \
    AWK(LINEAR, "linear 37->10", 3, 37, 1, 1, 10, 0, 0, 0)                \
    AWK(LINEAR, "linear 4->1", 1, 4, 1, 1, 1, 0, 0, 0)                    \
    AWK(LINEAR, "linear 16x3x3->13", 7, 16, 3, 3, 13, 0, 0, 0)            \
    AWK(LINEAR, "linear 12x3x3->5", 3, 12, 3, 3, 5, 0, 0, 0)              \
    AWK(LINEAR, "linear 7->5", 3, 7, 1, 1, 5, 0, 0, 0)                    \
    AWK(LINEAR, "linear 2100->35", 5, 2100, 1, 1, 35, 0, 0, 0)            \
    AWK(LOSS, "loss 3x10", 3, 10, 1, 1, 0, 0, 0, 0)                       \
    AWK(LOSS, "loss 2x1000", 2, 1000, 1, 1, 0, 0, 0, 0)                   \
    NET(SLOW, 3, 1000, 1, 227, ALL)                                       \
    NET(SLOW, 3, 10, 3, 227, ALL)                                         \
    NET(SLOW, 1, 10, 3, 227, CONV1)                                       \
    NET(SLOW, 3, 10, 1, 228, CONV1)                                       \
    NET(SLOW, 3, 10, 1, 230, CONV1)                                       \
    NET(SWEEP, 4, 10, 1, 227, CONV1)                                      \
    NET(SWEEP, 4, 10, 3, 227, CONV1)                                      \
    NET(SWEEP, 3, 10, 2, 227, ALL)
/* in_dim 4 is in the sweep only: oneDNN 2.6 runs that Conv2d-1's bwd_weights with its reference
 * ref:any (11 s at batch 1 against 0.01 s for in_dim 3, measured here), and the harness runs it
 * a dozen times. */

typedef enum tier { QUICK, SLOW, SWEEP } tier;
typedef enum which { ALL, CONV1 } which;

typedef struct options {
    const anx_backend *be;  /* the backend under test */
    const anx_backend *ref; /* the reference it is held to (anx_backend_reference()) */
    tier tier;
    int threads[4], nthreads; /* thread counts compared with each other */
    uint64_t seed;
    int verbose;
} options;

static options g_opt;

/* ---- buffers ---- */

/* Plain tensors of one case (NULL where the layer has none). */
typedef struct plain_set {
    float *src, *dst, *w, *b, *diff_dst, *mask;
    int64_t *target;
} plain_set;

/* Plain outputs of one exec: fwd dst (the loss: 1 float), bwd_data diff_src, bwd_weights diff_w
 * and diff_b (out2). */
typedef struct result {
    float *out, *out2;
    size_t n, n2;
} result;

static size_t plain_count(const anx_layer_desc *l, anx_slot s)
{
    if (l->op == ANX_OP_LOSS && s == ANX_DST) return 1;
    return anx_desc_plain_count(l, s);
}

/* A hash of n floats, to see whether an exec wrote one of its inputs: FNV-1a over 64-bit words
 * in four independent lanes (one chain is latency-bound on 150 MB of fc6 weights). */
static uint64_t hash_floats(const float *p, size_t n)
{
    const unsigned char *c = (const unsigned char *)p;
    const size_t bytes = n * sizeof *p, blocks = bytes / 32;
    uint64_t h[4] = {1469598103934665603ull, 1, 2, 3};
    for (size_t i = 0; i < blocks; i++)
        for (int j = 0; j < 4; j++) {
            uint64_t w;
            memcpy(&w, c + 32 * i + 8 * j, 8);
            h[j] = (h[j] ^ w) * 1099511628211ull;
        }
    uint64_t r = h[0] ^ (h[1] * 3) ^ (h[2] * 5) ^ (h[3] * 7);
    for (size_t i = 32 * blocks; i < bytes; i++) r = (r ^ c[i]) * 1099511628211ull;
    return r;
}

/* 1 where a real element lives in be's layout of (l, s), 0 in its padding: the import of ones.
 * Checks on the way that import wrote every float (NaN prefill), the padding as +0.  NULL when
 * the layout has no padding (as many floats as the plain tensor, each written by import). */
static unsigned char *padding_map(const anx_backend *be, const anx_layer_desc *l, anx_slot s, size_t *nb)
{
    const size_t np = plain_count(l, s);
    *nb = be->tensor_floats(l, s);
    if (*nb == np) return NULL;
    float *ones = tu_alloc(np, "ones"), *mark = tu_alloc(*nb, "import of ones");
    for (size_t i = 0; i < np; i++) ones[i] = 1.0f;
    be->tensor_import(l, s, mark, ones);
    unsigned char *map = malloc(*nb);
    size_t real = 0, bad = 0;
    for (size_t i = 0; i < *nb; i++) {
        map[i] = mark[i] == 1.0f;
        real += map[i];
        bad += !(mark[i] == 1.0f || (mark[i] == 0.0f && !signbit(mark[i])));
    }
    TU_CHECKF(bad == 0 && real == np, "%s %s slot %d: import left %zu floats neither the element nor +0 "
              "padding; %zu real of %zu", be->name, l->name, (int)s, bad, real, np);
    tu_free(ones), tu_free(mark);
    return map;
}

/* Every padding float of buf is 0 (later layers and Adam run over it). */
static void expect_padding_zero(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *buf,
                                const char *what)
{
    size_t nb, bad = 0, first = 0;
    unsigned char *map = padding_map(be, l, s, &nb);
    if (!map) return;
    for (size_t i = 0; i < nb; i++)
        if (!map[i] && !(buf[i] == 0.0f) && !bad++) first = i;
    TU_CHECKF(bad == 0, "%s: %zu padding floats not 0, first [%zu] = %g", what, bad, first, bad ? buf[first] : 0.0);
    free(map);
}

static float *import_new(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *plain,
                         const char *what)
{
    if (!plain) return NULL;
    float *buf = tu_alloc(be->tensor_floats(l, s), what);
    be->tensor_import(l, s, buf, plain);
    return buf;
}

static float *export_new(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *buf)
{
    const size_t n = plain_count(l, s);
    float *p = malloc(n * sizeof *p);
    be->tensor_export(l, s, p, buf);
    return p;
}

/* ---- one exec through the interface ---- */

/* The inputs of (l, dir) imported into one backend's layout, once for all its runs of a case,
 * each with its hash as imported: no exec may write an input. */
enum { IN_SRC, IN_DST, IN_W, IN_B, IN_DIFF_DST, IN_MASK, IN_COUNT };
typedef struct imported {
    float *buf[IN_COUNT];
    uint64_t hash[IN_COUNT];
} imported;

static const char *const g_in_names[IN_COUNT] = {"src", "dst", "weights", "bias", "diff_dst", "mask"};

static imported import_inputs(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, const plain_set *in)
{
    imported im = {{0}, {0}};
    const int loss = l->op == ANX_OP_LOSS;
    im.buf[IN_SRC] = import_new(be, l, ANX_SRC, in->src, "src");
    im.buf[IN_DST] = loss || dir == ANX_FWD ? NULL : import_new(be, l, ANX_DST, in->dst, "dst");
    im.buf[IN_W] = import_new(be, l, ANX_WEIGHTS, in->w, "weights");
    im.buf[IN_B] = import_new(be, l, ANX_BIAS, in->b, "bias");
    im.buf[IN_DIFF_DST] = loss ? NULL : import_new(be, l, ANX_DST, in->diff_dst, "diff_dst");
    im.buf[IN_MASK] = import_new(be, l, ANX_DST, in->mask, "mask");
    for (int i = 0; i < IN_COUNT; i++)
        if (im.buf[i]) im.hash[i] = hash_floats(im.buf[i], tu_count(im.buf[i]));
    return im;
}

static void free_imported(imported *im)
{
    for (int i = 0; i < IN_COUNT; i++) tu_free(im->buf[i]);
}

/* Runs (l, dir) on be with `threads` threads on the imported inputs, into fresh NaN-prefilled,
 * guarded outputs; fwd_first runs fwd in the same ctx first, into a buffer of its own (the net's
 * order: a backward may use what its forward kept); FWD_OTHER_SRC runs that fwd on another src
 * (im's negated, in a buffer of its own), which a backward must not take for its own src's (a
 * workspace kept by pointer).  The outputs come back exported plain. */
enum { FWD_NONE, FWD_SAME_SRC, FWD_OTHER_SRC };
static result run(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, int threads, const imported *im,
                  const int64_t *target, int fwd_first, const char *what)
{
    result r = {0};
    void *ctx = NULL;
    anx_status st = anx_backend_layer_create(be, &ctx, l, threads);
    TU_CHECKF(st == NULL, "%s: layer_create on %s: %s", what, be->name, st);
    if (st) return r;
    const int loss_fwd = l->op == ANX_OP_LOSS && dir == ANX_FWD;
    float loss = NAN;
    anx_args a = {0};
    a.src = im->buf[IN_SRC], a.dst = im->buf[IN_DST], a.weights = im->buf[IN_W], a.bias = im->buf[IN_B];
    a.diff_dst = im->buf[IN_DIFF_DST], a.mask = im->buf[IN_MASK], a.target = target, a.loss = &loss;
    const anx_slot o1 = dir == ANX_FWD ? ANX_DST : dir == ANX_BWD_DATA ? ANX_SRC : ANX_WEIGHTS;
    float *out1 = loss_fwd ? NULL : tu_alloc(be->tensor_floats(l, o1), "output");
    float *out2 = dir == ANX_BWD_WEIGHTS ? tu_alloc(be->tensor_floats(l, ANX_BIAS), "output bias") : NULL;
    float *fwd_dst = NULL, *other_src = NULL;
    /* the scratch it asks for, NaN-filled and guarded: a backend writes no byte beyond its own need */
    a.scratch_bytes = be->scratch_bytes ? be->scratch_bytes(ctx, l) : 0;
    float *scratch = a.scratch_bytes ? tu_alloc((a.scratch_bytes + sizeof(float) - 1) / sizeof(float), "scratch") : NULL;
    a.scratch = scratch;
    if (dir == ANX_FWD) a.dst = out1;
    if (dir == ANX_BWD_DATA) a.diff_src = out1;
    if (dir == ANX_BWD_WEIGHTS) a.diff_weights = out1, a.diff_bias = out2;
    if (fwd_first && dir != ANX_FWD) {
        fwd_dst = tu_alloc(be->tensor_floats(l, ANX_DST), "fwd dst");
        anx_args f = a;
        f.dst = fwd_dst;
        if (fwd_first == FWD_OTHER_SRC && a.src) {
            const size_t ns = be->tensor_floats(l, ANX_SRC);
            other_src = tu_alloc(ns, "other src");
            for (size_t i = 0; i < ns; i++) other_src[i] = a.src[i] == 0.0f ? a.src[i] : -a.src[i];
            f.src = other_src;
        }
        st = be->exec[l->op][ANX_FWD](ctx, l, &f);
        TU_CHECKF(st == NULL, "%s: fwd first on %s: %s", what, be->name, st);
    }
    st = be->exec[l->op][dir](ctx, l, &a);
    TU_CHECKF(st == NULL, "%s: exec on %s: %s", what, be->name, st);
    for (int i = 0; i < IN_COUNT; i++)
        if (im->buf[i])
            TU_CHECKF(hash_floats(im->buf[i], tu_count(im->buf[i])) == im->hash[i], "%s: exec on %s wrote its input %s",
                      what, be->name, g_in_names[i]);
    char w2[240];
    if (out1) {
        snprintf(w2, sizeof w2, "%s on %s", what, be->name);
        expect_padding_zero(be, l, o1, out1, w2);
        r.n = plain_count(l, o1);
        r.out = export_new(be, l, o1, out1);
    } else {
        r.n = 1;
        r.out = malloc(sizeof(float));
        r.out[0] = loss;
    }
    if (out2) {
        snprintf(w2, sizeof w2, "%s bias on %s", what, be->name);
        expect_padding_zero(be, l, ANX_BIAS, out2, w2);
        r.n2 = plain_count(l, ANX_BIAS);
        r.out2 = export_new(be, l, ANX_BIAS, out2);
    }
    tu_free(out1), tu_free(out2), tu_free(fwd_dst), tu_free(other_src), tu_free(scratch); /* tu_free checks the guards */
    if (be->layer_destroy) be->layer_destroy(ctx);
    return r;
}

/* Imports, runs once, frees: for ref's results. */
static result run_once(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, const plain_set *in,
                       int fwd_first, const char *what)
{
    imported im = import_inputs(be, l, dir, in);
    result r = run(be, l, dir, 0, &im, in->target, fwd_first, what);
    free_imported(&im);
    return r;
}

static void result_free(result *r)
{
    free(r->out), free(r->out2);
    memset(r, 0, sizeof *r);
}

/* ---- the comparisons ---- */

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Terms K behind one element of the first output of (l, dir); bias: n oh ow. */
static double accum_len(const anx_layer_desc *l, anx_dir dir)
{
    const int s = l->stride > 0 ? l->stride : 1;
    switch (l->op) {
    case ANX_OP_CONV2D:
    case ANX_OP_LINEAR:
        if (dir == ANX_FWD) return (double)l->ic * l->kh * l->kw + 1; /* + the bias */
        if (dir == ANX_BWD_DATA)
            return l->op == ANX_OP_LINEAR ? (double)l->oc : (double)l->oc * ceil_div(l->kh, s) * ceil_div(l->kw, s);
        return (double)l->n * l->oh * l->ow;
    case ANX_OP_MAXPOOL: return (double)ceil_div(l->kh, s) * ceil_div(l->kw, s); /* overlapping windows add */
    default: return 1;
    }
}

/* The elements out of their bound, and the worst error / bound (NaN: infinite). */
typedef struct tally {
    size_t bad, worst_i;
    double worst;
} tally;

static void tally_add(tally *t, size_t i, double got, double want, double bound)
{
    const double e = fabs(got - want);
    const double r = e <= bound ? (bound > 0 ? e / bound : 0) : isnan(e) ? INFINITY : e / (bound > 0 ? bound : 1e-300);
    t->bad += !(e <= bound);
    if (r > t->worst) t->worst = r, t->worst_i = i;
}

static void expect_bounded(const float *got, const float *want, const float *s, size_t n, double k,
                           const char *what)
{
    const double g = k * U / (1.0 - k * U);
    tally t = {0};
    for (size_t i = 0; i < n; i++) tally_add(&t, i, got[i], want[i], 2.0 * g * s[i] / (1.0 - g));
    TU_CHECKF(t.bad == 0, "%s: %zu of %zu elements out of the bound 2 gamma_%.0f S / (1 - gamma); worst at [%zu]: got "
              "%.9g want %.9g S %.3g (error / bound %.3g)", what, t.bad, n, k, t.worst_i, got[t.worst_i],
              want[t.worst_i], s[t.worst_i], t.worst);
    if (g_opt.verbose) printf("    %s: worst error / bound = %.3g\n", what, t.worst);
}

/* A Winograd row: within the derived bound eps W (+ u|exact|) of the exact answer, where ref is
 * within gamma_K S (S summed in float: S_true <= S / (1 - gamma)); k = 0: ref is exact (the
 * exact tier's integer sums). */
static void expect_wino_bounded(const float *got, const float *want, const float *s, const float *w, double eps,
                                size_t n, double k, const char *what)
{
    const double g = k * U / (1.0 - k * U);
    tally t = {0};
    for (size_t i = 0; i < n; i++) {
        const double ref_err = g * s[i] / (1.0 - g);
        tally_add(&t, i, got[i], want[i], eps * w[i] * (1 + V_BOUND_SLACK) + U * (fabs((double)want[i]) + ref_err) + ref_err);
    }
    TU_CHECKF(t.bad == 0, "%s: %zu of %zu elements out of the derived Winograd bound eps W + u|ref| (+ gamma_%.0f S) "
              "(eps %.3g); worst at [%zu]: got %.9g want %.9g W %.3g S %.3g (error / bound %.3g)", what, t.bad, n, k,
              eps, t.worst_i, got[t.worst_i], want[t.worst_i], w[t.worst_i], s[t.worst_i], t.worst);
    if (g_opt.verbose) printf("    %s: worst error / Winograd bound = %.3g\n", what, t.worst);
}

static float *abs_copy(const float *p, size_t n)
{
    if (!p) return NULL;
    float *q = malloc((n ? n : 1) * sizeof *q);
    for (size_t i = 0; i < n; i++) q[i] = fabsf(p[i]);
    return q;
}

/* S = the reference on |inputs| (maxpool keeps its signed src: the same winners). */
static result magnitudes(const anx_layer_desc *l, anx_dir dir, const plain_set *in, int fwd_first)
{
    plain_set a = *in;
    a.src = l->op == ANX_OP_MAXPOOL ? in->src : abs_copy(in->src, plain_count(l, ANX_SRC));
    a.w = abs_copy(in->w, plain_count(l, ANX_WEIGHTS));
    a.b = abs_copy(in->b, plain_count(l, ANX_BIAS));
    a.diff_dst = abs_copy(in->diff_dst, plain_count(l, ANX_DST));
    result s = run_once(g_opt.ref, l, dir, &a, fwd_first, "S = the reference on |inputs|");
    if (a.src != in->src) free(a.src);
    free(a.w), free(a.b), free(a.diff_dst);
    return s;
}

/* The derived Winograd bound's magnitudes of one row (w NULL: not a Winograd row). */
typedef struct wino_mag {
    float *w; /* W of each element of the first output, plain */
    double eps;
    int ref_exact; /* the exact tier: ref's sums are exact */
} wino_mag;

/* Random tier of conv, linear and maxpool bwd: within the bound built from S (and W for a
 * Winograd row's first output). */
static void expect_random_tier(const anx_layer_desc *l, anx_dir dir, const result *got, const result *want,
                               const result *s, const wino_mag *wm, const char *what, const char *how)
{
    char w2[320];
    snprintf(w2, sizeof w2, "%s (%s, %s)", what, how, wm->w ? "Winograd bound" : "bound");
    if (s->out && got->out && wm->w)
        expect_wino_bounded(got->out, want->out, s->out, wm->w, wm->eps, want->n, wm->ref_exact ? 0 : accum_len(l, dir), w2);
    else if (s->out && got->out)
        expect_bounded(got->out, want->out, s->out, want->n, accum_len(l, dir), w2);
    if (want->out2 && s->out2 && got->out2) {
        snprintf(w2, sizeof w2, "%s bias (%s, bound)", what, how);
        expect_bounded(got->out2, want->out2, s->out2, want->n2, (double)l->n * l->oh * l->ow, w2);
    }
}

static void expect_same(const result *got, const result *want, const char *what, const char *how)
{
    char w2[320];
    snprintf(w2, sizeof w2, "%s (%s)", what, how);
    if (got->out && want->out) tu_expect_bitwise(got->out, want->out, want->n, w2);
    if (want->out2) {
        snprintf(w2, sizeof w2, "%s bias (%s)", what, how);
        if (got->out2) tu_expect_bitwise(got->out2, want->out2, want->n2, w2);
    }
}

/* ---- one case ---- */

static void fill(float *p, size_t n, uint64_t seed, int exact, int lo, int hi, double density)
{
    if (exact) tu_fill_int(p, n, seed, lo, hi, density);
    else tu_fill_uniform(p, n, seed, -1.0f, 1.0f);
}

static plain_set make_inputs(const anx_layer_desc *l, int exact, uint64_t seed)
{
    plain_set in = {0};
    const size_t ns = plain_count(l, ANX_SRC), nd = anx_desc_plain_count(l, ANX_DST);
    in.src = malloc(ns * sizeof(float));
    /* maxpool: [-2, 2] gives many ties, and the first-maximum rule must match */
    fill(in.src, ns, seed, exact, l->op == ANX_OP_MAXPOOL ? -2 : -3, l->op == ANX_OP_MAXPOOL ? 2 : 3, 1.0);
    if (anx_desc_has_weights(l)) {
        in.w = malloc(plain_count(l, ANX_WEIGHTS) * sizeof(float));
        in.b = malloc(plain_count(l, ANX_BIAS) * sizeof(float));
        fill(in.w, plain_count(l, ANX_WEIGHTS), seed + 1, exact, -2, 2, 0.9);
        fill(in.b, plain_count(l, ANX_BIAS), seed + 2, exact, -8, 8, 1.0);
    }
    if (l->op != ANX_OP_LOSS) {
        in.diff_dst = malloc(nd * sizeof(float));
        fill(in.diff_dst, nd, seed + 3, exact, -3, 3, 0.7);
    }
    if (l->op == ANX_OP_DROPOUT) {
        in.mask = malloc(nd * sizeof(float));
        anx_rng_fill_dropout(in.mask, nd, anx_rng_key(seed + 4, l->name, 1), l->p); /* 0 or 2 */
    }
    if (l->op == ANX_OP_LOSS) {
        in.target = malloc((size_t)l->n * sizeof *in.target);
        for (int i = 0; i < l->n; i++) in.target[i] = (int64_t)((seed * 7 + (uint64_t)i * 13) % (uint64_t)l->ic);
    }
    if (l->op != ANX_OP_LOSS) { /* dst = ref's forward output: what relu's backward reads */
        result f = run_once(g_opt.ref, l, ANX_FWD, &in, 0, "the reference fwd for dst");
        in.dst = f.out;
    }
    return in;
}

static void free_inputs(plain_set *in)
{
    free(in->src), free(in->dst), free(in->w), free(in->b), free(in->diff_dst), free(in->mask), free(in->target);
}

/* The backend's transform_algorithm of (l, dir) (copied), or NULL: a row that is not a sum of products. */
static const char *transform_algo(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, char *buf, size_t cap)
{
    if (!be->transform_algorithm) return NULL;
    void *ctx = NULL;
    if (anx_backend_layer_create(be, &ctx, l, g_opt.threads[0])) return NULL; /* run() reports it */
    const char *a = be->transform_algorithm(ctx, l, dir);
    if (a) snprintf(buf, cap, "%s", a);
    if (be->layer_destroy) be->layer_destroy(ctx);
    return a ? buf : NULL;
}

/* Everything about (l, dir) in one tier: threads, repeat, guards, padding, and ref's result. */
static void check_dir(const anx_layer_desc *l, anx_dir dir, int exact, const plain_set *in, int fwd_first,
                      uint64_t seed)
{
    const anx_backend *be = g_opt.be;
    const int is_ref = be == g_opt.ref;
    char what[200];
    snprintf(what, sizeof what, "%s %s%s [n%d %dx%dx%d -> %dx%dx%d k%d s%d p%d] %s tier seed %llu", l->name,
             anx_dir_name(dir), fwd_first == FWD_OTHER_SRC ? " after fwd on another src" : fwd_first ? " after fwd" : "", l->n, l->ic, l->ih, l->iw, l->oc, l->oh, l->ow,
             l->kh, l->stride, l->pad, exact ? "exact" : "random", (unsigned long long)seed);
    /* The reference's result, and for the rounding cases of the random tier S for the bound; a
       transform algorithm rounds in the exact tier too (its integer data is not summed exactly). */
    char abuf[96];
    const char *algo = is_ref ? NULL : transform_algo(be, l, dir, abuf, sizeof abuf);
    const int rounds = (!exact || algo) && (anx_desc_has_weights(l) || (l->op == ANX_OP_MAXPOOL && dir == ANX_BWD_DATA));
    result want = {0}, mag = {0};
    wino_mag wm = {0};
    if (!is_ref) want = run_once(g_opt.ref, l, dir, in, fwd_first, what);
    if (!is_ref && rounds) mag = magnitudes(l, dir, in, fwd_first);
    if (!is_ref && rounds && v_wino_applies(algo, l, dir)) {
        const v_in vi = {.src = in->src, .weights = in->w, .bias = in->b, .diff_dst = in->diff_dst, .algo = algo};
        wm.eps = v_wino_magnitudes(l, dir, &vi, &wm.w, 0);
        wm.ref_exact = exact;
    }
    if (algo)
        printf("  %s %s %s tier: %s, held to %s%s\n", l->name, anx_dir_name(dir), exact ? "exact" : "random", algo,
               wm.w ? "the derived Winograd bound (core/verify_wino.c)" : "the direct bound",
               exact ? ", not to bits: it rounds integer data too" : "");
    /* A backend whose rounding may depend on the thread count (bits_vary_with_threads) holds
       each count to the bound instead of to the first count's bits; exact sums cannot vary. */
    const int vary = rounds && be->bits_vary_with_threads;
    /* one result at a time (the fc6 tensors are 150 MB each); the last thread count runs twice,
       and the second run is held to the first of that count bit for bit */
    imported im = import_inputs(be, l, dir, in);
    result first = {0}, prev = {0};
    char how[64];
    for (int t = 0; t <= g_opt.nthreads; t++) {
        const int twice = t == g_opt.nthreads, threads = g_opt.threads[twice ? t - 1 : t];
        result r = run(be, l, dir, threads, &im, in->target, fwd_first, what);
        if (twice) snprintf(how, sizeof how, "run twice, %d threads", threads);
        else snprintf(how, sizeof how, "%d threads", threads);
        if (twice) {
            expect_same(&r, prev.out ? &prev : &first, what, how);
        } else if (t > 0 && !vary) {
            snprintf(how, sizeof how, "%d vs %d threads", threads, g_opt.threads[0]);
            expect_same(&r, &first, what, how);
        } else if (!is_ref && rounds) {
            expect_random_tier(l, dir, &r, &want, &mag, &wm, what, how);
        } else if (!is_ref) {
            snprintf(how, sizeof how, "%d threads, against the reference", threads);
            expect_same(&r, &want, what, how);
        }
        if (t == 0) {
            first = r;
        } else {
            result_free(&prev);
            prev = r;
        }
    }
    result_free(&prev);
    result_free(&first);
    free_imported(&im);
    result_free(&want), result_free(&mag);
    free(wm.w);
    if (g_opt.verbose) printf("  checked %s\n", what);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void check_layer(const anx_layer_desc *l, uint64_t seed)
{
    const anx_backend *be = g_opt.be;
    const double t0 = now();
    for (int exact = 1; exact >= 0; exact--) {
        const uint64_t s = g_opt.seed + seed + (exact ? 0 : 100);
        plain_set in = make_inputs(l, exact, s);
        for (int d = 0; d < ANX_DIR_COUNT; d++) {
            const anx_dir dir = (anx_dir)d;
            if (dir == ANX_BWD_WEIGHTS && !anx_desc_has_weights(l)) continue;
            if (anx_backend_declines(g_opt.ref, l, dir)) continue;
            const char *why = anx_backend_declines(be, l, dir);
            if (why) {
                if (exact) printf("  %s %s: skipped: %s\n", l->name, anx_dir_name(dir), why);
                continue;
            }
            check_dir(l, dir, exact, &in, FWD_NONE, s);
            if (l->op == ANX_OP_MAXPOOL && dir == ANX_BWD_DATA) { /* the winners may be kept from fwd */
                check_dir(l, dir, exact, &in, FWD_SAME_SRC, s);
                check_dir(l, dir, exact, &in, FWD_OTHER_SRC, s);
            }
        }
        free_inputs(&in);
    }
    if (g_opt.verbose) printf("  %s n%d: %.2f s\n", l->name, l->n, now() - t0);
}

/* A stand-alone descriptor (not from the model). */
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
    case ANX_OP_LINEAR: l.oc = oc, l.oh = l.ow = 1, l.kh = ih, l.kw = iw; break;
    case ANX_OP_LOSS: l.oc = l.oh = l.ow = 1; break;
    default: l.oc = ic, l.oh = ih, l.ow = iw, l.p = 0.5f; break;
    }
    return l;
}

static void check_awkward(void)
{
    uint64_t seed = 1000;
#define AWK_CHECK(op, name, n, ic, ih, iw, oc, k, s, p)                          \
    {                                                                            \
        const anx_layer_desc l = make(ANX_OP_##op, name, n, ic, ih, iw, oc, k, s, p); \
        check_layer(&l, seed);                                                   \
        seed += 10;                                                              \
    }
#define NET_NONE(tier, in_dim, n_class, batch, hw, which)
    SHAPE_LIST(AWK_CHECK, NET_NONE)
#undef AWK_CHECK
#undef NET_NONE
}

static void check_net(tier row_tier, int in_dim, int n_class, int batch, int hw, which w, uint64_t seed)
{
    if (row_tier != g_opt.tier && g_opt.tier != SWEEP) return;
    if (g_opt.tier == SLOW && batch > 1 && tu_sanitized()) { /* ASan runs these 5-10x slower */
        printf("Alexnet(%d, %d) batch %d: left to the release build (sanitizers)\n", in_dim, n_class, batch);
        return;
    }
    anx_model m;
    char err[256];
    const anx_model_config cfg = {in_dim, n_class, batch, hw};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    printf("Alexnet(%d, %d) batch %d input %d: %s\n", in_dim, n_class, batch, hw, w == ALL ? "every layer" : "Conv2d-1");
    if (w == CONV1) {
        check_layer(&m.layers[0], seed);
        return;
    }
    for (int i = 0; i < ANX_NUM_LAYERS; i++) check_layer(&m.layers[i], seed + 10 * (uint64_t)i);
    check_layer(&m.loss, seed + 300);
}

static void check_nets(void)
{
    uint64_t seed = 2000;
#define AWK_NONE(op, name, n, ic, ih, iw, oc, k, s, p)
#define NET_CHECK(tier, in_dim, n_class, batch, hw, which)          \
    check_net(tier, in_dim, n_class, batch, hw, which, seed);       \
    seed += 1000;
    SHAPE_LIST(AWK_NONE, NET_CHECK)
#undef AWK_NONE
#undef NET_CHECK
}

/* ---- ReLU: PyTorch's semantics on special values, through the interface ---- */

static float f_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* torch.relu (checked against torch 1.13 by ref/relu.c): negatives, -inf and negative subnormals
 * give +0; -0, +0, NaN (its payload kept), +inf and positive subnormals pass unchanged.
 * threshold_backward(grad, result, 0): result <= 0 (-0 included) gives +0, a NaN result passes
 * the gradient. */
static void check_relu_semantics(void)
{
    const anx_backend *be = g_opt.be;
    const float nan1 = f_bits(0x7fc00123u), sub = f_bits(0x00000001u), nsub = f_bits(0x80000001u);
    const struct { float x, fwd; } F[] = {
        {-0.0f, -0.0f},   {0.0f, 0.0f}, {nan1, nan1},      {INFINITY, INFINITY}, {-INFINITY, 0.0f},
        {-1.5f, 0.0f},    {2.5f, 2.5f}, {sub, sub},        {nsub, 0.0f},          {FLT_MAX, FLT_MAX},
        {-FLT_MAX, 0.0f}, {FLT_MIN, FLT_MIN}, {-FLT_MIN, 0.0f},
    };
    const struct { float dst, diff_dst, diff_src; } B[] = {
        {nan1, 3.0f, 3.0f},  {-0.0f, 3.0f, 0.0f}, {0.0f, -3.0f, 0.0f}, {1.0f, -2.0f, -2.0f},
        {1.0f, -0.0f, -0.0f}, {INFINITY, 7.0f, 7.0f}, {sub, 5.0f, 5.0f}, {2.0f, nan1, nan1},
    };
    const int nf = (int)(sizeof F / sizeof *F), nbk = (int)(sizeof B / sizeof *B);
    /* 16 channels: a blocked layout's channel block (8 or 16) holds them; batch 2, 3x3 */
    const anx_layer_desc l = make(ANX_OP_RELU, "relu semantics", 2, 16, 3, 3, 0, 0, 0, 0);
    const size_t n = anx_desc_plain_count(&l, ANX_DST);
    plain_set in = {0};
    in.src = malloc(n * sizeof(float)), in.dst = malloc(n * sizeof(float)), in.diff_dst = malloc(n * sizeof(float));
    float *want_f = malloc(n * sizeof(float)), *want_b = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        in.src[i] = F[i % nf].x, want_f[i] = F[i % nf].fwd;
        in.dst[i] = B[i % nbk].dst, in.diff_dst[i] = B[i % nbk].diff_dst, want_b[i] = B[i % nbk].diff_src;
    }
    for (int t = 0; t < g_opt.nthreads; t++) {
        char what[96];
        snprintf(what, sizeof what, "ReLU fwd semantics on %s, %d threads", be->name, g_opt.threads[t]);
        imported fi = import_inputs(be, &l, ANX_FWD, &in);
        result f = run(be, &l, ANX_FWD, g_opt.threads[t], &fi, NULL, 0, what);
        free_imported(&fi);
        if (f.out) tu_expect_bitwise(f.out, want_f, n, what);
        snprintf(what, sizeof what, "ReLU bwd_data semantics on %s, %d threads", be->name, g_opt.threads[t]);
        imported bi = import_inputs(be, &l, ANX_BWD_DATA, &in);
        result b = run(be, &l, ANX_BWD_DATA, g_opt.threads[t], &bi, NULL, 0, what);
        free_imported(&bi);
        if (b.out) tu_expect_bitwise(b.out, want_b, n, what);
        result_free(&f), result_free(&b);
    }
    free_inputs(&in);
    free(want_f), free(want_b);
}

/* ---- Adam on adversarial values, bit for bit against ref ---- */

/* exp_avg_sq about (1-b2)/b2 g^2 .. g^2 (where v b2 + ((1-b2) g) g rounds twice differently
 * from one fma), subnormal and zero gradients and moments of both signs, large and tiny
 * magnitudes. */
static void adam_state(float *p, float *g, float *m, float *v, size_t n, uint64_t seed)
{
    const uint64_t k = anx_rng_key(seed, "adam adversarial", 0);
    for (size_t i = 0; i < n; i++) {
        const double u0 = anx_rng_u01(k, 4 * i), u1 = anx_rng_u01(k, 4 * i + 1);
        const double u2 = anx_rng_u01(k, 4 * i + 2), u3 = anx_rng_u01(k, 4 * i + 3);
        const float gi = (float)((u0 < 0.5 ? -1 : 1) * pow(10.0, -8.0 + 10.0 * u1)); /* 1e-8 .. 100 */
        p[i] = (float)(2.0 * u2 - 1.0);
        g[i] = gi;
        m[i] = (float)(gi * (u3 - 0.5));
        v[i] = (float)((double)gi * gi * pow(10.0, -3.5 + 3.5 * u3)); /* 3e-4 g^2 .. g^2 */
        switch (i % 16) { /* the special ones, one in 16 */
        case 3: g[i] = f_bits(0x00000007u), v[i] = f_bits(0x00000003u); break; /* subnormal g and v */
        case 5: g[i] = -0.0f, m[i] = -0.0f; break;
        case 7: g[i] = 0.0f, m[i] = 0.0f, v[i] = 0.0f; break;
        case 9: g[i] = f_bits(0x80800000u), v[i] = 0.0f; break; /* -FLT_MIN: g^2 underflows */
        case 11: p[i] = -0.0f; break;
        case 13: g[i] = 3e18f, v[i] = 9e36f; break; /* g^2 near FLT_MAX */
        default: break;
        }
    }
}

static void check_adam(void)
{
    const anx_backend *be = g_opt.be;
    if (!be->adam) {
        printf("  adam: skipped: the backend has no adam\n");
        return;
    }
    const size_t n = 3 * 16384 + 13; /* several chunks, not a multiple of 8 or 16 */
    const struct { anx_adam_hparams hp; int steps; } runs[] = {
        {{1e-3f, 0.9f, 0.999f, 1e-8f, 1}, 4},  /* PyTorch's defaults, steps 1..4 */
        {{1e-4f, 0.9f, 0.999f, 1e-8f, 999}, 2}, /* late steps: bias corrections near 1 */
        {{10.0f, 0.5f, 0.75f, 1e-30f, 1}, 3},   /* large steps, tiny eps */
        {{1e-3f, 0.9f, 0.999f, 1e-8f, 1000000}, 1},
    };
    float *st[2][4];
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++)
        for (int t = 0; t < g_opt.nthreads; t++) {
            for (int b = 0; b < 2; b++) {
                for (int k = 0; k < 4; k++) st[b][k] = tu_alloc(n, "adam state");
                adam_state(st[b][0], st[b][1], st[b][2], st[b][3], n, g_opt.seed + 4000 + r);
            }
            anx_adam_hparams hp = runs[r].hp;
            for (int s = 0; s < runs[r].steps; s++, hp.step++) {
                g_opt.ref->adam(st[0][0], st[0][1], st[0][2], st[0][3], n, &hp, 1);
                be->adam(st[1][0], st[1][1], st[1][2], st[1][3], n, &hp, g_opt.threads[t]);
                static const char *const names[4] = {"param", "grad", "exp_avg", "exp_avg_sq"};
                for (int k = 0; k < 4; k++) {
                    char what[128];
                    snprintf(what, sizeof what, "adam on %s, run %zu step %lld, %d threads: %s", be->name, r,
                             (long long)hp.step, g_opt.threads[t], names[k]);
                    tu_expect_bitwise(st[1][k], st[0][k], n, what);
                }
            }
            for (int b = 0; b < 2; b++)
                for (int k = 0; k < 4; k++) tu_free(st[b][k]);
        }
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: test_backend_layers BACKEND [--tier quick|slow|sweep] [--seed S] [--verbose]\n"
            "  Every (layer, direction) BACKEND does, against the reference backend, through the backend interface:\n"
            "  exact tier (bitwise), random tier (derived bounds), guards, padding, threads.\n"
            "  quick: awkward shapes, ReLU semantics and Adam, threads 1 and 2 (the default)\n"
            "  slow:  the model's layers (rows tagged SLOW), threads 1 and 2\n"
            "  sweep: every row, threads 1, 2 and 3\n"
            "  Exit 0 passed, 1 failed, 2 bad arguments, 77 skipped (the backend cannot run here).\n");
}

static int bad_arg(const char *msg, const char *arg)
{
    fprintf(stderr, "test_backend_layers: %s: %s (see --help)\n", msg, arg);
    return 2;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *name = NULL;
    g_opt.tier = QUICK;
    g_opt.seed = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--tier") == 0 && i + 1 < argc) {
            const char *t = argv[++i];
            if (strcmp(t, "quick") == 0) g_opt.tier = QUICK;
            else if (strcmp(t, "slow") == 0) g_opt.tier = SLOW;
            else if (strcmp(t, "sweep") == 0) g_opt.tier = SWEEP;
            else return bad_arg("--tier must be quick, slow or sweep", t);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            char *end;
            g_opt.seed = strtoull(argv[++i], &end, 10);
            if (*end || !*argv[i]) return bad_arg("--seed needs an unsigned integer", argv[i]);
        } else if (strcmp(argv[i], "--verbose") == 0) {
            g_opt.verbose = 1;
        } else if (argv[i][0] == '-' || name) {
            return bad_arg("unknown argument", argv[i]);
        } else {
            name = argv[i];
        }
    }
    if (!name) return bad_arg("missing argument", "BACKEND");
    g_opt.be = anx_backend_find(name);
    if (!g_opt.be) return bad_arg("no backend of that name in this build", name);
    g_opt.ref = anx_backend_reference();
    g_opt.nthreads = g_opt.tier == SWEEP ? 3 : 2;
    for (int t = 0; t < g_opt.nthreads; t++) g_opt.threads[t] = t + 1;
    static const char *const tiers[] = {"quick", "slow", "sweep"};
    printf("test_backend_layers %s --tier %s --seed %llu\n", name, tiers[g_opt.tier], (unsigned long long)g_opt.seed);
    const char *why = g_opt.be->unavailable ? g_opt.be->unavailable() : NULL;
    if (why) {
        printf("test_backend_layers %s: skipped: %s\n", name, why);
        return SKIP_CODE;
    }
    if (g_opt.tier != SLOW) {
        check_relu_semantics();
        check_adam();
        check_awkward();
    }
    check_nets();
    char title[96];
    snprintf(title, sizeof title, "test_backend_layers %s --tier %s", name, tiers[g_opt.tier]);
    return tu_finish(title);
}
