/* hw_counters.h — hardware counters (cycles, instructions, cache misses) around a benchmark's
 * timing loop, through perf_event_open(2) (Debian's Google Benchmark is built without libpfm).
 * Where the kernel or the hypervisor forbids them (a VM without a virtual PMU: ENOENT; a
 * perf_event_paranoid too high: EACCES), nothing is counted and the status says why. */
#ifndef ANX_BENCH_HW_COUNTERS_H
#define ANX_BENCH_HW_COUNTERS_H

#include "gbench_shim.h"

/* The counted events (X-macro: name in the report, perf type, perf config). */
#define ANX_HW_EVENTS(X)                                                                      \
    X(cycles, PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES)                                   \
    X(instructions, PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS)                           \
    X(cache_misses, PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES)

#define ANX_HW_MAX_THREADS 256

typedef struct anx_hw_counters {
    int nthreads;                       /* threads whose counters are open, 0 = not counting */
    int fd[ANX_HW_MAX_THREADS][3];      /* per OpenMP thread, per event */
} anx_hw_counters;

/* "cycles instructions cache_misses (per iteration, summed over N threads)" when this process
 * may count, else "skipped: perf_event_open(cycles): <errno name> (<strerror>)"; probed once.
 * ANX_BENCH_HW_COUNTERS=off in the environment turns counting off ("skipped: ... off"). */
const char *anx_hw_counters_status(void);

/* Opens and starts the counters on each of `threads` OpenMP threads (the pool the layers run
 * on).  Returns 0, or -1 with nothing open when counting is not possible. */
int anx_hw_start(anx_hw_counters *hw, int threads);
/* Stops, and adds the counts per iteration as benchmark counters (cycles/iter, ...), plus
 * IPC; closes everything.  Does nothing when anx_hw_start failed. */
void anx_hw_stop(anx_hw_counters *hw, anx_gb_state *st, int64_t iterations);

#endif
