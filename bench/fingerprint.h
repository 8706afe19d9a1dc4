/* fingerprint.h — what machine, build and source a benchmark run comes from, in the context of
 * every anx-bench report, so two runs can be told apart (and bench/compare.py can refuse to
 * compare runs of different machines). */
#ifndef ANX_BENCH_FINGERPRINT_H
#define ANX_BENCH_FINGERPRINT_H

#include "bench.h"

/* The fingerprint, the few fields that decide whether timings are comparable. */
typedef struct anx_fingerprint {
    char vendor[64];     /* "GenuineIntel" */
    char model[128];     /* "Intel(R) Xeon(R) Processor" */
    char fms[48];        /* "family 6 model 143 stepping 8" */
    char isa[256];       /* the ISA flags that matter, as /proc/cpuinfo spells them */
    int threads;
    char machine_key[17]; /* 64-bit FNV-1a of the fields above, hex */
} anx_fingerprint;

/* Reads the CPU (from /proc/cpuinfo; "?" where it is not there) and computes machine_key. */
void anx_fingerprint_read(anx_fingerprint *fp, int threads);

/* Adds anx_cpu_*, anx_isa_flags, anx_machine_key, anx_caches, anx_memory_gib, anx_kernel,
 * anx_compiler, anx_cflags, anx_libraries, anx_onednn_version, anx_benchmark_version,
 * anx_git_commit, anx_git_dirty, anx_hw_counters and anx_backend_roles to the context of every
 * report. */
void anx_bench_add_fingerprint(int threads);

#endif
