/* onednn_perf — per-layer times of the oneDNN backend: each primitive alone ("bare": its own ctx
 * and buffers, run reps times, median) against the same (layer, direction) inside the training
 * step of an anx_net (median over steps), with GFLOP/s and oneDNN's implementation name, then
 * the step time and images/s.  Not a ctest (it takes minutes at batch 32); run it as
 *   onednn_perf [--batch 32] [--threads 2] [--steps 5] [--reps 5]
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/net.h"
#include "anx/rng.h"
#include "onednn_internal.h"

/* A tool, not a test: a step or ctx the library cannot make ends it with the reason. */
static void tool_train_step(anx_net *net, float lr)
{
    float loss;
    if (anx_net_train_step(net, lr, &loss)) {
        fprintf(stderr, "onednn_perf: %s\n", anx_net_error(net));
        exit(2);
    }
}

static void *tool_layer_create(const anx_backend *be, const anx_layer_desc *l, int threads)
{
    void *ctx;
    anx_status st = anx_backend_layer_create(be, &ctx, l, threads);
    if (st) {
        fprintf(stderr, "onednn_perf: %s layer_create(%s): %s\n", be->name, l->name, st);
        exit(2);
    }
    return ctx;
}

#define NL ANX_NUM_LAYERS

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (all threads): under a loaded machine, wall time measures the
 * queue, CPU time what the work costs (OpenMP spin-waits included). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static float *buf(size_t n, uint64_t seed)
{
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, (n ? n : 1) * sizeof *p)) exit(2);
    anx_rng_fill_uniform(p, n, anx_rng_key(seed, "perf", 0), 1.0);
    return p;
}

/* Median seconds of reps runs of (l, dir) alone, after one warm-up run; *cpu: median CPU seconds. */
static double bare(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, int threads, int reps, int64_t *target,
                   double *cpu)
{
    void *ctx = tool_layer_create(be, l, threads);
    anx_args a = {0};
    size_t ns = be->tensor_floats(l, ANX_SRC), nd = be->tensor_floats(l, ANX_DST);
    a.src = buf(ns, 1), a.dst = buf(nd, 2), a.diff_src = buf(ns, 3), a.diff_dst = buf(nd, 4);
    float *mask = buf(nd, 5), loss = 0;
    a.mask = mask, a.target = target, a.loss = &loss;
    if (anx_desc_has_weights(l)) {
        size_t nw = be->tensor_floats(l, ANX_WEIGHTS), nb = be->tensor_floats(l, ANX_BIAS);
        a.weights = buf(nw, 6), a.bias = buf(nb, 7), a.diff_weights = buf(nw, 8), a.diff_bias = buf(nb, 9);
    }
    if (l->op == ANX_OP_MAXPOOL && dir == ANX_BWD_DATA) be->exec[l->op][ANX_FWD](ctx, l, &a); /* workspace */
    be->exec[l->op][dir](ctx, l, &a);
    double *t = malloc((size_t)reps * sizeof *t), *c = malloc((size_t)reps * sizeof *c);
    for (int r = 0; r < reps; r++) {
        double t0 = now(), c0 = cpu_now();
        be->exec[l->op][dir](ctx, l, &a);
        t[r] = now() - t0;
        c[r] = cpu_now() - c0;
    }
    double m = median(t, reps);
    *cpu = median(c, reps);
    free(t), free(c);
    float *all[] = {a.src, a.dst, a.diff_src, a.diff_dst, mask, a.weights, a.bias, a.diff_weights, a.diff_bias};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    be->layer_destroy(ctx);
    return m;
}

int main(int argc, char **argv)
{
    int batch = 32, threads = 2, steps = 5, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (v < 1) {
            fprintf(stderr, "onednn_perf: %s needs a positive integer, got '%s'\n", argv[i], argv[i + 1]);
            return 2;
        }
        if (!strcmp(argv[i], "--batch")) batch = v;
        else if (!strcmp(argv[i], "--threads")) threads = v;
        else if (!strcmp(argv[i], "--steps")) steps = v;
        else if (!strcmp(argv[i], "--reps")) reps = v;
        else {
            fprintf(stderr, "onednn_perf: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    const anx_backend *be = &anx_backend_onednn;
    anx_model_config cfg = {3, 1000, batch, 227};
    char err[256];
    anx_net *net = anx_net_create(be, &cfg, threads, err, sizeof err);
    if (!net) {
        fprintf(stderr, "onednn_perf: %s\n", err);
        return 2;
    }
    const anx_model *m = anx_net_model(net);
    anx_net_init_params(net, 1);
    size_t nin = anx_desc_plain_count(&m->layers[0], ANX_SRC);
    float *x = malloc(nin * sizeof *x);
    int64_t *target = malloc((size_t)batch * sizeof *target);
    anx_rng_fill_u01(x, nin, anx_rng_key(1, "input", 0));
    anx_rng_fill_targets(target, (size_t)batch, anx_rng_key(1, "target", 0), cfg.n_class);
    anx_net_set_input(net, x, target);

    /* the step: one warm-up, then steps timed; per-layer seconds from the driver */
    tool_train_step(net, 1e-3f);
    double *st = malloc((size_t)steps * sizeof *st), *lt[NL + 1][ANX_DIR_COUNT], *at = malloc((size_t)steps * sizeof *at);
    double *ls = malloc((size_t)steps * sizeof *ls); /* sum of the layers' seconds, per step */
    double *cs = malloc((size_t)steps * sizeof *cs); /* CPU seconds per step */
    for (int i = 0; i <= NL; i++)
        for (int d = 0; d < ANX_DIR_COUNT; d++) lt[i][d] = malloc((size_t)steps * sizeof(double));
    for (int s = 0; s < steps; s++) {
        double t0 = now(), c0 = cpu_now();
        tool_train_step(net, 1e-3f);
        st[s] = now() - t0;
        cs[s] = cpu_now() - c0;
        at[s] = anx_net_adam_seconds(net);
        ls[s] = 0;
        for (int i = 0; i <= NL; i++)
            for (int d = 0; d < ANX_DIR_COUNT; d++) {
                lt[i][d][s] = anx_net_layer_seconds(net, i, (anx_dir)d);
                ls[s] += lt[i][d][s];
            }
    }
    double step = median(st, steps), adam = median(at, steps), layers = median(ls, steps), cpu_step = median(cs, steps);

    printf("oneDNN backend, Alexnet(3, 1000), batch %d, %d threads, median of %d steps / %d reps\n", batch, threads,
           steps, reps);
    printf("%-16s %-11s %-36s %10s %9s %10s %7s %10s %11s\n", "layer", "dir", "impl", "bare ms", "GFLOP/s",
           "in-step ms", "ratio", "bare cpu ms", "GFLOP/cpu-s");
    for (int i = 0; i <= NL; i++) {
        const anx_layer_desc *l = i == NL ? &m->loss : &m->layers[i];
        void *ctx = tool_layer_create(be, l, threads);
        for (int d = 0; d < ANX_DIR_COUNT; d++) {
            if (!be->exec[l->op][d] || (d == ANX_BWD_WEIGHTS && !anx_desc_has_weights(l))) continue;
            if (d == ANX_BWD_DATA && i == 0) continue; /* the step does not run it */
            double cpu;
            double b = bare(be, l, (anx_dir)d, threads, reps, target, &cpu);
            double in = median(lt[i][d], steps);
            double gf = anx_desc_has_weights(l) ? anx_desc_flops(l, (anx_dir)d) / b * 1e-9 : 0;
            double gfc = anx_desc_has_weights(l) ? anx_desc_flops(l, (anx_dir)d) / cpu * 1e-9 : 0;
            printf("%-16s %-11s %-36s %10.3f %9.1f %10.3f %7.3f %10.3f %11.1f\n", l->name, anx_dir_name((anx_dir)d),
                   be->impl_name(ctx, l, (anx_dir)d), b * 1e3, gf, in * 1e3, in / b, cpu * 1e3, gfc);
        }
        be->layer_destroy(ctx);
    }
    printf("%-16s %-11s %-36s %10s %9s %10.3f\n", "Adam", "", "anx_f32_adam__onednn_avx2", "", "", adam * 1e3);
    printf("step: %.1f ms (medians: layers %.1f ms, Adam %.1f ms), %.2f images/s; %.1f CPU ms per step\n",
           step * 1e3, layers * 1e3, adam * 1e3, batch / step, cpu_step * 1e3);
    for (int i = 0; i <= NL; i++)
        for (int d = 0; d < ANX_DIR_COUNT; d++) free(lt[i][d]);
    free(st), free(at), free(ls), free(cs), free(x), free(target);
    anx_net_destroy(net);
    return 0;
}
