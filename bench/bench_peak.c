/* The machine's ceilings, measured rather than looked up: the FMA peak of each vector ISA the
 * CPU has (independent FMA chains, bench_peak_<isa>.c) and the triad memory bandwidth.
 * peak% and bw% of every other benchmark are taken against these numbers. */
#include <float.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "bench_peak.h"

typedef double (*fma_kernel)(int64_t iters);

static const struct {
    const char *name;
    fma_kernel kernel;
    double flops_per_iter;
} isa_table[ANX_ISA_COUNT] = {
/* The names are the ISAs' (in fma_peak/<isa> and "peak:<isa>"), which two backends share;
 * tests/registry/test_no_backend_names.c lets a string pass only on a line marked "ISA name". */
#ifdef ANX_BENCH_X86 /* the kernels are only compiled for x86 targets (bench/CMakeLists.txt) */
    [ANX_ISA_AVX2] = {"avx2", anx_f32_fma_peak__avx2_12x8, ANX_FMA_AVX2_FLOPS_PER_ITER},         /* ISA name */
    [ANX_ISA_AVX512] = {"avx512", anx_f32_fma_peak__avx512_16x16, ANX_FMA_AVX512_FLOPS_PER_ITER}, /* ISA name */
#else
    [ANX_ISA_AVX2] = {"avx2", NULL, ANX_FMA_AVX2_FLOPS_PER_ITER},     /* ISA name */
    [ANX_ISA_AVX512] = {"avx512", NULL, ANX_FMA_AVX512_FLOPS_PER_ITER}, /* ISA name */
#endif
};

const char *anx_isa_name(anx_isa isa)
{
    return (unsigned)isa < ANX_ISA_COUNT ? isa_table[isa].name : "?";
}

static int cpu_has(anx_isa isa)
{
#if defined(ANX_BENCH_X86) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (isa == ANX_ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == ANX_ISA_AVX512) return __builtin_cpu_supports("avx512f");
#endif
    (void)isa;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the calling thread: the ceilings are a property of the hardware, so they are
 * timed on the CPU time of each thread, and other load on a shared machine (which stretches
 * wall time while a thread waits for a core) does not lower them.  The benchmarks themselves
 * are timed on the wall clock. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs k(iters) on `threads` threads at once; returns the summed FLOP/s of the threads, each
 * on its own CPU time. */
static double fma_run(anx_isa isa, int64_t iters, int threads, double *sink)
{
    double rate = 0, s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : rate, s)
    {
        double t0 = thread_cpu_s();
        s += isa_table[isa].kernel(iters);
        double t = thread_cpu_s() - t0;
        rate += (double)iters * isa_table[isa].flops_per_iter / (t > 0 ? t : 1e-9);
    }
    *sink += s;
    return rate;
}

/* Best of 5 runs of ~20 ms each: the best is the ceiling. */
static double fma_flops(anx_isa isa, int threads)
{
    double sink = 0;
    int64_t iters = 1 << 12;
    /* size one run to ~20 ms of one core: 4x the first count that takes 5 ms */
    while (iters < ((int64_t)1 << 40)) {
        double t0 = thread_cpu_s();
        fma_run(isa, iters, 1, &sink);
        if (thread_cpu_s() - t0 >= 0.005) break;
        iters *= 2;
    }
    iters *= 4;
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double rate = fma_run(isa, iters, threads, &sink);
        if (rate > best) best = rate;
    }
    anx_gb_do_not_optimize(&sink);
    return best;
}

/* STREAM triad a = b + s*c over arrays 4x the last-level caches of small servers; bytes counted
 * as STREAM does (2 reads + 1 write per element, no write-allocate). */
enum { TRIAD_N = 8 << 20 };

/* One triad on `threads` threads, each on its own static share; returns the longest thread's
 * CPU seconds when cpu is set, else the wall seconds. */
static double triad_once(float *a, const float *b, const float *c, int threads, int cpu)
{
    const float s = 3.0f;
    double t0 = now_s(), longest = 0;
#pragma omp parallel num_threads(threads) reduction(max : longest)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        long lo = (long)TRIAD_N * id / nt, hi = (long)TRIAD_N * (id + 1) / nt;
        double c0 = thread_cpu_s();
        for (long i = lo; i < hi; i++) a[i] = b[i] + s * c[i];
        longest = thread_cpu_s() - c0;
    }
    return cpu ? longest : now_s() - t0;
}

/* First touch by the threads (and shares) that use the pages. */
static void triad_init(float *a, float *b, float *c, int threads)
{
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        long lo = (long)TRIAD_N * id / nt, hi = (long)TRIAD_N * (id + 1) / nt;
        for (long i = lo; i < hi; i++) a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f;
    }
}

static double triad_bytes(int threads)
{
    float *a = anx_bench_alloc_floats(TRIAD_N), *b = anx_bench_alloc_floats(TRIAD_N),
          *c = anx_bench_alloc_floats(TRIAD_N);
    double best = DBL_MAX;
    if (a && b && c) {
        triad_init(a, b, c, threads);
        for (int r = 0; r < 8; r++) {
            double t = triad_once(a, b, c, threads, 1);
            if (t > 0 && t < best) best = t;
        }
    }
    free(a), free(b), free(c);
    return best == DBL_MAX ? 0 : 3.0 * sizeof(float) * TRIAD_N / best;
}

static anx_machine g_machine;
static int g_measured;

const anx_machine *anx_machine_measure(int threads)
{
    if (g_measured) return &g_machine;
    g_machine.threads = threads;
    for (int i = 0; i < ANX_ISA_COUNT; i++) {
        g_machine.has[i] = cpu_has((anx_isa)i);
        if (!g_machine.has[i]) continue;
        g_machine.fma_flops_1t[i] = fma_flops((anx_isa)i, 1);
        g_machine.fma_flops[i] = threads == 1 ? g_machine.fma_flops_1t[i] : fma_flops((anx_isa)i, threads);
    }
    g_machine.triad_bytes = triad_bytes(threads);
    g_measured = 1;
    return &g_machine;
}

const anx_machine *anx_machine_get(void)
{
    return g_measured ? &g_machine : NULL;
}

anx_peak_isa anx_bench_peak_isa(const anx_backend *be)
{
    if (!be) return ANX_PEAK_BEST;
    const int here = be->peak_isa_here && !(be->unavailable && be->unavailable());
    return here ? be->peak_isa_here() : be->peak_isa;
}

int anx_bench_isa_of(const anx_backend *be)
{
    const anx_machine *m = anx_machine_get();
    if (!m) return -1;
    const anx_peak_isa p = anx_bench_peak_isa(be);
    if (p == ANX_PEAK_AVX2) return m->has[ANX_ISA_AVX2] ? ANX_ISA_AVX2 : -1;
    if (p == ANX_PEAK_AVX512) return m->has[ANX_ISA_AVX512] ? ANX_ISA_AVX512 : -1;
    for (int i = ANX_ISA_COUNT - 1; i >= 0; i--)
        if (m->has[i]) return i;
    return -1;
}

/* --- the probes as benchmarks, so the JSON of every run carries them --- */

typedef struct peak_case {
    anx_isa isa;
    int threads;
} peak_case;

static peak_case g_peak_cases[ANX_ISA_COUNT];
static int g_triad_threads;

static void bm_fma_peak(anx_gb_state *st, void *arg)
{
    const peak_case *pc = arg;
    if (!cpu_has(pc->isa)) {
        char msg[64];
        snprintf(msg, sizeof msg, "skipped: CPU lacks %s", isa_table[pc->isa].name);
        anx_gb_skip(st, msg);
        return;
    }
    const int64_t iters = 1 << 16;
    double sink = 0;
    while (anx_gb_keep_running(st)) fma_run(pc->isa, iters, pc->threads, &sink);
    anx_gb_do_not_optimize(&sink);
    anx_gb_counter(st, "FLOP/s", (double)pc->threads * iters * isa_table[pc->isa].flops_per_iter,
                   ANX_GB_RATE_PER_ITER);
}

static void bm_triad(anx_gb_state *st, void *arg)
{
    int threads = *(const int *)arg;
    float *a = anx_bench_alloc_floats(TRIAD_N), *b = anx_bench_alloc_floats(TRIAD_N),
          *c = anx_bench_alloc_floats(TRIAD_N);
    if (!a || !b || !c) {
        anx_gb_skip(st, "failed: out of memory for the triad arrays");
    } else {
        triad_init(a, b, c, threads);
        while (anx_gb_keep_running(st)) {
            triad_once(a, b, c, threads, 0);
            anx_gb_clobber_memory();
        }
        anx_gb_counter(st, "bytes/s", 3.0 * sizeof(float) * TRIAD_N, ANX_GB_RATE_PER_ITER);
    }
    free(a), free(b), free(c);
}

void anx_bench_register_peak(const anx_bench_config *cfg)
{
    char name[96];
    for (int i = 0; i < ANX_ISA_COUNT; i++) {
        g_peak_cases[i] = (peak_case){(anx_isa)i, cfg->threads};
        snprintf(name, sizeof name, "fma_peak/%s/threads:%d", isa_table[i].name, cfg->threads);
        anx_gb_bench *b = anx_gb_register(name, bm_fma_peak, &g_peak_cases[i]);
        anx_gb_use_real_time(b);
        anx_gb_time_unit(b, ANX_GB_US);
    }
    g_triad_threads = cfg->threads;
    snprintf(name, sizeof name, "triad/threads:%d", cfg->threads);
    anx_gb_bench *b = anx_gb_register(name, bm_triad, &g_triad_threads);
    anx_gb_use_real_time(b);
    anx_gb_time_unit(b, ANX_GB_US);
}
