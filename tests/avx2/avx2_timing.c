/* avx2_timing: per-layer GFLOP/s of the avx2 backend against this core's measured AVX2 FMA peak.
 * A measuring tool, not a test (the benchmark suite in bench/ is the reference for reports):
 *     avx2_timing [batch 32] [threads 1] [reps 3] [backend avx2] [layer tags, e.g. conv2,conv3]
 * prints one row per (layer, direction): best-of-reps CPU ms, GFLOP/s per core, % of the peak
 * measured at start, the median over reps of % of a peak probe run just before each rep, and
 * that again counting only the taps that read the image (not the padding).
 *     avx2_timing step [batch 32] [threads 2] [steps 3] [backends avx2,onednn]
 * runs whole training steps on each backend in turn in one process (run with
 * ONEDNN_MAX_CPU_ISA=AVX2 and OMP_WAIT_POLICY=passive) and prints per backend the median wall
 * and CPU seconds per step and each layer's mean ms per direction.  A backend written
 * <name>_bare (e.g. libxsmm_bare; any backend with a library_exec) is a second net of <name> in
 * the step driver's timing-only bare mode (anx_net_set_bare: the library's call alone at its
 * place inside the step); given with <name> itself, a last table prints per (layer, direction)
 * with a bare call the median in-step ms of both and exec / bare, flagged outside 10%:
 *     OMP_WAIT_POLICY=passive avx2_timing step 32 2 5 libxsmm,libxsmm_bare */
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/net.h"
#include "anx/rng.h"

/* A tool, not a test: a step or ctx the library cannot make ends it with the reason. */
static void tool_train_step(anx_net *net, float lr)
{
    float loss;
    if (anx_net_train_step(net, lr, &loss)) {
        fprintf(stderr, "avx2_timing: %s\n", anx_net_error(net));
        exit(2);
    }
}

static void *tool_layer_create(const anx_backend *be, const anx_layer_desc *l, int threads)
{
    void *ctx;
    anx_status st = anx_backend_layer_create(be, &ctx, l, threads);
    if (st) {
        fprintf(stderr, "avx2_timing: %s layer_create(%s): %s\n", be->name, l->name, st);
        exit(2);
    }
    return ctx;
}

/* Process CPU time, not wall time: the machine is shared, and with one thread CPU time is the
 * time this core really spent, so % of peak stays meaningful under load (with T threads it is
 * the sum over threads, so GFLOP/s are per core-second: compare with one core's peak). */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* 10 independent FMA chains in named registers (>= latency x throughput on Zen and Intel cores). */
__attribute__((noinline)) static double peak_gflops(long iters, int reps)
{
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f);
    __m256 a3 = _mm256_set1_ps(1.3f), a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f);
    __m256 a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f), a8 = _mm256_set1_ps(1.8f);
    __m256 a9 = _mm256_set1_ps(1.9f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    double best = 0;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        for (long it = 0; it < iters; it++) {
            a0 = _mm256_fmadd_ps(a0, m, c), a1 = _mm256_fmadd_ps(a1, m, c);
            a2 = _mm256_fmadd_ps(a2, m, c), a3 = _mm256_fmadd_ps(a3, m, c);
            a4 = _mm256_fmadd_ps(a4, m, c), a5 = _mm256_fmadd_ps(a5, m, c);
            a6 = _mm256_fmadd_ps(a6, m, c), a7 = _mm256_fmadd_ps(a7, m, c);
            a8 = _mm256_fmadd_ps(a8, m, c), a9 = _mm256_fmadd_ps(a9, m, c);
        }
        double g = iters * 10.0 * 16.0 / (now() - t0) / 1e9;
        if (g > best) best = g;
    }
    float sink[8];
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    _mm256_storeu_ps(sink, _mm256_add_ps(s, _mm256_add_ps(a8, a9)));
    if (sink[0] == 12345.0f) printf("!");
    return best;
}

static float *filled(size_t n, unsigned seed)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    srand(seed);
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX - 0.5f;
    return p;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { MAX_BE = 8, MAX_STEPS = 32 };
#define NL ANX_NUM_LAYERS

/* The net of backend `name`, or of <name> in bare mode for `name` = <name>_bare; NULL with a
 * printed reason when it cannot be made. */
static anx_net *make_net(const char *name, const anx_model_config *cfg, int threads)
{
    char base[64];
    snprintf(base, sizeof base, "%s", name);
    const size_t len = strlen(base), sl = strlen("_bare");
    const anx_backend *be = anx_backend_find(base);
    const int bare = !be && len > sl && strcmp(base + len - sl, "_bare") == 0;
    if (bare) base[len - sl] = '\0', be = anx_backend_find(base);
    char err[256];
    anx_net *net = be ? anx_net_create(be, cfg, threads, err, sizeof err) : NULL;
    if (!net) {
        printf("%s: skipped: %s\n", name, be ? err : "not compiled in");
        return NULL;
    }
    if (bare) {
        const int n = anx_net_set_bare(net, 1);
        if (!n) {
            printf("%s: skipped: backend %s has no library_exec (no bare call)\n", name, be->name);
            anx_net_destroy(net);
            return NULL;
        }
        printf("%s: timing only: the library's call alone at %d (layer, direction)s, exec elsewhere\n", name, n);
    }
    return net;
}

/* The median of the n per-step seconds of (layer, dir) in lsec[step][layer][dir]. */
static double median_layer(double (*lsec)[NL + 1][ANX_DIR_COUNT], int n, int layer, int dir)
{
    double v[MAX_STEPS];
    for (int s = 0; s < n; s++) v[s] = lsec[s][layer][dir];
    qsort(v, n, sizeof v[0], cmp_double);
    return v[n / 2];
}

/* For backend b and its bare twin bb: the in-step exec / in-step bare ratio per (layer, dir) with
 * a library_exec, medians over the steps (the "within 10% of the bare call" at its place
 * inside the step, where both find caches as the previous layer left them). */
static void print_ratio(const anx_net *net, const char *name, double (*le)[NL + 1][ANX_DIR_COUNT],
                        double (*lb)[NL + 1][ANX_DIR_COUNT], int steps)
{
    const anx_backend *be = anx_net_backend(net);
    const anx_model *m = anx_net_model(net);
    printf("%s in the step / %s_bare in the step (median ms over %d steps; ratio > 1: exec slower)\n", name, name,
           steps);
    printf("    %-6s %-12s %9s %9s %7s\n", "layer", "dir", "exec", "bare", "ratio");
    int outside = 0, rows = 0;
    for (int i = 0; i < NL; i++)
        for (int d = 0; d < ANX_DIR_COUNT; d++) {
            const anx_layer_desc *l = &m->layers[i];
            if (!be->library_exec[l->op][d] || (d == ANX_BWD_WEIGHTS && !anx_desc_has_weights(l)) ||
                (d == ANX_BWD_DATA && i == 0))
                continue;
            const double e = median_layer(le, steps, i, d), b = median_layer(lb, steps, i, d), r = e / b;
            const char *flag = r > 1.10 ? "  outside 10% (exec slower)" : r < 0.90 ? "  outside 10% (exec faster)" : "";
            outside += *flag != '\0', rows++;
            printf("    %-6s %-12s %9.3f %9.3f %7.3f%s\n", l->tag, anx_dir_name((anx_dir)d), 1e3 * e, 1e3 * b, r, flag);
        }
    printf("    %d of %d (layer, direction)s outside 10%%\n", outside, rows);
}

static int step_mode(int argc, char **argv)
{
    const int batch = argc > 2 ? atoi(argv[2]) : 32, threads = argc > 3 ? atoi(argv[3]) : 2;
    int steps = argc > 4 ? atoi(argv[4]) : 3;
    if (steps > MAX_STEPS) steps = MAX_STEPS;
    char names[128];
    snprintf(names, sizeof names, "%s", argc > 5 ? argv[5] : "avx2,onednn");
    const anx_model_config cfg = {3, 1000, batch, 227};
    anx_net *nets[MAX_BE];
    const char *label[MAX_BE];
    int nb = 0;
    for (char *tok = strtok(names, ","); tok && nb < MAX_BE; tok = strtok(NULL, ",")) {
        anx_net *net = make_net(tok, &cfg, threads);
        if (!net) continue;
        anx_net_init_params(net, 1);
        const size_t nin = anx_desc_plain_count(&anx_net_model(net)->layers[0], ANX_SRC);
        float *x = malloc(nin * sizeof *x);
        int64_t *t = malloc(batch * sizeof *t);
        anx_rng_fill_u01(x, nin, anx_rng_key(1, "input", 0));
        anx_rng_fill_targets(t, batch, anx_rng_key(1, "target", 0), cfg.n_class);
        anx_net_set_input(net, x, t);
        free(x), free(t);
        /* warm-up: first-touch of every buffer; in bare mode also the one exec per (layer,
           direction) that each bare call is to follow (anx_net_set_bare) */
        tool_train_step(net, 1e-3f);
        label[nb] = tok;
        nets[nb++] = net;
    }
    static double w[MAX_BE][MAX_STEPS], c[MAX_BE][MAX_STEPS], lsec[MAX_BE][MAX_STEPS][NL + 1][ANX_DIR_COUNT];
    float loss[MAX_BE] = {0};
    /* alternate backends so machine load hits both alike, in ABBA order: the first net of a round
       runs after the other's Adam and was measured up to 1.2x slower in fc6/fc7 fwd than the
       second (libxsmm against libxsmm_bare, either way round), so a fixed order biases ratios */
    for (int s = 0; s < steps; s++) {
        for (int k = 0; k < nb; k++) {
            const int b = s % 2 ? nb - 1 - k : k;
            const double w0 = wall(), c0 = now();
            /* a bare step's loss may be non-finite (not a training step): nothing here judges it */
            if (anx_net_train_step(nets[b], 1e-3f, &loss[b])) {
                fprintf(stderr, "avx2_timing: %s: %s\n", label[b], anx_net_error(nets[b]));
                exit(2);
            }
            w[b][s] = wall() - w0, c[b][s] = now() - c0;
            for (int i = 0; i <= NL; i++)
                for (int d = 0; d < ANX_DIR_COUNT; d++) lsec[b][s][i][d] = anx_net_layer_seconds(nets[b], i, (anx_dir)d);
        }
    }
    printf("Alexnet(3, 1000) batch %d, %d thread(s), %d steps per backend, alternating\n", batch, threads, steps);
    for (int b = 0; b < nb; b++) {
        qsort(w[b], steps, sizeof(double), cmp_double), qsort(c[b], steps, sizeof(double), cmp_double);
        const anx_net *net = nets[b];
        printf("%-8s median wall %.3f s/step (%.2f images/s), median CPU %.3f s/step, adam %.3f s, last loss %g%s\n",
               label[b], w[b][steps / 2], batch / w[b][steps / 2], c[b][steps / 2], anx_net_adam_seconds(net),
               (double)loss[b], strcmp(label[b], anx_net_backend(net)->name) ? " (bare: not a training step)" : "");
        for (int i = 0; i <= NL; i++) {
            const anx_model *m = anx_net_model(net);
            const char *name = i < NL ? m->layers[i].tag : "loss";
            double mean[ANX_DIR_COUNT] = {0};
            for (int s = 0; s < steps; s++)
                for (int d = 0; d < ANX_DIR_COUNT; d++) mean[d] += lsec[b][s][i][d] / steps;
            printf("    %-6s fwd %8.2f ms  bwd_data %8.2f ms  bwd_weights %8.2f ms\n", name, 1e3 * mean[0],
                   1e3 * mean[1], 1e3 * mean[2]);
        }
    }
    for (int b = 0; b < nb; b++) /* each backend given with its _bare twin: the ratio table */
        for (int bb = 0; bb < nb; bb++) {
            char twin[80];
            snprintf(twin, sizeof twin, "%s_bare", label[b]);
            if (strcmp(label[bb], twin) == 0 && strcmp(label[b], anx_net_backend(nets[b])->name) == 0)
                print_ratio(nets[b], label[b], lsec[b], lsec[bb], steps);
        }
    for (int b = 0; b < nb; b++) anx_net_destroy(nets[b]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "step") == 0) return step_mode(argc, argv);
    const int batch = argc > 1 ? atoi(argv[1]) : 32, threads = argc > 2 ? atoi(argv[2]) : 1;
    const int reps = argc > 3 ? atoi(argv[3]) : 3;
    const anx_backend *be = argc > 4 ? anx_backend_find(argv[4]) : &anx_backend_avx2;
    if (!be || (be->unavailable && be->unavailable())) {
        printf("avx2_timing: skipped: backend unavailable\n");
        return 77;
    }
    omp_set_num_threads(threads);
    const double peak = peak_gflops(20000000, 5);
    printf("AVX2 FMA peak, one core: %.1f GFLOP/s; batch %d, %d thread(s), best of %d, backend %s\n", peak,
           batch, threads, reps, be->name);
    printf("%-10s %-12s %10s %9s %8s %8s %8s  %s\n", "layer", "dir", "ms", "GFLOP/s", "%peak", "%paired",
           "%unpad", "impl");
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 1000, batch, 227};
    if (anx_model_init(&m, &cfg, err, sizeof err)) return fprintf(stderr, "%s\n", err), 2;
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m.layers[i];
        if (!anx_desc_has_weights(l) || (argc > 5 && !strstr(argv[5], l->tag))) continue;
        void *ctx = tool_layer_create(be, l, threads);
        anx_args a = {0};
        a.src = filled(be->tensor_floats(l, ANX_SRC), 1);
        a.dst = filled(be->tensor_floats(l, ANX_DST), 2);
        a.weights = filled(be->tensor_floats(l, ANX_WEIGHTS), 3);
        a.bias = filled(be->tensor_floats(l, ANX_BIAS), 4);
        a.diff_src = filled(be->tensor_floats(l, ANX_SRC), 5);
        a.diff_dst = filled(be->tensor_floats(l, ANX_DST), 6);
        a.diff_weights = filled(be->tensor_floats(l, ANX_WEIGHTS), 7);
        a.diff_bias = filled(be->tensor_floats(l, ANX_BIAS), 8);
        for (int d = 0; d < ANX_DIR_COUNT; d++) {
            if (anx_backend_declines(be, l, (anx_dir)d)) continue;
            be->exec[l->op][d](ctx, l, &a); /* warm-up */
            /* %paired: this VM's FMA rate wanders by up to 12% within seconds (40-45 GFLOP/s
             * seen), so each rep is judged against a 40 ms probe run just before it, and the
             * median of those ratios is printed; %unpad does the same without the padding's
             * products (anx_desc_flops_unpadded), the work the kernels really do. */
            double best = 1e30, ratio[64];
            const int nr = reps < 64 ? reps : 64;
            const double flops = anx_desc_flops(l, (anx_dir)d);
            for (int r = 0; r < nr; r++) {
                const double probe = peak_gflops(10000000, 1);
                double t0 = now();
                be->exec[l->op][d](ctx, l, &a);
                double t = now() - t0;
                if (t < best) best = t;
                ratio[r] = flops / t / 1e9 / probe;
            }
            qsort(ratio, nr, sizeof ratio[0], cmp_double);
            const double gf = flops / best / 1e9, paired = ratio[nr / 2];
            printf("%-10s %-12s %10.2f %9.1f %7.1f%% %7.1f%% %7.1f%%  %s\n", l->tag, anx_dir_name((anx_dir)d),
                   best * 1e3, gf, 100.0 * gf / peak, 100.0 * paired,
                   100.0 * paired * anx_desc_flops_unpadded(l, (anx_dir)d) / flops,
                   be->impl_name ? be->impl_name(ctx, l, (anx_dir)d) : "");
            fflush(stdout);
        }
        free(a.src), free(a.dst), free(a.weights), free(a.bias), free(a.diff_src), free(a.diff_dst);
        free(a.diff_weights), free(a.diff_bias);
        if (be->layer_destroy) be->layer_destroy(ctx);
    }
    return 0;
}
