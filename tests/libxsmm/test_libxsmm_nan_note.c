/* test_libxsmm_nan_note — max pooling's NaN rule stays PyTorch's when the scan is skipped.
 *
 * LIBXSMM's pooling drops NaN; the backend lets a NaN win (PyTorch's rule) after looking for one
 * in src.  It skips the look when the ReLU just before wrote src and counted no NaN in it (a note
 * that lives for one exec: xsmm_internal.h).  A stale note would let a NaN vanish silently, so each
 * case here ends in a pool fwd whose whole dst must equal PyTorch's max pooling of its src (a naive
 * loop on the exported plain src: a window with a NaN gets its last NaN, else its max), and says
 * whether it must have scanned.  On ReLU-2 -> MaxPool2d-3 of Alexnet(3, 10) at batch 2, 2 threads:
 *   clean      relu(X) without NaN, pool(X): the note is taken, no scan;
 *   relu_nan   relu(X) writing NaNs, pool(X): no note, scanned, NaN windows;
 *   import     relu(X), then a NaN imported into X, pool(X): the import forgot the note;
 *   other_src  relu(X), pool(Y) with a NaN in Y: the note is X's only;
 *   twice      relu(X), pool(X), a NaN written into X by hand, pool(X): taken once only;
 *   relu_bwd   relu(X), relu bwd_data writing NaNs into X, pool(X): any exec forgets the note.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/rng.h"
#include "testutil.h"
#include "xsmm_internal.h"

extern const anx_backend anx_backend_libxsmm;
#define THREADS 2

typedef struct fixture {
    const anx_backend *be;
    const anx_layer_desc *relu, *pool;
    void *relu_ctx, *pool_ctx;
    size_t ns, nd;       /* floats of src (= the ReLU's dst) and of the pool's dst */
    float *x, *y, *dst;  /* two activations of the ReLU's dst shape, the pool's dst */
    float *plain;        /* ns floats of plain scratch */
} fixture;

/* PyTorch's max pooling of plain src [n,c,ih,iw] into plain want [n,c,oh,ow] */
static void torch_maxpool(float *want, const float *src, const anx_layer_desc *l)
{
    for (int n = 0; n < l->n; n++)
        for (int c = 0; c < l->ic; c++)
            for (int oy = 0; oy < l->oh; oy++)
                for (int ox = 0; ox < l->ow; ox++) {
                    const float *plane = src + ((size_t)n * (size_t)l->ic + (size_t)c) * (size_t)l->ih * (size_t)l->iw;
                    float m = -INFINITY;
                    int nan = 0;
                    for (int ky = 0; ky < l->kh; ky++)
                        for (int kx = 0; kx < l->kw; kx++) {
                            const int y = oy * l->stride + ky, x = ox * l->stride + kx;
                            const float v = plane[(size_t)y * (size_t)l->iw + (size_t)x];
                            if (isnan(v)) m = v, nan = 1;
                            else if (!nan && v > m) m = v;
                        }
                    const size_t row = ((size_t)n * (size_t)l->oc + (size_t)c) * (size_t)l->oh + (size_t)oy;
                    want[row * (size_t)l->ow + (size_t)ox] = m;
                }
}

/* relu(x <- plain uniform in [-1, 1) with nans NaNs at seeded places) */
static void relu_into(fixture *f, float *x, uint64_t seed, int nans)
{
    anx_rng_fill_uniform(f->plain, f->ns, anx_rng_key(seed, "relu src", 0), 1.0);
    for (int i = 0; i < nans; i++) f->plain[(size_t)(i + 1) * 7919u * (size_t)(seed + 1) % f->ns] = NAN;
    float *src = tu_alloc(f->ns, "relu src");
    f->be->tensor_import(f->relu, ANX_SRC, src, f->plain);
    const anx_args a = {.src = src, .dst = x};
    TU_CHECKF(tu_exec(f->be, f->relu_ctx, f->relu, ANX_FWD, &a) == 0, "relu fwd");
    tu_free(src);
}

/* pool(src) must be PyTorch's and must (not) have scanned */
static void pool_check(fixture *f, const float *src, int want_scan, const char *what)
{
    const uint64_t scans0 = anx_libxsmm_nan_scans();
    const anx_args a = {.src = (float *)src, .dst = f->dst};
    if (tu_exec(f->be, f->pool_ctx, f->pool, ANX_FWD, &a)) return;
    const int scanned = anx_libxsmm_nan_scans() != scans0;
    TU_CHECKF(scanned == want_scan, "%s: the pool %s its src for NaN, want %s", what,
              scanned ? "scanned" : "did not scan", want_scan ? "a scan" : "the ReLU's note");
    float *want = malloc(f->nd * sizeof *want), *got = malloc(f->nd * sizeof *got);
    f->be->tensor_export(f->pool, ANX_SRC, f->plain, src);
    torch_maxpool(want, f->plain, f->pool);
    f->be->tensor_export(f->pool, ANX_DST, got, f->dst);
    size_t nan_windows = 0;
    for (size_t i = 0; i < f->nd; i++) nan_windows += isnan(want[i]) != 0;
    char label[128];
    snprintf(label, sizeof label, "%s: %s fwd (%zu NaN windows) vs PyTorch's rule", what, f->pool->name, nan_windows);
    tu_expect_bitwise(got, want, f->nd, label);
    free(want), free(got);
}

static void run_cases(fixture *f)
{
    relu_into(f, f->x, 1, 0);
    pool_check(f, f->x, 0, "clean");

    relu_into(f, f->x, 2, 3);
    pool_check(f, f->x, 1, "relu_nan");

    relu_into(f, f->x, 3, 0);
    anx_rng_fill_uniform(f->plain, f->ns, anx_rng_key(4, "import", 0), 1.0);
    f->plain[f->ns / 3] = NAN;
    f->be->tensor_import(f->pool, ANX_SRC, f->x, f->plain);
    pool_check(f, f->x, 1, "import");

    anx_rng_fill_uniform(f->plain, f->ns, anx_rng_key(5, "other", 0), 1.0);
    f->plain[f->ns / 2] = NAN;
    f->be->tensor_import(f->pool, ANX_SRC, f->y, f->plain);
    relu_into(f, f->x, 6, 0);
    pool_check(f, f->y, 1, "other_src");

    relu_into(f, f->x, 7, 0);
    const anx_args p = {.src = f->x, .dst = f->dst}; /* no check in between: its export would forget */
    TU_CHECKF(tu_exec(f->be, f->pool_ctx, f->pool, ANX_FWD, &p) == 0, "twice: the first pool");
    f->x[f->ns / 5] = NAN; /* by hand: the caller's write after the pool that took the note */
    pool_check(f, f->x, 1, "twice");

    relu_into(f, f->x, 8, 0);
    float *ddst = tu_alloc(f->ns, "relu diff_dst");
    for (size_t i = 0; i < f->ns; i++) ddst[i] = NAN;
    const anx_args b = {.dst = f->x, .diff_dst = ddst, .diff_src = f->x}; /* NaN where relu's dst > 0 */
    TU_CHECKF(tu_exec(f->be, f->relu_ctx, f->relu, ANX_BWD_DATA, &b) == 0, "relu bwd_data");
    pool_check(f, f->x, 1, "relu_bwd");
    tu_free(ddst);
}

int main(void)
{
    const anx_backend *be = &anx_backend_libxsmm;
    const char *why = be->unavailable();
    if (why) {
        printf("test_libxsmm_nan_note: skipped: %s\n", why);
        return 77;
    }
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 10, 2, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    fixture f = {.be = be};
    for (int i = 0; i + 1 < ANX_NUM_LAYERS && !f.pool; i++)
        if (m.layers[i].op == ANX_OP_RELU && m.layers[i + 1].op == ANX_OP_MAXPOOL)
            f.relu = &m.layers[i], f.pool = &m.layers[i + 1];
    TU_CHECKF(f.pool != NULL, "no ReLU followed by a MaxPool2d in the model");
    if (!f.pool) return tu_finish("test_libxsmm_nan_note");
    f.ns = be->tensor_floats(f.pool, ANX_SRC), f.nd = be->tensor_floats(f.pool, ANX_DST);
    TU_CHECKF(be->tensor_floats(f.relu, ANX_DST) == f.ns, "the ReLU's dst and the pool's src differ in size");
    f.relu_ctx = tu_layer_create(be, f.relu, THREADS), f.pool_ctx = tu_layer_create(be, f.pool, THREADS);
    f.x = tu_alloc(f.ns, "x"), f.y = tu_alloc(f.ns, "y"), f.dst = tu_alloc(f.nd, "dst");
    f.plain = malloc(f.ns * sizeof *f.plain);
    if (f.pool_ctx) run_cases(&f);
    printf("test_libxsmm_nan_note: %s -> %s at batch %d, %d threads (target %s)\n", f.relu->name, f.pool->name,
           f.pool->n, THREADS, anx_xsmm_target());
    if (f.relu_ctx) be->layer_destroy(f.relu_ctx);
    if (f.pool_ctx) be->layer_destroy(f.pool_ctx);
    tu_free(f.x), tu_free(f.y), tu_free(f.dst), free(f.plain);
    return tu_finish("test_libxsmm_nan_note");
}
