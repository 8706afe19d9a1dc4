/* The libxsmm backend: LIBXSMM 1.17's DNN layers (direct convolution, fully-connected, max
 * pooling) on LIBXSMM's blocked layouts, the shared ReLU, dropout, loss and Adam on the same
 * buffers.  The table, the layouts (xsmm_internal.h), import/export, the one OpenMP region
 * per exec, and the declines.
 *
 * Threads: every LIBXSMM handle is made for the layer's thread count T (its barrier and its
 * work split are sized then), and every exec runs LIBXSMM's execute_st(tid) on each thread of
 * one OpenMP region of exactly T threads (a smaller team, e.g. inside another parallel region,
 * is refused with a status: the missing tids would leave work undone and LIBXSMM's barrier
 * would wait forever).
 */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/ops_shared.h"
#include "xsmm_internal.h"

/* ---- target, version, block rule ---- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_maxblk = 32;
static char g_target[32] = "?";

/* libxsmm_init reads LIBXSMM_TARGET; the channel block limit follows the target as in
 * libxsmm_dnn_get_feature_map_blocks (64 from AVX-512 core on, else 32). */
static void init_once(void)
{
    libxsmm_init();
    const int arch = libxsmm_get_target_archid();
    g_maxblk = arch >= LIBXSMM_X86_AVX512_CORE ? 64 : 32;
    const char *t = libxsmm_get_target_arch();
    snprintf(g_target, sizeof g_target, "%s", t ? t : "?");
}

const char *anx_xsmm_target(void)
{
    pthread_once(&g_once, init_once);
    return g_target;
}

const char *anx_xsmm_version(void) { return LIBXSMM_VERSION; }

int anx_xsmm_blk(int c)
{
    pthread_once(&g_once, init_once);
    if (c < g_maxblk) return c;
    int b = 1;
    for (int t = 1; t <= g_maxblk; t *= 2)
        if (c % t == 0) b = t;
    return b;
}

size_t anx_xsmm_act4_off(int C, int H, int W, int n, int c, int y, int x)
{
    const int B = anx_xsmm_blk(C);
    return ((((size_t)n * (size_t)(C / B) + (size_t)(c / B)) * (size_t)H + (size_t)y) * (size_t)W + (size_t)x) *
               (size_t)B +
           (size_t)(c % B);
}

size_t anx_xsmm_act2_off(int N, int C, int n, int c)
{
    const int B = anx_xsmm_blk(C);
    return ((size_t)(c / B) * (size_t)N + (size_t)n) * (size_t)B + (size_t)(c % B);
}

/* ---- status ---- */

static _Thread_local char g_status[320];

int anx_xsmm_failed(libxsmm_dnn_err_t e) { return e != LIBXSMM_DNN_SUCCESS && !(e >= 90000 && e < 100000); }

anx_status anx_xsmm_status(const anx_layer_desc *l, const char *call, libxsmm_dnn_err_t e)
{
    const char *why = libxsmm_dnn_get_error(e);
    snprintf(g_status, sizeof g_status, "%s: LIBXSMM %s: %s (status %u)", l->name, call, why ? why : "?", e);
    return g_status;
}

/* ---- conversions ---- */

static _Atomic uint64_t g_conversions[ANX_XSMM_CONVERT_KIND_COUNT];

uint64_t anx_libxsmm_conversion_count(anx_xsmm_conv_kind kind) { return atomic_load(&g_conversions[kind]); }
void anx_xsmm_conversion_counted(anx_xsmm_conv_kind kind) { atomic_fetch_add(&g_conversions[kind], 1); }

/* ---- max pooling's NaN note (xsmm_internal.h) ---- */

static _Thread_local struct {
    const float *p;
    size_t count;
} g_nan_free;
static _Atomic uint64_t g_nan_scans;

void anx_xsmm_nan_free_note(const float *p, size_t count) { g_nan_free.p = p, g_nan_free.count = count; }
void anx_xsmm_nan_free_forget(void) { g_nan_free.p = NULL, g_nan_free.count = 0; }
int anx_xsmm_nan_free_take(const float *p, size_t count)
{
    const int noted = p && g_nan_free.p == p && g_nan_free.count == count;
    anx_xsmm_nan_free_forget();
    return noted;
}
uint64_t anx_libxsmm_nan_scans(void) { return atomic_load(&g_nan_scans); }
void anx_xsmm_nan_scan_counted(void) { atomic_fetch_add(&g_nan_scans, 1); }

/* ---- layouts: sizes, import, export ---- */

static size_t xs_tensor_floats(const anx_layer_desc *l, anx_slot slot)
{
    if ((slot == ANX_WEIGHTS || slot == ANX_BIAS) && !anx_desc_has_weights(l)) return 0;
    return anx_desc_plain_count(l, slot); /* every block divides its channel count: no padding */
}

/* Offset in the LIBXSMM layout of plain element i of (l, slot). */
typedef struct xs_geom {
    int n, c, h, w;        /* activations */
    int k, ci, r, s;       /* weights: conv [k, ci, r, s]; linear [k, ci*r*s] as [k, ci', 1, 1] */
    int b, bo, bi;         /* the channel blocks of c, k and ci: asked once, not per element */
} xs_geom;

static size_t act_off_plain(const xs_geom *g, size_t i)
{
    const size_t hw = (size_t)g->h * (size_t)g->w, chw = (size_t)g->c * hw;
    const int n = (int)(i / chw), c = (int)(i % chw / hw), y = (int)(i % hw / (size_t)g->w), x = (int)(i % (size_t)g->w);
    const size_t B = (size_t)g->b, cb = (size_t)c / B, cr = (size_t)c % B;
    if (hw == 1) return (cb * (size_t)g->n + (size_t)n) * B + cr; /* anx_xsmm_act2_off */
    return ((((size_t)n * ((size_t)g->c / B) + cb) * (size_t)g->h + (size_t)y) * (size_t)g->w + (size_t)x) * B +
           cr; /* anx_xsmm_act4_off */
}

/* conv weights [K/Bo][C/Bi][R][S][Bi][Bo]; linear weights [K/Bo][C'/Bi][Bi][Bo] (r = s = 1) */
static size_t wei_off_plain(const xs_geom *g, size_t i)
{
    const size_t rs = (size_t)g->r * (size_t)g->s, crs = (size_t)g->ci * rs;
    const int k = (int)(i / crs), c = (int)(i % crs / rs), r = (int)(i % rs / (size_t)g->s), s = (int)(i % (size_t)g->s);
    const int Bo = g->bo, Bi = g->bi;
    return (((((size_t)(k / Bo) * (size_t)(g->ci / Bi) + (size_t)(c / Bi)) * (size_t)g->r + (size_t)r) * (size_t)g->s +
             (size_t)s) * (size_t)Bi + (size_t)(c % Bi)) * (size_t)Bo + (size_t)(k % Bo);
}

static void geom_of(const anx_layer_desc *l, anx_slot slot, xs_geom *g)
{
    memset(g, 0, sizeof *g);
    if (slot == ANX_SRC) g->n = l->n, g->c = l->ic, g->h = l->ih, g->w = l->iw;
    else if (slot == ANX_DST) g->n = l->n, g->c = l->oc, g->h = l->oh, g->w = l->ow;
    else if (l->op == ANX_OP_CONV2D) g->k = l->oc, g->ci = l->ic, g->r = l->kh, g->s = l->kw;
    else g->k = l->oc, g->ci = l->ic * l->ih * l->iw, g->r = g->s = 1;
    g->b = g->c ? anx_xsmm_blk(g->c) : 1;
    g->bo = g->k ? anx_xsmm_blk(g->k) : 1, g->bi = g->ci ? anx_xsmm_blk(g->ci) : 1;
}

static void xs_convert(const anx_layer_desc *l, anx_slot slot, float *out, const float *in, int import)
{
    const size_t count = anx_desc_plain_count(l, slot);
    if (slot == ANX_BIAS) {
        memcpy(out, in, count * sizeof *out);
        return;
    }
    xs_geom g;
    geom_of(l, slot, &g);
    const int act = slot == ANX_SRC || slot == ANX_DST;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) {
        const size_t o = act ? act_off_plain(&g, i) : wei_off_plain(&g, i);
        if (import) out[o] = in[i];
        else out[i] = in[o];
    }
    anx_xsmm_conversion_counted(import ? ANX_XSMM_CONVERT_IMPORT : ANX_XSMM_CONVERT_EXPORT);
}

static void xs_tensor_import(const anx_layer_desc *l, anx_slot slot, float *dst, const float *plain)
{
    anx_xsmm_nan_free_forget();
    xs_convert(l, slot, dst, plain, 1);
}

static void xs_tensor_export(const anx_layer_desc *l, anx_slot slot, float *plain, const float *src)
{
    anx_xsmm_nan_free_forget();
    xs_convert(l, slot, plain, src, 0);
}

/* ---- one OpenMP region per exec ---- */

void anx_xsmm_split(size_t count, int tid, int nthr, size_t *begin, size_t *end)
{
    const size_t chunk = count / (size_t)nthr, rest = count % (size_t)nthr, t = (size_t)tid;
    *begin = t * chunk + (t < rest ? t : rest);
    *end = *begin + chunk + (t < rest ? 1 : 0);
}

void anx_xsmm_point(xs_ctx *c, int t, const void *p)
{
    if (c->t[t]) libxsmm_dnn_set_tensor_data_ptr(c->t[t], p);
}

static libxsmm_dnn_err_t execute_st(xs_ctx *c, libxsmm_dnn_compute_kind kind, int tid)
{
    if (c->conv) return libxsmm_dnn_execute_st(c->conv, kind, 0, tid);
    if (c->fc) return libxsmm_dnn_fullyconnected_execute_st(c->fc, kind, 0, tid);
    if (c->pool) return libxsmm_dnn_pooling_execute_st(c->pool, kind, 0, tid);
    return LIBXSMM_DNN_ERR_INVALID_HANDLE;
}

anx_status anx_xsmm_run(const xs_job *j, const char *what)
{
    xs_ctx *c = j->c;
    anx_xsmm_nan_free_forget(); /* every LIBXSMM exec: the note was for the one just before */
    libxsmm_dnn_err_t first = LIBXSMM_DNN_SUCCESS;
    int team = c->threads;
#pragma omp parallel num_threads(c->threads)
    {
        const int tid = omp_get_thread_num(), nthr = omp_get_num_threads();
        if (nthr != c->threads) {
#pragma omp atomic write
            team = nthr;
        } else {
            if (j->before) {
                j->before(j, tid, nthr);
#pragma omp barrier
            }
            const libxsmm_dnn_err_t e = execute_st(c, j->kind, tid);
            if (anx_xsmm_failed(e)) {
#pragma omp critical(anx_xsmm_first_error)
                if (first == LIBXSMM_DNN_SUCCESS) first = e;
            }
            if (j->after) {
#pragma omp barrier
                j->after(j, tid, nthr);
            }
        }
    }
    if (team != c->threads) {
        snprintf(g_status, sizeof g_status,
                 "%s: OpenMP gave %d threads where the LIBXSMM handle was made for %d (nested parallel region?)",
                 c->l.name, team, c->threads);
        return g_status;
    }
    return anx_xsmm_failed(first) ? anx_xsmm_status(&c->l, what, first) : NULL;
}

/* ---- per-layer state ---- */

void anx_xsmm_ctx_destroy(xs_ctx *c)
{
    if (!c) return;
    for (int t = 0; t < XS_TENSORS; t++)
        if (c->t[t]) libxsmm_dnn_destroy_tensor(c->t[t]);
    if (c->conv) libxsmm_dnn_destroy_conv_layer(c->conv);
    if (c->fc) libxsmm_dnn_destroy_fullyconnected(c->fc);
    if (c->pool) libxsmm_dnn_destroy_pooling(c->pool);
    free(c->scratch);
    free(c->mask);
    free(c->pool_dst);
    free(c->flat);
    free(c->dflat);
    free(c);
}

static anx_status make_ctx(xs_ctx **out, const anx_layer_desc *l, int threads, int probe)
{
    *out = NULL;
    xs_ctx *c = calloc(1, sizeof *c);
    if (!c) return anx_status_oom("the libxsmm layer context", sizeof *c);
    c->op = l->op;
    c->threads = threads > 0 ? threads : omp_get_max_threads();
    c->l = *l;
    c->probe = probe;
    anx_status st = NULL;
    switch (l->op) {
    case ANX_OP_CONV2D: st = anx_xsmm_conv2d_create(c); break;
    case ANX_OP_LINEAR: st = anx_xsmm_linear_create(c); break;
    case ANX_OP_MAXPOOL: st = anx_xsmm_maxpool_create(c); break;
    default: break; /* the shared ops keep only the thread count */
    }
    if (st) {
        anx_xsmm_ctx_destroy(c);
        return st;
    }
    *out = c;
    return NULL;
}

static anx_status xs_layer_create(void **ctx, const anx_layer_desc *l, int threads)
{
    xs_ctx *c;
    anx_status st = make_ctx(&c, l, threads, 0);
    *ctx = c;
    return st;
}

static void xs_layer_destroy(void *ctx) { anx_xsmm_ctx_destroy(ctx); }

static int xs_threads(const void *ctx) { return ctx ? ((const xs_ctx *)ctx)->threads : omp_get_max_threads(); }

/* ---- declines ---- */

/* What anx's use of LIBXSMM cannot do, before asking LIBXSMM. */
static const char *static_declines(const anx_layer_desc *l)
{
    if ((l->op == ANX_OP_CONV2D || l->op == ANX_OP_MAXPOOL) && l->stride < 1) return "stride must be >= 1";
    if (l->op == ANX_OP_MAXPOOL && l->pad != 0)
        return "MaxPool2d with padding: LIBXSMM 1.17's pooling pads with 0, PyTorch with -inf";
    if ((l->op == ANX_OP_CONV2D || l->op == ANX_OP_MAXPOOL) &&
        ((l->ih == 1 && l->iw == 1) || (l->oh == 1 && l->ow == 1)))
        return "a 1x1 image: the libxsmm backend keeps [n,c,1,1] in the fully-connected layout, which "
               "LIBXSMM's convolution and pooling do not take";
    return NULL;
}

/* Does LIBXSMM make a handle for l?  Its create call's status is the reason when not (what anx
 * does after that, binding tensors and checking LIBXSMM's blocks against anx_xsmm_blk, fails in
 * layer_create instead: a bug of anx, never a decline).  Made once per distinct layer (a JIT
 * compile) and remembered: supports() is asked for every (layer, direction) many times. */
typedef struct decl_memo {
    anx_layer_desc l;
    char why[320];
    int used;
} decl_memo;
static decl_memo g_memo[64];
static int g_memo_next;
static pthread_mutex_t g_memo_lock = PTHREAD_MUTEX_INITIALIZER;

static int same_shape(const anx_layer_desc *a, const anx_layer_desc *b)
{
    return a->op == b->op && a->n == b->n && a->ic == b->ic && a->ih == b->ih && a->iw == b->iw && a->oc == b->oc &&
           a->oh == b->oh && a->ow == b->ow && a->kh == b->kh && a->kw == b->kw && a->stride == b->stride &&
           a->pad == b->pad && strcmp(a->name, b->name) == 0;
}

static const char *library_declines(const anx_layer_desc *l)
{
    if (l->op != ANX_OP_CONV2D && l->op != ANX_OP_LINEAR && l->op != ANX_OP_MAXPOOL) return NULL;
    pthread_mutex_lock(&g_memo_lock);
    for (int i = 0; i < 64; i++)
        if (g_memo[i].used && same_shape(&g_memo[i].l, l)) {
            const char *why = g_memo[i].why[0] ? g_memo[i].why : NULL;
            pthread_mutex_unlock(&g_memo_lock);
            return why;
        }
    xs_ctx *c;
    anx_status st = make_ctx(&c, l, 1, 1);
    anx_xsmm_ctx_destroy(c);
    decl_memo *m = &g_memo[g_memo_next];
    g_memo_next = (g_memo_next + 1) % 64;
    m->l = *l;
    m->used = 1;
    snprintf(m->why, sizeof m->why, "%s", st ? st : "");
    const char *why = m->why[0] ? m->why : NULL;
    pthread_mutex_unlock(&g_memo_lock);
    return why;
}

static const char *xs_supports(const anx_layer_desc *l, anx_dir dir)
{
    (void)dir;
    const char *why = static_declines(l);
    return why ? why : library_declines(l);
}

/* ---- the shared ops on LIBXSMM's buffers ---- */

/* The shared ReLU, counting the NaNs it writes: none, and the next exec (the step's max pooling)
 * need not scan dst for them (the note of xsmm_internal.h). */
static anx_status relu_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    const size_t count = xs_tensor_floats(l, ANX_DST);
    anx_xsmm_nan_free_forget();
    if (!anx_f32_relu_fwd_nans__shared(a->dst, a->src, count, xs_threads(ctx))) anx_xsmm_nan_free_note(a->dst, count);
    return NULL;
}

static anx_status relu_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_xsmm_nan_free_forget();
    return anx_relu_bwd_data__shared(a, xs_tensor_floats(l, ANX_DST), xs_threads(ctx));
}

static anx_status dropout_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_xsmm_nan_free_forget();
    return anx_dropout_fwd__shared(a, xs_tensor_floats(l, ANX_DST), xs_threads(ctx));
}

static anx_status dropout_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    anx_xsmm_nan_free_forget();
    return anx_dropout_bwd_data__shared(a, xs_tensor_floats(l, ANX_DST), xs_threads(ctx));
}

/* The shared loss reads plain [n, c] logits.  [c/B][n][B] is that when c fits one block (c < 32,
 * the model's classes); else the logits are converted to plain and the gradient back (counted). */
static anx_status loss_exec(const anx_layer_desc *l, const anx_args *a, int fwd)
{
    const int n = l->n, c = l->ic;
    anx_xsmm_nan_free_forget();
    if (anx_xsmm_blk(c) == c)
        return fwd ? anx_loss_fwd__shared(NULL, l, a) : anx_loss_bwd_data__shared(NULL, l, a);
    const size_t count = (size_t)n * (size_t)c;
    float *plain = malloc(count * sizeof *plain), *dplain = malloc(count * sizeof *dplain);
    if (!plain || !dplain) {
        free(plain), free(dplain);
        return anx_status_oom("the libxsmm loss's plain logits", 2 * count * sizeof(float));
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c; k++) plain[(size_t)i * (size_t)c + (size_t)k] = a->src[anx_xsmm_act2_off(n, c, i, k)];
    anx_xsmm_conversion_counted(ANX_XSMM_CONVERT_EXEC);
    if (fwd) {
        *a->loss = anx_f32_loss_fwd__shared(plain, a->target, n, c);
    } else {
        anx_f32_loss_bwd_data__shared(dplain, plain, a->target, n, c);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < c; k++) a->diff_src[anx_xsmm_act2_off(n, c, i, k)] = dplain[(size_t)i * (size_t)c + (size_t)k];
        anx_xsmm_conversion_counted(ANX_XSMM_CONVERT_EXEC);
    }
    free(plain), free(dplain);
    return NULL;
}

static anx_status loss_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)ctx;
    return loss_exec(l, a, 1);
}

static anx_status loss_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)ctx;
    return loss_exec(l, a, 0);
}

/* The shared Adam; it writes no activation, but the note is for the exec just before */
static void xs_adam(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t n,
                    const anx_adam_hparams *hp, int threads)
{
    anx_xsmm_nan_free_forget();
    anx_adam__shared(param, grad, exp_avg, exp_avg_sq, n, hp, threads);
}

/* The scratch LIBXSMM asked for (bound once per handle), the pooling mask and recompute dst,
 * Linear-14's flattened src and diff_src; 0 for the shared ops. */
static size_t xs_workspace_bytes(void *ctx, const anx_layer_desc *l)
{
    (void)l;
    return ctx ? ((const xs_ctx *)ctx)->ws_bytes : 0;
}

/* "LIBXSMM 1.17, JIT target cpx": the benchmark context's anx_backend_libraries */
static const char *xs_library(void)
{
    static char buf[96];
    snprintf(buf, sizeof buf, "LIBXSMM %s, JIT target %s", anx_xsmm_version(), anx_xsmm_target());
    return buf;
}

/* The FMA ceiling of the code LIBXSMM JITs here: AVX2 under LIBXSMM_TARGET=hsw even on an
 * AVX-512 CPU, so anx-bench's peak% is not judged against a wider unit than the code uses. */
static anx_peak_isa xs_peak_isa_here(void)
{
    anx_xsmm_target();
    const int arch = libxsmm_get_target_archid();
    return arch >= LIBXSMM_X86_AVX512 ? ANX_PEAK_AVX512 : arch >= LIBXSMM_X86_AVX2 ? ANX_PEAK_AVX2 : ANX_PEAK_BEST;
}

/* ---- names, availability ---- */

static const char *xs_impl_name(void *ctx, const anx_layer_desc *l, anx_dir dir)
{
    static const char *const shared[ANX_OP_COUNT][ANX_DIR_COUNT] = {
        [ANX_OP_RELU] = {ANX_IMPL_NAME(anx_f32_relu_fwd__shared), ANX_IMPL_NAME(anx_f32_relu_bwd_data__shared), NULL},
        [ANX_OP_DROPOUT] = {ANX_IMPL_NAME(anx_f32_dropout__shared), ANX_IMPL_NAME(anx_f32_dropout__shared), NULL},
        [ANX_OP_LOSS] = {ANX_IMPL_NAME(anx_f32_loss_fwd__shared), ANX_IMPL_NAME(anx_f32_loss_bwd_data__shared), NULL},
    };
    if ((unsigned)l->op >= ANX_OP_COUNT || (unsigned)dir >= ANX_DIR_COUNT) return "?";
    if (shared[l->op][dir]) return shared[l->op][dir];
    const xs_ctx *c = ctx;
    if (!c || !c->impl[dir][0]) return "libxsmm (no layer context)";
    return c->impl[dir];
}

static const char *xs_unavailable(void)
{
    anx_xsmm_target();
    /* LIBXSMM's DNN layers JIT AVX2 or AVX-512 code; below AVX2 (or LIBXSMM_TARGET set lower) its
       convolution falls back to generic code we would be timing as "libxsmm" */
    if (libxsmm_get_target_archid() < LIBXSMM_X86_AVX2) return "LIBXSMM's JIT target is below AVX2 (CPU or LIBXSMM_TARGET)";
    return NULL;
}

const anx_backend anx_backend_libxsmm = {
    .name = "libxsmm",
    .unavailable = xs_unavailable,
    .supports = xs_supports,
    .layer_create = xs_layer_create,
    .layer_destroy = xs_layer_destroy,
    .impl_name = xs_impl_name,
    .workspace_bytes = xs_workspace_bytes,
    .tensor_floats = xs_tensor_floats,
    .tensor_import = xs_tensor_import,
    .tensor_export = xs_tensor_export,
    .exec =
        {
            [ANX_OP_CONV2D] = {anx_xsmm_conv2d_fwd, anx_xsmm_conv2d_bwd_data, anx_xsmm_conv2d_bwd_weights},
            [ANX_OP_RELU] = {relu_fwd, relu_bwd_data, NULL},
            [ANX_OP_MAXPOOL] = {anx_xsmm_maxpool_fwd, anx_xsmm_maxpool_bwd_data, NULL},
            [ANX_OP_LINEAR] = {anx_xsmm_linear_fwd, anx_xsmm_linear_bwd_data, anx_xsmm_linear_bwd_weights},
            [ANX_OP_DROPOUT] = {dropout_fwd, dropout_bwd_data, NULL},
            [ANX_OP_LOSS] = {loss_fwd, loss_bwd_data, NULL},
        },
    .adam = xs_adam,
    .peak_isa = ANX_PEAK_BEST, /* LIBXSMM JITs for the best ISA of the CPU (or LIBXSMM_TARGET) */
    .train_rank = 0,           /* a comparison backend: never anx train's default */
    /* LIBXSMM's weight update splits the minibatch over threads and reduces the per-thread
       partial gradients: the summation order depends on the thread count */
    .bits_vary_with_threads = 1,
    .library = xs_library,
    .peak_isa_here = xs_peak_isa_here,
    /* LIBXSMM's execute_st alone in the same OpenMP region (no bias, flatten, NaN rule, checks) */
    .library_exec =
        {
            [ANX_OP_CONV2D] = {anx_xsmm_conv2d_fwd_bare, anx_xsmm_conv2d_bwd_data_bare, anx_xsmm_conv2d_bwd_weights_bare},
            [ANX_OP_MAXPOOL] = {anx_xsmm_maxpool_fwd_bare, anx_xsmm_maxpool_bwd_data_bare, NULL},
            [ANX_OP_LINEAR] = {anx_xsmm_linear_fwd_bare, anx_xsmm_linear_bwd_data_bare, anx_xsmm_linear_bwd_weights_bare},
        },
};
