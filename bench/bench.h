/* bench.h — what the anx-bench C files share: the run configuration, the machine's measured
 * peaks (FMA and triad bandwidth) and the benchmark families each file registers. */
#ifndef ANX_BENCH_H
#define ANX_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/net.h"
#include "gbench_shim.h"

#define ANX_BENCH_MAX_BATCHES 8

typedef struct anx_bench_config {
    int threads;                              /* threads given to every backend and probe */
    int batches[ANX_BENCH_MAX_BATCHES];       /* every backend but the reference */
    int nbatches;
    int ref_batches[ANX_BENCH_MAX_BATCHES];   /* the reference (is_reference): plain loops are slow at large batches */
    int nref_batches;
    const char *backends;                     /* comma list of backends to register, NULL = all */
} anx_bench_config;

/* The vector ISAs whose FMA peak anx-bench measures. */
typedef enum anx_isa { ANX_ISA_AVX2, ANX_ISA_AVX512, ANX_ISA_COUNT } anx_isa;

typedef struct anx_machine {
    int threads;
    int has[ANX_ISA_COUNT];           /* the CPU runs it (cpuid) and it was compiled in */
    double fma_flops[ANX_ISA_COUNT];  /* FLOP/s with `threads` threads, 0 when !has */
    double fma_flops_1t[ANX_ISA_COUNT];
    double triad_bytes;               /* bytes/s of a[i] = b[i] + s*c[i], STREAM counting */
} anx_machine;

const char *anx_isa_name(anx_isa isa); /* "avx2", "avx512" */

/* Measures the peaks once with `threads` threads (about half a second); later calls return
 * the same numbers. */
const anx_machine *anx_machine_measure(int threads);
/* The measured machine; NULL before anx_machine_measure. */
const anx_machine *anx_machine_get(void);

/* The ISA whose FMA peak a backend's peak% is taken against: anx_bench_peak_isa, where
 * ANX_PEAK_BEST (a library that dispatches; plain C, judged by what the machine could do) is the
 * best the CPU has.  Returns -1 when the CPU lacks it (or has none of them). */
int anx_bench_isa_of(const anx_backend *be);
/* The entry's peak_isa, or what its peak_isa_here() says the library runs here (a JIT target
 * chosen at run time): what anx_bench_isa_of goes by (the roles in the context keep peak_isa). */
anx_peak_isa anx_bench_peak_isa(const anx_backend *be);

/* Registration of the benchmark families; each registers one benchmark per row. */
int anx_bench_backend_selected(const anx_bench_config *cfg, const anx_backend *be);
void anx_bench_register_peak(const anx_bench_config *cfg);
void anx_bench_register_layers(const anx_bench_config *cfg);
void anx_bench_register_step(const anx_bench_config *cfg);
void anx_bench_register_dist(const anx_bench_config *cfg); /* allreduce, dist_step: under mpirun */

/* Big fixtures (layer tensors, a whole net, Adam's arrays) are kept between the calls Google
 * Benchmark makes while it sizes the iteration count and for repetitions.  Only one is alive
 * at a time: claiming the cache for a new owner releases the previous one. */
void anx_bench_cache_claim(void (*release)(void));
void anx_bench_cache_release_all(void);

/* The model every step benchmark times: Alexnet(3, 1000) on 227x227 images, at `batch`. */
anx_model_config anx_bench_model_config(int batch);
/* That model on be at `batch` with PyTorch-default init (seed 1), dropout seed 1 and a random
 * batch of its own from stream `stream` (one per rank); before any warm-up step.  The net, or
 * NULL with "failed: why" in broken. */
anx_net *anx_bench_net_create(const anx_backend *be, int batch, int threads, uint64_t stream, char *broken,
                              size_t len);

/* 64-byte aligned floats, or NULL; free with free(). */
float *anx_bench_alloc_floats(size_t n);
/* 1 when all n values are finite. */
int anx_bench_all_finite(const float *p, size_t n);

#endif
