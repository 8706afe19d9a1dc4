/* The whole training step (forward, loss, backward, Adam) per backend and batch through the
 * step driver (anx/net.h), and Adam alone over all 62.4M parameters, per backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/model.h"
#include "anx/net.h"
#include "anx/rng.h"
#include "bench.h"

enum { MAX_STEP_CASES = 8 * ANX_BENCH_MAX_BATCHES };

typedef struct step_case {
    const anx_backend *be;
    int batch;
    int threads;
} step_case;

static step_case g_step_cases[MAX_STEP_CASES];
static int g_nstep;
static step_case g_adam_cases[8];
static int g_nadam;

/* Thousands of timed steps train on one fixed batch; at PyTorch's default lr 1e-3 Adam moves
 * every weight by ~1e-3 per step and the loss of that overfitted net was seen to jump to 12 and
 * beyond at batch 2.  A small lr keeps it finite for any run length; the arithmetic timed is the
 * same. */
static const float kLr = 1e-6f;

/* The (layer, dir) pairs one training step runs: every forward, the loss both ways, bwd_data
 * of every layer but the first (nobody wants dLoss/dimage), bwd_weights of Conv2d and Linear.
 * Calls fn on each; stops at the first non-zero return and passes it on. */
static int for_each_step_op(const anx_model *m, int (*fn)(void *, const anx_layer_desc *, anx_dir), void *arg)
{
    int r;
    for (int i = 0; i <= ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = i < ANX_NUM_LAYERS ? &m->layers[i] : &m->loss;
        if ((r = fn(arg, l, ANX_FWD))) return r;
        if (i > 0 && (r = fn(arg, l, ANX_BWD_DATA))) return r;
        if (anx_desc_has_weights(l) && (r = fn(arg, l, ANX_BWD_WEIGHTS))) return r;
    }
    return 0;
}

typedef struct decline_probe {
    const anx_backend *be;
    char *msg;
    size_t cap;
} decline_probe;

static int probe_decline(void *arg, const anx_layer_desc *l, anx_dir dir)
{
    decline_probe *p = arg;
    const char *why = anx_backend_declines(p->be, l, dir);
    if (!why) return 0;
    snprintf(p->msg, p->cap, "skipped: %s %s: %s", l->name, anx_dir_name(dir), why);
    return 1;
}

static int add_flops(void *arg, const anx_layer_desc *l, anx_dir dir)
{
    *(double *)arg += anx_desc_flops(l, dir);
    return 0;
}

/* --- the whole step --- */

typedef struct step_fixture {
    const step_case *c;
    anx_net *net;
    char broken[256];
} step_fixture;

static step_fixture g_step_fix;

static void step_release(void)
{
    anx_net_destroy(g_step_fix.net);
    memset(&g_step_fix, 0, sizeof g_step_fix);
}

/* A net with PyTorch-default init, a random batch and seeded dropout, after one warm-up step. */
static step_fixture *step_fixture_get(const step_case *c)
{
    anx_bench_cache_claim(step_release);
    if (g_step_fix.c == c) return &g_step_fix;
    step_release();
    step_fixture *f = &g_step_fix;
    f->c = c;
    f->net = anx_bench_net_create(c->be, c->batch, c->threads, 0, f->broken, sizeof f->broken);
    if (!f->net) return f;
    float loss = NAN;
    if (anx_net_train_step(f->net, kLr, &loss))
        snprintf(f->broken, sizeof f->broken, "failed: %s", anx_net_error(f->net));
    else if (!isfinite(loss))
        snprintf(f->broken, sizeof f->broken, "failed: warm-up step loss %g", loss);
    return f;
}

static void bm_step(anx_gb_state *st, void *arg)
{
    const step_case *c = arg;
    char msg[256];
    anx_model m;
    anx_model_config mc = anx_bench_model_config(c->batch);
    if (anx_model_init(&m, &mc, msg, sizeof msg)) {
        anx_gb_skip(st, msg);
        return;
    }
    decline_probe probe = {c->be, msg, sizeof msg};
    if (for_each_step_op(&m, probe_decline, &probe)) {
        anx_gb_skip(st, msg);
        return;
    }
    if (!c->be->adam) {
        anx_gb_skip(st, "skipped: adam not implemented by this backend");
        return;
    }
    step_fixture *f = step_fixture_get(c);
    if (f->broken[0]) {
        anx_gb_skip(st, f->broken);
        return;
    }
    int isa = anx_bench_isa_of(c->be);
    snprintf(msg, sizeof msg, "%s peak:%s threads:%d", c->be->name, isa >= 0 ? anx_isa_name((anx_isa)isa) : "none",
             c->threads);
    anx_gb_label(st, msg);

    float loss = 0;
    while (anx_gb_keep_running(st))
        if (anx_net_train_step(f->net, kLr, &loss)) { /* ends the loop after this iteration */
            snprintf(msg, sizeof msg, "failed: %s", anx_net_error(f->net));
            anx_gb_skip(st, msg);
        }
    if (anx_gb_skipped(st)) return;

    if (!isfinite(loss)) {
        snprintf(msg, sizeof msg, "failed: %s step loss is %g", c->be->name, loss);
        anx_gb_skip(st, msg);
        return;
    }
    double flops = 0;
    for_each_step_op(&m, add_flops, &flops);
    anx_gb_counter(st, "images/s", c->batch, ANX_GB_RATE_PER_ITER);
    anx_gb_counter(st, "FLOP/s", flops, ANX_GB_RATE_PER_ITER);
    const anx_machine *mach = anx_machine_get();
    if (mach && isa >= 0 && mach->fma_flops[isa] > 0)
        anx_gb_counter(st, "peak%", 100.0 * flops / mach->fma_flops[isa], ANX_GB_RATE_PER_ITER);
    anx_gb_counter(st, "loss", loss, ANX_GB_PLAIN);
}

/* --- Adam alone --- */

typedef struct adam_fixture {
    const step_case *c;
    size_t n;
    float *param, *grad, *exp_avg, *exp_avg_sq; /* [n] each */
    int64_t t;
} adam_fixture;

static adam_fixture g_adam_fix;

static void adam_release(void)
{
    free(g_adam_fix.param), free(g_adam_fix.grad), free(g_adam_fix.exp_avg), free(g_adam_fix.exp_avg_sq);
    memset(&g_adam_fix, 0, sizeof g_adam_fix);
}

static adam_fixture *adam_fixture_get(const step_case *c, size_t n)
{
    anx_bench_cache_claim(adam_release);
    if (g_adam_fix.c == c) return &g_adam_fix;
    adam_release();
    adam_fixture *f = &g_adam_fix;
    f->param = anx_bench_alloc_floats(n), f->grad = anx_bench_alloc_floats(n);
    f->exp_avg = anx_bench_alloc_floats(n), f->exp_avg_sq = anx_bench_alloc_floats(n);
    if (!f->param || !f->grad || !f->exp_avg || !f->exp_avg_sq) {
        adam_release();
        return NULL;
    }
    f->c = c, f->n = n;
    anx_rng_fill_uniform(f->param, n, anx_rng_key(1, "bench.adam.param", 0), 0.01);
    anx_rng_fill_uniform(f->grad, n, anx_rng_key(1, "bench.adam.grad", 0), 0.01);
    memset(f->exp_avg, 0, n * sizeof(float));
    memset(f->exp_avg_sq, 0, n * sizeof(float));
    return f;
}

static void bm_adam(anx_gb_state *st, void *arg)
{
    const step_case *c = arg;
    char msg[256];
    const char *why = c->be->unavailable ? c->be->unavailable() : NULL;
    if (why || !c->be->adam) {
        snprintf(msg, sizeof msg, "skipped: %s", why ? why : "adam not implemented by this backend");
        anx_gb_skip(st, msg);
        return;
    }
    anx_model m;
    anx_model_config mc = anx_bench_model_config(1);
    if (anx_model_init(&m, &mc, msg, sizeof msg)) {
        anx_gb_skip(st, msg);
        return;
    }
    size_t n = anx_model_param_count(&m);
    adam_fixture *f = adam_fixture_get(c, n);
    if (!f) {
        anx_gb_skip(st, "failed: out of memory for Adam's 4 arrays");
        return;
    }
    snprintf(msg, sizeof msg, "%s params:%zu threads:%d", c->be->name, n, c->threads);
    anx_gb_label(st, msg);
    anx_adam_hparams hp = {.lr = kLr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    while (anx_gb_keep_running(st)) {
        hp.step = ++f->t;
        c->be->adam(f->param, f->grad, f->exp_avg, f->exp_avg_sq, n, &hp, c->threads);
        anx_gb_clobber_memory();
    }
    if (!anx_bench_all_finite(f->param, n)) {
        snprintf(msg, sizeof msg, "failed: %s adam left non-finite parameters", c->be->name);
        anx_gb_skip(st, msg);
        return;
    }
    /* reads param, grad, exp_avg, exp_avg_sq; writes param, exp_avg, exp_avg_sq */
    double bytes = 7.0 * sizeof(float) * (double)n;
    anx_gb_counter(st, "bytes/s", bytes, ANX_GB_RATE_PER_ITER);
    anx_gb_counter(st, "params/s", (double)n, ANX_GB_RATE_PER_ITER);
    const anx_machine *mach = anx_machine_get();
    if (mach && mach->triad_bytes > 0)
        anx_gb_counter(st, "bw%", 100.0 * bytes / mach->triad_bytes, ANX_GB_RATE_PER_ITER);
}

void anx_bench_register_step(const anx_bench_config *cfg)
{
    char name[96];
    for (const anx_backend *const *pb = anx_backends(); *pb; pb++) {
        const anx_backend *be = *pb;
        if (!anx_bench_backend_selected(cfg, be)) continue;
        int is_ref = be->is_reference;
        const int *batches = is_ref ? cfg->ref_batches : cfg->batches;
        int nb = is_ref ? cfg->nref_batches : cfg->nbatches;
        for (int bi = 0; bi < nb && g_nstep < MAX_STEP_CASES; bi++) {
            step_case *c = &g_step_cases[g_nstep++];
            *c = (step_case){be, batches[bi], cfg->threads};
            snprintf(name, sizeof name, "step/%s/batch:%d", be->name, c->batch);
            anx_gb_bench *b = anx_gb_register(name, bm_step, c);
            anx_gb_use_real_time(b);
            anx_gb_time_unit(b, ANX_GB_MS);
        }
        if (g_nadam < (int)(sizeof g_adam_cases / sizeof g_adam_cases[0])) {
            step_case *c = &g_adam_cases[g_nadam++];
            *c = (step_case){be, 0, cfg->threads};
            snprintf(name, sizeof name, "adam/%s", be->name);
            anx_gb_bench *b = anx_gb_register(name, bm_adam, c);
            anx_gb_use_real_time(b);
            anx_gb_time_unit(b, ANX_GB_MS);
        }
    }
}
