/* Data parallelism under mpirun (docs/mpi.md):
 *   allreduce/bytes:B        MPI_Allreduce (sum, in place) of B bytes of floats: bytes/s by size;
 *   allreduce/layer:NAME     the same at one layer's gradient bucket (weight + bias), the messages
 *                            the training step sends;
 *   dist_step/BE/local_batch:b/overlap:o   the data-parallel training step at b images per rank
 *                            (global batch b x N): images/s over all ranks, and per step the
 *                            exchange time left exposed after the backward pass (exposed_ms) and
 *                            from the first allreduce started to the last finished (span_ms);
 *                            overlap 1 starts each layer's allreduce as its backward ends, 0
 *                            after the whole backward pass (anx train --allreduce after).
 * Every rank must run the same benchmarks the same number of times (each iteration is a
 * collective), so these run a fixed iteration count, not Google Benchmark's estimate.  They are
 * registered only under mpirun; at -np 1 the allreduce rows skip and dist_step is the one-process
 * step, the scaling baseline. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/dist.h"
#include "anx/model.h"
#include "anx/net.h"
#include "anx/rng.h"
#include "bench.h"

enum { MAX_SIZES = 8, MAX_DIST_CASES = 2 * 8 * ANX_BENCH_MAX_BATCHES };

typedef struct allreduce_case {
    size_t floats;
    char layer[32]; /* "" for the size sweep */
} allreduce_case;

typedef struct dist_case {
    const anx_backend *be;
    int local, threads, overlap;
} dist_case;

static allreduce_case g_ar_cases[MAX_SIZES + ANX_NUM_LAYERS];
static int g_nar;
static dist_case g_dist_cases[MAX_DIST_CASES];
static int g_ndist;

/* Iterations of an allreduce of `bytes`: ~1 GiB moved per row, 3..1000. */
static int64_t allreduce_iterations(double bytes)
{
    double n = 1073741824.0 / bytes;
    return n < 3 ? 3 : n > 1000 ? 1000 : (int64_t)n;
}

static void bm_allreduce(anx_gb_state *st, void *arg)
{
    const allreduce_case *c = arg;
    const int ranks = anx_dist_size();
    if (ranks == 1) {
        anx_gb_skip(st, "skipped: one rank (run anx-bench under mpirun -np N)");
        return;
    }
    float *buf = anx_bench_alloc_floats(c->floats);
    if (!buf) {
        anx_gb_skip(st, "failed: out of memory for the allreduce buffer");
        return;
    }
    for (size_t i = 0; i < c->floats; i++) buf[i] = 1e-3f;
    char msg[128];
    snprintf(msg, sizeof msg, "ranks:%d floats:%zu", ranks, c->floats);
    anx_gb_label(st, msg);
    char err[256] = "";
    int rc = anx_dist_barrier(err, sizeof err); /* every rank starts the timed loop together */
    while (anx_gb_keep_running(st))
        if (rc == 0) rc = anx_dist_sum_f32(buf, c->floats, err, sizeof err);
    free(buf);
    if (rc) {
        snprintf(msg, sizeof msg, "failed: %s", err);
        anx_gb_skip(st, msg);
        return;
    }
    const double bytes = (double)c->floats * sizeof(float);
    anx_gb_counter(st, "bytes/s", bytes, ANX_GB_RATE_PER_ITER);
    /* what a ring allreduce sends and receives per rank: 2 (N-1)/N of the message (NCCL's busbw) */
    anx_gb_counter(st, "bus_bytes/s", 2.0 * (ranks - 1) / ranks * bytes, ANX_GB_RATE_PER_ITER);
    anx_gb_counter(st, "ranks", ranks, ANX_GB_PLAIN);
}

/* --- the data-parallel step --- */

typedef struct dist_fixture {
    const dist_case *c;
    anx_net *net;
    char broken[256];
} dist_fixture;

static dist_fixture g_dist_fix;

static void dist_release(void)
{
    anx_net_destroy(g_dist_fix.net);
    memset(&g_dist_fix, 0, sizeof g_dist_fix);
}

/* One data-parallel step; sets *exposed and *span (0 alone).  0, or -1 with the reason in err. */
static int dist_step(anx_net *net, int overlap, double *exposed, double *span, char *err, size_t errlen)
{
    const float lr = 1e-6f; /* as bench_step.c: keeps a long run on one batch finite */
    float loss;
    anx_dist_stats s;
    if (anx_net_forward(net, 1, &loss)) return snprintf(err, errlen, "%s", anx_net_error(net)), -1;
    anx_dist_grads_begin(net, 1.0 / anx_dist_size(), overlap, 0);
    if (anx_net_backward(net)) return snprintf(err, errlen, "%s", anx_net_error(net)), -1;
    if (anx_dist_grads_end(net, &s, err, errlen)) return -1;
    anx_net_adam(net, lr);
    *exposed = s.exposed_s, *span = s.total_s;
    return isfinite(loss) ? 0 : (snprintf(err, errlen, "loss %g", (double)loss), -1);
}

/* A net at the rank's batch with PyTorch-default init (the same on every rank: same seed), a
 * random batch of its own, dropout at its global positions, after one warm-up step. */
static dist_fixture *dist_fixture_get(const dist_case *c)
{
    anx_bench_cache_claim(dist_release);
    if (g_dist_fix.c == c) return &g_dist_fix;
    dist_release();
    dist_fixture *f = &g_dist_fix;
    f->c = c;
    const int rank = anx_dist_rank();
    f->net = anx_bench_net_create(c->be, c->local, c->threads, (uint64_t)rank, f->broken, sizeof f->broken);
    if (!f->net) return f;
    anx_net_set_dropout_offset(f->net, (int64_t)rank * c->local);
    char err[200];
    double e, s;
    if (dist_step(f->net, c->overlap, &e, &s, err, sizeof err))
        snprintf(f->broken, sizeof f->broken, "failed: warm-up step: %s", err);
    return f;
}

static void bm_dist_step(anx_gb_state *st, void *arg)
{
    const dist_case *c = arg;
    const char *why = c->be->unavailable ? c->be->unavailable() : NULL;
    char msg[256];
    if (why || !c->be->adam) {
        snprintf(msg, sizeof msg, "skipped: %s", why ? why : "adam not implemented by this backend");
        anx_gb_skip(st, msg);
        return;
    }
    dist_fixture *f = dist_fixture_get(c);
    if (f->broken[0]) {
        anx_gb_skip(st, f->broken);
        return;
    }
    const int ranks = anx_dist_size();
    snprintf(msg, sizeof msg, "%s ranks:%d global_batch:%d threads:%d", c->be->name, ranks, c->local * ranks,
             c->threads);
    anx_gb_label(st, msg);
    double exposed = 0, span = 0, e, s;
    char err[256];
    while (anx_gb_keep_running(st))
        if (dist_step(f->net, c->overlap, &e, &s, err, sizeof err) == 0)
            exposed += e, span += s;
        else /* a failure is this rank's: the others may wait in a collective, so end them all */
            fprintf(stderr, "anx-bench: rank %d of %d: %s\n", anx_dist_rank(), ranks, err), anx_dist_abort(2), exit(2);
    const double iters = (double)anx_gb_iterations_done(st);
    anx_gb_counter(st, "images/s", (double)c->local * ranks, ANX_GB_RATE_PER_ITER);
    anx_gb_counter(st, "exposed_ms", 1e3 * exposed / iters, ANX_GB_PLAIN);
    anx_gb_counter(st, "span_ms", 1e3 * span / iters, ANX_GB_PLAIN);
    anx_gb_counter(st, "ranks", ranks, ANX_GB_PLAIN);
}

void anx_bench_register_dist(const anx_bench_config *cfg)
{
    char name[128];
    if (!anx_dist_up()) return; /* only under mpirun (np 1 too: the baseline): rows of ranks */
    static const size_t kib[] = {4, 64, 1024, 16 * 1024, 256 * 1024}; /* 4 KiB .. 256 MiB (all gradients: 250 MB) */
    for (size_t i = 0; i < sizeof kib / sizeof kib[0]; i++) {
        allreduce_case *c = &g_ar_cases[g_nar++];
        c->floats = kib[i] * 1024 / sizeof(float);
        snprintf(name, sizeof name, "allreduce/bytes:%zu", kib[i] * 1024);
        anx_gb_bench *b = anx_gb_register(name, bm_allreduce, c);
        anx_gb_use_real_time(b);
        anx_gb_iterations(b, allreduce_iterations((double)kib[i] * 1024));
        anx_gb_time_unit(b, ANX_GB_US);
    }
    anx_model m;
    anx_model_config mc = anx_bench_model_config(1);
    char err[200];
    if (anx_model_init(&m, &mc, err, sizeof err) == 0)
        for (int p = 0; p < ANX_NUM_PARAMS; p += 2) { /* weight p and bias p + 1: one bucket */
            allreduce_case *c = &g_ar_cases[g_nar++];
            c->floats = m.params[p].count + m.params[p + 1].count;
            snprintf(c->layer, sizeof c->layer, "%s", m.layers[m.params[p].layer].name);
            snprintf(name, sizeof name, "allreduce/layer:%s", c->layer);
            anx_gb_bench *b = anx_gb_register(name, bm_allreduce, c);
            anx_gb_use_real_time(b);
            anx_gb_iterations(b, allreduce_iterations((double)c->floats * sizeof(float)));
            anx_gb_time_unit(b, ANX_GB_US);
        }
    for (const anx_backend *const *pb = anx_backends(); *pb; pb++) {
        const anx_backend *be = *pb;
        if (!anx_bench_backend_selected(cfg, be) || be->is_reference) continue; /* ref: minutes a step */
        for (int bi = 0; bi < cfg->nbatches; bi++)
            for (int overlap = 1; overlap >= 0 && g_ndist < MAX_DIST_CASES; overlap--) {
                dist_case *c = &g_dist_cases[g_ndist++];
                *c = (dist_case){be, cfg->batches[bi], cfg->threads, overlap};
                snprintf(name, sizeof name, "dist_step/%s/local_batch:%d/overlap:%d", be->name, c->local, overlap);
                anx_gb_bench *b = anx_gb_register(name, bm_dist_step, c);
                anx_gb_use_real_time(b);
                anx_gb_iterations(b, 5);
                anx_gb_time_unit(b, ANX_GB_MS);
            }
    }
}
