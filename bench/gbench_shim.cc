// gbench_shim.cc — the one C++ file of anx: Google Benchmark 1.7.1 behind a C interface
// (gbench_shim.h).  Each C handle is the C++ object itself, cast; nothing is wrapped or copied.
#include "gbench_shim.h"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

benchmark::State &S(anx_gb_state *st) { return *reinterpret_cast<benchmark::State *>(st); }
const benchmark::State &S(const anx_gb_state *st)
{
    return *reinterpret_cast<const benchmark::State *>(st);
}
benchmark::internal::Benchmark *B(anx_gb_bench *b)
{
    return reinterpret_cast<benchmark::internal::Benchmark *>(b);
}

bool g_listing_only = false;

// "--benchmark_list_tests", "--benchmark_list_tests=true|1" mean listing; "=false|0" do not.
bool is_list_flag(const char *arg)
{
    const char *flag = "--benchmark_list_tests";
    size_t n = std::strlen(flag);
    if (std::strncmp(arg, flag, n) != 0) return false;
    if (arg[n] == '\0') return true;
    if (arg[n] != '=') return false;
    const char *v = arg + n + 1;
    return std::strcmp(v, "false") != 0 && std::strcmp(v, "0") != 0 && std::strcmp(v, "no") != 0;
}

}  // namespace

extern "C" {

int anx_gb_initialize(int *argc, char **argv, const char *prog)
{
    for (int i = 1; i < *argc; i++)
        if (std::strncmp(argv[i], "--benchmark_list_tests", 22) == 0) g_listing_only = is_list_flag(argv[i]);
    benchmark::Initialize(argc, argv);
    if (*argc > 1) {
        std::fprintf(stderr, "%s: unknown argument '%s' (see --help)\n", prog, argv[1]);
        return 2;
    }
    return 0;
}

void anx_gb_add_context(const char *key, const char *value) { benchmark::AddCustomContext(key, value); }
size_t anx_gb_run_specified(void) { return benchmark::RunSpecifiedBenchmarks(); }
void anx_gb_shutdown(void) { benchmark::Shutdown(); }
int anx_gb_listing_only(void) { return g_listing_only; }

anx_gb_bench *anx_gb_register(const char *name, anx_gb_fn fn, void *arg)
{
    auto *b = benchmark::RegisterBenchmark(
        name, [fn, arg](benchmark::State &st) { fn(reinterpret_cast<anx_gb_state *>(&st), arg); });
    return reinterpret_cast<anx_gb_bench *>(b);
}

void anx_gb_use_real_time(anx_gb_bench *b) { B(b)->UseRealTime(); }
void anx_gb_arg(anx_gb_bench *b, int64_t x) { B(b)->Arg(x); }
void anx_gb_args2(anx_gb_bench *b, int64_t x, int64_t y) { B(b)->Args({x, y}); }
void anx_gb_min_time(anx_gb_bench *b, double seconds) { B(b)->MinTime(seconds); }
void anx_gb_iterations(anx_gb_bench *b, int64_t n) { B(b)->Iterations(n); }
void anx_gb_repetitions(anx_gb_bench *b, int n) { B(b)->Repetitions(n); }

void anx_gb_time_unit(anx_gb_bench *b, anx_gb_unit u)
{
    static const benchmark::TimeUnit units[] = {benchmark::kNanosecond, benchmark::kMicrosecond,
                                                benchmark::kMillisecond, benchmark::kSecond};
    B(b)->Unit(units[u]);
}

int anx_gb_keep_running(anx_gb_state *st) { return S(st).KeepRunning(); }
int64_t anx_gb_range(const anx_gb_state *st, int i) { return S(st).range(i); }
int64_t anx_gb_iterations_done(const anx_gb_state *st) { return S(st).iterations(); }
void anx_gb_pause(anx_gb_state *st) { S(st).PauseTiming(); }
void anx_gb_resume(anx_gb_state *st) { S(st).ResumeTiming(); }
void anx_gb_skip(anx_gb_state *st, const char *msg) { S(st).SkipWithError(msg); }
int anx_gb_skipped(const anx_gb_state *st) { return S(st).error_occurred(); }
void anx_gb_label(anx_gb_state *st, const char *label) { S(st).SetLabel(label); }

void anx_gb_counter(anx_gb_state *st, const char *name, double value, int flags)
{
    int f = benchmark::Counter::kDefaults;
    if (flags & ANX_GB_RATE) f |= benchmark::Counter::kIsRate;
    if (flags & ANX_GB_PER_ITER) f |= benchmark::Counter::kIsIterationInvariant;
    if (flags & ANX_GB_AVG_THREADS) f |= benchmark::Counter::kAvgThreads;
    if (flags & ANX_GB_INVERT) f |= benchmark::Counter::kInvert;
    auto base = (flags & ANX_GB_BASE_1024) ? benchmark::Counter::kIs1024 : benchmark::Counter::kIs1000;
    S(st).counters[name] = benchmark::Counter(value, static_cast<benchmark::Counter::Flags>(f), base);
}

void anx_gb_set_items_processed(anx_gb_state *st, int64_t items) { S(st).SetItemsProcessed(items); }
void anx_gb_set_bytes_processed(anx_gb_state *st, int64_t bytes) { S(st).SetBytesProcessed(bytes); }

#if !(defined(__GNUC__) || defined(__clang__))
void anx_gb_do_not_optimize(const void *p) { benchmark::DoNotOptimize(p); }
void anx_gb_clobber_memory(void) { benchmark::ClobberMemory(); }
#endif

}  // extern "C"
