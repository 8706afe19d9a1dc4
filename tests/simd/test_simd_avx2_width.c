/* test_simd_avx2_width: the shared kernels of fast/simd/ instantiated at AVX2 width (backend
 * avx2s, compiled into this test from tests/simd/avx2s_*.c) against the hand-written fast/avx2
 * kernels they were derived from.  Same layouts, same register tiles, same order of every sum,
 * so every output must have the same bits: every conv, pooling and linear layer of
 * Alexnet(3, 1000) at batch 2 in every direction, and awkward shapes (channel tails, odd
 * widths, strides, chunks, plain layouts).  (ReLU, dropout, the loss and Adam are not fast/simd's:
 * both backends take them from anx/ops_shared.h or their own files.)
 * This checks the vector layer's AVX2 definitions and the kernels' width-generic logic on any
 * AVX2 machine (with or without AVX-512), and is the proof that fast/avx2 can move onto the
 * shared sources without changing a bit.  Inputs: uniform [-1, 1) and, for pooling, small
 * integers (ties) and NaNs; seeds fixed and printed with every failure.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "testutil.h"

#define SKIP_CODE 77

extern const anx_backend anx_backend_avx2s;

/* The plain output(s) of (l, dir) on be, inputs from the plain arrays in[slot] and diff_dst. */
typedef struct outs {
    float *o1, *o2;
    size_t n1, n2;
} outs;

static float *imported(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *plain)
{
    if (!plain) return NULL;
    float *buf = tu_alloc(be->tensor_floats(l, s), "input");
    be->tensor_import(l, s, buf, plain);
    return buf;
}

static outs run(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, float *const in[ANX_SLOT_COUNT],
                const float *diff_dst, int threads)
{
    outs r = {0};
    void *ctx = NULL;
    TU_CHECKF(anx_backend_layer_create(be, &ctx, l, threads) == NULL, "%s layer_create", be->name);
    anx_args a = {0};
    a.src = imported(be, l, ANX_SRC, in[ANX_SRC]);
    a.dst = dir == ANX_FWD ? NULL : imported(be, l, ANX_DST, in[ANX_DST]);
    a.weights = imported(be, l, ANX_WEIGHTS, in[ANX_WEIGHTS]);
    a.bias = imported(be, l, ANX_BIAS, in[ANX_BIAS]);
    a.diff_dst = imported(be, l, ANX_DST, diff_dst);
    const anx_slot s1 = dir == ANX_FWD ? ANX_DST : dir == ANX_BWD_DATA ? ANX_SRC : ANX_WEIGHTS;
    float *out1 = NULL, *out2 = NULL;
    out1 = tu_alloc(be->tensor_floats(l, s1), "output");
    if (dir == ANX_BWD_WEIGHTS) out2 = tu_alloc(be->tensor_floats(l, ANX_BIAS), "output 2");
    if (dir == ANX_FWD) a.dst = out1;
    if (dir == ANX_BWD_DATA) a.diff_src = out1;
    if (dir == ANX_BWD_WEIGHTS) a.diff_weights = out1, a.diff_bias = out2;
    TU_CHECKF(be->exec[l->op][dir](ctx, l, &a) == NULL, "%s %s %s exec", be->name, l->name, anx_dir_name(dir));
    r.n1 = anx_desc_plain_count(l, s1);
    r.o1 = malloc(r.n1 * sizeof(float));
    be->tensor_export(l, s1, r.o1, out1);
    if (out2) {
        r.n2 = anx_desc_plain_count(l, ANX_BIAS);
        r.o2 = malloc(r.n2 * sizeof(float));
        be->tensor_export(l, ANX_BIAS, r.o2, out2);
    }
    tu_free(a.src), tu_free(a.weights), tu_free(a.bias), tu_free(a.diff_dst), tu_free(out1), tu_free(out2);
    if (dir != ANX_FWD) tu_free(a.dst);
    if (be->layer_destroy) be->layer_destroy(ctx);
    return r;
}

static float *filled(size_t n, uint64_t seed, int ints)
{
    if (!n) return NULL;
    float *p = malloc(n * sizeof *p);
    if (ints)
        tu_fill_int(p, n, seed, -2, 2, 1.0);
    else
        tu_fill_uniform(p, n, seed, -1.0f, 1.0f);
    return p;
}

/* Every direction of l on avx2 and avx2s: the same layout size and the same bits. */
static void check_layer(const anx_layer_desc *l, uint64_t seed)
{
    const anx_backend *hand = &anx_backend_avx2, *shared = &anx_backend_avx2s;
    float *in[ANX_SLOT_COUNT] = {0};
    const int ints = l->op == ANX_OP_MAXPOOL;
    in[ANX_SRC] = filled(anx_desc_plain_count(l, ANX_SRC), seed, ints);
    if (ints) /* a NaN now and then: the window's winner is the last NaN (PyTorch's rule) */
        for (size_t i = 0; i < anx_desc_plain_count(l, ANX_SRC); i += 97) in[ANX_SRC][i] = NAN;
    if (anx_desc_has_weights(l)) {
        in[ANX_WEIGHTS] = filled(anx_desc_plain_count(l, ANX_WEIGHTS), seed + 1, 0);
        in[ANX_BIAS] = filled(anx_desc_plain_count(l, ANX_BIAS), seed + 2, 0);
    }
    const size_t nd = anx_desc_plain_count(l, ANX_DST);
    in[ANX_DST] = filled(nd, seed + 3, 0); /* read by no conv, pooling or linear direction: any values do */
    float *diff_dst = filled(nd, seed + 4, 0);
    for (int s = 0; s < ANX_SLOT_COUNT; s++)
        TU_CHECKF(hand->tensor_floats(l, (anx_slot)s) == shared->tensor_floats(l, (anx_slot)s),
                  "%s slot %d: layout sizes differ", l->name, s);
    for (int d = 0; d < ANX_DIR_COUNT; d++) {
        const anx_dir dir = (anx_dir)d;
        const char *why_h = anx_backend_declines(hand, l, dir), *why_s = anx_backend_declines(shared, l, dir);
        TU_CHECKF(!why_h == !why_s, "%s %s: avx2 %s, avx2s %s", l->name, anx_dir_name(dir), why_h ? why_h : "does it",
                  why_s ? why_s : "does it");
        if (why_h || why_s) continue;
        char what[160];
        snprintf(what, sizeof what, "%s %s [n%d %dx%dx%d -> %dx%dx%d k%d s%d p%d] seed %llu", l->name,
                 anx_dir_name(dir), l->n, l->ic, l->ih, l->iw, l->oc, l->oh, l->ow, l->kh, l->stride, l->pad,
                 (unsigned long long)seed);
        outs h = run(hand, l, dir, in, diff_dst, 2);
        outs s = run(shared, l, dir, in, diff_dst, 2);
        tu_expect_bitwise(s.o1, h.o1, h.n1, what);
        if (h.o2) tu_expect_bitwise(s.o2, h.o2, h.n2, what);
        free(h.o1), free(h.o2), free(s.o1), free(s.o2);
    }
    for (int s = 0; s < ANX_SLOT_COUNT; s++) free(in[s]);
    free(diff_dst);
}

static anx_layer_desc make(anx_op op, const char *name, int n, int ic, int ih, int iw, int oc, int k, int stride,
                           int pad)
{
    anx_layer_desc l;
    memset(&l, 0, sizeof l);
    l.op = op, l.index = 99, l.n = n, l.ic = ic, l.ih = ih, l.iw = iw;
    snprintf(l.name, sizeof l.name, "%s", name);
    if (op == ANX_OP_CONV2D || op == ANX_OP_MAXPOOL) {
        l.oc = op == ANX_OP_CONV2D ? oc : ic;
        l.kh = l.kw = k, l.stride = stride, l.pad = pad;
        l.oh = (ih - k + 2 * pad) / stride + 1, l.ow = (iw - k + 2 * pad) / stride + 1;
    } else { /* linear */
        l.oc = oc, l.oh = l.ow = 1, l.kh = ih, l.kw = iw;
    }
    return l;
}

int main(void)
{
    const char *why = anx_backend_avx2.unavailable();
    if (why) {
        printf("test_simd_avx2_width: skipped: %s\n", why);
        return SKIP_CODE;
    }
    const anx_layer_desc awk[] = {
        make(ANX_OP_CONV2D, "conv 16->24 k3p1 w7", 3, 16, 9, 7, 24, 3, 1, 1),
        make(ANX_OP_CONV2D, "conv 8->40 k1 w5", 3, 8, 6, 5, 40, 1, 1, 0),
        make(ANX_OP_CONV2D, "conv 16->16 k3s2p1 w11", 3, 16, 11, 11, 16, 3, 2, 1),
        make(ANX_OP_CONV2D, "conv 5->8 k3p1 w9", 1, 5, 9, 9, 8, 3, 1, 1),
        make(ANX_OP_CONV2D, "conv 8->16 k5p2 w2", 3, 8, 2, 2, 16, 5, 1, 2),
        make(ANX_OP_CONV2D, "conv 136->40 k3p1 w4", 2, 136, 4, 4, 40, 3, 1, 1),
        make(ANX_OP_MAXPOOL, "pool 3 k3s2 w13", 3, 3, 13, 13, 0, 3, 2, 0),
        make(ANX_OP_LINEAR, "linear 16x3x3->13", 7, 16, 3, 3, 13, 0, 0, 0),
        make(ANX_OP_LINEAR, "linear 2100->35", 5, 2100, 1, 1, 35, 0, 0, 0),
    };
    for (size_t i = 0; i < sizeof awk / sizeof awk[0]; i++) check_layer(&awk[i], 100 + 10 * i);

    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 1000, 2, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_op op = m.layers[i].op; /* ReLU and dropout are anx/ops_shared.h's, not fast/simd's */
        if (op == ANX_OP_CONV2D || op == ANX_OP_MAXPOOL || op == ANX_OP_LINEAR)
            check_layer(&m.layers[i], 1000 + 10 * (uint64_t)i);
    }

    return tu_finish("test_simd_avx2_width");
}
