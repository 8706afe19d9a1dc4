/* gbench_shim.h — a C interface to Google Benchmark 1.7.1, so the benchmarks themselves are C.
 *
 * A benchmark is a C callback plus an opaque argument:
 *
 *     static void bm_thing(anx_gb_state *st, void *arg)
 *     {
 *         ... setup (not timed) ...
 *         if (cannot) { anx_gb_skip(st, "skipped: CPU lacks AVX2"); return; }
 *         while (anx_gb_keep_running(st)) {
 *             work(...);
 *             anx_gb_clobber_memory();
 *         }
 *         anx_gb_counter(st, "FLOP/s", flops_per_iter, ANX_GB_RATE_PER_ITER);
 *     }
 *     anx_gb_bench *b = anx_gb_register("thing/x", bm_thing, arg);
 *     anx_gb_use_real_time(b);
 *
 * Only the .cc file sees C++; everything here is plain C11.
 */
#ifndef ANX_GBENCH_SHIM_H
#define ANX_GBENCH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct anx_gb_state anx_gb_state; /* benchmark::State */
typedef struct anx_gb_bench anx_gb_bench; /* benchmark::internal::Benchmark */
typedef void (*anx_gb_fn)(anx_gb_state *st, void *arg);

/* --- process level --- */

/* benchmark::Initialize on argc/argv (removes the --benchmark_* flags it knows).  Returns 0, or
 * 2 after one line on stderr when an argument is left that nobody understood. */
int anx_gb_initialize(int *argc, char **argv, const char *prog);
/* A key/value pair in the "context" stanza of every report (console and JSON). */
void anx_gb_add_context(const char *key, const char *value);
/* Runs the benchmarks selected by --benchmark_filter; returns how many ran. */
size_t anx_gb_run_specified(void);
void anx_gb_shutdown(void);
/* Was --benchmark_list_tests given (so nothing will run)? Valid after anx_gb_initialize. */
int anx_gb_listing_only(void);

/* --- registration --- */

/* Registers a benchmark under name (copied); arg is passed to fn untouched and must outlive
 * the run.  Returns a handle for the options below. */
anx_gb_bench *anx_gb_register(const char *name, anx_gb_fn fn, void *arg);
void anx_gb_use_real_time(anx_gb_bench *b);   /* time and rates from the wall clock */
void anx_gb_arg(anx_gb_bench *b, int64_t x);  /* one more run with range(0) = x */
void anx_gb_args2(anx_gb_bench *b, int64_t x, int64_t y); /* range(0) = x, range(1) = y */
void anx_gb_min_time(anx_gb_bench *b, double seconds);
void anx_gb_iterations(anx_gb_bench *b, int64_t n);
void anx_gb_repetitions(anx_gb_bench *b, int n);
typedef enum anx_gb_unit { ANX_GB_NS, ANX_GB_US, ANX_GB_MS, ANX_GB_S } anx_gb_unit;
void anx_gb_time_unit(anx_gb_bench *b, anx_gb_unit u);

/* --- inside a benchmark --- */

/* The timing loop: while (anx_gb_keep_running(st)) { ... }.  Must be driven until it
 * returns 0 (or never entered after anx_gb_skip). */
int anx_gb_keep_running(anx_gb_state *st);
int64_t anx_gb_range(const anx_gb_state *st, int i);
int64_t anx_gb_iterations_done(const anx_gb_state *st);
void anx_gb_pause(anx_gb_state *st);
void anx_gb_resume(anx_gb_state *st);
/* Ends the benchmark with a message instead of a timing (reported as error_occurred in JSON,
 * "ERROR OCCURRED: 'msg'" on the console).  By convention here a message starting with
 * "skipped: " is a thing this machine or backend cannot do; anything else is a failure. */
void anx_gb_skip(anx_gb_state *st, const char *msg);
int anx_gb_skipped(const anx_gb_state *st);
void anx_gb_label(anx_gb_state *st, const char *label);

/* Counters.  PER_ITER is multiplied by the iterations; RATE divides by the (real, when
 * anx_gb_use_real_time) time.  So value = work per iteration with ANX_GB_RATE_PER_ITER gives
 * work per second. */
enum {
    ANX_GB_PLAIN = 0,
    ANX_GB_RATE = 1 << 0,
    ANX_GB_PER_ITER = 1 << 1,
    ANX_GB_AVG_THREADS = 1 << 2,
    ANX_GB_INVERT = 1 << 3,
    ANX_GB_BASE_1024 = 1 << 4, /* display in Ki/Mi/Gi instead of k/M/G */
    ANX_GB_RATE_PER_ITER = ANX_GB_RATE | ANX_GB_PER_ITER,
};
void anx_gb_counter(anx_gb_state *st, const char *name, double value, int flags);
void anx_gb_set_items_processed(anx_gb_state *st, int64_t items);
void anx_gb_set_bytes_processed(anx_gb_state *st, int64_t bytes);

/* DoNotOptimize / ClobberMemory: compiler barriers, no code emitted.  The pointer form of
 * DoNotOptimize: the pointed-to memory counts as read, so stores to it are kept. */
#if defined(__GNUC__) || defined(__clang__)
static inline void anx_gb_do_not_optimize(const void *p)
{
    __asm__ __volatile__("" : : "r"(p) : "memory");
}
static inline void anx_gb_clobber_memory(void)
{
    __asm__ __volatile__("" : : : "memory");
}
#else
void anx_gb_do_not_optimize(const void *p);
void anx_gb_clobber_memory(void);
#endif

#ifdef __cplusplus
}
#endif

#endif
