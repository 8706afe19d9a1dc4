/* What the two oneDNN tables share (backend_onednn.c: direct convolutions; backend_onednn_wino.c:
 * Winograd where oneDNN has it): layouts, import/export, the primitive helpers every layer file
 * uses, and every slot of the tables but the few that differ.  Layout rules: onednn_internal.h. */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/ops_shared.h"
#include "onednn_internal.h"

static _Thread_local char g_pending[256];  /* the first failure not yet handed to a caller */
static _Thread_local char g_reported[256]; /* what anx_onednn_take_status returned last */

int anx_onednn_fail(const char *why)
{
    if (!g_pending[0]) snprintf(g_pending, sizeof g_pending, "%s", why);
    return 1;
}

int anx_onednn_check(dnnl_status_t st, const char *what, const char *file, int line)
{
    if (st == dnnl_success) return 0;
    if (!g_pending[0]) {
        const char *base = strrchr(file, '/');
        snprintf(g_pending, sizeof g_pending, "oneDNN %.140s failed with status %d at %s:%d", what, (int)st,
                 base ? base + 1 : file, line);
    }
    return 1;
}

anx_status anx_onednn_take_status(void)
{
    if (!g_pending[0]) return NULL;
    memcpy(g_reported, g_pending, sizeof g_reported);
    g_pending[0] = 0;
    return g_reported;
}

/* ---- engine, stream, blocked tag: made once ---- */

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static dnnl_format_tag_t g_blocked = dnnl_nChw8c;
static int g_block = 8;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Which blocked activation format does oneDNN's convolution want on this CPU?  Ask it once,
 * with format_any, on a conv shaped like Conv2d-7; every 4-D activation then uses that tag. */
static void init_once(void)
{
    ONEDNN_CHECK(dnnl_engine_create(&g_engine, dnnl_cpu, 0));
    ONEDNN_CHECK(dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags));
    dnnl_dims_t sd = {1, 256, 13, 13}, wd = {384, 256, 3, 3}, dd = {1, 384, 13, 13};
    dnnl_dims_t st = {1, 1}, pad = {1, 1};
    dnnl_memory_desc_t s, w, d;
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&s, 4, sd, dnnl_f32, dnnl_format_tag_any));
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&w, 4, wd, dnnl_f32, dnnl_format_tag_any));
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&d, 4, dd, dnnl_f32, dnnl_format_tag_any));
    dnnl_convolution_desc_t cd;
    ONEDNN_CHECK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &s,
                                                    &w, NULL, &d, st, pad, pad));
    dnnl_primitive_desc_t pd;
    if (dnnl_primitive_desc_create(&pd, &cd, NULL, g_engine, NULL) != dnnl_success) return;
    const dnnl_memory_desc_t *got = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_memory_desc_t c16;
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&c16, 4, dd, dnnl_f32, dnnl_nChw16c));
    if (dnnl_memory_desc_equal(got, &c16)) g_blocked = dnnl_nChw16c, g_block = 16;
    dnnl_primitive_desc_destroy(pd);
}

dnnl_engine_t anx_onednn_engine(void)
{
    pthread_once(&g_once, init_once);
    return g_engine;
}

dnnl_stream_t anx_onednn_stream(void)
{
    pthread_once(&g_once, init_once);
    return g_stream;
}

dnnl_format_tag_t anx_onednn_blocked_tag(void)
{
    pthread_once(&g_once, init_once);
    return g_blocked;
}

/* ---- layouts ---- */

void anx_onednn_act_md(dnnl_memory_desc_t *md, int n, int c, int h, int w)
{
    memset(md, 0, sizeof *md); /* a failed init leaves an empty md, never stack garbage */
    pthread_once(&g_once, init_once);
    if (h == 1 && w == 1) {
        dnnl_dims_t d = {n, c};
        ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(md, 2, d, dnnl_f32, dnnl_nc));
        return;
    }
    dnnl_dims_t d = {n, c, h, w};
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, c < g_block ? dnnl_nchw : g_blocked));
}

static void bias_md(dnnl_memory_desc_t *md, int oc)
{
    memset(md, 0, sizeof *md);
    dnnl_dims_t d = {oc};
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(md, 1, d, dnnl_f32, dnnl_x));
}

void anx_onednn_md(dnnl_memory_desc_t *md, const anx_layer_desc *l, anx_slot slot)
{
    memset(md, 0, sizeof *md);
    switch (slot) {
    case ANX_SRC: anx_onednn_act_md(md, l->n, l->ic, l->ih, l->iw); return;
    case ANX_DST: anx_onednn_act_md(md, l->n, l->oc, l->oh, l->ow); return;
    case ANX_WEIGHTS:
        if (l->op == ANX_OP_CONV2D) anx_onednn_conv2d_weights_md(md, l);
        else anx_onednn_linear_weights_md(md, l);
        return;
    case ANX_BIAS: bias_md(md, l->oc); return;
    default: anx_onednn_fail("onednn: no tensor in that slot");
    }
}

void anx_onednn_plain_md(dnnl_memory_desc_t *md, const anx_layer_desc *l, anx_slot slot)
{
    memset(md, 0, sizeof *md);
    switch (slot) {
    case ANX_SRC:
    case ANX_DST: {
        int c = slot == ANX_SRC ? l->ic : l->oc, h = slot == ANX_SRC ? l->ih : l->oh;
        int w = slot == ANX_SRC ? l->iw : l->ow;
        if (h == 1 && w == 1) {
            dnnl_dims_t d = {l->n, c};
            ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(md, 2, d, dnnl_f32, dnnl_nc));
        } else {
            dnnl_dims_t d = {l->n, c, h, w};
            ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nchw));
        }
        return;
    }
    case ANX_WEIGHTS:
        if (l->kh == 1 && l->kw == 1 && l->op == ANX_OP_LINEAR) {
            dnnl_dims_t d = {l->oc, l->ic}; /* [out, in] */
            ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(md, 2, d, dnnl_f32, dnnl_oi));
        } else {
            dnnl_dims_t d = {l->oc, l->ic, l->kh, l->kw}; /* OIHW == Linear-14's [out, 256*6*6] */
            ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_oihw));
        }
        return;
    case ANX_BIAS: bias_md(md, l->oc); return;
    default: anx_onednn_fail("onednn: no tensor in that slot");
    }
}

size_t anx_onednn_tensor_floats(const anx_layer_desc *l, anx_slot slot)
{
    if ((slot == ANX_WEIGHTS || slot == ANX_BIAS) && !anx_desc_has_weights(l)) return 0;
    dnnl_memory_desc_t md;
    anx_onednn_md(&md, l, slot);
    return dnnl_memory_desc_get_size(&md) / sizeof(float);
}

/* ---- reorders ---- */

static _Atomic uint64_t g_reorders[ANX_ONEDNN_REORDER_KIND_COUNT];

uint64_t anx_onednn_reorder_count(anx_onednn_reorder_kind kind) { return atomic_load(&g_reorders[kind]); }
void anx_onednn_reorder_counted(anx_onednn_reorder_kind kind) { atomic_fetch_add(&g_reorders[kind], 1); }

void anx_onednn_reorder_once(const dnnl_memory_desc_t *src_md, const void *src, const dnnl_memory_desc_t *dst_md,
                             void *dst, anx_onednn_reorder_kind kind)
{
    if (dnnl_memory_desc_equal(src_md, dst_md)) { /* same memory layout: a copy, not a reorder */
        memcpy(dst, src, dnnl_memory_desc_get_size(src_md));
        return;
    }
    onednn_prim p;
    if (ONEDNN_CHECK(onednn_prim_init_reorder(&p, src_md, dst_md) ? dnnl_unimplemented : dnnl_success)) return;
    onednn_prim_arg(&p, DNNL_ARG_FROM, src_md);
    onednn_prim_arg(&p, DNNL_ARG_TO, dst_md);
    void *bufs[2] = {(void *)src, dst};
    onednn_prim_exec(&p, bufs, omp_get_max_threads());
    onednn_prim_destroy(&p);
    anx_onednn_reorder_counted(kind);
}

void anx_onednn_tensor_import(const anx_layer_desc *l, anx_slot slot, float *dst, const float *plain)
{
    dnnl_memory_desc_t from, to;
    anx_onednn_plain_md(&from, l, slot);
    anx_onednn_md(&to, l, slot);
    anx_onednn_reorder_once(&from, plain, &to, dst, ANX_ONEDNN_REORDER_IMPORT);
}

void anx_onednn_tensor_export(const anx_layer_desc *l, anx_slot slot, float *plain, const float *src)
{
    dnnl_memory_desc_t from, to;
    anx_onednn_md(&from, l, slot);
    anx_onednn_plain_md(&to, l, slot);
    anx_onednn_reorder_once(&from, src, &to, plain, ANX_ONEDNN_REORDER_EXPORT);
}

/* ---- primitive helpers ---- */

static void copy_impl(onednn_prim *p)
{
    const char *s = NULL;
    if (dnnl_primitive_desc_query(p->pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s) s = "?";
    snprintf(p->impl, sizeof p->impl, "%s", s);
}

static void *alloc_bytes(size_t bytes)
{
    void *q = NULL;
    if (posix_memalign(&q, 64, bytes ? bytes : 64)) {
        anx_onednn_fail(anx_status_oom("a oneDNN buffer (workspace, scratchpad or reordered weights)", bytes));
        return NULL;
    }
    memset(q, 0, bytes ? bytes : 64);
    return q;
}

/* The scratchpad is a user-mode buffer owned by the prim (the layer ctx), not oneDNN's global one. */
static void finish_init(onednn_prim *p)
{
    ONEDNN_CHECK(dnnl_primitive_create(&p->prim, p->pd));
    copy_impl(p);
    p->nargs = 0;
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
    if (sp && dnnl_memory_desc_get_size(sp) > 0) onednn_prim_arg_owned(p, DNNL_ARG_SCRATCHPAD, sp);
}

int onednn_prim_init(onednn_prim *p, const void *op_desc, const_dnnl_primitive_desc_t hint)
{
    memset(p, 0, sizeof *p);
    dnnl_primitive_attr_t attr;
    ONEDNN_CHECK(dnnl_primitive_attr_create(&attr));
    ONEDNN_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_status_t st = dnnl_primitive_desc_create(&p->pd, op_desc, attr, anx_onednn_engine(), hint);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return -1;
    finish_init(p);
    return 0;
}

int onednn_prim_init_reorder(onednn_prim *p, const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md)
{
    memset(p, 0, sizeof *p);
    dnnl_primitive_attr_t attr;
    ONEDNN_CHECK(dnnl_primitive_attr_create(&attr));
    ONEDNN_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_engine_t e = anx_onednn_engine();
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&p->pd, src_md, e, dst_md, e, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return -1;
    finish_init(p);
    return 0;
}

static dnnl_memory_t add_arg(onednn_prim *p, int arg, const dnnl_memory_desc_t *md, int user)
{
    dnnl_memory_t m = NULL;
    if (p->nargs >= ONEDNN_MAX_ARGS) {
        anx_onednn_fail("onednn: more primitive arguments than ONEDNN_MAX_ARGS");
        return NULL;
    }
    ONEDNN_CHECK(dnnl_memory_create(&m, md, anx_onednn_engine(), DNNL_MEMORY_NONE));
    p->args[p->nargs].arg = arg;
    p->args[p->nargs].memory = m;
    p->user[p->nargs] = user;
    p->nargs++;
    return m;
}

void onednn_prim_arg(onednn_prim *p, int arg, const dnnl_memory_desc_t *md) { add_arg(p, arg, md, 1); }

void *onednn_prim_arg_owned(onednn_prim *p, int arg, const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m = add_arg(p, arg, md, 0);
    if (!m) return NULL;
    void *buf = alloc_bytes(dnnl_memory_desc_get_size(md));
    p->owned[p->nargs - 1] = buf;
    if (buf) p->owned_bytes += dnnl_memory_desc_get_size(md);
    if (buf) ONEDNN_CHECK(dnnl_memory_set_data_handle(m, buf));
    return buf;
}

const dnnl_memory_desc_t *onednn_prim_md(const onednn_prim *p, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(p->pd, what, 0);
}

void onednn_prim_exec(onednn_prim *p, void *const *bufs, int threads)
{
    if (!p->prim) { /* its making failed: that failure is the pending status */
        anx_onednn_fail("onednn: a primitive that could not be made was run");
        return;
    }
    /* oneDNN 2.6's Winograd writes with aligned AVX-512 stores: a buffer off the 64-byte contract
       (include/anx/backend.h) would crash it (seen: bwd_weights' diff_weights 16 bytes off), so
       such a call is refused with a status instead */
    const int aligned_only = strstr(p->impl, "wino") != NULL;
    for (int i = 0, k = 0; i < p->nargs; i++)
        if (p->user[i] && aligned_only && ((uintptr_t)bufs[k++] & 63)) {
            anx_onednn_fail("onednn: a buffer passed to oneDNN's Winograd convolution is not 64-byte aligned "
                            "(include/anx/backend.h)");
            return;
        }
    int k = 0;
    for (int i = 0; i < p->nargs; i++)
        if (p->user[i]) ONEDNN_CHECK(dnnl_memory_set_data_handle(p->args[i].memory, bufs[k++]));
    /* oneDNN's OpenMP runtime takes the team size from the caller's ICV; set it for this call only */
    int saved = omp_get_max_threads();
    if (threads > 0 && threads != saved) omp_set_num_threads(threads);
    ONEDNN_CHECK(dnnl_primitive_execute(p->prim, anx_onednn_stream(), p->nargs, p->args));
    ONEDNN_CHECK(dnnl_stream_wait(anx_onednn_stream()));
    if (threads > 0 && threads != saved) omp_set_num_threads(saved);
}

void onednn_prim_destroy(onednn_prim *p)
{
    for (int i = 0; i < p->nargs; i++) {
        dnnl_memory_destroy(p->args[i].memory);
        free(p->owned[i]);
    }
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->pd) dnnl_primitive_desc_destroy(p->pd);
    memset(p, 0, sizeof *p);
}

/* ---- the slots of the tables ---- */

int anx_onednn_ctx_threads(const void *ctx)
{
    return ctx ? ((const onednn_ctx_head *)ctx)->threads : omp_get_max_threads();
}

/* ReLU, dropout, the loss and Adam are the shared ops (anx/ops_shared.h): oneDNN 2.6's eltwise
 * relu maps NaN to 0 and -0 to +0 (torch.relu keeps both), and its backward writes diff_dst * 0
 * (-0) where PyTorch writes +0.  Element-wise over the whole buffer, padding included. */
anx_status anx_onednn_relu_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_relu_fwd__shared(a, anx_onednn_tensor_floats(l, ANX_DST), anx_onednn_ctx_threads(ctx));
    return st ? st : anx_onednn_take_status(); /* the size query is a oneDNN call */
}

anx_status anx_onednn_relu_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_relu_bwd_data__shared(a, anx_onednn_tensor_floats(l, ANX_DST), anx_onednn_ctx_threads(ctx));
    return st ? st : anx_onednn_take_status();
}

anx_status anx_onednn_dropout_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_dropout_fwd__shared(a, anx_onednn_tensor_floats(l, ANX_DST), anx_onednn_ctx_threads(ctx));
    return st ? st : anx_onednn_take_status();
}

anx_status anx_onednn_dropout_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_status st = anx_dropout_bwd_data__shared(a, anx_onednn_tensor_floats(l, ANX_DST), anx_onednn_ctx_threads(ctx));
    return st ? st : anx_onednn_take_status();
}

const char *anx_onednn_unavailable(void)
{
    return dnnl_engine_get_count(dnnl_cpu) < 1 ? "oneDNN reports no CPU engine" : NULL;
}

const char *anx_onednn_supports(const anx_layer_desc *l, anx_dir dir)
{
    if ((l->op == ANX_OP_MAXPOOL || l->op == ANX_OP_CONV2D) && l->stride < 1) return "stride must be >= 1";
    const char *why = l->op == ANX_OP_CONV2D ? anx_onednn_conv2d_declines(l, dir) : NULL;
    anx_status failed = anx_onednn_take_status(); /* oneDNN could not even describe the layer */
    return failed ? failed : why;
}

anx_status anx_onednn_need_ctx(const void *ctx, const anx_layer_desc *l)
{
    (void)l;
    return ctx ? NULL : "the onednn backend needs the layer context its layer_create makes";
}

anx_status anx_onednn_layer_create(void **out, const anx_layer_desc *l, int threads, anx_onednn_algo algo)
{
    if (threads < 1) threads = omp_get_max_threads();
    /* oneDNN sizes its kernels' thread split when the primitive is made: make it with the team size
       it will run with */
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    void *ctx = NULL;
    switch (l->op) {
    case ANX_OP_CONV2D: ctx = anx_onednn_conv2d_create(l, threads, algo); break;
    case ANX_OP_MAXPOOL: ctx = anx_onednn_maxpool_create(l, threads); break;
    case ANX_OP_LINEAR: ctx = anx_onednn_linear_create(l, threads); break;
    default: {
        onednn_plain_ctx *c = calloc(1, sizeof *c);
        if (c) c->head.op = l->op, c->head.threads = threads;
        ctx = c;
    }
    }
    omp_set_num_threads(saved);
    if (!ctx) return anx_status_oom("the onednn layer context", sizeof(onednn_weighted_layer));
    anx_status failed = anx_onednn_take_status(); /* a primitive or buffer that could not be made */
    if (failed) {
        anx_onednn_layer_destroy(ctx);
        return failed;
    }
    *out = ctx;
    return NULL;
}

void anx_onednn_layer_destroy(void *ctx)
{
    if (!ctx) return;
    switch (((onednn_ctx_head *)ctx)->op) {
    case ANX_OP_CONV2D:
    case ANX_OP_LINEAR: onednn_weighted_destroy(ctx); break;
    case ANX_OP_MAXPOOL: anx_onednn_maxpool_destroy(ctx); break;
    default: free(ctx);
    }
}

/* The buffers the layer's primitives own (user-mode scratchpads, pooling workspace, reordered weights). */
size_t anx_onednn_workspace_bytes(void *ctx, const anx_layer_desc *l)
{
    if (!ctx) return 0;
    if (l->op == ANX_OP_MAXPOOL) return anx_onednn_maxpool_workspace_bytes(ctx);
    if (l->op != ANX_OP_CONV2D && l->op != ANX_OP_LINEAR) return 0;
    const onednn_weighted_layer *wl = ctx;
    return wl->fwd.owned_bytes + wl->bwd_data.owned_bytes + wl->bwd_weights.owned_bytes + wl->wei_to_bwd.owned_bytes +
           wl->dwei_to_fwd.owned_bytes;
}

/* oneDNN names its Winograd implementations jit_wino_<m>x<r> (2.6: jit_wino_4x3, F(4x4, 3x3)). */
const char *anx_onednn_transform_algorithm(void *ctx, const anx_layer_desc *l, anx_dir dir)
{
    if (l->op != ANX_OP_CONV2D || !ctx) return NULL;
    return strncmp(anx_onednn_conv2d_impl(ctx, dir), "jit_wino_4x3", 12) == 0 ? "Winograd F(4x4,3x3)" : NULL;
}

const char *anx_onednn_impl_name(void *ctx, const anx_layer_desc *l, anx_dir dir)
{
    switch (l->op) {
    case ANX_OP_CONV2D: return ctx ? anx_onednn_conv2d_impl(ctx, dir) : "oneDNN convolution";
    case ANX_OP_RELU: return dir == ANX_FWD ? ANX_IMPL_NAME(anx_f32_relu_fwd__shared) : ANX_IMPL_NAME(anx_f32_relu_bwd_data__shared);
    case ANX_OP_MAXPOOL: return ctx ? anx_onednn_maxpool_impl(ctx, dir) : "oneDNN pooling";
    case ANX_OP_LINEAR: return ctx ? anx_onednn_linear_impl(ctx, dir) : "oneDNN inner_product";
    case ANX_OP_DROPOUT: return ANX_IMPL_NAME(anx_f32_dropout__shared);
    case ANX_OP_LOSS: return dir == ANX_FWD ? ANX_IMPL_NAME(anx_f32_loss_fwd__shared) : ANX_IMPL_NAME(anx_f32_loss_bwd_data__shared);
    default: return "?";
    }
}
