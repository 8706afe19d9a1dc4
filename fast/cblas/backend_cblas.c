/* anx_backend_cblas: im2col + sgemm on the system's CBLAS (OpenBLAS, BLIS, netlib), ref's plain
 * layouts, ref's pooling kernels and the shared element-wise ops, loss and Adam.
 *
 * The generic libblas.so.3 (Debian's BLAS alternative) is loaded with dlopen at the first
 * layer_create, not linked: a linked OpenBLAS starts its thread pool in every anx process, cblas
 * used or not.  Which library that is is only known then: it is asked (openblas_get_config, found
 * with dlsym) or recognised from the file cblas_sgemm was resolved from (dladdr: Debian's BLIS
 * libblas.so.3 exports no bli_* call), and impl_name says it.  The library is made serial before
 * its first call, through its API where it exports one
 * (openblas_set_num_threads), else its documented environment variable (BLIS_NUM_THREADS, read
 * when BLIS initialises); the threads are anx's (cblas_internal.h says why).
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "anx/ops_shared.h"
#include "fast/cblas/cblas_internal.h"
#include "ref/ref.h"

/* ---- which library, and how its threads are set ---- */

typedef struct cb_lib {
    char name[96];            /* "openblas-0.3.21-pthread", "blis-openmp", "blas" (netlib) */
    /* OpenBLAS's kernel set (openblas_get_corename), else "".  It matters: 0.3.21 does not know
       this VM's Xeon (family 6 model 207) and falls back to Prescott's SSE3 kernels, about 7x
       slower than with OPENBLAS_CORETYPE=SkylakeX (docs/bench.md) */
    char core[32];
    void (*set_threads)(int); /* openblas_set_num_threads when exported, else NULL */
    /* Serial calls from several threads at once are safe: only for OpenBLAS so far.  Debian's
       BLIS 0.9.0 (blis-openmp) crashed (SIGSEGV inside its sgemm, on an OpenMP worker) when two
       threads ran conv bwd_weights tiles at once in anx-bench; elsewhere the tiles run on one thread. */
    int concurrent;
    const char *env;          /* else the variable it reads at its first call, or NULL (serial) */
    char error[224];          /* why it could not be loaded, else "" */
} cb_lib;

/* Debian's BLAS alternative (OpenBLAS, BLIS, netlib behind one SONAME), the file the build found. */
#define CB_BLAS_SONAME "libblas.so.3"

__typeof__(cblas_sgemm) *cb_sgemm;
static void *g_blas; /* dlopen handle, never closed (the library's threads may outlive a call) */

static cb_lib g_lib;
static pthread_once_t g_lib_once = PTHREAD_ONCE_INIT;

/* OpenBLAS: "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64" and
 * openblas_get_parallel() 0 serial, 1 pthreads, 2 OpenMP -> "openblas-0.3.21-pthread" */
static int lib_from_openblas(void)
{
    char *(*get_config)(void) = (char *(*)(void))dlsym(g_blas, "openblas_get_config");
    int (*get_parallel)(void) = (int (*)(void))dlsym(g_blas, "openblas_get_parallel");
    if (!get_config) return 0;
    char version[32] = "?";
    sscanf(get_config(), "OpenBLAS %31s", version);
    const int par = get_parallel ? get_parallel() : -1;
    snprintf(g_lib.name, sizeof g_lib.name, "openblas-%s-%s", version,
             par == 0 ? "serial" : par == 1 ? "pthread" : par == 2 ? "openmp" : "?");
    char *(*get_core)(void) = (char *(*)(void))dlsym(g_blas, "openblas_get_corename");
    if (get_core) snprintf(g_lib.core, sizeof g_lib.core, "%.31s", get_core());
    g_lib.set_threads = (void (*)(int))dlsym(g_blas, "openblas_set_num_threads");
    g_lib.env = g_lib.set_threads ? NULL : "OPENBLAS_NUM_THREADS";
    g_lib.concurrent = 1;
    return 1;
}

/* Debian installs each BLAS as <multiarch>/<variant>/libblas.so.3 (blis-openmp, openblas-pthread,
 * blas for netlib): the variant directory names it; a library elsewhere is named by its file. */
static void lib_from_path(void)
{
    Dl_info info;
    void *sgemm = (void *)cb_sgemm;
    const char *path = sgemm && dladdr(sgemm, &info) && info.dli_fname ? info.dli_fname : "unknown";
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/'), *name = slash ? slash + 1 : dir;
    if (slash) {
        *slash = '\0';
        char *up = strrchr(dir, '/');
        if (up && strstr(name, "libblas.so")) name = up + 1; /* the variant directory */
    }
    snprintf(g_lib.name, sizeof g_lib.name, "%.95s", name);
    if (strstr(g_lib.name, "blis") && !strstr(g_lib.name, "serial")) g_lib.env = "BLIS_NUM_THREADS";
    else if (strstr(g_lib.name, "openblas")) g_lib.env = "OPENBLAS_NUM_THREADS";
}

static void lib_init(void)
{
    g_blas = dlopen(CB_BLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (g_blas) cb_sgemm = (__typeof__(cblas_sgemm) *)dlsym(g_blas, "cblas_sgemm");
    if (!g_blas || !cb_sgemm) {
        const char *e = dlerror();
        snprintf(g_lib.error, sizeof g_lib.error, "cblas: cannot load cblas_sgemm from %s: %.160s", CB_BLAS_SONAME,
                 e ? e : "no such symbol");
        return;
    }
    if (!lib_from_openblas()) lib_from_path();
    if (g_lib.set_threads) g_lib.set_threads(1);
    else if (g_lib.env) setenv(g_lib.env, "1", 1); /* before the first call: lib() runs in layer_create */
}

static const cb_lib *lib(void)
{
    pthread_once(&g_lib_once, lib_init);
    return &g_lib;
}

/* ---- availability, per-layer state, names ---- */

static const char *cb_supports(const anx_layer_desc *l, anx_dir dir)
{
    (void)dir;
    if ((l->op == ANX_OP_CONV2D || l->op == ANX_OP_MAXPOOL) && l->stride < 1) return "stride must be >= 1";
    if (l->op == ANX_OP_CONV2D && l->pad < 0) return "negative padding";
    if (l->op == ANX_OP_MAXPOOL && l->pad != 0) return "MaxPool2d with padding is not implemented by cblas (ref's kernel)";
    return NULL;
}

/* "cblas:openblas-0.3.21-pthread SkylakeX im2col 8.38 MiB": the library really loaded, its
 * kernels when it says, and for Conv2d the bytes of scratch its im2col matrices need */
static void impl_line(cb_ctx *c, const anx_layer_desc *l)
{
    const cb_lib *L = lib();
    const double mib = (double)c->col_floats * sizeof(float) / (1024.0 * 1024.0);
    char name[136];
    snprintf(name, sizeof name, "%.95s%s%.31s", L->name, L->core[0] ? " " : "", L->core);
    const char *serial = c->blas_threads < c->threads ? " 1 thread" : "";
    if (l->op == ANX_OP_CONV2D)
        snprintf(c->impl, sizeof c->impl, "cblas:%s im2col %.2f MiB%s", name, mib, serial);
    else
        snprintf(c->impl, sizeof c->impl, "cblas:%s sgemm%s", name, serial);
}

/* A ctx holds nothing beside the tensors: the im2col matrices are the call's scratch. */
static size_t cb_workspace_bytes(void *ctx, const anx_layer_desc *l)
{
    (void)ctx, (void)l;
    return 0;
}

/* The im2col matrices of a Conv2d, one per image computed at once; 0 for every other layer. */
static size_t cb_scratch_bytes(void *ctx, const anx_layer_desc *l)
{
    (void)l;
    return ctx ? ((const cb_ctx *)ctx)->col_floats * sizeof(float) : 0;
}

static void cb_layer_destroy(void *ctx);

static anx_status cb_layer_create(void **ctx, const anx_layer_desc *l, int threads)
{
    *ctx = NULL;
    cb_ctx *c = calloc(1, sizeof *c);
    if (!c) return anx_status_oom("the cblas layer context", sizeof *c);
    c->threads = threads > 0 ? threads : omp_get_max_threads();
    c->blas_threads = lib()->concurrent ? c->threads : 1; /* fixed: the scratch has one slice per thread */
    if (l->op == ANX_OP_CONV2D) c->col_floats = cb_col_floats(l) * (size_t)cb_col_slices(l->n, c->blas_threads);
    if (lib()->error[0]) { /* loaded, and made serial before its first call */
        cb_layer_destroy(c);
        return lib()->error;
    }
    *ctx = c;
    return NULL;
}

static void cb_layer_destroy(void *ctx)
{
    cb_ctx *c = ctx;
    free(c);
}

static const char *cb_impl_name(void *ctx, const anx_layer_desc *l, anx_dir dir)
{
    static const char *const names[ANX_OP_COUNT][ANX_DIR_COUNT] = {
        [ANX_OP_RELU] = {ANX_IMPL_NAME(anx_f32_relu_fwd__shared), ANX_IMPL_NAME(anx_f32_relu_bwd_data__shared), NULL},
        [ANX_OP_MAXPOOL] = {ANX_IMPL_NAME(anx_f32_maxpool_fwd__ref), ANX_IMPL_NAME(anx_f32_maxpool_bwd_data__ref), NULL},
        [ANX_OP_DROPOUT] = {ANX_IMPL_NAME(anx_f32_dropout__shared), ANX_IMPL_NAME(anx_f32_dropout__shared), NULL},
        [ANX_OP_LOSS] = {ANX_IMPL_NAME(anx_f32_loss_fwd__shared), ANX_IMPL_NAME(anx_f32_loss_bwd_data__shared), NULL},
    };
    if ((unsigned)l->op >= ANX_OP_COUNT || (unsigned)dir >= ANX_DIR_COUNT) return "?";
    if (l->op == ANX_OP_CONV2D || l->op == ANX_OP_LINEAR) {
        cb_ctx *c = ctx;
        if (!c) return "cblas (no layer context)";
        impl_line(c, l);
        return c->impl;
    }
    return names[l->op][dir] ? names[l->op][dir] : "?";
}

/* ---- layouts: ref's plain ones ---- */

static size_t cb_tensor_floats(const anx_layer_desc *l, anx_slot slot) { return anx_desc_plain_count(l, slot); }

static void cb_tensor_import(const anx_layer_desc *l, anx_slot slot, float *dst, const float *plain)
{
    memcpy(dst, plain, anx_desc_plain_count(l, slot) * sizeof *dst);
}

static void cb_tensor_export(const anx_layer_desc *l, anx_slot slot, float *plain, const float *src)
{
    memcpy(plain, src, anx_desc_plain_count(l, slot) * sizeof *plain);
}

static int cb_threads(const void *ctx)
{
    const cb_ctx *c = ctx;
    return c && c->threads > 0 ? c->threads : omp_get_max_threads();
}

/* ---- exec wrappers: descriptor -> kernel arguments ---- */

/* The ctx holds the thread count the library was made serial for. */
#define NEED_CTX(ctx) \
    if (!(ctx)) return "cblas: no layer context (make it with layer_create)"

/* A Conv2d's im2col matrices: the call's scratch, NULL (with the status in *st) when it is short. */
static float *conv_col(const cb_ctx *c, const anx_layer_desc *l, const anx_args *a, anx_status *st)
{
    static _Thread_local char why[160];
    const size_t need = c->col_floats * sizeof(float);
    *st = NULL;
    if (a->scratch && a->scratch_bytes >= need) return a->scratch;
    snprintf(why, sizeof why, "cblas: %s needs %zu bytes of scratch for its im2col matrices, got %zu", l->name,
             need, a->scratch ? a->scratch_bytes : 0);
    *st = why;
    return NULL;
}

static anx_status conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    NEED_CTX(ctx);
    const cb_ctx *c = ctx;
    anx_status st;
    float *col = conv_col(c, l, a, &st);
    if (!col) return st;
    anx_f32_conv2d_fwd__cblas_im2col(a->dst, a->src, a->weights, a->bias, col, l->n, l->ic, l->ih, l->iw, l->oc,
                                     l->oh, l->ow, l->kh, l->kw, l->stride, l->pad, c->blas_threads);
    return NULL;
}

static anx_status conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    NEED_CTX(ctx);
    const cb_ctx *c = ctx;
    anx_status st;
    float *col = conv_col(c, l, a, &st);
    if (!col) return st;
    anx_f32_conv2d_bwd_data__cblas_col2im(a->diff_src, a->diff_dst, a->weights, col, l->n, l->ic, l->ih, l->iw,
                                          l->oc, l->oh, l->ow, l->kh, l->kw, l->stride, l->pad, c->blas_threads);
    return NULL;
}

static anx_status conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    NEED_CTX(ctx);
    const cb_ctx *c = ctx;
    anx_status st;
    float *col = conv_col(c, l, a, &st);
    if (!col) return st;
    anx_f32_conv2d_bwd_weights__cblas_im2col(a->diff_weights, a->diff_bias, a->src, a->diff_dst, col, l->n, l->ic,
                                             l->ih, l->iw, l->oc, l->oh, l->ow, l->kh, l->kw, l->stride, l->pad,
                                             c->blas_threads);
    return NULL;
}

/* A Linear's input is its NCHW source viewed as [n, ic*ih*iw]. */
static int linear_k(const anx_layer_desc *l) { return l->ic * l->ih * l->iw; }

static anx_status linear_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    NEED_CTX(ctx);
    anx_f32_linear_fwd__cblas_sgemm(a->dst, a->src, a->weights, a->bias, l->n, linear_k(l), l->oc,
                                    ((const cb_ctx *)ctx)->blas_threads);
    return NULL;
}

static anx_status linear_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    NEED_CTX(ctx);
    anx_f32_linear_bwd_data__cblas_sgemm(a->diff_src, a->diff_dst, a->weights, l->n, linear_k(l), l->oc, ((const cb_ctx *)ctx)->blas_threads);
    return NULL;
}

static anx_status linear_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    NEED_CTX(ctx);
    anx_f32_linear_bwd_weights__cblas_sgemm(a->diff_weights, a->diff_bias, a->src, a->diff_dst, l->n, linear_k(l),
                                            l->oc, ((const cb_ctx *)ctx)->blas_threads);
    return NULL;
}

/* MaxPool: ref's kernels are plain NCHW already (OpenMP over planes); they take OpenMP's default
 * team, set from the layer's threads for one call (the ICV is the calling thread's own). */
static anx_status maxpool_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    const int saved = omp_get_max_threads();
    omp_set_num_threads(cb_threads(ctx));
    anx_f32_maxpool_fwd__ref(a->dst, a->src, l->n, l->ic, l->ih, l->iw, l->oh, l->ow, l->kh, l->kw, l->stride);
    omp_set_num_threads(saved);
    return NULL;
}

static anx_status maxpool_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    const int saved = omp_get_max_threads();
    omp_set_num_threads(cb_threads(ctx));
    anx_f32_maxpool_bwd_data__ref(a->diff_src, a->diff_dst, a->src, l->n, l->ic, l->ih, l->iw, l->oh, l->ow, l->kh,
                                  l->kw, l->stride);
    omp_set_num_threads(saved);
    return NULL;
}

static anx_status relu_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return anx_relu_fwd__shared(a, cb_tensor_floats(l, ANX_DST), cb_threads(ctx));
}

static anx_status relu_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return anx_relu_bwd_data__shared(a, cb_tensor_floats(l, ANX_DST), cb_threads(ctx));
}

static anx_status dropout_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return anx_dropout_fwd__shared(a, cb_tensor_floats(l, ANX_DST), cb_threads(ctx));
}

static anx_status dropout_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return anx_dropout_bwd_data__shared(a, cb_tensor_floats(l, ANX_DST), cb_threads(ctx));
}

const anx_backend anx_backend_cblas = {
    .name = "cblas",
    .unavailable = NULL, /* plain C around a BLAS that dispatches by CPU itself */
    .supports = cb_supports,
    .layer_create = cb_layer_create,
    .layer_destroy = cb_layer_destroy,
    .impl_name = cb_impl_name,
    .workspace_bytes = cb_workspace_bytes,
    .scratch_bytes = cb_scratch_bytes,
    .tensor_floats = cb_tensor_floats,
    .tensor_import = cb_tensor_import,
    .tensor_export = cb_tensor_export,
    .exec =
        {
            [ANX_OP_CONV2D] = {conv2d_fwd, conv2d_bwd_data, conv2d_bwd_weights},
            [ANX_OP_RELU] = {relu_fwd, relu_bwd_data, NULL},
            [ANX_OP_MAXPOOL] = {maxpool_fwd, maxpool_bwd_data, NULL},
            [ANX_OP_LINEAR] = {linear_fwd, linear_bwd_data, linear_bwd_weights},
            [ANX_OP_DROPOUT] = {dropout_fwd, dropout_bwd_data, NULL},
            [ANX_OP_LOSS] = {anx_loss_fwd__shared, anx_loss_bwd_data__shared, NULL},
        },
    .adam = anx_adam__shared,
    .peak_isa = ANX_PEAK_BEST, /* the BLAS picks its kernels by CPU */
    .train_rank = 0,           /* a comparison backend: never anx train's default */
};
