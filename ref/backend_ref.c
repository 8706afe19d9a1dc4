/* anx_backend_ref: the reference backend's table.  Plain PyTorch layout for every tensor, so
 * tensor_floats is the plain count and import/export are copies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "anx/backend.h"
#include "ref/ref.h"

typedef struct ref_ctx {
    int threads; /* team size for this layer's kernels; <= 0: OpenMP's default */
} ref_ctx;

static anx_status ref_layer_create(void **ctx, const anx_layer_desc *l, int threads)
{
    (void)l;
    ref_ctx *c = malloc(sizeof *c);
    if (!c) return anx_status_oom("the ref layer context", sizeof *c);
    c->threads = threads;
    *ctx = c;
    return NULL;
}

static void ref_layer_destroy(void *ctx) { free(ctx); }

/* The kernels run with OpenMP's default team; set it from the layer's thread count for the
 * duration of one exec (the ICV belongs to the calling thread only). */
static int threads_begin(const void *ctx)
{
    int saved = omp_get_max_threads();
    const ref_ctx *c = ctx;
    if (c && c->threads > 0) omp_set_num_threads(c->threads);
    return saved;
}

static void threads_end(int saved) { omp_set_num_threads(saved); }

static const char *ref_supports(const anx_layer_desc *l, anx_dir dir)
{
    (void)dir;
    if ((l->op == ANX_OP_CONV2D || l->op == ANX_OP_MAXPOOL) && l->stride < 1)
        return "stride must be >= 1";
    if (l->op == ANX_OP_MAXPOOL && l->pad != 0) return "MaxPool2d with padding is not implemented by ref";
    return NULL;
}

static const char *ref_impl_name(void *ctx, const anx_layer_desc *l, anx_dir dir)
{
    (void)ctx;
    static const char *const names[ANX_OP_COUNT][ANX_DIR_COUNT] = {
        [ANX_OP_CONV2D] = {ANX_IMPL_NAME(anx_f32_conv2d_fwd__ref), ANX_IMPL_NAME(anx_f32_conv2d_bwd_data__ref),
                           ANX_IMPL_NAME(anx_f32_conv2d_bwd_weights__ref)},
        [ANX_OP_RELU] = {ANX_IMPL_NAME(anx_f32_relu_fwd__ref), ANX_IMPL_NAME(anx_f32_relu_bwd_data__ref), NULL},
        [ANX_OP_MAXPOOL] = {ANX_IMPL_NAME(anx_f32_maxpool_fwd__ref), ANX_IMPL_NAME(anx_f32_maxpool_bwd_data__ref), NULL},
        [ANX_OP_LINEAR] = {ANX_IMPL_NAME(anx_f32_linear_fwd__ref), ANX_IMPL_NAME(anx_f32_linear_bwd_data__ref),
                           ANX_IMPL_NAME(anx_f32_linear_bwd_weights__ref)},
        [ANX_OP_DROPOUT] = {ANX_IMPL_NAME(anx_f32_dropout_fwd__ref), ANX_IMPL_NAME(anx_f32_dropout_bwd_data__ref), NULL},
        [ANX_OP_LOSS] = {ANX_IMPL_NAME(anx_f32_loss_fwd__ref), ANX_IMPL_NAME(anx_f32_loss_bwd_data__ref), NULL},
    };
    if ((unsigned)l->op >= ANX_OP_COUNT || (unsigned)dir >= ANX_DIR_COUNT) return "?";
    return names[l->op][dir] ? names[l->op][dir] : "?";
}

static size_t ref_tensor_floats(const anx_layer_desc *l, anx_slot slot) { return anx_desc_plain_count(l, slot); }

static void ref_tensor_import(const anx_layer_desc *l, anx_slot slot, float *dst, const float *plain)
{
    memcpy(dst, plain, anx_desc_plain_count(l, slot) * sizeof *dst);
}

static void ref_tensor_export(const anx_layer_desc *l, anx_slot slot, float *plain, const float *src)
{
    memcpy(plain, src, anx_desc_plain_count(l, slot) * sizeof *plain);
}

/* ---- exec wrappers: descriptor -> kernel arguments ---- */

static anx_status conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_conv2d_fwd__ref(a->dst, a->src, a->weights, a->bias, l->n, l->ic, l->ih, l->iw, l->oc, l->oh,
                            l->ow, l->kh, l->kw, l->stride, l->pad);
    threads_end(saved);
    return NULL;
}

static anx_status conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_conv2d_bwd_data__ref(a->diff_src, a->diff_dst, a->weights, l->n, l->ic, l->ih, l->iw, l->oc,
                                 l->oh, l->ow, l->kh, l->kw, l->stride, l->pad);
    threads_end(saved);
    return NULL;
}

static anx_status conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_conv2d_bwd_weights__ref(a->diff_weights, a->diff_bias, a->src, a->diff_dst, l->n, l->ic, l->ih,
                                    l->iw, l->oc, l->oh, l->ow, l->kh, l->kw, l->stride, l->pad);
    threads_end(saved);
    return NULL;
}

/* A Linear's input is its NCHW source viewed as [n, ic*ih*iw]. */
static int linear_k(const anx_layer_desc *l) { return l->ic * l->ih * l->iw; }

static anx_status linear_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_linear_fwd__ref(a->dst, a->src, a->weights, a->bias, l->n, linear_k(l), l->oc);
    threads_end(saved);
    return NULL;
}

static anx_status linear_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_linear_bwd_data__ref(a->diff_src, a->diff_dst, a->weights, l->n, linear_k(l), l->oc);
    threads_end(saved);
    return NULL;
}

static anx_status linear_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_linear_bwd_weights__ref(a->diff_weights, a->diff_bias, a->src, a->diff_dst, l->n, linear_k(l),
                                    l->oc);
    threads_end(saved);
    return NULL;
}

static anx_status relu_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_relu_fwd__ref(a->dst, a->src, anx_desc_plain_count(l, ANX_DST));
    threads_end(saved);
    return NULL;
}

static anx_status relu_bwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_relu_bwd_data__ref(a->diff_src, a->diff_dst, a->dst, anx_desc_plain_count(l, ANX_DST));
    threads_end(saved);
    return NULL;
}

static anx_status maxpool_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_maxpool_fwd__ref(a->dst, a->src, l->n, l->ic, l->ih, l->iw, l->oh, l->ow, l->kh, l->kw,
                             l->stride);
    threads_end(saved);
    return NULL;
}

static anx_status maxpool_bwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_maxpool_bwd_data__ref(a->diff_src, a->diff_dst, a->src, l->n, l->ic, l->ih, l->iw, l->oh, l->ow,
                             l->kh, l->kw, l->stride);
    threads_end(saved);
    return NULL;
}

static anx_status dropout_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_dropout_fwd__ref(a->dst, a->src, a->mask, anx_desc_plain_count(l, ANX_DST));
    threads_end(saved);
    return NULL;
}

static anx_status dropout_bwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    int saved = threads_begin(ctx);
    anx_f32_dropout_bwd_data__ref(a->diff_src, a->diff_dst, a->mask, anx_desc_plain_count(l, ANX_DST));
    threads_end(saved);
    return NULL;
}

/* The loss descriptor sees logits [n, ic, 1, 1]. */
static anx_status loss_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)ctx;
    *a->loss = anx_f32_loss_fwd__ref(a->src, a->target, l->n, l->ic * l->ih * l->iw);
    return NULL;
}

static anx_status loss_bwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)ctx;
    anx_f32_loss_bwd_data__ref(a->diff_src, a->src, a->target, l->n, l->ic * l->ih * l->iw);
    return NULL;
}

/* The double PyTorch would hold for a hyper-parameter that reached us as a float: the shortest
 * decimal that rounds to that float ("0.9", not 0.899999976...), as typed on a command line.
 * It matters: 1 - beta1 differs by 2.4e-7 relative between 0.9 and (double)0.9f. */
static double hparam_decimal(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

static void ref_adam(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t n,
                     const anx_adam_hparams *hp, int threads)
{
    anx_f32_adam__ref(param, grad, exp_avg, exp_avg_sq, n, hparam_decimal(hp->lr), hparam_decimal(hp->beta1),
                      hparam_decimal(hp->beta2), hparam_decimal(hp->eps), hp->step, threads);
}

const anx_backend anx_backend_ref = {
    .name = "ref",
    .unavailable = NULL,
    .supports = ref_supports,
    .layer_create = ref_layer_create,
    .layer_destroy = ref_layer_destroy,
    .impl_name = ref_impl_name,
    .tensor_floats = ref_tensor_floats,
    .tensor_import = ref_tensor_import,
    .tensor_export = ref_tensor_export,
    .exec =
        {
            [ANX_OP_CONV2D] = {conv2d_fwd, conv2d_bwd_data, conv2d_bwd_weights},
            [ANX_OP_RELU] = {relu_fwd, relu_bwd, NULL},
            [ANX_OP_MAXPOOL] = {maxpool_fwd, maxpool_bwd, NULL},
            [ANX_OP_LINEAR] = {linear_fwd, linear_bwd_data, linear_bwd_weights},
            [ANX_OP_DROPOUT] = {dropout_fwd, dropout_bwd, NULL},
            [ANX_OP_LOSS] = {loss_fwd, loss_bwd, NULL},
        },
    .adam = ref_adam,
    .peak_isa = ANX_PEAK_BEST, /* plain C: judged against what the machine could do */
    .train_rank = 1,           /* the slowest: anx train's last resort */
    .is_reference = 1,
};
