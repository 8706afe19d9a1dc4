/* anx_backend_avx2: the AVX2+FMA backend's table, its layouts (see avx2.h) and the CPU check.
 * This file is compiled for plain x86-64 (AX_PORTABLE): unavailable() must run anywhere. */
#define AX_PORTABLE 1
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "fast/avx2/avx2.h"

/* ---- availability and per-layer state ---- */

static const char *avx2_unavailable(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NULL;
    return "CPU lacks AVX2/FMA";
}

static void *avx2_layer_create(const anx_layer_desc *l, int threads)
{
    (void)l;
    ax_ctx *ctx = malloc(sizeof *ctx);
    if (ctx) ctx->threads = threads;
    return ctx;
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
        [ANX_OP_RELU] = {"anx_f32_relu_fwd__avx2", "anx_f32_relu_bwd__avx2", NULL},
        [ANX_OP_MAXPOOL] = {"anx_f32_maxpool_fwd__avx2_8c", "anx_f32_maxpool_bwd__avx2_8c", NULL},
        [ANX_OP_LINEAR] = {"anx_f32_linear_fwd__avx2_4x3", "anx_f32_linear_bwd_data__avx2_6x16",
                           "anx_f32_linear_bwd_weights__avx2_6x16"},
        [ANX_OP_DROPOUT] = {"anx_f32_dropout__avx2", "anx_f32_dropout__avx2", NULL},
        [ANX_OP_LOSS] = {"anx_f32_loss_fwd__avx2", "anx_f32_loss_bwd__avx2", NULL},
    };
    if ((unsigned)l->op >= ANX_OP_COUNT || (unsigned)dir >= ANX_DIR_COUNT) return "?";
    if (l->op == ANX_OP_CONV2D) return ax_conv2d_impl(l, dir);
    return names[l->op][dir] ? names[l->op][dir] : "?";
}

/* ---- layouts: every tensor is exactly its plain size, only the order differs ---- */

static size_t avx2_tensor_floats(const anx_layer_desc *l, anx_slot slot) { return anx_desc_plain_count(l, slot); }

/* Position in this backend's layout of the plain (NCHW / OIHW / [oc]) element i of slot. */
static size_t layout_index(const anx_layer_desc *l, anx_slot slot, size_t i)
{
    if (slot == ANX_SRC || slot == ANX_DST) {
        const int c = slot == ANX_SRC ? l->ic : l->oc, h = slot == ANX_SRC ? l->ih : l->oh;
        const int w = slot == ANX_SRC ? l->iw : l->ow;
        if (l->op == ANX_OP_LOSS || ax_cb(c) == 1) return i;
        const size_t hw = (size_t)h * w;
        const int n = (int)(i / (c * hw)), ci = (int)(i / hw % c), y = (int)(i % hw / w), x = (int)(i % w);
        return ax_act_off(c, h, w, n, ci, y, x);
    }
    if (slot == ANX_WEIGHTS && l->op == ANX_OP_LINEAR) {
        /* [oc][k]: k in the order of the src activation (fc6: nChw8c of 256x6x6) */
        const size_t k = (size_t)l->ic * l->ih * l->iw, hw = (size_t)l->ih * l->iw;
        const size_t o = i / k, kp = i % k;
        return o * k + ax_act_off(l->ic, l->ih, l->iw, 0, (int)(kp / hw), (int)(kp % hw / l->iw),
                                  (int)(kp % l->iw));
    }
    if (slot == ANX_WEIGHTS && l->op == ANX_OP_CONV2D) {
        /* OIhw{cbi}i{cbo}o */
        const int cbi = ax_cb(l->ic), cbo = ax_cb(l->oc);
        const size_t khw = (size_t)l->kh * l->kw;
        const size_t o = i / (l->ic * khw), c = i / khw % l->ic, kyx = i % khw;
        return (((o / cbo) * (l->ic / cbi) + c / cbi) * khw + kyx) * cbi * cbo + (c % cbi) * cbo + o % cbo;
    }
    return i; /* bias */
}

static void avx2_tensor_import(const anx_layer_desc *l, anx_slot slot, float *dst, const float *plain)
{
    const size_t n = anx_desc_plain_count(l, slot);
    for (size_t i = 0; i < n; i++) dst[layout_index(l, slot, i)] = plain[i];
}

static void avx2_tensor_export(const anx_layer_desc *l, anx_slot slot, float *plain, const float *src)
{
    const size_t n = anx_desc_plain_count(l, slot);
    for (size_t i = 0; i < n; i++) plain[i] = src[layout_index(l, slot, i)];
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
            [ANX_OP_RELU] = {ax_relu_fwd, ax_relu_bwd_data, NULL},
            [ANX_OP_MAXPOOL] = {ax_maxpool_fwd, ax_maxpool_bwd_data, NULL},
            [ANX_OP_LINEAR] = {ax_linear_fwd, ax_linear_bwd_data, ax_linear_bwd_weights},
            [ANX_OP_DROPOUT] = {ax_dropout_fwd, ax_dropout_bwd_data, NULL},
            [ANX_OP_LOSS] = {ax_loss_fwd, ax_loss_bwd_data, NULL},
        },
    .adam = ax_adam,
};
