/* anx_backend_avx2: the AVX2+FMA backend's table, its layouts (see avx2.h) and the CPU check.
 * This file is compiled for plain x86-64 (AX_PORTABLE): unavailable() must run anywhere. */
#define AX_PORTABLE 1
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "anx/ops_shared.h"
#include "fast/avx2/avx2.h"

/* ---- availability and per-layer state ---- */

static const char *avx2_unavailable(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NULL;
    return "CPU lacks AVX2/FMA";
}

static anx_status avx2_layer_create(void **ctx, const anx_layer_desc *l, int threads)
{
    (void)l;
    ax_ctx *c = malloc(sizeof *c);
    if (!c) return anx_status_oom("the avx2 layer context", sizeof *c);
    c->threads = threads;
    *ctx = c;
    return NULL;
}

static void avx2_layer_destroy(void *ctx) { free(ctx); }

int ax_threads(const void *ctx)
{
    const ax_ctx *c = ctx;
    return c && c->threads > 0 ? c->threads : omp_get_max_threads();
}

static const char *avx2_supports(const anx_layer_desc *l, anx_dir dir)
{
    (void)dir;
    if ((l->op == ANX_OP_CONV2D || l->op == ANX_OP_MAXPOOL) && l->stride < 1) return "stride must be >= 1";
    if (l->op == ANX_OP_CONV2D && l->oc % 8 != 0)
        return "Conv2d needs out channels in multiples of 8 (nChw8c dst, 8-lane kernels)";
    if (l->op == ANX_OP_CONV2D && l->pad < 0) return "negative padding";
    if (l->op == ANX_OP_MAXPOOL && l->pad != 0) return "MaxPool2d with padding is not implemented by avx2";
    return NULL;
}

static const char *avx2_impl_name(void *ctx, const anx_layer_desc *l, anx_dir dir)
{
    (void)ctx;
    static const char *const names[ANX_OP_COUNT][ANX_DIR_COUNT] = {
        [ANX_OP_RELU] = {ANX_IMPL_NAME(anx_f32_relu_fwd__shared), ANX_IMPL_NAME(anx_f32_relu_bwd_data__shared), NULL},
        [ANX_OP_MAXPOOL] = {ANX_IMPL_NAME(anx_f32_maxpool_fwd__avx2_8c), ANX_IMPL_NAME(anx_f32_maxpool_bwd_data__avx2_8c), NULL},
        [ANX_OP_LINEAR] = {ANX_IMPL_NAME(anx_f32_linear_fwd__avx2_4x3), ANX_IMPL_NAME(anx_f32_linear_bwd_data__avx2_6x16),
                           ANX_IMPL_NAME(anx_f32_linear_bwd_weights__avx2_6x16)},
        [ANX_OP_DROPOUT] = {ANX_IMPL_NAME(anx_f32_dropout__shared), ANX_IMPL_NAME(anx_f32_dropout__shared), NULL},
        [ANX_OP_LOSS] = {ANX_IMPL_NAME(anx_f32_loss_fwd__shared), ANX_IMPL_NAME(anx_f32_loss_bwd_data__shared), NULL},
    };
    if ((unsigned)l->op >= ANX_OP_COUNT || (unsigned)dir >= ANX_DIR_COUNT) return "?";
    if (l->op == ANX_OP_CONV2D) return ax_conv2d_impl(l, dir);
    return names[l->op][dir] ? names[l->op][dir] : "?";
}

/* ---- layouts: every tensor is exactly its plain size, only the order differs ---- */

static size_t avx2_tensor_floats(const anx_layer_desc *l, anx_slot slot) { return anx_desc_plain_count(l, slot); }

/* ---- ReLU, dropout, the loss and Adam: the shared ops (anx/ops_shared.h); ReLU and dropout
   over this backend's buffers with the layer's threads ---- */

static anx_status relu_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return anx_relu_fwd__shared(a, avx2_tensor_floats(l, ANX_DST), ax_threads(ctx));
}

static anx_status relu_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return anx_relu_bwd_data__shared(a, avx2_tensor_floats(l, ANX_DST), ax_threads(ctx));
}

static anx_status dropout_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return anx_dropout_fwd__shared(a, avx2_tensor_floats(l, ANX_DST), ax_threads(ctx));
}

static anx_status dropout_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return anx_dropout_bwd_data__shared(a, avx2_tensor_floats(l, ANX_DST), ax_threads(ctx));
}

/* Copies between the plain tensor and this backend's layout, one direction or the other.  The
 * loops walk the plain order with offsets built up per row (no division per element, which made
 * an export of fc6's 37.7M weights cost seconds) and split the outer rows over OpenMP threads;
 * every element is a plain copy, so the thread count cannot change the bits. */
typedef enum { TO_LAYOUT, TO_PLAIN } copy_dir;

static inline void copy_run(float *lay, float *plain, size_t lay_off, size_t stride, size_t count, copy_dir dir)
{
    if (dir == TO_LAYOUT)
        for (size_t j = 0; j < count; j++) lay[lay_off + j * stride] = plain[j];
    else
        for (size_t j = 0; j < count; j++) plain[j] = lay[lay_off + j * stride];
}

/* activation [n, c, h, w] <-> nChw{cb}c: one run per (n, c, y) row of w elements */
static void copy_act(float *lay, float *plain, int n, int c, int h, int w, copy_dir dir)
{
    const int cb = ax_cb(c);
#pragma omp parallel for schedule(static)
    for (long nc = 0; nc < (long)n * c; nc++) {
        const int ni = (int)(nc / c), ci = (int)(nc % c);
        for (int y = 0; y < h; y++)
            copy_run(lay, plain + ((size_t)nc * h + y) * w, ax_act_off(c, h, w, ni, ci, y, 0), (size_t)cb, (size_t)w,
                     dir);
    }
}

/* linear weights [oc][k] <-> [oc][k in the src activation's order] */
static void copy_linear_w(float *lay, float *plain, const anx_layer_desc *l, copy_dir dir)
{
    const int c = l->ic, h = l->ih, w = l->iw, cb = ax_cb(c);
    const size_t k = (size_t)c * h * w;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < l->oc; o++)
        for (int ci = 0; ci < c; ci++)
            for (int y = 0; y < h; y++)
                copy_run(lay, plain + o * k + ((size_t)ci * h + y) * w, o * k + ax_act_off(c, h, w, 0, ci, y, 0),
                         (size_t)cb, (size_t)w, dir);
}

/* conv weights [oc][ic][kh][kw] <-> OIhw{cbi}i{cbo}o */
static void copy_conv_w(float *lay, float *plain, const anx_layer_desc *l, copy_dir dir)
{
    const int cbi = ax_cb(l->ic), cbo = ax_cb(l->oc);
    const size_t khw = (size_t)l->kh * l->kw, blk = (size_t)cbi * cbo;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < l->oc; o++)
        for (int c = 0; c < l->ic; c++) {
            const size_t off = (((size_t)(o / cbo) * (l->ic / cbi) + c / cbi) * khw) * blk + (size_t)(c % cbi) * cbo + o % cbo;
            copy_run(lay, plain + ((size_t)o * l->ic + c) * khw, off, blk, khw, dir);
        }
}

static void copy_slot(const anx_layer_desc *l, anx_slot slot, float *lay, float *plain, copy_dir dir)
{
    const size_t n = anx_desc_plain_count(l, slot);
    if (slot == ANX_SRC || slot == ANX_DST) {
        const int c = slot == ANX_SRC ? l->ic : l->oc, h = slot == ANX_SRC ? l->ih : l->oh;
        const int w = slot == ANX_SRC ? l->iw : l->ow;
        if (l->op != ANX_OP_LOSS && ax_cb(c) != 1) {
            copy_act(lay, plain, (int)(n / ((size_t)c * h * w)), c, h, w, dir);
            return;
        }
    } else if (slot == ANX_WEIGHTS && l->op == ANX_OP_LINEAR) {
        copy_linear_w(lay, plain, l, dir);
        return;
    } else if (slot == ANX_WEIGHTS && l->op == ANX_OP_CONV2D) {
        copy_conv_w(lay, plain, l, dir);
        return;
    }
    copy_run(lay, plain, 0, 1, n, dir); /* plain in both: bias, [n, C] and unblocked activations */
}

static void avx2_tensor_import(const anx_layer_desc *l, anx_slot slot, float *dst, const float *plain)
{
    copy_slot(l, slot, dst, (float *)plain, TO_LAYOUT); /* TO_LAYOUT only reads plain */
}

static void avx2_tensor_export(const anx_layer_desc *l, anx_slot slot, float *plain, const float *src)
{
    copy_slot(l, slot, (float *)src, plain, TO_PLAIN); /* TO_PLAIN only reads the layout */
}

const anx_backend anx_backend_avx2 = {
    .name = "avx2",
    .unavailable = avx2_unavailable,
    .supports = avx2_supports,
    .layer_create = avx2_layer_create,
    .layer_destroy = avx2_layer_destroy,
    .impl_name = avx2_impl_name,
    .tensor_floats = avx2_tensor_floats,
    .tensor_import = avx2_tensor_import,
    .tensor_export = avx2_tensor_export,
    .exec =
        {
            [ANX_OP_CONV2D] = {ax_conv2d_fwd, ax_conv2d_bwd_data, ax_conv2d_bwd_weights},
            [ANX_OP_RELU] = {relu_fwd, relu_bwd_data, NULL},
            [ANX_OP_MAXPOOL] = {ax_maxpool_fwd, ax_maxpool_bwd_data, NULL},
            [ANX_OP_LINEAR] = {ax_linear_fwd, ax_linear_bwd_data, ax_linear_bwd_weights},
            [ANX_OP_DROPOUT] = {dropout_fwd, dropout_bwd_data, NULL},
            [ANX_OP_LOSS] = {anx_loss_fwd__shared, anx_loss_bwd_data__shared, NULL},
        },
    .adam = anx_adam__shared,
    .peak_isa = ANX_PEAK_AVX2,
    .train_rank = 2, /* faster than ref, slower than onednn (docs/bench.md) */
};
