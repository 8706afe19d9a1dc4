/* onednn_internal.h — shared pieces of the oneDNN backend (internal to fast/onednn and its tests).
 *
 * Layouts.  The layout of a tensor is a pure function of (descriptor, slot), because
 * tensor_floats / import / export see nothing else:
 *   activations [n,c,h,w]  h = w = 1: plain nc (what inner product and the loss use);
 *                          c < B:     plain nchw (the input of Conv2d-1: oneDNN's first-conv path);
 *                          otherwise: the blocked nChw{B}c that oneDNN's convolution picks here
 *                                     (B = 8 on AVX2, 16 on AVX-512; probed once, see blocked_tag).
 *   weights                what the forward primitive picks with format_any (OIhw8i8o for an AVX2
 *                          conv, io / blocked for inner product), queried from its primitive descriptor.
 *   bias                   plain x [oc].
 * Consecutive conv, relu and pool layers therefore agree on nChw{B}c without asking each other.
 *
 * Reorders are counted by kind, so a test can show what a steady-state step converts.
 */
#ifndef ANX_ONEDNN_INTERNAL_H
#define ANX_ONEDNN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <dnnl.h>

#include "anx/backend.h"

/* oneDNN failures are not fatal: the library never exits.  ONEDNN_CHECK records the first failed
 * call of this thread ("oneDNN <call> failed with status N at file:line") as the pending status
 * and returns nonzero; the code goes on (oneDNN refuses what a failed call left unset, nothing is
 * dereferenced on a failed path) up to the entry point of the backend table, which hands the
 * pending status to its caller: layer_create and every exec return it, supports() declines with
 * it, and a failure inside tensor_import / tensor_export (void in the interface) is returned by
 * the next exec on that thread.  Every call here is made with descriptors this backend built
 * itself, so a failure is out of memory, a shape oneDNN cannot describe, or a bug. */
#define ONEDNN_CHECK(call) anx_onednn_check((call), #call, __FILE__, __LINE__)
int anx_onednn_check(dnnl_status_t st, const char *what, const char *file, int line);
/* Records a failure described by why (if none is pending yet); returns 1. */
int anx_onednn_fail(const char *why);
/* The pending status of this thread, cleared; NULL when nothing failed since the last take. */
anx_status anx_onednn_take_status(void);

dnnl_engine_t anx_onednn_engine(void);
dnnl_stream_t anx_onednn_stream(void);

/* The layout of (l, slot) (see above) and the plain PyTorch layout of the same tensor. */
void anx_onednn_md(dnnl_memory_desc_t *md, const anx_layer_desc *l, anx_slot slot);
void anx_onednn_plain_md(dnnl_memory_desc_t *md, const anx_layer_desc *l, anx_slot slot);
/* An activation [n,c,h,w] in the layout rule above. */
void anx_onednn_act_md(dnnl_memory_desc_t *md, int n, int c, int h, int w);
/* The blocked activation tag probed from the convolution (dnnl_nChw8c or dnnl_nChw16c). */
dnnl_format_tag_t anx_onednn_blocked_tag(void);

/* Weight layouts of the forward primitives (conv2d.c, linear.c). */
void anx_onednn_conv2d_weights_md(dnnl_memory_desc_t *md, const anx_layer_desc *l);
void anx_onednn_linear_weights_md(dnnl_memory_desc_t *md, const anx_layer_desc *l);

/* Reorder counting.  IMPORT / EXPORT: plain <-> backend layout at the edges (a copy when the two
 * are the same memory layout is not a reorder).  EXEC_WEIGHTS: inside exec, a primitive that
 * needs the weights in another format than the forward one (conv bwd_data on AVX2 / AVX-512).
 * EXEC_OTHER: any other reorder inside exec (activations, gradients) — none are expected. */
typedef enum anx_onednn_reorder_kind {
    ANX_ONEDNN_REORDER_IMPORT,
    ANX_ONEDNN_REORDER_EXPORT,
    ANX_ONEDNN_REORDER_EXEC_WEIGHTS,
    ANX_ONEDNN_REORDER_EXEC_OTHER,
    ANX_ONEDNN_REORDER_KIND_COUNT
} anx_onednn_reorder_kind;
uint64_t anx_onednn_reorder_count(anx_onednn_reorder_kind kind);
void anx_onednn_reorder_counted(anx_onednn_reorder_kind kind);

/* One primitive with its memory objects.  Memory objects are created once with no buffer and
 * pointed at the caller's floats on every exec (dnnl_memory_set_data_handle); the scratchpad
 * (user mode) and any owned buffer (pooling workspace, reordered weights) live here. */
#define ONEDNN_MAX_ARGS 8
typedef struct onednn_prim {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[ONEDNN_MAX_ARGS];
    int user[ONEDNN_MAX_ARGS]; /* 1: the handle is set per exec from the caller's pointers */
    void *owned[ONEDNN_MAX_ARGS];
    size_t owned_bytes; /* the owned buffers' bytes (scratchpad, workspace, reordered weights) */
    char impl[64];
} onednn_prim;

/* Creates pd and primitive for op_desc with a user-mode scratchpad (hint: the forward pd of a
 * backward primitive, or NULL).  Returns 0, or -1 when oneDNN has no implementation. */
int onednn_prim_init(onednn_prim *p, const void *op_desc, const_dnnl_primitive_desc_t hint);
/* Reorder src_md -> dst_md as a primitive (for EXEC_* reorders kept in a layer ctx). */
int onednn_prim_init_reorder(onednn_prim *p, const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md);
/* Adds an argument whose buffer the caller passes to onednn_prim_exec, in the order added. */
void onednn_prim_arg(onednn_prim *p, int arg, const dnnl_memory_desc_t *md);
/* Adds an argument whose buffer the prim owns (workspace); returns that buffer. */
void *onednn_prim_arg_owned(onednn_prim *p, int arg, const dnnl_memory_desc_t *md);
/* The md of the primitive for a query (dnnl_query_weights_md, ...). */
const dnnl_memory_desc_t *onednn_prim_md(const onednn_prim *p, dnnl_query_t what);
/* Points the user arguments at bufs (in onednn_prim_arg order) and executes on threads threads. */
void onednn_prim_exec(onednn_prim *p, void *const *bufs, int threads);
void onednn_prim_destroy(onednn_prim *p);

/* Runs a one-off reorder plain <-> layout (import / export), counted under kind. */
void anx_onednn_reorder_once(const dnnl_memory_desc_t *src_md, const void *src, const dnnl_memory_desc_t *dst_md,
                             void *dst, anx_onednn_reorder_kind kind);

/* Which convolution algorithm a table asks oneDNN for: the onednn backend always direct; the
 * onednn-wino variant dnnl_convolution_winograd for each (layer, direction) where oneDNN has it
 * (3x3 stride-1 convolutions, AVX-512 only in oneDNN 2.6), direct where it declines. */
typedef enum anx_onednn_algo {
    ANX_ONEDNN_DIRECT,
    ANX_ONEDNN_WINOGRAD,     /* fwd and bwd_data; bwd_weights direct (ANX_ONEDNN_WINO_BWD_WEIGHTS=0) */
    ANX_ONEDNN_WINOGRAD_ALL, /* bwd_weights too: onednn-wino's default */
} anx_onednn_algo;

/* NULL, or why conv2d declines dir for l (see conv2d.c). */
const char *anx_onednn_conv2d_declines(const anx_layer_desc *l, anx_dir dir);

/* Per-layer contexts: one create / destroy / impl_name per layer file (conv2d and linear are
 * destroyed by onednn_weighted_destroy, below). */
void *anx_onednn_conv2d_create(const anx_layer_desc *l, int threads, anx_onednn_algo algo);
void *anx_onednn_maxpool_create(const anx_layer_desc *l, int threads);
void *anx_onednn_linear_create(const anx_layer_desc *l, int threads);
void anx_onednn_maxpool_destroy(void *ctx);
const char *anx_onednn_conv2d_impl(void *ctx, anx_dir dir);
const char *anx_onednn_maxpool_impl(void *ctx, anx_dir dir);
const char *anx_onednn_linear_impl(void *ctx, anx_dir dir);

/* Every ctx starts with this header so the backend can dispatch destroy / impl_name. */
typedef struct onednn_ctx_head {
    anx_op op;
    int threads;
} onednn_ctx_head;

/* A ctx for the shared ops (relu, dropout, loss; anx/ops_shared.h): only the thread count. */
typedef struct onednn_plain_ctx {
    onednn_ctx_head head;
} onednn_plain_ctx;

/* A layer with weights (conv2d.c, linear.c; the shared code in weighted.c): forward, backward
 * data and backward weights, all on weights in the forward primitive's format, so Adam sees param
 * and grad in one layout.  A backward primitive that wants another format gets a reorder kept
 * here, counted as EXEC_WEIGHTS on every exec.  A ctx of such a layer starts with this struct. */
typedef struct onednn_weighted_layer {
    onednn_ctx_head head;
    onednn_prim fwd, bwd_data, bwd_weights;
    onednn_prim wei_to_bwd;  /* fwd weights -> bwd_data weights, when they differ */
    float *wei_bwd;          /* its output, owned by wei_to_bwd */
    onednn_prim dwei_to_fwd; /* bwd_weights' own diff_weights -> fwd format, only if it refused ours */
    float *dwei_own;         /* bwd_weights' output in that case, owned by bwd_weights */
} onednn_weighted_layer;

/* The tensors of a weighted layer as its primitives see them: src [n,ic,ih,iw] and dst in the
 * layout rule, weights in the forward primitive's format, bias x [oc]. */
typedef struct onednn_weighted_mds {
    dnnl_memory_desc_t src, weights, bias, dst;
} onednn_weighted_mds;

/* The weights md the forward primitive of fwd_op_desc (weights format_tag_any) picks. */
void onednn_weighted_picked_md(dnnl_memory_desc_t *md, const void *fwd_op_desc);
/* Makes wl->fwd (src, weights, bias -> dst) from op_desc; when oneDNN has none for our weight
 * format, records the failure naming layer and what ("convolution", "inner product"). */
void onednn_weighted_make_fwd(onednn_weighted_layer *wl, const void *op_desc, const onednn_weighted_mds *m,
                              const char *layer, const char *what);
/* Makes the backward primitive p from ours (the op with the forward weight format); if oneDNN
 * refuses that or only ref takes it, from any (the same op with format_tag_any weights) when that
 * does better.  Returns 1 when p took any (its weights need a reorder), 0 when it kept ours;
 * records the failure ("no oneDNN <what>") when neither can be made. */
int onednn_weighted_init_preferring(onednn_prim *p, const void *ours, const void *any,
                                    const onednn_weighted_layer *wl, const char *layer, const char *what);
/* The arguments of wl->bwd_data (made by the caller), with the wei_to_bwd reorder when reorder. */
void onednn_weighted_bwd_data_args(onednn_weighted_layer *wl, const onednn_weighted_mds *m, int reorder);
/* Makes wl->bwd_weights (with bias) by init_preferring, with dwei_to_fwd when it took any. */
void onednn_weighted_make_bwd_weights(onednn_weighted_layer *wl, const void *ours, const void *any,
                                      const onednn_weighted_mds *m, const char *layer, const char *what);
/* Frees the primitives and the ctx (which starts with the onednn_weighted_layer). */
void onednn_weighted_destroy(void *ctx);
const char *onednn_weighted_impl(const onednn_weighted_layer *wl, anx_dir dir);
/* NULL, or the status of an exec called without the ctx layer_create made for its layer. */
anx_status anx_onednn_need_ctx(const void *ctx, const anx_layer_desc *l);
/* The three directions on the caller's tensors (a), with the counted reorders. */
void onednn_weighted_fwd(onednn_weighted_layer *wl, const anx_args *a);
void onednn_weighted_bwd_data(onednn_weighted_layer *wl, const anx_args *a);
void onednn_weighted_bwd_weights(onednn_weighted_layer *wl, const anx_args *a);

/* The exec functions of the table. */
anx_status anx_onednn_conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_maxpool_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_maxpool_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_linear_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_linear_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_linear_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a);

/* Threads of a ctx (OpenMP's default when ctx is NULL). */
int anx_onednn_ctx_threads(const void *ctx);

/* ---- The slots of the two tables (onednn.c): each table file names the few that differ. ---- */
const char *anx_onednn_unavailable(void);
const char *anx_onednn_supports(const anx_layer_desc *l, anx_dir dir);
/* layer_create with the convolution algorithm of the table. */
anx_status anx_onednn_layer_create(void **out, const anx_layer_desc *l, int threads, anx_onednn_algo algo);
void anx_onednn_layer_destroy(void *ctx);
const char *anx_onednn_impl_name(void *ctx, const anx_layer_desc *l, anx_dir dir);
const char *anx_onednn_transform_algorithm(void *ctx, const anx_layer_desc *l, anx_dir dir);
size_t anx_onednn_workspace_bytes(void *ctx, const anx_layer_desc *l);
size_t anx_onednn_maxpool_workspace_bytes(void *ctx);
size_t anx_onednn_tensor_floats(const anx_layer_desc *l, anx_slot slot);
void anx_onednn_tensor_import(const anx_layer_desc *l, anx_slot slot, float *dst, const float *plain);
void anx_onednn_tensor_export(const anx_layer_desc *l, anx_slot slot, float *plain, const float *src);
anx_status anx_onednn_relu_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_relu_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_dropout_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_onednn_dropout_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);

/* The slots both tables fill alike.  Layouts do not depend on the algorithm: the weights are in
 * the direct forward's format in both (oneDNN 2.6's Winograd on AVX-512 takes that very format,
 * OIhw16i16o, in all three directions), so a checkpoint, a dump or Adam sees the same tensors. */
#define ANX_ONEDNN_SHARED_SLOTS                                                                            \
    .supports = anx_onednn_supports, .layer_destroy = anx_onednn_layer_destroy,                            \
    .impl_name = anx_onednn_impl_name, .transform_algorithm = anx_onednn_transform_algorithm,              \
    .workspace_bytes = anx_onednn_workspace_bytes,                                                         \
    .tensor_floats = anx_onednn_tensor_floats,                                                             \
    .tensor_import = anx_onednn_tensor_import, .tensor_export = anx_onednn_tensor_export,                  \
    .exec =                                                                                                \
        {                                                                                                  \
            [ANX_OP_CONV2D] = {anx_onednn_conv2d_fwd, anx_onednn_conv2d_bwd_data,                          \
                               anx_onednn_conv2d_bwd_weights},                                             \
            [ANX_OP_RELU] = {anx_onednn_relu_fwd, anx_onednn_relu_bwd_data, NULL},                         \
            [ANX_OP_MAXPOOL] = {anx_onednn_maxpool_fwd, anx_onednn_maxpool_bwd_data, NULL},                \
            [ANX_OP_LINEAR] = {anx_onednn_linear_fwd, anx_onednn_linear_bwd_data,                          \
                               anx_onednn_linear_bwd_weights},                                             \
            [ANX_OP_DROPOUT] = {anx_onednn_dropout_fwd, anx_onednn_dropout_bwd_data, NULL},                \
            [ANX_OP_LOSS] = {anx_loss_fwd__shared, anx_loss_bwd_data__shared, NULL},                       \
        },                                                                                                 \
    .adam = anx_adam__shared,                                                                              \
    .bits_vary_with_threads = 1 /* its conv bwd_weights and inner products split sums over threads */

#endif
