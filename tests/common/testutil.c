#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "anx/rng.h"

int tu_passed, tu_failed;

int tu_finish(const char *test_name)
{
    printf("%s: %d passed, %d failed\n", test_name, tu_passed, tu_failed);
    return tu_failed ? 1 : 0;
}

/* Layout: [header 64 B: n, what][guard 256 B][n floats][guard 256 B] */
#define TU_GUARD 256
#define TU_HEAD 64
#define TU_CANARY 0xA5

typedef struct {
    size_t n;
    const char *what;
} tu_head;

float *tu_alloc(size_t n, const char *what)
{
    /* 64-byte aligned, as every caller of a backend allocates (include/anx/backend.h) */
    unsigned char *raw = NULL;
    if (posix_memalign((void **)&raw, 64, TU_HEAD + 2 * TU_GUARD + n * sizeof(float))) raw = NULL;
    if (!raw) {
        fprintf(stderr, "tu_alloc: out of memory for %s (%zu floats)\n", what, n);
        exit(2);
    }
    tu_head *h = (tu_head *)raw;
    h->n = n;
    h->what = what;
    memset(raw + TU_HEAD, TU_CANARY, TU_GUARD);
    memset(raw + TU_HEAD + TU_GUARD + n * sizeof(float), TU_CANARY, TU_GUARD);
    float *p = (float *)(raw + TU_HEAD + TU_GUARD);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static unsigned char *tu_raw(const float *p) { return (unsigned char *)p - TU_GUARD - TU_HEAD; }

size_t tu_count(const float *p) { return ((tu_head *)tu_raw(p))->n; }

int tu_guard_ok(const float *p)
{
    unsigned char *raw = tu_raw(p);
    tu_head *h = (tu_head *)raw;
    const unsigned char *lo = raw + TU_HEAD, *hi = raw + TU_HEAD + TU_GUARD + h->n * sizeof(float);
    for (int i = 0; i < TU_GUARD; i++)
        if (lo[i] != TU_CANARY || hi[i] != TU_CANARY) return 0;
    return 1;
}

void tu_free(float *p)
{
    if (!p) return;
    tu_head *h = (tu_head *)tu_raw(p);
    TU_CHECKF(tu_guard_ok(p), "guard zone of %s (%zu floats) was overwritten", h->what, h->n);
    free(tu_raw(p));
}

void tu_fill_int(float *p, size_t n, uint64_t seed, int lo, int hi, double density)
{
    uint64_t key = anx_rng_key(seed, "tu_fill_int", 0), dkey = anx_rng_key(seed, "tu_density", 0);
    for (size_t i = 0; i < n; i++) {
        int v = lo + (int)(anx_rng_u01(key, i) * (hi - lo + 1));
        p[i] = anx_rng_u01(dkey, i) < density ? (float)v : 0.0f;
    }
}

void tu_fill_uniform(float *p, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t key = anx_rng_key(seed, "tu_fill_uniform", 0);
    for (size_t i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * anx_rng_u01(key, i));
}

static void tu_report_worst(const char *what, size_t n, size_t bad, size_t worst_i, double worst,
                            double got, double want)
{
    fprintf(stderr, "  %s: %zu of %zu elements differ; worst at [%zu]: got %.9g want %.9g (err %.3g)\n",
            what, bad, n, worst_i, got, want, worst);
}

int tu_expect_bitwise(const float *got, const float *want, size_t n, const char *what)
{
    size_t bad = 0, worst_i = 0;
    double worst = -1;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
            double e = fabs((double)got[i] - want[i]);
            if (isnan(e)) e = INFINITY;
            if (e > worst) worst = e, worst_i = i;
            bad++;
        }
    }
    TU_CHECKF(bad == 0, "%s not bit-identical", what);
    if (bad) tu_report_worst(what, n, bad, worst_i, worst, got[worst_i], want[worst_i]);
    return bad == 0;
}

int tu_expect_close(const float *got, const float *want, size_t n, double atol, double rtol,
                    const char *what)
{
    size_t bad = 0, worst_i = 0;
    double worst = -1;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        double tol = atol + rtol * fabs((double)want[i]);
        if (!(e <= tol)) {
            if (isnan(e)) e = INFINITY;
            if (e > worst) worst = e, worst_i = i;
            bad++;
        }
    }
    TU_CHECKF(bad == 0, "%s: not within atol %.3g rtol %.3g", what, atol, rtol);
    if (bad) tu_report_worst(what, n, bad, worst_i, worst, got[worst_i], want[worst_i]);
    return bad == 0;
}

int tu_expect_within(const float *got, const double *want, const double *bound, size_t n,
                     const char *what)
{
    size_t bad = 0, worst_i = 0;
    double worst = -1;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= bound[i])) {
            double r = isnan(e) ? INFINITY : e / (bound[i] > 0 ? bound[i] : 1e-300);
            if (r > worst) worst = r, worst_i = i;
            bad++;
        }
    }
    TU_CHECKF(bad == 0, "%s: not within the per-element error bound", what);
    if (bad) {
        fprintf(stderr, "  %s: %zu of %zu elements out of bound; worst at [%zu]: got %.9g want %.9g bound %.3g\n",
                what, bad, n, worst_i, got[worst_i], want[worst_i], bound[worst_i]);
    }
    return bad == 0;
}

int tu_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#else
    return 0;
#endif
#else
    return 0;
#endif
}

float tu_net_train_step(anx_net *net, float lr)
{
    float loss = NAN;
    int rc = anx_net_train_step(net, lr, &loss);
    TU_CHECKF(rc == 0, "anx_net_train_step: %s", anx_net_error(net));
    return rc ? NAN : loss;
}

float tu_net_forward(anx_net *net, int train)
{
    float loss = NAN;
    int rc = anx_net_forward(net, train, &loss);
    TU_CHECKF(rc == 0, "anx_net_forward: %s", anx_net_error(net));
    return rc ? NAN : loss;
}

void tu_net_backward(anx_net *net)
{
    int rc = anx_net_backward(net);
    TU_CHECKF(rc == 0, "anx_net_backward: %s", anx_net_error(net));
}

void *tu_layer_create(const anx_backend *be, const anx_layer_desc *l, int threads)
{
    void *ctx;
    anx_status st = anx_backend_layer_create(be, &ctx, l, threads);
    TU_CHECKF(st == NULL, "%s layer_create(%s): %s", be->name, l->name, st);
    return ctx;
}

int tu_exec(const anx_backend *be, void *ctx, const anx_layer_desc *l, anx_dir dir, const anx_args *a)
{
    anx_args b = *a; /* a's scratch, else one for this call */
    anx_status st = a->scratch ? NULL : anx_backend_scratch_alloc(be, ctx, l, &b);
    if (!st) st = be->exec[l->op][dir](ctx, l, &b);
    TU_CHECKF(st == NULL, "%s %s %s: %s", be->name, l->name, anx_dir_name(dir), st);
    if (!a->scratch) free(b.scratch);
    return st ? -1 : 0;
}
