/* avx2_timing: per-layer GFLOP/s of the avx2 backend against this core's measured AVX2 FMA peak.
 * A measuring tool, not a test (the benchmark suite in bench/ is the reference for reports):
 *     avx2_timing [batch 32] [threads 1] [reps 3] [backend avx2] [layer tags, e.g. conv2,conv3]
 * prints one row per (layer, direction): best-of-reps CPU ms, GFLOP/s per core and % of peak. */
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anx/backend.h"
#include "anx/model.h"

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
__attribute__((noinline)) static double peak_gflops(void)
{
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f);
    __m256 a3 = _mm256_set1_ps(1.3f), a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f);
    __m256 a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f), a8 = _mm256_set1_ps(1.8f);
    __m256 a9 = _mm256_set1_ps(1.9f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    const long iters = 20000000;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
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

int main(int argc, char **argv)
{
    const int batch = argc > 1 ? atoi(argv[1]) : 32, threads = argc > 2 ? atoi(argv[2]) : 1;
    const int reps = argc > 3 ? atoi(argv[3]) : 3;
    const anx_backend *be = argc > 4 ? anx_backend_find(argv[4]) : &anx_backend_avx2;
    if (!be || (be->unavailable && be->unavailable())) {
        printf("avx2_timing: skipped: backend unavailable\n");
        return 77;
    }
    omp_set_num_threads(threads);
    const double peak = peak_gflops();
    printf("AVX2 FMA peak, one core: %.1f GFLOP/s; batch %d, %d thread(s), best of %d, backend %s\n", peak,
           batch, threads, reps, be->name);
    printf("%-10s %-12s %10s %9s %8s  %s\n", "layer", "dir", "ms", "GFLOP/s", "%peak", "impl");
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 1000, batch, 227};
    if (anx_model_init(&m, &cfg, err, sizeof err)) return fprintf(stderr, "%s\n", err), 2;
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m.layers[i];
        if (!anx_desc_has_weights(l) || (argc > 5 && !strstr(argv[5], l->tag))) continue;
        void *ctx = be->layer_create ? be->layer_create(l, threads) : NULL;
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
            double best = 1e30;
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                be->exec[l->op][d](ctx, l, &a);
                double t = now() - t0;
                if (t < best) best = t;
            }
            const double gf = anx_desc_flops(l, (anx_dir)d) / best / 1e9;
            printf("%-10s %-12s %10.2f %9.1f %7.1f%%  %s\n", l->tag, anx_dir_name((anx_dir)d), best * 1e3, gf,
                   100.0 * gf / peak, be->impl_name ? be->impl_name(ctx, l, (anx_dir)d) : "");
            fflush(stdout);
        }
        free(a.src), free(a.dst), free(a.weights), free(a.bias), free(a.diff_src), free(a.diff_dst);
        free(a.diff_weights), free(a.diff_bias);
        if (be->layer_destroy) be->layer_destroy(ctx);
    }
    return 0;
}
